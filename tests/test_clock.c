#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>

#include "resil/time.h"
#include "test_util.h"

static void test_system_clock_is_monotonic(void **state) {
  (void)state;
  resil_clock c = resil_clock_system();
  resil_ns a = c.now(c.ud), b = c.now(c.ud);
  assert_true(b >= a);
  resil_wallclock w = resil_wallclock_system();
  /* After 2020-01-01 and before 2200: a sanity check on units (ns). */
  resil_ns wall = w.now(w.ud);
  assert_true(wall > (resil_ns)1577836800 * RESIL_SEC);
  assert_true(wall < (resil_ns)7258118400 * RESIL_SEC);
  /* Zero and negative sleeps return at once. */
  assert_int_equal(c.sleep(c.ud, 0, NULL), RESIL_OK);
  assert_int_equal(c.sleep(c.ud, -5, NULL), RESIL_OK);
  assert_int_equal(c.sleep(c.ud, RESIL_MSEC, NULL), RESIL_OK);
  assert_true(c.now(c.ud) - b >= RESIL_MSEC);
}

static void test_fakeclock_sleeps_an_hour_instantly(void **state) {
  (void)state;
  resil_fakeclock *fc;
  assert_int_equal(resil_fakeclock_new(&fc, 1000, 5 * RESIL_SEC), RESIL_OK);
  resil_clock c = resil_fakeclock_clock(fc);
  resil_wallclock w = resil_fakeclock_wallclock(fc);
  assert_int_equal(c.now(c.ud), 1000);
  assert_int_equal(w.now(w.ud), 5 * RESIL_SEC);
  assert_int_equal(c.sleep(c.ud, RESIL_HOUR, NULL), RESIL_OK);
  assert_int_equal(c.now(c.ud), 1000 + RESIL_HOUR);
  assert_int_equal(w.now(w.ud), 5 * RESIL_SEC + RESIL_HOUR);
  resil_fakeclock_advance(fc, RESIL_SEC);
  assert_int_equal(resil_fakeclock_now(fc), 1000 + RESIL_HOUR + RESIL_SEC);
  assert_int_equal(resil_fakeclock_slept(fc), RESIL_HOUR);
  assert_int_equal(resil_fakeclock_sleeps(fc), 1);
  /* Saturates instead of wrapping. */
  resil_fakeclock_advance(fc, RESIL_NS_MAX);
  assert_int_equal(resil_fakeclock_now(fc), RESIL_NS_MAX);
  resil_fakeclock_free(fc);
  resil_fakeclock_free(NULL);
}

static void test_fakeclock_honours_cancel(void **state) {
  (void)state;
  resil_fakeclock *fc;
  resil_cancel *cancel;
  assert_int_equal(resil_fakeclock_new(&fc, 0, 0), RESIL_OK);
  assert_int_equal(resil_cancel_new(&cancel), RESIL_OK);
  resil_clock c = resil_fakeclock_clock(fc);
  resil_cancel_fire(cancel);
  assert_int_equal(c.sleep(c.ud, RESIL_SEC, cancel), RESIL_ECANCELED);
  assert_int_equal(resil_fakeclock_now(fc), 0);
  resil_cancel_free(cancel);
  resil_fakeclock_free(fc);
}

static void test_cancel_basics(void **state) {
  (void)state;
  resil_cancel *c;
  assert_int_equal(resil_cancel_new(&c), RESIL_OK);
  assert_false(resil_cancel_fired(c));
  assert_int_equal(resil_cancel_wait(c, RESIL_MSEC), RESIL_OK);
  resil_cancel_fire(c);
  resil_cancel_fire(c); /* idempotent */
  assert_true(resil_cancel_fired(c));
  assert_int_equal(resil_cancel_wait(c, RESIL_HOUR), RESIL_ECANCELED);
  assert_int_equal(resil_cancel_wait(c, 0), RESIL_ECANCELED);
  resil_cancel_reset(c);
  assert_false(resil_cancel_fired(c));
  assert_int_equal(resil_cancel_wait(NULL, RESIL_USEC), RESIL_OK);
  assert_false(resil_cancel_fired(NULL));
  resil_cancel_fire(NULL);
  resil_cancel_free(c);
  resil_cancel_free(NULL);
  assert_int_equal(resil_cancel_new(NULL), RESIL_EINVAL);
}

struct firer {
  resil_cancel *c;
  resil_ns delay;
};

static void *fire_later(void *arg) {
  struct firer *f = arg;
  struct timespec ts = {0, (long)f->delay};
  nanosleep(&ts, NULL);
  resil_cancel_fire(f->c);
  return NULL;
}

/* A sleep of an hour ends as soon as another thread fires the token. Whether
 * it takes 20 ms or 200 ms does not matter; that it is not an hour does (the
 * test's CTest timeout would catch a hang). */
static void test_cancel_wakes_sleeper(void **state) {
  (void)state;
  resil_cancel *c;
  assert_int_equal(resil_cancel_new(&c), RESIL_OK);
  struct firer f = {c, 20 * RESIL_MSEC};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fire_later, &f), 0);
  resil_clock clk = resil_clock_system();
  assert_int_equal(clk.sleep(clk.ud, RESIL_HOUR, c), RESIL_ECANCELED);
  pthread_join(t, NULL);
  resil_cancel_free(c);
}

/* Many sleepers, one fire: all wake. */
static void *sleeper(void *arg) {
  resil_cancel *c = arg;
  return (void *)(intptr_t)resil_cancel_wait(c, RESIL_HOUR);
}

static void test_cancel_wakes_all(void **state) {
  (void)state;
  resil_cancel *c;
  assert_int_equal(resil_cancel_new(&c), RESIL_OK);
  pthread_t t[8];
  for (int i = 0; i < 8; i++) assert_int_equal(pthread_create(&t[i], NULL, sleeper, c), 0);
  struct timespec ts = {0, 10 * 1000 * 1000};
  nanosleep(&ts, NULL);
  resil_cancel_fire(c);
  for (int i = 0; i < 8; i++) {
    void *rc;
    pthread_join(t[i], &rc);
    assert_int_equal((intptr_t)rc, RESIL_ECANCELED);
  }
  resil_cancel_free(c);
}

/* Several threads sleeping on one fake clock: totals add up exactly. */
static void *fake_sleeper(void *arg) {
  resil_clock *c = arg;
  for (int i = 0; i < 10000; i++) c->sleep(c->ud, 3, NULL);
  return NULL;
}

static void test_fakeclock_threads(void **state) {
  (void)state;
  resil_fakeclock *fc;
  assert_int_equal(resil_fakeclock_new(&fc, 0, 0), RESIL_OK);
  resil_clock c = resil_fakeclock_clock(fc);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, fake_sleeper, &c), 0);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  assert_int_equal(resil_fakeclock_now(fc), 4 * 10000 * 3);
  assert_int_equal(resil_fakeclock_sleeps(fc), 40000);
  resil_fakeclock_free(fc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_system_clock_is_monotonic),
      cmocka_unit_test(test_fakeclock_sleeps_an_hour_instantly),
      cmocka_unit_test(test_fakeclock_honours_cancel),
      cmocka_unit_test(test_cancel_basics),
      cmocka_unit_test(test_cancel_wakes_sleeper),
      cmocka_unit_test(test_cancel_wakes_all),
      cmocka_unit_test(test_fakeclock_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
