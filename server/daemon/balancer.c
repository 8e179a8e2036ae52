/* balancer: the node limit, shares and the idle memory tax. */
#include "balancer.h"
#include "balancer_plan.h"

#include <errno.h>
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

/* Balloon first (balloon_plan): the guest picks the pages it can spare, so
 * nothing is paged twice.  Eviction waits for the balloon BALLOON_GRACE_NS
 * from the first request of a shortage, however often the target moves
 * after, holding the VM to what it held then, and then holds the target
 * whatever the guest gave. */
static void ask_balloon(struct vm *vm, uint64_t target, uint64_t now)
{
	if (atomic_load(&vm->balloon.answer) == VM_BALLOON_NO)
		return;
	uint64_t grace = atomic_load(&vm->balloon.grace_until_ns);
	if (atomic_load(&vm->balloon.answer) == VM_BALLOON_UNKNOWN && grace > 1 && now > grace) {
		/* asked and never answered: a VMM that does not serve its session */
		atomic_store(&vm->balloon.answer, VM_BALLOON_NO);
		vm_state_save_settings(vm);
		vm_info(vm, "no answer to the balloon request: memsrv will not ask again");
		return;
	}
	uint64_t asked_ns = atomic_load(&vm->balloon.asked_ns), changed_ns = atomic_load(&vm->balloon.actual_ns);
	uint64_t kept = atomic_load(&vm->balloon.stopped_bytes), stopped = kept;
	if (stopped && now - atomic_load(&vm->balloon.stopped_ns) >= BALLOON_STOPPED_NS)
		stopped = 0;  /* it may have freed memory since: asked again */
	struct balloon_in in = {
		.size = vm->size_bytes,
		.guarantee = vm->quota.guarantee_bytes,
		.working_set = atomic_load(&vm->quota.working_set_bytes),
		.resident = ctr_get(&vm->resident_bytes),
		.target = target,
		.sent = atomic_load(&vm->balloon.sent_bytes),
		.actual = atomic_load(&vm->balloon.actual_bytes),
		/* settled: the VMM is done with the last request (its answer
		 * came: a guest still giving pages did not stop short), and
		 * neither that nor actual changed for a grace */
		.actual_settled = (atomic_load(&vm->balloon.answered_bytes) == atomic_load(&vm->balloon.sent_bytes) ||
				   now - asked_ns >= BALLOON_STOPPED_NS) &&
				  now - asked_ns >= BALLOON_GRACE_NS && now - changed_ns >= BALLOON_GRACE_NS,
		.stopped = stopped,
		.stopped_working_set = atomic_load(&vm->balloon.stopped_working_set),
	};
	struct balloon_out out;
	balloon_plan(&in, &out);
	if (out.stopped != kept || (out.stopped && !in.stopped)) {  /* changed, or stopped anew */
		atomic_store(&vm->balloon.stopped_bytes, out.stopped);
		atomic_store(&vm->balloon.stopped_ns, now);
		atomic_store(&vm->balloon.stopped_working_set, in.working_set);
		if (out.stopped)
			vm_info(vm, "the balloon stopped at %" PRIu64 " MiB, short of the %" PRIu64
				" MiB asked: the guest cannot give more, the store holds the rest", out.stopped >> 20,
				in.sent >> 20);
	}
	if (out.shortage && !atomic_load(&vm->balloon.grace_until_ns)) {
		/* a new shortage: the grace covers the request, which may wait
		 * for the once-a-second pace, and what the VM holds now is its
		 * bound until it ends (with room for the headroom eviction
		 * keeps below a bound: <= 1 MiB) */
		uint64_t next = asked_ns + BALLOON_PACE_NS;
		atomic_store(&vm->balloon.hold_bytes, in.resident + 2 * MIB);
		atomic_store(&vm->balloon.grace_until_ns, (next > now ? next : now) + BALLOON_GRACE_NS);
	} else if (in.resident <= target) {
		atomic_store(&vm->balloon.grace_until_ns, 0);  /* the shortage is over */
	}
	/* whole pages: a balloon gives the guest's pages, not parts of them */
	uint64_t want = (out.want + 4095) & ~4095ull, sent = in.sent;
	if (want == sent || (want > sent ? want - sent : sent - want) < MIB || now - asked_ns < BALLOON_PACE_NS)
		return;
	Memsrv__BalloonTarget bt = MEMSRV__BALLOON_TARGET__INIT;
	bt.target_bytes = want;
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET;
	msg.balloon_target = &bt;
	if (vm_send(vm, &msg))
		return;
	atomic_store(&vm->balloon.sent_bytes, want);
	atomic_store(&vm->balloon.asked_ns, now);
	atomic_store(&vm->balloon.target_bytes, want);
	vm_info(vm, "balloon target %" PRIu64 " MiB (resident %" PRIu64 " MiB, node target %" PRIu64 " MiB)", want >> 20,
		in.resident >> 20, target >> 20);
}

/* What the plan needs to know of a VM, read now. */
static struct plan_vm plan_input(struct vm *vm, uint64_t now)
{
	/* the VM thread may record a fault after now was read: later than
	 * now is the most recent, not 2^64 ns ago */
	uint64_t last_fault = atomic_load(&vm->quota.last_fault_ns);
	return (struct plan_vm){
		.size = vm->size_bytes,
		.limit = atomic_load(&vm->quota.limit_bytes),
		.guarantee = vm->quota.guarantee_bytes,
		.resident = ctr_get(&vm->resident_bytes),
		.shares = vm->quota.shares,
		.active = last_fault >= now || now - last_fault < ACTIVE_NS,
		.has_working_set = atomic_load(&vm->quota.working_set_bytes) != 0,
		.working_set_permille = atomic_load(&vm->quota.working_set_permille),
	};
}

int balancer_reserve(struct server *srv)
{
	size_t n = 1;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		n++;
	if (n <= srv->plan_cap)
		return 0;
	size_t cap = n < 16 ? 16 : 2 * n;
	struct plan_vm *p = realloc(srv->plan, cap * sizeof *p);
	if (!p)
		return -ENOMEM;
	srv->plan = p;
	srv->plan_cap = cap;
	return 0;
}

/* Shares the node among the VMs into srv->plan, one per VM in the order
 * of srv->vms, and fills r; changes nothing else.  Allocates nothing (the
 * room was taken at attach), so it cannot fail. */
static void plan(struct server *srv, struct balance_report *r)
{
	struct plan_node node = { .limit = srv->node_limit, .overhead = overhead_bytes(srv), .idle_tax = srv->idle_tax };
	uint64_t now = monotonic_ns();
	size_t n = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		srv->plan[n++] = plan_input(vm, now);
	balance_plan(&node, srv->plan, n, r);
}

void balancer_report(struct server *srv, struct balance_report *report)
{
	plan(srv, report);
}

void balancer_run(struct server *srv)
{
	struct balance_report r;
	plan(srv, &r);
	uint64_t now = monotonic_ns();
	size_t i = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next) {
		const struct plan_vm *p = &srv->plan[i++];
		atomic_store(&vm->quota.active, p->active);
		if (!srv->node_limit) {
			atomic_store(&vm->quota.node_target_bytes, 0);
			atomic_store(&vm->balloon.grace_until_ns, 0);
			continue;
		}
		/* never a target of 0: that would mean "no target" to the VM */
		uint64_t t = p->entitled > 4096 ? p->entitled : 4096;
		ask_balloon(vm, t, now);  /* first: a new shortage's grace is in place before its target */
		atomic_store(&vm->quota.node_target_bytes, t);
		if (t < ctr_get(&vm->resident_bytes))
			vm_post_wakeup(vm);  /* over its target: evict now (after the balloon's grace) */
	}
}
