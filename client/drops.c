/* drops: libmemsrv's drop thread (drops.h, drop_wire.h).
 *
 * A thread of its own, not the VMM's event loop: the VMM's threads may
 * all be waiting on a write to a page memsrv is evicting, and that write
 * is let go only once the page was dropped.  The madvise raises a REMOVE
 * event on the VMM's userfaultfd and waits until memsrv read it; memsrv
 * reads its uffd while it waits for the reply. */
#include "drops.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drop_wire.h"

struct drop_thread *drops_open(const struct drop_range *anon, unsigned n, int *peer_out)
{
	struct drop_thread *d = calloc(1, sizeof *d + n * sizeof d->ranges[0]);
	if (!d)
		return NULL;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		free(d);
		return NULL;
	}
	d->stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->stop < 0) {
		int err = errno;
		close(sv[0]);
		close(sv[1]);
		free(d);
		errno = err;
		return NULL;
	}
	d->sock = sv[0];
	*peer_out = sv[1];
	d->n = n;
	memcpy(d->ranges, anon, n * sizeof anon[0]);
	return d;
}

/* Inside one anonymous region: memsrv may ask for nothing else. */
static bool range_ok(const struct drop_thread *d, uint64_t addr, uint64_t len)
{
	if (addr % 4096 || len % 4096 || addr + len < addr)
		return false;
	for (unsigned i = 0; i < d->n; i++)
		if (addr >= d->ranges[i].addr && addr - d->ranges[i].addr < d->ranges[i].size &&
		    len <= d->ranges[i].addr + d->ranges[i].size - addr)
			return true;
	return false;
}

static int32_t carry_out(const struct drop_thread *d, const struct drop_request *rq)
{
	if (!rq->len)
		return 0;  /* a barrier: everything before it is done */
	if (!range_ok(d, rq->addr, rq->len))
		return -EINVAL;
	return madvise((void *)(uintptr_t)rq->addr, rq->len, MADV_DONTNEED) ? -errno : 0;
}

static void *drops_main(void *arg)
{
	struct drop_thread *d = arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = d->stop, .events = POLLIN }, { .fd = d->sock, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		struct drop_request rq;
		ssize_t got = recv(d->sock, &rq, sizeof rq, MSG_DONTWAIT);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (got <= 0)
			break;  /* every copy of memsrv's end is closed: none can come */
		if (got != sizeof rq)
			continue;  /* not a request: nothing to answer */
		struct drop_reply rp = { .seq = rq.seq, .err = carry_out(d, &rq) };
		/* memsrv gone meanwhile: the next one reads nothing of it */
		while (send(d->sock, &rp, sizeof rp, MSG_NOSIGNAL) < 0 && errno == EINTR)
			;
	}
	return NULL;
}

int drops_start(struct drop_thread *d)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);  /* signals are the VMM's */
	int ret = pthread_create(&d->thread, NULL, drops_main, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		return -ret;
	d->running = true;
	return 0;
}

void drops_close(struct drop_thread *d, bool wait)
{
	if (!d)
		return;
	if (d->running) {
		uint64_t one = 1;
		while (write(d->stop, &one, sizeof one) < 0 && errno == EINTR)
			;
		if (!wait) {
			pthread_detach(d->thread);
			return;  /* d is the thread's until it leaves: kept */
		}
		pthread_join(d->thread, NULL);
	}
	close(d->sock);
	close(d->stop);
	free(d);
}
