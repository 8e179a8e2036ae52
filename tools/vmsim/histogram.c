/* histogram: log-linear latency histogram for vmsim. */
#include "histogram.h"

#include <string.h>

/* Values below 2^SUB_BITS get a bucket each; above, each power of two is
 * split into 2^SUB_BITS equal buckets. */
static unsigned bucket_of(uint64_t v)
{
	if (v < (1u << HISTOGRAM_SUB_BITS))
		return (unsigned)v;
	unsigned exp = 63 - __builtin_clzll(v);  /* >= SUB_BITS */
	unsigned sub = (unsigned)(v >> (exp - HISTOGRAM_SUB_BITS)) & ((1u << HISTOGRAM_SUB_BITS) - 1);
	return ((exp - HISTOGRAM_SUB_BITS + 1) << HISTOGRAM_SUB_BITS) + sub;
}

/* The largest value that falls into bucket b. */
static uint64_t bucket_max(unsigned b)
{
	if (b < (1u << HISTOGRAM_SUB_BITS))
		return b;
	unsigned exp = (b >> HISTOGRAM_SUB_BITS) + HISTOGRAM_SUB_BITS - 1;
	uint64_t sub = b & ((1u << HISTOGRAM_SUB_BITS) - 1);
	uint64_t lo = (((uint64_t)1 << HISTOGRAM_SUB_BITS) + sub) << (exp - HISTOGRAM_SUB_BITS);
	return lo + ((uint64_t)1 << (exp - HISTOGRAM_SUB_BITS)) - 1;
}

void histogram_reset(struct histogram *h)
{
	memset(h, 0, sizeof *h);
}

void histogram_record(struct histogram *h, uint64_t value)
{
	h->buckets[bucket_of(value)]++;
	h->count++;
	if (value > h->max)
		h->max = value;
}

uint64_t histogram_percentile(const struct histogram *h, double p)
{
	if (!h->count)
		return 0;
	uint64_t rank = (uint64_t)(p * (double)h->count + 0.5);
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned b = 0; b < HISTOGRAM_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen >= rank) {
			uint64_t v = bucket_max(b);
			return v < h->max ? v : h->max;
		}
	}
	return h->max;
}
