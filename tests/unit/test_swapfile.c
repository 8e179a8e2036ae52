/* Description: swapfile creates sparse swap files, packs objects into
 * contiguous units without overlap (also under two threads), serves real
 * I/O on ext4, tmpfs and ramfs, and shows that a sparse file on a full
 * device fails writes with ENOSPC although the allocator has room.  Kept
 * files survive destroy with their bytes, refuse a second holder or another
 * size, and go with swapfile_remove_kept(). */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "swapfile.h"

/* Per test process (Criterion forks): fini cleans up even after a failed assert. */
static struct swapfile *sw;
static char dir[256];
static bool mounted;

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

static void cleanup(void)
{
	swapfile_destroy(sw);
	sw = NULL;
	if (mounted && umount(dir))
		umount2(dir, MNT_DETACH);
	mounted = false;
	if (dir[0])
		rm_dir(dir);
	dir[0] = 0;
}

/* A fresh swap space and an empty scratch directory under base. */
static void setup_in(const char *base)
{
	snprintf(dir, sizeof(dir), "%s/swapfile-test-XXXXXX", base);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp under %s: %s", base, strerror(errno));
	sw = swapfile_create();
	cr_assert_not_null(sw);
}

static const char *path_in(const char *name)
{
	static char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

static void add(const char *name, uint64_t size)
{
	char why[256] = "";
	int ret = swapfile_add(sw, path_in(name), size, why, sizeof(why));
	cr_assert_eq(ret, 0, "swapfile_add %s: %d (%s)", name, ret, why);
}

static struct swapfile_stats stats(void)
{
	struct swapfile_stats st;
	swapfile_get_stats(sw, &st);
	return st;
}

static uint64_t first_unit(swap_loc loc)
{
	struct swap_io io;
	swapfile_io(sw, loc, &io);
	return io.offset / swapfile_unit(sw);
}

static void check_loc(swap_loc loc, uint32_t bytes, uint64_t file_size)
{
	uint32_t u = swapfile_unit(sw);
	struct swap_io io;
	cr_assert_neq(loc, 0);
	swapfile_io(sw, loc, &io);
	cr_assert_eq(io.offset % u, 0, "offset %llu not aligned", (unsigned long long)io.offset);
	cr_assert_eq(io.len, (bytes + u - 1) / u * u, "len %u for %u bytes", io.len, bytes);
	cr_assert_eq(io.len, swap_loc_units(loc) * u);
	cr_assert_leq(io.offset + io.len, file_size);
	cr_assert_geq(io.fd, 0);
}

TestSuite(swapfile, .fini = cleanup, .timeout = 60);

Test(swapfile, alloc_free_roundtrip)
{
	setup_in("/var/tmp");
	swap_loc loc = 0;
	cr_assert_eq(swapfile_alloc(sw, 100, &loc), -ENOSPC, "no files yet");
	add("a", 1 << 20);
	cr_assert_eq(swapfile_count(sw), 1);
	uint32_t u = swapfile_unit(sw);
	cr_assert(u >= 512 && u <= 4096 && (u & (u - 1)) == 0, "unit %u", u);

	cr_assert_eq(swapfile_alloc(sw, 100, &loc), 0);
	check_loc(loc, 100, 1 << 20);
	struct swapfile_stats st = stats();
	cr_assert_eq(st.objects, 1);
	cr_assert_eq(st.used_bytes, u);
	cr_assert_eq(st.size_bytes, 1 << 20);
	swapfile_free(sw, loc);
	st = stats();
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.used_bytes, 0);
	cr_assert_eq(st.free_bytes, 1 << 20);

	loc = 0;
	cr_assert_eq(swapfile_alloc(sw, 0, &loc), -EINVAL);
	cr_assert_eq(swapfile_alloc(sw, 4096 + u + 1, &loc), -EINVAL);
	cr_assert_eq(loc, 0, "loc written on failure");
	cr_assert_eq(swapfile_alloc(sw, 4096 + u, &loc), 0);
	check_loc(loc, 4096 + u, 1 << 20);
	swapfile_free(sw, loc);
}

/* The unit is what the kernel says direct I/O on this file needs. */
Test(swapfile, unit_is_the_dio_alignment)
{
	setup_in("/var/tmp");
	add("a", 1 << 20);
	struct statx stx;
	cr_assert_eq(statx(AT_FDCWD, path_in("a"), 0, STATX_DIOALIGN, &stx), 0);
	if (!(stx.stx_mask & STATX_DIOALIGN) || !stx.stx_dio_offset_align)
		cr_skip_test("/var/tmp reports no direct-I/O alignment");
	uint32_t want = stx.stx_dio_offset_align < 512 ? 512 : stx.stx_dio_offset_align;
	cr_assert_eq(swapfile_unit(sw), want);
}

Test(swapfile, packs_small_objects)
{
	setup_in("/var/tmp");
	add("a", 1 << 20);
	uint32_t u = swapfile_unit(sw);
	/* With the 512-byte unit of ext4 on a 512-sector disk: 8 units each. */
	uint32_t per500 = (500 + u - 1) / u, per4096 = 4096 / u;
	swap_loc l[8];
	struct swap_io io[8];
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(swapfile_alloc(sw, 500, &l[i]), 0);
		check_loc(l[i], 500, 1 << 20);
		cr_assert_eq(swap_loc_units(l[i]), per500);
		swapfile_io(sw, l[i], &io[i]);
	}
	struct swapfile_stats st = stats();
	cr_assert_eq(st.used_bytes, 8ull * per500 * u);
	if (u == 512)
		cr_assert_eq(st.used_bytes, 8 * 512);
	cr_assert_eq(st.objects, 8);
	for (int i = 0; i < 8; i++)
		for (int j = i + 1; j < 8; j++) {
			cr_assert_neq(l[i], l[j]);
			cr_assert(io[i].offset + io[i].len <= io[j].offset ||
				  io[j].offset + io[j].len <= io[i].offset,
				  "objects %d and %d overlap", i, j);
		}

	swap_loc big;
	cr_assert_eq(swapfile_alloc(sw, 4096, &big), 0);
	cr_assert_eq(swap_loc_units(big), per4096);
	if (u == 512)
		cr_assert_eq(swap_loc_units(big), 8);
	cr_assert_eq(stats().used_bytes, (8ull * per500 + per4096) * u);
}

Test(swapfile, fill_fragment_and_empty)
{
	enum { SIZE = 64 * 1024 };
	setup_in("/var/tmp");
	add("a", SIZE);
	uint32_t u = swapfile_unit(sw);
	uint64_t n = SIZE / u;
	swap_loc *by_unit = calloc(n, sizeof(*by_unit));
	cr_assert_not_null(by_unit);

	uint64_t got = 0;
	swap_loc loc;
	while (swapfile_alloc(sw, u, &loc) == 0) {
		check_loc(loc, u, SIZE);
		uint64_t fu = first_unit(loc);
		cr_assert_eq(by_unit[fu], 0, "unit %llu handed out twice", (unsigned long long)fu);
		by_unit[fu] = loc;
		cr_assert_leq(++got, n);
	}
	cr_assert_eq(got, n, "filled %llu of %llu units", (unsigned long long)got, (unsigned long long)n);
	cr_assert_eq(swapfile_alloc(sw, 1, &loc), -ENOSPC);
	cr_assert_eq(stats().free_bytes, 0);

	/* Free every even unit: half the space, but no two units adjacent. */
	for (uint64_t i = 0; i < n; i += 2) {
		swapfile_free(sw, by_unit[i]);
		by_unit[i] = 0;
	}
	cr_assert_eq(stats().free_bytes, SIZE / 2);
	cr_assert_eq(swapfile_alloc(sw, 2 * u, &loc), -ENOSPC, "two units fit without contiguous room");
	cr_assert_eq(swapfile_alloc(sw, u + 1, &loc), -ENOSPC);
	cr_assert_eq(swapfile_alloc(sw, u, &loc), 0);
	cr_assert_eq(first_unit(loc) % 2, 0);
	swapfile_free(sw, loc);

	/* Freeing unit 5 opens 4..6: now exactly there. */
	swapfile_free(sw, by_unit[5]);
	by_unit[5] = 0;
	cr_assert_eq(swapfile_alloc(sw, 2 * u, &loc), 0);
	cr_assert(first_unit(loc) == 4 || first_unit(loc) == 5, "run at unit %llu",
		  (unsigned long long)first_unit(loc));
	cr_assert_eq(swap_loc_units(loc), 2);
	swapfile_free(sw, loc);
	swap_loc three;
	cr_assert_eq(swapfile_alloc(sw, 3 * u, &three), 0);
	cr_assert_eq(first_unit(three), 4);
	cr_assert_eq(swapfile_alloc(sw, 2 * u, &loc), -ENOSPC);

	for (uint64_t i = 0; i < n; i++)
		if (by_unit[i])
			swapfile_free(sw, by_unit[i]);
	swapfile_free(sw, three);
	struct swapfile_stats st = stats();
	cr_assert_eq(st.free_bytes, SIZE);
	cr_assert_eq(st.used_bytes, 0);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(swapfile_alloc(sw, 4096 + u, &loc), 0, "empty file takes the largest object");
	free(by_unit);
}

Test(swapfile, two_files_round_robin_skip_full)
{
	setup_in("/var/tmp");
	add("small", 32 * 1024);
	add("big", 256 * 1024);
	cr_assert_eq(swapfile_count(sw), 2);
	uint32_t u = swapfile_unit(sw);
	uint64_t small_units = 32 * 1024 / u;
	swap_loc loc;
	uint64_t per_file[2] = { 0, 0 };

	/* While both have room, allocations alternate. */
	for (uint64_t i = 0; i < 2 * small_units; i++) {
		cr_assert_eq(swapfile_alloc(sw, u, &loc), 0);
		cr_assert_eq(swap_loc_file(loc), i % 2, "alloc %llu in file %u",
			     (unsigned long long)i, swap_loc_file(loc));
		per_file[swap_loc_file(loc)]++;
	}
	cr_assert_eq(per_file[0], small_units);
	cr_assert_eq(per_file[1], small_units);

	/* The small file is full: everything goes to the big one. */
	int fd_big = -1;
	for (uint64_t i = 0; i < small_units; i++) {
		cr_assert_eq(swapfile_alloc(sw, u, &loc), 0);
		cr_assert_eq(swap_loc_file(loc), 1);
		struct swap_io io;
		swapfile_io(sw, loc, &io);
		if (fd_big < 0)
			fd_big = io.fd;
		cr_assert_eq(io.fd, fd_big);
	}
	struct swapfile_stats st = stats();
	cr_assert_eq(st.files, 2);
	cr_assert_eq(st.size_bytes, 288 * 1024);
	cr_assert_eq(st.used_bytes, 3 * small_units * u);
}

/* Deterministic bytes from a seed. */
static void fill(unsigned char *b, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = x >> 24;
	}
}

/* Writes distinct patterns through swapfile_io and reads them back. */
static void io_roundtrip(int expect_direct)
{
	enum { N = 96, SIZE = 1 << 20 };
	add("io", SIZE);
	uint32_t u = swapfile_unit(sw);
	unsigned char *wbuf = aligned_alloc(u, 8192 + u), *rbuf = aligned_alloc(u, 8192 + u);
	cr_assert(wbuf && rbuf);
	swap_loc l[N];
	for (int i = 0; i < N; i++) {
		uint32_t bytes = 1 + (i * 997u) % (4096 + u);
		cr_assert_eq(swapfile_alloc(sw, bytes, &l[i]), 0);
		struct swap_io io;
		swapfile_io(sw, l[i], &io);
		if (expect_direct >= 0)
			cr_assert_eq(io.direct, expect_direct, "direct %d", io.direct);
		fill(wbuf, io.len, i);
		ssize_t n = pwrite(io.fd, wbuf, io.len, io.offset);
		cr_assert_eq(n, (ssize_t)io.len, "pwrite %u at %llu: %zd %s", io.len,
			     (unsigned long long)io.offset, n, strerror(errno));
	}
	for (int i = 0; i < N; i++) {
		struct swap_io io;
		swapfile_io(sw, l[i], &io);
		ssize_t n = pread(io.fd, rbuf, io.len, io.offset);
		cr_assert_eq(n, (ssize_t)io.len, "pread: %zd %s", n, strerror(errno));
		fill(wbuf, io.len, i);
		cr_assert(memcmp(rbuf, wbuf, io.len) == 0, "object %d reads back wrong", i);
	}
	free(wbuf);
	free(rbuf);
}

Test(swapfile, real_io_ext4_direct)
{
	setup_in("/var/tmp");
	io_roundtrip(1);
}

Test(swapfile, real_io_shm)
{
	setup_in("/dev/shm");
	io_roundtrip(-1);       /* tmpfs takes O_DIRECT only since Linux 6.6 */
}

/* ramfs never takes O_DIRECT: the buffered fallback with a 512-byte unit. */
Test(swapfile, real_io_ramfs_buffered)
{
	setup_in("/tmp");
	if (mount("none", dir, "ramfs", 0, NULL))
		cr_skip_test("cannot mount ramfs (%s): needs root", strerror(errno));
	mounted = true;
	io_roundtrip(0);
	cr_assert_eq(swapfile_unit(sw), 512);
}

Test(swapfile, sparse_file_on_full_device_fails_writes)
{
	enum { SIZE = 1 << 20 };
	setup_in("/tmp");
	if (mount("none", dir, "tmpfs", 0, "size=64k"))
		cr_skip_test("cannot mount a 64 KiB tmpfs (%s): needs root", strerror(errno));
	mounted = true;
	add("swap", SIZE);      /* sparse: 1 MiB on a 64 KiB filesystem */
	uint32_t u = swapfile_unit(sw);
	unsigned char *buf = aligned_alloc(u, 4096 + u);
	cr_assert_not_null(buf);

	uint64_t written = 0;
	int err = 0;
	swap_loc loc;
	while (swapfile_alloc(sw, 4096, &loc) == 0) {
		struct swap_io io;
		swapfile_io(sw, loc, &io);
		fill(buf, io.len, loc);
		ssize_t n = pwrite(io.fd, buf, io.len, io.offset);
		if (n < 0) {
			err = errno;
			break;
		}
		written += n;   /* a short write: the next one fails */
	}
	cr_assert_eq(err, ENOSPC, "writes stopped with %s after %llu bytes", strerror(err),
		     (unsigned long long)written);
	cr_assert_lt(written, SIZE);
	cr_assert_gt(stats().free_bytes, 0, "the allocator still had room");
	free(buf);
}

Test(swapfile, existing_path_and_destroy_unlinks)
{
	setup_in("/var/tmp");
	int fd = open(path_in("taken"), O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	char why[256] = "";
	cr_assert_eq(swapfile_add(sw, path_in("taken"), 1 << 20, why, sizeof(why)), -EEXIST);
	cr_assert_neq(why[0], 0, "no reason given");
	cr_assert_eq(swapfile_add(sw, path_in("tiny"), 100, why, sizeof(why)), -EINVAL);
	cr_assert_neq(access(path_in("tiny"), F_OK), 0, "a failed add left its file");
	cr_assert_eq(swapfile_count(sw), 0);

	add("mine", 1 << 20);
	cr_assert_eq(swapfile_add_in_dir(sw, dir, 1 << 20, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(swapfile_count(sw), 2);
	char named[64];
	snprintf(named, sizeof(named), "memsrv-swap-%d-", (int)getpid());
	char found[512] = "";
	DIR *dp = opendir(dir);
	struct dirent *de;
	while ((de = readdir(dp)))
		if (!strncmp(de->d_name, named, strlen(named)))
			snprintf(found, sizeof(found), "%s", path_in(de->d_name));
	closedir(dp);
	cr_assert_neq(found[0], 0, "no %s* in %s", named, dir);
	struct stat st;
	cr_assert_eq(stat(found, &st), 0);
	cr_assert_eq(st.st_size, 1 << 20);
	cr_assert_lt(st.st_blocks * 512, 1 << 20, "not sparse");

	swapfile_destroy(sw);
	sw = NULL;
	cr_assert_neq(access(path_in("mine"), F_OK), 0);
	cr_assert_eq(errno, ENOENT);
	cr_assert_neq(access(found, F_OK), 0);
	cr_assert_eq(access(path_in("taken"), F_OK), 0, "destroy unlinked a file it did not create");
}

Test(swapfile, at_most_255_files)
{
	setup_in("/dev/shm");
	char why[256] = "";
	for (int i = 0; i < SWAPFILE_MAX_FILES; i++)
		cr_assert_eq(swapfile_add_in_dir(sw, dir, 4096, why, sizeof(why)), 0, "file %d: %s", i, why);
	cr_assert_eq(swapfile_add_in_dir(sw, dir, 4096, why, sizeof(why)), -EMFILE);
	cr_assert_eq(swapfile_count(sw), SWAPFILE_MAX_FILES);
	swap_loc loc = 0;
	for (int i = 0; i < SWAPFILE_MAX_FILES; i++)
		cr_assert_eq(swapfile_alloc(sw, 1, &loc), 0);
	cr_assert_eq(swap_loc_file(loc), SWAPFILE_MAX_FILES - 1);
	struct swap_io io;
	swapfile_io(sw, loc, &io);
	cr_assert_eq(pwrite(io.fd, aligned_alloc(4096, 4096), io.len, io.offset), (ssize_t)io.len);
}

/* Two threads allocate and free at random; every unit of every live object
 * is claimed in a shadow array, so any overlap fails the claim. */
enum { STRESS_OPS = 100000, STRESS_LIVE = 128, STRESS_FILES = 2 };

static uint32_t *owner[STRESS_FILES];
static uint64_t overlaps, enospc, bad_locs;

struct stress_arg {
	uint32_t id;
	uint64_t seed;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void claim(swap_loc loc, uint32_t from, uint32_t to)
{
	uint32_t *o = owner[swap_loc_file(loc)];
	uint64_t at = first_unit(loc);
	for (uint32_t i = 0; i < swap_loc_units(loc); i++) {
		uint32_t expect = from;
		if (!__atomic_compare_exchange_n(&o[at + i], &expect, to, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			__atomic_fetch_add(&overlaps, 1, __ATOMIC_RELAXED);
	}
}

static void *stress_thread(void *p)
{
	struct stress_arg *a = p;
	swap_loc live[STRESS_LIVE] = { 0 };
	uint32_t max = 4096 + swapfile_unit(sw);

	for (int op = 0; op < STRESS_OPS; op++) {
		swap_loc *l = &live[xorshift(&a->seed) % STRESS_LIVE];
		if (*l) {
			claim(*l, a->id, 0);    /* before free: the units may be reused at once */
			swapfile_free(sw, *l);
			*l = 0;
			continue;
		}
		uint32_t bytes = 1 + xorshift(&a->seed) % max;
		int ret = swapfile_alloc(sw, bytes, l);
		if (ret == -ENOSPC) {
			__atomic_fetch_add(&enospc, 1, __ATOMIC_RELAXED);
			*l = 0;
			continue;
		}
		if (ret || swap_loc_file(*l) >= STRESS_FILES ||
		    swap_loc_units(*l) != (bytes + 511) / 512) {
			__atomic_fetch_add(&bad_locs, 1, __ATOMIC_RELAXED);
			*l = 0;
			continue;
		}
		claim(*l, 0, a->id);
	}
	for (int i = 0; i < STRESS_LIVE; i++)
		if (live[i]) {
			claim(live[i], a->id, 0);
			swapfile_free(sw, live[i]);
		}
	return NULL;
}

Test(swapfile, threaded_stress_no_overlap)
{
	/* small enough that the live objects (about 640 units) cannot all fit: ENOSPC is certain */
	static const uint64_t sizes[STRESS_FILES] = { 64 * 1024, 32 * 1024 };
	setup_in("/var/tmp");
	add("s0", sizes[0]);
	add("s1", sizes[1]);
	if (swapfile_unit(sw) != 512)
		cr_skip_test("the stress expects 512-byte units, /var/tmp has %u", swapfile_unit(sw));
	for (int f = 0; f < STRESS_FILES; f++) {
		owner[f] = calloc(sizes[f] / 512, sizeof(uint32_t));
		cr_assert_not_null(owner[f]);
	}
	pthread_t t[2];
	struct stress_arg args[2] = { { 1, 0x9e3779b97f4a7c15ull }, { 2, 0xd1b54a32d192ed03ull } };
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, stress_thread, &args[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);

	cr_assert_eq(overlaps, 0, "%llu units claimed twice", (unsigned long long)overlaps);
	cr_assert_eq(bad_locs, 0);
	cr_assert_gt(enospc, 0, "the stress never filled the files");
	struct swapfile_stats st = stats();
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.used_bytes, 0);
	cr_assert_eq(st.free_bytes, sizes[0] + sizes[1]);
	for (int f = 0; f < STRESS_FILES; f++)
		free(owner[f]);
}

Test(swapfile, a_claimed_loc_is_taken_once_and_never_handed_out)
{
	setup_in("/var/tmp");
	add("claim", 1 << 20);
	swap_loc loc = 0, other = 0;
	cr_assert_eq(swapfile_alloc(sw, 3000, &loc), 0);
	swapfile_free(sw, loc);
	/* restart: the records say loc is in use */
	cr_assert_eq(swapfile_claim(sw, loc), 0);
	cr_assert_eq(swapfile_claim(sw, loc), -EINVAL, "claimed twice");
	cr_assert_eq(stats().objects, 1);
	for (int i = 0; i < 64; i++) {
		cr_assert_eq(swapfile_alloc(sw, 3000, &other), 0);
		uint64_t a = swap_loc_first(loc), b = swap_loc_first(other);
		cr_assert(b + swap_loc_units(other) <= a || a + swap_loc_units(loc) <= b, "a claimed unit was handed out");
	}
	cr_assert_eq(swapfile_claim(sw, (swap_loc)200 << 56 | 1), -EINVAL, "no such file");
	cr_assert_eq(swapfile_claim(sw, loc & ~(swap_loc)0xfff), -EINVAL, "no units");
	swap_loc last = ((1 << 20) / swapfile_unit(sw) - 1) << 12;
	cr_assert_eq(swapfile_claim(sw, last | 2), -EINVAL, "past the end of the file");
	cr_assert_eq(swapfile_claim(sw, last | 1), 0, "the file's last unit");
}

static void add_kept(const char *name, uint64_t size)
{
	char why[256] = "";
	int ret = swapfile_add_kept(sw, path_in(name), size, why, sizeof(why));
	cr_assert_eq(ret, 0, "swapfile_add_kept %s: %d (%s)", name, ret, why);
}

static off_t file_size(const char *name)
{
	struct stat st;
	cr_assert_eq(stat(path_in(name), &st), 0, "stat %s: %s", name, strerror(errno));
	return st.st_size;
}

/* Writes a pattern of seed over loc's units, or checks it is there. */
static void pattern_at(swap_loc loc, uint32_t seed, bool check)
{
	struct swap_io io;
	swapfile_io(sw, loc, &io);
	uint32_t u = swapfile_unit(sw);
	unsigned char *want = aligned_alloc(u, io.len), *got = aligned_alloc(u, io.len);
	cr_assert(want && got);
	fill(want, io.len, seed);
	ssize_t n = check ? pread(io.fd, got, io.len, io.offset) : pwrite(io.fd, want, io.len, io.offset);
	cr_assert_eq(n, (ssize_t)io.len, "%s: %zd %s", check ? "pread" : "pwrite", n, strerror(errno));
	if (check)
		cr_assert(memcmp(got, want, io.len) == 0, "the pattern did not survive");
	free(want);
	free(got);
}

/* A restart: the same path and size give back the bytes of a claimed loc,
 * and the allocator never hands its units out again. */
Test(swapfile, a_kept_file_survives_destroy_with_its_bytes)
{
	enum { SIZE = (1 << 20) + 100 };        /* not whole units: the file gets 1 MiB */
	setup_in("/var/tmp");
	add_kept("kept", SIZE);
	cr_assert_eq(file_size("kept"), 1 << 20);
	swap_loc loc;
	cr_assert_eq(swapfile_alloc(sw, 3000, &loc), 0);
	pattern_at(loc, 7, false);
	swapfile_destroy(sw);
	sw = NULL;
	cr_assert_eq(file_size("kept"), 1 << 20, "destroy removed or resized a kept file");

	sw = swapfile_create();
	cr_assert_not_null(sw);
	add_kept("kept", SIZE);
	cr_assert_eq(swapfile_claim(sw, loc), 0);
	pattern_at(loc, 7, true);
	swap_loc other;
	uint64_t at = swap_loc_first(loc), end = at + swap_loc_units(loc);
	while (swapfile_alloc(sw, 3000, &other) == 0) {
		uint64_t a = swap_loc_first(other), b = a + swap_loc_units(other);
		cr_assert(b <= at || end <= a, "units %llu..%llu of the claimed loc handed out",
			  (unsigned long long)a, (unsigned long long)b);
	}
	pattern_at(loc, 7, true);
}

/* flock is per open file description: a second open in this process conflicts
 * just as a second memsrv would. */
Test(swapfile, a_kept_file_in_use_is_busy)
{
	setup_in("/var/tmp");
	add_kept("kept", 1 << 20);
	struct swapfile *other = swapfile_create();
	cr_assert_not_null(other);
	char why[256] = "";
	cr_assert_eq(swapfile_add_kept(other, path_in("kept"), 1 << 20, why, sizeof(why)), -EBUSY);
	cr_assert(strstr(why, "in use by another memsrv"), "why: %s", why);
	cr_assert_eq(swapfile_add_kept(sw, path_in("kept"), 1 << 20, why, sizeof(why)), -EBUSY,
		     "the same swap space opened it twice");
	cr_assert_eq(swapfile_count(other), 0);
	cr_assert_eq(swapfile_count(sw), 1);
	cr_assert_eq(file_size("kept"), 1 << 20, "a busy add touched the file");

	swapfile_destroy(sw);   /* closing drops the lock */
	sw = other;
	add_kept("kept", 1 << 20);
}

Test(swapfile, a_kept_file_of_another_size_is_left_untouched)
{
	setup_in("/var/tmp");
	add_kept("kept", 1 << 20);
	swap_loc loc;
	cr_assert_eq(swapfile_alloc(sw, 4096, &loc), 0);
	pattern_at(loc, 11, false);
	swapfile_destroy(sw);
	sw = swapfile_create();
	cr_assert_not_null(sw);

	char why[256] = "";
	cr_assert_eq(swapfile_add_kept(sw, path_in("kept"), 2 << 20, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, "holds 1048576 bytes from an earlier memsrv"), "why: %s", why);
	cr_assert_eq(swapfile_add_kept(sw, path_in("kept"), 100, why, sizeof(why)), -EINVAL);
	cr_assert_eq(file_size("kept"), 1 << 20);
	cr_assert_eq(swapfile_count(sw), 0);

	/* a failed add of a file it created leaves nothing; an empty one is sized */
	cr_assert_eq(swapfile_add_kept(sw, path_in("tiny"), 100, why, sizeof(why)), -EINVAL);
	cr_assert_neq(access(path_in("tiny"), F_OK), 0, "a failed add left the file it created");
	int fd = open(path_in("empty"), O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	add_kept("empty", 1 << 20);
	cr_assert_eq(file_size("empty"), 1 << 20);

	add_kept("kept", 1 << 20);
	cr_assert_eq(swapfile_claim(sw, loc | (swap_loc)1 << 56), 0);   /* "kept" is file 1 now */
	pattern_at(loc | (swap_loc)1 << 56, 11, true);
}

Test(swapfile, remove_kept_unlinks_only_kept_files)
{
	setup_in("/var/tmp");
	add_kept("kept", 1 << 20);
	add("plain", 1 << 20);
	swapfile_remove_kept(sw);
	cr_assert_neq(access(path_in("kept"), F_OK), 0);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(access(path_in("plain"), F_OK), 0);
	swapfile_destroy(sw);
	sw = NULL;
	cr_assert_neq(access(path_in("plain"), F_OK), 0, "destroy left a plain file");
}
