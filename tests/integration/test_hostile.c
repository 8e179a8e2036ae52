/* Description: one client must not stall or lock out the rest.  A VMM that
 * never reads its session does not hold up the server; group members holding
 * connections cannot take the fds root and attaches need, and every refusal
 * comes with its reason; client strings cannot forge log lines and repeated
 * refusals do not flood the log; a VMM cannot pass off another process's
 * userfaultfd or memfd as its own. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "child_vmm.h"
#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "memsrv.h"
#include "raw_vmm.h"
#include "wire.h"

#define GROUP 4242        /* a gid no one has: the test gives it to its children */
#define MEMBER_UID 60001  /* members are 60001, 60002, ...: uids no one uses */
#define NOBODY 65534
#define MIB (1ull << 20)

static struct test_server srv;

static void teardown(void)
{
	server_stop(&srv);
}

TestSuite(hostile, .fini = teardown, .timeout = 240);

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Becomes uid with the socket's group (or none), or exits 77. */
static void become(uid_t uid, bool member)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	gid_t groups[1] = { GROUP };
	if (setgroups(member ? 1 : 0, groups) || setgid(member ? GROUP : NOBODY) || setuid(uid))
		_exit(77);
}

static void open_socket_dir(void)
{
	cr_assert_eq(chmod(srv.dir, 0755), 0, "the socket's directory is the operator's to open");
}

static int wait_child(pid_t pid)
{
	int status = wait_exit(pid);
	if (status == 77)
		cr_skip_test("cannot change uid here");
	return status;
}

/* ---- a VMM of the test's own: memfd guest RAM through libmemsrv ---- */

static uint64_t last_target;

static int on_balloon(void *opaque, uint64_t target)
{
	(void)opaque;
	last_target = target;
	return 0;
}

/* Every byte 0x5a: what the VMM writes before it attaches and checks last. */
static uint64_t word_5a(size_t page, size_t w, uint64_t gen)
{
	(void)page;
	(void)w;
	(void)gen;
	return 0x5a5a5a5a5a5a5a5aull;
}

struct vmm_args {
	const char *name;
	size_t size;
};

/* Attaches name (size bytes), says so (or why not), then waits for 'r':
 * reads every message the server sent until it is quiet for a second and
 * answers with the last balloon target it saw.  Until then it never reads
 * its session. */
static void vmm_main(void *arg, int cmd, int ans)
{
	const struct vmm_args *a = arg;
	struct guest g;
	child_guest_map(&g, ans, a->name, a->size, false);
	pattern_fill(g.mem, 0, a->size / GUEST_PAGE, word_5a, 0);
	child_guest_attach(&g, ans, srv.sock, a->name, &(struct memsrv_vm){ .flags = MEMSRV_VM_NO_RECONNECT });
	child_say_ready(ans, &g);
	char c;
	if (read(cmd, &c, 1) != 1)
		_exit(0);
	struct memsrv_vmm_ops ops = { .balloon_target = on_balloon };
	struct pollfd p = { .fd = memsrv_session_fd(g.s), .events = POLLIN };
	while (poll(&p, 1, 1000) > 0)
		if (memsrv_session_dispatch(g.s, &ops, NULL) < 0)
			break;
	char line[64];
	snprintf(line, sizeof line, "%llu\n", (unsigned long long)last_target);
	if (write(ans, line, strlen(line)) < 0)
		_exit(6);
	_exit(pattern_count_bad(g.mem, 0, a->size / GUEST_PAGE, word_5a, 0) ? 7 : 0);
}

/* Starts a VMM child and returns what it said of its attach: "ok", or why not. */
static void vmm_start(struct test_child *v, const char *name, size_t size, char *said, size_t len)
{
	struct vmm_args a = { name, size };
	child_fork(v, vmm_main, &a);
	struct child_ready r;
	if (!child_vmm_wait_ready(v, &r, 60000))
		snprintf(said, len, "%s", "");
	else
		snprintf(said, len, "%s", r.err ? r.why : "ok");
}

/* ---- 1. a VMM that never reads ---- */

Test(hostile, a_vmm_that_never_reads_stalls_no_one)
{
	server_start(&srv);
	struct test_child deaf;
	char said[600];
	vmm_start(&deaf, "deaf", 8 * MIB, said, sizeof said);
	cr_assert_str_eq(said, "ok");

	/* far more requests than its socket holds: each is answered at once,
	 * and a target not yet sent is replaced by the next */
	double start = now_s();
	uint64_t target = 0;
	for (unsigned i = 0; i < 800; i++) {
		target = (1 + i % 7) * MIB + (i % 64) * 4096;
		Memsrv__ServerMessage *m = NULL;
		int ret = ctl_balloon(srv.sock, "deaf", target, &m);
		cr_assert(ret == 0 && m, "balloon request %u: %s", i, strerror(-ret));
		cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_BALLOON_REPLY, "balloon request %u refused: %s", i,
			     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "?");
		memsrv__server_message__free_unpacked(m, NULL);
		cr_assert_lt(now_s() - start, 30, "%u balloon requests took 30 s: the server waits on the VMM", i + 1);
	}

	double t = now_s();
	cr_assert_eq(ctl_vm_count(&srv), 1);
	cr_assert_lt(now_s() - t, 3, "list waited %.1f s", now_s() - t);
	t = now_s();
	struct test_sim other;
	sim_start(&other, &srv, "other", "--size", "8M", "--verify", NULL);
	cr_assert_lt(now_s() - t, 3, "a new attach waited %.1f s", now_s() - t);

	/* now it reads: the last target is what it finds */
	cr_assert_eq(write(deaf.cmd, "r", 1), 1);
	char got[64];
	ssize_t n = read(deaf.ans, got, sizeof got - 1);
	cr_assert_gt(n, 0);
	got[n] = 0;
	cr_assert_eq(strtoull(got, NULL, 10), target, "the VMM read target %s, the last sent was %llu", got,
		     (unsigned long long)target);
	cr_assert_eq(wait_exit(deaf.pid), 0, "the VMM's memory changed");
	close(deaf.cmd);
	close(deaf.ans);
	sim_quit_verified(&other, 2048);
}

/* ---- 2. fds: members holding connections, root's reserve, reasons ---- */

#define HOLD 300

/* What one member's connections came to. */
struct held {
	unsigned open, refused_emfile, refused_other, unanswered;
	int other_errno;
};

/* A member that opens HOLD connections and holds them; on 'c' it counts
 * which were refused (and why) and reports, then holds on until killed. */
static void member_main(void *uid, int cmd, int ans)
{
	become((uid_t)(uintptr_t)uid, true);
	static int fds[HOLD];
	for (unsigned i = 0; i < HOLD; i++)
		fds[i] = ctl_connect(srv.sock);
	char c;
	if (write(ans, "h", 1) != 1 || read(cmd, &c, 1) != 1)
		_exit(1);
	struct held h = { 0 };
	for (unsigned i = 0; i < HOLD; i++) {
		struct pollfd p = { .fd = fds[i], .events = POLLIN };
		if (fds[i] < 0 || poll(&p, 1, 0) == 0) {
			h.open += fds[i] >= 0;
			continue;
		}
		Memsrv__ServerMessage *m = NULL;
		int ret = wire_recv_server(fds[i], &m, NULL);
		if (ret == -ECONNRESET)
			ret = wire_recv_server(fds[i], &m, NULL);
		int err = answer_errno(ret == 1 ? 0 : -1, m);
		if (err < 0)
			h.unanswered++;
		else if (err == EMFILE)
			h.refused_emfile++;
		else {
			h.refused_other++;
			h.other_errno = err;
		}
		close(fds[i]);
	}
	if (write(ans, &h, sizeof h) != sizeof h)
		_exit(2);
	pause();
	_exit(0);
}

static void member_start(struct test_child *mb, uid_t uid)
{
	child_fork(mb, member_main, (void *)(uintptr_t)uid);
	char c;
	if (read(mb->ans, &c, 1) != 1)
		cr_skip_test("cannot become uid %d here", uid);
}

/* Runs memsrv-ctl ARGS as a member uid; returns its exit status and output. */
static int ctl_as(uid_t uid, bool member, char *out, size_t len, const char *cmd)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		become(uid, member);
		dup2(p[1], 1);
		dup2(p[1], 2);
		const char *ctl = getenv("CTL_BIN");
		execl(ctl, ctl, "--socket", srv.sock, cmd, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	size_t got = 0;
	ssize_t n;
	while (got < len - 1 && (n = read(p[0], out + got, len - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = 0;
	close(p[0]);
	return wait_child(pid);
}

Test(hostile, members_holding_connections_leave_room_for_root)
{
	static const char *const opts[] = { "--socket-group", "4242", "--max-sessions-per-uid", "300", NULL };
	server_start_nofile(&srv, opts, 1024);
	open_socket_dir();
	struct test_child mb[5];
	for (unsigned i = 0; i < 5; i++)
		member_start(&mb[i], MEMBER_UID + i);

	/* root is served while members hold every fd they may: its list, its
	 * stats and its attach */
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_list(srv.sock, &m);
	cr_assert_eq(answer_errno(ret, m), 0, "root's list was refused");
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->fd_limit, 1024);
	cr_assert_gt(st->connections_open, 500);
	cr_assert_leq(st->fds_open, 1024);
	memsrv__server_message__free_unpacked(m, NULL);
	struct test_child vmm;
	char said[600];
	vmm_start(&vmm, "rootvm", 8 * MIB, said, sizeof said);
	cr_assert_str_eq(said, "ok", "root's attach failed: %s", said);

	/* every connection memsrv did not keep was told why */
	unsigned open = 0, emfile = 0;
	for (unsigned i = 0; i < 5; i++) {
		struct held h;
		cr_assert_eq(write(mb[i].cmd, "c", 1), 1);
		cr_assert_eq(read(mb[i].ans, &h, sizeof h), (ssize_t)sizeof h);
		cr_assert_eq(h.unanswered, 0, "uid %d: %u connections closed without a reason", MEMBER_UID + i,
			     h.unanswered);
		cr_assert_eq(h.refused_other, 0, "uid %d: %u connections refused with %s, not EMFILE", MEMBER_UID + i,
			     h.refused_other, strerror(h.other_errno));
		open += h.open;
		emfile += h.refused_emfile;
	}
	cr_assert_gt(emfile, 0, "memsrv took all %u connections with 1024 fds", open);
	cr_assert_gt(open, 500, "only %u member connections were let in", open);

	/* a member's memsrv-ctl says why, not "Broken pipe" */
	char out[1024];
	int status = ctl_as(MEMBER_UID + 5, true, out, sizeof out, "list");
	cr_assert_neq(status, 0, "a member was let in past the budget: %s", out);
	cr_assert(strstr(out, "file descriptors"), "memsrv-ctl said: %s", out);
	cr_assert(!strstr(out, "not a member") && !strstr(out, "Broken pipe"), "memsrv-ctl said: %s", out);
	/* and a member's attach */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		become(MEMBER_UID + 5, true);
		struct test_child late;
		vmm_start(&late, "late", 1 * MIB, out, sizeof out);
		wait_exit(late.pid);
		_exit(strstr(out, "file descriptors") ? 0 : 1);
	}
	cr_assert_eq(wait_child(pid), 0, "a member's attach past the budget failed without the reason");

	for (unsigned i = 0; i < 5; i++)
		child_kill(&mb[i]);
	cr_assert_eq(write(vmm.cmd, "r", 1), 1);
	cr_assert_gt(read(vmm.ans, said, sizeof said), 0);
	cr_assert_eq(wait_exit(vmm.pid), 0);
}

static bool list_answers(void *arg)
{
	(void)arg;
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_list(srv.sock, &m);
	return answer_errno(ret, m) == 0;
}

Test(hostile, accept_answers_even_when_memsrv_is_out_of_fds)
{
	/* a budget of root's own connections: the fds run out for real */
	server_start_nofile(&srv, NULL, 64);
	int fds[80];
	unsigned n = 0;
	for (; n < 80; n++)
		fds[n] = ctl_connect(srv.sock);
	unsigned answered = 0, silent = 0;
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_list(srv.sock, &m);  /* everything before it was accepted or answered */
	int err = answer_errno(ret, m);
	cr_assert(err == 0 || err == EMFILE, "list: %d", err);
	for (unsigned i = 0; i < n; i++) {
		struct pollfd p = { .fd = fds[i], .events = POLLIN };
		if (poll(&p, 1, 0) == 0)
			continue;
		ret = wire_recv_server(fds[i], &m, NULL);
		if (ret == -ECONNRESET)
			ret = wire_recv_server(fds[i], &m, NULL);
		if (answer_errno(ret == 1 ? 0 : -1, m) == EMFILE)
			answered++;
		else
			silent++;
	}
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
	cr_assert_gt(answered, 0, "no connection was refused at 64 fds");
	cr_assert_eq(silent, 0, "%u connections were closed without the reason", silent);
	cr_assert(wait_until(list_answers, NULL, 5000), "memsrv did not recover once the connections closed");
}

Test(hostile, root_is_not_held_to_the_per_uid_limit)
{
	static const char *const opts[] = { "--socket-group", "4242", "--max-sessions-per-uid", "2", NULL };
	server_start_with(&srv, opts);
	open_socket_dir();
	expect_root_served_holding(&srv, 3);

	/* a member is: and its client reads the reason, not "Broken pipe" */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		become(MEMBER_UID, true);
		int x = ctl_connect(srv.sock), y = ctl_connect(srv.sock), z = ctl_connect(srv.sock);
		if (x < 0 || y < 0 || z < 0)
			_exit(10);
		/* the refusal has arrived and memsrv closed z: a request sent now
		 * fails with EPIPE, and the answer is still there to read */
		struct pollfd p = { .fd = z, .events = POLLRDHUP };
		if (poll(&p, 1, 10000) != 1)
			_exit(11);
		struct ctl_req req;
		ctl_build_list(&req);
		Memsrv__ServerMessage *m = NULL;
		int ret = ctl_call(z, &req.msg, &m);
		if (ret < 0)
			_exit(12);
		_exit(answer_errno(ret, m) == EUSERS ? 0 : 13);
	}
	int status = wait_child(pid);
	cr_assert_eq(status, 0, "check %d failed (12: the client saw a send error, not the reason)", status);
	char out[1024];
	/* and libmemsrv, racing memsrv's refusal, says why too */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		become(MEMBER_UID, true);
		int x = ctl_connect(srv.sock), y = ctl_connect(srv.sock);
		if (x < 0 || y < 0)
			_exit(10);
		for (unsigned i = 0; i < 20; i++) {
			struct test_child v;
			vmm_start(&v, "over", 1 * MIB, out, sizeof out);
			wait_exit(v.pid);
			if (!strstr(out, "--max-sessions-per-uid"))
				_exit(20 + (strstr(out, "Broken pipe") != NULL));
		}
		_exit(0);
	}
	status = wait_child(pid);
	cr_assert_eq(status, 0, "an attach over the limit failed without the reason (%d; 21: Broken pipe)", status);
}

/* ---- 3. names, log injection, warnings that repeat ---- */

static int attach_named(const char *name, char *why, size_t len)
{
	struct test_child v;
	vmm_start(&v, name, 1 * MIB, why, len);
	child_kill(&v);
	return strcmp(why, "ok") ? -1 : 0;
}

Test(hostile, names_start_with_a_letter_or_digit)
{
	server_start(&srv);
	const char *bad[] = { ".", "..", "-", "-x", "_a", ".hidden" };
	char why[600];
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(attach_named(bad[i], why, sizeof why), -1, "name '%s' was accepted", bad[i]);
		cr_assert(strstr(why, "hello.name"), "%s", why);
	}
	cr_assert_eq(attach_named("0k.x-y_z", why, sizeof why), 0, "%s", why);
}

/* A VMM of raw protocol: its own memfd and uffd, registered; the Hello is
 * the caller's to spoil. */
struct raw_vmm {
	int uffd, sock;
	struct guest ram;
};

static void raw_vmm_init(struct raw_vmm *v, size_t size, bool registered)
{
	/* write-protect mode, as libmemsrv registers when the kernel has it */
	v->uffd = raw_uffd(raw_missing_wp);
	int ret = guest_try_map(&v->ram, "raw", size, false);
	cr_assert_eq(ret, 0, "%s", strerror(-ret));
	if (registered)
		raw_register(v->uffd, v->ram.mem, size, raw_missing_wp);
	v->sock = -1;
}

/* Sends a Hello for one region at addr backed by memfd, with uffd; returns the reply. */
static Memsrv__ServerMessage *raw_hello(struct raw_vmm *v, const char *name, int uffd, int memfd, uint64_t addr)
{
	struct raw_hello h;
	raw_hello_init(&h, name, raw_missing_wp, addr, v->ram.size, uffd, memfd);
	v->sock = raw_hello_send(&srv, &h);
	return raw_recv(v->sock);
}

Test(hostile, client_strings_cannot_forge_log_lines)
{
	server_start(&srv);
	char why[600];
	cr_assert_eq(attach_named("x\n2026-01-01T00:00:00.000Z error FORGED by a name", why, sizeof why), -1);
	cr_assert(!server_log_has_line(&srv, "2026-01-01T00:00:00.000Z error FORGED"), "a refused name wrote a line of its own");
	cr_assert(server_log_has(&srv, "x\\x0a2026-01-01T00:00:00.000Z"), "the refused name is not in the log, escaped");

	/* a VMM's own words in a BalloonResult are escaped too */
	struct raw_vmm v;
	raw_vmm_init(&v, 1 * MIB, true);
	Memsrv__ServerMessage *m = raw_hello(&v, "talker", v.uffd, v.ram.fd, (uintptr_t)v.ram.mem);
	expect_hello_reply(m);
	Memsrv__BalloonResult br = MEMSRV__BALLOON_RESULT__INIT;
	br.target_bytes = 4096;
	br.errno_code = EIO;
	br.message = "balloon stuck\n2026-01-01T00:00:00.000Z error FORGED by a balloon\x1b[2J";
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_RESULT;
	msg.balloon_result = &br;
	cr_assert_eq(wire_send_client(v.sock, &msg, NULL, 0), 0);
	cr_assert_eq(ctl_vm_count(&srv), 1);  /* handled by now: one thread reads both */
	cr_assert(server_log_has(&srv, "balloon stuck\\x0a2026-01-01T00:00:00.000Z"), "the BalloonResult message is not in the log, escaped");
	cr_assert(!server_log_has_line(&srv, "2026-01-01T00:00:00.000Z error FORGED"), "a BalloonResult wrote a line of its own");
	cr_assert(!server_log_has(&srv, "\x1b"), "an escape sequence reached the log");
	close(v.sock);
}

/* A Discard whose later range is bad is refused, naming that range, and
 * none of its ranges is applied: the pages memsrv holds stay the guest's. */
Test(hostile, a_discard_batch_with_a_bad_range_applies_none)
{
	server_start(&srv);
	struct raw_vmm v;
	raw_vmm_init(&v, 1 * MIB, true);
	expect_hello_reply(raw_hello(&v, "batch", v.uffd, v.ram.fd, (uintptr_t)v.ram.mem));
	memset(v.ram.mem, 7, 3 * 4096);  /* pages memsrv holds and must not drop */
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "batch", 0, true), NULL);
	uint64_t before = ctl_info_u64(&srv, "batch", offsetof(Memsrv__VmInfo, removed_pages));
	Memsrv__DiscardRange good = MEMSRV__DISCARD_RANGE__INIT, bad = MEMSRV__DISCARD_RANGE__INIT;
	good.host_addr = (uintptr_t)v.ram.mem + 4096;
	good.length = 4096;
	bad.host_addr = (uintptr_t)v.ram.mem + 8192 + 1;  /* not a page */
	bad.length = 4096;
	Memsrv__DiscardRange *more[] = { &good, &bad };
	Memsrv__Discard d = MEMSRV__DISCARD__INIT;
	d.host_addr = (uintptr_t)v.ram.mem;
	d.length = 4096;
	d.n_more = 2;
	d.more = more;
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_DISCARD;
	msg.discard = &d;
	cr_assert_eq(wire_send_client(v.sock, &msg, NULL, 0), 0);
	Memsrv__ServerMessage *m = raw_recv(v.sock);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR);
	cr_assert_eq(m->error->errno_code, EINVAL);
	cr_assert_str_eq(m->error->field, "discard.more[1]");
	memsrv__server_message__free_unpacked(m, NULL);
	/* the VM thread takes its jobs in order: past this one, it saw the Discard's */
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "batch", 0, true), NULL);
	cr_assert_eq(ctl_info_u64(&srv, "batch", offsetof(Memsrv__VmInfo, removed_pages)), before,
		     "a range of the refused Discard was applied");
	cr_assert_eq(v.ram.mem[0], 7, "the first range's page was dropped");
	cr_assert_eq(v.ram.mem[4096], 7, "the good range's page was dropped");
	close(v.sock);
}

struct refusals {
	unsigned n;
};

/* One stranger's connection, refused; true once the log says how many
 * refusal lines it held back. */
static bool refuse_until_suppressed(void *arg)
{
	struct refusals *r = arg;
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		become(NOBODY, false);
		int fd = ctl_connect(srv.sock);
		Memsrv__ServerMessage *m = NULL;
		int ret = fd < 0 ? fd : wire_recv_server(fd, &m, NULL);
		_exit(answer_errno(ret == 1 ? 0 : -1, m) == EACCES ? 0 : 10);
	}
	cr_assert_eq(wait_child(pid), 0, "a stranger was not refused with EACCES");
	r->n++;
	return server_log_has(&srv, "suppressed");
}

Test(hostile, refused_connections_do_not_flood_the_log)
{
	static const char *const opts[] = { "--socket-group", "4242", NULL };
	server_start_with(&srv, opts);
	open_socket_dir();
	cr_assert_eq(chmod(srv.sock, 0666), 0, "strangers reach the socket: memsrv refuses them itself");
	struct refusals r = { 0 };
	for (unsigned i = 0; i < 200; i++)
		refuse_until_suppressed(&r);
	unsigned lines = server_log_count(&srv, "refused connection");
	cr_assert_leq(lines, 20, "%u refusal lines for 200 refused connections", lines);
	/* later, one line says how many were held back */
	cr_assert(wait_until(refuse_until_suppressed, &r, 20000), "no line says how many refusals were suppressed");
}

/* ---- 4. another process's memory ---- */

/* A process that set up guest RAM and its uffd and hands both over. */
struct donor {
	pid_t pid;
	int uffd, memfd;
	uint64_t addr;
};

static void donor_start(struct donor *d, size_t size)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	d->pid = fork();
	cr_assert_geq(d->pid, 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		struct raw_vmm v;
		raw_vmm_init(&v, size, true);
		uint64_t addr = (uintptr_t)v.ram.mem;
		int fds[2] = { v.uffd, v.ram.fd };
		if (wire_send(sv[1], &addr, sizeof addr, fds, 2))
			_exit(1);
		pause();
		_exit(0);
	}
	close(sv[1]);
	char buf[WIRE_MAX_PAYLOAD];
	size_t len;
	int fds[WIRE_MAX_FDS];
	unsigned nfds;
	cr_assert_eq(wire_recv(sv[0], buf, sizeof buf, &len, fds, &nfds, NULL), 1);
	cr_assert_eq(nfds, 2);
	memcpy(&d->addr, buf, sizeof d->addr);
	d->uffd = fds[0];
	d->memfd = fds[1];
	close(sv[0]);
}

static void donor_stop(struct donor *d)
{
	kill(d->pid, SIGKILL);
	wait_exit(d->pid);
	close(d->uffd);
	close(d->memfd);
}

static void expect_refused_naming(Memsrv__ServerMessage *m, const char *field)
{
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "another process's memory was accepted");
	cr_assert_eq(m->error->errno_code, EPERM, "%s", m->error->message);
	cr_assert(m->error->field && !strcmp(m->error->field, field), "field %s: %s", m->error->field,
		  m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
}

Test(hostile, another_process_memfd_is_refused)
{
	server_start(&srv);
	struct donor d;
	donor_start(&d, 1 * MIB);
	/* its uffd and its memfd, at its address, which this process does not map */
	struct raw_vmm v = { .ram.size = 1 * MIB, .sock = -1 };
	Memsrv__ServerMessage *m = raw_hello(&v, "borrowed", d.uffd, d.memfd, d.addr);
	expect_refused_naming(m, "hello.regions[0].host_addr");
	close(v.sock);
	cr_assert_eq(ctl_vm_count(&srv), 0);
	donor_stop(&d);
}

Test(hostile, another_process_uffd_is_refused)
{
	server_start(&srv);
	struct donor d;
	donor_start(&d, 1 * MIB);
	/* its own memory, mapped and registered with a uffd of its own, but
	 * the donor's uffd in the Hello.  Not at the donor's address, which
	 * a fork's twin layout would give it: a process that registered the
	 * same addresses and handed its uffd over cannot be told apart (see
	 * docs/operations.md) */
	void *elsewhere = mmap(NULL, 1 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(elsewhere, MAP_FAILED);
	struct raw_vmm v;
	raw_vmm_init(&v, 1 * MIB, true);
	cr_assert_neq((uintptr_t)v.ram.mem, d.addr);
	Memsrv__ServerMessage *m = raw_hello(&v, "stolen-uffd", d.uffd, v.ram.fd, (uintptr_t)v.ram.mem);
	expect_refused_naming(m, "fds[0]");
	close(v.sock);
	cr_assert_eq(ctl_vm_count(&srv), 0);

	/* the same with its own uffd is accepted */
	m = raw_hello(&v, "own", v.uffd, v.ram.fd, (uintptr_t)v.ram.mem);
	expect_hello_reply(m);
	close(v.sock);
	donor_stop(&d);
}
