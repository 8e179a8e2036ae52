/* units: sizes as operators write them, parsed alike by memsrv, memsrv-ctl
 * and memsrv-vmsim; the settings table (settings.h) reads every number of
 * every setting through it, counts too. */
#ifndef MEMSRV_UNITS_H
#define MEMSRV_UNITS_H

#include <stdint.h>

/* "512M" -> bytes: decimal digits, then optionally K, M or G (powers of
 * 1024, either case).  No sign, space, fraction or other suffix.  0,
 * -EINVAL (not such a size) or -ERANGE (more than 2^64-1 bytes); *out is
 * written only on success. */
int parse_size(const char *s, uint64_t *out);

/* Why parse_size() answered err, for "OPTION: 'S' is not a size: <why>". */
const char *parse_size_why(int err);

#endif
