/* migrate_socket: how both ends of a live migration's connection are set
 * up (migrate_out.c, migrate_in.c). */
#ifndef MEMSRV_MIGRATE_SOCKET_H
#define MEMSRV_MIGRATE_SOCKET_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define MIGRATE_SOCKET_BUFFER (64 << 10)  /* each side's (the kernel doubles it): a pulled page waits behind no more */
#define MIGRATE_SILENCE_S 30              /* a peer silent this long, with data unacknowledged or idle, is gone */

/* buf_opt: SO_SNDBUF at the source, SO_RCVBUF at the destination.  A
 * host that vanishes without a reset is noticed in MIGRATE_SILENCE_S, not
 * in the kernel's 15 minutes of retransmissions: the source VM's pages are
 * held for the migration meanwhile. */
static inline void migrate_socket_tune(int fd, int buf_opt)
{
	int buf = MIGRATE_SOCKET_BUFFER, one = 1, idle = MIGRATE_SILENCE_S / 3, intvl = MIGRATE_SILENCE_S / 6,
	    cnt = 4;
	unsigned timeout_ms = MIGRATE_SILENCE_S * 1000;
	setsockopt(fd, SOL_SOCKET, buf_opt, &buf, sizeof buf);
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof timeout_ms);
}

#endif
