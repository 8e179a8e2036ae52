/* page_state: page table allocation and the attach-time residency scan. */
#include "page_state.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int page_table_init(struct page_table *pt, uint64_t npages)
{
	memset(pt, 0, sizeof *pt);
	size_t bytes = page_table_file_bytes(npages);
	void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	pt->entries = p;
	pt->npages = npages;
	atomic_store(&pt->count[PAGE_NEVER], npages);
	return 0;
}

static int count_run(const struct page_table *pt, uint64_t first, uint64_t end, void *arg)
{
	uint64_t *count = arg;
	for (uint64_t i = first; i < end; i++)
		count[pe_state(pt->entries[i]) < PAGE_STATES ? pe_state(pt->entries[i]) : PAGE_NEVER]++;
	return 0;
}

int page_table_map(struct page_table *pt, uint64_t npages, int fd, uint64_t offset)
{
	memset(pt, 0, sizeof *pt);
	size_t bytes = page_table_file_bytes(npages);
	void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, (off_t)offset);
	if (p == MAP_FAILED)
		return -errno;
	pt->entries = p;
	pt->npages = npages;
	int ret = page_table_recount(pt, fd, offset);
	if (ret)
		page_table_destroy(pt);
	return ret;
}

int page_table_recount(struct page_table *pt, int fd, uint64_t offset)
{
	uint64_t count[PAGE_STATES] = { 0 };
	int ret = page_table_each_written(pt, fd, offset, count_run, count);
	if (ret)
		return ret;
	uint64_t written = 0;
	for (int s = 1; s < PAGE_STATES; s++) {
		atomic_store(&pt->count[s], count[s]);
		written += count[s];
	}
	atomic_store(&pt->count[PAGE_NEVER], pt->npages - written);
	return 0;
}

/* Calls fn on each run [first, end) of the n items of unit bytes from
 * offset of fd that the file holds data for, found with SEEK_DATA/SEEK_HOLE
 * (never by touching a mapping: that would allocate the holes).  Stops at
 * fn's first nonzero return and returns it; 0, or -errno from lseek. */
static int each_data_run(int fd, uint64_t offset, uint64_t unit, uint64_t n,
			 int (*fn)(uint64_t first, uint64_t end, void *arg), void *arg)
{
	uint64_t end = offset + n * unit;
	off_t pos = (off_t)offset;
	while ((uint64_t)pos < end) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((uint64_t)data >= end)
			break;
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		uint64_t first = ((uint64_t)data - offset) / unit;
		uint64_t last = ((uint64_t)hole - offset + unit - 1) / unit;
		int ret = fn(first, last < n ? last : n, arg);
		if (ret)
			return ret;
		pos = hole;
	}
	return 0;
}

struct written {
	const struct page_table *pt;
	int (*fn)(const struct page_table *pt, uint64_t first, uint64_t end, void *arg);
	void *arg;
};

static int written_run(uint64_t first, uint64_t end, void *arg)
{
	struct written *w = arg;
	return w->fn(w->pt, first, end, w->arg);
}

int page_table_each_written(const struct page_table *pt, int fd, uint64_t offset,
			    int (*fn)(const struct page_table *pt, uint64_t first, uint64_t end, void *arg), void *arg)
{
	/* a table as large as a 4 TiB region is mostly holes: read only what
	 * was written (reading a hole of a shared mapping would allocate it) */
	struct written w = { pt, fn, arg };
	return each_data_run(fd, offset, sizeof(page_entry), pt->npages, written_run, &w);
}

void page_table_destroy(struct page_table *pt)
{
	size_t bytes = page_table_file_bytes(pt->npages);
	if (pt->entries)
		munmap(pt->entries, bytes ? bytes : 1);
	pt->entries = NULL;
	pt->npages = 0;
}

struct allocated {
	struct page_table *pt;
	uint64_t marked;
};

static int mark_allocated(uint64_t first, uint64_t end, void *arg)
{
	struct allocated *a = arg;
	for (uint64_t i = first; i < end; i++) {
		if (pe_state(a->pt->entries[i]) == PAGE_NEVER) {
			page_table_set(a->pt, i, pe_make(PAGE_RESIDENT, 0, 0));
			a->marked++;
		}
	}
	return 0;
}

int64_t page_table_scan_allocated(struct page_table *pt, int fd, uint64_t fd_offset, uint32_t page_size)
{
	struct allocated a = { pt, 0 };
	int ret = each_data_run(fd, fd_offset, page_size, pt->npages, mark_allocated, &a);
	return ret ? ret : (int64_t)a.marked;
}
