/* anon_drops: anonymous guest RAM read through /proc/PID/mem and dropped
 * by libmemsrv's drop thread (anon_drops.h, drop_wire.h). */
#include "anon_drops.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drop_wire.h"
#include "fault.h"
#include "log.h"

#define DROP_SLOW_NS (5ull * 1000 * 1000 * 1000)     /* then a warning: the VM's faults wait too */
#define DROP_STOPPING_NS (2ull * 1000 * 1000 * 1000) /* memsrv stops: waited this long, it goes */
#define DROP_POLL_MS 100

const char *anon_drops_blocker(struct vm *vm, char *why, size_t len)
{
	if (vm->anon.drop_sock < 0)
		return "anonymous private memory: the VMM sent no drop channel (libmemsrv sends one), and memsrv "
		       "cannot drop another process's anonymous pages";
	if (!(vm->register_modes & UFFDIO_REGISTER_MODE_WP) || !(vm->uffd_features & UFFD_FEATURE_PAGEFAULT_FLAG_WP))
		return "anonymous private memory: the uffd lacks write-protect mode (UFFD_FEATURE_PAGEFAULT_FLAG_WP), "
		       "without which eviction races with writes";
	if (vm->anon.mem_fd < 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/mem", (int)vm->pid);
		vm->anon.mem_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (vm->anon.mem_fd < 0) {
			snprintf(why, len, "anonymous private memory: cannot open %s to read it (%s): memsrv needs to "
				 "be allowed to ptrace the VMM (root, or CAP_SYS_PTRACE)", path, strerror(errno));
			return why;
		}
	}
	return NULL;
}

/* The channel broke: the VMM's drop thread is gone, and with it the way
 * to drop; what is held stays held, and nothing more is evicted. */
static int channel_broken(struct vm *vm, int err)
{
	vm_warn(vm, "the VMM's drop channel broke (%s): its anonymous memory is evicted no more", strerror(-err));
	atomic_store(&vm->anon.stopped, -EPIPE);
	close(vm->anon.drop_sock);
	vm->anon.drop_sock = -1;
	return -EPIPE;
}

/* Reads what the uffd holds into the pending ring.  A ring full of events
 * only (a VMM discarding page after page) has them applied now, not after
 * the run: the VMM's madvise waits for its REMOVE to be read. */
static void read_uffd(struct vm *vm)
{
	int n = fault_drain(vm);
	if (n < 0) {
		fault_vmm_gone(vm, n);
		return;
	}
	if (n == 0 && vm->eng.pending_len == PENDING_MSGS && vm->eng.events_unapplied)
		fault_apply_events(vm);
}

/* Takes the replies that came to the runs in flight (the drop thread
 * answers each, in order).  0, or -errno: the channel broke. */
static int take_replies(struct vm *vm)
{
	struct vm_anon *a = &vm->anon;
	for (;;) {
		struct drop_reply rp;
		ssize_t got = recv(a->drop_sock, &rp, sizeof rp, MSG_DONTWAIT);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			return 0;
		if (got <= 0)
			return got ? -errno : -EPIPE;
		/* an earlier memsrv's (its seqs are older), or not a reply */
		if (got != sizeof rp || rp.seq <= a->acked || rp.seq > a->seq)
			continue;
		for (unsigned i = 0; i < a->n_runs; i++)
			if (a->runs[i].seq == rp.seq)
				a->runs[i].err = rp.err > 0 ? -EPROTO : rp.err;
		a->acked = rp.seq;
	}
}

int anon_drop_post(struct vm *vm, uint64_t addr, uint64_t len)
{
	struct vm_anon *a = &vm->anon;
	if (a->n_runs == ANON_RUNS_IN_FLIGHT)
		return -ENOBUFS;
	if (a->drop_sock < 0)
		return -EPIPE;
	struct drop_request rq = { .seq = a->seq + 1, .addr = addr, .len = len };
	ssize_t sent;
	while ((sent = send(a->drop_sock, &rq, sizeof rq, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (sent != (ssize_t)sizeof rq)
		return channel_broken(vm, sent < 0 ? -errno : -EIO);
	a->seq = rq.seq;
	a->runs[a->n_runs++] = (struct anon_drop_run){ .addr = addr, .len = len, .seq = rq.seq, .err = -EINPROGRESS };
	return 0;
}

void anon_drops_await(struct vm *vm)
{
	struct vm_anon *a = &vm->anon;
	uint64_t start = monotonic_ns(), stop_seen = 0;
	bool warned = false;
	int broken = a->drop_sock < 0 ? -EPIPE : 0;
	while (!broken && a->n_runs && a->acked < a->seq) {
		int got = take_replies(vm);
		if (got < 0) {
			broken = channel_broken(vm, got);
			break;
		}
		if (a->acked >= a->seq)
			break;
		if (vm->eng.vmm_gone) {
			broken = -ESRCH;
			break;
		}
		uint64_t now = monotonic_ns();
		if (!stop_seen && (vm->thr.stopping || vm_job_waits(vm, VM_JOB_SHUTDOWN)))
			stop_seen = now;
		if (stop_seen && now - stop_seen > DROP_STOPPING_NS) {
			vm_warn(vm, "memsrv stops and the VMM has not dropped what it was asked to yet: it may still, "
				    "and a resumed memsrv waits for it");
			/* no more runs to wait for: the limit gives way until the end */
			atomic_store(&vm->anon.stopped, -ESHUTDOWN);
			broken = -ESHUTDOWN;
			break;
		}
		if (!warned && now - start > DROP_SLOW_NS) {
			vm_warn(vm, "the VMM's drop thread has not answered for 5 s: writes to the pages it is to drop wait");
			warned = true;
		}
		struct pollfd p[2] = { { .fd = a->drop_sock, .events = POLLIN }, { .fd = vm->uffd, .events = POLLIN } };
		if (poll(p, 2, DROP_POLL_MS) < 0 && errno != EINTR) {
			broken = -errno;
			break;
		}
		if (p[1].revents)
			read_uffd(vm);
	}
	for (unsigned i = 0; i < a->n_runs; i++)
		if (a->runs[i].err == -EINPROGRESS)
			a->runs[i].err = broken ? broken : -EIO;
}

int anon_drop(struct vm *vm, uint64_t addr, uint64_t len)
{
	struct vm_anon *a = &vm->anon;
	unsigned mine = a->n_runs;  /* after the runs an eviction posted, if any */
	int ret = anon_drop_post(vm, addr, len);
	if (ret)
		return ret;
	anon_drops_await(vm);
	ret = a->runs[mine].err;
	a->n_runs = mine;
	return ret;
}

void anon_drops_barrier(struct vm *vm)
{
	if (vm->anon.drop_sock < 0)
		return;
	int ret = anon_drop(vm, 0, 0);
	if (ret)
		vm_warn(vm, "waiting for the drops an earlier memsrv asked for failed: %s", strerror(-ret));
}
