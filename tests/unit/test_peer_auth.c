/* Description: the peers' handshake, both sides driven by hand through the
 * real framing (no socket): the same key authenticates both ways; a wrong
 * key, a missing one on either side, a replayed or short proof and another
 * protocol version are refused with a reason; without a key only loopback
 * is admitted; the proof is HMAC-SHA256 over the label and nonces; a key
 * file must be long enough and private. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peer_auth.h"
#include "peer_wire.h"

static const struct peer_self listener_self = { "9.8.7", "node-b" };
static const struct peer_self connector_self = { "9.8.7", "node-a" };

static struct peer_key make_key(uint8_t fill)
{
	struct peer_key k = { .len = 32 };
	memset(k.bytes, fill, k.len);
	return k;
}

static const struct peer_key no_key = { .len = 0 };

/* out's message as the peer reads it: packed, framed, unpacked.  Free it
 * with memsrv__peer_message__free_unpacked. */
static Memsrv__PeerMessage *carry(const struct peer_auth_out *out)
{
	cr_assert(out->send, "a message to send");
	struct peer_tx tx;
	struct peer_rx rx;
	peer_tx_init(&tx);
	peer_rx_init(&rx, PEER_WIRE_HANDSHAKE_MAX_PAYLOAD);
	cr_assert_eq(peer_tx_queue(&tx, &out->msg), 0);
	cr_assert_eq(peer_rx_push(&rx, tx.buf, tx.len), 0);
	Memsrv__PeerMessage *msg;
	struct wire_fault fault = { "" };
	cr_assert_eq(peer_rx_next(&rx, &msg, &fault), 1, "%s", fault.what);
	peer_tx_free(&tx);
	peer_rx_free(&rx);
	return msg;
}

/* The listener's challenge and the connector's auth for it. */
struct opening {
	struct peer_auth l, c;
	struct peer_auth_out lout, cout;
	Memsrv__PeerMessage *auth;
};

static void open_handshake(struct opening *o, const struct peer_key *lkey, const struct peer_key *ckey)
{
	cr_assert_eq(peer_auth_start(&o->l, PEER_AUTH_LISTENER, lkey, &listener_self, true, &o->lout), 0);
	cr_assert_eq(peer_auth_start(&o->c, PEER_AUTH_CONNECTOR, ckey, &connector_self, false, &o->cout), 0);
	cr_assert(!o->cout.send, "the connector waits for the challenge");
	Memsrv__PeerMessage *challenge = carry(&o->lout);
	cr_assert_eq(challenge->msg_case, MEMSRV__PEER_MESSAGE__MSG_CHALLENGE);
	cr_assert_eq(peer_auth_step(&o->c, challenge, &o->cout), 0);
	memsrv__peer_message__free_unpacked(challenge, NULL);
	o->auth = carry(&o->cout);
	cr_assert_eq(o->auth->msg_case, MEMSRV__PEER_MESSAGE__MSG_AUTH);
}

static void close_opening(struct opening *o)
{
	memsrv__peer_message__free_unpacked(o->auth, NULL);
}

/* The whole handshake; returns the connector's last step. */
static int handshake(struct opening *o, const struct peer_key *lkey, const struct peer_key *ckey)
{
	open_handshake(o, lkey, ckey);
	int ret = peer_auth_step(&o->l, o->auth, &o->lout);
	if (ret != 1)
		return 1000 + ret;  /* the listener refused: told apart from the connector's answers */
	Memsrv__PeerMessage *welcome = carry(&o->lout);
	ret = peer_auth_step(&o->c, welcome, &o->cout);
	memsrv__peer_message__free_unpacked(welcome, NULL);
	return ret;
}

Test(peer_auth, same_key_authenticates_both_ways)
{
	struct peer_key k = make_key(7);
	struct opening o;
	cr_assert_eq(handshake(&o, &k, &k), 1, "%s / %s", o.l.why, o.c.why);
	cr_assert(o.l.authenticated && o.c.authenticated);
	cr_assert_eq(o.l.state, PEER_AUTH_DONE);
	cr_assert_eq(o.c.state, PEER_AUTH_DONE);
	cr_assert_str_eq(o.c.peer_node, "node-b");
	cr_assert_str_eq(o.c.peer_version, "9.8.7");
	close_opening(&o);
}

Test(peer_auth, wrong_key_refused_by_the_listener_who_says_why)
{
	struct peer_key k1 = make_key(1), k2 = make_key(2);
	struct opening o;
	cr_assert_eq(handshake(&o, &k1, &k2), 1000 - EACCES);
	cr_assert(strstr(o.l.why, "authentication failed"), "%s", o.l.why);
	cr_assert_eq(o.l.state, PEER_AUTH_FAILED);
	/* the connector is told, and fails with the listener's words */
	Memsrv__PeerMessage *err = carry(&o.lout);
	cr_assert_eq(err->msg_case, MEMSRV__PEER_MESSAGE__MSG_ERROR);
	cr_assert_eq(err->error->errno_code, EACCES);
	cr_assert_eq(peer_auth_step(&o.c, err, &o.cout), -ECONNREFUSED);
	cr_assert(strstr(o.c.why, "authentication failed"), "%s", o.c.why);
	memsrv__peer_message__free_unpacked(err, NULL);
	close_opening(&o);
}

Test(peer_auth, connector_checks_the_listener_proof)
{
	struct peer_key k = make_key(3);
	struct opening o;
	open_handshake(&o, &k, &k);
	cr_assert_eq(peer_auth_step(&o.l, o.auth, &o.lout), 1);
	Memsrv__PeerMessage *welcome = carry(&o.lout);
	cr_assert_eq(welcome->welcome->proof.len, PEER_PROOF_BYTES);
	welcome->welcome->proof.data[5] ^= 1;  /* a listener that does not hold the key cannot make it */
	cr_assert_eq(peer_auth_step(&o.c, welcome, &o.cout), -EACCES);
	cr_assert(strstr(o.c.why, "authentication failed"), "%s", o.c.why);
	memsrv__peer_message__free_unpacked(welcome, NULL);
	close_opening(&o);
}

Test(peer_auth, no_key_on_either_side_admits_loopback_unauthenticated)
{
	struct opening o;
	cr_assert_eq(handshake(&o, &no_key, &no_key), 1, "%s / %s", o.l.why, o.c.why);
	cr_assert(!o.l.authenticated && !o.c.authenticated);
	cr_assert_eq(o.auth->auth->proof.len, 0, "no key, no proof");
	close_opening(&o);
}

Test(peer_auth, no_key_refuses_a_peer_that_is_not_loopback)
{
	struct peer_auth l;
	struct peer_auth_out out;
	cr_assert_eq(peer_auth_start(&l, PEER_AUTH_LISTENER, &no_key, &listener_self, false, &out), -EACCES);
	cr_assert(strstr(l.why, "authentication failed") && strstr(l.why, "loopback"), "%s", l.why);
	Memsrv__PeerMessage *err = carry(&out);
	cr_assert_eq(err->msg_case, MEMSRV__PEER_MESSAGE__MSG_ERROR);
	memsrv__peer_message__free_unpacked(err, NULL);
	/* with a key the address does not matter */
	struct peer_key k = make_key(4);
	cr_assert_eq(peer_auth_start(&l, PEER_AUTH_LISTENER, &k, &listener_self, false, &out), 0);
	cr_assert_eq(out.msg.msg_case, MEMSRV__PEER_MESSAGE__MSG_CHALLENGE);
}

Test(peer_auth, key_on_the_listener_none_on_the_connector)
{
	struct peer_key k = make_key(5);
	struct opening o;
	cr_assert_eq(handshake(&o, &k, &no_key), 1000 - EACCES);
	cr_assert(strstr(o.l.why, "no proof"), "%s", o.l.why);
	close_opening(&o);
}

Test(peer_auth, key_on_the_connector_none_on_the_listener)
{
	struct peer_key k = make_key(5);
	struct opening o;
	cr_assert_eq(handshake(&o, &no_key, &k), -EACCES, "the listener proved nothing");
	cr_assert(strstr(o.c.why, "no proof"), "%s", o.c.why);
	close_opening(&o);
}

Test(peer_auth, replayed_proof_refused)
{
	struct peer_key k = make_key(6);
	struct opening first;
	open_handshake(&first, &k, &k);
	cr_assert_eq(peer_auth_step(&first.l, first.auth, &first.lout), 1);
	/* the same auth, recorded, against a new challenge */
	struct peer_auth l2;
	struct peer_auth_out out;
	cr_assert_eq(peer_auth_start(&l2, PEER_AUTH_LISTENER, &k, &listener_self, true, &out), 0);
	cr_assert_eq(peer_auth_step(&l2, first.auth, &out), -EACCES);
	cr_assert(strstr(l2.why, "does not match"), "%s", l2.why);
	close_opening(&first);
}

Test(peer_auth, short_proof_refused)
{
	struct peer_key k = make_key(8);
	struct opening o;
	open_handshake(&o, &k, &k);
	o.auth->auth->proof.len = 16;  /* the first half of a right proof */
	cr_assert_eq(peer_auth_step(&o.l, o.auth, &o.lout), -EACCES);
	close_opening(&o);
}

Test(peer_auth, version_mismatch_names_both)
{
	struct peer_key k = make_key(9);
	struct peer_auth l, c;
	struct peer_auth_out lout, cout;
	cr_assert_eq(peer_auth_start(&l, PEER_AUTH_LISTENER, &k, &listener_self, true, &lout), 0);
	cr_assert_eq(peer_auth_start(&c, PEER_AUTH_CONNECTOR, &k, &connector_self, false, &cout), 0);
	Memsrv__PeerMessage *challenge = carry(&lout);
	challenge->challenge->version = 2;
	cr_assert_eq(peer_auth_step(&c, challenge, &cout), -EPROTONOSUPPORT);
	cr_assert(strstr(c.why, "version 2") && strstr(c.why, "version 1"), "%s", c.why);
	challenge->challenge->version = 1;
	cr_assert_eq(peer_auth_start(&c, PEER_AUTH_CONNECTOR, &k, &connector_self, false, &cout), 0);
	cr_assert_eq(peer_auth_step(&c, challenge, &cout), 0);
	memsrv__peer_message__free_unpacked(challenge, NULL);
	/* and the listener, given a newer connector */
	Memsrv__PeerMessage *auth = carry(&cout);
	auth->auth->version = 3;
	cr_assert_eq(peer_auth_step(&l, auth, &lout), -EPROTONOSUPPORT);
	cr_assert(strstr(l.why, "version 3") && strstr(l.why, "version 1"), "%s", l.why);
	memsrv__peer_message__free_unpacked(auth, NULL);
}

Test(peer_auth, message_out_of_turn_refused)
{
	struct peer_key k = make_key(10);
	struct peer_auth l;
	struct peer_auth_out out;
	cr_assert_eq(peer_auth_start(&l, PEER_AUTH_LISTENER, &k, &listener_self, true, &out), 0);
	Memsrv__PeerPing ping = MEMSRV__PEER_PING__INIT;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_PING;
	m.ping = &ping;
	cr_assert_eq(peer_auth_step(&l, &m, &out), -EPROTO);
	cr_assert(strstr(l.why, "ping where auth was due"), "%s", l.why);
}

Test(peer_auth, proof_is_hmac_sha256_of_label_and_nonces)
{
	struct peer_key k = make_key(0x0b);
	uint8_t first[PEER_NONCE_BYTES], second[PEER_NONCE_BYTES], proof[PEER_PROOF_BYTES];
	memset(first, 1, sizeof first);
	memset(second, 2, sizeof second);
	/* python3: hmac.new(b'\x0b'*32, b'memsrv-peer-1 connect' + b'\x01'*32 + b'\x02'*32, 'sha256') */
	static const uint8_t want[PEER_PROOF_BYTES] = {
		0x88, 0x2f, 0xd4, 0x06, 0xe0, 0xba, 0x3e, 0xe5, 0xc5, 0xbd, 0x81, 0x55, 0x1b, 0xff, 0xfa, 0x84,
		0x63, 0xc5, 0x65, 0x21, 0xce, 0xeb, 0xee, 0x64, 0x55, 0xa7, 0xf2, 0x02, 0xe7, 0x3f, 0x26, 0x44,
	};
	peer_auth_proof(&k, "memsrv-peer-1 connect", first, second, proof);
	cr_assert_arr_eq(proof, want, sizeof want);
}

/* A key file of n bytes and mode; its path in path. */
static void write_key(char *path, size_t len, size_t n, mode_t mode)
{
	snprintf(path, len, "/tmp/memsrv-key.XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	uint8_t buf[64];
	memset(buf, 0x5a, sizeof buf);
	cr_assert_eq(write(fd, buf, n), (ssize_t)n);
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
}

Test(peer_auth, key_file_long_enough_and_private)
{
	char path[64], why[256];
	struct peer_key k;
	write_key(path, sizeof path, 32, 0600);
	cr_assert_eq(peer_key_load(&k, path, why, sizeof why), 0, "%s", why);
	cr_assert_eq(k.len, 32);
	cr_assert_eq(chmod(path, 0640), 0);
	cr_assert_eq(peer_key_load(&k, path, why, sizeof why), -EPERM);
	cr_assert(strstr(why, "chmod 600"), "%s", why);
	cr_assert_eq(k.len, 0);
	unlink(path);
	write_key(path, sizeof path, 31, 0400);
	cr_assert_eq(peer_key_load(&k, path, why, sizeof why), -EINVAL);
	cr_assert(strstr(why, "31 bytes"), "%s", why);
	unlink(path);
	cr_assert_eq(peer_key_load(&k, path, why, sizeof why), -ENOENT);
}
