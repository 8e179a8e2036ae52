/* histogram: latency percentiles in bounded memory.
 *
 * Log-linear buckets (16 per power of two) keep every recorded value within
 * about 6% of its bucket's upper bound, from 1 ns to hours.
 */
#ifndef VMSIM_HISTOGRAM_H
#define VMSIM_HISTOGRAM_H

#include <stdint.h>

#define HISTOGRAM_SUB_BITS 4
#define HISTOGRAM_BUCKETS ((64 - HISTOGRAM_SUB_BITS + 1) << HISTOGRAM_SUB_BITS)

struct histogram {
	uint64_t count;
	uint64_t max;
	uint64_t buckets[HISTOGRAM_BUCKETS];
};

void histogram_reset(struct histogram *h);
void histogram_record(struct histogram *h, uint64_t value);

/* The smallest bucket bound that at least p (0..1) of the values are at or
 * below, capped at the maximum recorded; 0 when empty. */
uint64_t histogram_percentile(const struct histogram *h, double p);

#endif
