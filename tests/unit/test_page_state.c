/* Description: page entries pack and unpack losslessly; counts follow every
 * change; the attach scan finds exactly the pages a memfd holds. */
#include <criterion/criterion.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "page_state.h"

Test(page_state, entry_roundtrip)
{
	uint64_t handles[] = { 1, 0xabcdef, (1ull << 48) - 1 };
	uint32_t lens[] = { 1, 2048, 4096 };
	for (int s = 0; s < PAGE_STATES; s++)
		for (int h = 0; h < 3; h++)
			for (int l = 0; l < 3; l++) {
				page_entry e = pe_make(s, lens[l], handles[h]);
				cr_assert_eq(pe_state(e), (enum page_state)s);
				cr_assert_eq(pe_len(e), lens[l]);
				cr_assert_eq(pe_handle(e), handles[h]);
			}
}

Test(page_state, counts_follow_changes)
{
	struct page_table pt;
	cr_assert_eq(page_table_init(&pt, 1000), 0);
	cr_assert_eq(page_table_count(&pt, PAGE_NEVER), 1000);
	for (int i = 0; i < 10; i++)
		page_table_set(&pt, i, pe_make(PAGE_RESIDENT, 0, 0));
	page_table_set(&pt, 3, pe_make(PAGE_STORED, 100, 7));
	page_table_set(&pt, 4, pe_make(PAGE_ZERO, 0, 0));
	page_table_set(&pt, 4, pe_make(PAGE_ZERO, 0, 0));
	cr_assert_eq(page_table_count(&pt, PAGE_NEVER), 990);
	cr_assert_eq(page_table_count(&pt, PAGE_RESIDENT), 8);
	cr_assert_eq(page_table_count(&pt, PAGE_STORED), 1);
	cr_assert_eq(page_table_count(&pt, PAGE_ZERO), 1);
	page_table_destroy(&pt);
}

Test(page_state, scan_finds_allocated_pages_of_a_memfd)
{
	int fd = memfd_create("scan", 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 64 * 4096), 0);
	char page[4096];
	memset(page, 0x5a, sizeof page);
	/* pages 0, 5, 6 and 63, seen from an fd offset of 4 pages: 5, 6 and 63 are in range */
	int written[] = { 0, 5, 6, 63 };
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pwrite(fd, page, 4096, written[i] * 4096L), 4096);
	struct page_table pt;
	cr_assert_eq(page_table_init(&pt, 60), 0);
	cr_assert_eq(page_table_scan_allocated(&pt, fd, 4 * 4096, 4096), 3);
	cr_assert_eq(pe_state(pt.entries[1]), PAGE_RESIDENT);
	cr_assert_eq(pe_state(pt.entries[2]), PAGE_RESIDENT);
	cr_assert_eq(pe_state(pt.entries[59]), PAGE_RESIDENT);
	cr_assert_eq(pe_state(pt.entries[0]), PAGE_NEVER);
	cr_assert_eq(page_table_count(&pt, PAGE_RESIDENT), 3);
	/* the scan must not allocate holes: the memfd still holds 4 pages */
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_blocks * 512, 4 * 4096);
	page_table_destroy(&pt);
	close(fd);
}
