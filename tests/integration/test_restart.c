/* Description: restart without loss.  memsrv is killed with SIGKILL again
 * and again while simulated VMs fault, write and verify, and started again
 * on its --state-dir: every VM reconnects (libmemsrv), resumes, and reads
 * back every page it wrote.  Also: a VMM that finds no state is refused,
 * not handed zeros; a second memsrv keeps off a state dir in use; the state
 * of a VM whose process died is dropped; a full state dir stops eviction,
 * never service. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

static struct test_server srv;
static char state_dir[64], swap_dir[64], mounted[64];
#define SIMS 4
static pid_t sims[SIMS];

static void teardown(void)
{
	for (int i = 0; i < SIMS; i++)
		if (sims[i] > 0) {
			kill(sims[i], SIGKILL);  /* a VM left waiting must not hold the test's output open */
			wait_exit(sims[i]);
			sims[i] = 0;
		}
	if (server_alive(&srv))
		server_stop(&srv);
	if (mounted[0])
		umount2(mounted, MNT_DETACH);
	scratch_remove(state_dir);
	scratch_remove(swap_dir);
	mounted[0] = 0;
}

TestSuite(restart, .fini = teardown, .timeout = 240);

/* The state dir on tmpfs (/dev/shm), as operators are told to put it. */
static void make_dirs(void)
{
	cr_assert(scratch_make(state_dir, sizeof state_dir, "/dev/shm/memsrv-restart.XXXXXX"));
	cr_assert(scratch_make(swap_dir, sizeof swap_dir, "/var/tmp/memsrv-restart-swap.XXXXXX"));
}

static unsigned count_in_log(const char *what)
{
	char cmd[256], out[64];
	snprintf(cmd, sizeof cmd, "grep -c '%s' %s", what, srv.log);
	run_capture(cmd, out, sizeof out);
	return (unsigned)strtoul(out, NULL, 10);
}

static bool all_attached(void *arg)
{
	(void)arg;
	return ctl_vm_count(&srv) == SIMS;
}

static bool dir_has_no_vm(void *arg)
{
	char cmd[160], out[256];
	snprintf(cmd, sizeof cmd, "ls %s | grep -c '^vm-' || true", (const char *)arg);
	run_capture(cmd, out, sizeof out);
	return strtoul(out, NULL, 10) == 0;
}

Test(restart, kill_9_in_a_loop_loses_no_page_and_every_vm_goes_on)
{
	make_dirs();
	char swap_arg[96];
	snprintf(swap_arg, sizeof swap_arg, "%s:256M", swap_dir);
	/* a small cache: pages live in all three tiers (samefilled, cache, swap) */
	const char *opts[] = { "--state-dir", state_dir, "--cache-size", "4M", "--swap-dir", swap_arg, NULL };
	server_start_with(&srv, opts);
	/* the last one's RAM is anonymous: a kill may come while its drop
	 * thread drops, and the memsrv after waits that drop out */
	const char *patterns[SIMS] = { "zipf", "random", "seq", "random" };
	for (int i = 0; i < SIMS; i++) {
		char name[16];
		snprintf(name, sizeof name, "vm%d", i);
		sims[i] = sim_spawn(&srv, name, "--size", "32M", "--limit", "8M", "--pattern", patterns[i], "--write-pct",
				    "20", "--duration", "20", "--verify", i == SIMS - 1 ? "--anonymous" : NULL, NULL);
	}
	cr_assert(wait_until(all_attached, NULL, 5000), "the VMs attached");
	const unsigned rounds = 10;
	for (unsigned r = 0; r < rounds; r++) {
		usleep(700000 + (unsigned)rand() % 800000);  /* mid-fault, mid-eviction, mid-writeback */
		server_crash_and_restart(&srv, opts);
		cr_assert(wait_until(all_attached, NULL, 10000), "round %u: every VM resumed", r);
	}
	for (int i = 0; i < SIMS; i++) {
		cr_assert_eq(wait_exit(sims[i]), 0, "vm%d read back every page it wrote, through %u kills", i, rounds);
		sims[i] = 0;
	}
	cr_assert_geq(count_in_log("resumed: pid"), SIMS * rounds, "each VM resumed after each kill");
	cr_assert_eq(count_in_log("refused VM"), 0);
	server_stop(&srv);
	cr_assert(dir_has_no_vm(state_dir), "VMs that detached in order leave no state behind");
	char cmd[160], out[64];
	snprintf(cmd, sizeof cmd, "ls %s | wc -l", swap_dir);
	run_capture(cmd, out, sizeof out);
	cr_assert_eq(strtoul(out, NULL, 10), 0, "nothing left to resume: the swap files go too");
}

Test(restart, a_vmm_that_finds_no_state_is_refused_not_given_zeros)
{
	server_start(&srv);  /* no --state-dir: a crash loses the evicted pages */
	struct test_sim sim;
	sim_start(&sim, &srv, "lost", "--size", "16M", NULL);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "lost", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	server_crash_and_restart(&srv, NULL);
	for (int i = 0; i < 500 && !count_in_log("memsrv kept no state for VM lost"); i++)
		usleep(10000);
	cr_assert_eq(count_in_log("memsrv kept no state for VM lost"), 1, "the resume was refused with the reason");
	cr_assert_eq(ctl_vm_count(&srv), 0, "and never attached with its pages gone");
	sim_kill(&sim);
}

Test(restart, a_second_memsrv_keeps_off_a_state_dir_in_use)
{
	make_dirs();
	const char *opts[] = { "--state-dir", state_dir, NULL };
	server_start_with(&srv, opts);
	char cmd[512], out[1024];
	snprintf(cmd, sizeof cmd, "%s --socket %s/other.sock --state-dir %s 2>&1", getenv("MEMSRV_BIN"), srv.dir, state_dir);
	int status = run_capture(cmd, out, sizeof out);
	cr_assert_eq(status, 1, "refused: %s", out);
	cr_assert(strstr(out, "in use by another memsrv"), "says why: %s", out);
	cr_assert(server_alive(&srv));
}

Test(restart, the_state_of_a_vm_whose_process_died_is_dropped)
{
	make_dirs();
	const char *opts[] = { "--state-dir", state_dir, NULL };
	server_start_with(&srv, opts);
	struct test_sim sim;
	sim_start(&sim, &srv, "gone", "--size", "16M", NULL);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "gone", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_not(dir_has_no_vm(state_dir), "an attached VM has its state file");
	kill(srv.pid, SIGKILL);
	cr_assert_eq(wait_exit(srv.pid), 128 + SIGKILL);
	sim_kill(&sim);  /* the VMM dies too while memsrv is down */
	server_relaunch(&srv, opts);
	cr_assert(wait_until(dir_has_no_vm, state_dir, 3000), "its state is dropped");
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->objects, 0, "and the store lets go of its pages");
	memsrv__server_message__free_unpacked(m, NULL);
}

Test(restart, a_full_state_dir_stops_eviction_and_never_service)
{
	make_dirs();
	/* room for the VM's page table and one chunk of the object table,
	 * and little compressed cache */
	cr_assert_eq(mount("tmpfs", state_dir, "tmpfs", 0, "size=6M"), 0, "mount tmpfs: %s", strerror(errno));
	snprintf(mounted, sizeof mounted, "%s", state_dir);
	const char *opts[] = { "--state-dir", state_dir, NULL };
	server_start_with(&srv, opts);
	struct test_sim sim;
	sim_start(&sim, &srv, "full", "--size", "32M", "--mix", "random=50,text=50", "--verify", NULL);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "full", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_gt(st->store_full, 0, "the store found no room in the state dir");
	bool shown = false;
	for (size_t i = 0; i < st->n_conditions; i++)
		shown |= !strcmp(st->conditions[i], "store-full");
	cr_assert(shown, "stats shows the condition");
	memsrv__server_message__free_unpacked(m, NULL);
	sim_quit_verified(&sim, 8192);  /* every page: resident, stored, or faulted back */
	cr_assert(server_alive(&srv), "no SIGBUS: the state files are allocated before they are written");
}
