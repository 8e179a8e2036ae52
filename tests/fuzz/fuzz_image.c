/* fuzz_image: a memory image as a resume would find it on disk.
 *
 * The input is the bytes of DIR/memory.img.  image_open() must refuse what
 * a writer did not commit whole, and an image it accepts must read every
 * page (checked, decompressed) without reading outside what it holds: a
 * page either reads or fails with an error, never crashes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "image.h"

static char dir[] = "/tmp/fuzz-image.XXXXXX";
static char path[sizeof dir + sizeof IMAGE_FILE + 1];
static struct codec_ctx *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(path, sizeof path, "%s/%s", dir, IMAGE_FILE);
	ctx = codec_ctx_create();
	if (!ctx)
		exit(1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, size, f) != size || fclose(f)) {
		perror(path);
		exit(1);
	}
	struct image *img;
	char why[256];
	if (image_open(dir, &img, why, sizeof why) == 0) {
		static uint8_t page[CODEC_PAGE];
		const struct image_info *info = image_get_info(img);
		/* every page of a small image; a large one's first and last pages */
		for (uint64_t p = 0; p < info->pages; p = p < 4096 || p + 1 >= info->pages ? p + 1 : info->pages - 1)
			image_read_page(img, ctx, p, page);
		image_close(img);
	}
	unlink(path);
	return 0;
}
