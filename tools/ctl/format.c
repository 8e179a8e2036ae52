/* format: values spelt for a person (format.h). */
#include "format.h"

#include <inttypes.h>
#include <stdio.h>

/* JSON output must be valid UTF-8 whatever the server sent. */
size_t utf8_len(const unsigned char *s)
{
	uint32_t cp, min;
	size_t n;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f, min = 0x80;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, cp = s[0] & 0x0f, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)  /* also stops at the terminating NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

size_t text_char(const unsigned char *s, bool *printable)
{
	size_t n = utf8_len(s);
	*printable = n > 1 || (n == 1 && s[0] >= 0x20 && s[0] != 0x7f);
	return n ? n : 1;
}

void format_size(char *buf, size_t n, uint64_t v, bool in_column)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	if (v < 1024) {
		snprintf(buf, n, in_column ? "%" PRIu64 "B" : "%" PRIu64 " B", v);
		return;
	}
	double d = (double)v / 1024;
	unsigned u = 0;
	while (d >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
		d /= 1024;
		u++;
	}
	if (in_column)
		snprintf(buf, n, "%.1f%c", d, units[u][0]);
	else
		snprintf(buf, n, "%.1f %s", d, units[u]);
}
