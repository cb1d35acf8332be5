/* `resil http`: a curl-like client on resil's retrying HTTP client
 * (resil/http.h).
 *
 * Every retry decision is the library's: this file turns the command line
 * into a client config and one request, prints a line per attempt from the
 * client's on_attempt hook, and then prints the final response (never a
 * retried one: the client drains and drops those) and maps how the call
 * ended to curl's exit statuses.
 *
 * The body of the final response is kept in memory (up to the client's
 * max_body, 64 MiB) rather than streamed, so that -i can print the headers
 * first and -o FILE is written once, with the final response only.
 *
 * Built without libcurl, the client API still links (its stub answers
 * RESIL_EUNSUPPORTED), so the command line is parsed the same way and only
 * then does `resil http` say it is unavailable, as `resil breaker` does
 * without SQLite. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "http_output.h"
#include "resil/resil.h"
#include "resil/http.h"

#define CMD "http"

/* ---- options ------------------------------------------------------------- */

enum {
  OPT_REQUEST,
  OPT_HEADER,
  OPT_DATA,
  OPT_OUTPUT,
  OPT_INCLUDE,
  OPT_LOCATION,
  OPT_ATTEMPTS,
  OPT_MAX_TIME,
  OPT_ATTEMPT_TIMEOUT,
  OPT_BASE,
  OPT_CAP,
  OPT_JITTER,
  OPT_RETRY_AFTER_MAX,
  OPT_RETRY_STATUS,
  OPT_IDEM_KEY,
  OPT_RETRY_NON_IDEM,
  OPT_BUDGET_URL,
  OPT_BUDGET,
  OPT_BUDGET_RATE,
  OPT_BUDGET_BURST,
  OPT_QUIET,
  OPT_VERBOSE,
  OPT_HELP
};

static const cli_option http_options[] = {
    {"request", 'X', 1, OPT_REQUEST},
    {"header", 'H', 1, OPT_HEADER},
    {"data", 'd', 1, OPT_DATA},
    {"data-binary", 0, 1, OPT_DATA},
    {"output", 'o', 1, OPT_OUTPUT},
    {"include", 'i', 0, OPT_INCLUDE},
    {"location", 'L', 0, OPT_LOCATION},
    {"attempts", 'n', 1, OPT_ATTEMPTS},
    {"max-time", 0, 1, OPT_MAX_TIME},
    {"attempt-timeout", 0, 1, OPT_ATTEMPT_TIMEOUT},
    {"base", 0, 1, OPT_BASE},
    {"cap", 0, 1, OPT_CAP},
    {"jitter", 0, 1, OPT_JITTER},
    {"retry-after-max", 0, 1, OPT_RETRY_AFTER_MAX},
    {"retry-status", 0, 1, OPT_RETRY_STATUS},
    {"idempotency-key", 0, 1, OPT_IDEM_KEY},
    {"retry-non-idempotent", 0, 0, OPT_RETRY_NON_IDEM},
    {"budget-url", 0, 1, OPT_BUDGET_URL},
    {"budget", 0, 1, OPT_BUDGET},
    {"budget-rate", 0, 1, OPT_BUDGET_RATE},
    {"budget-burst", 0, 1, OPT_BUDGET_BURST},
    {"quiet", 'q', 0, OPT_QUIET},
    {"verbose", 'v', 0, OPT_VERBOSE},
    {"help", 'h', 0, OPT_HELP},
    {NULL, 0, 0, 0},
};

enum { QUIET = -1, NORMAL = 0, VERBOSE = 1 };

typedef struct http_opts {
  const char *method;       /* -X, or NULL: GET, or POST with -d */
  const char *url;
  resil_http_header *headers; /* -H, in order; names point into name_mem */
  char **name_mem;          /* one malloc'ed copy per -H */
  size_t n_headers;
  const char **data;        /* -d values as given, in order */
  size_t n_data;
  const char *output;       /* -o, or NULL (stdout; so is "-") */
  int include, location;
  uint32_t attempts;        /* 0 = unlimited */
  resil_ns max_time;        /* RESIL_NS_MAX = none */
  const char *max_time_text;
  resil_ns attempt_timeout; /* 0 = none */
  resil_backoff backoff;
  resil_ns retry_after_max;
  const char *retry_after_max_text;
  resil_codeset retry_status;
  const char *idem_key;     /* --idempotency-key, or NULL */
  int retry_non_idem;
  const char *budget_url;   /* --budget-url, or NULL: no fleet budget */
  const char *budget_name;  /* --budget */
  double budget_rate, budget_burst;
  int verbosity;
} http_opts;

void cmd_http_help(FILE *out) {
  fputs(
      "Usage: resil http [OPTIONS] URL\n"
      "\n"
      "Make an HTTP request like curl, and retry it with backoff and jitter when\n"
      "it fails in a way worth retrying: connection errors, timeouts, 408, 429\n"
      "and 5xx but 501. The final response's body goes to standard output (its\n"
      "status decides the exit status); a retried response is never printed.\n"
      "Options may come before or after URL.\n"
      "\n"
      "Request:\n"
      "  -X, --request METHOD     the method (default GET, or POST with --data)\n"
      "  -H, --header 'NAME: VALUE'  send a header (repeatable); 'NAME;' sends\n"
      "                           it empty\n"
      "  -d, --data DATA          send DATA as the body, and POST unless -X says\n"
      "                           otherwise; @FILE sends a file byte for byte\n"
      "                           (like curl's --data-binary), @- standard input;\n"
      "                           several are joined with '&'. Sends Content-Type:\n"
      "                           application/x-www-form-urlencoded unless -H\n"
      "                           sets one\n"
      "  -L, --location           follow redirects (at most 10)\n"
      "\n"
      "Output:\n"
      "  -o, --output FILE        write the body to FILE ('-': standard output),\n"
      "                           once, with the final response only; FILE is\n"
      "                           left alone when no response arrived\n"
      "  -i, --include            print the status line and headers first\n"
      "  -q, --quiet              print nothing of resil's own but usage errors\n"
      "                           and errors that stop it before the request\n"
      "  -v, --verbose            print one line per attempt, and hints\n"
      "  -h, --help               show this help\n"
      "\n"
      "Retries:\n"
      "  -n, --attempts N         total attempts, the first included (default 5);\n"
      "                           0 = no limit (needs --max-time)\n"
      "      --max-time DUR       deadline for the whole call, retries included:\n"
      "                           never wait for a retry that would start after\n"
      "                           it, and give each attempt at most the time\n"
      "                           left (default: none)\n"
      "      --attempt-timeout DUR  limit for each attempt (default 30s; 0 = none)\n"
      "      --base DUR           first delay (default 1s)\n"
      "      --cap DUR            longest delay (default 30s, or --base if larger)\n"
      "      --jitter MODE        full, equal or none (default full); also\n"
      "                           decorrelated, additive, proportional\n"
      "      --retry-after-max DUR  longest Retry-After to wait for; a server\n"
      "                           asking for more ends the call at once\n"
      "                           (default 60s)\n"
      "      --retry-status LIST  statuses to retry (default 408,429,500,502-599;\n"
      "                           e.g. 429,503 or 500-599,!501)\n"
      "      --idempotency-key auto|KEY  send Idempotency-Key: KEY, the same on\n"
      "                           every attempt (auto: a random UUID), which\n"
      "                           makes a POST or PATCH safe to retry\n"
      "      --retry-non-idempotent  retry a POST or PATCH without a key (it may\n"
      "                           then take effect twice)\n"
      "  A POST or PATCH without a key is retried only when it was never sent\n"
      "  (connection refused, DNS); a 5xx or a timeout ends it.\n"
      "\n"
      "Fleet-wide retry budget (shared by every process using the same NAME):\n"
      "      --budget-url redis://HOST[:PORT][/DB]  keep the budget in Redis\n"
      "      --budget NAME        the budget to draw retries from\n"
      "      --budget-rate R      retries per second for the whole fleet\n"
      "                           (default 10)\n"
      "      --budget-burst B     retries at once (default 10)\n"
      "  A retry the budget denies ends the call (exit 75). If Redis cannot be\n"
      "  reached, a local budget with the same rate and burst decides, and a\n"
      "  warning says so.\n"
      "\n"
      "DUR is a duration such as 250ms, 1.5s, 2m or 1h30m; a bare number is seconds.\n"
      "\n"
      "Exit status (curl's numbers):\n"
      "  0    the final response is 1xx-3xx\n"
      "  22   the final response is 400 or above (its body is still printed)\n"
      "  3    malformed URL (not retried)\n"
      "  6    could not resolve the host\n"
      "  7    could not connect\n"
      "  23   cannot write the output (-o FILE or standard output)\n"
      "  26   cannot read the --data file: nothing was sent\n"
      "  28   the last attempt timed out (--attempt-timeout, or --max-time ran out)\n"
      "  N    any other libcurl error of the last attempt (35, 52, 56, 60, ...)\n"
      "  64   usage error: nothing was sent\n"
      "  69   this resil was built without libcurl\n"
      "  75   circuit open or retry budget exhausted\n"
      "\n"
      "Examples:\n"
      "  resil http https://example.com/health\n"
      "  resil http -v --max-time 20s -o out.json https://api.example.com/items\n"
      "  resil http -d @order.json -H 'Content-Type: application/json' \\\n"
      "      --idempotency-key auto https://api.example.com/orders\n",
      out);
}

static void opts_free(http_opts *o) {
  for (size_t i = 0; i < o->n_headers; i++) free(o->name_mem[i]);
  free(o->name_mem);
  free(o->headers);
  free(o->data);
}

/* 1 for an RFC 9110 token (a method, a header name). */
static int is_token(const char *s, size_t n) {
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch != 0 && strchr(extra, ch) != NULL)))
      return 0;
  }
  return 1;
}

/* 1 when s can be sent as a header value: no CR, LF or other control
 * characters (a tab is fine). */
static int is_field_value(const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return 0;
  }
  return 1;
}

/* -H 'Name: value' (or curl's 'Name;' for an empty value). */
static int add_header(http_opts *o, const char *text) {
  const char *colon = strchr(text, ':');
  const char *semi = strchr(text, ';');
  size_t nlen;
  const char *value;
  if (colon) {
    nlen = (size_t)(colon - text);
    value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
  } else if (semi && semi[1] == '\0') {
    nlen = (size_t)(semi - text);
    value = "";
  } else {
    return cli_usage_error(CMD, "invalid header for --header: '%s' (use 'Name: value')", text);
  }
  if (!is_token(text, nlen))
    return cli_usage_error(CMD,
                           "invalid header name for --header: '%.*s' (use letters, digits "
                           "and !#$%%&'*+-.^_`|~)",
                           (int)nlen, text);
  if (!is_field_value(value))
    return cli_usage_error(CMD,
                           "the value of header '%.*s' contains a line break or another "
                           "control character",
                           (int)nlen, text);
  resil_http_header *h = realloc(o->headers, (o->n_headers + 1) * sizeof *h);
  if (h) o->headers = h;
  char **m = h ? realloc(o->name_mem, (o->n_headers + 1) * sizeof *m) : NULL;
  if (m) o->name_mem = m;
  char *name = m ? malloc(nlen + 1) : NULL;
  if (name == NULL) {
    cli_msg("out of memory");
    return HTTP_CURLE_OUT_OF_MEMORY;
  }
  memcpy(name, text, nlen);
  name[nlen] = '\0';
  o->name_mem[o->n_headers] = name;
  o->headers[o->n_headers].name = name;
  o->headers[o->n_headers].value = value;
  o->n_headers++;
  return 0;
}

static const char *find_header(const http_opts *o, const char *name) {
  for (size_t i = 0; i < o->n_headers; i++)
    if (strcasecmp(o->headers[i].name, name) == 0) return o->headers[i].value;
  return NULL;
}

static int parse_statuses(const char *opt, const char *text, resil_codeset *out) {
  resil_codeset set;
  resil_err e = resil_codeset_parse(&set, text);
  if (e == RESIL_OK) {
    for (int code = 0; code <= RESIL_CODESET_MAX; code++) {
      if (code == 100) code = 600; /* 100..599 are HTTP statuses */
      if (resil_codeset_has(&set, code)) {
        e = RESIL_ERANGE;
        break;
      }
    }
  }
  if (e == RESIL_OK) {
    *out = set;
    return 0;
  }
  if (e == RESIL_ERANGE)
    return cli_usage_error(CMD, "status out of range in %s: '%s' (HTTP statuses are 100 to 599)",
                           opt, text);
  return cli_usage_error(CMD, "invalid statuses for %s: '%s' (use e.g. 429,503 or 500-599,!501)",
                         opt, text);
}

static int parse_idem_key(const char *text) {
  if (strcmp(text, "auto") == 0) return 0;
  char key[RESIL_IDEM_KEY_MAX + 1];
  resil_err e = resil_idem_key_parse(text, strlen(text), key, NULL);
  if (e == RESIL_OK) return 0;
  if (e == RESIL_ERANGE)
    return cli_usage_error(CMD, "--idempotency-key is too long (at most %d characters)",
                           RESIL_IDEM_KEY_MAX);
  return cli_usage_error(CMD,
                         "invalid value for --idempotency-key: '%s' (use auto, or 1 to %d "
                         "visible ASCII characters)",
                         text, RESIL_IDEM_KEY_MAX);
}

static int add_data(http_opts *o, const char *val) {
  if (strcmp(val, "@") == 0)
    return cli_usage_error(CMD, "missing file name after '@' in --data (use @FILE, or @- for "
                                "standard input)");
  const char **d = realloc(o->data, (o->n_data + 1) * sizeof *d);
  if (d == NULL) {
    cli_msg("out of memory");
    return HTTP_CURLE_OUT_OF_MEMORY;
  }
  o->data = d;
  o->data[o->n_data++] = val;
  return 0;
}

/* A number > 0 (--budget-rate, --budget-burst). 0 or the usage exit. */
static int parse_positive(const char *opt, const char *text, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !(v > 0) || v > 1e9)
    return cli_usage_error(CMD, "invalid value for %s: '%s' (a number above 0)", opt, text);
  *out = v;
  return 0;
}

/* Parse argv into *o. Returns -1 to go on, or an exit status: 0 after
 * --help, CLI_EXIT_USAGE after a usage error. */
static int parse_args(int argc, char **argv, http_opts *o) {
  memset(o, 0, sizeof *o);
  o->attempts = 5;
  o->max_time = RESIL_NS_MAX;
  o->attempt_timeout = 30 * RESIL_SEC;
  o->retry_after_max = 60 * RESIL_SEC;
  o->retry_after_max_text = "60s";
  resil_http_retry_statuses_default(&o->retry_status);
  o->budget_rate = 10;
  o->budget_burst = 10;

  cli_backoff bo;
  cli_backoff_init(&bo);
  cli_optparser p;
  cli_optparser_init(&p, argc, argv, CMD, http_options);
  for (;;) {
    const char *name, *val;
    int at = p.index;
    int id = cli_optparser_next(&p, &name, &val);
    if (id == CLI_OPT_ERROR) return CLI_EXIT_USAGE;
    if (id == CLI_OPT_DONE) {
      /* An operand (the URL), then options again; after "--" only operands. */
      int dashdash = p.index > at;
      for (;;) {
        if (p.index >= argc) break;
        if (o->url)
          return cli_usage_error(CMD, "too many arguments: '%s' (one URL per call)",
                                 argv[p.index]);
        o->url = argv[p.index++];
        if (!dashdash) break;
      }
      if (p.index >= argc) break;
      continue;
    }

    uint64_t u = 0;
    resil_ns d = 0;
    int bad = 0;
    switch (id) {
      case OPT_REQUEST:
        if (!is_token(val, strlen(val)))
          return cli_usage_error(CMD, "invalid method for --request: '%s'", val);
        o->method = val;
        break;
      case OPT_HEADER: bad = add_header(o, val); break;
      case OPT_DATA: bad = add_data(o, val); break;
      case OPT_OUTPUT:
        if (val[0] == '\0') return cli_usage_error(CMD, "--output needs a file name");
        o->output = strcmp(val, "-") == 0 ? NULL : val;
        break;
      case OPT_INCLUDE: o->include = 1; break;
      case OPT_LOCATION: o->location = 1; break;
      case OPT_ATTEMPTS:
        bad = cli_parse_uint(CMD, name, val, UINT32_MAX, &u);
        o->attempts = (uint32_t)u;
        break;
      case OPT_MAX_TIME:
        bad = cli_parse_duration(CMD, name, val, &d);
        if (!bad && d == 0) return cli_usage_error(CMD, "--max-time must be more than 0");
        o->max_time = d;
        o->max_time_text = val;
        break;
      case OPT_ATTEMPT_TIMEOUT:
        bad = cli_parse_duration(CMD, name, val, &d);
        o->attempt_timeout = d;
        break;
      case OPT_BASE:
      case OPT_CAP:
      case OPT_JITTER:
        bad = cli_backoff_option(CMD, name, val, &bo);
        break;
      case OPT_RETRY_AFTER_MAX:
        bad = cli_parse_duration(CMD, name, val, &d);
        o->retry_after_max = d;
        o->retry_after_max_text = val;
        break;
      case OPT_RETRY_STATUS: bad = parse_statuses(name, val, &o->retry_status); break;
      case OPT_IDEM_KEY:
        bad = parse_idem_key(val);
        o->idem_key = val;
        break;
      case OPT_RETRY_NON_IDEM: o->retry_non_idem = 1; break;
      case OPT_BUDGET_URL:
        if (strncmp(val, "redis://", 8) != 0)
          return cli_usage_error(CMD, "--budget-url must be a redis:// URL, not '%s'", val);
        o->budget_url = val;
        break;
      case OPT_BUDGET:
        if (val[0] == '\0') return cli_usage_error(CMD, "--budget needs a name");
        o->budget_name = val;
        break;
      case OPT_BUDGET_RATE: bad = parse_positive(name, val, &o->budget_rate); break;
      case OPT_BUDGET_BURST:
        bad = parse_positive(name, val, &o->budget_burst);
        if (!bad && o->budget_burst < 1) return cli_usage_error(CMD, "--budget-burst must be at least 1");
        break;
      case OPT_QUIET: o->verbosity = QUIET; break;
      case OPT_VERBOSE: o->verbosity = VERBOSE; break;
      case OPT_HELP: cmd_http_help(stdout); return CLI_EXIT_OK;
      default: break;
    }
    if (bad) return bad;
  }

  if (o->url == NULL) return cli_usage_error(CMD, "missing URL");
  if (o->url[0] == '\0') return cli_usage_error(CMD, "the URL is empty");
  if (o->attempts == 0 && o->max_time == RESIL_NS_MAX)
    return cli_usage_error(CMD, "--attempts 0 (no limit) needs --max-time");
  if (cli_backoff_finish(CMD, &bo) != 0) return CLI_EXIT_USAGE;
  o->backoff = bo.b;
  if (o->budget_url && !o->budget_name)
    return cli_usage_error(CMD, "--budget-url needs --budget NAME");
  if (o->budget_name && !o->budget_url)
    return cli_usage_error(CMD, "--budget needs --budget-url redis://...");
  if (o->method == NULL) o->method = o->n_data ? "POST" : "GET";
  return -1;
}

/* ---- the request body (-d) ----------------------------------------------- */

typedef struct buffer {
  char *p;
  size_t len, cap;
} buffer;

static int buf_append(buffer *b, const void *data, size_t n) {
  if (n > SIZE_MAX - b->len - 1) return -1;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
    char *q = realloc(b->p, cap);
    if (q == NULL) return -1;
    b->p = q;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

/* Append the whole of fp. Returns 0, -1 on a read error (errno set), -2 out
 * of memory. */
static int buf_read(buffer *b, FILE *fp) {
  char chunk[65536];
  size_t n;
  errno = 0;
  while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
    if (buf_append(b, chunk, n)) return -2;
  if (ferror(fp)) {
    if (errno == 0) errno = EIO;
    return -1;
  }
  return 0;
}

/* The body from every -d, joined with '&' like curl's. Returns 0, or the
 * exit status after printing why. */
static int read_body(const http_opts *o, buffer *b) {
  int stdin_used = 0;
  for (size_t i = 0; i < o->n_data; i++) {
    const char *d = o->data[i];
    if (i > 0 && buf_append(b, "&", 1)) goto oom;
    if (d[0] != '@') {
      if (buf_append(b, d, strlen(d))) goto oom;
      continue;
    }
    const char *path = d + 1;
    int rc;
    if (strcmp(path, "-") == 0) {
      if (stdin_used) continue; /* already read to its end */
      stdin_used = 1;
      rc = buf_read(b, stdin);
      if (rc == -1) {
        cli_msg("cannot read the request body from standard input: %s", strerror(errno));
        return HTTP_CURLE_READ_ERROR;
      }
    } else {
      FILE *fp = fopen(path, "rb");
      if (fp == NULL) {
        cli_msg("cannot read the request body from %s: %s", path, strerror(errno));
        return HTTP_CURLE_READ_ERROR;
      }
      rc = buf_read(b, fp);
      int e = errno;
      fclose(fp);
      if (rc == -1) {
        cli_msg("cannot read the request body from %s: %s", path, strerror(e));
        return HTTP_CURLE_READ_ERROR;
      }
    }
    if (rc == -2) goto oom;
  }
  if (b->p == NULL && buf_append(b, "", 0)) goto oom; /* -d '' is an empty body */
  return 0;
oom:
  cli_msg("out of memory");
  return HTTP_CURLE_OUT_OF_MEMORY;
}

/* ---- the output (-o) ------------------------------------------------------ */

/* -o FILE is opened before the request, so a file that cannot be written
 * fails the command before anything is sent, but it is truncated and
 * written only once the final response is in. */
typedef struct output {
  const char *path; /* NULL: standard output */
  int fd;
  int created;      /* we made it: remove it again if no response came */
} output;

static int output_open(output *out, const char *path) {
  out->path = path;
  out->fd = -1;
  out->created = 0;
  if (path == NULL) return 0;
  out->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (out->fd >= 0) {
    out->created = 1;
    return 0;
  }
  if (errno == EEXIST) out->fd = open(path, O_WRONLY | O_CLOEXEC);
  if (out->fd >= 0) return 0;
  cli_msg("cannot write %s: %s", path, strerror(errno));
  return HTTP_CURLE_WRITE_ERROR;
}

/* Write the final response. Returns 0 or the exit status after printing
 * why. */
static int output_write(output *out, const resil_http_response *r, int include) {
  if (out->path == NULL) {
    if (http_write_response(stdout, r, include) == 0) return 0;
    cli_msg("cannot write to standard output: %s", strerror(errno));
    return HTTP_CURLE_WRITE_ERROR;
  }
  struct stat st;
  if (fstat(out->fd, &st) == 0 && S_ISREG(st.st_mode) && ftruncate(out->fd, 0) != 0) {
    cli_msg("cannot write %s: %s", out->path, strerror(errno));
    return HTTP_CURLE_WRITE_ERROR;
  }
  FILE *fp = fdopen(out->fd, "wb");
  if (fp == NULL) {
    cli_msg("cannot write %s: %s", out->path, strerror(errno));
    return HTTP_CURLE_WRITE_ERROR;
  }
  out->fd = -1; /* fp owns it now */
  int rc = http_write_response(fp, r, include);
  int e = errno;
  if (fclose(fp) != 0 && rc == 0) {
    rc = -1;
    e = errno;
  }
  if (rc == 0) return 0;
  cli_msg("cannot write %s: %s", out->path, strerror(e));
  return HTTP_CURLE_WRITE_ERROR;
}

/* No response to write: leave an existing file as it was, remove one we
 * made. */
static void output_abandon(output *out) {
  if (out->fd >= 0) close(out->fd);
  out->fd = -1;
  if (out->created) unlink(out->path);
}

/* ---- progress lines -------------------------------------------------------- */

typedef struct http_ctx {
  const http_opts *o;
  int safe; /* the request may be repeated after it may have been processed */
} http_ctx;

/* "2/5", or "2" with unlimited attempts. */
static const char *attempt_label(const http_opts *o, uint32_t n, char buf[32]) {
  if (o->attempts) snprintf(buf, 32, "%u/%u", (unsigned)n, (unsigned)o->attempts);
  else snprintf(buf, 32, "%u", (unsigned)n);
  return buf;
}

/* The client's on_attempt hook: with --verbose, one line per attempt. */
static void on_attempt(void *ud, const resil_http_attempt_event *ev) {
  const http_ctx *c = ud;
  const http_opts *o = c->o;
  if (o->verbosity != VERBOSE) return;
  const resil_http_attempt *a = ev->attempt;
  if (a->number == 1) {
    const char *key = resil_http_response_idempotency_key(ev->response);
    if (key) cli_msg("Idempotency-Key: %s (the same on every attempt)", key);
  }
  char n[32], what[512], hint[96] = "", tail[64] = "", d[32];
  http_describe(a->status, a->curl_code, resil_http_response_error(ev->response), 0, what,
                sizeof what);
  if (a->retry_after >= 0) {
    resil_duration_format(a->retry_after, d, sizeof d);
    snprintf(hint, sizeof hint, ", %s %s", http_delay_source(ev->response), d);
  }
  if (ev->will_retry) snprintf(tail, sizeof tail, "; retrying in %s", http_fmt_delay(a->delay, d));
  cli_msg("attempt %s: %s%s%s", attempt_label(o, a->number, n), what, hint, tail);
}

/* Before the request, with --verbose: a POST without a key is not retried
 * once it may have been processed. */
static void hint_not_idempotent(const http_ctx *c) {
  if (c->o->verbosity != VERBOSE || c->safe) return;
  cli_msg("%s is not idempotent and has no Idempotency-Key: it is retried only when it was "
          "never sent (use --idempotency-key auto, or --retry-non-idempotent)",
          c->o->method);
}

/* Why the call ended without success, after the output: one line. */
static void report_final(const http_ctx *c, const resil_http_response *r) {
  const http_opts *o = c->o;
  if (o->verbosity == QUIET) return;
  resil_stop_reason why = resil_http_response_stop_reason(r);
  if (why == RESIL_STOP_SUCCESS || why == RESIL_STOP_VERIFIED) return;
  int status = resil_http_response_status(r);
  int code = resil_http_response_curl_code(r);
  uint32_t attempts = resil_http_response_attempts(r);
  size_t nh = 0;
  const resil_http_attempt *hist = resil_http_response_history(r, &nh);
  const resil_http_attempt *last = nh ? &hist[nh - 1] : NULL;
  char what[768], a[32];
  http_describe(status, code, resil_http_response_error(r), 1, what, sizeof what);

  switch (why) {
    case RESIL_STOP_FATAL:
      if (code == 0 && status >= 400 && resil_codeset_has(&o->retry_status, status) &&
          status != 429 && !c->safe)
        cli_msg("%s; not retried: %s is not idempotent (use --idempotency-key auto, or "
                "--retry-non-idempotent)",
                what, o->method);
      else if (code == 0)
        cli_msg("%s; not retried (not in --retry-status)", what);
      else if (last && last->error_class == RESIL_ERRCLASS_TRANSIENT && !c->safe)
        cli_msg("%s; not retried: %s is not idempotent and may have been processed (use "
                "--idempotency-key auto, or --retry-non-idempotent)",
                what, o->method);
      else
        cli_msg("%s", what);
      break;
    case RESIL_STOP_ATTEMPTS:
      cli_msg("giving up after %u attempt%s: %s", (unsigned)attempts, attempts == 1 ? "" : "s",
              what);
      break;
    case RESIL_STOP_DEADLINE: {
      const char *mt = o->max_time_text ? o->max_time_text : "";
      /* libcurl keeps its timeouts in whole milliseconds, so an attempt the
       * deadline cut short may end a little before it: within 10ms, the
       * deadline is what ended the call. */
      if (resil_http_response_elapsed(r) + 10 * RESIL_MSEC >= o->max_time)
        cli_msg("giving up: --max-time %s reached: %s", mt, what);
      else cli_msg("giving up: the next retry would start after --max-time %s: %s", mt, what);
      break;
    }
    case RESIL_STOP_RETRY_AFTER:
      cli_msg("giving up: server asked to wait %s (%s), more than --retry-after-max %s",
              cli_fmt_duration(last ? last->retry_after : 0, a), http_delay_source(r),
              o->retry_after_max_text);
      break;
    case RESIL_STOP_BUDGET:
      if (o->budget_name) cli_msg("giving up: retry budget %s exhausted: %s", o->budget_name, what);
      else cli_msg("giving up: retry budget exhausted: %s", what);
      break;
    case RESIL_STOP_CIRCUIT_OPEN:
      if (attempts == 0) cli_msg("circuit open; the request was not sent");
      else cli_msg("giving up: circuit open: %s", what);
      break;
    case RESIL_STOP_CANCELLED: cli_msg("interrupted; not retrying"); break;
    default: cli_msg("giving up: %s: %s", resil_stop_reason_text(why), what); break;
  }
}

/* curl's exit status for how the call ended. */
static int exit_status(const resil_http_response *r) {
  resil_stop_reason why = resil_http_response_stop_reason(r);
  if (why == RESIL_STOP_CIRCUIT_OPEN || why == RESIL_STOP_BUDGET) return CLI_EXIT_UNAVAILABLE;
  int code = resil_http_response_curl_code(r);
  if (code != 0) return code > 0 && code <= 255 ? code : CLI_EXIT_INTERNAL;
  int status = resil_http_response_status(r);
  if (status >= 400) return HTTP_CURLE_HTTP_RETURNED_ERROR;
  if (status > 0) return CLI_EXIT_OK;
  return CLI_EXIT_INTERNAL; /* no status and no error: cannot happen */
}

/* ---- main ------------------------------------------------------------------ */

/* The fleet budget's log: its warnings (Redis unreachable) unless --quiet,
 * its notes with --verbose. */
static void budget_log(void *ud, resil_log_level level, const char *msg) {
  const http_opts *o = ud;
  if (o->verbosity == QUIET) return;
  if (level <= RESIL_LOG_WARN || o->verbosity == VERBOSE) cli_msg("%s", msg);
}

int cmd_http_main(int argc, char **argv) {
  http_opts o;
  int rc = parse_args(argc, argv, &o);
  if (rc >= 0) {
    opts_free(&o);
    return rc;
  }

  http_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.o = &o;
  ctx.safe = strcmp(o.method, "GET") == 0 || strcmp(o.method, "HEAD") == 0 ||
             resil_http_method_idempotent(o.method) || o.idem_key != NULL ||
             find_header(&o, "Idempotency-Key") != NULL || o.retry_non_idem;

  resil_http_client_config cfg;
  resil_http_client_config_init(&cfg);
  cfg.retry.max_attempts = o.attempts;
  cfg.retry.max_elapsed = o.max_time;
  cfg.retry.backoff = o.backoff;
  cfg.retry.retry_after_max = o.retry_after_max;
  cfg.attempt_timeout = o.attempt_timeout;
  cfg.retry_statuses = o.retry_status;
  cfg.retry_non_idempotent = o.retry_non_idem;
  cfg.follow_redirects = o.location;
  cfg.on_attempt = on_attempt;
  cfg.hook_ud = &ctx;

  resil_budget *budget = NULL;
  resil_err e;
  if (o.budget_url) {
    char why[256];
    e = resil_fleet_budget_open(&budget, o.budget_url, o.budget_name, o.budget_rate,
                                o.budget_burst, NULL, budget_log, &o, why, sizeof why);
    if (e == RESIL_EUNSUPPORTED) {
      cli_msg("this resil was built without hiredis; --budget-url is unavailable");
      opts_free(&o);
      return CLI_EXIT_NOT_BUILT;
    }
    if (e == RESIL_EINVAL) {
      rc = cli_usage_error(CMD, "--budget-url: %s", why);
      opts_free(&o);
      return rc;
    }
    if (e != RESIL_OK) {
      cli_msg("cannot create the retry budget: %s", resil_strerror(e));
      opts_free(&o);
      return HTTP_CURLE_FAILED_INIT;
    }
    cfg.retry.budget = budget;
  }

  resil_http_client *client = NULL;
  e = resil_http_client_new(&client, &cfg);
  if (e == RESIL_EUNSUPPORTED) {
    cli_msg("this resil was built without libcurl; 'resil http' is unavailable");
    resil_budget_free(budget);
    opts_free(&o);
    return CLI_EXIT_NOT_BUILT;
  }
  if (e != RESIL_OK) {
    cli_msg("cannot create the HTTP client: %s", resil_strerror(e));
    resil_budget_free(budget);
    opts_free(&o);
    return e == RESIL_ENOMEM ? HTTP_CURLE_OUT_OF_MEMORY : HTTP_CURLE_FAILED_INIT;
  }

  buffer body = {NULL, 0, 0};
  output out = {NULL, -1, 0};
  resil_http_response *resp = NULL;
  if (o.n_data) {
    rc = read_body(&o, &body);
    if (rc) goto done;
    /* curl's -d default, which the client would otherwise leave out. */
    if (find_header(&o, "Content-Type") == NULL &&
        (rc = add_header(&o, "Content-Type: application/x-www-form-urlencoded")) != 0)
      goto done;
  }
  if ((rc = output_open(&out, o.output)) != 0) goto done;

  resil_http_request req;
  resil_http_request_init(&req);
  req.method = o.method;
  req.url = o.url;
  req.headers = o.headers;
  req.n_headers = o.n_headers;
  if (o.n_data) {
    req.body = body.p;
    req.body_len = body.len;
  }
  req.idempotency_key = o.idem_key;

  hint_not_idempotent(&ctx);
  e = resil_http_do(client, &req, &resp);
  if (resp == NULL) {
    output_abandon(&out);
    if (e == RESIL_ENOMEM) {
      cli_msg("out of memory");
      rc = HTTP_CURLE_OUT_OF_MEMORY;
    } else if (e == RESIL_EINVAL) {
      rc = cli_usage_error(CMD, "invalid request");
    } else {
      cli_msg("the request failed: %s", resil_strerror(e));
      rc = CLI_EXIT_INTERNAL;
    }
    goto done;
  }

  rc = exit_status(resp);
  if (resil_http_response_status(resp) > 0) {
    int w = output_write(&out, resp, o.include);
    if (w) {
      report_final(&ctx, resp);
      rc = w;
      goto done;
    }
  } else {
    output_abandon(&out);
  }
  report_final(&ctx, resp);

done:
  if (out.fd >= 0) output_abandon(&out);
  resil_http_response_free(resp);
  resil_http_client_free(client);
  resil_budget_free(budget);
  free(body.p);
  opts_free(&o);
  return rc;
}
