/* Description: the remote tier's Redis Cluster client (server/store/
 * redis_cluster.c) against a real cluster of Debian's redis-server on
 * loopback: slots as the server computes them, pipelined commands on every
 * shard, slots moved while commands run (MOVED, ASK), a master killed (its
 * replica takes over and no acknowledged write is lost), the whole cluster
 * stopped and started again, a password, a node that answers what is not
 * RESP (never taken for a reply), and a WAIT on its writes' connection. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "redis_cluster.h"
#include "redis_cluster_harness.h"

static struct test_cluster tc;
static struct rc_cluster *rc;

static void teardown(void)
{
	rc_close(rc);
	rc = NULL;
	test_cluster_stop(&tc);
}

TestSuite(redis_cluster, .fini = teardown, .timeout = 240);

static void start_cluster(const char *password)
{
	if (!test_cluster_available())
		cr_skip_test("no redis-server or redis-cli here (Debian's redis-server, redis-tools)");
	test_cluster_start(&tc, 3, 1, password);
}

static void open_client(const char *password, unsigned timeout_ms)
{
	struct rc_config cfg = { .seeds = { tc.seed }, .n_seeds = 1, .password = password,
				 .command_timeout_ms = timeout_ms };
	char why[256] = "";
	int ret = rc_open(&rc, &cfg, why, sizeof why);
	cr_assert_eq(ret, 0, "rc_open: %s (%s)", strerror(-ret), why);
}

/* One command's outcome. */
struct op {
	bool done;
	int err, type;
	long long integer;
	char str[96];
};

static void on_done(void *arg, const redisReply *r, int err)
{
	struct op *o = arg;
	cr_assert(!o->done, "a command completed twice");
	o->done = true;
	o->err = err;
	if (!r)
		return;
	o->type = r->type;
	o->integer = r->integer;
	if (r->str)
		snprintf(o->str, sizeof o->str, "%.*s", (int)r->len, r->str);
}

static void command(struct op *o, const char *key, int argc, const char **argv)
{
	memset(o, 0, sizeof *o);
	cr_assert_eq(rc_command(rc, key, strlen(key), argc, argv, NULL, on_done, o), 0);
}

static void set(struct op *o, const char *key, const char *value)
{
	const char *argv[] = { "SET", key, value };
	command(o, key, 3, argv);
}

static void get(struct op *o, const char *key)
{
	const char *argv[] = { "GET", key };
	command(o, key, 2, argv);
}

/* Polls until nothing is pending; fails after timeout_ms. */
static void drain(int timeout_ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (rc_pending(rc)) {
		cr_assert_geq(rc_poll(rc, 50), 0);
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert_lt((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000, timeout_ms,
			     "%u commands still pending after %d ms", rc_pending(rc), timeout_ms);
	}
}

static void value_of(char *out, size_t len, unsigned i)
{
	snprintf(out, len, "value-%u-%08x", i, i * 2654435761u);
}

Test(redis_cluster, keys_go_to_the_slots_the_server_computes)
{
	cr_assert_eq(rc_keyslot("123456789", 9), 0x31c3 & 16383, "the specification's CRC16 test vector");
	start_cluster(NULL);
	static const char *const fixed[] = { "foo", "bar", "{user1000}.following", "{user1000}.followers",
					     "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{}", "a{b" };
	char key[64], cmd[128], out[64];
	for (unsigned i = 0; i < 300; i++) {
		if (i < sizeof fixed / sizeof fixed[0])
			snprintf(key, sizeof key, "%s", fixed[i]);
		else if (i % 3)
			snprintf(key, sizeof key, "k%u-%x", i, rand());
		else
			snprintf(key, sizeof key, "x%u{t%u}y", i, rand() % 50);
		snprintf(cmd, sizeof cmd, "CLUSTER KEYSLOT %s", key);
		cr_assert_eq(test_cluster_cmd(&tc, 0, cmd, out, sizeof out), 0, "%s", cmd);
		cr_assert_eq(rc_keyslot(key, strlen(key)), (unsigned)atoi(out), "key %s: %u, the server says %s", key,
			     rc_keyslot(key, strlen(key)), out);
	}
}

#define MANY 20000

/* SETs prefix:i to value i for every i under MANY, pipelined; asserts each OK. */
static void set_many(struct op *ops, const char *prefix)
{
	char key[32], value[64];
	for (unsigned i = 0; i < MANY; i++) {
		snprintf(key, sizeof key, "%s:%u", prefix, i);
		value_of(value, sizeof value, i);
		set(&ops[i], key, value);
	}
	drain(30000);
	for (unsigned i = 0; i < MANY; i++)
		cr_assert(ops[i].done && !ops[i].err && !strcmp(ops[i].str, "OK"), "SET %s:%u: err %d, %s", prefix, i,
			  ops[i].err, ops[i].str);
}

Test(redis_cluster, pipelined_commands_reach_every_shard)
{
	start_cluster(NULL);
	open_client(NULL, 0);
	static struct op ops[MANY];
	char key[32], value[64];
	set_many(ops, "k");
	for (unsigned i = 0; i < MANY; i++) {
		snprintf(key, sizeof key, "k:%u", i);
		get(&ops[i], key);
	}
	drain(30000);
	for (unsigned i = 0; i < MANY; i++) {
		value_of(value, sizeof value, i);
		cr_assert(ops[i].done && !ops[i].err && !strcmp(ops[i].str, value), "GET k:%u: err %d, %s", i,
			  ops[i].err, ops[i].str);
	}
	/* every master holds a part, and the parts are all */
	struct rc_stats st;
	rc_get_stats(rc, &st);
	cr_assert_eq(st.masters, 3);
	cr_assert(st.reachable);
	unsigned masters = 0, keys = 0;
	for (unsigned i = 0; i < tc.n; i++) {
		char out[512];
		cr_assert_eq(test_cluster_cmd(&tc, i, "INFO replication", out, sizeof out), 0);
		if (!strstr(out, "role:master"))
			continue;
		cr_assert_eq(test_cluster_cmd(&tc, i, "DBSIZE", out, sizeof out), 0);
		cr_assert_gt(atoi(out), MANY / 6, "master %u holds %s keys", i, out);
		keys += (unsigned)atoi(out);
		masters++;
	}
	cr_assert_eq(masters, 3);
	cr_assert_eq(keys, MANY);
}

/* A slot migration in the background: redis-cli --cluster reshard. */
static pid_t reshard(unsigned from, unsigned to, unsigned slots)
{
	char from_id[64], to_id[64];
	cr_assert_eq(test_cluster_cmd(&tc, from, "CLUSTER MYID", from_id, sizeof from_id), 0);
	cr_assert_eq(test_cluster_cmd(&tc, to, "CLUSTER MYID", to_id, sizeof to_id), 0);
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "redis-cli --cluster reshard %s --cluster-from %s --cluster-to %s --cluster-slots %u --cluster-yes "
		 "--cluster-pipeline 10 > %s/reshard.log 2>&1",
		 tc.seed, from_id, to_id, slots, tc.dir);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

Test(redis_cluster, slots_moved_while_commands_run_are_followed)
{
	start_cluster(NULL);
	open_client(NULL, 0);
	static struct op ops[MANY];
	char key[32], value[64];
	set_many(ops, "m");
	int from = test_cluster_master_of(&tc, 0), to = test_cluster_master_of(&tc, 16383);
	cr_assert(from >= 0 && to >= 0 && from != to);
	pid_t pid = reshard((unsigned)from, (unsigned)to, 1000);
	/* read every key again and again while the slots move */
	unsigned rounds = 0;
	int status = -1;
	while (waitpid(pid, &status, WNOHANG) == 0 || rounds < 2) {
		for (unsigned i = 0; i < MANY; i += 7) {
			snprintf(key, sizeof key, "m:%u", i);
			get(&ops[i], key);
		}
		drain(30000);
		for (unsigned i = 0; i < MANY; i += 7) {
			value_of(value, sizeof value, i);
			cr_assert(!ops[i].err && !strcmp(ops[i].str, value), "GET m:%u in round %u: err %d, %s", i, rounds,
				  ops[i].err, ops[i].str);
		}
		rounds++;
	}
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reshard failed: see %s/reshard.log", tc.dir);
	struct rc_stats st;
	rc_get_stats(rc, &st);
	cr_assert_gt(st.moved + st.asked, 0, "1000 slots moved and the client was never redirected");
	cr_assert_gt(st.map_reads, 1, "the map was not read again after MOVED");
}

/* A key whose slot node serves now: WAIT sent with it goes to that node,
 * and covers every write sent to it before. */
static void probe_key(unsigned node, char *key, size_t len)
{
	for (unsigned i = 0; i < 10000; i++) {
		snprintf(key, len, "probe:%u", i);
		if (test_cluster_master_of(&tc, rc_keyslot(key, strlen(key))) == (int)node)
			return;
	}
	cr_assert_fail("no key of node %u's slots", node);
}

Test(redis_cluster, a_killed_master_loses_no_write_its_replica_acknowledged)
{
	start_cluster(NULL);
	open_client(NULL, 20000);
	enum { N = 4000, BATCH = 200, GROUPS = 3 };
	static struct op sets[N], gets[N], waits[N / BATCH][GROUPS];
	char key[32], value[64], probe[GROUPS][32];
	int group_of_node[TEST_CLUSTER_MAX_NODES], masters = 0;
	static int owner[16384];
	for (unsigned i = 0; i < TEST_CLUSTER_MAX_NODES; i++)
		group_of_node[i] = -1;
	/* the masters now: each slot's group is its master's, whoever takes over */
	test_cluster_slot_owners(&tc, owner);
	for (unsigned slot = 0; slot < 16384; slot++) {
		int m = owner[slot];
		cr_assert_geq(m, 0, "slot %u has no master", slot);
		if (group_of_node[m] < 0) {
			group_of_node[m] = masters;
			probe_key((unsigned)m, probe[masters], sizeof probe[masters]);
			masters++;
		}
	}
	cr_assert_eq(masters, GROUPS);
	int victim = test_cluster_master_of(&tc, rc_keyslot("w:0", 3));
	cr_assert_geq(victim, 0);
	for (unsigned i = 0; i < N; i++) {
		snprintf(key, sizeof key, "w:%u", i);
		value_of(value, sizeof value, i);
		set(&sets[i], key, value);
		if (i % BATCH == BATCH - 1) {
			/* a batch is acknowledged on a shard once a replica has it */
			const char *wait_argv[] = { "WAIT", "1", "300" };
			for (unsigned g = 0; g < GROUPS; g++)
				command(&waits[i / BATCH][g], probe[g], 3, wait_argv);
			rc_poll(rc, 0);
		}
		if (i == N / 4) {
			drain(20000);
			test_cluster_kill(&tc, (unsigned)victim);
		}
	}
	drain(60000);
	unsigned acked = 0;
	bool acked_key[N];
	for (unsigned i = 0; i < N; i++) {
		cr_assert(sets[i].done && !sets[i].err && !strcmp(sets[i].str, "OK"),
			  "SET w:%u did not complete through the failover: err %d (%s)", i, sets[i].err, sets[i].str);
		snprintf(key, sizeof key, "w:%u", i);
		int g = group_of_node[owner[rc_keyslot(key, strlen(key))]];
		const struct op *w = &waits[i / BATCH][g];
		cr_assert(w->done && !w->err && w->type == REDIS_REPLY_INTEGER, "WAIT after w:%u: err %d", i, w->err);
		acked_key[i] = w->integer >= 1;
		acked += acked_key[i];
	}
	cr_assert_gt(acked, N / 2, "only %u of %u writes reached a replica", acked, N);
	struct rc_stats st;
	rc_get_stats(rc, &st);
	cr_assert_gt(st.retries, 0, "the master was killed and nothing was sent again");
	for (unsigned i = 0; i < N; i++) {
		snprintf(key, sizeof key, "w:%u", i);
		get(&gets[i], key);
	}
	drain(20000);
	for (unsigned i = 0; i < N; i++) {
		if (!acked_key[i])
			continue;
		value_of(value, sizeof value, i);
		cr_assert(!gets[i].err && !strcmp(gets[i].str, value), "w:%u was acknowledged and is lost: %s", i,
			  gets[i].str);
	}
}

Test(redis_cluster, a_stopped_cluster_times_commands_out_and_serves_again_when_back)
{
	start_cluster(NULL);
	open_client(NULL, 1500);
	struct op o;
	set(&o, "before", "1");
	drain(5000);
	cr_assert(!o.err && !strcmp(o.str, "OK"));
	for (unsigned i = 0; i < tc.n; i++)
		test_cluster_kill(&tc, i);
	get(&o, "before");
	drain(10000);
	cr_assert_eq(o.err, -ETIMEDOUT, "a command on a stopped cluster: err %d, reply %s", o.err, o.str);
	struct rc_stats st;
	rc_get_stats(rc, &st);
	cr_assert(!st.reachable);
	for (unsigned i = 0; i < tc.n; i++)
		test_cluster_relaunch(&tc, i);
	cr_assert(test_cluster_wait_ok(&tc, 30000), "the cluster did not come back");
	/* the same client, its connections and map made again */
	set(&o, "after", "2");
	drain(10000);
	cr_assert(!o.err && !strcmp(o.str, "OK"), "SET after the cluster came back: err %d, %s", o.err, o.str);
	get(&o, "after");
	drain(10000);
	cr_assert_str_eq(o.str, "2");
}

Test(redis_cluster, a_password_is_given_and_a_wrong_one_said)
{
	start_cluster("s3cret-pw");
	struct rc_config cfg = { .seeds = { tc.seed }, .n_seeds = 1, .password = "wrong" };
	char why[256] = "";
	cr_assert_neq(rc_open(&rc, &cfg, why, sizeof why), 0, "a wrong password was taken");
	cr_assert(strstr(why, "password"), "rc_open said: %s", why);
	rc = NULL;
	open_client("s3cret-pw", 0);
	struct op o;
	set(&o, "pw", "yes");
	drain(5000);
	cr_assert_str_eq(o.str, "OK");
}

/* ---- a node that answers what is not RESP ---- */

static int fake_fd;
static unsigned fake_port;

/* Answers CLUSTER SLOTS with every slot on itself, anything else with
 * bytes that are not RESP; each connection in turn, until closed. */
static void *fake_node(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(fake_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		char buf[4096];
		ssize_t n;
		while ((n = recv(fd, buf, sizeof buf - 1, 0)) > 0) {
			buf[n] = 0;
			char out[256];
			if (strstr(buf, "CLUSTER"))
				snprintf(out, sizeof out, "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%u\r\n",
					 fake_port);
			else
				snprintf(out, sizeof out, "!!this is no reply\r\n");
			if (send(fd, out, strlen(out), MSG_NOSIGNAL) < 0)
				break;
		}
		close(fd);
	}
}

Test(redis_cluster, bytes_that_are_not_resp_are_never_a_reply)
{
	fake_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	cr_assert(!bind(fake_fd, (struct sockaddr *)&sa, sizeof sa) && !listen(fake_fd, 8) &&
		  !getsockname(fake_fd, (struct sockaddr *)&sa, &len));
	fake_port = ntohs(sa.sin_port);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, fake_node, NULL), 0);
	char seed[32];
	snprintf(seed, sizeof seed, "127.0.0.1:%u", fake_port);
	struct rc_config cfg = { .seeds = { seed }, .n_seeds = 1, .command_timeout_ms = 1500 };
	char why[256] = "";
	cr_assert_eq(rc_open(&rc, &cfg, why, sizeof why), 0, "%s", why);
	struct op o;
	get(&o, "page");
	drain(10000);
	cr_assert_eq(o.err, -ETIMEDOUT, "a reply that is not RESP was taken: type %d, %s", o.type, o.str);
	struct rc_stats st;
	rc_get_stats(rc, &st);
	cr_assert_gt(st.reconnects, 1, "the connection that spoke garbage was kept");
	rc_close(rc);
	rc = NULL;
	shutdown(fake_fd, SHUT_RDWR);
	close(fake_fd);
	pthread_join(t, NULL);
}

/* A SET's outcome and the connection it was answered on. */
struct set_on {
	struct op op;
	struct rc_conn conn;
	bool has_conn;
};

static void on_set(void *arg, const redisReply *r, int err)
{
	struct set_on *s = arg;
	on_done(&s->op, r, err);
	s->has_conn = rc_reply_conn(rc, &s->conn);
}

Test(redis_cluster, a_wait_goes_on_the_connection_of_its_writes_or_fails)
{
	start_cluster(NULL);
	open_client(NULL, 10000);
	struct set_on s = { 0 };
	const char *argv[] = { "SET", "durable", "yes" };
	cr_assert_eq(rc_command(rc, "durable", 7, 3, argv, NULL, on_set, &s), 0);
	drain(5000);
	cr_assert(s.has_conn && !s.op.err && !strcmp(s.op.str, "OK"));
	struct rc_conn outside;
	cr_assert(!rc_reply_conn(rc, &outside), "a reply's connection outside its callback");
	struct op w;
	memset(&w, 0, sizeof w);
	const char *wait_argv[] = { "WAIT", "1", "2000" };
	cr_assert_eq(rc_command_on(rc, &s.conn, 3, wait_argv, NULL, on_done, &w), 0);
	drain(5000);
	cr_assert(!w.err && w.type == REDIS_REPLY_INTEGER && w.integer >= 1,
		  "WAIT on the SET's connection: err %d, type %d, %lld replicas", w.err, w.type, w.integer);

	/* its node killed: a command for that connection fails, never goes elsewhere */
	int node = test_cluster_master_of(&tc, rc_keyslot("durable", 7));
	cr_assert_geq(node, 0);
	test_cluster_kill(&tc, (unsigned)node);
	const char *ping[] = { "PING" };
	memset(&w, 0, sizeof w);
	cr_assert_eq(rc_command_on(rc, &s.conn, 1, ping, NULL, on_done, &w), 0);
	drain(10000);
	cr_assert_eq(w.err, -ECONNRESET, "a command for a dead connection: err %d, %s", w.err, w.str);
	/* its replica takes over with the write WAIT acknowledged */
	int master = node;
	for (int waited = 0; master == node || master < 0; waited += 100) {
		cr_assert_lt(waited, 20000, "no replica took over in 20 s");
		usleep(100000);
		master = test_cluster_master_of(&tc, rc_keyslot("durable", 7));
	}
	struct op g;
	get(&g, "durable");
	drain(10000);
	cr_assert(!g.err && !strcmp(g.str, "yes"), "the replica that took over lost an acknowledged write: err %d, %s",
		  g.err, g.str);
	/* and once the node is back, the old connection is still not it */
	test_cluster_relaunch(&tc, (unsigned)node);
	memset(&w, 0, sizeof w);
	cr_assert_eq(rc_command_on(rc, &s.conn, 1, ping, NULL, on_done, &w), 0);
	drain(10000);
	cr_assert_eq(w.err, -ECONNRESET, "a command for a replaced connection: err %d, %s", w.err, w.str);
}
