/* The retrying HTTP client against the real fault-injecting server, in
 * process, over loopback. Time is real (libcurl needs it), so backoff is
 * kept to milliseconds and server-requested delays to a second or two. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "resil/faultserver.h"
#include "resil/http.h"
#include "resil/http_date.h"
#include "test_util.h"

/* ---- fixtures ---------------------------------------------------------------- */

static resil_faultserver *g_srv;
static const char *g_base; /* "http://127.0.0.1:PORT" */

static int group_setup(void **state) {
  (void)state;
  resil_faultserver_config fc;
  resil_faultserver_config_init(&fc);
  fc.threads = 8;
  if (resil_faultserver_start(&g_srv, &fc) != RESIL_OK) return -1;
  g_base = resil_faultserver_url(g_srv);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  resil_faultserver_stop(g_srv);
  return 0;
}

static resil_ns mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (resil_ns)ts.tv_sec * RESIL_SEC + ts.tv_nsec;
}

/* Test defaults: 4 attempts, 1..10 ms full-jitter backoff, short timeouts. */
static void test_config(resil_http_client_config *cfg) {
  resil_http_client_config_init(cfg);
  cfg->retry.max_attempts = 4;
  cfg->retry.backoff.base = RESIL_MSEC;
  cfg->retry.backoff.cap = 10 * RESIL_MSEC;
  cfg->retry.use_seed = 1;
  cfg->retry.seed = 42;
  cfg->attempt_timeout = 10 * RESIL_SEC;
  cfg->connect_timeout = 5 * RESIL_SEC;
}

static resil_http_client *new_client(const resil_http_client_config *cfg) {
  resil_http_client *c = NULL;
  assert_int_equal(resil_http_client_new(&c, cfg), RESIL_OK);
  assert_non_null(c);
  return c;
}

static resil_http_client *default_client(void) {
  resil_http_client_config cfg;
  test_config(&cfg);
  return new_client(&cfg);
}

static const char *url(char *buf, size_t len, const char *path) {
  snprintf(buf, len, "%s%s", g_base, path);
  return buf;
}
#define URL(buf, path) url((buf), sizeof(buf), (path))

/* GET (or method) url, expecting err; returns the response. */
static resil_http_response *run(resil_http_client *c, const char *method, const char *u,
                                resil_err expect) {
  resil_http_request req;
  resil_http_request_init(&req);
  req.method = method;
  req.url = u;
  resil_http_response *r = NULL;
  assert_int_equal(resil_http_do(c, &req, &r), expect);
  assert_non_null(r);
  return r;
}

/* Fetch /stats/KEY into buf (NUL-terminated). */
static void stats(resil_http_client *c, const char *key, char *buf, size_t len) {
  char path[128], u[256];
  snprintf(path, sizeof path, "/stats/%s", key);
  resil_http_response *r = run(c, "GET", URL(u, path), RESIL_OK);
  size_t n;
  const char *b = resil_http_response_body(r, &n);
  snprintf(buf, len, "%.*s", (int)n, b);
  resil_http_response_free(r);
}

/* ---- statuses ---------------------------------------------------------------- */

typedef struct engine_hooks {
  int retries, give_ups;
  const void *call_ud;
} engine_hooks;

static void hook_retry(void *ud, const resil_retry_event *ev) {
  engine_hooks *h = ud;
  h->retries++;
  h->call_ud = ev->call_ud;
}

static void hook_give_up(void *ud, const resil_retry_result *r, void *call_ud) {
  engine_hooks *h = ud;
  (void)r;
  h->give_ups++;
  h->call_ud = call_ud;
}

static void test_engine_hooks_see_the_request(void **state) {
  (void)state;
  engine_hooks eh = {0, 0, NULL};
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.on_retry = hook_retry;
  cfg.retry.on_give_up = hook_give_up;
  cfg.retry.ud = &eh;
  resil_http_client *c = new_client(&cfg);
  char u[256];
  resil_http_request req;
  resil_http_request_init(&req);
  req.url = URL(u, "/flaky/hooks1?fail=1");
  resil_http_response *r = NULL;
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_OK);
  assert_int_equal(eh.retries, 1);
  assert_int_equal(eh.give_ups, 0);
  assert_ptr_equal(eh.call_ud, &req);
  resil_http_response_free(r);
  req.url = URL(u, "/status/404");
  eh.call_ud = NULL;
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EFAILED);
  assert_int_equal(eh.give_ups, 1);
  assert_ptr_equal(eh.call_ud, &req);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

static void test_retry_503_then_success(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  char u[256];
  resil_http_response *r = run(c, "GET", URL(u, "/flaky/get503?fail=2&status=503"), RESIL_OK);
  assert_int_equal(resil_http_response_status(r), 200);
  assert_int_equal(resil_http_response_attempts(r), 3);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_SUCCESS);
  assert_int_equal(resil_http_response_curl_code(r), 0);
  size_t n;
  const resil_http_attempt *h = resil_http_response_history(r, &n);
  assert_int_equal(n, 3);
  assert_int_equal(h[0].status, 503);
  assert_int_equal(h[1].status, 503);
  assert_int_equal(h[2].status, 200);
  assert_int_equal(h[0].number, 1);
  assert_int_equal(h[2].number, 3);
  assert_int_equal(h[0].retry_after, -1);
  assert_true(h[0].delay <= 10 * RESIL_MSEC);
  assert_int_equal(h[2].delay, 0);
  const char *body = resil_http_response_body(r, &n);
  assert_non_null(strstr(body, "\"attempt\":3"));
  assert_int_equal(strlen(body), n);
  assert_null(resil_http_response_idempotency_key(r));
  assert_true(resil_http_response_elapsed(r) > 0);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

static void test_no_retry_on_client_errors(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  static const int codes[] = {400, 401, 403, 404, 501};
  for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
    char path[64], u[256];
    snprintf(path, sizeof path, "/status/%d", codes[i]);
    resil_http_response *r = run(c, "GET", URL(u, path), RESIL_EFAILED);
    assert_int_equal(resil_http_response_status(r), codes[i]);
    assert_int_equal(resil_http_response_attempts(r), 1);
    assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_FATAL);
    size_t n;
    assert_non_null(strstr(resil_http_response_body(r, &n), "\"status\":"));
    resil_http_response_free(r);
  }
  /* 3xx and 2xx are successes, not retried */
  char u[256];
  resil_http_response *r = run(c, "GET", URL(u, "/status/204"), RESIL_OK);
  assert_int_equal(resil_http_response_attempts(r), 1);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

static void test_retry_after_seconds(void **state) {
  (void)state;
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.max_attempts = 2;
  resil_http_client *c = new_client(&cfg);
  char u[256];
  resil_ns t0 = mono_now();
  resil_http_response *r =
      run(c, "GET", URL(u, "/flaky/ra1?fail=1&status=503&retry_after=1"), RESIL_OK);
  resil_ns took = mono_now() - t0;
  size_t n;
  const resil_http_attempt *h = resil_http_response_history(r, &n);
  assert_int_equal(n, 2);
  assert_int_equal(h[0].retry_after, RESIL_SEC);
  assert_true(h[0].delay >= RESIL_SEC);
  assert_true(took >= RESIL_SEC);
  assert_true(took < 5 * RESIL_SEC);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" -> URL-encoded for a query value. */
static void url_encode(const char *in, char *out, size_t len) {
  size_t o = 0;
  for (; *in && o + 4 < len; in++) {
    if (*in == ' ' || *in == ',' || *in == ':')
      o += (size_t)snprintf(out + o, len - o, "%%%02X", (unsigned char)*in);
    else
      out[o++] = *in;
  }
  out[o] = '\0';
}

static void test_retry_after_dates(void **state) {
  (void)state;
  static const char *const days[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                     "Thursday", "Friday", "Saturday"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.max_attempts = 2;
  resil_http_client *c = new_client(&cfg);
  for (int form = 0; form < 3; form++) {
    time_t when = time(NULL) + 2;
    struct tm tm;
    gmtime_r(&when, &tm);
    char date[64], enc[160], path[256], u[512];
    if (form == 0) resil_http_date_format((int64_t)when, date, sizeof date);
    else if (form == 1)
      snprintf(date, sizeof date, "%s, %02d-%s-%02d %02d:%02d:%02d GMT", days[tm.tm_wday],
               tm.tm_mday, months[tm.tm_mon], tm.tm_year % 100, tm.tm_hour, tm.tm_min,
               tm.tm_sec);
    else
      snprintf(date, sizeof date, "%.3s %s %2d %02d:%02d:%02d %d", days[tm.tm_wday],
               months[tm.tm_mon], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
               tm.tm_year + 1900);
    url_encode(date, enc, sizeof enc);
    snprintf(path, sizeof path, "/flaky/date%d?fail=1&status=503&retry_after=%s", form, enc);
    resil_ns t0 = mono_now();
    resil_http_response *r = run(c, "GET", URL(u, path), RESIL_OK);
    resil_ns took = mono_now() - t0;
    size_t n;
    const resil_http_attempt *h = resil_http_response_history(r, &n);
    assert_int_equal(n, 2);
    /* The date is one or two seconds ahead, to the second. */
    assert_true(h[0].retry_after > 0);
    assert_true(h[0].retry_after <= 2 * RESIL_SEC);
    assert_true(h[0].delay >= h[0].retry_after);
    assert_true(took >= h[0].retry_after);
    resil_http_response_free(r);
  }
  resil_http_client_free(c);
}

static void test_retry_after_too_long(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  char u[256];
  resil_ns t0 = mono_now();
  resil_http_response *r = run(c, "GET", URL(u, "/status/503?retry_after=120"), RESIL_EFAILED);
  assert_true(mono_now() - t0 < 10 * RESIL_SEC); /* not the 120 s asked for */
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_RETRY_AFTER);
  assert_int_equal(resil_http_response_attempts(r), 1);
  assert_int_equal(resil_http_response_status(r), 503);
  size_t n;
  const char *body = resil_http_response_body(r, &n);
  assert_string_equal(body, "{\"status\":503}\n");
  assert_string_equal(resil_http_response_header(r, "Retry-After"), "120");
  const resil_http_attempt *h = resil_http_response_history(r, &n);
  assert_int_equal(h[0].retry_after, 120 * RESIL_SEC);
  assert_int_equal(h[0].delay, 0);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

static void test_deadline_cuts_backoff(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  char u[256];
  /* A one-second Retry-After does not fit a 300 ms deadline. */
  resil_http_request req;
  resil_http_request_init(&req);
  req.url = URL(u, "/status/503?retry_after=1");
  req.deadline = 300 * RESIL_MSEC;
  resil_http_response *r = NULL;
  resil_ns t0 = mono_now();
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EFAILED);
  /* The 1 s Retry-After is never waited (the stop reason is the real check;
   * the bound is generous so a loaded machine cannot make it flaky). */
  assert_true(mono_now() - t0 < 900 * RESIL_MSEC);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_DEADLINE);
  assert_int_equal(resil_http_response_attempts(r), 1);
  assert_int_equal(resil_http_response_status(r), 503);
  resil_http_response_free(r);
  resil_http_client_free(c);

  /* A long backoff, no jitter: 1 s does not fit 200 ms either. */
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.backoff.jitter = RESIL_JITTER_NONE;
  cfg.retry.backoff.base = RESIL_SEC;
  cfg.retry.backoff.cap = 10 * RESIL_SEC;
  cfg.retry.max_elapsed = 200 * RESIL_MSEC;
  c = new_client(&cfg);
  t0 = mono_now();
  r = run(c, "GET", URL(u, "/status/500"), RESIL_EFAILED);
  assert_true(mono_now() - t0 < 900 * RESIL_MSEC); /* the 1 s backoff is not waited */
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_DEADLINE);
  assert_int_equal(resil_http_response_attempts(r), 1);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

static void test_ratelimit_429(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  char u[256];
  /* 429 is safe to retry even for POST without a key. */
  resil_http_response *r = run(c, "POST", URL(u, "/ratelimit/rl1?n=1&reset=1"), RESIL_OK);
  size_t n;
  const resil_http_attempt *h = resil_http_response_history(r, &n);
  assert_int_equal(n, 2);
  assert_int_equal(h[0].status, 429);
  assert_int_equal(h[0].retry_after, RESIL_SEC);
  assert_true(h[0].delay >= RESIL_SEC);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

/* ---- idempotency and bodies ---------------------------------------------------- */

#define ORDER "{\"order\":42,\"item\":\"widget\"}"
#define ORDER_SHA "27e91b0724fc85774400c9afde75c73024d96fc353ac03fc63e15bc08e85b808"

static resil_http_response *post(resil_http_client *c, const char *path, const char *key,
                                 resil_err expect) {
  char u[256];
  static const resil_http_header ct = {"Content-Type", "application/json"};
  resil_http_request req;
  resil_http_request_init(&req);
  req.method = "POST";
  req.url = URL(u, path);
  req.body = ORDER;
  req.body_len = strlen(ORDER);
  req.headers = &ct;
  req.n_headers = 1;
  req.idempotency_key = key;
  resil_http_response *r = NULL;
  assert_int_equal(resil_http_do(c, &req, &r), expect);
  assert_non_null(r);
  return r;
}

static void test_post_without_key_not_retried(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  resil_http_response *r = post(c, "/flaky/post1?fail=2", NULL, RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 1);
  assert_int_equal(resil_http_response_status(r), 503);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_FATAL);
  resil_http_response_free(r);
  /* opting in retries it */
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry_non_idempotent = 1;
  resil_http_client *c2 = new_client(&cfg);
  r = post(c2, "/flaky/post1b?fail=2", NULL, RESIL_OK);
  assert_int_equal(resil_http_response_attempts(r), 3);
  resil_http_response_free(r);
  resil_http_client_free(c2);
  resil_http_client_free(c);
}

static void test_post_auto_key(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  resil_http_response *r = post(c, "/flaky/post2?fail=2", "auto", RESIL_OK);
  assert_int_equal(resil_http_response_attempts(r), 3);
  const char *key = resil_http_response_idempotency_key(r);
  assert_non_null(key);
  assert_int_equal(strlen(key), 36);
  assert_int_equal(key[14], '4'); /* UUIDv4 */
  size_t n;
  const char *body = resil_http_response_body(r, &n);
  assert_non_null(strstr(body, "\"method\":\"POST\""));
  assert_non_null(strstr(body, "\"body_sha256\":\"" ORDER_SHA "\""));
  char want[128];
  snprintf(want, sizeof want, "\"idempotency_key\":\"%s\"", key);
  assert_non_null(strstr(body, want));
  /* The server saw the same key on all three attempts, and no other. */
  char st[2048];
  stats(c, "post2", st, sizeof st);
  snprintf(want, sizeof want, "\"idempotency_keys\":{\"%s\":3}", key);
  assert_non_null(strstr(st, want));
  assert_non_null(strstr(st, "\"POST\":3"));
  resil_http_response_free(r);

  /* A given key is sent as is. */
  r = post(c, "/flaky/post3?fail=1", "order-42", RESIL_OK);
  assert_string_equal(resil_http_response_idempotency_key(r), "order-42");
  stats(c, "post3", st, sizeof st);
  assert_non_null(strstr(st, "\"idempotency_keys\":{\"order-42\":2}"));
  resil_http_response_free(r);
  resil_http_client_free(c);
}

typedef struct body_src {
  const unsigned char *data;
  size_t len, pos, chunk;
  int rewinds;
  size_t served[8]; /* bytes served per pass */
} body_src;

static size_t src_read(void *ud, char *buf, size_t n) {
  body_src *s = ud;
  size_t k = s->len - s->pos;
  if (k > n) k = n;
  if (k > s->chunk) k = s->chunk;
  memcpy(buf, s->data + s->pos, k);
  s->pos += k;
  if (s->rewinds < 8) s->served[s->rewinds] += k;
  return k;
}

static int src_rewind(void *ud) {
  body_src *s = ud;
  s->pos = 0;
  s->rewinds++;
  return 0;
}

static void test_read_body_replayed(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  static unsigned char data[10000];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)((i * 7 + 3) % 251);
  for (int chunked = 0; chunked < 2; chunked++) {
    body_src s = {data, sizeof data, 0, 777, 0, {0}};
    char u[256], path[64];
    snprintf(path, sizeof path, "/flaky/readbody%d?fail=2", chunked);
    resil_http_request req;
    resil_http_request_init(&req);
    req.method = "PUT";
    req.url = URL(u, path);
    req.read_body = src_read;
    req.rewind_body = src_rewind;
    req.body_ud = &s;
    req.body_size = chunked ? -1 : (int64_t)sizeof data;
    resil_http_response *r = NULL;
    assert_int_equal(resil_http_do(c, &req, &r), RESIL_OK);
    assert_int_equal(resil_http_response_attempts(r), 3);
    assert_int_equal(s.rewinds, 2);
    for (int i = 0; i <= 2; i++) assert_int_equal(s.served[i], sizeof data);
    size_t n;
    const char *body = resil_http_response_body(r, &n);
    assert_non_null(strstr(body, "\"body_bytes\":10000"));
    assert_non_null(
        strstr(body, "96c3dca16c772bef5b8ef2ae71f2766b3ecc190e6d6ed9c87fc6cf8e74a6453f"));
    resil_http_response_free(r);
  }
  resil_http_client_free(c);
}

/* One client, one thread: the same pooled handle serves every method in
 * turn, so options one request sets must not leak into the next. */
static void test_methods_on_one_handle(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  static const char *const methods[] = {"HEAD", "GET", "POST", "GET", "DELETE", "PUT",
                                        "HEAD", "OPTIONS", "PATCH", "GET"};
  for (size_t i = 0; i < ARRAY_LEN(methods); i++) {
    char path[64], u[256];
    snprintf(path, sizeof path, "/flaky/meth%zu?fail=1", i);
    resil_http_request req;
    resil_http_request_init(&req);
    req.method = methods[i];
    req.url = URL(u, path);
    req.retry_non_idempotent = 1;
    resil_http_response *r = NULL;
    assert_int_equal(resil_http_do(c, &req, &r), RESIL_OK);
    assert_int_equal(resil_http_response_attempts(r), 2);
    size_t n;
    const char *body = resil_http_response_body(r, &n);
    if (strcmp(methods[i], "HEAD") == 0) {
      assert_int_equal(n, 0);
    } else {
      char want[64];
      snprintf(want, sizeof want, "\"method\":\"%s\"", methods[i]);
      assert_non_null(strstr(body, want));
      /* POST, PUT and PATCH send an empty body, the others none */
      assert_non_null(strstr(body, "\"body_bytes\":0"));
    }
    resil_http_response_free(r);
  }
  resil_http_client_free(c);
}

static void test_bad_requests(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  resil_http_response *r = (resil_http_response *)1;
  resil_http_request req;
  resil_http_request_init(&req);
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EINVAL); /* no URL */
  assert_null(r);
  req.url = "http://127.0.0.1:1/";
  req.body = "x";
  req.body_len = 1;
  req.read_body = src_read;
  req.rewind_body = src_rewind;
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EINVAL);
  req.body = NULL;
  req.body_len = 0;
  req.rewind_body = NULL;
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EINVAL);
  req.read_body = NULL;
  req.idempotency_key = "bad\r\nkey";
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EINVAL);
  req.idempotency_key = NULL;
  req.method = "GE T";
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EINVAL);
  resil_http_client_free(c);

  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.size = 1;
  resil_http_client *bad = (resil_http_client *)1;
  assert_int_equal(resil_http_client_new(&bad, &cfg), RESIL_EINVAL);
  assert_null(bad);
  test_config(&cfg);
  resil_http_header h = {"Bad Name", "v"};
  cfg.default_headers = &h;
  cfg.n_default_headers = 1;
  assert_int_equal(resil_http_client_new(&bad, &cfg), RESIL_EINVAL);
}

/* ---- transport failures ---------------------------------------------------------- */

static void test_dropped_connections(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  char u[256];
  resil_http_response *r = run(c, "GET", URL(u, "/drop/drop1?n=2"), RESIL_OK);
  assert_int_equal(resil_http_response_attempts(r), 3);
  size_t n;
  const resil_http_attempt *h = resil_http_response_history(r, &n);
  assert_int_equal(h[0].status, 0);
  assert_int_equal(h[0].curl_code, 52); /* CURLE_GOT_NOTHING */
  assert_int_equal(h[0].error_class, RESIL_ERRCLASS_TRANSIENT);
  assert_int_equal(h[2].status, 200);
  resil_http_response_free(r);

  /* POST without a key: it may have been processed, so not retried. */
  r = post(c, "/drop/drop2?n=2", NULL, RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 1);
  assert_int_equal(resil_http_response_status(r), 0);
  assert_int_equal(resil_http_response_curl_code(r), 52);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_FATAL);
  assert_true(strlen(resil_http_response_error(r)) > 0);
  resil_http_response_free(r);

  /* With a key it is. */
  r = post(c, "/drop/drop3?n=2", "auto", RESIL_OK);
  assert_int_equal(resil_http_response_attempts(r), 3);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

static void test_truncated_bodies(void **state) {
  (void)state;
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.max_attempts = 3;
  resil_http_client *c = new_client(&cfg);
  char u[256];
  resil_http_response *r = run(c, "GET", URL(u, "/truncate"), RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 3);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_ATTEMPTS);
  size_t n;
  const resil_http_attempt *h = resil_http_response_history(r, &n);
  assert_int_equal(n, 3);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(h[i].curl_code, 18); /* CURLE_PARTIAL_FILE */
    assert_int_equal(h[i].error_class, RESIL_ERRCLASS_TRANSIENT);
    assert_int_equal(h[i].status, 200);
  }
  assert_int_equal(resil_http_response_curl_code(r), 18);
  resil_http_response_free(r);
  resil_http_client_free(c);
}

static uint16_t closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static void test_connection_refused(void **state) {
  (void)state;
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.max_attempts = 3;
  resil_http_client *c = new_client(&cfg);
  char u[64];
  snprintf(u, sizeof u, "http://127.0.0.1:%u/x", closed_port());
  for (int p = 0; p < 2; p++) {
    /* Refused connections never sent anything: even POST is retried. */
    resil_http_response *r = run(c, p ? "POST" : "GET", u, RESIL_EFAILED);
    assert_int_equal(resil_http_response_attempts(r), 3);
    assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_ATTEMPTS);
    assert_int_equal(resil_http_response_status(r), 0);
    assert_int_equal(resil_http_response_curl_code(r), 7); /* CURLE_COULDNT_CONNECT */
    size_t n;
    const resil_http_attempt *h = resil_http_response_history(r, &n);
    for (size_t i = 0; i < n; i++) assert_int_equal(h[i].error_class, RESIL_ERRCLASS_NOT_SENT);
    resil_http_response_free(r);
  }
  resil_http_client_free(c);
}

static int src_rewind_fails(void *ud) {
  (void)ud;
  return -1;
}

/* A body that cannot be rewound ends the call after the failed attempt, and
 * the host's breaker still counts that failure as a failure. */
static void test_read_body_rewind_fails(void **state) {
  (void)state;
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.per_host_breakers = 1;
  resil_http_client *c = new_client(&cfg);
  static const unsigned char data[] = "not replayable";
  body_src s = {data, sizeof data - 1, 0, 64, 0, {0}};
  char u[256];
  resil_http_request req;
  resil_http_request_init(&req);
  req.method = "PUT";
  req.url = URL(u, "/flaky/norewind?fail=3&status=503");
  req.read_body = src_read;
  req.rewind_body = src_rewind_fails;
  req.body_ud = &s;
  req.body_size = (int64_t)s.len;
  resil_http_response *r = NULL;
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 1);
  assert_int_equal(resil_http_response_status(r), 503);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_FATAL);
  resil_http_response_free(r);
  char origin[96];
  snprintf(origin, sizeof origin, "http://127.0.0.1:%u", resil_faultserver_port(g_srv));
  resil_breaker *b = resil_http_client_breaker(c, origin);
  assert_non_null(b);
  resil_breaker_snapshot snap;
  resil_breaker_snapshot_get(b, &snap);
  assert_int_equal(snap.failures, 1);
  assert_int_equal(snap.ignored, 0);
  resil_http_client_free(c);
}

/* ---- breakers and budgets --------------------------------------------------------- */

static void test_per_host_breaker(void **state) {
  (void)state;
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.max_attempts = 5;
  cfg.per_host_breakers = 1;
  cfg.breaker.failure_threshold = 3;
  cfg.breaker.open_duration = 60 * RESIL_SEC;
  resil_http_client *c = new_client(&cfg);
  char u[256], origin[96];
  snprintf(origin, sizeof origin, "HTTP://127.0.0.1:%u/", resil_faultserver_port(g_srv));
  assert_null(resil_http_client_breaker(c, origin)); /* not made yet */

  resil_http_response *r = run(c, "GET", URL(u, "/status/503"), RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 3);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_CIRCUIT_OPEN);
  assert_int_equal(resil_http_response_status(r), 503);
  resil_http_response_free(r);
  resil_breaker *b = resil_http_client_breaker(c, origin);
  assert_non_null(b);
  resil_breaker_snapshot snap;
  resil_breaker_snapshot_get(b, &snap);
  assert_int_equal(snap.state, RESIL_BREAKER_OPEN);
  snprintf(origin, sizeof origin, "http://127.0.0.1:%u", resil_faultserver_port(g_srv));
  assert_string_equal(resil_breaker_name(b), origin);

  /* Open: fails fast, without touching the server. */
  uint64_t before = resil_faultserver_requests(g_srv);
  resil_ns t0 = mono_now();
  r = run(c, "GET", URL(u, "/status/200"), RESIL_EFAILED);
  assert_true(mono_now() - t0 < 2 * RESIL_SEC); /* a hang guard: the request count below
                                                  proves the server was not called */
  assert_int_equal(resil_http_response_attempts(r), 0);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_CIRCUIT_OPEN);
  assert_int_equal(resil_http_response_status(r), 0);
  assert_int_equal(resil_faultserver_requests(g_srv), before);
  resil_http_response_free(r);

  /* Another origin (same server, other name) has its own breaker. */
  snprintf(u, sizeof u, "http://localhost:%u/status/200", resil_faultserver_port(g_srv));
  r = run(c, "GET", u, RESIL_OK);
  resil_http_response_free(r);
  snprintf(origin, sizeof origin, "http://LOCALHOST:%u", resil_faultserver_port(g_srv));
  b = resil_http_client_breaker(c, origin);
  assert_non_null(b);
  resil_breaker_snapshot_get(b, &snap);
  assert_int_equal(snap.state, RESIL_BREAKER_CLOSED);
  resil_http_client_free(c);
}

static void test_budget_exhaustion(void **state) {
  (void)state;
  resil_budget_config bc;
  resil_budget_config_init(&bc);
  bc.kind = RESIL_BUDGET_TOKEN_BUCKET;
  bc.burst = 2;
  bc.rate = 1e-6;
  resil_budget *budget = NULL;
  assert_int_equal(resil_budget_new(&budget, &bc), RESIL_OK);
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.max_attempts = 10;
  cfg.retry.budget = budget;
  resil_http_client *c = new_client(&cfg);
  char u[256];
  resil_http_response *r = run(c, "GET", URL(u, "/status/503"), RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 3); /* 1 + the 2 retries granted */
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_BUDGET);
  resil_http_response_free(r);
  r = run(c, "GET", URL(u, "/status/503"), RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 1);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_BUDGET);
  resil_http_response_free(r);
  resil_http_client_free(c);
  resil_budget_free(budget);
}

/* ---- response bodies, headers, hooks ---------------------------------------------- */

typedef struct sink {
  char buf[4096];
  size_t len;
  int calls;
} sink;

static size_t sink_write(void *ud, const char *data, size_t n) {
  sink *s = ud;
  if (s->len + n >= sizeof s->buf) return 0;
  memcpy(s->buf + s->len, data, n);
  s->len += n;
  s->buf[s->len] = '\0';
  s->calls++;
  return n;
}

static void test_write_body_streaming(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  char u[256];
  sink s = {{0}, 0, 0};
  resil_http_request req;
  resil_http_request_init(&req);
  req.url = URL(u, "/flaky/wb1?fail=2");
  req.write_body = sink_write;
  req.write_ud = &s;
  resil_http_response *r = NULL;
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_OK);
  assert_int_equal(resil_http_response_attempts(r), 3);
  /* Only the final body reached the callback; none was kept in memory. */
  assert_non_null(strstr(s.buf, "\"attempt\":3"));
  assert_null(strstr(s.buf, "503"));
  size_t n;
  resil_http_response_body(r, &n);
  assert_int_equal(n, 0);
  resil_http_response_free(r);

  /* The final answer of a call that gives up is streamed too. */
  memset(&s, 0, sizeof s);
  req.url = URL(u, "/flaky/wb2?fail=9");
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 4);
  assert_non_null(strstr(s.buf, "\"attempt\":4"));
  assert_null(strstr(s.buf, "\"attempt\":3"));
  resil_http_response_free(r);

  /* Bytes handed over cannot be taken back: a body that breaks off after
   * some reached the callback is not retried, even for a GET. */
  memset(&s, 0, sizeof s);
  req.url = URL(u, "/truncate");
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 1);
  assert_int_equal(resil_http_response_curl_code(r), 18);
  assert_true(s.len > 0);
  resil_http_response_free(r);

  /* A callback that refuses bytes aborts, not retried. */
  sink full = {{0}, sizeof full.buf - 1, 0};
  req.url = URL(u, "/status/200");
  req.write_ud = &full;
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_EFAILED);
  assert_int_equal(resil_http_response_attempts(r), 1);
  assert_int_equal(resil_http_response_curl_code(r), 23); /* CURLE_WRITE_ERROR */
  resil_http_response_free(r);
  resil_http_client_free(c);
}

static void test_response_headers(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  char u[256];
  resil_http_response *r = run(c, "GET", URL(u, "/status/503?retry_after=120"), RESIL_EFAILED);
  assert_string_equal(resil_http_response_header(r, "retry-after"), "120");
  assert_string_equal(resil_http_response_header(r, "RETRY-AFTER"), "120");
  const char *ct = resil_http_response_header(r, "Content-Type");
  assert_non_null(ct);
  assert_non_null(strstr(ct, "application/json"));
  assert_null(resil_http_response_header(r, "X-Not-There"));
  size_t count = resil_http_response_header_count(r);
  assert_true(count >= 2);
  int seen = 0;
  for (size_t i = 0; i < count; i++) {
    resil_http_header h = resil_http_response_header_at(r, i);
    assert_non_null(h.name);
    assert_non_null(h.value);
    if (strcmp(h.name, "Retry-After") == 0 && strcmp(h.value, "120") == 0) seen = 1;
  }
  assert_true(seen);
  resil_http_header none = resil_http_response_header_at(r, count);
  assert_null(none.name);
  resil_http_response_free(r);
  /* NULL-safe accessors */
  assert_int_equal(resil_http_response_status(NULL), 0);
  assert_null(resil_http_response_header(NULL, "x"));
  resil_http_response_free(NULL);
  resil_http_client_free(c);
}

typedef struct hook_log {
  int calls;
  int will_retry[8];
  size_t body_len[8];
  char body[8][128];
  int log_lines;
  char last_line[512];
  char first_line[512];
} hook_log;

static void on_attempt(void *ud, const resil_http_attempt_event *ev) {
  hook_log *h = ud;
  if (h->calls < 8) {
    size_t n;
    const char *b = resil_http_response_body(ev->response, &n);
    h->will_retry[h->calls] = ev->will_retry;
    h->body_len[h->calls] = n;
    snprintf(h->body[h->calls], sizeof h->body[0], "%s", b);
    assert_string_equal(ev->method, "GET");
    assert_int_equal(ev->attempt->number, (uint32_t)h->calls + 1);
  }
  h->calls++;
}

static void on_log(void *ud, resil_log_level lv, const char *msg) {
  (void)lv;
  hook_log *h = ud;
  if (h->log_lines++ == 0) snprintf(h->first_line, sizeof h->first_line, "%s", msg);
  snprintf(h->last_line, sizeof h->last_line, "%s", msg);
}

static void test_on_attempt_sees_drained_bodies(void **state) {
  (void)state;
  hook_log hl;
  memset(&hl, 0, sizeof hl);
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.max_drain = 8;
  cfg.on_attempt = on_attempt;
  cfg.hook_ud = &hl;
  cfg.log = on_log;
  cfg.log_ud = &hl;
  resil_http_client *c = new_client(&cfg);
  char u[256];
  resil_http_response *r = run(c, "GET", URL(u, "/flaky/hook1?fail=2&retry_after=0"), RESIL_OK);
  assert_int_equal(hl.calls, 3);
  assert_int_equal(hl.will_retry[0], 1);
  assert_int_equal(hl.will_retry[1], 1);
  assert_int_equal(hl.will_retry[2], 0);
  /* retried responses: only max_drain bytes; the final one whole */
  assert_int_equal(hl.body_len[0], 8);
  assert_string_equal(hl.body[0], "{\"status");
  assert_true(hl.body_len[2] > 8);
  assert_non_null(strstr(hl.body[2], "\"attempt\":3"));
  /* one log line per attempt */
  assert_int_equal(hl.log_lines, 3);
  assert_non_null(strstr(hl.first_line,
                         "attempt 1/4: 503 Service Unavailable, Retry-After 0s; retrying in"));
  assert_non_null(strstr(hl.first_line, "GET http://127.0.0.1:"));
  assert_null(strstr(hl.first_line, "?fail")); /* no query strings in logs */
  assert_non_null(strstr(hl.last_line, "attempt 3/4: 200 OK"));
  resil_http_response_free(r);

  /* Giving up: the last body is intact even though it was "retryable". */
  memset(&hl, 0, sizeof hl);
  r = run(c, "GET", URL(u, "/flaky/hook2?fail=9"), RESIL_EFAILED);
  assert_int_equal(hl.calls, 4);
  assert_int_equal(hl.will_retry[3], 0);
  assert_true(hl.body_len[3] > 8);
  size_t n;
  assert_non_null(strstr(resil_http_response_body(r, &n), "\"attempt\":4"));
  assert_non_null(strstr(hl.last_line, "giving up: attempts exhausted"));
  resil_http_response_free(r);
  resil_http_client_free(c);
}

/* ---- cancellation -------------------------------------------------------------------- */

typedef struct canceller {
  resil_cancel *cancel;
  resil_ns after;
} canceller;

static void *fire_later(void *ud) {
  canceller *k = ud;
  struct timespec ts = {0, (long)k->after};
  nanosleep(&ts, NULL);
  resil_cancel_fire(k->cancel);
  return NULL;
}

static void test_cancel_during_wait(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  resil_cancel *cancel = NULL;
  assert_int_equal(resil_cancel_new(&cancel), RESIL_OK);
  canceller k = {cancel, 100 * RESIL_MSEC};
  pthread_t t;
  pthread_create(&t, NULL, fire_later, &k);
  char u[256];
  resil_http_request req;
  resil_http_request_init(&req);
  req.url = URL(u, "/status/503?retry_after=30");
  req.cancel = cancel;
  resil_http_response *r = NULL;
  resil_ns t0 = mono_now();
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_ECANCELED);
  assert_true(mono_now() - t0 < 5 * RESIL_SEC);
  assert_int_equal(resil_http_response_stop_reason(r), RESIL_STOP_CANCELLED);
  assert_int_equal(resil_http_response_status(r), 503);
  resil_http_response_free(r);
  pthread_join(t, NULL);

  /* Cancel during a slow transfer. */
  resil_cancel_reset(cancel);
  pthread_create(&t, NULL, fire_later, &k);
  req.url = URL(u, "/slow?delay=20s");
  t0 = mono_now();
  assert_int_equal(resil_http_do(c, &req, &r), RESIL_ECANCELED);
  assert_true(mono_now() - t0 < 5 * RESIL_SEC);
  assert_int_equal(resil_http_response_curl_code(r), 42); /* ABORTED_BY_CALLBACK */
  resil_http_response_free(r);
  pthread_join(t, NULL);
  resil_cancel_free(cancel);
  resil_http_client_free(c);
}

/* ---- threads sharing one client -------------------------------------------------------- */

typedef struct worker {
  resil_http_client *c;
  int id;
  int ok;
} worker;

static void *work(void *ud) {
  worker *w = ud;
  for (int i = 0; i < 25; i++) {
    char u[256];
    snprintf(u, sizeof u, "%s/flaky/thr%d-%d?fail=1", g_base, w->id, i);
    resil_http_request req;
    resil_http_request_init(&req);
    req.url = u;
    resil_http_response *r = NULL;
    if (resil_http_do(w->c, &req, &r) == RESIL_OK && resil_http_response_attempts(r) == 2)
      w->ok++;
    resil_http_response_free(r);
  }
  return NULL;
}

static void test_threads_share_client(void **state) {
  (void)state;
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.per_host_breakers = 1;
  cfg.breaker.failure_threshold = 1000;
  resil_http_client *c = new_client(&cfg);
  enum { N = 6 };
  pthread_t t[N];
  worker w[N];
  for (int i = 0; i < N; i++) {
    w[i] = (worker){c, i, 0};
    pthread_create(&t[i], NULL, work, &w[i]);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].ok, 25);
  }
  resil_http_client_free(c);
}

/* ---- the multi API ------------------------------------------------------------------------ */

typedef struct tally {
  int done, ok, failed, cancelled;
  uint32_t attempts;
} tally;

static void on_done(void *ud, resil_err err, resil_http_response *resp) {
  tally *t = ud;
  t->done++;
  if (err == RESIL_OK && resil_http_response_status(resp) == 200) t->ok++;
  else if (err == RESIL_ECANCELED) t->cancelled++;
  else t->failed++;
  t->attempts += resil_http_response_attempts(resp);
  resil_http_response_free(resp);
}

static void test_multi_200_concurrent(void **state) {
  (void)state;
  resil_faultserver_config fc;
  resil_faultserver_config_init(&fc);
  fc.threads = 8;
  fc.fail_rate = 0.3;
  fc.use_seed = 1;
  fc.seed = 7;
  resil_faultserver *srv = NULL;
  assert_int_equal(resil_faultserver_start(&srv, &fc), RESIL_OK);
  resil_http_client_config cfg;
  test_config(&cfg);
  cfg.retry.max_attempts = 12; /* 0.3^12 * 200: practically never fails */
  resil_http_client *c = new_client(&cfg);
  resil_http_multi *m = NULL;
  assert_int_equal(resil_http_multi_new(&m, c), RESIL_OK);
  tally t = {0, 0, 0, 0, 0};
  for (int i = 0; i < 200; i++) {
    char u[256];
    snprintf(u, sizeof u, "%s/flaky/multi%d", resil_faultserver_url(srv), i);
    resil_http_request req;
    resil_http_request_init(&req);
    req.url = u; /* copied by add */
    assert_int_equal(resil_http_multi_add(m, &req, on_done, &t), RESIL_OK);
  }
  assert_int_equal(resil_http_multi_pending(m), 200);
  assert_int_equal(resil_http_multi_run(m), RESIL_OK);
  assert_int_equal(resil_http_multi_pending(m), 0);
  assert_int_equal(t.done, 200);
  assert_int_equal(t.ok, 200);
  assert_true(t.attempts > 200); /* some were retried */
  /* every attempt reached the server */
  assert_int_equal(resil_faultserver_requests(srv), t.attempts);
  resil_http_multi_free(m);
  resil_http_client_free(c);
  resil_faultserver_stop(srv);
}

static void test_multi_free_cancels(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  resil_http_multi *m = NULL;
  assert_int_equal(resil_http_multi_new(&m, c), RESIL_OK);
  tally t = {0, 0, 0, 0, 0};
  char u[256];
  resil_http_request req;
  resil_http_request_init(&req);
  req.url = URL(u, "/slow?delay=10s");
  assert_int_equal(resil_http_multi_add(m, &req, on_done, &t), RESIL_OK);
  req.url = URL(u, "/status/503?retry_after=30");
  assert_int_equal(resil_http_multi_add(m, &req, on_done, &t), RESIL_OK);
  for (int i = 0; i < 20; i++) resil_http_multi_perform(m, 10 * RESIL_MSEC);
  assert_int_equal(t.done, 0);
  resil_http_multi_free(m);
  assert_int_equal(t.done, 2);
  assert_int_equal(t.cancelled, 2);
  resil_http_client_free(c);
}

/* ---- an external event loop, driven here with poll() ---------------------------------- */

typedef struct tloop {
  struct pollfd fds[256];
  int nfds;
  int timer_on;
  resil_ns timer_due;
  int watch_calls, timer_calls;
} tloop;

static void loop_watch(void *ud, int fd, int what) {
  tloop *l = ud;
  l->watch_calls++;
  int i = 0;
  while (i < l->nfds && l->fds[i].fd != fd) i++;
  if (what & RESIL_POLL_REMOVE) {
    if (i < l->nfds) l->fds[i] = l->fds[--l->nfds];
    return;
  }
  if (i == l->nfds) {
    assert_true(l->nfds < 256);
    l->fds[l->nfds++].fd = fd;
  }
  l->fds[i].events = (short)(((what & RESIL_POLL_IN) ? POLLIN : 0) |
                             ((what & RESIL_POLL_OUT) ? POLLOUT : 0));
}

static void loop_timer(void *ud, resil_ns timeout) {
  tloop *l = ud;
  l->timer_calls++;
  l->timer_on = timeout >= 0;
  if (timeout >= 0) l->timer_due = mono_now() + timeout;
}

static void test_external_loop(void **state) {
  (void)state;
  resil_http_client *c = default_client();
  resil_http_multi *m = NULL;
  assert_int_equal(resil_http_multi_new(&m, c), RESIL_OK);
  tloop l;
  memset(&l, 0, sizeof l);
  resil_http_loop hooks = {loop_watch, loop_timer, &l};
  assert_int_equal(resil_http_multi_use_loop(m, &hooks), RESIL_OK);
  tally t = {0, 0, 0, 0, 0};
  for (int i = 0; i < 20; i++) {
    char u[256];
    snprintf(u, sizeof u, "%s/flaky/ext%d?fail=1&retry_after=0", g_base, i);
    resil_http_request req;
    resil_http_request_init(&req);
    req.url = u;
    assert_int_equal(resil_http_multi_add(m, &req, on_done, &t), RESIL_OK);
  }
  assert_true(l.timer_on); /* asked to be woken at once */
  assert_int_equal(resil_http_multi_run(m), RESIL_EINVAL); /* not with an external loop */
  resil_ns give_up = mono_now() + 20 * RESIL_SEC;
  while (resil_http_multi_pending(m) > 0 && mono_now() < give_up) {
    int ms = -1;
    if (l.timer_on) {
      resil_ns d = l.timer_due - mono_now();
      ms = d <= 0 ? 0 : (int)((d + RESIL_MSEC - 1) / RESIL_MSEC);
    }
    if (ms < 0 || ms > 1000) ms = 1000;
    struct pollfd ready[256];
    int nready = 0;
    if (poll(l.fds, (nfds_t)l.nfds, ms) > 0) {
      for (int i = 0; i < l.nfds; i++)
        if (l.fds[i].revents) ready[nready++] = l.fds[i];
    }
    for (int i = 0; i < nready; i++) {
      int ev = ((ready[i].revents & (POLLIN | POLLHUP | POLLERR)) ? RESIL_POLL_IN : 0) |
               ((ready[i].revents & POLLOUT) ? RESIL_POLL_OUT : 0);
      resil_http_multi_socket_action(m, ready[i].fd, ev);
    }
    if (l.timer_on && mono_now() >= l.timer_due) {
      l.timer_on = 0;
      resil_http_multi_socket_action(m, -1, 0);
    }
  }
  assert_int_equal(t.done, 20);
  assert_int_equal(t.ok, 20);
  assert_int_equal(t.attempts, 40);
  assert_true(l.watch_calls > 0);
  resil_http_multi_free(m);
  resil_http_client_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retry_503_then_success),
      cmocka_unit_test(test_no_retry_on_client_errors),
      cmocka_unit_test(test_engine_hooks_see_the_request),
      cmocka_unit_test(test_retry_after_seconds),
      cmocka_unit_test(test_retry_after_dates),
      cmocka_unit_test(test_retry_after_too_long),
      cmocka_unit_test(test_deadline_cuts_backoff),
      cmocka_unit_test(test_ratelimit_429),
      cmocka_unit_test(test_post_without_key_not_retried),
      cmocka_unit_test(test_post_auto_key),
      cmocka_unit_test(test_read_body_rewind_fails),
      cmocka_unit_test(test_read_body_replayed),
      cmocka_unit_test(test_methods_on_one_handle),
      cmocka_unit_test(test_bad_requests),
      cmocka_unit_test(test_dropped_connections),
      cmocka_unit_test(test_truncated_bodies),
      cmocka_unit_test(test_connection_refused),
      cmocka_unit_test(test_per_host_breaker),
      cmocka_unit_test(test_budget_exhaustion),
      cmocka_unit_test(test_write_body_streaming),
      cmocka_unit_test(test_response_headers),
      cmocka_unit_test(test_on_attempt_sees_drained_bodies),
      cmocka_unit_test(test_cancel_during_wait),
      cmocka_unit_test(test_threads_share_client),
      cmocka_unit_test(test_multi_200_concurrent),
      cmocka_unit_test(test_multi_free_cancels),
      cmocka_unit_test(test_external_loop),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
