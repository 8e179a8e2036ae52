/* Description: latency histogram percentiles, edge cases and a concurrent writer. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>

#include "latency.h"

static void assert_near(double got, double want, double rel)
{
	cr_assert(fabs(got - want) <= want * rel, "got %.3f, want %.3f within %.0f%%",
		  got, want, rel * 100);
}

Test(latency, uniform_percentiles)
{
	static struct latency_hist h;
	latency_init(&h);
	for (uint64_t us = 1; us <= 1000; us++)
		latency_record_ns(&h, us * 1000);
	struct latency_summary s;
	latency_summarize(&h, &s);
	cr_assert_eq(s.count, 1000);
	assert_near(s.p50_us, 500, 0.07);
	assert_near(s.p99_us, 990, 0.07);
	cr_assert_eq(s.max_us, 1000.0);
}

Test(latency, single_value)
{
	static struct latency_hist h;
	latency_init(&h);
	latency_record_ns(&h, 12345);
	struct latency_summary s;
	latency_summarize(&h, &s);
	cr_assert_eq(s.count, 1);
	/* the midpoint is capped at the exact max */
	cr_assert_eq(s.p50_us, 12.345);
	cr_assert_eq(s.p99_us, 12.345);
	cr_assert_eq(s.max_us, 12.345);
}

Test(latency, empty)
{
	static struct latency_hist h;
	latency_init(&h);
	struct latency_summary s;
	latency_summarize(&h, &s);
	cr_assert_eq(s.count, 0);
	cr_assert_eq(s.p50_us, 0);
	cr_assert_eq(s.p99_us, 0);
	cr_assert_eq(s.max_us, 0);
}

Test(latency, small_values_are_exact)
{
	static struct latency_hist h;
	latency_init(&h);
	for (int i = 0; i < 10; i++)
		latency_record_ns(&h, 0);
	latency_record_ns(&h, 31);
	struct latency_summary s;
	latency_summarize(&h, &s);
	cr_assert_eq(s.p50_us, 0);
	cr_assert_eq(s.max_us, 0.031);
}

/* Every value from 1 ns to ~100 s reports within the promised error. */
Test(latency, relative_error_over_range)
{
	static struct latency_hist h;
	for (uint64_t v = 1; v < 100000000000ull; v = v * 9 / 8 + 1) {
		latency_init(&h);
		latency_record_ns(&h, v);
		latency_record_ns(&h, v);
		latency_record_ns(&h, 200000000000ull);  /* keep max out of v's bucket */
		struct latency_summary s;
		latency_summarize(&h, &s);
		assert_near(s.p50_us * 1000, (double)v, 0.0325);
	}
}

Test(latency, huge_value_goes_to_last_bucket)
{
	static struct latency_hist h;
	latency_init(&h);
	latency_record_ns(&h, UINT64_MAX);
	struct latency_summary s;
	latency_summarize(&h, &s);
	cr_assert_eq(s.count, 1);
	cr_assert_eq(s.max_us, (double)UINT64_MAX / 1000);
}

#define N_CONCURRENT 2000000u

static struct latency_hist shared;
static atomic_bool writer_done;

static void *writer(void *arg)
{
	for (uint64_t i = 0; i < N_CONCURRENT; i++)
		latency_record_ns(&shared, (i * 7919) % 5000000);
	atomic_store(&writer_done, true);
	return NULL;
}

static void *reader(void *arg)
{
	uint64_t last = 0;
	while (!atomic_load(&writer_done)) {
		struct latency_summary s;
		latency_summarize(&shared, &s);
		/* each bucket only grows, so neither may the total */
		if (s.count < last || s.count > N_CONCURRENT)
			return (void *)1;
		last = s.count;
	}
	return NULL;
}

Test(latency, concurrent_writer_and_reader)
{
	latency_init(&shared);
	pthread_t w, r;
	cr_assert_eq(pthread_create(&r, NULL, reader, NULL), 0);
	cr_assert_eq(pthread_create(&w, NULL, writer, NULL), 0);
	void *rret;
	pthread_join(w, NULL);
	pthread_join(r, &rret);
	cr_assert_null(rret, "reader saw the count shrink or overshoot");
	struct latency_summary s;
	latency_summarize(&shared, &s);
	cr_assert_eq(s.count, N_CONCURRENT);
	cr_assert(s.max_us < 5000.0);
}

Test(latency, cumulative_counts_at_power_of_two_bounds)
{
	static struct latency_hist h;
	latency_init(&h);
	const uint64_t values[] = { 0, 1000, 1023, 1024, 2047, 5000, 100000, 1ull << 40 };
	uint64_t sum = 0;
	for (unsigned i = 0; i < sizeof values / sizeof values[0]; i++) {
		latency_record_ns(&h, values[i]);
		sum += values[i];
	}
	const uint64_t bounds[] = { 32, 1024, 2048, 4096, 1u << 17, 1ull << 30 };
	uint64_t below[6], count, sum_ns;
	latency_cumulative(&h, bounds, 6, below, &count, &sum_ns);
	const uint64_t want[6] = { 1, 3, 5, 5, 7, 7 };
	for (unsigned i = 0; i < 6; i++)
		cr_assert_eq(below[i], want[i], "under %" PRIu64 " ns: %" PRIu64 ", want %" PRIu64, bounds[i], below[i],
			     want[i]);
	cr_assert_eq(count, 8);
	cr_assert_eq(sum_ns, sum);
}
