/* See http_output.h. */
#define _POSIX_C_SOURCE 200809L

#include "http_output.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *http_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 511: return "Network Authentication Required";
    default: return "";
  }
}

/* A short name for a libcurl error, or NULL when libcurl's own message
 * should be used. */
static const char *curl_short(int code, const char *msg) {
  switch (code) {
    case 1: return "unsupported protocol";
    case 2: return "libcurl failed to start";
    case 3: return "malformed URL";
    case 5: return "could not resolve proxy";
    case 6: return "could not resolve host";
    case 7:
      /* libcurl's message names the cause only in some versions; when it
       * does not, refused is by far the most common one (a connect that
       * hangs ends as a timeout, 28, instead). */
      if (msg && strstr(msg, "No route to host")) return "no route to host";
      if (msg && strstr(msg, "unreachable")) return "network unreachable";
      if (msg && strstr(msg, "Permission denied")) return "connection not permitted";
      return "connection refused";
    case 8: return "unexpected reply from server";
    case 16: return "HTTP/2 error";
    case 18: return "response cut short";
    case 23: return "write error";
    case 26: return "read error";
    case 27: return "out of memory";
    case 28: return "timed out";
    case 35: return "TLS handshake failed";
    case 42: return "aborted";
    case 47: return "too many redirects";
    case 52: return "empty reply from server";
    case 55: return "send failed";
    case 56: return "receive failed";
    case 58: return "bad client certificate";
    case 60: return "server certificate not trusted";
    case 61: return "bad content encoding";
    case 63: return "response too large";
    case 65: return "cannot rewind the request body";
    case 77: return "bad CA certificate file";
    case 92: return "HTTP/2 stream error";
    default: return NULL;
  }
}

const char *http_describe(int status, int curl_code, const char *curl_msg, int detail,
                          char *buf, size_t len) {
  char st[96] = "";
  if (status > 0) {
    const char *reason = http_reason(status);
    snprintf(st, sizeof st, "%d%s%s", status, reason[0] ? " " : "", reason);
  }
  if (curl_code == 0) {
    snprintf(buf, len, "%s", status > 0 ? st : "no response");
    return buf;
  }
  const char *msg = curl_msg && curl_msg[0] ? curl_msg : NULL;
  const char *name = curl_short(curl_code, msg);
  const char *sep = status > 0 ? ", then " : "";
  if (name == NULL) {
    /* No short name: libcurl's message is the description. */
    snprintf(buf, len, "%s%s%s (curl %d)", st, sep, msg ? msg : "transfer failed", curl_code);
  } else if (detail && msg && strcasecmp(msg, name) != 0) {
    snprintf(buf, len, "%s%s%s (curl %d: %s)", st, sep, name, curl_code, msg);
  } else {
    snprintf(buf, len, "%s%s%s (curl %d)", st, sep, name, curl_code);
  }
  return buf;
}

const char *http_fmt_delay(resil_ns d, char buf[32]) {
  if (d >= RESIL_MSEC && d < RESIL_SEC) {
    resil_ns ms = (d + RESIL_MSEC / 2) / RESIL_MSEC;
    if (ms < 1000) {
      snprintf(buf, 32, "%lldms", (long long)ms);
      return buf;
    }
    d = RESIL_SEC; /* rounds up to a second: shown as "1.0s" below */
  }
  if (d >= RESIL_SEC) {
    resil_ns tenths = (d + RESIL_SEC / 20) / (RESIL_SEC / 10);
    if (tenths < 600) {
      snprintf(buf, 32, "%lld.%llds", (long long)(tenths / 10), (long long)(tenths % 10));
      return buf;
    }
  }
  resil_duration_format(d, buf, 32);
  return buf;
}

const char *http_delay_source(const resil_http_response *r) {
  if (resil_http_response_header(r, "Retry-After") != NULL) return "Retry-After";
  if (resil_http_response_status(r) == 429) {
    static const char *const names[] = {"RateLimit-Reset", "RateLimit", "X-RateLimit-Reset"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
      if (resil_http_response_header(r, names[i]) != NULL) return names[i];
  }
  return "Retry-After";
}

int http_write_response(FILE *out, const resil_http_response *r, int include_headers) {
  errno = 0;
  if (include_headers) {
    int status = resil_http_response_status(r);
    const char *reason = http_reason(status);
    fprintf(out, "HTTP/1.1 %d%s%s\r\n", status, reason[0] ? " " : "", reason);
    size_t n = resil_http_response_header_count(r);
    for (size_t i = 0; i < n; i++) {
      resil_http_header h = resil_http_response_header_at(r, i);
      fprintf(out, "%s: %s\r\n", h.name, h.value);
    }
    fputs("\r\n", out);
  }
  size_t len = 0;
  const char *body = resil_http_response_body(r, &len);
  if (len > 0) fwrite(body, 1, len, out);
  if (fflush(out) != 0 || ferror(out)) {
    if (errno == 0) errno = EIO;
    return -1;
  }
  return 0;
}
