/* accessed: reference bits for reads too, from the VMM's page tables.
 *
 * memsrv sees a use of a page only when it faults in or a write hits write
 * protection; a resident page that the guest only reads leaves no trace,
 * so every policy acts close to FIFO.  Where the kernel allows it, memsrv
 * gets the use the way a hardware reference bit gives it to the kernel:
 * when a policy clears a page's reference bit, memsrv takes the page out of
 * the VMM's page table (process_madvise(MADV_PAGEOUT): with no swap
 * configured a shmem page stays in its memfd, only the mapping goes, and a
 * write-protected page keeps its uffd-wp marker, so a write still faults
 * WP: tests/integration/test_clean_pages.c).  The guest's next access
 * maps it again with a minor fault the kernel serves alone, no round trip
 * to memsrv; PAGEMAP_SCAN (PAGE_IS_PRESENT) on /proc/PID/pagemap then shows
 * which of those pages were used, and their bits are set again.
 *
 * Only pages the guest used since they came are watched (POLICY_SEEN): a
 * neighbour a fault or a stream's prefetch placed is not unmapped before
 * its one read.  Laps over the VM's pages run on the VM thread between
 * faults, in bounded steps, paced by evictions (and a second after the last
 * one, for the policies that clear bits on their tick).
 *
 * Off by default (--accessed-bits: its cost against what it saves,
 * docs/benchmarks.md), and off where it cannot work: swap configured
 * (MADV_PAGEOUT would write shmem out), hugetlbfs or anonymous regions, a
 * kernel before 6.7 (no PAGEMAP_SCAN), no CAP_SYS_NICE.
 */
#ifndef MEMSRV_ACCESSED_H
#define MEMSRV_ACCESSED_H

#include <stdbool.h>

#include "vm.h"

/* --accessed-bits (settings.h); off by default: docs/benchmarks.md. */
extern bool accessed_bits_enabled;

/* vm->accessed_state: on, or why not (VmInfo.accessed_off). */
enum {
	ACCESSED_ON,
	ACCESSED_OFF_SETTING,
	ACCESSED_OFF_NOT_EVICTABLE,
	ACCESSED_OFF_BACKING,
	ACCESSED_OFF_KERNEL,
	ACCESSED_OFF_SWAP,
};

/* What VmInfo says of a state: NULL when on. */
const char *accessed_off_reason(int state);

/* Sets the VM up, or leaves it without (logged at info, why).  VM thread
 * or before it starts. */
void accessed_init(struct vm *vm);
void accessed_fini(struct vm *vm);

/* A bounded step of a lap over the VM's pages, when one is under way or
 * due (cheap when not): the watched pages of a stretch found mapped again
 * get their bits set, then its pages whose bits are clear are unmapped.
 * For the quiet moments between faults. */
void accessed_step(struct vm *vm);

#endif
