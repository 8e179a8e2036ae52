/* Description: ADDR:PORT as --peer-listen and peer-ping take it: IPv4 and
 * bracketed IPv6, numeric only, a port of 1..65535, printed back the same;
 * what counts as loopback. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "peer_addr.h"

static void round_trip(const char *text)
{
	struct peer_addr a;
	char why[256], back[PEER_ADDR_TEXT];
	cr_assert_eq(peer_addr_parse(text, &a, why, sizeof why), 0, "%s: %s", text, why);
	peer_addr_format((struct sockaddr *)&a.sa, back, sizeof back);
	cr_assert_str_eq(back, text);
}

Test(peer_addr, ipv4_and_ipv6_round_trip)
{
	round_trip("127.0.0.1:7070");
	round_trip("0.0.0.0:1");
	round_trip("10.0.0.2:65535");
	round_trip("[::1]:7070");
	round_trip("[fd00::2]:80");
}

Test(peer_addr, refused_with_a_reason)
{
	static const char *const bad[] = {
		"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:70x", "localhost:7070",
		":7070", "::1:7070", "[::1]", "[::1]7070", "[127.0.0.1]:7070", "1.2.3:4", "",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct peer_addr a;
		char why[256] = "";
		cr_assert_eq(peer_addr_parse(bad[i], &a, why, sizeof why), -EINVAL, "'%s' accepted", bad[i]);
		cr_assert(strstr(why, bad[i]), "the reason quotes '%s': %s", bad[i], why);
	}
}

static bool loopback(const char *text)
{
	struct peer_addr a;
	char why[256];
	cr_assert_eq(peer_addr_parse(text, &a, why, sizeof why), 0, "%s", why);
	return peer_addr_is_loopback((struct sockaddr *)&a.sa);
}

Test(peer_addr, loopback_or_not)
{
	cr_assert(loopback("127.0.0.1:1"));
	cr_assert(loopback("127.255.0.9:1"));
	cr_assert(loopback("[::1]:1"));
	cr_assert(loopback("[::ffff:127.0.0.1]:1"), "IPv4 loopback on a dual-stack socket");
	cr_assert(!loopback("128.0.0.1:1"));
	cr_assert(!loopback("10.0.0.1:1"));
	cr_assert(!loopback("[::2]:1"));
	cr_assert(!loopback("[::ffff:10.0.0.1]:1"));
	cr_assert(!loopback("0.0.0.0:1"));
}
