/* uffd_setup: userfaultfd creation, feature probing and registration. */
#include "uffd_setup.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "uffd_compat.h"

static int uffd_new(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	/* unprivileged callers may only handle user-mode faults, which is
	 * all a VMM's guest RAM needs */
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	return fd < 0 ? -errno : fd;
}

int uffd_setup_open(uint64_t *features)
{
	/* UFFDIO_API may be called once per fd: probe on a throwaway one */
	int probe = uffd_new();
	if (probe < 0)
		return probe;
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int ret = ioctl(probe, UFFDIO_API, &api) ? -errno : 0;
	close(probe);
	if (ret)
		return ret;
	int fd = uffd_new();
	if (fd < 0)
		return fd;
	uint64_t supported = api.features;
	api = (struct uffdio_api){ .api = UFFD_API, .features = supported & MEMSRV_UFFD_WANTED };
	if (ioctl(fd, UFFDIO_API, &api)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*features = supported & MEMSRV_UFFD_WANTED;
	return fd;
}

int uffd_setup_register(int uffd, uint64_t features, Memsrv__Backing backing, uint64_t addr, uint64_t size,
			uint64_t *modes)
{
	uint64_t wp_feature = backing == MEMSRV__BACKING__BACKING_ANON ? UFFD_FEATURE_PAGEFAULT_FLAG_WP
								       : UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	uint64_t mode = UFFDIO_REGISTER_MODE_MISSING;
	if (features & wp_feature)
		mode |= UFFDIO_REGISTER_MODE_WP;
	for (;;) {
		struct uffdio_register reg = { .range = { .start = addr, .len = size }, .mode = mode };
		if (!ioctl(uffd, UFFDIO_REGISTER, &reg)) {
			*modes = mode;
			return 0;
		}
		if (errno != EINVAL || !(mode & UFFDIO_REGISTER_MODE_WP))
			return -errno;
		/* this mapping can't be write-protected: serve faults only */
		mode &= ~UFFDIO_REGISTER_MODE_WP;
	}
}

int uffd_setup_unregister(int uffd, uint64_t addr, uint64_t size)
{
	struct uffdio_range r = { .start = addr, .len = size };
	return ioctl(uffd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

Memsrv__Backing uffd_setup_backing(int fd, uint32_t *page_size)
{
	*page_size = 4096;
	if (fd < 0)
		return MEMSRV__BACKING__BACKING_ANON;
	struct statfs fs;
	struct stat st;
	if (fstatfs(fd, &fs) || fstat(fd, &st))
		return MEMSRV__BACKING__BACKING_UNKNOWN;
	if (fs.f_type == HUGETLBFS_MAGIC) {
		*page_size = (uint32_t)st.st_blksize;
		return MEMSRV__BACKING__BACKING_HUGETLBFS;
	}
	if (fs.f_type == TMPFS_MAGIC)
		return MEMSRV__BACKING__BACKING_MEMFD;
	return MEMSRV__BACKING__BACKING_FILE;
}
