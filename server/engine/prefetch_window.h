/* prefetch_window: how far ahead of a stream of faults prefetch.c places.
 *
 * A stored fault on the page right after the previous one continues a
 * stream; its window of pages placed ahead starts at 2 and doubles with
 * each fault of the stream, up to PREFETCH_MAX_PAGES.  Any other fault
 * ends the stream (the window falls back to 0), as does a fault in a
 * region of huge pages, which are never prefetched.  The pages prefetch
 * placed belong to the stream: the fault after them continues it.  Plain
 * numbers in, plain numbers out (the VM's stream_next and stream_window).
 */
#ifndef MEMSRV_PREFETCH_WINDOW_H
#define MEMSRV_PREFETCH_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#define PREFETCH_MAX_PAGES 32  /* 128 KiB, the kernel's largest swap cluster */

/* A stored fault on VM-wide page page of a region of page_size pages:
 * updates the stream (*next: the page that would continue it; *window)
 * and returns how many pages after page to place now (0: none). */
uint64_t prefetch_window_on_fault(uint64_t *next, uint64_t *window, uint64_t page, uint64_t page_size);

/* Prefetch placed placed pages after the fault: the stream goes on after them. */
void prefetch_window_placed(uint64_t *next, uint64_t placed);

/* The most of want pages after page idx that its region of npages pages holds. */
uint64_t prefetch_window_clip(uint64_t want, uint64_t idx, uint64_t npages);

#endif
