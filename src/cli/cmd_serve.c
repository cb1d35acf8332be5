/* `resil serve`: run the fault-injecting HTTP server (resil/faultserver.h)
 * until SIGINT or SIGTERM. With --idempotent it also serves POST /orders
 * behind the idempotency layer (resil/idem_server.h) on a store
 * (resil/store.h).
 *
 * The signals are blocked before the server starts, so its threads inherit
 * the mask and only this thread receives them, in sigwait(): no handler
 * runs, and stopping happens on the ordinary path. */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "resil/faultserver.h"
#include "resil/idem_server.h"
#include "resil/store.h"

#define CMD "serve"

/* The address cannot be listened on: in use, not permitted, no such
 * address (sysexits.h EX_OSERR). */

enum {
  OPT_LISTEN,
  OPT_ALLOW_REMOTE,
  OPT_THREADS,
  OPT_FAIL_RATE,
  OPT_FAIL_STATUS,
  OPT_LATENCY,
  OPT_OUTAGE,
  OPT_SEED,
  OPT_MAX_KEYS,
  OPT_MAX_BODY,
  OPT_IDEMPOTENT,
  OPT_STORE,
  OPT_REQUIRE_KEY,
  OPT_STORE_FAIL_OPEN,
  OPT_IDEM_LEASE,
  OPT_LOST_RESPONSE_RATE,
  OPT_HELP
};

static const cli_option serve_options[] = {
    {"listen", 0, 1, OPT_LISTEN},
    {"allow-remote", 0, 0, OPT_ALLOW_REMOTE},
    {"threads", 0, 1, OPT_THREADS},
    {"fail-rate", 0, 1, OPT_FAIL_RATE},
    {"fail-status", 0, 1, OPT_FAIL_STATUS},
    {"latency", 0, 1, OPT_LATENCY},
    {"outage", 0, 1, OPT_OUTAGE},
    {"seed", 0, 1, OPT_SEED},
    {"max-keys", 0, 1, OPT_MAX_KEYS},
    {"max-body", 0, 1, OPT_MAX_BODY},
    {"idempotent", 0, 0, OPT_IDEMPOTENT},
    {"store", 0, 1, OPT_STORE},
    {"require-key", 0, 0, OPT_REQUIRE_KEY},
    {"store-fail-open", 0, 0, OPT_STORE_FAIL_OPEN},
    {"idem-lease", 0, 1, OPT_IDEM_LEASE},
    {"lost-response-rate", 0, 1, OPT_LOST_RESPONSE_RATE},
    {"help", 'h', 0, OPT_HELP},
    {NULL, 0, 0, 0},
};

void cmd_serve_help(FILE *out) {
  fputs(
      "Usage: resil serve [OPTIONS]\n"
      "\n"
      "Run an HTTP server that fails on purpose, to test clients (resil's own\n"
      "included) against error statuses, Retry-After, dropped connections,\n"
      "truncated bodies, slow answers, rate limits and outages. Once it accepts\n"
      "connections it prints 'listening on http://HOST:PORT' on stdout, then\n"
      "serves until SIGINT or SIGTERM.\n"
      "\n"
      "Options:\n"
      "      --listen HOST:PORT   where to listen; a numeric host, IPv6 as\n"
      "                           [::1]:PORT (default 127.0.0.1:0: port 0 picks a\n"
      "                           free port)\n"
      "      --allow-remote       allow a --listen address that is not loopback\n"
      "                           (without it, only 127.0.0.0/8 and ::1)\n"
      "      --threads N          worker threads, 1 to 256 (default 4)\n"
      "      --fail-rate P        fail this fraction of requests, 0 to 1 (default 0)\n"
      "      --fail-status CODE   status for --fail-rate and --outage failures,\n"
      "                           100 to 599 (default 503)\n"
      "      --latency DUR        delay every answer by DUR (default 0)\n"
      "      --outage START+DUR   fail every request from START after startup for\n"
      "                           DUR, with Retry-After (e.g. 10s+30s)\n"
      "      --seed N             seed the --fail-rate draws, for reproducible runs\n"
      "      --max-keys N         KEYs tracked at once; the least recently used is\n"
      "                           forgotten (default 10000)\n"
      "      --max-body BYTES     larger request bodies get 413 (default 1048576)\n"
      "  -h, --help               show this help\n"
      "\n"
      "Idempotent orders (a real side effect behind the idempotency layer):\n"
      "      --idempotent         serve POST /orders and GET /orders/count\n"
      "      --store URL          where idempotency keys live: memory: (default)\n"
      "                           or sqlite:PATH, which several servers can share\n"
      "      --require-key        POST /orders without an Idempotency-Key gets 400\n"
      "      --store-fail-open    if the store fails, create the order anyway (no\n"
      "                           deduplication) instead of answering 503\n"
      "                           (default: it just runs)\n"
      "      --idem-lease DUR     how long a claimed key is held for a request in\n"
      "                           progress; a holder that dies is taken over after\n"
      "                           it (default 30s)\n"
      "      --lost-response-rate P\n"
      "                           of the --fail-rate and --outage failures of\n"
      "                           POST /orders, the fraction that strikes after\n"
      "                           the order was created: the connection is dropped\n"
      "                           without an answer (default 0.5)\n"
      "\n"
      "DUR is a duration such as 250ms, 1.5s or 2m; a bare number is seconds.\n"
      "\n"
      "Routes (any method; KEY is one path segment with its own request count):\n"
      "  /status/CODE[?retry_after=V]   answer CODE, with 'Retry-After: V' if given\n"
      "  /flaky/KEY[?fail=N&status=CODE&retry_after=V]\n"
      "                                 the first N requests (default 1) get CODE\n"
      "                                 (default 503); later ones 200 with JSON\n"
      "                                 echoing the method, attempt number, body\n"
      "                                 SHA-256 and Idempotency-Key\n"
      "  /drop/KEY[?n=N]                close the connection without answering for\n"
      "                                 the first N requests (default 1), then 200\n"
      "  /slow[?delay=DUR]              answer after DUR (default 1s, at most 60s)\n"
      "  /truncate                      declare a longer Content-Length than is\n"
      "                                 sent, then close\n"
      "  /ratelimit/KEY[?n=N&reset=S]   the first N requests (default 1) get 429\n"
      "                                 with Retry-After: S and RateLimit-Reset: S\n"
      "                                 (default 1) and X-RateLimit-Reset: now+S\n"
      "  /stats, /stats/KEY             JSON: counts, methods, Idempotency-Keys\n"
      "  POST /orders[?delay=DUR]       (--idempotent) create an order once per\n"
      "                                 Idempotency-Key: 201 with the order as\n"
      "                                 JSON, replayed with Idempotent-Replayed:\n"
      "                                 true; 400 bad or missing key, 409 in\n"
      "                                 progress, 422 key reused for another\n"
      "                                 request, 503 store unavailable. DUR\n"
      "                                 (default 0) makes the handler slow. The\n"
      "                                 Authorization header is the key's scope\n"
      "  GET /orders/count              (--idempotent) {\"orders\":N} created by\n"
      "                                 this process\n"
      "Bad parameters get 400, unknown paths 404. --latency, --fail-rate and\n"
      "--outage apply to every route but /stats and /orders/count.\n"
      "\n"
      "Exit status:\n"
      "  0    stopped by SIGINT or SIGTERM\n"
      "  64   usage error\n"
      "  69   this resil was built without the server (libmicrohttpd), or\n"
      "       --idempotent without idempotency (libcrypto) or the --store backend\n"
      "  71   cannot listen on the address (in use, not permitted, not local)\n"
      "  74   the --store cannot be opened (e.g. an unwritable SQLite file)\n"
      "\n"
      "Examples:\n"
      "  resil serve --listen 127.0.0.1:8080\n"
      "  resil serve --fail-rate 0.2 --seed 1 --latency 50ms\n"
      "  curl -i 'http://127.0.0.1:8080/flaky/job1?fail=2&status=503&retry_after=1'\n"
      "  resil serve --idempotent --store sqlite:/tmp/orders.db --fail-rate 0.3\n"
      "  curl -i -X POST -H 'Idempotency-Key: k1' http://127.0.0.1:8080/orders\n",
      out);
}

/* ---- values ------------------------------------------------------------------- */

/* A plain decimal fraction in [0, 1]: digits and one optional point (no
 * signs, exponents, hex, inf or nan, which strtod would take). */
static int parse_rate(const char *opt, const char *text, double *out) {
  int digits = 0, points = 0;
  for (const char *p = text; *p; p++) {
    if (*p >= '0' && *p <= '9') digits++;
    else if (*p == '.' && points++ == 0) continue;
    else digits = -1000;
  }
  if (digits <= 0) goto bad;
  char *end;
  double v = strtod(text, &end);
  if (*end != '\0' || !(v >= 0.0 && v <= 1.0)) goto bad;
  *out = v;
  return 0;
bad:
  return cli_usage_error(CMD, "invalid value for %s: '%s' (use a number from 0 to 1, like 0.25)",
                         opt, text);
}

/* "START+DURATION", both durations; DURATION more than 0. */
static int parse_outage(const char *text, resil_ns *start, resil_ns *dur) {
  const char *plus = strchr(text, '+');
  char first[64];
  if (plus == NULL || (size_t)(plus - text) >= sizeof first) goto bad;
  memcpy(first, text, (size_t)(plus - text));
  first[plus - text] = '\0';
  if (resil_duration_parse(first, start) != RESIL_OK ||
      resil_duration_parse(plus + 1, dur) != RESIL_OK)
    goto bad;
  if (*dur == 0) return cli_usage_error(CMD, "the outage in --outage %s lasts 0s", text);
  return 0;
bad:
  return cli_usage_error(CMD, "invalid value for --outage: '%s' (use START+DURATION, e.g. 10s+30s)",
                         text);
}

/* Is --listen well formed ("A.B.C.D:PORT" or "[V6]:PORT", numeric) and is it
 * loopback? Returns -1 when malformed, else 1 for loopback and 0 for not.
 * The library checks the form again; this is for the message and the
 * loopback rule. */
static int listen_is_loopback(const char *text) {
  const char *colon = strrchr(text, ':');
  char host[64];
  if (colon == NULL || colon == text || colon[1] == '\0') return -1;
  for (const char *p = colon + 1; *p; p++)
    if (*p < '0' || *p > '9') return -1;
  if (strtoul(colon + 1, NULL, 10) > 65535 || strlen(colon + 1) > 5) return -1;
  const char *h = text, *h_end = colon;
  int v6 = text[0] == '[';
  if (v6) {
    if (colon[-1] != ']') return -1;
    h++;
    h_end--;
  }
  if (h_end <= h || (size_t)(h_end - h) >= sizeof host) return -1;
  memcpy(host, h, (size_t)(h_end - h));
  host[h_end - h] = '\0';
  if (!v6) {
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1) return -1;
    return (ntohl(a.s_addr) >> 24) == 127;
  }
  struct in6_addr a6;
  if (inet_pton(AF_INET6, host, &a6) != 1) return -1;
  if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
  return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/* The server reports a store it cannot open only as an error code, so the
 * store and the idempotency layer are tried here first, for the message and
 * the exit status. (The server opens the store again; for sqlite: the file
 * is then already created.) Returns -1 to go on, or an exit status. */
static int check_store(const resil_faultserver_config *cfg) {
  char msg[256];
  resil_store *store = NULL;
  resil_err err = resil_store_open(&store, cfg->store_url, NULL, msg, sizeof msg);
  switch (err) {
    case RESIL_OK: break;
    case RESIL_EINVAL: return cli_usage_error(CMD, "invalid value for --store: %s", msg);
    case RESIL_EUNSUPPORTED:
      cli_msg("serve: --store %s: %s", cfg->store_url, msg);
      return CLI_EXIT_NOT_BUILT;
    default:
      cli_msg("serve: cannot open the store %s: %s", cfg->store_url,
              msg[0] ? msg : resil_strerror(err));
      return CLI_EXIT_IOERR;
  }
  resil_idem_config ic;
  resil_idem_config_init(&ic);
  ic.store = store;
  resil_idem *idem = NULL;
  err = resil_idem_new(&idem, &ic);
  resil_idem_free(idem);
  resil_store_close(store);
  if (err == RESIL_EUNSUPPORTED) {
    cli_msg("serve: this resil was built without server-side idempotency (libcrypto), so "
            "--idempotent is not available");
    return CLI_EXIT_NOT_BUILT;
  }
  if (err != RESIL_OK) {
    cli_msg("serve: cannot set up idempotency: %s", resil_strerror(err));
    return CLI_EXIT_INTERNAL;
  }
  return -1;
}

/* ---- main ------------------------------------------------------------------------- */

/* Returns -1 to go on and serve, or an exit status. */
static int parse_args(int argc, char **argv, resil_faultserver_config *cfg) {
  int allow_remote = 0;
  const char *needs_idem = NULL; /* an --idempotent option given without it */
  cli_optparser p;
  cli_optparser_init(&p, argc, argv, CMD, serve_options);
  for (;;) {
    const char *name, *val;
    int id = cli_optparser_next(&p, &name, &val);
    if (id == CLI_OPT_DONE) break;
    if (id == CLI_OPT_ERROR) return CLI_EXIT_USAGE;
    uint64_t u = 0;
    int bad = 0;
    switch (id) {
      case OPT_LISTEN: cfg->listen = val; break;
      case OPT_ALLOW_REMOTE: allow_remote = 1; break;
      case OPT_THREADS:
        bad = cli_parse_uint(CMD, name, val, 256, &u);
        if (!bad && u == 0) return cli_usage_error(CMD, "--threads must be at least 1");
        cfg->threads = (unsigned)u;
        break;
      case OPT_FAIL_RATE: bad = parse_rate(name, val, &cfg->fail_rate); break;
      case OPT_FAIL_STATUS:
        bad = cli_parse_uint(CMD, name, val, 599, &u);
        if (!bad && u < 100)
          return cli_usage_error(CMD, "--fail-status must be from 100 to 599, not %s", val);
        cfg->fail_status = (int)u;
        break;
      case OPT_LATENCY: bad = cli_parse_duration(CMD, name, val, &cfg->latency); break;
      case OPT_OUTAGE:
        bad = parse_outage(val, &cfg->outage_start, &cfg->outage_duration);
        break;
      case OPT_SEED:
        bad = cli_parse_uint(CMD, name, val, UINT64_MAX, &cfg->seed);
        cfg->use_seed = 1;
        break;
      case OPT_MAX_KEYS:
        bad = cli_parse_uint(CMD, name, val, SIZE_MAX, &u);
        if (!bad && u == 0) return cli_usage_error(CMD, "--max-keys must be at least 1");
        cfg->max_keys = (size_t)u;
        break;
      case OPT_MAX_BODY:
        bad = cli_parse_uint(CMD, name, val, SIZE_MAX, &u);
        cfg->max_body = (size_t)u;
        break;
      case OPT_IDEMPOTENT: cfg->idempotent = 1; break;
      case OPT_STORE:
        cfg->store_url = val;
        needs_idem = "--store";
        break;
      case OPT_REQUIRE_KEY:
        cfg->require_key = 1;
        needs_idem = "--require-key";
        break;
      case OPT_STORE_FAIL_OPEN:
        cfg->store_fail_open = 1;
        needs_idem = "--store-fail-open";
        break;
      case OPT_IDEM_LEASE:
        bad = cli_parse_duration(CMD, name, val, &cfg->idem_lease);
        if (!bad && cfg->idem_lease <= 0)
          return cli_usage_error(CMD, "--idem-lease must be more than 0");
        needs_idem = "--idem-lease";
        break;
      case OPT_LOST_RESPONSE_RATE:
        bad = parse_rate(name, val, &cfg->lost_response_rate);
        needs_idem = "--lost-response-rate";
        break;
      case OPT_HELP: cmd_serve_help(stdout); return CLI_EXIT_OK;
      default: break;
    }
    if (bad) return CLI_EXIT_USAGE;
  }
  if (p.index < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[p.index]);
  if (needs_idem && !cfg->idempotent)
    return cli_usage_error(CMD, "%s only applies to --idempotent", needs_idem);

  int loopback = listen_is_loopback(cfg->listen);
  if (loopback < 0)
    return cli_usage_error(CMD,
                           "invalid address for --listen: '%s' (use 127.0.0.1:PORT or "
                           "[::1]:PORT, with a numeric host)",
                           cfg->listen);
  if (!loopback && !allow_remote)
    return cli_usage_error(CMD,
                           "--listen %s is not a loopback address; this server fails on "
                           "purpose, so add --allow-remote to serve other hosts",
                           cfg->listen);
  return -1;
}

int cmd_serve_main(int argc, char **argv) {
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  int rc = parse_args(argc, argv, &cfg);
  if (rc >= 0) return rc;
  if (cfg.idempotent && (rc = check_store(&cfg)) >= 0) return rc;

  /* Block before any server thread exists, so all of them inherit it.
   * A background job may have inherited SIGINT ignored, and an ignored
   * signal may be discarded rather than left for sigwait: restore the
   * default action (harmless while blocked). */
  sigset_t sigs, old;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, &old);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGINT, &dfl, NULL);
  sigaction(SIGTERM, &dfl, NULL);

  resil_faultserver *server = NULL;
  resil_err err = resil_faultserver_start(&server, &cfg);
  if (err != RESIL_OK) {
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    switch (err) {
      case RESIL_EUNSUPPORTED:
        cli_msg("serve: this resil was built without the fault server (libmicrohttpd)");
        return CLI_EXIT_NOT_BUILT;
      case RESIL_ESYS:
        cli_msg("serve: cannot listen on %s: %s", cfg.listen, strerror(e));
        return CLI_EXIT_OSERR;
      case RESIL_EINVAL: return cli_usage_error(CMD, "invalid settings");
      case RESIL_ESTORE:
        cli_msg("serve: cannot open the store %s", cfg.store_url);
        return CLI_EXIT_IOERR;
      default:
        cli_msg("serve: cannot start: %s", resil_strerror(err));
        return CLI_EXIT_OSERR;
    }
  }

  printf("listening on %s\n", resil_faultserver_url(server));
  fflush(stdout);

  int sig = 0;
  while (sigwait(&sigs, &sig) != 0) {
  }
  /* The signals stay blocked: a second one during or after the stop must
   * not kill the process before it exits 0. */
  resil_faultserver_stop(server);
  return CLI_EXIT_OK;
}
