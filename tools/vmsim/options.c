/* options: parsing and --help for memsrv-vmsim. */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memsrv.h"
#include "settings.h"
#include "units.h"

static const char help_text[] =
	"Usage: memsrv-vmsim [OPTION]...\n"
	"A simulated VM: fills guest RAM (a memfd) with synthetic content, attaches\n"
	"it to memsrv, runs an access pattern and checks what it reads back.\n"
	"\n"
	"Attachment:\n"
	"  --socket PATH         memsrv socket (default $MEMSRV_SOCKET or " MEMSRV_DEFAULT_SOCKET ")\n"
	"  --name NAME           VM name (default vmsim-<pid>)\n"
	"  --limit SIZE          the VM's memory limit\n"
	"  --guarantee SIZE      the VM's guaranteed memory\n"
	"  --shares N            the VM's weight\n"
	"  --codec lz4|zstd      compression of the VM's evicted pages (default: memsrv's)\n"
	"  --policy NAME         eviction algorithm: %s\n"
	"  --no-attach           run without memsrv (the baseline)\n"
	"  --fill-before-attach  fill RAM before attaching (default: after, through memsrv)\n"
	"  --mergeable           RAM is private anonymous memory with MADV_MERGEABLE, for KSM\n"
	"                        (needs --no-attach)\n"
	"  --anonymous           RAM is private anonymous memory (no fd), as Firecracker and\n"
	"                        Cloud Hypervisor map it: libmemsrv's drop thread drops what\n"
	"                        memsrv saved\n"
	"  --resume DIR          resume the VM saved in DIR: DIR/vmsim.state (interactive\n"
	"                        `save DIR`) gives size, mix, seed and every page's version,\n"
	"                        memsrv serves the pages from DIR/memory.img (memsrv-ctl\n"
	"                        snapshot VM DIR); no fill; prints attach_s, first_page_s\n"
	"  --incoming            the VM's memory comes from another memsrv node by live\n"
	"                        migration (memsrv-ctl migrate): RAM starts empty, no fill;\n"
	"                        needs --interactive (`expect DIR` then `verify`)\n"
	"\n"
	"Guest RAM and content:\n"
	"  --size SIZE           guest RAM, suffix K, M or G (default 64M)\n"
	"  --hugetlb             back RAM with 2 MiB huge pages if available\n"
	"  --seed N              content and pattern seed (default 1)\n"
	"  --mix SPEC            content kinds in percent, summing to 100\n"
	"                        (default zero=30,text=30,binary=30,random=10)\n"
	"  --private-pct P       only P percent of the pages depend on --seed; the others are\n"
	"                        a base image shared by every VM until rewritten (default 100)\n"
	"\n"
	"Access pattern:\n"
	"  --pattern P           seq | random | zipf | write | phases (zipf, hot set moving each quarter) (default seq)\n"
	"  --ops N               accesses (default one per page)\n"
	"  --duration SEC        repeat the pattern until SEC seconds have passed\n"
	"  --zipf-s S            zipf skew (default 1.1)\n"
	"  --write-pct P         percent of writes under random and zipf (default 0)\n"
	"  --verify              check each page read, and every page at the end\n"
	"\n"
	"Modes:\n"
	"  --interactive         after attach and fill print \"ready\", then serve commands\n"
	"                        from stdin: run, verify, write FRACTION, report,\n"
	"                        save DIR (write DIR/vmsim.state for --resume),\n"
	"                        expect DIR (take DIR/vmsim.state's versions: what the VM\n"
	"                        migrated from wrote), migrated (detach: the VM moved to\n"
	"                        another node; exits once it holds every page), quit\n"
	"  --bench-content       print the content generator's ns per page and exit\n"
	"  --bench-discard       after the fill, discard every other page: one memsrv_discard()\n"
	"                        each in the first half, fenced batches of 256 in the second;\n"
	"                        print the us per page of each, detach and exit\n"
	"  --help                this text\n"
	"\n"
	"Exit status: 0 good, 1 mismatch, 2 attach or setup error, 3 server gone,\n"
	"64 usage error.\n";

enum {
	OPT_SOCKET = 256, OPT_NAME, OPT_SIZE, OPT_LIMIT, OPT_GUARANTEE, OPT_SHARES, OPT_CODEC, OPT_POLICY,
	OPT_SEED, OPT_MIX, OPT_NO_ATTACH, OPT_FILL_BEFORE_ATTACH, OPT_HUGETLB,
	OPT_PATTERN, OPT_OPS, OPT_DURATION, OPT_ZIPF_S, OPT_WRITE_PCT, OPT_VERIFY, OPT_INTERACTIVE,
	OPT_BENCH_CONTENT, OPT_BENCH_DISCARD, OPT_CORRUPT, OPT_MERGEABLE, OPT_ANONYMOUS, OPT_PRIVATE_PCT, OPT_RESUME, OPT_INCOMING, OPT_HELP,
};

static const struct option long_options[] = {
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ "guarantee", required_argument, NULL, OPT_GUARANTEE },
	{ "shares", required_argument, NULL, OPT_SHARES },
	{ "codec", required_argument, NULL, OPT_CODEC },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "mix", required_argument, NULL, OPT_MIX },
	{ "no-attach", no_argument, NULL, OPT_NO_ATTACH },
	{ "fill-before-attach", no_argument, NULL, OPT_FILL_BEFORE_ATTACH },
	{ "hugetlb", no_argument, NULL, OPT_HUGETLB },
	{ "pattern", required_argument, NULL, OPT_PATTERN },
	{ "ops", required_argument, NULL, OPT_OPS },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "zipf-s", required_argument, NULL, OPT_ZIPF_S },
	{ "write-pct", required_argument, NULL, OPT_WRITE_PCT },
	{ "verify", no_argument, NULL, OPT_VERIFY },
	{ "interactive", no_argument, NULL, OPT_INTERACTIVE },
	{ "bench-content", no_argument, NULL, OPT_BENCH_CONTENT },
	{ "bench-discard", no_argument, NULL, OPT_BENCH_DISCARD },
	{ "mergeable", no_argument, NULL, OPT_MERGEABLE },
	{ "anonymous", no_argument, NULL, OPT_ANONYMOUS },
	{ "private-pct", required_argument, NULL, OPT_PRIVATE_PCT },
	{ "resume", required_argument, NULL, OPT_RESUME },
	{ "incoming", no_argument, NULL, OPT_INCOMING },
	/* Not in --help: flips a byte of a page after the fill, so tests can
	 * prove that verification catches corruption. */
	{ "corrupt-for-test", required_argument, NULL, OPT_CORRUPT },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static void print_help(void)
{
	char policies[160];
	setting_describe_values(&settings[SETTING_VM_POLICY], policies, sizeof policies);
	printf(help_text, policies);
}

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("memsrv-vmsim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\nTry 'memsrv-vmsim --help'.\n", stderr);
	va_end(ap);
	return -EINVAL;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_pattern(const char *s, enum pattern *out)
{
	static const char *const names[] = {
		[PATTERN_SEQ] = "seq", [PATTERN_RANDOM] = "random",
		[PATTERN_ZIPF] = "zipf", [PATTERN_WRITE] = "write", [PATTERN_PHASES] = "phases",
	};
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (!strcmp(s, names[i])) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

static void set_defaults(struct vmsim_options *o)
{
	memset(o, 0, sizeof *o);
	const char *env = getenv("MEMSRV_SOCKET");
	o->socket = env && *env ? env : MEMSRV_DEFAULT_SOCKET;
	snprintf(o->name, sizeof o->name, "vmsim-%d", (int)getpid());
	o->size = 64ull << 20;
	o->seed = 1;
	o->mix = content_mix_default;
	o->corrupt_page = -1;
	o->pattern.pattern = PATTERN_SEQ;
	o->pattern.zipf_s = 1.1;
}

int options_parse(int argc, char **argv, struct vmsim_options *o)
{
	set_defaults(o);
	uint64_t v, private_pct = 100;
	int c, err;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		switch (c) {
		case OPT_SOCKET:
			o->socket = optarg;
			break;
		case OPT_NAME:
			if (strlen(optarg) >= sizeof o->name || !*optarg)
				return usage_error("--name: 1 to 63 characters");
			strcpy(o->name, optarg);
			break;
		case OPT_SIZE:
			if ((err = parse_size(optarg, &o->size)))
				return usage_error("--size: '%s': %s", optarg, parse_size_why(err));
			if (!o->size || o->size % GUEST_PAGE_SIZE)
				return usage_error("--size: a positive multiple of 4K, e.g. 64M");
			o->size_given = true;
			break;
		case OPT_LIMIT:
			if ((err = parse_size(optarg, &o->limit)))
				return usage_error("--limit: '%s': %s", optarg, parse_size_why(err));
			break;
		case OPT_GUARANTEE:
			if ((err = parse_size(optarg, &o->guarantee)))
				return usage_error("--guarantee: '%s': %s", optarg, parse_size_why(err));
			break;
		case OPT_SHARES:
			if (parse_u64(optarg, &v) || v > UINT32_MAX)
				return usage_error("--shares: a number up to 2^32-1");
			o->shares = (uint32_t)v;
			break;
		case OPT_POLICY:
			o->policy = optarg;  /* memsrv checks the name and refuses a wrong one at attach */
			break;
		case OPT_CODEC: {
			char why[128];
			if (setting_parse(&settings[SETTING_VM_CODEC], optarg, &v, why, sizeof why))
				return usage_error("--codec: %s", why);
			o->codec = optarg;
			break;
		}
		case OPT_SEED:
			if (parse_u64(optarg, &o->seed))
				return usage_error("--seed: a number");
			o->seed_given = true;
			break;
		case OPT_MIX:
			if (content_mix_parse(optarg, &o->mix))
				return usage_error("--mix: e.g. zero=30,text=30,binary=30,random=10 (sum 100)");
			o->mix_given = true;
			break;
		case OPT_NO_ATTACH:
			o->no_attach = true;
			break;
		case OPT_FILL_BEFORE_ATTACH:
			o->fill_before_attach = true;
			break;
		case OPT_HUGETLB:
			o->hugetlb = true;
			break;
		case OPT_PATTERN:
			if (parse_pattern(optarg, &o->pattern.pattern))
				return usage_error("--pattern: seq, random, zipf, write or phases");
			break;
		case OPT_OPS:
			if (parse_u64(optarg, &o->pattern.ops) || !o->pattern.ops)
				return usage_error("--ops: a positive number");
			break;
		case OPT_DURATION:
			if (parse_double(optarg, 0.001, 1e6, &o->pattern.duration_s))
				return usage_error("--duration: seconds, more than 0");
			break;
		case OPT_ZIPF_S:
			if (parse_double(optarg, 0.01, 100, &o->pattern.zipf_s))
				return usage_error("--zipf-s: a skew between 0.01 and 100");
			break;
		case OPT_WRITE_PCT:
			if (parse_double(optarg, 0, 100, &o->pattern.write_pct))
				return usage_error("--write-pct: a percentage, 0 to 100");
			break;
		case OPT_VERIFY:
			o->verify = true;
			break;
		case OPT_INTERACTIVE:
			o->interactive = true;
			break;
		case OPT_BENCH_CONTENT:
			o->bench_content = true;
			break;
		case OPT_BENCH_DISCARD:
			o->bench_discard = true;
			break;
		case OPT_CORRUPT:
			if (parse_u64(optarg, &v) || v > INT64_MAX)
				return usage_error("--corrupt-for-test: a page index");
			o->corrupt_page = (int64_t)v;
			break;
		case OPT_MERGEABLE:
			o->mergeable = true;
			break;
		case OPT_ANONYMOUS:
			o->anonymous = true;
			break;
		case OPT_PRIVATE_PCT:
			if (parse_u64(optarg, &private_pct) || private_pct > 100)
				return usage_error("--private-pct: a percentage, 0 to 100");
			o->mix_given = true;
			break;
		case OPT_RESUME:
			if (!*optarg)
				return usage_error("--resume: a directory");
			o->resume_dir = optarg;
			break;
		case OPT_INCOMING:
			o->incoming = true;
			break;
		case OPT_HELP:
			print_help();
			return 1;
		default:
			for (const struct option *lo = long_options; optopt && lo->name; lo++)
				if (lo->val == optopt)
					return usage_error(lo->has_arg ? "--%s needs an argument" : "--%s takes no argument",
							   lo->name);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	o->mix.shared_pct = (uint8_t)(100 - private_pct);  /* after --mix, which resets the mix */
	if (o->mergeable && (!o->no_attach || o->hugetlb))
		return usage_error("--mergeable: only with --no-attach, without --hugetlb");
	if (o->anonymous && (o->mergeable || o->hugetlb || o->resume_dir || o->incoming))
		return usage_error("--anonymous: not with --mergeable, --hugetlb, --resume or --incoming (memsrv "
				   "snapshots and migrates shared memory only)");
	if (o->hugetlb && o->size % GUEST_HUGE_PAGE_SIZE)
		return usage_error("--hugetlb: --size must be a multiple of 2M");
	if (o->incoming && (o->no_attach || o->fill_before_attach || o->resume_dir || !o->interactive))
		return usage_error("--incoming: memsrv brings the RAM's content from the node the VM migrates from: "
				   "it needs --interactive, and neither --no-attach, --fill-before-attach nor --resume");
	if (o->resume_dir && (o->no_attach || o->fill_before_attach))
		return usage_error("--resume: memsrv gives the RAM its content, so neither --no-attach "
				   "nor --fill-before-attach");
	/* on a resume the size may come from the state: checked against it later */
	if (o->corrupt_page >= 0 && (uint64_t)o->corrupt_page >= o->size / GUEST_PAGE_SIZE &&
	    (!o->resume_dir || o->size_given))
		return usage_error("--corrupt-for-test: page beyond --size");
	return 0;
}
