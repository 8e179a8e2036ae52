/* Description: every eviction algorithm takes only resident pages, each
 * once, and in the order its definition promises for what memsrv can see
 * (arrivals, uses at write-protect faults, write bits, the once-a-second tick).
 * A page is on the books once however often it arrives, and a victim taken
 * is off them (deaf to gone and use) until it is resident again. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "policy.h"

static struct policy p;

static void make(const char *name, uint64_t npages)
{
	const struct policy_ops *ops = policy_find(name);
	cr_assert(ops, "no policy %s", name);
	cr_assert_eq(policy_init(&p, ops, npages), 0);
}

static void arrive(uint64_t from, uint64_t to, bool write)
{
	for (uint64_t i = from; i < to; i++)
		p.ops->resident(&p, i, write);
}

static void expect_order(const uint64_t *want, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t got = p.ops->take_victim(&p);
		cr_assert_eq(got, want[i], "%s: victim %u is %lu, expected %lu", p.ops->name, i, (unsigned long)got,
			     (unsigned long)want[i]);
	}
}

Test(policy, every_algorithm_takes_each_resident_page_once)
{
	for (int a = 0; policy_all[a]; a++) {
		make(policy_all[a]->name, 1000);
		arrive(100, 400, false);
		p.ops->gone(&p, 150);  /* discarded: never a victim */
		static bool seen[1000];
		memset(seen, 0, sizeof seen);
		unsigned n = 0;
		for (uint64_t v; (v = p.ops->take_victim(&p)) != POLICY_NONE; n++) {
			cr_assert(v >= 100 && v < 400 && v != 150, "%s took page %lu", p.ops->name, (unsigned long)v);
			cr_assert_not(seen[v], "%s took page %lu twice", p.ops->name, (unsigned long)v);
			seen[v] = true;
			if (n % 50 == 0 && p.ops->tick)
				p.ops->tick(&p);
		}
		cr_assert_eq(n, 299, "%s took %u pages", p.ops->name, n);
		cr_assert_eq(p.nresident, 0);
		policy_fini(&p);
	}
}

Test(policy, fifo_ignores_use)
{
	make("fifo", 10);
	arrive(0, 5, false);
	p.ops->referenced(&p, 0, true);
	expect_order((uint64_t[]){ 0, 1, 2, 3, 4, POLICY_NONE }, 6);
	policy_fini(&p);
}

Test(policy, lru_keeps_what_was_used)
{
	make("lru", 10);
	arrive(0, 5, false);
	p.ops->referenced(&p, 0, false);
	p.ops->referenced(&p, 2, true);
	expect_order((uint64_t[]){ 1, 3, 4, 0, 2 }, 5);
	policy_fini(&p);
}

Test(policy, second_chance_and_clock_spare_the_referenced_once)
{
	const char *names[] = { "second-chance", "clock" };
	for (int i = 0; i < 2; i++) {
		make(names[i], 10);
		arrive(0, 4, false);
		/* every arrival is a reference: the first pass clears them all */
		expect_order((uint64_t[]){ 0 }, 1);
		p.ops->referenced(&p, 1, false);
		expect_order((uint64_t[]){ 2, 3, 1, POLICY_NONE }, 4);
		policy_fini(&p);
	}
}

Test(policy, aging_keeps_the_recently_used)
{
	make("aging", 10);
	arrive(0, 4, false);
	p.ops->tick(&p);                    /* all: 0x80 */
	p.ops->referenced(&p, 3, false);
	p.ops->tick(&p);                    /* 3: 0xc0, others 0x40 */
	p.ops->referenced(&p, 1, false);
	p.ops->tick(&p);                    /* 1: 0xa0, 3: 0x60, 0 and 2: 0x20 */
	expect_order((uint64_t[]){ 0, 2, 3, 1 }, 4);
	policy_fini(&p);
}

Test(policy, nru_takes_the_lowest_class)
{
	make("nru", 10);
	arrive(0, 2, true);   /* modified */
	arrive(2, 4, false);  /* clean */
	p.ops->tick(&p);      /* references cleared */
	p.ops->referenced(&p, 2, false);
	/* class 0 (unreferenced clean): 3; class 1 (unreferenced modified): 0, 1; class 2: 2 */
	expect_order((uint64_t[]){ 3, 0, 1, 2 }, 4);
	policy_fini(&p);
}

Test(policy, random_spreads_its_choices)
{
	make("random", 1000);
	arrive(0, 1000, false);
	uint64_t low = 0;
	for (int i = 0; i < 100; i++)
		low += p.ops->take_victim(&p) < 500;
	cr_assert(low > 25 && low < 75, "%lu of 100 victims from the lower half", (unsigned long)low);
	policy_fini(&p);
}

Test(policy, names)
{
	cr_assert_null(policy_find("optimal"));
	for (int a = 0; policy_all[a]; a++)
		cr_assert(policy_all[a]->summary && *policy_all[a]->summary);
}

Test(policy, a_page_sampled_idle_goes_first)
{
	for (int a = 0; policy_all[a]; a++) {
		if (!strcmp(policy_all[a]->name, "random"))
			continue;
		make(policy_all[a]->name, 10);
		arrive(0, 5, false);
		if (p.ops->tick)
			p.ops->tick(&p);
		p.ops->referenced(&p, 0, false);
		policy_mark_idle(&p, 3);
		uint64_t v = p.ops->take_victim(&p);
		cr_assert_eq(v, 3, "%s: the idle page should go first, took %lu", p.ops->name, (unsigned long)v);
		policy_fini(&p);
	}
}

Test(policy, a_page_resident_again_is_on_the_books_once)
{
	for (int a = 0; policy_all[a]; a++) {
		make(policy_all[a]->name, 10);
		arrive(0, 3, false);
		p.ops->resident(&p, 1, true);  /* already resident: only its bits change */
		cr_assert_eq(p.nresident, 3, "%s counts page 1 twice", p.ops->name);
		unsigned n = 0;
		while (p.ops->take_victim(&p) != POLICY_NONE)
			n++;
		cr_assert_eq(n, 3, "%s took %u victims of 3 pages", p.ops->name, n);
		policy_fini(&p);
	}
}

Test(policy, a_victim_is_off_the_books_until_resident_again)
{
	for (int a = 0; policy_all[a]; a++) {
		make(policy_all[a]->name, 10);
		arrive(4, 5, false);
		cr_assert_eq(p.ops->take_victim(&p), 4);
		cr_assert_eq(p.nresident, 0);
		arrive(6, 7, false);
		p.ops->gone(&p, 4);  /* taken already: nothing to forget (and page 6 stays) */
		p.ops->referenced(&p, 4, true);  /* not resident: no bits */
		cr_assert_eq(p.ops->take_victim(&p), 6, "%s lost page 6", p.ops->name);
		cr_assert_eq(p.ops->take_victim(&p), POLICY_NONE, "%s took a page it had given out", p.ops->name);
		p.ops->resident(&p, 4, false);  /* an eviction that failed gives it back */
		cr_assert_eq(p.ops->take_victim(&p), 4, "%s lost a page given back", p.ops->name);
		policy_fini(&p);
	}
}

Test(policy, marking_a_page_not_resident_idle_changes_nothing)
{
	for (int a = 0; policy_all[a]; a++) {
		make(policy_all[a]->name, 10);
		arrive(0, 2, false);
		policy_mark_idle(&p, 7);
		cr_assert_eq(p.nresident, 2);
		unsigned n = 0;
		for (uint64_t v; (v = p.ops->take_victim(&p)) != POLICY_NONE; n++)
			cr_assert_neq(v, 7, "%s took a page never resident", p.ops->name);
		cr_assert_eq(n, 2);
		policy_fini(&p);
	}
}

Test(policy, more_pages_than_the_list_can_number_are_refused)
{
	struct policy big;
	cr_assert_eq(policy_init(&big, policy_find("lru"), POLICY_NIL), -E2BIG);
	cr_assert_eq(policy_init(&big, policy_find("lru"), 0), 0, "an empty VM is no error");
	cr_assert_eq(big.ops->take_victim(&big), POLICY_NONE);
	policy_fini(&big);
}
