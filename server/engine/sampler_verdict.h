/* sampler_verdict: what a period's sample says of a VM's working set.
 *
 * sampler.c draws the sample and counts the pages used again; this is the
 * arithmetic after that, over plain numbers: the share of the sample used
 * this period folds into a running estimate (rising fast, falling slowly),
 * times the memory the sample was drawn from; a VM that faulted back at
 * least STEADY_FAULTS of its pages in the period wants at least all it
 * holds.  The verdict is published as bytes and as the share of resident
 * memory in use (the balancer's idle tax reads it).
 */
#ifndef MEMSRV_SAMPLER_VERDICT_H
#define MEMSRV_SAMPLER_VERDICT_H

#include <stdbool.h>
#include <stdint.h>

/* The running estimate: the share of the sampled memory in use. */
struct ws_estimate {
	double share;
	bool valid;  /* false until a period had enough pages to say anything */
};

struct ws_verdict {
	uint64_t bytes;     /* the working set */
	uint32_t permille;  /* of resident memory in use, at most 1000 (1000 when nothing is resident) */
};

/* Folds a period in which touched of the taken sampled pages were used
 * into est.  Returns false, and leaves est as it was, when taken is under
 * SAMPLE_PAGES / 4: too few pages to say anything. */
bool ws_estimate_update(struct ws_estimate *est, unsigned taken, unsigned touched);

/* The working set est gives for sampled_bytes of sampled memory, of a VM
 * holding resident bytes that faulted refaults pages in (stored, zero or
 * new) during the period.  est must be valid. */
struct ws_verdict ws_verdict(const struct ws_estimate *est, uint64_t sampled_bytes, uint64_t resident,
			     uint64_t refaults);

/* What an untouched page in probation becomes at the end of its period:
 * back in the VM, or, when that would take the VM over its limit (0:
 * none), into the store (it was not used: the first to go anyway). */
enum probation_end { PROBATION_BACK, PROBATION_STORE };
enum probation_end probation_settle(uint64_t limit, uint64_t resident, uint64_t page_size);

#endif
