/* Several `resil serve --idempotent` processes sharing one store, for the
 * stores meant to be shared between hosts: Redis and PostgreSQL (real
 * servers, started by tests/services.sh; RESIL_TEST_REDIS_URL and
 * RESIL_TEST_PG_URL name them).
 *
 * Per backend, with a key prefix (Redis) or schema (PostgreSQL) of this run
 * only:
 *   spread  3 servers; 12 client threads each send, for 20 keys in their
 *           own shuffled order, the same POST /orders (same key, same body)
 *           to all 3 servers in a shuffled order, half the time to the 3 at
 *           once; half the keys carry ?delay=100ms so claims are held while
 *           others arrive (409, retried after Retry-After, capped). Every
 *           request ends in a 201, exactly one of them fresh per key, all
 *           with that order's body; the servers' counts add up to 20.
 *   kill    server A holds key X (?delay=1500ms) and is SIGKILLed; B
 *           answers 409 while A's 2s lease lasts; after it C creates the
 *           order, once; B then replays it.
 * Afterwards the store is purged with a clock a year ahead (everything has
 * expired by then): that removes what the run wrote and counts it.
 *
 * Without a URL (or when the services script found no server) a backend's
 * tests are skipped; with neither, exit status 77 (skipped for CTest). */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resil/resil.h"
#include "serve_harness.h"

#define N_SERVERS 3
#define N_CLIENTS 12
#define N_KEYS 20
#define LEASE "2s"
#define LEASE_S 2.0
#define MAX_ATTEMPTS 100       /* per request: 409s, bounded */
#define RETRY_CAP_S 0.25       /* Retry-After says whole seconds; a held key here
                                  is free again after ~0.1s */
#define KILL_DELAY "1500ms"    /* A's handler: long enough to be killed in it,
                                  short enough for C to finish within its lease */

typedef struct backend {
  const char *name;    /* "redis", "postgres" */
  const char *env;     /* RESIL_TEST_REDIS_URL, ... */
  const char *skipfile; /* in RESIL_TEST_SERVICES_DIR */
  int built;
  const char *base;    /* the URL from the environment; NULL: skip */
} backend;

static backend backends[] = {
    {"redis", "RESIL_TEST_REDIS_URL", "redis.skip",
#ifdef RESIL_HAVE_REDIS
     1,
#else
     0,
#endif
     NULL},
    {"postgres", "RESIL_TEST_PG_URL", "pg.skip",
#ifdef RESIL_HAVE_PG
     1,
#else
     0,
#endif
     NULL},
};

/* Per test: the store URL of this run, and the servers (pid 0: none). */
typedef struct fleet {
  const backend *b;
  char url[600];
  server srv[N_SERVERS];
  int running[N_SERVERS];
} fleet;

/* ---- setup: a store of this run's own ---------------------------------------------- */

static uint64_t random_id(void) {
  resil_rng rng;
  resil_rng_seed_os(&rng);
  return resil_rng_next(&rng);
}

static int setup(void **state, backend *b) {
  fleet *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  f->b = b;
  *state = f;
  if (b->base == NULL) return 0; /* the test skips */
  uint64_t id = random_id();
  if (strcmp(b->name, "redis") == 0)
    snprintf(f->url, sizeof f->url, "%s?prefix=fleet-%016llx:", b->base, (unsigned long long)id);
  else
    snprintf(f->url, sizeof f->url, "%s?schema=fleet_%016llx", b->base, (unsigned long long)id);
  return 0;
}

static int setup_redis(void **state) { return setup(state, &backends[0]); }
static int setup_pg(void **state) { return setup(state, &backends[1]); }

/* A year from now: every lease and record of the run has expired. */
static resil_ns next_year(void *ud) {
  (void)ud;
  resil_wallclock wc = resil_wallclock_system();
  return wc.now(wc.ud) + 365 * 24 * RESIL_HOUR;
}

/* Delete everything the run stored; how many records that was (-1: the
 * store failed, said on stderr). */
static long long purge_all(const char *url) {
  resil_store_options o;
  resil_store_options_init(&o);
  o.clock.now = next_year;
  o.clock.ud = NULL;
  resil_store *s = NULL;
  char err[256] = "";
  if (resil_store_open(&s, url, &o, err, sizeof err) != RESIL_OK) {
    fprintf(stderr, "cannot open %s to clean up: %s\n", url, err);
    return -1;
  }
  uint64_t n = 0;
  resil_err e = resil_store_purge(s, &n);
  if (e != RESIL_OK) fprintf(stderr, "cannot purge %s: %s\n", url, resil_store_errmsg(s));
  resil_store_close(s);
  return e == RESIL_OK ? (long long)n : -1;
}

/* Whatever a failed test left running is killed; the store is purged. */
static int teardown(void **state) {
  fleet *f = *state;
  for (int i = 0; i < N_SERVERS; i++) {
    if (!f->running[i]) continue;
    kill(f->srv[i].p.pid, SIGKILL);
    cli_wait_all(&f->srv[i].p, 1);
    capture_free(&f->srv[i].p.cap);
  }
  if (f->url[0]) purge_all(f->url);
  free(f);
  return 0;
}

/* Start the servers (or skip the test when the backend is not there). */
static void fleet_start(fleet *f) {
  if (f->b->base == NULL) {
    print_message("%s: not available, skipped\n", f->b->name);
    skip();
  }
  for (int i = 0; i < N_SERVERS; i++) {
    SERVER_START(&f->srv[i], "--store", f->url, "--idem-lease", LEASE);
    f->running[i] = 1;
  }
  print_message("%s: %d servers on ports %u %u %u\n", f->b->name, N_SERVERS, f->srv[0].port,
                f->srv[1].port, f->srv[2].port);
}

static void fleet_stop(fleet *f, int i) {
  f->running[i] = 0;
  server_stop(&f->srv[i]);
}

static void fleet_kill(fleet *f, int i) {
  f->running[i] = 0;
  server_kill(&f->srv[i]);
}

/* ---- the clients (threads: no cmocka calls, results checked afterwards) -------------- */

typedef struct outcome {
  int status;   /* the last answer: 201 when it worked */
  int replayed;
  char body[512];
} outcome;

typedef struct client {
  int index;
  const uint16_t *ports;
  pthread_barrier_t *gate;
  uint64_t seed;
  outcome got[N_KEYS][N_SERVERS];
  int conflicts;  /* 409s seen */
  char error[512]; /* the first thing that went wrong, "" if nothing */
} client;

static void key_request(int k, char *target, size_t tlen, char *headers, size_t hlen,
                        char *body, size_t blen) {
  snprintf(target, tlen, "%s", k % 2 == 0 ? "/orders?delay=100ms" : "/orders");
  snprintf(headers, hlen, "Idempotency-Key: fleet-key-%02d\r\nContent-Type: application/json\r\n",
           k);
  snprintf(body, blen, "{\"item\":\"thing-%02d\"}", k);
}

static void shuffle(resil_rng *rng, int *a, int n) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)resil_rng_below(rng, (uint64_t)i + 1), t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

static void nap(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* Record r as the answer from server `srv` for key k. Returns 1 when it is
 * a 409 to retry after the returned *wait seconds, 0 when it is final. */
static int take(client *c, int k, int srv, const resp *r, double *wait) {
  outcome *o = &c->got[k][srv];
  o->status = r->status;
  o->replayed = replayed(r);
  if (snprintf(o->body, sizeof o->body, "%s", r->body) >= (int)sizeof o->body && !c->error[0])
    snprintf(c->error, sizeof c->error, "key %d, server %d: body too long:\n%.300s", k, srv,
             r->body);
  if (r->status == 409) {
    char ra[16];
    c->conflicts++;
    if (header(r, "Retry-After", ra, sizeof ra) == NULL || atoi(ra) < 1 ||
        atoi(ra) > (int)LEASE_S) {
      if (!c->error[0])
        snprintf(c->error, sizeof c->error, "key %d, server %d: 409 without a Retry-After "
                 "from 1 to %d:\n%.300s", k, srv, (int)LEASE_S, r->raw);
      return 0;
    }
    double after = atoi(ra);
    *wait = after < RETRY_CAP_S ? after : RETRY_CAP_S;
    return 1;
  }
  if (r->status != 201 && !c->error[0])
    snprintf(c->error, sizeof c->error, "key %d, server %d: got %d:\n%.300s", k, srv, r->status,
             r->raw);
  return 0;
}

/* Send key k to server srv until it is no longer 409 (bounded). */
static void until_done(client *c, int k, int srv, double wait) {
  char target[64], headers[128], body[64];
  key_request(k, target, sizeof target, headers, sizeof headers, body, sizeof body);
  for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    nap(wait);
    resp r;
    http(c->ports[srv], "POST", target, headers, body, &r);
    if (!take(c, k, srv, &r, &wait)) return;
  }
  if (!c->error[0])
    snprintf(c->error, sizeof c->error, "key %d, server %d: still 409 after %d attempts", k, srv,
             MAX_ATTEMPTS);
}

static void *client_main(void *arg) {
  client *c = arg;
  resil_rng rng;
  resil_rng_seed(&rng, c->seed);
  int keys[N_KEYS], order[N_SERVERS];
  for (int k = 0; k < N_KEYS; k++) keys[k] = k;
  shuffle(&rng, keys, N_KEYS);
  pthread_barrier_wait(c->gate);

  for (int i = 0; i < N_KEYS && !c->error[0]; i++) {
    int k = keys[i];
    char target[64], headers[128], body[64];
    key_request(k, target, sizeof target, headers, sizeof headers, body, sizeof body);
    for (int s = 0; s < N_SERVERS; s++) order[s] = s;
    shuffle(&rng, order, N_SERVERS);
    if (resil_rng_below(&rng, 2) == 0) {
      /* One after the other. */
      for (int s = 0; s < N_SERVERS; s++) until_done(c, k, order[s], 0);
    } else {
      /* To all three at once, then the 409s again, one after the other. */
      int fd[N_SERVERS];
      double wait[N_SERVERS];
      int again[N_SERVERS];
      for (int s = 0; s < N_SERVERS; s++)
        fd[s] = http_send(c->ports[order[s]], "POST", target, headers, body);
      for (int s = 0; s < N_SERVERS; s++) {
        resp r;
        if (fd[s] >= 0) {
          http_recv(fd[s], &r);
        } else {
          memset(&r, 0, sizeof r);
          r.status = -1;
          r.body = "";
        }
        again[s] = take(c, k, order[s], &r, &wait[s]);
      }
      for (int s = 0; s < N_SERVERS; s++)
        if (again[s]) until_done(c, k, order[s], wait[s]);
    }
  }
  return NULL;
}

/* ---- the tests ---------------------------------------------------------------------------- */

static void test_spread_duplicates(void **state) {
  fleet *f = *state;
  fleet_start(f);
  uint16_t ports[N_SERVERS];
  for (int i = 0; i < N_SERVERS; i++) ports[i] = f->srv[i].port;

  static client clients[N_CLIENTS]; /* large: not on the stack */
  memset(clients, 0, sizeof clients);
  pthread_t threads[N_CLIENTS];
  pthread_barrier_t gate;
  assert_int_equal(pthread_barrier_init(&gate, NULL, N_CLIENTS), 0);
  uint64_t seed = random_id();
  print_message("%s: client seed %llu\n", f->b->name, (unsigned long long)seed);
  double t0 = now_s();
  for (int i = 0; i < N_CLIENTS; i++) {
    clients[i].index = i;
    clients[i].ports = ports;
    clients[i].gate = &gate;
    clients[i].seed = seed + (uint64_t)i;
    assert_int_equal(pthread_create(&threads[i], NULL, client_main, &clients[i]), 0);
  }
  for (int i = 0; i < N_CLIENTS; i++) pthread_join(threads[i], NULL);
  pthread_barrier_destroy(&gate);
  double took = now_s() - t0;

  int conflicts = 0;
  for (int i = 0; i < N_CLIENTS; i++) {
    if (clients[i].error[0]) fail_msg("client %d: %s", i, clients[i].error);
    conflicts += clients[i].conflicts;
  }
  /* Per key: every request ended in a 201, exactly one fresh, all with the
   * body of that one order. */
  for (int k = 0; k < N_KEYS; k++) {
    const char *order = NULL;
    int fresh = 0;
    char want[64];
    snprintf(want, sizeof want, "\"key\":\"fleet-key-%02d\"", k);
    for (int i = 0; i < N_CLIENTS; i++) {
      for (int s = 0; s < N_SERVERS; s++) {
        const outcome *o = &clients[i].got[k][s];
        if (o->status != 201)
          fail_msg("key %d: client %d, server %d ended with %d: %s", k, i, s, o->status, o->body);
        if (!o->replayed) fresh++;
        if (order == NULL) order = o->body;
        if (strcmp(o->body, order) != 0)
          fail_msg("key %d: two orders:\n  %s\n  %s", k, order, o->body);
      }
    }
    if (fresh != 1) fail_msg("key %d: %d fresh 201s (orders created), not 1", k, fresh);
    if (strncmp(order, "{\"id\":", 6) != 0 || strstr(order, want) == NULL)
      fail_msg("key %d: not its order: %s", k, order);
  }

  long counts[N_SERVERS], total = 0;
  for (int i = 0; i < N_SERVERS; i++) total += counts[i] = orders_count(&f->srv[i]);
  print_message("%s: %d requests in %.2fs, %d answers were 409 (then retried); "
                "orders per server %ld %ld %ld\n",
                f->b->name, N_CLIENTS * N_KEYS * N_SERVERS, took, conflicts, counts[0], counts[1],
                counts[2]);
  assert_int_equal(total, N_KEYS);
  /* The claims did overlap (every other key is held 100ms). */
  assert_true(conflicts > 0);
  for (int i = 0; i < N_SERVERS; i++) fleet_stop(f, i);
  /* The store holds one record per key, nothing else. */
  assert_int_equal(purge_all(f->url), N_KEYS);
}

static void test_killed_holder(void **state) {
  fleet *f = *state;
  fleet_start(f);
  server *a = &f->srv[0], *b = &f->srv[1], *c = &f->srv[2];
  const char *target = "/orders?delay=" KILL_DELAY;
  const char *hdrs = "Idempotency-Key: fleet-killed\r\n";

  /* A claims the key (its second copy of the request gets 409) and dies in
   * the handler, before creating the order. */
  double t_send = now_s(), t_409;
  resp r;
  int holder = claim_and_confirm(a, target, hdrs, &t_409, &r);
  fleet_kill(f, 0);
  double t_kill = now_s();
  http_recv(holder, &r);
  if (r.status != 0) fail_msg("the killed server answered (killed %.2fs after sending):\n%s",
                              t_kill - t_send, r.raw);

  /* Its claim outlives it until the lease ends: B says 409, try later. */
  post(b, target, hdrs, "payload", &r);
  if (now_s() < t_send + LEASE_S) {
    expect_problem(&r, 409, PROBLEM_IN_PROGRESS);
    char ra[16];
    assert_non_null(header(&r, "Retry-After", ra, sizeof ra));
    assert_true(atoi(ra) >= 1 && atoi(ra) <= (int)LEASE_S);
  } else {
    print_message("machine too slow to see the lease in force; skipping the 409 check\n");
  }
  assert_int_equal(orders_count(b), 0);
  assert_int_equal(orders_count(c), 0);

  /* After the lease (by t_409 + lease at the latest, plus a margin) C runs
   * the request, once; B replays C's answer. */
  sleep_until(t_409 + LEASE_S + 0.5);
  resp created;
  post(c, target, hdrs, "payload", &created);
  expect_created(&created, 1, "fleet-killed");
  post(b, target, hdrs, "payload", &r);
  expect_replay_of(&r, &created);
  post(c, target, hdrs, "payload", &r);
  expect_replay_of(&r, &created);
  assert_int_equal(orders_count(b) + orders_count(c), 1);
  assert_int_equal(orders_count(c), 1);
  print_message("%s: A killed %.2fs after sending; C created the order %.2fs after that\n",
                f->b->name, t_kill - t_send, now_s() - t_kill);
  fleet_stop(f, 1);
  fleet_stop(f, 2);
  assert_int_equal(purge_all(f->url), 1);
}

/* ---- main ------------------------------------------------------------------------------------ */

/* b->base set when b's server is there; otherwise why not, on stdout. */
static void find(backend *b) {
  const char *dir = getenv("RESIL_TEST_SERVICES_DIR");
  const char *url = getenv(b->env);
  if (!b->built) {
    printf("%s: SKIPPED: this build has no %s store\n", b->name, b->name);
    return;
  }
  if (dir != NULL && *dir) {
    char path[1024], why[512] = "";
    snprintf(path, sizeof path, "%s/%s", dir, b->skipfile);
    FILE *fp = fopen(path, "r");
    if (fp != NULL) {
      if (fgets(why, sizeof why, fp) == NULL) why[0] = '\0';
      fclose(fp);
      printf("%s: SKIPPED: no server for these tests: %s", b->name, why);
      return;
    }
  }
  if (url == NULL || *url == '\0') {
    printf("%s: SKIPPED: %s is not set (eval \"$(tests/services.sh env DIR)\" after "
           "tests/services.sh start DIR)\n", b->name, b->env);
    return;
  }
  if (strchr(url, '?') != NULL) {
    printf("%s must have no ?parameters (the test adds its own), not '%s'\n", b->env, url);
    exit(1);
  }
  b->base = url;
  printf("%s: %s\n", b->name, url);
}

int main(void) {
  find(&backends[0]);
  find(&backends[1]);
  if (backends[0].base == NULL && backends[1].base == NULL) return 77;
  const struct CMUnitTest tests[] = {
      {"redis: spread duplicates", test_spread_duplicates, setup_redis, teardown, NULL},
      {"redis: killed holder", test_killed_holder, setup_redis, teardown, NULL},
      {"postgres: spread duplicates", test_spread_duplicates, setup_pg, teardown, NULL},
      {"postgres: killed holder", test_killed_holder, setup_pg, teardown, NULL},
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
