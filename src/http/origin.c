/* Origins for per-host breakers: "scheme://host:port".
 *
 * Two URLs share a breaker when they reach the same server: the scheme and
 * host are lowercased, userinfo is dropped, and the default port is written
 * out, so "HTTP://Example.COM/a" and "http://user@example.com:80/b" both map
 * to "http://example.com:80". IPv6 literals keep their brackets. Parsing is
 * done here, without allocating, instead of with curl_url(). */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "http/internal.h"

static int is_alpha(int ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }
static int is_digit(int ch) { return ch >= '0' && ch <= '9'; }

size_t resil__http_origin(const char *url, char out[RESIL__ORIGIN_MAX]) {
  if (url == NULL) return 0;
  while (*url == ' ' || *url == '\t') url++;
  /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
  const char *p = url;
  if (!is_alpha((unsigned char)*p)) return 0;
  while (is_alpha((unsigned char)*p) || is_digit((unsigned char)*p) || *p == '+' || *p == '-' ||
         *p == '.')
    p++;
  if (p[0] != ':' || p[1] != '/' || p[2] != '/') return 0;
  size_t scheme_len = (size_t)(p - url);
  const char *auth = p + 3;
  size_t auth_len = strcspn(auth, "/?#");
  /* userinfo ends at the last '@' of the authority */
  for (size_t i = auth_len; i > 0; i--) {
    if (auth[i - 1] == '@') {
      auth += i;
      auth_len -= i;
      break;
    }
  }
  const char *host = auth, *port = NULL;
  size_t host_len, port_len = 0;
  if (auth_len > 0 && auth[0] == '[') {
    const char *close = memchr(auth, ']', auth_len);
    if (close == NULL) return 0;
    host_len = (size_t)(close - auth) + 1;
    if (host_len < auth_len) {
      if (auth[host_len] != ':') return 0;
      port = auth + host_len + 1;
      port_len = auth_len - host_len - 1;
    }
  } else {
    const char *colon = memchr(auth, ':', auth_len);
    host_len = colon ? (size_t)(colon - auth) : auth_len;
    if (colon) {
      port = colon + 1;
      port_len = auth_len - host_len - 1;
    }
  }
  if (host_len == 0) return 0;
  unsigned long pnum = 0;
  if (port_len > 0) {
    if (port_len > 5) return 0;
    for (size_t i = 0; i < port_len; i++) {
      if (!is_digit((unsigned char)port[i])) return 0;
      pnum = pnum * 10 + (unsigned long)(port[i] - '0');
    }
    if (pnum > 65535) return 0;
  } else {
    if (scheme_len == 4 && resil__strncaseeq(url, "http", 4)) pnum = 80;
    else if (scheme_len == 5 && resil__strncaseeq(url, "https", 5)) pnum = 443;
    else return 0; /* no default port known */
  }
  /* scheme + "://" + host + ":" + 5 digits + NUL */
  if (scheme_len + 3 + host_len + 1 + 5 + 1 > RESIL__ORIGIN_MAX) return 0;
  size_t o = 0;
  for (size_t i = 0; i < scheme_len; i++)
    out[o++] = (char)resil__ascii_lower((unsigned char)url[i]);
  memcpy(out + o, "://", 3);
  o += 3;
  for (size_t i = 0; i < host_len; i++) out[o++] = (char)resil__ascii_lower((unsigned char)host[i]);
  out[o++] = ':';
  char digits[6];
  size_t nd = 0;
  do {
    digits[nd++] = (char)('0' + pnum % 10);
    pnum /= 10;
  } while (pnum);
  while (nd) out[o++] = digits[--nd];
  out[o] = '\0';
  return o;
}
