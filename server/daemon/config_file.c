/* config_file: memsrv --config FILE (config_file.h). */
#include "config_file.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* s without its leading and trailing blanks (in place). */
static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

/* One line: blank, a comment, or option = value.  0, or -EINVAL with why
 * (without the file and line, which the caller adds). */
static int apply_line(struct memsrv_options *o, char *line, const bool given[SETTINGS_COUNT], char *why, size_t len)
{
	char *text = trim(line);
	if (!*text || *text == '#')
		return 0;
	char *eq = strchr(text, '=');
	if (!eq) {
		snprintf(why, len, "'%s' is not option = value", text);
		return -EINVAL;
	}
	*eq = 0;
	char *name = trim(text), *value = trim(eq + 1);
	const struct setting *s = setting_find_option(name);
	if (!s) {
		snprintf(why, len, "no option '%s' (memsrv --help lists them)", name);
		return -EINVAL;
	}
	if (!*value) {
		snprintf(why, len, "%s has no value", name);
		return -EINVAL;
	}
	if (given[setting_id(s)])
		return 0;  /* the command line wins */
	char bad[256];
	int ret = settings_apply_option(o, s, value, bad, sizeof bad);
	if (ret)
		snprintf(why, len, "%s: %s", name, bad);
	return ret;
}

int config_file_apply(struct memsrv_options *o, const char *path, const bool given[SETTINGS_COUNT], char *why,
		      size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int err = errno;
		snprintf(why, len, "%s: %s", path, strerror(err));
		return -err;
	}
	/* a long line is an error, never two lines */
	char line[4096 + 2], bad[512];
	int ret = 0;
	for (unsigned n = 1; !ret && fgets(line, sizeof line, f); n++) {
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(bad, sizeof bad, "the line is longer than %d bytes", (int)sizeof line - 2);
			ret = -EINVAL;
		} else {
			ret = apply_line(o, line, given, bad, sizeof bad);
		}
		if (ret)
			snprintf(why, len, "%s:%u: %s", path, n, bad);
	}
	if (!ret && ferror(f)) {
		ret = -EIO;
		snprintf(why, len, "%s: cannot read it", path);
	}
	fclose(f);
	return ret;
}
