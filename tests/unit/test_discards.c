/* Description: what REMOVE, UNMAP and the VMM's Discard do to a VM's page
 * table (discards.c), on a real memfd and store but no userfaultfd: of
 * shared memory only a Discard drops what memsrv holds, a REMOVE forgets
 * only what the VMM punched itself, an UNMAP writes the held pages back
 * into the file; of anonymous memory every one of them discards. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "discards.h"
#include "fault.h"

#define PAGE 4096u
#define PAGES 8u

static struct store *store;
static struct vm *vm;
static struct region *r;
static int memfd;
static uint8_t *mem;  /* the address range the region claims; never touched */

/* Page i's content: i + 1 in every byte (never all zero). */
static void content(uint8_t *page, unsigned i) { memset(page, (int)(i + 1), PAGE); }

static void setup_with(int fd)
{
	struct store_config cfg = { 0 };
	store = store_create(&cfg);
	cr_assert(store);
	vm = vm_new(store);
	cr_assert(vm);
	snprintf(vm->name, sizeof vm->name, "unit");
	mem = mmap(NULL, PAGES * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct region reg = { .host_addr = (uintptr_t)mem, .size = PAGES * PAGE, .page_size = PAGE, .fd = fd };
	char why[128];
	cr_assert_eq(vm_add_region(vm, &reg, why, sizeof why), 0, "%s", why);
	r = &vm->regions[0];
}

static void setup_shared(void)
{
	memfd = memfd_create("discards", MFD_CLOEXEC);
	cr_assert_geq(memfd, 0);
	cr_assert_eq(ftruncate(memfd, PAGES * PAGE), 0);
	setup_with(dup(memfd));
}

static void setup_anon(void)
{
	memfd = -1;
	setup_with(-1);
}

static void teardown(void)
{
	vm_destroy(vm);
	store_destroy(store);
	munmap(mem, PAGES * PAGE);
	if (memfd >= 0)
		close(memfd);
}

/* Page i is resident: its content is in the file. */
static void make_resident(unsigned i)
{
	uint8_t page[PAGE];
	content(page, i);
	if (memfd >= 0)
		cr_assert_eq(pwrite(memfd, page, PAGE, (off_t)i * PAGE), (ssize_t)PAGE);
	page_table_set(&r->pt, i, pe_make(PAGE_RESIDENT, 0, 0));
	atomic_fetch_add(&vm->resident_bytes, PAGE);
}

/* Page i is evicted into the store: a hole in the file. */
static void make_stored(unsigned i)
{
	uint8_t page[PAGE];
	content(page, i);
	obj_id id;
	struct store_put_info info;
	cr_assert_eq(store_put(store, vm->eng.codec_ctx, CODEC_LZ4, page, &id, &info), 0);
	page_table_set(&r->pt, i, pe_make(PAGE_STORED, 0, id));
}

static void punch(unsigned i)
{
	cr_assert_eq(fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)i * PAGE, PAGE), 0);
}

static enum page_state state(unsigned i) { return pe_state(r->pt.entries[i]); }

static uint64_t objects(void)
{
	struct store_stats st;
	store_get_stats(store, &st);
	return st.objects;
}

static void apply(unsigned first, unsigned count, enum discard_kind kind)
{
	discards_apply(vm, (uintptr_t)mem + first * PAGE, (uintptr_t)mem + (first + count) * PAGE, kind);
}

Test(discards, a_remove_of_shared_memory_forgets_only_what_the_vmm_punched, .init = setup_shared, .fini = teardown)
{
	make_resident(0);
	make_resident(1);
	make_resident(2);
	make_stored(3);
	page_table_set(&r->pt, 4, pe_make(PAGE_ZERO, 0, 0));
	punch(1);
	apply(0, PAGES, DISCARD_REMOVE_EVENT);
	cr_assert_eq(state(0), PAGE_RESIDENT, "a zapped page still in the file is still resident");
	cr_assert_eq(state(1), PAGE_NEVER, "the VMM punched it: gone");
	cr_assert_eq(state(2), PAGE_RESIDENT);
	cr_assert_eq(state(3), PAGE_STORED, "a zap is no discard of what memsrv holds");
	cr_assert_eq(state(4), PAGE_ZERO);
	cr_assert_eq(ctr_get(&vm->ctr.removed_pages), 1);
	cr_assert_eq(ctr_get(&vm->resident_bytes), 2 * PAGE);
	cr_assert_eq(objects(), 1);
}

Test(discards, a_discard_drops_what_memsrv_holds_but_not_a_page_written_again, .init = setup_shared, .fini = teardown)
{
	make_stored(0);
	make_stored(1);
	make_resident(2);  /* punched, then written again before the Discard arrived */
	make_resident(3);
	punch(3);
	page_table_set(&r->pt, 4, pe_make(PAGE_POISONED, 0, 0));
	apply(0, 5, DISCARD_REQUESTED);
	for (unsigned i = 0; i < 5; i++)
		cr_assert_eq(state(i), i == 2 ? PAGE_RESIDENT : PAGE_NEVER, "page %u in state %d", i, state(i));
	cr_assert_eq(objects(), 0, "the store let go of the discarded pages");
	cr_assert_eq(ctr_get(&vm->ctr.removed_pages), 4);
	cr_assert_eq(ctr_get(&vm->resident_bytes), PAGE);
}

Test(discards, an_unmap_writes_what_memsrv_holds_back_into_the_file, .init = setup_shared, .fini = teardown)
{
	make_stored(0);
	make_stored(5);
	make_resident(6);
	page_table_set(&r->pt, 7, pe_make(PAGE_ZERO, 0, 0));
	apply(0, PAGES, DISCARD_UNMAP_EVENT);
	cr_assert(r->unmapped);
	for (unsigned i = 0; i < PAGES; i++)
		cr_assert_eq(state(i), PAGE_NEVER, "page %u: the file holds it now, not memsrv", i);
	cr_assert_eq(objects(), 0);
	cr_assert_eq(ctr_get(&vm->resident_bytes), 0);
	uint8_t page[PAGE], want[PAGE];
	for (unsigned i = 0; i < PAGES; i++) {
		cr_assert_eq(pread(memfd, page, PAGE, (off_t)i * PAGE), (ssize_t)PAGE);
		if (i == 0 || i == 5 || i == 6)
			content(want, i);
		else
			memset(want, 0, PAGE);
		cr_assert_arr_eq(page, want, PAGE, "page %u of the file", i);
	}
}

Test(discards, anonymous_memory_is_gone_on_any_of_them_but_poisoned_stays, .init = setup_anon, .fini = teardown)
{
	make_resident(0);
	make_resident(1);
	page_table_set(&r->pt, 2, pe_make(PAGE_POISONED, 0, 0));
	apply(0, 3, DISCARD_REMOVE_EVENT);
	cr_assert_eq(state(0), PAGE_NEVER);
	cr_assert_eq(state(1), PAGE_NEVER);
	cr_assert_eq(state(2), PAGE_POISONED, "a zap drops the kernel's marker, not the loss");
	cr_assert_eq(ctr_get(&vm->resident_bytes), 0);
	apply(2, 1, DISCARD_REQUESTED);
	cr_assert_eq(state(2), PAGE_NEVER, "given back: its loss no longer matters");
}

Test(discards, a_discard_request_is_whole_pages_of_one_region, .init = setup_shared, .fini = teardown)
{
	uintptr_t a = (uintptr_t)mem;
	cr_assert(discards_range_valid(vm, a, PAGES * PAGE));
	cr_assert(discards_range_valid(vm, a + PAGE, PAGE));
	cr_assert_not(discards_range_valid(vm, a + 1, PAGE));
	cr_assert_not(discards_range_valid(vm, a, PAGE + 1));
	cr_assert_not(discards_range_valid(vm, a, 0));
	cr_assert_not(discards_range_valid(vm, a + PAGE, PAGES * PAGE));
	cr_assert_not(discards_range_valid(vm, a - PAGE, PAGE));
	cr_assert_not(discards_range_valid(vm, UINT64_MAX - PAGE + 1, PAGE));
}
