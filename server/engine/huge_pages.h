/* huge_pages: regions of huge pages (hugetlbfs) evicted a whole huge page
 * at a time, which the kernel itself cannot do: hugetlbfs never swaps.
 *
 * A huge page is stored as its 4 KiB parts, each a page like any other to
 * the store: an all-zero part costs nothing, a part the store holds
 * already is shared.  The parts live in the region's parts table (r->parts,
 * one entry per 4 KiB of the region: PAGE_ZERO or PAGE_STORED), and the
 * region's own entry for the huge page is PAGE_STORED with no object
 * (handle 0): "in its parts".  Nothing else of a huge page is ever held
 * apart (no probation, no clean copy, no image, no migration).
 *
 * Eviction keeps evict.c's order: protect the huge page, read it from the
 * fd, write the parts' entries, then the page's entry, punch, unprotect.
 * A fault gathers the parts into one buffer and places the whole huge page
 * in one UFFDIO_COPY; once it is in, the parts stay as a kept copy
 * (huge_keep_parts).  So at any instant a huge page is in the fd or in its
 * parts, and a restart (vm_state.c) lets go of the parts of every page
 * whose entry does not say STORED.
 */
#ifndef MEMSRV_HUGE_PAGES_H
#define MEMSRV_HUGE_PAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

struct evict_result;

#define HUGE_PART_BYTES 4096u
/* Huge pages evicted are of 2 MiB at most: a fault on a 1 GiB page would
 * move all of it (hello.c refuses to evict those). */
#define HUGE_EVICT_MAX_BYTES (2u << 20)
#define HUGE_MAX_PARTS (HUGE_EVICT_MAX_BYTES / HUGE_PART_BYTES)

static inline bool region_is_huge(const struct region *r) { return r->page_size > HUGE_PART_BYTES; }

/* Parts per page of r (1 for a region of 4 KiB pages). */
static inline uint64_t region_parts(const struct region *r) { return r->page_size / HUGE_PART_BYTES; }

/* Whether entry e of a huge region's table is held in its parts. */
static inline bool huge_in_parts(page_entry e)
{
	return pe_state(e) == PAGE_STORED && pe_handle(e) == 0;
}

/* Evicts the resident huge page idx of r.  Returns the 4 KiB parts evicted
 * (all of them, or 0 with *err set: the store is full, the fd or uffd
 * failed; the page stays resident).  res counts parts. */
uint64_t huge_evict(struct vm *vm, struct region *r, uint64_t idx, struct evict_result *res, int *err);

/* The content of stored huge page idx of r into buf (r->page_size bytes),
 * part by part, swap read synchronously.  0 or why not (STORE_ERR_*, or a
 * read's -errno): the page stays stored. */
int huge_gather(struct vm *vm, const struct region *r, uint64_t idx, void *buf);

/* Huge page idx of r is back in the VMM: its parts stay as its kept copy
 * (clean entries: pe_is_clean), which makes the next eviction cheap: a
 * part that did not change is found in the store by its content and
 * shared with its old copy rather than compressed again.  The kept copy
 * goes at that eviction, or whenever the page is let go. */
void huge_keep_parts(struct region *r, uint64_t idx);

/* Lets go of the parts of huge page idx of r (their entries first, then
 * the store's objects).  Nothing to do where it has none. */
void huge_release(struct vm *vm, struct region *r, uint64_t idx);

/* UFFDIO_COPY of huge page idx said EEXIST: whether a page is really there
 * (Linux says EEXIST too when no huge page could be allocated), and if the
 * file holds zeros where ours is not, ours put in (through a mapping of
 * the file: hugetlbfs has no write()).  0, or -ENOSPC (no free huge
 * page) or another -errno. */
int huge_reappeared(struct vm *vm, const struct region *r, uint64_t idx, const void *ours);

/* Writes page idx's content (buf) into r's file, through a mapping of it.
 * 0 or -errno. */
int huge_write_file(const struct region *r, uint64_t idx, const void *buf);

#endif
