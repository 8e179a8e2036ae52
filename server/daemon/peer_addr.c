/* peer_addr: ADDR:PORT parsing and printing (peer_addr.h). */
#include "peer_addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int peer_addr_parse(const char *text, struct peer_addr *addr, char *why, size_t len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port_text;
	memset(addr, 0, sizeof *addr);
	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof host)
			goto bad;
		snprintf(host, sizeof host, "%.*s", (int)(end - text - 1), text + 1);
		port_text = end + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (!colon || (size_t)(colon - text) >= sizeof host || memchr(text, ':', (size_t)(colon - text)))
			goto bad;
		snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
		port_text = colon + 1;
	}
	char *end;
	unsigned long port = strtoul(port_text, &end, 10);
	if (!*port_text || *end || port == 0 || port > 65535) {
		snprintf(why, len, "'%s': the port is not 1..65535", text);
		return -EINVAL;
	}
	struct sockaddr_in *in4 = (struct sockaddr_in *)&addr->sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr->sa;
	if (text[0] != '[' && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		addr->len = sizeof *in4;
		return 0;
	}
	if (text[0] == '[' && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		addr->len = sizeof *in6;
		return 0;
	}
bad:
	snprintf(why, len, "'%s' is not ADDR:PORT with a numeric address (10.0.0.2:7070, [::1]:7070)", text);
	return -EINVAL;
}

void peer_addr_format(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
		snprintf(out, len, "%s:%u", host, ntohs(in4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, len, "(family %d)", sa->sa_family);
	}
}

bool peer_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family != AF_INET6)
		return false;
	const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (IN6_IS_ADDR_LOOPBACK(a))
		return true;
	return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
}
