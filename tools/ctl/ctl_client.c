/* ctl_client: one request, one reply per connection to the memsrv socket. */
#include "ctl_client.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "wire.h"

int ctl_connect(const char *socket_path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (!socket_path || !*socket_path)
		return -EINVAL;
	size_t len = strlen(socket_path);
	if (len >= sizeof addr.sun_path)
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, socket_path, len + 1);

	int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	/* An interrupted connect on a Unix socket leaves it unconnected: retry. */
	while (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) {
		int err = errno;
		if (err == EINTR)
			continue;
		close(sock);
		return -err;
	}
	return sock;
}

/* Reads the one reply.  memsrv may have refused the connection before it
 * read the request (access, --max-sessions-per-uid, fds): it answered and
 * closed, and the kernel reports the unread request as ECONNRESET once
 * before it hands over the answer. */
static int recv_reply(int sock, Memsrv__ServerMessage **reply)
{
	int ret = wire_recv_server(sock, reply, NULL);
	if (ret == -ECONNRESET)
		ret = wire_recv_server(sock, reply, NULL);
	if (ret == 0)
		return -ECONNRESET;
	return ret < 0 ? ret : 0;
}

int ctl_call(int sock, const Memsrv__ClientMessage *req, Memsrv__ServerMessage **reply)
{
	if (!req || !reply)
		return -EINVAL;
	*reply = NULL;
	int ret = wire_send_client(sock, req, NULL, 0);
	if (ret == -EPIPE || ret == -ECONNRESET) {
		/* refused and closed before the request went out: the
		 * refusal is still there to read, and says why */
		return recv_reply(sock, reply) == 0 ? 0 : ret;
	}
	if (ret < 0)
		return ret;
	return recv_reply(sock, reply);
}

int ctl_request(const char *socket_path, const Memsrv__ClientMessage *req,
		Memsrv__ServerMessage **reply)
{
	int sock = ctl_connect(socket_path);
	if (sock < 0)
		return sock;
	int ret = ctl_call(sock, req, reply);
	close(sock);
	return ret;
}

void ctl_build_list(struct ctl_req *r)
{
	memsrv__client_message__init(&r->msg);
	memsrv__list_request__init(&r->body.list);
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_LIST;
	r->msg.list = &r->body.list;
}

void ctl_build_info(struct ctl_req *r, const char *vm)
{
	memsrv__client_message__init(&r->msg);
	memsrv__info_request__init(&r->body.info);
	r->body.info.name = (char *)vm;
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_INFO;
	r->msg.info = &r->body.info;
}

void ctl_build_stats(struct ctl_req *r)
{
	memsrv__client_message__init(&r->msg);
	memsrv__stats_request__init(&r->body.stats);
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_STATS;
	r->msg.stats = &r->body.stats;
}

void ctl_build_evict(struct ctl_req *r, const char *vm, uint64_t bytes, bool all)
{
	memsrv__client_message__init(&r->msg);
	Memsrv__EvictRequest *e = &r->body.evict;
	memsrv__evict_request__init(e);
	e->name = (char *)vm;
	/* only the field that applies, so the server sees what was asked */
	if (all) {
		e->has_all = 1;
		e->all = 1;
	} else {
		e->has_bytes = 1;
		e->bytes = bytes;
	}
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_EVICT;
	r->msg.evict = e;
}

void ctl_build_balloon(struct ctl_req *r, const char *vm, uint64_t target_bytes)
{
	memsrv__client_message__init(&r->msg);
	memsrv__balloon_request__init(&r->body.balloon);
	r->body.balloon.name = (char *)vm;
	r->body.balloon.target_bytes = target_bytes;
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_BALLOON;
	r->msg.balloon = &r->body.balloon;
}

void ctl_build_set(struct ctl_req *r, const char *vm, const char *const *settings, size_t n)
{
	memsrv__client_message__init(&r->msg);
	memsrv__set_request__init(&r->body.set);
	r->body.set.name = (char *)vm;
	r->body.set.n_settings = n;
	r->body.set.settings = (char **)settings;
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_SET;
	r->msg.set = &r->body.set;
}

int ctl_set(const char *socket_path, const char *vm, const char *const *settings, size_t n,
	    Memsrv__ServerMessage **reply)
{
	if (!vm)
		return -EINVAL;
	struct ctl_req r;
	ctl_build_set(&r, vm, settings, n);
	return ctl_request(socket_path, &r.msg, reply);
}

void ctl_build_check(struct ctl_req *r)
{
	memsrv__client_message__init(&r->msg);
	memsrv__check_request__init(&r->body.check);
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_CHECK;
	r->msg.check = &r->body.check;
}

int ctl_check(const char *socket_path, Memsrv__ServerMessage **reply)
{
	struct ctl_req r;
	ctl_build_check(&r);
	return ctl_request(socket_path, &r.msg, reply);
}

int ctl_list(const char *socket_path, Memsrv__ServerMessage **reply)
{
	struct ctl_req r;
	ctl_build_list(&r);
	return ctl_request(socket_path, &r.msg, reply);
}

int ctl_info(const char *socket_path, const char *vm, Memsrv__ServerMessage **reply)
{
	if (!vm)
		return -EINVAL;
	struct ctl_req r;
	ctl_build_info(&r, vm);
	return ctl_request(socket_path, &r.msg, reply);
}

int ctl_stats(const char *socket_path, Memsrv__ServerMessage **reply)
{
	struct ctl_req r;
	ctl_build_stats(&r);
	return ctl_request(socket_path, &r.msg, reply);
}

int ctl_evict(const char *socket_path, const char *vm, uint64_t bytes, bool all,
	      Memsrv__ServerMessage **reply)
{
	if (!vm)
		return -EINVAL;
	struct ctl_req r;
	ctl_build_evict(&r, vm, bytes, all);
	return ctl_request(socket_path, &r.msg, reply);
}

int ctl_balloon(const char *socket_path, const char *vm, uint64_t target_bytes,
		Memsrv__ServerMessage **reply)
{
	if (!vm)
		return -EINVAL;
	struct ctl_req r;
	ctl_build_balloon(&r, vm, target_bytes);
	return ctl_request(socket_path, &r.msg, reply);
}

void ctl_build_snapshot(struct ctl_req *r, const char *vm, const char *dir, bool remote)
{
	memsrv__client_message__init(&r->msg);
	memsrv__snapshot_request__init(&r->body.snapshot);
	r->body.snapshot.name = (char *)vm;
	r->body.snapshot.dir = (char *)dir;
	r->body.snapshot.has_remote = remote;
	r->body.snapshot.remote = remote;
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_SNAPSHOT;
	r->msg.snapshot = &r->body.snapshot;
}

int ctl_snapshot_to(const char *socket_path, const char *vm, const char *dir, bool remote,
		    Memsrv__ServerMessage **reply)
{
	if (!vm || !dir)
		return -EINVAL;
	struct ctl_req r;
	ctl_build_snapshot(&r, vm, dir, remote);
	return ctl_request(socket_path, &r.msg, reply);
}

int ctl_snapshot(const char *socket_path, const char *vm, const char *dir, Memsrv__ServerMessage **reply)
{
	return ctl_snapshot_to(socket_path, vm, dir, false, reply);
}

void ctl_build_peer_ping(struct ctl_req *r, const char *address)
{
	memsrv__client_message__init(&r->msg);
	memsrv__peer_ping_request__init(&r->body.peer_ping);
	r->body.peer_ping.address = (char *)address;
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_PEER_PING;
	r->msg.peer_ping = &r->body.peer_ping;
}

int ctl_peer_ping(const char *socket_path, const char *address, Memsrv__ServerMessage **reply)
{
	if (!address)
		return -EINVAL;
	struct ctl_req r;
	ctl_build_peer_ping(&r, address);
	return ctl_request(socket_path, &r.msg, reply);
}

void ctl_build_remote_gc(struct ctl_req *r, const char *node_id)
{
	memsrv__client_message__init(&r->msg);
	memsrv__remote_gc_request__init(&r->body.remote_gc);
	r->body.remote_gc.node_id = (char *)node_id;
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_REMOTE_GC;
	r->msg.remote_gc = &r->body.remote_gc;
}

void ctl_build_migrate(struct ctl_req *r, const char *vm, const char *address)
{
	memsrv__client_message__init(&r->msg);
	memsrv__migrate_request__init(&r->body.migrate);
	r->body.migrate.name = (char *)vm;
	r->body.migrate.address = (char *)address;
	r->msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_MIGRATE;
	r->msg.migrate = &r->body.migrate;
}
