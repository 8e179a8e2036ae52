/* Description: every kind of backing a VMM may hand memsrv: a tmpfs file
 * (served and evicted like a memfd), a hugetlbfs memfd (served a fault per
 * huge page; its eviction: test_huge_pages.c), a file on a disk filesystem
 * (refused with the reason), and a region the VMM unmaps (its pages leave
 * the store). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "raw_vmm.h"
#include "memsrv.h"

#define SHMEM_ENABLED "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

static struct test_server srv;

static void setup(void) { server_start(&srv); }
static long hugepages_before = -1;  /* restored even when a test fails */

static char shmem_thp_before[32];  /* shmem_enabled to put back, "": untouched */

static void teardown(void)
{
	server_stop(&srv);
	if (shmem_thp_before[0]) {
		FILE *f = fopen(SHMEM_ENABLED, "w");
		if (f) {
			fprintf(f, "%s\n", shmem_thp_before);
			fclose(f);
		}
		shmem_thp_before[0] = 0;
	}
	guest_restore_hugepages(hugepages_before);
	hugepages_before = -1;
}

TestSuite(backing, .init = setup, .fini = teardown, .timeout = 120);

static void pattern(uint8_t *mem, size_t size, unsigned seed)
{
	for (size_t i = 0; i < size; i += 64)
		mem[i] = (uint8_t)(i / 4096 * 31 + seed);
}

static size_t count_bad(const uint8_t *mem, size_t size, unsigned seed)
{
	size_t bad = 0;
	for (size_t i = 0; i < size; i += 64)
		bad += mem[i] != (uint8_t)(i / 4096 * 31 + seed);
	return bad;
}

static struct memsrv_session *attach(const char *name, void *mem, size_t size, int fd)
{
	struct memsrv_region r = { .host_addr = mem, .size = size, .fd = fd };
	struct memsrv_vm vm = { .name = name, .regions = &r, .n_regions = 1 };
	struct memsrv_session *s = NULL;
	int ret = memsrv_attach(srv.sock, &vm, &s);
	cr_assert_eq(ret, 0, "attach %s: %s", name, memsrv_last_error());
	return s;
}

Test(backing, a_file_on_tmpfs_is_served_and_evicted)
{
	char path[] = "/dev/shm/memsrv-test-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		cr_skip_test("no /dev/shm here");
	unlink(path);
	size_t size = 4 << 20;
	cr_assert_eq(ftruncate(fd, size), 0);
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct memsrv_session *s = attach("tmpfs", mem, size, fd);
	cr_assert(memsrv_session_evictable(s));
	pattern(mem, size, 1);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "tmpfs", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, size / 4096);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(count_bad(mem, size, 1), 0);
	cr_assert_geq(memsrv_detach(s, MEMSRV_DETACH_RESTORE), 0);
	munmap(mem, size);
	close(fd);
}

Test(backing, a_file_on_a_disk_filesystem_is_refused_with_the_reason)
{
	char path[] = "/var/tmp/memsrv-test-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	struct statfs fs;
	cr_assert_eq(fstatfs(fd, &fs), 0);
	if (fs.f_type == TMPFS_MAGIC)
		cr_skip_test("/var/tmp is tmpfs here: no disk filesystem to try");
	size_t size = 1 << 20;
	cr_assert_eq(ftruncate(fd, size), 0);
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct memsrv_region r = { .host_addr = mem, .size = size, .fd = fd };
	struct memsrv_vm vm = { .name = "diskfile", .regions = &r, .n_regions = 1 };
	struct memsrv_session *s = NULL;
	cr_assert_eq(memsrv_attach(srv.sock, &vm, &s), -EOPNOTSUPP);
	cr_assert(strstr(memsrv_last_error(), "disk filesystem"), "%s", memsrv_last_error());
	cr_assert_eq(ctl_vm_count(&srv), 0);
	munmap(mem, size);
	close(fd);
}

static void reserve_hugepages(long n)
{
	hugepages_before = guest_reserve_hugepages(n);
}

Test(backing, hugetlbfs_memory_is_served_a_fault_per_huge_page)
{
	reserve_hugepages(4);
	size_t size = 4 << 20;
	int fd = memfd_create("huge", MFD_CLOEXEC | MFD_HUGETLB);
	cr_assert_geq(fd, 0, "memfd_create(MFD_HUGETLB): %s", strerror(errno));
	cr_assert_eq(ftruncate(fd, size), 0);
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct memsrv_session *s = attach("huge", mem, size, fd);
	cr_assert(memsrv_session_evictable(s), "huge pages are evicted whole (test_huge_pages.c)");
	for (size_t i = 0; i < size; i += 4096)
		cr_assert_eq(mem[i], 0, "a never-touched huge page reads zero");
	pattern(mem, size, 2);
	cr_assert_eq(count_bad(mem, size, 2), 0);
	/* a fault is counted just after the copy that woke us: give the VM
	 * thread a moment to count the second */
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "huge");
	for (int i = 0; i < 100 && m->vm_info->faults_never_touched < 2; i++) {
		memsrv__server_message__free_unpacked(m, NULL);
		usleep(10000);
		m = ctl_info_ok(&srv, "huge");
	}
	cr_assert_eq(m->vm_info->page_size, 2 << 20);
	/* one fault per 2 MiB page, not per 4 KiB (a racing retry may add one) */
	cr_assert(m->vm_info->faults_never_touched >= 2 && m->vm_info->faults_never_touched <= 4,
		  "%lu faults for two huge pages", (unsigned long)m->vm_info->faults_never_touched);
	cr_assert_eq(m->vm_info->resident_bytes, size);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_geq(memsrv_detach(s, MEMSRV_DETACH_RESTORE), 0);
	munmap(mem, size);
	close(fd);
}

/* A huge page is placed as zeros by copying a zeroed buffer (hugetlbfs has
 * no UFFDIO_ZEROPAGE).  That buffer must stay zeros whatever else the VM
 * thread reads, such as a page of another region coming back from the store. */
Test(backing, a_new_huge_page_reads_zero_after_a_stored_page_came_back)
{
	reserve_hugepages(2);
	size_t small = 1 << 20, huge = 4 << 20;
	int sfd = memfd_create("small", MFD_CLOEXEC), hfd = memfd_create("huge", MFD_CLOEXEC | MFD_HUGETLB);
	cr_assert_geq(hfd, 0, "memfd_create(MFD_HUGETLB): %s", strerror(errno));
	cr_assert(ftruncate(sfd, small) == 0 && ftruncate(hfd, huge) == 0);
	uint8_t *smem = mmap(NULL, small, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
	uint8_t *hmem = mmap(NULL, huge, PROT_READ | PROT_WRITE, MAP_SHARED, hfd, 0);
	cr_assert(smem != MAP_FAILED && hmem != MAP_FAILED);
	struct memsrv_region r[2] = { { .host_addr = smem, .size = small, .fd = sfd },
				      { .host_addr = hmem, .size = huge, .fd = hfd } };
	struct memsrv_vm vm = { .name = "mixed", .regions = r, .n_regions = 2 };
	struct memsrv_session *s = NULL;
	cr_assert_eq(memsrv_attach(srv.sock, &vm, &s), 0, "attach: %s", memsrv_last_error());
	pattern(smem, small, 4);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "mixed", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, small / 4096, "the 4 KiB region is evicted");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(count_bad(smem, small, 4), 0);  /* back from the store, one page at a time */
	for (size_t i = 0; i < huge; i += 8)
		cr_assert_eq(*(uint64_t *)(hmem + i), 0, "a never-touched huge page holds 0x%lx at +%zu",
			     (unsigned long)*(uint64_t *)(hmem + i), i);
	cr_assert_geq(memsrv_detach(s, MEMSRV_DETACH_RESTORE), 0);
	munmap(smem, small);
	munmap(hmem, huge);
	close(sfd);
	close(hfd);
}

static bool half_held(void *arg)
{
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "unmapper");
	bool done = m->vm_info->stored_pages + m->vm_info->zero_pages == *(uint64_t *)arg;
	memsrv__server_message__free_unpacked(m, NULL);
	return done;
}

/* munmap of shared memory drops the mapping, not the data: what memsrv held
 * for the unmapped half goes back into the memfd, and memsrv lets go of it */
Test(backing, unmapped_memory_goes_back_into_its_file)
{
	size_t size = 8 << 20, half = size / 2;
	int fd = memfd_create("unmap", MFD_CLOEXEC);
	cr_assert_eq(ftruncate(fd, size), 0);
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct memsrv_session *s = attach("unmapper", mem, size, fd);
	pattern(mem, size, 3);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "unmapper", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, size / 4096);
	uint64_t held = m->evict_reply->pages_evicted;
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(munmap(mem + half, half), 0);
	uint64_t want = half / 4096;
	cr_assert(wait_until(half_held, &want, 2000), "memsrv still holds pages of the unmapped half (of %lu)",
		  (unsigned long)held);
	/* the mapped half through its mapping, the other from the file (pread
	 * reads a hole as zeros without filling it, unlike a mapping) */
	uint8_t *copy = malloc(size);
	memcpy(copy, mem, half);
	cr_assert_eq(pread(fd, copy + half, half, (off_t)half), (ssize_t)half);
	cr_assert_eq(count_bad(copy, size, 3), 0);
	free(copy);
	cr_assert_geq(memsrv_detach(s, MEMSRV_DETACH_RESTORE), 0);
	munmap(mem, half);
	close(fd);
}

/* shmem transparent huge pages on for every memfd (put back in teardown),
 * or a skip where the kernel has no such setting. */
static void shmem_thp_always(void)
{
	char buf[128];
	FILE *f = fopen(SHMEM_ENABLED, "r");
	bool read = f && fgets(buf, sizeof buf, f);
	if (f)
		fclose(f);
	char *open = read ? strchr(buf, '[') : NULL, *close = open ? strchr(open, ']') : NULL;
	if (!close)
		cr_skip_test("no %s here", SHMEM_ENABLED);
	snprintf(shmem_thp_before, sizeof shmem_thp_before, "%.*s", (int)(close - open - 1), open + 1);
	f = fopen(SHMEM_ENABLED, "w");
	cr_assert(f && fprintf(f, "always\n") > 0 && fclose(f) == 0, "cannot turn shmem THP on");
}

/* With shmem THP on, a huge folio could take memsrv's 4 KiB punches as
 * zeros in place: libmemsrv marks guest RAM MADV_NOHUGEPAGE, so its pages
 * stay small, and they are evicted, freed from the memfd and come back. */
Test(backing, with_shmem_thp_on_memory_marked_nohugepage_is_evicted_and_freed)
{
	shmem_thp_always();
	size_t size = 8 << 20;
	int fd = memfd_create("thp", MFD_CLOEXEC);
	cr_assert(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
	uint8_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct memsrv_session *s = attach("thp", mem, size, fd);
	cr_assert(memsrv_session_evictable(s), "guest RAM libmemsrv marked MADV_NOHUGEPAGE is evictable");
	pattern(mem, size, 6);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "thp", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, size / 4096);
	memsrv__server_message__free_unpacked(m, NULL);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_lt((uint64_t)st.st_blocks * 512, size / 100, "the memfd still holds %lu bytes after every page was "
		     "evicted: punches that zeroed rather than freed", (unsigned long)st.st_blocks * 512);
	cr_assert_eq(count_bad(mem, size, 6), 0);
	cr_assert_geq(memsrv_detach(s, MEMSRV_DETACH_RESTORE), 0);
	munmap(mem, size);
	close(fd);
}

/* The same with a VMM of its own that leaves its mapping open to huge
 * pages: served, not evicted, and told why. */
Test(backing, with_shmem_thp_on_a_mapping_open_to_huge_pages_is_not_evicted_and_told_why)
{
	shmem_thp_always();
	size_t size = 4 << 20;
	struct guest g;
	cr_assert_eq(guest_try_map(&g, "thp-raw", size, false), 0);
	int uffd = raw_uffd(raw_missing_wp);
	raw_register(uffd, g.mem, size, raw_missing_wp);
	struct raw_hello h;
	raw_hello_init(&h, "thp-raw", raw_missing_wp, (uint64_t)(uintptr_t)g.mem, size, uffd, g.fd);
	int sock = raw_hello_send(&srv, &h);
	Memsrv__ServerMessage *m = raw_recv(sock);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY, "%s",
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "not a HelloReply");
	cr_assert_not(m->hello_reply->evictable);
	cr_assert(m->hello_reply->not_evictable_reason && strstr(m->hello_reply->not_evictable_reason, "MADV_NOHUGEPAGE"),
		  "%s", m->hello_reply->not_evictable_reason);
	memsrv__server_message__free_unpacked(m, NULL);
	close(sock);
	close(uffd);
	guest_release(&g);
}
