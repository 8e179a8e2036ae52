/* Description: reference bits from the VMM's page tables (accessed.h): a
 * page the guest only reads while it is resident counts as used, so under
 * clock a hot set that is read, never written, stays resident while cold
 * pages stream through; without the bits (--accessed-bits off, the
 * default) it leaves in arrival order and faults again each time round.
 * The test process is the VMM. */
#include <criterion/criterion.h>
#include <string.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "memsrv.h"

#define PAGE GUEST_PAGE
#define VM_PAGES 2048u      /* 8 MiB... */
#define LIMIT_PAGES 512u    /* ...held to 2 MiB */
#define HOT_STRIDE 16u      /* every 16th page is hot, read every round... */
#define HOT_PAGES (VM_PAGES / HOT_STRIDE)
#define COLD_PAGES (VM_PAGES - HOT_PAGES)
#define COLD_PER_ROUND 32u  /* ...the others once each, in turn: they push the rest out */
#define ROUNDS 120u

static struct test_server srv;

static void teardown(void) { server_stop(&srv); }

TestSuite(accessed, .fini = teardown, .timeout = 120);

static uint64_t word_of(size_t page, size_t w, uint64_t gen)
{
	return (uint64_t)page << 24 | (w % 64) << 8 | gen;
}

static uint64_t read_page(const struct guest *g, size_t p)
{
	return *(volatile const uint64_t *)(g->mem + p * PAGE + (p % 512) * 8);
}

/* The i-th cold page: the others in a scattered order, so that no run of
 * faults looks sequential (prefetch would hide them). */
static size_t cold_page(size_t i)
{
	size_t k = i * 389 % COLD_PAGES;  /* 389 is prime, COLD_PAGES a power of two times 15 */
	return k / (HOT_STRIDE - 1) * HOT_STRIDE + 1 + k % (HOT_STRIDE - 1);
}

struct outcome {
	uint64_t hot_faults;      /* faults while the hot set was read, after its first round */
	uint64_t unmaps, found;   /* accessed_unmaps, accessed_found */
	char off[200];            /* accessed_off, "" when on */
};

/* The same guest on srv: filled, then ROUNDS of reading the hot set and
 * COLD_PER_ROUND cold pages. */
static struct outcome hot_and_cold(void)
{
	struct memsrv_vm settings = { .limit_bytes = (uint64_t)LIMIT_PAGES * PAGE, .policy = "clock" };
	struct guest g;
	guest_attach(&g, &srv, "hot", (size_t)VM_PAGES * PAGE, &settings);
	pattern_fill(g.mem, 0, VM_PAGES, word_of, 1);
	struct outcome o = { 0 };
	size_t cold = 0;
	for (unsigned round = 0; round < ROUNDS; round++) {
		uint64_t before = CTL_INFO(&srv, "hot", faults_total);
		for (size_t p = 0; p < VM_PAGES; p += HOT_STRIDE)
			read_page(&g, p);
		if (round > 0)  /* the first brings the hot set in */
			o.hot_faults += CTL_INFO(&srv, "hot", faults_total) - before;
		for (unsigned k = 0; k < COLD_PER_ROUND; k++)
			read_page(&g, cold_page(cold++));
	}
	cr_assert_eq(pattern_count_bad(g.mem, 0, VM_PAGES, word_of, 1), 0, "every page kept its content");
	Memsrv__ServerMessage *m = ctl_info_ok(&srv, "hot");
	o.unmaps = m->vm_info->accessed_unmaps;
	o.found = m->vm_info->accessed_found;
	snprintf(o.off, sizeof o.off, "%s", m->vm_info->accessed_off ? m->vm_info->accessed_off : "");
	cr_assert_leq(m->vm_info->resident_bytes, (uint64_t)LIMIT_PAGES * PAGE, "the limit held");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_geq(memsrv_detach(g.s, MEMSRV_DETACH_RESTORE), 0, "detach: %s", memsrv_last_error());
	guest_release(&g);
	return o;
}

Test(accessed, a_hot_set_only_read_stays_resident)
{
	static const char *const on_opts[] = { "--accessed-bits", "on", NULL };
	server_start_with(&srv, on_opts);
	struct outcome on = hot_and_cold();
	if (on.off[0])
		cr_skip("reference bits are off here: %s", on.off);
	server_stop(&srv);
	server_start(&srv);  /* the default: off */
	struct outcome off = hot_and_cold();
	cr_assert_str_eq(off.off, "--accessed-bits off");
	cr_assert_eq(off.unmaps + off.found, 0, "off means off");
	cr_assert_gt(on.unmaps, 0, "pages were unmapped to see their use");
	cr_assert_gt(on.found, 0, "and reads of them were seen");
	/* the cold pages turn the 512 resident over (ROUNDS * COLD_PER_ROUND) /
	 * 512 = 7.5 times: without the bits the hot set goes each time but
	 * the first (1,172 faults here), with them part of it does (340-630:
	 * a page is watched once a fault of its own brought it) */
	cr_assert_geq(off.hot_faults, 5 * HOT_PAGES, "without the bits the hot set left in arrival order (%lu faults)",
		      (unsigned long)off.hot_faults);
	cr_assert_leq(on.hot_faults, off.hot_faults * 3 / 4, "with them more of it stayed: %lu faults against %lu",
		      (unsigned long)on.hot_faults, (unsigned long)off.hot_faults);
}
