/* Description: a page as the remote tier keeps it in the cluster: named by
 * its SHA-256, object and references on one slot, round trips through each
 * codec and raw, and every kind of damaged or substituted value refused
 * rather than taken for page content. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "redis_cluster.h"
#include "remote_object.h"

static struct codec_ctx *ctx;
static uint8_t page[CODEC_PAGE], back[CODEC_PAGE];

static void setup(void)
{
	ctx = codec_ctx_create();
	cr_assert(ctx);
	for (unsigned i = 0; i < CODEC_PAGE; i++)
		page[i] = (uint8_t)(i % 7 == 0 ? i * 31 : i % 13);
}

static void teardown(void)
{
	codec_ctx_destroy(ctx);
}

TestSuite(remote_object, .init = setup, .fini = teardown);

Test(remote_object, keys_name_the_sha256_and_share_a_slot)
{
	static const uint8_t zero[CODEC_PAGE];
	struct remote_digest d;
	remote_digest_page(zero, &d);
	char key[REMOTE_KEY_MAX], refs[REMOTE_KEY_MAX];
	size_t n = remote_key(&d, 'o', key);
	cr_assert_str_eq(key, "memsrv:{ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7}:o",
			 "the SHA-256 of 4096 zero bytes");
	cr_assert_eq(n, strlen(key));
	size_t m = remote_key(&d, 'r', refs);
	cr_assert_eq(rc_keyslot(key, n), rc_keyslot(refs, m), "object and references on different slots");
}

static size_t encode_with(enum codec c, uint8_t *out)
{
	const void *enc;
	uint32_t len = codec_compress(ctx, c, page, CODEC_PAGE, &enc);
	cr_assert_gt(len, 0, "the test page does not compress");
	return remote_object_encode(c, enc, len, out);
}

static int decode(const uint8_t *obj, size_t len, const struct remote_digest *d, char *why)
{
	memset(back, 0xa5, sizeof back);
	return remote_object_decode(ctx, obj, len, d, back, why, 128);
}

Test(remote_object, each_codec_and_raw_round_trip)
{
	struct remote_digest d;
	remote_digest_page(page, &d);
	static uint8_t obj[REMOTE_OBJECT_MAX];
	char why[128] = "";
	for (int c = 0; c < CODECS; c++) {
		size_t len = encode_with((enum codec)c, obj);
		cr_assert_eq(decode(obj, len, &d, why), 0, "%s: %s", codec_name((enum codec)c), why);
		cr_assert_eq(memcmp(back, page, CODEC_PAGE), 0);
	}
	size_t len = remote_object_encode(CODEC_LZ4, page, CODEC_PAGE, obj);
	cr_assert_eq(len, REMOTE_HEADER_BYTES + CODEC_PAGE);
	cr_assert_eq(decode(obj, len, &d, why), 0, "raw: %s", why);
	cr_assert_eq(memcmp(back, page, CODEC_PAGE), 0);
}

/* Whatever the damage, an error and not a page. */
static void expect_refused(const uint8_t *obj, size_t len, const struct remote_digest *d, int err, const char *what)
{
	char why[128] = "";
	int ret = decode(obj, len, d, why);
	cr_assert_eq(ret, err, "%s: got %d (%s)", what, ret, why);
	cr_assert_neq(why[0], 0, "%s: no reason given", what);
}

Test(remote_object, damaged_or_substituted_values_are_refused)
{
	struct remote_digest d;
	remote_digest_page(page, &d);
	static uint8_t good[REMOTE_OBJECT_MAX], bad[REMOTE_OBJECT_MAX];
	size_t len = encode_with(CODEC_LZ4, good);

	expect_refused(good, 0, &d, -EBADMSG, "an empty value");
	expect_refused((const uint8_t *)"OK", 2, &d, -EBADMSG, "a short value");
	expect_refused(good, len - 1, &d, -EBADMSG, "a truncated object");
	memcpy(bad, good, len);
	bad[0] = 'X';
	expect_refused(bad, len, &d, -EBADMSG, "another magic");
	memcpy(bad, good, len);
	bad[4] = 2;
	expect_refused(bad, len, &d, -EBADMSG, "another version");
	memcpy(bad, good, len);
	bad[len - 1] ^= 1;
	expect_refused(bad, len, &d, -EBADMSG, "a flipped payload bit");
	memcpy(bad, good, len);
	bad[5] = 7;
	expect_refused(bad, len, &d, -EBADMSG, "an unknown codec");

	/* a payload that is not lz4, with a checksum made to match */
	uint8_t junk[300];
	memset(junk, 0xff, sizeof junk);
	size_t jlen = remote_object_encode(CODEC_LZ4, junk, sizeof junk, bad);
	expect_refused(bad, jlen, &d, -EILSEQ, "a payload that does not decompress");

	/* a well-formed object of another page under this page's key */
	uint8_t other[CODEC_PAGE];
	memcpy(other, page, CODEC_PAGE);
	other[100] ^= 0x40;
	size_t olen = remote_object_encode(CODEC_LZ4, other, CODEC_PAGE, bad);
	expect_refused(bad, olen, &d, -EILSEQ, "another page's object");
}
