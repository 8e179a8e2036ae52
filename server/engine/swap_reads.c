/* swap_reads: asynchronous swap-ins for a VM's faults. */
#include "swap_reads.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <liburing.h>

#include "fault.h"
#include "huge_pages.h"
#include "image_pages.h"
#include "log.h"
#include "poison.h"
#include "prefetch_window.h"
#include "uffd.h"
#include "uffd_op.h"

#define READS 32           /* reads in flight per VM */

struct swap_read {
	bool busy;
	bool waiting_retry;
	struct region *r;
	uint64_t idx;
	uint64_t t_read;
	bool write;              /* the fault that asked was a write: not placed clean */
	uint64_t retry_at;
	unsigned failures;
	bool image;              /* of the VM's image (image_pages.c), not of the store */
	bool ahead;              /* a readahead's: no fault asked for it (yet) */
	uint64_t image_index;    /* image: the object read */
	struct store_read rd;    /* image: only rd.io */
};

struct swap_reads {
	struct io_uring ring;
	int efd;
	unsigned busy;
	unsigned ahead;           /* of which readaheads no fault joined */
	uint8_t *bufs;  /* READS pages, page aligned for O_DIRECT */
	struct swap_read slot[READS];
};

int swap_reads_init(struct vm *vm)
{
	struct swap_reads *sr = calloc(1, sizeof *sr);
	if (!sr)
		return -ENOMEM;
	sr->efd = -1;
	sr->bufs = aligned_alloc(CODEC_PAGE, (size_t)READS * CODEC_PAGE);
	int ret = sr->bufs ? io_uring_queue_init(READS, &sr->ring, 0) : -ENOMEM;
	if (!ret) {
		sr->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ret = sr->efd < 0 ? -errno : io_uring_register_eventfd(&sr->ring, sr->efd);
		if (ret) {
			io_uring_queue_exit(&sr->ring);
			if (sr->efd >= 0)
				close(sr->efd);
		}
	}
	if (ret) {
		free(sr->bufs);
		free(sr);
		return ret;
	}
	vm->eng.reads = sr;
	return 0;
}

int swap_reads_fd(const struct vm *vm)
{
	return vm->eng.reads ? vm->eng.reads->efd : -1;
}

bool swap_reads_pending(const struct vm *vm, const struct region *r, uint64_t idx)
{
	const struct swap_reads *sr = vm->eng.reads;
	for (unsigned i = 0; sr && sr->busy && i < READS; i++)
		if (sr->slot[i].busy && sr->slot[i].r == r && sr->slot[i].idx == idx)
			return true;
	return false;
}

bool swap_reads_join(struct vm *vm, const struct region *r, uint64_t idx, uint64_t t_read, bool write)
{
	struct swap_reads *sr = vm->eng.reads;
	for (unsigned i = 0; sr && sr->busy && i < READS; i++) {
		struct swap_read *s = &sr->slot[i];
		if (!s->busy || s->r != r || s->idx != idx)
			continue;
		if (s->ahead) {
			/* a fault waits on it now: timed from this fault */
			s->ahead = false;
			sr->ahead--;
			s->t_read = t_read;
		}
		s->write |= write;
		return true;
	}
	return false;
}

static int submit(struct vm *vm, struct swap_reads *sr, unsigned i)
{
	struct swap_read *s = &sr->slot[i];
	if (s->rd.remote)  /* the cluster's thread posts the completion to this ring */
		return store_read_submit_remote(vm->store, &s->rd, sr->bufs + (size_t)i * CODEC_PAGE, sr->ring.ring_fd, i);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sr->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, s->rd.io.fd, sr->bufs + (size_t)i * CODEC_PAGE, s->rd.io.len, s->rd.io.offset);
	io_uring_sqe_set_data64(sqe, i);
	int ret = io_uring_submit(&sr->ring);
	return ret < 0 ? ret : 0;
}

static void finish(struct vm *vm, unsigned i, int res);

/* Takes a free slot for a read (waiting for one if all are busy) and
 * submits it.  0 or -EBUSY/-errno. */
static int start(struct vm *vm, const struct swap_read *want)
{
	struct swap_reads *sr = vm->eng.reads;
	if (!sr)
		return -EBUSY;
	/* every slot in flight: the oldest read will be done soonest, wait for one */
	while (sr->busy == READS) {
		unsigned waiting = 0;
		for (unsigned i = 0; i < READS; i++)
			waiting += sr->slot[i].waiting_retry;
		if (waiting == READS)
			return -EBUSY;  /* all of them failed and wait for their retry */
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&sr->ring, &cqe))
			return -EBUSY;
		unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&sr->ring, cqe);
		finish(vm, i, res);
	}
	unsigned i = 0;
	while (sr->slot[i].busy)
		i++;
	sr->slot[i] = *want;
	sr->slot[i].busy = true;
	int ret = submit(vm, sr, i);
	if (ret) {
		sr->slot[i].busy = false;
		return ret;
	}
	sr->busy++;
	sr->ahead += want->ahead;
	return 0;
}

void swap_reads_readahead(struct vm *vm, struct region *r, uint64_t idx)
{
	struct swap_reads *sr = vm->eng.reads;
	if (!sr || region_is_huge(r) || !r->evictable)
		return;
	uint64_t want = prefetch_window_on_fault(&vm->eng.stream_next, &vm->eng.stream_window, r->first_page + idx,
						 r->page_size);
	want = prefetch_window_clip(want, idx, r->pt.npages);
	if (!want || evict_make_room(vm, want * r->page_size))
		return;  /* no stream, or at the limit with nothing to give: the guest's own faults decide */
	uint64_t n = 0;
	/* half the reads at most, and never all: a fault's own read never waits for one */
	for (; n < want && sr->ahead < READS / 2 && sr->busy < READS - 1; n++) {
		uint64_t j = idx + 1 + n;
		page_entry e = r->pt.entries[j];
		struct store_peek k;
		if (pe_state(e) == PAGE_IMAGE) {
			/* a resumed VM's page named in the cluster (snapshot --remote) */
			struct swap_read s = { .r = r, .idx = j, .t_read = monotonic_ns(), .ahead = true, .image = true,
					       .rd = { .remote = true } };
			if (swap_reads_pending(vm, r, j) ||
			    image_pages_named(vm, r->first_page + j, &s.image_index, &s.rd.digest) != 1 || start(vm, &s))
				break;
			continue;
		}
		if (pe_state(e) != PAGE_STORED || huge_in_parts(e) || swap_reads_pending(vm, r, j))
			break;
		/* without the lock: an object in the cluster stays there while a
		 * page names it */
		store_peek(vm->store, (obj_id)pe_handle(e), &k);
		if (k.tier != TIER_REMOTE)
			break;  /* the run of pages in the cluster ends */
		struct store_read rd;
		if (store_fetch(vm->store, vm->eng.codec_ctx, (obj_id)pe_handle(e), vm->eng.page_buf, &rd) != 1)
			break;
		if (start(vm, &(struct swap_read){ .r = r, .idx = j, .t_read = monotonic_ns(), .ahead = true, .rd = rd })) {
			store_read_end(vm->store, vm->eng.codec_ctx, &rd, NULL, -ECANCELED, vm->eng.page_buf);
			break;
		}
	}
	prefetch_window_placed(&vm->eng.stream_next, n);  /* the stream goes on after them */
}

int swap_reads_submit(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read, bool write,
		      const struct store_read *rd)
{
	return start(vm, &(struct swap_read){ .r = r, .idx = idx, .t_read = t_read, .write = write, .rd = *rd });
}

int swap_reads_submit_image(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read, uint64_t index,
			    const struct swap_io *io, const struct remote_digest *named)
{
	struct swap_read s = { .r = r, .idx = idx, .t_read = t_read, .image = true, .image_index = index };
	if (named)
		s.rd = (struct store_read){ .remote = true, .digest = *named };
	else
		s.rd.io = *io;
	return start(vm, &s);
}

/* Whether page s->idx is still the one read: the VMM may have discarded
 * it (a resync applied its REMOVE) while the read or a retry was on its way. */
static bool still_wanted(const struct swap_read *s)
{
	page_entry e = s->r->pt.entries[s->idx];
	if (s->image)
		return pe_state(e) == PAGE_IMAGE;
	return pe_state(e) == PAGE_STORED && (obj_id)pe_handle(e) == s->rd.id;
}

/* A page read from swap, to place (uffd_op_run): arg is one. */
struct placing {
	const struct swap_read *s;
	const void *page;
};

static int place(struct vm *vm, void *arg)
{
	const struct placing *p = arg;
	return fault_place_held(vm, p->s->r, p->s->idx, p->page, p->s->write);
}

static bool still_this_read(struct vm *vm, void *arg)
{
	(void)vm;
	return still_wanted(((const struct placing *)arg)->s);
}

/* A read came in whole: place the page if it is still the one asked for. */
static void complete(struct vm *vm, struct swap_read *s, const void *page)
{
	struct region *r = s->r;
	uint64_t addr = r->host_addr + s->idx * r->page_size;
	struct placing p = { .s = s, .page = page };
	static const struct uffd_op op = { .run = place, .wanted = still_this_read };
	enum uffd_outcome o;
	int ret = 0;
	for (unsigned tries = 1;; tries++) {
		o = still_this_read(vm, &p) ? uffd_op_run(vm, &op, &p, &ret) : UFFD_DISCARDED;
		if (o == UFFD_PLACED && s->ahead) {
			ctr_add(&vm->ctr.prefetched_pages, 1);  /* no fault asked for it: none is counted */
			return;
		}
		if (o == UFFD_PLACED) {
			fault_record(vm, s->image ? FAULT_FROM_IMAGE : s->rd.remote ? FAULT_FROM_REMOTE : FAULT_FROM_SWAP, s->t_read);
			return;
		}
		if (o == UFFD_DISCARDED || s->ahead || !poison_worth_retry(vm, ret) || tries >= POISON_TRIES)
			break;
		poison_pause(tries);
	}
	if (o == UFFD_DISCARDED) {
		/* let the waiters fault again on what it is now */
		uffd_wake(vm->uffd, addr, r->page_size);
	} else if (o == UFFD_GONE || o == UFFD_RETRY) {
		uffd_op_failed(vm, o, ret, s->image ? "read from the image" : "swap-in", addr);
	} else if (s->ahead) {
		/* no room for a page nobody asked for: it stays stored */
	} else {
		/* the content is here but the kernel will not take it (no
		 * memory for the page), also after POISON_TRIES tries: its
		 * waiters must not wait forever */
		char buf[200];
		poison_page(vm, r, s->idx, poison_cause(r, PAGE_RESIDENT, ret, buf, sizeof buf));
	}
}

static void release(struct swap_reads *sr, struct swap_read *s)
{
	sr->ahead -= s->ahead;
	s->busy = false;
	s->waiting_retry = false;
	s->ahead = false;
	sr->busy--;
}

/* The state the page was read from, for poison_cause(). */
static enum page_state read_from(const struct swap_read *s)
{
	return s->image ? PAGE_IMAGE : PAGE_STORED;
}

/* The page's content cannot be had (err, from store_read_end): poisoned if
 * it is still the one read, so its waiters get SIGBUS rather than wait. */
static void lose(struct vm *vm, struct swap_read *s, int err)
{
	struct region *r = s->r;
	if (!still_wanted(s)) {
		uffd_wake(vm->uffd, r->host_addr + s->idx * r->page_size, r->page_size);
		return;  /* discarded meanwhile: the waiters fault on what it is now */
	}
	char buf[200];
	poison_page(vm, r, s->idx, poison_cause(r, read_from(s), err, buf, sizeof buf));
}

/* Read number s->failures of the page failed with err: bad content is
 * final; an I/O error or a short read is tried again, POISON_TRIES in all.
 * Meanwhile the vCPU waits; the pin was released, so fetch it anew then. */
static void failed(struct vm *vm, unsigned i, int err)
{
	struct swap_reads *sr = vm->eng.reads;
	struct swap_read *s = &sr->slot[i];
	uint64_t addr = s->r->host_addr + s->idx * s->r->page_size;
	if (s->ahead) {
		release(sr, s);  /* nobody asked for it: a fault on it reads it anew */
		return;
	}
	s->failures++;
	if (!poison_worth_retry(vm, err) || s->failures >= POISON_TRIES) {
		release(sr, s);
		lose(vm, s, err);
		return;
	}
	unsigned ms = poison_backoff_ms(s->failures);
	char buf[200];
	if (s->failures == 1)
		vm_warn(vm, "%s of page at 0x%" PRIx64 " failed (%s); trying again in %u ms, %d tries in all",
			s->image ? "image read" : "swap read", addr, poison_cause(s->r, read_from(s), err, buf, sizeof buf),
			ms, POISON_TRIES);
	s->waiting_retry = true;
	s->retry_at = monotonic_ns() + (uint64_t)ms * 1000000;
}

static void finish(struct vm *vm, unsigned i, int res)
{
	struct swap_reads *sr = vm->eng.reads;
	struct swap_read *s = &sr->slot[i];
	const void *buf = sr->bufs + (size_t)i * CODEC_PAGE;
	int ret = s->image ? image_pages_decode(vm, s->image_index, s->rd.remote, buf, res, vm->eng.page_buf)
			   : store_read_end(vm->store, vm->eng.codec_ctx, &s->rd, buf, res, vm->eng.page_buf);
	if (ret == 0) {
		complete(vm, s, vm->eng.page_buf);
		release(sr, s);
		return;
	}
	failed(vm, i, ret);
}

static void retry(struct vm *vm, unsigned i)
{
	struct swap_reads *sr = vm->eng.reads;
	struct swap_read *s = &sr->slot[i];
	s->waiting_retry = false;
	if (!still_wanted(s)) {
		/* discarded meanwhile */
		uffd_wake(vm->uffd, s->r->host_addr + s->idx * s->r->page_size, s->r->page_size);
		release(sr, s);
		return;
	}
	if (s->image) {
		if (submit(vm, sr, i)) {
			s->failures--;  /* the ring was full: no try was made */
			failed(vm, i, -EIO);
		}
		return;
	}
	int ret = store_fetch(vm->store, vm->eng.codec_ctx, s->rd.id, vm->eng.page_buf, &s->rd);
	if (ret == 0) {
		/* not in swap any more (cannot happen today: kept for safety) */
		complete(vm, s, vm->eng.page_buf);
		release(sr, s);
	} else if (ret < 0) {
		failed(vm, i, ret);
	} else if (submit(vm, sr, i)) {
		store_read_end(vm->store, vm->eng.codec_ctx, &s->rd, NULL, -ECANCELED, vm->eng.page_buf);
		s->failures--;  /* the ring was full: no try was made */
		failed(vm, i, -EIO);
	}
}

bool swap_reads_ready(const struct vm *vm)
{
	return vm->eng.reads && vm->eng.reads->busy && io_uring_cq_ready(&vm->eng.reads->ring);
}

int swap_reads_reap(struct vm *vm)
{
	struct swap_reads *sr = vm->eng.reads;
	if (!sr)
		return -1;
	uint64_t v;
	if (read(sr->efd, &v, sizeof v) < 0) {
		/* nothing signalled: completions may still be there */
	}
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&sr->ring, &cqe) == 0) {
		unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&sr->ring, cqe);
		finish(vm, i, res);
	}
	int next = -1;
	uint64_t now = monotonic_ns();
	for (unsigned i = 0; sr->busy && i < READS; i++) {
		struct swap_read *s = &sr->slot[i];
		if (!s->busy || !s->waiting_retry)
			continue;
		if (s->retry_at <= now)
			retry(vm, i);
		if (s->busy && s->waiting_retry) {
			int ms = (int)((s->retry_at - now) / 1000000) + 1;
			next = next < 0 || ms < next ? ms : next;
		}
	}
	return next;
}

void swap_reads_exit(struct vm *vm)
{
	struct swap_reads *sr = vm->eng.reads;
	if (!sr)
		return;
	/* every read in flight pins its object: wait for each, then unpin.
	 * Reads of the cluster may wait for it as long as it is away: those
	 * not completed yet are cancelled, and post nothing. */
	unsigned in_flight = 0;
	for (unsigned i = 0; i < READS; i++)
		in_flight += sr->slot[i].busy && !sr->slot[i].waiting_retry;
	in_flight -= store_read_cancel_remote(vm->store, sr->ring.ring_fd);
	bool done[READS] = { false };
	while (in_flight--) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&sr->ring, &cqe))
			break;
		unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
		io_uring_cqe_seen(&sr->ring, cqe);
		done[i] = true;
		if (!sr->slot[i].image)
			store_read_end(vm->store, vm->eng.codec_ctx, &sr->slot[i].rd, NULL, -ECANCELED, vm->eng.page_buf);
	}
	for (unsigned i = 0; i < READS; i++)
		if (sr->slot[i].busy && !sr->slot[i].waiting_retry && !done[i] && sr->slot[i].rd.remote &&
		    !sr->slot[i].image)
			store_read_end(vm->store, vm->eng.codec_ctx, &sr->slot[i].rd, NULL, -ECANCELED, vm->eng.page_buf);
	io_uring_queue_exit(&sr->ring);
	close(sr->efd);
	free(sr->bufs);
	free(sr);
	vm->eng.reads = NULL;
}
