/* raw_vmm: a uffd and a Hello made by hand, as a VMM without libmemsrv would. */
#include "raw_vmm.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "ctl_client.h"
#include "wire.h"

const struct raw_mode raw_missing = { UFFD_FEATURE_MISSING_SHMEM, UFFDIO_REGISTER_MODE_MISSING };
const struct raw_mode raw_missing_wp = { UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
					 UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP };

int raw_uffd(struct raw_mode mode)
{
	int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	cr_assert_geq(u, 0, "userfaultfd: %s", strerror(errno));
	struct uffdio_api api = { .api = UFFD_API, .features = mode.features };
	cr_assert_eq(ioctl(u, UFFDIO_API, &api), 0, "UFFDIO_API: %s", strerror(errno));
	return u;
}

void raw_register(int uffd, void *mem, size_t size, struct raw_mode mode)
{
	struct uffdio_register reg = { .range = { (uint64_t)(uintptr_t)mem, size }, .mode = mode.register_modes };
	cr_assert_eq(ioctl(uffd, UFFDIO_REGISTER, &reg), 0, "UFFDIO_REGISTER: %s", strerror(errno));
}

void raw_hello_init(struct raw_hello *h, const char *name, struct raw_mode mode, uint64_t addr, size_t size,
		    int uffd, int memfd)
{
	memsrv__hello__init(&h->hello);
	memsrv__region__init(&h->region);
	h->region.host_addr = addr;
	h->region.size = size;
	h->region.page_size = 4096;
	h->region.backing = MEMSRV__BACKING__BACKING_MEMFD;
	h->region.has_fd_index = 1;
	h->region.fd_index = 1;
	h->regions[0] = &h->region;
	h->hello.version_major = MEMSRV__VERSION__VERSION_MAJOR;
	h->hello.version_minor = MEMSRV__VERSION__VERSION_MINOR;
	h->hello.name = (char *)name;
	h->hello.pid = (uint32_t)getpid();
	h->hello.n_regions = 1;
	h->hello.regions = h->regions;
	h->hello.uffd_features = mode.features;
	h->hello.register_modes = mode.register_modes;
	h->fds[0] = uffd;
	h->fds[1] = memfd;
	h->nfds = 2;
}

int raw_hello_send(const struct test_server *srv, const struct raw_hello *h)
{
	int fd = ctl_connect(srv->sock);
	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_HELLO;
	msg.hello = (Memsrv__Hello *)&h->hello;
	cr_assert_eq(wire_send_client(fd, &msg, h->fds, h->nfds), 0);
	return fd;
}

Memsrv__ServerMessage *raw_recv(int fd)
{
	Memsrv__ServerMessage *m = NULL;
	int ret = wire_recv_server(fd, &m, NULL);
	cr_assert_eq(ret, 1, "no answer from memsrv (%d)", ret);
	return m;
}

void expect_hello_reply(Memsrv__ServerMessage *m)
{
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY, "%s",
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "?");
	memsrv__server_message__free_unpacked(m, NULL);
}
