/* Description: the compressed cache and the swap files, against the real
 * memsrv and real filesystems: a full cache spills to swap and every page
 * reads back; a swap device that runs out of room (ENOSPC) or fails its
 * writes (EIO, from a loop device whose backing store is full) loses
 * nothing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

static struct test_server srv;
static char scratch[64];   /* where the swap filesystems are mounted */
static char cleanup_cmds[1024];

static void teardown(void)
{
	server_stop(&srv);
	if (cleanup_cmds[0] && system(cleanup_cmds)) {
		/* best effort */
	}
	cleanup_cmds[0] = 0;
	/* the scratch directory and what the tests made in it (all unmounted by now) */
	scratch_remove(scratch);
}

TestSuite(tiers, .fini = teardown, .timeout = 180);

static void start_with_swap(const char *swap_dir_arg, const char *cache)
{
	const char *opts[] = { "--cache-size", cache, "--swap-dir", swap_dir_arg, NULL };
	server_start_with(&srv, opts);
}

static void make_scratch(void)
{
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-tiers.XXXXXX"));
}

Test(tiers, a_full_cache_spills_to_swap_and_every_page_reads_back)
{
	make_scratch();
	char arg[128];
	snprintf(arg, sizeof arg, "%s:128M", scratch);
	start_with_swap(arg, "4M");
	struct test_sim sim;
	sim_start(&sim, &srv, "spill", "--size", "32M", "--verify", NULL);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "spill", 0, true);
	cr_assert_eq(m->evict_reply->pages_evicted, 8192, "evict --all waits for writeback instead of stopping");
	memsrv__server_message__free_unpacked(m, NULL);

	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_gt(st->swap_objects, 1000, "most pages went to swap");
	cr_assert_leq(st->cache_slot_bytes, 4u << 20, "the cache keeps to its budget");
	cr_assert_eq(st->swap_write_errors, 0);
	cr_assert_gt(st->density, 1.0, "evicted bytes per byte held: %f", st->density);
	memsrv__server_message__free_unpacked(m, NULL);
	m = ctl_info_ok(&srv, "spill");
	cr_assert_gt(m->vm_info->swap_pages, 0);
	cr_assert_eq(m->vm_info->swap_pages + m->vm_info->cache_pages + m->vm_info->samefilled_pages,
		     m->vm_info->stored_pages, "every stored page is in exactly one tier");
	memsrv__server_message__free_unpacked(m, NULL);

	sim_expect_verified(&sim, 8192);
	m = ctl_info_ok(&srv, "spill");
	cr_assert_gt(m->vm_info->faults_swap, 0, "pages were read back from swap");
	cr_assert_gt(m->vm_info->fault_latency_swap_us->count, 0);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(sim_quit(&sim), 0);
}

/* Mounts a tmpfs of size on dir; false (and a skip message) when it can't. */
static bool mount_tmpfs(const char *dir, const char *size)
{
	char opts[64];
	snprintf(opts, sizeof opts, "size=%s", size);
	return mount("tmpfs", dir, "tmpfs", 0, opts) == 0;
}

/* Every page reads back intact, and swap never handed back other data. */
static void expect_verified_from_swap(struct test_sim *sim, uint64_t pages)
{
	sim_expect_verified(sim, pages);
	Memsrv__ServerMessage *m = NULL;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->swap_checksum_errors, 0, "swap handed back other data");
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(sim_quit(sim), 0);
}

static bool has_condition(const Memsrv__NodeStats *st, const char *what)
{
	for (size_t i = 0; i < st->n_conditions; i++)
		if (!strcmp(st->conditions[i], what))
			return true;
	return false;
}

Test(tiers, a_swap_filesystem_out_of_room_loses_nothing_and_recovers)
{
	make_scratch();
	if (!mount_tmpfs(scratch, "256k"))
		cr_skip_test("cannot mount a tmpfs (%s): needs root", strerror(errno));
	snprintf(cleanup_cmds, sizeof cleanup_cmds, "umount %s", scratch);
	char arg[128];
	snprintf(arg, sizeof arg, "%s:64M", scratch);  /* sparse: room only on the allocator's books */
	start_with_swap(arg, "1M");
	struct test_sim sim;
	sim_start(&sim, &srv, "full", "--size", "16M", "--verify", NULL);
	Memsrv__ServerMessage *m = NULL;
	cr_assert_eq(ctl_evict(srv.sock, "full", 0, true, &m), 0);
	/* some pages were evicted, the rest stayed: either answer is honest */
	cr_assert(m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_EVICT_REPLY || m->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR);
	memsrv__server_message__free_unpacked(m, NULL);
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_gt(st->swap_write_errors, 0, "the device ran out of room");
	cr_assert_leq(st->cache_slot_bytes, 1u << 20);
	cr_assert(has_condition(st, "swap-full"), "stats does not say the swap is full");
	cr_assert(has_condition(st, "store-full"), "stats does not say eviction stopped");
	uint64_t swapped = st->swap_objects;
	memsrv__server_message__free_unpacked(m, NULL);

	/* room comes back: writeback retries, the conditions clear, eviction resumes */
	cr_assert_eq(mount("tmpfs", scratch, NULL, MS_REMOUNT, "size=64M"), 0, "remount: %s", strerror(errno));
	bool clear = false;
	for (int i = 0; i < 50 && !clear; i++) {
		usleep(100000);
		st = ctl_stats_ok(&srv, &m);
		clear = st->n_conditions == 0;
		memsrv__server_message__free_unpacked(m, NULL);
	}
	cr_assert(clear, "the conditions did not clear within 5 s of room coming back");
	m = ctl_evict_ok(&srv, "full", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	st = ctl_stats_ok(&srv, &m);
	cr_assert_gt(st->swap_objects, swapped, "nothing more went to swap");
	cr_assert_eq(st->resident_bytes, 0, "eviction did not resume");
	memsrv__server_message__free_unpacked(m, NULL);
	expect_verified_from_swap(&sim, 4096);
}

Test(tiers, a_swap_device_that_fails_writes_loses_nothing)
{
	make_scratch();
	char backing_dir[128], mnt[128], cmd[1024];
	snprintf(backing_dir, sizeof backing_dir, "%s/backing", scratch);
	snprintf(mnt, sizeof mnt, "%s/mnt", scratch);
	mkdir(backing_dir, 0700);
	mkdir(mnt, 0700);
	if (!mount_tmpfs(backing_dir, "8M"))
		cr_skip_test("cannot mount a tmpfs (%s): needs root", strerror(errno));
	/* a 64 MiB ext4 (journaled, as ext4 is by default) on a loop device
	 * whose backing file can only ever hold 8 MiB: once full, the loop
	 * device fails writes and ext4 reports EIO, then goes read-only */
	snprintf(cmd, sizeof cmd,
		 "set -e; truncate -s 64M %s/disk; dev=$(losetup -f --show %s/disk); echo $dev > %s/dev; "
		 "mkfs.ext4 -q -E lazy_itable_init=1,lazy_journal_init=1 $dev; mount -o errors=remount-ro $dev %s",
		 backing_dir, backing_dir, scratch, mnt);
	snprintf(cleanup_cmds, sizeof cleanup_cmds,
		 "umount %s 2>/dev/null; losetup -d $(cat %s/dev) 2>/dev/null; rm -f %s/dev; umount %s", mnt, scratch,
		 scratch, backing_dir);
	if (system(cmd) != 0)
		cr_skip_test("no loop device or mkfs.ext4 here");
	char arg[160];
	snprintf(arg, sizeof arg, "%s:48M", mnt);
	start_with_swap(arg, "1M");
	struct test_sim sim;
	/* random pages: every one must be written as it is */
	sim_start(&sim, &srv, "eio", "--size", "32M", "--mix", "random=100", "--verify", NULL);
	Memsrv__ServerMessage *m = NULL;
	cr_assert_eq(ctl_evict(srv.sock, "eio", 0, true, &m), 0);
	memsrv__server_message__free_unpacked(m, NULL);
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_gt(st->swap_write_errors, 0, "the device failed writes");
	memsrv__server_message__free_unpacked(m, NULL);
	expect_verified_from_swap(&sim, 8192);
}
