/* http.c - the node's HTTP/1.1 server: listeners, connections, limits and responses.
 *
 * DESIGN. Each connection owns one fixed read buffer and one http_parser. Bytes are
 * parsed until a request is complete; on_message_complete then pauses the parser and,
 * once http_parser_execute has returned, the handler is called. While the handler
 * works the connection keeps reading into the free part of its buffer, so a client
 * that goes away is noticed at once, but parses nothing; it stops reading when the
 * buffer is full. When the response's last write has completed the request is freed
 * and parsing resumes with whatever is buffered. This answers pipelined requests in
 * order, bounds what a pipelining client can queue to one buffer, and makes a client
 * that does not read its responses stall only itself.
 *
 * A request may outlive its connection: when the client goes, the connection is
 * closed and the request detached (r->c = NULL); the handler's later calls only free
 * it. A request is freed once it has ended, has no write in flight and is not inside
 * a callback of ours; a connection only from its handles' close callbacks. The server
 * finishes closing when no handle and no request is left: it then closes its last
 * handle, the defer timer, whose close callback calls done.
 *
 * Errors found while parsing (400, 413, 431) are answered by the connection itself,
 * which then ends. A connection that ends after a response is shut down and drained
 * for a moment before it is closed ("lingering close"): closing a socket with unread
 * input resets it, and the client would see the reset instead of our response.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define HTTP_RBUF          (16 * 1024) /* read buffer per connection */
#define HTTP_BACKLOG       128
#define HTTP_LINGER_MS     1000        /* draining before the close, at most */
#define HTTP_HEAD_MIN      512         /* first allocation for a request's head */
#define HTTP_BODY_MIN      4096        /* first allocation for a body of unknown length */
#define HTTP_BODY_PRE      (64 * 1024) /* most allocated for a body before it arrives */
#define HTTP_RESP_HDRS_MAX (64 * 1024) /* headers a handler may add */

struct http_listener {
    union {
        uv_handle_t h;
        uv_stream_t st;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    struct http_server *s;
    char *path; /* the unix socket file we bound, removed on close */
    struct http_listener *next;
};

struct http_server {
    uv_loop_t *loop;
    struct http_opts o;
    struct http_listener *listeners;
    struct http_conn *conns;        /* every connection not yet freed */
    uv_timer_t defer;               /* runs deferred write callbacks; closed last */
    struct http_req *dhead, *dtail; /* requests waiting for it */
    unsigned handles;               /* listeners and connections not yet freed */
    unsigned reqs;                  /* requests given to the handler, not yet freed */
    bool closing, finishing;
    void (*done)(void *arg);
    void *done_arg;
    time_t date_sec;
    char date[96];
    struct http_stats st;
};

enum head_state { H_URL, H_FIELD, H_VALUE };

struct http_req {
    struct http_server *s;
    struct http_conn *c;    /* NULL once the client has gone */
    struct http_req *dnext; /* in the server's defer list */

    /* The request. head holds "url\0name\0value\0name\0value\0...", bounded by the
     * header limit; hdr points into it once the headers are complete. */
    const char *method;
    char *head;
    size_t head_len, head_cap, head_bytes;
    enum head_state hstate;
    unsigned nhdr;
    const char **hdr;
    char *path, *query;
    uint8_t *body; /* NUL-terminated for the handler's convenience */
    size_t body_len, body_cap;
    bool is_head, http10, keep_alive, dispatched;

    /* The response. */
    char *rh; /* "Name: value\r\n" lines added by the handler */
    size_t rh_len, rh_cap;
    int64_t clen;
    uint64_t sent;
    unsigned writes;   /* uv_write requests in flight */
    http_write_cb wcb; /* the handler's write in flight (or deferred) */
    void *warg;
    bool no_body, chunked, started, ended, in_cb, deferred;
};

struct http_conn {
    union {
        uv_handle_t h;
        uv_stream_t st;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    uv_timer_t timer; /* idle timeout, then the linger bound */
    uv_shutdown_t shut;
    http_parser p;
    struct http_server *s;
    struct http_conn *prev, *next;
    struct http_req *req; /* being received, or being answered */
    size_t roff, rlen;    /* unparsed input: rbuf[roff, rlen) */
    int err_status;       /* set by a parser callback before it fails */
    int nhandles;         /* not yet closed */
    bool counted;         /* in st.open: not a refused connection */
    bool busy;            /* parse nothing: a request or an error is being answered */
    bool drain;           /* input is dropped: the connection is ending */
    bool shut_started, reading, closing;
    char rbuf[HTTP_RBUF];
};

/* One uv_write: of a request's response, or of the connection's own (100, errors). */
struct http_wr {
    uv_write_t w;
    struct http_req *r;
    struct http_conn *c; /* for the connection's own writes */
    char *buf;           /* owned, freed when written */
    bool user;           /* completes the handler's http_write */
    bool last;           /* the connection ends once it is written */
    char frame[24];      /* a chunk's size line */
};

static void conn_close(struct http_conn *c);
static void conn_parse(struct http_conn *c);
static void conn_linger(struct http_conn *c);
static void server_maybe_done(struct http_server *s);

/* --- small helpers ------------------------------------------------------------- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes one byte of percent-encoded text at *p (before end) and advances *p; '+' is
 * a space when plus is set. Returns the byte, or -1 for a bad escape. */
static int pct_next(const char **p, const char *end, bool plus)
{
    const char *s = *p;
    int hi, lo;

    if (*s == '+' && plus) {
        *p = s + 1;
        return ' ';
    }
    if (*s != '%') {
        *p = s + 1;
        return (unsigned char)*s;
    }
    if (end - s < 3 || (hi = hexval(s[1])) < 0 || (lo = hexval(s[2])) < 0)
        return -1;
    *p = s + 3;
    return hi << 4 | lo;
}

static bool has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* 1xx, 204 and 304 responses never have a body (RFC 9112, 6.3). */
static bool status_bodiless(int status)
{
    return status < 200 || status == 204 || status == 304;
}

static const char *reason(int status)
{
    const char *s = http_status_str((enum http_status)status);

    return s[0] == '<' ? "Unknown" : s; /* "<unknown>" for codes it does not know */
}

/* The Date header's value, formatted once a second. Not strftime: it follows the
 * locale, and HTTP dates are English. */
static const char *server_date(struct http_server *s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (now != s->date_sec && gmtime_r(&now, &tm)) {
        snprintf(s->date, sizeof(s->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        s->date_sec = now;
    }
    return s->date;
}

/* --- requests ------------------------------------------------------------------- */

static void req_free(struct http_req *r)
{
    if (r->dispatched)
        r->s->reqs--;
    free(r->head);
    free(r->hdr);
    free(r->path);
    free(r->query);
    free(r->body);
    free(r->rh);
    free(r);
}

/* The client went away or a write failed: close the connection, detaching r. */
static void req_fail(struct http_req *r)
{
    if (r->c)
        conn_close(r->c);
}

static void conn_next(struct http_conn *c, bool keep);

/* Frees r once nothing refers to it any more, and moves its connection on. */
static void req_maybe_finish(struct http_req *r)
{
    struct http_server *s = r->s;
    struct http_conn *c = r->c;
    bool keep = r->keep_alive;

    if (!r->ended || r->writes || r->in_cb || r->deferred)
        return;
    req_free(r);
    if (c) {
        c->req = NULL;
        conn_next(c, keep);
    }
    server_maybe_done(s);
}

/* Calls the handler's write callback; r is not freed while it runs. */
static void req_callback(struct http_req *r, int status)
{
    http_write_cb cb = r->wcb;

    r->wcb = NULL;
    r->in_cb = true;
    cb(r->warg, status < 0 ? status : 0);
    r->in_cb = false;
}

static void on_req_write(uv_write_t *w, int status)
{
    struct http_wr *wr = container_of(w, struct http_wr, w);
    struct http_req *r = wr->r;
    bool user = wr->user;

    free(wr->buf);
    free(wr);
    r->writes--;
    if (status < 0)
        req_fail(r);
    if (user)
        req_callback(r, status);
    req_maybe_finish(r);
}

/* Queues bufs on r's connection; wr (and its buffer) is consumed either way. A failure
 * ends the connection. */
static int req_send(struct http_req *r, struct http_wr *wr, const uv_buf_t *bufs, unsigned n)
{
    int err;

    wr->r = r;
    err = uv_write(&wr->w, &r->c->u.st, bufs, n, on_req_write);
    if (err < 0) {
        free(wr->buf);
        free(wr);
        req_fail(r);
        return err;
    }
    r->writes++;
    return 0;
}

static void on_defer(uv_timer_t *t)
{
    struct http_server *s = t->data;
    struct http_req *r = s->dhead, *next;

    s->dhead = s->dtail = NULL; /* callbacks may defer again */
    for (; r; r = next) {
        next = r->dnext;
        r->deferred = false;
        req_callback(r, r->c ? 0 : UV_ECANCELED);
        req_maybe_finish(r);
    }
}

/* A write that sends nothing (HEAD, or empty) still completes from the loop, never
 * from inside http_write. */
static void req_defer(struct http_req *r)
{
    struct http_server *s = r->s;

    r->deferred = true;
    r->dnext = NULL;
    if (s->dtail)
        s->dtail->dnext = r;
    else
        s->dhead = r;
    s->dtail = r;
    uv_timer_start(&s->defer, on_defer, 0, 0);
}

/* Formats the status line and headers into a new buffer with room for extra more
 * bytes; *plen is the headers' length. */
static char *build_head(struct http_req *r, int status, const char *ctype, size_t extra,
                        size_t *plen)
{
    size_t cap = 320 + (ctype ? strlen(ctype) : 0) + r->rh_len, n;
    char *b = malloc(cap + extra);

    if (!b)
        return NULL;
    n = (size_t)snprintf(b, cap, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason(status),
                         server_date(r->s));
    if (ctype)
        n += (size_t)snprintf(b + n, cap - n, "Content-Type: %s\r\n", ctype);
    if (r->rh_len)
        memcpy(b + n, r->rh, r->rh_len);
    n += r->rh_len;
    if (r->chunked)
        n += (size_t)snprintf(b + n, cap - n, "Transfer-Encoding: chunked\r\n");
    else if (r->clen >= 0 && !status_bodiless(status))
        n += (size_t)snprintf(b + n, cap - n, "Content-Length: %lld\r\n", (long long)r->clen);
    if (!r->keep_alive)
        n += (size_t)snprintf(b + n, cap - n, "Connection: close\r\n");
    else if (r->http10)
        n += (size_t)snprintf(b + n, cap - n, "Connection: keep-alive\r\n");
    n += (size_t)snprintf(b + n, cap - n, "\r\n");
    *plen = n;
    return b;
}

/* Decides the response's framing before its head is built. */
static void req_frame(struct http_req *r, int status, int64_t clen)
{
    bool bodiless = status_bodiless(status);

    r->clen = clen;
    r->no_body = r->is_head || bodiless;
    r->chunked = clen < 0 && !bodiless && !r->http10;
    if (clen < 0 && !bodiless && r->http10)
        r->keep_alive = false; /* HTTP/1.0 has no chunks: the close ends the body */
    if (r->s->closing)
        r->keep_alive = false;
}

static bool status_ok(int status)
{
    return status >= 200 && status <= 999;
}

/* --- parser callbacks ------------------------------------------------------------ */

/* Makes *buf hold at least `need` bytes, doubling from `min` and never past max + 1
 * (room for a terminating NUL); 503 for the client when memory runs out. */
static int grow(struct http_conn *c, void **buf, size_t *cap, size_t need, size_t min,
                size_t max)
{
    size_t n = *cap ? *cap * 2 : min;
    void *p;

    if (need <= *cap)
        return 0;
    if (n > max + 1)
        n = max + 1;
    if (n < need)
        n = need;
    p = realloc(*buf, n);
    if (!p) {
        c->err_status = 503;
        return -1;
    }
    *buf = p;
    *cap = n;
    return 0;
}

/* Appends len bytes to the request head, counting `counted` bytes against the header
 * limit. The stored bytes never exceed the counted ones (each header's ": " and CRLF
 * are counted but stored as two NULs), so the buffer stays within the limit. */
static int head_add(struct http_conn *c, const char *data, size_t len, size_t counted)
{
    struct http_req *r = c->req;
    size_t max = c->s->o.max_header_bytes;

    r->head_bytes += counted;
    if (r->head_bytes > max) {
        c->err_status = 431;
        return -1;
    }
    if (grow(c, (void **)&r->head, &r->head_cap, r->head_len + len, HTTP_HEAD_MIN, max) < 0)
        return -1;
    memcpy(r->head + r->head_len, data, len);
    r->head_len += len;
    return 0;
}

static int head_nul(struct http_conn *c)
{
    return head_add(c, "", 1, 0);
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_req *r = calloc(1, sizeof(*r));

    if (!r) {
        c->err_status = 503;
        return -1;
    }
    r->s = c->s;
    r->c = c;
    r->clen = -1;
    r->head_bytes = sizeof(" HTTP/1.1\r\n\r\n") - 1;
    c->req = r;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->req;

    if (!r->method) {
        r->method = http_method_str((enum http_method)p->method);
        r->head_bytes += strlen(r->method);
    }
    return head_add(c, at, len, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->req;
    size_t extra = 0;

    if (r->hstate != H_FIELD) { /* a new header; else the name goes on */
        if (head_nul(c) < 0)
            return -1;
        r->hstate = H_FIELD;
        r->nhdr++;
        extra = 4;
    }
    return head_add(c, at, len, len + extra);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->req;

    if (r->hstate != H_VALUE) {
        if (head_nul(c) < 0)
            return -1;
        r->hstate = H_VALUE;
    }
    return head_add(c, at, len, len);
}

/* Points hdr at the names and values in head. */
static int index_headers(struct http_req *r)
{
    char *p = r->head, *end = r->head + r->head_len, *next;
    size_t n;
    unsigned i;

    p += strlen(p) + 1; /* the URL */
    if (!r->nhdr)
        return 0;
    r->hdr = malloc(2 * r->nhdr * sizeof(*r->hdr));
    if (!r->hdr)
        return -1;
    for (i = 0; i < 2 * r->nhdr && p < end; i++) {
        r->hdr[i] = p;
        n = strlen(p);
        next = p + n + 1;
        /* http_parser skips the whitespace before a value but keeps what follows it. */
        while (i % 2 && n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            p[--n] = '\0';
        p = next;
    }
    if (i < 2 * r->nhdr) /* a name without a value: not from http_parser */
        r->nhdr = i / 2;
    return 0;
}

/* Splits the URL into the decoded path and the raw query. */
static int split_url(struct http_req *r)
{
    struct http_parser_url u;
    const char *url = r->head, *s, *end;
    size_t n = strlen(url), len;
    char *out;
    int ch;

    http_parser_url_init(&u);
    if (n > UINT16_MAX || http_parser_parse_url(url, n, 0, &u) != 0)
        return -1; /* the parser's offsets are 16 bits */
    if (u.field_set & (1 << UF_PATH)) {
        s = url + u.field_data[UF_PATH].off;
        len = u.field_data[UF_PATH].len;
    } else {
        s = "/";
        len = 1;
    }
    r->path = out = malloc(len + 1);
    if (!out)
        return -1;
    for (end = s + len; s < end;) {
        ch = pct_next(&s, end, false);
        if (ch <= 0) /* a bad escape, or %00 */
            return -1;
        *out++ = (char)ch;
    }
    *out = '\0';
    if (u.field_set & (1 << UF_QUERY)) {
        r->query = strndup(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        if (!r->query)
            return -1;
    }
    return 0;
}

static int conn_send(struct http_conn *c, char *owned, const char *data, size_t len, bool last);

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->req;
    const char *expect;

    if (head_nul(c) < 0)
        return -1;
    if (index_headers(r) < 0) {
        c->err_status = 503;
        return -1;
    }
    if (p->method == HTTP_CONNECT || split_url(r) < 0) {
        c->err_status = 400;
        return -1;
    }
    if (p->flags & F_CONTENTLENGTH) {
        if (p->content_length > c->s->o.max_body) {
            c->err_status = 413;
            return -1;
        }
        /* Up to a point only: a length is a promise, not bytes. */
        r->body_cap =
            (size_t)(p->content_length < HTTP_BODY_PRE ? p->content_length : HTTP_BODY_PRE) + 1;
        r->body = malloc(r->body_cap);
        if (!r->body) {
            c->err_status = 503;
            return -1;
        }
    }
    expect = http_req_header(r, "Expect");
    if (expect && !strcasecmp(expect, "100-continue") && p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        /* Not closed here, inside the parser: the error response will fail too. */
        if (conn_send(c, NULL, cont, sizeof(cont) - 1, false) < 0) {
            c->err_status = 503;
            return -1;
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->req;
    size_t max = c->s->o.max_body;

    if (len > max - r->body_len) {
        c->err_status = 413;
        return -1;
    }
    if (grow(c, (void **)&r->body, &r->body_cap, r->body_len + len + 1, HTTP_BODY_MIN, max) < 0)
        return -1;
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

/* The request is complete: stop the parser here so that the next pipelined request
 * waits until this one is answered. */
static int on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_req *r = c->req;

    r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    r->http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
    r->is_head = p->method == HTTP_HEAD;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_cbs = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- connections ----------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    struct http_server *s = c->s;

    if (--c->nhandles > 0)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->counted)
        s->st.open--;
    s->handles--;
    free(c);
    server_maybe_done(s);
}

/* Closes the connection; a request being answered is detached and lives on until the
 * handler ends it. */
static void conn_close(struct http_conn *c)
{
    struct http_req *r = c->req;

    if (c->closing)
        return;
    c->closing = true;
    c->req = NULL;
    if (r && r->dispatched)
        r->c = NULL;
    else if (r)
        req_free(r);
    uv_close(&c->u.h, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;

    if (!c->busy && !c->drain)
        c->s->st.timeouts++;
    conn_close(c);
}

static void timer_start(struct http_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static uint64_t linger_ms(const struct http_server *s)
{
    return s->o.idle_ms < HTTP_LINGER_MS ? s->o.idle_ms : HTTP_LINGER_MS;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct http_conn *c = h->data;

    if (c->drain || c->roff == c->rlen) {
        c->roff = c->rlen = 0;
    } else if (c->roff > 0) {
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
    }
    buf->base = c->rbuf + c->rlen;
    buf->len = sizeof(c->rbuf) - c->rlen;
}

static void conn_read_stop(struct http_conn *c)
{
    if (c->reading)
        uv_read_stop(&c->u.st);
    c->reading = false;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = st->data;

    if (nread == 0)
        return;
    if (nread == UV_ENOBUFS) {
        conn_read_stop(c);
        return;
    }
    if (nread < 0) { /* EOF or an error: the client has gone */
        conn_close(c);
        return;
    }
    if (c->drain)
        return;
    c->rlen += (size_t)nread;
    if (c->busy) { /* kept for later; reading on shows a disconnect at once */
        if (c->rlen == sizeof(c->rbuf))
            conn_read_stop(c);
        return;
    }
    timer_start(c, c->s->o.idle_ms);
    conn_parse(c);
}

static void conn_read_start(struct http_conn *c)
{
    if (c->reading || c->closing)
        return;
    if (uv_read_start(&c->u.st, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

static void on_conn_write(uv_write_t *w, int status)
{
    struct http_wr *wr = container_of(w, struct http_wr, w);
    struct http_conn *c = wr->c;
    bool last = wr->last;

    free(wr->buf);
    free(wr);
    if (status < 0)
        conn_close(c);
    else if (last)
        conn_linger(c);
}

/* Writes the connection's own bytes; owned (if not NULL) is freed once written, or at
 * once on failure. */
static int conn_send(struct http_conn *c, char *owned, const char *data, size_t len, bool last)
{
    struct http_wr *wr = calloc(1, sizeof(*wr));
    uv_buf_t b = {.base = (char *)data, .len = len};
    int err = -ENOMEM;

    if (!wr || (err = uv_write(&wr->w, &c->u.st, &b, 1, on_conn_write)) < 0) {
        free(wr);
        free(owned);
        return err;
    }
    wr->c = c;
    wr->buf = owned;
    wr->last = last;
    return 0;
}

/* Answers a request the parser or a limit refused, and ends the connection. */
static void conn_fail(struct http_conn *c, int status)
{
    char msg[64], *b;
    int n, mlen;

    c->s->st.bad_requests++;
    if (c->req) {
        req_free(c->req);
        c->req = NULL;
    }
    c->busy = c->drain = true;
    timer_start(c, linger_ms(c->s)); /* bounds the error's write too */
    b = malloc(320);
    if (!b) {
        conn_close(c);
        return;
    }
    mlen = snprintf(msg, sizeof(msg), "%d %s\n", status, reason(status));
    n = snprintf(b, 320,
                 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                 status, reason(status), server_date(c->s), mlen, msg);
    if (conn_send(c, b, b, (size_t)n, true) < 0)
        conn_close(c);
}

static int fail_status(const struct http_conn *c, enum http_errno e)
{
    if (c->err_status)
        return c->err_status;
    return e == HPE_HEADER_OVERFLOW ? 431 : 400;
}

static void conn_dispatch(struct http_conn *c)
{
    struct http_server *s = c->s;
    struct http_req *r = c->req;

    c->busy = true;
    uv_timer_stop(&c->timer);
    r->dispatched = true;
    s->reqs++;
    s->st.requests++;
    conn_read_start(c); /* to see a disconnect while the handler works */
    s->o.handler(s->o.arg, r);
}

/* Parses buffered input until a request is complete (then calls the handler) or the
 * input runs out (then reads more). */
static void conn_parse(struct http_conn *c)
{
    while (c->roff < c->rlen) {
        size_t n = http_parser_execute(&c->p, &parser_cbs, c->rbuf + c->roff, c->rlen - c->roff);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->p);

        c->roff += n;
        if (e == HPE_PAUSED) {
            conn_dispatch(c);
            return;
        }
        if (e != HPE_OK || n == 0) {
            conn_fail(c, fail_status(c, e));
            return;
        }
    }
    c->roff = c->rlen = 0;
    conn_read_start(c);
}

/* A response is done: go on with the next request, or end the connection. */
static void conn_next(struct http_conn *c, bool keep)
{
    if (!keep || c->s->closing) {
        conn_linger(c);
        return;
    }
    c->busy = false;
    http_parser_pause(&c->p, 0);
    timer_start(c, c->s->o.idle_ms);
    conn_parse(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->handle->data;

    if (status < 0)
        conn_close(c);
}

/* Ends the connection gracefully: our FIN after the response, then input is dropped
 * until the client closes or the linger time is up. A closing server does not wait. */
static void conn_linger(struct http_conn *c)
{
    if (c->closing || c->shut_started)
        return;
    if (c->s->closing) {
        conn_close(c);
        return;
    }
    c->busy = c->drain = c->shut_started = true;
    timer_start(c, linger_ms(c->s));
    if (uv_shutdown(&c->shut, &c->u.st, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    conn_read_start(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct http_listener *l = ls->data;
    struct http_server *s = l->s;
    struct http_conn *c;
    int err;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    if (l->u.h.type == UV_TCP)
        err = uv_tcp_init(s->loop, &c->u.tcp);
    else
        err = uv_pipe_init(s->loop, &c->u.pipe, 0);
    if (err < 0) {
        free(c);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->u.h.data = c->timer.data = c;
    c->s = s;
    c->nhandles = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->handles++;
    if (uv_accept(ls, &c->u.st) < 0) {
        conn_close(c);
        return;
    }
    if (s->closing || s->st.open >= s->o.max_conns) {
        s->st.refused++;
        conn_close(c);
        return;
    }
    c->counted = true;
    s->st.open++;
    s->st.connections++;
    if (l->u.h.type == UV_TCP)
        uv_tcp_nodelay(&c->u.tcp, 1); /* small responses go out at once */
    http_parser_init(&c->p, HTTP_REQUEST);
    c->p.data = c;
    timer_start(c, s->o.idle_ms);
    conn_read_start(c);
}

/* --- listeners and the server ---------------------------------------------------- */

static void on_listener_closed(uv_handle_t *h)
{
    struct http_listener *l = h->data;
    struct http_server *s = l->s;

    free(l->path);
    free(l);
    s->handles--;
    server_maybe_done(s);
}

static void listener_drop(struct http_listener *l)
{
    if (l->path)
        unlink(l->path);
    uv_close(&l->u.h, on_listener_closed);
}

static struct http_listener *listener_new(struct http_server *s, bool tcp)
{
    struct http_listener *l = calloc(1, sizeof(*l));
    int err;

    if (!l)
        return NULL;
    err = tcp ? uv_tcp_init(s->loop, &l->u.tcp) : uv_pipe_init(s->loop, &l->u.pipe, 0);
    if (err < 0) {
        free(l);
        return NULL;
    }
    l->u.h.data = l;
    l->s = s;
    s->handles++;
    return l;
}

static int listener_start(struct http_listener *l)
{
    struct http_server *s = l->s;
    int err = uv_listen(&l->u.st, HTTP_BACKLOG, on_connection);

    if (err < 0) {
        listener_drop(l);
        return err;
    }
    l->next = s->listeners;
    s->listeners = l;
    return 0;
}

/* Makes path free for bind: nothing there, or a socket nobody accepts on (left by a
 * process that died), which is removed. Anything else is left alone. */
static int unix_clear(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, err;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    err = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
    close(fd);
    if (err == 0 || err == -EAGAIN) /* it answers, or its backlog is full */
        return -EADDRINUSE;
    if (err != -ECONNREFUSED)
        return err;
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int http_listen_unix(struct http_server *s, const char *path)
{
    struct sockaddr_un sa;
    struct http_listener *l;
    int err;

    if (s->closing)
        return -EINVAL;
    if (strlen(path) >= sizeof(sa.sun_path)) /* libuv would cut it short */
        return -ENAMETOOLONG;
    err = unix_clear(path);
    if (err < 0)
        return err;
    l = listener_new(s, false);
    if (!l)
        return -ENOMEM;
    err = uv_pipe_bind(&l->u.pipe, path);
    if (err < 0) {
        listener_drop(l);
        return err;
    }
    l->path = strdup(path);
    /* Before listen: nobody can have connected while the mode was wider. */
    if (!l->path || chmod(path, 0600) < 0) {
        err = l->path ? -errno : -ENOMEM;
        if (!l->path)
            unlink(path);
        listener_drop(l);
        return err;
    }
    return listener_start(l);
}

int http_listen_tcp(struct http_server *s, const char *host, uint16_t port)
{
    struct sockaddr_storage sa;
    struct http_listener *l;
    int err;

    if (s->closing)
        return -EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) < 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) < 0)
        return -EINVAL;
    l = listener_new(s, true);
    if (!l)
        return -ENOMEM;
    err = uv_tcp_bind(&l->u.tcp, (const struct sockaddr *)&sa, 0);
    if (err < 0) {
        listener_drop(l);
        return err;
    }
    return listener_start(l);
}

int http_tcp_port(const struct http_server *s)
{
    const struct http_listener *l;
    struct sockaddr_storage sa;
    int len = sizeof(sa), err;

    for (l = s->listeners; l; l = l->next) {
        if (l->u.h.type != UV_TCP)
            continue;
        err = uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&sa, &len);
        if (err < 0)
            return err;
        if (sa.ss_family == AF_INET6)
            return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    }
    return -ENOENT;
}

int http_server_new(uv_loop_t *loop, const struct http_opts *o, struct http_server **out)
{
    struct http_server *s;
    int err;

    if (!o || !o->handler)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->o = *o;
    if (!s->o.max_header_bytes)
        s->o.max_header_bytes = 16 * 1024;
    if (!s->o.max_body)
        s->o.max_body = 1024 * 1024;
    if (!s->o.max_conns)
        s->o.max_conns = 256;
    if (!s->o.idle_ms)
        s->o.idle_ms = 30000;
    err = uv_timer_init(loop, &s->defer);
    if (err < 0) {
        free(s);
        return err;
    }
    s->defer.data = s;
    *out = s;
    return 0;
}

static void on_server_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;

    if (s->done)
        s->done(s->done_arg);
    free(s);
}

static void server_maybe_done(struct http_server *s)
{
    if (!s->closing || s->finishing || s->handles || s->reqs)
        return;
    s->finishing = true;
    uv_close((uv_handle_t *)&s->defer, on_server_closed);
}

void http_server_close(struct http_server *s, void (*done)(void *arg), void *arg)
{
    struct http_listener *l, *ln;
    struct http_conn *c;

    s->closing = true;
    s->done = done;
    s->done_arg = arg;
    for (l = s->listeners; l; l = ln) {
        ln = l->next;
        listener_drop(l);
    }
    s->listeners = NULL;
    /* conn_close does not unlink: that waits for the close callbacks. */
    for (c = s->conns; c; c = c->next) {
        if (!c->req || !c->req->dispatched)
            conn_close(c);
    }
    server_maybe_done(s);
}

void http_server_stats(const struct http_server *s, struct http_stats *out)
{
    *out = s->st;
}

/* --- the request, for handlers --------------------------------------------------- */

const char *http_req_method(const struct http_req *r)
{
    return r->method;
}

const char *http_req_path(const struct http_req *r)
{
    return r->path;
}

const char *http_req_query(const struct http_req *r)
{
    return r->query ? r->query : "";
}

const char *http_req_header(const struct http_req *r, const char *name)
{
    unsigned i;

    for (i = 0; i < r->nhdr; i++) {
        if (!strcasecmp(r->hdr[2 * i], name))
            return r->hdr[2 * i + 1];
    }
    return NULL;
}

const uint8_t *http_req_body(const struct http_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : (const uint8_t *)"";
}

bool http_req_connected(const struct http_req *r)
{
    return r->c != NULL;
}

/* --- responding ------------------------------------------------------------------ */

/* Headers whose values only the server may know. */
static bool header_reserved(const char *name)
{
    static const char *const names[] = {"Content-Length", "Transfer-Encoding", "Connection",
                                        "Date"};
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcasecmp(name, names[i]))
            return true;
    }
    return false;
}

int http_add_header(struct http_req *r, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), need = r->rh_len + nl + vl + 4;
    char *p;

    if (r->started || r->ended || !nl || strpbrk(name, "\r\n: \t") || has_crlf(value) ||
        header_reserved(name))
        return -EINVAL;
    if (need > HTTP_RESP_HDRS_MAX)
        return -ENOBUFS;
    if (need > r->rh_cap) {
        size_t cap = r->rh_cap ? r->rh_cap * 2 : 256;

        if (cap < need)
            cap = need;
        p = realloc(r->rh, cap);
        if (!p)
            return -ENOMEM;
        r->rh = p;
        r->rh_cap = cap;
    }
    p = r->rh + r->rh_len;
    memcpy(p, name, nl);
    memcpy(p + nl, ": ", 2);
    memcpy(p + nl + 2, value, vl);
    memcpy(p + nl + 2 + vl, "\r\n", 2);
    r->rh_len = need;
    return 0;
}

/* Sends the response head (and, for http_respond, the body after it). */
static int req_send_head(struct http_req *r, int status, const char *ctype, const void *body,
                         size_t len)
{
    struct http_wr *wr = calloc(1, sizeof(*wr));
    uv_buf_t b;
    size_t n;

    if (!wr || !(wr->buf = build_head(r, status, ctype, len, &n))) {
        free(wr);
        req_fail(r);
        return -ENOMEM;
    }
    if (len)
        memcpy(wr->buf + n, body, len);
    b.base = wr->buf;
    b.len = n + len;
    return req_send(r, wr, &b, 1);
}

int http_respond(struct http_req *r, int status, const char *content_type, const void *body,
                 size_t len)
{
    int err = 0;

    if (r->started || r->ended || !status_ok(status) || (content_type && has_crlf(content_type)))
        return -EINVAL;
    r->started = r->ended = true;
    if (r->c) {
        req_frame(r, status, (int64_t)len);
        err = req_send_head(r, status, content_type, body, r->no_body ? 0 : len);
    }
    req_maybe_finish(r);
    return err;
}

int http_start(struct http_req *r, int status, const char *content_type, int64_t content_length)
{
    if (r->started || r->ended || !status_ok(status) || (content_type && has_crlf(content_type)))
        return -EINVAL;
    r->started = true;
    if (!r->c)
        return 0;
    req_frame(r, status, content_length);
    return req_send_head(r, status, content_type, NULL, 0);
}

int http_write(struct http_req *r, const void *data, size_t len, http_write_cb cb, void *arg)
{
    static char crlf[] = "\r\n";
    struct http_wr *wr;
    uv_buf_t b[3];
    unsigned n = 0;
    int err;

    if (!r->started || r->ended || r->wcb || r->deferred || !cb)
        return -EINVAL;
    if (!r->c)
        return -EPIPE;
    if (r->clen >= 0 && len > (uint64_t)r->clen - r->sent)
        return -EINVAL;
    r->sent += len;
    r->wcb = cb;
    r->warg = arg;
    if (r->no_body || len == 0) { /* an empty chunk would end the body */
        req_defer(r);
        return 0;
    }
    wr = calloc(1, sizeof(*wr));
    if (!wr) {
        r->wcb = NULL;
        return -ENOMEM;
    }
    wr->user = true;
    if (r->chunked) {
        b[n].base = wr->frame;
        b[n++].len = (size_t)snprintf(wr->frame, sizeof(wr->frame), "%zx\r\n", len);
    }
    b[n].base = (char *)data;
    b[n++].len = len;
    if (r->chunked) {
        b[n].base = crlf;
        b[n++].len = 2;
    }
    err = req_send(r, wr, b, n);
    if (err < 0)
        r->wcb = NULL; /* the callback is never called after an error */
    return err;
}

int http_end(struct http_req *r)
{
    static char last_chunk[] = "0\r\n\r\n";
    int err = 0;

    if (!r->started || r->ended)
        return -EINVAL;
    r->ended = true;
    if (r->c && !r->no_body) {
        if (r->chunked) {
            struct http_wr *wr = calloc(1, sizeof(*wr));
            uv_buf_t b = {.base = last_chunk, .len = sizeof(last_chunk) - 1};

            if (wr)
                err = req_send(r, wr, &b, 1);
            else
                req_fail(r);
        } else if (r->clen >= 0 && r->sent < (uint64_t)r->clen) {
            r->keep_alive = false; /* short: the close tells the client */
        }
    }
    req_maybe_finish(r);
    return err;
}

/* --- helpers for handlers -------------------------------------------------------- */

/* Whether the percent-encoded key [k, end) decodes to name. */
static bool key_is(const char *k, const char *end, const char *name)
{
    int ch;

    while (k < end) {
        ch = pct_next(&k, end, true);
        if (ch < 0 || *name == '\0' || ch != (unsigned char)*name)
            return false;
        name++;
    }
    return *name == '\0';
}

static int value_decode(const char *v, const char *end, char *out, size_t cap)
{
    size_t n = 0;
    int ch;

    while (v < end) {
        ch = pct_next(&v, end, true);
        if (ch <= 0)
            return -EINVAL;
        if (n + 1 >= cap)
            return -ENOBUFS;
        out[n++] = (char)ch;
    }
    if (cap == 0)
        return -ENOBUFS;
    out[n] = '\0';
    return (int)n;
}

int http_query_param(const char *query, const char *name, char *out, size_t cap)
{
    const char *p = query, *amp, *eq;

    while (*p) {
        amp = strchr(p, '&');
        if (!amp)
            amp = p + strlen(p);
        eq = memchr(p, '=', (size_t)(amp - p));
        if (key_is(p, eq ? eq : amp, name)) {
            if (!eq)
                return value_decode(amp, amp, out, cap);
            return value_decode(eq + 1, amp, out, cap);
        }
        p = *amp ? amp + 1 : amp;
    }
    return -ENOENT;
}
