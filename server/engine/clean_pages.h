/* clean_pages: a page faulted back from the store keeps its stored copy
 * for as long as the guest only reads it.
 *
 * A read fault places it write-protected (UFFDIO_COPY_MODE_WP) and its
 * entry goes on naming the object it came from (RESIDENT, noted STORED:
 * pe_is_clean()), holding that reference.  The first write faults WP, and
 * the copy is dropped before the write is let through.  Evicting a clean
 * page again is a punch: no read, no compression, no hash (evict.c).  The
 * kernel's zram frees its copy on swap-in and compresses the page again.
 *
 * The one rule that keeps a copy true: a clean page is write-protected.
 * Whatever unprotects a range, or takes a page out of residence any other
 * way than a clean eviction, forgets the copies in it first.  Writes the
 * userfaultfd cannot see (write(2) on the memfd, another process's own
 * mapping before mappings.c finds it) are outside it, as they are outside
 * any eviction.  VM thread only.
 */
#ifndef MEMSRV_CLEAN_PAGES_H
#define MEMSRV_CLEAN_PAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

/* --clean-copies: whether read faults keep copies at all (the VM threads
 * read it; set before any starts). */
extern bool clean_copies_enabled;

/* Whether a page of r placed now for a fault (write: a write fault) is to
 * be placed clean: copies are on, the fault only reads, and r is evicted
 * through write protection. */
bool clean_page_wanted(const struct vm *vm, const struct region *r, bool write);

/* Whether the copy object id makes is worth keeping beside its page: one
 * in swap or shared is; one only this page holds in the cache is, if it
 * is compressed (a raw one would cost a second page) and the cache has
 * room to spare (below writeback's low watermark, store_has_spare_room):
 * near its budget, the room goes to the pages still to evict. */
bool clean_copy_worth(const struct vm *vm, obj_id id);

/* A RESIDENT page of r stops being clean, if it was: its entry no longer
 * names the object, and the reference goes.  It stays resident. */
void clean_page_forget(struct vm *vm, struct region *r, uint64_t idx);

/* The same for every page of [first, first + count): before unprotecting. */
void clean_pages_forget(struct vm *vm, struct region *r, uint64_t first, uint64_t count);

#endif
