/* access: who may use this memsrv, and for what.
 *
 * Admins (root and memsrv's own uid) may do everything.  Members of the
 * socket's group (--socket-group) may attach VMs and read state (list,
 * info, stats, check) but not steer it (evict, balloon, set).  Everyone
 * else is refused at connect, whatever the socket's mode says.  A member's
 * uid may hold at most --max-sessions-per-uid connections at once; admins
 * are bound only by memsrv's fds (server.c keeps a reserve for them). */
#ifndef MEMSRV_ACCESS_H
#define MEMSRV_ACCESS_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

enum access_role { ACCESS_NONE, ACCESS_MEMBER, ACCESS_ADMIN };

struct access_config {
	uid_t admin_uid;                /* memsrv's own uid (root is always admin) */
	gid_t group;                    /* the socket's group */
	bool has_group;                 /* --socket-group given */
	unsigned max_sessions_per_uid;  /* 0: the default */
};

#define ACCESS_DEFAULT_SESSIONS_PER_UID 256

/* The role of a connected peer, from its credentials and, for the group,
 * the supplementary groups its process holds now (/proc/PID/status).
 * 0, or -errno when the groups cannot be read (EMFILE, ENOMEM): then the
 * peer is neither let in nor told it is no member. */
int access_role_of(const struct access_config *cfg, const struct ucred *peer, enum access_role *role);

/* Gives the socket file its group and mode 0660 (0 or -errno). */
int access_prepare_socket(const struct access_config *cfg, const char *socket_path);

/* Resolves a group name or number; 0 or -ENOENT. */
int access_parse_group(const char *name, gid_t *out);

#endif
