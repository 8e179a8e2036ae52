/* poison: a page memsrv cannot bring back gets SIGBUS, never zeros, never a wait without end. */
#include "poison.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fault.h"
#include "huge_pages.h"
#include "image_pages.h"
#include "log.h"
#include "sampler.h"
#include "store.h"
#include "uffd.h"
#include "uffd_op.h"

bool poison_worth_retry(const struct vm *vm, int err)
{
	enum uffd_outcome o = uffd_classify(err);
	return !store_err_final(err) && err != IMAGE_ERR_NOT_OPEN && o != UFFD_GONE && o != UFFD_RETRY &&
	       !vm->thr.stopping && !vm->eng.vmm_gone;
}

unsigned poison_backoff_ms(unsigned tries)
{
	return 100u << (tries > 4 ? 4 : tries - 1);  /* 100, 200, 400, 800 ms: ~1.5 s over POISON_TRIES */
}

void poison_pause(unsigned tries)
{
	struct timespec ts = { 0, 1000000L << (tries > 4 ? 4 : tries) };
	nanosleep(&ts, NULL);
}

const char *poison_cause(const struct region *r, enum page_state from, int err, char *buf, size_t len)
{
	if (from == PAGE_REMOTE)
		return "it never came from the node the VM migrated from (memsrv restarted mid-way)";
	if (from == PAGE_IMAGE) {
		switch (err) {
		case -EBADMSG:
			return "checksum mismatch: the memory image holds other data than was written (corrupt)";
		case -EILSEQ:
			return "decompression failure: the memory image's copy does not decompress";
		case -ENODATA:
			return "short read: the memory image is shorter than it was (truncated?)";
		case IMAGE_ERR_NOT_OPEN:
			return "its memory image is not open: memsrv restarted without it";
		case -ENOMEM:
		case -ENOSPC:
			break;  /* the placement's, below */
		default:
			snprintf(buf, len, "I/O error reading the memory image: %s (errno %d)", strerror(-err), -err);
			return buf;
		}
	}
	if (from == PAGE_STORED) {
		switch (err) {
		case STORE_ERR_CHECKSUM:
			return "checksum mismatch: swap handed back other data than was written";
		case STORE_ERR_DECOMPRESS:
			return "decompression failure: its stored content does not decompress";
		case STORE_ERR_SHORT_READ:
			return "short read: the swap file holds less than was written (truncated?)";
		case -ENOMEM:
		case -ENOSPC:
			break;  /* the placement's, below */
		default:
			snprintf(buf, len, "I/O error reading swap: %s (errno %d)", strerror(-err), -err);
			return buf;
		}
	}
	if (r->backing == MEMSRV__BACKING__BACKING_HUGETLBFS && (err == -ENOMEM || err == -ENOSPC)) {
		if (r->page_size == 2u << 20)
			snprintf(buf, len, "no free 2 MiB huge pages: see /proc/sys/vm/nr_hugepages");
		else
			snprintf(buf, len, "no free %u MiB huge pages: see /sys/kernel/mm/hugepages/hugepages-%ukB/nr_hugepages",
				 r->page_size >> 20, r->page_size >> 10);
		return buf;
	}
	snprintf(buf, len, "the kernel refused to place it: %s (errno %d)", strerror(-err), -err);
	return buf;
}

/* The table lets go of what it held for the page (before the store may
 * free it) and holds the page POISONED from now on. */
static void mark_poisoned(struct vm *vm, struct region *r, uint64_t idx)
{
	page_entry e = r->pt.entries[idx];
	page_table_set(&r->pt, idx, pe_make(PAGE_POISONED, 0, 0));
	huge_release(vm, r, idx);  /* a huge page's parts, arriving or stored */
	switch (pe_state(e)) {
	case PAGE_STORED:
		if (pe_holds_object(e))
			store_drop(vm->store, (obj_id)pe_handle(e));
		break;
	case PAGE_PROBATION:
		sampler_drop(vm, e);
		break;
	case PAGE_IMAGE:
		break;  /* the image holds no reference */
	case PAGE_RESIDENT:
		/* held resident but gone, and it cannot be placed again */
		vm_policy_gone(vm, r, idx);
		atomic_fetch_sub(&vm->resident_bytes, r->page_size);
		if (pe_holds_object(e))
			store_drop(vm->store, (obj_id)pe_handle(e));
		break;
	default:
		break;
	}
}

/* A page to poison (uffd_op_run): arg is one. */
struct poison_target {
	struct region *r;
	uint64_t idx;
	page_entry was;  /* its entry when it was found lost */
};

static int poison_ioctl(struct vm *vm, void *arg)
{
	const struct poison_target *t = arg;
	return uffd_poison(vm->uffd, t->r->host_addr + t->idx * t->r->page_size, t->r->page_size);
}

/* After a resync: a page the VMM discarded meanwhile is lost no more. */
static bool still_lost(struct vm *vm, void *arg)
{
	(void)vm;
	const struct poison_target *t = arg;
	return t->r->pt.entries[t->idx] == t->was;
}

/* UFFDIO_POISON on page idx, through EAGAIN; *err gets its 0 or -errno.
 * UFFD_DISCARDED when the VMM discarded the page meanwhile, UFFD_EXISTS
 * when a page is there after all (the live copy wins): either way its
 * waiters are woken to fault on what it is now. */
static enum uffd_outcome poison_in_vmm(struct vm *vm, struct region *r, uint64_t idx, int *err)
{
	struct poison_target t = { .r = r, .idx = idx, .was = r->pt.entries[idx] };
	static const struct uffd_op op = { .run = poison_ioctl, .wanted = still_lost };
	enum uffd_outcome o = uffd_op_run(vm, &op, &t, err);
	if (o == UFFD_EXISTS || o == UFFD_DISCARDED)
		uffd_wake(vm->uffd, r->host_addr + idx * r->page_size, r->page_size);
	return o;
}

static bool can_poison(const struct vm *vm)
{
	return vm->uffd_features & UFFD_FEATURE_POISON;
}

int poison_page(struct vm *vm, struct region *r, uint64_t idx, const char *cause)
{
	uint64_t addr = r->host_addr + idx * r->page_size;
	if (pe_state(r->pt.entries[idx]) == PAGE_POISONED)
		return poison_refault(vm, r, idx);
	if (!can_poison(vm)) {
		mark_poisoned(vm, r, idx);
		ctr_add(&vm->ctr.pages_poisoned, 1);
		vm_err(vm, "page at 0x%" PRIx64 " is lost (%s); the uffd lacks UFFD_FEATURE_POISON (Linux 6.6+), so its "
		       "faulting thread is left waiting rather than given zeros", addr, cause);
		return 0;
	}
	int ret;
	enum uffd_outcome o = poison_in_vmm(vm, r, idx, &ret);
	if (o == UFFD_DISCARDED || o == UFFD_EXISTS)
		return 0;
	if (o == UFFD_GONE) {
		fault_vmm_gone(vm, ret);
		return ret;
	}
	/* lost whether or not the ioctl went in: never placed as zeros later */
	mark_poisoned(vm, r, idx);
	ctr_add(&vm->ctr.pages_poisoned, 1);
	vm_err(vm, "page at 0x%" PRIx64 " is lost (%s): poisoned, the guest gets a memory error (SIGBUS) on it", addr,
	       cause);
	/* the VM stopping (UFFD_RETRY) is no failure: closing the uffd wakes
	 * every thread */
	if (uffd_op_failed(vm, o, ret, "poisoning the lost page (its faulting thread is left waiting)", addr))
		return ret;
	return 0;
}

int poison_refault(struct vm *vm, struct region *r, uint64_t idx)
{
	if (!can_poison(vm))
		return 0;  /* said when it was lost: the thread waits, never zeros */
	int ret;
	enum uffd_outcome o = poison_in_vmm(vm, r, idx, &ret);
	return o == UFFD_GONE || o == UFFD_ERROR ? ret : 0;
}
