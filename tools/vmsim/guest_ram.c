/* guest_ram: memfd-backed guest RAM and what the memfd says about it. */
#include "guest_ram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int map_memfd(struct guest_ram *ram, const char *name, uint64_t size, unsigned flags)
{
	int fd = memfd_create(name, MFD_CLOEXEC | flags);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		int ret = -errno;
		close(fd);
		return ret;
	}
	/* For hugetlbfs this is where the huge pages get reserved. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int ret = -errno;
		close(fd);
		return ret;
	}
	ram->fd = fd;
	ram->base = p;
	ram->size = size;
	ram->pages = size / GUEST_PAGE_SIZE;
	return 0;
}

static int map_anonymous(struct guest_ram *ram, uint64_t size, bool mergeable)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (mergeable && madvise(p, size, MADV_MERGEABLE) < 0) {
		int ret = -errno;
		munmap(p, size);
		return ret;
	}
	ram->base = p;
	ram->size = size;
	ram->pages = size / GUEST_PAGE_SIZE;
	ram->fd_page_size = GUEST_PAGE_SIZE;
	return 0;
}

int guest_ram_create(struct guest_ram *ram, const char *name, uint64_t size, enum guest_ram_kind kind)
{
	memset(ram, 0, sizeof *ram);
	ram->fd = -1;
	bool hugetlb = kind == GUEST_RAM_HUGETLB;
	if (!size || size % GUEST_PAGE_SIZE || (hugetlb && size % GUEST_HUGE_PAGE_SIZE))
		return -EINVAL;
	if (kind == GUEST_RAM_MERGEABLE || kind == GUEST_RAM_ANONYMOUS)
		return map_anonymous(ram, size, kind == GUEST_RAM_MERGEABLE);
	if (hugetlb) {
		int ret = map_memfd(ram, name, size, MFD_HUGETLB);
		if (!ret) {
			ram->fd_page_size = GUEST_HUGE_PAGE_SIZE;
			return 0;
		}
		fprintf(stderr, "vmsim: hugetlb memfd failed (%s), using 4 KiB pages\n", strerror(-ret));
	}
	ram->fd_page_size = GUEST_PAGE_SIZE;
	return map_memfd(ram, name, size, 0);
}

void guest_ram_destroy(struct guest_ram *ram)
{
	if (ram->base)
		munmap(ram->base, ram->size);
	if (ram->fd >= 0)
		close(ram->fd);
	ram->base = NULL;
	ram->fd = -1;
}

/* Anonymous RAM: the pages the kernel holds for the mapping. */
static int present_pages(const struct guest_ram *ram, uint64_t *pages)
{
	unsigned char *vec = malloc(ram->pages);
	if (!vec)
		return -ENOMEM;
	int ret = mincore(ram->base, ram->size, vec) ? -errno : 0;
	uint64_t n = 0;
	for (uint64_t i = 0; !ret && i < ram->pages; i++)
		n += vec[i] & 1;
	free(vec);
	*pages = n;
	return ret;
}

int guest_ram_allocated_bytes(const struct guest_ram *ram, uint64_t *bytes)
{
	if (ram->fd < 0) {
		uint64_t pages;
		int ret = present_pages(ram, &pages);
		*bytes = pages * GUEST_PAGE_SIZE;
		return ret;
	}
	struct stat st;
	if (fstat(ram->fd, &st) < 0)
		return -errno;
	*bytes = (uint64_t)st.st_blocks * 512;
	return 0;
}

int guest_ram_resident_pages(const struct guest_ram *ram, uint64_t *pages)
{
	if (ram->fd < 0)
		return present_pages(ram, pages);
	uint64_t n = 0;
	off_t off = 0;
	while ((uint64_t)off < ram->size) {
		off_t data = lseek(ram->fd, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)  /* no data after off */
				break;
			return -errno;
		}
		off_t hole = lseek(ram->fd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		if ((uint64_t)hole > ram->size)
			hole = (off_t)ram->size;
		uint64_t first = (uint64_t)data / GUEST_PAGE_SIZE;
		uint64_t end = ((uint64_t)hole + GUEST_PAGE_SIZE - 1) / GUEST_PAGE_SIZE;
		n += end - first;
		off = hole;
	}
	*pages = n;
	return 0;
}
