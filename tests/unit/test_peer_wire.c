/* Description: the peer stream's framing without a socket: a frame split
 * across reads, two frames in one read, a length over the limit refused
 * from its header alone, garbage and an empty envelope refused; and
 * peer_tx_flush over a real socket pair. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_wire.h"

static Memsrv__PeerMessage ping_message(Memsrv__PeerPing *ping, uint64_t seq)
{
	memsrv__peer_ping__init(ping);
	ping->seq = seq;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_PING;
	m.ping = ping;
	return m;
}

/* The bytes of seq's ping frame, in tx. */
static void frame_of(struct peer_tx *tx, uint64_t seq)
{
	Memsrv__PeerPing ping;
	Memsrv__PeerMessage m = ping_message(&ping, seq);
	cr_assert_eq(peer_tx_queue(tx, &m), 0);
}

static uint64_t next_seq(struct peer_rx *rx)
{
	Memsrv__PeerMessage *msg;
	struct wire_fault fault = { "" };
	cr_assert_eq(peer_rx_next(rx, &msg, &fault), 1, "%s", fault.what);
	cr_assert_eq(msg->msg_case, MEMSRV__PEER_MESSAGE__MSG_PING);
	uint64_t seq = msg->ping->seq;
	memsrv__peer_message__free_unpacked(msg, NULL);
	return seq;
}

static int next_ret(struct peer_rx *rx, struct wire_fault *fault)
{
	Memsrv__PeerMessage *msg = NULL;
	int ret = peer_rx_next(rx, &msg, fault);
	if (msg)
		memsrv__peer_message__free_unpacked(msg, NULL);
	return ret;
}

Test(peer_wire, frame_split_across_reads)
{
	struct peer_tx tx;
	struct peer_rx rx;
	peer_tx_init(&tx);
	peer_rx_init(&rx, PEER_WIRE_MAX_PAYLOAD);
	frame_of(&tx, 77);
	struct wire_fault fault;
	/* byte by byte: nothing until the last byte */
	for (size_t i = 0; i + 1 < tx.len; i++) {
		cr_assert_eq(peer_rx_push(&rx, tx.buf + i, 1), 0);
		cr_assert_eq(next_ret(&rx, &fault), 0, "a frame after %zu of %zu bytes", i + 1, tx.len);
	}
	cr_assert_eq(peer_rx_push(&rx, tx.buf + tx.len - 1, 1), 0);
	cr_assert_eq(next_seq(&rx), 77);
	cr_assert_eq(rx.len, 0);
	peer_tx_free(&tx);
	peer_rx_free(&rx);
}

Test(peer_wire, two_frames_in_one_read)
{
	struct peer_tx tx;
	struct peer_rx rx;
	peer_tx_init(&tx);
	peer_rx_init(&rx, PEER_WIRE_MAX_PAYLOAD);
	frame_of(&tx, 1);
	frame_of(&tx, 2);
	frame_of(&tx, 3);
	/* two whole frames and half the third */
	size_t third = tx.len / 3;
	cr_assert_eq(peer_rx_push(&rx, tx.buf, tx.len - third / 2), 0);
	cr_assert_eq(next_seq(&rx), 1);
	cr_assert_eq(next_seq(&rx), 2);
	struct wire_fault fault;
	cr_assert_eq(next_ret(&rx, &fault), 0);
	cr_assert_eq(peer_rx_push(&rx, tx.buf + tx.len - third / 2, third / 2), 0);
	cr_assert_eq(next_seq(&rx), 3);
	peer_tx_free(&tx);
	peer_rx_free(&rx);
}

Test(peer_wire, oversize_length_refused_from_its_header)
{
	struct peer_rx rx;
	peer_rx_init(&rx, PEER_WIRE_MAX_PAYLOAD);
	uint8_t hdr[4];
	wire_put_le32(hdr, PEER_WIRE_MAX_PAYLOAD + 1);
	cr_assert_eq(peer_rx_push(&rx, hdr, sizeof hdr), 0);
	struct wire_fault fault = { "" };
	cr_assert_eq(next_ret(&rx, &fault), -EPROTO);
	cr_assert(strstr(fault.what, "over the limit"), "%s", fault.what);
	peer_rx_free(&rx);
	/* the largest frame allowed is only waited for */
	peer_rx_init(&rx, PEER_WIRE_MAX_PAYLOAD);
	wire_put_le32(hdr, PEER_WIRE_MAX_PAYLOAD);
	cr_assert_eq(peer_rx_push(&rx, hdr, sizeof hdr), 0);
	cr_assert_eq(next_ret(&rx, &fault), 0);
	peer_rx_free(&rx);
}

Test(peer_wire, handshake_limit_until_raised)
{
	struct peer_rx rx;
	peer_rx_init(&rx, PEER_WIRE_HANDSHAKE_MAX_PAYLOAD);
	uint8_t hdr[4];
	wire_put_le32(hdr, PEER_WIRE_HANDSHAKE_MAX_PAYLOAD + 1);
	cr_assert_eq(peer_rx_push(&rx, hdr, sizeof hdr), 0);
	struct wire_fault fault = { "" };
	cr_assert_eq(next_ret(&rx, &fault), -EPROTO);
	cr_assert(strstr(fault.what, "before the handshake is over"), "%s", fault.what);
	/* the same header once the limit is raised: waited for */
	rx.limit = PEER_WIRE_MAX_PAYLOAD;
	cr_assert_eq(next_ret(&rx, &fault), 0);
	peer_rx_free(&rx);
	/* and no limit above the wire's */
	peer_rx_init(&rx, UINT32_MAX);
	cr_assert_eq(rx.limit, PEER_WIRE_MAX_PAYLOAD);
	peer_rx_free(&rx);
}

Test(peer_wire, garbage_refused)
{
	struct peer_rx rx;
	peer_rx_init(&rx, PEER_WIRE_MAX_PAYLOAD);
	const char garbage[] = "\x10\x00\x00\x00GET / HTTP/1.0\r\n";  /* 16 bytes that are no PeerMessage */
	cr_assert_eq(peer_rx_push(&rx, garbage, 4 + 16), 0);
	struct wire_fault fault = { "" };
	cr_assert_eq(next_ret(&rx, &fault), -EPROTO);
	cr_assert(strstr(fault.what, "PeerMessage"), "%s", fault.what);
	peer_rx_free(&rx);
	/* an envelope that sets nothing is no message either */
	peer_rx_init(&rx, PEER_WIRE_MAX_PAYLOAD);
	const uint8_t empty[4] = { 0 };
	cr_assert_eq(peer_rx_push(&rx, empty, sizeof empty), 0);
	cr_assert_eq(next_ret(&rx, &fault), -EPROTO);
	peer_rx_free(&rx);
}

Test(peer_wire, read_and_flush_over_a_socket)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	struct peer_tx tx;
	struct peer_rx rx;
	peer_tx_init(&tx);
	peer_rx_init(&rx, PEER_WIRE_MAX_PAYLOAD);
	cr_assert_eq(peer_rx_read(&rx, sv[1]), -EAGAIN);
	frame_of(&tx, 5);
	frame_of(&tx, 6);
	cr_assert_eq(peer_tx_flush(&tx, sv[0]), 0);
	cr_assert(!peer_tx_pending(&tx));
	cr_assert_gt(peer_rx_read(&rx, sv[1]), 0);
	cr_assert_eq(next_seq(&rx), 5);
	cr_assert_eq(next_seq(&rx), 6);
	close(sv[0]);
	cr_assert_eq(peer_rx_read(&rx, sv[1]), 0, "EOF");
	close(sv[1]);
	peer_tx_free(&tx);
	peer_rx_free(&rx);
}

Test(peer_wire, kind_names)
{
	Memsrv__PeerPing ping;
	Memsrv__PeerMessage m = ping_message(&ping, 1);
	cr_assert_str_eq(peer_message_kind(&m), "ping");
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG__NOT_SET;
	cr_assert_str_eq(peer_message_kind(&m), "nothing");
}
