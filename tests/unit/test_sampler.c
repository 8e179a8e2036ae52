/* Description: the sampler's verdicts.  A period with fewer than a quarter
 * of SAMPLE_PAGES sampled says nothing; the first that says something is
 * the estimate, later ones raise it fast and lower it slowly.  The working
 * set is that share of the sampled memory, raised to all that is resident
 * once the VM faulted back STEADY_FAULTS pages in the period, and is
 * published as a share of resident memory of at most 1000 permille.  An
 * untouched page in probation goes back unless that passes the limit. */
#include <criterion/criterion.h>
#include <math.h>

#include "sampler.h"
#include "sampler_verdict.h"

#define MIB (1ull << 20)

#define assert_near(a, b, ...) cr_assert(fabs((a) - (b)) < 1e-9, __VA_ARGS__)

Test(sampler, too_few_pages_say_nothing)
{
	struct ws_estimate est = { 0 };
	cr_assert_not(ws_estimate_update(&est, SAMPLE_PAGES / 4 - 1, SAMPLE_PAGES / 4 - 1));
	cr_assert_not(est.valid, "no estimate from %d pages", SAMPLE_PAGES / 4 - 1);
	cr_assert(ws_estimate_update(&est, SAMPLE_PAGES / 4, 5), "a quarter of the sample is enough");
	cr_assert(est.valid);
	assert_near(est.share, 5.0 / (SAMPLE_PAGES / 4), "%f", est.share);
}

Test(sampler, a_short_period_leaves_the_estimate_as_it_was)
{
	struct ws_estimate est = { .share = 0.3, .valid = true };
	cr_assert_not(ws_estimate_update(&est, 10, 10));
	assert_near(est.share, 0.3, "%f", est.share);
}

Test(sampler, the_first_period_is_the_estimate)
{
	struct ws_estimate est = { 0 };
	cr_assert(ws_estimate_update(&est, 100, 40));
	assert_near(est.share, 0.4, "%f", est.share);
}

Test(sampler, the_estimate_rises_fast)
{
	struct ws_estimate est = { .share = 0.2, .valid = true };
	ws_estimate_update(&est, 100, 60);
	assert_near(est.share, 0.4, "halfway to 0.6 in one period: %f", est.share);
}

Test(sampler, the_estimate_falls_slowly)
{
	struct ws_estimate est = { .share = 0.6, .valid = true };
	ws_estimate_update(&est, 100, 10);
	assert_near(est.share, 0.55, "a tenth of the way to 0.1: %f", est.share);
	ws_estimate_update(&est, 100, 55);
	assert_near(est.share, 0.55, "the same share: no change: %f", est.share);
}

Test(sampler, the_working_set_is_the_share_of_the_sampled_memory)
{
	struct ws_estimate est = { .share = 0.25, .valid = true };
	struct ws_verdict v = ws_verdict(&est, 1024 * MIB, 512 * MIB, 0);
	cr_assert_eq(v.bytes, 256 * MIB);
	cr_assert_eq(v.permille, 500, "256 MiB of 512 resident: %u", v.permille);
}

Test(sampler, at_most_all_of_the_resident_memory_is_in_use)
{
	struct ws_estimate est = { .share = 0.75, .valid = true };
	struct ws_verdict v = ws_verdict(&est, 1024 * MIB, 512 * MIB, 0);
	cr_assert_eq(v.bytes, 768 * MIB, "the working set may pass what is resident");
	cr_assert_eq(v.permille, 1000, "its share of it may not: %u", v.permille);
}

Test(sampler, nothing_resident_is_all_in_use)
{
	struct ws_estimate est = { .share = 0, .valid = true };
	struct ws_verdict v = ws_verdict(&est, 1024 * MIB, 0, 0);
	cr_assert_eq(v.bytes, 0);
	cr_assert_eq(v.permille, 1000, "nothing to tax");
}

Test(sampler, a_vm_that_keeps_faulting_wants_all_it_holds)
{
	/* 400 MiB resident: 102400 pages, STEADY_FAULTS 1024 */
	uint64_t resident = 400 * MIB;
	cr_assert_eq(STEADY_FAULTS(resident / 4096), 1024);
	struct ws_estimate est = { .share = 0.1, .valid = true };
	struct ws_verdict below = ws_verdict(&est, 1000 * MIB, resident, 1023);
	cr_assert_eq(below.bytes, 100 * MIB, "1023 faults: the sample decides");
	cr_assert_eq(below.permille, 250);
	struct ws_verdict at = ws_verdict(&est, 1000 * MIB, resident, 1024);
	cr_assert_eq(at.bytes, resident, "1024 faults: busy beyond what it holds");
	cr_assert_eq(at.permille, 1000);
}

Test(sampler, a_small_vm_needs_16_faults)
{
	uint64_t resident = 4 * MIB;  /* 1024 pages: 1% is 10, the floor is 16 */
	struct ws_estimate est = { .share = 0, .valid = true };
	cr_assert_eq(ws_verdict(&est, 8 * MIB, resident, 15).bytes, 0);
	cr_assert_eq(ws_verdict(&est, 8 * MIB, resident, 16).bytes, resident);
}

Test(sampler, faults_never_lower_the_working_set)
{
	struct ws_estimate est = { .share = 0.9, .valid = true };
	struct ws_verdict v = ws_verdict(&est, 1000 * MIB, 100 * MIB, 1000000);
	cr_assert_eq(v.bytes, 900 * MIB, "the sample saw more than is resident: kept");
}

Test(sampler, an_untouched_page_goes_back_unless_that_passes_the_limit)
{
	cr_assert_eq(probation_settle(0, 1000 * MIB, 4096), PROBATION_BACK, "no limit");
	cr_assert_eq(probation_settle(100 * MIB, 100 * MIB - 4096, 4096), PROBATION_BACK, "exactly at the limit");
	cr_assert_eq(probation_settle(100 * MIB, 100 * MIB - 4095, 4096), PROBATION_STORE, "one byte over");
	cr_assert_eq(probation_settle(100 * MIB, 200 * MIB, 4096), PROBATION_STORE);
}
