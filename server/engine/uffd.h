/* uffd: the userfaultfd ioctls memsrv issues, errors classified at the boundary.
 *
 * Each returns 0 or -errno.  The errors a caller must tell apart:
 *   -EEXIST  the page is already there (an earlier fault-around or a racing
 *            fault filled it): wake the waiter, nothing else to do
 *   -EAGAIN  the VMM's address space is changing (an unread REMOVE/UNMAP
 *            event): read events, then retry
 *   -ESRCH   the VMM's address space is gone (process exited)
 *   -ENOENT  the range is no longer registered (unmapped)
 */
#ifndef MEMSRV_UFFD_H
#define MEMSRV_UFFD_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "uffd_compat.h"

/* Copies len bytes from src to dst in the VMM; *done gets the bytes placed. */
int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, bool dontwake, uint64_t *done);
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

/* True for errors that mean "this VMM is gone", not "retry". */
static inline bool uffd_vmm_gone(int err) { return err == -ESRCH || err == -ENOENT || err == -EFAULT; }

/* "uffd" when fd is a userfaultfd, checked through /proc/self/fd. */
bool uffd_is_userfaultfd(int fd);

#endif
