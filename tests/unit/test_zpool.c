/* Description: zpool allocates, maps and frees objects of every size class
 * without corruption, keeps exact stats and returns empty slabs to the OS. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zpool.h"

#define HANDLE_LIMIT ((uint64_t)1 << ZPOOL_HANDLE_BITS)

/* Deterministic bytes from a seed, so content can be checked without a copy. */
static void fill(void *buf, size_t len, uint32_t seed)
{
	unsigned char *b = buf;
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = x >> 24;
	}
}

static int matches(const void *buf, size_t len, uint32_t seed)
{
	unsigned char tmp[ZPOOL_MAX_OBJECT];
	fill(tmp, len, seed);
	return memcmp(buf, tmp, len) == 0;
}

static void check_handle(zpool_handle h)
{
	cr_assert_neq(h, 0);
	cr_assert_lt(h, HANDLE_LIMIT, "handle %#llx exceeds 48 bits", (unsigned long long)h);
}

struct obj {
	zpool_handle h;
	size_t size;
	uint32_t seed;
};

Test(zpool, rejects_bad_sizes)
{
	struct zpool *p = zpool_create();
	cr_assert_not_null(p);
	zpool_handle h = 0;
	cr_assert_eq(zpool_alloc(p, 0, &h), -EINVAL);
	cr_assert_eq(zpool_alloc(p, ZPOOL_MAX_OBJECT + 1, &h), -EINVAL);
	cr_assert_eq(h, 0, "handle written on failure");
	struct zpool_stats st;
	zpool_get_stats(p, &st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.slabs, 0);
	zpool_destroy(p);
}

Test(zpool, class_boundaries_roundtrip)
{
	static const size_t sizes[] = { 1, 64, 65, 4095, 4096 };
	enum { N = 5 * 300 };
	struct obj o[N];
	struct zpool *p = zpool_create();
	cr_assert_not_null(p);

	/* Interleave sizes so neighbouring slots of every class are written. */
	for (int i = 0; i < N; i++) {
		o[i].size = sizes[i % 5];
		o[i].seed = i;
		cr_assert_eq(zpool_alloc(p, o[i].size, &o[i].h), 0);
		check_handle(o[i].h);
		fill(zpool_map(p, o[i].h), o[i].size, o[i].seed);
	}
	/* Free every third object, refill the holes with new content. */
	for (int i = 0; i < N; i += 3)
		zpool_free(p, o[i].h);
	for (int i = 0; i < N; i += 3) {
		o[i].seed = i + N;
		cr_assert_eq(zpool_alloc(p, o[i].size, &o[i].h), 0);
		check_handle(o[i].h);
		fill(zpool_map(p, o[i].h), o[i].size, o[i].seed);
	}
	for (int i = 0; i < N; i++)
		cr_assert(matches(zpool_map(p, o[i].h), o[i].size, o[i].seed),
			  "object %d (size %zu) corrupted", i, o[i].size);
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N && j < i + 8; j++)
			cr_assert_neq(o[i].h, o[j].h);
	zpool_destroy(p);
}

Test(zpool, stats_are_exact)
{
	struct zpool *p = zpool_create();
	cr_assert_not_null(p);
	zpool_handle a, b, c;
	cr_assert_eq(zpool_alloc(p, 1, &a), 0);
	cr_assert_eq(zpool_alloc(p, 100, &b), 0);
	cr_assert_eq(zpool_alloc(p, 4096, &c), 0);

	struct zpool_stats st;
	zpool_get_stats(p, &st);
	cr_assert_eq(st.objects, 3);
	cr_assert_eq(st.object_bytes, 1 + 100 + 4096);
	cr_assert_eq(st.slot_bytes, 64 + 128 + 4096);
	cr_assert_eq(st.slabs, 3, "one slab per class used");
	cr_assert_gt(st.pool_bytes, 0);
	cr_assert_eq(st.pool_bytes % st.slabs, 0);

	zpool_free(p, b);
	zpool_get_stats(p, &st);
	cr_assert_eq(st.objects, 2);
	cr_assert_eq(st.object_bytes, 1 + 4096);
	cr_assert_eq(st.slot_bytes, 64 + 4096);

	zpool_free(p, a);
	zpool_free(p, c);
	zpool_get_stats(p, &st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.object_bytes, 0);
	cr_assert_eq(st.slot_bytes, 0);
	zpool_destroy(p);
}

Test(zpool, empty_slabs_go_back)
{
	static const size_t sizes[] = { 40, 700, 3000, 4096 };
	enum { N = 20000 };
	struct zpool *p = zpool_create();
	zpool_handle *h = malloc(N * sizeof(*h));
	cr_assert(p && h);

	struct zpool_stats one, full, after;
	for (int i = 0; i < 4; i++)
		cr_assert_eq(zpool_alloc(p, sizes[i], &h[i]), 0);
	zpool_get_stats(p, &one);
	cr_assert_eq(one.slabs, 4);
	for (int i = 4; i < N; i++)
		cr_assert_eq(zpool_alloc(p, sizes[i % 4], &h[i]), 0);
	zpool_get_stats(p, &full);
	cr_assert_gt(full.pool_bytes, 20 * one.pool_bytes, "test did not grow the pool");
	cr_assert_geq(full.pool_bytes, full.slot_bytes);

	/* Free in an order that empties slabs out of allocation order. */
	for (int i = N - 1; i >= 0; i -= 2)
		zpool_free(p, h[i]);
	for (int i = N - 2; i >= 0; i -= 2)
		zpool_free(p, h[i]);
	zpool_get_stats(p, &after);
	cr_assert_eq(after.objects, 0);
	cr_assert_leq(after.slabs, 4, "%llu slabs kept", (unsigned long long)after.slabs);
	cr_assert_leq(after.pool_bytes, one.pool_bytes);

	/* Cached slabs are reusable and the pool still grows again. */
	for (int i = 0; i < N; i++) {
		cr_assert_eq(zpool_alloc(p, sizes[i % 4], &h[i]), 0);
		fill(zpool_map(p, h[i]), sizes[i % 4], i);
	}
	for (int i = 0; i < N; i++)
		cr_assert(matches(zpool_map(p, h[i]), sizes[i % 4], i));
	zpool_destroy(p);
	free(h);
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

Test(zpool, random_stress)
{
	enum { SHADOW = 4096, OPS = 200000 };
	struct obj *s = calloc(SHADOW, sizeof(*s));
	struct zpool *p = zpool_create();
	cr_assert(p && s);
	uint64_t objects = 0, bytes = 0;

	for (uint32_t op = 1; op <= OPS; op++) {
		struct obj *o = &s[rnd() % SHADOW];
		if (o->h) {
			cr_assert(matches(zpool_map(p, o->h), o->size, o->seed),
				  "op %u: corrupted object of size %zu", op, o->size);
			zpool_free(p, o->h);
			objects--;
			bytes -= o->size;
			o->h = 0;
			if (rnd() % 2)
				continue;
		}
		/* Mostly page-compression-like sizes, some tiny and maximal. */
		uint64_t r = rnd();
		o->size = r % 8 == 0 ? 1 + r % 64 : r % 8 == 1 ? ZPOOL_MAX_OBJECT : 1 + r % ZPOOL_MAX_OBJECT;
		o->seed = op;
		cr_assert_eq(zpool_alloc(p, o->size, &o->h), 0);
		check_handle(o->h);
		fill(zpool_map(p, o->h), o->size, o->seed);
		objects++;
		bytes += o->size;
	}
	struct zpool_stats st;
	zpool_get_stats(p, &st);
	cr_assert_eq(st.objects, objects);
	cr_assert_eq(st.object_bytes, bytes);
	cr_assert_geq(st.slot_bytes, st.object_bytes);
	cr_assert_geq(st.pool_bytes, st.slot_bytes);

	for (int i = 0; i < SHADOW; i++) {
		if (!s[i].h)
			continue;
		cr_assert(matches(zpool_map(p, s[i].h), s[i].size, s[i].seed));
		zpool_free(p, s[i].h);
	}
	zpool_get_stats(p, &st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.object_bytes, 0);
	cr_assert_leq(st.slabs, 64, "at most one cached slab per class");
	zpool_destroy(p);
	free(s);
}
