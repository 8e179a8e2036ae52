/* second-chance: FIFO, but a page referenced since it reached the head gets
 * its bit cleared and goes to the tail once more. */
#include "policy.h"

static uint64_t take(struct policy *p)
{
	/* every page gets at most one second chance per pass */
	for (uint64_t tries = p->nresident + 1; p->head != POLICY_NIL && tries--;) {
		uint64_t page = p->head;
		if (!(p->flags[page] & POLICY_REF))
			return policy_list_take(p, page);
		p->flags[page] &= (uint8_t)~POLICY_REF;
		policy_list_unlink(p, page);
		policy_list_append(p, page);
	}
	return p->head == POLICY_NIL ? POLICY_NONE : policy_list_take(p, p->head);
}

const struct policy_ops policy_second_chance = {
	.name = "second-chance",
	.summary = "FIFO queue; a referenced head is cleared and requeued once",
	.resident = policy_list_resident,
	.referenced = policy_set_bits,
	.gone = policy_list_gone,
	.take_victim = take,
};
