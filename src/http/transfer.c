/* One attempt: the per-call options, libcurl's callbacks, and the retry
 * decision.
 *
 * When to decide. A response whose status will be retried must not be read
 * to the end (it may be huge), but the last response of a call must be kept
 * whole; which of the two a 503 is depends on the engine (attempts left,
 * deadline, Retry-After cap, budget, breaker). So the engine is asked as
 * soon as the answer is known: for a retryable status, when the first body
 * byte arrives (the headers are complete then, Retry-After included; a
 * response without a body is decided when the transfer ends). Then:
 *   - RETRY: the body is drained into memory up to max_drain (the on_attempt
 *     hook sees it) and the transfer is cut there, which closes that one
 *     connection instead of reading on;
 *   - STOP: this is the final response: its body is kept intact in memory
 *     (up to max_body) or streamed to write_body.
 * Every other status (success, or an error that is never retried) streams
 * straight to memory or write_body and is decided when the transfer ends,
 * because a 200 whose body breaks off is a transport failure (retried for
 * idempotent requests, unless write_body already received bytes it cannot
 * take back). The wait before the next attempt counts from the decision. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "http/internal.h"

/* ---- deciding -------------------------------------------------------------- */

static int retryable(const resil_outcome *o) {
  return o->kind == RESIL_OUTCOME_RETRYABLE || o->kind == RESIL_OUTCOME_RETRY_AFTER;
}

static void decide(resil__http_call *k, resil_outcome o, resil_ns retry_after, resil_ns now) {
  resil__http_xfer *x = &k->x;
  x->out = o;
  x->retry_after = retry_after;
  /* The engine sees the real outcome first, so the breaker and the budget
   * count this failure as what it was. */
  x->step = resil_retry_next(&k->st, &o);
  /* A read_body must be rewound before it can be sent again; if it cannot,
   * the retry just decided cannot happen and this attempt is the last.
   * (libcurl has stopped sending by now: it stops an upload when an error
   * status arrives.) */
  if (x->step.kind == RESIL_STEP_RETRY && k->req->read_body &&
      k->req->rewind_body(k->req->body_ud) != 0) {
    x->rewind_failed = 1;
    x->step = resil_retry_stop(&k->st, RESIL_STOP_FATAL);
  }
  x->decided = 1;
  x->decided_at = now >= 0 ? now : resil__http_now(k->c);
}

/* First body byte: decide now for a retryable status. */
static int early_phase(resil__http_call *k) {
  resil_ns ra;
  resil_outcome o = resil__http_status_outcome(k, k->x.status, &ra);
  if (!retryable(&o)) return RESIL__PH_KEEP;
  decide(k, o, ra, -1);
  return k->x.step.kind == RESIL_STEP_RETRY ? RESIL__PH_DRAIN : RESIL__PH_KEEP;
}

/* The outcome of an attempt that was not decided mid-transfer. */
static resil_outcome final_outcome(resil__http_call *k, CURLcode code, int status,
                                   resil_errclass ec, resil_ns *ra) {
  resil__http_xfer *x = &k->x;
  resil_outcome o = {RESIL_OUTCOME_FATAL, status ? status : (int)code, 0, 0};
  *ra = -1;
  if (x->user_abort || x->too_big || x->read_failed) return o;
  if (status > 0) {
    resil_outcome s = resil__http_status_outcome(k, status, ra);
    /* A complete response, or one whose status decides by itself. A 1xx-3xx
     * whose transfer broke is a transport failure, below. */
    if (code == CURLE_OK || s.kind != RESIL_OUTCOME_SUCCESS) return s;
    *ra = -1;
  }
  if (code == CURLE_OK) return o; /* no HTTP status at all */
  switch (ec) {
    case RESIL_ERRCLASS_NOT_SENT:
      o.kind = RESIL_OUTCOME_RETRYABLE;
      break;
    case RESIL_ERRCLASS_TRANSIENT:
      /* Bytes already given to write_body cannot be taken back. */
      if (k->safe && x->streamed == 0) {
        o.kind = RESIL_OUTCOME_RETRYABLE;
        o.uncertain = 1;
      }
      break;
    default:
      break;
  }
  return o;
}

/* ---- libcurl callbacks ---------------------------------------------------- */

static int is_ws(char ch) { return ch == ' ' || ch == '\t'; }

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud) {
  resil__http_call *k = ((resil__http_handle *)ud)->call;
  resil__http_xfer *x = &k->x;
  size_t len = size * nitems, n = len;
  while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n')) n--;
  if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
    /* A status line starts a new response (1xx, a followed redirect, the
     * final one): keep only the last one's headers. */
    size_t i = 5;
    while (i < n && !is_ws(buf[i])) i++;
    while (i < n && is_ws(buf[i])) i++;
    int status = 0, digits = 0;
    while (i < n && digits < 3 && buf[i] >= '0' && buf[i] <= '9') {
      status = status * 10 + (buf[i++] - '0');
      digits++;
    }
    while (i < n && is_ws(buf[i])) i++;
    size_t rl = n - i < sizeof x->reason - 1 ? n - i : sizeof x->reason - 1;
    memcpy(x->reason, buf + i, rl);
    x->reason[rl] = '\0';
    x->status = digits == 3 ? status : 0;
    x->in_header_block = 1;
    k->resp->hlen = 0;
    k->resp->nh = 0;
    return len;
  }
  if (n == 0) {
    x->in_header_block = 0;
    return len;
  }
  if (is_ws(buf[0])) { /* obs-fold */
    size_t i = 0;
    while (i < n && is_ws(buf[i])) i++;
    return resil__http_response_fold_header(k->resp, buf + i, n - i) ? 0 : len;
  }
  const char *colon = memchr(buf, ':', n);
  if (colon == NULL) return len;
  size_t nl = (size_t)(colon - buf);
  while (nl > 0 && is_ws(buf[nl - 1])) nl--;
  const char *v = colon + 1, *end = buf + n;
  while (v < end && is_ws(*v)) v++;
  while (end > v && is_ws(end[-1])) end--;
  if (nl == 0) return len;
  return resil__http_response_add_header(k->resp, buf, nl, v, (size_t)(end - v)) ? 0 : len;
}

static size_t on_write(char *p, size_t size, size_t nitems, void *ud) {
  resil__http_call *k = ((resil__http_handle *)ud)->call;
  resil__http_xfer *x = &k->x;
  resil_http_response *r = k->resp;
  size_t n = size * nitems;
  if (x->phase == RESIL__PH_UNKNOWN) x->phase = early_phase(k);
  if (x->phase == RESIL__PH_DRAIN) {
    size_t max = k->c->cfg.max_drain;
    size_t room = r->body_len < max ? max - r->body_len : 0;
    size_t take = n < room ? n : room;
    if (take && resil__http_response_append(r, p, take)) take = 0;
    if (take < n) {
      x->cut = 1;
      return 0; /* enough: drop the connection rather than read on */
    }
    return n;
  }
  const resil_http_request *req = k->req;
  if (req->write_body) {
    size_t w = req->write_body(req->write_ud, p, n);
    if (w != n) {
      x->streamed += w < n ? w : 0;
      x->user_abort = 1;
      return 0;
    }
    x->streamed += n;
    return n;
  }
  size_t max = k->c->cfg.max_body;
  if (max && (r->body_len > max || n > max - r->body_len)) {
    x->too_big = 1;
    return 0;
  }
  if (resil__http_response_append(r, p, n)) {
    x->too_big = 1; /* out of memory: reported as a body too large to keep */
    return 0;
  }
  return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  (void)ulnow;
  resil__http_call *k = ((resil__http_handle *)ud)->call;
  if (resil_cancel_fired(k->req->cancel)) {
    k->x.cancelled = 1;
    return 1;
  }
  return 0;
}

void resil__http_handle_callbacks(resil__http_handle *h) {
  CURL *e = h->e;
  void *ud = h;
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, ud);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, ud);
  curl_easy_setopt(e, CURLOPT_READFUNCTION, resil__http_on_read);
  curl_easy_setopt(e, CURLOPT_READDATA, ud);
  curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, resil__http_on_seek);
  curl_easy_setopt(e, CURLOPT_SEEKDATA, ud);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, ud);
}

/* ---- setup ------------------------------------------------------------------ */

static long to_ms(resil_ns t) {
  if (t <= 0) return 1; /* 0 would mean "no limit" to libcurl */
  resil_ns ms = t / RESIL_MSEC + (t % RESIL_MSEC != 0);
  return ms > 0x7fffffffL ? 0x7fffffffL : (long)ms;
}

/* CUSTOMREQUEST, set only when it changes (NULL: the method the mode
 * implies). */
static void set_custom(resil__http_handle *h, const char *m) {
  size_t n = m ? strlen(m) : 0;
  if (h->custom_set == 1 && n < sizeof h->custom && strcmp(h->custom, m ? m : "") == 0) return;
  curl_easy_setopt(h->e, CURLOPT_CUSTOMREQUEST, m);
  if (n < sizeof h->custom) {
    memcpy(h->custom, m ? m : "", n + 1);
    h->custom_set = 1;
  } else {
    h->custom_set = 2; /* too long to remember: set it next time too */
  }
}

void resil__http_attempt_setup(resil__http_call *k, resil_ns start, resil_ns timeout) {
  resil__http_handle *h = k->h;
  CURL *e = h->e;
  const resil_http_request *req = k->req;
  const resil_http_client_config *cfg = &k->c->cfg;
  memset(&k->x, 0, sizeof k->x);
  k->x.retry_after = -1;
  k->x.start = start;
  resil__http_response_reset(k->resp);
  h->call = k;
  h->errbuf[0] = '\0';

  curl_easy_setopt(e, CURLOPT_URL, req->url);
  if (h->headers != k->headers || h->mode == RESIL__MODE_NONE) {
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->headers);
    h->headers = k->headers;
  }
  const char *m = k->method;
  if (k->has_body) {
    if (h->mode == RESIL__MODE_HEAD) curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    if (req->read_body) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, (void *)NULL);
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_size);
      h->mode = RESIL__MODE_READBODY;
    } else {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
      h->mode = RESIL__MODE_MEMBODY;
    }
    set_custom(h, k->mkind == RESIL__M_POST ? NULL : m);
  } else {
    int mode = k->mkind == RESIL__M_GET    ? RESIL__MODE_GET
               : k->mkind == RESIL__M_HEAD ? RESIL__MODE_HEAD
                                           : RESIL__MODE_NOBODY;
    if (mode != h->mode) {
      if (h->mode == RESIL__MODE_MEMBODY || h->mode == RESIL__MODE_READBODY)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, (void *)NULL);
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* also clears NOBODY */
      if (mode == RESIL__MODE_HEAD) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
      h->mode = mode;
    }
    set_custom(h, mode == RESIL__MODE_NOBODY ? m : NULL);
  }

  curl_off_t maxfs = req->write_body || cfg->max_body > (size_t)INT64_MAX
                         ? 0
                         : (curl_off_t)cfg->max_body;
  if (maxfs != h->maxfilesize) {
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, maxfs);
    h->maxfilesize = maxfs;
  }
  int progress = req->cancel != NULL;
  if (progress != h->progress) {
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, progress ? 0L : 1L);
    h->progress = progress;
  }
  long tmo = timeout == RESIL_NS_MAX ? 0 : to_ms(timeout);
  resil_ns ct = cfg->connect_timeout;
  if (timeout != RESIL_NS_MAX && (ct <= 0 || ct > timeout)) ct = timeout;
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, tmo);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ct > 0 && ct != RESIL_NS_MAX ? to_ms(ct) : 0L);
}

/* ---- finishing -------------------------------------------------------------- */

static void log_attempt(resil__http_call *k, const resil_http_attempt *a, int will_retry) {
  const resil_http_client *c = k->c;
  const resil_step *s = &k->x.step;
  resil_log_level lv =
      will_retry || s->reason == RESIL_STOP_SUCCESS || s->reason == RESIL_STOP_VERIFIED
          ? RESIL_LOG_INFO
          : RESIL_LOG_WARN;
  if (!resil__http_logs(c, lv)) return;
  char target[256], what[320], hint[48] = "", tail[96] = "", d[32];
  resil__http_log_target(k->method, k->req->url, target, sizeof target);
  if (a->status > 0) {
    const char *reason = k->x.reason[0] ? k->x.reason : resil__http_reason(a->status);
    snprintf(what, sizeof what, "%d%s%s", a->status, reason[0] ? " " : "", reason);
  } else {
    snprintf(what, sizeof what, "%s (curl %d, %s)", resil_http_response_error(k->resp),
             a->curl_code, resil_errclass_name(a->error_class));
  }
  if (a->retry_after >= 0) {
    resil_duration_format(a->retry_after, d, sizeof d);
    snprintf(hint, sizeof hint, ", Retry-After %s", d);
  }
  if (will_retry) {
    resil_duration_format(a->delay, d, sizeof d);
    snprintf(tail, sizeof tail, "; retrying in %s", d);
  } else if (s->reason == RESIL_STOP_FATAL) {
    snprintf(tail, sizeof tail, "; not retryable");
  } else if (s->reason != RESIL_STOP_SUCCESS && s->reason != RESIL_STOP_VERIFIED) {
    snprintf(tail, sizeof tail, "; giving up: %s", resil_stop_reason_text(s->reason));
  }
  uint32_t max = c->cfg.retry.max_attempts;
  char n[32];
  if (max) snprintf(n, sizeof n, "%u/%u", a->number, max);
  else snprintf(n, sizeof n, "%u", a->number);
  resil__http_log(c, lv, "%s: attempt %s: %s%s%s", target, n, what, hint, tail);
}

resil_step resil__http_attempt_finish(resil__http_call *k, CURLcode code) {
  resil__http_xfer *x = &k->x;
  resil_http_response *r = k->resp;
  CURL *e = k->h->e;
  resil_ns now = resil__http_now(k->c);
  k->t_last = now;
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  r->status = (int)status;
  char *eb = NULL;
  if (code != CURLE_OK && k->h->errbuf[0] && (eb = resil__http_response_errbuf(r)) != NULL)
    memcpy(eb, k->h->errbuf, CURL_ERROR_SIZE);
  if (x->cut && code == CURLE_WRITE_ERROR) {
    code = CURLE_OK; /* our own cut of a drained body */
    if (eb) eb[0] = '\0';
  }
  if (x->too_big && code == CURLE_WRITE_ERROR) {
    code = CURLE_FILESIZE_EXCEEDED;
    if ((eb = resil__http_response_errbuf(r)) != NULL)
      snprintf(eb, CURL_ERROR_SIZE, "response body larger than max_body (%zu bytes)",
               k->c->cfg.max_body);
  }
  if (x->read_failed && code == CURLE_ABORTED_BY_CALLBACK) {
    code = CURLE_READ_ERROR;
    if ((eb = resil__http_response_errbuf(r)) != NULL)
      snprintf(eb, CURL_ERROR_SIZE, "read_body failed");
  }
  r->curl_code = (int)code;
  resil_errclass ec = RESIL_ERRCLASS_PERMANENT;
  if (code != CURLE_OK) {
    curl_off_t pre = 0;
    curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pre);
    ec = resil__http_curl_class(code, pre == 0);
  }

  if (!x->decided) {
    if (x->cancelled) {
      x->step = resil_retry_abort(&k->st);
      x->decided = 1;
      x->decided_at = now;
    } else {
      resil_ns ra;
      resil_outcome o = final_outcome(k, code, r->status, ec, &ra);
      decide(k, o, ra, now);
    }
  }
  if (x->rewind_failed && (r->error == NULL || r->error[0] == '\0') &&
      (eb = resil__http_response_errbuf(r)) != NULL)
    snprintf(eb, CURL_ERROR_SIZE, "rewind_body failed");

  int will_retry = x->step.kind == RESIL_STEP_RETRY;
  resil_http_attempt a;
  a.number = r->attempts + 1;
  a.status = r->status;
  a.curl_code = (int)code;
  a.error_class = ec;
  a.duration = now - x->start;
  a.retry_after = x->retry_after;
  a.delay = will_retry ? x->step.delay : 0;
  (void)resil__http_response_push_attempt(r, &a); /* history is best effort */
  r->attempts = a.number;

  const resil_http_client_config *cfg = &k->c->cfg;
  if (cfg->on_attempt) {
    resil_http_attempt_event ev = {&a, r, k->method, k->req->url, will_retry};
    cfg->on_attempt(cfg->hook_ud, &ev);
  }
  log_attempt(k, &a, will_retry);
  return x->step;
}

void resil__http_call_result(resil__http_call *k) {
  resil_retry_result res;
  resil_retry_result_get(&k->st, &res);
  k->resp->reason = res.reason;
  /* The call ended with its last attempt, or later (cancelled in a wait). */
  int ended_at_last = k->x.decided && k->x.step.kind == RESIL_STEP_STOP && k->resp->attempts > 0;
  k->resp->elapsed = (ended_at_last ? k->t_last : resil__http_now(k->c)) - k->started;
  /* Stopped after a retry was decided (cancelled in the wait, or another
   * caller opened the breaker meanwhile): no attempt followed the last one,
   * so its history entry must not promise a wait before one. */
  if (!ended_at_last && k->resp->nhist > 0) k->resp->hist[k->resp->nhist - 1].delay = 0;
}

resil_err resil__http_call_err(const resil__http_call *k) {
  switch (k->resp->reason) {
    case RESIL_STOP_SUCCESS:
    case RESIL_STOP_VERIFIED: return RESIL_OK;
    case RESIL_STOP_CANCELLED: return RESIL_ECANCELED;
    default: return RESIL_EFAILED;
  }
}
