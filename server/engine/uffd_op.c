/* uffd_op: the EAGAIN retry and the failure rule of every uffd operation. */
#include "uffd_op.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>

#include "clean_pages.h"
#include "fault.h"
#include "log.h"

/* The VMM's mappings are changing under an unread event: read it (and,
 * unless read_only, apply it) so that the kernel lets the ioctl go on.
 * False when it cannot be read: the ring is full of events a read-only
 * retry may not apply (fault.c makes room of everything else). */
static bool resync(struct vm *vm, bool read_only)
{
	ctr_add(&vm->ctr.eagain_retries, 1);
	if (fault_drain(vm) == 0) {
		if (read_only && vm->eng.pending_len == PENDING_MSGS)
			return false;
		sched_yield();  /* the event is not queued yet */
	}
	if (!read_only)
		fault_apply_events(vm);
	return true;
}

enum uffd_outcome uffd_op_retry(struct vm *vm, const struct uffd_op *op, void *arg, int err, int *errp)
{
	for (;;) {
		enum uffd_outcome o = uffd_classify(err);
		*errp = err;
		if (o != UFFD_RETRY || vm->thr.stopping || vm->eng.vmm_gone || !resync(vm, op->read_only))
			return o;
		if (op->wanted && !op->wanted(vm, arg))
			return UFFD_DISCARDED;
		err = op->run(vm, arg);
	}
}

int uffd_op_writeprotect(struct vm *vm, void *arg)
{
	const struct uffd_wp_range *w = arg;
	return uffd_writeprotect(vm->uffd, w->addr, w->len, w->protect, false);
}

int uffd_op_protect_pages(struct vm *vm, struct region *r, uint64_t first, uint64_t count, bool protect)
{
	if (r->unmapped || vm->eng.vmm_gone)
		return 0;  /* nothing maps it: no write can come */
	if (!protect)
		clean_pages_forget(vm, r, first, count);  /* writable: their copies no longer follow them */
	struct uffd_wp_range w = {
		.addr = r->host_addr + first * r->page_size, .len = count * r->page_size, .protect = protect
	};
	static const struct uffd_op op = { .run = uffd_op_writeprotect };
	int ret;
	if (uffd_op_run(vm, &op, &w, &ret) == UFFD_RETRY)
		return vm->thr.stopping ? -ESHUTDOWN : -ESRCH;
	if (ret && uffd_vmm_gone(ret))
		fault_vmm_gone(vm, ret);
	return ret;
}

bool uffd_op_failed(struct vm *vm, enum uffd_outcome o, int err, const char *what, uint64_t addr)
{
	switch (o) {
	case UFFD_PLACED:
	case UFFD_RETRY:
	case UFFD_DISCARDED:
		return false;
	case UFFD_GONE:
		fault_vmm_gone(vm, err);
		return false;
	case UFFD_EXISTS:
	case UFFD_ERROR:
		break;
	}
	ctr_add(&vm->ctr.fault_errors, 1);
	vm_err(vm, "%s at 0x%" PRIx64 " not resolved: %s", what, addr, strerror(-err));
	return true;
}
