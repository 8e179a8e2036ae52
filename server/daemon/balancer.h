/* balancer: keeps the node within its limit by giving each VM a target.
 *
 * Ten times a second, on the server thread, it shares the node's memory
 * (the node limit less memsrv's own overhead) among the VMs: each first
 * gets its guarantee, the rest goes by shares, water-filled up to each VM's
 * limit and size.  An idle VM's shares count for less (ESX's idle memory
 * tax: an idle page costs 1/(1-tax) times an active one), so memory flows
 * to VMs that use it.  A VM is active when it faulted in the last few
 * seconds; how much of its resident memory is idle the sampler estimates
 * (sampler.c).  memsrv's own memory is its resident set, measured.  Each
 * VM's thread then evicts down to min(its limit, its target).  The
 * arithmetic is balancer_plan.c's, over plain numbers; this file gathers
 * them and acts on the result.
 */
#ifndef MEMSRV_BALANCER_H
#define MEMSRV_BALANCER_H

#include <stdbool.h>
#include <stdint.h>

struct server;

struct balance_report {
	uint64_t node_limit, overhead, assigned, used, guaranteed, entitled;
	bool overcommitted, overloaded;
	int64_t overcommit_margin, overload_margin;  /* bytes to spare; negative: short by */
};

/* Recomputes every VM's node target and acts on it: asks balloons, wakes
 * VMs over their targets.  The server thread's tick, and a changed limit. */
void balancer_run(struct server *srv);

/* Room for the balancer's numbers of one more VM: taken when a VM
 * attaches (which can be refused), so that the tick allocates nothing and
 * cannot fail.  0 or -ENOMEM. */
int balancer_reserve(struct server *srv);

/* What balancer_run() would find, without acting on it: for the requests
 * that only read (stats, check), which must not steer. */
void balancer_report(struct server *srv, struct balance_report *report);

#endif
