/* Description: quotas under pressure, with VMMs of the test's own (child
 * processes linking libmemsrv, not memsrv-vmsim): three VMs that each want
 * more than the node gives them split it 1:2:4 by their shares whether they
 * use a hot set, uniform random pages or scan all their memory, and none of
 * them is taxed as idle while it faults; memsrv's own memory is counted in
 * the node's overhead; after memsrv is killed and started again on its
 * state, the node limit holds again as soon as on a fresh start, for VMMs
 * that never answer a balloon request.  Residency is read from outside:
 * the blocks each VM's memfd holds.  Every VMM checks every page it reads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "child_vmm.h"
#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "memsrv.h"

#define PAGE GUEST_PAGE
#define MIB (1ull << 20)
#define MAX_VMMS 3
#define ACCESSES_PER_S 12288.0

enum pattern { HOT_SET, UNIFORM, SCAN };

struct vmm {
	struct test_child c;
	int memfd;        /* its number in the child */
	char name[32];
	size_t size;
	unsigned id;
	uint32_t shares;
	enum pattern pat;
};

static struct test_server srv;
static struct vmm vmms[MAX_VMMS];
static char state_dir[64], swap_dir[64];

static void teardown(void)
{
	for (int i = 0; i < MAX_VMMS; i++)
		if (vmms[i].c.pid > 0)
			child_kill(&vmms[i].c);
	if (server_alive(&srv))
		server_stop(&srv);
	scratch_remove(state_dir);
	scratch_remove(swap_dir);
}

TestSuite(pressure, .fini = teardown, .timeout = 240);

/* Different in every VM and page, never samefilled, and compressing to
 * about half: more than the cache holds goes to swap. */
static uint64_t word_of(size_t page, size_t w, uint64_t vm)
{
	uint64_t x = (uint64_t)vm << 56 | (uint64_t)page << 16 | (w % 32) << 4 | 1;
	if (w % 2)
		return x;
	x *= 0x9e3779b97f4a7c15ull;
	return x ^ x >> 29;
}

static volatile sig_atomic_t stop_flag;
static void on_term(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static uint64_t next_random(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 2685821657736338717ull;
}

/* How the child's VMM answers a balloon request: never (it does not serve
 * its session), or with this result and nothing given; or, for a guest
 * using the hot three quarters of its RAM (HOT_SET), by giving what it
 * does not use and no more, and saying what its balloon leaves it. */
enum balloon { BALLOON_SILENT, BALLOON_FAILS, BALLOON_CLAIMS, BALLOON_GIVES_FREE };
static enum balloon balloon_kind;

/* BALLOON_GIVES_FREE, in the child: its guest, and the bytes at the top of
 * its RAM the balloon holds. */
static struct guest *balloon_guest;
static uint64_t balloon_gen;  /* its pattern_fill generation */
static size_t balloon_holds;

static int balloon_give_free(uint64_t target_bytes)
{
	struct guest *g = balloon_guest;
	size_t can = g->size / 4;  /* what the guest does not use */
	/* whole pages, as a balloon gives them: no more than asked */
	size_t want = target_bytes < g->size ? (g->size - target_bytes) / PAGE * PAGE : 0;
	size_t holds = want < can ? want : can;
	if (holds > balloon_holds) {
		int ret = memsrv_discard(g->s, g->mem + g->size - holds, holds - balloon_holds);
		if (ret)
			return ret;
	}
	/* Deflated, the pages come back as zeros: the guest takes them back
	 * into use by writing them, and only then counts them as its own. */
	size_t pages = g->size / PAGE;
	if (holds < balloon_holds)
		pattern_fill(g->mem, pages - balloon_holds / PAGE, pages - holds / PAGE, word_of, balloon_gen);
	balloon_holds = holds;
	return memsrv_balloon_actual(g->s, g->size - holds);
}

static int balloon_target(void *opaque, uint64_t target_bytes)
{
	(void)opaque;
	if (balloon_kind == BALLOON_GIVES_FREE)
		return balloon_give_free(target_bytes);
	return balloon_kind == BALLOON_FAILS ? -EIO : 0;
}

static const struct memsrv_vmm_ops vmm_ops = { .balloon_target = balloon_target };

/* Answers the requests memsrv sent the VMM so far (a few at most: the fd
 * stays readable after a hang-up), waiting for none. */
static void serve_session(struct guest *g)
{
	struct pollfd p = { .fd = memsrv_session_fd(g->s), .events = POLLIN };
	for (int i = 0; i < 8 && poll(&p, 1, 0) > 0; i++)
		memsrv_session_dispatch(g->s, &vmm_ops, NULL);
}

/* The child: attaches, fills, then reads by its pattern until SIGTERM,
 * checks every page and exits 0, or 1 at the first wrong word. */
static void vmm_main(void *arg, int cmd, int ans)
{
	(void)cmd;
	const struct vmm *v = arg;
	signal(SIGTERM, on_term);
	struct guest g;
	child_guest_map(&g, ans, v->name, v->size, false);
	child_guest_attach(&g, ans, srv.sock, v->name, &(struct memsrv_vm){ .shares = v->shares });
	balloon_guest = &g;
	balloon_gen = v->id;
	uint8_t *mem = g.mem;
	size_t pages = v->size / PAGE;
	pattern_fill(mem, 0, pages, word_of, v->id);
	child_say_ready(ans, &g);
	close(ans);
	uint64_t x = 0x9e3779b97f4a7c15ull * (v->id + 1), n = 0;
	size_t hot = pages / 4 * 3;  /* HOT_SET: three quarters of the VM, at random */
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stop_flag) {
		/* a guest with work to do between its reads: ACCESSES_PER_S at
		 * most, so a scan takes two seconds; it runs flat out when late */
		/* a VMM's main loop serves its session when it is readable: a
		 * request answered seconds late (a slow guest: ASan) would read
		 * to memsrv as a balloon that stopped short */
		if (n % 64 == 0 && balloon_kind != BALLOON_SILENT)
			serve_session(&g);
		if (n % 64 == 0)
			for (;;) {
				clock_gettime(CLOCK_MONOTONIC, &t);
				double secs = (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
				if (secs * ACCESSES_PER_S >= (double)n || stop_flag)
					break;
			}
		size_t p = v->pat == SCAN ? n % pages : v->pat == UNIFORM ? next_random(&x) % pages : next_random(&x) % hot;
		n++;
		size_t w = n % (PAGE / 8);
		if (((volatile uint64_t *)(mem + p * PAGE))[w] != word_of(p, w, v->id)) {
			fprintf(stderr, "vmm %s: page %zu word %zu is wrong\n", v->name, p, w);
			_exit(1);
		}
	}
	/* what the balloon held last is the guest's no more */
	size_t bad = pattern_count_bad(mem, 0, pages - balloon_holds / PAGE, word_of, v->id);
	if (bad) {
		fprintf(stderr, "vmm %s: %zu pages are wrong at the end\n", v->name, bad);
		_exit(1);
	}
	_exit(0);
}

static void vmm_start(struct vmm *v, unsigned id, size_t size, uint32_t shares, enum pattern pat)
{
	snprintf(v->name, sizeof v->name, "p%u", id);
	v->size = size;
	v->id = id;
	v->shares = shares;
	v->pat = pat;
	child_fork(&v->c, vmm_main, v);
	struct child_ready r;
	cr_assert(child_vmm_wait_ready(&v->c, &r, 120000), "VMM %s did not start", v->name);
	cr_assert_eq(r.err, 0, "VMM %s did not start: %s", v->name, r.why);
	v->memfd = r.memfd;
}

/* SIGTERM: the VMM checks all of its memory and says how it went. */
static void vmm_stop_verified(struct vmm *v)
{
	kill(v->c.pid, SIGTERM);
	int st = wait_exit(v->c.pid);
	v->c.pid = 0;
	close(v->c.cmd);
	close(v->c.ans);
	cr_assert_eq(st, 0, "VMM %s exited with %d: a page came back wrong", v->name, st);
}

/* What the VM's memfd holds, seen from outside memsrv. */
static uint64_t vmm_resident(const struct vmm *v)
{
	if (v->c.pid <= 0)
		return 0;  /* not started */
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd/%d", v->c.pid, v->memfd);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	return (uint64_t)st.st_blocks * 512;
}

static uint64_t memsrv_rss(void)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/statm", srv.pid);
	FILE *f = fopen(path, "r");
	cr_assert(f);
	unsigned long size, res;
	cr_assert_eq(fscanf(f, "%lu %lu", &size, &res), 2);
	fclose(f);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static const char *pattern_name(enum pattern p)
{
	return p == HOT_SET ? "hot set" : p == UNIFORM ? "uniform" : "scan";
}

/* Three VMs of 96 MiB with shares 1:2:4, each wanting all of it (or its
 * hot three quarters) under a node limit that leaves them about 115 MiB
 * together: as a user first tried it. */
static void shares_hold_under(enum pattern pat)
{
	cr_assert(scratch_make(swap_dir, sizeof swap_dir, "/var/tmp/memsrv-pressure.XXXXXX"));
	char swap_opt[96];
	snprintf(swap_opt, sizeof swap_opt, "%s:512M", swap_dir);
	const char *opts[] = { "--node-limit", "142M", "--cache-size", "16M", "--swap-dir", swap_opt, NULL };
	server_start_with(&srv, opts);
	const uint32_t shares[MAX_VMMS] = { 1, 2, 4 };
	for (unsigned i = 0; i < MAX_VMMS; i++)
		vmm_start(&vmms[i], i, 96 * MIB, shares[i], pat);
	sleep(15);  /* the working sets are sampled, the balancer converges */
	uint64_t res[MAX_VMMS] = { 0 }, overhead = 0, rss = 0;
	const int samples = 10;
	for (int k = 0; k < samples; k++) {
		for (unsigned i = 0; i < MAX_VMMS; i++)
			res[i] += vmm_resident(&vmms[i]) / samples;
		Memsrv__ServerMessage *m;
		Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
		overhead += st->overhead_bytes / samples;
		memsrv__server_message__free_unpacked(m, NULL);
		rss += memsrv_rss() / samples;
		usleep(200000);
	}
	uint64_t ws[MAX_VMMS], resident_seen[MAX_VMMS];
	bool active[MAX_VMMS];
	for (unsigned i = 0; i < MAX_VMMS; i++) {
		Memsrv__ServerMessage *m = ctl_info_ok(&srv, vmms[i].name);
		ws[i] = m->vm_info->working_set_bytes;
		resident_seen[i] = m->vm_info->resident_bytes;
		active[i] = m->vm_info->active;
		memsrv__server_message__free_unpacked(m, NULL);
	}
	for (unsigned i = 0; i < MAX_VMMS; i++)
		vmm_stop_verified(&vmms[i]);
	uint64_t left = (142 * MIB > overhead ? 142 * MIB - overhead : 0);
	fprintf(stderr,
		"%s: resident %.1f : %.1f : %.1f MiB, working sets %.1f : %.1f : %.1f MiB, overhead %.1f MiB "
		"(memsrv's RSS %.1f MiB), %.1f MiB left for the VMs\n",
		pattern_name(pat), (double)res[0] / MIB, (double)res[1] / MIB, (double)res[2] / MIB, (double)ws[0] / MIB,
		(double)ws[1] / MIB, (double)ws[2] / MIB, (double)overhead / MIB, (double)rss / MIB, (double)left / MIB);
	/* memsrv's own memory is what the node pays for it */
	cr_assert_geq(overhead, rss / 10 * 9, "overhead %lu counts less than memsrv's RSS %lu",
		      (unsigned long)overhead, (unsigned long)rss);
	for (unsigned i = 0; i < MAX_VMMS; i++) {
		double want = (double)left * shares[i] / 7;
		cr_assert(res[i] > want * 0.75 && res[i] < want * 1.25,
			  "%s: VM with shares %u holds %.1f MiB, its share is %.1f MiB (+-25%%)", pattern_name(pat),
			  shares[i], (double)res[i] / MIB, want / MIB);
		/* each of them wants more than it holds: busy, never idle */
		cr_assert(active[i], "%s: %s faults all the time but is called idle", pattern_name(pat), vmms[i].name);
		cr_assert_geq(ws[i], resident_seen[i] / 10 * 9, "%s: %s's working set %lu is below what it holds (%lu)",
			      pattern_name(pat), vmms[i].name, (unsigned long)ws[i], (unsigned long)resident_seen[i]);
		uint64_t used = pat == HOT_SET ? 72 * MIB : 96 * MIB;
		cr_assert_leq(ws[i], used + used / 2, "%s: %s's working set %lu is more than it uses (%lu)",
			      pattern_name(pat), vmms[i].name, (unsigned long)ws[i], (unsigned long)used);
	}
}

Test(pressure, shares_hold_for_vms_with_a_hot_set)
{
	shares_hold_under(HOT_SET);
}

Test(pressure, shares_hold_for_vms_reading_at_random)
{
	shares_hold_under(UNIFORM);
}

Test(pressure, shares_hold_for_vms_scanning_all_their_memory)
{
	shares_hold_under(SCAN);
}

/* Seconds until the VMs hold at most bound together and the second one
 * at most its own limit, for a whole second (ten looks in a row); -1 if
 * not within timeout_s. */
static double seconds_until_held(uint64_t bound, uint64_t second_limit, int timeout_s)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int in_a_row = 0;
	for (int k = 0; k < timeout_s * 10; k++) {
		uint64_t second = vmm_resident(&vmms[1]), sum = vmm_resident(&vmms[0]) + second;
		in_a_row = sum <= bound && second <= second_limit ? in_a_row + 1 : 0;
		if (in_a_row == 10) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			return (double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 - 0.9;
		}
		usleep(100000);
	}
	return -1;
}

/* Two VMs of 64 MiB reading all their memory, VMMs that never answer a
 * balloon request; memsrv-ctl set lowers the node limit to 72 MiB and
 * gives the second VM a limit of 12 MiB.  After each kill -9 and restart
 * on the state dir, both limits hold again about as soon as on a fresh
 * start (the balloon's grace, then eviction). */
Test(pressure, the_limits_hold_after_every_restart)
{
	cr_assert(scratch_make(state_dir, sizeof state_dir, "/dev/shm/memsrv-pressure.XXXXXX"));
	cr_assert(scratch_make(swap_dir, sizeof swap_dir, "/var/tmp/memsrv-pressure.XXXXXX"));
	char swap_opt[96];
	snprintf(swap_opt, sizeof swap_opt, "%s:256M", swap_dir);
	const char *opts[] = { "--node-limit", "96M", "--cache-size", "8M", "--swap-dir", swap_opt,
			       "--state-dir", state_dir, NULL };
	server_start_with(&srv, opts);
	vmm_start(&vmms[0], 0, 64 * MIB, 0, SCAN);
	vmm_start(&vmms[1], 1, 64 * MIB, 0, UNIFORM);
	ctl_set_ok(&srv, "node", "limit=72M");
	ctl_set_ok(&srv, vmms[1].name, "limit=12M");
	double fresh = 0;
	for (int round = 0; round <= 3; round++) {
		if (round) {
			sleep(1);  /* churning at their targets */
			server_crash_and_restart(&srv, opts);
		}
		for (int k = 0; k < 500 && ctl_vm_count(&srv) < 2; k++)
			usleep(10000);  /* libmemsrv reconnects every 50 ms */
		cr_assert_eq(ctl_vm_count(&srv), 2, "round %d: the VMs did not resume", round);
		Memsrv__ServerMessage *m;
		Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
		cr_assert_eq(st->node_limit_bytes, 72 * MIB, "round %d: the node limit is %lu", round,
			     (unsigned long)st->node_limit_bytes);
		memsrv__server_message__free_unpacked(m, NULL);
		m = ctl_info_ok(&srv, vmms[1].name);
		cr_assert_eq(m->vm_info->limit_bytes, 12 * MIB, "round %d: %s's limit is %lu", round, vmms[1].name,
			     (unsigned long)m->vm_info->limit_bytes);
		memsrv__server_message__free_unpacked(m, NULL);
		/* the VMs alone: the node's overhead comes off the limit too */
		double s = seconds_until_held(72 * MIB, 12 * MIB, 30);
		fprintf(stderr, "round %d: the limits held after %.1f s\n", round, s);
		cr_assert_geq(s, 0, "%s: the VMs hold more than the limits (node 72 MiB, %s 12 MiB) after 30 s",
			      round ? "after a restart" : "on a fresh start", vmms[1].name);
		if (!round)
			fresh = s;
		else
			cr_assert_leq(s, fresh + 5, "after restart %d the limits took %.1f s to hold, %.1f s on a fresh start",
				      round, s, fresh);
	}
	vmm_stop_verified(&vmms[0]);
	vmm_stop_verified(&vmms[1]);
}

/* A VMM whose balloon fails still has one (it is asked again later), and
 * one that says yes but gives nothing is held to its target all the same:
 * in both cases eviction holds the node limit after the balloon's grace. */
static void held_whatever_the_balloon_does(enum balloon kind)
{
	balloon_kind = kind;
	const char *opts[] = { "--node-limit", "40M", NULL };
	server_start_with(&srv, opts);
	vmm_start(&vmms[0], 0, 64 * MIB, 0, UNIFORM);
	double s = seconds_until_held(40 * MIB, 64 * MIB, 20);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, vmms[0].name);
	char balloon[16];
	snprintf(balloon, sizeof balloon, "%s", m->vm_info->balloon);
	uint64_t asked = m->vm_info->balloon_target_bytes;
	memsrv__server_message__free_unpacked(m, NULL);
	fprintf(stderr, "balloon %s: the node limit held after %.1f s; balloon %s, asked for %lu MiB\n",
		kind == BALLOON_FAILS ? "fails" : "claims", s, balloon, (unsigned long)(asked >> 20));
	vmm_stop_verified(&vmms[0]);
	cr_assert_gt(asked, 0, "the balloon was never asked");
	cr_assert_str_eq(balloon, "yes", "a VMM that answered the request has a balloon");
	cr_assert_geq(s, 0, "the VM holds more than the node limit of 40 MiB after 20 s");
}

Test(pressure, a_failing_balloon_is_held_by_eviction)
{
	held_whatever_the_balloon_does(BALLOON_FAILS);
}

Test(pressure, a_balloon_that_gives_nothing_is_held_by_eviction)
{
	held_whatever_the_balloon_does(BALLOON_CLAIMS);
}

/* The balloon as memsrv shows it. */
struct balloon_view {
	uint64_t asked, actual, stopped;
	bool told;
};

static struct balloon_view balloon_view(const char *vm)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, vm);
	const Memsrv__VmInfo *i = m->vm_info;
	struct balloon_view v = { i->balloon_target_bytes, i->balloon_actual_bytes, i->balloon_stopped_bytes,
				  i->has_balloon_actual_bytes };
	memsrv__server_message__free_unpacked(m, NULL);
	return v;
}

static bool balloon_stopped(void *vm)
{
	return balloon_view(vm).stopped != 0;
}

/* A guest that uses three quarters of its 64 MiB and gives its balloon the
 * rest, no more, under a node limit that leaves it less than that: memsrv
 * hears where the balloon left it (48 MiB) once the VMM answered its
 * request, asks no lower than that rather than squeeze the guest into
 * swapping, and holds the node limit with its store. */
Test(pressure, a_guest_that_cannot_give_more_is_not_asked_to_and_the_store_holds_the_rest)
{
	balloon_kind = BALLOON_GIVES_FREE;
	const char *opts[] = { "--node-limit", "40M", NULL };
	server_start_with(&srv, opts);
	vmm_start(&vmms[0], 0, 64 * MIB, 0, HOT_SET);
	bool stopped = wait_until(balloon_stopped, vmms[0].name, 30000);
	struct balloon_view v = balloon_view(vmms[0].name);
	sleep(3);  /* more requests, if any */
	struct balloon_view later = balloon_view(vmms[0].name);
	double s = seconds_until_held(40 * MIB, 64 * MIB, 20);
	fprintf(stderr, "a balloon that gives only what is free: stopped short at %lu MiB, the balloon left %lu MiB, "
		"asked for %lu MiB, 3 s later %lu MiB; the node limit held\n", (unsigned long)(v.stopped >> 20),
		(unsigned long)(v.actual >> 20), (unsigned long)(v.asked >> 20), (unsigned long)(later.asked >> 20));
	vmm_stop_verified(&vmms[0]);
	cr_assert(v.told, "memsrv does not show what the balloon left the guest");
	cr_assert(stopped, "memsrv never saw that the guest's balloon stopped short (asked for %lu MiB, it left %lu MiB)",
		  (unsigned long)(v.asked >> 20), (unsigned long)(v.actual >> 20));
	cr_assert_eq(v.stopped, 48 * MIB, "the guest gives 16 MiB, no more");
	cr_assert_eq(v.actual, 48 * MIB);
	/* while memsrv holds the guest stopped it asks no lower; it lets go
	 * of the stop (and may ask again) once the guest's working set fell
	 * by an eighth, which a guest slowed down (ASan) may show */
	cr_assert(later.asked + MIB >= v.stopped || !later.stopped,
		  "asked for %lu MiB again, below the %lu MiB the guest stopped at, which memsrv still shows",
		  (unsigned long)(later.asked >> 20), (unsigned long)(later.stopped >> 20));
	cr_assert_geq(s, 0, "the VM holds more than the node limit of 40 MiB");
}

static bool balloon_gave_back_all(void *vm)
{
	return balloon_view(vm).actual == 64 * MIB;
}

/* The same guest, after the node limit rises again: memsrv lets the balloon
 * deflate, the guest writes the pages it gets back, and every page it owns
 * checks, those it gave and took back included. */
Test(pressure, a_deflated_balloon_gives_the_guest_back_pages_it_can_use)
{
	balloon_kind = BALLOON_GIVES_FREE;
	const char *opts[] = { "--node-limit", "40M", NULL };
	server_start_with(&srv, opts);
	vmm_start(&vmms[0], 0, 64 * MIB, 0, HOT_SET);
	cr_assert(wait_until(balloon_stopped, vmms[0].name, 30000), "the balloon never stopped short");
	struct balloon_view inflated = balloon_view(vmms[0].name);
	ctl_set_ok(&srv, "node", "limit=256M");
	bool back = wait_until(balloon_gave_back_all, vmms[0].name, 30000);
	struct balloon_view deflated = balloon_view(vmms[0].name);
	fprintf(stderr, "balloon inflated to leave %lu MiB, deflated to %lu MiB (asked for %lu MiB)\n",
		(unsigned long)(inflated.actual >> 20), (unsigned long)(deflated.actual >> 20),
		(unsigned long)(deflated.asked >> 20));
	vmm_stop_verified(&vmms[0]);
	cr_assert_eq(inflated.actual, 48 * MIB);
	cr_assert(back, "the balloon still leaves the guest %lu MiB of 64 after the node limit rose",
		  (unsigned long)(deflated.actual >> 20));
}
