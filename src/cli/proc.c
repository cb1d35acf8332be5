/* Spawning the command, waiting for it with a timeout, and passing signals
 * on. See proc.h for the self-pipe design. */
#define _POSIX_C_SOURCE 200809L

#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* The self-pipe. It has to be a file-scope variable: a signal handler gets
 * no user data, and the pipe is what lets it hand the signal over safely. */
static int self_pipe[2] = {-1, -1};

/* A byte on the pipe is the signal number, with this bit set when the
 * kernel (a terminal's Ctrl-C, hangup) rather than a process sent it. */
#define FROM_KERNEL 0x80

/* The signals resil handles, and what they were set to at startup (restored
 * in the child before exec, so the command sees what resil saw). */
static struct {
  int signo;
  int installed;
  struct sigaction startup;
} handled[] = {{.signo = SIGINT}, {.signo = SIGTERM}, {.signo = SIGHUP}, {.signo = SIGCHLD}};
#define N_HANDLED (sizeof handled / sizeof handled[0])

static sigset_t startup_mask;

static resil_ns now_ns(void) {
  resil_clock c = resil_clock_system();
  return c.now(c.ud);
}

static void on_signal(int signo, siginfo_t *info, void *ctx) {
  (void)ctx;
  int saved = errno; /* write() may change it under the interrupted code */
  unsigned char b = (unsigned char)signo;
  if (info && info->si_code > 0) b |= FROM_KERNEL; /* SI_USER, SI_QUEUE... are <= 0 */
  ssize_t n = write(self_pipe[1], &b, 1); /* if the pipe is full, a wake-up is pending anyway */
  (void)n;
  errno = saved;
}

static int set_flags(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

int proc_init(void) {
  if (pipe(self_pipe) < 0) return -1;
  if (set_flags(self_pipe[0]) < 0 || set_flags(self_pipe[1]) < 0) return -1;
  if (sigprocmask(SIG_SETMASK, NULL, &startup_mask) < 0) return -1;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  /* SA_RESTART keeps read()/waitpid() going; poll() still wakes with EINTR
   * or, more often, because the handler made the pipe readable. */
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
  sigfillset(&sa.sa_mask);
  for (size_t i = 0; i < N_HANDLED; i++) {
    if (sigaction(handled[i].signo, NULL, &handled[i].startup) < 0) return -1;
    /* An ignored interrupt stays ignored, as a shell does for `cmd &`. SIGCHLD
     * is always caught: ignoring it would make the kernel reap our child. */
    if (handled[i].signo != SIGCHLD && handled[i].startup.sa_handler == SIG_IGN) continue;
    if (sigaction(handled[i].signo, &sa, NULL) < 0) return -1;
    handled[i].installed = 1;
  }
  return 0;
}

/* ---- the self-pipe ------------------------------------------------------- */

/* Wait until the pipe is readable or d passes (RESIL_NS_MAX: no limit). */
static void wait_pipe(resil_ns d) {
  int ms = -1;
  if (d != RESIL_NS_MAX) {
    resil_ns m = (d + RESIL_MSEC - 1) / RESIL_MSEC; /* round up: never wake early */
    ms = m > INT_MAX ? INT_MAX : (int)m;
  }
  struct pollfd pfd = {self_pipe[0], POLLIN, 0};
  (void)poll(&pfd, 1, ms); /* EINTR is fine: callers re-check the clock */
}

/* Read what the handlers wrote. Returns the number of bytes in buf. */
static size_t drain_pipe(unsigned char *buf, size_t len) {
  for (;;) {
    ssize_t n = read(self_pipe[0], buf, len);
    if (n > 0) return (size_t)n;
    if (n < 0 && errno == EINTR) continue;
    return 0; /* EAGAIN: empty */
  }
}

int proc_wait_interrupt(resil_ns d) {
  resil_ns deadline = resil_ns_add(now_ns(), d);
  for (;;) {
    unsigned char buf[64];
    size_t n;
    while ((n = drain_pipe(buf, sizeof buf)) > 0) {
      for (size_t i = 0; i < n; i++) {
        int signo = buf[i] & ~FROM_KERNEL;
        if (signo != SIGCHLD) return signo; /* we are stopping: the rest can go */
      }
    }
    resil_ns t = now_ns();
    if (t >= deadline) return 0;
    wait_pipe(deadline == RESIL_NS_MAX ? RESIL_NS_MAX : deadline - t);
  }
}

/* ---- running the command ------------------------------------------------- */

/* In the child, between fork and exec: only async-signal-safe calls. */
static void exec_child(char *const argv[], int err_fd) {
  for (size_t i = 0; i < N_HANDLED; i++)
    if (handled[i].installed) sigaction(handled[i].signo, &handled[i].startup, NULL);
  sigprocmask(SIG_SETMASK, &startup_mask, NULL);
  execvp(argv[0], argv);
  /* Tell the parent why; the pipe is close-on-exec, so a successful exec
   * closes it and the parent reads nothing. */
  int e = errno;
  ssize_t n = write(err_fd, &e, sizeof e);
  (void)n;
  _exit(e == ENOENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_CANNOT_RUN);
}

/* Returns the exec errno reported through the pipe, or 0 if exec worked. */
static int read_exec_errno(int fd) {
  int e = 0;
  size_t got = 0;
  while (got < sizeof e) {
    ssize_t n = read(fd, (char *)&e + got, sizeof e - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  return got == sizeof e ? e : 0;
}

static void reap(pid_t pid, int *wstatus) {
  while (waitpid(pid, wstatus, 0) < 0 && errno == EINTR) {
  }
}

/* Pass an interrupting signal on, unless the terminal already sent it to
 * the command's process group (it would get it twice). */
static void forward(pid_t pid, unsigned char b) {
  int signo = b & ~FROM_KERNEL;
  if ((b & FROM_KERNEL) && getpgid(pid) == getpgrp()) return;
  kill(pid, signo);
}

static void fill_from_wait_status(int ws, proc_result *out) {
  if (WIFSIGNALED(ws)) {
    out->end = PROC_SIGNALED;
    out->signo = WTERMSIG(ws);
    out->status = CLI_EXIT_SIGNAL_BASE + out->signo;
  } else {
    out->end = PROC_EXITED;
    out->exit_code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 0;
    out->status = out->exit_code;
  }
}

int proc_run(char *const argv[], resil_ns timeout, resil_ns kill_after,
             proc_result *out) {
  memset(out, 0, sizeof *out);
  int errp[2];
  if (pipe(errp) < 0) return -1;
  if (fcntl(errp[0], F_SETFD, FD_CLOEXEC) < 0 || fcntl(errp[1], F_SETFD, FD_CLOEXEC) < 0) {
    int e = errno;
    close(errp[0]);
    close(errp[1]);
    errno = e;
    return -1;
  }

  /* Block our signals across fork so no handler runs in the child (it
   * would write into the parent's pipe) before it restores the defaults. */
  sigset_t all, saved;
  sigemptyset(&all);
  for (size_t i = 0; i < N_HANDLED; i++) sigaddset(&all, handled[i].signo);
  fflush(stdout);
  sigprocmask(SIG_BLOCK, &all, &saved);
  resil_ns start = now_ns();
  pid_t pid = fork();
  if (pid == 0) {
    close(errp[0]);
    exec_child(argv, errp[1]);
  }
  int fork_errno = errno;
  sigprocmask(SIG_SETMASK, &saved, NULL);
  close(errp[1]);
  if (pid < 0) {
    close(errp[0]);
    errno = fork_errno;
    return -1;
  }

  int ws = 0;
  int exec_errno = read_exec_errno(errp[0]);
  close(errp[0]);
  if (exec_errno != 0) {
    reap(pid, &ws);
    out->end = PROC_EXEC_FAILED;
    out->exec_errno = exec_errno;
    out->status = exec_errno == ENOENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_CANNOT_RUN;
    out->elapsed = now_ns() - start;
    return 0;
  }

  enum { RUNNING, GRACE, KILLED } phase = RUNNING;
  resil_ns term_at = resil_ns_add(start, timeout);
  resil_ns kill_at = RESIL_NS_MAX;
  for (;;) {
    pid_t r = waitpid(pid, &ws, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) { /* cannot happen: the child is ours */
      ws = 0;
      break;
    }
    resil_ns t = now_ns();
    if (phase == RUNNING && timeout != RESIL_NS_MAX && t >= term_at) {
      kill(pid, SIGTERM);
      out->end = PROC_TIMED_OUT;
      phase = GRACE;
      kill_at = resil_ns_add(t, kill_after);
      continue;
    }
    if (phase == GRACE && t >= kill_at) {
      kill(pid, SIGKILL);
      out->escalated = 1;
      phase = KILLED;
      continue;
    }
    resil_ns until = phase == RUNNING ? term_at : phase == GRACE ? kill_at : RESIL_NS_MAX;
    wait_pipe(until == RESIL_NS_MAX ? RESIL_NS_MAX : until - t);

    unsigned char buf[64];
    size_t n;
    while ((n = drain_pipe(buf, sizeof buf)) > 0) {
      for (size_t i = 0; i < n; i++) {
        if ((buf[i] & ~FROM_KERNEL) == SIGCHLD) continue; /* waitpid() above looks */
        if (out->interrupt == 0) out->interrupt = buf[i] & ~FROM_KERNEL;
        forward(pid, buf[i]);
      }
    }
  }
  out->elapsed = now_ns() - start;

  if (out->end == PROC_TIMED_OUT) {
    /* Whatever it did after SIGTERM, it was stopped by us: 124, as timeout(1). */
    out->status = CLI_EXIT_TIMEOUT;
  } else {
    fill_from_wait_status(ws, out);
  }
  return 0;
}

/* ---- signal names -------------------------------------------------------- */

const char *proc_signal_name(int signo) {
  static const struct {
    int signo;
    const char *name;
  } names[] = {
      {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},
      {SIGILL, "SIGILL"},   {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"},
      {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},   {SIGKILL, "SIGKILL"},
      {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
      {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"},
      {SIGCHLD, "SIGCHLD"}, {SIGCONT, "SIGCONT"}, {SIGSTOP, "SIGSTOP"},
      {SIGTSTP, "SIGTSTP"}, {SIGTTIN, "SIGTTIN"}, {SIGTTOU, "SIGTTOU"},
      {SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
      {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGSYS, "SIGSYS"},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].signo == signo) return names[i].name;
  return NULL;
}
