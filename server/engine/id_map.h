/* id_map: a map from nonzero 64-bit ids to 64-bit values, open addressing,
 * at most half full (short probes).  For the few hundred thousand entries a
 * snapshot or a resume keeps: one VM thread's, not thread-safe. */
#ifndef MEMSRV_ID_MAP_H
#define MEMSRV_ID_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct id_map {
	uint64_t *ids;      /* 0: a free slot */
	uint64_t *values;
	size_t cap, n;      /* cap: a power of two */
};

/* Room for n entries without growing.  0 or -ENOMEM. */
int id_map_reserve(struct id_map *m, size_t n);
/* Whether id is there; *value: its value. */
bool id_map_find(const struct id_map *m, uint64_t id, uint64_t *value);
/* Adds id (nonzero, not there yet) with value.  0 or -ENOMEM. */
int id_map_put(struct id_map *m, uint64_t id, uint64_t value);
/* Calls fn on every id. */
void id_map_each(const struct id_map *m, void (*fn)(uint64_t id, void *arg), void *arg);
void id_map_free(struct id_map *m);

#endif
