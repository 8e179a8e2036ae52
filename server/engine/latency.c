/* latency: log-linear histogram of fault service times (see latency.h). */
#include "latency.h"

#include <stddef.h>

/* Bucket of v: below 2 * LATENCY_SUB the value itself; above, the power of
 * two picks a group of LATENCY_SUB buckets and the LATENCY_SUB_BITS bits under
 * the leading one pick the bucket in it.  The two formulas meet at 32, so the
 * index is continuous. */
static inline unsigned bucket_of(uint64_t v)
{
	if (v < 2 * LATENCY_SUB)
		return (unsigned)v;
	unsigned top = 63 - (unsigned)__builtin_clzll(v);
	if (top > LATENCY_TOP_BIT)
		return LATENCY_BUCKETS - 1;
	unsigned sub = (unsigned)(v >> (top - LATENCY_SUB_BITS)) - LATENCY_SUB;
	return (top - LATENCY_SUB_BITS + 1) * LATENCY_SUB + sub;
}

/* Smallest value of bucket b and its width in ns. */
static void bucket_range(unsigned b, uint64_t *low, uint64_t *width)
{
	if (b < 2 * LATENCY_SUB) {
		*low = b;
		*width = 1;
		return;
	}
	unsigned top = b / LATENCY_SUB + LATENCY_SUB_BITS - 1;
	unsigned sub = b % LATENCY_SUB;
	*width = 1ull << (top - LATENCY_SUB_BITS);
	*low = (1ull << top) + sub * *width;
}

void latency_init(struct latency_hist *h)
{
	for (size_t i = 0; i < LATENCY_BUCKETS; i++)
		atomic_init(&h->buckets[i], 0);
	atomic_init(&h->max_ns, 0);
	atomic_init(&h->sum_ns, 0);
}

void latency_record_ns(struct latency_hist *h, uint64_t ns)
{
	atomic_fetch_add_explicit(&h->buckets[bucket_of(ns)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
	/* A new maximum is rare: the common case is one load and a compare. */
	uint64_t max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
	while (ns > max && !atomic_compare_exchange_weak_explicit(&h->max_ns, &max, ns,
						memory_order_relaxed, memory_order_relaxed))
		;
}

/* Value reported for the first bucket where the cumulative count reaches
 * rank: the midpoint of its integer values, but never above max, which the
 * midpoint of max's own bucket may be. */
static double value_at_rank(const uint64_t *snap, uint64_t rank, uint64_t max)
{
	uint64_t seen = 0;
	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		seen += snap[b];
		if (seen < rank)
			continue;
		uint64_t low, width;
		bucket_range(b, &low, &width);
		double mid = (double)low + (double)(width - 1) / 2;
		return mid > (double)max ? (double)max : mid;
	}
	return (double)max;
}

void latency_summarize(const struct latency_hist *h, struct latency_summary *out)
{
	/* Read each bucket once so both percentiles see the same counts. */
	uint64_t snap[LATENCY_BUCKETS];
	uint64_t count = 0;
	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		snap[b] = atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
		count += snap[b];
	}
	uint64_t max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
	*out = (struct latency_summary){ .count = count };
	if (!count)
		return;
	/* Nearest rank: the smallest value with at least q of the samples at or below it. */
	uint64_t r50 = (count + 1) / 2;
	uint64_t r99 = count - count / 100;
	out->p50_us = value_at_rank(snap, r50, max) / 1000;
	out->p99_us = value_at_rank(snap, r99, max) / 1000;
	out->max_us = (double)max / 1000;
}

void latency_cumulative(const struct latency_hist *h, const uint64_t *bounds_ns, unsigned n, uint64_t *below,
			uint64_t *count, uint64_t *sum_ns)
{
	*sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
	uint64_t seen = 0;
	unsigned i = 0;
	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		uint64_t low, width;
		bucket_range(b, &low, &width);
		/* the bounds this bucket reaches past: its values are not under them */
		for (; i < n && low + width > bounds_ns[i]; i++)
			below[i] = seen;
		seen += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
	}
	for (; i < n; i++)
		below[i] = seen;
	*count = seen;
}
