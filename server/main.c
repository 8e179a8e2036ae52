/* memsrv: the memory server daemon.  Parses options and runs the server. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "server.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: memsrv [--socket PATH] [--log-level LEVEL] [--spin-us N]\n"
		"\n"
		"Serves the guest RAM of the VMs that attach to PATH: faults, eviction, quotas.\n"
		"\n"
		"  --socket PATH      Unix socket to listen on (default %s)\n"
		"  --log-level LEVEL  error, warn, info (default) or debug\n"
		"  --spin-us N        busy-poll a VM's uffd N us after each fault (default %llu, 0: off)\n"
		"  --help, --version\n",
		SERVER_DEFAULT_SOCKET, (unsigned long long)(fault_spin_ns / 1000));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "spin-us", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *socket_path = SERVER_DEFAULT_SOCKET;
	int c;
	while ((c = getopt_long(argc, argv, "s:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
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
	/* signals go to the server's signalfd; VM threads inherit the mask */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct server srv;
	int ret = server_open(&srv, socket_path);
	if (ret) {
		if (ret == -EADDRINUSE)
			pr_err("another memsrv is already listening on %s", socket_path);
		else if (ret == -EEXIST)
			pr_err("%s exists and is not a socket: refusing to replace it", socket_path);
		else
			pr_err("cannot listen on %s: %s", socket_path, strerror(-ret));
		server_close(&srv);
		return 1;
	}
	ret = server_run(&srv);
	server_close(&srv);
	if (ret) {
		pr_err("server loop failed: %s", strerror(-ret));
		return 1;
	}
	return 0;
}
