/* Description: vmsim's synthetic page content is deterministic, changes
 * with the version, follows the mix, and compresses as each kind should. */
#include <criterion/criterion.h>
#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"

#define PAGE CONTENT_PAGE_SIZE

static uint8_t a[PAGE] __attribute__((aligned(4096)));
static uint8_t b[PAGE] __attribute__((aligned(4096)));

static const struct content_mix all_text = { { 0, 100, 0, 0 } };

Test(content, deterministic)
{
	const struct content_mix *mix = &content_mix_default;
	for (uint64_t i = 0; i < 2000; i++) {
		memset(a, 0xaa, PAGE);
		memset(b, 0x55, PAGE);
		content_fill(a, i, i % 7, mix, 42);
		content_fill(b, i, i % 7, mix, 42);
		cr_assert(!memcmp(a, b, PAGE), "page %llu differs between two fills",
			  (unsigned long long)i);
		cr_assert_eq(content_kind_of(i, i % 7, mix, 42), content_kind_of(i, i % 7, mix, 42));
	}
}

Test(content, every_kind_deterministic_and_full)
{
	/* Two fills over different garbage must agree: no byte is left
	 * unwritten. */
	for (int k = 0; k < CONTENT_KINDS; k++) {
		for (uint64_t i = 0; i < 500; i++) {
			memset(a, 0xaa, PAGE);
			memset(b, 0x55, PAGE);
			content_fill_kind(a, k, i, 3, 9);
			content_fill_kind(b, k, i, 3, 9);
			cr_assert(!memcmp(a, b, PAGE), "%s page %llu", content_kind_name(k),
				  (unsigned long long)i);
		}
	}
}

Test(content, versions_differ)
{
	const struct content_mix *mix = &content_mix_default;
	unsigned compared = 0;
	for (uint64_t i = 0; i < 5000; i++) {
		enum content_kind k0 = content_kind_of(i, 0, mix, 7);
		enum content_kind k1 = content_kind_of(i, 1, mix, 7);
		if (k0 == CONTENT_ZERO && k1 == CONTENT_ZERO)
			continue;
		content_fill(a, i, 0, mix, 7);
		content_fill(b, i, 1, mix, 7);
		cr_assert(memcmp(a, b, PAGE), "page %llu: version 0 and 1 are equal",
			  (unsigned long long)i);
		compared++;
	}
	cr_assert_gt(compared, 4000);
	/* Same kind, next version: still different. */
	for (int k = CONTENT_TEXT; k < CONTENT_KINDS; k++) {
		for (uint64_t i = 0; i < 500; i++) {
			content_fill_kind(a, k, i, 5, 7);
			content_fill_kind(b, k, i, 6, 7);
			cr_assert(memcmp(a, b, PAGE), "%s page %llu", content_kind_name(k),
				  (unsigned long long)i);
		}
	}
}

Test(content, seeds_and_pages_differ)
{
	content_fill(a, 10, 0, &all_text, 1);
	content_fill(b, 10, 0, &all_text, 2);
	cr_assert(memcmp(a, b, PAGE));
	content_fill(b, 11, 0, &all_text, 1);
	cr_assert(memcmp(a, b, PAGE));
}

Test(content, zero_kind_is_zero)
{
	static const uint8_t zero[PAGE];
	memset(a, 0xff, PAGE);
	content_fill_kind(a, CONTENT_ZERO, 3, 4, 5);
	cr_assert(!memcmp(a, zero, PAGE));
}

static void check_proportions(const struct content_mix *mix, uint64_t seed)
{
	enum { N = 100000 };
	unsigned count[CONTENT_KINDS] = { 0 };
	for (uint64_t i = 0; i < N; i++)
		count[content_kind_of(i, (uint32_t)(i % 3), mix, seed)]++;
	for (int k = 0; k < CONTENT_KINDS; k++) {
		double pct = 100.0 * count[k] / N;
		cr_assert(pct >= mix->pct[k] - 2.0 && pct <= mix->pct[k] + 2.0,
			  "%s: %.2f%% of pages, mix says %u%%", content_kind_name(k), pct, mix->pct[k]);
	}
}

Test(content, kind_proportions_follow_mix)
{
	check_proportions(&content_mix_default, 1);
	struct content_mix m;
	cr_assert_eq(content_mix_parse("zero=5,text=50,binary=15,random=30", &m), 0);
	check_proportions(&m, 12345);
	cr_assert_eq(content_mix_parse("random=100", &m), 0);
	check_proportions(&m, 3);
}

Test(content, mix_parse)
{
	struct content_mix m;
	cr_assert_eq(content_mix_parse("zero=30,text=30,binary=30,random=10", &m), 0);
	cr_assert(!memcmp(&m, &content_mix_default, sizeof m));
	cr_assert_eq(content_mix_parse("text=100", &m), 0);
	cr_assert_eq(m.pct[CONTENT_TEXT], 100);
	cr_assert_eq(m.pct[CONTENT_ZERO], 0);
	cr_assert_eq(content_mix_parse("zero=30,text=30", &m), -EINVAL);
	cr_assert_eq(content_mix_parse("zero=30,txt=70", &m), -EINVAL);
	cr_assert_eq(content_mix_parse("zero=x", &m), -EINVAL);
	cr_assert_eq(content_mix_parse("zero=50,,text=50", &m), -EINVAL);
	cr_assert_eq(content_mix_parse("zero=101", &m), -EINVAL);
	cr_assert_eq(content_mix_parse("zero=30,zero=70", &m), -EINVAL);
	cr_assert_eq(content_mix_parse("", &m), -EINVAL);
}

static double lz4_average(enum content_kind k)
{
	enum { N = 2000 };
	static char out[LZ4_COMPRESSBOUND(PAGE)];
	double total = 0;
	for (uint64_t i = 0; i < N; i++) {
		content_fill_kind(a, k, i, (uint32_t)(i & 1), 77);
		int n = LZ4_compress_default((const char *)a, out, PAGE, sizeof out);
		cr_assert_gt(n, 0);
		total += n;
	}
	double avg = total / N;
	fprintf(stderr, "# lz4 %-6s average %6.0f bytes, ratio %.2f\n", content_kind_name(k), avg,
		PAGE / avg);
	return avg;
}

Test(content, lz4_compressibility)
{
	cr_assert_lt(lz4_average(CONTENT_TEXT), 0.75 * PAGE);
	cr_assert_lt(lz4_average(CONTENT_BINARY), 0.85 * PAGE);
	cr_assert_geq(lz4_average(CONTENT_RANDOM), PAGE);
	cr_assert_lt(lz4_average(CONTENT_ZERO), 64);
}

Test(content, text_is_text)
{
	for (uint64_t i = 0; i < 200; i++) {
		content_fill_kind(a, CONTENT_TEXT, i, 0, 5);
		for (unsigned j = 0; j < PAGE; j++)
			cr_assert((a[j] >= 'a' && a[j] <= 'z') || a[j] == ' ' || a[j] == '\n',
				  "page %llu byte %u is 0x%02x", (unsigned long long)i, j, a[j]);
	}
}

Test(content, shared_base_image)
{
	/* --private-pct 20: about 80% of the pages are the same in two VMs
	 * with different seeds, until rewritten; the rest differ. */
	struct content_mix mix = content_mix_default;
	mix.shared_pct = 80;
	unsigned same = 0, n = 4000;
	for (uint64_t i = 0; i < n; i++) {
		content_fill(a, i, 0, &mix, 1);
		content_fill(b, i, 0, &mix, 2);
		bool eq = !memcmp(a, b, PAGE);
		same += eq;
		if (eq && (content_kind_of(i, 1, &mix, 1) != CONTENT_ZERO ||
			   content_kind_of(i, 1, &mix, 2) != CONTENT_ZERO)) {
			content_fill(a, i, 1, &mix, 1);
			content_fill(b, i, 1, &mix, 2);
			cr_assert(memcmp(a, b, PAGE), "page %llu: rewritten pages are private",
				  (unsigned long long)i);
		}
	}
	/* zero pages of the private part match too: 80% + 20% x 30% x 30% */
	cr_assert(same > n * 78 / 100 && same < n * 86 / 100, "%u of %u pages shared", same, n);
}
