/* image: a VM's memory image on disk, what `memsrv-ctl snapshot` writes and
 * a resume reads (docs/snapshot.md).
 *
 * One file, DIR/memory.img: a header (magic, version, the VM's layout),
 * the objects (each page content once, in the form the store keeps it:
 * compressed by its codec, or raw), then the page table (one entry per
 * page: zero, same-filled with its word, or an object's index), the
 * object index (offset, length, codec, checksum of each object), a
 * checksum for each chunk of table and index, and a trailer with the
 * checksums of the rest.  Opening reads neither table nor index: each
 * chunk is read and checked the first time a page or object in it is
 * asked for, so that a resume waits as long for 8 GiB as for 256 MiB.  Zero and
 * same-filled pages cost 8 bytes; content shared by several pages is
 * written once.  It is written as DIR/.memory.img.partial, made durable,
 * then renamed into place: a writer killed at any instant leaves no file
 * named memory.img, and a file that is one is complete.
 *
 * Any file that is not what a writer committed (truncated, a flipped bit,
 * another version) is refused when opened or, for an object's bytes, when
 * read: never served as data.  Not thread-safe: one user per handle.
 */
#ifndef MEMSRV_IMAGE_H
#define MEMSRV_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "remote_object.h"

#define IMAGE_FILE "memory.img"
#define IMAGE_PARTIAL_FILE ".memory.img.partial"
#define IMAGE_VERSION 3            /* what is written */
#define IMAGE_VERSION_NO_NAMES 2   /* read too: a version 3 image without names (flags 0) */
#define IMAGE_MAX_REGIONS 63
#define IMAGE_NAME_MAX 64
#define IMAGE_RAW_LEN CODEC_PAGE  /* an object of this length is the page itself, not compressed */
#define IMAGE_CHUNK_PAGES 4096u   /* page table entries checked together (16 MiB of RAM) */
#define IMAGE_CHUNK_OBJECTS 4096u /* object index entries checked together */

enum image_page_kind {
	IMAGE_PAGE_ZERO = 0,      /* all zeros (or never touched) */
	IMAGE_PAGE_SAMEFILL = 1,  /* one 64-bit word repeated: the value is the word */
	IMAGE_PAGE_OBJECT = 2,    /* the value is an object's index */
};

struct image_region {
	uint64_t guest_phys_addr, size;
	uint32_t page_size;
};

/* What an image holds, beside its pages. */
struct image_info {
	char vm_name[IMAGE_NAME_MAX];
	uint32_t n_regions;
	struct image_region regions[IMAGE_MAX_REGIONS];
	uint64_t pages;          /* of every region, 4 KiB each, region after region */
	uint64_t objects;        /* filled in by image_commit()/image_open() */
	uint64_t data_bytes;     /* the objects' bytes, likewise */
	uint64_t created_unix_ns;
	/* "" for an image that holds its pages.  Else objects may be names of
	 * objects in a Redis Cluster (memsrv-ctl snapshot --remote), and the
	 * cluster holds them under this name's references (remote_refs.h) for
	 * as long as the image is wanted: memsrv-ctl remote gc HOLDER drops them. */
	char remote_holder[IMAGE_NAME_MAX];
};

/* Writing. */
struct image_writer;

/* Starts an image of layout (regions, name; pages is computed) in the
 * directory dir, which must exist: every page zero until set.  0, or
 * -errno with why ("DIR/memory.img exists": an image is never
 * overwritten). */
int image_create(const char *dir, const struct image_info *layout, struct image_writer **w, char *why, size_t len);
/* Appends an object: len bytes of data as the store keeps them, codec c
 * (len IMAGE_RAW_LEN: the raw page, c ignored); *index gets its index.
 * Content several pages share is added once by the caller.  0 or -errno. */
int image_add_object(struct image_writer *w, enum codec c, const void *data, uint32_t len, uint64_t *index);
/* Appends an object that is a name: the page of digest d, kept in the
 * Redis Cluster under the layout's remote_holder (-EINVAL without one).
 * The caller makes sure the cluster holds it before the commit. */
int image_add_remote(struct image_writer *w, const struct remote_digest *d, uint64_t *index);
/* Sets page (VM-wide, from 0) to an object added before, or a same-filled word. */
void image_set_object(struct image_writer *w, uint64_t page, uint64_t index);
void image_set_samefill(struct image_writer *w, uint64_t page, uint64_t word);
/* Writes the table, index and trailer, makes the file durable and renames
 * it into place; the writer is freed either way.  0, or -errno with why
 * (the partial file is removed). */
int image_commit(struct image_writer *w, char *why, size_t len);
/* Gives up: the partial file is removed, the writer freed. */
void image_abort(struct image_writer *w);
/* The image being written: its layout, pages, and the objects and their
 * bytes so far (what commit will write). */
const struct image_info *image_writer_info(const struct image_writer *w);
/* Records the pages a resumed VM touched first, in order (REAP), to be
 * installed first by the next resume; replaces any list set before.
 * 0, -EINVAL (a page outside the image) or -ENOMEM. */
int image_set_first_touch(struct image_writer *w, const uint64_t *pages, uint64_t n);

/* Removes DIR/memory.img unless a VM's pages still come from it: memsrv
 * holds a shared flock on an image it reads (server/engine/image_pages.h),
 * and this takes it exclusively first.  0, or -errno with why (-EBUSY: in
 * use, -ENOENT: no image). */
int image_remove(const char *dir, char *why, size_t len);

/* Reading. */
struct image;

/* Opens DIR/memory.img and checks all but the table, the index and the
 * objects' bytes: magic, version, sizes against the file's (a truncated
 * file), the checksums of header, words, first-touch list and the chunks'
 * checksums.  0, or -errno (-EBADMSG: corrupt, -EPROTONOSUPPORT: another
 * version, -ENOENT: none, or only a partial one) with why.  The table and
 * index are checked a chunk at a time when first used: a corrupt chunk
 * fails the calls that need it with -EBADMSG. */
int image_open(const char *dir, struct image **img, char *why, size_t len);
void image_close(struct image *img);
const struct image_info *image_get_info(const struct image *img);
/* The fd of the file, for reads of the caller's own (io_uring). */
int image_fd(const struct image *img);
/* The first-touch list (image_set_first_touch()), checked: *n pages, each
 * inside the image; *n is 0 when none was recorded. */
const uint64_t *image_first_touch(const struct image *img, uint64_t *n);

/* The pages that are not zero, in all and in the table's chunk chunk
 * (pages chunk * IMAGE_CHUNK_PAGES on), as the image says. */
uint64_t image_pages_held(const struct image *img);
uint64_t image_chunk_held(const struct image *img, uint64_t chunk);
/* Page page's enum image_page_kind; *value: the word (SAMEFILL) or the
 * object's index (OBJECT).  Or -EINVAL (no such page), -EBADMSG (its
 * table chunk is corrupt), -errno (reading it). */
int image_page(struct image *img, uint64_t page, uint64_t *value);
/* Where object index's bytes are in the file, and its codec (meaningless
 * for a raw one: len IMAGE_RAW_LEN).  0, -EINVAL (no such object),
 * -EBADMSG (its index chunk is corrupt), -errno. */
int image_object_loc(struct image *img, uint64_t index, uint64_t *offset, uint32_t *len, enum codec *c);
/* Whether object index is a name (image_add_remote()): 1 with its digest
 * in *d, read and checked; 0 (its bytes are in the file); -EBADMSG, -errno.
 * The calls below that want an object's bytes fail with -EREMOTE for a
 * name: it is never page content. */
int image_object_remote(struct image *img, uint64_t index, struct remote_digest *d);
/* Whether len bytes read for object index are what was written: 0 or
 * -EBADMSG (or -errno: its index chunk could not be read). */
int image_object_check(struct image *img, uint64_t index, const void *data, uint32_t len);
/* Decodes the len bytes read for object index into page (4096 bytes):
 * checked against the object's checksum, then decompressed (or copied, a
 * raw one).  0, -EBADMSG (not what was written), -EILSEQ (does not
 * decompress), -EINVAL (a compressed one and no ctx). */
int image_decode(struct image *img, struct codec_ctx *ctx, uint64_t index, const void *data, uint32_t len,
		 void *page);
/* Object index's bytes as written (buf: IMAGE_RAW_LEN bytes), checked:
 * *len bytes, codec *c (meaningless when *len is IMAGE_RAW_LEN).  0,
 * -EBADMSG (corrupt, or the file shrank), -EINVAL (no such object), -errno. */
int image_read_object(struct image *img, uint64_t index, void *buf, uint32_t *len, enum codec *c);
/* Page page's content into buf (4096 bytes): read, checked, decompressed.
 * 0, or -EBADMSG (checksum), -EILSEQ (does not decompress), -errno (read;
 * -EINVAL: no such page, or no ctx for a compressed one). */
int image_read_page(struct image *img, struct codec_ctx *ctx, uint64_t page, void *buf);

#endif
