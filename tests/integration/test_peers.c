/* Description: two memsrv nodes on this machine, each on its own socket
 * and loopback port.  memsrv-ctl peer-ping succeeds between nodes holding
 * the same --peer-key, and between loopback nodes with none; with different
 * keys it fails with "authentication failed" and the listener logs it; a
 * raw TCP client sending garbage, an oversize length or nothing is dropped
 * with a log line naming it, while a VM attached to that memsrv keeps every
 * page and a good peer's ping still works; a key file others may read
 * stops memsrv at start; without a key a peer that is not loopback is
 * refused; a peer that never answers times a ping out, and one pending at
 * SIGTERM is answered before memsrv exits; an authenticated source that
 * streams malformed pages to a VM waiting for its memory is dropped with a
 * log line naming what was wrong, and the VM then takes a good one's. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"
#include "peer_wire.h"

static char keys[64];  /* scratch directory of the key files */

static void setup(void)
{
	cr_assert(scratch_make(keys, sizeof keys, "/tmp/memsrv-peer-keys.XXXXXX"));
}

static void teardown(void)
{
	scratch_remove(keys);
}

TestSuite(peers, .init = setup, .fini = teardown, .timeout = 120);

/* A key file named name in the scratch directory: 32 bytes of fill, mode. */
static const char *make_key(const char *name, int fill, mode_t mode)
{
	static char paths[4][128];
	static int next;
	char *path = paths[next++ % 4];
	snprintf(path, sizeof paths[0], "%s/%s", keys, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	char buf[32];
	memset(buf, fill, sizeof buf);
	cr_assert_eq(write(fd, buf, sizeof buf), (ssize_t)sizeof buf);
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

struct node {
	struct test_server srv;
	char listen[32];
};

/* A memsrv listening for peers on a loopback port, with key (NULL: none). */
static void node_start(struct node *n, const char *key)
{
	snprintf(n->listen, sizeof n->listen, "127.0.0.1:%u", free_loopback_port());
	const char *with_key[] = { "--peer-listen", n->listen, "--peer-key", key, NULL };
	const char *without[] = { "--peer-listen", n->listen, NULL };
	server_start_with(&n->srv, key ? with_key : without);
}

/* peer-ping from from to to; the reply, asserted to be a reply. */
static Memsrv__ServerMessage *ping(const struct node *from, const struct node *to)
{
	Memsrv__ServerMessage *m;
	cr_assert_eq(ctl_peer_ping(from->srv.sock, to->listen, &m), 0);
	return m;
}

static void expect_ping_ok(const struct node *from, const struct node *to, bool authenticated)
{
	Memsrv__ServerMessage *m = ping(from, to);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_PEER_PING_REPLY, "%s",
		     m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR ? m->error->message : "not a reply");
	const Memsrv__PeerPingReply *r = m->peer_ping_reply;
	cr_assert_str_eq(r->address, to->listen);
	cr_assert_gt(r->rtt_ns, 0);
	cr_assert_lt(r->rtt_ns, 1000000000ull, "a loopback ping under a second");
	cr_assert_str_eq(r->memsrv_version, "0.1.0");
	cr_assert_gt(strlen(r->node), 0);
	cr_assert_eq(r->authenticated, authenticated);
	memsrv__server_message__free_unpacked(m, NULL);
}

/* The Error a failed peer-ping answers; its message in text. */
static int expect_ping_refused(const struct node *from, const struct node *to, char *text, size_t len)
{
	Memsrv__ServerMessage *m = ping(from, to);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR, "peer-ping to %s should fail", to->listen);
	snprintf(text, len, "%s", m->error->message);
	int err = m->error->errno_code;
	memsrv__server_message__free_unpacked(m, NULL);
	return err;
}

Test(peers, same_key_ping_succeeds_and_json_says_so)
{
	const char *key = make_key("key", 0x11, 0600);
	struct node a, b;
	node_start(&a, key);
	node_start(&b, key);
	expect_ping_ok(&a, &b, true);
	expect_ping_ok(&b, &a, true);
	cr_assert(server_log_has(&b.srv, "authenticated"));
	/* memsrv-ctl itself, --json as everywhere */
	char cmd[512], out[1024];
	snprintf(cmd, sizeof cmd, "%s --socket %s --json peer-ping %s", getenv("CTL_BIN"), a.srv.sock, b.listen);
	cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
	cr_assert(strstr(out, "\"authenticated\":true") && strstr(out, "\"rtt_ns\":"), "%s", out);
	server_stop(&a.srv);
	server_stop(&b.srv);
}

Test(peers, different_keys_fail_and_the_listener_logs_it)
{
	struct node a, c;
	node_start(&a, make_key("key-a", 0x22, 0600));
	node_start(&c, make_key("key-c", 0x33, 0400));
	char text[512];
	cr_assert_eq(expect_ping_refused(&a, &c, text, sizeof text), ECONNREFUSED);
	cr_assert(strstr(text, "authentication failed"), "%s", text);
	cr_assert(strstr(text, c.listen), "the error names the peer: %s", text);
	cr_assert(server_log_has(&c.srv, "authentication failed"));
	cr_assert(server_log_has(&c.srv, "peer 127.0.0.1:"), "the listener's line names the peer's address");
	/* memsrv-ctl: refused, exit status 1, the reason on stderr */
	char cmd[512], out[1024];
	snprintf(cmd, sizeof cmd, "%s --socket %s peer-ping %s 2>&1", getenv("CTL_BIN"), a.srv.sock, c.listen);
	cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "%s", out);
	cr_assert(strstr(out, "authentication failed"), "%s", out);
	server_stop(&a.srv);
	server_stop(&c.srv);
}

Test(peers, key_on_one_side_only_fails_both_ways)
{
	struct node keyed, keyless;
	node_start(&keyed, make_key("key", 0x44, 0600));
	node_start(&keyless, NULL);
	char text[512];
	expect_ping_refused(&keyless, &keyed, text, sizeof text);
	cr_assert(strstr(text, "authentication failed") && strstr(text, "no proof"), "%s", text);
	expect_ping_refused(&keyed, &keyless, text, sizeof text);
	cr_assert(strstr(text, "authentication failed") && strstr(text, "no proof"), "%s", text);
	server_stop(&keyed.srv);
	server_stop(&keyless.srv);
}

Test(peers, without_keys_loopback_ping_works)
{
	struct node d, e;
	node_start(&d, NULL);
	node_start(&e, NULL);
	expect_ping_ok(&d, &e, false);
	cr_assert(server_log_has(&e.srv, "loopback, no key"));
	server_stop(&d.srv);
	server_stop(&e.srv);
}

/* An IPv4 address of this machine's that is not loopback, or false. */
static bool outside_address(char *out, size_t len)
{
	struct ifaddrs *ifs;
	bool found = false;
	if (getifaddrs(&ifs))
		return false;
	for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
			continue;
		const struct sockaddr_in *in = (const struct sockaddr_in *)i->ifa_addr;
		if ((ntohl(in->sin_addr.s_addr) >> 24) == 127)
			continue;
		found = inet_ntop(AF_INET, &in->sin_addr, out, (socklen_t)len) != NULL;
	}
	freeifaddrs(ifs);
	return found;
}

Test(peers, without_a_key_a_peer_that_is_not_loopback_is_refused)
{
	char ip[INET_ADDRSTRLEN];
	if (!outside_address(ip, sizeof ip))
		cr_skip_test("this machine has no IPv4 address but loopback");
	struct node listener, dialer;
	unsigned port = free_loopback_port();
	snprintf(listener.listen, sizeof listener.listen, "0.0.0.0:%u", port);
	const char *opts[] = { "--peer-listen", listener.listen, NULL };
	server_start_with(&listener.srv, opts);
	node_start(&dialer, NULL);
	struct node outside;  /* the listener, reached by its outside address: the dialer's is not loopback */
	snprintf(outside.listen, sizeof outside.listen, "%s:%u", ip, port);
	char text[512];
	cr_assert_eq(expect_ping_refused(&dialer, &outside, text, sizeof text), ECONNREFUSED);
	cr_assert(strstr(text, "authentication failed") && strstr(text, "loopback peers only"), "%s", text);
	cr_assert(server_log_has(&listener.srv, "accepts loopback peers only"));
	/* by loopback the same listener answers */
	struct node inside;
	snprintf(inside.listen, sizeof inside.listen, "127.0.0.1:%u", port);
	expect_ping_ok(&dialer, &inside, false);
	server_stop(&listener.srv);
	server_stop(&dialer.srv);
}

Test(peers, unreachable_peer_is_a_clear_error)
{
	struct node a, nobody;
	node_start(&a, NULL);
	snprintf(nobody.listen, sizeof nobody.listen, "127.0.0.1:%u", free_loopback_port());
	char text[512];
	cr_assert_eq(expect_ping_refused(&a, &nobody, text, sizeof text), ECONNREFUSED);
	cr_assert(strstr(text, "cannot connect") && strstr(text, "refused"), "%s", text);
	/* an address that is not one is refused before anything is dialled */
	Memsrv__ServerMessage *m;
	cr_assert_eq(ctl_peer_ping(a.srv.sock, "localhost:7070", &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR);
	cr_assert_eq(m->error->errno_code, EINVAL);
	memsrv__server_message__free_unpacked(m, NULL);
	server_stop(&a.srv);
}

/* A listener of the test's own that never says a word: connections wait
 * in its backlog.  Its address in n->listen. */
static int silent_listener(struct node *n)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	cr_assert(fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof sa) && !listen(fd, 8) &&
		  !getsockname(fd, (struct sockaddr *)&sa, &len));
	snprintf(n->listen, sizeof n->listen, "127.0.0.1:%u", ntohs(sa.sin_port));
	return fd;
}

Test(peers, silent_peer_times_out_and_shutdown_answers_a_pending_ping)
{
	struct node a, mute;
	node_start(&a, NULL);
	int lfd = silent_listener(&mute);
	char text[512];
	cr_assert_eq(expect_ping_refused(&a, &mute, text, sizeof text), ETIMEDOUT);
	cr_assert(strstr(text, "timed out") && strstr(text, "in the handshake"), "%s", text);
	/* one more, pending when memsrv is told to stop: answered, and memsrv exits cleanly */
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		Memsrv__ServerMessage *m = NULL;
		int ret = ctl_peer_ping(a.srv.sock, mute.listen, &m);
		_exit(answer_errno(ret, m) == ESHUTDOWN ? 0 : 10);
	}
	usleep(300 * 1000);
	server_stop(&a.srv);
	cr_assert_eq(wait_exit(child), 0, "the pending peer-ping is answered ESHUTDOWN");
	close(lfd);
}

/* A raw TCP connection to node n, its challenge read (so the listener
 * thread is known to have it). */
static int raw_connect(const struct node *n)
{
	unsigned port = (unsigned)atoi(strrchr(n->listen, ':') + 1);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert(fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof sa), "connect %s: %s", n->listen,
		  strerror(errno));
	uint8_t hdr[4], body[256];
	cr_assert_eq(recv(fd, hdr, 4, MSG_WAITALL), 4, "the challenge's header");
	uint32_t len = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
	cr_assert(len > 0 && len < sizeof body, "a challenge of %u bytes", len);
	cr_assert_eq(recv(fd, body, len, MSG_WAITALL), (ssize_t)len);
	return fd;
}

/* "peer 127.0.0.1:PORT:", how memsrv's lines about fd's connection begin. */
static void peer_name(int fd, char *out, size_t len)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(out, len, "peer 127.0.0.1:%u:", ntohs(sa.sin_port));
}

/* Whether memsrv closed fd within timeout_ms (what it sent before is read
 * and skipped: an error frame). */
static bool closed_within(int fd, int timeout_ms)
{
	char buf[4096];
	for (int waited = 0; waited < timeout_ms; waited += 50) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
	}
	return false;
}

static void send_all(int fd, const void *buf, size_t n)
{
	cr_assert_eq(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* A raw client that sends n bytes to node b is dropped within 2 s, with
 * one log line that says says. */
static void expect_dropped(const struct node *b, const void *bytes, size_t n, const char *says)
{
	char name[64];
	int fd = raw_connect(b);
	peer_name(fd, name, sizeof name);
	send_all(fd, bytes, n);
	cr_assert(closed_within(fd, 2000), "%s: not dropped at once", says);
	close(fd);
	cr_assert(server_log_has(&b->srv, says), "the log does not say '%s'", says);
	cr_assert_eq(server_log_count(&b->srv, name), 1, "one line for the drop of %s", name);
}

Test(peers, hostile_clients_dropped_while_vm_and_good_peers_go_on)
{
	const char *key = make_key("key", 0x55, 0600);
	struct node a, b;
	node_start(&a, key);
	node_start(&b, key);
	struct test_sim bystander;
	bystander_start(&bystander, &b.srv, "8M");

	/* nothing at all: held past the handshake's time, then dropped; a good
	 * peer's ping goes through meanwhile */
	char name[64];
	int silent = raw_connect(&b);
	peer_name(silent, name, sizeof name);
	expect_ping_ok(&a, &b, true);
	cr_assert_eq(ctl_vm_count(&b.srv), 1, "the control socket answers");
	cr_assert(closed_within(silent, 6000), "a silent peer is dropped after the handshake time");
	close(silent);
	cr_assert(server_log_has(&b.srv, "timed out: no handshake within"));
	cr_assert_eq(server_log_count(&b.srv, name), 1, "one line for the drop of %s", name);

	/* a frame that is no PeerMessage */
	expect_dropped(&b, "\x08\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff", 12,
		       "malformed stream: payload of 8 bytes is not a memsrv.PeerMessage");
	/* a length over the limit: dropped from the header, the payload never waited for */
	expect_dropped(&b, "\x00\x00\x00\x7f", 4, "over the limit");

	sim_expect_verified(&bystander, 2048);
	expect_ping_ok(&a, &b, true);
	sim_quit_verified(&bystander, 2048);
	server_stop(&a.srv);
	server_stop(&b.srv);
}

/* Sends m on fd as one frame. */
static void send_message(int fd, const Memsrv__PeerMessage *m)
{
	struct peer_tx tx;
	peer_tx_init(&tx);
	cr_assert_eq(peer_tx_queue(&tx, m), 0);
	send_all(fd, tx.buf, tx.len);
	peer_tx_free(&tx);
}

/* A raw connection to a keyless node that completes the handshake by hand
 * (loopback, empty proof): a peer as far as memsrv knows. */
static int raw_authenticated(const struct node *n)
{
	int fd = raw_connect(n);
	static uint8_t nonce[32];
	Memsrv__PeerAuth auth = MEMSRV__PEER_AUTH__INIT;
	auth.version = 1;
	auth.nonce = (ProtobufCBinaryData){ sizeof nonce, nonce };
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_AUTH;
	m.auth = &auth;
	send_message(fd, &m);
	struct peer_rx rx;
	peer_rx_init(&rx, PEER_WIRE_HANDSHAKE_MAX_PAYLOAD);
	Memsrv__PeerMessage *welcome = NULL;
	struct wire_fault fault = { "" };
	int ret = 0;
	while (ret == 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		cr_assert_eq(poll(&p, 1, 2000), 1, "the welcome comes");
		cr_assert_gt(peer_rx_read(&rx, fd), 0);
		ret = peer_rx_next(&rx, &welcome, &fault);
	}
	cr_assert_eq(ret, 1, "%s", fault.what);
	cr_assert_eq(welcome->msg_case, MEMSRV__PEER_MESSAGE__MSG_WELCOME);
	memsrv__peer_message__free_unpacked(welcome, NULL);
	peer_rx_free(&rx);
	return fd;
}

Test(peers, authenticated_peer_dropped_on_a_malformed_stream_too)
{
	struct node d, e;
	node_start(&d, NULL);
	node_start(&e, NULL);
	char name[64];
	/* past the handshake a frame may be up to 1 MiB + 64 KiB: one larger is dropped from its header */
	int fd = raw_authenticated(&e);
	peer_name(fd, name, sizeof name);
	uint8_t hdr[4];
	wire_put_le32(hdr, PEER_WIRE_MAX_PAYLOAD + 1);
	send_all(fd, hdr, sizeof hdr);
	cr_assert(closed_within(fd, 2000));
	close(fd);
	cr_assert(server_log_has(&e.srv, "over the limit of 1114112"));
	cr_assert_eq(server_log_count(&e.srv, name), 2, "connected, then the drop: %s", name);
	/* a handshake message once it is over */
	fd = raw_authenticated(&e);
	peer_name(fd, name, sizeof name);
	static uint8_t nonce[32];
	Memsrv__PeerChallenge ch = MEMSRV__PEER_CHALLENGE__INIT;
	ch.version = 1;
	ch.nonce = (ProtobufCBinaryData){ sizeof nonce, nonce };
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_CHALLENGE;
	m.challenge = &ch;
	send_message(fd, &m);
	cr_assert(closed_within(fd, 2000));
	close(fd);
	cr_assert(server_log_has(&e.srv, "malformed stream: unexpected challenge after the handshake"));
	expect_ping_ok(&d, &e, false);
	server_stop(&d.srv);
	server_stop(&e.srv);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	long kib = -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* A peer that sends pings and reads none of the pongs: memsrv stops
 * reading it once its answers back up (backpressure), so the peer's sends
 * stall instead of memsrv's buffer growing, and the other peers go on. */
Test(peers, a_peer_that_reads_nothing_is_held_back_not_buffered_without_bound)
{
	struct node d, e;
	node_start(&d, NULL);
	node_start(&e, NULL);
	int fd = raw_authenticated(&e);
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	cr_assert_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	/* 64 KiB of pings, sent over and over */
	struct peer_tx tx;
	peer_tx_init(&tx);
	Memsrv__PeerPing ping = MEMSRV__PEER_PING__INIT;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_PING;
	m.ping = &ping;
	while (tx.len < 65536) {
		ping.seq = tx.len + 1;
		cr_assert_eq(peer_tx_queue(&tx, &m), 0);
	}
	long before = rss_kib(e.srv.pid);
	uint64_t sent = 0;
	size_t off = 0;  /* in tx: frames are never torn */
	double t0 = now_s(), stalled_since = 0;
	bool held = false;
	while (now_s() - t0 < 10 && sent < (512ull << 20)) {
		ssize_t n = send(fd, tx.buf + off, tx.len - off, MSG_NOSIGNAL);
		if (n > 0) {
			sent += (uint64_t)n;
			off = (off + (size_t)n) % tx.len;
			stalled_since = 0;
			continue;
		}
		cr_assert(n < 0 && errno == EAGAIN, "send: %s", strerror(errno));
		if (!stalled_since)
			stalled_since = now_s();
		else if ((held = now_s() - stalled_since > 1))
			break;  /* memsrv reads no more of it */
		usleep(1000);
	}
	peer_tx_free(&tx);
	long after = rss_kib(e.srv.pid);
	cr_log_info("sent %lu KiB of pings; memsrv's RSS %ld -> %ld KiB", (unsigned long)(sent >> 10), before, after);
	/* the measure is the stall, not memsrv's RSS (ASan's quarantine keeps what was freed) */
	cr_assert(held, "memsrv went on reading a peer that reads nothing: %lu KiB sent in %.1f s",
		  (unsigned long)(sent >> 10), now_s() - t0);
	cr_assert_lt(sent, 64ull << 20, "memsrv read %lu KiB before it held the peer back", (unsigned long)(sent >> 10));
	expect_ping_ok(&d, &e, false);
	close(fd);
	server_stop(&d.srv);
	server_stop(&e.srv);
}

Test(peers, key_file_others_may_read_stops_memsrv)
{
	const char *key = make_key("open-key", 0x66, 0644);
	char cmd[512], out[1024];
	snprintf(cmd, sizeof cmd, "%s --socket %s/x.sock --peer-key %s 2>&1", getenv("MEMSRV_BIN"), keys, key);
	cr_assert_eq(run_capture(cmd, out, sizeof out), 64, "%s", out);
	cr_assert(strstr(out, "--peer-key") && strstr(out, "chmod 600"), "%s", out);
	const char *short_key = make_key("short-key", 0x66, 0600);
	cr_assert_eq(truncate(short_key, 16), 0);
	snprintf(cmd, sizeof cmd, "%s --socket %s/x.sock --peer-key %s 2>&1", getenv("MEMSRV_BIN"), keys, short_key);
	cr_assert_eq(run_capture(cmd, out, sizeof out), 64, "%s", out);
	cr_assert(strstr(out, "16 bytes"), "%s", out);
}

/* The next frame from fd, within 5 s. */
static Memsrv__PeerMessage *read_message(int fd)
{
	struct peer_rx rx;
	peer_rx_init(&rx, PEER_WIRE_MAX_PAYLOAD);
	Memsrv__PeerMessage *m = NULL;
	struct wire_fault fault = { "" };
	int ret = 0;
	while (ret == 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		cr_assert_eq(poll(&p, 1, 5000), 1, "an answer comes");
		cr_assert_gt(peer_rx_read(&rx, fd), 0, "the connection stays");
		ret = peer_rx_next(&rx, &m, &fault);
	}
	cr_assert_eq(ret, 1, "%s", fault.what);
	peer_rx_free(&rx);
	return m;
}

/* A hand-made source for VM name (16 MiB, one region), accepted. */
static int raw_source(const struct node *n, const char *name)
{
	int fd = raw_authenticated(n);
	Memsrv__MigrateRegion reg = MEMSRV__MIGRATE_REGION__INIT, *regs[] = { &reg };
	reg.size = 16 << 20;
	reg.page_size = 4096;
	Memsrv__MigrateBegin b = MEMSRV__MIGRATE_BEGIN__INIT;
	b.name = (char *)name;
	b.n_regions = 1;
	b.regions = regs;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_BEGIN;
	m.migrate_begin = &b;
	send_message(fd, &m);
	Memsrv__PeerMessage *a = read_message(fd);
	cr_assert_eq(a->msg_case, MEMSRV__PEER_MESSAGE__MSG_MIGRATE_ACCEPT, "accepted");
	memsrv__peer_message__free_unpacked(a, NULL);
	return fd;
}

/* One page record sent by a hand-made source, which is then dropped
 * with a log line saying why. */
static void expect_page_refused(const struct node *n, const char *name, Memsrv__MigratePage *page, const char *why)
{
	int fd = raw_source(n, name);
	Memsrv__MigratePage *pages[] = { page };
	Memsrv__MigratePages mp = MEMSRV__MIGRATE_PAGES__INIT;
	mp.n_pages = 1;
	mp.pages = pages;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_PAGES;
	m.migrate_pages = &mp;
	send_message(fd, &m);
	cr_assert(closed_within(fd, 5000), "the stream is dropped");
	close(fd);
	cr_assert(server_log_has(&n->srv, why), "the log says %s", why);
}

Test(peers, a_source_streaming_malformed_pages_is_dropped_and_the_vm_waits_for_a_good_one)
{
	struct node src, dst;
	node_start(&src, NULL);
	node_start(&dst, NULL);
	struct test_sim from, to;
	sim_start(&from, &src.srv, "vm8", "--size", "16M", "--verify", NULL);
	sim_start(&to, &dst.srv, "vm8", "--size", "16M", "--incoming", "--verify", NULL);

	Memsrv__MigratePage p = MEMSRV__MIGRATE_PAGE__INIT;
	p.page = 1ull << 40;
	p.has_word = true;
	expect_page_refused(&dst, "vm8", &p, "is past the VM's 4096");
	static uint8_t junk[100];
	memset(junk, 0xa5, sizeof junk);
	p = (Memsrv__MigratePage)MEMSRV__MIGRATE_PAGE__INIT;
	p.page = 7;
	p.has_codec = true;
	p.codec = 0;
	p.has_data = true;
	p.data = (ProtobufCBinaryData){ sizeof junk, junk };
	expect_page_refused(&dst, "vm8", &p, "that do not decompress to a page");
	p.codec = 9;
	expect_page_refused(&dst, "vm8", &p, "codec 9, which this memsrv does not know");
	p = (Memsrv__MigratePage)MEMSRV__MIGRATE_PAGE__INIT;
	p.page = 8;
	p.has_hash = true;
	p.hash = (ProtobufCBinaryData){ 3, junk };
	expect_page_refused(&dst, "vm8", &p, "offered with a 3-byte hash");
	p = (Memsrv__MigratePage)MEMSRV__MIGRATE_PAGE__INIT;
	p.page = 9;
	expect_page_refused(&dst, "vm8", &p, "came with no content");
	cr_assert_geq(server_log_count(&dst.srv, "waits for another source"), 5);

	/* a real source after them: every page arrives */
	char dir[64], cmd[128];
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-peer-migrate.XXXXXX"));
	snprintf(cmd, sizeof cmd, "save %s", dir);
	struct sim_reply r;
	sim_cmd(&from, cmd, &r);
	cr_assert(r.ok, "%s", r.error);
	int ctl = fork();
	cr_assert_geq(ctl, 0);
	if (ctl == 0) {
		Memsrv__ServerMessage *reply;
		struct ctl_req req;
		ctl_build_migrate(&req, "vm8", dst.listen);
		_exit(ctl_request(src.srv.sock, &req.msg, &reply) == 0 &&
		      reply->msg_case == MEMSRV__SERVER_MESSAGE__MSG_MIGRATE_REPLY ? 0 : 1);
	}
	for (int tries = 0;; tries++) {
		usleep(20000);
		sim_cmd(&from, "migrated", &r);
		if (r.ok)
			break;
		cr_assert_lt(tries, 250, "the migration never started: %s", r.error);
	}
	cr_assert_eq(wait_exit(ctl), 0, "the migration completed");
	cr_assert_eq(wait_exit(from.pid), 0);
	snprintf(cmd, sizeof cmd, "expect %s", dir);
	sim_cmd(&to, cmd, &r);
	cr_assert(r.ok, "%s", r.error);
	sim_quit_verified(&to, 4096);
	scratch_remove(dir);
	server_stop(&src.srv);
	server_stop(&dst.srv);
}
