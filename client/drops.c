/* drops: libmemsrv's drop thread (drops.h, drop_wire.h).
 *
 * A thread of its own, not the VMM's event loop: the VMM's threads may
 * all be waiting on a write to a page memsrv is evicting, and that write
 * is let go only once the page was dropped.
 *
 * A madvise(MADV_DONTNEED) of guest RAM raises a REMOVE event on the VMM's
 * userfaultfd and waits until memsrv read it: a round trip per range, and
 * memsrv evicts scattered single pages.  Where the kernel has UFFDIO_MOVE
 * (Linux 6.8), a range is moved instead into the grave, an anonymous
 * mapping of our own registered on the same uffd (a move's destination
 * must be): no event, and the page is out of guest RAM at once, so the
 * reply can go.  The grave is dropped in one madvise, one event, once it
 * is full or the requests pause. */
#include "drops.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drop_wire.h"
#include "uffd_compat.h"
#include "uffd_setup.h"

#define GRAVE_BYTES (2u << 20)
#define GRAVE_IDLE_MS 20

/* The grave, if the kernel can move pages into it; else d->grave stays NULL. */
static void open_grave(struct drop_thread *d, uint64_t features)
{
	if (!(features & UFFD_FEATURE_MOVE))
		return;
	void *p = mmap(NULL, GRAVE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return;
	uint64_t modes;
	/* registered as guest RAM is: a move needs both sides' protections alike */
	if (madvise(p, GRAVE_BYTES, MADV_DONTFORK) ||
	    uffd_setup_register(d->uffd, features, MEMSRV__BACKING__BACKING_ANON, (uint64_t)(uintptr_t)p, GRAVE_BYTES,
				&modes)) {
		munmap(p, GRAVE_BYTES);
		return;
	}
	d->grave = p;
}

struct drop_thread *drops_open(const struct drop_range *anon, unsigned n, int uffd, uint64_t features,
			       int *peer_out)
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
	d->uffd = uffd;
	d->n = n;
	memcpy(d->ranges, anon, n * sizeof anon[0]);
	open_grave(d, features);
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

/* Drops what the grave holds: one REMOVE event, which memsrv reads
 * whenever it may (the replies went already). */
static void empty_grave(struct drop_thread *d)
{
	if (!d->grave_used)
		return;
	madvise(d->grave, d->grave_used, MADV_DONTNEED);
	d->grave_used = 0;
}

/* Moves what it can of [addr, addr + len) into the grave; returns the
 * bytes moved, from addr on (a hole counts as moved: nothing to drop). */
static uint64_t move_to_grave(struct drop_thread *d, uint64_t addr, uint64_t len)
{
	if (!d->grave || len > GRAVE_BYTES)
		return 0;
	if (d->grave_used + len > GRAVE_BYTES)
		empty_grave(d);
	struct uffdio_move mv = {
		.dst = (uint64_t)(uintptr_t)d->grave + d->grave_used, .src = addr, .len = len,
		.mode = UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
	};
	/* on an error, move says how far it got (or the -errno) */
	(void)ioctl(d->uffd, UFFDIO_MOVE, &mv);
	uint64_t moved = mv.move > 0 ? (uint64_t)mv.move : 0;
	if (moved > len)
		moved = len;
	/* the grave's slots up to here hold pages or holes either way */
	d->grave_used += moved;
	return moved;
}

static int32_t carry_out(struct drop_thread *d, const struct drop_request *rq)
{
	if (!rq->len)
		return 0;  /* a barrier: everything before it is done */
	if (!range_ok(d, rq->addr, rq->len))
		return -EINVAL;
	/* what could not move (a page KSM shares, a zero page, an event
	 * pending: EBUSY, EAGAIN) is dropped where it is */
	uint64_t moved = move_to_grave(d, rq->addr, rq->len);
	if (moved == rq->len)
		return 0;
	return madvise((void *)(uintptr_t)(rq->addr + moved), rq->len - moved, MADV_DONTNEED) ? -errno : 0;
}

/* The next request, waiting for one; false when the thread must leave. */
static bool next_request(struct drop_thread *d, struct drop_request *rq)
{
	for (;;) {
		ssize_t got = recv(d->sock, rq, sizeof *rq, MSG_DONTWAIT);
		if (got == (ssize_t)sizeof *rq)
			return true;
		if (got > 0)
			continue;  /* not a request: nothing to answer */
		if (got == 0 || (errno != EAGAIN && errno != EINTR))
			return false;  /* every copy of memsrv's end is closed: none can come */
		/* memsrv asks one request at a time: a grave not full is dropped
		 * once no request came for GRAVE_IDLE_MS */
		struct pollfd p[2] = { { .fd = d->stop, .events = POLLIN }, { .fd = d->sock, .events = POLLIN } };
		int n = poll(p, 2, d->grave_used ? GRAVE_IDLE_MS : -1);
		if (n < 0 && errno != EINTR)
			return false;
		if (n == 0)
			empty_grave(d);
		if (p[0].revents)
			return false;
	}
}

static void *drops_main(void *arg)
{
	struct drop_thread *d = arg;
	struct drop_request rq;
	while (next_request(d, &rq)) {
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

void drops_unregister(struct drop_thread *d)
{
	if (d && d->grave)
		uffd_setup_unregister(d->uffd, (uint64_t)(uintptr_t)d->grave, GRAVE_BYTES);
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
	if (d->grave)
		munmap(d->grave, GRAVE_BYTES);  /* unregistered (drops_unregister): no UNMAP event */
	close(d->sock);
	close(d->stop);
	free(d);
}
