/* Description: garbage, truncated, oversized and lying messages, wrong fds
 * and strangers on the socket each get a clear error, while a VM attached
 * to the same server keeps every page. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_client.h"
#include "guest.h"
#include "harness.h"
#include "raw_vmm.h"
#include "wire.h"

static struct test_server srv;
static struct test_sim bystander;

/* Every test runs beside an attached VM whose pages are evicted, and
 * checks at the end that it lost nothing. */
static void setup(void)
{
	server_start(&srv);
	bystander_start(&bystander, &srv, "16M");
}

static void teardown(void)
{
	sim_quit_verified(&bystander, 4096);
	server_stop(&srv);
}

TestSuite(protocol, .init = setup, .fini = teardown, .timeout = 120);

static int raw_connect(void)
{
	int fd = ctl_connect(srv.sock);
	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	return fd;
}

/* Reads the server's answer and asserts it is an Error with this errno,
 * whose text contains what (and whose field is field, if given). */
static void expect_error(int fd, int err, const char *field, const char *what)
{
	Memsrv__ServerMessage *m = raw_recv(fd);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "expected an error, got message %d", m->msg_case);
	cr_assert_eq(m->error->errno_code, err, "errno %d (%s), expected %d", m->error->errno_code, m->error->message, err);
	if (field)
		cr_assert(m->error->field && !strcmp(m->error->field, field), "field %s, expected %s (%s)",
			  m->error->field ? m->error->field : "(none)", field, m->error->message);
	if (what)
		cr_assert(strstr(m->error->message, what), "message '%s' lacks '%s'", m->error->message, what);
	memsrv__server_message__free_unpacked(m, NULL);
}

Test(protocol, garbage_bytes)
{
	int fd = raw_connect();
	cr_assert_eq(send(fd, "hi", 2, 0), 2);
	expect_error(fd, EPROTO, NULL, "shorter than its 4-byte length header");
	close(fd);
}

Test(protocol, truncated_message)
{
	int fd = raw_connect();
	uint8_t rec[14] = { 100, 0, 0, 0 };  /* says 100 bytes, holds 10 */
	cr_assert_eq(send(fd, rec, sizeof rec, 0), (ssize_t)sizeof rec);
	expect_error(fd, EPROTO, NULL, "length header says 100 bytes, record holds 10");
	close(fd);
}

Test(protocol, payload_that_is_not_protobuf)
{
	int fd = raw_connect();
	uint8_t junk[64];
	memset(junk, 0xff, sizeof junk);
	cr_assert_eq(wire_send(fd, junk, sizeof junk, NULL, 0), 0);
	expect_error(fd, EPROTO, NULL, "is not a memsrv.ClientMessage");
	close(fd);
}

Test(protocol, oversized_record)
{
	int fd = raw_connect();
	int big = 256 * 1024;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	size_t len = WIRE_MAX_PAYLOAD + 1024;
	uint8_t *buf = calloc(1, len);
	ssize_t n = send(fd, buf, len, 0);
	free(buf);
	if (n < 0) {
		/* the kernel refused it first: nothing reached memsrv */
		cr_assert_eq(errno, EMSGSIZE);
	} else {
		expect_error(fd, EPROTO, NULL, "larger than the 64 KiB limit");
	}
	close(fd);
}

Test(protocol, too_many_fds)
{
	int fd = raw_connect();
	int fds[WIRE_MAX_FDS + 6];
	for (unsigned i = 0; i < WIRE_MAX_FDS + 6; i++)
		fds[i] = STDIN_FILENO;
	/* build the record by hand: wire_send refuses more than the limit */
	uint8_t hdr[4] = { 0 };
	struct iovec iov = { hdr, 4 };
	char ctl[CMSG_SPACE(sizeof fds)];
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof fds);
	memcpy(CMSG_DATA(cm), fds, sizeof fds);
	cr_assert_eq(sendmsg(fd, &mh, 0), 4);
	expect_error(fd, EPROTO, NULL, "too many fds");
	close(fd);
}

/* A Hello for one 1 MiB memfd region, on a uffd of its own; tests spoil
 * one thing each. */
struct hello_case {
	struct raw_hello h;
	struct guest ram;  /* its fd is h.fds[1], unless a test swapped it */
};

static void hello_case_init(struct hello_case *c, const char *name)
{
	int ret = guest_try_map(&c->ram, "ram", 1 << 20, false);
	cr_assert_eq(ret, 0, "%s", strerror(-ret));
	raw_hello_init(&c->h, name, raw_missing, (uint64_t)(uintptr_t)c->ram.mem, c->ram.size, raw_uffd(raw_missing),
		       c->ram.fd);
}

static void send_hello_expect(struct hello_case *c, int err, const char *field, const char *what)
{
	int fd = raw_hello_send(&srv, &c->h);
	expect_error(fd, err, field, what);
	close(fd);
	close(c->h.fds[0]);
	close(c->h.fds[1]);
	munmap(c->ram.mem, c->ram.size);
	cr_assert_eq(ctl_vm_count(&srv), 1, "a refused Hello must not attach anything");
}

Test(protocol, unknown_major_version)
{
	struct hello_case c;
	hello_case_init(&c, "future");
	c.h.hello.version_major = 2;
	send_hello_expect(&c, EPROTONOSUPPORT, "hello.version_major", "this memsrv speaks 1.x");
}

Test(protocol, first_fd_is_not_a_userfaultfd)
{
	struct hello_case c;
	hello_case_init(&c, "nouffd");
	int memfd = c.h.fds[1];
	c.h.fds[0] = dup(memfd);
	send_hello_expect(&c, EBADF, "fds[0]", "userfaultfd");
}

Test(protocol, region_fd_is_a_pipe)
{
	struct hello_case c;
	hello_case_init(&c, "pipefd");
	int p[2];
	cr_assert_eq(pipe(p), 0);
	close(c.h.fds[1]);
	c.h.fds[1] = p[0];
	close(p[1]);
	send_hello_expect(&c, EBADF, "hello.regions[0].fd_index", "not a regular file");
}

Test(protocol, fd_index_out_of_range)
{
	struct hello_case c;
	hello_case_init(&c, "fdindex");
	c.h.region.fd_index = 5;
	send_hello_expect(&c, EBADF, "hello.regions[0].fd_index", "not among the 2 fds");
}

Test(protocol, declared_backing_is_not_the_fds)
{
	struct hello_case c;
	hello_case_init(&c, "liar");
	c.h.region.backing = MEMSRV__BACKING__BACKING_HUGETLBFS;
	send_hello_expect(&c, EINVAL, "hello.regions[0].backing", "declared BACKING_HUGETLBFS but the fd is BACKING_MEMFD");
}

Test(protocol, unaligned_region)
{
	struct hello_case c;
	hello_case_init(&c, "unaligned");
	c.h.region.size = 5000;
	send_hello_expect(&c, EINVAL, "hello.regions[0].size", "not a positive multiple");
}

Test(protocol, a_vm_larger_than_memsrv_manages)
{
	struct hello_case c;
	hello_case_init(&c, "huge");
	c.h.region.size = (16ull << 40) + 4096;  /* what a fuzzer sent: page walks would stall the server */
	send_hello_expect(&c, EFBIG, "hello.regions[0].size", "the most memsrv manages");
}

Test(protocol, pid_of_someone_else)
{
	struct hello_case c;
	hello_case_init(&c, "impostor");
	c.h.hello.pid = 1;
	send_hello_expect(&c, EPERM, "hello.pid", "not the connecting process");
}

Test(protocol, shares_beyond_what_memsrv_ctl_set_allows)
{
	struct hello_case c;
	Memsrv__Quota q = MEMSRV__QUOTA__INIT;
	hello_case_init(&c, "greedy");
	q.has_shares = 1;
	q.shares = 1000001;  /* memsrv-ctl set refuses it: so must a Hello */
	c.h.hello.quota = &q;
	send_hello_expect(&c, EINVAL, "hello.quota.shares", "1..1000000");
}
