/* remote_object: a page as the remote tier keeps it in a Redis Cluster.
 *
 * Named by content across hosts: the key holds the SHA-256 of the page's
 * 4 KiB (XXH3 is not enough where a guest chooses its content and the
 * compare would need a remote read), in a {hash tag} so that the object
 * and the keys that count its references land on one slot:
 *
 *	memsrv:{<64 hex digits>}:o     the object (below)
 *	memsrv:{<64 hex digits>}:r     the hosts that reference it (a set)
 *
 * The object is a header — magic "MSRO", version, codec, payload length,
 * XXH64 of the payload — and the payload: codec's output, or the page raw
 * (CODEC_PAGE bytes).  Whatever the cluster hands back is checked before
 * it becomes a page: the header, the checksum, that it decompresses to one
 * page, and that the page hashes to its key.  A malformed or unexpected
 * value is an error, never page content.
 */
#ifndef MEMSRV_REMOTE_OBJECT_H
#define MEMSRV_REMOTE_OBJECT_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define REMOTE_DIGEST_BYTES 32
#define REMOTE_KEY_MAX 96            /* "memsrv:{" 64 hex "}:o" and the NUL */
#define REMOTE_HEADER_BYTES 20
#define REMOTE_OBJECT_MAX (REMOTE_HEADER_BYTES + CODEC_PAGE)

struct remote_digest {
	uint8_t b[REMOTE_DIGEST_BYTES];
};

/* The SHA-256 of a 4 KiB page (libcrypto). */
void remote_digest_page(const void *page, struct remote_digest *out);

/* The key of the object (kind 'o') or of its references (kind 'r');
 * returns its length. */
size_t remote_key(const struct remote_digest *d, char kind, char key[REMOTE_KEY_MAX]);

/* The object of a payload (len bytes of codec c's output, or CODEC_PAGE
 * bytes of the page raw) into out (REMOTE_OBJECT_MAX); returns its length. */
size_t remote_object_encode(enum codec c, const void *payload, uint32_t len, uint8_t out[REMOTE_OBJECT_MAX]);

/* The page an object holds, checked (above) against the digest its key
 * names: 0, or -EBADMSG with why (the header, the checksum, the length,
 * the codec) or -EILSEQ (it does not decompress to one page, or the page
 * hashes to another key). */
int remote_object_decode(struct codec_ctx *ctx, const void *value, size_t len, const struct remote_digest *d,
			 void *page, char *why, size_t why_len);

#endif
