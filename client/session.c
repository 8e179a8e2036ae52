/* session: a VMM's connection to memsrv — attach, serve requests, detach. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "memsrv.h"
#include "uffd_compat.h"
#include "uffd_setup.h"
#include "wire.h"

#define ATTACH_TIMEOUT_S 30

struct memsrv_session {
	int sock;
	int uffd;
	uint64_t vm_id;
	int evictable;
	unsigned n_regions;
	struct { uint64_t addr, size; } regions[];
};

static __thread char last_error[512];

const char *memsrv_last_error(void)
{
	return last_error;
}

static int fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof last_error, fmt, ap);
	va_end(ap);
	return err;
}

/* The server's Error, in words: "hello.regions[0].size: size 5 is not ..." */
static int server_error(const Memsrv__Error *e)
{
	return fail(-(e->errno_code > 0 ? e->errno_code : EPROTO), "%s%s%s", e->field ? e->field : "",
		    e->field ? ": " : "", e->message);
}

static int connect_to(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof addr.sun_path)
		return fail(-ENAMETOOLONG, "socket path too long: %s", path);
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return fail(-errno, "socket: %s", strerror(errno));
	if (connect(s, (struct sockaddr *)&addr, sizeof addr)) {
		int err = errno;
		close(s);
		return fail(-err, "cannot reach memsrv at %s: %s", path, strerror(err));
	}
	return s;
}

/* Waits for one server message, at most timeout_s seconds. */
static int recv_reply(int sock, int timeout_s, Memsrv__ServerMessage **out)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	int n = poll(&p, 1, timeout_s * 1000);
	if (n == 0)
		return fail(-ETIMEDOUT, "memsrv did not answer within %d s", timeout_s);
	if (n < 0)
		return fail(-errno, "poll: %s", strerror(errno));
	struct wire_fault fault = { "" };
	int ret = wire_recv_server(sock, out, &fault);
	if (ret == 0)
		return fail(-ECONNRESET, "memsrv closed the connection");
	if (ret == -EPROTO)
		return fail(ret, "bad message from memsrv: %s", fault.what);
	if (ret < 0)
		return fail(ret, "receiving from memsrv: %s", strerror(-ret));
	return 0;
}

static void unregister_all(struct memsrv_session *s)
{
	for (unsigned i = 0; i < s->n_regions; i++)
		uffd_setup_unregister(s->uffd, s->regions[i].addr, s->regions[i].size);
}

static void session_free(struct memsrv_session *s)
{
	if (s->sock >= 0)
		close(s->sock);
	if (s->uffd >= 0)
		close(s->uffd);
	free(s);
}

/* Builds the Hello's regions and the fd list [uffd, region fds...]. */
static int describe_regions(const struct memsrv_vm *vm, struct memsrv_session *s, uint64_t features,
			    Memsrv__Region *regions, Memsrv__Region **ptrs, int *fds, unsigned *nfds,
			    uint64_t *modes_all)
{
	*nfds = 1;
	fds[0] = s->uffd;
	*modes_all = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct memsrv_region *r = &vm->regions[i];
		uint32_t ps;
		Memsrv__Backing b = uffd_setup_backing(r->fd, &ps);
		if (b == MEMSRV__BACKING__BACKING_UNKNOWN)
			return fail(-EBADF, "region %u: fd %d is not a memfd, hugetlbfs or regular file", i, r->fd);
		if (b == MEMSRV__BACKING__BACKING_FILE)
			return fail(-EOPNOTSUPP,
				    "region %u: a file on a disk filesystem cannot be served by userfaultfd; use a memfd, tmpfs or hugetlbfs file",
				    i);
		if (r->page_size && r->page_size != ps)
			return fail(-EINVAL, "region %u: page_size %u but the fd has %u-byte pages", i, r->page_size, ps);
		uint64_t modes;
		int ret = uffd_setup_register(s->uffd, features, b, (uint64_t)(uintptr_t)r->host_addr, r->size, &modes);
		if (ret) {
			/* the caller unregisters the regions done so far */
			return fail(ret, "region %u: UFFDIO_REGISTER of %p + %llu failed: %s", i, r->host_addr,
				    (unsigned long long)r->size, strerror(-ret));
		}
		*modes_all &= modes;
		s->regions[i].addr = (uint64_t)(uintptr_t)r->host_addr;
		s->regions[i].size = r->size;
		s->n_regions = i + 1;

		memsrv__region__init(&regions[i]);
		regions[i].host_addr = (uint64_t)(uintptr_t)r->host_addr;
		regions[i].size = r->size;
		regions[i].page_size = ps;
		regions[i].guest_phys_addr = r->guest_phys_addr;
		regions[i].fd_offset = r->fd_offset;
		regions[i].backing = b;
		if (r->fd >= 0) {
			regions[i].has_fd_index = 1;
			regions[i].fd_index = *nfds;
			fds[(*nfds)++] = r->fd;
		}
		ptrs[i] = &regions[i];
	}
	return 0;
}

int memsrv_attach(const char *socket_path, const struct memsrv_vm *vm, struct memsrv_session **out)
{
	last_error[0] = 0;
	if (!vm || !vm->name || !out)
		return fail(-EINVAL, "vm, vm->name and out are required");
	if (vm->n_regions == 0 || vm->n_regions > MEMSRV_MAX_REGIONS)
		return fail(-EINVAL, "%u regions; 1 to %u are accepted", vm->n_regions, MEMSRV_MAX_REGIONS);
	if (!socket_path)
		socket_path = MEMSRV_DEFAULT_SOCKET;

	struct memsrv_session *s = calloc(1, sizeof *s + vm->n_regions * sizeof s->regions[0]);
	Memsrv__Region *regions = calloc(vm->n_regions, sizeof *regions);
	Memsrv__Region **ptrs = calloc(vm->n_regions, sizeof *ptrs);
	Memsrv__ServerMessage *reply = NULL;
	int ret;
	if (!s || !regions || !ptrs) {
		free(s);
		s = NULL;
		ret = fail(-ENOMEM, "out of memory");
		goto out;
	}
	s->sock = -1;
	uint64_t features = 0;
	s->uffd = uffd_setup_open(&features);
	if (s->uffd < 0) {
		ret = fail(s->uffd, "userfaultfd: %s", strerror(-s->uffd));
		goto out;
	}
	int fds[WIRE_MAX_FDS];
	unsigned nfds;
	uint64_t modes;
	ret = describe_regions(vm, s, features, regions, ptrs, fds, &nfds, &modes);
	if (ret)
		goto out;
	s->sock = connect_to(socket_path);
	if (s->sock < 0) {
		ret = s->sock;
		goto out;
	}

	Memsrv__Quota quota = MEMSRV__QUOTA__INIT;
	quota.has_guarantee_bytes = quota.has_limit_bytes = quota.has_shares = 1;
	quota.guarantee_bytes = vm->guarantee_bytes;
	quota.limit_bytes = vm->limit_bytes;
	quota.shares = vm->shares;
	quota.codec = (char *)vm->codec;
	quota.policy = (char *)vm->policy;
	Memsrv__Hello hello = MEMSRV__HELLO__INIT;
	hello.version_major = MEMSRV__VERSION__VERSION_MAJOR;
	hello.version_minor = MEMSRV__VERSION__VERSION_MINOR;
	hello.name = (char *)vm->name;
	hello.pid = (uint32_t)getpid();
	hello.n_regions = vm->n_regions;
	hello.regions = ptrs;
	hello.quota = &quota;
	hello.uffd_features = features;
	hello.register_modes = modes;
	if (vm->flags & MEMSRV_VM_NO_BALLOON)
		hello.has_balloon = 1, hello.balloon = 0;
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_HELLO;
	msg.hello = &hello;
	ret = wire_send_client(s->sock, &msg, fds, nfds);
	if (ret) {
		ret = fail(ret, "sending Hello: %s", strerror(-ret));
		goto out;
	}
	ret = recv_reply(s->sock, ATTACH_TIMEOUT_S, &reply);
	if (ret)
		goto out;
	if (reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR) {
		ret = server_error(reply->error);
		goto out;
	}
	if (reply->msg_case != MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY) {
		ret = fail(-EPROTO, "memsrv answered Hello with message %d", reply->msg_case);
		goto out;
	}
	s->vm_id = reply->hello_reply->vm_id;
	s->evictable = reply->hello_reply->evictable;
	*out = s;
	s = NULL;
	ret = 0;
out:
	if (s) {
		unregister_all(s);
		session_free(s);
	}
	if (reply)
		memsrv__server_message__free_unpacked(reply, NULL);
	free(regions);
	free(ptrs);
	return ret;
}

int memsrv_session_fd(struct memsrv_session *s)
{
	return s->sock;
}

uint64_t memsrv_session_vm_id(const struct memsrv_session *s)
{
	return s->vm_id;
}

int memsrv_session_evictable(const struct memsrv_session *s)
{
	return s->evictable;
}

/* memsrv is leaving.  When it gave every page back, the RAM is the VMM's
 * own again: unregister, so that holes read as zeros instead of waiting
 * for a handler that will not come.  Otherwise keep waiting: a fault on a
 * page memsrv still held must not read zeros. */
static int goodbye(struct memsrv_session *s, const Memsrv__Goodbye *g)
{
	if (!g->restored)
		return fail(-ECONNRESET, "memsrv is gone (%s) without restoring every page; faults on them wait",
			    g->reason);
	unregister_all(s);
	s->n_regions = 0;
	return fail(-ECONNRESET, "memsrv is gone (%s); every page was restored, RAM is unmanaged now", g->reason);
}

/* Handles one message the server sent on its own; replies are not expected here. */
static int handle_request(struct memsrv_session *s, const Memsrv__ServerMessage *m,
			  const struct memsrv_vmm_ops *ops, void *opaque)
{
	switch (m->msg_case) {
	case MEMSRV__SERVER_MESSAGE__MSG_GOODBYE:
		return goodbye(s, m->goodbye);
	case MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET:
		if (!ops || !ops->balloon_target)
			return fail(-EOPNOTSUPP, "memsrv asked for a balloon target; this VMM has no balloon");
		return ops->balloon_target(opaque, m->balloon_target->target_bytes);
	case MEMSRV__SERVER_MESSAGE__MSG_ERROR:
		server_error(m->error);
		return 0;
	default:
		return fail(-EPROTO, "unexpected message %d from memsrv", m->msg_case);
	}
}

int memsrv_session_dispatch(struct memsrv_session *s, const struct memsrv_vmm_ops *ops, void *opaque)
{
	Memsrv__ServerMessage *m = NULL;
	struct wire_fault fault = { "" };
	int ret = wire_recv_server(s->sock, &m, &fault);
	if (ret == 0)
		return fail(-ECONNRESET, "memsrv closed the session");
	if (ret == -EAGAIN)
		return 0;
	if (ret < 0)
		return fail(ret, "session: %s", ret == -EPROTO ? fault.what : strerror(-ret));
	ret = handle_request(s, m, ops, opaque);
	if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET) {
		/* memsrv plans with the answer: a VMM without a balloon is not asked again */
		Memsrv__BalloonResult br = MEMSRV__BALLOON_RESULT__INIT;
		br.target_bytes = m->balloon_target->target_bytes;
		br.errno_code = ret < 0 ? -ret : 0;
		br.message = ret < 0 ? (char *)memsrv_last_error() : NULL;
		Memsrv__ClientMessage reply = MEMSRV__CLIENT_MESSAGE__INIT;
		reply.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_RESULT;
		reply.balloon_result = &br;
		wire_send_client(s->sock, &reply, NULL, 0);
		ret = ret == -EOPNOTSUPP ? 0 : ret;  /* no balloon is an answer, not a failure */
	}
	memsrv__server_message__free_unpacked(m, NULL);
	return ret;
}

int memsrv_detach(struct memsrv_session *s, unsigned flags)
{
	if (!s)
		return fail(-EINVAL, "no session");
	int ret = 0;
	if (flags & MEMSRV_DETACH_RESTORE) {
		Memsrv__Detach d = MEMSRV__DETACH__INIT;
		d.has_restore = 1;
		d.restore = 1;
		Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
		msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_DETACH;
		msg.detach = &d;
		ret = wire_send_client(s->sock, &msg, NULL, 0);
		if (ret)
			ret = fail(ret, "sending Detach: %s", strerror(-ret));
		/* Stored pages must be back before the regions are unregistered:
		 * after that, a hole reads as zeros and the data would be gone. */
		while (!ret) {
			Memsrv__ServerMessage *m = NULL;
			ret = recv_reply(s->sock, 600, &m);
			if (ret)
				break;
			int done = 1;
			if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_DETACH_REPLY)
				ret = (int)m->detach_reply->pages_restored;
			else if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR)
				ret = server_error(m->error);
			else if (m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_GOODBYE)
				ret = m->goodbye->restored ? 0 : goodbye(s, m->goodbye);
			else {
				handle_request(s, m, NULL, NULL);
				done = 0;
			}
			memsrv__server_message__free_unpacked(m, NULL);
			if (done)
				break;
		}
		if (ret < 0) {
			/* keep the registration: the server may still hold pages,
			 * and faults on them must keep waiting rather than read zeros */
			close(s->sock);
			s->sock = -1;
			free(s);
			return ret;
		}
	}
	unregister_all(s);
	session_free(s);
	return ret;
}
