/* settings: the table of every setting, and the one parser and checker of
 * their values (settings.h). */
#include "settings.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "units.h"

const char *const settings_codecs[] = { "lz4", "zstd", NULL };
const char *const settings_policies[] = { "lru", "fifo", "clock", "second-chance", "aging", "nru", "random", NULL };
const char *const settings_log_levels[] = { "error", "warn", "info", "debug", NULL };
const char *const settings_off_on[] = { "off", "on", NULL };

#define VM_SET (SET_BY_HELLO | SET_BY_CTL)

const struct setting settings[SETTINGS_COUNT] = {
	[SETTING_VM_CODEC] = {
		.name = "codec", .hello_field = "hello.quota.codec", .arg = "NAME", .type = SETTING_ENUM,
		.scope = SETTING_SCOPE_VM, .who = VM_SET, .values = settings_codecs, .def_text = "memsrv's --codec",
		.doc = "compression of the VM's pages evicted from then on; pages stored keep theirs",
	},
	[SETTING_VM_POLICY] = {
		.name = "policy", .hello_field = "hello.quota.policy", .arg = "NAME", .type = SETTING_ENUM,
		.scope = SETTING_SCOPE_VM, .who = VM_SET, .values = settings_policies, .def = 2 /* clock */,
		.doc = "the VM's eviction algorithm (architecture.md, \"Eviction policies\")",
	},
	[SETTING_VM_LIMIT] = {
		.name = "limit", .hello_field = "hello.quota.limit_bytes", .arg = "SIZE", .type = SETTING_SIZE,
		.scope = SETTING_SCOPE_VM, .who = VM_SET, .min = 1u << 20, .max = UINT64_MAX, .zero_is_none = true,
		.doc = "most memory the VM holds resident; lowered, memsrv evicts down to it at once",
	},
	[SETTING_VM_GUARANTEE] = {
		.name = "guarantee", .hello_field = "hello.quota.guarantee_bytes", .arg = "SIZE", .type = SETTING_SIZE,
		.scope = SETTING_SCOPE_VM, .who = VM_SET, .max = UINT64_MAX,
		.doc = "memory the balancer leaves the VM whatever the others need; at most its limit",
	},
	[SETTING_VM_SHARES] = {
		.name = "shares", .hello_field = "hello.quota.shares", .arg = "N", .type = SETTING_UINT,
		.scope = SETTING_SCOPE_VM, .who = VM_SET, .min = 1, .max = 1000000, .def = 1000,
		.doc = "the VM's weight when the node limit is shared out (a Hello's 0: the default)",
	},
	[SETTING_SOCKET] = {
		.name = "socket", .option = "socket", .arg = "PATH", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "/run/memsrv/memsrv.sock",
		.doc = "Unix socket to listen on, mode 0660; missing parent directories are created",
	},
	[SETTING_SOCKET_GROUP] = {
		.name = "socket-group", .option = "socket-group", .arg = "GROUP", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "none",
		.doc = "the socket's group: its members may attach VMs and read state, not steer",
	},
	[SETTING_MAX_SESSIONS_PER_UID] = {
		.name = "max-sessions-per-uid", .option = "max-sessions-per-uid", .arg = "N", .type = SETTING_UINT,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .min = 1, .max = 65536, .def = 256,
		.doc = "connections one uid of the socket group may hold open",
	},
	[SETTING_CACHE_SIZE] = {
		.name = "cache-size", .option = "cache-size", .arg = "SIZE", .type = SETTING_SIZE,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .max = UINT64_MAX, .zero_is_none = true,
		.doc = "memory the compressed cache of all VMs may hold",
	},
	[SETTING_CODEC] = {
		.name = "codec", .option = "codec", .arg = "NAME", .type = SETTING_ENUM,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .values = settings_codecs,
		.doc = "compression of the VMs that choose none",
	},
	[SETTING_INCOMPRESSIBLE] = {
		.name = "incompressible", .option = "incompressible", .arg = "N", .type = SETTING_UINT,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .min = 64, .max = 4096, .def = 3000,
		.doc = "a page compressing to more than N bytes is kept raw, and goes to swap first",
	},
	[SETTING_SWAP] = {
		.name = "swap", .option = "swap", .arg = "FILE:SIZE", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .repeatable = true, .def_text = "none",
		.doc = "a swap file memsrv creates; the cache's coldest pages go there",
	},
	[SETTING_SWAP_DIR] = {
		.name = "swap-dir", .option = "swap-dir", .arg = "DIR[:SIZE]", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .repeatable = true, .def_text = "none",
		.doc = "the same, named by memsrv inside DIR (SIZE 4G unless given)",
	},
	[SETTING_REMOTE] = {
		.name = "remote", .option = "remote", .arg = "HOST:PORT,...", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "none",
		.doc = "seed nodes of a Redis Cluster: the cache's coldest pages go there when there is no swap, or it is full",
	},
	[SETTING_REMOTE_AUTH] = {
		.name = "remote-auth", .option = "remote-auth", .arg = "FILE", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "none",
		.doc = "the cluster's password, or ACL user and password, as one line PASSWORD or USER PASSWORD; mode 0600",
	},
	[SETTING_NODE_ID] = {
		.name = "node-id", .option = "node-id", .arg = "NAME", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "the hostname",
		.doc = "this host's name in the cluster: the references it holds are filed under it",
	},
	[SETTING_NODE_LIMIT] = {
		.name = "limit", .option = "node-limit", .arg = "SIZE", .type = SETTING_SIZE,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_CTL | SET_BY_OPTION, .max = UINT64_MAX, .zero_is_none = true,
		.doc = "all VMs' resident memory plus memsrv's own",
	},
	[SETTING_IDLE_TAX] = {
		.name = "idle-tax", .option = "idle-tax", .arg = "PCT", .type = SETTING_PERCENT,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .min = 0, .max = 99, .def = 75,
		.doc = "an idle VM's shares count PCT% less",
	},
	[SETTING_STATE_DIR] = {
		.name = "state-dir", .option = "state-dir", .arg = "DIR", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "none",
		.doc = "keep page tables and the cache in DIR (tmpfs) and the swap files, for a restart without loss",
	},
	[SETTING_PEER_LISTEN] = {
		.name = "peer-listen", .option = "peer-listen", .arg = "ADDR:PORT", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "none",
		.doc = "accept other memsrv nodes on this TCP address (127.0.0.1:7070, [::1]:7070, 0.0.0.0:7070)",
	},
	[SETTING_PEER_KEY] = {
		.name = "peer-key", .option = "peer-key", .arg = "FILE", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "none",
		.doc = "the secret peers prove they share: 32 bytes or more, mode 0600; without it only loopback peers",
	},
	[SETTING_METRICS_LISTEN] = {
		.name = "metrics-listen", .option = "metrics-listen", .arg = "ADDR:PORT", .type = SETTING_STRING,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .def_text = "none",
		.doc = "serve Prometheus metrics over HTTP at /metrics on this TCP address (127.0.0.1:9464)",
	},
	[SETTING_LOG_LEVEL] = {
		.name = "log-level", .option = "log-level", .arg = "LEVEL", .type = SETTING_ENUM,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .values = settings_log_levels, .def = 2 /* info */,
		.doc = "the least important lines memsrv logs",
	},
	[SETTING_SPIN_US] = {
		.name = "spin-us", .option = "spin-us", .arg = "N", .type = SETTING_UINT,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .min = 0, .max = 1000000, .def = 200,
		.doc = "busy-poll a VM's uffd up to N us after serving faults, N/4 while half the CPUs spin (0: off)",
	},
	[SETTING_CLEAN_COPIES] = {
		.name = "clean-copies", .option = "clean-copies", .arg = "on|off", .type = SETTING_ENUM,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .values = settings_off_on, .def = 1 /* on */,
		.doc = "a page a read fault brings back keeps its stored copy until written: evicting it again is a punch",
	},
	[SETTING_ACCESSED_BITS] = {
		.name = "accessed-bits", .option = "accessed-bits", .arg = "on|off", .type = SETTING_ENUM,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .values = settings_off_on, .def = 0 /* off */,
		.doc = "reads count as uses for the eviction policies: memsrv unmaps a page whose reference bit a policy cleared and sees its next use in the VMM's page table (fewer faults, at 1-3 us of memsrv's time per page unmapped)",
	},
	[SETTING_RESUME_BACKGROUND] = {
		.name = "resume-background", .option = "resume-background", .arg = "on|off", .type = SETTING_ENUM,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .values = settings_off_on, .def = 1 /* on */,
		.doc = "a VM resumed from an image gets its first-touch pages installed and the rest moved into the store between faults (off: each page comes from the image when the guest first touches it, and the image stays open until then)",
	},
	[SETTING_FOLLOW_VCPUS] = {
		.name = "follow-vcpus", .option = "follow-vcpus", .arg = "on|off", .type = SETTING_ENUM,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .values = settings_off_on, .def = 1 /* on */,
		.doc = "a VM's thread runs on the CPUs its VMM's faulting threads are pinned to, so a fault is served on the CPU its vCPU just left (no effect while they may run anywhere)",
	},
	[SETTING_MAPPING_SCAN_MS] = {
		.name = "mapping-scan-ms", .option = "mapping-scan-ms", .arg = "N", .type = SETTING_UINT,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .min = 10, .max = 60000, .def = 1000,
		.doc = "look for other processes mapping guest RAM every N ms",
	},
	[SETTING_DEBUG_HASH_BITS] = {
		.name = "debug-hash-bits", .option = "debug-hash-bits", .arg = "N", .type = SETTING_UINT,
		.scope = SETTING_SCOPE_NODE, .who = SET_BY_OPTION, .min = 0, .max = 63, .hidden = true,
		.doc = "keep only N bits of each page's hash, so that tests can force collisions (0: all)",
	},
};

const struct setting *setting_find(enum setting_scope scope, const char *name, unsigned who)
{
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (settings[i].scope == scope && (settings[i].who & who) && !strcmp(settings[i].name, name))
			return &settings[i];
	return NULL;
}

const struct setting *setting_find_option(const char *option)
{
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (settings[i].option && !strcmp(settings[i].option, option))
			return &settings[i];
	return NULL;
}

/* 1048576 as 1M: bounds read as an operator writes them */
static void format_size(char *out, size_t len, uint64_t v)
{
	static const char units[] = "GMK";
	for (unsigned u = 0; u < 3; u++) {
		unsigned shift = 30 - 10 * u;
		if (v && v % (1ull << shift) == 0) {
			snprintf(out, len, "%" PRIu64 "%c", v >> shift, units[u]);
			return;
		}
	}
	snprintf(out, len, "%" PRIu64, v);
}

static size_t count_values(const struct setting *s)
{
	size_t n = 0;
	while (s->values[n])
		n++;
	return n;
}

/* The names joined by sep: "lz4|zstd". */
static void join_values(const struct setting *s, const char *sep, char *out, size_t len)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; s->values[i] && used < len; i++)
		used += (size_t)snprintf(out + used, len - used, "%s%s", i ? sep : "", s->values[i]);
}

/* What a value must be, after "is not": "0 (none) or a size of 1M or more". */
static void bounds_text(const struct setting *s, char *out, size_t len)
{
	char lo[32], hi[32];
	const char *none = s->zero_is_none && s->min ? "0 (none) or " : "";
	if (s->type == SETTING_SIZE) {
		format_size(lo, sizeof lo, s->min);
		format_size(hi, sizeof hi, s->max);
		if (s->max == UINT64_MAX)
			snprintf(out, len, s->min ? "%sa size of %s or more" : "%sa size", none, lo);
		else
			snprintf(out, len, "%sa size of %s to %s", none, lo, hi);
		return;
	}
	snprintf(out, len, "%s%s%" PRIu64 "..%" PRIu64, none, s->type == SETTING_PERCENT ? "a percentage " : "", s->min,
		 s->max);
}

/* "neither lz4 nor zstd", "none of lru, fifo, ...": the names a wrong one is not. */
static void enum_refusal(const struct setting *s, char *out, size_t len)
{
	if (count_values(s) == 2) {
		snprintf(out, len, "neither %s nor %s", s->values[0], s->values[1]);
		return;
	}
	int n = snprintf(out, len, "none of ");
	join_values(s, ", ", out + n, len - (size_t)n);
}

static bool within(const struct setting *s, uint64_t v)
{
	return (v >= s->min && v <= s->max) || (s->zero_is_none && v == 0);
}

int setting_check(const struct setting *s, uint64_t value, char *why, size_t len)
{
	char bounds[128];
	if (s->type == SETTING_STRING)
		return 0;
	if (s->type == SETTING_ENUM) {
		if (value < count_values(s))
			return 0;
		enum_refusal(s, bounds, sizeof bounds);
		snprintf(why, len, "%" PRIu64 " is %s", value, bounds);
		return -EINVAL;
	}
	if (within(s, value))
		return 0;
	bounds_text(s, bounds, sizeof bounds);
	snprintf(why, len, "%" PRIu64 " is not %s", value, bounds);
	return -EINVAL;
}

static int parse_enum(const struct setting *s, const char *text, uint64_t *value, char *why, size_t len)
{
	for (size_t i = 0; s->values[i]; i++)
		if (!strcmp(text, s->values[i])) {
			*value = i;
			return 0;
		}
	char names[256];
	enum_refusal(s, names, sizeof names);
	snprintf(why, len, "'%s' is %s", text, names);
	return -EINVAL;
}

int setting_parse(const struct setting *s, const char *text, uint64_t *value, char *why, size_t len)
{
	if (s->type == SETTING_STRING) {
		*value = 0;
		return 0;
	}
	if (s->type == SETTING_ENUM)
		return parse_enum(s, text, value, why, len);
	uint64_t v;
	int err = parse_size(text, &v);
	if (err || !within(s, v)) {
		char bounds[128];
		bounds_text(s, bounds, sizeof bounds);
		snprintf(why, len, "'%s' is not %s%s%s", text, bounds, err ? ": " : "", err ? parse_size_why(err) : "");
		return err ? err : -EINVAL;
	}
	*value = v;
	return 0;
}

void settings_list(enum setting_scope scope, unsigned who, char *out, size_t len)
{
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < SETTINGS_COUNT && used < len; i++)
		if (settings[i].scope == scope && (settings[i].who & who))
			used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "", settings[i].name);
}

void setting_describe_values(const struct setting *s, char *out, size_t len)
{
	switch (s->type) {
	case SETTING_ENUM:
		join_values(s, "|", out, len);
		return;
	case SETTING_STRING:
		snprintf(out, len, "%s", s->arg);
		return;
	case SETTING_SIZE:
		if (s->min) {
			char lo[32];
			format_size(lo, sizeof lo, s->min);
			snprintf(out, len, "SIZE (%s%s or more)", s->zero_is_none ? "0: none, else " : "", lo);
		} else {
			snprintf(out, len, "SIZE%s", s->zero_is_none ? " (0: none)" : "");
		}
		return;
	default:
		snprintf(out, len, "%" PRIu64 "..%" PRIu64 "%s", s->min, s->max,
			 s->type == SETTING_PERCENT ? " (percent)" : "");
	}
}

void setting_describe_default(const struct setting *s, char *out, size_t len)
{
	if (s->def_text)
		snprintf(out, len, "%s", s->def_text);
	else if (s->type == SETTING_ENUM)
		snprintf(out, len, "%s", s->values[s->def]);
	else if (s->zero_is_none && !s->def)
		snprintf(out, len, "none");
	else if (s->type == SETTING_SIZE)
		format_size(out, len, s->def);
	else
		snprintf(out, len, "%" PRIu64, s->def);
}

/* "Hello (`Quota.limit_bytes`), `set VM`, `--node-limit`" */
static void who_text(const struct setting *s, char *out, size_t len)
{
	size_t used = 0;
	out[0] = '\0';
	if (s->who & SET_BY_HELLO) {
		const char *field = strrchr(s->hello_field, '.') + 1;
		used += (size_t)snprintf(out + used, len - used, "Hello (`Quota.%s`)", field);
	}
	if ((s->who & SET_BY_CTL) && used < len)
		used += (size_t)snprintf(out + used, len - used, "%s`set %s`", used ? ", " : "",
					 s->scope == SETTING_SCOPE_VM ? "VM" : "node");
	if ((s->who & SET_BY_OPTION) && used < len)
		snprintf(out + used, len - used, "%s`--%s`", used ? ", " : "", s->option);
}

/* A cell of a markdown table: its | escaped. */
static void print_cell(FILE *out, const char *text)
{
	fputs("| ", out);
	for (; *text; text++) {
		if (*text == '|')
			fputc('\\', out);
		fputc(*text, out);
	}
	fputc(' ', out);
}

void settings_print_markdown(FILE *out)
{
	fputs("| Setting | Scope | Values | Default | Set by | Meaning |\n", out);
	fputs("|---|---|---|---|---|---|\n", out);
	for (int i = 0; i < SETTINGS_COUNT; i++) {
		const struct setting *s = &settings[i];
		if (s->hidden)
			continue;
		char name[64], values[256], def[64], who[128];
		snprintf(name, sizeof name, "`%s`", s->name);
		setting_describe_values(s, values, sizeof values);
		setting_describe_default(s, def, sizeof def);
		who_text(s, who, sizeof who);
		print_cell(out, name);
		print_cell(out, s->scope == SETTING_SCOPE_VM ? "VM" : "node");
		print_cell(out, values);
		print_cell(out, def);
		print_cell(out, who);
		print_cell(out, s->doc);
		fputs("|\n", out);
	}
}

/* Text for roff: a leading dot or quote escaped where it would start a
 * line (line_start), backslashes and dashes spelt as roff wants them. */
static void print_roff_text(FILE *out, const char *text, bool line_start)
{
	if (line_start && (*text == '.' || *text == '\''))
		fputs("\\&", out);
	for (; *text; text++) {
		if (*text == '\\')
			fputs("\\e", out);
		else if (*text == '-')
			fputs("\\-", out);
		else
			fputc(*text, out);
	}
}

void settings_print_man_options(FILE *out)
{
	for (int i = 0; i < SETTINGS_COUNT; i++) {
		const struct setting *s = &settings[i];
		if (!s->option || s->hidden)
			continue;
		char values[256], def[64], rest[512];
		setting_describe_values(s, values, sizeof values);
		setting_describe_default(s, def, sizeof def);
		fputs(".TP\n.BI \\-\\-", out);
		print_roff_text(out, s->option, false);
		fputs(" \" ", out);
		print_roff_text(out, s->arg, false);
		fputs("\"\n", out);
		print_roff_text(out, s->doc, true);
		if (s->type == SETTING_STRING)
			snprintf(rest, sizeof rest, ". %sDefault: %s.\n", s->repeatable ? "Repeatable. " : "", def);
		else
			snprintf(rest, sizeof rest, ". Values: %s; default: %s.\n", values, def);
		print_roff_text(out, rest, false);
	}
}
