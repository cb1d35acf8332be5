/* `resil http`: turning a response into text. Reason phrases, short names
 * for libcurl's error codes, delays for the progress lines, and writing the
 * final response (its headers with -i, then its body).
 *
 * Public API only (resil/http.h): libcurl's error codes appear here as the
 * plain numbers that resil_http_response_curl_code() returns, so the CLI
 * never includes <curl/curl.h>. */
#ifndef RESIL_CLI_HTTP_OUTPUT_H
#define RESIL_CLI_HTTP_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

#include "resil/http.h"
#include "resil/time.h"

/* libcurl's error codes that `resil http` names or exits with. Their values
 * are part of libcurl's ABI (never renumbered), and they are the exit
 * statuses curl(1) uses for the same failures. */
enum {
  HTTP_CURLE_UNSUPPORTED_PROTOCOL = 1,
  HTTP_CURLE_FAILED_INIT = 2,
  HTTP_CURLE_URL_MALFORMAT = 3,
  HTTP_CURLE_COULDNT_RESOLVE_HOST = 6,
  HTTP_CURLE_COULDNT_CONNECT = 7,
  HTTP_CURLE_HTTP_RETURNED_ERROR = 22,
  HTTP_CURLE_WRITE_ERROR = 23,
  HTTP_CURLE_READ_ERROR = 26,
  HTTP_CURLE_OUT_OF_MEMORY = 27,
  HTTP_CURLE_OPERATION_TIMEDOUT = 28
};

/* The standard reason phrase of an HTTP status (RFC 9110 and the IANA
 * registry): "Service Unavailable"; "" for an unregistered status. */
const char *http_reason(int status);

/* What an attempt ended with, for messages:
 *   "503 Service Unavailable"                 a response
 *   "connection refused (curl 7)"             a transport error
 *   "200 OK, then response cut short (curl 18)" a response that broke off
 * curl_msg is libcurl's message for the error (resil_http_response_error),
 * used for codes without a short name of their own. With detail, the
 * transport error's parentheses also carry libcurl's message:
 *   "connection refused (curl 7: Failed to connect to ...)". */
const char *http_describe(int status, int curl_code, const char *curl_msg, int detail,
                          char *buf, size_t len);

/* A delay for the progress lines: whole milliseconds below a second
 * ("10ms", "612ms"), tenths of a second up to a minute ("1.0s", "2.0s",
 * "12.5s"), then resil_duration_format ("2m30s"). */
const char *http_fmt_delay(resil_ns d, char buf[32]);

/* Where a server-requested delay came from: "Retry-After", or on a 429
 * without it "RateLimit-Reset", "RateLimit" or "X-RateLimit-Reset" (the
 * order the client reads them in). */
const char *http_delay_source(const resil_http_response *r);

/* Write the response to out: with include_headers, first a status line
 * ("HTTP/1.1 200 OK", rebuilt from the status: the client does not keep the
 * protocol version or the server's reason phrase), the headers as received,
 * and a blank line, each ending in CRLF as on the wire; then the body.
 * Returns 0, or -1 with errno set when a write failed. Does not close out. */
int http_write_response(FILE *out, const resil_http_response *r, int include_headers);

#endif /* RESIL_CLI_HTTP_OUTPUT_H */
