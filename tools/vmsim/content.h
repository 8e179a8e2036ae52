/* content: synthetic guest page contents, a pure function of
 * (page index, version, seed, mix).
 *
 * vmsim keeps no copy of guest RAM: to verify a page it regenerates the
 * expected content from the page's version.  Generation therefore has to be
 * fast (a few hundred ns per page) and fully deterministic.
 */
#ifndef VMSIM_CONTENT_H
#define VMSIM_CONTENT_H

#include <stdint.h>

#define CONTENT_PAGE_SIZE 4096u

enum content_kind {
	CONTENT_ZERO,    /* all zeros */
	CONTENT_TEXT,    /* words, spaces, newlines: LZ4 about 2-3x */
	CONTENT_BINARY,  /* structs of small ints and pointers: LZ4 about 2x */
	CONTENT_RANDOM,  /* incompressible */
	CONTENT_KINDS
};

/* Share of each kind in percent; the shares add up to 100.
 * shared_pct: percent of the pages (picked by index alone) that belong to a
 * base image common to every VM: at version 0 their kind and content come
 * from CONTENT_BASE_SEED instead of the VM's seed, so VMs with different
 * seeds hold those pages identical.  0 (the default): every page depends on
 * the seed. */
struct content_mix {
	uint8_t pct[CONTENT_KINDS];
	uint8_t shared_pct;
};

#define CONTENT_BASE_SEED 0x62617365696d6167ull  /* "baseimag" */

/* zero=30,text=30,binary=30,random=10 */
extern const struct content_mix content_mix_default;

/* Parses "zero=30,text=30,binary=30,random=10"; kinds left out get 0.
 * Returns 0, or -EINVAL for an unknown or repeated kind, a bad number or
 * a sum other than 100. */
int content_mix_parse(const char *spec, struct content_mix *mix);

/* "zero", "text", "binary", "random". */
const char *content_kind_name(enum content_kind kind);

/* The kind of a page at a version: drawn from mix by a hash, so a rewrite
 * may change a page's kind. */
enum content_kind content_kind_of(uint64_t index, uint32_t version,
				  const struct content_mix *mix, uint64_t seed);

/* Writes the CONTENT_PAGE_SIZE bytes of page index at version into page
 * (8-byte aligned). */
void content_fill(void *page, uint64_t index, uint32_t version,
		  const struct content_mix *mix, uint64_t seed);

/* Same, with the kind forced (for tests and the benchmark). */
void content_fill_kind(void *page, enum content_kind kind, uint64_t index,
		       uint32_t version, uint64_t seed);

#endif
