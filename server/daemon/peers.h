/* peers: memsrv's connections to other memsrv nodes, over TCP.
 *
 * One thread of its own (never the server thread: a slow or hostile peer
 * must not stall the control socket or a Hello) runs an epoll loop over the
 * --peer-listen socket, every peer connection and the requests the server
 * thread posts.  Each connection is non-blocking with a buffer each way
 * (peer_wire.h), authenticates by peer_auth.h's handshake within
 * PEERS_HANDSHAKE_MS, and is dropped with one log line on anything
 * malformed.  What a connection carries after the handshake is ping/pong
 * for now; a migration's page streams will come the same way.
 */
#ifndef MEMSRV_PEERS_H
#define MEMSRV_PEERS_H

#include <stdbool.h>

#include "peer_addr.h"
#include "peer_auth.h"

#define PEERS_HANDSHAKE_MS 3000   /* an incoming peer's handshake, whole */
#define PEERS_PING_MS 5000        /* peer-ping: connect, handshake and pong */
#define PEERS_MAX_UNAUTHENTICATED 64
#define PEERS_TX_HIGH (1u << 20)  /* a peer's unsent answers past which memsrv reads no more of it */

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

#endif
