/* Description: both codecs give back every page byte for byte; compressible
 * pages shrink, random ones are refused (kept raw); corrupt input is -EIO;
 * samefilled and zero detection are exact. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "page_fill.h"

Test(codec, roundtrip_both_codecs)
{
	struct codec_ctx *ctx = codec_ctx_create();
	cr_assert(ctx);
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE], copy[CODEC_PAGE];
	for (int c = 0; c < CODECS; c++) {
		for (unsigned seed = 1; seed < 50; seed++) {
			page_fill_text(page, seed);
			const void *out;
			uint32_t len = codec_compress(ctx, c, page, 3001, &out);
			cr_assert(len > 0 && len < 2048, "%s: text page compressed to %u", codec_name(c), len);
			memcpy(copy, out, len);
			memset(back, 0xaa, sizeof back);
			cr_assert_eq(codec_decompress(ctx, c, copy, len, back), 0);
			cr_assert_arr_eq(back, page, CODEC_PAGE);
		}
		page_fill_random(page, 42);
		const void *out;
		cr_assert_eq(codec_compress(ctx, c, page, 3001, &out), 0, "%s: random data must be refused", codec_name(c));
	}
	codec_ctx_destroy(ctx);
}

Test(codec, zstd_is_denser_than_lz4_on_text)
{
	struct codec_ctx *ctx = codec_ctx_create();
	uint8_t page[CODEC_PAGE];
	uint64_t total[CODECS] = { 0 };
	for (unsigned seed = 1; seed < 100; seed++) {
		page_fill_text(page, seed);
		const void *out;
		for (int c = 0; c < CODECS; c++)
			total[c] += codec_compress(ctx, c, page, CODEC_PAGE, &out);
	}
	cr_assert_lt(total[CODEC_ZSTD], total[CODEC_LZ4], "zstd %lu bytes, lz4 %lu", (unsigned long)total[CODEC_ZSTD],
		     (unsigned long)total[CODEC_LZ4]);
	codec_ctx_destroy(ctx);
}

Test(codec, corrupt_input_is_eio)
{
	struct codec_ctx *ctx = codec_ctx_create();
	uint8_t page[CODEC_PAGE], back[CODEC_PAGE], bad[CODEC_PAGE];
	page_fill_text(page, 7);
	for (int c = 0; c < CODECS; c++) {
		const void *out;
		uint32_t len = codec_compress(ctx, c, page, CODEC_PAGE, &out);
		memcpy(bad, out, len);
		cr_assert_eq(codec_decompress(ctx, c, bad, len - 1, back), -EIO, "%s: truncated", codec_name(c));
		memset(bad, 0xff, len);
		cr_assert_eq(codec_decompress(ctx, c, bad, len, back), -EIO, "%s: garbage", codec_name(c));
		cr_assert_eq(codec_decompress(ctx, c, bad, 0, back), -EIO);
	}
	codec_ctx_destroy(ctx);
}

Test(codec, samefilled_and_zero)
{
	uint64_t words[CODEC_PAGE / 8], w;
	for (size_t i = 0; i < CODEC_PAGE / 8; i++)
		words[i] = 0xdeadbeefcafef00dull;
	cr_assert(page_is_samefilled(words, &w));
	cr_assert_eq(w, 0xdeadbeefcafef00dull);
	cr_assert_not(page_is_zero(words, sizeof words));
	words[CODEC_PAGE / 8 - 1] ^= 1;
	cr_assert_not(page_is_samefilled(words, &w), "a difference in the last word");
	memset(words, 0, sizeof words);
	cr_assert(page_is_zero(words, sizeof words));
	cr_assert(page_is_samefilled(words, &w) && w == 0);
	((uint8_t *)words)[CODEC_PAGE - 1] = 1;
	cr_assert_not(page_is_zero(words, sizeof words));
	cr_assert_eq(codec_parse("zstd", &(enum codec){ 0 }), 0);
	cr_assert_eq(codec_parse("gzip", &(enum codec){ 0 }), -EINVAL);
}
