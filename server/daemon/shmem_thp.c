/* shmem_thp: shmem transparent huge pages and memsrv's punches (shmem_thp.h). */
#include "shmem_thp.h"

#include <glob.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THP_DIR "/sys/kernel/mm/transparent_hugepage"

/* The selected value of a THP control file, e.g. "never" from "always [never]". */
static bool thp_setting(const char *path, char *out, size_t len)
{
	char buf[128];
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool ok = fgets(buf, sizeof buf, f) != NULL;
	fclose(f);
	char *open = ok ? strchr(buf, '[') : NULL, *close = open ? strchr(open, ']') : NULL;
	if (!close)
		return false;
	snprintf(out, len, "%.*s", (int)(close - open - 1), open + 1);
	return true;
}

/* Where memfds may get huge folios (the internal shmem mount follows
 * shmem_enabled and its per-size settings): the setting that allows it,
 * into on; false if none does. */
static bool memfd_thp_on(char *on, size_t len)
{
	char top[32] = "never", v[32];
	thp_setting(THP_DIR "/shmem_enabled", top, sizeof top);
	if (strcmp(top, "never") && strcmp(top, "deny")) {
		snprintf(on, len, "shmem_enabled=%s", top);
		return true;
	}
	glob_t g;
	if (glob(THP_DIR "/hugepages-*/shmem_enabled", 0, NULL, &g))
		return false;
	bool found = false;
	for (size_t i = 0; i < g.gl_pathc && !found; i++)
		if (thp_setting(g.gl_pathv[i], v, sizeof v) && strcmp(v, "never") && strcmp(v, "inherit")) {
			snprintf(on, len, "%s=%s", g.gl_pathv[i] + strlen(THP_DIR "/"), v);
			found = true;
		}
	globfree(&g);
	return found;
}

/* The huge= option of the tmpfs mount holding fd, into on; false if it
 * has none or "never" (/proc/self/fdinfo names the mount, mountinfo its
 * options). */
static bool tmpfs_thp_on(int fd, char *on, size_t len)
{
	char path[64], line[1024];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	long mnt_id = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "mnt_id: %ld", &mnt_id) == 1)
			break;
	if (f)
		fclose(f);
	f = mnt_id >= 0 ? fopen("/proc/self/mountinfo", "r") : NULL;
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f)) {
		long id;
		const char *huge = strstr(line, " - ") ? strstr(strstr(line, " - "), "huge=") : NULL;
		if (sscanf(line, "%ld", &id) != 1 || id != mnt_id || !huge)
			continue;
		size_t n = strcspn(huge, ", \n");
		found = strncmp(huge, "huge=never", n) != 0 || n != strlen("huge=never");
		if (found)
			snprintf(on, len, "the tmpfs mount's %.*s", (int)n, huge);
	}
	if (f)
		fclose(f);
	return found;
}

/* Whether every mapping of [addr, addr + size) in process pid is marked
 * MADV_NOHUGEPAGE ("nh" in /proc/PID/smaps' VmFlags). */
static bool mapped_nohugepage(pid_t pid, uint64_t addr, uint64_t size)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool inside = false, all = true;
	uint64_t covered = 0;
	while (all && fgets(line, sizeof line, f)) {
		uint64_t lo, hi;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " ", &lo, &hi) == 2) {  /* a mapping's first line */
			inside = lo < addr + size && hi > addr;
			if (inside)
				covered += (hi < addr + size ? hi : addr + size) - (lo > addr ? lo : addr);
		} else if (inside && !strncmp(line, "VmFlags:", 8)) {
			all = strstr(line, " nh") != NULL;
		}
	}
	fclose(f);
	return all && covered == size;
}

const char *shmem_thp_blocker(pid_t pid, const struct region *r, char *why, size_t len)
{
	char on[160], top[32] = "never";
	bool memfd = r->backing == MEMSRV__BACKING__BACKING_MEMFD;
	if (!(memfd ? memfd_thp_on(on, sizeof on) : tmpfs_thp_on(r->fd, on, sizeof on)))
		return NULL;
	thp_setting(THP_DIR "/shmem_enabled", top, sizeof top);
	if (!strcmp(top, "force")) {
		snprintf(why, len, "shmem transparent huge pages are forced (shmem_enabled=force, which overrides "
			 "MADV_NOHUGEPAGE): a 4 KiB hole punched into a huge folio may be zeroed, not freed");
		return why;
	}
	if (!mapped_nohugepage(pid, r->host_addr, r->size)) {
		snprintf(why, len, "shmem transparent huge pages are on (%s) and the VMM's mapping of region 0x%" PRIx64
			 " is not marked MADV_NOHUGEPAGE (libmemsrv marks it): a 4 KiB hole punched into a huge folio "
			 "may be zeroed, not freed", on, r->host_addr);
		return why;
	}
	return NULL;
}
