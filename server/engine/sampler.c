/* sampler: probation of random resident pages, and what it tells. */
#include "sampler.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fault.h"
#include "log.h"
#include "migrate_out.h"
#include "sampler_verdict.h"
#include "uffd.h"
#include "uffd_op.h"

struct sample {
	struct region *r;
	uint64_t idx;
	bool busy;     /* holds a page in probation */
	bool touched;  /* faulted back during this period */
};

/* A sampled page that was not resident: nothing to unmap, its next fault
 * (fault_mark_resident -> sampler_note_fault) says it is in use. */
struct watch {
	uint64_t page;  /* VM-wide number */
	bool touched;
};

#define FILTER_BITS 1024  /* one bit test per fault says "not watched" */

struct sampler {
	uint8_t *pages;  /* SAMPLE_PAGES raw pages */
	struct sample s[SAMPLE_PAGES];
	struct watch w[SAMPLE_PAGES];
	unsigned n_watch;
	uint64_t filter[FILTER_BITS / 64];  /* the watched pages, hashed */
	unsigned taken, touched;   /* this period, resident and watched alike */
	uint64_t sampled_bytes;    /* the memory the sample was drawn from */
	uint64_t demand_faults;    /* the VM's faults for stored, zero and new pages, at the last tick */
	struct ws_estimate estimate;  /* share of the sampled memory in use */
	uint64_t rng;
};

int sampler_init(struct vm *vm)
{
	struct sampler *sp = calloc(1, sizeof *sp);
	if (!sp)
		return -ENOMEM;
	/* under --state-dir the pages live in the VM's state file: a page in
	 * probation has no other copy */
	sp->pages = vm->persist.probation ? vm->persist.probation
		  : mmap(NULL, (size_t)SAMPLE_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sp->pages == MAP_FAILED) {
		free(sp);
		return -ENOMEM;
	}
	sp->rng = 0x853c49e6748fea9bull ^ vm->id;
	vm->eng.sampler = sp;
	return 0;
}

void sampler_fini(struct vm *vm)
{
	struct sampler *sp = vm->eng.sampler;
	if (!sp)
		return;
	if (sp->pages != vm->persist.probation)
		munmap(sp->pages, (size_t)SAMPLE_PAGES * 4096);
	free(sp);
	vm->eng.sampler = NULL;
}

static uint64_t next_random(struct sampler *sp)
{
	sp->rng ^= sp->rng >> 12;
	sp->rng ^= sp->rng << 25;
	sp->rng ^= sp->rng >> 27;
	return sp->rng * 2685821657736338717ull;
}

static void back_resident(struct vm *vm, struct region *r, uint64_t idx, bool used, bool write)
{
	migrate_out_touched(vm, r, idx, 1);  /* writable once back: to send again */
	page_table_set(&r->pt, idx, pe_arriving(r->pt.entries[idx]));
	atomic_fetch_add(&vm->resident_bytes, r->page_size);
	vm_policy_resident(vm, r, idx, used, write);
	if (!used)
		vm_policy_idle(vm, r, idx);  /* sampled and not used: first to go */
}

/* Copies slot's page back into the VMM; 0, or -errno with the page still in probation. */
static int put_back(struct vm *vm, unsigned slot, bool used, bool write, bool wake)
{
	struct sampler *sp = vm->eng.sampler;
	struct sample *s = &sp->s[slot];
	uint64_t addr = s->r->host_addr + s->idx * s->r->page_size;
	/* accounted first: once UFFDIO_COPY wakes the VM, it is resident */
	back_resident(vm, s->r, s->idx, used, write);
	int ret = uffd_copy(vm->uffd, addr, sp->pages + (size_t)slot * 4096, 4096, wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE, NULL);
	if (ret == -EEXIST) {
		ret = fault_reappeared(vm, s->r, s->idx, sp->pages + (size_t)slot * 4096);
		if (wake)
			uffd_wake(vm->uffd, addr, 4096);
	}
	if (ret) {
		fault_unmark_resident(vm, s->r, s->idx, pe_make(PAGE_PROBATION, 0, slot));
		return ret;
	}
	fault_arrived(s->r, s->idx);
	s->busy = false;
	return 0;
}

/* An unused page put back through EAGAIN (uffd_op_run): arg is one. */
struct put_back_unused {
	unsigned slot;
	bool wake;
};

static int put_back_unused(struct vm *vm, void *arg)
{
	const struct put_back_unused *p = arg;
	return put_back(vm, p->slot, false, false, p->wake);
}

/* After a resync: a page the VMM discarded meanwhile is not to put back. */
static bool still_in_probation(struct vm *vm, void *arg)
{
	const struct sample *s = &vm->eng.sampler->s[((const struct put_back_unused *)arg)->slot];
	return pe_state(s->r->pt.entries[s->idx]) == PAGE_PROBATION;
}

static enum uffd_outcome put_back_retried(struct vm *vm, unsigned slot, bool wake)
{
	struct put_back_unused p = { .slot = slot, .wake = wake };
	int err;
	static const struct uffd_op op = { .run = put_back_unused, .wanted = still_in_probation };
	return uffd_op_run(vm, &op, &p, &err);
}

int sampler_fault(struct vm *vm, struct region *r, uint64_t idx, bool write)
{
	unsigned slot = (unsigned)pe_handle(r->pt.entries[idx]);
	struct sampler *sp = vm->eng.sampler;
	int ret = put_back(vm, slot, true, write, true);
	if (!ret && !sp->s[slot].touched) {
		sp->s[slot].touched = true;
		sp->touched++;
	}
	return ret;
}

void sampler_adopt(struct vm *vm, struct region *r, uint64_t idx)
{
	unsigned slot = (unsigned)pe_handle(r->pt.entries[idx]);
	vm->eng.sampler->s[slot] = (struct sample){ .r = r, .idx = idx, .busy = true };
}

const void *sampler_page(const struct vm *vm, page_entry e)
{
	return vm->eng.sampler->pages + (size_t)pe_handle(e) * 4096;
}

void sampler_drop(struct vm *vm, page_entry e)
{
	struct sampler *sp = vm->eng.sampler;
	sp->s[pe_handle(e)].busy = false;
}

/* An untouched page: back where it was, or, over the limit, into the store. */
static void settle(struct vm *vm, unsigned slot)
{
	struct sampler *sp = vm->eng.sampler;
	struct sample *s = &sp->s[slot];
	if (probation_settle(vm_limit(vm), ctr_get(&vm->resident_bytes), s->r->page_size) == PROBATION_STORE) {
		const void *page = sp->pages + (size_t)slot * 4096;
		page_entry e = pe_make(PAGE_ZERO, 0, 0);
		obj_id id;
		struct store_put_info info;
		if (!page_is_zero(page, 4096)) {
			if (store_put(vm->store, vm->eng.codec_ctx, (enum codec)atomic_load(&vm->codec), page, &id, &info))
				goto restore;  /* the store is full: keep it resident */
			e = pe_make(PAGE_STORED, 0, id);
		}
		page_table_set(&s->r->pt, s->idx, e);
		ctr_add(&vm->ctr.evictions_total, 1);
		s->busy = false;
		return;
	}
restore:
	put_back_retried(vm, slot, false);  /* or it stays in probation, to settle next tick */
}

static uint64_t filter_bit(uint64_t page)
{
	return (page * 0x9e3779b97f4a7c15ull) >> 54;  /* 10 bits: FILTER_BITS */
}

void sampler_note_fault(struct vm *vm, uint64_t page)
{
	struct sampler *sp = vm->eng.sampler;
	uint64_t b = filter_bit(page);
	if (!sp || !(sp->filter[b / 64] & 1ull << (b % 64)))
		return;
	for (unsigned i = 0; i < sp->n_watch; i++)
		if (sp->w[i].page == page && !sp->w[i].touched) {
			sp->w[i].touched = true;
			sp->touched++;
		}
}

static uint64_t demand_faults(const struct vm *vm)
{
	return ctr_get(&vm->ctr.faults_stored) + ctr_get(&vm->ctr.faults_zero) +
	       ctr_get(&vm->ctr.faults_never_touched);
}

/* The working set: the share of the sample (drawn from all of the VM's
 * memory, resident or not, as ESX does) used during the period, times the
 * memory it was drawn from.  A VM that keeps faulting its pages back in
 * wants at least all it holds, whatever one short period saw of it: it
 * never looks idle.  Published with the share of its resident memory in
 * use (at most all of it), which the balancer's idle tax reads. */
static void estimate(struct vm *vm)
{
	struct sampler *sp = vm->eng.sampler;
	uint64_t faults = demand_faults(vm), refaults = faults - sp->demand_faults;
	sp->demand_faults = faults;
	if (!ws_estimate_update(&sp->estimate, sp->taken, sp->touched))
		return;  /* too few pages to say anything */
	struct ws_verdict v = ws_verdict(&sp->estimate, sp->sampled_bytes, ctr_get(&vm->resident_bytes), refaults);
	atomic_store(&vm->quota.working_set_bytes, v.bytes);
	atomic_store(&vm->quota.working_set_permille, v.permille);
}

static void watch(struct sampler *sp, uint64_t page)
{
	sp->w[sp->n_watch++] = (struct watch){ .page = page };
	uint64_t b = filter_bit(page);
	sp->filter[b / 64] |= 1ull << (b % 64);
}

/* Whether r's pages are sampled: a huge page is too big to hold in
 * probation, and a fault on it says less of what the guest uses. */
static bool sampled(const struct region *r)
{
	return r->evictable && !r->unmapped && r->page_size == 4096;
}

static void take_sample(struct vm *vm)
{
	struct sampler *sp = vm->eng.sampler;
	uint64_t total = vm_total_pages(vm);
	sp->taken = sp->touched = 0;
	sp->n_watch = 0;
	memset(sp->filter, 0, sizeof sp->filter);
	sp->sampled_bytes = 0;
	for (unsigned i = 0; i < vm->n_regions; i++)
		if (sampled(&vm->regions[i]))
			sp->sampled_bytes += vm->regions[i].size;
	for (unsigned tries = 0; tries < 4 * SAMPLE_PAGES && sp->taken < SAMPLE_PAGES && total; tries++) {
		uint64_t page = next_random(sp) % total;
		struct region *r = vm_region_of_page(vm, page);
		if (!r || !sampled(r))
			continue;
		uint64_t idx = page - r->first_page;
		enum page_state st = pe_state(r->pt.entries[idx]);
		if (st == PAGE_NEVER || st == PAGE_ZERO || st == PAGE_STORED || st == PAGE_IMAGE) {
			watch(sp, page);
			sp->taken++;
			continue;
		}
		if (st != PAGE_RESIDENT)
			continue;
		unsigned slot = 0;
		while (slot < SAMPLE_PAGES && sp->s[slot].busy)
			slot++;
		if (slot == SAMPLE_PAGES)
			break;
		sp->s[slot] = (struct sample){ .r = r, .idx = idx, .busy = true };
		if (evict_soft(vm, r, idx, slot, sp->pages + (size_t)slot * 4096)) {
			sp->s[slot].busy = false;
			break;  /* the VMM is going or the fd refused: try next period */
		}
		sp->taken++;
	}
}

void sampler_tick(struct vm *vm)
{
	struct sampler *sp = vm->eng.sampler;
	/* a migration reads every page: probation would only send them twice */
	if (!sp || !vm_can_evict(vm) || vm->eng.vmm_gone || vm->eng.detaching || vm->eng.migrate_out)
		return;
	estimate(vm);
	/* sampling costs faults: only VMs whose memory memsrv manages (a limit
	 * or a node target) pay it; the pages now in probation still settle */
	bool sampling = vm_limit(vm) != 0;
	for (unsigned i = 0; i < SAMPLE_PAGES; i++)
		if (sp->s[i].busy && pe_state(sp->s[i].r->pt.entries[sp->s[i].idx]) == PAGE_PROBATION)
			settle(vm, i);
	if (sampling)
		take_sample(vm);
	else
		sp->taken = sp->touched = 0;
}

uint64_t sampler_restore_all(struct vm *vm)
{
	struct sampler *sp = vm->eng.sampler;
	uint64_t failed = 0;
	for (unsigned i = 0; sp && i < SAMPLE_PAGES; i++) {
		if (!sp->s[i].busy || pe_state(sp->s[i].r->pt.entries[sp->s[i].idx]) != PAGE_PROBATION)
			continue;
		enum uffd_outcome o = put_back_retried(vm, i, true);
		/* a page the VMM discarded during the resync is no failure */
		failed += o != UFFD_PLACED && o != UFFD_DISCARDED;
	}
	return failed;
}
