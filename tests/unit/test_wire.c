/* Description: records survive the socket intact with their fds; every kind
 * of malformed record is refused with a reason and leaks no fd; an Error
 * carries its errno, field and formatted text, a long text cut to fit. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.h"

static int sv[2];

static void setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

static void teardown(void)
{
	close(sv[0]);
	close(sv[1]);
}

TestSuite(wire, .init = setup, .fini = teardown);

static int open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

Test(wire, message_and_fds_roundtrip)
{
	Memsrv__EvictRequest ev = MEMSRV__EVICT_REQUEST__INIT;
	ev.name = "vm1";
	ev.has_bytes = 1;
	ev.bytes = 12345;
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_EVICT;
	msg.evict = &ev;
	int p[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(wire_send_client(sv[0], &msg, p, 2), 0);

	Memsrv__ClientMessage *got = NULL;
	int fds[WIRE_MAX_FDS];
	unsigned nfds = 0;
	struct wire_fault fault;
	cr_assert_eq(wire_recv_client(sv[1], &got, fds, &nfds, &fault), 1);
	cr_assert_eq(got->msg_case, MEMSRV__CLIENT_MESSAGE__MSG_EVICT);
	cr_assert_str_eq(got->evict->name, "vm1");
	cr_assert_eq(got->evict->bytes, 12345);
	cr_assert_eq(nfds, 2);
	/* the received fds are live copies of the pipe */
	cr_assert_eq(write(fds[1], "x", 1), 1);
	char c;
	cr_assert_eq(read(p[0], &c, 1), 1);
	cr_assert_eq(c, 'x');
	cr_assert(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	memsrv__client_message__free_unpacked(got, NULL);
	wire_close_fds(fds, nfds);
	close(p[0]);
	close(p[1]);
}

Test(wire, eof_is_zero)
{
	close(sv[0]);
	sv[0] = open("/dev/null", O_RDONLY);
	Memsrv__ServerMessage *m;
	struct wire_fault fault;
	cr_assert_eq(wire_recv_server(sv[1], &m, &fault), 0);
}

static void expect_refused(const void *rec, size_t len, const int *fds, unsigned nfds, const char *why)
{
	int before = open_fds();
	char ctl[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { (void *)rec, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		mh.msg_control = ctl;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	cr_assert_eq(sendmsg(sv[0], &mh, 0), (ssize_t)len);
	Memsrv__ClientMessage *got = NULL;
	int rfds[WIRE_MAX_FDS];
	unsigned rn = 99;
	struct wire_fault fault = { "" };
	cr_assert_eq(wire_recv_client(sv[1], &got, rfds, &rn, &fault), -EPROTO);
	cr_assert_null(got);
	cr_assert_eq(rn, 0);
	cr_assert(strstr(fault.what, why), "reason '%s' lacks '%s'", fault.what, why);
	cr_assert_eq(open_fds(), before, "a refused record leaked its fds");
	/* the fuzzers' way in (the same record from memory) decides the same */
	struct wire_fault mem = { "" };
	cr_assert_eq(wire_decode_client(rec, len, &got, &mem), -EPROTO);
	cr_assert_null(got);
	cr_assert_str_eq(mem.what, fault.what);
}

Test(wire, short_record)
{
	expect_refused("ab", 2, NULL, 0, "shorter than its 4-byte length header");
}

Test(wire, length_mismatch_with_fds)
{
	uint8_t rec[8] = { 9, 0, 0, 0, 1, 2, 3, 4 };
	int fds[2] = { 0, 1 };
	expect_refused(rec, sizeof rec, fds, 2, "length header says 9 bytes, record holds 4");
}

Test(wire, not_protobuf)
{
	uint8_t rec[4 + 6] = { 6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	int fds[1] = { 0 };
	expect_refused(rec, sizeof rec, fds, 1, "not a memsrv.ClientMessage");
}

Test(wire, empty_message_is_not_a_request)
{
	uint8_t rec[4] = { 0, 0, 0, 0 };
	expect_refused(rec, sizeof rec, NULL, 0, "not a memsrv.ClientMessage");
}

Test(wire, oversize_record)
{
	static uint8_t rec[WIRE_HEADER + WIRE_MAX_PAYLOAD + 1] = { 1, 0, 1, 0 };  /* 64 KiB + 1 */
	expect_refused(rec, sizeof rec, NULL, 0, "record larger than the 64 KiB limit");
}

Test(wire, decode_from_memory)
{
	Memsrv__InfoRequest info = MEMSRV__INFO_REQUEST__INIT;
	info.name = "vm1";
	Memsrv__ClientMessage msg = MEMSRV__CLIENT_MESSAGE__INIT;
	msg.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_INFO;
	msg.info = &info;
	size_t len = memsrv__client_message__get_packed_size(&msg);
	uint8_t rec[64] = { (uint8_t)len };
	cr_assert_lt(len, sizeof rec - WIRE_HEADER);
	memsrv__client_message__pack(&msg, rec + WIRE_HEADER);
	Memsrv__ClientMessage *got = NULL;
	struct wire_fault fault = { "" };
	cr_assert_eq(wire_decode_client(rec, WIRE_HEADER + len, &got, &fault), 1);
	cr_assert_eq(got->msg_case, MEMSRV__CLIENT_MESSAGE__MSG_INFO);
	cr_assert_str_eq(got->info->name, "vm1");
	memsrv__client_message__free_unpacked(got, NULL);
	/* an InfoRequest is not a ServerMessage: field 11 is vm_info, which needs more */
	Memsrv__ServerMessage *sm = NULL;
	cr_assert_eq(wire_decode_server(rec, WIRE_HEADER + len, &sm, &fault), -EPROTO);
	cr_assert_eq(wire_decode_client(rec, 0, &got, &fault), 0);
}

Test(wire, send_refuses_oversize)
{
	static uint8_t big[WIRE_MAX_PAYLOAD + 1];
	cr_assert_eq(wire_send(sv[0], big, sizeof big, NULL, 0), -EMSGSIZE);
}

Test(wire, an_error_carries_its_errno_field_and_formatted_text)
{
	cr_assert_eq(wire_send_error(sv[0], ENOENT, "info.name", "no VM named %s is attached", "vm9"), 0);
	char big[1000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	cr_assert_eq(wire_send_error(sv[0], EINVAL, NULL, "%s", big), 0);

	Memsrv__ServerMessage *got = NULL;
	struct wire_fault fault;
	cr_assert_eq(wire_recv_server(sv[1], &got, &fault), 1);
	cr_assert_eq(got->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR);
	cr_assert_eq(got->error->errno_code, ENOENT);
	cr_assert_str_eq(got->error->field, "info.name");
	cr_assert_str_eq(got->error->message, "no VM named vm9 is attached");
	memsrv__server_message__free_unpacked(got, NULL);

	cr_assert_eq(wire_recv_server(sv[1], &got, &fault), 1);
	cr_assert_eq(got->error->errno_code, EINVAL);
	cr_assert_null(got->error->field, "no field was named");
	cr_assert_eq(strlen(got->error->message), sizeof(((struct wire_error *)0)->text) - 1, "a long text is cut");
	memsrv__server_message__free_unpacked(got, NULL);
}
