/* session_out: what memsrv sends a VMM on its session, without ever waiting
 * for the VMM to read.
 *
 * Two threads send on a session: the server thread (HelloReply,
 * BalloonTarget, Errors) and the VM thread (DetachReply, Goodbye).  The
 * socket is non-blocking: a record goes out at once if the socket takes it,
 * otherwise it waits in a bounded queue and the server thread sends it when
 * the socket is writable again (it watches for EPOLLOUT while the queue
 * holds anything: session_out_flush()).  A BalloonTarget still waiting is
 * replaced by a newer one: only the latest target counts.  A VMM that reads
 * nothing fills the queue, and then a send fails with -ENOBUFS: the caller
 * logs it, the session and its VM stay.  So no VMM can hold up the server
 * thread, the other VMs or the control requests, nor its own VM thread.
 */
#ifndef MEMSRV_SESSION_OUT_H
#define MEMSRV_SESSION_OUT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memsrv.pb-c.h"

#define SESSION_OUT_MAX_RECORDS 64
#define SESSION_OUT_MAX_BYTES (1u << 20)

struct session_out_rec;

struct session_out {
	pthread_mutex_t lock;    /* the queue, the watch and every send on the socket */
	int epoll_fd;            /* where the server thread waits for EPOLLOUT; -1: nobody */
	void *epoll_data;        /* its registration's data.ptr (the connection) */
	bool watching;           /* EPOLLOUT is asked for */
	struct session_out_rec *head, **tail;
	unsigned records;
	size_t bytes;
	uint64_t coalesced;      /* BalloonTargets replaced before they went out */
	uint64_t refused;        /* records refused on a full queue */
};

void session_out_init(struct session_out *o);
/* Frees what never went out. */
void session_out_fini(struct session_out *o);
/* The server thread flushes o when fd (registered in epoll_fd with
 * EPOLLIN and data.ptr epoll_data) is writable. */
void session_out_watch(struct session_out *o, int epoll_fd, void *epoll_data);

/* Sends msg on fd now or queues it (any thread; never blocks).  0, or
 * -ENOBUFS on a full queue, -ENOMEM, or the send's -errno when the peer is
 * gone (EPIPE, ECONNRESET). */
int session_out_send(struct session_out *o, int fd, const Memsrv__ServerMessage *msg);

/* Sends what the socket takes now (the server thread, on EPOLLOUT).
 * 0 when the queue is empty, -EAGAIN when some waits still, or the send's
 * -errno when the peer is gone (the queue is dropped then). */
int session_out_flush(struct session_out *o, int fd);

/* Waits until the queue went out, at most until deadline_ns (CLOCK_MONOTONIC):
 * memsrv's last words (Goodbye) at exit, when no loop flushes anymore.
 * 0, -ETIMEDOUT, or the send's -errno. */
int session_out_drain(struct session_out *o, int fd, uint64_t deadline_ns);

#endif
