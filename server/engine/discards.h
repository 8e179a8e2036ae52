/* discards: REMOVE and UNMAP events and the VMM's Discard requests, applied
 * to a VM's page tables (VM thread only).  Only a Discard, or any of them on
 * anonymous memory, drops guest data; see discards.c for why.
 */
#ifndef MEMSRV_DISCARDS_H
#define MEMSRV_DISCARDS_H

#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

enum discard_kind {
	DISCARD_REMOVE_EVENT,  /* UFFD_EVENT_REMOVE: MADV_DONTNEED or MADV_REMOVE */
	DISCARD_UNMAP_EVENT,   /* UFFD_EVENT_UNMAP: munmap or mremap */
	DISCARD_REQUESTED,     /* the VMM's Discard: the guest gave the pages back */
};

/* Applies one of them to the pages of [start, end) in the VM's regions. */
void discards_apply(struct vm *vm, uint64_t start, uint64_t end, enum discard_kind kind);

/* Applies the Discards the VMM sent before the REMOVE event just read.
 * memsrv_discard() sends its Discard, then zaps the range, and the zap
 * returns only once the VM thread read its event: waiting here until the
 * server thread dispatched every record sent before (at most 2 s) puts
 * their Discards in the job queue, and applying them now puts them before
 * any fault read after the event — a page the guest touches once the call
 * returned reads zeros, never the copy memsrv held. */
void discards_apply_sent(struct vm *vm);

/* Whether [start, start + len) is whole pages inside one region (any thread:
 * regions do not change after attach). */
bool discards_range_valid(const struct vm *vm, uint64_t start, uint64_t len);

#endif
