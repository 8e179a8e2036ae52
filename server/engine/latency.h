/* latency: a log-linear histogram of fault service times.
 *
 * One thread records, any other may summarize at the same time: buckets are
 * relaxed atomics, so a summary is a slightly stale but never torn view.
 * Values are grouped by power of two, each power split into 16 linear
 * sub-buckets (the HDR histogram layout): below 32 ns every nanosecond has
 * its own bucket, above it a bucket is 1/16 of its power of two wide, so a
 * reported value is within 3.2% of the true one.  Values from 2^37 ns (about
 * 137 s) up land in the last bucket; max is kept exactly.
 */
#ifndef MEMSRV_LATENCY_H
#define MEMSRV_LATENCY_H

#include <stdatomic.h>
#include <stdint.h>

#define LATENCY_SUB_BITS 4u                          /* 16 sub-buckets per power of two */
#define LATENCY_SUB      (1u << LATENCY_SUB_BITS)
#define LATENCY_TOP_BIT  36u                         /* highest power: [2^36, 2^37) ns */
#define LATENCY_BUCKETS  ((LATENCY_TOP_BIT - LATENCY_SUB_BITS + 2) * LATENCY_SUB)

struct latency_hist {
	_Atomic uint64_t buckets[LATENCY_BUCKETS];
	_Atomic uint64_t max_ns;
	_Atomic uint64_t sum_ns;  /* of every value recorded: a Prometheus histogram's _sum */
};

struct latency_summary {
	double p50_us, p99_us, max_us;
	uint64_t count;
};

void latency_init(struct latency_hist *h);

/* Hot path: a bit scan, a shift, one relaxed add and a compare with max. */
void latency_record_ns(struct latency_hist *h, uint64_t ns);

/* A percentile is the midpoint of the bucket where the cumulative count
 * reaches its rank, capped at the exact max.  An empty histogram gives all
 * zeros. */
void latency_summarize(const struct latency_hist *h, struct latency_summary *out);

/* A Prometheus histogram of h: below[i] gets the number of values under
 * bounds_ns[i] (ascending), *count all of them, *sum_ns their sum.  Exact
 * when each bound is a bucket boundary: a power of two from 32 ns up is. */
void latency_cumulative(const struct latency_hist *h, const uint64_t *bounds_ns, unsigned n, uint64_t *below,
			uint64_t *count, uint64_t *sum_ns);

#endif
