/* hub_int.h - what hub.c (request logic) and hub_io.c (libcurl on the libuv loop) share.
 *
 * Neither libcurl nor its types appear here: hub.c never includes <curl/curl.h>, so the
 * easy and multi handles travel as void pointers and hub_io.c alone casts them. The
 * split of work:
 *
 *   hub_io.c   curl multi + uv polls and timers; one easy handle per attempt; the write
 *              callback buffers body bytes in the request; hub__drive() completes
 *              attempts (hub__xfer_done) and delivers buffered bytes (hub__flush).
 *   hub.c      URLs, redirects, retries and backoff, the stall timer, what an answer
 *              means (hub__on_head), user callbacks, messages.
 *
 * User callbacks run only from hub__flush / hub__xfer_done (called by hub__drive after
 * curl returned) or from uv timer callbacks, never inside a libcurl callback.
 */
#ifndef SHOAL_HUB_INT_H
#define SHOAL_HUB_INT_H

#include "hub.h"

#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define HUB_BUF_SIZE   (256u << 10) /* range bytes buffered between curl and the callback */
#define HUB_ERRBODY    4096         /* kept of an error answer's body, for its message */
#define HUB_ORIGIN_MAX 512          /* "scheme://host:port" */

/* Intrusive doubly linked list (circular, with a head node). */
struct hub_link {
    struct hub_link *prev, *next;
};

static inline void link_init(struct hub_link *head)
{
    head->prev = head->next = head;
}

static inline bool link_empty(const struct hub_link *head)
{
    return head->next == head;
}

static inline void link_del(struct hub_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

static inline void link_add(struct hub_link *head, struct hub_link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

enum hub_kind { HUB_KIND_JSON, HUB_KIND_RANGE };

/* Where the body of the current answer goes (chosen by hub__on_head). */
enum hub_sink {
    HUB_SINK_NONE,    /* head not seen yet */
    HUB_SINK_JSON,    /* accumulate up to HUB_JSON_MAX */
    HUB_SINK_DATA,    /* range bytes: buffer for the data callback */
    HUB_SINK_ERR,     /* keep HUB_ERRBODY bytes of an error body */
    HUB_SINK_DISCARD, /* a redirect's body */
};

/* Positive marker in hub_req.fail: we stopped a transfer because every byte we wanted
 * had arrived (a 200 answer to a range, or a server sending past the range). */
#define HUB_FAIL_COMPLETE 1

/* hub__body results. */
#define HUB_BODY_OK    0
#define HUB_BODY_PAUSE 1 /* buffer full: tell curl to hold the bytes */
#define HUB_BODY_ABORT 2 /* stop the transfer; the reason is in hub_req.fail */

struct hub_req {
    struct hub *hub;
    struct hub_link all;  /* hub->reqs */
    struct hub_link pend; /* hub->pending while buf holds undelivered range bytes */
    bool pending;
    enum hub_kind kind;
    char *url;              /* absolute URL as asked; each retry starts here again */
    char *cur;              /* URL of the current attempt (after redirects) */
    uint64_t off, len, got; /* range, and bytes delivered to the data callback */
    hub_json_cb json_cb;
    hub_data_cb data_cb;
    hub_done_cb done_cb;
    void *arg;
    uv_timer_t timer; /* backoff wait, or the stall check while a transfer runs */

    /* The current attempt (hub_io.c owns these two). */
    void *easy;  /* CURL * or NULL between attempts */
    void *slist; /* struct curl_slist * of its request headers */
    unsigned redirects;
    int status;
    enum hub_sink sink;
    uint64_t rx;          /* file offset of the next body byte of a range answer */
    int fail;             /* our reason for aborting the transfer (or HUB_FAIL_COMPLETE) */
    bool connected;       /* the request went out on a connection: the stall clock runs */
    bool io_paused;       /* curl holds bytes we refused (CURL_WRITEFUNC_PAUSE) */
    bool user_paused;     /* the data callback returned HUB_PAUSE */
    bool finished;        /* done callback ran or hub_cancel: nothing more happens */
    uint64_t last_rx;     /* loop time of the last byte received */
    unsigned tries;       /* consecutive failed attempts without progress */
    uint64_t got_start;   /* got when the current attempt started */
    uint64_t retry_after; /* ms from a Retry-After on 429/503, or UINT64_MAX */
    char *location;       /* where a 3xx answer pointed */

    uint8_t *buf; /* body bytes: JSON, error body, or range bytes not yet delivered */
    size_t used, cap;
    struct hub_result res;
};

struct hub {
    uv_loop_t *loop;
    void *multi;      /* CURLM * */
    uv_timer_t timer; /* libcurl's timeout (CURLMOPT_TIMERFUNCTION) */
    uv_timer_t kick;  /* runs hub__drive soon, or the shutdown, from the loop */
    struct hub_link socks;
    struct hub_link reqs;
    struct hub_link pending;

    char *endpoint;
    char origin[HUB_ORIGIN_MAX];
    char *auth; /* "Authorization: Bearer ..." or NULL; wiped when freed */
    char *user_agent;
    unsigned max_conns, max_retries;
    uint64_t connect_ms, stall_ms, backoff_ms, backoff_max_ms, retry_after_max_ms;

    struct hub_stats st;
    uint64_t rng;
    unsigned handles; /* open uv handles (timers, polls, request timers) */
    bool closing, shut;
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* --- hub_io.c -------------------------------------------------------------------- */
int hub__io_init(struct hub *h);
/* curl_multi_cleanup, then closes the timers and polls; hub__handle_closed counts them. */
void hub__io_shutdown(struct hub *h);
/* Starts an attempt of r on url, with the hub's Authorization header when auth. */
int hub__io_start(struct hub_req *r, const char *url, bool auth);
/* Ends the attempt (if any): removes and frees the easy handle, wipes its headers. */
void hub__io_end(struct hub_req *r);
/* Lets curl hand over the bytes it held for r. */
void hub__io_unpause(struct hub_req *r);
/* Value of response header `name` of the current attempt, or NULL; valid until the next
 * call. idx picks among several headers of that name. */
const char *hub__io_header(struct hub_req *r, const char *name, size_t idx);
size_t hub__io_header_count(struct hub_req *r, const char *name);
/* Where a 3xx answer points (absolute), or NULL. */
const char *hub__io_redirect(struct hub_req *r);
/* "scheme://host:port" of an absolute URL, lower-case, default port filled in. */
int hub__io_origin(const char *url, char *out, size_t cap);
/* From the loop, soon: deliveries and completions (after a resume), or the shutdown. */
void hub__io_kick(struct hub *h);

/* --- hub.c, called by hub_io.c --------------------------------------------------- */
/* First body byte (or the end of an answer without one): choose r->sink. */
void hub__on_head(struct hub_req *r);
/* Body bytes for r; returns HUB_BODY_*. Must not change state when it pauses. */
int hub__body(struct hub_req *r, const uint8_t *data, size_t len);
/* The attempt ended: err is 0 or the transport error from hub__err. */
void hub__xfer_done(struct hub_req *r, int err);
/* Delivers buffered range bytes of every pending request. */
void hub__flush(struct hub *h);
/* A uv handle of the hub finished closing. */
void hub__handle_closed(struct hub *h);

#endif
