/* fifo: the page resident longest leaves first; use does not matter. */
#include "policy.h"

static uint64_t take(struct policy *p)
{
	return p->head == POLICY_NIL ? POLICY_NONE : policy_list_take(p, p->head);
}

const struct policy_ops policy_fifo = {
	.name = "fifo",
	.summary = "oldest resident page first; only faults (arrivals) are seen",
	.resident = policy_list_resident,
	.referenced = policy_set_bits,
	.gone = policy_list_gone,
	.take_victim = take,
};
