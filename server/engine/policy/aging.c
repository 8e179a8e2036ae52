/* aging (NFU with aging): each second every resident page's 8-bit counter
 * shifts right and takes its reference bit at the top; the page with the
 * smallest counter (least used lately) leaves first. */
#include "policy.h"

#define SCAN 256  /* victims are the minimum of a window of the list: bounded work */

static void tick(struct policy *p)
{
	for (uint32_t page = p->head; page != POLICY_NIL; page = p->next[page]) {
		p->age[page] = (uint8_t)(p->age[page] >> 1 | ((p->flags[page] & POLICY_REF) ? 0x80 : 0));
		p->flags[page] &= (uint8_t)~POLICY_REF;
	}
}

static void resident(struct policy *p, uint64_t page, bool write)
{
	bool was = policy_is_resident(p, page);
	policy_list_resident(p, page, write);
	if (!was)
		p->age[page] = 0x80;  /* it was just used */
}

static uint64_t take(struct policy *p)
{
	uint64_t best = POLICY_NONE;
	unsigned n = 0;
	for (uint32_t page = p->head; page != POLICY_NIL && n < SCAN; page = p->next[page], n++) {
		unsigned a = p->age[page] | ((p->flags[page] & POLICY_REF) ? 0x100 : 0);
		unsigned b = best == POLICY_NONE ? ~0u : (p->age[best] | ((p->flags[best] & POLICY_REF) ? 0x100 : 0));
		if (a < b)
			best = page;
		if (a == 0)
			break;
	}
	return best == POLICY_NONE ? POLICY_NONE : policy_list_take(p, best);
}

const struct policy_ops policy_aging = {
	.name = "aging",
	.summary = "8-bit counters shifted each second with the reference bit; smallest counter first",
	.resident = resident,
	.referenced = policy_set_bits,
	.gone = policy_list_gone,
	.take_victim = take,
	.tick = tick,
};
