/* settings-doc: keeps docs/operations.md's table of settings equal to the
 * table memsrv reads them by (proto/settings.c).
 *
 *   settings-doc --check docs/operations.md   exit 1 if the doc differs (the unit suite runs this)
 *   settings-doc --write docs/operations.md   rewrite the table in the doc
 *
 * The table is the part of the doc between BEGIN and END.  --check also
 * holds the doc's table of memsrv's options (the rows starting "| `-" of
 * its section "## memsrv") to
 * the options the settings table has: none missing, none unknown.
 */
#include <stdbool.h>
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
		if (*len + 4096 + 1 > cap) {
			char *more = realloc(buf, cap = cap * 2 + 8192);
			if (!more) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = more;
		}
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

static bool known_option(const char *name, size_t len)
{
	/* memsrv's options that are no setting */
	if ((len == 4 && !strncmp(name, "help", 4)) || (len == 7 && !strncmp(name, "version", 7)) ||
	    (len == 6 && !strncmp(name, "config", 6)))
		return true;
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (settings[i].option && strlen(settings[i].option) == len && !strncmp(settings[i].option, name, len))
			return true;
	return false;
}

/* Every --option the doc's option rows name is memsrv's, and every option
 * of the table (but hidden ones) has its row.  0 or the number of faults. */
static int check_option_rows(const char *doc, const char *path)
{
	int faults = 0;
	bool documented[SETTINGS_COUNT] = { false };
	const char *section = strstr(doc, "\n## memsrv\n"), *next = section ? strstr(section + 1, "\n## ") : NULL;
	if (!section) {
		fprintf(stderr, "settings-doc: %s has no section '## memsrv'\n", path);
		return 1;
	}
	for (const char *line = section; line && *line && (!next || line < next);
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, "| `-", 4))
			continue;
		const char *cell_end = strstr(line + 1, " |");
		for (const char *p = line; (p = strstr(p, "`--")) && p < cell_end;) {
			p += 3;
			size_t len = strcspn(p, " `");
			const struct setting *s = NULL;
			if (!known_option(p, len)) {
				fprintf(stderr, "settings-doc: %s documents --%.*s, which memsrv does not have\n", path, (int)len, p);
				faults++;
			}
			for (int i = 0; i < SETTINGS_COUNT; i++)
				if (settings[i].option && strlen(settings[i].option) == len && !strncmp(settings[i].option, p, len))
					s = &settings[i];
			if (s)
				documented[setting_id(s)] = true;
		}
	}
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (settings[i].option && !settings[i].hidden && !documented[i]) {
			fprintf(stderr, "settings-doc: %s has no row \"| `--%s ...` |\" for memsrv's option\n", path,
				settings[i].option);
			faults++;
		}
	return faults;
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
		free(doc);
		return 1;
	}
	begin += strlen(BEGIN);
	char *table;
	size_t table_len;
	FILE *mem = open_memstream(&table, &table_len);
	settings_print_markdown(mem);
	fclose(mem);
	int status = 0;
	if (!strcmp(argv[1], "--check")) {
		status = check_option_rows(doc, argv[2]) ? 1 : 0;
		if ((size_t)(end - begin) != table_len || memcmp(begin, table, table_len)) {
			fprintf(stderr, "settings-doc: the settings table in %s is not the one proto/settings.c makes:\n%s"
				"Run: build/tests/settings-doc --write %s\n", argv[2], table, argv[2]);
			status = 1;
		}
	} else {
		FILE *out = fopen(argv[2], "w");
		if (!out || fwrite(doc, 1, (size_t)(begin - doc), out) != (size_t)(begin - doc) ||
		    fwrite(table, 1, table_len, out) != table_len || fputs(end, out) < 0 ||
		    fclose(out)) {
			perror(argv[2]);
			status = 1;
		}
	}
	free(table);
	free(doc);
	return status;
}
