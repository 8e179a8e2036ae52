/* Description: who may use memsrv.  The socket is 0660 with the group
 * --socket-group names; its members read state but cannot steer it; a
 * stranger is refused whatever the socket's mode; a member's uid cannot hold
 * more connections than --max-sessions-per-uid (root is bound by memsrv's
 * fds only).  Each refusal is a clear error,
 * and a VM attached to the same server keeps every page. */
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"
#include "wire.h"

#define GROUP 4242  /* a gid no one has: the test gives it to its child */
#define NOBODY 65534

static struct test_server srv;
static struct test_sim bystander;

static void setup(void)
{
	static const char *const opts[] = { "--socket-group", "4242", "--max-sessions-per-uid", "3", NULL };
	server_start_with(&srv, opts);
	bystander_start(&bystander, &srv, "8M");
}

static void teardown(void)
{
	sim_quit_verified(&bystander, 2048);
	server_stop(&srv);
}

TestSuite(access, .init = setup, .fini = teardown, .timeout = 120);

/* Runs as uid nobody with the given supplementary group (0: none) and
 * exits with a code per check, so the parent can say which one failed. */
static void as_nobody(gid_t group)
{
	gid_t groups[1] = { group };
	if (setgroups(group ? 1 : 0, groups) || setgid(NOBODY) || setuid(NOBODY))
		_exit(77);
	Memsrv__ServerMessage *m = NULL;
	if (!group) {
		/* refused at connect, before any request: read the refusal */
		int fd = ctl_connect(srv.sock);
		struct wire_fault fault;
		int ret = fd < 0 ? fd : wire_recv_server(fd, &m, &fault) == 1 ? 0 : -EPROTO;
		_exit(answer_errno(ret, m) == EACCES ? 0 : 10);
	}
	int ret = ctl_list(srv.sock, &m);
	if (answer_errno(ret, m) != 0)
		_exit(11);  /* a member reads the list */
	ret = ctl_stats(srv.sock, &m);
	if (answer_errno(ret, m) != 0)
		_exit(12);
	ret = ctl_evict(srv.sock, "bystander", 0, true, &m);
	if (answer_errno(ret, m) != EPERM)
		_exit(13);  /* ... but does not steer */
	const char *settings[] = { "limit=4M" };
	ret = ctl_set(srv.sock, "bystander", settings, 1, &m);
	if (answer_errno(ret, m) != EPERM)
		_exit(14);
	ret = ctl_balloon(srv.sock, "bystander", 4 << 20, &m);
	if (answer_errno(ret, m) != EPERM)
		_exit(15);
	ret = ctl_snapshot(srv.sock, "bystander", "/tmp", &m);
	if (answer_errno(ret, m) != EPERM)
		_exit(16);  /* an image holds the guest's memory: the operator's */
	_exit(0);
}

static int run_as_nobody(gid_t group)
{
	cr_assert_eq(chmod(srv.dir, 0755), 0, "the socket's directory is the operator's to open");
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		as_nobody(group);
	int status = wait_exit(pid);
	if (status == 77)
		cr_skip_test("cannot drop privileges to uid %d here", NOBODY);
	return status;
}

Test(access, the_socket_is_0660_with_the_group_named)
{
	struct stat st;
	cr_assert_eq(stat(srv.sock, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0660, "mode %o", st.st_mode & 0777);
	cr_assert_eq(st.st_gid, GROUP);
}

Test(access, a_group_member_reads_state_but_cannot_steer)
{
	int status = run_as_nobody(GROUP);
	cr_assert_eq(status, 0, "check %d failed (11 list, 12 stats, 13 evict, 14 set, 15 balloon, 16 snapshot)", status);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "bystander");
	cr_assert_eq(m->vm_info->limit_bytes, 0, "the refused set changed nothing");
	memsrv__server_message__free_unpacked(m, NULL);
}

Test(access, a_stranger_is_refused_even_through_an_open_socket)
{
	cr_assert_eq(chmod(srv.sock, 0666), 0);
	cr_assert_eq(run_as_nobody(0), 0, "a stranger was let in");
}

/* A member's uid holds at most --max-sessions-per-uid (3) connections; the
 * exit code says which check failed. */
static void member_over_its_sessions(void)
{
	gid_t groups[1] = { GROUP };
	if (setgroups(1, groups) || setgid(NOBODY) || setuid(NOBODY))
		_exit(77);
	int a = ctl_connect(srv.sock), b = ctl_connect(srv.sock), c = ctl_connect(srv.sock);
	if (a < 0 || b < 0 || c < 0)
		_exit(10);
	int d = ctl_connect(srv.sock);
	if (d < 0)
		_exit(11);  /* connect itself succeeds; memsrv answers with the refusal */
	Memsrv__ServerMessage *m = NULL;
	struct wire_fault fault;
	if (wire_recv_server(d, &m, &fault) != 1)
		_exit(12);  /* no answer to the connection over the limit */
	bool why = m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR && m->error->errno_code == EUSERS &&
		   strstr(m->error->message, "--max-sessions-per-uid");
	memsrv__server_message__free_unpacked(m, NULL);
	if (!why)
		_exit(13);
	close(d);
	close(a);
	/* one closed: the next is let in at once, though memsrv may not have
	 * reached the hangup in its loop yet */
	int ret = ctl_list(srv.sock, &m);
	_exit(answer_errno(ret, m) == 0 ? 0 : 14);  /* 14: a freed session slot was not given again */
}

Test(access, one_uid_holds_at_most_its_sessions)
{
	cr_assert_eq(chmod(srv.dir, 0755), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		member_over_its_sessions();
	int status = wait_exit(pid);
	if (status == 77)
		cr_skip_test("cannot drop privileges to uid %d here", NOBODY);
	cr_assert_eq(status, 0, "check %d failed (11-13 the refusal, 14 the freed slot)", status);
}

Test(access, root_is_bound_by_fds_only)
{
	/* the bystander holds one connection of root's: three more are fine */
	expect_root_served_holding(&srv, 3);
}
