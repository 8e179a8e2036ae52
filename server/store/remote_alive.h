/* remote_alive: which memsrv holds a node id in the cluster now.
 *
 *	memsrv:node:{ID}:alive     the holder's token, gone ALIVE_TTL_MS after
 *	                           its last refresh
 *
 * A memsrv claims its node id when it starts and refreshes the claim every
 * REMOTE_ALIVE_REFRESH_MS; a clean stop deletes it.  So two memsrv never
 * file references under one id (the second is refused: it would take the
 * first's references for leftovers), and `memsrv-ctl remote gc` never
 * collects a node that is running.  A token names the holder (host and
 * state dir): a memsrv restarted on its --state-dir holds the same one and
 * takes its id back at once; any other waits for the old claim to expire.
 */
#ifndef MEMSRV_REMOTE_ALIVE_H
#define MEMSRV_REMOTE_ALIVE_H

#include <stddef.h>

#include "redis_cluster.h"
#include "remote_refs.h"

#define REMOTE_ALIVE_TTL_MS 10000
#define REMOTE_ALIVE_REFRESH_MS 3000
#define REMOTE_TOKEN_MAX 256

/* Sets the claim of id to token, for REMOTE_ALIVE_TTL_MS, unless another
 * token holds it: call->done gets 1 (held now) or 0 (another's), or
 * -errno.  call must stay until then. */
struct remote_alive_call {
	remote_done_fn done;
	void *arg;
};
int remote_alive_claim(struct rc_cluster *rc, const char *id, const char *token, struct remote_alive_call *call);

/* The same, driving rc_poll() itself, tried for up to wait_ms while
 * another's claim may expire: 0 (held), -EADDRINUSE with the holder's
 * token in holder, or -errno. */
int remote_alive_claim_now(struct rc_cluster *rc, const char *id, const char *token, int wait_ms, char *holder,
			   size_t len);

/* Deletes the claim if token holds it; drives rc_poll() for up to
 * timeout_ms.  0 or -errno. */
int remote_alive_release_now(struct rc_cluster *rc, const char *id, const char *token, int timeout_ms);

/* Who holds id now, driving rc_poll(): 1 with the token in holder, 0 for
 * no one, or -errno. */
int remote_alive_holder_now(struct rc_cluster *rc, const char *id, char *holder, size_t len, int timeout_ms);

#endif
