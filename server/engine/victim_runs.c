/* victim_runs: the policy's victims in sorted runs. */
#include "victim_runs.h"

#include <stdlib.h>

static bool is_resident(struct vm *vm, uint64_t page)
{
	struct region *r = vm_region_of_page(vm, page);
	return r && pe_state(r->pt.entries[page - r->first_page]) == PAGE_RESIDENT;
}

static int by_page(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

unsigned victims_take(struct vm *vm, uint64_t *victims, unsigned max, uint64_t *scan_budget)
{
	unsigned n = 0;
	while (n < max && *scan_budget) {
		uint64_t v = vm->eng.policy.ops->take_victim(&vm->eng.policy);
		if (v == POLICY_NONE)
			break;
		(*scan_budget)--;
		if (is_resident(vm, v))
			victims[n++] = v;
	}
	/* sorted, neighbours share one write-protect, read and punch */
	qsort(victims, n, sizeof victims[0], by_page);
	return n;
}

unsigned victims_run_length(const uint64_t *victims, unsigned n, unsigned i, uint64_t region_end)
{
	unsigned count = 1;
	while (i + count < n && victims[i + count] == victims[i] + count && victims[i] + count < region_end)
		count++;
	return count;
}

void victims_return(struct vm *vm, const uint64_t *victims, unsigned n, uint64_t *scan_budget)
{
	for (unsigned k = 0; k < n; k++) {
		if (!is_resident(vm, victims[k]))
			continue;
		struct region *r = vm_region_of_page(vm, victims[k]);
		vm_policy_resident(vm, r, victims[k] - r->first_page, false, false);
		vm_policy_idle(vm, r, victims[k] - r->first_page);  /* still the oldest: first in line again */
		(*scan_budget)++;  /* not spent: a later try takes it again */
	}
}
