/* access: peer credentials against memsrv's admins and its socket group. */
#include "access.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether the process holds gid among its supplementary groups: 1, 0, or
 * -errno when memsrv cannot tell (EMFILE: out of fds), which must not read
 * as "not a member".  Read from /proc rather than the group database: what
 * counts is what the process has now, not what it would get at its next
 * login. */
static int process_in_group(pid_t pid, gid_t gid)
{
	char path[64], line[4096];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT || errno == ESRCH ? 0 : -errno;  /* gone: nobody to let in */
	bool groups = false, found = false;
	while (!groups && fgets(line, sizeof line, f))
		groups = !strncmp(line, "Groups:", 7);
	fclose(f);
	char *end = line + 7;
	for (char *p = end; groups && !found; p = end) {
		unsigned long g = strtoul(p, &end, 10);
		if (end == p)
			break;  /* the end of the list */
		found = (gid_t)g == gid;
	}
	return found;
}

int access_role_of(const struct access_config *cfg, const struct ucred *peer, enum access_role *role)
{
	*role = ACCESS_NONE;
	if (peer->uid == 0 || peer->uid == cfg->admin_uid) {
		*role = ACCESS_ADMIN;
		return 0;
	}
	if (!cfg->has_group)
		return 0;
	int in = peer->gid == cfg->group ? 1 : process_in_group(peer->pid, cfg->group);
	if (in < 0)
		return in;
	*role = in ? ACCESS_MEMBER : ACCESS_NONE;
	return 0;
}

int access_prepare_socket(const struct access_config *cfg, const char *socket_path)
{
	if (cfg->has_group && chown(socket_path, (uid_t)-1, cfg->group))
		return -errno;
	if (chmod(socket_path, 0660))
		return -errno;
	return 0;
}

int access_parse_group(const char *name, gid_t *out)
{
	char *end;
	unsigned long n = strtoul(name, &end, 10);
	if (*name && !*end) {
		*out = (gid_t)n;
		return 0;
	}
	struct group *g = getgrnam(name);
	if (!g)
		return -ENOENT;
	*out = g->gr_gid;
	return 0;
}
