/* drops: the VMM's own thread that drops anonymous guest RAM memsrv saved
 * (drop_wire.h says why memsrv cannot). */
#ifndef MEMSRV_CLIENT_DROPS_H
#define MEMSRV_CLIENT_DROPS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct drop_range {
	uint64_t addr, size;
};

struct drop_thread {
	int sock;      /* our end of the channel */
	int stop;      /* eventfd: leave */
	pthread_t thread;
	bool running;
	unsigned n;
	struct drop_range ranges[];  /* the anonymous regions: nothing else is dropped */
};

/* A channel for the anonymous regions given: *peer_out is memsrv's end,
 * to send with the Hello.  NULL with errno set on failure. */
struct drop_thread *drops_open(const struct drop_range *anon, unsigned n, int *peer_out);
/* Starts serving memsrv's requests.  0 or -errno. */
int drops_start(struct drop_thread *d);
/* Stops the thread and frees d.  A request in progress is finished
 * first: its madvise waits until memsrv read the REMOVE event, or until
 * the uffd is closed.  Without wait (the uffd stays open and memsrv is
 * down) the thread is left to end on its own, and d to it: a few bytes
 * and two fds, once per session memsrv gave up on. */
void drops_close(struct drop_thread *d, bool wait);

#endif
