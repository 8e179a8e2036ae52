/* nru: not recently used.  Reference bits are cleared each second; a victim
 * comes from the lowest class: (unreferenced, clean) < (unreferenced,
 * modified) < (referenced, clean) < (referenced, modified). */
#include "policy.h"

#define SCAN 256

static void tick(struct policy *p)
{
	for (uint32_t page = p->head; page != POLICY_NIL; page = p->next[page])
		p->flags[page] &= (uint8_t)~POLICY_REF;
}

static unsigned class_of(const struct policy *p, uint64_t page)
{
	return ((p->flags[page] & POLICY_REF) ? 2 : 0) | ((p->flags[page] & POLICY_MOD) ? 1 : 0);
}

static uint64_t take(struct policy *p)
{
	uint64_t best = POLICY_NONE;
	unsigned best_class = 4, n = 0;
	for (uint32_t page = p->head; page != POLICY_NIL && n < SCAN && best_class; page = p->next[page], n++) {
		unsigned c = class_of(p, page);
		if (c < best_class) {
			best_class = c;
			best = page;
		}
	}
	return best == POLICY_NONE ? POLICY_NONE : policy_list_take(p, best);
}

const struct policy_ops policy_nru = {
	.name = "nru",
	.summary = "classes by reference and modify bits (writes at fault or write-protect); bits cleared each second",
	.resident = policy_list_resident,
	.referenced = policy_set_bits,
	.gone = policy_list_gone,
	.take_victim = take,
	.tick = tick,
};
