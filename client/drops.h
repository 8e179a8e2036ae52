/* drops: the VMM's own thread that drops anonymous guest RAM memsrv saved
 * (drop_wire.h says why memsrv cannot). */
#ifndef MEMSRV_CLIENT_DROPS_H
#define MEMSRV_CLIENT_DROPS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct drop_range {
	uint64_t addr, size;
};

struct drop_thread {
	int sock;      /* our end of the channel */
	int stop;      /* eventfd: leave */
	int uffd;      /* the session's, for UFFDIO_MOVE; not ours to close */
	pthread_t thread;
	bool running;
	/* where pages moved out of guest RAM wait to be dropped in one go
	 * (NULL: no UFFDIO_MOVE, each range is dropped where it is) */
	uint8_t *grave;
	size_t grave_used;     /* bytes holding pages */
	unsigned n;
	struct drop_range ranges[];  /* the anonymous regions: nothing else is dropped */
};

/* A channel for the anonymous regions given, registered on uffd with
 * features (uffd_setup_open's): *peer_out is memsrv's end, to send with
 * the Hello.  NULL with errno set on failure. */
struct drop_thread *drops_open(const struct drop_range *anon, unsigned n, int uffd, uint64_t features,
			       int *peer_out);
/* Starts serving memsrv's requests.  0 or -errno. */
int drops_start(struct drop_thread *d);
/* Unregisters the grave from the uffd, as the session does its regions
 * before it closes the uffd (then unmapping it raises no event). */
void drops_unregister(struct drop_thread *d);
/* Stops the thread and frees d.  A request in progress is finished
 * first: its madvise waits until memsrv read the REMOVE event, or until
 * the uffd is closed.  Without wait (the uffd stays open and memsrv is
 * down) the thread is left to end on its own, and d to it: a few bytes
 * and two fds, once per session memsrv gave up on. */
void drops_close(struct drop_thread *d, bool wait);

#endif
