/* redis_cluster: a small Redis Cluster client for the remote tier.
 *
 * Debian's hiredis (0.14) speaks RESP but knows no cluster, so this keeps
 * the cluster's part itself, as the cluster specification describes it:
 * the slot of a key (CRC16 of the key, or of its {hash tag}, mod 16384),
 * a slot map read with CLUSTER SLOTS, one non-blocking connection per
 * master, and the redirections: MOVED (the slot lives elsewhere now: the
 * map is read again and the command goes there) and ASK (the slot is
 * moving: that one command goes to the other node after an ASKING).
 *
 * Commands are queued and pipelined per node: rc_command() only queues,
 * rc_poll() sends, reads and completes, each command's callback called
 * once with its reply (hiredis's redisReply, valid during the call) or an
 * error.  A command whose node is unreachable, or that the cluster answers
 * CLUSTERDOWN or TRYAGAIN, is sent again (to the node the map then names)
 * until its deadline: a failover or a cluster that comes back completes it,
 * and one that does not fails it with -ETIMEDOUT, never with a reply of
 * some other command.  A reply that is not RESP fails the connection and
 * its commands are sent again on a new one.
 *
 * One thread drives a cluster: nothing here locks.
 */
#ifndef MEMSRV_REDIS_CLUSTER_H
#define MEMSRV_REDIS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define RC_SLOTS 16384
#define RC_MAX_NODES 64
#define RC_MAX_SEEDS 16

struct rc_config {
	const char *seeds[RC_MAX_SEEDS];  /* HOST:PORT of nodes to learn the cluster from */
	unsigned n_seeds;
	const char *user;                 /* ACL user; NULL: the default one */
	const char *password;             /* NULL: no AUTH */
	unsigned command_timeout_ms;      /* a command's deadline, retries included; 0: 10 s */
};

struct rc_cluster;

/* The reply of a command: reply NULL and err a -errno when there is none
 * (-ETIMEDOUT: no node answered before its deadline; -ECANCELED: the
 * cluster was closed).  A Redis error reply comes as a reply of type
 * REDIS_REPLY_ERROR, err 0. */
typedef void (*rc_done_fn)(void *arg, const redisReply *reply, int err);

/* Connects to a seed and reads the slot map.  0, or -errno with why. */
int rc_open(struct rc_cluster **out, const struct rc_config *cfg, char *why, size_t len);
/* Every queued command completes with -ECANCELED first.  NULL: nothing. */
void rc_close(struct rc_cluster *c);

/* Queues a command (argv[0] the command's name) for the node that holds
 * key's slot.  Takes nothing: argv is copied.  0, -ENOMEM, or -ECANCELED
 * once rc_close() began.  A callback may queue commands (they go after
 * those queued before). */
int rc_command(struct rc_cluster *c, const char *key, size_t key_len, int argc, const char **argv,
	       const size_t *argv_len, rc_done_fn done, void *arg);

/* A connection to a node: writes and the WAIT that tells they reached a
 * replica must go on one (WAIT covers the writes of its own connection). */
struct rc_conn {
	int node;
	uint32_t gen;  /* the node's connections are counted: a new one is another */
};

/* Inside a callback given a reply: the connection it came on (true). */
bool rc_reply_conn(const struct rc_cluster *c, struct rc_conn *out);

/* Queues a command for that connection only, whatever the slot map says:
 * if the connection closes or was replaced before the reply, the command
 * completes with -ECONNRESET and is not sent again.  0, -EINVAL, -ENOMEM
 * or -ECANCELED. */
int rc_command_on(struct rc_cluster *c, const struct rc_conn *conn, int argc, const char **argv,
		  const size_t *argv_len, rc_done_fn done, void *arg);

/* Sends what is queued, reads what came, completes what is answered, for
 * up to timeout_ms (0: only what is ready now).  Returns the number of
 * commands completed, or -errno. */
int rc_poll(struct rc_cluster *c, int timeout_ms);

/* Commands queued or in flight. */
unsigned rc_pending(const struct rc_cluster *c);

/* An fd readable when rc_poll() has work: for the caller's own epoll. */
int rc_fd(const struct rc_cluster *c);

/* The slot of a key: CRC16-XMODEM of it, or of its first non-empty
 * {hash tag}, mod 16384. */
unsigned rc_keyslot(const char *key, size_t len);

struct rc_stats {
	uint64_t commands, moved, asked, retries, reconnects, map_reads;
	unsigned masters;      /* in the slot map now */
	bool reachable;        /* every slot has a master connected now */
};
void rc_get_stats(const struct rc_cluster *c, struct rc_stats *out);

#endif
