/* remote_setup: the remote tier from memsrv's options (remote_setup.h). */
#include "remote_setup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "remote_alive.h"

#define AUTH_MAX 512

/* What the tier's configuration points into: alive as long as the tier. */
static struct {
	char seeds[RC_MAX_SEEDS][256];
	char user[AUTH_MAX], password[AUTH_MAX];
	char node_id[REMOTE_NODE_ID_MAX];
	char token[REMOTE_TOKEN_MAX];
} kept;

/* Who holds the node id: the host and the state dir, the same for a
 * memsrv restarted on it (which takes its id back at once); without one,
 * the host and pid. */
static void make_token(const char *state_dir)
{
	char host[64] = "?", dir[PATH_MAX];
	gethostname(host, sizeof host);
	host[sizeof host - 1] = 0;
	if (state_dir)
		snprintf(kept.token, sizeof kept.token, "%.60s state-dir %.180s", host,
			 realpath(state_dir, dir) ? dir : state_dir);
	else
		snprintf(kept.token, sizeof kept.token, "%.60s pid %d", host, (int)getpid());
}

/* "HOST:PORT,HOST:PORT" into cfg's seeds. */
static int split_seeds(const char *text, struct rc_config *cfg, char *why, size_t len)
{
	cfg->n_seeds = 0;
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, ",");
		if (!n || n >= sizeof kept.seeds[0]) {
			snprintf(why, len, "--remote: '%s' is not HOST:PORT[,HOST:PORT...]", text);
			return -EINVAL;
		}
		if (cfg->n_seeds == RC_MAX_SEEDS) {
			snprintf(why, len, "--remote: more than %d seeds", RC_MAX_SEEDS);
			return -EINVAL;
		}
		snprintf(kept.seeds[cfg->n_seeds], sizeof kept.seeds[0], "%.*s", (int)n, p);
		cfg->seeds[cfg->n_seeds] = kept.seeds[cfg->n_seeds];
		cfg->n_seeds++;
		p += n + (p[n] == ',');
	}
	if (!cfg->n_seeds) {
		snprintf(why, len, "--remote: no seed given");
		return -EINVAL;
	}
	return 0;
}

/* The file's one line: PASSWORD, or USER PASSWORD.  Like a key, it must
 * not be readable by others. */
static int read_auth(const char *path, struct rc_config *cfg, char *why, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		int err = errno;
		snprintf(why, len, "--remote-auth: %s: %s", path, strerror(err));
		if (fd >= 0)
			close(fd);
		return -err;
	}
	char buf[2 * AUTH_MAX];
	ssize_t n = S_ISREG(st.st_mode) && !(st.st_mode & 077) ? read(fd, buf, sizeof buf - 1) : -1;
	close(fd);
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		snprintf(why, len, "--remote-auth: %s is %s", path,
			 !S_ISREG(st.st_mode) ? "not a regular file" : "readable by its group or others: chmod 600 it");
		return -EPERM;
	}
	if (n < 0) {
		snprintf(why, len, "--remote-auth: %s: %s", path, strerror(errno));
		return -EIO;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	char *space = strchr(buf, ' ');
	const char *user = space ? buf : NULL, *password = space ? space + 1 : buf;
	if (space)
		*space = 0;
	size_t plen = strlen(password), ulen = user ? strlen(user) : 0;
	if (!plen || strchr(password, ' ') || plen >= AUTH_MAX || ulen >= AUTH_MAX || (user && !ulen)) {
		snprintf(why, len, "--remote-auth: %s holds no line PASSWORD or USER PASSWORD", path);
		return -EINVAL;
	}
	memcpy(kept.password, password, plen + 1);
	cfg->password = kept.password;
	if (user) {
		memcpy(kept.user, user, ulen + 1);
		cfg->user = kept.user;
	}
	return 0;
}

int remote_setup_open(const struct remote_options *o, struct remote_tier **out, char *why, size_t len)
{
	*out = NULL;
	if (!o->seeds)
		return 0;
	struct remote_tier_config cfg = { 0 };
	int ret = split_seeds(o->seeds, &cfg.rc, why, len);
	if (!ret && o->auth_file)
		ret = read_auth(o->auth_file, &cfg.rc, why, len);
	if (ret)
		return ret;
	if (o->node_id) {
		snprintf(kept.node_id, sizeof kept.node_id, "%s", o->node_id);
	} else if (gethostname(kept.node_id, sizeof kept.node_id) || !kept.node_id[0]) {
		snprintf(why, len, "--node-id: not given, and the hostname cannot be had");
		return -EINVAL;
	}
	cfg.node_id = kept.node_id;
	make_token(o->state_dir);
	cfg.token = kept.token;
	char tier_why[512];
	ret = remote_tier_open(out, &cfg, tier_why, sizeof tier_why);
	if ((ret == -EINVAL || ret == -EADDRINUSE) && strstr(tier_why, "node id"))
		snprintf(why, len, "--node-id: %s", tier_why);
	else if (ret)
		snprintf(why, len, "--remote %s: %s", o->seeds, tier_why);
	else
		pr_info("remote tier: the Redis Cluster at %s, as node %s", o->seeds, kept.node_id);
	return ret;
}

void remote_setup_close(struct remote_tier *rt)
{
	remote_tier_close(rt);
}
