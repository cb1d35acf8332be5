/* resil: the one leveled log callback every component takes.
 *
 * resil never writes to stdout or stderr on its own: components log through
 * a resil_log_fn set in their config, and are silent when it is NULL. */
#ifndef RESIL_LOG_H
#define RESIL_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum resil_log_level {
  RESIL_LOG_ERROR = 0,
  RESIL_LOG_WARN = 1,
  RESIL_LOG_INFO = 2, /* e.g. one line per attempt and per retry decision */
  RESIL_LOG_DEBUG = 3
} resil_log_level;

/* msg is one line without a trailing newline, valid during the call. May be
 * called from any thread the component runs on. */
typedef void (*resil_log_fn)(void *ud, resil_log_level level, const char *msg);

#ifdef __cplusplus
}
#endif
#endif /* RESIL_LOG_H */
