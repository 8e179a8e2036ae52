/* Description: the one size parser of memsrv, memsrv-ctl and memsrv-vmsim
 * takes digits and an optional K, M or G, and refuses everything else. */
#include <criterion/criterion.h>
#include <errno.h>

#include "units.h"

static void ok(const char *s, uint64_t want)
{
	uint64_t v = 0;
	int ret = parse_size(s, &v);
	cr_assert_eq(ret, 0, "'%s': %d", s, ret);
	cr_assert_eq(v, want, "'%s' gave %llu, not %llu", s, (unsigned long long)v, (unsigned long long)want);
}

static void refused(const char *s, int err)
{
	uint64_t v = 12345;
	int ret = parse_size(s, &v);
	cr_assert_eq(ret, err, "'%s': %d, not %d", s, ret, err);
	cr_assert_eq(v, 12345, "'%s' wrote the result", s);
}

Test(units, digits_and_binary_suffixes)
{
	ok("0", 0);
	ok("4096", 4096);
	ok("4K", 4096);
	ok("4k", 4096);
	ok("512M", 512ull << 20);
	ok("2G", 2ull << 30);
	ok("18446744073709551615", UINT64_MAX);
	ok("17179869183G", 17179869183ull << 30);  /* the largest G that fits */
}

Test(units, signs_spaces_and_empty_are_refused)
{
	refused(" -1", -EINVAL);
	refused("-1", -EINVAL);
	refused("+1", -EINVAL);
	refused(" 1", -EINVAL);
	refused("1 ", -EINVAL);
	refused("1 K", -EINVAL);
	refused("", -EINVAL);
	refused("K", -EINVAL);
}

Test(units, fractions_and_other_suffixes_are_refused)
{
	refused("1.5G", -EINVAL);
	refused("1E", -EINVAL);
	refused("1T", -EINVAL);
	refused("1KB", -EINVAL);
	refused("1KK", -EINVAL);
	refused("0x10", -EINVAL);
}

Test(units, overflow_is_refused)
{
	refused("18446744073709551616", -ERANGE);
	refused("99999999999999999999999", -ERANGE);
	refused("17179869184G", -ERANGE);
	refused("18014398509481984K", -ERANGE);
}

Test(units, every_refusal_says_why)
{
	cr_assert_str_not_empty(parse_size_why(-EINVAL));
	cr_assert_str_not_empty(parse_size_why(-ERANGE));
}
