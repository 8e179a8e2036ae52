/* zcache: LZ4 page compression into exactly-sized zpool objects. */
#include "zcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

struct zcache {
	struct zpool *pool;
	void *lz4_state;        /* LZ4_sizeofState() bytes, reused by every store */
	uint64_t pages;
	uint64_t raw_pages;
	uint64_t stored_bytes;
	/* Output capped below the raw threshold: LZ4 gives up early on an
	 * incompressible page instead of compressing it in full for nothing. */
	char scratch[ZCACHE_RAW_THRESHOLD - 1];
};

struct zcache *zcache_create(void)
{
	struct zcache *zc = calloc(1, sizeof(*zc));
	if (!zc)
		return NULL;
	zc->lz4_state = malloc(LZ4_sizeofState());
	zc->pool = zpool_create();
	if (!zc->lz4_state || !zc->pool) {
		zcache_destroy(zc);
		return NULL;
	}
	return zc;
}

void zcache_destroy(struct zcache *zc)
{
	if (!zc)
		return;
	zpool_destroy(zc->pool);
	free(zc->lz4_state);
	free(zc);
}

int zcache_store(struct zcache *zc, const void *page, struct zcache_ref *ref)
{
	int n = LZ4_compress_fast_extState(zc->lz4_state, page, zc->scratch,
					   ZCACHE_PAGE, sizeof(zc->scratch), 1);
	const void *src = n > 0 ? zc->scratch : page;
	uint32_t len = n > 0 ? (uint32_t)n : ZCACHE_PAGE;
	zpool_handle h;
	int r = zpool_alloc(zc->pool, len, &h);
	if (r)
		return r;
	memcpy(zpool_map(zc->pool, h), src, len);
	zc->pages++;
	zc->raw_pages += len == ZCACHE_PAGE;
	zc->stored_bytes += len;
	*ref = (struct zcache_ref){ .handle = h, .len = len };
	return 0;
}

int zcache_load(struct zcache *zc, struct zcache_ref ref, void *page)
{
	const char *src = zpool_map(zc->pool, ref.handle);
	if (ref.len == ZCACHE_PAGE) {
		memcpy(page, src, ZCACHE_PAGE);
		return 0;
	}
	if (ref.len == 0 || ref.len > ZCACHE_PAGE)
		return -EIO;
	/* The safe decoder never reads or writes out of bounds, even on
	 * corrupted input; it may leave page partially written. */
	int n = LZ4_decompress_safe(src, page, (int)ref.len, ZCACHE_PAGE);
	return n == ZCACHE_PAGE ? 0 : -EIO;
}

void zcache_drop(struct zcache *zc, struct zcache_ref ref)
{
	zpool_free(zc->pool, ref.handle);
	zc->pages--;
	zc->raw_pages -= ref.len == ZCACHE_PAGE;
	zc->stored_bytes -= ref.len;
}

void zcache_get_stats(const struct zcache *zc, struct zcache_stats *st)
{
	struct zpool_stats ps;
	zpool_get_stats(zc->pool, &ps);
	st->pages = zc->pages;
	st->raw_pages = zc->raw_pages;
	st->stored_bytes = zc->stored_bytes;
	st->pool_bytes = ps.pool_bytes;
	st->slot_bytes = ps.slot_bytes;
}

struct zpool *zcache_pool(struct zcache *zc)
{
	return zc->pool;
}

bool page_is_zero(const void *page, size_t len)
{
	const unsigned char *p = page;
	/* One branch per 64 bytes; memcpy keeps unaligned input legal and
	 * compiles to plain (vectorisable) loads. */
	while (len >= 64) {
		uint64_t w[8];
		memcpy(w, p, sizeof(w));
		if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
			return false;
		p += 64;
		len -= 64;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, sizeof(w));
		if (w)
			return false;
		p += 8;
		len -= 8;
	}
	while (len--)
		if (*p++)
			return false;
	return true;
}
