/* page_state: page table allocation and the attach-time residency scan. */
#include "page_state.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int page_table_init(struct page_table *pt, uint64_t npages)
{
	memset(pt, 0, sizeof *pt);
	size_t bytes = npages * sizeof(page_entry);
	void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	pt->entries = p;
	pt->npages = npages;
	atomic_store(&pt->count[PAGE_NEVER], npages);
	return 0;
}

void page_table_destroy(struct page_table *pt)
{
	size_t bytes = pt->npages * sizeof(page_entry);
	if (pt->entries)
		munmap(pt->entries, bytes ? bytes : 1);
	pt->entries = NULL;
	pt->npages = 0;
}

int64_t page_table_scan_allocated(struct page_table *pt, int fd, uint64_t fd_offset, uint32_t page_size)
{
	uint64_t end = fd_offset + pt->npages * page_size;
	uint64_t marked = 0;
	off_t pos = (off_t)fd_offset;
	while ((uint64_t)pos < end) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? (int64_t)marked : -errno;
		if ((uint64_t)data >= end)
			break;
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		uint64_t first = ((uint64_t)data - fd_offset) / page_size;
		uint64_t last = ((uint64_t)hole - fd_offset + page_size - 1) / page_size;
		if (last > pt->npages)
			last = pt->npages;
		for (uint64_t i = first; i < last; i++) {
			if (pe_state(pt->entries[i]) == PAGE_NEVER) {
				page_table_set(pt, i, pe_make(PAGE_RESIDENT, 0, 0));
				marked++;
			}
		}
		pos = hole;
	}
	return (int64_t)marked;
}
