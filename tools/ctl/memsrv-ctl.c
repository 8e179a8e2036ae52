/* memsrv-ctl: command-line control of a memsrv server.
 *
 * Replies are printed by walking their protobuf descriptors, so the text and
 * JSON output of every message follow the .proto with no per-field code:
 * text is one `field: value` line per field (nested messages inline as
 * `k=v k=v`), JSON an object with the .proto's field names.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "ctl_client.h"
#include "exit_status.h"
#include "format.h"
#include "settings.h"
#include "top.h"
#include "units.h"

#define PROG "memsrv-ctl"

/* ---- output: one descriptor walk for both formats ---- */

static const void *member(const ProtobufCMessage *m, unsigned offset)
{
	return (const char *)m + offset;
}

/* proto2 optional fields are printed only when set, so that absent and zero
 * stay distinguishable; repeated fields always are (JSON shows []). */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
	if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)member(m, fd->quantifier_offset) == fd->id;
	if (fd->label == PROTOBUF_C_LABEL_REPEATED)
		return true;
	if (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->type == PROTOBUF_C_TYPE_STRING)
		return *(const void *const *)member(m, fd->offset) != NULL;
	if (fd->label == PROTOBUF_C_LABEL_OPTIONAL)
		return *(const protobuf_c_boolean *)member(m, fd->quantifier_offset);
	return true;
}

/* Size of one element of a repeated field's array. */
static size_t elem_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(uint64_t);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default:  /* 32-bit integers, float, bool and enum are all 4 bytes */
		return sizeof(int32_t);
	}
}

static void json_string(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	fputc('"', f);
	while (*s) {
		size_t n = utf8_len(s);
		if (n == 0) {
			fputs("\\ufffd", f);
			s++;
			continue;
		}
		if (n > 1) {
			fwrite(s, 1, n, f);
			s += n;
			continue;
		}
		unsigned char c = *s++;
		switch (c) {
		case '"':  fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(f, "\\u%04x", c);
			else
				fputc(c, f);
		}
	}
	fputc('"', f);
}

static void text_string(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	while (*s) {
		bool printable;
		size_t n = text_char(s, &printable);
		if (printable)
			fwrite(s, 1, n, f);
		else
			fputc('?', f);
		s += n;
	}
}

static void format_double(char *buf, size_t n, double v, bool json)
{
	if (!json)
		snprintf(buf, n, "%.1f", v);
	else if (isfinite(v))
		snprintf(buf, n, "%.15g", v);
	else
		snprintf(buf, n, "null");  /* JSON has no NaN or infinity */
}

/* Numbers, bools and enums, spelt the same in both formats but for enums
 * (quoted in JSON) and doubles (fixed precision in text). */
static void format_scalar(char *buf, size_t n, const ProtobufCFieldDescriptor *fd,
			  const void *p, bool json)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		snprintf(buf, n, "%" PRId32, *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, n, "%" PRId64, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(buf, n, "%" PRIu32, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(buf, n, "%" PRIu64, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		format_double(buf, n, *(const float *)p, json);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		format_double(buf, n, *(const double *)p, json);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		snprintf(buf, n, "%s", *(const protobuf_c_boolean *)p ? "true" : "false");
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(fd->descriptor, v);
		if (!ev)
			snprintf(buf, n, "%d", v);  /* a value newer than this tool */
		else
			snprintf(buf, n, json ? "\"%s\"" : "%s", ev->name);
		break;
	}
	default:
		snprintf(buf, n, "?");
	}
}

static void print_json(FILE *f, const ProtobufCMessage *m);
static void print_inline(FILE *f, const ProtobufCMessage *m);

/* A field that counts bytes: memsrv's names end so ("resident_bytes"). */
static bool is_byte_count(const char *name)
{
	size_t n = strlen(name);
	return n > 6 && !strcmp(name + n - 6, "_bytes");
}

/* One value of field fd at p.  In text, a message nested in a line is
 * `k=v k=v`, and braced one level further down so it stays readable. */
static void print_value(FILE *f, const ProtobufCFieldDescriptor *fd, const void *p,
			bool json, int depth)
{
	char buf[64];
	switch (fd->type) {
	case PROTOBUF_C_TYPE_STRING:
		if (json)
			json_string(f, *(char *const *)p);
		else
			text_string(f, *(char *const *)p);
		return;
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		fputs(json ? "\"" : "", f);
		for (size_t i = 0; i < b->len; i++)
			fprintf(f, "%02x", b->data[i]);
		fputs(json ? "\"" : "", f);
		return;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
		if (json) {
			print_json(f, sub);
		} else {
			fputs(depth ? "{" : "", f);
			print_inline(f, sub);
			fputs(depth ? "}" : "", f);
		}
		return;
	}
	default:
		if (!json && fd->type == PROTOBUF_C_TYPE_UINT64 && is_byte_count(fd->name))
			format_size(buf, sizeof buf, *(const uint64_t *)p, false);  /* JSON keeps the raw bytes */
		else
			format_scalar(buf, sizeof buf, fd, p, json);
		fputs(buf, f);
	}
}

static void print_field(FILE *f, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd,
			bool json, int depth)
{
	if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
		print_value(f, fd, member(m, fd->offset), json, depth);
		return;
	}
	size_t n = *(const size_t *)member(m, fd->quantifier_offset);
	const char *arr = *(const char *const *)member(m, fd->offset);
	fputs(json ? "[" : "", f);
	for (size_t i = 0; i < n; i++) {
		fputs(i == 0 ? "" : json ? "," : ", ", f);
		print_value(f, fd, arr + i * elem_size(fd->type), json, depth + 1);
	}
	fputs(json ? "]" : "", f);
}

static void print_json(FILE *f, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	bool first = true;
	fputc('{', f);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		if (!field_present(m, fd))
			continue;
		fprintf(f, "%s\"%s\":", first ? "" : ",", fd->name);
		print_field(f, m, fd, true, 0);
		first = false;
	}
	fputc('}', f);
}

static void print_inline(FILE *f, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	bool first = true;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		if (!field_present(m, fd))
			continue;
		fprintf(f, "%s%s=", first ? "" : " ", fd->name);
		print_field(f, m, fd, false, 1);
		first = false;
	}
}

/* Redis INFO style: one `field: value` line per field set. */
static void print_text(FILE *f, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		if (!field_present(m, fd))
			continue;
		fprintf(f, "%s: ", fd->name);
		print_field(f, m, fd, false, 0);
		fputc('\n', f);
	}
}

/* ---- the `list` table ---- */

struct column {
	const char *header;
	const char *field;  /* in memsrv.VmInfo */
	bool iec;           /* a byte count, shown as 1.5G */
};

static const struct column list_columns[] = {
	{ "NAME",     "name",           false },
	{ "PID",      "pid",            false },
	{ "SIZE",     "size_bytes",     true },
	{ "RESIDENT", "resident_bytes", true },
	{ "STORED",   "stored_bytes",   true },
	{ "CONDITIONS", "conditions",   false },  /* e.g. pages-poisoned; "-": all is well */
};
#define N_LIST_COLUMNS (sizeof list_columns / sizeof list_columns[0])

/* A repeated string field as words joined by ',' ("-" when empty). */
static void format_words(char *buf, size_t n, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
	size_t count = *(const size_t *)member(m, fd->quantifier_offset);
	char *const *words = *(char *const *const *)member(m, fd->offset);
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < count && used < n; i++)
		used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? "," : "", words[i]);
	if (!count)
		snprintf(buf, n, "-");
}

static void format_cell(char *buf, size_t n, const ProtobufCMessage *m, const struct column *c)
{
	const ProtobufCFieldDescriptor *fd =
		protobuf_c_message_descriptor_get_field_by_name(m->descriptor, c->field);
	if (fd && fd->label == PROTOBUF_C_LABEL_REPEATED && fd->type == PROTOBUF_C_TYPE_STRING) {
		format_words(buf, n, m, fd);
		return;
	}
	if (!fd || !field_present(m, fd) || fd->label == PROTOBUF_C_LABEL_REPEATED) {
		snprintf(buf, n, "-");
		return;
	}
	const void *p = member(m, fd->offset);
	if (c->iec && fd->type == PROTOBUF_C_TYPE_UINT64) {
		format_size(buf, n, *(const uint64_t *)p, true);
	} else if (fd->type == PROTOBUF_C_TYPE_STRING) {
		const unsigned char *s = *(const unsigned char *const *)p;
		size_t i = 0;
		while (*s) {
			bool printable;
			size_t len = text_char(s, &printable);
			if (i + (printable ? len : 1) >= n)
				break;
			if (printable)
				memcpy(buf + i, s, len);
			else
				buf[i] = '?';
			i += printable ? len : 1;
			s += len;
		}
		buf[i] = '\0';
	} else {
		format_scalar(buf, n, fd, p, false);
	}
}

static void print_list_table(FILE *f, const Memsrv__VmList *list)
{
	char cell[256];
	int width[N_LIST_COLUMNS];
	for (size_t c = 0; c < N_LIST_COLUMNS; c++)
		width[c] = (int)strlen(list_columns[c].header);
	for (size_t i = 0; i < list->n_vms; i++) {
		for (size_t c = 0; c < N_LIST_COLUMNS; c++) {
			format_cell(cell, sizeof cell, &list->vms[i]->base, &list_columns[c]);
			if ((int)strlen(cell) > width[c])
				width[c] = (int)strlen(cell);
		}
	}
	/* The first column (the name) is left-aligned, numbers right-aligned. */
	for (size_t c = 0; c < N_LIST_COLUMNS; c++)
		fprintf(f, c ? "  %*s" : "%-*s", width[c], list_columns[c].header);
	fputc('\n', f);
	for (size_t i = 0; i < list->n_vms; i++) {
		for (size_t c = 0; c < N_LIST_COLUMNS; c++) {
			format_cell(cell, sizeof cell, &list->vms[i]->base, &list_columns[c]);
			fprintf(f, c ? "  %*s" : "%-*s", width[c], cell);
		}
		fputc('\n', f);
	}
}

/* ---- command line ---- */

/* The settings memsrv-ctl set takes, from the table memsrv reads them by. */
static void usage_settings(FILE *f, enum setting_scope scope)
{
	for (int i = 0; i < SETTINGS_COUNT; i++) {
		const struct setting *s = &settings[i];
		if (s->scope != scope || !(s->who & SET_BY_CTL))
			continue;
		char values[128], def[64];
		setting_describe_values(s, values, sizeof values);
		setting_describe_default(s, def, sizeof def);
		fprintf(f, "      %s=%s\n          %s (default %s)\n", s->name, values, s->doc, def);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [--socket PATH] [--json] COMMAND [ARGS]\n"
		"\n"
		"Commands:\n"
		"  list                  one line per attached VM\n"
		"  info VM               every counter of one VM\n"
		"  stats                 counters of the whole node\n"
		"  top [--interval S] [--once]\n"
		"                        a live view: the node, and per VM resident, stored,\n"
		"                        faults/s, fault p99 and target, redrawn every S seconds\n"
		"                        (default 1) until q or Ctrl-C; --once, or stdout not a\n"
		"                        terminal: one frame, faults/s over S\n"
		"  evict VM --bytes N    evict at least N bytes (suffix K, M, G: KiB, MiB, GiB)\n"
		"  evict VM --all        evict every resident page\n"
		"  balloon VM --target N ask the VM's balloon to hold the guest at N bytes\n"
		"                        (suffix K, M, G; at most the VM's size)\n"
		"  snapshot VM DIR [--remote]\n"
		"                        write a point-in-time image of the VM's memory to\n"
		"                        DIR/memory.img, paused or running (DIR must exist);\n"
		"                        --remote: its pages go to the remote tier's cluster\n"
		"                        and the image names them, for any node of it to resume\n"
		"  peer-ping ADDR:PORT   have memsrv connect to the memsrv there (its\n"
		"                        --peer-listen) with its --peer-key, authenticate and\n"
		"                        time a ping\n"
		"  migrate VM --to ADDR:PORT\n"
		"                        move the VM's memory to the memsrv there while it\n"
		"                        runs; answers once the VMM detached at the end of\n"
		"                        its own migration and the other node holds every page\n"
		"  remote gc NODE        drop every reference the host NODE (its --node-id)\n"
		"                        holds in the remote tier's cluster: for a host that\n"
		"                        vanished, never one still running\n"
		"  set VM key=value...   change a VM's settings, all or none:\n");
	usage_settings(f, SETTING_SCOPE_VM);
	fprintf(f, "  set node key=value... change the node's:\n");
	usage_settings(f, SETTING_SCOPE_NODE);
	fprintf(f,
		"  check                 warn about quotas the node cannot keep\n"
		"  help                  this text\n"
		"\n"
		"Options:\n"
		"  -s, --socket PATH     server socket (default: $MEMSRV_SOCKET, else %s)\n"
		"  -j, --json            print the reply as JSON (sizes in bytes), and a failure as\n"
		"                        {\"error\":{\"errno_code\":N,\"field\":...,\"message\":...}}\n"
		"  -h, --help            this text\n"
		"\n"
		"A SIZE is digits with an optional K, M or G (KiB, MiB, GiB).\n"
		"Exit status: 0 done, 1 refused by the server, 2 server unreachable or\n"
		"its reply unusable, 64 usage error.\n",
		MEMSRV_DEFAULT_SOCKET);
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry '" PROG " --help'.\n");
	va_end(ap);
	return EX_USAGE;
}

struct command {
	const char *name;
	int nargs;                                  /* positional, after the name; -1: a VM and 1 or more */
	Memsrv__ClientMessage__MsgCase request;
	Memsrv__ServerMessage__MsgCase reply;
};

static const struct command commands[] = {
	{ "list",  0, MEMSRV__CLIENT_MESSAGE__MSG_LIST,  MEMSRV__SERVER_MESSAGE__MSG_VM_LIST },
	{ "info",  1, MEMSRV__CLIENT_MESSAGE__MSG_INFO,  MEMSRV__SERVER_MESSAGE__MSG_VM_INFO },
	{ "stats", 0, MEMSRV__CLIENT_MESSAGE__MSG_STATS, MEMSRV__SERVER_MESSAGE__MSG_NODE_STATS },
	{ "evict", 1, MEMSRV__CLIENT_MESSAGE__MSG_EVICT, MEMSRV__SERVER_MESSAGE__MSG_EVICT_REPLY },
	{ "balloon", 1, MEMSRV__CLIENT_MESSAGE__MSG_BALLOON, MEMSRV__SERVER_MESSAGE__MSG_BALLOON_REPLY },
	{ "set", -1, MEMSRV__CLIENT_MESSAGE__MSG_SET, MEMSRV__SERVER_MESSAGE__MSG_SET_REPLY },
	{ "check", 0, MEMSRV__CLIENT_MESSAGE__MSG_CHECK, MEMSRV__SERVER_MESSAGE__MSG_CHECK_REPLY },
	{ "snapshot", 2, MEMSRV__CLIENT_MESSAGE__MSG_SNAPSHOT, MEMSRV__SERVER_MESSAGE__MSG_SNAPSHOT_REPLY },
	{ "peer-ping", 1, MEMSRV__CLIENT_MESSAGE__MSG_PEER_PING, MEMSRV__SERVER_MESSAGE__MSG_PEER_PING_REPLY },
	{ "migrate", 1, MEMSRV__CLIENT_MESSAGE__MSG_MIGRATE, MEMSRV__SERVER_MESSAGE__MSG_MIGRATE_REPLY },
	{ "remote", 2, MEMSRV__CLIENT_MESSAGE__MSG_REMOTE_GC, MEMSRV__SERVER_MESSAGE__MSG_REMOTE_GC_REPLY },
};

/* path as memsrv is to see it: its working directory is not ours.  Only
 * made absolute, not resolved: memsrv judges what is there.  0 or -errno. */
static int absolute_path(const char *path, char *out, size_t len)
{
	char cwd[PATH_MAX];
	if (path[0] == '/')
		return snprintf(out, len, "%s", path) < (int)len ? 0 : -ENAMETOOLONG;
	if (!getcwd(cwd, sizeof cwd))
		return -errno;
	return snprintf(out, len, "%s/%s", cwd, path) < (int)len ? 0 : -ENAMETOOLONG;
}

/* A failure under --json: {"error":{"errno_code":N,"field":"...","message":"..."}}
 * on stdout, where the reply would have been. */
static void print_json_error(const Memsrv__Error *err)
{
	fputs("{\"error\":", stdout);
	print_json(stdout, &err->base);
	fputs("}\n", stdout);
}

/* The same for a failure of our own (no connection, no reply). */
static void print_json_failure(int errno_code, const char *fmt, ...)
{
	char message[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	Memsrv__Error err = MEMSRV__ERROR__INIT;
	err.errno_code = errno_code;
	err.message = message;
	print_json_error(&err);
}

static void print_refusal(const Memsrv__Error *err)
{
	fprintf(stderr, PROG ": ");
	text_string(stderr, err->message);
	if (err->field) {
		fprintf(stderr, " (field: ");
		text_string(stderr, err->field);
		fputc(')', stderr);
	}
	fputc('\n', stderr);
}

/* memsrv-ctl top: its arguments checked, then the view (top.c). */
static int top_command(const char *socket_path, int nargs, bool json, const char *interval_arg, bool once,
		       bool other_options)
{
	if (nargs != 1)
		return usage_error("'top' takes no argument");
	if (json)
		return usage_error("top prints no JSON: list --json and stats --json give its figures");
	if (other_options)
		return usage_error("--bytes, --all, --target, --to and --remote do not apply to top");
	struct top_options o = { .socket_path = socket_path, .interval_s = 1.0, .once = once };
	if (interval_arg) {
		char *end;
		errno = 0;
		o.interval_s = strtod(interval_arg, &end);
		if (errno || end == interval_arg || *end || !(o.interval_s >= 0.1 && o.interval_s <= 3600))
			return usage_error("--interval wants seconds from 0.1 to 3600, like 0.5, not '%s'", interval_arg);
	}
	return top_run(&o);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json",   no_argument,       NULL, 'j' },
		{ "bytes",  required_argument, NULL, 'b' },
		{ "all",    no_argument,       NULL, 'a' },
		{ "target", required_argument, NULL, 't' },
		{ "to",     required_argument, NULL, 'o' },
		{ "remote", no_argument,       NULL, 'r' },
		{ "interval", required_argument, NULL, 'i' },
		{ "once",   no_argument,       NULL, '1' },
		{ "help",   no_argument,       NULL, 'h' },
		{ 0 }
	};
	const char *socket_path = getenv("MEMSRV_SOCKET");
	if (!socket_path || !*socket_path)
		socket_path = MEMSRV_DEFAULT_SOCKET;
	const char *bytes_arg = NULL, *target_arg = NULL, *to_arg = NULL, *interval_arg = NULL;
	bool json = false, all = false, once = false, remote = false;
	int opt;
	/* getopt_long permutes, so options may come before or after the command. */
	while ((opt = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
		switch (opt) {
		case 's': socket_path = optarg; break;
		case 'j': json = true; break;
		case 'b': bytes_arg = optarg; break;
		case 'a': all = true; break;
		case 't': target_arg = optarg; break;
		case 'o': to_arg = optarg; break;
		case 'r': remote = true; break;
		case 'i': interval_arg = optarg; break;
		case '1': once = true; break;
		case 'h': usage(stdout); return 0;
		default:  fprintf(stderr, "Try '" PROG " --help'.\n"); return EX_USAGE;
		}
	}
	char **args = argv + optind;
	int nargs = argc - optind;
	if (nargs == 0)
		return usage_error("no command given");
	if (!strcmp(args[0], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(args[0], "top"))
		return top_command(socket_path, nargs, json, interval_arg, once,
				   bytes_arg || all || target_arg || to_arg || remote);
	if (interval_arg || once)
		return usage_error("--interval and --once apply only to top");
	const struct command *cmd = NULL;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(args[0], commands[i].name))
			cmd = &commands[i];
	if (!cmd)
		return usage_error("unknown command '%s'", args[0]);
	if (cmd->nargs < 0 ? nargs < 3 : nargs - 1 != cmd->nargs)
		return usage_error(cmd->nargs < 0 ? "'%s' takes a VM name and key=value settings"
				   : cmd->request == MEMSRV__CLIENT_MESSAGE__MSG_REMOTE_GC ? "'%s' takes gc and a node id"
				   : cmd->nargs == 2 ? "'%s' takes a VM name and a directory"
				   : cmd->request == MEMSRV__CLIENT_MESSAGE__MSG_PEER_PING ? "'%s' takes one ADDR:PORT"
				   : cmd->nargs ? "'%s' takes one VM name" : "'%s' takes no argument",
				   cmd->name);

	if (cmd->request != MEMSRV__CLIENT_MESSAGE__MSG_EVICT && (bytes_arg || all))
		return usage_error("--bytes and --all apply only to evict");
	if (cmd->request != MEMSRV__CLIENT_MESSAGE__MSG_BALLOON && target_arg)
		return usage_error("--target applies only to balloon");
	if (cmd->request != MEMSRV__CLIENT_MESSAGE__MSG_MIGRATE && to_arg)
		return usage_error("--to applies only to migrate");
	if (cmd->request != MEMSRV__CLIENT_MESSAGE__MSG_SNAPSHOT && remote)
		return usage_error("--remote applies only to snapshot");
	struct ctl_req req;
	char snapshot_dir[PATH_MAX];
	uint64_t bytes = 0;
	int err = 0;
	switch (cmd->request) {
	case MEMSRV__CLIENT_MESSAGE__MSG_LIST:
		ctl_build_list(&req);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_INFO:
		ctl_build_info(&req, args[1]);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_STATS:
		ctl_build_stats(&req);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_CHECK:
		ctl_build_check(&req);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_SET:
		ctl_build_set(&req, args[1], (const char *const *)args + 2, (size_t)nargs - 2);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_PEER_PING:
		ctl_build_peer_ping(&req, args[1]);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_REMOTE_GC:
		if (strcmp(args[1], "gc"))
			return usage_error("remote takes gc NODE, not '%s'", args[1]);
		ctl_build_remote_gc(&req, args[2]);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_MIGRATE:
		if (!to_arg)
			return usage_error("migrate takes --to ADDR:PORT");
		ctl_build_migrate(&req, args[1], to_arg);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_SNAPSHOT:
		if ((err = absolute_path(args[2], snapshot_dir, sizeof snapshot_dir))) {
			fprintf(stderr, PROG ": %s: %s\n", args[2], strerror(-err));
			return EXIT_REFUSED;
		}
		ctl_build_snapshot(&req, args[1], snapshot_dir, remote);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_BALLOON:
		if (!target_arg)
			return usage_error("balloon takes --target N");
		if ((err = parse_size(target_arg, &bytes)) || !bytes)
			return usage_error("--target wants a positive size like 512M, not '%s': %s", target_arg,
					   err ? parse_size_why(err) : "zero");
		ctl_build_balloon(&req, args[1], bytes);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_EVICT:
	default:
		if (!!bytes_arg == all)
			return usage_error("evict takes either --bytes N or --all");
		if (!all && ((err = parse_size(bytes_arg, &bytes)) || !bytes))
			return usage_error("--bytes wants a positive size like 512M, not '%s': %s", bytes_arg,
					   err ? parse_size_why(err) : "zero");
		ctl_build_evict(&req, args[1], bytes, all);
		break;
	}

	/* Connect apart from the exchange: only a failure here means "cannot connect". */
	int sock = ctl_connect(socket_path);
	if (sock < 0) {
		if (json)
			print_json_failure(-sock, "cannot connect to %s: %s", socket_path, strerror(-sock));
		else
			fprintf(stderr, PROG ": cannot connect to %s: %s\n", socket_path, strerror(-sock));
		return EXIT_NO_SERVER;
	}
	Memsrv__ServerMessage *reply;
	int ret = ctl_call(sock, &req.msg, &reply);
	close(sock);
	if (ret < 0) {
		if (json)
			print_json_failure(-ret, "no reply from %s: %s", socket_path, strerror(-ret));
		else
			fprintf(stderr, PROG ": no reply from %s: %s\n", socket_path, strerror(-ret));
		return EXIT_NO_SERVER;
	}

	int status = 0;
	const ProtobufCFieldDescriptor *fd =
		protobuf_c_message_descriptor_get_field(&memsrv__server_message__descriptor,
							reply->msg_case);
	if (reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR) {
		if (json)
			print_json_error(reply->error);
		else
			print_refusal(reply->error);
		status = EXIT_REFUSED;
	} else if (reply->msg_case != cmd->reply || !fd) {
		fprintf(stderr, PROG ": unexpected reply %s to %s\n", fd ? fd->name : "?", cmd->name);
		status = EXIT_NO_SERVER;
	} else {
		const ProtobufCMessage *body =
			*(const ProtobufCMessage *const *)member(&reply->base, fd->offset);
		if (json) {
			print_json(stdout, body);
			fputc('\n', stdout);
		} else if (reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_VM_LIST) {
			print_list_table(stdout, reply->vm_list);
		} else if (reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_CHECK_REPLY) {
			/* one warning a line, greppable; none: say so */
			const Memsrv__CheckReply *cr = reply->check_reply;
			for (size_t i = 0; i < cr->n_warnings; i++)
				printf("warning %s%s%s: %s\n", cr->warnings[i]->kind, cr->warnings[i]->vm ? " " : "",
				       cr->warnings[i]->vm ? cr->warnings[i]->vm : "", cr->warnings[i]->message);
			if (!cr->n_warnings)
				printf("no warnings\n");
		} else {
			print_text(stdout, body);
		}
	}
	memsrv__server_message__free_unpacked(reply, NULL);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write output: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	return status;
}
