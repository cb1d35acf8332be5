/* The fault-injecting HTTP server, over real loopback sockets.
 *
 * A tiny HTTP/1.1 client lives here (socket, connect, write, read until the
 * server closes, with timeouts) so the tests depend on nothing but libc:
 * every request is sent with `Connection: close` and read to EOF. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "resil/faultserver.h"
#include "test_util.h"

/* ---- a raw HTTP/1.1 client ----------------------------------------------------- */

typedef struct http_resp {
  char raw[64 * 1024]; /* everything read, NUL-terminated */
  size_t raw_len;
  int read_errno;      /* 0 when the server closed cleanly (EOF) */
  int status;          /* 0 when no status line arrived */
  const char *body;    /* into raw */
  size_t body_len;
  long content_length; /* -1 when absent */
} http_resp;

static resil_ns now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (resil_ns)ts.tv_sec * RESIL_SEC + ts.tv_nsec;
}

static int connect_to(const char *host, uint16_t port) {
  int family = strchr(host, ':') ? AF_INET6 : AF_INET;
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {20, 0}; /* generous: sanitizer builds are slow */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, host, &a->sin_addr);
    len = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, host, &a->sin6_addr);
    len = sizeof *a;
  }
  if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void parse_resp(http_resp *r) {
  r->status = 0;
  r->body = NULL;
  r->body_len = 0;
  r->content_length = -1;
  if (r->raw_len < 12 || strncmp(r->raw, "HTTP/1.", 7) != 0) return;
  r->status = atoi(r->raw + 9);
  char *end = strstr(r->raw, "\r\n\r\n");
  if (end == NULL) return;
  r->body = end + 4;
  r->body_len = r->raw_len - (size_t)(r->body - r->raw);
  for (char *line = strstr(r->raw, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2)
    if (strncasecmp(line, "Content-Length:", 15) == 0) r->content_length = atol(line + 15);
}

/* Send raw request bytes and read until the server closes. Returns 0, or -1
 * when the connection could not be made or the request not sent. */
static int http_raw_host(const char *host, uint16_t port, const char *req, size_t len,
                         http_resp *r) {
  memset(r, 0, sizeof *r);
  int fd = connect_to(host, port);
  if (fd < 0) return -1;
  if (send_all(fd, req, len) != 0) {
    close(fd);
    return -1;
  }
  for (;;) {
    if (r->raw_len == sizeof r->raw - 1) break;
    ssize_t n = recv(fd, r->raw + r->raw_len, sizeof r->raw - 1 - r->raw_len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r->read_errno = errno;
      break;
    }
    if (n == 0) break;
    r->raw_len += (size_t)n;
  }
  r->raw[r->raw_len] = '\0';
  close(fd);
  parse_resp(r);
  return 0;
}

static int http_raw(uint16_t port, const char *req, size_t len, http_resp *r) {
  return http_raw_host("127.0.0.1", port, req, len, r);
}

/* METHOD target with optional extra header lines ("Name: v\r\n") and body. */
static int http(uint16_t port, const char *method, const char *target, const char *headers,
                const char *body, http_resp *r) {
  char req[8192];
  size_t blen = body ? strlen(body) : 0;
  int n;
  if (body)
    n = snprintf(req, sizeof req,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                 "Content-Length: %zu\r\n\r\n%s",
                 method, target, headers ? headers : "", blen, body);
  else
    n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
                 method, target, headers ? headers : "");
  if (n < 0 || (size_t)n >= sizeof req) return -1;
  return http_raw(port, req, (size_t)n, r);
}

static int get(uint16_t port, const char *target, http_resp *r) {
  return http(port, "GET", target, NULL, NULL, r);
}

/* The value of header name, copied into buf; NULL when absent. */
static const char *header(const http_resp *r, const char *name, char *buf, size_t len) {
  const char *end = strstr(r->raw, "\r\n\r\n");
  if (end == NULL) return NULL;
  size_t nl = strlen(name);
  for (const char *line = strstr(r->raw, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ') v++;
      size_t vl = (size_t)(strstr(v, "\r\n") - v);
      if (vl >= len) vl = len - 1;
      memcpy(buf, v, vl);
      buf[vl] = '\0';
      return buf;
    }
  }
  return NULL;
}

/* ---- a minimal JSON validator (RFC 8259 grammar, no semantics) -------------------- */

static const char *json_value(const char *p, const char *end, int depth);

static const char *json_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

static const char *json_string(const char *p, const char *end) {
  if (p >= end || *p != '"') return NULL;
  for (p++; p < end; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c < 0x20) return NULL;
    if (c == '\\') {
      p++;
      if (p >= end) return NULL;
      if (*p == 'u') {
        for (int i = 1; i <= 4; i++)
          if (p + i >= end || !strchr("0123456789abcdefABCDEF", p[i]) || p[i] == '\0')
            return NULL;
        p += 4;
      } else if (!strchr("\"\\/bfnrt", *p) || *p == '\0') {
        return NULL;
      }
    }
  }
  return NULL;
}

static const char *json_value(const char *p, const char *end, int depth) {
  if (depth > 32) return NULL;
  p = json_ws(p, end);
  if (p >= end) return NULL;
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    int object = *p == '{';
    p = json_ws(p + 1, end);
    if (p < end && *p == close) return p + 1;
    for (;;) {
      if (object) {
        p = json_string(json_ws(p, end), end);
        if (p == NULL) return NULL;
        p = json_ws(p, end);
        if (p >= end || *p != ':') return NULL;
        p++;
      }
      p = json_value(p, end, depth + 1);
      if (p == NULL) return NULL;
      p = json_ws(p, end);
      if (p < end && *p == ',') {
        p++;
        continue;
      }
      if (p < end && *p == close) return p + 1;
      return NULL;
    }
  }
  if (*p == '"') return json_string(p, end);
  if (end - p >= 4 && (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)) return p + 4;
  if (end - p >= 5 && strncmp(p, "false", 5) == 0) return p + 5;
  const char *start = p;
  if (p < end && *p == '-') p++;
  while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' ||
                     *p == '+' || *p == '-'))
    p++;
  return p > start ? p : NULL;
}

static int json_valid(const char *s, size_t n) {
  const char *end = s + n;
  const char *p = json_value(s, end, 0);
  return p != NULL && json_ws(p, end) == end;
}

static void assert_json(const http_resp *r) {
  char ct[128];
  assert_non_null(header(r, "Content-Type", ct, sizeof ct));
  assert_string_equal(ct, "application/json");
  if (!json_valid(r->body, r->body_len)) fail_msg("not valid JSON: %s", r->body);
}

/* A 400/404/413: one line of plain text. */
static void assert_text_error(const http_resp *r, int status, const char *needle) {
  char ct[128];
  assert_int_equal(r->status, status);
  assert_non_null(header(r, "Content-Type", ct, sizeof ct));
  assert_true(strncmp(ct, "text/plain", 10) == 0);
  assert_true(r->body_len > 1);
  assert_int_equal(r->body[r->body_len - 1], '\n');
  assert_ptr_equal(memchr(r->body, '\n', r->body_len), r->body + r->body_len - 1);
  if (needle && strstr(r->body, needle) == NULL) fail_msg("'%s' not in: %s", needle, r->body);
}

static void assert_has(const http_resp *r, const char *needle) {
  if (strstr(r->body ? r->body : "", needle) == NULL)
    fail_msg("'%s' not in body: %s", needle, r->body ? r->body : "(none)");
}

/* ---- fixtures --------------------------------------------------------------------- */

static int count_dir(const char *path) {
  DIR *d = opendir(path);
  if (d == NULL) return -1;
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static resil_faultserver *start_with(resil_faultserver_config *cfg) {
  resil_faultserver *s = NULL;
  assert_int_equal(resil_faultserver_start(&s, cfg), RESIL_OK);
  assert_non_null(s);
  return s;
}

static resil_faultserver *start_default(void) {
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  return start_with(&cfg);
}

/* ---- config and lifecycle ---------------------------------------------------------- */

static void test_config_defaults(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  assert_int_equal(cfg.size, sizeof cfg);
  assert_string_equal(cfg.listen, "127.0.0.1:0");
  assert_int_equal(cfg.threads, 4);
  assert_true(cfg.fail_rate == 0.0);
  assert_int_equal(cfg.fail_status, 503);
  assert_int_equal(cfg.latency, 0);
  assert_int_equal(cfg.outage_duration, 0);
  assert_int_equal(cfg.max_keys, 10000);
  assert_int_equal(cfg.max_body, 1024 * 1024);
}

static void expect_einval(resil_faultserver_config *cfg) {
  resil_faultserver *s = (resil_faultserver *)&s; /* must be reset to NULL */
  assert_int_equal(resil_faultserver_start(&s, cfg), RESIL_EINVAL);
  assert_null(s);
}

static void test_bad_configs(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver *s = NULL;
  resil_faultserver_config_init(&cfg);
  assert_int_equal(resil_faultserver_start(NULL, &cfg), RESIL_EINVAL);
  expect_einval(NULL);

  static const char *const bad_listen[] = {
      "localhost:80", "127.0.0.1",  "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:-1",
      "127.0.0.1:8x", ":80",        "[::1]80",    "::1:80",          "[::1:80",
      "[]:80",        "1.2.3:80",   "",           "[127.0.0.1]:80",  "127.0.0.1:80 "};
  for (size_t i = 0; i < ARRAY_LEN(bad_listen); i++) {
    resil_faultserver_config_init(&cfg);
    cfg.listen = bad_listen[i];
    expect_einval(&cfg);
  }
  resil_faultserver_config_init(&cfg);
  cfg.size = sizeof cfg - 1;
  expect_einval(&cfg);
  resil_faultserver_config_init(&cfg);
  cfg.threads = 0;
  expect_einval(&cfg);
  cfg.threads = 257;
  expect_einval(&cfg);
  resil_faultserver_config_init(&cfg);
  cfg.fail_rate = -0.01;
  expect_einval(&cfg);
  cfg.fail_rate = 1.01;
  expect_einval(&cfg);
  cfg.fail_rate = NAN;
  expect_einval(&cfg);
  resil_faultserver_config_init(&cfg);
  cfg.fail_status = 99;
  expect_einval(&cfg);
  cfg.fail_status = 600;
  expect_einval(&cfg);
  resil_faultserver_config_init(&cfg);
  cfg.latency = -1;
  expect_einval(&cfg);
  resil_faultserver_config_init(&cfg);
  cfg.outage_start = -RESIL_SEC;
  cfg.outage_duration = RESIL_SEC;
  expect_einval(&cfg);
  resil_faultserver_config_init(&cfg);
  cfg.max_keys = 0;
  expect_einval(&cfg);

  /* The edges are fine. */
  resil_faultserver_config_init(&cfg);
  cfg.threads = 1;
  cfg.fail_rate = 1.0;
  cfg.fail_status = 599;
  cfg.listen = NULL; /* the default */
  s = start_with(&cfg);
  resil_faultserver_stop(s);
  resil_faultserver_stop(NULL);
  assert_int_equal(resil_faultserver_port(NULL), 0);
  assert_null(resil_faultserver_url(NULL));
  assert_int_equal(resil_faultserver_requests(NULL), 0);
}

static void test_port_zero_picks_a_port(void **state) {
  (void)state;
  resil_faultserver *a = start_default(), *b = start_default();
  uint16_t pa = resil_faultserver_port(a), pb = resil_faultserver_port(b);
  assert_true(pa != 0 && pb != 0 && pa != pb);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)pa);
  assert_string_equal(resil_faultserver_url(a), url);
  http_resp r;
  assert_int_equal(get(pa, "/status/200", &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(get(pb, "/status/201", &r), 0);
  assert_int_equal(r.status, 201);
  resil_faultserver_stop(a);
  resil_faultserver_stop(b);
}

static void test_address_in_use(void **state) {
  (void)state;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 4), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);

  int threads = count_dir("/proc/self/task"), fds = count_dir("/proc/self/fd");
  char listen_on[32];
  snprintf(listen_on, sizeof listen_on, "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.listen = listen_on;
  resil_faultserver *s = (resil_faultserver *)&cfg;
  errno = 0;
  assert_int_equal(resil_faultserver_start(&s, &cfg), RESIL_ESYS);
  assert_int_equal(errno, EADDRINUSE);
  assert_null(s);
  /* Nothing left behind: no thread, no descriptor. */
  assert_int_equal(count_dir("/proc/self/task"), threads);
  assert_int_equal(count_dir("/proc/self/fd"), fds);
  close(fd);

  /* A full start and stop leaves nothing behind either. */
  s = start_default();
  assert_true(count_dir("/proc/self/task") > threads);
  resil_faultserver_stop(s);
  assert_int_equal(count_dir("/proc/self/task"), threads);
  assert_int_equal(count_dir("/proc/self/fd"), fds - 1);
}

static void test_ipv6_loopback(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.listen = "[::1]:0";
  resil_faultserver *s = NULL;
  resil_err e = resil_faultserver_start(&s, &cfg);
  if (e == RESIL_ESYS) skip(); /* no IPv6 on this machine */
  assert_int_equal(e, RESIL_OK);
  char url[64];
  snprintf(url, sizeof url, "http://[::1]:%u", (unsigned)resil_faultserver_port(s));
  assert_string_equal(resil_faultserver_url(s), url);
  static const char req[] = "GET /status/204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  http_resp r;
  assert_int_equal(http_raw_host("::1", resil_faultserver_port(s), req, sizeof req - 1, &r), 0);
  assert_int_equal(r.status, 204);
  resil_faultserver_stop(s);
}

/* ---- routes ------------------------------------------------------------------------ */

static void test_status_route(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  char v[128];

  assert_int_equal(get(port, "/status/200", &r), 0);
  assert_int_equal(r.status, 200);
  assert_json(&r);
  assert_has(&r, "\"status\":200");
  assert_string_equal(header(&r, "Connection", v, sizeof v), "close");
  assert_null(header(&r, "Retry-After", v, sizeof v));

  assert_int_equal(get(port, "/status/503?retry_after=7", &r), 0);
  assert_int_equal(r.status, 503);
  assert_json(&r);
  assert_string_equal(header(&r, "Retry-After", v, sizeof v), "7");

  /* Verbatim, HTTP-dates included (the query is percent-decoded). */
  assert_int_equal(get(port, "/status/429?retry_after=Wed,%2021%20Oct%202015%2007:28:00%20GMT", &r), 0);
  assert_int_equal(r.status, 429);
  assert_string_equal(header(&r, "Retry-After", v, sizeof v), "Wed, 21 Oct 2015 07:28:00 GMT");

  /* Any method; every status in range. */
  assert_int_equal(http(port, "POST", "/status/599", NULL, "x", &r), 0);
  assert_int_equal(r.status, 599);
  assert_int_equal(http(port, "DELETE", "/status/404", NULL, NULL, &r), 0);
  assert_int_equal(r.status, 404);
  assert_json(&r);

  static const char *const bad[] = {"/status/abc", "/status/700", "/status/99", "/status/1000",
                                    "/status/20", "/status/-200", "/status/+20"};
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    assert_int_equal(get(port, bad[i], &r), 0);
    assert_text_error(&r, 400, "status");
  }
  assert_int_equal(get(port, "/status/200?retry_after=", &r), 0);
  assert_text_error(&r, 400, "retry_after");
  assert_int_equal(get(port, "/status/200?retry_after=a%0d%0aX-Evil:%201", &r), 0);
  assert_text_error(&r, 400, "retry_after");
  assert_int_equal(get(port, "/status/200?fail=1", &r), 0);
  assert_text_error(&r, 400, "unknown parameter 'fail'");
  resil_faultserver_stop(s);
}

static void test_not_found(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  uint16_t port = resil_faultserver_port(s);
  static const char *const paths[] = {"/",        "/nope",       "/flaky",      "/flaky/",
                                      "/flaky/a/b", "/slow/1",   "/truncate/x", "/statsx",
                                      "/status",  "/stats/a/b",  "/drop",       "/ratelimit/"};
  http_resp r;
  for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
    assert_int_equal(get(port, paths[i], &r), 0);
    assert_text_error(&r, 404, "no such path");
  }
  resil_faultserver_stop(s);
}

static const char hello_sha256[] =
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
static const char empty_sha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static void test_flaky(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  char v[128];

  for (int i = 1; i <= 2; i++) {
    assert_int_equal(http(port, "POST", "/flaky/k1?fail=2&status=502&retry_after=3",
                          "Idempotency-Key: idem-1\r\n", "hello", &r), 0);
    assert_int_equal(r.status, 502);
    assert_json(&r);
    assert_string_equal(header(&r, "Retry-After", v, sizeof v), "3");
    char want[64];
    snprintf(want, sizeof want, "\"attempt\":%d", i);
    assert_has(&r, want);
    assert_has(&r, "\"key\":\"k1\"");
  }
  assert_int_equal(http(port, "POST", "/flaky/k1?fail=2&status=502&retry_after=3",
                        "Idempotency-Key: idem-1\r\n", "hello", &r), 0);
  assert_int_equal(r.status, 200);
  assert_json(&r);
  assert_null(header(&r, "Retry-After", v, sizeof v));
  assert_has(&r, "\"attempt\":3");
  assert_has(&r, "\"method\":\"POST\"");
  assert_has(&r, "\"body_bytes\":5");
  assert_has(&r, hello_sha256);
  assert_has(&r, "\"idempotency_key\":\"idem-1\"");

  /* Defaults: fail=1, status=503; no body, no Idempotency-Key. */
  assert_int_equal(get(port, "/flaky/k2", &r), 0);
  assert_int_equal(r.status, 503);
  assert_int_equal(http(port, "PUT", "/flaky/k2", NULL, NULL, &r), 0);
  assert_int_equal(r.status, 200);
  assert_has(&r, "\"method\":\"PUT\"");
  assert_has(&r, empty_sha256);
  assert_has(&r, "\"idempotency_key\":null");
  assert_int_equal(get(port, "/flaky/k3?fail=0", &r), 0);
  assert_int_equal(r.status, 200);

  /* Bad parameters: 400 with a one-line message, and not counted. */
  static const struct {
    const char *target, *needle;
  } bad[] = {
      {"/flaky/b?fail=abc", "fail must be a whole number"},
      {"/flaky/b?fail=-1", "fail must be a whole number"},
      {"/flaky/b?fail=1.5", "fail must be a whole number"},
      {"/flaky/b?fail=99999999999", "fail must be a whole number"},
      {"/flaky/b?fail=", "fail must be a whole number"},
      {"/flaky/b?fail", "needs a value"},
      {"/flaky/b?status=600", "status must be a number from 100 to 599"},
      {"/flaky/b?status=50", "status must be a number from 100 to 599"},
      {"/flaky/b?status=x", "status must be a number from 100 to 599"},
      {"/flaky/b?fial=2", "unknown parameter 'fial'"},
      {"/flaky/b?fail=1&fail=2", "given twice"},
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    assert_int_equal(get(port, bad[i].target, &r), 0);
    assert_text_error(&r, 400, bad[i].needle);
  }
  assert_int_equal(get(port, "/stats/b", &r), 0);
  assert_has(&r, "\"requests\":0");

  /* KEY length is bounded. */
  char target[400];
  memset(target, 'k', sizeof target);
  memcpy(target, "/flaky/", 7);
  target[7 + 256] = '\0';
  assert_int_equal(get(port, target, &r), 0);
  assert_text_error(&r, 400, "longer than 255");
  target[7 + 255] = '\0';
  assert_int_equal(get(port, target, &r), 0);
  assert_int_equal(r.status, 503);
  resil_faultserver_stop(s);
}

static void test_drop(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  for (int i = 0; i < 2; i++) {
    assert_int_equal(http(port, "POST", "/drop/d1?n=2", NULL, "payload", &r), 0);
    assert_int_equal(r.raw_len, 0); /* closed without a byte of answer */
    assert_int_equal(r.status, 0);
  }
  assert_int_equal(http(port, "POST", "/drop/d1?n=2", NULL, "payload", &r), 0);
  assert_int_equal(r.status, 200);
  assert_json(&r);
  assert_has(&r, "\"attempt\":3");
  assert_int_equal(get(port, "/drop/d2", &r), 0); /* default n=1 */
  assert_int_equal(r.raw_len, 0);
  assert_int_equal(get(port, "/drop/d2", &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(get(port, "/drop/d3?n=x", &r), 0);
  assert_text_error(&r, 400, "n must be a whole number");
  /* Dropped requests count as handled. */
  assert_int_equal(resil_faultserver_requests(s), 6);
  resil_faultserver_stop(s);
}

static void test_truncate(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  http_resp r;
  assert_int_equal(get(resil_faultserver_port(s), "/truncate", &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(r.content_length > 0);
  assert_true(r.body_len > 0);
  assert_true((long)r.body_len < r.content_length); /* declared more than sent */
  assert_false(json_valid(r.body, r.body_len));
  assert_int_equal(get(resil_faultserver_port(s), "/truncate?x=1", &r), 0);
  assert_text_error(&r, 400, "takes no parameters");
  resil_faultserver_stop(s);
}

static void test_slow(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  resil_ns t0 = now_ns();
  assert_int_equal(get(port, "/slow?delay=300ms", &r), 0);
  resil_ns took = now_ns() - t0;
  assert_int_equal(r.status, 200);
  assert_json(&r);
  assert_has(&r, "\"delay_ns\":300000000");
  assert_true(took >= 300 * RESIL_MSEC);
  assert_true(took < 10 * RESIL_SEC);

  static const struct {
    const char *target, *needle;
  } bad[] = {{"/slow?delay=abc", "delay must be a duration"},
             {"/slow?delay=5x", "delay must be a duration"},
             {"/slow?delay=-1s", "delay must be a duration"},
             {"/slow?delay=61s", "at most 60s"},
             {"/slow?delay=2m", "at most 60s"},
             {"/slow?wait=1s", "unknown parameter"}};
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    assert_int_equal(get(port, bad[i].target, &r), 0);
    assert_text_error(&r, 400, bad[i].needle);
  }
  resil_faultserver_stop(s);
}

typedef struct slow_call {
  uint16_t port;
  const char *target;
  http_resp r;
  int rc;
} slow_call;

static void *slow_thread(void *arg) {
  slow_call *c = arg;
  c->rc = get(c->port, c->target, &c->r);
  return NULL;
}

/* A waiting answer does not hold a worker: with one thread, other requests
 * are still answered at once while several /slow ones wait. */
static void test_slow_does_not_block_workers(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.threads = 1;
  resil_faultserver *s = start_with(&cfg);
  uint16_t port = resil_faultserver_port(s);
  slow_call calls[4];
  pthread_t t[4];
  resil_ns t0 = now_ns();
  for (int i = 0; i < 4; i++) {
    memset(&calls[i], 0, sizeof calls[i]);
    calls[i].port = port;
    calls[i].target = "/slow?delay=1500ms";
    assert_int_equal(pthread_create(&t[i], NULL, slow_thread, &calls[i]), 0);
  }
  usleep(200 * 1000);
  http_resp r;
  assert_int_equal(get(port, "/status/200", &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(now_ns() - t0 < 1400 * RESIL_MSEC); /* before any slow one is done */
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(calls[i].rc, 0);
    assert_int_equal(calls[i].r.status, 200);
  }
  /* They waited together, not one after another. */
  assert_true(now_ns() - t0 < 5 * RESIL_SEC);
  resil_faultserver_stop(s);
}

/* Stopping with answers still waiting ends them without an answer, at once. */
static void test_stop_with_waiting_requests(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  slow_call c;
  memset(&c, 0, sizeof c);
  c.port = resil_faultserver_port(s);
  c.target = "/slow?delay=30s";
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, slow_thread, &c), 0);
  usleep(300 * 1000);
  resil_ns t0 = now_ns();
  resil_faultserver_stop(s);
  pthread_join(t, NULL);
  assert_true(now_ns() - t0 < 5 * RESIL_SEC);
  assert_int_equal(c.rc, 0);
  assert_int_equal(c.r.status, 0);
}

static void test_ratelimit(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  char v[64];
  for (int i = 0; i < 2; i++) {
    time_t before = time(NULL);
    assert_int_equal(get(port, "/ratelimit/r1?n=2&reset=5", &r), 0);
    time_t after = time(NULL);
    assert_int_equal(r.status, 429);
    assert_json(&r);
    assert_string_equal(header(&r, "Retry-After", v, sizeof v), "5");
    assert_string_equal(header(&r, "RateLimit-Reset", v, sizeof v), "5");
    assert_non_null(header(&r, "X-RateLimit-Reset", v, sizeof v));
    long long at = atoll(v);
    assert_true(at >= (long long)before + 5 && at <= (long long)after + 5);
  }
  assert_int_equal(get(port, "/ratelimit/r1?n=2&reset=5", &r), 0);
  assert_int_equal(r.status, 200);
  assert_null(header(&r, "Retry-After", v, sizeof v));
  assert_int_equal(get(port, "/ratelimit/r2", &r), 0); /* defaults n=1, reset=1 */
  assert_int_equal(r.status, 429);
  assert_string_equal(header(&r, "Retry-After", v, sizeof v), "1");
  assert_int_equal(get(port, "/ratelimit/r3?reset=soon", &r), 0);
  assert_text_error(&r, 400, "reset must be a whole number");
  resil_faultserver_stop(s);
}

/* ---- stats ---------------------------------------------------------------------------- */

static void test_stats(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  assert_int_equal(http(port, "GET", "/flaky/acct?fail=0", "Idempotency-Key: a-1\r\n", NULL, &r), 0);
  assert_int_equal(http(port, "POST", "/flaky/acct?fail=0", "Idempotency-Key: a-2\r\n", "{}", &r), 0);
  assert_int_equal(http(port, "POST", "/flaky/acct?fail=0", "Idempotency-Key: a-2\r\n", "{}", &r), 0);
  assert_int_equal(http(port, "GET", "/ratelimit/other?n=0", NULL, NULL, &r), 0);
  assert_int_equal(get(port, "/status/200", &r), 0); /* not keyed */

  assert_int_equal(get(port, "/stats/acct", &r), 0);
  assert_int_equal(r.status, 200);
  assert_json(&r);
  assert_has(&r, "\"key\":\"acct\"");
  assert_has(&r, "\"tracked\":true");
  assert_has(&r, "\"requests\":3");
  assert_has(&r, "\"methods\":{\"GET\":1,\"POST\":2}");
  assert_has(&r, "\"idempotency_keys\":{\"a-1\":1,\"a-2\":2}");

  assert_int_equal(get(port, "/stats/never", &r), 0);
  assert_int_equal(r.status, 200);
  assert_json(&r);
  assert_has(&r, "\"tracked\":false");
  assert_has(&r, "\"requests\":0");

  assert_int_equal(get(port, "/stats", &r), 0);
  assert_int_equal(r.status, 200);
  assert_json(&r);
  assert_has(&r, "\"requests\":7"); /* the 5 above and two /stats/KEY */
  assert_has(&r, "\"keys_tracked\":2");
  assert_has(&r, "\"keys_evicted\":0");
  assert_has(&r, "\"acct\":{\"requests\":3,");
  assert_has(&r, "\"idempotency_key_count\":2");
  assert_has(&r, "\"other\":{\"requests\":1,\"methods\":{\"GET\":1}");
  assert_int_equal(get(port, "/stats?x=1", &r), 0);
  assert_text_error(&r, 400, "takes no parameters");

  /* Odd bytes in keys, methods and Idempotency-Keys come out as valid JSON. */
  assert_int_equal(http(port, "GET", "/flaky/q%22b%5Cc%01%FF%C3%A9?fail=0",
                        "Idempotency-Key: \"quoted\" \\ back\r\n", NULL, &r), 0);
  assert_int_equal(r.status, 200);
  assert_json(&r);
  assert_has(&r, "\"key\":\"q\\\"b\\\\c\\u0001\xEF\xBF\xBD\xC3\xA9\"");
  assert_int_equal(get(port, "/stats/q%22b%5Cc%01%FF%C3%A9", &r), 0);
  assert_json(&r);
  assert_has(&r, "\"\\\"quoted\\\" \\\\ back\":1");
  assert_int_equal(get(port, "/stats", &r), 0);
  assert_json(&r);
  resil_faultserver_stop(s);
}

static void test_idempotency_keys_bounded(void **state) {
  (void)state;
  resil_faultserver *s = start_default();
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  char h[64];
  /* 71 distinct values; key-00 is seen again early, so it stays while the
   * least recently seen ones (key-01..key-07) make room. */
  for (int i = 0; i <= 70; i++) {
    snprintf(h, sizeof h, "Idempotency-Key: key-%02d\r\n", i);
    assert_int_equal(http(port, "POST", "/flaky/many?fail=0", h, "x", &r), 0);
    assert_int_equal(r.status, 200);
    if (i == 62) {
      assert_int_equal(
          http(port, "POST", "/flaky/many?fail=0", "Idempotency-Key: key-00\r\n", "x", &r), 0);
    }
  }
  assert_int_equal(get(port, "/stats/many", &r), 0);
  assert_json(&r);
  assert_has(&r, "\"requests\":72");
  assert_has(&r, "\"key-00\":2");
  for (int i = 1; i <= 7; i++) {
    snprintf(h, sizeof h, "\"key-%02d\"", i);
    assert_null(strstr(r.body, h));
  }
  for (int i = 8; i <= 70; i++) {
    snprintf(h, sizeof h, "\"key-%02d\":1", i);
    assert_has(&r, h);
  }
  /* Values are bounded too. */
  char big[400];
  memset(big, 'i', sizeof big);
  memcpy(big, "Idempotency-Key: ", 17);
  memcpy(big + 17 + 256, "\r\n", 3);
  assert_int_equal(http(port, "POST", "/flaky/many?fail=0", big, "x", &r), 0);
  assert_text_error(&r, 400, "Idempotency-Key");
  resil_faultserver_stop(s);
}

static void test_max_keys_evicts_least_recent(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.max_keys = 3;
  resil_faultserver *s = start_with(&cfg);
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  assert_int_equal(get(port, "/flaky/k1", &r), 0);
  assert_int_equal(r.status, 503);
  assert_int_equal(get(port, "/flaky/k2", &r), 0);
  assert_int_equal(get(port, "/flaky/k3", &r), 0);
  assert_int_equal(get(port, "/flaky/k1", &r), 0); /* k1 is now the most recent */
  assert_int_equal(r.status, 200);
  assert_int_equal(get(port, "/flaky/k4", &r), 0); /* evicts k2 */

  assert_int_equal(get(port, "/stats", &r), 0);
  assert_has(&r, "\"max_keys\":3");
  assert_has(&r, "\"keys_tracked\":3");
  assert_has(&r, "\"keys_evicted\":1");
  assert_null(strstr(r.body, "\"k2\""));
  assert_int_equal(get(port, "/stats/k2", &r), 0);
  assert_has(&r, "\"tracked\":false");
  assert_int_equal(get(port, "/stats/k1", &r), 0);
  assert_has(&r, "\"requests\":2");
  /* A forgotten key starts over. */
  assert_int_equal(get(port, "/flaky/k2", &r), 0);
  assert_int_equal(r.status, 503);
  assert_has(&r, "\"attempt\":1");

  /* Many keys through a small store: bounded, and still correct. */
  char target[64];
  for (int i = 0; i < 500; i++) {
    snprintf(target, sizeof target, "/flaky/m%d?fail=0", i);
    assert_int_equal(get(port, target, &r), 0);
    assert_int_equal(r.status, 200);
  }
  assert_int_equal(get(port, "/stats", &r), 0);
  assert_has(&r, "\"keys_tracked\":3");
  assert_has(&r, "\"m499\"");
  resil_faultserver_stop(s);
}

static void test_max_body(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.max_body = 16;
  resil_faultserver *s = start_with(&cfg);
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  assert_int_equal(http(port, "POST", "/flaky/b?fail=0", NULL, "0123456789abcdef", &r), 0);
  assert_int_equal(r.status, 200);
  assert_has(&r, "\"body_bytes\":16");
  assert_int_equal(http(port, "POST", "/flaky/b?fail=0", NULL, "0123456789abcdefg", &r), 0);
  assert_text_error(&r, 413, "larger than 16 bytes");

  /* A huge declared length is refused before the body is sent. */
  static const char head_only[] =
      "PUT /flaky/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10000000000\r\n\r\n";
  assert_int_equal(http_raw(port, head_only, sizeof head_only - 1, &r), 0);
  assert_text_error(&r, 413, NULL);

  /* Chunked: counted as it arrives. */
  static const char chunked[] =
      "POST /flaky/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
      "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n";
  assert_int_equal(http_raw(port, chunked, sizeof chunked - 1, &r), 0);
  assert_text_error(&r, 413, NULL);
  static const char chunked_ok[] =
      "POST /flaky/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n";
  assert_int_equal(http_raw(port, chunked_ok, sizeof chunked_ok - 1, &r), 0);
  assert_int_equal(r.status, 200);
  assert_has(&r, hello_sha256);
  /* Refused requests are not counted for the KEY. */
  assert_int_equal(get(port, "/stats/b", &r), 0);
  assert_has(&r, "\"requests\":2");
  resil_faultserver_stop(s);
}

/* ---- global faults ---------------------------------------------------------------------- */

static void test_fail_rate_all_and_none(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.fail_rate = 1.0;
  cfg.fail_status = 500;
  cfg.use_seed = 1;
  cfg.seed = 42;
  resil_faultserver *s = start_with(&cfg);
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  char v[64];
  for (int i = 0; i < 10; i++) {
    assert_int_equal(get(port, "/status/200", &r), 0);
    assert_int_equal(r.status, 500);
    assert_json(&r);
    assert_string_equal(header(&r, "X-Resil-Fault", v, sizeof v), "fail_rate");
  }
  /* Injected failures still count for the KEY... */
  assert_int_equal(get(port, "/flaky/f?fail=0", &r), 0);
  assert_int_equal(r.status, 500);
  assert_has(&r, "\"attempt\":1");
  /* ...and /stats is never failed. */
  assert_int_equal(get(port, "/stats", &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(get(port, "/stats/f", &r), 0);
  assert_int_equal(r.status, 200);
  assert_has(&r, "\"requests\":1");
  resil_faultserver_stop(s);

  cfg.fail_rate = 0.0;
  s = start_with(&cfg);
  port = resil_faultserver_port(s);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(get(port, "/status/200", &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(header(&r, "X-Resil-Fault", v, sizeof v));
  }
  resil_faultserver_stop(s);
}

/* The same seed gives the same sequence of injected failures. */
static void test_fail_rate_seeded(void **state) {
  (void)state;
  char runs[2][41];
  for (int run = 0; run < 2; run++) {
    resil_faultserver_config cfg;
    resil_faultserver_config_init(&cfg);
    cfg.fail_rate = 0.5;
    cfg.use_seed = 1;
    cfg.seed = 7;
    resil_faultserver *s = start_with(&cfg);
    for (int i = 0; i < 40; i++) {
      http_resp r;
      assert_int_equal(get(resil_faultserver_port(s), "/status/200", &r), 0);
      assert_true(r.status == 200 || r.status == 503);
      runs[run][i] = r.status == 200 ? '.' : 'x';
    }
    runs[run][40] = '\0';
    resil_faultserver_stop(s);
  }
  assert_string_equal(runs[0], runs[1]);
  assert_non_null(strchr(runs[0], '.'));
  assert_non_null(strchr(runs[0], 'x'));
}

static void test_outage_window(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.outage_start = 0;
  cfg.outage_duration = 700 * RESIL_MSEC;
  cfg.fail_status = 502;
  resil_faultserver *s = start_with(&cfg);
  uint16_t port = resil_faultserver_port(s);
  resil_ns t0 = now_ns();
  http_resp r;
  char v[64];
  assert_int_equal(get(port, "/status/200", &r), 0);
  if (now_ns() - t0 < 600 * RESIL_MSEC) { /* still inside the window */
    assert_int_equal(r.status, 502);
    assert_string_equal(header(&r, "X-Resil-Fault", v, sizeof v), "outage");
    assert_string_equal(header(&r, "Retry-After", v, sizeof v), "1");
    assert_has(&r, "\"fault\":\"outage\"");
    assert_int_equal(get(port, "/stats", &r), 0);
    assert_int_equal(r.status, 200);
  }
  usleep(800 * 1000);
  assert_int_equal(get(port, "/status/200", &r), 0);
  assert_int_equal(r.status, 200);
  resil_faultserver_stop(s);

  /* A window that starts later. */
  cfg.outage_start = 400 * RESIL_MSEC;
  cfg.outage_duration = 60 * RESIL_SEC;
  s = start_with(&cfg);
  port = resil_faultserver_port(s);
  t0 = now_ns();
  assert_int_equal(get(port, "/ratelimit/x?n=0", &r), 0);
  if (now_ns() - t0 < 300 * RESIL_MSEC) assert_int_equal(r.status, 200);
  usleep(500 * 1000);
  assert_int_equal(get(port, "/ratelimit/x?n=0", &r), 0);
  assert_int_equal(r.status, 502);
  assert_non_null(header(&r, "Retry-After", v, sizeof v));
  assert_true(atoi(v) >= 58 && atoi(v) <= 60);
  resil_faultserver_stop(s);
}

static void test_latency(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.latency = 250 * RESIL_MSEC;
  resil_faultserver *s = start_with(&cfg);
  uint16_t port = resil_faultserver_port(s);
  http_resp r;
  resil_ns t0 = now_ns();
  assert_int_equal(get(port, "/status/200", &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(now_ns() - t0 >= 250 * RESIL_MSEC);
  /* Latency and /slow add up. */
  t0 = now_ns();
  assert_int_equal(get(port, "/slow?delay=250ms", &r), 0);
  assert_int_equal(r.status, 200);
  assert_true(now_ns() - t0 >= 500 * RESIL_MSEC);
  /* A drop waits too, then closes. */
  t0 = now_ns();
  assert_int_equal(get(port, "/drop/l", &r), 0);
  assert_int_equal(r.raw_len, 0);
  assert_true(now_ns() - t0 >= 250 * RESIL_MSEC);
  resil_faultserver_stop(s);
}

/* ---- concurrency -------------------------------------------------------------------------- */

#define CLIENTS 80
#define PER_CLIENT 5

typedef struct client {
  uint16_t port;
  int id;
  int ok, bad;
} client;

static void *client_main(void *arg) {
  client *c = arg;
  char target[64], body[32];
  for (int i = 1; i <= PER_CLIENT; i++) {
    http_resp *r = malloc(sizeof *r);
    if (r == NULL) {
      c->bad++;
      continue;
    }
    /* Each client has its own KEY: the first two answers fail, then 200
     * with the attempt number counted by the server. */
    snprintf(target, sizeof target, "/flaky/c%d?fail=2&status=503", c->id);
    snprintf(body, sizeof body, "client %d request %d", c->id, i);
    int rc = http(c->port, "POST", target, NULL, body, r);
    char want[32];
    snprintf(want, sizeof want, "\"attempt\":%d", i);
    int good = rc == 0 && r->status == (i <= 2 ? 503 : 200) && r->body &&
               strstr(r->body, want) && json_valid(r->body, r->body_len);
    if (good) c->ok++;
    else c->bad++;
    free(r);
  }
  return NULL;
}

static void test_concurrent_clients(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.threads = 8;
  resil_faultserver *s = start_with(&cfg);
  pthread_t t[CLIENTS];
  client c[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) {
    c[i] = (client){resil_faultserver_port(s), i, 0, 0};
    assert_int_equal(pthread_create(&t[i], NULL, client_main, &c[i]), 0);
  }
  int ok = 0, bad = 0;
  for (int i = 0; i < CLIENTS; i++) {
    pthread_join(t[i], NULL);
    ok += c[i].ok;
    bad += c[i].bad;
  }
  assert_int_equal(bad, 0);
  assert_int_equal(ok, CLIENTS * PER_CLIENT);
  assert_int_equal(resil_faultserver_requests(s), CLIENTS * PER_CLIENT);
  http_resp r;
  assert_int_equal(get(resil_faultserver_port(s), "/stats", &r), 0);
  char want[64];
  snprintf(want, sizeof want, "\"keys_tracked\":%d", CLIENTS);
  assert_has(&r, want);
  resil_faultserver_stop(s);
}

/* Over 200 clients waiting at once on a 2-thread server: all are answered,
 * together (a blocking sleep per worker would take 220 * 400ms / 2). */
#define WAITERS 220

static void test_many_waiting_clients(void **state) {
  (void)state;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  cfg.threads = 2;
  resil_faultserver *s = start_with(&cfg);
  slow_call *calls = calloc(WAITERS, sizeof *calls);
  pthread_t *t = calloc(WAITERS, sizeof *t);
  assert_non_null(calls);
  assert_non_null(t);
  resil_ns t0 = now_ns();
  for (int i = 0; i < WAITERS; i++) {
    calls[i].port = resil_faultserver_port(s);
    calls[i].target = "/slow?delay=400ms";
    calls[i].rc = -1;
    assert_int_equal(pthread_create(&t[i], NULL, slow_thread, &calls[i]), 0);
  }
  int ok = 0;
  for (int i = 0; i < WAITERS; i++) {
    pthread_join(t[i], NULL);
    ok += calls[i].rc == 0 && calls[i].r.status == 200;
  }
  resil_ns took = now_ns() - t0;
  assert_int_equal(ok, WAITERS);
  assert_true(took >= 400 * RESIL_MSEC);
  assert_true(took < 20 * RESIL_SEC);
  assert_int_equal(resil_faultserver_requests(s), WAITERS);
  free(calls);
  free(t);
  resil_faultserver_stop(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_port_zero_picks_a_port),
      cmocka_unit_test(test_address_in_use),
      cmocka_unit_test(test_ipv6_loopback),
      cmocka_unit_test(test_status_route),
      cmocka_unit_test(test_not_found),
      cmocka_unit_test(test_flaky),
      cmocka_unit_test(test_drop),
      cmocka_unit_test(test_truncate),
      cmocka_unit_test(test_slow),
      cmocka_unit_test(test_slow_does_not_block_workers),
      cmocka_unit_test(test_stop_with_waiting_requests),
      cmocka_unit_test(test_ratelimit),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_idempotency_keys_bounded),
      cmocka_unit_test(test_max_keys_evicts_least_recent),
      cmocka_unit_test(test_max_body),
      cmocka_unit_test(test_fail_rate_all_and_none),
      cmocka_unit_test(test_fail_rate_seeded),
      cmocka_unit_test(test_outage_window),
      cmocka_unit_test(test_latency),
      cmocka_unit_test(test_concurrent_clients),
      cmocka_unit_test(test_many_waiting_clients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
