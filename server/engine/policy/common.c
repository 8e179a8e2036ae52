/* policy/common: the state and list every eviction algorithm shares. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "policy.h"

extern const struct policy_ops policy_lru, policy_fifo, policy_clock, policy_second_chance, policy_aging,
	policy_nru, policy_random;

const struct policy_ops *const policy_all[] = {
	&policy_lru, &policy_fifo, &policy_clock, &policy_second_chance, &policy_aging, &policy_nru, &policy_random, NULL,
};

const struct policy_ops *policy_find(const char *name)
{
	for (int i = 0; policy_all[i]; i++)
		if (!strcmp(policy_all[i]->name, name))
			return policy_all[i];
	return NULL;
}

/* mmap'd so that a big VM's untouched pages cost nothing */
static void *table(uint64_t n, size_t size)
{
	size_t bytes = n * size;
	void *t = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return t == MAP_FAILED ? NULL : t;
}

static void untable(void *t, uint64_t n, size_t size)
{
	size_t bytes = n * size;
	if (t)
		munmap(t, bytes ? bytes : 1);
}

int policy_init(struct policy *p, const struct policy_ops *ops, uint64_t npages)
{
	memset(p, 0, sizeof *p);
	if (npages >= POLICY_NIL)
		return -E2BIG;
	p->ops = ops;
	p->npages = npages;
	p->head = p->tail = POLICY_NIL;
	p->rng = 0x9e3779b97f4a7c15ull;
	p->flags = table(npages, 1);
	p->prev = table(npages, sizeof(uint32_t));
	p->next = table(npages, sizeof(uint32_t));
	p->age = table(npages, 1);
	if (!p->flags || !p->prev || !p->next || !p->age) {
		policy_fini(p);
		return -ENOMEM;
	}
	return ops->init ? ops->init(p) : 0;
}

void policy_fini(struct policy *p)
{
	if (p->ops && p->ops->fini)
		p->ops->fini(p);
	untable(p->flags, p->npages, 1);
	untable(p->prev, p->npages, sizeof(uint32_t));
	untable(p->next, p->npages, sizeof(uint32_t));
	untable(p->age, p->npages, 1);
	memset(p, 0, sizeof *p);
}

void policy_list_append(struct policy *p, uint64_t page)
{
	p->prev[page] = p->tail;
	p->next[page] = POLICY_NIL;
	if (p->tail != POLICY_NIL)
		p->next[p->tail] = (uint32_t)page;
	else
		p->head = (uint32_t)page;
	p->tail = (uint32_t)page;
}

void policy_list_unlink(struct policy *p, uint64_t page)
{
	uint32_t pr = p->prev[page], nx = p->next[page];
	if (pr != POLICY_NIL)
		p->next[pr] = nx;
	else
		p->head = nx;
	if (nx != POLICY_NIL)
		p->prev[nx] = pr;
	else
		p->tail = pr;
	p->prev[page] = p->next[page] = POLICY_NIL;
}

void policy_mark_resident(struct policy *p, uint64_t page, bool write)
{
	if (!(p->flags[page] & POLICY_RESIDENT))
		p->nresident++;
	p->flags[page] = POLICY_RESIDENT | POLICY_REF | (write ? POLICY_MOD : 0);
}

void policy_mark_gone(struct policy *p, uint64_t page)
{
	if (p->flags[page] & POLICY_RESIDENT)
		p->nresident--;
	p->flags[page] = 0;
	p->age[page] = 0;
}

void policy_mark_idle(struct policy *p, uint64_t page)
{
	if (!(p->flags[page] & POLICY_RESIDENT))
		return;
	p->flags[page] &= (uint8_t)~POLICY_REF;
	p->age[page] = 0;
	policy_list_unlink(p, page);
	p->next[page] = p->head;
	p->prev[page] = POLICY_NIL;
	if (p->head != POLICY_NIL)
		p->prev[p->head] = (uint32_t)page;
	else
		p->tail = (uint32_t)page;
	p->head = (uint32_t)page;
}

void policy_set_bits(struct policy *p, uint64_t page, bool write)
{
	if (p->flags[page] & POLICY_RESIDENT)
		p->flags[page] |= POLICY_REF | POLICY_SEEN | (write ? POLICY_MOD : 0);
}

void policy_list_resident(struct policy *p, uint64_t page, bool write)
{
	if (p->flags[page] & POLICY_RESIDENT) {
		policy_set_bits(p, page, write);
		return;
	}
	policy_mark_resident(p, page, write);
	policy_list_append(p, page);
}

void policy_list_gone(struct policy *p, uint64_t page)
{
	if (!(p->flags[page] & POLICY_RESIDENT))
		return;
	policy_list_unlink(p, page);
	policy_mark_gone(p, page);
}

uint64_t policy_list_take(struct policy *p, uint64_t page)
{
	policy_list_unlink(p, page);
	policy_mark_gone(p, page);
	return page;
}
