/* store: content-addressed, reference-counted page objects for all VMs.
 *
 * One mutex guards the object table, the hash index, the LRU and the pool.
 * Hashing and compressing happen outside it.  A lookup compares every
 * candidate whose hash matches in full, so that a hash collision can never
 * hand one VM another VM's data: one in memory under the lock, one in swap
 * pinned and read without it.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>
#include <xxhash.h>

#include "clock.h"
#include "log.h"
#include "remote_tier.h"
#include "zpool.h"

#define CHUNK_BITS 16
#define CHUNK_OBJS (1u << CHUNK_BITS)
#define MAX_CHUNKS (1u << 16)       /* 2^32 objects: 16 TiB of distinct pages */
#define RAW_LEN CODEC_PAGE          /* a stored length of a whole page: kept raw */
#define WB_BATCH 32                 /* objects written back per io_uring submission */
#define RB_BATCH 64                 /* objects uploaded to the cluster per WAIT */
#define REMOTE_SYNC_MS 10000        /* a synchronous read of the cluster (detach, shutdown) */
#define WB_HIGH(b) ((b) / 100 * 95) /* writeback starts above this much of the budget... */
#define WB_LOW(b) ((b) / 100 * 85)  /* ...and stops below this */

/* An object as the objects file holds it (with persistence): the fields up
 * to codec are its record, the rest is rebuilt by store_restore(). */
struct obj {
	uint64_t hash_lo, hash_hi;
	uint64_t loc;                /* CACHE: zpool handle; SAMEFILL: the word (REMOTE: digests[] names it) */
	swap_loc swap;               /* SWAP: where; written before tier turns SWAP */
	uint32_t refs;
	uint32_t next;               /* hash chain; the free list when FREE */
	uint32_t lru_prev, lru_next; /* CACHE objects, oldest first */
	uint16_t len;
	uint16_t pins;               /* swap reads in flight: the slot must stay */
	uint8_t tier;
	uint8_t codec;
	uint8_t writing;             /* being written back: the cache copy must stay */
	uint8_t orphan;              /* no references left; freed when unpinned */
};

struct store {
	pthread_mutex_t lock;
	struct store_config cfg;
	struct obj *chunks[MAX_CHUNKS];
	struct remote_digest *digests[MAX_CHUNKS];  /* with remote: the cluster's name of each object */
	uint32_t next_fresh;         /* ids below it have been handed out */
	uint32_t free_ids;           /* head of the list of freed ids */
	bool out_of_room;            /* the last put found no memory or file space */
	uint32_t *buckets;
	uint32_t nbuckets;           /* a power of two */
	uint32_t lru_head, lru_tail;
	struct zpool *pool;
	struct store_stats st;
	/* writeback: the coldest cache objects go to swap when over budget */
	pthread_t writeback;
	bool writeback_started, stopping;
	pthread_cond_t wb_wake;      /* the cache passed its high watermark */
	pthread_cond_t room;         /* writeback freed some of the cache */
	uint64_t remote_failing_since;  /* uploads got nowhere: retried a second later */
	uint8_t cmp_page[CODEC_PAGE];  /* a candidate decompressed for the full compare */
};

static struct obj *obj_at(const struct store *s, obj_id id)
{
	return &s->chunks[id >> CHUNK_BITS][id & (CHUNK_OBJS - 1)];
}

static void *writeback_main(void *arg);

struct store *store_create(const struct store_config *cfg)
{
	struct store *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->cfg = *cfg;
	if (!s->cfg.incompressible_bytes)
		s->cfg.incompressible_bytes = 3000;
	s->st.cache_budget_bytes = cfg->cache_budget;
	s->next_fresh = 1;  /* 0 names nothing */
	s->nbuckets = 1u << 16;
	s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
	s->pool = cfg->persistent ? zpool_create_in_file(cfg->pool_fd) : zpool_create();
	if (!s->buckets || !s->pool) {
		store_destroy(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wb_wake, NULL);
	pthread_cond_init(&s->room, NULL);
	if (cfg->swap) {
		struct swapfile_stats ss;
		swapfile_get_stats(cfg->swap, &ss);
		s->st.swap_size_bytes = ss.size_bytes;
	}
	if (cfg->swap || cfg->remote) {
		if (pthread_create(&s->writeback, NULL, writeback_main, s)) {
			store_destroy(s);
			return NULL;
		}
		s->writeback_started = true;
	}
	return s;
}

void store_destroy(struct store *s)
{
	if (!s)
		return;
	if (s->writeback_started) {
		pthread_mutex_lock(&s->lock);
		s->stopping = true;
		pthread_cond_broadcast(&s->wb_wake);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->writeback, NULL);
	}
	for (uint32_t c = 0; c < MAX_CHUNKS && s->chunks[c]; c++) {
		if (s->cfg.persistent) {
			munmap(s->chunks[c], CHUNK_OBJS * sizeof(struct obj));
			if (s->digests[c])
				munmap(s->digests[c], CHUNK_OBJS * sizeof(struct remote_digest));
		} else {
			free(s->chunks[c]);
			free(s->digests[c]);
		}
	}
	if (s->pool)
		zpool_destroy(s->pool);
	free(s->buckets);
	free(s);
}

/* Memory for chunk number chunk of a table of CHUNK_OBJS records of size
 * bytes each: zeroed, or its place in the table's file fd (persistent), as
 * an earlier store left it. */
static void *table_chunk_new(const struct store *s, int fd, size_t size, uint32_t chunk)
{
	const size_t bytes = CHUNK_OBJS * size;
	if (!s->cfg.persistent)
		return calloc(CHUNK_OBJS, size);
	off_t off = (off_t)chunk * (off_t)bytes;
	if (fallocate(fd, 0, off, (off_t)bytes))  /* ENOSPC now, not SIGBUS at a write */
		return NULL;
	void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	return mem == MAP_FAILED ? NULL : mem;
}

/* Objects [chunk << CHUNK_BITS, +CHUNK_OBJS), and their digests with a
 * remote tier. */
static struct obj *chunk_new(struct store *s, uint32_t chunk)
{
	if (s->cfg.remote && !s->digests[chunk] &&
	    !(s->digests[chunk] = table_chunk_new(s, s->cfg.digests_fd, sizeof(struct remote_digest), chunk)))
		return NULL;
	return table_chunk_new(s, s->cfg.objects_fd, sizeof(struct obj), chunk);
}

static struct remote_digest *digest_of(const struct store *s, obj_id id)
{
	return &s->digests[id >> CHUNK_BITS][id & (CHUNK_OBJS - 1)];
}

/* Whether an object's content must be read from elsewhere: a file (swap)
 * or the cluster (remote), not this process's memory. */
static bool read_from_outside(const struct obj *o)
{
	return o->tier == TIER_SWAP || o->tier == TIER_REMOTE;
}

static obj_id alloc_id(struct store *s)
{
	if (s->free_ids) {
		obj_id id = s->free_ids;
		s->free_ids = obj_at(s, id)->next;
		return id;
	}
	obj_id id = s->next_fresh;
	uint32_t chunk = id >> CHUNK_BITS;
	if (chunk >= MAX_CHUNKS)
		return 0;
	if (!s->chunks[chunk] && !(s->chunks[chunk] = chunk_new(s, chunk)))
		return 0;
	s->next_fresh++;
	return id;
}

static void free_id(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	memset(o, 0, sizeof *o);
	o->next = s->free_ids;
	s->free_ids = id;
}

static uint32_t *bucket_of(struct store *s, uint64_t hash_lo)
{
	return &s->buckets[hash_lo & (s->nbuckets - 1)];
}

/* Puts object id at the head of its hash's chain.  Under the lock. */
static void index_link(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	uint32_t *head = bucket_of(s, o->hash_lo);
	o->next = *head;
	*head = id;
}

/* Doubles the index once it holds twice as many objects as buckets. */
static void maybe_grow_index(struct store *s)
{
	if (s->st.objects < (uint64_t)s->nbuckets * 2 || s->nbuckets >= (1u << 31))
		return;
	uint32_t n = s->nbuckets * 2;
	uint32_t *b = calloc(n, sizeof *b);
	if (!b)
		return;  /* longer chains, still correct */
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
	for (obj_id id = 1; id < s->next_fresh; id++) {
		struct obj *o = obj_at(s, id);
		if (o->tier == TIER_FREE || o->orphan)
			continue;  /* an orphan waits to be freed: never to be shared again */
		index_link(s, id);
	}
}

static void index_remove(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	for (uint32_t *p = bucket_of(s, o->hash_lo); *p; p = &obj_at(s, *p)->next)
		if (*p == id) {
			*p = o->next;
			return;
		}
}

static void lru_unlink(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	if (o->lru_prev)
		obj_at(s, o->lru_prev)->lru_next = o->lru_next;
	else
		s->lru_head = o->lru_next;
	if (o->lru_next)
		obj_at(s, o->lru_next)->lru_prev = o->lru_prev;
	else
		s->lru_tail = o->lru_prev;
	o->lru_prev = o->lru_next = 0;
}

/* Newest at the tail.  Pages that barely compress go to the head: they are
 * the first worth writing to swap as they are. */
static void lru_insert(struct store *s, obj_id id, bool first_out)
{
	struct obj *o = obj_at(s, id);
	if (first_out) {
		o->lru_next = s->lru_head;
		o->lru_prev = 0;
		if (s->lru_head)
			obj_at(s, s->lru_head)->lru_prev = id;
		else
			s->lru_tail = id;
		s->lru_head = id;
	} else {
		o->lru_prev = s->lru_tail;
		o->lru_next = 0;
		if (s->lru_tail)
			obj_at(s, s->lru_tail)->lru_next = id;
		else
			s->lru_head = id;
		s->lru_tail = id;
	}
}

/* A cache object's slot and place in the LRU go (it is freed, or now
 * held elsewhere).  Under the lock. */
static void leave_cache(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	lru_unlink(s, id);
	zpool_free(s->pool, o->loc);
	s->st.cache_objects--;
	s->st.cache_bytes -= o->len;
	s->st.cache_raw_objects -= o->len == RAW_LEN;
}

/* Sharing statistics follow every reference change of an object. */
static void ref_changed(struct store *s, const struct obj *o, uint32_t before)
{
	uint32_t after = o->refs;
	uint64_t shared_before = before > 1 ? before : 0, shared_after = after > 1 ? after : 0;
	s->st.shared_pages += shared_after - shared_before;
	uint64_t saved_before = before ? (uint64_t)(before - 1) * o->len : 0;
	uint64_t saved_after = after ? (uint64_t)(after - 1) * o->len : 0;
	s->st.shared_saved_bytes += saved_after - saved_before;
	s->st.references += (uint64_t)after - before;
}

/* Releases what an object holds and its id; its references are gone. */
static void free_obj(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	switch (o->tier) {
	case TIER_CACHE:
		leave_cache(s, id);
		break;
	case TIER_SWAP:
		swapfile_free(s->cfg.swap, o->swap);
		s->st.swap_objects--;
		s->st.swap_bytes -= o->len;
		s->st.swap_full = 0;
		break;
	case TIER_SAMEFILL:
		s->st.samefilled_objects--;
		break;
	case TIER_REMOTE:
		remote_tier_release(s->cfg.remote, digest_of(s, id));
		s->st.remote_objects--;
		s->st.remote_bytes -= o->len;
		break;
	default:
		break;
	}
	s->st.objects--;
	free_id(s, id);
}

static uint64_t cache_slot_bytes(const struct store *s)
{
	struct zpool_stats ps;
	zpool_get_stats(s->pool, &ps);
	return ps.slot_bytes;
}

/* Fills page with an object's content; called with the lock held. */
static int read_locked(struct store *s, struct codec_ctx *ctx, const struct obj *o, void *page)
{
	switch (o->tier) {
	case TIER_SAMEFILL:
		for (size_t off = 0; off < CODEC_PAGE; off += sizeof o->loc)
			memcpy((char *)page + off, &o->loc, sizeof o->loc);
		return 0;
	case TIER_CACHE: {
		const void *src = zpool_map(s->pool, o->loc);
		if (o->len == RAW_LEN) {
			memcpy(page, src, CODEC_PAGE);
			return 0;
		}
		/* our own memory, so a bug or a bit flip: the content is lost */
		return codec_decompress(ctx, o->codec, src, o->len, page) ? -EILSEQ : 0;
	}
	default:
		return -EIO;
	}
}

/* A content hash as the index keeps it: all of it, or its low hash_bits
 * (tests force collisions so). */
static void index_hash(const struct store *s, uint64_t *lo, uint64_t *hi)
{
	if (s->cfg.hash_bits && s->cfg.hash_bits < 64) {
		*lo &= (1ull << s->cfg.hash_bits) - 1;
		*hi = 0;
	}
}

static void page_hash(const struct store *s, const void *page, bool samefilled, uint64_t word, uint64_t *lo,
		      uint64_t *hi)
{
	/* a samefilled page is known by its word: no need to hash 4 KiB */
	XXH128_hash_t h = samefilled ? XXH3_128bits_withSeed(&word, sizeof word, 0x5a3e)
				     : XXH3_128bits(page, CODEC_PAGE);
	*lo = h.low64;
	*hi = h.high64;
	index_hash(s, lo, hi);
}

void store_content_hash(const void *page, uint64_t *lo, uint64_t *hi)
{
	XXH128_hash_t h = XXH3_128bits(page, CODEC_PAGE);
	*lo = h.low64;
	*hi = h.high64;
}

int store_share_by_hash(struct store *s, uint64_t lo, uint64_t hi, obj_id *id)
{
	index_hash(s, &lo, &hi);
	pthread_mutex_lock(&s->lock);
	*id = 0;
	for (obj_id o_id = *bucket_of(s, lo); o_id; o_id = obj_at(s, o_id)->next) {
		struct obj *o = obj_at(s, o_id);
		if (o->hash_lo != lo || o->hash_hi != hi || o->tier == TIER_SAMEFILL)
			continue;
		uint32_t before = o->refs++;
		ref_changed(s, o, before);
		s->st.dedup_hits++;
		*id = o_id;
		break;
	}
	pthread_mutex_unlock(&s->lock);
	return *id ? 0 : -ENOENT;
}

/* The cluster's name of object id, in TIER_REMOTE.  Under the lock. */
static struct store_remote_name remote_name_locked(const struct store *s, obj_id id, const struct obj *o)
{
	return (struct store_remote_name){ .hash_lo = o->hash_lo, .hash_hi = o->hash_hi, .digest = *digest_of(s, id) };
}

bool store_remote_name(struct store *s, obj_id id, struct store_remote_name *out)
{
	pthread_mutex_lock(&s->lock);
	const struct obj *o = obj_at(s, id);
	bool remote = o->tier == TIER_REMOTE;
	if (remote)
		*out = remote_name_locked(s, id, o);
	pthread_mutex_unlock(&s->lock);
	return remote;
}

int store_pin_remote_name(struct store *s, obj_id id, struct store_remote_name *out)
{
	pthread_mutex_lock(&s->lock);
	struct obj *o = obj_at(s, id);
	int ret = o->tier == TIER_FREE || o->orphan ? -ENOENT : o->tier == TIER_REMOTE;
	if (ret == 1) {
		*out = remote_name_locked(s, id, o);
		o->pins++;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

struct remote_tier *store_remote_tier(struct store *s)
{
	return s->cfg.remote;
}

void store_adopt_remote(struct store *s, const struct store_remote_name *names, unsigned n, obj_id *ids)
{
	for (unsigned i = 0; i < n; i++)
		ids[i] = 0;
	if (!s->cfg.remote || !n)
		return;
	struct remote_upload *up = calloc(n, sizeof *up);
	if (!up)
		return;
	for (unsigned i = 0; i < n; i++)
		up[i].d = names[i].digest;  /* no value: a reference only */
	remote_tier_upload(s->cfg.remote, up, n);
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < n; i++) {
		if (up[i].result)
			continue;
		obj_id id = alloc_id(s);
		if (!id) {
			/* no memory for the object: the reference goes back, the
			 * content will come as content */
			remote_tier_release(s->cfg.remote, &names[i].digest);
			continue;
		}
		uint64_t lo = names[i].hash_lo, hi = names[i].hash_hi;
		index_hash(s, &lo, &hi);
		struct obj *o = obj_at(s, id);
		o->hash_lo = lo;
		o->hash_hi = hi;
		o->refs = 1;
		/* its payload's length, for the books: the value less its header */
		o->len = up[i].held_len > REMOTE_HEADER_BYTES ? (uint16_t)(up[i].held_len - REMOTE_HEADER_BYTES) : 0;
		*digest_of(s, id) = names[i].digest;
		atomic_signal_fence(memory_order_release);
		o->tier = TIER_REMOTE;
		index_link(s, id);
		s->st.objects++;
		s->st.references++;
		s->st.remote_objects++;
		s->st.remote_bytes += o->len;
		maybe_grow_index(s);
		ids[i] = id;
	}
	pthread_mutex_unlock(&s->lock);
	free(up);
}

/* Describes the read of an object in swap or in the cluster and pins it:
 * its slot (or its reference) stays until the read ends.  Called with the
 * lock held. */
static void read_begin_locked(struct store *s, obj_id id, struct store_read *rd)
{
	struct obj *o = obj_at(s, id);
	o->pins++;
	rd->id = id;
	rd->codec = o->codec;
	rd->hash_lo = o->hash_lo;
	rd->hash_hi = o->hash_hi;
	rd->remote = o->tier == TIER_REMOTE;
	if (rd->remote) {
		/* the remote tier hands the page over checked and decoded */
		rd->digest = *digest_of(s, id);
		rd->len = RAW_LEN;
		rd->io = (struct swap_io){ .fd = -1, .len = CODEC_PAGE };
	} else {
		rd->len = o->len;
		swapfile_io(s->cfg.swap, o->swap, &rd->io);
	}
}

/* Whether page (not same-filled) is the content of o, which is in the
 * cluster: their SHA-256 says so, without a read of the cluster.  *sha
 * caches the page's across candidates.  Under the lock. */
static bool same_as_remote(const struct store *s, obj_id id, const void *page, struct remote_digest *sha,
			   bool *have_sha)
{
	if (!*have_sha) {
		remote_digest_page(page, sha);
		*have_sha = true;
	}
	return !memcmp(sha->b, digest_of(s, id)->b, sizeof sha->b);
}

/* Looks for a stored object with this content in the hash chain from id
 * on.  Returns the object, with a reference taken; 0 when there is none;
 * or, for a candidate in swap that must be read to be compared, sets
 * *in_swap (pinned, rd filled) and returns 0. */
static obj_id find_locked(struct store *s, struct codec_ctx *ctx, const void *page, bool samefilled, uint64_t word,
			  uint64_t lo, uint64_t hi, obj_id id, bool *in_swap, struct store_read *rd)
{
	*in_swap = false;
	struct remote_digest sha;
	bool have_sha = false;
	for (; id; id = obj_at(s, id)->next) {
		struct obj *o = obj_at(s, id);
		if (o->hash_lo != lo || o->hash_hi != hi)
			continue;
		bool same;
		if (samefilled || o->tier == TIER_SAMEFILL) {
			same = samefilled && o->tier == TIER_SAMEFILL && o->loc == word;
		} else if (o->tier == TIER_REMOTE) {
			same = same_as_remote(s, id, page, &sha, &have_sha);
		} else if (o->tier == TIER_SWAP) {
			/* reading swap under the lock would stall every VM */
			read_begin_locked(s, id, rd);
			*in_swap = true;
			return 0;
		} else {
			same = read_locked(s, ctx, o, s->cmp_page) == 0 && !memcmp(s->cmp_page, page, CODEC_PAGE);
		}
		if (!same) {
			s->st.hash_collisions++;
			continue;
		}
		uint32_t before = o->refs++;
		ref_changed(s, o, before);
		s->st.dedup_hits++;
		return id;
	}
	return 0;
}

/* Where a thread reads swap synchronously: aligned for direct I/O. */
static __thread uint8_t sync_buf[CODEC_PAGE] __attribute__((aligned(CODEC_PAGE)));

/* A read of swap (or of the cluster) done synchronously into buf (aligned
 * to the swap unit): bytes read or -errno. */
static int read_sync(const struct store *s, const struct store_read *rd, void *buf)
{
	if (rd->remote)
		return remote_tier_read_sync(s->cfg.remote, &rd->digest, buf, REMOTE_SYNC_MS);
	ssize_t n;
	do
		n = pread(rd->io.fd, buf, rd->io.len, (off_t)rd->io.offset);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (int)n;
}

/* Decodes what a read of swap brought (res: bytes read or -errno) into
 * page and checks it against the hash it was stored under: a filesystem
 * that lost its own metadata after a write error can hand back other data.
 * 0 or a -errno that names the cause (store.h, store_read_end); *corrupt
 * when the read was whole but its content is not the page's.  Needs no lock. */
static int read_decode(const struct store *s, struct codec_ctx *ctx, const struct store_read *rd, const void *buf,
		       int res, void *page, bool *corrupt)
{
	*corrupt = false;
	if (res < 0)
		return res;
	if (res != (int)rd->io.len || !buf)
		return -ENODATA;
	if (rd->len == RAW_LEN)
		memcpy(page, buf, CODEC_PAGE);
	else if (codec_decompress(ctx, rd->codec, buf, rd->len, page))
		return (*corrupt = true), -EILSEQ;
	uint64_t lo, hi;
	page_hash(s, page, false, 0, &lo, &hi);
	*corrupt = lo != rd->hash_lo || hi != rd->hash_hi;
	return *corrupt ? -EBADMSG : 0;
}

/* Lets go of a pin; an object that lost its last reference meanwhile goes.
 * Under the lock. */
static void unpin_locked(struct store *s, obj_id id)
{
	struct obj *o = obj_at(s, id);
	o->pins--;
	if (o->orphan && !o->pins && !o->writing)
		free_obj(s, id);
}

/* Counts how a read of swap went and unpins its object, which goes if it
 * lost its last reference meanwhile.  Called with the lock held. */
static void read_end_locked(struct store *s, const struct store_read *rd, int ret, int res, bool corrupt)
{
	s->st.swap_checksum_errors += corrupt;
	if (ret && res != -ECANCELED && !rd->remote)  /* a VM going away cancels; that is no error */
		s->st.swap_read_errors++;  /* the remote tier counts its own */
	unpin_locked(s, rd->id);
}

/* The candidate find_locked() pinned in swap: read and compared in full
 * without the lock (store_put runs on the eviction path, where a
 * synchronous read is acceptable).  Called and returns with the lock held.
 * Returns the candidate with a reference taken if it holds page's content;
 * else 0, and *next is where the lookup goes on. */
static obj_id share_from_swap(struct store *s, struct codec_ctx *ctx, const void *page, const struct store_read *rd,
			      obj_id *next)
{
	static __thread uint8_t stored[CODEC_PAGE];
	pthread_mutex_unlock(&s->lock);
	bool corrupt;
	int res = read_sync(s, rd, sync_buf);
	int ret = read_decode(s, ctx, rd, sync_buf, res, stored, &corrupt);
	bool same = !ret && !memcmp(stored, page, CODEC_PAGE);
	pthread_mutex_lock(&s->lock);

	/* the pin kept the id from being freed and reused, and content never
	 * changes; an orphan has left the index and must not be shared */
	struct obj *o = obj_at(s, rd->id);
	obj_id id = 0;
	if (same && !o->orphan) {
		uint32_t before = o->refs++;
		ref_changed(s, o, before);
		s->st.dedup_hits++;
		id = rd->id;
	} else if (!ret && !same) {
		s->st.hash_collisions++;
	}
	/* a candidate still indexed is still in the chain of its hash (a grown
	 * index rebuilt it), so the lookup goes on after it; one that left
	 * the index starts the lookup over */
	*next = o->orphan ? *bucket_of(s, rd->hash_lo) : o->next;
	read_end_locked(s, rd, ret, res, corrupt);
	return id;
}

/* Looks for a stored object with this content, in every tier; takes a
 * reference to it.  Called and returns with the lock held. */
static obj_id find_shared(struct store *s, struct codec_ctx *ctx, const void *page, bool samefilled, uint64_t word,
			  uint64_t lo, uint64_t hi)
{
	obj_id from = *bucket_of(s, lo);
	for (;;) {
		bool in_swap;
		struct store_read rd;
		obj_id id = find_locked(s, ctx, page, samefilled, word, lo, hi, from, &in_swap, &rd);
		if (!in_swap)
			return id;
		if ((id = share_from_swap(s, ctx, page, &rd, &from)))
			return id;
	}
}

/* A write that returned is not yet a write that stays: a sparse file's new
 * blocks (and ext4's unwritten extents) need metadata that can still fail
 * to reach the disk, and then the data reads back as zeros.  So each file
 * written to is synced before any cache copy is let go; a failed sync fails
 * every write of the batch to that file. */
static void sync_written(struct store *s, struct io_uring *ring, const swap_loc *locs, int *res, unsigned n)
{
	int fds[WB_BATCH];
	unsigned nfds = 0;
	for (unsigned i = 0; i < n; i++) {
		struct swap_io io;
		swapfile_io(s->cfg.swap, locs[i], &io);
		bool seen = false;
		for (unsigned k = 0; k < nfds; k++)
			seen |= fds[k] == io.fd;
		if (!res[i] && !seen)
			fds[nfds++] = io.fd;
	}
	for (unsigned k = 0; k < nfds; k++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		io_uring_prep_fsync(sqe, fds[k], IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data64(sqe, k);
	}
	int synced[WB_BATCH];
	for (unsigned k = 0; k < nfds; k++)
		synced[k] = -EIO;
	if (nfds && io_uring_submit_and_wait(ring, nfds) >= 0) {
		for (unsigned done = 0; done < nfds; done++) {
			struct io_uring_cqe *cqe;
			if (io_uring_wait_cqe(ring, &cqe))
				break;
			synced[io_uring_cqe_get_data64(cqe)] = cqe->res;
			io_uring_cqe_seen(ring, cqe);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct swap_io io;
		swapfile_io(s->cfg.swap, locs[i], &io);
		for (unsigned k = 0; k < nfds && !res[i]; k++)
			if (fds[k] == io.fd && synced[k] < 0)
				res[i] = synced[k];
	}
}

/* One batch: the oldest objects of the cache (the incompressible ones come
 * first) written to swap with one io_uring submission.  Called and returns
 * with the lock held; the I/O runs without it.  Returns objects moved. */
/* Takes up to WB_BATCH of the coldest cache objects for writeback: a swap
 * slot each, their data copied into bufs, marked writing.  Under the lock. */
static unsigned pick_writeback(struct store *s, uint8_t *bufs, obj_id *ids, swap_loc *locs)
{
	unsigned n = 0;
	for (obj_id id = s->lru_head; id && n < WB_BATCH; id = obj_at(s, id)->lru_next) {
		struct obj *o = obj_at(s, id);
		if (o->writing || o->orphan)
			continue;
		if (swapfile_alloc(s->cfg.swap, o->len, &locs[n])) {
			s->st.swap_full = 1;
			break;
		}
		/* copy out under the lock: the slot may not move while we write */
		uint8_t *buf = bufs + (size_t)n * CODEC_PAGE;
		memcpy(buf, zpool_map(s->pool, o->loc), o->len);
		memset(buf + o->len, 0, CODEC_PAGE - o->len);
		o->writing = 1;
		ids[n++] = id;
	}
	return n;
}

/* Writes the n buffers to their swap slots in one submission and makes
 * them durable; res[i] gets 0 or -errno for each.  Without the lock. */
static void write_batch(struct store *s, struct io_uring *ring, uint8_t *bufs, const swap_loc *locs, int *res,
			unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct swap_io io;
		swapfile_io(s->cfg.swap, locs[i], &io);
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		io_uring_prep_write(sqe, io.fd, bufs + (size_t)i * CODEC_PAGE, io.len, io.offset);
		io_uring_sqe_set_data64(sqe, i);
		res[i] = -EIO;
	}
	int ret = io_uring_submit_and_wait(ring, n);
	for (unsigned done = 0; ret >= 0 && done < n; done++) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(ring, &cqe))
			break;
		uint64_t i = io_uring_cqe_get_data64(cqe);
		struct swap_io io;
		swapfile_io(s->cfg.swap, locs[i], &io);
		res[i] = cqe->res == (int)io.len ? 0 : cqe->res < 0 ? cqe->res : -EIO;
		io_uring_cqe_seen(ring, cqe);
	}
	sync_written(s, ring, locs, res, n);
}

/* Object id's write to loc failed with err: the page stays in the cache,
 * nothing is lost, the error is counted.  Under the lock. */
static void writeback_failed(struct store *s, swap_loc loc, int err)
{
	swapfile_free(s->cfg.swap, loc);
	if (s->st.swap_write_errors++ % 1000 == 0)
		pr_warn("swap write failed: %s (%" PRIu64 " failures so far); pages stay in the cache", strerror(-err),
			s->st.swap_write_errors);
	if (err == -ENOSPC)
		s->st.swap_full = 1;
	else
		s->st.swap_failing = 1;
}

/* Object id now lives at loc in swap: its cache slot goes.  Under the lock. */
static void move_to_swap(struct store *s, obj_id id, swap_loc loc)
{
	struct obj *o = obj_at(s, id);
	s->st.swap_failing = 0;
	/* the object names its swap copy before its cache slot is freed:
	 * freeing writes a free-list link into the slot */
	o->swap = loc;
	atomic_signal_fence(memory_order_release);  /* a crash between leaves it CACHE */
	o->tier = TIER_SWAP;
	leave_cache(s, id);
	s->st.swap_objects++;
	s->st.swap_bytes += o->len;
	s->st.writeback_objects++;
}

/* One round of writeback, entered and left with the lock held (dropped
 * while writing).  The number of objects moved to swap. */
static unsigned writeback_batch(struct store *s, struct io_uring *ring, uint8_t *bufs)
{
	obj_id ids[WB_BATCH];
	swap_loc locs[WB_BATCH];
	unsigned n = pick_writeback(s, bufs, ids, locs);
	if (!n)
		return 0;
	pthread_mutex_unlock(&s->lock);
	int res[WB_BATCH];
	write_batch(s, ring, bufs, locs, res, n);
	pthread_mutex_lock(&s->lock);

	unsigned moved = 0;
	for (unsigned i = 0; i < n; i++) {
		if (res[i] && !moved && i == n - 1)
			s->st.swap_full = 1;  /* nothing went through: refuse for a while, retried each second */
		obj_at(s, ids[i])->writing = 0;
		if (res[i]) {
			writeback_failed(s, locs[i], res[i]);
		} else {
			move_to_swap(s, ids[i], locs[i]);
			moved++;
		}
		struct obj *o = obj_at(s, ids[i]);
		if (o->orphan && !o->pins)
			free_obj(s, ids[i]);
	}
	pthread_cond_broadcast(&s->room);
	return moved;
}

/* Where writeback can send the cache's coldest objects now: swap while
 * it has room, the cluster when there is no swap or it is full (the rule
 * docs/architecture.md states).  Under the lock. */
static bool swap_takes(const struct store *s)
{
	return s->cfg.swap && !s->st.swap_full;
}

static bool remote_takes(const struct store *s)
{
	return s->cfg.remote && !s->st.remote_failing;
}

/* Objects of the cache on their way to the cluster: the coldest first. */
struct remote_batch {
	obj_id ids[RB_BATCH];
	uint32_t lens[RB_BATCH];
	uint8_t codecs[RB_BATCH];
	uint8_t stored[RB_BATCH][CODEC_PAGE];
	uint8_t values[RB_BATCH][REMOTE_OBJECT_MAX];
	struct remote_upload up[RB_BATCH];
	uint8_t page[CODEC_PAGE];
};

static unsigned pick_remote(struct store *s, struct remote_batch *b)
{
	unsigned n = 0;
	for (obj_id id = s->lru_head; id && n < RB_BATCH; id = obj_at(s, id)->lru_next) {
		struct obj *o = obj_at(s, id);
		if (o->writing || o->orphan)
			continue;
		memcpy(b->stored[n], zpool_map(s->pool, o->loc), o->len);
		b->lens[n] = o->len;
		b->codecs[n] = o->codec;
		o->writing = 1;
		b->ids[n++] = id;
	}
	return n;
}

/* Object id is now held by the cluster under d: its cache slot goes.
 * Under the lock. */
static void move_to_remote(struct store *s, obj_id id, const struct remote_digest *d)
{
	struct obj *o = obj_at(s, id);
	*digest_of(s, id) = *d;  /* named before its tier says so: a crash between leaves it CACHE */
	atomic_signal_fence(memory_order_release);
	o->tier = TIER_REMOTE;
	leave_cache(s, id);
	s->st.remote_objects++;
	s->st.remote_bytes += o->len;
	s->st.writeback_objects++;
}

/* One round of writeback to the cluster, entered and left with the lock
 * held (dropped while the cluster works).  The number of objects moved. */
static unsigned remote_writeback_batch(struct store *s, struct codec_ctx *ctx, struct remote_batch *b)
{
	unsigned n = pick_remote(s, b);
	if (!n)
		return 0;
	pthread_mutex_unlock(&s->lock);
	/* named by the SHA-256 of the page, whatever codec stored it */
	unsigned m = 0;
	int bad[RB_BATCH] = { 0 };
	for (unsigned i = 0; i < n; i++) {
		const void *page = b->stored[i];
		if (b->lens[i] != RAW_LEN && codec_decompress(ctx, b->codecs[i], b->stored[i], b->lens[i], b->page)) {
			bad[i] = 1;  /* our own memory does not decode: it stays as it is */
			continue;
		}
		if (b->lens[i] != RAW_LEN)
			page = b->page;
		remote_digest_page(page, &b->up[m].d);
		/* a raw one (RAW_LEN) is marked raw, whatever its codec says */
		b->up[m].len = remote_object_encode((enum codec)b->codecs[i], b->stored[i], b->lens[i], b->values[m]);
		b->up[m].value = b->values[m];
		b->up[m].shared = false;
		m++;
	}
	remote_tier_upload(s->cfg.remote, b->up, m);
	pthread_mutex_lock(&s->lock);

	unsigned moved = 0;
	for (unsigned i = 0, k = 0; i < n; i++) {
		struct obj *o = obj_at(s, b->ids[i]);
		o->writing = 0;
		int res = bad[i] ? -EILSEQ : b->up[k++].result;
		if (!res) {
			move_to_remote(s, b->ids[i], &b->up[k - 1].d);
			moved++;
		} else if (!o->orphan) {
			/* to the back of the line: a shard without a replica must
			 * not hold up the others */
			lru_unlink(s, b->ids[i]);
			lru_insert(s, b->ids[i], false);
		}
		if (o->orphan && !o->pins)
			free_obj(s, b->ids[i]);
	}
	if (!moved) {
		s->st.remote_failing = 1;  /* nothing went through: refused for a second */
		s->remote_failing_since = monotonic_ns();
	} else {
		s->st.remote_failing = 0;
	}
	pthread_cond_broadcast(&s->room);
	return moved;
}

static void *writeback_main(void *arg)
{
	struct store *s = arg;
	struct io_uring ring;
	uint8_t *bufs = aligned_alloc(CODEC_PAGE, (size_t)WB_BATCH * CODEC_PAGE);
	struct remote_batch *rb = s->cfg.remote ? malloc(sizeof *rb) : NULL;
	struct codec_ctx *ctx = codec_ctx_create();
	int ret = io_uring_queue_init(WB_BATCH, &ring, 0);
	if (ret || !bufs || !ctx || (s->cfg.remote && !rb)) {
		pr_err("store: writeback cannot start (%s): nothing will leave the cache", strerror(ret ? -ret : ENOMEM));
		if (!ret)
			io_uring_queue_exit(&ring);
		free(bufs);
		free(rb);
		codec_ctx_destroy(ctx);
		return NULL;
	}
	pthread_mutex_lock(&s->lock);
	bool over = false;  /* from above the high watermark down to the low one */
	while (!s->stopping) {
		/* only over budget: a page in swap costs a disk read per fault
		 * (raw ones, which gain nothing in memory, go first) */
		uint64_t used = cache_slot_bytes(s);
		if (s->cfg.cache_budget && used > WB_HIGH(s->cfg.cache_budget))
			over = true;
		else if (used <= WB_LOW(s->cfg.cache_budget))
			over = false;
		if (s->st.remote_failing && monotonic_ns() - s->remote_failing_since >= 1000000000ull)
			s->st.remote_failing = 0;  /* tried again: the cluster may be back */
		if (!over || (!swap_takes(s) && !remote_takes(s))) {
			/* asleep until the cache fills again; a full or failing swap
			 * is retried now and then in case room came back */
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 1;
			if (pthread_cond_timedwait(&s->wb_wake, &s->lock, &until) == ETIMEDOUT)
				s->st.swap_full = 0;
			continue;
		}
		unsigned moved = swap_takes(s) ? writeback_batch(s, &ring, bufs) : remote_writeback_batch(s, ctx, rb);
		if (!moved) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 100 * 1000000;
			until.tv_sec += until.tv_nsec / 1000000000;
			until.tv_nsec %= 1000000000;
			pthread_cond_timedwait(&s->wb_wake, &s->lock, &until);
		}
	}
	pthread_mutex_unlock(&s->lock);
	io_uring_queue_exit(&ring);
	free(bufs);
	free(rb);
	codec_ctx_destroy(ctx);
	return NULL;
}

/* Room for a new object of len bytes (none for a same-filled page) and
 * its id, under the lock.  0 with *h (the cache slot, 0 if none) and
 * *nid; -EBUSY while writeback can make room, -ENOSPC when nothing can. */
static int reserve_obj(struct store *s, bool samefilled, uint32_t len, zpool_handle *h, obj_id *nid)
{
	int ret = 0;
	*h = 0;
	if (!samefilled) {
		uint64_t used = s->cfg.cache_budget ? cache_slot_bytes(s) : 0;
		if (s->cfg.cache_budget && used + len > s->cfg.cache_budget) {
			/* writeback can make room unless there is nowhere to go */
			ret = swap_takes(s) || remote_takes(s) ? -EBUSY : -ENOSPC;
			if (ret == -EBUSY)
				pthread_cond_signal(&s->wb_wake);
		} else {
			ret = zpool_alloc(s->pool, len, h);
			if (!ret && (s->cfg.swap || s->cfg.remote) && s->cfg.cache_budget &&
			    used + len > WB_HIGH(s->cfg.cache_budget))
				pthread_cond_signal(&s->wb_wake);
		}
	}
	*nid = ret ? 0 : alloc_id(s);
	if (!ret && !*nid)
		ret = -ENOMEM;
	/* no memory, or no room in the state dir's files: full until a put
	 * gets through again */
	if (ret == -ENOMEM) {
		s->out_of_room = true;
		ret = -ENOSPC;
	} else if (!ret && !samefilled) {
		s->out_of_room = false;  /* the pool took a page again */
	}
	if (ret && *h)
		zpool_free(s->pool, *h);
	return ret;
}

bool store_has_spare_room(struct store *s)
{
	pthread_mutex_lock(&s->lock);
	bool room = !s->out_of_room &&
		    (!s->cfg.cache_budget || cache_slot_bytes(s) + CODEC_PAGE <= WB_LOW(s->cfg.cache_budget));
	pthread_mutex_unlock(&s->lock);
	return room;
}

/* Fills the new object nid (in slot h unless same-filled) and indexes it
 * by its hash, under the lock. */
static void insert_obj(struct store *s, obj_id nid, zpool_handle h, enum codec c, bool samefilled, uint64_t word,
		       const void *data, uint32_t len, uint64_t lo, uint64_t hi)
{
	struct obj *o = obj_at(s, nid);
	o->hash_lo = lo;
	o->hash_hi = hi;
	o->refs = 1;
	o->codec = (uint8_t)c;
	if (samefilled) {
		o->tier = TIER_SAMEFILL;
		o->loc = word;
		o->len = 0;
		s->st.samefilled_objects++;
	} else {
		memcpy(zpool_map(s->pool, h), data, len);
		o->tier = TIER_CACHE;
		o->loc = h;
		o->len = (uint16_t)len;
		lru_insert(s, nid, len == RAW_LEN);
		s->st.cache_objects++;
		s->st.cache_bytes += len;
		s->st.cache_raw_objects += len == RAW_LEN;
	}
	index_link(s, nid);
	s->st.objects++;
	s->st.references++;
	maybe_grow_index(s);
}

/* store_put() and store_put_encoded(): enc, when not NULL, is page
 * already compressed by c into enc_len bytes (CODEC_PAGE: raw). */
static int put(struct store *s, struct codec_ctx *ctx, enum codec c, const void *page, const void *enc,
	       uint32_t enc_len, obj_id *id, struct store_put_info *info)
{
	uint64_t word = 0, lo, hi;
	bool samefilled = page_is_samefilled(page, &word);
	page_hash(s, page, samefilled, word, &lo, &hi);
	*info = (struct store_put_info){ .samefilled = samefilled };

	pthread_mutex_lock(&s->lock);
	*id = find_shared(s, ctx, page, samefilled, word, lo, hi);
	if (*id) {
		info->shared = true;
		info->len = obj_at(s, *id)->len;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	pthread_mutex_unlock(&s->lock);

	/* compress outside the lock (unless it came so); a page that barely
	 * compresses is kept raw */
	const void *data = page;
	uint32_t len = 0;
	if (!samefilled && enc) {
		bool worth = enc_len <= s->cfg.incompressible_bytes;
		len = worth ? enc_len : RAW_LEN;
		data = worth ? enc : page;
	} else if (!samefilled) {
		len = codec_compress(ctx, c, page, s->cfg.incompressible_bytes + 1, &data);
		if (!len) {
			len = RAW_LEN;
			data = page;
		}
	}

	pthread_mutex_lock(&s->lock);
	zpool_handle h;
	obj_id nid;
	int ret = reserve_obj(s, samefilled, len, &h, &nid);
	if (!ret)
		insert_obj(s, nid, h, c, samefilled, word, data, len, lo, hi);
	pthread_mutex_unlock(&s->lock);
	if (ret)
		return ret;
	*id = nid;
	info->len = len;
	return 0;
}

int store_put(struct store *s, struct codec_ctx *ctx, enum codec c, const void *page, obj_id *id,
	      struct store_put_info *info)
{
	return put(s, ctx, c, page, NULL, 0, id, info);
}

int store_put_encoded(struct store *s, struct codec_ctx *ctx, enum codec c, const void *page, const void *enc,
		      uint32_t enc_len, obj_id *id, struct store_put_info *info)
{
	return put(s, ctx, c, page, enc, enc_len, id, info);
}

int store_fetch(struct store *s, struct codec_ctx *ctx, obj_id id, void *page, struct store_read *rd)
{
	pthread_mutex_lock(&s->lock);
	struct obj *o = obj_at(s, id);
	int ret;
	if (read_from_outside(o)) {
		read_begin_locked(s, id, rd);
		ret = 1;
	} else {
		ret = read_locked(s, ctx, o, page);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int store_fetch_memory(struct store *s, struct codec_ctx *ctx, obj_id id, void *page)
{
	pthread_mutex_lock(&s->lock);
	const struct obj *o = obj_at(s, id);
	int ret = read_from_outside(o) ? 1 : read_locked(s, ctx, o, page);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int store_read_submit_remote(struct store *s, const struct store_read *rd, void *buf, int ring_fd,
			     uint64_t user_data)
{
	return remote_tier_read(s->cfg.remote, &rd->digest, buf, ring_fd, user_data);
}

unsigned store_read_cancel_remote(struct store *s, int ring_fd)
{
	return s->cfg.remote ? remote_tier_cancel(s->cfg.remote, ring_fd) : 0;
}

int store_read_end(struct store *s, struct codec_ctx *ctx, const struct store_read *rd, const void *buf, int res,
		   void *page)
{
	bool corrupt;
	int ret = read_decode(s, ctx, rd, buf, res, page, &corrupt);
	pthread_mutex_lock(&s->lock);
	read_end_locked(s, rd, ret, res, corrupt);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int store_read_now(struct store *s, struct codec_ctx *ctx, const struct store_read *rd, void *page)
{
	return store_read_end(s, ctx, rd, sync_buf, read_sync(s, rd, sync_buf), page);
}

int store_get(struct store *s, struct codec_ctx *ctx, obj_id id, void *page)
{
	struct store_read rd;
	int ret = store_fetch(s, ctx, id, page, &rd);
	return ret == 1 ? store_read_now(s, ctx, &rd, page) : ret;
}

/* An object in memory as it is, under the lock. */
static void stored_locked(struct store *s, const struct obj *o, void *buf, struct store_stored *out)
{
	out->samefilled = o->tier == TIER_SAMEFILL;
	out->word = out->samefilled ? o->loc : 0;
	out->len = out->samefilled ? 0 : o->len;
	out->codec = (enum codec)o->codec;
	if (!out->samefilled)
		memcpy(buf, zpool_map(s->pool, o->loc), o->len);
}

int store_read_stored(struct store *s, struct codec_ctx *ctx, obj_id id, void *buf, struct store_stored *out)
{
	pthread_mutex_lock(&s->lock);
	struct obj *o = obj_at(s, id);
	if (o->tier == TIER_FREE || o->orphan) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	if (!read_from_outside(o)) {
		stored_locked(s, o, buf, out);
		o->pins++;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	struct store_read rd;
	read_begin_locked(s, id, &rd);  /* the pin the caller keeps */
	pthread_mutex_unlock(&s->lock);
	/* checked like a fault's read: swap is not trusted */
	static __thread uint8_t scratch[CODEC_PAGE];
	bool corrupt;
	int res = read_sync(s, &rd, sync_buf);
	int ret = read_decode(s, ctx, &rd, sync_buf, res, scratch, &corrupt);
	if (!ret) {
		*out = (struct store_stored){ .len = rd.len, .codec = (enum codec)rd.codec };
		memcpy(buf, sync_buf, rd.len);
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	read_end_locked(s, &rd, ret, res, corrupt);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void store_unpin(struct store *s, obj_id id)
{
	pthread_mutex_lock(&s->lock);
	unpin_locked(s, id);
	pthread_mutex_unlock(&s->lock);
}

void store_wait_room(struct store *s, int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)timeout_ms * 1000000;
	until.tv_sec += until.tv_nsec / 1000000000;
	until.tv_nsec %= 1000000000;
	pthread_mutex_lock(&s->lock);
	pthread_cond_timedwait(&s->room, &s->lock, &until);
	pthread_mutex_unlock(&s->lock);
}

void store_drop(struct store *s, obj_id id)
{
	pthread_mutex_lock(&s->lock);
	struct obj *o = obj_at(s, id);
	uint32_t before = o->refs--;
	ref_changed(s, o, before);
	if (o->refs == 0) {
		index_remove(s, id);  /* no new sharing, whatever happens next */
		if (o->pins || o->writing)
			o->orphan = 1;  /* the read or the writeback frees it */
		else
			free_obj(s, id);
	}
	pthread_mutex_unlock(&s->lock);
}

void store_peek(const struct store *s, obj_id id, struct store_peek *p)
{
	const struct obj *o = obj_at(s, id);
	p->tier = (enum store_tier)__atomic_load_n(&o->tier, __ATOMIC_RELAXED);
	p->refs = __atomic_load_n(&o->refs, __ATOMIC_RELAXED);
	p->len = __atomic_load_n(&o->len, __ATOMIC_RELAXED);
}

void store_get_stats(struct store *s, struct store_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	struct zpool_stats ps;
	zpool_get_stats(s->pool, &ps);
	st->cache_pool_bytes = ps.pool_bytes;
	st->cache_slot_bytes = ps.slot_bytes;
	/* the cache cannot take another page and nothing can leave it */
	st->store_full = (s->cfg.cache_budget && ps.slot_bytes + CODEC_PAGE > s->cfg.cache_budget &&
			  (!s->cfg.swap || s->st.swap_full || s->st.swap_failing) &&
			  (!s->cfg.remote || s->st.remote_failing)) ||
			 s->out_of_room;
	if (s->cfg.remote) {
		struct remote_tier_stats rs;
		remote_tier_get_stats(s->cfg.remote, &rs);
		st->remote_uploads = rs.uploads;
		st->remote_upload_bytes = rs.upload_bytes;
		st->remote_shared = rs.shared;
		st->remote_upload_errors = rs.upload_errors;
		st->remote_read_errors = rs.read_errors;
		st->remote_unreachable = rs.unreachable;
	}
	if (s->cfg.swap) {
		struct swapfile_stats ss;
		swapfile_get_stats(s->cfg.swap, &ss);
		st->swap_used_bytes = ss.used_bytes;
	}
	pthread_mutex_unlock(&s->lock);
}

/* Rebuilds what is not in the objects file for one live object: its place
 * in the index and the LRU, its storage's books, the statistics. */
static int restore_live(struct store *s, obj_id id, zpool_handle *handles, size_t *nh)
{
	struct obj *o = obj_at(s, id);
	index_link(s, id);
	s->st.objects++;
	ref_changed(s, o, 0);
	switch (o->tier) {
	case TIER_SAMEFILL:
		s->st.samefilled_objects++;
		return 0;
	case TIER_CACHE:
		handles[(*nh)++] = o->loc;
		lru_insert(s, id, o->len == RAW_LEN);
		s->st.cache_objects++;
		s->st.cache_bytes += o->len;
		s->st.cache_raw_objects += o->len == RAW_LEN;
		return 0;
	case TIER_SWAP:
		s->st.swap_objects++;
		s->st.swap_bytes += o->len;
		return s->cfg.swap ? swapfile_claim(s->cfg.swap, o->swap) : -EINVAL;
	case TIER_REMOTE:
		if (!s->cfg.remote || !s->digests[id >> CHUNK_BITS])
			return -EINVAL;  /* restarted without the cluster that holds it */
		s->st.remote_objects++;
		s->st.remote_bytes += o->len;
		remote_tier_hold(s->cfg.remote, digest_of(s, id));  /* the cluster has this node's reference */
		return 0;
	default:
		return -EINVAL;
	}
}

int store_restore(struct store *s, const obj_id *refs, size_t n)
{
	const size_t bytes = CHUNK_OBJS * sizeof(struct obj);
	struct stat st;
	if (!s->cfg.persistent || fstat(s->cfg.objects_fd, &st) || (uint64_t)st.st_size / bytes > MAX_CHUNKS)
		return -EINVAL;
	uint32_t chunks = (uint32_t)(st.st_size / bytes);
	pthread_mutex_lock(&s->lock);
	int ret = 0;
	for (uint32_t c = 0; c < chunks && !ret; c++)
		if (!s->chunks[c] && !(s->chunks[c] = chunk_new(s, c)))
			ret = -ENOMEM;
	/* the ids handed out: up to the last record in use */
	obj_id top = 0;
	for (uint64_t id = (uint64_t)chunks * CHUNK_OBJS; !ret && id-- > 1;)
		if (obj_at(s, (obj_id)id)->tier != TIER_FREE) {
			top = (obj_id)id;
			break;
		}
	for (obj_id id = 1; id <= top && !ret; id++) {
		struct obj *o = obj_at(s, id);
		if (o->tier > TIER_REMOTE)
			ret = -EINVAL;
		o->refs = o->next = o->lru_prev = o->lru_next = 0;
		o->pins = 0;
		o->writing = o->orphan = 0;
	}
	for (size_t i = 0; i < n && !ret; i++) {
		if (!refs[i] || refs[i] > top || obj_at(s, refs[i])->tier == TIER_FREE)
			ret = -EINVAL;  /* a page names an object that is not there */
		else
			obj_at(s, refs[i])->refs++;
	}
	zpool_handle *handles = ret ? NULL : malloc(((size_t)top + 1) * sizeof *handles);
	if (!ret && !handles)
		ret = -ENOMEM;
	size_t nh = 0;
	s->next_fresh = top + 1;
	s->free_ids = 0;
	/* downwards, so that the free list hands the low ids out first */
	for (obj_id id = top; id >= 1 && !ret; id--) {
		struct obj *o = obj_at(s, id);
		if (o->tier != TIER_FREE && !o->refs)
			memset(o, 0, sizeof *o);  /* no page names it: its storage is simply not taken back */
		if (o->tier == TIER_FREE) {
			o->next = s->free_ids;
			s->free_ids = id;
		}
	}
	for (obj_id id = 1; id <= top && !ret; id++)
		if (obj_at(s, id)->tier != TIER_FREE)
			ret = restore_live(s, id, handles, &nh);
	if (!ret)
		ret = zpool_restore(s->pool, handles, nh);
	for (uint32_t before = 0; !ret && before != s->nbuckets;) {
		before = s->nbuckets;
		maybe_grow_index(s);  /* doubles once per call, while it holds too many */
	}
	free(handles);
	pthread_mutex_unlock(&s->lock);
	return ret;
}
