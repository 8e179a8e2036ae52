/* Description: the remote tier against the real memsrv and a real Redis
 * Cluster of six redis-server on loopback (--remote, no swap): a VM larger
 * than the cache spills to the cluster, every page reads back, and nothing
 * of the node stays once the VM is gone; a master killed while the VM
 * faults loses nothing; the whole cluster stopped makes faults on remote
 * pages wait (and eviction pause) until it is back, then every page reads
 * back; a second node with the same pages uploads almost nothing; a node
 * that vanished is collected from another (memsrv-ctl remote gc) and what
 * only it held is deleted while the other's pages still read back; a
 * memsrv killed with a --state-dir finds its pages in the cluster again,
 * and one started again without its state drops what its node left; a
 * migration between two nodes of the cluster sends its remote pages by
 * name, and the destination references them there; a node id runs in one
 * memsrv at a time (a restart on its state dir under another id is
 * refused), gc waits out a killed node's claim, and a clean stop frees
 * the id at once; a snapshot --remote leaves its objects in the cluster
 * under the image's own name, another node resumes it with every page as
 * it was (a node without the cluster refuses it), a snapshot of that VM
 * sends no byte again, and gc of each image's name leaves nothing; a
 * snapshot --remote that no replica acknowledges, or with the cluster
 * away, is refused saying why, leaves no image and nothing of its own in
 * the cluster, and the VM's pages are all there. */
#include <criterion/criterion.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"
#include "redis_cluster_harness.h"
#include "remote_alive.h"

#define PAGE 4096u
/* no zero page: every page is an object of the cache or the cluster */
#define MIX "text=40,binary=40,random=20"

static struct test_cluster tc;
static struct test_server srv_a, srv_b;

static void stop_server(struct test_server *s)
{
	if (s->pid > 0 && server_alive(s)) {
		server_stop(s);
	} else if (s->dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
		if (system(cmd)) {
			/* a leftover temp dir is harmless */
		}
	}
	memset(s, 0, sizeof *s);
}

static void teardown(void)
{
	stop_server(&srv_a);
	stop_server(&srv_b);
	test_cluster_stop(&tc);
}

TestSuite(remote_tier, .fini = teardown, .timeout = 150);

static void start_cluster(void)
{
	if (!test_cluster_available())
		cr_skip_test("no redis-server or redis-cli here (Debian's redis-server, redis-tools)");
	test_cluster_start(&tc, 3, 1, NULL);
}

/* memsrv's options for the cluster behind its cache: every node a seed,
 * no swap; extra (NULL-terminated, up to 4) after them.  In opts[16]. */
static char seeds[TEST_CLUSTER_MAX_NODES * 24];

static void node_options(const char **opts, const char *id, const char *cache, const char *const *extra)
{
	size_t n = 0;
	for (unsigned i = 0; i < tc.n; i++)
		n += (size_t)snprintf(seeds + n, sizeof seeds - n, "%s127.0.0.1:%u", i ? "," : "", tc.port[i]);
	unsigned k = 0;
	opts[k++] = "--cache-size";
	opts[k++] = cache;
	opts[k++] = "--remote";
	opts[k++] = seeds;
	opts[k++] = "--node-id";
	opts[k++] = id;
	for (unsigned i = 0; extra && extra[i] && k < 15; i++)
		opts[k++] = extra[i];
	opts[k] = NULL;
}

/* memsrv with the cluster behind its cache. */
static void start_node(struct test_server *s, const char *id, const char *cache)
{
	const char *opts[16];
	node_options(opts, id, cache, NULL);
	server_start_with(s, opts);
}

/* ---- the cluster, read directly ---- */

static redisContext *node_connect(unsigned node)
{
	if (!tc.pid[node])
		return NULL;
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", (int)tc.port[node], tv);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	return c;
}

static bool node_is_master(redisContext *c)
{
	redisReply *r = redisCommand(c, "INFO replication");
	bool master = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "role:master");
	if (r)
		freeReplyObject(r);
	return master;
}

struct cluster_key {
	unsigned node;
	char name[160];
};

struct cluster_keys {
	size_t n, cap;
	struct cluster_key *k;
};

static void keys_free(struct cluster_keys *ks)
{
	free(ks->k);
	memset(ks, 0, sizeof *ks);
}

static bool ends_with(const char *s, const char *tail);

/* Every memsrv:* key on every running master (SCAN ... COUNT 10000) but
 * the claims of running nodes (:alive), which go when they stop. */
static void scan_keys(struct cluster_keys *ks)
{
	memset(ks, 0, sizeof *ks);
	for (unsigned node = 0; node < tc.n; node++) {
		redisContext *c = node_connect(node);
		if (!c)
			continue;
		if (!node_is_master(c)) {
			redisFree(c);
			continue;
		}
		char cursor[32] = "0";
		do {
			redisReply *r = redisCommand(c, "SCAN %s MATCH memsrv:* COUNT 10000", cursor);
			cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2, "SCAN on node %u failed", node);
			snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
			redisReply *keys = r->element[1];
			for (size_t i = 0; i < keys->elements; i++) {
				if (keys->element[i]->len > 6 &&
				    !memcmp(keys->element[i]->str + keys->element[i]->len - 6, ":alive", 6))
					continue;
				if (ks->n == ks->cap) {
					ks->cap = ks->cap ? 2 * ks->cap : 1024;
					ks->k = realloc(ks->k, ks->cap * sizeof *ks->k);
					cr_assert(ks->k);
				}
				ks->k[ks->n].node = node;
				snprintf(ks->k[ks->n].name, sizeof ks->k[0].name, "%.*s", (int)keys->element[i]->len,
					 keys->element[i]->str);
				ks->n++;
			}
			freeReplyObject(r);
		} while (strcmp(cursor, "0"));
		redisFree(c);
	}
}

static bool ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);
	return a >= b && !strcmp(s + a - b, tail);
}

static bool has_key(const struct cluster_keys *ks, const char *name)
{
	for (size_t i = 0; i < ks->n; i++)
		if (!strcmp(ks->k[i].name, name))
			return true;
	return false;
}

/* How many :r sets name id. */
static unsigned refs_naming(const struct cluster_keys *ks, const char *id)
{
	unsigned n = 0;
	redisContext *c[TEST_CLUSTER_MAX_NODES] = { 0 };
	for (size_t i = 0; i < ks->n; i++) {
		if (!ends_with(ks->k[i].name, ":r"))
			continue;
		unsigned node = ks->k[i].node;
		if (!c[node])
			c[node] = node_connect(node);
		cr_assert(c[node], "node %u went away", node);
		redisReply *r = redisCommand(c[node], "SISMEMBER %s %s", ks->k[i].name, id);
		cr_assert(r && r->type == REDIS_REPLY_INTEGER, "SISMEMBER %s", ks->k[i].name);
		n += r->integer == 1;
		freeReplyObject(r);
	}
	for (unsigned i = 0; i < TEST_CLUSTER_MAX_NODES; i++)
		if (c[i])
			redisFree(c[i]);
	return n;
}

static unsigned count_suffix(const struct cluster_keys *ks, const char *tail)
{
	unsigned n = 0;
	for (size_t i = 0; i < ks->n; i++)
		n += ends_with(ks->k[i].name, tail);
	return n;
}

static void index_key(const char *id, char *key, size_t len)
{
	snprintf(key, len, "memsrv:node:{%s}:objects", id);
}

/* Whether anything of node id is left: its index, or a :r set naming it;
 * says what in why. */
static bool node_left_something(const char *id, char *why, size_t len)
{
	struct cluster_keys ks;
	scan_keys(&ks);
	char idx[128];
	index_key(id, idx, sizeof idx);
	bool index = has_key(&ks, idx);
	unsigned refs = refs_naming(&ks, id);
	snprintf(why, len, "%s index %s, %u :r sets name it, %u :o objects and %zu memsrv keys in all", id,
		 index ? "present" : "absent", refs, count_suffix(&ks, ":o"), ks.n);
	keys_free(&ks);
	return index || refs;
}

/* No memsrv key is left in the cluster (but running nodes' claims). */
static void expect_cluster_empty(const char *when)
{
	struct cluster_keys ks;
	scan_keys(&ks);
	cr_assert_eq(ks.n, 0, "%s, %zu memsrv keys stay in the cluster (first: %s)", when, ks.n,
		     ks.n ? ks.k[0].name : "");
	keys_free(&ks);
}

/* Polls until nothing of id is left in the cluster (memsrv lets go
 * asynchronously); asserts it within timeout_ms. */
static void expect_node_gone(const char *id, int timeout_ms)
{
	char why[256] = "";
	for (int waited = 0;; waited += 200) {
		if (!node_left_something(id, why, sizeof why))
			return;
		cr_assert_lt(waited, timeout_ms, "%d ms on, something of %s stays in the cluster: %s", timeout_ms, id,
			     why);
		usleep(200000);
	}
}

/* The members of a set (raw strings: the node index holds 32-byte digests),
 * read from the master that holds it now. */
struct members {
	size_t n;
	char (*hex)[65];
};

static void to_hex(const char *b, size_t len, char out[65])
{
	static const char digits[] = "0123456789abcdef";
	size_t n = len < 32 ? len : 32;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[(unsigned char)b[i] >> 4];
		out[2 * i + 1] = digits[(unsigned char)b[i] & 15];
	}
	out[2 * n] = 0;
}

static void index_members(const char *id, struct members *m)
{
	memset(m, 0, sizeof *m);
	char key[128];
	index_key(id, key, sizeof key);
	struct cluster_keys ks;
	scan_keys(&ks);
	for (size_t i = 0; i < ks.n; i++) {
		if (strcmp(ks.k[i].name, key))
			continue;
		redisContext *c = node_connect(ks.k[i].node);
		cr_assert(c);
		redisReply *r = redisCommand(c, "SMEMBERS %s", key);
		cr_assert(r && r->type == REDIS_REPLY_ARRAY, "SMEMBERS %s", key);
		m->n = r->elements;
		m->hex = calloc(m->n ? m->n : 1, sizeof *m->hex);
		cr_assert(m->hex);
		for (size_t j = 0; j < r->elements; j++) {
			cr_assert_eq(r->element[j]->len, 32, "%s holds a member of %zu bytes, not a digest", key,
				     r->element[j]->len);
			to_hex(r->element[j]->str, r->element[j]->len, m->hex[j]);
		}
		freeReplyObject(r);
		redisFree(c);
	}
	keys_free(&ks);
}

static bool members_has(const struct members *m, const char *hex)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->hex[i], hex))
			return true;
	return false;
}

/* Runs SAVE on every running node: what they hold survives a kill -9
 * (the harness's nodes run without persistence; a relaunched node loads
 * its dump.rdb). */
static void save_all(void)
{
	for (unsigned i = 0; i < tc.n; i++) {
		char out[64];
		cr_assert_eq(test_cluster_cmd(&tc, i, "SAVE", out, sizeof out), 0, "SAVE on node %u: %s", i, out);
	}
}

/* Who claims node id (memsrv:node:{ID}:alive): 1 with the holder, 0. */
static int claim_of(const char *id, char *holder, size_t len)
{
	char cmd[160];
	snprintf(cmd, sizeof cmd, "CLUSTER KEYSLOT memsrv:node:{%s}:alive", id);
	char out[REMOTE_TOKEN_MAX] = "";
	cr_assert_eq(test_cluster_cmd(&tc, 0, cmd, out, sizeof out), 0, "%s", out);
	int node = test_cluster_master_of(&tc, (unsigned)atoi(out));
	cr_assert_geq(node, 0, "no master serves the claim's slot");
	snprintf(cmd, sizeof cmd, "GET memsrv:node:{%s}:alive", id);
	cr_assert_eq(test_cluster_cmd(&tc, (unsigned)node, cmd, out, sizeof out), 0, "%s", out);
	if (strstr(out, "(type"))
		return 0;  /* nil */
	snprintf(holder, len, "%s", out);
	return 1;
}

/* Waits until node id's claim expired (its memsrv was killed). */
static void wait_claim_gone(const char *id, int timeout_ms)
{
	char holder[REMOTE_TOKEN_MAX];
	for (int waited = 0; claim_of(id, holder, sizeof holder); waited += 200) {
		cr_assert_lt(waited, timeout_ms, "%s's claim (%s) stands %d ms on", id, holder, timeout_ms);
		usleep(200000);
	}
}

/* ---- memsrv's figures ---- */

struct remote {
	uint64_t objects, bytes, uploads, upload_bytes, shared, read_errors, unreachable;
	bool condition;  /* "remote-unreachable" among the conditions */
	uint64_t cache_slot_bytes;
};

static struct remote remote_of(const struct test_server *s)
{
	Memsrv__ServerMessage *m = NULL;
	Memsrv__NodeStats *st = ctl_stats_ok(s, &m);
	struct remote r = {
		.objects = st->remote_objects,
		.bytes = st->remote_bytes,
		.uploads = st->remote_uploads,
		.upload_bytes = st->remote_upload_bytes,
		.shared = st->remote_shared,
		.read_errors = st->remote_read_errors,
		.unreachable = st->remote_unreachable,
		.cache_slot_bytes = st->cache_slot_bytes,
	};
	for (size_t i = 0; i < st->n_conditions; i++)
		r.condition |= !strcmp(st->conditions[i], "remote-unreachable");
	memsrv__server_message__free_unpacked(m, NULL);
	return r;
}

/* Waits until at least min_objects are in the cluster and the uploads
 * stopped (the same figures for 600 ms); asserts it within 60 s. */
static struct remote settle(const struct test_server *s, uint64_t min_objects)
{
	struct remote prev = remote_of(s), now = prev;
	unsigned same = 0;
	for (int waited = 0; waited < 60000; waited += 100) {
		usleep(100000);
		now = remote_of(s);
		bool still = now.objects == prev.objects && now.uploads == prev.uploads && now.shared == prev.shared;
		same = still ? same + 1 : 0;
		prev = now;
		if (now.objects >= min_objects && same >= 6)
			return now;
	}
	cr_assert_fail("the remote tier did not settle with %" PRIu64 " objects or more in 60 s: %" PRIu64
		       " objects, %" PRIu64 " uploads, %" PRIu64 " shared",
		       min_objects, now.objects, now.uploads, now.shared);
	return now;
}

/* evict --all; an error reply (eviction stopped) is logged, not failed:
 * the caller checks where the pages went. */
static void evict_all(const struct test_server *s, const char *vm)
{
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_evict(s->sock, vm, 0, true, &m);
	cr_assert_eq(ret, 0, "evict %s: %s", vm, strerror(-ret));
	if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR)
		cr_log_info("evict %s --all: %s", vm, m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
}

/* Whether vmsim answered within ms (its reply is waiting on the pipe). */
static bool sim_answered_within(struct test_sim *sim, int ms)
{
	struct pollfd p = { .fd = fileno(sim->out), .events = POLLIN };
	return poll(&p, 1, ms) > 0;
}

static void expect_verify_reply(struct test_sim *sim, uint64_t pages)
{
	struct sim_reply r;
	sim_wait_reply(sim, "verify", &r);
	cr_assert(r.ok, "%s", r.error);
	cr_assert_eq(sim_value(&r, "mismatches"), 0, "VM %s lost data", sim->name);
	cr_assert_eq(sim_value(&r, "verified_pages"), pages);
}

static void kill_server(struct test_server *s)
{
	kill(s->pid, SIGKILL);
	cr_assert_eq(wait_exit(s->pid), 128 + SIGKILL);
	s->pid = 0;
}

/* ---- the tests ---- */

Test(remote_tier, a_vm_larger_than_the_cache_spills_to_the_cluster_and_leaves_nothing_behind)
{
	start_cluster();
	start_node(&srv_a, "spill-host", "4M");
	/* idle, every master is connected all the same: reachable */
	struct remote idle = remote_of(&srv_a);
	for (int waited = 0; waited < 3000 && (idle.unreachable || idle.condition); waited += 100) {
		usleep(100000);
		idle = remote_of(&srv_a);
	}
	cr_assert(!idle.unreachable && !idle.condition, "an idle node with a healthy cluster says it is unreachable");
	enum { PAGES = (32u << 20) / PAGE };
	struct test_sim sim;
	sim_start(&sim, &srv_a, "spill", "--size", "32M", "--mix", MIX, "--verify", NULL);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv_a, "spill", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, PAGES, "evict --all stopped at %" PRIu64 " pages",
		     m->evict_reply->pages_evicted);
	memsrv__server_message__free_unpacked(m, NULL);

	struct remote r = settle(&srv_a, PAGES / 2);
	cr_assert_leq(r.cache_slot_bytes, 4u << 20, "the cache keeps to its budget");
	cr_assert_gt(r.bytes, 0);
	cr_assert_geq(r.uploads, r.objects, "%" PRIu64 " objects in the cluster, %" PRIu64 " uploaded", r.objects,
		      r.uploads);
	cr_assert_geq(r.upload_bytes, r.bytes);
	cr_assert_eq(r.shared, 0, "a fresh cluster held %" PRIu64 " of this node's objects already", r.shared);
	cr_assert_eq(r.unreachable, 0);
	cr_assert(!r.condition);
	m = ctl_info_ok(&srv_a, "spill");
	cr_assert_gt(m->vm_info->remote_tier_pages, PAGES / 2, "only %" PRIu64 " pages are remote",
		     m->vm_info->remote_tier_pages);
	cr_assert_eq(m->vm_info->swap_pages + m->vm_info->cache_pages + m->vm_info->samefilled_pages +
			     m->vm_info->remote_tier_pages,
		     m->vm_info->stored_pages, "every stored page is in exactly one tier");
	memsrv__server_message__free_unpacked(m, NULL);
	/* the node's index names what it references */
	struct members idx;
	index_members("spill-host", &idx);
	cr_assert_eq(idx.n, r.objects, "the node's index names %zu digests, it holds %" PRIu64 " objects", idx.n,
		     r.objects);
	free(idx.hex);

	sim_expect_verified(&sim, PAGES);
	m = ctl_info_ok(&srv_a, "spill");
	const Memsrv__VmInfo *vi = m->vm_info;
	cr_log_info("spill: faults %" PRIu64 ", stored %" PRIu64 ", remote %" PRIu64 ", prefetched %" PRIu64,
		    vi->faults_total, vi->faults_stored, vi->faults_remote, vi->prefetched_pages);
	cr_assert_gt(vi->faults_remote, 0, "no page was read from the cluster");
	cr_assert_leq(vi->faults_remote, vi->faults_stored, "faults_remote is counted among faults_stored");
	cr_assert_leq(vi->faults_stored, vi->faults_total);
	cr_assert_gt(vi->fault_latency_remote_us->count, 0);
	memsrv__server_message__free_unpacked(m, NULL);
	r = remote_of(&srv_a);
	cr_assert_eq(r.read_errors, 0);
	cr_assert_eq(sim_quit(&sim), 0);

	/* the VM gone: nothing of this node stays, and no object with it */
	expect_node_gone("spill-host", 15000);
	expect_cluster_empty("the VM gone");
	r = remote_of(&srv_a);
	cr_assert_eq(r.objects, 0, "memsrv still counts %" PRIu64 " remote objects", r.objects);
	cr_assert_eq(r.bytes, 0);
}

Test(remote_tier, a_master_killed_while_the_vm_faults_loses_nothing)
{
	start_cluster();
	start_node(&srv_a, "failover-host", "2M");
	enum { PAGES = (32u << 20) / PAGE };
	struct test_sim sim;
	sim_start(&sim, &srv_a, "fo", "--size", "32M", "--mix", MIX, "--verify", NULL);
	evict_all(&srv_a, "fo");
	settle(&srv_a, PAGES / 2);

	int victim = test_cluster_master_of(&tc, 0);
	cr_assert_geq(victim, 0);
	sim_send(&sim, "verify");
	/* kill it once the VM is reading pages from the cluster */
	uint64_t at_kill = 0;
	for (int i = 0; i < 5000 && at_kill < 20; i++) {
		at_kill = CTL_INFO(&srv_a, "fo", faults_remote);
		usleep(1000);
	}
	cr_assert_geq(at_kill, 20, "the VM read no page from the cluster");
	test_cluster_kill(&tc, (unsigned)victim);
	bool early = sim_answered_within(&sim, 0);
	expect_verify_reply(&sim, PAGES);
	Memsrv__ServerMessage *m = ctl_info_ok(&srv_a, "fo");
	const Memsrv__VmInfo *vi = m->vm_info;
	uint64_t faults = vi->faults_remote;
	cr_log_info("failover: faults %" PRIu64 ", stored %" PRIu64 ", remote %" PRIu64 ", prefetched %" PRIu64
		    ", fault errors %" PRIu64, vi->faults_total, vi->faults_stored, vi->faults_remote,
		    vi->prefetched_pages, vi->fault_errors);
	cr_assert_leq(vi->faults_remote, vi->faults_stored, "faults_remote is counted among faults_stored");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert(!early, "verify was over before the master died: nothing tested");
	cr_assert_gt(faults, at_kill, "no page was read from the cluster after the master died");
	struct remote r = remote_of(&srv_a);
	cr_log_info("failover: %" PRIu64 " remote faults, %" PRIu64 " after the kill, %" PRIu64 " read errors",
		    faults, faults - at_kill, r.read_errors);

	/* the node back (a replica now): pages go out and come back again */
	test_cluster_relaunch(&tc, (unsigned)victim);
	cr_assert(test_cluster_wait_ok(&tc, 30000), "the cluster did not heal");
	uint64_t uploads = r.uploads;
	struct sim_reply w;
	sim_cmd(&sim, "write 0.5", &w);  /* new content: new objects to upload */
	cr_assert(w.ok, "%s", w.error);
	evict_all(&srv_a, "fo");
	r = settle(&srv_a, PAGES / 4);
	cr_assert_gt(r.uploads, uploads, "nothing was uploaded after the failover");
	sim_quit_verified(&sim, PAGES);
	expect_node_gone("failover-host", 15000);
}

Test(remote_tier, a_stopped_cluster_holds_faults_and_eviction_until_it_is_back)
{
	start_cluster();
	start_node(&srv_a, "outage-host", "2M");
	enum { PAGES = (24u << 20) / PAGE, WPAGES = (8u << 20) / PAGE };
	struct test_sim sim, writer;
	sim_start(&sim, &srv_a, "down", "--size", "24M", "--mix", MIX, "--verify", NULL);
	evict_all(&srv_a, "down");
	settle(&srv_a, PAGES / 2);
	/* resident, to be evicted while the cluster is down */
	sim_start(&writer, &srv_a, "writer", "--size", "8M", "--mix", "random=100", "--verify", "--seed", "7", NULL);
	struct remote before = settle(&srv_a, PAGES / 2);

	save_all();
	for (unsigned i = 0; i < tc.n; i++)
		test_cluster_kill(&tc, i);
	sim_send(&sim, "verify");
	struct remote r = { 0 };
	for (int waited = 0; waited < 20000 && !r.condition; waited += 100) {
		usleep(100000);
		r = remote_of(&srv_a);
	}
	cr_assert(r.condition, "no remote-unreachable condition 20 s after the cluster stopped");
	cr_assert_eq(r.unreachable, 1);
	/* a fault on a remote page waits: neither an answer nor a death */
	cr_assert(!sim_answered_within(&sim, 2000), "verify answered while the cluster was down");
	cr_assert_eq(waitpid(sim.pid, NULL, WNOHANG), 0, "the VM died while the cluster was down");
	cr_assert(server_alive(&srv_a));
	/* eviction pauses: nothing is uploaded, nothing is dropped */
	char cmd[512], out[512];
	snprintf(cmd, sizeof cmd, "timeout 10 %s --socket %s evict writer --all 2>&1", getenv("CTL_BIN"), srv_a.sock);
	int status = run_capture(cmd, out, sizeof out);
	cr_log_info("evict writer --all while down: status %d: %s", status, out);
	usleep(1000000);
	r = remote_of(&srv_a);
	cr_assert_eq(r.uploads, before.uploads, "%" PRIu64 " uploads while the cluster was down",
		     r.uploads - before.uploads);
	cr_assert(r.condition);
	cr_assert(!sim_answered_within(&sim, 0), "verify answered while the cluster was down");

	for (unsigned i = 0; i < tc.n; i++)
		test_cluster_relaunch(&tc, i);
	cr_assert(test_cluster_wait_ok(&tc, 30000), "the cluster did not come back");
	expect_verify_reply(&sim, PAGES);
	cr_assert_gt(CTL_INFO(&srv_a, "down", faults_remote), 0);
	for (int waited = 0; waited < 10000 && (r.condition || r.unreachable); waited += 100) {
		usleep(100000);
		r = remote_of(&srv_a);
	}
	cr_assert(!r.condition && !r.unreachable, "remote-unreachable stays with the cluster back");
	/* eviction goes on */
	evict_all(&srv_a, "writer");
	r = settle(&srv_a, 1);
	cr_assert_gt(r.uploads, before.uploads, "nothing was uploaded once the cluster was back");
	sim_quit_verified(&writer, WPAGES);
	sim_quit_verified(&sim, PAGES);
	expect_node_gone("outage-host", 15000);
}

Test(remote_tier, a_second_node_with_the_same_pages_uploads_almost_nothing)
{
	start_cluster();
	/* which pages stay in a cache depends on when writeback ran (a few
	 * hundred of 2M): the first node's smaller cache sends all the
	 * second's cold pages, and some more */
	start_node(&srv_a, "twin-a", "1M");
	start_node(&srv_b, "twin-b", "2M");
	enum { PAGES = (24u << 20) / PAGE };
	struct test_sim sa, sb;
	sim_start(&sa, &srv_a, "twin", "--size", "24M", "--mix", MIX, "--seed", "5", "--verify", NULL);
	evict_all(&srv_a, "twin");
	struct remote a = settle(&srv_a, PAGES / 2);
	sim_start(&sb, &srv_b, "twin", "--size", "24M", "--mix", MIX, "--seed", "5", "--verify", NULL);
	evict_all(&srv_b, "twin");
	struct remote b = settle(&srv_b, PAGES / 2);
	cr_log_info("twin-a: %" PRIu64 " objects, %" PRIu64 " uploaded (%" PRIu64 " bytes); twin-b: %" PRIu64
		    " objects, %" PRIu64 " uploaded (%" PRIu64 " bytes), %" PRIu64 " shared",
		    a.objects, a.uploads, a.upload_bytes, b.objects, b.uploads, b.upload_bytes, b.shared);
	cr_assert_gt(a.upload_bytes, 0);
	cr_assert_leq(b.upload_bytes * 10, a.upload_bytes, "the second node uploaded %" PRIu64 " bytes, the first %" PRIu64,
		      b.upload_bytes, a.upload_bytes);
	cr_assert_geq(b.shared * 10, b.objects * 8, "only %" PRIu64 " of the second node's %" PRIu64
		      " remote objects were found in the cluster", b.shared, b.objects);
	/* both reference them; the second sent only what the first did not hold */
	struct cluster_keys ks;
	scan_keys(&ks);
	unsigned by_a = refs_naming(&ks, "twin-a"), by_b = refs_naming(&ks, "twin-b");
	keys_free(&ks);
	cr_assert_eq(by_a, a.objects);
	cr_assert_eq(by_b, b.objects);
	struct members ia, ib;
	index_members("twin-a", &ia);
	index_members("twin-b", &ib);
	uint64_t both = 0;
	for (size_t i = 0; i < ib.n; i++)
		both += members_has(&ia, ib.hex[i]);
	free(ia.hex);
	free(ib.hex);
	cr_assert_eq(b.shared, both, "the second found %" PRIu64 " objects in the cluster, the first holds %" PRIu64
		     " of its objects", b.shared, both);
	cr_assert_eq(b.uploads, ib.n - both, "the second uploaded %" PRIu64 " objects, %" PRIu64 " were not held",
		     b.uploads, (uint64_t)(ib.n - both));

	sim_expect_verified(&sb, PAGES);
	cr_assert_gt(CTL_INFO(&srv_b, "twin", faults_remote), 0);
	/* the first lets go: the second's pages stay */
	cr_assert_eq(sim_quit(&sa), 0);
	expect_node_gone("twin-a", 15000);
	evict_all(&srv_b, "twin");
	settle(&srv_b, PAGES / 2);
	sim_quit_verified(&sb, PAGES);
	expect_node_gone("twin-b", 15000);
	expect_cluster_empty("both let go");
}

Test(remote_tier, a_vanished_node_is_collected_by_another)
{
	start_cluster();
	start_node(&srv_a, "gone-a", "2M");
	start_node(&srv_b, "live-b", "2M");
	enum { PAGES = (16u << 20) / PAGE };
	struct test_sim sa, sb;
	/* half the pages a base image both VMs hold, half of each its own */
	sim_start(&sa, &srv_a, "va", "--size", "16M", "--mix", MIX, "--seed", "11", "--private-pct", "50",
		  "--verify", NULL);
	sim_start(&sb, &srv_b, "vb", "--size", "16M", "--mix", MIX, "--seed", "12", "--private-pct", "50",
		  "--verify", NULL);
	evict_all(&srv_a, "va");
	settle(&srv_a, PAGES / 2);
	evict_all(&srv_b, "vb");
	settle(&srv_b, PAGES / 2);

	struct members ia, ib;
	index_members("gone-a", &ia);
	index_members("live-b", &ib);
	unsigned shared = 0;
	for (size_t i = 0; i < ia.n; i++)
		shared += members_has(&ib, ia.hex[i]);
	cr_assert_gt(ia.n, PAGES / 4, "gone-a's index names %zu digests", ia.n);
	cr_assert_gt(shared, 0, "the two nodes reference no object in common: nothing tested");
	cr_assert_lt(shared, ia.n, "gone-a holds nothing of its own: nothing tested");

	/* A vanishes: memsrv killed, its VM with it */
	kill_server(&srv_a);
	sim_kill(&sa);
	char cmd[512], out[512] = "";
	snprintf(cmd, sizeof cmd, "%s --socket %s remote gc gone-a 2>&1", getenv("CTL_BIN"), srv_b.sock);
	/* its claim stands a while: it might be alive, and gc refuses */
	int status = run_capture(cmd, out, sizeof out);
	cr_assert_eq(status, 1, "gc of a node whose claim stands: status %d: %s", status, out);
	cr_assert(strstr(out, "gone-a is running"), "%s", out);
	wait_claim_gone("gone-a", REMOTE_ALIVE_TTL_MS + 5000);
	status = run_capture(cmd, out, sizeof out);
	cr_assert_eq(status, 0, "memsrv-ctl remote gc: status %d: %s", status, out);
	const char *digit = strpbrk(out, "0123456789");
	cr_assert(digit, "memsrv-ctl remote gc printed no number: %s", out);
	long dropped = strtol(digit, NULL, 10);
	cr_assert_eq(dropped, (long)ia.n, "gc dropped %ld references, gone-a's index named %zu: %s", dropped, ia.n,
		     out);

	struct cluster_keys ks;
	scan_keys(&ks);
	char key[128];
	index_key("gone-a", key, sizeof key);
	cr_assert(!has_key(&ks, key), "%s stays after gc", key);
	cr_assert_eq(refs_naming(&ks, "gone-a"), 0, ":r sets still name gone-a after gc");
	unsigned kept = 0, freed = 0;
	for (size_t i = 0; i < ia.n; i++) {
		char o[128], r[128];
		snprintf(o, sizeof o, "memsrv:{%s}:o", ia.hex[i]);
		snprintf(r, sizeof r, "memsrv:{%s}:r", ia.hex[i]);
		if (members_has(&ib, ia.hex[i])) {
			cr_assert(has_key(&ks, o), "%s, which live-b references, was deleted", o);
			kept++;
		} else {
			cr_assert(!has_key(&ks, o), "%s, which only gone-a referenced, stays after gc", o);
			cr_assert(!has_key(&ks, r), "%s, which only gone-a referenced, stays after gc", r);
			freed++;
		}
	}
	keys_free(&ks);
	cr_log_info("gc: %ld dropped, %u objects kept (live-b's), %u freed", dropped, kept, freed);
	free(ia.hex);
	free(ib.hex);

	sim_expect_verified(&sb, PAGES);
	cr_assert_gt(CTL_INFO(&srv_b, "vb", faults_remote), 0);
	cr_assert_eq(sim_quit(&sb), 0);
	expect_node_gone("live-b", 15000);
	expect_cluster_empty("both gone");
}

/* ---- restart and migration ---- */

/* Another memsrv with opts, on sock in s's directory, expected to stop
 * at start: its exit status, and what it said in out. */
static int run_memsrv(const struct test_server *s, const char *sock, const char *const *opts, char *out, size_t len)
{
	char cmd[1024];
	int n = snprintf(cmd, sizeof cmd, "%s --socket %s/%s", getenv("MEMSRV_BIN"), s->dir, sock);
	for (unsigned i = 0; opts[i]; i++)
		n += snprintf(cmd + n, sizeof cmd - (size_t)n, " '%s'", opts[i]);
	snprintf(cmd + n, sizeof cmd - (size_t)n, " 2>&1");
	return run_capture(cmd, out, len);
}

static bool one_vm_attached(void *arg)
{
	return ctl_vm_count(arg) == 1;
}

Test(remote_tier, a_killed_memsrv_with_a_state_dir_finds_its_pages_in_the_cluster_again)
{
	start_cluster();
	char state[64];
	cr_assert(scratch_make(state, sizeof state, "/tmp/memsrv-remote-state.XXXXXX"));
	const char *extra[] = { "--state-dir", state, NULL };
	const char *opts[16];
	node_options(opts, "kept-host", "2M", extra);
	server_start_with(&srv_a, opts);
	enum { PAGES = (16u << 20) / PAGE };
	struct test_sim sim;
	sim_start(&sim, &srv_a, "kept", "--size", "16M", "--mix", MIX, "--verify", NULL);
	evict_all(&srv_a, "kept");
	struct remote before = settle(&srv_a, PAGES / 2);

	kill_server(&srv_a);
	/* its pages in the cluster are referenced under its id: another is refused */
	const char *wrong[16];
	node_options(wrong, "other-host", "2M", extra);
	char out[2048] = "";
	int status = run_memsrv(&srv_a, "wrong.sock", wrong, out, sizeof out);
	cr_assert_eq(status, 1, "a restart under another node id: status %d: %s", status, out);
	cr_assert(strstr(out, "referenced by node id 'kept-host'"), "%s", out);
	server_relaunch(&srv_a, opts);  /* its claim is its own: no wait */
	cr_assert(wait_until(one_vm_attached, &srv_a, 10000), "the VM resumed");
	struct remote after = remote_of(&srv_a);
	cr_assert_eq(after.objects, before.objects, "%" PRIu64 " remote objects before the kill, %" PRIu64 " after",
		     before.objects, after.objects);
	cr_assert_geq(CTL_INFO(&srv_a, "kept", remote_tier_pages), PAGES / 2);
	struct members idx;
	index_members("kept-host", &idx);
	cr_assert_eq(idx.n, after.objects, "the cluster still names the node's objects");
	free(idx.hex);
	sim_expect_verified(&sim, PAGES);
	cr_assert_gt(CTL_INFO(&srv_a, "kept", faults_remote), 0);
	cr_assert_eq(sim_quit(&sim), 0);
	expect_node_gone("kept-host", 15000);
	scratch_remove(state);
}

Test(remote_tier, a_memsrv_started_again_without_its_state_drops_what_its_node_left)
{
	start_cluster();
	start_node(&srv_a, "crashed-host", "2M");
	struct test_sim sim;
	sim_start(&sim, &srv_a, "lost", "--size", "8M", "--mix", MIX, NULL);
	evict_all(&srv_a, "lost");
	settle(&srv_a, 512);
	kill_server(&srv_a);
	sim_kill(&sim);
	char why[256];
	cr_assert(node_left_something("crashed-host", why, sizeof why), "the kill left nothing to collect: %s", why);
	wait_claim_gone("crashed-host", REMOTE_ALIVE_TTL_MS + 5000);  /* a new memsrv would wait for it */
	/* no state to resume: what the node id holds is garbage, dropped at start */
	const char *opts[16];
	node_options(opts, "crashed-host", "2M", NULL);
	server_relaunch(&srv_a, opts);
	expect_node_gone("crashed-host", 15000);
	cr_assert(server_log_has(&srv_a, "references an earlier memsrv of node crashed-host left"));
	expect_cluster_empty("the leftovers dropped");
}

/* memsrv-ctl migrate on a thread of its own: it answers at the end. */
struct migration {
	pthread_t thread;
	const char *sock, *vm, *to;
	int ret;
	Memsrv__ServerMessage *reply;
};

static void *migrate_main(void *arg)
{
	struct migration *m = arg;
	struct ctl_req r;
	ctl_build_migrate(&r, m->vm, m->to);
	m->ret = ctl_request(m->sock, &r.msg, &m->reply);
	return NULL;
}

struct vm_at {
	const struct test_server *srv;
	const char *vm;
};

static bool sending(void *arg)
{
	const struct vm_at *at = arg;
	Memsrv__ServerMessage *m = ctl_info_ok(at->srv, at->vm);
	const Memsrv__VmInfo *i = m->vm_info;
	/* accepted, and the first pass went */
	bool yes = i->migration && !strcmp(i->migration, "sending") &&
		   (i->migration_round >= 2 || i->migration_pages_left < 1024);
	memsrv__server_message__free_unpacked(m, NULL);
	return yes;
}

static void cmd_ok(struct test_sim *sim, const char *cmd)
{
	struct sim_reply r;
	sim_cmd(sim, cmd, &r);
	cr_assert(r.ok, "vmsim %s: %s: %s", sim->name, cmd, r.error);
}

Test(remote_tier, a_migration_within_the_cluster_sends_its_remote_pages_by_name)
{
	start_cluster();
	char listen_b[32], dir[64], cmd[128];
	snprintf(listen_b, sizeof listen_b, "127.0.0.1:%u", free_loopback_port());
	const char *extra_b[] = { "--peer-listen", listen_b, NULL };
	const char *opts[16];
	start_node(&srv_a, "from-host", "2M");
	node_options(opts, "to-host", "2M", extra_b);
	server_start_with(&srv_b, opts);
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-remote-move.XXXXXX"));
	enum { PAGES = (32u << 20) / PAGE };
	struct test_sim src, dst;
	sim_start(&src, &srv_a, "mover", "--size", "32M", "--mix", MIX, "--verify", NULL);
	sim_start(&dst, &srv_b, "mover", "--size", "32M", "--mix", MIX, "--incoming", "--verify", NULL);
	evict_all(&srv_a, "mover");
	struct remote a = settle(&srv_a, PAGES / 2);

	struct migration m = { .sock = srv_a.sock, .vm = "mover", .to = listen_b };
	cr_assert_eq(pthread_create(&m.thread, NULL, migrate_main, &m), 0);
	struct vm_at at = { &srv_a, "mover" };
	cr_assert(wait_until(sending, &at, 30000), "the migration's first pass went");
	snprintf(cmd, sizeof cmd, "save %s", dir);
	cmd_ok(&src, cmd);
	cmd_ok(&src, "migrated");
	cr_assert_eq(wait_exit(src.pid), 0, "the source VMM leaves once the destination holds every page");
	pthread_join(m.thread, NULL);
	cr_assert_eq(m.ret, 0);
	cr_assert_eq(m.reply->msg_case, MEMSRV__SERVER_MESSAGE__MSG_MIGRATE_REPLY, "%s",
		     m.reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m.reply->error->message : "not a reply");
	const Memsrv__MigrateReply *r = m.reply->migrate_reply;
	cr_log_info("migrated: %" PRIu64 " bytes, %" PRIu64 " pages with content, %" PRIu64 " by name, %" PRIu64
		    " taken there; %" PRIu64 " objects were remote",
		    r->bytes_sent, r->data_pages, r->remote_named_pages, r->shared_pages, a.objects);
	cr_assert_geq(r->remote_named_pages, a.objects * 9 / 10, "only %" PRIu64 " of %" PRIu64 " remote pages went by name",
		      r->remote_named_pages, a.objects);
	cr_assert_geq(r->shared_pages, r->remote_named_pages, "the destination referenced what was named");
	/* names, not pages: far less than the objects' own bytes */
	cr_assert_lt(r->bytes_sent, a.bytes / 4, "%" PRIu64 " bytes sent for %" PRIu64 " bytes of remote objects",
		     r->bytes_sent, a.bytes);
	memsrv__server_message__free_unpacked(m.reply, NULL);

	struct remote b = remote_of(&srv_b);
	cr_assert_eq(b.uploads, 0, "the destination uploaded %" PRIu64 " objects the cluster held", b.uploads);
	cr_assert_geq(b.objects, a.objects * 9 / 10);
	expect_node_gone("from-host", 15000);  /* the source let go; the destination's references hold them */
	snprintf(cmd, sizeof cmd, "expect %s", dir);
	cmd_ok(&dst, cmd);
	sim_expect_verified(&dst, PAGES);
	cr_assert_gt(CTL_INFO(&srv_b, "mover", faults_remote), 0, "the destination read its pages from the cluster");
	cr_assert_eq(sim_quit(&dst), 0);
	expect_node_gone("to-host", 15000);
	expect_cluster_empty("the VM gone from both nodes");
	scratch_remove(dir);
}

Test(remote_tier, a_node_id_runs_once_and_a_clean_stop_frees_it_at_once)
{
	start_cluster();
	start_node(&srv_a, "once-host", "2M");
	char holder[REMOTE_TOKEN_MAX];
	cr_assert_eq(claim_of("once-host", holder, sizeof holder), 1, "a running memsrv claims its node id");
	cr_assert(strstr(holder, " pid "), "the claim names its holder: %s", holder);
	/* a second memsrv with that id: refused (after waiting out a claim
	 * that might have been a crashed memsrv's), saying why */
	const char *opts[16];
	node_options(opts, "once-host", "2M", NULL);
	char out[2048] = "";
	int status = run_memsrv(&srv_a, "second.sock", opts, out, sizeof out);
	cr_assert_eq(status, 1, "a second memsrv of one node id: status %d: %s", status, out);
	cr_assert(strstr(out, "node id 'once-host' is in use by another memsrv"), "%s", out);
	cr_assert(server_alive(&srv_a));
	cr_assert_eq(claim_of("once-host", holder, sizeof holder), 1, "the refused one took nothing");
	server_stop(&srv_a);
	cr_assert_eq(claim_of("once-host", holder, sizeof holder), 0, "a clean stop leaves its claim: %s", holder);
	/* so the next one starts at once */
	start_node(&srv_a, "once-host", "2M");
	cr_assert_eq(claim_of("once-host", holder, sizeof holder), 1);
}

/* ---- snapshots left in the cluster ---- */

/* memsrv-ctl snapshot VM DIR --remote on s: the reply. */
static Memsrv__SnapshotReply *snapshot_remote_ok(const struct test_server *s, const char *vm, const char *dir,
						  Memsrv__ServerMessage **m)
{
	int ret = ctl_snapshot_to(s->sock, vm, dir, true, m);
	cr_assert_eq(ret, 0, "snapshot --remote: %s", strerror(-ret));
	cr_assert_eq((*m)->msg_case, MEMSRV__SERVER_MESSAGE__MSG_SNAPSHOT_REPLY, "snapshot --remote of %s: %s", vm,
		     (*m)->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? (*m)->error->message : "no reply");
	Memsrv__SnapshotReply *sr = (*m)->snapshot_reply;
	cr_assert(sr->remote_holder && !strncmp(sr->remote_holder, "image-", 6), "holder '%s'",
		  sr->remote_holder ? sr->remote_holder : "");
	/* the image holds names of 32 bytes, not pages */
	cr_assert_eq(sr->data_bytes, sr->objects * 32);
	cr_assert_eq(sr->remote_uploaded + sr->remote_shared, sr->objects);
	return sr;
}

/* Every object the holder's index names is in the cluster. */
static size_t expect_holder_whole(const char *holder)
{
	struct members m;
	index_members(holder, &m);
	struct cluster_keys ks;
	scan_keys(&ks);
	for (size_t i = 0; i < m.n; i++) {
		char o[128];
		snprintf(o, sizeof o, "memsrv:{%s}:o", m.hex[i]);
		cr_assert(has_key(&ks, o), "%s, which image %s names, is gone", o, holder);
	}
	cr_assert_eq(refs_naming(&ks, holder), m.n);
	keys_free(&ks);
	free(m.hex);
	return m.n;
}

Test(remote_tier, a_snapshot_left_in_the_cluster_resumes_on_another_node)
{
	char scratch[128], img[160], img2[160], cmd[512], out[512] = "";
	start_cluster();
	start_node(&srv_a, "snap-a", "2M");
	start_node(&srv_b, "snap-b", "2M");
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-remote-snap.XXXXXX"));
	snprintf(img, sizeof img, "%s/img", scratch);
	snprintf(img2, sizeof img2, "%s/img2", scratch);
	cr_assert_eq(mkdir(img2, 0700), 0);
	enum { PAGES = (16u << 20) / PAGE };

	/* the source: pages in the cluster, in the cache and resident */
	struct test_sim src;
	sim_start(&src, &srv_a, "source", "--size", "16M", "--mix", MIX, "--seed", "21", "--verify", NULL);
	struct sim_reply r;
	sim_cmd(&src, "write 0.3", &r);
	cr_assert(r.ok, "%s", r.error);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv_a, "source", 12 << 20, false);
	memsrv__server_message__free_unpacked(m, NULL);
	settle(&srv_a, PAGES / 4);
	snprintf(cmd, sizeof cmd, "save %s", img);
	sim_cmd(&src, cmd, &r);  /* vmsim's record of every page's version, beside the image */
	cr_assert(r.ok, "%s", r.error);
	Memsrv__SnapshotReply *sr = snapshot_remote_ok(&srv_a, "source", img, &m);
	char holder[64];
	snprintf(holder, sizeof holder, "%s", sr->remote_holder);
	cr_log_info("snapshot --remote: %" PRIu64 " objects, %" PRIu64 " sent (%" PRIu64 " bytes), %" PRIu64
		    " by name; image file %" PRIu64 " bytes", sr->objects, sr->remote_uploaded, sr->remote_bytes,
		    sr->remote_shared, sr->file_bytes);
	cr_assert_gt(sr->remote_shared, PAGES / 8, "the pages in the cluster were not named: %" PRIu64, sr->remote_shared);
	cr_assert_gt(sr->remote_uploaded, 0, "no resident page was sent");
	cr_assert_lt(sr->file_bytes, (uint64_t)PAGES * 8 + (1u << 20), "the image holds pages: %" PRIu64 " bytes",
		     sr->file_bytes);
	memsrv__server_message__free_unpacked(m, NULL);

	/* the source and its node go: the image's objects stay */
	cr_assert_eq(sim_quit(&src), 0);
	stop_server(&srv_a);
	expect_node_gone("snap-a", 15000);
	size_t named = expect_holder_whole(holder);
	cr_assert_gt(named, PAGES / 4);

	/* a node without the cluster cannot resume it, and says why */
	server_start(&srv_a);
	pid_t pid = sim_spawn(&srv_a, "nowhere", "--resume", img, NULL);
	cr_assert_neq(wait_exit(pid), 0, "a node without --remote resumed an image whose pages are in the cluster");
	cr_assert_eq(ctl_vm_count(&srv_a), 0);

	/* another node resumes it: every page as the source had it */
	struct test_sim res;
	sim_start(&res, &srv_b, "resumed", "--resume", img, "--verify", NULL);
	sim_expect_verified(&res, PAGES);
	cr_assert_gt(CTL_INFO(&srv_b, "resumed", faults_image), 0, "no page came from the image");
	/* verify reads in order: the stream was read ahead of its faults */
	cr_assert_gt(CTL_INFO(&srv_b, "resumed", prefetched_pages), 0, "no named page was read ahead");
	cr_assert_eq(CTL_INFO(&srv_b, "resumed", fault_errors), 0);

	/* its own snapshot --remote names what the cluster holds: no byte sent */
	sr = snapshot_remote_ok(&srv_b, "resumed", img2, &m);
	cr_log_info("again: %" PRIu64 " objects, %" PRIu64 " sent, %" PRIu64 " by name", sr->objects,
		    sr->remote_uploaded, sr->remote_shared);
	cr_assert_eq(sr->remote_bytes, 0, "pages the cluster held were sent again");
	char holder2[64];
	snprintf(holder2, sizeof holder2, "%s", sr->remote_holder);
	cr_assert_str_neq(holder, holder2);
	memsrv__server_message__free_unpacked(m, NULL);
	sim_quit_verified(&res, PAGES);
	expect_node_gone("snap-b", 15000);

	/* each image goes when its holder is collected */
	snprintf(cmd, sizeof cmd, "%s --socket %s remote gc %s 2>&1", getenv("CTL_BIN"), srv_b.sock, holder);
	int status = run_capture(cmd, out, sizeof out);
	cr_assert_eq(status, 0, "memsrv-ctl remote gc %s: status %d: %s", holder, status, out);
	expect_holder_whole(holder2);
	snprintf(cmd, sizeof cmd, "%s --socket %s remote gc %s 2>&1", getenv("CTL_BIN"), srv_b.sock, holder2);
	status = run_capture(cmd, out, sizeof out);
	cr_assert_eq(status, 0, "memsrv-ctl remote gc %s: status %d: %s", holder2, status, out);
	expect_cluster_empty("both images collected");
	snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
	cr_assert_eq(system(cmd), 0);
}

/* How many keys name an image's holder (its index, or :r sets naming it). */
static unsigned image_holder_keys(void)
{
	struct cluster_keys ks;
	scan_keys(&ks);
	unsigned n = 0;
	for (size_t i = 0; i < ks.n; i++)
		n += strstr(ks.k[i].name, "{image-") != NULL;
	n += refs_naming(&ks, "image-");
	keys_free(&ks);
	return n;
}

/* A snapshot --remote that cannot be taken: asserts the error names why,
 * and that DIR holds no image, not even a partial one. */
static void expect_snapshot_refused(const char *dir, const char *why)
{
	Memsrv__ServerMessage *m = NULL;
	int ret = ctl_snapshot_to(srv_a.sock, "keep", dir, true, &m);
	cr_assert_eq(ret, 0, "snapshot --remote: %s", strerror(-ret));
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "a snapshot --remote was taken: %s", why);
	cr_log_info("snapshot --remote refused: %s", m->error->message);
	cr_assert(strstr(m->error->message, why), "%s", m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
	char path[256];
	snprintf(path, sizeof path, "%s/memory.img", dir);
	cr_assert_neq(access(path, F_OK), 0, "%s exists", path);
	snprintf(path, sizeof path, "%s/.memory.img.partial", dir);
	cr_assert_neq(access(path, F_OK), 0, "%s exists", path);
}

Test(remote_tier, a_snapshot_the_cluster_cannot_keep_leaves_no_image_and_nothing_behind)
{
	char dir[128], cmd[256];
	start_cluster();
	start_node(&srv_a, "snapfail", "64M");  /* room for every page: only the snapshot uploads */
	cr_assert(scratch_make(dir, sizeof dir, "/var/tmp/memsrv-remote-snapfail.XXXXXX"));
	enum { PAGES = (8u << 20) / PAGE };
	struct test_sim sim;
	sim_start(&sim, &srv_a, "keep", "--size", "8M", "--mix", MIX, "--seed", "31", "--verify", NULL);

	/* no replica: no WAIT is answered, no object counts as kept */
	unsigned killed = 0;
	for (unsigned i = 0; i < tc.n; i++) {
		redisContext *c = node_connect(i);
		bool replica = c && !node_is_master(c);
		if (c)
			redisFree(c);
		if (replica) {
			test_cluster_kill(&tc, i);
			killed++;
		}
	}
	cr_assert_eq(killed, 3);
	expect_snapshot_refused(dir, "replica");
	/* what the failed snapshot referenced goes, in the background */
	unsigned left = image_holder_keys();
	for (int waited = 0; waited < 15000 && left; waited += 200) {
		usleep(200000);
		left = image_holder_keys();
	}
	cr_assert_eq(left, 0, "%u keys of the failed image's holder stay in the cluster", left);

	/* no cluster at all: refused at once */
	for (unsigned i = 0; i < tc.n; i++)
		if (tc.pid[i])
			test_cluster_kill(&tc, i);
	struct remote r = { 0 };
	for (int waited = 0; waited < 20000 && !r.unreachable; waited += 100) {
		usleep(100000);
		r = remote_of(&srv_a);
	}
	cr_assert(r.unreachable, "no remote-unreachable 20 s after the cluster stopped");
	expect_snapshot_refused(dir, "cannot be reached");

	/* the VM never noticed */
	sim_quit_verified(&sim, PAGES);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}
