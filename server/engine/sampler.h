/* sampler: the working-set estimate and which pages are idle, by probation.
 *
 * How much of all its memory a VM uses, resident or not, memsrv learns by
 * testing pages, as ESX does (which resident pages it uses, the page tables
 * tell: accessed.h): once a second it draws a random sample of all of a
 * VM's pages.  The resident ones it unmaps (race-free, like an eviction)
 * but keeps their content raw in a small probation buffer: a page used
 * again faults and comes back from there at the cost of one fault, no
 * decompression, and counts as used.  The others (stored, zero, never
 * touched) it watches: a fault that brings one in counts it as used.  At
 * the end of the period the share of the sample that was used, times the
 * memory it was drawn from, estimates the VM's active memory (rising fast,
 * falling slowly); a VM that keeps faulting pages back is busy beyond what
 * it holds.  The pages nobody touched go back (or, over the limit, into the
 * store), marked idle for the policy: the first to leave.  VM thread only.
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

/* The faults for stored, zero or new pages in one period that make a VM
 * busy beyond what it holds: 1% of its resident pages, at least 16. */
#define STEADY_FAULTS(resident_pages) ((resident_pages) / 100 > 16 ? (resident_pages) / 100 : 16)

/* A fault (or the prefetch of a stream of faults) brought page (VM-wide
 * number) in: counts it used if it is in the sample.  One bit test when it
 * is not. */
void sampler_note_fault(struct vm *vm, uint64_t page);

/* A fault on a PROBATION page: put it back, mark it used.  0 or -errno
 * (EAGAIN: resync and retry). */
int sampler_fault(struct vm *vm, struct region *r, uint64_t idx, bool write);

/* Takes over page idx of r, found PROBATION in a state file an earlier
 * memsrv left (vm_state.c): it settles at the next tick like any other. */
void sampler_adopt(struct vm *vm, struct region *r, uint64_t idx);

/* The content kept for a PROBATION page (4 KiB). */
const void *sampler_page(const struct vm *vm, page_entry e);

/* The guest discarded a PROBATION page. */
void sampler_drop(struct vm *vm, page_entry e);

/* Puts every page in probation back (detach, shutdown).  Returns how many
 * could not be; a page the VMM discards meanwhile does not count. */
uint64_t sampler_restore_all(struct vm *vm);

#endif
