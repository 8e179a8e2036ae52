/* discards: what the VMM does to guest RAM besides touching it — REMOVE and
 * UNMAP events from its userfaultfd, and the Discard it sends on purpose.
 *
 * Of shared memory (memfd, hugetlbfs) only a Discard discards.  A REMOVE
 * (MADV_DONTNEED) or UNMAP (munmap) drops the VMM's page table entries,
 * never the file's pages: what memsrv holds for the range is still the
 * guest's data.  So a REMOVE only forgets resident pages the VMM punched
 * out of the file itself (their data is gone from the file: a balloon
 * without Discard), and an UNMAP writes the pages memsrv holds back into
 * the file, where the VMM finds them if it maps it again — no fault will
 * come for that range any more.  Of anonymous private memory an UNMAP is
 * what it says: the pages are gone.  A REMOVE zaps what the VMM holds:
 * its resident pages are gone, but a page memsrv holds stays held (until
 * a Discard): memsrv's own drops raise REMOVE events too (anon_drops.h),
 * and one cannot be told from the VMM's.
 *
 * VM thread only, like the page tables.
 */
#include "discards.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "fault.h"
#include "huge_pages.h"
#include "image_pages.h"
#include "migrate_out.h"
#include "log.h"
#include "sampler.h"
#include "swap_reads.h"

/* The pages [first, last) of r that lie in [start, end); false if none. */
static bool pages_of(const struct region *r, uint64_t start, uint64_t end, uint64_t *first, uint64_t *last)
{
	uint64_t lo = start > r->host_addr ? start : r->host_addr;
	uint64_t hi = end < r->host_addr + r->size ? end : r->host_addr + r->size;
	if (lo >= hi)
		return false;
	*first = (lo - r->host_addr) / r->page_size;
	*last = (hi - r->host_addr + r->page_size - 1) / r->page_size;
	return true;
}

static bool region_is_shared(const struct region *r) { return r->fd >= 0; }

/* Lets go of page p of r, whatever memsrv held for it: it reads as zeros
 * from now on (its data is gone from the file too). */
static void forget_page(struct vm *vm, struct region *r, uint64_t p)
{
	page_entry e = r->pt.entries[p];
	switch (pe_state(e)) {
	case PAGE_NEVER:
		return;
	case PAGE_RESIDENT:
		atomic_fetch_sub(&vm->resident_bytes, r->page_size);
		vm_policy_gone(vm, r, p);
		break;
	case PAGE_PROBATION:
		sampler_drop(vm, e);
		break;
	case PAGE_STORED:
	case PAGE_ZERO:
	case PAGE_IMAGE:     /* the image's copy is no longer this page's */
	case PAGE_POISONED:  /* given back: its loss no longer matters */
	case PAGE_REMOTE:    /* what arrives for it later is dropped: it is zeros now */
	case PAGE_STATES:
		break;
	}
	/* the table lets go of the object (a clean page's copy too) before
	 * the store frees it */
	page_table_set(&r->pt, p, pe_make(PAGE_NEVER, 0, 0));
	if (pe_holds_object(e))
		store_drop(vm->store, (obj_id)pe_handle(e));
	huge_release(vm, r, p);
	ctr_add(&vm->ctr.removed_pages, region_parts(r));
}

/* The first page at or after p of a shared region whose block is in its
 * file (whence SEEK_DATA), or at or after p with no block (SEEK_HOLE);
 * last if there is none before it.  memsrv's own punches are of pages it no
 * longer counts resident, so a RESIDENT page in a hole was punched by the
 * VMM.  A file that cannot say (an error other than "none") is all data:
 * nothing is forgotten on a guess. */
static uint64_t seek_page(const struct region *r, uint64_t p, uint64_t last, int whence)
{
	off_t off = lseek(r->fd, (off_t)(r->fd_offset + p * r->page_size), whence);
	if (off < 0) {
		if (whence == SEEK_DATA && errno == ENXIO)
			return last;  /* no data from p on: all holes */
		return whence == SEEK_DATA ? p : last;  /* cannot say: all data */
	}
	uint64_t page = ((uint64_t)off - r->fd_offset + (whence == SEEK_HOLE ? r->page_size - 1 : 0)) / r->page_size;
	return page < last ? page : last;
}

/* Forgets the RESIDENT pages of [first, last) the VMM punched out of the
 * file: one SEEK_DATA and one SEEK_HOLE per run, not a call per page. */
static void forget_punched(struct vm *vm, struct region *r, uint64_t first, uint64_t last)
{
	for (uint64_t p = first; p < last;) {
		uint64_t data = seek_page(r, p, last, SEEK_DATA);
		for (; p < data; p++)
			if (pe_state(r->pt.entries[p]) == PAGE_RESIDENT)
				forget_page(vm, r, p);
		if (p < last) {
			uint64_t hole = seek_page(r, p, last, SEEK_HOLE);
			p = hole > p ? hole : p + 1;
		}
	}
}

static int pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* The content memsrv holds for page p (STORED, PROBATION, or IMAGE: still
 * in the image the VM was resumed from) into buf.  0 or -errno. */
static int held_content(struct vm *vm, const struct region *r, uint64_t p, void *buf)
{
	page_entry e = r->pt.entries[p];
	if (pe_state(e) == PAGE_PROBATION) {
		memcpy(buf, sampler_page(vm, e), r->page_size);
		return 0;
	}
	if (pe_state(e) == PAGE_IMAGE)
		return image_pages_read(vm, r->first_page + p, buf);
	if (huge_in_parts(e))
		return huge_gather(vm, r, p, buf);
	struct store_read rd;
	int ret = store_fetch(vm->store, vm->eng.codec_ctx, (obj_id)pe_handle(e), buf, &rd);
	if (ret == 1)
		ret = store_read_now(vm->store, vm->eng.codec_ctx, &rd, buf);
	return ret;
}

/* UNMAP of shared memory: no fault will come for the range again, but the
 * VMM may map the file again, so what memsrv holds goes back into the file.
 * A page whose content cannot be read stays held (and is logged): zeros
 * in the file would be a lie. */
static void write_back(struct vm *vm, struct region *r, uint64_t first, uint64_t last)
{
	uint64_t written = 0, failed = 0;
	for (uint64_t p = first; p < last; p++) {
		page_entry e = r->pt.entries[p];
		enum page_state s = pe_state(e);
		if (s == PAGE_POISONED) {
			/* lost: the file has a hole there, which a new mapping
			 * reads as zeros; a fault through a registered one is
			 * poisoned again */
			vm_err(vm, "page at 0x%" PRIx64 " of an unmapped range was lost: a new mapping of the file reads zeros there",
			       r->host_addr + p * r->page_size);
			continue;
		}
		if (s == PAGE_STORED || s == PAGE_PROBATION || s == PAGE_IMAGE) {
			int ret = held_content(vm, r, p, vm->eng.page_buf);
			if (!ret && region_is_huge(r))
				ret = huge_write_file(r, p, vm->eng.page_buf);  /* hugetlbfs has no write() */
			else if (!ret)
				ret = pwrite_full(r->fd, vm->eng.page_buf, r->page_size, (off_t)(r->fd_offset + p * r->page_size));
			if (ret) {
				failed++;
				vm_err(vm, "page at 0x%" PRIx64 " of an unmapped range cannot go back into its file: %s",
				       r->host_addr + p * r->page_size, strerror(-ret));
				continue;
			}
			written++;
		}
		if (s == PAGE_RESIDENT) {
			atomic_fetch_sub(&vm->resident_bytes, r->page_size);
			vm_policy_gone(vm, r, p);
		} else if (s == PAGE_PROBATION) {
			sampler_drop(vm, e);
		}
		/* the file holds it now (a zero page is its hole): not memsrv's */
		page_table_set(&r->pt, p, pe_make(PAGE_NEVER, 0, 0));
		if (pe_holds_object(e))
			store_drop(vm->store, (obj_id)pe_handle(e));
		if (s != PAGE_NEVER)
			huge_release(vm, r, p);  /* a page never stored has no parts */
	}
	if (written || failed)
		vm_info(vm, "range at 0x%" PRIx64 " unmapped: %" PRIu64 " pages written back into its file%s",
			r->host_addr + first * r->page_size, written, failed ? ", some failed (logged)" : "");
}

void discards_apply(struct vm *vm, uint64_t start, uint64_t end, enum discard_kind kind)
{
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		uint64_t first, last;
		if (!pages_of(r, start, end, &first, &last))
			continue;
		image_pages_prepare(vm, r->first_page + first, last - first);  /* forgets the image's pages too */
		if (!region_is_shared(r)) {
			/* a zap of a poisoned page drops the kernel's marker, not
			 * the loss: its next fault is poisoned again; given back,
			 * the loss no longer matters */
			for (uint64_t p = first; p < last; p++) {
				enum page_state st = pe_state(r->pt.entries[p]);
				if (kind == DISCARD_REQUESTED || (kind == DISCARD_UNMAP_EVENT && st != PAGE_POISONED) ||
				    st == PAGE_RESIDENT)
					forget_page(vm, r, p);
			}
		} else if (kind == DISCARD_REQUESTED) {
			/* a resident page still in the file was written again
			 * since the VMM punched it: no longer discarded */
			for (uint64_t p = first; p < last; p++)
				if (pe_state(r->pt.entries[p]) != PAGE_RESIDENT)
					forget_page(vm, r, p);
			forget_punched(vm, r, first, last);
		} else if (kind == DISCARD_REMOVE_EVENT) {
			/* a PTE zap: only what the VMM punched itself is gone;
			 * resident pages in the file and pages memsrv holds are
			 * still the guest's */
			forget_punched(vm, r, first, last);
		} else {
			write_back(vm, r, first, last);
		}
		migrate_out_touched(vm, r, first, last - first);  /* zeros now, or what the VMM wrote there */
		if (kind == DISCARD_UNMAP_EVENT && first == 0 && last == r->pt.npages) {
			r->unmapped = true;
			vm_info(vm, "region at 0x%" PRIx64 " unmapped by the VMM", r->host_addr);
		}
	}
}

/* Whether the server thread took every record the VMM sent so far off the
 * session socket and posted what it asked for (vm.h: session_reading).
 * The read that empties the queue comes after the flag was set, so a
 * queue seen empty with the flag clear has nothing in flight. */
static bool session_dispatched(struct vm *vm)
{
	int queued = 0;
	if (ioctl(vm->session_fd, FIONREAD, &queued))
		return true;  /* no session to wait for */
	return queued == 0 && !atomic_load_explicit(&vm->session_reading, memory_order_acquire);
}

#define SENT_WAIT_NS 2000000000ull

void discards_apply_sent(struct vm *vm)
{
	/* a detach or shutdown may hold the server thread until this one ends:
	 * what it posted is all there will be */
	bool wait = vm->session_fd >= 0 && !vm->eng.detaching && !vm->thr.stopping;
	uint64_t deadline = monotonic_ns() + SENT_WAIT_NS;
	while (wait && !session_dispatched(vm)) {
		if (monotonic_ns() > deadline) {
			vm_warn(vm, "the server thread read nothing of the VMM's session for 2 s: a Discard it sent may "
				    "be applied after faults on its pages");
			break;
		}
		sched_yield();
	}
	for (struct vm_job *job = vm_take_jobs_of_kind(vm, VM_JOB_DISCARD), *next; job; job = next) {
		next = job->next;
		discards_apply(vm, job->addr, job->addr + job->len, DISCARD_REQUESTED);
		vm_job_free(job);
	}
}

bool discards_range_valid(const struct vm *vm, uint64_t start, uint64_t len)
{
	if (!len || start + len < start)
		return false;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		if (start >= r->host_addr && start - r->host_addr < r->size && len <= r->host_addr + r->size - start)
			return start % r->page_size == 0 && len % r->page_size == 0;
	}
	return false;
}
