/* wire: record framing, fd passing and protobuf packing for the memsrv socket. */
#include "wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void wire_close_fds(int *fds, unsigned nfds)
{
	for (unsigned i = 0; i < nfds; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

void wire_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

uint32_t wire_get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

int wire_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	if (len > WIRE_MAX_PAYLOAD || nfds > WIRE_MAX_FDS)
		return -EMSGSIZE;
	uint8_t hdr[WIRE_HEADER];
	wire_put_le32(hdr, (uint32_t)len);
	struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)buf, len } };
	union {
		char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	if (nfds) {
		m.msg_control = ctl.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &m, MSG_NOSIGNAL);
		if (n >= 0)
			return (size_t)n == sizeof hdr + len ? 0 : -EMSGSIZE;
		if (errno != EINTR)
			return -errno;
	}
}

/* Collects every fd of every SCM_RIGHTS header so none can leak. */
static int take_fds(struct msghdr *m, int *fds, unsigned *nfds)
{
	unsigned n = 0;
	int too_many = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (unsigned i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
			if (n < WIRE_MAX_FDS)
				fds[n++] = fd;
			else {
				close(fd);
				too_many = 1;
			}
		}
	}
	*nfds = n;
	return too_many;
}

/* Why a received record of n bytes (its header in hdr) is refused, or NULL:
 * the checks wire_recv() makes once recvmsg() returned. */
static const char *record_fault(const uint8_t *hdr, size_t n, int msg_flags, int too_many, char *tmp, size_t tmplen)
{
	if (msg_flags & MSG_TRUNC)
		return "record larger than the 64 KiB limit";
	if (msg_flags & MSG_CTRUNC || too_many)
		return "too many fds attached (limit 64)";
	if (n < WIRE_HEADER)
		return "record shorter than its 4-byte length header";
	if (wire_get_le32(hdr) != n - WIRE_HEADER) {
		snprintf(tmp, tmplen, "length header says %u bytes, record holds %zd", wire_get_le32(hdr),
			 (ssize_t)n - (ssize_t)WIRE_HEADER);
		return tmp;
	}
	return NULL;
}

int wire_recv(int sock, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds,
	      struct wire_fault *fault)
{
	uint8_t hdr[WIRE_HEADER];
	struct iovec iov[2] = { { hdr, sizeof hdr }, { buf, cap } };
	union {
		char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2,
			    .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
	unsigned got_fds = 0;
	int dummy[WIRE_MAX_FDS];
	if (!fds)
		fds = dummy;
	ssize_t n;
	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	int too_many = take_fds(&m, fds, &got_fds);
	char tmp[96];
	if (n == 0 && got_fds == 0 && !(m.msg_flags & MSG_TRUNC)) {
		*nfds = 0;
		return 0;  /* orderly EOF */
	}
	const char *why = record_fault(hdr, (size_t)n, m.msg_flags, too_many, tmp, sizeof tmp);
	if (why) {
		if (fault)
			snprintf(fault->what, sizeof fault->what, "%s", why);
		wire_close_fds(fds, got_fds);
		*nfds = 0;
		return -EPROTO;
	}
	if (fds == dummy)
		wire_close_fds(dummy, got_fds);
	*nfds = fds == dummy ? 0 : got_fds;
	*len = (size_t)n - WIRE_HEADER;
	return 1;
}

/* Packs any message and sends it as one record. */
static int send_message(int sock, const ProtobufCMessage *msg, const int *fds, unsigned nfds)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	if (len > WIRE_MAX_PAYLOAD)
		return -EMSGSIZE;
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	int ret = wire_send(sock, buf, len, fds, nfds);
	free(buf);
	return ret;
}

int wire_send_client(int sock, const Memsrv__ClientMessage *msg, const int *fds, unsigned nfds)
{
	return send_message(sock, &msg->base, fds, nfds);
}

int wire_send_server(int sock, const Memsrv__ServerMessage *msg)
{
	return send_message(sock, &msg->base, NULL, 0);
}

int wire_unpack_message(const ProtobufCMessageDescriptor *desc, const uint8_t *payload, size_t n,
			  ProtobufCMessage **out, struct wire_fault *fault)
{
	*out = protobuf_c_message_unpack(desc, NULL, n, payload);
	const uint32_t *oneof_case = *out ? (const uint32_t *)((const char *)*out + desc->fields[0].quantifier_offset) : NULL;
	if (!oneof_case || *oneof_case == 0) {
		if (*out)
			protobuf_c_message_free_unpacked(*out, NULL);
		*out = NULL;
		if (fault)
			snprintf(fault->what, sizeof fault->what, "payload of %zu bytes is not a %s", n, desc->name);
		return -EPROTO;
	}
	return 1;
}

/* Decodes a whole record held in memory as wire_recv() and recv_message()
 * do with one from the socket: a record longer than the socket would
 * deliver counts as truncated. */
static int decode_record(const ProtobufCMessageDescriptor *desc, const void *rec, size_t n, ProtobufCMessage **out,
			 struct wire_fault *fault)
{
	char tmp[96];
	*out = NULL;
	if (n == 0)
		return 0;  /* what wire_recv() reads as EOF */
	int flags = n > WIRE_HEADER + WIRE_MAX_PAYLOAD ? MSG_TRUNC : 0;
	const char *why = record_fault(rec, n, flags, 0, tmp, sizeof tmp);
	if (why) {
		if (fault)
			snprintf(fault->what, sizeof fault->what, "%s", why);
		return -EPROTO;
	}
	return wire_unpack_message(desc, (const uint8_t *)rec + WIRE_HEADER, n - WIRE_HEADER, out, fault);
}

int wire_decode_client(const void *rec, size_t n, Memsrv__ClientMessage **out, struct wire_fault *fault)
{
	return decode_record(&memsrv__client_message__descriptor, rec, n, (ProtobufCMessage **)out, fault);
}

int wire_decode_server(const void *rec, size_t n, Memsrv__ServerMessage **out, struct wire_fault *fault)
{
	return decode_record(&memsrv__server_message__descriptor, rec, n, (ProtobufCMessage **)out, fault);
}

/* Receives one record and unpacks it as desc (see wire_unpack_message). */
static int recv_message(int sock, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out, int *fds,
			unsigned *nfds, struct wire_fault *fault)
{
	uint8_t *buf = malloc(WIRE_MAX_PAYLOAD);
	if (!buf)
		return -ENOMEM;
	*nfds = 0;
	size_t n;
	int ret = wire_recv(sock, buf, WIRE_MAX_PAYLOAD, &n, fds, nfds, fault);
	if (ret <= 0) {
		free(buf);
		return ret;
	}
	ret = wire_unpack_message(desc, buf, n, out, fault);
	free(buf);
	if (ret < 0) {
		if (fds)
			wire_close_fds(fds, *nfds);
		*nfds = 0;
	}
	return ret;
}

int wire_recv_client(int sock, Memsrv__ClientMessage **out, int *fds, unsigned *nfds,
		     struct wire_fault *fault)
{
	return recv_message(sock, &memsrv__client_message__descriptor, (ProtobufCMessage **)out, fds, nfds, fault);
}

int wire_recv_server(int sock, Memsrv__ServerMessage **out, struct wire_fault *fault)
{
	unsigned nfds;
	return recv_message(sock, &memsrv__server_message__descriptor, (ProtobufCMessage **)out, NULL, &nfds, fault);
}

void wire_error_message(Memsrv__ServerMessage *msg, Memsrv__Error *err, int errno_code, const char *field,
			char *text)
{
	memsrv__error__init(err);
	err->errno_code = errno_code;
	err->field = (char *)field;
	err->message = text;
	memsrv__server_message__init(msg);
	msg->msg_case = MEMSRV__SERVER_MESSAGE__MSG_ERROR;
	msg->error = err;
}

void wire_error_vformat(struct wire_error *e, int errno_code, const char *field, const char *fmt, va_list ap)
{
	vsnprintf(e->text, sizeof e->text, fmt, ap);
	wire_error_message(&e->msg, &e->err, errno_code, field, e->text);
}

int wire_send_error(int sock, int errno_code, const char *field, const char *fmt, ...)
{
	struct wire_error e;
	va_list ap;
	va_start(ap, fmt);
	wire_error_vformat(&e, errno_code, field, fmt, ap);
	va_end(ap);
	return wire_send_server(sock, &e.msg);
}
