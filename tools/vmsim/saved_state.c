/* saved_state: DIR/vmsim.state, written whole or not at all. */
#include "saved_state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rng.h"

#define STATE_MAGIC "vmsimst"  /* with its NUL: 8 bytes */
#define PARTIAL_FILE ".vmsim.state.partial"
#define PAGE_BYTES 4096u

/* On disk, host byte order. */
struct state_header {
	char magic[8];
	uint32_t format;        /* SAVED_STATE_VERSION */
	uint32_t header_bytes;  /* sizeof (struct state_header) */
	uint64_t size;
	uint64_t seed;
	uint64_t pages;
	uint8_t mix_pct[CONTENT_KINDS];
	uint8_t shared_pct;
	uint8_t reserved[3];
	uint64_t checksum;      /* of the header with this field 0, then the versions */
};
_Static_assert(sizeof(struct state_header) == 56, "the header's layout is the file's");

__attribute__((format(printf, 4, 5)))
static int fail(int err, char *why, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return err;
}

/* splitmix64 over 8-byte words (the tail zero-padded): catches a torn or
 * flipped file, not a forger. */
static uint64_t checksum_add(uint64_t h, const void *data, size_t bytes)
{
	const uint8_t *p = data;
	for (; bytes >= 8; p += 8, bytes -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = rng_mix64(h ^ w);
	}
	if (bytes) {
		uint64_t w = 0;
		memcpy(&w, p, bytes);
		h = rng_mix64(h ^ w ^ (uint64_t)bytes << 56);
	}
	return h;
}

static uint64_t state_checksum(const struct state_header *hdr, const uint32_t *versions)
{
	struct state_header h = *hdr;
	h.checksum = 0;
	uint64_t sum = checksum_add(0x7374617465ull, &h, sizeof h);
	return checksum_add(sum, versions, hdr->pages * sizeof *versions);
}

static int write_all(int fd, const void *buf, size_t bytes)
{
	const uint8_t *p = buf;
	while (bytes) {
		ssize_t n = write(fd, p, bytes);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		bytes -= (size_t)n;
	}
	return 0;
}

/* 0, the bytes read short of bytes (end of file), or -errno. */
static ssize_t read_all(int fd, void *buf, size_t bytes)
{
	uint8_t *p = buf;
	size_t got = 0;
	while (got < bytes) {
		ssize_t n = read(fd, p + got, bytes - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int write_partial(int dirfd, const char *dir, const struct state_header *hdr, const uint32_t *versions,
			 char *why, size_t len)
{
	int fd = openat(dirfd, PARTIAL_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(-errno, why, len, "%s/%s: %s", dir, PARTIAL_FILE, strerror(errno));
	int ret = write_all(fd, hdr, sizeof *hdr);
	if (!ret)
		ret = write_all(fd, versions, hdr->pages * sizeof *versions);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (ret)
		return fail(ret, why, len, "writing %s/%s: %s", dir, PARTIAL_FILE, strerror(-ret));
	return 0;
}

int saved_state_write(const char *dir, const struct saved_state *st, char *why, size_t len)
{
	if (st->pages != st->size / PAGE_BYTES || st->size % PAGE_BYTES)
		return fail(-EINVAL, why, len, "size %llu is not %llu pages of 4 KiB",
			    (unsigned long long)st->size, (unsigned long long)st->pages);
	if (mkdir(dir, 0700) && errno != EEXIST)
		return fail(-errno, why, len, "mkdir %s: %s", dir, strerror(errno));
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return fail(-errno, why, len, "%s: %s", dir, strerror(errno));
	int ret = 0;
	if (faccessat(dirfd, SAVED_STATE_FILE, F_OK, 0) == 0) {
		ret = fail(-EEXIST, why, len, "%s/%s exists: a state is never replaced", dir, SAVED_STATE_FILE);
		goto out;
	}
	struct state_header hdr = {
		.magic = STATE_MAGIC,
		.format = SAVED_STATE_VERSION,
		.header_bytes = sizeof hdr,
		.size = st->size,
		.seed = st->seed,
		.pages = st->pages,
		.shared_pct = st->mix.shared_pct,
	};
	memcpy(hdr.mix_pct, st->mix.pct, sizeof hdr.mix_pct);
	hdr.checksum = state_checksum(&hdr, st->versions);
	ret = write_partial(dirfd, dir, &hdr, st->versions, why, len);
	/* RENAME_NOREPLACE: a state that appeared meanwhile stays as it is */
	if (!ret && renameat2(dirfd, PARTIAL_FILE, dirfd, SAVED_STATE_FILE, RENAME_NOREPLACE))
		ret = fail(-errno, why, len, "renaming %s/%s to %s: %s", dir, PARTIAL_FILE, SAVED_STATE_FILE,
			   strerror(errno));
	if (ret) {
		unlinkat(dirfd, PARTIAL_FILE, 0);
		goto out;
	}
	if (fsync(dirfd))
		ret = fail(-errno, why, len, "fsync %s: %s", dir, strerror(errno));
out:
	close(dirfd);
	return ret;
}

static int check_header(const char *path, const struct state_header *hdr, off_t file_bytes, char *why,
			size_t len)
{
	if (memcmp(hdr->magic, STATE_MAGIC, sizeof hdr->magic))
		return fail(-EBADMSG, why, len, "%s: not a vmsim state (bad magic)", path);
	if (hdr->format != SAVED_STATE_VERSION || hdr->header_bytes != sizeof *hdr)
		return fail(-EPROTONOSUPPORT, why, len, "%s: format %u (header %u bytes), this vmsim reads %u",
			    path, hdr->format, hdr->header_bytes, SAVED_STATE_VERSION);
	if (!hdr->size || hdr->size % PAGE_BYTES || hdr->pages != hdr->size / PAGE_BYTES)
		return fail(-EBADMSG, why, len, "%s: size %llu and %llu pages do not agree", path,
			    (unsigned long long)hdr->size, (unsigned long long)hdr->pages);
	unsigned sum = 0;
	for (unsigned k = 0; k < CONTENT_KINDS; k++)
		sum += hdr->mix_pct[k];
	if (sum != 100 || hdr->shared_pct > 100)
		return fail(-EBADMSG, why, len, "%s: a content mix that does not add up to 100", path);
	uint64_t want = sizeof *hdr + hdr->pages * sizeof(uint32_t);
	if ((uint64_t)file_bytes != want)
		return fail(-EBADMSG, why, len, "%s: %lld bytes, %llu expected for %llu pages (truncated?)", path,
			    (long long)file_bytes, (unsigned long long)want, (unsigned long long)hdr->pages);
	return 0;
}

int saved_state_read(const char *dir, struct saved_state *st, char *why, size_t len)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, SAVED_STATE_FILE) >= sizeof path)
		return fail(-ENAMETOOLONG, why, len, "%s: path too long", dir);
	memset(st, 0, sizeof *st);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(-errno, why, len, "%s: %s", path, strerror(errno));
	struct state_header hdr;
	struct stat sb;
	int ret = 0;
	uint32_t *versions = NULL;
	if (fstat(fd, &sb)) {
		ret = fail(-errno, why, len, "%s: %s", path, strerror(errno));
		goto out;
	}
	ssize_t got = read_all(fd, &hdr, sizeof hdr);
	if (got != (ssize_t)sizeof hdr) {
		ret = got < 0 ? fail((int)got, why, len, "%s: %s", path, strerror((int)-got))
			      : fail(-EBADMSG, why, len, "%s: shorter than a header (%zd bytes)", path, got);
		goto out;
	}
	if ((ret = check_header(path, &hdr, sb.st_size, why, len)))
		goto out;
	size_t bytes = hdr.pages * sizeof *versions;
	versions = malloc(bytes ? bytes : 1);
	if (!versions) {
		ret = fail(-ENOMEM, why, len, "%s: %zu bytes of versions: out of memory", path, bytes);
		goto out;
	}
	got = read_all(fd, versions, bytes);
	if (got != (ssize_t)bytes) {
		ret = got < 0 ? fail((int)got, why, len, "%s: %s", path, strerror((int)-got))
			      : fail(-EBADMSG, why, len, "%s: truncated while read", path);
		goto out;
	}
	if (state_checksum(&hdr, versions) != hdr.checksum) {
		ret = fail(-EBADMSG, why, len, "%s: checksum mismatch (corrupt)", path);
		goto out;
	}
	st->size = hdr.size;
	st->seed = hdr.seed;
	st->pages = hdr.pages;
	memcpy(st->mix.pct, hdr.mix_pct, sizeof st->mix.pct);
	st->mix.shared_pct = hdr.shared_pct;
	st->versions = versions;
	versions = NULL;
out:
	free(versions);
	close(fd);
	return ret;
}
