/* remote_object: a page as the remote tier keeps it (remote_object.h). */
#include "remote_object.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>
#include <xxhash.h>

#define MAGIC "MSRO"
#define VERSION 1

/* The header, little-endian on the wire:
 *	0  magic "MSRO"
 *	4  version (1 byte), codec (1 byte: CODEC_*, or 255 for the page raw), 2 bytes 0
 *	8  payload length (4 bytes)
 *	12 XXH64 of the payload (8 bytes) */
#define RAW_CODEC 255

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

void remote_digest_page(const void *page, struct remote_digest *out)
{
	SHA256(page, CODEC_PAGE, out->b);
}

size_t remote_key(const struct remote_digest *d, char kind, char key[REMOTE_KEY_MAX])
{
	static const char hex[] = "0123456789abcdef";
	size_t n = (size_t)snprintf(key, REMOTE_KEY_MAX, "memsrv:{");
	for (int i = 0; i < REMOTE_DIGEST_BYTES; i++) {
		key[n++] = hex[d->b[i] >> 4];
		key[n++] = hex[d->b[i] & 15];
	}
	n += (size_t)snprintf(key + n, REMOTE_KEY_MAX - n, "}:%c", kind);
	return n;
}

size_t remote_object_encode(enum codec c, const void *payload, uint32_t len, uint8_t out[REMOTE_OBJECT_MAX])
{
	memcpy(out, MAGIC, 4);
	out[4] = VERSION;
	out[5] = len == CODEC_PAGE ? RAW_CODEC : (uint8_t)c;
	out[6] = out[7] = 0;
	put_le32(out + 8, len);
	put_le64(out + 12, XXH64(payload, len, 0));
	memcpy(out + REMOTE_HEADER_BYTES, payload, len);
	return REMOTE_HEADER_BYTES + len;
}

int remote_object_decode(struct codec_ctx *ctx, const void *value, size_t len, const struct remote_digest *d,
			 void *page, char *why, size_t why_len)
{
	const uint8_t *v = value;
	if (len < REMOTE_HEADER_BYTES || memcmp(v, MAGIC, 4) || v[4] != VERSION) {
		snprintf(why, why_len, "not a memsrv object (%zu bytes, no MSRO version %d header)", len, VERSION);
		return -EBADMSG;
	}
	uint32_t payload_len = get_le32(v + 8);
	if (payload_len != len - REMOTE_HEADER_BYTES || payload_len == 0 || payload_len > CODEC_PAGE) {
		snprintf(why, why_len, "its header says %u bytes of payload, it has %zu", payload_len,
			 len - REMOTE_HEADER_BYTES);
		return -EBADMSG;
	}
	const uint8_t *payload = v + REMOTE_HEADER_BYTES;
	if (XXH64(payload, payload_len, 0) != get_le64(v + 12)) {
		snprintf(why, why_len, "its payload does not match its checksum");
		return -EBADMSG;
	}
	uint8_t codec = v[5];
	if (codec == RAW_CODEC) {
		if (payload_len != CODEC_PAGE) {
			snprintf(why, why_len, "a raw page of %u bytes", payload_len);
			return -EBADMSG;
		}
		memcpy(page, payload, CODEC_PAGE);
	} else if (codec >= CODECS) {
		snprintf(why, why_len, "unknown codec %u", codec);
		return -EBADMSG;
	} else if (codec_decompress(ctx, (enum codec)codec, payload, payload_len, page)) {
		snprintf(why, why_len, "it does not decompress (%s) to one page", codec_name((enum codec)codec));
		return -EILSEQ;
	}
	struct remote_digest got;
	remote_digest_page(page, &got);
	if (memcmp(got.b, d->b, REMOTE_DIGEST_BYTES)) {
		snprintf(why, why_len, "its page hashes to another key");
		return -EILSEQ;
	}
	return 0;
}
