/* Description: page sharing across VMs and the compressed cache, against the
 * real memsrv: identical VMs are stored once, also when the first copy went
 * to swap; a page changed after sharing changes nothing elsewhere, forced
 * hash collisions share nothing wrongly, and the codec is chosen per VM. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_client.h"
#include "harness.h"

static struct test_server srv;
static char scratch[64];  /* the swap directory, for the tests that have one */

static void teardown(void)
{
	server_stop(&srv);
	scratch_remove(scratch);
}

static uint64_t evict_all(const char *name)
{
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, name, 0, true);
	uint64_t stored = m->evict_reply->stored_pages;
	memsrv__server_message__free_unpacked(m, NULL);
	return stored;
}

Test(sharing, four_vms_with_the_same_content_share_one_copy, .init = NULL, .fini = teardown, .timeout = 120)
{
	server_start(&srv);
	struct test_sim vm[4];
	const char *names[4] = { "twin0", "twin1", "twin2", "twin3" };
	for (int i = 0; i < 4; i++)
		sim_start(&vm[i], &srv, names[i], "--size", "16M", "--seed", "7", "--verify", NULL);
	uint64_t stored = evict_all(names[0]);
	cr_assert_gt(stored, 1000);
	Memsrv__ServerMessage *m;
	uint64_t objects_one = ctl_stats_ok(&srv, &m)->objects;
	memsrv__server_message__free_unpacked(m, NULL);
	for (int i = 1; i < 4; i++)
		cr_assert_eq(evict_all(names[i]), stored, "the twins hold the same pages");

	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->objects, objects_one, "three more VMs of the same content added no object");
	cr_assert_eq(st->references, 4 * stored);
	cr_assert_eq(st->shared_pages, st->references, "every object is held by all four VMs");
	cr_assert_gt(st->shared_saved_bytes, 2 * st->cache_bytes, "three of four copies are saved");
	memsrv__server_message__free_unpacked(m, NULL);
	m = ctl_info_ok(&srv, "twin2");
	cr_assert_eq(m->vm_info->shared_pages, stored);
	cr_assert_gt(m->vm_info->shared_saved_bytes, 0);
	memsrv__server_message__free_unpacked(m, NULL);

	for (int i = 0; i < 4; i++)
		sim_expect_verified(&vm[i], 4096);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(sim_quit(&vm[i]), 0);
	st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(st->objects, 0, "the last reference frees every object");
	memsrv__server_message__free_unpacked(m, NULL);
}

/* What the node's stored pages cost in memory plus swap. */
static uint64_t stored_cost(const Memsrv__NodeStats *st)
{
	return st->cache_pool_bytes + st->swap_used_bytes;
}

/* The node's statistics once writeback rests: it goes on after an evict
 * returned, down to its low watermark, and the cost depends on where it
 * stopped (the pool keeps its size, swap grows). */
static Memsrv__NodeStats *settled_stats(Memsrv__ServerMessage **m)
{
	uint64_t last = UINT64_MAX;
	for (int still = 0, i = 0; i < 100; i++, usleep(100000)) {
		Memsrv__NodeStats *st = ctl_stats_ok(&srv, m);
		still = st->writeback_objects == last ? still + 1 : 0;
		if (still == 3)
			return st;
		last = st->writeback_objects;
		memsrv__server_message__free_unpacked(*m, NULL);
	}
	cr_assert_fail("writeback did not rest within 10 s");
	return NULL;
}

Test(sharing, identical_vms_share_pages_whose_first_copy_went_to_swap, .fini = teardown, .timeout = 180)
{
	/* a cache smaller than one VM: most of the first VM's pages are in
	 * swap by the time its twins are evicted */
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-sharing.XXXXXX"));
	char swap[96];
	snprintf(swap, sizeof swap, "%s:256M", scratch);
	const char *opts[] = { "--cache-size", "2M", "--swap-dir", swap, NULL };
	server_start_with(&srv, opts);
	struct test_sim vm[4];
	const char *names[4] = { "deep0", "deep1", "deep2", "deep3" };
	for (int i = 0; i < 4; i++)  /* compressible, never samefilled */
		sim_start(&vm[i], &srv, names[i], "--size", "16M", "--mix", "text=60,binary=40", "--seed", "5",
			  "--verify", NULL);
	uint64_t stored = evict_all(names[0]);
	cr_assert_gt(stored, 4000);
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = settled_stats(&m);
	uint64_t cost_one = stored_cost(st), hits_one = st->dedup_hits;
	cr_assert_gt(st->swap_objects, stored / 2, "the first VM went mostly to swap");
	memsrv__server_message__free_unpacked(m, NULL);
	for (int i = 1; i < 4; i++)
		cr_assert_eq(evict_all(names[i]), stored, "the twins hold the same pages");

	st = settled_stats(&m);
	uint64_t cost_four = stored_cost(st), hits = st->dedup_hits - hits_one;
	cr_log_info("memory + swap: %lu bytes after one VM, %lu after four (%.2fx); dedup hits of the twins %lu of %lu",
		    (unsigned long)cost_one, (unsigned long)cost_four, (double)cost_four / (double)cost_one,
		    (unsigned long)hits, (unsigned long)(3 * stored));
	cr_assert_geq(hits, 3 * stored, "every page of the twins is shared: %lu hits of %lu", (unsigned long)hits,
		      (unsigned long)(3 * stored));
	cr_assert_leq(cost_four * 10, cost_one * 11, "three twins cost %lu bytes more than the first VM's %lu",
		      (unsigned long)(cost_four - cost_one), (unsigned long)cost_one);
	cr_assert_eq(st->swap_checksum_errors, 0);
	memsrv__server_message__free_unpacked(m, NULL);

	for (int i = 0; i < 4; i++)
		sim_expect_verified(&vm[i], 4096);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(sim_quit(&vm[i]), 0);
}

Test(sharing, a_page_changed_after_sharing_changes_nothing_elsewhere, .fini = teardown, .timeout = 120)
{
	server_start(&srv);
	struct test_sim a, b;
	sim_start(&a, &srv, "writer", "--size", "16M", "--seed", "9", "--verify", NULL);
	sim_start(&b, &srv, "reader", "--size", "16M", "--seed", "9", "--verify", NULL);
	evict_all("writer");
	evict_all("reader");
	struct sim_reply r;
	sim_cmd(&a, "write 0.5", &r);  /* faults shared pages in, then changes them */
	cr_assert(r.ok, "%s", r.error);
	evict_all("writer");
	sim_expect_verified(&b, 4096);
	sim_expect_verified(&a, 4096);
	evict_all("reader");
	sim_expect_verified(&b, 4096);
	cr_assert_eq(sim_quit(&a), 0);
	cr_assert_eq(sim_quit(&b), 0);
}

Test(sharing, forced_hash_collisions_share_nothing_wrongly, .fini = teardown, .timeout = 120)
{
	/* 4 bits of hash: nearly every page collides with others */
	const char *opts[] = { "--debug-hash-bits", "4", NULL };
	server_start_with(&srv, opts);
	struct test_sim a, b, c;
	sim_start(&a, &srv, "coll-a", "--size", "8M", "--seed", "1", "--verify", NULL);
	sim_start(&b, &srv, "coll-b", "--size", "8M", "--seed", "2", "--verify", NULL);
	sim_start(&c, &srv, "coll-c", "--size", "8M", "--seed", "1", "--verify", NULL);
	uint64_t stored = evict_all("coll-a");
	evict_all("coll-b");
	evict_all("coll-c");
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_gt(st->hash_collisions, 1000, "the weak hash must collide");
	cr_assert_geq(st->shared_pages, 2 * stored, "coll-c still shares every page with coll-a, its twin");
	memsrv__server_message__free_unpacked(m, NULL);
	sim_expect_verified(&a, 2048);
	sim_expect_verified(&b, 2048);
	sim_expect_verified(&c, 2048);
	cr_assert_eq(sim_quit(&a), 0);
	cr_assert_eq(sim_quit(&b), 0);
	cr_assert_eq(sim_quit(&c), 0);
}

Test(sharing, the_codec_is_chosen_per_vm, .fini = teardown, .timeout = 120)
{
	server_start(&srv);
	struct test_sim fast, dense;
	sim_start(&fast, &srv, "fast", "--size", "16M", "--mix", "text=100", "--seed", "3", NULL);
	sim_start(&dense, &srv, "dense", "--size", "16M", "--mix", "text=100", "--seed", "4", "--codec", "zstd", NULL);
	evict_all("fast");
	evict_all("dense");
	Memsrv__ServerMessage *f = ctl_info_ok(&srv, "fast"), *d = ctl_info_ok(&srv, "dense");
	cr_assert_str_eq(f->vm_info->codec, "lz4");
	cr_assert_str_eq(d->vm_info->codec, "zstd");
	cr_assert_lt(d->vm_info->cache_bytes, f->vm_info->cache_bytes, "zstd %lu bytes, lz4 %lu",
		     (unsigned long)d->vm_info->cache_bytes, (unsigned long)f->vm_info->cache_bytes);
	memsrv__server_message__free_unpacked(f, NULL);
	memsrv__server_message__free_unpacked(d, NULL);

	const char *to_zstd[] = { "codec=zstd" }, *bad[] = { "codec=gzip" }, *unknown[] = { "colour=blue" };
	Memsrv__ServerMessage *m = NULL;
	cr_assert_eq(ctl_set(srv.sock, "fast", to_zstd, 1, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_SET_REPLY);
	memsrv__server_message__free_unpacked(m, NULL);
	f = ctl_info_ok(&srv, "fast");
	cr_assert_str_eq(f->vm_info->codec, "zstd");
	memsrv__server_message__free_unpacked(f, NULL);
	cr_assert_eq(ctl_set(srv.sock, "fast", bad, 1, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR);
	cr_assert(strstr(m->error->message, "gzip"), "%s", m->error->message);
	memsrv__server_message__free_unpacked(m, NULL);
	cr_assert_eq(ctl_set(srv.sock, "fast", unknown, 1, &m), 0);
	cr_assert_eq(m->msg_case, MEMSRV__SERVER_MESSAGE__MSG_ERROR);
	cr_assert_str_eq(m->error->field, "set.settings");
	memsrv__server_message__free_unpacked(m, NULL);
	sim_expect_verified(&fast, 4096);
	sim_expect_verified(&dense, 4096);
	cr_assert_eq(sim_quit(&fast), 0);
	cr_assert_eq(sim_quit(&dense), 0);
}
