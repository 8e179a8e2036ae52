/* fuzz_remote: what a Redis Cluster hands back for a page of the remote
 * tier (remote_object.h).
 *
 * The input is the digest its key names (32 bytes) and then the value.
 * remote_object_decode() must refuse whatever is not that page's object,
 * saying why, and never read outside the value: a page it accepts hashes to
 * the digest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "remote_object.h"

static struct codec_ctx *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	ctx = codec_ctx_create();
	if (!ctx)
		exit(1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < REMOTE_DIGEST_BYTES)
		return 0;
	struct remote_digest d;
	memcpy(d.b, data, REMOTE_DIGEST_BYTES);
	/* the value in a buffer of its own size: a read past it is caught */
	size_t len = size - REMOTE_DIGEST_BYTES;
	uint8_t *value = malloc(len ? len : 1);
	if (!value)
		exit(1);
	memcpy(value, data + REMOTE_DIGEST_BYTES, len);
	static uint8_t page[CODEC_PAGE];
	char why[160] = "";
	int ret = remote_object_decode(ctx, value, len, &d, page, why, sizeof why);
	if (ret && !why[0]) {
		fprintf(stderr, "fuzz_remote: refused (%d) without saying why\n", ret);
		abort();
	}
	if (!ret) {
		struct remote_digest got;
		remote_digest_page(page, &got);
		if (memcmp(got.b, d.b, REMOTE_DIGEST_BYTES)) {
			fprintf(stderr, "fuzz_remote: accepted a page that hashes to another key\n");
			abort();
		}
	}
	free(value);
	return 0;
}
