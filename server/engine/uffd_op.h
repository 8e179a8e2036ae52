/* uffd_op: one userfaultfd operation of a VM, run through EAGAIN by one
 * rule for every caller (faults, restores, swap-ins, poison, eviction).
 *
 * An ioctl says EAGAIN while an event the VMM queued (REMOVE, UNMAP) is
 * unread: the VM thread reads it, applies it (the resync), and tries
 * again.  The resync may change the very page the operation was for (a
 * REMOVE discarded it): then the operation is no longer wanted, which is
 * no failure.  The VM stopping or its VMM gone ends the retries too:
 * closing the uffd wakes every faulting thread.  VM thread only.
 */
#ifndef MEMSRV_UFFD_OP_H
#define MEMSRV_UFFD_OP_H

#include <stdbool.h>
#include <stdint.h>

#include "uffd.h"
#include "vm.h"

/* A kind of operation, a static const of its caller's (so that the fast
 * path's call is a direct one); arg says which page or range. */
struct uffd_op {
	/* the operation: an ioctl and what goes with it; 0 or -errno */
	int (*run)(struct vm *vm, void *arg);
	/* after a resync: whether the operation is still wanted (its page's
	 * entry is what it was); NULL: always, run re-reads the page */
	bool (*wanted)(struct vm *vm, void *arg);
	/* on EAGAIN read the events but leave them unapplied: an eviction
	 * run in flight applies them after it is done (evict.c).  When the
	 * events read fill the pending ring, it gives up (UFFD_RETRY) */
	bool read_only;
};

/* uffd_op_run() after op->run said err (not 0). */
enum uffd_outcome uffd_op_retry(struct vm *vm, const struct uffd_op *op, void *arg, int err, int *errp);

/* Runs op.  On EAGAIN reads and applies the pending events (counted in
 * eagain_retries) and runs it again, until it says something else, or the
 * VM stops or its VMM is gone or a read_only op's events fill the ring
 * (UFFD_RETRY: not done, no failure), or
 * op->wanted says no (UFFD_DISCARDED: no failure).  Otherwise what
 * uffd_classify() says of its result; *err gets the last 0 or -errno.
 * A success is one call of op->run, a direct one when op is a static
 * const the compiler sees (this is inline for that). */
static inline enum uffd_outcome uffd_op_run(struct vm *vm, const struct uffd_op *op, void *arg, int *err)
{
	int ret = op->run(vm, arg);
	if (__builtin_expect(ret == 0, 1)) {
		*err = 0;
		return UFFD_PLACED;
	}
	return uffd_op_retry(vm, op, arg, ret, err);
}

/* UFFDIO_WRITEPROTECT as an operation for uffd_op_run(): arg is a
 * struct uffd_wp_range.  Waiters are woken (the kernel refuses DONTWAKE
 * with protect). */
struct uffd_wp_range {
	uint64_t addr, len;
	bool protect;
};
int uffd_op_writeprotect(struct vm *vm, void *arg);

/* Write-protects (or unprotects) pages [first, first + count) of r of 4 KiB
 * through EAGAIN; nothing to do when nothing maps them (the region is
 * unmapped, the VMM gone).  0, -ESHUTDOWN (the VM stops), -ESRCH, or the
 * ioctl's -errno (a VMM found gone is noted: fault_vmm_gone). */
int uffd_op_protect_pages(struct vm *vm, struct region *r, uint64_t first, uint64_t count, bool protect);

/* The one rule for an operation that did not go in, o and err from
 * uffd_op_run(): UFFD_GONE stops the VM's ioctls (fault_vmm_gone);
 * UFFD_PLACED, UFFD_RETRY (the VM stops) and UFFD_DISCARDED are no
 * failure; anything else is counted in fault_errors and logged as "what at
 * addr".  Returns true for a failure. */
bool uffd_op_failed(struct vm *vm, enum uffd_outcome o, int err, const char *what, uint64_t addr);

#endif
