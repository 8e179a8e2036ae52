/* vm_state: a VM's page tables and probation pages in a file under
 * --state-dir, and how a new memsrv takes them up after a crash.
 *
 * The file, vm-NAME.state (on tmpfs), is mapped shared while the VM is
 * attached, so every entry memsrv writes is in the file the moment it is
 * written, and a kill -9 loses none:
 *
 *   0                          the header: the VMM process, the regions
 *   8192                       SAMPLE_PAGES probation pages (sampler.c)
 *   8192 + 4096 * SAMPLE_PAGES each region's page table, page aligned,
 *                              and after that of a region of huge pages
 *                              its parts table (huge_pages.h)
 *
 * Writes are ordered so that the files are consistent at any instant:
 * eviction writes the content, then the store's object, then the table
 * entry, then punches the page out of the VMM; a page coming back keeps
 * naming its content until UFFDIO_COPY placed it (pe_arriving); a table
 * lets go of an object before the store frees it.
 *
 * At start, memsrv loads every file it finds as a kept VM: tables mapped,
 * no VMM, its store references held.  When that VMM's process says Hello
 * again (libmemsrv reconnects), the tables are checked against the backing
 * file (what the fd holds is resident, whatever the table says), and the
 * VM resumes.  A kept VM whose process is gone is dropped.  A VM that
 * detaches in order takes its file with it.
 */
#ifndef MEMSRV_VM_STATE_H
#define MEMSRV_VM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vm.h"

#define VM_STATE_MAGIC 0x31534d56534d454dull  /* "MEMSVMS1" */
#define VM_STATE_VERSION 1
#define VM_STATE_IMAGE_DIR_MAX 1024
#define VM_STATE_IMAGE_MARK_BITS 16384  /* mark units of an image a file keeps (image_pages.h) */

struct vm_state_region {
	uint64_t host_addr, size, fd_offset, guest_phys_addr;
	uint64_t table_offset;   /* where its page table starts in the file */
	uint64_t dev, ino;       /* the backing file: a resume must bring the same one */
	uint32_t page_size, backing;
};

/* What the VM runs with, as memsrv-ctl set left it, and what memsrv
 * learned of its balloon: a resumed VM goes on with these, not with what
 * its Hello said at attach. */
struct vm_state_settings {
	uint32_t kept;           /* 1: the fields below are set (0 in a file of an older memsrv) */
	uint32_t shares;
	uint64_t limit_bytes, guarantee_bytes;
	int32_t codec;           /* enum codec */
	int32_t balloon;         /* VM_BALLOON_* */
	char policy[32];
};

struct vm_state_header {
	uint64_t magic;
	uint32_t version, n_regions;
	char name[VM_NAME_MAX];
	int32_t pid;
	uint32_t reserved;
	uint64_t start_time;     /* the VMM process's, in clock ticks since boot (/proc/PID/stat) */
	uint64_t file_bytes;     /* the end of the last region's table */
	struct vm_state_region regions[VM_MAX_REGIONS];
	struct vm_state_settings settings;
	/* the image its PAGE_IMAGE pages come from (image_pages.h); "": none */
	char image_dir[VM_STATE_IMAGE_DIR_MAX];
	/* which of the image's mark units the tables show (image_pages.h):
	 * a bit is set after the unit's entries were written */
	uint32_t image_marks_kept;  /* 1: image_marks holds them; 0: every unit is in the tables */
	uint32_t image_mark_shift;
	uint64_t image_marks[VM_STATE_IMAGE_MARK_BITS / 64];
	/* a region of huge pages: where its parts table starts, right after
	 * its page table (huge_pages.h); 0: it has none (a file of a memsrv
	 * that did not evict huge pages) */
	uint64_t parts_offset[VM_MAX_REGIONS];
};

/* When process pid started (clock ticks since boot), or 0 if there is no
 * such process: a pid with its start time names one process for good. */
uint64_t vm_state_process_start(pid_t pid);

/* Creates vm's file in dir_fd (replacing a stale one of the same name) for
 * the process vm->pid.  0 or -errno. */
int vm_state_create(struct vm *vm, int dir_fd);

/* Puts region r (about to become vm->regions[vm->n_regions]) in the file
 * and maps its page table from there.  0 or -errno. */
int vm_state_add_region(struct vm *vm, struct region *r);

/* Borrows region r's page table from vm->persist.resume_from, after checking that
 * the region is the one the state describes, and reconciles it with what
 * r's fd holds.  Returns the pages found resident, or -errno with why
 * filled. */
int64_t vm_state_resume_region(struct vm *vm, struct region *r, char *why, size_t whylen);

/* The resume is accepted: vm owns the file and the tables; the kept VM
 * holds nothing more and is for vm_destroy(). */
void vm_state_resume_done(struct vm *vm);

/* The resume is refused: vm gives back what it borrowed (vm_destroy() then
 * leaves it alone); the kept VM waits for the next try. */
void vm_state_resume_abandon(struct vm *vm);

/* After sampler_init() of a resumed VM: its pages still in probation. */
void vm_state_adopt_probation(struct vm *vm);

/* Removes the file (the VM left in order, or it is garbage): first, so
 * that no file names the objects dropped next. */
void vm_state_remove(struct vm *vm);

/* Writes vm's settings (quota, codec, policy, balloon) into its file, if
 * it has one: after attach and after every change. */
void vm_state_save_settings(struct vm *vm);

/* Writes the directory of the image vm was resumed from into its file, if
 * it has one: a memsrv restarted reads its pages still to come from there. */
void vm_state_save_image(struct vm *vm);

/* The bitmap of the image's mark units in vm's file, NULL without a
 * file: cleared, for units of shift (start); or as the file kept it, and
 * *shift its units' (kept; NULL: the file kept none, every unit is in the
 * tables). */
uint64_t *vm_state_image_marks_start(struct vm *vm, unsigned shift);
uint64_t *vm_state_image_marks_kept(struct vm *vm, unsigned *shift);

/* No page of vm comes from its image any more: its file forgets it. */
void vm_state_forget_image(struct vm *vm);

/* While vm resumes from a kept VM: the image directory its file names, or
 * NULL for none. */
const char *vm_state_image_dir(const struct vm *vm);

/* A resuming vm takes the settings its kept VM was left with, if that
 * file recorded any. */
void vm_state_resume_settings(struct vm *vm);

/* Unmaps and closes the file. */
void vm_state_close(struct vm *vm);

/* Loads dir_fd/file as a kept VM (no VMM, no thread).  0, or -errno with
 * why filled (the file is not memsrv's, or does not fit its header). */
int vm_state_load(int dir_fd, const char *file, struct store *store, struct vm **out, char *why, size_t whylen);

/* Appends to *refs (grown as needed) one object id per store reference the
 * kept VM's tables hold.  0 or -ENOMEM/-errno. */
int vm_state_collect_refs(const struct vm *vm, obj_id **refs, size_t *n, size_t *cap);

/* Whether the kept VM's VMM process still runs. */
bool vm_state_owner_alive(const struct vm *vm);

/* Drops the store references of every written entry of r (a kept VM's,
 * whose tables were never reconciled, included). */
void vm_state_drop_references(struct vm *vm, struct region *r);

/* A resumed VM's thread, once the drops the dead memsrv asked for are done
 * (anon_drops_barrier) and before its regions are unprotected: in its
 * anonymous regions and its regions of huge pages (hugetlbfs cannot say
 * which pages a file holds) the pages the VMM maps are the truth for what
 * they hold, as a shared region's fd is at the Hello, and the table for
 * the rest.  A huge page's parts go unless its entry says it is in them. */
void vm_state_reconcile_mapped(struct vm *vm);

/* The first thing a resumed VM's thread does: the messages the dead memsrv
 * read are gone, so every region is unprotected and its waiters woken;
 * those whose page is still missing fault again. */
void vm_state_wake_all(struct vm *vm);

#endif
