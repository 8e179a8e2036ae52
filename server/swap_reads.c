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
#include "log.h"
#include "uffd.h"

#define READS 32           /* reads in flight per VM */
#define RETRY_MS 1000      /* a failed read is tried again this often: the vCPU waits, nothing is lost */

struct swap_read {
	bool busy;
	bool waiting_retry;
	struct region *r;
	uint64_t idx;
	uint64_t t_read;
	uint64_t retry_at;
	unsigned failures;
	struct store_read rd;
};

struct swap_reads {
	struct io_uring ring;
	int efd;
	unsigned busy;
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
	vm->reads = sr;
	return 0;
}

int swap_reads_fd(const struct vm *vm)
{
	return vm->reads ? vm->reads->efd : -1;
}

bool swap_reads_pending(const struct vm *vm, const struct region *r, uint64_t idx)
{
	const struct swap_reads *sr = vm->reads;
	for (unsigned i = 0; sr && sr->busy && i < READS; i++)
		if (sr->slot[i].busy && sr->slot[i].r == r && sr->slot[i].idx == idx)
			return true;
	return false;
}

static int submit(struct swap_reads *sr, unsigned i)
{
	struct swap_read *s = &sr->slot[i];
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sr->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, s->rd.io.fd, sr->bufs + (size_t)i * CODEC_PAGE, s->rd.io.len, s->rd.io.offset);
	io_uring_sqe_set_data64(sqe, i);
	int ret = io_uring_submit(&sr->ring);
	return ret < 0 ? ret : 0;
}

static void finish(struct vm *vm, unsigned i, int res);

int swap_reads_submit(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read, const struct store_read *rd)
{
	struct swap_reads *sr = vm->reads;
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
	sr->slot[i] = (struct swap_read){ .busy = true, .r = r, .idx = idx, .t_read = t_read, .rd = *rd };
	int ret = submit(sr, i);
	if (ret) {
		sr->slot[i].busy = false;
		return ret;
	}
	sr->busy++;
	return 0;
}

/* A read came in whole: place the page if it is still the one asked for. */
static void complete(struct vm *vm, struct swap_read *s, const void *page)
{
	struct region *r = s->r;
	uint64_t addr = r->host_addr + s->idx * r->page_size;
	for (;;) {
		page_entry e = r->pt.entries[s->idx];
		if (pe_state(e) != PAGE_STORED || (obj_id)pe_handle(e) != s->rd.id) {
			/* discarded meanwhile: let the waiters fault again on what it is now */
			uffd_wake(vm->uffd, addr, r->page_size);
			return;
		}
		int ret = fault_place_stored(vm, r, s->idx, page);
		if (ret == -EAGAIN && !vm->stopping) {
			fault_resync_events(vm);
			continue;
		}
		if (ret) {
			if (uffd_vmm_gone(ret))
				fault_vmm_gone(vm, ret);
			else
				vm_err(vm, "swapped-in page at 0x%" PRIx64 " not placed: %s", addr, strerror(-ret));
			return;
		}
		fault_record(vm, FAULT_FROM_SWAP, s->t_read);
		return;
	}
}

static void finish(struct vm *vm, unsigned i, int res)
{
	struct swap_reads *sr = vm->reads;
	struct swap_read *s = &sr->slot[i];
	int ret = store_read_end(vm->store, vm->codec_ctx, &s->rd, sr->bufs + (size_t)i * CODEC_PAGE, res, vm->page_buf);
	if (ret == 0) {
		complete(vm, s, vm->page_buf);
		s->busy = false;
		sr->busy--;
		return;
	}
	/* The read failed: the data is still in swap.  The vCPU keeps waiting
	 * while we try again; the pin was released, so fetch it anew then. */
	if (s->failures++ % 10 == 0)
		vm_err(vm, "swap read of page at 0x%" PRIx64 " failed (%s); retrying every %d ms",
		       s->r->host_addr + s->idx * s->r->page_size, res < 0 ? strerror(-res) : "short read", RETRY_MS);
	s->waiting_retry = true;
	s->retry_at = monotonic_ns() + (uint64_t)RETRY_MS * 1000000;
}

static void retry(struct vm *vm, unsigned i)
{
	struct swap_reads *sr = vm->reads;
	struct swap_read *s = &sr->slot[i];
	page_entry e = s->r->pt.entries[s->idx];
	s->waiting_retry = false;
	if (pe_state(e) != PAGE_STORED) {
		/* discarded meanwhile */
		uffd_wake(vm->uffd, s->r->host_addr + s->idx * s->r->page_size, s->r->page_size);
		s->busy = false;
		sr->busy--;
		return;
	}
	int ret = store_fetch(vm->store, vm->codec_ctx, (obj_id)pe_handle(e), vm->page_buf, &s->rd);
	if (ret == 0) {
		/* not in swap any more (cannot happen today: kept for safety) */
		complete(vm, s, vm->page_buf);
		s->busy = false;
		sr->busy--;
	} else if (ret < 0 || submit(sr, i)) {
		if (ret == 1)
			store_read_end(vm->store, vm->codec_ctx, &s->rd, NULL, -EIO, vm->page_buf);
		s->waiting_retry = true;
		s->retry_at = monotonic_ns() + (uint64_t)RETRY_MS * 1000000;
	}
}

bool swap_reads_ready(const struct vm *vm)
{
	return vm->reads && vm->reads->busy && io_uring_cq_ready(&vm->reads->ring);
}

int swap_reads_reap(struct vm *vm)
{
	struct swap_reads *sr = vm->reads;
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
	struct swap_reads *sr = vm->reads;
	if (!sr)
		return;
	/* every read in flight pins its object: wait for each, then unpin */
	unsigned in_flight = 0;
	for (unsigned i = 0; i < READS; i++)
		in_flight += sr->slot[i].busy && !sr->slot[i].waiting_retry;
	while (in_flight--) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&sr->ring, &cqe))
			break;
		unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
		io_uring_cqe_seen(&sr->ring, cqe);
		store_read_end(vm->store, vm->codec_ctx, &sr->slot[i].rd, NULL, -ECANCELED, vm->page_buf);
	}
	io_uring_queue_exit(&sr->ring);
	close(sr->efd);
	free(sr->bufs);
	free(sr);
	vm->reads = NULL;
}
