/*
 * memload: guest-side memory workload for testing memsrv.
 *
 *   memload --mib N [--rewrite-pct P] [--passes K] [--hold-s S]
 *           [--content random|mixed]
 *
 * Maps N MiB of anonymous memory, fills every 8-byte word with a function
 * of (page, word, generation), then runs K passes of: rewrite P% of the
 * pages with a new generation, verify every word of the whole area.
 * Content random (the default): every word a hash, nothing compresses.
 * Content mixed: each (page, generation) is one of four kinds, a quarter
 * each: sparse (one nonzero marker word, the rest zeros), text (8-byte
 * words of a vocabulary of 128), repeating (a 64-byte pattern), random.
 * In both, a page read back as all zeros is a mismatch.
 * Prints one line
 *   MEMLOAD RESULT mib=N mismatches=M fill_ms=.. rewrite_ms=.. verify_ms=..
 *     content=random|mixed
 * (M = number of pages with at least one wrong word, summed over passes;
 * the times are summed over passes).
 * With --hold-s S it then prints "MEMLOAD HOLDING", touches nothing for S
 * seconds, verifies again and prints a second RESULT line (fill_ms and
 * rewrite_ms are 0 there, mismatches counts that verification only).
 * Exit status 0 iff no mismatch was found.
 *
 * Build: gcc -static -O2 -o memload memload.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SIZE 4096u
#define WORDS_PER_PAGE (PAGE_SIZE / 8u)
#define MAX_REPORT 8

static uint64_t mix64(uint64_t x)
{
	/* splitmix64 finalizer */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static inline uint64_t page_seed(uint64_t page, uint32_t gen)
{
	return mix64((page << 20) ^ ((uint64_t)gen << 1) ^ 0x6d656d6c6f6164ULL);
}

static inline uint64_t word_val(uint64_t seed, uint64_t word)
{
	/* never 0, so a lost (zero-filled) page is always detected */
	return mix64(seed + (word + 1) * 0x9e3779b97f4a7c15ULL) | 1;
}

enum page_kind { KIND_RANDOM, KIND_SPARSE, KIND_TEXT, KIND_REPEATING };

static bool content_mixed;

static inline enum page_kind page_kind(uint64_t seed)
{
	return content_mixed ? (enum page_kind)(seed >> 62) : KIND_RANDOM;
}

/* Text pages are words of a vocabulary of 128, each 7 letters of a
 * 16-letter alphabet and a space: a page holds most words more than once,
 * which LZ4 finds (about 2x), and few distinct letters, which zstd's
 * entropy coding uses too.  No byte is 0. */
#define VOCABULARY 128
static uint64_t vocabulary[VOCABULARY];

static void make_vocabulary(void)
{
	static const char alphabet[16] = "etaoinshrdlucmfw";
	for (uint64_t k = 0; k < VOCABULARY; k++) {
		uint64_t h = mix64(k ^ 0x74657874ULL), v = (uint64_t)' ' << 56;
		for (unsigned b = 0; b < 7; b++)
			v |= (uint64_t)(uint8_t)alphabet[(h >> (4 * b)) & 15] << (8 * b);
		vocabulary[k] = v;
	}
}

/* Writes the page whose seed is seed: each word a function of (seed, word),
 * never a page of zeros (the kind's switch outside the loops: this runs
 * under TCG) */
static void write_page(uint64_t *p, uint64_t seed)
{
	uint64_t w;
	switch (page_kind(seed)) {
	case KIND_SPARSE: /* one marker word, at a place the seed chooses */
		memset(p, 0, PAGE_SIZE);
		p[(seed >> 8) % WORDS_PER_PAGE] = word_val(seed, 0);
		break;
	case KIND_TEXT:
		for (w = 0; w < WORDS_PER_PAGE; w++)
			p[w] = vocabulary[word_val(seed, w) >> 57];
		break;
	case KIND_REPEATING: /* 64 bytes repeated */
		for (w = 0; w < WORDS_PER_PAGE; w++)
			p[w] = w < 8 ? word_val(seed, w) : p[w - 8];
		break;
	default:
		for (w = 0; w < WORDS_PER_PAGE; w++)
			p[w] = word_val(seed, w);
	}
}

static void fill_page(uint64_t *p, uint64_t page, uint32_t gen)
{
	write_page(p, page_seed(page, gen));
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: memload --mib N [--rewrite-pct P] [--passes K] "
			"[--hold-s S] [--content random|mixed]\n");
	exit(2);
}

static long parse_num(const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "memload: bad number '%s' (range %ld..%ld)\n", s,
			min, max);
		exit(2);
	}
	return v;
}

/* --content: true for mixed */
static bool parse_content(const char *s)
{
	if (strcmp(s, "random") && strcmp(s, "mixed")) {
		fprintf(stderr, "memload: bad content '%s' (random or mixed)\n", s);
		exit(2);
	}
	return !strcmp(s, "mixed");
}

/* The first word of p that is not the page of seed's (WORDS_PER_PAGE if
 * none); want receives the expected page */
static uint64_t first_bad_word(const uint64_t *p, uint64_t seed, uint64_t *want)
{
	uint64_t w;
	if (page_kind(seed) == KIND_RANDOM) { /* today's speed: no copy */
		for (w = 0; w < WORDS_PER_PAGE; w++)
			if (p[w] != word_val(seed, w))
				break;
		if (w < WORDS_PER_PAGE)
			write_page(want, seed);
		return w;
	}
	write_page(want, seed);
	for (w = 0; w < WORDS_PER_PAGE; w++)
		if (p[w] != want[w])
			break;
	return w;
}

/* Verify all pages; returns the number of bad pages, reports the first few. */
static uint64_t verify(const uint64_t *mem, uint64_t npages, const uint32_t *gen,
		       uint64_t *reported)
{
	uint64_t bad = 0;
	for (uint64_t pg = 0; pg < npages; pg++) {
		const uint64_t *p = mem + pg * WORDS_PER_PAGE;
		uint64_t want[WORDS_PER_PAGE];
		uint64_t w = first_bad_word(p, page_seed(pg, gen[pg]), want);
		if (w == WORDS_PER_PAGE)
			continue;
		bad++;
		if (*reported < MAX_REPORT) {
			(*reported)++;
			uint64_t nbad = 0, nzero = 0;
			for (uint64_t v = 0; v < WORDS_PER_PAGE; v++) {
				nbad += p[v] != want[v];
				nzero += p[v] == 0;
			}
			/* which generation is the whole page of, if any? */
			long found = -1;
			uint64_t other[WORDS_PER_PAGE];
			for (uint32_t g = 0; g <= gen[pg] + 1 && found < 0; g++) {
				write_page(other, page_seed(pg, g));
				if (!memcmp(p, other, PAGE_SIZE))
					found = g;
			}
			printf("MEMLOAD MISMATCH page=%" PRIu64 " offset=0x%" PRIx64
			       " first_bad_word=%" PRIu64 " bad_words=%" PRIu64
			       " zero_words=%" PRIu64 " expected_gen=%u found_gen=%ld"
			       " got=0x%016" PRIx64 "\n",
			       pg, pg * (uint64_t)PAGE_SIZE, w, nbad, nzero, gen[pg],
			       found, p[w]);
		}
	}
	return bad;
}

int main(int argc, char **argv)
{
	long mib = -1, pct = 25, passes = 1, hold = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		if (!strcmp(a, "--mib"))
			mib = parse_num(argv[++i], 1, 1L << 24);
		else if (!strcmp(a, "--rewrite-pct"))
			pct = parse_num(argv[++i], 0, 100);
		else if (!strcmp(a, "--passes"))
			passes = parse_num(argv[++i], 1, 1000000);
		else if (!strcmp(a, "--hold-s"))
			hold = parse_num(argv[++i], 0, 1L << 30);
		else if (!strcmp(a, "--content"))
			content_mixed = parse_content(argv[++i]);
		else
			usage();
	}
	if (mib < 0)
		usage();

	make_vocabulary();
	uint64_t bytes = (uint64_t)mib << 20;
	uint64_t npages = bytes / PAGE_SIZE;
	uint64_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t *gen = calloc(npages, sizeof *gen);
	if (mem == MAP_FAILED || !gen) {
		printf("MEMLOAD ERROR cannot allocate %ld MiB: %s\n", mib,
		       strerror(errno));
		return 1;
	}

	const char *content = content_mixed ? "mixed" : "random";
	printf("memload: %ld MiB (%" PRIu64 " pages), rewrite %ld%%, %ld pass(es),"
	       " hold %ld s, content %s\n", mib, npages, pct, passes, hold, content);

	double t0 = now_ms();
	for (uint64_t pg = 0; pg < npages; pg++)
		fill_page(mem + pg * WORDS_PER_PAGE, pg, 0);
	double fill_ms = now_ms() - t0;

	double rewrite_ms = 0, verify_ms = 0;
	uint64_t mismatches = 0, reported = 0;
	for (long pass = 1; pass <= passes; pass++) {
		/* choose ~P% of the pages, scattered, different set per pass */
		uint64_t nrw = 0;
		t0 = now_ms();
		for (uint64_t pg = 0; pg < npages; pg++) {
			if (mix64(pg * 0x9e3779b97f4a7c15ULL + (uint64_t)pass) % 100 >=
			    (uint64_t)pct)
				continue;
			gen[pg] = (uint32_t)pass;
			fill_page(mem + pg * WORDS_PER_PAGE, pg, gen[pg]);
			nrw++;
		}
		rewrite_ms += now_ms() - t0;

#ifdef MEMLOAD_SELFTEST /* -DMEMLOAD_SELFTEST: check that corruption is seen */
		memset(mem + 3 * WORDS_PER_PAGE, 0, PAGE_SIZE);
		mem[7 * WORDS_PER_PAGE + 100] ^= 1ULL << 40;
#endif
		t0 = now_ms();
		uint64_t bad = verify(mem, npages, gen, &reported);
		verify_ms += now_ms() - t0;
		mismatches += bad;
		if (passes > 1 || bad)
			printf("memload: pass %ld rewrote %" PRIu64 " pages, %" PRIu64
			       " bad pages\n", pass, nrw, bad);
	}
	printf("MEMLOAD RESULT mib=%ld mismatches=%" PRIu64 " fill_ms=%.0f "
	       "rewrite_ms=%.0f verify_ms=%.0f content=%s\n",
	       mib, mismatches, fill_ms, rewrite_ms, verify_ms, content);

	uint64_t total = mismatches;
	if (hold > 0) {
		printf("MEMLOAD HOLDING %ld s\n", hold);
		struct timespec ts = { .tv_sec = hold, .tv_nsec = 0 };
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		t0 = now_ms();
		reported = 0;
		uint64_t bad = verify(mem, npages, gen, &reported);
		verify_ms = now_ms() - t0;
		total += bad;
		printf("MEMLOAD RESULT mib=%ld mismatches=%" PRIu64 " fill_ms=0 "
		       "rewrite_ms=0 verify_ms=%.0f content=%s\n", mib, bad, verify_ms,
		       content);
	}
	return total ? 1 : 0;
}
