/* child_vmm: a child process of the test's own, most often a VMM. */
#include "child_vmm.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

void child_fork(struct test_child *v, child_main *main, void *arg)
{
	int cmd[2], ans[2];
	cr_assert_eq(pipe(cmd), 0);
	cr_assert_eq(pipe(ans), 0);
	v->pid = fork();
	cr_assert_geq(v->pid, 0);
	if (v->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(cmd[1]);
		close(ans[0]);
		main(arg, cmd[0], ans[1]);
		_exit(127);  /* main must not return */
	}
	close(cmd[0]);
	close(ans[1]);
	v->cmd = cmd[1];
	v->ans = ans[0];
}

bool child_vmm_wait_ready(struct test_child *v, struct child_ready *r, int timeout_ms)
{
	memset(r, 0, sizeof *r);
	return read_full(v->ans, r, sizeof *r, timeout_ms);
}

int child_kill(struct test_child *v)
{
	kill(v->pid, SIGKILL);
	int status = wait_exit(v->pid);
	v->pid = 0;
	close(v->cmd);
	close(v->ans);
	return status;
}

static void say_failed(int ans, int err, const char *what)
{
	struct child_ready r = { .err = err, .memfd = -1 };
	snprintf(r.why, sizeof r.why, "%s: %s (%s)", what, strerror(-err), memsrv_last_error());
	write_full(ans, &r, sizeof r);
	_exit(1);
}

void child_guest_map(struct guest *g, int ans, const char *name, size_t size, bool huge)
{
	int ret = guest_try_map(g, name, size, huge);
	if (ret)
		say_failed(ans, ret, "guest RAM");
}

void child_guest_attach(struct guest *g, int ans, const char *sock, const char *name,
			const struct memsrv_vm *settings)
{
	int ret = guest_try_attach(g, sock, name, settings);
	if (ret)
		say_failed(ans, ret, "attach");
}

void child_say_ready(int ans, const struct guest *g)
{
	struct child_ready r = { .memfd = g->fd, .base = (uint64_t)(uintptr_t)g->mem };
	write_full(ans, &r, sizeof r);
}

bool read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	for (size_t got = 0; got < len;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, timeout_ms) != 1)
			return false;
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return true;
}

void write_full(int fd, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);
		if (n <= 0)
			_exit(3);
		done += (size_t)n;
	}
}
