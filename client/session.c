/* session: a VMM's connection to memsrv — attach, serve requests, detach. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "drops.h"
#include "memsrv.h"
#include "uffd_compat.h"
#include "uffd_setup.h"
#include "wire.h"

#define ATTACH_TIMEOUT_S 30
#define SETTINGS_TIMEOUT_S 5  /* a VMM asks from its main loop */
#define RETRY_MS 50         /* between attempts to reach a restarting memsrv */
#define DRAIN_GRACE_MS 1000 /* for the VMM to read what a dead memsrv sent last */

#define DISCARD_BATCH_MAX 256  /* ranges in one Discard: a balloon element's pages */

/* The keeper thread reconnects while the VMM's own threads may all be
 * blocked in faults; dispatch, on the VMM's thread, reads the socket.
 * lock guards sock and everything the keeper changes after attach. */
struct memsrv_session {
	pthread_mutex_t lock;
	int sock;               /* -1 while reconnecting */
	int uffd;
	int epfd;               /* memsrv_session_fd(): holds sock and notify */
	int notify;             /* eventfd: the session failed for good */
	int stop;               /* eventfd: the keeper must leave */
	int kick;               /* eventfd: dispatch read the dead socket to its end */
	bool has_keeper;
	bool ended;             /* Goodbye with every page restored: no reconnect */
	pthread_t keeper;
	char *path;
	void *resume_hello;     /* the packed Hello again, with resume set */
	size_t resume_len;
	int fds[WIRE_MAX_FDS];  /* [uffd, dups of the region fds...] as the Hello indexes them */
	unsigned nfds;
	uint64_t vm_id;
	int evictable;
	uint64_t reconnects;
	int failed;             /* -errno once memsrv refused to resume */
	bool failure_read;      /* dispatch has told the VMM why */
	uint64_t pages_poisoned; /* lost pages the keeper poisoned since */
	char failure[512];
	char name[64];          /* the VM's, for memsrv_session_settings() */
	uint64_t fence_owed;    /* a page an unfenced discard punched (its
				 * fence zaps it), or 0: none owed */
	uint32_t fence_len;
	/* unfenced discards not sent yet: one Discard carries them all */
	Memsrv__DiscardRange unsent[DISCARD_BATCH_MAX];
	unsigned n_unsent;
	struct drop_thread *drops;  /* anonymous regions: drops what memsrv saved */
	unsigned n_regions;
	struct { uint64_t addr, size, fd_offset; uint32_t page_size; unsigned fd_index; } regions[];  /* fd_index 0: no fd */
};

static __thread char last_error[512];

const char *memsrv_last_error(void)
{
	return last_error;
}

static int fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof last_error, fmt, ap);
	va_end(ap);
	return err;
}

/* The server's Error, in words: "hello.regions[0].size: size 5 is not ..." */
static int server_error(const Memsrv__Error *e)
{
	return fail(-(e->errno_code > 0 ? e->errno_code : EPROTO), "%s%s%s", e->field ? e->field : "",
		    e->field ? ": " : "", e->message);
}

static int connect_to(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof addr.sun_path)
		return fail(-ENAMETOOLONG, "socket path too long: %s", path);
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return fail(-errno, "socket: %s", strerror(errno));
	if (connect(s, (struct sockaddr *)&addr, sizeof addr)) {
		int err = errno;
		close(s);
		return fail(-err, "cannot reach memsrv at %s: %s", path, strerror(err));
	}
	return s;
}

/* Waits for one server message, at most timeout_s seconds. */
static int recv_reply(int sock, int timeout_s, Memsrv__ServerMessage **out)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	int n = poll(&p, 1, timeout_s * 1000);
	if (n == 0)
		return fail(-ETIMEDOUT, "memsrv did not answer within %d s", timeout_s);
	if (n < 0)
		return fail(-errno, "poll: %s", strerror(errno));
	struct wire_fault fault = { "" };
	int ret = wire_recv_server(sock, out, &fault);
	if (ret == -ECONNRESET)  /* memsrv closed with our message unread: its answer follows */
		ret = wire_recv_server(sock, out, &fault);
	if (ret == 0)
		return fail(-ECONNRESET, "memsrv closed the connection");
	if (ret == -EPROTO)
		return fail(ret, "bad message from memsrv: %s", fault.what);
	if (ret < 0)
		return fail(ret, "receiving from memsrv: %s", strerror(-ret));
	return 0;
}

static void unregister_all(struct memsrv_session *s)
{
	for (unsigned i = 0; i < s->n_regions; i++)
		uffd_setup_unregister(s->uffd, s->regions[i].addr, s->regions[i].size);
	drops_unregister(s->drops);
}

static void close_fd(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* keep_uffd: the regions stay registered, so faults on pages memsrv may
 * still hold keep waiting instead of reading zeros. */
static void session_free(struct memsrv_session *s, bool keep_uffd)
{
	close_fd(s->sock);
	if (!keep_uffd)
		close_fd(s->uffd);
	/* after the uffd: a drop in progress waits for its REMOVE to be read,
	 * and a closed uffd lets it go */
	drops_close(s->drops, !keep_uffd);
	close_fd(s->epfd);
	close_fd(s->notify);
	close_fd(s->stop);
	close_fd(s->kick);
	for (unsigned i = 1; i < s->nfds; i++)
		close_fd(s->fds[i]);
	free(s->resume_hello);
	free(s->path);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void signal_fd(int efd)
{
	uint64_t one = 1;
	while (write(efd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

static void drain_fd(int efd)
{
	uint64_t n;
	while (read(efd, &n, sizeof n) < 0 && errno == EINTR)
		;
}

/* Builds the Hello's regions and the fd list [uffd, region fds...]. */
static int describe_regions(const struct memsrv_vm *vm, struct memsrv_session *s, uint64_t features,
			    Memsrv__Region *regions, Memsrv__Region **ptrs, int *fds, unsigned *nfds,
			    uint64_t *modes_all)
{
	*nfds = 1;
	fds[0] = s->uffd;
	*modes_all = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct memsrv_region *r = &vm->regions[i];
		uint32_t ps;
		Memsrv__Backing b = uffd_setup_backing(r->fd, &ps);
		if (b == MEMSRV__BACKING__BACKING_UNKNOWN)
			return fail(-EBADF, "region %u: fd %d is not a memfd, hugetlbfs or regular file", i, r->fd);
		if (b == MEMSRV__BACKING__BACKING_FILE)
			return fail(-EOPNOTSUPP,
				    "region %u: a file on a disk filesystem cannot be served by userfaultfd; use a memfd, tmpfs or hugetlbfs file",
				    i);
		if (r->page_size && r->page_size != ps)
			return fail(-EINVAL, "region %u: page_size %u but the fd has %u-byte pages", i, r->page_size, ps);
		uint64_t modes;
		int ret = uffd_setup_register(s->uffd, features, b, (uint64_t)(uintptr_t)r->host_addr, r->size, &modes);
		if (ret) {
			/* the caller unregisters the regions done so far */
			return fail(ret, "region %u: UFFDIO_REGISTER of %p + %llu failed: %s", i, r->host_addr,
				    (unsigned long long)r->size, strerror(-ret));
		}
		*modes_all &= modes;
		s->regions[i].addr = (uint64_t)(uintptr_t)r->host_addr;
		s->regions[i].size = r->size;
		s->regions[i].fd_offset = r->fd_offset;
		s->regions[i].fd_index = r->fd >= 0 ? *nfds : 0;
		s->regions[i].page_size = ps;
		s->n_regions = i + 1;
		/* A child the VMM forks has no uffd on guest RAM: its reads would
		 * fill the holes memsrv punched with zeros, for the VMM too.  So
		 * it does not get the mapping at all (QEMU does the same). */
		if (madvise(r->host_addr, r->size, MADV_DONTFORK))
			return fail(-errno, "region %u: madvise(MADV_DONTFORK): %s", i, strerror(errno));
		/* memsrv punches 4 KiB holes into a memfd or tmpfs file, which a
		 * shmem huge folio that cannot be split turns into zeros in place:
		 * no huge folio is to appear there (memsrv checks, shmem_thp.h) */
		if (b != MEMSRV__BACKING__BACKING_HUGETLBFS && r->fd >= 0 &&
		    madvise(r->host_addr, r->size, MADV_NOHUGEPAGE))
			return fail(-errno, "region %u: madvise(MADV_NOHUGEPAGE): %s", i, strerror(errno));

		memsrv__region__init(&regions[i]);
		regions[i].host_addr = (uint64_t)(uintptr_t)r->host_addr;
		regions[i].size = r->size;
		regions[i].page_size = ps;
		regions[i].guest_phys_addr = r->guest_phys_addr;
		regions[i].fd_offset = r->fd_offset;
		regions[i].backing = b;
		if (r->fd >= 0) {
			regions[i].has_fd_index = 1;
			regions[i].fd_index = *nfds;
			fds[(*nfds)++] = r->fd;
		}
		ptrs[i] = &regions[i];
	}
	return 0;
}

/* Anonymous regions get a drop thread: memsrv cannot drop another
 * process's anonymous pages (drops.h).  Its end of the channel joins the
 * fds sent (*drop_index, 0 for none); the caller closes *peer. */
static int open_drops(struct memsrv_session *s, uint64_t features, int *fds, unsigned *nfds, unsigned *drop_index,
		      int *peer)
{
	struct drop_range anon[MEMSRV_MAX_REGIONS];
	unsigned n = 0;
	for (unsigned i = 0; i < s->n_regions; i++)
		if (!s->regions[i].fd_index)
			anon[n++] = (struct drop_range){ s->regions[i].addr, s->regions[i].size };
	*drop_index = 0;
	if (!n)
		return 0;
	if (*nfds >= WIRE_MAX_FDS)
		return fail(-EMFILE, "no room for the drop channel among the %u fds of a Hello", WIRE_MAX_FDS);
	s->drops = drops_open(anon, n, s->uffd, features, peer);
	if (!s->drops)
		return fail(-errno, "cannot open the drop channel for anonymous memory: %s", strerror(errno));
	*drop_index = *nfds;
	fds[(*nfds)++] = *peer;
	return 0;
}

/* What saying Hello again takes: the same message with resume set and the
 * same fd list, the region fds dup'd since the VMM owns its own. */
static int keep_for_resume(struct memsrv_session *s, const char *path, Memsrv__ClientMessage *msg,
			   const int *fds, unsigned nfds)
{
	msg->hello->has_resume = 1;
	msg->hello->resume = 1;
	msg->hello->snapshot_dir = NULL;  /* what the image gave is in memsrv's state now */
	msg->hello->has_incoming = 0;     /* what the migration brought too */
	s->resume_len = memsrv__client_message__get_packed_size(msg);
	s->resume_hello = malloc(s->resume_len);
	s->path = strdup(path);
	if (!s->resume_hello || !s->path)
		return fail(-ENOMEM, "out of memory");
	memsrv__client_message__pack(msg, s->resume_hello);
	s->fds[0] = s->uffd;
	for (s->nfds = 1; s->nfds < nfds; s->nfds++) {
		s->fds[s->nfds] = fcntl(fds[s->nfds], F_DUPFD_CLOEXEC, 0);
		if (s->fds[s->nfds] < 0)
			return fail(-errno, "dup of region fd %d: %s", fds[s->nfds], strerror(errno));
	}
	return 0;
}

/* The VMM watches one epoll fd: whichever socket is current, and notify. */
static int open_session_fds(struct memsrv_session *s)
{
	if ((s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (s->notify = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (s->stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (s->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return fail(-errno, "session fds: %s", strerror(errno));
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = s->sock };
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sock, &ev))
		return fail(-errno, "epoll_ctl: %s", strerror(errno));
	ev.data.fd = s->notify;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->notify, &ev))
		return fail(-errno, "epoll_ctl: %s", strerror(errno));
	return 0;
}

/* Sleeps ms; false when detach stopped the keeper meanwhile. */
static bool keeper_sleep(struct memsrv_session *s, int ms)
{
	struct pollfd p = { .fd = s->stop, .events = POLLIN };
	int n = poll(&p, 1, ms);
	return n == 0 || (n < 0 && errno == EINTR);
}

/* Is a record waiting on sock?  A peek reads nothing: it stays dispatch's.
 * The peer's death may be reported first as ECONNRESET, once. */
static bool record_pending(int sock)
{
	char c;
	ssize_t n = recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && errno == ECONNRESET)
		n = recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n > 0;
}

/* Waits until memsrv hangs up, then takes the dead socket out of the
 * session.  What memsrv sent before dying (a Goodbye, say) is left for
 * dispatch to read, for DRAIN_GRACE_MS at most: the VMM's threads may all
 * be waiting on faults, and only a reconnect frees them.  Returns false
 * when the keeper must stop instead. */
static bool keeper_watch(struct memsrv_session *s)
{
	bool draining = false;
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = s->stop, .events = POLLIN },
			{ .fd = s->kick, .events = POLLIN },
			/* the hang-up only: the data is dispatch's to read */
			{ .fd = draining ? -1 : s->sock, .events = POLLRDHUP },
		};
		int n = poll(p, 3, draining ? DRAIN_GRACE_MS : -1);
		if (n < 0) {
			if (errno != EINTR && !keeper_sleep(s, RETRY_MS))
				return false;
			continue;
		}
		if (p[0].revents)
			return false;
		if (p[1].revents)
			drain_fd(s->kick);
		if (!draining && !(p[2].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			continue;
		pthread_mutex_lock(&s->lock);
		if (s->ended) {
			pthread_mutex_unlock(&s->lock);
			return false;
		}
		if (n > 0 && record_pending(s->sock)) {
			pthread_mutex_unlock(&s->lock);
			draining = true;
			continue;
		}
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->sock, NULL);
		close(s->sock);
		s->sock = -1;
		pthread_mutex_unlock(&s->lock);
		return true;
	}
}

/* The session runs on sock from now on. */
static int keeper_install(struct memsrv_session *s, int sock, const Memsrv__HelloReply *r)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = sock };
	pthread_mutex_lock(&s->lock);
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, sock, &ev)) {
		pthread_mutex_unlock(&s->lock);
		return -errno;
	}
	s->sock = sock;
	__atomic_store_n(&s->vm_id, r->vm_id, __ATOMIC_RELAXED);
	__atomic_store_n(&s->evictable, r->evictable, __ATOMIC_RELAXED);
	__atomic_store_n(&s->reconnects, s->reconnects + 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

enum { RESUME_STOPPED, RESUME_DONE, RESUME_RETRY };

/* One attempt: connect, say Hello again, wait for the answer (detach may
 * cut the wait short).  Returns RESUME_* or, when memsrv refused to take
 * the VM back, its -errno: final. */
static int keeper_resume(struct memsrv_session *s)
{
	int sock = connect_to(s->path);
	if (sock < 0)
		return RESUME_RETRY;  /* not back yet */
	int ret = wire_send(sock, s->resume_hello, s->resume_len, s->fds, s->nfds);
	struct pollfd p[2] = { { .fd = s->stop, .events = POLLIN }, { .fd = sock, .events = POLLIN } };
	int n = ret ? -1 : poll(p, 2, ATTACH_TIMEOUT_S * 1000);
	if (n > 0 && p[0].revents) {
		close(sock);
		return RESUME_STOPPED;
	}
	Memsrv__ServerMessage *reply = NULL;
	struct wire_fault fault = { "" };
	if (n <= 0 || wire_recv_server(sock, &reply, &fault) <= 0) {
		close(sock);
		return RESUME_RETRY;  /* died or stalled before answering */
	}
	if (reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY)
		ret = keeper_install(s, sock, reply->hello_reply) ? RESUME_RETRY : RESUME_DONE;
	else if (reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR)
		ret = server_error(reply->error);
	else
		ret = fail(-EPROTO, "memsrv answered Hello with message %d", reply->msg_case);
	if (ret != RESUME_DONE)
		close(sock);
	memsrv__server_message__free_unpacked(reply, NULL);
	return ret;
}

/* memsrv refused the VM: the session is over and the pages it held are
 * lost (keeper_serve_lost poisons them).  last_error is this thread's: the
 * VMM gets a copy from dispatch, woken by notify. */
static void keeper_fail(struct memsrv_session *s, int err)
{
	pthread_mutex_lock(&s->lock);
	s->failed = err;
	snprintf(s->failure, sizeof s->failure, "memsrv restarted but did not resume the session: %.440s", last_error);
	pthread_mutex_unlock(&s->lock);
	signal_fd(s->notify);
}

/* The region holding addr's page size (the fault came from a registered range). */
static uint32_t lost_page_size(const struct memsrv_session *s, uint64_t addr)
{
	for (unsigned i = 0; i < s->n_regions; i++)
		if (addr - s->regions[i].addr < s->regions[i].size)
			return s->regions[i].page_size;
	return 4096;
}

/* One fault on a session whose pages are lost.  A missing page is
 * poisoned, never zero-filled: memsrv's page table died with it, so a hole
 * it punched cannot be told from one the guest never touched, and a guest
 * must never read zeros where its data was.  The faulting thread gets
 * SIGBUS (BUS_MCEERR_AR; BUS_ADRERR on a kernel without
 * CONFIG_MEMORY_FAILURE), the kernel's word for memory that cannot be
 * brought back.  A write-protected page (an eviction memsrv did not
 * finish) still holds its data: it is unprotected. */
static int lost_serve_fault(struct memsrv_session *s, const struct uffd_msg *m)
{
	uint32_t ps = lost_page_size(s, m->arg.pagefault.address);
	uint64_t page = m->arg.pagefault.address & ~(uint64_t)(ps - 1);
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
		struct uffdio_writeprotect wp = { .range = { .start = page, .len = ps }, .mode = 0 };
		return ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
	}
	struct uffdio_poison p = { .range = { .start = page, .len = ps }, .mode = 0 };
	if (!ioctl(s->uffd, UFFDIO_POISON, &p)) {
		__atomic_add_fetch(&s->pages_poisoned, 1, __ATOMIC_RELAXED);
		return 0;
	}
	/* EEXIST: filled meanwhile (a write through the memfd), the thread may
	 * go on; EAGAIN: the mapping was changing (an event is pending), the
	 * thread faults again once woken and the next message is served */
	if (errno != EEXIST && errno != EAGAIN)
		return -errno;
	struct uffdio_range r = { .start = page, .len = ps };
	return ioctl(s->uffd, UFFDIO_WAKE, &r) ? -errno : 0;
}

/* Reads what the uffd holds; events other than faults (REMOVE, UNMAP)
 * complete by being read.  Returns false when a fault cannot be resolved
 * (a kernel without UFFDIO_POISON): faults wait for good, as before. */
static bool lost_serve_batch(struct memsrv_session *s)
{
	struct uffd_msg msgs[32];
	ssize_t n = read(s->uffd, msgs, sizeof msgs);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++) {
		if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
			continue;
		int ret = lost_serve_fault(s, &msgs[i]);
		if (ret) {
			pthread_mutex_lock(&s->lock);
			snprintf(s->failure + strlen(s->failure), sizeof s->failure - strlen(s->failure),
				 "; cannot poison the lost page at %#llx (%s): faults on it wait",
				 (unsigned long long)msgs[i].arg.pagefault.address, strerror(-ret));
			pthread_mutex_unlock(&s->lock);
			return false;
		}
	}
	return true;
}

/* memsrv refused to take the VM back, so the pages it had evicted are lost
 * and no one else will ever serve the VMM's uffd: the keeper does, until
 * detach, so that no VMM thread waits for good and the VMM can stop.  It
 * first gives the VMM up to DRAIN_GRACE_MS to hear why from dispatch, so
 * that its account comes before the SIGBUS of a poisoned page. */
static void keeper_serve_lost(struct memsrv_session *s)
{
	for (int waited = 0; waited < DRAIN_GRACE_MS && !__atomic_load_n(&s->failure_read, __ATOMIC_RELAXED);
	     waited += 10)
		if (!keeper_sleep(s, 10))
			return;
	for (;;) {
		struct pollfd p[2] = { { .fd = s->stop, .events = POLLIN }, { .fd = s->uffd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return;
		if (p[0].revents)
			return;
		if (p[1].revents && !lost_serve_batch(s))
			return;
	}
}

static void *keeper_main(void *arg)
{
	struct memsrv_session *s = arg;
	while (keeper_watch(s)) {
		int ret;
		while ((ret = keeper_resume(s)) == RESUME_RETRY && keeper_sleep(s, RETRY_MS))
			;
		if (ret < 0) {
			keeper_fail(s, ret);
			keeper_serve_lost(s);
		}
		if (ret != RESUME_DONE)
			break;
	}
	return NULL;
}

static int keeper_start(struct memsrv_session *s)
{
	/* signals are the VMM's business: none is delivered to the keeper */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int ret = pthread_create(&s->keeper, NULL, keeper_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		return fail(-ret, "cannot start the reconnect thread: %s", strerror(ret));
	s->has_keeper = true;
	return 0;
}

static void keeper_stop(struct memsrv_session *s)
{
	if (!s->has_keeper)
		return;
	signal_fd(s->stop);
	pthread_join(s->keeper, NULL);
	s->has_keeper = false;
}

/* memsrv_attach@@MEMSRV_0.4: struct memsrv_vm with snapshot_dir.  The
 * 0.1 entry point below keeps programs built before it working. */
__asm__(".symver memsrv_attach_0_4, memsrv_attach@@MEMSRV_0.4");  /* GCC and clang alike */
int memsrv_attach_0_4(const char *socket_path, const struct memsrv_vm *vm, struct memsrv_session **out);
int memsrv_attach_0_4(const char *socket_path, const struct memsrv_vm *vm, struct memsrv_session **out)
{
	last_error[0] = 0;
	if (!vm || !vm->name || !out)
		return fail(-EINVAL, "vm, vm->name and out are required");
	if (vm->n_regions == 0 || vm->n_regions > MEMSRV_MAX_REGIONS)
		return fail(-EINVAL, "%u regions; 1 to %u are accepted", vm->n_regions, MEMSRV_MAX_REGIONS);
	if (!socket_path)
		socket_path = MEMSRV_DEFAULT_SOCKET;

	struct memsrv_session *s = calloc(1, sizeof *s + vm->n_regions * sizeof s->regions[0]);
	Memsrv__Region *regions = calloc(vm->n_regions, sizeof *regions);
	Memsrv__Region **ptrs = calloc(vm->n_regions, sizeof *ptrs);
	Memsrv__ServerMessage *reply = NULL;
	int ret, drop_peer = -1;
	if (!s || !regions || !ptrs) {
		free(s);
		s = NULL;
		ret = fail(-ENOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->sock = s->epfd = s->notify = s->stop = s->kick = -1;
	uint64_t features = 0;
	s->uffd = uffd_setup_open(&features);
	if (s->uffd < 0) {
		ret = fail(s->uffd, "userfaultfd: %s", strerror(-s->uffd));
		goto out;
	}
	int fds[WIRE_MAX_FDS];
	unsigned nfds;
	uint64_t modes;
	ret = describe_regions(vm, s, features, regions, ptrs, fds, &nfds, &modes);
	unsigned drop_index = 0;
	if (!ret)
		ret = open_drops(s, features, fds, &nfds, &drop_index, &drop_peer);
	if (ret)
		goto out;
	s->sock = connect_to(socket_path);
	if (s->sock < 0) {
		ret = s->sock;
		goto out;
	}

	Memsrv__Quota quota = MEMSRV__QUOTA__INIT;
	quota.has_guarantee_bytes = quota.has_limit_bytes = quota.has_shares = 1;
	quota.guarantee_bytes = vm->guarantee_bytes;
	quota.limit_bytes = vm->limit_bytes;
	quota.shares = vm->shares;
	quota.codec = (char *)vm->codec;
	quota.policy = (char *)vm->policy;
	Memsrv__Hello hello = MEMSRV__HELLO__INIT;
	hello.version_major = MEMSRV__VERSION__VERSION_MAJOR;
	hello.version_minor = MEMSRV__VERSION__VERSION_MINOR;
	hello.name = (char *)vm->name;
	hello.pid = (uint32_t)getpid();
	hello.n_regions = vm->n_regions;
	hello.regions = ptrs;
	hello.quota = &quota;
	hello.uffd_features = features;
	hello.register_modes = modes;
	if (drop_index)
		hello.has_drop_fd_index = 1, hello.drop_fd_index = drop_index;
	if (vm->flags & MEMSRV_VM_NO_BALLOON)
		hello.has_balloon = 1, hello.balloon = 0;
	hello.snapshot_dir = (char *)vm->snapshot_dir;
	if (vm->flags & MEMSRV_VM_INCOMING) {
		hello.has_incoming = 1;
		hello.incoming = 1;
	}
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_HELLO;
	msg.hello = &hello;
	ret = wire_send_client(s->sock, &msg, fds, nfds);
	if (ret && ret != -EPIPE && ret != -ECONNRESET) {
		ret = fail(ret, "sending Hello: %s", strerror(-ret));
		goto out;
	}
	/* EPIPE: memsrv refused the connection at once (access, limits, fds)
	 * and closed it, but its Error waits to be read: the reason, not
	 * "Broken pipe" */
	int sent = ret;
	ret = recv_reply(s->sock, sent ? 1 : ATTACH_TIMEOUT_S, &reply);
	if (ret && sent)
		ret = fail(sent, "sending Hello: %s (memsrv closed the connection without a reason)", strerror(-sent));
	if (ret)
		goto out;
	if (reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR) {
		ret = server_error(reply->error);
		goto out;
	}
	if (reply->msg_case != MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY) {
		ret = fail(-EPROTO, "memsrv answered Hello with message %d", reply->msg_case);
		goto out;
	}
	snprintf(s->name, sizeof s->name, "%s", vm->name);
	s->vm_id = reply->hello_reply->vm_id;
	s->evictable = reply->hello_reply->evictable;
	ret = keep_for_resume(s, socket_path, &msg, fds, nfds);
	if (!ret)
		ret = open_session_fds(s);
	if (!ret && !(vm->flags & MEMSRV_VM_NO_RECONNECT))
		ret = keeper_start(s);
	if (!ret && s->drops && (ret = drops_start(s->drops)))
		ret = fail(ret, "cannot start the drop thread: %s", strerror(-ret));
	if (ret)
		goto out;
	*out = s;
	s = NULL;
	ret = 0;
out:
	if (s) {
		unregister_all(s);
		session_free(s, false);
	}
	if (reply)
		memsrv__server_message__free_unpacked(reply, NULL);
	close_fd(drop_peer);  /* the session keeps a dup for a resume */
	free(regions);
	free(ptrs);
	return ret;
}

int memsrv_session_fd(struct memsrv_session *s)
{
	return s->epfd;
}

uint64_t memsrv_session_vm_id(const struct memsrv_session *s)
{
	return __atomic_load_n(&s->vm_id, __ATOMIC_RELAXED);
}

int memsrv_session_evictable(const struct memsrv_session *s)
{
	return __atomic_load_n(&s->evictable, __ATOMIC_RELAXED);
}

uint64_t memsrv_session_reconnects(const struct memsrv_session *s)
{
	return __atomic_load_n(&s->reconnects, __ATOMIC_RELAXED);
}

int memsrv_session_failed(struct memsrv_session *s)
{
	pthread_mutex_lock(&s->lock);
	int err = s->failed;
	pthread_mutex_unlock(&s->lock);
	return err;
}

uint64_t memsrv_session_pages_poisoned(const struct memsrv_session *s)
{
	return __atomic_load_n(&s->pages_poisoned, __ATOMIC_RELAXED);
}

/* The VM's settings as memsrv holds them now, asked over a connection of
 * its own: the session socket carries memsrv's requests, and a reply
 * there would cross them. */
int memsrv_session_settings(struct memsrv_session *s, struct memsrv_vm_settings *out)
{
	last_error[0] = 0;
	if (!s || !out)
		return fail(-EINVAL, "session and out are required");
	int sock = connect_to(s->path);
	if (sock < 0)
		return sock;
	Memsrv__InfoRequest info = MEMSRV__INFO_REQUEST__INIT;
	info.name = s->name;
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_INFO;
	msg.info = &info;
	Memsrv__ServerMessage *reply = NULL;
	int ret = wire_send_client(sock, &msg, NULL, 0);
	if (ret)
		ret = fail(ret, "sending Info: %s", strerror(-ret));
	else
		ret = recv_reply(sock, SETTINGS_TIMEOUT_S, &reply);
	close(sock);
	if (ret)
		return ret;
	if (reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR)
		ret = server_error(reply->error);
	else if (reply->msg_case != MEMSRV__SERVER_MESSAGE__MSG_VM_INFO)
		ret = fail(-EPROTO, "memsrv answered Info with message %d", reply->msg_case);
	else {
		const Memsrv__VmInfo *v = reply->vm_info;
		*out = (struct memsrv_vm_settings){
			.guarantee_bytes = v->guarantee_bytes,
			.limit_bytes = v->limit_bytes,
			.shares = v->shares,
		};
		snprintf(out->codec, sizeof out->codec, "%s", v->codec);
		snprintf(out->policy, sizeof out->policy, "%s", v->policy);
	}
	memsrv__server_message__free_unpacked(reply, NULL);
	return ret;
}

/* memsrv is leaving.  When it gave every page back, the RAM is the VMM's
 * own again: unregister, so that holes read as zeros instead of waiting
 * for a handler that will not come.  Otherwise keep waiting: a fault on a
 * page memsrv still held must not read zeros; with a keeper, memsrv may
 * come back with its state and resume. */
static int goodbye(struct memsrv_session *s, const Memsrv__Goodbye *g)
{
	if (!g->restored && s->has_keeper)
		return 0;
	if (!g->restored)
		return fail(-ECONNRESET, "memsrv is gone (%s) without restoring every page; faults on them wait",
			    g->reason);
	unregister_all(s);
	s->n_regions = 0;
	pthread_mutex_lock(&s->lock);
	s->ended = true;
	pthread_mutex_unlock(&s->lock);
	if (s->has_keeper)
		signal_fd(s->stop);  /* nothing to resume */
	return fail(-ECONNRESET, "memsrv is gone (%s); every page was restored, RAM is unmanaged now", g->reason);
}

/* Handles one message the server sent on its own; replies are not expected here. */
static int handle_request(struct memsrv_session *s, const Memsrv__ServerMessage *m,
			  const struct memsrv_vmm_ops *ops, void *opaque)
{
	switch (m->msg_case) {
	case MEMSRV__SERVER_MESSAGE__MSG_GOODBYE:
		return goodbye(s, m->goodbye);
	case MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET:
		if (!ops || !ops->balloon_target)
			return fail(-EOPNOTSUPP, "memsrv asked for a balloon target; this VMM has no balloon");
		return ops->balloon_target(opaque, m->balloon_target->target_bytes);
	case MEMSRV__SERVER_MESSAGE__MSG_ERROR:
		server_error(m->error);
		return 0;
	default:
		return fail(-EPROTO, "unexpected message %d from memsrv", m->msg_case);
	}
}

int memsrv_session_dispatch(struct memsrv_session *s, const struct memsrv_vmm_ops *ops, void *opaque)
{
	Memsrv__ServerMessage *m = NULL;
	struct wire_fault fault = { "" };
	pthread_mutex_lock(&s->lock);
	if (s->failed) {
		drain_fd(s->notify);  /* woken once: a VMM that logs and goes on must not spin */
		__atomic_store_n(&s->failure_read, true, __ATOMIC_RELAXED);
		int err = fail(s->failed, "%s", s->failure);
		pthread_mutex_unlock(&s->lock);
		return err;
	}
	/* The epoll fd wakes for the hang-up and notify too: never block the
	 * VMM's thread on a socket with nothing to read. */
	int sock = s->sock;
	uint64_t generation = s->reconnects;
	struct pollfd p = { .fd = sock, .events = POLLIN };
	int ret = sock >= 0 && poll(&p, 1, 0) > 0 ? wire_recv_server(sock, &m, &fault) : -EAGAIN;
	bool resuming = s->has_keeper && !s->ended;
	if (ret == 0) {
		/* out of the set, or a level-triggered VMM would spin on the
		 * hang-up; the keeper reconnects */
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, sock, NULL);
		if (resuming)
			signal_fd(s->kick);
	}
	pthread_mutex_unlock(&s->lock);
	if (ret == 0 && !resuming)
		return fail(-ECONNRESET, "memsrv closed the session");
	if (ret == 0 || ret == -EAGAIN || (ret == -ECONNRESET && resuming))
		return 0;
	if (ret < 0)
		return fail(ret, "session: %s", ret == -EPROTO ? fault.what : strerror(-ret));
	ret = handle_request(s, m, ops, opaque);
	if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET) {
		/* memsrv plans with the answer: a VMM without a balloon is not asked again */
		Memsrv__BalloonResult br = MEMSRV__BALLOON_RESULT__INIT;
		br.target_bytes = m->balloon_target->target_bytes;
		br.errno_code = ret < 0 ? -ret : 0;
		br.message = ret < 0 ? (char *)memsrv_last_error() : NULL;
		Memsrv__ClientMessage reply = MEMSRV__CLIENT_MESSAGE__INIT;
		reply.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_RESULT;
		reply.balloon_result = &br;
		pthread_mutex_lock(&s->lock);
		if (s->sock >= 0 && s->reconnects == generation)  /* only to the memsrv that asked */
			wire_send_client(s->sock, &reply, NULL, 0);
		pthread_mutex_unlock(&s->lock);
		ret = ret == -EOPNOTSUPP ? 0 : ret;  /* no balloon is an answer, not a failure */
	}
	memsrv__server_message__free_unpacked(m, NULL);
	return ret;
}

int memsrv_balloon_actual(struct memsrv_session *s, uint64_t actual_bytes)
{
	if (!s)
		return fail(-EINVAL, "no session");
	Memsrv__BalloonActual ba = MEMSRV__BALLOON_ACTUAL__INIT;
	ba.actual_bytes = actual_bytes;
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_ACTUAL;
	msg.balloon_actual = &ba;
	pthread_mutex_lock(&s->lock);
	int ret = s->sock >= 0 ? wire_send_client(s->sock, &msg, NULL, 0) : -ENOTCONN;
	pthread_mutex_unlock(&s->lock);
	return ret ? fail(ret, "telling memsrv what the balloon left the guest: %s", strerror(-ret)) : 0;
}

/* Sends the unfenced discards not sent yet, in one Discard; s->lock
 * held.  0 or -errno (they stay unsent). */
static int send_unsent(struct memsrv_session *s)
{
	if (!s->n_unsent)
		return 0;
	if (s->sock < 0)
		return -ENOTCONN;
	Memsrv__DiscardRange *more[DISCARD_BATCH_MAX];
	for (unsigned i = 1; i < s->n_unsent; i++)
		more[i - 1] = &s->unsent[i];
	Memsrv__Discard d = MEMSRV__DISCARD__INIT;
	d.host_addr = s->unsent[0].host_addr;
	d.length = s->unsent[0].length;
	d.n_more = s->n_unsent - 1;
	d.more = more;
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_DISCARD;
	msg.discard = &d;
	int ret = wire_send_client(s->sock, &msg, NULL, 0);
	if (!ret)
		s->n_unsent = 0;
	return ret;
}

/* Adds [start, start + len) to the unsent discards (to the last range when
 * it adjoins it), sending them first when there is no room; s->lock held.
 * 0 or -errno. */
static int add_unsent(struct memsrv_session *s, uint64_t start, uint64_t len)
{
	if (s->n_unsent) {
		Memsrv__DiscardRange *last = &s->unsent[s->n_unsent - 1];
		if (last->host_addr + last->length == start) {
			last->length += len;
			return 0;
		}
		if (last->host_addr == start + len) {  /* a balloon often gives pages downwards */
			last->host_addr = start;
			last->length += len;
			return 0;
		}
	}
	if (s->n_unsent == DISCARD_BATCH_MAX) {
		int ret = send_unsent(s);
		if (ret)
			return ret;
	}
	Memsrv__DiscardRange *r = &s->unsent[s->n_unsent++];
	memsrv__discard_range__init(r);
	r->host_addr = start;
	r->length = len;
	return 0;
}

/* The zap that fences the Discards sent so far: its REMOVE event holds
 * the caller until memsrv read it, and memsrv applies the Discards sent
 * before an event before any fault read after it, so no access once this
 * returns gets a discarded page's old content.  [addr, addr + len) was
 * punched already: the zap takes nothing the guest still has. */
static int fence(void *addr, uint64_t len)
{
	if (madvise(addr, len, MADV_DONTNEED))
		return fail(-errno, "zapping %p + %llu after the discard: %s", addr, (unsigned long long)len,
			    strerror(errno));
	return 0;
}

static int discard(struct memsrv_session *s, void *addr, uint64_t len, bool fenced)
{
	uint64_t start = (uint64_t)(uintptr_t)addr;
	unsigned i;
	if (!s)
		return fail(-EINVAL, "no session");
	for (i = 0; i < s->n_regions; i++)
		if (start >= s->regions[i].addr && start - s->regions[i].addr < s->regions[i].size)
			break;
	if (i == s->n_regions || len > s->regions[i].addr + s->regions[i].size - start)
		return fail(-EINVAL, "%p + %llu is not guest RAM of one region", addr, (unsigned long long)len);
	uint32_t ps = s->regions[i].page_size;
	if ((start - s->regions[i].addr) % ps || len % ps || !len)
		return fail(-EINVAL, "%p + %llu is not whole %u-byte pages", addr, (unsigned long long)len, ps);
	/* the memory goes first, so that no page of it survives in the memfd
	 * whatever memsrv does; then memsrv lets go of what it holds */
	int ret;
	if (s->regions[i].fd_index) {
		off_t off = (off_t)(s->regions[i].fd_offset + (start - s->regions[i].addr));
		ret = fallocate(s->fds[s->regions[i].fd_index], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)len)
			      ? -errno : 0;
	} else {
		ret = madvise(addr, len, MADV_DONTNEED) ? -errno : 0;
	}
	if (ret)
		return fail(ret, "discarding %p + %llu: %s", addr, (unsigned long long)len, strerror(-ret));
	pthread_mutex_lock(&s->lock);
	/* in the order they came: the unsent batch, then this one */
	ret = add_unsent(s, start, len);
	if (!ret && fenced)
		ret = send_unsent(s);
	/* an fd's punch made no event: a fence is owed, on this batch's last
	 * page; anonymous memory's MADV_DONTNEED was one */
	if (!ret && s->regions[i].fd_index && !fenced) {
		s->fence_owed = start + len - ps;
		s->fence_len = ps;
	}
	pthread_mutex_unlock(&s->lock);
	if (ret)
		return fail(ret, "telling memsrv of the discard: %s (pages it held there come back as they were)",
			    strerror(-ret));
	return s->regions[i].fd_index && fenced ? fence(addr, len) : 0;
}

int memsrv_discard(struct memsrv_session *s, void *addr, uint64_t len)
{
	return discard(s, addr, len, true);
}

int memsrv_discard_unfenced(struct memsrv_session *s, void *addr, uint64_t len)
{
	return discard(s, addr, len, false);
}

int memsrv_discard_fence(struct memsrv_session *s)
{
	if (!s)
		return fail(-EINVAL, "no session");
	pthread_mutex_lock(&s->lock);
	int ret = send_unsent(s);
	uint64_t addr = ret ? 0 : s->fence_owed, len = s->fence_len;
	if (!ret)
		s->fence_owed = 0;
	pthread_mutex_unlock(&s->lock);
	if (ret)
		return fail(ret, "telling memsrv of the discards: %s (pages it held there come back as they were)",
			    strerror(-ret));
	return addr ? fence((void *)(uintptr_t)addr, len) : 0;
}

/* Sends Detach and waits for its answer, serving memsrv's requests
 * meanwhile: the pages restored (>= 0), or -errno. */
static int detach_exchange(struct memsrv_session *s, bool restore)
{
	Memsrv__Detach d = MEMSRV__DETACH__INIT;
	d.has_restore = 1;
	d.restore = restore;
	d.has_migrated = !restore;  /* memsrv_detach() sends Detach for these two only */
	d.migrated = !restore;
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_DETACH;
	msg.detach = &d;
	int ret = wire_send_client(s->sock, &msg, NULL, 0);
	if (ret)
		ret = fail(ret, "sending Detach: %s", strerror(-ret));
	while (!ret) {
		Memsrv__ServerMessage *m = NULL;
		ret = recv_reply(s->sock, 600, &m);
		if (ret)
			break;
		int done = 1;
		if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_DETACH_REPLY)
			ret = (int)m->detach_reply->pages_restored;
		else if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR)
			ret = server_error(m->error);
		else if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_GOODBYE)
			ret = m->goodbye->restored ? 0 : goodbye(s, m->goodbye);
		else {
			handle_request(s, m, NULL, NULL);
			done = 0;
		}
		memsrv__server_message__free_unpacked(m, NULL);
		if (done)
			break;
	}
	return ret;
}

int memsrv_detach(struct memsrv_session *s, unsigned flags)
{
	if (!s)
		return fail(-EINVAL, "no session");
	if ((flags & MEMSRV_DETACH_RESTORE) && (flags & MEMSRV_DETACH_MIGRATED))
		return fail(-EINVAL, "MEMSRV_DETACH_RESTORE and MEMSRV_DETACH_MIGRATED: the pages stay or go, not both");
	bool had_keeper = s->has_keeper;
	keeper_stop(s);  /* s is this thread's alone from here on */
	/* discards not fenced yet go first: memsrv is not to restore their
	 * pages (a failure leaves them to the restore: old content, no loss) */
	pthread_mutex_lock(&s->lock);
	send_unsent(s);
	pthread_mutex_unlock(&s->lock);
	int ret = 0;
	if (flags & MEMSRV_DETACH_MIGRATED) {
		ret = s->sock >= 0 && !s->ended ? detach_exchange(s, false)
						: fail(-ENOTCONN, "memsrv is down: the migration's last pages cannot go");
		if (ret < 0) {
			/* the VM did not move: it stays attached, every page with it */
			if (had_keeper)
				keeper_start(s);
			return ret;
		}
	} else if ((flags & MEMSRV_DETACH_RESTORE) && s->ended) {
		/* the Goodbye brought every page back already */
	} else if ((flags & MEMSRV_DETACH_RESTORE) && s->sock < 0) {
		ret = s->failed ? fail(-ENOTCONN, "cannot restore the evicted pages: %s", s->failure)
				: fail(-ENOTCONN, "cannot restore the evicted pages: memsrv is down");
		/* the regions stay registered: faults on pages memsrv held keep waiting */
		session_free(s, true);
		return ret;
	} else if (flags & MEMSRV_DETACH_RESTORE) {
		/* Stored pages must be back before the regions are unregistered:
		 * after that, a hole reads as zeros and the data would be gone. */
		ret = detach_exchange(s, true);
		if (ret < 0) {
			/* keep the registration: the server may still hold pages,
			 * and faults on them must keep waiting rather than read zeros */
			session_free(s, true);
			return ret;
		}
	}
	unregister_all(s);
	session_free(s, false);
	return ret;
}

/* struct memsrv_vm as libmemsrv 0.1 to 0.3 knew it: up to flags. */
struct memsrv_vm_0_1 {
	const char *name;
	const struct memsrv_region *regions;
	unsigned n_regions;
	uint64_t guarantee_bytes, limit_bytes;
	uint32_t shares;
	const char *codec, *policy;
	unsigned flags;
};

_Static_assert(sizeof(struct memsrv_vm_0_1) == offsetof(struct memsrv_vm, snapshot_dir),
	       "the 0.1 struct is the new one without snapshot_dir");

/* memsrv_attach@MEMSRV_0.1: a program built against the smaller struct
 * (reading past it would take whatever follows for snapshot_dir). */
__asm__(".symver memsrv_attach_0_1, memsrv_attach@MEMSRV_0.1");
int memsrv_attach_0_1(const char *socket_path, const struct memsrv_vm_0_1 *old, struct memsrv_session **out);
int memsrv_attach_0_1(const char *socket_path, const struct memsrv_vm_0_1 *old, struct memsrv_session **out)
{
	if (!old)
		return memsrv_attach_0_4(socket_path, NULL, out);
	struct memsrv_vm vm = {
		.name = old->name, .regions = old->regions, .n_regions = old->n_regions,
		.guarantee_bytes = old->guarantee_bytes, .limit_bytes = old->limit_bytes, .shares = old->shares,
		.codec = old->codec, .policy = old->policy, .flags = old->flags,
	};
	return memsrv_attach_0_4(socket_path, &vm, out);
}
