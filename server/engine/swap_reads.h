/* swap_reads: faults waiting on a read from swap (or from the VM's memory
 * image: image_pages.h), one io_uring per VM.
 *
 * A fault on a page in swap does not block the VM thread: the read is
 * submitted to the VM's ring and the thread goes on serving other faults.
 * When the ring's eventfd fires, swap_reads_reap() decodes what came in and
 * places the page, waking every thread that faulted on it.  VM thread only.
 */
#ifndef MEMSRV_SWAP_READS_H
#define MEMSRV_SWAP_READS_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "vm.h"

/* 0, or -errno: then every fault reads swap synchronously. */
int swap_reads_init(struct vm *vm);
/* Waits for the reads in flight and releases them. */
void swap_reads_exit(struct vm *vm);

/* The eventfd to poll (-1 without a ring). */
int swap_reads_fd(const struct vm *vm);

/* True when a read for this page is in flight. */
bool swap_reads_pending(const struct vm *vm, const struct region *r, uint64_t idx);

/* A fault on page idx, read at t_read: true when a read for the page is in
 * flight already (a readahead's, which then completes as this fault). */
bool swap_reads_join(struct vm *vm, const struct region *r, uint64_t idx, uint64_t t_read, bool write);

/* Page idx's read went to the cluster: if the fault continues a
 * sequential stream, the pages after it that are in the cluster too are
 * read now as well (a window that doubles, as prefetch.c's), in at most
 * half the VM's reads, each placed when it comes. */
void swap_reads_readahead(struct vm *vm, struct region *r, uint64_t idx);

/* Submits rd (from store_fetch) for the fault on page idx read at t_read
 * (write: a write fault, not to be placed clean).  0, or -EBUSY/-errno:
 * the caller then reads synchronously. */
int swap_reads_submit(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read, bool write,
		      const struct store_read *rd);

/* The same for a read of object index of the VM's image (image_pages.c),
 * at io; or, named, the page of that digest from the remote tier (an
 * image whose objects are in the cluster). */
int swap_reads_submit_image(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read, uint64_t index,
			    const struct swap_io *io, const struct remote_digest *named);

/* True when completions wait to be reaped (no system call). */
bool swap_reads_ready(const struct vm *vm);

/* Completes every read that has finished; retries failed ones that are due.
 * Returns how long (ms) until a retry is due, or -1 if none waits. */
int swap_reads_reap(struct vm *vm);

#endif
