/* codec: page compression with LZ4 (fast) or zstd (dense).
 *
 * A codec_ctx holds the compressors' state and scratch space for one thread:
 * no allocation per page.  Pages are 4 KiB.
 */
#ifndef MEMSRV_CODEC_H
#define MEMSRV_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CODEC_PAGE 4096

enum codec { CODEC_LZ4 = 0, CODEC_ZSTD = 1, CODECS };

struct codec_ctx;

struct codec_ctx *codec_ctx_create(void);
void codec_ctx_destroy(struct codec_ctx *ctx);

/* Compresses one page.  Returns the compressed length (the bytes are at
 * *out, in ctx, valid until the next call), or 0 when the result would not
 * be smaller than max_len: the caller keeps the page raw. */
uint32_t codec_compress(struct codec_ctx *ctx, enum codec c, const void *page, uint32_t max_len, const void **out);

/* Decompresses len bytes into page.  0, or -EIO unless the data decodes to
 * exactly one page. */
int codec_decompress(struct codec_ctx *ctx, enum codec c, const void *src, uint32_t len, void *page);

const char *codec_name(enum codec c);
/* "lz4" or "zstd": 0 and *c, or -EINVAL. */
int codec_parse(const char *name, enum codec *c);

/* A page of one repeated 64-bit word (zero included); *word gets it. */
bool page_is_samefilled(const void *page, uint64_t *word);
bool page_is_zero(const void *page, size_t len);

#endif
