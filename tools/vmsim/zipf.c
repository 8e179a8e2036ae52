/* zipf: CDF over ranks, binary search, rank -> page permutation. */
#include "zipf.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "rng.h"

struct zipf {
	uint64_t n;
	double *cdf;     /* cdf[k]: P(rank <= k + 1), cdf[n - 1] == 1 */
	uint32_t *page;  /* page of rank k + 1 */
};

void zipf_destroy(struct zipf *z)
{
	if (!z)
		return;
	free(z->cdf);
	free(z->page);
	free(z);
}

int zipf_create(uint64_t n, double s, uint64_t seed, struct zipf **out)
{
	if (!n || n > UINT32_MAX || !(s > 0))
		return -EINVAL;
	struct zipf *z = calloc(1, sizeof *z);
	if (!z)
		return -ENOMEM;
	z->n = n;
	z->cdf = malloc(n * sizeof *z->cdf);
	z->page = malloc(n * sizeof *z->page);
	if (!z->cdf || !z->page) {
		zipf_destroy(z);
		return -ENOMEM;
	}
	double sum = 0;
	for (uint64_t k = 0; k < n; k++) {
		sum += pow((double)(k + 1), -s);
		z->cdf[k] = sum;
	}
	for (uint64_t k = 0; k < n; k++)
		z->cdf[k] /= sum;
	z->cdf[n - 1] = 1.0;  /* rounding must not leave u near 1 unmatched */
	/* Fisher-Yates shuffle of the identity. */
	uint64_t rng = rng_mix64(seed ^ 0x7a697066ull);
	for (uint64_t k = 0; k < n; k++)
		z->page[k] = (uint32_t)k;
	for (uint64_t k = n - 1; k > 0; k--) {
		uint64_t j = rng_below(&rng, k + 1);
		uint32_t t = z->page[k];
		z->page[k] = z->page[j];
		z->page[j] = t;
	}
	*out = z;
	return 0;
}

uint64_t zipf_page(const struct zipf *z, double u)
{
	/* First rank whose cdf exceeds u. */
	uint64_t lo = 0, hi = z->n - 1;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (z->cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return z->page[lo];
}
