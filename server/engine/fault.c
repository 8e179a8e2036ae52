/* fault: reads a VM's userfaultfd, resolves every fault, applies
 * REMOVE/UNMAP events, and restores stored pages on the way out.
 *
 * It runs on the VM's own thread (vm_thread.c), the only writer of that VM's
 * page tables, so the fault path takes no lock of its own (the shared store
 * locks inside).  Messages are read in batches into a ring; events are
 * applied before the faults of the same batch so that a fault on a
 * discarded page gets zeros, not the discarded content.
 */
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clean_pages.h"
#include "cpu_follow.h"
#include "discards.h"
#include "huge_pages.h"
#include "image_pages.h"
#include "migrate_in.h"
#include "migrate_out.h"
#include "log.h"
#include "poison.h"
#include "sampler.h"
#include "snapshot.h"
#include "swap_reads.h"
#include "uffd.h"
#include "uffd_op.h"

#define MSG_CONSUMED 0  /* event value of a ring slot already handled */

void fault_vmm_gone(struct vm *vm, int err)
{
	if (!vm->eng.vmm_gone)
		vm_warn(vm, "VMM address space is gone (%s): no more faults to serve", strerror(-err));
	vm->eng.vmm_gone = true;
}

/* Drops slots from the ring, keeping the order of the rest: those a resync
 * already handled (MSG_CONSUMED: an applied event), and with faults_too
 * the faults, whose threads are woken to fault again and queue new
 * messages. */
static void ring_drop(struct vm *vm, bool faults_too)
{
	unsigned head = vm->eng.pending_head, kept = 0;
	for (unsigned k = 0; k < vm->eng.pending_len; k++) {
		unsigned from = (head + k) % PENDING_MSGS, to = (head + kept) % PENDING_MSGS;
		const struct uffd_msg *m = &vm->eng.pending[from];
		if (m->event == MSG_CONSUMED)
			continue;
		if (faults_too && m->event == UFFD_EVENT_PAGEFAULT) {
			const struct region *r = vm_region_of(vm, m->arg.pagefault.address);
			int ret = r && !vm->eng.vmm_gone
					  ? uffd_wake(vm->uffd, m->arg.pagefault.address & ~(uint64_t)(r->page_size - 1),
						      r->page_size)
					  : 0;
			if (ret && uffd_vmm_gone(ret))
				fault_vmm_gone(vm, ret);
			continue;
		}
		if (from != to) {
			vm->eng.pending[to] = *m;
			vm->eng.pending_ns[to] = vm->eng.pending_ns[from];
		}
		kept++;
	}
	vm->eng.pending_len = kept;
}

/* Makes room in a full ring.  A VMM discarding page after page during one
 * long EAGAIN retry fills it with applied events, and a full ring reads
 * no more: the REMOVE that holds the ioctl at EAGAIN would never be read,
 * and the VMM would wait on it for good.  Faults go too if they are all
 * that is left (more faulting threads than slots); events a read-only
 * retry left unapplied stay (uffd_op.c gives up then). */
static void ring_make_room(struct vm *vm)
{
	ring_drop(vm, false);
	if (vm->eng.pending_len == PENDING_MSGS) {
		vm_debug(vm, "the uffd ring is full of faults: waking them to fault again");
		ring_drop(vm, true);
	}
}

int fault_drain(struct vm *vm)
{
	if (vm->eng.pending_len == PENDING_MSGS)
		ring_make_room(vm);
	int total = 0;
	while (vm->eng.pending_len < PENDING_MSGS) {
		unsigned tail = (vm->eng.pending_head + vm->eng.pending_len) % PENDING_MSGS;
		unsigned room = PENDING_MSGS - vm->eng.pending_len;
		if (tail + room > PENDING_MSGS)
			room = PENDING_MSGS - tail;
		ssize_t n = read(vm->uffd, &vm->eng.pending[tail], room * sizeof(struct uffd_msg));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return total ? total : -errno;
		}
		unsigned got = n / sizeof(struct uffd_msg);
		uint64_t t = monotonic_ns();
		for (unsigned i = 0; i < got; i++) {
			vm->eng.pending_ns[tail + i] = t;
			if (vm->eng.pending[tail + i].event != UFFD_EVENT_PAGEFAULT)
				vm->eng.events_unapplied = true;
		}
		vm->eng.pending_len += got;
		total += got;
		if (got < room)
			break;
	}
	return total;
}

bool fault_uffd_ready(const struct vm *vm)
{
	struct pollfd p = { .fd = vm->uffd, .events = POLLIN };
	return poll(&p, 1, 0) != 0;  /* an error too: the read tells which */
}

bool fault_waits(struct vm *vm)
{
	return vm->eng.pending_len || (fault_uffd_ready(vm) && fault_drain(vm) > 0);
}

void fault_apply_events(struct vm *vm)
{
	vm->eng.events_unapplied = false;
	bool fenced = false;
	for (unsigned k = 0; k < vm->eng.pending_len; k++) {
		struct uffd_msg *m = &vm->eng.pending[(vm->eng.pending_head + k) % PENDING_MSGS];
		switch (m->event) {
		case UFFD_EVENT_REMOVE:
			if (!fenced)
				discards_apply_sent(vm);  /* memsrv_discard's zap: its Discard first */
			fenced = true;
			discards_apply(vm, m->arg.remove.start, m->arg.remove.end, DISCARD_REMOVE_EVENT);
			m->event = MSG_CONSUMED;
			break;
		case UFFD_EVENT_UNMAP:
			discards_apply(vm, m->arg.remove.start, m->arg.remove.end, DISCARD_UNMAP_EVENT);
			m->event = MSG_CONSUMED;
			break;
		case UFFD_EVENT_PAGEFAULT:
		case MSG_CONSUMED:
			break;
		default:
			vm_debug(vm, "ignoring uffd event 0x%x", m->event);
			m->event = MSG_CONSUMED;
			break;
		}
	}
}

/* Whether the huge page at addr is really there after UFFDIO_COPY said
 * EEXIST: Linux 6.x says EEXIST too when it could not allocate a huge page
 * and the address already has a page table (hugetlb_mfill_atomic_pte), and
 * a VMM with no free huge pages would then be woken and fault again
 * forever.  The file knows: allocating the page (nothing to do if it is
 * there) fails with ENOSPC when no huge page is to be had; if it succeeds
 * the page is there now, zero-filled, which is what was being placed.
 * 0 (there: EEXIST stands) or -errno. */
static int huge_page_there(const struct region *r, uint64_t addr)
{
	if (r->fd < 0)
		return 0;  /* no file to ask: EEXIST stands */
	off_t off = (off_t)(r->fd_offset + (addr - r->host_addr));
	return fallocate(r->fd, FALLOC_FL_KEEP_SIZE, off, r->page_size) ? -errno : 0;
}

/* Maps zero pages at [addr, addr+len): ZEROPAGE where the kernel has it,
 * a copy of a zeroed buffer on hugetlbfs (which has no ZEROPAGE). */
static int place_zero(struct vm *vm, struct region *r, uint64_t addr, uint64_t len, bool dontwake)
{
	if (r->backing != MEMSRV__BACKING__BACKING_HUGETLBFS)
		return uffd_zeropage(vm->uffd, addr, len, dontwake, NULL);
	for (uint64_t off = 0; off < len; off += r->page_size) {
		int ret = uffd_copy(vm->uffd, addr + off, vm->eng.zero_buf, r->page_size,
				    dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0, NULL);
		if (ret == -EEXIST) {
			int there = huge_page_there(r, addr + off);
			if (there)
				return there;
		}
		if (ret)
			return ret;
	}
	return 0;
}

void fault_mark_resident(struct vm *vm, struct region *r, uint64_t first, uint64_t count)
{
	migrate_out_touched(vm, r, first, count);  /* a filled page is writable: to send again */
	for (uint64_t p = first; p < first + count; p++) {
		if (vm->eng.snapshot)
			snapshot_before_fill(vm, r, p);  /* a filled page is writable: its content at the snapshot's instant first */
		page_table_set(&r->pt, p, pe_arriving(r->pt.entries[p]));
		/* only the faulting page was used; its neighbours came along */
		bool used = r->first_page + p == vm->eng.fault_page;
		vm_policy_resident(vm, r, p, used, used && vm->eng.fault_write);
		/* demand brought it, or a stream about to read it (prefetch) */
		sampler_note_fault(vm, r->first_page + p);
	}
	atomic_fetch_add(&vm->resident_bytes, count * r->page_size);
}

void fault_arrived(struct region *r, uint64_t idx)
{
	page_table_set(&r->pt, idx, pe_make(PAGE_RESIDENT, 0, 0));
}

void fault_unmark_resident(struct vm *vm, struct region *r, uint64_t idx, page_entry was)
{
	page_table_set(&r->pt, idx, was);
	vm_policy_gone(vm, r, idx);
	atomic_fetch_sub(&vm->resident_bytes, r->page_size);
}

/* Fills one page with zeros; a page that is already there counts as filled. */
static int fill_one_zero(struct vm *vm, struct region *r, uint64_t idx, bool dontwake)
{
	uint64_t addr = r->host_addr + idx * r->page_size;
	int ret = place_zero(vm, r, addr, r->page_size, dontwake);
	if (ret == -EEXIST) {
		/* already there: the ioctl woke no one */
		ctr_add(&vm->ctr.eexist_wakes, 1);
		ret = dontwake ? 0 : uffd_wake(vm->uffd, addr, r->page_size);
	}
	if (!ret)
		fault_mark_resident(vm, r, idx, 1);
	return ret;
}

/* A never-touched page faulted: fill it and its never-touched neighbours in
 * the aligned block, in as few ioctls as there are runs (a sequential touch
 * measured ~14x cheaper per page than one fault each: docs/architecture.md,
 * "Kernel facts and measurements"). */
static int fill_never(struct vm *vm, struct region *r, uint64_t idx)
{
	uint64_t block = r->page_size < FAULT_AROUND_BYTES ? FAULT_AROUND_BYTES / r->page_size : 1;
	uint64_t lo = idx & ~(block - 1), hi = lo + block;
	if (hi > r->pt.npages)
		hi = r->pt.npages;
	image_pages_prepare(vm, r->first_page + lo, hi - lo);  /* a neighbour may be the image's, not zeros */
	uint64_t never = 0;
	for (uint64_t p = lo; p < hi; p++)
		never += pe_state(r->pt.entries[p]) == PAGE_NEVER;
	if (evict_make_room(vm, never * r->page_size)) {
		lo = idx;  /* no room for neighbours: the faulting page only */
		hi = idx + 1;
		evict_make_room(vm, r->page_size);
	}
	for (uint64_t p = lo; p < hi;) {
		if (pe_state(r->pt.entries[p]) != PAGE_NEVER) {
			p++;
			continue;
		}
		uint64_t run = p;
		while (run < hi && pe_state(r->pt.entries[run]) == PAGE_NEVER)
			run++;
		uint64_t addr = r->host_addr + p * r->page_size;
		int ret = place_zero(vm, r, addr, (run - p) * r->page_size, true);
		if (ret == 0) {
			fault_mark_resident(vm, r, p, run - p);
		} else if (ret == -EEXIST || ret == -EAGAIN) {
			/* part of the run is already there (EEXIST), or an event is
			 * pending: fall back to page by page, which resyncs */
			for (uint64_t q = p; q < run; q++) {
				if (pe_state(r->pt.entries[q]) != PAGE_NEVER)
					continue;
				ret = fill_one_zero(vm, r, q, true);
				if (ret)
					return ret;  /* EAGAIN: the caller resyncs and retries */
			}
		} else {
			return ret;
		}
		p = run;
	}
	return uffd_wake(vm->uffd, r->host_addr + lo * r->page_size, (hi - lo) * r->page_size);
}

int fault_reappeared(struct vm *vm, struct region *r, uint64_t idx, const void *ours)
{
	uint64_t addr = r->host_addr + idx * r->page_size;
	off_t off = (off_t)(r->fd_offset + idx * r->page_size);
	ctr_add(&vm->ctr.eexist_wakes, 1);
	ssize_t n = r->fd >= 0 ? pread(r->fd, vm->eng.io_buf, r->page_size, off) : -1;
	bool zeros = n == (ssize_t)r->page_size && page_is_zero(vm->eng.io_buf, r->page_size);
	bool put_back = zeros && !page_is_zero(ours, r->page_size);
	if (put_back && pwrite(r->fd, ours, r->page_size, off) != (ssize_t)r->page_size) {
		vm_err(vm, "page at 0x%" PRIx64 " was filled with zeros behind memsrv's back and cannot be put back: %s",
		       addr, strerror(errno));
		return -EIO;
	}
	/* another mapping of the memfd did it, once per page it touched */
	vm_warn_ratelimited(vm, "page at 0x%" PRIx64 " was filled behind memsrv's back, by another mapping of its memory: %s",
			    addr, put_back ? "zeros there, the guest's data put back" : "written there, the new content kept");
	return 0;
}

int fault_place_held(struct vm *vm, struct region *r, uint64_t idx, const void *page, bool write)
{
	page_entry e = r->pt.entries[idx];
	bool huge = region_is_huge(r);
	bool clean = pe_state(e) == PAGE_STORED && !huge && clean_page_wanted(vm, r, write) &&
		     clean_copy_worth(vm, (obj_id)pe_handle(e));
	/* account first: once UFFDIO_COPY wakes the VM, what it can ask us
	 * must already say resident */
	fault_mark_resident(vm, r, idx, 1);
	uint64_t addr = r->host_addr + idx * r->page_size;
	int ret = uffd_copy(vm->uffd, addr, page, r->page_size, clean ? UFFDIO_COPY_MODE_WP : 0, NULL);
	if (ret == -EEXIST) {
		clean = false;  /* what is there was not placed protected */
		ret = huge ? huge_reappeared(vm, r, idx, page) : fault_reappeared(vm, r, idx, page);
		uffd_wake(vm->uffd, addr, r->page_size);
	}
	if (ret) {
		fault_unmark_resident(vm, r, idx, e);
		return ret;
	}
	if (clean)
		return 0;  /* its entry keeps naming the object: the copy (clean_pages.h) */
	fault_arrived(r, idx);
	if (huge_in_parts(e))
		huge_keep_parts(r, idx);
	else if (pe_state(e) == PAGE_STORED)
		store_drop(vm->store, (obj_id)pe_handle(e));  /* an IMAGE page holds no reference */
	return 0;
}

/* A stored page faulted.  From memory it is placed at once; from swap the
 * read goes to the VM's ring and *deferred is set: the fault completes when
 * the read does (swap_reads.c), and other faults are served meanwhile.
 * Without deferred (detach, shutdown) swap is read synchronously.  On an
 * error, *read_failed says whether it was the content that could not be
 * had (STORE_ERR_*, a read's -errno) rather than the placement. */
static int fill_stored(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read, bool write, bool *deferred,
		       bool *read_failed)
{
	*read_failed = false;
	obj_id id = (obj_id)pe_handle(r->pt.entries[idx]);
	if (huge_in_parts(r->pt.entries[idx])) {
		/* its parts, read here and now: a huge page is not deferred */
		evict_make_room(vm, r->page_size);
		int ret = huge_gather(vm, r, idx, vm->eng.page_buf);
		*read_failed = ret != 0;
		return ret ? ret : fault_place_held(vm, r, idx, vm->eng.page_buf, write);
	}
	if (deferred && swap_reads_join(vm, r, idx, t_read, write)) {
		*deferred = true;  /* a read for this page is on its way: it wakes every waiter */
		return 0;
	}
	evict_make_room(vm, r->page_size);
	struct store_read rd;
	int ret = store_fetch(vm->store, vm->eng.codec_ctx, id, vm->eng.page_buf, &rd);
	if (ret == 1) {
		if (deferred && swap_reads_submit(vm, r, idx, t_read, write, &rd) == 0) {
			*deferred = true;
			if (rd.remote)
				swap_reads_readahead(vm, r, idx);  /* a network round trip per page: streams read ahead */
			return 0;
		}
		ret = store_read_now(vm->store, vm->eng.codec_ctx, &rd, vm->eng.page_buf);
	}
	if (ret) {
		/* the page stays STORED: the caller tries again or poisons it,
		 * never zeros in its place */
		*read_failed = true;
		return ret;
	}
	return fault_place_held(vm, r, idx, vm->eng.page_buf, write);
}

void fault_record(struct vm *vm, enum fault_source source, uint64_t t_read)
{
	uint64_t now = monotonic_ns(), ns = now - t_read;
	atomic_store_explicit(&vm->quota.last_fault_ns, now, memory_order_relaxed);
	ctr_add(&vm->ctr.faults_total, 1);
	latency_record_ns(&vm->lat_all, ns);
	switch (source) {
	case FAULT_FROM_STORE:
	case FAULT_FROM_SWAP:
	case FAULT_FROM_REMOTE:
		/* a stored fault, and by the tier it was read from */
		ctr_add(&vm->ctr.faults_stored, 1);
		latency_record_ns(&vm->lat_stored, ns);
		if (source == FAULT_FROM_SWAP) {
			ctr_add(&vm->ctr.faults_swap, 1);
			latency_record_ns(&vm->lat_swap, ns);
		} else if (source == FAULT_FROM_REMOTE) {
			ctr_add(&vm->ctr.faults_remote, 1);
			latency_record_ns(&vm->lat_remote, ns);
		} else {
			latency_record_ns(&vm->lat_cache, ns);
		}
		break;
	case FAULT_FROM_NEVER:
		ctr_add(&vm->ctr.faults_never_touched, 1);
		latency_record_ns(&vm->lat_never, ns);
		break;
	case FAULT_FROM_ZERO:
		ctr_add(&vm->ctr.faults_zero, 1);
		break;
	case FAULT_FROM_IMAGE:
		ctr_add(&vm->ctr.faults_image, 1);
		break;
	case FAULT_FROM_RESIDENT:
		break;
	}
}

/* One fault (or restore) being served: its page, and what came of it. */
struct fault_work {
	struct region *r;
	uint64_t idx;
	uint64_t t_read;
	enum page_state source;  /* the page's state when it was last tried */
	bool deferred;           /* a swap read completes it (swap_reads.c) */
	bool read_failed;        /* its content could not be had (fill_stored) */
};

/* A fault that failed for good (tried POISON_TRIES times, or its content
 * is known bad): its page is poisoned rather than left waiting forever.
 * The VMM gone, the VM stopping or a poisoned page's refault are
 * uffd_op_failed()'s to judge instead. */
static void fault_lost(struct vm *vm, const struct fault_work *f, enum uffd_outcome o, int err)
{
	struct region *r = f->r;
	if (o == UFFD_GONE || o == UFFD_RETRY || f->source == PAGE_POISONED) {
		uffd_op_failed(vm, o, err, f->source == PAGE_POISONED ? "fault on a poisoned page" : "fault",
			       r->host_addr + f->idx * r->page_size);
		return;
	}
	char buf[200];
	enum page_state from = !f->read_failed ? PAGE_RESIDENT
			       : f->source == PAGE_IMAGE || f->source == PAGE_REMOTE ? f->source : PAGE_STORED;
	const char *cause = poison_cause(r, from, err, buf, sizeof buf);
	poison_page(vm, r, f->idx, cause);  /* a poison that fails is counted there */
}

/* A write that hit an eviction in progress (that eviction is over now:
 * unprotect, and the write faults MISSING and gets the data), or a clean
 * page (its copy goes first: clean_pages.h). */
static void serve_wp_fault(struct vm *vm, struct region *r, uint64_t idx, uint64_t addr)
{
	uint64_t page = r->host_addr + idx * r->page_size;
	if (pe_is_clean(r->pt.entries[idx])) {
		clean_page_forget(vm, r, idx);
		ctr_add(&vm->ctr.clean_writes, 1);
	}
	struct uffd_wp_range w = { .addr = page, .len = r->page_size, .protect = false };
	int ret;
	static const struct uffd_op unprotect = { .run = uffd_op_writeprotect };
	enum uffd_outcome o = uffd_op_run(vm, &unprotect, &w, &ret);
	if (o != UFFD_PLACED) {
		uffd_op_failed(vm, o, ret, "write-protect fault", addr);
		/* still protected: woken, the write faults again and gets
		 * another try rather than sleeping for good */
		if (!vm->eng.vmm_gone && (ret = uffd_wake(vm->uffd, page, r->page_size)) && uffd_vmm_gone(ret))
			fault_vmm_gone(vm, ret);
		return;
	}
	ctr_add(&vm->ctr.faults_wp, 1);
	if (vm->eng.policy.ops && r->evictable)
		vm->eng.policy.ops->referenced(&vm->eng.policy, r->first_page + idx, true);
}

/* Serves a missing fault by what its page is now: after a resync it may
 * be something else (a REMOVE made it NEVER).  0 or -errno. */
static int serve_page(struct vm *vm, void *arg)
{
	struct fault_work *f = arg;
	struct region *r = f->r;
	uint64_t idx = f->idx, page = r->host_addr + idx * r->page_size;
	int ret;
	image_pages_prepare(vm, r->first_page + idx, 1);
	f->source = pe_state(r->pt.entries[idx]);
	switch (f->source) {
	case PAGE_NEVER:
		return fill_never(vm, r, idx);
	case PAGE_STORED:
		return fill_stored(vm, r, idx, f->t_read, vm->eng.fault_write, &f->deferred, &f->read_failed);
	case PAGE_IMAGE:
		return image_pages_fill(vm, r, idx, f->t_read, &f->deferred, &f->read_failed);
	case PAGE_POISONED:
		return poison_refault(vm, r, idx);
	case PAGE_REMOTE:
		/* no migration brings it (a memsrv restarted mid-way): lost */
		f->read_failed = true;
		return -ENODATA;
	case PAGE_ZERO:
		evict_make_room(vm, r->page_size);
		return fill_one_zero(vm, r, idx, false);
	case PAGE_PROBATION:
		/* a sampled page in use: back at the cost of one fault */
		evict_make_room(vm, r->page_size);
		return sampler_fault(vm, r, idx, vm->eng.fault_write);
	case PAGE_RESIDENT:
	default:
		/* Already filled by fault-around or a racing fault (EEXIST:
		 * wake), or dropped behind our back by a hole punch without
		 * an event (the VMM discarded it: zeros). */
		ret = place_zero(vm, r, page, r->page_size, false);
		if (ret == -EEXIST) {
			ctr_add(&vm->ctr.eexist_wakes, 1);
			ret = uffd_wake(vm->uffd, page, r->page_size);
		} else if (ret == 0) {
			ctr_add(&vm->ctr.faults_resident, 1);
		}
		return ret;
	}
}

static void handle_fault(struct vm *vm, const struct uffd_msg *m, uint64_t t_read)
{
	uint64_t addr = m->arg.pagefault.address;
	struct region *r = vm_region_of(vm, addr);
	if (!r) {
		vm_warn(vm, "fault at 0x%" PRIx64 " outside every region", (uint64_t)addr);
		return;
	}
	uint64_t idx = (addr - r->host_addr) / r->page_size;
	cpu_follow_fault(vm, (pid_t)m->arg.pagefault.feat.ptid);  /* 0 without UFFD_FEATURE_THREAD_ID */
	if (migrate_in_waits(vm, m, r, idx, t_read))
		return;  /* served when its page is final */
	vm->eng.fault_page = r->first_page + idx;
	vm->eng.fault_write = m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE;
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
		if (vm->eng.snapshot)
			snapshot_before_write(vm, r, idx, t_read);  /* the page as it was, before the write goes on */
		migrate_out_touched(vm, r, idx, 1);  /* written after it was sent: to send again */
		serve_wp_fault(vm, r, idx, addr);
		return;
	}
	struct fault_work f = { .r = r, .idx = idx, .t_read = t_read };
	static const struct uffd_op op = { .run = serve_page };
	enum uffd_outcome o;
	int ret;
	for (unsigned tries = 1;; tries++) {
		o = uffd_op_run(vm, &op, &f, &ret);
		if (!ret || f.source == PAGE_POISONED || !poison_worth_retry(vm, ret) || tries >= POISON_TRIES)
			break;
		poison_pause(tries);
	}
	if (ret) {
		fault_lost(vm, &f, o, ret);
		return;
	}
	if (f.source == PAGE_POISONED)
		return;  /* no page came: not a fault served */
	if (vm->image && (f.source == PAGE_IMAGE || f.source == PAGE_STORED))
		image_pages_faulted(vm, r->first_page + idx);  /* from the image, or moved into the store */
	if (f.deferred)
		return;  /* swap_reads.c records it when the read completes */
	fault_record(vm, f.source == PAGE_STORED ? FAULT_FROM_STORE
			 : f.source == PAGE_IMAGE ? FAULT_FROM_IMAGE
			 : f.source == PAGE_NEVER ? FAULT_FROM_NEVER
			 : f.source == PAGE_ZERO ? FAULT_FROM_ZERO : FAULT_FROM_RESIDENT, t_read);
	if ((f.source == PAGE_STORED || f.source == PAGE_ZERO) && r->evictable && !region_is_huge(r))
		prefetch_after_fault(vm, r, idx);  /* the faulting thread runs on meanwhile */
}

bool fault_requeue(struct vm *vm, const struct uffd_msg *m, uint64_t t_read)
{
	if (vm->eng.pending_len == PENDING_MSGS)
		return false;
	unsigned tail = (vm->eng.pending_head + vm->eng.pending_len) % PENDING_MSGS;
	vm->eng.pending[tail] = *m;
	vm->eng.pending_ns[tail] = t_read;
	vm->eng.pending_len++;
	return true;
}

/* Handles everything in the pending ring: events first, then faults.  An
 * eviction made for room may read more events mid-way: they are applied
 * before the next fault too. */
void fault_serve_pending(struct vm *vm)
{
	while (vm->eng.pending_len) {
		if (vm->eng.events_unapplied)
			fault_apply_events(vm);
		unsigned head = vm->eng.pending_head;
		struct uffd_msg m = vm->eng.pending[head];
		uint64_t t = vm->eng.pending_ns[head];
		vm->eng.pending_head = (head + 1) % PENDING_MSGS;
		vm->eng.pending_len--;
		if (m.event == UFFD_EVENT_PAGEFAULT && !vm->eng.vmm_gone)
			handle_fault(vm, &m, t);
	}
}


void fault_serve_available(struct vm *vm)
{
	for (;;) {
		int n = fault_drain(vm);
		if (n < 0 && !vm->eng.vmm_gone) {
			vm_err(vm, "reading the userfaultfd failed: %s", strerror(-n));
			fault_vmm_gone(vm, n);
		}
		if (vm->eng.pending_len == 0)
			break;
		fault_serve_pending(vm);
	}
}

/* Whether page p of r is held outside the VMM, in the store or still in
 * the image: what a restore brings back. */
static bool held_elsewhere(const struct region *r, uint64_t p)
{
	enum page_state s = pe_state(r->pt.entries[p]);
	return s == PAGE_STORED || s == PAGE_IMAGE;
}

static int restore_page(struct vm *vm, void *arg)
{
	struct fault_work *f = arg;
	if (pe_state(f->r->pt.entries[f->idx]) == PAGE_IMAGE)
		return image_pages_fill(vm, f->r, f->idx, 0, NULL, &f->read_failed);
	return fill_stored(vm, f->r, f->idx, 0, true, NULL, &f->read_failed);  /* in for good: writable */
}

/* After a resync: a page the VMM discarded meanwhile is not to restore. */
static bool still_stored(struct vm *vm, void *arg)
{
	(void)vm;
	const struct fault_work *f = arg;
	return held_elsewhere(f->r, f->idx);
}

/* Brings one stored page back, trying a failing read or placement again a
 * few times; a page that cannot be had is poisoned (it stays so in the VMM
 * after it unregisters: SIGBUS rather than zeros).  0 or -errno; the page
 * no longer STORED after an error was discarded or poisoned meanwhile. */
static int restore_one(struct vm *vm, struct region *r, uint64_t p)
{
	struct fault_work f = { .r = r, .idx = p, .source = pe_state(r->pt.entries[p]) };
	static const struct uffd_op op = { .run = restore_page, .wanted = still_stored };
	int ret;
	for (unsigned tries = 1;; tries++) {
		enum uffd_outcome o = uffd_op_run(vm, &op, &f, &ret);
		if (o == UFFD_PLACED || o == UFFD_DISCARDED || !still_stored(vm, &f))
			return ret;
		if (!poison_worth_retry(vm, ret) || tries >= POISON_TRIES) {
			fault_lost(vm, &f, o, ret);
			return ret;
		}
		poison_pause(tries);
	}
}

/* Brings every stored page back so the VMM can unregister and keep its RAM.
 * Returns the number of pages that could not be restored; a page the VMM
 * discards meanwhile is neither restored nor failed. */
uint64_t fault_restore_all(struct vm *vm, uint64_t *restored)
{
	uint64_t failed = sampler_restore_all(vm);
	*restored = 0;
	image_pages_prepare(vm, 0, vm_total_pages(vm));
	for (unsigned i = 0; i < vm->n_regions && !vm->eng.vmm_gone; i++) {
		struct region *r = &vm->regions[i];
		for (uint64_t p = 0; p < r->pt.npages && !vm->eng.vmm_gone; p++) {
			if (!held_elsewhere(r, p))
				continue;
			int ret = restore_one(vm, r, p);
			if (!ret)
				(*restored)++;
			else if (held_elsewhere(r, p))
				failed++;
			/* else the VMM discarded it during the resync, or it was
			 * lost and poisoned: nothing to restore */
			if ((*restored & 255) == 0)
				fault_serve_available(vm);
		}
	}
	uint64_t poisoned = vm_count(vm, PAGE_POISONED);
	if (poisoned)
		vm_warn(vm, "%" PRIu64 " poisoned pages stay poisoned in the VMM: their content is lost", poisoned);
	return failed;
}

