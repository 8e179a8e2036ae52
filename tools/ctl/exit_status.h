/* memsrv-ctl's exit statuses besides 0 (done) and EX_USAGE (64). */
#ifndef MEMSRV_CTL_EXIT_STATUS_H
#define MEMSRV_CTL_EXIT_STATUS_H

enum {
	EXIT_REFUSED = 1,   /* the server answered with an Error */
	EXIT_NO_SERVER = 2, /* cannot connect, or no usable reply */
};

#endif
