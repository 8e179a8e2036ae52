/* remote_refs: who references each object of the remote tier, kept in the
 * cluster beside the objects (remote_object.h), so that an object shared by
 * many hosts is uploaded once and freed when the last of them lets go.
 *
 *	memsrv:{D}:o                 the object of digest D
 *	memsrv:{D}:r                 the node ids that reference it (a set)
 *	memsrv:node:{ID}:objects     the digests node ID references (a set)
 *
 * The object and its set share a slot ({D}), so one Lua script changes
 * both at once: a reference is taken only while the object exists, and the
 * last one dropped deletes it, whatever other hosts do meanwhile.  A node's
 * own set names a digest before the node takes a reference, and forgets it
 * after the node dropped it (or found nothing to reference), so a node that
 * vanishes leaves no reference its set does not name — remote_gc_node()
 * drops them all — and one that let go of everything leaves nothing.
 *
 * Every call queues commands on the cluster (redis_cluster.h) and calls
 * done once, from rc_poll(), with the outcome.
 */
#ifndef MEMSRV_REMOTE_REFS_H
#define MEMSRV_REMOTE_REFS_H

#include <stddef.h>

#include "redis_cluster.h"
#include "remote_object.h"

#define REMOTE_NODE_ID_MAX 64

struct remote_node {
	struct rc_cluster *rc;
	char id[REMOTE_NODE_ID_MAX];    /* this host's name in the cluster (--node-id) */
	char index_key[REMOTE_NODE_ID_MAX + 32];
};

/* result: >= 0 as each call says, or -errno (the command's error) */
typedef void (*remote_done_fn)(void *arg, int result);
/* the value the cluster holds (valid during the call), or err (-ENOENT: none) */
typedef void (*remote_value_fn)(void *arg, const void *value, size_t len, int err);

/* 0, or -EINVAL when id is empty, too long, or holds a brace or a space. */
int remote_node_init(struct remote_node *n, struct rc_cluster *rc, const char *id);

/* A reference to the object of d, if the cluster holds it: its length in
 * bytes (held and referenced now: nothing to upload) or 0 (not held:
 * remote_put() it). */
int remote_ref(struct remote_node *n, const struct remote_digest *d, remote_done_fn done, void *arg);
/* Uploads the object (len bytes, remote_object_encode()) and references
 * it: 0. */
int remote_put(struct remote_node *n, const struct remote_digest *d, const void *obj, size_t len,
	       remote_done_fn done, void *arg);
/* Drops the reference: 1 when it was the last (the object is gone), 0. */
int remote_unref(struct remote_node *n, const struct remote_digest *d, remote_done_fn done, void *arg);
/* The object's value. */
int remote_get(struct remote_node *n, const struct remote_digest *d, remote_value_fn done, void *arg);

/* Drops every reference node id holds, then its set: for a node that
 * vanished (memsrv-ctl remote gc), or this one when nothing of it should
 * stay.  Drives rc_poll() itself; returns the references dropped, or
 * -errno (-ETIMEDOUT after timeout_ms). */
long remote_gc_node(struct rc_cluster *rc, const char *id, int timeout_ms);

#endif
