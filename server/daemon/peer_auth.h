/* peer_auth: the handshake of two memsrv nodes, as a state machine fed
 * PeerMessages (docs/protocol.md, "Peers").  No socket: peers.c carries the
 * messages, unit tests drive both sides by hand.
 *
 *   listener  -> challenge{version, nonce_l}
 *   connector -> auth{version, nonce_c, HMAC(key, "memsrv-peer-1 connect" || nonce_l || nonce_c)}
 *   listener  -> welcome{HMAC(key, "memsrv-peer-1 accept" || nonce_c || nonce_l), version, node}
 *
 * Each side proves it holds the key over the other's fresh nonce, so a
 * proof recorded from another handshake is worth nothing.  Without a key a
 * listener admits loopback peers only, and proofs are empty; a side with a
 * key refuses a peer that sends none.
 */
#ifndef MEMSRV_PEER_AUTH_H
#define MEMSRV_PEER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memsrv.pb-c.h"

#define PEER_PROTOCOL_VERSION 1u
#define PEER_NONCE_BYTES 32u
#define PEER_PROOF_BYTES 32u   /* HMAC-SHA256 */
#define PEER_KEY_MIN 32u
#define PEER_KEY_MAX 1024u

/* --peer-key: the secret both nodes hold. */
struct peer_key {
	uint8_t bytes[PEER_KEY_MAX];
	size_t len;  /* 0: no key */
};

/* Reads the key file at path: at least PEER_KEY_MIN bytes, at most
 * PEER_KEY_MAX, and neither group nor world may read it.  0, or -errno
 * with why ("/etc/memsrv/key is readable by its group or others (mode
 * 0644): chmod 600 it"). */
int peer_key_load(struct peer_key *key, const char *path, char *why, size_t len);

enum peer_auth_role { PEER_AUTH_LISTENER, PEER_AUTH_CONNECTOR };

/* What this memsrv says of itself in a welcome. */
struct peer_self {
	const char *memsrv_version;
	const char *node;
};

struct peer_auth {
	enum peer_auth_role role;
	const struct peer_key *key;  /* len 0: none */
	struct peer_self self;
	bool peer_loopback;          /* the peer's address is 127.0.0.0/8 or ::1 */
	enum { PEER_AUTH_WAIT_CHALLENGE, PEER_AUTH_WAIT_AUTH, PEER_AUTH_WAIT_WELCOME, PEER_AUTH_DONE,
	       PEER_AUTH_FAILED } state;
	uint8_t nonce[PEER_NONCE_BYTES];       /* ours */
	uint8_t peer_nonce[PEER_NONCE_BYTES];  /* theirs */
	bool authenticated;          /* done with both proofs checked (false: no key, loopback) */
	char peer_version[32], peer_node[64];  /* from the welcome, for the connector */
	char why[256];               /* once failed: what was wrong */
};

/* A message to send and the storage it points into. */
struct peer_auth_out {
	bool send;
	Memsrv__PeerMessage msg;
	union {
		Memsrv__PeerChallenge challenge;
		Memsrv__PeerAuth auth;
		Memsrv__PeerWelcome welcome;
		Memsrv__Error error;
	} body;
	uint8_t nonce[PEER_NONCE_BYTES], proof[PEER_PROOF_BYTES];
	char text[256];
};

/* Starts a handshake.  A listener's first message (the challenge, or an
 * error when it has no key and the peer is not loopback) is put in out.
 * 0, or -EACCES (refused: a->why says why, out holds the error to send),
 * or -EIO when no random nonce could be drawn. */
int peer_auth_start(struct peer_auth *a, enum peer_auth_role role, const struct peer_key *key,
		    const struct peer_self *self, bool peer_loopback, struct peer_auth_out *out);

/* Feeds the peer's next message.  out may get one to send (even on
 * failure: the error the peer is owed).  1: authenticated, the connection
 * is the peers' now; 0: go on; -EACCES: a proof or key mismatch;
 * -EPROTONOSUPPORT: another protocol version; -EPROTO: a message that is
 * not the one due, or malformed fields; -ECONNREFUSED: the peer sent an
 * error.  On every failure a->why says what was wrong. */
int peer_auth_step(struct peer_auth *a, const Memsrv__PeerMessage *in, struct peer_auth_out *out);

/* HMAC-SHA256(key, label || first || second), nonces of PEER_NONCE_BYTES. */
void peer_auth_proof(const struct peer_key *key, const char *label, const uint8_t *first, const uint8_t *second,
		     uint8_t proof[PEER_PROOF_BYTES]);

#endif
