/* peers: memsrv's connections to other memsrv nodes, over TCP.
 *
 * One thread of its own (never the server thread: a slow or hostile peer
 * must not stall the control socket or a Hello) runs an epoll loop over the
 * --peer-listen socket, every peer connection and the requests the server
 * thread posts.  Each connection is non-blocking with a buffer each way
 * (peer_wire.h), authenticates by peer_auth.h's handshake within
 * PEERS_HANDSHAKE_MS, and is dropped with one log line on anything
 * malformed.  After the handshake a connection carries ping/pong, or is
 * handed to the server thread for a migration (peers_take_handoffs), whose
 * VM thread then owns it (migrate_out.h, migrate_in.h).
 */
#ifndef MEMSRV_PEERS_H
#define MEMSRV_PEERS_H

#include <stdbool.h>

#include "memsrv.pb-c.h"
#include "peer_addr.h"
#include "peer_auth.h"

#define PEERS_HANDSHAKE_MS 3000   /* an incoming peer's handshake, whole */
#define PEERS_PING_MS 5000        /* peer-ping: connect, handshake and pong */
#define PEERS_MAX_UNAUTHENTICATED 64
#define PEERS_TX_HIGH (1u << 20)  /* a peer's unsent answers past which memsrv reads no more of it */
#define PEER_VM_NAME_MAX 64

struct peers_config {
	bool listening;             /* --peer-listen given */
	struct peer_addr listen;
	const char *listen_text;    /* as given, for the log */
	struct peer_key key;        /* --peer-key; len 0: none */
};

struct peers;

/* Binds the listener (if any) and starts the peer thread.  0, or -errno
 * with the reason logged. */
int peers_open(struct peers **out, const struct peers_config *cfg, const char *memsrv_version);
/* Stops the thread; every connection is closed, every pending ping
 * answered ESHUTDOWN.  NULL is nothing. */
void peers_close(struct peers *p);

/* memsrv-ctl peer-ping: the peer thread connects to addr with this node's
 * key, authenticates, pings and answers on reply_fd (a PeerPingReply or an
 * Error), then closes it.  Takes reply_fd in every case; never blocks on
 * the network. */
void peers_post_ping(struct peers *p, const struct peer_addr *addr, const char *address, int reply_fd);

/* memsrv-ctl migrate: the peer thread connects to addr, authenticates and
 * hands the connection to the server thread (peers_take_handoffs) for VM
 * vm's migration, or answers reply_fd with an Error.  Takes reply_fd. */
void peers_post_migrate(struct peers *p, const struct peer_addr *addr, const char *address, const char *vm,
			int reply_fd);

/* An authenticated connection given to the server thread: an outgoing one
 * for a migration it asked for, or an incoming one that opened with a
 * MigrateBegin.  Nothing of the stream past that was read. */
struct peer_handoff {
	int fd;                       /* non-blocking; the taker owns it */
	int urgent_fd;                /* outgoing: the second connection, for pulled pages; -1: none */
	bool outgoing;
	char address[PEER_ADDR_TEXT]; /* the peer: as asked, or where it came from */
	char vm[PEER_VM_NAME_MAX];    /* outgoing: the VM to migrate */
	int reply_fd;                 /* outgoing: the migrate request's control connection */
	Memsrv__PeerMessage *begin;   /* incoming: the MigrateBegin */
	struct peer_handoff *next;
};

/* An eventfd readable when connections wait to be taken. */
int peers_handoff_fd(const struct peers *p);
/* The connections handed off since the last call, in order. */
struct peer_handoff *peers_take_handoffs(struct peers *p);
/* Closes and frees what h still owns. */
void peer_handoff_free(struct peer_handoff *h);

#endif
