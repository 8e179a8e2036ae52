/* Description: the balancer shares the node limit among VMs by their
 * shares after guarantees and memsrv's own memory; asking what it would do
 * (stats, check: balancer_report) sets no target, marks no VM active and
 * wakes no VM thread, so reading memsrv's state never steers it. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <unistd.h>

#include "balancer.h"
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
	store_destroy(srv.store);
}

TestSuite(balancer, .init = setup, .fini = teardown);

/* A busy VM of size bytes holding all of it, with no working-set sample yet. */
static struct vm *busy_vm(uint64_t size, uint32_t shares)
{
	struct vm *vm = vm_new(srv.store);
	cr_assert(vm);
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
