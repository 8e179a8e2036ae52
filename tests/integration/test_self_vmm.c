/* Description: the test process itself is the VMM: it attaches its own memory
 * through libmemsrv to a real memsrv and checks every byte after eviction,
 * limits, discards and detach. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "memsrv.h"

#define PAGE GUEST_PAGE

static struct test_server srv;

static void setup(void) { server_start(&srv); }
static void teardown(void) { server_stop(&srv); }

TestSuite(self_vmm, .init = setup, .fini = teardown, .timeout = 120);

/* A recognisable, mostly compressible pattern: page index in every word,
 * some pages all zero. */
static uint64_t word_of(size_t page, size_t w, uint64_t gen)
{
	if (page % 5 == 0)
		return 0;
	return (uint64_t)page << 20 | (w % 16) | gen << 56;
}

/* word_of() on the pages a test keeps (odd ones), zero on the even ones it
 * discarded. */
static uint64_t word_of_kept(size_t page, size_t w, uint64_t gen)
{
	return page % 2 ? word_of(page, w, gen) : 0;
}

static void fill(struct guest *g, unsigned gen)
{
	pattern_fill(g->mem, 0, g->size / PAGE, word_of, gen);
}

static size_t count_bad(const struct guest *g, unsigned gen, size_t from_page, size_t to_page)
{
	return pattern_count_bad(g->mem, from_page, to_page, word_of, gen);
}

static void attach(struct guest *g, const char *name, size_t size, uint64_t limit)
{
	guest_attach(g, &srv, name, size, &(struct memsrv_vm){ .limit_bytes = limit });
}

Test(self_vmm, evict_all_then_detach_with_restore_keeps_every_byte)
{
	struct guest g;
	attach(&g, "restore", 16 << 20, 0);
	fill(&g, 1);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "restore", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, g.size / PAGE);
	cr_assert_gt(m->evict_reply->zero_pages, 0, "every fifth page is zero");
	cr_assert_lt(m->evict_reply->stored_bytes, g.size / 4, "the pattern compresses");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_lt(guest_allocated(&g), g.size / 100, "evicted pages must leave the memfd");

	/* half of it comes back by faults, the rest by the restore on detach */
	cr_assert_eq(count_bad(&g, 1, 0, g.size / PAGE / 2), 0);
	m = ctl_info_ok(&srv, "restore");
	uint64_t held = m->vm_info->stored_pages;
	memsrv__server_message__free_unpacked(m, NULL);
	/* the second half's nonzero pages, less what the sequential reads prefetched */
	cr_assert_geq(held, g.size / PAGE / 2 * 4 / 5 - 1 - 32, "stored pages of the second half: %lu", (unsigned long)held);
	int restored = memsrv_detach(g.s, MEMSRV_DETACH_RESTORE);
	/* a prefetch still running after the last read may place up to 32 more */
	cr_assert(restored <= (int)held && restored >= (int)held - 32, "restored %d of the %lu pages held", restored,
		  (unsigned long)held);
	/* unregistered now: what the memfd holds is all there is */
	cr_assert_eq(count_bad(&g, 1, 0, g.size / PAGE), 0);
	cr_assert_eq(ctl_vm_count(&srv), 0);
	guest_release(&g);
}

Test(self_vmm, limit_holds_while_every_page_stays_intact)
{
	struct guest g;
	const uint64_t limit = 8 << 20;
	attach(&g, "limited", 32 << 20, limit);
	fill(&g, 2);
	cr_assert_leq(guest_allocated(&g), limit, "memfd holds %lu bytes, limit %lu", (unsigned long)guest_allocated(&g),
		      (unsigned long)limit);
	cr_assert_eq(count_bad(&g, 2, 0, g.size / PAGE), 0);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "limited");
	cr_assert_leq(m->vm_info->resident_bytes, limit);
	cr_assert_gt(m->vm_info->evictions_total, (g.size - limit) / PAGE);
	cr_assert_gt(m->vm_info->faults_stored, 0);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_leq(guest_allocated(&g), limit);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	cr_assert_eq(count_bad(&g, 2, 0, g.size / PAGE), 0);
	guest_release(&g);
}

Test(self_vmm, discarded_pages_leave_the_store_and_read_as_zero)
{
	struct guest g;
	attach(&g, "discard", 8 << 20, 0);
	fill(&g, 3);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "discard", 0, true);
	uint64_t stored = m->evict_reply->stored_pages;
	memsrv__server_message__free_unpacked(m, NULL);
	/* the guest gives back the first half (a balloon, free page reporting) */
	size_t half = g.size / 2;
	cr_assert_eq(memsrv_discard(g.s, g.mem, half), 0, "discard: %s", memsrv_last_error());
	/* the Discard is applied on the VM thread, soon after */
	for (int i = 0; i < 200; i++) {
		m = ctl_info_ok(&srv, "discard");
		/* both, as one snapshot sometimes shows the count before the
		 * states (seen 1 run in 40, before and after restart support) */
		if (m->vm_info->removed_pages >= half / PAGE &&
		    m->vm_info->stored_pages + m->vm_info->zero_pages == (g.size - half) / PAGE)
			break;
		memsrv__server_message__free_unpacked(m, NULL);
		m = NULL;
		usleep(10000);
	}
	cr_assert(m, "the Discard never reached the page table");
	cr_assert_lt(m->vm_info->stored_pages, stored, "discarded pages must leave the store");
	cr_assert_eq(m->vm_info->stored_pages + m->vm_info->zero_pages, (g.size - half) / PAGE,
		     "stored %lu + zero %lu, resident %lu, never %lu, removed %lu, evicted %lu",
		     (unsigned long)m->vm_info->stored_pages, (unsigned long)m->vm_info->zero_pages,
		     (unsigned long)m->vm_info->resident_bytes / PAGE, (unsigned long)m->vm_info->never_touched_pages,
		     (unsigned long)m->vm_info->removed_pages, (unsigned long)m->vm_info->evictions_total);
	memsrv__server_message__free_unpacked(m, NULL);
	for (size_t i = 0; i < half; i += 512)
		cr_assert_eq(g.mem[i], 0, "discarded byte %zu reads %d", i, g.mem[i]);
	cr_assert_eq(count_bad(&g, 3, half / PAGE, g.size / PAGE), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* A page the guest touches the moment memsrv_discard() returned (free page
 * reporting hands it back to the guest's allocator at once) reads zeros:
 * the fault must not overtake the Discard and get the stored copy. */
Test(self_vmm, a_page_read_right_after_its_discard_reads_zeros)
{
	struct guest g;
	attach(&g, "discard-race", 4 << 20, 0);
	fill(&g, 4);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "discard-race", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	size_t pages = g.size / PAGE, stale = 0;
	for (size_t p = 0; p < pages; p++) {
		cr_assert_eq(memsrv_discard(g.s, g.mem + p * PAGE, PAGE), 0, "discard: %s", memsrv_last_error());
		stale += g.mem[p * PAGE + 8] != 0;
	}
	cr_assert_eq(stale, 0, "%zu of %zu pages read their old content right after their discard", stale, pages);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* The same for a batch: pages discarded without a fence each (a balloon
 * element's pages), then one fence for all of them, read zeros. */
Test(self_vmm, a_batch_of_discards_reads_zeros_after_its_one_fence)
{
	struct guest g;
	attach(&g, "discard-batch", 4 << 20, 0);
	fill(&g, 4);
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "discard-batch", 0, true), NULL);
	size_t pages = g.size / PAGE, stale = 0;
	const size_t batch = 64;
	for (size_t first = 0; first < pages; first += batch) {
		/* every other page: scattered, as a balloon's are */
		for (size_t p = first; p < first + batch; p += 2)
			cr_assert_eq(memsrv_discard_unfenced(g.s, g.mem + p * PAGE, PAGE), 0, "discard: %s",
				     memsrv_last_error());
		cr_assert_eq(memsrv_discard_fence(g.s), 0, "fence: %s", memsrv_last_error());
		for (size_t p = first; p < first + batch; p += 2)
			stale += g.mem[p * PAGE + 8] != 0;
	}
	cr_assert_eq(stale, 0, "%zu of %zu pages read their old content after their batch's fence", stale, pages / 2);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "discard-batch");
	cr_assert_eq(m->vm_info->removed_pages, pages / 2, "every discard of every batch reached memsrv: %lu",
		     (unsigned long)m->vm_info->removed_pages);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, word_of_kept, 4), 0, "the pages between them are kept");
	cr_assert_eq(memsrv_discard_fence(g.s), 0, "a fence with nothing owed is no error");
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* Whether memsrv's thread of VM "pinned" (named vm-pinned) may run on CPU
 * cpu alone. */
static bool vm_thread_on_cpu(int cpu)
{
	char dir[64], want[32], line[256];
	snprintf(dir, sizeof dir, "/proc/%d/task", srv.pid);
	snprintf(want, sizeof want, "Cpus_allowed_list:\t%d\n", cpu);
	DIR *d = opendir(dir);
	cr_assert(d, "%s: %s", dir, strerror(errno));
	bool found = false;
	for (struct dirent *de; !found && (de = readdir(d));) {
		char path[400];
		snprintf(path, sizeof path, "%s/%s/status", dir, de->d_name);
		FILE *f = de->d_name[0] == '.' ? NULL : fopen(path, "r");
		bool vm_thread = false;
		while (f && !found && fgets(line, sizeof line, f)) {
			vm_thread |= !strcmp(line, "Name:\tvm-pinned\n");
			found = vm_thread && !strcmp(line, want);
		}
		if (f)
			fclose(f);
	}
	closedir(d);
	return found;
}

struct pinned_reader {
	struct guest *g;
	int cpu;
	bool followed;
};

/* Pinned to one CPU, faults on the whole guest until memsrv's VM thread
 * runs on that CPU too (the set is made anew each second). */
static void *read_pinned(void *arg)
{
	struct pinned_reader *pr = arg;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(pr->cpu, &one);
	if (pthread_setaffinity_np(pthread_self(), sizeof one, &one))
		return NULL;
	for (int round = 0; round < 40 && !pr->followed; round++) {
		memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "pinned", 0, true), NULL);
		if (count_bad(pr->g, 5, 0, pr->g->size / PAGE))
			return NULL;
		pr->followed = vm_thread_on_cpu(pr->cpu);
		usleep(100000);
	}
	return NULL;
}

/* A VMM that pins its vCPU gets its faults served on that CPU: the VM
 * thread takes the faulting thread's affinity (cpu_follow.h). */
Test(self_vmm, the_vm_thread_runs_where_the_pinned_vcpu_does)
{
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		cr_skip_test("one CPU: nothing to follow");
	struct guest g;
	attach(&g, "pinned", 2 << 20, 0);
	fill(&g, 5);
	cr_assert(!vm_thread_on_cpu(1), "the VM thread is not pinned before the vCPU is");
	struct pinned_reader pr = { .g = &g, .cpu = 1 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, read_pinned, &pr), 0);
	pthread_join(t, NULL);
	cr_assert(pr.followed, "the VM thread never came to CPU 1, where the faulting thread runs");
	cr_assert_eq(count_bad(&g, 5, 0, g.size / PAGE), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* The VMM punches and zaps the whole guest as soon as the restore on detach
 * has placed its first page: the REMOVE event is unread while memsrv copies
 * the next page, which gets EAGAIN, and the resync applies it.  Only a
 * Discard discards: the pages memsrv holds are still the guest's, and all of
 * them are restored, none fails. */
struct punch_during_restore {
	struct guest *g;
	bool punched;
	int err;  /* of the punch or the madvise: asserts belong to the test's thread */
};

static void *punch_when_restore_starts(void *arg)
{
	struct punch_during_restore *d = arg;
	struct stat st;
	for (int i = 0; i < 10 * 1000 * 1000; i++)
		if (fstat(d->g->fd, &st) == 0 && st.st_blocks)
			break;
	d->punched = st.st_blocks != 0;
	if (fallocate(d->g->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, d->g->size) ||
	    madvise(d->g->mem, d->g->size, MADV_DONTNEED))
		d->err = errno;
	return NULL;
}

Test(self_vmm, a_punch_during_the_restore_is_no_failure)
{
	struct guest g;
	attach(&g, "punch-restore", 64 << 20, 0);
	fill(&g, 4);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "punch-restore", 0, true);
	uint64_t stored = m->evict_reply->stored_pages;
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(guest_allocated(&g), 0, "evicted pages must leave the memfd");
	struct punch_during_restore d = { .g = &g };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, punch_when_restore_starts, &d), 0);
	int restored = memsrv_detach(g.s, MEMSRV_DETACH_RESTORE);
	pthread_join(t, NULL);
	cr_assert_eq(d.err, 0, "punch: %s", strerror(d.err));
	cr_assert(d.punched, "the restore placed no page in time");
	cr_assert_eq(restored, (int)stored, "detach: %d of %lu (%s)", restored, (unsigned long)stored, memsrv_last_error());
	cr_assert_eq(ctl_vm_count(&srv), 0);
	guest_release(&g);
}

Test(self_vmm, refusals_name_the_field_at_fault)
{
	struct guest g;
	attach(&g, "first", 1 << 20, 0);

	/* same name twice */
	struct memsrv_region r = { .host_addr = g.mem, .size = g.size, .fd = g.fd };
	int fd2 = memfd_create("second", MFD_CLOEXEC);
	cr_assert_eq(ftruncate(fd2, 1 << 20), 0);
	void *m2 = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
	cr_assert_neq(m2, MAP_FAILED);
	r.host_addr = m2;
	r.fd = fd2;
	r.size = 1 << 20;
	struct memsrv_vm vm = { .name = "first", .regions = &r, .n_regions = 1 };
	struct memsrv_session *s;
	cr_assert_eq(memsrv_attach(srv.sock, &vm, &s), -EEXIST);
	cr_assert(strstr(memsrv_last_error(), "hello.name"), "%s", memsrv_last_error());

	/* a region larger than its fd */
	vm.name = "second";
	r.size = 2 << 20;
	cr_assert_eq(memsrv_attach(srv.sock, &vm, &s), -EINVAL);
	cr_assert(strstr(memsrv_last_error(), "hello.regions[0].fd_offset"), "%s", memsrv_last_error());

	/* a bad name */
	vm.name = "no spaces/allowed";
	r.size = 1 << 20;
	cr_assert_eq(memsrv_attach(srv.sock, &vm, &s), -EINVAL);
	cr_assert(strstr(memsrv_last_error(), "hello.name"), "%s", memsrv_last_error());

	/* limit below guarantee */
	vm.name = "second";
	vm.limit_bytes = 4 << 20;
	vm.guarantee_bytes = 8 << 20;
	cr_assert_eq(memsrv_attach(srv.sock, &vm, &s), -EINVAL);
	cr_assert(strstr(memsrv_last_error(), "hello.quota.guarantee_bytes"), "%s", memsrv_last_error());

	/* the first VM was not disturbed */
	cr_assert_eq(ctl_vm_count(&srv), 1);
	memset(g.mem, 7, g.size);
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	munmap(m2, 2 << 20);
	close(fd2);
	guest_release(&g);
}

Test(self_vmm, orderly_shutdown_gives_every_page_back)
{
	struct guest g;
	attach(&g, "bye", 8 << 20, 0);
	fill(&g, 4);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "bye", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_lt(guest_allocated(&g), g.size / 100);

	kill(srv.pid, SIGTERM);
	cr_assert_eq(wait_exit(srv.pid), 0, "memsrv must exit cleanly on SIGTERM");
	srv.pid = 0;
	int ret = memsrv_session_dispatch(g.s, NULL, NULL);
	cr_assert_eq(ret, -ECONNRESET);
	cr_assert(strstr(memsrv_last_error(), "every page was restored"), "%s", memsrv_last_error());
	/* no server now: every byte must be in our own memory */
	size_t nonzero = g.size / PAGE - (g.size / PAGE + 4) / 5;
	cr_assert_geq(guest_allocated(&g), nonzero * PAGE, "the non-zero pages are back in the memfd");
	cr_assert_eq(count_bad(&g, 4, 0, g.size / PAGE), 0);
	memsrv_detach(g.s, 0);
	guest_release(&g);
	server_start(&srv);  /* for the fixture's teardown */
}

struct balloon_seen {
	unsigned calls;
	uint64_t target_bytes;
};

static int record_balloon(void *opaque, uint64_t target_bytes)
{
	struct balloon_seen *seen = opaque;
	seen->calls++;
	seen->target_bytes = target_bytes;
	return 0;
}

/* Serves what the server sent on the session, waiting up to timeout_ms for it. */
static bool dispatch_within(struct guest *g, int timeout_ms, struct balloon_seen *seen)
{
	static const struct memsrv_vmm_ops ops = { .balloon_target = record_balloon };
	struct pollfd p = { .fd = memsrv_session_fd(g->s), .events = POLLIN };
	if (poll(&p, 1, timeout_ms) != 1)
		return false;
	int ret = memsrv_session_dispatch(g->s, &ops, seen);
	cr_assert_eq(ret, 0, "dispatch: %s (%s)", strerror(-ret), memsrv_last_error());
	return true;
}

static uint64_t balloon_info(const char *vm)
{
	return CTL_INFO(&srv, vm, balloon_target_bytes);
}

/* A refused balloon request: its errno and the field named. */
static void expect_balloon_refused(const char *vm, uint64_t target, int err, const char *field, const char *text)
{
	Memsrv__ServerMessage *m = NULL;
	cr_assert_eq(ctl_balloon(srv.sock, vm, target, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "balloon %s to %lu must be refused", vm,
		     (unsigned long)target);
	cr_assert_eq(m->error->errno_code, err, "%s", m->error->message);
	cr_assert(m->error->field && !strcmp(m->error->field, field), "field %s", m->error->field);
	cr_assert(strstr(m->error->message, text), "message: %s", m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
}

Test(self_vmm, balloon_target_reaches_the_vmm_and_shows_in_info)
{
	struct guest g;
	attach(&g, "balloon", 8 << 20, 0);
	cr_assert_eq(balloon_info("balloon"), 0, "never asked yet");

	Memsrv__ServerMessage *m = NULL;
	cr_assert_eq(ctl_balloon(srv.sock, "balloon", 4 << 20, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_BALLOON_REPLY, "%s",
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "wrong reply");
	cr_assert_eq(m->balloon_reply->target_bytes, 4 << 20);
	memsrv__server_message__free_unpacked(m, NULL);
	struct balloon_seen seen = { 0 };
	cr_assert(dispatch_within(&g, 5000, &seen), "no BalloonTarget reached the session");
	cr_assert_eq(seen.calls, 1);
	cr_assert_eq(seen.target_bytes, 4 << 20);
	cr_assert_eq(balloon_info("balloon"), 4 << 20);

	expect_balloon_refused("nosuch", 4 << 20, ENOENT, "balloon.name", "nosuch");
	expect_balloon_refused("balloon", 0, EINVAL, "balloon.target_bytes", "8388608");
	expect_balloon_refused("balloon", (8 << 20) + 1, EINVAL, "balloon.target_bytes", "8388608");
	cr_assert_not(dispatch_within(&g, 100, &seen), "a refused request must not reach the VMM");
	cr_assert_eq(balloon_info("balloon"), 4 << 20, "a refusal keeps the last target");

	/* the whole VM is a valid target */
	m = NULL;
	cr_assert_eq(ctl_balloon(srv.sock, "balloon", 8 << 20, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_BALLOON_REPLY);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert(dispatch_within(&g, 5000, &seen));
	cr_assert_eq(seen.calls, 2);
	cr_assert_eq(seen.target_bytes, 8 << 20);
	cr_assert_eq(balloon_info("balloon"), 8 << 20);

	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

struct balloon_vmm {
	struct guest *g;
	uint64_t target, asked;
};

/* This VMM's balloon: the guest gives back its highest pages, discarded as
 * QEMU's balloon does it (punch the hole, drop the mapping). */
static int balloon_give_back(void *opaque, uint64_t target)
{
	struct balloon_vmm *b = opaque;
	b->asked++;
	b->target = target;
	if (target < b->g->size) {
		cr_assert_eq(fallocate(b->g->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)target,
				       (off_t)(b->g->size - target)), 0);
		cr_assert_eq(madvise(b->g->mem + target, b->g->size - target, MADV_DONTNEED), 0);
	}
	return 0;
}

Test(self_vmm, under_pressure_the_balloon_goes_before_any_eviction)
{
	struct guest g;
	attach(&g, "ballooner", 64 << 20, 0);
	fill(&g, 6);
	struct balloon_vmm b = { .g = &g };
	const struct memsrv_vmm_ops ops = { .balloon_target = balloon_give_back };
	ctl_set_ok(&srv, "node", "limit=40M");
	Memsrv__ServerMessage *m;
	/* serve the session for a while, as a VMM's main loop does */
	for (int i = 0; i < 30 && !b.asked; i++) {
		struct pollfd p = { .fd = memsrv_session_fd(g.s), .events = POLLIN };
		if (poll(&p, 1, 100) > 0)
			cr_assert_eq(memsrv_session_dispatch(g.s, &ops, &b), 0);
	}
	cr_assert_gt(b.asked, 0, "memsrv never asked for the balloon");
	cr_assert_lt(b.target, g.size);
	usleep(300000);  /* the REMOVE events reach the VM thread */
	m = ctl_info_ok(&srv, "ballooner");
	fprintf(stderr, "balloon target %lu MiB: resident %lu MiB, removed %lu pages, evicted %lu, balloon %s\n",
		(unsigned long)(b.target >> 20), (unsigned long)(m->vm_info->resident_bytes >> 20),
		(unsigned long)m->vm_info->removed_pages, (unsigned long)m->vm_info->evictions_total, m->vm_info->balloon);
	cr_assert_str_eq(m->vm_info->balloon, "yes");
	cr_assert_gt(m->vm_info->removed_pages, (16u << 20) / PAGE, "the guest's pages came back through the balloon");
	cr_assert_eq(m->vm_info->evictions_total, 0, "nothing evicted while the balloon did the work");
	cr_assert_leq(m->vm_info->resident_bytes, b.target);
	memsrv__server_message__free_unpacked(m, NULL);
	/* what the guest kept is intact */
	cr_assert_eq(count_bad(&g, 6, 0, b.target / PAGE), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

Test(self_vmm, a_vmm_without_balloon_says_so_at_attach_and_is_never_asked)
{
	struct guest g;
	guest_attach(&g, &srv, "noballoon", 64 << 20, &(struct memsrv_vm){ .flags = MEMSRV_VM_NO_BALLOON });
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "noballoon");
	cr_assert_str_eq(m->vm_info->balloon, "no", "known from the attach, before any pressure");
	memsrv__server_message__free_unpacked(m, NULL);
	fill(&g, 7);
	ctl_set_ok(&srv, "node", "limit=40M");
	/* no balloon grace to wait out: the balancer evicts at once */
	struct pollfd p = { .fd = memsrv_session_fd(g.s), .events = POLLIN };
	uint64_t resident = UINT64_MAX;
	for (int i = 0; i < 10 && resident > (40u << 20); i++) {
		cr_assert_eq(poll(&p, 1, 100), 0, "memsrv sent this VMM a request though it has no balloon");
		m = ctl_info_ok(&srv, "noballoon");
		resident = m->vm_info->resident_bytes;
		memsrv__server_message__free_unpacked(m, NULL);
	}
	cr_assert_leq(resident, 40u << 20, "the node limit held within 1 s, below the 2 s balloon grace");
	cr_assert_eq(count_bad(&g, 7, 0, g.size / PAGE), 0);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}

/* A VMM that discards page after page from several threads (balloon and
 * free page reporting on a busy host) keeps the kernel's mappings changing
 * almost all the time: memsrv's ioctls meet EAGAIN again and again while it
 * evicts and serves faults under a limit, and each retry reads the REMOVEs
 * that came meanwhile.  Those must not fill its ring: a full ring reads no
 * more, the next REMOVE is never read, and memsrv and the VMM wait on each
 * other for good (seen: ~2,000 discards, then nothing).  The faults may
 * wait while the discards stream (the kernel refuses every placement while
 * an event is unread); once they stop, every page is there. */
#define STREAM_THREADS 4
#define STREAM_DISCARDS 4000  /* each: ~1 s here; the hang came after 384-2240 */

struct discard_stream {
	struct guest *g;
	size_t first_page, pages;
	unsigned long discards;
	int err;
};

static void *stream_discards(void *arg)
{
	struct discard_stream *d = arg;
	for (size_t p = 0; d->discards < STREAM_DISCARDS; p = (p + 1) % d->pages, d->discards++) {
		uint8_t *page = d->g->mem + (d->first_page + p) * PAGE;
		if (p == 0)
			page[8] = 1;  /* one the guest used, which memsrv counts as removed */
		if (memsrv_discard(d->g->s, page, PAGE)) {
			d->err = errno ? errno : EIO;
			break;
		}
	}
	return NULL;
}

struct churn {
	struct guest *g;
	size_t first_page, rounds;
	size_t bad;
};

static void *churn_under_limit(void *arg)
{
	struct churn *c = arg;
	size_t pages = c->g->size / PAGE;
	for (size_t r = 0; r < c->rounds && !c->bad; r++) {
		pattern_fill(c->g->mem, c->first_page, pages, word_of, 16 + r);
		c->bad = pattern_count_bad(c->g->mem, c->first_page, pages, word_of, 16 + r);
	}
	return NULL;
}

static int join_within(pthread_t t, int seconds)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += seconds;
	return pthread_timedjoin_np(t, NULL, &deadline);
}

Test(self_vmm, a_vmm_streaming_discards_never_stalls_eviction_or_faults, .timeout = 240)
{
	struct guest g;
	attach(&g, "discard-stream", 24 << 20, 8 << 20);
	const size_t stream_pages = 256;  /* the balloon's end of guest RAM */
	struct churn c = { .g = &g, .first_page = stream_pages, .rounds = 3 };
	struct discard_stream d[STREAM_THREADS];
	pthread_t dt[STREAM_THREADS], ct;
	for (unsigned i = 0; i < STREAM_THREADS; i++) {
		d[i] = (struct discard_stream){ .g = &g, .first_page = i * stream_pages / STREAM_THREADS,
						 .pages = stream_pages / STREAM_THREADS };
		cr_assert_eq(pthread_create(&dt[i], NULL, stream_discards, &d[i]), 0);
	}
	cr_assert_eq(pthread_create(&ct, NULL, churn_under_limit, &c), 0);
	unsigned long discards = 0;
	for (unsigned i = 0; i < STREAM_THREADS; i++) {
		cr_assert_eq(join_within(dt[i], 90), 0, "discards stuck: thread %u did %lu of %d", i, d[i].discards,
			     STREAM_DISCARDS);
		cr_assert_eq(d[i].err, 0, "discard: %s", strerror(d[i].err));
		discards += d[i].discards;
	}
	cr_assert_eq(join_within(ct, 90), 0, "the workload under the limit is stuck after the discards stopped");
	cr_assert_eq(c.bad, 0, "%zu pages lost their content", c.bad);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "discard-stream");
	cr_assert_gt(m->vm_info->evictions_total, 0, "the limit made memsrv evict");
	cr_assert_gt(m->vm_info->removed_pages, 0, "the discards reached memsrv");
	cr_log_info("%lu discards, %lu EAGAIN retries, %lu evictions", discards,
		    (unsigned long)m->vm_info->eagain_retries, (unsigned long)m->vm_info->evictions_total);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(&g);
}
