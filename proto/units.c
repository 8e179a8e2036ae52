/* units: sizes as operators write them. */
#include "units.h"

#include <errno.h>

int parse_size(const char *s, uint64_t *out)
{
	/* digit by digit: strtoull would take spaces, a sign and 0x */
	if (*s < '0' || *s > '9')
		return -EINVAL;
	uint64_t v = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	unsigned shift = 0;
	switch (*s) {
	case 'K': case 'k': shift = 10; s++; break;
	case 'M': case 'm': shift = 20; s++; break;
	case 'G': case 'g': shift = 30; s++; break;
	default: break;
	}
	if (*s)
		return -EINVAL;
	if (v > UINT64_MAX >> shift)
		return -ERANGE;
	*out = v << shift;
	return 0;
}

const char *parse_size_why(int err)
{
	return err == -ERANGE ? "more than 2^64-1 bytes"
			      : "digits with an optional K, M or G (powers of 1024) expected";
}
