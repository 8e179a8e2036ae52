/* sampler: the working-set estimate and the reference bits, by probation.
 *
 * memsrv cannot read a guest's accessed bits, so it tests pages instead, as
 * ESX does: once a second it unmaps a random sample of a VM's resident pages
 * (race-free, like an eviction) but keeps their content raw in a small
 * probation buffer.  A page used again faults and comes back from there at
 * the cost of one fault, no decompression, and counts as used.  At the end
 * of the period the share of the sample that was used estimates the VM's
 * active memory (rising fast, falling slowly), and the pages nobody touched
 * go back (or, over the limit, into the store) with their reference bits
 * cleared.  VM thread only.
 */
#ifndef MEMSRV_SAMPLER_H
#define MEMSRV_SAMPLER_H

#include <stdint.h>

#include "vm.h"

#define SAMPLE_PAGES 100  /* per VM per second (ESX samples 100 pages per VM) */

int sampler_init(struct vm *vm);
void sampler_fini(struct vm *vm);

/* Ends the period (counts, estimates, settles the untouched) and starts the next. */
void sampler_tick(struct vm *vm);

/* A fault on a PROBATION page: put it back, mark it used.  0 or -errno
 * (EAGAIN: resync and retry). */
int sampler_fault(struct vm *vm, struct region *r, uint64_t idx, bool write);

/* Takes over page idx of r, found PROBATION in a state file an earlier
 * memsrv left (vm_state.c): it settles at the next tick like any other. */
void sampler_adopt(struct vm *vm, struct region *r, uint64_t idx);

/* The guest discarded a PROBATION page. */
void sampler_drop(struct vm *vm, page_entry e);

/* Puts every page in probation back (detach, shutdown).  Returns how many
 * could not be; a page the VMM discards meanwhile does not count. */
uint64_t sampler_restore_all(struct vm *vm);

#endif
