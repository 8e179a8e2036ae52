/* vm_state: a VM's page tables in a file, and resuming from it (vm_state.h). */
#include "vm_state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "huge_pages.h"
#include "image_pages.h"
#include "log.h"
#include "sampler.h"
#include "uffd.h"

#define HEADER_BYTES 8192
#define PROBATION_OFFSET HEADER_BYTES
#define TABLES_OFFSET (PROBATION_OFFSET + (uint64_t)SAMPLE_PAGES * 4096)

_Static_assert(sizeof(struct vm_state_header) <= HEADER_BYTES, "the header fits its page");

static void file_name(char *out, size_t len, const char *vm_name)
{
	snprintf(out, len, "vm-%s.state", vm_name);
}

uint64_t vm_state_process_start(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* field 22; the command (field 2) may hold spaces and parentheses */
	char *p = strrchr(buf, ')');
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

static int map_file(struct vm *vm)
{
	vm->persist.header = mmap(NULL, HEADER_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, vm->persist.fd, 0);
	if (vm->persist.header == MAP_FAILED) {
		vm->persist.header = NULL;
		return -errno;
	}
	vm->persist.probation = mmap(NULL, (size_t)SAMPLE_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
				   vm->persist.fd, PROBATION_OFFSET);
	if (vm->persist.probation == MAP_FAILED) {
		vm->persist.probation = NULL;
		return -errno;
	}
	return 0;
}

int vm_state_create(struct vm *vm, int dir_fd)
{
	char name[VM_NAME_MAX + 16];
	file_name(name, sizeof name, vm->name);
	vm->persist.dir_fd = dir_fd;
	vm->persist.fd = openat(dir_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (vm->persist.fd < 0)
		return -errno;
	/* every byte the mappings may write is allocated up front: a full
	 * state dir refuses an attach instead of killing memsrv with SIGBUS */
	if (fallocate(vm->persist.fd, 0, 0, (off_t)TABLES_OFFSET))
		return -errno;
	int ret = map_file(vm);
	if (ret)
		return ret;
	struct vm_state_header *h = vm->persist.header;
	snprintf(h->name, sizeof h->name, "%s", vm->name);
	h->pid = vm->pid;
	h->start_time = vm->persist.start_time;
	h->file_bytes = TABLES_OFFSET;
	h->version = VM_STATE_VERSION;
	h->magic = VM_STATE_MAGIC;  /* last: a file without it is not loaded */
	return 0;
}

void vm_state_save_settings(struct vm *vm)
{
	struct vm_state_header *h = vm->persist.header;
	if (!h)
		return;
	struct vm_state_settings *st = &h->settings;
	st->shares = vm->quota.shares;
	st->limit_bytes = atomic_load(&vm->quota.limit_bytes);
	st->guarantee_bytes = vm->quota.guarantee_bytes;
	st->codec = atomic_load(&vm->codec);
	st->balloon = atomic_load(&vm->balloon.answer);
	snprintf(st->policy, sizeof st->policy, "%s", atomic_load(&vm->policy_wanted)->name);
	st->kept = 1;
}

void vm_state_save_image(struct vm *vm)
{
	if (vm->persist.header && vm->image)
		snprintf(vm->persist.header->image_dir, sizeof vm->persist.header->image_dir, "%s", vm->image->dir);
}

void vm_state_forget_image(struct vm *vm)
{
	if (vm->persist.header) {
		vm->persist.header->image_dir[0] = 0;
		vm->persist.header->image_marks_kept = 0;
	}
}

uint64_t *vm_state_image_marks_start(struct vm *vm, unsigned shift)
{
	struct vm_state_header *h = vm->persist.header;
	if (!h)
		return NULL;
	memset(h->image_marks, 0, sizeof h->image_marks);
	h->image_mark_shift = shift;
	h->image_marks_kept = 1;
	return h->image_marks;
}

uint64_t *vm_state_image_marks_kept(struct vm *vm, unsigned *shift)
{
	struct vm_state_header *h = vm->persist.header;
	if (!h || !h->image_marks_kept)
		return NULL;
	*shift = h->image_mark_shift;
	return h->image_marks;
}

const char *vm_state_image_dir(const struct vm *vm)
{
	const struct vm_state_header *h = vm->persist.header;
	if (!h || !h->image_dir[0] || !memchr(h->image_dir, 0, sizeof h->image_dir))
		return NULL;
	return h->image_dir;
}

void vm_state_resume_settings(struct vm *vm)
{
	const struct vm_state_settings *st = &vm->persist.resume_from->persist.header->settings;
	const struct policy_ops *policy = policy_find(st->policy);
	if (st->kept != 1 || !policy || st->codec < 0 || st->codec >= CODECS || st->balloon < VM_BALLOON_UNKNOWN ||
	    st->balloon > VM_BALLOON_NO || !st->shares)
		return;  /* none recorded (or not by this memsrv): the Hello's stand */
	vm->quota.shares = st->shares;
	atomic_store(&vm->quota.limit_bytes, st->limit_bytes);
	vm->quota.guarantee_bytes = st->guarantee_bytes;
	atomic_store(&vm->codec, st->codec);
	atomic_store(&vm->balloon.answer, st->balloon);
	atomic_store(&vm->policy_wanted, policy);
}

int vm_state_add_region(struct vm *vm, struct region *r)
{
	struct vm_state_header *h = vm->persist.header;
	unsigned i = vm->n_regions;
	uint64_t npages = r->size / r->page_size;
	struct vm_state_region *sr = &h->regions[i];
	struct stat st = { 0 };
	if (r->fd >= 0 && fstat(r->fd, &st))
		return -errno;
	*sr = (struct vm_state_region){
		.host_addr = r->host_addr, .size = r->size, .fd_offset = r->fd_offset,
		.guest_phys_addr = r->guest_phys_addr, .table_offset = h->file_bytes,
		.dev = st.st_dev, .ino = st.st_ino, .page_size = r->page_size, .backing = (uint32_t)r->backing,
	};
	uint64_t parts_at = sr->table_offset + page_table_file_bytes(npages), end = parts_at;
	if (region_is_huge(r))
		end += page_table_file_bytes(r->size / HUGE_PART_BYTES);
	if (fallocate(vm->persist.fd, 0, (off_t)sr->table_offset, (off_t)(end - sr->table_offset)))
		return -errno;
	int ret = page_table_map(&r->pt, npages, vm->persist.fd, sr->table_offset);
	if (!ret && region_is_huge(r)) {
		ret = page_table_map(&r->parts, r->size / HUGE_PART_BYTES, vm->persist.fd, parts_at);
		if (ret)
			page_table_destroy(&r->pt);
	}
	if (ret)
		return ret;
	h->parts_offset[i] = region_is_huge(r) ? parts_at : 0;
	h->file_bytes = end;
	h->n_regions = i + 1;  /* last: the region is complete */
	return 0;
}

/* --- resuming ------------------------------------------------------------ */

struct reconcile {
	struct vm *vm;
	struct region *r;
	uint64_t data_lo, data_hi;  /* the fd's data run nearest the pages asked, in pages */
	int err;
};

/* Whether the fd holds page p of the region; p only grows between calls. */
static bool present(struct reconcile *rc, uint64_t p)
{
	if (p < rc->data_hi)
		return p >= rc->data_lo;
	const struct region *r = rc->r;
	off_t data = lseek(r->fd, (off_t)(r->fd_offset + p * r->page_size), SEEK_DATA);
	off_t hole = data >= 0 ? lseek(r->fd, data, SEEK_HOLE) : -1;
	if (data < 0 || hole < 0) {
		if (errno != ENXIO)
			rc->err = -errno;
		rc->data_lo = rc->data_hi = UINT64_MAX;  /* no data from here on */
		return false;
	}
	rc->data_lo = ((uint64_t)data - r->fd_offset) / r->page_size;
	rc->data_hi = ((uint64_t)hole - r->fd_offset + r->page_size - 1) / r->page_size;
	return p >= rc->data_lo && p < rc->data_hi;
}

/* The fd is the truth for what it holds; the table for the rest. */
static int reconcile_run(const struct page_table *cpt, uint64_t first, uint64_t end, void *arg)
{
	struct reconcile *rc = arg;
	struct page_table *pt = &rc->r->pt;
	(void)cpt;
	for (uint64_t p = first; p < end; p++) {
		page_entry e = pt->entries[p];
		enum page_state s = pe_state(e), from = pe_arriving_from(e);
		if (s >= PAGE_STATES || (s == PAGE_PROBATION && pe_handle(e) >= SAMPLE_PAGES))
			return -EINVAL;
		if (s == PAGE_NEVER)
			continue;  /* the scan of the fd's data afterwards */
		if (present(rc, p)) {
			/* evicted but not yet punched, or copied in but not yet
			 * noted: the VMM's copy is the live one */
			page_table_set(pt, p, pe_make(PAGE_RESIDENT, 0, 0));
			if (pe_holds_object(e))
				store_drop(rc->vm->store, (obj_id)pe_handle(e));
		} else if (s == PAGE_RESIDENT) {
			/* a copy that never went in names its content again; a
			 * resident page that is gone was discarded by the VMM */
			page_table_set(pt, p, from == PAGE_NEVER ? pe_make(PAGE_NEVER, 0, 0) : pe_make(from, 0, pe_handle(e)));
		}
		if (rc->err)
			return rc->err;
	}
	return 0;
}

static bool same_layout(const struct vm_state_region *sr, const struct region *r, const struct stat *st)
{
	return sr->host_addr == r->host_addr && sr->size == r->size && sr->fd_offset == r->fd_offset &&
	       sr->page_size == r->page_size && sr->backing == (uint32_t)r->backing &&
	       (r->fd < 0 || (sr->dev == st->st_dev && sr->ino == st->st_ino));
}

int64_t vm_state_resume_region(struct vm *vm, struct region *r, char *why, size_t whylen)
{
	/* the kept VM's file and tables are borrowed until the resume is done
	 * (vm_state_resume_done) or refused (vm_state_resume_abandon) */
	struct vm *kept = vm->persist.resume_from;
	unsigned i = vm->n_regions;
	vm->persist.dir_fd = kept->persist.dir_fd;
	vm->persist.fd = kept->persist.fd;
	vm->persist.header = kept->persist.header;
	vm->persist.probation = kept->persist.probation;
	const struct vm_state_header *h = vm->persist.header;
	struct stat st = { 0 };
	if (r->fd >= 0 && fstat(r->fd, &st))
		return -errno;
	if (i >= h->n_regions || !same_layout(&h->regions[i], r, &st)) {
		snprintf(why, whylen, "region %u is not the one memsrv kept for VM %s (address, size, offset, page size or backing file differ)",
			 i, vm->name);
		return -EINVAL;
	}
	r->pt = kept->regions[i].pt;
	r->parts = kept->regions[i].parts;
	/* an earlier attempt may have changed entries through its own copy */
	int ret = page_table_recount(&r->pt, vm->persist.fd, h->regions[i].table_offset);
	if (!ret && r->parts.entries)
		ret = page_table_recount(&r->parts, vm->persist.fd, h->parts_offset[i]);
	/* anonymous memory and huge pages: the VMM's page tables tell
	 * (vm_state_reconcile_mapped), hugetlbfs has no SEEK_DATA */
	if (ret || r->fd < 0 || r->backing == MEMSRV__BACKING__BACKING_HUGETLBFS)
		return ret ? ret : (int64_t)page_table_count(&r->pt, PAGE_RESIDENT);
	struct reconcile rc = { .vm = vm, .r = r };
	ret = page_table_each_written(&r->pt, vm->persist.fd, h->regions[i].table_offset, reconcile_run, &rc);
	if (ret) {
		snprintf(why, whylen, "the state memsrv kept for region %u of VM %s is unreadable: %s", i, vm->name,
			 strerror(-ret));
		return ret;
	}
	int64_t found = page_table_scan_allocated(&r->pt, r->fd, r->fd_offset, r->page_size);
	if (found < 0) {
		snprintf(why, whylen, "cannot read which pages region %u holds: %s", i, strerror((int)-found));
		return found;
	}
	return (int64_t)page_table_count(&r->pt, PAGE_RESIDENT);
}

void vm_state_resume_done(struct vm *vm)
{
	struct vm *kept = vm->persist.resume_from;
	memset(kept->regions, 0, sizeof kept->regions[0] * kept->n_regions);
	kept->n_regions = 0;
	kept->persist.header = NULL;
	kept->persist.probation = NULL;
	kept->persist.fd = -1;
	vm->persist.resume_from = NULL;
	vm->persist.resumed = true;
}

void vm_state_resume_abandon(struct vm *vm)
{
	if (!vm->persist.resume_from)
		return;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		memset(&vm->regions[i].pt, 0, sizeof vm->regions[i].pt);
		memset(&vm->regions[i].parts, 0, sizeof vm->regions[i].parts);
	}
	vm->persist.header = NULL;
	vm->persist.probation = NULL;
	vm->persist.fd = -1;
	vm->persist.resume_from = NULL;
}

struct adopt {
	struct vm *vm;
	struct region *r;
};

static int adopt_run(const struct page_table *pt, uint64_t first, uint64_t end, void *arg)
{
	struct adopt *a = arg;
	for (uint64_t p = first; p < end; p++)
		if (pe_state(pt->entries[p]) == PAGE_PROBATION)
			sampler_adopt(a->vm, a->r, p);
	return 0;
}

void vm_state_adopt_probation(struct vm *vm)
{
	for (unsigned i = 0; vm->persist.resumed && vm->eng.sampler && i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		struct adopt a = { vm, r };
		if (page_table_count(&r->pt, PAGE_PROBATION))
			page_table_each_written(&r->pt, vm->persist.fd, vm->persist.header->regions[i].table_offset, adopt_run, &a);
	}
}

#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)  /* by the kernel: still the VMM's */
#define PAGEMAP_BATCH 512

/* Page p of r, anonymous or huge, as the VMM maps it (present) or not.
 * The policy and the sampler have their books already (vm_start): they
 * follow. */
static void reconcile_mapped_page(struct vm *vm, struct region *r, uint64_t p, bool present)
{
	page_entry e = r->pt.entries[p];
	enum page_state s = pe_state(e), from = pe_arriving_from(e);
	if (present) {
		if (s == PAGE_RESIDENT && from == PAGE_NEVER)
			return;
		if (s != PAGE_NEVER && s != PAGE_RESIDENT && s != PAGE_STORED && s != PAGE_ZERO && s != PAGE_PROBATION)
			return;  /* poisoned: a marker, never present */
		/* never noted, evicted but not dropped, copied in but not
		 * noted, or clean (its protection goes: vm_state_wake_all) */
		page_table_set(&r->pt, p, pe_make(PAGE_RESIDENT, 0, 0));
		if (pe_holds_object(e))
			store_drop(vm->store, (obj_id)pe_handle(e));
		if (s == PAGE_PROBATION)
			sampler_drop(vm, e);
		if (s != PAGE_RESIDENT) {
			atomic_fetch_add(&vm->resident_bytes, r->page_size);
			vm_policy_resident(vm, r, p, false, false);
		}
	} else if (s == PAGE_RESIDENT) {
		/* a copy that never went in names its content again; a
		 * resident page that is gone was discarded by the VMM */
		page_table_set(&r->pt, p, from == PAGE_NEVER ? pe_make(PAGE_NEVER, 0, 0) : pe_make(from, 0, pe_handle(e)));
		atomic_fetch_sub(&vm->resident_bytes, r->page_size);
		vm_policy_gone(vm, r, p);
	}
	/* parts of a page not stored: a kept copy, or an eviction or a fault
	 * cut short (a page never stored has none: its parts are not read) */
	if (s != PAGE_NEVER && !huge_in_parts(r->pt.entries[p]))
		huge_release(vm, r, p);
}

/* The pagemap words of pages [p, p + n) of r into map (of a huge page,
 * its first part's).  0, or -1 with errno set. */
static int read_pagemap(int fd, const struct region *r, uint64_t p, uint64_t n, uint64_t *map)
{
	uint64_t words = region_is_huge(r) ? 1 : n;
	for (uint64_t k = 0; k < n; k += words) {
		off_t off = (off_t)((r->host_addr + (p + k) * r->page_size) / 4096 * sizeof map[0]);
		ssize_t got = pread(fd, map + k, words * sizeof map[0], off);
		if (got != (ssize_t)(words * sizeof map[0])) {
			if (got >= 0)
				errno = EIO;
			return -1;
		}
	}
	return 0;
}

/* Whether r's pages are reconciled with what the VMM maps. */
static bool mapped_is_truth(const struct region *r)
{
	return !r->unmapped && (r->fd < 0 || r->backing == MEMSRV__BACKING__BACKING_HUGETLBFS);
}

void vm_state_reconcile_mapped(struct vm *vm)
{
	bool any = false;
	for (unsigned i = 0; i < vm->n_regions; i++)
		any |= mapped_is_truth(&vm->regions[i]);
	if (!any)
		return;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/pagemap", (int)vm->pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		vm_warn(vm, "cannot open %s (%s): the pages it maps are as the table says", path, strerror(errno));
		return;
	}
	uint64_t map[PAGEMAP_BATCH];
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		if (!mapped_is_truth(r))
			continue;
		for (uint64_t p = 0; p < r->pt.npages; p += PAGEMAP_BATCH) {
			uint64_t n = r->pt.npages - p < PAGEMAP_BATCH ? r->pt.npages - p : PAGEMAP_BATCH;
			if (read_pagemap(fd, r, p, n, map)) {
				vm_warn(vm, "reading %s failed (%s): the rest of the pages it maps are as the table says",
					path, strerror(errno));
				close(fd);
				return;
			}
			for (uint64_t k = 0; k < n; k++)
				reconcile_mapped_page(vm, r, p + k, map[k] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED));
		}
	}
	close(fd);
}

void vm_state_wake_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		if (r->unmapped)
			continue;
		/* an eviction the dead memsrv left half done left its run protected */
		if (vm->register_modes & UFFDIO_REGISTER_MODE_WP)
			uffd_writeprotect(vm->uffd, r->host_addr, r->size, false, true);
		int ret = uffd_wake(vm->uffd, r->host_addr, r->size);
		if (ret && uffd_vmm_gone(ret))
			return;
	}
}

/* --- ending and loading ---------------------------------------------------- */

static int drop_run(const struct page_table *pt, uint64_t first, uint64_t end, void *arg)
{
	struct vm *vm = arg;
	for (uint64_t p = first; p < end; p++) {
		page_entry e = pt->entries[p];
		if (pe_holds_object(e))
			store_drop(vm->store, (obj_id)pe_handle(e));
	}
	return 0;
}

void vm_state_drop_references(struct vm *vm, struct region *r)
{
	unsigned i = (unsigned)(r - vm->regions);
	if (vm->persist.header && r->pt.entries)
		page_table_each_written(&r->pt, vm->persist.fd, vm->persist.header->regions[i].table_offset, drop_run, vm);
	if (vm->persist.header && r->parts.entries)
		page_table_each_written(&r->parts, vm->persist.fd, vm->persist.header->parts_offset[i], drop_run, vm);
}

void vm_state_remove(struct vm *vm)
{
	char name[VM_NAME_MAX + 16];
	file_name(name, sizeof name, vm->persist.header->name);
	unlinkat(vm->persist.dir_fd, name, 0);
}

void vm_state_close(struct vm *vm)
{
	if (vm->persist.header)
		munmap(vm->persist.header, HEADER_BYTES);
	if (vm->persist.probation)
		munmap(vm->persist.probation, (size_t)SAMPLE_PAGES * 4096);
	if (vm->persist.fd >= 0)
		close(vm->persist.fd);
	vm->persist.header = NULL;
	vm->persist.probation = NULL;
	vm->persist.fd = -1;
}

static int load_regions(struct vm *vm, uint64_t file_size, char *why, size_t whylen)
{
	const struct vm_state_header *h = vm->persist.header;
	uint64_t expect = TABLES_OFFSET;
	for (unsigned i = 0; i < h->n_regions; i++) {
		const struct vm_state_region *sr = &h->regions[i];
		uint32_t ps = sr->page_size;
		if (ps < 4096 || (ps & (ps - 1)) || !sr->size || sr->size % ps || sr->size > VM_MAX_BYTES ||
		    sr->table_offset != expect) {
			snprintf(why, whylen, "region %u is malformed", i);
			return -EINVAL;
		}
		uint64_t npages = sr->size / ps;
		expect += page_table_file_bytes(npages);
		uint64_t parts_at = h->parts_offset[i];
		if (parts_at && (ps == HUGE_PART_BYTES || parts_at != expect)) {
			snprintf(why, whylen, "region %u's parts table is malformed", i);
			return -EINVAL;
		}
		if (parts_at)
			expect += page_table_file_bytes(sr->size / HUGE_PART_BYTES);
		if (expect > file_size) {
			snprintf(why, whylen, "region %u's table runs past the end of the file", i);
			return -EINVAL;
		}
		struct region *r = &vm->regions[i];
		memset(r, 0, sizeof *r);
		r->host_addr = sr->host_addr;
		r->size = sr->size;
		r->fd_offset = sr->fd_offset;
		r->guest_phys_addr = sr->guest_phys_addr;
		r->page_size = ps;
		r->backing = (Memsrv__Backing)sr->backing;
		r->fd = -1;
		r->first_page = i ? vm->regions[i - 1].first_page + vm->regions[i - 1].pt.npages : 0;
		int ret = page_table_map(&r->pt, npages, vm->persist.fd, sr->table_offset);
		if (!ret && parts_at) {
			ret = page_table_map(&r->parts, sr->size / HUGE_PART_BYTES, vm->persist.fd, parts_at);
			if (ret)
				page_table_destroy(&r->pt);
		}
		if (ret) {
			snprintf(why, whylen, "cannot map region %u's table: %s", i, strerror(-ret));
			return ret;
		}
		vm->n_regions = i + 1;
		vm->size_bytes += sr->size;
	}
	return 0;
}

int vm_state_load(int dir_fd, const char *file, struct store *store, struct vm **out, char *why, size_t whylen)
{
	struct vm *vm = vm_new(store);
	if (!vm) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	vm->persist.dir_fd = dir_fd;
	vm->persist.keep = true;  /* until it is known to be garbage */
	int ret;
	struct stat st;
	vm->persist.fd = openat(dir_fd, file, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (vm->persist.fd < 0 || fstat(vm->persist.fd, &st)) {
		ret = -errno;
		snprintf(why, whylen, "cannot open it: %s", strerror(-ret));
		goto fail;
	}
	if ((uint64_t)st.st_size < TABLES_OFFSET) {
		ret = -EINVAL;
		snprintf(why, whylen, "it is too short (%lld bytes) to be a VM's state", (long long)st.st_size);
		goto fail;
	}
	ret = map_file(vm);
	if (ret) {
		snprintf(why, whylen, "cannot map it: %s", strerror(-ret));
		goto fail;
	}
	const struct vm_state_header *h = vm->persist.header;
	char expect[VM_NAME_MAX + 16];
	file_name(expect, sizeof expect, h->name);
	if (h->magic != VM_STATE_MAGIC || h->version != VM_STATE_VERSION || h->n_regions > VM_MAX_REGIONS ||
	    !memchr(h->name, 0, sizeof h->name) || strcmp(expect, file)) {
		ret = -EINVAL;
		snprintf(why, whylen, "it is not a VM state file of this memsrv version");
		goto fail;
	}
	snprintf(vm->name, sizeof vm->name, "%s", h->name);
	vm->pid = h->pid;
	vm->persist.start_time = h->start_time;
	ret = load_regions(vm, (uint64_t)st.st_size, why, whylen);
	if (ret)
		goto fail;
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);  /* persist.keep: the file stays for whoever looks into it */
	return ret;
}

struct refs {
	obj_id **refs;
	size_t *n, *cap;
};

static int refs_run(const struct page_table *pt, uint64_t first, uint64_t end, void *arg)
{
	struct refs *rs = arg;
	for (uint64_t p = first; p < end; p++) {
		page_entry e = pt->entries[p];
		if (!pe_holds_object(e))
			continue;
		if (*rs->n == *rs->cap) {
			size_t cap = *rs->cap ? *rs->cap * 2 : 4096;
			obj_id *grown = realloc(*rs->refs, cap * sizeof **rs->refs);
			if (!grown)
				return -ENOMEM;
			*rs->refs = grown;
			*rs->cap = cap;
		}
		(*rs->refs)[(*rs->n)++] = (obj_id)pe_handle(e);
	}
	return 0;
}

int vm_state_collect_refs(const struct vm *vm, obj_id **refs, size_t *n, size_t *cap)
{
	struct refs rs = { refs, n, cap };
	for (unsigned i = 0; i < vm->n_regions; i++) {
		int ret = page_table_each_written(&vm->regions[i].pt, vm->persist.fd, vm->persist.header->regions[i].table_offset,
						  refs_run, &rs);
		if (!ret && vm->regions[i].parts.entries)
			ret = page_table_each_written(&vm->regions[i].parts, vm->persist.fd,
						      vm->persist.header->parts_offset[i], refs_run, &rs);
		if (ret)
			return ret;
	}
	return 0;
}

bool vm_state_owner_alive(const struct vm *vm)
{
	return vm_state_process_start(vm->pid) == vm->persist.start_time;
}
