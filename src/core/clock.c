/* The system clocks: CLOCK_MONOTONIC for durations, CLOCK_REALTIME for HTTP
 * dates. Sleeping goes through resil_cancel_wait so it can be interrupted. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "resil/time.h"

static resil_ns ts_to_ns(const struct timespec *ts) {
  return (resil_ns)ts->tv_sec * RESIL_SEC + ts->tv_nsec;
}

static resil_ns mono_now(void *ud) {
  (void)ud;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts_to_ns(&ts);
}

static resil_err mono_sleep(void *ud, resil_ns d, resil_cancel *cancel) {
  (void)ud;
  return resil_cancel_wait(cancel, d);
}

static resil_ns wall_now(void *ud) {
  (void)ud;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts_to_ns(&ts);
}

resil_clock resil_clock_system(void) {
  resil_clock c = {mono_now, mono_sleep, NULL};
  return c;
}

resil_wallclock resil_wallclock_system(void) {
  resil_wallclock w = {wall_now, NULL};
  return w;
}
