/* peer_wire: frames of the peer protocol over a byte stream (peer_wire.h). */
#include "peer_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RX_FIRST_CAP 4096u

void peer_rx_init(struct peer_rx *rx, uint32_t limit)
{
	memset(rx, 0, sizeof *rx);
	rx->limit = limit < PEER_WIRE_MAX_PAYLOAD ? limit : PEER_WIRE_MAX_PAYLOAD;
}

void peer_rx_free(struct peer_rx *rx)
{
	free(rx->buf);
	peer_rx_init(rx, rx->limit);
}

void peer_tx_init(struct peer_tx *tx)
{
	memset(tx, 0, sizeof *tx);
}

void peer_tx_free(struct peer_tx *tx)
{
	free(tx->buf);
	peer_tx_init(tx);
}

/* Room for need bytes in all: grown by doubling, never past one frame and
 * the next header. */
static int rx_reserve(struct peer_rx *rx, size_t need)
{
	if (need <= rx->cap)
		return 0;
	size_t cap = rx->cap ? rx->cap : RX_FIRST_CAP;
	while (cap < need)
		cap *= 2;
	uint8_t *buf = realloc(rx->buf, cap);
	if (!buf)
		return -ENOMEM;
	rx->buf = buf;
	rx->cap = cap;
	return 0;
}

int peer_rx_push(struct peer_rx *rx, const void *data, size_t n)
{
	int ret = rx_reserve(rx, rx->len + n);
	if (ret)
		return ret;
	memcpy(rx->buf + rx->len, data, n);
	rx->len += n;
	return 0;
}

/* How many bytes rx wants now: the rest of the frame begun (a bad length
 * is left for peer_rx_next() to refuse) and the next header. */
static size_t rx_wanted(const struct peer_rx *rx)
{
	if (rx->len < WIRE_HEADER)
		return WIRE_HEADER - rx->len;
	uint32_t payload = wire_get_le32(rx->buf);
	if (payload > rx->limit)
		return 0;
	size_t frame = WIRE_HEADER + payload;
	return frame > rx->len ? frame - rx->len + WIRE_HEADER : WIRE_HEADER;
}

ssize_t peer_rx_read(struct peer_rx *rx, int fd)
{
	size_t want = rx_wanted(rx);
	if (!want)
		return -EAGAIN;  /* a frame to refuse is already there */
	if (want < 4096)
		want = 4096;  /* small frames: several per read */
	int ret = rx_reserve(rx, rx->len + want);
	if (ret)
		return ret;
	for (;;) {
		ssize_t n = read(fd, rx->buf + rx->len, want);
		if (n >= 0) {
			rx->len += (size_t)n;
			return n;
		}
		if (errno != EINTR)
			return -errno;
	}
}

int peer_rx_next(struct peer_rx *rx, Memsrv__PeerMessage **out, struct wire_fault *fault)
{
	*out = NULL;
	if (rx->len < WIRE_HEADER)
		return 0;
	uint32_t payload = wire_get_le32(rx->buf);
	if (payload > rx->limit) {
		if (fault)
			snprintf(fault->what, sizeof fault->what, "frame of %u bytes is over the limit of %u%s", payload,
				 rx->limit, rx->limit < PEER_WIRE_MAX_PAYLOAD ? " before the handshake is over" : "");
		return -EPROTO;
	}
	size_t frame = WIRE_HEADER + payload;
	if (rx->len < frame)
		return 0;
	int ret = wire_unpack_message(&memsrv__peer_message__descriptor, rx->buf + WIRE_HEADER, payload,
				      (ProtobufCMessage **)out, fault);
	memmove(rx->buf, rx->buf + frame, rx->len - frame);
	rx->len -= frame;
	return ret;
}

int peer_tx_queue(struct peer_tx *tx, const Memsrv__PeerMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(&msg->base);
	if (len > PEER_WIRE_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (tx->off == tx->len)
		tx->off = tx->len = 0;
	size_t need = tx->len + WIRE_HEADER + len;
	if (need > tx->cap) {
		size_t cap = tx->cap ? tx->cap : 4096;
		while (cap < need)
			cap *= 2;
		uint8_t *buf = realloc(tx->buf, cap);
		if (!buf)
			return -ENOMEM;
		tx->buf = buf;
		tx->cap = cap;
	}
	wire_put_le32(tx->buf + tx->len, (uint32_t)len);
	protobuf_c_message_pack(&msg->base, tx->buf + tx->len + WIRE_HEADER);
	tx->len += WIRE_HEADER + len;
	return 0;
}

int peer_tx_flush(struct peer_tx *tx, int fd)
{
	while (tx->off < tx->len) {
		ssize_t n = send(fd, tx->buf + tx->off, tx->len - tx->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;  /* EAGAIN: the rest when the socket has room */
		}
		tx->off += (size_t)n;
	}
	tx->off = tx->len = 0;
	return 0;
}

void peer_send_error(int fd, int err, const char *text)
{
	Memsrv__Error e = MEMSRV__ERROR__INIT;
	e.errno_code = err;
	e.message = (char *)text;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_ERROR;
	m.error = &e;
	struct peer_tx tx;
	peer_tx_init(&tx);
	if (!peer_tx_queue(&tx, &m))
		peer_tx_flush(&tx, fd);
	peer_tx_free(&tx);
}

const char *peer_message_kind(const Memsrv__PeerMessage *msg)
{
	const ProtobufCFieldDescriptor *fd =
		protobuf_c_message_descriptor_get_field(&memsrv__peer_message__descriptor, msg->msg_case);
	return fd ? fd->name : "nothing";
}
