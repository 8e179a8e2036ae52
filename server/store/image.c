/* image: the writer and reader of DIR/memory.img (docs/snapshot.md has the
 * layout byte by byte).
 *
 * The writer appends objects after a header-sized gap, keeps the page
 * table, the same-filled words and the object index in memory, and at
 * commit writes them, the trailer and, last, the header; then fsync,
 * rename into place and fsync of the directory.  Until the header is
 * written the partial file has no magic: nothing ever mistakes it for an
 * image.
 *
 * The reader copies words, first-touch list and the chunks' checksums
 * into memory at open, after checking them; the page table and the object
 * index a chunk at a time, on the first look into that chunk, checked
 * against its checksum: an open costs the same whatever the VM's size.  Not
 * mmap: a file changed after open must not change what was checked.  An
 * object's bytes are checked each time they are read.
 */
#include "image.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

/* ---- On disk: little-endian, fixed width ---- */

#define MAGIC "MEMSRVIM"
#define TRAILER_MAGIC "MEMSRVEN"
#define ALIGN 4096u                  /* the data section and the table start on it */
#define HEADER_SIZE ALIGN
#define WRITE_BUF (1u << 20)         /* objects are written in batches of this */
#define CODEC_RAW 0xff               /* an object's codec byte when it is the raw page */
#define CODEC_REMOTE 0xfe            /* ...when it is the name of an object in a Redis Cluster */
#define FLAG_REMOTE 1u               /* header flag: objects may be names (remote_holder holds them) */

/* A table entry: the kind in the top 2 bits, the value (object index, or
 * index into the words section) below.  A zero page is the entry 0. */
#define ENTRY_KIND_SHIFT 62
#define ENTRY_VALUE_MASK ((1ull << ENTRY_KIND_SHIFT) - 1)

struct disk_region {
	uint64_t guest_phys_addr, size;
	uint32_t page_size, reserved;
};

struct disk_header {
	char magic[8];                   /* MAGIC; never moves in any version */
	uint32_t version;                /* IMAGE_VERSION; never moves either */
	uint32_t header_size;            /* HEADER_SIZE */
	uint64_t file_size;
	uint64_t created_unix_ns;
	uint64_t pages;
	uint64_t objects;
	uint64_t data_off, data_bytes;
	uint64_t table_off;              /* pages entries of 8 bytes */
	uint64_t words_off, words;       /* same-filled words, 8 bytes each */
	uint64_t index_off;              /* objects entries of struct disk_object */
	uint64_t first_touch_off, first_touch; /* page numbers, 8 bytes each */
	uint64_t trailer_off;
	uint32_t n_regions, flags;
	char vm_name[IMAGE_NAME_MAX];
	struct disk_region regions[IMAGE_MAX_REGIONS];
	uint64_t table_chunks_off;       /* a struct disk_chunk per IMAGE_CHUNK_PAGES of the table */
	uint64_t index_chunks_off;       /* a checksum per IMAGE_CHUNK_OBJECTS of the index */
	uint64_t pages_held;             /* pages not zero */
	char remote_holder[IMAGE_NAME_MAX]; /* FLAG_REMOTE: the name the cluster's references are under */
	uint8_t reserved[HEADER_SIZE - 1792];
};

/* A chunk of the page table: what a reader checks before it believes it. */
struct disk_chunk {
	uint64_t checksum;               /* XXH3_64bits of its entries */
	uint64_t held;                   /* its pages not zero */
};

struct disk_object {
	uint64_t offset;                 /* in the file */
	uint64_t checksum;               /* XXH3_64bits of its len bytes */
	uint32_t len;
	uint8_t codec;                   /* enum codec, CODEC_RAW or CODEC_REMOTE */
	uint8_t reserved[3];
};

struct disk_trailer {
	char magic[8];                   /* TRAILER_MAGIC */
	uint64_t file_size;
	uint64_t header_sum, table_chunks_sum, words_sum, index_chunks_sum, first_touch_sum;
	uint64_t trailer_sum;            /* of the 56 bytes before it */
};

_Static_assert(sizeof(struct disk_header) == HEADER_SIZE, "the header is one aligned block");
_Static_assert(offsetof(struct disk_header, file_size) == 16 && offsetof(struct disk_header, pages) == 32 &&
	       offsetof(struct disk_header, data_off) == 48 && offsetof(struct disk_header, table_off) == 64 &&
	       offsetof(struct disk_header, words) == 80 && offsetof(struct disk_header, first_touch) == 104 &&
	       offsetof(struct disk_header, n_regions) == 120, "docs/snapshot.md's offsets");
_Static_assert(offsetof(struct disk_header, vm_name) == 128, "docs/snapshot.md's offsets");
_Static_assert(offsetof(struct disk_header, regions) == 192, "docs/snapshot.md's offsets");
_Static_assert(offsetof(struct disk_header, table_chunks_off) == 1704, "docs/snapshot.md's offsets");
_Static_assert(offsetof(struct disk_header, remote_holder) == 1728, "docs/snapshot.md's offsets");
_Static_assert(sizeof(struct disk_chunk) == 16, "docs/snapshot.md's offsets");
_Static_assert(sizeof(struct disk_region) == 24, "docs/snapshot.md's offsets");
_Static_assert(sizeof(struct disk_object) == 24, "docs/snapshot.md's offsets");
_Static_assert(sizeof(struct disk_trailer) == 64, "docs/snapshot.md's offsets");

static void say(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t len, const char *fmt, ...)
{
	if (!why || !len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

static uint64_t align_up(uint64_t v)
{
	return (v + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
}

static uint64_t chunks_of(uint64_t n, uint64_t per)
{
	return (n + per - 1) / per;
}

static uint64_t entry(enum image_page_kind k, uint64_t value)
{
	return htole64((uint64_t)k << ENTRY_KIND_SHIFT | value);
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n, len -= (size_t)n, off += (uint64_t)n;
	}
	return 0;
}

/* 0, -errno, or -ENODATA when the file ends first. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		p += n, len -= (size_t)n, off += (uint64_t)n;
	}
	return 0;
}

/* Checks a layout and computes its pages: 0 or -EINVAL with why. */
static int layout_check(const struct image_info *l, uint64_t *pages, char *why, size_t len)
{
	if (l->n_regions == 0 || l->n_regions > IMAGE_MAX_REGIONS) {
		say(why, len, "%u regions: an image has 1 to %d", l->n_regions, IMAGE_MAX_REGIONS);
		return -EINVAL;
	}
	if (strnlen(l->vm_name, IMAGE_NAME_MAX) == IMAGE_NAME_MAX) {
		say(why, len, "VM name longer than %d bytes", IMAGE_NAME_MAX - 1);
		return -EINVAL;
	}
	if (strnlen(l->remote_holder, IMAGE_NAME_MAX) == IMAGE_NAME_MAX) {
		say(why, len, "remote holder longer than %d bytes", IMAGE_NAME_MAX - 1);
		return -EINVAL;
	}
	uint64_t n = 0;
	for (uint32_t i = 0; i < l->n_regions; i++) {
		const struct image_region *r = &l->regions[i];
		uint32_t ps = r->page_size;
		if (ps < 4096 || ps > (1u << 30) || (ps & (ps - 1)) || !r->size || r->size % ps ||
		    r->size / 4096 > ENTRY_VALUE_MASK - n) {
			say(why, len, "region %u: %" PRIu64 " bytes of %u-byte pages is not a region", i, r->size, ps);
			return -EINVAL;
		}
		n += r->size / 4096;
	}
	*pages = n;
	return 0;
}

/* ---- Writing ---- */

struct image_writer {
	struct image_info info;
	int dirfd, fd;                   /* dirfd holds the flock that keeps other writers out */
	uint64_t *table;                 /* little-endian entries */
	struct disk_object *index;
	uint64_t index_cap;
	uint64_t *words, n_words, words_cap;
	uint64_t *word_slots, slots_cap; /* open addressing: a word's index + 1, 0 empty */
	uint64_t *first_touch, n_first_touch;
	char *buf;                       /* objects not yet written, from buf_off */
	size_t buf_used;
	uint64_t buf_off;
	int err;                         /* the first failure of a void call, reported by commit */
	char err_why[160];
};

static void writer_free(struct image_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->dirfd >= 0)
		close(w->dirfd);        /* releases the flock */
	free(w->table);
	free(w->index);
	free(w->words);
	free(w->word_slots);
	free(w->first_touch);
	free(w->buf);
	free(w);
}

/* Opens dir, keeps other writers out of it and makes sure no image is
 * there: 0 or -errno with why. */
static int writer_claim_dir(struct image_writer *w, const char *dir, char *why, size_t len)
{
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0) {
		int e = errno;
		say(why, len, "%s: %s", dir, strerror(e));
		return -e;
	}
	if (flock(w->dirfd, LOCK_EX | LOCK_NB)) {
		int e = errno == EWOULDBLOCK ? EBUSY : errno;
		say(why, len, "%s: another image is being written into it", dir);
		return -e;
	}
	struct stat st;
	if (fstatat(w->dirfd, IMAGE_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		say(why, len, "%s/%s exists: an image is never overwritten (remove it, or use another directory)", dir,
		    IMAGE_FILE);
		return -EEXIST;
	}
	if (errno != ENOENT) {
		int e = errno;
		say(why, len, "%s/%s: %s", dir, IMAGE_FILE, strerror(e));
		return -e;
	}
	return 0;
}

int image_create(const char *dir, const struct image_info *layout, struct image_writer **wp, char *why, size_t len)
{
	uint64_t pages;
	int ret = layout_check(layout, &pages, why, len);
	if (ret)
		return ret;
	struct image_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->dirfd = w->fd = -1;
	w->info = *layout;
	memset(w->info.vm_name, 0, IMAGE_NAME_MAX);     /* NUL-padded on disk, not what followed the name */
	memcpy(w->info.vm_name, layout->vm_name, strlen(layout->vm_name));
	memset(w->info.remote_holder, 0, IMAGE_NAME_MAX);
	memcpy(w->info.remote_holder, layout->remote_holder, strlen(layout->remote_holder));
	w->info.pages = pages;
	w->info.objects = w->info.data_bytes = 0;
	memset(w->info.regions + w->info.n_regions, 0,
	       sizeof(w->info.regions) - w->info.n_regions * sizeof(w->info.regions[0]));
	if (!w->info.created_unix_ns) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		w->info.created_unix_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
	w->buf_off = HEADER_SIZE;

	ret = writer_claim_dir(w, dir, why, len);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	w->table = calloc(pages, sizeof(*w->table));   /* every page zero until set */
	w->buf = malloc(WRITE_BUF);
	if (!w->table || !w->buf) {
		say(why, len, "no memory for the table of %" PRIu64 " pages", pages);
		goto fail;
	}
	/* A partial file is a writer's that was killed: we hold the lock. */
	if (unlinkat(w->dirfd, IMAGE_PARTIAL_FILE, 0) && errno != ENOENT) {
		ret = -errno;
		say(why, len, "%s/%s: cannot remove the stale partial image: %s", dir, IMAGE_PARTIAL_FILE, strerror(-ret));
		goto fail;
	}
	w->fd = openat(w->dirfd, IMAGE_PARTIAL_FILE, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		ret = -errno;
		say(why, len, "%s/%s: %s", dir, IMAGE_PARTIAL_FILE, strerror(-ret));
		goto fail;
	}
	*wp = w;
	return 0;
fail:
	writer_free(w);
	return ret;
}

const struct image_info *image_writer_info(const struct image_writer *w)
{
	return &w->info;
}

static void writer_fail(struct image_writer *w, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void writer_fail(struct image_writer *w, int err, const char *fmt, ...)
{
	if (w->err)
		return;
	w->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->err_why, sizeof(w->err_why), fmt, ap);
	va_end(ap);
}

static int writer_flush(struct image_writer *w)
{
	int ret = pwrite_all(w->fd, w->buf, w->buf_used, w->buf_off);
	if (ret)
		return ret;
	w->buf_off += w->buf_used;
	w->buf_used = 0;
	return 0;
}

/* Appends len bytes of data with codec byte codec_byte: 0 or -errno. */
static int append_object(struct image_writer *w, uint8_t codec_byte, const void *data, uint32_t len, uint64_t *index)
{
	if (w->err)
		return w->err;
	if (w->info.objects == w->index_cap) {
		uint64_t cap = w->index_cap ? w->index_cap * 2 : 1024;
		struct disk_object *n = realloc(w->index, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		w->index = n;
		w->index_cap = cap;
	}
	if (w->buf_used + len > WRITE_BUF) {
		int ret = writer_flush(w);
		if (ret) {
			writer_fail(w, ret, "writing objects: %s", strerror(-ret));
			return ret;
		}
	}
	memcpy(w->buf + w->buf_used, data, len);
	w->index[w->info.objects] = (struct disk_object){
		.offset = htole64(w->buf_off + w->buf_used),
		.checksum = htole64(XXH3_64bits(data, len)),
		.len = htole32(len),
		.codec = codec_byte,
	};
	w->buf_used += len;
	w->info.data_bytes += len;
	*index = w->info.objects++;
	return 0;
}

int image_add_object(struct image_writer *w, enum codec c, const void *data, uint32_t len, uint64_t *index)
{
	if (!len || len > IMAGE_RAW_LEN || (len < IMAGE_RAW_LEN && (unsigned)c >= CODECS))
		return -EINVAL;
	return append_object(w, len == IMAGE_RAW_LEN ? CODEC_RAW : (uint8_t)c, data, len, index);
}

int image_add_remote(struct image_writer *w, const struct remote_digest *d, uint64_t *index)
{
	if (!w->info.remote_holder[0])
		return -EINVAL;  /* a name no holder keeps alive */
	return append_object(w, CODEC_REMOTE, d->b, REMOTE_DIGEST_BYTES, index);
}

void image_set_object(struct image_writer *w, uint64_t page, uint64_t index)
{
	if (page >= w->info.pages || index >= w->info.objects) {
		writer_fail(w, -EINVAL, "page %" PRIu64 " set to object %" PRIu64 ": the image has %" PRIu64
			    " pages and %" PRIu64 " objects", page, index, w->info.pages, w->info.objects);
		return;
	}
	w->table[page] = entry(IMAGE_PAGE_OBJECT, index);
}

static uint64_t word_slot(uint64_t word, uint64_t cap)
{
	return (word * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
}

static int words_grow(struct image_writer *w)
{
	uint64_t cap = w->slots_cap ? w->slots_cap * 2 : 256;
	uint64_t *slots = calloc(cap, sizeof(*slots));
	uint64_t *words = realloc(w->words, cap / 2 * sizeof(*words));
	if (!slots || !words) {
		free(slots);
		if (words)
			w->words = words;
		return -ENOMEM;
	}
	w->words = words;
	w->words_cap = cap / 2;
	for (uint64_t i = 0; i < w->n_words; i++) {
		uint64_t s = word_slot(w->words[i], cap);
		while (slots[s])
			s = (s + 1) & (cap - 1);
		slots[s] = i + 1;
	}
	free(w->word_slots);
	w->word_slots = slots;
	w->slots_cap = cap;
	return 0;
}

/* The index of word in the words section, added if new: 0 or -ENOMEM. */
static int word_index(struct image_writer *w, uint64_t word, uint64_t *index)
{
	if (w->n_words == w->words_cap && words_grow(w))
		return -ENOMEM;
	uint64_t s = word_slot(word, w->slots_cap);
	for (; w->word_slots[s]; s = (s + 1) & (w->slots_cap - 1))
		if (w->words[w->word_slots[s] - 1] == word) {
			*index = w->word_slots[s] - 1;
			return 0;
		}
	w->word_slots[s] = w->n_words + 1;
	w->words[w->n_words] = word;
	*index = w->n_words++;
	return 0;
}

void image_set_samefill(struct image_writer *w, uint64_t page, uint64_t word)
{
	if (page >= w->info.pages) {
		writer_fail(w, -EINVAL, "page %" PRIu64 " set same-filled: the image has %" PRIu64 " pages", page,
			    w->info.pages);
		return;
	}
	uint64_t i;
	if (!word) {
		w->table[page] = 0;     /* a zero page, whichever way it was found */
		return;
	}
	if (word_index(w, word, &i)) {
		writer_fail(w, -ENOMEM, "no memory for same-filled words");
		return;
	}
	w->table[page] = entry(IMAGE_PAGE_SAMEFILL, i);
}

int image_set_first_touch(struct image_writer *w, const uint64_t *pages, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (pages[i] >= w->info.pages)
			return -EINVAL;
	uint64_t *copy = malloc((n ? n : 1) * sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++)
		copy[i] = htole64(pages[i]);
	free(w->first_touch);
	w->first_touch = copy;
	w->n_first_touch = n;
	return 0;
}

/* Writes one section at *off and moves *off past it; *sum (unless NULL:
 * one checked by chunks) gets its checksum. */
static int write_section(struct image_writer *w, const void *data, uint64_t bytes, uint64_t *off, uint64_t *sum)
{
	if (sum)
		*sum = htole64(XXH3_64bits(data, bytes));
	int ret = bytes ? pwrite_all(w->fd, data, bytes, *off) : 0;
	*off += bytes;
	return ret;
}

/* The table's chunks, checksummed and counted; *held: the pages not zero.
 * NULL: no memory. */
static struct disk_chunk *table_chunks(const struct image_writer *w, uint64_t *held)
{
	uint64_t n = chunks_of(w->info.pages, IMAGE_CHUNK_PAGES);
	struct disk_chunk *c = malloc((n ? n : 1) * sizeof(*c));
	if (!c)
		return NULL;
	*held = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t first = i * IMAGE_CHUNK_PAGES, end = first + IMAGE_CHUNK_PAGES, k = 0;
		if (end > w->info.pages)
			end = w->info.pages;
		for (uint64_t p = first; p < end; p++)
			k += w->table[p] != 0;
		c[i] = (struct disk_chunk){ htole64(XXH3_64bits(w->table + first, (end - first) * 8)), htole64(k) };
		*held += k;
	}
	return c;
}

/* The index's chunks' checksums.  NULL: no memory. */
static uint64_t *index_chunks(const struct image_writer *w)
{
	uint64_t n = chunks_of(w->info.objects, IMAGE_CHUNK_OBJECTS);
	uint64_t *c = malloc((n ? n : 1) * sizeof(*c));
	for (uint64_t i = 0; c && i < n; i++) {
		uint64_t first = i * IMAGE_CHUNK_OBJECTS, end = first + IMAGE_CHUNK_OBJECTS;
		if (end > w->info.objects)
			end = w->info.objects;
		c[i] = htole64(XXH3_64bits(w->index + first, (end - first) * sizeof(struct disk_object)));
	}
	return c;
}

/* The sections that describe the table and the index, chunk by chunk. */
static int write_chunks(struct image_writer *w, struct disk_header *h, struct disk_trailer *t, uint64_t *off)
{
	uint64_t held = 0;
	struct disk_chunk *tc = table_chunks(w, &held);
	uint64_t *ic = index_chunks(w);
	int ret = -ENOMEM;
	if (tc && ic) {
		h->pages_held = htole64(held);
		h->table_chunks_off = htole64(*off);
		ret = write_section(w, tc, chunks_of(w->info.pages, IMAGE_CHUNK_PAGES) * sizeof(*tc), off,
				    &t->table_chunks_sum);
	}
	if (!ret) {
		h->index_chunks_off = htole64(*off);
		ret = write_section(w, ic, chunks_of(w->info.objects, IMAGE_CHUNK_OBJECTS) * 8, off,
				    &t->index_chunks_sum);
	}
	free(tc);
	free(ic);
	return ret;
}

/* Everything after the objects, then the header: 0 or -errno. */
static int writer_write_tail(struct image_writer *w)
{
	int ret = writer_flush(w);
	if (ret)
		return ret;
	const struct image_info *in = &w->info;
	struct disk_header h = { .version = htole32(IMAGE_VERSION), .header_size = htole32(HEADER_SIZE) };
	struct disk_trailer t = { 0 };
	memcpy(h.magic, MAGIC, 8);
	memcpy(t.magic, TRAILER_MAGIC, 8);
	uint64_t off = align_up(HEADER_SIZE + in->data_bytes);
	for (uint64_t i = 0; i < w->n_words; i++)
		w->words[i] = htole64(w->words[i]);

	h.table_off = htole64(off);
	if ((ret = write_section(w, w->table, in->pages * 8, &off, NULL)))
		return ret;
	h.words_off = htole64(off);
	if ((ret = write_section(w, w->words, w->n_words * 8, &off, &t.words_sum)))
		return ret;
	h.index_off = htole64(off);
	if ((ret = write_section(w, w->index, in->objects * sizeof(struct disk_object), &off, NULL)))
		return ret;
	h.first_touch_off = htole64(off);
	if ((ret = write_section(w, w->first_touch, w->n_first_touch * 8, &off, &t.first_touch_sum)))
		return ret;
	if ((ret = write_chunks(w, &h, &t, &off)))
		return ret;
	h.trailer_off = htole64(off);
	h.file_size = t.file_size = htole64(off + sizeof(t));

	h.created_unix_ns = htole64(in->created_unix_ns);
	h.pages = htole64(in->pages);
	h.objects = htole64(in->objects);
	h.data_off = htole64(HEADER_SIZE);
	h.data_bytes = htole64(in->data_bytes);
	h.words = htole64(w->n_words);
	h.first_touch = htole64(w->n_first_touch);
	h.n_regions = htole32(in->n_regions);
	memcpy(h.vm_name, in->vm_name, IMAGE_NAME_MAX);
	memcpy(h.remote_holder, in->remote_holder, IMAGE_NAME_MAX);
	h.flags = htole32(in->remote_holder[0] ? FLAG_REMOTE : 0);
	for (uint32_t i = 0; i < in->n_regions; i++)
		h.regions[i] = (struct disk_region){ .guest_phys_addr = htole64(in->regions[i].guest_phys_addr),
						      .size = htole64(in->regions[i].size),
						      .page_size = htole32(in->regions[i].page_size) };
	t.header_sum = htole64(XXH3_64bits(&h, sizeof(h)));
	t.trailer_sum = htole64(XXH3_64bits(&t, offsetof(struct disk_trailer, trailer_sum)));
	if ((ret = pwrite_all(w->fd, &t, sizeof(t), off)))
		return ret;
	return pwrite_all(w->fd, &h, sizeof(h), 0);
}

/* Makes the partial file durable and names it memory.img, never replacing
 * one: 0 or -errno. */
static int writer_publish(struct image_writer *w)
{
	if (fsync(w->fd))
		return -errno;
	if (renameat2(w->dirfd, IMAGE_PARTIAL_FILE, w->dirfd, IMAGE_FILE, RENAME_NOREPLACE)) {
		if (errno != EINVAL)
			return -errno;
		/* A filesystem without RENAME_NOREPLACE: link refuses an existing name too. */
		if (linkat(w->dirfd, IMAGE_PARTIAL_FILE, w->dirfd, IMAGE_FILE, 0))
			return -errno;
		unlinkat(w->dirfd, IMAGE_PARTIAL_FILE, 0);
	}
	return fsync(w->dirfd) ? -errno : 0;
}

int image_commit(struct image_writer *w, char *why, size_t len)
{
	int ret = w->err;
	if (ret)
		say(why, len, "%s", w->err_why);
	else if ((ret = writer_write_tail(w)))
		say(why, len, "writing %s: %s", IMAGE_PARTIAL_FILE, strerror(-ret));
	else if ((ret = writer_publish(w)) == -EEXIST)
		say(why, len, "%s appeared while this image was written: an image is never overwritten", IMAGE_FILE);
	else if (ret)
		say(why, len, "making %s durable as %s: %s", IMAGE_PARTIAL_FILE, IMAGE_FILE, strerror(-ret));
	if (ret)
		unlinkat(w->dirfd, IMAGE_PARTIAL_FILE, 0);
	writer_free(w);
	return ret;
}

void image_abort(struct image_writer *w)
{
	if (!w)
		return;
	unlinkat(w->dirfd, IMAGE_PARTIAL_FILE, 0);
	writer_free(w);
}

int image_remove(const char *dir, char *why, size_t len)
{
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		int e = errno;
		say(why, len, "%s: %s", dir, strerror(e));
		return -e;
	}
	int ret = 0, fd = openat(dirfd, IMAGE_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = -errno;
		say(why, len, "%s/%s: %s", dir, IMAGE_FILE, strerror(errno));
	} else if (flock(fd, LOCK_EX | LOCK_NB)) {
		/* held shared by every memsrv that serves a VM's pages from it;
		 * held ours, no memsrv can take it up until it is gone */
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		say(why, len, "%s/%s is in use: a VM resumed from it still reads pages from it (detach the VM, or "
		    "wait until memsrv-ctl info shows image_pages 0)", dir, IMAGE_FILE);
	} else if (unlinkat(dirfd, IMAGE_FILE, 0) || fsync(dirfd)) {
		ret = -errno;
		say(why, len, "removing %s/%s: %s", dir, IMAGE_FILE, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	close(dirfd);
	return ret;
}

/* ---- Reading ---- */

#define SECTION_HUGE_BYTES (2u << 20)

/* Memory for a section: anonymous pages, huge where it is large (an 8 GiB
 * VM's table and index are 40 MiB: faulting them in 4 KiB at a time was
 * a third of a resume's wait). */
static void *section_alloc(uint64_t bytes)
{
	void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (bytes >= SECTION_HUGE_BYTES)
		madvise(p, bytes, MADV_HUGEPAGE);  /* a hint: without it, 4 KiB pages */
	return p;
}

static void section_free(void *p, uint64_t bytes)
{
	if (p)
		munmap(p, bytes ? bytes : 1);
}


struct image {
	int fd;
	struct image_info info;
	uint64_t data_off, data_end, pages_held;
	uint64_t table_off, index_off;
	uint64_t *words, n_words, *first_touch, n_first_touch; /* little-endian, as on disk */
	struct disk_chunk *table_chunks;  /* checked at open */
	uint64_t *index_chunks, n_table_chunks, n_index_chunks;
	uint64_t *table;                  /* little-endian; a chunk is there once its bit is set */
	struct disk_object *index;        /* likewise */
	uint64_t *table_loaded, *index_loaded;  /* a bit per chunk */
	uint8_t scratch[CODEC_PAGE];      /* an object's bytes as read */
};

void image_close(struct image *img)
{
	if (!img)
		return;
	if (img->fd >= 0)
		close(img->fd);
	section_free(img->table, img->info.pages * 8);
	section_free(img->index, img->info.objects * sizeof(struct disk_object));
	section_free(img->words, img->n_words * 8);
	section_free(img->first_touch, img->n_first_touch * 8);
	section_free(img->table_chunks, img->n_table_chunks * sizeof(struct disk_chunk));
	section_free(img->index_chunks, img->n_index_chunks * 8);
	free(img->table_loaded);
	free(img->index_loaded);
	free(img);
}

#define CORRUPT(...) (say(why, len, __VA_ARGS__), -EBADMSG)

/* Reads the header and trailer and checks them, and that the file is as
 * long as the header says: 0 or -errno with why. */
static int read_ends(struct image *img, uint64_t size, struct disk_header *h, struct disk_trailer *t, char *why,
		     size_t len)
{
	if (size < HEADER_SIZE + sizeof(*t))
		return CORRUPT("truncated: %" PRIu64 " bytes, less than a header and a trailer", size);
	int ret = pread_all(img->fd, h, sizeof(*h), 0);
	if (ret)
		return say(why, len, "reading the header: %s", strerror(-ret)), ret == -ENODATA ? -EBADMSG : ret;
	if (memcmp(h->magic, MAGIC, 8))
		return CORRUPT("not a memsrv image (no magic)");
	uint32_t version = le32toh(h->version);
	if (version != IMAGE_VERSION && version != IMAGE_VERSION_NO_NAMES) {
		say(why, len, "version %u: this memsrv reads versions %d and %d only", version, IMAGE_VERSION_NO_NAMES,
		    IMAGE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (version == IMAGE_VERSION_NO_NAMES && h->flags)
		return CORRUPT("a version %u image with flags 0x%x", version, le32toh(h->flags));
	uint64_t want = le64toh(h->file_size);
	if (want != size)
		return CORRUPT("%s: %" PRIu64 " bytes, its header says %" PRIu64, size < want ? "truncated" : "too long",
			       size, want);
	ret = pread_all(img->fd, t, sizeof(*t), size - sizeof(*t));
	if (ret)
		return say(why, len, "reading the trailer: %s", strerror(-ret)), ret == -ENODATA ? -EBADMSG : ret;
	if (memcmp(t->magic, TRAILER_MAGIC, 8) ||
	    le64toh(t->trailer_sum) != XXH3_64bits(t, offsetof(struct disk_trailer, trailer_sum)) ||
	    le64toh(t->file_size) != size)
		return CORRUPT("the trailer is corrupt");
	if (le64toh(t->header_sum) != XXH3_64bits(h, sizeof(*h)))
		return CORRUPT("the header's checksum does not match");
	return 0;
}

/* The header's layout and sections, in the order and places a writer puts
 * them: 0 or -EBADMSG with why. */
static int check_header(struct image *img, const struct disk_header *h, char *why, size_t len)
{
	struct image_info *in = &img->info;
	in->n_regions = le32toh(h->n_regions);
	if (in->n_regions > IMAGE_MAX_REGIONS)
		return CORRUPT("%u regions", in->n_regions);
	memcpy(in->vm_name, h->vm_name, IMAGE_NAME_MAX);
	memcpy(in->remote_holder, h->remote_holder, IMAGE_NAME_MAX);
	uint32_t flags = le32toh(h->flags);
	if (flags & ~FLAG_REMOTE || !(flags & FLAG_REMOTE) != !in->remote_holder[0])
		return CORRUPT("flags 0x%x and remote holder '%.*s' do not match", flags, IMAGE_NAME_MAX - 1,
			       in->remote_holder);
	for (uint32_t i = 0; i < in->n_regions; i++)
		in->regions[i] = (struct image_region){ le64toh(h->regions[i].guest_phys_addr),
							le64toh(h->regions[i].size), le32toh(h->regions[i].page_size) };
	uint64_t pages;
	char lwhy[160];
	if (layout_check(in, &pages, lwhy, sizeof(lwhy)))
		return CORRUPT("its layout: %s", lwhy);
	in->pages = le64toh(h->pages);
	in->objects = le64toh(h->objects);
	in->data_bytes = le64toh(h->data_bytes);
	in->created_unix_ns = le64toh(h->created_unix_ns);
	img->n_words = le64toh(h->words);
	img->n_first_touch = le64toh(h->first_touch);
	img->data_off = le64toh(h->data_off);
	img->pages_held = le64toh(h->pages_held);
	if (pages != in->pages || le32toh(h->header_size) != HEADER_SIZE || img->data_off != HEADER_SIZE ||
	    img->pages_held > pages)
		return CORRUPT("the header does not describe its own layout");
	/* Sizes bounded by the file's (checked against fstat) before they are multiplied. */
	uint64_t size = le64toh(h->file_size);
	if (in->data_bytes > size || in->pages > size / 8 || img->n_words > size / 8 || img->n_first_touch > size / 8 ||
	    in->objects > size / sizeof(struct disk_object))
		return CORRUPT("the header's sizes exceed the file");
	img->n_table_chunks = chunks_of(in->pages, IMAGE_CHUNK_PAGES);
	img->n_index_chunks = chunks_of(in->objects, IMAGE_CHUNK_OBJECTS);
	img->data_end = img->data_off + in->data_bytes;
	/* each section right after the one before it */
	img->table_off = align_up(img->data_end);
	uint64_t words_off = img->table_off + in->pages * 8;
	img->index_off = words_off + img->n_words * 8;
	uint64_t first_touch_off = img->index_off + in->objects * sizeof(struct disk_object);
	uint64_t table_chunks_off = first_touch_off + img->n_first_touch * 8;
	uint64_t index_chunks_off = table_chunks_off + img->n_table_chunks * sizeof(struct disk_chunk);
	uint64_t trailer_off = index_chunks_off + img->n_index_chunks * 8;
	if (le64toh(h->table_off) != img->table_off || le64toh(h->words_off) != words_off ||
	    le64toh(h->index_off) != img->index_off || le64toh(h->first_touch_off) != first_touch_off ||
	    le64toh(h->table_chunks_off) != table_chunks_off || le64toh(h->index_chunks_off) != index_chunks_off ||
	    le64toh(h->trailer_off) != trailer_off || trailer_off + sizeof(struct disk_trailer) != size)
		return CORRUPT("the sections are not where the header says");
	return 0;
}

/* Reads a section into a new buffer and checks its checksum: the buffer,
 * or NULL and *ret -errno with why. */
static void *read_section(struct image *img, const char *name, uint64_t off, uint64_t bytes, uint64_t sum, int *ret,
			  char *why, size_t len)
{
	void *p = section_alloc(bytes);
	if (!p) {
		say(why, len, "no memory for the %s (%" PRIu64 " bytes)", name, bytes);
		*ret = -ENOMEM;
		return NULL;
	}
	int r = pread_all(img->fd, p, bytes, off);
	if (r) {
		say(why, len, "reading the %s: %s", name, strerror(-r));
		*ret = r == -ENODATA ? -EBADMSG : r;
	} else if (XXH3_64bits(p, bytes) != le64toh(sum)) {
		*ret = CORRUPT("the %s's checksum does not match", name);
	} else {
		return p;
	}
	section_free(p, bytes);
	return NULL;
}

/* What the checksums cannot: that the first-touch list and the chunks'
 * counts stay inside the image. */
static int check_references(struct image *img, char *why, size_t len)
{
	for (uint64_t i = 0; i < img->n_first_touch; i++)
		if (le64toh(img->first_touch[i]) >= img->info.pages)
			return CORRUPT("first-touch page %" PRIu64 " is not in the image", le64toh(img->first_touch[i]));
	uint64_t held = 0;
	for (uint64_t c = 0; c < img->n_table_chunks; c++) {
		uint64_t k = le64toh(img->table_chunks[c].held);
		if (k > IMAGE_CHUNK_PAGES)
			return CORRUPT("page table chunk %" PRIu64 " holds %" PRIu64 " pages", c, k);
		held += k;
	}
	if (held != img->pages_held)
		return CORRUPT("the page table's chunks hold %" PRIu64 " pages, the header says %" PRIu64, held,
			       img->pages_held);
	return 0;
}

static int image_load(struct image *img, char *why, size_t len)
{
	struct stat st;
	if (fstat(img->fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return CORRUPT("not a regular file");
	struct disk_header h;
	struct disk_trailer t;
	int ret = read_ends(img, (uint64_t)st.st_size, &h, &t, why, len);
	if (!ret)
		ret = check_header(img, &h, why, len);
	if (!ret)
		img->words = read_section(img, "same-filled words", le64toh(h.words_off), img->n_words * 8,
					  t.words_sum, &ret, why, len);
	if (!ret)
		img->first_touch = read_section(img, "first-touch list", le64toh(h.first_touch_off),
						img->n_first_touch * 8, t.first_touch_sum, &ret, why, len);
	if (!ret)
		img->table_chunks = read_section(img, "page table's chunk list", le64toh(h.table_chunks_off),
						 img->n_table_chunks * sizeof(struct disk_chunk), t.table_chunks_sum,
						 &ret, why, len);
	if (!ret)
		img->index_chunks = read_section(img, "object index's chunk list", le64toh(h.index_chunks_off),
						 img->n_index_chunks * 8, t.index_chunks_sum, &ret, why, len);
	if (ret)
		return ret;
	/* room for table and index, filled a chunk at a time: untouched, it costs nothing */
	img->table = section_alloc(img->info.pages * 8);
	img->index = section_alloc(img->info.objects * sizeof(struct disk_object));
	img->table_loaded = calloc(img->n_table_chunks / 64 + 1, 8);
	img->index_loaded = calloc(img->n_index_chunks / 64 + 1, 8);
	if (!img->table || !img->index || !img->table_loaded || !img->index_loaded)
		return say(why, len, "no memory for the page table and object index"), -ENOMEM;
	return check_references(img, why, len);
}

static bool bit(const uint64_t *bits, uint64_t i)
{
	return bits[i / 64] >> (i % 64) & 1;
}

/* Reads chunk c of a section (n entries of size bytes in all, per to a
 * chunk) into its place in mem, checked against sum: 0, -EBADMSG (not
 * what was written, or the file shrank), -errno. */
static int load_chunk(struct image *img, void *mem, uint64_t section_off, uint64_t c, uint64_t n, uint64_t per,
		      size_t size, uint64_t sum)
{
	uint64_t first = c * per, count = n - first < per ? n - first : per;
	char *at = (char *)mem + first * size;
	int ret = pread_all(img->fd, at, count * size, section_off + first * size);
	if (ret)
		return ret == -ENODATA ? -EBADMSG : ret;
	return XXH3_64bits(at, count * size) == le64toh(sum) ? 0 : -EBADMSG;
}

/* Loads the table's chunk c if it is not yet, checked: its checksum, its
 * count, and every entry naming what exists.  0 or -errno (-EBADMSG). */
static int table_chunk(struct image *img, uint64_t c)
{
	if (bit(img->table_loaded, c))
		return 0;
	const struct disk_chunk *dc = &img->table_chunks[c];
	int ret = load_chunk(img, img->table, img->table_off, c, img->info.pages, IMAGE_CHUNK_PAGES, 8, dc->checksum);
	if (ret)
		return ret;
	uint64_t first = c * IMAGE_CHUNK_PAGES, end = first + IMAGE_CHUNK_PAGES, held = 0;
	if (end > img->info.pages)
		end = img->info.pages;
	for (uint64_t p = first; p < end; p++) {
		uint64_t e = le64toh(img->table[p]), v = e & ENTRY_VALUE_MASK;
		switch (e >> ENTRY_KIND_SHIFT) {
		case IMAGE_PAGE_ZERO:
			if (v)
				return -EBADMSG;
			continue;
		case IMAGE_PAGE_SAMEFILL:
			if (v >= img->n_words)
				return -EBADMSG;
			break;
		case IMAGE_PAGE_OBJECT:
			if (v >= img->info.objects)
				return -EBADMSG;
			break;
		default:
			return -EBADMSG;
		}
		held++;
	}
	if (held != le64toh(dc->held))
		return -EBADMSG;
	img->table_loaded[c / 64] |= 1ull << (c % 64);
	return 0;
}

/* Loads the index's chunk c if it is not yet, checked: its checksum and
 * every object inside the data section.  0 or -errno (-EBADMSG). */
static int index_chunk(struct image *img, uint64_t c)
{
	if (bit(img->index_loaded, c))
		return 0;
	int ret = load_chunk(img, img->index, img->index_off, c, img->info.objects, IMAGE_CHUNK_OBJECTS,
			     sizeof(struct disk_object), img->index_chunks[c]);
	if (ret)
		return ret;
	uint64_t first = c * IMAGE_CHUNK_OBJECTS, end = first + IMAGE_CHUNK_OBJECTS;
	if (end > img->info.objects)
		end = img->info.objects;
	for (uint64_t i = first; i < end; i++) {
		const struct disk_object *o = &img->index[i];
		uint64_t off = le64toh(o->offset);
		uint32_t l = le32toh(o->len);
		bool raw = o->codec == CODEC_RAW, named = o->codec == CODEC_REMOTE;
		bool shape = named ? l == REMOTE_DIGEST_BYTES && img->info.remote_holder[0]
				   : l && l <= IMAGE_RAW_LEN && raw == (l == IMAGE_RAW_LEN) && (raw || o->codec < CODECS);
		if (!shape || off < img->data_off || off > img->data_end || l > img->data_end - off)
			return -EBADMSG;
	}
	img->index_loaded[c / 64] |= 1ull << (c % 64);
	return 0;
}

/* Says why there is no image: none at all, or only a writer's partial file. */
static int open_failed(const char *dir, int err, char *why, size_t len)
{
	char partial[4096];
	snprintf(partial, sizeof(partial), "%s/%s", dir, IMAGE_PARTIAL_FILE);
	if (err == ENOENT && access(partial, F_OK) == 0)
		say(why, len, "%s/%s does not exist, only %s: a snapshot that did not complete (or is being written)",
		    dir, IMAGE_FILE, partial);
	else
		say(why, len, "%s/%s: %s", dir, IMAGE_FILE, strerror(err));
	return -err;
}

int image_open(const char *dir, struct image **imgp, char *why, size_t len)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, IMAGE_FILE) >= sizeof(path))
		return say(why, len, "%s: path too long", dir), -ENAMETOOLONG;
	struct image *img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	img->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (img->fd < 0) {
		int e = errno;
		image_close(img);
		return open_failed(dir, e, why, len);
	}
	char inner[256] = "";
	int ret = image_load(img, inner, sizeof(inner));
	if (ret) {
		say(why, len, "%s: %s", path, inner[0] ? inner : strerror(-ret));
		image_close(img);
		return ret;
	}
	*imgp = img;
	return 0;
}

const struct image_info *image_get_info(const struct image *img)
{
	return &img->info;
}

int image_fd(const struct image *img)
{
	return img->fd;
}

const uint64_t *image_first_touch(const struct image *img, uint64_t *n)
{
	*n = img->n_first_touch;
	return img->first_touch;
}

uint64_t image_pages_held(const struct image *img)
{
	return img->pages_held;
}

uint64_t image_chunk_held(const struct image *img, uint64_t chunk)
{
	return chunk < img->n_table_chunks ? le64toh(img->table_chunks[chunk].held) : 0;
}

int image_page(struct image *img, uint64_t page, uint64_t *value)
{
	if (page >= img->info.pages)
		return -EINVAL;
	int ret = table_chunk(img, page / IMAGE_CHUNK_PAGES);
	if (ret)
		return ret;
	uint64_t e = le64toh(img->table[page]);
	enum image_page_kind k = (enum image_page_kind)(e >> ENTRY_KIND_SHIFT);
	uint64_t v = e & ENTRY_VALUE_MASK;
	/* table_chunk() made sure a SAMEFILL's word index is below n_words. */
	*value = k == IMAGE_PAGE_SAMEFILL ? le64toh(img->words[v]) : v;
	return (int)k;
}

/* Object index's entry, its index chunk checked: 0 or -errno. */
static int object_entry(struct image *img, uint64_t index, const struct disk_object **o)
{
	if (index >= img->info.objects)
		return -EINVAL;
	int ret = index_chunk(img, index / IMAGE_CHUNK_OBJECTS);
	*o = ret ? NULL : &img->index[index];
	return ret;
}

int image_object_loc(struct image *img, uint64_t index, uint64_t *offset, uint32_t *len, enum codec *c)
{
	const struct disk_object *o;
	int ret = object_entry(img, index, &o);
	if (ret)
		return ret;
	if (o->codec == CODEC_REMOTE)
		return -EREMOTE;  /* a name, not a page's bytes: image_object_remote() */
	*offset = le64toh(o->offset);
	*len = le32toh(o->len);
	*c = o->codec == CODEC_RAW ? CODEC_LZ4 : (enum codec)o->codec;
	return 0;
}

int image_object_remote(struct image *img, uint64_t index, struct remote_digest *d)
{
	const struct disk_object *o;
	int ret = object_entry(img, index, &o);
	if (ret)
		return ret;
	if (o->codec != CODEC_REMOTE)
		return 0;
	ret = pread_all(img->fd, d->b, REMOTE_DIGEST_BYTES, le64toh(o->offset));
	if (ret)
		return ret == -ENODATA ? -EBADMSG : ret;
	return XXH3_64bits(d->b, REMOTE_DIGEST_BYTES) == le64toh(o->checksum) ? 1 : -EBADMSG;
}

int image_object_check(struct image *img, uint64_t index, const void *data, uint32_t len)
{
	uint64_t off;
	uint32_t want;
	enum codec c;
	int ret = image_object_loc(img, index, &off, &want, &c);
	if (ret)
		return ret == -EINVAL ? -EBADMSG : ret;  /* -EREMOTE stays: a name is never page content */
	return len == want && XXH3_64bits(data, len) == le64toh(img->index[index].checksum) ? 0 : -EBADMSG;
}

/* Object index's len bytes, checked already, into page. */
static int decompress(struct image *img, struct codec_ctx *ctx, uint64_t index, const void *data, uint32_t len,
		      void *page)
{
	if (len == IMAGE_RAW_LEN) {
		memcpy(page, data, CODEC_PAGE);
		return 0;
	}
	if (!ctx)
		return -EINVAL;
	return codec_decompress(ctx, (enum codec)img->index[index].codec, data, len, page) ? -EILSEQ : 0;
}

int image_decode(struct image *img, struct codec_ctx *ctx, uint64_t index, const void *data, uint32_t len,
		 void *page)
{
	int ret = image_object_check(img, index, data, len);
	return ret ? ret : decompress(img, ctx, index, data, len, page);
}

int image_read_object(struct image *img, uint64_t index, void *buf, uint32_t *len, enum codec *c)
{
	uint64_t off;
	int ret = image_object_loc(img, index, &off, len, c);
	if (ret)
		return ret;
	ret = pread_all(img->fd, buf, *len, off);
	if (ret)
		return ret == -ENODATA ? -EBADMSG : ret;   /* the file shrank since it was opened */
	return image_object_check(img, index, buf, *len);
}

int image_read_page(struct image *img, struct codec_ctx *ctx, uint64_t page, void *buf)
{
	if (page >= img->info.pages)
		return -EINVAL;
	uint64_t value;
	int kind = image_page(img, page, &value);
	switch (kind) {
	case IMAGE_PAGE_ZERO:
		memset(buf, 0, CODEC_PAGE);
		return 0;
	case IMAGE_PAGE_SAMEFILL:
		for (size_t i = 0; i < CODEC_PAGE; i += 8)
			memcpy((char *)buf + i, &value, 8);
		return 0;
	case IMAGE_PAGE_OBJECT:
		break;
	default:
		return kind;  /* its table chunk fails */
	}
	uint32_t len;
	enum codec c;
	int ret = image_read_object(img, value, img->scratch, &len, &c);
	return ret ? ret : decompress(img, ctx, value, img->scratch, len, buf);
}
