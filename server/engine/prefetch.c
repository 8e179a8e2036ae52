/* prefetch: a sequential stream of stored faults brings the pages after it.
 *
 * A guest that scans memory faults on page after page; the kernel's swap
 * readahead answers that with clusters, and so does memsrv: when a stored
 * fault lands on the page right after the previous one, the stored and
 * zero pages that follow are placed too, in one UFFDIO_COPY, after the
 * faulting thread was woken.  The window doubles while the stream holds,
 * up to PREFETCH_MAX_PAGES, and falls back to nothing when it breaks
 * (prefetch_window.c).
 * Only what memory holds is taken: a page in swap ends the run (its read
 * would cost the faults it saves).
 */
#include <string.h>

#include "clean_pages.h"
#include "fault.h"
#include "prefetch_window.h"
#include "uffd.h"

_Static_assert(PREFETCH_MAX_PAGES <= EVICT_RUN_PAGES, "prefetch fills the eviction buffer");

/* Fills io_buf with the run after idx; returns how many pages it holds. */
static uint64_t gather(struct vm *vm, struct region *r, uint64_t idx, uint64_t want)
{
	uint64_t n = 0;
	want = prefetch_window_clip(want, idx, r->pt.npages);
	for (; n < want; n++) {
		page_entry e = r->pt.entries[idx + 1 + n];
		void *dst = (char *)vm->eng.io_buf + n * 4096;
		if (pe_state(e) == PAGE_ZERO)
			memset(dst, 0, 4096);
		else if (pe_state(e) != PAGE_STORED || store_fetch_memory(vm->store, vm->eng.codec_ctx, (obj_id)pe_handle(e), dst))
			break;  /* not stored, in swap, or unreadable: the run ends here */
	}
	return n;
}

void prefetch_after_fault(struct vm *vm, struct region *r, uint64_t idx)
{
	uint64_t want = prefetch_window_on_fault(&vm->eng.stream_next, &vm->eng.stream_window, r->first_page + idx, r->page_size);
	if (!want)
		return;
	/* room first: making it may use io_buf */
	if (evict_make_room(vm, want * 4096))
		return;  /* at the limit with nothing to give: the guest's own faults decide */
	uint64_t n = gather(vm, r, idx, want);
	if (!n)
		return;
	/* accounted first, as for a fault: once a page is in, the guest can
	 * touch it and ask about it before this thread runs again */
	page_entry was[PREFETCH_MAX_PAGES];
	for (uint64_t i = 0; i < n; i++)
		was[i] = r->pt.entries[idx + 1 + i];
	fault_mark_resident(vm, r, idx + 1, n);
	/* nothing writes them yet: the stored ones keep their copies */
	bool clean = clean_page_wanted(vm, r, false);
	uint64_t addr = r->host_addr + (idx + 1) * 4096, done = 0;
	int ret = uffd_copy(vm->uffd, addr, vm->eng.io_buf, n * 4096, clean ? UFFDIO_COPY_MODE_WP : 0, &done);
	uint64_t placed = done / 4096;
	for (uint64_t i = 0; i < n; i++) {
		if (i >= placed) {
			fault_unmark_resident(vm, r, idx + 1 + i, was[i]);  /* not placed: as before */
		} else if (!clean || pe_state(was[i]) != PAGE_STORED || !clean_copy_worth(vm, (obj_id)pe_handle(was[i]))) {
			/* in for good (a clean one's entry keeps naming its copy) */
			fault_arrived(r, idx + 1 + i);
			if (pe_state(was[i]) == PAGE_STORED)
				store_drop(vm->store, (obj_id)pe_handle(was[i]));
		}
	}
	ctr_add(&vm->ctr.prefetched_pages, placed);
	prefetch_window_placed(&vm->eng.stream_next, placed);
	/* no retry: on EAGAIN (an event is pending) or any error the rest
	 * faults in as usual */
	if (uffd_classify(ret) == UFFD_GONE)
		fault_vmm_gone(vm, ret);
}
