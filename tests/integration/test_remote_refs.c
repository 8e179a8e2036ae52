/* Description: the remote tier's objects and references in a real Redis
 * Cluster (server/store/remote_refs.c): a page two hosts hold is uploaded
 * once and freed when the last lets go; many hosts' twins are only
 * referenced; a vanished host's references are collected (gc) and nothing
 * of a host stays once it let go of everything; a reference taken while
 * another host drops the last one never points at nothing; a key holding
 * what is not an object is an error, never a value; the ACL user the docs
 * give does all the tier does, and one without EVAL is refused, saying why. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "redis_cluster.h"
#include "redis_cluster_harness.h"
#include "remote_object.h"
#include "remote_refs.h"
#include "remote_tier.h"

static struct test_cluster tc;
static struct rc_cluster *rc;
static struct remote_node host_a, host_b;
static struct codec_ctx *ctx;

static void setup(void)
{
	if (!test_cluster_available())
		cr_skip_test("no redis-server or redis-cli here (Debian's redis-server, redis-tools)");
	test_cluster_start(&tc, 3, 1, NULL);
	struct rc_config cfg = { .seeds = { tc.seed }, .n_seeds = 1 };
	char why[256] = "";
	cr_assert_eq(rc_open(&rc, &cfg, why, sizeof why), 0, "%s", why);
	cr_assert_eq(remote_node_init(&host_a, rc, "host-a"), 0);
	cr_assert_eq(remote_node_init(&host_b, rc, "host-b"), 0);
	ctx = codec_ctx_create();
}

static void teardown(void)
{
	rc_close(rc);
	rc = NULL;
	codec_ctx_destroy(ctx);
	ctx = NULL;
	test_cluster_stop(&tc);
}

TestSuite(remote_refs, .init = setup, .fini = teardown, .timeout = 240);

/* ---- calls made synchronous ---- */

struct result {
	bool done;
	int value;
};

static void on_result(void *arg, int result)
{
	struct result *r = arg;
	cr_assert(!r->done, "a call completed twice");
	r->done = true;
	r->value = result;
}

struct value {
	bool done;
	int err;
	size_t len;
	uint8_t bytes[REMOTE_OBJECT_MAX];
};

static void on_value(void *arg, const void *v, size_t len, int err)
{
	struct value *out = arg;
	out->done = true;
	out->err = err;
	out->len = len;
	if (!err && len <= sizeof out->bytes)
		memcpy(out->bytes, v, len);
}

static void drain(void)
{
	for (int waited = 0; rc_pending(rc); waited += 50) {
		cr_assert_lt(waited, 30000, "%u commands pending after 30 s", rc_pending(rc));
		cr_assert_geq(rc_poll(rc, 50), 0);
	}
}

static int ref(struct remote_node *n, const struct remote_digest *d)
{
	struct result r = { 0 };
	cr_assert_eq(remote_ref(n, d, on_result, &r), 0);
	drain();
	cr_assert(r.done);
	return r.value;
}

static int unref(struct remote_node *n, const struct remote_digest *d)
{
	struct result r = { 0 };
	cr_assert_eq(remote_unref(n, d, on_result, &r), 0);
	drain();
	cr_assert(r.done);
	return r.value;
}

/* A page of its own for each number, its digest and its object. */
static uint8_t page_buf[CODEC_PAGE], obj_buf[REMOTE_OBJECT_MAX];

static size_t make(unsigned i, struct remote_digest *d)
{
	for (unsigned k = 0; k < CODEC_PAGE; k += 8) {
		uint64_t w = (uint64_t)i * 0x9e3779b97f4a7c15ull + (k / 64);
		memcpy(page_buf + k, &w, 8);
	}
	remote_digest_page(page_buf, d);
	const void *enc;
	uint32_t len = codec_compress(ctx, CODEC_LZ4, page_buf, CODEC_PAGE, &enc);
	cr_assert_gt(len, 0);
	return remote_object_encode(CODEC_LZ4, enc, len, obj_buf);
}

static int put(struct remote_node *n, unsigned i)
{
	struct remote_digest d;
	size_t len = make(i, &d);
	struct result r = { 0 };
	cr_assert_eq(remote_put(n, &d, obj_buf, len, on_result, &r), 0);
	drain();
	return r.value;
}

/* The page of i as the cluster holds it: 0, -ENOENT, or why it is not it. */
static int fetch(unsigned i)
{
	struct remote_digest d;
	make(i, &d);
	static struct value v;
	memset(&v, 0, sizeof v);
	cr_assert_eq(remote_get(&host_a, &d, on_value, &v), 0);
	drain();
	if (v.err)
		return v.err;
	uint8_t back[CODEC_PAGE];
	char why[128];
	int ret = remote_object_decode(ctx, v.bytes, v.len, &d, back, why, sizeof why);
	cr_assert_eq(ret, 0, "object %u: %s", i, why);
	return memcmp(back, page_buf, CODEC_PAGE) ? -EILSEQ : 0;
}

static unsigned cluster_keys(void)
{
	unsigned keys = 0;
	for (unsigned i = 0; i < tc.n; i++) {
		char out[512];
		if (test_cluster_cmd(&tc, i, "INFO replication", out, sizeof out) || !strstr(out, "role:master"))
			continue;
		cr_assert_eq(test_cluster_cmd(&tc, i, "DBSIZE", out, sizeof out), 0);
		keys += (unsigned)atoi(out);
	}
	return keys;
}

Test(remote_refs, a_page_two_hosts_hold_is_uploaded_once_and_freed_by_the_last)
{
	struct remote_digest d;
	make(1, &d);
	size_t len = make(1, &d);
	cr_assert_eq(ref(&host_a, &d), 0, "the cluster held an object never put");
	cr_assert_eq(put(&host_a, 1), 0);
	cr_assert_eq(ref(&host_b, &d), (int)len, "host-b found what host-a put, of its length");
	cr_assert_eq(fetch(1), 0);
	cr_assert_eq(unref(&host_a, &d), 0, "host-a's unref freed what host-b holds");
	cr_assert_eq(fetch(1), 0);
	cr_assert_eq(unref(&host_b, &d), 1, "the last unref did not free it");
	cr_assert_eq(fetch(1), -ENOENT);
	cr_assert_eq(cluster_keys(), 0, "something of the hosts stayed behind");
}

Test(remote_refs, many_twins_are_referenced_not_uploaded_and_a_vanished_host_is_collected)
{
	enum { N = 600 };
	struct result r[N];
	struct remote_digest d[N];
	/* host-a puts N pages, pipelined */
	for (unsigned i = 0; i < N; i++) {
		size_t len = make(100 + i, &d[i]);
		r[i] = (struct result){ 0 };
		cr_assert_eq(remote_put(&host_a, &d[i], obj_buf, len, on_result, &r[i]), 0);
	}
	drain();
	for (unsigned i = 0; i < N; i++)
		cr_assert(r[i].done && r[i].value == 0, "put %u: %d", i, r[i].value);
	/* host-b has the first half as twins: each a reference, no upload */
	for (unsigned i = 0; i < N / 2; i++) {
		r[i] = (struct result){ 0 };
		cr_assert_eq(remote_ref(&host_b, &d[i], on_result, &r[i]), 0);
	}
	drain();
	for (unsigned i = 0; i < N / 2; i++)
		cr_assert_gt(r[i].value, REMOTE_HEADER_BYTES, "host-b's twin %u was not found", i);

	/* host-a vanishes: gc drops all it held; what host-b holds stays */
	long dropped = remote_gc_node(rc, "host-a", 30000);
	cr_assert_eq(dropped, N, "gc dropped %ld of host-a's %d references", dropped, N);
	for (unsigned i = 0; i < N; i += 25)
		cr_assert_eq(fetch(100 + i), i < N / 2 ? 0 : -ENOENT, "page %u after host-a's gc", i);
	dropped = remote_gc_node(rc, "host-b", 30000);
	cr_assert_eq(dropped, N / 2);
	cr_assert_eq(cluster_keys(), 0, "something of the hosts stayed behind");
}

Test(remote_refs, a_reference_racing_the_last_unref_never_points_at_nothing)
{
	struct remote_digest d;
	for (unsigned round = 0; round < 100; round++) {
		make(7, &d);
		cr_assert_eq(put(&host_a, 7), 0);
		/* both in flight at once: host-a's last unref, host-b's ref */
		struct result u = { 0 }, b = { 0 };
		if (round % 2) {
			cr_assert_eq(remote_unref(&host_a, &d, on_result, &u), 0);
			cr_assert_eq(remote_ref(&host_b, &d, on_result, &b), 0);
		} else {
			cr_assert_eq(remote_ref(&host_b, &d, on_result, &b), 0);
			cr_assert_eq(remote_unref(&host_a, &d, on_result, &u), 0);
		}
		drain();
		cr_assert(u.value >= 0 && b.value >= 0);
		cr_assert_eq(u.value, b.value == 0, "round %u: unref freed %d, ref found %d", round, u.value, b.value);
		cr_assert_eq(fetch(7), b.value ? 0 : -ENOENT, "round %u: host-b's reference points at nothing", round);
		if (b.value)
			cr_assert_eq(unref(&host_b, &d), 1);
	}
	cr_assert_eq(cluster_keys(), 0);
}

Test(remote_refs, a_key_holding_what_is_not_an_object_is_an_error)
{
	struct remote_digest d;
	make(9, &d);
	char key[REMOTE_KEY_MAX], cmd[160], out[64];
	remote_key(&d, 'o', key);
	snprintf(cmd, sizeof cmd, "HSET %s field value", key);
	int node = test_cluster_master_of(&tc, rc_keyslot(key, strlen(key)));
	cr_assert_geq(node, 0);
	cr_assert_eq(test_cluster_cmd(&tc, (unsigned)node, cmd, out, sizeof out), 0, "%s", out);
	static struct value v;
	memset(&v, 0, sizeof v);
	cr_assert_eq(remote_get(&host_a, &d, on_value, &v), 0);
	drain();
	cr_assert_eq(v.err, -EPROTO, "a hash was taken for a value: err %d", v.err);
	/* and a string that is not the page's object is refused by its decoder */
	snprintf(cmd, sizeof cmd, "DEL %s", key);
	test_cluster_cmd(&tc, (unsigned)node, cmd, out, sizeof out);
	snprintf(cmd, sizeof cmd, "SET %s not-an-object", key);
	cr_assert_eq(test_cluster_cmd(&tc, (unsigned)node, cmd, out, sizeof out), 0, "%s", out);
	memset(&v, 0, sizeof v);
	cr_assert_eq(remote_get(&host_a, &d, on_value, &v), 0);
	drain();
	cr_assert_eq(v.err, 0);
	uint8_t back[CODEC_PAGE];
	char why[128] = "";
	cr_assert_eq(remote_object_decode(ctx, v.bytes, v.len, &d, back, why, sizeof why), -EBADMSG);
	cr_assert(why[0]);
}

/* The ACL docs/operations.md gives a memsrv user, set on every node (a
 * cluster does not share its users). */
static void acl_user(const char *name, const char *password, bool with_eval)
{
	char cmd[256], out[128];
	for (unsigned i = 0; i < tc.n; i++) {
		snprintf(cmd, sizeof cmd, "ACL SETUSER %s on >%s ~memsrv:* +get +set +del +strlen +sadd +srem", name,
			 password);
		cr_assert_eq(test_cluster_cmd(&tc, i, cmd, out, sizeof out), 0, "node %u: %s", i, out);
		snprintf(cmd, sizeof cmd, "ACL SETUSER %s +scard +sscan +wait +asking +cluster|slots%s", name,
			 with_eval ? " +eval" : "");
		cr_assert_eq(test_cluster_cmd(&tc, i, cmd, out, sizeof out), 0, "node %u: %s", i, out);
	}
}

static struct remote_tier *acl_tier(const char *user, const char *password, const char *node_id)
{
	struct remote_tier_config cfg = {
		.rc = { .seeds = { tc.seed }, .n_seeds = 1, .user = user, .password = password },
		.node_id = node_id,
	};
	struct remote_tier *rt;
	char why[256] = "";
	cr_assert_eq(remote_tier_open(&rt, &cfg, why, sizeof why), 0, "%s", why);
	return rt;
}

Test(remote_refs, the_documented_acl_user_does_all_the_tier_does_and_one_without_eval_is_refused)
{
	acl_user("memsrv", "s3cret-acl", true);
	struct remote_tier *rt = acl_tier("memsrv", "s3cret-acl", "acl-host");
	struct remote_upload up = { .value = obj_buf };
	up.len = make(21, &up.d);
	remote_tier_upload(rt, &up, 1);
	cr_assert_eq(up.result, 0, "upload as the ACL user: %s", strerror(-up.result));
	cr_assert(!up.shared);
	uint8_t got[CODEC_PAGE];
	cr_assert_eq(remote_tier_read_sync(rt, &up.d, got, 10000), CODEC_PAGE);
	cr_assert_eq(memcmp(got, page_buf, CODEC_PAGE), 0, "the page read back is another");
	/* another host's twin, then gc of it, as that user */
	struct remote_tier *other = acl_tier("memsrv", "s3cret-acl", "acl-other");
	struct remote_upload twin = up;
	remote_tier_upload(other, &twin, 1);
	cr_assert_eq(twin.result, 0);
	cr_assert(twin.shared, "the twin was uploaded again");
	remote_tier_close(other);  /* vanished: its reference stays... */
	char holder[256];
	cr_assert_eq(remote_tier_gc(rt, "acl-other", 30000, holder, sizeof holder), 1, "...until gc drops it");
	remote_tier_release(rt, &up.d);
	remote_tier_close(rt);  /* waits for the reference to be dropped */
	cr_assert_eq(fetch(21), -ENOENT, "the last reference gone, the object stays");

	/* without +eval the tier does not start, and says why */
	acl_user("noeval", "s3cret-acl", false);
	struct remote_tier_config cfg = {
		.rc = { .seeds = { tc.seed }, .n_seeds = 1, .user = "noeval", .password = "s3cret-acl" },
		.node_id = "noeval-host",
	};
	char why[256] = "";
	cr_assert_eq(remote_tier_open(&rt, &cfg, why, sizeof why), -EACCES, "%s", why);
	cr_assert(strstr(why, "NOPERM"), "%s", why);
}
