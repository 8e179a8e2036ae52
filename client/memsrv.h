/* libmemsrv: attach a VMM's guest RAM to a memsrv memory server.
 *
 * A VMM calls memsrv_attach() once with its RAM regions.  The library creates
 * a userfaultfd, registers every region on it, and hands the uffd, the region
 * fds and the layout to the server, which from then on serves every fault on
 * a non-resident page.  The VMM watches memsrv_session_fd() in its main loop
 * and calls memsrv_session_dispatch() when it is readable.
 *
 * If memsrv dies (a crash, kill -9), faults on the guest's RAM wait; a
 * thread of the library's own notices the hang-up and, every 50 ms, tries
 * to say Hello again, with the same uffd and regions and "resume" set.  A
 * memsrv restarted with its state takes the VM back and serves the waiting
 * faults: the VM never notices.  One that kept no state refuses, and
 * memsrv_session_dispatch() returns its errno (-ESTALE); the pages it held
 * are lost, and the thread poisons them (memsrv_session_failed()).  The thread runs
 * with every signal blocked; MEMSRV_VM_NO_RECONNECT goes without it.
 *
 * Every function returns 0 (or a count) on success and -errno on failure;
 * none of them sets errno.  memsrv_last_error() gives the reason in words.
 */
#ifndef MEMSRV_H
#define MEMSRV_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMSRV_DEFAULT_SOCKET "/run/memsrv/memsrv.sock"
#define MEMSRV_MAX_REGIONS 63  /* the uffd and one fd per region: 64 fds a message */

struct memsrv_region {
	void *host_addr;          /* page aligned, mapped MAP_SHARED from fd (or anonymous) */
	uint64_t size;            /* bytes, a multiple of page_size */
	int fd;                   /* memfd / hugetlbfs / tmpfs file; -1: anonymous private */
	uint64_t fd_offset;       /* offset in fd of host_addr's first page */
	uint64_t guest_phys_addr;
	uint32_t page_size;       /* 0: 4096 (or the hugetlbfs page size of fd) */
};

struct memsrv_vm {
	const char *name;         /* unique on the server, 1..63 chars of [A-Za-z0-9._-], first alnum */
	const struct memsrv_region *regions;
	unsigned n_regions;
	uint64_t guarantee_bytes; /* 0: no guarantee */
	uint64_t limit_bytes;     /* 0: no limit of its own */
	uint32_t shares;          /* 0: default weight */
	const char *codec;        /* "lz4" or "zstd"; NULL: the server's default */
	const char *policy;       /* eviction algorithm: lru, fifo, clock, second-chance, aging, nru, random; NULL: clock */
	unsigned flags;           /* MEMSRV_VM_* */
	/* Resume from a memory image (memsrv-ctl snapshot VM DIR): the
	 * absolute DIR.  The regions must be laid out as the image's and
	 * hold nothing yet; their pages come from the image, lazily.  NULL:
	 * the guest's RAM starts as it is. */
	const char *snapshot_dir;
};

/* The guest has no balloon: memsrv never asks for one and goes straight to
 * compression and swap.  Without it memsrv asks once and learns from the
 * answer (a VMM that creates its RAM before its devices cannot know yet). */
#define MEMSRV_VM_NO_BALLOON 1u

/* The VM's memory comes from another memsrv node by live migration
 * (memsrv-ctl migrate on the source, docs/migration.md): its RAM must hold
 * nothing yet; its faults wait until the source VM stopped and their page
 * came. */
#define MEMSRV_VM_INCOMING 4u

/* No reconnect thread: when memsrv dies, memsrv_session_dispatch() returns
 * -ECONNRESET and faults on the pages it held wait for good. */
#define MEMSRV_VM_NO_RECONNECT 2u

/* Requests the server may send; a NULL member refuses that request. */
struct memsrv_vmm_ops {
	/* Ask the guest's balloon to hold the guest at target_bytes. */
	int (*balloon_target)(void *opaque, uint64_t target_bytes);
};

struct memsrv_session;

/* Connects, registers the regions with a new userfaultfd and waits for the
 * server's answer.  On refusal returns the server's errno (e.g. -EINVAL) and
 * memsrv_last_error() names the field at fault. */
int memsrv_attach(const char *socket_path, const struct memsrv_vm *vm, struct memsrv_session **out);

/* An epoll fd, the same for the whole session, memsrv restarts included:
 * readable when the server sends a request, goes away, or the session has
 * failed for good.  Watch it for reading only; never read it. */
int memsrv_session_fd(struct memsrv_session *s);

/* Serves one pending server request; returns 0 when there is none (while
 * memsrv is down and being reconnected, for one), so it may be called on
 * any wake-up.  Returns -ECONNRESET after memsrv said Goodbye having given
 * every page back: the regions are unregistered, the VM runs on,
 * unmanaged.  Returns the errno of memsrv's refusal (e.g. -ESTALE: it
 * restarted without the VM's state), the fd woken once for it, and the
 * same error on every call from then on: the pages memsrv held are lost,
 * faults on them get SIGBUS (memsrv_session_failed()); stop the VM.  With MEMSRV_VM_NO_RECONNECT, any end of memsrv
 * is -ECONNRESET (memsrv_last_error() says whether pages were restored). */
int memsrv_session_dispatch(struct memsrv_session *s, const struct memsrv_vmm_ops *ops, void *opaque);

/* The guest gave [addr, addr + len) back (balloon, virtio-mem, free page
 * reporting): its pages are freed — punched from the region's fd, or
 * MADV_DONTNEED for anonymous memory — memsrv drops what it holds for them,
 * and they read as zeros from now on.  Whole 4 KiB pages (whole huge pages
 * on hugetlbfs) inside one region.  This is the only way to discard guest
 * RAM under memsrv: munmap or MADV_DONTNEED of shared memory leave the data
 * where it was, and memsrv keeps it.  Returns once memsrv took the discard
 * in (as long as a fault would wait): the guest may reuse the pages at
 * once.  0 or -errno. */
int memsrv_discard(struct memsrv_session *s, void *addr, uint64_t len);

/* memsrv_discard() for a batch (a balloon's pages, a free page report):
 * the pages are freed and memsrv told, but a fault on them may still get
 * their old content until memsrv_discard_fence(), which costs one round
 * trip to memsrv for the whole batch instead of one per call.  For the
 * VMM to call before the guest may touch the pages again (before it hands
 * the batch's virtqueue element back).  0 or -errno. */
int memsrv_discard_unfenced(struct memsrv_session *s, void *addr, uint64_t len);
/* Once this returns, no access gets the old content of a page discarded
 * by memsrv_discard_unfenced() before it (any thread's).  0 or -errno. */
int memsrv_discard_fence(struct memsrv_session *s);

/* What the guest's balloon leaves it now, in bytes of guest RAM (QEMU's
 * balloon `actual`: the RAM size less what the balloon holds).  Call it
 * whenever that changes: a guest that stops short of a balloon target
 * cannot give more, and memsrv then asks no lower and holds the rest with
 * its store instead of squeezing the guest.  0 or -errno. */
int memsrv_balloon_actual(struct memsrv_session *s, uint64_t actual_bytes);

#define MEMSRV_DETACH_RESTORE 1u  /* bring every evicted page back first */
/* The VM moved to another node (memsrv-ctl migrate) and the VMM stopped it
 * for good: the call returns once the other node holds every page.  If the
 * migration failed it returns -errno and s stays attached, every page
 * with it: the VM may run on here. */
#define MEMSRV_DETACH_MIGRATED 2u

/* Ends the session and frees s.  Without MEMSRV_DETACH_RESTORE the evicted
 * pages are dropped: only for a VMM that discards its RAM.  Returns the
 * number of pages restored, or -errno (s is freed in any case).  When the
 * pages could not be restored (-ENOTCONN: memsrv is down) the regions stay
 * registered and faults on them wait: do not unmap them either, the unmap
 * waits for memsrv too; stop the VM. */
int memsrv_detach(struct memsrv_session *s, unsigned flags);

/* Facts about an attached session. */
uint64_t memsrv_session_vm_id(const struct memsrv_session *s);
int memsrv_session_evictable(const struct memsrv_session *s);
/* How many times the session resumed on a restarted memsrv. */
uint64_t memsrv_session_reconnects(const struct memsrv_session *s);

/* 0 while memsrv serves the session (or may come back to), the errno of
 * its refusal (e.g. -ESTALE) once a restarted memsrv would not take the VM
 * back.  From then on the pages memsrv held are lost, and the library's
 * thread serves the uffd itself until detach: a fault on a page that is
 * not there is answered with UFFDIO_POISON (Linux 6.6+), so the faulting
 * thread gets SIGBUS with BUS_MCEERR_AR, as for a memory error, instead of
 * waiting for good or reading zeros; memsrv kept no record, so a page the
 * guest never touched is poisoned too.  The VMM should stop the VM. */
int memsrv_session_failed(struct memsrv_session *s);
/* How many lost pages were poisoned since. */
uint64_t memsrv_session_pages_poisoned(const struct memsrv_session *s);

/* A VM's settings as memsrv holds them now (memsrv-ctl set changes them). */
struct memsrv_vm_settings {
	uint64_t guarantee_bytes;
	uint64_t limit_bytes;
	uint32_t shares;
	char codec[16];
	char policy[32];
};

/* Asks memsrv for the VM's current settings over a short connection of its
 * own (at most 5 s).  -errno when memsrv cannot be reached or answer. */
int memsrv_session_settings(struct memsrv_session *s, struct memsrv_vm_settings *out);

/* The reason for the last failure of this thread, in words ("" if none). */
const char *memsrv_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
