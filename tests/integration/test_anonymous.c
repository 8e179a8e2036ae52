/* Description: guest RAM of anonymous private memory (fd -1, as Firecracker
 * and Cloud Hypervisor map it by default), the test process its VMM:
 * memsrv reads it through /proc/PID/mem, libmemsrv's drop thread drops what
 * memsrv saved, and every byte comes back, under writers too. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "memsrv.h"
#include "racers.h"
#include "raw_vmm.h"
#include "uffd_compat.h"

#define PAGE GUEST_PAGE
#define MIB (1024 * 1024)

static struct test_server srv;

static void setup(void) { server_start(&srv); }
static void teardown(void) { server_stop(&srv); }

TestSuite(anonymous, .init = setup, .fini = teardown, .timeout = 120);

struct anon_guest {
	uint8_t *mem;
	size_t size;
	struct memsrv_session *s;
};

static void anon_attach(struct anon_guest *g, const char *name, size_t size, uint64_t limit)
{
	g->size = size;
	g->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(g->mem, MAP_FAILED);
	struct memsrv_region r = { .host_addr = g->mem, .size = size, .fd = -1 };
	struct memsrv_vm vm = { .name = name, .regions = &r, .n_regions = 1, .limit_bytes = limit };
	cr_assert_eq(memsrv_attach(srv.sock, &vm, &g->s), 0, "attach: %s", memsrv_last_error());
}

/* Pages of the mapping the kernel holds for this process: what memsrv's
 * eviction must take away, seen from outside memsrv. */
static size_t pages_present(const struct anon_guest *g)
{
	size_t n = g->size / PAGE, present = 0;
	unsigned char *vec = malloc(n);
	cr_assert(vec);
	cr_assert_eq(mincore(g->mem, g->size, vec), 0, "mincore: %s", strerror(errno));
	for (size_t i = 0; i < n; i++)
		present += vec[i] & 1;
	free(vec);
	return present;
}

Test(anonymous, evicted_pages_leave_the_vmm_and_come_back_whole)
{
	struct anon_guest g;
	anon_attach(&g, "anon", 16 * MIB, 0);
	cr_assert(memsrv_session_evictable(g.s), "anonymous memory with a drop thread is evictable");
	size_t pages = g.size / PAGE;
	pattern_fill(g.mem, 0, pages, pattern_mixed, 1);
	cr_assert_geq(pages_present(&g), pages * 99 / 100, "filled: %zu of %zu present", pages_present(&g), pages);

	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "anon", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, pages, "evicted %lu of %zu",
		     (unsigned long)m->evict_reply->pages_evicted, pages);
	cr_assert_gt(m->evict_reply->zero_pages, 0, "every 7th page is zero");
	memsrv__server_message__free_unpacked(m, NULL);
	size_t present = pages_present(&g);
	cr_assert_lt(present, pages / 100, "the VMM dropped what memsrv saved: %zu of %zu pages still present", present,
		     pages);

	/* every page faults back from memsrv, whole */
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages, pattern_mixed, 1), 0);
	m = ctl_info_ok(&srv, "anon");
	cr_assert_gt(m->vm_info->faults_stored, 0);
	cr_assert_eq(m->vm_info->removed_pages, 0, "memsrv's own drops are not the guest's discards");
	memsrv__server_message__free_unpacked(m, NULL);

	/* evicted again, then restored by the detach: the pages stay the VMM's */
	pattern_fill(g.mem, 0, pages / 2, pattern_mixed, 2);
	memsrv__server_message__free_unpacked(ctl_evict_ok(&srv, "anon", 0, true), NULL);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	cr_assert_eq(pattern_count_bad(g.mem, 0, pages / 2, pattern_mixed, 2), 0);
	cr_assert_eq(pattern_count_bad(g.mem, pages / 2, pages, pattern_mixed, 1), 0);
	munmap(g.mem, g.size);
}

Test(anonymous, a_limit_holds_while_threads_rewrite_pages_that_evictions_race)
{
	const uint64_t limit = 8 * MIB;
	struct anon_guest g;
	anon_attach(&g, "busy", 24 * MIB, limit);
	size_t pages = g.size / PAGE;
	struct racing_run run;
	racing_run_start(&run, g.mem, pages, 12000, 7, srv.sock, "busy");
	size_t bad = racing_run_finish(&run);
	cr_assert_gt(run.ev.runs, 0, "no eviction of the whole VM ran during the writes");
	/* and every page once more, after all the writes */
	bad += racing_run_count_bad(&run);
	cr_assert_eq(bad, 0, "%zu pages read other than what was written last", bad);

	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "busy");
	cr_assert_leq(m->vm_info->resident_bytes, limit, "resident %lu over the limit",
		      (unsigned long)m->vm_info->resident_bytes);
	cr_assert_gt(m->vm_info->evictions_total, pages - limit / PAGE, "the writes went past the limit: %lu evictions",
		     (unsigned long)m->vm_info->evictions_total);
	cr_assert_gt(m->vm_info->faults_stored, 0);
	cr_log_info("%lu evictions of the whole VM, %lu writes waited for one", (unsigned long)run.ev.runs,
		    (unsigned long)m->vm_info->faults_wp);
	memsrv__server_message__free_unpacked(m, NULL);
	/* what the kernel holds for the VMM is what memsrv counts, give or take
	 * the zero pages of reads that never wrote */
	size_t present = pages_present(&g);
	cr_assert_leq(present * PAGE, limit + 2 * MIB, "%zu pages present under a limit of %lu pages", present,
		      (unsigned long)(limit / PAGE));
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	bad = racing_run_count_bad(&run);
	racing_run_free(&run);
	cr_assert_eq(bad, 0, "after the detach, %zu pages differ", bad);
	munmap(g.mem, g.size);
}

/* A VMM by hand on anonymous memory: size bytes of this process
 * registered on a uffd for missing and write-protect faults, and its
 * Hello, with a drop channel of sock_type (0: none) whose end chan[0] is
 * the test's. */
struct raw_anon {
	uint8_t *mem;
	size_t size;
	int uffd, chan[2];
	struct raw_hello h;
};

static void raw_anon_init(struct raw_anon *v, const char *name, size_t size, int sock_type)
{
	struct raw_mode mode = { UFFD_FEATURE_PAGEFAULT_FLAG_WP, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP };
	v->size = size;
	v->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(v->mem, MAP_FAILED);
	v->uffd = raw_uffd(mode);
	raw_register(v->uffd, v->mem, size, mode);
	raw_hello_init(&v->h, name, mode, (uint64_t)(uintptr_t)v->mem, size, v->uffd, -1);
	v->h.region.backing = MEMSRV__BACKING__BACKING_ANON;
	v->h.region.has_fd_index = 0;
	v->h.nfds = 1;
	v->chan[0] = v->chan[1] = -1;
	if (!sock_type)
		return;
	cr_assert_eq(socketpair(AF_UNIX, sock_type, 0, v->chan), 0);
	v->h.fds[1] = v->chan[1];
	v->h.nfds = 2;
	v->h.hello.has_drop_fd_index = 1;
	v->h.hello.drop_fd_index = 1;
}

static void raw_anon_close(struct raw_anon *v)
{
	for (int i = 0; i < 2; i++)
		if (v->chan[i] >= 0)
			close(v->chan[i]);
	if (v->uffd >= 0)
		close(v->uffd);
	munmap(v->mem, v->size);
}

Test(anonymous, a_vmm_without_a_drop_channel_is_served_and_told_why_not_evicted)
{
	struct raw_anon v;
	raw_anon_init(&v, "nodrop", 1 * MIB, 0);
	int c = raw_hello_send(&srv, &v.h);
	Memsrv__ServerMessage *m = raw_recv(c);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY);
	cr_assert_not(m->hello_reply->evictable);
	cr_assert(strstr(m->hello_reply->not_evictable_reason, "drop channel"), "reason: %s",
		  m->hello_reply->not_evictable_reason);
	memsrv__server_message__free_unpacked(m, NULL);
	m = NULL;
	cr_assert_eq(ctl_evict(srv.sock, "nodrop", 0, true, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "evicting it must be refused");
	cr_assert(strstr(m->error->message, "drop channel"), "reason given: %s", m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
	close(c);
	raw_anon_close(&v);
}

Test(anonymous, a_drop_channel_that_is_not_a_seqpacket_socket_is_refused)
{
	struct raw_anon v;
	raw_anon_init(&v, "baddrop", 1 * MIB, SOCK_STREAM);
	int c = raw_hello_send(&srv, &v.h);
	Memsrv__ServerMessage *m = raw_recv(c);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR);
	cr_assert_str_eq(m->error->field, "hello.drop_fd_index");
	cr_assert(strstr(m->error->message, "SOCK_SEQPACKET"), "reason: %s", m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(ctl_vm_count(&srv), 0);
	close(c);
	raw_anon_close(&v);
}

/* Touches every page of a region: the faults past the limit wait for an
 * eviction, and the eviction for a drop that never comes. */
struct toucher {
	uint8_t *mem;
	size_t size;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	for (size_t off = 0; off < t->size; off += PAGE)
		t->mem[off] = (uint8_t)(off / PAGE) | 1;
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

Test(anonymous, a_drop_thread_that_never_answers_stalls_its_own_vm_only)
{
	/* a VMM whose drop channel takes requests and never answers them */
	struct raw_anon v;
	raw_anon_init(&v, "silent", 8 * MIB, SOCK_SEQPACKET);
	Memsrv__Quota quota = MEMSRV__QUOTA__INIT;
	quota.has_limit_bytes = 1;
	quota.limit_bytes = 2 * MIB;
	v.h.hello.quota = &quota;
	int c = raw_hello_send(&srv, &v.h);
	Memsrv__ServerMessage *m = raw_recv(c);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY);
	cr_assert(m->hello_reply->evictable, "reason: %s", m->hello_reply->not_evictable_reason);
	memsrv__server_message__free_unpacked(m, NULL);

	struct toucher t = { v.mem, v.size };
	pthread_t tt;
	cr_assert_eq(pthread_create(&tt, NULL, toucher_main, &t), 0);
	struct pollfd p = { .fd = v.chan[0], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 10000), 1, "memsrv asked for no drop once past the limit");

	/* its VM thread waits on the drop; the server and every other VM go on */
	struct guest other;
	guest_attach(&other, &srv, "other", 4 * MIB, &(struct memsrv_vm){ .limit_bytes = 2 * MIB });
	pattern_fill(other.mem, 0, other.size / PAGE, pattern_mixed, 1);
	cr_assert_eq(pattern_count_bad(other.mem, 0, other.size / PAGE, pattern_mixed, 1), 0);
	m = ctl_info_ok(&srv, "silent");
	cr_assert_leq(m->vm_info->resident_bytes, 2 * MIB);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_geq(memsrv_detach(other.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	guest_release(&other);

	/* and memsrv stops in bounded time: it gives the drop 2 s */
	uint64_t t0 = now_ms();
	server_stop(&srv);
	uint64_t took = now_ms() - t0;
	cr_assert_lt(took, 10000, "memsrv took %lu ms to stop", (unsigned long)took);
	close(v.uffd);  /* the toucher's faults are the kernel's again */
	v.uffd = -1;
	close(c);
	pthread_join(tt, NULL);
	/* what memsrv held came back before it stopped, or was never dropped */
	for (size_t off = 0; off < v.size; off += PAGE)
		cr_assert_eq(v.mem[off], (uint8_t)(off / PAGE) | 1, "page %zu", off / PAGE);
	raw_anon_close(&v);
	server_start(&srv);  /* for the teardown */
}
