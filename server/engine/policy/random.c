/* random: any resident page, chosen by a fast PRNG. */
#include "policy.h"

static uint64_t next_random(struct policy *p)
{
	/* xorshift64*: good enough to spread choices, costs nothing */
	p->rng ^= p->rng >> 12;
	p->rng ^= p->rng << 25;
	p->rng ^= p->rng >> 27;
	return p->rng * 2685821657736338717ull;
}

static uint64_t take(struct policy *p)
{
	if (p->head == POLICY_NIL)
		return POLICY_NONE;
	for (int tries = 0; tries < 64; tries++) {
		uint64_t page = next_random(p) % p->npages;
		if (policy_is_resident(p, page))
			return policy_list_take(p, page);
	}
	/* sparse residency: fall back to the list */
	return policy_list_take(p, p->head);
}

const struct policy_ops policy_random = {
	.name = "random",
	.summary = "a random resident page",
	.resident = policy_list_resident,
	.referenced = policy_set_bits,
	.gone = policy_list_gone,
	.take_victim = take,
};
