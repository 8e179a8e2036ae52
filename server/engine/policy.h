/* policy: which resident pages of a VM leave first.
 *
 * An eviction algorithm is one file in server/engine/policy/ behind this small
 * interface.  Pages are numbered across the VM's evictable regions.  The
 * VM thread tells the policy what it sees from outside the guest — a page
 * became resident (a fault, possibly a write), was used again while resident
 * (a write that hit write protection), left — and asks it for victims.
 * A victim taken is out of the policy's books until it is resident again.
 * VM thread only: no locking.
 */
#ifndef MEMSRV_POLICY_H
#define MEMSRV_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#define POLICY_NONE UINT64_MAX

struct policy;

struct policy_ops {
	const char *name;
	const char *summary;  /* how it gets its bits, for docs and `help` */
	int (*init)(struct policy *p);
	void (*fini)(struct policy *p);
	void (*resident)(struct policy *p, uint64_t page, bool write);
	void (*referenced)(struct policy *p, uint64_t page, bool write);
	void (*gone)(struct policy *p, uint64_t page);
	uint64_t (*take_victim)(struct policy *p);
	void (*tick)(struct policy *p);  /* once a second: aging, clearing bits */
};

/* The state every algorithm shares: who is resident, a reference and a
 * modify bit per page, and a doubly linked list (head = oldest). */
struct policy {
	const struct policy_ops *ops;
	uint64_t npages, nresident;
	uint8_t *flags;          /* POLICY_* below */
	uint32_t *prev, *next;   /* list links, UINT32_MAX: none */
	uint32_t head, tail;
	uint8_t *age;            /* aging counters (aging only) */
	uint64_t hand;           /* clock hand / scan cursor */
	uint64_t rng;
};

#define POLICY_RESIDENT 1u
#define POLICY_REF 2u
#define POLICY_MOD 4u
#define POLICY_WATCHED 8u  /* unmapped from the VMM to see its next use (accessed.h) */
#define POLICY_SEEN 16u    /* used since it became resident: worth watching (accessed.h) */
#define POLICY_NIL UINT32_MAX

/* The algorithm named name ("lru", "fifo", "clock", "second-chance",
 * "aging", "nru", "random"), or NULL. */
const struct policy_ops *policy_find(const char *name);
/* Every algorithm, NULL-terminated. */
extern const struct policy_ops *const policy_all[];

/* Sets p up for npages pages, none resident.  0 or -ENOMEM. */
int policy_init(struct policy *p, const struct policy_ops *ops, uint64_t npages);
void policy_fini(struct policy *p);

static inline bool policy_is_resident(const struct policy *p, uint64_t page)
{
	return p->flags[page] & POLICY_RESIDENT;
}

/* The shared list, for the algorithms. */
void policy_list_append(struct policy *p, uint64_t page);
void policy_list_unlink(struct policy *p, uint64_t page);

/* Bookkeeping every algorithm does first (flags, counts); they add their own. */
void policy_mark_resident(struct policy *p, uint64_t page, bool write);
void policy_mark_gone(struct policy *p, uint64_t page);

/* The usual hooks of a list-keeping algorithm: a page new to residency is
 * appended (newest at the tail); one already resident only gets its bits. */
void policy_list_resident(struct policy *p, uint64_t page, bool write);
void policy_list_gone(struct policy *p, uint64_t page);
uint64_t policy_list_take(struct policy *p, uint64_t page);
/* A resident page found unused by sampling: no reference bit, no age, and
 * first in line (the head of the list). */
void policy_mark_idle(struct policy *p, uint64_t page);

/* Sets the reference (and modify) bit of a resident page. */
void policy_set_bits(struct policy *p, uint64_t page, bool write);

#endif
