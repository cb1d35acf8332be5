/* HTTP client benchmark: what resil's retrying client costs over plain
 * libcurl doing the same transfers, in one run.
 *
 *   1. keep-alive GET throughput, one request at a time: resil_http_do
 *      against a plain curl easy loop with the same options (one reused
 *      handle, body and headers collected into memory, the same kind of
 *      share, URL and timeouts set per request). Target: ratio >= 0.97.
 *   2. 64 requests in flight: resil_http_multi against a plain curl multi
 *      (curl_multi_perform + curl_multi_poll) with 64 reused easy handles.
 *      Target: ratio >= 0.95.
 *   3. the same blocking loop against resil's fault server, which closes
 *      every connection (`Connection: close`): cost with a connect per
 *      request.
 *   4. heap bytes per request (mallinfo2 before and after 1000 requests):
 *      in flight (sent, never answered), queued, and waiting for a retry.
 *
 * Servers run in child processes forked before anything else starts: the
 * client's CPU time (CLOCK_PROCESS_CPUTIME_ID) and heap (mallinfo2) are then
 * the client's alone, and the two sides share no malloc arena. The
 * keep-alive server is a minimal epoll loop written here, because the fault
 * server answers `Connection: close` and would turn 1 and 2 into a benchmark
 * of connect() and accept(). Rounds alternate baseline and resil so drifts in
 * the machine's speed hit both; a rate is a median over the rounds, a ratio
 * the median of the rounds' paired ratios. Client CPU per request is printed
 * too: it is the least noisy measure of what resil adds. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <resil/faultserver.h>
#include <resil/http.h>
#include <resil/resil.h>

#include "bench_util.h"

#define ROUNDS 7
#define N_BLOCKING 10000
#define N_MULTI 20000
#define IN_FLIGHT 64
#define N_CLOSE 1000
#define N_MEM 1000

static char g_base[64];  /* the keep-alive server */
static char g_url[128];  /* the route measured: a small JSON 200 */
static char g_fs_url[128]; /* the fault server's /status/200 */

/* ---- servers, in child processes ---------------------------------------- */

/* A minimal HTTP/1.1 server that keeps connections alive: one epoll
 * thread; "/hold..." is never answered (requests stay in flight), "/503"
 * answers 503 with Retry-After: 30, anything else a fixed 200. resil's fault
 * server answers every request with `Connection: close`, which would make
 * this a benchmark of connect() and accept(). */
#define RESP_200                                                               \
  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n" \
  "{\"status\":200}\n"
#define RESP_503                                                               \
  "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 15\r\n\r\n" \
  "{\"status\":503}\n"

typedef struct conn {
  int fd;
  size_t len;
  char buf[8192];
} conn;

static void serve_keepalive(int lfd, int stop_fd) {
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  ev.data.ptr = &stop_fd;
  epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == &stop_fd) return;
      if (evs[i].data.ptr == NULL) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *c = calloc(1, sizeof *c);
          c->fd = fd;
          struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        }
        continue;
      }
      conn *c = evs[i].data.ptr;
      ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
      if (r <= 0) {
        close(c->fd);
        free(c);
        continue;
      }
      c->len += (size_t)r;
      char *end;
      while (c->len > 0 && (end = memmem(c->buf, c->len, "\r\n\r\n", 4)) != NULL) {
        size_t used = (size_t)(end + 4 - c->buf);
        const char *resp = NULL;
        if (memcmp(c->buf, "GET /hold", 9) == 0) resp = NULL;
        else if (memcmp(c->buf, "GET /503", 8) == 0) resp = RESP_503;
        else resp = RESP_200;
        if (resp && send(c->fd, resp, strlen(resp), MSG_NOSIGNAL) < 0) break;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
      }
      if (c->len == sizeof c->buf) c->len = 0; /* not HTTP: drop it */
    }
  }
}

static int listen_loopback(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4096) ||
      getsockname(fd, (struct sockaddr *)&a, &len))
    return -1;
  *port = ntohs(a.sin_port);
  return fd;
}

static int g_stop_pipe = -1; /* closing it stops both servers */

/* Client and server share one CPU by default. Left to the scheduler, their
 * placement changed a request's cost up to 3x between runs (a wakeup on the
 * other CPU of a VM is expensive), and on one CPU every cycle the client
 * spends shows in the throughput: the strictest comparison.
 * BENCH_HTTP_CPUS="client,server" overrides (-1: not pinned). */
static void pin(int which) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int cpu = 0;
  const char *env = getenv("BENCH_HTTP_CPUS");
  if (env) {
    int c = -1, sv = -1;
    if (sscanf(env, "%d,%d", &c, &sv) != 2) return;
    cpu = which == 0 ? c : sv;
  }
  if (cpu < 0 || cpu >= ncpu) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

/* Fork the servers before the client starts any thread. */
static void start_servers(pid_t pids[2]) {
  int up[2], down[2];
  if (pipe(up) || pipe(down)) exit(1);
  for (int kind = 0; kind < 2; kind++) {
    pid_t pid = fork();
    if (pid < 0) exit(1);
    if (pid == 0) {
      close(up[0]);
      close(down[1]);
      pin(1);
      uint16_t port = 0;
      if (kind == 0) {
        int lfd = listen_loopback(&port);
        if (write(up[1], &port, sizeof port) != (ssize_t)sizeof port) _exit(1);
        if (lfd >= 0) serve_keepalive(lfd, down[0]);
        _exit(0);
      }
      resil_faultserver_config fc;
      resil_faultserver_config_init(&fc);
      fc.threads = 2;
      resil_faultserver *s = NULL;
      if (resil_faultserver_start(&s, &fc) == RESIL_OK) port = resil_faultserver_port(s);
      if (write(up[1], &port, sizeof port) != (ssize_t)sizeof port) _exit(1);
      char ch;
      while (read(down[0], &ch, 1) > 0) {
      } /* until the parent closes the pipe (or exits) */
      resil_faultserver_stop(s);
      _exit(0);
    }
    pids[kind] = pid;
    uint16_t port = 0;
    if (read(up[0], &port, sizeof port) != (ssize_t)sizeof port || port == 0) {
      fprintf(stderr, "bench_http: a server did not start\n");
      exit(1);
    }
    if (kind == 0) {
      snprintf(g_base, sizeof g_base, "http://127.0.0.1:%u", port);
      snprintf(g_url, sizeof g_url, "%s/status/200", g_base);
    } else {
      snprintf(g_fs_url, sizeof g_fs_url, "http://127.0.0.1:%u/status/200", port);
    }
  }
  close(up[0]);
  close(up[1]);
  close(down[0]);
  g_stop_pipe = down[1];
}

static int64_t cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

typedef struct sample {
  double rps;    /* requests per second, wall clock */
  double cpu_us; /* client CPU per request */
} sample;

/* ---- the baseline: plain libcurl -------------------------------------------- */

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

static size_t buf_write(char *p, size_t sz, size_t n, void *ud) {
  buf *b = ud;
  size_t k = sz * n;
  if (b->len + k + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->len + k + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (q == NULL) return 0;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, k);
  b->len += k;
  b->p[b->len] = '\0';
  return k;
}

typedef struct plain_xfer {
  CURL *e;
  buf body, headers;
} plain_xfer;

static pthread_mutex_t g_share_mu[CURL_LOCK_DATA_LAST];
static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *ud) {
  (void)h, (void)a, (void)ud;
  pthread_mutex_lock(&g_share_mu[d]);
}
static void share_unlock(CURL *h, curl_lock_data d, void *ud) {
  (void)h, (void)ud;
  pthread_mutex_unlock(&g_share_mu[d]);
}
static CURLSH *g_share;

/* The options resil's client sets, set once. */
static void plain_init(plain_xfer *x, const char *url) {
  memset(x, 0, sizeof *x);
  x->e = curl_easy_init();
  curl_easy_setopt(x->e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(x->e, CURLOPT_SHARE, g_share);
  curl_easy_setopt(x->e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(x->e, CURLOPT_USERAGENT, "resil/" RESIL_VERSION_STRING);
  curl_easy_setopt(x->e, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, buf_write);
  curl_easy_setopt(x->e, CURLOPT_WRITEDATA, &x->body);
  curl_easy_setopt(x->e, CURLOPT_HEADERFUNCTION, buf_write);
  curl_easy_setopt(x->e, CURLOPT_HEADERDATA, &x->headers);
  curl_easy_setopt(x->e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)64 << 20);
  curl_easy_setopt(x->e, CURLOPT_URL, url);
  curl_easy_setopt(x->e, CURLOPT_PRIVATE, (void *)x);
}

/* ... and what a careful program sets per request. */
static void plain_prepare(plain_xfer *x, const char *url) {
  x->body.len = 0;
  x->headers.len = 0;
  curl_easy_setopt(x->e, CURLOPT_URL, url);
  curl_easy_setopt(x->e, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(x->e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
}

static void plain_free(plain_xfer *x) {
  curl_easy_cleanup(x->e);
  free(x->body.p);
  free(x->headers.p);
}

static int g_errors;

static sample done_sample(int n, int64_t t0, int64_t c0) {
  sample s = {n / ((double)(bench_now() - t0) / 1e9), (double)(cpu_now() - c0) / 1e3 / n};
  return s;
}

static sample plain_blocking(const char *url, int n) {
  plain_xfer x;
  plain_init(&x, url);
  int64_t t0 = bench_now(), c0 = cpu_now();
  for (int i = 0; i < n; i++) {
    plain_prepare(&x, url);
    long code = 0;
    if (curl_easy_perform(x.e) != CURLE_OK ||
        curl_easy_getinfo(x.e, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code != 200)
      g_errors++;
  }
  sample s = done_sample(n, t0, c0);
  plain_free(&x);
  return s;
}

static sample plain_multi(int n) {
  CURLM *cm = curl_multi_init();
  plain_xfer x[IN_FLIGHT];
  int started = 0, done = 0;
  int64_t t0 = bench_now(), c0 = cpu_now();
  for (int i = 0; i < IN_FLIGHT && started < n; i++, started++) {
    plain_init(&x[i], g_url);
    plain_prepare(&x[i], g_url);
    curl_multi_add_handle(cm, x[i].e);
  }
  while (done < n) {
    int running;
    curl_multi_perform(cm, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(cm, &left)) != NULL) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL *e = msg->easy_handle;
      plain_xfer *px = NULL;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&px);
      long code = 0;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
      if (msg->data.result != CURLE_OK || code != 200) g_errors++;
      done++;
      curl_multi_remove_handle(cm, e);
      if (started < n) {
        plain_prepare(px, g_url);
        curl_multi_add_handle(cm, e);
        started++;
      }
    }
    if (done < n) curl_multi_poll(cm, NULL, 0, 1000, NULL);
  }
  sample s = done_sample(n, t0, c0);
  for (int i = 0; i < IN_FLIGHT && i < n; i++) plain_free(&x[i]);
  curl_multi_cleanup(cm);
  return s;
}

/* ---- resil ---------------------------------------------------------------------- */

static resil_http_client *g_client;

static sample resil_blocking(const char *url, int n) {
  resil_http_request req;
  resil_http_request_init(&req);
  req.url = url;
  int64_t t0 = bench_now(), c0 = cpu_now();
  for (int i = 0; i < n; i++) {
    resil_http_response *r = NULL;
    if (resil_http_do(g_client, &req, &r) != RESIL_OK || resil_http_response_status(r) != 200)
      g_errors++;
    resil_http_response_free(r);
  }
  return done_sample(n, t0, c0);
}

typedef struct feeder {
  resil_http_multi *m;
  resil_http_request req;
  int started, done, n;
} feeder;

static void feed_done(void *ud, resil_err err, resil_http_response *resp) {
  feeder *f = ud;
  if (err != RESIL_OK || resil_http_response_status(resp) != 200) g_errors++;
  resil_http_response_free(resp);
  f->done++;
  if (f->started < f->n) {
    f->started++;
    if (resil_http_multi_add(f->m, &f->req, feed_done, f) != RESIL_OK) g_errors++;
  }
}

static sample resil_multi(int n) {
  feeder f;
  memset(&f, 0, sizeof f);
  f.n = n;
  resil_http_request_init(&f.req);
  f.req.url = g_url;
  resil_http_multi_new(&f.m, g_client);
  int64_t t0 = bench_now(), c0 = cpu_now();
  for (int i = 0; i < IN_FLIGHT && f.started < n; i++, f.started++)
    resil_http_multi_add(f.m, &f.req, feed_done, &f);
  resil_http_multi_run(f.m);
  sample s = done_sample(n, t0, c0);
  resil_http_multi_free(f.m);
  return s;
}

/* ---- memory ------------------------------------------------------------------------ */

static size_t heap_used(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks;
}

static void count_cancelled(void *ud, resil_err err, resil_http_response *resp) {
  if (err == RESIL_ECANCELED) (*(int *)ud)++;
  resil_http_response_free(resp);
}

/* Drive m for a while: every request sent and parked. */
static void settle(resil_http_multi *m) {
  int64_t until = bench_now() + 1000000000;
  while (bench_now() < until) resil_http_multi_perform(m, 10 * RESIL_MSEC);
}

/* Heap bytes per request: queued (added, nothing sent), in flight (sent,
 * the server never answers) and waiting for a retry (after a 503 with
 * Retry-After: 30). Freeing the multi cancels them all. */
static void resil_memory(double *queued, double *in_flight, double *waiting) {
  char hold[128], r503[128];
  snprintf(hold, sizeof hold, "%s/hold", g_base);
  snprintf(r503, sizeof r503, "%s/503", g_base);
  int cancelled = 0;
  resil_http_request req;
  resil_http_request_init(&req);

  resil_http_multi *m = NULL;
  size_t h0 = heap_used();
  resil_http_multi_new(&m, g_client);
  req.url = hold;
  for (int i = 0; i < N_MEM; i++) resil_http_multi_add(m, &req, count_cancelled, &cancelled);
  size_t h1 = heap_used();
  settle(m);
  size_t h2 = heap_used();
  resil_http_multi_free(m);

  size_t h3 = heap_used();
  resil_http_multi_new(&m, g_client);
  req.url = r503;
  for (int i = 0; i < N_MEM; i++) resil_http_multi_add(m, &req, count_cancelled, &cancelled);
  settle(m);
  size_t h4 = heap_used();
  resil_http_multi_free(m);

  *queued = ((double)h1 - (double)h0) / N_MEM;
  *in_flight = ((double)h2 - (double)h0) / N_MEM;
  *waiting = ((double)h4 - (double)h3) / N_MEM;
  if (cancelled != 2 * N_MEM) g_errors++;
}

static double plain_memory(void) {
  char hold[128];
  snprintf(hold, sizeof hold, "%s/hold", g_base);
  static plain_xfer x[N_MEM];
  size_t h0 = heap_used();
  CURLM *cm = curl_multi_init();
  for (int i = 0; i < N_MEM; i++) {
    plain_init(&x[i], hold);
    plain_prepare(&x[i], hold);
    curl_multi_add_handle(cm, x[i].e);
  }
  int running = 0;
  int64_t until = bench_now() + 1000000000;
  while (bench_now() < until) {
    curl_multi_perform(cm, &running);
    curl_multi_poll(cm, NULL, 0, 10, NULL);
  }
  size_t h1 = heap_used();
  for (int i = 0; i < N_MEM; i++) {
    curl_multi_remove_handle(cm, x[i].e);
    plain_free(&x[i]);
  }
  curl_multi_cleanup(cm);
  return ((double)h1 - (double)h0) / N_MEM;
}

/* ---- main ----------------------------------------------------------------------------- */

int main(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  pid_t servers[2];
  start_servers(servers);
  pin(0);

  resil_http_client_config cfg;
  resil_http_client_config_init(&cfg);
  cfg.retry.max_attempts = 2;
  cfg.retry.backoff.base = RESIL_MSEC;
  if (resil_http_client_new(&g_client, &cfg) != RESIL_OK) {
    fprintf(stderr, "bench_http: no client\n");
    return 1;
  }
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&g_share_mu[i], NULL);
  g_share = curl_share_init();
  curl_share_setopt(g_share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(g_share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);

  /* warm up: connections, allocator, caches */
  plain_blocking(g_url, 1000);
  resil_blocking(g_url, 1000);
  plain_multi(2000);
  resil_multi(2000);

  /* rates, CPU per request, and each round's paired ratio */
  double pb[ROUNDS], rb[ROUNDS], pbc[ROUNDS], rbc[ROUNDS], xb[ROUNDS], xbc[ROUNDS];
  double pm[ROUNDS], rm[ROUNDS], pmc[ROUNDS], rmc[ROUNDS], xm[ROUNDS], xmc[ROUNDS];
  double pf[ROUNDS], rf[ROUNDS], xf[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    sample a, b, fa, fb;
    if (r % 2 == 0) {
      a = plain_blocking(g_url, N_BLOCKING);
      b = resil_blocking(g_url, N_BLOCKING);
      fa = plain_blocking(g_fs_url, N_CLOSE);
      fb = resil_blocking(g_fs_url, N_CLOSE);
    } else {
      b = resil_blocking(g_url, N_BLOCKING);
      a = plain_blocking(g_url, N_BLOCKING);
      fb = resil_blocking(g_fs_url, N_CLOSE);
      fa = plain_blocking(g_fs_url, N_CLOSE);
    }
    pb[r] = a.rps, pbc[r] = a.cpu_us, rb[r] = b.rps, rbc[r] = b.cpu_us;
    xb[r] = b.rps / a.rps, xbc[r] = a.cpu_us / b.cpu_us;
    pf[r] = fa.rps, rf[r] = fb.rps, xf[r] = fb.rps / fa.rps;
    if (r % 2 == 0) {
      a = plain_multi(N_MULTI);
      b = resil_multi(N_MULTI);
    } else {
      b = resil_multi(N_MULTI);
      a = plain_multi(N_MULTI);
    }
    pm[r] = a.rps, pmc[r] = a.cpu_us, rm[r] = b.rps, rmc[r] = b.cpu_us;
    xm[r] = b.rps / a.rps, xmc[r] = a.cpu_us / b.cpu_us;
  }
  double q, f, w;
  resil_memory(&q, &f, &w);
  double pmem = plain_memory();

  double vpb = median(pb, ROUNDS), vrb = median(rb, ROUNDS);
  double vpbc = median(pbc, ROUNDS), vrbc = median(rbc, ROUNDS);
  double vpm = median(pm, ROUNDS), vrm = median(rm, ROUNDS);
  double vpmc = median(pmc, ROUNDS), vrmc = median(rmc, ROUNDS);
  double vpf = median(pf, ROUNDS), vrf = median(rf, ROUNDS);

  printf("bench_http: GET, servers in child processes (%d rounds; medians, and the median "
         "of each round's paired ratio)\n",
         ROUNDS);
  printf("%-40s %11s %11s %7s %7s\n", "", "plain curl", "resil", "ratio", "target");
  printf("%-40s %11.0f %11.0f %7.3f %7s\n", "blocking, keep-alive: requests/s", vpb, vrb,
         median(xb, ROUNDS), ">=0.97");
  printf("%-40s %11.2f %11.2f %7.3f\n", "  client CPU us/request", vpbc, vrbc,
         median(xbc, ROUNDS));
  printf("%-40s %11.0f %11.0f %7.3f %7s\n", "multi, 64 in flight: requests/s", vpm, vrm,
         median(xm, ROUNDS), ">=0.95");
  printf("%-40s %11.2f %11.2f %7.3f\n", "  client CPU us/request", vpmc, vrmc,
         median(xmc, ROUNDS));
  printf("%-40s %11.0f %11.0f %7.3f\n", "blocking, fault server (conn. close)", vpf, vrf,
         median(xf, ROUNDS));
  if (pmem > 0 && f > 0) {
    printf("%-40s %11.0f %11.0f %7.3f\n", "heap bytes per request in flight", pmem, f,
           pmem / f);
    printf("%-40s %11s %11.0f\n", "heap bytes per request queued", "-", q);
    printf("%-40s %11s %11.0f\n", "heap bytes per request awaiting retry", "-", w);
  } else {
    printf("heap bytes: not measured (mallinfo2 reports nothing, e.g. under ASan)\n");
  }
  printf("(ratios: resil / plain for rates, plain / resil for CPU and memory: 1 = no cost)\n");
  if (g_errors) printf("WARNING: %d requests failed\n", g_errors);

  resil_http_client_free(g_client);
  curl_share_cleanup(g_share);
  close(g_stop_pipe);
  waitpid(servers[0], NULL, 0);
  waitpid(servers[1], NULL, 0);
  return g_errors ? 1 : 0;
}
