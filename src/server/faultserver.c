/* The fault server's lifecycle: config checks, the listening socket, the
 * libmicrohttpd daemon and its thread pool, and the global faults.
 *
 * We bind the socket ourselves and hand it to MHD (MHD_OPTION_LISTEN_SOCKET)
 * so that a bind failure reports its own errno and port 0 can be read back
 * with getsockname() before any thread starts. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/internal.h"

void resil_faultserver_config_init(resil_faultserver_config *cfg) {
  if (cfg == NULL) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->listen = "127.0.0.1:0";
  cfg->threads = 4;
  cfg->fail_rate = 0.0;
  cfg->fail_status = 503;
  cfg->max_keys = 10000;
  cfg->max_body = 1024 * 1024;
  cfg->idempotent = 0;
  cfg->store_url = "memory:";
  cfg->require_key = 0;
  cfg->idem_lease = 30 * RESIL_SEC;
  cfg->lost_response_rate = 0.5;
}

resil_ns resil__fs_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (resil_ns)ts.tv_sec * RESIL_SEC + ts.tv_nsec;
}

/* ---- the listen address ---------------------------------------------------- */

typedef struct listen_addr {
  struct sockaddr_storage ss;
  socklen_t len;
  int family;
  char host[INET6_ADDRSTRLEN]; /* as written, without brackets */
} listen_addr;

/* "A.B.C.D:PORT" or "[V6]:PORT"; numeric host, decimal port 0..65535. */
static int parse_listen(const char *text, listen_addr *out) {
  memset(out, 0, sizeof *out);
  const char *colon = strrchr(text, ':');
  if (colon == NULL || colon == text) return -1;
  const char *host = text, *host_end = colon;
  if (text[0] == '[') {
    if (colon[-1] != ']') return -1;
    host = text + 1;
    host_end = colon - 1;
    out->family = AF_INET6;
  } else {
    out->family = AF_INET;
  }
  size_t hl = (size_t)(host_end - host);
  if (hl == 0 || hl >= sizeof out->host) return -1;
  memcpy(out->host, host, hl);
  out->host[hl] = '\0';

  const char *p = colon + 1;
  unsigned long port = 0;
  if (*p == '\0') return -1;
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    port = port * 10 + (unsigned long)(*p - '0');
    if (port > 65535) return -1;
  }
  if (out->family == AF_INET) {
    struct sockaddr_in *sa = (struct sockaddr_in *)&out->ss;
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, out->host, &sa->sin_addr) != 1) return -1;
    out->len = sizeof *sa;
  } else {
    struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&out->ss;
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, out->host, &sa->sin6_addr) != 1) return -1;
    out->len = sizeof *sa;
  }
  return 0;
}

/* Bind and listen; returns the socket, or -1 with errno set. */
static int open_listener(const listen_addr *a, uint16_t *port) {
  int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  /* Rebinding right after a restart is fine (TIME_WAIT); another live
   * listener on the port still makes bind fail with EADDRINUSE. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail;
  /* IPv6 only, except for a v4-mapped address, which needs the IPv4 side. */
  if (a->family == AF_INET6 &&
      !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr) &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
    goto fail;
  if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0) goto fail;
  if (listen(fd, SOMAXCONN) != 0) goto fail;
  struct sockaddr_storage got;
  socklen_t len = sizeof got;
  if (getsockname(fd, (struct sockaddr *)&got, &len) != 0) goto fail;
  if (got.ss_family == AF_INET6) *port = ntohs(((struct sockaddr_in6 *)&got)->sin6_port);
  else *port = ntohs(((struct sockaddr_in *)&got)->sin_port);
  return fd;
fail:;
  int e = errno;
  close(fd);
  errno = e;
  return -1;
}

/* ---- start / stop ------------------------------------------------------------ */

static int config_ok(const resil_faultserver_config *c) {
  if (c->size != sizeof *c) return 0;
  if (c->threads < 1 || c->threads > 256) return 0;
  if (!(c->fail_rate >= 0.0 && c->fail_rate <= 1.0)) return 0; /* also NaN */
  if (c->fail_status < 100 || c->fail_status > 599) return 0;
  if (c->latency < 0 || c->outage_start < 0 || c->outage_duration < 0) return 0;
  if (c->max_keys < 1) return 0;
  if (!(c->lost_response_rate >= 0.0 && c->lost_response_rate <= 1.0)) return 0;
  if (c->idem_lease <= 0) return 0;
  return 1;
}

/* Frees everything start may have set up; the daemon must be stopped. */
static void server_free(resil_faultserver *s) {
  if (s->timer_started) resil__fs_timer_free(&s->timer);
  resil_idem_free(s->idem);
  resil_store_close(s->store);
  if (s->orders_ready) resil__fs_orders_destroy(&s->orders);
  resil__fs_keystore_free(s->keys);
  pthread_mutex_destroy(&s->rng_mu);
  free(s);
}

/* cfg.idempotent: open the store, the idempotency layer on it and the
 * order list. RESIL_EINVAL for a bad store URL, RESIL_EUNSUPPORTED when its
 * backend or the idempotency layer (libcrypto) is not built in, RESIL_ESTORE
 * when the store cannot open (e.g. an unwritable SQLite file), RESIL_ENOMEM.
 * What was set up is freed by server_free. */
static resil_err start_orders(resil_faultserver *s, const resil_faultserver_config *cfg) {
  char msg[256];
  resil_err e = resil_store_open(&s->store, cfg->store_url ? cfg->store_url : "memory:", NULL,
                                 msg, sizeof msg);
  if (e != RESIL_OK) return e;
  static const char *const stored[] = {"Content-Type", "Location"};
  resil_idem_config ic;
  resil_idem_config_init(&ic);
  ic.store = s->store;
  ic.require_key = cfg->require_key;
  ic.fail_open = cfg->store_fail_open;
  ic.lease = cfg->idem_lease;
  ic.stored_headers = stored;
  ic.n_stored_headers = sizeof stored / sizeof stored[0];
  e = resil_idem_new(&s->idem, &ic);
  if (e != RESIL_OK) return e;
  if (resil__fs_orders_init(&s->orders) != 0) return RESIL_ENOMEM;
  s->orders_ready = 1;
  return RESIL_OK;
}

/* MHD closes the listening socket it was given when it fails after taking
 * it over, but not when it rejects its options up front. Close it only if
 * that number still names our socket (`keep` is a duplicate of it), so a
 * descriptor another thread just opened is never closed. */
static void close_if_ours(int fd, int keep) {
  struct stat a, b;
  if (fstat(fd, &a) == 0 && fstat(keep, &b) == 0 && a.st_dev == b.st_dev &&
      a.st_ino == b.st_ino)
    close(fd);
}

resil_err resil_faultserver_start(resil_faultserver **out,
                                  const resil_faultserver_config *cfg) {
  if (out == NULL) return RESIL_EINVAL;
  *out = NULL;
  if (cfg == NULL || !config_ok(cfg)) return RESIL_EINVAL;
  listen_addr addr;
  if (parse_listen(cfg->listen ? cfg->listen : "127.0.0.1:0", &addr) != 0) return RESIL_EINVAL;

  resil_faultserver *s = calloc(1, sizeof *s);
  if (s == NULL) return RESIL_ENOMEM;
  if (pthread_mutex_init(&s->rng_mu, NULL) != 0) {
    free(s);
    return RESIL_ENOMEM;
  }
  s->cfg = *cfg;
  s->cfg.listen = NULL;
  s->cfg.store_url = NULL;
  if (cfg->use_seed) resil_rng_seed(&s->rng, cfg->seed);
  else resil_rng_seed_os(&s->rng); /* falls back to a clock seed: fine here */
  atomic_init(&s->requests, 0);

  if (resil__fs_keystore_new(&s->keys, cfg->max_keys, resil_rng_next(&s->rng)) != 0) {
    server_free(s);
    return RESIL_ENOMEM;
  }
  if (resil__fs_timer_start(&s->timer, RESIL__FS_MAX_CONNECTIONS, resil__fs_wake) != 0) {
    int e = errno;
    server_free(s);
    errno = e;
    return e == ENOMEM ? RESIL_ENOMEM : RESIL_ESYS;
  }
  s->timer_started = 1;

  /* Before binding: a store that cannot open leaves nothing listening. */
  if (cfg->idempotent) {
    resil_err e = start_orders(s, cfg);
    if (e != RESIL_OK) {
      server_free(s);
      return e;
    }
  }

  int fd = open_listener(&addr, &s->port);
  if (fd < 0) {
    int e = errno;
    server_free(s);
    errno = e;
    return RESIL_ESYS;
  }
  if (addr.family == AF_INET6)
    snprintf(s->url, sizeof s->url, "http://[%s]:%u", addr.host, (unsigned)s->port);
  else snprintf(s->url, sizeof s->url, "http://%s:%u", addr.host, (unsigned)s->port);

  int keep = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (keep < 0) {
    int e = errno;
    close(fd);
    server_free(s);
    errno = e;
    return RESIL_ESYS;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME;
  if (addr.family == AF_INET6) flags |= MHD_USE_IPv6;
  /* MHD runs its pool only for sizes above 1; 1 is its single thread. */
  unsigned pool = cfg->threads > 1 ? cfg->threads : 0;
  errno = 0;
  s->started = resil__fs_now();
  s->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, resil__fs_access, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
      MHD_OPTION_NOTIFY_COMPLETED, resil__fs_completed, s, MHD_OPTION_URI_LOG_CALLBACK,
      resil__fs_uri_log, s, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)RESIL__FS_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
      MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_END);
  if (s->daemon == NULL) {
    int e = errno ? errno : EIO;
    close_if_ours(fd, keep);
    close(keep);
    server_free(s);
    errno = e;
    return RESIL_ESYS;
  }
  close(keep);
  *out = s;
  return RESIL_OK;
}

void resil_faultserver_stop(resil_faultserver *s) {
  if (s == NULL) return;
  /* Wake every delayed request first (they end without an answer): MHD
   * must not be stopped while a connection is suspended. Requests that
   * suspend after this are refused by the timer and resume themselves. */
  resil__fs_timer_stop(&s->timer);
  MHD_stop_daemon(s->daemon); /* joins the workers; closes the socket */
  server_free(s);
}

uint16_t resil_faultserver_port(const resil_faultserver *s) { return s ? s->port : 0; }

const char *resil_faultserver_url(const resil_faultserver *s) { return s ? s->url : NULL; }

uint64_t resil_faultserver_requests(const resil_faultserver *s) {
  return s ? atomic_load(&s->requests) : 0;
}

uint64_t resil_faultserver_orders(const resil_faultserver *s) {
  return s && s->orders_ready ? atomic_load(&s->orders.count) : 0;
}

/* ---- global faults ----------------------------------------------------------- */

resil__fs_fault resil__fs_global_fault(resil_faultserver *s, resil_ns *outage_left) {
  const resil_faultserver_config *c = &s->cfg;
  if (c->outage_duration > 0) {
    resil_ns since = resil__fs_now() - s->started;
    resil_ns end = resil_ns_add(c->outage_start, c->outage_duration);
    if (since >= c->outage_start && since < end) {
      *outage_left = end - since;
      return RESIL__FS_FAULT_OUTAGE;
    }
  }
  if (c->fail_rate <= 0.0) return RESIL__FS_FAULT_NONE;
  pthread_mutex_lock(&s->rng_mu);
  double u = resil_rng_unit(&s->rng);
  pthread_mutex_unlock(&s->rng_mu);
  return u < c->fail_rate ? RESIL__FS_FAULT_RATE : RESIL__FS_FAULT_NONE;
}

int resil__fs_lost_response(resil_faultserver *s) {
  double rate = s->cfg.lost_response_rate;
  if (rate <= 0.0) return 0;
  pthread_mutex_lock(&s->rng_mu);
  double u = resil_rng_unit(&s->rng);
  pthread_mutex_unlock(&s->rng_mu);
  return u < rate;
}
