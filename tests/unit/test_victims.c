/* Description: eviction takes the policy's victims that the page table
 * says are resident (a mismatch is skipped, never evicted, but spends
 * budget), sorted, in runs of consecutive pages that never cross the end
 * of a region nor pass the batch's bound; after a failed run, what is still
 * resident goes back on the policy's books with its budget.  A VM with
 * page tables and a FIFO policy, no uffd, no fd. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "victim_runs.h"

#define PAGE 4096u

static struct vm *vm;

/* Two regions of 8 pages each, VM-wide pages 0..7 and 8..15: page 8
 * follows page 7 in number but not in memory. */
static void setup(void)
{
	vm = vm_new(NULL);
	cr_assert(vm);
	snprintf(vm->name, sizeof vm->name, "unit");
	char why[128];
	for (unsigned i = 0; i < 2; i++) {
		struct region r = { .host_addr = 0x100000000ull * (i + 1), .size = 8 * PAGE, .page_size = PAGE,
				    .fd = -1, .evictable = true };
		cr_assert_eq(vm_add_region(vm, &r, why, sizeof why), 0, "%s", why);
	}
	atomic_store(&vm->policy_wanted, policy_find("fifo"));
	vm_policy_update(vm);
	cr_assert(vm->eng.policy.ops, "a policy to take victims from");
}

static void teardown(void)
{
	vm_destroy(vm);
}

TestSuite(victims, .init = setup, .fini = teardown);

/* VM-wide page arrives: RESIDENT in the table, last in FIFO order. */
static void arrive(uint64_t page)
{
	struct region *r = vm_region_of_page(vm, page);
	page_table_set(&r->pt, page - r->first_page, pe_make(PAGE_RESIDENT, 0, 0));
	vm_policy_resident(vm, r, page - r->first_page, false, false);
}

static void set_state(uint64_t page, enum page_state st)
{
	struct region *r = vm_region_of_page(vm, page);
	page_table_set(&r->pt, page - r->first_page, pe_make(st, 0, 0));
}

/* The runs victims[0..n) cut into, as lengths. */
static unsigned runs(const uint64_t *v, unsigned n, unsigned *len)
{
	unsigned k = 0;
	for (unsigned i = 0; i < n; i += len[k++]) {
		struct region *r = vm_region_of_page(vm, v[i]);
		len[k] = victims_run_length(v, n, i, r->first_page + r->pt.npages);
	}
	return k;
}

Test(victims, taken_sorted_and_in_one_run)
{
	uint64_t order[] = { 5, 2, 4, 3 };
	for (unsigned i = 0; i < 4; i++)
		arrive(order[i]);
	uint64_t v[EVICT_RUN_PAGES], budget = 100;
	unsigned n = victims_take(vm, v, EVICT_RUN_PAGES, &budget);
	cr_assert_eq(n, 4);
	for (unsigned i = 0; i < 4; i++)
		cr_assert_eq(v[i], 2 + i, "sorted: victims[%u] is %lu", i, (unsigned long)v[i]);
	unsigned len[4];
	cr_assert_eq(runs(v, n, len), 1, "neighbours share one run");
	cr_assert_eq(len[0], 4);
	cr_assert_eq(budget, 96, "one unit of budget per victim");
}

Test(victims, a_page_no_longer_resident_is_skipped_and_splits_the_run)
{
	for (uint64_t p = 1; p <= 5; p++)
		arrive(p);
	set_state(3, PAGE_STORED);  /* the books lag the table */
	uint64_t v[EVICT_RUN_PAGES], budget = 100;
	unsigned n = victims_take(vm, v, EVICT_RUN_PAGES, &budget);
	cr_assert_eq(n, 4, "page 3 is not a victim");
	cr_assert_eq(budget, 95, "looking at it cost budget all the same");
	unsigned len[4];
	cr_assert_eq(runs(v, n, len), 2);
	cr_assert_eq(len[0], 2, "1, 2");
	cr_assert_eq(len[1], 2, "4, 5");
}

Test(victims, a_run_ends_at_its_region)
{
	for (uint64_t p = 5; p <= 10; p++)
		arrive(p);
	uint64_t v[EVICT_RUN_PAGES], budget = 100;
	unsigned n = victims_take(vm, v, EVICT_RUN_PAGES, &budget);
	cr_assert_eq(n, 6);
	unsigned len[6];
	cr_assert_eq(runs(v, n, len), 2, "7 and 8 are neighbours in number, not in memory");
	cr_assert_eq(len[0], 3, "5, 6, 7: to the end of the first region");
	cr_assert_eq(len[1], 3, "8, 9, 10: from the start of the second");
}

Test(victims, a_run_is_cut_at_the_given_end)
{
	uint64_t v[] = { 3, 4, 5, 6 };
	cr_assert_eq(victims_run_length(v, 4, 0, 5), 2, "3, 4: page 5 is past the end");
	cr_assert_eq(victims_run_length(v, 4, 1, 100), 3, "from 4 to the last");
	cr_assert_eq(victims_run_length(v, 4, 3, 100), 1, "a run of the last one alone");
}

Test(victims, at_most_max_are_taken_the_rest_stay_on_the_books)
{
	for (uint64_t p = 0; p < 16; p++)
		arrive(p);
	uint64_t v[EVICT_RUN_PAGES], budget = 100;
	cr_assert_eq(victims_take(vm, v, 5, &budget), 5);
	cr_assert_eq(v[4], 4);
	cr_assert_eq(victims_take(vm, v, EVICT_RUN_PAGES, &budget), 11, "the next batch takes the others");
	cr_assert_eq(v[0], 5);
	cr_assert_eq(victims_take(vm, v, EVICT_RUN_PAGES, &budget), 0, "the books are empty");
}

Test(victims, the_scan_budget_bounds_the_looking)
{
	for (uint64_t p = 0; p < 6; p++)
		arrive(p);
	set_state(0, PAGE_ZERO);
	set_state(1, PAGE_ZERO);
	uint64_t v[EVICT_RUN_PAGES], budget = 3;
	cr_assert_eq(victims_take(vm, v, EVICT_RUN_PAGES, &budget), 1, "two of three looked at were not resident");
	cr_assert_eq(v[0], 2);
	cr_assert_eq(budget, 0);
	cr_assert_eq(victims_take(vm, v, EVICT_RUN_PAGES, &budget), 0, "no budget: nothing taken");
}

Test(victims, a_huge_page_region_is_cut_in_its_own_pages)
{
	/* a third region of 4 huge pages: VM-wide pages 16..19, one per 2 MiB */
	char why[128];
	struct region h = { .host_addr = 0x400000000ull, .size = 4 << 21, .page_size = 2u << 20, .fd = -1,
			    .evictable = true };
	cr_assert_eq(vm_add_region(vm, &h, why, sizeof why), 0, "%s", why);
	struct region *r = &vm->regions[2];
	cr_assert_eq(r->first_page, 16);
	cr_assert_eq(r->pt.npages, 4);
	uint64_t v[] = { 15, 16, 17, 18, 19 };
	cr_assert_eq(victims_run_length(v, 5, 1, r->first_page + r->pt.npages), 4, "16..19: the whole region");
	struct region *r1 = vm_region_of_page(vm, 15);
	cr_assert_eq(victims_run_length(v, 5, 0, r1->first_page + r1->pt.npages), 1,
		     "15 ends its 4 KiB region: not joined to the huge pages after it");
}

Test(victims, what_a_failed_run_left_resident_goes_back)
{
	for (uint64_t p = 0; p < 4; p++)
		arrive(p);
	uint64_t v[EVICT_RUN_PAGES], budget = 10;
	cr_assert_eq(victims_take(vm, v, EVICT_RUN_PAGES, &budget), 4);
	cr_assert_eq(budget, 6);
	set_state(0, PAGE_STORED);  /* the run got page 0 out, then failed */
	victims_return(vm, v, 4, &budget);
	cr_assert_eq(budget, 9, "the three still resident get their budget back");
	uint64_t again[EVICT_RUN_PAGES];
	cr_assert_eq(victims_take(vm, again, EVICT_RUN_PAGES, &budget), 3, "and are taken again");
	cr_assert_eq(again[0], 1);
}

Test(victims, victims_given_back_are_first_in_line_again)
{
	for (uint64_t p = 0; p < 8; p++)
		arrive(p);
	uint64_t v[EVICT_RUN_PAGES], budget = 100;
	cr_assert_eq(victims_take(vm, v, 3, &budget), 3);
	cr_assert_eq(v[0], 0);
	/* an eviction gave way to a fault before it reached them: they are
	 * still the oldest, not the newest */
	victims_return(vm, v, 3, &budget);
	uint64_t again[EVICT_RUN_PAGES];
	cr_assert_eq(victims_take(vm, again, 3, &budget), 3);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(again[i], i, "victim %u is page %lu, not one that arrived later", i, (unsigned long)again[i]);
}
