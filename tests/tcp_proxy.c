/* See tcp_proxy.h. One thread polls the listener and every connection pair
 * with a short timeout, so stopping never waits long. */
#define _GNU_SOURCE
#include "tcp_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PAIRS 32

struct tcp_proxy {
  int listener, port, server_port;
  int client[MAX_PAIRS], server[MAX_PAIRS]; /* -1: free */
  pthread_t thread;
  pthread_mutex_t mu; /* stop, armed, dropped */
  int stop, armed, dropped;
};

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void close_pair(tcp_proxy *x, int i) {
  close(x->client[i]);
  close(x->server[i]);
  x->client[i] = x->server[i] = -1;
}

static int connect_server(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void *pump(void *arg) {
  tcp_proxy *x = arg;
  char buf[65536];
  for (;;) {
    pthread_mutex_lock(&x->mu);
    int stop = x->stop;
    pthread_mutex_unlock(&x->mu);
    if (stop) break;
    struct pollfd fds[1 + 2 * MAX_PAIRS];
    int idx[1 + 2 * MAX_PAIRS]; /* pair*2 (+1 for the server side) */
    int n = 0;
    fds[n].fd = x->listener;
    fds[n].events = POLLIN;
    idx[n++] = -1;
    for (int i = 0; i < MAX_PAIRS; i++) {
      if (x->client[i] < 0) continue;
      fds[n].fd = x->client[i];
      fds[n].events = POLLIN;
      idx[n++] = 2 * i;
      fds[n].fd = x->server[i];
      fds[n].events = POLLIN;
      idx[n++] = 2 * i + 1;
    }
    if (poll(fds, (nfds_t)n, 50) <= 0) continue;
    for (int k = 0; k < n; k++) {
      if (fds[k].revents == 0) continue;
      if (idx[k] < 0) {
        int c = accept(x->listener, NULL, NULL);
        if (c < 0) continue;
        int s = connect_server(x->server_port);
        int slot = -1;
        for (int i = 0; i < MAX_PAIRS && slot < 0; i++)
          if (x->client[i] < 0) slot = i;
        if (s < 0 || slot < 0) {
          close(c);
          if (s >= 0) close(s);
          continue;
        }
        x->client[slot] = c;
        x->server[slot] = s;
        continue;
      }
      int i = idx[k] / 2, from_server = idx[k] % 2;
      if (x->client[i] < 0) continue; /* closed earlier in this pass */
      int from = from_server ? x->server[i] : x->client[i];
      int to = from_server ? x->client[i] : x->server[i];
      ssize_t r = recv(from, buf, sizeof buf, 0);
      if (r <= 0) {
        close_pair(x, i);
        continue;
      }
      if (from_server) {
        pthread_mutex_lock(&x->mu);
        int drop = x->armed > 0;
        if (drop) {
          x->armed--;
          x->dropped++;
        }
        pthread_mutex_unlock(&x->mu);
        if (drop) {
          close_pair(x, i);
          continue;
        }
      }
      if (write_all(to, buf, (size_t)r) != 0) close_pair(x, i);
    }
  }
  for (int i = 0; i < MAX_PAIRS; i++)
    if (x->client[i] >= 0) close_pair(x, i);
  return NULL;
}

int tcp_proxy_start(tcp_proxy **out, int server_port) {
  tcp_proxy *x = calloc(1, sizeof *x);
  if (x == NULL) return -1;
  for (int i = 0; i < MAX_PAIRS; i++) x->client[i] = x->server[i] = -1;
  x->server_port = server_port;
  x->listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  if (x->listener < 0 || bind(x->listener, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(x->listener, 16) != 0 || getsockname(x->listener, (struct sockaddr *)&a, &l) != 0) {
    if (x->listener >= 0) close(x->listener);
    free(x);
    return -1;
  }
  x->port = ntohs(a.sin_port);
  pthread_mutex_init(&x->mu, NULL);
  if (pthread_create(&x->thread, NULL, pump, x) != 0) {
    pthread_mutex_destroy(&x->mu);
    close(x->listener);
    free(x);
    return -1;
  }
  *out = x;
  return 0;
}

int tcp_proxy_port(const tcp_proxy *p) { return p->port; }

void tcp_proxy_drop_replies(tcp_proxy *p, int n) {
  pthread_mutex_lock(&p->mu);
  p->armed = n;
  pthread_mutex_unlock(&p->mu);
}

int tcp_proxy_dropped(tcp_proxy *p) {
  pthread_mutex_lock(&p->mu);
  int n = p->dropped;
  pthread_mutex_unlock(&p->mu);
  return n;
}

void tcp_proxy_stop(tcp_proxy *p) {
  if (p == NULL) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  close(p->listener);
  pthread_mutex_destroy(&p->mu);
  free(p);
}
