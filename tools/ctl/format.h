/* format: how memsrv-ctl spells values for a person, shared by its
 * commands' output and the live view of `top`. */
#ifndef MEMSRV_CTL_FORMAT_H
#define MEMSRV_CTL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at s, 0 if there is none. */
size_t utf8_len(const unsigned char *s);

/* Length of the character at s (at least 1) and whether text output may
 * show it as is: output is line-based (and `top` draws on a terminal), so a
 * control character must neither start a new line nor an escape sequence. */
size_t text_char(const unsigned char *s, bool *printable);

/* A byte count as a person reads it: "512 B", "1.5 KiB", "62.0 MiB"; in
 * a table's column, short: "512B", "1.5K", "62.0M". */
void format_size(char *buf, size_t n, uint64_t v, bool in_column);

#endif
