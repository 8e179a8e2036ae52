/* uffd_setup: create a userfaultfd with the features memsrv wants and
 * register a VMM's regions on it (client side). */
#ifndef MEMSRV_UFFD_SETUP_H
#define MEMSRV_UFFD_SETUP_H

#include <stdint.h>

#include "memsrv.h"
#include "memsrv.pb-c.h"

/* Opens a non-blocking uffd with every wanted feature the kernel has.
 * Returns the fd or -errno; *features gets what was enabled. */
int uffd_setup_open(uint64_t *features);

/* Registers [addr, addr+size) in MISSING mode, and WP too when the
 * features allow it for this backing.  *modes gets the modes used. */
int uffd_setup_register(int uffd, uint64_t features, Memsrv__Backing backing, uint64_t addr, uint64_t size,
			uint64_t *modes);

int uffd_setup_unregister(int uffd, uint64_t addr, uint64_t size);

/* What backs fd (-1: anonymous); *page_size gets its page size. */
Memsrv__Backing uffd_setup_backing(int fd, uint32_t *page_size);

#endif
