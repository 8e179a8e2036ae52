/* migrate_out: a VM's memory sent to another node while it runs
 * (migrate_out.h says how the destination never gets a page older than
 * the source's last write). */
#include "migrate_out.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>


#include "fault.h"
#include "image.h"
#include "image_pages.h"
#include "log.h"
#include "migrate_socket.h"
#include "peer_wire.h"
#include "sampler.h"
#include "swap_reads.h"
#include "uffd_op.h"
#include "wire.h"

#define PAGE 4096u
#define RAW_ABOVE (PAGE / 4 * 3)      /* compressed larger than this: sent raw */
#define PULLS_MAX 4096u               /* pages the destination asked for, not yet served */
#define OFFER_WINDOW 1024u            /* offers judged together */
#define OFFER_MISSES_OFF 0.9          /* wanted back past this share: offers cost more than they save */
#define OFFER_PROBE_EVERY 16u         /* batches, one of them offered while offers do not pay */
#define INVALIDATE_RUNS_PER_FRAME 32768u
#define STEP_NS (2ull * 1000 * 1000)  /* pages sent per step: faults wait for no more than this */

enum mo_phase {
	MO_WAIT_ACCEPT,   /* MigrateBegin sent */
	MO_RUNNING,       /* rounds while the guest runs */
	MO_FINAL,         /* the VM stopped: the last pages go */
	MO_WAIT_CONFIRM,  /* MigrateDone sent */
};

struct migrate_out {
	int fd;
	int ufd;                /* the urgent connection: pulled pages after the stop (-1: none) */
	struct peer_tx utx;
	bool to_urgent;         /* the batch being made goes on it */
	uint8_t token[16];      /* names the migration to the destination on both connections */
	char address[128];
	int reply_fd;
	struct peer_rx rx;
	struct peer_tx tx;
	enum mo_phase phase;
	uint64_t pages;
	uint64_t *dirty;        /* a bit per page (VM-wide): to send (again) */
	uint64_t *sent;         /* a bit per page: the destination got some version of it */
	uint64_t *lacks;        /* a bit per page: the destination wanted its content once, so it goes with it */
	uint64_t dirty_count;
	uint64_t cursor;        /* the round's next page */
	uint64_t pause_until_ns;
	uint64_t deadline_ns;   /* for the destination's Accept or Confirm */
	uint64_t pulls[PULLS_MAX];        /* pages the destination's faults wait on */
	unsigned pull_head, pull_len;
	bool offering;          /* the batch being made offers content by hash and digest */
	struct vm_job *detach;  /* the VMM's detach, answered at the end */
	uint8_t *buf;           /* MIGRATE_BATCH_PAGES pages read from the fd */
	uint8_t *objs;          /* a copy of each page's object, CODEC_PAGE apart */
	uint8_t *raw;           /* one page decompressed, to be hashed */
	uint8_t sums[MIGRATE_BATCH_PAGES][16 + 32];  /* each offer's hash and digest */
	Memsrv__MigratePage items[MIGRATE_BATCH_PAGES];
	Memsrv__MigratePage *item_ptrs[MIGRATE_BATCH_PAGES];
	unsigned n_items;
	/* what the reply says */
	uint64_t t_start, t_stop;
	uint64_t pages_sent, data_pages, bytes_sent, resent_pages, final_pages, offered_pages;
	uint64_t remote_named_pages;  /* of the offered: objects in the cluster, by name */
	/* whether offers pay: the destination's wants against the offers of
	 * the last window; past OFFER_MISSES_OFF of them, content goes at once
	 * (but one batch in OFFER_PROBE_EVERY, to notice when that changes) */
	uint64_t window_offers, window_wants, batches;
	bool offers_pay_not;
	uint32_t rounds;
	int err;
	char why[256];
};

static bool bit(const uint64_t *map, uint64_t page)
{
	return map[page / 64] >> (page % 64) & 1;
}

void migrate_out_mark(struct vm *vm, uint64_t page, uint64_t count)
{
	struct migrate_out *mo = vm->eng.migrate_out;
	for (uint64_t p = page; p < page + count && p < mo->pages; p++) {
		uint64_t m = 1ull << (p % 64);
		if (!(mo->dirty[p / 64] & m)) {
			mo->dirty[p / 64] |= m;
			mo->dirty_count++;
			mo->resent_pages += (mo->sent[p / 64] & m) != 0;  /* changed since it went: to go again */
		}
	}
}

static void clear_dirty(struct migrate_out *mo, uint64_t page)
{
	uint64_t m = 1ull << (page % 64);
	if (mo->dirty[page / 64] & m) {
		mo->dirty[page / 64] &= ~m;
		mo->dirty_count--;
	}
}

/* The first failure is what the requester hears. */
__attribute__((format(printf, 3, 4)))
static void fail(struct migrate_out *mo, int err, const char *fmt, ...)
{
	if (mo->err)
		return;
	mo->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(mo->why, sizeof mo->why, fmt, ap);
	va_end(ap);
}

static void queue(struct migrate_out *mo, const Memsrv__PeerMessage *msg)
{
	struct peer_tx *tx = mo->to_urgent ? &mo->utx : &mo->tx;
	size_t before = peer_tx_backlog(tx);
	int ret = peer_tx_queue(tx, msg);
	if (ret)
		fail(mo, ret, "packing a %s failed: %s", peer_message_kind(msg), strerror(-ret));
	else
		mo->bytes_sent += peer_tx_backlog(tx) - before;
}

static void flush_batch(struct migrate_out *mo)
{
	if (!mo->n_items)
		return;
	Memsrv__MigratePages mp = MEMSRV__MIGRATE_PAGES__INIT;
	mp.n_pages = mo->n_items;
	mp.pages = mo->item_ptrs;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_PAGES;
	m.migrate_pages = &mp;
	queue(mo, &m);
	mo->n_items = 0;
}

static Memsrv__MigratePage *new_item(struct migrate_out *mo, uint64_t page)
{
	Memsrv__MigratePage *it = &mo->items[mo->n_items];
	memsrv__migrate_page__init(it);
	it->page = page;
	mo->item_ptrs[mo->n_items++] = it;
	return it;
}

static void item_word(Memsrv__MigratePage *it, uint64_t word)
{
	it->has_word = true;
	it->word = word;
}

static void item_data(struct migrate_out *mo, Memsrv__MigratePage *it, const void *data, uint32_t len, int codec)
{
	it->has_data = true;
	it->data.data = (uint8_t *)data;
	it->data.len = len;
	if (codec >= 0) {
		it->has_codec = true;
		it->codec = (uint32_t)codec;
	}
	mo->data_pages++;
}

/* An offer of the content of hash (lo, hi) whose SHA-256 is already in
 * the item's sum. */
static void item_offer_sum(struct migrate_out *mo, Memsrv__MigratePage *it, uint64_t lo, uint64_t hi)
{
	uint8_t *sum = mo->sums[it - mo->items];
	for (int i = 0; i < 8; i++) {
		sum[i] = (uint8_t)(lo >> (8 * i));
		sum[8 + i] = (uint8_t)(hi >> (8 * i));
	}
	it->has_hash = it->has_digest = true;
	it->hash.data = sum;
	it->hash.len = 16;
	it->digest.data = sum + 16;
	it->digest.len = 32;
	mo->offered_pages++;
	mo->window_offers++;
}

/* An offer: the content's hash and digest, computed from raw (4 KiB). */
static void item_offer(struct migrate_out *mo, Memsrv__MigratePage *it, const void *raw)
{
	uint64_t lo, hi;
	store_content_hash(raw, &lo, &hi);
	struct remote_digest d;
	remote_digest_page(raw, &d);  /* the remote tier's name of it too */
	memcpy(mo->sums[it - mo->items] + 16, d.b, sizeof d.b);
	item_offer_sum(mo, it, lo, hi);
}

/* An object in the remote tier's cluster goes by its name, unread: a
 * destination of the same cluster takes a reference to it there (its
 * digest is the cluster's key); one that lacks it asks for the content. */
static bool offer_remote(struct vm *vm, struct migrate_out *mo, Memsrv__MigratePage *it, obj_id id)
{
	struct store_remote_name name;
	if (bit(mo->lacks, it->page) || !store_remote_name(vm->store, id, &name))
		return false;
	memcpy(mo->sums[it - mo->items] + 16, name.digest.b, sizeof name.digest.b);
	item_offer_sum(mo, it, name.hash_lo, name.hash_hi);
	mo->remote_named_pages++;
	return true;
}

/* Bytes codec made of a page (len CODEC_PAGE: raw): offered by their
 * content's hash, or sent.  A stored copy is decompressed to be hashed. */
static void content_or_offer(struct vm *vm, struct migrate_out *mo, Memsrv__MigratePage *it, const void *data,
			     uint32_t len, int codec)
{
	if (!mo->offering || bit(mo->lacks, it->page)) {
		item_data(mo, it, data, len, codec);
		return;
	}
	if (codec >= 0 && codec_decompress(vm->eng.codec_ctx, (enum codec)codec, data, len, mo->raw)) {
		fail(mo, -EILSEQ, "page %" PRIu64 "'s stored copy does not decompress", it->page);
		return;
	}
	item_offer(mo, it, codec >= 0 ? mo->raw : data);
}

/* Content read from the VMM's memory or kept raw: a word, offered, or
 * sent compressed (copied: the codec's output lives until its next call)
 * or raw. */
static void encode_content(struct vm *vm, struct migrate_out *mo, Memsrv__MigratePage *it, const void *data)
{
	uint64_t word;
	if (page_is_samefilled(data, &word)) {
		item_word(it, word);
		return;
	}
	if (mo->offering && !bit(mo->lacks, it->page)) {
		item_offer(mo, it, data);
		return;
	}
	enum codec c = (enum codec)atomic_load(&vm->codec);
	const void *out;
	uint32_t len = codec_compress(vm->eng.codec_ctx, c, data, RAW_ABOVE + 1, &out);
	if (!len) {
		item_data(mo, it, data, PAGE, -1);
		return;
	}
	uint8_t *copy = mo->objs + (size_t)(it - mo->items) * CODEC_PAGE;
	memcpy(copy, out, len);
	item_data(mo, it, copy, len, (int)c);
}

/* A stored page: its object as the store keeps it. */
static void encode_stored(struct vm *vm, struct migrate_out *mo, Memsrv__MigratePage *it, obj_id id)
{
	if (offer_remote(vm, mo, it, id))
		return;
	uint8_t *copy = mo->objs + (size_t)(it - mo->items) * CODEC_PAGE;
	struct store_stored st;
	int ret = store_read_stored(vm->store, vm->eng.codec_ctx, id, copy, &st);
	if (ret) {
		fail(mo, ret, "page %" PRIu64 "'s stored copy cannot be read: %s", it->page, strerror(-ret));
		return;
	}
	store_unpin(vm->store, id);  /* copied: what it names later is no matter */
	if (st.samefilled)
		item_word(it, st.word);
	else
		content_or_offer(vm, mo, it, copy, st.len, st.len == CODEC_PAGE ? -1 : (int)st.codec);
}

/* A page still in the image the VM was resumed from: its object as it is there. */
static void encode_from_image(struct vm *vm, struct migrate_out *mo, Memsrv__MigratePage *it)
{
	char why[300];
	uint64_t value;
	int kind = image_pages_entry(vm, it->page, &value, why, sizeof why);
	if (kind < 0) {
		fail(mo, kind, "%s", why);
		return;
	}
	if (kind != IMAGE_PAGE_OBJECT) {
		item_word(it, kind == IMAGE_PAGE_SAMEFILL ? value : 0);
		return;
	}
	uint8_t *copy = mo->objs + (size_t)(it - mo->items) * CODEC_PAGE;
	uint32_t len;
	enum codec c;
	int ret = image_pages_object(vm, it->page, value, copy, &len, &c, why, sizeof why);
	if (ret) {
		fail(mo, ret, "%s", why);
		return;
	}
	content_or_offer(vm, mo, it, copy, len, len == IMAGE_RAW_LEN ? -1 : (int)c);
}

/* Page idx of r as its entry says it is now; data: its content if it is
 * resident and was read (NULL: read here). */
static void encode_page(struct vm *vm, struct migrate_out *mo, struct region *r, uint64_t idx, const void *data)
{
	uint64_t page = r->first_page + idx;
	page_entry e = r->pt.entries[idx];
	Memsrv__MigratePage *it = new_item(mo, page);
	switch (pe_state(e)) {
	case PAGE_NEVER:
	case PAGE_ZERO:
		item_word(it, 0);
		break;
	case PAGE_STORED:
		encode_stored(vm, mo, it, (obj_id)pe_handle(e));
		break;
	case PAGE_PROBATION:
		encode_content(vm, mo, it, sampler_page(vm, e));
		break;
	case PAGE_IMAGE:
		encode_from_image(vm, mo, it);
		break;
	case PAGE_POISONED:
		it->has_poisoned = true;
		it->poisoned = true;  /* lost here: lost there, never zeros */
		break;
	case PAGE_RESIDENT:
	default:
		if (!data) {
			uint8_t *one = mo->buf + (size_t)(MIGRATE_BATCH_PAGES - 1) * PAGE;
			int ret = region_pread(vm, r, idx, PAGE, one);
			if (ret) {
				fail(mo, ret, "reading page %" PRIu64 " from the VM's memory failed: %s", page, strerror(-ret));
				return;
			}
			data = one;
		}
		encode_content(vm, mo, it, data);
		break;
	}
	mo->pages_sent++;
	if (mo->phase == MO_FINAL)
		mo->final_pages++;
	mo->sent[page / 64] |= 1ull << (page % 64);
}

/* Sends the marked pages of [first, first + count) of r: the resident ones
 * write-protected first, then read, so that a write after the read marks
 * its page again.  offer: content goes as hash and digest, unless the
 * destination lacked it once. */
static void send_chunk(struct vm *vm, struct migrate_out *mo, struct region *r, uint64_t first, uint64_t count,
		       bool offer)
{
	image_pages_prepare(vm, r->first_page + first, count);  /* entries as the image says, before they are read */
	mo->offering = offer;
	bool resident = false;
	for (uint64_t p = first; p < first + count; p++)
		resident |= bit(mo->dirty, r->first_page + p) && pe_state(r->pt.entries[p]) == PAGE_RESIDENT;
	if (resident && mo->phase == MO_RUNNING) {
		int ret = uffd_op_protect_pages(vm, r, first, count, true);
		if (ret) {
			fail(mo, ret, "write-protecting VM %s's memory failed: %s", vm->name, strerror(-ret));
			return;
		}
	}
	/* entries read after the protect: its resync may have applied a discard */
	resident = false;
	for (uint64_t p = first; p < first + count; p++)
		resident |= bit(mo->dirty, r->first_page + p) && pe_state(r->pt.entries[p]) == PAGE_RESIDENT;
	if (resident) {
		int ret = region_pread(vm, r, first, count * PAGE, mo->buf);
		if (ret) {
			fail(mo, ret, "reading VM %s's memory failed: %s", vm->name, strerror(-ret));
			return;
		}
	}
	for (uint64_t p = first; p < first + count && !mo->err; p++) {
		if (!bit(mo->dirty, r->first_page + p))
			continue;
		clear_dirty(mo, r->first_page + p);
		bool here = pe_state(r->pt.entries[p]) == PAGE_RESIDENT;
		encode_page(vm, mo, r, p, here ? mo->buf + (p - first) * PAGE : NULL);
	}
	flush_batch(mo);
}

/* The next marked page at or after page, or mo->pages. */
static uint64_t next_dirty(const struct migrate_out *mo, uint64_t page)
{
	while (page < mo->pages) {
		uint64_t w = mo->dirty[page / 64] >> (page % 64);
		if (w)
			return page + (uint64_t)__builtin_ctzll(w);
		page = (page / 64 + 1) * 64;
	}
	return mo->pages;
}

/* A page a fault waits on at the destination, before the round gets
 * there: on the urgent connection (if any) it waits behind no stream.
 * room: the stream takes more. */
static bool serve_pull(struct vm *vm, struct migrate_out *mo, bool room)
{
	while (mo->pull_len && (room || mo->ufd >= 0)) {
		uint64_t page = mo->pulls[mo->pull_head];
		mo->pull_head = (mo->pull_head + 1) % PULLS_MAX;
		mo->pull_len--;
		if (!bit(mo->dirty, page))
			continue;  /* on its way already */
		struct region *r = vm_region_of_page(vm, page);
		/* a pull comes after the stop, when no copy can be stale: it may
		 * overtake the stream */
		mo->to_urgent = mo->ufd >= 0;
		send_chunk(vm, mo, r, page - r->first_page, 1, false);
		mo->to_urgent = false;
		return true;
	}
	return false;
}

/* Whether this batch offers its content by hash: while the destination
 * wants back most of what is offered it holds little of this VM, and the
 * hash, the digest and the round trip are spent for nothing. */
static bool offers_pay(struct migrate_out *mo)
{
	if (mo->window_offers >= OFFER_WINDOW) {
		bool before = mo->offers_pay_not;
		mo->offers_pay_not = (double)mo->window_wants >= OFFER_MISSES_OFF * (double)mo->window_offers;
		if (before != mo->offers_pay_not)
			pr_debug("migration to %s: %" PRIu64 " of %" PRIu64 " offers wanted back: content goes %s",
				 mo->address, mo->window_wants, mo->window_offers,
				 mo->offers_pay_not ? "at once" : "by hash first");
		mo->window_offers = mo->window_wants = 0;
	}
	return !mo->offers_pay_not || ++mo->batches % OFFER_PROBE_EVERY == 0;
}

/* One batch of the round; false when there is nothing to send now. */
static bool send_next(struct vm *vm, struct migrate_out *mo, bool room)
{
	if (serve_pull(vm, mo, room))
		return true;
	if (!room)
		return false;
	uint64_t page = next_dirty(mo, mo->cursor);
	if (page >= mo->pages) {
		if (!mo->dirty_count)
			return false;
		/* a new round over what was written; a few pages wait for more
		 * while the guest runs, so that a hot page does not go every time */
		uint64_t now = monotonic_ns();
		if (mo->phase == MO_RUNNING && mo->dirty_count < MIGRATE_ROUND_SMALL_PAGES && now < mo->pause_until_ns)
			return false;
		mo->pause_until_ns = now + MIGRATE_ROUND_PAUSE_MS * 1000000ull;
		mo->rounds++;
		page = next_dirty(mo, 0);
	}
	struct region *r = vm_region_of_page(vm, page);
	uint64_t idx = page - r->first_page;
	/* after the stop the destination's pulls are read between batches:
	 * smaller ones keep them from waiting */
	uint64_t batch = mo->phase == MO_RUNNING ? MIGRATE_BATCH_PAGES : MIGRATE_FINAL_BATCH_PAGES;
	uint64_t count = r->pt.npages - idx < batch ? r->pt.npages - idx : batch;
	/* offers cost the destination a round trip for what it lacks: worth
	 * it while the guest runs here and the destination holds some of it */
	send_chunk(vm, mo, r, idx, count, mo->phase == MO_RUNNING && offers_pay(mo));
	mo->cursor = page + count;
	atomic_store_explicit(&vm->migration_round, mo->rounds, memory_order_relaxed);
	atomic_store_explicit(&vm->migration_pages_left, mo->dirty_count, memory_order_relaxed);
	return true;
}

static void send_done(struct migrate_out *mo)
{
	Memsrv__MigrateDone d = MEMSRV__MIGRATE_DONE__INIT;
	d.pages_sent = mo->pages_sent;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_DONE;
	m.migrate_done = &d;
	queue(mo, &m);
	mo->phase = MO_WAIT_CONFIRM;
	mo->deadline_ns = monotonic_ns() + MIGRATE_CONFIRM_MS * 1000000ull;
}

static void send_error(struct migrate_out *mo, int err, const char *text)
{
	Memsrv__Error e = MEMSRV__ERROR__INIT;
	e.errno_code = err;
	e.message = (char *)text;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_ERROR;
	m.error = &e;
	if (!peer_tx_queue(&mo->tx, &m))
		peer_tx_flush(&mo->tx, mo->fd);  /* best effort: the connection goes next */
}

static void free_mo(struct migrate_out *mo)
{
	if (mo->fd >= 0)
		close(mo->fd);
	if (mo->ufd >= 0)
		close(mo->ufd);
	if (mo->reply_fd >= 0)
		close(mo->reply_fd);
	peer_rx_free(&mo->rx);
	peer_tx_free(&mo->tx);
	peer_tx_free(&mo->utx);
	free(mo->dirty);
	free(mo->sent);
	free(mo->lacks);
	free(mo->buf);
	free(mo->objs);
	free(mo->raw);
	free(mo);
}

/* Every page writable again: the VM runs on as if nothing happened. */
static void unprotect_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->n_regions && !vm->eng.vmm_gone; i++) {
		struct region *r = &vm->regions[i];
		int ret = uffd_op_protect_pages(vm, r, 0, r->pt.npages, false);
		if (ret && !vm->eng.vmm_gone)
			vm_err(vm, "unprotecting its memory after a migration failed: %s", strerror(-ret));
	}
}

static void answer_detach(struct vm *vm, struct migrate_out *mo)
{
	struct vm_job *job = mo->detach;
	mo->detach = NULL;
	if (!job)
		return;
	if (mo->err) {
		vm->eng.detaching = false;  /* it stays: managed as before */
		vm_send_error(vm, -mo->err, NULL, "VM %s did not migrate to %s (%s): it stays here, whole and attached",
			      vm->name, mo->address, mo->why);
	} else {
		vm->eng.detaching = true;
		Memsrv__DetachReply dr = MEMSRV__DETACH_REPLY__INIT;
		Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
		msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_DETACH_REPLY;
		msg.detach_reply = &dr;
		vm_send(vm, &msg);
	}
	vm_job_free(job);
}

/* The end, either way: the requester, the VMM's detach and the log told. */
static void finish(struct vm *vm, struct migrate_out *mo, const Memsrv__MigrateConfirm *c)
{
	vm->eng.migrate_out = NULL;
	atomic_store(&vm->migration, VM_MIGRATION_NONE);
	atomic_store(&vm->migration_round, 0);
	atomic_store(&vm->migration_pages_left, 0);
	uint64_t now = monotonic_ns();
	if (mo->err) {
		send_error(mo, -mo->err, mo->why);
		vm_warn(vm, "migration to %s failed: %s; the VM runs on here, whole", mo->address, mo->why);
		wire_send_error(mo->reply_fd, -mo->err, NULL, "migrating VM %s to %s failed: %s", vm->name, mo->address,
				mo->why);
	} else {
		Memsrv__MigrateReply r = MEMSRV__MIGRATE_REPLY__INIT;
		r.address = mo->address;
		r.pages = mo->pages;
		r.pages_sent = mo->pages_sent;
		r.data_pages = mo->data_pages;
		r.bytes_sent = mo->bytes_sent;
		r.rounds = mo->rounds;
		r.resent_pages = mo->resent_pages;
		r.final_pages = mo->final_pages;
		r.duration_ns = now - mo->t_start;
		r.switchover_ns = now - mo->t_stop;
		r.pulled_pages = c->pulled_pages;
		r.pull_wait_p50_ns = c->pull_wait_p50_ns;
		r.pull_wait_p99_ns = c->pull_wait_p99_ns;
		r.pull_wait_max_ns = c->pull_wait_max_ns;
		r.offered_pages = mo->offered_pages;
		r.shared_pages = c->shared_pages;
		r.remote_named_pages = mo->remote_named_pages;
		Memsrv__ServerMessage msg = MEMSRV__SERVER_MESSAGE__INIT;
		msg.msg_case = MEMSRV__SERVER_MESSAGE__MSG_MIGRATE_REPLY;
		msg.migrate_reply = &r;
		if (mo->reply_fd >= 0)
			wire_send_server(mo->reply_fd, &msg);
		vm_info(vm, "migrated to %s: %" PRIu64 " pages in %" PRIu64 " bytes, %" PRIu32 " rounds, %" PRIu64
			" sent again, %" PRIu64 " after the VM stopped, %" PRIu64 " ms in all, %" PRIu64
			" ms from the stop; %" PRIu64 " pages pulled, %" PRIu64 " of %" PRIu64 " offered held there already",
			mo->address, mo->pages_sent, mo->bytes_sent, mo->rounds, mo->resent_pages, mo->final_pages,
			r.duration_ns / 1000000, r.switchover_ns / 1000000, c->pulled_pages, c->shared_pages,
			mo->offered_pages);
	}
	unprotect_all(vm);  /* a VM that stays runs on; one that left has its VMM unregister it */
	answer_detach(vm, mo);
	free_mo(mo);
}

void migrate_out_cancel(struct vm *vm, int err, const char *why)
{
	struct migrate_out *mo = vm->eng.migrate_out;
	if (!mo)
		return;
	fail(mo, err, "%s", why);
	finish(vm, mo, NULL);
}

/* Whether every region can be write-protected and read from its fd. */
static int check_vm(struct vm *vm, char *why, size_t len)
{
	if (vm->eng.migrate_out || vm->eng.migrate_in || vm->eng.snapshot) {
		snprintf(why, len, "VM %s is %s", vm->name,
			 vm->eng.migrate_out ? "migrating already" : vm->eng.migrate_in ? "still arriving by a migration"
											: "being snapshotted");
		return -EBUSY;
	}
	if (vm->incoming) {
		snprintf(why, len, "VM %s waits for its memory from another node", vm->name);
		return -EBUSY;
	}
	return vm_writes_trackable(vm, "the guest's writes during a migration could not be caught", why, len);
}

static void send_begin(struct vm *vm, struct migrate_out *mo, bool urgent)
{
	Memsrv__MigrateRegion regs[VM_MAX_REGIONS], *ptrs[VM_MAX_REGIONS];
	for (unsigned i = 0; i < vm->n_regions; i++) {
		memsrv__migrate_region__init(&regs[i]);
		regs[i].size = vm->regions[i].size;
		regs[i].page_size = vm->regions[i].page_size;
		regs[i].guest_phys_addr = vm->regions[i].guest_phys_addr;
		ptrs[i] = &regs[i];
	}
	Memsrv__MigrateBegin b = MEMSRV__MIGRATE_BEGIN__INIT;
	b.name = vm->name;
	b.n_regions = vm->n_regions;
	b.regions = ptrs;
	b.has_urgent = urgent;
	b.urgent = urgent;
	b.has_token = true;
	b.token.data = mo->token;
	b.token.len = sizeof mo->token;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_BEGIN;
	m.migrate_begin = &b;
	queue(mo, &m);
}

void migrate_out_start(struct vm *vm, struct vm_job *job)
{
	char why[512];
	int ret = check_vm(vm, why, sizeof why);
	if (ret) {
		wire_send_error(job->reply_fd, -ret, "migrate.name", "VM %s cannot migrate: %s", vm->name, why);
		return;
	}
	struct migrate_out *mo = calloc(1, sizeof *mo);
	uint64_t pages = vm_total_pages(vm), words = pages / 64 + 1;
	if (mo) {
		mo->dirty = calloc(words, sizeof *mo->dirty);
		mo->sent = calloc(words, sizeof *mo->sent);
		mo->lacks = calloc(words, sizeof *mo->lacks);
		mo->buf = malloc((size_t)MIGRATE_BATCH_PAGES * PAGE);
		mo->objs = malloc((size_t)MIGRATE_BATCH_PAGES * CODEC_PAGE);
		mo->raw = malloc(PAGE);
	}
	if (!mo || !mo->dirty || !mo->sent || !mo->lacks || !mo->buf || !mo->objs || !mo->raw) {
		if (mo) {
			mo->fd = mo->ufd = mo->reply_fd = -1;
			free_mo(mo);
		}
		wire_send_error(job->reply_fd, ENOMEM, NULL, "out of memory");
		return;
	}
	mo->fd = job->peer_fd;
	job->peer_fd = -1;
	mo->ufd = job->urgent_fd;
	job->urgent_fd = -1;
	migrate_socket_tune(mo->fd, SO_SNDBUF);
	if (mo->ufd >= 0)
		migrate_socket_tune(mo->ufd, SO_SNDBUF);
	if (getrandom(mo->token, sizeof mo->token, 0) != (ssize_t)sizeof mo->token)
		memset(mo->token, 0x5a, sizeof mo->token);  /* it names, it guards nothing: the peers authenticated */
	mo->reply_fd = job->reply_fd;
	job->reply_fd = -1;
	snprintf(mo->address, sizeof mo->address, "%s", job->address ? job->address : "?");
	peer_rx_init(&mo->rx, PEER_WIRE_MAX_PAYLOAD);
	peer_tx_init(&mo->tx);
	peer_tx_init(&mo->utx);
	mo->pages = pages;
	mo->t_start = monotonic_ns();
	mo->deadline_ns = mo->t_start + MIGRATE_CONFIRM_MS * 1000000ull;
	mo->rounds = 1;
	vm->eng.migrate_out = mo;
	migrate_out_mark(vm, 0, pages);  /* every page, once */
	atomic_store(&vm->migration_round, 1);
	atomic_store(&vm->migration_pages_left, pages);
	sampler_restore_all(vm);         /* pages in probation back in place: read as any resident page */
	send_begin(vm, mo, false);
	vm_info(vm, "migrating to %s: %" PRIu64 " pages%s", mo->address, pages,
		mo->ufd >= 0 ? "" : " (one connection: pulled pages share the stream)");
	if (mo->err)
		finish(vm, mo, NULL);
}

/* Pages the destination's faults wait on: they go before the round's. */
static void take_pulls(struct migrate_out *mo, const uint64_t *pages, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (pages[i] >= mo->pages) {
			fail(mo, -EPROTO, "the destination asked for page %" PRIu64 ", past the VM's %" PRIu64, pages[i],
			     mo->pages);
			return;
		}
		if (mo->pull_len < PULLS_MAX)
			mo->pulls[(mo->pull_head + mo->pull_len++) % PULLS_MAX] = pages[i];
		/* else the rounds get to it */
	}
}

/* Offered pages the destination does not hold: they go again, with their
 * content, from now on. */
static void take_wants(struct vm *vm, struct migrate_out *mo, const uint64_t *pages, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (pages[i] >= mo->pages) {
			fail(mo, -EPROTO, "the destination wants page %" PRIu64 ", past the VM's %" PRIu64, pages[i],
			     mo->pages);
			return;
		}
		mo->window_wants++;
		mo->lacks[pages[i] / 64] |= 1ull << (pages[i] % 64);
		mo->sent[pages[i] / 64] &= ~(1ull << (pages[i] % 64));  /* it holds no version of it */
		migrate_out_mark(vm, pages[i], 1);
	}
}

static void stop(struct vm *vm, struct migrate_out *mo);

/* One message from the destination; false when the migration ended. */
static bool take_message(struct vm *vm, struct migrate_out *mo, const Memsrv__PeerMessage *msg)
{
	switch (msg->msg_case) {
	case MEMSRV__PEER_MESSAGE__MSG_MIGRATE_ACCEPT:
		if (mo->phase != MO_WAIT_ACCEPT)
			break;
		mo->phase = MO_RUNNING;
		mo->deadline_ns = 0;
		atomic_store(&vm->migration, VM_MIGRATION_SENDING);
		if (mo->ufd >= 0) {
			mo->to_urgent = true;
			send_begin(vm, mo, true);  /* the destination binds it to this one by the token */
			mo->to_urgent = false;
		}
		if (mo->detach)
			stop(vm, mo);  /* the VMM was quicker than the destination */
		return !mo->err;
	case MEMSRV__PEER_MESSAGE__MSG_MIGRATE_PULL:
		if (mo->phase == MO_WAIT_ACCEPT)
			break;
		take_pulls(mo, msg->migrate_pull->pages, msg->migrate_pull->n_pages);
		return !mo->err;
	case MEMSRV__PEER_MESSAGE__MSG_MIGRATE_WANT:
		if (mo->phase == MO_WAIT_ACCEPT)
			break;
		take_wants(vm, mo, msg->migrate_want->pages, msg->migrate_want->n_pages);
		return !mo->err;
	case MEMSRV__PEER_MESSAGE__MSG_MIGRATE_CONFIRM:
		if (mo->phase != MO_WAIT_CONFIRM)
			break;
		finish(vm, mo, msg->migrate_confirm);
		return false;
	case MEMSRV__PEER_MESSAGE__MSG_ERROR:
		fail(mo, msg->error->errno_code > 0 ? -msg->error->errno_code : -ECONNABORTED,
		     "the destination refused: %.200s", msg->error->message);
		return false;
	default:
		break;
	}
	fail(mo, -EPROTO, "the destination sent an unexpected %s", peer_message_kind(msg));
	return false;
}

static void read_messages(struct vm *vm, struct migrate_out *mo)
{
	for (;;) {
		ssize_t n = peer_rx_read(&mo->rx, mo->fd);
		for (;;) {
			Memsrv__PeerMessage *msg;
			struct wire_fault fault = { "" };
			int ret = peer_rx_next(&mo->rx, &msg, &fault);
			if (ret == 0)
				break;
			if (ret < 0) {
				fail(mo, -EPROTO, "malformed stream from the destination: %s", fault.what);
				return;
			}
			bool on = take_message(vm, mo, msg);
			memsrv__peer_message__free_unpacked(msg, NULL);
			if (!on)
				return;
		}
		if (n == -EAGAIN)
			return;
		if (n == 0) {
			fail(mo, -ECONNRESET, "the destination closed the connection");
			return;
		}
		if (n < 0) {
			fail(mo, (int)n, "reading from the destination failed: %s", strerror((int)-n));
			return;
		}
	}
}

void migrate_out_poll(struct vm *vm, struct pollfd pf[2], int *timeout_ms)
{
	struct migrate_out *mo = vm->eng.migrate_out;
	pf[0] = (struct pollfd){ .fd = -1 };
	pf[1] = (struct pollfd){ .fd = -1 };
	if (!mo)
		return;
	pf[0] = (struct pollfd){ .fd = mo->fd, .events = POLLIN | (peer_tx_pending(&mo->tx) ? POLLOUT : 0) };
	/* the destination sends nothing on the urgent one: read, it says it closed */
	pf[1] = (struct pollfd){ .fd = mo->ufd, .events = POLLIN | (peer_tx_pending(&mo->utx) ? POLLOUT : 0) };
	bool room = peer_tx_backlog(&mo->tx) < MIGRATE_TX_HIGH;
	bool sending = mo->phase != MO_WAIT_ACCEPT;  /* after Done too: pages wanted late go then */
	if ((room && (mo->pull_len || (sending && mo->dirty_count))) || (mo->ufd >= 0 && mo->pull_len)) {
		uint64_t now = monotonic_ns();
		bool waits = mo->phase == MO_RUNNING && next_dirty(mo, mo->cursor) >= mo->pages &&
			     mo->dirty_count < MIGRATE_ROUND_SMALL_PAGES && now < mo->pause_until_ns && !mo->pull_len;
		int ms = waits ? (int)((mo->pause_until_ns - now) / 1000000) + 1 : 0;
		if (*timeout_ms < 0 || ms < *timeout_ms)
			*timeout_ms = ms;
	}
	if (mo->deadline_ns) {
		uint64_t now = monotonic_ns();
		int ms = now >= mo->deadline_ns ? 0 : (int)((mo->deadline_ns - now) / 1000000) + 1;
		if (*timeout_ms < 0 || ms < *timeout_ms)
			*timeout_ms = ms;
	}
}

/* The urgent connection: flushed, and watched for the destination closing it. */
static void tend_urgent(struct migrate_out *mo, short revents)
{
	if (mo->ufd < 0 || mo->err)
		return;
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		char c;
		ssize_t n = recv(mo->ufd, &c, 1, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			fail(mo, n ? -errno : -ECONNRESET, "the destination closed the connection for pulled pages");
			return;
		}
		if (n > 0) {
			fail(mo, -EPROTO, "the destination sent on the connection for pulled pages");
			return;
		}
	}
	int ret = peer_tx_flush(&mo->utx, mo->ufd);
	if (ret && ret != -EAGAIN)
		fail(mo, ret, "sending pulled pages failed: %s", strerror(-ret));
}

void migrate_out_step(struct vm *vm, const struct pollfd pf[2])
{
	struct migrate_out *mo = vm->eng.migrate_out;
	if (!mo)
		return;
	short revents = pf ? pf[0].revents : 0;
	if (revents & (POLLIN | POLLHUP | POLLERR))
		read_messages(vm, mo);
	if (!vm->eng.migrate_out)
		return;  /* confirmed: done */
	if (!mo->err && mo->deadline_ns && monotonic_ns() >= mo->deadline_ns)
		fail(mo, -ETIMEDOUT, "the destination did not answer within %u s", MIGRATE_CONFIRM_MS / 1000);
	uint64_t until = monotonic_ns() + STEP_NS;
	while (!mo->err && mo->phase != MO_WAIT_ACCEPT && monotonic_ns() < until) {
		if (!send_next(vm, mo, peer_tx_backlog(&mo->tx) < MIGRATE_TX_HIGH))
			break;
		tend_urgent(mo, 0);  /* a pulled page goes at once */
		fault_serve_available(vm);  /* the guest runs on: its faults wait for a batch at most */
		if (swap_reads_ready(vm))
			swap_reads_reap(vm);
		if (mo->phase != MO_RUNNING)
			read_messages(vm, mo);  /* the destination's guest runs: its pulls wait for a batch at most */
		if (vm->eng.migrate_out != mo)
			return;  /* ended: confirmed, or failed and answered */
	}
	if (!mo->err && mo->phase == MO_FINAL && !mo->dirty_count)
		send_done(mo);
	if (!mo->err) {
		int ret = peer_tx_flush(&mo->tx, mo->fd);
		if (ret && ret != -EAGAIN)
			fail(mo, ret, "sending to the destination failed: %s", strerror(-ret));
	}
	tend_urgent(mo, pf ? pf[1].revents : 0);
	if (mo->err)
		finish(vm, mo, NULL);
}

/* The pages sent and written since, as runs (first, count). */
static void send_invalidations(struct migrate_out *mo)
{
	uint64_t *runs = malloc(2 * INVALIDATE_RUNS_PER_FRAME * sizeof *runs);
	size_t n = 0;
	if (!runs) {
		fail(mo, -ENOMEM, "out of memory");
		return;
	}
	Memsrv__MigrateInvalidate inv = MEMSRV__MIGRATE_INVALIDATE__INIT;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_INVALIDATE;
	m.migrate_invalidate = &inv;
	for (uint64_t p = next_dirty(mo, 0); p < mo->pages; p = next_dirty(mo, p)) {
		uint64_t end = p;
		while (end < mo->pages && bit(mo->dirty, end) && bit(mo->sent, end))
			end++;
		if (end == p) {
			p++;  /* never sent: nothing there to invalidate */
			continue;
		}
		runs[n++] = p;
		runs[n++] = end - p;
		if (n == 2 * INVALIDATE_RUNS_PER_FRAME) {
			inv.n_runs = n;
			inv.runs = runs;
			queue(mo, &m);
			n = 0;
		}
		p = end;
	}
	if (n) {
		inv.n_runs = n;
		inv.runs = runs;
		queue(mo, &m);
	}
	free(runs);
}

bool migrate_out_vm_stopped(struct vm *vm, struct vm_job *job)
{
	struct migrate_out *mo = vm->eng.migrate_out;
	if (!mo || mo->detach)
		return false;  /* a second detach: the first one is answered */
	mo->detach = job;
	mo->t_stop = monotonic_ns();
	if (mo->phase == MO_WAIT_ACCEPT)
		return true;  /* stopped once the destination accepts */
	stop(vm, mo);
	migrate_out_step(vm, NULL);
	return true;
}

/* The VM stopped: what the destination holds and was written since is
 * named, then the last pages go. */
static void stop(struct vm *vm, struct migrate_out *mo)
{
	send_invalidations(mo);
	Memsrv__MigrateStopped st = MEMSRV__MIGRATE_STOPPED__INIT;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_STOPPED;
	m.migrate_stopped = &st;
	queue(mo, &m);
	mo->phase = MO_FINAL;
	mo->cursor = 0;
	vm->eng.detaching = true;  /* the VM stopped: evicting would only send pages again */
	atomic_store(&vm->migration, VM_MIGRATION_STOPPED);
	vm_info(vm, "the VMM stopped the VM: %" PRIu64 " pages still to go to %s", mo->dirty_count, mo->address);
}
