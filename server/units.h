/* units: sizes as operators write them. */
#ifndef MEMSRV_UNITS_H
#define MEMSRV_UNITS_H

#include <stdint.h>

/* "512M" -> bytes; K, M and G are powers of 1024.  0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);

#endif
