/* wire: one protobuf message per SOCK_SEQPACKET record, fds by SCM_RIGHTS.
 *
 * A record is a 4-byte little-endian payload length followed by the payload
 * (a packed memsrv.ClientMessage or memsrv.ServerMessage).  The length must
 * equal the record's size: a mismatch means a truncated or foreign message.
 * All functions return >= 0 on success or -errno; they never touch errno
 * for the caller.
 */
#ifndef MEMSRV_WIRE_H
#define MEMSRV_WIRE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "memsrv.pb-c.h"

#define WIRE_MAX_PAYLOAD (64u * 1024)   /* larger records are refused */
#define WIRE_MAX_FDS     64u            /* uffd + one fd per region */
#define WIRE_HEADER      4u

/* Why a received record was refused, for the error sent back. */
struct wire_fault {
	char what[160];
};

/* Sends buf[len] as one record with nfds fds attached. */
int wire_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds);

/* Receives one record into buf (cap >= WIRE_MAX_PAYLOAD), its payload
 * length into *len.  Returns 1 for a record, 0 on orderly EOF, -EPROTO (with
 * fault->what filled) for a malformed record, or another -errno.  Received fds are stored in fds (at
 * most WIRE_MAX_FDS, opened O_CLOEXEC) and their count in *nfds; on any error
 * none are left open. */
int wire_recv(int sock, void *buf, size_t cap, size_t *len, int *fds, unsigned *nfds,
	      struct wire_fault *fault);

/* Packs and sends a message. */
int wire_send_client(int sock, const Memsrv__ClientMessage *msg, const int *fds, unsigned nfds);
int wire_send_server(int sock, const Memsrv__ServerMessage *msg);

/* Receives and unpacks one message; *out is freed with the matching
 * memsrv__*_message__free_unpacked(*out, NULL).  Returns 1 on a message,
 * 0 on EOF, -EPROTO for undecodable input (fault filled), or -errno. */
int wire_recv_client(int sock, Memsrv__ClientMessage **out, int *fds, unsigned *nfds,
		     struct wire_fault *fault);
int wire_recv_server(int sock, Memsrv__ServerMessage **out, struct wire_fault *fault);

/* Decodes one record held in memory, rec[n] = length header and payload,
 * with the same checks and unpacking wire_recv_client()/wire_recv_server()
 * apply to a record read from the socket (no fds).  For tests and fuzzers.
 * Returns 1 with *out set, 0 for n == 0, or -EPROTO with fault filled. */
int wire_decode_client(const void *rec, size_t n, Memsrv__ClientMessage **out, struct wire_fault *fault);
int wire_decode_server(const void *rec, size_t n, Memsrv__ServerMessage **out, struct wire_fault *fault);

/* Makes msg an Error naming errno_code, field (may be NULL) and text; err
 * is the caller's storage for it. */
void wire_error_message(Memsrv__ServerMessage *msg, Memsrv__Error *err, int errno_code, const char *field,
			char *text);

/* An Error message with the storage it points into, for wire_error_vformat(). */
struct wire_error {
	Memsrv__ServerMessage msg;
	Memsrv__Error err;
	char text[512];         /* a longer text is cut */
};

/* Makes e->msg an Error naming errno_code, field (may be NULL) and the text
 * fmt and ap print: what every sender of a formatted Error shares. */
void wire_error_vformat(struct wire_error *e, int errno_code, const char *field, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* Sends an Error message: errno_code is a positive errno value, field may be NULL. */
int wire_send_error(int sock, int errno_code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

void wire_close_fds(int *fds, unsigned nfds);

/* The length header, for other framings of these messages (peer_wire.h). */
void wire_put_le32(uint8_t *p, uint32_t v);
uint32_t wire_get_le32(const uint8_t *p);

/* Unpacks payload[n] as desc, an envelope whose first field is in its
 * oneof: a message that sets none of it is refused too.  1, or -EPROTO with
 * fault (may be NULL) filled. */
int wire_unpack_message(const ProtobufCMessageDescriptor *desc, const uint8_t *payload, size_t n,
			ProtobufCMessage **out, struct wire_fault *fault);

#endif
