/* redis_cluster: a small Redis Cluster client (redis_cluster.h). */
#include "redis_cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define RC_DEFAULT_TIMEOUT_MS 10000
#define RC_CONNECT_MS 1000        /* a connect that takes longer: the node is down */
#define RC_STALL_MS 3000          /* a node that answers nothing for this long, with commands in flight */
#define RC_RETRY_MS 100           /* between tries of a command the cluster could not serve */
#define RC_RECONNECT_MS 200       /* between connects to a node that failed */
#define RC_READ_CHUNK 65536

struct rc_cmd {
	char *buf;                /* the command, in RESP */
	size_t len;
	unsigned slot;
	int node;                 /* >= 0: this node whatever the slot (CLUSTER SLOTS, AUTH, rc_command_on) */
	uint32_t gen;             /* on_connection: the connection of node it must go on */
	bool on_connection;       /* rc_command_on(): that connection or none */
	int ask_node;             /* >= 0: ASK redirection: to that node, after ASKING, once */
	bool asking_placeholder;  /* the ASKING before a redirected command: its reply is dropped */
	bool internal;            /* the client's own (CLUSTER SLOTS, AUTH): not the caller's */
	rc_done_fn done;          /* NULL: completed already (timed out), or internal and done */
	void *arg;
	uint64_t deadline_ns, not_before_ns;
	struct rc_cmd *next;
};

struct rc_queue {
	struct rc_cmd *head, *tail;
};

enum node_state { NODE_DOWN, NODE_CONNECTING, NODE_AUTHENTICATING, NODE_UP };

struct rc_node {
	struct rc_cluster *owner;
	int idx;
	bool auth_refused;
	char host[NI_MAXHOST];
	char port[8];
	enum node_state state;
	int fd;
	uint32_t gen;             /* counts its connections: rc_conn names one */
	bool master;              /* the slot map names it: kept connected */
	bool watching_out;        /* its fd is in the epoll for EPOLLOUT too */
	redisReader *reader;
	char *wbuf;               /* written to the socket in order, from woff */
	size_t wlen, woff, wcap;
	struct rc_queue inflight; /* sent or being sent, answered in this order */
	uint64_t connect_deadline_ns, reconnect_at_ns, last_reply_ns;
};

struct rc_cluster {
	char *user, *password;
	unsigned timeout_ms;
	struct rc_node nodes[RC_MAX_NODES];
	unsigned n_nodes;
	int16_t slot_node[RC_SLOTS];  /* -1: no master known */
	struct rc_queue waiting;       /* not sent yet (or to be sent again) */
	bool map_stale, map_reading;
	uint64_t map_not_before_ns;
	unsigned next_map_node;        /* round robin over the nodes to read the map from */
	int epoll_fd;
	unsigned pending;              /* the caller's commands not completed */
	bool closing;                  /* rc_close(): no command is queued any more */
	char last_error[192];          /* what went wrong last, for rc_open's why */
	struct rc_conn replying;       /* the connection of the reply being handed to a callback */
	bool in_reply;
	int completed;                 /* by this rc_poll() */
	struct rc_stats stats;
};

/* ---- keys and slots ---- */

/* CRC16-XMODEM (polynomial 0x1021, initial 0), as the cluster specification */
static uint16_t crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;
	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned rc_keyslot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);
	if (open) {
		size_t after = (size_t)(open - key) + 1;
		const char *close = memchr(open + 1, '}', len - after);
		if (close && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) & (RC_SLOTS - 1);
	}
	return crc16(key, len) & (RC_SLOTS - 1);
}

/* ---- queues ---- */

static void queue_push(struct rc_queue *q, struct rc_cmd *cmd)
{
	cmd->next = NULL;
	if (q->tail)
		q->tail->next = cmd;
	else
		q->head = cmd;
	q->tail = cmd;
}

static struct rc_cmd *queue_pop(struct rc_queue *q)
{
	struct rc_cmd *cmd = q->head;
	if (cmd) {
		q->head = cmd->next;
		if (!q->head)
			q->tail = NULL;
	}
	return cmd;
}

/* Puts every command of from before those of to, in order. */
static void queue_prepend(struct rc_queue *to, struct rc_queue *from)
{
	if (!from->head)
		return;
	from->tail->next = to->head;
	if (!to->tail)
		to->tail = from->tail;
	to->head = from->head;
	from->head = from->tail = NULL;
}

static void cmd_free(struct rc_cmd *cmd)
{
	free(cmd->buf);
	free(cmd);
}

/* Calls the command's callback once. */
static void complete(struct rc_cluster *c, struct rc_cmd *cmd, const redisReply *reply, int err)
{
	rc_done_fn done = cmd->done;
	cmd->done = NULL;
	if (!done)
		return;
	if (!cmd->internal) {
		c->pending--;
		c->completed++;
	}
	done(cmd->arg, reply, err);
}

/* ---- nodes ---- */

static int node_find(struct rc_cluster *c, const char *host, const char *port)
{
	for (unsigned i = 0; i < c->n_nodes; i++)
		if (!strcmp(c->nodes[i].host, host) && !strcmp(c->nodes[i].port, port))
			return (int)i;
	return -1;
}

/* The node at host:port, added when new; -1 when there are too many. */
static int node_get(struct rc_cluster *c, const char *host, const char *port)
{
	int i = node_find(c, host, port);
	if (i >= 0 || c->n_nodes == RC_MAX_NODES)
		return i;
	struct rc_node *n = &c->nodes[c->n_nodes];
	memset(n, 0, sizeof *n);
	snprintf(n->host, sizeof n->host, "%s", host);
	snprintf(n->port, sizeof n->port, "%s", port);
	n->fd = -1;
	n->owner = c;
	n->idx = (int)c->n_nodes;
	return (int)c->n_nodes++;
}

static void node_close(struct rc_node *n)
{
	if (n->fd >= 0)
		close(n->fd);  /* leaves the epoll too */
	n->fd = -1;
	if (n->reader)
		redisReaderFree(n->reader);
	n->reader = NULL;
	n->wlen = n->woff = 0;
	n->state = NODE_DOWN;
}

/* The node failed: what it had in flight goes to be sent again, first in
 * line; the map is read again (a failover moves slots). */
static void node_fail(struct rc_cluster *c, int idx, const char *why)
{
	struct rc_node *n = &c->nodes[idx];
	if (n->state != NODE_DOWN)
		pr_debug("redis %s:%s: %s", n->host, n->port, why);
	snprintf(c->last_error, sizeof c->last_error, "%.64s:%s %.100s", n->host, n->port, why);
	node_close(n);
	n->reconnect_at_ns = monotonic_ns() + RC_RECONNECT_MS * 1000000ull;
	struct rc_queue again = { 0 };
	for (struct rc_cmd *cmd; (cmd = queue_pop(&n->inflight));) {
		if (cmd->asking_placeholder || !cmd->done) {
			cmd_free(cmd);  /* nothing waits on it */
			continue;
		}
		if (cmd->internal || cmd->on_connection) {
			/* this node's own (its map, its AUTH), or for this
			 * connection only: moot now */
			complete(c, cmd, NULL, -ECONNRESET);
			cmd_free(cmd);
			continue;
		}
		cmd->not_before_ns = monotonic_ns() + RC_RETRY_MS * 1000000ull;
		c->stats.retries++;
		queue_push(&again, cmd);
	}
	queue_prepend(&c->waiting, &again);
	c->map_stale = true;
}

static int node_connect(struct rc_cluster *c, int idx)
{
	struct rc_node *n = &c->nodes[idx];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai;
	int ret = getaddrinfo(n->host, n->port, &hints, &ai);
	if (ret) {
		n->reconnect_at_ns = monotonic_ns() + RC_RECONNECT_MS * 1000000ull;
		return -EHOSTUNREACH;
	}
	n->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (n->fd < 0) {
		freeaddrinfo(ai);
		return -errno;
	}
	int one = 1;
	setsockopt(n->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	ret = connect(n->fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS ? -errno : 0;
	freeaddrinfo(ai);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)idx };
	n->reader = redisReaderCreate();
	if (ret || !n->reader || epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, n->fd, &ev)) {
		ret = ret ? ret : -ENOMEM;
		node_close(n);
		n->reconnect_at_ns = monotonic_ns() + RC_RECONNECT_MS * 1000000ull;
		return ret;
	}
	n->state = NODE_CONNECTING;
	n->watching_out = true;  /* the connect's end */
	n->gen++;
	n->connect_deadline_ns = monotonic_ns() + RC_CONNECT_MS * 1000000ull;
	c->stats.reconnects++;
	return 0;
}

/* Appends a command's bytes to what the node writes next. */
static int node_append(struct rc_node *n, const char *buf, size_t len)
{
	if (n->wlen + len > n->wcap) {
		size_t cap = n->wcap ? n->wcap : 65536;
		while (cap < n->wlen + len)
			cap *= 2;
		char *w = realloc(n->wbuf, cap);
		if (!w)
			return -ENOMEM;
		n->wbuf = w;
		n->wcap = cap;
	}
	memcpy(n->wbuf + n->wlen, buf, len);
	n->wlen += len;
	return 0;
}

static void node_send(struct rc_cluster *c, int idx, struct rc_cmd *cmd)
{
	struct rc_node *n = &c->nodes[idx];
	if (node_append(n, cmd->buf, cmd->len)) {
		/* out of memory: try again later */
		cmd->not_before_ns = monotonic_ns() + RC_RETRY_MS * 1000000ull;
		queue_push(&c->waiting, cmd);
		return;
	}
	if (!n->inflight.head)
		n->last_reply_ns = monotonic_ns();  /* the stall clock starts with the first in flight */
	queue_push(&n->inflight, cmd);
}

/* Writes what the node has to write; false when the socket failed. */
static bool node_flush(struct rc_node *n)
{
	while (n->woff < n->wlen) {
		ssize_t w = send(n->fd, n->wbuf + n->woff, n->wlen - n->woff, MSG_NOSIGNAL);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR;
		n->woff += (size_t)w;
	}
	n->wlen = n->woff = 0;
	return true;
}

/* ---- commands ---- */

static struct rc_cmd *cmd_make(struct rc_cluster *c, int argc, const char **argv, const size_t *argv_len)
{
	struct rc_cmd *cmd = calloc(1, sizeof *cmd);
	if (!cmd)
		return NULL;
	char *buf;
	int len = redisFormatCommandArgv(&buf, argc, argv, argv_len);
	if (len < 0) {
		free(cmd);
		return NULL;
	}
	cmd->buf = buf;
	cmd->len = (size_t)len;
	cmd->node = cmd->ask_node = -1;
	cmd->deadline_ns = monotonic_ns() + c->timeout_ms * 1000000ull;
	return cmd;
}

/* A caller's command, made and placed by the caller, joins the queue. */
static void queue_for_caller(struct rc_cluster *c, struct rc_cmd *cmd, rc_done_fn done, void *arg)
{
	cmd->done = done;
	cmd->arg = arg;
	queue_push(&c->waiting, cmd);
	c->pending++;
	c->stats.commands++;
}

int rc_command(struct rc_cluster *c, const char *key, size_t key_len, int argc, const char **argv,
	       const size_t *argv_len, rc_done_fn done, void *arg)
{
	if (c->closing)
		return -ECANCELED;
	struct rc_cmd *cmd = cmd_make(c, argc, argv, argv_len);
	if (!cmd)
		return -ENOMEM;
	cmd->slot = rc_keyslot(key, key_len);
	queue_for_caller(c, cmd, done, arg);
	return 0;
}

bool rc_reply_conn(const struct rc_cluster *c, struct rc_conn *out)
{
	if (!c->in_reply)
		return false;
	*out = c->replying;
	return true;
}

int rc_command_on(struct rc_cluster *c, const struct rc_conn *conn, int argc, const char **argv,
		  const size_t *argv_len, rc_done_fn done, void *arg)
{
	if (c->closing)
		return -ECANCELED;
	if (conn->node < 0 || (unsigned)conn->node >= c->n_nodes)
		return -EINVAL;
	struct rc_cmd *cmd = cmd_make(c, argc, argv, argv_len);
	if (!cmd)
		return -ENOMEM;
	cmd->node = conn->node;
	cmd->gen = conn->gen;
	cmd->on_connection = true;
	queue_for_caller(c, cmd, done, arg);
	return 0;
}

/* ---- the slot map ---- */

static bool reply_is_int(const redisReply *r) { return r && r->type == REDIS_REPLY_INTEGER; }
static bool reply_is_str(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING; }

/* CLUSTER SLOTS: [[start, end, [host, port, id...], replicas...]...].  A
 * reply of another shape leaves the map as it was. */
static void map_apply(struct rc_cluster *c, const redisReply *r)
{
	if (r && r->type == REDIS_REPLY_ERROR)
		snprintf(c->last_error, sizeof c->last_error, "CLUSTER SLOTS: %s", r->str);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		pr_warn("redis: CLUSTER SLOTS answered %s: the slot map stays as it was",
			r && r->type == REDIS_REPLY_ERROR ? r->str : "something else than a list");
		return;
	}
	int16_t map[RC_SLOTS];
	for (unsigned s = 0; s < RC_SLOTS; s++)
		map[s] = -1;
	unsigned masters = 0;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !reply_is_int(e->element[0]) ||
		    !reply_is_int(e->element[1]) || e->element[2]->type != REDIS_REPLY_ARRAY ||
		    e->element[2]->elements < 2 || !reply_is_str(e->element[2]->element[0]) ||
		    !reply_is_int(e->element[2]->element[1])) {
			pr_warn("redis: CLUSTER SLOTS answered an entry of another shape: the slot map stays as it was");
			return;
		}
		long long start = e->element[0]->integer, end = e->element[1]->integer;
		long long port = e->element[2]->element[1]->integer;
		if (start < 0 || end >= RC_SLOTS || start > end || port <= 0 || port > 65535) {
			pr_warn("redis: CLUSTER SLOTS answered slots %lld-%lld on port %lld: the slot map stays as it was",
				start, end, port);
			return;
		}
		char port_text[8];
		snprintf(port_text, sizeof port_text, "%lld", port);
		int idx = node_get(c, e->element[2]->element[0]->str, port_text);
		if (idx < 0) {
			pr_warn("redis: more than %d nodes: the slot map stays as it was", RC_MAX_NODES);
			return;
		}
		masters++;
		for (long long s = start; s <= end; s++)
			map[s] = (int16_t)idx;
	}
	memcpy(c->slot_node, map, sizeof map);
	for (unsigned i = 0; i < c->n_nodes; i++)
		c->nodes[i].master = false;
	for (unsigned s = 0; s < RC_SLOTS; s++)
		if (map[s] >= 0)
			c->nodes[map[s]].master = true;
	c->stats.masters = masters;
	c->stats.map_reads++;
	c->map_stale = false;
}

static void map_done(void *arg, const redisReply *reply, int err)
{
	struct rc_cluster *c = arg;
	c->map_reading = false;
	if (!err)
		map_apply(c, reply);
	/* at most one read per RC_RETRY_MS, however often it is found stale */
	c->map_not_before_ns = monotonic_ns() + RC_RETRY_MS * 1000000ull;
}

/* Reads the map from a connected node, or connects one to read it from. */
static void map_refresh(struct rc_cluster *c, uint64_t now)
{
	if (!c->map_stale || c->map_reading || now < c->map_not_before_ns || !c->n_nodes)
		return;
	for (unsigned k = 0; k < c->n_nodes; k++) {
		unsigned idx = (c->next_map_node + k) % c->n_nodes;
		if (c->nodes[idx].state != NODE_UP)
			continue;
		static const char *const argv[] = { "CLUSTER", "SLOTS" };
		struct rc_cmd *cmd = cmd_make(c, 2, (const char **)argv, NULL);
		if (!cmd)
			return;
		cmd->node = (int)idx;
		cmd->internal = true;
		cmd->done = map_done;
		cmd->arg = c;
		node_send(c, (int)idx, cmd);
		c->map_reading = true;
		c->next_map_node = idx + 1;
		return;
	}
	/* none connected: the next one that can be tried is */
	for (unsigned k = 0; k < c->n_nodes; k++) {
		unsigned idx = (c->next_map_node + k) % c->n_nodes;
		struct rc_node *n = &c->nodes[idx];
		if (n->state == NODE_CONNECTING || n->state == NODE_AUTHENTICATING)
			return;  /* wait for it */
		if (n->state == NODE_DOWN && now >= n->reconnect_at_ns) {
			node_connect(c, (int)idx);
			c->next_map_node = idx;
			return;
		}
	}
}

/* ---- rc_poll's steps ---- */

/* Every master stays connected, busy or not: a dead one is seen as soon
 * as its connection drops (rc_get_stats' reachable), and while one is
 * down the map is read again until a replica has taken over its slots. */
static void keep_masters(struct rc_cluster *c, uint64_t now)
{
	for (unsigned i = 0; i < c->n_nodes; i++) {
		struct rc_node *n = &c->nodes[i];
		if (!n->master || n->state != NODE_DOWN)
			continue;
		c->map_stale = true;
		if (now >= n->reconnect_at_ns)
			node_connect(c, (int)i);
	}
}

/* Sends each waiting command whose node is connected; connects the nodes
 * they wait for; fails those past their deadline. */
static void dispatch(struct rc_cluster *c, uint64_t now)
{
	/* a callback called from here may queue commands: they wait after these */
	struct rc_queue todo = c->waiting, still = { 0 };
	c->waiting = (struct rc_queue){ 0 };
	for (struct rc_cmd *cmd; (cmd = queue_pop(&todo));) {
		if (now >= cmd->deadline_ns) {
			complete(c, cmd, NULL, -ETIMEDOUT);
			cmd_free(cmd);
			continue;
		}
		int idx = cmd->ask_node >= 0 ? cmd->ask_node : cmd->node >= 0 ? cmd->node : c->slot_node[cmd->slot];
		if (idx < 0 || now < cmd->not_before_ns) {
			if (idx < 0)
				c->map_stale = true;
			queue_push(&still, cmd);
			continue;
		}
		struct rc_node *n = &c->nodes[idx];
		if (cmd->on_connection && (n->state != NODE_UP || n->gen != cmd->gen)) {
			complete(c, cmd, NULL, -ECONNRESET);  /* its connection is gone */
			cmd_free(cmd);
			continue;
		}
		if (n->state == NODE_DOWN && now >= n->reconnect_at_ns)
			node_connect(c, idx);
		if (n->state != NODE_UP) {
			/* a master that went down: its replica may serve the slot now */
			c->map_stale |= n->state == NODE_DOWN;
			queue_push(&still, cmd);
			continue;
		}
		if (cmd->ask_node >= 0) {
			static const char *const asking[] = { "ASKING" };
			struct rc_cmd *p = cmd_make(c, 1, (const char **)asking, NULL);
			if (!p) {
				queue_push(&still, cmd);
				continue;
			}
			p->asking_placeholder = true;
			node_send(c, idx, p);
			cmd->ask_node = -1;  /* once: the next redirection says again */
		}
		node_send(c, idx, cmd);
	}
	queue_prepend(&c->waiting, &still);
}

static void authenticated(void *arg, const redisReply *reply, int err);

/* A connect finished: the node is up, or authenticates first. */
static void connected(struct rc_cluster *c, int idx)
{
	struct rc_node *n = &c->nodes[idx];
	int soerr = 0;
	socklen_t len = sizeof soerr;
	if (getsockopt(n->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) || soerr) {
		node_fail(c, idx, strerror(soerr ? soerr : errno));
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)idx };
	epoll_ctl(c->epoll_fd, EPOLL_CTL_MOD, n->fd, &ev);
	n->watching_out = false;
	if (!c->password) {
		n->state = NODE_UP;
		return;
	}
	n->state = NODE_AUTHENTICATING;
	const char *argv[3] = { "AUTH" };
	int argc = 1;
	if (c->user)
		argv[argc++] = c->user;
	argv[argc++] = c->password;
	struct rc_cmd *cmd = cmd_make(c, argc, argv, NULL);
	if (!cmd) {
		node_fail(c, idx, "out of memory");
		return;
	}
	cmd->node = idx;
	cmd->internal = true;
	cmd->done = authenticated;
	cmd->arg = n;
	node_send(c, idx, cmd);
}

static void authenticated(void *arg, const redisReply *reply, int err)
{
	struct rc_node *n = arg;
	if (err)
		return;  /* the node failed meanwhile */
	if (reply->type == REDIS_REPLY_STATUS) {
		n->state = NODE_UP;
		return;
	}
	pr_warn_ratelimited("redis %s:%s refused the password: %s", n->host, n->port,
		reply->type == REDIS_REPLY_ERROR ? reply->str : "(an answer of another kind)");
	n->auth_refused = true;  /* node_read closes it */
}

/* "MOVED 3999 127.0.0.1:6381" and "ASK ...": the node named, added when new. */
static int redirect_target(struct rc_cluster *c, const char *err, unsigned *slot)
{
	const char *sp = strchr(err, ' ');
	if (!sp)
		return -1;
	char *end;
	unsigned long s = strtoul(sp + 1, &end, 10);
	if (*end != ' ' || s >= RC_SLOTS)
		return -1;
	const char *addr = end + 1, *colon = strrchr(addr, ':');
	if (!colon || colon == addr || (size_t)(colon - addr) >= NI_MAXHOST || strlen(colon + 1) >= 8)
		return -1;
	char host[NI_MAXHOST];
	snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
	*slot = (unsigned)s;
	return node_get(c, host, colon + 1);
}

/* One reply, for the oldest command in flight on the node. */
static void handle_reply(struct rc_cluster *c, int idx, redisReply *reply)
{
	struct rc_node *n = &c->nodes[idx];
	struct rc_cmd *cmd = queue_pop(&n->inflight);
	n->last_reply_ns = monotonic_ns();
	if (cmd->asking_placeholder || !cmd->done) {
		cmd_free(cmd);  /* ASKING's OK; or a command that timed out while in flight */
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR && cmd->node < 0) {
		unsigned slot;
		int to;
		if (!strncmp(reply->str, "MOVED ", 6) && (to = redirect_target(c, reply->str, &slot)) >= 0) {
			c->slot_node[slot] = (int16_t)to;
			c->map_stale = true;  /* more slots moved, surely */
			c->stats.moved++;
			queue_push(&c->waiting, cmd);
			return;
		}
		if (!strncmp(reply->str, "ASK ", 4) && (to = redirect_target(c, reply->str, &slot)) >= 0) {
			cmd->ask_node = to;
			c->stats.asked++;
			queue_push(&c->waiting, cmd);
			return;
		}
		if (!strncmp(reply->str, "TRYAGAIN", 8) || !strncmp(reply->str, "CLUSTERDOWN", 11) ||
		    !strncmp(reply->str, "LOADING", 7) || !strncmp(reply->str, "MASTERDOWN", 10)) {
			cmd->not_before_ns = monotonic_ns() + RC_RETRY_MS * 1000000ull;
			c->map_stale |= reply->str[0] == 'C';
			c->stats.retries++;
			queue_push(&c->waiting, cmd);
			return;
		}
	}
	c->replying = (struct rc_conn){ idx, n->gen };
	c->in_reply = true;
	complete(c, cmd, reply, 0);
	c->in_reply = false;
	cmd_free(cmd);
}

static void node_read(struct rc_cluster *c, int idx)
{
	struct rc_node *n = &c->nodes[idx];
	char buf[RC_READ_CHUNK];
	for (;;) {
		ssize_t r = recv(n->fd, buf, sizeof buf, 0);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
			node_fail(c, idx, r ? strerror(errno) : "closed the connection");
			return;
		}
		if (r < 0)
			break;
		if (redisReaderFeed(n->reader, buf, (size_t)r) != REDIS_OK) {
			node_fail(c, idx, "out of memory");
			return;
		}
		if ((size_t)r < sizeof buf)
			break;
	}
	for (;;) {
		void *reply = NULL;
		if (redisReaderGetReply(n->reader, &reply) != REDIS_OK) {
			node_fail(c, idx, "sent what is not RESP");
			return;
		}
		if (!reply)
			return;
		if (!n->inflight.head) {
			freeReplyObject(reply);
			node_fail(c, idx, "answered a command never sent");
			return;
		}
		handle_reply(c, idx, reply);
		freeReplyObject(reply);
		if (n->auth_refused) {
			n->auth_refused = false;
			node_fail(c, idx, "refused the password (AUTH)");
			n->reconnect_at_ns = monotonic_ns() + 10 * RC_RECONNECT_MS * 1000000ull;  /* not at once again */
			return;
		}
	}
}

/* Connects that take too long and nodes that stall with commands in flight
 * fail; commands in flight past their deadline complete with -ETIMEDOUT
 * (their replies, if they come, are dropped). */
static void check_time(struct rc_cluster *c, uint64_t now)
{
	for (unsigned i = 0; i < c->n_nodes; i++) {
		struct rc_node *n = &c->nodes[i];
		if (n->state == NODE_CONNECTING && now >= n->connect_deadline_ns) {
			node_fail(c, (int)i, "did not accept the connection in time");
			continue;
		}
		if (n->inflight.head && now >= n->last_reply_ns + RC_STALL_MS * 1000000ull) {
			node_fail(c, (int)i, "answered nothing for 3 s");
			continue;
		}
		for (struct rc_cmd *cmd = n->inflight.head; cmd; cmd = cmd->next)
			if (cmd->done && !cmd->internal && now >= cmd->deadline_ns)
				complete(c, cmd, NULL, -ETIMEDOUT);
	}
}

int rc_poll(struct rc_cluster *c, int timeout_ms)
{
	c->completed = 0;
	uint64_t start = monotonic_ns(), end = start + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
	for (bool waited = false;; waited = true) {
		uint64_t now = monotonic_ns();
		check_time(c, now);
		keep_masters(c, now);
		map_refresh(c, now);
		dispatch(c, now);
		for (unsigned i = 0; i < c->n_nodes; i++) {
			struct rc_node *n = &c->nodes[i];
			if (n->state >= NODE_AUTHENTICATING && n->wlen && !node_flush(n))
				node_fail(c, (int)i, strerror(errno));
			else if (n->fd >= 0 && n->state != NODE_CONNECTING && n->watching_out != (n->wlen > 0)) {
				/* EPOLLOUT only while a write waits for room: a syscall
				 * on a change, not on every pass */
				n->watching_out = n->wlen > 0;
				struct epoll_event ev = { .events = EPOLLIN | (n->watching_out ? EPOLLOUT : 0), .data.u32 = i };
				epoll_ctl(c->epoll_fd, EPOLL_CTL_MOD, n->fd, &ev);
			}
		}
		/* a timeout of 0 still reads what is ready, once */
		if (c->completed || (now >= end && waited))
			return c->completed;
		/* wake for the next retry or connect deadline too */
		int wait_ms = now >= end ? 0 : (int)((end - now + 999999) / 1000000);
		if (wait_ms > RC_RETRY_MS)
			wait_ms = RC_RETRY_MS;
		struct epoll_event evs[RC_MAX_NODES];
		int ready = epoll_wait(c->epoll_fd, evs, RC_MAX_NODES, wait_ms);
		if (ready < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < ready; i++) {
			int idx = (int)evs[i].data.u32;
			struct rc_node *n = &c->nodes[idx];
			if (n->fd < 0)
				continue;  /* failed by an earlier event of this batch */
			if (n->state == NODE_CONNECTING) {
				connected(c, idx);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				node_read(c, idx);
			if (n->fd >= 0 && (evs[i].events & EPOLLOUT) && !node_flush(n))
				node_fail(c, idx, strerror(errno));
		}
	}
}

/* ---- the cluster ---- */

/* HOST:PORT, [V6]:PORT */
static int seed_add(struct rc_cluster *c, const char *seed, char *why, size_t len)
{
	const char *colon = strrchr(seed, ':');
	char host[NI_MAXHOST];
	const char *h = seed;
	size_t hlen = colon ? (size_t)(colon - seed) : 0;
	if (hlen >= 2 && seed[0] == '[' && seed[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	char *end;
	unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
	if (!hlen || hlen >= sizeof host || !port || port > 65535 || *end) {
		snprintf(why, len, "'%s' is not HOST:PORT", seed);
		return -EINVAL;
	}
	snprintf(host, sizeof host, "%.*s", (int)hlen, h);
	char port_text[8];
	snprintf(port_text, sizeof port_text, "%lu", port);
	if (node_get(c, host, port_text) < 0) {
		snprintf(why, len, "more than %d seeds", RC_MAX_NODES);
		return -EINVAL;
	}
	return 0;
}

int rc_open(struct rc_cluster **out, const struct rc_config *cfg, char *why, size_t len)
{
	struct rc_cluster *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	c->user = cfg->user ? strdup(cfg->user) : NULL;
	c->password = cfg->password ? strdup(cfg->password) : NULL;
	c->timeout_ms = cfg->command_timeout_ms ? cfg->command_timeout_ms : RC_DEFAULT_TIMEOUT_MS;
	for (unsigned s = 0; s < RC_SLOTS; s++)
		c->slot_node[s] = -1;
	int ret = c->epoll_fd < 0 || (cfg->user && !c->user) || (cfg->password && !c->password) ? -ENOMEM : 0;
	if (ret)
		snprintf(why, len, "out of memory");
	if (!ret && !cfg->n_seeds) {
		snprintf(why, len, "no seed nodes");
		ret = -EINVAL;
	}
	for (unsigned i = 0; !ret && i < cfg->n_seeds && i < RC_MAX_SEEDS; i++)
		ret = seed_add(c, cfg->seeds[i], why, len);
	if (ret) {
		rc_close(c);
		return ret;
	}
	/* the map, from the first seed that answers */
	c->map_stale = true;
	uint64_t deadline = monotonic_ns() + 5000000000ull;
	while (c->map_stale && monotonic_ns() < deadline)
		rc_poll(c, 100);
	if (c->map_stale || !c->stats.masters) {
		if (c->map_stale)
			snprintf(why, len, "no seed answered CLUSTER SLOTS within 5 s (last: %s)",
				 c->last_error[0] ? c->last_error : "nothing");
		else
			snprintf(why, len, "the cluster serves no slots yet");
		rc_close(c);
		return -EHOSTUNREACH;
	}
	*out = c;
	return 0;
}

static void cancel_queue(struct rc_cluster *c, struct rc_queue *q)
{
	for (struct rc_cmd *cmd; (cmd = queue_pop(q));) {
		if (!cmd->asking_placeholder)
			complete(c, cmd, NULL, -ECANCELED);
		cmd_free(cmd);
	}
}

void rc_close(struct rc_cluster *c)
{
	if (!c)
		return;
	c->closing = true;
	cancel_queue(c, &c->waiting);
	for (unsigned i = 0; i < c->n_nodes; i++) {
		cancel_queue(c, &c->nodes[i].inflight);
		node_close(&c->nodes[i]);
		free(c->nodes[i].wbuf);
	}
	if (c->epoll_fd >= 0)
		close(c->epoll_fd);
	free(c->user);
	free(c->password);
	free(c);
}

unsigned rc_pending(const struct rc_cluster *c)
{
	return c->pending;
}

int rc_fd(const struct rc_cluster *c)
{
	return c->epoll_fd;
}

void rc_get_stats(const struct rc_cluster *c, struct rc_stats *out)
{
	*out = c->stats;
	out->reachable = c->stats.masters > 0;
	for (unsigned s = 0; s < RC_SLOTS && out->reachable; s++)
		out->reachable = c->slot_node[s] >= 0 && c->nodes[c->slot_node[s]].state == NODE_UP;
}
