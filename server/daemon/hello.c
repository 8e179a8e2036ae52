/* hello: validate a VMM's Hello and its fds, then attach the VM.
 *
 * Nothing a client sends is trusted: every field and every fd is checked,
 * and a refusal names the field at fault ("hello.regions[1].fd_offset").
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/kcmp.h>
#include <linux/magic.h>

#include "anon_drops.h"
#include "balancer.h"
#include "huge_pages.h"
#include "image_pages.h"
#include "migrate_in.h"
#include "log.h"
#include "server.h"
#include "setting_hooks.h"
#include "shmem_thp.h"
#include "uffd.h"
#include "vm_state.h"
#include "wire.h"

struct refusal {
	int err;
	char field[64];
	char text[256];
};

static int refuse(struct refusal *why, int err, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int refuse(struct refusal *why, int err, const char *field, const char *fmt, ...)
{
	why->err = err;
	snprintf(why->field, sizeof why->field, "%s", field ? field : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why->text, sizeof why->text, fmt, ap);
	va_end(ap);
	return -err;
}

/* A name starts with a letter or digit: ".", ".." and "-x" would read as
 * paths or options wherever an operator types or files them. */
static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= VM_NAME_MAX)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static Memsrv__Backing backing_of_fd(int fd)
{
	struct statfs fs;
	struct stat st;
	if (fstatfs(fd, &fs) || fstat(fd, &st) || !S_ISREG(st.st_mode))
		return MEMSRV__BACKING__BACKING_UNKNOWN;
	if (fs.f_type == TMPFS_MAGIC)
		return MEMSRV__BACKING__BACKING_MEMFD;
	if (fs.f_type == HUGETLBFS_MAGIC)
		return MEMSRV__BACKING__BACKING_HUGETLBFS;
	return MEMSRV__BACKING__BACKING_FILE;
}

static const char *backing_name(Memsrv__Backing b)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&memsrv__backing__descriptor, b);
	return v ? v->name : "?";
}

/* Checks region i and fills r; fd_used marks the fds regions refer to. */
#define FIELD(name) (snprintf(f, sizeof f, "hello.regions[%u]." name, i), f)

/* Region i's place: page size, alignment, size, the VM's total, no
 * overlap with the regions before it. */
static int check_region_layout(const Memsrv__Hello *h, unsigned i, struct refusal *why)
{
	const Memsrv__Region *src = h->regions[i];
	char f[64];
	uint32_t ps = src->page_size;
	if (ps < 4096 || (ps & (ps - 1)) || ps > (1u << 30))
		return refuse(why, EINVAL, FIELD("page_size"), "page size %u is not a power of two from 4096 to 1 GiB", ps);
	if (ps != 4096 && src->backing != MEMSRV__BACKING__BACKING_HUGETLBFS)
		return refuse(why, EINVAL, FIELD("page_size"), "page size %u: only hugetlbfs regions have pages other than 4096", ps);
	if (src->host_addr % ps || src->host_addr == 0)
		return refuse(why, EINVAL, FIELD("host_addr"), "host address 0x%" PRIx64 " is not aligned to the page size %u",
			      src->host_addr, ps);
	if (src->size == 0 || src->size % ps)
		return refuse(why, EINVAL, FIELD("size"), "size %" PRIu64 " is not a positive multiple of the page size %u",
			      src->size, ps);
	if (src->host_addr + src->size < src->host_addr)
		return refuse(why, EINVAL, FIELD("size"), "region wraps around the address space");
	uint64_t total = src->size;
	for (unsigned j = 0; j < i; j++)
		total += h->regions[j]->size;  /* each checked already: no overflow below 63 x 4 TiB */
	if (src->size > VM_MAX_BYTES || total > VM_MAX_BYTES)
		return refuse(why, EFBIG, FIELD("size"), "the VM's regions add up to more than %llu GiB, the most memsrv manages",
			      VM_MAX_BYTES >> 30);
	for (unsigned j = 0; j < i; j++) {
		const Memsrv__Region *o = h->regions[j];
		if (src->host_addr < o->host_addr + o->size && o->host_addr < src->host_addr + src->size)
			return refuse(why, EINVAL, FIELD("host_addr"), "region overlaps region %u", j);
	}
	return 0;
}

/* Region i's fd: one of those sent, of the backing declared, large
 * enough, read-write; r->fd gets it (or a dup when another region took
 * it already). */
static int check_region_fd(const Memsrv__Region *src, unsigned i, int *fds, unsigned nfds, bool *fd_used,
			   struct region *r, struct refusal *why)
{
	char f[64];
	uint32_t ps = src->page_size;
	if (!src->has_fd_index)
		return refuse(why, EINVAL, FIELD("fd_index"), "backing %s needs an fd", backing_name(src->backing));
	if (src->fd_index == 0 || src->fd_index >= nfds)
		return refuse(why, EBADF, FIELD("fd_index"), "fd index %u is not among the %u fds sent (0 is the uffd)",
			      src->fd_index, nfds);
	int fd = fds[src->fd_index];
	Memsrv__Backing actual = backing_of_fd(fd);
	if (actual == MEMSRV__BACKING__BACKING_UNKNOWN)
		return refuse(why, EBADF, FIELD("fd_index"), "fd %u is not a regular file, memfd or hugetlbfs file", src->fd_index);
	if (actual != src->backing)
		return refuse(why, EINVAL, FIELD("backing"), "declared %s but the fd is %s", backing_name(src->backing),
			      backing_name(actual));
	if (actual == MEMSRV__BACKING__BACKING_FILE)
		return refuse(why, EOPNOTSUPP, FIELD("backing"),
			      "a file on a disk filesystem cannot be served by userfaultfd (MISSING faults need anonymous, shmem or hugetlbfs memory)");
	struct stat st;
	if (fstat(fd, &st))
		return refuse(why, errno, FIELD("fd_index"), "fstat: %s", strerror(errno));
	if (actual == MEMSRV__BACKING__BACKING_HUGETLBFS && (uint32_t)st.st_blksize != ps)
		return refuse(why, EINVAL, FIELD("page_size"), "page size %u but the hugetlbfs fd has %ld-byte pages", ps,
			      (long)st.st_blksize);
	if (src->fd_offset % ps)
		return refuse(why, EINVAL, FIELD("fd_offset"), "offset %" PRIu64 " is not page aligned", src->fd_offset);
	if (src->fd_offset + src->size > (uint64_t)st.st_size || src->fd_offset + src->size < src->fd_offset)
		return refuse(why, EINVAL, FIELD("fd_offset"),
			      "region [%" PRIu64 ", +%" PRIu64 ") lies outside the fd, which holds %" PRIu64 " bytes",
			      src->fd_offset, src->size, (uint64_t)st.st_size);
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	int acc = fcntl(fd, F_GETFL);
	if (acc < 0 || (acc & O_ACCMODE) != O_RDWR)
		return refuse(why, EBADF, FIELD("fd_index"), "fd must be open read-write (memsrv reads pages and punches holes)");
	/* The same fd may back several regions: the VM owns one dup per region. */
	r->fd = fd_used[src->fd_index] ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : fd;
	if (r->fd < 0)
		return refuse(why, errno, FIELD("fd_index"), "dup: %s", strerror(errno));
	fd_used[src->fd_index] = true;
	return 0;
}

static int check_region(const Memsrv__Hello *h, unsigned i, int *fds, unsigned nfds, bool *fd_used,
			struct region *r, struct refusal *why)
{
	const Memsrv__Region *src = h->regions[i];
	char f[64];
	int ret = check_region_layout(h, i, why);
	if (ret)
		return ret;
	memset(r, 0, sizeof *r);
	r->host_addr = src->host_addr;
	r->size = src->size;
	r->page_size = src->page_size;
	r->guest_phys_addr = src->guest_phys_addr;
	r->fd_offset = src->fd_offset;
	r->backing = src->backing;
	r->fd = -1;
	if (src->backing != MEMSRV__BACKING__BACKING_ANON)
		return check_region_fd(src, i, fds, nfds, fd_used, r, why);
	if (src->has_fd_index)
		return refuse(why, EINVAL, FIELD("fd_index"), "an anonymous region has no fd");
	return 0;
}
#undef FIELD

/* Why this VM's pages cannot be evicted, or NULL if they can. */
static const char *eviction_blocker(struct vm *vm, const struct region *r)
{
	static char anon_why[160], thp_why[320];
	if (r->fd < 0)
		return anon_drops_blocker(vm, anon_why, sizeof anon_why);
	if (r->page_size > HUGE_EVICT_MAX_BYTES)
		return "its huge pages are larger than 2 MiB: a fault would bring back all of one at once";
	if (region_is_huge(r) && !r->parts.entries)
		return "its huge pages were kept by a memsrv that did not evict them (no parts table in its state file): "
		       "they are evicted once the VM attaches anew";
	const char *thp = region_is_huge(r) ? NULL : shmem_thp_blocker(vm->pid, r, thp_why, sizeof thp_why);
	if (thp)
		return thp;
	if (!(vm->register_modes & UFFDIO_REGISTER_MODE_WP) || !(vm->uffd_features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
		return "the uffd lacks write-protect mode on shmem (UFFD_FEATURE_WP_HUGETLBFS_SHMEM), without which eviction races with writes";
	return NULL;
}

static bool same_file_pages(const struct region *a, const struct region *b)
{
	return a->fd >= 0 && b->fd >= 0 && a->dev == b->dev && a->ino == b->ino &&
	       a->fd_offset < b->fd_offset + b->size && b->fd_offset < a->fd_offset + a->size;
}

static bool same_open_file(int a, int b)
{
	pid_t self = getpid();
	return syscall(SYS_kcmp, self, self, KCMP_FILE, a, b) == 0;
}

/* One page of guest RAM has one owner: two VMs (or two regions) on the
 * same pages of a file would each punch what the other serves, and two
 * VMs on one uffd would each read the other's faults. */
static int check_not_shared(struct server *srv, const struct vm *vm, int uffd, struct refusal *why)
{
	for (const struct vm *o = srv->vms; o; o = o->next) {
		if (same_open_file(uffd, o->uffd))
			return refuse(why, EBUSY, "fds[0]", "this userfaultfd is VM %s's already", o->name);
		for (unsigned i = 0; i < vm->n_regions; i++)
			for (unsigned j = 0; j < o->n_regions; j++)
				if (same_file_pages(&vm->regions[i], &o->regions[j])) {
					char f[64];
					snprintf(f, sizeof f, "hello.regions[%u].fd_index", i);
					return refuse(why, EBUSY, f, "pages of this file are VM %s's RAM already (its region %u)",
						      o->name, j);
				}
	}
	for (unsigned i = 0; i < vm->n_regions; i++)
		for (unsigned j = 0; j < i; j++)
			if (same_file_pages(&vm->regions[i], &vm->regions[j])) {
				char f[64];
				snprintf(f, sizeof f, "hello.regions[%u].fd_offset", i);
				return refuse(why, EINVAL, f, "region %u maps pages of the same file as region %u", i, j);
			}
	return 0;
}

/* Whether this Hello takes up a VM an earlier memsrv kept (state_dir.h):
 * only its own process may, and a VMM that resumes must find it there. */
static int check_resume(struct server *srv, struct conn *c, const Memsrv__Hello *h, struct vm *vm,
			struct refusal *why)
{
	vm->persist.start_time = vm_state_process_start(c->cred.pid);
	server_reap_kept(srv);
	/* alive, so its pid names the same process as when it was kept */
	struct vm *kept = server_find_kept(srv, h->name);
	if (kept && kept->pid != c->cred.pid)
		return refuse(why, EEXIST, "hello.name", "memsrv keeps VM %s's pages for its process %d, which runs on", h->name,
			      kept->pid);
	if (!kept && h->has_resume && h->resume)
		return refuse(why, ESTALE, "hello.resume",
			      "memsrv kept no state for VM %s (it runs without --state-dir, or the state was removed): the pages it held are lost",
			      h->name);
	vm->persist.resume_from = kept;  /* a VMM that attaches again without saying so resumes too: its holes are our pages */
	return 0;
}

static int check_owner(const struct vm *vm, int uffd, struct refusal *why);

/* Who says hello: the protocol version, a free and valid name, the
 * connecting process's pid. */
static int check_identity(struct server *srv, struct conn *c, const Memsrv__Hello *h, struct refusal *why)
{
	if (h->version_major != MEMSRV__VERSION__VERSION_MAJOR)
		return refuse(why, EPROTONOSUPPORT, "hello.version_major",
			      "protocol version %u.%u is not supported; this memsrv speaks %d.x", h->version_major,
			      h->version_minor, MEMSRV__VERSION__VERSION_MAJOR);
	if (!valid_name(h->name))
		return refuse(why, EINVAL, "hello.name",
			      "VM name must be 1-63 characters of [A-Za-z0-9._-], the first a letter or digit");
	if (!strcmp(h->name, "node"))
		return refuse(why, EINVAL, "hello.name", "'node' is reserved: memsrv-ctl set node ... means the node");
	if (server_find_vm(srv, h->name))
		return refuse(why, EEXIST, "hello.name", "a VM named %s is already attached", h->name);
	if ((pid_t)h->pid != c->cred.pid)
		return refuse(why, EPERM, "hello.pid", "pid %u is not the connecting process (%d)", h->pid, c->cred.pid);
	return 0;
}

/* Region i checked (check_region) and added to vm; the fd it took is
 * closed if the VM did not keep it. */
static int add_region(const Memsrv__Hello *h, unsigned i, int *fds, unsigned nfds, bool *fd_used, struct vm *vm,
		      struct refusal *why)
{
	struct region r;
	int ret = check_region(h, i, fds, nfds, fd_used, &r, why);
	if (ret)
		return ret;
	Memsrv__Backing b = r.backing;
	uint64_t need = b == MEMSRV__BACKING__BACKING_MEMFD ? UFFD_FEATURE_MISSING_SHMEM
		      : b == MEMSRV__BACKING__BACKING_HUGETLBFS ? UFFD_FEATURE_MISSING_HUGETLBFS : 0;
	char f[64], text[256];
	if ((h->uffd_features & need) != need) {
		snprintf(f, sizeof f, "hello.regions[%u].backing", i);
		ret = refuse(why, EOPNOTSUPP, f, "the uffd was opened without the feature %s needs", backing_name(b));
	} else if ((ret = vm_add_region(vm, &r, text, sizeof text))) {
		snprintf(f, sizeof f, "hello.regions[%u]", i);
		ret = refuse(why, -ret, f, "%s", text);
	}
	if (ret && r.fd >= 0 && r.fd != fds[h->regions[i]->fd_index])
		close(r.fd);
	return ret;
}

/* Hello.drop_fd_index: libmemsrv's drop thread for anonymous regions. */
static int take_drop_channel(const Memsrv__Hello *h, int *fds, unsigned nfds, bool fd_used[WIRE_MAX_FDS],
			     struct vm *vm, struct refusal *why)
{
	if (!h->has_drop_fd_index)
		return 0;
	unsigned i = h->drop_fd_index;
	if (i == 0 || i >= nfds || fd_used[i])
		return refuse(why, EBADF, "hello.drop_fd_index", "fd index %u is not among the %u fds sent, or is "
			      "another's (0 is the uffd)", i, nfds);
	int type = 0;
	socklen_t len = sizeof type;
	if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_SEQPACKET)
		return refuse(why, EBADF, "hello.drop_fd_index", "fd %u is not a SOCK_SEQPACKET socket", i);
	bool anon = false;
	for (unsigned k = 0; k < vm->n_regions; k++)
		anon |= vm->regions[k].fd < 0;
	if (!anon)
		return refuse(why, EINVAL, "hello.drop_fd_index", "a drop channel, but no region is anonymous memory");
	fd_used[i] = true;
	vm->anon.drop_sock = fds[i];
	return 0;
}

/* Every region added, every fd sent used by one. */
static int add_regions(const Memsrv__Hello *h, int *fds, unsigned nfds, struct vm *vm, struct refusal *why)
{
	bool fd_used[WIRE_MAX_FDS] = { true };  /* fds[0] is the uffd */
	for (unsigned i = 0; i < h->n_regions; i++) {
		int ret = add_region(h, i, fds, nfds, fd_used, vm, why);
		if (ret)
			return ret;
	}
	int ret = take_drop_channel(h, fds, nfds, fd_used, vm, why);
	if (ret)
		return ret;
	for (unsigned i = 1; i < nfds; i++)
		if (!fd_used[i])
			return refuse(why, EINVAL, "fds", "fd %u was sent but no region refers to it", i);
	return 0;
}

/* Which regions memsrv can evict from, and if none, why (the first
 * region's reason). */
static void decide_evictable(struct vm *vm)
{
	vm->evictable = false;
	const char *blocker = NULL;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		const char *b = eviction_blocker(vm, r);
		r->evictable = !b;
		vm->evictable |= r->evictable;
		if (b && !blocker)
			blocker = b;
	}
	if (!vm->evictable)
		snprintf(vm->not_evictable_reason, sizeof vm->not_evictable_reason, "%s", blocker);
}

/* Hello.snapshot_dir: the VM's memory is the image's (image_pages.h). */
static int attach_image(struct vm *vm, const Memsrv__Hello *h, struct refusal *why)
{
	if (vm->persist.resume_from)
		return refuse(why, EEXIST, "hello.snapshot_dir",
			      "memsrv keeps VM %s's pages from before a restart: it resumes from those, not from an image",
			      vm->name);
	char text[512];
	int64_t n = image_pages_attach(vm, h->snapshot_dir, text, sizeof text);
	if (n < 0)
		return refuse(why, (int)-n, "hello.snapshot_dir", "cannot resume VM %s from an image: %s", vm->name, text);
	return 0;
}

/* Hello.incoming: the VM's memory comes from another node (migrate_in.h). */
static int attach_incoming(struct vm *vm, const Memsrv__Hello *h, struct refusal *why)
{
	if (h->snapshot_dir)
		return refuse(why, EINVAL, "hello.incoming", "a VM's memory comes from an image or from a migration, "
			      "not both");
	if (vm->persist.resume_from)
		return refuse(why, EEXIST, "hello.incoming",
			      "memsrv keeps VM %s's pages from before a restart: it resumes from those, not from a migration",
			      vm->name);
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		if (page_table_count(&r->pt, PAGE_RESIDENT))
			return refuse(why, ENOTEMPTY, "hello.incoming", "region %u holds %" PRIu64 " pages already: a "
				      "VM whose memory comes by migration starts with empty RAM", i,
				      page_table_count(&r->pt, PAGE_RESIDENT));
		if (r->fd < 0 || !r->evictable)
			return refuse(why, EOPNOTSUPP, "hello.incoming", "region %u cannot take migrated pages: %s", i,
				      r->fd < 0 ? "anonymous memory" : vm->not_evictable_reason);
	}
	if (migrate_in_attach(vm))
		return refuse(why, ENOMEM, NULL, "out of memory");
	vm->incoming = true;
	return 0;
}

/* A VM memsrv kept across a restart whose pages still come from an image
 * opens it again.  An image that cannot be opened costs the pages still in
 * it (each poisoned when it faults), not the VM. */
static void reopen_image(struct vm *vm)
{
	const char *dir = vm_state_image_dir(vm);
	char text[512];
	if (!dir || image_pages_reopen(vm, dir, text, sizeof text) >= 0)
		return;
	uint64_t lost = image_pages_lost(vm);  /* never zeros in their place: not a log line's side effect */
	vm_err(vm, "cannot open the image its pages come from again: %s; those pages are lost (%" PRIu64
	       " not yet known to be zero with them)", text, lost);
}

static int check_hello(struct server *srv, struct conn *c, const Memsrv__Hello *h, int *fds, unsigned nfds,
		       struct vm *vm, struct refusal *why)
{
	int ret = check_identity(srv, c, h, why);
	if (!ret)
		ret = check_resume(srv, c, h, vm, why);
	if (ret)
		return ret;
	if (nfds < 1 || !uffd_is_userfaultfd(fds[0]))
		return refuse(why, EBADF, "fds[0]", "the first fd sent must be the VM's userfaultfd");
	if (h->n_regions == 0 || h->n_regions > VM_MAX_REGIONS)
		return refuse(why, EINVAL, "hello.regions", "%zu regions; 1 to %d are accepted", h->n_regions, VM_MAX_REGIONS);
	if (!(h->register_modes & UFFDIO_REGISTER_MODE_MISSING))
		return refuse(why, EINVAL, "hello.register_modes", "regions must be registered in MISSING mode");
	const char *field = NULL;
	char quota_why[256];
	if ((ret = settings_apply_hello(vm, h->quota, srv->default_codec, &field, quota_why, sizeof quota_why)))
		return refuse(why, -ret, field, "%s", quota_why);
	snprintf(vm->name, sizeof vm->name, "%s", h->name);
	vm->pid = c->cred.pid;
	vm->uffd_features = h->uffd_features;
	vm->register_modes = h->register_modes;
	if (h->has_balloon && !h->balloon)
		atomic_store(&vm->balloon.answer, VM_BALLOON_NO);  /* never asked: pressure goes to the store */
	if (vm->persist.resume_from)
		vm_state_resume_settings(vm);  /* as memsrv-ctl set left them, not as at attach */
	if (!vm->persist.resume_from && srv->state.dir_fd >= 0 && (ret = vm_state_create(vm, srv->state.dir_fd)))
		return refuse(why, -ret, NULL, "cannot create the VM's state file in %s: %s", srv->state.path, strerror(-ret));
	if ((ret = add_regions(h, fds, nfds, vm, why)) || (ret = check_not_shared(srv, vm, fds[0], why)))
		return ret;
	if (vm->persist.resume_from && vm->n_regions != vm->persist.header->n_regions)
		return refuse(why, EINVAL, "hello.regions", "%u regions, but memsrv kept %u for VM %s", vm->n_regions,
			      vm->persist.header->n_regions, vm->name);
	decide_evictable(vm);
	if ((ret = check_owner(vm, fds[0], why)))
		return ret;
	if (h->has_incoming && h->incoming)
		return attach_incoming(vm, h, why);
	if (h->snapshot_dir)
		return attach_image(vm, h, why);
	if (vm->persist.resume_from)
		reopen_image(vm);
	return 0;
}

/* ---- whose memory it is ----
 *
 * A Hello passes fds, and fds can come from anywhere: a memfd another
 * process maps, a uffd another process registered.  memsrv would then
 * serve one process's faults from another's pages, or punch holes in
 * memory that no fault of this VM asks back, and report it all under the
 * attaching pid.  So each region must be the attaching process's own
 * mapping of the fd it sent (its /proc/PID/smaps: the range maps that
 * dev/inode at that offset, without a gap), registered there with a
 * userfaultfd for missing faults (VmFlags "um"), and the uffd sent must be
 * the one registered there: with write-protect mode, un-protecting the
 * region's first page (a no-op on memory nobody protected) fails with
 * ENOENT when the uffd's own process has no such registration. */

struct mapping {
	uint64_t start, end, offset, ino;
	unsigned dev_major, dev_minor;
	bool uffd_missing;
};

/* One VMA of smaps: its header line, then its fields up to VmFlags.
 * 1 for a mapping, 0 at the end, -errno. */
static int read_mapping(FILE *f, struct mapping *m)
{
	char line[512];
	bool have = false;
	while (fgets(line, sizeof line, f)) {
		unsigned long long start, end, offset, ino;
		unsigned maj, min;
		char perms[8];
		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms, &offset, &maj, &min, &ino) == 7) {
			*m = (struct mapping){ start, end, offset, ino, maj, min, false };
			have = true;
		} else if (have && !strncmp(line, "VmFlags:", 8)) {
			m->uffd_missing = strstr(line, " um") != NULL;
			return 1;
		}
	}
	return ferror(f) ? -EIO : 0;
}

/* Checks region r of the VM against the mappings of its process. */
static int check_region_owner(FILE *smaps, const struct vm *vm, unsigned i, const struct region *r,
			      struct refusal *why)
{
	char f[64];
	snprintf(f, sizeof f, "hello.regions[%u].host_addr", i);
	struct stat st = { 0 };
	if (r->fd >= 0 && fstat(r->fd, &st))
		return refuse(why, errno, f, "fstat: %s", strerror(errno));
	rewind(smaps);
	uint64_t at = r->host_addr, end = r->host_addr + r->size;
	struct mapping m = { 0 };
	int ret = 0;
	while (at < end && (ret = read_mapping(smaps, &m)) == 1) {
		if (m.end <= at)
			continue;
		if (m.start > at)
			break;  /* a hole in the region */
		bool same = r->fd < 0 ? m.ino == 0
				      : m.ino == st.st_ino && m.dev_major == major(st.st_dev) && m.dev_minor == minor(st.st_dev) &&
					m.offset + (at - m.start) == r->fd_offset + (at - r->host_addr);
		if (!same)
			return refuse(why, EPERM, f,
				      "pid %d does not map the region's %s at 0x%" PRIx64 " (it maps inode %" PRIu64 " at offset %" PRIu64 " there): memsrv serves a process's own memory only",
				      vm->pid, r->fd < 0 ? "anonymous memory" : "fd", at, m.ino, m.offset + (at - m.start));
		if (!m.uffd_missing)
			return refuse(why, EPERM, "fds[0]",
				      "pid %d's memory at 0x%" PRIx64 " (region %u) is not registered with a userfaultfd for missing faults",
				      vm->pid, at, i);
		at = m.end;
	}
	if (ret < 0)
		return refuse(why, -ret, "hello.pid", "cannot read pid %d's mappings: %s", vm->pid, strerror(-ret));
	if (at < end)
		return refuse(why, EPERM, f, "pid %d maps nothing at 0x%" PRIx64 " (region %u): memsrv serves a process's own memory only",
			      vm->pid, at, i);
	return 0;
}

/* With write-protect mode: whether the uffd's own process registered the
 * region's first page (ENOENT: it did not, so the uffd is another's). */
static int check_uffd_owner(int uffd, const struct vm *vm, unsigned i, const struct region *r, struct refusal *why)
{
	struct uffdio_writeprotect wp = { .range = { r->host_addr, r->page_size }, .mode = 0 };
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0 || errno != ENOENT)
		return 0;
	return refuse(why, EPERM, "fds[0]",
		      "the userfaultfd is not the one pid %d registered its memory with (region %u at 0x%" PRIx64 "): memsrv serves a process's own memory only",
		      vm->pid, i, r->host_addr);
}

static int check_owner(const struct vm *vm, int uffd, struct refusal *why)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/smaps", (int)vm->pid);
	FILE *smaps = fopen(path, "re");
	if (!smaps && (errno == EACCES || errno == EPERM)) {
		/* memsrv without the right to read another uid's maps: it
		 * cannot tell, and says so rather than refuse every VM */
		pr_warn_ratelimited("vm=%s: cannot verify that pid %d's regions are its own memory (%s: %s)", vm->name,
				    vm->pid, path, strerror(errno));
		return 0;
	}
	if (!smaps)
		return refuse(why, errno == ENOENT ? ESRCH : errno, "hello.pid", "cannot read pid %d's mappings: %s", vm->pid,
			      strerror(errno));
	int ret = 0;
	for (unsigned i = 0; i < vm->n_regions && !ret; i++)
		ret = check_region_owner(smaps, vm, i, &vm->regions[i], why);
	fclose(smaps);
	/* not on a resume: the memsrv that died may have left pages protected */
	bool wp = (vm->register_modes & UFFDIO_REGISTER_MODE_WP) && !vm->persist.resume_from;
	for (unsigned i = 0; i < vm->n_regions && !ret && wp; i++)
		ret = check_uffd_owner(uffd, vm, i, &vm->regions[i], why);
	return ret;
}

/* Which of the fds sent the VM's regions kept (fds[0], the uffd, is not
 * among them: its fate is the caller's). */
static void find_kept(const struct vm *vm, const int *fds, unsigned nfds, bool kept[WIRE_MAX_FDS])
{
	for (unsigned k = 0; k < WIRE_MAX_FDS; k++)
		kept[k] = false;
	for (unsigned i = 0; i < vm->n_regions; i++)
		for (unsigned k = 1; k < nfds; k++)
			if (vm->regions[i].fd == fds[k])
				kept[k] = true;
	for (unsigned k = 1; k < nfds; k++)
		if (vm->anon.drop_sock == fds[k])
			kept[k] = true;
}

int hello_accept(struct server *srv, struct conn *c, const Memsrv__Hello *h, int *fds, unsigned nfds)
{
	struct refusal why = { 0 };
	struct vm *vm = vm_new(srv->store);
	if (!vm || balancer_reserve(srv)) {
		vm_destroy(vm);
		wire_close_fds(fds, nfds);
		wire_send_error(c->fd, ENOMEM, NULL, "out of memory");
		return -ENOMEM;
	}
	int ret = check_hello(srv, c, h, fds, nfds, vm, &why);
	/* the VM now owns the fds its regions kept; the rest are closed */
	bool kept[WIRE_MAX_FDS];
	find_kept(vm, fds, nfds, kept);
	if (!ret) {
		vm->uffd = fds[0];
		kept[0] = true;
		int fl = fcntl(vm->uffd, F_GETFL);
		if (fl < 0 || fcntl(vm->uffd, F_SETFL, fl | O_NONBLOCK))
			ret = refuse(&why, errno, "fds[0]", "cannot make the uffd non-blocking: %s", strerror(errno));
	}
	for (unsigned k = 0; k < nfds; k++)
		if (!kept[k])
			close(fds[k]);
	if (!ret) {
		vm->id = ++srv->next_vm_id;
		vm->session_fd = c->fd;
		session_out_watch(&vm->out, srv->epoll_fd, c);  /* what the VMM does not read yet waits there */
		struct vm *earlier = vm->persist.resume_from;
		if (earlier) {
			vm_state_resume_done(vm);
			server_release_kept(srv, earlier, false);
		}
		vm_state_save_settings(vm);
		ret = vm_start(vm);
		if (ret) {
			refuse(&why, -ret, NULL, "cannot start the VM thread: %s", strerror(-ret));
			vm->persist.keep = vm->persist.resumed;  /* its pages are still only there */
		}
	}
	if (ret) {
		vm_state_resume_abandon(vm);
		pr_warn_ratelimited("refused VM %.*s from pid %d: %s%s%s", LOG_CLIENT_STR_MAX, h->name, c->cred.pid,
				    why.field[0] ? why.field : "", why.field[0] ? ": " : "", why.text);
		wire_send_error(c->fd, why.err, why.field[0] ? why.field : NULL, "%s", why.text);
		vm->session_fd = -1;
		vm_destroy(vm);
		return ret;
	}
	Memsrv__HelloReply hr = MEMSRV__HELLO_REPLY__INIT;
	hr.version_major = MEMSRV__VERSION__VERSION_MAJOR;
	hr.version_minor = MEMSRV__VERSION__VERSION_MINOR;
	hr.vm_id = vm->id;
	hr.size_bytes = vm->size_bytes;
	hr.resident_bytes = ctr_get(&vm->resident_bytes);
	hr.limit_bytes = vm->quota.limit_bytes;
	hr.evictable = vm->evictable;
	hr.not_evictable_reason = vm->evictable ? NULL : vm->not_evictable_reason;
	hr.has_resumed = 1;
	hr.resumed = vm->persist.resumed;
	hr.has_image_pages = h->snapshot_dir != NULL;
	hr.image_pages = image_pages_remaining(vm);
	Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
	msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY;
	msg.hello_reply = &hr;
	vm_send(vm, &msg);
	vm_info(vm, "%s: pid %d, %u regions, %" PRIu64 " MiB, %" PRIu64 " MiB resident, limit %" PRIu64
		" MiB%s%s", vm->persist.resumed ? "resumed" : "attached", vm->pid, vm->n_regions,
		vm->size_bytes >> 20, hr.resident_bytes >> 20, vm->quota.limit_bytes >> 20,
		vm->evictable ? "" : ", not evictable: ", vm->evictable ? "" : vm->not_evictable_reason);
	c->vm = vm;
	vm->next = srv->vms;
	srv->vms = vm;
	srv->sessions_total++;
	return 0;
}

/* hello_accept()'s checks without a session: for the fuzzer and tests. */
int hello_validate(struct server *srv, struct conn *c, const Memsrv__Hello *h, int *fds, unsigned nfds)
{
	struct refusal why = { 0 };
	struct vm *vm = vm_new(srv->store);
	if (!vm) {
		wire_close_fds(fds, nfds);
		return -ENOMEM;
	}
	int ret = check_hello(srv, c, h, fds, nfds, vm, &why);
	/* as hello_accept(): the fds the VM's regions kept go with it */
	bool kept[WIRE_MAX_FDS];
	find_kept(vm, fds, nfds, kept);
	for (unsigned k = 0; k < nfds; k++)
		if (!kept[k])
			close(fds[k]);
	vm_state_resume_abandon(vm);
	vm_destroy(vm);
	return ret;
}
