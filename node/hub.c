/* hub.c - the Hub client's request logic (hub.h); libcurl itself is behind hub_io.c.
 *
 * DESIGN. A request is a series of attempts. An attempt is one HTTP exchange on one
 * URL; a 3xx answer starts the next attempt on its Location within the same try (the
 * token goes only to the endpoint's origin), any retryable failure schedules a new try
 * from the original URL after a backoff (a signed CDN URL may have expired, and the
 * Hub hands out a fresh one). A range request asks each attempt for the bytes it still
 * lacks, so bytes reach the data callback once, in order.
 *
 * Each request owns one uv timer: while a transfer runs it checks for stalls, between
 * tries it is the backoff. The request is freed in that timer's close callback, so a
 * request stays valid for the rest of the loop turn in which it finished or was
 * cancelled, which is what makes the reentrancy below safe.
 *
 * Body bytes arrive in hub_io.c's write callback, which only buffers (hub__body); user
 * callbacks run from hub__flush and hub__xfer_done after curl has returned, and may
 * start, cancel or close anything.
 */
#include "hub.h"

#include "err.h"
#include "hub_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "0.1"
#endif

#define NO_RETRY_AFTER UINT64_MAX

static void attempt_or_fail(struct hub_req *r, const char *url);

/* --- small helpers ----------------------------------------------------------------- */

/* Copies a header value for display: bounded, control characters become spaces. */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t i;

    for (i = 0; src && src[i] && i + 1 < cap; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
    dst[i] = '\0';
}

static bool is_abs_url(const char *u)
{
    return strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0;
}

static bool is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static bool retryable_status(int s)
{
    return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

static bool retryable_err(int err)
{
    switch (err) {
    case -ETIMEDOUT:
    case -EIO:
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -ECONNABORTED:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -EPIPE:
        return true;
    default:
        return false;
    }
}

static uint64_t next_rand(struct hub *h)
{
    uint64_t z = (h->rng += UINT64_C(0x9E3779B97F4A7C15));

    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Parses decimal digits at *p (no sign, no overflow). */
static bool parse_u64(const char **p, uint64_t *v)
{
    const char *s = *p;
    uint64_t x = 0;

    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (x > (UINT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *v = x;
    return true;
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* --- requests: lifetime ------------------------------------------------------------ */

static void on_req_closed(uv_handle_t *handle)
{
    struct hub_req *r = container_of((uv_timer_t *)handle, struct hub_req, timer);
    struct hub *h = r->hub;

    free(r->url);
    free(r->cur);
    free(r->location);
    free(r->buf);
    free(r);
    hub__handle_closed(h);
}

static void pend_del(struct hub_req *r)
{
    if (r->pending) {
        link_del(&r->pend);
        r->pending = false;
    }
}

/* Takes r out of the hub: no transfer, no timer, no list. */
static void release(struct hub_req *r)
{
    r->finished = true;
    link_del(&r->all);
    r->hub->st.in_flight--;
    pend_del(r);
    hub__io_end(r);
    uv_timer_stop(&r->timer);
}

static void finish(struct hub_req *r, int err, json_t *doc)
{
    if (r->finished) {
        json_decref(doc);
        return;
    }
    release(r);
    if (err < 0)
        r->hub->st.errors++;
    if (r->kind == HUB_KIND_JSON)
        r->json_cb(r->arg, err, doc, &r->res);
    else
        r->done_cb(r->arg, err, &r->res);
    uv_close((uv_handle_t *)&r->timer, on_req_closed);
}

void hub_cancel(struct hub_req *r)
{
    if (!r || r->finished)
        return;
    release(r);
    uv_close((uv_handle_t *)&r->timer, on_req_closed);
}

/* --- delivery ---------------------------------------------------------------------- */

/* Hands r's buffered range bytes to its data callback. */
static void deliver(struct hub_req *r)
{
    size_t n;
    int rc;

    pend_del(r);
    if (r->sink != HUB_SINK_DATA)
        return; /* buf holds an error body, not range bytes */
    while (!r->finished && r->used > 0) {
        n = r->used;
        r->used = 0;
        rc = r->data_cb(r->arg, r->off + r->got, r->buf, n);
        if (r->finished)
            return; /* cancelled (or the hub closed) inside the callback */
        r->got += n;
        if (rc < 0) {
            finish(r, rc, NULL);
            return;
        }
        if (rc == HUB_PAUSE) {
            r->user_paused = true;
            break;
        }
        hub__io_unpause(r); /* curl may hand over more right here */
    }
    pend_del(r);
}

void hub__flush(struct hub *h)
{
    while (!link_empty(&h->pending))
        deliver(container_of(h->pending.next, struct hub_req, pend));
}

void hub_resume(struct hub_req *r)
{
    if (!r || r->finished || !r->user_paused)
        return;
    r->user_paused = false;
    if (r->easy) {
        r->last_rx = uv_now(r->hub->loop);
        uv_timer_again(&r->timer); /* the stall check, stopped while paused */
        hub__io_unpause(r);
        hub__io_kick(r->hub); /* deliver what curl handed over, from the loop */
    }
}

/* --- answers ------------------------------------------------------------------------ */

static int buf_reserve(struct hub_req *r, size_t need)
{
    size_t cap = r->cap ? r->cap : 16384;
    uint8_t *b;

    if (need <= r->cap)
        return 0;
    while (cap < need)
        cap *= 2;
    b = realloc(r->buf, cap);
    if (!b)
        return -ENOMEM;
    r->buf = b;
    r->cap = cap;
    return 0;
}

/* "bytes a-b/total": a must be where we asked to start, b inside the range. */
static int check_content_range(struct hub_req *r, const char *v)
{
    uint64_t a, b;

    if (!v || strncmp(v, "bytes", 5) != 0)
        return -EPROTO;
    v = skip_ws(v + 5);
    if (!parse_u64(&v, &a) || *v++ != '-' || !parse_u64(&v, &b) || *v != '/')
        return -EPROTO;
    if (a != r->off + r->got || b < a || b >= r->off + r->len)
        return -EPROTO;
    r->rx = a;
    return 0;
}

void hub__on_head(struct hub_req *r)
{
    int s = r->status;

    r->used = 0;
    if (is_redirect(s)) {
        r->sink = HUB_SINK_DISCARD;
    } else if (s < 200 || s >= 300) {
        r->sink = HUB_SINK_ERR;
    } else if (r->kind == HUB_KIND_JSON) {
        r->sink = HUB_SINK_JSON;
    } else if (s == 206) {
        r->sink = HUB_SINK_DATA;
        r->fail = check_content_range(r, hub__io_header(r, "Content-Range", 0));
    } else if (s == 200) {
        r->sink = HUB_SINK_DATA; /* the whole file: skip to the bytes we lack */
        r->rx = 0;
    } else {
        r->sink = HUB_SINK_DISCARD;
        r->fail = -EPROTO;
    }
}

static int body_range(struct hub_req *r, const uint8_t *data, size_t len)
{
    uint64_t want = r->off + r->got + r->used, end = r->off + r->len;
    uint64_t skip = 0, take, extra;
    size_t cap;

    if (r->rx > want) {
        r->fail = -EPROTO; /* cannot happen after check_content_range */
        return HUB_BODY_ABORT;
    }
    if (r->rx < want)
        skip = want - r->rx < len ? want - r->rx : len;
    take = len - skip;
    if (take > end - want)
        take = end - want;
    extra = len - skip - take;
    if (take > r->cap - r->used) {
        if (r->used > 0)
            return HUB_BODY_PAUSE; /* delivered first, then curl hands these over again */
        cap = r->len < HUB_BUF_SIZE ? (size_t)r->len : HUB_BUF_SIZE;
        if (buf_reserve(r, take > cap ? take : cap) < 0) {
            r->fail = -ENOMEM;
            return HUB_BODY_ABORT;
        }
    }
    if (take > 0)
        memcpy(r->buf + r->used, data + skip, take);
    r->used += take;
    r->rx += len;
    r->hub->st.bytes += len;
    if (take > 0 && !r->pending) {
        link_add(&r->hub->pending, &r->pend);
        r->pending = true;
    }
    if (extra > 0) {
        r->fail = HUB_FAIL_COMPLETE; /* all we want is here; the rest is not ours */
        return HUB_BODY_ABORT;
    }
    return HUB_BODY_OK;
}

int hub__body(struct hub_req *r, const uint8_t *data, size_t len)
{
    size_t keep;

    if (r->fail)
        return HUB_BODY_ABORT;
    switch (r->sink) {
    case HUB_SINK_DATA:
        return body_range(r, data, len);
    case HUB_SINK_JSON:
        if (len > HUB_JSON_MAX - r->used) {
            r->fail = -EPROTO;
            return HUB_BODY_ABORT;
        }
        if (buf_reserve(r, r->used + len) < 0) {
            r->fail = -ENOMEM;
            return HUB_BODY_ABORT;
        }
        memcpy(r->buf + r->used, data, len);
        r->used += len;
        break;
    case HUB_SINK_ERR:
        keep = HUB_ERRBODY - r->used < len ? HUB_ERRBODY - r->used : len;
        if (keep > 0 && buf_reserve(r, HUB_ERRBODY) == 0) {
            memcpy(r->buf + r->used, data, keep);
            r->used += keep;
        }
        break;
    default:
        break;
    }
    r->hub->st.bytes += len;
    return HUB_BODY_OK;
}

/* --- result fields ------------------------------------------------------------------ */

/* rel="next" in one link-value's parameters (rel may list several types). */
static bool rel_is_next(const char *p, const char *end)
{
    const char *v;
    size_t n;

    for (; p < end; p++) {
        if (strncasecmp(p, "rel", 3) != 0)
            continue;
        v = skip_ws(p + 3);
        if (*v != '=')
            continue;
        v = skip_ws(v + 1);
        if (*v == '"')
            v++;
        while (v < end && *v != '"' && *v != ';') {
            n = strcspn(v, " \t\";,");
            if (n == 4 && strncasecmp(v, "next", 4) == 0)
                return true;
            v += n ? n : 1;
        }
    }
    return false;
}

/* Link: <url>; rel="next", <url>; rel="last" -> the next URL (made absolute). */
static void parse_link(struct hub_req *r, const char *v)
{
    const char *lt, *gt, *end;
    char origin[HUB_ORIGIN_MAX] = "";
    int n;

    while (v && (lt = strchr(v, '<')) != NULL && (gt = strchr(lt, '>')) != NULL) {
        end = strchr(gt, ',');
        if (!end)
            end = gt + strlen(gt);
        if (rel_is_next(gt + 1, end)) {
            if (lt[1] == '/' && hub__io_origin(r->cur, origin, sizeof(origin)) < 0)
                return;
            n = snprintf(r->res.next, sizeof(r->res.next), "%s%.*s", lt[1] == '/' ? origin : "",
                         (int)(gt - lt - 1), lt + 1);
            if (n < 0 || (size_t)n >= sizeof(r->res.next) || !is_abs_url(r->res.next))
                r->res.next[0] = '\0';
            return;
        }
        v = *end ? end + 1 : end;
    }
}

/* {"error": "..."} or {"error": ["...", ...]} or OAuth's error_description. */
static void message_from_body(struct hub_req *r)
{
    json_t *doc, *e;

    if (r->sink != HUB_SINK_ERR || r->used == 0)
        return;
    doc = json_loadb((const char *)r->buf, r->used, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return;
    }
    e = json_object_get(doc, "error");
    if (json_is_array(e))
        e = json_array_get(e, 0);
    if (!json_is_string(e))
        e = json_object_get(doc, "error_description");
    if (json_is_string(e))
        copy_text(r->res.error_message, sizeof(r->res.error_message), json_string_value(e));
    json_decref(doc);
}

/* Retry-After as delay-seconds (an HTTP date is left to our own backoff). */
static uint64_t retry_after_ms(struct hub_req *r)
{
    const char *v = hub__io_header(r, "Retry-After", 0);
    uint64_t s;

    if (r->status != 429 && r->status != 503)
        return NO_RETRY_AFTER;
    if (!v || !parse_u64(&v, &s) || *skip_ws(v) != '\0')
        return NO_RETRY_AFTER;
    if (s > r->hub->retry_after_max_ms / 1000)
        return r->hub->retry_after_max_ms;
    return s * 1000;
}

/* What the answer said, read while the easy handle is still alive. */
static void read_answer(struct hub_req *r)
{
    struct hub_result *res = &r->res;
    const char *v;
    size_t i, n;

    res->status = r->status;
    res->error_code[0] = res->error_message[0] = '\0';
    free(r->location);
    r->location = NULL;
    r->retry_after = NO_RETRY_AFTER;
    if (r->status == 0)
        return;
    copy_text(res->error_code, sizeof(res->error_code), hub__io_header(r, "X-Error-Code", 0));
    copy_text(res->error_message, sizeof(res->error_message),
              hub__io_header(r, "X-Error-Message", 0));
    if (!res->error_message[0])
        message_from_body(r);
    v = hub__io_header(r, "X-Repo-Commit", 0);
    if (v) /* kept from a redirect when the final answer (the CDN) has none */
        copy_text(res->repo_commit, sizeof(res->repo_commit), v);
    if (r->kind == HUB_KIND_JSON) {
        res->next[0] = '\0';
        n = hub__io_header_count(r, "Link");
        for (i = 0; i < n && !res->next[0]; i++)
            parse_link(r, hub__io_header(r, "Link", i));
    }
    r->retry_after = retry_after_ms(r);
    if (is_redirect(r->status) && (v = hub__io_redirect(r)) != NULL)
        r->location = strdup(v);
}

/* --- attempts, retries ---------------------------------------------------------------- */

static void on_stall_check(uv_timer_t *t);

static int attempt(struct hub_req *r, const char *url)
{
    struct hub *h = r->hub;
    char origin[HUB_ORIGIN_MAX];
    uint64_t period;
    char *cur;
    int err;

    if (strlen(url) >= HUB_URL_MAX)
        return -EINVAL;
    if (!is_abs_url(url) || hub__io_origin(url, origin, sizeof(origin)) < 0)
        return -EPROTO;
    cur = strdup(url);
    if (!cur)
        return -ENOMEM;
    free(r->cur);
    r->cur = cur;
    copy_text(r->res.host, sizeof(r->res.host), strstr(origin, "://") + 3);
    r->status = 0;
    r->sink = HUB_SINK_NONE;
    r->rx = 0;
    r->fail = 0;
    r->used = 0;
    r->connected = false;
    r->last_rx = uv_now(h->loop);
    /* The token goes to the endpoint's origin only: never to the CDN (hub-protocol §1.8). */
    err = hub__io_start(r, url, strcmp(origin, h->origin) == 0);
    if (err < 0)
        return err;
    h->st.requests++;
    /* Checked four times per stall_ms, so a stall is seen within 1.25 stall_ms. */
    period = h->stall_ms / 4 ? h->stall_ms / 4 : 1;
    uv_timer_start(&r->timer, on_stall_check, period, period);
    return 0;
}

static void attempt_or_fail(struct hub_req *r, const char *url)
{
    int err = attempt(r, url);

    if (err < 0)
        finish(r, err, NULL);
}

static void on_backoff(uv_timer_t *t)
{
    struct hub_req *r = container_of(t, struct hub_req, timer);

    r->redirects = 0;
    r->got_start = r->got;
    attempt_or_fail(r, r->url);
}

/* Full jitter: uniform in [0, min(max, base * 2^(tries-1))]. */
static uint64_t backoff_ms(struct hub *h, unsigned tries)
{
    uint64_t cap = h->backoff_ms;
    unsigned i;

    for (i = 1; i < tries && cap < h->backoff_max_ms; i++)
        cap *= 2;
    if (cap > h->backoff_max_ms)
        cap = h->backoff_max_ms;
    return next_rand(h) % (cap + 1);
}

static void retry(struct hub_req *r, int err)
{
    struct hub *h = r->hub;
    uint64_t delay;

    if (r->got > r->got_start)
        r->tries = 0; /* progress: only failures in a row count */
    if (r->tries >= h->max_retries) {
        finish(r, err, NULL);
        return;
    }
    r->tries++;
    r->res.retries++;
    h->st.retries++;
    delay = r->retry_after != NO_RETRY_AFTER ? r->retry_after : backoff_ms(h, r->tries);
    uv_timer_start(&r->timer, on_backoff, delay, 0);
}

/* No byte for stall_ms on a transfer that has a connection: drop it and retry. */
static void on_stall_check(uv_timer_t *t)
{
    struct hub_req *r = container_of(t, struct hub_req, timer);
    struct hub *h = r->hub;
    uint64_t idle = uv_now(h->loop) - r->last_rx;

    if (!r->easy || r->user_paused) {
        uv_timer_stop(t); /* hub_resume restarts it */
        return;
    }
    if (!r->connected || idle < h->stall_ms)
        return;
    h->st.stalls++;
    if (r->kind == HUB_KIND_RANGE) {
        deliver(r);
        if (r->finished)
            return;
    }
    read_answer(r);
    r->retry_after = NO_RETRY_AFTER;
    hub__io_end(r);
    uv_timer_stop(t);
    retry(r, -ETIMEDOUT);
}

static void done_json(struct hub_req *r)
{
    json_error_t je;
    json_t *doc = json_loadb((const char *)r->buf, r->used, 0, &je);

    if (!doc) {
        finish(r, -EPROTO, NULL);
        return;
    }
    finish(r, 0, doc);
}

void hub__xfer_done(struct hub_req *r, int err)
{
    if (r->sink == HUB_SINK_NONE && r->status > 0)
        hub__on_head(r); /* an answer without a body */
    if (r->fail)
        err = r->fail < 0 ? r->fail : 0;
    if (r->kind == HUB_KIND_RANGE) {
        deliver(r); /* bytes before the outcome */
        if (r->finished)
            return;
    }
    read_answer(r);
    hub__io_end(r);
    uv_timer_stop(&r->timer);
    if (r->fail < 0) {
        finish(r, r->fail, NULL); /* a bad answer: retrying would get the same */
        return;
    }
    if (err == 0 && is_redirect(r->status)) {
        if (!r->location || ++r->redirects > HUB_REDIRECT_MAX)
            finish(r, -EPROTO, NULL);
        else
            attempt_or_fail(r, r->location);
        return;
    }
    if (err == 0 && r->status >= 200 && r->status < 300) {
        if (r->kind == HUB_KIND_JSON) {
            done_json(r);
            return;
        }
        if (r->got == r->len) {
            finish(r, 0, NULL);
            return;
        }
        err = -EIO; /* a short body: resume from the first missing byte */
    } else if (err == 0) {
        err = SHOAL_EHUB;
        if (!retryable_status(r->status)) {
            finish(r, err, NULL);
            return;
        }
    }
    if (retryable_err(err) || err == SHOAL_EHUB)
        retry(r, err);
    else
        finish(r, err, NULL);
}

/* --- public API ---------------------------------------------------------------------- */

static int req_new(struct hub *h, const char *url, enum hub_kind kind, struct hub_req **out)
{
    struct hub_req *r;
    size_t n;

    if (h->closing)
        return -ECANCELED;
    if (!url || (url[0] != '/' && !is_abs_url(url)))
        return -EINVAL;
    n = (url[0] == '/' ? strlen(h->endpoint) : 0) + strlen(url);
    if (n >= HUB_URL_MAX)
        return -EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r || !(r->url = malloc(n + 1))) {
        free(r);
        return -ENOMEM;
    }
    snprintf(r->url, n + 1, "%s%s", url[0] == '/' ? h->endpoint : "", url);
    r->hub = h;
    r->kind = kind;
    r->retry_after = NO_RETRY_AFTER;
    link_init(&r->pend);
    uv_timer_init(h->loop, &r->timer);
    h->handles++;
    link_add(&h->reqs, &r->all);
    h->st.in_flight++;
    *out = r;
    return 0;
}

static int req_start(struct hub_req *r, struct hub_req **out)
{
    int err = attempt(r, r->url);

    if (err < 0) {
        hub_cancel(r); /* no callback after an error return */
        return err == -EPROTO ? -EINVAL : err; /* the caller's URL, not an answer */
    }
    if (out)
        *out = r;
    return 0;
}

int hub_get_json(struct hub *h, const char *url, hub_json_cb cb, void *arg, struct hub_req **out)
{
    struct hub_req *r;
    int err;

    if (!h || !cb)
        return -EINVAL;
    err = req_new(h, url, HUB_KIND_JSON, &r);
    if (err < 0)
        return err;
    r->json_cb = cb;
    r->arg = arg;
    return req_start(r, out);
}

int hub_get_range(struct hub *h, const char *url, uint64_t off, uint64_t len, hub_data_cb data,
                  hub_done_cb done, void *arg, struct hub_req **out)
{
    struct hub_req *r;
    int err;

    if (!h || !data || !done || len == 0 || off + len < off)
        return -EINVAL;
    err = req_new(h, url, HUB_KIND_RANGE, &r);
    if (err < 0)
        return err;
    r->off = off;
    r->len = len;
    r->data_cb = data;
    r->done_cb = done;
    r->arg = arg;
    return req_start(r, out);
}

static void hub_free(struct hub *h)
{
    if (h->auth) {
        explicit_bzero(h->auth, strlen(h->auth));
        free(h->auth);
    }
    free(h->endpoint);
    free(h->user_agent);
    free(h);
}

static int copy_opts(struct hub *h, const struct hub_opts *o)
{
    size_t n = strlen(o->endpoint);

    while (n > 0 && o->endpoint[n - 1] == '/')
        n--;
    h->endpoint = strndup(o->endpoint, n);
    h->user_agent = strdup(o->user_agent ? o->user_agent : "shoal/" SHOAL_VERSION);
    if (!h->endpoint || !h->user_agent)
        return -ENOMEM;
    if (hub__io_origin(h->endpoint, h->origin, sizeof(h->origin)) < 0)
        return -EINVAL;
    if (o->token && o->token[0]) {
        if (strpbrk(o->token, "\r\n") || strlen(o->token) > 4096)
            return -EINVAL; /* would break the header */
        n = strlen("Authorization: Bearer ") + strlen(o->token) + 1;
        if (!(h->auth = malloc(n)))
            return -ENOMEM;
        snprintf(h->auth, n, "Authorization: Bearer %s", o->token);
    }
    h->max_conns = o->max_conns ? o->max_conns : 16;
    h->max_retries = o->max_retries ? o->max_retries : 6;
    h->connect_ms = o->connect_ms ? o->connect_ms : 10000;
    h->stall_ms = o->stall_ms ? o->stall_ms : 30000;
    h->backoff_ms = o->backoff_ms ? o->backoff_ms : 1000;
    h->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 16000;
    h->retry_after_max_ms = o->retry_after_max_ms ? o->retry_after_max_ms : 120000;
    return 0;
}

int hub_new(uv_loop_t *loop, const struct hub_opts *o, struct hub **out)
{
    struct hub *h;
    int err;

    if (!loop || !o || !o->endpoint || !is_abs_url(o->endpoint) || !out ||
        strlen(o->endpoint) >= HUB_URL_MAX)
        return -EINVAL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->loop = loop;
    link_init(&h->reqs);
    link_init(&h->pending);
    h->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)h;
    err = copy_opts(h, o);
    if (err == 0)
        err = hub__io_init(h);
    if (err < 0) {
        hub_free(h);
        return err;
    }
    *out = h;
    return 0;
}

void hub__handle_closed(struct hub *h)
{
    void (*cb)(void *);
    void *arg;

    h->handles--;
    if (!h->shut || h->handles > 0)
        return;
    cb = h->close_cb;
    arg = h->close_arg;
    hub_free(h);
    if (cb)
        cb(arg);
}

void hub_close(struct hub *h, void (*done)(void *arg), void *arg)
{
    if (h->closing)
        return;
    h->closing = true;
    h->close_cb = done;
    h->close_arg = arg;
    while (!link_empty(&h->reqs))
        finish(container_of(h->reqs.next, struct hub_req, all), -ECANCELED, NULL);
    hub__io_kick(h); /* curl_multi_cleanup from the loop, outside any curl call */
}

void hub_get_stats(const struct hub *h, struct hub_stats *out)
{
    *out = h->st;
}

int hub_escape(const char *s, bool keep_slash, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char c;
    size_t n = 0;

    for (; *s; s++) {
        c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
            if (n + 1 >= cap)
                return -ENOBUFS;
            out[n++] = (char)c;
            continue;
        }
        if (n + 3 >= cap)
            return -ENOBUFS;
        out[n++] = '%';
        out[n++] = hex[c >> 4];
        out[n++] = hex[c & 15];
    }
    if (n >= cap)
        return -ENOBUFS;
    out[n] = '\0';
    return (int)n;
}

/* --- messages ------------------------------------------------------------------------ */

static const char *after_retries(const struct hub_result *res, char *tmp, size_t cap)
{
    if (!res || res->retries == 0)
        return "";
    snprintf(tmp, cap, " (after %u retr%s)", res->retries, res->retries == 1 ? "y" : "ies");
    return tmp;
}

static void describe_hub(const struct hub_result *res, const char *w, char *buf, size_t cap)
{
    const char *code = res->error_code, *msg = res->error_message;
    int st = res->status;

    if (strcmp(code, "GatedRepo") == 0 && st == 401)
        snprintf(buf, cap,
                 "%s is a gated repository: set HF_TOKEN to a token of an account that "
                 "was granted access on the Hub",
                 w);
    else if (strcmp(code, "GatedRepo") == 0)
        snprintf(buf, cap,
                 "%s is a gated repository and this token has not been granted access: "
                 "ask for access on the Hub",
                 w);
    else if (strcmp(msg, "Access to this resource is disabled.") == 0)
        snprintf(buf, cap, "%s has been disabled on the Hub", w);
    else if (strcmp(msg, "Invalid credentials in Authorization header") == 0)
        snprintf(buf, cap,
                 "the Hub rejected the token (invalid credentials): check HF_TOKEN "
                 "or the token file");
    else if (strcmp(code, "RevisionNotFound") == 0)
        snprintf(buf, cap, "revision not found: %s", w);
    else if (strcmp(code, "EntryNotFound") == 0)
        snprintf(buf, cap, "file not found: %s", w);
    else if (strcmp(code, "RepoNotFound") == 0 || st == 401)
        snprintf(buf, cap, "repository not found: %s (or private: set HF_TOKEN)", w);
    else if (res->retries > 0)
        snprintf(buf, cap, "%s: HTTP %d after %u retries%s%s", w, st, res->retries,
                 msg[0] ? ": " : "", msg);
    else
        snprintf(buf, cap, "%s: HTTP %d from the Hub%s%s", w, st, msg[0] ? ": " : "", msg);
}

void hub_describe_error(int err, const struct hub_result *res, const char *what, char *buf,
                        size_t cap)
{
    const char *w = what && what[0] ? what : "hub request";
    const char *host = res && res->host[0] ? res->host : "the Hub";
    char tmp[48];
    const char *tail = after_retries(res, tmp, sizeof(tmp));

    if (!buf || cap == 0)
        return;
    switch (err) {
    case 0:
        snprintf(buf, cap, "%s: ok", w);
        break;
    case SHOAL_EHUB:
        if (res)
            describe_hub(res, w, buf, cap);
        else
            snprintf(buf, cap, "%s: the Hub refused the request", w);
        break;
    case -ECONNREFUSED:
        snprintf(buf, cap, "%s: connection refused to %s%s", w, host, tail);
        break;
    case -ETIMEDOUT:
        snprintf(buf, cap, "%s: timed out talking to %s%s", w, host, tail);
        break;
    case -EHOSTUNREACH:
    case -ENETUNREACH:
        snprintf(buf, cap, "%s: cannot reach %s%s", w, host, tail);
        break;
    case -EIO:
        snprintf(buf, cap, "%s: connection to %s failed%s", w, host, tail);
        break;
    case -EPROTO:
        snprintf(buf, cap, "%s: unexpected answer from %s (HTTP %d)", w, host,
                 res ? res->status : 0);
        break;
    case -ECANCELED:
        snprintf(buf, cap, "%s: cancelled", w);
        break;
    default:
        snprintf(buf, cap, "%s: %s%s", w, shoal_strerror(err), tail);
        break;
    }
}
