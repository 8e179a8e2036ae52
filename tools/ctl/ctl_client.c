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

int ctl_call(int sock, const Memsrv__ClientMessage *req, Memsrv__ServerMessage **reply)
{
	if (!req || !reply)
		return -EINVAL;
	*reply = NULL;
	int ret = wire_send_client(sock, req, NULL, 0);
	if (ret < 0)
		return ret;
	ret = wire_recv_server(sock, reply, NULL);
	if (ret == 0)
		return -ECONNRESET;
	return ret < 0 ? ret : 0;
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

int ctl_list(const char *socket_path, Memsrv__ServerMessage **reply)
{
	Memsrv__ListRequest list = MEMSRV__LIST_REQUEST__INIT;
	Memsrv__ClientMessage req = MEMSRV__CLIENT_MESSAGE__INIT;
	req.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_LIST;
	req.list = &list;
	return ctl_request(socket_path, &req, reply);
}

int ctl_info(const char *socket_path, const char *vm, Memsrv__ServerMessage **reply)
{
	if (!vm)
		return -EINVAL;
	Memsrv__InfoRequest info = MEMSRV__INFO_REQUEST__INIT;
	info.name = (char *)vm;
	Memsrv__ClientMessage req = MEMSRV__CLIENT_MESSAGE__INIT;
	req.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_INFO;
	req.info = &info;
	return ctl_request(socket_path, &req, reply);
}

int ctl_stats(const char *socket_path, Memsrv__ServerMessage **reply)
{
	Memsrv__StatsRequest stats = MEMSRV__STATS_REQUEST__INIT;
	Memsrv__ClientMessage req = MEMSRV__CLIENT_MESSAGE__INIT;
	req.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_STATS;
	req.stats = &stats;
	return ctl_request(socket_path, &req, reply);
}

int ctl_evict(const char *socket_path, const char *vm, uint64_t bytes, bool all,
	      Memsrv__ServerMessage **reply)
{
	if (!vm)
		return -EINVAL;
	Memsrv__EvictRequest evict = MEMSRV__EVICT_REQUEST__INIT;
	evict.name = (char *)vm;
	/* Send only the field that applies so the server sees what was asked. */
	if (all) {
		evict.has_all = 1;
		evict.all = 1;
	} else {
		evict.has_bytes = 1;
		evict.bytes = bytes;
	}
	Memsrv__ClientMessage req = MEMSRV__CLIENT_MESSAGE__INIT;
	req.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_EVICT;
	req.evict = &evict;
	return ctl_request(socket_path, &req, reply);
}
