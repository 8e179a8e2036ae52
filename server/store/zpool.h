/* zpool: size-classed slab pool for compressed pages.
 *
 * Objects of 1..ZPOOL_MAX_OBJECT bytes live in slots of 64-byte size classes
 * carved out of mmap'd slabs; no allocation happens per object.  A slab whose
 * slots are all free goes back to the OS (at most one empty slab is cached
 * per class).  A handle names an object by slab, slot and requested size, so
 * zpool_map() is O(1).  Not thread-safe: one thread at a time per pool.
 */
#ifndef MEMSRV_ZPOOL_H
#define MEMSRV_ZPOOL_H

#include <stddef.h>
#include <stdint.h>

struct zpool;

typedef uint64_t zpool_handle;          /* never 0; always fits in 48 bits */
#define ZPOOL_HANDLE_BITS 48
#define ZPOOL_MAX_OBJECT  4096

/* Returns a new empty pool, or NULL on ENOMEM. */
struct zpool *zpool_create(void);

/* A pool whose slabs live in the file fd (slab i at offset i * 64 KiB,
 * MAP_SHARED), so that what it holds outlives the process: restart
 * without loss keeps the file on tmpfs.  Empty slabs are punched out of
 * the file.  The pool does not own fd.  NULL on ENOMEM. */
struct zpool *zpool_create_in_file(int fd);

/* After zpool_create_in_file() on a file an earlier pool wrote: takes the
 * n handles still live (from the store's own records) as allocated, with
 * their bytes as the file holds them, and frees everything else.  0, or
 * -EINVAL when two handles claim the same slot or one slab for two size
 * classes (the records do not describe this file), or -ENOMEM; after a
 * failure the pool is only fit for zpool_destroy(). */
int zpool_restore(struct zpool *p, const zpool_handle *live, size_t n);

/* Frees every object and all memory of the pool (a file-backed pool's
 * file keeps its bytes: only the mappings go). */
void zpool_destroy(struct zpool *p);

/* Allocates size bytes.  Returns 0 and the handle in *out, -EINVAL for size 0
 * or > ZPOOL_MAX_OBJECT, or -ENOMEM. */
int zpool_alloc(struct zpool *p, size_t size, zpool_handle *out);

/* Returns the object's bytes; valid until the object is freed.  The handle
 * must be live (checked by assert only). */
void *zpool_map(const struct zpool *p, zpool_handle h);

/* Frees a live object. */
void zpool_free(struct zpool *p, zpool_handle h);

struct zpool_stats {
	uint64_t objects;        /* live objects */
	uint64_t object_bytes;   /* sum of requested sizes of live objects */
	uint64_t slot_bytes;     /* sum of their size-class slot sizes */
	uint64_t pool_bytes;     /* memory the pool holds from the OS (slabs) */
	uint64_t slabs;
};

void zpool_get_stats(const struct zpool *p, struct zpool_stats *st);

#endif
