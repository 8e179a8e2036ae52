/* guest: guest RAM of a test's own VMM, and the pattern it is checked by. */
#include "guest.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t pattern_mixed(size_t page, size_t w, uint64_t gen)
{
	if (page % 7 == 0)
		return 0;
	if (page % 11 == 0)
		return 0x5151515151515151ull + page;
	return (uint64_t)page << 24 | (w % 32) << 8 | gen;
}

void pattern_fill(uint8_t *mem, size_t from_page, size_t to_page, pattern_word_fn *word, uint64_t gen)
{
	for (size_t p = from_page; p < to_page; p++) {
		uint64_t *words = (uint64_t *)(mem + p * GUEST_PAGE);
		for (size_t w = 0; w < GUEST_PAGE / 8; w++)
			words[w] = word(p, w, gen);
	}
}

size_t pattern_count_bad(const uint8_t *mem, size_t from_page, size_t to_page, pattern_word_fn *word, uint64_t gen)
{
	size_t bad = 0;
	for (size_t p = from_page; p < to_page; p++) {
		const uint64_t *words = (const uint64_t *)(mem + p * GUEST_PAGE);
		for (size_t w = 0; w < GUEST_PAGE / 8; w++)
			if (words[w] != word(p, w, gen)) {
				bad++;
				break;
			}
	}
	return bad;
}

int guest_try_map(struct guest *g, const char *name, size_t size, bool huge)
{
	memset(g, 0, sizeof *g);
	g->size = size;
	g->fd = memfd_create(name, MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));
	if (g->fd < 0)
		return -errno;
	if (ftruncate(g->fd, (off_t)size)) {
		int err = -errno;
		close(g->fd);
		return err;
	}
	g->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | (huge ? MAP_NORESERVE : 0), g->fd, 0);
	if (g->mem == MAP_FAILED) {
		int err = -errno;
		close(g->fd);
		return err;
	}
	return 0;
}

int guest_try_attach(struct guest *g, const char *sock, const char *name, const struct memsrv_vm *settings)
{
	struct memsrv_region r = { .host_addr = g->mem, .size = g->size, .fd = g->fd };
	struct memsrv_vm vm = settings ? *settings : (struct memsrv_vm){ 0 };
	vm.name = name;
	vm.regions = &r;
	vm.n_regions = 1;
	return memsrv_attach(sock, &vm, &g->s);
}

void guest_attach(struct guest *g, const struct test_server *srv, const char *name, size_t size,
		  const struct memsrv_vm *settings)
{
	int ret = guest_try_map(g, name, size, false);
	cr_assert_eq(ret, 0, "guest RAM for %s: %s", name, strerror(-ret));
	ret = guest_try_attach(g, srv->sock, name, settings);
	cr_assert_eq(ret, 0, "attach: %s (%s)", strerror(-ret), memsrv_last_error());
}

uint64_t guest_allocated(const struct guest *g)
{
	struct stat st;
	cr_assert_eq(fstat(g->fd, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

void guest_release(struct guest *g)
{
	munmap(g->mem, g->size);
	close(g->fd);
}

#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

long guest_reserve_hugepages(long n)
{
	long before = read_long(NR_HUGEPAGES);
	if (before < 0 || !write_long(NR_HUGEPAGES, before + n) || read_long(NR_HUGEPAGES) < before + n) {
		if (before >= 0)
			write_long(NR_HUGEPAGES, before);
		cr_skip_test("cannot reserve %ld 2 MiB huge pages here (%s)", n, NR_HUGEPAGES);
	}
	return before;
}

void guest_restore_hugepages(long before)
{
	if (before >= 0)
		write_long(NR_HUGEPAGES, before);
}
