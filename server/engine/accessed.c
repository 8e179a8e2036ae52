/* accessed: reference bits from the VMM's page tables (accessed.h). */
#include "accessed.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"

bool accessed_bits_enabled = false;

/* PAGEMAP_SCAN (Linux 6.7; Debian 12's headers predate it) */
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_PRESENT (1 << 3)
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define RANGES 256          /* present ranges per PAGEMAP_SCAN call */
#define STEP_PAGES 4096     /* address space a step folds... */
#define STEP_UNMAPS 64      /* ...and pages it unmaps at most (each 1-3 us), one process_madvise */
#define LAP_EVICTIONS 64    /* evictions before the next lap, at least... */
#define LAP_SHARE 32        /* ...a 32nd of the resident pages: their bits stay fresh... */
#define LAP_SCAN_SHARE 128  /* ...and a 128th of all: a lap's walk costs 2 us an eviction */
#define LAP_MAX_NS (1000ull * 1000 * 1000)  /* bits cleared on a tick are seen within a second */

struct accessed {
	int pidfd, pagemap_fd;   /* the VMM's, opened once: a pid reused later is not it */
	bool eligible[VM_MAX_REGIONS];
	bool in_lap;             /* a lap over the VM's pages is under way... */
	unsigned region;         /* ...at this page of this region */
	uint64_t idx;
	uint64_t last_ns, evictions_then;  /* when the last lap began */
	unsigned n_iov;
	struct iovec iov[STEP_UNMAPS];
	struct page_region ranges[RANGES];
};

static const char *const off_reasons[] = {
	[ACCESSED_ON] = NULL,
	[ACCESSED_OFF_SETTING] = "--accessed-bits off",
	[ACCESSED_OFF_NOT_EVICTABLE] = "the VM cannot be evicted",
	[ACCESSED_OFF_BACKING] = "no region is shmem (memfd, tmpfs) with 4 KiB pages",
	[ACCESSED_OFF_KERNEL] = "the kernel refused (PAGEMAP_SCAN needs Linux 6.7, MADV_PAGEOUT of another process CAP_SYS_NICE; logged)",
	[ACCESSED_OFF_SWAP] = "swap is configured: MADV_PAGEOUT would write the VM's pages to it",
};

const char *accessed_off_reason(int state)
{
	return state >= 0 && state < (int)(sizeof off_reasons / sizeof off_reasons[0]) ? off_reasons[state] : NULL;
}

/* A call that worked at the start fails (the VMM is going, most likely). */
static void kernel_refused(struct vm *vm, const char *what, int err)
{
	vm_info(vm, "reference bits come from faults only from now on: %s: %s", what, strerror(err));
	atomic_store(&vm->accessed_state, ACCESSED_OFF_KERNEL);
	accessed_fini(vm);
}

/* Opens the VMM's pidfd and pagemap, and tries what the bits need of the
 * kernel.  0, or -errno with what refused. */
static int open_vmm(struct vm *vm, struct accessed *a, const char **what)
{
	*what = "pidfd_open";
	a->pidfd = (int)syscall(SYS_pidfd_open, vm->pid, 0);
	if (a->pidfd < 0)
		return -errno;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/pagemap", (int)vm->pid);
	*what = "opening the VMM's pagemap";
	a->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (a->pagemap_fd < 0)
		return -errno;
	*what = "PAGEMAP_SCAN";
	struct pm_scan_arg probe = { .size = sizeof probe, .start = vm->regions[0].host_addr,
				     .end = vm->regions[0].host_addr };
	if (ioctl(a->pagemap_fd, PAGEMAP_SCAN, &probe) < 0)
		return -errno;
	*what = "process_madvise(MADV_PAGEOUT)";
	struct iovec none = { 0 };
	if (syscall(SYS_process_madvise, a->pidfd, &none, 1, MADV_PAGEOUT, 0) < 0)
		return -errno;
	return 0;
}

/* Why the VM cannot have the bits, or ACCESSED_ON with a set up. */
static int set_up(struct vm *vm, struct accessed *a)
{
	bool any = false;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		/* MEMFD: Hello found the fd on tmpfs (hello.c, backing_of_fd) */
		a->eligible[i] = r->evictable && r->fd >= 0 && r->page_size == 4096 &&
				 r->backing == MEMSRV__BACKING__BACKING_MEMFD;
		any |= a->eligible[i];
	}
	if (!any)
		return ACCESSED_OFF_BACKING;
	const char *what;
	int ret = open_vmm(vm, a, &what);
	if (ret) {
		vm_info(vm, "reference bits come from faults only: %s: %s", what, strerror(-ret));
		return ACCESSED_OFF_KERNEL;
	}
	return ACCESSED_ON;
}

void accessed_init(struct vm *vm)
{
	/* the default, and VMs it cannot help: nothing to set up */
	if (!accessed_bits_enabled || !vm->evictable || vm->pid <= 0) {
		atomic_store(&vm->accessed_state, !accessed_bits_enabled ? ACCESSED_OFF_SETTING : ACCESSED_OFF_NOT_EVICTABLE);
		return;
	}
	struct accessed *a = calloc(1, sizeof *a);
	if (!a) {
		atomic_store(&vm->accessed_state, ACCESSED_OFF_KERNEL);
		return;
	}
	a->pidfd = a->pagemap_fd = -1;
	vm->eng.accessed = a;
	int state = set_up(vm, a);
	atomic_store(&vm->accessed_state, state);
	if (state != ACCESSED_ON)
		accessed_fini(vm);
}

void accessed_fini(struct vm *vm)
{
	struct accessed *a = vm->eng.accessed;
	if (!a)
		return;
	if (a->pidfd >= 0)
		close(a->pidfd);
	if (a->pagemap_fd >= 0)
		close(a->pagemap_fd);
	free(a);
	vm->eng.accessed = NULL;
}

static int unmap_flush(struct accessed *a)
{
	if (!a->n_iov)
		return 0;
	long n = syscall(SYS_process_madvise, a->pidfd, a->iov, a->n_iov, MADV_PAGEOUT, 0);
	a->n_iov = 0;
	return n < 0 ? -errno : 0;
}

/* Adds a page to the step's ranges (at most STEP_UNMAPS pages, so they fit). */
static void unmap_add(struct accessed *a, uint64_t addr)
{
	struct iovec *last = a->n_iov ? &a->iov[a->n_iov - 1] : NULL;
	if (last && (uint64_t)(uintptr_t)last->iov_base + last->iov_len == addr)
		last->iov_len += 4096;
	else
		a->iov[a->n_iov++] = (struct iovec){ .iov_base = (void *)(uintptr_t)addr, .iov_len = 4096 };
}

/* The watched pages among r's [first, end) mapped again since: used.
 * Returns how many, or -errno. */
static long fold_present(struct vm *vm, struct accessed *a, const struct region *r, uint64_t first, uint64_t end)
{
	struct policy *p = &vm->eng.policy;
	long used = 0;
	uint64_t from = r->host_addr + first * 4096, to = r->host_addr + end * 4096;
	while (from < to) {
		struct pm_scan_arg arg = {
			.size = sizeof arg, .start = from, .end = to,
			.vec = (uintptr_t)a->ranges, .vec_len = RANGES,
			.category_mask = PAGE_IS_PRESENT, .return_mask = PAGE_IS_PRESENT,
		};
		long n = ioctl(a->pagemap_fd, PAGEMAP_SCAN, &arg);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (long k = 0; k < n; k++)
			for (uint64_t addr = a->ranges[k].start; addr < a->ranges[k].end; addr += 4096) {
				uint64_t page = r->first_page + (addr - r->host_addr) / 4096;
				if (!(p->flags[page] & POLICY_WATCHED))
					continue;
				p->flags[page] &= (uint8_t)~POLICY_WATCHED;
				p->ops->referenced(p, page, false);
				used++;
			}
		if (arg.walk_end <= from)
			break;
		from = arg.walk_end;
	}
	return used;
}

/* Unmaps r's resident pages from first on whose bits are clear, to see
 * their next use, until end or max of them.  Returns where it stopped, or
 * -errno. */
static int64_t unmap_unreferenced(struct vm *vm, struct accessed *a, const struct region *r, uint64_t first,
				  uint64_t end, unsigned max)
{
	uint8_t *flags = vm->eng.policy.flags + r->first_page;
	uint64_t i = first;
	unsigned n = 0;
	for (; i < end && n < max; i++) {
		/* a page never used since it came (a neighbour a fault or a
		 * stream's prefetch placed) is not watched: unmapping every
		 * page of a scan before its one read cost scans 30% */
		if ((flags[i] & (POLICY_RESIDENT | POLICY_SEEN | POLICY_REF | POLICY_WATCHED)) !=
		    (POLICY_RESIDENT | POLICY_SEEN))
			continue;
		unmap_add(a, r->host_addr + i * 4096);
		flags[i] |= POLICY_WATCHED;
		n++;
	}
	int ret = unmap_flush(a);
	if (ret)
		return ret;
	ctr_add(&vm->ctr.accessed_unmaps, n);
	return (int64_t)i;
}

/* One step of a lap at the cursor: a stretch of address space folded,
 * then its unreferenced pages unmapped.  Bounded, so that a fault waits
 * little for it. */
static void step(struct vm *vm, struct accessed *a)
{
	while (a->region < vm->n_regions &&
	       (!a->eligible[a->region] || vm->regions[a->region].unmapped ||
		a->idx >= vm->regions[a->region].pt.npages)) {
		a->region++;
		a->idx = 0;
	}
	if (a->region >= vm->n_regions) {
		a->in_lap = false;
		return;
	}
	const struct region *r = &vm->regions[a->region];
	uint64_t end = a->idx + STEP_PAGES < r->pt.npages ? a->idx + STEP_PAGES : r->pt.npages;
	long used = fold_present(vm, a, r, a->idx, end);
	if (used < 0) {
		kernel_refused(vm, "PAGEMAP_SCAN", (int)-used);
		return;
	}
	ctr_add(&vm->ctr.accessed_found, (uint64_t)used);
	int64_t at = unmap_unreferenced(vm, a, r, a->idx, end, STEP_UNMAPS);
	if (at < 0) {
		kernel_refused(vm, "process_madvise(MADV_PAGEOUT)", (int)-at);
		return;
	}
	a->idx = (uint64_t)at;
}

static bool swap_configured(void)
{
	struct sysinfo si;
	return sysinfo(&si) == 0 && si.totalswap;
}

static void lap_begin(struct vm *vm, struct accessed *a)
{
	a->last_ns = monotonic_ns();
	a->evictions_then = ctr_get(&vm->ctr.evictions_total);
	bool swap = swap_configured();
	atomic_store(&vm->accessed_state, swap ? ACCESSED_OFF_SWAP : ACCESSED_ON);
	a->in_lap = !swap;
	a->region = 0;
	a->idx = 0;
}

void accessed_step(struct vm *vm)
{
	struct accessed *a = vm->eng.accessed;
	if (!a || !vm->eng.policy.ops || vm->eng.vmm_gone)
		return;
	if (!a->in_lap) {
		uint64_t evicted = ctr_get(&vm->ctr.evictions_total) - a->evictions_then;
		if (!evicted)
			return;  /* no pressure: nothing to decide */
		uint64_t every = LAP_EVICTIONS;
		if (vm->eng.policy.nresident / LAP_SHARE > every)
			every = vm->eng.policy.nresident / LAP_SHARE;
		if (vm->eng.policy.npages / LAP_SCAN_SHARE > every)
			every = vm->eng.policy.npages / LAP_SCAN_SHARE;
		if (evicted < every &&
		    monotonic_ns() - a->last_ns < LAP_MAX_NS)
			return;
		lap_begin(vm, a);
		if (!a->in_lap)
			return;
	}
	step(vm, a);
}
