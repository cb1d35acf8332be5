/* Helpers shared by the subcommands: messages, option parsing, values. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

/* ---- messages ------------------------------------------------------------ */

void cli_msg(const char *fmt, ...) {
  /* Build the whole line first and write it with one call, so it cannot be
   * interleaved with the command's own stderr output mid-line. */
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  fprintf(stderr, "resil: %s\n", line);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) line[0] = '\0';
  if (cmd) {
    fprintf(stderr, "resil: %s: %s\nTry 'resil %s --help'.\n", cmd, line, cmd);
  } else {
    fprintf(stderr, "resil: %s\nTry 'resil --help'.\n", line);
  }
  return CLI_EXIT_USAGE;
}

/* ---- option parsing ------------------------------------------------------ */

void cli_optparser_init(cli_optparser *p, int argc, char **argv, const char *cmd,
                        const cli_option *options) {
  memset(p, 0, sizeof *p);
  p->argc = argc;
  p->argv = argv;
  p->index = 1;
  p->cmd = cmd;
  p->options = options;
}

static const cli_option *find_long(const cli_option *opts, const char *name, size_t len) {
  for (; opts->name; opts++)
    if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0) return opts;
  return NULL;
}

static const cli_option *find_short(const cli_option *opts, char c) {
  for (; opts->name; opts++)
    if (opts->short_name != 0 && opts->short_name == c) return opts;
  return NULL;
}

static int found(cli_optparser *p, const cli_option *o, const char **name) {
  snprintf(p->name_buf, sizeof p->name_buf, "--%s", o->name);
  *name = p->name_buf;
  return o->id;
}

/* "-qv" / "-n3": one short option from the current bundle. */
static int next_short(cli_optparser *p, const char **name, const char **value) {
  char c = *p->bundle++;
  const cli_option *o = find_short(p->options, c);
  if (o == NULL) {
    p->bundle = NULL;
    return cli_usage_error(p->cmd, "unknown option '-%c'", c), CLI_OPT_ERROR;
  }
  if (o->takes_value) {
    if (*p->bundle != '\0') {
      *value = p->bundle; /* "-n3" */
    } else if (p->index < p->argc) {
      *value = p->argv[p->index++]; /* "-n 3" */
    } else {
      p->bundle = NULL;
      return cli_usage_error(p->cmd, "option '-%c' needs a value", c), CLI_OPT_ERROR;
    }
    p->bundle = NULL;
  } else if (*p->bundle == '\0') {
    p->bundle = NULL;
  }
  return found(p, o, name);
}

int cli_optparser_next(cli_optparser *p, const char **name, const char **value) {
  *name = NULL;
  *value = NULL;
  if (p->bundle) return next_short(p, name, value);
  if (p->index >= p->argc) return CLI_OPT_DONE;

  const char *arg = p->argv[p->index];
  if (strcmp(arg, "--") == 0) {
    p->index++;
    return CLI_OPT_DONE;
  }
  /* "-" alone and anything not starting with "-" is the first operand. */
  if (arg[0] != '-' || arg[1] == '\0') return CLI_OPT_DONE;
  p->index++;

  if (arg[1] != '-') {
    p->bundle = arg + 1;
    return next_short(p, name, value);
  }

  const char *body = arg + 2;
  const char *eq = strchr(body, '=');
  size_t len = eq ? (size_t)(eq - body) : strlen(body);
  const cli_option *o = find_long(p->options, body, len);
  if (o == NULL) {
    return cli_usage_error(p->cmd, "unknown option '--%.*s'", (int)len, body),
           CLI_OPT_ERROR;
  }
  if (o->takes_value) {
    if (eq) {
      *value = eq + 1;
    } else if (p->index < p->argc) {
      *value = p->argv[p->index++];
    } else {
      return cli_usage_error(p->cmd, "option '--%s' needs a value", o->name),
             CLI_OPT_ERROR;
    }
  } else if (eq) {
    return cli_usage_error(p->cmd, "option '--%s' takes no value", o->name),
           CLI_OPT_ERROR;
  }
  return found(p, o, name);
}

/* ---- values -------------------------------------------------------------- */

int cli_parse_duration(const char *cmd, const char *opt, const char *text,
                       resil_ns *out) {
  resil_err e = resil_duration_parse(text, out);
  if (e == RESIL_OK) return 0;
  if (e == RESIL_ERANGE)
    return cli_usage_error(cmd, "duration for %s is too large: '%s'", opt, text);
  return cli_usage_error(cmd, "invalid duration for %s: '%s' (use e.g. 250ms, 1.5s, 2m)",
                         opt, text);
}

int cli_parse_uint(const char *cmd, const char *opt, const char *text, uint64_t max,
                   uint64_t *out) {
  uint64_t v = 0;
  const char *s = text;
  if (*s == '\0') goto bad;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') goto bad;
    unsigned d = (unsigned)(*s - '0');
    if (d > max || v > (max - d) / 10) { /* v * 10 + d > max */
      return cli_usage_error(cmd, "number for %s is too large: '%s' (at most %llu)", opt,
                             text, (unsigned long long)max);
    }
    v = v * 10 + d;
  }
  *out = v;
  return 0;
bad:
  return cli_usage_error(cmd, "invalid number for %s: '%s' (use a whole number like 3)",
                         opt, text);
}

const char *cli_fmt_duration(resil_ns d, char buf[32]) {
  resil_duration_format(d, buf, 32);
  return buf;
}

/* ---- backoff options ------------------------------------------------------ */

void cli_backoff_init(cli_backoff *o) {
  memset(o, 0, sizeof *o);
  resil_backoff_init(&o->b);
}

int cli_backoff_option(const char *cmd, const char *opt, const char *text, cli_backoff *o) {
  resil_ns d = 0;
  if (strcmp(opt, "--backoff") == 0) {
    if (strcasecmp(text, "decorrelated") == 0) {
      o->b.kind = RESIL_BACKOFF_EXPONENTIAL;
      o->decorrelated = 1;
      return 0;
    }
    if (resil_backoff_kind_parse(text, &o->b.kind) == RESIL_OK) {
      o->decorrelated = 0;
      return 0;
    }
    return cli_usage_error(
        cmd, "invalid value for --backoff: '%s' (use exponential, constant, linear or decorrelated)",
        text);
  }
  if (strcmp(opt, "--jitter") == 0) {
    if (resil_jitter_parse(text, &o->b.jitter) != RESIL_OK)
      return cli_usage_error(cmd,
                             "invalid value for --jitter: '%s' (use full, equal, none, "
                             "decorrelated, additive or proportional)",
                             text);
    o->jitter_set = 1;
    return 0;
  }
  /* --base or --cap: a positive duration. */
  if (cli_parse_duration(cmd, opt, text, &d) != 0) return CLI_EXIT_USAGE;
  if (d == 0) return cli_usage_error(cmd, "%s must be more than 0", opt);
  if (strcmp(opt, "--cap") == 0) {
    o->b.cap = d;
    o->cap_set = 1;
  } else {
    o->b.base = d;
  }
  return 0;
}

int cli_backoff_finish(const char *cmd, cli_backoff *o) {
  if (o->decorrelated) {
    if (o->jitter_set && o->b.jitter != RESIL_JITTER_DECORRELATED)
      return cli_usage_error(cmd, "--backoff decorrelated sets its own jitter; drop --jitter %s",
                             resil_jitter_name(o->b.jitter));
    o->b.jitter = RESIL_JITTER_DECORRELATED;
  }
  if (o->b.cap < o->b.base) {
    if (o->cap_set) {
      char b[32], c[32];
      return cli_usage_error(cmd, "--cap %s is less than --base %s",
                             cli_fmt_duration(o->b.cap, c), cli_fmt_duration(o->b.base, b));
    }
    o->b.cap = o->b.base;
  }
  if (resil_backoff_validate(&o->b) != RESIL_OK)
    return cli_usage_error(cmd, "invalid backoff settings");
  return 0;
}
