/* Description: clean pages (docs/architecture.md): a page a read fault brings
 * back from the store keeps its copy while the guest only reads it, and is
 * evicted again by a punch alone.  Every way the guest's memory can be
 * written while a copy is kept — a write through the mapping, the kernel
 * writing for the VMM (read(2), process_vm_writev), a page zapped and
 * written again, a snapshot that unprotects, a writer racing the
 * evictions — must end that copy, or the next eviction would put back
 * what was there before the write.  The test process is the VMM. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "memsrv.h"

#define PAGE GUEST_PAGE
#define VM_BYTES (8u << 20)
#define VM_PAGES (VM_BYTES / PAGE)

static struct test_server srv;

static void teardown(void) { server_stop(&srv); }

TestSuite(clean_pages, .fini = teardown, .timeout = 120);

/* Every fifth page all zero (placed without a copy), the others distinct. */
static uint64_t word_of(size_t page, size_t w, uint64_t gen)
{
	if (page % 5 == 0)
		return 0;
	return (uint64_t)page << 20 | (w % 16) | gen << 56;
}

static size_t nonzero_pages(size_t from, size_t to)
{
	size_t n = 0;
	for (size_t p = from; p < to; p++)
		n += p % 5 != 0;
	return n;
}

/* Reads every word of every page: the faults of a guest that only reads. */
static uint64_t read_all(const struct guest *g)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < g->size; i += sizeof(uint64_t))
		sum += *(volatile const uint64_t *)(g->mem + i);
	return sum;
}

static void evict_all(const char *vm)
{
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, vm, 0, true), NULL);
}

/* A guest filled with generation 1, evicted, then read back: every page
 * with content is clean. */
static void attach_clean(struct guest *g, const char *name)
{
	guest_attach(g, &srv, name, VM_BYTES, NULL);
	pattern_fill(g->mem, 0, VM_PAGES, word_of, 1);
	evict_all(name);
	read_all(g);
	cr_assert_eq(CTL_INFO(&srv, name, clean_pages), nonzero_pages(0, VM_PAGES),
		     "every page read back from the store keeps its copy");
}

/* Detaches and checks that no reference of the VM's stays in the store. */
static void detach_and_expect_store_empty(struct guest *g)
{
	cr_assert_geq(memsrv_detach(g->s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	guest_release(g);
	for (int i = 0; i < 200 && ctl_vm_count(&srv); i++)
		usleep(10000);
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->references, 0, "every copy went with the VM");
	cr_assert_eq(st->objects, 0, "%lu objects left behind", (unsigned long)st->objects);
	memsrv__server_message__free_unpacked(m, NULL);
}

Test(clean_pages, a_page_read_back_is_evicted_again_by_a_punch_alone)
{
	server_start(&srv);
	struct guest g;
	attach_clean(&g, "clean");
	cr_assert_eq(CTL_INFO(&srv, "clean", evictions_clean), 0);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "clean", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, VM_PAGES);
	cr_assert_eq(m->evict_reply->stored_bytes, 0, "nothing was compressed again");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(CTL_INFO(&srv, "clean", evictions_clean), nonzero_pages(0, VM_PAGES));
	cr_assert_eq(CTL_INFO(&srv, "clean", clean_pages), 0);
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->evictions_clean, nonzero_pages(0, VM_PAGES), "stats shows it too");
	memsrv__server_message__free_unpacked(m, NULL);
	/* and what comes back is what was there, twice over */
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(pattern_count_bad(g.mem, 0, VM_PAGES, word_of, 1), 0);
		evict_all("clean");
	}
	detach_and_expect_store_empty(&g);
}

Test(clean_pages, a_write_through_the_mapping_ends_the_copy)
{
	server_start(&srv);
	struct guest g;
	attach_clean(&g, "write");
	/* every other page written: each is a write-protect fault first */
	for (size_t p = 0; p < VM_PAGES; p += 2)
		pattern_fill(g.mem, p, p + 1, word_of, 2);
	size_t written = 0;
	for (size_t p = 0; p < VM_PAGES; p += 2)
		written += p % 5 != 0;
	cr_assert_eq(CTL_INFO(&srv, "write", clean_writes), written);
	cr_assert_eq(CTL_INFO(&srv, "write", clean_pages), nonzero_pages(0, VM_PAGES) - written);
	for (int round = 0; round < 3; round++) {
		evict_all("write");
		for (size_t p = 0; p < VM_PAGES; p++)
			cr_assert_eq(pattern_count_bad(g.mem, p, p + 1, word_of, p % 2 ? 1 : 2), 0,
				     "round %d: page %zu lost a write or its content", round, p);
	}
	detach_and_expect_store_empty(&g);
}

/* The kernel writes into guest memory for the VMM: read(2) from a pipe
 * (copy_to_user), process_vm_writev (get_user_pages on the VMM's mm).
 * Both go through the mapping, so both meet the write protection. */
Test(clean_pages, writes_by_the_kernel_end_the_copy_too)
{
	server_start(&srv);
	struct guest g;
	attach_clean(&g, "kernel");
	static uint8_t buf[PAGE];
	const size_t via_pipe = 1, via_vm_writev = 2;
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	memset(buf, 0xa5, PAGE);
	cr_assert_eq(write(pfd[1], buf, PAGE), PAGE);
	cr_assert_eq(read(pfd[0], g.mem + via_pipe * PAGE, PAGE), PAGE, "read: %s", strerror(errno));
	close(pfd[0]);
	close(pfd[1]);
	memset(buf, 0x5a, PAGE);
	struct iovec local = { buf, PAGE }, remote = { g.mem + via_vm_writev * PAGE, PAGE };
	cr_assert_eq(process_vm_writev(getpid(), &local, 1, &remote, 1, 0), PAGE, "process_vm_writev: %s",
		     strerror(errno));
	cr_assert_eq(CTL_INFO(&srv, "kernel", clean_writes), 2);
	evict_all("kernel");
	for (size_t i = 0; i < PAGE; i++) {
		cr_assert_eq(g.mem[via_pipe * PAGE + i], 0xa5, "byte %zu of the page read(2) wrote", i);
		cr_assert_eq(g.mem[via_vm_writev * PAGE + i], 0x5a, "byte %zu of the page process_vm_writev wrote", i);
	}
	cr_assert_eq(pattern_count_bad(g.mem, 3, VM_PAGES, word_of, 1), 0);
	detach_and_expect_store_empty(&g);
}

/* MADV_DONTNEED zaps the VMM's page table entries of a clean page (a
 * REMOVE event; the file keeps the page).  The kernel keeps the write
 * protection in a marker, so a write after the zap still ends the copy. */
Test(clean_pages, a_zapped_clean_page_still_catches_its_write)
{
	server_start(&srv);
	struct guest g;
	attach_clean(&g, "zap");
	cr_assert_eq(madvise(g.mem, VM_BYTES / 2, MADV_DONTNEED), 0);
	pattern_fill(g.mem, 0, VM_PAGES / 2, word_of, 3);
	evict_all("zap");
	cr_assert_eq(pattern_count_bad(g.mem, 0, VM_PAGES / 2, word_of, 3), 0, "a write after the zap was lost");
	cr_assert_eq(pattern_count_bad(g.mem, VM_PAGES / 2, VM_PAGES, word_of, 1), 0);
	/* the VMM punches clean pages out itself: they read zeros, their
	 * copies go (checked when the VM leaves) */
	read_all(&g);
	cr_assert_eq(madvise(g.mem, VM_BYTES / 4, MADV_REMOVE), 0);
	for (size_t i = 0; i < VM_BYTES / 4; i += 512)
		cr_assert_eq(g.mem[i], 0, "punched byte %zu reads %d", i, g.mem[i]);
	evict_all("zap");
	cr_assert_eq(pattern_count_bad(g.mem, VM_PAGES / 4, VM_PAGES / 2, word_of, 3), 0);
	detach_and_expect_store_empty(&g);
}

/* How many of the n pages at mem are in this process's page table. */
static size_t pages_mapped(const uint8_t *mem, size_t n)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	cr_assert_geq(fd, 0, "/proc/self/pagemap: %s", strerror(errno));
	static uint64_t entries[VM_PAGES];
	cr_assert_leq(n, VM_PAGES);
	ssize_t got = pread(fd, entries, n * 8, (off_t)((uintptr_t)mem / PAGE * 8));
	close(fd);
	cr_assert_eq(got, (ssize_t)(n * 8));
	size_t mapped = 0;
	for (size_t i = 0; i < n; i++)
		mapped += entries[i] >> 63;
	return mapped;
}

/* MADV_PAGEOUT takes pages out of the VMM's page table and leaves them in
 * the file (with no swap; with swap they go there): memsrv does it to see
 * a page's next use (accessed.h).  A clean page keeps its protection in a
 * marker, so a write after it still ends the copy; a page already written
 * maps writable again; every byte stays. */
Test(clean_pages, a_page_out_of_the_page_table_still_catches_its_write)
{
	server_start(&srv);
	struct guest g;
	attach_clean(&g, "pageout");
	/* every third page written first: no copy, writable */
	for (size_t p = 0; p < VM_PAGES; p += 3)
		pattern_fill(g.mem, p, p + 1, word_of, 2);
	uint64_t writes_before = CTL_INFO(&srv, "pageout", clean_writes);
	cr_assert_eq(madvise(g.mem, VM_BYTES, MADV_PAGEOUT), 0, "MADV_PAGEOUT: %s", strerror(errno));
	cr_assert_lt(pages_mapped(g.mem, VM_PAGES), VM_PAGES / 2, "the page-out left the pages in the page table");
	/* then every other page written again: clean ones fault WP */
	size_t clean_written = 0;
	for (size_t p = 0; p < VM_PAGES; p += 2) {
		pattern_fill(g.mem, p, p + 1, word_of, 3);
		clean_written += p % 3 != 0 && p % 5 != 0;
	}
	cr_assert_eq(CTL_INFO(&srv, "pageout", clean_writes) - writes_before, clean_written,
		     "each clean page written after the page-out ended its copy");
	for (int round = 0; round < 2; round++) {
		evict_all("pageout");
		for (size_t p = 0; p < VM_PAGES; p++) {
			uint64_t gen = p % 2 == 0 ? 3 : p % 3 == 0 ? 2 : 1;
			cr_assert_eq(pattern_count_bad(g.mem, p, p + 1, word_of, gen), 0,
				     "round %d: page %zu lost a write or its content", round, p);
		}
	}
	detach_and_expect_store_empty(&g);
}

/* A snapshot write-protects every page and unprotects them when done: a
 * clean page is writable after it, so its copy must be gone. */
Test(clean_pages, a_snapshot_leaves_no_copy_behind_a_writable_page)
{
	server_start(&srv);
	char dir[256];
	cr_assert(scratch_make(dir, sizeof dir, "/var/tmp/memsrv-clean.XXXXXX"));
	struct guest g;
	attach_clean(&g, "snap");
	ctl_snapshot_ok(&srv, "snap", dir);
	pattern_fill(g.mem, 0, VM_PAGES, word_of, 4);
	evict_all("snap");
	cr_assert_eq(pattern_count_bad(g.mem, 0, VM_PAGES, word_of, 4), 0, "a write after the snapshot was lost");
	detach_and_expect_store_empty(&g);
	scratch_remove(dir);
}

/* A writer rewrites pages at random, each with a count of its own, while
 * the guest's pages are read back clean and evicted again and again:
 * every page ends as last written. */
struct writer {
	struct guest *g;
	uint32_t count[VM_PAGES];
	atomic_bool stop;
	unsigned long writes;
};

static void *write_at_random(void *arg)
{
	struct writer *w = arg;
	uint64_t x = 88172645463325252ull;
	while (!atomic_load(&w->stop)) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t p = x % VM_PAGES;
		uint32_t c = ++w->count[p];
		uint64_t *words = (uint64_t *)(w->g->mem + p * PAGE);
		for (size_t i = 0; i < PAGE / sizeof(uint64_t); i += 64)
			words[i] = (uint64_t)p << 32 | c;
		w->writes++;
		if (w->writes % 64 == 0)
			usleep(100);
	}
	return NULL;
}

Test(clean_pages, a_writer_racing_clean_evictions_loses_nothing)
{
	server_start(&srv);
	struct guest g;
	guest_attach(&g, &srv, "race", VM_BYTES, NULL);
	static struct writer w;
	memset(&w, 0, sizeof w);
	w.g = &g;
	for (size_t p = 0; p < VM_PAGES; p++) {
		uint64_t *words = (uint64_t *)(g.mem + p * PAGE);
		for (size_t i = 0; i < PAGE / sizeof(uint64_t); i += 64)
			words[i] = (uint64_t)p << 32;
	}
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, write_at_random, &w), 0);
	uint64_t clean_before = 0;
	for (int round = 0; round < 20; round++) {
		evict_all("race");
		read_all(&g);  /* the pages the writer has not reached come back clean */
	}
	clean_before = CTL_INFO(&srv, "race", evictions_clean);
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	evict_all("race");
	size_t bad = 0;
	for (size_t p = 0; p < VM_PAGES; p++) {
		const uint64_t *words = (const uint64_t *)(g.mem + p * PAGE);
		for (size_t i = 0; i < PAGE / sizeof(uint64_t); i += 64)
			bad += words[i] != ((uint64_t)p << 32 | w.count[p]);
	}
	cr_assert_eq(bad, 0, "%zu words lost a write (%lu writes)", bad, w.writes);
	cr_assert_gt(w.writes, 1000, "the writer wrote during the evictions");
	cr_assert_gt(clean_before, 0, "some evictions were of clean pages");
	cr_assert_gt(CTL_INFO(&srv, "race", clean_writes), 0, "some writes hit clean pages");
	detach_and_expect_store_empty(&g);
}

/* Pages that do not compress, every fifth all zero: they fill a small
 * cache and spill to swap. */
static uint64_t word_random(size_t page, size_t w, uint64_t gen)
{
	if (page % 5 == 0)
		return 0;
	uint64_t x = (page * 0x9e3779b97f4a7c15ull) ^ (w * 0xbf58476d1ce4e5b9ull) ^ gen;
	x ^= x >> 31, x *= 0x94d049bb133111ebull, x ^= x >> 29;
	return x;
}

/* Pages that compress to about half: random words, then zeros. */
static uint64_t word_half(size_t page, size_t w, uint64_t gen)
{
	return w < PAGE / sizeof(uint64_t) / 2 ? word_random(page + 1, w, gen) : 0;
}

/* A copy in the cache takes the room of an evicted page.  While the cache
 * is near its budget, a page read back from it leaves it (no copy kept):
 * the room goes to the pages still to evict, not to pages that are in. */
Test(clean_pages, copies_give_way_to_a_full_cache)
{
	const uint64_t budget = 1 << 20;
	const char *opts[] = { "--cache-size", "1M", NULL };  /* and no swap to spill to */
	server_start_with(&srv, opts);
	struct guest g;
	guest_attach(&g, &srv, "full", VM_BYTES, NULL);
	pattern_fill(g.mem, 0, VM_PAGES, word_half, 1);
	evict_all("full");
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->cache_budget_bytes, budget);
	cr_assert_gt(st->cache_slot_bytes, budget / 100 * 90, "the eviction filled the cache (%lu bytes)",
		     (unsigned long)st->cache_slot_bytes);
	memsrv__server_message__free_unpacked(m, NULL);
	read_all(&g);
	st = ctl_stats_ok(&srv, &m);
	/* copies are kept again once the cache is below writeback's low
	 * watermark (85%), one page at a time */
	cr_assert_leq(st->cache_slot_bytes, budget / 100 * 85 + PAGE,
		      "the pages read back kept %lu bytes of the cache", (unsigned long)st->cache_slot_bytes);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(pattern_count_bad(g.mem, 0, VM_PAGES, word_half, 1), 0);
	evict_all("full");
	cr_assert_eq(pattern_count_bad(g.mem, 0, VM_PAGES, word_half, 1), 0);
	detach_and_expect_store_empty(&g);
}

/* Distinct incompressible pages, none all zero: the cache holds each raw. */
static uint64_t word_raw(size_t page, size_t w, uint64_t gen)
{
	return word_random(page * 5 + 1, w, gen);
}

/* An eviction run the store refuses a page of stops there; a clean page
 * after it stays resident as it was before the run, protected, and keeps
 * its copy (the run's unprotect skips it). */
Test(clean_pages, a_clean_page_in_a_run_the_store_refused_keeps_its_copy)
{
	/* small enough that every resident page is in one batch of victims
	 * (EVICT_RUN_PAGES): the refused page and the clean one share a run */
	const uint64_t budget = 128 << 10;
	const char *opts[] = { "--cache-size", "128K", NULL };  /* no swap: a full cache refuses */
	server_start_with(&srv, opts);
	struct guest g;
	guest_attach(&g, &srv, "refused", VM_BYTES, NULL);
	const size_t refused = 1000, clean = 1001;  /* neighbours: one run */
	pattern_fill(g.mem, clean, clean + 1, word_half, 1);
	evict_all("refused");
	cr_assert_eq(pattern_count_bad(g.mem, clean, clean + 1, word_half, 1), 0);
	cr_assert_eq(CTL_INFO(&srv, "refused", clean_pages), 1);
	/* raw pages that fill the cache to its last page, then one more */
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	size_t fill = (budget - st->cache_slot_bytes) / PAGE;
	memsrv__server_message__free_unpacked(m, NULL);
	pattern_fill(g.mem, 0, fill, word_raw, 2);
	pattern_fill(g.mem, refused, refused + 1, word_raw, 2);
	evict_all("refused");
	uint64_t stored = CTL_INFO(&srv, "refused", stored_pages);
	cr_assert_eq(stored, fill, "the cache took the %zu filling pages only (%lu)", fill, (unsigned long)stored);
	cr_assert_eq(CTL_INFO(&srv, "refused", clean_pages), 1, "the clean page kept its copy");
	/* and a write still reaches it: it is protected */
	pattern_fill(g.mem, clean, clean + 1, word_half, 3);
	cr_assert_eq(CTL_INFO(&srv, "refused", clean_writes), 1);
	cr_assert_eq(CTL_INFO(&srv, "refused", clean_pages), 0);
	cr_assert_eq(pattern_count_bad(g.mem, 0, fill, word_raw, 2), 0);
	cr_assert_eq(pattern_count_bad(g.mem, refused, refused + 1, word_raw, 2), 0);
	cr_assert_eq(pattern_count_bad(g.mem, clean, clean + 1, word_half, 3), 0);
	detach_and_expect_store_empty(&g);
}

/* A clean page whose copy went to swap is evicted again by a punch too, and
 * read back from swap as it was.  (A copy the cache holds raw is not kept:
 * it would cost a second page.) */
/* clean_pages once the VM thread finished the last fault: the page it
 * placed looks clean until the thread, after the copy woke the reader,
 * drops a copy not worth keeping (a raw one in the cache) */
static uint64_t settled_clean_pages(const char *vm)
{
	uint64_t before, now = CTL_INFO(&srv, vm, clean_pages);
	int reads = 0;
	do {
		before = now;
		usleep(20000);
		now = CTL_INFO(&srv, vm, clean_pages);
	} while (now != before && ++reads < 100);
	cr_assert_eq(now, before, "clean_pages of %s never settled", vm);
	return now;
}

Test(clean_pages, a_copy_in_swap_serves_as_well)
{
	char swap[256], swap_arg[300];
	cr_assert(scratch_make(swap, sizeof swap, "/var/tmp/memsrv-clean-swap.XXXXXX"));
	snprintf(swap_arg, sizeof swap_arg, "%s:64M", swap);
	const char *opts[] = { "--cache-size", "1M", "--swap-dir", swap_arg, NULL };
	server_start_with(&srv, opts);
	struct guest g;
	guest_attach(&g, &srv, "swap", VM_BYTES, NULL);
	pattern_fill(g.mem, 0, VM_PAGES, word_random, 5);
	evict_all("swap");
	cr_assert_gt(CTL_INFO(&srv, "swap", swap_pages), 0, "the cache spilled to swap");
	cr_assert_eq(pattern_count_bad(g.mem, 0, VM_PAGES, word_random, 5), 0);
	uint64_t clean = settled_clean_pages("swap");
	cr_assert_gt(clean, 0, "the pages read from swap keep their copies");
	cr_assert_lt(clean, nonzero_pages(0, VM_PAGES), "the raw ones in the cache do not");
	evict_all("swap");
	uint64_t evicted_clean = CTL_INFO(&srv, "swap", evictions_clean);
	cr_assert_eq(evicted_clean, clean, "%lu pages evicted clean, %lu were clean", (unsigned long)evicted_clean,
		     (unsigned long)clean);
	pattern_fill(g.mem, 0, VM_PAGES / 2, word_random, 6);
	evict_all("swap");
	cr_assert_eq(pattern_count_bad(g.mem, 0, VM_PAGES / 2, word_random, 6), 0);
	cr_assert_eq(pattern_count_bad(g.mem, VM_PAGES / 2, VM_PAGES, word_random, 5), 0);
	detach_and_expect_store_empty(&g);
	scratch_remove(swap);
}

static bool no_clean_pages(void *arg)
{
	return CTL_INFO(&srv, (const char *)arg, clean_pages) == 0;
}

static bool evictable_again(void *arg)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, (const char *)arg);
	bool clear = m->vm_info->n_conditions == 0;
	memsrv__server_message__free_unpacked(m, NULL);
	return clear;
}

/* Another process maps the memfd and writes a clean page through its own
 * mapping, which no write protection covers.  Once memsrv finds that
 * mapping, no clean page may keep its copy: when the mapping has gone and
 * eviction resumes, the page goes with what that process wrote. */
Test(clean_pages, a_second_mapping_ends_every_copy)
{
	const char *opts[] = { "--mapping-scan-ms", "50", NULL };
	server_start_with(&srv, opts);
	struct guest g;
	attach_clean(&g, "mapped");
	int done[2], go[2];
	cr_assert_eq(pipe(done), 0);
	cr_assert_eq(pipe(go), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		uint8_t *view = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd, 0);
		char c = 1;
		if (view == MAP_FAILED)
			_exit(2);
		memset(view + PAGE, 0xc3, PAGE);  /* page 1: clean, and written unseen */
		if (write(done[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(0);
	}
	char c;
	cr_assert_eq(read(done[0], &c, 1), 1);
	cr_assert(wait_until(no_clean_pages, (void *)"mapped", 10000), "clean pages kept their copies beside a second mapping");
	cr_assert_eq(write(go[1], &c, 1), 1);
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert(wait_until(evictable_again, (void *)"mapped", 10000), "the second mapping was never seen to go");
	evict_all("mapped");
	for (size_t i = 0; i < PAGE; i++)
		cr_assert_eq(g.mem[PAGE + i], 0xc3, "byte %zu of the page the other process wrote", i);
	cr_assert_eq(pattern_count_bad(g.mem, 2, VM_PAGES, word_of, 1), 0);
	detach_and_expect_store_empty(&g);
}

/* memsrv dies without --state-dir after clean pages were evicted: the VMM's
 * libmemsrv poisons each lost page it faults on (SIGBUS), and none may
 * wait for good.  A punched page must not keep a write-protect marker in
 * the VMM's page table, which UFFDIO_POISON refuses to overwrite (EEXIST). */
Test(clean_pages, pages_lost_after_a_clean_eviction_get_sigbus_never_a_wait)
{
	server_start(&srv);
	struct test_sim sim;
	/* The SIGBUS is what the test waits for: under AddressSanitizer the
	 * VMM keeps the signal's default action instead of reporting it. */
	const char *asan = getenv("ASAN_OPTIONS");
	char *saved = asan ? strdup(asan) : NULL, opts[1024];
	snprintf(opts, sizeof opts, "%s%shandle_sigbus=0", asan ? asan : "", asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	/* no zero page: runs of clean pages only, evicted by a punch alone */
	sim_start(&sim, &srv, "lost", "--size", "16M", "--mix", "text=50,binary=50", NULL);
	if (saved)
		setenv("ASAN_OPTIONS", saved, 1);
	else
		unsetenv("ASAN_OPTIONS");
	free(saved);
	evict_all("lost");
	sim_expect_verified(&sim, (16u << 20) / PAGE);  /* every page read back: clean */
	cr_assert_gt(CTL_INFO(&srv, "lost", clean_pages), 0);
	evict_all("lost");
	cr_assert_gt(CTL_INFO(&srv, "lost", evictions_clean), 0);
	server_crash_and_restart(&srv, NULL);
	sim_send(&sim, "verify");
	int status = -1;
	for (int i = 0; i < 3000 && status == -1; i++) {
		if (waitpid(sim.pid, &status, WNOHANG) != sim.pid)
			status = -1, usleep(10000);
	}
	if (status == -1)
		kill(sim.pid, SIGKILL), waitpid(sim.pid, NULL, 0);
	fclose(sim.in);
	fclose(sim.out);
	cr_assert_neq(status, -1, "a fault on a lost page still waited after 30 s");
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "the VMM ended with status 0x%x, not SIGBUS", status);
}
