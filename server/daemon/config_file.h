/* config_file: memsrv --config FILE, one `option = value` line per long
 * option of the command line (the same names, without the dashes), read
 * through the settings table as the command line is.
 *
 *   # a comment; blank lines are skipped
 *   node-limit = 48G
 *   swap-dir = /var/lib/memsrv/swap:64G
 *
 * A setting given on the command line wins: the file's lines for it are
 * skipped (all of them, for one that repeats, such as swap-dir).
 */
#ifndef MEMSRV_CONFIG_FILE_H
#define MEMSRV_CONFIG_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "setting_hooks.h"

/* Applies path's lines to o but those of the settings given[] marks.  0,
 * or -errno with why naming the file, the line and what is wrong there:
 * "/etc/memsrv.conf:3: no option 'node-limt' (memsrv --help lists them)". */
int config_file_apply(struct memsrv_options *o, const char *path, const bool given[SETTINGS_COUNT], char *why,
		      size_t len);

#endif
