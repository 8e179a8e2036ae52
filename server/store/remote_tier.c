/* remote_tier: the store's tier in a Redis Cluster (remote_tier.h). */
#include "remote_tier.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "clock.h"
#include "log.h"
#include "remote_alive.h"

#define WAIT_TIMEOUT_MS "2000"       /* WAIT's own: a shard without a replica fails its uploads in 2 s */
#define RETRY_MS 200                 /* a read or an unref that did not get through, tried again */
#define ENOENT_TRIES 50              /* ~10 s of "no such object" before it counts as lost */
#define BAD_TRIES 3                  /* malformed values before a read fails */
#define CLOSE_GRACE_MS 5000          /* for the last references to be dropped */
#define MSG_RING_ENTRIES 64
#define BACKGROUND_GC_MS 30000       /* a background gc's deadline; a stop waits for it at most this */

enum req_kind { REQ_READ, REQ_UPLOAD, REQ_UNREF };

struct upload_batch;

struct req {
	enum req_kind kind;
	struct remote_tier *rt;
	struct req *next;            /* the posted queue, then the retry list */
	struct remote_digest d;
	/* REQ_READ */
	void *buf;
	int ring_fd;                 /* -1: a synchronous read */
	uint64_t user_data;
	struct req *rprev, *rnext;   /* the reads not delivered, for cancel (under the lock) */
	bool cancelled;              /* under the lock: no one wants it; the thread frees it */
	bool done;                   /* sync: delivered, the waiter frees it */
	int res;
	unsigned enoent, bad;
	uint64_t retry_at;
	uint64_t deadline_ns;        /* a synchronous read gives up then */
	/* REQ_UPLOAD */
	struct upload_batch *batch;
};

/* Per object of an upload: its step's connection, for the WAIT. */
struct item {
	struct upload_batch *b;
	unsigned i;
	bool have_conn;
	struct rc_conn conn;
};

struct upload_batch {
	struct remote_tier *rt;
	struct remote_node *as;      /* another holder's references (an image's): no local counts; NULL: this node's */
	struct remote_upload *items;
	unsigned n;
	struct item *it;
	unsigned pending;            /* object steps and WAITs not completed */
	bool waiting;                /* the WAITs were sent */
	bool done;                   /* under the lock */
};

struct wait_arg {
	struct upload_batch *b;
	struct rc_conn conn;
};

/* How many local objects name a digest, and uploads of it under way. */
struct held {
	struct remote_digest d;
	uint32_t count, uploading;
	struct held *next;
};

struct remote_tier {
	struct remote_tier_config cfg;
	struct rc_cluster *rc;
	struct remote_node node;
	struct codec_ctx *ctx;       /* the thread's, for checking what it reads */
	struct io_uring ring;        /* the thread's, for IORING_OP_MSG_RING */
	int efd, epfd;
	pthread_t thread;
	bool ring_ready, started;

	pthread_mutex_t lock;
	pthread_cond_t cond;         /* an upload or a sync read is done */
	struct req *posted, *posted_tail;
	struct req *reads;           /* every read not delivered */
	struct held **held;
	size_t nheld, held_buckets;
	struct remote_tier_stats st;
	bool stopping;
	unsigned background_gcs;     /* remote_tier_gc_background() threads running */

	char token[REMOTE_TOKEN_MAX];
	struct remote_alive_call refresh;  /* the claim's, in flight while refreshing */
	bool refreshing, claim_lost;
	uint64_t next_refresh_ns;

	/* the thread's own */
	struct req *retries;
	unsigned unrefs_live;
	bool unreachable_said;
};

static uint64_t digest_hash(const struct remote_digest *d)
{
	uint64_t h;
	memcpy(&h, d->b, sizeof h);  /* SHA-256 bits: as good as any hash */
	return h;
}

/* ---- local references, under the lock ---- */

static struct held *held_find(struct remote_tier *rt, const struct remote_digest *d)
{
	for (struct held *h = rt->held[digest_hash(d) & (rt->held_buckets - 1)]; h; h = h->next)
		if (!memcmp(h->d.b, d->b, sizeof d->b))
			return h;
	return NULL;
}

/* h at the head of its chain in buckets (n, a power of two). */
static void held_link(struct held **buckets, size_t n, struct held *h)
{
	struct held **head = &buckets[digest_hash(&h->d) & (n - 1)];
	h->next = *head;
	*head = h;
}

static void held_grow(struct remote_tier *rt)
{
	size_t n = rt->held_buckets * 2;
	struct held **b = calloc(n, sizeof *b);
	if (!b)
		return;  /* longer chains */
	for (size_t i = 0; i < rt->held_buckets; i++)
		for (struct held *h = rt->held[i], *next; h; h = next) {
			next = h->next;
			held_link(b, n, h);
		}
	free(rt->held);
	rt->held = b;
	rt->held_buckets = n;
}

/* The entry of d, made if need be; NULL without memory. */
static struct held *held_get(struct remote_tier *rt, const struct remote_digest *d)
{
	struct held *h = held_find(rt, d);
	if (h)
		return h;
	if (!(h = calloc(1, sizeof *h)))
		return NULL;
	h->d = *d;
	held_link(rt->held, rt->held_buckets, h);
	if (++rt->nheld > rt->held_buckets)
		held_grow(rt);
	return h;
}

/* Forgets an entry nothing counts any more. */
static void held_put(struct remote_tier *rt, struct held *h)
{
	if (h->count || h->uploading)
		return;
	for (struct held **p = &rt->held[digest_hash(&h->d) & (rt->held_buckets - 1)]; *p; p = &(*p)->next)
		if (*p == h) {
			*p = h->next;
			free(h);
			rt->nheld--;
			return;
		}
}

/* ---- posting to the thread ---- */

static void post(struct remote_tier *rt, struct req *r)
{
	r->next = NULL;
	if (rt->posted_tail)
		rt->posted_tail->next = r;
	else
		rt->posted = r;
	rt->posted_tail = r;
}

static void wake(struct remote_tier *rt)
{
	uint64_t one = 1;
	if (write(rt->efd, &one, sizeof one) < 0) {
		/* the counter is full: the thread is awake anyway */
	}
}

/* ---- reads ---- */

static void reads_unlink(struct remote_tier *rt, struct req *r)
{
	if (r->rprev)
		r->rprev->rnext = r->rnext;
	else
		rt->reads = r->rnext;
	if (r->rnext)
		r->rnext->rprev = r->rprev;
	r->rprev = r->rnext = NULL;
}

/* Hands a read its outcome: the page (res CODEC_PAGE) or -errno.  On the
 * thread. */
static void deliver(struct remote_tier *rt, struct req *r, int res, const void *page)
{
	pthread_mutex_lock(&rt->lock);
	rt->st.read_errors += res < 0 && res != -ECANCELED;
	if (r->cancelled) {
		reads_unlink(rt, r);
		pthread_mutex_unlock(&rt->lock);
		free(r);
		return;
	}
	if (res > 0)
		memcpy(r->buf, page, CODEC_PAGE);  /* under the lock: a cancel frees the buffer after it */
	reads_unlink(rt, r);
	if (r->ring_fd < 0) {
		r->res = res;
		r->done = true;
		pthread_cond_broadcast(&rt->cond);
		pthread_mutex_unlock(&rt->lock);
		return;
	}
	pthread_mutex_unlock(&rt->lock);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&rt->ring);
	if (!sqe) {
		io_uring_submit(&rt->ring);
		sqe = io_uring_get_sqe(&rt->ring);
	}
	/* the ring stays open until its owner got this CQE: it waits for
	 * every read it did not cancel */
	io_uring_prep_msg_ring(sqe, r->ring_fd, (unsigned)res, r->user_data, 0);
	io_uring_sqe_set_data64(sqe, 0);
	free(r);
}

/* Whether a read is still wanted; one that is not is freed. */
static bool read_wanted(struct remote_tier *rt, struct req *r)
{
	pthread_mutex_lock(&rt->lock);
	bool cancelled = r->cancelled;
	if (cancelled)
		reads_unlink(rt, r);
	pthread_mutex_unlock(&rt->lock);
	if (cancelled)
		free(r);
	return !cancelled;
}

static void retry_later(struct remote_tier *rt, struct req *r, unsigned ms)
{
	r->retry_at = monotonic_ns() + (uint64_t)ms * 1000000;
	r->next = rt->retries;
	rt->retries = r;
}

static void read_got(void *arg, const void *value, size_t len, int err)
{
	struct req *r = arg;
	struct remote_tier *rt = r->rt;
	static __thread uint8_t page[CODEC_PAGE];
	char why[120] = "";
	if (!err && remote_object_decode(rt->ctx, value, len, &r->d, page, why, sizeof why))
		err = -EBADMSG;
	if (!err) {
		deliver(rt, r, CODEC_PAGE, page);
		return;
	}
	if (err == -ECANCELED) {  /* the cluster client is closing */
		deliver(rt, r, err, NULL);
		return;
	}
	/* a missing object may be a master just restarted empty that lost its
	 * slots a moment later: asked again for a while; a malformed value
	 * (or reply) a few times; a cluster that does not answer, until it
	 * does */
	bool final = false;
	if (err == -ENOENT)
		final = ++r->enoent >= ENOENT_TRIES;
	else if (err == -EBADMSG || err == -EPROTO)
		final = ++r->bad >= BAD_TRIES;
	if (final) {
		char hex[17];
		for (int i = 0; i < 8; i++)
			snprintf(hex + 2 * i, 3, "%02x", r->d.b[i]);
		pr_err("remote tier: the object %s... cannot be read: %s%s%s", hex,
		       err == -ENOENT ? "the cluster no longer holds it" : "its value is malformed", *why ? ": " : "",
		       why);
		deliver(rt, r, err == -ENOENT ? -ENOENT : -EBADMSG, NULL);
		return;
	}
	if (r->deadline_ns && monotonic_ns() >= r->deadline_ns) {
		deliver(rt, r, err == -ENOENT ? -ENOENT : -ETIMEDOUT, NULL);  /* a sync read's deadline */
		return;
	}
	retry_later(rt, r, RETRY_MS);
}

static void read_start(struct remote_tier *rt, struct req *r)
{
	if (!read_wanted(rt, r))
		return;
	int ret = remote_get(&rt->node, &r->d, read_got, r);
	if (ret)
		read_got(r, NULL, 0, ret == -ENOMEM ? -ETIMEDOUT : ret);
}

/* A read of d into buf, not posted yet; NULL without memory. */
static struct req *read_new(struct remote_tier *rt, const struct remote_digest *d, void *buf, int ring_fd)
{
	struct req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->kind = REQ_READ;
	r->rt = rt;
	r->d = *d;
	r->buf = buf;
	r->ring_fd = ring_fd;
	return r;
}

/* Posts a read, listed among those not delivered.  Under the lock. */
static void read_post(struct remote_tier *rt, struct req *r)
{
	r->rnext = rt->reads;
	if (rt->reads)
		rt->reads->rprev = r;
	rt->reads = r;
	post(rt, r);
	wake(rt);
}

int remote_tier_read(struct remote_tier *rt, const struct remote_digest *d, void *buf, int ring_fd,
		     uint64_t user_data)
{
	struct req *r = read_new(rt, d, buf, ring_fd);
	if (!r)
		return -ENOMEM;
	r->user_data = user_data;
	pthread_mutex_lock(&rt->lock);
	read_post(rt, r);
	pthread_mutex_unlock(&rt->lock);
	return 0;
}

unsigned remote_tier_cancel(struct remote_tier *rt, int ring_fd)
{
	unsigned n = 0;
	pthread_mutex_lock(&rt->lock);
	for (struct req *r = rt->reads; r; r = r->rnext)
		if (r->ring_fd == ring_fd && !r->cancelled) {
			r->cancelled = true;
			n++;
		}
	pthread_mutex_unlock(&rt->lock);
	return n;
}

int remote_tier_read_sync(struct remote_tier *rt, const struct remote_digest *d, void *buf, int timeout_ms)
{
	struct req *r = read_new(rt, d, buf, -1);
	if (!r)
		return -ENOMEM;
	r->deadline_ns = monotonic_ns() + (uint64_t)timeout_ms * 1000000;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000 + 1;  /* the thread enforces the deadline; this is a backstop */
	pthread_mutex_lock(&rt->lock);
	read_post(rt, r);
	while (!r->done && pthread_cond_timedwait(&rt->cond, &rt->lock, &until) != ETIMEDOUT)
		;
	bool done = r->done;
	int res = done ? r->res : -ETIMEDOUT;
	if (!done)
		r->cancelled = true;  /* the thread frees it */
	pthread_mutex_unlock(&rt->lock);
	if (done)
		free(r);
	return res;
}

/* ---- uploads ---- */

static void batch_step_done(struct remote_tier *rt, struct upload_batch *b);

/* The name the batch's references go under. */
static struct remote_node *batch_node(struct remote_tier *rt, struct upload_batch *b)
{
	return b->as ? b->as : &rt->node;
}

static void item_failed(struct item *it, int err)
{
	it->b->items[it->i].result = err;
}

/* The reference step or the upload reached the object's master: the WAIT
 * for it goes on the connection it came on. */
static void item_reached(struct item *it)
{
	struct remote_tier *rt = it->b->rt;
	it->have_conn = rc_reply_conn(rt->rc, &it->conn);
	if (!it->have_conn)
		item_failed(it, -EPROTO);
}

static void put_done(void *arg, int result)
{
	struct item *it = arg;
	struct remote_tier *rt = it->b->rt;
	if (result < 0)
		item_failed(it, result);
	else
		item_reached(it);
	batch_step_done(rt, it->b);
}

static void ref_done(void *arg, int result)
{
	struct item *it = arg;
	struct upload_batch *b = it->b;
	struct remote_tier *rt = b->rt;
	struct remote_upload *u = &b->items[it->i];
	if (result > 0) {
		u->shared = true;
		u->held_len = (size_t)result;
		item_reached(it);
	} else if (result == 0 && !u->value) {
		item_failed(it, -ENOENT);  /* a reference only, to what the cluster does not hold */
	} else if (result == 0) {
		int ret = remote_put(batch_node(rt, b), &u->d, u->value, u->len, put_done, it);
		if (!ret)
			return;  /* still a step of the batch */
		item_failed(it, ret);
	} else {
		item_failed(it, result);
	}
	batch_step_done(rt, b);
}

static void wait_done(void *arg, const redisReply *reply, int err)
{
	struct wait_arg *w = arg;
	struct upload_batch *b = w->b;
	struct remote_tier *rt = b->rt;
	int min = (int)(rt->cfg.min_replicas ? rt->cfg.min_replicas : 1);
	int res = err ? err
		      : reply->type != REDIS_REPLY_INTEGER ? -EPROTO
		      : reply->integer < min		  ? -EAGAIN  /* no replica has it (yet): the copy stays */
							  : 0;
	for (unsigned i = 0; i < b->n; i++) {
		struct item *it = &b->it[i];
		if (it->have_conn && it->conn.node == w->conn.node && it->conn.gen == w->conn.gen &&
		    b->items[i].result == -EINPROGRESS)
			b->items[i].result = res;
	}
	free(w);
	batch_step_done(rt, b);
}

/* Every object step answered: one WAIT per connection the batch wrote on;
 * every WAIT answered: the batch is done. */
static void batch_step_done(struct remote_tier *rt, struct upload_batch *b)
{
	if (--b->pending)
		return;
	if (!b->waiting) {
		b->waiting = true;
		for (unsigned i = 0; i < b->n; i++) {
			struct item *it = &b->it[i];
			if (!it->have_conn || b->items[i].result != -EINPROGRESS)
				continue;
			bool sent = false;
			for (unsigned k = 0; k < i && !sent; k++)
				sent = b->it[k].have_conn && b->it[k].conn.node == it->conn.node &&
				       b->it[k].conn.gen == it->conn.gen && b->items[k].result == -EINPROGRESS;
			if (sent)
				continue;
			struct wait_arg *w = malloc(sizeof *w);
			int ret = -ENOMEM;
			if (w) {
				*w = (struct wait_arg){ .b = b, .conn = it->conn };
				char replicas[12];
				snprintf(replicas, sizeof replicas, "%u", rt->cfg.min_replicas ? rt->cfg.min_replicas : 1);
				const char *argv[] = { "WAIT", replicas, WAIT_TIMEOUT_MS };
				ret = rc_command_on(rt->rc, &it->conn, 3, argv, NULL, wait_done, w);
			}
			if (ret) {
				free(w);
				it->have_conn = false;
				b->items[i].result = ret;
				continue;
			}
			b->pending++;
		}
		if (b->pending)
			return;
	}
	/* the outcome: held objects count; a reference this node may have
	 * taken for one that failed is dropped, unless another local object
	 * needs it (another holder's are its own to drop) */
	pthread_mutex_lock(&rt->lock);
	for (unsigned i = 0; i < b->n; i++) {
		struct remote_upload *u = &b->items[i];
		if (u->result == -EINPROGRESS)
			u->result = -EIO;  /* cannot happen: each step sets it */
		if (b->as) {
			rt->st.shared += !u->result && u->shared;
			rt->st.uploads += !u->result && !u->shared;
			rt->st.upload_bytes += !u->result && !u->shared ? u->len : 0;
			continue;
		}
		struct held *h = held_find(rt, &u->d);
		if (h)
			h->uploading--;
		if (!u->result) {
			if (h)
				h->count++;
			rt->st.shared += u->shared;
			rt->st.uploads += !u->shared;
			rt->st.upload_bytes += u->shared ? 0 : u->len;
			continue;
		}
		rt->st.upload_errors++;
		if (h && !h->count) {
			struct req *r = calloc(1, sizeof *r);
			if (r) {
				r->kind = REQ_UNREF;
				r->rt = rt;
				r->d = u->d;
				post(rt, r);  /* run_posted() finds it at once */
			}
		}
		if (h)
			held_put(rt, h);
	}
	b->done = true;
	pthread_cond_broadcast(&rt->cond);
	pthread_mutex_unlock(&rt->lock);
}

/* Whether this node must ask the cluster for u's reference: not if
 * another local object holds it already (u's result set then). */
static bool needs_ref(struct remote_tier *rt, struct remote_upload *u)
{
	pthread_mutex_lock(&rt->lock);
	struct held *h = held_get(rt, &u->d);
	bool local = h && h->count;
	if (h)
		h->uploading++;
	pthread_mutex_unlock(&rt->lock);
	if (!h) {
		u->result = -ENOMEM;
		return false;
	}
	if (local) {
		/* another local object holds this node's reference to it,
		 * on a replica since its own upload's WAIT */
		u->result = 0;
		u->shared = true;
		return false;
	}
	return true;
}

/* On the thread: each object referenced or uploaded. */
static void upload_start(struct remote_tier *rt, struct upload_batch *b)
{
	b->pending = 1;  /* this loop's own, so the batch cannot end inside it */
	if (b->as)
		b->as->rc = rt->rc;  /* the thread's, like the node's own */
	for (unsigned i = 0; i < b->n; i++) {
		struct remote_upload *u = &b->items[i];
		b->it[i] = (struct item){ .b = b, .i = i };
		if (!b->as && !needs_ref(rt, u))
			continue;  /* another holder's references are not counted here */
		u->result = -EINPROGRESS;
		b->pending++;
		int ret = remote_ref(batch_node(rt, b), &u->d, ref_done, &b->it[i]);
		if (ret) {
			b->pending--;
			u->result = ret;
		}
	}
	batch_step_done(rt, b);
}

static void upload(struct remote_tier *rt, const char *as_id, struct remote_upload *items, unsigned n)
{
	if (!n)
		return;
	struct remote_node as;
	struct upload_batch b = { .rt = rt, .items = items, .n = n, .as = as_id ? &as : NULL };
	if (as_id && remote_node_init(&as, NULL, as_id)) {
		for (unsigned i = 0; i < n; i++)
			items[i].result = -EINVAL;
		return;
	}
	b.it = calloc(n, sizeof *b.it);
	struct req *r = calloc(1, sizeof *r);
	if (!b.it || !r) {
		for (unsigned i = 0; i < n; i++)
			items[i].result = -ENOMEM;
		free(b.it);
		free(r);
		return;
	}
	r->kind = REQ_UPLOAD;
	r->batch = &b;
	pthread_mutex_lock(&rt->lock);
	post(rt, r);
	wake(rt);
	while (!b.done)
		pthread_cond_wait(&rt->cond, &rt->lock);
	pthread_mutex_unlock(&rt->lock);
	free(b.it);
}

void remote_tier_upload(struct remote_tier *rt, struct remote_upload *items, unsigned n)
{
	upload(rt, NULL, items, n);
}

void remote_tier_upload_as(struct remote_tier *rt, const char *holder, struct remote_upload *items, unsigned n)
{
	upload(rt, holder, items, n);
}

/* ---- local references ---- */

void remote_tier_hold(struct remote_tier *rt, const struct remote_digest *d)
{
	pthread_mutex_lock(&rt->lock);
	struct held *h = held_get(rt, d);
	if (h)
		h->count++;
	pthread_mutex_unlock(&rt->lock);
}

void remote_tier_release(struct remote_tier *rt, const struct remote_digest *d)
{
	pthread_mutex_lock(&rt->lock);
	struct held *h = held_find(rt, d);
	if (h && h->count && !--h->count) {
		struct req *r = calloc(1, sizeof *r);
		if (r) {
			r->kind = REQ_UNREF;
			r->rt = rt;
			r->d = *d;
			post(rt, r);
			wake(rt);
		} else {
			pr_warn("remote tier: no memory to drop a reference: memsrv-ctl remote gc will");
		}
		held_put(rt, h);
	}
	pthread_mutex_unlock(&rt->lock);
}

static void unref_done(void *arg, int result)
{
	struct req *r = arg;
	struct remote_tier *rt = r->rt;
	if (result < 0) {
		retry_later(rt, r, RETRY_MS * 5);  /* the cluster is away: it will be back */
		return;
	}
	rt->unrefs_live--;
	free(r);
}

static void unref_start(struct remote_tier *rt, struct req *r)
{
	/* an upload of the same digest since (or under way) took the
	 * reference back: dropping it now would lose that object */
	pthread_mutex_lock(&rt->lock);
	struct held *h = held_find(rt, &r->d);
	bool wanted = !h || (!h->count && !h->uploading);
	pthread_mutex_unlock(&rt->lock);
	if (!wanted) {
		rt->unrefs_live--;
		free(r);
		return;
	}
	if (remote_unref(&rt->node, &r->d, unref_done, r))
		retry_later(rt, r, RETRY_MS * 5);
}

/* ---- the thread ---- */

static void start_req(struct remote_tier *rt, struct req *r)
{
	switch (r->kind) {
	case REQ_READ:
		read_start(rt, r);
		break;
	case REQ_UPLOAD: {
		struct upload_batch *b = r->batch;
		free(r);
		upload_start(rt, b);
		break;
	}
	case REQ_UNREF:
		unref_start(rt, r);
		break;
	}
}

static void run_posted(struct remote_tier *rt)
{
	uint64_t v;
	if (read(rt->efd, &v, sizeof v) < 0) {
		/* nothing signalled: the queue may hold something still */
	}
	pthread_mutex_lock(&rt->lock);
	struct req *r = rt->posted;
	rt->posted = rt->posted_tail = NULL;
	pthread_mutex_unlock(&rt->lock);
	while (r) {
		struct req *next = r->next;
		rt->unrefs_live += r->kind == REQ_UNREF;  /* until it gets through, or is not needed */
		start_req(rt, r);
		r = next;
	}
}

static int run_retries(struct remote_tier *rt)
{
	uint64_t now = monotonic_ns();
	struct req *due = NULL, **p = &rt->retries;
	int next_ms = -1;
	while (*p) {
		struct req *r = *p;
		if (r->retry_at <= now) {
			*p = r->next;
			r->next = due;
			due = r;
		} else {
			int ms = (int)((r->retry_at - now) / 1000000) + 1;
			next_ms = next_ms < 0 || ms < next_ms ? ms : next_ms;
			p = &r->next;
		}
	}
	while (due) {
		struct req *r = due;
		due = r->next;
		if (r->kind == REQ_READ)
			read_start(rt, r);
		else
			unref_start(rt, r);  /* asks again whether it is still wanted */
	}
	return next_ms;
}

static void publish_stats(struct remote_tier *rt)
{
	struct rc_stats rs;
	rc_get_stats(rt->rc, &rs);
	/* said once each way: the client retries, and says why at debug */
	if (rs.reachable == rt->unreachable_said) {
		rt->unreachable_said = !rs.reachable;
		if (rt->unreachable_said)
			pr_warn("remote tier: the cluster cannot be reached (a slot has no master connected): uploads "
				"pause, faults on its pages wait");
		else
			pr_info("remote tier: the cluster is reachable again");
	}
	pthread_mutex_lock(&rt->lock);
	rt->st.unreachable = !rs.reachable;
	pthread_mutex_unlock(&rt->lock);
}

static void flush_msgs(struct remote_tier *rt)
{
	if (io_uring_sq_ready(&rt->ring))
		io_uring_submit(&rt->ring);
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&rt->ring, &cqe) == 0) {
		if (cqe->res < 0)
			pr_warn("remote tier: a read's completion could not be posted: %s", strerror(-cqe->res));
		io_uring_cqe_seen(&rt->ring, cqe);
	}
}

static void refreshed(void *arg, int result)
{
	struct remote_tier *rt = arg;
	rt->refreshing = false;
	if (result == 0 && !rt->claim_lost)
		pr_err("remote tier: another memsrv claimed node id %s: two hosts now file references under one id",
		       rt->node.id);
	rt->claim_lost = result == 0;
}

/* The node id's claim, renewed well before it expires. */
static void keep_claim(struct remote_tier *rt)
{
	uint64_t now = monotonic_ns();
	if (rt->refreshing || now < rt->next_refresh_ns)
		return;
	rt->next_refresh_ns = now + REMOTE_ALIVE_REFRESH_MS * 1000000ull;
	rt->refresh = (struct remote_alive_call){ .done = refreshed, .arg = rt };
	rt->refreshing = !remote_alive_claim(rt->rc, rt->node.id, rt->token, &rt->refresh);
}

static void *thread_main(void *arg)
{
	struct remote_tier *rt = arg;
	uint64_t grace_end = 0;
	for (;;) {
		pthread_mutex_lock(&rt->lock);
		bool stopping = rt->stopping;
		pthread_mutex_unlock(&rt->lock);
		if (stopping && !grace_end)
			grace_end = monotonic_ns() + CLOSE_GRACE_MS * 1000000ull;
		if (stopping && (!rt->unrefs_live || monotonic_ns() >= grace_end))
			break;
		int next = run_retries(rt);
		int wait_ms = rc_pending(rt->rc) ? 20 : 200;  /* the client's timers, the stats */
		if (next >= 0 && next < wait_ms)
			wait_ms = next;
		struct epoll_event evs[2];
		epoll_wait(rt->epfd, evs, 2, wait_ms);
		run_posted(rt);
		keep_claim(rt);
		rc_poll(rt->rc, 0);
		flush_msgs(rt);
		publish_stats(rt);
	}
	/* a clean stop: the id is free for the next memsrv at once */
	remote_alive_release_now(rt->rc, rt->node.id, rt->token, 1000);
	if (rt->unrefs_live)
		pr_warn("remote tier: %u references could not be dropped before stopping: memsrv-ctl remote gc %s "
			"drops them", rt->unrefs_live, rt->node.id);
	/* what is left completes with -ECANCELED: reads deliver it */
	run_posted(rt);
	rc_close(rt->rc);
	rt->rc = NULL;
	/* unrefs the cancelled uploads posted: nothing runs them now */
	pthread_mutex_lock(&rt->lock);
	struct req *left = rt->posted;
	rt->posted = rt->posted_tail = NULL;
	pthread_mutex_unlock(&rt->lock);
	while (left) {
		struct req *r = left;
		left = r->next;
		if (r->kind == REQ_READ)
			deliver(rt, r, -ECANCELED, NULL);
		else
			free(r);
	}
	while (rt->retries) {
		struct req *r = rt->retries;
		rt->retries = r->next;
		if (r->kind == REQ_READ)
			deliver(rt, r, -ECANCELED, NULL);
		else
			free(r);
	}
	flush_msgs(rt);
	return NULL;
}

/* ---- open, close ---- */

int remote_tier_open(struct remote_tier **out, const struct remote_tier_config *cfg, char *why, size_t len)
{
	struct remote_tier *rt = calloc(1, sizeof *rt);
	if (!rt)
		return -ENOMEM;
	rt->cfg = *cfg;
	rt->efd = rt->epfd = -1;
	pthread_mutex_init(&rt->lock, NULL);
	pthread_cond_init(&rt->cond, NULL);
	rt->held_buckets = 1024;
	rt->held = calloc(rt->held_buckets, sizeof *rt->held);
	rt->ctx = codec_ctx_create();
	int ret = rt->held && rt->ctx ? 0 : -ENOMEM;
	if (ret)
		snprintf(why, len, "no memory");
	if (!ret && (ret = remote_node_init(&rt->node, NULL, cfg->node_id)))
		snprintf(why, len, "node id '%s' is not 1-%d characters without braces or spaces", cfg->node_id,
			 REMOTE_NODE_ID_MAX - 1);
	if (!ret && (ret = rc_open(&rt->rc, &cfg->rc, why, len)) == 0)
		rt->node.rc = rt->rc;
	snprintf(rt->token, sizeof rt->token, "%s", cfg->token ? cfg->token : "memsrv");
	if (!ret) {
		char holder[REMOTE_TOKEN_MAX] = "";
		ret = remote_alive_claim_now(rt->rc, rt->node.id, rt->token, REMOTE_ALIVE_TTL_MS + 2000, holder,
					     sizeof holder);
		if (ret == -EADDRINUSE)
			snprintf(why, len, "node id '%s' is in use by another memsrv (%s): give each its own --node-id",
				 rt->node.id, holder);
		else if (ret == -EACCES)
			snprintf(why, len, "the cluster refused to run the tier's scripts (NOPERM): the ACL user needs the "
				 "rights docs/operations.md lists");
		else if (ret)
			snprintf(why, len, "claiming node id '%s': %s", rt->node.id, strerror(-ret));
		rt->next_refresh_ns = monotonic_ns() + REMOTE_ALIVE_REFRESH_MS * 1000000ull;
	}
	if (!ret && (ret = io_uring_queue_init(MSG_RING_ENTRIES, &rt->ring, 0)))
		snprintf(why, len, "io_uring: %s", strerror(-ret));
	rt->ring_ready = !ret;
	if (!ret) {
		rt->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		rt->epfd = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		if (rt->efd < 0 || rt->epfd < 0 || epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rt->efd, &ev) ||
		    epoll_ctl(rt->epfd, EPOLL_CTL_ADD, rc_fd(rt->rc), &ev)) {
			ret = -errno;
			snprintf(why, len, "epoll: %s", strerror(errno));
		}
	}
	if (!ret && (ret = -pthread_create(&rt->thread, NULL, thread_main, rt)))
		snprintf(why, len, "thread: %s", strerror(-ret));
	rt->started = !ret;
	if (ret) {
		remote_tier_close(rt);
		return ret;
	}
	rt->cfg.node_id = rt->node.id;  /* its copy */
	*out = rt;
	return 0;
}

void remote_tier_close(struct remote_tier *rt)
{
	if (!rt)
		return;
	pthread_mutex_lock(&rt->lock);
	while (rt->background_gcs)  /* each gives up at its deadline */
		pthread_cond_wait(&rt->cond, &rt->lock);
	pthread_mutex_unlock(&rt->lock);
	if (rt->started) {
		pthread_mutex_lock(&rt->lock);
		rt->stopping = true;
		pthread_mutex_unlock(&rt->lock);
		wake(rt);
		pthread_join(rt->thread, NULL);
	} else {
		rc_close(rt->rc);
	}
	if (rt->ring_ready)
		io_uring_queue_exit(&rt->ring);
	if (rt->efd >= 0)
		close(rt->efd);
	if (rt->epfd >= 0)
		close(rt->epfd);
	for (size_t i = 0; rt->held && i < rt->held_buckets; i++)
		for (struct held *h = rt->held[i], *next; h; h = next) {
			next = h->next;
			free(h);
		}
	free(rt->held);
	codec_ctx_destroy(rt->ctx);
	free(rt);
}

const char *remote_tier_node_id(const struct remote_tier *rt)
{
	return rt->node.id;
}

long remote_tier_gc(struct remote_tier *rt, const char *node_id, int timeout_ms, char *holder, size_t len)
{
	struct rc_cluster *rc;
	char why[200];
	int ret = rc_open(&rc, &rt->cfg.rc, why, sizeof why);
	if (ret) {
		pr_warn("remote gc: %s", why);
		return ret;
	}
	/* a running memsrv's references hold its VMs' pages */
	long n = strlen(node_id) < REMOTE_NODE_ID_MAX ? remote_alive_holder_now(rc, node_id, holder, len, timeout_ms) : 0;
	if (n == 1 && strcmp(holder, rt->token))
		n = -EBUSY;
	else if (n >= 0)
		n = remote_gc_node(rc, node_id, timeout_ms);
	rc_close(rc);
	return n;
}

struct background_gc {
	struct remote_tier *rt;
	char id[REMOTE_NODE_ID_MAX];
};

static void *background_gc_main(void *arg)
{
	struct background_gc *g = arg;
	struct remote_tier *rt = g->rt;
	char holder[REMOTE_TOKEN_MAX] = "";
	long n = remote_tier_gc(rt, g->id, BACKGROUND_GC_MS, holder, sizeof holder);
	if (n < 0)
		pr_warn("remote tier: dropping the references of %s failed (%s): memsrv-ctl remote gc %s drops them",
			g->id, strerror((int)-n), g->id);
	else
		pr_info("remote tier: %ld references of %s dropped", n, g->id);
	pthread_mutex_lock(&rt->lock);
	rt->background_gcs--;
	pthread_cond_broadcast(&rt->cond);
	pthread_mutex_unlock(&rt->lock);
	free(g);
	return NULL;
}

void remote_tier_gc_background(struct remote_tier *rt, const char *node_id)
{
	struct background_gc *g = calloc(1, sizeof *g);
	pthread_attr_t attr;
	pthread_t t;
	if (!g || strlen(node_id) >= sizeof g->id) {
		free(g);
		pr_warn("remote tier: cannot drop the references of %s now: memsrv-ctl remote gc %s drops them", node_id,
			node_id);
		return;
	}
	*g = (struct background_gc){ .rt = rt };
	memcpy(g->id, node_id, strlen(node_id) + 1);
	pthread_mutex_lock(&rt->lock);
	rt->background_gcs++;
	pthread_mutex_unlock(&rt->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int ret = pthread_create(&t, &attr, background_gc_main, g);
	pthread_attr_destroy(&attr);
	if (ret) {
		pthread_mutex_lock(&rt->lock);
		rt->background_gcs--;
		pthread_mutex_unlock(&rt->lock);
		free(g);
		pr_warn("remote tier: cannot drop the references of %s now (%s): memsrv-ctl remote gc %s drops them",
			node_id, strerror(ret), node_id);
	}
}

void remote_tier_get_stats(struct remote_tier *rt, struct remote_tier_stats *out)
{
	pthread_mutex_lock(&rt->lock);
	*out = rt->st;
	pthread_mutex_unlock(&rt->lock);
}
