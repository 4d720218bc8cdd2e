/* http.h - a small HTTP/1.1 server on the node's libuv loop.
 *
 * One server serves the control API (a unix socket in the data directory), /metrics
 * and, later, the Hub gateway (TCP, --http). Requests are parsed by http_parser
 * (Debian's libhttp-parser, the parser Node.js used until v12); this file never
 * parses HTTP itself. Keep-alive and pipelined requests are answered in order.
 *
 * Limits: a request line plus headers over max_header_bytes gets 431, a body over
 * max_body 413, a malformed request 400; each closes the connection. A connection that
 * sends nothing for idle_ms (between requests, or while sending headers or a body) is
 * closed. Beyond max_conns, new connections are accepted and closed at once.
 *
 * Threads: everything runs on the loop thread. The host must ignore SIGPIPE: libuv
 *   writes with write(2), and a client that has gone would otherwise end the process.
 * Ownership: the server owns requests. A request is valid from the handler call until
 *   the handler has finished responding (http_respond, or http_end after
 *   http_start), which it must do exactly once, now or later from the loop, even if
 *   the client has gone (the calls then do nothing but free). Strings returned by the
 *   accessors live as long as the request.
 * Errors: 0 or a negative errno / UV_* code.
 */
#ifndef SHOAL_HTTP_H
#define SHOAL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_server;
struct http_req;

typedef void (*http_handler)(void *arg, struct http_req *req);

struct http_opts {
    http_handler handler;     /* called once per complete request (headers and body) */
    void *arg;
    size_t max_header_bytes;  /* 0: 16 KiB */
    size_t max_body;          /* 0: 1 MiB */
    unsigned max_conns;       /* 0: 256 */
    uint64_t idle_ms;         /* 0: 30 000 */
};

int http_server_new(uv_loop_t *loop, const struct http_opts *o, struct http_server **out);

/* Listens on a unix socket at path (mode 0600); a stale socket file left by a dead
 * process is replaced, a live one (something answers) gives -EADDRINUSE. */
int http_listen_unix(struct http_server *s, const char *path);
/* Listens on TCP host:port ("127.0.0.1", 7480; IPv6 addresses without brackets). */
int http_listen_tcp(struct http_server *s, const char *host, uint16_t port);
/* The port of the last TCP listener (the one the kernel chose for port 0); -ENOENT if
 * there is none. */
int http_tcp_port(const struct http_server *s);

/* Stops listening (removing the unix socket file), closes idle connections and each
 * busy one once its response is done, then calls done(arg) from the loop and frees
 * the server. Handlers still owing responses must still respond. */
void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg);

/* --- the request --------------------------------------------------------------- */

const char *http_req_method(const struct http_req *r);   /* "GET", "HEAD", ... */
/* The path, percent-decoded, without the query; NULL bytes in it give 400 before the
 * handler is called. */
const char *http_req_path(const struct http_req *r);
const char *http_req_query(const struct http_req *r);    /* raw, without '?'; "" if none */
/* A header's value (first occurrence; names compared case-insensitively); NULL if
 * absent. */
const char *http_req_header(const struct http_req *r, const char *name);
/* The body; a NUL byte follows it (not counted in len). */
const uint8_t *http_req_body(const struct http_req *r, size_t *len);
/* Whether the client is still connected. */
bool http_req_connected(const struct http_req *r);

/* --- responding ------------------------------------------------------------------ */

/* Adds a response header (before http_respond or http_start). Names and values with
 * CR or LF are refused (-EINVAL), as are the headers the server writes itself
 * (Content-Length, Transfer-Encoding, Connection, Date). */
int http_add_header(struct http_req *r, const char *name, const char *value);

/* The whole response at once: status, Content-Type (NULL: none), body (copied; not
 * sent for HEAD, though Content-Length is). 204 and 304 go without a body or a
 * Content-Length. Whatever the result, the request has ended, except for -EINVAL
 * (a status outside 200-999, CR or LF in content_type, or already answered). */
int http_respond(struct http_req *r, int status, const char *content_type, const void *body,
                 size_t len);

/* A streamed response: content_length < 0 sends the body chunked (to an HTTP/1.0
 * client, unframed and ended by the close). Unless it returns -EINVAL, the response
 * has started: end it with http_end even if this failed. */
int http_start(struct http_req *r, int status, const char *content_type,
               int64_t content_length);
/* Queues len bytes, borrowed until cb(arg, status) runs (status < 0: the client went
 * away or the write failed; further writes do nothing). At most one write is
 * outstanding at a time: call again from cb. Writing more than the announced
 * Content-Length gives -EINVAL; once the client has gone, -EPIPE. After an error
 * return cb is never called. For HEAD nothing is sent, but cb still runs. */
typedef void (*http_write_cb)(void *arg, int status);
int http_write(struct http_req *r, const void *data, size_t len, http_write_cb cb, void *arg);
/* Ends a streamed response (and the request). A body shorter than its
 * Content-Length closes the connection after it. */
int http_end(struct http_req *r);

/* --- helpers for handlers ---------------------------------------------------------- */

/* The value of query parameter `name` (percent-decoded, '+' as space) into out;
 * returns its length, -ENOENT if absent, -ENOBUFS if it does not fit, -EINVAL for a
 * bad escape or %00 in it. "a" alone gives "" for a. */
int http_query_param(const char *query, const char *name, char *out, size_t cap);

/* Counters for /metrics. */
struct http_stats {
    uint64_t connections;     /* accepted */
    uint64_t requests;
    uint64_t bad_requests;    /* 400, 413, 431 from the parser and the limits */
    uint64_t timeouts;        /* connections closed for idling */
    uint64_t refused;         /* over max_conns */
    unsigned open;            /* connections open now */
};
void http_server_stats(const struct http_server *s, struct http_stats *out);

#endif
