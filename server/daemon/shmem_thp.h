/* shmem_thp: whether a shared region's pages may be transparent huge
 * pages, which memsrv's 4 KiB hole punches must not meet.
 *
 * A punch into a huge folio splits it (verified on Linux 6.18), but one
 * that cannot be split (pinned) has the 4 KiB zeroed in place instead: the
 * VMM would read zeros without a fault.  So a region of a memfd or a tmpfs
 * file is evicted only where no huge folio can appear there: shmem THP off
 * for its filesystem, or the VMM's mapping of it marked MADV_NOHUGEPAGE
 * (libmemsrv marks it), which the kernel honours unless shmem_enabled is
 * "force".
 */
#ifndef MEMSRV_SHMEM_THP_H
#define MEMSRV_SHMEM_THP_H

#include <stddef.h>
#include <sys/types.h>

#include "vm.h"

/* Why region r (a memfd or tmpfs file, mapped by process pid) cannot be
 * evicted for huge folios, into why; NULL if it can. */
const char *shmem_thp_blocker(pid_t pid, const struct region *r, char *why, size_t len);

#endif
