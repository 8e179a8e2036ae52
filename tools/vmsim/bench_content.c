/* bench_content: how fast content is generated, i.e. what verification
 * and writes cost on top of the memory access itself. */
#include "vmsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_PAGES 200000u

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_content(const struct content_mix *mix, uint64_t seed)
{
	void *page = aligned_alloc(CONTENT_PAGE_SIZE, CONTENT_PAGE_SIZE);
	if (!page) {
		fprintf(stderr, "vmsim: out of memory\n");
		return VMSIM_EXIT_SETUP;
	}
	/* The barrier keeps the compiler from dropping the unused pages. */
	for (int k = 0; k <= CONTENT_KINDS; k++) {
		double t0 = now_s();
		for (uint64_t i = 0; i < BENCH_PAGES; i++) {
			if (k == CONTENT_KINDS)
				content_fill(page, i, 1, mix, seed);
			else
				content_fill_kind(page, k, i, 1, seed);
			__asm__ volatile("" : : "r"(page) : "memory");
		}
		double ns = (now_s() - t0) * 1e9 / BENCH_PAGES;
		printf("content_ns_per_page_%s %.0f\n", k == CONTENT_KINDS ? "mix" : content_kind_name(k), ns);
	}
	free(page);
	return VMSIM_EXIT_OK;
}
