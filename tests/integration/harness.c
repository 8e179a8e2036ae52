/* harness: process plumbing shared by the integration tests. */
#include "harness.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl_client.h"

static const char *env_bin(const char *var)
{
	const char *p = getenv(var);
	cr_assert(p && *p, "%s is not set: run the tests with meson test", var);
	return p;
}

static bool socket_ready(const char *path)
{
	int fd = ctl_connect(path);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

void server_start(struct test_server *s)
{
	server_start_with(s, NULL);
}

static void launch(struct test_server *s, const char *const *options);

static rlim_t launch_nofile;  /* 0: memsrv inherits the test's limit */

void server_start_nofile(struct test_server *s, const char *const *options, unsigned long nofile)
{
	launch_nofile = nofile;
	server_start_with(s, options);
	launch_nofile = 0;
}

void server_start_with(struct test_server *s, const char *const *options)
{
	snprintf(s->dir, sizeof s->dir, "/tmp/memsrv-test.XXXXXX");
	cr_assert(mkdtemp(s->dir), "mkdtemp: %s", strerror(errno));
	snprintf(s->sock, sizeof s->sock, "%s/memsrv.sock", s->dir);
	snprintf(s->log, sizeof s->log, "%s/memsrv.log", s->dir);
	launch(s, options);
}

void server_crash_and_restart(struct test_server *s, const char *const *options)
{
	cr_assert(server_alive(s), "memsrv died before it was killed");
	kill(s->pid, SIGKILL);
	cr_assert_eq(wait_exit(s->pid), 128 + SIGKILL);
	launch(s, options);
}

void server_relaunch(struct test_server *s, const char *const *options)
{
	launch(s, options);
}

/* Starts memsrv on s->sock, its log appended to s->log. */
static void launch(struct test_server *s, const char *const *options)
{
	const char *bin = env_bin("MEMSRV_BIN");
	s->pid = fork();
	cr_assert(s->pid >= 0);
	if (s->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);  /* a test that fails leaves no memsrv behind */
		int log = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (log >= 0)
			dup2(log, 2);
		struct rlimit rl = { launch_nofile, launch_nofile };
		if (launch_nofile && setrlimit(RLIMIT_NOFILE, &rl))
			_exit(126);
		const char *argv[32] = { bin, "--socket", s->sock, "--log-level", "debug" };
		int n = 5;
		for (; options && *options && n < 31; options++)
			argv[n++] = *options;
		argv[n] = NULL;
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 500 && !socket_ready(s->sock); i++) {
		cr_assert(server_alive(s), "memsrv exited at start; see %s", s->log);
		usleep(10000);
	}
	cr_assert(socket_ready(s->sock), "memsrv did not listen on %s", s->sock);
}

bool server_alive(struct test_server *s)
{
	int status;
	return s->pid > 0 && waitpid(s->pid, &status, WNOHANG) == 0;
}

/* Counts the lines of the server's log that match, up to at_most. */
static unsigned log_lines(const struct test_server *s, const char *text, bool at_start, unsigned at_most)
{
	FILE *f = fopen(s->log, "r");
	cr_assert(f, "%s: %s", s->log, strerror(errno));
	char line[4096];
	unsigned n = 0;
	while (n < at_most && fgets(line, sizeof line, f))
		n += at_start ? !strncmp(line, text, strlen(text)) : strstr(line, text) != NULL;
	fclose(f);
	return n;
}

bool server_log_has(const struct test_server *s, const char *needle)
{
	return log_lines(s, needle, false, 1) > 0;
}

bool server_log_has_line(const struct test_server *s, const char *prefix)
{
	return log_lines(s, prefix, true, 1) > 0;
}

unsigned server_log_count(const struct test_server *s, const char *needle)
{
	return log_lines(s, needle, false, UINT_MAX);
}

static void dump_log(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	while (f && fgets(line, sizeof line, f))
		fprintf(stderr, "memsrv log: %s", line);
	if (f)
		fclose(f);
}

void server_stop(struct test_server *s)
{
	cr_assert(server_alive(s), "memsrv died during the test");
	kill(s->pid, SIGTERM);
	int status = wait_exit(s->pid);
	s->pid = 0;
	if (status != 0)
		dump_log(s->log);
	cr_assert_eq(status, 0, "memsrv exited with status %d on SIGTERM", status);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
	if (system(cmd)) {
		/* a leftover temp dir is harmless */
	}
}

int wait_exit(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		cr_assert_eq(errno, EINTR);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

#define MAX_ARGS 32

static pid_t spawn(const struct test_server *s, const char *name, bool interactive, int *to, int *from,
		   va_list ap)
{
	const char *argv[MAX_ARGS];
	int n = 0;
	const char *bin = env_bin("VMSIM_BIN");
	argv[n++] = bin;
	argv[n++] = "--socket";
	argv[n++] = s->sock;
	argv[n++] = "--name";
	argv[n++] = name;
	if (interactive)
		argv[n++] = "--interactive";
	for (const char *a; (a = va_arg(ap, const char *)) && n < MAX_ARGS - 1;)
		argv[n++] = a;
	argv[n] = NULL;
	int in[2], out[2];
	if (interactive)
		cr_assert(!pipe2(in, O_CLOEXEC) && !pipe2(out, O_CLOEXEC));
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		/* a test that fails leaves no vmsim behind, not even one whose
		 * fault waits for good on a memsrv that died (an incoming VM's) */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (interactive) {
			dup2(in[0], 0);
			dup2(out[1], 1);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	if (interactive) {
		close(in[0]);
		close(out[1]);
		*to = in[1];
		*from = out[0];
	}
	return pid;
}

pid_t sim_spawn(const struct test_server *s, const char *name, ...)
{
	va_list ap;
	va_start(ap, name);
	pid_t pid = spawn(s, name, false, NULL, NULL, ap);
	va_end(ap);
	return pid;
}

void sim_start(struct test_sim *sim, const struct test_server *s, const char *name, ...)
{
	int to, from;
	va_list ap;
	va_start(ap, name);
	sim->pid = spawn(s, name, true, &to, &from, ap);
	va_end(ap);
	snprintf(sim->name, sizeof sim->name, "%s", name);
	sim->in = fdopen(to, "w");
	sim->out = fdopen(from, "r");
	cr_assert(sim->in && sim->out);
	char line[512];
	while (fgets(line, sizeof line, sim->out)) {
		if (!strncmp(line, "ready", 5))
			return;
		cr_log_info("vmsim %s: %s", name, line);
	}
	cr_assert_fail("vmsim %s exited before ready (status %d)", name, wait_exit(sim->pid));
}

void bystander_start(struct test_sim *sim, const struct test_server *s, const char *size)
{
	sim_start(sim, s, "bystander", "--size", size, "--verify", NULL);
	Memsrv__ServerMessage *m = ctl_evict_ok(s, "bystander", 0, true);
	cr_assert_gt(m->evict_reply->pages_evicted, 0);
	memsrv__server_message__free_unpacked(m, NULL);
}

void sim_send(struct test_sim *sim, const char *cmd)
{
	fprintf(sim->in, "%s\n", cmd);
	fflush(sim->in);
}

void sim_wait_reply(struct test_sim *sim, const char *cmd, struct sim_reply *r)
{
	memset(r, 0, sizeof *r);
	char line[512];
	while (fgets(line, sizeof line, sim->out)) {
		line[strcspn(line, "\n")] = 0;
		if (!strcmp(line, "ok")) {
			r->ok = true;
			return;
		}
		if (!strncmp(line, "error", 5)) {
			snprintf(r->error, sizeof r->error, "%.200s", line);
			return;
		}
		char *sp = strchr(line, ' ');
		if (!sp || r->n == SIM_KV_MAX)
			continue;
		*sp = 0;
		snprintf(r->key[r->n], sizeof r->key[0], "%.63s", line);
		snprintf(r->value[r->n], sizeof r->value[0], "%.127s", sp + 1);
		r->n++;
	}
	snprintf(r->error, sizeof r->error, "vmsim %s closed its output during '%s'", sim->name, cmd);
}

void sim_cmd(struct test_sim *sim, const char *cmd, struct sim_reply *r)
{
	sim_send(sim, cmd);
	sim_wait_reply(sim, cmd, r);
}

unsigned free_loopback_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	cr_assert(fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof sa) &&
		  !getsockname(fd, (struct sockaddr *)&sa, &len));
	close(fd);
	return ntohs(sa.sin_port);
}

uint64_t sim_value(const struct sim_reply *r, const char *key)
{
	for (unsigned i = 0; i < r->n; i++)
		if (!strcmp(r->key[i], key))
			return strtoull(r->value[i], NULL, 0);
	cr_assert_fail("vmsim reply has no %s", key);
	return 0;
}

void sim_expect_verified(struct test_sim *sim, uint64_t pages)
{
	struct sim_reply r;
	sim_cmd(sim, "verify", &r);
	cr_assert(r.ok, "%s", r.error);
	cr_assert_eq(sim_value(&r, "mismatches"), 0, "VM %s lost data", sim->name);
	cr_assert_eq(sim_value(&r, "verified_pages"), pages);
}

int sim_quit(struct test_sim *sim)
{
	fprintf(sim->in, "quit\n");
	fclose(sim->in);
	char line[512];
	while (fgets(line, sizeof line, sim->out))
		cr_log_info("vmsim %s: %s", sim->name, line);
	fclose(sim->out);
	return wait_exit(sim->pid);
}

void sim_quit_verified(struct test_sim *sim, uint64_t pages)
{
	sim_expect_verified(sim, pages);
	int status = sim_quit(sim);
	cr_assert_eq(status, 0, "vmsim %s exited with %d", sim->name, status);
}

void sim_kill(struct test_sim *sim)
{
	kill(sim->pid, SIGKILL);
	wait_exit(sim->pid);
	fclose(sim->in);
	fclose(sim->out);
}

Memsrv__ServerMessage *ctl_info_ok(const struct test_server *s, const char *vm)
{
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_info(s->sock, vm, &m);
	cr_assert_eq(ret, 0, "info %s: %s", vm, strerror(-ret));
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_VM_INFO, "info %s: %s", vm,
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "wrong reply");
	return m;
}

void ctl_snapshot_ok(const struct test_server *s, const char *vm, const char *dir)
{
	Memsrv__ServerMessage *m;
	int ret = ctl_snapshot(s->sock, vm, dir, &m);
	cr_assert_eq(ret, 0, "snapshot request: %s", strerror(-ret));
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_SNAPSHOT_REPLY, "snapshot of %s refused: %s", vm,
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "?");
	memsrv__server_message__free_unpacked(m, NULL);
}

Memsrv__ServerMessage *ctl_evict_ok(const struct test_server *s, const char *vm, uint64_t bytes, bool all)
{
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_evict(s->sock, vm, bytes, all, &m);
	cr_assert_eq(ret, 0, "evict %s: %s", vm, strerror(-ret));
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_EVICT_REPLY, "evict %s: %s", vm,
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "wrong reply");
	return m;
}

void ctl_set_ok(const struct test_server *s, const char *name, const char *setting)
{
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_set(s->sock, name, &setting, 1, &m);
	cr_assert_eq(ret, 0, "set %s %s: %s", name, setting, strerror(-ret));
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_SET_REPLY, "set %s %s: %s", name, setting,
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "wrong reply");
	memsrv__server_message__free_unpacked(m, NULL);
}

Memsrv__NodeStats *ctl_stats_ok(const struct test_server *s, Memsrv__ServerMessage **m)
{
	*m = NULL;
	cr_assert_eq(ctl_stats(s->sock, m), 0);
	cr_assert_eq((*m)->msg_case, MEMSRV__SERVER_MESSAGE__MSG_NODE_STATS);
	return (*m)->node_stats;
}

unsigned ctl_vm_count(const struct test_server *s)
{
	Memsrv__ServerMessage *m = NULL;
	cr_assert_eq(ctl_list(s->sock, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_VM_LIST);
	unsigned n = m->vm_list->n_vms;
	memsrv__server_message__free_unpacked(m, NULL);
	return n;
}

int answer_errno(int ret, Memsrv__ServerMessage *m)
{
	int err = ret < 0 || !m ? -1 : m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->errno_code : 0;
	if (m)
		memsrv__server_message__free_unpacked(m, NULL);
	return err;
}

void expect_root_served_holding(const struct test_server *s, unsigned connections)
{
	int fds[64];
	cr_assert_leq(connections, 64);
	for (unsigned i = 0; i < connections; i++)
		fds[i] = ctl_connect(s->sock);
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_list(s->sock, &m);
	cr_assert_eq(answer_errno(ret, m), 0, "root was held to --max-sessions-per-uid");
	for (unsigned i = 0; i < connections; i++)
		close(fds[i]);
}

int run_capture(const char *cmd, char *out, size_t len)
{
	FILE *p = popen(cmd, "r");
	cr_assert(p, "popen %s", cmd);
	size_t n = fread(out, 1, len - 1, p);
	out[n] = 0;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

bool scratch_make(char *dir, size_t len, const char *tmpl)
{
	snprintf(dir, len, "%s", tmpl);
	if (mkdtemp(dir))
		return true;
	dir[0] = 0;
	return false;
}

void scratch_remove(char *dir)
{
	char cmd[320];
	snprintf(cmd, sizeof cmd, "mountpoint -q '%s' || rm -rf '%s'", dir, dir);
	if (dir[0] && system(cmd)) {
		/* best effort: a leftover directory is harmless */
	}
	dir[0] = 0;
}

uint64_t ctl_info_u64(const struct test_server *s, const char *vm, size_t offset)
{
	Memsrv__ServerMessage *m = ctl_info_ok(s, vm);
	uint64_t v;
	memcpy(&v, (const char *)m->vm_info + offset, sizeof v);
	memsrv__server_message__free_unpacked(m, NULL);
	return v;
}

long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

bool write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	fprintf(f, "%ld\n", v);
	return fclose(f) == 0;
}

bool wait_until(bool (*cond)(void *), void *arg, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 10) {
		if (cond(arg))
			return true;
		usleep(10000);
	}
	return cond(arg);
}
