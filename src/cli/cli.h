/* The resil command-line tool: pieces shared by every subcommand.
 *
 * The CLI is a client of the public API in include/resil/ only, like curl's
 * src/ is of libcurl: nothing here may reach into src/core. */
#ifndef RESIL_CLI_H
#define RESIL_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "resil/backoff.h"
#include "resil/time.h"

/* Exit statuses of resil itself. A command's own status is passed through
 * untouched, so these follow the conventions of timeout(1), env(1) and the
 * shell, where a wrapper's statuses must not collide with common ones. */
enum cli_exit {
  CLI_EXIT_OK = 0,
  /* `resil breaker show|reset NAME`: there is no breaker named NAME. */
  CLI_EXIT_NO_SUCH_BREAKER = 1,
  /* Bad command line (sysexits.h EX_USAGE): nothing was run. */
  CLI_EXIT_USAGE = 64,
  /* This resil was built without a component the command line asks for
   * (sysexits.h EX_UNAVAILABLE): --breaker without SQLite. Nothing was run. */
  CLI_EXIT_NOT_BUILT = 69,
  /* The server could not listen on its address (sysexits EX_OSERR). */
  CLI_EXIT_OSERR = 71,
  /* The --breaker state file cannot be opened, read or written: corrupt,
   * unwritable, or locked for longer than the busy timeout (sysexits.h
   * EX_IOERR). Before an attempt this fails closed: the command is not run.
   * After one, the attempt ran but its result was not recorded. */
  CLI_EXIT_IOERR = 74,
  /* The circuit breaker is open (or half-open with its one probe already
   * running), so the command was not started: try again later (sysexits.h
   * EX_TEMPFAIL, which mail transfer agents and many scripts read as
   * "temporary, retry later"). Not sysexits' EX_UNAVAILABLE: that is 69,
   * CLI_EXIT_NOT_BUILT above. */
  CLI_EXIT_UNAVAILABLE = 75,
  /* The last attempt was stopped by --attempt-timeout or by the --max-time
   * deadline (timeout(1) uses the same number). */
  CLI_EXIT_TIMEOUT = 124,
  /* resil itself failed (could not fork, out of memory): the command's fate
   * is unknown. */
  CLI_EXIT_INTERNAL = 125,
  /* The command exists but could not be executed (EACCES, ENOEXEC, ...). */
  CLI_EXIT_CANNOT_RUN = 126,
  /* The command was not found. */
  CLI_EXIT_NOT_FOUND = 127,
  /* 128 + N: the last attempt died from signal N, or resil was interrupted
   * by signal N between attempts (the shell's convention). */
  CLI_EXIT_SIGNAL_BASE = 128
};

/* One subcommand: `resil NAME ...`. Adding a command means adding a
 * cmd_NAME.c with these two functions and one line in main.c's table. */
typedef struct cli_command {
  const char *name;
  const char *summary; /* one line for `resil --help` */
  /* argv[0] is the command name; returns the process exit status. */
  int (*main)(int argc, char **argv);
  void (*help)(FILE *out);
} cli_command;

int cmd_run_main(int argc, char **argv);
void cmd_run_help(FILE *out);
int cmd_breaker_main(int argc, char **argv);
void cmd_breaker_help(FILE *out);
int cmd_http_main(int argc, char **argv);
void cmd_http_help(FILE *out);
int cmd_serve_main(int argc, char **argv);
void cmd_serve_help(FILE *out);
int cmd_sim_main(int argc, char **argv);
void cmd_sim_help(FILE *out);
int cmd_demo_main(int argc, char **argv);
void cmd_demo_help(FILE *out);

/* ---- messages ------------------------------------------------------------ */

/* "resil: <text>\n" on stderr. Every line resil prints about itself starts
 * with "resil: " so it is easy to tell apart from the command's output. */
void cli_msg(const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Report a usage error for subcommand cmd ("run"; NULL for the top level):
 * "resil: run: <text>" and "Try 'resil run --help'." on stderr. Returns
 * CLI_EXIT_USAGE so callers can `return cli_usage_error(...)`. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- option parsing ------------------------------------------------------ */

/* A small getopt_long replacement with resil's own error messages. Accepts
 * "--name value", "--name=value", "-x value", "-xvalue" and bundled short
 * flags ("-qv"). Parsing stops at "--" or at the first non-option argument,
 * like env(1) and timeout(1), so the command's own options are never taken
 * for resil's. */
typedef struct cli_option {
  const char *name; /* long name without "--" */
  char short_name;  /* 0 for none */
  int takes_value;
  int id;           /* returned to the caller */
} cli_option;

typedef struct cli_optparser {
  int argc;
  char **argv;
  int index;           /* next argv element to look at */
  const char *bundle;  /* rest of a "-qv" bundle, or NULL */
  const char *cmd;     /* for messages: "run" */
  const cli_option *options; /* terminated by an entry with name NULL */
  char name_buf[64];   /* "--name" of the option last returned */
} cli_optparser;

enum {
  CLI_OPT_DONE = -1, /* no more options: operands start at p->index */
  CLI_OPT_ERROR = -2 /* a usage error was printed */
};

/* argv[0] is skipped (it is the subcommand's name). */
void cli_optparser_init(cli_optparser *p, int argc, char **argv, const char *cmd,
                        const cli_option *options);
/* Returns the next option's id, CLI_OPT_DONE or CLI_OPT_ERROR. Sets *value
 * for options that take one (else NULL) and *name to "--long-name" for
 * messages (the long name even when the short one was used, so a message
 * names the option the way --help and the man page do). */
int cli_optparser_next(cli_optparser *p, const char **name, const char **value);

/* ---- values -------------------------------------------------------------- */

/* Each parser prints a usage error naming the option and the bad text and
 * returns CLI_EXIT_USAGE, or returns 0 on success. */
int cli_parse_duration(const char *cmd, const char *opt, const char *text,
                       resil_ns *out);
/* A decimal number in [0, max]: digits only, no sign, no spaces. */
int cli_parse_uint(const char *cmd, const char *opt, const char *text,
                   uint64_t max, uint64_t *out);

/* ---- backoff options shared by `run` and `http` -------------------------- */

/* --backoff, --base, --cap and --jitter, and what was given explicitly (the
 * rules in cli_backoff_finish depend on it). */
typedef struct cli_backoff {
  resil_backoff b; /* starts as resil_backoff_init() */
  int cap_set, jitter_set, decorrelated;
} cli_backoff;

void cli_backoff_init(cli_backoff *o);
/* Parse one backoff option; opt is its long name ("--base", "--cap",
 * "--jitter" or "--backoff"). Returns 0, or CLI_EXIT_USAGE after a message. */
int cli_backoff_option(const char *cmd, const char *opt, const char *text, cli_backoff *o);
/* After all options: --backoff decorrelated owns the jitter; a --cap below
 * --base is an error, but a --base above the default cap raises the cap
 * ("start here" is what the user means); then validation. Returns 0 or
 * CLI_EXIT_USAGE. */
int cli_backoff_finish(const char *cmd, cli_backoff *o);

/* resil_duration_format into a caller buffer; returns buf for use in
 * printf arguments. */
const char *cli_fmt_duration(resil_ns d, char buf[32]);

#endif /* RESIL_CLI_H */
