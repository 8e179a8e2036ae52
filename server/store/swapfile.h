/* swapfile: the node's swap space.
 *
 * Files memsrv creates and sizes (sparse), and a slot allocator over them.
 * Kept files outlive memsrv, so one restarted on them can claim its locs.
 * An object of n bytes takes ceil(n / unit) contiguous units of one file,
 * where unit is that file's direct-I/O offset alignment (512..4096).  The
 * I/O itself is the caller's: this module hands out (fd, offset, length) and
 * keeps the books.  Thread-safe; alloc and free take one short mutex,
 * swapfile_io(), swapfile_unit() and swapfile_count() take none.
 *
 * The files are sparse, so the device may run out of room before the
 * allocator does: callers must expect ENOSPC from their writes.
 */
#ifndef MEMSRV_SWAPFILE_H
#define MEMSRV_SWAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct swapfile;

/* Packed, high to low: file index (8 bits) | first unit (44 bits) | units
 * (12 bits).  units is never 0, so 0 is never a valid loc. */
typedef uint64_t swap_loc;

#define SWAPFILE_MAX_FILES 255
#define SWAPFILE_MIN_UNIT  512
#define SWAPFILE_MAX_UNIT  4096

static inline unsigned swap_loc_file(swap_loc loc)
{
	return loc >> 56;
}

static inline uint32_t swap_loc_units(swap_loc loc)
{
	return loc & 0xfff;
}

/* The loc's first unit in its file. */
static inline uint64_t swap_loc_first(swap_loc loc)
{
	return loc >> 12 & ((1ull << 44) - 1);
}

/* Returns a swap space with no files, or NULL on ENOMEM. */
struct swapfile *swapfile_create(void);

/* Closes every file and unlinks the ones swapfile_add() created; kept
 * files stay. */
void swapfile_destroy(struct swapfile *s);

/* Creates path (O_CREAT|O_EXCL) as a sparse file of size bytes and adds it.
 * The file is used O_DIRECT when its filesystem allows.  size is rounded
 * down to whole units.  Returns 0, -EEXIST if path exists, -EINVAL if size
 * is less than a unit, -EFBIG if it is too large, -EMFILE past
 * SWAPFILE_MAX_FILES files, or another -errno from open/ftruncate/ENOMEM.
 * On failure nothing is left behind and why (may be NULL) gets a sentence. */
int swapfile_add(struct swapfile *s, const char *path, uint64_t size,
		 char *why, size_t whylen);

/* Same, for a file named dir/memsrv-swap-<pid>-<n>. */
int swapfile_add_in_dir(struct swapfile *s, const char *dir, uint64_t size,
			char *why, size_t whylen);

/* Like swapfile_add(), but the file is kept for a memsrv restarted after
 * this one (even after kill -9), which swapfile_claim()s the locs its
 * records name: path may exist and is reopened with its content, and
 * swapfile_destroy() leaves it.  The file is sized to whole units; an
 * existing non-empty one must already have that size.  An flock() keeps a
 * second memsrv off it.  Returns 0, -EBUSY if another open of path holds
 * it, -EINVAL if its size differs or size is less than a unit, or another
 * error as swapfile_add().  On failure a file this call created is
 * unlinked and an existing one left as it was. */
int swapfile_add_kept(struct swapfile *s, const char *path, uint64_t size,
		      char *why, size_t whylen);

/* One line naming file i and the shape of its locs ("PATH unit U units N"):
 * a restarted memsrv must find its files in the same order and shape, or
 * its locs would point elsewhere. */
void swapfile_describe(const struct swapfile *s, unsigned i, char *out, size_t len);

/* Unlinks every kept file, for when no state remains to resume.  Call it
 * before swapfile_destroy(). */
void swapfile_remove_kept(struct swapfile *s);

/* Takes ceil(bytes / unit) contiguous units in one file, files in round
 * robin.  Returns 0 and the loc in *out, -EINVAL for bytes 0 or more than
 * 4096 + swapfile_unit(), -ENOSPC when no file has room. */
int swapfile_alloc(struct swapfile *s, uint32_t bytes, swap_loc *out);

/* Marks loc taken, as an earlier swapfile_alloc() on these files handed it
 * out (restart).  0, or -EINVAL when it lies outside the files or overlaps
 * a loc already taken. */
int swapfile_claim(struct swapfile *s, swap_loc loc);

/* Gives back a loc from swapfile_alloc(). */
void swapfile_free(struct swapfile *s, swap_loc loc);

/* Where a loc lives: len = units * unit, offset a multiple of unit.  With
 * direct, the caller's buffer must be aligned to swapfile_unit(). */
struct swap_io {
	int fd;
	uint64_t offset;
	uint32_t len;
	bool direct;
};

void swapfile_io(const struct swapfile *s, swap_loc loc, struct swap_io *io);

/* The largest unit (and direct-I/O memory alignment) among the files: the
 * alignment for I/O buffers.  0 before the first file. */
uint32_t swapfile_unit(const struct swapfile *s);

unsigned swapfile_count(const struct swapfile *s);

struct swapfile_stats {
	uint64_t files;
	uint64_t size_bytes;    /* usable: whole units of every file */
	uint64_t used_bytes;    /* units in use * unit */
	uint64_t objects;       /* live locs */
	uint64_t free_bytes;    /* size_bytes - used_bytes */
};

void swapfile_get_stats(struct swapfile *s, struct swapfile_stats *st);

#endif
