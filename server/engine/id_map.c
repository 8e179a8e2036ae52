/* id_map: open addressing over nonzero ids (id_map.h). */
#include "id_map.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(const struct id_map *m, uint64_t id)
{
	size_t i = (size_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & (m->cap - 1);
	while (m->ids[i] && m->ids[i] != id)
		i = (i + 1) & (m->cap - 1);
	return i;
}

int id_map_reserve(struct id_map *m, size_t n)
{
	size_t cap = m->cap ? m->cap : 1024;
	while (n * 2 > cap)
		cap *= 2;
	if (cap == m->cap)
		return 0;
	struct id_map bigger = { .cap = cap, .n = m->n };
	bigger.ids = calloc(cap, sizeof *bigger.ids);
	bigger.values = malloc(cap * sizeof *bigger.values);
	if (!bigger.ids || !bigger.values) {
		free(bigger.ids);
		free(bigger.values);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++)
		if (m->ids[i]) {
			size_t j = slot_of(&bigger, m->ids[i]);
			bigger.ids[j] = m->ids[i];
			bigger.values[j] = m->values[i];
		}
	free(m->ids);
	free(m->values);
	*m = bigger;
	return 0;
}

bool id_map_find(const struct id_map *m, uint64_t id, uint64_t *value)
{
	if (!m->cap)
		return false;
	size_t i = slot_of(m, id);
	*value = m->values[i];
	return m->ids[i] == id;
}

int id_map_put(struct id_map *m, uint64_t id, uint64_t value)
{
	if ((m->n + 1) * 2 > m->cap && id_map_reserve(m, m->n + 1))
		return -ENOMEM;
	size_t i = slot_of(m, id);
	m->ids[i] = id;
	m->values[i] = value;
	m->n++;
	return 0;
}

void id_map_each(const struct id_map *m, void (*fn)(uint64_t id, void *arg), void *arg)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->ids[i])
			fn(m->ids[i], arg);
}

void id_map_free(struct id_map *m)
{
	free(m->ids);
	free(m->values);
	*m = (struct id_map){ 0 };
}
