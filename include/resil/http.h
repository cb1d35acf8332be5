/* resil: a retrying HTTP client on libcurl.
 *
 * What go-retryablehttp and axios-retry do for Go and JavaScript, for C:
 *
 *   - retries follow resil's engine (attempts, backoff with jitter, overall
 *     deadline, Retry-After as a floor with a cap, budget), and each attempt's
 *     timeout is min(attempt_timeout, time left to the deadline);
 *   - failures before the request was sent (connection refused, DNS) are
 *     always retried; timeouts, resets and partial responses only for
 *     idempotent requests; TLS certificate errors and too many redirects
 *     never; statuses by the client's retry set (default: 408, 429, 5xx but
 *     501);
 *   - POST and PATCH (any non-idempotent method) are retried only when the
 *     request carries an Idempotency-Key or the caller opts in; with
 *     idempotency_key "auto" the client generates one UUID per logical
 *     request and sends the same value on every attempt;
 *   - Retry-After on any retried status (delta-seconds or HTTP-date), and
 *     RateLimit-Reset / X-RateLimit-Reset on 429, set a floor under the
 *     backoff; above retry_after_max the call gives up (or clamps);
 *   - request bodies are replayed byte-identical (memory, or a read callback
 *     with rewind); retried responses' bodies are drained (bounded) and
 *     discarded, but the last response is always kept intact: a call that
 *     gives up still returns the last status, headers and body;
 *   - per-host circuit breakers (keyed scheme://host:port) and a shared
 *     retry budget; connections are reused across attempts and requests.
 *
 * Thread-safety: a resil_http_client is shareable by any number of threads
 * (connections, DNS cache and breakers are shared under internal locks). A
 * resil_http_multi belongs to one thread. Responses are owned by the caller.
 * Logging is silent unless a log callback is set. */
#ifndef RESIL_HTTP_H
#define RESIL_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "classify.h"
#include "error.h"
#include "export.h"
#include "header.h"
#include "log.h"
#include "retry.h"
#include "time.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One attempt, as kept in a response's history and passed to on_attempt. */
typedef struct resil_http_attempt {
  uint32_t number;      /* 1-based */
  int status;           /* HTTP status, or 0 when no response arrived */
  int curl_code;        /* CURLcode of the transfer (0 = CURLE_OK) */
  resil_errclass error_class; /* for transport errors: NOT_SENT (never left:
                                 refused, DNS), TRANSIENT (timeout, reset,
                                 partial), PERMANENT (TLS, redirects, ...);
                                 PERMANENT, and meaningless, when curl_code
                                 is 0 */
  resil_ns duration;    /* how long the attempt took */
  resil_ns retry_after; /* server-requested delay, or -1 when none */
  resil_ns delay;       /* the wait before the next attempt; 0 for the last */
} resil_http_attempt;

typedef struct resil_http_response resil_http_response;

/* Passed to on_attempt after every attempt, before the retry decision's wait.
 * response is that attempt's response (its body is the drained part for a
 * response that will be retried); valid only during the call. */
typedef struct resil_http_attempt_event {
  const resil_http_attempt *attempt;
  const resil_http_response *response;
  const char *method;
  const char *url;
  int will_retry;       /* 1 when another attempt follows after attempt->delay */
} resil_http_attempt_event;

typedef struct resil_http_client_config {
  size_t size;                   /* sizeof; set by _init */
  resil_retry_config retry;      /* attempts (5), backoff (1s..30s, full
                                    jitter), max_elapsed = overall deadline
                                    (none), retry_after_max (60s) and
                                    retry_after_clamp, budget, on_retry /
                                    on_give_up, clock, seed. Its `breaker` and
                                    `classify` are ignored: see below. The
                                    hooks' call_ud is the request (for a
                                    multi, resil's copy of it). */
  int per_host_breakers;         /* default 0; 1: one breaker per
                                    scheme://host:port, made from `breaker` */
  resil_breaker_config breaker;  /* template (its name is replaced) */
  resil_ns attempt_timeout;      /* per attempt; default 30s */
  resil_ns connect_timeout;      /* default 10s */
  resil_codeset retry_statuses;  /* default resil_http_retry_statuses_default */
  int retry_non_idempotent;      /* default 0 */
  const char *idempotency_header;/* default "Idempotency-Key" (copied) */
  const resil_http_header *default_headers; /* sent on every request unless */
  size_t n_default_headers;      /* the request sets the same name (copied) */
  const char *user_agent;        /* default "resil/<version>" (copied) */
  int follow_redirects;          /* default 0 */
  long max_redirects;            /* default 10 */
  /* TLS, passed to libcurl as given (NULL = libcurl's default) */
  const char *ca_file, *ca_path, *client_cert, *client_key;
  int tls_insecure;              /* default 0; 1 disables verification */
  size_t max_body;               /* largest response body kept; default 64 MiB;
                                    a larger body fails the attempt
                                    (CURLE_FILESIZE_EXCEEDED, not retried);
                                    0 = no limit */
  size_t max_drain;              /* retried responses: read at most this much
                                    of the body (default 64 KiB), then drop
                                    the connection rather than read on */
  resil_log_fn log;              /* default NULL: silent. Called from the
                                    thread running the request */
  void *log_ud;
  resil_log_level log_level;     /* default RESIL_LOG_INFO */
  void (*on_attempt)(void *ud, const resil_http_attempt_event *ev);
  void *hook_ud;
} resil_http_client_config;

RESIL_API void resil_http_client_config_init(resil_http_client_config *cfg);

typedef struct resil_http_client resil_http_client;

/* RESIL_EINVAL for a bad config, RESIL_ENOMEM, RESIL_EUNSUPPORTED when built
 * without libcurl. Calls curl_global_init() once per process (libcurl
 * requires it before any thread uses curl; resil guards it with a once-flag,
 * which is the only process-wide state resil keeps, and it is libcurl's). */
RESIL_API resil_err resil_http_client_new(resil_http_client **out,
                                          const resil_http_client_config *cfg);
/* NULL-safe. No request may be in flight. */
RESIL_API void resil_http_client_free(resil_http_client *c);
/* The breaker for "scheme://host:port", or NULL (none made yet, or
 * per_host_breakers off). Owned by the client. */
RESIL_API resil_breaker *resil_http_client_breaker(resil_http_client *c,
                                                   const char *origin);

typedef struct resil_http_request {
  size_t size;                   /* sizeof; set by _init */
  const char *method;            /* default "GET" */
  const char *url;
  const resil_http_header *headers;
  size_t n_headers;
  /* Body: from memory ... */
  const void *body;
  size_t body_len;
  /* ... or from a callback, rewound before every retry. read returns the
   * bytes written to buf, 0 at the end, or (size_t)-1 on error (the call
   * fails, not retried); rewind returns 0 on success. */
  size_t (*read_body)(void *ud, char *buf, size_t n);
  int (*rewind_body)(void *ud);
  void *body_ud;
  int64_t body_size;             /* with read_body: length, or -1 (chunked) */
  /* Response body to a callback instead of memory. Only the final response's
   * body reaches it (retried responses are drained); return n to go on,
   * anything else aborts (CURLE_WRITE_ERROR, not retried). Bytes cannot be
   * taken back: a transfer that breaks after some reached it is not
   * retried. */
  size_t (*write_body)(void *ud, const char *data, size_t n);
  void *write_ud;
  const char *idempotency_key;   /* NULL: none; "auto": generated UUIDv4,
                                    the same on every attempt; else sent as
                                    given (must be a valid header value) */
  int retry_non_idempotent;      /* -1 (default): the client's setting */
  resil_ns attempt_timeout;      /* 0 (default): the client's */
  resil_ns deadline;             /* overall, from the call's start; 0
                                    (default): the client's retry.max_elapsed */
  resil_cancel *cancel;          /* optional: fire to stop retrying */
} resil_http_request;

RESIL_API void resil_http_request_init(resil_http_request *req);

/* ---- Blocking --------------------------------------------------------- */

/* Perform req with retries. *out receives the response (also on failure:
 * the last status, headers, body and the history are in it; and when no
 * attempt was made because the breaker was open or the budget refused:
 * attempts 0, status 0, the stop reason says which); it is NULL only for
 * RESIL_EINVAL, RESIL_ENOMEM and RESIL_ESYS. out may be NULL (the response
 * is then freed). Returns RESIL_OK when the final response is 1xx-3xx,
 * RESIL_EFAILED when the call ended without one (see
 * resil_http_response_stop_reason and _curl_code), RESIL_ECANCELED,
 * RESIL_EINVAL (bad request: no URL, body and read_body both set,
 * read_body without rewind_body, invalid idempotency key), RESIL_ENOMEM,
 * RESIL_ESYS (no randomness for an "auto" idempotency key).
 * Thread-safe.
 * One exception to "intact": a call that stops after a retry of a retryable
 * status was already decided (cancelled during the wait, or another thread
 * opened the host's breaker meanwhile) returns that attempt's response, whose
 * body was drained: at most max_drain bytes of it are kept. */
RESIL_API resil_err resil_http_do(resil_http_client *c, const resil_http_request *req,
                                  resil_http_response **out);

/* ---- Responses -------------------------------------------------------- */

RESIL_API void resil_http_response_free(resil_http_response *r); /* NULL-safe */
/* Last attempt's status; 0 when no response arrived. */
RESIL_API int resil_http_response_status(const resil_http_response *r);
/* First header with that name (case-insensitive), or NULL. */
RESIL_API const char *resil_http_response_header(const resil_http_response *r,
                                                 const char *name);
RESIL_API size_t resil_http_response_header_count(const resil_http_response *r);
RESIL_API resil_http_header resil_http_response_header_at(const resil_http_response *r,
                                                          size_t i);
/* The body kept in memory (NUL-terminated for convenience; len excludes it);
 * empty when write_body was used. */
RESIL_API const char *resil_http_response_body(const resil_http_response *r, size_t *len);
RESIL_API uint32_t resil_http_response_attempts(const resil_http_response *r);
RESIL_API resil_stop_reason resil_http_response_stop_reason(const resil_http_response *r);
/* Last attempt's CURLcode (0 when it got a response) and libcurl's message. */
RESIL_API int resil_http_response_curl_code(const resil_http_response *r);
RESIL_API const char *resil_http_response_error(const resil_http_response *r);
/* The Idempotency-Key sent (generated or given), or NULL. */
RESIL_API const char *resil_http_response_idempotency_key(const resil_http_response *r);
/* Per-attempt history, oldest first. */
RESIL_API const resil_http_attempt *resil_http_response_history(const resil_http_response *r,
                                                                size_t *n);
RESIL_API resil_ns resil_http_response_elapsed(const resil_http_response *r);

/* ---- Concurrent (curl multi) ------------------------------------------ */

/* Many requests in one thread: transfers run concurrently on curl multi,
 * retries wait on timers without blocking other transfers, connections are
 * reused. */
typedef struct resil_http_multi resil_http_multi;

/* Called once per added request, from resil_http_multi_run/perform/
 * socket_action (or _free), with the same meaning as resil_http_do's result
 * (resp is never NULL). The callback owns resp. It may add requests to the
 * multi, but not free it. */
typedef void (*resil_http_done_fn)(void *ud, resil_err err, resil_http_response *resp);

RESIL_API resil_err resil_http_multi_new(resil_http_multi **out, resil_http_client *c);
/* NULL-safe. Requests still in flight are aborted: their callbacks run with
 * RESIL_ECANCELED. */
RESIL_API void resil_http_multi_free(resil_http_multi *m);
/* Queue a request (copied: req and its strings need not outlive the call; a
 * memory body is copied too). */
RESIL_API resil_err resil_http_multi_add(resil_http_multi *m, const resil_http_request *req,
                                         resil_http_done_fn done, void *ud);
/* Number of requests not yet completed. */
RESIL_API size_t resil_http_multi_pending(const resil_http_multi *m);

/* Simple loop: run until every added request has completed. */
RESIL_API resil_err resil_http_multi_run(resil_http_multi *m);
/* One step: wait at most max_wait for activity or a due retry, process it,
 * return. Returns the number of requests still pending. */
RESIL_API size_t resil_http_multi_perform(resil_http_multi *m, resil_ns max_wait);

/* External event loop (libuv, epoll, ...): resil tells the loop which sockets
 * to watch and when to wake; the loop calls back resil_http_multi_socket_action
 * when a socket is ready or the timer fires (fd = -1). */
#define RESIL_POLL_IN 1
#define RESIL_POLL_OUT 2
#define RESIL_POLL_REMOVE 4
typedef struct resil_http_loop {
  /* Watch fd for what (RESIL_POLL_IN | _OUT), or stop (RESIL_POLL_REMOVE). */
  void (*watch)(void *ud, int fd, int what);
  /* Call socket_action(-1) after timeout (>= 0); -1 cancels the timer. */
  void (*timer)(void *ud, resil_ns timeout);
  void *ud;
} resil_http_loop;

/* Switch m to an external loop (before adding requests). m is then driven
 * only through resil_http_multi_socket_action: _run returns RESIL_EINVAL and
 * _perform does nothing. */
RESIL_API resil_err resil_http_multi_use_loop(resil_http_multi *m, const resil_http_loop *loop);
/* fd ready with events (RESIL_POLL_IN/OUT), or fd = -1: the timer fired. */
RESIL_API void resil_http_multi_socket_action(resil_http_multi *m, int fd, int events);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_HTTP_H */
