/* Description: guest RAM of 2 MiB huge pages (a hugetlbfs memfd, as QEMU's
 * hugetlb=on maps it), the test process its VMM: memsrv evicts whole huge
 * pages, stores them as 4 KiB parts (zero parts cost nothing, twins are
 * shared), gives the pool its pages back, and brings every byte back, under
 * a limit, under racing writers, through a restart of memsrv, a detach, a
 * discard and an munmap. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "memsrv.h"
#include "racers.h"

#define PAGE GUEST_PAGE
#define HUGE (2u << 20)
#define PARTS (HUGE / PAGE)
#define MIB (1u << 20)

static struct test_server srv;
static long hugepages_before = -1;
static char state_dir[64];

static void setup(void) { server_start(&srv); }

static void teardown(void)
{
	server_stop(&srv);
	scratch_remove(state_dir);
	guest_restore_hugepages(hugepages_before);
	hugepages_before = -1;
}

TestSuite(huge_pages, .init = setup, .fini = teardown, .timeout = 180);

/* Huge page h of the pattern: every fourth all zeros, the one after a twin
 * of the one before it (the same parts, to share), the rest pattern_mixed
 * (zero parts, one-word parts and distinct ones). */
static uint64_t huge_word(size_t page, size_t w, uint64_t gen)
{
	size_t h = page / PARTS;
	if (h % 4 == 3)
		return 0;
	if (h % 4 == 2)
		page -= PARTS;
	return pattern_mixed(page, w, gen);
}

/* A guest of size bytes of huge pages attached as VM name under limit. */
static void huge_attach(struct guest *g, const char *name, size_t size, uint64_t limit)
{
	hugepages_before = guest_reserve_hugepages((long)(size / HUGE));
	cr_assert_eq(guest_try_map(g, name, size, true), 0, "a hugetlbfs memfd of %zu MiB", size / MIB);
	struct memsrv_vm settings = { .limit_bytes = limit };
	cr_assert_eq(guest_try_attach(g, srv.sock, name, &settings), 0, "attach: %s", memsrv_last_error());
	cr_assert(memsrv_session_evictable(g->s), "huge pages are evictable");
}

static Memsrv__VmInfo *info_of(const char *vm, Memsrv__ServerMessage **m)
{
	*m = ctl_info_ok(&srv, vm);
	return (*m)->vm_info;
}

Test(huge_pages, evicted_whole_stored_in_parts_and_back_whole)
{
	struct guest g;
	const size_t size = 16 * MIB, pages = size / PAGE;
	huge_attach(&g, "huge", size, 0);
	pattern_fill(g.mem, 0, pages, huge_word, 1);
	cr_assert_eq(guest_allocated(&g), size);

	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "huge", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, pages, "evicted %lu of %zu 4 KiB pages",
		     (unsigned long)m->evict_reply->pages_evicted, pages);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(guest_allocated(&g), 0, "the pool got its huge pages back: the memfd holds %lu bytes",
		     (unsigned long)guest_allocated(&g));
	Memsrv__VmInfo *i = info_of("huge", &m);
	cr_assert_eq(i->resident_bytes, 0);
	cr_assert_eq(i->zero_pages + i->stored_pages, pages, "%lu zero and %lu stored parts of %zu",
		     (unsigned long)i->zero_pages, (unsigned long)i->stored_pages, pages);
	/* two of the eight huge pages are all zeros: at least their parts */
	cr_assert_geq(i->zero_pages, 2 * PARTS, "zero parts: %lu", (unsigned long)i->zero_pages);
	/* the twins are shared: about a quarter of the stored parts */
	cr_assert_geq(i->shared_pages, PARTS, "shared parts: %lu", (unsigned long)i->shared_pages);
	cr_assert_lt(i->stored_bytes, size / 2, "stored %lu bytes for %zu of content", (unsigned long)i->stored_bytes,
		     size);
	memsrv__server_message__free_unpacked(m, NULL);

	/* one fault brings back a whole huge page */
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, huge_word, 1), 0);
	i = info_of("huge", &m);
	cr_assert_eq(i->resident_bytes, size);
	cr_assert_eq(i->stored_pages + i->zero_pages, 0, "no page is stored once all are back");
	/* the parts stay as the pages' kept copies: the next eviction shares
	 * what did not change instead of compressing it again */
	cr_assert_gt(i->clean_pages, 0, "no kept copy of a huge page's parts");
	cr_assert_leq(i->faults_stored + i->faults_zero, 8 + 2, "%lu faults for 8 huge pages",
		      (unsigned long)(i->faults_stored + i->faults_zero));
	memsrv__server_message__free_unpacked(m, NULL);
	m = ctl_evict_ok(&srv, "huge", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, pages);
	cr_assert_eq(m->evict_reply->stored_bytes, 0, "evicted again unchanged, %lu bytes were stored anew",
		     (unsigned long)m->evict_reply->stored_bytes);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, huge_word, 1), 0);

	/* evicted again, then restored by the detach: the file holds them all */
	pattern_fill(g.mem, 0, pages / 2, huge_word, 2);
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "huge", 0, true), NULL);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	cr_assert_eq(guest_allocated(&g), size);
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages / 2, huge_word, 2), 0);
	cr_assert_eq(pattern_count_bad(g.mem, pages / 2, pages, huge_word, 1), 0);
	guest_release(&g);
}

Test(huge_pages, a_limit_holds_in_whole_huge_pages_while_writes_race_evictions)
{
	struct guest g;
	const uint64_t limit = 8 * MIB;
	const size_t size = 24 * MIB, pages = size / PAGE;
	huge_attach(&g, "busy", size, limit);
	struct racing_run run;
	racing_run_start(&run, g.mem, pages, 2000, 3, srv.sock, "busy");
	size_t bad = racing_run_finish(&run);
	/* and every page once more, after all the writes */
	bad += racing_run_count_bad(&run);
	cr_assert_eq(bad, 0, "%zu pages read other than what was written last", bad);
	cr_assert_gt(run.ev.runs, 0, "no eviction of the whole VM ran during the writes");
	Memsrv__ServerMessage *m;
	Memsrv__VmInfo *i = info_of("busy", &m);
	uint64_t held = guest_allocated(&g);
	cr_assert_leq(i->resident_bytes, limit, "resident %lu over the limit", (unsigned long)i->resident_bytes);
	cr_assert_gt(i->faults_stored, 0);
	cr_log_info("%u evictions of the whole VM, %lu writes waited for one", run.ev.runs, (unsigned long)i->faults_wp);
	memsrv__server_message__free_unpacked(m, NULL);
	/* what the pool gave the VMM is what memsrv counts */
	cr_assert_leq(held, limit, "the memfd holds %lu bytes under a limit of %lu", (unsigned long)held,
		      (unsigned long)limit);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	bad = racing_run_count_bad(&run);
	racing_run_free(&run);
	cr_assert_eq(bad, 0, "after the detach, %zu pages differ", bad);
	guest_release(&g);
}

/* Under a limit of 8 huge pages a guest that goes on using 6 of them
 * faults each once more at most: the policy's oldest pages leave, not the
 * lowest addressed (all the resident ones were once taken as victims and
 * the lowest evicted, which evicted a page again the moment it came). */
Test(huge_pages, a_hot_set_that_fits_the_limit_stays_resident)
{
	struct guest g;
	const size_t size = 32 * MIB, pages = size / PAGE;
	huge_attach(&g, "hot", size, 16 * MIB);
	pattern_fill(g.mem, 0, pages, huge_word, 3);
	Memsrv__ServerMessage *m;
	uint64_t before = info_of("hot", &m)->faults_total;
	memsrv__server_message__free_unpacked(m, NULL);
	size_t bad = 0;
	for (int round = 0; round < 200; round++)
		for (size_t h = 0; h < 6; h++)
			bad += pattern_count_bad(g.mem, h * PARTS + round % PARTS, h * PARTS + round % PARTS + 1, huge_word, 3);
	cr_assert_eq(bad, 0);
	uint64_t faults = info_of("hot", &m)->faults_total - before;
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_leq(faults, 2 * 6, "%lu faults for a hot set of 6 huge pages under a limit of 8", (unsigned long)faults);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	guest_release(&g);
}

Test(huge_pages, stored_huge_pages_outlive_a_killed_memsrv)
{
	server_stop(&srv);
	cr_assert(scratch_make(state_dir, sizeof state_dir, "/tmp/memsrv-huge-state.XXXXXX"));
	const char *opts[] = { "--state-dir", state_dir, NULL };
	server_start_with(&srv, opts);
	struct guest g;
	const size_t size = 16 * MIB, pages = size / PAGE;
	huge_attach(&g, "kept", size, 0);
	pattern_fill(g.mem, 0, pages, huge_word, 5);
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "kept", 0, true), NULL);
	cr_assert_eq(guest_allocated(&g), 0);
	server_crash_and_restart(&srv, opts);
	/* libmemsrv says Hello again; the parts are the pages' content */
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, huge_word, 5), 0);
	Memsrv__ServerMessage *m;
	Memsrv__VmInfo *i = info_of("kept", &m);
	cr_assert_eq(i->resident_bytes, size);
	cr_assert_eq(i->stored_pages, 0);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	guest_release(&g);
}

static bool parts_let_go(void *arg)
{
	Memsrv__ServerMessage *m;
	Memsrv__VmInfo *i = info_of(arg, &m);
	bool done = i->stored_pages + i->zero_pages == 0;
	memsrv__server_message__free_unpacked(m, NULL);
	return done;
}

Test(huge_pages, a_discarded_huge_page_lets_go_of_its_parts_and_reads_zero)
{
	struct guest g;
	const size_t size = 4 * MIB, pages = size / PAGE;
	huge_attach(&g, "discard", size, 0);
	pattern_fill(g.mem, 0, pages, huge_word, 7);
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "discard", 0, true), NULL);
	cr_assert_eq(memsrv_discard(g.s, g.mem, size), 0, "discard: %s", memsrv_last_error());
	cr_assert(wait_until(parts_let_go, "discard", 5000), "the parts of discarded huge pages are still held");
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, racing_word, 0), 0, "a discarded huge page reads zeros");
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	guest_release(&g);
}

#define UNMAP_SIZE (8 * MIB)

/* huge_word of the upper half of a guest of UNMAP_SIZE, mapped alone */
static uint64_t huge_word_upper(size_t page, size_t w, uint64_t gen)
{
	return huge_word(page + UNMAP_SIZE / 2 / PAGE, w, gen);
}

Test(huge_pages, an_unmapped_range_of_huge_pages_goes_back_into_its_file)
{
	struct guest g;
	const size_t size = UNMAP_SIZE, pages = size / PAGE;
	huge_attach(&g, "unmap", size, 0);
	pattern_fill(g.mem, 0, pages, huge_word, 9);
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "unmap", 0, true), NULL);
	/* the upper half unmapped: hugetlbfs has no write(), memsrv maps it */
	cr_assert_eq(munmap(g.mem + size / 2, size / 2), 0);
	for (int tries = 0; tries < 500; tries++) {
		Memsrv__ServerMessage *m;
		Memsrv__VmInfo *i = info_of("unmap", &m);
		bool back = i->stored_pages + i->zero_pages <= pages / 2;
		memsrv__server_message__free_unpacked(m, NULL);
		if (back)
			break;
		usleep(10000);
	}
	uint8_t *again = mmap(NULL, size / 2, PROT_READ, MAP_SHARED, g.fd, (off_t)(size / 2));
	cr_assert_neq(again, MAP_FAILED);
	cr_assert_eq(pattern_count_bad(again, 0, pages / 2, huge_word_upper, 9), 0);
	munmap(again, size / 2);
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages / 2, huge_word, 9), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	munmap(g.mem, size / 2);
	close(g.fd);
}
