/* `resil http`, tested end to end: the real binary against the
 * fault-injecting server (resil/faultserver.h), started in this process on
 * a free loopback port.
 *
 * Every test uses its own KEY on the server's keyed routes, so the counts
 * read back from /stats/KEY belong to that test alone. Delays are tiny
 * (--base 10ms, often without jitter so progress lines are exact); the one
 * exception waits for a real 1s Retry-After. */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli_harness.h"
#include "resil/faultserver.h"
#include "resil/http.h"

/* ---- the server, and reading its stats --------------------------------------- */

static resil_faultserver *server;
static resil_http_client *probe; /* reads /stats/KEY, without retries */

static int group_setup(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  if (resil_faultserver_start(&server, &cfg) != RESIL_OK) return -1;
  resil_http_client_config cc;
  resil_http_client_config_init(&cc);
  cc.retry.max_attempts = 1;
  if (resil_http_client_new(&probe, &cc) != RESIL_OK) return -1;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  resil_http_client_free(probe);
  resil_faultserver_stop(server);
  return 0;
}

/* The server's URL followed by path. */
static const char *url(const char *path, char *buf, size_t len) {
  snprintf(buf, len, "%s%s", resil_faultserver_url(server), path);
  return buf;
}
#define URL(path) url((path), (char[512]){0}, 512)

/* GET /stats/KEY: its JSON, which the caller frees. */
static char *stats(const char *key) {
  char path[128], u[512];
  snprintf(path, sizeof path, "/stats/%s", key);
  resil_http_request req;
  resil_http_request_init(&req);
  req.url = url(path, u, sizeof u);
  resil_http_response *r = NULL;
  assert_int_equal(resil_http_do(probe, &req, &r), RESIL_OK);
  assert_int_equal(resil_http_response_status(r), 200);
  size_t n;
  const char *body = resil_http_response_body(r, &n);
  char *copy = strdup(body);
  assert_non_null(copy);
  resil_http_response_free(r);
  return copy;
}

/* How many requests the server counted for KEY. */
static long requests_for(const char *key) {
  char *s = stats(key);
  long n = 0;
  const char *p = strstr(s, "\"requests\":");
  if (p) n = atol(p + strlen("\"requests\":"));
  else if (strstr(s, "\"tracked\":false") == NULL) fail_msg("no request count in %s", s);
  free(s);
  return n;
}

/* The string value of "field":"..." in a JSON text, into buf. */
static const char *json_str(const char *json, const char *field, char *buf, size_t len) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":\"", field);
  const char *p = strstr(json, pat);
  if (p == NULL) fail_msg("no \"%s\" string in %s", field, json);
  p += strlen(pat);
  const char *end = strchr(p, '"');
  assert_non_null(end);
  snprintf(buf, len, "%.*s", (int)(end - p), p);
  return buf;
}

static void expect(const capture *c, int status) {
  if (c->status != status)
    print_error("exit %d, expected %d\nstdout:\n%s\nstderr:\n%s\n", c->status, status, c->out,
                c->err);
  assert_int_equal(c->status, status);
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A loopback port nothing listens on: bound, then closed again. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(data, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- success ------------------------------------------------------------------ */

static void test_get_prints_the_body(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", URL("/flaky/get1?fail=0"));
  expect(&c, 0);
  assert_true(
      starts_with(c.out, "{\"status\":200,\"key\":\"get1\",\"attempt\":1,\"method\":\"GET\""));
  assert_string_equal(c.err, "");
  capture_free(&c);
  assert_int_equal(requests_for("get1"), 1);
}

static void test_retries_503_then_succeeds_verbose(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-v", "--base", "10ms", "--jitter", "none",
      URL("/flaky/flaky1?fail=2&status=503"));
  expect(&c, 0);
  assert_string_equal(c.err,
                      "resil: attempt 1/5: 503 Service Unavailable; retrying in 10ms\n"
                      "resil: attempt 2/5: 503 Service Unavailable; retrying in 20ms\n"
                      "resil: attempt 3/5: 200 OK\n");
  /* Only the final response reaches stdout: nothing of the two 503s. */
  assert_true(starts_with(c.out, "{\"status\":200,\"key\":\"flaky1\",\"attempt\":3,"));
  assert_null(strstr(c.out, "503"));
  capture_free(&c);
  assert_int_equal(requests_for("flaky1"), 3);
}

static void test_retry_after_sets_the_delay(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-v", "--base", "10ms", "--jitter", "none",
      URL("/flaky/ra0?fail=1&status=503&retry_after=1"));
  expect(&c, 0);
  assert_string_equal(c.err,
                      "resil: attempt 1/5: 503 Service Unavailable, Retry-After 1s; "
                      "retrying in 1.0s\n"
                      "resil: attempt 2/5: 200 OK\n");
  assert_true(c.elapsed >= 0.9);
  capture_free(&c);
}

static void test_output_file_gets_the_final_body_only(void **state) {
  fixture *f = *state;
  char out[256];
  path_in(f, "out.json", out, sizeof out);
  capture c;
  RUN(&c, "http", "--base", "10ms", "-o", out, URL("/flaky/out1?fail=2&status=503"));
  expect(&c, 0);
  assert_string_equal(c.out, "");
  assert_string_equal(c.err, "");
  capture_free(&c);
  char *body = slurp(out);
  assert_true(starts_with(body, "{\"status\":200,\"key\":\"out1\",\"attempt\":3,"));
  free(body);

  /* An existing file is replaced, not appended to. */
  const char *old = "old content, much longer than the new body: ... ... ... ... ... ... ...";
  write_file(out, old, strlen(old));
  RUN(&c, "http", "-o", out, URL("/status/404"));
  expect(&c, 22);
  capture_free(&c);
  body = slurp(out);
  assert_string_equal(body, "{\"status\":404}\n");
  free(body);

  /* -o - is standard output. */
  RUN(&c, "http", "-o", "-", URL("/status/200"));
  expect(&c, 0);
  assert_string_equal(c.out, "{\"status\":200}\n");
  capture_free(&c);
}

static void test_output_file_left_alone_without_a_response(void **state) {
  fixture *f = *state;
  char keep[256], fresh[256], u[64];
  path_in(f, "keep.txt", keep, sizeof keep);
  path_in(f, "fresh.txt", fresh, sizeof fresh);
  write_file(keep, "keep", 4);
  snprintf(u, sizeof u, "http://127.0.0.1:%d/", closed_port());
  capture c;
  RUN(&c, "http", "-q", "-n", "1", "-o", keep, u);
  expect(&c, 7);
  capture_free(&c);
  char *s = slurp(keep);
  assert_string_equal(s, "keep");
  free(s);
  RUN(&c, "http", "-q", "-n", "1", "-o", fresh, u);
  expect(&c, 7);
  capture_free(&c);
  assert_int_not_equal(access(fresh, F_OK), 0);

  /* A file that cannot be written stops resil before anything is sent. */
  char bad[300];
  snprintf(bad, sizeof bad, "%s/no/such/dir/out", f->dir);
  RUN(&c, "http", "-o", bad, URL("/flaky/out2?fail=0"));
  expect(&c, 23);
  char want[512];
  snprintf(want, sizeof want, "resil: cannot write %s: No such file or directory\n", bad);
  assert_string_equal(c.err, want);
  capture_free(&c);
  assert_int_equal(requests_for("out2"), 0);
}

static void test_include_prints_headers_first(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-i", "--base", "10ms", URL("/flaky/inc1?fail=1&status=503"));
  expect(&c, 0);
  assert_true(starts_with(c.out, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(c.out, "\r\nContent-Type: application/json\r\n"));
  const char *blank = strstr(c.out, "\r\n\r\n");
  assert_non_null(blank);
  assert_true(starts_with(blank + 4, "{\"status\":200,\"key\":\"inc1\",\"attempt\":2,"));
  /* The headers are the final response's alone. */
  assert_null(strstr(c.out, "503"));
  capture_free(&c);

  RUN(&c, "http", "-i", URL("/status/404"));
  expect(&c, 22);
  assert_true(starts_with(c.out, "HTTP/1.1 404 Not Found\r\n"));
  assert_non_null(strstr(c.out, "\r\n\r\n{\"status\":404}\n"));
  capture_free(&c);
}

/* ---- final failures -------------------------------------------------------------- */

static void test_404_is_final(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "--base", "10ms", URL("/flaky/nf1?fail=1&status=404"));
  expect(&c, 22);
  assert_string_equal(c.out, "{\"status\":404,\"key\":\"nf1\",\"attempt\":1,\"fail\":1}\n");
  assert_string_equal(c.err, "resil: 404 Not Found; not retried (not in --retry-status)\n");
  capture_free(&c);
  assert_int_equal(requests_for("nf1"), 1);

  /* ...unless --retry-status says otherwise. */
  RUN(&c, "http", "--base", "10ms", "--retry-status", "404", URL("/flaky/nf2?fail=1&status=404"));
  expect(&c, 0);
  capture_free(&c);
  assert_int_equal(requests_for("nf2"), 2);
}

static void test_503_forever_prints_the_last_body(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-n", "3", "--base", "10ms", URL("/flaky/sf1?fail=100&status=503"));
  expect(&c, 22);
  assert_string_equal(c.out, "{\"status\":503,\"key\":\"sf1\",\"attempt\":3,\"fail\":100}\n");
  assert_string_equal(c.err, "resil: giving up after 3 attempts: 503 Service Unavailable\n");
  capture_free(&c);
  assert_int_equal(requests_for("sf1"), 3);
}

static void test_connection_refused(void **state) {
  (void)state;
  char u[64];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/", closed_port());
  capture c;
  RUN(&c, "http", "-v", "-n", "3", "--base", "10ms", "--jitter", "none", u);
  expect(&c, 7);
  assert_string_equal(c.out, "");
  const char *want = "resil: attempt 1/3: connection refused (curl 7); retrying in 10ms\n"
                     "resil: attempt 2/3: connection refused (curl 7); retrying in 20ms\n"
                     "resil: attempt 3/3: connection refused (curl 7)\n"
                     "resil: giving up after 3 attempts: connection refused (curl 7";
  if (!starts_with(c.err, want)) print_error("stderr:\n%s", c.err);
  assert_true(starts_with(c.err, want));
  assert_int_equal(count_lines(c.err), 4);
  capture_free(&c);
}

static void test_attempt_timeout(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-v", "-n", "2", "--base", "10ms", "--jitter", "none", "--attempt-timeout",
      "200ms", URL("/slow?delay=5s"));
  expect(&c, 28);
  assert_true(starts_with(c.err, "resil: attempt 1/2: timed out (curl 28); retrying in 10ms\n"
                                 "resil: attempt 2/2: timed out (curl 28)\n"
                                 "resil: giving up after 2 attempts: timed out (curl 28"));
  assert_true(c.elapsed < 3.0);
  capture_free(&c);
}

static void test_max_time_bounds_the_attempt(void **state) {
  (void)state;
  capture c;
  /* The attempt timeout (30s by default) is cut to the time left. */
  RUN(&c, "http", "--max-time", "300ms", URL("/slow?delay=5s"));
  expect(&c, 28);
  assert_true(starts_with(c.err, "resil: giving up: --max-time 300ms reached: timed out (curl 28"));
  assert_true(c.elapsed < 2.0);
  capture_free(&c);

  /* A retry that would start after the deadline is not waited for. */
  RUN(&c, "http", "--max-time", "1s", "--base", "5s", "--jitter", "none",
      URL("/flaky/mt1?fail=5&status=503"));
  expect(&c, 22);
  assert_string_equal(
      c.err, "resil: giving up: the next retry would start after --max-time 1s: 503 Service "
             "Unavailable\n");
  assert_true(c.elapsed < 4.0); /* the 5 s backoff was not waited */
  capture_free(&c);
  assert_int_equal(requests_for("mt1"), 1);
}

static void test_retry_after_beyond_max_gives_up(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", URL("/flaky/ra1?fail=5&status=503&retry_after=7200"));
  expect(&c, 22);
  assert_string_equal(c.out, "{\"status\":503,\"key\":\"ra1\",\"attempt\":1,\"fail\":5}\n");
  assert_string_equal(c.err, "resil: giving up: server asked to wait 2h (Retry-After), more "
                             "than --retry-after-max 60s\n");
  assert_true(c.elapsed < 2.0);
  capture_free(&c);
  assert_int_equal(requests_for("ra1"), 1);

  RUN(&c, "http", "-v", "--retry-after-max", "30m",
      URL("/flaky/ra2?fail=5&status=503&retry_after=7200"));
  expect(&c, 22);
  assert_string_equal(c.err,
                      "resil: attempt 1/5: 503 Service Unavailable, Retry-After 2h\n"
                      "resil: giving up: server asked to wait 2h (Retry-After), more than "
                      "--retry-after-max 30m\n");
  capture_free(&c);
}

static void test_bad_url(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-v", "http://127.0.0.1:99999/");
  expect(&c, 3);
  assert_true(starts_with(c.err, "resil: attempt 1/5: malformed URL (curl 3)\n"
                                 "resil: malformed URL (curl 3"));
  assert_int_equal(count_lines(c.err), 2);
  capture_free(&c);
}

/* ---- POST and idempotency --------------------------------------------------------- */

static void test_post_without_key_is_not_retried(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-v", "--base", "10ms", "-d", "hello", URL("/flaky/pk1?fail=1&status=503"));
  expect(&c, 22);
  assert_string_equal(
      c.err,
      "resil: POST is not idempotent and has no Idempotency-Key: it is retried only when it "
      "was never sent (use --idempotency-key auto, or --retry-non-idempotent)\n"
      "resil: attempt 1/5: 503 Service Unavailable\n"
      "resil: 503 Service Unavailable; not retried: POST is not idempotent (use "
      "--idempotency-key auto, or --retry-non-idempotent)\n");
  capture_free(&c);
  assert_int_equal(requests_for("pk1"), 1);

  /* --retry-non-idempotent opts in. */
  RUN(&c, "http", "--base", "10ms", "-d", "hello", "--retry-non-idempotent",
      URL("/flaky/pk1b?fail=1&status=503"));
  expect(&c, 0);
  capture_free(&c);
  assert_int_equal(requests_for("pk1b"), 2);
}

static void test_post_with_auto_key_sends_one_key(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-v", "--base", "10ms", "--jitter", "none", "-d", "hello", "--idempotency-key",
      "auto", URL("/flaky/pk2?fail=2&status=503"));
  expect(&c, 0);
  char key[64];
  json_str(c.out, "idempotency_key", key, sizeof key);
  assert_int_equal(strlen(key), 36); /* a UUID */
  char want[512];
  snprintf(want, sizeof want,
           "resil: Idempotency-Key: %s (the same on every attempt)\n"
           "resil: attempt 1/5: 503 Service Unavailable; retrying in 10ms\n"
           "resil: attempt 2/5: 503 Service Unavailable; retrying in 20ms\n"
           "resil: attempt 3/5: 200 OK\n",
           key);
  assert_string_equal(c.err, want);
  capture_free(&c);

  /* One distinct value, seen on all three requests. */
  char *s = stats("pk2");
  snprintf(want, sizeof want,
           "\"requests\":3,\"methods\":{\"POST\":3},\"idempotency_keys\":{\"%s\":3}", key);
  if (strstr(s, want) == NULL) print_error("stats: %s\n", s);
  assert_non_null(strstr(s, want));
  free(s);
}

static void test_post_with_given_key(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "--base", "10ms", "-d", "x", "--idempotency-key", "order-42",
      URL("/flaky/pk3?fail=1&status=503"));
  expect(&c, 0);
  char key[64];
  assert_string_equal(json_str(c.out, "idempotency_key", key, sizeof key), "order-42");
  capture_free(&c);
  char *s = stats("pk3");
  assert_non_null(strstr(s, "\"idempotency_keys\":{\"order-42\":2}"));
  free(s);

  /* A key sent as an ordinary header counts too. */
  RUN(&c, "http", "--base", "10ms", "-d", "x", "-H", "Idempotency-Key: hdr-7",
      URL("/flaky/pk4?fail=1&status=503"));
  expect(&c, 0);
  capture_free(&c);
  s = stats("pk4");
  assert_non_null(strstr(s, "\"requests\":2,"));
  assert_non_null(strstr(s, "\"idempotency_keys\":{\"hdr-7\":2}"));
  free(s);
}

static void test_methods(void **state) {
  (void)state;
  capture c;
  /* -X wins over -d's POST; PUT and DELETE are idempotent, so retried. */
  RUN(&c, "http", "--base", "10ms", "-X", "PUT", "-d", "v", URL("/flaky/m1?fail=1&status=503"));
  expect(&c, 0);
  assert_non_null(strstr(c.out, "\"method\":\"PUT\""));
  capture_free(&c);
  RUN(&c, "http", "--base", "10ms", "-X", "DELETE", URL("/flaky/m2?fail=1&status=502"));
  expect(&c, 0);
  assert_non_null(strstr(c.out, "\"method\":\"DELETE\",\"body_bytes\":0"));
  capture_free(&c);
}

/* ---- request bodies ----------------------------------------------------------------- */

/* 4099 bytes with NULs, CRs and LFs in them; its SHA-256 was computed once
 * with sha256sum. */
#define FIXED_LEN 4099
#define FIXED_SHA256 "0ce42c8081bd563f10696d5608c37746929d69b1462efa25d09352bda85b2b88"

static void test_data_file_is_sent_byte_for_byte(void **state) {
  fixture *f = *state;
  char path[256], arg[300];
  path_in(f, "body.bin", path, sizeof path);
  unsigned char data[FIXED_LEN];
  for (size_t i = 0; i < FIXED_LEN; i++) data[i] = (unsigned char)(i * 131 + 7);
  write_file(path, data, FIXED_LEN);
  snprintf(arg, sizeof arg, "@%s", path);

  capture c;
  RUN(&c, "http", "-d", arg, URL("/flaky/body1?fail=0"));
  expect(&c, 0);
  assert_non_null(strstr(c.out, "\"method\":\"POST\",\"body_bytes\":4099,"
                                "\"body_sha256\":\"" FIXED_SHA256 "\""));
  capture_free(&c);

  /* The same bytes on a retry (the key makes the POST retryable). */
  RUN(&c, "http", "--base", "10ms", "--idempotency-key", "auto", "--data-binary", arg,
      URL("/flaky/body2?fail=1&status=500"));
  expect(&c, 0);
  assert_non_null(strstr(c.out, "\"attempt\":2,\"method\":\"POST\",\"body_bytes\":4099,"
                                "\"body_sha256\":\"" FIXED_SHA256 "\""));
  capture_free(&c);

  /* @- reads standard input (the harness gives /dev/null: empty). */
  RUN(&c, "http", "-d", "@-", URL("/flaky/body3?fail=0"));
  expect(&c, 0);
  assert_non_null(strstr(c.out, "\"body_bytes\":0,\"body_sha256\":\"" EMPTY_SHA256 "\""));
  capture_free(&c);

  /* Several -d are joined with '&', like curl's. */
  RUN(&c, "http", "-d", "a=1", "-d", "b=2", URL("/flaky/body4?fail=0"));
  expect(&c, 0);
  assert_non_null(strstr(c.out, "\"body_bytes\":7,\"body_sha256\":\"8e85be58c1c372ac29fe7bfa80"
                                "d8ddcbd04a4032c7b51c1c026d67c55b1ab23f\""));
  capture_free(&c);
}

static void test_unreadable_data_file(void **state) {
  fixture *f = *state;
  char path[256], arg[300], want[512];
  path_in(f, "missing.bin", path, sizeof path);
  snprintf(arg, sizeof arg, "@%s", path);
  capture c;
  RUN(&c, "http", "-q", "-d", arg, URL("/flaky/body5?fail=0"));
  expect(&c, 26);
  assert_string_equal(c.out, "");
  snprintf(want, sizeof want,
           "resil: cannot read the request body from %s: No such file or directory\n", path);
  assert_string_equal(c.err, want);
  capture_free(&c);
  assert_int_equal(requests_for("body5"), 0);
}

/* ---- output options -------------------------------------------------------------------- */

static void test_quiet(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "-q", "-n", "2", "--base", "10ms", URL("/flaky/q1?fail=100&status=503"));
  expect(&c, 22);
  assert_string_equal(c.err, "");
  assert_string_equal(c.out, "{\"status\":503,\"key\":\"q1\",\"attempt\":2,\"fail\":100}\n");
  capture_free(&c);
  /* --verbose and --quiet: the last one wins. */
  RUN(&c, "http", "-v", "--quiet", "-n", "2", "--base", "10ms",
      URL("/flaky/q2?fail=100&status=503"));
  expect(&c, 22);
  assert_string_equal(c.err, "");
  capture_free(&c);
}

static void test_help(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", "--help");
  expect(&c, 0);
  assert_true(starts_with(c.out, "Usage: resil http [OPTIONS] URL\n"));
  assert_string_equal(c.err, "");
  capture_free(&c);
  RUN(&c, "help", "http");
  expect(&c, 0);
  assert_true(starts_with(c.out, "Usage: resil http [OPTIONS] URL\n"));
  capture_free(&c);
}

/* ---- usage errors --------------------------------------------------------------------------- */

typedef struct http_usage_case {
  const char *args[6]; /* before the URL, NULL-terminated */
  int no_url;
  const char *message; /* the first line of stderr, after "resil: http: " */
} http_usage_case;

static void test_usage_errors(void **state) {
  (void)state;
  static const http_usage_case cases[] = {
      {{"-H", "NoColon", NULL}, 0, "invalid header for --header: 'NoColon' (use 'Name: value')"},
      {{"-H", "Bad Name: x", NULL}, 0,
       "invalid header name for --header: 'Bad Name' (use letters, digits and "
       "!#$%&'*+-.^_`|~)"},
      {{"-H", "X-A: b\r\nX-B: c", NULL}, 0,
       "the value of header 'X-A' contains a line break or another control character"},
      {{"-H", "X-A: b\nc", NULL}, 0,
       "the value of header 'X-A' contains a line break or another control character"},
      {{"--bogus", NULL}, 0, "unknown option '--bogus'"},
      {{"-Z", NULL}, 0, "unknown option '-Z'"},
      {{"--max-time", "5x", NULL}, 0,
       "invalid duration for --max-time: '5x' (use e.g. 250ms, 1.5s, 2m)"},
      {{"--attempt-timeout", "-1s", NULL}, 0,
       "invalid duration for --attempt-timeout: '-1s' (use e.g. 250ms, 1.5s, 2m)"},
      {{"--max-time", "0", NULL}, 0, "--max-time must be more than 0"},
      {{"-n", "x", NULL}, 0, "invalid number for --attempts: 'x' (use a whole number like 3)"},
      {{"-n", "0", NULL}, 0, "--attempts 0 (no limit) needs --max-time"},
      {{"--cap", "1s", "--base", "2s", NULL}, 0, "--cap 1s is less than --base 2s"},
      {{"--jitter", "lots", NULL}, 0,
       "invalid value for --jitter: 'lots' (use full, equal, none, decorrelated, additive or "
       "proportional)"},
      {{"--retry-status", "5x", NULL}, 0,
       "invalid statuses for --retry-status: '5x' (use e.g. 429,503 or 500-599,!501)"},
      {{"--retry-status", "700", NULL}, 0,
       "status out of range in --retry-status: '700' (HTTP statuses are 100 to 599)"},
      {{"--idempotency-key", "a b", NULL}, 0,
       "invalid value for --idempotency-key: 'a b' (use auto, or 1 to 255 visible ASCII "
       "characters)"},
      {{"-X", "GE T", NULL}, 0, "invalid method for --request: 'GE T'"},
      {{"-d", "@", NULL}, 0,
       "missing file name after '@' in --data (use @FILE, or @- for standard input)"},
      {{"-o", "", NULL}, 0, "--output needs a file name"},
      {{"--include=yes", NULL}, 0, "option '--include' takes no value"},
      {{"-v", NULL}, 1, "missing URL"},
      {{"-X", NULL}, 1, "option '-X' needs a value"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const http_usage_case *uc = &cases[i];
    const char *argv[10];
    size_t n = 0;
    argv[n++] = "http";
    for (size_t k = 0; uc->args[k]; k++) argv[n++] = uc->args[k];
    char u[512];
    if (!uc->no_url) argv[n++] = url("/flaky/usage?fail=0", u, sizeof u);
    argv[n] = NULL;
    capture c;
    run_resil_argv(&c, NULL, argv);
    char want[1024];
    snprintf(want, sizeof want, "resil: http: %s\nTry 'resil http --help'.\n", uc->message);
    if (c.status != 64 || strcmp(c.err, want) != 0)
      print_error("case %zu: exit %d\nstderr:\n%s\nwanted:\n%s", i, c.status, c.err, want);
    assert_int_equal(c.status, 64);
    assert_string_equal(c.err, want);
    assert_string_equal(c.out, "");
    capture_free(&c);
  }
  /* One URL per call. */
  capture c;
  char u[512], want[1024];
  RUN(&c, "http", "http://a/", url("/flaky/usage?fail=0", u, sizeof u));
  expect(&c, 64);
  snprintf(want, sizeof want,
           "resil: http: too many arguments: '%s' (one URL per call)\n"
           "Try 'resil http --help'.\n",
           u);
  assert_string_equal(c.err, want);
  capture_free(&c);
  /* None of them sent anything. */
  assert_int_equal(requests_for("usage"), 0);
}

/* Options may come after the URL, like curl's; "--" ends them. */
static void test_options_after_the_url(void **state) {
  (void)state;
  capture c;
  RUN(&c, "http", URL("/flaky/late1?fail=1&status=503"), "--base", "10ms", "-v", "--jitter",
      "none");
  expect(&c, 0);
  assert_string_equal(c.err,
                      "resil: attempt 1/5: 503 Service Unavailable; retrying in 10ms\n"
                      "resil: attempt 2/5: 200 OK\n");
  capture_free(&c);
  RUN(&c, "http", "-q", "--", URL("/status/200"));
  expect(&c, 0);
  capture_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_prints_the_body),
      cmocka_unit_test(test_retries_503_then_succeeds_verbose),
      cmocka_unit_test(test_retry_after_sets_the_delay),
      cmocka_unit_test_setup_teardown(test_output_file_gets_the_final_body_only, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_output_file_left_alone_without_a_response,
                                      fixture_setup, fixture_teardown),
      cmocka_unit_test(test_include_prints_headers_first),
      cmocka_unit_test(test_404_is_final),
      cmocka_unit_test(test_503_forever_prints_the_last_body),
      cmocka_unit_test(test_connection_refused),
      cmocka_unit_test(test_attempt_timeout),
      cmocka_unit_test(test_max_time_bounds_the_attempt),
      cmocka_unit_test(test_retry_after_beyond_max_gives_up),
      cmocka_unit_test(test_bad_url),
      cmocka_unit_test(test_post_without_key_is_not_retried),
      cmocka_unit_test(test_post_with_auto_key_sends_one_key),
      cmocka_unit_test(test_post_with_given_key),
      cmocka_unit_test(test_methods),
      cmocka_unit_test_setup_teardown(test_data_file_is_sent_byte_for_byte, fixture_setup,
                                      fixture_teardown),
      cmocka_unit_test_setup_teardown(test_unreadable_data_file, fixture_setup, fixture_teardown),
      cmocka_unit_test(test_quiet),
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_usage_errors),
      cmocka_unit_test(test_options_after_the_url),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
