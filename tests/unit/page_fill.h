/* page_fill: page contents for the store's unit tests, each the same bytes
 * for the same seed, so a test can make a page again instead of keeping a
 * copy.  A page is CODEC_PAGE bytes. */
#ifndef MEMSRV_TEST_PAGE_FILL_H
#define MEMSRV_TEST_PAGE_FILL_H

#include <stdint.h>
#include <string.h>

#include "codec.h"

/* Words of text picked by the seed: every codec shrinks it well, and
 * another seed gives another page. */
static inline void page_fill_text(uint8_t *p, unsigned seed)
{
	static const char *words[] = { "memory ", "server ", "guest ", "page ", "fault ", "evict ", "the ", "a " };
	size_t off = 0;
	while (off < CODEC_PAGE) {
		const char *w = words[(seed = seed * 1103515245 + 12345) >> 29];
		size_t n = strlen(w);
		if (off + n > CODEC_PAGE)
			n = CODEC_PAGE - off;
		memcpy(p + off, w, n);
		off += n;
	}
}

/* xorshift64 words from the seed (not 0): no codec shrinks them. */
static inline void page_fill_random(uint8_t *p, uint64_t seed)
{
	for (size_t i = 0; i < CODEC_PAGE; i += 8) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		memcpy(p + i, &seed, 8);
	}
}

/* The word w over the whole page: a same-filled page. */
static inline void page_fill_word(uint8_t *p, uint64_t w)
{
	for (size_t i = 0; i < CODEC_PAGE; i += 8)
		memcpy(p + i, &w, 8);
}

#endif
