/* snapshot: a point-in-time image of a VM's memory (memsrv-ctl snapshot,
 * server/store/image.h), written by the VM's own thread while it goes on
 * serving faults, whether the guest is paused or running.
 *
 * The instant of the image is when every region has been write-protected.
 * From then on each page is saved once, as it was at that instant:
 *   - the walk goes through every page in order: a page out of residence
 *     by its entry (nothing for zero, the store's object as it is kept,
 *     each object once), a resident one read from the region's fd (never
 *     through a mapping) and compressed; then its chunk is unprotected;
 *   - a guest write to a page not saved yet faults WP and the page is
 *     saved before the write goes on (snapshot_before_write);
 *   - a page about to be filled by a fault or a prefetch is saved from
 *     what its entry names before the fill (snapshot_before_fill): a
 *     filled page is writable;
 *   - an eviction that unprotects its run saves the pages it left resident
 *     first (snapshot_before_unprotect).
 * A page the guest discards (Discard, balloon) during the walk reads as
 * zeros: its content is gone before memsrv hears of it.  Pages in
 * probation are saved at the start: the sampler puts them back without a
 * fill.  VM thread only.
 */
#ifndef MEMSRV_SNAPSHOT_H
#define MEMSRV_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "vm.h"

struct snapshot_result {
	uint64_t pages, zero_pages, samefilled_pages, object_pages;
	uint64_t objects, stored_objects, data_bytes, file_bytes;
	uint64_t duration_ns, writes_saved, max_pause_ns;
	/* --remote */
	char remote_holder[IMAGE_NAME_MAX];  /* the image's references in the cluster are under it */
	uint64_t remote_uploaded;   /* objects sent to the cluster */
	uint64_t remote_shared;     /* objects the cluster held already: referenced by name, no bytes sent */
	uint64_t remote_bytes;      /* bytes sent */
};

/* Writes the image of vm into dir (absolute, existing) as
 * dir/memory.img, serving faults meanwhile.  remote: every object goes to
 * the remote tier's cluster under a name of the image's own (the image's
 * holder, remote_holder), and the image names them: any node of that
 * cluster can resume it; the image is committed once a replica holds all.
 * 0, or -errno with why: the VM
 * cannot be write-protected (-EOPNOTSUPP), another process maps its RAM
 * (-EBUSY), it holds poisoned pages (-EIO), it went away (-ESHUTDOWN,
 * -ESRCH), or the store or the image failed.  On failure no image is left
 * and every page is writable again. */
int snapshot_run(struct vm *vm, const char *dir, bool remote, struct snapshot_result *res, char *why, size_t len);

/* The hooks, called only while vm->eng.snapshot is set. */
/* A WP fault, read at t_read, on page idx of r: saves it if it is not yet. */
void snapshot_before_write(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read);
/* Page idx of r is about to be filled (its entry still says from what). */
void snapshot_before_fill(struct vm *vm, struct region *r, uint64_t idx);
/* [first, first + count) of r is about to be unprotected by an eviction. */
void snapshot_before_unprotect(struct vm *vm, struct region *r, uint64_t first, uint64_t count);

#endif
