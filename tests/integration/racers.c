/* racers: threads that race memsrv's evictions (racers.h). */
#include "racers.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#include "ctl_client.h"
#include "guest.h"

#define PAGE 4096u

uint64_t racing_word(size_t page, size_t w, uint64_t gen)
{
	return gen ? (uint64_t)page << 32 | gen << 8 | (w & 0xff) : 0;
}

void *racing_writer_main(void *arg)
{
	struct racing_writer *w = arg;
	for (size_t i = 0; i < w->writes; i++) {
		size_t k = (size_t)rand_r(&w->seed) % w->count, p = w->first + k;
		uint64_t *words = (uint64_t *)(w->mem + p * PAGE);
		for (size_t x = 0; x < PAGE / 8; x++)
			if (words[x] != racing_word(p, x, w->gen[k])) {
				w->bad++;
				break;
			}
		w->gen[k]++;
		for (size_t x = 0; x < PAGE / 8; x++)
			words[x] = racing_word(p, x, w->gen[k]);
	}
	return NULL;
}

void *racing_evictor_main(void *arg)
{
	struct racing_evictor *e = arg;
	while (!e->stop) {
		Memsrv__ServerMessage *m = NULL;
		if (ctl_evict(e->sock, e->vm, 0, true, &m) == 0 && m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_EVICT_REPLY)
			e->runs++;
		if (m)
			memsrv__server_message__free_unpacked(m, NULL);
	}
	return NULL;
}

void racing_run_start(struct racing_run *run, uint8_t *mem, size_t pages, size_t writes, unsigned seed,
		      const char *sock, const char *vm)
{
	for (unsigned k = 0; k < RACING_WRITERS; k++) {
		struct racing_writer *w = &run->w[k];
		*w = (struct racing_writer){ .mem = mem, .first = pages / RACING_WRITERS * k,
					     .count = pages / RACING_WRITERS, .writes = writes, .seed = seed + k };
		w->gen = calloc(w->count, sizeof *w->gen);
		cr_assert(w->gen);
		cr_assert_eq(pthread_create(&run->t[k], NULL, racing_writer_main, w), 0);
	}
	run->ev = (struct racing_evictor){ .sock = sock, .vm = vm };
	cr_assert_eq(pthread_create(&run->et, NULL, racing_evictor_main, &run->ev), 0);
}

size_t racing_run_finish(struct racing_run *run)
{
	size_t bad = 0;
	for (unsigned k = 0; k < RACING_WRITERS; k++) {
		pthread_join(run->t[k], NULL);
		bad += run->w[k].bad;
	}
	run->ev.stop = true;
	pthread_join(run->et, NULL);
	return bad;
}

size_t racing_run_count_bad(const struct racing_run *run)
{
	size_t bad = 0;
	for (unsigned k = 0; k < RACING_WRITERS; k++) {
		const struct racing_writer *w = &run->w[k];
		for (size_t p = 0; p < w->count; p++)
			bad += pattern_count_bad(w->mem, w->first + p, w->first + p + 1, racing_word, w->gen[p]);
	}
	return bad;
}

void racing_run_free(struct racing_run *run)
{
	for (unsigned k = 0; k < RACING_WRITERS; k++)
		free(run->w[k].gen);
}
