/* fault / evict / vm_thread: the work of a VM's own thread.
 *
 * fault.c reads the VM's userfaultfd and resolves faults and events;
 * evict.c takes pages out of residence race-free (write-protect, pread,
 * store, punch); vm_thread.c is the thread's loop and runs its jobs.
 * All of it runs only on the VM thread.
 *
 * The engine's private header: it is in engine/private/, which only the
 * engine's own sources see (engine/meson.build); the daemon uses vm.h.
 */
#ifndef MEMSRV_FAULT_H
#define MEMSRV_FAULT_H

#include <stdint.h>

#include "vm.h"

void *vm_thread_main(void *arg);

/* Reads every message the uffd has ready into the pending ring without
 * handling it.  Returns the number read or -errno. */
int fault_drain(struct vm *vm);

/* Whether the uffd has a message to read, by a lockless poll.  A read that
 * finds nothing still takes the locks of the uffd's fault queue, which
 * every faulting vCPU needs to queue its fault: what checks often polls. */
bool fault_uffd_ready(const struct vm *vm);

/* Whether a message waits to be handled: in the pending ring, or in the
 * uffd (then read into the ring). */
bool fault_waits(struct vm *vm);

/* Handles REMOVE/UNMAP events queued in the pending ring (not faults). */
void fault_apply_events(struct vm *vm);

enum fault_source {
	FAULT_FROM_NEVER, FAULT_FROM_ZERO, FAULT_FROM_STORE, FAULT_FROM_SWAP, FAULT_FROM_REMOTE, FAULT_FROM_IMAGE, FAULT_FROM_RESIDENT
};

/* Counts a resolved fault and its latency from t_read, by where the page came from. */
void fault_record(struct vm *vm, enum fault_source source, uint64_t t_read);

/* Places a page memsrv held (STORED, or IMAGE: from the image the VM was
 * resumed from) into the VMM: accounts it resident, copies it in (waking
 * the faulting threads) and drops the store's reference of a STORED one,
 * unless it goes in clean (a read fault: write false; clean_pages.h).
 * 0 or -errno (EAGAIN: resync and retry; the entry is as it was). */
int fault_place_held(struct vm *vm, struct region *r, uint64_t idx, const void *page, bool write);

/* UFFDIO_COPY of page idx, whose content memsrv held (ours), found it in
 * the file already: another mapping of the memfd filled the hole.  A read
 * there left zeros: ours goes back in; a write left data: it stays.  The
 * caller wakes the waiters.  0 or -errno. */
int fault_reappeared(struct vm *vm, struct region *r, uint64_t idx, const void *ours);

/* Accounts count pages from first as resident, for the page table and the
 * policy (only the faulting page counts as used).  A stored or probation
 * page's entry keeps naming its content (pe_arriving) until
 * fault_arrived(). */
void fault_mark_resident(struct vm *vm, struct region *r, uint64_t first, uint64_t count);

/* The copy of page idx went in: its entry stops naming where it came from
 * (the caller drops the store's reference after this, never before). */
void fault_arrived(struct region *r, uint64_t idx);

/* Undoes fault_mark_resident() for one page whose copy did not go in: its
 * entry goes back to was. */
void fault_unmark_resident(struct vm *vm, struct region *r, uint64_t idx, page_entry was);

/* prefetch.c: after a stored or zero fault on idx was resolved, places the
 * pages after it if the faults form a sequential stream. */
void prefetch_after_fault(struct vm *vm, struct region *r, uint64_t idx);

/* The VMM's address space is gone (err says how): stop issuing ioctls. */
void fault_vmm_gone(struct vm *vm, int err);

/* Puts a fault read earlier (at t_read) back at the end of the pending
 * ring, to be served again (migrate_in.c); false when the ring is full. */
bool fault_requeue(struct vm *vm, const struct uffd_msg *m, uint64_t t_read);

/* Handles the messages already in the pending ring. */
void fault_serve_pending(struct vm *vm);

/* Drains and serves everything the uffd has ready, without blocking. */
void fault_serve_available(struct vm *vm);

/* Copies every STORED (or IMAGE) page back into the VMM.  Returns the number that
 * could not be restored; *restored gets the number that were.  A page the
 * VMM discards meanwhile is neither. */
uint64_t fault_restore_all(struct vm *vm, uint64_t *restored);


/* Protects or unprotects [addr, addr+len) through EAGAIN; 0 or -errno,
 * -EINTR when the VM stops meanwhile or the VMM's events keep coming (a
 * stream of discards): the run ends, and what stayed protected and
 * resident is unprotected by its next write's fault. */
int evict_writeprotect(struct vm *vm, uint64_t addr, uint64_t len, bool protect);

/* The entry that holds one page's content read for eviction: PAGE_ZERO, or
 * PAGE_STORED with its copy put in the store (*stored_bytes grows by what
 * that copy costs; nothing when a twin held it already).  0 or the store's
 * -errno (full, for now: EBUSY), with *entry untouched. */
int evict_store_page(struct vm *vm, const void *page, size_t len, page_entry *entry, uint64_t *stored_bytes);

struct evict_result {
	uint64_t pages, zero_pages, stored_pages, stored_bytes;
};

/* Evicts up to want_pages resident pages, advancing the clock hand and
 * scanning at most *scan_budget pages (decremented); with yield, stops
 * after a run as soon as a fault waits (the rest stay first in line).
 * Returns 0 or -errno (the store is full, or the fd refused a read or
 * punch: pages stay resident). */
int evict_pages(struct vm *vm, uint64_t want_pages, uint64_t *scan_budget, bool yield, struct evict_result *res);

/* Evicts so that bytes more can be made resident within the VM's limit.
 * 0 when there is room, -ENOSPC when the limit cannot hold. */
int evict_make_room(struct vm *vm, uint64_t bytes);

/* While the VM thread has nothing else to do: evicts down to a little
 * below the limit, at most max_pages, one run at a time, and stops as soon
 * as a fault comes. */
void evict_keep_headroom(struct vm *vm, uint64_t max_pages);

/* Unmaps page idx of r race-free like an eviction, keeping its content in
 * keep (one page) and the page PROBATION with handle slot.  0 or -errno. */
int evict_soft(struct vm *vm, struct region *r, uint64_t idx, uint32_t slot, void *keep);

#endif
