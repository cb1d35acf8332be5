/* resil_http_multi: many calls in one thread on curl multi.
 *
 * Each call is the same state machine as resil_http_do (resil_retry_attempt
 * / transfer / resil_retry_next); the difference is who waits. A call that
 * is due (just added, or its retry delay over, or waiting for a breaker
 * probe) sits in a min-heap keyed by its due time on the client's clock;
 * transfers run inside curl multi. Two loops can drive it:
 *
 *   - resil's own (resil_http_multi_perform / _run): curl_multi_poll() -
 *     poll(2) over libcurl's sockets - with a timeout that is the earliest of
 *     max_wait, the heap's top and libcurl's own timer, then one
 *     curl_multi_perform(). A poll()-based loop is O(transfers) per wakeup
 *     whichever curl API it drives, and with many transfers ready at once one
 *     curl_multi_perform() is much cheaper than a curl_multi_socket_action()
 *     per ready socket (libcurl 7.88, 64 in flight: about 4,500 instructions
 *     less per request, see bench/bench_http.c).
 *   - the caller's (resil_http_multi_use_loop): libcurl's socket API
 *     (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION); socket and timer requests
 *     are forwarded to the loop (epoll, libuv, ...), which calls back
 *     resil_http_multi_socket_action for each ready socket: O(active) work
 *     per event. The loop's timer covers both libcurl's timer and the heap.
 *
 * Easy handles come from the multi's own pool and go back to it after each
 * attempt, so a call waiting out a long Retry-After holds no handle.
 * Connections live in the curl multi's connection pool and are reused by
 * every transfer of the multi; DNS answers and TLS sessions are shared with
 * the client. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <string.h>

#include "http/internal.h"

/* How often waiting calls are checked for a fired cancel token. */
#define CANCEL_POLL (50 * RESIL_MSEC)

struct resil_http_multi {
  resil_http_client *c;
  CURLM *cm;
  resil__http_call *calls; /* every call not yet completed */
  size_t pending;
  resil__http_call **heap; /* calls waiting to be stepped, by due */
  size_t nheap, heap_cap;
  size_t waiting_cancel;   /* heap entries carrying a cancel token */
  resil__http_handle **pool;
  size_t npool, pool_cap;
  /* external loop: libcurl's timer, on the real monotonic clock */
  int curl_timer;
  resil_ns curl_due;
  int external;
  resil_http_loop loop;
  int closing;
};

static resil_ns real_now(void) {
  resil_clock sys = resil_clock_system();
  return sys.now(sys.ud);
}

static int grow(const resil_allocator *a, void **p, size_t *cap, size_t need, size_t sz) {
  if (need <= *cap) return 0;
  size_t cap2 = *cap ? *cap * 2 : 16;
  while (cap2 < need) cap2 *= 2;
  void *q = a->realloc(a->ud, *p, cap2 * sz);
  if (q == NULL) return -1;
  *p = q;
  *cap = cap2;
  return 0;
}

/* ---- the heap of waiting calls ------------------------------------------ */

static void heap_set(resil_http_multi *m, size_t i, resil__http_call *k) {
  m->heap[i] = k;
  k->heap_idx = i;
}

static void heap_up(resil_http_multi *m, size_t i) {
  resil__http_call *k = m->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (m->heap[p]->due <= k->due) break;
    heap_set(m, i, m->heap[p]);
    i = p;
  }
  heap_set(m, i, k);
}

static void heap_down(resil_http_multi *m, size_t i) {
  resil__http_call *k = m->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, best = i;
    resil_ns due = k->due;
    if (l < m->nheap && m->heap[l]->due < due) {
      best = l;
      due = m->heap[l]->due;
    }
    if (l + 1 < m->nheap && m->heap[l + 1]->due < due) best = l + 1;
    if (best == i) break;
    heap_set(m, i, m->heap[best]);
    i = best;
  }
  heap_set(m, i, k);
}

static int heap_push(resil_http_multi *m, resil__http_call *k) {
  if (grow(&m->c->alloc, (void **)&m->heap, &m->heap_cap, m->nheap + 1, sizeof *m->heap))
    return -1;
  m->heap[m->nheap++] = k;
  heap_up(m, m->nheap - 1);
  if (k->req->cancel) m->waiting_cancel++;
  return 0;
}

static void heap_remove(resil_http_multi *m, resil__http_call *k) {
  size_t i = k->heap_idx;
  if (i == SIZE_MAX) return;
  k->heap_idx = SIZE_MAX;
  if (k->req->cancel) m->waiting_cancel--;
  resil__http_call *last = m->heap[--m->nheap];
  if (i == m->nheap) return;
  heap_set(m, i, last);
  heap_down(m, i);
  heap_up(m, last->heap_idx);
}

/* ---- easy handles ---------------------------------------------------------- */

/* Idle handles kept for reuse; beyond this a burst's extra handles are
 * freed. */
#define POOL_MAX 64

static resil__http_handle *handle_get(resil_http_multi *m) {
  if (m->npool) return m->pool[--m->npool];
  return resil__http_handle_new(m->c);
}

static void handle_put(resil_http_multi *m, resil__http_handle *h) {
  h->call = NULL;
  if (m->npool >= POOL_MAX ||
      grow(&m->c->alloc, (void **)&m->pool, &m->pool_cap, m->npool + 1, sizeof *m->pool)) {
    resil__http_handle_free(m->c, h);
    return;
  }
  m->pool[m->npool++] = h;
}

/* ---- completing and stepping calls ----------------------------------------- */

static void complete(resil_http_multi *m, resil__http_call *k, resil_err override) {
  heap_remove(m, k);
  resil__http_call_result(k);
  resil_err err = override != RESIL_OK ? override : resil__http_call_err(k);
  resil_http_response *resp = k->resp;
  k->resp = NULL;
  if (k->prev) k->prev->next = k->next;
  else m->calls = k->next;
  if (k->next) k->next->prev = k->prev;
  m->pending--;
  resil_http_done_fn done = k->done;
  void *ud = k->done_ud;
  resil_allocator a = m->c->alloc;
  resil__http_call_cleanup(k);
  resil__free(&a, k); /* and the request copy after it */
  if (done) done(ud, err, resp);
  else resil_http_response_free(resp);
}

static void schedule(resil_http_multi *m, resil__http_call *k, resil_ns due) {
  k->due = due;
  if (heap_push(m, k)) {
    resil_retry_abort(&k->st);
    complete(m, k, RESIL_ENOMEM);
  }
}

/* A call is due: pass the breaker/budget gate and start an attempt. */
static void step_call(resil_http_multi *m, resil__http_call *k, resil_ns now) {
  if (resil_cancel_fired(k->req->cancel)) {
    resil_retry_abort(&k->st);
    complete(m, k, RESIL_OK);
    return;
  }
  resil_step g = resil_retry_attempt(&k->st);
  if (g.kind == RESIL_STEP_STOP) {
    complete(m, k, RESIL_OK);
    return;
  }
  if (g.delay > 0) {
    schedule(m, k, resil_ns_add(now, g.delay));
    return;
  }
  if ((k->h = handle_get(m)) == NULL) {
    resil_retry_abort(&k->st);
    complete(m, k, RESIL_ENOMEM);
    return;
  }
  resil__http_attempt_setup(k, now, resil_retry_attempt_timeout(&k->st, k->per_attempt));
  if (curl_multi_add_handle(m->cm, k->h->e) != CURLM_OK) {
    handle_put(m, k->h);
    k->h = NULL;
    resil_retry_abort(&k->st);
    complete(m, k, RESIL_ENOMEM);
    return;
  }
  k->in_curl = 1;
}

static void run_due(resil_http_multi *m) {
  if (m->nheap == 0) return;
  resil_ns now = resil__http_now(m->c);
  while (m->nheap > 0 && m->heap[0]->due <= now) {
    resil__http_call *k = m->heap[0];
    heap_remove(m, k);
    step_call(m, k, now);
  }
}

/* Waiting calls whose token fired end now rather than at their due time. */
static void check_cancels(resil_http_multi *m) {
  if (m->waiting_cancel == 0) return;
  for (size_t i = 0; i < m->nheap;) {
    resil__http_call *k = m->heap[i];
    if (resil_cancel_fired(k->req->cancel)) {
      resil_retry_abort(&k->st);
      complete(m, k, RESIL_OK); /* removes it from the heap */
      i = 0;                    /* the heap was reordered */
    } else {
      i++;
    }
  }
}

static void transfer_done(resil_http_multi *m, CURL *e, CURLcode code) {
  resil__http_handle *h = NULL;
  curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&h);
  resil__http_call *k = h->call;
  curl_multi_remove_handle(m->cm, e);
  k->in_curl = 0;
  resil_step s = resil__http_attempt_finish(k, code);
  handle_put(m, h);
  k->h = NULL;
  if (s.kind == RESIL_STEP_STOP) complete(m, k, RESIL_OK);
  else schedule(m, k, resil_ns_add(k->x.decided_at, s.delay));
}

static void read_done(resil_http_multi *m) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m->cm, &left)) != NULL)
    if (msg->msg == CURLMSG_DONE) transfer_done(m, msg->easy_handle, msg->data.result);
}

/* libcurl's timer, as libcurl sees it now (external loop). */
static void refresh_curl_timer(resil_http_multi *m) {
  long ms = -1;
  if (curl_multi_timeout(m->cm, &ms) != CURLM_OK || ms < 0) {
    m->curl_timer = 0;
  } else {
    m->curl_timer = 1;
    m->curl_due = real_now() + (resil_ns)ms * RESIL_MSEC;
  }
}

/* The time until something needs doing (RESIL_NS_MAX: nothing scheduled). */
static resil_ns next_wakeup(const resil_http_multi *m) {
  resil_ns t = RESIL_NS_MAX;
  if (m->curl_timer) {
    resil_ns d = m->curl_due - real_now();
    t = d < 0 ? 0 : d;
  }
  if (m->nheap) {
    resil_ns d = m->heap[0]->due - resil__http_now(m->c);
    if (d < 0) d = 0;
    if (d < t) t = d;
  }
  if (m->waiting_cancel && t > CANCEL_POLL) t = CANCEL_POLL;
  return t;
}

static void update_loop_timer(resil_http_multi *m) {
  if (!m->external) return;
  resil_ns t = m->pending ? next_wakeup(m) : RESIL_NS_MAX;
  m->loop.timer(m->loop.ud, t == RESIL_NS_MAX ? -1 : t);
}

/* ---- libcurl's socket and timer callbacks (external loop) --------------- */

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)e;
  (void)socketp;
  resil_http_multi *m = userp;
  int w = what == CURL_POLL_REMOVE ? RESIL_POLL_REMOVE
                                   : ((what & CURL_POLL_IN) ? RESIL_POLL_IN : 0) |
                                         ((what & CURL_POLL_OUT) ? RESIL_POLL_OUT : 0);
  m->loop.watch(m->loop.ud, (int)s, w);
  return 0;
}

static int on_timer(CURLM *cm, long ms, void *userp) {
  (void)cm;
  resil_http_multi *m = userp;
  if (ms < 0) {
    m->curl_timer = 0;
  } else {
    m->curl_timer = 1;
    m->curl_due = real_now() + (resil_ns)ms * RESIL_MSEC;
  }
  return 0;
}

/* ---- public API ---------------------------------------------------------- */

resil_err resil_http_multi_new(resil_http_multi **out, resil_http_client *c) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  if (c == NULL) return RESIL_EINVAL;
  resil_http_multi *m = resil__calloc(&c->alloc, sizeof *m);
  if (m == NULL) return RESIL_ENOMEM;
  m->c = c;
  if ((m->cm = curl_multi_init()) == NULL) {
    resil__free(&c->alloc, m);
    return RESIL_ENOMEM;
  }
  *out = m;
  return RESIL_OK;
}

void resil_http_multi_free(resil_http_multi *m) {
  if (m == NULL) return;
  m->closing = 1;
  while (m->calls) {
    resil__http_call *k = m->calls;
    if (k->in_curl) {
      curl_multi_remove_handle(m->cm, k->h->e);
      k->in_curl = 0;
      handle_put(m, k->h);
      k->h = NULL;
    }
    resil_retry_abort(&k->st);
    complete(m, k, RESIL_ECANCELED);
  }
  for (size_t i = 0; i < m->npool; i++) resil__http_handle_free(m->c, m->pool[i]);
  curl_multi_cleanup(m->cm);
  resil_allocator a = m->c->alloc;
  resil__free(&a, m->pool);
  resil__free(&a, m->heap);
  resil__free(&a, m);
}

resil_err resil_http_multi_add(resil_http_multi *m, const resil_http_request *req,
                               resil_http_done_fn done, void *ud) {
  if (m == NULL || m->closing) return RESIL_EINVAL;
  resil_err e = resil__http_request_check(req);
  if (e != RESIL_OK) return e;
  /* One block: the call, then the request's copy. */
  const resil_allocator *a = &m->c->alloc;
  size_t off = (sizeof(resil__http_call) + 15) & ~(size_t)15;
  resil__http_call *k = resil__alloc(a, off + resil__http_request_copy_size(req));
  if (k == NULL) return RESIL_ENOMEM;
  resil_http_request *cp = resil__http_request_copy((char *)k + off, req);
  if ((e = resil__http_call_init(k, m->c, cp)) != RESIL_OK) {
    resil__http_call_cleanup(k);
    resil__free(a, k);
    return e;
  }
  k->m = m;
  k->done = done;
  k->done_ud = ud;
  resil_retry_begin(&k->st, k->policy, cp->cancel, (void *)cp);
  k->due = resil__http_now(m->c);
  if (heap_push(m, k)) {
    resil__http_call_cleanup(k);
    resil__free(a, k);
    return RESIL_ENOMEM;
  }
  k->next = m->calls;
  if (m->calls) m->calls->prev = k;
  m->calls = k;
  m->pending++;
  update_loop_timer(m);
  return RESIL_OK;
}

size_t resil_http_multi_pending(const resil_http_multi *m) { return m ? m->pending : 0; }

size_t resil_http_multi_perform(resil_http_multi *m, resil_ns max_wait) {
  if (m == NULL) return 0;
  if (m->external) return m->pending;
  check_cancels(m);
  run_due(m);
  if (m->pending == 0) return 0;
  resil_ns t = max_wait < 0 ? 0 : max_wait;
  if (m->nheap) {
    resil_ns d = m->heap[0]->due - resil__http_now(m->c);
    if (d < t) t = d < 0 ? 0 : d;
  }
  if (m->waiting_cancel && t > CANCEL_POLL) t = CANCEL_POLL;
  resil_ns q = t / RESIL_MSEC + (t % RESIL_MSEC != 0);
  int ms = q > INT_MAX ? INT_MAX : (int)q;
  int running = 0;
  /* libcurl shortens the wait to its own next timeout. */
  if (ms > 0) curl_multi_poll(m->cm, NULL, 0, ms, NULL);
  curl_multi_perform(m->cm, &running);
  read_done(m);
  check_cancels(m);
  run_due(m);
  return m->pending;
}

resil_err resil_http_multi_run(resil_http_multi *m) {
  if (m == NULL || m->external) return RESIL_EINVAL;
  while (resil_http_multi_perform(m, RESIL_SEC) > 0) {
  }
  return RESIL_OK;
}

resil_err resil_http_multi_use_loop(resil_http_multi *m, const resil_http_loop *loop) {
  if (m == NULL || loop == NULL || loop->watch == NULL || loop->timer == NULL) return RESIL_EINVAL;
  if (m->pending > 0 || m->external) return RESIL_EINVAL;
  m->loop = *loop;
  m->external = 1;
  curl_multi_setopt(m->cm, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(m->cm, CURLMOPT_SOCKETDATA, m);
  curl_multi_setopt(m->cm, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(m->cm, CURLMOPT_TIMERDATA, m);
  return RESIL_OK;
}

void resil_http_multi_socket_action(resil_http_multi *m, int fd, int events) {
  if (m == NULL || !m->external) return;
  int running = 0;
  check_cancels(m);
  run_due(m);
  if (fd >= 0) {
    int mask = ((events & RESIL_POLL_IN) ? CURL_CSELECT_IN : 0) |
               ((events & RESIL_POLL_OUT) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(m->cm, fd, mask, &running);
  }
  if (fd < 0 || (m->curl_timer && real_now() >= m->curl_due))
    curl_multi_socket_action(m->cm, CURL_SOCKET_TIMEOUT, 0, &running);
  read_done(m);
  check_cancels(m);
  run_due(m);
  refresh_curl_timer(m);
  update_loop_timer(m);
}
