/* Logging: silent unless the client has a log callback; one formatted line
 * per call of the callback, no trailing newline. Lines never contain a
 * URL's userinfo, query or fragment (they often carry credentials). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "http/internal.h"

void resil__http_log(const resil_http_client *c, resil_log_level lv, const char *fmt, ...) {
  if (!resil__http_logs(c, lv)) return;
  char buf[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  c->cfg.log(c->cfg.log_ud, lv, buf);
}

size_t resil__http_log_target(const char *method, const char *url, char *buf, size_t len) {
  const char *sep = strstr(url, "://");
  const char *auth = sep ? sep + 3 : url;
  size_t auth_len = strcspn(auth, "/?#");
  const char *at = NULL;
  for (size_t i = 0; i < auth_len; i++)
    if (auth[i] == '@') at = auth + i;
  const char *host = at ? at + 1 : auth;
  size_t host_len = auth_len - (size_t)(host - auth);
  const char *path = auth + auth_len;
  size_t path_len = strcspn(path, "?#");
  int n = snprintf(buf, len, "%s %.*s%.*s%.*s", method, sep ? (int)(sep + 3 - url) : 0, url,
                   (int)host_len, host, (int)path_len, path);
  return n < 0 ? 0 : (size_t)n;
}

const char *resil__http_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}
