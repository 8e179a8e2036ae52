/* options: memsrv-vmsim's command line. */
#ifndef VMSIM_OPTIONS_H
#define VMSIM_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "content.h"
#include "workload.h"

struct vmsim_options {
	const char *socket;
	char name[64];
	uint64_t size;
	uint64_t limit;
	uint64_t guarantee;
	uint32_t shares;
	const char *codec;      /* NULL: the server's default */
	const char *policy;     /* NULL: the server's default */
	uint64_t seed;
	struct content_mix mix;
	bool no_attach;
	bool fill_before_attach;
	bool hugetlb;
	bool mergeable;          /* anonymous RAM for KSM (--no-attach only) */
	bool anonymous;          /* private anonymous RAM, attached with no fd */
	bool verify;
	bool interactive;
	bool bench_content;
	bool bench_discard;
	int64_t corrupt_page;   /* -1: none */
	struct pattern_config pattern;
	const char *resume_dir; /* --resume: NULL, or the directory of vmsim.state and memory.img */
	bool incoming;          /* --incoming: the memory comes by migration */
	/* given on the command line, not defaulted: a resume checks them
	 * against the saved state instead of taking the state's */
	bool size_given, seed_given, mix_given;
};

/* Fills opts from argv.  Returns 0 to run, 1 when --help was printed, or
 * -EINVAL after printing a usage error to stderr. */
int options_parse(int argc, char **argv, struct vmsim_options *opts);

#endif
