/* uffd: thin wrappers over the userfaultfd ioctls. */
#include "uffd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, uint64_t mode, uint64_t *done)
{
	struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len, .mode = mode };
	int ret = ioctl(uffd, UFFDIO_COPY, &c) ? -errno : 0;
	if (done)
		*done = c.copy > 0 ? (uint64_t)c.copy : 0;
	return ret;
}

int uffd_zeropage(int uffd, uint64_t dst, uint64_t len, bool dontwake, uint64_t *done)
{
	struct uffdio_zeropage z = {
		.range = { .start = dst, .len = len },
		.mode = dontwake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0,
	};
	int ret = ioctl(uffd, UFFDIO_ZEROPAGE, &z) ? -errno : 0;
	if (done)
		*done = z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
	return ret;
}

int uffd_wake(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range r = { .start = start, .len = len };
	return ioctl(uffd, UFFDIO_WAKE, &r) ? -errno : 0;
}

int uffd_poison(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_poison p = { .range = { .start = start, .len = len }, .mode = 0 };
	return ioctl(uffd, UFFDIO_POISON, &p) ? -errno : 0;
}

int uffd_writeprotect(int uffd, uint64_t start, uint64_t len, bool protect, bool dontwake)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
			(dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
	};
	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

const char *uffd_outcome_name(enum uffd_outcome o)
{
	switch (o) {
	case UFFD_PLACED: return "placed";
	case UFFD_EXISTS: return "exists";
	case UFFD_RETRY: return "retry";
	case UFFD_GONE: return "gone";
	case UFFD_ERROR: return "error";
	case UFFD_DISCARDED: return "discarded";
	}
	return "?";
}

bool uffd_is_userfaultfd(int fd)
{
	char path[64], target[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof target - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return !strcmp(target, "anon_inode:[userfaultfd]");
}
