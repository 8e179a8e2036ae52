/* Description: the balancer shares the node limit among VMs by their
 * shares after guarantees and memsrv's own memory; asking what it would do
 * (stats, check: balancer_report) sets no target, marks no VM active and
 * wakes no VM thread, so reading memsrv's state never steers it.  Its
 * arithmetic (balance_plan: guarantees, water-filling, idle tax, margins)
 * is tested on plain numbers in the plan suite, and the balloon's
 * (balloon_plan: how far a guest is asked to shrink, never below its
 * working set, nor below where it stopped short) in the balloon suite. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "balancer.h"
#include "balancer_plan.h"
#include "server.h"
#include "vm.h"

#define MIB (1ull << 20)

static struct server srv;

static void setup(void)
{
	struct store_config cfg = { 0 };
	srv.store = store_create(&cfg);
	cr_assert(srv.store);
	srv.idle_tax = 0.75;
	srv.node_limit = 1024 * MIB;
}

static void teardown(void)
{
	while (srv.vms) {
		struct vm *vm = srv.vms;
		srv.vms = vm->next;
		vm_destroy(vm);
	}
	free(srv.plan);
	store_destroy(srv.store);
}

TestSuite(balancer, .init = setup, .fini = teardown);

/* A busy VM of size bytes holding all of it, with no working-set sample yet. */
static struct vm *busy_vm(uint64_t size, uint32_t shares)
{
	struct vm *vm = vm_new(srv.store);
	cr_assert(vm);
	cr_assert_eq(balancer_reserve(&srv), 0);  /* as a Hello does */
	vm->size_bytes = size;
	vm->quota.shares = shares;
	atomic_store(&vm->resident_bytes, size);
	atomic_store(&vm->quota.last_fault_ns, monotonic_ns());
	vm->next = srv.vms;
	srv.vms = vm;
	return vm;
}

static bool woken(struct vm *vm)
{
	uint64_t n;
	return read(vm->thr.wake_fd, &n, sizeof n) == sizeof n;
}

Test(balancer, a_report_changes_nothing)
{
	struct vm *a = busy_vm(1024 * MIB, 1), *b = busy_vm(1024 * MIB, 3);
	struct balance_report r;
	balancer_report(&srv, &r);
	cr_assert_gt(r.entitled, 0);
	cr_assert_eq(r.used, 2048 * MIB);
	cr_assert(r.overloaded, "2 GiB resident on a 1 GiB node");
	cr_assert_eq(atomic_load(&a->quota.node_target_bytes), 0, "a report set a target");
	cr_assert_eq(atomic_load(&b->quota.node_target_bytes), 0, "a report set a target");
	cr_assert_not(atomic_load(&a->quota.active), "a report marked a VM active");
	cr_assert_not(woken(a), "a report woke a VM over its target");
	cr_assert_not(woken(b), "a report woke a VM over its target");
}

Test(balancer, a_run_shares_the_node_by_shares_after_the_overhead)
{
	struct vm *a = busy_vm(1024 * MIB, 1), *b = busy_vm(1024 * MIB, 3);
	balancer_run(&srv);
	struct balance_report r;
	balancer_report(&srv, &r);
	uint64_t ta = atomic_load(&a->quota.node_target_bytes), tb = atomic_load(&b->quota.node_target_bytes);
	cr_assert_gt(r.overhead, 0, "memsrv's own memory is counted: this process holds some");
	/* the resident set moves a little between two readings */
	uint64_t left = srv.node_limit - r.overhead;
	cr_assert(ta + tb <= left + MIB && ta + tb + MIB >= left, "targets %lu + %lu of %lu", (unsigned long)ta,
		  (unsigned long)tb, (unsigned long)left);
	cr_assert(tb > ta * 3 - 4 && tb < ta * 3 + 4, "shares 1:3 give %lu and %lu", (unsigned long)ta,
		  (unsigned long)tb);
	cr_assert(atomic_load(&a->quota.active));
	cr_assert(woken(a) && woken(b), "both are over their targets: woken to evict");
}

/* The VM thread records a fault's time while the balancer runs on the
 * server thread: a fault recorded after the balancer read its clock is the
 * most recent there is, not one from long ago. */
Test(balancer, a_fault_recorded_after_the_balancer_read_its_clock_is_recent)
{
	struct vm *a = busy_vm(1024 * MIB, 1);
	atomic_store(&a->quota.last_fault_ns, monotonic_ns() + 1000000000ull);
	balancer_run(&srv);
	cr_assert(atomic_load(&a->quota.active), "a VM faulting right now is called idle");
}

/* ---- balance_plan: the arithmetic alone ---- */

/* An active VM of size MiB, all of it resident, no limit, no guarantee,
 * no working-set sample. */
static struct plan_vm vm_of(uint64_t size_mib, uint32_t shares)
{
	return (struct plan_vm){ .size = size_mib * MIB, .resident = size_mib * MIB, .shares = shares, .active = true };
}

static struct plan_node node_of(uint64_t limit_mib, uint64_t overhead_mib)
{
	return (struct plan_node){ .limit = limit_mib * MIB, .overhead = overhead_mib * MIB, .idle_tax = 0.75 };
}

/* a within a few bytes of b: water-filling rounds each share down */
#define assert_about(a, b, ...) cr_assert((a) <= (b) + 16 && (a) + 16 >= (b), __VA_ARGS__)

Test(plan, shares_divide_what_the_overhead_leaves)
{
	struct plan_node node = node_of(1024, 24);
	struct plan_vm v[] = { vm_of(2048, 1), vm_of(2048, 3) };
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	assert_about(v[0].entitled, 250 * MIB, "1 share of 4 of 1000 MiB: %lu", (unsigned long)v[0].entitled);
	assert_about(v[1].entitled, 750 * MIB, "3 shares of 4 of 1000 MiB: %lu", (unsigned long)v[1].entitled);
	assert_about(r.entitled, 1000 * MIB, "the report sums the entitlements");
	cr_assert_eq(r.node_limit, 1024 * MIB);
	cr_assert_eq(r.overhead, 24 * MIB);
	cr_assert_eq(r.assigned, 4096 * MIB);
	cr_assert_eq(r.used, 4096 * MIB);
}

Test(plan, a_vm_at_its_cap_hands_its_surplus_on)
{
	struct plan_node node = node_of(1000, 0);
	/* equal shares: 333 MiB each, but a holds at most 100 (its size) and
	 * b at most 200 (its limit): c gets the rest */
	struct plan_vm v[] = { vm_of(100, 1), vm_of(1000, 1), vm_of(1000, 1) };
	v[1].limit = 200 * MIB;
	struct balance_report r;
	balance_plan(&node, v, 3, &r);
	cr_assert_eq(v[0].entitled, 100 * MIB, "capped at its size: %lu", (unsigned long)v[0].entitled);
	cr_assert_eq(v[1].entitled, 200 * MIB, "capped at its limit: %lu", (unsigned long)v[1].entitled);
	assert_about(v[2].entitled, 700 * MIB, "the surplus of both: %lu", (unsigned long)v[2].entitled);
	assert_about(r.entitled, 1000 * MIB, "nothing is lost to the caps");
}

Test(plan, a_limit_above_the_size_caps_at_the_size)
{
	struct plan_node node = node_of(1000, 0);
	struct plan_vm v[] = { vm_of(100, 1), vm_of(1000, 1) };
	v[0].limit = 500 * MIB;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	cr_assert_eq(v[0].entitled, 100 * MIB, "a VM is never entitled to more than its size");
	assert_about(v[1].entitled, 900 * MIB, "the other gets the rest");
}

Test(plan, when_every_vm_is_capped_memory_stays_unshared)
{
	struct plan_node node = node_of(1000, 0);
	struct plan_vm v[] = { vm_of(100, 1), vm_of(200, 5) };
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	cr_assert_eq(v[0].entitled, 100 * MIB);
	cr_assert_eq(v[1].entitled, 200 * MIB);
	cr_assert_eq(r.entitled, 300 * MIB);
}

Test(plan, guarantees_come_first)
{
	struct plan_node node = node_of(1000, 0);
	/* a's 600 MiB guarantee, then the 400 left by equal shares: 200 each */
	struct plan_vm v[] = { vm_of(1000, 1), vm_of(1000, 1) };
	v[0].guarantee = 600 * MIB;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	assert_about(v[0].entitled, 800 * MIB, "guarantee + half of the rest: %lu", (unsigned long)v[0].entitled);
	assert_about(v[1].entitled, 200 * MIB, "half of what the guarantee left: %lu", (unsigned long)v[1].entitled);
	cr_assert_eq(r.guaranteed, 600 * MIB);
}

Test(plan, guarantees_are_kept_past_the_limit)
{
	struct plan_node node = node_of(1000, 100);
	struct plan_vm v[] = { vm_of(1000, 1), vm_of(1000, 1000) };
	v[0].guarantee = 700 * MIB;
	v[1].guarantee = 500 * MIB;
	v[0].resident = v[1].resident = 0;  /* overloaded by the guarantees alone */
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	cr_assert_eq(v[0].entitled, 700 * MIB, "a guarantee is a floor, whatever the node holds");
	cr_assert_eq(v[1].entitled, 500 * MIB, "and shares add nothing when none is left");
	cr_assert(r.overloaded, "guarantees beyond the limit overload the node");
	cr_assert_eq(r.overload_margin, (int64_t)(1000 - 100 - 1200) * (int64_t)MIB);
}

Test(plan, a_guarantee_above_the_cap_is_the_cap)
{
	struct plan_node node = node_of(4096, 0);
	struct plan_vm v[] = { vm_of(1000, 1) };
	v[0].limit = 300 * MIB;
	v[0].guarantee = 800 * MIB;
	struct balance_report r;
	balance_plan(&node, v, 1, &r);
	cr_assert_eq(v[0].entitled, 300 * MIB);
	cr_assert_eq(r.guaranteed, 300 * MIB, "what counts as guaranteed is what the VM may hold");
}

Test(plan, an_idle_vm_pays_the_tax)
{
	struct plan_node node = node_of(1000, 0);  /* tax 0.75: an idle share counts 1/4 */
	struct plan_vm v[] = { vm_of(1000, 1), vm_of(1000, 1) };
	v[1].active = false;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	assert_about(v[0].entitled, 800 * MIB, "active: weight 1 of 1.25: %lu", (unsigned long)v[0].entitled);
	assert_about(v[1].entitled, 200 * MIB, "idle: weight 0.25 of 1.25: %lu", (unsigned long)v[1].entitled);
}

Test(plan, a_tax_of_zero_makes_idle_and_active_alike)
{
	struct plan_node node = node_of(1000, 0);
	node.idle_tax = 0;
	struct plan_vm v[] = { vm_of(1000, 1), vm_of(1000, 1) };
	v[1].active = false;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	assert_about(v[0].entitled, 500 * MIB, "no tax: equal shares");
	assert_about(v[1].entitled, 500 * MIB, "no tax: equal shares");
}

Test(plan, an_active_vm_pays_the_tax_on_its_idle_part)
{
	struct plan_node node = node_of(1000, 0);
	/* a uses a quarter of what it holds: weight 0.25 + 0.75 * 0.25 = 0.4375;
	 * b has no sample yet and counts in full (weight 1) */
	struct plan_vm v[] = { vm_of(1000, 1), vm_of(1000, 1) };
	v[0].has_working_set = true;
	v[0].working_set_permille = 250;
	v[1].working_set_permille = 250;  /* no estimate: ignored */
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	uint64_t a = (uint64_t)(1000.0 * MIB * 0.4375 / 1.4375), b = (uint64_t)(1000.0 * MIB / 1.4375);
	assert_about(v[0].entitled, a, "%lu, not %lu", (unsigned long)v[0].entitled, (unsigned long)a);
	assert_about(v[1].entitled, b, "%lu, not %lu", (unsigned long)v[1].entitled, (unsigned long)b);
}

Test(plan, an_idle_vm_is_taxed_on_all_of_it_whatever_its_working_set)
{
	struct plan_node node = node_of(1000, 0);
	struct plan_vm v[] = { vm_of(1000, 1), vm_of(1000, 1) };
	v[1].active = false;
	v[1].has_working_set = true;
	v[1].working_set_permille = 1000;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	assert_about(v[1].entitled, 200 * MIB, "idle: weight 0.25 however much it used: %lu",
		     (unsigned long)v[1].entitled);
}

Test(plan, overcommit_and_overload_margins)
{
	struct plan_node node = node_of(1000, 100);
	struct plan_vm v[] = { vm_of(500, 1), vm_of(500, 1) };
	v[0].resident = 300 * MIB;
	v[1].resident = 200 * MIB;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	/* 1000 MiB assigned + 100 of overhead on a 1000 MiB node: 100 short */
	cr_assert_eq(r.overcommit_margin, -100 * (int64_t)MIB);
	cr_assert(r.overcommitted);
	/* 500 resident + 100: 400 to spare */
	cr_assert_eq(r.overload_margin, 400 * (int64_t)MIB);
	cr_assert_not(r.overloaded);
}

Test(plan, a_margin_of_zero_counts_as_over)
{
	struct plan_node node = node_of(1000, 0);
	struct plan_vm v[] = { vm_of(600, 1), vm_of(400, 1) };
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	cr_assert_eq(r.overcommit_margin, 0);
	cr_assert_eq(r.overload_margin, 0);
	cr_assert(r.overcommitted, "every byte assigned: overcommitted");
	cr_assert(r.overloaded, "every byte resident: overloaded");
}

Test(plan, without_a_node_limit_nothing_is_shared)
{
	struct plan_node node = node_of(0, 100);
	struct plan_vm v[] = { vm_of(500, 1), vm_of(500, 1) };
	v[0].guarantee = 50 * MIB;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	cr_assert_eq(v[0].entitled, 50 * MIB, "its guarantee only");
	cr_assert_eq(v[1].entitled, 0);
	cr_assert_eq(r.entitled, 0);
	cr_assert_eq(r.assigned, 1000 * MIB, "the totals are reported all the same");
	cr_assert_eq(r.used, 1000 * MIB);
	cr_assert_eq(r.guaranteed, 50 * MIB);
	cr_assert_eq(r.overcommit_margin, 0);
	cr_assert_eq(r.overload_margin, 0);
	cr_assert_not(r.overcommitted, "no limit: never over it");
	cr_assert_not(r.overloaded, "no limit: never over it");
}

Test(plan, no_vms)
{
	struct plan_node node = node_of(1000, 100);
	struct balance_report r;
	balance_plan(&node, NULL, 0, &r);
	cr_assert_eq(r.entitled, 0);
	cr_assert_eq(r.assigned, 0);
	cr_assert_eq(r.overcommit_margin, 900 * (int64_t)MIB, "the limit less memsrv's own");
	cr_assert_eq(r.overload_margin, 900 * (int64_t)MIB);
	cr_assert_not(r.overcommitted);
	cr_assert_not(r.overloaded);
}

Test(plan, an_overhead_over_the_limit_leaves_only_guarantees)
{
	struct plan_node node = node_of(100, 150);
	struct plan_vm v[] = { vm_of(500, 1), vm_of(500, 1) };
	v[1].guarantee = 10 * MIB;
	v[0].resident = v[1].resident = 0;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	cr_assert_eq(v[0].entitled, 0, "no budget: %lu", (unsigned long)v[0].entitled);
	cr_assert_eq(v[1].entitled, 10 * MIB, "its guarantee all the same");
	cr_assert_eq(r.overload_margin, -60 * (int64_t)MIB, "memsrv and the guarantee: 60 MiB short");
	cr_assert(r.overloaded, "memsrv alone passes the limit");
	cr_assert(r.overcommitted);
}

Test(plan, shares_at_their_bounds)
{
	struct plan_node node = node_of(1001, 0);
	struct plan_vm v[] = { vm_of(2000, 1000000), vm_of(2000, 1) };
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	/* 1001 MiB in 1000001 parts: the smallest weight still gets its part */
	uint64_t small = (uint64_t)(1001.0 * MIB / 1000001.0);
	assert_about(v[1].entitled, small, "%lu, not %lu", (unsigned long)v[1].entitled, (unsigned long)small);
	assert_about(v[0].entitled, 1001 * MIB - small, "the largest the rest");
}

Test(plan, no_weight_at_all_shares_nothing)
{
	/* a tax of 1 (more than memsrv allows) on idle VMs: every weight 0,
	 * and the plan neither divides by zero nor hands anything out */
	struct plan_node node = node_of(1000, 0);
	node.idle_tax = 1.0;
	struct plan_vm v[] = { vm_of(500, 1), vm_of(500, 1) };
	v[0].active = v[1].active = false;
	v[0].guarantee = 10 * MIB;
	struct balance_report r;
	balance_plan(&node, v, 2, &r);
	cr_assert_eq(v[0].entitled, 10 * MIB);
	cr_assert_eq(v[1].entitled, 0);
}

Test(plan, water_filling_cascades_over_rounds)
{
	/* equal shares of 900: 300 each; a caps at 100, so b and c share 800:
	 * 400 each; b caps at 250, so c takes the rest: 550 */
	struct plan_node node = node_of(900, 0);
	struct plan_vm v[] = { vm_of(100, 1), vm_of(250, 1), vm_of(2000, 1) };
	struct balance_report r;
	balance_plan(&node, v, 3, &r);
	cr_assert_eq(v[0].entitled, 100 * MIB);
	cr_assert_eq(v[1].entitled, 250 * MIB);
	assert_about(v[2].entitled, 550 * MIB, "%lu", (unsigned long)v[2].entitled);
}

/* A 1 GiB guest holding all of it, given 700 MiB by the node: a shortage
 * of 324 MiB, no balloon request yet, nothing known of its balloon. */
static struct balloon_in shortage(void)
{
	return (struct balloon_in){ .size = 1024 * MIB, .resident = 1024 * MIB, .target = 700 * MIB };
}

Test(balloon, a_shortage_asks_the_guest_for_the_excess)
{
	struct balloon_in in = shortage();
	struct balloon_out out;
	balloon_plan(&in, &out);
	cr_assert(out.shortage);
	cr_assert_eq(out.want, 700 * MIB);
	cr_assert_eq(out.stopped, 0);
}

Test(balloon, never_below_35_percent_nor_the_guarantee)
{
	struct balloon_in in = shortage();
	in.target = 100 * MIB;
	struct balloon_out out;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 1024 * MIB / 100 * 35);
	in.guarantee = 500 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 500 * MIB);
}

Test(balloon, never_below_the_working_set_and_an_eighth)
{
	struct balloon_in in = shortage();
	in.working_set = 800 * MIB;
	struct balloon_out out;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 900 * MIB, "the guest uses 800 MiB: asked for %lu MiB", (unsigned long)(out.want / MIB));
	/* asked lower before the estimate came: raised to the floor, no lower */
	in.sent = in.actual = 700 * MIB;
	in.resident = 1000 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 900 * MIB);
}

Test(balloon, the_guest_is_asked_for_the_nodes_target_once)
{
	/* asked for 700; the guest is at 800 and still moving: no new request */
	struct balloon_in in = shortage();
	in.sent = 700 * MIB;
	in.actual = 800 * MIB;
	in.resident = 800 * MIB;
	struct balloon_out out;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 700 * MIB, "asked for %lu MiB", (unsigned long)(out.want / MIB));
	cr_assert_eq(out.stopped, 0, "a guest still moving has not stopped");
	/* the node's target falls to 600: so does the balloon's */
	in.target = 600 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 600 * MIB);
	/* there, with the store holding its resident memory to the target,
	 * nothing more is asked */
	in.sent = in.actual = in.target;
	in.resident = 599 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 600 * MIB);
	cr_assert_not(out.shortage);
}

Test(balloon, a_guest_that_stopped_short_is_asked_no_lower_and_given_back_the_rest)
{
	struct balloon_in in = shortage();
	in.sent = 500 * MIB;
	in.actual = 800 * MIB;
	in.resident = 800 * MIB;
	in.target = 500 * MIB;
	in.actual_settled = true;
	struct balloon_out out;
	balloon_plan(&in, &out);
	cr_assert_eq(out.stopped, 800 * MIB);
	cr_assert_eq(out.want, 800 * MIB, "the guest is asked to stop trying: %lu MiB", (unsigned long)(out.want / MIB));
	/* the node's target falls further: still no lower than where it stopped */
	in.sent = 800 * MIB;
	in.stopped = out.stopped;
	in.target = 300 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 800 * MIB);
	cr_assert_eq(out.stopped, 800 * MIB);
	/* the store held it to its target: still short of room, still stopped */
	in.resident = 300 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.stopped, 800 * MIB);
	cr_assert_eq(out.want, 800 * MIB);
	/* the pressure gone, it has all of its memory back, and may be asked anew */
	in.target = 1024 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.stopped, 0);
	cr_assert_eq(out.want, 1024 * MIB);
}

Test(balloon, a_guest_stopped_short_is_asked_again_once_its_working_set_fell)
{
	struct balloon_in in = shortage();
	in.sent = in.stopped = in.actual = 800 * MIB;
	in.stopped_working_set = in.working_set = 600 * MIB;
	in.target = 500 * MIB;
	in.resident = 800 * MIB;
	in.actual_settled = true;
	struct balloon_out out;
	balloon_plan(&in, &out);
	cr_assert_eq(out.stopped, 800 * MIB, "nothing changed: still stopped");
	cr_assert_eq(out.want, 800 * MIB);
	/* it uses a little less: noise, not memory freed */
	in.working_set = 560 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.stopped, 800 * MIB);
	/* an eighth less: it freed memory, which the balloon may take */
	in.working_set = 525 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.stopped, 0);
	cr_assert_eq(out.want, 525 * MIB + 525 * MIB / 8, "its working set and an eighth: %lu MiB",
		     (unsigned long)(out.want / MIB));
}

Test(balloon, a_guest_stopped_short_is_given_back_the_rest_once_the_store_holds_the_target)
{
	/* eviction holds the node's target after the grace: memsrv is short
	 * of nothing, but the guest, short of its balloon's target, still
	 * tries to give what it cannot */
	struct balloon_in in = shortage();
	in.sent = 500 * MIB;
	in.actual = 800 * MIB;
	in.resident = 500 * MIB;
	in.target = 500 * MIB;
	in.actual_settled = true;
	struct balloon_out out;
	balloon_plan(&in, &out);
	cr_assert_not(out.shortage);
	cr_assert_eq(out.stopped, 800 * MIB);
	cr_assert_eq(out.want, 800 * MIB);
	/* not settled yet: it may still be on its way */
	in.actual_settled = false;
	balloon_plan(&in, &out);
	cr_assert_eq(out.stopped, 0);
	cr_assert_eq(out.want, 500 * MIB);
}

Test(balloon, it_follows_the_nodes_target_not_what_the_balloon_itself_lowered)
{
	/* ballooned to 700, the guest holds 600 resident: no deflation for
	 * that (a rule on resident memory deflated a balloon that had just
	 * done its work, and inflated it again a second later) */
	struct balloon_in in = shortage();
	in.sent = in.actual = 700 * MIB;
	in.resident = 600 * MIB;
	struct balloon_out out;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 700 * MIB);
	/* the node gives it more: the balloon deflates that far */
	in.target = 900 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 900 * MIB);
	/* all of it: deflated to its size */
	in.target = 2048 * MIB;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 1024 * MIB);
	/* a guest never asked is not asked for all of its memory */
	in.sent = in.actual = 0;
	balloon_plan(&in, &out);
	cr_assert_eq(out.want, 0);
}
