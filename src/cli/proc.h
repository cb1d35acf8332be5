/* Running a command: spawning, waiting with a timeout, forwarding signals.
 *
 * Signals arrive through a self-pipe: the handlers for SIGINT, SIGTERM,
 * SIGHUP and SIGCHLD only write one byte to it, and everything else happens
 * in ordinary code that poll()s the pipe. That one mechanism makes both
 * "wait for the child, but at most T" and "sleep before the next attempt"
 * wake up at once when resil is told to stop. */
#ifndef RESIL_CLI_PROC_H
#define RESIL_CLI_PROC_H

#include "resil/time.h"

/* Install the signal handlers and create the self-pipe. Call once, before
 * anything else here. Signals that were ignored when resil started (as
 * under nohup, or `cmd &` in a script) stay ignored, for resil and the
 * command alike. Returns 0, or -1 with errno set. */
int proc_init(void);

typedef enum proc_end {
  PROC_EXITED = 0,     /* exited by itself: exit_code */
  PROC_SIGNALED = 1,   /* died from a signal: signo */
  PROC_TIMED_OUT = 2,  /* stopped by resil because its time ran out */
  PROC_EXEC_FAILED = 3 /* could not be started: exec_errno */
} proc_end;

typedef struct proc_result {
  proc_end end;
  /* What resil reports for this attempt: the exit code; 128 + N for signal
   * N; 124 when timed out; 127 when not found; 126 when not executable. */
  int status;
  int exit_code;  /* PROC_EXITED */
  int signo;      /* PROC_SIGNALED */
  int exec_errno; /* PROC_EXEC_FAILED */
  int escalated;  /* PROC_TIMED_OUT: it outlived SIGTERM and got SIGKILL */
  /* The first SIGINT, SIGTERM or SIGHUP resil received while the command ran
   * (it was passed on to the command), or 0. */
  int interrupt;
  resil_ns elapsed; /* from start to end, on the monotonic clock */
} proc_result;

/* Run argv[0] (searched in PATH, like execvp) with argv. The command
 * inherits stdin, stdout, stderr, the environment, and the signal mask and
 * ignored signals resil started with, so it behaves as if run directly.
 *
 * When timeout passes (RESIL_NS_MAX: never), the command gets SIGTERM, and
 * SIGKILL if it is still running kill_after later. Signals go to the
 * command's process only: a command that starts children of its own should
 * pass them on (in `sh -c`, `exec` the last command).
 *
 * An interrupting signal sent to resil is passed on to the command, except a
 * signal from the terminal (Ctrl-C) when the command is in resil's process
 * group, since the terminal already sent it there.
 *
 * Always reaps the command before returning. Returns 0 with *out filled, or
 * -1 with errno set when resil itself could not start it (pipe or fork
 * failed; nothing ran). */
int proc_run(char *const argv[], resil_ns timeout, resil_ns kill_after,
             proc_result *out);

/* Wait up to d for an interrupting signal (SIGINT, SIGTERM, SIGHUP); d = 0
 * only checks for one that already arrived. Returns its number, or 0 when
 * d passed without one. */
int proc_wait_interrupt(resil_ns d);

/* "SIGKILL" for SIGKILL, or NULL for a number without a known name. */
const char *proc_signal_name(int signo);

#endif /* RESIL_CLI_PROC_H */
