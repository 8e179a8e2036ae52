/* service: memsrv as a systemd service (service.h). */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

static char last_status[256];
static uint64_t watchdog_every_ns, watchdog_next_ns;

#ifdef HAVE_LIBSYSTEMD

int service_listen_fd(const char *path, char *why, size_t len)
{
	int n = sd_listen_fds(1);  /* 1: LISTEN_* are unset, for memsrv's children */
	if (n <= 0)
		return -ENOENT;
	int fd = SD_LISTEN_FDS_START;
	if (n > 1) {
		snprintf(why, len, "systemd passed %d sockets: memsrv listens on one (ListenSequentialPacket=%s)", n, path);
		return -EINVAL;
	}
	if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, path, 0) <= 0) {
		snprintf(why, len, "the socket systemd passed is not a listening SOCK_SEQPACKET unix socket on %s "
			 "(memsrv.socket's ListenSequentialPacket= and memsrv's --socket must name the same path)", path);
		return -EINVAL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) || fcntl(fd, F_SETFD, FD_CLOEXEC)) {
		snprintf(why, len, "cannot set up the socket systemd passed: %s", strerror(errno));
		return -errno;
	}
	return fd;
}

void service_ready(const char *status)
{
	uint64_t usec = 0;
	if (sd_watchdog_enabled(1, &usec) > 0 && usec) {
		watchdog_every_ns = usec * 1000 / 2;
		watchdog_next_ns = monotonic_ns() + watchdog_every_ns;
	}
	snprintf(last_status, sizeof last_status, "%s", status);
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

bool service_notifying(void)
{
	return getenv("NOTIFY_SOCKET") != NULL;
}

void service_tick(const char *status)
{
	if (strcmp(status, last_status)) {
		snprintf(last_status, sizeof last_status, "%s", status);
		sd_notifyf(0, "STATUS=%s", status);
	}
	if (watchdog_every_ns && monotonic_ns() >= watchdog_next_ns) {
		sd_notify(0, "WATCHDOG=1");
		watchdog_next_ns = monotonic_ns() + watchdog_every_ns;
	}
}

void service_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=shutting down: giving every VM its pages back");
}

#else  /* without libsystemd: memsrv runs as in a shell */

int service_listen_fd(const char *path, char *why, size_t len)
{
	(void)path, (void)why, (void)len, (void)watchdog_every_ns, (void)watchdog_next_ns;
	return -ENOENT;
}

void service_ready(const char *status)
{
	snprintf(last_status, sizeof last_status, "%s", status);
}

bool service_notifying(void) { return false; }
void service_tick(const char *status) { (void)status; }
void service_stopping(void) {}

#endif
