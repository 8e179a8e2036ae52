/* evict: take resident pages out of a VM without ever losing a write.
 *
 * Per run of contiguous resident pages (verified on Linux 6.18 with a racing
 * writer; docs/architecture.md, "Kernel facts and measurements"):
 *   1. UFFDIO_WRITEPROTECT the run: from here a write blocks in a WP fault;
 *   2. pread the run from the region's fd (never through a mapping: a read
 *      fault on a hole would allocate it and hide the next MISSING fault;
 *      anonymous memory from the VMM's /proc/PID/mem, which fails there);
 *   3. store each page (all-zero pages cost nothing) and set its page-table
 *      entry (a failed punch puts RESIDENT back and drops the copies);
 *   4. fallocate(PUNCH_HOLE) the run (anonymous memory: the VMM drops it,
 *      anon_drops.h): the VMM's next access faults MISSING;
 *   5. unprotect and wake: a blocked writer faults MISSING and gets the
 *      stored content before its write lands.
 * A clean page (clean_pages.h) is protected already and its copy is in the
 * store: its entry takes the copy over, and the punch and the unprotect are
 * all (a run of clean pages only is neither protected again nor read).
 * Events read while a run is in flight stay queued until it is done.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anon_drops.h"
#include "clean_pages.h"
#include "fault.h"
#include "huge_pages.h"
#include "log.h"
#include "uffd.h"
#include "migrate_out.h"
#include "snapshot.h"
#include "uffd_op.h"
#include "victim_runs.h"

uint64_t vm_total_pages(const struct vm *vm)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < vm->n_regions; i++)
		n += vm->regions[i].pt.npages;
	return n;
}

int evict_writeprotect(struct vm *vm, uint64_t addr, uint64_t len, bool protect)
{
	struct uffd_wp_range w = { .addr = addr, .len = len, .protect = protect };
	/* on EAGAIN the pending event is read, so the kernel lets us go on,
	 * and applied after this run (fault.c), not in the middle of it */
	static const struct uffd_op op = { .run = uffd_op_writeprotect, .read_only = true };
	int ret;
	return uffd_op_run(vm, &op, &w, &ret) == UFFD_RETRY ? -EINTR : ret;
}

/* Unprotects [first, first + count) of r at the end of a run but the clean
 * pages in it: still resident (the store refused an earlier page of the
 * run), they stay as they were before the run, protected, and keep their
 * copies.  What stays resident and becomes writable is saved for a
 * snapshot first, and is to be sent again by a migration.  0 or -errno. */
int evict_store_page(struct vm *vm, const void *page, size_t len, page_entry *entry, uint64_t *stored_bytes)
{
	if (page_is_zero(page, len)) {
		*entry = pe_make(PAGE_ZERO, 0, 0);
		return 0;
	}
	obj_id id;
	struct store_put_info info;
	int ret = store_put(vm->store, vm->eng.codec_ctx, (enum codec)atomic_load(&vm->codec), page, &id, &info);
	if (ret)
		return ret;
	*entry = pe_make(PAGE_STORED, 0, id);
	*stored_bytes += info.shared ? 0 : info.len;
	return 0;
}

static int unprotect_but_clean(struct vm *vm, struct region *r, uint64_t first, uint64_t count)
{
	int ret = 0;
	for (uint64_t p = first, end = first + count; p < end && !ret;) {
		if (pe_is_clean(r->pt.entries[p])) {
			p++;
			continue;
		}
		uint64_t q = p;
		while (q < end && !pe_is_clean(r->pt.entries[q]))
			q++;
		if (vm->eng.snapshot)
			snapshot_before_unprotect(vm, r, p, q - p);
		for (uint64_t i = p; vm->eng.migrate_out && i < q; i++)
			if (pe_state(r->pt.entries[i]) == PAGE_RESIDENT)
				migrate_out_touched(vm, r, i, 1);
		ret = evict_writeprotect(vm, r->host_addr + p * r->page_size, (q - p) * r->page_size, false);
		p = q;
	}
	return ret;
}

/* Evicts pages [first, first + count) of r, all RESIDENT.  Returns the
 * number evicted; when that is not all of them, *err says why (the store
 * is full: -EBUSY for now, -ENOSPC for good; or the fd or uffd failed). */
static uint64_t evict_run(struct vm *vm, struct region *r, uint64_t first, uint64_t count,
			  struct evict_result *res, int *err)
{
	const uint64_t ps = r->page_size;
	uint64_t addr = r->host_addr + first * ps;
	page_entry entries[EVICT_RUN_PAGES], was[EVICT_RUN_PAGES];
	bool all_clean = true;
	for (uint64_t i = 0; i < count; i++) {
		was[i] = r->pt.entries[first + i];
		all_clean &= pe_is_clean(was[i]);
	}

	int ret = 0;
	if (!all_clean) {
		ret = evict_writeprotect(vm, addr, count * ps, true);
		if (ret) {
			*err = ret;
			return 0;
		}
		ret = region_pread(vm, r, first, count * ps, vm->eng.io_buf);
		if (ret == -EIO && r->fd < 0)
			ret = -EINTR;  /* a page of it was discarded meanwhile: its REMOVE is queued */
	}
	uint64_t kept = 0, stored_bytes = 0, zero = 0, clean = 0;
	int store_ret = 0;
	for (; !ret && kept < count; kept++) {
		if (pe_is_clean(was[kept])) {
			/* its copy becomes the page: no read, no compression */
			entries[kept] = pe_make(PAGE_STORED, 0, pe_handle(was[kept]));
			clean++;
			continue;
		}
		const void *page = (const char *)vm->eng.io_buf + kept * ps;
		store_ret = evict_store_page(vm, page, ps, &entries[kept], &stored_bytes);
		if (store_ret)
			break;  /* the store is full (for now: EBUSY): evict what fits */
		zero += pe_state(entries[kept]) == PAGE_ZERO;
	}
	/* the table names the copies before the pages go: whoever reads it
	 * after any step finds every page either in the fd or in the store */
	for (uint64_t i = 0; i < kept; i++)
		page_table_set(&r->pt, first + i, entries[i]);
	/* anonymous: posted, finished with the eviction's other runs (finish_drops) */
	bool posted = kept && r->fd < 0 && !anon_drop_post(vm, addr, kept * ps);
	int dropped = !kept || posted ? 0 : region_drop(vm, r, first, kept);
	if (dropped && r->fd < 0) {
		/* dropped in part, or not (yet): each page is its copy now
		 * either way (still protected, the VMM's page did not change) */
		if (dropped != -ESHUTDOWN)
			vm_warn(vm, "the VMM did not drop [0x%" PRIx64 ", +%" PRIu64 " pages): %s; memsrv keeps their "
				"copies", addr, kept, strerror(-dropped));
		ret = dropped;
	} else if (dropped) {
		ret = dropped;
		/* nothing punched: the pages stay resident, the new copies go */
		for (uint64_t i = 0; i < kept; i++) {
			page_table_set(&r->pt, first + i, was[i]);
			if (pe_state(entries[i]) == PAGE_STORED && !pe_is_clean(was[i]))
				store_drop(vm->store, (obj_id)pe_handle(entries[i]));
		}
		kept = clean = 0;
	}
	atomic_fetch_sub(&vm->resident_bytes, kept * ps);
	ctr_add(&vm->ctr.evictions_total, kept);
	ctr_add(&vm->ctr.evictions_clean, clean);
	res->pages += kept;
	res->zero_pages += zero;
	res->stored_pages += kept - zero;
	res->stored_bytes += stored_bytes;
	if (all_clean && !kept) {
		/* nothing punched: still protected, still clean */
		*err = ret;
		return 0;
	}
	if (dropped == -ESHUTDOWN) {
		/* memsrv stops while the VMM may still drop the run: the pages
		 * stay protected until a resumed memsrv waited the drop out
		 * (anon_drops_barrier) */
		*err = dropped;
		return kept;
	}
	if (posted) {
		/* what stayed resident is unprotected now, the rest once dropped */
		int wp = kept < count ? unprotect_but_clean(vm, r, first + kept, count - kept) : 0;
		if (wp && uffd_vmm_gone(wp))
			fault_vmm_gone(vm, wp);
		*err = wp ? wp : kept < count ? store_ret : 0;
		return kept;
	}
	/* A punched page keeps its protection in a PTE marker, which
	 * UFFDIO_POISON will not overwrite: a VMM that lost memsrv could not
	 * poison it, and its fault would wait for good.  So every page of the
	 * run is unprotected, a clean one too, but one still resident and
	 * clean (unprotect_but_clean). */
	int wp = unprotect_but_clean(vm, r, first, count);
	if (wp && !ret)
		ret = wp;
	if (ret && uffd_vmm_gone(ret))
		fault_vmm_gone(vm, ret);
	*err = ret ? ret : kept < count ? store_ret : 0;
	return kept;
}

int evict_soft(struct vm *vm, struct region *r, uint64_t idx, uint32_t slot, void *keep)
{
	const uint64_t ps = r->page_size;
	uint64_t addr = r->host_addr + idx * ps;
	clean_page_forget(vm, r, idx);  /* its content goes to probation, raw */
	/* the same steps as evict_run(), with the content kept raw */
	int ret = evict_writeprotect(vm, addr, ps, true);
	if (ret)
		return ret;
	ret = region_pread(vm, r, idx, ps, keep);
	int dropped = 0;
	if (!ret) {
		page_table_set(&r->pt, idx, pe_make(PAGE_PROBATION, 0, slot));  /* before the punch, as above */
		dropped = region_drop(vm, r, idx, 1);
		if (dropped && r->fd >= 0) {
			page_table_set(&r->pt, idx, pe_make(PAGE_RESIDENT, 0, 0));
			ret = dropped;
		}
		/* anonymous: dropped or not (yet), the page is its copy (evict_run) */
	}
	bool stopping = dropped == -ESHUTDOWN;
	if (!ret) {
		vm_policy_gone(vm, r, idx);
		atomic_fetch_sub(&vm->resident_bytes, ps);
	}
	if (stopping)
		return 0;  /* left protected, as evict_run() leaves a run */
	if (vm->eng.snapshot)
		snapshot_before_unprotect(vm, r, idx, 1);
	migrate_out_touched(vm, r, idx, 1);
	int wp = evict_writeprotect(vm, addr, ps, false);
	if (ret && uffd_vmm_gone(ret))
		fault_vmm_gone(vm, ret);
	return ret ? ret : wp;
}

/* The anonymous runs evict_run() posted: once the VMM dropped them they
 * are unprotected, as a punched run is. */
static void finish_drops(struct vm *vm)
{
	struct vm_anon *a = &vm->anon;
	if (!a->n_runs)
		return;
	anon_drops_await(vm);
	for (unsigned i = 0; i < a->n_runs; i++) {
		const struct anon_drop_run *run = &a->runs[i];
		struct region *r = vm_region_of(vm, run->addr);
		if (run->err == -ESHUTDOWN || !r)
			continue;  /* left protected (evict_run) */
		if (run->err)
			vm_warn(vm, "the VMM did not drop [0x%" PRIx64 ", +%" PRIu64 " bytes): %s; memsrv keeps their "
				"copies", run->addr, run->len, strerror(-run->err));
		int wp = unprotect_but_clean(vm, r, (run->addr - r->host_addr) / r->page_size, run->len / r->page_size);
		if (wp && uffd_vmm_gone(wp))
			fault_vmm_gone(vm, wp);
	}
	a->n_runs = 0;
}

static int evict_pages_posting(struct vm *vm, uint64_t want_pages, uint64_t *scan_budget, bool yield,
			       struct evict_result *res);

int evict_pages(struct vm *vm, uint64_t want_pages, uint64_t *scan_budget, bool yield, struct evict_result *res)
{
	int ret = evict_pages_posting(vm, want_pages, scan_budget, yield, res);
	finish_drops(vm);
	return ret;
}

/* evict_pages(), leaving the drops of anonymous runs it posted to finish. */
static int evict_pages_posting(struct vm *vm, uint64_t want_pages, uint64_t *scan_budget, bool yield,
			       struct evict_result *res)
{
	uint64_t evicted = 0;
	while (evicted < want_pages && *scan_budget && !vm->eng.vmm_gone && vm->eng.policy.ops) {
		/* a batch of victims' runs at most in flight: the VMM answers
		 * them in one go */
		finish_drops(vm);
		/* the policy names the victims (victim_runs.c) */
		uint64_t victims[EVICT_RUN_PAGES];
		/* no more victims than the want needs: those taken and not
		 * evicted go back first in line, so the policy's order would be
		 * lost (huge pages: one or two fill the want) */
		uint64_t unit = vm->eng.largest_page_parts, need = (want_pages - evicted + unit - 1) / unit;
		uint64_t max = need < EVICT_RUN_PAGES ? need : EVICT_RUN_PAGES;
		unsigned n = victims_take(vm, victims, (unsigned)max, scan_budget);
		if (!n)
			break;
		for (unsigned i = 0; i < n;) {
			struct region *r = vm_region_of_page(vm, victims[i]);
			uint64_t first = victims[i] - r->first_page;
			bool huge = region_is_huge(r);
			/* a huge page is a run of its own, and counts its parts */
			uint64_t count = huge ? 1 : victims_run_length(victims, n, i, r->first_page + r->pt.npages);
			int err = 0;
			uint64_t got = huge ? huge_evict(vm, r, first, res, &err) / region_parts(r)
					    : evict_run(vm, r, first, count, res, &err);
			evicted += got * region_parts(r);
			if (got < count) {
				/* what stayed resident goes back on the policy's books */
				victims_return(vm, victims + i + got, n - i - (unsigned)got, scan_budget);
				return err ? err : -EIO;
			}
			i += (unsigned)count;
			if (i < n && evicted >= want_pages) {
				victims_return(vm, victims + i, n - i, scan_budget);  /* huge pages made the room already */
				return 0;
			}
			if (yield && i < n && fault_waits(vm)) {
				/* a vCPU waits: room for later faults can wait instead */
				victims_return(vm, victims + i, n - i, scan_budget);
				return 0;
			}
		}
	}
	return 0;
}

/* Room kept free below the limit, so that a burst of faults finds it. */
static uint64_t headroom_bytes(uint64_t limit)
{
	uint64_t h = limit / 64;
	return h < 256 * 4096 ? h : 256 * 4096;
}

int evict_make_room(struct vm *vm, uint64_t bytes)
{
	uint64_t limit = vm_limit(vm);
	if (!limit || vm->eng.detaching)
		return 0;
	uint64_t resident = ctr_get(&vm->resident_bytes);
	if (resident + bytes <= limit)
		return 0;
	if (!vm_can_evict(vm)) {
		if (!vm->eng.limit_warned)
			vm_warn(vm, "resident memory passes the limit of %" PRIu64 " bytes and cannot be evicted: %s",
				limit, vm_why_not_evictable(vm));
		vm->eng.limit_warned = true;
		return -ENOSPC;
	}
	/* the fault waits for this: take only what it needs plus a little;
	 * evict_keep_headroom() makes the rest of the room while idle */
	uint64_t need = resident + bytes - limit;
	uint64_t pages = (need + 4095) / 4096 + EVICT_RUN_PAGES / 4;
	uint64_t budget = vm_total_pages(vm);
	struct evict_result res = { 0 };
	int ret = evict_pages(vm, pages, &budget, false, &res);
	if (ret && !vm->eng.limit_warned) {
		vm_warn(vm, "eviction to hold the limit failed: %s", strerror(-ret));
		vm->eng.limit_warned = true;
	}
	return ctr_get(&vm->resident_bytes) + bytes <= limit ? 0 : -ENOSPC;
}

void evict_keep_headroom(struct vm *vm, uint64_t max_pages)
{
	uint64_t limit = vm_limit(vm);
	if (!limit || !vm_can_evict(vm) || vm->eng.detaching)
		return;
	uint64_t target = limit - headroom_bytes(limit);
	uint64_t budget = vm_total_pages(vm), done = 0;
	while (ctr_get(&vm->resident_bytes) > target && budget && done < max_pages && !vm->thr.stopping &&
	       !vm->eng.vmm_gone) {
		/* a fault waiting matters more than room for the next one */
		if (fault_waits(vm))
			return;
		uint64_t want = (ctr_get(&vm->resident_bytes) - target + 4095) / 4096;
		if (want > EVICT_RUN_PAGES)
			want = EVICT_RUN_PAGES;
		if (want > max_pages - done)
			want = max_pages - done;
		struct evict_result res = { 0 };
		if (evict_pages(vm, want, &budget, true, &res) || !res.pages)
			return;
		done += res.pages;
	}
}
