/* lru: the page used longest ago leaves first.  memsrv sees a use when a
 * page arrives (a fault) and when a write hits write protection. */
#include "policy.h"

static void referenced(struct policy *p, uint64_t page, bool write)
{
	if (!policy_is_resident(p, page))
		return;
	policy_set_bits(p, page, write);
	policy_list_unlink(p, page);  /* most recently used: to the tail */
	policy_list_append(p, page);
}

static void resident(struct policy *p, uint64_t page, bool write)
{
	if (policy_is_resident(p, page))
		referenced(p, page, write);
	else
		policy_list_resident(p, page, write);
}

static uint64_t take(struct policy *p)
{
	return p->head == POLICY_NIL ? POLICY_NONE : policy_list_take(p, p->head);
}

const struct policy_ops policy_lru = {
	.name = "lru",
	.summary = "least recently used first; a fault or a write-protect fault is a use",
	.resident = resident,
	.referenced = referenced,
	.gone = policy_list_gone,
	.take_victim = take,
};
