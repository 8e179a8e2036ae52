/* content: deterministic synthetic page contents for vmsim. */
#include "content.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define WORDS_PER_PAGE (CONTENT_PAGE_SIZE / 8)

const struct content_mix content_mix_default = { { 30, 30, 30, 10 } };

static const char *const kind_names[CONTENT_KINDS] = { "zero", "text", "binary", "random" };

const char *content_kind_name(enum content_kind kind)
{
	return (unsigned)kind < CONTENT_KINDS ? kind_names[kind] : "?";
}

int content_mix_parse(const char *spec, struct content_mix *mix)
{
	struct content_mix m = { { 0 } };
	unsigned sum = 0, seen = 0;
	const char *p = spec;
	while (*p) {
		const char *eq = strchr(p, '=');
		if (!eq)
			return -EINVAL;
		int k;
		for (k = 0; k < CONTENT_KINDS; k++)
			if (strlen(kind_names[k]) == (size_t)(eq - p) && !strncmp(p, kind_names[k], eq - p))
				break;
		if (k == CONTENT_KINDS || seen & 1u << k)
			return -EINVAL;
		seen |= 1u << k;
		char *end;
		unsigned long v = strtoul(eq + 1, &end, 10);
		if (end == eq + 1 || v > 100 || (*end && *end != ','))
			return -EINVAL;
		m.pct[k] = (uint8_t)v;
		sum += v;
		p = *end ? end + 1 : end;
	}
	if (sum != 100)
		return -EINVAL;
	*mix = m;
	return 0;
}

static uint64_t page_hash(uint64_t index, uint32_t version, uint64_t seed)
{
	return rng_mix64(rng_mix64(seed ^ (index * 0x9e3779b97f4a7c15ull)) + version * 0xd1b54a32d192ed03ull);
}

/* The seed a page's content comes from: the base image's for a shared
 * page not yet rewritten, else the VM's. */
static uint64_t page_seed(uint64_t index, uint32_t version, const struct content_mix *mix, uint64_t seed)
{
	if (!mix->shared_pct || version)
		return seed;
	unsigned r = (unsigned)(((page_hash(index, 0, CONTENT_BASE_SEED ^ 0x7368617265ull) >> 32) * 100) >> 32);
	return r < mix->shared_pct ? CONTENT_BASE_SEED : seed;
}

enum content_kind content_kind_of(uint64_t index, uint32_t version,
				  const struct content_mix *mix, uint64_t seed)
{
	seed = page_seed(index, version, mix, seed);
	/* Multiply-shift maps the hash onto 0..99 without a division. */
	unsigned r = (unsigned)(((page_hash(index, version, seed) >> 32) * 100) >> 32);
	unsigned acc = 0;
	for (int k = 0; k < CONTENT_KINDS; k++) {
		acc += mix->pct[k];
		if (r < acc)
			return k;
	}
	return CONTENT_ZERO;  /* a mix that sums below 100 */
}

/* Common words first: lines favour low indices, which gives English-like
 * word frequencies. */
static const char *const vocabulary[128] = {
	"the", "of", "and", "to", "a", "in", "is", "it", "that", "for", "on", "with",
	"as", "was", "be", "by", "this", "are", "or", "from", "at", "not", "but",
	"have", "an", "which", "one", "all", "can", "will", "there", "page", "memory",
	"server", "guest", "kernel", "process", "virtual", "machine", "fault",
	"cache", "swap", "file", "user", "system", "device", "driver", "buffer",
	"request", "response", "error", "value", "return", "function", "struct",
	"pointer", "thread", "socket", "network", "packet", "address", "region",
	"table", "entry", "time", "when", "would", "their", "about", "other", "into",
	"more", "some", "could", "them", "than", "then", "only", "these", "first",
	"after", "before", "because", "through", "between", "under", "while", "where",
	"number", "people", "little", "should", "called", "example", "without",
	"another", "configuration", "initialize", "allocation", "compression",
	"performance", "transaction", "application", "interrupt", "database",
	"document", "version", "directory", "terminal", "protocol", "session",
	"balloon", "hypervisor", "scheduler", "timestamp", "checksum", "mapping",
	"register", "resident", "evicted", "daemon", "library", "compiler", "generic",
	"parallel", "storage", "quota", "limit",
};

/* Text is assembled from lines, as in logs, configs and sources: a table
 * of lines built once from the vocabulary.  A page draws its lines from a
 * window of 64 of them, favouring the window's first lines, so lines recur
 * within a page as they do in real text: that, not the word frequencies, is
 * what LZ4 finds (ratio about 2.5).  Copying whole lines keeps generation
 * at a few hundred ns per page. */
#define TEXT_LINES 1024   /* a power of two */
#define TEXT_WINDOW 64    /* lines one page draws from; a power of two */
#define TEXT_LINE_MAX 96
struct text_line {
	char text[TEXT_LINE_MAX];
	uint32_t len;
};
static struct text_line text_lines[TEXT_LINES];

/* Runs at load time: the table is read-only afterwards, so threads can
 * share it without locking. */
__attribute__((constructor)) static void build_text_lines(void)
{
	uint64_t rng = 0x746578746c696e65ull;
	for (unsigned i = 0; i < TEXT_LINES; i++) {
		struct text_line *l = &text_lines[i];
		unsigned target = 24 + rng_next(&rng) % (TEXT_LINE_MAX - 16 - 24);
		l->len = 0;
		while (l->len < target) {
			uint64_t r = rng_next(&rng);
			unsigned a = r & 127, b = (r >> 7) & 127;
			const char *w = vocabulary[a < b ? a : b];
			size_t n = strlen(w);
			memcpy(l->text + l->len, w, n);
			l->text[l->len + n] = ' ';
			l->len += n + 1;
		}
		l->text[l->len - 1] = '\n';
	}
}

static const struct text_line *pick_line(unsigned base, uint64_t r)
{
	/* min of two picks: the window's first lines are the most frequent */
	unsigned a = r & (TEXT_WINDOW - 1), b = (r >> 16) & (TEXT_WINDOW - 1);
	return &text_lines[(base + (a < b ? a : b)) & (TEXT_LINES - 1)];
}

static void fill_text(uint8_t *out, uint64_t rng)
{
	size_t pos = 0;
	unsigned base = (unsigned)rng_next(&rng);
	while (pos + 2 * TEXT_LINE_MAX <= CONTENT_PAGE_SIZE) {
		uint64_t r = rng_next(&rng);
		/* Fixed-size copies are a few vector stores; the next line
		 * overwrites what lies past this one. */
		const struct text_line *l = pick_line(base, r);
		memcpy(out + pos, l->text, TEXT_LINE_MAX);
		pos += l->len;
		l = pick_line(base, r >> 32);
		memcpy(out + pos, l->text, TEXT_LINE_MAX);
		pos += l->len;
	}
	while (pos < CONTENT_PAGE_SIZE) {
		const struct text_line *l = pick_line(base, rng_next(&rng));
		size_t left = CONTENT_PAGE_SIZE - pos;
		memcpy(out + pos, l->text, l->len < left ? l->len : left);
		pos += l->len;
	}
	out[CONTENT_PAGE_SIZE - 1] = '\n';  /* the last line is cut */
}

/* Arrays of a per-page struct layout: a record number, list pointers into
 * one 0x00007fxxxxxxxxxx heap area, a constant flags word, small counters,
 * a 32-bit hash, and every so often a cleared record.  LZ4 ratio about 2. */
static void fill_binary(uint64_t *out, uint64_t rng)
{
	enum { REC_MAX = 10 };
	uint64_t setup = rng_next(&rng);
	uint64_t heap = 0x00007f0000000000ull | ((setup << 12) & 0xfffffff000ull);
	uint64_t flags = (setup >> 40) & 0x0f0f;
	unsigned rec_words = 4 + ((setup >> 56) & 3) * 2;  /* 32 to 80 bytes */
	uint64_t rec_bytes = rec_words * 8;
	uint64_t id = (setup >> 20) & 0xffff;
	uint64_t tail[REC_MAX];
	for (unsigned w = 0; w < WORDS_PER_PAGE; w += rec_words, id++) {
		uint64_t r = rng_next(&rng);
		uint64_t keep = (r & 15) ? ~0ull : 0;  /* one record in 16 is cleared */
		/* Records are written REC_MAX words wide, straight into the page
		 * (the next record overwrites the excess); only the last one goes
		 * through a buffer. */
		uint64_t *rec = w + REC_MAX <= WORDS_PER_PAGE ? out + w : tail;
		rec[0] = keep & (id | ((r >> 4) & 3) << 32);
		rec[1] = keep & (heap + (id + 1) * rec_bytes);
		rec[2] = keep & flags;
		rec[3] = keep & ((r >> 8) & 0xff);
		rec[4] = keep & (heap + ((r >> 16) & 0xfff8));
		rec[5] = keep & (r >> 32);
		rec[6] = keep & (rng_next(&rng) & 0xffffff);
		rec[7] = keep & ((r >> 6) & 1 ? heap + (id - 1) * rec_bytes : 0);
		rec[8] = keep & 1;
		rec[9] = keep & ((r >> 12) & 0xf);
		if (rec == tail)
			memcpy(out + w, tail, (WORDS_PER_PAGE - w) * 8);
	}
}

static void fill_random(uint64_t *out, uint64_t rng)
{
	for (unsigned w = 0; w < WORDS_PER_PAGE; w++)
		out[w] = rng_next(&rng);
}

void content_fill_kind(void *page, enum content_kind kind, uint64_t index,
		       uint32_t version, uint64_t seed)
{
	/* A second mix so the content stream is independent of the kind draw. */
	uint64_t rng = rng_mix64(page_hash(index, version, seed) ^ 0x5851f42d4c957f2dull);
	switch (kind) {
	case CONTENT_TEXT:
		fill_text(page, rng);
		break;
	case CONTENT_BINARY:
		fill_binary(page, rng);
		break;
	case CONTENT_RANDOM:
		fill_random(page, rng);
		break;
	default:
		memset(page, 0, CONTENT_PAGE_SIZE);
		break;
	}
}

void content_fill(void *page, uint64_t index, uint32_t version,
		  const struct content_mix *mix, uint64_t seed)
{
	uint64_t s = page_seed(index, version, mix, seed);
	content_fill_kind(page, content_kind_of(index, version, mix, seed), index, version, s);
}
