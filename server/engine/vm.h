/* vm: one attached VM — its regions, page tables, store, quota, counters and
 * the thread that serves its faults and evicts its pages.
 *
 * Threads: the VM's own thread (vm_thread.c) is the only writer of its page
 * tables and of its engine state (vm->eng); the store is the node's, shared
 * by every VM, and locks inside.  The server thread creates and destroys the
 * VM, writes its quota and balloon parts and reads its counters (atomics)
 * for the control requests; work for the VM thread (evict, detach,
 * shutdown, discard, restore, snapshot: enum vm_job_kind) goes through vm_post_job(),
 * changed settings through vm_post_wakeup().
 */
#ifndef MEMSRV_VM_H
#define MEMSRV_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <linux/userfaultfd.h>

#include "clock.h"
#include "latency.h"
#include "memsrv.pb-c.h"
#include "page_state.h"
#include "policy.h"
#include "codec.h"
#include "cpu_follow.h"
#include "session_out.h"
#include "store.h"

#define VM_NAME_MAX 64
#define VM_MAX_REGIONS 63   /* the uffd and one fd each fit WIRE_MAX_FDS */
#define VM_MAX_BYTES (4ull << 40)  /* all regions of a VM: more than any host here holds */
#define VM_SHARES_MIN 1           /* a VM's weight, from a Hello or memsrv-ctl set... */
#define VM_SHARES_MAX 1000000     /* ...bounded alike: a weight over the sum of all is no weight */
#define VM_SHARES_DEFAULT 1000    /* a Hello without shares (or 0) */
#define FAULT_AROUND_BYTES (64 * 1024)   /* aligned block filled on a never-touched fault */
#define EVICT_RUN_PAGES 64               /* pages write-protected, read and punched at once */
#define PENDING_MSGS 256                 /* uffd messages read but not yet handled */

/* Counters of one VM, defined once: each expands into a struct member and
 * into the memsrv.VmInfo field of the same name (vm_fill_info). */
#define VM_COUNTERS(X)          \
	X(faults_total)         \
	X(faults_never_touched) \
	X(faults_zero)          \
	X(faults_stored)        \
	X(faults_swap)          \
	X(faults_remote)        \
	X(faults_wp)            \
	X(faults_resident)      \
	X(evictions_total)      \
	X(evictions_clean)      \
	X(clean_writes)         \
	X(removed_pages)        \
	X(eagain_retries)       \
	X(eexist_wakes)         \
	X(prefetched_pages)       \
	X(fault_errors)         \
	X(pages_poisoned)       \
	X(faults_image)         \
	X(accessed_unmaps)      \
	X(accessed_found)

/* A VM's conditions (VmInfo.conditions, and the node's): it holds pages
 * whose content is lost (poison.h); another process maps its RAM, so
 * nothing is evicted (mappings.h). */
#define VM_COND_PAGES_POISONED "pages-poisoned"
#define VM_COND_UNPROTECTED_MAPPING "unprotected-mapping"

struct vm_counters {
#define X(name) _Atomic uint64_t name;
	VM_COUNTERS(X)
#undef X
};

struct region {
	uint64_t host_addr, size, guest_phys_addr, fd_offset;
	uint32_t page_size;
	int fd;                  /* -1: anonymous private memory */
	dev_t dev;               /* the fd's file, to know it again (mappings.c, hello.c) */
	ino_t ino;
	Memsrv__Backing backing;
	bool evictable;
	bool unmapped;           /* the VMM unmapped it: no faults can come */
	uint64_t first_page;     /* VM-wide number of its first page, for the policy */
	struct page_table pt;
	/* huge pages: the 4 KiB parts of those stored (huge_pages.h); no
	 * entries in a region of 4 KiB pages */
	struct page_table parts;
};

/* Anonymous private RAM (anon_drops.h): read through the VMM's
 * /proc/PID/mem, dropped by its drop thread.  The server thread sets the
 * fds before the VM thread starts; the VM thread alone uses them. */
#define ANON_RUNS_IN_FLIGHT (EVICT_RUN_PAGES + 1)  /* a batch of victims, and one anon_drop() */

/* A drop request sent and its answer (anon_drops.h). */
struct anon_drop_run {
	uint64_t addr, len, seq;
	int err;  /* -EINPROGRESS until answered */
};

struct vm_anon {
	int mem_fd;      /* /proc/PID/mem, -1: not opened */
	int drop_sock;   /* memsrv's end of the drop channel, -1: none */
	/* of the last drop request sent and answered: a clock reading at
	 * start, so an earlier memsrv's answers are never taken for ours */
	uint64_t seq, acked;
	struct anon_drop_run runs[ANON_RUNS_IN_FLIGHT];  /* sent, not finished */
	unsigned n_runs;
	/* why drops stopped, for good (vm_can_evict): -EPIPE the channel
	 * broke, -ESHUTDOWN memsrv stops and a drop went unanswered; 0 not */
	_Atomic int stopped;
};

enum { VM_BALLOON_UNKNOWN, VM_BALLOON_YES, VM_BALLOON_NO };

/* Where a live migration of the VM is (VmInfo.migration). */
enum vm_migration {
	VM_MIGRATION_NONE,
	VM_MIGRATION_SENDING,   /* out, accepted: rounds while the guest runs */
	VM_MIGRATION_STOPPED,   /* out: the VMM detached, the last pages go */
	VM_MIGRATION_WAITING,   /* in: no source yet */
	VM_MIGRATION_ARRIVING,  /* in: a source streams */
};

/* How long a balloon request gets to work before the node target is
 * enforced by eviction: the guest picks its own pages first (no double paging). */
#define BALLOON_GRACE_NS (2ull * 1000 * 1000 * 1000)
/* How long a guest that stopped short of a balloon target is asked no
 * lower: what it can give changes as it frees memory, so it is asked
 * again after that. */
#define BALLOON_STOPPED_NS (10ull * 1000 * 1000 * 1000)
/* The balancer changes a balloon's target at most this often: the guest
 * needs time to act on one before the next. */
#define BALLOON_PACE_NS (1ull * 1000 * 1000 * 1000)

enum vm_job_kind {
	VM_JOB_EVICT,
	VM_JOB_DETACH,    /* the VMM leaves: restore if asked, answer DetachReply */
	VM_JOB_SHUTDOWN,  /* memsrv leaves: restore everything, say Goodbye, stop */
	VM_JOB_DISCARD,   /* the VMM's Discard of [addr, addr + len) */
	VM_JOB_RESTORE,   /* put every page back (another process maps the RAM), stay attached */
	VM_JOB_SNAPSHOT,  /* an image of its memory into dir (snapshot.h), answer SnapshotReply */
	VM_JOB_MIGRATE_OUT, /* move its memory over peer_fd (migrate_out.h), answer MigrateReply */
	VM_JOB_MIGRATE_IN,  /* its memory comes over peer_fd, opened by begin (migrate_in.h) */
};

struct vm_job {
	enum vm_job_kind kind;
	uint64_t bytes;          /* EVICT: at least this much, unless all */
	bool all;
	bool restore;            /* DETACH */
	bool migrated;           /* DETACH: the VM moved to another node (migrate_out.h) */
	uint64_t addr, len;      /* DISCARD */
	char *dir;               /* SNAPSHOT: absolute, the job owns it */
	bool remote;             /* SNAPSHOT: its objects go to the cluster (snapshot.h) */
	int peer_fd;             /* MIGRATE_*: the authenticated peer connection, the job owns it (-1: none) */
	int urgent_fd;           /* MIGRATE_OUT: its second one, for pulled pages (-1: none) */
	char *address;           /* MIGRATE_*: the peer, for the log and the reply; the job owns it */
	Memsrv__PeerMessage *begin; /* MIGRATE_IN: the MigrateBegin that opened it; the job owns it */
	int reply_fd;            /* where the reply goes; the job owns it */
	struct vm_job *next;
};

struct vm_state_header;
struct snapshot;
struct migrate_out;
struct migrate_in;
struct vm_image;

/* The node's share for the VM and what it is judged by.  The server thread
 * (Hello, memsrv-ctl set, the balancer) writes the bounds; the VM thread
 * reads them before each fill and writes its activity. */
struct vm_quota {
	uint64_t guarantee_bytes;
	_Atomic uint64_t limit_bytes;        /* memsrv-ctl set may change it */
	uint32_t shares;
	_Atomic uint64_t node_target_bytes;  /* the balancer's share of the node for it; 0: none */
	_Atomic uint64_t last_fault_ns;      /* when it last faulted: active or idle */
	_Atomic bool active;
	_Atomic uint64_t working_set_bytes;  /* sampler.c's estimate; 0 until it has one */
	_Atomic uint32_t working_set_permille; /* the share of resident memory in use */
};

/* What memsrv asked of the VMM's balloon and learned of it (balancer.c,
 * server thread; vm_limit() reads the grace from the VM thread). */
struct vm_balloon {
	_Atomic int answer;                  /* VM_BALLOON_*: what the VMM answered */
	_Atomic uint64_t asked_ns;           /* when memsrv last asked it to balloon */
	_Atomic uint64_t sent_bytes;         /* the target it asked for */
	/* Until when the balloon may work before the node target is enforced
	 * by eviction (0: no request pending).  Set by the first request of a
	 * shortage, not renewed by the next ones: a guest that gives nothing
	 * is held to its target all the same. */
	_Atomic uint64_t grace_until_ns;
	_Atomic uint64_t hold_bytes;         /* during the grace: what it held when the shortage began */
	_Atomic uint64_t target_bytes;       /* last BalloonTarget sent, 0: never */
	_Atomic uint64_t actual_bytes;       /* what the balloon left the guest (BalloonActual), 0: never told */
	_Atomic uint64_t actual_ns;          /* when actual_bytes last changed */
	_Atomic uint64_t answered_bytes;     /* the target of the VMM's last BalloonResult */
	/* Where the guest stopped short of a target: it cannot give more, so
	 * memsrv asks no lower for BALLOON_STOPPED_NS, until the node
	 * target reaches it, or until its working set falls (balloon_plan).
	 * 0: it did not. */
	_Atomic uint64_t stopped_bytes;
	_Atomic uint64_t stopped_ns;         /* when it stopped */
	_Atomic uint64_t stopped_working_set; /* the sampler's estimate then */
};

/* --state-dir (vm_state.c): the file its page tables and probation pages
 * live in, so that a memsrv killed at any instant leaves what a new one
 * needs to serve them.  Set up by the server thread at Hello, written by
 * the VM thread after. */
struct vm_persist {
	int dir_fd;              /* the server's; -1: nothing is kept */
	int fd;
	struct vm_state_header *header;
	void *probation;         /* SAMPLE_PAGES pages */
	bool keep;               /* vm_destroy() leaves the file and its store references */
	struct vm *resume_from;  /* while a Hello resumes: the VM found in the state dir */
	bool resumed;
	uint64_t start_time;     /* the VMM process's, to know it again (vm_state.c) */
};

/* The VM thread's own state: nothing outside server/engine touches it
 * (tests/check_layers.sh checks). */
struct vm_engine {
	struct codec_ctx *codec_ctx;
	struct policy policy;    /* which resident pages leave first */
	uint64_t fault_page;     /* the page (VM-wide number) of the fault being served... */
	bool fault_write;        /* ...and whether it was a write: the policy's modify bit */
	uint64_t stream_next;    /* the page a sequential stream of faults would hit next (prefetch.c) */
	uint64_t stream_window;  /* pages placed ahead of it at its next fault */
	uint64_t spin_ns;        /* how long the thread polls after a fault now (vm_thread.c) */
	uint64_t largest_page_parts; /* its largest page in 4 KiB pages: eviction's unit of victims */
	bool vmm_gone;           /* its address space is gone: stop issuing ioctls */
	bool detaching;          /* no more eviction */
	bool limit_warned;
	struct uffd_msg pending[PENDING_MSGS];   /* ring of messages read, not yet handled */
	uint64_t pending_ns[PENDING_MSGS];        /* when each was read, for fault latency */
	unsigned pending_head, pending_len;
	bool events_unapplied;                    /* a REMOVE/UNMAP in the ring awaits fault_apply_events */
	void *io_buf;            /* EVICT_RUN_PAGES pages for pread */
	struct swap_reads *reads; /* faults waiting on swap (swap_reads.c) */
	struct sampler *sampler;  /* pages in probation (sampler.c) */
	struct accessed *accessed; /* reference bits from the VMM's page tables (accessed.h); NULL: none */
	struct cpu_follow cpu_follow; /* the CPUs of the VM's vCPUs, where its thread runs (cpu_follow.h) */
	void *page_buf;          /* one (huge) page for decompression and reads */
	const void *zero_buf;    /* one (huge) page of zeros, read-only: what zero copies place */
	size_t page_buf_size;    /* of each */
	void *huge_buf;          /* a huge page being evicted (huge_pages.c), made at its first eviction */
	size_t huge_buf_size;
	struct snapshot *snapshot; /* a snapshot being written: faults save pages first (snapshot.h) */
	struct migrate_out *migrate_out; /* moving to another node: writes mark pages to send again */
	struct migrate_in *migrate_in;   /* coming from another node: faults wait for their pages */
};

/* The VM thread and how other threads reach it (vm.c, vm_thread.c): jobs
 * through vm_post_job(), settings changes through vm_post_wakeup(). */
struct vm_thread_ctl {
	pthread_t thread;
	bool started;
	int wake_fd;             /* eventfd: jobs posted or stop requested */
	_Atomic bool stopping;
	pthread_mutex_t job_lock;
	struct vm_job *jobs, **jobs_tail;
};

struct vm {
	/* what the Hello said, fixed from then on (server thread writes
	 * before the VM thread starts) */
	char name[VM_NAME_MAX];
	uint64_t id;
	pid_t pid;
	int uffd;
	int session_fd;          /* owned by the server; written through out only */
	/* the server thread is taking a record off session_fd and acting on
	 * it: set before the read, cleared once its job is posted (what a
	 * REMOVE event waits for: discards_apply_sent()) */
	_Atomic bool session_reading;
	struct session_out out;  /* what waits to go out on it (session_out.h) */
	struct region regions[VM_MAX_REGIONS];
	unsigned n_regions;
	uint64_t size_bytes;
	uint64_t uffd_features, register_modes;
	bool evictable;
	char not_evictable_reason[160];
	struct vm_image *image;  /* resumed from a memory image (image_pages.h); NULL: not */
	bool incoming;           /* Hello.incoming: its memory comes by migration (migrate_in.h) */
	_Atomic int migration;   /* enum vm_migration: the VM thread sets, VmInfo shows */
	_Atomic uint32_t migration_round;        /* outgoing: as VmInfo says */
	_Atomic uint64_t migration_pages_left;
	/* another process maps the VM's RAM outside its uffd (mappings.c):
	 * its pid, 0 for none; nothing is evicted while it does */
	_Atomic pid_t unprotected_by;
	_Atomic int accessed_state;    /* ACCESSED_* (accessed.h): reference bits from its page tables */
	char unprotected_reason[160];  /* server thread */
	char *conditions[2];           /* vm_fill_info()'s, server thread */

	struct vm_quota quota;
	struct vm_balloon balloon;
	struct vm_persist persist;
	struct vm_anon anon;

	/* the VM thread writes, any thread reads */
	_Atomic uint64_t resident_bytes;
	struct vm_counters ctr;
	struct latency_hist lat_all, lat_never, lat_stored, lat_cache, lat_swap, lat_remote;

	struct store *store;     /* the node's, shared with every VM */
	_Atomic int codec;       /* enum codec of new pages: the VM thread reads, control sets */
	_Atomic(const struct policy_ops *) policy_wanted;  /* control sets; the VM thread switches */

	struct vm_engine eng;
	struct vm_thread_ctl thr;

	struct vm *next;         /* server's list */
};

static inline void ctr_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t ctr_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Allocates an empty VM (no regions, no thread) storing into store; NULL on ENOMEM. */
struct vm *vm_new(struct store *store);
/* Adds a region after validation (hello.c); takes fd.  Its page table is
 * new, in the VM's state file if it has one, or the one an earlier memsrv
 * kept (vm->persist.resume_from).  0, or -errno with why filled. */
int vm_add_region(struct vm *vm, const struct region *r, char *why, size_t whylen);
/* Starts the VM thread.  0 or -errno. */
int vm_start(struct vm *vm);
/* Stops the thread (if any), answers pending jobs, releases everything. */
void vm_destroy(struct vm *vm);
/* Restores every evicted page, tells the VMM it may run unmanaged, and
 * stops the VM thread; follow with vm_destroy(). */
void vm_shutdown(struct vm *vm);
/* A job of that kind owning nothing yet (no fds: -1); NULL on ENOMEM. */
struct vm_job *vm_job_new(enum vm_job_kind kind);
/* Frees a job and what it owns but its reply_fd. */
void vm_job_free(struct vm_job *job);
/* Hands a job to the VM thread; it owns the job from then on. */
void vm_post_job(struct vm *vm, struct vm_job *job);
/* The same for a list of jobs (linked by next), with one wake-up. */
void vm_post_jobs(struct vm *vm, struct vm_job *first);
/* VM thread: takes the posted jobs of that kind out of the queue, in the
 * order posted, leaving the others queued as they were. */
struct vm_job *vm_take_jobs_of_kind(struct vm *vm, enum vm_job_kind kind);
/* Whether a job of that kind waits (VM thread: to cut a wait short). */
bool vm_job_waits(struct vm *vm, enum vm_job_kind kind);
/* Wakes the VM thread to look at changed settings. */
void vm_post_wakeup(struct vm *vm);

/* Tells the policy about a page of r that became resident (used: the guest
 * used it, a fault on it, not a neighbour that came along; write: it wrote)
 * / left. */
void vm_policy_resident(struct vm *vm, const struct region *r, uint64_t idx, bool used, bool write);
void vm_policy_gone(struct vm *vm, const struct region *r, uint64_t idx);
/* A resident page of r known not to be in use: first in line to leave. */
void vm_policy_idle(struct vm *vm, const struct region *r, uint64_t idx);
/* Switches to the policy control asked for, if it changed (VM thread). */
void vm_policy_update(struct vm *vm);

/* Whether every write of the guest to its RAM can be caught (each region
 * write-protected, read from its fd, its VMM there, no other process
 * mapping it): 0, or -errno with why, ending "so or_else: ...". */
int vm_writes_trackable(struct vm *vm, const char *or_else, char *why, size_t len);

/* Reads len bytes of r's memory from its fd (never through a mapping),
 * from page first on; past the file's end reads zeros.  Anonymous memory
 * is read through the VMM's /proc/PID/mem, which fails (EIO) on a page
 * not there rather than fault it in.  0 or -errno. */
int region_pread(const struct vm *vm, const struct region *r, uint64_t first, size_t len, void *buf);

/* Takes pages [first, first + count) of r out of the VMM: a hole punched
 * in its fd, or for anonymous memory dropped by the VMM (anon_drops.h).
 * 0 or -errno; after an error nothing was punched from an fd, but an
 * anonymous run may be dropped in part or later (its copies must stay). */
int region_drop(struct vm *vm, struct region *r, uint64_t first, uint64_t count);

/* Region holding the VM-wide page number page (policy.h), or NULL. */
struct region *vm_region_of_page(struct vm *vm, uint64_t page);

/* Region containing VMM address addr, or NULL. */
struct region *vm_region_of(struct vm *vm, uint64_t addr);

/* Total pages of the VM in the given state. */
uint64_t vm_count(const struct vm *vm, enum page_state s);

/* Fills a VmInfo from the counters (any thread).  Strings point into vm. */
#define VM_INFO_PERCENTILES 6
void vm_fill_info(struct vm *vm, Memsrv__VmInfo *info, Memsrv__Percentiles pct[VM_INFO_PERCENTILES]);

/* Adds where this VM's stored pages are (samefilled, cache, swap, shared,
 * stored bytes) and its clean pages to info, from its page tables and the
 * store's objects. */
void vm_count_stored(struct vm *vm, Memsrv__VmInfo *info);

/* What the VM may hold resident: its limit and the balancer's target,
 * whichever is lower (0: no bound). */
static inline uint64_t vm_limit(const struct vm *vm)
{
	uint64_t l = atomic_load_explicit(&vm->quota.limit_bytes, memory_order_relaxed);
	uint64_t t = atomic_load_explicit(&vm->quota.node_target_bytes, memory_order_relaxed);
	uint64_t grace = atomic_load_explicit(&vm->balloon.grace_until_ns, memory_order_relaxed);
	/* the clock is read only while a balloon request may still be working:
	 * this runs before every fill */
	if (t && grace && atomic_load_explicit(&vm->balloon.answer, memory_order_relaxed) != VM_BALLOON_NO &&
	    monotonic_ns() < grace) {
		/* the balloon goes first (a VMM without one said so), but the
		 * VM does not grow meanwhile */
		uint64_t hold = atomic_load_explicit(&vm->balloon.hold_bytes, memory_order_relaxed);
		t = hold > t ? hold : t;
	}
	return !l ? t : !t ? l : l < t ? l : t;
}

/* Whether pages may leave residence now: the VM's memory allows it, no
 * other process maps it (mappings.c), and its drops go on (anon_drops.h). */
static inline bool vm_can_evict(const struct vm *vm)
{
	return vm->evictable && !atomic_load_explicit(&vm->unprotected_by, memory_order_relaxed) &&
	       !atomic_load_explicit(&vm->anon.stopped, memory_order_relaxed);
}

/* Why vm_can_evict() is false, for a message. */
const char *vm_why_not_evictable(const struct vm *vm);

/* Sends a message on the VM's session socket, or queues it while the VMM
 * is not reading (any thread; never blocks: session_out.h).  0 or -errno. */
int vm_send(struct vm *vm, const Memsrv__ServerMessage *msg);
/* The same for an Error (errno_code positive, field may be NULL). */
int vm_send_error(struct vm *vm, int errno_code, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Pages in all of the VM's regions (evict.c). */
uint64_t vm_total_pages(const struct vm *vm);

/* Busy-poll the uffd this long after serving faults before sleeping in poll:
 * a fault that comes soon after another skips a wakeup (63 -> 17 us a fault with a
 * minimal handler: docs/architecture.md, "Kernel facts and measurements"). */
extern uint64_t fault_spin_ns;

#endif
