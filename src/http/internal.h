/* The HTTP client's internals, shared by the files in src/http/. Not
 * installed. Internal symbols use the resil__http_ prefix and stay hidden in
 * the shared library.
 *
 * Map of the files:
 *   client.c    config, curl_global_init (once), the client: CURLSH (DNS and
 *               TLS sessions), the easy-handle pool, per-host policies
 *   origin.c    "scheme://host:port" keys for per-host breakers
 *   request.c   request defaults, validation, the copy the multi keeps,
 *               header lists, request-body callbacks
 *   classify.c  CURLcode -> resil_errclass, and attempt -> resil_outcome
 *   transfer.c  one attempt: options, header/write/progress callbacks, the
 *               retry decision, history, hook and log line
 *   response.c  the response object and its accessors
 *   blocking.c  resil_http_do
 *   multi.c     resil_http_multi_* (curl multi, socket API, retry heap)
 *   log.c       leveled logging through the client's callback
 */
#ifndef RESIL_HTTP_INTERNAL_H
#define RESIL_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "core/internal.h"
#include "resil/http.h"
#include "resil/idem.h"

/* ---- client ------------------------------------------------------------ */

typedef struct resil__http_call resil__http_call;

/* An easy handle and what resil last set on it, so an attempt sets only the
 * options that change (a GET on a warm handle sets three). The callbacks'
 * userdata is the handle; `call` is the call whose transfer it runs. */
enum {
  RESIL__MODE_NONE = 0, /* fresh: nothing set yet */
  RESIL__MODE_GET,
  RESIL__MODE_HEAD,
  RESIL__MODE_NOBODY,   /* another method without a body */
  RESIL__MODE_MEMBODY,
  RESIL__MODE_READBODY
};
typedef struct resil__http_handle {
  CURL *e;
  resil__http_call *call;
  int mode;
  int custom_set;                  /* CUSTOMREQUEST is custom[] (1), or unknown (2) */
  char custom[24];
  const struct curl_slist *headers;
  curl_off_t maxfilesize;
  int progress;                    /* NOPROGRESS is 0 */
  char errbuf[CURL_ERROR_SIZE];
} resil__http_handle;

/* One origin's breaker and the policy that carries it. */
typedef struct resil__http_host {
  struct resil__http_host *next;   /* hash chain */
  uint64_t hash;
  resil_breaker *breaker;
  resil_retry_policy *policy;      /* the client's retry config + breaker */
  char origin[];                   /* "scheme://host:port" */
} resil__http_host;

struct resil_http_client {
  resil_http_client_config cfg;    /* strings point into owned copies */
  resil_allocator alloc;
  resil_retry_policy *policy;      /* no breaker: per_host_breakers off */
  resil_codeset retry_statuses;
  /* owned copies of the config's strings */
  char *idem_header, *user_agent, *ca_file, *ca_path, *client_cert, *client_key;
  resil_http_header *default_headers;
  char *strings;                   /* backing store of default_headers */
  /* The default headers as a ready list (read-only, shared by every handle
   * whose request adds none of its own). */
  struct curl_slist *default_list;
  void *default_list_mem;
  /* libcurl share: DNS cache and TLS session ids, one mutex per kind. */
  CURLSH *share;
  pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
  /* Idle easy handles for resil_http_do (LIFO, so the handle whose
   * connection is warmest goes out first). */
  pthread_mutex_t pool_mu;
  resil__http_handle **pool;
  size_t n_pool, cap_pool;
  /* per-host breakers: a small hash map, read-mostly */
  pthread_rwlock_t hosts_mu;
  resil__http_host **hosts;
  size_t n_hosts, cap_hosts;       /* cap_hosts: buckets, a power of two */
};

/* A handle with the options it keeps for its whole life (TLS, agent,
 * redirects, share, callbacks). NULL on ENOMEM. */
resil__http_handle *resil__http_handle_new(resil_http_client *c);
void resil__http_handle_free(resil_http_client *c, resil__http_handle *h); /* NULL-safe */
/* Install the header/write/read/seek/progress callbacks (transfer.c). */
void resil__http_handle_callbacks(resil__http_handle *h);
/* A handle for a blocking call: from the pool, else new. NULL on ENOMEM. */
resil__http_handle *resil__http_handle_get(resil_http_client *c);
void resil__http_handle_put(resil_http_client *c, resil__http_handle *h);

/* The policy for url (with its host's breaker when per_host_breakers is on;
 * the host entry is made on first use). NULL only on ENOMEM. */
const resil_retry_policy *resil__http_policy_for(resil_http_client *c, const char *url,
                                                 resil_err *err);

/* ---- origin ------------------------------------------------------------ */

#define RESIL__ORIGIN_MAX 320
/* "scheme://host:port" with a lowercase scheme and host and the default port
 * filled in (http 80, https 443). Returns the length, or 0 when url has no
 * usable scheme://authority (curl will reject it; no breaker is used). */
size_t resil__http_origin(const char *url, char out[RESIL__ORIGIN_MAX]);

/* ---- request ----------------------------------------------------------- */

/* RESIL_OK or RESIL_EINVAL, by the rules in http.h. */
resil_err resil__http_request_check(const resil_http_request *req);
/* A deep copy (strings, headers, memory body) in one block of
 * resil__http_request_copy_size(req) bytes at mem (aligned for pointers). */
size_t resil__http_request_copy_size(const resil_http_request *req);
resil_http_request *resil__http_request_copy(void *mem, const resil_http_request *req);
/* CURLOPT_READFUNCTION / SEEKFUNCTION for a read_body request (ud = handle). */
size_t resil__http_on_read(char *buf, size_t size, size_t nitems, void *ud);
int resil__http_on_seek(void *ud, curl_off_t offset, int origin);
/* 1 for a syntactically valid header field name (an RFC 9110 token). */
int resil__http_token_ok(const char *s);
/* 1 for a header value without CR, LF, NUL or other control characters. */
int resil__http_value_ok(const char *s);

/* ---- the call: one logical request across its attempts ----------------- */

enum { RESIL__PH_UNKNOWN = 0, RESIL__PH_KEEP = 1, RESIL__PH_DRAIN = 2 };

/* Methods resil treats specially (anything else is OTHER). */
enum { RESIL__M_GET, RESIL__M_HEAD, RESIL__M_POST, RESIL__M_PUT, RESIL__M_PATCH, RESIL__M_OTHER };

/* One attempt's transfer state. */
typedef struct resil__http_xfer {
  resil_ns start;                  /* client clock */
  resil_ns decided_at;
  resil_step step;                 /* valid once decided */
  resil_outcome out;
  resil_ns retry_after;            /* hint, or -1 */
  int decided;
  int phase;                       /* RESIL__PH_* */
  int status;                      /* from the last status line */
  size_t streamed;                 /* bytes handed to write_body */
  unsigned cut : 1;                /* we stopped a drain at max_drain */
  unsigned too_big : 1;            /* the body passed max_body */
  unsigned user_abort : 1;         /* write_body refused bytes */
  unsigned read_failed : 1;        /* read_body returned (size_t)-1 */
  unsigned cancelled : 1;          /* the cancel token stopped the transfer */
  unsigned rewind_failed : 1;
  unsigned in_header_block : 1;
  char reason[48];                 /* status line reason phrase */
} resil__http_xfer;

struct resil__http_call {
  resil_http_client *c;
  const resil_http_request *req;   /* blocking: the caller's; multi: a copy */
  const char *method;
  int mkind;                       /* RESIL__M_* */
  int has_body;                    /* a body is sent (maybe empty) */
  int safe;                        /* may repeat after it may have been processed */
  resil_ns per_attempt;
  const resil_retry_policy *policy;
  resil_retry_policy *own_policy;  /* a request deadline: its own policy */
  resil_retry_state st;
  resil_ns started;                /* client clock, at the call's start */
  struct curl_slist *headers;      /* the list sent (may be the client's) */
  void *headers_mem;               /* owned part, or NULL */
  char idem[RESIL_UUID_SIZE];      /* a generated key */
  const char *idem_key;            /* the key sent, or NULL */
  resil_http_response *resp;
  resil__http_handle *h;           /* during an attempt */
  resil_ns t_last;                 /* when the last attempt ended */
  resil__http_xfer x;
  /* multi only */
  resil_http_multi *m;
  resil_http_done_fn done;
  void *done_ud;
  resil__http_call *prev, *next;   /* all of the multi's calls */
  size_t heap_idx;                 /* SIZE_MAX when not waiting */
  resil_ns due;                    /* client clock */
  int in_curl;                     /* added to the curl multi */
};

/* Prepare a call: defaults, idempotency key, policy, header list, response.
 * The request must already be checked. */
resil_err resil__http_call_init(resil__http_call *k, resil_http_client *c,
                                const resil_http_request *req);
void resil__http_call_cleanup(resil__http_call *k);

/* Point k->h at k, set the options this attempt needs and reset the attempt
 * state. start: now on the client's clock; timeout: the attempt's limit
 * (RESIL_NS_MAX = none). */
void resil__http_attempt_setup(resil__http_call *k, resil_ns start, resil_ns timeout);
/* The transfer ended with code: decide (unless decided mid-transfer), record
 * the attempt in the history, run the hook, log. Returns the step. */
resil_step resil__http_attempt_finish(resil__http_call *k, CURLcode code);
/* Close the response at the end of the call (stop reason, elapsed). */
void resil__http_call_result(resil__http_call *k);
/* RESIL_OK / RESIL_ECANCELED / RESIL_EFAILED for the call's stop reason. */
resil_err resil__http_call_err(const resil__http_call *k);

/* ---- classification ---------------------------------------------------- */

/* The class of a transport error. nothing_sent: libcurl never got to send
 * the request (no pre-transfer time), which makes a timeout NOT_SENT. */
resil_errclass resil__http_curl_class(CURLcode code, int nothing_sent);
/* The outcome of a response with this status (the headers complete);
 * *retry_after gets the server's hint or -1. */
resil_outcome resil__http_status_outcome(const resil__http_call *k, int status,
                                         resil_ns *retry_after);

/* ---- response ---------------------------------------------------------- */

/* Inline storage: a small response needs no allocation besides the
 * response itself, whose size stays within glibc's per-thread cache
 * (<= 1032 bytes) so that allocation is cheap too. */
#define RESIL__RESP_HBUF 448
#define RESIL__RESP_HOFF 16
#define RESIL__RESP_BODY 232

struct resil_http_response {
  resil_allocator alloc;
  int status;
  uint32_t attempts;
  resil_stop_reason reason;
  int curl_code;
  resil_ns elapsed;
  char *body;
  size_t body_len, body_cap;
  char *hbuf;                      /* "name\0value\0" ... */
  size_t hlen, hcap;
  uint32_t *hoff;                  /* offset of each header's name in hbuf */
  size_t nh, nh_cap;
  char *idem;                      /* the key sent, or NULL */
  resil_http_attempt *hist;
  size_t nhist, hist_cap;
  char *error;                     /* CURL_ERROR_SIZE bytes, made on the
                                      first error; "" = none */
  resil_http_attempt hist_inline[2];
  uint32_t hoff_inline[RESIL__RESP_HOFF];
  char hbuf_inline[RESIL__RESP_HBUF];
  char body_inline[RESIL__RESP_BODY];
};

resil_http_response *resil__http_response_new(const resil_allocator *a);
/* Forget the last attempt's status, headers, body and error (keeps memory
 * and history). */
void resil__http_response_reset(resil_http_response *r);
/* 0 or -1 (ENOMEM). */
int resil__http_response_add_header(resil_http_response *r, const char *name, size_t nlen,
                                    const char *value, size_t vlen);
/* Append to the last header's value (obs-fold continuation line). */
int resil__http_response_fold_header(resil_http_response *r, const char *value, size_t vlen);
int resil__http_response_append(resil_http_response *r, const char *p, size_t n);
int resil__http_response_push_attempt(resil_http_response *r, const resil_http_attempt *a);
/* The error text buffer (CURL_ERROR_SIZE bytes), made on first use; NULL on
 * ENOMEM. */
char *resil__http_response_errbuf(resil_http_response *r);

/* ---- multi ------------------------------------------------------------- */

/* ---- log --------------------------------------------------------------- */

static inline int resil__http_logs(const resil_http_client *c, resil_log_level lv) {
  return c->cfg.log != NULL && lv <= c->cfg.log_level;
}
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
void resil__http_log(const resil_http_client *c, resil_log_level lv, const char *fmt, ...);
/* "GET http://host:port/path" without userinfo, query or fragment. */
size_t resil__http_log_target(const char *method, const char *url, char *buf, size_t len);
/* Reason phrase for common statuses ("Service Unavailable"), else "". */
const char *resil__http_reason(int status);

/* Monotonic now on the client's clock. */
static inline resil_ns resil__http_now(const resil_http_client *c) {
  return c->cfg.retry.clock.now(c->cfg.retry.clock.ud);
}

#endif
