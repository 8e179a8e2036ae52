/* Description: eviction policies and limits changed at run time, against the
 * real memsrv: every algorithm keeps every byte under a tight limit; raising
 * a limit lets a VM grow, lowering it evicts down to it; bad settings are
 * refused and change nothing. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

static struct test_server srv;

static void setup(void) { server_start(&srv); }
static void teardown(void) { server_stop(&srv); }

TestSuite(policy_vms, .init = setup, .fini = teardown, .timeout = 180);

Test(policy_vms, every_algorithm_keeps_every_byte_under_a_tight_limit)
{
	const char *names[] = { "lru", "fifo", "clock", "second-chance", "aging", "nru", "random" };
	for (int i = 0; i < 7; i++) {
		char vm[32], setting[64];
		snprintf(vm, sizeof vm, "algo-%d", i);
		struct test_sim sim;
		sim_start(&sim, &srv, vm, "--size", "16M", "--limit", "4M", "--pattern", "zipf", "--write-pct", "30",
			  "--ops", "20000", "--verify", NULL);
		snprintf(setting, sizeof setting, "policy=%s", names[i]);
		ctl_set_ok(&srv, vm, setting);
		struct sim_reply r;
		sim_cmd(&sim, "run", &r);
		cr_assert(r.ok, "%s: %s", names[i], r.error);
		cr_assert_eq(sim_value(&r, "mismatches"), 0, "%s lost data", names[i]);
		Memsrv__ServerMessage *m = ctl_info_ok(&srv, vm);
		cr_assert_str_eq(m->vm_info->policy, names[i]);
		cr_assert_leq(m->vm_info->resident_bytes, 4u << 20, "%s: the limit holds", names[i]);
		cr_assert_gt(m->vm_info->faults_stored, 0, "%s: pages went and came back", names[i]);
		memsrv__server_message__free_unpacked(m, NULL);
		sim_quit_verified(&sim, 4096);
	}
}

static bool at_most_4m(void *arg)
{
	return CTL_INFO(&srv, arg, resident_bytes) <= 4u << 20;
}

Test(policy_vms, a_limit_changed_at_run_time_takes_effect)
{
	struct test_sim sim;
	sim_start(&sim, &srv, "grow", "--size", "32M", "--limit", "8M", "--pattern", "seq", "--verify", NULL);
	cr_assert_leq(CTL_INFO(&srv, "grow", resident_bytes), 8u << 20);

	/* raised: the VM may hold more, and reading everything makes it */
	ctl_set_ok(&srv, "grow", "limit=24M");
	struct sim_reply r;
	sim_cmd(&sim, "run", &r);
	cr_assert(r.ok, "%s", r.error);
	uint64_t grown = CTL_INFO(&srv, "grow", resident_bytes);
	cr_assert_gt(grown, 16u << 20, "resident %lu after raising the limit", (unsigned long)grown);
	cr_assert_leq(grown, 24u << 20);

	/* lowered: memsrv evicts down to it on its own */
	ctl_set_ok(&srv, "grow", "limit=4M");
	cr_assert(wait_until(at_most_4m, "grow", 5000), "resident %lu after lowering the limit",
		  (unsigned long)CTL_INFO(&srv, "grow", resident_bytes));
	sim_quit_verified(&sim, 8192);
}

Test(policy_vms, bad_settings_change_nothing)
{
	struct test_sim sim;
	sim_start(&sim, &srv, "strict", "--size", "8M", "--limit", "4M", NULL);
	const char *bad[][2] = {
		{ "policy=optimal", "policy 'optimal' is none of" },
		{ "limit=12", "limit '12' is not 0" },
		{ "colour=blue", "cannot be set" },
	};
	for (int i = 0; i < 3; i++) {
		const char *settings[] = { "codec=zstd", bad[i][0] };
		Memsrv__ServerMessage *m = NULL;
		cr_assert_eq(ctl_set(srv.sock, "strict", settings, 2, &m), 0);
		cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "%s was accepted", bad[i][0]);
		cr_assert(strstr(m->error->message, bad[i][1]), "%s", m->error->message);
		memsrv__server_message__free_unpacked(m, NULL);
	}
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "strict");
	cr_assert_str_eq(m->vm_info->codec, "lz4", "a refused set applies none of its settings");
	cr_assert_str_eq(m->vm_info->policy, "clock");
	cr_assert_eq(m->vm_info->limit_bytes, 4u << 20);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(sim_quit(&sim), 0);
}

Test(policy_vms, sampling_tells_busy_from_idle_and_loses_nothing)
{
	/* the busy VM reads and writes a hot set all along; the idle one sits */
	pid_t busy = sim_spawn(&srv, "hot", "--size", "32M", "--limit", "28M", "--pattern", "zipf", "--zipf-s", "1.2",
			       "--write-pct", "30", "--ops", "12000000", "--verify", NULL);
	struct test_sim idle;
	sim_start(&idle, &srv, "cold", "--size", "32M", "--limit", "28M", "--verify", NULL);
	sleep(4);  /* four sampling periods */
	Memsrv__ServerMessage *h = ctl_info_ok(&srv, "hot"), *c = ctl_info_ok(&srv, "cold");
	uint64_t hot_ws = h->vm_info->working_set_bytes, cold_ws = c->vm_info->working_set_bytes;
	uint64_t cold_res = c->vm_info->resident_bytes;
	fprintf(stderr, "working set: hot %lu of %lu resident, cold %lu of %lu\n", (unsigned long)hot_ws,
		(unsigned long)h->vm_info->resident_bytes, (unsigned long)cold_ws, (unsigned long)cold_res);
	memsrv__server_message__free_unpacked(h, NULL);
	memsrv__server_message__free_unpacked(c, NULL);
	cr_assert_gt(hot_ws, 0, "the busy VM has a working set");
	cr_assert_lt(cold_ws, cold_res / 10, "an idle VM's working set is near nothing");
	cr_assert_gt(hot_ws, cold_ws);
	/* probation raced with the hot VM's writes: every byte must be intact */
	cr_assert_eq(wait_exit(busy), 0, "the busy VM saw corrupted pages");
	sim_quit_verified(&idle, 8192);
}
