/* page_state: where each guest page of a region is, packed in 64 bits.
 *
 *   bits 0..2   enum page_state
 *   bits 3..15  unused
 *   bits 16..63 the store object of a STORED page (obj_id)
 *
 * A table is an array of entries per region, mmap'd so that untouched parts
 * cost nothing: a zero entry is PAGE_NEVER.  Only the VM's own thread writes
 * it; the per-state counts are atomics so the control thread can read them.
 */
#ifndef MEMSRV_PAGE_STATE_H
#define MEMSRV_PAGE_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum page_state {
	PAGE_NEVER = 0,     /* never touched since attach (or discarded): a fault gets zeros */
	PAGE_RESIDENT = 1,  /* in the VMM's memory */
	PAGE_ZERO = 2,      /* evicted, was all zeros: costs no storage */
	PAGE_STORED = 3,    /* evicted into the node's store (store.h) */
	PAGE_PROBATION = 4, /* unmapped to see if it is used, content kept raw (sampler.c) */
	PAGE_STATES
};

typedef uint64_t page_entry;

static inline enum page_state pe_state(page_entry e) { return (enum page_state)(e & 7); }
static inline uint32_t pe_len(page_entry e) { return (uint32_t)(e >> 3) & 0x1fff; }
static inline uint64_t pe_handle(page_entry e) { return e >> 16; }

static inline page_entry pe_make(enum page_state s, uint32_t len, uint64_t handle)
{
	return (page_entry)s | (page_entry)(len & 0x1fff) << 3 | handle << 16;
}

struct page_table {
	page_entry *entries;
	uint64_t npages;
	_Atomic uint64_t count[PAGE_STATES];
};

/* 0 or -ENOMEM; every page starts PAGE_NEVER. */
int page_table_init(struct page_table *pt, uint64_t npages);
void page_table_destroy(struct page_table *pt);

/* Sets one entry and keeps the per-state counts (single writer). */
static inline void page_table_set(struct page_table *pt, uint64_t idx, page_entry e)
{
	enum page_state old = pe_state(pt->entries[idx]), now = pe_state(e);
	pt->entries[idx] = e;
	if (old != now) {
		atomic_store_explicit(&pt->count[old],
				      atomic_load_explicit(&pt->count[old], memory_order_relaxed) - 1,
				      memory_order_relaxed);
		atomic_store_explicit(&pt->count[now],
				      atomic_load_explicit(&pt->count[now], memory_order_relaxed) + 1,
				      memory_order_relaxed);
	}
}

static inline uint64_t page_table_count(const struct page_table *pt, enum page_state s)
{
	return atomic_load_explicit(&pt->count[s], memory_order_relaxed);
}

/* Marks RESIDENT every page that fd holds allocated in
 * [fd_offset, fd_offset + npages * page_size), found with SEEK_DATA/SEEK_HOLE
 * (never by touching a mapping: that would allocate holes).  Returns the
 * number of pages marked, or -errno. */
int64_t page_table_scan_allocated(struct page_table *pt, int fd, uint64_t fd_offset, uint32_t page_size);

#endif
