/* bench_discard: what a discard costs the VMM, one memsrv_discard() per
 * page against batches fenced once (a balloon's virtqueue element). */
#include "vmsim.h"

#include <stdio.h>
#include <string.h>

#include "memsrv.h"

#define DISCARD_BATCH 256  /* pages: what one balloon element carries */

/* Discards every other page of [first, last): one fence per page, or one
 * per batch.  Seconds taken, or < 0 with the error printed. */
static double discard_every_other(struct vmsim *vm, uint64_t first, uint64_t last, bool batched, uint64_t *pages)
{
	uint8_t *base = vm->ram.base;
	unsigned in_batch = 0;
	double t0 = vmsim_now_s();
	*pages = 0;
	for (uint64_t p = first; p < last; p += 2) {
		void *page = base + p * CONTENT_PAGE_SIZE;
		int ret = batched ? memsrv_discard_unfenced(vm->session, page, CONTENT_PAGE_SIZE)
				  : memsrv_discard(vm->session, page, CONTENT_PAGE_SIZE);
		if (!ret && batched && ++in_batch == DISCARD_BATCH) {
			ret = memsrv_discard_fence(vm->session);
			in_batch = 0;
		}
		if (ret) {
			fprintf(stderr, "vmsim %s: discard: %s\n", vm->opts.name, memsrv_last_error());
			return -1;
		}
		(*pages)++;
	}
	if (batched && memsrv_discard_fence(vm->session)) {
		fprintf(stderr, "vmsim %s: fence: %s\n", vm->opts.name, memsrv_last_error());
		return -1;
	}
	return vmsim_now_s() - t0;
}

int bench_discard(struct vmsim *vm)
{
	if (!vm->session) {
		fprintf(stderr, "vmsim %s: --bench-discard needs memsrv (not --no-attach)\n", vm->opts.name);
		return VMSIM_EXIT_USAGE;
	}
	uint64_t half = vm->ram.pages / 2, fenced_pages, batched_pages;
	double fenced = discard_every_other(vm, 0, half, false, &fenced_pages);
	double batched = fenced < 0 ? -1 : discard_every_other(vm, half, vm->ram.pages, true, &batched_pages);
	if (batched < 0)
		return VMSIM_EXIT_SETUP;
	printf("discard_fenced_pages %llu\n", (unsigned long long)fenced_pages);
	printf("discard_fenced_us_per_page %.2f\n", fenced * 1e6 / (double)fenced_pages);
	printf("discard_batched_pages %llu\n", (unsigned long long)batched_pages);
	printf("discard_batched_us_per_page %.2f\n", batched * 1e6 / (double)batched_pages);
	printf("discard_batch_pages %d\n", DISCARD_BATCH);
	/* the discarded pages read zeros now: nothing left to verify */
	return vmsim_finish(vm);
}
