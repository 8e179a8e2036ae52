/* ctl_client: the control API of a memsrv server, for memsrv-ctl and tests.
 *
 * Each request opens its own connection to the server's SOCK_SEQPACKET
 * socket, sends one ClientMessage, reads one ServerMessage and closes.
 * Every function returns 0 or -errno and never touches errno.  On success
 * *reply is set and freed with memsrv__server_message__free_unpacked(*reply,
 * NULL).  A refusal by the server is a success at this level: the reply then
 * holds an Error and the caller checks (*reply)->msg_case.
 */
#ifndef MEMSRV_CTL_CLIENT_H
#define MEMSRV_CTL_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "memsrv.pb-c.h"

#ifndef MEMSRV_DEFAULT_SOCKET
#define MEMSRV_DEFAULT_SOCKET "/run/memsrv/memsrv.sock"
#endif

/* Returns a connected socket (O_CLOEXEC), or the -errno of socket(2) or
 * connect(2); -ENAMETOOLONG when the path does not fit a sockaddr_un. */
int ctl_connect(const char *socket_path);

/* Sends req on a connected socket and waits for one reply.  Returns 0,
 * -ECONNRESET if the server closes without replying, -EPROTO for a reply
 * that is not a ServerMessage, or another -errno.  A server that refused
 * the connection before reading req (its send fails with EPIPE) still
 * answered why: that Error is the reply.  The socket stays open. */
int ctl_call(int sock, const Memsrv__ClientMessage *req, Memsrv__ServerMessage **reply);

/* ctl_connect + ctl_call + close. */
int ctl_request(const char *socket_path, const Memsrv__ClientMessage *req,
		Memsrv__ServerMessage **reply);

/* A request under construction: the envelope and its one body.  The
 * builders fill it; strings are borrowed, not copied. */
struct ctl_req {
	Memsrv__ClientMessage msg;
	union {
		Memsrv__ListRequest list;
		Memsrv__InfoRequest info;
		Memsrv__StatsRequest stats;
		Memsrv__EvictRequest evict;
		Memsrv__SetRequest set;
		Memsrv__CheckRequest check;
		Memsrv__BalloonRequest balloon;
		Memsrv__SnapshotRequest snapshot;
		Memsrv__PeerPingRequest peer_ping;
		Memsrv__RemoteGcRequest remote_gc;
		Memsrv__MigrateRequest migrate;
	} body;
};

void ctl_build_list(struct ctl_req *r);
void ctl_build_info(struct ctl_req *r, const char *vm);
void ctl_build_stats(struct ctl_req *r);
void ctl_build_check(struct ctl_req *r);
int ctl_check(const char *socket_path, Memsrv__ServerMessage **reply);
/* settings are "key=value" strings, borrowed. */
void ctl_build_set(struct ctl_req *r, const char *vm, const char *const *settings, size_t n);
int ctl_set(const char *socket_path, const char *vm, const char *const *settings, size_t n,
	    Memsrv__ServerMessage **reply);
/* Every resident page if all, else at least bytes of them. */
void ctl_build_evict(struct ctl_req *r, const char *vm, uint64_t bytes, bool all);
void ctl_build_balloon(struct ctl_req *r, const char *vm, uint64_t target_bytes);
/* dir as memsrv is to see it: absolute (memsrv's working directory is not ours). */
void ctl_build_snapshot(struct ctl_req *r, const char *vm, const char *dir, bool remote);

/* address: ADDR:PORT of another memsrv's --peer-listen. */
void ctl_build_peer_ping(struct ctl_req *r, const char *address);
void ctl_build_remote_gc(struct ctl_req *r, const char *node_id);
/* VM's memory to the memsrv at address (its --peer-listen). */
void ctl_build_migrate(struct ctl_req *r, const char *vm, const char *address);

/* Replies: vm_list, vm_info, node_stats, evict_reply, balloon_reply and snapshot_reply, or
 * an error. */
int ctl_list(const char *socket_path, Memsrv__ServerMessage **reply);
int ctl_info(const char *socket_path, const char *vm, Memsrv__ServerMessage **reply);
int ctl_stats(const char *socket_path, Memsrv__ServerMessage **reply);

/* Evicts every resident page if all, else at least bytes of them. */
int ctl_evict(const char *socket_path, const char *vm, uint64_t bytes, bool all,
	      Memsrv__ServerMessage **reply);

/* Asks the VM's VMM to hold the guest at target_bytes; the reply comes once
 * the request went out to the VMM. */
int ctl_balloon(const char *socket_path, const char *vm, uint64_t target_bytes,
		Memsrv__ServerMessage **reply);

/* Writes an image of the VM's memory into dir (absolute); the reply
 * (snapshot_reply) comes once the image is complete.  remote: its objects
 * go to the remote tier's cluster, the image names them. */
int ctl_snapshot(const char *socket_path, const char *vm, const char *dir, Memsrv__ServerMessage **reply);
int ctl_snapshot_to(const char *socket_path, const char *vm, const char *dir, bool remote,
		    Memsrv__ServerMessage **reply);

/* Has memsrv connect to the peer at address, authenticate and ping it; the
 * reply (peer_ping_reply) comes with the pong, or an Error saying why not. */
int ctl_peer_ping(const char *socket_path, const char *address, Memsrv__ServerMessage **reply);

#endif
