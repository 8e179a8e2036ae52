/* workload: access patterns over guest RAM, timed, with verification. */
#include "workload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"
#include "zipf.h"

#define TICK_EVERY 256u          /* accesses between two tick() calls */
#define MISMATCHES_PRINTED 20u   /* details for the first ones only */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint8_t *page_at(const struct workload *w, uint64_t page)
{
	return w->ram->base + page * GUEST_PAGE_SIZE;
}

int workload_init(struct workload *w, struct guest_ram *ram, const struct content_mix *mix,
		  uint64_t seed, bool verify)
{
	memset(w, 0, sizeof *w);
	w->ram = ram;
	w->mix = *mix;
	w->seed = seed;
	w->verify = verify;
	w->rng = rng_mix64(seed ^ 0x6163636573735f72ull);
	w->versions = calloc(ram->pages, sizeof *w->versions);
	w->scratch = aligned_alloc(GUEST_PAGE_SIZE, GUEST_PAGE_SIZE);
	if (!w->versions || !w->scratch) {
		workload_destroy(w);
		return -ENOMEM;
	}
	return 0;
}

void workload_destroy(struct workload *w)
{
	free(w->versions);
	free(w->scratch);
	zipf_destroy(w->zipf);
	w->versions = NULL;
	w->scratch = NULL;
	w->zipf = NULL;
}

static void tick(struct workload *w, uint64_t n)
{
	if (w->tick && n % TICK_EVERY == TICK_EVERY - 1)
		w->tick(w->tick_opaque);
}

void workload_fill(struct workload *w)
{
	for (uint64_t i = 0; i < w->ram->pages; i++) {
		content_fill(page_at(w, i), i, 0, &w->mix, w->seed);
		w->versions[i] = 0;
		tick(w, i);
	}
}

void workload_set_versions(struct workload *w, const uint32_t *versions)
{
	memcpy(w->versions, versions, w->ram->pages * sizeof *w->versions);
}

static void report_mismatch(struct workload *w, uint64_t page, const uint8_t *found)
{
	w->mismatches++;
	if (w->mismatches_printed >= MISMATCHES_PRINTED)
		return;
	if (++w->mismatches_printed == MISMATCHES_PRINTED)
		fprintf(stderr, "vmsim: further mismatches are counted, not shown\n");
	size_t off = 0;
	while (off < GUEST_PAGE_SIZE && found[off] == w->scratch[off])
		off++;
	uint32_t version = w->versions[page];
	fprintf(stderr, "vmsim: mismatch page %llu kind %s version %u offset %zu expected 0x%02x found 0x%02x\n",
		(unsigned long long)page,
		content_kind_name(content_kind_of(page, version, &w->mix, w->seed)),
		version, off, w->scratch[off], found[off]);
}

/* Compares a page with its expected content; the expected page is made
 * before the clock starts, so latency is the access alone (its first byte
 * is where a fault on a non-resident page happens). */
static bool page_matches(struct workload *w, uint64_t page, struct histogram *latency)
{
	const uint8_t *p = page_at(w, page);
	content_fill(w->scratch, page, w->versions[page], &w->mix, w->seed);
	uint64_t t0 = now_ns();
	int diff = memcmp(p, w->scratch, GUEST_PAGE_SIZE);
	if (latency)
		histogram_record(latency, now_ns() - t0);
	if (diff)
		report_mismatch(w, page, p);
	return !diff;
}

static void read_page(struct workload *w, uint64_t page, struct run_stats *stats)
{
	stats->pages_read++;
	if (w->verify) {
		if (!page_matches(w, page, &stats->latency_ns))
			stats->mismatches++;
		return;
	}
	const uint64_t *p = (const uint64_t *)page_at(w, page);
	uint64_t t0 = now_ns();
	uint64_t sum = 0;
	for (unsigned i = 0; i < GUEST_PAGE_SIZE / 8; i++)
		sum += p[i];
	histogram_record(&stats->latency_ns, now_ns() - t0);
	/* Keeps the loads: the compiler cannot see that sum is unused. */
	__asm__ volatile("" : : "r"(sum));
}

static void write_page(struct workload *w, uint64_t page, struct run_stats *stats)
{
	uint32_t version = w->versions[page] + 1;
	content_fill(w->scratch, page, version, &w->mix, w->seed);
	uint64_t t0 = now_ns();
	memcpy(page_at(w, page), w->scratch, GUEST_PAGE_SIZE);
	histogram_record(&stats->latency_ns, now_ns() - t0);
	w->versions[page] = version;
	stats->pages_written++;
}

static void stats_begin(struct run_stats *stats)
{
	memset(stats, 0, sizeof *stats);
}

/* Access number op of a run of ops accesses. */
static void access_once(struct workload *w, const struct pattern_config *cfg, uint64_t op, uint64_t ops,
			struct run_stats *stats)
{
	uint64_t pages = w->ram->pages, page;
	double write_p = cfg->write_pct / 100.0;
	bool write = false;
	switch (cfg->pattern) {
	case PATTERN_SEQ:
		page = op % pages;
		break;
	case PATTERN_WRITE:
		page = op % pages;
		write = true;
		break;
	case PATTERN_RANDOM:
		page = rng_below(&w->rng, pages);
		write = rng_unit(&w->rng) < write_p;
		break;
	case PATTERN_PHASES:
		/* the same skew, shifted by a quarter of RAM per quarter of the run */
		page = (zipf_page(w->zipf, rng_unit(&w->rng)) + (op * 4 / ops) * (pages / 4)) % pages;
		write = rng_unit(&w->rng) < write_p;
		break;
	default:
		page = zipf_page(w->zipf, rng_unit(&w->rng));
		write = rng_unit(&w->rng) < write_p;
		break;
	}
	if (write)
		write_page(w, page, stats);
	else
		read_page(w, page, stats);
	stats->ops++;
	tick(w, op);
}

int workload_run(struct workload *w, const struct pattern_config *cfg, struct run_stats *stats)
{
	uint64_t pages = w->ram->pages;
	uint64_t ops = cfg->ops ? cfg->ops : pages;
	bool zipf = cfg->pattern == PATTERN_ZIPF || cfg->pattern == PATTERN_PHASES;
	if (zipf && (!w->zipf || w->zipf_s != cfg->zipf_s)) {
		zipf_destroy(w->zipf);
		w->zipf = NULL;
		int ret = zipf_create(pages, cfg->zipf_s, w->seed, &w->zipf);
		if (ret)
			return ret;
		w->zipf_s = cfg->zipf_s;
	}
	stats_begin(stats);
	uint64_t t0 = now_ns();
	uint64_t deadline = cfg->duration_s > 0 ? t0 + (uint64_t)(cfg->duration_s * 1e9) : 0;
	do {
		for (uint64_t op = 0; op < ops; op++)
			access_once(w, cfg, op, ops, stats);
	} while (deadline && now_ns() < deadline);
	stats->elapsed_s = (double)(now_ns() - t0) / 1e9;
	return 0;
}

void workload_write_fraction(struct workload *w, double fraction, struct run_stats *stats)
{
	stats_begin(stats);
	uint64_t t0 = now_ns();
	for (uint64_t page = 0; page < w->ram->pages; page++) {
		if (rng_unit(&w->rng) < fraction) {
			write_page(w, page, stats);
			stats->ops++;
		}
		tick(w, page);
	}
	stats->elapsed_s = (double)(now_ns() - t0) / 1e9;
}

uint64_t workload_verify_all(struct workload *w)
{
	uint64_t bad = 0;
	for (uint64_t page = 0; page < w->ram->pages; page++) {
		if (!page_matches(w, page, NULL))
			bad++;
		tick(w, page);
	}
	return bad;
}

bool workload_verify_page(struct workload *w, uint64_t page)
{
	return page_matches(w, page, NULL);
}

void workload_corrupt(struct workload *w, uint64_t page)
{
	page_at(w, page)[GUEST_PAGE_SIZE / 2 + 17] ^= 0x5a;
}

void run_stats_print(FILE *out, const struct run_stats *s)
{
	const struct histogram *h = &s->latency_ns;
	fprintf(out, "ops %llu\n", (unsigned long long)s->ops);
	fprintf(out, "pages_read %llu\n", (unsigned long long)s->pages_read);
	fprintf(out, "pages_written %llu\n", (unsigned long long)s->pages_written);
	fprintf(out, "mismatches %llu\n", (unsigned long long)s->mismatches);
	fprintf(out, "elapsed_s %.6f\n", s->elapsed_s);
	fprintf(out, "ops_per_s %.0f\n", s->elapsed_s > 0 ? (double)s->ops / s->elapsed_s : 0.0);
	fprintf(out, "access_latency_us p50=%.2f p99=%.2f max=%.2f\n",
		histogram_percentile(h, 0.50) / 1e3, histogram_percentile(h, 0.99) / 1e3,
		h->max / 1e3);
}
