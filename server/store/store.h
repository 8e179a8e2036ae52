/* store: the node's page store, shared by every VM.
 *
 * A stored page is an object named by an obj_id.  Objects are looked up by
 * content (XXH3-128, confirmed by a full compare), so identical pages of any
 * VM — or the same page twice in one VM — are held once and counted by
 * reference.  A page of one repeated word costs no storage (SAMEFILL); the
 * others are compressed (LZ4 or zstd, the VM's choice) into a size-classed
 * pool (CACHE).  Thread-safe: VM threads call it concurrently.
 */
#ifndef MEMSRV_STORE_H
#define MEMSRV_STORE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "remote_object.h"
#include "swapfile.h"

struct remote_tier;

typedef uint32_t obj_id;  /* 0 is never an object */

enum store_tier { TIER_FREE = 0, TIER_SAMEFILL, TIER_CACHE, TIER_SWAP, TIER_REMOTE };

struct store_config {
	uint64_t cache_budget;         /* memory the compressed cache may hold; 0: no budget */
	uint32_t incompressible_bytes; /* compressed larger than this: stored raw (default 3000) */
	unsigned hash_bits;            /* 0: full XXH3-128; fewer bits force collisions (tests) */
	struct swapfile *swap;         /* where the coldest cache objects go; NULL: nowhere */
	/* A Redis Cluster (remote_tier.h): where they go when there is no
	 * swap, or when swap is full; NULL: none.  The store does not own it. */
	struct remote_tier *remote;
	/* Restart without loss: the object table and the cache live in these
	 * files (MAP_SHARED, on tmpfs), so a new memsrv finds what this one
	 * stored.  The store does not own them. */
	bool persistent;
	int objects_fd, pool_fd;
	int digests_fd;                /* with remote: the cluster's names of its objects */
};

struct store *store_create(const struct store_config *cfg);
/* A persistent store's files keep their bytes: only the mappings go. */
void store_destroy(struct store *s);

/* After store_create() on files an earlier store wrote: refs[] holds one
 * object id per reference the VMs' page tables make (an id repeats once per
 * page that shares it).  Every object referenced comes back with its
 * content, its count and its place in the index; every other one is freed.
 * 0, or -EINVAL when a reference names no object or the records do not fit
 * the files (nothing is then to be trusted), or -ENOMEM. */
int store_restore(struct store *s, const obj_id *refs, size_t n);

struct store_put_info {
	bool shared;      /* an identical page was already stored */
	bool samefilled;
	uint32_t len;     /* bytes it takes in the cache (0: samefilled) */
};

/* Stores one 4 KiB page; the caller owns one reference to *id.  A stored
 * twin in swap is read synchronously (without the store's lock) for the full
 * compare: call it where a disk read may block.  Returns 0,
 * -EBUSY when the cache is at its budget but writeback to swap is making
 * room (store_wait_room(), then retry), or -ENOSPC when nothing can make
 * room: the budget is reached with no swap to go to, or memory or the state
 * dir's files have no room (the store_full condition until a put succeeds). */
int store_put(struct store *s, struct codec_ctx *ctx, enum codec c, const void *page, obj_id *id,
	      struct store_put_info *info);

/* store_put() of a page that came compressed already (a migration's
 * pages): enc is page compressed by c into enc_len bytes (CODEC_PAGE: the
 * page raw), kept as it is rather than compressed again; page itself is
 * what it is indexed and shared by.  The caller decoded enc into page. */
int store_put_encoded(struct store *s, struct codec_ctx *ctx, enum codec c, const void *page, const void *enc,
		      uint32_t enc_len, obj_id *id, struct store_put_info *info);

/* The hash store_put() indexes a page that is not same-filled by: its
 * XXH3-128, computed the same on every node. */
void store_content_hash(const void *page, uint64_t *lo, uint64_t *hi);

/* A new reference to a stored object (not a same-filled one) whose content
 * hashes to (lo, hi) as store_content_hash() says: 0 with *id, or -ENOENT.
 * A hash names content, it does not prove it: the caller checks what it
 * got (a migration's destination compares a digest) and drops it if not. */
int store_share_by_hash(struct store *s, uint64_t lo, uint64_t hi, obj_id *id);

/* An object of the remote tier by name: the content's hash (as
 * store_content_hash() says) and its SHA-256, the cluster's key. */
struct store_remote_name {
	uint64_t hash_lo, hash_hi;
	struct remote_digest digest;
};

/* Whether object id is in the cluster: true with its name. */
bool store_remote_name(struct store *s, obj_id id, struct store_remote_name *out);

/* The same, pinned (store_unpin()): its id names this object until then,
 * whatever becomes of its references.  1 with its name, 0 (not in the
 * cluster: nothing pinned), -ENOENT (no such object). */
int store_pin_remote_name(struct store *s, obj_id id, struct store_remote_name *out);

/* The remote tier (--remote), for what names pages in the cluster beside
 * the store's own objects (an image's): NULL without one. */
struct remote_tier *store_remote_tier(struct store *s);

/* Objects a migration's source names (it holds them in the cluster) and
 * this store does not hold: for each the cluster holds, this node takes a
 * reference there (acknowledged by a replica) and ids[i] gets a new object
 * with the caller's reference; else ids[i] is 0 (no remote tier, another
 * cluster, or gone: the caller asks for the content).  Blocks for the
 * cluster's round trips, one batch for all. */
void store_adopt_remote(struct store *s, const struct store_remote_name *names, unsigned n, obj_id *ids);

/* Whether a put that is not needed now (a resume's background fill) may
 * take room: the cache is below writeback's low watermark (or has no
 * budget) and memory was not short at the last put.  Such puts never make
 * writeback run. */
bool store_has_spare_room(struct store *s);

/* Why a stored page's content could not be had (store_get, store_fetch,
 * store_read_end): the final ones will not change if tried again. */
#define STORE_ERR_CHECKSUM  (-EBADMSG)  /* swap handed back other data than was written (final) */
#define STORE_ERR_DECOMPRESS (-EILSEQ)  /* its compressed form does not decompress (final) */
#define STORE_ERR_SHORT_READ (-ENODATA) /* swap returned less than was written: the file was truncated */
/* Any other -errno is the read's own (EIO: the device failed it). */
static inline bool store_err_final(int err) { return err == STORE_ERR_CHECKSUM || err == STORE_ERR_DECOMPRESS; }

/* Copies the page's content into page, reading swap synchronously if it
 * is there.  0 or -errno (above). */
int store_get(struct store *s, struct codec_ctx *ctx, obj_id id, void *page);

/* The fault path's way in: fills page from memory and returns 0, or, for
 * an object in swap, pins it, fills rd with the read to do and returns 1.
 * The caller reads rd->io (into a buffer aligned to the swap unit) without
 * blocking anyone, then calls store_read_end() with what it read. */
struct store_read {
	obj_id id;
	struct swap_io io;
	uint32_t len;
	uint8_t codec;
	uint64_t hash_lo, hash_hi;  /* what the page must hash to: swap is checked, not trusted */
	bool remote;                /* in the cluster: not a file's read (store_read_submit_remote) */
	struct remote_digest digest;
};
int store_fetch(struct store *s, struct codec_ctx *ctx, obj_id id, void *page, struct store_read *rd);
/* store_fetch() for pages that are only worth it from memory (prefetch):
 * 0 with page filled, 1 for an object in swap (nothing pinned), or -errno
 * (STORE_ERR_DECOMPRESS). */
int store_fetch_memory(struct store *s, struct codec_ctx *ctx, obj_id id, void *page);

/* A read of the cluster (rd->remote) is no file's: it is handed to the
 * remote tier, which fills buf (CODEC_PAGE bytes) and posts the read's
 * completion to the io_uring ring_fd as one of the ring's own reads would
 * complete (user_data; res the bytes read or -errno).  0 or -ENOMEM. */
int store_read_submit_remote(struct store *s, const struct store_read *rd, void *buf, int ring_fd,
			     uint64_t user_data);
/* The reads of the cluster for ring_fd that will post nothing now: how
 * many (each still needs its store_read_end()). */
unsigned store_read_cancel_remote(struct store *s, int ring_fd);

/* Decodes what the read brought (res: bytes read or -errno) into page and
 * unpins the object.  0, or why not (STORE_ERR_*, or the read's -errno).
 * Every failure counts swap_read_errors, bad content swap_checksum_errors. */
int store_read_end(struct store *s, struct codec_ctx *ctx, const struct store_read *rd, const void *buf, int res,
		   void *page);

/* Does rd's read synchronously (slow paths: detach, shutdown) and ends it. */
int store_read_now(struct store *s, struct codec_ctx *ctx, const struct store_read *rd, void *page);

/* An object as the store keeps it (store_read_stored): one repeated word,
 * or len bytes of codec's output (len CODEC_PAGE: the page itself, raw). */
struct store_stored {
	bool samefilled;
	uint64_t word;      /* samefilled: the word */
	uint32_t len;       /* else: the bytes copied */
	enum codec codec;
};

/* Copies object id into buf (CODEC_PAGE bytes) as it is stored, neither
 * decompressed nor compressed again: for a copy of the store's own (a
 * snapshot image).  From the cache under the lock; from swap by a
 * synchronous read, checked against the page's hash as a fault's read is
 * (decompressed with ctx into scratch to check, the bytes handed over as
 * read).  On success the object is pinned: its id names this content, and
 * no other, until store_unpin(), whatever becomes of its references (a
 * copy that maps ids to what it copied relies on it).  0 or -errno
 * (-ENOENT: no such object; STORE_ERR_*, or the read's own). */
int store_read_stored(struct store *s, struct codec_ctx *ctx, obj_id id, void *buf, struct store_stored *out);
void store_unpin(struct store *s, obj_id id);

/* Waits up to timeout_ms for writeback to make room in the cache. */
void store_wait_room(struct store *s, int timeout_ms);

/* Releases one reference; the last one frees the object. */
void store_drop(struct store *s, obj_id id);

/* What a VM's statistics need to know of one of its pages: read without
 * the lock (a racing change only skews a statistic). */
struct store_peek {
	enum store_tier tier;
	uint32_t refs;
	uint32_t len;
};
void store_peek(const struct store *s, obj_id id, struct store_peek *p);

/* Node statistics, defined once: each becomes a field of the same name
 * in memsrv.NodeStats. */
#define STORE_STATS(X)          \
	X(objects)              \
	X(samefilled_objects)   \
	X(cache_objects)        \
	X(cache_bytes)          \
	X(cache_raw_objects)    \
	X(cache_pool_bytes)     \
	X(cache_slot_bytes)     \
	X(cache_budget_bytes)   \
	X(references)           \
	X(shared_pages)         \
	X(shared_saved_bytes)   \
	X(dedup_hits)           \
	X(hash_collisions)      \
	X(swap_objects)         \
	X(swap_bytes)           \
	X(swap_used_bytes)      \
	X(swap_size_bytes)      \
	X(writeback_objects)    \
	X(swap_write_errors)    \
	X(swap_read_errors)     \
	X(swap_checksum_errors) \
	X(swap_full)            \
	X(swap_failing)         \
	X(remote_objects)       \
	X(remote_bytes)         \
	X(remote_uploads)       \
	X(remote_upload_bytes)  \
	X(remote_shared)        \
	X(remote_upload_errors) \
	X(remote_read_errors)   \
	X(remote_failing)       \
	X(remote_unreachable)   \
	X(store_full)

struct store_stats {
#define X(name) uint64_t name;
	STORE_STATS(X)
#undef X
};
void store_get_stats(struct store *s, struct store_stats *st);

#endif
