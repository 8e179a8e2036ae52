/* balancer_plan: guarantees, water-filling by weight, margins. */
#include "balancer_plan.h"

/* The active share f of its pages counts in full, the idle rest (1 - tax);
 * with no sample yet, recent faults decide. */
static double weight_of(const struct plan_vm *v, double idle_tax)
{
	double f = v->active ? 1.0 : 0.0;
	if (v->active && v->has_working_set)
		f = v->working_set_permille / 1000.0;
	return (double)v->shares * (f + (1.0 - f) * (1.0 - idle_tax));
}

/* Hands left out by weight among the VMs below their caps; a VM that
 * reaches its cap takes only what fits, and the next round shares what it
 * left.  At most n rounds: each one that does not end fills a VM. */
static void water_fill(struct plan_vm *vms, size_t n, uint64_t left)
{
	for (size_t round = 0; round < n && left; round++) {
		double total = 0;
		for (size_t i = 0; i < n; i++)
			if (!vms[i].full)
				total += vms[i].weight;
		if (total <= 0)
			break;
		uint64_t given = 0;
		bool capped = false;
		for (size_t i = 0; i < n; i++) {
			struct plan_vm *v = &vms[i];
			if (v->full)
				continue;
			uint64_t share = (uint64_t)((double)left * v->weight / total);
			if (v->entitled + share >= v->cap) {
				share = v->cap - v->entitled;
				v->full = true;
				capped = true;
			}
			v->entitled += share;
			given += share;
		}
		left = left > given ? left - given : 0;
		if (!capped)
			break;
	}
}

void balance_plan(const struct plan_node *node, struct plan_vm *vms, size_t n, struct balance_report *r)
{
	*r = (struct balance_report){ .node_limit = node->limit, .overhead = node->overhead };
	for (size_t i = 0; i < n; i++) {
		struct plan_vm *v = &vms[i];
		v->cap = v->limit && v->limit < v->size ? v->limit : v->size;
		v->floor = v->guarantee < v->cap ? v->guarantee : v->cap;
		v->weight = weight_of(v, node->idle_tax);
		v->entitled = v->floor;
		v->full = false;
		r->assigned += v->size;
		r->used += v->resident;
		r->guaranteed += v->floor;
	}
	if (!node->limit)
		return;
	/* guarantees first, whatever they leave */
	uint64_t budget = node->limit > node->overhead ? node->limit - node->overhead : 0;
	water_fill(vms, n, budget > r->guaranteed ? budget - r->guaranteed : 0);
	for (size_t i = 0; i < n; i++)
		r->entitled += vms[i].entitled;
	int64_t limit = (int64_t)node->limit;
	r->overcommit_margin = limit - (int64_t)(r->assigned + node->overhead);
	/* overloaded: what is resident, or what is guaranteed, does not fit */
	r->overload_margin = limit - (int64_t)(r->used + node->overhead);
	if (limit - (int64_t)(r->guaranteed + node->overhead) < r->overload_margin)
		r->overload_margin = limit - (int64_t)(r->guaranteed + node->overhead);
	r->overcommitted = r->overcommit_margin <= 0;
	r->overloaded = r->overload_margin <= 0;
}

#define MIB (1ull << 20)

void balloon_plan(const struct balloon_in *in, struct balloon_out *out)
{
	out->want = in->sent;
	out->stopped = in->stopped;
	out->shortage = in->resident > in->target + MIB;
	if (in->actual && in->actual_settled && in->sent && in->actual > in->sent + MIB) {
		/* it stopped short of the last target and will not move
		 * (whether or not the store holds the node's target already):
		 * ask for where it is, so that it stops trying */
		out->stopped = in->actual;
		out->want = in->actual;
		return;
	}
	if (in->target >= out->stopped)
		out->stopped = 0;  /* the node gives it what it kept: asked anew */
	uint64_t freed = in->stopped_working_set / 8 > 8 * MIB ? in->stopped_working_set / 8 : 8 * MIB;
	if (in->working_set && in->working_set + freed <= in->stopped_working_set)
		out->stopped = 0;  /* it uses less than when it stopped: it may give more now */
	uint64_t floor = in->size / 100 * 35;
	if (in->guarantee > floor)
		floor = in->guarantee;
	/* what it uses, and an eighth more for what it needs to run */
	uint64_t ws = in->working_set + in->working_set / 8;
	if (ws > floor)
		floor = ws;
	if (out->stopped > floor)
		floor = out->stopped;
	/* the node's target for the VM, within the floor and the guest's
	 * size: it follows the target down in a shortage and up (deflating)
	 * when the pressure goes, not what the VM holds resident, which the
	 * balloon itself lowers */
	uint64_t want = in->target > floor ? in->target : floor;
	if (want >= in->size)
		want = in->sent ? in->size : 0;  /* all of it: a balloon never asked stays as it is */
	out->want = want;
}
