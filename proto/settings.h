/* settings: every setting of memsrv, described once.
 *
 * One row per setting, in the style of Redis's config.c: its name, type,
 * bounds, default, scope (a VM or the node), who may set it (a VMM's Hello,
 * `memsrv-ctl set`, memsrv's command line) and a line of doc.  memsrv parses
 * and checks every value through it, whichever way it comes; memsrv-ctl
 * prints its --help from it, and docs/operations.md's settings table is
 * generated from it.  The rows know nothing of the server: memsrv applies a
 * value through the hook it keeps for each row (server/daemon/setting_hooks.h),
 * so memsrv-ctl links this without the server.
 */
#ifndef MEMSRV_SETTINGS_H
#define MEMSRV_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum setting_id {
	/* a VM's: its Hello's Quota, then memsrv-ctl set VM key=value */
	SETTING_VM_CODEC,
	SETTING_VM_POLICY,
	SETTING_VM_LIMIT,
	SETTING_VM_GUARANTEE,
	SETTING_VM_SHARES,
	/* the node's: memsrv's command line (and memsrv-ctl set node) */
	SETTING_SOCKET,
	SETTING_SOCKET_GROUP,
	SETTING_MAX_SESSIONS_PER_UID,
	SETTING_CACHE_SIZE,
	SETTING_CODEC,
	SETTING_INCOMPRESSIBLE,
	SETTING_SWAP,
	SETTING_SWAP_DIR,
	SETTING_REMOTE,
	SETTING_REMOTE_AUTH,
	SETTING_NODE_ID,
	SETTING_NODE_LIMIT,
	SETTING_IDLE_TAX,
	SETTING_STATE_DIR,
	SETTING_PEER_LISTEN,
	SETTING_PEER_KEY,
	SETTING_METRICS_LISTEN,
	SETTING_LOG_LEVEL,
	SETTING_SPIN_US,
	SETTING_CLEAN_COPIES,
	SETTING_ACCESSED_BITS,
	SETTING_RESUME_BACKGROUND,
	SETTING_FOLLOW_VCPUS,
	SETTING_MAPPING_SCAN_MS,
	SETTING_DEBUG_HASH_BITS,
	SETTINGS_COUNT
};

enum setting_type {
	SETTING_SIZE,     /* bytes, as parse_size() reads them: 512M */
	SETTING_UINT,     /* a count, read by parse_size() too (so 1K is 1024) */
	SETTING_PERCENT,  /* a whole percentage, a count that means n/100 */
	SETTING_ENUM,     /* one of values[]; the value is its index */
	SETTING_STRING,   /* a path or a name, taken as it is */
};

enum setting_scope { SETTING_SCOPE_VM, SETTING_SCOPE_NODE };

/* who may set it: bits */
#define SET_BY_HELLO 1u    /* a VMM, in its Hello's Quota */
#define SET_BY_CTL 2u      /* memsrv-ctl set VM|node key=value, at run time */
#define SET_BY_OPTION 4u   /* memsrv's command line */

struct setting {
	const char *name;         /* the key of memsrv-ctl set */
	const char *option;       /* memsrv's --option, or NULL */
	const char *hello_field;  /* where a Hello carries it, or NULL */
	const char *arg;          /* what the value looks like in usage: SIZE, N, NAME */
	enum setting_type type;
	enum setting_scope scope;
	unsigned who;             /* SET_BY_* */
	uint64_t min, max;        /* bounds of SIZE, UINT, PERCENT (inclusive) */
	bool zero_is_none;        /* 0 is allowed below min and means "none" */
	bool repeatable;          /* an option that may be given more than once */
	bool hidden;              /* for tests: left out of --help and the docs */
	const char *const *values;  /* ENUM: NULL-terminated names, in value order */
	uint64_t def;             /* the default value (ENUM: an index) */
	const char *def_text;     /* the default as docs say it, when the value cannot: "clock", "none" */
	const char *doc;          /* one line: what it does */
};

extern const struct setting settings[SETTINGS_COUNT];

/* The names a setting of type ENUM takes, one list each. */
extern const char *const settings_codecs[];    /* index = enum codec */
extern const char *const settings_policies[];  /* the eviction algorithms, as policy_find() knows them */
extern const char *const settings_log_levels[];  /* index = enum log_level */
extern const char *const settings_off_on[];      /* off = 0, on = 1 */

/* The row of scope named name that who may set, or NULL. */
const struct setting *setting_find(enum setting_scope scope, const char *name, unsigned who);
/* The row of memsrv's --option (without the dashes), or NULL. */
const struct setting *setting_find_option(const char *option);
static inline enum setting_id setting_id(const struct setting *s)
{
	return (enum setting_id)(s - settings);
}

/* Reads text as a value of s: SIZE/UINT/PERCENT a number within the
 * bounds, ENUM the index of a name.  0, or -EINVAL (-ERANGE: more than
 * 2^64-1) with why saying what is wrong, the text quoted and the bound
 * named: "'12' is not 0 (none) or a size of 1M or more".  A STRING is
 * accepted as it is (*value 0). */
int setting_parse(const struct setting *s, const char *text, uint64_t *value, char *why, size_t len);

/* Checks a value that arrived typed (a Hello's numbers) against the same
 * bounds: 0, or -EINVAL with why: "1000001 is not 1..1000000". */
int setting_check(const struct setting *s, uint64_t value, char *why, size_t len);

/* The rule between two settings: a limit (0: none) at or above the
 * guarantee. */
static inline bool settings_quota_consistent(uint64_t limit, uint64_t guarantee)
{
	return !limit || guarantee <= limit;
}

/* The keys of scope that who may set, ", "-separated: "codec, policy, ...". */
void settings_list(enum setting_scope scope, unsigned who, char *out, size_t len);

/* The bounds and values a row takes, as help and docs show them: "lz4|zstd",
 * "1..1000000", "0 (none) or 1M..". */
void setting_describe_values(const struct setting *s, char *out, size_t len);
/* Its default as help and docs show it: "clock", "1000", "none". */
void setting_describe_default(const struct setting *s, char *out, size_t len);

/* docs/operations.md's settings table, in markdown: one row per setting
 * not hidden. */
void settings_print_markdown(FILE *out);

/* memsrv(8)'s options, in roff (man(7)): a .TP paragraph per option of the
 * command line not hidden. */
void settings_print_man_options(FILE *out);

#endif
