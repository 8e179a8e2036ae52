/* server: accept connections, route messages, attach and detach VMs. */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "vm_state.h"
#include "wire.h"

struct vm *server_find_vm(struct server *srv, const char *name)
{
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		if (!strcmp(vm->name, name))
			return vm;
	return NULL;
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
	vm->state_keep = !drop;
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

int server_open(struct server *srv, const struct server_config *cfg)
{
	const char *socket_path = cfg->socket_path;
	memset(srv, 0, sizeof *srv);
	srv->listen_fd = srv->epoll_fd = srv->signal_fd = srv->balance_fd = -1;
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
	srv->access = cfg->access;
	srv->access.admin_uid = geteuid();
	if (!srv->access.max_sessions_per_uid)
		srv->access.max_sessions_per_uid = ACCESS_DEFAULT_SESSIONS_PER_UID;
	clock_gettime(CLOCK_MONOTONIC, &srv->started);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(socket_path) >= sizeof addr.sun_path)
		return -ENAMETOOLONG;
	snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path);
	snprintf(srv->socket_path, sizeof srv->socket_path, "%s", socket_path);

	int ret = mkdir_parents(socket_path);
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
	ret = access_prepare_socket(&srv->access, socket_path);
	if (ret)
		return ret;
	if (listen(srv->listen_fd, 64))
		return -errno;

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
	       msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_BALLOON || msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_SET;
}

static void accept_conn(struct server *srv)
{
	for (;;) {
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				pr_warn("accept: %s", strerror(errno));
			return;
		}
		struct conn *c = calloc(1, sizeof *c);
		socklen_t len = sizeof c->cred;
		if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len)) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->role = access_role_of(&srv->access, &c->cred);
		if (c->role == ACCESS_NONE) {
			pr_warn("refused connection from pid %d uid %d: not root, uid %d or a member of the socket's group",
				c->cred.pid, c->cred.uid, srv->access.admin_uid);
			wire_send_error(fd, EACCES, NULL,
					"uid %d may not use this memsrv (root, uid %d or the socket's group only)",
					c->cred.uid, srv->access.admin_uid);
			close(fd);
			free(c);
			continue;
		}
		unsigned open = sessions_of_uid(srv, c->cred.uid);
		if (open >= srv->access.max_sessions_per_uid) {
			pr_warn("refused connection from pid %d uid %d: it has %u connections open, the most a uid may",
				c->cred.pid, c->cred.uid, open);
			wire_send_error(fd, EUSERS, NULL,
					"uid %d has %u connections to memsrv open, the most one uid may (--max-sessions-per-uid)",
					c->cred.uid, open);
			close(fd);
			free(c);
			continue;
		}
		/* a peer that stops reading must not stall the server */
		struct timeval tv = { .tv_sec = 2 };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
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

static void post_detach(struct conn *c, const Memsrv__Detach *d)
{
	struct vm_job *job = calloc(1, sizeof *job);
	if (!job) {
		wire_send_error(c->fd, ENOMEM, NULL, "out of memory");
		return;
	}
	job->kind = VM_JOB_DETACH;
	job->restore = d->has_restore && d->restore;
	job->reply_fd = -1;  /* the VM thread answers on the session */
	vm_post_job(c->vm, job);
}

static void post_discard(struct conn *c, const Memsrv__Discard *d)
{
	if (!discards_range_valid(c->vm, d->host_addr, d->length)) {
		wire_send_error(c->fd, EINVAL, "discard", "0x%" PRIx64 " + %" PRIu64 " is not whole pages of one region",
				d->host_addr, d->length);
		return;
	}
	struct vm_job *job = calloc(1, sizeof *job);
	if (!job) {
		vm_err(c->vm, "out of memory: a Discard is not applied (the pages stay as they were)");
		return;
	}
	job->kind = VM_JOB_DISCARD;
	job->addr = d->host_addr;
	job->len = d->length;
	job->reply_fd = -1;
	vm_post_job(c->vm, job);
}

static void handle_conn(struct server *srv, struct conn *c)
{
	Memsrv__ClientMessage *msg = NULL;
	int fds[WIRE_MAX_FDS];
	unsigned nfds = 0;
	struct wire_fault fault = { "" };
	int ret = wire_recv_client(c->fd, &msg, fds, &nfds, &fault);
	if (ret == -EPROTO) {
		srv->protocol_errors++;
		pr_warn("%s%s: malformed message from pid %d: %s", c->vm ? "vm=" : "", c->vm ? c->vm->name : "",
			c->cred.pid, fault.what);
		wire_send_error(c->fd, EPROTO, NULL, "malformed message: %s", fault.what);
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
	if (ret <= 0) {
		if (ret < 0 && ret != -ECONNRESET)
			pr_debug("connection from pid %d: %s", c->cred.pid, strerror(-ret));
		drop_conn(srv, c, true);
		return;
	}
	bool is_hello = msg->msg_case == MEMSRV__CLIENT_MESSAGE__MSG_HELLO;
	if (!is_hello)
		wire_close_fds(fds, nfds);
	switch (msg->msg_case) {
	case MEMSRV__CLIENT_MESSAGE__MSG_HELLO:
		if (c->vm) {
			wire_close_fds(fds, nfds);
			wire_send_error(c->fd, EALREADY, "hello", "this session already attached VM %s", c->vm->name);
		} else if (hello_accept(srv, c, msg->hello, fds, nfds)) {
			drop_conn(srv, c, true);
		}
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_RESULT:
		if (c->vm) {
			const Memsrv__BalloonResult *br = msg->balloon_result;
			if (br->errno_code == EOPNOTSUPP) {
				atomic_store(&c->vm->balloon, VM_BALLOON_NO);
				vm_info(c->vm, "no balloon (%s): memsrv will not ask again",
					br->message ? br->message : strerror(br->errno_code));
			} else {
				/* it has one; a request that failed is no reason to stop
				 * asking, but nothing to wait for either: the target is
				 * held by eviction now */
				atomic_store(&c->vm->balloon, VM_BALLOON_YES);
				if (br->errno_code && atomic_exchange(&c->vm->balloon_grace_until_ns, 1) != 1)
					vm_warn(c->vm, "the balloon failed to reach %" PRIu64 " bytes (%s): evicting instead",
						br->target_bytes, br->message ? br->message : strerror(br->errno_code));
			}
			vm_state_save_settings(c->vm);
		}
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
			wire_send_error(c->fd, ENOTCONN, "detach", "no VM is attached on this connection");
		break;
	default:
		if (c->vm) {
			wire_send_error(c->fd, EINVAL, NULL, "control requests need a connection of their own");
		} else if (steers(msg) && c->role != ACCESS_ADMIN) {
			wire_send_error(c->fd, EPERM, NULL,
					"uid %d may read memsrv's state but not change it (root or uid %d only)",
					c->cred.uid, srv->access.admin_uid);
			drop_conn(srv, c, true);
		} else {
			bool taken;
			control_handle(srv, c->fd, msg, &taken);
			/* one request per control connection */
			drop_conn(srv, c, !taken);
		}
		break;
	}
	memsrv__client_message__free_unpacked(msg, NULL);
}

int server_run(struct server *srv)
{
	pr_info("memsrv listening on %s", srv->socket_path);
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
				if (srv->kept && ++srv->reap_ticks % 10 == 0)
					server_reap_kept(srv);
				if (monotonic_ns() >= srv->next_mapping_scan_ns) {
					mappings_scan(srv);
					srv->next_mapping_scan_ns = monotonic_ns() + srv->mapping_scan_ms * 1000000ull;
				}
			} else if (p == &srv->signal_fd) {
				struct signalfd_siginfo si;
				if (read(srv->signal_fd, &si, sizeof si) == sizeof si) {
					pr_info("signal %d: shutting down", si.ssi_signo);
					return 0;
				}
			} else {
				handle_conn(srv, p);
			}
		}
	}
}

void server_close(struct server *srv)
{
	/* orderly exit: every VM gets its pages back before memsrv goes */
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		vm_shutdown(vm);
	while (srv->conns)
		drop_conn(srv, srv->conns, true);
	while (srv->vms)
		detach_vm(srv, srv->vms);
	/* a kept VM whose process runs on may still be resumed by the next memsrv */
	while (srv->kept)
		server_release_kept(srv, srv->kept, !vm_state_owner_alive(srv->kept));
	if (srv->listen_fd >= 0) {
		close(srv->listen_fd);
		unlink(srv->socket_path);
	}
	if (srv->epoll_fd >= 0)
		close(srv->epoll_fd);
	if (srv->signal_fd >= 0)
		close(srv->signal_fd);
	if (srv->balance_fd >= 0)
		close(srv->balance_fd);
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
