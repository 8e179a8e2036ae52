/* vm_thread: the life of a VM's own thread — sleep on the uffd and the job
 * eventfd, serve faults (and keep polling briefly after a burst), and run
 * the jobs the server posts: evict, detach, shutdown, snapshot.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accessed.h"
#include "anon_drops.h"
#include "clean_pages.h"
#include "cpu_follow.h"
#include "discards.h"
#include "fault.h"
#include "image.h"
#include "image_pages.h"
#include "log.h"
#include "migrate_in.h"
#include "migrate_out.h"
#include "vm_state.h"
#include "sampler.h"
#include "snapshot.h"
#include "swap_reads.h"
#include "wire.h"

uint64_t fault_spin_ns = 200 * 1000;

/* VM threads spinning now, across the node, and the CPUs memsrv may run on:
 * a spin is long only while it leaves CPUs to the vCPUs (serve_and_spin). */
static _Atomic unsigned spinners;
static _Atomic unsigned spin_cpus;  /* 0 until the first spin counts them */

static unsigned cpus_usable(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

#define POLICY_TICK_NS (1000ull * 1000 * 1000)  /* aging and bit clearing, once a second */

/* evicted per quiet moment of a spin, sorted into runs; a fault that comes
 * meanwhile waits for one run at most (evict_pages gives way) */
#define SPIN_HEADROOM_PAGES EVICT_RUN_PAGES

/* Serves faults, then keeps polling the uffd for a short while: faults come
 * in bursts, and catching the next one without a wakeup is 3-4x faster.
 * How long it spins adapts: a spin that catches a fault doubles it (up to
 * --spin-us), one that catches none halves it (down to an eighth), so a VM
 * that faults rarely does not burn the CPU its own vCPUs need.  While
 * other VM threads already spin on half the CPUs, a spin is held to a
 * quarter of --spin-us: spinners beyond that take the vCPUs' CPUs
 * (docs/benchmarks.md: 200 us paid 15% for one VM on 2 CPUs, and cost 10%
 * for three).  Quiet moments of a spin make room below the limit, so the
 * next faults find it instead of evicting inline. */
static void serve_and_spin(struct vm *vm)
{
	fault_serve_available(vm);
	if (!fault_spin_ns || vm->eng.cpu_follow.one_cpu)
		return;
	unsigned cpus = atomic_load_explicit(&spin_cpus, memory_order_relaxed);
	if (!cpus) {
		cpus = cpus_usable();  /* every thread finds the same */
		atomic_store_explicit(&spin_cpus, cpus, memory_order_relaxed);
	}
	if (!vm->eng.spin_ns)
		vm->eng.spin_ns = fault_spin_ns;
	unsigned others = atomic_fetch_add(&spinners, 1);
	uint64_t cap = others < (cpus + 1) / 2 ? fault_spin_ns : fault_spin_ns / 4;
	uint64_t spin = vm->eng.spin_ns < cap ? vm->eng.spin_ns : cap;
	uint64_t deadline = monotonic_ns() + spin;
	bool caught = false;
	while (!vm->thr.stopping && !vm->eng.vmm_gone && monotonic_ns() < deadline) {
		/* the ring first: an eviction that gave way to a fault read it there */
		if (fault_waits(vm)) {
			fault_serve_pending(vm);
			caught = true;
			deadline = monotonic_ns() + spin;
		} else {
			evict_keep_headroom(vm, SPIN_HEADROOM_PAGES);
			accessed_step(vm);
		}
		if (swap_reads_ready(vm)) {
			swap_reads_reap(vm);
			deadline = monotonic_ns() + spin;
		}
	}
	atomic_fetch_sub(&spinners, 1);
	if (caught)
		vm->eng.spin_ns = vm->eng.spin_ns * 2 < fault_spin_ns ? vm->eng.spin_ns * 2 : fault_spin_ns;
	else if (vm->eng.spin_ns / 2 >= fault_spin_ns / 8)
		vm->eng.spin_ns /= 2;
}

static struct vm_job *take_jobs(struct vm *vm)
{
	pthread_mutex_lock(&vm->thr.job_lock);
	struct vm_job *jobs = vm->thr.jobs;
	vm->thr.jobs = NULL;
	vm->thr.jobs_tail = &vm->thr.jobs;
	pthread_mutex_unlock(&vm->thr.job_lock);
	return jobs;
}

static void reply_to(int fd, const Memsrv__ServerMessage *msg)
{
	if (fd >= 0)
		wire_send_server(fd, msg);
}

/* Whether the VM can give pages now; if not, the requester is told why. */
static bool may_evict(struct vm *vm, int reply_fd)
{
	if (!vm->evictable) {
		wire_send_error(reply_fd, EOPNOTSUPP, "evict.name", "VM %s cannot be evicted: %s", vm->name,
				vm->not_evictable_reason);
		return false;
	}
	pid_t other = atomic_load(&vm->unprotected_by);
	if (other) {
		wire_send_error(reply_fd, EBUSY, "evict.name",
				"VM %s cannot be evicted while process %d maps its RAM outside memsrv's userfaultfd",
				vm->name, other);
		return false;
	}
	return true;
}

/* Evicts want pages (or until the policy has none left) in chunks, serving
 * faults between them and waiting while writeback makes room in the cache.
 * 0 or -errno; res counts what left either way. */
static int evict_many(struct vm *vm, uint64_t want, struct evict_result *res)
{
	uint64_t budget = vm_total_pages(vm);
	int ret = 0;
	unsigned stalled = 0;  /* waits for room in a row */
	while (res->pages < want && budget && !vm->thr.stopping && !vm->eng.vmm_gone && !vm->eng.detaching) {
		uint64_t chunk = want - res->pages < 1024 ? want - res->pages : 1024;
		uint64_t before = res->pages;
		ret = evict_pages(vm, chunk, &budget, false, res);
		/* keep faults flowing during a long eviction */
		fault_serve_available(vm);
		if (swap_reads_ready(vm))
			swap_reads_reap(vm);
		if (res->pages != before)
			stalled = 0;
		if (ret == -EBUSY && ++stalled > 250)
			return -ENOSPC;  /* 5 s without room: swap is not taking pages */
		if (ret == -EBUSY) {
			/* the cache is at its budget and writeback is making room */
			store_wait_room(vm->store, 20);
			ret = 0;
			continue;
		}
		if (ret || res->pages == before)
			break;  /* an error, or the policy has no resident page left to give */
	}
	return ret;
}

/* Why eviction stopped, in words an operator can act on: a store with
 * no room says where it could not spill. */
static const char *evict_stopped_why(struct vm *vm, int err)
{
	if (err != -ENOSPC)
		return strerror(-err);
	struct store_stats st;
	store_get_stats(vm->store, &st);
	return st.remote_unreachable ? "the cache is full and the remote tier's cluster cannot be reached"
	       : st.remote_failing   ? "the cache is full and uploads to the remote tier's cluster fail"
	       : st.swap_failing     ? "the cache is full and writes to swap fail"
	       : st.swap_full        ? "the cache is full and so is swap"
	       : st.store_full       ? "the cache is full (--cache-size) with nowhere to spill"
				     : strerror(ENOSPC);
}

static void run_evict(struct vm *vm, struct vm_job *job)
{
	if (!may_evict(vm, job->reply_fd))
		return;
	/* bytes rounded up to whole pages of the VM's page size (4 KiB) */
	uint64_t want = job->all ? UINT64_MAX : (job->bytes + 4095) / 4096;
	struct evict_result res = { 0 };
	int ret = evict_many(vm, want, &res);
	if (ret && res.pages == 0) {
		wire_send_error(job->reply_fd, -ret, NULL, "evicting VM %s failed: %s", vm->name, evict_stopped_why(vm, ret));
		return;
	}
	if (ret)
		vm_warn(vm, "eviction stopped early: %s", evict_stopped_why(vm, ret));
	vm_info(vm, "evicted %" PRIu64 " pages (%" PRIu64 " zero, %" PRIu64 " stored in %" PRIu64 " bytes)",
		res.pages, res.zero_pages, res.stored_pages, res.stored_bytes);
	Memsrv__EvictReply er = MEMSRV__EVICT_REPLY__INIT;
	er.pages_evicted = res.pages;
	er.bytes_evicted = res.pages * 4096;
	er.zero_pages = res.zero_pages;
	er.stored_pages = res.stored_pages;
	er.stored_bytes = res.stored_bytes;
	er.resident_bytes = ctr_get(&vm->resident_bytes);
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_EVICT_REPLY;
	msg.evict_reply = &er;
	reply_to(job->reply_fd, &msg);
}

static void run_snapshot(struct vm *vm, struct vm_job *job)
{
	struct snapshot_result res;
	char why[512];
	int ret = snapshot_run(vm, job->dir, job->remote, &res, why, sizeof why);
	if (ret) {
		vm_warn(vm, "snapshot into %s failed: %s", job->dir, why);
		wire_send_error(job->reply_fd, -ret, NULL, "snapshot of VM %s into %s failed: %s", vm->name, job->dir,
				why);
		return;
	}
	vm_info(vm, "snapshot into %s: %" PRIu64 " pages (%" PRIu64 " zero, %" PRIu64 " same-filled), %" PRIu64
		" objects (%" PRIu64 " from the store) in %" PRIu64 " bytes, %" PRIu64 " ms, %" PRIu64
		" writes saved first, longest wait %" PRIu64 " us", job->dir, res.pages, res.zero_pages,
		res.samefilled_pages, res.objects, res.stored_objects, res.file_bytes, res.duration_ns / 1000000,
		res.writes_saved, res.max_pause_ns / 1000);
	if (res.remote_holder[0])
		vm_info(vm, "snapshot into %s: its objects are in the cluster under %s, %" PRIu64 " sent (%" PRIu64
			" bytes), %" PRIu64 " held already", job->dir, res.remote_holder, res.remote_uploaded,
			res.remote_bytes, res.remote_shared);
	char path[4200];
	snprintf(path, sizeof path, "%s/" IMAGE_FILE, job->dir);
	Memsrv__SnapshotReply sr = MEMSRV__SNAPSHOT_REPLY__INIT;
	sr.path = path;
	sr.pages = res.pages;
	sr.zero_pages = res.zero_pages;
	sr.samefilled_pages = res.samefilled_pages;
	sr.object_pages = res.object_pages;
	sr.objects = res.objects;
	sr.stored_objects = res.stored_objects;
	sr.data_bytes = res.data_bytes;
	sr.file_bytes = res.file_bytes;
	sr.duration_ns = res.duration_ns;
	sr.writes_saved = res.writes_saved;
	sr.max_pause_ns = res.max_pause_ns;
	if (res.remote_holder[0]) {
		sr.remote_holder = res.remote_holder;
		sr.has_remote_uploaded = sr.has_remote_shared = sr.has_remote_bytes = true;
		sr.remote_uploaded = res.remote_uploaded;
		sr.remote_shared = res.remote_shared;
		sr.remote_bytes = res.remote_bytes;
	}
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_SNAPSHOT_REPLY;
	msg.snapshot_reply = &sr;
	reply_to(job->reply_fd, &msg);
}

/* Detach or shutdown; true when a migration took the job to answer later. */
static bool run_detach(struct vm *vm, struct vm_job *job)
{
	if (job->kind == VM_JOB_DETACH && job->migrated) {
		/* the VMM stopped the VM at the end of its own migration: the
		 * last pages go, then the answer */
		if (migrate_out_vm_stopped(vm, job))
			return true;
		vm_send_error(vm, ENOTCONN, "detach.migrated", "VM %s is not migrating, or its migration failed (memsrv-ctl migrate %s --to "
			      "ADDR:PORT first): it stays here, whole and attached", vm->name, vm->name);
		return false;
	}
	if (vm->eng.migrate_out)
		migrate_out_cancel(vm, -ECANCELED, job->kind == VM_JOB_SHUTDOWN ? "memsrv is shutting down"
						   : "the VMM detached");
	vm->eng.detaching = true;  /* no more eviction, whatever the limit */
	uint64_t restored = 0, failed = job->restore ? fault_restore_all(vm, &restored) : 0;
	vm_info(vm, "%s: %" PRIu64 " pages restored, %" PRIu64 " failed",
		job->kind == VM_JOB_SHUTDOWN ? "shutdown" : "detach", restored, failed);
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	Memsrv__DetachReply dr = MEMSRV__DETACH_REPLY__INIT;
	Memsrv__Goodbye bye = MEMSRV__GOODBYE__INIT;
	if (job->kind == VM_JOB_SHUTDOWN) {
		bye.restored = !failed && !vm->eng.vmm_gone;
		/* its VMM still waits on pages: the next memsrv may serve them */
		vm->persist.keep = !bye.restored && !vm->eng.vmm_gone && vm->persist.header;
		bye.reason = "memsrv is shutting down";
		msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_GOODBYE;
		msg.goodbye = &bye;
		vm_send(vm, &msg);
		atomic_store(&vm->thr.stopping, true);
		return false;
	}
	if (failed) {
		vm_send_error(vm, EIO, NULL, "%" PRIu64 " pages could not be restored", failed);
		return false;
	}
	dr.pages_restored = restored;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_DETACH_REPLY;
	msg.detach_reply = &dr;
	vm_send(vm, &msg);
	return false;
}

/* Another process maps the VM's RAM (mappings.c): memsrv cannot see its
 * accesses, so every page goes back where that process can read it. */
static void run_restore(struct vm *vm)
{
	migrate_out_cancel(vm, -EBUSY, "another process maps the VM's RAM: its writes could not be caught");
	/* nor can a clean page's: its copy no longer vouches for it */
	for (unsigned i = 0; i < vm->n_regions; i++)
		clean_pages_forget(vm, &vm->regions[i], 0, vm->regions[i].pt.npages);
	uint64_t restored = 0, failed = fault_restore_all(vm, &restored);
	vm_info(vm, "%" PRIu64 " pages put back for the other mapping%s", restored,
		failed ? ", some could not be (logged)" : "");
}

static void run_jobs(struct vm *vm)
{
	uint64_t v;
	if (read(vm->thr.wake_fd, &v, sizeof v) < 0) {
		/* nothing posted: a spurious wakeup */
	}
	for (struct vm_job *job = take_jobs(vm), *next; job; job = next) {
		next = job->next;
		if (vm->thr.stopping)
			wire_send_error(job->reply_fd, ESHUTDOWN, NULL, "VM %s is going away", vm->name);
		else if (job->kind == VM_JOB_MIGRATE_OUT)
			migrate_out_start(vm, job);
		else if (job->kind == VM_JOB_MIGRATE_IN)
			migrate_in_bind(vm, job);
		else if (job->kind == VM_JOB_EVICT)
			run_evict(vm, job);
		else if (job->kind == VM_JOB_DISCARD)
			discards_apply(vm, job->addr, job->addr + job->len, DISCARD_REQUESTED);
		else if (job->kind == VM_JOB_RESTORE)
			run_restore(vm);
		else if (job->kind == VM_JOB_SNAPSHOT)
			run_snapshot(vm, job);
		else if (run_detach(vm, job))
			continue;  /* the migration answers it */
		if (job->reply_fd >= 0)
			close(job->reply_fd);
		vm_job_free(job);
	}
}

void *vm_thread_main(void *arg)
{
	struct vm *vm = arg;
	if (vm->persist.resumed) {
		/* a drop the memsrv before asked for is done before a page is
		 * served or unprotected: it would take a write with it */
		anon_drops_barrier(vm);
		vm_state_reconcile_mapped(vm);
		vm_state_wake_all(vm);
	}
	if (vm_limit(vm) && ctr_get(&vm->resident_bytes) > vm_limit(vm))
		evict_make_room(vm, 0);
	int retry_ms = -1;  /* a failed swap read waits for its retry */
	uint64_t next_tick = monotonic_ns() + POLICY_TICK_NS;
	while (!vm->thr.stopping) {
		vm_policy_update(vm);
		uint64_t now = monotonic_ns();
		if (now >= next_tick) {
			sampler_tick(vm);
			image_pages_tick(vm);
			cpu_follow_tick(vm);
			if (vm->eng.policy.ops && vm->eng.policy.ops->tick)
				vm->eng.policy.ops->tick(&vm->eng.policy);
			next_tick = now + POLICY_TICK_NS;
		}
		/* jobs and evictions may have read faults into the ring: a
		 * vCPU waits on each of them, so serve them before sleeping */
		if (vm->eng.pending_len)
			fault_serve_available(vm);
		retry_ms = swap_reads_reap(vm);  /* and when a failed read is due again */
		struct pollfd p[5] = {
			{ .fd = vm->uffd, .events = vm->eng.vmm_gone ? 0 : POLLIN },
			{ .fd = vm->thr.wake_fd, .events = POLLIN },
			{ .fd = swap_reads_fd(vm), .events = POLLIN },
		};
		int migrate_ms = -1;  /* when a migration has pages to send next */
		if (vm->eng.migrate_out)
			migrate_out_poll(vm, &p[3], &migrate_ms);  /* its connections: p[3], p[4] */
		else
			migrate_in_poll(vm, &p[3]);
		int tick_ms = (int)((next_tick - now) / 1000000) + 1;
		bool background = image_pages_busy(vm);  /* a resume installs pages between faults */
		int timeout_ms = background ? 0 : retry_ms >= 0 && retry_ms < tick_ms ? retry_ms : tick_ms;
		if (migrate_ms >= 0 && migrate_ms < timeout_ms)
			timeout_ms = migrate_ms;
		if (poll(p, 5, timeout_ms) < 0) {
			if (errno == EINTR)
				continue;
			vm_err(vm, "poll: %s", strerror(errno));
			break;
		}
		if (vm->thr.stopping)
			break;
		if (p[2].revents & POLLIN)
			swap_reads_reap(vm);
		if (p[1].revents & POLLIN)
			run_jobs(vm);
		if (p[0].revents & POLLIN) {
			serve_and_spin(vm);
			cpu_follow_let_vcpus_run(vm);  /* before the room for the next faults */
		}
		if (vm->eng.migrate_out)  /* reads what came, sends what is due: cheap when nothing is */
			migrate_out_step(vm, &p[3]);
		else if (vm->eng.migrate_in && (p[3].revents || p[4].revents))
			migrate_in_step(vm, &p[3]);
		evict_keep_headroom(vm, UINT64_MAX);
		accessed_step(vm);
		if (p[0].revents & (POLLERR | POLLHUP))
			fault_vmm_gone(vm, -ESRCH);
		else if (background)
			image_pages_background(vm);  /* a batch between two rounds of faults: neither starves */
	}
	migrate_out_cancel(vm, -ESHUTDOWN, "the VM went away");
	migrate_in_free(vm);
	return NULL;
}
