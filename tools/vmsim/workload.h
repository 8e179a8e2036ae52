/* workload: the simulated guest's accesses to its RAM, and verification.
 *
 * Each 4 KiB page has a version in private memory; its content is always
 * content_fill(index, version), so verifying a page means regenerating it
 * into a scratch page and comparing: no second copy of RAM is needed.
 */
#ifndef VMSIM_WORKLOAD_H
#define VMSIM_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "content.h"
#include "guest_ram.h"
#include "histogram.h"

enum pattern {
	PATTERN_SEQ,     /* read every page in order */
	PATTERN_RANDOM,  /* uniform pages, write_pct of them written */
	PATTERN_ZIPF,    /* Zipf-skewed scattered hot set, same */
	PATTERN_WRITE,   /* rewrite every page in order */
	PATTERN_PHASES,  /* zipf whose hot set moves to other pages each quarter of the run */
};

struct pattern_config {
	enum pattern pattern;
	uint64_t ops;       /* accesses; 0: one per page */
	double duration_s;  /* 0: once; else the ops again and again until this long */
	double zipf_s;      /* skew of PATTERN_ZIPF */
	double write_pct;   /* 0..100, for random and zipf */
};

struct run_stats {
	uint64_t ops;
	uint64_t pages_read;
	uint64_t pages_written;
	uint64_t mismatches;
	double elapsed_s;
	struct histogram latency_ns;  /* one value per access */
};

struct zipf;

struct workload {
	struct guest_ram *ram;
	uint32_t *versions;         /* per 4 KiB page */
	struct content_mix mix;
	uint64_t seed;
	bool verify;                /* compare every page read */
	uint64_t rng;               /* access pattern state */
	struct zipf *zipf;          /* built on the first zipf run */
	double zipf_s;
	uint8_t *scratch;           /* one page, expected or next content */
	uint64_t mismatches;        /* ever seen */
	unsigned mismatches_printed;
	/* Called every few hundred accesses, so a long run can still answer
	 * the server. */
	void (*tick)(void *opaque);
	void *tick_opaque;
};

int workload_init(struct workload *w, struct guest_ram *ram, const struct content_mix *mix,
		  uint64_t seed, bool verify);
void workload_destroy(struct workload *w);

/* Writes version 0 of every page. */
void workload_fill(struct workload *w);

/* The RAM holds these versions already (a resumed VM, whose pages memsrv
 * brings): they are taken, nothing is written. */
void workload_set_versions(struct workload *w, const uint32_t *versions);

/* Runs a pattern; stats are overwritten.  Returns 0 or -ENOMEM (zipf). */
int workload_run(struct workload *w, const struct pattern_config *cfg, struct run_stats *stats);

/* Rewrites about fraction (0..1) of the pages, picked at random. */
void workload_write_fraction(struct workload *w, double fraction, struct run_stats *stats);

/* Verifies every page; returns the number of mismatching pages. */
uint64_t workload_verify_all(struct workload *w);

/* Verifies one page (a mismatch is counted and reported); true if intact. */
bool workload_verify_page(struct workload *w, uint64_t page);

/* Flips a byte of a page behind the versions' back, to test verification. */
void workload_corrupt(struct workload *w, uint64_t page);

/* ops, pages_read, pages_written, mismatches, elapsed_s, ops_per_s and
 * access_latency_us lines. */
void run_stats_print(FILE *out, const struct run_stats *stats);

#endif
