/* uffd: the userfaultfd ioctls memsrv issues, errors classified at the boundary.
 *
 * Each returns 0 or -errno, and uffd_classify() says what the -errno means
 * (CRIU's uffd_check_op_error() is the model); uffd_op.h retries through
 * EAGAIN with one rule for every caller.
 */
#ifndef MEMSRV_UFFD_H
#define MEMSRV_UFFD_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "uffd_compat.h"

/* Copies len bytes from src to dst in the VMM; *done gets the bytes placed.
 * mode: UFFDIO_COPY_MODE_DONTWAKE (wake no one), UFFDIO_COPY_MODE_WP (the
 * pages arrive write-protected: a write faults WP). */
int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, uint64_t mode, uint64_t *done);
/* Maps zero pages at [dst, dst+len) (anonymous and shmem memory only). */
int uffd_zeropage(int uffd, uint64_t dst, uint64_t len, bool dontwake, uint64_t *done);
int uffd_wake(int uffd, uint64_t start, uint64_t len);
/* Marks [start, start+len) poisoned in the VMM and wakes its waiters: every
 * access gets SIGBUS (BUS_MCEERR_AR where the kernel has memory-failure
 * handling) until the range is zapped (MADV_DONTNEED, munmap), after which
 * it faults MISSING again.  Needs UFFD_FEATURE_POISON (Linux 6.6). */
int uffd_poison(int uffd, uint64_t start, uint64_t len);
/* The kernel refuses DONTWAKE together with protect (EINVAL). */
int uffd_writeprotect(int uffd, uint64_t start, uint64_t len, bool protect, bool dontwake);

/* What the result of a uffd ioctl means to its caller. */
enum uffd_outcome {
	UFFD_PLACED,     /* 0: done (placed, woken, protected, poisoned) */
	UFFD_EXISTS,     /* -EEXIST: a page is there already (an earlier
			  * fault-around, a racing fault, another mapping of the
			  * file): nothing placed, and the waiters were not woken */
	UFFD_RETRY,      /* -EAGAIN: the VMM's mappings are changing under an
			  * unread REMOVE/UNMAP event: read events, then again */
	UFFD_GONE,       /* -ESRCH: the VMM's address space is gone (process
			  * exited); -ENOENT: the range is no longer registered
			  * (unmapped); -EFAULT: its page tables are gone with
			  * it: no ioctl on this VMM will succeed again */
	UFFD_ERROR,      /* anything else (-ENOMEM: no memory for the page,
			  * -EINVAL, -ENOTTY...): a real failure */
	UFFD_DISCARDED,  /* never from uffd_classify(): uffd_op_run() gave up
			  * because the resync changed the page (a REMOVE
			  * discarded it): the operation is no longer wanted,
			  * and that is no failure */
};

/* The one reading of a uffd ioctl's 0 or -errno.  -ENOSPC is an error, not
 * "gone": Linux before 4.18 said ENOSPC for a dead mm, later ones say ESRCH,
 * and memsrv needs far newer ones (UFFD_FEATURE_POISON: 6.6). */
static inline enum uffd_outcome uffd_classify(int err)
{
	switch (err) {
	case 0:
		return UFFD_PLACED;
	case -EEXIST:
		return UFFD_EXISTS;
	case -EAGAIN:
		return UFFD_RETRY;
	case -ESRCH:
	case -ENOENT:
	case -EFAULT:
		return UFFD_GONE;
	default:
		return UFFD_ERROR;
	}
}

/* True for errors that mean "this VMM is gone", not "retry". */
static inline bool uffd_vmm_gone(int err) { return uffd_classify(err) == UFFD_GONE; }

/* The outcome's name, for logs and tests. */
const char *uffd_outcome_name(enum uffd_outcome o);

/* "uffd" when fd is a userfaultfd, checked through /proc/self/fd. */
bool uffd_is_userfaultfd(int fd);

#endif
