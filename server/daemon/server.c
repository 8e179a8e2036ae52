/* server: accept connections, route messages, attach and detach VMs. */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "balancer.h"
#include "discards.h"
#include "log.h"
#include "mappings.h"
#include "metrics.h"
#include "metrics_http.h"
#include "remote_tier.h"
#include "service.h"
#include "vm_state.h"
#include "wire.h"

struct vm *server_find_vm(struct server *srv, const char *name)
{
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		if (!strcmp(vm->name, name))
			return vm;
	return NULL;
}

unsigned server_connections(const struct server *srv)
{
	unsigned n = 0;
	for (const struct conn *c = srv->conns; c; c = c->next)
		n++;
	return n;
}

struct vm *server_find_kept(struct server *srv, const char *name)
{
	for (struct vm *vm = srv->kept; vm; vm = vm->next)
		if (!strcmp(vm->name, name))
			return vm;
	return NULL;
}

void server_release_kept(struct server *srv, struct vm *vm, bool drop)
{
	for (struct vm **p = &srv->kept; *p; p = &(*p)->next)
		if (*p == vm) {
			*p = vm->next;
			break;
		}
	vm->persist.keep = !drop;
	vm_destroy(vm);
}

void server_reap_kept(struct server *srv)
{
	for (struct vm *vm = srv->kept, *next; vm; vm = next) {
		next = vm->next;
		if (vm_state_owner_alive(vm))
			continue;
		pr_info("vm=%s: its process %d is gone: dropping the state memsrv kept for it", vm->name, vm->pid);
		server_release_kept(srv, vm, true);
	}
}

/* A memsrv that starts with no VM kept references nothing in the cluster:
 * whatever its node id holds there is an earlier memsrv's, which crashed
 * or lost its state, and goes now. */
static void collect_own_leftovers(struct server *srv)
{
	if (!srv->remote || srv->kept)
		return;
	const char *id = remote_tier_node_id(srv->remote);
	char holder[256];
	long n = remote_tier_gc(srv->remote, id, 30000, holder, sizeof holder);
	if (n > 0)
		pr_info("remote tier: dropped %ld references an earlier memsrv of node %s left", n, id);
	else if (n < 0)
		pr_warn("remote tier: references an earlier memsrv of node %s left could not be dropped (%s): "
			"they stay until memsrv-ctl remote gc %s", id, strerror((int)-n), id);
}

/* --state-dir: lock it, put the store in its files and take up what an
 * earlier memsrv left there. */
static int open_state(struct server *srv, const struct server_config *cfg, struct store_config *sc)
{
	char why[512];
	int ret = state_dir_open(&srv->state, cfg->state_dir, why, sizeof why);
	if (ret) {
		pr_err("--state-dir: %s", why);
		return ret;
	}
	sc->persistent = true;
	sc->objects_fd = srv->state.objects_fd;
	sc->pool_fd = srv->state.pool_fd;
	sc->digests_fd = srv->state.digests_fd;
	if (sc->remote && (ret = state_dir_remote_node(&srv->state, remote_tier_node_id(sc->remote), why, sizeof why))) {
		pr_err("--state-dir: %s", why);
		return ret;
	}
	srv->store = store_create(sc);
	if (!srv->store)
		return -ENOMEM;
	ret = state_dir_load(&srv->state, srv->store, sc->swap, &srv->kept, why, sizeof why);
	if (ret) {
		pr_err("--state-dir: %s; move %s away to start without it (the VMs it served cannot resume then)", why,
		       cfg->state_dir);
		return ret;
	}
	unsigned n = 0;
	for (struct vm *vm = srv->kept; vm; vm = vm->next, n++)
		pr_info("vm=%s: kept from an earlier memsrv: %" PRIu64 " pages stored, waiting for pid %d to reconnect",
			vm->name, vm_count(vm, PAGE_STORED), vm->pid);
	struct store_stats st;
	store_get_stats(srv->store, &st);
	pr_info("state dir %s: %u VMs kept, %" PRIu64 " objects restored", cfg->state_dir, n, st.objects);
	if (state_dir_node_limit(&srv->state, cfg->node_limit, &srv->node_limit))
		pr_info("node limit %" PRIu64 " bytes, as memsrv-ctl set it before the restart", srv->node_limit);
	server_reap_kept(srv);
	return 0;
}

/* The soft limit on open files raised to the hard one (the soft one is for
 * programs that do not expect many; memsrv does), and what it is now. */
static unsigned raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur > UINT_MAX / 2 ? UINT_MAX / 2 : (unsigned)rl.rlim_cur;
}

static int mkdir_parents(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof dir, "%s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(dir, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/* A socket file may be left by a memsrv that died: remove it, but never
 * from under a live server. */
static int claim_socket_path(const struct sockaddr_un *addr)
{
	int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return -errno;
	int live = connect(probe, (const struct sockaddr *)addr, sizeof *addr) == 0;
	close(probe);
	if (live)
		return -EADDRINUSE;
	struct stat st;
	if (lstat(addr->sun_path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return -EEXIST;  /* never delete what is not a socket */
	if (unlink(addr->sun_path) && errno != ENOENT)
		return -errno;
	return 0;
}

/* The socket VMMs and memsrv-ctl connect to, at path (a stale one from a
 * dead memsrv is taken over; a live one's is not).  0 or -errno. */
static int listen_on(struct server *srv, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof addr.sun_path)
		return -ENAMETOOLONG;
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
	snprintf(srv->socket_path, sizeof srv->socket_path, "%s", path);

	/* socket activation: systemd's socket, which outlives memsrv */
	char why[256];
	int fd = service_listen_fd(path, why, sizeof why);
	if (fd < 0 && fd != -ENOENT) {
		pr_err("%s", why);
		srv->listen_failed = true;
		return fd;
	}
	if (fd >= 0) {
		srv->listen_fd = fd;
		srv->socket_activated = true;
		return access_prepare_socket(&srv->access, path);
	}
	int ret = mkdir_parents(path);
	if (ret)
		return ret;
	ret = claim_socket_path(&addr);
	if (ret)
		return ret;
	srv->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (srv->listen_fd < 0)
		return -errno;
	if (bind(srv->listen_fd, (struct sockaddr *)&addr, sizeof addr))
		return -errno;
	ret = access_prepare_socket(&srv->access, path);
	if (ret)
		return ret;
	return listen(srv->listen_fd, 64) ? -errno : 0;
}

/* The server thread's epoll: the listening socket, SIGINT/SIGTERM and the
 * 100 ms timer of the balancer and the mapping scan.  0 or -errno. */
static int watch_events(struct server *srv)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	srv->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (srv->signal_fd < 0 || srv->epoll_fd < 0)
		return -errno;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &srv->listen_fd };
	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->listen_fd, &ev))
		return -errno;
	ev.data.ptr = &srv->signal_fd;
	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->signal_fd, &ev))
		return -errno;
	srv->balance_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	struct itimerspec every = { .it_interval = { 0, 100 * 1000000 }, .it_value = { 0, 100 * 1000000 } };
	if (srv->balance_fd < 0 || timerfd_settime(srv->balance_fd, 0, &every, NULL))
		return -errno;
	ev.data.ptr = &srv->balance_fd;
	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->balance_fd, &ev))
		return -errno;
	return 0;
}

static int render_metrics(void *srv, struct metrics_text *out)
{
	return metrics_render(srv, out);
}

int server_open(struct server *srv, const struct server_config *cfg)
{
	memset(srv, 0, sizeof *srv);
	srv->listen_fd = srv->epoll_fd = srv->signal_fd = srv->balance_fd = srv->spare_fd = -1;
	srv->nofile = raise_nofile();
	/* kept for the moment accept4() finds no fd: then the peer is told why */
	srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	state_dir_none(&srv->state);
	srv->default_codec = cfg->default_codec;
	srv->node_limit = srv->configured_node_limit = cfg->node_limit;
	srv->idle_tax = cfg->idle_tax;
	srv->mapping_scan_ms = cfg->mapping_scan_ms ? cfg->mapping_scan_ms : MAPPINGS_DEFAULT_SCAN_MS;
	struct store_config sc = cfg->store;
	if (cfg->state_dir) {
		int ret = open_state(srv, cfg, &sc);
		srv->state_failed = ret != 0;
		if (ret)
			return ret;
	} else {
		srv->store = store_create(&sc);
	}
	if (!srv->store)
		return -ENOMEM;
	srv->remote = sc.remote;
	collect_own_leftovers(srv);
	srv->access = cfg->access;
	srv->access.admin_uid = geteuid();
	if (!srv->access.max_sessions_per_uid)
		srv->access.max_sessions_per_uid = ACCESS_DEFAULT_SESSIONS_PER_UID;
	clock_gettime(CLOCK_MONOTONIC, &srv->started);
	int ret = listen_on(srv, cfg->socket_path);
	if (!ret)
		ret = watch_events(srv);
	if (!ret) {
		ret = peers_open(&srv->peers, &cfg->peers, MEMSRV_VERSION);
		srv->peers_failed = ret != 0;
	}
	if (!ret) {
		/* the connections the peer thread hands over for migrations */
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = srv->peers };
		if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, peers_handoff_fd(srv->peers), &ev))
			ret = -errno;
	}
	if (!ret && cfg->metrics) {
		ret = metrics_http_open(&srv->metrics, &cfg->metrics_listen, render_metrics, srv);
		srv->metrics_failed = ret != 0;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = srv->metrics };
		if (!ret && epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, metrics_http_fd(srv->metrics), &ev))
			ret = -errno;
	}
	return ret;
}

static void detach_vm(struct server *srv, struct vm *vm)
{
	for (struct vm **p = &srv->vms; *p; p = &(*p)->next)
		if (*p == vm) {
			*p = vm->next;
			break;
		}
	vm_info(vm, "detached: %" PRIu64 " faults served, %" PRIu64 " pages evicted",
		ctr_get(&vm->ctr.faults_total), ctr_get(&vm->ctr.evictions_total));
	vm_destroy(vm);
}

/* Closes a connection; a VMM's disconnect releases its VM and nothing else. */
static void drop_conn(struct server *srv, struct conn *c, bool close_fd)
{
	epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->vm)
		detach_vm(srv, c->vm);
	if (close_fd)
		close(c->fd);
	*c->prev = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

/* The connections uid holds open.  One whose peer has hung up is not
 * counted though this loop has not reached its hangup yet (it is closed
 * there, never here: its event may be in the batch being handled): a
 * client that connects again at once must not find its old one counted. */
static unsigned sessions_of_uid(const struct server *srv, uid_t uid)
{
	unsigned n = 0;
	for (const struct conn *c = srv->conns; c; c = c->next) {
		if (c->cred.uid != uid)
			continue;
		struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };
		n += !(poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
	}
	return n;
}

/* Requests that change what memsrv does, for admins only. */
static bool steers(const Memsrv__ClientMessage *msg)
{
	return msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_EVICT ||
	       msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_BALLOON || msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_SET ||
	       msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_SNAPSHOT ||
	       msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_PEER_PING ||  /* memsrv dials out with its key */
	       msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_MIGRATE ||
	       msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_REMOTE_GC;
}

/* The fds memsrv has open now.  Counted, not kept in step by hand: the
 * store, swap, VMs and their threads open fds of their own. */
unsigned server_fds_in_use(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return UINT_MAX;  /* cannot even open a directory: none left */
	unsigned n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n > 0 ? n - 1 : 0;  /* not the directory's own */
}

/* Fds free under the limit, counted now. */
static unsigned fds_free(const struct server *srv)
{
	unsigned used = server_fds_in_use();
	return used >= srv->nofile ? 0 : srv->nofile - used;
}

/* A refusal, answered and closed: the client reads the reason even if its
 * own send failed (a SEQPACKET socket keeps the Error for it). */
static void refuse_conn(int fd, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void refuse_conn(int fd, int err, const char *fmt, ...)
{
	char text[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	wire_send_error(fd, err, NULL, "%s", text);
	close(fd);
}

/* accept4() failed with EMFILE/ENFILE: the peer would wait in the backlog
 * without a word.  The spare fd makes room to take it, tell it why and let
 * it go.  Without a spare, accepting pauses until the next balancer tick
 * (the listening socket would wake the loop for nothing meanwhile). */
static void refuse_without_fds(struct server *srv, int err)
{
	if (srv->spare_fd >= 0) {
		close(srv->spare_fd);
		srv->spare_fd = -1;
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			struct ucred cred = { 0 };
			socklen_t len = sizeof cred;
			getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
			pr_warn_ratelimited("refused connection from pid %d uid %d: memsrv is out of file descriptors (%s, limit %u)",
					    cred.pid, cred.uid, strerror(err), srv->nofile);
			refuse_conn(fd, EMFILE, "memsrv is out of file descriptors (limit %u): try again later, or raise memsrv's limit (ulimit -n, LimitNOFILE=)",
				    srv->nofile);
		}
		srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && srv->spare_fd >= 0)
			return;
	}
	pr_warn_ratelimited("accept: %s: not accepting for 100 ms", strerror(err));
	struct epoll_event ev = { .events = 0, .data.ptr = &srv->listen_fd };
	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, srv->listen_fd, &ev) == 0)
		srv->accept_paused = true;
}

static void resume_accepting(struct server *srv)
{
	if (srv->spare_fd < 0)
		srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!srv->accept_paused)
		return;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &srv->listen_fd };
	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, srv->listen_fd, &ev) == 0)
		srv->accept_paused = false;
}

/* Whether c may stay: its role, its uid's connections and memsrv's fds.
 * Answers and closes a refused one (false then); true if it stays. */
static bool admit(struct server *srv, struct conn *c)
{
	int ret = access_role_of(&srv->access, &c->cred, &c->role);
	if (ret) {
		pr_warn_ratelimited("refused connection from pid %d uid %d: cannot read its groups: %s", c->cred.pid,
				    c->cred.uid, strerror(-ret));
		refuse_conn(c->fd, -ret, "memsrv cannot check whether uid %d is a member of its socket's group: %s",
			    c->cred.uid, strerror(-ret));
		return false;
	}
	if (c->role == ACCESS_NONE) {
		pr_warn_ratelimited("refused connection from pid %d uid %d: not root, uid %d or a member of the socket's group",
				    c->cred.pid, c->cred.uid, srv->access.admin_uid);
		refuse_conn(c->fd, EACCES, "uid %d may not use this memsrv (root, uid %d or the socket's group only)",
			    c->cred.uid, srv->access.admin_uid);
		return false;
	}
	/* members leave root its own connections and the fds of an attach */
	unsigned reserve = c->role == ACCESS_ADMIN ? FD_RESERVE_LAST : FD_RESERVE_ADMIN + FD_RESERVE_ATTACH;
	unsigned free_fds = fds_free(srv);
	if (free_fds < reserve) {
		pr_warn_ratelimited("refused connection from pid %d uid %d: %u of memsrv's %u file descriptors are free, %u are kept for %s",
				    c->cred.pid, c->cred.uid, free_fds, srv->nofile, reserve,
				    c->role == ACCESS_ADMIN ? "the server itself" : "root and attaches");
		refuse_conn(c->fd, EMFILE,
			    "memsrv is near its limit of %u open file descriptors (%u free, %u kept for %s): close connections, or raise memsrv's limit (ulimit -n, LimitNOFILE=)",
			    srv->nofile, free_fds, reserve, c->role == ACCESS_ADMIN ? "the server itself" : "root and attaches");
		return false;
	}
	if (c->role == ACCESS_ADMIN)
		return true;  /* root is bound by fds only */
	unsigned open = sessions_of_uid(srv, c->cred.uid);
	if (open >= srv->access.max_sessions_per_uid) {
		pr_warn_ratelimited("refused connection from pid %d uid %d: it has %u connections open, the most a uid may",
				    c->cred.pid, c->cred.uid, open);
		refuse_conn(c->fd, EUSERS,
			    "uid %d has %u connections to memsrv open, the most one uid may (--max-sessions-per-uid)",
			    c->cred.uid, open);
		return false;
	}
	return true;
}

static void accept_conn(struct server *srv)
{
	for (;;) {
		/* non-blocking: no peer that stops reading can stall this thread */
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				refuse_without_fds(srv, errno);
				if (srv->accept_paused)
					return;
				continue;
			}
			if (errno != EAGAIN && errno != EINTR)
				pr_warn_ratelimited("accept: %s", strerror(errno));
			return;
		}
		struct conn *c = calloc(1, sizeof *c);
		socklen_t len = sizeof c->cred;
		if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len)) {
			if (!c)
				refuse_conn(fd, ENOMEM, "memsrv is out of memory");
			else
				close(fd);
			free(c);
			continue;
		}
		c->fd = fd;
		if (!admit(srv, c)) {
			free(c);
			continue;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev)) {
			refuse_conn(fd, errno, "memsrv cannot watch the connection: %s", strerror(errno));
			free(c);
			continue;
		}
		c->next = srv->conns;
		c->prev = &srv->conns;
		if (c->next)
			c->next->prev = &c->next;
		srv->conns = c;
	}
}

/* A Hello's fds are installed as memsrv reads the record: with too few fds
 * free the kernel drops those that do not fit, and the Hello would read as
 * malformed ("too many fds").  Before reading a record that carries fds,
 * see that they fit with the reserve kept (a member's Hello leaves root the
 * room of an attach); if not, take the record without them and say why.
 * True when the record was refused (and the connection is to be dropped). */
static bool hello_without_room(struct server *srv, struct conn *c)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	/* no control buffer: a peek installs nothing, and flags the fds */
	if (recvmsg(c->fd, &m, MSG_PEEK | MSG_DONTWAIT) < 0 || !(m.msg_flags & MSG_CTRUNC))
		return false;
	unsigned need = FD_RESERVE_ATTACH + (c->role == ACCESS_ADMIN ? 0 : FD_RESERVE_ADMIN + FD_RESERVE_ATTACH);
	unsigned free_fds = fds_free(srv);
	if (free_fds >= need)
		return false;
	if (recv(c->fd, &byte, 1, MSG_DONTWAIT) < 0) {
		/* gone meanwhile: its hangup follows */
	}
	pr_warn_ratelimited("refused a Hello from pid %d uid %d: %u of memsrv's %u file descriptors are free, an attach needs %u",
			    c->cred.pid, c->cred.uid, free_fds, srv->nofile, need);
	wire_send_error(c->fd, EMFILE, "hello",
			"memsrv is near its limit of %u open file descriptors (%u free, an attach %s needs %u): detach VMs, close connections, or raise memsrv's limit (ulimit -n, LimitNOFILE=)",
			srv->nofile, free_fds, c->role == ACCESS_ADMIN ? "" : "by a group member", need);
	return true;
}

static void post_detach(struct conn *c, const Memsrv__Detach *d)
{
	struct vm_job *job = vm_job_new(VM_JOB_DETACH);
	if (!job) {
		vm_send_error(c->vm, ENOMEM, NULL, "out of memory");
		return;
	}
	job->restore = d->has_restore && d->restore;
	job->migrated = d->has_migrated && d->migrated;
	if (job->restore && job->migrated) {
		vm_job_free(job);
		vm_send_error(c->vm, EINVAL, "detach.migrated", "a VM that migrated leaves its pages: not with restore");
		return;
	}
	job->reply_fd = -1;  /* the VM thread answers on the session */
	vm_post_job(c->vm, job);
}

/* A Discard and its more ranges, all or none: one job each, posted at
 * once (one wake-up of the VM thread for the batch). */
static void post_discard(struct conn *c, const Memsrv__Discard *d)
{
	struct vm_job *first = NULL, **tail = &first;
	for (size_t i = 0; i <= d->n_more; i++) {
		uint64_t addr = i ? d->more[i - 1]->host_addr : d->host_addr;
		uint64_t len = i ? d->more[i - 1]->length : d->length;
		struct vm_job *job = NULL;
		if (!discards_range_valid(c->vm, addr, len)) {
			char field[40] = "discard";
			if (i)
				snprintf(field, sizeof field, "discard.more[%zu]", i - 1);
			wire_send_error(c->fd, EINVAL, field,
					"0x%" PRIx64 " + %" PRIu64 " is not whole pages of one region: no range of this Discard is applied",
					addr, len);
		} else if (!(job = vm_job_new(VM_JOB_DISCARD))) {
			vm_err(c->vm, "out of memory: a Discard is not applied (the pages stay as they were)");
		}
		if (!job) {
			while (first) {
				struct vm_job *next = first->next;
				vm_job_free(first);
				first = next;
			}
			return;
		}
		job->addr = addr;
		job->len = len;
		*tail = job;
		tail = &job->next;
	}
	vm_post_jobs(c->vm, first);
}

/* A read that brought no message: a malformed one, an error, or the peer
 * leaving (ret <= 0).  The connection may be gone after. */
static void recv_failed(struct server *srv, struct conn *c, int ret, const struct wire_fault *fault)
{
	if (ret == -EPROTO) {
		srv->protocol_errors++;
		pr_warn_ratelimited("%s%s%smalformed message from pid %d: %s", c->vm ? "vm=" : "", c->vm ? c->vm->name : "",
				    c->vm ? ": " : "", c->cred.pid, fault->what);
		if (c->vm)
			vm_send_error(c->vm, EPROTO, NULL, "malformed message: %s", fault->what);
		else
			wire_send_error(c->fd, EPROTO, NULL, "malformed message: %s", fault->what);
		/* a VMM's session survives its mistakes: dropping it would drop its pages */
		if (!c->vm)
			drop_conn(srv, c, true);
		return;
	}
	if (ret < 0 && c->vm && ret != -ECONNRESET && ret != -ENOTCONN && ret != -EPIPE) {
		/* e.g. ENOMEM: the record is gone, the session (and its pages) stay */
		vm_warn(c->vm, "reading from the VMM failed: %s", strerror(-ret));
		return;
	}
	if (ret < 0 && ret != -ECONNRESET)
		pr_debug("connection from pid %d: %s", c->cred.pid, strerror(-ret));
	drop_conn(srv, c, true);
}

/* The VMM's answer to a BalloonTarget: whether it has a balloon at all. */
static void take_balloon_result(struct vm *vm, const Memsrv__BalloonResult *br)
{
	if (br->errno_code == EOPNOTSUPP) {
		atomic_store(&vm->balloon.answer, VM_BALLOON_NO);
		vm_info(vm, "no balloon (%.*s): memsrv will not ask again", LOG_CLIENT_STR_MAX,
			br->message ? br->message : strerror(br->errno_code));
	} else {
		/* it has one; a request that failed is no reason to stop
		 * asking, but nothing to wait for either: the target is
		 * held by eviction now */
		atomic_store(&vm->balloon.answer, VM_BALLOON_YES);
		if (br->errno_code && atomic_exchange(&vm->balloon.grace_until_ns, 1) != 1)
			vm_warn(vm, "the balloon failed to reach %" PRIu64 " bytes (%.*s): evicting instead",
				br->target_bytes, LOG_CLIENT_STR_MAX, br->message ? br->message : strerror(br->errno_code));
	}
	/* after the actual it reported while working on it */
	atomic_store(&vm->balloon.answered_bytes, br->target_bytes);
	vm_state_save_settings(vm);
}

/* What the VMM's balloon left the guest, reported whenever it changes. */
static void take_balloon_actual(struct vm *vm, const Memsrv__BalloonActual *ba)
{
	if (!ba->actual_bytes || ba->actual_bytes > vm->size_bytes) {
		vm_send_error(vm, EINVAL, "balloon_actual.actual_bytes",
			      "a balloon leaves the guest between 1 and %" PRIu64 " bytes (its RAM), not %" PRIu64,
			      vm->size_bytes, ba->actual_bytes);
		return;
	}
	if (atomic_exchange(&vm->balloon.actual_bytes, ba->actual_bytes) != ba->actual_bytes)
		atomic_store(&vm->balloon.actual_ns, monotonic_ns());
}

/* A control request on a connection of its own: answered, then the
 * connection goes (unless the request took it, e.g. to stream). */
static void take_control(struct server *srv, struct conn *c, const Memsrv__ClientMessage *msg)
{
	if (steers(msg) && c->role != ACCESS_ADMIN) {
		wire_send_error(c->fd, EPERM, NULL, "uid %d may read memsrv's state but not change it (root or uid %d only)",
				c->cred.uid, srv->access.admin_uid);
		drop_conn(srv, c, true);
		return;
	}
	bool taken;
	control_handle(srv, c->fd, msg, &taken);
	drop_conn(srv, c, !taken);  /* one request per control connection */
}

/* One message from a connection; only a Hello brings fds (closed here
 * otherwise).  The connection may be gone after. */
static void dispatch(struct server *srv, struct conn *c, const Memsrv__ClientMessage *msg, int *fds, unsigned nfds)
{
	if (msg->msg_case != MEMSRV__CLIENT_MESSAGE__MSG_HELLO)
		wire_close_fds(fds, nfds);
	switch (msg->msg_case) {
	case MEMSRV__CLIENT_MESSAGE__MSG_HELLO:
		if (c->vm) {
			wire_close_fds(fds, nfds);
			vm_send_error(c->vm, EALREADY, "hello", "this session already attached VM %s", c->vm->name);
		} else if (hello_accept(srv, c, msg->hello, fds, nfds)) {
			drop_conn(srv, c, true);
		}
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_RESULT:
		if (c->vm)
			take_balloon_result(c->vm, msg->balloon_result);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_ACTUAL:
		if (c->vm)
			take_balloon_actual(c->vm, msg->balloon_actual);
		else
			wire_send_error(c->fd, ENOTCONN, "balloon_actual", "no VM is attached on this connection");
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_DISCARD:
		if (c->vm)
			post_discard(c, msg->discard);
		else
			wire_send_error(c->fd, ENOTCONN, "discard", "no VM is attached on this connection");
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_DETACH:
		if (c->vm)
			post_detach(c, msg->detach);
		else
			wire_send_error(c->fd, ENOTCONN, "detach", "no VM is attached on this connection");  /* no session: nothing queued */
		break;
	default:
		if (c->vm)
			vm_send_error(c->vm, EINVAL, NULL, "control requests need a connection of their own");
		else
			take_control(srv, c, msg);
		break;
	}
}

static void handle_conn(struct server *srv, struct conn *c)
{
	Memsrv__ClientMessage *msg = NULL;
	int fds[WIRE_MAX_FDS];
	unsigned nfds = 0;
	struct wire_fault fault = { "" };
	if (!c->vm && hello_without_room(srv, c)) {
		drop_conn(srv, c, true);
		return;
	}
	/* a VM thread that read the REMOVE of a memsrv_discard() waits for
	 * this read and its job (discards_apply_sent) */
	struct vm *vm = c->vm;
	if (vm)
		atomic_store(&vm->session_reading, true);
	int ret = wire_recv_client(c->fd, &msg, fds, &nfds, &fault);
	if (ret > 0)
		dispatch(srv, c, msg, fds, nfds);  /* which keeps a VMM's connection, and so its VM */
	if (vm)
		atomic_store_explicit(&vm->session_reading, false, memory_order_release);
	if (ret == -EAGAIN)
		return;  /* woken for nothing */
	if (ret <= 0)
		recv_failed(srv, c, ret, &fault);
	else
		memsrv__client_message__free_unpacked(msg, NULL);
}

/* One line for systemctl status: the VMs and what is wrong, if anything. */
static void service_status_line(struct server *srv, char *out, size_t len)
{
	unsigned vms = 0, kept = 0;
	uint64_t resident = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next, vms++)
		resident += ctr_get(&vm->resident_bytes);
	for (struct vm *vm = srv->kept; vm; vm = vm->next)
		kept++;
	struct store_stats ss;
	store_get_stats(srv->store, &ss);
	int n = snprintf(out, len, "%u VM%s attached, %" PRIu64 " MiB resident", vms, vms == 1 ? "" : "s",
			 resident >> 20);
	if (kept && n < (int)len)
		n += snprintf(out + n, len - n, ", %u kept waiting for their VMM", kept);
	const char *cond = ss.swap_failing ? "swap-failing" : ss.swap_full ? "swap-full" : ss.store_full ? "store-full" : NULL;
	if (cond && n < (int)len)
		snprintf(out + n, len - n, "; condition %s", cond);
}

int server_run(struct server *srv)
{
	pr_info("memsrv listening on %s%s", srv->socket_path, srv->socket_activated ? " (socket from systemd)" : "");
	char status[256];
	service_status_line(srv, status, sizeof status);
	service_ready(status);
	for (;;) {
		struct epoll_event evs[32];
		int n = epoll_wait(srv->epoll_fd, evs, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &srv->listen_fd) {
				accept_conn(srv);
			} else if (p == &srv->balance_fd) {
				uint64_t ticks;
				if (read(srv->balance_fd, &ticks, sizeof ticks) == sizeof ticks)
					balancer_run(srv);
				if (service_notifying()) {
					service_status_line(srv, status, sizeof status);
					service_tick(status);
				}
				resume_accepting(srv);
				if (srv->metrics)
					metrics_http_tick(srv->metrics);
				if (srv->kept && ++srv->reap_ticks % 10 == 0)
					server_reap_kept(srv);
				if (monotonic_ns() >= srv->next_mapping_scan_ns) {
					mappings_scan(srv);
					srv->next_mapping_scan_ns = monotonic_ns() + srv->mapping_scan_ms * 1000000ull;
				}
			} else if (p == srv->peers) {
				migrate_take_handoffs(srv);
			} else if (srv->metrics && p == srv->metrics) {
				metrics_http_serve(srv->metrics);
			} else if (p == &srv->signal_fd) {
				struct signalfd_siginfo si;
				if (read(srv->signal_fd, &si, sizeof si) == sizeof si) {
					pr_info("signal %d: shutting down", si.ssi_signo);
					service_stopping();
					return 0;
				}
			} else {
				struct conn *c = p;
				/* first: handle_conn() may free c */
				if ((evs[i].events & EPOLLOUT) && c->vm)
					session_out_flush(&c->vm->out, c->fd);
				if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					handle_conn(srv, c);
			}
		}
	}
}

void server_close(struct server *srv)
{
	/* first: no peer request may wait on what goes below */
	peers_close(srv->peers);
	srv->peers = NULL;
	metrics_http_close(srv->metrics);
	srv->metrics = NULL;
	/* orderly exit: every VM gets its pages back before memsrv goes */
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		vm_shutdown(vm);
	/* and its Goodbye, which no loop flushes now: a VMM that reads gets
	 * it; one that does not cannot hold memsrv's exit past 2 s */
	uint64_t deadline = monotonic_ns() + 2000000000ull;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		session_out_drain(&vm->out, vm->session_fd, deadline);
	while (srv->conns)
		drop_conn(srv, srv->conns, true);
	while (srv->vms)
		detach_vm(srv, srv->vms);
	/* a kept VM whose process runs on may still be resumed by the next memsrv */
	while (srv->kept)
		server_release_kept(srv, srv->kept, !vm_state_owner_alive(srv->kept));
	if (srv->listen_fd >= 0) {
		close(srv->listen_fd);
		if (!srv->socket_activated)
			unlink(srv->socket_path);
	}
	if (srv->epoll_fd >= 0)
		close(srv->epoll_fd);
	if (srv->signal_fd >= 0)
		close(srv->signal_fd);
	if (srv->spare_fd >= 0)
		close(srv->spare_fd);
	if (srv->balance_fd >= 0)
		close(srv->balance_fd);
	free(srv->plan);
	store_destroy(srv->store);  /* after the VMs: they held references */
	srv->store = NULL;
	if (srv->state.dir_fd >= 0) {
		srv->state_left = state_dir_holds_vms(&srv->state);
		if (srv->state_left)
			pr_info("state dir %s keeps VMs whose pages were not all given back: the next memsrv resumes them",
				srv->state.path);
		state_dir_close(&srv->state, !srv->state_left);
	}
}
