/* id_map: every id put is found with its value, none that was not, through
 * growth and wrapped probes; each visits every id once. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "id_map.h"

Test(id_map, finds_what_was_put_and_nothing_else_through_growth)
{
	struct id_map m = { 0 };
	uint64_t v;
	cr_assert_not(id_map_find(&m, 1, &v), "an empty map holds nothing");
	enum { N = 100000 };
	for (uint64_t i = 1; i <= N; i++)  /* ids far apart and close together */
		cr_assert_eq(id_map_put(&m, i % 2 ? i : i << 40, i * 3), 0);
	cr_assert_eq(m.n, N);
	cr_assert_leq(m.n * 2, m.cap, "at most half full");
	for (uint64_t i = 1; i <= N; i++) {
		cr_assert(id_map_find(&m, i % 2 ? i : i << 40, &v), "id %lu", (unsigned long)i);
		cr_assert_eq(v, i * 3);
	}
	cr_assert_not(id_map_find(&m, N + 1, &v));
	cr_assert_not(id_map_find(&m, 3ull << 40, &v));
	id_map_free(&m);
	cr_assert_eq(m.cap, 0);
}

static void count(uint64_t id, void *arg)
{
	uint64_t *sum = arg;
	sum[0]++;
	sum[1] += id;
}

Test(id_map, reserve_then_each_visits_every_id_once)
{
	struct id_map m = { 0 };
	cr_assert_eq(id_map_reserve(&m, 5000), 0);
	size_t cap = m.cap;
	for (uint64_t i = 1; i <= 5000; i++)
		cr_assert_eq(id_map_put(&m, i * 7919, i), 0);
	cr_assert_eq(m.cap, cap, "reserved: no growth");
	uint64_t sum[2] = { 0, 0 };
	id_map_each(&m, count, sum);
	cr_assert_eq(sum[0], 5000);
	cr_assert_eq(sum[1], 7919ull * 5000 * 5001 / 2);
	id_map_free(&m);
}
