/* saved_state: what a simulated VM needs, beside memsrv's memory image, to
 * resume and check every page: DIR/vmsim.state.
 *
 * A page's content is content_fill(page, version, mix, seed), so the size,
 * the mix, the seed and the versions array say what every byte of RAM
 * holds.  `save DIR` writes them; `memsrv-ctl snapshot VM DIR` then writes
 * the memory; `--resume DIR` reads both back.
 *
 * The file: a header (magic, format version, size, seed, mix, page count,
 * a 64-bit checksum of header and array) and one uint32_t per 4 KiB page,
 * in host byte order (the state stays on the machine that wrote it).  Written as DIR/.vmsim.state.partial, fsync'd, renamed into
 * place without replacing one that is there, and the directory fsync'd:
 * a save killed at any moment leaves no vmsim.state, or a whole one.
 */
#ifndef VMSIM_SAVED_STATE_H
#define VMSIM_SAVED_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "content.h"

#define SAVED_STATE_FILE "vmsim.state"
#define SAVED_STATE_VERSION 1u

struct saved_state {
	uint64_t size;        /* guest RAM, bytes */
	uint64_t seed;
	struct content_mix mix;
	uint64_t pages;       /* 4 KiB pages: size / 4096 */
	uint32_t *versions;   /* pages entries; saved_state_read allocates it */
};

/* Writes st into dir/vmsim.state, creating dir (0700) if it is missing.
 * Returns 0 or -errno, with why in words (-EEXIST: dir holds a state
 * already, which is never replaced). */
int saved_state_write(const char *dir, const struct saved_state *st, char *why, size_t len);

/* Reads dir/vmsim.state into st (free st->versions with free()).  Returns
 * 0 or -errno with why: -ENOENT none, -EBADMSG not a state file, truncated
 * or corrupt, -EPROTONOSUPPORT another format version. */
int saved_state_read(const char *dir, struct saved_state *st, char *why, size_t len);

#endif
