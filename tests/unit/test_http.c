/* test_http.c - the HTTP/1.1 server over unix and TCP sockets: requests and answers,
 * keep-alive, pipelining, async and streamed responses, HEAD, the limits (400, 413,
 * 431), idle timeouts, max_conns, clients that go away, the unix socket file, query
 * parameters and a clean close.
 *
 * The server's loop runs on the main thread; a second thread plays the clients with
 * plain non-blocking sockets, every wait bounded by poll() with a deadline. The client
 * reads responses with http_parser in response mode. Each scenario ends by waking the
 * loop, which closes the server; the loop must then close with 0.
 */
#include "http.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000 /* the longest any single wait may take */

/* --- the server side (loop thread) --------------------------------------------- */

static struct env {
    uv_loop_t loop;
    uv_async_t wake;
    struct http_server *s;
    pthread_t th;
    void (*client)(void);
    bool use_tcp;
    char dir[256];
    char sock[320];
    int port;
    atomic_bool woken;
    struct http_stats st; /* taken when the client is done */
    int done_calls;
    int delayed_at_done;
} E;

static atomic_int g_delay_started;   /* /delay requests received */
static atomic_int g_delayed;         /* /delay responses given */
static atomic_int g_delay_connected; /* http_req_connected() at the last one */
static atomic_int g_stream_failed;   /* streams that saw a write fail */

static void respond_text(struct http_req *r, int status, const char *text)
{
    CHECK_EQ(http_respond(r, status, "text/plain", text, strlen(text)), 0);
}

struct delayed {
    uv_timer_t t;
    struct http_req *r;
    char id[32];
};

static void on_delay_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_delay(uv_timer_t *t)
{
    struct delayed *d = t->data;
    char body[64];

    atomic_store(&g_delay_connected, http_req_connected(d->r));
    snprintf(body, sizeof(body), "delayed %s", d->id);
    respond_text(d->r, 200, body);
    atomic_fetch_add(&g_delayed, 1);
    uv_close((uv_handle_t *)&d->t, on_delay_closed);
}

static unsigned long query_num(struct http_req *r, const char *name, unsigned long def)
{
    char v[32], *end;
    unsigned long n;

    if (http_query_param(http_req_query(r), name, v, sizeof(v)) <= 0)
        return def;
    n = strtoul(v, &end, 10);
    CHECK(*end == '\0');
    return n;
}

/* /delay?ms=N&id=X answers "delayed X" after N ms, from a timer. */
static void handle_delay(struct http_req *r)
{
    struct delayed *d = check_malloc(sizeof(*d));

    d->r = r;
    if (http_query_param(http_req_query(r), "id", d->id, sizeof(d->id)) < 0)
        memcpy(d->id, "-", 2);
    CHECK_EQ(uv_timer_init(&E.loop, &d->t), 0);
    d->t.data = d;
    CHECK_EQ(uv_timer_start(&d->t, on_delay, query_num(r, "ms", 10), 0), 0);
    atomic_fetch_add(&g_delay_started, 1);
}

/* The bytes of piece i of a streamed body. */
static void fill_piece(uint8_t *buf, size_t size, unsigned i)
{
    size_t j;

    for (j = 0; j < size; j++)
        buf[j] = (uint8_t)(i * 31 + j * 7 + (j >> 8));
}

struct streamer {
    struct http_req *r;
    unsigned i, n;
    size_t size;
    uint8_t *buf;
};

static void stream_done(struct streamer *st)
{
    CHECK_EQ(http_end(st->r), 0);
    free(st->buf);
    free(st);
}

/* Writes the next piece from the previous one's callback: one write at a time. */
static void stream_next(void *arg, int status)
{
    struct streamer *st = arg;

    if (status < 0) {
        atomic_fetch_add(&g_stream_failed, 1);
        stream_done(st);
        return;
    }
    if (st->i == st->n) {
        stream_done(st);
        return;
    }
    fill_piece(st->buf, st->size, st->i++);
    if (http_write(st->r, st->buf, st->size, stream_next, st) < 0) {
        atomic_fetch_add(&g_stream_failed, 1);
        stream_done(st);
    }
}

/* /stream?n=N&size=S[&len=1[&short=B]] streams N pieces of S bytes, chunked unless
 * len=1; short announces B bytes more than are sent. */
static void handle_stream(struct http_req *r)
{
    struct streamer *st = check_malloc(sizeof(*st));
    int64_t len = -1;

    st->r = r;
    st->i = 0;
    st->n = (unsigned)query_num(r, "n", 1);
    st->size = query_num(r, "size", 100);
    st->buf = check_malloc(st->size + 1);
    if (query_num(r, "len", 0))
        len = (int64_t)(st->n * st->size + query_num(r, "short", 0));
    CHECK_EQ(http_start(r, 200, "application/octet-stream", len), 0);
    stream_next(st, 0);
}

static void handle_echo(struct http_req *r)
{
    const char *t = http_req_header(r, "x-test");
    const uint8_t *body;
    char n[32];
    size_t len;

    body = http_req_body(r, &len);
    CHECK_EQ(body[len], 0);
    snprintf(n, sizeof(n), "%zu", len);
    CHECK_EQ(http_add_header(r, "X-Len", n), 0);
    if (t)
        CHECK_EQ(http_add_header(r, "X-Test", t), 0);
    CHECK_EQ(http_respond(r, 200, "application/octet-stream", body, len), 0);
}

/* Headers a handler may not add, and one it may. */
static void handle_hdr(struct http_req *r)
{
    char body[64];

    snprintf(body, sizeof(body), "%d %d %d %d", http_add_header(r, "X-Bad", "a\r\nb"),
             http_add_header(r, "Bad Name", "v"), http_add_header(r, "content-length", "1"),
             http_add_header(r, "Connection", "close"));
    CHECK_EQ(http_add_header(r, "X-Ok", "yes"), 0);
    respond_text(r, 200, body);
}

static void handle_stats(struct http_req *r)
{
    struct http_stats st;
    char body[256];

    http_server_stats(E.s, &st);
    snprintf(body, sizeof(body),
             "connections=%llu requests=%llu bad=%llu timeouts=%llu refused=%llu open=%u\n",
             (unsigned long long)st.connections, (unsigned long long)st.requests,
             (unsigned long long)st.bad_requests, (unsigned long long)st.timeouts,
             (unsigned long long)st.refused, st.open);
    respond_text(r, 200, body);
}

static void handler(void *arg, struct http_req *r)
{
    const char *p = http_req_path(r);
    char body[512];

    CHECK(arg == &E);
    if (!strcmp(p, "/json")) {
        snprintf(body, sizeof(body), "{\"ok\":true,\"method\":\"%s\"}", http_req_method(r));
        CHECK_EQ(http_respond(r, 200, "application/json", body, strlen(body)), 0);
    } else if (!strcmp(p, "/echo")) {
        handle_echo(r);
    } else if (!strcmp(p, "/delay")) {
        handle_delay(r);
    } else if (!strcmp(p, "/stream")) {
        handle_stream(r);
    } else if (!strcmp(p, "/hdr")) {
        handle_hdr(r);
    } else if (!strcmp(p, "/stats")) {
        handle_stats(r);
    } else if (!strcmp(p, "/nothing")) {
        CHECK_EQ(http_respond(r, 204, NULL, "ignored", 7), 0);
    } else if (!strncmp(p, "/p/", 3)) {
        snprintf(body, sizeof(body), "%s|%s", p, http_req_query(r));
        respond_text(r, 200, body);
    } else {
        respond_text(r, 404, "no such thing\n");
    }
}

static void on_server_done(void *arg)
{
    CHECK(arg == &E);
    E.done_calls++;
    E.delayed_at_done = atomic_load(&g_delayed);
}

/* The client is done (or asks for the close): close the server from the loop. */
static void on_wake(uv_async_t *a)
{
    http_server_stats(E.s, &E.st);
    http_server_close(E.s, on_server_done, &E);
    uv_close((uv_handle_t *)a, NULL);
}

/* Called by the client thread, once per scenario. */
static void wake_loop(void)
{
    if (!atomic_exchange(&E.woken, true))
        CHECK_EQ(uv_async_send(&E.wake), 0);
}

static void make_dir(void)
{
    const char *t = getenv("TMPDIR");

    snprintf(E.dir, sizeof(E.dir), "%s/test_http.XXXXXX", t && *t ? t : "/tmp");
    CHECK(mkdtemp(E.dir) != NULL);
    snprintf(E.sock, sizeof(E.sock), "%s/s.sock", E.dir);
}

static void *client_main(void *arg)
{
    E.client();
    wake_loop();
    return NULL;
}

/* Runs one client scenario against a fresh server (opts without the handler). */
static void run(struct http_opts o, bool tcp, void (*client)(void))
{
    struct stat st;

    E.client = client;
    E.use_tcp = tcp;
    E.done_calls = 0;
    atomic_store(&E.woken, false);
    atomic_store(&g_delay_started, 0);
    atomic_store(&g_delayed, 0);
    atomic_store(&g_delay_connected, -1);
    atomic_store(&g_stream_failed, 0);
    make_dir();
    o.handler = handler;
    o.arg = &E;
    CHECK_EQ(uv_loop_init(&E.loop), 0);
    CHECK_EQ(http_server_new(&E.loop, &o, &E.s), 0);
    CHECK_EQ(http_listen_unix(E.s, E.sock), 0);
    CHECK_EQ(stat(E.sock, &st), 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(http_listen_tcp(E.s, "127.0.0.1", 0), 0);
    E.port = http_tcp_port(E.s);
    CHECK(E.port > 0);
    CHECK_EQ(uv_async_init(&E.loop, &E.wake, on_wake), 0);
    CHECK_EQ(pthread_create(&E.th, NULL, client_main, NULL), 0);
    CHECK_EQ(uv_run(&E.loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(pthread_join(E.th, NULL), 0);
    CHECK_EQ(E.done_calls, 1);
    CHECK_EQ(uv_loop_close(&E.loop), 0);
    CHECK(stat(E.sock, &st) < 0 && errno == ENOENT); /* removed by the close */
    CHECK_EQ(rmdir(E.dir), 0);
}

/* --- the client side (client thread) -------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* Waits until *v reaches want, for at most WAIT_MS. */
static void wait_for(atomic_int *v, int want)
{
    int64_t end = now_ms() + WAIT_MS;

    while (atomic_load(v) < want) {
        CHECK(now_ms() < end);
        sleep_ms(2);
    }
}

struct resp {
    int status;
    bool head; /* the request was HEAD: no body follows */
    bool done, in_value;
    char hdrs[8192]; /* "Name: value\n" lines */
    size_t hlen;
    uint8_t *body;
    size_t blen, bcap;
    char first[256]; /* the message's first raw bytes */
    size_t nfirst;
    char last[8]; /* and its last ones */
    size_t nraw;
};

struct cli {
    int fd;
    http_parser p;
    struct resp *r;
    size_t off, len;
    char buf[65536];
};

static void hdr_add(struct resp *r, const char *s, size_t n)
{
    CHECK(r->hlen + n < sizeof(r->hdrs));
    memcpy(r->hdrs + r->hlen, s, n);
    r->hlen += n;
    r->hdrs[r->hlen] = '\0';
}

static int c_on_field(http_parser *p, const char *at, size_t len)
{
    struct resp *r = ((struct cli *)p->data)->r;

    if (r->in_value)
        hdr_add(r, "\n", 1);
    r->in_value = false;
    hdr_add(r, at, len);
    return 0;
}

static int c_on_value(http_parser *p, const char *at, size_t len)
{
    struct resp *r = ((struct cli *)p->data)->r;

    if (!r->in_value)
        hdr_add(r, ": ", 2);
    r->in_value = true;
    hdr_add(r, at, len);
    return 0;
}

static int c_on_headers_complete(http_parser *p)
{
    struct resp *r = ((struct cli *)p->data)->r;

    hdr_add(r, "\n", 1);
    r->status = (int)p->status_code;
    return r->head ? 1 : 0; /* 1: no body */
}

static int c_on_body(http_parser *p, const char *at, size_t len)
{
    struct resp *r = ((struct cli *)p->data)->r;

    if (r->blen + len + 1 > r->bcap) {
        r->bcap = (r->blen + len + 1) * 2;
        r->body = realloc(r->body, r->bcap);
        CHECK(r->body != NULL);
    }
    memcpy(r->body + r->blen, at, len);
    r->blen += len;
    r->body[r->blen] = '\0'; /* for strstr */
    return 0;
}

static int c_on_complete(http_parser *p)
{
    ((struct cli *)p->data)->r->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings client_cbs = {
    .on_header_field = c_on_field,
    .on_header_value = c_on_value,
    .on_headers_complete = c_on_headers_complete,
    .on_body = c_on_body,
    .on_message_complete = c_on_complete,
};

static void resp_free(struct resp *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* The value of a response header, copied into a static buffer; NULL if absent. */
static const char *resp_header(const struct resp *r, const char *name)
{
    static char v[1024];
    size_t n = strlen(name);
    const char *line = r->hdrs, *nl;

    for (; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        CHECK(nl != NULL);
        if (!strncasecmp(line, name, n) && line[n] == ':') {
            size_t vl = (size_t)(nl - line) - n - 2;

            CHECK(vl < sizeof(v));
            memcpy(v, line + n + 2, vl);
            v[vl] = '\0';
            return v;
        }
    }
    return NULL;
}

static void expect_body(const struct resp *r, const char *want)
{
    CHECK_EQ(r->blen, strlen(want));
    CHECK_MEM(r->body, want, r->blen);
}

static void cli_init(struct cli *c, int fd)
{
    CHECK(fd >= 0);
    CHECK_EQ(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    c->fd = fd;
    c->off = c->len = 0;
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
}

static void cli_connect(struct cli *c)
{
    int fd;

    if (E.use_tcp) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)E.port)};

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    } else {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        memcpy(sa.sun_path, E.sock, strlen(E.sock) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    cli_init(c, fd);
}

static void cli_close(struct cli *c)
{
    close(c->fd);
    c->fd = -1;
}

static void wait_fd(int fd, short events, int64_t end)
{
    struct pollfd pf = {.fd = fd, .events = events};
    int64_t left = end - now_ms();

    CHECK(left > 0);
    CHECK_EQ(poll(&pf, 1, (int)left), 1);
}

/* Sends everything; 0, or -errno once the server has closed (EPIPE, ECONNRESET). */
static int cli_send_n(struct cli *c, const void *data, size_t len)
{
    const char *p = data;
    int64_t end = now_ms() + WAIT_MS;
    ssize_t n;

    while (len) {
        n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            wait_fd(c->fd, POLLOUT, end);
            continue;
        }
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void cli_send(struct cli *c, const char *s)
{
    CHECK_EQ(cli_send_n(c, s, strlen(s)), 0);
}

static void raw_note(struct resp *r, const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++, r->nraw++) {
        if (r->nfirst < sizeof(r->first) - 1)
            r->first[r->nfirst++] = p[i];
        r->last[r->nraw % sizeof(r->last)] = p[i];
    }
}

/* The last n raw bytes of the message, in order. */
static void raw_tail(const struct resp *r, char *out, size_t n)
{
    size_t i;

    CHECK(n <= sizeof(r->last) && r->nraw >= n);
    for (i = 0; i < n; i++)
        out[i] = r->last[(r->nraw - n + i) % sizeof(r->last)];
}

/* Reads one whole response (head: to a HEAD request). */
static void cli_read(struct cli *c, struct resp *r, bool head)
{
    int64_t end = now_ms() + WAIT_MS;
    ssize_t n;
    size_t used;

    memset(r, 0, sizeof(*r));
    r->head = head;
    c->r = r;
    http_parser_pause(&c->p, 0);
    for (;;) {
        if (c->off < c->len) {
            used = http_parser_execute(&c->p, &client_cbs, c->buf + c->off, c->len - c->off);
            raw_note(r, c->buf + c->off, used);
            c->off += used;
            if (r->done)
                return;
            CHECK_EQ(HTTP_PARSER_ERRNO(&c->p), HPE_OK);
            CHECK(used > 0);
            continue;
        }
        c->off = c->len = 0;
        wait_fd(c->fd, POLLIN, end);
        n = recv(c->fd, c->buf, sizeof(c->buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        CHECK(n >= 0);
        if (n == 0) { /* the end of a body delimited by the close */
            http_parser_execute(&c->p, &client_cbs, NULL, 0);
            CHECK(r->done);
            return;
        }
        c->len = (size_t)n;
    }
}

/* Expects the server to close the connection within ms, sending nothing more. */
static void cli_expect_close(struct cli *c, int ms)
{
    int64_t end = now_ms() + ms;
    char b[256];
    ssize_t n;

    CHECK_EQ(c->off, c->len);
    for (;;) {
        wait_fd(c->fd, POLLIN, end);
        n = recv(c->fd, b, sizeof(b), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            break;
        check__fail(__FILE__, __LINE__, "%zd more bytes instead of the close", n);
    }
    cli_close(c);
}

/* One request and its response on a new connection, closed after. */
static void get_once(const char *req, struct resp *r)
{
    struct cli c;

    cli_connect(&c);
    cli_send(&c, req);
    cli_read(&c, r, false);
    cli_close(&c);
}

static unsigned long long stat_of(const struct resp *r, const char *name)
{
    char key[64];
    const char *p;

    snprintf(key, sizeof(key), "%s=", name);
    CHECK(r->blen > 0 && r->body[r->blen - 1] == '\n');
    p = strstr((const char *)r->body, key);
    CHECK(p != NULL);
    return strtoull(p + strlen(key), NULL, 10);
}

static void stats_on(struct cli *c, struct resp *r)
{
    cli_send(c, "GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(c, r, false);
    CHECK_EQ(r->status, 200);
}

/* --- scenarios ------------------------------------------------------------------- */

#define JSON_GET "{\"ok\":true,\"method\":\"GET\"}"

/* GET with JSON, POST with a body, HEAD, 204, decoding and header rules, all on one
 * keep-alive connection; then HTTP/1.0. */
static void c_basic(void)
{
    struct cli c;
    struct resp r;
    const char *v;

    cli_connect(&c);
    cli_send(&c, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    CHECK_STR(resp_header(&r, "content-type"), "application/json");
    CHECK_STR(resp_header(&r, "content-length"), "26");
    CHECK(resp_header(&r, "date") != NULL);
    CHECK(resp_header(&r, "connection") == NULL);
    CHECK(!strncmp(r.first, "HTTP/1.1 200 OK\r\n", 17));
    expect_body(&r, JSON_GET);
    resp_free(&r);

    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nX-Test:  abc \t\r\nContent-Length: 12\r\n"
                 "\r\nhello, world");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    CHECK_STR(resp_header(&r, "x-test"), "abc");
    CHECK_STR(resp_header(&r, "x-len"), "12");
    expect_body(&r, "hello, world");
    resp_free(&r);

    /* HEAD: the GET's Content-Length, no body (or the next response would not parse). */
    cli_send(&c, "HEAD /json HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, true);
    CHECK_EQ(r.status, 200);
    CHECK_STR(resp_header(&r, "content-length"), "27"); /* {..."method":"HEAD"} */
    CHECK_EQ(r.blen, 0);
    resp_free(&r);

    cli_send(&c, "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 204);
    CHECK(resp_header(&r, "content-length") == NULL);
    CHECK_EQ(r.blen, 0);
    resp_free(&r);

    cli_send(&c, "GET /p/a%20b/%C3%A9+x?x=1&y=%41 HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    expect_body(&r, "/p/a b/\xc3\xa9+x|x=1&y=%41");
    resp_free(&r);

    cli_send(&c, "GET /hdr HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_STR(resp_header(&r, "x-ok"), "yes");
    expect_body(&r, "-22 -22 -22 -22");
    resp_free(&r);

    cli_send(&c, "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 404);
    CHECK(!strncmp(r.first, "HTTP/1.1 404 Not Found\r\n", 24));
    resp_free(&r);

    /* Expect: 100-continue gets the interim answer before the body is sent. */
    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                 "Expect: 100-continue\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 100);
    resp_free(&r);
    cli_send(&c, "abc");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    expect_body(&r, "abc");
    resp_free(&r);

    /* Connection: close from the client: answered with it, then closed. */
    cli_send(&c, "GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_STR(resp_header(&r, "connection"), "close");
    expect_body(&r, JSON_GET);
    resp_free(&r);
    cli_expect_close(&c, WAIT_MS);

    /* HTTP/1.0: no keep-alive unless asked; a stream of unknown length is unframed. */
    cli_connect(&c);
    cli_send(&c, "GET /json HTTP/1.0\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_STR(resp_header(&r, "connection"), "close");
    expect_body(&r, JSON_GET);
    resp_free(&r);
    cli_expect_close(&c, WAIT_MS);

    cli_connect(&c);
    cli_send(&c, "GET /stream?n=3&size=10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_STR(resp_header(&r, "connection"), "close");
    CHECK(resp_header(&r, "transfer-encoding") == NULL);
    CHECK(resp_header(&r, "content-length") == NULL);
    CHECK_EQ(r.blen, 30);
    resp_free(&r);
    cli_close(&c);

    cli_connect(&c);
    cli_send(&c, "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cli_read(&c, &r, false);
    v = resp_header(&r, "connection");
    CHECK(v && !strcasecmp(v, "keep-alive"));
    resp_free(&r);
    cli_send(&c, "GET /json HTTP/1.0\r\n\r\n");
    cli_read(&c, &r, false);
    expect_body(&r, JSON_GET);
    resp_free(&r);
    cli_expect_close(&c, WAIT_MS);
}

/* Three requests in one send: the first answered late, all answered in order. */
static void c_pipeline(void)
{
    static const char reqs[] = "GET /delay?ms=100&id=first HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /json HTTP/1.1\r\nHost: t\r\n\r\n"
                               "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n"
                               "third"
                               "GET /p/x?last HTTP/1.1\r\nHost: t\r\n\r\n";
    struct cli c;
    struct resp r;

    cli_connect(&c);
    cli_send(&c, reqs);
    cli_read(&c, &r, false);
    expect_body(&r, "delayed first");
    resp_free(&r);
    cli_read(&c, &r, false);
    expect_body(&r, JSON_GET);
    resp_free(&r);
    cli_read(&c, &r, false);
    expect_body(&r, "third");
    resp_free(&r);
    cli_read(&c, &r, false);
    expect_body(&r, "/p/x|last");
    resp_free(&r);
    cli_close(&c);
}

/* More pipelined requests than the server's read buffer holds, behind a slow one: it
 * stops reading, then resumes, and answers all in order. */
static void c_pipeline_flood(void)
{
    enum { N = 700 };
    char *reqs = check_malloc(N * 48), want[32];
    struct cli c;
    struct resp r;
    size_t len;
    int i;

    len = (size_t)snprintf(reqs, 64, "GET /delay?ms=50&id=0 HTTP/1.1\r\nHost: t\r\n\r\n");
    for (i = 1; i < N; i++)
        len += (size_t)snprintf(reqs + len, 48, "GET /p/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    CHECK(len > 16 * 1024);
    cli_connect(&c);
    CHECK_EQ(cli_send_n(&c, reqs, len), 0);
    cli_read(&c, &r, false);
    expect_body(&r, "delayed 0");
    resp_free(&r);
    for (i = 1; i < N; i++) {
        snprintf(want, sizeof(want), "/p/%d|", i);
        cli_read(&c, &r, false);
        expect_body(&r, want);
        resp_free(&r);
    }
    cli_close(&c);
    free(reqs);
}

/* Reads raw bytes until the server closes; expects the header line and then exactly
 * body bytes. */
static void expect_short(struct cli *c, const char *line, size_t body)
{
    int64_t end = now_ms() + WAIT_MS;
    char *raw = check_malloc(65536), *p;
    size_t n = 0;
    ssize_t got;

    CHECK_EQ(c->off, c->len);
    for (;;) {
        CHECK(n < 65535);
        wait_fd(c->fd, POLLIN, end);
        got = recv(c->fd, raw + n, 65535 - n, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        CHECK(got >= 0);
        if (got == 0)
            break;
        n += (size_t)got;
    }
    raw[n] = '\0';
    CHECK(strstr(raw, line) != NULL);
    p = strstr(raw, "\r\n\r\n");
    CHECK(p != NULL);
    CHECK_EQ(n - (size_t)(p + 4 - raw), body);
    cli_close(c);
    free(raw);
}

/* An answer from a timer, and streamed answers (chunked, with a length, HEAD). */
static void c_async_stream(void)
{
    const unsigned n = 64, size = 65536;
    uint8_t *want = check_malloc((size_t)n * size);
    struct cli c;
    struct resp r;
    char tail[5];
    unsigned i;

    cli_connect(&c);
    cli_send(&c, "GET /delay?ms=50&id=a HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    expect_body(&r, "delayed a");
    CHECK_EQ(atomic_load(&g_delay_connected), 1);
    resp_free(&r);

    for (i = 0; i < n; i++)
        fill_piece(want + (size_t)i * size, size, i);
    cli_send(&c, "GET /stream?n=64&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    CHECK_STR(resp_header(&r, "transfer-encoding"), "chunked");
    CHECK(resp_header(&r, "content-length") == NULL);
    CHECK(strstr(r.first, "\r\n\r\n10000\r\n") != NULL); /* the first chunk's size line */
    raw_tail(&r, tail, 5);
    CHECK_MEM(tail, "0\r\n\r\n", 5);
    CHECK_EQ(r.blen, (size_t)n * size);
    CHECK_MEM(r.body, want, r.blen);
    resp_free(&r);

    cli_send(&c, "GET /stream?n=3&size=1000&len=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_STR(resp_header(&r, "content-length"), "3000");
    CHECK(resp_header(&r, "transfer-encoding") == NULL);
    CHECK_EQ(r.blen, 3000);
    for (i = 0; i < 3; i++) {
        fill_piece(want, 1000, i);
        CHECK_MEM(r.body + i * 1000, want, 1000);
    }
    resp_free(&r);

    /* Empty writes must not end a chunked body early. */
    cli_send(&c, "GET /stream?n=2&size=0 HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.blen, 0);
    resp_free(&r);

    /* HEAD of streams: headers as for GET, no body; the connection still parses. */
    cli_send(&c, "HEAD /stream?n=3&size=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, true);
    CHECK_STR(resp_header(&r, "transfer-encoding"), "chunked");
    resp_free(&r);
    cli_send(&c, "HEAD /stream?n=3&size=1000&len=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, true);
    CHECK_STR(resp_header(&r, "content-length"), "3000");
    resp_free(&r);
    cli_send(&c, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&c, &r, false);
    expect_body(&r, JSON_GET);
    resp_free(&r);

    /* A body shorter than its Content-Length: what was sent, then the close. */
    cli_send(&c, "GET /stream?n=2&size=1000&len=1&short=500 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_short(&c, "Content-Length: 2500\r\n", 2000);
    CHECK_EQ(atomic_load(&g_stream_failed), 0);
    free(want);
}

/* Sends req on a new connection and expects status, then the close. */
static void expect_refusal(const char *req, int status)
{
    struct cli c;
    struct resp r;

    cli_connect(&c);
    cli_send(&c, req);
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, status);
    CHECK_STR(resp_header(&r, "connection"), "close");
    resp_free(&r);
    cli_expect_close(&c, WAIT_MS);
}

/* 400, 431 and 413 (max_header_bytes 4096, max_body 65536). */
static void c_limits(void)
{
    char *big = check_malloc(70000);
    struct cli c;
    struct resp r;
    size_t hl;
    int i;

    expect_refusal("GARBAGE\r\n\r\n", 400);
    expect_refusal("GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    expect_refusal("GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    expect_refusal("GET /json HTTP/1.1\r\nBad Header\r\n\r\n", 400);

    hl = (size_t)snprintf(big, 70000, "GET /json HTTP/1.1\r\nX-Big: ");
    memset(big + hl, 'a', 5000);
    memcpy(big + hl + 5000, "\r\n\r\n", 5);
    expect_refusal(big, 431);

    /* A header just under the limit passes. */
    memcpy(big + hl + 3900, "\r\n\r\n", 5);
    get_once(big, &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);

    /* Refused up front by Content-Length, while the client is still sending. */
    cli_connect(&c);
    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    memset(big, 'b', 20000);
    cli_send_n(&c, big, 20000); /* the server may have closed already */
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 413);
    resp_free(&r);
    cli_expect_close(&c, WAIT_MS);

    /* Chunked: refused once the streamed bytes pass the limit. */
    cli_connect(&c);
    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    memcpy(big, "4000\r\n", 6);
    memset(big + 6, 'c', 0x4000);
    memcpy(big + 6 + 0x4000, "\r\n", 2);
    for (i = 0; i < 5; i++) {
        if (cli_send_n(&c, big, 0x4000 + 8) < 0)
            break;
    }
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 413);
    resp_free(&r);
    cli_expect_close(&c, WAIT_MS);

    /* Exactly max_body passes, chunked and with a length. */
    cli_connect(&c);
    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (i = 0; i < 4; i++)
        CHECK_EQ(cli_send_n(&c, big, 0x4000 + 8), 0);
    cli_send(&c, "0\r\n\r\n");
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.blen, 65536);
    resp_free(&r);
    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n");
    CHECK_EQ(cli_send_n(&c, big + 6, 65536 - 0x4000 * 3), 0);
    for (i = 0; i < 3; i++)
        CHECK_EQ(cli_send_n(&c, big + 6, 0x4000), 0);
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.blen, 65536);
    resp_free(&r);

    stats_on(&c, &r);
    CHECK_EQ(stat_of(&r, "bad"), 7);
    resp_free(&r);
    cli_close(&c);
    free(big);
}

/* idle_ms 200: silent, half-sent and finished keep-alive connections are closed. */
static void c_idle(void)
{
    struct cli a, b, k;
    struct resp r;
    int64_t t0 = now_ms();

    cli_connect(&a);
    cli_connect(&b);
    cli_send(&b, "GET /json HTTP/1.1\r\nHost:");
    cli_connect(&k);
    cli_send(&k, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&k, &r, false);
    expect_body(&r, JSON_GET);
    resp_free(&r);
    cli_expect_close(&a, 2000);
    cli_expect_close(&b, 2000);
    cli_expect_close(&k, 2000);
    CHECK(now_ms() - t0 >= 150);

    cli_connect(&a);
    stats_on(&a, &r);
    CHECK_EQ(stat_of(&r, "timeouts"), 3);
    resp_free(&r);
    cli_close(&a);
}

/* Polls /stats on c until open reaches want. */
static void wait_open(struct cli *c, unsigned long long want)
{
    int64_t end = now_ms() + WAIT_MS;
    struct resp r;

    for (;;) {
        stats_on(c, &r);
        if (stat_of(&r, "open") == want)
            break;
        resp_free(&r);
        CHECK(now_ms() < end);
        sleep_ms(5);
    }
    resp_free(&r);
}

/* max_conns 2: the third connection is accepted and closed at once. */
static void c_max_conns(void)
{
    struct cli a, b, x;
    struct resp r;

    cli_connect(&a);
    stats_on(&a, &r);
    resp_free(&r);
    cli_connect(&b);
    stats_on(&b, &r);
    CHECK_EQ(stat_of(&r, "open"), 2);
    resp_free(&r);

    cli_connect(&x);
    cli_expect_close(&x, WAIT_MS);
    stats_on(&b, &r);
    CHECK_EQ(stat_of(&r, "refused"), 1);
    resp_free(&r);

    cli_close(&a);
    wait_open(&b, 1);
    cli_connect(&x);
    cli_send(&x, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_read(&x, &r, false);
    expect_body(&r, JSON_GET);
    resp_free(&r);
    cli_close(&x);
    cli_close(&b);
}

/* Clients that go away before or while they are answered. */
static void c_disconnect(void)
{
    struct cli c;
    char b[4096];
    size_t got = 0;
    int64_t end = now_ms() + WAIT_MS;
    ssize_t n;

    cli_connect(&c);
    cli_send(&c, "GET /delay?ms=200&id=gone HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_for(&g_delay_started, 1);
    cli_close(&c);
    wait_for(&g_delayed, 1);
    CHECK_EQ(atomic_load(&g_delay_connected), 0);

    /* An endless stream: read a little, then leave. */
    cli_connect(&c);
    cli_send(&c, "GET /stream?n=1000000&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n");
    while (got < 200000) {
        wait_fd(c.fd, POLLIN, end);
        n = recv(c.fd, b, sizeof(b), 0);
        CHECK(n > 0 || (n < 0 && errno == EAGAIN));
        if (n > 0)
            got += (size_t)n;
    }
    cli_close(&c);
    wait_for(&g_stream_failed, 1);

    /* A pipelined request behind one whose client left is never handled. */
    cli_connect(&c);
    cli_send(&c, "GET /delay?ms=300&id=x HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /delay?ms=1&id=y HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_for(&g_delay_started, 2);
    cli_close(&c);
    wait_for(&g_delayed, 2);

    cli_connect(&c);
    wait_open(&c, 1);
    cli_close(&c);
    CHECK_EQ(atomic_load(&g_delay_started), 2);
}

/* The server closes while a request is being answered: the answer still arrives,
 * with Connection: close, and done comes after it. */
static void c_close_pending(void)
{
    struct cli c;
    struct resp r;

    cli_connect(&c);
    cli_send(&c, "GET /delay?ms=300&id=last HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_for(&g_delay_started, 1);
    wake_loop();
    cli_read(&c, &r, false);
    CHECK_EQ(r.status, 200);
    CHECK_STR(resp_header(&r, "connection"), "close");
    expect_body(&r, "delayed last");
    resp_free(&r);
    cli_expect_close(&c, WAIT_MS);
}

/* --- tests ----------------------------------------------------------------------- */

static const struct http_opts small = {.max_header_bytes = 4096, .max_body = 65536};

static void test_basic_unix(void)
{
    run(small, false, c_basic);
    CHECK_EQ(E.st.requests, 13);
    CHECK_EQ(E.st.bad_requests, 0);
    CHECK_EQ(E.st.connections, 4);
}

static void test_basic_tcp(void)
{
    run(small, true, c_basic);
    CHECK_EQ(E.st.requests, 13);
}

static void test_pipeline(void)
{
    run(small, false, c_pipeline);
    run(small, true, c_pipeline);
    run(small, false, c_pipeline_flood);
}

static void test_async_stream(void)
{
    run(small, true, c_async_stream);
}

static void test_limits(void)
{
    run(small, false, c_limits);
    CHECK_EQ(E.st.bad_requests, 7);
}

static void test_idle(void)
{
    struct http_opts o = {.idle_ms = 200};

    run(o, false, c_idle);
    CHECK_EQ(E.st.timeouts, 3);
}

static void test_max_conns(void)
{
    struct http_opts o = {.max_conns = 2};

    run(o, true, c_max_conns);
    CHECK_EQ(E.st.refused, 1);
    CHECK_EQ(E.st.connections, 3);
}

static void test_disconnect(void)
{
    run(small, false, c_disconnect);
}

static void test_close_pending(void)
{
    run(small, false, c_close_pending);
    CHECK_EQ(E.delayed_at_done, 1);
}

static int done_count;

static void count_done(void *arg)
{
    CHECK(arg == &done_count);
    done_count++;
}

static void ignore_req(void *arg, struct http_req *r)
{
    CHECK_EQ(http_respond(r, 500, NULL, NULL, 0), 0);
}

/* Binds a socket file at path and closes it without listening: what a dead process
 * leaves behind. */
static void make_stale_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    CHECK(fd >= 0);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ(close(fd), 0);
}

/* The socket file: a stale one is replaced, a live one refused, anything else left. */
static void test_unix_socket(void)
{
    struct http_opts o = {.handler = ignore_req};
    struct http_server *a, *b;
    char file[400], longp[200];
    uv_loop_t loop;
    struct stat st;
    int fd;

    make_dir();
    make_stale_socket(E.sock);
    CHECK_EQ(uv_loop_init(&loop), 0);
    CHECK_EQ(http_server_new(&loop, &o, &a), 0);
    CHECK_EQ(http_server_new(&loop, &o, &b), 0);
    CHECK_EQ(http_listen_unix(a, E.sock), 0);
    CHECK_EQ(stat(E.sock, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);

    CHECK_EQ(http_listen_unix(b, E.sock), -EADDRINUSE);
    CHECK_EQ(stat(E.sock, &st), 0);

    snprintf(file, sizeof(file), "%s/plain", E.dir);
    fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(close(fd), 0);
    CHECK_EQ(http_listen_unix(b, file), -EEXIST);
    CHECK_EQ(stat(file, &st), 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK_EQ(unlink(file), 0);

    memset(longp, 'x', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    CHECK_EQ(http_listen_unix(b, longp), -ENAMETOOLONG);
    CHECK_EQ(http_tcp_port(b), -ENOENT);
    CHECK_EQ(http_listen_tcp(b, "not-an-address", 1), -EINVAL);
    fd = http_listen_tcp(b, "::1", 0); /* IPv6 may be off here */
    CHECK(fd == 0 || fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT);
    if (fd == 0)
        CHECK(http_tcp_port(b) > 0);

    done_count = 0;
    http_server_close(a, count_done, &done_count);
    http_server_close(b, count_done, &done_count);
    CHECK_EQ(done_count, 0); /* done comes from the loop, never from the call */
    CHECK(stat(E.sock, &st) < 0 && errno == ENOENT);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(done_count, 2);
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_EQ(rmdir(E.dir), 0);
}

static void expect_param(const char *q, const char *name, int want, const char *value)
{
    char out[16];

    memset(out, 'z', sizeof(out));
    CHECK_EQ(http_query_param(q, name, out, sizeof(out)), want);
    if (value)
        CHECK_STR(out, value);
}

static void test_query_param(void)
{
    const char *q = "a=1&b=two%20words&c=x+y&flag&my%20key=v&a=2&e=&ab=3";
    char small_out[4];

    expect_param(q, "a", 1, "1"); /* the first of two */
    expect_param(q, "b", 9, "two words");
    expect_param(q, "c", 3, "x y");
    expect_param(q, "flag", 0, "");
    expect_param(q, "my key", 1, "v");
    expect_param(q, "e", 0, "");
    expect_param(q, "ab", 1, "3");
    expect_param(q, "missing", -ENOENT, NULL);
    expect_param(q, "fla", -ENOENT, NULL);
    expect_param("", "a", -ENOENT, NULL);
    expect_param("a=%zz", "a", -EINVAL, NULL);
    expect_param("a=%4", "a", -EINVAL, NULL);
    expect_param("a=x%00y", "a", -EINVAL, NULL);
    expect_param("a=%41%2b%2B", "a", 3, "A++");
    expect_param("a=1&&b=2", "b", 1, "2");
    CHECK_EQ(http_query_param("a=abc", "a", small_out, sizeof(small_out)), 3);
    CHECK_STR(small_out, "abc");
    CHECK_EQ(http_query_param("a=abcd", "a", small_out, sizeof(small_out)), -ENOBUFS);
    CHECK_EQ(http_query_param("a=", "a", small_out, 0), -ENOBUFS);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as http.h asks of the host */
    RUN(test_query_param);
    RUN(test_unix_socket);
    RUN(test_basic_unix);
    RUN(test_basic_tcp);
    RUN(test_pipeline);
    RUN(test_async_stream);
    RUN(test_limits);
    RUN(test_idle);
    RUN(test_max_conns);
    RUN(test_disconnect);
    RUN(test_close_pending);
    return check_done();
}
