/* session_out: a VMM session's outgoing records, sent without waiting. */
#include "session_out.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "clock.h"
#include "wire.h"

struct session_out_rec {
	struct session_out_rec *next;
	Memsrv__ServerMessage__MsgCase kind;
	size_t len;
	uint8_t payload[];
};

void session_out_init(struct session_out *o)
{
	memset(o, 0, sizeof *o);
	pthread_mutex_init(&o->lock, NULL);
	o->epoll_fd = -1;
	o->tail = &o->head;
}

static void drop_queue(struct session_out *o)
{
	for (struct session_out_rec *r = o->head, *next; r; r = next) {
		next = r->next;
		free(r);
	}
	o->head = NULL;
	o->tail = &o->head;
	o->records = 0;
	o->bytes = 0;
}

void session_out_fini(struct session_out *o)
{
	drop_queue(o);
	pthread_mutex_destroy(&o->lock);
}

void session_out_watch(struct session_out *o, int epoll_fd, void *epoll_data)
{
	pthread_mutex_lock(&o->lock);
	o->epoll_fd = epoll_fd;
	o->epoll_data = epoll_data;
	pthread_mutex_unlock(&o->lock);
}

/* EPOLLOUT on while records wait, off once they are gone: a writable
 * socket is the normal state and must not wake the loop.  Locked. */
static void set_watch(struct session_out *o, int fd, bool on)
{
	if (o->watching == on || o->epoll_fd < 0)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = o->epoll_data };
	/* fails only once the server has let go of the connection: nothing left to flush for */
	if (epoll_ctl(o->epoll_fd, EPOLL_CTL_MOD, fd, &ev) == 0)
		o->watching = on;
}

/* Sends queued records while the socket takes them.  Locked. */
static int send_queued(struct session_out *o, int fd)
{
	while (o->head) {
		struct session_out_rec *r = o->head;
		int ret = wire_send(fd, r->payload, r->len, NULL, 0);
		if (ret == -EAGAIN)
			return -EAGAIN;
		o->head = r->next;
		if (!o->head)
			o->tail = &o->head;
		o->records--;
		o->bytes -= r->len;
		free(r);
		if (ret == -EPIPE || ret == -ECONNRESET || ret == -ENOTCONN || ret == -EBADF) {
			drop_queue(o);  /* nobody will read them */
			return ret;
		}
		/* any other error (e.g. ENOMEM) costs this record only */
	}
	return 0;
}

/* Takes the waiting BalloonTarget out of the queue: a newer one replaces it. */
static void unqueue_balloon(struct session_out *o)
{
	for (struct session_out_rec **p = &o->head; *p; p = &(*p)->next) {
		struct session_out_rec *r = *p;
		if (r->kind != MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET)
			continue;
		*p = r->next;
		if (o->tail == &r->next)
			o->tail = p;
		o->records--;
		o->bytes -= r->len;
		o->coalesced++;
		free(r);
		return;
	}
}

int session_out_send(struct session_out *o, int fd, const Memsrv__ServerMessage *msg)
{
	size_t len = memsrv__server_message__get_packed_size(msg);
	if (len > WIRE_MAX_PAYLOAD)
		return -EMSGSIZE;
	struct session_out_rec *r = malloc(sizeof *r + (len ? len : 1));
	if (!r)
		return -ENOMEM;
	r->next = NULL;
	r->kind = msg->msg_case;
	r->len = memsrv__server_message__pack(msg, r->payload);
	pthread_mutex_lock(&o->lock);
	int ret = 0;
	if (r->kind == MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET)
		unqueue_balloon(o);
	if (!o->head) {
		/* nothing waits: straight out, in order */
		ret = wire_send(fd, r->payload, r->len, NULL, 0);
		if (ret != -EAGAIN) {
			free(r);
			pthread_mutex_unlock(&o->lock);
			return ret;
		}
		ret = 0;
	}
	if (o->records >= SESSION_OUT_MAX_RECORDS || o->bytes + r->len > SESSION_OUT_MAX_BYTES) {
		o->refused++;
		free(r);
		ret = -ENOBUFS;
	} else {
		*o->tail = r;
		o->tail = &r->next;
		o->records++;
		o->bytes += r->len;
		set_watch(o, fd, true);
	}
	pthread_mutex_unlock(&o->lock);
	return ret;
}

int session_out_flush(struct session_out *o, int fd)
{
	pthread_mutex_lock(&o->lock);
	int ret = send_queued(o, fd);
	set_watch(o, fd, ret == -EAGAIN);
	pthread_mutex_unlock(&o->lock);
	return ret;
}

int session_out_drain(struct session_out *o, int fd, uint64_t deadline_ns)
{
	for (;;) {
		pthread_mutex_lock(&o->lock);
		int ret = send_queued(o, fd);
		pthread_mutex_unlock(&o->lock);
		if (ret != -EAGAIN)
			return ret;
		uint64_t now = monotonic_ns();
		if (now >= deadline_ns)
			return -ETIMEDOUT;
		/* the lock is not held here: the VM thread may still send */
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int left_ms = (int)((deadline_ns - now) / 1000000) + 1;
		if (poll(&p, 1, left_ms) < 0 && errno != EINTR)
			return -errno;
	}
}
