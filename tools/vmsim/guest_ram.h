/* guest_ram: the simulated VM's RAM, a memfd mapped MAP_SHARED, or
 * private anonymous memory. */
#ifndef VMSIM_GUEST_RAM_H
#define VMSIM_GUEST_RAM_H

#include <stdbool.h>
#include <stdint.h>

#define GUEST_PAGE_SIZE 4096u
#define GUEST_HUGE_PAGE_SIZE (2u << 20)

struct guest_ram {
	int fd;                /* -1 for anonymous RAM */
	uint8_t *base;
	uint64_t size;         /* bytes */
	uint64_t pages;        /* 4 KiB pages, the unit of content and access */
	uint32_t fd_page_size; /* 4 KiB, or 2 MiB when hugetlb worked */
};

enum guest_ram_kind {
	GUEST_RAM_MEMFD,      /* what a VMM hands memsrv */
	GUEST_RAM_HUGETLB,    /* a memfd of 2 MiB pages */
	/* private anonymous memory marked MADV_MERGEABLE (KSM merges only
	 * anonymous pages), with no fd: such a VM cannot attach to memsrv */
	GUEST_RAM_MERGEABLE,
	GUEST_RAM_ANONYMOUS,  /* private anonymous memory, no fd */
};

/* Creates and maps size bytes (a multiple of 4 KiB; of 2 MiB for hugetlb).
 * With hugetlb, falls back to 4 KiB pages (saying so on stderr) when no
 * huge pages can be had.  Returns 0 or -errno. */
int guest_ram_create(struct guest_ram *ram, const char *name, uint64_t size, enum guest_ram_kind kind);
void guest_ram_destroy(struct guest_ram *ram);

/* Bytes the memfd holds, from fstat (st_blocks * 512); of anonymous RAM,
 * the pages present in the mapping (mincore). */
int guest_ram_allocated_bytes(const struct guest_ram *ram, uint64_t *bytes);

/* 4 KiB pages inside the memfd's data ranges (lseek SEEK_DATA/SEEK_HOLE),
 * or present in an anonymous mapping (mincore).  Never touches the
 * mapping: a read there would allocate holes. */
int guest_ram_resident_pages(const struct guest_ram *ram, uint64_t *pages);

#endif
