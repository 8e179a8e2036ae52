/* codec: LZ4 and zstd behind one interface, with per-thread state. */
#include "codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <zstd.h>

#define ZSTD_LEVEL 1  /* 3.2x at 18 us a page (docs/architecture.md); higher levels cost more than they save */

struct codec_ctx {
	void *lz4_state;
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
	char scratch[CODEC_PAGE];
};

struct codec_ctx *codec_ctx_create(void)
{
	struct codec_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx)
		return NULL;
	ctx->lz4_state = malloc(LZ4_sizeofState());
	ctx->zc = ZSTD_createCCtx();
	ctx->zd = ZSTD_createDCtx();
	if (!ctx->lz4_state || !ctx->zc || !ctx->zd ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(ctx->zc, ZSTD_c_compressionLevel, ZSTD_LEVEL)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(ctx->zc, ZSTD_c_checksumFlag, 0)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(ctx->zc, ZSTD_c_contentSizeFlag, 0))) {
		codec_ctx_destroy(ctx);
		return NULL;
	}
	return ctx;
}

void codec_ctx_destroy(struct codec_ctx *ctx)
{
	if (!ctx)
		return;
	free(ctx->lz4_state);
	ZSTD_freeCCtx(ctx->zc);
	ZSTD_freeDCtx(ctx->zd);
	free(ctx);
}

uint32_t codec_compress(struct codec_ctx *ctx, enum codec c, const void *page, uint32_t max_len, const void **out)
{
	uint32_t cap = max_len < sizeof ctx->scratch ? max_len : sizeof ctx->scratch;
	*out = ctx->scratch;
	if (c == CODEC_ZSTD) {
		size_t n = ZSTD_compress2(ctx->zc, ctx->scratch, cap, page, CODEC_PAGE);
		/* too small a destination is an error for zstd: keep the page raw */
		return ZSTD_isError(n) || n >= cap ? 0 : (uint32_t)n;
	}
	/* LZ4 gives up early when the output would not fit: cheap on random data */
	int n = LZ4_compress_fast_extState(ctx->lz4_state, page, ctx->scratch, CODEC_PAGE, (int)cap - 1, 1);
	return n > 0 ? (uint32_t)n : 0;
}

int codec_decompress(struct codec_ctx *ctx, enum codec c, const void *src, uint32_t len, void *page)
{
	if (len == 0 || len > CODEC_PAGE)
		return -EIO;
	if (c == CODEC_ZSTD) {
		size_t n = ZSTD_decompressDCtx(ctx->zd, page, CODEC_PAGE, src, len);
		return !ZSTD_isError(n) && n == CODEC_PAGE ? 0 : -EIO;
	}
	/* the safe decoder never reads or writes out of bounds on corrupt input */
	return LZ4_decompress_safe(src, page, (int)len, CODEC_PAGE) == CODEC_PAGE ? 0 : -EIO;
}

static const char *const names[CODECS] = { "lz4", "zstd" };

const char *codec_name(enum codec c)
{
	return c < CODECS ? names[c] : "?";
}

int codec_parse(const char *name, enum codec *c)
{
	for (int i = 0; i < CODECS; i++)
		if (!strcmp(name, names[i])) {
			*c = (enum codec)i;
			return 0;
		}
	return -EINVAL;
}

bool page_is_samefilled(const void *page, uint64_t *word)
{
	const unsigned char *p = page;
	uint64_t first;
	memcpy(&first, p, sizeof first);
	/* one branch per 64 bytes; memcpy keeps the loads legal and vectorisable */
	for (size_t off = 0; off < CODEC_PAGE; off += 64) {
		uint64_t w[8];
		memcpy(w, p + off, sizeof w);
		if ((w[0] ^ first) | (w[1] ^ first) | (w[2] ^ first) | (w[3] ^ first) | (w[4] ^ first) |
		    (w[5] ^ first) | (w[6] ^ first) | (w[7] ^ first))
			return false;
	}
	*word = first;
	return true;
}

bool page_is_zero(const void *page, size_t len)
{
	const unsigned char *p = page;
	while (len >= 64) {
		uint64_t w[8];
		memcpy(w, p, sizeof w);
		if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
			return false;
		p += 64;
		len -= 64;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, sizeof w);
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
