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

/* One VM's balloon as the next request sees it. */
struct balloon_in {
	uint64_t size, guarantee;
	uint64_t working_set;  /* the sampler's estimate of what the guest uses; 0: none */
	uint64_t resident;     /* what memsrv holds resident for it now */
	uint64_t target;       /* what the node gives it (balance_plan's entitled) */
	uint64_t sent;         /* the last target asked; 0: none yet */
	uint64_t actual;       /* what the balloon left the guest (the VMM's report); 0: never told */
	bool actual_settled;   /* the last request and the last change of actual are a grace old */
	uint64_t stopped;      /* where the guest stopped short lately; 0: it did not (or long ago) */
	uint64_t stopped_working_set;  /* the working set when it stopped */
};

/* The balloon's part of a shortage. */
struct balloon_out {
	uint64_t want;     /* the target to ask for; == in->sent: nothing new to ask */
	uint64_t stopped;  /* where the guest stopped short (0: it has not); the
	                      store holds what it could not give */
	bool shortage;     /* resident is over the target */
};

/* Balloon first (ESX): the balloon is asked to leave the guest what the
 * node gives its VM (balance_plan's entitled), following it down in a
 * shortage and up again when the pressure goes, and never less than 35%
 * of its size (ESX's 65% at most), its guarantee, its working set and an
 * eighth more, nor less than where it stopped short of a target lately: a
 * guest that cannot give more is not squeezed into swapping (or its OOM
 * killer), it is asked for where it stopped and the store holds the rest.
 * Once its working set fell by an eighth (at least 8 MiB) since, it has
 * freed memory: it is asked again. */
void balloon_plan(const struct balloon_in *in, struct balloon_out *out);

#endif
