/* swapfile: sparse swap files and a next-fit unit bitmap per file. */
#include "swapfile.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOC_UNITS_BITS  12
#define LOC_FIRST_BITS  44
#define LOC_FILE_SHIFT  (LOC_UNITS_BITS + LOC_FIRST_BITS)
#define LOC_UNITS_MASK  ((1ull << LOC_UNITS_BITS) - 1)
#define LOC_FIRST_MASK  ((1ull << LOC_FIRST_BITS) - 1)
#define MAX_OBJECT_BASE 4096u   /* a page, plus up to one unit of header */

#define NO_RUN UINT64_MAX

_Static_assert(SWAPFILE_MAX_FILES < 1 << (64 - LOC_FILE_SHIFT), "file index must fit");
_Static_assert(LOC_UNITS_BITS == 12 && LOC_FIRST_BITS == 44, "the layout swapfile.h's swap_loc_* read");
_Static_assert((MAX_OBJECT_BASE + SWAPFILE_MAX_UNIT) / SWAPFILE_MIN_UNIT <= LOC_UNITS_MASK,
	       "an object's units must fit");

#define KEPT_LOCK_WAIT_MS 5000

struct swap_file {
	uint64_t *map;          /* one bit per unit, set = in use */
	uint64_t units;
	uint64_t free_units;    /* lets a full file be skipped without a scan */
	uint64_t cursor;        /* next fit: where the last allocation ended */
	char *path;
	int fd;
	uint32_t unit;
	uint8_t shift;          /* log2(unit) */
	bool direct;
	bool kept;              /* outlives us: destroy leaves it for a successor */
};

/* Slots below nfiles never move and their fd/unit/direct never change, so
 * swapfile_io() reads them without the lock. */
struct swapfile {
	pthread_mutex_t lock;
	unsigned nfiles;        /* published with release after the slot is filled */
	uint32_t align;         /* swapfile_unit() */
	unsigned next_file;     /* round robin */
	uint64_t objects;
	struct swap_file files[SWAPFILE_MAX_FILES];
};

static void say(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
	if (!why || !whylen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

struct swapfile *swapfile_create(void)
{
	struct swapfile *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

/* Closes f; with remove, its file goes too.  Also undoes a file_open()
 * that cannot be published, where only a file it created may go. */
static void file_discard(struct swap_file *f, const char *path, bool remove)
{
	close(f->fd);
	if (remove)
		unlink(path);
	free(f->path);
	free(f->map);
}

static void file_close(struct swap_file *f)
{
	file_discard(f, f->path, !f->kept);
}

void swapfile_destroy(struct swapfile *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->nfiles; i++)
		file_close(&s->files[i]);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t p = SWAPFILE_MIN_UNIT;
	while (p < v)
		p <<= 1;
	return p;
}

/* Turns O_DIRECT on if the filesystem takes it, then picks the unit.
 * F_SETFL checks exactly what open(O_DIRECT) checks; probing with open
 * would leave the file created behind an EINVAL on filesystems without
 * O_DIRECT (tmpfs before Linux 6.6), making the O_EXCL retry fail. */
static void file_probe(struct swap_file *f, uint32_t *mem_align)
{
	uint32_t dio_offset = 0, dio_mem = 0;
	int fl = fcntl(f->fd, F_GETFL);
	f->direct = fl >= 0 && fcntl(f->fd, F_SETFL, fl | O_DIRECT) == 0;
#ifdef STATX_DIOALIGN
	struct statx stx;
	if (f->direct && statx(f->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		dio_offset = stx.stx_dio_offset_align;
		dio_mem = stx.stx_dio_mem_align;
	}
#endif
	struct stat st;
	if (f->direct && !dio_offset && fstat(f->fd, &st) == 0 && st.st_blksize > 0)
		dio_offset = st.st_blksize;
	if (f->direct && !dio_offset)
		dio_offset = SWAPFILE_MAX_UNIT;         /* unknown: the safe guess */

	/* Alignments above our largest unit cannot be met: go buffered. */
	if (f->direct && (dio_offset > SWAPFILE_MAX_UNIT || dio_mem > SWAPFILE_MAX_UNIT)) {
		fcntl(f->fd, F_SETFL, fl);
		f->direct = false;
	}
	if (!f->direct)
		dio_offset = dio_mem = 0;

	f->unit = pow2_at_least(dio_offset);
	f->shift = __builtin_ctz(f->unit);
	*mem_align = dio_mem > f->unit ? pow2_at_least(dio_mem) : f->unit;
}

/* Returns the fd or -errno.  A kept file may exist already; *created tells
 * a failure whether removing it is ours to do. */
static int open_file(const char *path, bool kept, bool *created)
{
	for (;;) {
		int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		*created = fd >= 0;
		if (fd >= 0 || errno != EEXIST || !kept)
			return fd >= 0 ? fd : -errno;
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			return fd >= 0 ? fd : -errno;
		/* unlinked in between: create it after all */
	}
}

/* A memsrv killed a moment ago still holds its files until the kernel has
 * finished its io_uring's writes, which may take a while; waiting for the
 * lock is also what keeps those late writes off slots handed out anew. */
static int lock_kept(int fd)
{
	for (int waited_ms = 0;; waited_ms += 10) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK || waited_ms >= KEPT_LOCK_WAIT_MS)
			return -1;
		usleep(10000);
	}
}

/* Everything but publishing: done outside the lock, it may block on I/O.
 * *created is set whenever an fd was opened, for file_discard(). */
/* A kept file (--state-dir): locked against another memsrv, and its size
 * from an earlier one in *old_size.  0 or -errno, why filled. */
static int lock_and_size(struct swap_file *f, const char *path, bool *created, uint64_t *old_size, char *why,
			 size_t whylen)
{
	struct stat st;
	int ret;
	if (lock_kept(f->fd)) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (ret == -EBUSY) {
			*created = false;       /* its holder may be using it */
			say(why, whylen, "swap file %s is in use by another memsrv", path);
		} else {
			say(why, whylen, "cannot lock swap file %s: %s", path, strerror(-ret));
		}
		return ret;
	}
	if (fstat(f->fd, &st)) {
		ret = -errno;
		say(why, whylen, "cannot stat swap file %s: %s", path, strerror(-ret));
		return ret;
	}
	*old_size = st.st_size;
	return 0;
}

/* The file's units of f->unit bytes in size bytes: at least one, and no
 * more than a location can name.  0 or -errno, why filled. */
static int count_units(struct swap_file *f, const char *path, uint64_t size, char *why, size_t whylen)
{
	f->units = size >> f->shift;
	if (f->units == 0) {
		say(why, whylen, "swap file %s: size %" PRIu64 " is less than one unit of %u bytes", path, size,
		    f->unit);
		return -EINVAL;
	}
	if (f->units > LOC_FIRST_MASK) {
		say(why, whylen, "swap file %s: size %" PRIu64 " exceeds %" PRIu64 " units", path, size,
		    (uint64_t)LOC_FIRST_MASK);
		return -EFBIG;
	}
	return 0;
}

static int file_open(struct swap_file *f, const char *path, uint64_t size, bool kept,
		     bool *created, uint32_t *mem_align, char *why, size_t whylen)
{
	int ret;
	if (size > INT64_MAX) {
		say(why, whylen, "swap file %s: size %" PRIu64 " is too large", path, size);
		return -EFBIG;
	}
	f->kept = kept;
	f->fd = open_file(path, kept, created);
	if (f->fd < 0) {
		ret = f->fd;
		say(why, whylen, "cannot %s swap file %s: %s", kept ? "open" : "create", path,
		    strerror(-ret));
		return ret;
	}
	uint64_t old_size = 0;
	if (kept && (ret = lock_and_size(f, path, created, &old_size, why, whylen)))
		goto fail;
	f->path = strdup(path);
	if (!f->path) {
		ret = -ENOMEM;
		say(why, whylen, "swap file %s: out of memory", path);
		goto fail;
	}
	file_probe(f, mem_align);

	if ((ret = count_units(f, path, size, why, whylen)))
		goto fail;
	/* Whole units only, so a restart asking for the same size finds it. */
	uint64_t file_size = kept ? f->units << f->shift : size;
	if (old_size && old_size != file_size) {
		ret = -EINVAL;
		say(why, whylen, "swap file %s holds %" PRIu64 " bytes from an earlier memsrv; "
		    "give it the same size (not %" PRIu64 ")", path, old_size, file_size);
		goto fail;
	}
	/* Large maps come from mmap inside calloc: pages stay untouched until used. */
	f->map = calloc((f->units + 63) / 64, sizeof(uint64_t));
	if (!f->map) {
		ret = -ENOMEM;
		say(why, whylen, "swap file %s: no memory for a bitmap of %" PRIu64 " units",
		    path, f->units);
		goto fail;
	}
	/* Last, so a failure before it leaves an existing file as it was. */
	if (old_size != file_size && ftruncate(f->fd, file_size)) {
		ret = -errno;
		say(why, whylen, "cannot size swap file %s to %" PRIu64 " bytes: %s",
		    path, file_size, strerror(-ret));
		goto fail;
	}
	f->free_units = f->units;
	f->cursor = 0;
	return 0;
fail:
	file_discard(f, path, *created);
	return ret;
}

static int add_file(struct swapfile *s, const char *path, uint64_t size, bool kept,
		    char *why, size_t whylen)
{
	if (__atomic_load_n(&s->nfiles, __ATOMIC_ACQUIRE) >= SWAPFILE_MAX_FILES) {
		say(why, whylen, "cannot add swap file %s: at most %u swap files",
		    path, SWAPFILE_MAX_FILES);
		return -EMFILE;
	}
	struct swap_file f = { .fd = -1 };
	uint32_t mem_align = 0;
	bool created = false;
	int ret = file_open(&f, path, size, kept, &created, &mem_align, why, whylen);
	if (ret)
		return ret;

	pthread_mutex_lock(&s->lock);
	unsigned n = s->nfiles;
	if (n >= SWAPFILE_MAX_FILES) {  /* lost a race with another add */
		pthread_mutex_unlock(&s->lock);
		file_discard(&f, path, created);
		say(why, whylen, "cannot add swap file %s: at most %u swap files",
		    path, SWAPFILE_MAX_FILES);
		return -EMFILE;
	}
	s->files[n] = f;
	if (mem_align > s->align)
		__atomic_store_n(&s->align, mem_align, __ATOMIC_RELEASE);
	__atomic_store_n(&s->nfiles, n + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int swapfile_add(struct swapfile *s, const char *path, uint64_t size,
		 char *why, size_t whylen)
{
	return add_file(s, path, size, false, why, whylen);
}

int swapfile_add_kept(struct swapfile *s, const char *path, uint64_t size,
		      char *why, size_t whylen)
{
	return add_file(s, path, size, true, why, whylen);
}

void swapfile_describe(const struct swapfile *s, unsigned i, char *out, size_t len)
{
	const struct swap_file *f = &s->files[i];
	snprintf(out, len, "%s unit %u units %" PRIu64 "\n", f->path, f->unit, f->units);
}

void swapfile_remove_kept(struct swapfile *s)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->nfiles; i++)
		if (s->files[i].kept)
			unlink(s->files[i].path);
	pthread_mutex_unlock(&s->lock);
}

int swapfile_add_in_dir(struct swapfile *s, const char *dir, uint64_t size,
			char *why, size_t whylen)
{
	/* Process-wide, so two swap spaces in one process never collide. */
	static unsigned seq;
	char path[PATH_MAX];
	int ret = -EEXIST;

	/* A crashed earlier memsrv with our pid may have left files: skip them. */
	for (int tries = 0; tries < 64 && ret == -EEXIST; tries++) {
		unsigned n = __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED);
		int len = snprintf(path, sizeof(path), "%s/memsrv-swap-%d-%u", dir, (int)getpid(), n);
		if (len < 0 || (size_t)len >= sizeof(path)) {
			say(why, whylen, "swap directory %s: path too long", dir);
			return -ENAMETOOLONG;
		}
		ret = swapfile_add(s, path, size, why, whylen);
	}
	return ret;
}

static inline uint64_t low_bits(unsigned n)
{
	return (1ull << n) - 1;         /* n < 64 */
}

/* First run of need clear bits lying wholly in [from, to), or NO_RUN.
 * Full words are skipped with one compare. */
static uint64_t find_run(const uint64_t *map, uint64_t from, uint64_t to, uint32_t need)
{
	if (to <= from || to - from < need)
		return NO_RUN;
	uint64_t first = from / 64, last = (to - 1) / 64;
	uint64_t run = 0, start = 0;

	for (uint64_t i = first; i <= last; i++) {
		uint64_t w = map[i];
		if (i == first)
			w |= low_bits(from % 64);
		if (i == last && to % 64)
			w |= ~low_bits(to % 64);
		if (w == ~0ull) {
			run = 0;
			continue;
		}
		unsigned pos = 0;
		while (pos < 64) {
			uint64_t rest = w >> pos;
			if (rest == 0) {        /* clear to the end of the word */
				if (!run)
					start = i * 64 + pos;
				run += 64 - pos;
				break;
			}
			unsigned clear = __builtin_ctzll(rest);
			if (clear) {
				if (!run)
					start = i * 64 + pos;
				run += clear;
				if (run >= need)
					return start;
			}
			run = 0;
			pos += clear;
			pos += __builtin_ctzll(~(w >> pos));    /* the set bits */
		}
		if (run >= need)
			return start;
	}
	return NO_RUN;
}

static void set_bits(uint64_t *map, uint64_t at, uint32_t n, bool on)
{
	while (n) {
		unsigned bit = at % 64;
		unsigned k = 64 - bit < n ? 64 - bit : n;
		uint64_t mask = (k == 64 ? ~0ull : low_bits(k)) << bit;
		if (on)
			map[at / 64] |= mask;
		else
			map[at / 64] &= ~mask;
		at += k;
		n -= k;
	}
}

/* Whether the n bits from at are all on (or all off). */
static bool all_bits(const uint64_t *map, uint64_t at, uint32_t n, bool on)
{
	for (uint32_t i = 0; i < n; i++, at++)
		if ((map[at / 64] >> (at % 64) & 1) != on)
			return false;
	return true;
}

/* Next fit from the cursor to the end, then once from the start up to
 * where a run crossing the cursor would end. */
static uint64_t file_take(struct swap_file *f, uint32_t need)
{
	uint64_t at = find_run(f->map, f->cursor, f->units, need);
	if (at == NO_RUN) {
		uint64_t to = f->cursor + need - 1;
		at = find_run(f->map, 0, to < f->units ? to : f->units, need);
		if (at == NO_RUN)
			return NO_RUN;
	}
	set_bits(f->map, at, need, true);
	f->free_units -= need;
	f->cursor = at + need == f->units ? 0 : at + need;
	return at;
}

int swapfile_alloc(struct swapfile *s, uint32_t bytes, swap_loc *out)
{
	if (bytes == 0)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	unsigned n = s->nfiles;
	int ret = -ENOSPC;
	if (n && bytes > MAX_OBJECT_BASE + s->align)
		ret = -EINVAL;
	for (unsigned k = 0; k < n && ret == -ENOSPC; k++) {
		unsigned idx = (s->next_file + k) % n;
		struct swap_file *f = &s->files[idx];
		uint32_t need = (bytes + f->unit - 1) >> f->shift;
		if (f->free_units < need)
			continue;
		uint64_t at = file_take(f, need);
		if (at == NO_RUN)
			continue;
		s->next_file = (idx + 1) % n;
		s->objects++;
		*out = (swap_loc)idx << LOC_FILE_SHIFT | at << LOC_UNITS_BITS | need;
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* Whether loc names one of s's files and a run of units that lies in it;
 * under s->lock. */
static bool loc_valid(const struct swapfile *s, swap_loc loc)
{
	unsigned idx = swap_loc_file(loc);
	uint32_t units = swap_loc_units(loc);
	return idx < s->nfiles && units && swap_loc_first(loc) + units <= s->files[idx].units;
}

int swapfile_claim(struct swapfile *s, swap_loc loc)
{
	unsigned idx = swap_loc_file(loc);
	uint64_t at = swap_loc_first(loc);
	uint32_t units = swap_loc_units(loc);
	pthread_mutex_lock(&s->lock);
	struct swap_file *f = &s->files[idx];
	/* outside the files, or taken twice: the records do not fit them */
	int ret = loc_valid(s, loc) && all_bits(f->map, at, units, false) ? 0 : -EINVAL;
	if (!ret) {
		set_bits(f->map, at, units, true);
		f->free_units -= units;
		s->objects++;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void swapfile_free(struct swapfile *s, swap_loc loc)
{
	unsigned idx = swap_loc_file(loc);
	uint64_t at = swap_loc_first(loc);
	uint32_t units = swap_loc_units(loc);

	pthread_mutex_lock(&s->lock);
	struct swap_file *f = &s->files[idx];
	/* A bad or double free would corrupt the counts: refuse it. */
	bool ok = loc_valid(s, loc) && all_bits(f->map, at, units, true);
	assert(ok);
	if (ok) {
		set_bits(f->map, at, units, false);
		f->free_units += units;
		s->objects--;
	}
	pthread_mutex_unlock(&s->lock);
}

void swapfile_io(const struct swapfile *s, swap_loc loc, struct swap_io *io)
{
	unsigned idx = swap_loc_file(loc);
	assert(loc && idx < __atomic_load_n(&s->nfiles, __ATOMIC_ACQUIRE));
	const struct swap_file *f = &s->files[idx];
	io->fd = f->fd;
	io->offset = swap_loc_first(loc) << f->shift;
	io->len = swap_loc_units(loc) << f->shift;
	io->direct = f->direct;
}

uint32_t swapfile_unit(const struct swapfile *s)
{
	return __atomic_load_n(&s->align, __ATOMIC_ACQUIRE);
}

unsigned swapfile_count(const struct swapfile *s)
{
	return __atomic_load_n(&s->nfiles, __ATOMIC_ACQUIRE);
}

void swapfile_get_stats(struct swapfile *s, struct swapfile_stats *st)
{
	*st = (struct swapfile_stats){ 0 };
	pthread_mutex_lock(&s->lock);
	st->files = s->nfiles;
	for (unsigned i = 0; i < s->nfiles; i++) {
		const struct swap_file *f = &s->files[i];
		st->size_bytes += f->units << f->shift;
		st->free_bytes += f->free_units << f->shift;
	}
	st->used_bytes = st->size_bytes - st->free_bytes;
	st->objects = s->objects;
	pthread_mutex_unlock(&s->lock);
}
