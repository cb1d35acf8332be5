/* The fault server's routes: the MHD access handler and what each path
 * answers (the table is documented in include/resil/faultserver.h).
 *
 * A request goes through these steps, each a call of the access handler:
 *   1. headers received: match the route and check its parameters; a body
 *      declared larger than max_body is answered 413 at once (MHD then
 *      skips the body and closes).
 *   2. body chunks: counted and hashed (SHA-256); nothing is buffered.
 *   3. body complete: bad requests get their 400/404/413 now. Otherwise
 *      the request is counted for its KEY, the global faults are decided
 *      and the answer is prepared; if it must wait (latency, /slow) the
 *      connection is suspended and queued on the timer (timer.c).
 *   4. (after the wait) the answer is queued, or for a drop MHD_NO is
 *      returned so MHD closes the connection without answering.
 * POST /orders (idempotent servers; orders.c) keeps its body in step 2,
 * asks the idempotency layer in step 3, and creates the order in step 4,
 * after its ?delay; an injected failure either answers before anything
 * runs or, at lost_response_rate, lets the order be created and its answer
 * stored, then drops the connection.
 * Every answer carries `Connection: close`, so each connection carries one
 * request and closes cleanly after it. */
#define _POSIX_C_SOURCE 200809L
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/internal.h"

/* ---- the route table --------------------------------------------------------- */

typedef enum route_id {
  ROUTE_STATUS,
  ROUTE_FLAKY,
  ROUTE_DROP,
  ROUTE_SLOW,
  ROUTE_TRUNCATE,
  ROUTE_RATELIMIT,
  ROUTE_STATS,
  ROUTE_STATS_KEY,
  ROUTE_ORDERS,      /* only when cfg.idempotent */
  ROUTE_ORDERS_COUNT /* only when cfg.idempotent */
} route_id;

typedef struct route_def {
  const char *path;          /* "/flaky" */
  int segment;               /* 1: "/flaky/SEGMENT" (one non-empty segment) */
  route_id id;
  int keyed;                 /* SEGMENT is a KEY with its own counter */
  int faults;                /* global faults and latency apply */
  const char *params[4];     /* the query parameters it accepts */
} route_def;

static const route_def route_table[] = {
    {"/status", 1, ROUTE_STATUS, 0, 1, {"retry_after", NULL}},
    {"/flaky", 1, ROUTE_FLAKY, 1, 1, {"fail", "status", "retry_after", NULL}},
    {"/drop", 1, ROUTE_DROP, 1, 1, {"n", NULL}},
    {"/slow", 0, ROUTE_SLOW, 0, 1, {"delay", NULL}},
    {"/truncate", 0, ROUTE_TRUNCATE, 0, 1, {NULL}},
    {"/ratelimit", 1, ROUTE_RATELIMIT, 1, 1, {"n", "reset", NULL}},
    {"/stats", 0, ROUTE_STATS, 0, 0, {NULL}},
    {"/stats", 1, ROUTE_STATS_KEY, 0, 0, {NULL}},
    {"/orders", 0, ROUTE_ORDERS, 0, 1, {"delay", NULL}},
    {"/orders/count", 0, ROUTE_ORDERS_COUNT, 0, 0, {NULL}},
};
#define N_ROUTES (sizeof route_table / sizeof route_table[0])

/* ---- one request ---------------------------------------------------------------- */

/* PHASE_NEW: allocated by the URI log callback, headers not seen yet. */
enum { PHASE_NEW, PHASE_BODY, PHASE_WAITING, PHASE_DONE };

typedef struct fs_req {
  resil_faultserver *s;
  struct MHD_Connection *conn;
  const route_def *route; /* NULL: no such path (404) */
  int phase;
  atomic_int aborted;     /* set by the timer when the server stops */

  char seg[RESIL__FS_KEY_MAX + 1]; /* the path's SEGMENT (KEY or CODE) */
  size_t seglen;
  /* parameters, with their defaults */
  uint32_t fail, n, reset;
  unsigned status;
  resil_ns delay;
  char retry_after[RESIL__FS_HEADER_VALUE_MAX + 1];
  int seen; /* bit i: route->params[i] given (duplicates are refused) */

  /* a problem found before the body was read: answered after it */
  unsigned err_status;
  char err_msg[200];

  uint64_t body_bytes;
  int too_big;
  EVP_MD_CTX *md; /* SHA-256 of the body, for the echo answers */

  /* the answer, prepared on arrival, sent when any wait is over */
  struct MHD_Response *resp;
  unsigned code;
  int drop;

  /* POST /orders */
  char *target;              /* as received, with the query; idempotent only */
  resil__fs_order_req order;
  int order_run;             /* RUN: create the order when the wait ends */
} fs_req;

static void fail_req(fs_req *r, unsigned status, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void fail_req(fs_req *r, unsigned status, const char *fmt, ...) {
  if (r->err_status) return; /* keep the first problem */
  r->err_status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->err_msg, sizeof r->err_msg, fmt, ap);
  va_end(ap);
}

/* A client's text made safe to quote in a one-line message. */
static const char *quote(const char *text, char out[48]) {
  size_t i = 0;
  for (; text[i] && i < 40; i++) out[i] = (text[i] >= 0x20 && text[i] < 0x7F) ? text[i] : '?';
  if (text[i]) out[i++] = '.', out[i++] = '.', out[i++] = '.';
  out[i] = '\0';
  return out;
}

/* ---- parameters --------------------------------------------------------------- */

static int parse_u32(const char *text, uint32_t *out) {
  uint64_t v = 0;
  if (*text == '\0') return -1;
  for (const char *p = text; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (uint64_t)(*p - '0');
    if (v > UINT32_MAX) return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

static int parse_status(const char *text, unsigned *out) {
  uint32_t v;
  if (strlen(text) != 3 || parse_u32(text, &v) != 0 || v < 100 || v > 599) return -1;
  *out = (unsigned)v;
  return 0;
}

/* Header values go out verbatim, so only visible ASCII, space and tab. */
static int header_value_ok(const char *v, size_t max) {
  size_t n = strlen(v);
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (!((c >= 0x20 && c < 0x7F) || c == '\t')) return 0;
  }
  return 1;
}

static void set_param(fs_req *r, const char *name, const char *value) {
  char q[48];
  if (strcmp(name, "fail") == 0 || strcmp(name, "n") == 0 || strcmp(name, "reset") == 0) {
    uint32_t v;
    if (parse_u32(value, &v) != 0) {
      fail_req(r, 400, "%s must be a whole number from 0 to 4294967295, not '%s'", name,
               quote(value, q));
      return;
    }
    if (name[0] == 'f') r->fail = v;
    else if (name[0] == 'n') r->n = v;
    else r->reset = v;
  } else if (strcmp(name, "status") == 0) {
    if (parse_status(value, &r->status) != 0)
      fail_req(r, 400, "status must be a number from 100 to 599, not '%s'", quote(value, q));
  } else if (strcmp(name, "retry_after") == 0) {
    if (!header_value_ok(value, RESIL__FS_HEADER_VALUE_MAX)) {
      fail_req(r, 400, "retry_after must be 1 to %d printable ASCII characters",
               RESIL__FS_HEADER_VALUE_MAX);
      return;
    }
    snprintf(r->retry_after, sizeof r->retry_after, "%s", value);
  } else if (strcmp(name, "delay") == 0) {
    resil_ns d;
    resil_err e = resil_duration_parse(value, &d);
    if (e != RESIL_OK)
      fail_req(r, 400, "delay must be a duration such as 250ms, 1.5s or 2, not '%s'",
               quote(value, q));
    else if (d > RESIL__FS_SLOW_MAX)
      fail_req(r, 400, "delay must be at most 60s, not '%s'", quote(value, q));
    else r->delay = d;
  }
}

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                              const char *value) {
  (void)kind;
  fs_req *r = cls;
  char q[48];
  const route_def *rt = r->route;
  int i = 0;
  while (rt->params[i] && strcmp(rt->params[i], key) != 0) i++;
  if (rt->params[i] == NULL) {
    if (rt->params[0] == NULL)
      fail_req(r, 400, "%s takes no parameters, got '%s'", rt->path, quote(key, q));
    else
      fail_req(r, 400, "unknown parameter '%s' for %s", quote(key, q), rt->path);
    return MHD_NO;
  }
  if (r->seen & (1 << i)) {
    fail_req(r, 400, "parameter '%s' is given twice", key);
    return MHD_NO;
  }
  r->seen |= 1 << i;
  if (value == NULL) {
    fail_req(r, 400, "parameter '%s' needs a value (%s=...)", key, key);
    return MHD_NO;
  }
  set_param(r, key, value);
  return r->err_status ? MHD_NO : MHD_YES;
}

/* Match url against the table and check the path segment and parameters.
 * Problems are recorded in r and answered once the body has been read. */
static void route(fs_req *r, const char *url) {
  r->fail = 1;
  r->status = 503;
  r->n = 1;
  r->reset = 1;
  r->delay = RESIL_SEC;
  for (size_t i = 0; i < N_ROUTES; i++) {
    const route_def *rt = &route_table[i];
    size_t pl = strlen(rt->path);
    if (strncmp(url, rt->path, pl) != 0) continue;
    const char *rest = url + pl;
    if (!rt->segment) {
      if (*rest != '\0') continue;
    } else {
      if (rest[0] != '/' || rest[1] == '\0' || strchr(rest + 1, '/')) continue;
      rest++;
      size_t n = strlen(rest);
      if (n > RESIL__FS_KEY_MAX) {
        r->route = rt;
        fail_req(r, 400, "the path segment after %s/ is longer than %d bytes", rt->path,
                 RESIL__FS_KEY_MAX);
        return;
      }
      memcpy(r->seg, rest, n + 1);
      r->seglen = n;
    }
    if ((rt->id == ROUTE_ORDERS || rt->id == ROUTE_ORDERS_COUNT) && !r->s->cfg.idempotent)
      continue;
    r->route = rt;
    break;
  }
  if (r->route == NULL) {
    char q[48];
    fail_req(r, 404, "no such path: '%s' (see /stats, /status/CODE, /flaky/KEY, /drop/KEY, "
                     "/slow, /truncate, /ratelimit/KEY%s)",
             quote(url, q), r->s->cfg.idempotent ? ", /orders, /orders/count" : "");
    return;
  }
  if (r->route->id == ROUTE_ORDERS) r->delay = 0;
  if (r->route->id == ROUTE_STATUS && parse_status(r->seg, &r->code) != 0) {
    char q[48];
    fail_req(r, 400, "status must be a number from 100 to 599, not '%s'", quote(r->seg, q));
    return;
  }
  MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, on_arg, r);
}

/* ---- answers ------------------------------------------------------------------- */

static void add_header(struct MHD_Response *resp, const char *name, const char *value) {
  (void)MHD_add_response_header(resp, name, value);
}

static struct MHD_Response *finish_response(struct MHD_Response *resp, const char *type) {
  if (resp) {
    add_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    add_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  }
  return resp;
}

static struct MHD_Response *text_response(const char *msg) {
  char line[256];
  int n = snprintf(line, sizeof line, "%s\n", msg);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  return finish_response(
      MHD_create_response_from_buffer((size_t)n, line, MHD_RESPMEM_MUST_COPY),
      "text/plain; charset=utf-8");
}

/* Takes the buffer over (freed with the response, or now on failure). */
static struct MHD_Response *json_response(resil__fs_buf *b) {
  if (b->failed || b->len == 0) {
    resil__fs_buf_free(b);
    return NULL;
  }
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(b->len, b->data, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) resil__fs_buf_free(b);
  else resil__fs_buf_init(b); /* the response owns the bytes now */
  return finish_response(resp, "application/json");
}

/* Queue resp (NULL: out of memory, answered 500 if possible) and count the
 * request as answered. */
static enum MHD_Result send_now(fs_req *r, unsigned code, struct MHD_Response *resp) {
  if (resp == NULL) {
    code = 500;
    resp = text_response("out of memory");
    if (resp == NULL) return MHD_NO;
  }
  r->phase = PHASE_DONE;
  atomic_fetch_add(&r->s->requests, 1);
  enum MHD_Result ret = MHD_queue_response(r->conn, code, resp);
  MHD_destroy_response(resp);
  return ret;
}

static enum MHD_Result send_text(fs_req *r, unsigned code, const char *msg) {
  return send_now(r, code, text_response(msg));
}

/* /truncate: declares TRUNC_DECLARED bytes, sends TRUNC_SENT, then fails
 * the response so MHD closes the connection. */
#define TRUNC_DECLARED 1024
#define TRUNC_SENT 100

static ssize_t truncate_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)cls;
  static const char head[] = "{\"truncated\":true,\"padding\":\"";
  if (pos >= TRUNC_SENT) return MHD_CONTENT_READER_END_WITH_ERROR;
  size_t n = TRUNC_SENT - (size_t)pos;
  if (n > max) n = max;
  for (size_t i = 0; i < n; i++) {
    size_t at = (size_t)pos + i;
    buf[i] = at < sizeof head - 1 ? head[at] : 'x';
  }
  return (ssize_t)n;
}

static void sha256_hex(fs_req *r, char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  int ok;
  if (r->md) ok = EVP_DigestFinal_ex(r->md, md, &len);
  else ok = EVP_Digest("", 0, md, &len, EVP_sha256(), NULL); /* empty body */
  if (!ok || len != 32) len = 0;
  for (unsigned i = 0; i < len; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[2 * len] = '\0';
}

/* "key":..,"attempt":.. for the keyed routes (with a leading comma). */
static void key_fields(resil__fs_buf *b, const fs_req *r, uint64_t attempt) {
  if (!r->route->keyed) return;
  resil__fs_buf_puts(b, ",\"key\":");
  resil__fs_json_str(b, r->seg, r->seglen);
  resil__fs_buf_printf(b, ",\"attempt\":%llu", (unsigned long long)attempt);
}

/* The 200 of /flaky, /drop and /ratelimit: what the server received. */
static struct MHD_Response *echo(fs_req *r, uint64_t attempt, const char *method,
                                 const char *idem, size_t idemlen) {
  char hex[65];
  sha256_hex(r, hex);
  resil__fs_buf b;
  resil__fs_buf_init(&b);
  resil__fs_buf_puts(&b, "{\"status\":200");
  key_fields(&b, r, attempt);
  resil__fs_buf_puts(&b, ",\"method\":");
  resil__fs_json_str(&b, method, strlen(method));
  resil__fs_buf_printf(&b, ",\"body_bytes\":%llu,\"body_sha256\":\"%s\",\"idempotency_key\":",
                       (unsigned long long)r->body_bytes, hex);
  if (idem) resil__fs_json_str(&b, idem, idemlen);
  else resil__fs_buf_puts(&b, "null");
  resil__fs_buf_puts(&b, "}\n");
  return json_response(&b);
}

/* {"status":CODE,...} with optional extra fields and Retry-After. */
static struct MHD_Response *status_answer(fs_req *r, unsigned code, uint64_t attempt,
                                          const char *extra, const char *retry_after) {
  resil__fs_buf b;
  resil__fs_buf_init(&b);
  resil__fs_buf_printf(&b, "{\"status\":%u", code);
  key_fields(&b, r, attempt);
  if (extra) resil__fs_buf_puts(&b, extra);
  resil__fs_buf_puts(&b, "}\n");
  struct MHD_Response *resp = json_response(&b);
  if (resp && retry_after && retry_after[0])
    add_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
  return resp;
}

static long long wall_now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec;
}

/* An injected failure (outage or fail_rate) instead of the route's answer. */
static void prepare_fault(fs_req *r, resil__fs_fault fault, resil_ns outage_left,
                          uint64_t attempt) {
  unsigned code = (unsigned)r->s->cfg.fail_status;
  char extra[96], ra[32] = "";
  if (fault == RESIL__FS_FAULT_OUTAGE) {
    /* Whole seconds until the window closes, rounded up. */
    long long secs = (long long)((outage_left + RESIL_SEC - 1) / RESIL_SEC);
    snprintf(ra, sizeof ra, "%lld", secs);
    snprintf(extra, sizeof extra, ",\"fault\":\"outage\",\"retry_after\":%lld", secs);
  } else {
    snprintf(extra, sizeof extra, ",\"fault\":\"fail_rate\"");
  }
  r->code = code;
  r->resp = status_answer(r, code, attempt, extra, ra);
  if (r->resp)
    add_header(r->resp, "X-Resil-Fault", fault == RESIL__FS_FAULT_OUTAGE ? "outage" : "fail_rate");
}

/* The route's own answer, for a request that passed every check. */
static void prepare_answer(fs_req *r, uint64_t attempt, const char *method, const char *idem,
                           size_t idemlen) {
  char extra[96];
  switch (r->route->id) {
    case ROUTE_STATUS:
      /* r->code was parsed from the path */
      r->resp = status_answer(r, r->code, 0, NULL, r->retry_after);
      break;
    case ROUTE_FLAKY:
      if (attempt <= r->fail) {
        r->code = r->status;
        snprintf(extra, sizeof extra, ",\"fail\":%lu", (unsigned long)r->fail);
        r->resp = status_answer(r, r->code, attempt, extra, r->retry_after);
      } else {
        r->code = 200;
        r->resp = echo(r, attempt, method, idem, idemlen);
      }
      break;
    case ROUTE_DROP:
      if (attempt <= r->n) {
        r->drop = 1;
      } else {
        r->code = 200;
        r->resp = echo(r, attempt, method, idem, idemlen);
      }
      break;
    case ROUTE_RATELIMIT:
      if (attempt <= r->n) {
        char s[24], at[24];
        snprintf(s, sizeof s, "%lu", (unsigned long)r->reset);
        snprintf(at, sizeof at, "%lld", wall_now_sec() + (long long)r->reset);
        snprintf(extra, sizeof extra, ",\"reset\":%lu", (unsigned long)r->reset);
        r->code = 429;
        r->resp = status_answer(r, 429, attempt, extra, s);
        if (r->resp) {
          add_header(r->resp, "RateLimit-Reset", s);
          add_header(r->resp, "X-RateLimit-Reset", at);
        }
      } else {
        r->code = 200;
        r->resp = echo(r, attempt, method, idem, idemlen);
      }
      break;
    case ROUTE_SLOW: {
      char d[32];
      resil_duration_format(r->delay, d, sizeof d);
      snprintf(extra, sizeof extra, ",\"delay\":\"%s\",\"delay_ns\":%lld", d,
               (long long)r->delay);
      r->code = 200;
      r->resp = status_answer(r, 200, 0, extra, NULL);
      break;
    }
    case ROUTE_TRUNCATE:
      r->code = 200;
      r->resp = finish_response(
          MHD_create_response_from_callback(TRUNC_DECLARED, TRUNC_SENT, truncate_reader, NULL,
                                            NULL),
          "application/json");
      break;
    default: break;
  }
}

/* Deliver the prepared answer: queue it, or drop the connection. */
static enum MHD_Result deliver(fs_req *r) {
  if (r->order_run) { /* POST /orders: the handler runs now */
    r->order_run = 0;
    r->code = 201;
    r->resp = resil__fs_order_run(r->s, &r->order);
    if (r->resp == NULL && !r->drop) return send_now(r, 500, NULL);
  }
  if (r->drop) {
    r->phase = PHASE_DONE;
    atomic_fetch_add(&r->s->requests, 1);
    return MHD_NO; /* MHD closes the connection; nothing is sent */
  }
  struct MHD_Response *resp = r->resp;
  r->resp = NULL;
  return send_now(r, r->code, resp);
}

/* Wait `delay` before delivering, without holding the worker thread. */
static enum MHD_Result wait_then_deliver(fs_req *r, resil_ns delay) {
  r->phase = PHASE_WAITING;
  /* Suspend before the timer can see the request: a resume that came
   * before the suspend would be lost. */
  MHD_suspend_connection(r->conn);
  int stopping = 0;
  if (resil__fs_timer_add(&r->s->timer, resil_ns_add(resil__fs_now(), delay), r, &stopping) !=
      0) {
    /* Stopping: end without an answer. Full (cannot happen while every
     * connection fits): answer now rather than never. */
    if (stopping) atomic_store(&r->aborted, 1);
    MHD_resume_connection(r->conn);
  }
  return MHD_YES;
}

void resil__fs_wake(void *item, int aborted) {
  fs_req *r = item;
  if (aborted) atomic_store(&r->aborted, 1);
  MHD_resume_connection(r->conn);
}

/* Step 3 for POST /orders. */
static enum MHD_Result orders_complete(fs_req *r, const char *method) {
  resil_faultserver *s = r->s;
  if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
    struct MHD_Response *resp = text_response("/orders takes POST only");
    if (resp) add_header(resp, MHD_HTTP_HEADER_ALLOW, MHD_HTTP_METHOD_POST);
    return send_now(r, 405, resp);
  }
  if (r->target == NULL) return send_now(r, 500, NULL); /* out of memory at its start */

  resil_ns outage_left = 0, delay = s->cfg.latency;
  resil__fs_fault fault = resil__fs_global_fault(s, &outage_left);
  if (fault != RESIL__FS_FAULT_NONE) {
    if (!resil__fs_lost_response(s)) {
      /* Fails before the handler: nothing claimed, nothing created. */
      prepare_fault(r, fault, outage_left, 0);
      if (r->resp == NULL) return send_now(r, 500, NULL);
      return delay > 0 ? wait_then_deliver(r, delay) : deliver(r);
    }
    /* Fails after it: the request is processed in full (order created,
     * answer stored) and the answer is lost on the way. */
    r->drop = 1;
  }
  int run = resil__fs_order_begin(s, r->conn, method, r->target, &r->order, &r->code, &r->resp);
  if (run < 0) return send_now(r, 500, NULL);
  if (run == 1) {
    r->order_run = 1;
    delay = resil_ns_add(delay, r->delay);
  } else if (r->resp == NULL && !r->drop) {
    return send_now(r, 500, NULL);
  }
  if (delay > 0) return wait_then_deliver(r, delay);
  return deliver(r);
}

/* Step 3: the whole request is in. */
static enum MHD_Result complete(fs_req *r, const char *method) {
  resil_faultserver *s = r->s;
  if (r->too_big) {
    char msg[96];
    snprintf(msg, sizeof msg, "request body larger than %zu bytes", s->cfg.max_body);
    return send_text(r, 413, msg);
  }
  if (r->err_status) return send_text(r, r->err_status, r->err_msg);

  resil__fs_buf b;
  switch (r->route->id) {
    case ROUTE_STATS:
      resil__fs_buf_init(&b);
      resil__fs_keystore_json_all(s->keys, atomic_load(&s->requests), &b);
      return send_now(r, 200, json_response(&b));
    case ROUTE_STATS_KEY:
      resil__fs_buf_init(&b);
      resil__fs_keystore_json_key(s->keys, r->seg, r->seglen, &b);
      return send_now(r, 200, json_response(&b));
    case ROUTE_ORDERS_COUNT:
      resil__fs_buf_init(&b);
      resil__fs_buf_printf(&b, "{\"orders\":%llu}\n",
                           (unsigned long long)resil_faultserver_orders(s));
      return send_now(r, 200, json_response(&b));
    case ROUTE_ORDERS:
      /* The idempotency layer checks the Idempotency-Key (problem+json). */
      return orders_complete(r, method);
    default: break;
  }

  const char *idem = NULL;
  size_t idemlen = 0;
  if (MHD_lookup_connection_value_n(r->conn, MHD_HEADER_KIND, "Idempotency-Key",
                                    strlen("Idempotency-Key"), &idem, &idemlen) == MHD_YES) {
    if (idem == NULL) idemlen = 0, idem = "";
    if (idemlen > RESIL__FS_IDEM_MAX || memchr(idem, '\0', idemlen) ||
        (idemlen && !header_value_ok(idem, RESIL__FS_IDEM_MAX))) {
      char msg[96];
      snprintf(msg, sizeof msg, "Idempotency-Key must be at most %d printable ASCII characters",
               RESIL__FS_IDEM_MAX);
      return send_text(r, 400, msg);
    }
  }

  uint64_t attempt = 0;
  if (r->route->keyed) {
    attempt = resil__fs_keystore_hit(s->keys, r->seg, r->seglen, method, idem, idemlen);
    if (attempt == 0) return send_now(r, 500, NULL);
  }

  resil_ns outage_left = 0;
  resil__fs_fault fault = RESIL__FS_FAULT_NONE;
  resil_ns delay = 0;
  if (r->route->faults) {
    fault = resil__fs_global_fault(s, &outage_left);
    delay = s->cfg.latency;
  }
  if (fault != RESIL__FS_FAULT_NONE) {
    prepare_fault(r, fault, outage_left, attempt);
  } else {
    prepare_answer(r, attempt, method, idem, idemlen);
    if (r->route->id == ROUTE_SLOW) delay = resil_ns_add(delay, r->delay);
  }
  if (r->resp == NULL && !r->drop) return send_now(r, 500, NULL);
  if (delay > 0) return wait_then_deliver(r, delay);
  return deliver(r);
}

/* A Content-Length above max (MHD itself refuses malformed ones). */
static int declared_too_big(const char *cl, size_t max) {
  uint64_t v = 0;
  for (const char *p = cl; *p; p++) {
    if (*p < '0' || *p > '9') return 0;
    if (v > (UINT64_MAX - 9) / 10) return 1;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  return v > max;
}

/* ---- the MHD callbacks ------------------------------------------------------------ */

void *resil__fs_uri_log(void *cls, const char *uri, struct MHD_Connection *conn) {
  resil_faultserver *s = cls;
  fs_req *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL; /* the access handler tries again */
  r->s = s;
  r->conn = conn;
  atomic_init(&r->aborted, 0);
  /* Only POST /orders needs the target as received (its fingerprint). */
  if (s->cfg.idempotent && uri) r->target = strdup(uri);
  return r;
}

enum MHD_Result resil__fs_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **req_cls) {
  (void)version;
  resil_faultserver *s = cls;
  fs_req *r = *req_cls;

  if (r == NULL || r->phase == PHASE_NEW) { /* step 1: headers */
    if (r == NULL) { /* the URI log callback ran out of memory */
      r = calloc(1, sizeof *r);
      if (r == NULL) return MHD_NO;
      r->s = s;
      r->conn = conn;
      atomic_init(&r->aborted, 0);
      *req_cls = r;
    }
    r->phase = PHASE_BODY;
    route(r, url);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && declared_too_big(cl, s->cfg.max_body)) {
      r->too_big = 1;
      return complete(r, method); /* 413 without reading the body */
    }
    return MHD_YES;
  }

  if (r->phase == PHASE_BODY) {
    if (*upload_data_size) { /* step 2: a piece of the body */
      size_t n = *upload_data_size;
      *upload_data_size = 0;
      if (r->too_big) return MHD_YES; /* chunked and over the limit: discard */
      r->body_bytes += n;
      if (r->body_bytes > s->cfg.max_body) {
        r->too_big = 1;
        return MHD_YES;
      }
      if (!r->err_status && r->route->id == ROUTE_ORDERS) {
        if (resil__fs_order_body(&r->order, upload_data, n) != 0) fail_req(r, 500, "out of memory");
        return MHD_YES;
      }
      if (r->err_status || !r->route->keyed) return MHD_YES; /* no echo: no hash */
      if (r->md == NULL) {
        r->md = EVP_MD_CTX_new();
        if (r->md == NULL || !EVP_DigestInit_ex(r->md, EVP_sha256(), NULL)) {
          fail_req(r, 500, "out of memory");
          return MHD_YES;
        }
      }
      if (!EVP_DigestUpdate(r->md, upload_data, n)) fail_req(r, 500, "hashing failed");
      return MHD_YES;
    }
    return complete(r, method); /* step 3 */
  }

  if (r->phase == PHASE_WAITING) { /* step 4: resumed after the wait */
    if (atomic_load(&r->aborted)) {
      r->phase = PHASE_DONE;
      return MHD_NO; /* the server is stopping */
    }
    return deliver(r);
  }
  return MHD_NO; /* PHASE_DONE: MHD does not call again after an answer */
}

void resil__fs_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  (void)toe;
  fs_req *r = *req_cls;
  if (r == NULL) return;
  if (r->resp) MHD_destroy_response(r->resp);
  EVP_MD_CTX_free(r->md);
  resil__fs_order_req_clear(&r->order); /* releases a claim never run */
  free(r->target);
  free(r);
  *req_cls = NULL;
}
