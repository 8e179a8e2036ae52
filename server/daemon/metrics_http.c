/* metrics_http: the HTTP endpoint of --metrics-listen (metrics_http.h). */
#include "metrics_http.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

struct http_conn {
	int fd;
	char req[METRICS_HTTP_MAX_REQUEST];
	size_t req_len;
	bool answering;              /* the answer is in out: only writes now */
	struct metrics_text out;     /* head and body */
	size_t sent;
	uint64_t deadline_ns;
	struct http_conn *next;
};

struct metrics_http {
	int listen_fd, epoll_fd;
	metrics_render_fn render;
	void *ctx;
	struct http_conn *conns;
	unsigned n_conns;
};

int metrics_http_open(struct metrics_http **out, const struct peer_addr *addr, metrics_render_fn render, void *ctx)
{
	struct metrics_http *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	m->render = render;
	m->ctx = ctx;
	m->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	m->listen_fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, ret = 0;
	char text[PEER_ADDR_TEXT];
	peer_addr_format((const struct sockaddr *)&addr->sa, text, sizeof text);
	if (m->epoll_fd < 0 || m->listen_fd < 0 ||
	    setsockopt(m->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(m->listen_fd, (const struct sockaddr *)&addr->sa, addr->len) || listen(m->listen_fd, 16)) {
		ret = -errno;
		pr_err("cannot serve metrics on %s: %s", text, strerror(-ret));
		metrics_http_close(m);
		return ret;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };  /* NULL: the listener */
	if (epoll_ctl(m->epoll_fd, EPOLL_CTL_ADD, m->listen_fd, &ev)) {
		ret = -errno;
		metrics_http_close(m);
		return ret;
	}
	struct sockaddr_storage bound;
	socklen_t len = sizeof bound;
	if (!getsockname(m->listen_fd, (struct sockaddr *)&bound, &len))
		peer_addr_format((const struct sockaddr *)&bound, text, sizeof text);
	pr_info("metrics on http://%s/metrics", text);
	*out = m;
	return 0;
}

static void drop(struct metrics_http *m, struct http_conn *c)
{
	for (struct http_conn **p = &m->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	close(c->fd);  /* leaves the epoll too */
	metrics_text_free(&c->out);
	free(c);
	m->n_conns--;
}

void metrics_http_close(struct metrics_http *m)
{
	if (!m)
		return;
	while (m->conns)
		drop(m, m->conns);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	if (m->epoll_fd >= 0)
		close(m->epoll_fd);
	free(m);
}

int metrics_http_fd(const struct metrics_http *m)
{
	return m->epoll_fd;
}

static void accept_all(struct metrics_http *m)
{
	for (;;) {
		int fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;  /* EAGAIN; or out of fds, which the next scrape tries again */
		/* full: the oldest goes, so that clients that connect and
		 * say nothing cannot keep a scrape out */
		if (m->n_conns >= METRICS_HTTP_MAX_CONNS) {
			struct http_conn *oldest = m->conns;
			while (oldest->next)
				oldest = oldest->next;
			drop(m, oldest);
		}
		struct http_conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->deadline_ns = monotonic_ns() + METRICS_HTTP_TIMEOUT_MS * 1000000ull;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(m->epoll_fd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			free(c);
			continue;
		}
		c->next = m->conns;
		m->conns = c;
		m->n_conns++;
	}
}

/* The answer's head and body into c->out; body NULL: a short text of
 * its own.  false when out of memory. */
static bool answer(struct http_conn *c, const char *status, const char *extra_head, const struct metrics_text *body,
		   const char *text, bool head_only)
{
	size_t body_len = body ? body->len : strlen(text);
	const char *type = body ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8";
	char head[512];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
			 type, body_len, extra_head);
	size_t total = (size_t)n + (head_only ? 0 : body_len);
	c->out.buf = malloc(total);
	if (!c->out.buf)
		return false;
	memcpy(c->out.buf, head, (size_t)n);
	if (!head_only)
		memcpy(c->out.buf + n, body ? body->buf : text, body_len);
	c->out.len = c->out.cap = total;
	c->answering = true;
	return true;
}

/* A whole request's head in c->req: its answer.  false when none can be
 * made (out of memory): the connection goes. */
static bool respond(struct metrics_http *m, struct http_conn *c)
{
	char method[16], target[256], version[16];
	c->req[c->req_len] = 0;
	if (sscanf(c->req, "%15s %255s %15s", method, target, version) != 3 || strncmp(version, "HTTP/1.", 7))
		return answer(c, "400 Bad Request", "", NULL, "memsrv: not an HTTP/1 request\n", false);
	bool head_only = !strcmp(method, "HEAD");
	if (strcmp(method, "GET") && !head_only)
		return answer(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", NULL,
			      "memsrv: /metrics answers GET and HEAD\n", false);
	size_t path_len = strcspn(target, "?");
	if (path_len != strlen("/metrics") || strncmp(target, "/metrics", path_len))
		return answer(c, "404 Not Found", "", NULL, "memsrv serves /metrics only\n", head_only);
	struct metrics_text body = { 0 };
	bool ok;
	if (m->render(m->ctx, &body)) {
		pr_warn("metrics: out of memory rendering /metrics");
		ok = answer(c, "503 Service Unavailable", "", NULL, "memsrv: out of memory\n", head_only);
	} else {
		ok = answer(c, "200 OK", "", &body, NULL, head_only);
	}
	metrics_text_free(&body);
	return ok;
}

/* Writes what the socket takes; true when the answer went whole. */
static bool send_some(struct http_conn *c)
{
	while (c->sent < c->out.len) {
		ssize_t n = send(c->fd, c->out.buf + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
		if (n < 0)
			return false;
		c->sent += (size_t)n;
	}
	return true;
}

/* A connection's event: read the request, or write the answer.  false
 * when the connection is done with (answered, broken or refused). */
static bool serve_conn(struct metrics_http *m, struct http_conn *c)
{
	if (!c->answering) {
		ssize_t n = recv(c->fd, c->req + c->req_len, sizeof c->req - 1 - c->req_len, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return false;
		if (n < 0)
			return true;
		c->req_len += (size_t)n;
		c->req[c->req_len] = 0;
		if (!strstr(c->req, "\r\n\r\n") && !strstr(c->req, "\n\n")) {
			if (c->req_len < sizeof c->req - 1)
				return true;  /* more to come */
			if (!answer(c, "431 Request Header Fields Too Large", "", NULL, "memsrv: request too long\n",
				    false))
				return false;
		} else if (!respond(m, c)) {
			return false;
		}
	}
	if (send_some(c)) {
		shutdown(c->fd, SHUT_WR);
		return false;
	}
	if (errno != EAGAIN)
		return false;
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
	return !epoll_ctl(m->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

void metrics_http_serve(struct metrics_http *m)
{
	struct epoll_event evs[METRICS_HTTP_MAX_CONNS + 1];
	int n = epoll_wait(m->epoll_fd, evs, METRICS_HTTP_MAX_CONNS + 1, 0);
	bool accepting = false;
	for (int i = 0; i < n; i++) {
		struct http_conn *c = evs[i].data.ptr;
		if (!c)
			accepting = true;
		else if (!serve_conn(m, c))
			drop(m, c);
	}
	/* last: accepting may close a connection the events above named */
	if (accepting)
		accept_all(m);
}

void metrics_http_tick(struct metrics_http *m)
{
	uint64_t now = monotonic_ns();
	for (struct http_conn *c = m->conns, *next; c; c = next) {
		next = c->next;
		if (now >= c->deadline_ns)
			drop(m, c);
	}
}
