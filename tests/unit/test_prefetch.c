/* Description: a stored fault on the page after the previous one continues
 * a stream, whose prefetch window starts at 2 pages and doubles up to
 * PREFETCH_MAX_PAGES; any other fault, or one in a region of huge pages,
 * ends it; the fault right after what prefetch placed continues it; and a
 * window never reaches past the end of its region. */
#include <criterion/criterion.h>

#include "prefetch_window.h"

static uint64_t next, window;

/* A stored fault on VM-wide page page of a 4 KiB region. */
static uint64_t fault(uint64_t page)
{
	return prefetch_window_on_fault(&next, &window, page, 4096);
}

static void reset(void)
{
	next = window = 0;
}

TestSuite(prefetch, .init = reset);

Test(prefetch, a_first_fault_places_nothing)
{
	cr_assert_eq(fault(100), 0);
	cr_assert_eq(next, 101, "the page that would continue the stream");
	cr_assert_eq(window, 0);
}

Test(prefetch, the_window_doubles_up_to_its_bound)
{
	fault(100);
	uint64_t want[] = { 2, 4, 8, 16, 32, 32, 32 };
	_Static_assert(PREFETCH_MAX_PAGES == 32, "the steps below");
	for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++)
		cr_assert_eq(fault(101 + i), want[i], "fault %u of the stream: %lu pages", i + 1,
			     (unsigned long)window);
}

Test(prefetch, a_fault_elsewhere_ends_the_stream_and_starts_another)
{
	fault(100);
	fault(101);
	fault(102);
	cr_assert_eq(window, 4);
	cr_assert_eq(fault(500), 0, "not the next page: no prefetch");
	cr_assert_eq(window, 0, "the window falls back to nothing");
	cr_assert_eq(fault(501), 2, "a new stream starts from 2");
}

Test(prefetch, a_fault_on_the_same_page_again_is_no_stream)
{
	fault(100);
	fault(101);
	cr_assert_eq(fault(101), 0);
	cr_assert_eq(window, 0);
}

Test(prefetch, a_fault_backwards_is_no_stream)
{
	fault(100);
	fault(101);
	cr_assert_eq(fault(100), 0);
}

Test(prefetch, huge_pages_are_never_prefetched)
{
	cr_assert_eq(prefetch_window_on_fault(&next, &window, 7, 2u << 20), 0);
	cr_assert_eq(prefetch_window_on_fault(&next, &window, 8, 2u << 20), 0, "sequential, but huge");
	cr_assert_eq(window, 0);
	cr_assert_eq(next, 9, "the stream is followed all the same");
	cr_assert_eq(fault(9), 2, "a 4 KiB page next in line continues it");
}

Test(prefetch, the_fault_after_what_was_placed_continues_the_stream)
{
	fault(100);
	cr_assert_eq(fault(101), 2);
	prefetch_window_placed(&next, 2);  /* 102 and 103 are in */
	cr_assert_eq(next, 104);
	cr_assert_eq(fault(104), 4, "the guest reached the end of the window: it grows");
	prefetch_window_placed(&next, 1);  /* only 105 was placed */
	cr_assert_eq(fault(107), 0, "107 skips 106: a new stream");
}

Test(prefetch, a_window_ends_at_its_region)
{
	cr_assert_eq(prefetch_window_clip(8, 0, 100), 8, "room for all of it");
	cr_assert_eq(prefetch_window_clip(8, 95, 100), 4, "96..99: the last four pages");
	cr_assert_eq(prefetch_window_clip(8, 98, 100), 1);
	cr_assert_eq(prefetch_window_clip(8, 99, 100), 0, "the fault is on the last page: nothing after it");
	cr_assert_eq(prefetch_window_clip(0, 10, 100), 0);
}
