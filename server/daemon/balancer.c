/* balancer: the node limit, shares and the idle memory tax. */
#include "balancer.h"
#include "balancer_plan.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "vm.h"
#include "vm_state.h"

#define ACTIVE_NS (3ull * 1000 * 1000 * 1000)  /* a fault this recent makes a VM active */

/* memsrv's own memory as the kernel counts it (its resident set: the
 * compressed cache, page tables, object table, index, buffers), or what
 * the cache and tables alone take if that reads higher. */
static uint64_t resident_set_bytes(void)
{
	char buf[128];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	if (fd >= 0)
		close(fd);
	unsigned long long size, resident;
	if (n <= 0)
		return 0;
	buf[n] = 0;
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return 0;
	return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t overhead_bytes(struct server *srv)
{
	struct store_stats ss;
	store_get_stats(srv->store, &ss);
	uint64_t counted = ss.cache_pool_bytes;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		counted += vm_total_pages(vm) * sizeof(page_entry);
	uint64_t measured = resident_set_bytes();
	return measured > counted ? measured : counted;
}

#define MIB (1ull << 20)

/* Balloon first (ESX): the guest picks the pages it can spare, so nothing
 * is paged twice.  Over its target, a VM whose VMM has (or may have) a
 * balloon is asked to shrink the guest by the excess; eviction waits for
 * it BALLOON_GRACE_NS from the first request of the shortage, however
 * often the target moves after, holding the VM to what it held then, and
 * then holds the target whatever the guest gave.  Without pressure, the
 * balloon deflates. */
static void ask_balloon(struct vm *vm, uint64_t target, uint64_t now)
{
	if (atomic_load(&vm->balloon) == VM_BALLOON_NO)
		return;
	uint64_t grace = atomic_load(&vm->balloon_grace_until_ns);
	if (atomic_load(&vm->balloon) == VM_BALLOON_UNKNOWN && grace > 1 && now > grace) {
		/* asked and never answered: a VMM that does not serve its session */
		atomic_store(&vm->balloon, VM_BALLOON_NO);
		vm_state_save_settings(vm);
		vm_info(vm, "no answer to the balloon request: memsrv will not ask again");
		return;
	}
	uint64_t size = vm->size_bytes, resident = ctr_get(&vm->resident_bytes);
	uint64_t sent = atomic_load(&vm->balloon_sent_bytes), want = sent;
	if (resident > target + MIB) {
		/* the balloon takes at most 65% of the guest (ESX's default), never its guarantee */
		uint64_t excess = resident - target, floor = size / 100 * 35;
		if (vm->guarantee_bytes > floor)
			floor = vm->guarantee_bytes;
		uint64_t from = sent ? sent : size;
		want = from > excess + floor ? from - excess : floor;
		if (!atomic_load(&vm->balloon_grace_until_ns)) {
			/* a new shortage: the grace covers the request, which
			 * may wait for the once-a-second pace, and what the VM
			 * holds now is its bound until it ends (with room for
			 * the headroom eviction keeps below a bound: <= 1 MiB) */
			uint64_t next = atomic_load(&vm->balloon_asked_ns) + 1000000000ull;
			atomic_store(&vm->balloon_hold_bytes, resident + 2 * MIB);
			atomic_store(&vm->balloon_grace_until_ns, (next > now ? next : now) + BALLOON_GRACE_NS);
		}
	} else if (resident <= target) {
		atomic_store(&vm->balloon_grace_until_ns, 0);  /* the shortage is over */
		if (sent && sent < size && resident + 8 * MIB < target)
			want = size;  /* pressure gone: the guest may have its memory back */
	}
	if (want == sent || (want > sent ? want - sent : sent - want) < MIB || now - atomic_load(&vm->balloon_asked_ns) < 1000000000ull)
		return;
	Memsrv__BalloonTarget bt = MEMSRV__BALLOON_TARGET__INIT;
	bt.target_bytes = want;
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET;
	msg.balloon_target = &bt;
	if (vm_send(vm, &msg))
		return;
	atomic_store(&vm->balloon_sent_bytes, want);
	atomic_store(&vm->balloon_asked_ns, now);
	atomic_store(&vm->balloon_target_bytes, want);
	vm_info(vm, "balloon target %" PRIu64 " MiB (resident %" PRIu64 " MiB, node target %" PRIu64 " MiB)", want >> 20,
		resident >> 20, target >> 20);
}

/* What the plan needs to know of a VM, read now. */
static struct plan_vm plan_input(struct vm *vm, uint64_t now)
{
	return (struct plan_vm){
		.size = vm->size_bytes,
		.limit = atomic_load(&vm->limit_bytes),
		.guarantee = vm->guarantee_bytes,
		.resident = ctr_get(&vm->resident_bytes),
		.shares = vm->shares,
		.active = now - atomic_load(&vm->last_fault_ns) < ACTIVE_NS,
		.has_working_set = atomic_load(&vm->working_set_bytes) != 0,
		.working_set_permille = atomic_load(&vm->working_set_permille),
	};
}

/* Shares the node among the VMs: returns one plan_vm per VM, in the order
 * of srv->vms (the caller frees it), and fills r; changes nothing else.
 * NULL when out of memory (r then says nothing of entitlements). */
static struct plan_vm *plan(struct server *srv, struct balance_report *r)
{
	size_t n = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		n++;
	struct plan_node node = { .limit = srv->node_limit, .overhead = overhead_bytes(srv), .idle_tax = srv->idle_tax };
	struct plan_vm *vms = calloc(n ? n : 1, sizeof *vms);
	if (!vms) {
		*r = (struct balance_report){ .node_limit = node.limit, .overhead = node.overhead };
		return NULL;
	}
	uint64_t now = monotonic_ns();
	size_t i = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		vms[i++] = plan_input(vm, now);
	balance_plan(&node, vms, n, r);
	return vms;
}

void balancer_report(struct server *srv, struct balance_report *report)
{
	free(plan(srv, report));
}

void balancer_run(struct server *srv)
{
	struct balance_report r;
	struct plan_vm *planned = plan(srv, &r);
	if (!planned) {
		pr_warn_ratelimited("balancer: out of memory; the targets stay as they are until the next tick");
		return;
	}
	uint64_t now = monotonic_ns();
	size_t i = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next) {
		const struct plan_vm *p = &planned[i++];
		atomic_store(&vm->active, p->active);
		if (!srv->node_limit) {
			atomic_store(&vm->node_target_bytes, 0);
			atomic_store(&vm->balloon_grace_until_ns, 0);
			continue;
		}
		/* never a target of 0: that would mean "no target" to the VM */
		uint64_t t = p->entitled > 4096 ? p->entitled : 4096;
		ask_balloon(vm, t, now);  /* first: a new shortage's grace is in place before its target */
		atomic_store(&vm->node_target_bytes, t);
		if (t < ctr_get(&vm->resident_bytes))
			vm_post_wakeup(vm);  /* over its target: evict now (after the balloon's grace) */
	}
	free(planned);
}
