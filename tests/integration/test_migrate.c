/* Description: live migration between two memsrv nodes on this machine
 * (two sockets, two loopback ports).  A simulated VM that writes while
 * memsrv-ctl migrate runs arrives whole at the destination: every page as
 * the source last wrote it, the source no longer lists it, and the reply
 * counts pages, bytes and rounds; a destination that verifies while the
 * last pages stream pulls the ones its faults wait on, which come on a
 * second connection.  A destination
 * memsrv killed, or its VMM gone (QEMU cancelling), mid-way leaves the
 * source VM running and whole; a destination with no such VM, or one laid
 * out otherwise, refuses with a clear error and harms nothing; a VMM that
 * says its VM migrated when none was migrating is refused, every page kept;
 * a source memsrv killed mid-way (with --state-dir) resumes its VM whole,
 * the destination waits for another source, and a second migration
 * completes; two VMs of one base image migrated back to back cost the
 * wire the image once (the second one's pages are offered by hash and
 * taken from the destination's store); another process mapping the
 * source's RAM mid-way ends the migration, the VM whole. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

TestSuite(migrate, .timeout = 240);

struct node {
	struct test_server srv;
	char listen[32];
};

static void node_start(struct node *n)
{
	snprintf(n->listen, sizeof n->listen, "127.0.0.1:%u", free_loopback_port());
	const char *opts[] = { "--peer-listen", n->listen, NULL };
	server_start_with(&n->srv, opts);
}

/* memsrv-ctl migrate on a thread of its own: it answers at the end. */
struct migration {
	pthread_t thread;
	const struct node *from, *to;
	const char *vm;
	int ret;
	Memsrv__ServerMessage *reply;
};

static void *migrate_main(void *arg)
{
	struct migration *m = arg;
	struct ctl_req r;
	ctl_build_migrate(&r, m->vm, m->to->listen);
	m->ret = ctl_request(m->from->srv.sock, &r.msg, &m->reply);
	return NULL;
}

static void migration_start(struct migration *m, const struct node *from, const struct node *to, const char *vm)
{
	*m = (struct migration){ .from = from, .to = to, .vm = vm };
	cr_assert_eq(pthread_create(&m->thread, NULL, migrate_main, m), 0);
}

/* The migration's answer, asserted to be a MigrateReply. */
static const Memsrv__MigrateReply *migration_done(struct migration *m)
{
	pthread_join(m->thread, NULL);
	cr_assert_eq(m->ret, 0);
	cr_assert_eq(m->reply->msg_case, MEMSRV__SERVER_MESSAGE__MSG_MIGRATE_REPLY, "%s",
		     m->reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->reply->error->message : "not a reply");
	return m->reply->migrate_reply;
}

/* The migration's Error; its text in text. */
static void migration_failed(struct migration *m, char *text, size_t len)
{
	pthread_join(m->thread, NULL);
	cr_assert_eq(m->ret, 0);
	cr_assert_eq(m->reply->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "the migration should fail");
	snprintf(text, len, "%s", m->reply->error->message);
}

struct vm_at {
	const struct test_server *srv;
	const char *vm;
};

static bool sending(void *arg)
{
	const struct vm_at *at = arg;
	Memsrv__ServerMessage *m = ctl_info_ok(at->srv, at->vm);
	bool yes = m->vm_info->migration && !strcmp(m->vm_info->migration, "sending");
	memsrv__server_message__free_unpacked(m, NULL);
	return yes;
}

/* Waits until the destination accepted the migration, as an operator
 * waits for memsrv-ctl info VM to say so before QEMU's own migrate. */
static void wait_sending(const struct node *from, const char *vm)
{
	struct vm_at at = { &from->srv, vm };
	cr_assert(wait_until(sending, &at, 10000), "VM %s's migration was accepted", vm);
}

static bool converged(void *arg)
{
	const struct vm_at *at = arg;
	Memsrv__ServerMessage *m = ctl_info_ok(at->srv, at->vm);
	const Memsrv__VmInfo *i = m->vm_info;
	bool yes = i->migration && !strcmp(i->migration, "sending") &&
		   (i->migration_round >= 2 || i->migration_pages_left < 1024);
	memsrv__server_message__free_unpacked(m, NULL);
	return yes;
}

/* Waits until the first pass went and little is left, as tooling waits
 * before the VMM's own migration stops the guest. */
static void wait_converged(const struct node *from, const char *vm)
{
	struct vm_at at = { &from->srv, vm };
	cr_assert(wait_until(converged, &at, 30000), "VM %s's first pass went", vm);
}

static void migration_free(struct migration *m)
{
	if (m->reply)
		memsrv__server_message__free_unpacked(m->reply, NULL);
}

static void cmd_ok(struct test_sim *sim, const char *cmd)
{
	struct sim_reply r;
	sim_cmd(sim, cmd, &r);
	cr_assert(r.ok, "vmsim %s: %s: %s", sim->name, cmd, r.error);
}

Test(migrate, a_vm_written_during_its_migration_arrives_with_every_page_as_last_written)
{
	struct node a, b;
	node_start(&a);
	node_start(&b);
	char dir[64], cmd[128];
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-migrate.XXXXXX"));
	struct test_sim src, dst;
	sim_start(&src, &a.srv, "vm1", "--size", "64M", "--verify", NULL);
	sim_start(&dst, &b.srv, "vm1", "--size", "64M", "--incoming", "--verify", NULL);
	/* some of it stored compressed, the rest resident */
	Memsrv__ServerMessage *ev = ctl_evict_ok(&a.srv, "vm1", 16 << 20, false);
	memsrv__server_message__free_unpacked(ev, NULL);

	struct migration m;
	migration_start(&m, &a, &b, "vm1");
	wait_sending(&a, "vm1");
	/* a snapshot would lift the write-protection the migration relies on */
	Memsrv__ServerMessage *sn = NULL;
	cr_assert_eq(ctl_snapshot(a.srv.sock, "vm1", dir, &sn), 0);
	cr_assert_eq(sn->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "a snapshot is refused while the VM migrates");
	cr_assert(strstr(sn->error->message, "migrating to another node"), "%s", sn->error->message);
	memsrv__server_message__free_unpacked(sn, NULL);
	for (int i = 0; i < 4; i++) {
		cmd_ok(&src, "write 0.2");  /* pages sent already, written again */
		usleep(50 * 1000);
	}
	wait_converged(&a, "vm1");
	snprintf(cmd, sizeof cmd, "save %s", dir);
	cmd_ok(&src, cmd);
	cmd_ok(&src, "migrated");
	cr_assert_eq(wait_exit(src.pid), 0, "the source VMM leaves once the destination holds every page");
	const Memsrv__MigrateReply *r = migration_done(&m);
	cr_assert_eq(r->pages, 16384);
	cr_assert_geq(r->pages_sent, r->pages);
	cr_assert_geq(r->rounds, 1);
	cr_assert_gt(r->resent_pages, 0, "pages written after they were sent went again");
	cr_assert_lt(r->bytes_sent, 64ull << 20, "zero pages cost nothing, the rest goes compressed");
	cr_log_info("migrated 64 MiB: %lu bytes, %lu pages sent, %u rounds, %lu resent, %lu after the stop",
		    (unsigned long)r->bytes_sent, (unsigned long)r->pages_sent, r->rounds, (unsigned long)r->resent_pages,
		    (unsigned long)r->final_pages);
	migration_free(&m);

	snprintf(cmd, sizeof cmd, "expect %s", dir);
	cmd_ok(&dst, cmd);
	sim_expect_verified(&dst, 16384);
	cmd_ok(&dst, "write 0.1");  /* an ordinary VM now */
	sim_quit_verified(&dst, 16384);
	cr_assert_eq(ctl_vm_count(&a.srv), 0, "the source node no longer lists the VM");
	cr_assert(server_log_has(&b.srv, "migrated in from"));
	scratch_remove(dir);
	server_stop(&a.srv);
	server_stop(&b.srv);
}

Test(migrate, a_destination_reading_while_the_last_pages_stream_pulls_what_its_faults_wait_on)
{
	struct node a, b;
	node_start(&a);
	node_start(&b);
	char dir[64], cmd[128];
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-migrate.XXXXXX"));
	struct test_sim src, dst;
	sim_start(&src, &a.srv, "vm2", "--size", "256M", "--verify", NULL);
	sim_start(&dst, &b.srv, "vm2", "--size", "256M", "--incoming", "--verify", "--pattern", "random", "--ops",
		  "3000", NULL);
	snprintf(cmd, sizeof cmd, "save %s", dir);
	cmd_ok(&src, cmd);
	struct migration m;
	migration_start(&m, &a, &b, "vm2");
	wait_sending(&a, "vm2");
	/* the VMM stops the VM at once: most pages go after the stop, and the
	 * destination's guest reads them meanwhile */
	sim_send(&src, "migrated");
	snprintf(cmd, sizeof cmd, "expect %s", dir);
	cmd_ok(&dst, cmd);
	cmd_ok(&dst, "run");  /* random pages: most far ahead of the stream */
	sim_expect_verified(&dst, 65536);
	struct sim_reply sr;
	sim_wait_reply(&src, "migrated", &sr);
	cr_assert(sr.ok, "%s", sr.error);
	cr_assert_eq(wait_exit(src.pid), 0);
	const Memsrv__MigrateReply *r = migration_done(&m);
	cr_assert_gt(r->final_pages, 0);
	cr_assert_gt(r->pulled_pages, 0, "faults at the destination asked for their pages ahead of the stream");
	cr_assert(server_log_has(&b.srv, "pulled pages come from"), "they came on a connection of their own");
	cr_assert_gt(r->pull_wait_p50_ns, 0);
	cr_assert_geq(r->pull_wait_p99_ns, r->pull_wait_p50_ns);
	cr_log_info("pulled %lu pages, waits p50 %lu us p99 %lu us", (unsigned long)r->pulled_pages,
		    (unsigned long)r->pull_wait_p50_ns / 1000, (unsigned long)r->pull_wait_p99_ns / 1000);
	migration_free(&m);
	sim_quit_verified(&dst, 65536);
	scratch_remove(dir);
	server_stop(&a.srv);
	server_stop(&b.srv);
}

struct log_wait {
	const struct test_server *srv;
	const char *needle;
};

static bool log_has(void *arg)
{
	const struct log_wait *w = arg;
	return server_log_has(w->srv, w->needle);
}

/* Migrates a 64M VM that writes meanwhile, breaks it with breaker, and
 * checks that the source VM ran on whole: every page as last written. */
static void source_survives(void (*breaker)(struct node *b, struct test_sim *dst), const char *expect_why)
{
	struct node a, b;
	node_start(&a);
	node_start(&b);
	struct test_sim src, dst;
	sim_start(&src, &a.srv, "vm3", "--size", "64M", "--verify", NULL);
	sim_start(&dst, &b.srv, "vm3", "--size", "64M", "--incoming", NULL);
	struct migration m;
	migration_start(&m, &a, &b, "vm3");
	wait_sending(&a, "vm3");
	cmd_ok(&src, "write 0.2");
	breaker(&b, &dst);
	char text[512];
	migration_failed(&m, text, sizeof text);
	cr_assert(strstr(text, expect_why) && strstr(text, b.listen), "the error says why: %s", text);
	migration_free(&m);
	cmd_ok(&src, "write 0.3");  /* runs on, every page writable */
	sim_expect_verified(&src, 16384);
	cr_assert(server_log_has(&a.srv, "the VM runs on here, whole"));
	sim_quit_verified(&src, 16384);
	server_stop(&a.srv);
	if (server_alive(&b.srv))
		server_stop(&b.srv);
}

static void kill_destination_memsrv(struct node *b, struct test_sim *dst)
{
	kill(b->srv.pid, SIGKILL);
	waitpid(b->srv.pid, NULL, 0);
	sim_kill(dst);
}

static void kill_destination_vmm(struct node *b, struct test_sim *dst)
{
	(void)b;
	sim_kill(dst);  /* QEMU cancelling: the destination's VMM goes */
}

Test(migrate, a_destination_memsrv_killed_mid_way_leaves_the_source_vm_running_and_whole)
{
	source_survives(kill_destination_memsrv, "destination");
}

Test(migrate, a_destination_vmm_gone_mid_way_leaves_the_source_vm_running_and_whole)
{
	source_survives(kill_destination_vmm, "destination");
}

Test(migrate, a_destination_without_the_vm_or_of_another_layout_refuses_and_harms_nothing)
{
	struct node a, b;
	node_start(&a);
	node_start(&b);
	struct test_sim src, other;
	sim_start(&src, &a.srv, "vm4", "--size", "16M", "--verify", NULL);
	struct migration m;
	char text[512];
	migration_start(&m, &a, &b, "vm4");
	migration_failed(&m, text, sizeof text);
	cr_assert(strstr(text, "no VM named vm4"), "%s", text);
	migration_free(&m);

	sim_start(&other, &b.srv, "vm4", "--size", "32M", "--incoming", NULL);
	migration_start(&m, &a, &b, "vm4");
	migration_failed(&m, text, sizeof text);
	cr_assert(strstr(text, "region 0 differs"), "%s", text);
	migration_free(&m);
	sim_kill(&other);

	sim_expect_verified(&src, 4096);
	cmd_ok(&src, "write 0.5");
	sim_quit_verified(&src, 4096);
	server_stop(&a.srv);
	server_stop(&b.srv);
}

Test(migrate, a_vmm_saying_migrated_without_a_migration_is_refused_and_keeps_every_page)
{
	struct test_server s;
	server_start(&s);
	struct test_sim sim;
	sim_start(&sim, &s, "vm5", "--size", "16M", "--verify", NULL);
	Memsrv__ServerMessage *ev = ctl_evict_ok(&s, "vm5", 0, true);
	memsrv__server_message__free_unpacked(ev, NULL);
	struct sim_reply r;
	sim_cmd(&sim, "migrated", &r);
	cr_assert(!r.ok && strstr(r.error, "is not migrating"), "%s", r.error);
	sim_expect_verified(&sim, 4096);
	sim_quit_verified(&sim, 4096);
	server_stop(&s);
}

static bool vm_listed(void *arg)
{
	return ctl_vm_count(arg) == 1;
}

Test(migrate, a_source_memsrv_killed_mid_way_resumes_its_vm_whole_and_a_second_migration_completes)
{
	char state[64], dir[64], cmd[128];
	cr_assert(scratch_make(state, sizeof state, "/tmp/memsrv-migrate-state.XXXXXX"));
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-migrate.XXXXXX"));
	struct node a, b;
	const char *a_opts[] = { "--state-dir", state, NULL };
	server_start_with(&a.srv, a_opts);
	node_start(&b);
	struct test_sim src, dst;
	sim_start(&src, &a.srv, "vm6", "--size", "64M", "--verify", NULL);
	sim_start(&dst, &b.srv, "vm6", "--size", "64M", "--incoming", "--verify", NULL);
	Memsrv__ServerMessage *ev = ctl_evict_ok(&a.srv, "vm6", 16 << 20, false);
	memsrv__server_message__free_unpacked(ev, NULL);

	struct migration m;
	migration_start(&m, &a, &b, "vm6");
	wait_sending(&a, "vm6");
	cmd_ok(&src, "write 0.2");
	server_crash_and_restart(&a.srv, a_opts);
	pthread_join(m.thread, NULL);
	cr_assert(m.ret < 0 || m.reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR,
		  "the migration did not complete: its requester hears so");
	migration_free(&m);
	cr_assert(wait_until(vm_listed, &a.srv, 10000), "the source VM resumed on the restarted memsrv");
	struct log_wait again = { &b.srv, "waits for another source" };
	cr_assert(wait_until(log_has, &again, 10000), "the destination dropped what came and waits");
	cmd_ok(&src, "write 0.2");
	sim_expect_verified(&src, 16384);  /* whole, every page writable */

	migration_start(&m, &a, &b, "vm6");
	wait_sending(&a, "vm6");
	cmd_ok(&src, "write 0.1");
	snprintf(cmd, sizeof cmd, "save %s", dir);
	cmd_ok(&src, cmd);
	cmd_ok(&src, "migrated");
	cr_assert_eq(wait_exit(src.pid), 0);
	migration_done(&m);
	migration_free(&m);
	snprintf(cmd, sizeof cmd, "expect %s", dir);
	cmd_ok(&dst, cmd);
	sim_quit_verified(&dst, 16384);
	server_stop(&a.srv);
	server_stop(&b.srv);
	scratch_remove(dir);
	scratch_remove(state);
}

Test(migrate, two_vms_of_one_base_image_cost_the_wire_the_image_once)
{
	struct node a, b;
	node_start(&a);
	node_start(&b);
	char dir[2][64], cmd[256];
	uint64_t bytes[2], shared[2], offered[2];
	struct test_sim dst[2];
	for (int i = 0; i < 2; i++) {
		char name[8], seed[8];
		snprintf(name, sizeof name, "twin%d", i);
		snprintf(seed, sizeof seed, "%d", 7 + i);
		cr_assert(scratch_make(dir[i], sizeof dir[i], "/tmp/memsrv-migrate.XXXXXX"));
		struct test_sim src;
		/* 80% of the content is the base image both share */
		sim_start(&src, &a.srv, name, "--size", "32M", "--private-pct", "20", "--seed", seed, "--verify", NULL);
		sim_start(&dst[i], &b.srv, name, "--size", "32M", "--private-pct", "20", "--seed", seed, "--incoming",
			  "--verify", NULL);
		struct migration m;
		migration_start(&m, &a, &b, name);
		wait_converged(&a, name);
		snprintf(cmd, sizeof cmd, "save %s", dir[i]);
		cmd_ok(&src, cmd);
		cmd_ok(&src, "migrated");
		cr_assert_eq(wait_exit(src.pid), 0);
		const Memsrv__MigrateReply *r = migration_done(&m);
		bytes[i] = r->bytes_sent;
		shared[i] = r->shared_pages;
		offered[i] = r->offered_pages;
		migration_free(&m);
		cr_log_info("%s: %lu bytes, %lu offered, %lu held there already", name, (unsigned long)bytes[i],
			    (unsigned long)offered[i], (unsigned long)shared[i]);
	}
	/* the first VM's pages wait in the destination's store when the second
	 * one's are offered: the base image goes once */
	cr_assert_gt(offered[1], 0);
	cr_assert_geq(shared[1] * 10, offered[1] * 7, "the base image's pages were held there already");
	cr_assert_lt(bytes[1] * 2, bytes[0], "the second VM cost the wire less than half of the first");
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof cmd, "expect %s", dir[i]);
		cmd_ok(&dst[i], cmd);
		sim_quit_verified(&dst[i], 8192);
		scratch_remove(dir[i]);
	}
	server_stop(&a.srv);
	server_stop(&b.srv);
}

/* Maps the memfd of process pid's guest RAM (the first memfd among its
 * fds) into this process; *len gets its size. */
static void *map_guest_ram(pid_t pid, size_t *len)
{
	for (int fd = 3; fd < 64; fd++) {
		char path[64], target[128];
		snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
		ssize_t n = readlink(path, target, sizeof target - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (!strstr(target, "memfd:"))
			continue;
		int own = open(path, O_RDONLY | O_CLOEXEC);
		cr_assert_geq(own, 0);
		*len = (size_t)lseek(own, 0, SEEK_END);
		void *p = mmap(NULL, *len, PROT_READ, MAP_SHARED, own, 0);
		close(own);
		cr_assert_neq(p, MAP_FAILED);
		return p;
	}
	cr_assert_fail("no memfd in process %d", (int)pid);
	return NULL;
}

Test(migrate, another_process_mapping_the_ram_mid_way_ends_the_migration_and_the_vm_stays_whole)
{
	struct node a, b;
	node_start(&a);
	node_start(&b);
	struct test_sim src, dst;
	sim_start(&src, &a.srv, "vm7", "--size", "64M", "--verify", NULL);
	sim_start(&dst, &b.srv, "vm7", "--size", "64M", "--incoming", NULL);
	struct migration m;
	migration_start(&m, &a, &b, "vm7");
	wait_sending(&a, "vm7");
	size_t len;
	void *view = map_guest_ram(src.pid, &len);  /* its writes through here could not be caught */
	char text[512];
	migration_failed(&m, text, sizeof text);
	cr_assert(strstr(text, "another process maps"), "%s", text);
	migration_free(&m);
	munmap(view, len);
	cmd_ok(&src, "write 0.3");
	sim_expect_verified(&src, 16384);
	sim_quit_verified(&src, 16384);
	sim_kill(&dst);
	server_stop(&a.srv);
	server_stop(&b.srv);
}
