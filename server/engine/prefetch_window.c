/* prefetch_window: stream detection and the window's growth. */
#include "prefetch_window.h"

uint64_t prefetch_window_on_fault(uint64_t *next, uint64_t *window, uint64_t page, uint64_t page_size)
{
	bool stream = page == *next;
	*next = page + 1;
	if (!stream || page_size != 4096) {
		*window = 0;
		return 0;
	}
	*window = *window ? *window * 2 : 2;
	if (*window > PREFETCH_MAX_PAGES)
		*window = PREFETCH_MAX_PAGES;
	return *window;
}

void prefetch_window_placed(uint64_t *next, uint64_t placed)
{
	*next += placed;
}

uint64_t prefetch_window_clip(uint64_t want, uint64_t idx, uint64_t npages)
{
	uint64_t after = idx + 1 < npages ? npages - idx - 1 : 0;
	return want < after ? want : after;
}
