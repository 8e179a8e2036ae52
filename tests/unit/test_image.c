/* Description: a memory image round-trips zero, same-filled, raw and
 * LZ4/zstd pages over two regions (content shared by several pages written
 * once); a truncated file (inside header, data, table or trailer), a
 * flipped bit in header, table, words, index or trailer, and another
 * version are refused at open, a flipped bit in an object's bytes at its
 * read; a file forged to pass every checksum is still refused when a page,
 * object, section or region points outside what exists; a partial file
 * alone is ENOENT naming it, an existing image is never overwritten; the
 * data section starts 4 KiB aligned; an 8 GiB VM of zero pages opens fast
 * from a file the size of its table.  memsrv-image check says so too, in
 * its output and exit status.  An image of names (snapshot --remote)
 * round-trips them, never hands one over as a page or an object's bytes,
 * refuses a flipped bit of one, and a name without a holder. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "page_fill.h"

static char dir[256];
static struct codec_ctx *ctx;

static void rm_dir(const char *d)
{
	DIR *dp = opendir(d);
	if (!dp)
		return;
	struct dirent *de;
	char p[512];
	while ((de = readdir(dp)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", d, de->d_name);
			unlink(p);
		}
	closedir(dp);
	rmdir(d);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/image-test-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	ctx = codec_ctx_create();
	cr_assert_not_null(ctx);
}

static void teardown(void)
{
	codec_ctx_destroy(ctx);
	rm_dir(dir);
}

TestSuite(image, .init = setup, .fini = teardown);

static const char *path_in(const char *name)
{
	static char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

static bool exists(const char *name)
{
	return access(path_in(name), F_OK) == 0;
}

/* Two regions: 16 pages at 0, 8 pages at 4 GiB (pages 16..23). */
static struct image_info layout(void)
{
	struct image_info l = { .vm_name = "vm-image", .n_regions = 2 };
	l.regions[0] = (struct image_region){ 0, 16 * 4096, 4096 };
	l.regions[1] = (struct image_region){ 4ull << 30, 8 * 4096, 4096 };
	return l;
}

#define WORD_A 0xdeadbeefcafef00dull
#define WORD_B 0x0101010101010101ull
#define PAGES 24

/* What each page of the test image holds. */
static uint8_t expect[PAGES][CODEC_PAGE];

static uint64_t add_compressed(struct image_writer *w, enum codec c, const uint8_t *page)
{
	const void *out;
	uint32_t n = codec_compress(ctx, c, page, CODEC_PAGE, &out);
	cr_assert(n > 0 && n < CODEC_PAGE, "test page must compress");
	uint64_t i;
	cr_assert_eq(image_add_object(w, c, out, n, &i), 0);
	return i;
}

/* The test image: page 0 zero (never set), 1-2 same-filled A (one word in
 * the words section), 3 same-filled 0 (a zero page), 4 raw, 5, 6 and 20 one
 * LZ4 object, 7 zstd, 17 same-filled B; the rest zero. */
static void make_image(void)
{
	struct image_info l = layout();
	struct image_writer *w;
	char why[256] = "";
	int ret = image_create(dir, &l, &w, why, sizeof(why));
	cr_assert_eq(ret, 0, "image_create: %d %s", ret, why);
	cr_assert_eq(image_writer_info(w)->pages, PAGES);
	memset(expect, 0, sizeof(expect));

	page_fill_word(expect[1], WORD_A);
	page_fill_word(expect[2], WORD_A);
	page_fill_word(expect[17], WORD_B);
	image_set_samefill(w, 1, WORD_A);
	image_set_samefill(w, 2, WORD_A);
	image_set_samefill(w, 3, 0);
	image_set_samefill(w, 17, WORD_B);

	uint64_t raw, lz4, zstd;
	page_fill_random(expect[4], 42);
	cr_assert_eq(image_add_object(w, CODEC_ZSTD, expect[4], IMAGE_RAW_LEN, &raw), 0);
	image_set_object(w, 4, raw);

	page_fill_text(expect[5], 7);
	memcpy(expect[6], expect[5], CODEC_PAGE);
	memcpy(expect[20], expect[5], CODEC_PAGE);
	lz4 = add_compressed(w, CODEC_LZ4, expect[5]);
	image_set_object(w, 5, lz4);
	image_set_object(w, 6, lz4);
	image_set_object(w, 20, lz4);

	page_fill_text(expect[7], 99);
	zstd = add_compressed(w, CODEC_ZSTD, expect[7]);
	image_set_object(w, 7, zstd);
	cr_assert_eq(image_writer_info(w)->objects, 3);

	ret = image_commit(w, why, sizeof(why));
	cr_assert_eq(ret, 0, "image_commit: %d %s", ret, why);
}

static struct image *open_ok(void)
{
	struct image *img;
	char why[256] = "";
	int ret = image_open(dir, &img, why, sizeof(why));
	cr_assert_eq(ret, 0, "image_open: %d %s", ret, why);
	return img;
}

static int open_fails(char *why, size_t len)
{
	struct image *img = NULL;
	int ret = image_open(dir, &img, why, len);
	cr_assert_neq(ret, 0, "a damaged image was opened");
	cr_assert_null(img);
	cr_assert(why[0], "no why for %d", ret);
	return ret;
}

/* A header field, at its offset in docs/snapshot.md. */
static uint64_t header_u64(unsigned off)
{
	int fd = open(path_in(IMAGE_FILE), O_RDONLY);
	cr_assert(fd >= 0);
	uint8_t b[8];
	cr_assert_eq(pread(fd, b, 8, off), 8);
	close(fd);
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

#define H_FILE_SIZE 16
#define H_DATA_OFF 48
#define H_DATA_BYTES 56
#define H_TABLE_OFF 64
#define H_WORDS_OFF 72
#define H_WORDS 80
#define H_INDEX_OFF 88
#define H_FIRST_TOUCH_OFF 96
#define H_TRAILER_OFF 112
#define H_TABLE_CHUNKS_OFF 1704
#define H_INDEX_CHUNKS_OFF 1712

static void flip_bit(uint64_t off, int bit)
{
	int fd = open(path_in(IMAGE_FILE), O_RDWR);
	cr_assert(fd >= 0);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	b ^= (uint8_t)(1u << bit);
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static void truncate_to(uint64_t size)
{
	cr_assert_eq(truncate(path_in(IMAGE_FILE), (off_t)size), 0);
}

Test(image, round_trip)
{
	make_image();
	cr_assert(exists(IMAGE_FILE));
	cr_assert_not(exists(IMAGE_PARTIAL_FILE), "the partial file is renamed, not left");
	struct image *img = open_ok();
	const struct image_info *in = image_get_info(img);
	cr_assert_str_eq(in->vm_name, "vm-image");
	cr_assert_eq(in->n_regions, 2);
	cr_assert_eq(in->regions[1].guest_phys_addr, 4ull << 30);
	cr_assert_eq(in->regions[1].size, 8 * 4096);
	cr_assert_eq(in->regions[1].page_size, 4096);
	cr_assert_eq(in->pages, PAGES);
	cr_assert_eq(in->objects, 3, "content shared by 3 pages is one object");
	cr_assert(in->data_bytes > CODEC_PAGE && in->data_bytes < 2 * CODEC_PAGE, "raw page + two compressed: %lu",
		  (unsigned long)in->data_bytes);
	cr_assert(in->created_unix_ns > 0);

	uint64_t v;
	cr_assert_eq(image_page(img, 0, &v), IMAGE_PAGE_ZERO);
	cr_assert_eq(image_page(img, 3, &v), IMAGE_PAGE_ZERO, "same-filled 0 is a zero page");
	cr_assert_eq(image_page(img, 2, &v), IMAGE_PAGE_SAMEFILL);
	cr_assert_eq(v, WORD_A);
	cr_assert_eq(image_page(img, 17, &v), IMAGE_PAGE_SAMEFILL);
	cr_assert_eq(v, WORD_B);
	uint64_t o5, o20;
	cr_assert_eq(image_page(img, 5, &o5), IMAGE_PAGE_OBJECT);
	cr_assert_eq(image_page(img, 20, &o20), IMAGE_PAGE_OBJECT);
	cr_assert_eq(o5, o20);

	uint64_t off;
	uint32_t len;
	enum codec c;
	cr_assert_eq(image_page(img, 4, &v), IMAGE_PAGE_OBJECT);
	image_object_loc(img, v, &off, &len, &c);
	cr_assert_eq(len, IMAGE_RAW_LEN);
	cr_assert_eq(image_page(img, 7, &v), IMAGE_PAGE_OBJECT);
	image_object_loc(img, v, &off, &len, &c);
	cr_assert_eq(c, CODEC_ZSTD);
	cr_assert(len < CODEC_PAGE);
	/* A reader of its own (io_uring) reads the bytes and checks them. */
	uint8_t raw[CODEC_PAGE];
	cr_assert_eq(pread(image_fd(img), raw, len, (off_t)off), (ssize_t)len);
	cr_assert_eq(image_object_check(img, v, raw, len), 0);
	raw[0] ^= 1;
	cr_assert_eq(image_object_check(img, v, raw, len), -EBADMSG);

	uint8_t page[CODEC_PAGE];
	for (uint64_t p = 0; p < PAGES; p++) {
		memset(page, 0xa5, sizeof(page));
		cr_assert_eq(image_read_page(img, ctx, p, page), 0, "page %lu", (unsigned long)p);
		cr_assert_arr_eq(page, expect[p], CODEC_PAGE, "page %lu differs", (unsigned long)p);
	}
	uint64_t n;
	image_first_touch(img, &n);
	cr_assert_eq(n, 0);
	image_close(img);
}

Test(image, data_section_is_aligned)
{
	make_image();
	cr_assert_eq(header_u64(H_DATA_OFF) % 4096, 0);
	cr_assert_eq(header_u64(H_DATA_OFF), 4096);
	cr_assert_eq(header_u64(H_TABLE_OFF) % 4096, 0);
	struct stat st;
	cr_assert_eq(stat(path_in(IMAGE_FILE), &st), 0);
	cr_assert_eq((uint64_t)st.st_size, header_u64(H_FILE_SIZE));
	cr_assert_eq(header_u64(H_TRAILER_OFF) + 64, (uint64_t)st.st_size);
	cr_assert_eq(header_u64(H_WORDS), 2, "WORD_A once, WORD_B once, zero never");
}

/* One class of truncation: refused at open as corrupt, the why says so. */
static void check_truncated(uint64_t size, const char *where)
{
	make_image();
	truncate_to(size);
	char why[256] = "";
	int ret = open_fails(why, sizeof(why));
	cr_assert_eq(ret, -EBADMSG, "truncated %s: %d %s", where, ret, why);
	cr_assert(strstr(why, "truncated"), "truncated %s: %s", where, why);
	rm_dir(dir);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/image-test-XXXXXX")));
}

Test(image, truncated_refused)
{
	make_image();
	uint64_t table = header_u64(H_TABLE_OFF), size = header_u64(H_FILE_SIZE);
	rm_dir(dir);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/image-test-XXXXXX")));
	check_truncated(0, "to nothing");
	check_truncated(100, "inside the header");
	check_truncated(4096 + 100, "inside the data");
	check_truncated(table + 12, "inside the table");
	check_truncated(size - 10, "inside the trailer");
	check_truncated(size - 1, "by one byte");
}

static void check_flip(uint64_t off, const char *where)
{
	make_image();
	flip_bit(off, 3);
	char why[256] = "";
	int ret = open_fails(why, sizeof(why));
	cr_assert_eq(ret, -EBADMSG, "flip in %s: %d %s", where, ret, why);
	rm_dir(dir);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/image-test-XXXXXX")));
}

Test(image, flipped_bit_refused_at_open)
{
	make_image();
	uint64_t words = header_u64(H_WORDS_OFF), chunks = header_u64(H_TABLE_CHUNKS_OFF),
		 trailer = header_u64(H_TRAILER_OFF);
	rm_dir(dir);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/image-test-XXXXXX")));
	check_flip(0, "the magic");
	check_flip(30, "the creation time");
	check_flip(130, "the VM name");
	check_flip(200, "a region");
	check_flip(3000, "the header's reserved bytes");
	check_flip(words + 2, "the words");
	check_flip(chunks + 3, "the table's chunk list");
	check_flip(trailer + 20, "the trailer");
}

/* Table and index are checked a chunk at a time, when first read: a flip
 * there fails the reads that need the chunk, never serves its data. */
static void check_flip_at_read(uint64_t off, uint64_t bad_page, uint64_t good_page, const char *where)
{
	make_image();
	flip_bit(off, 5);
	struct image *img = open_ok();
	uint8_t page[CODEC_PAGE];
	int ret = image_read_page(img, ctx, bad_page, page);
	cr_assert_eq(ret, -EBADMSG, "flip in %s: page %lu read %d", where, (unsigned long)bad_page, ret);
	cr_assert_eq(image_read_page(img, ctx, bad_page, page), -EBADMSG, "%s: and again", where);
	if (good_page < PAGES) {
		cr_assert_eq(image_read_page(img, ctx, good_page, page), 0, "%s: page %lu", where,
			     (unsigned long)good_page);
		cr_assert_arr_eq(page, expect[good_page], CODEC_PAGE);
	}
	image_close(img);
	rm_dir(dir);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/image-test-XXXXXX")));
}

Test(image, flipped_bit_in_table_or_index_refused_at_read)
{
	make_image();
	uint64_t table = header_u64(H_TABLE_OFF), index = header_u64(H_INDEX_OFF);
	rm_dir(dir);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/image-test-XXXXXX")));
	check_flip_at_read(table + 8 * 5 + 1, 5, PAGES, "the table");
	check_flip_at_read(table + 8 * 9 + 7, 0, PAGES, "a zero page's entry (the whole chunk fails)");
	check_flip_at_read(index + 4, 4, 0, "the index (a zero page needs none)");
}

/* A VM of several table chunks: one corrupt chunk costs its own pages only,
 * and opening reads none of them (a resume waits as long for any size). */
Test(image, corrupt_table_chunk_costs_its_pages_only)
{
	struct image_info l = { .vm_name = "chunks", .n_regions = 1 };
	const uint64_t pages = 3 * IMAGE_CHUNK_PAGES;
	l.regions[0] = (struct image_region){ 0, pages * 4096, 4096 };
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	for (uint64_t p = 0; p < pages; p += 1000)
		image_set_samefill(w, p, WORD_A + p);
	cr_assert_eq(image_commit(w, why, sizeof(why)), 0, "%s", why);
	uint64_t bad = IMAGE_CHUNK_PAGES + 904;  /* in chunk 1: page 5000 */
	flip_bit(header_u64(H_TABLE_OFF) + bad * 8 + 2, 1);

	struct image *img = open_ok();
	uint8_t page[CODEC_PAGE], want[CODEC_PAGE];
	for (uint64_t p = 0; p < pages; p += 1000) {
		int ret = image_read_page(img, ctx, p, page);
		if (p / IMAGE_CHUNK_PAGES == 1) {
			cr_assert_eq(ret, -EBADMSG, "page %lu of the corrupt chunk: %d", (unsigned long)p, ret);
			continue;
		}
		cr_assert_eq(ret, 0, "page %lu: %d", (unsigned long)p, ret);
		page_fill_word(want, WORD_A + p);
		cr_assert_arr_eq(page, want, CODEC_PAGE, "page %lu", (unsigned long)p);
	}
	uint64_t v;
	cr_assert_eq(image_page(img, bad + 1, &v), -EBADMSG, "a zero page of the chunk is not taken for one");
	cr_assert_eq(image_chunk_held(img, 0), 5);
	cr_assert_eq(image_pages_held(img), 13);
	image_close(img);
}

Test(image, flipped_object_refused_at_read)
{
	make_image();
	struct image *img = open_ok();
	uint64_t v, off;
	uint32_t len;
	enum codec c;
	cr_assert_eq(image_page(img, 7, &v), IMAGE_PAGE_OBJECT);
	image_object_loc(img, v, &off, &len, &c);
	image_close(img);
	flip_bit(off + len / 2, 0);

	img = open_ok();        /* objects are checked when read, not at open */
	uint8_t page[CODEC_PAGE];
	cr_assert_eq(image_read_page(img, ctx, 7, page), -EBADMSG);
	cr_assert_eq(image_read_page(img, ctx, 5, page), 0, "the other objects still read");
	cr_assert_arr_eq(page, expect[5], CODEC_PAGE);
	image_close(img);
}

Test(image, undecodable_object_is_eilseq)
{
	struct image_info l = layout();
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	uint8_t junk[100];
	memset(junk, 0xff, sizeof(junk));
	uint64_t i;
	cr_assert_eq(image_add_object(w, CODEC_LZ4, junk, sizeof(junk), &i), 0);
	image_set_object(w, 9, i);
	cr_assert_eq(image_commit(w, why, sizeof(why)), 0, "%s", why);
	struct image *img = open_ok();
	uint8_t page[CODEC_PAGE];
	cr_assert_eq(image_read_page(img, ctx, 9, page), -EILSEQ);
	image_close(img);
}

Test(image, other_version_refused)
{
	make_image();
	int fd = open(path_in(IMAGE_FILE), O_RDWR);
	uint8_t v1[4] = { 1, 0, 0, 0 };
	cr_assert_eq(pwrite(fd, v1, 4, 8), 4);
	close(fd);
	char why[256] = "";
	cr_assert_eq(open_fails(why, sizeof(why)), -EPROTONOSUPPORT, "%s", why);
	cr_assert(strstr(why, "version 1: this memsrv reads versions 2 and 3 only"), "%s", why);
}

Test(image, none_is_enoent)
{
	char why[256] = "";
	cr_assert_eq(open_fails(why, sizeof(why)), -ENOENT);
	cr_assert_null(strstr(why, "partial"), "%s", why);
}

/* A writer killed before commit leaves a partial file only: refused with a
 * why naming it, and replaced by the next writer. */
Test(image, killed_writer_leaves_no_image)
{
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct image_info l = layout();
		struct image_writer *w;
		uint8_t page[CODEC_PAGE];
		uint64_t i;
		page_fill_random(page, 1);
		if (image_create(dir, &l, &w, NULL, 0) || image_add_object(w, CODEC_LZ4, page, IMAGE_RAW_LEN, &i))
			_exit(1);
		image_set_object(w, 0, i);
		_exit(0);       /* killed before commit */
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert(exists(IMAGE_PARTIAL_FILE));
	cr_assert_not(exists(IMAGE_FILE));

	char why[256] = "";
	cr_assert_eq(open_fails(why, sizeof(why)), -ENOENT);
	cr_assert(strstr(why, IMAGE_PARTIAL_FILE), "%s", why);

	make_image();
	cr_assert_not(exists(IMAGE_PARTIAL_FILE));
	image_close(open_ok());
}

Test(image, existing_image_never_overwritten)
{
	make_image();
	struct stat before, after;
	cr_assert_eq(stat(path_in(IMAGE_FILE), &before), 0);
	struct image_info l = layout();
	struct image_writer *w = NULL;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), -EEXIST);
	cr_assert(strstr(why, "exists"), "%s", why);
	cr_assert_null(w);
	cr_assert_eq(stat(path_in(IMAGE_FILE), &after), 0);
	cr_assert_eq(before.st_ino, after.st_ino);
	cr_assert_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
	image_close(open_ok());
}

/* An image that appears while a writer works is not replaced by its commit. */
Test(image, commit_does_not_replace_an_image)
{
	struct image_info l = layout();
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	int fd = open(path_in(IMAGE_FILE), O_CREAT | O_WRONLY, 0600);
	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(image_commit(w, why, sizeof(why)), -EEXIST, "%s", why);
	cr_assert(strstr(why, "never overwritten"), "%s", why);
	cr_assert_not(exists(IMAGE_PARTIAL_FILE));
	struct stat st;
	cr_assert_eq(stat(path_in(IMAGE_FILE), &st), 0);
	cr_assert_eq(st.st_size, 0, "the other file is untouched");
}

Test(image, one_writer_per_directory)
{
	struct image_info l = layout();
	struct image_writer *w, *w2 = NULL;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(image_create(dir, &l, &w2, why, sizeof(why)), -EBUSY);
	cr_assert(strstr(why, "being written"), "%s", why);
	cr_assert(exists(IMAGE_PARTIAL_FILE), "the first writer's file stays");
	image_abort(w);
	cr_assert_not(exists(IMAGE_PARTIAL_FILE));
	cr_assert_not(exists(IMAGE_FILE));
}

Test(image, misuse_fails_commit)
{
	struct image_info l = layout();
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	uint64_t i;
	uint8_t page[CODEC_PAGE] = { 0 };
	cr_assert_eq(image_add_object(w, CODEC_LZ4, page, 0, &i), -EINVAL);
	cr_assert_eq(image_add_object(w, CODEC_LZ4, page, CODEC_PAGE + 1, &i), -EINVAL);
	cr_assert_eq(image_add_object(w, CODECS, page, 100, &i), -EINVAL);
	image_set_object(w, 3, 0);      /* no object 0 yet */
	cr_assert_eq(image_commit(w, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "page 3"), "%s", why);
	cr_assert_not(exists(IMAGE_PARTIAL_FILE));
	cr_assert_not(exists(IMAGE_FILE));

	l.regions[1].size = 4096 + 1;
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "region 1"), "%s", why);
	cr_assert_not(exists(IMAGE_PARTIAL_FILE));
}

Test(image, first_touch_round_trip)
{
	struct image_info l = layout();
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	uint64_t bad[] = { 1, PAGES };
	cr_assert_eq(image_set_first_touch(w, bad, 2), -EINVAL);
	uint64_t first[] = { 20, 5, 0, 23 };
	cr_assert_eq(image_set_first_touch(w, first, 4), 0);
	cr_assert_eq(image_commit(w, why, sizeof(why)), 0, "%s", why);
	struct image *img = open_ok();
	uint64_t n;
	const uint64_t *got = image_first_touch(img, &n);
	cr_assert_eq(n, 4);
	cr_assert_arr_eq(got, first, sizeof(first));
	image_close(img);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 8 GiB of zero pages: the file is its table, 8 bytes a page. */
Test(image, large_sparse_layout, .timeout = 30)
{
	struct image_info l = { .vm_name = "big", .n_regions = 1 };
	l.regions[0] = (struct image_region){ 0, 8ull << 30, 4096 };
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	const uint64_t pages = (8ull << 30) / 4096;
	image_set_samefill(w, pages - 1, WORD_A);
	cr_assert_eq(image_commit(w, why, sizeof(why)), 0, "%s", why);

	struct stat st;
	cr_assert_eq(stat(path_in(IMAGE_FILE), &st), 0);
	cr_assert_leq((uint64_t)st.st_size, 4096 + pages * 8 + pages / IMAGE_CHUNK_PAGES * 16 + 4096, "%ld bytes",
		      (long)st.st_size);

	double t0 = now_s();
	struct image *img = open_ok();
	double took = now_s() - t0;
	cr_assert_lt(took, 2.0, "opening took %.3f s", took);
	cr_assert_eq(image_get_info(img)->pages, pages);
	uint8_t page[CODEC_PAGE], word[CODEC_PAGE], zero[CODEC_PAGE] = { 0 };
	page_fill_word(word, WORD_A);
	cr_assert_eq(image_read_page(img, ctx, pages / 2, page), 0);
	cr_assert_arr_eq(page, zero, CODEC_PAGE);
	cr_assert_eq(image_read_page(img, ctx, pages - 1, page), 0);
	cr_assert_arr_eq(page, word, CODEC_PAGE);
	image_close(img);
}

/* memsrv-image check DIR: its exit status and what it printed (into out). */
static int run_tool(char *out, size_t len)
{
	const char *tool = getenv("MEMSRV_IMAGE");
	if (!tool)
		cr_skip_test("MEMSRV_IMAGE is not set (run through meson test)");
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "'%s' check '%s' 2>&1", tool, dir);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	size_t n = fread(out, 1, len - 1, f);
	out[n] = 0;
	int status = pclose(f);
	cr_assert(WIFEXITED(status), "%s", out);
	return WEXITSTATUS(status);
}

Test(image, tool_check)
{
	char out[4096];
	make_image();
	cr_assert_eq(run_tool(out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "pages: 24\n"), "%s", out);
	cr_assert(strstr(out, "pages_zero: 16\n"), "%s", out);
	cr_assert(strstr(out, "pages_samefill: 3\n"), "%s", out);
	cr_assert(strstr(out, "pages_object: 5\n"), "%s", out);
	cr_assert(strstr(out, "objects: 3\n"), "%s", out);
	cr_assert(strstr(out, "objects_raw: 1\n"), "%s", out);
	cr_assert(strstr(out, "status: ok\n"), "%s", out);

	struct image *img = open_ok();
	uint64_t v, off;
	uint32_t len;
	enum codec c;
	image_page(img, 4, &v);
	image_object_loc(img, v, &off, &len, &c);
	image_close(img);
	flip_bit(off + 100, 5);
	cr_assert_eq(run_tool(out, sizeof(out)), 1, "%s", out);
	cr_assert(strstr(out, "bad_objects: 1\n"), "%s", out);
	cr_assert(strstr(out, "page 4: "), "%s", out);
	cr_assert(strstr(out, "status: corrupt\n"), "%s", out);

	truncate_to(5000);
	cr_assert_eq(run_tool(out, sizeof(out)), 1, "%s", out);
	cr_assert(strstr(out, "truncated"), "%s", out);
	cr_assert(strstr(out, "status: refused\n"), "%s", out);
}

/* The name is NUL-padded on disk whatever followed it in the caller's struct. */
Test(image, name_padded)
{
	struct image_info l = layout();
	memset(l.vm_name, 'x', sizeof(l.vm_name));
	memcpy(l.vm_name, "ab", 3);
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(image_writer_info(w)->vm_name, "ab");
	cr_assert_eq(image_commit(w, why, sizeof(why)), 0, "%s", why);
	char name[IMAGE_NAME_MAX], want[IMAGE_NAME_MAX] = "ab";
	int fd = open(path_in(IMAGE_FILE), O_RDONLY);
	cr_assert_eq(pread(fd, name, sizeof(name), 128), (ssize_t)sizeof(name));
	close(fd);
	cr_assert_arr_eq(name, want, sizeof(name));
	struct image *img = open_ok();
	cr_assert_str_eq(image_get_info(img)->vm_name, "ab");
	uint8_t page[CODEC_PAGE];
	cr_assert_eq(image_read_page(img, ctx, PAGES, page), -EINVAL, "no page past the end");
	image_close(img);
}

/* Thousands of distinct same-filled words: each stored once, each page back. */
Test(image, many_samefill_words)
{
	struct image_info l = { .vm_name = "words", .n_regions = 1 };
	l.regions[0] = (struct image_region){ 0, 4096 * 4096, 4096 };
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	for (uint64_t p = 0; p < 4096; p++)
		image_set_samefill(w, p, (p % 3000) * 0x1000100010001ull + 1);
	cr_assert_eq(image_commit(w, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(header_u64(H_WORDS), 3000);
	struct image *img = open_ok();
	uint8_t page[CODEC_PAGE], want[CODEC_PAGE];
	for (uint64_t p = 0; p < 4096; p++) {
		page_fill_word(want, (p % 3000) * 0x1000100010001ull + 1);
		cr_assert_eq(image_read_page(img, ctx, p, page), 0);
		cr_assert_arr_eq(page, want, CODEC_PAGE, "page %lu", (unsigned long)p);
	}
	image_close(img);
}

/* ---- A file crafted to pass every checksum: the bounds still hold ---- */

#include <xxhash.h>

static uint8_t *file_bytes(size_t *size)
{
	struct stat st;
	cr_assert_eq(stat(path_in(IMAGE_FILE), &st), 0);
	uint8_t *b = malloc((size_t)st.st_size);
	int fd = open(path_in(IMAGE_FILE), O_RDONLY);
	cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*size = (size_t)st.st_size;
	return b;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Recomputes every checksum of the trailer, as a forger would, and writes the file. */
static void reseal(uint8_t *b, size_t size)
{
	uint8_t *t = b + size - 64;
	uint64_t table = get64(b + H_TABLE_OFF), words = get64(b + H_WORDS_OFF), index = get64(b + H_INDEX_OFF),
		 first = get64(b + H_FIRST_TOUCH_OFF), table_chunks = get64(b + H_TABLE_CHUNKS_OFF),
		 index_chunks = get64(b + H_INDEX_CHUNKS_OFF), trailer = size - 64;
	/* one chunk each in these images */
	put64(b + table_chunks, XXH3_64bits(b + table, words - table));
	put64(b + index_chunks, XXH3_64bits(b + index, first - index));
	put64(t + 16, XXH3_64bits(b, 4096));
	put64(t + 24, XXH3_64bits(b + table_chunks, index_chunks - table_chunks));
	put64(t + 32, XXH3_64bits(b + words, index - words));
	put64(t + 40, XXH3_64bits(b + index_chunks, trailer - index_chunks));
	put64(t + 48, XXH3_64bits(b + first, table_chunks - first));
	put64(t + 56, XXH3_64bits(t, 56));
	int fd = open(path_in(IMAGE_FILE), O_WRONLY);
	cr_assert_eq(pwrite(fd, b, size, 0), (ssize_t)size);
	close(fd);
}

enum forged_part { IN_HEADER, IN_TABLE, IN_INDEX };

/* Sets one 64-bit field, reseals, and expects open to refuse it as corrupt
 * (the header), or the read of page (table and index: checked when read). */
static void check_forged(enum forged_part part, uint64_t off, uint64_t value, uint64_t page, const char *what)
{
	make_image();
	size_t size;
	uint8_t *b = file_bytes(&size);
	uint64_t base = part == IN_HEADER ? 0 : get64(b + (part == IN_TABLE ? H_TABLE_OFF : H_INDEX_OFF));
	put64(b + base + off, value);
	reseal(b, size);
	free(b);
	char why[256] = "";
	int ret;
	if (part == IN_HEADER) {
		ret = open_fails(why, sizeof(why));
	} else {
		struct image *img = open_ok();
		uint8_t buf[CODEC_PAGE];
		ret = image_read_page(img, ctx, page, buf);
		image_close(img);
	}
	cr_assert_eq(ret, -EBADMSG, "%s: %d %s", what, ret, why);
	rm_dir(dir);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/image-test-XXXXXX")));
}

#define ENTRY(kind, value) ((uint64_t)(kind) << 62 | (value))
#define INDEX_PAGE 4  /* a page whose object is the first one */

Test(image, forged_but_sealed_refused)
{
	/* the reseal itself keeps an untouched image valid */
	make_image();
	size_t size;
	uint8_t *b = file_bytes(&size);
	reseal(b, size);
	free(b);
	image_close(open_ok());
	rm_dir(dir);
	cr_assert_not_null(mkdtemp(strcpy(dir, "/tmp/image-test-XXXXXX")));

	/* object 0 is the raw page 4, object 1 the LZ4 one */
	check_forged(IN_INDEX, 0, 1ull << 40, INDEX_PAGE, "an object past the data section");
	check_forged(IN_INDEX, 0, 100, INDEX_PAGE, "an object inside the header");
	check_forged(IN_INDEX, 24 + 16, 5000 | 1ull << 32, INDEX_PAGE, "an object longer than a page");
	check_forged(IN_INDEX, 24 + 16, 100 | 7ull << 32, INDEX_PAGE, "an unknown codec");
	check_forged(IN_INDEX, 24 + 16, 100 | 0xffull << 32, INDEX_PAGE, "raw but not a page long");
	check_forged(IN_INDEX, 16, 4096 | 0ull << 32, INDEX_PAGE, "a page long but not raw");
	check_forged(IN_TABLE, 8 * 5, ENTRY(2, 3), 5, "a page naming object 3 of 3");
	check_forged(IN_TABLE, 8 * 1, ENTRY(1, 2), 1, "a page naming word 2 of 2");
	check_forged(IN_TABLE, 8 * 0, ENTRY(0, 1), 0, "a zero page with a value");
	check_forged(IN_TABLE, 8 * 0, ENTRY(3, 0), 0, "kind 3");
	check_forged(IN_HEADER, 32, PAGES + 1, 0, "pages beyond the regions");
	check_forged(IN_HEADER, H_DATA_BYTES, 1ull << 60, 0, "data bytes beyond the file");
	check_forged(IN_HEADER, 40, 1ull << 60, 0, "objects beyond the file");
	check_forged(IN_HEADER, H_WORDS, 3, 0, "a words count the sections do not have");
	check_forged(IN_HEADER, H_DATA_OFF, 8192, 0, "data not at 4096");
	check_forged(IN_HEADER, 120, 64, 0, "64 regions");
	check_forged(IN_HEADER, 192 + 8, 4096 * 16 + 1, 0, "a region not a whole number of pages");
}

Test(image, object_read_as_written_and_decoded_from_a_read_of_ones_own)
{
	make_image();
	struct image *img = open_ok();
	uint64_t v;
	cr_assert_eq(image_page(img, 7, &v), IMAGE_PAGE_OBJECT);
	uint8_t buf[IMAGE_RAW_LEN], page[CODEC_PAGE];
	uint32_t len;
	enum codec c;
	cr_assert_eq(image_read_object(img, v, buf, &len, &c), 0);
	cr_assert_eq(c, CODEC_ZSTD);
	cr_assert_lt(len, IMAGE_RAW_LEN, "as the store kept it: compressed");
	cr_assert_eq(image_decode(img, ctx, v, buf, len, page), 0);
	cr_assert_arr_eq(page, expect[7], CODEC_PAGE);
	buf[len / 2] ^= 1;
	cr_assert_eq(image_decode(img, ctx, v, buf, len, page), -EBADMSG, "bytes not as written are refused");
	cr_assert_eq(image_decode(img, ctx, v, buf, len - 1, page), -EBADMSG, "so is a short read");
	cr_assert_eq(image_read_object(img, image_get_info(img)->objects, buf, &len, &c), -EINVAL);
	image_close(img);
}

Test(image, remove_refused_while_a_reader_holds_it)
{
	make_image();
	struct image *img = open_ok();
	cr_assert_eq(flock(image_fd(img), LOCK_SH | LOCK_NB), 0, "what memsrv does for a resumed VM");
	char why[256] = "";
	cr_assert_eq(image_remove(dir, why, sizeof why), -EBUSY);
	cr_assert(strstr(why, "in use"), "%s", why);
	image_close(img);
	cr_assert_eq(image_remove(dir, why, sizeof why), 0, "%s", why);
	cr_assert_eq(image_remove(dir, why, sizeof why), -ENOENT);
	cr_assert_eq(image_open(dir, &img, why, sizeof why), -ENOENT);
}

#define H_FLAGS 124
#define H_REMOTE_HOLDER 1728

/* An image of names (memsrv-ctl snapshot --remote): page 3 names a digest,
 * page 5 is a raw page beside it. */
static void make_named_image(const struct remote_digest *d, const uint8_t *raw)
{
	struct image_info l = layout();
	snprintf(l.remote_holder, sizeof l.remote_holder, "image-0123");
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	uint64_t named, plain;
	cr_assert_eq(image_add_remote(w, d, &named), 0);
	cr_assert_eq(image_add_object(w, CODEC_LZ4, raw, IMAGE_RAW_LEN, &plain), 0);
	image_set_object(w, 3, named);
	image_set_object(w, 5, plain);
	cr_assert_eq(image_commit(w, why, sizeof(why)), 0, "%s", why);
}

Test(image, named_objects_round_trip_and_are_never_page_content)
{
	struct remote_digest d;
	for (unsigned i = 0; i < sizeof d.b; i++)
		d.b[i] = (uint8_t)(i * 7 + 1);
	static uint8_t raw[CODEC_PAGE], buf[CODEC_PAGE];
	memset(raw, 0x5a, sizeof raw);
	raw[17] = 1;
	make_named_image(&d, raw);
	cr_assert_eq(header_u64(H_FLAGS) & 0xffffffff, 1, "the remote flag");

	struct image *img = open_ok();
	cr_assert_str_eq(image_get_info(img)->remote_holder, "image-0123");
	uint64_t index;
	cr_assert_eq(image_page(img, 3, &index), IMAGE_PAGE_OBJECT);
	struct remote_digest got;
	cr_assert_eq(image_object_remote(img, index, &got), 1);
	cr_assert_arr_eq(got.b, d.b, sizeof d.b);
	/* a name is never read as a page, nor as an object's bytes */
	cr_assert_eq(image_read_page(img, ctx, 3, buf), -EREMOTE);
	uint32_t len;
	enum codec c;
	cr_assert_eq(image_read_object(img, index, buf, &len, &c), -EREMOTE);
	/* the page beside it is the file's */
	cr_assert_eq(image_read_page(img, ctx, 5, buf), 0);
	cr_assert_arr_eq(buf, raw, CODEC_PAGE);
	cr_assert_eq(image_page(img, 5, &index), IMAGE_PAGE_OBJECT);
	cr_assert_eq(image_object_remote(img, index, &got), 0);
	image_close(img);
	if (getenv("MEMSRV_IMAGE")) {
		char out[4096];
		cr_assert_eq(run_tool(out, sizeof(out)), 0, "%s", out);
		cr_assert(strstr(out, "objects_named: 1\n") && strstr(out, "remote_holder: image-0123\n"), "%s", out);
	}

	/* a flipped bit of the name is refused when read */
	uint64_t data = header_u64(H_DATA_OFF);
	flip_bit(data + 3, 2);
	img = open_ok();
	cr_assert_eq(image_page(img, 3, &index), IMAGE_PAGE_OBJECT);
	cr_assert_eq(image_object_remote(img, index, &got), -EBADMSG);
	image_close(img);
	if (getenv("MEMSRV_IMAGE")) {
		char out[4096];
		cr_assert_eq(run_tool(out, sizeof(out)), 1, "a damaged name passed the check: %s", out);
	}
}

Test(image, names_without_a_holder_are_refused)
{
	/* a writer without a holder adds no name: nothing would keep it alive */
	struct image_info l = layout();
	struct image_writer *w;
	char why[256] = "";
	cr_assert_eq(image_create(dir, &l, &w, why, sizeof(why)), 0, "%s", why);
	struct remote_digest d = { { 1 } };
	uint64_t index;
	cr_assert_eq(image_add_remote(w, &d, &index), -EINVAL);
	image_abort(w);

	/* a file whose flag and holder disagree, sealed all the same, is corrupt */
	static uint8_t raw[CODEC_PAGE];
	memset(raw, 0x11, sizeof raw);
	raw[0] = 2;
	make_named_image(&d, raw);
	size_t size;
	uint8_t *b = file_bytes(&size);
	memset(b + H_REMOTE_HOLDER, 0, 64);
	reseal(b, size);
	free(b);
	cr_assert_eq(open_fails(why, sizeof(why)), -EBADMSG, "%s", why);
	cr_assert(strstr(why, "holder"), "%s", why);
}

Test(image, version_2_is_read_as_an_image_without_names)
{
	make_image();
	size_t size;
	uint8_t *b = file_bytes(&size);
	b[8] = 2;
	reseal(b, size);
	struct image *img = open_ok();
	uint8_t buf[CODEC_PAGE];
	cr_assert_eq(image_read_page(img, ctx, INDEX_PAGE, buf), 0);
	cr_assert_arr_eq(buf, expect[INDEX_PAGE], CODEC_PAGE);
	image_close(img);
	/* a version 2 image with a flag is none a writer made */
	b[124] = 1;
	reseal(b, size);
	free(b);
	char why[256] = "";
	cr_assert_eq(open_fails(why, sizeof(why)), -EBADMSG, "%s", why);
}
