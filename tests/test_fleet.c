/* The fleet-wide retry budget (resil/fleet.h) against a real Redis
 * (tests/services.sh, CTest fixture "services"). Without RESIL_TEST_REDIS_URL
 * every test is skipped (exit 77).
 *
 * Every test uses its own key prefix (pid and test), so runs never share a
 * bucket. With the CLI, libcurl and the fault server built
 * (RESIL_FLEET_CLI), three real `resil http` processes share one budget
 * against an in-process fault server answering 503. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "resil/resil.h"
#ifdef RESIL_FLEET_CLI
#include "cli_harness.h"
#include "resil/faultserver.h"
#endif

static const char *base_url;

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* base_url with a prefix of its own for this test, and timeouts long enough
 * that a loaded test machine does not look like an outage (the bounds below
 * hold only while Redis decides). */
static const char *url_for(const char *test, char *buf, size_t len) {
  snprintf(buf, len, "%s?prefix=resil-test-%ld-%s:&connect_timeout=2000&timeout=2000", base_url,
           (long)getpid(), test);
  return buf;
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

/* ---- a log that remembers ------------------------------------------------ */

typedef struct log_rec {
  pthread_mutex_t mu;
  int warns, infos;
  char last_warn[512];
} log_rec;

static void rec_log(void *ud, resil_log_level level, const char *msg) {
  log_rec *r = ud;
  pthread_mutex_lock(&r->mu);
  if (level == RESIL_LOG_WARN) {
    r->warns++;
    snprintf(r->last_warn, sizeof r->last_warn, "%s", msg);
  } else if (level == RESIL_LOG_INFO) {
    r->infos++;
  }
  pthread_mutex_unlock(&r->mu);
}

/* ---- the shared bucket ------------------------------------------------------ */

typedef struct worker {
  const char *url;
  double rate, burst, until;
  uint64_t granted, fallbacks;
  resil_err open_err;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  resil_budget *b = NULL;
  char err[256];
  w->open_err = resil_fleet_budget_open(&b, w->url, "shared", w->rate, w->burst, NULL, NULL, NULL,
                                        err, sizeof err);
  if (w->open_err != RESIL_OK) return NULL;
  for (int i = 0; i < 100000 && mono_s() < w->until; i++) {
    if (resil_budget_retry(b, 0) == RESIL_OK) w->granted++;
    sleep_ms(1);
  }
  resil_budget_snapshot s;
  resil_budget_snapshot_get(b, &s);
  w->fallbacks = s.fallbacks;
  resil_budget_free(b);
  return NULL;
}

static void test_shared_bucket_bound(void **state) {
  (void)state;
  char url[512];
  url_for("bound", url, sizeof url);
  enum { N = 3 };
  worker w[N];
  pthread_t t[N];
  double t0 = mono_s();
  for (int i = 0; i < N; i++) {
    w[i] = (worker){url, 20, 5, t0 + 1.0, 0, 0, RESIL_OK};
    assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
  }
  for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
  double elapsed = mono_s() - t0;
  uint64_t total = 0;
  for (int i = 0; i < N; i++) {
    assert_int_equal(w[i].open_err, RESIL_OK);
    assert_int_equal(w[i].fallbacks, 0);
    total += w[i].granted;
  }
  double bound = 5 + 20 * elapsed;
  printf("shared bucket: %llu granted in %.3fs (bound %.1f)\n", (unsigned long long)total,
         elapsed, bound);
  assert_true((double)total <= bound);
  /* Each alone could have taken about 25; together they share one bucket,
   * but it was not starved either. */
  assert_true(total >= 10);
}

static void test_names_are_independent(void **state) {
  (void)state;
  char url[512];
  url_for("names", url, sizeof url);
  resil_budget *a = NULL, *b = NULL, *a2 = NULL;
  assert_int_equal(resil_fleet_budget_open(&a, url, "a", 0.001, 3, NULL, NULL, NULL, NULL, 0),
                   RESIL_OK);
  assert_int_equal(resil_fleet_budget_open(&b, url, "b", 0.001, 3, NULL, NULL, NULL, NULL, 0),
                   RESIL_OK);
  assert_int_equal(resil_fleet_budget_open(&a2, url, "a", 0.001, 3, NULL, NULL, NULL, NULL, 0),
                   RESIL_OK);
  assert_string_equal(resil_budget_name(a), "a");
  /* a and a2 share one bucket of 3; b has its own. */
  assert_int_equal(resil_budget_retry(a, 0), RESIL_OK);
  assert_int_equal(resil_budget_retry(a2, 0), RESIL_OK);
  assert_int_equal(resil_budget_retry(a, 0), RESIL_OK);
  assert_int_equal(resil_budget_retry(a2, 0), RESIL_EBUDGET);
  assert_int_equal(resil_budget_retry(a, 0), RESIL_EBUDGET);
  for (int i = 0; i < 3; i++) assert_int_equal(resil_budget_retry(b, 0), RESIL_OK);
  assert_int_equal(resil_budget_retry(b, 0), RESIL_EBUDGET);
  resil_budget_snapshot s;
  resil_budget_snapshot_get(a, &s);
  assert_int_equal(s.retries_granted, 2);
  assert_int_equal(s.retries_denied, 1);
  assert_int_equal(s.fallbacks, 0);
  resil_budget_free(a);
  resil_budget_free(b);
  resil_budget_free(a2);
}

static void test_unreachable_falls_back(void **state) {
  (void)state;
  char url[128];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", closed_port());
  log_rec rec;
  memset(&rec, 0, sizeof rec);
  pthread_mutex_init(&rec.mu, NULL);
  resil_budget_config local;
  resil_budget_config_init(&local);
  local.rate = 0.001;
  local.burst = 2;
  resil_budget *b = NULL;
  char err[256];
  assert_int_equal(
      resil_fleet_budget_open(&b, url, "down", 100, 100, &local, rec_log, &rec, err, sizeof err),
      RESIL_OK);
  double t0 = mono_s();
  /* The local bucket (2) decides, not the fleet's (100). */
  assert_int_equal(resil_budget_retry(b, 0), RESIL_OK);
  assert_int_equal(resil_budget_retry(b, 0), RESIL_OK);
  for (int i = 0; i < 20; i++) assert_int_equal(resil_budget_retry(b, 0), RESIL_EBUDGET);
  double took = mono_s() - t0;
  resil_budget_snapshot s;
  resil_budget_snapshot_get(b, &s);
  assert_int_equal(s.fallbacks, 22);
  assert_int_equal(s.retries_granted, 2);
  assert_int_equal(rec.warns, 1); /* once per outage */
  assert_non_null(strstr(rec.last_warn, "fleet budget down unreachable: "));
  assert_non_null(strstr(rec.last_warn, "using the local budget"));
  /* Falling back never waits on the dead server for long. This only guards
   * against a hang (generous bound; tests do not assert on speed). */
  assert_true(took < 10.0);
  resil_budget_free(b);
  pthread_mutex_destroy(&rec.mu);
}

static void test_open_errors(void **state) {
  (void)state;
  resil_budget *b = (resil_budget *)1;
  char err[256];
  assert_int_equal(resil_fleet_budget_open(&b, "http://x", "n", 1, 1, NULL, NULL, NULL, err,
                                           sizeof err),
                   RESIL_EINVAL);
  assert_null(b);
  assert_non_null(strstr(err, "redis://"));
  assert_int_equal(resil_fleet_budget_open(&b, base_url, "", 1, 1, NULL, NULL, NULL, err,
                                           sizeof err),
                   RESIL_EINVAL);
  assert_int_equal(resil_fleet_budget_open(&b, base_url, "n", 0, 1, NULL, NULL, NULL, err,
                                           sizeof err),
                   RESIL_EINVAL);
  assert_int_equal(resil_fleet_budget_open(&b, base_url, "n", 1, 0.5, NULL, NULL, NULL, err,
                                           sizeof err),
                   RESIL_EINVAL);
  assert_int_equal(resil_fleet_budget_open(&b, "redis://127.0.0.1:1/0?bogus=1", "n", 1, 1, NULL,
                                           NULL, NULL, err, sizeof err),
                   RESIL_EINVAL);
  assert_non_null(strstr(err, "bogus"));
}

/* ---- the shared circuit ---------------------------------------------------- */

enum { OPEN_MS = 300 };

typedef struct instance {
  resil_breaker *b;
  resil_fleet_circuit *fc;
} instance;

/* A local breaker that opens on one failure for OPEN_MS, and its fleet
 * handle (quorum 2, one probe, no caching so every acquire sees Redis). */
static void instance_open(instance *in, const char *url, resil_log_fn log, void *log_ud) {
  resil_breaker_config bc;
  resil_breaker_config_init(&bc);
  bc.name = "svc";
  bc.failure_threshold = 1;
  bc.open_duration = OPEN_MS * RESIL_MSEC;
  bc.open_duration_max = OPEN_MS * RESIL_MSEC;
  bc.probe_timeout = 5 * RESIL_SEC;
  assert_int_equal(resil_breaker_new(&in->b, &bc), RESIL_OK);
  resil_fleet_circuit_config cfg;
  resil_fleet_circuit_config_init(&cfg);
  assert_int_equal(cfg.quorum, 2);
  assert_int_equal(cfg.probes, 1);
  cfg.redis_url = url;
  cfg.refresh = 0;
  cfg.probe_ttl = 2 * RESIL_SEC;
  cfg.log = log;
  cfg.log_ud = log_ud;
  char err[256];
  assert_int_equal(resil_fleet_circuit_open(&in->fc, &cfg, in->b, err, sizeof err), RESIL_OK);
}

static void instance_close(instance *in) {
  resil_fleet_circuit_close(in->fc);
  resil_breaker_free(in->b);
}

/* One call with the given result; the acquire's error. */
static resil_err call(instance *in, resil_call_result r, resil_ns *retry_in) {
  resil_fleet_permit p;
  resil_err e = resil_fleet_circuit_acquire(in->fc, &p, retry_in);
  if (e == RESIL_OK) resil_fleet_circuit_record(in->fc, &p, r, 0);
  return e;
}

static void test_circuit_quorum_and_probes(void **state) {
  (void)state;
  char url[512];
  url_for("circuit", url, sizeof url);
  instance in[3];
  for (int i = 0; i < 3; i++) instance_open(&in[i], url, NULL, NULL);
  resil_ns retry_in = -1;
  resil_fleet_circuit_snapshot s;

  /* One instance open: the others still allow (quorum 2). */
  assert_int_equal(call(&in[0], RESIL_CALL_FAILURE, NULL), RESIL_OK);
  assert_int_equal(call(&in[0], RESIL_CALL_SUCCESS, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_int_equal(call(&in[1], RESIL_CALL_SUCCESS, &retry_in), RESIL_OK);
  assert_int_equal(call(&in[2], RESIL_CALL_SUCCESS, &retry_in), RESIL_OK);
  resil_fleet_circuit_snapshot_get(in[2].fc, &s);
  assert_int_equal(s.fleet_open, 0);
  assert_int_equal(s.instances_open, 1);

  /* Two open: the third refuses, for about the open time left. */
  assert_int_equal(call(&in[1], RESIL_CALL_FAILURE, NULL), RESIL_OK);
  retry_in = -1;
  assert_int_equal(call(&in[2], RESIL_CALL_SUCCESS, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in > 0 && retry_in <= (OPEN_MS + 50) * RESIL_MSEC);
  resil_fleet_circuit_snapshot_get(in[2].fc, &s);
  assert_int_equal(s.fleet_open, 1);
  assert_int_equal(s.instances_open, 2);
  resil_breaker_snapshot bs;
  resil_breaker_snapshot_get(in[2].b, &bs);
  assert_int_equal(bs.state, RESIL_BREAKER_CLOSED); /* the refusal was the fleet's */

  /* After the open times: recovering, one probe for the whole fleet. */
  sleep_ms(OPEN_MS + 200);
  resil_fleet_permit probe;
  assert_int_equal(resil_fleet_circuit_acquire(in[2].fc, &probe, &retry_in), RESIL_OK);
  assert_true(probe.probe_slot == 0);
  resil_fleet_circuit_snapshot_get(in[2].fc, &s);
  assert_int_equal(s.probes_in_flight, 1);
  assert_int_equal(s.instances_open, 0);
  for (int i = 0; i < 2; i++) {
    retry_in = -1;
    assert_int_equal(call(&in[i], RESIL_CALL_SUCCESS, &retry_in), RESIL_ECIRCUIT_OPEN);
    assert_true(retry_in > 0 && retry_in <= 2 * RESIL_SEC);
    /* the local half-open probe was given back */
    resil_breaker_snapshot_get(in[i].b, &bs);
    assert_int_equal(bs.probes_in_flight, 0);
  }
  /* A second probe from the same instance is refused too. */
  assert_int_equal(call(&in[2], RESIL_CALL_SUCCESS, &retry_in), RESIL_ECIRCUIT_OPEN);

  /* The probe succeeds: the fleet is closed for everyone. */
  resil_fleet_circuit_record(in[2].fc, &probe, RESIL_CALL_SUCCESS, 0);
  resil_fleet_circuit_snapshot_get(in[2].fc, &s);
  assert_int_equal(s.probes_in_flight, 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(call(&in[i], RESIL_CALL_SUCCESS, &retry_in), RESIL_OK);
    resil_fleet_circuit_snapshot_get(in[i].fc, &s);
    assert_int_equal(s.fleet_open, 0);
    assert_int_equal(s.fallbacks, 0);
  }
  /* The local breakers closed again and withdrew their entries. */
  assert_int_equal(call(&in[2], RESIL_CALL_SUCCESS, &retry_in), RESIL_OK);
  resil_fleet_circuit_snapshot_get(in[2].fc, &s);
  assert_int_equal(s.instances_open, 0);
  for (int i = 0; i < 3; i++) instance_close(&in[i]);
}

/* A failed fleet probe frees its slot for another instance, and the fleet
 * stays recovering. */
static void test_circuit_probe_failure(void **state) {
  (void)state;
  char url[512];
  url_for("probefail", url, sizeof url);
  instance in[3];
  for (int i = 0; i < 3; i++) instance_open(&in[i], url, NULL, NULL);
  resil_ns retry_in;
  assert_int_equal(call(&in[0], RESIL_CALL_FAILURE, NULL), RESIL_OK);
  assert_int_equal(call(&in[1], RESIL_CALL_FAILURE, NULL), RESIL_OK);
  assert_int_equal(call(&in[2], RESIL_CALL_SUCCESS, &retry_in), RESIL_ECIRCUIT_OPEN);
  sleep_ms(OPEN_MS + 200);
  resil_fleet_permit probe;
  assert_int_equal(resil_fleet_circuit_acquire(in[2].fc, &probe, &retry_in), RESIL_OK);
  assert_int_equal(probe.probe_slot, 0);
  resil_fleet_circuit_record(in[2].fc, &probe, RESIL_CALL_FAILURE, 0);
  /* in[2] is open locally now (one entry: no quorum); in[0] may probe. */
  assert_int_equal(resil_fleet_circuit_acquire(in[0].fc, &probe, &retry_in), RESIL_OK);
  assert_int_equal(probe.probe_slot, 0);
  assert_int_equal(call(&in[1], RESIL_CALL_SUCCESS, &retry_in), RESIL_ECIRCUIT_OPEN);
  resil_fleet_circuit_record(in[0].fc, &probe, RESIL_CALL_SUCCESS, 0);
  assert_int_equal(call(&in[1], RESIL_CALL_SUCCESS, &retry_in), RESIL_OK);
  for (int i = 0; i < 3; i++) instance_close(&in[i]);
}

static void test_circuit_redis_down(void **state) {
  (void)state;
  char url[128];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", closed_port());
  log_rec rec;
  memset(&rec, 0, sizeof rec);
  pthread_mutex_init(&rec.mu, NULL);
  instance in;
  instance_open(&in, url, rec_log, &rec);
  resil_ns retry_in;
  assert_int_equal(call(&in, RESIL_CALL_SUCCESS, &retry_in), RESIL_OK);
  assert_int_equal(call(&in, RESIL_CALL_FAILURE, &retry_in), RESIL_OK);
  /* Local behaviour: open now, refused by the local breaker. */
  assert_int_equal(call(&in, RESIL_CALL_SUCCESS, &retry_in), RESIL_ECIRCUIT_OPEN);
  assert_true(retry_in > 0);
  sleep_ms(OPEN_MS + 100);
  assert_int_equal(call(&in, RESIL_CALL_SUCCESS, &retry_in), RESIL_OK);
  assert_int_equal(call(&in, RESIL_CALL_SUCCESS, &retry_in), RESIL_OK);
  resil_fleet_circuit_snapshot s;
  resil_fleet_circuit_snapshot_get(in.fc, &s);
  assert_true(s.fallbacks > 0);
  assert_int_equal(s.fleet_open, 0);
  assert_int_equal(rec.warns, 1); /* once per outage */
  assert_non_null(strstr(rec.last_warn, "fleet circuit svc unreachable: "));
  instance_close(&in);
  pthread_mutex_destroy(&rec.mu);
}

static void test_circuit_open_errors(void **state) {
  (void)state;
  resil_breaker *b = NULL;
  resil_breaker_config bc;
  resil_breaker_config_init(&bc);
  assert_int_equal(resil_breaker_new(&b, &bc), RESIL_OK);
  resil_fleet_circuit_config cfg;
  resil_fleet_circuit_config_init(&cfg);
  resil_fleet_circuit *fc = (resil_fleet_circuit *)1;
  char err[256];
  cfg.redis_url = "http://x";
  assert_int_equal(resil_fleet_circuit_open(&fc, &cfg, b, err, sizeof err), RESIL_EINVAL);
  assert_null(fc);
  cfg.redis_url = base_url;
  cfg.quorum = 0;
  assert_int_equal(resil_fleet_circuit_open(&fc, &cfg, b, err, sizeof err), RESIL_EINVAL);
  cfg.quorum = 2;
  cfg.probes = 0;
  assert_int_equal(resil_fleet_circuit_open(&fc, &cfg, b, err, sizeof err), RESIL_EINVAL);
  cfg.probes = 1;
  assert_int_equal(resil_fleet_circuit_open(&fc, &cfg, NULL, err, sizeof err), RESIL_EINVAL);
  assert_int_equal(resil_fleet_circuit_open(&fc, &cfg, b, err, sizeof err), RESIL_OK);
  resil_fleet_circuit_close(fc);
  resil_fleet_circuit_close(NULL);
  resil_breaker_free(b);
}

/* ---- three real processes --------------------------------------------------- */

#ifdef RESIL_FLEET_CLI
static void test_cli_fleet_budget(void **state) {
  (void)state;
  resil_faultserver *server = NULL;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  assert_int_equal(resil_faultserver_start(&server, &cfg), RESIL_OK);
  char target[256], url[512];
  snprintf(target, sizeof target, "%s/status/503", resil_faultserver_url(server));
  url_for("cli", url, sizeof url);
  enum { N = 3 };
  const double R = 5, B = 4;
  const char *const args[] = {"http", "--budget-url", url, "--budget", "fleet", "--budget-rate",
                              "5", "--budget-burst", "4", "--attempts", "50", "--base", "10ms",
                              "--cap", "50ms", target, NULL};
  cli_proc p[N];
  double t0 = now_s();
  for (int i = 0; i < N; i++) cli_start(&p[i], NULL, args);
  cli_wait_all(p, N);
  double elapsed = now_s() - t0;
  uint64_t requests = resil_faultserver_requests(server);
  uint64_t retries = requests - N;
  printf("fleet budget: %llu requests, %llu retries in %.3fs (bound %.1f)\n",
         (unsigned long long)requests, (unsigned long long)retries, elapsed, B + R * elapsed);
  for (int i = 0; i < N; i++) {
    assert_int_equal(p[i].cap.status, 75);
    assert_non_null(strstr(p[i].cap.err, "resil: giving up: retry budget fleet exhausted"));
    capture_free(&p[i].cap);
  }
  assert_true(requests >= N);
  assert_true((double)retries <= B + R * elapsed);
  assert_true(retries >= 1);
  resil_faultserver_stop(server);
}

static void test_cli_budget_redis_down(void **state) {
  (void)state;
  char url[128];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", closed_port());
  resil_faultserver *server = NULL;
  resil_faultserver_config cfg;
  resil_faultserver_config_init(&cfg);
  assert_int_equal(resil_faultserver_start(&server, &cfg), RESIL_OK);
  char target[256];
  snprintf(target, sizeof target, "%s/status/503", resil_faultserver_url(server));
  capture c;
  RUN(&c, "http", "--budget-url", url, "--budget", "down", "--budget-rate", "1",
      "--budget-burst", "2", "--attempts", "10", "--base", "10ms", target);
  /* The local budget: 2 retries, then the denial. */
  assert_int_equal(c.status, 75);
  assert_non_null(strstr(c.err, "resil: fleet budget down unreachable: "));
  assert_non_null(strstr(c.err, "giving up: retry budget down exhausted"));
  assert_int_equal(resil_faultserver_requests(server), 3);
  capture_free(&c);
  RUN(&c, "http", "--budget", "x", target);
  assert_int_equal(c.status, 64);
  capture_free(&c);
  RUN(&c, "http", "--budget-url", "http://x", "--budget", "x", target);
  assert_int_equal(c.status, 64);
  capture_free(&c);
  resil_faultserver_stop(server);
}
#endif

/* ---- main ------------------------------------------------------------------- */

static int available(void) {
  base_url = getenv("RESIL_TEST_REDIS_URL");
  const char *dir = getenv("RESIL_TEST_SERVICES_DIR");
  if (dir != NULL && *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/redis.skip", dir);
    FILE *fp = fopen(path, "r");
    if (fp != NULL) {
      fclose(fp);
      printf("SKIPPED: no Redis for these tests\n");
      return 0;
    }
  }
  if (base_url == NULL || *base_url == '\0' || strchr(base_url, '?') != NULL) {
    printf("SKIPPED: RESIL_TEST_REDIS_URL is not set (or has a ?query)\n");
    return 0;
  }
  return 1;
}

int main(void) {
  if (!available()) return 77;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_names_are_independent),
      cmocka_unit_test(test_shared_bucket_bound),
      cmocka_unit_test(test_unreachable_falls_back),
      cmocka_unit_test(test_circuit_open_errors),
      cmocka_unit_test(test_circuit_quorum_and_probes),
      cmocka_unit_test(test_circuit_probe_failure),
      cmocka_unit_test(test_circuit_redis_down),
#ifdef RESIL_FLEET_CLI
      cmocka_unit_test(test_cli_fleet_budget),
      cmocka_unit_test(test_cli_budget_redis_down),
#endif
  };
  return cmocka_run_group_tests_name("fleet", tests, NULL, NULL);
}
