/* racers: threads that race memsrv's evictions, for the tests of every
 * backing: writers that rewrite pages and check each held what they wrote
 * last, and an evictor that evicts a whole VM again and again. */
#ifndef MEMSRV_TEST_RACERS_H
#define MEMSRV_TEST_RACERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rewrites `writes` random pages of [first, first + count) of mem, each
 * checked against its last generation before the next is written. */
struct racing_writer {
	uint8_t *mem;
	size_t first, count, writes;
	size_t bad;     /* pages that did not hold what was written last */
	uint32_t *gen;  /* per page of the slice, calloc'd; 0: never written (zeros) */
	unsigned seed;
};

/* Word w of page `page` in generation gen (0: zeros): a pattern_word_fn. */
uint64_t racing_word(size_t page, size_t w, uint64_t gen);
void *racing_writer_main(void *arg);

/* Evicts VM vm of the memsrv at sock until stop, counting the runs. */
struct racing_evictor {
	const char *sock, *vm;
	_Atomic bool stop;
	unsigned runs;
};
void *racing_evictor_main(void *arg);

/* Writers on slices of guest RAM and an evictor of its VM, run together. */
#define RACING_WRITERS 3
struct racing_run {
	struct racing_writer w[RACING_WRITERS];
	pthread_t t[RACING_WRITERS];
	struct racing_evictor ev;
	pthread_t et;
};

/* Starts RACING_WRITERS writers of `writes` each over pages [0, pages) of
 * mem, and the evictor of VM vm at sock (asserts). */
void racing_run_start(struct racing_run *run, uint8_t *mem, size_t pages, size_t writes, unsigned seed,
		      const char *sock, const char *vm);
/* Waits for the writers, then stops the evictor; returns the pages the
 * writers read wrong meanwhile. */
size_t racing_run_finish(struct racing_run *run);
/* Pages of the slices that do not hold what was written last, now. */
size_t racing_run_count_bad(const struct racing_run *run);
void racing_run_free(struct racing_run *run);

#endif
