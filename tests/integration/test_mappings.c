/* Description: guest RAM seen through more than the VMM's one registered
 * mapping — a forked child, another process mapping the memfd, a second VM
 * on the same memfd or uffd, MADV_DONTNEED, munmap — and the explicit
 * discard: none of them may lose a page. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "memsrv.h"
#include "raw_vmm.h"

#define PAGE GUEST_PAGE

static struct test_server srv;

static void setup(void)
{
	/* a scan for other mappings every 200 ms keeps the waits short */
	static const char *const opts[] = { "--mapping-scan-ms", "200", NULL };
	server_start_with(&srv, opts);
}
static void teardown(void) { server_stop(&srv); }

TestSuite(mappings, .init = setup, .fini = teardown, .timeout = 120);

static uint64_t word_of(size_t page, size_t w, uint64_t gen)
{
	(void)gen;
	return page % 7 == 3 ? 0 : (uint64_t)page << 24 | (w % 32) | 0x5a00000000000000ull;
}

static size_t count_bad(const uint8_t *mem, size_t from_page, size_t to_page)
{
	return pattern_count_bad(mem, from_page, to_page, word_of, 0);
}

/* A guest of size bytes, filled, every page of it evicted. */
static void guest_attach_evicted(struct guest *g, const char *name, size_t size)
{
	guest_attach(g, &srv, name, size, &(struct memsrv_vm){ .flags = MEMSRV_VM_NO_BALLOON });
	pattern_fill(g->mem, 0, size / PAGE, word_of, 0);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, name, 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, size / PAGE);
	memsrv__server_message__free_unpacked(m, NULL);
}

/* Detached with restore (unless the test detached it) and released. */
static void detach_and_release(struct guest *g)
{
	if (g->s)
		cr_assert_geq(memsrv_detach(g->s, MEMSRV_DETACH_RESTORE), 0);
	guest_release(g);
}

#define INFO(vm, field) CTL_INFO(&srv, vm, field)

/* The child's read of every page: a sum, so nothing is optimised away. */
static uint64_t read_all(const uint8_t *mem, size_t size)
{
	uint64_t sum = 0;
	for (size_t off = 0; off < size; off += PAGE)
		sum += mem[off + 8];
	return sum;
}

Test(mappings, a_forked_child_reading_guest_ram_loses_nothing)
{
	struct guest g;
	guest_attach_evicted(&g, "forker", 16 << 20);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		/* libmemsrv marked guest RAM MADV_DONTFORK (as QEMU does): the
		 * child has no such mapping and dies of SIGSEGV; without it, its
		 * reads fill the holes memsrv punched with zeros.  The default
		 * action, not a sanitizer's report, is what the parent expects. */
		signal(SIGSEGV, SIG_DFL);
		_exit(read_all(g.mem, g.size) == 0 ? 1 : 0);
	}
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		  "the child read guest RAM it should not have inherited (status 0x%x)", status);
	cr_assert_eq(count_bad(g.mem, 0, g.size / PAGE), 0, "guest RAM changed under a fork");
	detach_and_release(&g);
}

static bool nothing_stored(void *arg)
{
	return INFO((const char *)arg, stored_pages) == 0;
}

struct unprotected {
	const char *vm;
	bool want;
};

static bool unprotected_is(void *arg)
{
	const struct unprotected *u = arg;
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, u->vm);
	bool is = m->vm_info->n_conditions > 0 && !strcmp(m->vm_info->conditions[0], "unprotected-mapping");
	memsrv__server_message__free_unpacked(m, NULL);
	return is == u->want;
}

/* A process of its own (a dump tool, a vhost-user backend) maps the memfd:
 * memsrv cannot see its accesses, so it puts every page back and evicts
 * nothing while that mapping lives, and says why. */
Test(mappings, another_process_mapping_the_memfd_stops_eviction_until_it_goes)
{
	struct guest g;
	guest_attach_evicted(&g, "mapped-twice", 8 << 20);
	cr_assert_gt(INFO("mapped-twice", stored_pages), 0);
	int go[2], done[2];
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(done), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		uint8_t *view = mmap(NULL, g.size, PROT_READ, MAP_SHARED, g.fd, 0);
		char c = 1;
		if (view == MAP_FAILED || write(done[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(2);
		/* told memsrv has put every page back: all of them read right */
		_exit(count_bad(view, 0, g.size / PAGE) ? 1 : 0);
	}
	char c;
	cr_assert_eq(read(done[0], &c, 1), 1);
	struct unprotected u = { "mapped-twice", true };
	cr_assert(wait_until(unprotected_is, &u, 10000), "memsrv never noticed the second mapping");
	cr_assert(wait_until(nothing_stored, (void *)"mapped-twice", 5000), "pages are still held outside the memfd");
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "mapped-twice");
	cr_assert_not(m->vm_info->evictable);
	cr_assert(strstr(m->vm_info->not_evictable_reason, "maps"), "reason: %s", m->vm_info->not_evictable_reason);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(write(go[1], "x", 1), 1);
	int status;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the second mapping read wrong data (0x%x)", status);
	cr_assert_eq(count_bad(g.mem, 0, g.size / PAGE), 0);
	/* the mapping is gone: eviction resumes */
	u.want = false;
	cr_assert(wait_until(unprotected_is, &u, 10000), "eviction never resumed");
	uint64_t resident = INFO("mapped-twice", resident_bytes);
	m = ctl_evict_ok(&srv, "mapped-twice", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, resident / PAGE);
	cr_assert_gt(resident, g.size / 2, "the pages came back");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(count_bad(g.mem, 0, g.size / PAGE), 0);
	detach_and_release(&g);
}

Test(mappings, madv_dontneed_on_shared_memory_is_no_discard)
{
	struct guest g;
	guest_attach_evicted(&g, "dontneed", 8 << 20);
	cr_assert_eq(madvise(g.mem, g.size / 2, MADV_DONTNEED), 0);
	usleep(100000);  /* the REMOVE event reaches the VM thread */
	cr_assert_eq(count_bad(g.mem, 0, g.size / PAGE), 0, "a PTE zap lost pages");
	cr_assert_eq(INFO("dontneed", removed_pages), 0);
	detach_and_release(&g);
}

static bool nothing_held(void *arg)
{
	return INFO((const char *)arg, stored_pages) + INFO((const char *)arg, zero_pages) == 0;
}

Test(mappings, munmap_and_remap_finds_every_page_in_the_memfd)
{
	struct guest g;
	guest_attach_evicted(&g, "remapper", 8 << 20);
	cr_assert_eq(munmap(g.mem, g.size), 0);
	/* the pages go back into the memfd when memsrv reads the UNMAP event */
	cr_assert(wait_until(nothing_held, (void *)"remapper", 5000), "memsrv still holds pages of an unmapped range");
	uint8_t *again = mmap(g.mem, g.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, g.fd, 0);
	cr_assert_eq(again, g.mem);
	cr_assert_eq(count_bad(g.mem, 0, g.size / PAGE), 0, "pages were lost with the mapping");
	cr_assert_geq(memsrv_detach(g.s, 0), 0);
	g.s = NULL;
	detach_and_release(&g);
}

Test(mappings, a_discard_outside_the_vm_is_refused)
{
	struct guest g;
	guest_attach_evicted(&g, "discard-bad", 1 << 20);
	cr_assert_eq(memsrv_discard(g.s, g.mem + g.size, PAGE), -EINVAL);
	cr_assert(strstr(memsrv_last_error(), "not guest RAM"), "%s", memsrv_last_error());
	cr_assert_eq(memsrv_discard(g.s, g.mem + 1, PAGE), -EINVAL);
	cr_assert_eq(count_bad(g.mem, 0, g.size / PAGE), 0);
	detach_and_release(&g);
}

Test(mappings, a_second_vm_on_the_same_memfd_is_refused)
{
	struct guest g;
	guest_attach_evicted(&g, "first", 4 << 20);
	uint8_t *alias = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd, 0);
	cr_assert_neq(alias, MAP_FAILED);
	struct memsrv_region r = { .host_addr = alias, .size = g.size, .fd = g.fd };
	struct memsrv_vm vm = { .name = "second", .regions = &r, .n_regions = 1, .flags = MEMSRV_VM_NO_RECONNECT };
	struct memsrv_session *s;
	int ret = memsrv_attach(srv.sock, &vm, &s);
	cr_assert_eq(ret, -EBUSY, "attach: %d (%s)", ret, memsrv_last_error());
	cr_assert(strstr(memsrv_last_error(), "first"), "the refusal names the VM that has it: %s", memsrv_last_error());
	munmap(alias, g.size);
	cr_assert_eq(count_bad(g.mem, 0, g.size / PAGE), 0);
	detach_and_release(&g);
}

/* A Hello for one 1 MiB memfd registered on uffd, sent on a connection of
 * its own; returns the connection. */
static int raw_attach(const char *name, int uffd, uint8_t **mem)
{
	struct guest ram;
	int ret = guest_try_map(&ram, name, 1 << 20, false);
	cr_assert_eq(ret, 0, "%s", strerror(-ret));
	*mem = ram.mem;
	raw_register(uffd, ram.mem, ram.size, raw_missing);
	struct raw_hello h;
	raw_hello_init(&h, name, raw_missing, (uint64_t)(uintptr_t)ram.mem, ram.size, dup(uffd), ram.fd);
	int fd = raw_hello_send(&srv, &h);
	close(h.fds[0]);
	close(ram.fd);
	return fd;
}

Test(mappings, a_second_vm_on_the_same_uffd_is_refused)
{
	int uffd = raw_uffd(raw_missing);
	uint8_t *a, *b;
	int first = raw_attach("uffd-a", uffd, &a);
	expect_hello_reply(raw_recv(first));
	int second = raw_attach("uffd-b", uffd, &b);
	Memsrv__ServerMessage *m = raw_recv(second);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "a second VM was attached on the same uffd");
	cr_assert_eq(m->error->errno_code, EBUSY);
	cr_assert(strstr(m->error->message, "uffd-a"), "%s", m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(ctl_vm_count(&srv), 1);
	close(second);
	close(first);
	close(uffd);
}
