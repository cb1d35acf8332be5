/* The client: configuration, libcurl's global init, the share (DNS cache and
 * TLS sessions), the pool of easy handles for blocking calls, and the
 * per-host breakers with their policies.
 *
 * Connections. libcurl documents sharing the connection cache through a
 * CURLSH as unsafe between concurrent threads, so connections are not put
 * in the share. They live in the easy handles instead (each handle keeps its
 * own small cache), and resil_http_do takes handles from a LIFO pool: the
 * handle that finished last, and whose connection is the most likely to be
 * alive, is the next one used. A resil_http_multi keeps its connections in
 * the curl multi's pool. DNS answers and TLS sessions are shared by every
 * handle of the client, under one mutex per kind of data. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "http/internal.h"
#include "resil/version.h"

/* curl_global_init is not thread-safe and must run before any other curl
 * call: once per process. It is never undone (curl_global_cleanup is not
 * thread-safe either, and resil cannot know when the last user is gone). */
static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;
static void curl_init_once(void) { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

#define POOL_MAX 64

void resil_http_client_config_init(resil_http_client_config *cfg) {
  if (cfg == NULL) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  resil_retry_config_init(&cfg->retry);
  cfg->per_host_breakers = 0;
  resil_breaker_config_init(&cfg->breaker);
  cfg->attempt_timeout = 30 * RESIL_SEC;
  cfg->connect_timeout = 10 * RESIL_SEC;
  resil_http_retry_statuses_default(&cfg->retry_statuses);
  cfg->retry_non_idempotent = 0;
  cfg->idempotency_header = "Idempotency-Key";
  cfg->user_agent = "resil/" RESIL_VERSION_STRING;
  cfg->follow_redirects = 0;
  cfg->max_redirects = 10;
  cfg->max_body = (size_t)64 << 20;
  cfg->max_drain = (size_t)64 << 10;
  cfg->log_level = RESIL_LOG_INFO;
}

/* ---- the share's locks --------------------------------------------------- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud) {
  (void)h;
  (void)access;
  resil_http_client *c = ud;
  if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST) pthread_mutex_lock(&c->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud) {
  (void)h;
  resil_http_client *c = ud;
  if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST) pthread_mutex_unlock(&c->share_mu[data]);
}

/* ---- string copies ------------------------------------------------------- */

static char *dup_str(const resil_allocator *a, const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = resil__alloc(a, n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Copy the default headers (one block for the strings) and build the ready
 * list: nodes and "Name: value" lines in a second block. */
static resil_err copy_default_headers(resil_http_client *c, const resil_http_client_config *cfg) {
  size_t n = cfg->n_default_headers;
  if (n == 0) return RESIL_OK;
  size_t strings = 0, lines = 0;
  for (size_t i = 0; i < n; i++) {
    size_t nl = strlen(cfg->default_headers[i].name), vl = strlen(cfg->default_headers[i].value);
    strings += nl + vl + 2;
    lines += nl + vl + 3; /* "Name: value" or "Name;" for an empty value */
  }
  c->default_headers = resil__alloc(&c->alloc, n * sizeof *c->default_headers);
  c->strings = resil__alloc(&c->alloc, strings);
  c->default_list_mem = resil__alloc(&c->alloc, n * sizeof(struct curl_slist) + lines);
  if (!c->default_headers || !c->strings || !c->default_list_mem) return RESIL_ENOMEM;
  char *s = c->strings;
  struct curl_slist *nodes = c->default_list_mem;
  char *l = (char *)(nodes + n);
  for (size_t i = 0; i < n; i++) {
    const char *name = cfg->default_headers[i].name, *value = cfg->default_headers[i].value;
    size_t nl = strlen(name), vl = strlen(value);
    c->default_headers[i].name = memcpy(s, name, nl + 1);
    s += nl + 1;
    c->default_headers[i].value = memcpy(s, value, vl + 1);
    s += vl + 1;
    /* curl sends "Name;" as a header with an empty value. */
    nodes[i].data = l;
    memcpy(l, name, nl);
    l += nl;
    if (vl == 0) {
      *l++ = ';';
    } else {
      *l++ = ':';
      *l++ = ' ';
      memcpy(l, value, vl);
      l += vl;
    }
    *l++ = '\0';
    nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
  }
  c->default_list = nodes;
  return RESIL_OK;
}

static resil_err check_config(const resil_http_client_config *cfg) {
  if (cfg == NULL || cfg->size != sizeof *cfg) return RESIL_EINVAL;
  if (cfg->attempt_timeout < 0 || cfg->connect_timeout < 0) return RESIL_EINVAL;
  if (cfg->max_redirects < -1) return RESIL_EINVAL;
  if (cfg->log_level < RESIL_LOG_ERROR || cfg->log_level > RESIL_LOG_DEBUG) return RESIL_EINVAL;
  if (cfg->n_default_headers > 0 && cfg->default_headers == NULL) return RESIL_EINVAL;
  for (size_t i = 0; i < cfg->n_default_headers; i++) {
    const resil_http_header *h = &cfg->default_headers[i];
    if (!resil__http_token_ok(h->name) || h->value == NULL || !resil__http_value_ok(h->value))
      return RESIL_EINVAL;
  }
  if (cfg->idempotency_header && !resil__http_token_ok(cfg->idempotency_header))
    return RESIL_EINVAL;
  if (cfg->user_agent && !resil__http_value_ok(cfg->user_agent)) return RESIL_EINVAL;
  return RESIL_OK;
}

static resil_err make_policy(resil_http_client *c, resil_breaker *b, resil_retry_policy **out) {
  resil_retry_config rc = c->cfg.retry;
  rc.breaker = b;
  rc.classify = NULL; /* the client classifies every attempt itself */
  return resil_retry_policy_new(out, &rc);
}

resil_err resil_http_client_new(resil_http_client **out, const resil_http_client_config *cfg) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  resil_err e = check_config(cfg);
  if (e != RESIL_OK) return e;
  pthread_once(&g_curl_once, curl_init_once);
  if (g_curl_init_rc != CURLE_OK) return RESIL_ESYS;

  resil_allocator a = resil__alloc_resolve(&cfg->retry.alloc);
  resil_http_client *c = resil__calloc(&a, sizeof *c);
  if (c == NULL) return RESIL_ENOMEM;
  c->alloc = a;
  c->cfg = *cfg;
  c->cfg.retry.alloc = a;
  c->cfg.retry.breaker = NULL;
  c->cfg.retry.classify = NULL;
  c->retry_statuses = cfg->retry_statuses;
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&c->share_mu[i], NULL);
  pthread_mutex_init(&c->pool_mu, NULL);
  pthread_rwlock_init(&c->hosts_mu, NULL);

  e = RESIL_ENOMEM;
  const char *idem = cfg->idempotency_header ? cfg->idempotency_header : "Idempotency-Key";
  if ((c->idem_header = dup_str(&a, idem)) == NULL) goto fail;
  c->cfg.idempotency_header = c->idem_header;
#define COPY(field)                                                            \
  if (cfg->field && (c->field = dup_str(&a, cfg->field)) == NULL) goto fail;   \
  c->cfg.field = c->field;
  COPY(user_agent)
  COPY(ca_file)
  COPY(ca_path)
  COPY(client_cert)
  COPY(client_key)
#undef COPY
  if (copy_default_headers(c, cfg) != RESIL_OK) goto fail;
  c->cfg.default_headers = c->default_headers;
  c->cfg.breaker.name = NULL; /* replaced by each host's origin */

  if ((e = make_policy(c, NULL, &c->policy)) != RESIL_OK) goto fail;
  if (cfg->per_host_breakers) {
    /* Validate the template now, so a host's first request cannot fail
     * with EINVAL later. */
    resil_breaker *probe = NULL;
    if ((e = resil_breaker_new(&probe, &cfg->breaker)) != RESIL_OK) goto fail;
    resil_breaker_free(probe);
    c->cap_hosts = 16;
    e = RESIL_ENOMEM;
    c->hosts = resil__calloc(&a, c->cap_hosts * sizeof *c->hosts);
    if (c->hosts == NULL) goto fail;
  }

  e = RESIL_ESYS;
  if ((c->share = curl_share_init()) == NULL) goto fail;
  if (curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
      curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
      curl_share_setopt(c->share, CURLSHOPT_USERDATA, c) != CURLSHE_OK ||
      curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)
    goto fail;
  /* TLS session resumption: best effort (a TLS backend may lack it). */
  (void)curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  *out = c;
  return RESIL_OK;
fail:
  resil_http_client_free(c);
  return e;
}

void resil_http_client_free(resil_http_client *c) {
  if (c == NULL) return;
  resil_allocator a = c->alloc;
  /* Easy handles first: they point at the share. */
  for (size_t i = 0; i < c->n_pool; i++) resil__http_handle_free(c, c->pool[i]);
  resil__free(&a, c->pool);
  if (c->share) curl_share_cleanup(c->share);
  if (c->hosts) {
    for (size_t i = 0; i < c->cap_hosts; i++) {
      resil__http_host *h = c->hosts[i];
      while (h) {
        resil__http_host *next = h->next;
        resil_retry_policy_free(h->policy);
        resil_breaker_free(h->breaker);
        resil__free(&a, h);
        h = next;
      }
    }
    resil__free(&a, c->hosts);
  }
  resil_retry_policy_free(c->policy);
  resil__free(&a, c->idem_header);
  resil__free(&a, c->user_agent);
  resil__free(&a, c->ca_file);
  resil__free(&a, c->ca_path);
  resil__free(&a, c->client_cert);
  resil__free(&a, c->client_key);
  resil__free(&a, c->default_headers);
  resil__free(&a, c->strings);
  resil__free(&a, c->default_list_mem);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&c->share_mu[i]);
  pthread_mutex_destroy(&c->pool_mu);
  pthread_rwlock_destroy(&c->hosts_mu);
  resil__free(&a, c);
}

/* ---- easy handles -------------------------------------------------------- */

resil__http_handle *resil__http_handle_new(resil_http_client *c) {
  resil__http_handle *h = resil__calloc(&c->alloc, sizeof *h);
  if (h == NULL) return NULL;
  CURL *e = h->e = curl_easy_init();
  if (e == NULL) {
    resil__free(&c->alloc, h);
    return NULL;
  }
  h->maxfilesize = -1;
  const resil_http_client_config *cfg = &c->cfg;
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_SHARE, c->share);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  if (cfg->user_agent) curl_easy_setopt(e, CURLOPT_USERAGENT, cfg->user_agent);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, cfg->follow_redirects ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, cfg->max_redirects);
  if (cfg->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
  if (cfg->ca_path) curl_easy_setopt(e, CURLOPT_CAPATH, cfg->ca_path);
  if (cfg->client_cert) curl_easy_setopt(e, CURLOPT_SSLCERT, cfg->client_cert);
  if (cfg->client_key) curl_easy_setopt(e, CURLOPT_SSLKEY, cfg->client_key);
  if (cfg->tls_insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)h);
  resil__http_handle_callbacks(h);
  return h;
}

void resil__http_handle_free(resil_http_client *c, resil__http_handle *h) {
  if (h == NULL) return;
  curl_easy_cleanup(h->e);
  resil__free(&c->alloc, h);
}

resil__http_handle *resil__http_handle_get(resil_http_client *c) {
  resil__http_handle *h = NULL;
  pthread_mutex_lock(&c->pool_mu);
  if (c->n_pool > 0) h = c->pool[--c->n_pool];
  pthread_mutex_unlock(&c->pool_mu);
  return h ? h : resil__http_handle_new(c);
}

void resil__http_handle_put(resil_http_client *c, resil__http_handle *h) {
  if (h == NULL) return;
  h->call = NULL;
  pthread_mutex_lock(&c->pool_mu);
  if (c->n_pool == c->cap_pool && c->cap_pool < POOL_MAX) {
    size_t cap = c->cap_pool ? c->cap_pool * 2 : 4;
    resil__http_handle **p = c->alloc.realloc(c->alloc.ud, c->pool, cap * sizeof *p);
    if (p) {
      c->pool = p;
      c->cap_pool = cap;
    }
  }
  if (c->n_pool < c->cap_pool) {
    c->pool[c->n_pool++] = h;
    h = NULL;
  }
  pthread_mutex_unlock(&c->pool_mu);
  resil__http_handle_free(c, h);
}

/* ---- per-host breakers --------------------------------------------------- */

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static resil__http_host *find_host(const resil_http_client *c, const char *key, uint64_t h) {
  for (resil__http_host *e = c->hosts[h & (c->cap_hosts - 1)]; e; e = e->next)
    if (e->hash == h && strcmp(e->origin, key) == 0) return e;
  return NULL;
}

/* With the write lock held. */
static void grow_hosts(resil_http_client *c) {
  size_t cap = c->cap_hosts * 2;
  resil__http_host **t = resil__calloc(&c->alloc, cap * sizeof *t);
  if (t == NULL) return; /* keep the longer chains */
  for (size_t i = 0; i < c->cap_hosts; i++) {
    resil__http_host *e = c->hosts[i];
    while (e) {
      resil__http_host *next = e->next;
      e->next = t[e->hash & (cap - 1)];
      t[e->hash & (cap - 1)] = e;
      e = next;
    }
  }
  resil__free(&c->alloc, c->hosts);
  c->hosts = t;
  c->cap_hosts = cap;
}

static resil__http_host *add_host(resil_http_client *c, const char *key, uint64_t h,
                                  resil_err *err) {
  size_t n = strlen(key) + 1;
  resil__http_host *e = resil__calloc(&c->alloc, sizeof *e + n);
  if (e == NULL) {
    *err = RESIL_ENOMEM;
    return NULL;
  }
  memcpy(e->origin, key, n);
  e->hash = h;
  resil_breaker_config bc = c->cfg.breaker;
  bc.name = e->origin;
  if ((*err = resil_breaker_new(&e->breaker, &bc)) != RESIL_OK ||
      (*err = make_policy(c, e->breaker, &e->policy)) != RESIL_OK) {
    resil_breaker_free(e->breaker);
    resil__free(&c->alloc, e);
    return NULL;
  }
  if (c->n_hosts + 1 > c->cap_hosts) grow_hosts(c);
  e->next = c->hosts[h & (c->cap_hosts - 1)];
  c->hosts[h & (c->cap_hosts - 1)] = e;
  c->n_hosts++;
  return e;
}

const resil_retry_policy *resil__http_policy_for(resil_http_client *c, const char *url,
                                                 resil_err *err) {
  *err = RESIL_OK;
  if (!c->cfg.per_host_breakers) return c->policy;
  char key[RESIL__ORIGIN_MAX];
  if (resil__http_origin(url, key) == 0) return c->policy; /* curl will refuse it */
  uint64_t h = hash_str(key);
  pthread_rwlock_rdlock(&c->hosts_mu);
  resil__http_host *e = find_host(c, key, h);
  pthread_rwlock_unlock(&c->hosts_mu);
  if (e) return e->policy;
  pthread_rwlock_wrlock(&c->hosts_mu);
  e = find_host(c, key, h);
  if (e == NULL) e = add_host(c, key, h, err);
  pthread_rwlock_unlock(&c->hosts_mu);
  return e ? e->policy : NULL;
}

resil_breaker *resil_http_client_breaker(resil_http_client *c, const char *origin) {
  if (c == NULL || origin == NULL || !c->cfg.per_host_breakers) return NULL;
  char key[RESIL__ORIGIN_MAX];
  if (resil__http_origin(origin, key) == 0) return NULL;
  uint64_t h = hash_str(key);
  pthread_rwlock_rdlock(&c->hosts_mu);
  resil__http_host *e = find_host(c, key, h);
  pthread_rwlock_unlock(&c->hosts_mu);
  return e ? e->breaker : NULL;
}
