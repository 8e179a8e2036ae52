/* migrate_in: a VM's memory arriving from another node (migrate_in.h says
 * when a page is final and what a failure leaves). */
#include "migrate_in.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#include "fault.h"
#include "latency.h"
#include "migrate_socket.h"
#include "log.h"
#include "peer_wire.h"
#include "uffd.h"

#define PAGE 4096u
#define STORE_TRIES 250  /* 20 ms each: how long a page waits for room in the store */
#define STEP_NS (1000 * 1000)  /* the stream taken in at most this long before the VM thread polls its uffd again */

struct parked {
	struct uffd_msg msg;
	uint64_t t_read;
	uint64_t t_pull;  /* when its page was asked for (0: not yet): its wait is timed from then */
};

struct migrate_in {
	int fd;                   /* -1: no source yet (or it failed before the stop) */
	int ufd;                  /* the source's urgent connection: pulled pages (-1: none) */
	char peer[128];
	struct peer_rx rx, urx;
	struct peer_tx tx;
	uint8_t token[16];        /* the stream's, which its urgent connection must bring */
	bool has_token;
	bool stopped;             /* MigrateStopped came: arrived pages are final */
	uint64_t pages;
	uint64_t *pulled;         /* a bit per page: asked for */
	uint64_t pulls[MIGRATE_IN_PULL_BATCH];
	unsigned n_pulls;
	uint64_t wants[MIGRATE_IN_PULL_BATCH];  /* offered pages this node does not hold */
	unsigned n_wants;
	/* offered pages this node does not hold, to be referenced in the
	 * remote tier's cluster if it holds them (a batch at a time) */
	uint64_t adopt_pages[MIGRATE_IN_PULL_BATCH];
	struct store_remote_name adopt[MIGRATE_IN_PULL_BATCH];
	unsigned n_adopt;
	bool done;                /* MigrateDone came: confirm once no page is REMOTE */
	struct parked *parked;    /* faults waiting for their page */
	size_t n_parked, cap_parked;
	struct latency_hist wait; /* of faults whose page was pulled */
	uint64_t pulled_pages, arrived_pages, shared_pages, t_bound;
	int err;
	char why[256];
};

__attribute__((format(printf, 3, 4)))
static void fail(struct migrate_in *mi, int err, const char *fmt, ...)
{
	if (mi->err)
		return;
	mi->err = err;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(mi->why, sizeof mi->why, fmt, ap);
	va_end(ap);
}

int migrate_in_attach(struct vm *vm)
{
	struct migrate_in *mi = calloc(1, sizeof *mi);
	uint64_t pages = vm_total_pages(vm);
	if (mi)
		mi->pulled = calloc(pages / 64 + 1, sizeof *mi->pulled);
	if (!mi || !mi->pulled) {
		if (mi)
			free(mi->pulled);
		free(mi);
		return -ENOMEM;
	}
	mi->fd = mi->ufd = -1;
	mi->pages = pages;
	latency_init(&mi->wait);
	peer_rx_init(&mi->rx, PEER_WIRE_MAX_PAYLOAD);
	peer_rx_init(&mi->urx, PEER_WIRE_MAX_PAYLOAD);
	peer_tx_init(&mi->tx);
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		for (uint64_t p = 0; p < r->pt.npages; p++)
			page_table_set(&r->pt, p, pe_make(PAGE_REMOTE, 0, 0));
	}
	vm->eng.migrate_in = mi;
	atomic_store(&vm->migration, VM_MIGRATION_WAITING);
	return 0;
}

static void close_stream(struct migrate_in *mi)
{
	if (mi->fd >= 0)
		close(mi->fd);
	if (mi->ufd >= 0)
		close(mi->ufd);
	mi->fd = mi->ufd = -1;
	mi->has_token = false;
	peer_rx_free(&mi->rx);
	peer_rx_free(&mi->urx);
	peer_tx_free(&mi->tx);
	peer_rx_init(&mi->rx, PEER_WIRE_MAX_PAYLOAD);
	peer_rx_init(&mi->urx, PEER_WIRE_MAX_PAYLOAD);
	peer_tx_init(&mi->tx);
}

void migrate_in_free(struct vm *vm)
{
	struct migrate_in *mi = vm->eng.migrate_in;
	if (!mi)
		return;
	vm->eng.migrate_in = NULL;
	atomic_store(&vm->migration, VM_MIGRATION_NONE);
	close_stream(mi);
	peer_rx_free(&mi->rx);
	peer_rx_free(&mi->urx);
	peer_tx_free(&mi->tx);
	free(mi->pulled);
	free(mi->parked);
	free(mi);
}

static void send_msg(struct migrate_in *mi, const Memsrv__PeerMessage *m)
{
	int ret = peer_tx_queue(&mi->tx, m);
	if (!ret)
		ret = peer_tx_flush(&mi->tx, mi->fd);
	if (ret && ret != -EAGAIN)
		fail(mi, ret, "sending a %s to the source failed: %s", peer_message_kind(m), strerror(-ret));
}

/* Tells the source why it is refused, then closes its connection. */
__attribute__((format(printf, 4, 5)))
static void refuse(struct vm *vm, int fd, int err, const char *fmt, ...)
{
	char text[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	vm_warn(vm, "incoming migration refused: %s", text);
	peer_send_error(fd, err, text);
	close(fd);
}

void migrate_in_bind(struct vm *vm, struct vm_job *job)
{
	struct migrate_in *mi = vm->eng.migrate_in;
	const Memsrv__MigrateBegin *b = job->begin->migrate_begin;
	int fd = job->peer_fd;
	job->peer_fd = -1;
	const char *from = job->address ? job->address : "?";
	if (!mi) {
		refuse(vm, fd, EEXIST, "VM %s on this node is not waiting for its memory (it was not attached with "
		       "incoming, or its migration is over)", vm->name);
		return;
	}
	if (b->has_urgent && b->urgent) {
		bool ours = mi->fd >= 0 && mi->has_token && b->has_token && b->token.len == sizeof mi->token &&
			    !memcmp(b->token.data, mi->token, sizeof mi->token);
		if (!ours || mi->ufd >= 0) {
			refuse(vm, fd, EINVAL, "a connection for pulled pages of no migration of VM %s streaming here",
			       vm->name);
			return;
		}
		mi->ufd = fd;
		migrate_socket_tune(fd, SO_RCVBUF);
		vm_info(vm, "pulled pages come from %s on a connection of their own", from);
		return;
	}
	if (mi->fd >= 0) {
		refuse(vm, fd, EBUSY, "VM %s is migrating from %s already", vm->name, mi->peer);
		return;
	}
	if (b->n_regions != vm->n_regions) {
		refuse(vm, fd, EINVAL, "VM %s has %u regions here, %zu at the source", vm->name, vm->n_regions,
		       b->n_regions);
		return;
	}
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		const Memsrv__MigrateRegion *s = b->regions[i];
		if (s->size != r->size || s->page_size != r->page_size || s->guest_phys_addr != r->guest_phys_addr) {
			refuse(vm, fd, EINVAL, "VM %s's region %u differs: %" PRIu64 " bytes of %u-byte pages at guest "
			       "address 0x%" PRIx64 " here, %" PRIu64 " of %u at 0x%" PRIx64 " at the source", vm->name, i,
			       r->size, r->page_size, r->guest_phys_addr, s->size, s->page_size, s->guest_phys_addr);
			return;
		}
	}
	mi->fd = fd;
	mi->err = 0;
	mi->has_token = b->has_token && b->token.len == sizeof mi->token;
	if (mi->has_token)
		memcpy(mi->token, b->token.data, sizeof mi->token);
	migrate_socket_tune(fd, SO_RCVBUF);
	mi->t_bound = monotonic_ns();
	snprintf(mi->peer, sizeof mi->peer, "%s", from);
	Memsrv__MigrateAccept a = MEMSRV__MIGRATE_ACCEPT__INIT;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_ACCEPT;
	m.migrate_accept = &a;
	send_msg(mi, &m);
	atomic_store(&vm->migration, VM_MIGRATION_ARRIVING);
	vm_info(vm, "migrating in from %s", mi->peer);
}

void migrate_in_poll(struct vm *vm, struct pollfd pf[2])
{
	struct migrate_in *mi = vm->eng.migrate_in;
	pf[0] = (struct pollfd){ .fd = -1 };
	pf[1] = (struct pollfd){ .fd = -1 };
	if (!mi || mi->fd < 0)
		return;
	pf[0] = (struct pollfd){ .fd = mi->fd, .events = POLLIN | (peer_tx_pending(&mi->tx) ? POLLOUT : 0) };
	pf[1] = (struct pollfd){ .fd = mi->ufd, .events = POLLIN };
}

static bool bit(const uint64_t *map, uint64_t page)
{
	return map[page / 64] >> (page % 64) & 1;
}

/* The pages listed for the source: wanted (offers this node could not
 * take) or pulled (a fault waits). */
static void send_list(struct migrate_in *mi, bool want)
{
	uint64_t *pages = want ? mi->wants : mi->pulls;
	unsigned *n = want ? &mi->n_wants : &mi->n_pulls;
	if (!*n || mi->fd < 0)
		return;
	Memsrv__MigrateWant w = MEMSRV__MIGRATE_WANT__INIT;
	Memsrv__MigratePull p = MEMSRV__MIGRATE_PULL__INIT;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	if (want) {
		w.n_pages = *n;
		w.pages = pages;
		m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_WANT;
		m.migrate_want = &w;
	} else {
		p.n_pages = *n;
		p.pages = pages;
		m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_PULL;
		m.migrate_pull = &p;
	}
	send_msg(mi, &m);
	*n = 0;
}

/* Asks the source for page ahead of its stream, once, at once: a vCPU
 * waits on it. */
static void pull(struct migrate_in *mi, uint64_t page)
{
	if (bit(mi->pulled, page))
		return;
	mi->pulled[page / 64] |= 1ull << (page % 64);
	mi->pulled_pages++;
	mi->pulls[mi->n_pulls++] = page;
	send_list(mi, false);
}

bool migrate_in_park(struct vm *vm, const struct uffd_msg *m, struct region *r, uint64_t idx, uint64_t t_read)
{
	struct migrate_in *mi = vm->eng.migrate_in;
	bool remote = pe_state(r->pt.entries[idx]) == PAGE_REMOTE;
	if (mi->stopped && !remote)
		return false;  /* final: served as any page */
	if (mi->n_parked == mi->cap_parked) {
		size_t cap = mi->cap_parked ? mi->cap_parked * 2 : 64;
		struct parked *p = realloc(mi->parked, cap * sizeof *p);
		if (!p) {
			vm_err(vm, "out of memory: a fault waiting for its page from %s is dropped (its vCPU faults again)",
			       mi->peer);
			uffd_wake(vm->uffd, m->arg.pagefault.address & ~(uint64_t)(r->page_size - 1), r->page_size);
			return true;
		}
		mi->parked = p;
		mi->cap_parked = cap;
	}
	bool now = mi->stopped && mi->fd >= 0;  /* before the stop every page may change yet: no use asking */
	mi->parked[mi->n_parked++] = (struct parked){ .msg = *m, .t_read = t_read, .t_pull = now ? t_read : 0 };
	if (now)
		pull(mi, r->first_page + idx);
	return true;
}

/* Hands the waiting faults whose page is final back to the fault path. */
static void release_parked(struct vm *vm, struct migrate_in *mi, bool all)
{
	size_t kept = 0;
	uint64_t now = monotonic_ns();
	for (size_t i = 0; i < mi->n_parked; i++) {
		struct parked *p = &mi->parked[i];
		struct region *r = vm_region_of(vm, p->msg.arg.pagefault.address);
		uint64_t idx = r ? (p->msg.arg.pagefault.address - r->host_addr) / r->page_size : 0;
		bool remote = r && pe_state(r->pt.entries[idx]) == PAGE_REMOTE;
		bool ready = all || (mi->stopped && !remote);
		if (ready && fault_requeue(vm, &p->msg, p->t_read)) {
			if (p->t_pull)
				latency_record_ns(&mi->wait, now - p->t_pull);
			continue;
		}
		if (ready && all && r) {
			/* the ring is full and nothing keeps this fault: its vCPU,
			 * woken, faults again */
			uffd_wake(vm->uffd, p->msg.arg.pagefault.address & ~(uint64_t)(r->page_size - 1), r->page_size);
			continue;
		}
		if (remote && mi->stopped && !p->t_pull && mi->fd >= 0) {
			/* parked before the stop: asked for now */
			p->t_pull = now;
			pull(mi, r->first_page + idx);
		}
		mi->parked[kept++] = *p;
	}
	mi->n_parked = kept;
}

/* Page idx of r takes content: a word or bytes decoded into the VM's page buffer. */
static int store_content(struct vm *vm, struct migrate_in *mi, const Memsrv__MigratePage *it, page_entry *out)
{
	uint8_t *page = vm->eng.page_buf;
	if (it->has_word) {
		if (!it->word) {
			*out = pe_make(PAGE_ZERO, 0, 0);
			return 0;
		}
		for (unsigned i = 0; i < PAGE / 8; i++)
			memcpy(page + i * 8, &it->word, 8);
	} else if (it->has_codec) {
		if (it->codec >= CODECS) {
			fail(mi, -EPROTO, "page %" PRIu64 " came with codec %u, which this memsrv does not know", it->page,
			     it->codec);
			return -EPROTO;
		}
		if (codec_decompress(vm->eng.codec_ctx, (enum codec)it->codec, it->data.data, (uint32_t)it->data.len,
				     page)) {
			fail(mi, -EPROTO, "page %" PRIu64 " came as %zu bytes of %s that do not decompress to a page",
			     it->page, it->data.len, codec_name((enum codec)it->codec));
			return -EPROTO;
		}
	} else {
		if (it->data.len != PAGE) {
			fail(mi, -EPROTO, "page %" PRIu64 " came raw as %zu bytes, not %u", it->page, it->data.len, PAGE);
			return -EPROTO;
		}
		memcpy(page, it->data.data, PAGE);
	}
	obj_id id;
	struct store_put_info info;
	for (unsigned tries = 0;; tries++) {
		/* kept as it came: compressed by the source (or found not worth
		 * it there), not compressed again here */
		int ret = store_put_encoded(vm->store, vm->eng.codec_ctx,
					    it->has_codec ? (enum codec)it->codec : (enum codec)atomic_load(&vm->codec),
					    page, it->has_codec ? it->data.data : page,
					    it->has_codec ? (uint32_t)it->data.len : CODEC_PAGE, &id, &info);
		if (!ret)
			break;
		if (ret != -EBUSY || tries == STORE_TRIES) {
			fail(mi, ret, "the store has no room for the VM's pages: %s", strerror(-ret));
			return ret;
		}
		store_wait_room(vm->store, 20);
	}
	*out = pe_make(PAGE_STORED, 0, id);
	return 0;
}

/* An offer: the page from this node's store if it holds the same content
 * (found by hash, then checked by digest: a hash names, it does not
 * prove), else asked for.  0 or -EPROTO. */
static int take_offer(struct vm *vm, struct migrate_in *mi, const Memsrv__MigratePage *it, page_entry *out)
{
	if (it->hash.len != 16 || !it->has_digest || it->digest.len != 32) {
		fail(mi, -EPROTO, "page %" PRIu64 " was offered with a %zu-byte hash and a %zu-byte digest, not 16 and 32",
		     it->page, it->hash.len, it->has_digest ? it->digest.len : 0);
		return -EPROTO;
	}
	uint64_t lo = 0, hi = 0;
	for (int i = 7; i >= 0; i--) {
		lo = lo << 8 | it->hash.data[i];
		hi = hi << 8 | it->hash.data[8 + i];
	}
	obj_id id;
	if (!store_share_by_hash(vm->store, lo, hi, &id)) {
		/* one in the cluster is known by its SHA-256, its name: no read */
		struct store_remote_name held;
		bool known = store_remote_name(vm->store, id, &held);
		if (!known && !store_get(vm->store, vm->eng.codec_ctx, id, vm->eng.page_buf)) {
			remote_digest_page(vm->eng.page_buf, &held.digest);
			known = true;
		}
		if (known && !memcmp(held.digest.b, it->digest.data, sizeof held.digest.b)) {
			*out = pe_make(PAGE_STORED, 0, id);
			mi->shared_pages++;
			return 0;
		}
		store_drop(vm->store, id);  /* same hash, other content (or unreadable): not this page's */
	}
	/* not here: the remote tier's cluster may hold it (adopt_offers), else
	 * it is asked for */
	*out = pe_make(PAGE_REMOTE, 0, 0);
	struct store_remote_name *name = &mi->adopt[mi->n_adopt];
	name->hash_lo = lo;
	name->hash_hi = hi;
	memcpy(name->digest.b, it->digest.data, sizeof name->digest.b);
	mi->adopt_pages[mi->n_adopt++] = it->page;
	return 0;
}

static void set_entry(struct vm *vm, struct region *r, uint64_t idx, page_entry e);

/* The offered pages this node did not hold: those the cluster holds are
 * referenced there and stored by name; the others are asked for. */
static void adopt_offers(struct vm *vm, struct migrate_in *mi)
{
	obj_id ids[MIGRATE_IN_PULL_BATCH];
	store_adopt_remote(vm->store, mi->adopt, mi->n_adopt, ids);
	for (unsigned i = 0; i < mi->n_adopt; i++) {
		uint64_t page = mi->adopt_pages[i];
		struct region *r = vm_region_of_page(vm, page);
		uint64_t idx = page - r->first_page;
		if (pe_state(r->pt.entries[idx]) != PAGE_REMOTE) {
			if (ids[i])
				store_drop(vm->store, ids[i]);  /* offered twice in the batch: the first took it */
			continue;
		}
		if (ids[i]) {
			set_entry(vm, r, idx, pe_make(PAGE_STORED, 0, ids[i]));
			mi->arrived_pages++;
			mi->shared_pages++;
			continue;
		}
		mi->wants[mi->n_wants++] = page;
		if (mi->n_wants == MIGRATE_IN_PULL_BATCH)
			send_list(mi, true);
	}
	mi->n_adopt = 0;
}

static void set_entry(struct vm *vm, struct region *r, uint64_t idx, page_entry e)
{
	page_entry old = r->pt.entries[idx];
	page_table_set(&r->pt, idx, e);
	if (pe_state(old) == PAGE_STORED)
		store_drop(vm->store, (obj_id)pe_handle(old));
}

/* Whether page idx of r still takes what the source sends: not once the
 * guest made it something else (a discard), nor a final one again. */
static bool takes(const struct migrate_in *mi, const struct region *r, uint64_t idx)
{
	enum page_state s = pe_state(r->pt.entries[idx]);
	return s == PAGE_REMOTE || (!mi->stopped && (s == PAGE_STORED || s == PAGE_ZERO || s == PAGE_POISONED));
}

static void take_pages(struct vm *vm, struct migrate_in *mi, const Memsrv__MigratePages *mp)
{
	for (size_t i = 0; i < mp->n_pages && !mi->err; i++) {
		const Memsrv__MigratePage *it = mp->pages[i];
		struct region *r = it->page < mi->pages ? vm_region_of_page(vm, it->page) : NULL;
		if (!r) {
			fail(mi, -EPROTO, "page %" PRIu64 " is past the VM's %" PRIu64, it->page, mi->pages);
			return;
		}
		uint64_t idx = it->page - r->first_page;
		if (!it->has_word && !it->has_data && !it->has_hash && !(it->has_poisoned && it->poisoned)) {
			fail(mi, -EPROTO, "page %" PRIu64 " came with no content", it->page);
			return;
		}
		if (!takes(mi, r, idx))
			continue;
		page_entry e;
		if (it->has_poisoned && it->poisoned)
			e = pe_make(PAGE_POISONED, 0, 0);
		else if (it->has_hash && !it->has_data && !it->has_word ? take_offer(vm, mi, it, &e)
									: store_content(vm, mi, it, &e))
			return;
		set_entry(vm, r, idx, e);
		mi->arrived_pages += pe_state(e) != PAGE_REMOTE;
		if (mi->n_adopt == MIGRATE_IN_PULL_BATCH)
			adopt_offers(vm, mi);
	}
	if (mi->n_adopt && !mi->err)
		adopt_offers(vm, mi);
}

static void take_invalidations(struct vm *vm, struct migrate_in *mi, const Memsrv__MigrateInvalidate *inv)
{
	if (mi->stopped || inv->n_runs % 2) {
		fail(mi, -EPROTO, mi->stopped ? "pages invalidated after the VM stopped" : "an odd number of run numbers");
		return;
	}
	for (size_t i = 0; i < inv->n_runs; i += 2) {
		uint64_t first = inv->runs[i], count = inv->runs[i + 1];
		if (first >= mi->pages || count > mi->pages - first) {
			fail(mi, -EPROTO, "invalidated pages %" PRIu64 "+%" PRIu64 " are past the VM's %" PRIu64, first,
			     count, mi->pages);
			return;
		}
		for (uint64_t p = first; p < first + count; p++) {
			struct region *r = vm_region_of_page(vm, p);
			uint64_t idx = p - r->first_page;
			if (takes(mi, r, idx))
				set_entry(vm, r, idx, pe_make(PAGE_REMOTE, 0, 0));
		}
	}
}

static uint64_t remote_pages(const struct vm *vm)
{
	return vm_count(vm, PAGE_REMOTE);
}

/* Every page is here: the source is told, the VM is an ordinary one. */
static void complete(struct vm *vm, struct migrate_in *mi)
{
	struct latency_summary s;
	latency_summarize(&mi->wait, &s);
	Memsrv__MigrateConfirm c = MEMSRV__MIGRATE_CONFIRM__INIT;
	c.pulled_pages = mi->pulled_pages;
	c.pull_wait_p50_ns = (uint64_t)(s.p50_us * 1000);
	c.pull_wait_p99_ns = (uint64_t)(s.p99_us * 1000);
	c.pull_wait_max_ns = (uint64_t)(s.max_us * 1000);
	c.shared_pages = mi->shared_pages;
	Memsrv__PeerMessage m = MEMSRV__PEER_MESSAGE__INIT;
	m.msg_case = MEMSRV__PEER_MESSAGE__MSG_MIGRATE_CONFIRM;
	m.migrate_confirm = &c;
	send_msg(mi, &m);
	if (mi->err)
		return;
	/* the Confirm is a few bytes on a socket that drained: wait for it
	 * to go rather than close it unsent */
	for (int tries = 0; peer_tx_pending(&mi->tx) && tries < 100; tries++) {
		struct pollfd p = { .fd = mi->fd, .events = POLLOUT };
		poll(&p, 1, 10);
		if (peer_tx_flush(&mi->tx, mi->fd) && !peer_tx_pending(&mi->tx))
			break;
	}
	vm_info(vm, "migrated in from %s: %" PRIu64 " pages arrived in %" PRIu64 " ms (%" PRIu64
		" from this node's store by their hash), %" PRIu64 " pulled by faults (waits p50 %.0f us, p99 %.0f us, "
		"max %.0f us)", mi->peer, mi->arrived_pages, (monotonic_ns() - mi->t_bound) / 1000000, mi->shared_pages,
		mi->pulled_pages, s.p50_us, s.p99_us, s.max_us);
	vm->incoming = false;
	release_parked(vm, mi, true);
	migrate_in_free(vm);
}

/* One message of the stream; false when the stream ended. */
static bool take_message(struct vm *vm, struct migrate_in *mi, const Memsrv__PeerMessage *msg)
{
	switch (msg->msg_case) {
	case MEMSRV__PEER_MESSAGE__MSG_MIGRATE_PAGES:
		take_pages(vm, mi, msg->migrate_pages);
		if (mi->n_parked && !mi->err && mi->stopped) {
			/* a fault waits: serve it now, not after the next batches */
			release_parked(vm, mi, false);
			fault_serve_pending(vm);
		}
		break;
	case MEMSRV__PEER_MESSAGE__MSG_MIGRATE_INVALIDATE:
		take_invalidations(vm, mi, msg->migrate_invalidate);
		break;
	case MEMSRV__PEER_MESSAGE__MSG_MIGRATE_STOPPED:
		if (mi->stopped)
			fail(mi, -EPROTO, "the source said twice that the VM stopped");
		mi->stopped = true;
		vm_info(vm, "the source VM stopped: %" PRIu64 " pages still to come from %s", remote_pages(vm), mi->peer);
		break;
	case MEMSRV__PEER_MESSAGE__MSG_MIGRATE_DONE:
		if (!mi->stopped || mi->done) {
			fail(mi, -EPROTO, "the source said it was done %s", mi->done ? "twice" : "before the VM stopped");
			return false;
		}
		mi->done = true;  /* the pages wanted still come */
		break;
	case MEMSRV__PEER_MESSAGE__MSG_ERROR:
		fail(mi, -ECONNABORTED, "the source gave up: %.200s", msg->error->message);
		return false;
	default:
		fail(mi, -EPROTO, "the source sent an unexpected %s", peer_message_kind(msg));
		return false;
	}
	if (!mi->err && mi->done && !remote_pages(vm)) {
		complete(vm, mi);
		return false;
	}
	return !mi->err;
}

/* The stream failed: before the stop the VM waits for another source with
 * every page REMOTE again; after it the pages that did not come are lost. */
static void stream_failed(struct vm *vm, struct migrate_in *mi)
{
	uint64_t changed = 0;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		for (uint64_t p = 0; p < r->pt.npages; p++) {
			enum page_state s = pe_state(r->pt.entries[p]);
			if (!mi->stopped && (s == PAGE_STORED || s == PAGE_ZERO || s == PAGE_POISONED)) {
				set_entry(vm, r, p, pe_make(PAGE_REMOTE, 0, 0));
				changed++;
			} else if (mi->stopped && s == PAGE_REMOTE) {
				page_table_set(&r->pt, p, pe_make(PAGE_POISONED, 0, 0));
				changed++;
			}
		}
	}
	if (!mi->stopped) {
		vm_warn(vm, "incoming migration from %s failed before the source VM stopped: %s; the %" PRIu64
			" pages that came are dropped and the VM waits for another source", mi->peer, mi->why, changed);
		close_stream(mi);
		atomic_store(&vm->migration, VM_MIGRATION_WAITING);
		memset(mi->pulled, 0, (mi->pages / 64 + 1) * sizeof *mi->pulled);
		mi->n_pulls = mi->n_wants = 0;
		mi->err = 0;
		return;
	}
	vm_err(vm, "incoming migration from %s failed after the source VM stopped: %s; %" PRIu64
	       " pages that had not come are lost (poisoned: the guest gets a machine check on them)", mi->peer, mi->why,
	       changed);
	ctr_add(&vm->ctr.pages_poisoned, changed);
	vm->incoming = false;
	release_parked(vm, mi, true);
	migrate_in_free(vm);
}

/* Takes what fd holds into rx, whole messages handled, for the step's
 * time at most; urgent: only pulled pages may come.  False when the stream
 * ended (completed: mi is gone; or mi->err says why). */
static bool take_stream(struct vm *vm, struct migrate_in *mi, int fd, struct peer_rx *rx, bool urgent,
			uint64_t until)
{
	/* (called for the urgent connection from within the main one's: never
	 * deeper, for urgent never recurses) */
	for (;;) {
		ssize_t n = peer_rx_read(rx, fd);
		for (;;) {
			Memsrv__PeerMessage *msg;
			struct wire_fault fault = { "" };
			int ret = peer_rx_next(rx, &msg, &fault);
			if (ret == 0)
				break;
			if (ret < 0) {
				fail(mi, -EPROTO, "malformed stream from the source: %s", fault.what);
				return false;
			}
			bool on;
			if (urgent && (msg->msg_case != MEMSRV__PEER_MESSAGE__MSG_MIGRATE_PAGES || !mi->stopped)) {
				fail(mi, -EPROTO, "the source sent a %s on the connection for pulled pages%s",
				     peer_message_kind(msg), mi->stopped ? "" : " before the VM stopped");
				on = false;
			} else {
				on = take_message(vm, mi, msg);
			}
			memsrv__peer_message__free_unpacked(msg, NULL);
			if (!on)
				return false;
			/* between two batches of the stream, the pulled pages that came */
			if (!urgent && mi->stopped && mi->ufd >= 0 && !take_stream(vm, mi, mi->ufd, &mi->urx, true, 0))
				return false;
		}
		if (n == -EAGAIN)
			return true;
		if (n == 0) {
			fail(mi, -ECONNRESET, "the source closed the connection%s", urgent ? " for pulled pages" : "");
			return false;
		}
		if (n < 0) {
			fail(mi, (int)n, "reading from the source failed: %s", strerror((int)-n));
			return false;
		}
		if (monotonic_ns() >= until)
			return true;  /* the guest's faults come first */
	}
}

void migrate_in_step(struct vm *vm, const struct pollfd pf[2])
{
	struct migrate_in *mi = vm->eng.migrate_in;
	if (!mi || mi->fd < 0)
		return;
	if (pf[0].revents & POLLOUT) {
		int ret = peer_tx_flush(&mi->tx, mi->fd);
		if (ret && ret != -EAGAIN)
			fail(mi, ret, "sending to the source failed: %s", strerror(-ret));
	}
	uint64_t until = monotonic_ns() + STEP_NS;
	/* pulled pages first: faults wait on them.  Either stream may complete
	 * the migration, which frees mi: then nothing of it is read again */
	if (!mi->err && mi->ufd >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
	    !take_stream(vm, mi, mi->ufd, &mi->urx, true, until) && vm->eng.migrate_in != mi)
		return;
	if (!mi->err && (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
	    !take_stream(vm, mi, mi->fd, &mi->rx, false, until) && vm->eng.migrate_in != mi)
		return;
	if (mi->err) {
		stream_failed(vm, mi);
		return;
	}
	release_parked(vm, mi, false);
	send_list(mi, true);
	send_list(mi, false);
	if (mi->err)
		stream_failed(vm, mi);
}
