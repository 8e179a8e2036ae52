/* Description: a write-protect fault whose unprotect fails is never dropped:
 * "VMM gone" stops the VM's ioctls, any other error is counted.  A fault
 * whose page cannot be placed is tried a bounded number of times, then the
 * page is poisoned (counted once), and stays so across a zap. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault.h"
#include "uffd_compat.h"

#define PAGE 4096u

static struct vm *vm;
static uint8_t *mem;

static void setup(void)
{
	vm = vm_new(NULL);
	cr_assert(vm);
	snprintf(vm->name, sizeof vm->name, "unit");
	mem = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct region r = { .host_addr = (uintptr_t)mem, .size = 4 * PAGE, .page_size = PAGE, .fd = -1 };
	char why[128];
	cr_assert_eq(vm_add_region(vm, &r, why, sizeof why), 0, "%s", why);
}

static void teardown(void)
{
	vm_destroy(vm);
	munmap(mem, 4 * PAGE);
}

TestSuite(fault, .init = setup, .fini = teardown);

/* Queues a write-protect fault on page idx and serves it. */
static void serve_wp_fault(unsigned idx)
{
	vm->eng.pending[0] = (struct uffd_msg){ .event = UFFD_EVENT_PAGEFAULT };
	vm->eng.pending[0].arg.pagefault.address = (uintptr_t)mem + idx * PAGE;
	vm->eng.pending[0].arg.pagefault.flags = UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE;
	vm->eng.pending_head = 0;
	vm->eng.pending_len = 1;
	fault_serve_pending(vm);
}

Test(fault, unprotect_of_a_range_no_longer_registered_marks_the_vmm_gone)
{
	vm->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (vm->uffd < 0)
		vm->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (vm->uffd < 0)
		cr_skip_test("no userfaultfd here: %m");
	struct uffdio_api api = { .api = UFFD_API };
	cr_assert_eq(ioctl(vm->uffd, UFFDIO_API, &api), 0, "%m");
	/* nothing registered: the kernel answers ENOENT, as after an unmap */
	serve_wp_fault(1);
	cr_assert(vm->eng.vmm_gone);
	cr_assert_eq(ctr_get(&vm->ctr.faults_wp), 0, "an unresolved fault is not a resolved one");
}

Test(fault, any_other_unprotect_error_is_counted)
{
	/* not a userfaultfd: every ioctl fails with ENOTTY, which is no "gone" */
	vm->uffd = eventfd(0, EFD_CLOEXEC);
	cr_assert_geq(vm->uffd, 0);
	serve_wp_fault(2);
	cr_assert_not(vm->eng.vmm_gone);
	cr_assert_eq(ctr_get(&vm->ctr.fault_errors), 1);
	cr_assert_eq(ctr_get(&vm->ctr.faults_wp), 0);
}

/* Queues a missing fault on page idx and serves it. */
static void serve_missing_fault(unsigned idx)
{
	vm->eng.pending[0] = (struct uffd_msg){ .event = UFFD_EVENT_PAGEFAULT };
	vm->eng.pending[0].arg.pagefault.address = (uintptr_t)mem + idx * PAGE;
	vm->eng.pending_head = 0;
	vm->eng.pending_len = 1;
	fault_serve_pending(vm);
}

Test(fault, a_fault_that_keeps_failing_ends_in_a_poisoned_page_counted_once)
{
	/* every ioctl fails with ENOTTY: no placement, no poison ever goes in */
	vm->uffd = eventfd(0, EFD_CLOEXEC);
	vm->uffd_features = UFFD_FEATURE_POISON;
	serve_missing_fault(1);
	cr_assert_not(vm->eng.vmm_gone);
	cr_assert_eq(pe_state(vm->regions[0].pt.entries[1]), PAGE_POISONED, "tried a bounded number of times, then lost");
	cr_assert_eq(ctr_get(&vm->ctr.pages_poisoned), 1);
	cr_assert_eq(ctr_get(&vm->ctr.faults_total), 0, "a lost page is no fault served");
	cr_assert_eq(vm_count(vm, PAGE_POISONED), 1);
	/* its next fault is poisoned again, and counted once only */
	serve_missing_fault(1);
	cr_assert_eq(pe_state(vm->regions[0].pt.entries[1]), PAGE_POISONED);
	cr_assert_eq(ctr_get(&vm->ctr.pages_poisoned), 1);
	cr_assert_eq(pe_state(vm->regions[0].pt.entries[0]), PAGE_NEVER, "its neighbours are not lost");
}

Test(fault, a_zap_of_a_poisoned_page_keeps_it_poisoned)
{
	vm->uffd = eventfd(0, EFD_CLOEXEC);
	vm->uffd_features = UFFD_FEATURE_POISON;
	serve_missing_fault(2);
	cr_assert_eq(pe_state(vm->regions[0].pt.entries[2]), PAGE_POISONED);
	/* MADV_DONTNEED drops the kernel's marker; the loss stays */
	vm->eng.pending[0] = (struct uffd_msg){ .event = UFFD_EVENT_REMOVE };
	vm->eng.pending[0].arg.remove.start = (uintptr_t)mem;
	vm->eng.pending[0].arg.remove.end = (uintptr_t)mem + 4 * PAGE;
	vm->eng.pending_head = 0;
	vm->eng.pending_len = 1;
	fault_apply_events(vm);
	cr_assert_eq(pe_state(vm->regions[0].pt.entries[2]), PAGE_POISONED, "a zap served the page zeros next");
}

Test(fault, without_the_poison_feature_a_lost_page_is_left_waiting_never_zeros)
{
	vm->uffd = eventfd(0, EFD_CLOEXEC);
	vm->uffd_features = 0;  /* a uffd opened without UFFD_FEATURE_POISON (before Linux 6.6) */
	serve_missing_fault(3);
	/* lost all the same, and said so; no ioctl could place zeros (each failed) */
	cr_assert_eq(pe_state(vm->regions[0].pt.entries[3]), PAGE_POISONED);
	cr_assert_eq(ctr_get(&vm->ctr.pages_poisoned), 1);
	serve_missing_fault(3);
	cr_assert_eq(ctr_get(&vm->ctr.pages_poisoned), 1, "logged and counted once");
}
