/* hub_io.c - the one place where libuv meets libcurl (docs/style.md §5).
 *
 * DESIGN. One curl multi handle runs on the node's loop with the "multi_socket" API:
 * curl tells us which sockets to watch (on_socket: one uv_poll_t per socket, remembered
 * with curl_multi_assign) and when to wake it (on_curl_timer: one uv_timer_t). Both uv
 * callbacks end in hub__drive(), the only caller of curl_multi_socket_action. After
 * curl returns, hub__drive drains curl_multi_info_read (finished attempts go to
 * hub__xfer_done in hub.c) and has hub.c deliver buffered bytes: user callbacks never
 * run inside a curl callback, so they may start, cancel or close anything.
 *
 * Each attempt of a request has its own easy handle (connections live in the multi's
 * pool, so they are reused across handles). The write callback only buffers: it asks
 * hub.c what to do with the bytes (hub__body) and returns CURL_WRITEFUNC_PAUSE when the
 * request's buffer is full or its user paused; hub.c resumes with hub__io_unpause.
 *
 * Shutdown (hub__io_shutdown, run from the loop via the kick timer): every easy handle
 * is already gone; curl_multi_cleanup runs while the loop still runs (it may call
 * on_socket), then the timers and any polls left are closed, and hub.c frees the hub
 * when the last close callback has run.
 */
#include "hub_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hub_sock { /* one per curl socket */
    uv_poll_t poll;
    curl_socket_t fd;
    struct hub *hub;
    struct hub_link link; /* hub->socks */
};

static void hub__drive(struct hub *h, curl_socket_t fd, int what);
static void hub__complete(struct hub *h);

/* Translates a finished transfer into Shoal's codes (style.md §4: the one boundary). */
static int hub__err(CURLcode result, long os_errno)
{
    switch (result) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
        return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
        return -EPROTO;
    default: /* partial file, recv/send errors, HTTP/2 stream errors, empty replies */
        return -EIO;
    }
}

/* --- sockets and timers ----------------------------------------------------------- */

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct hub_sock *s = container_of(p, struct hub_sock, poll);
    int what = status < 0 ? CURL_CSELECT_ERR : 0;

    if (events & UV_READABLE)
        what |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        what |= CURL_CSELECT_OUT;
    hub__drive(s->hub, s->fd, what);
}

static void on_sock_closed(uv_handle_t *handle)
{
    struct hub_sock *s = container_of((uv_poll_t *)handle, struct hub_sock, poll);
    struct hub *h = s->hub;

    free(s);
    hub__handle_closed(h);
}

static void sock_close(struct hub_sock *s)
{
    link_del(&s->link);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static struct hub_sock *sock_new(struct hub *h, curl_socket_t fd)
{
    struct hub_sock *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    if (uv_poll_init_socket(h->loop, &s->poll, fd) < 0) {
        free(s);
        return NULL;
    }
    s->fd = fd;
    s->hub = h;
    link_add(&h->socks, &s->link);
    h->handles++;
    if (h->multi)
        curl_multi_assign(h->multi, fd, s);
    return s;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct hub *h = userp;
    struct hub_sock *s = socketp;
    int events = 0;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            if (h->multi) /* NULL inside curl_multi_cleanup */
                curl_multi_assign(h->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (!s && !(s = sock_new(h, fd)))
        return -1; /* curl fails the transfers on this socket */
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) < 0 ? -1 : 0;
}

static void on_timer(uv_timer_t *t)
{
    hub__drive(container_of(t, struct hub, timer), CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: only (re)starts our timer; curl must not be called from here. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct hub *h = userp;

    if (timeout_ms < 0)
        return uv_timer_stop(&h->timer) < 0 ? -1 : 0;
    if (timeout_ms == 0)
        timeout_ms = 1; /* not 0: socket_action would recurse from inside curl */
    return uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0) < 0 ? -1 : 0;
}

static void on_kick(uv_timer_t *t)
{
    struct hub *h = container_of(t, struct hub, kick);

    if (h->closing)
        hub__io_shutdown(h);
    else
        hub__complete(h);
}

void hub__io_kick(struct hub *h)
{
    if (!h->shut)
        uv_timer_start(&h->kick, on_kick, 0, 0);
}

/* Hands finished attempts to hub.c. The easy handle stays alive inside hub__xfer_done,
 * so headers can still be read there; hub.c ends it with hub__io_end. */
static void drain(struct hub *h)
{
    struct hub_req *r;
    CURLMsg *m;
    long os_errno, status;
    int left;

    while (!h->closing && (m = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r || r->easy != m->easy_handle)
            continue;
        os_errno = status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        r->status = (int)status;
        hub__xfer_done(r, hub__err(m->data.result, os_errno));
    }
}

/* What follows every curl call that can move transfers: finished attempts, then bytes. */
static void hub__complete(struct hub *h)
{
    if (h->shut)
        return;
    drain(h);
    if (!h->closing)
        hub__flush(h);
}

/* fd may be CURL_SOCKET_TIMEOUT (which equals CURL_SOCKET_BAD): curl's timer ran out. */
static void hub__drive(struct hub *h, curl_socket_t fd, int what)
{
    int running;

    if (h->shut)
        return;
    curl_multi_socket_action(h->multi, fd, what, &running);
    hub__complete(h);
}

/* --- the multi handle ------------------------------------------------------------- */

static void on_hub_handle_closed(uv_handle_t *handle)
{
    hub__handle_closed(handle->data);
}

int hub__io_init(struct hub *h)
{
    CURLM *m;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) /* counted; once per hub */
        return -ENOMEM;
    m = curl_multi_init();
    if (!m) {
        curl_global_cleanup();
        return -ENOMEM;
    }
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(m, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)h->max_conns);
    curl_multi_setopt(m, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    h->multi = m;
    link_init(&h->socks);
    uv_timer_init(h->loop, &h->timer);
    uv_timer_init(h->loop, &h->kick);
    h->timer.data = h->kick.data = h;
    h->handles += 2;
    return 0;
}

void hub__io_shutdown(struct hub *h)
{
    CURLM *m = h->multi;

    if (h->shut)
        return;
    h->multi = NULL;
    curl_multi_cleanup(m); /* may call on_socket(REMOVE) for pooled connections */
    curl_global_cleanup();
    h->shut = true;
    while (!link_empty(&h->socks))
        sock_close(container_of(h->socks.next, struct hub_sock, link));
    uv_close((uv_handle_t *)&h->timer, on_hub_handle_closed);
    uv_close((uv_handle_t *)&h->kick, on_hub_handle_closed);
}

/* --- one attempt ------------------------------------------------------------------- */

static size_t on_write(char *data, size_t size, size_t n, void *arg)
{
    struct hub_req *r = arg;
    size_t len = size * n;
    long status = 0;
    int rc;

    if (r->user_paused) {
        r->io_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    r->last_rx = uv_now(r->hub->loop);
    if (r->sink == HUB_SINK_NONE) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        r->status = (int)status;
        hub__on_head(r);
    }
    rc = hub__body(r, (const uint8_t *)data, len);
    if (rc == HUB_BODY_PAUSE) {
        r->io_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return rc == HUB_BODY_OK ? len : 0; /* 0: CURLE_WRITE_ERROR, r->fail says why */
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct hub_req *r = arg;

    r->last_rx = uv_now(r->hub->loop); /* headers are progress too */
    return size * n;
}

/* The request is on a connection now: from here on, silence counts as a stall (a
 * transfer queued behind max_conns is not stalled). */
static int on_prereq(void *arg, char *pip, char *lip, int pport, int lport)
{
    struct hub_req *r = arg;

    r->connected = true;
    r->last_rx = uv_now(r->hub->loop);
    return CURL_PREREQFUNC_OK;
}

static void slist_wipe_free(struct curl_slist *l)
{
    struct curl_slist *i;

    for (i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

static int build_headers(struct hub_req *r, bool auth, struct curl_slist **out)
{
    struct curl_slist *l = NULL, *t;
    const char *first =
        r->kind == HUB_KIND_JSON ? "Accept: application/json" : "Accept-Encoding: identity";

    t = curl_slist_append(l, first);
    if (!t)
        return -ENOMEM;
    l = t;
    if (auth && r->hub->auth) {
        t = curl_slist_append(l, r->hub->auth);
        if (!t) {
            slist_wipe_free(l);
            return -ENOMEM;
        }
    }
    *out = l;
    return 0;
}

static void set_options(struct hub_req *r, CURL *e, const char *url, struct curl_slist *l)
{
    struct hub *h = r->hub;
    char range[64];

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* hub.c follows, minding the token */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L); /* rather share an HTTP/2 connection */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->connect_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    if (r->kind == HUB_KIND_JSON) {
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* what this libcurl decodes */
    } else {
        snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, r->off + r->got,
                 r->off + r->len - 1);
        curl_easy_setopt(e, CURLOPT_RANGE, range);
    }
}

int hub__io_start(struct hub_req *r, const char *url, bool auth)
{
    struct curl_slist *l;
    CURL *e;
    int err;

    err = build_headers(r, auth, &l);
    if (err < 0)
        return err;
    e = curl_easy_init();
    if (!e) {
        slist_wipe_free(l);
        return -ENOMEM;
    }
    set_options(r, e, url, l);
    r->easy = e;
    r->slist = l;
    if (curl_multi_add_handle(r->hub->multi, e) != CURLM_OK) {
        hub__io_end(r);
        return -ENOMEM;
    }
    return 0;
}

void hub__io_end(struct hub_req *r)
{
    if (r->easy) {
        if (r->hub->multi)
            curl_multi_remove_handle(r->hub->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    if (r->slist) {
        slist_wipe_free(r->slist);
        r->slist = NULL;
    }
    r->io_paused = false;
}

void hub__io_unpause(struct hub_req *r)
{
    if (r->easy && r->io_paused) {
        r->io_paused = false;
        curl_easy_pause(r->easy, CURLPAUSE_CONT); /* may call on_write right here */
    }
}

const char *hub__io_header(struct hub_req *r, const char *name, size_t idx)
{
    struct curl_header *hh;

    if (!r->easy || curl_easy_header(r->easy, name, idx, CURLH_HEADER, -1, &hh) != CURLHE_OK)
        return NULL;
    return hh->value;
}

size_t hub__io_header_count(struct hub_req *r, const char *name)
{
    struct curl_header *hh;

    if (!r->easy || curl_easy_header(r->easy, name, 0, CURLH_HEADER, -1, &hh) != CURLHE_OK)
        return 0;
    return hh->amount;
}

const char *hub__io_redirect(struct hub_req *r)
{
    char *url = NULL;

    if (!r->easy || curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &url) != CURLE_OK)
        return NULL;
    return url;
}

static void lower(char *s)
{
    for (; *s; s++) {
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
    }
}

int hub__io_origin(const char *url, char *out, size_t cap)
{
    char *scheme = NULL, *host = NULL, *port = NULL;
    CURLU *u = curl_url();
    int err = -EINVAL, n;

    if (!u)
        return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    n = snprintf(out, cap, "%s://%s:%s", scheme, host, port);
    if (n < 0 || (size_t)n >= cap)
        goto out;
    lower(out);
    err = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return err;
}
