/* fault / evict: the work of a VM's own thread.
 *
 * fault.c reads the VM's userfaultfd and resolves faults and events;
 * evict.c takes pages out of residence race-free (write-protect, pread,
 * store, punch).  Both run only on the VM thread.
 */
#ifndef MEMSRV_FAULT_H
#define MEMSRV_FAULT_H

#include <stdint.h>

#include "vm.h"

/* Busy-poll the uffd this long after serving faults before sleeping in poll:
 * a fault that comes soon after another skips a wakeup (DESIGN.md: 63 -> 17 us). */
extern uint64_t fault_spin_ns;

void *vm_thread_main(void *arg);

/* Reads every message the uffd has ready into the pending ring without
 * handling it.  Returns the number read or -errno. */
int fault_drain(struct vm *vm);

/* Handles REMOVE/UNMAP events queued in the pending ring (not faults). */
void fault_apply_events(struct vm *vm);

/* Drains and serves everything the uffd has ready, without blocking. */
void fault_serve_available(struct vm *vm);

struct evict_result {
	uint64_t pages, zero_pages, stored_pages, stored_bytes;
};

/* Evicts up to want_pages resident pages, advancing the clock hand and
 * scanning at most *scan_budget pages (decremented).  Returns 0 or -errno
 * (the store is full, or the fd refused a read or punch: pages stay resident). */
int evict_pages(struct vm *vm, uint64_t want_pages, uint64_t *scan_budget, struct evict_result *res);

/* Evicts so that bytes more can be made resident within the VM's limit.
 * 0 when there is room, -ENOSPC when the limit cannot hold. */
int evict_make_room(struct vm *vm, uint64_t bytes);

/* Pages in all of the VM's regions: one full turn of the clock hand. */
uint64_t vm_total_pages(const struct vm *vm);

#endif
