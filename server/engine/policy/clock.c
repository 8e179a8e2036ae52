/* clock: the resident pages on a ring; the hand clears reference bits as it
 * passes and takes the first page whose bit is already clear. */
#include "policy.h"

static uint64_t advance(struct policy *p, uint64_t page)
{
	uint32_t nx = p->next[page];
	return nx == POLICY_NIL ? p->head : nx;
}

static uint64_t take(struct policy *p)
{
	if (p->head == POLICY_NIL)
		return POLICY_NONE;
	uint64_t page = p->hand < p->npages && policy_is_resident(p, p->hand) ? p->hand : p->head;
	/* at most one full turn clearing bits, then one more finds a clear one */
	for (uint64_t steps = 2 * p->nresident + 1; steps--;) {
		uint64_t nx = advance(p, page);
		if (!(p->flags[page] & POLICY_REF)) {
			p->hand = nx == page ? POLICY_NONE : nx;
			return policy_list_take(p, page);
		}
		p->flags[page] &= (uint8_t)~POLICY_REF;
		page = nx;
	}
	return POLICY_NONE;
}

static void gone(struct policy *p, uint64_t page)
{
	if (p->hand == page)
		p->hand = policy_is_resident(p, page) ? advance(p, page) : POLICY_NONE;
	policy_list_gone(p, page);
}

static int init(struct policy *p)
{
	p->hand = POLICY_NONE;
	return 0;
}

const struct policy_ops policy_clock = {
	.name = "clock",
	.summary = "ring of resident pages; the hand clears reference bits, takes the first clear page",
	.init = init,
	.resident = policy_list_resident,
	.referenced = policy_set_bits,
	.gone = gone,
	.take_victim = take,
};
