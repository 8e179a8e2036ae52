/* Description: a page memsrv cannot bring back (its swap copy corrupted or
 * truncated, its copy in the memory image a VM was resumed from corrupted,
 * its object in the remote tier's cluster replaced by a forged one, or
 * no huge page to place it in) ends in SIGBUS for the thread
 * that reads it, within a bounded time, never in zeros or a wait without
 * end; every other page reads back intact; the loss is counted, shown as a
 * condition and logged with its true cause.  The VMM is a child process
 * of the test's own, linking libmemsrv, with a SIGBUS handler. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "child_vmm.h"
#include "codec.h"
#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "image.h"
#include "memsrv.h"
#include "redis_cluster_harness.h"
#include "remote_object.h"

#define PAGE 4096u
#define PAGES 2048u                /* 8 MiB: most of it spills past a 1 MiB cache */
#define RESULT_TIMEOUT_MS 60000    /* the poisoning takes ~1.5 s at most: never flakes */

static struct test_server srv;
static char scratch[64];
static long hugepages_before = -1;
static pid_t vmm_pid;  /* the VMM child while it runs */
static struct test_cluster cluster;  /* the remote tier's, for the test that has one */

static void teardown(void)
{
	if (vmm_pid > 0) {
		/* a failed test left it waiting on a fault: it would hold memsrv's shutdown */
		kill(vmm_pid, SIGKILL);
		waitpid(vmm_pid, NULL, 0);
		vmm_pid = 0;
	}
	if (srv.pid)
		server_stop(&srv);
	test_cluster_stop(&cluster);
	scratch_remove(scratch);
	if (hugepages_before >= 0)
		write_long("/proc/sys/vm/nr_hugepages", hugepages_before);
	hugepages_before = -1;
}

TestSuite(poison, .fini = teardown, .timeout = 240);

/* ---- the VMM: a child process with a SIGBUS handler ---- */

enum content {
	CONTENT_RANDOM,       /* does not compress: kept raw, in swap verbatim */
	CONTENT_HALF_RANDOM,  /* compresses to about half (LZ4 keeps the random half as literals) */
};

/* Every page starts with a tag the test finds in the swap file: the page
 * number is scrambled so that no run of equal bytes makes LZ4 split it. */
struct tag {
	char magic[8];
	uint64_t page_scrambled;
};
#define TAG_MAGIC "PoisonPg"
#define TAG_SCRAMBLE 0xa5c3e1f29b7d4e6full

static uint64_t next_random(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void page_content(uint8_t *dst, uint64_t page, enum content c)
{
	uint64_t x = page * 0x9e3779b97f4a7c15ull + 1;
	size_t random_bytes = c == CONTENT_RANDOM ? PAGE : PAGE / 2;
	for (size_t off = 0; off < PAGE; off += 8) {
		uint64_t v = off < random_bytes ? next_random(&x) : 0;
		memcpy(dst + off, &v, 8);
	}
	struct tag t = { .page_scrambled = page ^ TAG_SCRAMBLE };
	memcpy(t.magic, TAG_MAGIC, 8);
	memcpy(dst, &t, sizeof t);
}

enum read_status { PAGE_INTACT, PAGE_WRONG, PAGE_SIGBUS };

struct page_result {
	uint8_t status;     /* enum read_status */
	uint8_t again;      /* a SIGBUS page after MADV_DONTNEED: its status then */
	int32_t code;
	uint64_t addr;
};

static sigjmp_buf bus_jump;
static volatile int bus_code;
static void *volatile bus_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_code = si->si_code;
	bus_addr = si->si_addr;
	siglongjmp(bus_jump, 1);
}

/* Reads one page as a guest would; SIGBUS is caught. */
static enum read_status read_page(const uint8_t *p, uint64_t idx, enum content c, struct page_result *res)
{
	static uint8_t want[PAGE], got[PAGE];
	if (sigsetjmp(bus_jump, 1)) {
		res->code = bus_code;
		res->addr = (uint64_t)(uintptr_t)bus_addr;
		return PAGE_SIGBUS;
	}
	memcpy(got, (const void *)p, PAGE);
	page_content(want, idx, c);
	return memcmp(got, want, PAGE) ? PAGE_WRONG : PAGE_INTACT;
}

struct vmm {
	struct test_child c;
	uint8_t *base;  /* where the child mapped guest RAM (the same in the parent's view of the child) */
};

struct vmm_config {
	const char *name;
	size_t pages;       /* of page_size */
	size_t page_size;
	enum content content;
	bool huge;          /* hugetlbfs, MAP_NORESERVE, not filled */
	const char *resume_from;  /* resumed from this image: not filled */
};

/* The child: attach, fill, say ready; on 'r' read pages (all, or the first
 * for huge pages) and send a page_result each; on 'q' detach with restore
 * and exit. */
static void vmm_child(void *arg, int cmd, int res)
{
	const struct vmm_config *cfg = arg;
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
	sigaction(SIGBUS, &sa, NULL);
	struct guest g;
	child_guest_map(&g, res, cfg->name, cfg->pages * cfg->page_size, cfg->huge);
	child_guest_attach(&g, res, srv.sock, cfg->name,
			   &(struct memsrv_vm){ .codec = "lz4", .flags = MEMSRV_VM_NO_BALLOON,
						.snapshot_dir = cfg->resume_from });
	uint8_t *mem = g.mem;
	for (size_t p = 0; !cfg->huge && !cfg->resume_from && p < cfg->pages; p++)
		page_content(mem + p * PAGE, p, cfg->content);
	child_say_ready(res, &g);
	char c;
	while (read(cmd, &c, 1) == 1) {
		if (c == 'q')
			break;
		size_t n = cfg->huge ? 1 : cfg->pages;
		for (size_t p = 0; p < n; p++) {
			struct page_result pr = { 0 };
			pr.status = (uint8_t)read_page(mem + p * cfg->page_size, p, cfg->content, &pr);
			if (pr.status == PAGE_SIGBUS && !cfg->huge) {
				/* the zap drops the kernel's marker: memsrv must poison it again */
				struct page_result again = { 0 };
				madvise(mem + p * PAGE, PAGE, MADV_DONTNEED);
				pr.again = (uint8_t)read_page(mem + p * PAGE, p, cfg->content, &again);
			}
			write_full(res, &pr, sizeof pr);
		}
	}
	int ret = memsrv_detach(g.s, MEMSRV_DETACH_RESTORE);
	_exit(ret < 0 ? 2 : 0);
}

static void vmm_start(struct vmm *v, const struct vmm_config *cfg)
{
	child_fork(&v->c, vmm_child, (void *)cfg);
	vmm_pid = v->c.pid;
	struct child_ready r;
	bool got = child_vmm_wait_ready(&v->c, &r, 30000);
	if (got && r.err)
		cr_assert_fail("the VMM failed: %s", r.why);
	cr_assert(got, "the VMM never got ready");
	v->base = (uint8_t *)(uintptr_t)r.base;
}

/* Asks the VMM to read its pages; false if it did not answer in time. */
static bool vmm_read(struct vmm *v, struct page_result *out, size_t n)
{
	cr_assert_eq(write(v->c.cmd, "r", 1), 1);
	return read_full(v->c.ans, out, n * sizeof *out, RESULT_TIMEOUT_MS);
}

static int vmm_stop(struct vmm *v)
{
	if (write(v->c.cmd, "q", 1) != 1) {
		/* it is gone already */
	}
	struct pollfd p = { .fd = v->c.ans, .events = POLLIN };
	poll(&p, 1, 30000);  /* the pipe closes when it exits */
	vmm_pid = 0;
	return child_kill(&v->c);
}

/* ---- the swap file ---- */

static void start_with_swap(void)
{
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-poison.XXXXXX"));
	char arg[128];
	snprintf(arg, sizeof arg, "%s:64M", scratch);
	const char *opts[] = { "--cache-size", "1M", "--swap-dir", arg, NULL };
	server_start_with(&srv, opts);
}

static int open_swap_file(char *path, size_t len)
{
	glob_t g;
	char pattern[128];
	snprintf(pattern, sizeof pattern, "%s/memsrv-swap-*", scratch);
	cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "no swap file in %s", scratch);
	cr_assert_eq(g.gl_pathc, 1);
	snprintf(path, len, "%s", g.gl_pathv[0]);
	globfree(&g);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	return fd;
}

/* Where each page's tag is in the swap file (-1: not in swap). */
static void find_tags(int fd, int64_t *where, size_t pages)
{
	for (size_t p = 0; p < pages; p++)
		where[p] = -1;
	static uint8_t buf[1 << 20];
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	for (off_t base = 0; base < st.st_size; base += (off_t)sizeof buf) {
		/* data, not holes: skip the sparse rest */
		off_t data = lseek(fd, base, SEEK_DATA);
		if (data < 0)
			break;
		base = data & ~(off_t)(PAGE - 1);
		ssize_t n = pread(fd, buf, sizeof buf, base);
		cr_assert_geq(n, 0);
		/* at any byte: a compressed page's literals follow its token */
		for (uint8_t *hit = buf; (hit = memmem(hit, (size_t)(buf + n - hit), TAG_MAGIC, 8)); hit++) {
			struct tag t;
			if (hit + sizeof t > buf + n)
				break;
			memcpy(&t, hit, sizeof t);
			uint64_t page = t.page_scrambled ^ TAG_SCRAMBLE;
			if (page < pages)
				where[page] = base + (hit - buf);
		}
	}
}

static uint64_t swap_objects(void)
{
	Memsrv__ServerMessage *m;
	uint64_t n = ctl_stats_ok(&srv, &m)->swap_objects;
	memsrv__server_message__free_unpacked(m, NULL);
	return n;
}

static void evict_all_to_swap(const char *name, int64_t *where, size_t *in_swap)
{
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, name, 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, PAGES);
	memsrv__server_message__free_unpacked(m, NULL);
	/* writeback may go on a little after evict answers: the file must
	 * hold what it will hold before it is read and changed */
	uint64_t was = swap_objects();
	for (int still = 0; still < 3;) {
		usleep(100000);
		uint64_t now = swap_objects();
		still = now == was ? still + 1 : 0;
		was = now;
	}
	char path[256];
	int fd = open_swap_file(path, sizeof path);
	find_tags(fd, where, PAGES);
	close(fd);
	*in_swap = 0;
	for (size_t p = 0; p < PAGES; p++)
		*in_swap += where[p] >= 0;
	cr_assert_gt(*in_swap, PAGES / 2, "only %zu of %u pages went to swap", *in_swap, PAGES);
}

/* The swap page nearest the middle of the file: one whose neighbours in
 * the file are in swap too. */
static size_t pick_victim(const int64_t *where)
{
	for (size_t p = PAGES / 2; p < PAGES; p++)
		if (where[p] >= 0)
			return p;
	cr_assert_fail("no page in swap");
	return 0;
}

static void overwrite_fd(int fd, int64_t at, const void *bytes, size_t len)
{
	cr_assert_eq(pwrite(fd, bytes, len, at), (ssize_t)len);
}

static void overwrite(int64_t at, const void *bytes, size_t len)
{
	char path[256];
	int fd = open_swap_file(path, sizeof path);
	overwrite_fd(fd, at, bytes, len);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
}

/* ---- what memsrv says ---- */

/* The code of a poisoned page: BUS_MCEERR_AR where the kernel handles
 * memory failure (CONFIG_MEMORY_FAILURE, which QEMU relies on), else the
 * kernel sends a plain BUS_ADRERR for the same marker. */
static int poisoned_si_code(void)
{
	if (access("/proc/sys/vm/memory_failure_early_kill", F_OK) == 0)
		return BUS_MCEERR_AR;
	cr_log_info("this kernel has no CONFIG_MEMORY_FAILURE: a poisoned page is BUS_ADRERR, not BUS_MCEERR_AR");
	return BUS_ADRERR;
}

static bool log_has_cond(void *what)
{
	return server_log_has(&srv, what);
}

/* memsrv logs a lost page just after the ioctl that woke its reader: give
 * it a moment. */
static bool log_has(const char *what)
{
	return wait_until(log_has_cond, (void *)what, 5000);
}

static bool has(char **words, size_t n, const char *word)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(words[i], word))
			return true;
	return false;
}

static bool vm_poisoned(void *name)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, name);
	bool some = m->vm_info->pages_poisoned > 0;
	memsrv__server_message__free_unpacked(m, NULL);
	return some;
}

/* pages_poisoned of the VM and the node, and their conditions. */
static void expect_poisoned(const char *name, uint64_t pages)
{
	/* counted just after the ioctl that woke the reader */
	wait_until(vm_poisoned, (void *)name, 5000);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, name);
	cr_assert_eq(m->vm_info->pages_poisoned, pages, "VM pages_poisoned %lu, expected %lu",
		     (unsigned long)m->vm_info->pages_poisoned, (unsigned long)pages);
	cr_assert(has(m->vm_info->conditions, m->vm_info->n_conditions, "pages-poisoned"),
		  "the VM does not show the pages-poisoned condition");
	memsrv__server_message__free_unpacked(m, NULL);
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->pages_poisoned, pages);
	cr_assert(has(st->conditions, st->n_conditions, "pages-poisoned"), "the node does not show pages-poisoned");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(ctl_check(srv.sock, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_CHECK_REPLY);
	bool warned = false;
	for (size_t i = 0; i < m->check_reply->n_warnings; i++)
		warned |= !strcmp(m->check_reply->warnings[i]->kind, "pages-poisoned") &&
			  !strcmp(m->check_reply->warnings[i]->vm, name);
	cr_assert(warned, "memsrv-ctl check does not warn of the lost pages");
	memsrv__server_message__free_unpacked(m, NULL);
}

static uint64_t checksum_errors(void)
{
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	uint64_t n = st->swap_checksum_errors;
	memsrv__server_message__free_unpacked(m, NULL);
	return n;
}

/* Reads every page: page `lost` gets SIGBUS (again after a zap), at its
 * own address; all the others are intact. */
static void expect_reads(struct vmm *v, size_t lost)
{
	static struct page_result res[PAGES];
	cr_assert(vmm_read(v, res, PAGES), "the VMM did not finish reading within %d s: a fault waits forever",
		  RESULT_TIMEOUT_MS / 1000);
	int code = poisoned_si_code();
	size_t wrong = 0, bus = 0;
	for (size_t p = 0; p < PAGES; p++) {
		if (p == lost) {
			cr_assert_eq(res[p].status, PAGE_SIGBUS, "lost page %zu read as %s", p,
				     res[p].status == PAGE_WRONG ? "wrong data" : "intact");
			cr_assert_eq(res[p].code, code, "page %zu: code %d, expected %d", p, res[p].code, code);
			cr_assert_eq(res[p].addr, (uint64_t)(uintptr_t)(v->base + p * PAGE));
			cr_assert_eq(res[p].again, PAGE_SIGBUS, "page %zu after MADV_DONTNEED: %s, not poisoned again", p,
				     res[p].again == PAGE_WRONG ? "wrong data (zeros?)" : "intact");
		} else {
			wrong += res[p].status == PAGE_WRONG;
			bus += res[p].status == PAGE_SIGBUS;
		}
	}
	cr_assert_eq(wrong + bus, 0, "%zu other pages read wrong, %zu got SIGBUS", wrong, bus);
}

/* A page's swap copy has bytes changed at offset from its tag: it is lost
 * for cause, all others read back. */
static void corrupt_one(const char *name, enum content c, int64_t from_tag, const uint8_t *bytes, size_t len,
			const char *cause)
{
	start_with_swap();
	struct vmm v;
	struct vmm_config cfg = { .name = name, .pages = PAGES, .page_size = PAGE, .content = c };
	vmm_start(&v, &cfg);
	static int64_t where[PAGES];
	size_t in_swap;
	evict_all_to_swap(name, where, &in_swap);
	size_t victim = pick_victim(where);
	overwrite(where[victim] + from_tag, bytes, len);
	expect_reads(&v, victim);
	cr_assert_geq(checksum_errors(), 1, "bad content is a checksum error");
	expect_poisoned(name, 1);
	cr_assert(log_has(cause), "the log does not say '%s'", cause);
	cr_assert(log_has("is lost"), "the log does not say the page is lost");
	cr_assert(!server_log_has(&srv, "short read"), "the log blames a short read");
	cr_assert_eq(vmm_stop(&v), 0, "the VMM did not detach cleanly");
}

Test(poison, a_raw_page_whose_swap_copy_changed_gets_sigbus_and_the_rest_reads_back)
{
	uint8_t junk[64];
	memset(junk, 0xa5, sizeof junk);
	corrupt_one("raw", CONTENT_RANDOM, 512, junk, sizeof junk, "checksum mismatch");
}

Test(poison, a_compressed_page_whose_literals_changed_is_a_checksum_error)
{
	uint8_t junk[64];
	memset(junk, 0x5a, sizeof junk);
	/* inside the random half, which LZ4 keeps as literals: it decompresses, to other data */
	corrupt_one("lz4-literals", CONTENT_HALF_RANDOM, 512, junk, sizeof junk, "checksum mismatch");
}

Test(poison, a_compressed_page_that_does_not_decompress_is_a_checksum_error)
{
	/* the literal length bytes just before the tag: a run longer than the input */
	uint8_t ff[8];
	memset(ff, 0xff, sizeof ff);
	corrupt_one("lz4-header", CONTENT_HALF_RANDOM, -(int64_t)sizeof ff, ff, sizeof ff, "decompression failure");
}

Test(poison, a_truncated_swap_file_is_a_short_read_and_sigbus)
{
	start_with_swap();
	struct vmm v;
	struct vmm_config cfg = { .name = "truncated", .pages = PAGES, .page_size = PAGE, .content = CONTENT_RANDOM };
	vmm_start(&v, &cfg);
	static int64_t where[PAGES];
	size_t in_swap;
	evict_all_to_swap("truncated", where, &in_swap);
	/* the file ends just before the last page written to it: that one is lost */
	size_t last = pick_victim(where);
	for (size_t p = 0; p < PAGES; p++)
		if (where[p] > where[last])
			last = p;
	char path[256];
	int fd = open_swap_file(path, sizeof path);
	cr_assert_eq(ftruncate(fd, where[last]), 0);  /* a raw page's tag is where its object starts */
	close(fd);
	expect_reads(&v, last);
	expect_poisoned("truncated", 1);
	cr_assert(log_has("short read"), "the log does not say short read");
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_geq(st->swap_read_errors, 1);
	cr_assert_eq(st->swap_checksum_errors, 0, "a short read is no checksum error");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(vmm_stop(&v), 0, "the VMM did not detach cleanly");
}

/* ---- huge pages ---- */

Test(poison, a_huge_page_with_none_free_gets_sigbus_instead_of_faulting_forever)
{
	const char *knob = "/proc/sys/vm/nr_hugepages";
	const char *free_knob = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
	long before = read_long(knob);
	if (before < 0)
		cr_skip_test("no 2 MiB huge pages on this kernel");
	if (before > 0) {
		hugepages_before = before;
		write_long(knob, 0);  /* frees only free ones: pages in use stay */
	}
	if (read_long(free_knob) != 0)
		cr_skip_test("cannot make the free 2 MiB huge pages run out here");
	server_start(&srv);
	struct vmm v;
	struct vmm_config cfg = { .name = "nohuge", .pages = 2, .page_size = 2 << 20, .huge = true };
	vmm_start(&v, &cfg);
	struct page_result res;
	cr_assert(vmm_read(&v, &res, 1), "the VMM did not get page 0 within %d s: it faults forever", RESULT_TIMEOUT_MS / 1000);
	cr_assert_eq(res.status, PAGE_SIGBUS, "a huge page with none free read as %s",
		     res.status == PAGE_WRONG ? "wrong data" : "intact");
	cr_assert_eq(res.code, poisoned_si_code());
	cr_assert_eq(res.addr, (uint64_t)(uintptr_t)v.base);
	expect_poisoned("nohuge", 1);
	cr_assert(log_has("no free 2 MiB huge pages"), "the log does not name the cause");
	cr_assert_eq(vmm_stop(&v), 0, "the VMM did not detach cleanly");
}

/* ---- the cache ---- */

Test(poison, a_cache_page_that_does_not_decompress_gets_sigbus_not_zeros)
{
	/* under --state-dir the cache's pool is a shared file: the test can
	 * reach memsrv's own memory through it */
	if (!scratch_make(scratch, sizeof scratch, "/dev/shm/memsrv-poison.XXXXXX"))
		cr_skip_test("no /dev/shm here");
	const char *opts[] = { "--cache-size", "64M", "--state-dir", scratch, NULL };
	server_start_with(&srv, opts);
	struct vmm v;
	struct vmm_config cfg = { .name = "cache", .pages = PAGES, .page_size = PAGE, .content = CONTENT_HALF_RANDOM };
	vmm_start(&v, &cfg);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "cache", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, PAGES);
	memsrv__server_message__free_unpacked(m, NULL);
	char path[128];
	snprintf(path, sizeof path, "%s/store.pool", scratch);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	static int64_t where[PAGES];
	find_tags(fd, where, PAGES);
	size_t victim = pick_victim(where);
	/* the literal length bytes before its tag: a run longer than the input */
	uint8_t ff[8];
	memset(ff, 0xff, sizeof ff);
	overwrite_fd(fd, where[victim] - (int64_t)sizeof ff, ff, sizeof ff);
	close(fd);
	expect_reads(&v, victim);
	expect_poisoned("cache", 1);
	cr_assert(log_has("decompression failure"), "the log does not name the cause");
	cr_assert(!server_log_has(&srv, "guest will see zeros"));
	cr_assert_eq(vmm_stop(&v), 0, "the VMM did not detach cleanly");
}

/* Flips a byte in the middle of the object holding page p of the image in
 * dir: the image opens, the page's read fails its checksum. */
static void corrupt_image_page(const char *dir, size_t p)
{
	struct image *img;
	char why[256];
	cr_assert_eq(image_open(dir, &img, why, sizeof why), 0, "%s", why);
	uint64_t index, off;
	uint32_t len;
	enum codec c;
	cr_assert_eq(image_page(img, p, &index), IMAGE_PAGE_OBJECT);
	image_object_loc(img, index, &off, &len, &c);
	image_close(img);
	char path[128];
	snprintf(path, sizeof path, "%s/%s", dir, IMAGE_FILE);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, (off_t)(off + len / 2)), 1);
	b ^= 0x10;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)(off + len / 2)), 1);
	close(fd);
}

/* A VMM's pages (CONTENT_HALF_RANDOM) written as an image into dir; the
 * VMM gone. */
static void make_image(const char *dir, size_t pages)
{
	struct vmm v;
	struct vmm_config cfg = { .name = "imaged", .pages = pages, .page_size = PAGE, .content = CONTENT_HALF_RANDOM };
	vmm_start(&v, &cfg);
	ctl_snapshot_ok(&srv, "imaged", dir);
	cr_assert_eq(vmm_stop(&v), 0);
}

Test(poison, a_page_whose_image_copy_changed_gets_sigbus_when_resumed_and_the_rest_reads_back)
{
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-poison.XXXXXX"));
	server_start(&srv);
	make_image(scratch, PAGES);
	struct vmm v;

	size_t victim = PAGES / 3;
	corrupt_image_page(scratch, victim);
	struct vmm_config again = { .name = "resumed", .pages = PAGES, .page_size = PAGE,
				    .content = CONTENT_HALF_RANDOM, .resume_from = scratch };
	vmm_start(&v, &again);
	expect_reads(&v, victim);
	expect_poisoned("resumed", 1);
	cr_assert(log_has("the memory image holds other data than was written"), "the log names the cause");
	cr_assert(log_has("is lost"));
	cr_assert_eq(vmm_stop(&v), 0, "the VMM did not detach cleanly");
}

/* A memsrv on a state directory whose VM resumes from an image there that
 * is moved away while memsrv is down; its store has no room to spare, so
 * the pages stay in the image. */
struct image_gone {
	char state[128], image[128], moved[128];
	const char *opts[7];
};

/* background: --resume-background, what fills a resumed VM between faults */
static void image_gone_start(struct image_gone *ig, size_t pages, bool background)
{
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-poison.XXXXXX"));
	snprintf(ig->state, sizeof ig->state, "%s/state", scratch);
	snprintf(ig->image, sizeof ig->image, "%s/image", scratch);
	snprintf(ig->moved, sizeof ig->moved, "%s/moved", scratch);
	cr_assert_eq(mkdir(ig->state, 0700), 0);
	cr_assert_eq(mkdir(ig->image, 0700), 0);
	const char *opts[] = { "--state-dir", ig->state, "--cache-size", "64K",
			       "--resume-background", background ? "on" : "off", NULL };
	memcpy(ig->opts, opts, sizeof opts);
	server_start_with(&srv, ig->opts);
	make_image(ig->image, pages);
}

/* Reads every page of v: none may read wrong; *bus: how many were lost. */
static void read_none_wrong(struct vmm *v, struct page_result *res, size_t pages, size_t *bus)
{
	cr_assert(vmm_read(v, res, pages), "the VMM did not finish reading: a fault waits forever");
	size_t intact = 0, wrong = 0;
	*bus = 0;
	for (size_t p = 0; p < pages; p++) {
		intact += res[p].status == PAGE_INTACT;
		*bus += res[p].status == PAGE_SIGBUS;
		wrong += res[p].status == PAGE_WRONG;
	}
	cr_assert_eq(wrong, 0, "%zu pages read wrong (zeros?)", wrong);
	cr_assert_eq(intact + *bus, pages);
}

/* Pages still in the image when memsrv restarts without it: each is lost
 * (SIGBUS), never zeros; every other page reads back. */
Test(poison, pages_of_an_image_gone_when_memsrv_restarted_get_sigbus_and_the_rest_reads_back)
{
	struct image_gone ig;
	image_gone_start(&ig, PAGES, true);
	struct vmm v;
	struct vmm_config again = { .name = "resumed", .pages = PAGES, .page_size = PAGE,
				    .content = CONTENT_HALF_RANDOM, .resume_from = ig.image };
	vmm_start(&v, &again);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "resumed");
	uint64_t in_image = m->vm_info->image_pages;
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_gt(in_image, PAGES / 2);

	server_crash_and_restart(&srv, ig.opts);
	cr_assert_eq(rename(ig.image, ig.moved), 0, "the image goes while memsrv is down");
	static struct page_result res[PAGES];
	size_t bus;
	read_none_wrong(&v, res, PAGES, &bus);
	cr_assert_gt(bus, 0, "the pages still in the image are lost");
	cr_assert_leq(bus, in_image);
	cr_assert(log_has("cannot open the image its pages come from again"), "the log says why");
	cr_assert(log_has("its memory image is not open"), "each lost page names the cause");
	cr_assert(server_alive(&srv));
	vmm_stop(&v);
}

/* The same, memsrv killed before its table knew which pages of the
 * units the image held (image_pages.h): every page of those units is lost,
 * as any may have been the image's; none reads zeros in its place. */
Test(poison, pages_of_units_not_marked_when_the_image_is_gone_after_a_restart_get_sigbus_never_zeros)
{
	enum { MANY = 8 * 4096 };  /* 8 mark units */
	struct image_gone ig;
	image_gone_start(&ig, MANY, false);  /* no background to mark the units: only what the guest touches */
	struct vmm v;
	struct vmm_config again = { .name = "resumed", .pages = MANY, .page_size = PAGE,
				    .content = CONTENT_HALF_RANDOM, .resume_from = ig.image };
	vmm_start(&v, &again);
	server_crash_and_restart(&srv, ig.opts);
	cr_assert_eq(rename(ig.image, ig.moved), 0);
	static struct page_result res[MANY];
	size_t bus;
	read_none_wrong(&v, res, MANY, &bus);
	cr_assert_eq(bus, MANY, "every page of the units never marked is lost: %zu of %d", bus, (int)MANY);
	cr_assert(log_has("not yet known to be zero with them"), "the log says how many");
	cr_assert(server_alive(&srv));
	vmm_stop(&v);
}

/* ---- the remote tier ---- */

static uint64_t remote_stat(size_t offset)
{
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	uint64_t v = *(const uint64_t *)((const char *)st + offset);
	memsrv__server_message__free_unpacked(m, NULL);
	return v;
}
#define REMOTE_STAT(field) remote_stat(offsetof(Memsrv__NodeStats, field))

/* The master holding key now, connected. */
static redisContext *master_of_key(const char *key)
{
	char cmd[160], out[32];
	snprintf(cmd, sizeof cmd, "CLUSTER KEYSLOT %s", key);
	cr_assert_eq(test_cluster_cmd(&cluster, 0, cmd, out, sizeof out), 0, "%s", out);
	int node = test_cluster_master_of(&cluster, (unsigned)atoi(out));
	cr_assert_geq(node, 0);
	redisContext *c = redisConnect("127.0.0.1", (int)cluster.port[node]);
	cr_assert(c && !c->err, "cannot reach node %d", node);
	return c;
}

Test(poison, a_page_whose_object_in_the_cluster_was_forged_gets_sigbus_and_the_rest_reads_back)
{
	if (!test_cluster_available())
		cr_skip_test("no redis-server or redis-cli here (Debian's redis-server, redis-tools)");
	test_cluster_start(&cluster, 3, 1, NULL);
	const char *opts[] = { "--cache-size", "1M", "--remote", cluster.seed, "--node-id", "poison-host", NULL };
	server_start_with(&srv, opts);
	struct vmm v;
	struct vmm_config cfg = { .name = "forged", .pages = PAGES, .page_size = PAGE, .content = CONTENT_HALF_RANDOM };
	vmm_start(&v, &cfg);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "forged", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	for (int waited = 0; REMOTE_STAT(remote_objects) < PAGES / 2; waited += 100) {
		cr_assert_lt(waited, 30000, "only %lu pages went to the cluster", (unsigned long)REMOTE_STAT(remote_objects));
		usleep(100000);
	}

	/* the first page in the cluster, found by the SHA-256 of its content */
	static uint8_t page[PAGE], other[PAGE];
	char key[REMOTE_KEY_MAX];
	size_t victim = PAGES;
	for (size_t p = 0; p < PAGES && victim == PAGES; p++) {
		struct remote_digest d;
		page_content(page, p, CONTENT_HALF_RANDOM);
		remote_digest_page(page, &d);
		remote_key(&d, 'o', key);
		redisContext *c = master_of_key(key);
		redisReply *r = redisCommand(c, "EXISTS %s", key);
		if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
			victim = p;
		freeReplyObject(r);
		redisFree(c);
	}
	cr_assert_lt(victim, PAGES, "no page's object is in the cluster");
	/* a well-formed object, checksum right, of another page: only its
	 * key's SHA-256 can tell */
	page_content(other, PAGES + 1, CONTENT_HALF_RANDOM);
	uint8_t forged[REMOTE_OBJECT_MAX];
	size_t len = remote_object_encode(CODEC_LZ4, other, PAGE, forged);  /* PAGE bytes: the page raw */
	redisContext *c = master_of_key(key);
	redisReply *r = redisCommand(c, "SET %s %b", key, forged, len);
	cr_assert(r && r->type == REDIS_REPLY_STATUS, "SET of the forged object failed");
	freeReplyObject(r);
	redisFree(c);

	expect_reads(&v, victim);
	cr_assert_geq(REMOTE_STAT(remote_read_errors), 1, "the forged object is a read error");
	expect_poisoned("forged", 1);
	cr_assert(log_has("cannot be read: its value is malformed"), "the log does not say why");
	cr_assert(log_has("is lost"), "the log does not say the page is lost");
	cr_assert_eq(vmm_stop(&v), 0, "the VMM did not detach cleanly");
}
