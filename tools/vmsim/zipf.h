/* zipf: page picker with a Zipf-distributed hot set.
 *
 * Rank k (1-based) is drawn with probability proportional to 1/k^s; ranks
 * map to pages through a fixed permutation, so the hot pages are scattered
 * over guest RAM instead of being its first pages.  Costs 12 bytes per page.
 */
#ifndef VMSIM_ZIPF_H
#define VMSIM_ZIPF_H

#include <stdint.h>

struct zipf;

/* n pages (1..2^32-1), skew s > 0, permutation from seed.  Returns 0,
 * -EINVAL or -ENOMEM. */
int zipf_create(uint64_t n, double s, uint64_t seed, struct zipf **out);
void zipf_destroy(struct zipf *z);

/* The page for a uniform u in [0, 1). */
uint64_t zipf_page(const struct zipf *z, double u);

#endif
