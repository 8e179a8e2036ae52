/* Description: identical pages are stored once and counted by reference,
 * across codecs and tiers (a twin in swap too); a hash collision is never
 * shared, also not with a page in swap; samefilled pages cost no storage;
 * the budget holds; everything comes back byte for byte, also from several
 * threads at once, with and without swap, and from a new store on the
 * files of a dead one. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "page_fill.h"
#include "store.h"

static void make_page(uint8_t *p, uint32_t seed)
{
	/* compressible, distinct per seed */
	for (size_t i = 0; i < CODEC_PAGE; i += 16) {
		uint32_t v[4] = { seed, (uint32_t)i, seed * 7, 0 };
		memcpy(p + i, v, 16);
	}
}

static struct codec_ctx *ctx;

static void setup(void) { ctx = codec_ctx_create(); }
static void teardown(void) { codec_ctx_destroy(ctx); }

TestSuite(store, .init = setup, .fini = teardown);

Test(store, identical_pages_are_stored_once)
{
	struct store_config cfg = { 0 };
	struct store *s = store_create(&cfg);
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	make_page(page, 1);
	obj_id ids[4];
	struct store_put_info info;
	for (int i = 0; i < 4; i++) {
		/* the VMs use different codecs: content decides, not bytes stored */
		cr_assert_eq(store_put(s, ctx, i % 2 ? CODEC_ZSTD : CODEC_LZ4, page, &ids[i], &info), 0);
		cr_assert_eq(info.shared, i > 0);
	}
	cr_assert(ids[0] == ids[1] && ids[1] == ids[2] && ids[2] == ids[3]);
	struct store_stats st;
	store_get_stats(s, &st);
	cr_assert_eq(st.objects, 1);
	cr_assert_eq(st.references, 4);
	cr_assert_eq(st.shared_pages, 4);
	cr_assert_eq(st.shared_saved_bytes, 3 * (uint64_t)info.len);
	cr_assert_eq(st.dedup_hits, 3);
	/* the last reference frees it */
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(store_get(s, ctx, ids[0], back), 0);
		cr_assert_arr_eq(back, page, CODEC_PAGE);
		store_drop(s, ids[i]);
	}
	store_get_stats(s, &st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.references, 0);
	cr_assert_eq(st.shared_pages, 0);
	cr_assert_eq(st.shared_saved_bytes, 0);
	cr_assert_eq(st.cache_bytes, 0);
	store_destroy(s);
}

Test(store, a_hash_collision_is_never_shared)
{
	/* two bits of hash: thousands of pages collide */
	struct store_config cfg = { .hash_bits = 2 };
	struct store *s = store_create(&cfg);
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	enum { N = 2000 };
	static obj_id ids[N];
	struct store_put_info info;
	for (uint32_t i = 0; i < N; i++) {
		make_page(page, i + 1);
		cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &ids[i], &info), 0);
		cr_assert_not(info.shared, "page %u was shared with another content", i);
	}
	struct store_stats st;
	store_get_stats(s, &st);
	cr_assert_eq(st.objects, N);
	cr_assert_gt(st.hash_collisions, N, "the weak hash must have collided");
	for (uint32_t i = 0; i < N; i++) {
		make_page(page, i + 1);
		cr_assert_eq(store_get(s, ctx, ids[i], back), 0);
		cr_assert_arr_eq(back, page, CODEC_PAGE, "page %u came back with other content", i);
	}
	/* a true duplicate is still found among the colliders */
	make_page(page, 777);
	obj_id again;
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &again, &info), 0);
	cr_assert(info.shared);
	cr_assert_eq(again, ids[776]);
	store_destroy(s);
}

Test(store, samefilled_pages_cost_nothing)
{
	struct store_config cfg = { 0 };
	struct store *s = store_create(&cfg);
	uint64_t page[CODEC_PAGE / 8], back[CODEC_PAGE / 8];
	for (size_t i = 0; i < CODEC_PAGE / 8; i++)
		page[i] = 0x0101010101010101ull;
	obj_id a, b;
	struct store_put_info info;
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &a, &info), 0);
	cr_assert(info.samefilled && info.len == 0);
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &b, &info), 0);
	cr_assert(info.shared && a == b);
	for (size_t i = 0; i < CODEC_PAGE / 8; i++)
		page[i] = 7;
	obj_id c;
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &c, &info), 0);
	cr_assert(!info.shared && c != a, "another word is another page");
	struct store_stats st;
	store_get_stats(s, &st);
	cr_assert_eq(st.samefilled_objects, 2);
	cr_assert_eq(st.cache_bytes, 0);
	cr_assert_eq(st.cache_pool_bytes, 0);
	cr_assert_eq(store_get(s, ctx, a, back), 0);
	cr_assert_eq(back[0], 0x0101010101010101ull);
	cr_assert_eq(back[CODEC_PAGE / 8 - 1], 0x0101010101010101ull);
	store_destroy(s);
}

Test(store, incompressible_pages_are_kept_raw_and_the_budget_holds)
{
	struct store_config cfg = { .cache_budget = 256 * 1024 };
	struct store *s = store_create(&cfg);
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	page_fill_random(page, 99);
	obj_id id;
	struct store_put_info info;
	cr_assert_eq(store_put(s, ctx, CODEC_ZSTD, page, &id, &info), 0);
	cr_assert_eq(info.len, CODEC_PAGE, "random data is stored as it is");
	cr_assert_eq(store_get(s, ctx, id, back), 0);
	cr_assert_arr_eq(back, page, CODEC_PAGE);
	int ret = 0;
	uint32_t n = 0;
	for (uint32_t seed = 1; seed < 100000 && ret == 0; seed++, n++) {
		page[0] = (uint8_t)seed;
		page[1] = (uint8_t)(seed >> 8);
		page[2] = (uint8_t)(seed >> 16);
		ret = store_put(s, ctx, CODEC_LZ4, page, &id, &info);
	}
	cr_assert_eq(ret, -ENOSPC, "the budget must stop the cache");
	struct store_stats st;
	store_get_stats(s, &st);
	cr_assert_leq(st.cache_pool_bytes, cfg.cache_budget);
	cr_assert_gt(n, 16);
	store_destroy(s);
}

struct worker {
	struct store *s;
	unsigned id;
	int bad;
};

static void *hammer(void *arg)
{
	struct worker *w = arg;
	struct codec_ctx *c = codec_ctx_create();
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	obj_id ids[256];
	for (int round = 0; round < 20; round++) {
		for (unsigned i = 0; i < 256; i++) {
			make_page(page, i % 64 + 1);  /* the threads share these pages */
			struct store_put_info info;
			int ret;
			while ((ret = store_put(w->s, c, w->id % 2 ? CODEC_ZSTD : CODEC_LZ4, page, &ids[i], &info)) ==
			       -EBUSY)
				store_wait_room(w->s, 100);  /* writeback to swap is making room */
			if (ret)
				w->bad++;
		}
		for (unsigned i = 0; i < 256; i++) {
			make_page(page, i % 64 + 1);
			if (store_get(w->s, c, ids[i], back) || memcmp(back, page, CODEC_PAGE))
				w->bad++;
			store_drop(w->s, ids[i]);
		}
	}
	codec_ctx_destroy(c);
	return NULL;
}

static void hammer_with_four_threads(struct store *s)
{
	pthread_t t[4];
	struct worker w[4];
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct worker){ s, i, 0 };
		pthread_create(&t[i], NULL, hammer, &w[i]);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].bad, 0, "thread %u saw %d bad pages", i, w[i].bad);
	}
}

Test(store, threads_share_and_drop_safely)
{
	struct store_config cfg = { 0 };
	struct store *s = store_create(&cfg);
	hammer_with_four_threads(s);
	struct store_stats st;
	store_get_stats(s, &st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.references, 0);
	store_destroy(s);
}

/* A store over a swap space of one file in a fresh directory under
 * /var/tmp (a real filesystem: direct I/O where it allows); the fini
 * removes them, also after a failed assertion. */
static char swap_dir[64];
static struct swapfile *swap;
static struct store *swap_store;

static struct store *swap_store_create(struct store_config cfg)
{
	snprintf(swap_dir, sizeof swap_dir, "/var/tmp/store-test-XXXXXX");
	cr_assert_not_null(mkdtemp(swap_dir));
	swap = swapfile_create();
	char why[256] = "";
	cr_assert_not_null(swap);
	cr_assert_eq(swapfile_add_in_dir(swap, swap_dir, 64u << 20, why, sizeof why), 0, "%s", why);
	cfg.swap = swap;
	swap_store = store_create(&cfg);
	cr_assert_not_null(swap_store);
	return swap_store;
}

static void swap_teardown(void)
{
	store_destroy(swap_store);  /* first: its writeback thread uses the swap */
	swapfile_destroy(swap);     /* unlinks the file it created */
	if (swap_dir[0])
		rmdir(swap_dir);
	swap_store = NULL;
	swap = NULL;
	swap_dir[0] = 0;
}

/* Stores page, waiting for writeback while the cache is at its budget. */
static obj_id put_waiting(struct store *s, const uint8_t *page, struct store_put_info *info)
{
	obj_id id;
	int ret;
	while ((ret = store_put(s, ctx, CODEC_LZ4, page, &id, info)) == -EBUSY)
		store_wait_room(s, 100);
	cr_assert_eq(ret, 0);
	return id;
}

/* Stores other pages until writeback took object id to swap; their ids go
 * to fillers (up to max), their number is returned. */
static unsigned push_to_swap(struct store *s, obj_id id, obj_id *fillers, unsigned max)
{
	uint8_t page[CODEC_PAGE];
	struct store_put_info info;
	struct store_peek p;
	unsigned n = 0;
	for (store_peek(s, id, &p); p.tier != TIER_SWAP; store_peek(s, id, &p)) {
		cr_assert_lt(n, max, "writeback never took object %u to swap", id);
		make_page(page, 100000 + n);
		fillers[n++] = put_waiting(s, page, &info);
	}
	return n;
}

Test(store, a_page_whose_twin_is_in_swap_is_shared, .fini = swap_teardown)
{
	struct store *s = swap_store_create((struct store_config){ .cache_budget = 64 * 1024 });
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	struct store_put_info info;
	make_page(page, 1);
	obj_id a = put_waiting(s, page, &info);
	static obj_id fillers[4096];
	unsigned n = push_to_swap(s, a, fillers, 4096);

	struct store_stats before, st;
	store_get_stats(s, &before);
	obj_id again = put_waiting(s, page, &info);
	cr_assert(info.shared, "the twin in swap was not shared");
	cr_assert_eq(again, a);
	struct store_peek p;
	store_peek(s, a, &p);
	cr_assert_eq(p.refs, 2);
	cr_assert_eq(p.tier, TIER_SWAP);
	store_get_stats(s, &st);
	cr_assert_eq(st.objects, before.objects, "the page was stored a second time");
	cr_assert_eq(st.dedup_hits, before.dedup_hits + 1);
	cr_assert_eq(st.shared_pages, before.shared_pages + 2);
	cr_assert_eq(st.shared_saved_bytes, before.shared_saved_bytes + p.len);
	cr_assert_eq(st.references, before.references + 1);
	cr_assert_eq(st.swap_read_errors, 0);
	cr_assert_eq(st.swap_checksum_errors, 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(store_get(s, ctx, a, back), 0);
		cr_assert_arr_eq(back, page, CODEC_PAGE);
		store_drop(s, a);
	}
	for (unsigned i = 0; i < n; i++)
		store_drop(s, fillers[i]);
}

Test(store, a_hash_collision_with_a_page_in_swap_is_never_shared, .fini = swap_teardown)
{
	/* one bit of hash: every other page collides with any one */
	struct store *s = swap_store_create((struct store_config){ .cache_budget = 64 * 1024, .hash_bits = 1 });
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	struct store_put_info info;
	make_page(page, 1);
	obj_id a = put_waiting(s, page, &info);
	static obj_id fillers[4096];
	unsigned n = push_to_swap(s, a, fillers, 4096);
	for (unsigned i = 0; i < n; i++)
		store_drop(s, fillers[i]);
	struct store_stats st;
	for (int i = 0; i < 500; i++, usleep(10000)) {  /* writeback frees the ones it was writing */
		store_get_stats(s, &st);
		if (st.objects == 1)
			break;
	}
	cr_assert_eq(st.objects, 1, "only the page in swap is left");

	/* other pages until one collides: the only candidate is the one in swap */
	for (uint32_t seed = 2;; seed++) {
		cr_assert_lt(seed, 100, "no page collided with the one in swap");
		make_page(page, seed);
		uint64_t collisions = st.hash_collisions;
		obj_id b = put_waiting(s, page, &info);
		store_get_stats(s, &st);
		if (st.hash_collisions == collisions) {
			store_drop(s, b);
			continue;
		}
		cr_assert_not(info.shared, "a page was shared with another content in swap");
		cr_assert_neq(b, a);
		cr_assert_eq(st.objects, 2);
		cr_assert_eq(st.dedup_hits, 0);
		cr_assert_eq(st.swap_read_errors, 0);
		cr_assert_eq(st.swap_checksum_errors, 0);
		cr_assert_eq(store_get(s, ctx, b, back), 0);
		cr_assert_arr_eq(back, page, CODEC_PAGE, "the colliding page came back with other content");
		store_drop(s, b);
		break;
	}
	make_page(page, 1);
	cr_assert_eq(store_get(s, ctx, a, back), 0);
	cr_assert_arr_eq(back, page, CODEC_PAGE);
	store_drop(s, a);
}

Test(store, threads_share_and_drop_safely_across_swap, .fini = swap_teardown)
{
	/* a budget of a few compressed pages, far below the 64 shared ones:
	 * puts wait for writeback, and twins are found in swap while other
	 * threads drop them (at 32 KiB a loaded machine sometimes had the
	 * threads done before writeback ran at all) */
	struct store *s = swap_store_create((struct store_config){ .cache_budget = 16 * 1024 });
	hammer_with_four_threads(s);
	struct store_stats st;
	for (int i = 0; i < 500; i++, usleep(10000)) {  /* writeback frees the ones it was writing */
		store_get_stats(s, &st);
		if (!st.objects)
			break;
	}
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.references, 0);
	cr_assert_gt(st.writeback_objects, 0, "nothing went to swap");
	cr_assert_eq(st.swap_read_errors, 0);
}

/* Page i of the restart tests: a tenth samefilled, a seventh random (kept
 * raw), the rest compressible; contents repeat every 1500 pages. */
static void restart_page(uint8_t *p, uint32_t i)
{
	uint32_t k = i % 1500;
	if (k % 10 == 0) {
		memset(p, (int)(k / 10 + 1), CODEC_PAGE);
	} else if (k % 7 == 0) {
		page_fill_random(p, k * 0x9e3779b97f4a7c15ull + 1);
	} else {
		make_page(p, k + 1000);
	}
}

static struct store_config persistent_config(void)
{
	struct store_config cfg = { .persistent = true };
	cfg.objects_fd = memfd_create("objects", MFD_CLOEXEC);
	cfg.pool_fd = memfd_create("pool", MFD_CLOEXEC);
	cr_assert(cfg.objects_fd >= 0 && cfg.pool_fd >= 0);
	return cfg;
}

Test(store, a_new_store_on_the_files_of_a_dead_one_finds_every_page)
{
	enum { N = 3000 };
	struct store_config cfg = persistent_config();
	struct store *s = store_create(&cfg);
	cr_assert_not_null(s);
	static obj_id ids[N];
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	struct store_put_info info;
	for (uint32_t i = 0; i < N; i++) {
		restart_page(page, i);
		cr_assert_eq(store_put(s, ctx, i % 2 ? CODEC_ZSTD : CODEC_LZ4, page, &ids[i], &info), 0);
	}
	/* a fifth of the pages went back to their VMs before the crash */
	static obj_id refs[N];
	size_t n = 0;
	for (uint32_t i = 0; i < N; i++) {
		if (i % 5 == 0) {
			store_drop(s, ids[i]);
			ids[i] = 0;
		} else {
			refs[n++] = ids[i];
		}
	}
	struct store_stats before;
	store_get_stats(s, &before);
	store_destroy(s);  /* what kill -9 leaves: the files */

	s = store_create(&cfg);
	cr_assert_eq(store_restore(s, refs, n), 0);
	struct store_stats st;
	store_get_stats(s, &st);
	cr_assert_eq(st.objects, before.objects);
	cr_assert_eq(st.references, n);
	cr_assert_eq(st.shared_pages, before.shared_pages);
	cr_assert_eq(st.cache_bytes, before.cache_bytes);
	cr_assert_eq(st.cache_raw_objects, before.cache_raw_objects);
	cr_assert_eq(st.samefilled_objects, before.samefilled_objects);
	cr_assert_eq(st.cache_slot_bytes, before.cache_slot_bytes);
	for (uint32_t i = 0; i < N; i++) {
		if (!ids[i])
			continue;
		restart_page(page, i);
		cr_assert_eq(store_get(s, ctx, ids[i], back), 0);
		cr_assert_arr_eq(back, page, CODEC_PAGE, "page %u changed across the restart", i);
	}
	/* the index is back: a page stored again is found, not copied */
	restart_page(page, 1);
	obj_id again;
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &again, &info), 0);
	cr_assert(info.shared && again == ids[1], "a restored object was not found by its content");
	store_drop(s, again);
	/* new objects take free ids and slots, never live ones */
	for (uint32_t i = N; i < N + 500; i++) {
		make_page(page, i + 100000);
		cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &again, &info), 0);
		cr_assert_not(info.shared);
		store_drop(s, again);
	}
	for (uint32_t i = 0; i < N; i++)
		if (ids[i]) {
			restart_page(page, i);
			cr_assert_eq(store_get(s, ctx, ids[i], back), 0);
			cr_assert_arr_eq(back, page, CODEC_PAGE, "page %u overwritten after the restart", i);
			store_drop(s, ids[i]);
		}
	store_get_stats(s, &st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.references, 0);
	cr_assert_eq(st.cache_bytes, 0);
	store_destroy(s);
	close(cfg.objects_fd);
	close(cfg.pool_fd);
}

Test(store, a_restore_refuses_references_to_nothing)
{
	struct store_config cfg = persistent_config();
	struct store *s = store_create(&cfg);
	uint8_t page[CODEC_PAGE];
	obj_id a, b;
	struct store_put_info info;
	make_page(page, 1);
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &a, &info), 0);
	make_page(page, 2);
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &b, &info), 0);
	store_drop(s, a);
	store_destroy(s);

	obj_id freed[] = { b, a };
	s = store_create(&cfg);
	cr_assert_eq(store_restore(s, freed, 2), -EINVAL, "a page names a freed object");
	store_destroy(s);
	obj_id beyond[] = { b + 1000 };
	s = store_create(&cfg);
	cr_assert_eq(store_restore(s, beyond, 1), -EINVAL, "a page names an id never handed out");
	store_destroy(s);
	obj_id none[] = { 0 };
	s = store_create(&cfg);
	cr_assert_eq(store_restore(s, none, 1), -EINVAL);
	store_destroy(s);
	close(cfg.objects_fd);
	close(cfg.pool_fd);
}

/* Reads rd's bytes of swap as they are, into buf (aligned for O_DIRECT). */
static int read_as_is(const struct store_read *rd, uint8_t *buf)
{
	ssize_t n = pread(rd->io.fd, buf, rd->io.len, (off_t)rd->io.offset);
	return n < 0 ? -errno : (int)n;
}

Test(store, a_failed_swap_read_names_its_cause_and_bad_content_is_a_checksum_error, .fini = swap_teardown)
{
	struct store *s = swap_store_create((struct store_config){ .cache_budget = 64 * 1024 });
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	static uint8_t buf[CODEC_PAGE] __attribute__((aligned(CODEC_PAGE)));
	struct store_put_info info;
	make_page(page, 1);  /* compressible: LZ4 in swap */
	obj_id a = put_waiting(s, page, &info);
	static obj_id fillers[4096];
	unsigned n = push_to_swap(s, a, fillers, 4096);
	struct store_read rd;
	struct store_stats st;

	cr_assert_eq(store_fetch(s, ctx, a, back, &rd), 1, "the page is in swap");
	int res = read_as_is(&rd, buf);
	cr_assert_eq(res, (int)rd.io.len);
	cr_assert_eq(store_read_end(s, ctx, &rd, buf, res - 1, back), STORE_ERR_SHORT_READ);
	store_get_stats(s, &st);
	cr_assert_eq(st.swap_read_errors, 1);
	cr_assert_eq(st.swap_checksum_errors, 0, "a short read is no checksum error");

	cr_assert_eq(store_fetch(s, ctx, a, back, &rd), 1);
	cr_assert_eq(store_read_end(s, ctx, &rd, buf, -EIO, back), -EIO, "the read's own error, as it is");
	cr_assert_not(store_err_final(-EIO), "an I/O error may pass");

	/* a complete read of other bytes: the literals differ, the page does not match its hash */
	cr_assert_eq(store_fetch(s, ctx, a, back, &rd), 1);
	res = read_as_is(&rd, buf);
	buf[rd.len / 2] ^= 0x55;
	int ret = store_read_end(s, ctx, &rd, buf, res, back);
	cr_assert(ret == STORE_ERR_CHECKSUM || ret == STORE_ERR_DECOMPRESS, "%d", ret);
	cr_assert(store_err_final(ret));
	store_get_stats(s, &st);
	cr_assert_eq(st.swap_checksum_errors, 1, "a compressed page with bad content is a checksum error");

	/* bytes that are no LZ4 at all */
	cr_assert_eq(store_fetch(s, ctx, a, back, &rd), 1);
	memset(buf, 0xff, sizeof buf);
	cr_assert_eq(store_read_end(s, ctx, &rd, buf, (int)rd.io.len, back), STORE_ERR_DECOMPRESS);
	store_get_stats(s, &st);
	cr_assert_eq(st.swap_checksum_errors, 2);
	cr_assert_eq(st.swap_read_errors, 4, "every failed read counts");

	/* the object is unharmed: a good read still brings it back */
	cr_assert_eq(store_get(s, ctx, a, back), 0);
	cr_assert_arr_eq(back, page, CODEC_PAGE);
	store_drop(s, a);
	for (unsigned i = 0; i < n; i++)
		store_drop(s, fillers[i]);
}

/* store_read_stored hands an object over as it is kept: what decompresses
 * to the page, with its codec, raw when it was kept raw, a word when
 * same-filled, and from swap the bytes that were written there. */
static void expect_stored_is(struct store *s, obj_id id, const uint8_t *page, bool raw)
{
	static uint8_t buf[CODEC_PAGE], back[CODEC_PAGE];
	struct store_stored st;
	cr_assert_eq(store_read_stored(s, ctx, id, buf, &st), 0);
	store_unpin(s, id);
	cr_assert_not(st.samefilled);
	if (raw) {
		cr_assert_eq(st.len, CODEC_PAGE);
		cr_assert_arr_eq(buf, page, CODEC_PAGE);
		return;
	}
	cr_assert_lt(st.len, CODEC_PAGE, "a compressible page is handed over compressed");
	cr_assert_eq(codec_decompress(ctx, st.codec, buf, st.len, back), 0);
	cr_assert_arr_eq(back, page, CODEC_PAGE);
}

Test(store, an_object_is_read_as_it_is_stored)
{
	struct store_config cfg = { 0 };
	struct store *s = store_create(&cfg);
	uint8_t page[CODEC_PAGE], noise[CODEC_PAGE], same[CODEC_PAGE];
	make_page(page, 3);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < CODEC_PAGE; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		noise[i] = (uint8_t)x;
	}
	uint64_t word = 0x0123456789abcdefull;
	page_fill_word(same, word);
	obj_id a, b, c;
	struct store_put_info info;
	cr_assert_eq(store_put(s, ctx, CODEC_ZSTD, page, &a, &info), 0);
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, noise, &b, &info), 0);
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, same, &c, &info), 0);
	expect_stored_is(s, a, page, false);
	static uint8_t buf[CODEC_PAGE];
	struct store_stored st;
	cr_assert_eq(store_read_stored(s, ctx, a, buf, &st), 0);
	cr_assert_eq(st.codec, CODEC_ZSTD, "the codec it was stored with");
	expect_stored_is(s, b, noise, true);
	cr_assert_eq(store_read_stored(s, ctx, c, buf, &st), 0);
	cr_assert(st.samefilled);
	cr_assert_eq(st.word, word);
	store_unpin(s, c);
	store_drop(s, b);
	store_drop(s, c);
	cr_assert_eq(store_read_stored(s, ctx, b, buf, &st), -ENOENT, "a freed object is no object");

	/* pinned, a that lost its last reference keeps its id: no new page
	 * gets it, so a copy keyed by the id cannot name other content */
	store_drop(s, a);
	obj_id d;
	make_page(page, 4);
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &d, &info), 0);
	cr_assert_neq(d, a, "a pinned id was handed out again");
	struct store_stats ss;
	store_get_stats(s, &ss);
	cr_assert_eq(ss.objects, 2, "a and d");
	store_unpin(s, a);
	store_get_stats(s, &ss);
	cr_assert_eq(ss.objects, 1, "unpinned, a went");
	store_drop(s, d);
	store_destroy(s);
}

Test(store, an_object_in_swap_is_read_as_written_and_checked, .fini = swap_teardown)
{
	struct store *s = swap_store_create((struct store_config){ .cache_budget = 64 * 1024 });
	uint8_t page[CODEC_PAGE];
	struct store_put_info info;
	make_page(page, 1);
	obj_id a = put_waiting(s, page, &info);
	static obj_id fillers[4096];
	unsigned n = push_to_swap(s, a, fillers, 4096);
	expect_stored_is(s, a, page, false);
	struct store_stats st;
	store_get_stats(s, &st);
	cr_assert_eq(st.swap_read_errors, 0);
	cr_assert_eq(st.swap_checksum_errors, 0);
	/* the pin is released: the object goes with its last reference */
	uint64_t objects = st.objects;
	store_drop(s, a);
	store_get_stats(s, &st);
	cr_assert_eq(st.objects, objects - 1);
	for (unsigned i = 0; i < n; i++)
		store_drop(s, fillers[i]);
}

Test(store, a_page_that_came_compressed_is_kept_as_it_came_and_found_by_its_hash)
{
	struct store_config cfg = { 0 };
	struct store *s = store_create(&cfg);
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE];
	static uint8_t enc[CODEC_PAGE], buf[CODEC_PAGE];
	make_page(page, 9);
	const void *out;
	uint32_t len = codec_compress(ctx, CODEC_ZSTD, page, CODEC_PAGE, &out);
	cr_assert_gt(len, 0);
	memcpy(enc, out, len);
	obj_id a, b, c;
	struct store_put_info info;
	cr_assert_eq(store_put_encoded(s, ctx, CODEC_ZSTD, page, enc, len, &a, &info), 0);
	cr_assert_eq(info.len, len, "the bytes it came as, not compressed again");
	struct store_stored st;
	cr_assert_eq(store_read_stored(s, ctx, a, buf, &st), 0);
	cr_assert_eq(st.codec, CODEC_ZSTD);
	cr_assert_eq(st.len, len);
	cr_assert_arr_eq(buf, enc, len);
	store_unpin(s, a);
	cr_assert_eq(store_get(s, ctx, a, back), 0);
	cr_assert_arr_eq(back, page, CODEC_PAGE);
	/* the same content put the usual way is shared with it */
	cr_assert_eq(store_put(s, ctx, CODEC_LZ4, page, &b, &info), 0);
	cr_assert(info.shared && b == a);
	/* and it is found by the hash any node computes of its content */
	uint64_t lo, hi;
	store_content_hash(page, &lo, &hi);
	cr_assert_eq(store_share_by_hash(s, lo, hi, &c), 0);
	cr_assert_eq(c, a);
	cr_assert_eq(store_share_by_hash(s, lo ^ 1, hi, &c), -ENOENT);
	struct store_stats ss;
	store_get_stats(s, &ss);
	cr_assert_eq(ss.references, 3);
	store_drop(s, a);
	store_drop(s, b);
	store_drop(s, a);
	/* a raw page that came raw stays raw */
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < CODEC_PAGE; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		page[i] = (uint8_t)x;
	}
	cr_assert_eq(store_put_encoded(s, ctx, CODEC_LZ4, page, page, CODEC_PAGE, &a, &info), 0);
	cr_assert_eq(info.len, CODEC_PAGE);
	cr_assert_eq(store_get(s, ctx, a, back), 0);
	cr_assert_arr_eq(back, page, CODEC_PAGE);
	store_drop(s, a);
	store_get_stats(s, &ss);
	cr_assert_eq(ss.objects, 0);
	store_destroy(s);
}
