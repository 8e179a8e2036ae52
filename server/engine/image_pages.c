/* image_pages: a VM's pages from the image it was resumed from. */
#include "image_pages.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/file.h>

#include "fault.h"
#include "log.h"
#include "remote_tier.h"
#include "swap_reads.h"

#define IMAGE_PAGE_BYTES 4096
#define FILL_SCAN_PAGES 4096  /* entries the fill looks at in one batch, installed or not */
#define NAMED_SYNC_MS 2000    /* a synchronous read of a named object (the slow paths) gives up then */

/* Whether the image describes vm's layout and (fresh) its regions are empty. */
static int check_layout(const struct vm *vm, const struct image_info *info, const char *dir, bool fresh, char *why,
			size_t len)
{
	if (info->n_regions != vm->n_regions) {
		snprintf(why, len, "the image in %s has %u regions, the VM %u", dir, info->n_regions, vm->n_regions);
		return -EINVAL;
	}
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		const struct image_region *ir = &info->regions[i];
		if (ir->size != r->size || ir->page_size != r->page_size || ir->guest_phys_addr != r->guest_phys_addr) {
			snprintf(why, len, "region %u is %" PRIu64 " bytes of %u-byte pages at guest address 0x%" PRIx64
				 ", the image in %s has %" PRIu64 " bytes of %u-byte pages at 0x%" PRIx64, i, r->size,
				 r->page_size, r->guest_phys_addr, dir, ir->size, ir->page_size, ir->guest_phys_addr);
			return -EINVAL;
		}
		if (r->page_size != IMAGE_PAGE_BYTES) {
			snprintf(why, len, "region %u has %u-byte pages: a resume from an image places 4 KiB pages only",
				 i, r->page_size);
			return -EOPNOTSUPP;
		}
		if (fresh && page_table_count(&r->pt, PAGE_RESIDENT)) {
			snprintf(why, len, "region %u holds %" PRIu64 " pages already: a VM resumed from an image starts "
				 "with empty RAM", i, page_table_count(&r->pt, PAGE_RESIDENT));
			return -EEXIST;
		}
	}
	return 0;
}

/* The image's first-touch list seeds this resume's record: what was
 * installed from it is not seen faulting, yet it is the working set. */
static int seed_touched(struct vm_image *im, uint64_t pages)
{
	uint64_t n;
	const uint64_t *ft = image_first_touch(im->img, &n);
	im->touched_cap = n + 1024 < IMAGE_RECORD_MAX ? n + 1024 : n > IMAGE_RECORD_MAX ? n : IMAGE_RECORD_MAX;
	im->touched = malloc(im->touched_cap * sizeof *im->touched);
	im->touched_bits = calloc(pages / 64 + 1, sizeof *im->touched_bits);
	if (!im->touched || !im->touched_bits)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = le64toh(ft[i]);
		if (im->touched_bits[p / 64] >> (p % 64) & 1)
			continue;
		im->touched_bits[p / 64] |= 1ull << (p % 64);
		im->touched[im->n_touched++] = p;
	}
	im->ft_count = im->n_touched;
	return 0;
}

static void vm_image_free(struct vm_image *im)
{
	if (im->img)
		image_close(im->img);  /* the lock goes with the fd */
	free(im->marks_own);
	id_map_free(&im->ft_pos);
	free(im->touched);
	free(im->touched_bits);
	free(im);
}

/* Units of at least a table chunk (image.h), few enough for a state file
 * to keep their bitmap. */
static unsigned unit_shift_for(uint64_t pages)
{
	unsigned shift = 0;
	while ((pages >> shift) / IMAGE_CHUNK_PAGES >= VM_STATE_IMAGE_MARK_BITS)
		shift++;
	return shift;
}

static bool unit_marked(const struct vm_image *im, uint64_t u)
{
	return im->marks[u / 64] >> (u % 64) & 1;
}

/* The image's pages not zero in unit u, as its chunks say. */
static uint64_t unit_held(const struct vm_image *im, uint64_t u)
{
	uint64_t n = 0, per = 1ull << im->unit_shift;
	for (uint64_t c = u * per / IMAGE_CHUNK_PAGES; c < (u + 1) * per / IMAGE_CHUNK_PAGES; c++)
		n += image_chunk_held(im->img, c);
	return n;
}

static uint64_t units_of(uint64_t pages, unsigned shift)
{
	unsigned unit_shift = shift + __builtin_ctz(IMAGE_CHUNK_PAGES);
	return (pages + (1ull << unit_shift) - 1) >> unit_shift;
}

/* Sets up the units of vm's image and their marks: the state file's,
 * cleared (fresh) or as it kept them, or the VM's own.  0 or -ENOMEM. */
static int units_init(struct vm *vm, struct vm_image *im, bool fresh)
{
	uint64_t pages = image_get_info(im->img)->pages;
	unsigned shift = unit_shift_for(pages);
	bool all_marked = false;
	if (fresh) {
		im->marks = vm_state_image_marks_start(vm, shift);
	} else {
		im->marks = vm_state_image_marks_kept(vm, &shift);
		all_marked = !im->marks;  /* the file kept none: its memsrv marked every page at attach */
		if (im->marks && units_of(pages, shift) > VM_STATE_IMAGE_MARK_BITS) {
			/* not a file memsrv wrote: every unit marked again (a page discarded may come
			 * back as the image has it; none is taken for zeros) */
			im->marks = NULL;
			shift = unit_shift_for(pages);
		}
	}
	im->unit_shift = shift + __builtin_ctz(IMAGE_CHUNK_PAGES);
	im->units = units_of(pages, shift);
	if (!im->marks) {
		im->marks = im->marks_own = calloc(im->units / 64 + 1, sizeof *im->marks);
		if (!im->marks_own)
			return -ENOMEM;
		if (all_marked)
			memset(im->marks_own, 0xff, (im->units / 64 + 1) * sizeof *im->marks);
	}
	uint64_t held = 0;
	for (uint64_t u = 0; u < im->units; u++)
		if (unit_marked(im, u))
			im->units_marked++;
		else
			held += unit_held(im, u);
	atomic_store(&im->unmarked_held, held);
	im->all_marked = im->units_marked == im->units;
	return 0;
}

/* Opens dir's image for vm, checked and locked against removal. */
static int vm_image_open(struct vm *vm, const char *dir, bool fresh, struct vm_image **out, char *why, size_t len)
{
	if (dir[0] != '/' || strlen(dir) >= IMAGE_DIR_MAX) {
		snprintf(why, len, "%.64s: the image's directory must be an absolute path shorter than %d bytes", dir,
			 IMAGE_DIR_MAX);
		return -EINVAL;
	}
	struct vm_image *im = calloc(1, sizeof *im);
	if (!im)
		return -ENOMEM;
	snprintf(im->dir, sizeof im->dir, "%s", dir);
	int ret = image_open(dir, &im->img, why, len);
	if (!ret)
		ret = check_layout(vm, image_get_info(im->img), dir, fresh, why, len);
	const char *holder = ret ? "" : image_get_info(im->img)->remote_holder;
	im->named = holder[0];
	if (im->named && !store_remote_tier(vm->store)) {
		ret = -EOPNOTSUPP;
		snprintf(why, len, "the image in %s keeps its pages in a Redis Cluster (under %s): memsrv runs without "
			 "--remote", dir, holder);
	}
	if (!ret && flock(image_fd(im->img), LOCK_SH | LOCK_NB)) {
		ret = -errno;
		snprintf(why, len, "%s/%s is locked by its remover: %s", dir, IMAGE_FILE, strerror(errno));
	}
	if (!ret && ((ret = seed_touched(im, image_get_info(im->img)->pages)) || (ret = units_init(vm, im, fresh))))
		snprintf(why, len, "out of memory");
	if (ret) {
		vm_image_free(im);
		return ret;
	}
	*out = im;
	return 0;
}

int64_t image_pages_attach(struct vm *vm, const char *dir, char *why, size_t len)
{
	struct vm_image *im;
	int ret = vm_image_open(vm, dir, true, &im, why, len);
	if (ret)
		return ret;
	vm->image = im;
	if (im->named)
		im->fill = IMAGE_FILL_MARK;  /* installs nothing: the pages are reads of the network */
	vm_state_save_image(vm);  /* before any entry names the image: a memsrv killed now finds it */
	im->record_until_ns = monotonic_ns() + IMAGE_RECORD_NS;
	return (int64_t)image_pages_remaining(vm);
}

int64_t image_pages_reopen(struct vm *vm, const char *dir, char *why, size_t len)
{
	struct vm_image *im;
	int ret = vm_image_open(vm, dir, false, &im, why, len);
	if (ret)
		return ret;
	im->fill = IMAGE_FILL_MARK;
	im->restarted = true;
	vm->image = im;
	return (int64_t)image_pages_remaining(vm);
}

uint64_t image_pages_lost(struct vm *vm)
{
	unsigned shift;
	const uint64_t *marks = vm_state_image_marks_kept(vm, &shift);
	if (!marks)
		return 0;
	/* which of their pages the image held is in its table, unread: any may have */
	uint64_t unit_pages = (uint64_t)IMAGE_CHUNK_PAGES << shift, lost = 0;
	const page_entry from_image = pe_make(PAGE_IMAGE, 0, 0);
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		for (uint64_t p = 0; p < r->pt.npages; p++) {
			uint64_t u = (r->first_page + p) / unit_pages;
			if (u < VM_STATE_IMAGE_MARK_BITS && marks[u / 64] >> (u % 64) & 1)
				continue;
			if (pe_state(r->pt.entries[p]) == PAGE_NEVER) {
				page_table_set(&r->pt, p, from_image);
				lost++;
			}
		}
	}
	return lost;
}

uint64_t image_pages_remaining(const struct vm *vm)
{
	const struct vm_image *im = vm->image;
	if (!im)
		return vm_count(vm, PAGE_IMAGE);
	/* a reading taken while a unit is marked would count it twice, as
	 * not marked and as IMAGE: such a reading is taken again (a seqlock;
	 * a unit is marked in microseconds) */
	uint64_t n = 0;
	for (int tries = 0; tries < 10000; tries++) {
		uint64_t seq = atomic_load_explicit(&im->marking, memory_order_acquire);
		n = vm_count(vm, PAGE_IMAGE) + atomic_load_explicit(&im->unmarked_held, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (!(seq & 1) && atomic_load_explicit(&im->marking, memory_order_relaxed) == seq)
			break;
		sched_yield();
	}
	return n;
}

/* Unit u's pages into the VM's table as the image says: the
 * ones not zero become PAGE_IMAGE where never touched (a fault, discard or
 * restore prepares its unit before it touches an entry, so all are).  A
 * page whose table chunk fails is the image's too: it is poisoned when it
 * faults, never taken for zeros. */
static void mark_unit(struct vm *vm, uint64_t u)
{
	struct vm_image *im = vm->image;
	uint64_t first = u << im->unit_shift, end = first + (1ull << im->unit_shift), total = vm_total_pages(vm);
	const page_entry from_image = pe_make(PAGE_IMAGE, 0, 0);
	bool failed = false;
	if (end > total)
		end = total;
	/* image_pages_remaining() reads no count until the unit is done */
	uint64_t seq = atomic_load_explicit(&im->marking, memory_order_relaxed);
	atomic_store_explicit(&im->marking, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	for (uint64_t p = first; p < end;) {
		struct region *r = vm_region_of_page(vm, p);
		uint64_t stop = r->first_page + r->pt.npages < end ? r->first_page + r->pt.npages : end;
		for (; p < stop; p++) {
			uint64_t value;
			int kind = image_page(im->img, p, &value);
			failed |= kind < 0;
			if (kind != IMAGE_PAGE_ZERO && pe_state(r->pt.entries[p - r->first_page]) == PAGE_NEVER)
				page_table_set(&r->pt, p - r->first_page, from_image);
		}
	}
	if (failed)
		vm_err(vm, "the page table of the image in %s cannot be read for pages %" PRIu64 " to %" PRIu64
		       ": they are lost (each poisoned when touched)", im->dir, first, end - 1);
	im->marks[u / 64] |= 1ull << (u % 64);  /* after the entries: a restart marks it again, not less */
	atomic_fetch_sub_explicit(&im->unmarked_held, unit_held(im, u), memory_order_relaxed);
	atomic_store_explicit(&im->marking, seq + 2, memory_order_release);
	im->all_marked = ++im->units_marked == im->units;
}

void image_pages_mark(struct vm *vm, uint64_t first, uint64_t n)
{
	struct vm_image *im = vm->image;
	for (uint64_t u = first >> im->unit_shift; u < im->units && (u << im->unit_shift) < first + n; u++)
		if (!unit_marked(im, u))
			mark_unit(vm, u);
}

void image_pages_release(struct vm *vm)
{
	if (vm->image)
		vm_image_free(vm->image);
	vm->image = NULL;
}

int image_pages_decode(struct vm *vm, uint64_t index, bool named, const void *buf, int res, void *page)
{
	if (!vm->image->img)
		return IMAGE_ERR_NOT_OPEN;  /* its page was discarded meanwhile, the last one the image held */
	if (named) {
		/* the remote tier checked it against its name */
		if (res < 0)
			return res;
		if (res != IMAGE_PAGE_BYTES)
			return -ENODATA;
		memcpy(page, buf, IMAGE_PAGE_BYTES);
		return 0;
	}
	uint64_t off;
	uint32_t len;
	enum codec c;
	int ret = image_object_loc(vm->image->img, index, &off, &len, &c);
	if (ret)
		return ret;
	if (res < 0)
		return res;
	if ((uint32_t)res < len)
		return -ENODATA;  /* the file shrank under it */
	return image_decode(vm->image->img, vm->eng.codec_ctx, index, buf, len, page);
}

int image_pages_object_name(struct vm *vm, uint64_t index, struct remote_digest *d)
{
	if (!vm->image || !vm->image->img)
		return IMAGE_ERR_NOT_OPEN;
	return vm->image->named ? image_object_remote(vm->image->img, index, d) : 0;
}

int image_pages_named(struct vm *vm, uint64_t page, uint64_t *index, struct remote_digest *d)
{
	struct vm_image *im = vm->image;
	if (!im || !im->img || !im->named || image_page(im->img, page, index) != IMAGE_PAGE_OBJECT)
		return 0;
	return image_pages_object_name(vm, *index, d);
}

/* Object index, a name, read from the cluster into page: 0 or -errno. */
static int read_named(struct vm *vm, uint64_t index, void *page)
{
	struct remote_digest d;
	int ret = image_object_remote(vm->image->img, index, &d);
	if (ret < 0)
		return ret;
	if (!ret)
		return -EBADMSG;  /* cannot happen: the image said it is a name */
	ret = remote_tier_read_sync(store_remote_tier(vm->store), &d, page, NAMED_SYNC_MS);
	return ret < 0 ? ret : ret == IMAGE_PAGE_BYTES ? 0 : -ENODATA;
}

int image_pages_read(struct vm *vm, uint64_t page, void *buf)
{
	if (!vm->image || !vm->image->img)
		return IMAGE_ERR_NOT_OPEN;
	int ret = image_read_page(vm->image->img, vm->eng.codec_ctx, page, buf);
	uint64_t index;
	if (ret == -EREMOTE && image_page(vm->image->img, page, &index) == IMAGE_PAGE_OBJECT)
		ret = read_named(vm, index, buf);
	return ret;
}

int image_pages_entry(struct vm *vm, uint64_t page, uint64_t *value, char *why, size_t len)
{
	if (!vm->image || !vm->image->img) {
		/* a memsrv restarted could not open it again: the page is lost */
		snprintf(why, len, "page %" PRIu64 " is in an image memsrv could not open again", page);
		return -EIO;
	}
	int kind = image_page(vm->image->img, page, value);
	if (kind < 0)
		snprintf(why, len, "page %" PRIu64 "'s entry in the image in %s cannot be read: %s", page, vm->image->dir,
			 kind == -EBADMSG ? "its page table is corrupt" : strerror(-kind));
	return kind;
}

int image_pages_object(struct vm *vm, uint64_t page, uint64_t index, void *buf, uint32_t *len, enum codec *c,
		       char *why, size_t whylen)
{
	int ret = image_read_object(vm->image->img, index, buf, len, c);
	if (ret == -EREMOTE && !(ret = read_named(vm, index, buf)))
		*len = IMAGE_RAW_LEN;
	if (ret)
		snprintf(why, whylen, "page %" PRIu64 " cannot be read from the image in %s: %s", page, vm->image->dir,
			 ret == -EBADMSG ? "corrupt (checksum mismatch, or truncated)" : strerror(-ret));
	return ret;
}

int image_pages_fill(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read, bool *deferred,
		     bool *read_failed)
{
	*read_failed = false;
	struct vm_image *im = vm->image;
	if (!im || !im->img) {
		/* a table that says IMAGE with no image to read: never zeros */
		*read_failed = true;
		return IMAGE_ERR_NOT_OPEN;
	}
	if (deferred && swap_reads_pending(vm, r, idx)) {
		*deferred = true;  /* a read for this page is on its way: it wakes every waiter */
		return 0;
	}
	evict_make_room(vm, r->page_size);
	uint64_t page = r->first_page + idx, value;
	if (image_page(im->img, page, &value) == IMAGE_PAGE_OBJECT && deferred) {
		struct swap_io io = { .fd = image_fd(im->img) };
		struct remote_digest d;
		enum codec c;
		int named = image_pages_object_name(vm, value, &d);
		if ((named == 1 || (!named && image_object_loc(im->img, value, &io.offset, &io.len, &c) == 0)) &&
		    swap_reads_submit_image(vm, r, idx, t_read, value, &io, named == 1 ? &d : NULL) == 0) {
			*deferred = true;
			if (named == 1)
				swap_reads_readahead(vm, r, idx);  /* a network round trip per page: streams read ahead */
			return 0;
		}
	}
	int ret = image_pages_read(vm, page, vm->eng.page_buf);
	if (ret) {
		*read_failed = true;  /* the page stays IMAGE: tried again or poisoned, never zeros */
		return ret;
	}
	return fault_place_held(vm, r, idx, vm->eng.page_buf, vm->eng.fault_write);
}

void image_pages_faulted(struct vm *vm, uint64_t page)
{
	struct vm_image *im = vm->image;
	uint64_t at;
	if (!im)
		return;
	if (im->fill == IMAGE_FILL_FIRST_TOUCH && id_map_find(&im->ft_pos, page + 1, &at) && at >= im->ft_next) {
		im->ft_jumped |= at > im->ft_next;
		im->ft_next = at + 1;
	}
	if (im->touched_bits[page / 64] >> (page % 64) & 1 || monotonic_ns() > im->record_until_ns)
		return;
	if (im->n_touched == im->touched_cap) {
		if (im->touched_cap >= IMAGE_RECORD_MAX)
			return;
		uint64_t cap = im->touched_cap * 2 < IMAGE_RECORD_MAX ? im->touched_cap * 2 : IMAGE_RECORD_MAX;
		uint64_t *t = realloc(im->touched, cap * sizeof *t);
		if (!t)
			return;  /* a shorter record: the next resume installs less first */
		im->touched = t;
		im->touched_cap = cap;
	}
	im->touched_bits[page / 64] |= 1ull << (page % 64);
	im->touched[im->n_touched++] = page;
}

const uint64_t *image_pages_touched(const struct vm *vm, uint64_t *n)
{
	*n = vm->image ? vm->image->n_touched : 0;
	return vm->image ? vm->image->touched : NULL;
}

/* Whether one more page fits under the VM's limit without evicting: the
 * background never pushes a page out to put another in. */
static bool room_for_one(const struct vm *vm)
{
	uint64_t limit = vm_limit(vm);
	return !limit || ctr_get(&vm->resident_bytes) + IMAGE_PAGE_BYTES <= limit;
}

/* Reads page (VM-wide) into page_buf if it is still to come from the image
 * and no fault's read of it is on its way: 1 read (*r, *idx: where it
 * goes), 0 nothing to do, or -errno (it stays IMAGE: a fault will try
 * again and say why). */
static int read_if_still_in_image(struct vm *vm, uint64_t page, struct region **r, uint64_t *idx)
{
	*r = vm_region_of_page(vm, page);
	if (!*r)
		return 0;
	*idx = page - (*r)->first_page;
	if (pe_state((*r)->pt.entries[*idx]) != PAGE_IMAGE || swap_reads_pending(vm, *r, *idx))
		return 0;
	int ret = image_pages_read(vm, page, vm->eng.page_buf);
	return ret ? ret : 1;
}

/* Installs page (VM-wide) if it is still to come from the image: 1
 * installed, 0 nothing to do, or -errno. */
static int install(struct vm *vm, uint64_t page)
{
	struct region *r;
	uint64_t idx;
	int ret = read_if_still_in_image(vm, page, &r, &idx);
	if (ret == 1 && !(ret = fault_place_held(vm, r, idx, vm->eng.page_buf, true))) {
		vm->image->installed++;
		ret = 1;
	}
	return ret;
}

void image_pages_tick(struct vm *vm)
{
	struct vm_image *im = vm->image;
	if (!im || !im->img || !im->all_marked || vm_count(vm, PAGE_IMAGE))
		return;
	/* nothing more comes from it: let it go (memsrv-image rm may remove it now) */
	image_close(im->img);
	im->img = NULL;
	im->fill = IMAGE_FILL_DONE;
	vm_state_forget_image(vm);
	vm_info(vm, "every page of the image in %s is read: closed", im->dir);
}

/* Moves page (VM-wide) from the image into the store, if it is still to
 * come from the image: one copy for every clone (the store shares identical
 * pages), in memory for its fault.  1 moved, 0 nothing to do, or -errno
 * (the store has no room, or the image fails: it stays IMAGE). */
static int stash(struct vm *vm, uint64_t page)
{
	struct region *r;
	uint64_t idx;
	int ret = read_if_still_in_image(vm, page, &r, &idx);
	if (ret != 1)
		return ret;
	obj_id id;
	struct store_put_info info;
	ret = store_put(vm->store, vm->eng.codec_ctx, (enum codec)atomic_load(&vm->codec), vm->eng.page_buf, &id, &info);
	if (ret)
		return ret;
	page_table_set(&r->pt, idx, pe_make(PAGE_STORED, 0, id));
	vm->image->stashed++;
	return 1;
}

/* Whether a fault waits: the background gives way after the page in hand
 * (a batch of 64 in one go held a guest faulting page by page to ~1400
 * faults a second). */
static bool fault_waiting(const struct vm *vm)
{
	return vm->eng.pending_len || fault_uffd_ready(vm);
}

bool image_background_enabled = true;

bool image_pages_busy(const struct vm *vm)
{
	const struct vm_image *im = vm->image;
	return image_background_enabled && im && im->img && im->fill != IMAGE_FILL_DONE;
}

/* The first-touch list is left to the faults from here on. */
static void first_touch_stop(struct vm_image *im)
{
	im->ft_next = im->ft_count;
	im->ft_again = true;
}

/* Installs a batch of the first-touch list, from where the guest's faults
 * left it; the entries they skipped get a second pass.  Whether it is done. */
static bool install_first_touch(struct vm *vm)
{
	struct vm_image *im = vm->image;
	uint64_t done = 0;
	if (!vm_can_evict(vm))
		first_touch_stop(im);  /* no eviction to hold it in check */
	if (!im->ft_pos_built && im->ft_next < im->ft_count) {
		/* the list's places, for the install to follow the guest's faults:
		 * built here, not at Hello (a few ms for 100 k pages); without
		 * memory for them the install goes on in order */
		im->ft_pos_built = true;
		if (!id_map_reserve(&im->ft_pos, im->ft_count))
			for (uint64_t i = 0; i < im->ft_count; i++)
				id_map_put(&im->ft_pos, im->touched[i] + 1, i);
		return false;
	}
	if (im->ft_next == im->ft_count && im->ft_jumped && !im->ft_again) {
		im->ft_again = true;
		im->ft_next = 0;
	}
	while (im->ft_next < im->ft_count && done < IMAGE_BATCH_PAGES) {
		if (!room_for_one(vm)) {
			first_touch_stop(im);  /* the working set does not fit */
			break;
		}
		uint64_t page = im->touched[im->ft_next++];
		image_pages_prepare(vm, page, 1);
		int ret = install(vm, page);
		if (ret < 0)
			first_touch_stop(im);  /* the image fails: faults will say how */
		done += ret > 0;
		if (ret > 0 && fault_waiting(vm))
			return false;
	}
	return im->ft_next == im->ft_count && (!im->ft_jumped || im->ft_again);
}

/* Marks a unit no fault marked yet: whether every one is. */
static bool mark_next_unit(struct vm *vm)
{
	struct vm_image *im = vm->image;
	while (im->mark_next < im->units && unit_marked(im, im->mark_next))
		im->mark_next++;
	if (im->mark_next < im->units)
		mark_unit(vm, im->mark_next++);
	return im->all_marked;
}

/* Moves a batch into the store: whether it is done (*full: for want of room). */
static bool stash_some(struct vm *vm, bool *full)
{
	struct vm_image *im = vm->image;
	uint64_t total = vm_total_pages(vm), scanned = 0, done = 0;
	if (!vm_can_evict(vm))
		return true;  /* nothing would ever leave the store for its faults */
	while (im->fill_next < total && done < IMAGE_BATCH_PAGES && scanned++ < FILL_SCAN_PAGES) {
		int ret = store_has_spare_room(vm->store) ? stash(vm, im->fill_next) : -ENOSPC;
		if (ret == -ENOSPC || ret == -EBUSY) {
			*full = true;  /* the rest comes from the image when it faults */
			return true;
		}
		im->fill_next++;  /* a page the image fails for stays IMAGE: its fault says why */
		done += ret > 0;
		if (ret > 0 && fault_waiting(vm))
			return false;
	}
	return im->fill_next == total;
}

void image_pages_background(struct vm *vm)
{
	struct vm_image *im = vm->image;
	if (!image_pages_busy(vm))
		return;
	if (vm->eng.vmm_gone || vm->eng.detaching || vm->thr.stopping) {
		im->fill = IMAGE_FILL_DONE;  /* nothing to install into */
		return;
	}
	vm->eng.fault_page = UINT64_MAX;  /* no page installed here was used yet */
	bool full = false;
	switch (im->fill) {
	case IMAGE_FILL_FIRST_TOUCH:
		if (install_first_touch(vm))
			im->fill = IMAGE_FILL_MARK;
		return;
	case IMAGE_FILL_MARK:
		if (mark_next_unit(vm))
			im->fill = im->restarted || im->named ? IMAGE_FILL_DONE : IMAGE_FILL_STASH;
		return;
	case IMAGE_FILL_STASH:
		if (!stash_some(vm, &full))
			return;
		break;
	case IMAGE_FILL_DONE:
		return;
	}
	im->fill = IMAGE_FILL_DONE;
	vm_info(vm, "resume from %s: %" PRIu64 " pages installed, %" PRIu64 " put into the store in the background%s",
		im->dir, im->installed, im->stashed, full ? "; the store has no room for the rest" : "");
}
