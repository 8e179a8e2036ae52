/* zcache: LZ4-compressed store for 4 KiB pages, built on zpool.
 *
 * Each page becomes one pool object of exactly its compressed size; a page
 * that does not compress below ZCACHE_RAW_THRESHOLD is kept raw, so a load
 * never costs more than a memcpy for it.  Not thread-safe: one thread at a
 * time per zcache (the compression state and scratch buffer are shared).
 */
#ifndef MEMSRV_ZCACHE_H
#define MEMSRV_ZCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zpool.h"

#define ZCACHE_PAGE          4096
#define ZCACHE_RAW_THRESHOLD (ZCACHE_PAGE - 256)

struct zcache;

/* Where a stored page lives; len == ZCACHE_PAGE means stored raw. */
struct zcache_ref {
	zpool_handle handle;
	uint32_t len;
};

/* Returns a new empty cache, or NULL on ENOMEM. */
struct zcache *zcache_create(void);

/* Frees every stored page and the cache itself. */
void zcache_destroy(struct zcache *zc);

/* Compresses one ZCACHE_PAGE-byte page and stores it; a page whose compressed
 * size would be >= ZCACHE_RAW_THRESHOLD is stored raw.  Returns 0 with *ref
 * filled, or -ENOMEM. */
int zcache_store(struct zcache *zc, const void *page, struct zcache_ref *ref);

/* Copies the page back into page[ZCACHE_PAGE].  Returns 0, or -EIO if the
 * stored data does not decompress to exactly ZCACHE_PAGE bytes.  The page
 * stays stored. */
int zcache_load(struct zcache *zc, struct zcache_ref ref, void *page);

/* Forgets a stored page. */
void zcache_drop(struct zcache *zc, struct zcache_ref ref);

struct zcache_stats {
	uint64_t pages;          /* stored pages */
	uint64_t raw_pages;      /* of which stored uncompressed */
	uint64_t stored_bytes;   /* sum of ref.len */
	uint64_t pool_bytes;     /* memory the pool holds from the OS */
	uint64_t slot_bytes;     /* pool slots in use, incl. class rounding */
};

void zcache_get_stats(const struct zcache *zc, struct zcache_stats *st);

/* The underlying pool, for tests and diagnostics. */
struct zpool *zcache_pool(struct zcache *zc);

/* True if all len bytes of page are zero; stops at the first nonzero word. */
bool page_is_zero(const void *page, size_t len);

#endif
