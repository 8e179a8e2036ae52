/* poison: what memsrv does with a page it cannot bring back.
 *
 * A page whose content is lost (swap handed back other data or less of it,
 * a cache object does not decompress, the kernel cannot allocate the page)
 * must neither keep the VM waiting forever nor be read as zeros where the
 * guest's data was.  The kernel's answer to a page it cannot bring back is
 * SIGBUS with si_code BUS_MCEERR_AR, which QEMU turns into a machine check
 * the guest kernel handles; UFFDIO_POISON (Linux 6.6) gives the VMM the
 * same for a page served through its userfaultfd.  The page table keeps the
 * page POISONED, so a fault after a zap (MADV_DONTNEED drops the kernel's
 * marker) is poisoned again.  VM thread only.
 */
#ifndef MEMSRV_POISON_H
#define MEMSRV_POISON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm.h"

/* How often a failing fault or swap read is tried before its page is
 * poisoned: an I/O error or a shortage of memory may pass, bad content
 * (store_err_final) never does. */
#define POISON_TRIES 5

/* Whether err is worth another try before poisoning. */
bool poison_worth_retry(const struct vm *vm, int err);

/* Milliseconds a swap read waits before try number tries + 1 (tries >= 1):
 * 100, 200, 400, 800; the vCPU waits, the VM thread serves others. */
unsigned poison_backoff_ms(unsigned tries);

/* Sleeps before try number tries + 1 of a placement: 2, 4, 8, 16 ms, short
 * because the VM thread serves no other fault meanwhile. */
void poison_pause(unsigned tries);

/* Why page idx of r, in state from (PAGE_STORED, PAGE_IMAGE: its content
 * was being read from the store or the VM's image; otherwise it was being
 * placed), could not be brought back, as a
 * phrase for the log: "checksum mismatch ...", "no free 2 MiB huge pages ...". */
const char *poison_cause(const struct region *r, enum page_state from, int err, char *buf, size_t len);

/* Page idx of r is lost for cause: poisons it in the VMM (waking every
 * thread waiting on it: they get SIGBUS), marks it POISONED, drops what the
 * table held for it, and the first time counts and logs it with cause.
 * Without UFFD_FEATURE_POISON the fault is left unresolved, loudly: never
 * zeros.  A page the VMM discards meanwhile is woken instead.  Returns
 * 0 or -errno of the ioctl when it failed for good (logged, and counted
 * in fault_errors unless the VMM is gone). */
int poison_page(struct vm *vm, struct region *r, uint64_t idx, const char *cause);

/* A fault on a page already POISONED (the kernel's marker was zapped):
 * poisons it again, without a new log line.  0 or -errno. */
int poison_refault(struct vm *vm, struct region *r, uint64_t idx);

#endif
