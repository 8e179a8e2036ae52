/* Description: memsrv-ctl snapshot writes an image of a VM's memory that is
 * its RAM byte for byte: paused, with pages in the store (taken as they
 * are, shared ones once) and, while a writer keeps writing, the memory of
 * one instant; refusals name their field and leave memsrv and the VM
 * unharmed; a snapshot that fails leaves no image and the guest writable. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child_vmm.h"
#include "codec.h"
#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "image.h"
#include "memsrv.h"

#define PAGE GUEST_PAGE

static struct test_server srv;
static char dir[64], mounted[80];

static void setup(void)
{
	server_start(&srv);
	cr_assert(scratch_make(dir, sizeof dir, "/var/tmp/memsrv-snapshot.XXXXXX"));
}

static void teardown(void)
{
	if (mounted[0])
		umount2(mounted, MNT_DETACH);
	mounted[0] = 0;
	server_stop(&srv);
	scratch_remove(dir);
}

TestSuite(snapshot, .init = setup, .fini = teardown, .timeout = 180);


static Memsrv__ServerMessage *snapshot(const char *vm, const char *into)
{
	Memsrv__ServerMessage *m;
	int ret = ctl_snapshot(srv.sock, vm, into, &m);
	cr_assert_eq(ret, 0, "snapshot request: %s", strerror(-ret));
	return m;
}

static Memsrv__SnapshotReply *snapshot_ok(const char *vm, const char *into, Memsrv__ServerMessage **m)
{
	*m = snapshot(vm, into);
	cr_assert_eq((*m)->msg_case, MEMSRV__SERVER_MESSAGE__MSG_SNAPSHOT_REPLY, "snapshot refused: %s",
		     (*m)->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? (*m)->error->message : "?");
	return (*m)->snapshot_reply;
}

/* The refusal's errno and field; the reply is freed. */
static void expect_refused(Memsrv__ServerMessage *m, int err, const char *field, const char *says)
{
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "expected a refusal");
	cr_assert_eq(m->error->errno_code, err, "errno %d (%s), wanted %d", m->error->errno_code, m->error->message,
		     err);
	if (field)
		cr_assert(m->error->field && !strcmp(m->error->field, field), "field %s, wanted %s",
			  m->error->field ? m->error->field : "none", field);
	if (says)
		cr_assert(strstr(m->error->message, says), "'%s' does not say '%s'", m->error->message, says);
	memsrv__server_message__free_unpacked(m, NULL);
}

/* Pages of the image in dir that differ from mem (pages of 4 KiB). */
static size_t image_count_bad(const char *in, const uint8_t *mem, size_t pages)
{
	struct image *img;
	char why[256];
	int ret = image_open(in, &img, why, sizeof why);
	cr_assert_eq(ret, 0, "image_open: %s (%s)", strerror(-ret), why);
	cr_assert_eq(image_get_info(img)->pages, pages);
	struct codec_ctx *ctx = codec_ctx_create();
	static uint8_t page[PAGE];
	size_t bad = 0;
	for (size_t p = 0; p < pages; p++) {
		ret = image_read_page(img, ctx, p, page);
		cr_assert_eq(ret, 0, "page %zu: %s", p, strerror(-ret));
		bad += memcmp(page, mem + p * PAGE, PAGE) != 0;
	}
	codec_ctx_destroy(ctx);
	image_close(img);
	return bad;
}

static bool file_exists(const char *in, const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", in, name);
	return access(path, F_OK) == 0;
}

Test(snapshot, a_paused_vm_image_is_its_ram_with_stored_pages_taken_as_they_are)
{
	struct guest g;
	guest_attach(&g, &srv, "paused", 16 << 20, NULL);
	size_t pages = g.size / PAGE;
	pattern_fill(g.mem, 0, pages, pattern_mixed, 1);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "paused", 8 << 20, false);
	uint64_t stored = m->evict_reply->stored_pages;
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_gt(stored, 0);

	Memsrv__SnapshotReply *r = snapshot_ok("paused", dir, &m);
	cr_assert_eq(r->pages, pages);
	cr_assert_eq(r->zero_pages + r->samefilled_pages + r->object_pages, pages);
	cr_assert_geq(r->zero_pages, pages / 7, "every 7th page is zero");
	cr_assert_geq(r->samefilled_pages, pages / 11 - pages / 77 - 1, "every 11th is one word");
	cr_assert_gt(r->stored_objects, 0, "the evicted pages' objects are taken from the store");
	cr_assert_leq(r->stored_objects, stored);
	cr_assert_eq(r->objects, r->object_pages, "every page is distinct: one object each");
	cr_assert_lt(r->data_bytes, g.size / 4, "the pattern compresses, in the store and in the image");
	cr_assert_geq(r->file_bytes, r->data_bytes);
	cr_assert_gt(r->duration_ns, 0);
	cr_assert_str_eq(r->path, strcat(strcpy((char[128]){ 0 }, dir), "/" IMAGE_FILE));
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert(file_exists(dir, IMAGE_FILE));
	cr_assert_not(file_exists(dir, IMAGE_PARTIAL_FILE));

	/* the image first: reading RAM faults the stored pages back */
	cr_assert_eq(image_count_bad(dir, g.mem, pages), 0);
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, pattern_mixed, 1), 0, "the VM is served as before");
	/* and it stays writable: a snapshot leaves no page protected */
	pattern_fill(g.mem, 0, pages, pattern_mixed, 2);
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, pattern_mixed, 2), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* Four contents over all pages: shared in the store, once in the image. */
static uint64_t four_contents(size_t page, size_t w, uint64_t gen)
{
	return (page % 4 + 1) << 32 | w | gen << 60;
}

Test(snapshot, pages_sharing_an_object_in_the_store_share_it_in_the_image)
{
	struct guest g;
	guest_attach(&g, &srv, "shared", 4 << 20, NULL);
	size_t pages = g.size / PAGE;
	pattern_fill(g.mem, 0, pages, four_contents, 1);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "shared", 0, true);
	cr_assert_eq(m->evict_reply->stored_pages, pages);
	memsrv__server_message__free_unpacked(m, NULL);

	Memsrv__SnapshotReply *r = snapshot_ok("shared", dir, &m);
	cr_assert_eq(r->object_pages, pages);
	cr_assert_eq(r->objects, 4, "four contents are four objects, not %lu", (unsigned long)r->objects);
	cr_assert_eq(r->stored_objects, 4);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(image_count_bad(dir, g.mem, pages), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* ---- a running guest ----
 * The writer writes word 0 of random pages with a sequence number, one
 * 8-byte store each (no page is ever half written), and logs which page
 * each number went to.  An image of one instant holds, for every page,
 * the last number written to it up to some number M, and M is the
 * largest number in the image: a page that shows an older number than
 * the log says it had at M was saved later than another page was, i.e.
 * not at the instant.  Without the WP hook that saves a page before the
 * write goes on, the walk reads pages as it reaches them and this fails. */
#define LOG_MAX (16u << 20)

struct writer {
	struct guest *g;
	size_t pages;
	uint32_t *log;            /* log[seq] = page written with seq */
	_Atomic uint64_t seq;     /* the last number written */
	_Atomic bool stop;
};

static uint64_t rest_of(size_t page, size_t w, uint64_t gen)
{
	(void)gen;
	return w == 0 ? 0 : (uint64_t)page << 20 | w;
}

static void *writer_main(void *arg)
{
	struct writer *wr = arg;
	uint64_t x = 0x2545f4914f6cdd1dull;
	while (!atomic_load(&wr->stop)) {
		uint64_t seq = atomic_load(&wr->seq) + 1;
		if (seq >= LOG_MAX) {
			usleep(1000);  /* the log is full: the test ends soon */
			continue;
		}
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t page = (size_t)(x % wr->pages);
		wr->log[seq] = (uint32_t)page;
		__atomic_store_n((uint64_t *)(wr->g->mem + page * PAGE), seq, __ATOMIC_RELEASE);
		atomic_store(&wr->seq, seq);
	}
	return NULL;
}

/* Pages of the image that are not as they were at the instant the image
 * holds: the instant after the largest sequence number it shows. */
static size_t image_count_inconsistent(const char *in, const struct writer *wr, uint64_t *instant)
{
	struct image *img;
	char why[256];
	cr_assert_eq(image_open(in, &img, why, sizeof why), 0, "%s", why);
	struct codec_ctx *ctx = codec_ctx_create();
	uint64_t *seen = calloc(wr->pages, sizeof *seen), *had = calloc(wr->pages, sizeof *had);
	static uint8_t page[PAGE];
	size_t bad = 0;
	uint64_t max = 0;
	for (size_t p = 0; p < wr->pages; p++) {
		cr_assert_eq(image_read_page(img, ctx, p, page), 0);
		memcpy(&seen[p], page, 8);
		max = seen[p] > max ? seen[p] : max;
		/* the rest of the page is never written: it must be intact */
		for (size_t w = 1; w < PAGE / 8; w++)
			if (((const uint64_t *)page)[w] != rest_of(p, w, 0)) {
				bad++;
				break;
			}
	}
	for (uint64_t s = 1; s <= max; s++)
		had[wr->log[s]] = s;
	for (size_t p = 0; p < wr->pages; p++)
		bad += seen[p] != had[p];
	*instant = max;
	free(seen);
	free(had);
	codec_ctx_destroy(ctx);
	image_close(img);
	return bad;
}

/* The writer's guest of 64 MiB, held to limit (0: none), a third of it
 * evicted first: writes to those pages fault MISSING and are filled (and
 * under a limit evict others) while the image is written. */
static void expect_one_instant(uint64_t limit)
{
	struct guest g;
	guest_attach(&g, &srv, "running", 64 << 20, &(struct memsrv_vm){ .limit_bytes = limit });
	struct writer wr = { .g = &g, .pages = g.size / PAGE };
	wr.log = calloc(LOG_MAX, sizeof *wr.log);
	cr_assert_not_null(wr.log);
	pattern_fill(g.mem, 0, wr.pages, rest_of, 0);
	/* a third in the store: writes to them fault MISSING and are filled */
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "running", g.size / 3, false);
	memsrv__server_message__free_unpacked(m, NULL);

	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, writer_main, &wr), 0);
	while (atomic_load(&wr.seq) < 10000)
		usleep(1000);
	uint64_t before, after;
	Memsrv__SnapshotReply *r;
	/* the test needs writes during the snapshot: a writer the scheduler
	 * starved meanwhile (a loaded machine) makes it take another */
	for (unsigned tries = 1;; tries++) {
		before = atomic_load(&wr.seq);
		r = snapshot_ok("running", dir, &m);
		after = atomic_load(&wr.seq);
		if (after - before > 100 || tries == 3)
			break;
		cr_log_warn("the writer wrote only %lu pages during snapshot %u: again", (unsigned long)(after - before),
			    tries);
		memsrv__server_message__free_unpacked(m, NULL);
		char path[128];
		snprintf(path, sizeof path, "%s/%s", dir, IMAGE_FILE);
		cr_assert_eq(unlink(path), 0);
	}
	atomic_store(&wr.stop, true);
	pthread_join(t, NULL);
	cr_assert_gt(after - before, 100, "the writer wrote only %lu pages during the snapshot: no test",
		     (unsigned long)(after - before));
	uint64_t writes_saved = r->writes_saved, max_pause_ns = r->max_pause_ns;
	cr_log_info("64 MiB, limit %lu MiB: snapshot %.1f ms, %lu writes during it, %lu saved first, longest wait %.1f us",
		    (unsigned long)(limit >> 20), r->duration_ns / 1e6, (unsigned long)(after - before),
		    (unsigned long)writes_saved, max_pause_ns / 1e3);
	memsrv__server_message__free_unpacked(m, NULL);

	uint64_t instant;
	size_t bad = image_count_inconsistent(dir, &wr, &instant);
	cr_assert_eq(bad, 0, "%zu pages are not as they were at the instant after write %lu", bad,
		     (unsigned long)instant);
	cr_assert(instant >= before && instant <= after, "the instant (after write %lu) is not between the request "
		  "(%lu) and the reply (%lu)", (unsigned long)instant, (unsigned long)before, (unsigned long)after);
	cr_assert_gt(writes_saved, 0, "no write waited for its page to be saved");
	cr_assert_gt(max_pause_ns, 0);
	cr_assert_lt(max_pause_ns, 1000000000ull, "a write waited %lu ns", (unsigned long)max_pause_ns);
	free(wr.log);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

Test(snapshot, a_running_vm_image_is_its_memory_at_one_instant)
{
	expect_one_instant(0);
}

Test(snapshot, a_running_vm_at_its_limit_evicting_meanwhile_is_imaged_at_one_instant)
{
	expect_one_instant(40 << 20);
}

/* ---- refusals: each names its field, and nothing is harmed ---- */

static void expect_served(struct guest *g, uint64_t gen)
{
	cr_assert(server_alive(&srv));
	pattern_fill(g->mem, 0, g->size / PAGE, pattern_mixed, gen);
	cr_assert_eq(pattern_count_bad(g->mem, 0, g->size / PAGE, pattern_mixed, gen), 0);
	cr_assert_not(file_exists(dir, IMAGE_PARTIAL_FILE));
}

Test(snapshot, refusals_name_their_field_and_leave_the_vm_served)
{
	struct guest g;
	guest_attach(&g, &srv, "refused", 4 << 20, NULL);
	pattern_fill(g.mem, 0, g.size / PAGE, pattern_mixed, 1);

	expect_refused(snapshot("nosuch", dir), ENOENT, "snapshot.name", "nosuch");
	expect_served(&g, 2);
	expect_refused(snapshot("refused", "relative/dir"), EINVAL, "snapshot.dir", "absolute");
	expect_served(&g, 3);
	char missing[128];
	snprintf(missing, sizeof missing, "%s/missing", dir);
	expect_refused(snapshot("refused", missing), ENOENT, "snapshot.dir", NULL);
	char file[128];
	snprintf(file, sizeof file, "%s/a-file", dir);
	int fd = open(file, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	expect_refused(snapshot("refused", file), ENOTDIR, "snapshot.dir", "not a directory");
	expect_served(&g, 4);

	Memsrv__ServerMessage *m;
	snapshot_ok("refused", dir, &m);
	memsrv__server_message__free_unpacked(m, NULL);
	expect_refused(snapshot("refused", dir), EEXIST, "snapshot.dir", "image");
	expect_served(&g, 5);
	/* the first image is left as it was: the RAM of generation 4 */
	pattern_fill(g.mem, 0, g.size / PAGE, pattern_mixed, 4);
	cr_assert_eq(image_count_bad(dir, g.mem, g.size / PAGE), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

Test(snapshot, a_vm_that_cannot_be_write_protected_is_refused)
{
	size_t size = 4 << 20;
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct memsrv_region reg = { .host_addr = mem, .size = size, .fd = -1 };
	struct memsrv_vm vm = { .name = "anon", .regions = &reg, .n_regions = 1 };
	struct memsrv_session *s;
	cr_assert_eq(memsrv_attach(srv.sock, &vm, &s), 0, "attach: %s", memsrv_last_error());
	expect_refused(snapshot("anon", dir), EOPNOTSUPP, "snapshot.name", "anonymous");
	cr_assert_not(file_exists(dir, IMAGE_FILE));
	memset(mem, 7, size);  /* still served */
	cr_assert_eq(mem[size - 1], 7);
	cr_assert_geq(memsrv_detach(s, MEMSRV_DETACH_RESTORE), 0);
	munmap(mem, size);
}

Test(snapshot, a_snapshot_that_fails_leaves_no_image_and_the_guest_writable)
{
	/* a directory too small for the image: the writes fail mid-way */
	snprintf(mounted, sizeof mounted, "%s/small", dir);
	cr_assert_eq(mkdir(mounted, 0700), 0);
	if (mount("tmpfs", mounted, "tmpfs", 0, "size=64k")) {
		mounted[0] = 0;
		cr_skip_test("cannot mount a tmpfs: %s", strerror(errno));
	}
	struct guest g;
	guest_attach(&g, &srv, "full", 16 << 20, NULL);
	/* incompressible: the image needs about 16 MiB */
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < g.size; i += 8) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(g.mem + i, &x, 8);
	}
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "full", 4 << 20, false);
	memsrv__server_message__free_unpacked(m, NULL);
	m = snapshot("full", mounted);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "an image of 16 MiB fitted in 64 KiB");
	cr_assert(strstr(m->error->message, "full") || m->error->errno_code == ENOSPC, "%s", m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_not(file_exists(mounted, IMAGE_FILE));
	cr_assert_not(file_exists(mounted, IMAGE_PARTIAL_FILE));
	/* every page writable again, the stored ones served */
	for (size_t i = 0; i < g.size; i += PAGE)
		g.mem[i] ^= 1;
	cr_assert(server_alive(&srv));
	m = ctl_info_ok(&srv, "full");
	cr_assert_eq(m->vm_info->pages_poisoned, 0);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

Test(snapshot, memsrv_ctl_snapshot_takes_a_relative_dir_and_prints_the_reply)
{
	struct guest g;
	guest_attach(&g, &srv, "ctl", 4 << 20, NULL);
	pattern_fill(g.mem, 0, g.size / PAGE, pattern_mixed, 1);
	char cmd[512], out[4096];
	snprintf(cmd, sizeof cmd, "cd %s && mkdir img && %s --socket %s --json snapshot ctl img", dir,
		 getenv("CTL_BIN"), srv.sock);
	cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
	cr_assert(strstr(out, "\"pages\":1024"), "%s", out);
	cr_assert(strstr(out, "/img/" IMAGE_FILE), "the path memsrv wrote is absolute: %s", out);
	char img[128];
	snprintf(img, sizeof img, "%s/img", dir);
	cr_assert(file_exists(img, IMAGE_FILE));
	snprintf(cmd, sizeof cmd, "cd %s && %s --socket %s snapshot ctl img 2>&1", dir, getenv("CTL_BIN"), srv.sock);
	cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "a second image in the same place is refused: %s", out);
	cr_assert(strstr(out, "snapshot.dir"), "%s", out);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* Half of each page noise: compressed to about half, the cache overflows. */
static uint64_t half_noise(size_t page, size_t w, uint64_t gen)
{
	uint64_t x = (page * 512 + w) * 0x9e3779b97f4a7c15ull + gen;
	x ^= x >> 29;
	return w % 2 ? x * 0xbf58476d1ce4e5b9ull : page;
}

Test(snapshot, pages_in_swap_go_into_the_image_as_they_were_written_there)
{
	server_stop(&srv);
	char swap[128];
	snprintf(swap, sizeof swap, "%s:64M", dir);
	const char *opts[] = { "--cache-size", "1M", "--swap-dir", swap, NULL };
	server_start_with(&srv, opts);
	struct guest g;
	guest_attach(&g, &srv, "swapped", 16 << 20, NULL);
	size_t pages = g.size / PAGE;
	pattern_fill(g.mem, 0, pages, half_noise, 1);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "swapped", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_gt(st->swap_objects, 1000, "most pages went to swap");
	memsrv__server_message__free_unpacked(m, NULL);

	char into[128];
	snprintf(into, sizeof into, "%s/img", dir);
	cr_assert_eq(mkdir(into, 0700), 0);
	Memsrv__SnapshotReply *r = snapshot_ok("swapped", into, &m);
	cr_assert_gt(r->stored_objects, 1000, "taken from swap as they are: %lu", (unsigned long)r->stored_objects);
	memsrv__server_message__free_unpacked(m, NULL);
	st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->swap_read_errors, 0);
	cr_assert_eq(st->swap_checksum_errors, 0);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(image_count_bad(into, g.mem, pages), 0);
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, half_noise, 1), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* A VMM in a child: killing memsrv under it must not hang the test. */
static void big_vmm(void *arg, int cmd, int ans)
{
	const char *sock = arg;
	struct guest g;
	child_guest_map(&g, ans, "killed", 256 << 20, false);
	child_guest_attach(&g, ans, sock, "killed", NULL);
	uint64_t x = 88172645463325252ull;  /* incompressible: the image is large and slow to write */
	for (size_t i = 0; i < g.size; i += 8) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(g.mem + i, &x, 8);
	}
	child_say_ready(ans, &g);
	char c;
	while (read(cmd, &c, 1) > 0) {
	}
	_exit(0);
}

static void *snapshot_in_background(void *arg)
{
	Memsrv__ServerMessage *m = NULL;
	if (ctl_snapshot(srv.sock, "killed", arg, &m) == 0)
		memsrv__server_message__free_unpacked(m, NULL);
	return NULL;
}

Test(snapshot, memsrv_killed_during_a_snapshot_leaves_no_image)
{
	struct test_child v;
	child_fork(&v, big_vmm, srv.sock);
	struct child_ready ready;
	cr_assert(child_vmm_wait_ready(&v, &ready, 60000), "the VMM did not attach");
	cr_assert_eq(ready.err, 0, "%s", ready.why);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, snapshot_in_background, dir), 0);
	bool seen = false;
	for (int i = 0; i < 20000 && !seen && !file_exists(dir, IMAGE_FILE); i++) {
		seen = file_exists(dir, IMAGE_PARTIAL_FILE);
		if (!seen)
			usleep(100);
	}
	cr_assert(seen, "the image was never being written (done already: %d)", file_exists(dir, IMAGE_FILE));
	usleep(20000);  /* well into it */
	server_crash_and_restart(&srv, NULL);
	pthread_join(t, NULL);
	cr_assert_not(file_exists(dir, IMAGE_FILE), "a killed snapshot left a memory.img: it would pass for complete");
	child_kill(&v);
}
