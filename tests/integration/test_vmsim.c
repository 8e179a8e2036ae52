/* Description: simulated VMs (memsrv-vmsim processes) against a real
 * memsrv: a 256 MiB VM evicted whole and read back, a writer racing with
 * eviction, two VMs at once, a VMM killed mid-fault, a VM saved, snapshotted
 * and resumed from its image with every page as it was. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <string.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

static struct test_server srv;
static char scratch[64];  /* a test's images, removed even when it fails */

static void setup(void) { server_start(&srv); }
static void teardown(void)
{
	server_stop(&srv);
	scratch_remove(scratch);
}

TestSuite(vmsim, .init = setup, .fini = teardown, .timeout = 240);

Test(vmsim, evict_all_of_256m_leaves_the_memfd_empty_and_every_page_intact)
{
	struct test_sim sim;
	sim_start(&sim, &srv, "big", "--size", "256M", "--verify", NULL);
	struct sim_reply r;
	sim_cmd(&sim, "report", &r);
	cr_assert(r.ok, "%s", r.error);
	cr_assert_geq(sim_value(&r, "memfd_allocated_bytes"), 250ull << 20, "filled VM holds its RAM");

	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "big", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, 65536);
	cr_assert_eq(m->evict_reply->resident_bytes, 0);
	cr_assert_gt(m->evict_reply->zero_pages, 0);
	cr_assert_gt(m->evict_reply->stored_pages, 0);
	memsrv__server_message__free_unpacked(m, NULL);

	sim_cmd(&sim, "report", &r);
	cr_assert(r.ok, "%s", r.error);
	uint64_t left = sim_value(&r, "memfd_allocated_bytes");
	cr_assert_leq(left, (256ull << 20) / 100, "%lu bytes still allocated after evict --all", (unsigned long)left);

	sim_expect_verified(&sim, 65536);
	m = ctl_info_ok(&srv, "big");
	cr_assert_gt(m->vm_info->faults_stored, 0);
	cr_assert_eq(m->vm_info->stored_pages, 0, "%lu pages still stored after every page was read",
		     (unsigned long)m->vm_info->stored_pages);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(sim_quit(&sim), 0);
}

Test(vmsim, a_writer_racing_with_eviction_loses_nothing)
{
	/* random reads and writes, each read checked, all verified at the end,
	 * while evictions sweep the VM again and again */
	pid_t pid = sim_spawn(&srv, "racer", "--size", "32M", "--pattern", "random", "--write-pct", "50", "--ops",
			      "400000", "--verify", NULL);
	unsigned rounds = 0;
	uint64_t evicted = 0;
	int status = -1;
	for (;;) {
		int st;
		pid_t done = waitpid(pid, &st, WNOHANG);
		if (done == pid) {
			status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			break;
		}
		Memsrv__ServerMessage *m = NULL;
		if (ctl_evict(srv.sock, "racer", 0, true, &m) == 0) {
			if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_EVICT_REPLY) {
				evicted += m->evict_reply->pages_evicted;
				rounds++;
			}
			memsrv__server_message__free_unpacked(m, NULL);
		}
		usleep(20000);
	}
	cr_assert_eq(status, 0, "vmsim saw corrupted pages or failed (status %d)", status);
	cr_assert_geq(rounds, 3, "only %u evictions ran during the race", rounds);
	cr_assert_gt(evicted, 8192, "evictions took only %lu pages", (unsigned long)evicted);
}

Test(vmsim, a_sequential_scan_is_prefetched_and_reads_back_intact)
{
	struct test_sim sim;
	sim_start(&sim, &srv, "scan", "--size", "16M", "--pattern", "seq", "--verify", NULL);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "scan", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, 4096);
	memsrv__server_message__free_unpacked(m, NULL);
	struct sim_reply r;
	sim_cmd(&sim, "run", &r);  /* reads every page in order, each checked */
	cr_assert(r.ok, "%s", r.error);
	cr_assert_eq(sim_value(&r, "mismatches"), 0);
	m = ctl_info_ok(&srv, "scan");
	uint64_t faults = m->vm_info->faults_total, prefetched = m->vm_info->prefetched_pages;
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_gt(prefetched, 4096 / 2, "only %lu of 4096 pages came ahead of the scan", (unsigned long)prefetched);
	cr_assert_lt(faults, 4096 / 4, "%lu faults for 4096 pages read in order", (unsigned long)faults);
	sim_quit_verified(&sim, 4096);
}

Test(vmsim, two_vms_at_once)
{
	struct test_sim a, b;
	sim_start(&a, &srv, "vm-a", "--size", "32M", "--seed", "1", "--verify", NULL);
	sim_start(&b, &srv, "vm-b", "--size", "16M", "--seed", "2", "--mix", "text=50,random=50", "--verify", NULL);
	cr_assert_eq(ctl_vm_count(&srv), 2);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "vm-a", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, 8192);
	memsrv__server_message__free_unpacked(m, NULL);
	m = ctl_evict_ok(&srv, "vm-b", 8 << 20, false);
	cr_assert_geq(m->evict_reply->pages_evicted, 2048);
	cr_assert_lt(m->evict_reply->pages_evicted, 4096, "evict --bytes takes about that much, not all");
	memsrv__server_message__free_unpacked(m, NULL);
	sim_expect_verified(&a, 8192);
	sim_expect_verified(&b, 4096);
	cr_assert_eq(sim_quit(&a), 0);
	cr_assert_eq(ctl_vm_count(&srv), 1);
	sim_quit_verified(&b, 4096);
	cr_assert_eq(ctl_vm_count(&srv), 0);
}

static bool one_vm_left(void *arg)
{
	return ctl_vm_count(arg) == 1;
}

Test(vmsim, a_vmm_killed_mid_fault_disturbs_no_one_else)
{
	struct test_sim victim, other;
	sim_start(&victim, &srv, "victim", "--size", "64M", "--pattern", "random", "--ops", "1000000", NULL);
	sim_start(&other, &srv, "other", "--size", "16M", "--verify", NULL);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "victim", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	m = ctl_evict_ok(&srv, "other", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);

	/* the victim faults its evicted pages back as fast as it can... */
	fprintf(victim.in, "run\n");
	fflush(victim.in);
	usleep(100000);
	m = ctl_info_ok(&srv, "victim");
	cr_assert_gt(m->vm_info->faults_stored, 0, "the victim was faulting when killed");
	memsrv__server_message__free_unpacked(m, NULL);
	/* ...and dies in the middle of it */
	sim_kill(&victim);
	cr_assert(wait_until(one_vm_left, &srv, 5000), "the dead VM was not released");
	cr_assert(server_alive(&srv));
	sim_expect_verified(&other, 4096);
	m = ctl_evict_ok(&srv, "other", 0, true);
	cr_assert_gt(m->evict_reply->pages_evicted, 0);
	memsrv__server_message__free_unpacked(m, NULL);
	sim_quit_verified(&other, 4096);
}

static bool starts_with(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* Runs memsrv-ctl with args; returns its exit status and its stdout in out. */
static int run_ctl(const char *args, char *out, size_t len)
{
	const char *bin = getenv("CTL_BIN");
	cr_assert(bin, "CTL_BIN is not set: run the tests with meson test");
	char cmd[512];
	snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
	return run_capture(cmd, out, len);
}

Test(vmsim, memsrv_ctl_speaks_text_and_json_and_fails_clearly)
{
	struct test_sim sim;
	sim_start(&sim, &srv, "cli", "--size", "8M", NULL);
	static char out[16384];
	char args[256];

	snprintf(args, sizeof args, "--socket %s list", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 0, "%s", out);
	cr_assert(strstr(out, "cli"), "%s", out);

	snprintf(args, sizeof args, "--socket %s info cli", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 0, "%s", out);
	cr_assert(strstr(out, "resident_bytes: 8.0 MiB\n"), "sizes read as a person reads them: %s", out);
	cr_assert(strstr(out, "fault_latency_us: p50="), "%s", out);

	snprintf(args, sizeof args, "--socket %s evict cli --bytes 1M --json", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 0, "%s", out);
	cr_assert(out[0] == '{' && strstr(out, "\"pages_evicted\":256"), "%s", out);

	snprintf(args, sizeof args, "--json --socket %s info cli", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 0, "%s", out);
	cr_assert(strstr(out, "\"name\":\"cli\""), "%s", out);
	cr_assert(strstr(out, "\"resident_bytes\":7340032"), "%s", out);
	cr_assert(strstr(out, "\"fault_latency_us\":{\"p50\":"), "%s", out);

	/* vmsim says at attach that it has no balloon: memsrv never asks it */
	snprintf(args, sizeof args, "--socket %s balloon cli --target 4M", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 1, "%s", out);
	cr_assert(strstr(out, "VM cli's VMM has no balloon"), "%s", out);
	snprintf(args, sizeof args, "--socket %s info cli", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 0, "%s", out);
	cr_assert(strstr(out, "balloon_target_bytes: 0 B\n"), "%s", out);
	cr_assert(strstr(out, "balloon: \"no\"\n") || strstr(out, "balloon: no\n"), "%s", out);
	snprintf(args, sizeof args, "--socket %s balloon cli --target 9M", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 1, "%s", out);
	cr_assert(strstr(out, "balloon.target_bytes"), "%s", out);
	snprintf(args, sizeof args, "--socket %s balloon cli --target 0", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 64, "%s", out);
	snprintf(args, sizeof args, "--socket %s balloon cli", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 64, "%s", out);

	snprintf(args, sizeof args, "--socket %s info nosuch", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 1, "%s", out);
	cr_assert(strstr(out, "no VM named nosuch") && strstr(out, "info.name"), "%s", out);

	snprintf(args, sizeof args, "--socket %s/absent.sock stats", srv.dir);
	cr_assert_eq(run_ctl(args, out, sizeof out), 2, "%s", out);
	cr_assert(strstr(out, "cannot connect"), "%s", out);

	/* under --json a failure is JSON too, where the reply would be */
	snprintf(args, sizeof args, "--json --socket %s info nosuch", srv.sock);
	cr_assert_eq(run_ctl(args, out, sizeof out), 1, "%s", out);
	cr_assert(starts_with(out, "{\"error\":{\"errno_code\":") && strstr(out, "\"field\":\"info.name\"") &&
		  strstr(out, "\"message\":\"no VM named nosuch"), "%s", out);
	snprintf(args, sizeof args, "--json --socket %s/absent.sock stats", srv.dir);
	cr_assert_eq(run_ctl(args, out, sizeof out), 2, "%s", out);
	cr_assert(starts_with(out, "{\"error\":{\"errno_code\":2,\"message\":\"cannot connect to "), "%s", out);

	cr_assert_eq(run_ctl("evict", out, sizeof out), 64, "%s", out);
	cr_assert_eq(sim_quit(&sim), 0);
}

/* What bash's completion of memsrv-ctl offers for words (the last one the
 * word being completed), one per line into out. */
static void complete_ctl(const char *words, char *out, size_t len)
{
	char bin[PATH_MAX];
	cr_assert(realpath(getenv("CTL_BIN"), bin));
	*strrchr(bin, '/') = 0;
	char cmd[2 * PATH_MAX + 1024];
	snprintf(cmd, sizeof cmd,
		 "PATH='%s':\"$PATH\" bash -c 'source \"%s\" && COMP_WORDS=(%s) && COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) "
		 "&& { _memsrv_ctl; printf \"%%s\\n\" \"${COMPREPLY[@]}\"; }' 2>&1",
		 bin, getenv("MEMSRV_CTL_COMPLETION"), words);
	cr_assert_eq(run_capture(cmd, out, len), 0, "%s: %s", words, out);
}

Test(vmsim, bash_completes_memsrv_ctl_commands_vm_names_and_keys)
{
	struct test_sim sim;
	sim_start(&sim, &srv, "cli", "--size", "8M", NULL);
	char out[4096], words[512];
	complete_ctl("memsrv-ctl ev", out, sizeof out);
	cr_assert_str_eq(out, "evict\n");
	snprintf(words, sizeof words, "memsrv-ctl --socket %s info c", srv.sock);
	complete_ctl(words, out, sizeof out);
	cr_assert_str_eq(out, "cli\n", "the VM names of the running memsrv");
	snprintf(words, sizeof words, "memsrv-ctl --socket %s set cli po", srv.sock);
	complete_ctl(words, out, sizeof out);
	cr_assert_str_eq(out, "policy=\n");
	snprintf(words, sizeof words, "memsrv-ctl --socket %s evict cli --a", srv.sock);
	complete_ctl(words, out, sizeof out);
	cr_assert_str_eq(out, "--all\n");
	cr_assert_eq(sim_quit(&sim), 0);
}

/* Flips a byte of a file at offset. */
static void flip_byte(const char *path, off_t offset)
{
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	unsigned char b;
	cr_assert_eq(pread(fd, &b, 1, offset), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, offset), 1);
	close(fd);
}

Test(vmsim, a_saved_and_snapshotted_vm_resumes_with_every_page_as_it_was)
{
	char img[128], state[160], copy[128];
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-vmsim-resume.XXXXXX"));
	/* every page comes from the image when first touched: with the
	 * background on, a slow start can find them all moved to the store */
	server_stop(&srv);
	const char *opts[] = { "--resume-background", "off", NULL };
	server_start_with(&srv, opts);
	snprintf(img, sizeof img, "%s/img", scratch);
	snprintf(copy, sizeof copy, "%s/copy", scratch);

	/* the source: filled, a third rewritten (versions 1), half evicted */
	struct test_sim src;
	sim_start(&src, &srv, "source", "--size", "32M", "--seed", "7", "--verify", NULL);
	struct sim_reply r;
	sim_cmd(&src, "write 0.3", &r);
	cr_assert(r.ok, "%s", r.error);
	cr_assert_gt(sim_value(&r, "pages_written"), 1000);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "source", 16 << 20, false);
	memsrv__server_message__free_unpacked(m, NULL);
	char cmd[320];
	snprintf(cmd, sizeof cmd, "save %s", img);
	sim_cmd(&src, cmd, &r);
	cr_assert(r.ok, "%s", r.error);
	cr_assert_eq(sim_value(&r, "saved_pages"), 8192);
	sim_cmd(&src, cmd, &r);
	cr_assert(!r.ok && strstr(r.error, "exists"), "a second save into %s replaced the first: %s", img, r.error);
	ctl_snapshot_ok(&srv, "source", img);
	cr_assert_eq(sim_quit(&src), 0);

	/* the resumed VM: every page checked against the versions the source had */
	struct test_sim res;
	sim_start(&res, &srv, "resumed", "--resume", img, "--verify", NULL);
	sim_expect_verified(&res, 8192);
	cr_assert_gt(CTL_INFO(&srv, "resumed", faults_image), 0, "no page came from the image on a fault");
	cr_assert_eq(CTL_INFO(&srv, "resumed", fault_errors), 0);
	cr_assert_eq(sim_quit(&res), 0);

	/* a size that is not the saved one, and a state that was damaged, are refused */
	pid_t pid = sim_spawn(&srv, "wrong-size", "--resume", img, "--size", "16M", NULL);
	cr_assert_eq(wait_exit(pid), 64, "--size other than the saved VM's was not refused");
	snprintf(cmd, sizeof cmd, "cp -a %s %s", img, copy);
	cr_assert_eq(system(cmd), 0);
	snprintf(state, sizeof state, "%s/vmsim.state", copy);
	flip_byte(state, 56 + 4 * 1234);  /* a version, past the header */
	pid = sim_spawn(&srv, "corrupt", "--resume", copy, NULL);
	cr_assert_eq(wait_exit(pid), 2, "a corrupt vmsim.state was not refused");
	cr_assert_eq(ctl_vm_count(&srv), 0);
}
