/* Description: the node limit shared by shares, against the real memsrv:
 * three busy VMs with shares 1:2:4 converge to resident memory in that
 * proportion (within 25%), an idle VM yields memory to a busy one with the
 * same shares (idle tax), guarantees hold, and stats report overcommit. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

static struct test_server srv;

static void teardown(void) { server_stop(&srv); }

TestSuite(balance, .fini = teardown, .timeout = 120);

/* A VM that keeps reading its (all zero, so cheap) pages at random. */
static pid_t busy_vm(const char *name, const char *shares, const char *guarantee)
{
	return sim_spawn(&srv, name, "--size", "32M", "--mix", "zero=100", "--shares", shares, "--guarantee", guarantee,
			 "--pattern", "random", "--write-pct", "0", "--ops", "100000000", NULL);
}

/* The node limit: bytes for the VMs over memsrv's own memory, whatever
 * that is (under ASan its resident set is many MiB more). */
static void limit_vms_to(uint64_t bytes)
{
	Memsrv__ServerMessage *om;
	uint64_t overhead = ctl_stats_ok(&srv, &om)->overhead_bytes;
	memsrv__server_message__free_unpacked(om, NULL);
	char limit[64];
	snprintf(limit, sizeof limit, "limit=%lu", (unsigned long)(overhead + bytes));
	ctl_set_ok(&srv, "node", limit);
}

static void stop(pid_t pid)
{
	kill(pid, SIGKILL);
	wait_exit(pid);
}

Test(balance, shares_1_2_4_converge_to_their_proportion)
{
	const char *opts[] = { "--node-limit", "24M", NULL };
	server_start_with(&srv, opts);
	pid_t a = busy_vm("s1", "1", "0"), b = busy_vm("s2", "2", "0"), c = busy_vm("s4", "4", "0");
	/* 24 MiB for the VMs whatever memsrv's own memory is: under ASan its
	 * resident set (the node's overhead) is many MiB more, and left the
	 * VMs so little that rounding decided the ratios (1 : 2.7 : 3.7) */
	sleep(1);
	limit_vms_to(24u << 20);
	sleep(3);  /* fill, then faults under pressure: ten balancer rounds a second */
	uint64_t r1 = 0, r2 = 0, r4 = 0;
	for (int i = 0; i < 5; i++) {  /* average a few samples: the VMs fault all the time */
		r1 += CTL_INFO(&srv, "s1", resident_bytes);
		r2 += CTL_INFO(&srv, "s2", resident_bytes);
		r4 += CTL_INFO(&srv, "s4", resident_bytes);
		usleep(200000);
	}
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert(st->overcommitted, "96 MiB assigned on a 24 MiB node");
	cr_assert_leq(st->resident_bytes + st->overhead_bytes, st->node_limit_bytes + (3u << 20), "the node limit holds");
	memsrv__server_message__free_unpacked(m, NULL);
	stop(a);
	stop(b);
	stop(c);
	double x2 = (double)r2 / r1, x4 = (double)r4 / r1;
	fprintf(stderr, "shares 1:2:4 -> resident %.1f : %.1f : %.1f MiB (1 : %.2f : %.2f)\n", r1 / 5.0 / (1 << 20),
		r2 / 5.0 / (1 << 20), r4 / 5.0 / (1 << 20), x2, x4);
	cr_assert(x2 > 2 * 0.75 && x2 < 2 * 1.25, "s2/s1 = %.2f (resident %lu / %lu)", x2, (unsigned long)r2,
		  (unsigned long)r1);
	cr_assert(x4 > 4 * 0.75 && x4 < 4 * 1.25, "s4/s1 = %.2f (resident %lu / %lu)", x4, (unsigned long)r4,
		  (unsigned long)r1);
}

Test(balance, an_idle_vm_yields_to_a_busy_one_but_keeps_its_guarantee)
{
	server_start(&srv);
	limit_vms_to(32u << 20);
	struct test_sim idle;
	sim_start(&idle, &srv, "idle", "--size", "32M", "--mix", "zero=100", "--guarantee", "4M", NULL);
	pid_t busy = busy_vm("busy", "1000", "0");
	sleep(5);  /* the idle VM's last fault ages past 3 s: its shares count a quarter */
	/* then the busy VM faults its way up to its new share: on a loaded
	 * machine (or under ASan) that takes a moment more, so wait for it,
	 * up to 30 s */
	uint64_t ri = CTL_INFO(&srv, "idle", resident_bytes), rb = CTL_INFO(&srv, "busy", resident_bytes);
	for (int i = 0; i < 150 && rb <= 2 * ri; i++) {
		usleep(200000);
		ri = CTL_INFO(&srv, "idle", resident_bytes);
		rb = CTL_INFO(&srv, "busy", resident_bytes);
	}
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "idle");
	bool idle_active = m->vm_info->active;
	uint64_t idle_target = m->vm_info->node_target_bytes;
	memsrv__server_message__free_unpacked(m, NULL);
	stop(busy);
	cr_assert_not(idle_active);
	cr_assert_gt(rb, 2 * ri, "busy %lu, idle %lu: the idle VM must yield", (unsigned long)rb, (unsigned long)ri);
	cr_assert_geq(idle_target, 4u << 20, "the guarantee holds");
	cr_assert_geq(ri, (4u << 20) - (1u << 20), "the idle VM keeps about its guarantee: %lu", (unsigned long)ri);
	sim_quit_verified(&idle, 8192);
}

Test(balance, the_node_limit_changes_at_run_time)
{
	server_start(&srv);
	pid_t a = busy_vm("grower", "1", "0");
	sleep(1);
	cr_assert_gt(CTL_INFO(&srv, "grower", resident_bytes), 24u << 20, "no node limit: the VM holds what it touches");
	ctl_set_ok(&srv, "node", "limit=8M");
	sleep(1);
	uint64_t r = CTL_INFO(&srv, "grower", resident_bytes);
	stop(a);
	cr_assert_leq(r, 8u << 20, "resident %lu after the node limit fell to 8 MiB", (unsigned long)r);
}

static bool has_warning(const Memsrv__CheckReply *r, const char *kind, const char *vm)
{
	for (size_t i = 0; i < r->n_warnings; i++)
		if (!strcmp(r->warnings[i]->kind, kind) && (!vm || (r->warnings[i]->vm && !strcmp(r->warnings[i]->vm, vm))))
			return true;
	return false;
}

static bool no_vm_attached(void *arg)
{
	(void)arg;
	return ctl_vm_count(&srv) == 0;
}

Test(balance, check_names_the_dangers_of_the_quotas)
{
	/* 16 MiB for the VMs over memsrv's own memory, which is the node's
	 * too: its overhead alone (many MiB under ASan) is no danger to name */
	server_start(&srv);
	limit_vms_to(16u << 20);
	struct test_sim a, b;
	sim_start(&a, &srv, "greedy", "--size", "32M", "--mix", "zero=100", "--guarantee", "12M", NULL);
	sim_start(&b, &srv, "capped", "--size", "32M", "--mix", "zero=100", "--guarantee", "8M", "--limit", "16M", NULL);
	Memsrv__ServerMessage *m = NULL;
	cr_assert_eq(ctl_check(srv.sock, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_CHECK_REPLY);
	const Memsrv__CheckReply *r = m->check_reply;
	cr_assert(has_warning(r, "overcommitted-guarantees", NULL), "20 MiB of guarantees where the VMs have 16");
	cr_assert(has_warning(r, "limit-below-size", "capped"));
	cr_assert_not(has_warning(r, "limit-below-size", "greedy"), "greedy has no limit");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(sim_quit(&a), 0);
	cr_assert_eq(sim_quit(&b), 0);
	/* nothing configured, nothing to say: once memsrv saw both sessions
	 * close (a VMM's exit and memsrv's hearing of it are not one instant) */
	cr_assert(wait_until(no_vm_attached, NULL, 5000), "the VMs are gone");
	m = NULL;
	cr_assert_eq(ctl_check(srv.sock, &m), 0);
	cr_assert_eq(m->check_reply->n_warnings, 0);
	memsrv__server_message__free_unpacked(m, NULL);
}
