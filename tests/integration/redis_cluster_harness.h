/* redis_cluster_harness: a real Redis Cluster for the tests, on loopback.
 *
 * Debian's redis-server processes, one per node, each in a directory of its
 * own under /tmp, formed into a cluster by `redis-cli --cluster create`
 * (the first `masters` nodes masters, each with `replicas` replicas), with
 * a node timeout of 1 s so that a replica takes over a killed master in
 * about 2 s.  A node killed and started again comes back with its
 * nodes.conf and rejoins.
 */
#ifndef MEMSRV_TEST_REDIS_CLUSTER_HARNESS_H
#define MEMSRV_TEST_REDIS_CLUSTER_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#define TEST_CLUSTER_MAX_NODES 8

struct test_cluster {
	char dir[64];
	unsigned n;
	unsigned port[TEST_CLUSTER_MAX_NODES];
	pid_t pid[TEST_CLUSTER_MAX_NODES];   /* 0: not running */
	char password[64];                   /* "": none */
	char seed[32];                       /* "127.0.0.1:PORT" of the first node */
};

/* Whether redis-server and redis-cli are here; else the test skips saying so. */
bool test_cluster_available(void);

/* Starts and forms the cluster; asserts it came up (cluster_state:ok on
 * every node).  password "" or NULL: none. */
void test_cluster_start(struct test_cluster *tc, unsigned masters, unsigned replicas, const char *password);
/* kill -9 every node, removes the directory.  Harmless twice. */
void test_cluster_stop(struct test_cluster *tc);

void test_cluster_kill(struct test_cluster *tc, unsigned node);   /* kill -9 */
void test_cluster_relaunch(struct test_cluster *tc, unsigned node);

/* The node (index) serving slot as master now, as `CLUSTER NODES` on a
 * live node says; -1 if none. */
int test_cluster_master_of(const struct test_cluster *tc, unsigned slot);
/* The same for every slot at once: owner[16384]. */
void test_cluster_slot_owners(const struct test_cluster *tc, int *owner);
/* Polls until every running node says cluster_state:ok and every running
 * replica has synced with its master; false after timeout_ms. */
bool test_cluster_wait_ok(const struct test_cluster *tc, int timeout_ms);

/* Runs a command on node (redis-cli's words, e.g. "CLUSTER KEYSLOT foo")
 * and returns its reply as text in out (first line). 0, or -1 when none. */
int test_cluster_cmd(const struct test_cluster *tc, unsigned node, const char *cmd, char *out, size_t len);

#endif
