/* settings-doc: keeps docs/operations.md's table of settings equal to the
 * table memsrv reads them by (proto/settings.c).
 *
 *   settings-doc --check docs/operations.md   exit 1 if the doc differs (the unit suite runs this)
 *   settings-doc --write docs/operations.md   rewrite the table in the doc
 *
 * The table is the part of the doc between BEGIN and END.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"

#define BEGIN "<!-- generated from proto/settings.c by settings-doc: do not edit -->\n"
#define END "<!-- end of generated settings table -->\n"

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0;
	*len = 0;
	for (;;) {
		if (*len + 4096 + 1 > cap && !(buf = realloc(buf, cap = cap * 2 + 8192)))
			break;
		size_t n = fread(buf + *len, 1, 4096, f);
		*len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	if (buf)
		buf[*len] = '\0';
	return buf;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "--check") && strcmp(argv[1], "--write"))) {
		fprintf(stderr, "usage: settings-doc --check|--write docs/operations.md\n");
		return 64;
	}
	size_t len;
	char *doc = read_all(argv[2], &len);
	char *begin = doc ? strstr(doc, BEGIN) : NULL;
	char *end = begin ? strstr(begin, END) : NULL;
	if (!end) {
		fprintf(stderr, "settings-doc: %s has no '%.*s' ... '%.*s' section\n", argv[2], (int)strlen(BEGIN) - 1,
			BEGIN, (int)strlen(END) - 1, END);
		return 1;
	}
	begin += strlen(BEGIN);
	char *table;
	size_t table_len;
	FILE *mem = open_memstream(&table, &table_len);
	settings_print_markdown(mem);
	fclose(mem);
	if (!strcmp(argv[1], "--check")) {
		if ((size_t)(end - begin) == table_len && !memcmp(begin, table, table_len))
			return 0;
		fprintf(stderr, "settings-doc: the settings table in %s is not the one proto/settings.c makes:\n%s"
			"Run: build/tests/settings-doc --write %s\n", argv[2], table, argv[2]);
		return 1;
	}
	FILE *out = fopen(argv[2], "w");
	if (!out || fwrite(doc, 1, (size_t)(begin - doc), out) != (size_t)(begin - doc) ||
	    fwrite(table, 1, table_len, out) != table_len || fputs(end, out) < 0 || fclose(out)) {
		perror(argv[2]);
		return 1;
	}
	return 0;
}
