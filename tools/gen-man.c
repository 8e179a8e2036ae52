/* gen-man: memsrv(8) from its template, its options from the settings
 * table (proto/settings.c), as --help prints them: the page never lists an
 * option memsrv does not have.
 *
 *   gen-man TEMPLATE VERSION DATE SYSCONFDIR > memsrv.8
 *
 * The template's line "@OPTIONS@" becomes the options; @VERSION@, @DATE@
 * and @SYSCONFDIR@ their values. */
#include <stdio.h>
#include <string.h>

#include "settings.h"

/* line with each @KEY@ of keys[] replaced by its value, to out */
static void substitute(FILE *out, const char *line, const char *const keys[][2])
{
	while (*line) {
		int done = 0;
		for (int k = 0; keys[k][0] && !done; k++) {
			size_t n = strlen(keys[k][0]);
			if (!strncmp(line, keys[k][0], n)) {
				fputs(keys[k][1], out);
				line += n;
				done = 1;
			}
		}
		if (!done)
			fputc(*line++, out);
	}
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: gen-man TEMPLATE VERSION DATE SYSCONFDIR\n");
		return 64;
	}
	FILE *in = fopen(argv[1], "r");
	if (!in) {
		perror(argv[1]);
		return 1;
	}
	const char *const keys[][2] = {
		{ "@VERSION@", argv[2] }, { "@DATE@", argv[3] }, { "@SYSCONFDIR@", argv[4] }, { NULL, NULL },
	};
	char line[4096];
	while (fgets(line, sizeof line, in)) {
		if (!strcmp(line, "@OPTIONS@\n"))
			settings_print_man_options(stdout);
		else
			substitute(stdout, line, keys);
	}
	fclose(in);
	return ferror(stdout) || fflush(stdout) ? 1 : 0;
}
