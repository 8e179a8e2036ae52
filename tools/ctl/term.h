/* term: a terminal drawn on in place, for memsrv-ctl top.
 *
 * Plain ANSI (VT100/xterm) escapes, no curses: the alternate screen, the
 * cursor hidden, each frame painted over the last from the top left corner.
 * Keys are read unbuffered from stdin when it is a terminal; Ctrl-C stays
 * a signal.  SIGINT, SIGTERM and SIGHUP ask to quit, SIGWINCH to redraw,
 * and Ctrl-Z gives the terminal back until the process is continued.  One
 * terminal per process: the state is global, as signal handlers need it.
 */
#ifndef MEMSRV_CTL_TERM_H
#define MEMSRV_CTL_TERM_H

#include <stddef.h>

enum term_event {
	TERM_TIMEOUT, /* the time given passed */
	TERM_QUIT,    /* q, Ctrl-C, SIGTERM, SIGHUP */
	TERM_REDRAW,  /* the terminal's size changed, or it came back after Ctrl-Z */
};

/* Takes over stdout's terminal.  0, or -errno (no signal handler, no pipe). */
int term_enter(void);
/* Gives the terminal back as it was: main screen, cursor, line mode.
 * Harmless when not entered. */
void term_leave(void);
/* Columns and rows of stdout's terminal (80x24 when it does not say). */
void term_size(unsigned *cols, unsigned *rows);
/* Waits for a key, a signal or timeout_ms, whichever comes first. */
enum term_event term_wait(int timeout_ms);
/* Paints a frame over the last one: text is lines joined by '\n', each
 * already fitting the width, no more of them than rows.  0, or -errno of
 * the write (the terminal went away). */
int term_draw(const char *text, size_t len);

#endif
