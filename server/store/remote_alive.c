/* remote_alive: which memsrv holds a node id (remote_alive.h). */
#include "remote_alive.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

/* KEYS[1] the claim; ARGV[1] the token, ARGV[2] the TTL in ms */
static const char CLAIM_SCRIPT[] =
	"local v = redis.call('GET', KEYS[1]) "
	"if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0";
static const char RELEASE_SCRIPT[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0";

static size_t alive_key(const char *id, char *key, size_t len)
{
	return (size_t)snprintf(key, len, "memsrv:node:{%s}:alive", id);
}

static void int_done(void *arg, const redisReply *r, int err)
{
	struct remote_alive_call *c = arg;
	/* NOPERM: an ACL user without the rights the tier needs */
	int v = err				       ? err
		: r->type == REDIS_REPLY_INTEGER       ? (int)r->integer
		: r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOPERM", 6) ? -EACCES
						       : -EPROTO;
	c->done(c->arg, v);
}

static int run_script(struct rc_cluster *rc, const char *script, const char *id, const char *token,
		      struct remote_alive_call *c)
{
	char key[REMOTE_NODE_ID_MAX + 32], ttl[16];
	size_t kl = alive_key(id, key, sizeof key);
	snprintf(ttl, sizeof ttl, "%d", REMOTE_ALIVE_TTL_MS);
	const char *argv[] = { "EVAL", script, "1", key, token, ttl };
	return rc_command(rc, key, kl, 6, argv, NULL, int_done, c);
}

int remote_alive_claim(struct rc_cluster *rc, const char *id, const char *token, struct remote_alive_call *call)
{
	return run_script(rc, CLAIM_SCRIPT, id, token, call);
}

/* ---- driving the client until one call completes ---- */

struct sync_result {
	bool done;
	int value;
};

static void sync_done(void *arg, int result)
{
	struct sync_result *s = arg;
	s->done = true;
	s->value = result;
}

/* Polls until *done; past deadline_ms only while commands are pending,
 * since their callbacks point at the caller's storage (each command has
 * a deadline of its own: it completes).  0 or -ETIMEDOUT. */
static int drive(struct rc_cluster *rc, const bool *done, uint64_t deadline_ms)
{
	while (!*done) {
		if (monotonic_ns() / 1000000 >= deadline_ms && !rc_pending(rc))
			return -ETIMEDOUT;
		rc_poll(rc, 50);
	}
	return 0;
}

static int settle(struct rc_cluster *rc, struct sync_result *s, uint64_t deadline_ms)
{
	int ret = drive(rc, &s->done, deadline_ms);
	return ret ? ret : s->value;
}

struct holder {
	bool done;
	int err;
	char *out;
	size_t len;
};

static void holder_done(void *arg, const redisReply *r, int err)
{
	struct holder *h = arg;
	h->done = true;
	if (err || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
		h->err = err ? err : -EPROTO;
		return;
	}
	h->err = r->type == REDIS_REPLY_NIL ? -ENOENT : 0;
	if (!h->err)
		snprintf(h->out, h->len, "%.*s", (int)r->len, r->str);
}

int remote_alive_holder_now(struct rc_cluster *rc, const char *id, char *holder, size_t len, int timeout_ms)
{
	char key[REMOTE_NODE_ID_MAX + 32];
	size_t kl = alive_key(id, key, sizeof key);
	struct holder h = { .out = holder, .len = len };
	const char *argv[] = { "GET", key };
	int ret = rc_command(rc, key, kl, 2, argv, NULL, holder_done, &h);
	if (ret)
		return ret;
	if ((ret = drive(rc, &h.done, monotonic_ns() / 1000000 + (uint64_t)timeout_ms)))
		return ret;
	return h.err == -ENOENT ? 0 : h.err ? h.err : 1;
}

int remote_alive_claim_now(struct rc_cluster *rc, const char *id, const char *token, int wait_ms, char *holder,
			   size_t len)
{
	uint64_t until = monotonic_ns() / 1000000 + (uint64_t)wait_ms;
	for (;;) {
		struct sync_result s = { 0 };
		struct remote_alive_call c = { .done = sync_done, .arg = &s };
		int ret = run_script(rc, CLAIM_SCRIPT, id, token, &c);
		ret = ret ? ret : settle(rc, &s, until + REMOTE_ALIVE_TTL_MS);
		if (ret == 1)
			return 0;
		if (ret < 0)
			return ret;
		if (monotonic_ns() / 1000000 >= until) {
			ret = remote_alive_holder_now(rc, id, holder, len, 5000);
			if (ret == 0)
				continue;  /* it expired just now */
			return ret < 0 ? ret : -EADDRINUSE;
		}
		struct timespec pause = { 0, 500 * 1000000 };  /* another's claim: it may be a crashed memsrv's */
		nanosleep(&pause, NULL);
	}
}

int remote_alive_release_now(struct rc_cluster *rc, const char *id, const char *token, int timeout_ms)
{
	struct sync_result s = { 0 };
	struct remote_alive_call c = { .done = sync_done, .arg = &s };
	int ret = run_script(rc, RELEASE_SCRIPT, id, token, &c);
	return ret ? ret : settle(rc, &s, monotonic_ns() / 1000000 + (uint64_t)timeout_ms) < 0 ? -ETIMEDOUT : 0;
}
