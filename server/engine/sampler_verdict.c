/* sampler_verdict: the working-set estimate's arithmetic. */
#include "sampler_verdict.h"

#include "sampler.h"  /* SAMPLE_PAGES, STEADY_FAULTS */

bool ws_estimate_update(struct ws_estimate *est, unsigned taken, unsigned touched)
{
	if (taken < SAMPLE_PAGES / 4)
		return false;
	double f = (double)touched / taken;
	/* rise fast, fall slowly: a VM waking up gets memory at once */
	if (!est->valid)
		est->share = f;
	else if (f > est->share)
		est->share = 0.5 * est->share + 0.5 * f;
	else
		est->share = 0.9 * est->share + 0.1 * f;
	est->valid = true;
	return true;
}

struct ws_verdict ws_verdict(const struct ws_estimate *est, uint64_t sampled_bytes, uint64_t resident,
			     uint64_t refaults)
{
	uint64_t ws = (uint64_t)(est->share * (double)sampled_bytes);
	/* busy beyond what it holds: it never looks idle */
	if (refaults >= STEADY_FAULTS(resident / 4096) && ws < resident)
		ws = resident;
	return (struct ws_verdict){
		.bytes = ws,
		.permille = resident ? (uint32_t)(ws >= resident ? 1000 : ws * 1000 / resident) : 1000,
	};
}

enum probation_end probation_settle(uint64_t limit, uint64_t resident, uint64_t page_size)
{
	return limit && resident + page_size > limit ? PROBATION_STORE : PROBATION_BACK;
}
