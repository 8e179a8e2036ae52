/* peer_wire: the framing of memsrv's peer protocol, memsrv to memsrv over
 * TCP (docs/protocol.md, "Peers").
 *
 * A stream of frames, each a 4-byte little-endian payload length (as
 * wire.h's records) and a packed memsrv.PeerMessage of at most
 * PEER_WIRE_MAX_PAYLOAD bytes.  A stream has no record boundaries: a frame
 * may arrive in pieces or several in one read, so each direction keeps a
 * buffer: peer_rx gathers bytes and cuts frames, peer_tx holds what a
 * non-blocking socket did not take yet.  Nothing here touches a socket but
 * peer_rx_read() and peer_tx_flush(): tests drive the rest with bytes.
 * Functions return >= 0 or -errno and never touch errno for the caller.
 */
#ifndef MEMSRV_PEER_WIRE_H
#define MEMSRV_PEER_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memsrv.pb-c.h"
#include "wire.h"

/* A page batch of 256 pages compressed, with room for its headers. */
#define PEER_WIRE_MAX_PAYLOAD ((1u << 20) + (64u << 10))

/* Before the handshake is over a frame is small: an unauthenticated peer
 * cannot make memsrv hold a megabyte for it. */
#define PEER_WIRE_HANDSHAKE_MAX_PAYLOAD 4096u

/* Bytes received and not yet cut into frames. */
struct peer_rx {
	uint8_t *buf;
	size_t len, cap;
	uint32_t limit;  /* the largest payload taken now: PEER_WIRE_MAX_PAYLOAD unless lowered */
};

/* Bytes packed and not yet sent. */
struct peer_tx {
	uint8_t *buf;
	size_t off, len, cap;  /* buf[off..len) is still to send */
};

/* An empty rx taking frames of up to limit bytes (at most PEER_WIRE_MAX_PAYLOAD). */
void peer_rx_init(struct peer_rx *rx, uint32_t limit);
void peer_rx_free(struct peer_rx *rx);
void peer_tx_init(struct peer_tx *tx);
void peer_tx_free(struct peer_tx *tx);

/* Adds data[n] as if read from the socket.  0 or -ENOMEM. */
int peer_rx_push(struct peer_rx *rx, const void *data, size_t n);
/* Reads what fd holds (non-blocking) into rx: the bytes read (> 0), 0 on
 * EOF, -EAGAIN when there is nothing, -ENOMEM, or read(2)'s -errno.  Reads
 * at most up to the end of the frame being gathered and the next header,
 * so a peer cannot make rx grow past one frame. */
ssize_t peer_rx_read(struct peer_rx *rx, int fd);
/* The next whole frame, unpacked: 1 with *out set (free it with
 * memsrv__peer_message__free_unpacked(*out, NULL)), 0 when more bytes are
 * needed, or -EPROTO with fault saying why: a length over rx->limit (known
 * from the header alone, before the payload arrives) or a payload that is
 * not a PeerMessage.  After -EPROTO the stream is lost: drop it. */
int peer_rx_next(struct peer_rx *rx, Memsrv__PeerMessage **out, struct wire_fault *fault);

/* Packs msg as one frame at the end of tx.  0, -EMSGSIZE over the limit,
 * or -ENOMEM. */
int peer_tx_queue(struct peer_tx *tx, const Memsrv__PeerMessage *msg);
/* Sends what tx holds on fd (non-blocking): 0 when all went, -EAGAIN when
 * some is left (wait for EPOLLOUT), or send(2)'s -errno. */
int peer_tx_flush(struct peer_tx *tx, int fd);
/* Whether tx holds bytes to send. */
static inline int peer_tx_pending(const struct peer_tx *tx)
{
	return tx->off < tx->len;
}

/* How many bytes tx holds to send. */
static inline size_t peer_tx_backlog(const struct peer_tx *tx)
{
	return tx->len - tx->off;
}

/* Sends one Error frame (err positive, text) on fd as it is, best effort:
 * the last words on a connection about to be closed, whose socket has
 * room for a small frame. */
void peer_send_error(int fd, int err, const char *text);

/* The name of a PeerMessage's kind, for log lines: "challenge", "ping". */
const char *peer_message_kind(const Memsrv__PeerMessage *msg);

#endif
