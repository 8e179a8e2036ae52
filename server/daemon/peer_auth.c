/* peer_auth: the mutual HMAC handshake of two memsrv nodes (peer_auth.h). */
#include "peer_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peer_wire.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define LABEL_CONNECT "memsrv-peer-1 connect"
#define LABEL_ACCEPT "memsrv-peer-1 accept"

int peer_key_load(struct peer_key *key, const char *path, char *why, size_t len)
{
	key->len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		int err = errno;
		snprintf(why, len, "%s: %s", path, strerror(err));
		if (fd >= 0)
			close(fd);
		return -err;
	}
	int ret = 0;
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "%s is not a regular file", path);
		ret = -EINVAL;
	} else if (st.st_mode & 077) {
		snprintf(why, len, "%s may be read by its group or others (mode %04o): chmod 600 it", path,
			 (unsigned)(st.st_mode & 07777));
		ret = -EPERM;
	} else if (st.st_size < PEER_KEY_MIN || st.st_size > PEER_KEY_MAX) {
		snprintf(why, len, "%s holds %lld bytes, a key is %u to %u (head -c 32 /dev/urandom > %s)", path,
			 (long long)st.st_size, PEER_KEY_MIN, PEER_KEY_MAX, path);
		ret = -EINVAL;
	} else {
		size_t got = 0;
		while (got < (size_t)st.st_size) {
			ssize_t n = read(fd, key->bytes + got, (size_t)st.st_size - got);
			if (n <= 0) {
				ret = n < 0 ? -errno : -EIO;
				snprintf(why, len, "%s: %s", path, n < 0 ? strerror(errno) : "shorter than its size");
				break;
			}
			got += (size_t)n;
		}
		if (!ret)
			key->len = got;
	}
	close(fd);
	return ret;
}

void peer_auth_proof(const struct peer_key *key, const char *label, const uint8_t *first, const uint8_t *second,
		     uint8_t proof[PEER_PROOF_BYTES])
{
	uint8_t data[64 + 2 * PEER_NONCE_BYTES];
	size_t n = strlen(label);
	memcpy(data, label, n);
	memcpy(data + n, first, PEER_NONCE_BYTES);
	memcpy(data + n + PEER_NONCE_BYTES, second, PEER_NONCE_BYTES);
	unsigned int out_len = PEER_PROOF_BYTES;
	HMAC(EVP_sha256(), key->bytes, (int)key->len, data, n + 2 * PEER_NONCE_BYTES, proof, &out_len);
}

/* Fails the handshake: why, and the error the peer is owed in out. */
__attribute__((format(printf, 4, 5)))
static int fail(struct peer_auth *a, struct peer_auth_out *out, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->why, sizeof a->why, fmt, ap);
	va_end(ap);
	a->state = PEER_AUTH_FAILED;
	snprintf(out->text, sizeof out->text, "%s", a->why);
	memsrv__error__init(&out->body.error);
	out->body.error.errno_code = -err;
	out->body.error.message = out->text;
	memsrv__peer_message__init(&out->msg);
	out->msg.msg_case = MEMSRV__PEER_MESSAGE__MSG_ERROR;
	out->msg.error = &out->body.error;
	out->send = true;
	return err;
}

static void out_none(struct peer_auth_out *out)
{
	out->send = false;
	memsrv__peer_message__init(&out->msg);
}

int peer_auth_start(struct peer_auth *a, enum peer_auth_role role, const struct peer_key *key,
		    const struct peer_self *self, bool peer_loopback, struct peer_auth_out *out)
{
	memset(a, 0, sizeof *a);
	a->role = role;
	a->key = key;
	a->self = *self;
	a->peer_loopback = peer_loopback;
	out_none(out);
	if (RAND_bytes(a->nonce, sizeof a->nonce) != 1) {
		snprintf(a->why, sizeof a->why, "no random nonce could be drawn");
		a->state = PEER_AUTH_FAILED;
		return -EIO;
	}
	if (role == PEER_AUTH_CONNECTOR) {
		a->state = PEER_AUTH_WAIT_CHALLENGE;
		return 0;
	}
	if (!key->len && !peer_loopback)
		return fail(a, out, -EACCES, "authentication failed: this memsrv has no --peer-key and accepts loopback "
			    "peers only");
	a->state = PEER_AUTH_WAIT_AUTH;
	memsrv__peer_challenge__init(&out->body.challenge);
	out->body.challenge.version = PEER_PROTOCOL_VERSION;
	memcpy(out->nonce, a->nonce, sizeof a->nonce);
	out->body.challenge.nonce = (ProtobufCBinaryData){ sizeof out->nonce, out->nonce };
	out->msg.msg_case = MEMSRV__PEER_MESSAGE__MSG_CHALLENGE;
	out->msg.challenge = &out->body.challenge;
	out->send = true;
	return 0;
}

/* Whether proof is the one key gives over label and the nonces; an empty
 * key expects an empty proof. */
static bool proof_matches(const struct peer_key *key, const char *label, const uint8_t *first,
			  const uint8_t *second, const ProtobufCBinaryData *proof)
{
	if (proof->len != PEER_PROOF_BYTES)
		return false;
	uint8_t want[PEER_PROOF_BYTES];
	peer_auth_proof(key, label, first, second, want);
	return CRYPTO_memcmp(want, proof->data, sizeof want) == 0;
}

/* Our proof for the peer, over label: empty without a key. */
static ProtobufCBinaryData our_proof(struct peer_auth *a, const char *label, const uint8_t *first,
				     const uint8_t *second, struct peer_auth_out *out)
{
	if (!a->key->len)
		return (ProtobufCBinaryData){ 0, NULL };
	peer_auth_proof(a->key, label, first, second, out->proof);
	return (ProtobufCBinaryData){ sizeof out->proof, out->proof };
}

/* The connector, given the challenge: answers with its nonce and proof. */
static int on_challenge(struct peer_auth *a, const Memsrv__PeerChallenge *c, struct peer_auth_out *out)
{
	if (c->version != PEER_PROTOCOL_VERSION)
		return fail(a, out, -EPROTONOSUPPORT, "the peer speaks peer protocol version %u, this memsrv version %u",
			    c->version, PEER_PROTOCOL_VERSION);
	if (c->nonce.len != PEER_NONCE_BYTES)
		return fail(a, out, -EPROTO, "challenge nonce of %zu bytes, not %u", c->nonce.len, PEER_NONCE_BYTES);
	memcpy(a->peer_nonce, c->nonce.data, PEER_NONCE_BYTES);
	memsrv__peer_auth__init(&out->body.auth);
	out->body.auth.version = PEER_PROTOCOL_VERSION;
	memcpy(out->nonce, a->nonce, sizeof a->nonce);
	out->body.auth.nonce = (ProtobufCBinaryData){ sizeof out->nonce, out->nonce };
	out->body.auth.proof = our_proof(a, LABEL_CONNECT, a->peer_nonce, a->nonce, out);
	out->msg.msg_case = MEMSRV__PEER_MESSAGE__MSG_AUTH;
	out->msg.auth = &out->body.auth;
	out->send = true;
	a->state = PEER_AUTH_WAIT_WELCOME;
	return 0;
}

/* The listener, given the connector's answer: checks it, welcomes. */
static int on_auth(struct peer_auth *a, const Memsrv__PeerAuth *m, struct peer_auth_out *out)
{
	if (m->version != PEER_PROTOCOL_VERSION)
		return fail(a, out, -EPROTONOSUPPORT, "the peer speaks peer protocol version %u, this memsrv version %u",
			    m->version, PEER_PROTOCOL_VERSION);
	if (m->nonce.len != PEER_NONCE_BYTES)
		return fail(a, out, -EPROTO, "auth nonce of %zu bytes, not %u", m->nonce.len, PEER_NONCE_BYTES);
	memcpy(a->peer_nonce, m->nonce.data, PEER_NONCE_BYTES);
	if (a->key->len) {
		if (!m->proof.len)
			return fail(a, out, -EACCES, "authentication failed: the peer sent no proof (it has no --peer-key)");
		if (!proof_matches(a->key, LABEL_CONNECT, a->nonce, a->peer_nonce, &m->proof))
			return fail(a, out, -EACCES, "authentication failed: the peer's proof does not match this "
				    "memsrv's --peer-key");
	}
	memsrv__peer_welcome__init(&out->body.welcome);
	out->body.welcome.proof = our_proof(a, LABEL_ACCEPT, a->peer_nonce, a->nonce, out);
	out->body.welcome.memsrv_version = (char *)a->self.memsrv_version;
	out->body.welcome.node = (char *)a->self.node;
	out->msg.msg_case = MEMSRV__PEER_MESSAGE__MSG_WELCOME;
	out->msg.welcome = &out->body.welcome;
	out->send = true;
	a->state = PEER_AUTH_DONE;
	a->authenticated = a->key->len != 0;
	return 1;
}

/* The connector, welcomed: the listener proves it holds the key too. */
static int on_welcome(struct peer_auth *a, const Memsrv__PeerWelcome *w, struct peer_auth_out *out)
{
	if (a->key->len) {
		if (!w->proof.len)
			return fail(a, out, -EACCES, "authentication failed: the peer sent no proof (it has no --peer-key)");
		if (!proof_matches(a->key, LABEL_ACCEPT, a->nonce, a->peer_nonce, &w->proof))
			return fail(a, out, -EACCES, "authentication failed: the peer's proof does not match this "
				    "memsrv's --peer-key");
	}
	snprintf(a->peer_version, sizeof a->peer_version, "%s", w->memsrv_version);
	snprintf(a->peer_node, sizeof a->peer_node, "%s", w->node);
	a->state = PEER_AUTH_DONE;
	a->authenticated = a->key->len != 0;
	return 1;
}

int peer_auth_step(struct peer_auth *a, const Memsrv__PeerMessage *in, struct peer_auth_out *out)
{
	out_none(out);
	if (in->msg_case == MEMSRV__PEER_MESSAGE__MSG_ERROR) {
		snprintf(a->why, sizeof a->why, "the peer refused: %.200s", in->error->message);
		a->state = PEER_AUTH_FAILED;
		return -ECONNREFUSED;
	}
	switch (a->state) {
	case PEER_AUTH_WAIT_CHALLENGE:
		if (in->msg_case == MEMSRV__PEER_MESSAGE__MSG_CHALLENGE)
			return on_challenge(a, in->challenge, out);
		break;
	case PEER_AUTH_WAIT_AUTH:
		if (in->msg_case == MEMSRV__PEER_MESSAGE__MSG_AUTH)
			return on_auth(a, in->auth, out);
		break;
	case PEER_AUTH_WAIT_WELCOME:
		if (in->msg_case == MEMSRV__PEER_MESSAGE__MSG_WELCOME)
			return on_welcome(a, in->welcome, out);
		break;
	default:
		break;
	}
	static const char *const due[] = { "challenge", "auth", "welcome", "nothing", "nothing" };
	return fail(a, out, -EPROTO, "%s where %s was due", peer_message_kind(in), due[a->state]);
}
