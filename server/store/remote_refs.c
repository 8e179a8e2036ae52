/* remote_refs: who references each object of the remote tier (remote_refs.h). */
#include "remote_refs.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
/* KEYS[1] the object, KEYS[2] its references; ARGV[1] the node id */
static const char REF_SCRIPT[] =
	"local len = redis.call('STRLEN', KEYS[1]) "
	"if len > 0 then redis.call('SADD', KEYS[2], ARGV[1]) end return len";
/* ARGV[2] the object */
static const char PUT_SCRIPT[] = "redis.call('SET', KEYS[1], ARGV[2]) redis.call('SADD', KEYS[2], ARGV[1]) return 0";
static const char UNREF_SCRIPT[] =
	"redis.call('SREM', KEYS[2], ARGV[1]) "
	"if redis.call('SCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[1]) return 1 end return 0";

enum op_kind { OP_REF, OP_PUT, OP_UNREF };

/* One call, through its steps: the node's set, then the object (ref, put),
 * or the object, then the node's set (unref). */
struct op {
	enum op_kind kind;
	struct rc_cluster *rc;
	char id[REMOTE_NODE_ID_MAX];
	char index_key[REMOTE_NODE_ID_MAX + 32];
	struct remote_digest d;
	remote_done_fn done;
	void *arg;
	int result;
	bool index_added;  /* the last index step put the digest in */
	size_t len;
	uint8_t obj[];  /* OP_PUT: the object */
};

static size_t index_key_of(const char *id, char *key, size_t len)
{
	return (size_t)snprintf(key, len, "memsrv:node:{%s}:objects", id);
}

int remote_node_init(struct remote_node *n, struct rc_cluster *rc, const char *id)
{
	size_t len = strlen(id);
	if (!len || len >= sizeof n->id || strpbrk(id, "{} \t\r\n"))
		return -EINVAL;
	n->rc = rc;
	memcpy(n->id, id, len + 1);
	index_key_of(id, n->index_key, sizeof n->index_key);
	return 0;
}

static void finish(struct op *op, int result)
{
	op->done(op->arg, result);
	free(op);
}

/* A reply that is an error, or not the integer expected: -EPROTO. */
static int reply_int(const redisReply *r, int err, long long *v)
{
	if (err)
		return err;
	if (r->type != REDIS_REPLY_INTEGER)
		return -EPROTO;
	*v = r->integer;
	return 0;
}

static void object_done(void *arg, const redisReply *r, int err);
static void index_done(void *arg, const redisReply *r, int err);

/* The step on the object's slot. */
static int object_step(struct op *op)
{
	char obj_key[REMOTE_KEY_MAX], refs_key[REMOTE_KEY_MAX];
	size_t ol = remote_key(&op->d, 'o', obj_key), rl = remote_key(&op->d, 'r', refs_key);
	const char *script = op->kind == OP_REF ? REF_SCRIPT : op->kind == OP_PUT ? PUT_SCRIPT : UNREF_SCRIPT;
	const char *argv[] = { "EVAL", script, "2", obj_key, refs_key, op->id, (const char *)op->obj };
	size_t lens[] = { 4, strlen(script), 1, ol, rl, strlen(op->id), op->len };
	return rc_command(op->rc, obj_key, ol, op->kind == OP_PUT ? 7 : 6, argv, lens, object_done, op);
}

/* The step on the node's set: the digest in (before a reference is taken)
 * or out (after one was dropped, or not taken). */
static int index_step(struct op *op, bool add)
{
	op->index_added = add;
	const char *argv[] = { add ? "SADD" : "SREM", op->index_key, (const char *)op->d.b };
	size_t lens[] = { 4, strlen(op->index_key), REMOTE_DIGEST_BYTES };
	return rc_command(op->rc, op->index_key, lens[1], 3, argv, lens, index_done, op);
}

static void index_done(void *arg, const redisReply *r, int err)
{
	struct op *op = arg;
	long long v;
	int ret = reply_int(r, err, &v);
	if (!ret && op->index_added)
		ret = object_step(op);  /* named in the node's set: now the reference */
	if (ret || !op->index_added)
		finish(op, ret ? ret : op->result);
}

static void object_done(void *arg, const redisReply *r, int err)
{
	struct op *op = arg;
	long long v;
	int ret = reply_int(r, err, &v);
	if (ret) {
		finish(op, ret);
		return;
	}
	op->result = (int)v;
	/* a reference taken stays in the node's set; one dropped, or not
	 * taken (ref found nothing), leaves it: nothing of a node stays in the
	 * cluster once it let go of everything */
	if (op->kind == OP_PUT || (op->kind == OP_REF && op->result > 0)) {
		finish(op, op->result);
		return;
	}
	ret = index_step(op, false);
	if (ret)
		finish(op, ret);
}

static int start(struct rc_cluster *rc, const char *id, const char *index_key, enum op_kind kind,
		 const struct remote_digest *d, const void *obj, size_t len, remote_done_fn done, void *arg)
{
	struct op *op = calloc(1, sizeof *op + len);
	if (!op)
		return -ENOMEM;
	op->kind = kind;
	op->rc = rc;
	snprintf(op->id, sizeof op->id, "%s", id);
	snprintf(op->index_key, sizeof op->index_key, "%s", index_key);
	op->d = *d;
	op->done = done;
	op->arg = arg;
	op->len = len;
	if (len)
		memcpy(op->obj, obj, len);
	int ret = kind == OP_UNREF ? object_step(op) : index_step(op, true);
	if (ret)
		free(op);
	return ret;
}

int remote_ref(struct remote_node *n, const struct remote_digest *d, remote_done_fn done, void *arg)
{
	return start(n->rc, n->id, n->index_key, OP_REF, d, NULL, 0, done, arg);
}

int remote_put(struct remote_node *n, const struct remote_digest *d, const void *obj, size_t len,
	       remote_done_fn done, void *arg)
{
	if (!len)
		return -EINVAL;
	return start(n->rc, n->id, n->index_key, OP_PUT, d, obj, len, done, arg);
}

int remote_unref(struct remote_node *n, const struct remote_digest *d, remote_done_fn done, void *arg)
{
	return start(n->rc, n->id, n->index_key, OP_UNREF, d, NULL, 0, done, arg);
}

struct get_op {
	remote_value_fn done;
	void *arg;
};

static void get_done(void *arg, const redisReply *r, int err)
{
	struct get_op *g = arg;
	if (!err && r->type == REDIS_REPLY_NIL)
		err = -ENOENT;
	else if (!err && r->type != REDIS_REPLY_STRING)
		err = -EPROTO;  /* an error reply, or of another kind: never a value */
	g->done(g->arg, err ? NULL : r->str, err ? 0 : r->len, err);
	free(g);
}

int remote_get(struct remote_node *n, const struct remote_digest *d, remote_value_fn done, void *arg)
{
	struct get_op *g = malloc(sizeof *g);
	if (!g)
		return -ENOMEM;
	g->done = done;
	g->arg = arg;
	char key[REMOTE_KEY_MAX];
	size_t kl = remote_key(d, 'o', key);
	const char *argv[] = { "GET", key };
	size_t lens[] = { 3, kl };
	int ret = rc_command(n->rc, key, kl, 2, argv, lens, get_done, g);
	if (ret)
		free(g);
	return ret;
}

/* ---- gc ---- */

struct gc {
	int err;
	unsigned pending;      /* commands and unrefs not completed: their callbacks point here */
	long dropped;
	char cursor[32];
	struct remote_digest *batch;  /* the last scan's members: as many as it gave */
	size_t n;
};

static void gc_unref_done(void *arg, int result)
{
	struct gc *g = arg;
	g->pending--;
	if (result < 0)
		g->err = result;
	else
		g->dropped++;
}

static void gc_scan_done(void *arg, const redisReply *r, int err)
{
	struct gc *g = arg;
	g->pending--;
	g->n = 0;
	if (err || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY || r->element[0]->len >= sizeof g->cursor) {
		g->err = err ? err : -EPROTO;
		return;
	}
	const redisReply *m = r->element[1];
	/* COUNT is a hint: a scan may give more, and each must be dropped
	 * before the set goes */
	struct remote_digest *batch = realloc(g->batch, (m->elements ? m->elements : 1) * sizeof *batch);
	if (!batch) {
		g->err = -ENOMEM;
		return;
	}
	g->batch = batch;
	memcpy(g->cursor, r->element[0]->str, r->element[0]->len + 1);
	for (size_t i = 0; i < m->elements; i++)
		if (m->element[i]->type == REDIS_REPLY_STRING && m->element[i]->len == REMOTE_DIGEST_BYTES)
			memcpy(g->batch[g->n++].b, m->element[i]->str, REMOTE_DIGEST_BYTES);
}

static void gc_del_done(void *arg, const redisReply *r, int err)
{
	struct gc *g = arg;
	g->pending--;
	if (err || r->type == REDIS_REPLY_ERROR)
		g->err = err ? err : -EPROTO;
}

/* Polls until nothing of g is pending: -ETIMEDOUT past the deadline, after
 * which it still polls until the commands complete (each has a deadline of
 * its own), since their callbacks point at g. */
static int gc_settle(struct rc_cluster *rc, struct gc *g, uint64_t deadline)
{
	int ret = 0;
	while (g->pending) {
		if (!ret && monotonic_ns() / 1000000 >= deadline)
			ret = -ETIMEDOUT;
		int p = rc_poll(rc, 50);
		if (p < 0 && !ret)
			ret = p;
	}
	return ret ? ret : g->err;
}

long remote_gc_node(struct rc_cluster *rc, const char *id, int timeout_ms)
{
	struct remote_node n;
	if (remote_node_init(&n, rc, id))
		return -EINVAL;
	struct gc *g = calloc(1, sizeof *g);
	if (!g)
		return -ENOMEM;
	uint64_t deadline = monotonic_ns() / 1000000 + (uint64_t)timeout_ms;
	snprintf(g->cursor, sizeof g->cursor, "0");
	int ret;
	do {
		const char *argv[] = { "SSCAN", n.index_key, g->cursor, "COUNT", "1000" };
		ret = rc_command(rc, n.index_key, strlen(n.index_key), 5, argv, NULL, gc_scan_done, g);
		g->pending += !ret;
		ret = ret ? ret : gc_settle(rc, g, deadline);
		/* each reference dropped, then out of the set (remote_unref) */
		for (size_t i = 0; !ret && i < g->n; i++) {
			ret = remote_unref(&n, &g->batch[i], gc_unref_done, g);
			g->pending += !ret;
		}
		int sret = gc_settle(rc, g, deadline);
		ret = ret ? ret : sret;
	} while (!ret && strcmp(g->cursor, "0"));
	if (!ret) {
		const char *argv[] = { "DEL", n.index_key };
		ret = rc_command(rc, n.index_key, strlen(n.index_key), 2, argv, NULL, gc_del_done, g);
		g->pending += !ret;
		ret = ret ? ret : gc_settle(rc, g, deadline);
	}
	long dropped = g->dropped;
	free(g->batch);
	free(g);
	return ret ? ret : dropped;
}
