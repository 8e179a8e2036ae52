/* memsrv-image: looks into a memory image (docs/snapshot.md) without memsrv.
 *
 *   memsrv-image check DIR
 *   memsrv-image rm DIR
 *
 * check opens DIR/memory.img (which checks its header, table and index),
 * checks every object's bytes, reads every page and prints what the image
 * holds as key: value lines.  rm removes it, unless a VM resumed from it
 * still reads pages from it.  An image whose objects are names in a Redis
 * Cluster (memsrv-ctl snapshot --remote) is checked as far as the file
 * goes: each name against its checksum; rm says which holder's references
 * keep its objects in the cluster (memsrv-ctl remote gc drops them).  Exit status 0 when every check passed (or it
 * was removed), 1 when one failed (or it was not), 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"

#define MAX_REPORTED 10     /* bad pages or objects named, then only counted */

struct counts {
	uint64_t kind[3];
	uint64_t raw_objects, named_objects, bad_objects, bad_pages;
};

static int usage(FILE *f)
{
	fprintf(f, "usage: memsrv-image check DIR\n"
		   "  opens DIR/memory.img, checks every object and page, prints what it holds;\n"
		   "  exit status 0 when the image is intact, 1 when it is not\n"
		   "       memsrv-image rm DIR\n"
		   "  removes DIR/memory.img, refused (exit status 1) while a VM resumed from it\n"
		   "  still reads pages from it; an image of snapshot --remote keeps its objects\n"
		   "  in the cluster until memsrv-ctl remote gc HOLDER (rm names HOLDER)\n");
	return f == stdout ? 0 : 2;
}

/* Every object's bytes against its checksum, referenced or not. */
static void check_objects(struct image *img, struct counts *n)
{
	uint8_t buf[IMAGE_RAW_LEN];
	for (uint64_t i = 0; i < image_get_info(img)->objects; i++) {
		uint64_t off;
		uint32_t len;
		enum codec c;
		struct remote_digest d;
		int ret = image_object_loc(img, i, &off, &len, &c);
		if (ret == -EREMOTE && (ret = image_object_remote(img, i, &d)) == 1) {
			n->named_objects++;  /* its name is intact; its page is the cluster's to check */
			continue;
		}
		if (ret) {
			if (n->bad_objects++ < MAX_REPORTED)
				fprintf(stderr, "object %" PRIu64 ": its index entry cannot be read: %s\n", i,
					ret == -EBADMSG ? "the object index is corrupt" : strerror(-ret));
			continue;
		}
		n->raw_objects += len == IMAGE_RAW_LEN;
		if (pread(image_fd(img), buf, len, (off_t)off) == (ssize_t)len && !image_object_check(img, i, buf, len))
			continue;
		if (n->bad_objects++ < MAX_REPORTED)
			fprintf(stderr, "object %" PRIu64 " (%u bytes at %" PRIu64 "): checksum does not match\n", i,
				len, off);
	}
}

/* Every page read as a resume would: checked and decompressed. */
static int check_pages(struct image *img, struct counts *n)
{
	struct codec_ctx *ctx = codec_ctx_create();
	if (!ctx)
		return -ENOMEM;
	uint8_t page[CODEC_PAGE];
	for (uint64_t p = 0; p < image_get_info(img)->pages; p++) {
		uint64_t value;
		int kind = image_page(img, p, &value);
		if (kind >= 0)
			n->kind[kind]++;
		int ret = image_read_page(img, ctx, p, page);
		if (ret == -EREMOTE)
			ret = 0;  /* a name, checked with the objects */
		if (ret && n->bad_pages++ < MAX_REPORTED)
			fprintf(stderr, "page %" PRIu64 ": %s\n", p,
				kind < 0 ? "its entry in the page table is corrupt" : strerror(-ret));
	}
	codec_ctx_destroy(ctx);
	return 0;
}

static void print_info(const struct image *img, const struct counts *n, uint64_t file_bytes)
{
	const struct image_info *in = image_get_info(img);
	uint64_t first_touch;
	image_first_touch(img, &first_touch);
	printf("vm: %s\n", in->vm_name);
	printf("created_unix_ns: %" PRIu64 "\n", in->created_unix_ns);
	printf("regions: %u\n", in->n_regions);
	for (uint32_t i = 0; i < in->n_regions; i++)
		printf("region%u: guest_phys_addr=0x%" PRIx64 " size=%" PRIu64 " page_size=%u\n", i,
		       in->regions[i].guest_phys_addr, in->regions[i].size, in->regions[i].page_size);
	printf("pages: %" PRIu64 "\n", in->pages);
	printf("pages_zero: %" PRIu64 "\n", n->kind[IMAGE_PAGE_ZERO]);
	printf("pages_samefill: %" PRIu64 "\n", n->kind[IMAGE_PAGE_SAMEFILL]);
	printf("pages_object: %" PRIu64 "\n", n->kind[IMAGE_PAGE_OBJECT]);
	printf("objects: %" PRIu64 "\n", in->objects);
	printf("objects_raw: %" PRIu64 "\n", n->raw_objects);
	printf("objects_named: %" PRIu64 "\n", n->named_objects);
	printf("remote_holder: %s\n", in->remote_holder[0] ? in->remote_holder : "-");
	printf("data_bytes: %" PRIu64 "\n", in->data_bytes);
	printf("file_bytes: %" PRIu64 "\n", file_bytes);
	printf("ratio: %.4f\n", in->pages ? (double)file_bytes / ((double)in->pages * CODEC_PAGE) : 0.0);
	printf("first_touch_pages: %" PRIu64 "\n", first_touch);
	printf("bad_objects: %" PRIu64 "\n", n->bad_objects);
	printf("bad_pages: %" PRIu64 "\n", n->bad_pages);
}

static int check(const char *dir)
{
	struct image *img;
	char why[512] = "";
	int ret = image_open(dir, &img, why, sizeof(why));
	if (ret) {
		fprintf(stderr, "memsrv-image: %s\n", why[0] ? why : strerror(-ret));
		printf("status: refused\n");
		return 1;
	}
	struct counts n = { 0 };
	struct stat st;
	fstat(image_fd(img), &st);
	check_objects(img, &n);
	if (check_pages(img, &n)) {
		fprintf(stderr, "memsrv-image: out of memory\n");
		image_close(img);
		return 1;
	}
	print_info(img, &n, (uint64_t)st.st_size);
	bool ok = !n.bad_objects && !n.bad_pages;
	printf("status: %s\n", ok ? "ok" : "corrupt");
	image_close(img);
	return ok ? 0 : 1;
}

static int rm(const char *dir)
{
	char why[512] = "", holder[IMAGE_NAME_MAX] = "";
	struct image *img;
	if (!image_open(dir, &img, NULL, 0)) {
		snprintf(holder, sizeof holder, "%s", image_get_info(img)->remote_holder);
		image_close(img);
	}
	int ret = image_remove(dir, why, sizeof why);
	if (ret) {
		fprintf(stderr, "memsrv-image: %s\n", why[0] ? why : strerror(-ret));
		return 1;
	}
	if (holder[0])
		printf("its objects stay in the Redis Cluster under %s: memsrv-ctl remote gc %s drops them\n", holder,
		       holder);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return usage(stdout);
	if (argc == 3 && !strcmp(argv[1], "check"))
		return check(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "rm"))
		return rm(argv[2]);
	return usage(stderr);
}
