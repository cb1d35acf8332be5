/* A loopback TCP proxy for the store tests: forwards every byte between
 * its clients and one server, and on request swallows the next answer the
 * server sends and cuts that connection, so a test can lose a reply after
 * the server has acted on the request (what a network failure at the wrong
 * moment does). Listens on 127.0.0.1 only. */
#ifndef RESIL_TCP_PROXY_H
#define RESIL_TCP_PROXY_H

typedef struct tcp_proxy tcp_proxy;

/* Proxy to 127.0.0.1:server_port; 0 on success. */
int tcp_proxy_start(tcp_proxy **out, int server_port);
int tcp_proxy_port(const tcp_proxy *p);
/* The next n answers the server sends (on any connection) are dropped, each
 * time closing that connection (both sides). */
void tcp_proxy_drop_replies(tcp_proxy *p, int n);
/* How many replies were dropped so far. */
int tcp_proxy_dropped(tcp_proxy *p);
void tcp_proxy_stop(tcp_proxy *p); /* NULL-safe */

#endif
