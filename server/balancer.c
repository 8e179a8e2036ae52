/* balancer: the node limit, shares and the idle memory tax. */
#include "balancer.h"

#include <inttypes.h>
#include <stdlib.h>

#include "fault.h"
#include "log.h"
#include "server.h"
#include "vm.h"

#define ACTIVE_NS (3ull * 1000 * 1000 * 1000)  /* a fault this recent makes a VM active */

/* memsrv's own memory: the compressed cache and the page tables */
static uint64_t overhead_bytes(struct server *srv)
{
	struct store_stats ss;
	store_get_stats(srv->store, &ss);
	uint64_t tables = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		tables += vm_total_pages(vm) * sizeof(page_entry);
	return ss.cache_pool_bytes + tables;
}

#define MIB (1ull << 20)

/* Balloon first (ESX): the guest picks the pages it can spare, so nothing
 * is paged twice.  Over its target, a VM whose VMM has (or may have) a
 * balloon is asked to shrink the guest by the excess; the eviction waits
 * for it (BALLOON_GRACE_NS).  Without pressure, the balloon deflates. */
static void ask_balloon(struct vm *vm, uint64_t target, uint64_t now)
{
	if (atomic_load(&vm->balloon) == VM_BALLOON_NO)
		return;
	uint64_t asked = atomic_load(&vm->balloon_asked_ns);
	if (atomic_load(&vm->balloon) == VM_BALLOON_UNKNOWN && asked && now - asked > BALLOON_GRACE_NS) {
		/* asked and never answered: a VMM that does not serve its session */
		atomic_store(&vm->balloon, VM_BALLOON_NO);
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
	} else if (sent && sent < size && resident + 8 * MIB < target) {
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

struct claim {
	struct vm *vm;
	uint64_t floor, cap, got;
	double weight;
	bool full;
};

void balancer_run(struct server *srv, struct balance_report *report)
{
	struct balance_report r = { .node_limit = srv->node_limit };
	unsigned n = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		n++;
	struct claim *c = calloc(n ? n : 1, sizeof *c);
	if (!c)
		return;
	r.overhead = overhead_bytes(srv);
	uint64_t now = monotonic_ns();
	unsigned i = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next, i++) {
		uint64_t size = vm->size_bytes, limit = atomic_load(&vm->limit_bytes);
		c[i].vm = vm;
		c[i].cap = limit && limit < size ? limit : size;
		c[i].floor = vm->guarantee_bytes < c[i].cap ? vm->guarantee_bytes : c[i].cap;
		bool active = now - atomic_load(&vm->last_fault_ns) < ACTIVE_NS;
		atomic_store(&vm->active, active);
		/* the active share f of its pages counts in full, the idle rest
		 * (1 - tax); with no sample yet, recent faults decide */
		double f = active ? 1.0 : 0.0;
		if (active && atomic_load(&vm->working_set_bytes))
			f = atomic_load(&vm->working_set_permille) / 1000.0;
		c[i].weight = (double)vm->shares * (f + (1.0 - f) * (1.0 - srv->idle_tax));
		r.assigned += size;
		r.used += ctr_get(&vm->resident_bytes);
		r.guaranteed += c[i].floor;
	}
	if (!srv->node_limit) {
		for (i = 0; i < n; i++)
			atomic_store(&c[i].vm->node_target_bytes, 0);
		goto out;
	}
	/* guarantees first, whatever they leave */
	uint64_t budget = srv->node_limit > r.overhead ? srv->node_limit - r.overhead : 0;
	uint64_t left = budget > r.guaranteed ? budget - r.guaranteed : 0;
	for (i = 0; i < n; i++)
		c[i].got = c[i].floor;
	/* water-filling by weight: a VM at its cap hands its surplus on */
	for (unsigned round = 0; round < n && left; round++) {
		double total = 0;
		for (i = 0; i < n; i++)
			if (!c[i].full)
				total += c[i].weight;
		if (total <= 0)
			break;
		uint64_t given = 0;
		bool capped = false;
		for (i = 0; i < n; i++) {
			if (c[i].full)
				continue;
			uint64_t share = (uint64_t)((double)left * c[i].weight / total);
			if (c[i].got + share >= c[i].cap) {
				share = c[i].cap - c[i].got;
				c[i].full = true;
				capped = true;
			}
			c[i].got += share;
			given += share;
		}
		left = left > given ? left - given : 0;
		if (!capped)
			break;
	}
	for (i = 0; i < n; i++) {
		/* never a target of 0: that would mean "no target" to the VM */
		uint64_t t = c[i].got > 4096 ? c[i].got : 4096;
		atomic_store(&c[i].vm->node_target_bytes, t);
		r.entitled += c[i].got;
		ask_balloon(c[i].vm, t, now);
		if (t < ctr_get(&c[i].vm->resident_bytes))
			vm_post_wakeup(c[i].vm);  /* over its target: evict now (after the balloon's grace) */
	}
out:
	if (srv->node_limit) {
		r.overcommit_margin = (int64_t)srv->node_limit - (int64_t)(r.assigned + r.overhead);
		r.overload_margin = (int64_t)srv->node_limit - (int64_t)(r.used + r.overhead);
		if ((int64_t)srv->node_limit - (int64_t)(r.guaranteed + r.overhead) < r.overload_margin)
			r.overload_margin = (int64_t)srv->node_limit - (int64_t)(r.guaranteed + r.overhead);
		r.overcommitted = r.overcommit_margin <= 0;
		r.overloaded = r.overload_margin <= 0;
	}
	free(c);
	if (report)
		*report = r;
}
