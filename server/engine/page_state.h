/* page_state: where each guest page of a region is, packed in 64 bits.
 *
 *   bits 0..2   enum page_state
 *   bits 3..15  of a RESIDENT page on its way in: the state it came from
 *               (kept by a clean page: clean_pages.h)
 *   bits 16..63 the store object of a STORED page (obj_id) and of a clean
 *               RESIDENT one, the probation
 *               slot of a PROBATION page (an IMAGE page is the image's
 *               page of the same VM-wide number: no handle)
 *
 * A table is an array of entries per region, mmap'd so that untouched parts
 * cost nothing: a zero entry is PAGE_NEVER.  Only the VM's own thread writes
 * it, and only through page_table_set() (or, before any other thread sees
 * it, in bulk: page_table_moved()); entries and the per-state counts are
 * written atomically so the server thread can read them.
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
	PAGE_POISONED = 5,  /* its content is lost (poison.c): every fault on it gets SIGBUS, never zeros */
	PAGE_IMAGE = 6,     /* not read yet from the image the VM was resumed from (image_pages.c) */
	PAGE_REMOTE = 7,    /* not arrived yet from the node the VM migrates from (migrate_in.c) */
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

/* The entry of a page being copied into the VMM: RESIDENT to everyone, but
 * still naming the content it comes from (and holding its store reference)
 * until UFFDIO_COPY placed it, so that a memsrv killed in between leaves
 * that content findable (vm_state.c).  Zero and never-touched pages need no
 * such note: their content is zeros. */
static inline page_entry pe_arriving(page_entry from)
{
	enum page_state s = pe_state(from);
	if (s != PAGE_STORED && s != PAGE_PROBATION && s != PAGE_IMAGE)
		return pe_make(PAGE_RESIDENT, 0, 0);
	return pe_make(PAGE_RESIDENT, s, pe_handle(from));
}

/* Where a RESIDENT entry's page came from while it is arriving: PAGE_STORED,
 * PAGE_PROBATION, PAGE_IMAGE, or PAGE_NEVER once it is in (or it needs no note). */
static inline enum page_state pe_arriving_from(page_entry e)
{
	return pe_state(e) == PAGE_RESIDENT ? (enum page_state)(pe_len(e) & 7) : PAGE_NEVER;
}

/* A resident page that keeps the stored copy it was faulted back from
 * (clean_pages.h): the same entry as one arriving from the store, kept
 * after it arrived; the copy is the object its handle names. */
static inline bool pe_is_clean(page_entry e)
{
	return pe_arriving_from(e) == PAGE_STORED && pe_handle(e);  /* a huge page's parts are no copy */
}

/* Whether the entry holds one reference to the store object its handle
 * names: a STORED page, or a RESIDENT one arriving from the store or clean.
 * Whatever lets go of such an entry drops that reference.  (A huge page
 * STORED with no object is held by its parts: huge_pages.h.) */
static inline bool pe_holds_object(page_entry e)
{
	return (pe_state(e) == PAGE_STORED && pe_handle(e)) || pe_is_clean(e);
}

struct page_table {
	page_entry *entries;
	uint64_t npages;
	_Atomic uint64_t count[PAGE_STATES];
};

/* 0 or -ENOMEM; every page starts PAGE_NEVER. */
int page_table_init(struct page_table *pt, uint64_t npages);

/* The table of npages entries kept at offset (page aligned) of fd, shared
 * with the file: every entry written is in the file at once.  Its counts
 * are those of the entries found there (holes are PAGE_NEVER and are not
 * read).  0 or -errno. */
int page_table_map(struct page_table *pt, uint64_t npages, int fd, uint64_t offset);

/* Counts the states of a mapped table's entries anew.  0 or -errno. */
int page_table_recount(struct page_table *pt, int fd, uint64_t offset);

/* Bytes a table of npages entries takes in a file, a whole number of pages. */
static inline uint64_t page_table_file_bytes(uint64_t npages)
{
	return (npages * sizeof(page_entry) + 4095) & ~4095ull;
}

/* Calls fn on each run of entries [first, end) that fd holds data for (a
 * table mapped from fd at offset); the other entries are PAGE_NEVER and
 * were never written.  Stops at fn's first nonzero return and returns it;
 * 0, or -errno from lseek. */
int page_table_each_written(const struct page_table *pt, int fd, uint64_t offset,
			    int (*fn)(const struct page_table *pt, uint64_t first, uint64_t end, void *arg), void *arg);
void page_table_destroy(struct page_table *pt);

/* Sets one entry and keeps the per-state counts (single writer).  The
 * server thread reads entries meanwhile (vm_count_stored) with relaxed
 * atomic loads: the store is a relaxed atomic too, a plain mov on x86-64
 * and arm64, so no reader can see it torn. */
static inline void page_table_set(struct page_table *pt, uint64_t idx, page_entry e)
{
	enum page_state old = pe_state(pt->entries[idx]), now = pe_state(e);
	__atomic_store_n(&pt->entries[idx], e, __ATOMIC_RELAXED);
	if (old != now) {
		atomic_store_explicit(&pt->count[old],
				      atomic_load_explicit(&pt->count[old], memory_order_relaxed) - 1,
				      memory_order_relaxed);
		atomic_store_explicit(&pt->count[now],
				      atomic_load_explicit(&pt->count[now], memory_order_relaxed) + 1,
				      memory_order_relaxed);
	}
}

/* A table no other thread reads yet (a VM being attached) may be written
 * straight, entries[idx] = e, in bulk: then n entries that went from
 * state from to state to are counted here, once. */
static inline void page_table_moved(struct page_table *pt, enum page_state from, enum page_state to, uint64_t n)
{
	atomic_fetch_sub_explicit(&pt->count[from], n, memory_order_relaxed);
	atomic_fetch_add_explicit(&pt->count[to], n, memory_order_relaxed);
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
