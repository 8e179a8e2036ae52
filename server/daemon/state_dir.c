/* state_dir: the directory memsrv keeps its crash-proof state in (state_dir.h). */
#include "state_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "log.h"
#include "vm_state.h"

#define OBJECTS_FILE "store.objects"
#define DIGESTS_FILE "store.digests"  /* the remote tier's names of its objects */
#define REMOTE_NODE_FILE "remote.node"  /* the node id they are referenced under */
#define POOL_FILE "store.pool"
#define SWAP_FILE "swap.files"
#define NODE_LIMIT_FILE "node.limit"

static int mkdir_p(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	for (char *p = dir + 1;; p++) {
		if (*p && *p != '/')
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(dir, 0700) && errno != EEXIST)
			return -errno;
		if (!c)
			return 0;
		*p = c;
	}
}

static int state_dir_open_locked(struct state_dir *sd, const char *path, char *why, size_t whylen);

int state_dir_open(struct state_dir *sd, const char *path, char *why, size_t whylen)
{
	int ret = state_dir_open_locked(sd, path, why, whylen);
	if (ret)
		state_dir_close(sd, false);  /* never touch what another memsrv may own */
	return ret;
}

void state_dir_none(struct state_dir *sd)
{
	memset(sd, 0, sizeof *sd);
	sd->dir_fd = sd->lock_fd = sd->objects_fd = sd->pool_fd = sd->digests_fd = -1;
}

static int state_dir_open_locked(struct state_dir *sd, const char *path, char *why, size_t whylen)
{
	state_dir_none(sd);
	snprintf(sd->path, sizeof sd->path, "%s", path);
	int ret = mkdir_p(path);
	if (ret) {
		snprintf(why, whylen, "cannot create %s: %s", path, strerror(-ret));
		return ret;
	}
	sd->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	sd->lock_fd = sd->dir_fd >= 0 ? openat(sd->dir_fd, "memsrv.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
	if (sd->lock_fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "cannot open %s: %s", path, strerror(-ret));
		return ret;
	}
	if (flock(sd->lock_fd, LOCK_EX | LOCK_NB)) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(why, whylen, "%s is in use by another memsrv", path);
		return ret;
	}
	struct statfs fs;
	if (fstatfs(sd->dir_fd, &fs) == 0 && fs.f_type != TMPFS_MAGIC)
		pr_warn("state dir %s is not on tmpfs: the compressed cache and page tables will be written back to disk", path);
	sd->objects_fd = openat(sd->dir_fd, OBJECTS_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	sd->pool_fd = openat(sd->dir_fd, POOL_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	sd->digests_fd = openat(sd->dir_fd, DIGESTS_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (sd->objects_fd < 0 || sd->pool_fd < 0 || sd->digests_fd < 0) {
		ret = -errno;
		snprintf(why, whylen, "cannot open the store's files in %s: %s", path, strerror(-ret));
		return ret;
	}
	return 0;
}

/* The directory's entries from the start: dir_fd's offset, shared with
 * every dup of it, may stand anywhere after an earlier listing. */
static DIR *list_dir(const struct state_dir *sd)
{
	int fd = dup(sd->dir_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d && fd >= 0)
		close(fd);
	if (d)
		rewinddir(d);
	return d;
}

static bool is_vm_state(const char *name)
{
	size_t n = strlen(name);
	return n > 9 && !strncmp(name, "vm-", 3) && !strcmp(name + n - 6, ".state");
}

/* The swap files in order, as swapfile_describe() gives them. */
static void describe_swap(const struct swapfile *swap, char *out, size_t len)
{
	size_t used = 0;
	out[0] = 0;
	for (unsigned i = 0; swap && i < swapfile_count(swap) && used < len; i++) {
		swapfile_describe(swap, i, out + used, len - used);
		used += strlen(out + used);
	}
}

/* Swap locs name a file by its place among the files and a unit: the
 * files must be the ones the kept state was written with. */
static int check_swap(struct state_dir *sd, const struct swapfile *swap, bool have_vms, char *why, size_t whylen)
{
	static char was[16384], now[16384];
	describe_swap(swap, now, sizeof now);
	int fd = openat(sd->dir_fd, SWAP_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, whylen, "cannot open %s/%s: %s", sd->path, SWAP_FILE, strerror(errno));
		return -errno;
	}
	ssize_t n = pread(fd, was, sizeof was - 1, 0);
	was[n > 0 ? n : 0] = 0;
	int ret = 0;
	if (have_vms && n > 0 && strcmp(was, now)) {
		snprintf(why, whylen, "the swap files are not those the kept VMs' pages went to; start memsrv with the same --swap and --swap-dir options, in the same order (they were:\n%s)",
			 was);
		ret = -EINVAL;
	} else if ((size_t)n != strlen(now) || strcmp(was, now)) {
		if (ftruncate(fd, 0) || pwrite(fd, now, strlen(now), 0) != (ssize_t)strlen(now))
			ret = -errno;
		if (ret)
			snprintf(why, whylen, "cannot write %s/%s: %s", sd->path, SWAP_FILE, strerror(-ret));
	}
	close(fd);
	return ret;
}

int state_dir_load(struct state_dir *sd, struct store *store, const struct swapfile *swap, struct vm **kept,
		   char *why, size_t whylen)
{
	*kept = NULL;
	DIR *d = list_dir(sd);
	if (!d) {
		snprintf(why, whylen, "cannot read %s: %s", sd->path, strerror(errno));
		return -errno;
	}
	obj_id *refs = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;
	for (struct dirent *e; !ret && (e = readdir(d));) {
		if (!is_vm_state(e->d_name))
			continue;
		struct vm *vm;
		char bad[256];
		int err = vm_state_load(sd->dir_fd, e->d_name, store, &vm, bad, sizeof bad);
		if (err) {
			char aside[NAME_MAX + 16];
			snprintf(aside, sizeof aside, "%s.unreadable", e->d_name);
			pr_err("state dir %s: %s: %s; renamed %s", sd->path, e->d_name, bad, aside);
			renameat(sd->dir_fd, e->d_name, sd->dir_fd, aside);
			continue;
		}
		vm->next = *kept;
		*kept = vm;
		ret = vm_state_collect_refs(vm, &refs, &n, &cap);
	}
	closedir(d);
	if (!ret && (ret = check_swap(sd, swap, *kept != NULL, why, whylen))) {
		free(refs);
		return ret;
	}
	if (!ret && !*kept && (ftruncate(sd->objects_fd, 0) || ftruncate(sd->pool_fd, 0) ||
			       ftruncate(sd->digests_fd, 0)))
		ret = -errno;  /* nothing to resume: whatever the store held is garbage */
	if (!ret)
		ret = store_restore(store, refs, n);
	free(refs);
	if (ret)
		snprintf(why, whylen, "the store in %s does not hold what the VMs' page tables name (%s): nothing in it can be trusted",
			 sd->path, strerror(-ret));
	return ret;
}

bool state_dir_holds_vms(const struct state_dir *sd)
{
	DIR *d = list_dir(sd);
	if (!d)
		return true;  /* cannot tell: keep everything */
	bool found = false;
	for (struct dirent *e; !found && (e = readdir(d));)
		found = is_vm_state(e->d_name);
	closedir(d);
	return found;
}

void state_dir_close(struct state_dir *sd, bool discard)
{
	if (discard && sd->dir_fd >= 0) {
		unlinkat(sd->dir_fd, OBJECTS_FILE, 0);
		unlinkat(sd->dir_fd, DIGESTS_FILE, 0);
		unlinkat(sd->dir_fd, REMOTE_NODE_FILE, 0);
		unlinkat(sd->dir_fd, POOL_FILE, 0);
		unlinkat(sd->dir_fd, SWAP_FILE, 0);
		unlinkat(sd->dir_fd, NODE_LIMIT_FILE, 0);
	}
	if (sd->objects_fd >= 0)
		close(sd->objects_fd);
	if (sd->digests_fd >= 0)
		close(sd->digests_fd);
	if (sd->pool_fd >= 0)
		close(sd->pool_fd);
	if (sd->lock_fd >= 0)
		close(sd->lock_fd);  /* releases the lock */
	if (sd->dir_fd >= 0)
		close(sd->dir_fd);
	sd->dir_fd = sd->lock_fd = sd->objects_fd = sd->pool_fd = sd->digests_fd = -1;
}

int state_dir_remote_node(const struct state_dir *sd, const char *id, char *why, size_t len)
{
	char was[128] = "";
	int fd = openat(sd->dir_fd, REMOTE_NODE_FILE, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, was, sizeof was - 1) : 0;
	if (fd >= 0)
		close(fd);
	was[n > 0 ? n : 0] = 0;
	was[strcspn(was, "\n")] = 0;
	if (*was && strcmp(was, id) && state_dir_holds_vms(sd)) {
		snprintf(why, len, "its VMs' pages in the cluster are referenced by node id '%s', not '%s': start with "
			 "--node-id %s", was, id, was);
		return -EINVAL;
	}
	fd = openat(sd->dir_fd, REMOTE_NODE_FILE ".new", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	bool ok = fd >= 0 && dprintf(fd, "%s\n", id) > 0;
	if (fd >= 0)
		close(fd);
	if (!ok || renameat(sd->dir_fd, REMOTE_NODE_FILE ".new", sd->dir_fd, REMOTE_NODE_FILE)) {
		snprintf(why, len, "cannot keep the node id in %s: %s", sd->path, strerror(errno));
		return -errno;
	}
	return 0;
}

/* "CONFIGURED SET\n": the limit memsrv was started with, and the one
 * memsrv-ctl set gave it; written whole to a new file, then renamed. */
void state_dir_save_node_limit(const struct state_dir *sd, uint64_t configured, uint64_t limit)
{
	if (sd->dir_fd < 0)
		return;
	char text[64];
	int len = snprintf(text, sizeof text, "%" PRIu64 " %" PRIu64 "\n", configured, limit);
	int fd = openat(sd->dir_fd, NODE_LIMIT_FILE ".new", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	bool ok = fd >= 0 && write(fd, text, (size_t)len) == len;
	if (fd >= 0)
		close(fd);
	if (!ok || renameat(sd->dir_fd, NODE_LIMIT_FILE ".new", sd->dir_fd, NODE_LIMIT_FILE))
		pr_warn("state dir %s: cannot keep the node limit (%s): a restarted memsrv starts with %" PRIu64 " bytes",
			sd->path, strerror(errno), configured);
}

bool state_dir_node_limit(const struct state_dir *sd, uint64_t configured, uint64_t *limit)
{
	char text[64] = "";
	int fd = sd->dir_fd >= 0 ? openat(sd->dir_fd, NODE_LIMIT_FILE, O_RDONLY | O_CLOEXEC) : -1;
	ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
	if (fd >= 0)
		close(fd);
	unsigned long long was, set;
	if (n <= 0 || sscanf(text, "%llu %llu", &was, &set) != 2 || was != configured)
		return false;  /* none kept, or memsrv was started with another limit: that one stands */
	*limit = set;
	return true;
}
