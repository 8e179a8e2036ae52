/* store: content-addressed, reference-counted page objects for all VMs.
 *
 * One mutex guards the object table, the hash index, the LRU and the pool.
 * Hashing and compressing happen outside it; a lookup that finds a candidate
 * decompresses and compares it under the lock, so that a hash collision can
 * never hand one VM another VM's data.
 */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "zpool.h"

#define CHUNK_BITS 16
#define CHUNK_OBJS (1u << CHUNK_BITS)
#define MAX_CHUNKS (1u << 16)       /* 2^32 objects: 16 TiB of distinct pages */
#define RAW_LEN CODEC_PAGE          /* a stored length of a whole page: kept raw */

struct obj {
	uint64_t hash_lo, hash_hi;
	uint64_t loc;                /* CACHE: zpool handle; SAMEFILL: the word */
	uint32_t refs;
	uint32_t next;               /* hash chain; the free list when FREE */
	uint32_t lru_prev, lru_next; /* CACHE objects, oldest first */
	uint16_t len;
	uint8_t tier;
	uint8_t codec;
};

struct store {
	pthread_mutex_t lock;
	struct store_config cfg;
	struct obj *chunks[MAX_CHUNKS];
	uint32_t next_fresh;         /* ids below it have been handed out */
	uint32_t free_ids;           /* head of the list of freed ids */
	uint32_t *buckets;
	uint32_t nbuckets;           /* a power of two */
	uint32_t lru_head, lru_tail;
	struct zpool *pool;
	struct store_stats st;
	uint8_t cmp_page[CODEC_PAGE];  /* a candidate decompressed for the full compare */
};

static struct obj *obj_at(const struct store *s, obj_id id)
{
	return &s->chunks[id >> CHUNK_BITS][id & (CHUNK_OBJS - 1)];
}

struct store *store_create(const struct store_config *cfg)
{
	struct store *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->cfg = *cfg;
	if (!s->cfg.incompressible_bytes)
		s->cfg.incompressible_bytes = 3000;
	s->st.cache_budget_bytes = cfg->cache_budget;
	s->next_fresh = 1;  /* 0 names nothing */
	s->nbuckets = 1u << 16;
	s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
	s->pool = zpool_create();
	if (!s->buckets || !s->pool) {
		store_destroy(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void store_destroy(struct store *s)
{
	if (!s)
		return;
	for (uint32_t c = 0; c < MAX_CHUNKS && s->chunks[c]; c++)
		free(s->chunks[c]);
	if (s->pool)
		zpool_destroy(s->pool);
	free(s->buckets);
	free(s);
}

static obj_id alloc_id(struct store *s)
{
	if (s->free_ids) {
		obj_id id = s->free_ids;
		s->free_ids = obj_at(s, id)->next;
		return id;
	}
	obj_id id = s->next_fresh;
	uint32_t chunk = id >> CHUNK_BITS;
	if (chunk >= MAX_CHUNKS)
		return 0;
	if (!s->chunks[chunk] && !(s->chunks[chunk] = calloc(CHUNK_OBJS, sizeof(struct obj))))
		return 0;
	s->next_fresh++;
	return id;
}

static void free_id(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	memset(o, 0, sizeof *o);
	o->next = s->free_ids;
	s->free_ids = id;
}

static uint32_t *bucket_of(struct store *s, uint64_t hash_lo)
{
	return &s->buckets[hash_lo & (s->nbuckets - 1)];
}

/* Doubles the index once it holds twice as many objects as buckets. */
static void maybe_grow_index(struct store *s)
{
	if (s->st.objects < (uint64_t)s->nbuckets * 2 || s->nbuckets >= (1u << 31))
		return;
	uint32_t n = s->nbuckets * 2;
	uint32_t *b = calloc(n, sizeof *b);
	if (!b)
		return;  /* longer chains, still correct */
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
	for (obj_id id = 1; id < s->next_fresh; id++) {
		struct obj *o = obj_at(s, id);
		if (o->tier == TIER_FREE)
			continue;
		uint32_t *head = bucket_of(s, o->hash_lo);
		o->next = *head;
		*head = id;
	}
}

static void index_remove(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	for (uint32_t *p = bucket_of(s, o->hash_lo); *p; p = &obj_at(s, *p)->next)
		if (*p == id) {
			*p = o->next;
			return;
		}
}

static void lru_unlink(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	if (o->lru_prev)
		obj_at(s, o->lru_prev)->lru_next = o->lru_next;
	else
		s->lru_head = o->lru_next;
	if (o->lru_next)
		obj_at(s, o->lru_next)->lru_prev = o->lru_prev;
	else
		s->lru_tail = o->lru_prev;
	o->lru_prev = o->lru_next = 0;
}

/* Newest at the tail.  Pages that barely compress go to the head: they are
 * the first worth writing to swap as they are. */
static void lru_insert(struct store *s, obj_id id, bool first_out)
{
	struct obj *o = obj_at(s, id);
	if (first_out) {
		o->lru_next = s->lru_head;
		o->lru_prev = 0;
		if (s->lru_head)
			obj_at(s, s->lru_head)->lru_prev = id;
		else
			s->lru_tail = id;
		s->lru_head = id;
	} else {
		o->lru_prev = s->lru_tail;
		o->lru_next = 0;
		if (s->lru_tail)
			obj_at(s, s->lru_tail)->lru_next = id;
		else
			s->lru_head = id;
		s->lru_tail = id;
	}
}

/* Sharing statistics follow every reference change of an object. */
static void ref_changed(struct store *s, const struct obj *o, uint32_t before)
{
	uint32_t after = o->refs;
	uint64_t shared_before = before > 1 ? before : 0, shared_after = after > 1 ? after : 0;
	s->st.shared_pages += shared_after - shared_before;
	uint64_t saved_before = before ? (uint64_t)(before - 1) * o->len : 0;
	uint64_t saved_after = after ? (uint64_t)(after - 1) * o->len : 0;
	s->st.shared_saved_bytes += saved_after - saved_before;
	s->st.references += (uint64_t)after - before;
}

/* Fills page with an object's content; called with the lock held. */
static int read_locked(struct store *s, struct codec_ctx *ctx, const struct obj *o, void *page)
{
	switch (o->tier) {
	case TIER_SAMEFILL:
		for (size_t off = 0; off < CODEC_PAGE; off += sizeof o->loc)
			memcpy((char *)page + off, &o->loc, sizeof o->loc);
		return 0;
	case TIER_CACHE: {
		const void *src = zpool_map(s->pool, o->loc);
		if (o->len == RAW_LEN) {
			memcpy(page, src, CODEC_PAGE);
			return 0;
		}
		return codec_decompress(ctx, o->codec, src, o->len, page);
	}
	default:
		return -EIO;
	}
}

static void page_hash(const struct store *s, const void *page, bool samefilled, uint64_t word, uint64_t *lo,
		      uint64_t *hi)
{
	/* a samefilled page is known by its word: no need to hash 4 KiB */
	XXH128_hash_t h = samefilled ? XXH3_128bits_withSeed(&word, sizeof word, 0x5a3e)
				     : XXH3_128bits(page, CODEC_PAGE);
	*lo = h.low64;
	*hi = h.high64;
	if (s->cfg.hash_bits && s->cfg.hash_bits < 64) {
		*lo &= (1ull << s->cfg.hash_bits) - 1;
		*hi = 0;
	}
}

/* Looks for a stored object with this content; takes a reference to it. */
static obj_id find_locked(struct store *s, struct codec_ctx *ctx, const void *page, bool samefilled, uint64_t word,
			  uint64_t lo, uint64_t hi)
{
	for (obj_id id = *bucket_of(s, lo); id; id = obj_at(s, id)->next) {
		struct obj *o = obj_at(s, id);
		if (o->hash_lo != lo || o->hash_hi != hi)
			continue;
		bool same;
		if (samefilled || o->tier == TIER_SAMEFILL)
			same = samefilled && o->tier == TIER_SAMEFILL && o->loc == word;
		else
			same = read_locked(s, ctx, o, s->cmp_page) == 0 && !memcmp(s->cmp_page, page, CODEC_PAGE);
		if (!same) {
			s->st.hash_collisions++;
			continue;
		}
		uint32_t before = o->refs++;
		ref_changed(s, o, before);
		s->st.dedup_hits++;
		return id;
	}
	return 0;
}

int store_put(struct store *s, struct codec_ctx *ctx, enum codec c, const void *page, obj_id *id,
	      struct store_put_info *info)
{
	uint64_t word = 0, lo, hi;
	bool samefilled = page_is_samefilled(page, &word);
	page_hash(s, page, samefilled, word, &lo, &hi);
	*info = (struct store_put_info){ .samefilled = samefilled };

	pthread_mutex_lock(&s->lock);
	*id = find_locked(s, ctx, page, samefilled, word, lo, hi);
	if (*id) {
		info->shared = true;
		info->len = obj_at(s, *id)->len;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	pthread_mutex_unlock(&s->lock);

	/* compress outside the lock; a page that barely compresses is kept raw */
	const void *data = page;
	uint32_t len = 0;
	if (!samefilled) {
		len = codec_compress(ctx, c, page, s->cfg.incompressible_bytes + 1, &data);
		if (!len) {
			len = RAW_LEN;
			data = page;
		}
	}

	pthread_mutex_lock(&s->lock);
	int ret = 0;
	zpool_handle h = 0;
	if (!samefilled) {
		struct zpool_stats ps;
		zpool_get_stats(s->pool, &ps);
		if (s->cfg.cache_budget && ps.pool_bytes + len > s->cfg.cache_budget)
			ret = -ENOSPC;
		else
			ret = zpool_alloc(s->pool, len, &h);
	}
	obj_id nid = ret ? 0 : alloc_id(s);
	if (!ret && !nid)
		ret = -ENOMEM;
	if (ret) {
		if (h)
			zpool_free(s->pool, h);
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	struct obj *o = obj_at(s, nid);
	o->hash_lo = lo;
	o->hash_hi = hi;
	o->refs = 1;
	o->codec = (uint8_t)c;
	if (samefilled) {
		o->tier = TIER_SAMEFILL;
		o->loc = word;
		o->len = 0;
		s->st.samefilled_objects++;
	} else {
		memcpy(zpool_map(s->pool, h), data, len);
		o->tier = TIER_CACHE;
		o->loc = h;
		o->len = (uint16_t)len;
		lru_insert(s, nid, len == RAW_LEN);
		s->st.cache_objects++;
		s->st.cache_bytes += len;
		s->st.cache_raw_objects += len == RAW_LEN;
	}
	uint32_t *head = bucket_of(s, lo);
	o->next = *head;
	*head = nid;
	s->st.objects++;
	s->st.references++;
	maybe_grow_index(s);
	pthread_mutex_unlock(&s->lock);
	*id = nid;
	info->len = len;
	return 0;
}

int store_get(struct store *s, struct codec_ctx *ctx, obj_id id, void *page)
{
	pthread_mutex_lock(&s->lock);
	int ret = read_locked(s, ctx, obj_at(s, id), page);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void store_drop(struct store *s, obj_id id)
{
	pthread_mutex_lock(&s->lock);
	struct obj *o = obj_at(s, id);
	uint32_t before = o->refs--;
	ref_changed(s, o, before);
	if (o->refs == 0) {
		index_remove(s, id);
		if (o->tier == TIER_CACHE) {
			lru_unlink(s, id);
			zpool_free(s->pool, o->loc);
			s->st.cache_objects--;
			s->st.cache_bytes -= o->len;
			s->st.cache_raw_objects -= o->len == RAW_LEN;
		} else if (o->tier == TIER_SAMEFILL) {
			s->st.samefilled_objects--;
		}
		s->st.objects--;
		free_id(s, id);
	}
	pthread_mutex_unlock(&s->lock);
}

void store_peek(const struct store *s, obj_id id, struct store_peek *p)
{
	const struct obj *o = obj_at(s, id);
	p->tier = (enum store_tier)__atomic_load_n(&o->tier, __ATOMIC_RELAXED);
	p->refs = __atomic_load_n(&o->refs, __ATOMIC_RELAXED);
	p->len = __atomic_load_n(&o->len, __ATOMIC_RELAXED);
}

void store_get_stats(struct store *s, struct store_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	struct zpool_stats ps;
	zpool_get_stats(s->pool, &ps);
	st->cache_pool_bytes = ps.pool_bytes;
	st->cache_slot_bytes = ps.slot_bytes;
	pthread_mutex_unlock(&s->lock);
}
