/* snapshot: a point-in-time image of a VM's memory, by write-protect
 * (snapshot.h says how it stays consistent while the guest runs). */
#include "snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "image.h"
#include "id_map.h"
#include "image_pages.h"
#include "log.h"
#include "remote_tier.h"
#include "sampler.h"
#include "swap_reads.h"
#include "uffd_op.h"

#define SNAP_PAGE 4096
#define SNAP_CHUNK_PAGES EVICT_RUN_PAGES  /* read, saved and unprotected at once; faults are served between */
#define SNAP_RAW_ABOVE (SNAP_PAGE / 4 * 3) /* compressed larger than this: written raw (reads need no decompression) */
#define SNAP_REMOTE_BATCH 64      /* objects sent to the cluster in one round trip and one WAIT */

/* --remote: the image names its objects, which go to the cluster under
 * the image's own references (holder), a batch at a time.  The image is
 * committed only after every batch came back from a replica. */
struct snap_remote {
	struct remote_tier *rt;
	char holder[IMAGE_NAME_MAX];
	struct remote_upload items[SNAP_REMOTE_BATCH];
	uint8_t (*values)[REMOTE_OBJECT_MAX];
	unsigned n;
	bool referenced;     /* a batch was sent: the holder may hold references */
};

struct snapshot {
	struct image_writer *w;
	uint64_t *saved;     /* a bit per page (VM-wide): its content is in the image */
	struct id_map map;   /* store objects in the image -> its index; each pinned (store_read_stored) until
			      * the end, so that it names the same content all along */
	struct id_map from_image;  /* objects of the VM's own image (index + 1) -> the new image's index */
	uint8_t *buf;        /* SNAP_CHUNK_PAGES pages read from the fd by the walk */
	uint8_t *one;        /* one page read from the fd by a hook */
	uint8_t *obj;        /* one object's bytes */
	uint8_t *plain;      /* one page decompressed, to be named (--remote) */
	struct snap_remote *remote;  /* NULL: the image holds its objects */
	int err;             /* the first failure, of the walk or of a hook */
	char why[256];
	struct snapshot_result res;
};

static bool is_saved(const struct snapshot *sn, uint64_t page)
{
	return sn->saved[page / 64] >> (page % 64) & 1;
}

static void set_saved(struct snapshot *sn, uint64_t page)
{
	sn->saved[page / 64] |= 1ull << (page % 64);
}

/* Keeps the first failure: it is what the requester is told. */
__attribute__((format(printf, 3, 4)))
static void fail(struct snapshot *sn, int err, const char *fmt, ...)
{
	if (sn->err)
		return;
	sn->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sn->why, sizeof sn->why, fmt, ap);
	va_end(ap);
}

static void unpin(uint64_t id, void *vm)
{
	store_unpin(((struct vm *)vm)->store, (obj_id)id);
}

/* Lets go of every object the image pinned (vm NULL: it pinned none). */
static void map_release(struct vm *vm, struct id_map *m)
{
	if (vm)
		id_map_each(m, unpin, vm);
	id_map_free(m);
}

static void save_word(struct snapshot *sn, uint64_t page, uint64_t word)
{
	if (!word) {
		sn->res.zero_pages++;  /* every page of an image is zero until set */
		return;
	}
	image_set_samefill(sn->w, page, word);
	sn->res.samefilled_pages++;
}

/* An object of len bytes in the image (ret: how adding it went, *index
 * where it went) names page: whether it went well. */
static bool object_added(struct snapshot *sn, uint64_t page, int ret, const uint64_t *index, uint32_t len)
{
	if (ret) {
		fail(sn, ret, "writing the image failed: %s", strerror(-ret));
		return false;
	}
	image_set_object(sn->w, page, *index);
	sn->res.objects++;
	sn->res.object_pages++;
	sn->res.data_bytes += len;
	return true;
}

/* Sends the batch of objects waiting; any that did not reach a replica
 * fails the image. */
static void remote_flush(struct snapshot *sn)
{
	struct snap_remote *rm = sn->remote;
	if (!rm || !rm->n)
		return;
	if (sn->err) {
		rm->n = 0;  /* the image will not be: nothing more to send */
		return;
	}
	rm->referenced = true;
	remote_tier_upload_as(rm->rt, rm->holder, rm->items, rm->n);
	for (unsigned i = 0; i < rm->n; i++) {
		const struct remote_upload *u = &rm->items[i];
		if (u->result) {
			fail(sn, u->result, "an object did not reach a replica in the cluster: %s",
			     u->result == -EAGAIN ? "no replica acknowledged it (WAIT)"
			     : u->result == -ENOENT ? "the cluster lost an object named by its digest"
						    : strerror(-u->result));
			break;
		}
		sn->res.remote_shared += u->shared;
		sn->res.remote_uploaded += !u->shared;
		sn->res.remote_bytes += u->shared ? 0 : u->len;
	}
	rm->n = 0;
}

/* The image names the object of digest d, which goes to the cluster: len
 * bytes of data with codec c (len CODEC_PAGE: the page raw), or, data
 * NULL, a reference only to what the cluster holds. */
static void add_named(struct snapshot *sn, uint64_t page, const struct remote_digest *d, enum codec c,
		      const void *data, uint32_t len, uint64_t *index)
{
	struct snap_remote *rm = sn->remote;
	int ret = image_add_remote(sn->w, d, index);
	if (!object_added(sn, page, ret, index, REMOTE_DIGEST_BYTES))
		return;
	struct remote_upload *u = &rm->items[rm->n];
	*u = (struct remote_upload){ .d = *d };
	if (data) {
		u->value = rm->values[rm->n];
		u->len = remote_object_encode(c, data, len, rm->values[rm->n]);
	}
	if (++rm->n == SNAP_REMOTE_BATCH)
		remote_flush(sn);
}

/* --remote: an object's len bytes (codec c; CODEC_PAGE: raw) named by the
 * SHA-256 of the page they hold. */
static void add_content_named(struct snapshot *sn, struct vm *vm, uint64_t page, enum codec c, const void *data,
			      uint32_t len, uint64_t *index)
{
	const void *plain = data;
	if (len != CODEC_PAGE) {
		if (codec_decompress(vm->eng.codec_ctx, c, data, len, sn->plain)) {
			fail(sn, -EILSEQ, "page %" PRIu64 "'s stored copy does not decompress", page);
			return;
		}
		plain = sn->plain;
	}
	struct remote_digest d;
	remote_digest_page(plain, &d);
	add_named(sn, page, &d, c, data, len, index);
}

static void add_object(struct snapshot *sn, uint64_t page, enum codec c, const void *data, uint32_t len,
		       uint64_t *index)
{
	int ret = image_add_object(sn->w, c, data, len, index);
	object_added(sn, page, ret, index, len);
}

/* An object for page in the image: written into it, or (--remote) named
 * and sent to the cluster. */
static void put_object(struct snapshot *sn, struct vm *vm, uint64_t page, enum codec c, const void *data,
		       uint32_t len, uint64_t *index)
{
	if (sn->remote)
		add_content_named(sn, vm, page, c, data, len, index);
	else
		add_object(sn, page, c, data, len, index);
}

/* A stored page: its object as the store keeps it, written once (with
 * --remote, one already in the cluster by its name only). */
static void save_stored(struct vm *vm, struct snapshot *sn, uint64_t page, obj_id id)
{
	uint64_t index;
	if (id_map_find(&sn->map, id, &index)) {
		image_set_object(sn->w, page, index);
		sn->res.object_pages++;
		return;
	}
	struct store_remote_name name;
	int ret = sn->remote ? store_pin_remote_name(vm->store, id, &name) : 0;
	if (ret == 1) {
		add_named(sn, page, &name.digest, CODEC_LZ4, NULL, 0, &index);
	} else {
		struct store_stored st;
		if (!ret)
			ret = store_read_stored(vm->store, vm->eng.codec_ctx, id, sn->obj, &st);
		if (ret) {
			fail(sn, ret, "page %" PRIu64 "'s stored copy cannot be read: %s", page, strerror(-ret));
			return;
		}
		if (st.samefilled) {
			store_unpin(vm->store, id);  /* a word is no object: nothing to map */
			save_word(sn, page, st.word);
			return;
		}
		put_object(sn, vm, page, st.codec, sn->obj, st.len, &index);
	}
	if (!sn->err && id_map_put(&sn->map, id, index))
		fail(sn, -ENOMEM, "out of memory");
	if (sn->err) {
		store_unpin(vm->store, id);
		return;
	}
	sn->res.stored_objects++;
}

/* A page still in the image the VM was resumed from: its object copied as
 * it is there (checked on the way), once. */
static void save_from_image(struct vm *vm, struct snapshot *sn, uint64_t page)
{
	char why[300];
	uint64_t value, index;
	int kind = image_pages_entry(vm, page, &value, why, sizeof why);
	if (kind < 0) {
		fail(sn, kind, "%s", why);
		return;
	}
	if (kind != IMAGE_PAGE_OBJECT) {
		save_word(sn, page, kind == IMAGE_PAGE_SAMEFILL ? value : 0);
		return;
	}
	if (id_map_find(&sn->from_image, value + 1, &index)) {
		image_set_object(sn->w, page, index);
		sn->res.object_pages++;
		return;
	}
	struct remote_digest d;
	int ret = sn->remote ? image_pages_object_name(vm, value, &d) : 0;
	if (ret == 1) {
		add_named(sn, page, &d, CODEC_LZ4, NULL, 0, &index);  /* in the cluster already, by its name */
	} else {
		uint32_t len;
		enum codec c;
		if (!ret)
			ret = image_pages_object(vm, page, value, sn->obj, &len, &c, why, sizeof why);
		else
			snprintf(why, sizeof why, "page %" PRIu64 "'s entry in the image cannot be read: %s", page,
				 strerror(-ret));
		if (ret) {
			fail(sn, ret, "%s", why);
			return;
		}
		put_object(sn, vm, page, c, sn->obj, len, &index);
	}
	if (!sn->err && id_map_put(&sn->from_image, value + 1, index))
		fail(sn, -ENOMEM, "out of memory");
}

/* A page's content as it was read: a word, or compressed with the VM's codec. */
static void save_content(struct vm *vm, struct snapshot *sn, uint64_t page, const void *data)
{
	uint64_t word, index;
	if (page_is_samefilled(data, &word)) {
		save_word(sn, page, word);
		return;
	}
	enum codec c = (enum codec)atomic_load(&vm->codec);
	const void *out;
	uint32_t len = codec_compress(vm->eng.codec_ctx, c, data, SNAP_RAW_ABOVE + 1, &out);
	if (!len) {
		len = IMAGE_RAW_LEN;
		out = data;
	}
	if (sn->remote) {
		struct remote_digest d;
		remote_digest_page(data, &d);  /* no need to decompress what was just compressed */
		add_named(sn, page, &d, c, out, len, &index);
	} else {
		add_object(sn, page, c, out, len, &index);
	}
}

/* Saves page idx of r as its entry says it is now; data: its content read
 * already if it is resident (NULL: read it here). */
static void save_page(struct vm *vm, struct snapshot *sn, struct region *r, uint64_t idx, const void *data)
{
	uint64_t page = r->first_page + idx;
	page_entry e = r->pt.entries[idx];
	switch (pe_state(e)) {
	case PAGE_NEVER:
	case PAGE_ZERO:
		save_word(sn, page, 0);
		break;
	case PAGE_STORED:
		save_stored(vm, sn, page, (obj_id)pe_handle(e));
		break;
	case PAGE_PROBATION:
		save_content(vm, sn, page, sampler_page(vm, e));
		break;
	case PAGE_IMAGE:
		save_from_image(vm, sn, page);
		break;
	case PAGE_POISONED:
		fail(sn, -EIO, "page %" PRIu64 " (guest address 0x%" PRIx64 ") was lost and is poisoned: an image "
		     "would hold something else in its place", page, r->guest_phys_addr + idx * SNAP_PAGE);
		return;
	case PAGE_RESIDENT:
	default:
		if (!data) {
			int ret = region_pread(vm, r, idx, SNAP_PAGE, sn->one);
			if (ret) {
				fail(sn, ret, "reading page %" PRIu64 " from the VM's memory failed: %s", page,
				     strerror(-ret));
				return;
			}
			data = sn->one;
		}
		save_content(vm, sn, page, data);
		break;
	}
	if (!sn->err)
		set_saved(sn, page);
}

void snapshot_before_write(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read)
{
	struct snapshot *sn = vm->eng.snapshot;
	if (is_saved(sn, r->first_page + idx))
		return;
	save_page(vm, sn, r, idx, NULL);
	uint64_t pause = monotonic_ns() - t_read;
	sn->res.writes_saved++;
	if (pause > sn->res.max_pause_ns)
		sn->res.max_pause_ns = pause;
}

void snapshot_before_fill(struct vm *vm, struct region *r, uint64_t idx)
{
	struct snapshot *sn = vm->eng.snapshot;
	if (!is_saved(sn, r->first_page + idx))
		save_page(vm, sn, r, idx, NULL);
}

void snapshot_before_unprotect(struct vm *vm, struct region *r, uint64_t first, uint64_t count)
{
	struct snapshot *sn = vm->eng.snapshot;
	for (uint64_t p = first; p < first + count; p++)
		if (!is_saved(sn, r->first_page + p) && pe_state(r->pt.entries[p]) == PAGE_RESIDENT)
			save_page(vm, sn, r, p, NULL);
}

/* Saves the pages of one chunk not saved yet, then lets the guest write them. */
static int walk_chunk(struct vm *vm, struct snapshot *sn, struct region *r, uint64_t first, uint64_t count)
{
	bool resident = false;
	for (uint64_t p = first; p < first + count; p++)
		resident |= !is_saved(sn, r->first_page + p) && pe_state(r->pt.entries[p]) == PAGE_RESIDENT;
	if (resident) {
		int ret = region_pread(vm, r, first, count * SNAP_PAGE, sn->buf);
		if (ret) {
			fail(sn, ret, "reading the VM's memory failed: %s", strerror(-ret));
			return ret;
		}
	}
	for (uint64_t p = first; p < first + count && !sn->err; p++) {
		if (is_saved(sn, r->first_page + p))
			continue;
		bool here = pe_state(r->pt.entries[p]) == PAGE_RESIDENT;
		save_page(vm, sn, r, p, here ? sn->buf + (p - first) * SNAP_PAGE : NULL);
	}
	remote_flush(sn);  /* a round trip per chunk at most: faults wait no longer */
	if (sn->err)
		return sn->err;
	int ret = uffd_op_protect_pages(vm, r, first, count, false);
	if (ret)
		fail(sn, ret, "unprotecting the VM's memory failed: %s", strerror(-ret));
	return ret;
}

/* Every page, in order, faults served between chunks. */
static int walk(struct vm *vm, struct snapshot *sn)
{
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		for (uint64_t first = 0; first < r->pt.npages; first += SNAP_CHUNK_PAGES) {
			uint64_t n = r->pt.npages - first < SNAP_CHUNK_PAGES ? r->pt.npages - first : SNAP_CHUNK_PAGES;
			if (walk_chunk(vm, sn, r, first, n))
				return sn->err;
			/* the guest runs on: its faults wait for no more than a chunk */
			fault_serve_available(vm);
			if (swap_reads_ready(vm))
				swap_reads_reap(vm);
			if (vm->thr.stopping)
				fail(sn, -ESHUTDOWN, "VM %s is going away", vm->name);
			else if (vm->eng.vmm_gone)
				fail(sn, -ESRCH, "VM %s's VMM is gone", vm->name);
			if (sn->err)
				return sn->err;
		}
	}
	return 0;
}

/* Whether every region can be write-protected and read from its fd, and
 * every page is there to be saved. */
static int check_vm(struct vm *vm, char *why, size_t len)
{
	if (vm->eng.migrate_out || vm->eng.migrate_in) {
		/* the migration's write-protection is not the image's to lift */
		snprintf(why, len, "VM %s is %s", vm->name,
			 vm->eng.migrate_out ? "migrating to another node" : "arriving from another node");
		return -EBUSY;
	}
	int ret = vm_writes_trackable(vm, "a consistent image of it cannot be taken", why, len);
	if (ret)
		return ret;
	uint64_t poisoned = vm_count(vm, PAGE_POISONED);
	if (poisoned) {
		snprintf(why, len, "VM %s holds %" PRIu64 " poisoned pages whose content is lost: an image would hold "
			 "something else in their place", vm->name, poisoned);
		return -EIO;
	}
	return 0;
}

static void layout_of(const struct vm *vm, struct image_info *info)
{
	memset(info, 0, sizeof *info);
	snprintf(info->vm_name, sizeof info->vm_name, "%s", vm->name);
	info->n_regions = vm->n_regions;
	for (unsigned i = 0; i < vm->n_regions; i++)
		info->regions[i] = (struct image_region){
			.guest_phys_addr = vm->regions[i].guest_phys_addr,
			.size = vm->regions[i].size,
			.page_size = vm->regions[i].page_size,
		};
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	info->created_unix_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static void snapshot_free(struct vm *vm, struct snapshot *sn)
{
	map_release(vm, &sn->map);
	map_release(NULL, &sn->from_image);
	free(sn->saved);
	free(sn->buf);
	free(sn->one);
	free(sn->obj);
	free(sn->plain);
	if (sn->remote)
		free(sn->remote->values);
	free(sn->remote);
	free(sn);
}

/* The name the image's references in the cluster are filed under: its own,
 * so that the image outlives this node and goes only when it is dropped. */
static int holder_name(char holder[IMAGE_NAME_MAX])
{
	uint8_t rnd[16];
	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
		return -errno;
	int n = snprintf(holder, IMAGE_NAME_MAX, "image-");
	for (unsigned i = 0; i < sizeof rnd; i++)
		n += snprintf(holder + n, IMAGE_NAME_MAX - (size_t)n, "%02x", rnd[i]);
	return 0;
}

static struct snapshot *snapshot_new(uint64_t pages, struct remote_tier *rt)
{
	struct snapshot *sn = calloc(1, sizeof *sn);
	if (!sn)
		return NULL;
	sn->saved = calloc(pages / 64 + 1, sizeof *sn->saved);
	sn->buf = malloc(SNAP_CHUNK_PAGES * SNAP_PAGE);
	sn->one = malloc(SNAP_PAGE);
	sn->obj = malloc(CODEC_PAGE);
	bool ok = sn->saved && sn->buf && sn->one && sn->obj;
	if (ok && rt) {
		sn->plain = malloc(CODEC_PAGE);
		sn->remote = calloc(1, sizeof *sn->remote);
		ok = sn->plain && sn->remote && (sn->remote->values = malloc(sizeof(*sn->remote->values) *
									      SNAP_REMOTE_BATCH)) &&
		     !holder_name(sn->remote->holder);
		if (ok)
			sn->remote->rt = rt;
	}
	if (!ok) {
		snapshot_free(NULL, sn);
		return NULL;
	}
	return sn;
}

/* A --remote image that will not be: the references its holder took go,
 * in the background (a VM thread never waits for a gc). */
static void remote_abandon(struct snapshot *sn)
{
	struct snap_remote *rm = sn->remote;
	if (rm && rm->referenced)
		remote_tier_gc_background(rm->rt, rm->holder);
}

/* Whether the cluster can be reached now: a snapshot --remote would only
 * fail later, after its VM's faults waited on the uploads. */
static int check_reachable(struct remote_tier *rt, char *why, size_t len)
{
	struct remote_tier_stats st;
	remote_tier_get_stats(rt, &st);
	if (!st.unreachable)
		return 0;
	snprintf(why, len, "the remote tier's cluster cannot be reached now (remote-unreachable)");
	return -EHOSTUNREACH;
}

/* Write-protects every region: the instant of the image.  Pages in
 * probation are saved at once (the sampler puts them back without a fill). */
static int begin(struct vm *vm, struct snapshot *sn)
{
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		int ret = uffd_op_protect_pages(vm, r, 0, r->pt.npages, true);
		if (ret) {
			fail(sn, ret, "write-protecting VM %s's memory failed: %s", vm->name, strerror(-ret));
			return ret;
		}
	}
	for (unsigned i = 0; i < vm->n_regions && !sn->err; i++) {
		struct region *r = &vm->regions[i];
		if (!page_table_count(&r->pt, PAGE_PROBATION))
			continue;
		for (uint64_t p = 0; p < r->pt.npages && !sn->err; p++)
			if (pe_state(r->pt.entries[p]) == PAGE_PROBATION)
				save_page(vm, sn, r, p, NULL);
	}
	return sn->err;
}

/* Lets the guest write every page again, whatever the walk reached. */
static void end(struct vm *vm)
{
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		int ret = uffd_op_protect_pages(vm, r, 0, r->pt.npages, false);
		if (ret && !vm->eng.vmm_gone)
			vm_err(vm, "unprotecting its memory after a snapshot failed: %s", strerror(-ret));
	}
}

static uint64_t file_size(const char *dir)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dir, IMAGE_FILE);
	return stat(path, &st) ? 0 : (uint64_t)st.st_size;
}

int snapshot_run(struct vm *vm, const char *dir, bool remote, struct snapshot_result *res, char *why, size_t len)
{
	memset(res, 0, sizeof *res);
	int ret = check_vm(vm, why, len);
	if (ret)
		return ret;
	struct remote_tier *rt = remote ? store_remote_tier(vm->store) : NULL;
	if (remote && !rt) {
		snprintf(why, len, "memsrv runs without a remote tier (--remote): there is no cluster to keep the image's "
			 "objects in");
		return -EOPNOTSUPP;
	}
	if (rt && (ret = check_reachable(rt, why, len)))
		return ret;
	struct image_info layout;
	layout_of(vm, &layout);
	struct snapshot *sn = snapshot_new(vm_total_pages(vm), rt);
	if (!sn) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	if (sn->remote)
		snprintf(layout.remote_holder, sizeof layout.remote_holder, "%s", sn->remote->holder);
	ret = image_create(dir, &layout, &sn->w, why, len);
	if (ret) {
		snapshot_free(vm, sn);
		return ret;
	}
	uint64_t t0 = monotonic_ns();
	image_pages_prepare(vm, 0, vm_total_pages(vm));  /* every entry as the image says, before the walk reads them */
	vm->eng.snapshot = sn;
	if (!begin(vm, sn))
		walk(vm, sn);
	remote_flush(sn);  /* what the hooks sent after the walk's last chunk */
	vm->eng.snapshot = NULL;
	end(vm);
	sn->res.pages = vm_total_pages(vm);
	uint64_t touched;
	const uint64_t *first = image_pages_touched(vm, &touched);
	if (!sn->err && touched && (ret = image_set_first_touch(sn->w, first, touched)))
		fail(sn, ret, "recording the pages touched first: %s", strerror(-ret));
	if (sn->err) {
		image_abort(sn->w);
		ret = sn->err;
		snprintf(why, len, "%s", sn->why);
	} else {
		ret = image_commit(sn->w, why, len);
	}
	if (ret)
		remote_abandon(sn);
	else if (sn->remote)
		snprintf(sn->res.remote_holder, sizeof sn->res.remote_holder, "%s", sn->remote->holder);
	sn->res.duration_ns = monotonic_ns() - t0;
	sn->res.file_bytes = ret ? 0 : file_size(dir);
	*res = sn->res;
	snapshot_free(vm, sn);
	return ret;
}
