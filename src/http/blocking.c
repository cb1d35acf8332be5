/* resil_http_do: the step API driven in the caller's thread, sleeping on the
 * client's clock between attempts. A cancel token wakes the sleep at once;
 * during a transfer libcurl's progress callback notices it (libcurl calls it
 * at least about once a second, usually far more often). */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "http/internal.h"

/* Sleep d on the client's clock; 0 when cancelled. */
static int wait_for(resil__http_call *k, resil_ns d) {
  const resil_clock *clk = &k->c->cfg.retry.clock;
  resil_cancel *cancel = k->req->cancel;
  if (d > 0 && clk->sleep(clk->ud, d, cancel) == RESIL_ECANCELED) return 0;
  return !resil_cancel_fired(cancel);
}

resil_err resil_http_do(resil_http_client *c, const resil_http_request *req,
                        resil_http_response **out) {
  if (out) *out = NULL;
  if (c == NULL) return RESIL_EINVAL;
  resil_err e = resil__http_request_check(req);
  if (e != RESIL_OK) return e;
  resil__http_call k;
  if ((e = resil__http_call_init(&k, c, req)) != RESIL_OK) {
    resil__http_call_cleanup(&k);
    return e;
  }
  resil_retry_begin(&k.st, k.policy, req->cancel, (void *)req);
  resil_err fail = RESIL_OK;
  resil_ns start = k.started; /* the first attempt starts with the call */
  for (;;) {
    resil_step g = resil_retry_attempt(&k.st);
    if (g.kind == RESIL_STEP_STOP) break;
    if (g.delay > 0) { /* the breaker's next probe */
      if (!wait_for(&k, g.delay)) {
        resil_retry_abort(&k.st);
        break;
      }
      start = -1;
      continue;
    }
    if (k.h == NULL && (k.h = resil__http_handle_get(c)) == NULL) {
      resil_retry_abort(&k.st);
      fail = RESIL_ENOMEM;
      break;
    }
    if (start < 0) start = resil__http_now(c);
    resil__http_attempt_setup(&k, start, resil_retry_attempt_timeout(&k.st, k.per_attempt));
    CURLcode code = curl_easy_perform(k.h->e);
    resil_step s = resil__http_attempt_finish(&k, code);
    if (s.kind == RESIL_STEP_STOP) break;
    resil_ns left = k.x.decided_at + s.delay - resil__http_now(c);
    if (!wait_for(&k, left)) {
      resil_retry_abort(&k.st);
      break;
    }
    start = -1;
  }
  resil__http_handle_put(c, k.h);
  resil__http_call_result(&k);
  e = fail != RESIL_OK ? fail : resil__http_call_err(&k);
  if (out && fail == RESIL_OK) {
    *out = k.resp;
    k.resp = NULL;
  }
  resil__http_call_cleanup(&k);
  return e;
}
