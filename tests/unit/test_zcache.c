/* Description: zcache stores zero, text and random pages byte-exact, keeps
 * incompressible pages raw, reports corruption as -EIO, and page_is_zero. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "zcache.h"

static void random_page(unsigned char *p, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (int i = 0; i < ZCACHE_PAGE; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = x >> 56;
	}
}

/* Words in varying order: compressible, but not trivially repetitive. */
static void text_page(unsigned char *p)
{
	static const char *const words[] = {
		"memory ", "server ", "page ", "fault ", "guest ", "the ",
		"compressed ", "userfaultfd ", "of ", "and ", "virtual ", "4096 ",
	};
	size_t n = 0;
	uint32_t x = 7;
	while (n < ZCACHE_PAGE) {
		x = x * 1103515245u + 12345u;
		const char *w = words[(x >> 16) % 12];
		size_t len = strlen(w);
		if (len > ZCACHE_PAGE - n)
			len = ZCACHE_PAGE - n;
		memcpy(p + n, w, len);
		n += len;
	}
}

static struct zcache *zc;

static void setup(void)
{
	zc = zcache_create();
	cr_assert_not_null(zc);
}

static void teardown(void)
{
	zcache_destroy(zc);
}

static struct zcache_ref store_and_check(const unsigned char *page)
{
	struct zcache_ref ref;
	unsigned char out[ZCACHE_PAGE];
	cr_assert_eq(zcache_store(zc, page, &ref), 0);
	cr_assert_neq(ref.handle, 0);
	cr_assert(ref.len > 0 && ref.len <= ZCACHE_PAGE);
	memset(out, 0xa5, sizeof(out));
	cr_assert_eq(zcache_load(zc, ref, out), 0);
	cr_assert_arr_eq(out, page, ZCACHE_PAGE);
	return ref;
}

TestSuite(zcache, .init = setup, .fini = teardown);

Test(zcache, zero_page_roundtrip)
{
	unsigned char page[ZCACHE_PAGE] = { 0 };
	struct zcache_ref ref = store_and_check(page);
	cr_assert_lt(ref.len, 64, "zero page took %u bytes", ref.len);
}

Test(zcache, text_page_compresses)
{
	unsigned char page[ZCACHE_PAGE];
	text_page(page);
	struct zcache_ref ref = store_and_check(page);
	cr_assert_lt(ref.len, ZCACHE_RAW_THRESHOLD, "text page took %u bytes", ref.len);
}

Test(zcache, random_page_stored_raw)
{
	unsigned char page[ZCACHE_PAGE];
	random_page(page, 42);
	struct zcache_ref ref = store_and_check(page);
	cr_assert_eq(ref.len, ZCACHE_PAGE);
}

Test(zcache, stats)
{
	unsigned char zero[ZCACHE_PAGE] = { 0 }, text[ZCACHE_PAGE], rnd[ZCACHE_PAGE];
	text_page(text);
	random_page(rnd, 1);
	struct zcache_ref r[3] = {
		store_and_check(zero), store_and_check(text), store_and_check(rnd),
	};
	struct zcache_stats st;
	zcache_get_stats(zc, &st);
	cr_assert_eq(st.pages, 3);
	cr_assert_eq(st.raw_pages, 1);
	cr_assert_eq(st.stored_bytes, (uint64_t)r[0].len + r[1].len + r[2].len);
	cr_assert_geq(st.slot_bytes, st.stored_bytes);
	cr_assert_lt(st.slot_bytes, st.stored_bytes + 3 * 64, "more than class rounding");
	cr_assert_geq(st.pool_bytes, st.slot_bytes);

	zcache_drop(zc, r[2]);
	zcache_get_stats(zc, &st);
	cr_assert_eq(st.pages, 2);
	cr_assert_eq(st.raw_pages, 0);
	cr_assert_eq(st.stored_bytes, (uint64_t)r[0].len + r[1].len);

	zcache_drop(zc, r[0]);
	zcache_drop(zc, r[1]);
	zcache_get_stats(zc, &st);
	cr_assert_eq(st.pages, 0);
	cr_assert_eq(st.stored_bytes, 0);
	cr_assert_eq(st.slot_bytes, 0);
}

Test(zcache, many_pages_roundtrip)
{
	enum { N = 2000 };
	static struct zcache_ref refs[N];
	unsigned char page[ZCACHE_PAGE], out[ZCACHE_PAGE];
	for (int i = 0; i < N; i++) {
		/* A run of varying length makes the compressed sizes vary. */
		random_page(page, i + 1);
		memset(page + (i * 2) % (ZCACHE_PAGE / 2), 'x', (i * 7) % (ZCACHE_PAGE / 2));
		cr_assert_eq(zcache_store(zc, page, &refs[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		random_page(page, i + 1);
		memset(page + (i * 2) % (ZCACHE_PAGE / 2), 'x', (i * 7) % (ZCACHE_PAGE / 2));
		cr_assert_eq(zcache_load(zc, refs[i], out), 0);
		cr_assert_arr_eq(out, page, ZCACHE_PAGE, "page %d differs", i);
		zcache_drop(zc, refs[i]);
	}
}

Test(zcache, corruption_is_eio)
{
	unsigned char page[ZCACHE_PAGE];
	/* Guard bytes catch a decoder writing past the page. */
	unsigned char out[ZCACHE_PAGE + 64];
	text_page(page);
	struct zcache_ref ref = store_and_check(page);
	unsigned char *obj = zpool_map(zcache_pool(zc), ref.handle);

	struct zcache_ref cut = ref;
	cut.len--;
	memset(out, 0x5a, sizeof(out));
	cr_assert_eq(zcache_load(zc, cut, out), -EIO, "truncated stream accepted");

	memset(obj, 0xff, ref.len);
	cr_assert_eq(zcache_load(zc, ref, out), -EIO, "0xff garbage accepted");

	memset(obj, 0x00, ref.len);
	cr_assert_eq(zcache_load(zc, ref, out), -EIO, "zeroed stream accepted");

	for (int i = ZCACHE_PAGE; i < (int)sizeof(out); i++)
		cr_assert_eq(out[i], 0x5a, "decoder wrote past the page");
	zcache_drop(zc, ref);
}

Test(zcache, page_is_zero)
{
	static unsigned char page[ZCACHE_PAGE + 1];
	cr_assert(page_is_zero(page, ZCACHE_PAGE));
	cr_assert(page_is_zero(page, 0));
	cr_assert(page_is_zero(page + 1, ZCACHE_PAGE - 1), "unaligned start");

	page[ZCACHE_PAGE - 1] = 1;
	cr_assert_not(page_is_zero(page, ZCACHE_PAGE), "last byte missed");
	cr_assert(page_is_zero(page, ZCACHE_PAGE - 1));
	cr_assert_not(page_is_zero(page + 1, ZCACHE_PAGE - 1), "last byte missed, unaligned");
	page[ZCACHE_PAGE - 1] = 0;

	page[0] = 0x80;
	cr_assert_not(page_is_zero(page, ZCACHE_PAGE), "first byte missed");
	page[0] = 0;

	/* Every position of a short tail and of a word. */
	for (int i = 0; i < 77; i++) {
		page[i] = 1;
		cr_assert_not(page_is_zero(page, 77), "byte %d missed", i);
		page[i] = 0;
	}
}
