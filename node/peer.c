/* peer.c - peer connections: handshake, frames, records, serving, requests (peer.h).
 *
 * One struct conn per TCP connection. Input: bytes accumulate in `in` until a whole
 * frame is there (wire_frame_check); during the handshake a frame is a Noise handshake
 * message, after it a transport message, decrypted in place and fed to the record
 * reader, whose events (messages, payload pieces) are handled at once. Output: records
 * and payload bytes are appended to a staging frame, which is encrypted in place and
 * queued on the socket when full or at the end of each batch of work.
 *
 * Serving GET_CHUNKS reads chunks from the store in batches on the threadpool and sends
 * each only within the peer's credit and while less than PEER_OUT_MAX waits on the
 * socket, so a slow reader holds back one batch, not the whole answer.
 *
 * A conn is freed once its handles are closed and none of its store jobs is out.
 */
#include "peer.h"

#include "cfg.h"
#include "err.h"
#include "log.h"
#include "manifest.h"
#include "noise.h"
#include "snapshot.h"
#include "wire.h"

#include <sodium.h>

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROLOGUE        "shoal peer protocol 1"
#define SERVE_BATCH     16          /* chunks read from the store per job */
#define TICK_MS         250         /* how often a connection checks its timers */
#define IN_CAP          (WIRE_FRAME_HDR + WIRE_FRAME_MAX)
#define DIAL_MEMORY     64          /* addresses whose failures are remembered */
#define BACKOFF_MS      500         /* first wait after a failed dial; doubles */
#define BACKOFF_MAX_MS  30000

/* C_HANDSHAKE covers the cipher negotiation and the Noise handshake (neg_done tells). */
enum conn_state { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSING };

/* The cipher negotiation before the handshake (docs/peer-protocol.md §0): the initiator
 * offers, the responder chooses; both then put offer and choice in the Noise prologue,
 * so a changed offer (a downgrade) fails the handshake. */
#define NEG_MAGIC       "SHOALNEG"
#define NEG_MAGIC_LEN   8
#define NEG_VERSION     1
#define NEG_LEN         (NEG_MAGIC_LEN + 2)
#define NEG_CHACHA      0x01
#define NEG_AESGCM      0x02

struct obuf {
    uv_write_t w;
    struct conn *c;
    size_t len;
    uint8_t data[WIRE_FRAME_HDR + WIRE_FRAME_MAX];
};

struct batch {
    uint32_t first, count, sent;
    uint32_t len[SERVE_BATCH];      /* 0: missing */
    size_t off[SERVE_BATCH];
    uint8_t *data;
};

struct serve {
    struct serve *next;
    struct conn *c;
    uint32_t id, n, next_read;
    uint8_t (*hashes)[WIRE_HASH_LEN];
    struct batch *batch;            /* read, being sent */
    bool job;                       /* a read is running */
    bool cancelled;
};

enum req_kind { R_SNAPSHOT, R_MANIFEST, R_CHUNKS };

struct preq {
    struct preq *next;
    struct conn *c;
    uint32_t id;
    enum req_kind kind;
    struct wire_msg msg;            /* the request, sent once the connection is open */
    bool sent;
    peer_blob_cb blob_cb;
    struct peer_chunks_cb ccb;
    void *arg;
    uint32_t n, answered;           /* chunks */
    uint8_t (*hashes)[WIRE_HASH_LEN];
    uint8_t *buf;                   /* SNAPSHOT, MANIFEST payload */
    uint32_t buf_len;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    struct peer_mgr *m;
    struct conn *next;
    char addr[PEER_ADDR_MAX];
    char peer_id[WIRE_NODE_ID_MAX + 1];
    bool outgoing;
    enum conn_state state;
    int handles;                    /* open uv handles */
    unsigned jobs;                  /* store jobs out */
    unsigned answers;               /* GET_SNAPSHOT, GET_MANIFEST, HAVE being answered */
    bool paused;                    /* reading stopped while output is at PEER_OUT_MAX */
    bool gai_busy;
    bool neg_done;
    uint8_t offer[NEG_LEN], choice[NEG_LEN];
    uint8_t cipher;                 /* NEG_CHACHA or NEG_AESGCM once chosen */
    struct noise_hs hs;
    struct noise_cs tx, rx;
    uint8_t *in;
    size_t in_len;
    struct wire_reader *rd;
    struct obuf *stage;             /* transport frame being filled */
    size_t stage_len;               /* plaintext bytes in it */
    size_t out_queued;              /* bytes handed to the socket, not yet written */
    uint64_t credit;                /* CHUNK payload bytes we may still send */
    uint64_t consumed;              /* CHUNK payload bytes read since our last CREDIT */
    uint64_t t_start, t_read, t_written;
    struct serve *serves;
    unsigned n_serves;
    struct preq *reqs;
    unsigned n_reqs;
    uint32_t next_id;
    struct preq *cur;               /* the request whose payload is arriving */
    uint64_t bytes_in, bytes_out;
    uint64_t dial_at;               /* outgoing, not dialled yet: when to dial */
    bool dialled;
    uint64_t rate_in, rate_out;     /* bytes/s, smoothed over about a second */
    unsigned faults;                /* bit per enum peer_fault, recorded at close */
    uint64_t rate_bytes_in, rate_bytes_out, rate_t;
};

/* An address whose last connection failed before the handshake ended: the next one
 * waits (backoff doubling, with jitter), so a dead peer is not hammered. */
struct dial_fail {
    char addr[PEER_ADDR_MAX];
    unsigned fails;
    uint64_t until;
    uint64_t last;                  /* for replacing the oldest entry */
};

struct peer_mgr {
    struct peer_env env;
    uv_tcp_t listener;
    bool listening;
    struct conn *conns;
    unsigned uploads;
    bool closing;
    void (*closed)(void *arg);
    void *closed_arg;
    struct peer_stats st;
    struct dial_fail dials[DIAL_MEMORY];
    struct peer_host_faults faults[PEER_HOSTS_MAX]; /* host[0] == 0: free */
};

static void conn_close(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void flush(struct conn *c);
static void pump(struct conn *c);
static void maybe_free(struct conn *c);
static int dial(struct conn *c);
static void on_neg_msg(struct conn *c, const uint8_t *msg, size_t len);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* --- small helpers --------------------------------------------------------------------- */

const char *const peer_fault_names[PEER_F_COUNT] = {"handshake", "protocol", "timeout",
                                                    "bad_data"};


/* Counts a fault of the peer at addr, in the table of recent hosts (the least recent
 * entry makes room). */
static void host_fault(struct peer_mgr *m, const char *addr, enum peer_fault k, const char *why)
{
    struct peer_host_faults *e = NULL, *spare = NULL;
    struct cfg_addr a;
    char host[PEER_ADDR_MAX], bad[160];
    size_t i;

    /* The host part, by the parser of --listen and --join; an address it would refuse
     * (none reaches here) counts as a host of its own. */
    if (cfg_addr_parse("peer", addr, true, &a, bad, sizeof(bad)) == 0)
        snprintf(host, sizeof(host), "%s", a.host);
    else
        snprintf(host, sizeof(host), "%s", addr);
    for (i = 0; i < PEER_HOSTS_MAX && !e; i++) {
        struct peer_host_faults *f = &m->faults[i];
        if (f->host[0] && strcmp(f->host, host) == 0)
            e = f;
        else if (!spare || (spare->host[0] && (!f->host[0] || f->last_ms < spare->last_ms)))
            spare = f; /* a free entry, else the least recent */
    }
    if (!e) {
        e = spare;
        memset(e, 0, sizeof(*e));
        snprintf(e->host, sizeof(e->host), "%s", host);
    }
    e->n[k]++;
    e->last_ms = uv_now(m->env.loop);
    snprintf(e->last, sizeof(e->last), "%s", why);
}

/* Counts a fault on the node's totals now; the connection's host gets it when the
 * connection closes, with the reason. */
static void mark_fault(struct conn *c, enum peer_fault k)
{
    switch (k) {
    case PEER_F_HANDSHAKE: c->m->st.handshakes_failed++; break;
    case PEER_F_PROTOCOL: c->m->st.protocol_errors++; break;
    case PEER_F_TIMEOUT: c->m->st.timeouts++; break;
    case PEER_F_BAD_DATA: c->m->st.bad_data++; break;
    case PEER_F_COUNT: break;
    }
    c->faults |= 1u << k;
}

static uint64_t now(struct conn *c)
{
    return uv_now(c->m->env.loop);
}

static const char *who(const struct conn *c)
{
    return c->peer_id[0] ? c->peer_id : "?";
}

static struct dial_fail *dial_find(struct peer_mgr *m, const char *addr, bool make)
{
    struct dial_fail *d, *oldest = &m->dials[0];

    for (d = m->dials; d < m->dials + DIAL_MEMORY; d++) {
        if (d->addr[0] && strcmp(d->addr, addr) == 0)
            return d;
        if (d->last < oldest->last)
            oldest = d;
    }
    if (!make)
        return NULL;
    *oldest = (struct dial_fail){0};
    snprintf(oldest->addr, sizeof(oldest->addr), "%s", addr);
    return oldest;
}

/* An outgoing connection that ended before it was open counts as a failed dial. */
static void dial_failed(struct conn *c)
{
    struct dial_fail *d = dial_find(c->m, c->addr, true);
    uint64_t wait = BACKOFF_MS, ms = uv_now(c->m->env.loop);

    for (unsigned i = 1; i < d->fails && wait < BACKOFF_MAX_MS; i++)
        wait *= 2;
    if (wait > BACKOFF_MAX_MS)
        wait = BACKOFF_MAX_MS;
    d->fails++;
    d->last = ms;
    d->until = ms + wait / 2 + randombytes_uniform((uint32_t)(wait / 2 + 1));
}

/* --- output ------------------------------------------------------------------------------ */

static void on_written(uv_write_t *w, int status)
{
    struct obuf *b = w->data;
    struct conn *c = b->c;

    c->out_queued -= b->len;
    free(b);
    if (status < 0) {
        conn_close(c, "write failed: %s", uv_strerror(status));
    } else {
        c->t_written = now(c);
        if (c->paused && c->state == C_OPEN && c->out_queued < PEER_OUT_MAX / 2) {
            c->paused = false;
            if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
                conn_close(c, "cannot read from the socket");
        }
        if (c->state == C_OPEN)
            pump(c);
    }
    maybe_free(c);
}

static int queue_buf(struct conn *c, struct obuf *b)
{
    uv_buf_t ub = uv_buf_init((char *)b->data, (unsigned)b->len);
    int err;

    b->c = c;
    b->w.data = b;
    err = uv_write(&b->w, (uv_stream_t *)&c->tcp, &ub, 1, on_written);
    if (err < 0) {
        free(b);
        return err;
    }
    if (c->out_queued == 0)
        c->t_written = now(c); /* the clock for a peer that stops reading starts now */
    c->out_queued += b->len;
    c->bytes_out += b->len;
    c->m->st.bytes_out += b->len;
    /* Answers other than CHUNK need no credit: a peer that sends requests but reads
     * nothing would make us queue without bound. Take no more input until it reads. */
    if (c->out_queued >= PEER_OUT_MAX && !c->paused && c->state == C_OPEN) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->paused = true;
    }
    return 0;
}

/* A handshake message, in a frame of its own, not encrypted by us (Noise did it). */
static int send_plain(struct conn *c, const uint8_t *msg, size_t len)
{
    struct obuf *b = malloc(sizeof(*b));

    if (!b)
        return -ENOMEM;
    wire_frame_header(b->data, len);
    memcpy(b->data + WIRE_FRAME_HDR, msg, len);
    b->len = WIRE_FRAME_HDR + len;
    return queue_buf(c, b);
}

/* Encrypts the staging frame in place and queues it. */
static void flush(struct conn *c)
{
    struct obuf *b = c->stage;
    int err;

    if (!b || c->stage_len == 0 || c->state != C_OPEN)
        return;
    c->stage = NULL;
    err = noise_encrypt(&c->tx, NULL, 0, b->data + WIRE_FRAME_HDR, c->stage_len,
                        b->data + WIRE_FRAME_HDR);
    if (err == 0)
        err = wire_frame_header(b->data, c->stage_len + NOISE_TAG_LEN);
    b->len = WIRE_FRAME_HDR + c->stage_len + NOISE_TAG_LEN;
    c->stage_len = 0;
    if (err < 0) {
        free(b);
        conn_close(c, "encrypting: %s", shoal_strerror(err));
        return;
    }
    err = queue_buf(c, b);
    if (err < 0)
        conn_close(c, "writing: %s", uv_strerror(err));
}

/* Appends plaintext to the stream, frame after frame. */
static int append(struct conn *c, const uint8_t *p, size_t len)
{
    while (len > 0 && c->state == C_OPEN) {
        size_t room, n;

        if (!c->stage) {
            c->stage = malloc(sizeof(*c->stage));
            if (!c->stage)
                return -ENOMEM;
            c->stage_len = 0;
        }
        room = WIRE_PLAIN_MAX - c->stage_len;
        n = len < room ? len : room;
        memcpy(c->stage->data + WIRE_FRAME_HDR + c->stage_len, p, n);
        c->stage_len += n;
        p += n;
        len -= n;
        if (c->stage_len == WIRE_PLAIN_MAX)
            flush(c);
    }
    return c->state == C_OPEN ? 0 : -ECONNRESET;
}

static int send_msg(struct conn *c, const struct wire_msg *m)
{
    uint8_t rec[WIRE_REC_MAX];
    int n = wire_msg_encode(m, rec, sizeof(rec));

    if (n < 0) {
        log_msg(CFG_LOG_ERROR, "peer %s: cannot encode %s: %s", c->addr,
                wire_type_name(m->type), shoal_strerror(n));
        return n;
    }
    return append(c, rec, (size_t)n);
}

static void send_error(struct conn *c, uint32_t id, int code, const char *text)
{
    struct wire_msg m = {.type = WIRE_ERROR, .id = id};

    m.u.error.code = code;
    snprintf(m.u.error.text, sizeof(m.u.error.text), "%s", text);
    send_msg(c, &m);
}

/* --- closing -------------------------------------------------------------------------------- */

static void fail_reqs(struct conn *c, int err, const char *why)
{
    struct preq *r;

    while ((r = c->reqs)) {
        c->reqs = r->next;
        c->n_reqs--;
        if (r->kind == R_CHUNKS)
            r->ccb.done(r->arg, err, why);
        else
            r->blob_cb(r->arg, err, why, NULL, 0);
        free(r->buf);
        free(r->hashes);
        free(r);
    }
    c->cur = NULL;
}

static void drop_serve(struct conn *c, struct serve *s)
{
    struct serve **pp;

    for (pp = &c->serves; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    c->n_serves--;
    c->m->uploads--;
    if (s->batch)
        free(s->batch->data);
    free(s->batch);
    free(s->hashes);
    free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    c->handles--;
    maybe_free(c);
}

static void maybe_free(struct conn *c)
{
    struct peer_mgr *m = c->m;
    struct conn **pp;

    if (c->state != C_CLOSING || c->handles > 0 || c->jobs > 0 || c->gai_busy ||
        c->out_queued > 0)
        return;
    for (pp = &m->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    m->st.open--;
    noise_hs_clear(&c->hs);
    noise_cs_clear(&c->tx);
    noise_cs_clear(&c->rx);
    free(c->stage);
    free(c->in);
    free(c->rd);
    free(c);
    if (m->closing && !m->conns && !m->listening && m->closed) {
        void (*cb)(void *) = m->closed;
        m->closed = NULL;
        cb(m->closed_arg);
        free(m);
    }
}

static void conn_close(struct conn *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    if (c->state == C_CLOSING)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (why[0])
        log_msg(CFG_LOG_WARN, "peer %s (%s): %s; connection closed", c->addr, who(c), why);
    for (int k = 0; k < PEER_F_COUNT; k++) {
        if (c->faults & (1u << k))
            host_fault(c->m, c->addr, (enum peer_fault)k, why);
    }
    c->faults = 0;
    if (c->outgoing && (c->state == C_CONNECTING || c->state == C_HANDSHAKE) &&
        !c->m->closing)
        dial_failed(c);
    c->state = C_CLOSING;
    fail_reqs(c, -ECONNRESET, why[0] ? why : "connection closed");
    while (c->serves) {
        if (c->serves->job) {
            c->serves->cancelled = true; /* freed when its job is back */
            struct serve *s = c->serves;
            c->serves = s->next;
            c->n_serves--;
            c->m->uploads--;
            s->next = NULL;
        } else {
            drop_serve(c, c->serves);
        }
    }
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    if (c->gai_busy)
        uv_cancel((uv_req_t *)&c->gai);
}

/* A peer broke the protocol: counted, logged, closed. */
static void protocol_error(struct conn *c, const char *what, int err)
{
    mark_fault(c, PEER_F_PROTOCOL);
    conn_close(c, "%s: %s", what, shoal_strerror(err));
}

/* --- requests from us ------------------------------------------------------------------------ */

static struct preq *find_req(struct conn *c, uint32_t id)
{
    for (struct preq *r = c->reqs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

static void unlink_req(struct conn *c, struct preq *r)
{
    struct preq **pp;

    for (pp = &c->reqs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    c->n_reqs--;
    if (c->cur == r)
        c->cur = NULL;
}

static void free_req(struct preq *r)
{
    free(r->buf);
    free(r->hashes);
    free(r);
}

static void send_pending(struct conn *c)
{
    for (struct preq *r = c->reqs; r && c->state == C_OPEN; r = r->next) {
        if (!r->sent && send_msg(c, &r->msg) == 0)
            r->sent = true;
    }
    flush(c);
}

/* --- serving ------------------------------------------------------------------------------------ */

struct serve_job {
    struct serve *s;
    struct store *store;
    uint8_t (*hashes)[WIRE_HASH_LEN];
    struct batch *b;
    size_t cap;
    uint32_t damaged;  /* chunks whose stored bytes did not match their hash */
    int err;
};

static int batch_cb(void *arg, size_t i, const uint8_t *data, size_t len)
{
    struct serve_job *j = arg;
    struct batch *b = j->b;
    size_t off = i == 0 ? 0 : b->off[i - 1] + b->len[i - 1];
    uint8_t h[CHASH_LEN];

    /* Never serve bytes that do not match their hash (a damaged disk, or a chunk
     * removed while it was read): the peer would blame us. Sent as missing instead;
     * hashing costs ~0.1 ns/byte here, next to ~1 for the AEAD. */
    if (data && len) {
        chash_chunk(data, len, h);
        if (memcmp(h, j->hashes[i], CHASH_LEN) != 0) {
            j->damaged++;
            data = NULL;
        }
    }
    b->off[i] = off;
    b->len[i] = data ? (uint32_t)len : 0;
    if (data && len) {
        if (off + len > j->cap)
            return -EOVERFLOW;
        memcpy(b->data + off, data, len);
    }
    return 0;
}

static void serve_run(void *arg)
{
    struct serve_job *j = arg;

    j->err = store_get_chunks(j->store, (const uint8_t(*)[CHASH_LEN])j->hashes, j->b->count,
                              batch_cb, j);
}

static void serve_done(void *arg)
{
    struct serve_job *j = arg;
    struct serve *s = j->s;
    struct conn *c = s->c;

    c->jobs--;
    s->job = false;
    if (s->cancelled || c->state != C_OPEN) {
        free(j->b->data);
        free(j->b);
        free(j);
        if (s->cancelled) {
            free(s->hashes);
            free(s);
        }
        maybe_free(c);
        return;
    }
    if (j->damaged)
        log_msg(CFG_LOG_ERROR,
                "peer %s: %" PRIu32 " stored chunks did not match their hash and were not "
                "served; `shoal check --repair` drops them from the store",
                c->addr, j->damaged);
    if (j->err < 0) {
        free(j->b->data);
        free(j->b);
        send_error(c, s->id, WIRE_ERR_INTERNAL, "reading chunks failed");
        drop_serve(c, s);
        log_msg(CFG_LOG_ERROR, "peer %s: reading chunks for it: %s", c->addr,
                shoal_strerror(j->err));
    } else {
        s->batch = j->b;
    }
    free(j);
    pump(c);
}

static void start_read(struct serve *s)
{
    struct conn *c = s->c;
    struct serve_job *j = calloc(1, sizeof(*j));
    uint32_t count = s->n - s->next_read < SERVE_BATCH ? s->n - s->next_read : SERVE_BATCH;

    if (j) {
        j->b = calloc(1, sizeof(*j->b));
        j->cap = (size_t)count * PROTO_CHUNK_MAX;
        if (j->b)
            j->b->data = malloc(j->cap);
    }
    if (!j || !j->b || !j->b->data) {
        if (j && j->b)
            free(j->b->data);
        if (j)
            free(j->b);
        free(j);
        send_error(c, s->id, WIRE_ERR_INTERNAL, "out of memory");
        drop_serve(c, s);
        return;
    }
    j->s = s;
    j->store = c->m->env.store;
    j->hashes = s->hashes + s->next_read;
    j->b->first = s->next_read;
    j->b->count = count;
    if (work_queue(c->m->env.work, serve_run, serve_done, j) < 0) {
        free(j->b->data);
        free(j->b);
        free(j);
        send_error(c, s->id, WIRE_ERR_INTERNAL, "the node is stopping");
        drop_serve(c, s);
        return;
    }
    s->next_read += count;
    s->job = true;
    c->jobs++;
}

/* Sends what credit and the socket allow of one GET_CHUNKS answer; true if it ended. */
static bool serve_some(struct conn *c, struct serve *s)
{
    struct wire_msg m = {.id = s->id};

    for (;;) {
        struct batch *b = s->batch;

        if (!b) {
            if (s->next_read < s->n) {
                if (!s->job)
                    start_read(s);
                return false;
            }
            if (s->job)
                return false;
            m.type = WIRE_END;
            send_msg(c, &m);
            return true;
        }
        while (b->sent < b->count) {
            uint32_t i = b->sent, len = b->len[i];
            const uint8_t *h = s->hashes[b->first + i];

            if (len == 0) {
                m.type = WIRE_MISSING;
                memcpy(m.u.missing.hash, h, WIRE_HASH_LEN);
                if (send_msg(c, &m) < 0)
                    return false;
            } else {
                if (c->credit < len || c->out_queued >= PEER_OUT_MAX)
                    return false;
                m.type = WIRE_CHUNK;
                memcpy(m.u.chunk.hash, h, WIRE_HASH_LEN);
                m.u.chunk.len = len;
                if (send_msg(c, &m) < 0 || append(c, b->data + b->off[i], len) < 0)
                    return false;
                c->credit -= len;
                c->m->st.chunk_bytes_served += len;
            }
            b->sent++;
        }
        free(b->data);
        free(b);
        s->batch = NULL;
        /* Read the next batch while this one's frames are on their way. */
    }
}

static void pump(struct conn *c)
{
    struct serve *s = c->serves, *next;

    for (; s && c->state == C_OPEN; s = next) {
        next = s->next;
        if (serve_some(c, s))
            drop_serve(c, s);
        else if (c->credit == 0 || c->out_queued >= PEER_OUT_MAX)
            break;
    }
    flush(c);
}

/* What every one-answer request's job starts with (serve_answer fills it). */
struct answer {
    struct conn *c;
    struct wire_msg req;
};

/* GET_SNAPSHOT and GET_MANIFEST: one store job, one answer. */
struct blob_job {
    struct answer a;
    uint8_t *out;
    size_t out_len;
    int err;
};

static void blob_run(void *arg)
{
    struct blob_job *j = arg;
    struct store *s = j->a.c->m->env.store;

    if (j->a.req.type == WIRE_GET_SNAPSHOT) {
        const char *repo = j->a.req.u.get_snapshot.repo, *rev = j->a.req.u.get_snapshot.rev;
        char commit[SNAPSHOT_COMMIT_LEN + 1];
        struct snapshot snap;

        /* A branch or tag: what it pointed at when this node last pulled it. */
        if (!snapshot_commit_ok(rev)) {
            j->err = store_get_ref(s, repo, rev, commit);
            if (j->err < 0)
                return;
            rev = commit;
        }
        j->err = store_get_snapshot(s, repo, rev, &snap);
        if (j->err == 0) {
            j->err = snapshot_encode(&snap, &j->out, &j->out_len);
            snapshot_release(&snap);
        }
    } else if (j->a.req.u.get_manifest.piece == WIRE_PIECE_ALL) {
        struct manifest m;
        j->err = store_get_manifest(s, j->a.req.u.get_manifest.sha256, &m);
        if (j->err == 0) {
            j->err = manifest_encode(&m, &j->out, &j->out_len);
            manifest_release(&m);
        }
    } else {
        struct manifest_piece p;
        struct chash_leaf *chunks;
        j->err = store_get_piece(s, j->a.req.u.get_manifest.sha256, j->a.req.u.get_manifest.piece,
                                 &p, &chunks);
        if (j->err == 0) {
            j->err = manifest_piece_encode(&p, chunks, &j->out, &j->out_len);
            free(chunks);
        }
    }
}

static void blob_done(void *arg)
{
    struct blob_job *j = arg;
    struct conn *c = j->a.c;
    bool snap = j->a.req.type == WIRE_GET_SNAPSHOT;
    size_t max = snap ? WIRE_SNAPSHOT_MAX : WIRE_MANIFEST_MAX;
    struct wire_msg m = {.id = j->a.req.id};

    c->jobs--;
    c->answers--;
    if (c->state == C_OPEN) {
        if (j->err == -ENOENT) {
            send_error(c, j->a.req.id, WIRE_ERR_NOT_FOUND, snap ? "no such snapshot here"
                                                               : "no such file or piece here");
        } else if (j->err < 0) {
            send_error(c, j->a.req.id, WIRE_ERR_INTERNAL, shoal_strerror(j->err));
        } else if (j->out_len == 0 || j->out_len > max) {
            send_error(c, j->a.req.id, WIRE_ERR_TOO_LARGE, "over the message limit");
        } else {
            m.type = snap ? WIRE_SNAPSHOT : WIRE_MANIFEST;
            m.u.snapshot.len = (uint32_t)j->out_len;
            if (send_msg(c, &m) == 0)
                append(c, j->out, j->out_len);
        }
        flush(c);
    }
    free(j->out);
    free(j);
    maybe_free(c);
}

/* Queues the store job of a request with one answer: `size` bytes of job whose first
 * member is a struct answer. Beyond WIRE_INFLIGHT_MAX answers in progress on a
 * connection the request gets BUSY: that bounds what one read can start (a frame holds
 * some 1,300 requests). */
static void serve_answer(struct conn *c, const struct wire_msg *msg, size_t size,
                         work_run_fn run, work_done_fn done)
{
    struct answer *j;

    if (c->answers >= WIRE_INFLIGHT_MAX) {
        send_error(c, msg->id, WIRE_ERR_BUSY, "too many requests at once");
        return;
    }
    j = calloc(1, size);
    if (j) {
        j->c = c;
        j->req = *msg;
    }
    if (!j || work_queue(c->m->env.work, run, done, j) < 0) {
        free(j);
        send_error(c, msg->id, WIRE_ERR_BUSY, "the node is busy or stopping");
        return;
    }
    c->jobs++;
    c->answers++;
}

static void serve_blob(struct conn *c, const struct wire_msg *msg)
{
    serve_answer(c, msg, sizeof(struct blob_job), blob_run, blob_done);
}

static void serve_chunks(struct conn *c, const struct wire_msg *msg)
{
    struct peer_mgr *m = c->m;
    struct serve *s, **tail;

    if (m->uploads >= m->env.max_uploads || c->n_serves >= WIRE_INFLIGHT_MAX) {
        send_error(c, msg->id, WIRE_ERR_BUSY, "too many uploads at once");
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s)
        s->hashes = malloc(msg->u.get_chunks.n * sizeof(*s->hashes));
    if (!s || !s->hashes) {
        if (s)
            free(s->hashes);
        free(s);
        send_error(c, msg->id, WIRE_ERR_INTERNAL, "out of memory");
        return;
    }
    s->c = c;
    s->id = msg->id;
    s->n = msg->u.get_chunks.n;
    memcpy(s->hashes, msg->u.get_chunks.hash, s->n * sizeof(*s->hashes));
    for (tail = &c->serves; *tail; tail = &(*tail)->next)
        ;
    *tail = s;
    c->n_serves++;
    m->uploads++;
    start_read(s);
}

/* HAVE: answered from the store's index (no chunk bytes read). */
struct have_job {
    struct answer a;
    bool have[WIRE_HAVE_PER_REQ];
    int err;
};

static void have_run(void *arg)
{
    struct have_job *j = arg;

    j->err = store_has_chunks(j->a.c->m->env.store,
                              (const uint8_t(*)[CHASH_LEN])j->a.req.u.have.hash, j->a.req.u.have.n,
                              j->have);
}

static void have_done(void *arg)
{
    struct have_job *j = arg;
    struct conn *c = j->a.c;
    struct wire_msg m = {.type = WIRE_HAVE_RESULT, .id = j->a.req.id};

    c->jobs--;
    c->answers--;
    if (c->state == C_OPEN) {
        if (j->err < 0) {
            send_error(c, j->a.req.id, WIRE_ERR_INTERNAL, shoal_strerror(j->err));
        } else {
            m.u.have_result.len = (j->a.req.u.have.n + 7) / 8;
            for (uint32_t i = 0; i < j->a.req.u.have.n; i++)
                if (j->have[i])
                    wire_have_set(&m.u.have_result, i);
            send_msg(c, &m);
        }
        flush(c);
    }
    free(j);
    maybe_free(c);
}

static void serve_have(struct conn *c, const struct wire_msg *msg)
{
    serve_answer(c, msg, sizeof(struct have_job), have_run, have_done);
}

/* --- messages in ------------------------------------------------------------------------------- */

/* Replenishes the peer's credit once half of what we granted has been read. */
static void consumed(struct conn *c, size_t n)
{
    struct wire_msg m = {.type = WIRE_CREDIT};

    c->consumed += n;
    c->m->st.chunk_bytes_fetched += n;
    if (c->consumed < WIRE_CREDIT_INIT / 2)
        return;
    m.u.credit.bytes = (uint32_t)c->consumed;
    if (wire_reader_grant(c->rd, m.u.credit.bytes) == 0 && send_msg(c, &m) == 0)
        c->consumed = 0;
}

static void on_answer(struct conn *c, const struct wire_msg *m)
{
    struct preq *r = find_req(c, m->id);
    char why[WIRE_ERRMSG_MAX + PEER_ADDR_MAX + 16];

    if (!r || !r->sent) {
        mark_fault(c, PEER_F_PROTOCOL);
        conn_close(c, "%s for request %" PRIu32 ", which is not open", wire_type_name(m->type),
                   m->id);
        return;
    }
    switch (m->type) {
    case WIRE_ERROR:
        snprintf(why, sizeof(why), "peer %s: %s", c->addr, m->u.error.text);
        unlink_req(c, r);
        if (r->kind == R_CHUNKS)
            r->ccb.done(r->arg, m->u.error.code == WIRE_ERR_NOT_FOUND ? -ENOENT : SHOAL_EPEER,
                        why);
        else
            r->blob_cb(r->arg, m->u.error.code == WIRE_ERR_NOT_FOUND ? -ENOENT : SHOAL_EPEER,
                       why, NULL, 0);
        free_req(r);
        return;
    case WIRE_SNAPSHOT:
    case WIRE_MANIFEST:
        if ((r->kind == R_SNAPSHOT) != (m->type == WIRE_SNAPSHOT) || r->kind == R_CHUNKS)
            break;
        r->buf = malloc(m->u.snapshot.len);
        if (!r->buf) {
            conn_close(c, "out of memory for a %" PRIu32 "-byte answer", m->u.snapshot.len);
            return;
        }
        r->buf_len = m->u.snapshot.len;
        c->cur = r;
        return;
    case WIRE_CHUNK:
    case WIRE_MISSING:
        if (r->kind != R_CHUNKS || r->answered >= r->n ||
            memcmp(m->type == WIRE_CHUNK ? m->u.chunk.hash : m->u.missing.hash,
                   r->hashes[r->answered], WIRE_HASH_LEN) != 0)
            break;
        if (m->type == WIRE_MISSING) {
            r->ccb.missing(r->arg, r->answered++);
        } else {
            c->cur = r;
        }
        return;
    case WIRE_END:
        if (r->kind != R_CHUNKS || r->answered != r->n)
            break;
        unlink_req(c, r);
        r->ccb.done(r->arg, 0, NULL);
        free_req(r);
        return;
    default:
        break;
    }
    mark_fault(c, PEER_F_PROTOCOL);
    conn_close(c, "%s does not answer request %" PRIu32, wire_type_name(m->type), m->id);
}

static void on_payload(struct conn *c, const struct wire_event *ev)
{
    struct preq *r = c->cur;

    if (!r)
        return; /* the request failed meanwhile: drop the bytes */
    if (r->kind == R_CHUNKS) {
        r->ccb.data(r->arg, r->answered, ev->offset, ev->msg->u.chunk.len, ev->data, ev->len);
        consumed(c, ev->len);
        if (ev->last) {
            r->answered++;
            c->cur = NULL;
        }
        return;
    }
    memcpy(r->buf + ev->offset, ev->data, ev->len);
    if (ev->last) {
        unlink_req(c, r);
        r->blob_cb(r->arg, 0, NULL, r->buf, r->buf_len);
        free_req(r);
    }
}

static void on_msg(struct conn *c, const struct wire_msg *m)
{
    struct serve *s;

    switch (m->type) {
    case WIRE_HELLO:
        snprintf(c->peer_id, sizeof(c->peer_id), "%s", m->u.hello.node_id);
        log_msg(CFG_LOG_DEBUG, "peer %s is node %s", c->addr, c->peer_id);
        return;
    case WIRE_ERROR:
        if (m->id == 0) {
            conn_close(c, "the peer reports: %s", m->u.error.text);
            return;
        }
        on_answer(c, m);
        return;
    case WIRE_GET_SNAPSHOT:
    case WIRE_GET_MANIFEST:
        serve_blob(c, m);
        return;
    case WIRE_GET_CHUNKS:
        serve_chunks(c, m);
        return;
    case WIRE_HAVE:
        serve_have(c, m);
        return;
    case WIRE_CREDIT:
        c->credit += m->u.credit.bytes;
        return;
    case WIRE_CANCEL:
        for (s = c->serves; s; s = s->next) {
            if (s->id == m->id && !s->job) {
                send_error(c, m->id, WIRE_ERR_CANCELLED, "cancelled");
                drop_serve(c, s);
                break;
            }
        }
        return;
    default:
        on_answer(c, m);
        return;
    }
}

static void on_plaintext(struct conn *c, const uint8_t *p, size_t len)
{
    struct wire_event ev;
    int kind = 0;

    while (c->state == C_OPEN && (kind = wire_reader_next(c->rd, &p, &len, &ev)) > 0) {
        if (kind == WIRE_EV_MSG)
            on_msg(c, ev.msg);
        else
            on_payload(c, &ev);
    }
    if (c->state == C_OPEN && kind < 0)
        protocol_error(c, "bad record", kind);
}

/* --- the handshake --------------------------------------------------------------------------------- */

static void opened(struct conn *c)
{
    struct wire_msg m = {.type = WIRE_HELLO};
    int err = noise_hs_split(&c->hs, &c->tx, &c->rx);

    if (err < 0) {
        mark_fault(c, PEER_F_HANDSHAKE);
        conn_close(c, "handshake: %s", shoal_strerror(err));
        return;
    }
    c->state = C_OPEN;
    c->t_read = now(c);
    if (c->outgoing) {
        struct dial_fail *d = dial_find(c->m, c->addr, false);
        if (d)
            d->addr[0] = '\0';
    }
    m.u.hello.version = WIRE_VERSION;
    snprintf(m.u.hello.node_id, sizeof(m.u.hello.node_id), "%s", c->m->env.node_id);
    send_msg(c, &m);
    send_pending(c);
}

static int hs_write(struct conn *c)
{
    uint8_t msg[NOISE_MSG2_LEN(0)];
    size_t n;
    int err = noise_hs_write(&c->hs, NULL, 0, msg, sizeof(msg), &n);

    if (err == 0)
        err = send_plain(c, msg, n);
    return err;
}

static void on_hs_msg(struct conn *c, const uint8_t *msg, size_t len)
{
    uint8_t payload[64];
    size_t plen;
    int err = noise_hs_read(&c->hs, msg, len, payload, sizeof(payload), &plen);

    if (err == 0 && noise_hs_want_write(&c->hs))
        err = hs_write(c);
    if (err < 0) {
        mark_fault(c, PEER_F_HANDSHAKE);
        conn_close(c, "handshake failed (%s): %s", shoal_strerror(err),
                   err == SHOAL_EAUTH ? "not a member of this cluster (another cluster key), "
                                        "or not a Shoal node"
                                      : "internal error");
        return;
    }
    if (noise_hs_done(&c->hs))
        opened(c);
}

/* --- input ------------------------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct conn *c = h->data;

    (void)hint;
    *buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(IN_CAP - c->in_len));
}

static void on_frames(struct conn *c)
{
    struct wire_frame f;
    size_t used = 0;
    int r = 0;

    while (c->state != C_CLOSING &&
           (r = wire_frame_check(c->in + used, c->in_len - used, WIRE_FRAME_MAX, &f)) > 0) {
        uint8_t *body = c->in + used + f.off;

        if (c->state == C_HANDSHAKE && !c->neg_done) {
            on_neg_msg(c, body, f.len);
        } else if (c->state == C_HANDSHAKE) {
            on_hs_msg(c, body, f.len);
        } else {
            r = noise_decrypt(&c->rx, NULL, 0, body, f.len, body);
            if (r < 0) {
                protocol_error(c, "a frame failed authentication (altered, replayed or "
                                  "reordered)", r);
                return;
            }
            on_plaintext(c, body, f.len - NOISE_TAG_LEN);
        }
        used += f.end;
    }
    if (c->state == C_CLOSING)
        return;
    if (r < 0 && c->state == C_HANDSHAKE) {
        /* Garbage before the handshake ends is a failed handshake (peer.h). */
        mark_fault(c, PEER_F_HANDSHAKE);
        conn_close(c, "handshake failed: bad frame: %s", shoal_strerror(r));
        return;
    }
    if (r < 0) {
        protocol_error(c, "bad frame", r);
        return;
    }
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    if (c->state == C_OPEN) {
        pump(c);
        flush(c);
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = st->data;

    (void)buf;
    if (n == 0 || c->state == C_CLOSING)
        return;
    if (n < 0) {
        if (n == UV_EOF && c->state == C_HANDSHAKE && c->outgoing) {
            /* What a responder does when our message 3 fails its psk check. */
            mark_fault(c, PEER_F_HANDSHAKE);
            conn_close(c, "the peer closed the connection during the handshake (does it "
                          "have this cluster's key?)");
        } else if (n == UV_EOF)
            conn_close(c, "%s", c->reqs ? "the peer closed the connection" : "");
        else
            conn_close(c, "read failed: %s", uv_strerror((int)n));
        return;
    }
    c->in_len += (size_t)n;
    c->bytes_in += (uint64_t)n;
    c->m->st.bytes_in += (uint64_t)n;
    c->t_read = now(c);
    on_frames(c);
}

/* --- timers -------------------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    struct conn *c = t->data;
    struct peer_env *e = &c->m->env;
    uint64_t ms = now(c);

    if (ms - c->rate_t >= 1000) {
        /* Rates over the last second or so, smoothed: for /v1/peers. */
        uint64_t dt = ms - c->rate_t;
        c->rate_in = (c->rate_in + (c->bytes_in - c->rate_bytes_in) * 1000 / dt) / 2;
        c->rate_out = (c->rate_out + (c->bytes_out - c->rate_bytes_out) * 1000 / dt) / 2;
        c->rate_bytes_in = c->bytes_in;
        c->rate_bytes_out = c->bytes_out;
        c->rate_t = ms;
    }
    if (c->state == C_CONNECTING && !c->dialled) {
        int err = ms >= c->dial_at ? dial(c) : 0;
        if (err < 0)
            conn_close(c, "cannot connect: %s", uv_strerror(err));
        return;
    }
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
        if (ms - c->t_start >= (c->state == C_CONNECTING ? e->connect_ms : e->handshake_ms)) {
            mark_fault(c, PEER_F_TIMEOUT);
            if (c->state == C_HANDSHAKE)
                mark_fault(c, PEER_F_HANDSHAKE);
            conn_close(c, "no %s within %" PRIu64 " ms",
                       c->state == C_CONNECTING ? "connection" : "handshake",
                       c->state == C_CONNECTING ? e->connect_ms : e->handshake_ms);
        }
        return;
    }
    if (c->out_queued > 0 && ms - c->t_written >= e->idle_ms) {
        mark_fault(c, PEER_F_TIMEOUT);
        conn_close(c, "the peer read nothing for %" PRIu64 " ms", e->idle_ms);
    } else if (ms - c->t_read >= e->idle_ms && ms - c->t_written >= e->idle_ms) {
        /* Idle means nothing read and nothing written: a peer that granted its credit
         * up front and reads a long answer steadily has nothing to say meanwhile, and
         * writes completing show it is reading. */
        if (c->reqs)
            mark_fault(c, PEER_F_TIMEOUT);
        conn_close(c, "%s", c->reqs ? "the peer sent nothing for too long" : "");
    }
}

/* --- connections ----------------------------------------------------------------------------------------- */

static struct conn *conn_new(struct peer_mgr *m, bool outgoing, const char *addr)
{
    struct conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->in = malloc(IN_CAP);
    c->rd = malloc(sizeof(*c->rd));
    if (!c->in || !c->rd || uv_tcp_init(m->env.loop, &c->tcp) < 0) {
        free(c->in);
        free(c->rd);
        free(c);
        return NULL;
    }
    c->m = m;
    c->outgoing = outgoing;
    c->handles = 2;
    c->tcp.data = c;
    uv_timer_init(m->env.loop, &c->timer);
    c->timer.data = c;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->next_id = 1;
    c->credit = WIRE_CREDIT_INIT;
    c->t_start = c->t_read = c->rate_t = uv_now(m->env.loop);
    c->dialled = !outgoing;
    wire_reader_init(c->rd);
    c->next = m->conns;
    m->conns = c;
    m->st.open++;
    uv_timer_start(&c->timer, on_tick, TICK_MS, TICK_MS);
    return c;
}

/* The ciphers this node can run: AES-256-GCM only where libsodium has it (AES-NI). */
static uint8_t local_ciphers(const struct peer_mgr *m)
{
    bool aes = !m->env.chacha_only && crypto_aead_aes256gcm_is_available();

    return NEG_CHACHA | (aes ? NEG_AESGCM : 0);
}

static void neg_fill(uint8_t out[NEG_LEN], uint8_t value)
{
    memcpy(out, NEG_MAGIC, NEG_MAGIC_LEN);
    out[NEG_MAGIC_LEN] = NEG_VERSION;
    out[NEG_MAGIC_LEN + 1] = value;
}

static bool neg_ok(const uint8_t *msg, size_t len)
{
    return len == NEG_LEN && memcmp(msg, NEG_MAGIC, NEG_MAGIC_LEN) == 0 &&
           msg[NEG_MAGIC_LEN] == NEG_VERSION;
}

/* Offer and choice settled: the Noise handshake with them in its prologue. */
static int begin_noise(struct conn *c)
{
    uint8_t prologue[sizeof(PROLOGUE) - 1 + 2 * NEG_LEN];
    int err;

    memcpy(prologue, PROLOGUE, sizeof(PROLOGUE) - 1);
    memcpy(prologue + sizeof(PROLOGUE) - 1, c->offer, NEG_LEN);
    memcpy(prologue + sizeof(PROLOGUE) - 1 + NEG_LEN, c->choice, NEG_LEN);
    err = noise_hs_init(&c->hs, c->outgoing ? NOISE_INITIATOR : NOISE_RESPONDER,
                        c->cipher == NEG_AESGCM ? NOISE_AESGCM : NOISE_CHACHAPOLY, prologue,
                        sizeof(prologue), c->m->env.static_sk, c->m->env.psk);
    c->neg_done = true;
    if (err == 0 && c->outgoing)
        err = hs_write(c);
    return err;
}

/* The first frame each way: the initiator's offer, the responder's choice. */
static void on_neg_msg(struct conn *c, const uint8_t *msg, size_t len)
{
    uint8_t bits = len == NEG_LEN ? msg[NEG_MAGIC_LEN + 1] : 0;
    int err;

    if (!neg_ok(msg, len)) {
        mark_fault(c, PEER_F_HANDSHAKE);
        conn_close(c, "handshake failed: not a Shoal peer (no cipher %s)",
                   c->outgoing ? "choice" : "offer");
        return;
    }
    if (c->outgoing) {
        /* One cipher, and one this side offered. */
        if (bits != NEG_CHACHA && bits != NEG_AESGCM) {
            mark_fault(c, PEER_F_HANDSHAKE);
            conn_close(c, "handshake failed: the peer chose a cipher not offered");
            return;
        }
        c->cipher = bits;
        memcpy(c->choice, msg, NEG_LEN);
    } else {
        uint8_t both = bits & local_ciphers(c->m);

        if (!both) {
            mark_fault(c, PEER_F_HANDSHAKE);
            conn_close(c, "handshake failed: no cipher in common (offered 0x%02x)", bits);
            return;
        }
        memcpy(c->offer, msg, NEG_LEN);
        c->cipher = both & NEG_AESGCM ? NEG_AESGCM : NEG_CHACHA;
        neg_fill(c->choice, c->cipher);
        err = send_plain(c, c->choice, NEG_LEN);
        if (err < 0) {
            conn_close(c, "writing: %s", uv_strerror(err));
            return;
        }
    }
    err = begin_noise(c);
    if (err < 0) {
        mark_fault(c, PEER_F_HANDSHAKE);
        conn_close(c, "cannot start the handshake: %s", shoal_strerror(err));
    }
}

static int start_handshake(struct conn *c)
{
    int err;

    c->state = C_HANDSHAKE;
    c->t_start = now(c);
    err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (err == 0 && c->outgoing) {
        neg_fill(c->offer, local_ciphers(c->m));
        err = send_plain(c, c->offer, NEG_LEN);
    }
    return err;
}

static void on_connection(uv_stream_t *l, int status)
{
    struct peer_mgr *m = l->data;
    struct sockaddr_storage ss;
    char host[INET6_ADDRSTRLEN], addr[PEER_ADDR_MAX];
    int len = sizeof(ss), port = 0;
    struct conn *c;

    if (status < 0)
        return;
    c = conn_new(m, false, "?");
    if (!c)
        return;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c, "accept failed");
        return;
    }
    m->st.accepted++;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            snprintf(addr, sizeof(addr), "[%s]:%d", host, port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            snprintf(addr, sizeof(addr), "%s:%d", host, port);
        }
        snprintf(c->addr, sizeof(c->addr), "%s", addr);
    }
    if (m->st.open > m->env.max_conns) {
        m->st.refused++;
        conn_close(c, "over the connection limit (%u)", m->env.max_conns);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 30);
    if (start_handshake(c) < 0)
        conn_close(c, "cannot start the handshake");
}

static void on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;

    if (c->state == C_CLOSING)
        return;
    if (status < 0) {
        conn_close(c, "cannot connect: %s", uv_strerror(status));
        return;
    }
    c->m->st.connected++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 30);
    if (start_handshake(c) < 0)
        conn_close(c, "cannot start the handshake");
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct conn *c = g->data;
    int err = status;

    c->gai_busy = false;
    if (c->state == C_CLOSING) {
        uv_freeaddrinfo(ai);
        maybe_free(c);
        return;
    }
    if (err == 0) {
        c->creq.data = c;
        err = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connected);
    }
    uv_freeaddrinfo(ai);
    if (err < 0)
        conn_close(c, "cannot connect: %s", uv_strerror(err));
}


/* Resolves and connects an outgoing conn; the connect timeout counts from here. */
static int dial(struct conn *c)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct cfg_addr a;
    char port[8];
    int err = cfg_addr_parse("peer", c->addr, false, &a, NULL, 0);

    c->dialled = true;
    c->t_start = now(c);
    c->gai.data = c;
    snprintf(port, sizeof(port), "%u", (unsigned)a.port);
    if (err == 0)
        err = uv_getaddrinfo(c->m->env.loop, &c->gai, on_resolved, a.host, port, &hints);
    if (err == 0)
        c->gai_busy = true;
    return err;
}

static struct conn *conn_to(struct peer_mgr *m, const char *addr, int *err)
{
    struct cfg_addr a;
    struct conn *c;

    for (c = m->conns; c; c = c->next)
        if (c->outgoing && c->state != C_CLOSING && strcmp(c->addr, addr) == 0)
            return c;
    *err = m->closing ? -ESHUTDOWN : cfg_addr_parse("peer", addr, false, &a, NULL, 0);
    if (*err < 0)
        return NULL;
    c = conn_new(m, true, addr);
    if (!c) {
        *err = -ENOMEM;
        return NULL;
    }
    c->state = C_CONNECTING;
    {
        struct dial_fail *d = dial_find(m, addr, false);
        uint64_t ms = uv_now(m->env.loop);

        if (d && d->until > ms) {
            c->dial_at = d->until; /* on_tick dials then */
            log_msg(CFG_LOG_INFO, "peer %s: connecting again in %" PRIu64 " ms (%u failed)",
                    addr, d->until - ms, d->fails);
            return c;
        }
    }
    *err = dial(c);
    if (*err < 0) {
        conn_close(c, "%s", "");
        return NULL;
    }
    return c;
}

static struct preq *new_req(struct peer_mgr *m, const char *addr, enum req_kind kind, int *err)
{
    struct conn *c = conn_to(m, addr, err);
    struct preq *r;

    if (!c)
        return NULL;
    if (c->n_reqs >= WIRE_INFLIGHT_MAX) {
        *err = -EBUSY;
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        *err = -ENOMEM;
        return NULL;
    }
    r->c = c;
    r->kind = kind;
    r->id = c->next_id++;
    if (c->next_id == 0)
        c->next_id = 1;
    r->msg.id = r->id;
    return r;
}

static void add_req(struct preq *r)
{
    struct conn *c = r->c;
    struct preq **tail;

    for (tail = &c->reqs; *tail; tail = &(*tail)->next)
        ;
    *tail = r;
    c->n_reqs++;
    if (c->state == C_OPEN)
        send_pending(c);
}

int peer_get_snapshot(struct peer_mgr *m, const char *addr, const char *repo,
                      const char *commit, peer_blob_cb cb, void *arg)
{
    struct preq *r;
    int err;

    if (!snapshot_repo_ok(repo) || !snapshot_rev_ok(commit))
        return -EINVAL;
    r = new_req(m, addr, R_SNAPSHOT, &err);
    if (!r)
        return err;
    r->msg.type = WIRE_GET_SNAPSHOT;
    snprintf(r->msg.u.get_snapshot.repo, sizeof(r->msg.u.get_snapshot.repo), "%s", repo);
    snprintf(r->msg.u.get_snapshot.rev, sizeof(r->msg.u.get_snapshot.rev), "%s", commit);
    r->blob_cb = cb;
    r->arg = arg;
    add_req(r);
    return 0;
}

int peer_get_manifest(struct peer_mgr *m, const char *addr, const uint8_t sha256[static 32],
                      uint32_t piece, peer_blob_cb cb, void *arg)
{
    struct preq *r;
    int err;

    r = new_req(m, addr, R_MANIFEST, &err);
    if (!r)
        return err;
    r->msg.type = WIRE_GET_MANIFEST;
    memcpy(r->msg.u.get_manifest.sha256, sha256, 32);
    r->msg.u.get_manifest.piece = piece;
    r->blob_cb = cb;
    r->arg = arg;
    add_req(r);
    return 0;
}

int peer_get_chunks(struct peer_mgr *m, const char *addr, const uint8_t (*hashes)[32],
                    uint32_t n, const struct peer_chunks_cb *cb, void *arg)
{
    struct preq *r;
    int err;

    if (n == 0 || n > WIRE_CHUNKS_PER_REQ)
        return -EINVAL;
    r = new_req(m, addr, R_CHUNKS, &err);
    if (!r)
        return err;
    r->hashes = malloc(n * sizeof(*r->hashes));
    if (!r->hashes) {
        free(r);
        return -ENOMEM;
    }
    memcpy(r->hashes, hashes, n * sizeof(*r->hashes));
    r->msg.type = WIRE_GET_CHUNKS;
    r->msg.u.get_chunks.n = n;
    memcpy(r->msg.u.get_chunks.hash, hashes, n * sizeof(*r->hashes));
    r->n = n;
    r->ccb = *cb;
    r->arg = arg;
    add_req(r);
    return 0;
}

void peer_blame(struct peer_mgr *m, const char *addr, const char *why)
{
    char text[200];

    m->st.bad_data++;
    snprintf(text, sizeof(text), "served bad data: %s", why);
    host_fault(m, addr, PEER_F_BAD_DATA, text);
    for (struct conn *c = m->conns; c; c = c->next)
        if (c->outgoing && strcmp(c->addr, addr) == 0 && c->state != C_CLOSING)
            conn_close(c, "%s", text);
}

/* --- the manager ------------------------------------------------------------------------------------------ */

int peer_mgr_new(const struct peer_env *env, struct peer_mgr **out)
{
    struct peer_mgr *m = calloc(1, sizeof(*m));

    if (!m)
        return -ENOMEM;
    m->env = *env;
    if (!m->env.max_conns)
        m->env.max_conns = 256;
    if (!m->env.max_uploads)
        m->env.max_uploads = 64;
    if (!m->env.handshake_ms)
        m->env.handshake_ms = 10000;
    if (!m->env.idle_ms)
        m->env.idle_ms = 60000;
    if (!m->env.connect_ms)
        m->env.connect_ms = 10000;
    *out = m;
    return 0;
}

int peer_listen(struct peer_mgr *m, const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    int err;

    err = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)
                            : uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (err < 0)
        return err;
    err = uv_tcp_init(m->env.loop, &m->listener);
    if (err < 0)
        return err;
    m->listener.data = m;
    m->listening = true;
    err = uv_tcp_bind(&m->listener, (struct sockaddr *)&ss, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&m->listener, 128, on_connection);
    return err;
}

int peer_listen_port(const struct peer_mgr *m)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (!m->listening ||
        uv_tcp_getsockname(&m->listener, (struct sockaddr *)&ss, &len) < 0)
        return -ENOENT;
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct peer_mgr *m = h->data;

    m->listening = false;
    if (!m->conns && m->closed) {
        void (*cb)(void *) = m->closed;
        m->closed = NULL;
        cb(m->closed_arg);
        free(m);
    }
}

void peer_mgr_close(struct peer_mgr *m, void (*done)(void *arg), void *arg)
{
    struct conn *c, *next;

    m->closing = true;
    m->closed = done;
    m->closed_arg = arg;
    for (c = m->conns; c; c = next) {
        next = c->next;
        fail_reqs(c, -ECANCELED, "the node is stopping");
        conn_close(c, "%s", "");
    }
    if (m->listening) {
        uv_close((uv_handle_t *)&m->listener, on_listener_closed);
    } else if (!m->conns) {
        m->closed = NULL;
        done(arg);
        free(m);
    }
}

void peer_get_stats(const struct peer_mgr *m, struct peer_stats *out)
{
    *out = m->st;
}

static int by_recent(const void *a, const void *b)
{
    const struct peer_host_faults *x = a, *y = b;

    return x->last_ms > y->last_ms ? -1 : x->last_ms < y->last_ms;
}

size_t peer_host_faults(const struct peer_mgr *m, struct peer_host_faults *out, size_t max)
{
    size_t i, n = 0;

    for (i = 0; i < PEER_HOSTS_MAX && n < max; i++) {
        if (m->faults[i].host[0])
            out[n++] = m->faults[i];
    }
    if (n)
        qsort(out, n, sizeof(*out), by_recent);
    return n;
}

static json_t *faults_json(const struct peer_host_faults *f, uint64_t now_ms)
{
    json_t *o = json_object();

    json_object_set_new(o, "host", json_string(f->host));
    for (int k = 0; k < PEER_F_COUNT; k++)
        json_object_set_new(o, peer_fault_names[k], json_integer((json_int_t)f->n[k]));
    json_object_set_new(o, "last", json_string(f->last));
    json_object_set_new(o, "seconds_ago",
                        json_integer((json_int_t)((now_ms - f->last_ms) / 1000)));
    return o;
}

json_t *peer_list_json(const struct peer_mgr *m)
{
    static const char *const names[] = {"connecting", "handshake", "open", "closing"};
    json_t *a = json_array();

    for (const struct conn *c = m->conns; a && c; c = c->next)
        json_array_append_new(
            a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i}", "addr", c->addr,
                         "node_id", c->peer_id, "direction", c->outgoing ? "out" : "in",
                         "state", names[c->state], "cipher",
                         c->cipher == NEG_AESGCM ? "aes-256-gcm"
                         : c->cipher == NEG_CHACHA ? "chacha20-poly1305"
                                                   : "",
                         "bytes_in", (json_int_t)c->bytes_in,
                         "bytes_out", (json_int_t)c->bytes_out, "rate_in",
                         (json_int_t)c->rate_in, "rate_out", (json_int_t)c->rate_out,
                         "requests", (int)c->n_reqs, "uploads", (int)c->n_serves));
    json_t *f = json_array();
    struct peer_host_faults *hf = malloc(PEER_HOSTS_MAX * sizeof(*hf));
    size_t n = hf ? peer_host_faults(m, hf, PEER_HOSTS_MAX) : 0;
    for (size_t i = 0; f && i < n; i++)
        json_array_append_new(f, faults_json(&hf[i], uv_now(m->env.loop)));
    free(hf);
    return json_pack("{s:o, s:o}", "peers", a ? a : json_array(), "faults", f ? f : json_array());
}
