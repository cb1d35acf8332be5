/* Tests for classify.h: code sets, HTTP statuses and methods, errno classes
 * and exit codes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "resil/classify.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The documented default rule, written independently of the library. */
static int default_rule(int status) {
  if (status == 408 || status == 429) return 1;
  return status >= 500 && status <= 599 && status != 501;
}

static resil_codeset set_of(const char *spec) {
  resil_codeset s;
  assert_int_equal(resil_codeset_parse(&s, spec), RESIL_OK);
  return s;
}

static void assert_format(const resil_codeset *s, const char *want) {
  char buf[4096];
  size_t n = resil_codeset_format(s, buf, sizeof buf);
  assert_string_equal(buf, want);
  assert_int_equal(n, strlen(want));
}

static void assert_sets_equal(const resil_codeset *a, const resil_codeset *b) {
  for (int c = 0; c <= RESIL_CODESET_MAX; c++)
    assert_int_equal(resil_codeset_has(a, c), resil_codeset_has(b, c));
}

/* Checks the fields every outcome must have. */
static void assert_outcome(resil_outcome o, resil_outcome_kind kind, int code,
                           resil_ns retry_after, int uncertain) {
  assert_int_equal(o.kind, kind);
  assert_int_equal(o.code, code);
  assert_int_equal(o.retry_after, retry_after);
  assert_int_equal(o.uncertain, uncertain);
}

/* ---- HTTP statuses -------------------------------------------------------- */

static void test_http_default_every_status(void **state) {
  resil_codeset def;
  (void)state;
  resil_http_retry_statuses_default(&def);
  for (int st = 100; st <= 599; st++) {
    assert_int_equal(resil_http_status_retryable(st), default_rule(st));
    assert_int_equal(resil_codeset_has(&def, st), default_rule(st));
  }
  /* Outside the status range nothing is retryable. */
  const int outside[] = {-1, 0, 99, 600, 999, 1023, 1024, 100000};
  for (size_t i = 0; i < ARRAY_LEN(outside); i++) {
    assert_int_equal(resil_http_status_retryable(outside[i]), 0);
    assert_int_equal(resil_codeset_has(&def, outside[i]), 0);
  }
  assert_format(&def, "408,429,500,502-599");
}

static void test_http_default_overwrites_set(void **state) {
  resil_codeset s = set_of("0-1023");
  (void)state;
  resil_http_retry_statuses_default(&s);
  assert_format(&s, "408,429,500,502-599");
  resil_http_retry_statuses_default(NULL); /* no crash */
}

static void test_http_explicit_lists(void **state) {
  static const int retry[] = {408, 429, 500, 502, 503, 504, 522, 524};
  static const int never[] = {400, 401, 403, 404, 405, 410, 422, 501};
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(retry); i++) {
    assert_true(resil_http_status_retryable(retry[i]));
    assert_int_equal(
        resil_classify_http(retry[i], 1, NULL, -1).kind, RESIL_OUTCOME_RETRYABLE);
  }
  for (size_t i = 0; i < ARRAY_LEN(never); i++) {
    assert_false(resil_http_status_retryable(never[i]));
    assert_int_equal(
        resil_classify_http(never[i], 1, NULL, -1).kind, RESIL_OUTCOME_FATAL);
    assert_int_equal(resil_classify_http(never[i], 1, NULL, 5 * RESIL_SEC).kind,
                     RESIL_OUTCOME_FATAL);
  }
}

/* ---- HTTP methods --------------------------------------------------------- */

static void test_http_methods(void **state) {
  static const struct {
    const char *method;
    int idempotent;
  } cases[] = {
      {"GET", 1},     {"HEAD", 1},     {"OPTIONS", 1}, {"TRACE", 1},
      {"PUT", 1},     {"DELETE", 1},   {"POST", 0},    {"PATCH", 0},
      {"CONNECT", 0}, {"get", 0},      {"Get", 0},     {"delete", 0},
      {"", 0},        {"GET ", 0},     {" GET", 0},    {"GETX", 0},
      {"GE", 0},      {"PUTS", 0},     {"PROPFIND", 0},
  };
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    if (resil_http_method_idempotent(cases[i].method) != cases[i].idempotent)
      fail_msg("method \"%s\": want %d", cases[i].method, cases[i].idempotent);
  }
  assert_int_equal(resil_http_method_idempotent(NULL), 0);
}

/* ---- resil_classify_http -------------------------------------------------- */

static void test_classify_http_table(void **state) {
  static const struct {
    int status, idempotent;
    resil_ns retry_after;
    resil_outcome_kind kind;
  } cases[] = {
      /* success range, whatever else is passed */
      {100, 0, -1, RESIL_OUTCOME_SUCCESS},
      {200, 1, -1, RESIL_OUTCOME_SUCCESS},
      {204, 0, 3 * RESIL_SEC, RESIL_OUTCOME_SUCCESS},
      {301, 0, -1, RESIL_OUTCOME_SUCCESS},
      {399, 1, -1, RESIL_OUTCOME_SUCCESS},
      /* idempotent requests retry the default statuses */
      {503, 1, -1, RESIL_OUTCOME_RETRYABLE},
      {503, 1, 0, RESIL_OUTCOME_RETRY_AFTER},
      {503, 1, 7 * RESIL_SEC, RESIL_OUTCOME_RETRY_AFTER},
      {408, 1, -1, RESIL_OUTCOME_RETRYABLE},
      {500, 1, -1, RESIL_OUTCOME_RETRYABLE},
      {599, 1, RESIL_NS_MAX, RESIL_OUTCOME_RETRY_AFTER},
      /* non-idempotent requests: only 429 is known not to be processed */
      {503, 0, -1, RESIL_OUTCOME_FATAL},
      {503, 0, 7 * RESIL_SEC, RESIL_OUTCOME_FATAL},
      {500, 0, -1, RESIL_OUTCOME_FATAL},
      {408, 0, -1, RESIL_OUTCOME_FATAL},
      {429, 0, -1, RESIL_OUTCOME_RETRYABLE},
      {429, 0, 2 * RESIL_SEC, RESIL_OUTCOME_RETRY_AFTER},
      {429, 1, -1, RESIL_OUTCOME_RETRYABLE},
      {429, 1, 0, RESIL_OUTCOME_RETRY_AFTER},
      {429, 1, -RESIL_SEC, RESIL_OUTCOME_RETRYABLE},
      /* not in the default set */
      {501, 1, -1, RESIL_OUTCOME_FATAL},
      {501, 1, RESIL_SEC, RESIL_OUTCOME_FATAL},
      {404, 1, -1, RESIL_OUTCOME_FATAL},
      {0, 1, -1, RESIL_OUTCOME_FATAL},
      {99, 1, -1, RESIL_OUTCOME_FATAL},
      {600, 1, -1, RESIL_OUTCOME_FATAL},
      {-1, 1, -1, RESIL_OUTCOME_FATAL},
  };
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    resil_outcome o = resil_classify_http(cases[i].status, cases[i].idempotent,
                                          NULL, cases[i].retry_after);
    resil_ns ra =
        cases[i].kind == RESIL_OUTCOME_RETRY_AFTER ? cases[i].retry_after : 0;
    if (o.kind != cases[i].kind)
      fail_msg("case %zu (status %d, idempotent %d): kind %d, want %d", i,
               cases[i].status, cases[i].idempotent, (int)o.kind,
               (int)cases[i].kind);
    assert_outcome(o, cases[i].kind, cases[i].status, ra, 0);
  }
}

static void test_classify_http_every_status(void **state) {
  (void)state;
  for (int st = 0; st <= 1100; st++) {
    for (int idem = 0; idem <= 1; idem++) {
      resil_outcome_kind want;
      if (st >= 100 && st <= 399)
        want = RESIL_OUTCOME_SUCCESS;
      else if (default_rule(st) && (idem || st == 429))
        want = RESIL_OUTCOME_RETRYABLE;
      else
        want = RESIL_OUTCOME_FATAL;
      assert_outcome(resil_classify_http(st, idem, NULL, -1), want, st, 0, 0);
    }
  }
}

static void test_classify_http_custom_set(void **state) {
  resil_codeset only503 = set_of("503");
  resil_codeset wide = set_of("0-1023");
  resil_codeset empty;
  (void)state;
  resil_codeset_clear(&empty);

  assert_int_equal(resil_classify_http(503, 1, &only503, -1).kind,
                   RESIL_OUTCOME_RETRYABLE);
  assert_int_equal(resil_classify_http(503, 1, &only503, RESIL_SEC).kind,
                   RESIL_OUTCOME_RETRY_AFTER);
  assert_int_equal(resil_classify_http(500, 1, &only503, -1).kind,
                   RESIL_OUTCOME_FATAL);
  /* 429 is not in the custom set, so even it is fatal */
  assert_int_equal(resil_classify_http(429, 1, &only503, RESIL_SEC).kind,
                   RESIL_OUTCOME_FATAL);
  /* the custom set does not lift the idempotency requirement */
  assert_int_equal(resil_classify_http(503, 0, &only503, -1).kind,
                   RESIL_OUTCOME_FATAL);

  /* a set may add statuses the default leaves out, 501 and 4xx included */
  assert_int_equal(resil_classify_http(501, 1, &wide, -1).kind,
                   RESIL_OUTCOME_RETRYABLE);
  assert_int_equal(resil_classify_http(404, 1, &wide, -1).kind,
                   RESIL_OUTCOME_RETRYABLE);
  assert_int_equal(resil_classify_http(0, 1, &wide, -1).kind,
                   RESIL_OUTCOME_RETRYABLE);
  assert_int_equal(resil_classify_http(429, 0, &wide, -1).kind,
                   RESIL_OUTCOME_RETRYABLE);
  assert_int_equal(resil_classify_http(404, 0, &wide, -1).kind,
                   RESIL_OUTCOME_FATAL);
  /* but 1xx-3xx stay SUCCESS even when listed */
  assert_int_equal(resil_classify_http(200, 1, &wide, -1).kind,
                   RESIL_OUTCOME_SUCCESS);
  /* statuses outside the set's range are never members */
  assert_int_equal(resil_classify_http(1024, 1, &wide, -1).kind,
                   RESIL_OUTCOME_FATAL);
  assert_int_equal(resil_classify_http(-5, 1, &wide, -1).kind,
                   RESIL_OUTCOME_FATAL);

  /* a non-NULL empty set retries nothing */
  for (int st = 400; st <= 599; st++)
    assert_outcome(resil_classify_http(st, 1, &empty, RESIL_SEC),
                   RESIL_OUTCOME_FATAL, st, 0, 0);
}

/* ---- errno ---------------------------------------------------------------- */

static const struct {
  int err;
  const char *name;
  resil_errclass cls;
} errno_cases[] = {
#ifdef ECONNREFUSED
    {ECONNREFUSED, "ECONNREFUSED", RESIL_ERRCLASS_NOT_SENT},
#endif
#ifdef ENETUNREACH
    {ENETUNREACH, "ENETUNREACH", RESIL_ERRCLASS_NOT_SENT},
#endif
#ifdef EHOSTUNREACH
    {EHOSTUNREACH, "EHOSTUNREACH", RESIL_ERRCLASS_NOT_SENT},
#endif
#ifdef EADDRNOTAVAIL
    {EADDRNOTAVAIL, "EADDRNOTAVAIL", RESIL_ERRCLASS_NOT_SENT},
#endif
#ifdef ENETDOWN
    {ENETDOWN, "ENETDOWN", RESIL_ERRCLASS_NOT_SENT},
#endif
#ifdef EHOSTDOWN
    {EHOSTDOWN, "EHOSTDOWN", RESIL_ERRCLASS_NOT_SENT},
#endif
#ifdef ECONNRESET
    {ECONNRESET, "ECONNRESET", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef ECONNABORTED
    {ECONNABORTED, "ECONNABORTED", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef ETIMEDOUT
    {ETIMEDOUT, "ETIMEDOUT", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef EAGAIN
    {EAGAIN, "EAGAIN", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef EWOULDBLOCK
    {EWOULDBLOCK, "EWOULDBLOCK", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef EPIPE
    {EPIPE, "EPIPE", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef EINTR
    {EINTR, "EINTR", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef EBUSY
    {EBUSY, "EBUSY", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef ENOBUFS
    {ENOBUFS, "ENOBUFS", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef ENETRESET
    {ENETRESET, "ENETRESET", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef EALREADY
    {EALREADY, "EALREADY", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef EINPROGRESS
    {EINPROGRESS, "EINPROGRESS", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef ENOLCK
    {ENOLCK, "ENOLCK", RESIL_ERRCLASS_TRANSIENT},
#endif
#ifdef ETXTBSY
    {ETXTBSY, "ETXTBSY", RESIL_ERRCLASS_TRANSIENT},
#endif
    {ENOENT, "ENOENT", RESIL_ERRCLASS_PERMANENT},
    {EACCES, "EACCES", RESIL_ERRCLASS_PERMANENT},
    {EINVAL, "EINVAL", RESIL_ERRCLASS_PERMANENT},
    {EPERM, "EPERM", RESIL_ERRCLASS_PERMANENT},
    {ENOMEM, "ENOMEM", RESIL_ERRCLASS_PERMANENT},
    {EBADF, "EBADF", RESIL_ERRCLASS_PERMANENT},
    {EDOM, "EDOM", RESIL_ERRCLASS_PERMANENT},
    {ERANGE, "ERANGE", RESIL_ERRCLASS_PERMANENT},
    {0, "0", RESIL_ERRCLASS_PERMANENT},
    {-1, "-1", RESIL_ERRCLASS_PERMANENT},
#ifdef ECONNRESET
    {-ECONNRESET, "-ECONNRESET", RESIL_ERRCLASS_PERMANENT},
#endif
    {100000, "100000", RESIL_ERRCLASS_PERMANENT},
};

static void test_errno_class(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(errno_cases); i++) {
    resil_errclass got = resil_errno_class(errno_cases[i].err);
    if (got != errno_cases[i].cls)
      fail_msg("%s: class %s, want %s", errno_cases[i].name,
               resil_errclass_name(got),
               resil_errclass_name(errno_cases[i].cls));
  }
}

static void test_errclass_name(void **state) {
  (void)state;
  assert_string_equal(resil_errclass_name(RESIL_ERRCLASS_PERMANENT),
                      "permanent");
  assert_string_equal(resil_errclass_name(RESIL_ERRCLASS_TRANSIENT),
                      "transient");
  assert_string_equal(resil_errclass_name(RESIL_ERRCLASS_NOT_SENT),
                      "not-sent");
  assert_string_equal(resil_errclass_name((resil_errclass)3), "unknown");
  assert_string_equal(resil_errclass_name((resil_errclass)99), "unknown");
}

static void test_classify_errno(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(errno_cases); i++) {
    int err = errno_cases[i].err;
    resil_outcome yes = resil_classify_errno(err, 1);
    resil_outcome no = resil_classify_errno(err, 0);
    switch (errno_cases[i].cls) {
    case RESIL_ERRCLASS_NOT_SENT:
      assert_outcome(yes, RESIL_OUTCOME_RETRYABLE, err, 0, 0);
      assert_outcome(no, RESIL_OUTCOME_RETRYABLE, err, 0, 0);
      break;
    case RESIL_ERRCLASS_TRANSIENT:
      assert_outcome(yes, RESIL_OUTCOME_RETRYABLE, err, 0, 1);
      assert_outcome(no, RESIL_OUTCOME_FATAL, err, 0, 0);
      break;
    case RESIL_ERRCLASS_PERMANENT:
      assert_outcome(yes, RESIL_OUTCOME_FATAL, err, 0, 0);
      assert_outcome(no, RESIL_OUTCOME_FATAL, err, 0, 0);
      break;
    }
  }
}

/* ---- exit codes ----------------------------------------------------------- */

static void test_classify_exit(void **state) {
  resil_codeset r12 = set_of("1-2"), s2 = set_of("2"), s0 = set_of("0,127");
  resil_codeset empty;
  static const resil_codeset *const none = NULL;
  struct {
    int status;
    const resil_codeset *retry_on, *stop_on;
    resil_outcome_kind kind;
  } cases[] = {
      /* 0 always succeeds, even when a set lists it */
      {0, none, none, RESIL_OUTCOME_SUCCESS},
      {0, &r12, &s2, RESIL_OUTCOME_SUCCESS},
      {0, &s0, &s0, RESIL_OUTCOME_SUCCESS},
      /* no sets: every non-zero status retries */
      {1, none, none, RESIL_OUTCOME_RETRYABLE},
      {255, none, none, RESIL_OUTCOME_RETRYABLE},
      {-1, none, none, RESIL_OUTCOME_RETRYABLE},
      {5000, none, none, RESIL_OUTCOME_RETRYABLE},
      /* an empty retry_on counts as none */
      {3, &empty, none, RESIL_OUTCOME_RETRYABLE},
      {2, &empty, &s2, RESIL_OUTCOME_FATAL},
      /* retry_on only */
      {1, &r12, none, RESIL_OUTCOME_RETRYABLE},
      {2, &r12, none, RESIL_OUTCOME_RETRYABLE},
      {3, &r12, none, RESIL_OUTCOME_FATAL},
      {-1, &r12, none, RESIL_OUTCOME_FATAL},
      {5000, &r12, none, RESIL_OUTCOME_FATAL},
      /* stop_on only */
      {2, none, &s2, RESIL_OUTCOME_FATAL},
      {1, none, &s2, RESIL_OUTCOME_RETRYABLE},
      {127, none, &s0, RESIL_OUTCOME_FATAL},
      {126, none, &s0, RESIL_OUTCOME_RETRYABLE},
      /* both: stop wins */
      {2, &r12, &s2, RESIL_OUTCOME_FATAL},
      {1, &r12, &s2, RESIL_OUTCOME_RETRYABLE},
      {3, &r12, &s2, RESIL_OUTCOME_FATAL},
      {2, &s2, &s2, RESIL_OUTCOME_FATAL},
      {2, &empty, &empty, RESIL_OUTCOME_RETRYABLE},
  };
  (void)state;
  resil_codeset_clear(&empty);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    resil_outcome o = resil_classify_exit(cases[i].status, cases[i].retry_on,
                                          cases[i].stop_on);
    if (o.kind != cases[i].kind)
      fail_msg("case %zu (status %d): kind %d, want %d", i, cases[i].status,
               (int)o.kind, (int)cases[i].kind);
    assert_outcome(o, cases[i].kind, cases[i].status, 0, 0);
  }
}

/* ---- code sets: bit operations -------------------------------------------- */

static void test_codeset_ops(void **state) {
  resil_codeset s;
  (void)state;
  memset(&s, 0xff, sizeof s);
  resil_codeset_clear(&s);
  assert_true(resil_codeset_empty(&s));
  for (int c = -2; c <= RESIL_CODESET_MAX + 2; c++)
    assert_false(resil_codeset_has(&s, c));

  resil_codeset_add(&s, 63, 65); /* across a word boundary */
  assert_false(resil_codeset_empty(&s));
  assert_false(resil_codeset_has(&s, 62));
  assert_true(resil_codeset_has(&s, 63));
  assert_true(resil_codeset_has(&s, 64));
  assert_true(resil_codeset_has(&s, 65));
  assert_false(resil_codeset_has(&s, 66));
  resil_codeset_remove(&s, 64, 64);
  assert_format(&s, "63,65");
  resil_codeset_remove(&s, 0, RESIL_CODESET_MAX);
  assert_true(resil_codeset_empty(&s));

  /* out-of-range parts are ignored */
  resil_codeset_add(&s, -100, 1);
  resil_codeset_add(&s, 1022, 5000);
  assert_format(&s, "0,1,1022,1023");
  resil_codeset_add(&s, 2000, 3000);
  resil_codeset_add(&s, -10, -1);
  resil_codeset_add(&s, 10, 5); /* lo > hi: nothing */
  assert_format(&s, "0,1,1022,1023");
  resil_codeset_remove(&s, -5, 0);
  resil_codeset_remove(&s, 1023, 99999);
  assert_format(&s, "1,1022");
  resil_codeset_add(&s, INT32_MIN, INT32_MAX);
  assert_format(&s, "0-1023");
  resil_codeset_remove(&s, INT32_MIN, INT32_MAX);
  assert_true(resil_codeset_empty(&s));

  /* NULL sets */
  resil_codeset_clear(NULL);
  resil_codeset_add(NULL, 1, 2);
  resil_codeset_remove(NULL, 1, 2);
  assert_false(resil_codeset_has(NULL, 1));
  assert_true(resil_codeset_empty(NULL));
}

/* ---- code sets: parsing --------------------------------------------------- */

static void test_codeset_parse_valid(void **state) {
  static const struct {
    const char *spec, *canon;
  } cases[] = {
      {"0", "0"},
      {"1023", "1023"},
      {"0-1023", "0-1023"},
      {"0-0", "0"},
      {"1023-1023", "1023"},
      {"0-1", "0,1"},
      {"0-2", "0-2"},
      {"1022-1023", "1022,1023"},
      {"1021-1023", "1021-1023"},
      {"408,429,500-599,!501", "408,429,500,502-599"},
      {"500-599,!501", "500,502-599"},
      {"!501,500-599", "500-599"}, /* left to right */
      {"500-599,!500-599", ""},
      {"!5", ""},
      {"!0-1023", ""},
      {"0-1023,!1-1022", "0,1023"},
      {"0-1023,!0", "1-1023"},
      {"0-1023,!1023", "0-1022"},
      {"0-1023,!0-1023,7", "7"},
      {"3,1,2", "1-3"},
      {"5,5,5", "5"},
      {"1,2,4,5,6,8", "1,2,4-6,8"},
      {"007", "7"},
      {"0000000000000000000000000000001023", "1023"},
      {" 1", "1"},
      {"1 ", "1"},
      {"\t1\t,\t2 ,  3-4 ", "1-4"},
      {" !1 , 1", "1"},
      {"1,!1", ""},
      {"408, 429", "408,429"},
  };
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    resil_codeset s;
    char buf[64];
    resil_err rc = resil_codeset_parse(&s, cases[i].spec);
    if (rc != RESIL_OK)
      fail_msg("\"%s\": error %d", cases[i].spec, (int)rc);
    resil_codeset_format(&s, buf, sizeof buf);
    if (strcmp(buf, cases[i].canon) != 0)
      fail_msg("\"%s\": got \"%s\", want \"%s\"", cases[i].spec, buf,
               cases[i].canon);
  }
}

static void test_codeset_parse_errors(void **state) {
  static const struct {
    const char *spec;
    resil_err err;
  } cases[] = {
      /* empty spec and empty items */
      {"", RESIL_EPARSE},
      {" ", RESIL_EPARSE},
      {"\t \t", RESIL_EPARSE},
      {",", RESIL_EPARSE},
      {",1", RESIL_EPARSE},
      {"1,", RESIL_EPARSE},
      {"1, ", RESIL_EPARSE},
      {"1,,2", RESIL_EPARSE},
      {"1, ,2", RESIL_EPARSE},
      {"!", RESIL_EPARSE},
      {"1,!", RESIL_EPARSE},
      {"!!1", RESIL_EPARSE},
      /* ranges */
      {"5-4", RESIL_EPARSE},
      {"1023-0", RESIL_EPARSE},
      {"!2-1", RESIL_EPARSE},
      {"-", RESIL_EPARSE},
      {"-5", RESIL_EPARSE},
      {"5-", RESIL_EPARSE},
      {"1-2-3", RESIL_EPARSE},
      {"1--2", RESIL_EPARSE},
      {"1 -2", RESIL_EPARSE},
      {"1- 2", RESIL_EPARSE},
      {"! 1", RESIL_EPARSE},
      /* non-digits */
      {"+1", RESIL_EPARSE},
      {"1a", RESIL_EPARSE},
      {"a", RESIL_EPARSE},
      {"0x10", RESIL_EPARSE},
      {"1.0", RESIL_EPARSE},
      {"1 2", RESIL_EPARSE},
      {"1;2", RESIL_EPARSE},
      {"1\n", RESIL_EPARSE},
      {"\n1", RESIL_EPARSE},
      {"1\r", RESIL_EPARSE},
      {"\xef\xbc\x95", RESIL_EPARSE}, /* U+FF15 FULLWIDTH DIGIT FIVE */
      {"500,abc", RESIL_EPARSE},
      /* out of range */
      {"1024", RESIL_ERANGE},
      {"0-1024", RESIL_ERANGE},
      {"!1024", RESIL_ERANGE},
      {"1024-2000", RESIL_ERANGE},
      {"2000-1", RESIL_ERANGE}, /* range is checked before order */
      {"1,2,99999", RESIL_ERANGE},
      {"4294967296", RESIL_ERANGE},
      {"18446744073709551617", RESIL_ERANGE},
      {"99999999999999999999999999999999999999999999999999", RESIL_ERANGE},
      {"1-99999999999999999999999999999999999999999999999999", RESIL_ERANGE},
      /* the first bad item decides; syntax before range within an item */
      {"abc,2000", RESIL_EPARSE},
      {"2000,abc", RESIL_ERANGE},
      {"2000x", RESIL_EPARSE},
      {"5-4,2000", RESIL_EPARSE},
      {"2000,5-4", RESIL_ERANGE},
  };
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    resil_codeset s = set_of("1,3,1000"), before = s;
    resil_err rc = resil_codeset_parse(&s, cases[i].spec);
    if (rc != cases[i].err)
      fail_msg("\"%s\": error %d, want %d", cases[i].spec, (int)rc,
               (int)cases[i].err);
    /* the output is written only on success */
    assert_memory_equal(&s, &before, sizeof s);
  }
}

static void test_codeset_parse_long_digits(void **state) {
  /* thousands of digits: saturates, never overflows */
  char spec[8192];
  resil_codeset s;
  (void)state;
  memset(spec, '9', sizeof spec - 1);
  spec[sizeof spec - 1] = '\0';
  assert_int_equal(resil_codeset_parse(&s, spec), RESIL_ERANGE);

  /* leading zeros alone do not push a small value out of range */
  memset(spec, '0', sizeof spec - 1);
  spec[sizeof spec - 2] = '5';
  assert_int_equal(resil_codeset_parse(&s, spec), RESIL_OK);
  assert_format(&s, "5");
}

static void test_codeset_parse_null(void **state) {
  resil_codeset s = set_of("1"), before = s;
  (void)state;
  assert_int_equal(resil_codeset_parse(NULL, "1"), RESIL_EINVAL);
  assert_int_equal(resil_codeset_parse(&s, NULL), RESIL_EINVAL);
  assert_memory_equal(&s, &before, sizeof s);
}

/* ---- code sets: formatting ------------------------------------------------ */

static void test_codeset_format_shapes(void **state) {
  resil_codeset s;
  (void)state;
  resil_codeset_clear(&s);
  assert_format(&s, "");
  assert_format(NULL, "");
  resil_codeset_add(&s, 0, 0);
  assert_format(&s, "0");
  resil_codeset_add(&s, 2, 3);
  assert_format(&s, "0,2,3");
  resil_codeset_add(&s, 5, 7);
  assert_format(&s, "0,2,3,5-7");
  resil_codeset_add(&s, 1, 1);
  assert_format(&s, "0-3,5-7");
  resil_codeset_add(&s, 4, 4);
  assert_format(&s, "0-7");
  resil_codeset_add(&s, 1023, 1023);
  assert_format(&s, "0-7,1023");
  resil_codeset_add(&s, 1022, 1022);
  assert_format(&s, "0-7,1022,1023");
  resil_codeset_add(&s, 1021, 1021);
  assert_format(&s, "0-7,1021-1023");
}

static void test_codeset_format_truncation(void **state) {
  resil_codeset s = set_of("408,429,500,502-599");
  const char *full = "408,429,500,502-599";
  const size_t n = strlen(full);
  char buf[64];
  (void)state;

  /* NULL buffer with len 0 just measures */
  assert_int_equal(resil_codeset_format(&s, NULL, 0), n);
  /* len 0 writes nothing */
  buf[0] = 'x';
  assert_int_equal(resil_codeset_format(&s, buf, 0), n);
  assert_int_equal(buf[0], 'x');

  /* every length: a NUL-terminated prefix, never past len */
  for (size_t len = 1; len <= n + 2; len++) {
    memset(buf, 'x', sizeof buf);
    assert_int_equal(resil_codeset_format(&s, buf, len), n);
    size_t keep = len - 1 < n ? len - 1 : n;
    assert_int_equal(strlen(buf), keep);
    assert_memory_equal(buf, full, keep);
    for (size_t j = len; j < sizeof buf; j++) assert_int_equal(buf[j], 'x');
  }

  /* the empty set still NUL-terminates */
  resil_codeset_clear(&s);
  memset(buf, 'x', sizeof buf);
  assert_int_equal(resil_codeset_format(&s, buf, 1), 0);
  assert_int_equal(buf[0], '\0');
  assert_int_equal(buf[1], 'x');
}

static void test_codeset_format_longest(void **state) {
  /* The worst shapes for length: pairs with gaps, and every other code.
   * Both must fit the 4096 bytes the header promises. */
  resil_codeset pairs, alt;
  char buf[4096];
  size_t n;
  (void)state;
  resil_codeset_clear(&pairs);
  resil_codeset_clear(&alt);
  for (int c = 0; c <= RESIL_CODESET_MAX; c++) {
    if (c % 3 != 2) resil_codeset_add(&pairs, c, c);
    if (c % 2 == 0) resil_codeset_add(&alt, c, c);
  }
  n = resil_codeset_format(&pairs, buf, sizeof buf);
  assert_int_equal(n, 2673); /* the maximum quoted in classify.h */
  assert_int_equal(strlen(buf), n);
  assert_memory_equal(buf, "0,1,3,4,6,7,", 12);
  n = resil_codeset_format(&alt, buf, sizeof buf);
  assert_true(n < sizeof buf);
  assert_memory_equal(buf, "0,2,4,", 6);
}

/* Deterministic pseudo-random sets: format, parse back, compare. */
static void test_codeset_round_trip(void **state) {
  uint64_t x = 0x9e3779b97f4a7c15u;
  static char buf[4096];
  (void)state;
  for (int iter = 0; iter < 500; iter++) {
    resil_codeset s, back;
    int density = iter % 8; /* from sparse to dense */
    resil_codeset_clear(&s);
    for (int c = 0; c <= RESIL_CODESET_MAX; c++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      if ((int)(x % 8) < density) resil_codeset_add(&s, c, c);
    }
    if (iter % 50 == 0) resil_codeset_add(&s, 0, RESIL_CODESET_MAX);
    size_t n = resil_codeset_format(&s, buf, sizeof buf);
    assert_true(n < sizeof buf);
    if (resil_codeset_empty(&s)) {
      assert_string_equal(buf, "");
      continue; /* "" does not parse: an empty spec is an error */
    }
    assert_int_equal(resil_codeset_parse(&back, buf), RESIL_OK);
    assert_sets_equal(&s, &back);
    /* canonical text is a fixed point */
    char again[4096];
    resil_codeset_format(&back, again, sizeof again);
    assert_string_equal(buf, again);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http_default_every_status),
      cmocka_unit_test(test_http_default_overwrites_set),
      cmocka_unit_test(test_http_explicit_lists),
      cmocka_unit_test(test_http_methods),
      cmocka_unit_test(test_classify_http_table),
      cmocka_unit_test(test_classify_http_every_status),
      cmocka_unit_test(test_classify_http_custom_set),
      cmocka_unit_test(test_errno_class),
      cmocka_unit_test(test_errclass_name),
      cmocka_unit_test(test_classify_errno),
      cmocka_unit_test(test_classify_exit),
      cmocka_unit_test(test_codeset_ops),
      cmocka_unit_test(test_codeset_parse_valid),
      cmocka_unit_test(test_codeset_parse_errors),
      cmocka_unit_test(test_codeset_parse_long_digits),
      cmocka_unit_test(test_codeset_parse_null),
      cmocka_unit_test(test_codeset_format_shapes),
      cmocka_unit_test(test_codeset_format_truncation),
      cmocka_unit_test(test_codeset_format_longest),
      cmocka_unit_test(test_codeset_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
