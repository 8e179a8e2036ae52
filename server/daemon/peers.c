/* peers: the peer thread, its listener and connections (peers.h). */
#include "peers.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "peer_wire.h"
#include "wire.h"

/* A peer-ping or a migration's connection the server thread posted,
 * waiting for the peer thread. */
struct peer_job {
	struct peer_addr addr;
	char address[PEER_ADDR_TEXT];
	int reply_fd;
	bool migrate;
	char vm[PEER_VM_NAME_MAX];
	struct peer_job *next;
};

struct peer_conn {
	int fd;
	char addr[PEER_ADDR_TEXT];
	bool outgoing;
	bool connecting;          /* outgoing: connect() not finished */
	struct peer_auth auth;
	struct peer_rx rx;
	struct peer_tx tx;
	uint64_t deadline_ns;     /* dropped past it; 0: none (authenticated, incoming) */
	/* outgoing peer-ping or migration */
	int reply_fd;             /* the control connection to answer; -1: answered */
	bool migrate;             /* handed to the server once authenticated, not pinged */
	bool urgent;              /* a migration's second connection, for the pages its destination's faults wait on */
	struct peer_conn *pair;   /* a migration's main connection and its urgent one, each the other's */
	struct peer_addr sa;      /* where it connected: the urgent one goes there too */
	char vm[PEER_VM_NAME_MAX];
	char address[PEER_ADDR_TEXT];  /* as asked */
	uint64_t started_ns, welcomed_ns, ping_sent_ns, seq;
	struct peer_conn *next, **prev;
};

struct peers {
	pthread_t thread;
	bool thread_started;
	int epoll_fd, listen_fd, wake_fd, tick_fd;
	pthread_mutex_t lock;     /* jobs, stopping */
	struct peer_job *jobs;
	bool stopping;
	struct peer_key key;
	struct peer_self self;
	char node[64], version[32];
	struct peer_conn *conns;
	unsigned unauthenticated; /* incoming connections in their handshake */
	int handoff_fd;           /* eventfd: the server thread has connections to take */
	struct peer_handoff *handoffs;  /* under lock */
};

/* Answers a peer-ping's control connection with an Error and closes it. */
__attribute__((format(printf, 3, 4)))
static void answer_error(int *reply_fd, int err, const char *fmt, ...)
{
	if (*reply_fd < 0)
		return;
	struct wire_error e;
	va_list ap;
	va_start(ap, fmt);
	wire_error_vformat(&e, err, NULL, fmt, ap);
	va_end(ap);
	wire_send_server(*reply_fd, &e.msg);
	close(*reply_fd);
	*reply_fd = -1;
}

/* Whether c's answers back up: memsrv reads no more of it until they
 * drain, so that a peer that reads nothing is held back by TCP instead of
 * growing memsrv's buffer (backpressure). */
static bool backed_up(const struct peer_conn *c)
{
	return peer_tx_backlog(&c->tx) >= PEERS_TX_HIGH;
}

static int watch(struct peers *p, struct peer_conn *c, int op)
{
	struct epoll_event ev = { .events = EPOLLRDHUP | (backed_up(c) ? 0 : EPOLLIN), .data.ptr = c };
	if (c->connecting || peer_tx_pending(&c->tx))
		ev.events |= EPOLLOUT;
	return epoll_ctl(p->epoll_fd, op, c->fd, &ev) ? -errno : 0;
}

static void hand_off(struct peers *p, struct peer_conn *c, struct peer_conn *urgent, Memsrv__PeerMessage *begin);

static void free_conn(struct peers *p, struct peer_conn *c)
{
	struct peer_conn *other = c->pair;
	if (other) {
		other->pair = c->pair = NULL;
		if (c->urgent) {
			/* the main connection works alone: pulled pages take the stream */
			pr_info("peer %s: no second connection for pulled pages; they share the stream", c->addr);
			hand_off(p, other, NULL, NULL);
		} else {
			free_conn(p, other);  /* its main connection is gone */
		}
	}
	if (!c->outgoing && c->auth.state != PEER_AUTH_DONE)
		p->unauthenticated--;
	if (c->fd >= 0) {  /* -1: handed off */
		epoll_ctl(p->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	answer_error(&c->reply_fd, ESHUTDOWN, "peer %s: the connection was closed", c->addr);
	peer_rx_free(&c->rx);
	peer_tx_free(&c->tx);
	*c->prev = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

/* Drops c with one log line "peer ADDR: why"; an outgoing peer-ping is
 * answered err with the same words.  A peer that dials in may repeat its
 * mistakes at will: its lines are rate limited. */
__attribute__((format(printf, 4, 5)))
static void drop(struct peers *p, struct peer_conn *c, int err, const char *fmt, ...)
{
	char why[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (c->outgoing)
		pr_info("peer %s: %s", c->addr, why);
	else
		pr_warn_ratelimited("peer %s: %s", c->addr, why);
	answer_error(&c->reply_fd, err, "peer %s: %s", c->addr, why);
	/* the error frame queued for the peer goes after the line: whoever it
	 * reaches finds the line written */
	if (peer_tx_pending(&c->tx))
		peer_tx_flush(&c->tx, c->fd);
	free_conn(p, c);
}

/* Queues msg on c and sends what the socket takes now; the rest goes on
 * EPOLLOUT.  0 or -errno (the connection is then to be dropped). */
static int send_msg(struct peers *p, struct peer_conn *c, const Memsrv__PeerMessage *msg)
{
	int ret = peer_tx_queue(&c->tx, msg);
	if (ret)
		return ret;
	ret = peer_tx_flush(&c->tx, c->fd);
	if (ret && ret != -EAGAIN)
		return ret;
	return watch(p, c, EPOLL_CTL_MOD);
}

/* Queues an error frame for the peer, as a courtesy: drop() sends it if
 * the socket takes it. */
__attribute__((format(printf, 4, 5)))
static void tell_peer(struct peer_conn *c, int err, const char *field, const char *fmt, ...)
{
	Memsrv__Error e = MEMSRV__ERROR__INIT;
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	e.errno_code = err;
	e.field = (char *)field;
	e.message = text;
	Memsrv__PeerMessage msg = MEMSRV__PEER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__PEER_MESSAGE__MSG_ERROR;
	msg.error = &e;
	peer_tx_queue(&c->tx, &msg);
}

static struct peer_conn *new_conn(struct peers *p, int fd, const char *addr, bool outgoing)
{
	struct peer_conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->fd = fd;
	c->outgoing = outgoing;
	c->reply_fd = -1;
	snprintf(c->addr, sizeof c->addr, "%s", addr);
	peer_rx_init(&c->rx, PEER_WIRE_HANDSHAKE_MAX_PAYLOAD);
	peer_tx_init(&c->tx);
	c->next = p->conns;
	c->prev = &p->conns;
	if (c->next)
		c->next->prev = &c->next;
	p->conns = c;
	return c;
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  /* small frames, answered at once */
}

static void accept_peers(struct peers *p)
{
	for (;;) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof sa;
		int fd = accept4(p->listen_fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				pr_warn_ratelimited("peer listener: accept: %s", strerror(errno));
			return;
		}
		char addr[PEER_ADDR_TEXT];
		peer_addr_format((struct sockaddr *)&sa, addr, sizeof addr);
		if (p->unauthenticated >= PEERS_MAX_UNAUTHENTICATED) {
			pr_warn_ratelimited("peer %s: refused: %u peers are in their handshake already", addr,
					    p->unauthenticated);
			close(fd);
			continue;
		}
		struct peer_conn *c = new_conn(p, fd, addr, false);
		if (!c) {
			close(fd);
			continue;
		}
		p->unauthenticated++;
		set_nodelay(fd);
		c->deadline_ns = monotonic_ns() + PEERS_HANDSHAKE_MS * 1000000ull;
		struct peer_auth_out out;
		int ret = peer_auth_start(&c->auth, PEER_AUTH_LISTENER, &p->key, &p->self,
					  peer_addr_is_loopback((struct sockaddr *)&sa), &out);
		if (out.send)
			peer_tx_queue(&c->tx, &out.msg);
		if (ret) {
			drop(p, c, -ret, "%s", c->auth.why);  /* sends the error */
			continue;
		}
		ret = peer_tx_flush(&c->tx, fd);
		if (ret && ret != -EAGAIN) {
			drop(p, c, -ret, "sending the challenge failed: %s", strerror(-ret));
			continue;
		}
		ret = watch(p, c, EPOLL_CTL_ADD);
		if (ret)
			drop(p, c, -ret, "cannot watch the connection: %s", strerror(-ret));
	}
}

/* The peer-ping's answer, once its pong came back. */
static void answer_pong(struct peers *p, struct peer_conn *c)
{
	uint64_t now = monotonic_ns();
	Memsrv__PeerPingReply r = MEMSRV__PEER_PING_REPLY__INIT;
	r.address = c->address;
	r.rtt_ns = now - c->ping_sent_ns;
	r.memsrv_version = c->auth.peer_version;
	r.node = c->auth.peer_node;
	r.authenticated = c->auth.authenticated;
	r.handshake_ns = c->welcomed_ns - c->started_ns;
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_PEER_PING_REPLY;
	msg.peer_ping_reply = &r;
	int ret = wire_send_server(c->reply_fd, &msg);
	if (ret)
		pr_debug("peer %s: the peer-ping's answer could not be sent: %s", c->addr, strerror(-ret));
	close(c->reply_fd);
	c->reply_fd = -1;
	pr_info("peer %s: ping answered in %" PRIu64 " us (%s)", c->addr, r.rtt_ns / 1000,
		r.authenticated ? "authenticated" : "loopback, no key");
	free_conn(p, c);
}

/* Gives c's connection away to the server thread (with its urgent one, if
 * any, or begin, an incoming one's MigrateBegin, taken); both are freed,
 * their fds not closed. */
static void hand_off(struct peers *p, struct peer_conn *c, struct peer_conn *urgent, Memsrv__PeerMessage *begin)
{
	struct peer_handoff *h = calloc(1, sizeof *h);
	if (h && urgent) {
		h->urgent_fd = urgent->fd;
		epoll_ctl(p->epoll_fd, EPOLL_CTL_DEL, urgent->fd, NULL);
		urgent->fd = -1;
		free_conn(p, urgent);
	} else if (h) {
		h->urgent_fd = -1;
	}
	if (!h || c->rx.len || peer_tx_pending(&c->tx)) {
		/* bytes past the opening message: the stream's order is the peer's to keep */
		if (h && h->urgent_fd >= 0)
			close(h->urgent_fd);
		free(h);
		if (begin)
			memsrv__peer_message__free_unpacked(begin, NULL);
		drop(p, c, h ? EPROTO : ENOMEM, "%s", h ? "sent more before its migration was accepted" : "out of memory");
		return;
	}
	epoll_ctl(p->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	h->fd = c->fd;
	h->outgoing = c->outgoing;
	snprintf(h->address, sizeof h->address, "%s", c->outgoing ? c->address : c->addr);
	snprintf(h->vm, sizeof h->vm, "%s", c->vm);
	h->reply_fd = c->reply_fd;
	h->begin = begin;
	c->fd = -1;
	c->reply_fd = -1;
	free_conn(p, c);
	pthread_mutex_lock(&p->lock);
	struct peer_handoff **tail = &p->handoffs;
	while (*tail)
		tail = &(*tail)->next;
	*tail = h;
	pthread_mutex_unlock(&p->lock);
	uint64_t one = 1;
	if (write(p->handoff_fd, &one, sizeof one) < 0) {
		/* the counter is full: the server has wakeups pending anyway */
	}
}

static bool connect_urgent(struct peers *p, struct peer_conn *main_conn);

/* A message in the handshake.  False when c was dropped. */
static bool handshake_step(struct peers *p, struct peer_conn *c, const Memsrv__PeerMessage *msg)
{
	struct peer_auth_out out;
	int ret = peer_auth_step(&c->auth, msg, &out);
	if (ret < 0) {
		if (out.send)
			peer_tx_queue(&c->tx, &out.msg);
		drop(p, c, -ret, "%s", c->auth.why);  /* sends the error */
		return false;
	}
	int sent = out.send ? send_msg(p, c, &out.msg) : 0;
	if (sent) {
		drop(p, c, -sent, "sending the %s failed: %s", peer_message_kind(&out.msg), strerror(-sent));
		return false;
	}
	if (ret == 0)
		return true;
	c->rx.limit = PEER_WIRE_MAX_PAYLOAD;  /* authenticated: page batches may come */
	if (!c->outgoing) {
		p->unauthenticated--;
		c->deadline_ns = 0;
		pr_info("peer %s: %s", c->addr, c->auth.authenticated ? "authenticated" : "connected (loopback, no key)");
		return true;
	}
	c->welcomed_ns = monotonic_ns();
	if (c->migrate && !c->urgent) {
		pr_info("peer %s: %s, migrating VM %s", c->addr,
			c->auth.authenticated ? "authenticated" : "connected (loopback, no key)", c->vm);
		c->deadline_ns = 0;  /* it waits for its urgent one, which has a deadline of its own */
		if (connect_urgent(p, c))
			return true;
		hand_off(p, c, NULL, NULL);
		return false;
	}
	if (c->migrate) {
		struct peer_conn *main_conn = c->pair;
		main_conn->pair = c->pair = NULL;
		hand_off(p, main_conn, c, NULL);
		return false;
	}
	Memsrv__PeerPing ping = MEMSRV__PEER_PING__INIT;
	ping.seq = ++c->seq;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_PING;
	m.ping = &ping;
	c->ping_sent_ns = monotonic_ns();
	if ((ret = send_msg(p, c, &m))) {
		drop(p, c, -ret, "sending the ping failed: %s", strerror(-ret));
		return false;
	}
	return true;
}

/* A message after the handshake.  False when c was dropped (or handed
 * off, *msgp then taken and NULL). */
static bool peer_message(struct peers *p, struct peer_conn *c, Memsrv__PeerMessage **msgp)
{
	const Memsrv__PeerMessage *msg = *msgp;
	if (msg->msg_case == MEMSRV__PEER_MESSAGE__MSG_MIGRATE_BEGIN && !c->outgoing) {
		pr_info("peer %s: migration of VM %.64s in", c->addr, msg->migrate_begin->name);
		*msgp = NULL;
		hand_off(p, c, NULL, (Memsrv__PeerMessage *)msg);
		return false;
	}
	if (msg->msg_case == MEMSRV__PEER_MESSAGE__MSG_PING) {
		Memsrv__PeerPong pong = MEMSRV__PEER_PONG__INIT;
		pong.seq = msg->ping->seq;
		Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
		m.msg_case = MEMSRV__PEER_MESSAGE__MSG_PONG;
		m.pong = &pong;
		int ret = send_msg(p, c, &m);
		if (ret) {
			drop(p, c, -ret, "sending a pong failed: %s", strerror(-ret));
			return false;
		}
		return true;
	}
	if (msg->msg_case == MEMSRV__PEER_MESSAGE__MSG_PONG && c->outgoing && msg->pong->seq == c->seq) {
		answer_pong(p, c);
		return false;
	}
	if (msg->msg_case == MEMSRV__PEER_MESSAGE__MSG_ERROR) {
		drop(p, c, ECONNABORTED, "the peer gave up: %.200s", msg->error->message);
		return false;
	}
	tell_peer(c, EPROTO, NULL, "unexpected %s", peer_message_kind(msg));
	drop(p, c, EPROTO, "malformed stream: unexpected %s%s", peer_message_kind(msg),
	     msg->msg_case == MEMSRV__PEER_MESSAGE__MSG_PONG ? " (no ping of that seq)" : " after the handshake");
	return false;
}

/* Reads what c's socket holds and handles every whole frame.  False when
 * c was dropped. */
static bool read_peer(struct peers *p, struct peer_conn *c)
{
	for (;;) {
		ssize_t n = peer_rx_read(&c->rx, c->fd);
		for (;;) {
			Memsrv__PeerMessage *msg;
			struct wire_fault fault = { "" };
			int ret = peer_rx_next(&c->rx, &msg, &fault);
			if (ret == 0)
				break;
			if (ret < 0) {
				tell_peer(c, EPROTO, NULL, "malformed stream: %s", fault.what);
				drop(p, c, EPROTO, "malformed stream: %s", fault.what);
				return false;
			}
			bool alive = c->auth.state == PEER_AUTH_DONE ? peer_message(p, c, &msg) : handshake_step(p, c, msg);
			if (msg)
				memsrv__peer_message__free_unpacked(msg, NULL);
			if (!alive)
				return false;
		}
		if (n == -EAGAIN)
			return true;
		if (backed_up(c)) {
			int ret = watch(p, c, EPOLL_CTL_MOD);  /* no EPOLLIN until EPOLLOUT drains it */
			if (ret)
				drop(p, c, -ret, "cannot watch the connection: %s", strerror(-ret));
			return !ret;
		}
		if (n == 0 && c->auth.state == PEER_AUTH_DONE && !c->outgoing) {
			pr_info("peer %s: disconnected", c->addr);  /* an orderly end, not a fault */
			free_conn(p, c);
			return false;
		}
		if (n == 0) {
			drop(p, c, ECONNRESET, "the peer closed the connection%s",
			     c->auth.state == PEER_AUTH_DONE ? "" : " during the handshake");
			return false;
		}
		if (n < 0) {
			drop(p, c, (int)-n, "read failed: %s", strerror((int)-n));
			return false;
		}
	}
}

/* An outgoing connect() finished, or failed. */
static bool connected(struct peers *p, struct peer_conn *c)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len))
		err = errno;
	if (err) {
		drop(p, c, err, "cannot connect: %s", strerror(err));
		return false;
	}
	c->connecting = false;
	struct peer_auth_out out;
	int ret = peer_auth_start(&c->auth, PEER_AUTH_CONNECTOR, &p->key, &p->self, false, &out);
	if (!ret)
		ret = watch(p, c, EPOLL_CTL_MOD);
	if (ret) {
		drop(p, c, -ret, "%s", c->auth.why[0] ? c->auth.why : strerror(-ret));
		return false;
	}
	return true;
}

static void conn_event(struct peers *p, struct peer_conn *c, uint32_t events)
{
	if (c->connecting) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			connected(p, c);
		return;
	}
	if (events & EPOLLOUT) {
		int ret = peer_tx_flush(&c->tx, c->fd);
		if (ret && ret != -EAGAIN) {
			drop(p, c, -ret, "send failed: %s", strerror(-ret));
			return;
		}
		if ((ret = watch(p, c, EPOLL_CTL_MOD))) {
			drop(p, c, -ret, "cannot watch the connection: %s", strerror(-ret));
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		read_peer(p, c);
}

/* A non-blocking connect to sa for a peer-ping or a migration; NULL when
 * it failed (answered on *reply_fd, which it takes either way). */
static struct peer_conn *connect_out(struct peers *p, const struct peer_addr *sa, const char *address,
				     const char *vm, int *reply_fd)
{
	char addr[PEER_ADDR_TEXT];
	peer_addr_format((struct sockaddr *)&sa->sa, addr, sizeof addr);
	int fd = socket(sa->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		answer_error(reply_fd, errno, "peer %s: socket: %s", addr, strerror(errno));
		return NULL;
	}
	set_nodelay(fd);
	struct peer_conn *c = new_conn(p, fd, addr, true);
	if (!c) {
		close(fd);
		answer_error(reply_fd, ENOMEM, "out of memory");
		return NULL;
	}
	c->reply_fd = *reply_fd;
	*reply_fd = -1;
	c->migrate = vm != NULL;
	c->sa = *sa;
	snprintf(c->vm, sizeof c->vm, "%s", vm ? vm : "");
	snprintf(c->address, sizeof c->address, "%s", address);
	c->started_ns = monotonic_ns();
	c->deadline_ns = c->started_ns + PEERS_PING_MS * 1000000ull;
	c->connecting = true;
	if (connect(fd, (struct sockaddr *)&sa->sa, sa->len) && errno != EINPROGRESS) {
		int err = errno;
		drop(p, c, err, "cannot connect: %s", strerror(err));
		return NULL;
	}
	int ret = watch(p, c, EPOLL_CTL_ADD);
	if (ret) {
		drop(p, c, -ret, "cannot watch the connection: %s", strerror(-ret));
		return NULL;
	}
	return c;
}

/* Starts a posted peer-ping or migration. */
static void start_connect(struct peers *p, struct peer_job *job)
{
	connect_out(p, &job->addr, job->address, job->migrate ? job->vm : NULL, &job->reply_fd);
}

/* A migration's main connection is up: its second one, for the pages its
 * destination's faults wait on, goes to the same place.  False when it
 * could not even start (the main one then goes alone). */
static bool connect_urgent(struct peers *p, struct peer_conn *main_conn)
{
	int none = -1;
	struct peer_conn *u = connect_out(p, &main_conn->sa, main_conn->address, main_conn->vm, &none);
	if (!u)
		return false;
	u->urgent = true;
	u->pair = main_conn;
	main_conn->pair = u;
	return true;
}

/* Takes the posted jobs; true when the thread is to stop. */
static bool take_jobs(struct peers *p, struct peer_job **jobs)
{
	uint64_t v;
	if (read(p->wake_fd, &v, sizeof v) < 0) {
		/* nothing posted: a spurious wakeup */
	}
	pthread_mutex_lock(&p->lock);
	*jobs = p->jobs;
	p->jobs = NULL;
	bool stopping = p->stopping;
	pthread_mutex_unlock(&p->lock);
	return stopping;
}

static void check_deadlines(struct peers *p)
{
	uint64_t v, now = monotonic_ns();
	if (read(p->tick_fd, &v, sizeof v) < 0) {
		/* no tick yet */
	}
	for (struct peer_conn *c = p->conns, *next; c; c = next) {
		next = c->next;
		if (!c->deadline_ns || now < c->deadline_ns)
			continue;
		if (c->outgoing)
			drop(p, c, ETIMEDOUT, "timed out after %u ms %s", PEERS_PING_MS,
			     c->connecting ? "connecting" : c->auth.state != PEER_AUTH_DONE ? "in the handshake"
										: "waiting for the pong");
		else
			drop(p, c, ETIMEDOUT, "timed out: no handshake within %u ms", PEERS_HANDSHAKE_MS);
	}
}

static void *peers_main(void *arg)
{
	struct peers *p = arg;
	bool stopping = false;
	while (!stopping) {
		bool tick = false;
		struct epoll_event evs[32];
		int n = epoll_wait(p->epoll_fd, evs, 32, -1);
		if (n < 0 && errno != EINTR) {
			pr_err("peer thread: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			void *ptr = evs[i].data.ptr;
			if (ptr == &p->listen_fd) {
				accept_peers(p);
			} else if (ptr == &p->tick_fd) {
				tick = true;  /* after the batch: a connection dropped now may have an event below */
			} else if (ptr == &p->wake_fd) {
				struct peer_job *jobs;
				stopping = take_jobs(p, &jobs);
				for (struct peer_job *job = jobs, *next; job; job = next) {
					next = job->next;
					if (stopping)
						answer_error(&job->reply_fd, ESHUTDOWN, "memsrv is shutting down");
					else
						start_connect(p, job);
					free(job);
				}
				if (stopping)
					break;  /* the other events may name connections freed below */
			} else {
				/* a connection is dropped only in its own event (or after the batch),
				 * so none named below is freed yet */
				conn_event(p, ptr, evs[i].events);
			}
		}
		if (tick && !stopping)
			check_deadlines(p);
	}
	while (p->conns) {
		answer_error(&p->conns->reply_fd, ESHUTDOWN, "peer %s: memsrv is shutting down", p->conns->addr);
		free_conn(p, p->conns);
	}
	return NULL;
}

static int open_listener(struct peers *p, const struct peers_config *cfg)
{
	int fd = socket(cfg->listen.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (const struct sockaddr *)&cfg->listen.sa, cfg->listen.len) || listen(fd, 64)) {
		int err = errno;
		close(fd);
		return -err;
	}
	p->listen_fd = fd;
	return 0;
}

static int add_watch(struct peers *p, int *fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = fd };
	return epoll_ctl(p->epoll_fd, EPOLL_CTL_ADD, *fd, &ev) ? -errno : 0;
}

/* The fds and the thread; 0 or -errno. */
static int start(struct peers *p, const struct peers_config *cfg)
{
	p->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	p->handoff_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->handoff_fd < 0)
		return -errno;
	p->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (p->epoll_fd < 0 || p->wake_fd < 0 || p->tick_fd < 0)
		return -errno;
	/* deadlines are checked four times a second: a dropped slowloris peer
	 * goes at most 250 ms late */
	struct itimerspec every = { .it_interval = { 0, 250 * 1000000 }, .it_value = { 0, 250 * 1000000 } };
	int ret = timerfd_settime(p->tick_fd, 0, &every, NULL) ? -errno : 0;
	if (!ret)
		ret = add_watch(p, &p->wake_fd);
	if (!ret)
		ret = add_watch(p, &p->tick_fd);
	if (!ret && cfg->listening) {
		ret = open_listener(p, cfg);
		if (ret) {
			pr_err("cannot listen for peers on %s: %s", cfg->listen_text, strerror(-ret));
			return ret;
		}
		ret = add_watch(p, &p->listen_fd);
	}
	if (!ret) {
		ret = -pthread_create(&p->thread, NULL, peers_main, p);
		p->thread_started = !ret;
	}
	if (ret)
		pr_err("cannot start the peer thread: %s", strerror(-ret));
	return ret;
}

int peers_open(struct peers **out, const struct peers_config *cfg, const char *memsrv_version)
{
	*out = NULL;
	struct peers *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->epoll_fd = p->listen_fd = p->wake_fd = p->tick_fd = p->handoff_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	p->key = cfg->key;
	if (gethostname(p->node, sizeof p->node))
		snprintf(p->node, sizeof p->node, "unknown");
	p->node[sizeof p->node - 1] = '\0';
	snprintf(p->version, sizeof p->version, "%s", memsrv_version);
	p->self = (struct peer_self){ p->version, p->node };
	int ret = start(p, cfg);
	if (ret) {
		peers_close(p);
		return ret;
	}
	if (cfg->listening)
		pr_info("listening for peers on %s (%s)", cfg->listen_text,
			p->key.len ? "--peer-key: peers prove the key" : "no --peer-key: loopback peers only");
	*out = p;
	return 0;
}

static void wake(struct peers *p)
{
	uint64_t one = 1;
	if (write(p->wake_fd, &one, sizeof one) < 0) {
		/* the counter is full: the thread has wakeups pending anyway */
	}
}

void peers_close(struct peers *p)
{
	if (!p)
		return;
	if (p->thread_started) {
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_mutex_unlock(&p->lock);
		wake(p);
		pthread_join(p->thread, NULL);
	}
	for (struct peer_job *job = p->jobs, *next; job; job = next) {
		next = job->next;
		answer_error(&job->reply_fd, ESHUTDOWN, "memsrv is shutting down");
		free(job);
	}
	while (p->handoffs) {
		struct peer_handoff *h = p->handoffs;
		p->handoffs = h->next;
		peer_handoff_free(h);
	}
	int *fds[] = { &p->listen_fd, &p->wake_fd, &p->tick_fd, &p->epoll_fd, &p->handoff_fd };
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (*fds[i] >= 0)
			close(*fds[i]);
	pthread_mutex_destroy(&p->lock);
	explicit_bzero(&p->key, sizeof p->key);
	free(p);
}

static void post(struct peers *p, const struct peer_addr *addr, const char *address, const char *vm, int reply_fd)
{
	struct peer_job *job = calloc(1, sizeof *job);
	if (!job) {
		answer_error(&reply_fd, ENOMEM, "out of memory");
		return;
	}
	job->addr = *addr;
	snprintf(job->address, sizeof job->address, "%s", address);
	job->reply_fd = reply_fd;
	job->migrate = vm != NULL;
	snprintf(job->vm, sizeof job->vm, "%s", vm ? vm : "");
	pthread_mutex_lock(&p->lock);
	job->next = p->jobs;
	p->jobs = job;
	pthread_mutex_unlock(&p->lock);
	wake(p);
}

void peers_post_ping(struct peers *p, const struct peer_addr *addr, const char *address, int reply_fd)
{
	post(p, addr, address, NULL, reply_fd);
}

void peers_post_migrate(struct peers *p, const struct peer_addr *addr, const char *address, const char *vm,
			int reply_fd)
{
	post(p, addr, address, vm, reply_fd);
}

int peers_handoff_fd(const struct peers *p)
{
	return p->handoff_fd;
}

struct peer_handoff *peers_take_handoffs(struct peers *p)
{
	uint64_t v;
	if (read(p->handoff_fd, &v, sizeof v) < 0) {
		/* nothing handed off: a spurious wakeup */
	}
	pthread_mutex_lock(&p->lock);
	struct peer_handoff *h = p->handoffs;
	p->handoffs = NULL;
	pthread_mutex_unlock(&p->lock);
	return h;
}

void peer_handoff_free(struct peer_handoff *h)
{
	if (!h)
		return;
	if (h->fd >= 0)
		close(h->fd);
	if (h->reply_fd >= 0)
		close(h->reply_fd);
	if (h->urgent_fd >= 0)
		close(h->urgent_fd);
	if (h->begin)
		memsrv__peer_message__free_unpacked(h->begin, NULL);
	free(h);
}
