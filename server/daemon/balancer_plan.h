/* balancer_plan: the balancer's arithmetic, over plain numbers.
 *
 * Given each VM's size, limit, guarantee, shares, activity and resident
 * memory, and the node's limit, memsrv's own overhead and the idle tax, it
 * says what each VM is entitled to and how close the node is to its limit.
 * It reads no clock, no VM, no /proc and changes nothing but its output, so
 * the unit suite can test every rule (balancer.c gathers the inputs and acts
 * on the entitlements).
 */
#ifndef MEMSRV_BALANCER_PLAN_H
#define MEMSRV_BALANCER_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balancer.h"  /* struct balance_report */

/* One VM as the plan sees it: inputs, then what the plan fills in. */
struct plan_vm {
	uint64_t size, limit;      /* limit 0: none */
	uint64_t guarantee;
	uint64_t resident;
	uint32_t shares;
	bool active;               /* faulted recently */
	bool has_working_set;      /* the sampler has an estimate ... */
	uint32_t working_set_permille;  /* ... of this share of its resident memory in use */

	uint64_t entitled;         /* out: its share of the node (its guarantee at least, its cap at most) */
	/* the plan's own bookkeeping */
	uint64_t cap, floor;
	double weight;
	bool full;
};

struct plan_node {
	uint64_t limit;     /* 0: none: nothing is shared, each VM is entitled to its guarantee, no margins */
	uint64_t overhead;  /* memsrv's own memory, counted against the limit */
	double idle_tax;    /* 0..0.99 */
};

/* Fills vms[i].entitled and *r.  Guarantees first (whatever they leave),
 * the rest water-filled by weight up to each VM's cap (min of limit and
 * size), a VM at its cap handing its surplus on.  A VM's weight is its
 * shares with its idle part (all of it when idle, 1 - working-set share
 * when active and sampled) counted at (1 - idle_tax). */
void balance_plan(const struct plan_node *node, struct plan_vm *vms, size_t n, struct balance_report *r);

#endif
