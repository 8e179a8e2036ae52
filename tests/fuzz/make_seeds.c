/* make_seeds: writes the seed corpora of the fuzz targets, one record
 * (4-byte little-endian length, packed message) per file.
 *
 *   make_seeds tests/fuzz/corpus
 * writes corpus/server/ (what clients send: every ClientMessage, valid and
 * refused Hellos) and corpus/wire/ (those and every ServerMessage).  The
 * Hellos use the fds fuzz_server.c sends and its peer pid (4242).
 * corpus/peer/ holds peer streams: fuzz_peer.c's first byte, then frames.
 * corpus/remote/ holds a digest and a remote tier's object of its page.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "codec.h"
#include "image.h"
#include "remote_object.h"
#include "wire.h"

static const char *root;

static void write_record(const char *target, const char *name, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *rec = malloc(WIRE_HEADER + len);
	if (!rec)
		exit(1);
	rec[0] = len, rec[1] = len >> 8, rec[2] = len >> 16, rec[3] = len >> 24;
	protobuf_c_message_pack(msg, rec + WIRE_HEADER);
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, target);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(rec, 1, WIRE_HEADER + len, f) != WIRE_HEADER + len || fclose(f)) {
		fprintf(stderr, "make_seeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	free(rec);
}

/* a client message goes to both targets */
static void client(const char *name, Memsrv__ClientMessage *m)
{
	write_record("server", name, &m->base);
	write_record("wire", name, &m->base);
}

static void server(const char *name, Memsrv__ServerMessage *m)
{
	write_record("wire", name, &m->base);
}

#define REGION(var, addr, sz, back, idx)                        \
	Memsrv__Region var = MEMSRV__REGION__INIT;              \
	var.host_addr = (addr);                                 \
	var.size = (sz);                                        \
	var.page_size = 4096;                                   \
	var.backing = (back);                                   \
	var.has_fd_index = (idx) >= 0;                          \
	var.fd_index = (idx) >= 0 ? (idx) : 0

static void hello(const char *name, Memsrv__Region **regions, size_t n, Memsrv__Quota *quota, const char *vm)
{
	Memsrv__Hello h = MEMSRV__HELLO__INIT;
	h.version_major = MEMSRV__VERSION__VERSION_MAJOR;
	h.version_minor = MEMSRV__VERSION__VERSION_MINOR;
	h.name = (char *)vm;
	h.pid = 4242;
	h.regions = regions;
	h.n_regions = n;
	h.quota = quota;
	h.uffd_features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	h.register_modes = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;
	Memsrv__ClientMessage m = MEMSRV__CLIENT_MESSAGE__INIT;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_HELLO;
	m.hello = &h;
	client(name, &m);
}

static void hellos(void)
{
	REGION(memfd, 0x7f0000000000, 16 << 20, MEMSRV__BACKING__BACKING_MEMFD, 1);
	REGION(memfd2, 0x7f0001000000, 16 << 20, MEMSRV__BACKING__BACKING_MEMFD, 1);
	memfd2.fd_offset = 16 << 20;
	REGION(anon, 0x7e0000000000, 8 << 20, MEMSRV__BACKING__BACKING_ANON, -1);
	REGION(ro, 0x7d0000000000, 1 << 20, MEMSRV__BACKING__BACKING_MEMFD, 2);
	REGION(file, 0x7c0000000000, 1 << 20, MEMSRV__BACKING__BACKING_FILE, 3);
	REGION(pipe, 0x7b0000000000, 1 << 20, MEMSRV__BACKING__BACKING_MEMFD, 4);
	Memsrv__Quota q = MEMSRV__QUOTA__INIT;
	q.has_limit_bytes = q.has_guarantee_bytes = q.has_shares = true;
	q.limit_bytes = 8 << 20;
	q.guarantee_bytes = 2 << 20;
	q.shares = 500;
	q.codec = "zstd";
	q.policy = "lru";

	Memsrv__Region *one[] = { &memfd };
	hello("hello-memfd", one, 1, NULL, "vm2");
	hello("hello-memfd-quota", one, 1, &q, "vm2");
	Memsrv__Region *shared[] = { &memfd, &memfd2, &anon };
	hello("hello-shared-fd-anon", shared, 3, &q, "guest-a.1");
	Memsrv__Region *a[] = { &anon };
	hello("hello-anon", a, 1, NULL, "vm3");
	hello("hello-exists", a, 1, NULL, "vm1");
	hello("hello-node", a, 1, NULL, "node");
	Memsrv__Region *refused[] = { &memfd, &ro };
	hello("hello-readonly-fd", refused, 2, NULL, "vm4");
	Memsrv__Region *f[] = { &file };
	hello("hello-file", f, 1, NULL, "vm5");
	Memsrv__Region *p[] = { &pipe };
	hello("hello-pipe", p, 1, NULL, "vm6");
	Memsrv__Region *overlap[] = { &memfd, &memfd };
	hello("hello-overlap", overlap, 2, NULL, "vm7");
}

static void controls(void)
{
	Memsrv__ClientMessage m = MEMSRV__CLIENT_MESSAGE__INIT;
	Memsrv__ListRequest list = MEMSRV__LIST_REQUEST__INIT;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_LIST;
	m.list = &list;
	client("list", &m);

	Memsrv__StatsRequest stats = MEMSRV__STATS_REQUEST__INIT;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_STATS;
	m.stats = &stats;
	client("stats", &m);

	Memsrv__CheckRequest check = MEMSRV__CHECK_REQUEST__INIT;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_CHECK;
	m.check = &check;
	client("check", &m);

	Memsrv__InfoRequest info = MEMSRV__INFO_REQUEST__INIT;
	info.name = "vm1";
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_INFO;
	m.info = &info;
	client("info", &m);
	info.name = "nosuchvm";
	client("info-enoent", &m);

	Memsrv__EvictRequest ev = MEMSRV__EVICT_REQUEST__INIT;
	ev.name = "vm1";
	ev.has_bytes = true;
	ev.bytes = 1 << 20;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_EVICT;
	m.evict = &ev;
	client("evict-bytes", &m);
	ev.has_bytes = false;
	ev.has_all = ev.all = true;
	client("evict-all", &m);

	Memsrv__SnapshotRequest snap = MEMSRV__SNAPSHOT_REQUEST__INIT;
	snap.name = "vm1";
	snap.dir = "/tmp";
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_SNAPSHOT;
	m.snapshot = &snap;
	client("snapshot", &m);
	snap.dir = "relative/dir";
	client("snapshot-relative", &m);

	Memsrv__BalloonRequest bal = MEMSRV__BALLOON_REQUEST__INIT;
	bal.name = "vm1";
	bal.target_bytes = 8 << 20;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_BALLOON;
	m.balloon = &bal;
	client("balloon", &m);

	char *settings[] = { "codec=zstd", "policy=second-chance", "limit=8M", "guarantee=2M", "shares=2000" };
	Memsrv__SetRequest set = MEMSRV__SET_REQUEST__INIT;
	set.name = "vm1";
	set.settings = settings;
	set.n_settings = 5;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_SET;
	m.set = &set;
	client("set", &m);
	char *node_settings[] = { "limit=1G" };
	set.name = "node";
	set.settings = node_settings;
	set.n_settings = 1;
	client("set-node", &m);

	Memsrv__Detach det = MEMSRV__DETACH__INIT;
	det.has_restore = det.restore = true;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_DETACH;
	m.detach = &det;
	client("detach", &m);

	Memsrv__BalloonResult br = MEMSRV__BALLOON_RESULT__INIT;
	br.target_bytes = 8 << 20;
	br.errno_code = EOPNOTSUPP;
	br.message = "no balloon device";
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_RESULT;
	m.balloon_result = &br;
	client("balloon-result", &m);

	Memsrv__BalloonActual ba = MEMSRV__BALLOON_ACTUAL__INIT;
	ba.actual_bytes = 48 << 20;
	m.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_ACTUAL;
	m.balloon_actual = &ba;
	client("balloon-actual", &m);
}

static void replies(void)
{
	Memsrv__ServerMessage m = MEMSRV__SERVER_MESSAGE__INIT;
	Memsrv__Error err = MEMSRV__ERROR__INIT;
	err.errno_code = EINVAL;
	err.field = "hello.regions[1].page_size";
	err.message = "page size 8192: only hugetlbfs regions have pages other than 4096";
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_ERROR;
	m.error = &err;
	server("error", &m);

	Memsrv__HelloReply hr = MEMSRV__HELLO_REPLY__INIT;
	hr.version_major = 1;
	hr.vm_id = 1;
	hr.size_bytes = hr.resident_bytes = 16 << 20;
	hr.evictable = false;
	hr.not_evictable_reason = "anonymous private memory";
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_HELLO_REPLY;
	m.hello_reply = &hr;
	server("hello-reply", &m);

	Memsrv__DetachReply dr = MEMSRV__DETACH_REPLY__INIT;
	dr.pages_restored = 4096;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_DETACH_REPLY;
	m.detach_reply = &dr;
	server("detach-reply", &m);

	Memsrv__BalloonTarget bt = MEMSRV__BALLOON_TARGET__INIT;
	bt.target_bytes = 8 << 20;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_BALLOON_TARGET;
	m.balloon_target = &bt;
	server("balloon-target", &m);

	Memsrv__Goodbye gb = MEMSRV__GOODBYE__INIT;
	gb.restored = true;
	gb.reason = "memsrv is shutting down";
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_GOODBYE;
	m.goodbye = &gb;
	server("goodbye", &m);

	Memsrv__Percentiles pct = MEMSRV__PERCENTILES__INIT;
	pct.p50 = 1.5;
	pct.p99 = 40;
	pct.count = 1000;
	Memsrv__VmInfo vi = MEMSRV__VM_INFO__INIT;
	vi.name = "vm1";
	vi.codec = "lz4";
	vi.policy = "clock";
	vi.balloon = "unknown";
	vi.size_bytes = 16 << 20;
	vi.fault_latency_us = vi.fault_latency_never_touched_us = vi.fault_latency_stored_us = &pct;
	vi.fault_latency_cache_us = vi.fault_latency_swap_us = &pct;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_VM_INFO;
	m.vm_info = &vi;
	server("vm-info", &m);

	Memsrv__VmInfo *vis[] = { &vi, &vi };
	Memsrv__VmList vl = MEMSRV__VM_LIST__INIT;
	vl.vms = vis;
	vl.n_vms = 2;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_VM_LIST;
	m.vm_list = &vl;
	server("vm-list", &m);

	char *migrate[] = { "vm1" };
	Memsrv__NodeStats ns = MEMSRV__NODE_STATS__INIT;
	ns.vms = 1;
	ns.density = 2.5;
	ns.migrate = migrate;
	ns.n_migrate = 1;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_NODE_STATS;
	m.node_stats = &ns;
	server("node-stats", &m);

	Memsrv__EvictReply er = MEMSRV__EVICT_REPLY__INIT;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_EVICT_REPLY;
	m.evict_reply = &er;
	server("evict-reply", &m);

	Memsrv__SnapshotReply snr = MEMSRV__SNAPSHOT_REPLY__INIT;
	snr.path = "/tmp/img/memory.img";
	snr.pages = 65536;
	snr.objects = 1000;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_SNAPSHOT_REPLY;
	m.snapshot_reply = &snr;
	server("snapshot-reply", &m);

	Memsrv__BalloonReply blr = MEMSRV__BALLOON_REPLY__INIT;
	blr.target_bytes = 8 << 20;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_BALLOON_REPLY;
	m.balloon_reply = &blr;
	server("balloon-reply", &m);

	char *applied[] = { "codec=zstd" };
	Memsrv__SetReply sr = MEMSRV__SET_REPLY__INIT;
	sr.applied = applied;
	sr.n_applied = 1;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_SET_REPLY;
	m.set_reply = &sr;
	server("set-reply", &m);

	Memsrv__Warning w = MEMSRV__WARNING__INIT;
	w.kind = "limit-below-size";
	w.vm = "vm1";
	w.message = "limit 8 MiB is below the VM's 16 MiB";
	Memsrv__Warning *ws[] = { &w };
	Memsrv__CheckReply cr = MEMSRV__CHECK_REPLY__INIT;
	cr.warnings = ws;
	cr.n_warnings = 1;
	m.msg_case = MEMSRV__SERVER_MESSAGE__MSG_CHECK_REPLY;
	m.check_reply = &cr;
	server("check-reply", &m);
}

/* One image of two regions, written by the real writer into a scratch
 * directory and copied into the corpus: zero, same-filled, raw and
 * compressed pages, one object several pages share, a first-touch list. */
static void image(const char *name, enum codec c)
{
	char tmp[] = "/tmp/make-seeds.XXXXXX", why[256];
	if (!mkdtemp(tmp))
		exit(1);
	struct image_info layout = { .n_regions = 2 };
	snprintf(layout.vm_name, sizeof layout.vm_name, "seed");
	layout.regions[0] = (struct image_region){ .guest_phys_addr = 0, .size = 8 * 4096, .page_size = 4096 };
	layout.regions[1] = (struct image_region){ .guest_phys_addr = 1ull << 32, .size = 4 * 4096, .page_size = 4096 };
	struct image_writer *w;
	struct codec_ctx *ctx = codec_ctx_create();
	static uint8_t page[CODEC_PAGE];
	if (!ctx || image_create(tmp, &layout, &w, why, sizeof why)) {
		fprintf(stderr, "make_seeds: image: %s\n", why);
		exit(1);
	}
	for (size_t i = 0; i < sizeof page; i++)
		page[i] = (uint8_t)(i * 7 + i / 64);  /* compresses */
	const void *out;
	uint32_t len = codec_compress(ctx, c, page, CODEC_PAGE, &out);
	uint64_t compressed, raw;
	if (!len || image_add_object(w, c, out, len, &compressed))
		exit(1);
	for (size_t i = 0; i < sizeof page; i++)
		page[i] = (uint8_t)(i * 2654435761u >> 13);  /* does not */
	if (image_add_object(w, c, page, IMAGE_RAW_LEN, &raw))
		exit(1);
	image_set_object(w, 1, compressed);
	image_set_object(w, 2, raw);
	image_set_object(w, 9, compressed);  /* shared across regions */
	image_set_samefill(w, 3, 0x0101010101010101ull);
	image_set_samefill(w, 10, 0xdeadbeefcafef00dull);
	uint64_t first[] = { 9, 1, 2 };
	if (image_set_first_touch(w, first, 3) || image_commit(w, why, sizeof why)) {
		fprintf(stderr, "make_seeds: image: %s\n", why);
		exit(1);
	}
	codec_ctx_destroy(ctx);
	char from[600], to[600];
	snprintf(from, sizeof from, "%s/%s", tmp, IMAGE_FILE);
	snprintf(to, sizeof to, "%s/image", root);
	mkdir(to, 0755);
	snprintf(to, sizeof to, "%s/image/%s", root, name);
	if (rename(from, to) && errno == EXDEV) {
		FILE *in = fopen(from, "rb"), *o = fopen(to, "wb");
		size_t n;
		while (in && o && (n = fread(page, 1, sizeof page, in)) > 0)
			fwrite(page, 1, n, o);
		if (!in || !o || fclose(o) || unlink(from))
			exit(1);
		fclose(in);
	}
	rmdir(tmp);
}

/* A peer stream for fuzz_peer: its first byte (side and read size), then
 * msg as a frame. */
static void peer_seed(const char *name, uint8_t first, const Memsrv__PeerMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(&msg->base);
	uint8_t *buf = malloc(1 + WIRE_HEADER + len);
	if (!buf)
		exit(1);
	buf[0] = first;
	buf[1] = len, buf[2] = len >> 8, buf[3] = len >> 16, buf[4] = len >> 24;
	protobuf_c_message_pack(&msg->base, buf + 1 + WIRE_HEADER);
	char path[512];
	snprintf(path, sizeof path, "%s/peer", root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/peer/%s", root, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, 1 + WIRE_HEADER + len, f) != 1 + WIRE_HEADER + len || fclose(f)) {
		fprintf(stderr, "make_seeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	free(buf);
}

/* What each side of the handshake may be sent, and the peer-ping request. */
static void peers(void)
{
	static uint8_t nonce[32], proof[32];
	Memsrv__PeerChallenge ch = MEMSRV__PEER_CHALLENGE__INIT;
	ch.version = 1;
	ch.nonce = (ProtobufCBinaryData){ sizeof nonce, nonce };
	Memsrv__PeerAuth au = MEMSRV__PEER_AUTH__INIT;
	au.version = 1;
	au.nonce = (ProtobufCBinaryData){ sizeof nonce, nonce };
	au.proof = (ProtobufCBinaryData){ sizeof proof, proof };
	Memsrv__PeerWelcome we = MEMSRV__PEER_WELCOME__INIT;
	we.proof = (ProtobufCBinaryData){ sizeof proof, proof };
	we.memsrv_version = "0.1.0";
	we.node = "seed";
	Memsrv__Error er = MEMSRV__ERROR__INIT;
	er.errno_code = EACCES;
	er.message = "authentication failed";
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_CHALLENGE;
	m.challenge = &ch;
	peer_seed("challenge", 0x00 | 7 << 1, &m);
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_AUTH;
	m.auth = &au;
	peer_seed("auth", 0x01 | 127 << 1, &m);
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_WELCOME;
	m.welcome = &we;
	peer_seed("welcome", 0x00 | 3 << 1, &m);
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_ERROR;
	m.error = &er;
	peer_seed("error", 0x01, &m);

	Memsrv__PeerPingRequest pp = MEMSRV__PEER_PING_REQUEST__INIT;
	pp.address = "127.0.0.1:7070";
	Memsrv__ClientMessage c = MEMSRV__CLIENT_MESSAGE__INIT;
	c.msg_case = MEMSRV__CLIENT_MESSAGE__MSG_PEER_PING;
	c.peer_ping = &pp;
	client("peer-ping", &c);
}

/* A digest and the object of its page, as fuzz_remote reads them: an
 * object of codec c, or the page raw (raw). */
static void remote_seed(const char *name, enum codec c, bool raw)
{
	static uint8_t page[CODEC_PAGE], buf[REMOTE_DIGEST_BYTES + REMOTE_OBJECT_MAX];
	for (size_t i = 0; i < sizeof page; i++)
		page[i] = (uint8_t)(i * 7 + i / 64);
	struct remote_digest d;
	remote_digest_page(page, &d);
	memcpy(buf, d.b, REMOTE_DIGEST_BYTES);
	struct codec_ctx *ctx = codec_ctx_create();
	const void *enc = page;
	uint32_t len = raw ? CODEC_PAGE : codec_compress(ctx, c, page, CODEC_PAGE, &enc);
	if (!ctx || !len)
		exit(1);
	size_t n = REMOTE_DIGEST_BYTES + remote_object_encode(c, enc, len, buf + REMOTE_DIGEST_BYTES);
	codec_ctx_destroy(ctx);
	char path[512];
	snprintf(path, sizeof path, "%s/remote", root);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/remote/%s", root, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, n, f) != n || fclose(f)) {
		fprintf(stderr, "make_seeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
		return 2;
	}
	root = argv[1];
	mkdir(root, 0755);
	hellos();
	controls();
	replies();
	peers();
	image("lz4", CODEC_LZ4);
	image("zstd", CODEC_ZSTD);
	remote_seed("lz4", CODEC_LZ4, false);
	remote_seed("zstd", CODEC_ZSTD, false);
	remote_seed("raw", CODEC_LZ4, true);
	return 0;
}
