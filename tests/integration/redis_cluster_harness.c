/* redis_cluster_harness: a real Redis Cluster on loopback (redis_cluster_harness.h). */
#include "redis_cluster_harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

bool test_cluster_available(void)
{
	return !access("/usr/bin/redis-server", X_OK) && !access("/usr/bin/redis-cli", X_OK);
}

static bool port_free(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	bool ok = fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof sa);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* A port free now whose cluster bus port (+10000) is free too. */
static unsigned pick_port(const struct test_cluster *tc)
{
	for (int tries = 0; tries < 1000; tries++) {
		unsigned p = 20000 + (unsigned)(rand() % 20000);
		bool taken = false;
		for (unsigned i = 0; i < tc->n; i++)
			taken |= tc->port[i] == p;
		if (!taken && port_free(p) && port_free(p + 10000))
			return p;
	}
	cr_assert_fail("no free pair of loopback ports for a redis node");
	return 0;
}

static redisContext *connect_node(const struct test_cluster *tc, unsigned node)
{
	struct timeval tv = { 1, 0 };
	redisContext *ctx = redisConnectWithTimeout("127.0.0.1", (int)tc->port[node], tv);
	if (!ctx || ctx->err) {
		if (ctx)
			redisFree(ctx);
		return NULL;
	}
	redisSetTimeout(ctx, tv);
	if (tc->password[0]) {
		redisReply *r = redisCommand(ctx, "AUTH %s", tc->password);
		bool ok = r && r->type == REDIS_REPLY_STATUS;
		if (r)
			freeReplyObject(r);
		if (!ok) {
			redisFree(ctx);
			return NULL;
		}
	}
	return ctx;
}

int test_cluster_cmd(const struct test_cluster *tc, unsigned node, const char *cmd, char *out, size_t len)
{
	redisContext *ctx = connect_node(tc, node);
	if (!ctx)
		return -1;
	/* words split on spaces: the tests' commands carry no spaces in arguments */
	char copy[512];
	snprintf(copy, sizeof copy, "%s", cmd);
	const char *argv[16];
	int argc = 0;
	for (char *save, *w = strtok_r(copy, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
	int ret = -1;
	if (r) {
		if (r->type == REDIS_REPLY_INTEGER)
			snprintf(out, len, "%lld", r->integer);
		else if (r->str)
			snprintf(out, len, "%s", r->str);
		else
			snprintf(out, len, "(type %d)", r->type);
		ret = r->type == REDIS_REPLY_ERROR ? -1 : 0;
		freeReplyObject(r);
	}
	redisFree(ctx);
	return ret;
}

/* Starts node's redis-server: true once it answers PING (5 s at most). */
static bool launch_node(struct test_cluster *tc, unsigned node)
{
	char dir[96], port[8], log[128];
	snprintf(dir, sizeof dir, "%s/%u", tc->dir, tc->port[node]);
	snprintf(port, sizeof port, "%u", tc->port[node]);
	snprintf(log, sizeof log, "%s/redis.log", dir);
	mkdir(dir, 0755);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);  /* a test that fails leaves no redis behind */
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		const char *argv[40] = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", dir,
					 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
					 "--cluster-node-timeout", "1000", "--appendonly", "no", "--save", "",
					 "--daemonize", "no", "--protected-mode", "no", "--loglevel", "notice",
					 /* a replica that never synced cannot take over: sync at once */
					 "--repl-diskless-sync-delay", "0" };
		int n = 25;
		if (tc->password[0]) {
			argv[n++] = "--requirepass";
			argv[n++] = tc->password;
			argv[n++] = "--masterauth";
			argv[n++] = tc->password;
		}
		argv[n] = NULL;
		execv("/usr/bin/redis-server", (char *const *)argv);
		_exit(127);
	}
	tc->pid[node] = pid;
	/* up when it answers */
	char out[64];
	for (int i = 0; i < 500; i++) {
		if (!test_cluster_cmd(tc, node, "PING", out, sizeof out) && !strcmp(out, "PONG"))
			return true;
		usleep(10000);
	}
	return false;
}

/* The last line of node's log, for a failure's message. */
static void log_tail(const struct test_cluster *tc, unsigned node, char *out, size_t len)
{
	char cmd[192];
	snprintf(cmd, sizeof cmd, "tail -n 1 %s/%u/redis.log 2>&1", tc->dir, tc->port[node]);
	FILE *f = popen(cmd, "r");
	out[0] = 0;
	if (f) {
		if (!fgets(out, (int)len, f))
			out[0] = 0;
		pclose(f);
	}
}

void test_cluster_relaunch(struct test_cluster *tc, unsigned node)
{
	if (launch_node(tc, node))
		return;
	char tail[256];
	log_tail(tc, node, tail, sizeof tail);
	cr_assert_fail("redis-server on port %u did not come up: %s", tc->port[node], tail);
}

void test_cluster_kill(struct test_cluster *tc, unsigned node)
{
	if (!tc->pid[node])
		return;
	kill(tc->pid[node], SIGKILL);
	waitpid(tc->pid[node], NULL, 0);
	tc->pid[node] = 0;
}

void test_cluster_start(struct test_cluster *tc, unsigned masters, unsigned replicas, const char *password)
{
	memset(tc, 0, sizeof *tc);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	tc->n = masters * (1 + replicas);
	cr_assert(tc->n <= TEST_CLUSTER_MAX_NODES && masters >= 3, "a cluster of 3 masters or more, at most %d nodes",
		  TEST_CLUSTER_MAX_NODES);
	snprintf(tc->password, sizeof tc->password, "%s", password ? password : "");
	cr_assert(scratch_make(tc->dir, sizeof tc->dir, "/tmp/memsrv-redis.XXXXXX"));
	for (unsigned i = 0; i < tc->n; i++) {
		/* a port found free can be taken before redis binds it: another pair then */
		for (unsigned tries = 1;; tries++) {
			tc->port[i] = pick_port(tc);
			if (launch_node(tc, i))
				break;
			char tail[256];
			log_tail(tc, i, tail, sizeof tail);
			test_cluster_kill(tc, i);
			cr_assert_lt(tries, 3, "redis-server on port %u did not come up: %s", tc->port[i], tail);
			cr_log_warn("redis-server on port %u did not come up (%s): another port", tc->port[i], tail);
		}
	}
	snprintf(tc->seed, sizeof tc->seed, "127.0.0.1:%u", tc->port[0]);
	char cmd[1024];
	int n = snprintf(cmd, sizeof cmd, "redis-cli --cluster create");
	for (unsigned i = 0; i < tc->n; i++)
		n += snprintf(cmd + n, sizeof cmd - (size_t)n, " 127.0.0.1:%u", tc->port[i]);
	n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --cluster-replicas %u --cluster-yes", replicas);
	if (tc->password[0])
		n += snprintf(cmd + n, sizeof cmd - (size_t)n, " -a %s --no-auth-warning", tc->password);
	snprintf(cmd + n, sizeof cmd - (size_t)n, " > %s/create.log 2>&1", tc->dir);
	cr_assert_eq(system(cmd), 0, "redis-cli --cluster create failed: see %s/create.log", tc->dir);
	cr_assert(test_cluster_wait_ok(tc, 20000), "the cluster did not reach cluster_state:ok in 20 s");
}

void test_cluster_stop(struct test_cluster *tc)
{
	for (unsigned i = 0; i < tc->n; i++)
		test_cluster_kill(tc, i);
	scratch_remove(tc->dir);
	tc->n = 0;
}

bool test_cluster_wait_ok(const struct test_cluster *tc, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 50) {
		bool all = true;
		for (unsigned i = 0; i < tc->n && all; i++) {
			if (!tc->pid[i])
				continue;
			redisContext *ctx = connect_node(tc, i);
			redisReply *r = ctx ? redisCommand(ctx, "CLUSTER INFO") : NULL;
			all = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
			if (r)
				freeReplyObject(r);
			/* and each replica has its master's data: it can take over */
			r = all ? redisCommand(ctx, "INFO replication") : NULL;
			all = r && r->type == REDIS_REPLY_STRING &&
			      (strstr(r->str, "role:master") || strstr(r->str, "master_link_status:up"));
			if (r)
				freeReplyObject(r);
			if (ctx)
				redisFree(ctx);
		}
		if (all)
			return true;
		usleep(50000);
	}
	return false;
}

void test_cluster_slot_owners(const struct test_cluster *tc, int *owner)
{
	for (unsigned s = 0; s < 16384; s++)
		owner[s] = -1;
	for (unsigned i = 0; i < tc->n; i++) {
		if (!tc->pid[i])
			continue;
		redisContext *ctx = connect_node(tc, i);
		redisReply *r = ctx ? redisCommand(ctx, "CLUSTER NODES") : NULL;
		bool read = r && r->type == REDIS_REPLY_STRING;
		/* <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>... */
		for (char *save, *line = read ? strtok_r(r->str, "\n", &save) : NULL; line;
		     line = strtok_r(NULL, "\n", &save)) {
			char addr[64], flags[128];
			int used = 0;
			if (sscanf(line, "%*s %63s %127s %*s %*s %*s %*s %*s %n", addr, flags, &used) < 2 || !used)
				continue;
			if (!strstr(flags, "master") || strstr(flags, "fail") || !strchr(addr, ':'))
				continue;
			unsigned port = (unsigned)atoi(strchr(addr, ':') + 1);
			int node = -1;
			for (unsigned j = 0; j < tc->n; j++)
				if (tc->port[j] == port)
					node = (int)j;
			for (char *s2, *range = strtok_r(line + used, " ", &s2); range && node >= 0;
			     range = strtok_r(NULL, " ", &s2)) {
				unsigned lo, hi;
				int k = sscanf(range, "%u-%u", &lo, &hi);
				if (k == 1)
					hi = lo;
				for (unsigned s = lo; k >= 1 && range[0] != '[' && s <= hi && s < 16384; s++)
					owner[s] = node;
			}
		}
		if (r)
			freeReplyObject(r);
		if (ctx)
			redisFree(ctx);
		if (read)
			return;
	}
}

int test_cluster_master_of(const struct test_cluster *tc, unsigned slot)
{
	static int owner[16384];
	test_cluster_slot_owners(tc, owner);
	return slot < 16384 ? owner[slot] : -1;
}
