/* image_pages: a VM resumed from a memory image (docs/snapshot.md).
 *
 * At Hello memsrv opens the image (its header and checksums, not its
 * table: image.h) and answers: the guest runs at once whatever its size.
 * The VM's page table learns which pages are the image's (PAGE_IMAGE: the
 * ones not zero) a mark unit at a time (16 MiB of RAM; more for a VM over
 * 256 GiB) on the first look into the unit: a fault, a discard, a
 * snapshot, a restore (image_pages_prepare()), or the background, which
 * marks every unit soon after the start (unless --resume-background off).
 * A page of a unit not marked yet reads PAGE_NEVER and must not be taken
 * for one: every path that reads or changes a resumed VM's entries
 * prepares them first.  With --state-dir
 * the bitmap of marked units is in the VM's state file, each bit set after
 * its unit's entries: a memsrv killed mid-way marks the rest after its
 * restart, and a page discarded in a marked unit stays discarded.
 *
 * A fault on a PAGE_IMAGE page reads its object from the image (an
 * io_uring read, swap_reads.c; synchronously on the slow paths), checks it
 * and places it.  Meanwhile the VM thread works in the background, a batch
 * at a time between faults: it installs the pages the VM touched first
 * after its last resume, in that order (the image's first-touch list:
 * REAP, ASPLOS'21), while the VM has room under its limit; marks the
 * units left; then moves the rest, in address order, into the store, while
 * the store has spare room: in memory for their faults, and one copy for
 * every clone of the image (the store shares identical pages).  A resumed
 * VM records the pages it faults on first, for the next snapshot to write
 * down.
 *
 * An image written with memsrv-ctl snapshot --remote names its objects in
 * the Redis Cluster instead of holding them: a VM resumed from it on any
 * node of that cluster reads each page from there when it faults (the
 * remote tier's asynchronous read, as for a stored page), and the
 * background only marks.
 *
 * The image stays open, with a shared flock on it, for as long as pages
 * may come from it (memsrv-image rm refuses meanwhile); once every page
 * was read it is closed.  Clones (VMs resumed from one image) read the
 * same file, through the page cache.
 */
#ifndef MEMSRV_IMAGE_PAGES_H
#define MEMSRV_IMAGE_PAGES_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "id_map.h"
#include "image.h"
#include "vm.h"
#include "vm_state.h"

#define IMAGE_DIR_MAX VM_STATE_IMAGE_DIR_MAX
/* A page to come from an image memsrv does not hold open (a restart could
 * not open it again): final, and unlike any errno a uffd ioctl returns. */
#define IMAGE_ERR_NOT_OPEN (-ENOMEDIUM)  /* an image's directory, as the state file keeps it */
#define IMAGE_BATCH_PAGES 64           /* pages installed between two looks at the uffd */
#define IMAGE_RECORD_NS (10ull * 1000 * 1000 * 1000)  /* first touches recorded for this long... */
#define IMAGE_RECORD_MAX (256u * 1024) /* ...and at most this many pages */

/* What the background does next, in this order. */
enum image_fill {
	IMAGE_FILL_FIRST_TOUCH,  /* installs the image's first-touch list */
	IMAGE_FILL_MARK,         /* marks the units no fault marked yet */
	IMAGE_FILL_STASH,        /* moves the rest into the store */
	IMAGE_FILL_DONE,
};

/* A VM's image and what its thread does with it. */
struct vm_image {
	struct image *img;       /* NULL once no page comes from it (image_pages_tick) */
	char dir[IMAGE_DIR_MAX];
	/* the VM thread's */
	uint64_t *marks;         /* a bit per unit its table shows: in the state file, or marks_own */
	uint64_t *marks_own;
	unsigned unit_shift;     /* a unit is 1 << unit_shift pages, from VM-wide page 0 */
	uint64_t units, units_marked, mark_next;
	bool all_marked;
	_Atomic uint64_t unmarked_held;  /* pages not zero in units not marked: read by the server thread */
	_Atomic uint64_t marking;        /* odd while a unit is marked: its pages are in both counts */
	enum image_fill fill;
	bool restarted;          /* opened again after a restart: the background only marks */
	bool named;              /* its objects are in the Redis Cluster: the background only marks, each page
				  * comes by its fault without blocking the VM thread on the network */
	uint64_t ft_count;       /* the image's first-touch list: touched[0, ft_count) */
	uint64_t ft_next;        /* the next entry of it to install */
	struct id_map ft_pos;    /* page + 1 -> its place in the list, built by the background */
	bool ft_pos_built;
	bool ft_jumped, ft_again;  /* ft_next followed a fault past entries; they get a second pass */
	uint64_t fill_next;      /* the next VM-wide page the background fill looks at */
	uint64_t installed;      /* pages the background made resident (the first-touch list) */
	uint64_t stashed;        /* pages it moved into the store (the rest) */
	uint64_t record_until_ns;
	uint64_t *touched, n_touched, touched_cap;  /* first faults since this resume, in order */
	uint64_t *touched_bits;  /* a bit per page: in touched */
};

/* At Hello, after the regions were added (server thread): opens dir's
 * image, checks that it describes the VM's layout and that the regions
 * hold nothing yet.  Returns the number of pages to come from it, or
 * -errno with why. */
int64_t image_pages_attach(struct vm *vm, const char *dir, char *why, size_t len);

/* A VM memsrv kept across a restart (--state-dir) whose table still names
 * pages of the image in dir: opens it again, checked against the layout,
 * to serve them (the background marks the units not marked yet, and
 * installs nothing).  Returns the pages still to come from it, or -errno
 * with why. */
int64_t image_pages_reopen(struct vm *vm, const char *dir, char *why, size_t len);

/* The image of a VM kept across a restart cannot be opened again: the
 * pages of units not marked yet are the image's, all of them (which ones
 * it held is in its table): PAGE_IMAGE with no image, poisoned when they
 * fault, never zeros.  Returns how many. */
uint64_t image_pages_lost(struct vm *vm);

/* Marks the units of pages [first, first + n) (VM-wide) not marked yet:
 * their pages the image holds become PAGE_IMAGE where still PAGE_NEVER.
 * VM thread (or before it runs). */
void image_pages_mark(struct vm *vm, uint64_t first, uint64_t n);

/* What a path that reads or changes entries of pages [first, first + n)
 * calls first: those entries then say what the image holds. */
static inline void image_pages_prepare(struct vm *vm, uint64_t first, uint64_t n)
{
	if (vm->image && !vm->image->all_marked)
		image_pages_mark(vm, first, n);
}

/* The pages still to come from the image: PAGE_IMAGE ones, and those of
 * units not marked yet.  Any thread. */
uint64_t image_pages_remaining(const struct vm *vm);

/* Closes the image (vm_destroy). */
void image_pages_release(struct vm *vm);

/* The fault path's way in for a PAGE_IMAGE page, like a stored page's:
 * a same-filled page is placed at once; an object's read goes to the VM's
 * ring and *deferred is set (NULL deferred: read synchronously).  On an
 * error *read_failed says whether the content could not be had. */
int image_pages_fill(struct vm *vm, struct region *r, uint64_t idx, uint64_t t_read, bool *deferred,
		     bool *read_failed);

/* Page page's (VM-wide) content from the image into buf, synchronously,
 * checked.  0 or -errno (IMAGE_ERR_NOT_OPEN). */
int image_pages_read(struct vm *vm, uint64_t page, void *buf);

/* For a copy of a page still in the image as the image holds it (a
 * snapshot, a migration): its entry, IMAGE_PAGE_* with *value (a word, or
 * an object's index), or -errno with why in words (the image not open
 * again after a restart: -EIO). */
int image_pages_entry(struct vm *vm, uint64_t page, uint64_t *value, char *why, size_t len);
/* ...and that object's bytes as written into buf (IMAGE_RAW_LEN bytes),
 * *len of them, codec *c (*len IMAGE_RAW_LEN: raw); an object that is a
 * name is read from the cluster, synchronously, and handed over raw.
 * 0 or -errno with why. */
int image_pages_object(struct vm *vm, uint64_t page, uint64_t index, void *buf, uint32_t *len, enum codec *c,
		       char *why, size_t whylen);

/* Decodes what a read of object index brought (res: bytes read or -errno)
 * into page (named: the remote tier's read, the page itself).  0, or why
 * not (-EBADMSG, -EILSEQ, -ENODATA: short, -errno). */
int image_pages_decode(struct vm *vm, uint64_t index, bool named, const void *buf, int res, void *page);

/* Whether object index of the VM's image is a name of an object in the
 * Redis Cluster (memsrv-ctl snapshot --remote): 1 with its digest, 0, or
 * -errno. */
int image_pages_object_name(struct vm *vm, uint64_t index, struct remote_digest *d);
/* Whether page (VM-wide) is one of such objects: 1 with its index and
 * digest (for a read ahead of the faults), 0, or -errno. */
int image_pages_named(struct vm *vm, uint64_t page, uint64_t *index, struct remote_digest *d);

/* A demand fault on page (VM-wide) that came from the image or the store:
 * recorded as a first touch while the recording lasts; if it is in the
 * image's first-touch list past the install's place, the install goes on
 * from there (the guest is ahead: what it touches next is after it). */
void image_pages_faulted(struct vm *vm, uint64_t page);

/* Once a second (VM thread): an image no page comes from any more is
 * closed, and its lock released. */
void image_pages_tick(struct vm *vm);

/* --resume-background (settings.h): off, no background at all, and a page
 * comes from the image only when the guest first touches it. */
extern bool image_background_enabled;

/* Whether the background has work left (the VM thread then polls without
 * sleeping). */
bool image_pages_busy(const struct vm *vm);

/* Installs one batch in the background.  VM thread. */
void image_pages_background(struct vm *vm);

/* The pages recorded as touched first since this resume (for a snapshot). */
const uint64_t *image_pages_touched(const struct vm *vm, uint64_t *n);

#endif
