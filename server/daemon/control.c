/* control: the requests of memsrv-ctl — list, info, stats, evict, balloon,
 * set, check, snapshot, peer-ping. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "balancer.h"
#include "image.h"
#include "log.h"
#include "peers.h"
#include "remote_alive.h"
#include "remote_tier.h"
#include "server.h"
#include "setting_hooks.h"
#include "wire.h"

#define REMOTE_GC_MS 30000  /* memsrv-ctl remote gc: at most this long on the server thread */

static void reply(int fd, Memsrv__ServerMessage *msg)
{
	int ret = wire_send_server(fd, msg);
	if (ret)
		pr_debug("control reply on fd %d failed: %s", fd, strerror(-ret));
}

static void do_list(struct server *srv, int fd)
{
	unsigned n = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		n++;
	Memsrv__VmInfo *infos = calloc(n ? n : 1, sizeof *infos);
	Memsrv__VmInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
	Memsrv__Percentiles (*pct)[VM_INFO_PERCENTILES] = calloc(n ? n : 1, sizeof *pct);
	if (!infos || !ptrs || !pct) {
		wire_send_error(fd, ENOMEM, NULL, "out of memory");
		goto out;
	}
	unsigned i = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next, i++) {
		vm_fill_info(vm, &infos[i], pct[i]);
		ptrs[i] = &infos[i];
	}
	Memsrv__VmList list = MEMSRV__VM_LIST__INIT;
	list.n_vms = n;
	list.vms = ptrs;
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_VM_LIST;
	msg.vm_list = &list;
	reply(fd, &msg);
out:
	free(infos);
	free(ptrs);
	free(pct);
}

static void do_info(struct server *srv, int fd, const Memsrv__InfoRequest *req)
{
	struct vm *vm = server_find_vm(srv, req->name);
	if (!vm) {
		wire_send_error(fd, ENOENT, "info.name", "no VM named %s is attached", req->name);
		return;
	}
	Memsrv__VmInfo info;
	Memsrv__Percentiles pct[VM_INFO_PERCENTILES];
	vm_fill_info(vm, &info, pct);
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_VM_INFO;
	msg.vm_info = &info;
	reply(fd, &msg);
}

/* The VMs' sums; returns how many pages are poisoned now. */
static uint64_t sum_vms(struct server *srv, Memsrv__NodeStats *st)
{
	uint64_t poisoned_now = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next) {
		st->vms++;
		st->size_bytes += vm->size_bytes;
		st->resident_bytes += ctr_get(&vm->resident_bytes);
		st->zero_pages += vm_count(vm, PAGE_ZERO);
		st->stored_pages += vm_count(vm, PAGE_STORED);
		Memsrv__VmInfo tiers = MEMSRV__VM_INFO__INIT;
		vm_count_stored(vm, &tiers);
		st->samefilled_pages += tiers.samefilled_pages;
		st->cache_pages += tiers.cache_pages;
		st->swap_pages += tiers.swap_pages;
		st->remote_tier_pages += tiers.remote_tier_pages;
		st->clean_pages += tiers.clean_pages;
		st->evictions_clean += ctr_get(&vm->ctr.evictions_clean);
		st->faults_total += ctr_get(&vm->ctr.faults_total);
		st->evictions_total += ctr_get(&vm->ctr.evictions_total);
		st->pages_poisoned += ctr_get(&vm->ctr.pages_poisoned);
		poisoned_now += vm_count(vm, PAGE_POISONED);
	}
	return poisoned_now;
}

static void fill_balance(Memsrv__NodeStats *st, const struct balance_report *br)
{
	st->node_limit_bytes = br->node_limit;
	st->overhead_bytes = br->overhead;
	st->assigned_bytes = br->assigned;
	st->guaranteed_bytes = br->guaranteed;
	st->entitled_bytes = br->entitled;
	st->overcommitted = br->overcommitted;
	st->overcommit_margin_bytes = br->overcommit_margin;
	st->overloaded = br->overloaded;
	st->overload_margin_bytes = br->overload_margin;
}

/* Whether x should move away before y: a larger working set (resident
 * memory while neither has been sampled). */
static bool moves_before(struct vm *x, struct vm *y)
{
	uint64_t wx = atomic_load(&x->quota.working_set_bytes), wy = atomic_load(&y->quota.working_set_bytes);
	if (!wx && !wy) {
		wx = ctr_get(&x->resident_bytes);
		wy = ctr_get(&y->resident_bytes);
	}
	return wx > wy;
}

/* Who should move away from an overloaded node: the active VMs, largest
 * working set first; at most max names, which point into the VMs. */
static size_t pick_migrate(struct server *srv, char **names, size_t max)
{
	struct vm *vms[CONTROL_MIGRATE_MAX];
	size_t n = 0;
	if (max > CONTROL_MIGRATE_MAX)
		max = CONTROL_MIGRATE_MAX;
	for (struct vm *vm = srv->vms; vm && n < max; vm = vm->next)
		if (atomic_load(&vm->quota.active))
			vms[n++] = vm;
	for (size_t a = 1; a < n; a++)  /* insertion sort: stable, n is small */
		for (size_t b = a; b > 0 && moves_before(vms[b], vms[b - 1]); b--) {
			struct vm *t = vms[b];
			vms[b] = vms[b - 1];
			vms[b - 1] = t;
		}
	for (size_t i = 0; i < n; i++)
		names[i] = vms[i]->name;
	return n;
}

void control_fill_stats(struct server *srv, Memsrv__NodeStats *st, char *conditions[CONTROL_CONDITIONS_MAX],
			char *migrate[CONTROL_MIGRATE_MAX])
{
	memsrv__node_stats__init(st);
	uint64_t poisoned_now = sum_vms(srv, st);
	struct store_stats ss;
	store_get_stats(srv->store, &ss);
#define X(name) st->name = ss.name;
	STORE_STATS(X)
#undef X
	st->stored_bytes = ss.cache_bytes;
	st->pool_bytes = ss.cache_pool_bytes;
	st->fragmentation = ss.cache_pool_bytes ? 1.0 - (double)ss.cache_slot_bytes / ss.cache_pool_bytes : 0;
	/* logical bytes out of residence per byte that holds them, in memory or on disk */
	uint64_t held = ss.cache_pool_bytes + ss.swap_used_bytes;
	uint64_t evicted = (st->zero_pages + st->stored_pages) * 4096;
	st->density = held ? (double)evicted / held : 0;
	struct balance_report br;
	balancer_report(srv, &br);
	fill_balance(st, &br);
	if (ss.swap_failing)
		conditions[st->n_conditions++] = "swap-failing";
	else if (ss.swap_full)
		conditions[st->n_conditions++] = "swap-full";
	if (ss.store_full)
		conditions[st->n_conditions++] = "store-full";
	if (ss.remote_unreachable)
		conditions[st->n_conditions++] = "remote-unreachable";
	else if (ss.remote_failing)
		conditions[st->n_conditions++] = "remote-failing";
	if (poisoned_now)
		conditions[st->n_conditions++] = VM_COND_PAGES_POISONED;
	st->conditions = conditions;
	st->n_migrate = br.overloaded ? pick_migrate(srv, migrate, CONTROL_MIGRATE_MAX) : 0;
	st->migrate = migrate;
	st->sessions_total = srv->sessions_total;
	st->connections_open = server_connections(srv);
	st->fds_open = server_fds_in_use();
	st->fd_limit = srv->nofile;
	st->protocol_errors = srv->protocol_errors;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	st->uptime_s = (double)(now.tv_sec - srv->started.tv_sec) + (now.tv_nsec - srv->started.tv_nsec) / 1e9;
}

/* Runs on this thread, on a connection of its own to the cluster: an
 * operator's rare command, bounded by REMOTE_GC_MS. */
static void do_remote_gc(struct server *srv, int fd, const Memsrv__RemoteGcRequest *req)
{
	struct remote_tier *rt = srv->remote;
	if (!rt) {
		wire_send_error(fd, ENOTSUP, NULL, "memsrv runs without --remote: there is no cluster to collect in");
		return;
	}
	if (!strcmp(req->node_id, remote_tier_node_id(rt))) {
		wire_send_error(fd, EINVAL, "remote_gc.node_id",
				"'%s' is this node: its references hold its VMs' pages", req->node_id);
		return;
	}
	char holder[256] = "";
	long n = remote_tier_gc(rt, req->node_id, REMOTE_GC_MS, holder, sizeof holder);
	if (n == -EBUSY) {
		wire_send_error(fd, EBUSY, "remote_gc.node_id",
				"node %s is running (its memsrv, %s, renewed its claim within %d s): stop it first",
				req->node_id, holder, REMOTE_ALIVE_TTL_MS / 1000);
		return;
	}
	if (n == -EINVAL) {
		wire_send_error(fd, EINVAL, "remote_gc.node_id", "'%s' is not a node id (1-%d characters, no braces or spaces)",
				req->node_id, REMOTE_NODE_ID_MAX - 1);
		return;
	}
	if (n < 0) {
		wire_send_error(fd, (int)-n, NULL, "remote gc of %s: %s", req->node_id, strerror((int)-n));
		return;
	}
	pr_info("remote gc: dropped %ld references of node %s", n, req->node_id);
	Memsrv__RemoteGcReply r = MEMSRV__REMOTE_GC_REPLY__INIT;
	r.node_id = req->node_id;
	r.references_dropped = (uint64_t)n;
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_REMOTE_GC_REPLY;
	msg.remote_gc_reply = &r;
	reply(fd, &msg);
}

static void do_stats(struct server *srv, int fd)
{
	Memsrv__NodeStats st;
	char *conditions[CONTROL_CONDITIONS_MAX], *migrate[CONTROL_MIGRATE_MAX];
	control_fill_stats(srv, &st, conditions, migrate);
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_NODE_STATS;
	msg.node_stats = &st;
	reply(fd, &msg);
}

static void do_evict(struct server *srv, int fd, const Memsrv__EvictRequest *req, bool *fd_taken)
{
	struct vm *vm = server_find_vm(srv, req->name);
	if (!vm) {
		wire_send_error(fd, ENOENT, "evict.name", "no VM named %s is attached", req->name);
		return;
	}
	bool all = req->has_all && req->all;
	if (!all && (!req->has_bytes || req->bytes == 0)) {
		wire_send_error(fd, EINVAL, "evict.bytes", "say how much to evict (bytes > 0) or all");
		return;
	}
	struct vm_job *job = vm_job_new(VM_JOB_EVICT);
	if (!job) {
		wire_send_error(fd, ENOMEM, NULL, "out of memory");
		return;
	}
	job->all = all;
	job->bytes = req->has_bytes ? req->bytes : 0;
	job->reply_fd = fd;
	*fd_taken = true;
	vm_post_job(vm, job);
}

/* Whether dir can take a new image: an absolute path to a directory memsrv
 * may write, with no image in it.  0, or the errno with the Error sent. */
static int check_snapshot_dir(int fd, const char *dir)
{
	char img[PATH_MAX];
	struct stat st;
	if (dir[0] != '/') {
		wire_send_error(fd, EINVAL, "snapshot.dir", "'%s' is not an absolute path (memsrv's working directory is not "
				"the client's)", dir);
		return EINVAL;
	}
	if (strlen(dir) + sizeof "/" IMAGE_PARTIAL_FILE > sizeof img) {
		wire_send_error(fd, ENAMETOOLONG, "snapshot.dir", "the path is too long");
		return ENAMETOOLONG;
	}
	if (stat(dir, &st)) {
		int err = errno;
		wire_send_error(fd, err, "snapshot.dir", "%s: %s", dir, strerror(err));
		return err;
	}
	if (!S_ISDIR(st.st_mode)) {
		wire_send_error(fd, ENOTDIR, "snapshot.dir", "%s is not a directory", dir);
		return ENOTDIR;
	}
	if (access(dir, W_OK | X_OK)) {
		int err = errno;
		wire_send_error(fd, err, "snapshot.dir", "memsrv may not write in %s: %s", dir, strerror(err));
		return err;
	}
	snprintf(img, sizeof img, "%s/" IMAGE_FILE, dir);
	if (!lstat(img, &st)) {
		wire_send_error(fd, EEXIST, "snapshot.dir", "%s holds an image already (%s): an image is never overwritten",
				dir, IMAGE_FILE);
		return EEXIST;
	}
	return 0;
}

/* Checked here, written by the VM thread, which answers when the image is
 * complete (or why not). */
static void do_snapshot(struct server *srv, int fd, const Memsrv__SnapshotRequest *req, bool *fd_taken)
{
	struct vm *vm = server_find_vm(srv, req->name);
	if (!vm) {
		wire_send_error(fd, ENOENT, "snapshot.name", "no VM named %s is attached", req->name);
		return;
	}
	if (!vm->evictable) {
		wire_send_error(fd, EOPNOTSUPP, "snapshot.name",
				"VM %s cannot be write-protected, so a consistent image of it cannot be taken: %s", vm->name,
				vm->not_evictable_reason);
		return;
	}
	for (unsigned i = 0; i < vm->n_regions; i++)
		if (vm->regions[i].fd < 0) {
			wire_send_error(fd, EOPNOTSUPP, "snapshot.name",
					"VM %s's region %u is anonymous private memory: memsrv takes images of shared "
					"memory only (a memfd)", vm->name, i);
			return;
		}
	if (req->has_remote && req->remote && !srv->remote) {
		wire_send_error(fd, EOPNOTSUPP, "snapshot.remote", "memsrv runs without a remote tier (--remote): there "
				"is no cluster to keep the image's objects in");
		return;
	}
	if (check_snapshot_dir(fd, req->dir))
		return;
	struct vm_job *job = vm_job_new(VM_JOB_SNAPSHOT);
	char *dir = strdup(req->dir);
	if (!job || !dir) {
		free(job);
		free(dir);
		wire_send_error(fd, ENOMEM, NULL, "out of memory");
		return;
	}
	job->dir = dir;
	job->remote = req->has_remote && req->remote;
	job->reply_fd = fd;
	*fd_taken = true;
	vm_post_job(vm, job);
}

bool control_peer_target(struct server *srv, int fd, const char *address, const char *field, struct peer_addr *addr)
{
	char why[256];
	if (peer_addr_parse(address, addr, why, sizeof why)) {
		wire_send_error(fd, EINVAL, field, "%s", why);
		return false;
	}
	if (!srv->peers) {  /* a server not opened by server_open(): the fuzzer's */
		wire_send_error(fd, ESHUTDOWN, NULL, "memsrv's peer thread is not running");
		return false;
	}
	return true;
}

/* Checked here, run by the peer thread, which answers when the pong is
 * back (or why not): the server thread never waits on the network. */
static void do_peer_ping(struct server *srv, int fd, const Memsrv__PeerPingRequest *req, bool *fd_taken)
{
	struct peer_addr addr;
	if (!control_peer_target(srv, fd, req->address, "peer_ping.address", &addr))
		return;
	*fd_taken = true;
	peers_post_ping(srv->peers, &addr, req->address, fd);
}

/* Passes the target on to the VMM and answers once it is sent: the VMM
 * does not reply to BalloonTarget, so there is nothing more to wait for. */
static void do_balloon(struct server *srv, int fd, const Memsrv__BalloonRequest *req)
{
	struct vm *vm = server_find_vm(srv, req->name);
	if (!vm) {
		wire_send_error(fd, ENOENT, "balloon.name", "no VM named %s is attached", req->name);
		return;
	}
	if (req->target_bytes == 0 || req->target_bytes > vm->size_bytes) {
		wire_send_error(fd, EINVAL, "balloon.target_bytes",
				"target %" PRIu64 " bytes is not within 1 to the VM's size of %" PRIu64 " bytes",
				req->target_bytes, vm->size_bytes);
		return;
	}
	if (atomic_load(&vm->balloon.answer) == VM_BALLOON_NO) {
		wire_send_error(fd, EOPNOTSUPP, "balloon.name", "VM %s's VMM has no balloon", vm->name);
		return;
	}
	Memsrv__BalloonTarget target = MEMSRV__BALLOON_TARGET__INIT;
	target.target_bytes = req->target_bytes;
	Memsrv__ServerMessage out = MEMSRV__SERVER_MESSAGE__INIT;
	out.msg_case = MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET;
	out.balloon_target = &target;
	int ret = vm_send(vm, &out);
	if (ret) {
		vm_warn(vm, "sending balloon target %" PRIu64 " bytes to the VMM failed: %s", req->target_bytes,
			strerror(-ret));
		wire_send_error(fd, -ret, NULL, "sending the balloon target to VM %s's VMM failed: %s", vm->name,
				strerror(-ret));
		return;
	}
	atomic_store_explicit(&vm->balloon.target_bytes, req->target_bytes, memory_order_relaxed);
	vm_info(vm, "balloon target %" PRIu64 " bytes (of %" PRIu64 ") sent to the VMM", req->target_bytes,
		vm->size_bytes);
	Memsrv__BalloonReply br = MEMSRV__BALLOON_REPLY__INIT;
	br.target_bytes = req->target_bytes;
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_BALLOON_REPLY;
	msg.balloon_reply = &br;
	reply(fd, &msg);
}

/* A set request was applied whole: say so, setting by setting. */
static void reply_applied(int fd, const Memsrv__SetRequest *req)
{
	Memsrv__SetReply sr = MEMSRV__SET_REPLY__INIT;
	sr.n_applied = req->n_settings;
	sr.applied = req->settings;
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_SET_REPLY;
	msg.set_reply = &sr;
	reply(fd, &msg);
}

/* memsrv-ctl set node key=value... */
static void do_set_node(struct server *srv, int fd, const Memsrv__SetRequest *req)
{
	char why[256];
	if (settings_set_node(srv, req->settings, req->n_settings, why, sizeof why)) {
		wire_send_error(fd, EINVAL, "set.settings", "%s", why);
		return;
	}
	balancer_run(srv);
	reply_applied(fd, req);
}

static void do_set(struct server *srv, int fd, const Memsrv__SetRequest *req)
{
	if (!strcmp(req->name, "node")) {
		do_set_node(srv, fd, req);
		return;
	}
	struct vm *vm = server_find_vm(srv, req->name);
	if (!vm) {
		wire_send_error(fd, ENOENT, "set.name", "no VM named %s is attached", req->name);
		return;
	}
	if (req->n_settings == 0 || req->n_settings > 16) {
		wire_send_error(fd, EINVAL, "set.settings", "give 1 to 16 settings as key=value");
		return;
	}
	char why[256];
	if (settings_set_vm(vm, req->settings, req->n_settings, why, sizeof why)) {
		wire_send_error(fd, EINVAL, "set.settings", "%s", why);
		return;
	}
	vm_post_wakeup(vm);  /* a new policy or a lower limit takes effect now */
	balancer_run(srv);
	vm_info(vm, "set codec=%s policy=%s limit=%" PRIu64 " guarantee=%" PRIu64 " shares=%u",
		codec_name((enum codec)atomic_load(&vm->codec)), atomic_load(&vm->policy_wanted)->name,
		atomic_load(&vm->quota.limit_bytes), vm->quota.guarantee_bytes, vm->quota.shares);
	reply_applied(fd, req);
}

/* memsrv-ctl check: what the configured quotas promise that the node
 * cannot keep, or that will make a VM swap. */
#define MAX_WARNINGS 256

static uint64_t host_ram_bytes(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long kb = 0;
	char line[128];
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb * 1024;
}

static void do_check(struct server *srv, int fd)
{
	static Memsrv__Warning w[MAX_WARNINGS];
	static Memsrv__Warning *wp[MAX_WARNINGS];
	static char text[MAX_WARNINGS][256];
	size_t n = 0;
#define WARN(kind_, vm_, ...)                                                   \
	do {                                                                    \
		if (n < MAX_WARNINGS) {                                         \
			memsrv__warning__init(&w[n]);                           \
			w[n].kind = (char *)(kind_);                            \
			w[n].vm = (vm_);                                        \
			snprintf(text[n], sizeof text[n], __VA_ARGS__);         \
			w[n].message = text[n];                                 \
			wp[n] = &w[n];                                          \
			n++;                                                    \
		}                                                               \
	} while (0)
	struct balance_report br;
	balancer_report(srv, &br);
	if (srv->node_limit && br.guaranteed + br.overhead > srv->node_limit)
		WARN("overcommitted-guarantees", NULL,
		     "guarantees (%" PRIu64 " MiB) plus memsrv's overhead (%" PRIu64 " MiB) exceed the node limit (%" PRIu64
		     " MiB): the node can never give them all", br.guaranteed >> 20, br.overhead >> 20, srv->node_limit >> 20);
	uint64_t ram = host_ram_bytes();
	if (srv->node_limit && ram && srv->node_limit > ram / 100 * 90)
		WARN("node-limit-above-ram", NULL,
		     "the node limit (%" PRIu64 " MiB) is above 90%% of the host's RAM (%" PRIu64 " MiB): too optimistic",
		     srv->node_limit >> 20, ram >> 20);
	for (struct vm *vm = srv->vms; vm; vm = vm->next) {
		uint64_t limit = atomic_load(&vm->quota.limit_bytes), ws = atomic_load(&vm->quota.working_set_bytes);
		if (limit && limit < vm->size_bytes)
			WARN("limit-below-size", vm->name,
			     "limit %" PRIu64 " MiB is below the VM's %" PRIu64 " MiB: it runs with a deficit it did not earn",
			     limit >> 20, vm->size_bytes >> 20);
		uint64_t poisoned = vm_count(vm, PAGE_POISONED);
		if (poisoned)
			WARN(VM_COND_PAGES_POISONED, vm->name,
			     "%" PRIu64 " pages are lost and poisoned: the guest gets a memory error on each (the cause of each "
			     "is in memsrv's log)", poisoned);
		if (br.overcommitted && ws > vm->quota.guarantee_bytes)
			WARN("guarantee-below-working-set", vm->name,
			     "guarantee %" PRIu64 " MiB is below its working set of %" PRIu64 " MiB on an overcommitted node: it will swap",
			     vm->quota.guarantee_bytes >> 20, ws >> 20);
	}
#undef WARN
	Memsrv__CheckReply cr = MEMSRV__CHECK_REPLY__INIT;
	cr.n_warnings = n;
	cr.warnings = wp;
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_CHECK_REPLY;
	msg.check_reply = &cr;
	reply(fd, &msg);
}

void control_handle(struct server *srv, int fd, const Memsrv__ClientMessage *msg, bool *fd_taken)
{
	*fd_taken = false;
	switch (msg->msg_case) {
	case MEMSRV__CLIENT_MESSAGE__MSG_LIST:
		do_list(srv, fd);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_INFO:
		do_info(srv, fd, msg->info);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_STATS:
		do_stats(srv, fd);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_EVICT:
		do_evict(srv, fd, msg->evict, fd_taken);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_BALLOON:
		do_balloon(srv, fd, msg->balloon);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_SET:
		do_set(srv, fd, msg->set);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_CHECK:
		do_check(srv, fd);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_SNAPSHOT:
		do_snapshot(srv, fd, msg->snapshot, fd_taken);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_PEER_PING:
		do_peer_ping(srv, fd, msg->peer_ping, fd_taken);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_MIGRATE:
		migrate_request(srv, fd, msg->migrate, fd_taken);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_REMOTE_GC:
		do_remote_gc(srv, fd, msg->remote_gc);
		break;
	default:
		wire_send_error(fd, EINVAL, NULL, "message %d is not a control request", msg->msg_case);
		break;
	}
}
