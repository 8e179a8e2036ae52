/* memsrv: the memory server daemon.  Parses options and runs the server. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mappings.h"
#include "units.h"
#include "server.h"
#include "vm.h"
#include <stdint.h>

static void usage(FILE *out)
{
	fprintf(out,
		"usage: memsrv [--socket PATH] [--cache-size SIZE] [--codec lz4|zstd] [--incompressible N]\n"
		"              [--swap FILE:SIZE]... [--swap-dir DIR[:SIZE]]... [--node-limit SIZE] [--idle-tax PCT]\n"
		"              [--socket-group GROUP] [--max-sessions-per-uid N] [--state-dir DIR]\n"
		"              [--log-level LEVEL] [--spin-us N] [--mapping-scan-ms N]\n"
		"\n"
		"Serves the guest RAM of the VMs that attach to PATH: faults, eviction, quotas.\n"
		"\n"
		"  --socket PATH      Unix socket to listen on (default %s), mode 0660\n"
		"  --socket-group GROUP  the socket's group: its members may attach VMs and read state\n"
		"                     (list, info, stats, check); steering stays with root and memsrv's uid\n"
		"  --max-sessions-per-uid N  connections one uid may hold open (default 256)\n"
		"  --cache-size SIZE  memory the compressed cache of all VMs may hold (K/M/G; default: no budget)\n"
		"  --codec NAME       compression of VMs that do not choose: lz4 (default) or zstd\n"
		"  --incompressible N pages compressing to more than N bytes are kept raw (default 3000)\n"
		"  --swap FILE:SIZE   a swap file memsrv creates (repeatable); the cache's coldest pages go there\n"
		"  --swap-dir DIR[:SIZE]  the same, named by memsrv inside DIR (default SIZE 4G)\n"
		"  --node-limit SIZE  all VMs' resident memory plus memsrv's own (default: none)\n"
		"  --idle-tax PCT     an idle VM's shares count PCT%% less (default 75)\n"
		"  --state-dir DIR    keep page tables and the compressed cache in DIR (tmpfs) and the swap\n"
		"                     files across runs: a memsrv started again after a crash serves every\n"
		"                     page the dead one held, and the VMs' libmemsrv reconnects\n"
		"  --log-level LEVEL  error, warn, info (default) or debug\n"
		"  --spin-us N        busy-poll a VM's uffd N us after each fault (default %llu, 0: off)\n"
		"  --mapping-scan-ms N  look for other processes mapping guest RAM every N ms (default %u)\n"
		"  --help, --version\n",
		SERVER_DEFAULT_SOCKET, (unsigned long long)(fault_spin_ns / 1000), MAPPINGS_DEFAULT_SCAN_MS);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "spin-us", required_argument, NULL, 'S' },
		{ "mapping-scan-ms", required_argument, NULL, 'P' },
		{ "cache-size", required_argument, NULL, 'c' },
		{ "codec", required_argument, NULL, 'C' },
		{ "incompressible", required_argument, NULL, 'I' },
		{ "debug-hash-bits", required_argument, NULL, 'H' },  /* tests: force hash collisions */
		{ "swap", required_argument, NULL, 'w' },
		{ "node-limit", required_argument, NULL, 'N' },
		{ "idle-tax", required_argument, NULL, 'T' },
		{ "swap-dir", required_argument, NULL, 'W' },
		{ "socket-group", required_argument, NULL, 'g' },
		{ "max-sessions-per-uid", required_argument, NULL, 'M' },
		{ "state-dir", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct server_config cfg = { .socket_path = SERVER_DEFAULT_SOCKET, .default_codec = CODEC_LZ4, .idle_tax = 0.75 };
	struct swapfile *swap = NULL;
	enum { MAX_SWAPS = 16 };
	struct { const char *spec; bool in_dir; } swaps[MAX_SWAPS];
	int n_swaps = 0;
	int c, err;
	while ((c = getopt_long(argc, argv, "s:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			cfg.socket_path = optarg;
			break;
		case 'g':
			if (access_parse_group(optarg, &cfg.access.group)) {
				fprintf(stderr, "memsrv: --socket-group: no group named '%s'\n", optarg);
				return 64;
			}
			cfg.access.has_group = true;
			break;
		case 'M': {
			uint64_t n;
			if (parse_size(optarg, &n) || n < 1 || n > 65536) {
				fprintf(stderr, "memsrv: --max-sessions-per-uid: '%s' is not 1..65536\n", optarg);
				return 64;
			}
			cfg.access.max_sessions_per_uid = (unsigned)n;
			break;
		}
		case 'D':
			cfg.state_dir = optarg;
			break;
		case 'c':
			if ((err = parse_size(optarg, &cfg.store.cache_budget))) {
				fprintf(stderr, "memsrv: --cache-size: '%s' is not a size like 512M: %s\n", optarg,
					parse_size_why(err));
				return 64;
			}
			break;
		case 'N':
			if ((err = parse_size(optarg, &cfg.node_limit))) {
				fprintf(stderr, "memsrv: --node-limit: '%s' is not a size like 4G: %s\n", optarg,
					parse_size_why(err));
				return 64;
			}
			break;
		case 'T': {
			uint64_t pct;
			if (parse_size(optarg, &pct) || pct > 99) {
				fprintf(stderr, "memsrv: --idle-tax: '%s' is not a percentage 0..99\n", optarg);
				return 64;
			}
			cfg.idle_tax = (double)pct / 100;
			break;
		}
		case 'C':
			if (codec_parse(optarg, &cfg.default_codec)) {
				fprintf(stderr, "memsrv: --codec: '%s' is neither lz4 nor zstd\n", optarg);
				return 64;
			}
			break;
		case 'I': {
			uint64_t n;
			if (parse_size(optarg, &n) || n < 64 || n > 4096) {
				fprintf(stderr, "memsrv: --incompressible: '%s' is not 64..4096\n", optarg);
				return 64;
			}
			cfg.store.incompressible_bytes = (uint32_t)n;
			break;
		}
		case 'w':
		case 'W':
			/* created once every option is known: a later usage error
			 * must not leave files behind */
			if (n_swaps == MAX_SWAPS) {
				fprintf(stderr, "memsrv: at most %d --swap/--swap-dir\n", MAX_SWAPS);
				return 64;
			}
			swaps[n_swaps].in_dir = c == 'W';
			swaps[n_swaps++].spec = optarg;
			break;
		case 'H': {
			uint64_t n;
			if (parse_size(optarg, &n) || n > 63) {
				fprintf(stderr, "memsrv: --debug-hash-bits: '%s' is not 0..63\n", optarg);
				return 64;
			}
			cfg.store.hash_bits = (unsigned)n;
			break;
		}
		case 'l':
			if (log_parse_level(optarg)) {
				fprintf(stderr, "memsrv: --log-level: unknown level '%s'\n", optarg);
				return 64;
			}
			break;
		case 'S': {
			char *end;
			unsigned long long us = strtoull(optarg, &end, 10);
			if (*end || us > 1000000) {
				fprintf(stderr, "memsrv: --spin-us: '%s' is not 0..1000000\n", optarg);
				return 64;
			}
			fault_spin_ns = us * 1000;
			break;
		}
		case 'P': {
			char *end;
			unsigned long ms = strtoul(optarg, &end, 10);
			if (*end || ms < 10 || ms > 60000) {
				fprintf(stderr, "memsrv: --mapping-scan-ms: '%s' is not 10..60000\n", optarg);
				return 64;
			}
			cfg.mapping_scan_ms = (unsigned)ms;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("memsrv 0.1.0\n");
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
	for (int i = 0; i < n_swaps; i++) {
		/* FILE:SIZE, or DIR[:SIZE] */
		const char *spec = swaps[i].spec, *opt = swaps[i].in_dir ? "swap-dir" : "swap";
		const char *colon = strrchr(spec, ':');
		char path[4096], why[256] = "";
		uint64_t size = 4ull << 30;
		snprintf(path, sizeof path, "%.*s", colon ? (int)(colon - spec) : (int)strlen(spec), spec);
		err = colon ? parse_size(colon + 1, &size) : 0;
		if ((!swaps[i].in_dir && !colon) || err) {
			fprintf(stderr, "memsrv: --%s: '%s' is not %s%s%s\n", opt, spec,
				swaps[i].in_dir ? "DIR[:SIZE]" : "FILE:SIZE", err ? ": SIZE: " : "",
				err ? parse_size_why(err) : "");
			swapfile_destroy(swap);
			return 64;
		}
		if (!swap && !(swap = swapfile_create()))
			return 1;
		if (cfg.state_dir) {
			/* kept for the next memsrv, under a name it finds again */
			if (swaps[i].in_dir) {
				size_t len = strlen(path);
				snprintf(path + len, sizeof path - len, "/memsrv-swap-%d", i);
			}
			err = swapfile_add_kept(swap, path, size, why, sizeof why);
		} else {
			err = swaps[i].in_dir ? swapfile_add_in_dir(swap, path, size, why, sizeof why)
					      : swapfile_add(swap, path, size, why, sizeof why);
		}
		if (err) {
			fprintf(stderr, "memsrv: --%s %s: %s\n", opt, spec, why[0] ? why : strerror(-err));
			swapfile_destroy(swap);
			return 1;
		}
		cfg.store.swap = swap;
	}
	/* signals go to the server's signalfd; VM threads inherit the mask */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct server srv;
	const char *socket_path = cfg.socket_path;
	int ret = server_open(&srv, &cfg);
	if (ret) {
		if (ret == -EADDRINUSE)
			pr_err("another memsrv is already listening on %s", socket_path);
		else if (ret == -EEXIST)
			pr_err("%s exists and is not a socket: refusing to replace it", socket_path);
		else if (!srv.state_failed)  /* that one said why already */
			pr_err("cannot listen on %s: %s", socket_path, strerror(-ret));
		server_close(&srv);
		swapfile_destroy(swap);
		return 1;
	}
	ret = server_run(&srv);
	server_close(&srv);
	if (swap && !srv.state_left)
		swapfile_remove_kept(swap);
	swapfile_destroy(swap);
	if (ret) {
		pr_err("server loop failed: %s", strerror(-ret));
		return 1;
	}
	return 0;
}
