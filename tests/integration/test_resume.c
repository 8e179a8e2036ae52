/* Description: a VM attached with Hello.snapshot_dir runs from the memory
 * image memsrv-ctl snapshot wrote: every page as it was, read lazily from
 * the image (zero pages never read), its own writes its own (clones of one
 * image stay apart), a discard reads zeros; the pages it touched first are
 * recorded in the next image and installed before they fault on the next
 * resume; a snapshot of a resumed VM copies what is still in the image; a
 * memsrv killed meanwhile comes back on its --state-dir and serves on; an
 * image that does not fit, a region that is not empty and a corrupt image
 * are refused, naming the field. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "image.h"
#include "memsrv.h"

#define PAGE GUEST_PAGE
#define SIZE (16u << 20)
#define PAGES (SIZE / PAGE)

static struct test_server srv;
static char dir[64];
static char img1[128], img2[128], img3[128];

static void setup(void)
{
	cr_assert(scratch_make(dir, sizeof dir, "/var/tmp/memsrv-resume.XXXXXX"));
	snprintf(img1, sizeof img1, "%s/one", dir);
	snprintf(img2, sizeof img2, "%s/two", dir);
	snprintf(img3, sizeof img3, "%s/three", dir);
	cr_assert_eq(mkdir(img1, 0700), 0);
	cr_assert_eq(mkdir(img2, 0700), 0);
	cr_assert_eq(mkdir(img3, 0700), 0);
}

static void teardown(void)
{
	server_stop(&srv);
	scratch_remove(dir);
}

TestSuite(resume, .init = setup, .fini = teardown, .timeout = 180);


static size_t nonzero_pages(size_t pages)
{
	size_t n = 0;
	for (size_t p = 0; p < pages; p++)
		n += p % 7 != 0;
	return n;
}

/* A VM named name of SIZE with the pattern of generation gen, part of it
 * evicted, written as an image into into, and gone. */
static void make_image(const char *name, const char *into, uint64_t gen)
{
	struct guest g;
	guest_attach(&g, &srv, name, SIZE, NULL);
	pattern_fill(g.mem, 0, PAGES, pattern_mixed, gen);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, name, SIZE / 2, false);
	memsrv__server_message__free_unpacked(m, NULL);
	ctl_snapshot_ok(&srv, name, into);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

static void attach_from(struct guest *g, const char *name, const char *from, const struct memsrv_vm *with)
{
	struct memsrv_vm vm = with ? *with : (struct memsrv_vm){ 0 };
	vm.snapshot_dir = from;
	guest_attach(g, &srv, name, SIZE, &vm);
}

static int try_attach_from(struct guest *g, const char *name, size_t size, const char *from)
{
	int ret = guest_try_map(g, name, size, false);
	cr_assert_eq(ret, 0);
	struct memsrv_vm vm = { .snapshot_dir = from };
	return guest_try_attach(g, srv.sock, name, &vm);
}

#define INFO(vm, field) ctl_info_u64(&srv, vm, offsetof(Memsrv__VmInfo, field))

/* A memsrv whose store has no room to spare: what a resumed VM does not
 * touch stays in the image. */
static void server_start_small_store(void)
{
	const char *opts[] = { "--cache-size", "64K", NULL };
	server_start_with(&srv, opts);
}

Test(resume, a_resumed_vm_reads_every_page_from_the_image_and_only_what_it_touches)
{
	server_start_small_store();
	make_image("source", img1, 1);
	struct guest g;
	attach_from(&g, "resumed", img1, &(struct memsrv_vm){ .limit_bytes = SIZE / 4 });
	/* the background moves pages meanwhile, which one reading of info may
	 * count in neither (never in both: a unit it marks meanwhile is
	 * counted once): read again until two readings agree */
	uint64_t from_image = 0, in_store = 0;
	for (int i = 0; i < 100; i++) {
		Memsrv__ServerMessage *m = ctl_info_ok(&srv, "resumed");
		bool same = i && m->vm_info->image_pages == from_image && m->vm_info->stored_pages == in_store;
		from_image = m->vm_info->image_pages;
		in_store = m->vm_info->stored_pages;
		memsrv__server_message__free_unpacked(m, NULL);
		if (same)
			break;
		usleep(50000);
	}
	cr_assert_leq(from_image + in_store, nonzero_pages(PAGES));
	cr_assert_geq(from_image + in_store, nonzero_pages(PAGES) - 64,
		      "every page but the zero ones comes from the image, or the store took it from there");
	cr_assert_gt(from_image, PAGES / 2, "the store has little room to spare (%lu)", (unsigned long)from_image);
	cr_assert_leq(INFO("resumed", resident_bytes), SIZE / 4, "nothing is read before it is needed");

	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES, pattern_mixed, 1), 0, "the VM is its image");
	cr_assert_gt(INFO("resumed", faults_image), 0, "pages came from the image on faults");
	cr_assert_eq(INFO("resumed", fault_errors), 0);
	/* its own writes are its own, evicted and read back */
	pattern_fill(g.mem, 0, PAGES, pattern_mixed, 2);
	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES, pattern_mixed, 2), 0);
	cr_assert_eq(INFO("resumed", image_pages), 0, "every page was read once");
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

Test(resume, a_detach_with_restore_brings_back_the_pages_still_in_the_image)
{
	server_start_small_store();
	make_image("source", img1, 1);
	struct guest g;
	attach_from(&g, "resumed", img1, &(struct memsrv_vm){ .limit_bytes = SIZE / 8 });
	cr_assert_gt(INFO("resumed", image_pages), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	/* unregistered: what is not in the memfd now reads as zeros */
	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES, pattern_mixed, 1), 0, "every page was put back before the detach");
	guest_release(&g);
}

Test(resume, clones_of_one_image_each_see_it_and_keep_their_writes_apart)
{
	server_start(&srv);
	make_image("source", img1, 1);
	struct guest a, b;
	attach_from(&a, "clone-a", img1, NULL);
	attach_from(&b, "clone-b", img1, NULL);
	cr_assert_eq(pattern_count_bad(a.mem, 0, PAGES / 2, pattern_mixed, 1), 0);
	pattern_fill(a.mem, 0, PAGES / 2, pattern_mixed, 2);
	cr_assert_eq(pattern_count_bad(b.mem, 0, PAGES, pattern_mixed, 1), 0, "a's writes are not b's");
	cr_assert_eq(pattern_count_bad(a.mem, 0, PAGES / 2, pattern_mixed, 2), 0);
	cr_assert_eq(pattern_count_bad(a.mem, PAGES / 2, PAGES, pattern_mixed, 1), 0);
	cr_assert_geq(memsrv_detach(a.s, 0), 0);
	cr_assert_geq(memsrv_detach(b.s, 0), 0);
	guest_release(&a);
	guest_release(&b);
}

static uint64_t store_stat(size_t offset)
{
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	uint64_t v;
	memcpy(&v, (const char *)st + offset, sizeof v);
	memsrv__server_message__free_unpacked(m, NULL);
	return v;
}

#define STAT(field) store_stat(offsetof(Memsrv__NodeStats, field))

static bool all_read(void *arg)
{
	return INFO((const char *)arg, image_pages) == 0;
}

Test(resume, the_rest_goes_into_the_store_once_for_every_clone)
{
	server_start(&srv);
	make_image("source", img1, 1);
	uint64_t before = STAT(cache_bytes);
	struct guest a, b;
	attach_from(&a, "clone-a", img1, NULL);
	cr_assert(wait_until(all_read, "clone-a", 10000), "the background moves every page into the store");
	uint64_t one = STAT(cache_bytes) - before;
	cr_assert_gt(one, 0);
	cr_assert_eq(INFO("clone-a", resident_bytes), 0, "into the store, not into the VM");
	attach_from(&b, "clone-b", img1, NULL);
	cr_assert(wait_until(all_read, "clone-b", 10000));
	uint64_t two = STAT(cache_bytes) - before;
	cr_assert_leq(two, one + one / 5, "two clones hold at most 1.2x what one does in the store (%lu, %lu)",
		      (unsigned long)one, (unsigned long)two);
	cr_assert_eq(pattern_count_bad(a.mem, 0, PAGES, pattern_mixed, 1), 0);
	pattern_fill(b.mem, 0, PAGES / 2, pattern_mixed, 2);
	cr_assert_eq(pattern_count_bad(b.mem, 0, PAGES / 2, pattern_mixed, 2), 0);
	cr_assert_eq(pattern_count_bad(b.mem, PAGES / 2, PAGES, pattern_mixed, 1), 0);
	cr_assert_eq(INFO("clone-a", faults_image) + INFO("clone-b", faults_image), 0, "every fault was from memory");
	cr_assert_geq(memsrv_detach(a.s, 0), 0);
	cr_assert_geq(memsrv_detach(b.s, 0), 0);
	guest_release(&a);
	guest_release(&b);
}

Test(resume, a_discarded_page_of_the_image_reads_zeros)
{
	server_start_small_store();
	make_image("source", img1, 1);
	struct guest g;
	attach_from(&g, "resumed", img1, &(struct memsrv_vm){ .limit_bytes = SIZE / 8 });
	size_t p = PAGES - 3;  /* past the limit: still in the image */
	cr_assert_neq(p % 7, 0);
	cr_assert_eq(memsrv_discard(g.s, g.mem + p * PAGE, PAGE), 0);
	uint8_t zeros[PAGE] = { 0 };
	cr_assert_eq(pattern_count_bad(g.mem, 0, p, pattern_mixed, 1), 0);
	cr_assert_eq(memcmp(g.mem + p * PAGE, zeros, PAGE), 0, "the discarded page reads zeros, not the image");
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

#define BIG (128u << 20)  /* 8 mark units (image_pages.h) */
#define BIG_PAGES (BIG / PAGE)

/* A VM of BIG with the pattern of generation gen, written as an image into
 * img1, and gone. */
static void make_big_image(uint64_t gen)
{
	struct guest g;
	guest_attach(&g, &srv, "big", BIG, NULL);
	pattern_fill(g.mem, 0, BIG_PAGES, pattern_mixed, gen);
	ctl_snapshot_ok(&srv, "big", img1);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

/* A VM of several mark units (image_pages.h): the table learns the image's
 * pages a unit at a time, the background from the first one.  A discard
 * of the last unit the moment the VM runs, a snapshot, and faults all over
 * see what they should, whichever units are marked by then. */
Test(resume, a_vm_of_many_units_discarded_snapshotted_and_read_at_once_reads_right)
{
	enum { GONE = 100 };
	server_start_small_store();
	make_big_image(3);
	struct guest g;
	guest_attach(&g, &srv, "again", BIG, &(struct memsrv_vm){ .snapshot_dir = img1 });
	size_t from = BIG_PAGES - GONE;
	cr_assert_eq(memsrv_discard(g.s, g.mem + from * PAGE, GONE * PAGE), 0);
	ctl_snapshot_ok(&srv, "again", img2);
	uint8_t zeros[PAGE] = { 0 };
	for (size_t p = from; p < BIG_PAGES; p++)
		cr_assert_eq(memcmp(g.mem + p * PAGE, zeros, PAGE), 0, "discarded page %zu reads zeros, not the image", p);
	for (size_t p = BIG_PAGES / 2; p < from; p += 4099)
		cr_assert_eq(pattern_count_bad(g.mem, p, p + 1, pattern_mixed, 3), 0, "page %zu", p);
	cr_assert_eq(pattern_count_bad(g.mem, 0, from, pattern_mixed, 3), 0);
	cr_assert_eq(INFO("again", fault_errors), 0);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);

	/* the snapshot taken at once holds the image's pages, and zeros where discarded */
	guest_attach(&g, &srv, "third", BIG, &(struct memsrv_vm){ .snapshot_dir = img2 });
	cr_assert_eq(pattern_count_bad(g.mem, 0, from, pattern_mixed, 3), 0);
	for (size_t p = from; p < BIG_PAGES; p++)
		cr_assert_eq(memcmp(g.mem + p * PAGE, zeros, PAGE), 0, "page %zu of the second image", p);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

/* Pages of the image in from that differ from mem. */
static size_t image_count_bad(const char *from, const uint8_t *mem, size_t pages)
{
	struct image *img;
	char why[256];
	int ret = image_open(from, &img, why, sizeof why);
	cr_assert_eq(ret, 0, "image_open: %s (%s)", strerror(-ret), why);
	struct codec_ctx *ctx = codec_ctx_create();
	static uint8_t page[PAGE];
	size_t bad = 0;
	for (size_t p = 0; p < pages; p++) {
		cr_assert_eq(image_read_page(img, ctx, p, page), 0);
		bad += memcmp(page, mem + p * PAGE, PAGE) != 0;
	}
	codec_ctx_destroy(ctx);
	image_close(img);
	return bad;
}

Test(resume, a_snapshot_of_a_resumed_vm_copies_what_is_still_in_the_image)
{
	server_start_small_store();
	make_image("source", img1, 1);
	struct guest g;
	attach_from(&g, "resumed", img1, &(struct memsrv_vm){ .limit_bytes = SIZE / 8 });
	pattern_fill(g.mem, 0, 16, pattern_mixed, 2);  /* a few of its own */
	cr_assert_gt(INFO("resumed", image_pages), PAGES / 2, "most of it is still in the image");
	ctl_snapshot_ok(&srv, "resumed", img2);
	/* the comparison reads the RAM: after the image, not before */
	uint8_t *want = malloc(SIZE);
	pattern_fill(want, 0, PAGES, pattern_mixed, 1);
	pattern_fill(want, 0, 16, pattern_mixed, 2);
	cr_assert_eq(image_count_bad(img2, want, PAGES), 0, "the new image is the VM, page for page");
	free(want);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

/* Touches pages in an order of their own, a read each. */
static void touch(const struct guest *g, const size_t *pages, size_t n)
{
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < n; i++)
		sink += g->mem[pages[i] * PAGE + 8];
	(void)sink;
}

static bool resident_at_least(void *arg)
{
	return INFO("warm", resident_bytes) >= *(uint64_t *)arg;
}

Test(resume, the_pages_touched_first_are_recorded_and_installed_first_next_time)
{
	server_start_small_store();
	make_image("source", img1, 1);
	enum { N = 300 };
	size_t order[N];
	for (size_t i = 0; i < N; i++)
		order[i] = (i * 2654435761u) % (PAGES - 7) / 7 * 7 + 1;  /* scattered, never a zero page */

	struct guest g;
	attach_from(&g, "first", img1, &(struct memsrv_vm){ .limit_bytes = SIZE / 8 });
	touch(&g, order, N);
	ctl_snapshot_ok(&srv, "first", img2);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);

	struct image *img;
	char why[256];
	cr_assert_eq(image_open(img2, &img, why, sizeof why), 0, "%s", why);
	uint64_t n;
	const uint64_t *ft = image_first_touch(img, &n);
	size_t distinct = 0;
	for (size_t i = 0; i < N; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = order[j] == order[i];
		distinct += !seen;
	}
	cr_assert_eq(n, distinct, "the %zu pages touched first are recorded (%lu)", distinct, (unsigned long)n);
	cr_assert_eq(ft[0], order[0]);
	cr_assert_eq(ft[1], order[1]);
	image_close(img);

	/* resumed from the second image: installed before they are touched */
	attach_from(&g, "warm", img2, &(struct memsrv_vm){ .limit_bytes = SIZE / 8 });
	uint64_t want = distinct * PAGE;
	cr_assert(wait_until(resident_at_least, &want, 5000), "the first-touch pages are installed");
	uint64_t before = INFO("warm", faults_image);
	touch(&g, order, N);
	cr_assert_eq(INFO("warm", faults_image), before, "none of them faults");
	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES, pattern_mixed, 1), 0);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

static void expect_attach_refused(int ret, int err, const char *says)
{
	cr_assert_eq(ret, -err, "attach: %s, wanted %s (%s)", strerror(-ret), strerror(err), memsrv_last_error());
	cr_assert(strstr(memsrv_last_error(), "hello.snapshot_dir"), "names the field: %s", memsrv_last_error());
	cr_assert(strstr(memsrv_last_error(), says), "'%s' does not say '%s'", memsrv_last_error(), says);
}

Test(resume, an_image_that_does_not_fit_or_a_ram_that_is_not_empty_is_refused)
{
	server_start(&srv);
	make_image("source", img1, 1);
	struct guest g;
	expect_attach_refused(try_attach_from(&g, "small", SIZE / 2, img1), EINVAL, "the image in");
	guest_release(&g);
	expect_attach_refused(try_attach_from(&g, "nowhere", SIZE, img2), ENOENT, "memory.img");
	guest_release(&g);
	expect_attach_refused(try_attach_from(&g, "relative", SIZE, "one"), EINVAL, "absolute");
	guest_release(&g);

	cr_assert_eq(guest_try_map(&g, "written", SIZE, false), 0);
	memset(g.mem, 1, 8 * PAGE);  /* RAM that holds something already */
	struct memsrv_vm vm = { .snapshot_dir = img1 };
	expect_attach_refused(guest_try_attach(&g, srv.sock, "written", &vm), EEXIST, "empty RAM");
	guest_release(&g);
	cr_assert_eq(ctl_vm_count(&srv), 0, "nothing was attached");
}

/* Flips one byte of the image file at off. */
static void flip(const char *from, off_t off)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", from, IMAGE_FILE);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

Test(resume, a_corrupt_image_is_refused_at_hello)
{
	server_start(&srv);
	make_image("source", img1, 1);
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", img1, IMAGE_FILE);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	flip(img1, st.st_size - 64 - 4);  /* in the index's chunk checksums, the last section: checked at open */
	struct guest g;
	expect_attach_refused(try_attach_from(&g, "corrupt", SIZE, img1), EBADMSG, "checksum");
	guest_release(&g);
	cr_assert(server_alive(&srv));
}

Test(resume, a_memsrv_killed_while_a_vm_runs_from_an_image_serves_it_on)
{
	char state[PATH_MAX];
	snprintf(state, sizeof state, "%s/state", dir);
	cr_assert_eq(mkdir(state, 0700), 0);
	const char *opts[] = { "--state-dir", state, "--cache-size", "64K", NULL };
	server_start_with(&srv, opts);
	make_image("source", img1, 1);
	struct guest g;
	attach_from(&g, "resumed", img1, &(struct memsrv_vm){ .limit_bytes = SIZE / 8 });
	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES / 4, pattern_mixed, 1), 0);
	uint64_t left = INFO("resumed", image_pages);
	cr_assert_gt(left, 0);

	server_crash_and_restart(&srv, opts);
	/* libmemsrv says Hello again; the table still names the image's pages */
	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES, pattern_mixed, 1), 0, "every page, from the image or the store");
	cr_assert(server_log_has(&srv, "resumed"));
	cr_assert_eq(INFO("resumed", fault_errors), 0);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

static bool removed_at_least(void *arg)
{
	return INFO("resumed", removed_pages) >= *(uint64_t *)arg;
}

/* Killed the moment a VM of many units runs from an image, memsrv marks the
 * units it had not after its restart (the state file keeps which); killed
 * again after a discard, the discarded pages stay discarded. */
Test(resume, a_memsrv_killed_before_the_units_are_marked_serves_every_page_after_its_restart)
{
	enum { GONE = 64 };
	char state[PATH_MAX];
	snprintf(state, sizeof state, "%s/state", dir);
	cr_assert_eq(mkdir(state, 0700), 0);
	const char *opts[] = { "--state-dir", state, "--cache-size", "64K", NULL };
	server_start_with(&srv, opts);
	make_big_image(5);
	struct guest g;
	guest_attach(&g, &srv, "resumed", BIG, &(struct memsrv_vm){ .snapshot_dir = img1 });
	kill(srv.pid, SIGSTOP);  /* before its background reaches the last units */
	server_crash_and_restart(&srv, opts);
	cr_assert_eq(pattern_count_bad(g.mem, BIG_PAGES / 2, BIG_PAGES, pattern_mixed, 5), 0, "the last units");
	cr_assert_eq(pattern_count_bad(g.mem, 0, BIG_PAGES, pattern_mixed, 5), 0, "every page, from the image");

	size_t from = BIG_PAGES - GONE;
	cr_assert_eq(memsrv_discard(g.s, g.mem + from * PAGE, GONE * PAGE), 0);
	/* applied (a Discard has no answer): every page of it that was not zero */
	uint64_t held = nonzero_pages(BIG_PAGES) - nonzero_pages(from);
	cr_assert(wait_until(removed_at_least, &held, 5000), "the discard is applied");
	server_crash_and_restart(&srv, opts);
	uint8_t zeros[PAGE] = { 0 };
	for (size_t p = from; p < BIG_PAGES; p++)
		cr_assert_eq(memcmp(g.mem + p * PAGE, zeros, PAGE), 0, "discarded page %zu reads zeros", p);
	cr_assert_eq(pattern_count_bad(g.mem, 0, from, pattern_mixed, 5), 0);
	cr_assert_eq(INFO("resumed", fault_errors), 0);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

static bool removed(void *arg)
{
	char why[256];
	return image_remove(arg, why, sizeof why) == 0;
}

Test(resume, an_image_cannot_be_removed_while_pages_come_from_it)
{
	server_start_small_store();
	make_image("source", img1, 1);
	struct guest g;
	attach_from(&g, "resumed", img1, NULL);
	char why[256];
	cr_assert_eq(image_remove(img1, why, sizeof why), -EBUSY, "memsrv holds it while pages come from it");
	cr_assert(strstr(why, "in use"), "%s", why);
	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES, pattern_mixed, 1), 0, "the VM reads on, from the image");
	/* every page read: memsrv lets go within a second, the VM still attached */
	cr_assert(wait_until(removed, img1, 5000), "removable once nothing comes from it");
	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES, pattern_mixed, 1), 0);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
}

Test(resume, a_detached_vm_lets_its_image_go)
{
	server_start(&srv);
	make_image("source", img1, 1);
	struct guest g;
	attach_from(&g, "resumed", img1, NULL);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	guest_release(&g);
	cr_assert(wait_until(removed, img1, 5000), "the lock goes with the VM");
}

static bool nothing_held(void *arg)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, arg);
	bool none = !m->vm_info->image_pages && !m->vm_info->stored_pages;
	memsrv__server_message__free_unpacked(m, NULL);
	return none;
}

Test(resume, an_unmapped_range_finds_the_pages_still_in_the_image_in_the_memfd)
{
	server_start_small_store();
	make_image("source", img1, 1);
	struct guest g;
	attach_from(&g, "remapper", img1, &(struct memsrv_vm){ .limit_bytes = SIZE / 8 });
	cr_assert_gt(INFO("remapper", image_pages), 0);
	cr_assert_eq(munmap(g.mem, SIZE), 0);
	/* memsrv writes what it holds back into the memfd when it reads the UNMAP event */
	cr_assert(wait_until(nothing_held, "remapper", 5000), "memsrv still holds pages of an unmapped range");
	uint8_t *again = mmap(g.mem, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, g.fd, 0);
	cr_assert_eq(again, g.mem);
	cr_assert_eq(pattern_count_bad(g.mem, 0, PAGES, pattern_mixed, 1), 0, "the image's pages went back into the file");
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	g.s = NULL;
	guest_release(&g);
}

/* ---- libmemsrv's ABI ----
 * A program built before snapshot_dir passes the smaller struct to
 * memsrv_attach@MEMSRV_0.1: whatever lies after it is never taken for a
 * snapshot_dir (here: a path that would make memsrv refuse the Hello). */
struct vm_before_snapshot_dir {
	const char *name;
	const struct memsrv_region *regions;
	unsigned n_regions;
	uint64_t guarantee_bytes, limit_bytes;
	uint32_t shares;
	const char *codec, *policy;
	unsigned flags;
};

Test(resume, a_program_built_before_snapshot_dir_attaches_through_the_old_symbol)
{
	server_start(&srv);
	void *lib = dlopen("libmemsrv.so.0", RTLD_NOW | RTLD_NOLOAD);
	cr_assert_not_null(lib, "the test links libmemsrv: %s", dlerror());
	typedef int attach_fn(const char *, const void *, struct memsrv_session **);
	attach_fn *old = (attach_fn *)dlvsym(lib, "memsrv_attach", "MEMSRV_0.1");
	attach_fn *now = (attach_fn *)dlvsym(lib, "memsrv_attach", "MEMSRV_0.4");
	cr_assert(old && now && old != now, "two versions of memsrv_attach");

	struct guest g;
	cr_assert_eq(guest_try_map(&g, "old-abi", SIZE, false), 0);
	struct memsrv_region r = { .host_addr = g.mem, .size = g.size, .fd = g.fd };
	struct {
		struct vm_before_snapshot_dir vm;
		const char *after;  /* where the new struct has snapshot_dir */
	} call = { .vm = { .name = "old-abi", .regions = &r, .n_regions = 1 }, .after = "/nonexistent" };
	_Static_assert(offsetof(typeof(call), after) == offsetof(struct memsrv_vm, snapshot_dir), "laid out alike");
	int ret = old(srv.sock, &call.vm, &g.s);
	cr_assert_eq(ret, 0, "attach through MEMSRV_0.1: %s (%s)", strerror(-ret), memsrv_last_error());
	pattern_fill(g.mem, 0, 16, pattern_mixed, 1);
	cr_assert_eq(pattern_count_bad(g.mem, 0, 16, pattern_mixed, 1), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
	dlclose(lib);
}
