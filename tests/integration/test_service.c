/* Description: memsrv under systemd, through the two protocols systemd
 * speaks to a service (no systemd runs here): the notify socket, which
 * hears READY=1 once memsrv listens, STATUS= as VMs come and go, WATCHDOG=1
 * and STOPPING=1; and socket activation, a listening socket passed as fd 3
 * with LISTEN_FDS, which memsrv serves and leaves in place.  And the units
 * memsrv installs, as systemd-analyze verifies them. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

static struct test_server srv;
static struct test_sim sim;
static int notify = -1, listener = -1;
static char dir[64];

static void teardown(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	if (sim.pid > 0)
		sim_kill(&sim);
	if (server_alive(&srv))
		server_stop(&srv);
	if (notify >= 0)
		close(notify);
	if (listener >= 0)
		close(listener);
	notify = listener = -1;
	scratch_remove(dir);
}

TestSuite(service, .fini = teardown, .timeout = 60);

static void bind_unix(int fd, const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	cr_assert_lt(strlen(path), sizeof a.sun_path);
	memcpy(a.sun_path, path, strlen(path) + 1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind %s: %s", path, strerror(errno));
}

/* systemd's end of NOTIFY_SOCKET, for memsrv started after this. */
static void notify_socket_open(void)
{
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-service.XXXXXX"));
	char path[128];
	snprintf(path, sizeof path, "%s/notify", dir);
	notify = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(notify, 0);
	bind_unix(notify, path);
	setenv("NOTIFY_SOCKET", path, 1);
}

/* The next notification within timeout_ms that holds what, or false. */
static bool heard(const char *what, int timeout_ms, char *msg, size_t len)
{
	for (int waited = 0; waited < timeout_ms; waited += 10) {
		struct pollfd p = { .fd = notify, .events = POLLIN };
		if (poll(&p, 1, 10) <= 0)
			continue;
		ssize_t n = recv(notify, msg, len - 1, 0);
		if (n <= 0)
			continue;
		msg[n] = 0;
		if (strstr(msg, what))
			return true;
	}
	return false;
}

Test(service, systemd_hears_ready_then_the_status_as_vms_come_and_go)
{
	notify_socket_open();
	setenv("WATCHDOG_USEC", "400000", 1);
	server_start(&srv);
	char msg[512];
	cr_assert(heard("READY=1", 5000, msg, sizeof msg), "no READY=1 from memsrv");
	cr_assert(strstr(msg, "STATUS=0 VMs attached"), "%s", msg);
	cr_assert(heard("WATCHDOG=1", 2000, msg, sizeof msg), "no WATCHDOG=1 at half of WatchdogSec=");
	sim_start(&sim, &srv, "svc", "--size", "8M", NULL);
	cr_assert(heard("STATUS=1 VM attached", 3000, msg, sizeof msg), "the status did not follow the attach");
	sim_quit_verified(&sim, (8u << 20) / 4096);
	sim.pid = 0;
	cr_assert(heard("STATUS=0 VMs attached", 3000, msg, sizeof msg), "the status did not follow the detach");
	kill(srv.pid, SIGTERM);
	cr_assert(heard("STOPPING=1", 5000, msg, sizeof msg), "no STOPPING=1 on SIGTERM");
	cr_assert_eq(wait_exit(srv.pid), 0);
	srv.pid = 0;
}

/* memsrv as systemd starts it for memsrv.socket: the listening socket is
 * fd 3, LISTEN_FDS=1 and LISTEN_PID its own pid. */
static pid_t start_activated(const char *sock_path, int sock, const char *log)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0 || dup2(fd, 2) < 0 || dup2(sock, 3) < 0)
			_exit(126);
		char pidtext[32];
		snprintf(pidtext, sizeof pidtext, "%d", (int)getpid());
		setenv("LISTEN_PID", pidtext, 1);
		setenv("LISTEN_FDS", "1", 1);
		execl(getenv("MEMSRV_BIN"), "memsrv", "--socket", sock_path, "--log-level", "debug", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int listening_socket(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	bind_unix(fd, path);
	cr_assert_eq(listen(fd, 16), 0);
	return fd;
}

Test(service, a_socket_from_systemd_is_served_and_left_in_place)
{
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-service.XXXXXX"));
	snprintf(srv.dir, sizeof srv.dir, "%s", dir);
	snprintf(srv.sock, sizeof srv.sock, "%s/memsrv.sock", dir);
	snprintf(srv.log, sizeof srv.log, "%s/memsrv.log", dir);
	listener = listening_socket(srv.sock);
	srv.pid = start_activated(srv.sock, listener, srv.log);
	Memsrv__ServerMessage *m = NULL;
	int ret = -1;
	for (int i = 0; i < 500 && ret; i++) {
		ret = ctl_stats(srv.sock, &m);
		if (ret)
			usleep(10000);
	}
	cr_assert_eq(ret, 0, "memsrv does not answer on the socket systemd passed: %s", strerror(-ret));
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert(server_log_has(&srv, "(socket from systemd)"), "memsrv did not take the socket it was passed");
	kill(srv.pid, SIGTERM);
	cr_assert_eq(wait_exit(srv.pid), 0);
	srv.pid = 0;
	struct stat st;
	cr_assert_eq(stat(srv.sock, &st), 0, "memsrv removed systemd's socket");
	/* systemd holds it on: the next memsrv takes the connection waiting */
	int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, srv.sock, strlen(srv.sock) + 1);
	cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0, "systemd's socket stopped listening");
	close(c);
	srv.dir[0] = 0;  /* scratch_remove(dir) takes it */
}

Test(service, a_socket_from_systemd_on_another_path_is_refused_saying_so)
{
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-service.XXXXXX"));
	char path[128], other[128], log[128];
	snprintf(path, sizeof path, "%s/memsrv.sock", dir);
	snprintf(other, sizeof other, "%s/other.sock", dir);
	snprintf(log, sizeof log, "%s/memsrv.log", dir);
	listener = listening_socket(other);
	pid_t pid = start_activated(path, listener, log);
	cr_assert_eq(wait_exit(pid), 1, "memsrv served a socket that is not its --socket");
	char out[1024] = "";
	FILE *f = fopen(log, "r");
	cr_assert(f);
	size_t n = fread(out, 1, sizeof out - 1, f);
	out[n] = 0;
	fclose(f);
	cr_assert(strstr(out, "ListenSequentialPacket="), "memsrv said: %s", out);
	cr_assert(!strstr(out, "cannot listen"), "memsrv said why twice: %s", out);
}

Test(service, the_units_pass_systemd_analyze_verify)
{
	if (access("/usr/bin/systemd-analyze", X_OK))
		cr_skip_test("no systemd-analyze here (package systemd)");
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-service.XXXXXX"));
	/* the service as installed, but for memsrv's path: this build's */
	char bin[PATH_MAX], cmd[2048 + PATH_MAX], out[4096];
	cr_assert(realpath(getenv("MEMSRV_BIN"), bin), "MEMSRV_BIN: %s", strerror(errno));
	snprintf(cmd, sizeof cmd,
		 "sed 's|^ExecStart=[^ ]*|ExecStart=%s|' %s > %s/memsrv.service && cp %s %s/ && "
		 "systemd-analyze verify --man=no %s/memsrv.service %s/memsrv.socket 2>&1",
		 bin, getenv("MEMSRV_SERVICE_UNIT"), dir, getenv("MEMSRV_SOCKET_UNIT"), dir, dir, dir);
	int status = run_capture(cmd, out, sizeof out);
	cr_assert_eq(status, 0, "%s", out);
	cr_assert_eq(out[0], 0, "systemd-analyze verify says: %s", out);
}
