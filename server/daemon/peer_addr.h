/* peer_addr: a peer's ADDR:PORT, as --peer-listen and memsrv-ctl peer-ping
 * write it: 10.0.0.2:7070, [::1]:7070, 0.0.0.0:7070.  Numeric only: the
 * peer thread never waits on a name lookup. */
#ifndef MEMSRV_PEER_ADDR_H
#define MEMSRV_PEER_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* INET6_ADDRSTRLEN, brackets, colon, port */
#define PEER_ADDR_TEXT 64

struct peer_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

/* Parses text; 0, or -EINVAL with why ("'x:1' is not ADDR:PORT: ..."). */
int peer_addr_parse(const char *text, struct peer_addr *addr, char *why, size_t len);
/* "1.2.3.4:5678", "[::1]:7070" */
void peer_addr_format(const struct sockaddr *sa, char *out, size_t len);
/* Whether sa is 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
bool peer_addr_is_loopback(const struct sockaddr *sa);

#endif
