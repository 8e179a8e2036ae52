/* memsrv: the memory server daemon.  Parses options (each a row of the
 * settings table, proto/settings.h), then --config's file for the settings
 * the command line did not give, and runs the server. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_file.h"
#include "log.h"
#include "remote_setup.h"
#include "server.h"
#include "setting_hooks.h"
#include "units.h"

/* "  --cache-size SIZE  memory the compressed cache ... (default none)" */
static void usage_option(FILE *out, const struct setting *s)
{
	char left[48], values[128], def[64];
	snprintf(left, sizeof left, "--%s %s", s->option, s->arg);
	setting_describe_values(s, values, sizeof values);
	setting_describe_default(s, def, sizeof def);
	fprintf(out, "  %-24s %s\n", left, s->doc);
	if (s->type == SETTING_STRING)
		fprintf(out, "  %-24s %sdefault: %s\n", "", s->repeatable ? "repeatable; " : "", def);
	else
		fprintf(out, "  %-24s %s; default: %s\n", "", values, def);
}

static void usage(FILE *out)
{
	int col = fprintf(out, "usage: memsrv");
	for (int i = 0; i < SETTINGS_COUNT; i++) {
		const struct setting *s = &settings[i];
		if (!s->option || s->hidden)
			continue;
		char word[64];
		int n = snprintf(word, sizeof word, " [--%s %s]%s", s->option, s->arg, s->repeatable ? "..." : "");
		if (col + n > 96)
			col = fprintf(out, "\n            ");
		col += fprintf(out, "%s", word);
	}
	fprintf(out, "\n\nServes the guest RAM of the VMs that attach to its socket: faults, eviction, quotas.\n"
		     "A SIZE is digits with an optional K, M or G (KiB, MiB, GiB).\n\n");
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (settings[i].option && !settings[i].hidden)
			usage_option(out, &settings[i]);
	fprintf(out, "  %-24s %s\n", "--config FILE", "settings, one `option = value` line each (the long options' names); "
		     "the command line wins");
	fprintf(out, "  --help, --version\n");
}

enum { OPT_HELP = 'h', OPT_VERSION = 'V', OPT_CONFIG = 255, OPT_SETTING = 256 /* + enum setting_id */ };

/* One long option per row of the settings table that has one. */
static void fill_options(struct option *opts)
{
	size_t n = 0;
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (settings[i].option)
			opts[n++] = (struct option){ settings[i].option, required_argument, NULL, OPT_SETTING + i };
	opts[n++] = (struct option){ "config", required_argument, NULL, OPT_CONFIG };
	opts[n++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	opts[n++] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	opts[n] = (struct option){ 0 };
}

/* Short forms: -s PATH, -l LEVEL. */
static const struct setting *short_option(int c)
{
	return c == 's' ? &settings[SETTING_SOCKET] : c == 'l' ? &settings[SETTING_LOG_LEVEL] : NULL;
}

/* The --swap and --swap-dir files, created once every option is known (a
 * usage error must not leave files behind).  0, or memsrv's exit status. */
static int create_swaps(const struct memsrv_options *o, struct swapfile **swap)
{
	for (int i = 0; i < o->n_swaps; i++) {
		/* FILE:SIZE, or DIR[:SIZE] */
		const char *spec = o->swaps[i].spec, *opt = o->swaps[i].in_dir ? "swap-dir" : "swap";
		const char *colon = strrchr(spec, ':');
		char path[4096], why[256] = "";
		uint64_t size = 4ull << 30;
		snprintf(path, sizeof path, "%.*s", colon ? (int)(colon - spec) : (int)strlen(spec), spec);
		int err = colon ? parse_size(colon + 1, &size) : 0;
		if ((!o->swaps[i].in_dir && !colon) || err) {
			fprintf(stderr, "memsrv: --%s: '%s' is not %s%s%s\n", opt, spec,
				o->swaps[i].in_dir ? "DIR[:SIZE]" : "FILE:SIZE", err ? ": SIZE: " : "",
				err ? parse_size_why(err) : "");
			swapfile_destroy(*swap);
			return 64;
		}
		if (!*swap && !(*swap = swapfile_create()))
			return 1;
		if (o->cfg.state_dir) {
			/* kept for the next memsrv, under a name it finds again */
			if (o->swaps[i].in_dir) {
				size_t len = strlen(path);
				snprintf(path + len, sizeof path - len, "/memsrv-swap-%d", i);
			}
			err = swapfile_add_kept(*swap, path, size, why, sizeof why);
		} else {
			err = o->swaps[i].in_dir ? swapfile_add_in_dir(*swap, path, size, why, sizeof why)
						 : swapfile_add(*swap, path, size, why, sizeof why);
		}
		if (err) {
			fprintf(stderr, "memsrv: --%s %s: %s\n", opt, spec, why[0] ? why : strerror(-err));
			swapfile_destroy(*swap);
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct option opts[SETTINGS_COUNT + 4];
	fill_options(opts);
	struct memsrv_options o;
	settings_options_init(&o);
	bool given[SETTINGS_COUNT] = { false };
	const char *config = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "s:l:h", opts, NULL)) != -1) {
		const struct setting *s = c >= OPT_SETTING ? &settings[c - OPT_SETTING] : short_option(c);
		if (s) {
			char why[256];
			if (settings_apply_option(&o, s, optarg, why, sizeof why)) {
				fprintf(stderr, "memsrv: --%s: %s\n", s->option, why);
				return 64;
			}
			given[setting_id(s)] = true;
			continue;
		}
		switch (c) {
		case OPT_CONFIG:
			config = optarg;
			break;
		case OPT_HELP:
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("memsrv %s\n", MEMSRV_VERSION);
			return 0;
		default:
			usage(stderr);
			return 64;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "memsrv: unexpected argument '%s'\n", argv[optind]);
		return 64;
	}
	char why[1024];
	if (config && config_file_apply(&o, config, given, why, sizeof why)) {
		fprintf(stderr, "memsrv: --config %s\n", why);
		return 64;
	}
	struct server_config cfg = o.cfg;
	struct swapfile *swap = NULL;
	int status = create_swaps(&o, &swap);
	if (status)
		return status;
	cfg.store.swap = swap;
	/* signals go to the server's signalfd; VM threads inherit the mask */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* after the mask: the tier's thread must not take SIGTERM */
	struct remote_tier *remote = NULL;
	o.remote.state_dir = cfg.state_dir;
	int rret = remote_setup_open(&o.remote, &remote, why, sizeof why);
	if (rret) {
		pr_err("%s", why);
		swapfile_destroy(swap);
		return rret == -EINVAL ? 64 : 1;
	}
	cfg.store.remote = remote;

	struct server srv;
	const char *socket_path = cfg.socket_path;
	int ret = server_open(&srv, &cfg);
	if (ret) {
		if (srv.listen_failed || srv.state_failed || srv.peers_failed || srv.metrics_failed) {
			/* those said why already */
		} else if (ret == -EADDRINUSE)
			pr_err("another memsrv is already listening on %s", socket_path);
		else if (ret == -EEXIST)
			pr_err("%s exists and is not a socket: refusing to replace it", socket_path);
		else
			pr_err("cannot listen on %s: %s", socket_path, strerror(-ret));
		server_close(&srv);
		remote_setup_close(remote);
		swapfile_destroy(swap);
		return 1;
	}
	ret = server_run(&srv);
	server_close(&srv);
	remote_setup_close(remote);
	if (swap && !srv.state_left)
		swapfile_remove_kept(swap);
	swapfile_destroy(swap);
	if (ret) {
		pr_err("server loop failed: %s", strerror(-ret));
		return 1;
	}
	return 0;
}
