/* fuzz_peer: the bytes a peer sends memsrv over TCP, through the frame
 * cutter (peer_rx) and the handshake (peer_auth) as peers.c reads them.
 *
 * The first byte says which side memsrv plays (bit 0: the listener, else
 * the connector; both hold a key) and how the stream is cut into reads
 * (bits 1-7: each read 1 to 128 bytes); the rest is the stream.  Frames go
 * to the handshake until it refuses or completes, as peers.c drops a
 * connection at the first refusal.  Every message the handshake answers
 * must pack into a frame.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "peer_auth.h"
#include "peer_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct peer_key key = { .len = 32 };
	static const struct peer_self self = { "0.1.0", "fuzz" };
	if (size < 1)
		return 0;
	bool listener = data[0] & 1;
	size_t chunk = (size_t)(data[0] >> 1) + 1;
	struct peer_auth a;
	struct peer_auth_out out;
	if (peer_auth_start(&a, listener ? PEER_AUTH_LISTENER : PEER_AUTH_CONNECTOR, &key, &self, true, &out))
		abort();
	struct peer_rx rx;
	struct peer_tx tx;
	peer_rx_init(&rx, PEER_WIRE_HANDSHAKE_MAX_PAYLOAD);
	peer_tx_init(&tx);
	if (out.send && peer_tx_queue(&tx, &out.msg))
		abort();
	bool over = false;
	for (size_t off = 1; off < size && !over; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (peer_rx_push(&rx, data + off, n))
			abort();
		while (!over) {
			Memsrv__PeerMessage *msg;
			struct wire_fault fault;
			int ret = peer_rx_next(&rx, &msg, &fault);
			if (ret == 0)
				break;
			if (ret < 0) {
				over = true;  /* malformed: dropped */
				break;
			}
			if (a.state != PEER_AUTH_DONE) {
				ret = peer_auth_step(&a, msg, &out);
				if (out.send && peer_tx_queue(&tx, &out.msg))
					abort();
				over = ret < 0;
			}
			memsrv__peer_message__free_unpacked(msg, NULL);
		}
	}
	peer_rx_free(&rx);
	peer_tx_free(&tx);
	return 0;
}
