/* Description: zpool allocates, maps and frees objects of every size class
 * without corruption, keeps exact stats and returns empty slabs to the OS;
 * a file-backed pool is found intact by a new pool on its file. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A file-backed pool as restart finds it: the file an earlier pool wrote,
 * and the handles the store's records name. */
static int pool_file(void)
{
	int fd = memfd_create("zpool-test", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	return fd;
}

Test(zpool, a_file_backed_pool_outlives_its_process_and_restores)
{
	enum { N = 3000 };
	int fd = pool_file();
	struct zpool *p = zpool_create_in_file(fd);
	cr_assert_not_null(p);
	static struct obj objs[N];
	for (unsigned i = 0; i < N; i++) {
		objs[i].size = 1 + (i * 977) % ZPOOL_MAX_OBJECT;
		cr_assert_eq(zpool_alloc(p, objs[i].size, &objs[i].h), 0);
		fill(zpool_map(p, objs[i].h), objs[i].size, i);
	}
	/* every third goes, leaving holes in slabs and some slabs empty */
	zpool_handle live[N];
	size_t n_live = 0;
	uint64_t live_bytes = 0;
	for (unsigned i = 0; i < N; i++) {
		if (i % 3 == 0) {
			zpool_free(p, objs[i].h);
			objs[i].h = 0;
		} else {
			live[n_live++] = objs[i].h;
			live_bytes += objs[i].size;
		}
	}
	zpool_destroy(p);  /* what a crash leaves: the file, no pool */

	p = zpool_create_in_file(fd);
	cr_assert_eq(zpool_restore(p, live, n_live), 0);
	struct zpool_stats st;
	zpool_get_stats(p, &st);
	cr_assert_eq(st.objects, n_live);
	cr_assert_eq(st.object_bytes, live_bytes);
	for (unsigned i = 0; i < N; i++)
		if (objs[i].h)
			cr_assert(matches(zpool_map(p, objs[i].h), objs[i].size, i), "object %u changed across the restart", i);

	/* new objects fill the holes, never a live slot */
	zpool_handle fresh[N];
	for (unsigned i = 0; i < N; i++) {
		size_t size = 1 + (i * 977) % ZPOOL_MAX_OBJECT;
		cr_assert_eq(zpool_alloc(p, size, &fresh[i]), 0);
		fill(zpool_map(p, fresh[i]), size, N + i);
	}
	for (unsigned i = 0; i < N; i++)
		if (objs[i].h)
			cr_assert(matches(zpool_map(p, objs[i].h), objs[i].size, i), "a new object overwrote object %u", i);
	for (unsigned i = 0; i < N; i++)
		zpool_free(p, fresh[i]);
	for (unsigned i = 0; i < N; i++)
		if (objs[i].h)
			zpool_free(p, objs[i].h);
	zpool_get_stats(p, &st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.slot_bytes, 0);
	cr_assert_leq(st.slabs, ZPOOL_MAX_OBJECT / 64, "at most one cached empty slab per class");
	zpool_destroy(p);
	close(fd);
}

Test(zpool, a_restore_refuses_records_that_do_not_fit_the_file)
{
	int fd = pool_file();
	struct zpool *p = zpool_create_in_file(fd);
	zpool_handle a, b;
	cr_assert_eq(zpool_alloc(p, 100, &a), 0);
	cr_assert_eq(zpool_alloc(p, 3000, &b), 0);
	zpool_destroy(p);

	zpool_handle twice[] = { a, a };
	p = zpool_create_in_file(fd);
	cr_assert_eq(zpool_restore(p, twice, 2), -EINVAL, "one slot named twice");
	zpool_destroy(p);

	/* the same slab and slot read as another size class (handle layout,
	 * zpool.c: slot in bits 0-9, size - 1 in bits 10-21, slab + 1 above) */
	zpool_handle other_class = (a & ~(((zpool_handle)1 << 22) - 1)) | (zpool_handle)(2999) << 10 | (a & 1023);
	zpool_handle clash[] = { a, other_class };
	p = zpool_create_in_file(fd);
	cr_assert_eq(zpool_restore(p, clash, 2), -EINVAL, "one slab, two classes");
	zpool_destroy(p);

	zpool_handle zero[] = { 0 };
	p = zpool_create_in_file(fd);
	cr_assert_eq(zpool_restore(p, zero, 1), -EINVAL, "handle 0 names nothing");
	zpool_destroy(p);
	close(fd);
}

Test(zpool, empty_slabs_leave_the_file)
{
	int fd = pool_file();
	struct zpool *p = zpool_create_in_file(fd);
	enum { N = 1024 };
	zpool_handle h[N];
	for (unsigned i = 0; i < N; i++) {
		cr_assert_eq(zpool_alloc(p, 2048, &h[i]), 0);
		fill(zpool_map(p, h[i]), 2048, i);
	}
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_geq((uint64_t)st.st_blocks * 512, (uint64_t)N * 2048, "the objects live in the file");
	for (unsigned i = 0; i < N; i++)
		zpool_free(p, h[i]);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_leq((uint64_t)st.st_blocks * 512, 64u * 1024, "only the one cached empty slab keeps its memory");
	zpool_destroy(p);
	close(fd);
}
