/* zpool: size-classed slab pool; slots are threaded into per-slab free lists. */
#include "zpool.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLAB_SIZE   (64u * 1024)        /* small, so an idle VM's memory can go back */
#define CLASS_STEP  64u
#define NCLASSES    (ZPOOL_MAX_OBJECT / CLASS_STEP)

/* Handle layout, low to high: slot, requested size - 1, slab index + 1.
 * Carrying the size lets zpool_free() keep object_bytes exact without any
 * per-object metadata; the +1 keeps handles nonzero. */
#define SLOT_BITS   10
#define SIZE_BITS   12
#define SLAB_SHIFT  (SLOT_BITS + SIZE_BITS)
#define SLAB_BITS   (ZPOOL_HANDLE_BITS - SLAB_SHIFT)
#define MAX_SLABS   ((1u << SLAB_BITS) - 1)     /* 4 TiB of slabs */

#define NO_SLAB     UINT32_MAX
#define NO_SLOT     UINT16_MAX

_Static_assert(SLAB_SIZE / CLASS_STEP <= 1u << SLOT_BITS, "slot index must fit");
_Static_assert(ZPOOL_MAX_OBJECT <= 1u << SIZE_BITS, "size must fit");
_Static_assert(SLAB_SIZE / ZPOOL_MAX_OBJECT > 1, "a slab must hold two slots of every class");

struct zslab {
	char *mem;              /* NULL: descriptor is on the spare list */
	uint32_t prev, next;    /* class's partial list; next also links spares */
	uint16_t free_head;     /* slots freed since the slab was last empty */
	uint16_t bump;          /* slots from here on were never handed out */
	uint16_t inuse;
	uint8_t cls;
};

struct zclass {
	uint32_t partial;       /* slabs with both used and free slots */
	uint32_t empty;         /* the one cached empty slab, or NO_SLAB */
	uint16_t nslots;
};

struct zpool {
	int fd;                 /* -1: anonymous slabs; else slab i is at i * SLAB_SIZE of fd */
	struct zclass cls[NCLASSES];
	struct zslab *slabs;    /* indexed by the handle's slab field */
	uint32_t nslabs;        /* descriptors ever used */
	uint32_t cap;
	uint32_t spare;         /* descriptors whose slab was unmapped */
	uint64_t live_slabs;
	uint64_t objects;
	uint64_t object_bytes;
	uint64_t slot_bytes;
};

static inline uint32_t slot_size(unsigned cls)
{
	return (cls + 1) * CLASS_STEP;
}

static inline unsigned size_class(size_t size)
{
	return (size - 1) / CLASS_STEP;
}

static inline uint32_t h_slab(zpool_handle h)
{
	return (uint32_t)(h >> SLAB_SHIFT) - 1;
}

static inline size_t h_size(zpool_handle h)
{
	return ((h >> SLOT_BITS) & ((1u << SIZE_BITS) - 1)) + 1;
}

static inline unsigned h_slot(zpool_handle h)
{
	return h & ((1u << SLOT_BITS) - 1);
}

struct zpool *zpool_create(void)
{
	struct zpool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	for (unsigned c = 0; c < NCLASSES; c++) {
		p->cls[c].partial = NO_SLAB;
		p->cls[c].empty = NO_SLAB;
		p->cls[c].nslots = SLAB_SIZE / slot_size(c);
	}
	p->spare = NO_SLAB;
	p->fd = -1;
	return p;
}

struct zpool *zpool_create_in_file(int fd)
{
	struct zpool *p = zpool_create();
	if (p)
		p->fd = fd;
	return p;
}

/* A slab's memory: anonymous, or its place in the pool's file. */
static void *slab_map(struct zpool *p, uint32_t idx)
{
	if (p->fd < 0) {
		void *mem = mmap(NULL, SLAB_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return mem == MAP_FAILED ? NULL : mem;
	}
	/* allocated now, not at the first write into the mapping: a full
	 * filesystem says ENOSPC here instead of SIGBUS there */
	off_t off = (off_t)idx * SLAB_SIZE;
	if (fallocate(p->fd, 0, off, SLAB_SIZE))
		return NULL;
	void *mem = mmap(NULL, SLAB_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, off);
	return mem == MAP_FAILED ? NULL : mem;
}

void zpool_destroy(struct zpool *p)
{
	if (!p)
		return;
	for (uint32_t i = 0; i < p->nslabs; i++)
		if (p->slabs[i].mem)
			munmap(p->slabs[i].mem, SLAB_SIZE);
	free(p->slabs);
	free(p);
}

static void partial_push(struct zpool *p, struct zclass *cl, uint32_t idx)
{
	struct zslab *s = &p->slabs[idx];
	s->prev = NO_SLAB;
	s->next = cl->partial;
	if (cl->partial != NO_SLAB)
		p->slabs[cl->partial].prev = idx;
	cl->partial = idx;
}

static void partial_del(struct zpool *p, struct zclass *cl, uint32_t idx)
{
	struct zslab *s = &p->slabs[idx];
	if (s->prev != NO_SLAB)
		p->slabs[s->prev].next = s->next;
	else
		cl->partial = s->next;
	if (s->next != NO_SLAB)
		p->slabs[s->next].prev = s->prev;
}

/* Amortised doubling: descriptors are per slab, never per object. */
static int grow_table(struct zpool *p)
{
	if (p->cap >= MAX_SLABS)
		return -ENOMEM;
	uint32_t cap = p->cap ? p->cap * 2 : 64;
	if (cap > MAX_SLABS)
		cap = MAX_SLABS;
	struct zslab *t = realloc(p->slabs, cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	p->slabs = t;
	p->cap = cap;
	return 0;
}

static int slab_new(struct zpool *p, unsigned cls, uint32_t *out)
{
	uint32_t idx = p->spare;
	if (idx == NO_SLAB) {
		if (p->nslabs == p->cap) {
			int r = grow_table(p);
			if (r)
				return r;
		}
		idx = p->nslabs;
	}
	void *mem = slab_map(p, idx);
	if (!mem)
		return -ENOMEM;
	if (idx == p->spare)
		p->spare = p->slabs[idx].next;
	else
		p->nslabs++;
	p->slabs[idx] = (struct zslab){
		.mem = mem, .prev = NO_SLAB, .next = NO_SLAB,
		.free_head = NO_SLOT, .cls = cls,
	};
	p->live_slabs++;
	*out = idx;
	return 0;
}

static void slab_release(struct zpool *p, uint32_t idx)
{
	struct zslab *s = &p->slabs[idx];
	munmap(s->mem, SLAB_SIZE);
	if (p->fd >= 0)  /* the memory goes back; the file keeps its size */
		fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)idx * SLAB_SIZE, SLAB_SIZE);
	s->mem = NULL;
	s->next = p->spare;
	p->spare = idx;
	p->live_slabs--;
}

int zpool_alloc(struct zpool *p, size_t size, zpool_handle *out)
{
	if (size == 0 || size > ZPOOL_MAX_OBJECT)
		return -EINVAL;
	unsigned c = size_class(size);
	struct zclass *cl = &p->cls[c];
	uint32_t idx = cl->partial;
	if (idx == NO_SLAB) {
		idx = cl->empty;
		if (idx != NO_SLAB) {
			cl->empty = NO_SLAB;
		} else {
			int r = slab_new(p, c, &idx);
			if (r)
				return r;
		}
		partial_push(p, cl, idx);
	}
	struct zslab *s = &p->slabs[idx];
	unsigned slot;
	if (s->free_head != NO_SLOT) {
		slot = s->free_head;
		s->free_head = *(uint16_t *)(s->mem + (size_t)slot * slot_size(c));
	} else {
		slot = s->bump++;
	}
	if (++s->inuse == cl->nslots)
		partial_del(p, cl, idx);
	p->objects++;
	p->object_bytes += size;
	p->slot_bytes += slot_size(c);
	*out = (zpool_handle)(idx + 1) << SLAB_SHIFT |
	       (zpool_handle)(size - 1) << SLOT_BITS | slot;
	return 0;
}

void *zpool_map(const struct zpool *p, zpool_handle h)
{
	uint32_t idx = h_slab(h);
	unsigned c = size_class(h_size(h));
	unsigned slot = h_slot(h);
	assert(h != 0 && h >> ZPOOL_HANDLE_BITS == 0);
	assert(idx < p->nslabs && p->slabs[idx].mem);
	assert(p->slabs[idx].cls == c && slot < p->slabs[idx].bump);
	return p->slabs[idx].mem + (size_t)slot * slot_size(c);
}

void zpool_free(struct zpool *p, zpool_handle h)
{
	uint32_t idx = h_slab(h);
	size_t size = h_size(h);
	unsigned c = size_class(size);
	unsigned slot = h_slot(h);
	assert(h != 0 && h >> ZPOOL_HANDLE_BITS == 0);
	assert(idx < p->nslabs && p->slabs[idx].mem);
	struct zslab *s = &p->slabs[idx];
	struct zclass *cl = &p->cls[c];
	assert(s->cls == c && slot < s->bump && s->inuse > 0);

	p->objects--;
	p->object_bytes -= size;
	p->slot_bytes -= slot_size(c);

	bool was_full = s->inuse == cl->nslots;
	if (--s->inuse == 0) {
		if (!was_full)
			partial_del(p, cl, idx);
		/* Restart from a clean bump pointer: no stale free list to keep. */
		s->free_head = NO_SLOT;
		s->bump = 0;
		if (cl->empty == NO_SLAB)
			cl->empty = idx;
		else
			slab_release(p, idx);
		return;
	}
	*(uint16_t *)(s->mem + (size_t)slot * slot_size(c)) = s->free_head;
	s->free_head = slot;
	if (was_full)
		partial_push(p, cl, idx);
}

void zpool_get_stats(const struct zpool *p, struct zpool_stats *st)
{
	st->objects = p->objects;
	st->object_bytes = p->object_bytes;
	st->slot_bytes = p->slot_bytes;
	st->pool_bytes = p->live_slabs * SLAB_SIZE;
	st->slabs = p->live_slabs;
}

/* Which slots of each slab the live handles hold, one bit a slot. */
struct restore_map {
	uint64_t (*used)[SLAB_SIZE / CLASS_STEP / 64];
	uint32_t nslabs;
};

static int restore_mark(struct zpool *p, struct restore_map *m, zpool_handle h)
{
	if (h == 0 || h >> ZPOOL_HANDLE_BITS)
		return -EINVAL;
	uint32_t idx = h_slab(h);
	unsigned c = size_class(h_size(h)), slot = h_slot(h);
	if (idx >= MAX_SLABS || slot >= p->cls[c].nslots)
		return -EINVAL;
	while (idx >= p->cap)
		if (grow_table(p))
			return -ENOMEM;
	if (idx >= m->nslabs) {
		uint32_t n = p->cap;
		void *u = realloc(m->used, n * sizeof *m->used);
		if (!u)
			return -ENOMEM;
		m->used = u;
		memset(m->used + m->nslabs, 0, (n - m->nslabs) * sizeof *m->used);
		m->nslabs = n;
	}
	while (p->nslabs <= idx)
		p->slabs[p->nslabs++] = (struct zslab){ .prev = NO_SLAB, .next = NO_SLAB, .free_head = NO_SLOT };
	struct zslab *s = &p->slabs[idx];
	if (!s->mem) {
		if (!(s->mem = slab_map(p, idx)))
			return -ENOMEM;
		s->cls = (uint8_t)c;
		p->live_slabs++;
	} else if (s->cls != c) {
		return -EINVAL;  /* one slab, two size classes */
	}
	uint64_t bit = 1ull << (slot % 64);
	if (m->used[idx][slot / 64] & bit)
		return -EINVAL;  /* one slot, two handles */
	m->used[idx][slot / 64] |= bit;
	s->inuse++;
	if (slot >= s->bump)
		s->bump = (uint16_t)(slot + 1);
	p->objects++;
	p->object_bytes += h_size(h);
	p->slot_bytes += slot_size(c);
	return 0;
}

int zpool_restore(struct zpool *p, const zpool_handle *live, size_t n)
{
	struct restore_map m = { 0 };
	int ret = 0;
	for (size_t i = 0; i < n && !ret; i++)
		ret = restore_mark(p, &m, live[i]);
	for (uint32_t idx = 0; idx < p->nslabs && !ret; idx++) {
		struct zslab *s = &p->slabs[idx];
		if (!s->mem) {
			/* nothing live here: the file's bytes go, the descriptor is spare */
			if (p->fd >= 0)
				fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)idx * SLAB_SIZE,
					  SLAB_SIZE);
			s->next = p->spare;
			p->spare = idx;
			continue;
		}
		/* the free slots below the highest live one form its free list */
		struct zclass *cl = &p->cls[s->cls];
		for (unsigned slot = s->bump; slot-- > 0;)
			if (!(m.used[idx][slot / 64] & (1ull << (slot % 64)))) {
				*(uint16_t *)(s->mem + (size_t)slot * slot_size(s->cls)) = s->free_head;
				s->free_head = (uint16_t)slot;
			}
		if (s->inuse < cl->nslots)
			partial_push(p, cl, idx);
	}
	free(m.used);
	return ret;
}
