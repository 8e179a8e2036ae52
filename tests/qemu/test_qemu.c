/* Description: real Linux guests in QEMU (TCG) whose RAM memsrv manages
 * through the project's QEMU patch: a guest verifies every page it wrote
 * while memsrv holds it to 64 MiB resident; two guests at once; a balloon
 * inflated and deflated from memsrv-ctl, QEMU telling memsrv where it left
 * the guest; the pages a guest frees given
 * back by free page reporting; a guest suspended mid-workload
 * (memsrv's image and QEMU's device state) and resumed in a new QEMU; a
 * guest migrated live, mid-workload, to a QEMU on another memsrv node
 * (memsrv-ctl migrate, then QEMU's migration of its device state), and one
 * whose migration is cancelled, running on whole at the source.
 *
 * QEMU_BIN (vmm-patch/build-qemu) and GUEST_DIR (vmm-patch/guest/build-guest)
 * come from the build; LD_LIBRARY_PATH points QEMU at this tree's libmemsrv.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

static struct test_server srv;
/* A second memsrv node, for live migration: started by the tests that
 * migrate (node_b_start), stopped by the teardown. */
static struct test_server node_b;
static char node_b_listen[32];
static bool node_b_started;
/* A test's directory of 200 MB or more, removed even when the test fails. */
static char scratch[128];

static void setup(void) { server_start(&srv); }
static void teardown(void)
{
	if (node_b_started)
		server_stop(&node_b);
	node_b_started = false;
	server_stop(&srv);
	scratch_remove(scratch);
}

TestSuite(qemu, .init = setup, .fini = teardown, .timeout = 600);

/* The guest's CPU model; NULL: QEMU's default (qemu64, an AMD-like CPU). */
static const char *guest_cpu;
/* A QMP socket for the next guest_boot (a path); NULL: none. */
static const char *guest_qmp;
/* The next guest_boot waits for an incoming migration (-incoming defer)
 * instead of booting. */
static bool guest_incoming;
/* The memsrv the next guest_boot attaches to; NULL: srv. */
static const struct test_server *guest_srv;
/* The balloon device of a guest booted with one. */
static const char *guest_balloon = "virtio-balloon-pci";

struct guest {
	pid_t pid;
	FILE *console;
	char name[32];
	double started;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Boots the test guest with RAM from memory-backend-memsrv (or, with
 * memsrv false, memory-backend-memfd: the baseline). */
static void guest_boot_opts(struct guest *g, const char *name, bool memsrv, const char *limit, bool balloon,
			    const char *backend_opts, const char *cmdline)
{
	const char *qemu = getenv("QEMU_BIN"), *dir = getenv("GUEST_DIR");
	cr_assert(qemu && dir, "QEMU_BIN and GUEST_DIR must be set (tools/check sets them)");
	char backend[512], kernel[256], initrd[256], append[512], qmp[256];
	if (memsrv)
		snprintf(backend, sizeof backend,
			 "memory-backend-memsrv,id=ram0,size=256M,socket=%s,name=%s%s%s%s",
			 guest_srv ? guest_srv->sock : srv.sock, name,
			 limit ? ",limit=" : "", limit ? limit : "", backend_opts);
	else
		snprintf(backend, sizeof backend, "memory-backend-memfd,id=ram0,size=256M,share=on");
	snprintf(kernel, sizeof kernel, "%s/vmlinuz", dir);
	snprintf(initrd, sizeof initrd, "%s/initramfs.cpio.gz", dir);
	snprintf(append, sizeof append, "console=ttyS0 quiet panic=-1 %s", cmdline);
	const char *argv[40] = {
		qemu, "-machine", "q35,memory-backend=ram0", "-accel", "tcg", "-m", "256M",
		"-object", backend, "-nographic", "-no-reboot", "-nic", "none",
		"-L", "/usr/share/qemu", "-L", "/usr/share/seabios",
		"-kernel", kernel, "-initrd", initrd, "-append", append,
		"-cpu", guest_cpu ? guest_cpu : "qemu64",
	};
	size_t argc = 0;
	while (argv[argc])
		argc++;
	if (balloon) {
		argv[argc++] = "-device";
		argv[argc++] = guest_balloon;
	}
	if (guest_qmp) {
		snprintf(qmp, sizeof qmp, "unix:%s,server=on,wait=off", guest_qmp);
		argv[argc++] = "-qmp";
		argv[argc++] = qmp;
	}
	if (guest_incoming) {
		argv[argc++] = "-incoming";
		argv[argc++] = "defer";
	}
	int out[2];
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	snprintf(g->name, sizeof g->name, "%s", name);
	g->started = now_s();
	g->pid = fork();
	cr_assert_geq(g->pid, 0);
	if (g->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);  /* a test that fails leaves no QEMU behind */
		dup2(out[1], 1);
		dup2(out[1], 2);
		int devnull = open("/dev/null", O_RDONLY);
		dup2(devnull, 0);
		execv(qemu, (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	g->console = fdopen(out[0], "r");
	cr_assert(g->console);
}

static void guest_boot(struct guest *g, const char *name, bool memsrv, const char *limit, bool balloon,
		       const char *cmdline)
{
	guest_boot_opts(g, name, memsrv, limit, balloon, "", cmdline);
}

/* Reads the console up to a line containing what; copies it into line. */
static bool guest_expect(struct guest *g, const char *what, char *line, size_t len)
{
	while (fgets(line, (int)len, g->console)) {
		if (strstr(line, what))
			return true;
		if (strstr(line, "MEMLOAD") || strstr(line, "GUEST") || strstr(line, "qemu") ||
		    strstr(line, "memsrv") || strstr(line, "BALLOON"))
			cr_log_info("%s: %s", g->name, line);
	}
	return false;
}

/* Expects a RESULT line with no mismatch; returns it. */
static void guest_result_ok(struct guest *g, char *line, size_t len)
{
	cr_assert(guest_expect(g, "MEMLOAD RESULT", line, len), "%s: no result from the guest's workload", g->name);
	cr_assert(strstr(line, "mismatches=0 "), "%s: %s", g->name, line);
}

static int guest_wait(struct guest *g)
{
	char line[512];
	while (fgets(line, sizeof line, g->console))
		;
	fclose(g->console);
	return wait_exit(g->pid);
}

static bool vm_gone(void *arg)
{
	Memsrv__ServerMessage *m = NULL;
	bool gone = ctl_info(srv.sock, arg, &m) == 0 && m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR;
	if (m)
		memsrv__server_message__free_unpacked(m, NULL);
	return gone;
}

static bool vm_attached(void *arg)
{
	return !vm_gone(arg);
}

Test(qemu, a_guest_verifies_every_page_while_held_to_64m)
{
	struct guest g;
	char line[512];
	guest_boot_opts(&g, "guest1", true, "64M", false, ",eviction=lru,codec=zstd", "memload.mib=160");
	cr_assert(guest_expect(&g, "GUEST BOOTED", line, sizeof line), "guest1 did not boot");
	double booted = now_s();
	guest_result_ok(&g, line, sizeof line);
	double worked = now_s();
	fprintf(stderr, "guest1 under memsrv: boot %.1f s, workload %.1f s: %s", booted - g.started, worked - booted, line);

	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "guest1");
	Memsrv__VmInfo *info = m->vm_info;
	cr_assert_eq(info->size_bytes, 256u << 20);
	cr_assert_str_eq(info->policy, "lru", "the backend's eviction= reached memsrv");
	cr_assert_str_eq(info->codec, "zstd", "the backend's codec= reached memsrv");
	cr_assert_leq(info->resident_bytes, 64u << 20, "resident %lu over the 64 MiB limit",
		      (unsigned long)info->resident_bytes);
	cr_assert_gt(info->evictions_total, (96u << 20) / 4096, "the guest's 160 MiB cannot fit in 64 MiB");
	cr_assert_gt(info->faults_stored, 0);
	fprintf(stderr, "memsrv's view: faults %lu (stored %lu), evictions %lu, stored %lu pages in %lu bytes, "
		    "fault p50 %.1f us p99 %.1f us\n", (unsigned long)info->faults_total,
		    (unsigned long)info->faults_stored, (unsigned long)info->evictions_total,
		    (unsigned long)info->stored_pages, (unsigned long)info->stored_bytes, info->fault_latency_us->p50,
		    info->fault_latency_us->p99);
	memsrv__server_message__free_unpacked(m, NULL);

	cr_assert(guest_expect(&g, "GUEST DONE", line, sizeof line));
	cr_assert_eq(guest_wait(&g), 0, "QEMU did not exit cleanly after the guest powered off");
	cr_assert(wait_until(vm_gone, "guest1", 5000), "guest1 is still attached after QEMU exited");
}


Test(qemu, a_guest_runs_on_through_memsrv_killed_and_restarted)
{
	/* this test's memsrv keeps its state, as a supervised one would */
	server_stop(&srv);
	char state[64], rm[96];
	snprintf(state, sizeof state, "/dev/shm/memsrv-qemu-state.XXXXXX");
	cr_assert(mkdtemp(state));
	const char *opts[] = { "--state-dir", state, NULL };
	server_start_with(&srv, opts);
	struct guest g;
	char line[512];
	guest_boot(&g, "phoenix", true, "64M", false, "memload.mib=160 memload.passes=10 memload.rewrite=50");
	cr_assert(guest_expect(&g, "GUEST BOOTED", line, sizeof line), "phoenix did not boot");
	const int kills = 4;
	for (int k = 0; k < kills; k++) {
		usleep(1000000);  /* mid-workload: pages stored, faults in flight */
		server_crash_and_restart(&srv, opts);
		cr_assert(wait_until(vm_attached, "phoenix", 10000), "QEMU reconnected after kill %d", k + 1);
	}
	guest_result_ok(&g, line, sizeof line);
	fprintf(stderr, "phoenix through %d kills of memsrv: %s", kills, line);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "phoenix");
	cr_assert_gt(m->vm_info->faults_stored, 0, "the restarted memsrv served stored pages");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert(guest_expect(&g, "GUEST DONE", line, sizeof line));
	cr_assert_eq(guest_wait(&g), 0, "QEMU exited cleanly");
	cr_assert(wait_until(vm_gone, "phoenix", 5000));
	snprintf(rm, sizeof rm, "rm -rf %s", state);
	cr_assert_eq(system(rm), 0);
}

/* Waits up to timeout_ms for QEMU to end; SIGKILLs it after that.  Returns
 * wait_exit()'s status, or -1 if it had to be killed. */
static int guest_wait_bounded(struct guest *g, int timeout_ms)
{
	int status;
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		pid_t r = waitpid(g->pid, &status, WNOHANG);
		if (r == g->pid)
			return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
		usleep(50000);
	}
	kill(g->pid, SIGKILL);
	wait_exit(g->pid);
	return -1;
}

/* The rest of the console after QEMU ended: every line, in out. */
static void guest_console_rest(struct guest *g, char *out, size_t len)
{
	char line[512];
	size_t used = 0;
	out[0] = 0;
	while (fgets(line, sizeof line, g->console)) {
		cr_log_info("%s: %s", g->name, line);
		if (used + strlen(line) < len)
			used += (size_t)snprintf(out + used, len - used, "%s", line);
	}
	fclose(g->console);
}

Test(qemu, qemu_ends_naming_the_cause_when_a_restarted_memsrv_lost_the_pages)
{
	/* memsrv without --state-dir: a crash loses every page it held */
	struct guest g;
	char line[512], rest[16384];
	guest_boot(&g, "amnesia", true, "64M", false, "memload.mib=160 memload.passes=1000 memload.rewrite=50");
	cr_assert(guest_expect(&g, "GUEST BOOTED", line, sizeof line), "amnesia did not boot");
	cr_assert(guest_expect(&g, "pass 1 ", line, sizeof line), "the workload runs");
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "amnesia", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	server_crash_and_restart(&srv, NULL);
	double killed = now_s();
	int status = guest_wait_bounded(&g, 60000);
	double ended = now_s();
	guest_console_rest(&g, rest, sizeof rest);
	cr_assert_neq(status, -1, "QEMU still ran 60 s after memsrv came back without the guest's pages: %s", rest);
	fprintf(stderr, "amnesia: QEMU ended %.1f s after memsrv was killed, status %d\n", ended - killed, status);
	cr_assert_eq(status, 1, "QEMU ended in order, with a failure status: %s", rest);
	cr_assert(strstr(rest, "memsrv kept no state for VM amnesia") && strstr(rest, "memory is lost, shutting down"),
		  "QEMU names the cause: %s", rest);
	cr_assert_null(strstr(rest, "MEMLOAD MISMATCH"), "the guest never read a lost page as zeros: %s", rest);
	cr_assert_eq(ctl_vm_count(&srv), 0);
}

Test(qemu, two_guests_at_once)
{
	struct guest a, b;
	char line[512];
	guest_boot(&a, "guest-a", true, "64M", false, "memload.mib=96");
	guest_boot(&b, "guest-b", true, "64M", false, "memload.mib=96 memload.rewrite=50");
	guest_result_ok(&a, line, sizeof line);
	guest_result_ok(&b, line, sizeof line);
	cr_assert_eq(guest_wait(&a), 0);
	cr_assert_eq(guest_wait(&b), 0);
	cr_assert(wait_until(vm_gone, "guest-a", 5000));
	cr_assert(wait_until(vm_gone, "guest-b", 5000));
}

static bool balloon_taken(void *arg)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "ballooned");
	bool done = m->vm_info->removed_pages >= *(uint64_t *)arg;
	memsrv__server_message__free_unpacked(m, NULL);
	return done;
}

/* QEMU told memsrv the balloon leaves the guest this many bytes. */
static bool balloon_actual_is(void *arg)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "ballooned");
	bool is = m->vm_info->has_balloon_actual_bytes && m->vm_info->balloon_actual_bytes == *(uint64_t *)arg;
	memsrv__server_message__free_unpacked(m, NULL);
	return is;
}

/* The per-state counts add up to the VM's pages.  They are read one by one
 * while the VM thread moves pages (and the sampler may hold some in
 * probation): a read that straddles a move is tried again. */
static bool states_add_up(void *arg)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "ballooned");
	const Memsrv__VmInfo *i = m->vm_info;
	bool ok = i->resident_bytes / 4096 + i->never_touched_pages + i->zero_pages + i->stored_pages +
		  i->probation_pages == *(uint64_t *)arg;
	memsrv__server_message__free_unpacked(m, NULL);
	return ok;
}

Test(qemu, the_balloon_gives_pages_back_to_memsrv_and_takes_them_again)
{
	struct guest g;
	char line[512];
	guest_boot(&g, "ballooned", true, NULL, true, "balloon=1 memload.mib=48 memload.hold=40");
	cr_assert(guest_expect(&g, "BALLOON DRIVER LOADED", line, sizeof line), "no balloon driver in the guest");
	guest_result_ok(&g, line, sizeof line);
	cr_assert(guest_expect(&g, "MEMLOAD HOLDING", line, sizeof line));
	Memsrv__ServerMessage *m = NULL;

	/* inflate: the guest gives 96 MiB back; QEMU discards them, memsrv sees REMOVE events */
	m = NULL;
	cr_assert_eq(ctl_balloon(srv.sock, "ballooned", 160u << 20, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_BALLOON_REPLY);
	memsrv__server_message__free_unpacked(m, NULL);
	uint64_t want = (64u << 20) / 4096;
	cr_assert(wait_until(balloon_taken, &want, 30000), "the balloon's pages never reached memsrv");
	/* what the guest gave back is neither resident nor stored: it is a hole
	 * again (the guest zeroes a page before ballooning it, so some were
	 * resident a moment before) */
	m = ctl_info_ok(&srv, "ballooned");
	Memsrv__VmInfo *info = m->vm_info;
	cr_assert_geq(info->never_touched_pages * 4096, 64u << 20, "%lu pages not held",
		      (unsigned long)info->never_touched_pages);
	cr_assert_leq(info->resident_bytes, (256u - 64u) << 20);
	memsrv__server_message__free_unpacked(m, NULL);
	uint64_t pages = (256u << 20) / 4096;
	cr_assert(wait_until(states_add_up, &pages, 5000), "every page is in exactly one state");
	uint64_t actual = 160u << 20;
	cr_assert(wait_until(balloon_actual_is, &actual, 10000), "QEMU did not tell memsrv where the balloon left the guest");

	/* deflate: the guest may use all of its RAM again */
	m = NULL;
	cr_assert_eq(ctl_balloon(srv.sock, "ballooned", 256u << 20, &m), 0);
	memsrv__server_message__free_unpacked(m, NULL);
	actual = 256u << 20;
	cr_assert(wait_until(balloon_actual_is, &actual, 30000), "QEMU did not tell memsrv the balloon deflated");
	guest_result_ok(&g, line, sizeof line);  /* verified again after the hold */
	cr_assert_eq(guest_wait(&g), 0);
}

#define PARTNER_ROUND_MIB 112u  /* allocated and freed by each round */

struct partner_view {
	uint64_t removed, stored, stored_bytes, resident;
};

static struct partner_view partner_view(void)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "partner");
	const Memsrv__VmInfo *i = m->vm_info;
	struct partner_view v = { i->removed_pages, i->stored_pages, i->stored_bytes, i->resident_bytes };
	memsrv__server_message__free_unpacked(m, NULL);
	return v;
}

/* Pages memsrv holds for the VM: resident, or in its store. */
static uint64_t partner_held(const struct partner_view *v) { return v->resident / 4096 + v->stored; }

/* memsrv let go of at least half of what the round before freed. */
static bool freed_pages_came_back(void *arg)
{
	const struct partner_view *before = arg;
	struct partner_view now = partner_view();
	uint64_t half_round = (PARTNER_ROUND_MIB << 20) / 4096 / 2;
	return now.removed >= before->removed + half_round && partner_held(&now) + half_round <= partner_held(before);
}

/* Free page reporting (virtio-balloon free-page-reporting=on): the pages
 * the guest frees go back to the host, which discards them.  memsrv must
 * let go of what it held for them (the store shrinks, and they are never
 * evicted again) and lose nothing the guest still uses: a memload of
 * 32 MiB holds its memory through two rounds of a memload of 112 MiB that
 * allocates it under memsrv's 64 MiB limit and frees it. */
Test(qemu, pages_the_guest_frees_leave_the_store_and_what_it_uses_stays)
{
	struct guest g;
	char line[512];
	guest_balloon = "virtio-balloon-pci,free-page-reporting=on";
	guest_boot(&g, "partner", true, "64M", true,
		   "balloon=1 memload.mib=112 memload.rounds=2 memload.pause=20 memload.keep=32 memload.keep_s=50");
	cr_assert(guest_expect(&g, "BALLOON DRIVER LOADED", line, sizeof line), "no balloon driver in the guest");
	cr_assert(guest_expect(&g, "MEMLOAD EXIT", line, sizeof line), "the first round did not end");
	cr_assert(strstr(line, "status=0"), "the first round: %s", line);
	cr_assert(guest_expect(&g, "MEMLOAD PAUSE", line, sizeof line));
	struct partner_view freed = partner_view();
	/* 144 MiB in use under a 64 MiB limit: most of it went to the store */
	cr_assert_gt(freed.stored, (64u << 20) / 4096, "only %lu pages stored", (unsigned long)freed.stored);
	bool back = wait_until(freed_pages_came_back, &freed, 18000);
	struct partner_view reported = partner_view();
	fprintf(stderr, "partner: when the first round ended: %lu pages resident, %lu stored (%lu bytes), %lu removed; "
		"after free page reporting: %lu resident, %lu stored (%lu bytes), %lu removed\n",
		(unsigned long)(freed.resident / 4096), (unsigned long)freed.stored, (unsigned long)freed.stored_bytes,
		(unsigned long)freed.removed, (unsigned long)(reported.resident / 4096), (unsigned long)reported.stored,
		(unsigned long)reported.stored_bytes, (unsigned long)reported.removed);
	cr_assert(back, "the pages the guest freed stayed in memsrv's store");
	cr_assert_lt(reported.stored_bytes, freed.stored_bytes);

	cr_assert(guest_expect(&g, "MEMLOAD EXIT", line, sizeof line), "the second round did not end");
	cr_assert(strstr(line, "status=0"), "the second round read back what it wrote: %s", line);
	cr_assert(guest_expect(&g, "MEMLOAD KEEP EXIT", line, sizeof line), "the memory held throughout was not verified");
	cr_assert(strstr(line, "status=0"), "what the guest kept using through the discards: %s", line);
	cr_assert(guest_expect(&g, "GUEST DONE", line, sizeof line));
	cr_assert_eq(guest_wait(&g), 0);
}

/* Runs QEMU with extra arguments and monitor commands on stdin; returns its
 * exit status and what it printed. */
static int qemu_run(const char *args, const char *monitor_input, char *out, size_t len)
{
	const char *qemu = getenv("QEMU_BIN");
	cr_assert(qemu);
	char script[256], cmd[2048];
	snprintf(script, sizeof script, "%s/monitor.txt", srv.dir);
	FILE *f = fopen(script, "w");
	cr_assert(f);
	fputs(monitor_input, f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "%s -machine q35,memory-backend=ram0 -accel tcg -m 64M -nic none "
		 "-L /usr/share/qemu -L /usr/share/seabios %s < %s 2>&1", qemu, args, script);
	return run_capture(cmd, out, len);
}

static unsigned occurrences(const char *text, const char *what)
{
	unsigned n = 0;
	for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

Test(qemu, an_unreachable_memsrv_is_a_clear_error)
{
	char args[512], out[4096];
	snprintf(args, sizeof args, "-display none -object memory-backend-memsrv,id=ram0,size=64M,socket=%s/nobody.sock",
		 srv.dir);
	cr_assert_neq(qemu_run(args, "", out, sizeof out), 0, "QEMU must refuse to start");
	cr_assert(strstr(out, "cannot attach VM") && strstr(out, "nobody.sock"), "%s", out);
	cr_assert_eq(occurrences(out, "No such file or directory"), 1, "the reason is said once: %s", out);
}

/* QEMU with its human monitor on a pipe, for a conversation: the test acts
 * on memsrv between two commands. */
struct monitor {
	pid_t pid;
	int in, out;
	char buf[16384];
	size_t len;
};

static void monitor_start(struct monitor *m, const char *args)
{
	const char *qemu = getenv("QEMU_BIN");
	cr_assert(qemu);
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "exec %s -machine q35,memory-backend=ram0 -accel tcg -m 64M -nic none -S "
		 "-display none -serial none -monitor stdio -L /usr/share/qemu -L /usr/share/seabios %s 2>&1", qemu, args);
	int in[2], out[2];
	cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	m->pid = fork();
	cr_assert_geq(m->pid, 0);
	if (m->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(in[0], 0);
		dup2(out[1], 1);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	m->in = in[1];
	m->out = out[0];
	m->len = 0;
}

/* Reads QEMU's output until it holds want (true) or 20 s pass or QEMU ends. */
static bool monitor_wait_for(struct monitor *m, const char *want)
{
	for (int waited = 0; waited < 20000;) {
		m->buf[m->len] = 0;
		if (strstr(m->buf, want))
			return true;
		struct pollfd p = { .fd = m->out, .events = POLLIN };
		int n = poll(&p, 1, 100);
		waited += n == 0 ? 100 : 0;
		if (n <= 0)
			continue;
		ssize_t got = read(m->out, m->buf + m->len, sizeof m->buf - 1 - m->len);
		if (got <= 0)
			return false;
		m->len += (size_t)got;
	}
	return false;
}

/* Sends one command and waits for want in what QEMU answers. */
static bool monitor_cmd(struct monitor *m, const char *cmd, const char *want)
{
	m->len = 0;
	cr_assert_eq(write(m->in, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
	cr_assert_eq(write(m->in, "\n", 1), 1);
	return monitor_wait_for(m, want);
}

static int monitor_quit(struct monitor *m)
{
	if (write(m->in, "quit\n", 5) != 5)
		cr_log_warn("quit: %s", strerror(errno));
	close(m->in);
	while (monitor_wait_for(m, "\1never\1"))
		;
	close(m->out);
	return wait_exit(m->pid);
}

Test(qemu, qom_shows_the_settings_memsrv_holds_and_hugetlb_is_fixed_once_realized)
{
	struct monitor m;
	char args[512];
	snprintf(args, sizeof args, "-object memory-backend-memsrv,id=ram0,size=64M,socket=%s,name=qommed,limit=64M",
		 srv.sock);
	monitor_start(&m, args);
	cr_assert(monitor_cmd(&m, "qom-get /objects/ram0 limit", "67108864"), "%s", m.buf);
	ctl_set_ok(&srv, "qommed", "limit=32M");
	ctl_set_ok(&srv, "qommed", "shares=300");
	ctl_set_ok(&srv, "qommed", "codec=zstd");
	cr_assert(monitor_cmd(&m, "qom-get /objects/ram0 limit", "33554432"), "after memsrv-ctl set: %s", m.buf);
	cr_assert(monitor_cmd(&m, "qom-get /objects/ram0 shares", "300"), "%s", m.buf);
	cr_assert(monitor_cmd(&m, "qom-get /objects/ram0 codec", "zstd"), "%s", m.buf);
	cr_assert(monitor_cmd(&m, "qom-set /objects/ram0 hugetlb on", "cannot change property 'hugetlb'"), "%s", m.buf);
	cr_assert(monitor_cmd(&m, "qom-get /objects/ram0 hugetlb", "false"), "%s", m.buf);
	cr_assert_eq(monitor_quit(&m), 0);
}

static unsigned count_in_log(const char *what)
{
	char cmd[256], out[64];
	snprintf(cmd, sizeof cmd, "grep -c '%s' %s", what, srv.log);
	run_capture(cmd, out, sizeof out);
	return (unsigned)strtoul(out, NULL, 10);
}

Test(qemu, object_del_lets_the_memory_go_without_restoring_it)
{
	struct monitor m;
	char args[512];
	snprintf(args, sizeof args, "-object memory-backend-memsrv,id=ram0,size=64M,socket=%s,name=main-ram "
		 "-object memory-backend-memsrv,id=spare,size=32M,socket=%s,name=spare-ram", srv.sock, srv.sock);
	monitor_start(&m, args);
	cr_assert(monitor_cmd(&m, "info memdev", "spare"), "%s", m.buf);
	cr_assert(wait_until(vm_attached, "spare-ram", 5000));
	monitor_cmd(&m, "object_del spare", "(qemu)");
	cr_assert(wait_until(vm_gone, "spare-ram", 5000), "object-del detached the backend: %s", m.buf);
	cr_assert_eq(count_in_log("vm=spare-ram: detached:"), 1, "memsrv saw it go");
	cr_assert_eq(count_in_log("vm=spare-ram: detach:"), 0,
		     "its memory is freed with it: nothing to restore, memsrv was not asked to");
	cr_assert_eq(monitor_quit(&m), 0);
}

Test(qemu, prealloc_is_refused_clearly)
{
	char args[512], out[4096];
	snprintf(args, sizeof args, "-display none -object memory-backend-memsrv,id=ram0,size=64M,socket=%s,prealloc=on",
		 srv.sock);
	cr_assert_neq(qemu_run(args, "", out, sizeof out), 0, "QEMU must refuse prealloc=on");
	cr_assert(strstr(out, "prealloc=on cannot be used with memory-backend-memsrv"), "%s", out);
	cr_assert_eq(ctl_vm_count(&srv), 0);
}

Test(qemu, savevm_needs_x_ignore_shared_and_dump_guest_memory_works)
{
	char args[512], out[8192], input[512], dump[256];
	snprintf(dump, sizeof dump, "%s/guest.dump", srv.dir);
	snprintf(args, sizeof args, "-S -display none -serial none -monitor stdio "
		 "-object memory-backend-memsrv,id=ram0,size=64M,socket=%s,name=monitored", srv.sock);
	/* with the capability, savevm gets past the check to the next one: this
	 * guest has no disk for the snapshot */
	snprintf(input, sizeof input, "savevm before\nmigrate_set_capability x-ignore-shared on\nsavevm after\n"
		 "dump-guest-memory %s\nquit\n", dump);
	cr_assert_eq(qemu_run(args, input, out, sizeof out), 0, "%s", out);
	cr_assert_eq(occurrences(out, "guest RAM lives in memsrv; migrate with the x-ignore-shared capability"), 1,
		     "savevm without x-ignore-shared is refused, saying why, and only then: %s", out);
	cr_assert(strstr(out, "no block device can store vmstate"), "savevm with it is not refused for the RAM: %s", out);
	struct stat st;
	cr_assert_eq(stat(dump, &st), 0, "dump-guest-memory wrote nothing: %s", out);
	cr_assert_geq(st.st_size, 64 << 20, "the dump holds all of the guest's RAM");
	cr_assert(wait_until(vm_gone, "monitored", 5000), "the VM is still attached after QEMU quit");
}

#define NEEDS_SNAPSHOT "leaves guest RAM out of the stream, and this backend's holds nothing: give it snapshot=DIR"

Test(qemu, an_incoming_migration_without_snapshot_is_refused_saying_it_needs_one)
{
	char args[1024], out[8192], mark[256], cwd[256];
	struct stat st;
	snprintf(mark, sizeof mark, "%s/stream-opened", srv.dir);

	/* -incoming defer: migrate-incoming is refused before its command runs */
	struct monitor m;
	snprintf(args, sizeof args, "-incoming defer -object memory-backend-memsrv,id=ram0,size=64M,socket=%s,name=empty",
		 srv.sock);
	monitor_start(&m, args);
	snprintf(args, sizeof args, "migrate_incoming \"exec:touch %s\"", mark);
	cr_assert(monitor_cmd(&m, args, "guest RAM lives in memsrv; migrate with the x-ignore-shared capability"),
		  "without x-ignore-shared the stream would fill memsrv's RAM: %s", m.buf);
	monitor_cmd(&m, "migrate_set_capability x-ignore-shared on", "(qemu)");
	cr_assert(monitor_cmd(&m, args, NEEDS_SNAPSHOT), "with it, the devices would run on empty RAM: %s", m.buf);
	cr_assert(strstr(m.buf, "memsrv-ctl snapshot VM DIR"), "the message says where DIR comes from: %s", m.buf);
	cr_assert(monitor_cmd(&m, "info status", "inmigrate"), "QEMU still waits for a migration: %s", m.buf);
	cr_assert_neq(stat(mark, &st), 0, "the refused migration never ran its command");
	cr_assert_eq(monitor_quit(&m), 0);

	/* -incoming URI starts before any capability can be set (QEMU 7.2 has
	 * no -global for x-ignore-shared): refused at start, saying what to do */
	snprintf(args, sizeof args, "-display none -incoming \"exec:touch %s\" "
		 "-object memory-backend-memsrv,id=ram0,size=64M,socket=%s,name=empty", mark, srv.sock);
	cr_assert_neq(qemu_run(args, "", out, sizeof out), 0, "QEMU must refuse the migration: %s", out);
	cr_assert(strstr(out, "migrate with the x-ignore-shared capability") &&
			  strstr(out, "-incoming defer, then migrate-set-capabilities before migrate-incoming"),
		  "%s", out);
	cr_assert_neq(stat(mark, &st), 0, "the refused migration never ran its command");

	/* snapshot= resumes a suspended guest: without -incoming it is refused,
	 * and a relative DIR is made absolute before memsrv sees it */
	snprintf(args, sizeof args, "-display none -object memory-backend-memsrv,id=ram0,size=64M,socket=%s,name=empty,"
		 "snapshot=some/image", srv.sock);
	cr_assert_neq(qemu_run(args, "", out, sizeof out), 0, "QEMU must refuse snapshot= without -incoming: %s", out);
	cr_assert(strstr(out, "start QEMU with -incoming"), "%s", out);
	cr_assert(getcwd(cwd, sizeof cwd));
	snprintf(args, sizeof args, "snapshot=%s/some/image resumes", strcmp(cwd, "/") ? cwd : "");
	cr_assert(strstr(out, args), "the DIR QEMU passes is absolute (%s): %s", args, out);
	cr_assert(wait_until(vm_gone, "empty", 5000), "no VM left attached");
}

Test(qemu, incoming_on_needs_incoming_and_not_snapshot)
{
	char args[1024], out[8192];
	snprintf(args, sizeof args, "-display none -object memory-backend-memsrv,id=ram0,size=64M,socket=%s,name=arrival,"
		 "incoming=on", srv.sock);
	cr_assert_neq(qemu_run(args, "", out, sizeof out), 0, "QEMU must refuse incoming=on without -incoming: %s", out);
	cr_assert(strstr(out, "incoming=on takes a migrating guest's memory: start QEMU with -incoming"), "%s", out);
	snprintf(args, sizeof args, "-display none -incoming defer -object memory-backend-memsrv,id=ram0,size=64M,"
		 "socket=%s,name=arrival,incoming=on,snapshot=/nowhere", srv.sock);
	cr_assert_neq(qemu_run(args, "", out, sizeof out), 0, "QEMU must refuse incoming=on with snapshot=: %s", out);
	cr_assert(strstr(out, "incoming=on and snapshot= are two sources of the guest's memory"), "%s", out);
	cr_assert_eq(ctl_vm_count(&srv), 0, "nothing was attached");

	/* with -incoming: attached as incoming, and migrate-incoming with
	 * x-ignore-shared is not refused for want of snapshot= */
	struct monitor m;
	snprintf(args, sizeof args, "-incoming defer -object memory-backend-memsrv,id=ram0,size=64M,socket=%s,"
		 "name=arrival,incoming=on", srv.sock);
	monitor_start(&m, args);
	cr_assert(monitor_cmd(&m, "qom-get /objects/ram0 incoming", "true"), "%s", m.buf);
	Memsrv__ServerMessage *info = ctl_info_ok(&srv, "arrival");
	cr_assert_str_eq(info->vm_info->migration, "waiting", "memsrv waits for a source");
	memsrv__server_message__free_unpacked(info, NULL);
	monitor_cmd(&m, "migrate_set_capability x-ignore-shared on", "(qemu)");
	cr_assert(monitor_cmd(&m, "migrate_incoming tcp:127.0.0.1:0", "(qemu)"), "%s", m.buf);
	cr_assert_null(strstr(m.buf, "give it snapshot=DIR"), "incoming=on fills the RAM: %s", m.buf);
	cr_assert_eq(monitor_quit(&m), 0);
	cr_assert(wait_until(vm_gone, "arrival", 5000), "no VM left attached");
}

/* ---- QMP: the guest's machine-readable monitor ---- */

struct qmp {
	int fd;
	FILE *in;
	struct guest *guest;  /* whose console a failure shows; NULL: none */
};

/* QMP closed under a command: QEMU ended.  Fails with what it printed. */
static void qmp_closed(struct qmp *q, const char *cmd)
{
	char rest[8192] = "";
	if (q->guest)
		guest_console_rest(q->guest, rest, sizeof rest);
	cr_assert_fail("QMP closed after %s: %s", cmd, rest);
}

/* Sends one command (JSON) and copies its answer, the line holding
 * "return" or "error", into reply; events before it are skipped. */
static void qmp_cmd(struct qmp *q, const char *cmd, char *reply, size_t len)
{
	size_t n = strlen(cmd);
	/* MSG_NOSIGNAL: a QEMU that ended fails the test, not SIGPIPE */
	if (send(q->fd, cmd, n, MSG_NOSIGNAL) != (ssize_t)n || send(q->fd, "\n", 1, MSG_NOSIGNAL) != 1)
		qmp_closed(q, cmd);
	while (fgets(reply, (int)len, q->in))
		if (strstr(reply, "\"return\"") || strstr(reply, "\"error\""))
			return;
	qmp_closed(q, cmd);
}

/* The same, asserting that the command succeeded. */
static void qmp_ok(struct qmp *q, const char *cmd)
{
	char reply[8192];
	qmp_cmd(q, cmd, reply, sizeof reply);
	cr_assert(strstr(reply, "\"return\""), "%s: %s", cmd, reply);
}

/* Connects to QEMU's QMP socket (it listens from its start on) and leaves
 * capability negotiation. */
static void qmp_connect(struct qmp *q, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	cr_assert_lt(strlen(path), sizeof sa.sun_path, "a QMP socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	q->fd = -1;
	for (int tries = 0; tries < 200 && q->fd < 0; tries++) {
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_geq(q->fd, 0);
		if (connect(q->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
			close(q->fd);
			q->fd = -1;
			usleep(50000);
		}
	}
	cr_assert_geq(q->fd, 0, "no QMP socket at %s", path);
	q->guest = NULL;
	q->in = fdopen(dup(q->fd), "r");
	cr_assert(q->in);
	char greeting[4096];
	cr_assert(fgets(greeting, sizeof greeting, q->in) && strstr(greeting, "\"QMP\""), "no QMP greeting");
	qmp_ok(q, "{\"execute\": \"qmp_capabilities\"}");
}

static void qmp_close(struct qmp *q)
{
	fclose(q->in);
	close(q->fd);
}

/* Polls query-migrate until the migration ended (completed, failed or
 * cancelled); its last answer is in reply. */
static void qmp_migration_end(struct qmp *q, char *reply, size_t len)
{
	for (int waited = 0; waited < 60000; waited += 10) {
		qmp_cmd(q, "{\"execute\": \"query-migrate\"}", reply, len);
		if (strstr(reply, "\"status\": \"completed\"") || strstr(reply, "\"status\": \"failed\"") ||
		    strstr(reply, "\"status\": \"cancelled\""))
			return;
		usleep(10000);  /* the resume's time to running counts it */
	}
	cr_assert_fail("the migration still runs after 60 s: %s", reply);
}

/* The size of what exec:cat wrote: it may still be writing when QEMU says
 * the migration completed. */
static off_t file_size_settled(const char *path)
{
	struct stat st;
	off_t last = -1;
	for (int waited = 0; waited < 5000; waited += 100) {
		if (stat(path, &st) == 0 && st.st_size > 0 && st.st_size == last)
			return last;
		last = stat(path, &st) == 0 ? st.st_size : -1;
		usleep(100000);
	}
	return last;
}

/* Sets x-ignore-shared: memsrv's RAM stays out of the migration stream. */
static void qmp_ignore_shared(struct qmp *q)
{
	qmp_ok(q, "{\"execute\": \"migrate-set-capabilities\", \"arguments\": {\"capabilities\": "
		  "[{\"capability\": \"x-ignore-shared\", \"state\": true}]}}");
}

/* With x-ignore-shared, migrates the stopped guest's device state into
 * path (exec:cat) and returns its size once written. */
static off_t migrate_device_state(struct qmp *q, const char *path)
{
	char cmd[512], reply[4096];
	qmp_ignore_shared(q);
	snprintf(cmd, sizeof cmd, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat > %s\"}}", path);
	qmp_ok(q, cmd);
	qmp_migration_end(q, reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"completed\""), "%s", reply);
	return file_size_settled(path);
}

Test(qemu, migration_needs_x_ignore_shared_and_then_carries_device_state_only)
{
	char qmp_path[256], state[256], refused[256], cmd[512], reply[8192], line[512];
	snprintf(qmp_path, sizeof qmp_path, "%s/qmp.sock", srv.dir);
	snprintf(state, sizeof state, "%s/device.state", srv.dir);
	snprintf(refused, sizeof refused, "%s/refused.state", srv.dir);
	struct guest g;
	struct qmp q;
	guest_qmp = qmp_path;
	guest_boot(&g, "migrant", true, "64M", false, "memload.mib=96 memload.rewrite=50 memload.hold=10");
	guest_qmp = NULL;
	qmp_connect(&q, qmp_path);
	/* the guest's data is written, part of it in memsrv's store, and held */
	guest_result_ok(&g, line, sizeof line);
	cr_assert(guest_expect(&g, "MEMLOAD HOLDING", line, sizeof line));

	/* without x-ignore-shared: refused before anything starts, saying why */
	snprintf(cmd, sizeof cmd, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"exec:cat > %s\"}}", refused);
	qmp_cmd(&q, cmd, reply, sizeof reply);
	cr_assert(strstr(reply, "\"error\"") &&
			  strstr(reply, "guest RAM lives in memsrv; migrate with the x-ignore-shared capability"),
		  "%s", reply);
	struct stat st;
	cr_assert_neq(stat(refused, &st), 0, "the refused migration never ran its command");
	qmp_cmd(&q, "{\"execute\": \"query-status\"}", reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"running\""), "the guest runs on: %s", reply);
	cr_assert(vm_attached("migrant"), "memsrv still holds the guest");

	/* with it, on the paused guest: only device state goes into the stream */
	qmp_ok(&q, "{\"execute\": \"stop\"}");
	off_t size = migrate_device_state(&q, state);
	fprintf(stderr, "migrant: device state %lld bytes for 256 MiB of RAM\n", (long long)size);
	cr_assert_gt(size, 0, "the device state was written");
	cr_assert_lt(size, (256 << 20) / 4, "the guest's RAM stayed out of the stream: %lld bytes", (long long)size);

	/* the guest goes on where it stopped, its memory still served by memsrv */
	uint64_t faults = CTL_INFO(&srv, "migrant", faults_total);
	qmp_ok(&q, "{\"execute\": \"cont\"}");
	guest_result_ok(&g, line, sizeof line);  /* verified again after the hold */
	cr_assert_gt(CTL_INFO(&srv, "migrant", faults_total), faults, "memsrv served the guest after the migration");
	cr_assert(guest_expect(&g, "GUEST DONE", line, sizeof line));
	qmp_close(&q);
	cr_assert_eq(guest_wait(&g), 0);
	cr_assert(wait_until(vm_gone, "migrant", 5000));
}

/* Kills pid after seconds unless stopped first (kill the watchdog): a guest
 * that hangs ends its QEMU, so reading its console ends too.  It outlives a
 * failed test to end that QEMU, without holding the test's output open. */
static pid_t watchdog_start(pid_t pid, unsigned seconds)
{
	pid_t dog = fork();
	cr_assert_geq(dog, 0);
	if (dog == 0) {
		int devnull = open("/dev/null", O_RDWR);
		for (int fd = 0; fd < 3; fd++)
			dup2(devnull, fd);
		sleep(seconds);
		kill(pid, SIGKILL);
		_exit(0);
	}
	return dog;
}

static void watchdog_stop(pid_t dog)
{
	kill(dog, SIGKILL);
	waitpid(dog, NULL, 0);
}

/* Does memsrv s list VM name? */
static bool vm_listed_on(const struct test_server *s, const char *name)
{
	Memsrv__ServerMessage *m = NULL;
	bool listed = ctl_info(s->sock, name, &m) == 0 && m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_VM_INFO;
	if (m)
		memsrv__server_message__free_unpacked(m, NULL);
	return listed;
}

/* Waits until QEMU attached VM name to memsrv s; fails with what QEMU
 * printed if it ended first (memsrv refused the VM, say). */
static void guest_attached_to(struct guest *g, const struct test_server *s)
{
	char rest[8192];
	for (int waited = 0; waited < 30000; waited += 10) {
		if (vm_listed_on(s, g->name))
			return;
		int status;
		if (waitpid(g->pid, &status, WNOHANG) == g->pid) {
			guest_console_rest(g, rest, sizeof rest);
			cr_assert_fail("QEMU ended (status %d) before %s was attached: %s", status, g->name, rest);
		}
		usleep(10000);
	}
	cr_assert_fail("%s not attached 30 s after QEMU started", g->name);
}

static void guest_attached(struct guest *g)
{
	guest_attached_to(g, &srv);
}

Test(qemu, a_guest_suspended_mid_workload_resumes_in_a_new_qemu_from_memsrvs_image)
{
	char *dir = scratch, qmp_path[256], state[256], opts[256], cmd[512], reply[8192], line[512], rest[16384];
	const char *workload = "memload.mib=160 memload.passes=8 memload.rewrite=50";
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-qemu-resume.XXXXXX"));
	snprintf(qmp_path, sizeof qmp_path, "%s/qmp.sock", srv.dir);
	snprintf(state, sizeof state, "%s/device.state", dir);
	struct guest g;
	struct qmp q;
	guest_qmp = qmp_path;
	guest_boot(&g, "sleeper", true, "64M", false, workload);
	guest_qmp = NULL;
	qmp_connect(&q, qmp_path);
	q.guest = &g;
	cr_assert(guest_expect(&g, "GUEST BOOTED", line, sizeof line), "sleeper did not boot");
	cr_assert(guest_expect(&g, "pass 1 ", line, sizeof line), "the workload runs");

	/* suspend mid-workload: memory into memsrv's image, devices into a file */
	qmp_ok(&q, "{\"execute\": \"stop\"}");
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_snapshot(srv.sock, "sleeper", dir, &m);
	cr_assert_eq(ret, 0, "snapshot request: %s", strerror(-ret));
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_SNAPSHOT_REPLY, "snapshot refused: %s",
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "?");
	cr_assert_eq(m->snapshot_reply->pages, (256u << 20) / 4096, "the image holds all of the guest's RAM");
	fprintf(stderr, "sleeper: image of %lu pages: %lu zero, %lu same-filled, %lu objects (%lu from the store) "
		    "in %lu bytes\n", (unsigned long)m->snapshot_reply->pages, (unsigned long)m->snapshot_reply->zero_pages,
		    (unsigned long)m->snapshot_reply->samefilled_pages, (unsigned long)m->snapshot_reply->objects,
		    (unsigned long)m->snapshot_reply->stored_objects, (unsigned long)m->snapshot_reply->data_bytes);
	memsrv__server_message__free_unpacked(m, NULL);
	off_t size = migrate_device_state(&q, state);
	cr_assert_gt(size, 0, "the device state was written");
	/* QEMU may end before it answers quit, and drops what a client that
	 * closed asked: its answer or the end of QMP, whichever comes */
	const char *quit = "{\"execute\": \"quit\"}\n";
	cr_assert_eq(send(q.fd, quit, strlen(quit), MSG_NOSIGNAL), (ssize_t)strlen(quit));
	while (fgets(reply, sizeof reply, q.in) && !strstr(reply, "\"return\""))
		;
	qmp_close(&q);
	guest_console_rest(&g, rest, sizeof rest);
	cr_assert_eq(wait_exit(g.pid), 0, "the suspended QEMU quit cleanly");
	cr_assert_null(strstr(rest, "MEMLOAD RESULT"), "the workload was suspended before its end: %s", rest);
	cr_assert(wait_until(vm_gone, "sleeper", 5000), "memsrv let the suspended VM go");

	/* resume in a new QEMU: memory from the image, devices from the file */
	struct guest r;
	snprintf(opts, sizeof opts, ",snapshot=%s", dir);
	guest_qmp = qmp_path;
	guest_incoming = true;
	guest_boot_opts(&r, "sleeper", true, "64M", false, opts, workload);
	guest_qmp = NULL;
	guest_incoming = false;
	pid_t dog = watchdog_start(r.pid, 300);
	guest_attached(&r);
	double attached = now_s();
	qmp_connect(&q, qmp_path);
	q.guest = &r;
	qmp_ignore_shared(&q);
	double incoming = now_s();
	snprintf(cmd, sizeof cmd, "{\"execute\": \"migrate-incoming\", \"arguments\": {\"uri\": \"exec:cat %s\"}}",
		 state);
	qmp_ok(&q, cmd);
	qmp_migration_end(&q, reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"completed\""), "the device state loaded: %s", reply);
	double loaded = now_s();
	qmp_ok(&q, "{\"execute\": \"cont\"}");
	qmp_cmd(&q, "{\"execute\": \"query-status\"}", reply, sizeof reply);
	double running = now_s();
	cr_assert(strstr(reply, "\"status\": \"running\""), "the resumed guest runs: %s", reply);
	fprintf(stderr, "sleeper resumed: QEMU launched to running in %.0f ms (attached to memsrv after %.0f ms, "
		"device state of %lld bytes loaded in %.0f ms)\n", (running - r.started) * 1e3,
		(attached - r.started) * 1e3, (long long)size, (loaded - incoming) * 1e3);

	/* the workload goes on where it stopped and verifies every page */
	guest_result_ok(&r, line, sizeof line);
	fprintf(stderr, "sleeper after resume: %s", line);
	Memsrv__ServerMessage *info = ctl_info_ok(&srv, "sleeper");
	cr_assert_gt(info->vm_info->faults_total, 0, "memsrv served the resumed guest's memory");
	memsrv__server_message__free_unpacked(info, NULL);
	cr_assert(guest_expect(&r, "GUEST DONE", line, sizeof line));
	qmp_close(&q);
	cr_assert_eq(guest_wait(&r), 0, "the resumed guest powered off normally");
	watchdog_stop(dog);
	cr_assert(wait_until(vm_gone, "sleeper", 5000));
}

/* ---- live migration between two memsrv nodes ---- */

static void node_b_start(void)
{
	snprintf(node_b_listen, sizeof node_b_listen, "127.0.0.1:%u", free_loopback_port());
	const char *opts[] = { "--peer-listen", node_b_listen, NULL };
	server_start_with(&node_b, opts);
	node_b_started = true;
}

/* memsrv-ctl migrate VM --to node B, on a thread: memsrv answers only once
 * the VM moved (or the migration failed). */
struct memsrv_migration {
	pthread_t thread;
	const char *vm;
	int ret;
	Memsrv__ServerMessage *reply;
};

static void *memsrv_migration_main(void *arg)
{
	struct memsrv_migration *m = arg;
	struct ctl_req r;
	ctl_build_migrate(&r, m->vm, node_b_listen);
	m->ret = ctl_request(srv.sock, &r.msg, &m->reply);
	return NULL;
}

static void memsrv_migration_start(struct memsrv_migration *m, const char *vm)
{
	*m = (struct memsrv_migration){ .vm = vm };
	cr_assert_eq(pthread_create(&m->thread, NULL, memsrv_migration_main, m), 0);
}

/* Joins it: memsrv's answer, its message type not asserted. */
static Memsrv__ServerMessage *memsrv_migration_join(struct memsrv_migration *m)
{
	pthread_join(m->thread, NULL);
	cr_assert_eq(m->ret, 0, "memsrv-ctl migrate: %s", strerror(-m->ret));
	return m->reply;
}

static bool node_b_empty(void *arg)
{
	(void)arg;
	return ctl_vm_count(&node_b) == 0;
}

static bool node_a_empty(void *arg)
{
	(void)arg;
	return ctl_vm_count(&srv) == 0;
}

/* memsrv's first pass over the VM's pages is over, and little is left to
 * send (what the guest wrote since, the content the destination wanted
 * after an offer) or a second pass went too: QEMU's migration stops the
 * guest for a short time from then on, and a busy guest's pages are not
 * sent round after round. */
static bool first_pass_sent(void *arg)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, arg);
	const Memsrv__VmInfo *i = m->vm_info;
	bool sent = i->migration_round >= 3 || (i->migration_round >= 2 && i->migration_pages_left < 4096);
	memsrv__server_message__free_unpacked(m, NULL);
	return sent;
}

/* A number after key ("\"downtime\": ") in a JSON answer; 0: none. */
static unsigned long long json_number(const char *json, const char *key)
{
	const char *p = strstr(json, key);
	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* The destination QEMU for guest name on node B: incoming=on, -incoming
 * defer, x-ignore-shared, listening for the source's stream on a loopback
 * port (its URI in uri). */
static void destination_start(struct guest *d, struct qmp *q, const char *qmp_path, const char *name,
			      const char *workload, char *uri, size_t len)
{
	char cmd[256];
	guest_qmp = qmp_path;
	guest_incoming = true;
	guest_srv = &node_b;
	guest_boot_opts(d, name, true, NULL, false, ",incoming=on", workload);
	guest_qmp = NULL;
	guest_incoming = false;
	guest_srv = NULL;
	guest_attached_to(d, &node_b);
	qmp_connect(q, qmp_path);
	q->guest = d;
	qmp_ignore_shared(q);
	snprintf(uri, len, "tcp:127.0.0.1:%u", free_loopback_port());
	snprintf(cmd, sizeof cmd, "{\"execute\": \"migrate-incoming\", \"arguments\": {\"uri\": \"%s\"}}", uri);
	qmp_ok(q, cmd);
}

/* The source guest on node A (srv), held to 64 MiB so that part of its
 * memory is in memsrv's store, its workload running. */
static void source_start(struct guest *g, struct qmp *q, const char *qmp_path, const char *name,
			 const char *workload)
{
	char line[512];
	guest_qmp = qmp_path;
	guest_boot(g, name, true, "64M", false, workload);
	guest_qmp = NULL;
	qmp_connect(q, qmp_path);
	q->guest = g;
	cr_assert(guest_expect(g, "GUEST BOOTED", line, sizeof line), "%s did not boot", name);
	cr_assert(guest_expect(g, "pass 1 ", line, sizeof line), "the workload runs");
	qmp_ignore_shared(q);
}

Test(qemu, a_guest_migrates_live_to_another_memsrv_node_and_verifies_every_page)
{
	const char *workload = "memload.mib=160 memload.passes=12 memload.rewrite=50";
	char qmp_a[256], qmp_b[256], uri[64], cmd[256], reply[8192], line[512], rest[16384];
	snprintf(qmp_a, sizeof qmp_a, "%s/qmp-a.sock", srv.dir);
	snprintf(qmp_b, sizeof qmp_b, "%s/qmp-b.sock", srv.dir);
	node_b_start();
	struct guest g, d;
	struct qmp qa, qb;
	source_start(&g, &qa, qmp_a, "mover", workload);
	destination_start(&d, &qb, qmp_b, "mover", workload, uri, sizeof uri);
	pid_t dog = watchdog_start(d.pid, 400);

	/* memsrv streams the pages while the guest runs and writes them */
	struct memsrv_migration mm;
	double begun = now_s();
	memsrv_migration_start(&mm, "mover");
	cr_assert(wait_until(first_pass_sent, "mover", 60000), "memsrv's first pass did not end in 60 s");
	double first_pass = now_s();
	qmp_cmd(&qa, "{\"execute\": \"query-status\"}", reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"running\""), "the guest runs while memsrv streams: %s", reply);

	/* then QEMU's own migration: device state only; at its end QEMU
	 * stops the guest and detaches saying it migrated */
	snprintf(cmd, sizeof cmd, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"%s\"}}", uri);
	qmp_ok(&qa, cmd);
	qmp_migration_end(&qa, reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"completed\""), "QEMU's migration: %s", reply);
	unsigned long long downtime = json_number(reply, "\"downtime\": "),
			   total = json_number(reply, "\"total-time\": "),
			   transferred = json_number(reply, "\"transferred\": ");
	Memsrv__ServerMessage *m = memsrv_migration_join(&mm);
	double moved = now_s();
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_MIGRATE_REPLY, "memsrv-ctl migrate: %s",
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "not a MigrateReply");
	const Memsrv__MigrateReply *r = m->migrate_reply;
	fprintf(stderr, "mover: memsrv migrate: %lu pages, %lu sent (%lu with data, %lu resent, %lu after the stop) "
		"in %lu bytes, %u rounds, %.0f ms (switchover %.1f ms), %lu pulled, pull wait p50 %.1f us p99 %.1f us "
		"max %.1f us; QEMU: downtime %llu ms, total %llu ms, %llu bytes in its stream; first pass %.1f s, "
		"%.1f s in all\n",
		(unsigned long)r->pages, (unsigned long)r->pages_sent, (unsigned long)r->data_pages,
		(unsigned long)r->resent_pages, (unsigned long)r->final_pages, (unsigned long)r->bytes_sent, r->rounds,
		r->duration_ns / 1e6, r->switchover_ns / 1e6, (unsigned long)r->pulled_pages, r->pull_wait_p50_ns / 1e3,
		r->pull_wait_p99_ns / 1e3, r->pull_wait_max_ns / 1e3, downtime, total, transferred, first_pass - begun,
		moved - begun);
	cr_assert_eq(r->pages, (256u << 20) / 4096, "every page of the guest's RAM");
	cr_assert_geq(r->pages_sent, r->pages);
	cr_assert_gt(r->resent_pages, 0, "the guest wrote pages memsrv had sent: they went again");
	cr_assert_lt(transferred, 64u << 20, "the guest's RAM stayed out of QEMU's stream: %llu bytes", transferred);
	memsrv__server_message__free_unpacked(m, NULL);

	/* the source QEMU stopped for good: node A let the VM go at once */
	qmp_cmd(&qa, "{\"execute\": \"query-status\"}", reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"postmigrate\""), "the source guest stopped: %s", reply);
	cr_assert(wait_until(node_a_empty, NULL, 5000), "node A still lists the VM it migrated");
	qmp_cmd(&qa, "{\"execute\": \"cont\"}", reply, sizeof reply);
	cr_assert(strstr(reply, "\"error\"") && strstr(reply, "it cannot run here again"),
		  "the source guest would run on memory that left: %s", reply);
	const char *quit = "{\"execute\": \"quit\"}\n";
	cr_assert_eq(send(qa.fd, quit, strlen(quit), MSG_NOSIGNAL), (ssize_t)strlen(quit));
	qmp_close(&qa);
	guest_console_rest(&g, rest, sizeof rest);
	cr_assert_eq(wait_exit(g.pid), 0, "the source QEMU quit cleanly: %s", rest);
	cr_assert_null(strstr(rest, "MEMLOAD RESULT"), "the workload moved before its end: %s", rest);
	cr_assert_null(strstr(rest, "memsrv did not move"), "the source QEMU's detach succeeded: %s", rest);

	/* the workload goes on at the destination and verifies every page */
	qmp_cmd(&qb, "{\"execute\": \"query-status\"}", reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"running\""), "the guest runs at the destination: %s", reply);
	guest_result_ok(&d, line, sizeof line);
	fprintf(stderr, "mover at the destination: %s", line);
	cr_assert_gt(CTL_INFO(&node_b, "mover", faults_total), 0, "node B serves the guest's memory");
	cr_assert(guest_expect(&d, "GUEST DONE", line, sizeof line));
	qmp_close(&qb);
	cr_assert_eq(guest_wait(&d), 0, "the migrated guest powered off normally");
	watchdog_stop(dog);
	cr_assert(wait_until(node_b_empty, NULL, 5000), "node B let the VM go when its QEMU ended");
}

Test(qemu, a_cancelled_migration_leaves_the_guest_running_whole_at_the_source)
{
	const char *workload = "memload.mib=160 memload.passes=8 memload.rewrite=50";
	char qmp_a[256], qmp_b[256], uri[64], cmd[256], reply[8192], line[512], why[512];
	snprintf(qmp_a, sizeof qmp_a, "%s/qmp-a.sock", srv.dir);
	snprintf(qmp_b, sizeof qmp_b, "%s/qmp-b.sock", srv.dir);
	node_b_start();
	struct guest g, d;
	struct qmp qa, qb;
	source_start(&g, &qa, qmp_a, "stayer", workload);
	destination_start(&d, &qb, qmp_b, "stayer", workload, uri, sizeof uri);
	pid_t dog = watchdog_start(g.pid, 400);
	struct memsrv_migration mm;
	memsrv_migration_start(&mm, "stayer");
	cr_assert(wait_until(first_pass_sent, "stayer", 60000), "memsrv's first pass did not end in 60 s");

	/* QEMU's stream (its ROMs and video RAM: the guest's RAM stays out of
	 * it) held to 10 kB/s, so that it is still running when cancelled */
	qmp_ok(&qa, "{\"execute\": \"migrate-set-parameters\", \"arguments\": {\"max-bandwidth\": 10000}}");
	snprintf(cmd, sizeof cmd, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"%s\"}}", uri);
	qmp_ok(&qa, cmd);
	usleep(1000 * 1000);
	qmp_cmd(&qa, "{\"execute\": \"query-migrate\"}", reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"active\""), "QEMU's migration runs: %s", reply);
	qmp_ok(&qa, "{\"execute\": \"migrate_cancel\"}");
	qmp_migration_end(&qa, reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"cancelled\""), "%s", reply);
	/* as libvirt does: the destination QEMU goes */
	qmp_close(&qb);
	kill(d.pid, SIGKILL);
	guest_wait(&d);

	/* memsrv's migration fails: its destination VM went with its QEMU */
	Memsrv__ServerMessage *m = memsrv_migration_join(&mm);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "memsrv-ctl migrate must fail");
	snprintf(why, sizeof why, "%s", m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
	fprintf(stderr, "stayer: memsrv-ctl migrate: %s\n", why);
	cr_assert(wait_until(node_b_empty, NULL, 5000), "node B let the half-arrived VM go");

	/* the guest runs on at the source, every page whole */
	qmp_cmd(&qa, "{\"execute\": \"query-status\"}", reply, sizeof reply);
	cr_assert(strstr(reply, "\"status\": \"running\""), "the source guest runs on: %s", reply);
	cr_assert(vm_listed_on(&srv, "stayer"), "node A still holds the guest");
	guest_result_ok(&g, line, sizeof line);
	fprintf(stderr, "stayer at the source: %s", line);
	cr_assert(guest_expect(&g, "GUEST DONE", line, sizeof line));
	qmp_close(&qa);
	cr_assert_eq(guest_wait(&g), 0, "the guest powered off normally");
	watchdog_stop(dog);
	cr_assert(wait_until(node_a_empty, NULL, 5000));
}

static long hugepages(long set)
{
	const char *knob = "/proc/sys/vm/nr_hugepages";
	long v = -1;
	FILE *f;
	if (set >= 0 && (f = fopen(knob, "w"))) {
		fprintf(f, "%ld\n", set);
		fclose(f);
	}
	if ((f = fopen(knob, "r"))) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* The huge pages of the pool in use, most seen while a guest runs. */
struct hugepage_watch {
	_Atomic bool stop;
	long most;
	pthread_t thread;
};

static long hugepages_free(void)
{
	long v = -1;
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void *hugepage_watch_main(void *arg)
{
	struct hugepage_watch *w = arg;
	long total = hugepages(-1);
	while (!w->stop) {
		long used = total - hugepages_free();
		if (used > w->most)
			w->most = used;
		usleep(20000);
	}
	return NULL;
}

/* A guest on hugetlbfs held to 64 MiB while its workload touches 96: the
 * kernel cannot swap hugetlbfs, memsrv evicts whole huge pages, the guest
 * verifies every page, and the pool lends it no more than its limit. */
Test(qemu, a_guest_on_hugetlbfs_held_to_64m_verifies_every_page_in_32_huge_pages)
{
	long before = hugepages(-1);
	if (before < 0 || hugepages(before + 128) < before + 128) {
		hugepages(before);
		cr_skip_test("cannot reserve 128 huge pages of 2 MiB for a 256 MiB guest");
	}
	struct hugepage_watch w = { .most = 0 };
	cr_assert_eq(pthread_create(&w.thread, NULL, hugepage_watch_main, &w), 0);
	struct guest g;
	char line[512];
	guest_boot_opts(&g, "huge-guest", true, "64M", false, ",hugetlb=on", "memload.mib=96");
	guest_result_ok(&g, line, sizeof line);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "huge-guest");
	const Memsrv__VmInfo *i = m->vm_info;
	uint64_t page_size = i->page_size, faults = i->faults_never_touched, evictions = i->evictions_total;
	uint64_t resident = i->resident_bytes, stored = i->faults_stored;
	bool evictable = i->evictable;
	memsrv__server_message__free_unpacked(m, NULL);
	int status = guest_wait(&g);
	w.stop = true;
	pthread_join(w.thread, NULL);
	hugepages(before);
	fprintf(stderr, "hugetlbfs guest held to 64 MiB: %ld huge pages at most, %lu parts evicted, %lu faults on "
		"stored huge pages: %s", w.most, (unsigned long)evictions, (unsigned long)stored, line);
	cr_assert_eq(page_size, 2u << 20);
	cr_assert_gt(faults, 0, "memsrv served the guest's first touches");
	cr_assert(evictable, "huge pages are evicted");
	cr_assert_leq(resident, 64u << 20, "resident %lu over the 64 MiB limit", (unsigned long)resident);
	cr_assert_gt(evictions, 0, "the workload's 96 MiB do not fit in 64");
	cr_assert_leq(w.most, 32, "the guest held %ld huge pages under a limit of 32", w.most);
	cr_assert_eq(status, 0);
}

/* ---- a page memsrv poisons, in a guest ---- */

#define MIX_C1 0xbf58476d1ce4e5b9ULL
#define MIX_C2 0x94d049bb133111ebULL
#define GOLDEN 0x9e3779b97f4a7c15ULL

/* memload's hash (vmm-patch/guest/memload.c) and its inverse */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= MIX_C1;
	x ^= x >> 27;
	x *= MIX_C2;
	x ^= x >> 31;
	return x;
}

static uint64_t inverse_mod_2_64(uint64_t a)
{
	uint64_t x = a;  /* Newton: each step doubles the correct low bits */
	for (int i = 0; i < 6; i++)
		x *= 2 - a * x;
	return x;
}

static uint64_t unxorshift(uint64_t x, int shift)
{
	uint64_t y = x;
	for (int s = shift; s < 64; s += shift)
		y = x ^ (y >> shift);
	return y;
}

static uint64_t unmix64(uint64_t x)
{
	x = unxorshift(x, 31);
	x *= inverse_mod_2_64(MIX_C2);
	x = unxorshift(x, 27);
	x *= inverse_mod_2_64(MIX_C1);
	return unxorshift(x, 30);
}

/* Does a page of memload's start at p?  Its words are
 * mix64(seed + (w + 1) * GOLDEN) | 1: the first gives the seed (up to
 * its lowest bit), the second confirms it. */
static bool memload_page_at(const uint64_t *p)
{
	for (uint64_t low = 0; low < 2; low++) {
		uint64_t seed = unmix64(p[0] ^ low) - GOLDEN;
		if ((mix64(seed + GOLDEN) | 1) == p[0] && (mix64(seed + 2 * GOLDEN) | 1) == p[1] &&
		    (mix64(seed + 3 * GOLDEN) | 1) == p[2])
			return true;
	}
	return false;
}

/* Corrupts the last of memload's pages in the swap file below offset
 * `below` (the last written is the most likely to be the copy memsrv
 * reads next); returns its offset. */
static long corrupt_a_memload_page(const char *swap_dir, long below)
{
	glob_t gl;
	char pattern[256];
	snprintf(pattern, sizeof pattern, "%s/memsrv-swap-*", swap_dir);
	cr_assert_eq(glob(pattern, 0, NULL, &gl), 0, "no swap file in %s", swap_dir);
	int fd = open(gl.gl_pathv[0], O_RDWR);
	globfree(&gl);
	cr_assert_geq(fd, 0);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	static uint64_t buf[(1 << 20) / 8 + 4096 / 8];
	long found = -1;
	unsigned pages = 0;
	for (off_t base = 0; base < st.st_size; base += 1 << 20) {
		ssize_t n = pread(fd, buf, sizeof buf, base);
		for (ssize_t i = 0; i + 4096 <= n && i < (1 << 20) && base + i < below; i += 8)
			if (memload_page_at(&buf[i / 8])) {
				found = (long)(base + i);
				pages++;
				i += 4096 - 8;
			}
	}
	cr_assert_geq(found, 0, "no page of memload's in the swap file (%lld bytes)", (long long)st.st_size);
	static const uint8_t junk[64] = { [0 ... 63] = 0x5a };
	cr_assert_eq(pwrite(fd, junk, sizeof junk, found + 2048), (ssize_t)sizeof junk);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	fprintf(stderr, "guest pages in swap: %u; corrupted the one at %ld\n", pages, found);
	return found;
}

static bool vm_has_swapped(void *arg)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, arg);
	bool swapped = m->vm_info->swap_pages > 4096;
	memsrv__server_message__free_unpacked(m, NULL);
	return swapped;
}

Test(qemu, a_guest_survives_a_page_memsrv_poisoned)
{
	server_stop(&srv);
	char swap_dir[64], swap_arg[96], rm[96], line[512];
	snprintf(swap_dir, sizeof swap_dir, "/var/tmp/memsrv-qemu-swap.XXXXXX");
	cr_assert(mkdtemp(swap_dir));
	snprintf(swap_arg, sizeof swap_arg, "%s:512M", swap_dir);
	const char *opts[] = { "--cache-size", "1M", "--swap-dir", swap_arg, NULL };
	server_start_with(&srv, opts);
	/* Linux grades an action-required machine check by the vendor's rules:
	 * Intel's (MCA recovery) kill the process, AMD's without SUCCOR do not */
	guest_cpu = "qemu64,vendor=GenuineIntel";
	struct guest g;
	/* No khugepaged, no compaction: a collapse or a migration copies
	 * memload's pages elsewhere in the guest and leaves their old copies
	 * in swap.  The corrupted copy may be such an old one, whose page the
	 * guest then reuses for itself: it is read back before the guest's
	 * first write lands, and the guest kernel meets the memory error on a
	 * page of its own ("unhandlable page") instead of in memload. */
	guest_boot(&g, "poisoned", true, "64M", false,
		   "transparent_hugepage=never sysctl.vm.compaction_proactiveness=0 sysctl.vm.extfrag_threshold=1000 "
		   "memload.mib=160 memload.passes=20 memload.rewrite=0");
	guest_cpu = NULL;
	cr_assert(guest_expect(&g, "GUEST BOOTED", line, sizeof line), "the guest did not boot");
	cr_assert(guest_expect(&g, "pass 1 ", line, sizeof line), "the workload runs");
	cr_assert(wait_until(vm_has_swapped, "poisoned", 60000), "the guest's pages reach swap");
	/* Every pass reads all of memload's pages, so two passes without the
	 * error mean the corrupted copy was not one the guest still uses (the
	 * guest moved that page): corrupt the next one down */
	long corrupted = corrupt_a_memload_page(swap_dir, LONG_MAX);
	unsigned tries = 1, passes = 0;
	bool failed = false;
	while (!failed && fgets(line, sizeof line, g.console)) {
		failed = strstr(line, "Memory failure") != NULL;
		if (!failed && strstr(line, "memload: pass ") && ++passes == 2) {
			cr_assert_lt(tries++, 4, "the guest read none of 4 corrupted pages in two passes each");
			corrupted = corrupt_a_memload_page(swap_dir, corrupted);
			passes = 0;
		}
	}
	cr_assert(failed, "the guest never took the memory error");
	fprintf(stderr, "guest: %s", line);
	cr_assert(guest_expect(&g, "MEMLOAD EXIT", line, sizeof line), "memload ended");
	cr_assert(strstr(line, "status=135"), "the guest killed memload, whose page was lost, with SIGBUS: %s", line);
	cr_assert(guest_expect(&g, "GUEST DONE", line, sizeof line), "the guest ran on");
	cr_assert_eq(guest_wait(&g), 0, "and powered off normally");
	snprintf(rm, sizeof rm, "rm -rf %s", swap_dir);
	cr_assert_eq(system(rm), 0);
}
