/* service: memsrv as a systemd service (memsrv.service, memsrv.socket).
 *
 * Socket activation: the listening socket systemd passes is taken instead
 * of one memsrv binds.  Type=notify: READY=1 once the socket listens and
 * the kept VMs are loaded, STATUS= with the VM count and the node's
 * conditions as they change, WATCHDOG=1 at half of WatchdogSec=, and
 * STOPPING=1 on the way out.  Without systemd (no NOTIFY_SOCKET, no
 * LISTEN_FDS, or memsrv built without libsystemd) each is a no-op and
 * memsrv runs as it does in a shell.
 */
#ifndef MEMSRV_SERVICE_H
#define MEMSRV_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

/* The listening socket systemd passed, for memsrv's socket at path: its
 * fd (nonblocking, close-on-exec), or -ENOENT when systemd passed none.
 * -EINVAL with why when what it passed cannot be memsrv's socket (more
 * than one, or not a listening SOCK_SEQPACKET unix socket on path). */
int service_listen_fd(const char *path, char *why, size_t len);

/* memsrv serves: READY=1 with a first status. */
void service_ready(const char *status);

/* Whether systemd listens for notifications (NOTIFY_SOCKET): without it
 * the ticks' status lines need not be built. */
bool service_notifying(void);

/* A tick of the server thread (every 100 ms): STATUS= when status
 * changed since the last one sent, WATCHDOG=1 when it is due. */
void service_tick(const char *status);

/* memsrv leaves: STOPPING=1. */
void service_stopping(void);

#endif
