/* term: a terminal drawn on in place (term.h). */
#include "term.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* The alternate screen (the shell's screen comes back as it was), no
 * cursor, no line wrap (a line a little too long for the width is cut, not
 * wrapped onto the next, which would scroll the frame). */
#define SCREEN_TAKE "\033[?1049h\033[?25l\033[?7l\033[H\033[2J"
#define SCREEN_GIVE "\033[?7h\033[?25h\033[?1049l"
#define HOME        "\033[H"
#define CLEAR_EOL   "\033[K"
#define CLEAR_BELOW "\033[J"

static volatile sig_atomic_t quit_requested, redraw_requested, suspend_requested;
static int wake_pipe[2] = { -1, -1 };  /* the handlers wake term_wait's poll */
static bool entered, screen_taken, keys_raw, keys_open;
static struct termios saved_termios;

static const int handled_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGTSTP };
#define N_HANDLED (sizeof handled_signals / sizeof handled_signals[0])
static struct sigaction saved_actions[N_HANDLED];

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void on_signal(int sig)
{
	int saved_errno = errno;
	if (sig == SIGWINCH)
		redraw_requested = 1;
	else if (sig == SIGTSTP)
		suspend_requested = 1;
	else
		quit_requested = 1;
	if (write(wake_pipe[1], "", 1) < 0) {
		/* full: term_wait is woken already */
	}
	errno = saved_errno;
}

/* The screen and the keys, apart from the signal handlers: Ctrl-Z gives
 * back and takes again these alone. */
static void screen_take(void)
{
	if (keys_open && tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
		struct termios raw = saved_termios;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);  /* ISIG stays: Ctrl-C is SIGINT */
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		keys_raw = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	}
	write_all(STDOUT_FILENO, SCREEN_TAKE, strlen(SCREEN_TAKE));
	screen_taken = true;
}

static void screen_give(void)
{
	if (screen_taken)
		write_all(STDOUT_FILENO, SCREEN_GIVE, strlen(SCREEN_GIVE));
	if (keys_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
	screen_taken = keys_raw = false;
}

int term_enter(void)
{
	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	struct sigaction sa = { .sa_handler = on_signal };  /* no SA_RESTART: poll returns */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < N_HANDLED; i++) {
		if (sigaction(handled_signals[i], &sa, &saved_actions[i]) < 0) {
			int err = errno;
			while (i--)
				sigaction(handled_signals[i], &saved_actions[i], NULL);
			close(wake_pipe[0]);
			close(wake_pipe[1]);
			return -err;
		}
	}
	entered = true;
	keys_open = isatty(STDIN_FILENO);
	screen_take();
	return 0;
}

void term_leave(void)
{
	if (!entered)
		return;
	screen_give();
	for (size_t i = 0; i < N_HANDLED; i++)
		sigaction(handled_signals[i], &saved_actions[i], NULL);
	close(wake_pipe[0]);
	close(wake_pipe[1]);
	wake_pipe[0] = wake_pipe[1] = -1;
	entered = false;
}

void term_size(unsigned *cols, unsigned *rows)
{
	struct winsize ws;
	bool known = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row;
	*cols = known ? ws.ws_col : 80;
	*rows = known ? ws.ws_row : 24;
}

/* Stops as Ctrl-Z would have with the terminal given back, and takes it
 * again once continued (fg). */
static void suspend(void)
{
	screen_give();
	struct sigaction dfl = { .sa_handler = SIG_DFL }, ours;
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGTSTP, &dfl, &ours);
	raise(SIGTSTP);  /* returns once continued */
	sigaction(SIGTSTP, &ours, NULL);
	screen_take();
}

/* Reads the keys typed: true if one of them is q. */
static bool read_quit_key(void)
{
	char keys[64];
	ssize_t n = read(STDIN_FILENO, keys, sizeof keys);
	if (n <= 0) {
		if (n == 0 || (errno != EINTR && errno != EAGAIN))
			keys_open = false;  /* no more keys: stop watching */
		return false;
	}
	return memchr(keys, 'q', (size_t)n) || memchr(keys, 'Q', (size_t)n);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum term_event term_wait(int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		if (quit_requested)
			return TERM_QUIT;
		if (suspend_requested) {
			suspend_requested = 0;
			suspend();
			redraw_requested = 1;
		}
		if (redraw_requested) {
			redraw_requested = 0;
			return TERM_REDRAW;
		}
		struct pollfd fds[2] = {
			{ .fd = wake_pipe[0], .events = POLLIN },
			{ .fd = keys_open ? STDIN_FILENO : -1, .events = POLLIN },
		};
		int64_t left = deadline - now_ms();
		int n = left > 0 ? poll(fds, 2, (int)left) : 0;
		if (n == 0)
			return TERM_TIMEOUT;
		if (n < 0)
			continue;  /* EINTR: a signal; its flag says which */
		if (fds[0].revents) {
			char drain[64];
			while (read(wake_pipe[0], drain, sizeof drain) > 0)
				;
		}
		if (fds[1].revents && read_quit_key())
			return TERM_QUIT;
	}
}

int term_draw(const char *text, size_t len)
{
	size_t lines = 1;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	size_t cap = len + lines * (sizeof CLEAR_EOL + 2) + sizeof HOME + sizeof CLEAR_BELOW;
	char *out = malloc(cap);
	if (!out)
		return -ENOMEM;
	size_t o = 0;
	memcpy(out + o, HOME, strlen(HOME));
	o += strlen(HOME);
	for (size_t i = 0; i <= len; i++) {
		if (i == len || text[i] == '\n') {
			/* each line clears what the last frame left right of it */
			memcpy(out + o, CLEAR_EOL, strlen(CLEAR_EOL));
			o += strlen(CLEAR_EOL);
			if (i < len) {
				memcpy(out + o, "\r\n", 2);
				o += 2;
			}
		} else {
			out[o++] = text[i];
		}
	}
	memcpy(out + o, CLEAR_BELOW, strlen(CLEAR_BELOW));
	o += strlen(CLEAR_BELOW);
	int ret = write_all(STDOUT_FILENO, out, o);
	free(out);
	return ret;
}
