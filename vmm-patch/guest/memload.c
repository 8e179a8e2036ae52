/*
 * memload: guest-side memory workload for testing memsrv.
 *
 *   memload --mib N [--rewrite-pct P] [--passes K] [--hold-s S]
 *
 * Maps N MiB of anonymous memory, fills every 8-byte word with
 * hash(page, word, generation), then runs K passes of: rewrite P% of the
 * pages with a new generation, verify every word of the whole area.
 * Prints one line
 *   MEMLOAD RESULT mib=N mismatches=M fill_ms=.. rewrite_ms=.. verify_ms=..
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

static void fill_page(uint64_t *p, uint64_t page, uint32_t gen)
{
	uint64_t seed = page_seed(page, gen);
	for (uint64_t w = 0; w < WORDS_PER_PAGE; w++)
		p[w] = word_val(seed, w);
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
			"[--hold-s S]\n");
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

/* Verify all pages; returns the number of bad pages, reports the first few. */
static uint64_t verify(const uint64_t *mem, uint64_t npages, const uint32_t *gen,
		       uint64_t *reported)
{
	uint64_t bad = 0;
	for (uint64_t pg = 0; pg < npages; pg++) {
		const uint64_t *p = mem + pg * WORDS_PER_PAGE;
		uint64_t seed = page_seed(pg, gen[pg]);
		uint64_t w;
		for (w = 0; w < WORDS_PER_PAGE; w++)
			if (p[w] != word_val(seed, w))
				break;
		if (w == WORDS_PER_PAGE)
			continue;
		bad++;
		if (*reported < MAX_REPORT) {
			(*reported)++;
			uint64_t nbad = 0, nzero = 0;
			for (uint64_t v = 0; v < WORDS_PER_PAGE; v++) {
				nbad += p[v] != word_val(seed, v);
				nzero += p[v] == 0;
			}
			/* which generation does the content belong to, if any? */
			long found = -1;
			for (uint32_t g = 0; g <= gen[pg] + 1 && found < 0; g++)
				if (p[w] == word_val(page_seed(pg, g), w))
					found = g;
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
		else
			usage();
	}
	if (mib < 0)
		usage();

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

	printf("memload: %ld MiB (%" PRIu64 " pages), rewrite %ld%%, %ld pass(es),"
	       " hold %ld s\n", mib, npages, pct, passes, hold);

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
	       "rewrite_ms=%.0f verify_ms=%.0f\n",
	       mib, mismatches, fill_ms, rewrite_ms, verify_ms);

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
		       "rewrite_ms=0 verify_ms=%.0f\n", mib, bad, verify_ms);
	}
	return total ? 1 : 0;
}
