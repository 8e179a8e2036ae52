/* remote_tier: the store's tier in a Redis Cluster, driven by a thread of
 * its own.
 *
 * The cluster client (redis_cluster.h) is single-threaded and never
 * blocks; this puts it on one thread and lets the others ask:
 *
 *  - writeback uploads a batch and waits for it: each object is referenced
 *    if the cluster holds its digest already (any host's upload), uploaded
 *    if not, and counts as done only once WAIT said a replica has what its
 *    connection wrote — until then the local copy must stay;
 *  - a fault's read is asynchronous: the page is fetched, checked
 *    (remote_object_decode) and copied into the caller's buffer, and the
 *    completion is posted to the caller's io_uring (IORING_OP_MSG_RING) as
 *    a read of a file would be, so a VM thread waits on one ring for swap
 *    and cluster alike.  While the cluster cannot be reached the read
 *    waits; it is tried again until it succeeds or is cancelled;
 *  - local references are counted per digest, so that the cluster holds
 *    one reference of this node however many local objects name a digest,
 *    and drops it when the last one goes.
 *
 * Thread-safe.
 */
#ifndef MEMSRV_REMOTE_TIER_H
#define MEMSRV_REMOTE_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis_cluster.h"
#include "remote_object.h"
#include "remote_refs.h"

struct remote_tier_config {
	struct rc_config rc;
	const char *node_id;      /* this host's name in the cluster */
	const char *token;        /* who holds the id (remote_alive.h): the same across restarts on one state dir */
	unsigned min_replicas;    /* WAIT for this many replicas; 0: 1 */
};

struct remote_tier;

/* Connects (the slot map read from a seed), claims the node id (waiting
 * for a claim of another token to expire, REMOTE_ALIVE_TTL_MS) and starts
 * the thread, which keeps the claim.  0, or -errno with why (-EADDRINUSE:
 * another memsrv runs with this node id).  cfg's strings must outlive the
 * tier. */
int remote_tier_open(struct remote_tier **out, const struct remote_tier_config *cfg, char *why, size_t len);
/* Waits a while for the references being dropped to reach the cluster,
 * then stops: reads still waiting complete with -ECANCELED. */
void remote_tier_close(struct remote_tier *rt);

/* One object of an upload: its digest and its value
 * (remote_object_encode()). */
struct remote_upload {
	struct remote_digest d;
	const void *value;
	size_t len;
	int result;     /* out: 0 when the cluster holds it on a replica, with this node's reference; -errno */
	bool shared;    /* out: the cluster held it already: nothing was sent */
	size_t held_len;  /* out, shared: the length of the value it holds */
};
/* An upload of value NULL is a reference only: it fails with -ENOENT
 * unless the cluster holds the object (a migration's pages, by name). */
/* Uploads n objects and waits until each has its result.  Each one done
 * counts as a local reference (remote_tier_release() drops it). */
void remote_tier_upload(struct remote_tier *rt, struct remote_upload *items, unsigned n);

/* The same under holder's references, not this node's (an image's,
 * memsrv-ctl snapshot --remote): no local object counts them; what
 * succeeded stays referenced until memsrv-ctl remote gc HOLDER.  An item
 * fails with -EINVAL when holder is no valid node id. */
void remote_tier_upload_as(struct remote_tier *rt, const char *holder, struct remote_upload *items, unsigned n);

/* One more local object names d, whose reference the cluster already has
 * (a restart finding its objects). */
void remote_tier_hold(struct remote_tier *rt, const struct remote_digest *d);
/* A local object that named d is gone: the last drops this node's
 * reference in the cluster (in the background, tried until it gets
 * through).  Never blocks: call it under any lock. */
void remote_tier_release(struct remote_tier *rt, const struct remote_digest *d);

/* Reads the page of d into buf (CODEC_PAGE bytes) and posts the outcome
 * to the io_uring whose fd is ring_fd: a CQE with user_data and res
 * CODEC_PAGE, or -errno (-ENOENT: the cluster lost it; -EBADMSG: it kept
 * handing back a malformed value; -ECANCELED).  buf must stay until the
 * CQE comes or remote_tier_cancel() says the read will not post one.
 * 0, or -ENOMEM. */
int remote_tier_read(struct remote_tier *rt, const struct remote_digest *d, void *buf, int ring_fd,
		     uint64_t user_data);
/* Every read for ring_fd still waiting is dropped: nothing more is written
 * to their buffers and no CQE is posted for them.  Returns how many. */
unsigned remote_tier_cancel(struct remote_tier *rt, int ring_fd);
/* Reads synchronously, giving up after timeout_ms: CODEC_PAGE or -errno. */
int remote_tier_read_sync(struct remote_tier *rt, const struct remote_digest *d, void *buf, int timeout_ms);

/* The name this node's references are filed under. */
const char *remote_tier_node_id(const struct remote_tier *rt);

/* Drops every reference node_id holds in the cluster (a host that
 * vanished), on a connection of its own: the number dropped or -errno
 * (-EBUSY: a memsrv other than this one holds the id now, named in
 * holder). */
long remote_tier_gc(struct remote_tier *rt, const char *node_id, int timeout_ms, char *holder, size_t len);

/* The same on a thread of its own, for one that must not wait (a failed
 * snapshot --remote's holder): the outcome is logged.  A close waits for it. */
void remote_tier_gc_background(struct remote_tier *rt, const char *node_id);

struct remote_tier_stats {
	uint64_t uploads;           /* objects sent */
	uint64_t upload_bytes;
	uint64_t shared;            /* objects the cluster held already */
	uint64_t upload_errors;     /* objects that did not reach a replica: they stayed local */
	uint64_t read_errors;       /* reads that failed for good: the object lost or malformed */
	bool unreachable;           /* a slot has no master connected */
};
void remote_tier_get_stats(struct remote_tier *rt, struct remote_tier_stats *out);

#endif
