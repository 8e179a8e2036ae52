/* victim_runs: which of the policy's victims evict.c takes out together.
 *
 * The policy names pages one at a time; eviction write-protects, reads and
 * punches whole runs of neighbours at once (EVICT_RUN_PAGES at most).  So
 * it takes a batch of victims, keeps those the page table says are
 * RESIDENT (the policy's books follow the table; a mismatch is skipped,
 * never evicted), sorts them, and cuts the batch into runs of consecutive
 * pages, none crossing the end of its region.  VM thread only.
 */
#ifndef MEMSRV_VICTIM_RUNS_H
#define MEMSRV_VICTIM_RUNS_H

#include <stdint.h>

#include "vm.h"

/* Takes victims from vm's policy into victims[], at most max, each one
 * taken spending one unit of *scan_budget (a skipped one too), and sorts
 * them.  Returns how many it kept: 0 when the policy or the budget ran out. */
unsigned victims_take(struct vm *vm, uint64_t *victims, unsigned max, uint64_t *scan_budget);

/* The length of the run of consecutive pages that starts at victims[i]
 * (sorted, n in all), cut at region_end: the VM-wide number of the first
 * page after the region holding victims[i].  At least 1. */
unsigned victims_run_length(const uint64_t *victims, unsigned n, unsigned i, uint64_t region_end);

/* Puts the victims that are still RESIDENT back on the policy's books,
 * first in line, and gives back the budget they spent: a later try takes
 * them again.  For what a failed run left behind, and what an eviction
 * that gave way to a fault did not reach. */
void victims_return(struct vm *vm, const uint64_t *victims, unsigned n, uint64_t *scan_budget);

#endif
