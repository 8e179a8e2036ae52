/* Description: the one reading of a uffd ioctl's result (uffd_classify,
 * for every errno) and the one EAGAIN retry (uffd_op_run), the latter on a
 * real userfaultfd over a memfd mapping of this process: a REMOVE pending
 * makes the ioctl say EAGAIN, the helper reads and applies it and tries
 * again, or stops without a failure when the REMOVE discarded the page;
 * an unmapped range and an exited process are "gone". */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"
#include "uffd_compat.h"
#include "uffd_op.h"

#define PAGE 4096u
#define PAGES 4u

/* --- the classifier: pure ------------------------------------------------ */

Test(uffd_classify, every_errno_has_one_meaning)
{
	cr_assert_eq(uffd_classify(0), UFFD_PLACED);
	for (int e = 1; e < 4096; e++) {
		enum uffd_outcome want = e == EEXIST ? UFFD_EXISTS
				       : e == EAGAIN ? UFFD_RETRY
				       : e == ESRCH || e == ENOENT || e == EFAULT ? UFFD_GONE
				       : UFFD_ERROR;
		cr_assert_eq(uffd_classify(-e), want, "-%d (%s) is %s, not %s", e, strerror(e),
			     uffd_outcome_name(uffd_classify(-e)), uffd_outcome_name(want));
		cr_assert_eq(uffd_vmm_gone(-e), want == UFFD_GONE);
	}
	/* ENOSPC meant "gone" before Linux 4.18 only; ENOMEM is no memory for the page */
	cr_assert_eq(uffd_classify(-ENOSPC), UFFD_ERROR);
	cr_assert_eq(uffd_classify(-ENOMEM), UFFD_ERROR);
}

/* --- the retry helper ---------------------------------------------------- */

static struct vm *vm;
static int memfd = -1;
static uint8_t *mem;  /* PAGES pages of memfd, registered MISSING with vm->uffd */

static int open_uffd(uint64_t features)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -1;
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	if (ioctl(fd, UFFDIO_API, &api)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void setup(void)
{
	vm = vm_new(NULL);
	cr_assert(vm);
	snprintf(vm->name, sizeof vm->name, "unit");
	vm->uffd = open_uffd(UFFD_FEATURE_EVENT_REMOVE);
	if (vm->uffd < 0)
		cr_skip_test("no userfaultfd with UFFD_FEATURE_EVENT_REMOVE here: %m");
	memfd = memfd_create("uffd_op", MFD_CLOEXEC);
	cr_assert_geq(memfd, 0);
	cr_assert_eq(ftruncate(memfd, PAGES * PAGE), 0);
	mem = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)mem, .len = PAGES * PAGE }, .mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	cr_assert_eq(ioctl(vm->uffd, UFFDIO_REGISTER, &reg), 0, "%m");
	struct region r = { .host_addr = (uintptr_t)mem, .size = PAGES * PAGE, .page_size = PAGE, .fd = dup(memfd) };
	char why[128];
	cr_assert_eq(vm_add_region(vm, &r, why, sizeof why), 0, "%s", why);
}

static void teardown(void)
{
	vm_destroy(vm);  /* closes the uffd: a madvise still waiting on its event goes on */
	if (mem)
		munmap(mem, PAGES * PAGE);
	if (memfd >= 0)
		close(memfd);
}

TestSuite(uffd_op, .init = setup, .fini = teardown);

/* One UFFDIO_COPY of a page of 'c' bytes to page idx, counted. */
struct copy {
	unsigned idx;
	unsigned calls;
	page_entry was;   /* the page's entry before: still wanted while it is so */
	uint8_t src[PAGE];
};

static int copy_page(struct vm *v, void *arg)
{
	struct copy *c = arg;
	c->calls++;
	return uffd_copy(v->uffd, (uintptr_t)mem + c->idx * PAGE, c->src, PAGE, 0, NULL);
}

static bool entry_unchanged(struct vm *v, void *arg)
{
	const struct copy *c = arg;
	return v->regions[0].pt.entries[c->idx] == c->was;
}

static const struct uffd_op copy_op = { .run = copy_page, .wanted = entry_unchanged };

static struct copy *new_copy(unsigned idx, int fill)
{
	static struct copy c;
	c = (struct copy){ .idx = idx, .was = vm->regions[0].pt.entries[idx] };
	memset(c.src, fill, PAGE);
	return &c;
}

/* The VMM zaps a range (MADV_DONTNEED) from another thread: the kernel
 * queues a REMOVE and, until memsrv reads it, says EAGAIN to every ioctl;
 * the madvise returns once it is read. */
struct zap {
	pthread_t thread;
	unsigned first, count;
	int err;
};

static void *zap_range(void *arg)
{
	struct zap *z = arg;
	if (madvise(mem + z->first * PAGE, z->count * PAGE, MADV_DONTNEED))
		z->err = errno;
	return NULL;
}

static void zap_start(struct zap *z, unsigned first, unsigned count)
{
	*z = (struct zap){ .first = first, .count = count };
	cr_assert_eq(pthread_create(&z->thread, NULL, zap_range, z), 0);
	/* the REMOVE is queued (and the mm marked changing before it) */
	struct pollfd p = { .fd = vm->uffd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1, "no REMOVE event came");
}

static void zap_end(struct zap *z)
{
	cr_assert_eq(pthread_join(z->thread, NULL), 0);
	cr_assert_eq(z->err, 0, "madvise: %s", strerror(z->err));
}

static void page_in_file(unsigned idx, int fill)
{
	uint8_t got[PAGE], want[PAGE];
	memset(want, fill, PAGE);
	cr_assert_eq(pread(memfd, got, PAGE, (off_t)idx * PAGE), (ssize_t)PAGE);
	cr_assert(!memcmp(got, want, PAGE), "page %u does not hold what was placed", idx);
}

Test(uffd_op, a_success_is_one_call_and_no_resync)
{
	struct copy *c = new_copy(1, 0x11);
	int err = -1;
	cr_assert_eq(uffd_op_run(vm, &copy_op, c, &err), UFFD_PLACED);
	cr_assert_eq(err, 0);
	cr_assert_eq(c->calls, 1);
	cr_assert_eq(ctr_get(&vm->ctr.eagain_retries), 0);
	page_in_file(1, 0x11);
}

Test(uffd_op, a_remove_pending_is_read_and_the_copy_tried_again)
{
	struct zap z;
	zap_start(&z, 3, 1);  /* another page: this one is still wanted */
	struct copy *c = new_copy(1, 0x22);
	int err = -1;
	enum uffd_outcome o = uffd_op_run(vm, &copy_op, c, &err);
	zap_end(&z);
	cr_assert_eq(o, UFFD_PLACED, "%s (%s)", uffd_outcome_name(o), strerror(-err));
	cr_assert_geq(c->calls, 2, "the first copy did not meet the pending REMOVE");
	cr_assert_eq(ctr_get(&vm->ctr.eagain_retries), c->calls - 1, "one resync per EAGAIN");
	page_in_file(1, 0x22);
}

Test(uffd_op, a_remove_that_discards_the_page_is_no_failure)
{
	/* page 1 is resident, and the VMM discards it as QEMU does: punch
	 * the file, then zap the mapping */
	page_table_set(&vm->regions[0].pt, 1, pe_make(PAGE_RESIDENT, 0, 0));
	atomic_fetch_add(&vm->resident_bytes, PAGE);
	cr_assert_eq(fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PAGE, PAGE), 0);
	struct zap z;
	zap_start(&z, 1, 1);
	struct copy *c = new_copy(1, 0x33);
	int err = 0;
	enum uffd_outcome o = uffd_op_run(vm, &copy_op, c, &err);
	zap_end(&z);
	cr_assert_eq(o, UFFD_DISCARDED, "%s (%s)", uffd_outcome_name(o), strerror(-err));
	cr_assert_eq(c->calls, 1, "tried again on a page no longer wanted");
	cr_assert_eq(ctr_get(&vm->ctr.eagain_retries), 1);
	cr_assert_eq(pe_state(vm->regions[0].pt.entries[1]), PAGE_NEVER, "the resync applied the REMOVE");
	cr_assert_eq(ctr_get(&vm->ctr.removed_pages), 1);
	cr_assert_not(uffd_op_failed(vm, o, err, "copy", (uintptr_t)mem + PAGE));
	cr_assert_eq(ctr_get(&vm->ctr.fault_errors), 0);
	cr_assert_not(vm->eng.vmm_gone);
}

Test(uffd_op, the_vm_stopping_ends_the_retries_without_a_failure)
{
	struct zap z;
	zap_start(&z, 3, 1);
	atomic_store(&vm->thr.stopping, true);
	struct copy *c = new_copy(1, 0x44);
	int err = 0;
	enum uffd_outcome o = uffd_op_run(vm, &copy_op, c, &err);
	cr_assert_eq(o, UFFD_RETRY, "%s", uffd_outcome_name(o));
	cr_assert_eq(err, -EAGAIN);
	cr_assert_eq(c->calls, 1);
	cr_assert_eq(ctr_get(&vm->ctr.eagain_retries), 0, "no resync while stopping");
	cr_assert_not(uffd_op_failed(vm, o, err, "copy", (uintptr_t)mem + PAGE));
	cr_assert_eq(ctr_get(&vm->ctr.fault_errors), 0);
	fault_drain(vm);  /* lets the madvise go on */
	zap_end(&z);
}

Test(uffd_op, a_page_already_there_exists_and_is_not_retried)
{
	uint8_t page[PAGE];
	memset(page, 0x55, PAGE);
	/* another mapping of the memfd filled it */
	cr_assert_eq(pwrite(memfd, page, PAGE, 2 * PAGE), (ssize_t)PAGE);
	struct copy *c = new_copy(2, 0x66);
	int err = 0;
	cr_assert_eq(uffd_op_run(vm, &copy_op, c, &err), UFFD_EXISTS);
	cr_assert_eq(err, -EEXIST);
	cr_assert_eq(c->calls, 1);
	page_in_file(2, 0x55);
	/* the caller's to handle (wake, reappeared); left unhandled it counts */
	cr_assert(uffd_op_failed(vm, UFFD_EXISTS, err, "copy", (uintptr_t)mem + 2 * PAGE));
	cr_assert_eq(ctr_get(&vm->ctr.fault_errors), 1);
}

Test(uffd_op, an_unmapped_range_is_gone)
{
	cr_assert_eq(munmap(mem, PAGES * PAGE), 0);
	struct copy *c = new_copy(1, 0x77);
	int err = 0;
	enum uffd_outcome o = uffd_op_run(vm, &copy_op, c, &err);
	mem = NULL;  /* teardown must not unmap what may be there now */
	cr_assert_eq(o, UFFD_GONE, "%s (%s)", uffd_outcome_name(o), strerror(-err));
	cr_assert_eq(err, -ENOENT);
	cr_assert_not(uffd_op_failed(vm, o, err, "copy", 0));
	cr_assert(vm->eng.vmm_gone, "gone stops the VM's ioctls");
	cr_assert_eq(ctr_get(&vm->ctr.fault_errors), 0);
}

/* A child opens a uffd on its own memory, hands it over and exits: the
 * address space behind the uffd is gone. */
static int uffd_of_an_exited_process(uint64_t *addr)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open_uffd(0);
		void *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)m, .len = PAGE }, .mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (fd < 0 || m == MAP_FAILED || ioctl(fd, UFFDIO_REGISTER, &reg))
			_exit(1);
		uint64_t a = (uintptr_t)m;
		char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
		struct iovec iov = { .iov_base = &a, .iov_len = sizeof a };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
		_exit(sendmsg(sv[1], &msg, 0) == (ssize_t)sizeof a ? 0 : 1);
	}
	close(sv[1]);
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = addr, .iov_len = sizeof *addr };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	cr_assert_eq(recvmsg(sv[0], &msg, 0), (ssize_t)sizeof *addr, "the child sent no uffd");
	close(sv[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	int fd;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fd);
	return fd;
}

static uint64_t child_addr;

static int copy_to_child(struct vm *v, void *arg)
{
	return uffd_copy(v->uffd, child_addr, arg, PAGE, 0, NULL);
}

Test(uffd_op, the_uffd_of_an_exited_process_is_gone)
{
	close(vm->uffd);
	vm->uffd = uffd_of_an_exited_process(&child_addr);
	static const struct uffd_op op = { .run = copy_to_child };
	static uint8_t src[PAGE];
	int err = 0;
	enum uffd_outcome o = uffd_op_run(vm, &op, src, &err);
	cr_assert_eq(o, UFFD_GONE, "%s (%s)", uffd_outcome_name(o), strerror(-err));
	cr_assert_eq(err, -ESRCH);
	cr_assert_not(uffd_op_failed(vm, o, err, "copy", child_addr));
	cr_assert(vm->eng.vmm_gone);
}
