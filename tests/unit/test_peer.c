/* test_peer.c - peer connections (node/peer.c): serving a store to a member over the
 * Noise handshake and the record stream, and resisting peers that misbehave.
 *
 * The peer manager runs on the main thread's loop over a temporary store holding one
 * file of two pieces. A second thread plays the remote node with plain non-blocking
 * sockets: it runs the initiator's side of Noise_XXpsk3 (protocol/noise.h), frames,
 * encrypts and reads records itself (protocol/wire.h), and every wait is bounded by
 * poll() with a deadline. The manager's counters are copied by a loop timer under a
 * mutex so the client thread can wait for them. After each bad peer a good client
 * must still be served. A last scenario runs peer.h's own client (a second manager
 * on the same loop) against the first, and against one holding another cluster key.
 */
#include "peer.h"

#include "chash.h"
#include "check.h"
#include "err.h"
#include "hasher.h"
#include "manifest.h"
#include "noise.h"
#include "sha256.h"
#include "snapshot.h"
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS  5000                    /* the longest any single wait may take */
#define FAST_MS  300                     /* handshake_ms and idle_ms of most runs */
#define PROLOGUE "shoal peer protocol 1" /* peer.c's Noise prologue (protocol v1) */
/* The cipher negotiation before the handshake (docs/peer-protocol.md §0). */
#define NEG_LEN    10
#define NEG_CHACHA 0x01
#define REPO     "model/org/name"
#define COMMIT   "0123456789abcdef0123456789abcdef01234567"
#define COMMIT2  "89abcdef0123456789abcdef0123456789abcdef"
/* The test file: two pieces, the second over 16 read batches of the server. */
#define FILE_SIZE (PROTO_PIECE_LEN + (2u << 20) + 12345)

/* --- test data: one file in a store (built once, read by every scenario) ---------- */

struct tchunk {
    uint8_t hash[32];
    uint32_t len;
    uint64_t off; /* in the file */
};

static struct data {
    char *dir;
    struct store *store;
    uint8_t *bytes;
    uint8_t id[32];
    struct hasher_piece *pieces[2];
    struct tchunk *chunks; /* all chunks of the file, in order */
    uint32_t n_chunks;
    uint32_t first[2]; /* piece i's first chunk in chunks[] */
    uint8_t psk[32], other_psk[32];
    uint8_t srv_sk[32], srv_pk[32], cli_sk[32];
} D;

static const struct tchunk *chunk_of(const uint8_t hash[32])
{
    for (uint32_t i = 0; i < D.n_chunks; i++)
        if (memcmp(D.chunks[i].hash, hash, 32) == 0)
            return &D.chunks[i];
    return NULL;
}

static void quiet_log(void *arg, enum store_log_level lvl, const char *msg)
{
    (void)arg;
    if (lvl == STORE_LOG_ERROR)
        fprintf(stderr, "   store log: %s\n", msg);
}

static void put_piece(uint32_t i)
{
    const struct hasher_piece *p = D.pieces[i];
    struct store_chunk *c = check_malloc(p->n_chunks * sizeof(*c));
    uint64_t off = p->offset;

    for (uint32_t k = 0; k < p->n_chunks; k++) {
        memcpy(c[k].hash, p->chunks[k].hash, 32);
        c[k].len = (uint32_t)p->chunks[k].len;
        c[k].data = D.bytes + off;
        off += c[k].len;
    }
    CHECK_EQ(store_put_piece(D.store, D.id, i, p->hash, c, p->n_chunks), 0);
    free(c);
}

static void data_setup(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    struct store_opts o = {.log = quiet_log};
    struct snapshot snap;
    uint8_t key[32];
    char why[512], etag[65];
    size_t dl = strlen(base) + 32;
    int r;

    D.dir = check_malloc(dl);
    snprintf(D.dir, dl, "%s/shoal-peer-XXXXXX", base);
    CHECK(mkdtemp(D.dir) != NULL);
    r = store_open(D.dir, &o, &D.store, why, sizeof(why));
    if (r < 0)
        check__fail(__FILE__, __LINE__, "store_open: %s (%s)", why, shoal_strerror(r));

    D.bytes = check_malloc(FILE_SIZE);
    check_fill_splitmix(D.bytes, FILE_SIZE, 0x9eef);
    CHECK_EQ(sha256_digest(D.bytes, FILE_SIZE, D.id), 0);
    D.chunks = check_malloc(2 * PROTO_CHUNKS_PER_PIECE * sizeof(*D.chunks));
    for (uint32_t i = 0; i < 2; i++) {
        struct hasher_piece *p = check_malloc(sizeof(*p));
        uint64_t off = (uint64_t)i * PROTO_PIECE_LEN;
        uint32_t len = i == 0 ? PROTO_PIECE_LEN : (uint32_t)(FILE_SIZE - PROTO_PIECE_LEN);

        p->index = i;
        p->offset = off;
        hasher_piece_compute(p, D.bytes + off, len);
        D.pieces[i] = p;
        D.first[i] = D.n_chunks;
        for (uint32_t k = 0; k < p->n_chunks; k++) {
            struct tchunk *t = &D.chunks[D.n_chunks++];
            memcpy(t->hash, p->chunks[k].hash, 32);
            t->len = (uint32_t)p->chunks[k].len;
            t->off = off;
            off += t->len;
        }
        put_piece(i);
    }
    CHECK_EQ(store_complete_file(D.store, D.id, FILE_SIZE), 0);
    /* Piece 1 spans more than one of the server's read batches; piece 0's first 256
     * chunks are more than the initial credit. */
    CHECK(D.pieces[1]->n_chunks > 16);
    CHECK(D.pieces[0]->n_chunks >= 64);

    chash_hex(D.id, 32, etag);
    CHECK_EQ(snapshot_init(&snap, REPO, COMMIT), 0);
    CHECK_EQ(snapshot_add(&snap, "model.safetensors", FILE_SIZE, D.id, etag), 0);
    CHECK_EQ(snapshot_finish(&snap), 0);
    CHECK_EQ(store_put_snapshot(D.store, &snap), 0);
    CHECK_EQ(store_set_ref(D.store, REPO, "main", COMMIT), 0);
    snapshot_release(&snap);

    randombytes_buf(key, sizeof(key));
    noise_psk_from_cluster_key(key, D.psk);
    randombytes_buf(key, sizeof(key));
    noise_psk_from_cluster_key(key, D.other_psk);
    sodium_memzero(key, sizeof(key));
    crypto_box_keypair(D.srv_pk, D.srv_sk);
    randombytes_buf(D.cli_sk, sizeof(D.cli_sk));
}

static void data_teardown(void)
{
    store_close(D.store);
    check_rmtree(D.dir);
    free(D.dir);
    free(D.bytes);
    free(D.chunks);
    free(D.pieces[0]);
    free(D.pieces[1]);
}

/* The first min(n, 256) chunk hashes of piece p, and their total length. */
static uint32_t piece_hashes(uint32_t p, uint8_t (*out)[32], uint64_t *total)
{
    uint32_t n = D.pieces[p]->n_chunks;

    if (n > WIRE_CHUNKS_PER_REQ)
        n = WIRE_CHUNKS_PER_REQ;
    *total = 0;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(out[i], D.chunks[D.first[p] + i].hash, 32);
        *total += D.chunks[D.first[p] + i].len;
    }
    return n;
}

/* --- the server side (loop thread) ----------------------------------------------- */

static struct srv {
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick;
    struct workq q;
    struct peer_mgr *m;
    int port;
    pthread_t th;
    void (*client)(void);
    pthread_mutex_t mu;
    struct peer_stats st; /* under mu */
    atomic_bool woken, closed;
    int done_calls, drained_calls;
} S;

static void take_stats(uv_timer_t *t)
{
    (void)t;
    pthread_mutex_lock(&S.mu);
    peer_get_stats(S.m, &S.st);
    pthread_mutex_unlock(&S.mu);
}

static void on_drained(void *arg)
{
    (void)arg;
    CHECK_EQ(S.q.inflight, 0);
    S.drained_calls++;
}

static void on_mgr_closed(void *arg)
{
    CHECK(arg == &S);
    S.done_calls++;
    atomic_store(&S.closed, true);
    work_drain(&S.q, on_drained, NULL);
}

static void on_wake(uv_async_t *a)
{
    take_stats(NULL);
    uv_close((uv_handle_t *)a, NULL);
    uv_close((uv_handle_t *)&S.tick, NULL);
    peer_mgr_close(S.m, on_mgr_closed, &S); /* connections may still be open */
}

static void wait_open(unsigned want);

static void wake_loop(void)
{
    if (!atomic_exchange(&S.woken, true))
        CHECK_EQ(uv_async_send(&S.wake), 0);
}

static void *client_main(void *arg)
{
    (void)arg;
    S.client();
    if (!atomic_load(&S.woken)) {
        wait_open(0); /* every connection the client closed is gone from the server */
        wake_loop();
    }
    return NULL;
}

/* Runs one client scenario against a fresh manager tuned by `tune` (limits and
 * timeouts); the loop ends once the manager and the work queue are closed. */
static void run(const struct peer_env *tune, void (*client)(void))
{
    struct peer_env env = *tune;

    memset(&S.st, 0, sizeof(S.st));
    S.client = client;
    S.done_calls = S.drained_calls = 0;
    atomic_store(&S.woken, false);
    atomic_store(&S.closed, false);
    CHECK_EQ(uv_loop_init(&S.loop), 0);
    work_init(&S.q, &S.loop);
    env.loop = &S.loop;
    env.store = D.store;
    env.work = &S.q;
    env.static_sk = D.srv_sk;
    env.psk = D.psk;
    env.node_id = "testnode";
    CHECK_EQ(peer_mgr_new(&env, &S.m), 0);
    CHECK_EQ(peer_listen_port(S.m), -ENOENT);
    CHECK_EQ(peer_listen(S.m, "127.0.0.1", 0), 0);
    S.port = peer_listen_port(S.m);
    CHECK(S.port > 0);
    CHECK_EQ(uv_timer_init(&S.loop, &S.tick), 0);
    CHECK_EQ(uv_timer_start(&S.tick, take_stats, 0, 5), 0);
    CHECK_EQ(uv_async_init(&S.loop, &S.wake, on_wake), 0);
    CHECK_EQ(pthread_create(&S.th, NULL, client_main, NULL), 0);
    CHECK_EQ(uv_run(&S.loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(pthread_join(S.th, NULL), 0);
    CHECK_EQ(S.done_calls, 1);
    CHECK_EQ(S.drained_calls, 1);
    CHECK_EQ(uv_loop_close(&S.loop), 0);
}

/* --- the client side (client thread) --------------------------------------------- */

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

static struct peer_stats stats(void)
{
    struct peer_stats st;

    pthread_mutex_lock(&S.mu);
    st = S.st;
    pthread_mutex_unlock(&S.mu);
    return st;
}

/* Waits until the counter at `off` in struct peer_stats reaches want. */
static void wait_stat(size_t off, uint64_t want, const char *name, int line)
{
    int64_t end = now_ms() + WAIT_MS;
    uint64_t v;

    for (;;) {
        struct peer_stats st = stats();

        memcpy(&v, (const char *)&st + off, sizeof(v));
        if (v >= want)
            return;
        if (now_ms() > end)
            check__fail(__FILE__, line, "stats.%s stayed at %llu, want %llu", name,
                        (unsigned long long)v, (unsigned long long)want);
        sleep_ms(2);
    }
}
#define WAIT_STAT(field, want)                                                                     \
    wait_stat(offsetof(struct peer_stats, field), (want), #field, __LINE__)

static void wait_open(unsigned want)
{
    int64_t end = now_ms() + WAIT_MS;

    while (stats().open != want) {
        if (now_ms() > end)
            check__fail(__FILE__, __LINE__, "stats.open is %u, want %u", stats().open, want);
        sleep_ms(2);
    }
}

/* Waits for the bad-peer counters to move by exactly these amounts from `b`. */
static void expect_counts(const struct peer_stats *b, unsigned hs, unsigned proto,
                          unsigned timeouts, unsigned refused)
{
    struct peer_stats st;

    WAIT_STAT(handshakes_failed, b->handshakes_failed + hs);
    WAIT_STAT(protocol_errors, b->protocol_errors + proto);
    WAIT_STAT(timeouts, b->timeouts + timeouts);
    WAIT_STAT(refused, b->refused + refused);
    st = stats();
    CHECK_EQ(st.handshakes_failed, b->handshakes_failed + hs);
    CHECK_EQ(st.protocol_errors, b->protocol_errors + proto);
    CHECK_EQ(st.timeouts, b->timeouts + timeouts);
    CHECK_EQ(st.refused, b->refused + refused);
}

#define EV_CLOSED  100 /* next_ev: the server closed the connection */
#define EV_TIMEOUT 101 /* next_ev: nothing within the time given */

struct cli {
    int fd;
    struct noise_cs tx, rx;
    struct wire_reader rd;
    uint8_t in[WIRE_FRAME_HDR + WIRE_FRAME_MAX]; /* received, not yet a whole frame */
    size_t in_len;
    uint8_t frame[WIRE_FRAME_MAX]; /* the last frame received */
    uint8_t pt[WIRE_FRAME_MAX];    /* its plaintext */
    const uint8_t *p;              /* what the reader has not taken of it */
    size_t n;
    uint8_t last[WIRE_FRAME_HDR + WIRE_FRAME_MAX]; /* the last transport frame sent */
    size_t last_len;
    uint8_t msg1[NOISE_MSG1_LEN(0)], msg3[NOISE_MSG3_LEN(0)]; /* as sent */
    uint8_t prologue[sizeof(PROLOGUE) - 1 + 2 * NEG_LEN];    /* after cli_negotiate */
};

/* A TCP connection to the manager; rcvbuf > 0 sets SO_RCVBUF first. */
static struct cli *cli_open_buf(int rcvbuf)
{
    struct cli *c = check_malloc(sizeof(*c));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
    struct pollfd pfd;
    socklen_t sl = sizeof(int);
    int err = 0;

    memset(c, 0, sizeof(*c));
    wire_reader_init(&c->rd);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(c->fd >= 0);
    if (rcvbuf > 0)
        CHECK_EQ(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        CHECK_EQ(errno, EINPROGRESS);
        pfd = (struct pollfd){.fd = c->fd, .events = POLLOUT};
        CHECK_EQ(poll(&pfd, 1, WAIT_MS), 1);
        CHECK_EQ(getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl), 0);
        CHECK_EQ(err, 0);
    }
    return c;
}

static struct cli *cli_open(void)
{
    return cli_open_buf(0);
}

static void cli_free(struct cli *c)
{
    close(c->fd);
    noise_cs_clear(&c->tx);
    noise_cs_clear(&c->rx);
    free(c);
}

/* Sends all of p; false if the server has closed the connection. */
static bool send_raw(struct cli *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    int64_t end = now_ms() + WAIT_MS;

    while (n > 0) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);

        if (w > 0) {
            b += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
            int64_t left = end - now_ms();

            CHECK(left > 0);
            poll(&pfd, 1, (int)left);
        } else {
            CHECK(w < 0 && (errno == EPIPE || errno == ECONNRESET));
            return false;
        }
    }
    return true;
}

static bool send_frame(struct cli *c, const uint8_t *body, size_t n)
{
    uint8_t hdr[WIRE_FRAME_HDR];

    CHECK_EQ(wire_frame_header(hdr, n), 0);
    return send_raw(c, hdr, sizeof(hdr)) && send_raw(c, body, n);
}

/* Reads what arrives before `end`: >0 bytes, 0 when the server closed, -1 at end. */
static int recv_some(struct cli *c, int64_t end)
{
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int64_t left = end - now_ms();
        ssize_t r;

        if (left <= 0)
            return -1;
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        if (c->in_len == sizeof(c->in))
            c->in_len = 0; /* only when discarding (expect_closed) */
        r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (r > 0) {
            c->in_len += (size_t)r;
            return (int)r;
        }
        if (r == 0 || errno == ECONNRESET)
            return 0;
        CHECK(errno == EAGAIN || errno == EINTR);
    }
}

/* The next frame's body into body (*len): 1, or 0 (closed), -1 (nothing in ms). */
static int read_frame(struct cli *c, uint8_t *body, size_t *len, int ms)
{
    int64_t end = now_ms() + ms;
    struct wire_frame f;

    for (;;) {
        int r = wire_frame_check(c->in, c->in_len, WIRE_FRAME_MAX, &f);

        CHECK(r >= 0);
        if (r == 1) {
            memcpy(body, c->in + f.off, f.len);
            *len = f.len;
            memmove(c->in, c->in + f.end, c->in_len - f.end);
            c->in_len -= f.end;
            return 1;
        }
        r = recv_some(c, end);
        if (r <= 0)
            return r;
    }
}

/* Reads and drops everything until the server closes; returns the ms it took. */
static int64_t expect_closed(struct cli *c)
{
    int64_t t0 = now_ms(), end = t0 + WAIT_MS;
    int r;

    c->in_len = 0;
    while ((r = recv_some(c, end)) > 0)
        c->in_len = 0;
    if (r < 0)
        check__fail(__FILE__, __LINE__, "the server kept the connection open");
    return now_ms() - t0;
}

/* The cipher negotiation: offer ChaCha20-Poly1305 only (the test speaks that), check the
 * server's choice, and keep the prologue both sides then use. */
static void cli_negotiate(struct cli *c)
{
    uint8_t offer[NEG_LEN] = "SHOALNEG\x01", choice[WIRE_FRAME_MAX];
    size_t n;

    offer[NEG_LEN - 1] = NEG_CHACHA;
    CHECK(send_frame(c, offer, NEG_LEN));
    CHECK_EQ(read_frame(c, choice, &n, WAIT_MS), 1);
    CHECK_EQ(n, NEG_LEN);
    CHECK_MEM(choice, "SHOALNEG\x01", 9);
    CHECK_EQ(choice[NEG_LEN - 1], NEG_CHACHA);
    memcpy(c->prologue, PROLOGUE, sizeof(PROLOGUE) - 1);
    memcpy(c->prologue + sizeof(PROLOGUE) - 1, offer, NEG_LEN);
    memcpy(c->prologue + sizeof(PROLOGUE) - 1 + NEG_LEN, choice, NEG_LEN);
}

/* The initiator's side of the handshake with `psk`. Returns false if the server
 * closed before message 2; a server that rejects message 3 just closes afterwards. */
static bool cli_handshake(struct cli *c, const uint8_t *psk)
{
    struct noise_hs hs;
    uint8_t m2[WIRE_FRAME_MAX], payload[64], rs[32];
    size_t n, plen;

    cli_negotiate(c);
    CHECK_EQ(noise_hs_init(&hs, NOISE_INITIATOR, NOISE_CHACHAPOLY, c->prologue,
                           sizeof(c->prologue), D.cli_sk, psk),
             0);
    CHECK_EQ(noise_hs_write(&hs, NULL, 0, c->msg1, sizeof(c->msg1), &n), 0);
    CHECK_EQ(n, sizeof(c->msg1));
    if (!send_frame(c, c->msg1, n) || read_frame(c, m2, &n, WAIT_MS) != 1) {
        noise_hs_clear(&hs);
        return false;
    }
    CHECK_EQ(n, NOISE_MSG2_LEN(0));
    CHECK_EQ(noise_hs_read(&hs, m2, n, payload, sizeof(payload), &plen), 0);
    CHECK_EQ(plen, 0);
    CHECK_EQ(noise_hs_remote_static(&hs, rs), 0);
    CHECK_MEM(rs, D.srv_pk, 32); /* the node's identity */
    CHECK_EQ(noise_hs_write(&hs, NULL, 0, c->msg3, sizeof(c->msg3), &n), 0);
    CHECK_EQ(noise_hs_split(&hs, &c->tx, &c->rx), 0);
    send_frame(c, c->msg3, n);
    return true;
}

/* Plaintext bytes (records, or anything) in one transport frame. */
static bool send_plain(struct cli *c, const uint8_t *p, size_t n)
{
    CHECK(n + NOISE_TAG_LEN <= WIRE_FRAME_MAX);
    CHECK_EQ(noise_encrypt(&c->tx, NULL, 0, p, n, c->last + WIRE_FRAME_HDR), 0);
    CHECK_EQ(wire_frame_header(c->last, n + NOISE_TAG_LEN), 0);
    c->last_len = WIRE_FRAME_HDR + n + NOISE_TAG_LEN;
    return send_raw(c, c->last, c->last_len);
}

static bool send_msg(struct cli *c, const struct wire_msg *m)
{
    uint8_t rec[WIRE_REC_MAX];
    int n = wire_msg_encode(m, rec, sizeof(rec));

    CHECK(n > 0);
    return send_plain(c, rec, (size_t)n);
}

/* A record around hand-made msgpack bytes (for messages the encoder refuses). */
static bool send_body(struct cli *c, const uint8_t *body, uint32_t n)
{
    uint8_t rec[64];

    CHECK(n + 4 <= sizeof(rec));
    rec[0] = (uint8_t)(n >> 24);
    rec[1] = (uint8_t)(n >> 16);
    rec[2] = (uint8_t)(n >> 8);
    rec[3] = (uint8_t)n;
    memcpy(rec + 4, body, n);
    return send_plain(c, rec, n + 4);
}

/* The next record event from the server (WIRE_EV_MSG or WIRE_EV_DATA), or EV_CLOSED,
 * EV_TIMEOUT, or the reader's error. */
static int next_ev(struct cli *c, struct wire_event *ev, int ms)
{
    for (;;) {
        size_t len;
        int k = wire_reader_next(&c->rd, &c->p, &c->n, ev);

        if (k != 0)
            return k;
        k = read_frame(c, c->frame, &len, ms);
        if (k <= 0)
            return k == 0 ? EV_CLOSED : EV_TIMEOUT;
        CHECK(len > NOISE_TAG_LEN);
        CHECK_EQ(noise_decrypt(&c->rx, NULL, 0, c->frame, len, c->pt), 0);
        c->p = c->pt;
        c->n = len - NOISE_TAG_LEN;
    }
}

static const struct wire_msg *expect_msg(struct cli *c, uint8_t type, uint32_t id)
{
    struct wire_event ev;
    int k = next_ev(c, &ev, WAIT_MS);

    if (k != WIRE_EV_MSG)
        check__fail(__FILE__, __LINE__, "waiting for %s: got %d", wire_type_name(type), k);
    if (ev.msg->type != type || ev.msg->id != id)
        check__fail(__FILE__, __LINE__, "want %s id %u, got %s id %u", wire_type_name(type), id,
                    wire_type_name(ev.msg->type), ev.msg->id);
    return ev.msg;
}

/* The payload that follows the message just read (malloc'd). */
static uint8_t *read_payload(struct cli *c, uint32_t len)
{
    uint8_t *buf = check_malloc(len);
    uint32_t got = 0;
    struct wire_event ev;

    while (got < len) {
        CHECK_EQ(next_ev(c, &ev, WAIT_MS), WIRE_EV_DATA);
        CHECK_EQ(ev.offset, got);
        CHECK(ev.len <= len - got);
        memcpy(buf + got, ev.data, ev.len);
        got += (uint32_t)ev.len;
        CHECK_EQ(ev.last, got == len);
    }
    return buf;
}

static void send_hello(struct cli *c)
{
    struct wire_msg m = {.type = WIRE_HELLO};

    m.u.hello.version = WIRE_VERSION;
    memcpy(m.u.hello.node_id, "testclient", sizeof("testclient"));
    CHECK(send_msg(c, &m));
}

/* Connected, handshake done, HELLOs exchanged. */
static struct cli *cli_ready_buf(int rcvbuf)
{
    struct cli *c = cli_open_buf(rcvbuf);
    const struct wire_msg *m;

    CHECK(cli_handshake(c, D.psk));
    send_hello(c);
    m = expect_msg(c, WIRE_HELLO, 0);
    CHECK_EQ(m->u.hello.version, WIRE_VERSION);
    CHECK_STR(m->u.hello.node_id, "testnode");
    return c;
}

static struct cli *cli_ready(void)
{
    return cli_ready_buf(0);
}

static void send_hashes(struct cli *c, uint8_t type, uint32_t id, const uint8_t (*h)[32],
                        uint32_t n)
{
    struct wire_msg m = {.type = type, .id = id};

    m.u.get_chunks.n = n;
    memcpy(m.u.get_chunks.hash, h, n * 32u);
    CHECK(send_msg(c, &m));
}

static void send_credit(struct cli *c, uint32_t bytes)
{
    struct wire_msg m = {.type = WIRE_CREDIT};

    m.u.credit.bytes = bytes;
    CHECK_EQ(wire_reader_grant(&c->rd, bytes), 0);
    CHECK(send_msg(c, &m));
}

/* One CHUNK of request id: hash h, its bytes equal to the file's and hashing to h. */
static uint32_t expect_chunk(struct cli *c, uint32_t id, const uint8_t h[32])
{
    const struct wire_msg *m = expect_msg(c, WIRE_CHUNK, id);
    const struct tchunk *t = chunk_of(h);
    uint32_t len = m->u.chunk.len;
    uint8_t got[32], *data;

    CHECK(t != NULL);
    CHECK_MEM(m->u.chunk.hash, h, 32);
    CHECK_EQ(len, t->len);
    data = read_payload(c, len);
    CHECK_MEM(data, D.bytes + t->off, len);
    chash_chunk(data, len, got);
    CHECK_MEM(got, h, 32);
    free(data);
    return len;
}

/* A quick session that must work after every bad peer: a HAVE and a small GET_CHUNKS. */
static void good_client(void)
{
    struct cli *c = cli_ready();
    uint8_t h[2][32];
    const struct wire_msg *m;

    memcpy(h[0], D.chunks[D.first[1]].hash, 32);
    randombytes_buf(h[1], 32);
    send_hashes(c, WIRE_HAVE, 1, h, 2);
    m = expect_msg(c, WIRE_HAVE_RESULT, 1);
    CHECK(wire_have_result_ok(&m->u.have_result, 2));
    CHECK(wire_have_bit(&m->u.have_result, 0));
    CHECK(!wire_have_bit(&m->u.have_result, 1));
    send_hashes(c, WIRE_GET_CHUNKS, 2, h, 1);
    expect_chunk(c, 2, h[0]);
    expect_msg(c, WIRE_END, 2);
    cli_free(c);
}

/* --- case 1: a good client -------------------------------------------------------- */

static void c_good(void)
{
    struct peer_stats b = stats(), st;
    struct cli *c = cli_ready();
    struct wire_msg q = {0};
    const struct wire_msg *m;
    struct snapshot snap;
    struct manifest mf;
    struct manifest_piece mp;
    struct chash_leaf *leaves;
    const struct hasher_piece *p1 = D.pieces[1];
    uint8_t *buf, h[10][32];
    uint32_t len, k;
    uint64_t served = 0;

    /* GET_SNAPSHOT: an unknown commit, then the stored one. */
    q.type = WIRE_GET_SNAPSHOT;
    q.id = 1;
    memcpy(q.u.get_snapshot.repo, REPO, sizeof(REPO));
    memcpy(q.u.get_snapshot.rev, COMMIT2, sizeof(COMMIT2));
    CHECK(send_msg(c, &q));
    m = expect_msg(c, WIRE_ERROR, 1);
    CHECK_EQ(m->u.error.code, WIRE_ERR_NOT_FOUND);
    /* By commit, and by a branch name (what it pointed at when last pulled). */
    for (q.id = 2; q.id <= 3; q.id++) {
        if (q.id == 2)
            memcpy(q.u.get_snapshot.rev, COMMIT, sizeof(COMMIT));
        else
            memcpy(q.u.get_snapshot.rev, "main", sizeof("main"));
        CHECK(send_msg(c, &q));
        len = expect_msg(c, WIRE_SNAPSHOT, q.id)->u.snapshot.len;
        buf = read_payload(c, len);
        CHECK_EQ(snapshot_decode(&snap, buf, len), 0);
        CHECK_STR(snap.repo, REPO);
        CHECK_STR(snap.commit, COMMIT);
        CHECK_EQ(snap.n_files, 1);
        CHECK(snapshot_find(&snap, "model.safetensors") != NULL);
        CHECK_MEM(snapshot_find(&snap, "model.safetensors")->sha256, D.id, 32);
        snapshot_release(&snap);
        free(buf);
    }
    q.id = 4;
    memcpy(q.u.get_snapshot.rev, "dev", sizeof("dev")); /* an unknown branch */
    CHECK(send_msg(c, &q));
    CHECK_EQ(expect_msg(c, WIRE_ERROR, 4)->u.error.code, WIRE_ERR_NOT_FOUND);

    /* GET_MANIFEST of the whole file. */
    memset(&q, 0, sizeof(q));
    q.type = WIRE_GET_MANIFEST;
    q.id = 13;
    memcpy(q.u.get_manifest.sha256, D.id, 32);
    q.u.get_manifest.piece = WIRE_PIECE_ALL;
    CHECK(send_msg(c, &q));
    len = expect_msg(c, WIRE_MANIFEST, 13)->u.manifest.len;
    buf = read_payload(c, len);
    CHECK_EQ(manifest_decode(&mf, buf, len), 0);
    CHECK_EQ(manifest_check(&mf), 0);
    CHECK_EQ(mf.size, FILE_SIZE);
    CHECK_MEM(mf.sha256, D.id, 32);
    CHECK_EQ(mf.n_pieces, 2);
    CHECK_EQ(mf.n_chunks, D.n_chunks);
    for (k = 0; k < D.n_chunks; k++) {
        CHECK_MEM(mf.chunks[k].hash, D.chunks[k].hash, 32);
        CHECK_EQ(mf.chunks[k].len, D.chunks[k].len);
    }
    CHECK_MEM(mf.pieces[1].hash, p1->hash, 32);
    manifest_release(&mf);
    free(buf);

    /* GET_MANIFEST of piece 1, then of a piece past the end and of an unknown file. */
    q.id = 14;
    q.u.get_manifest.piece = 1;
    CHECK(send_msg(c, &q));
    len = expect_msg(c, WIRE_MANIFEST, 14)->u.manifest.len;
    buf = read_payload(c, len);
    CHECK_EQ(manifest_piece_decode(&mp, &leaves, buf, len), 0);
    CHECK_EQ(mp.len, p1->len);
    CHECK_EQ(mp.n_chunks, p1->n_chunks);
    CHECK_MEM(mp.hash, p1->hash, 32);
    for (k = 0; k < p1->n_chunks; k++) {
        CHECK_MEM(leaves[k].hash, p1->chunks[k].hash, 32);
        CHECK_EQ(leaves[k].len, p1->chunks[k].len);
    }
    free(leaves);
    free(buf);
    q.id = 15;
    q.u.get_manifest.piece = 2;
    CHECK(send_msg(c, &q));
    CHECK_EQ(expect_msg(c, WIRE_ERROR, 15)->u.error.code, WIRE_ERR_NOT_FOUND);
    q.id = 16;
    q.u.get_manifest.piece = WIRE_PIECE_ALL;
    q.u.get_manifest.sha256[0] ^= 1;
    CHECK(send_msg(c, &q));
    CHECK_EQ(expect_msg(c, WIRE_ERROR, 16)->u.error.code, WIRE_ERR_NOT_FOUND);

    /* GET_CHUNKS: every chunk of piece 1 (more than one read batch), in order, END. */
    {
        uint8_t(*all)[32] = check_malloc(p1->n_chunks * 32u);
        uint64_t total;
        uint32_t n = piece_hashes(1, all, &total);

        CHECK_EQ(n, p1->n_chunks);
        send_hashes(c, WIRE_GET_CHUNKS, 7, (const uint8_t(*)[32])all, n);
        for (k = 0; k < n; k++)
            served += expect_chunk(c, 7, all[k]);
        expect_msg(c, WIRE_END, 7);
        CHECK_EQ(served, total);
        free(all);
    }

    /* HAVE: present and absent hashes mixed. */
    for (k = 0; k < 10; k++) {
        if (k % 3 == 0)
            memcpy(h[k], D.chunks[k * 7].hash, 32);
        else
            randombytes_buf(h[k], 32);
    }
    send_hashes(c, WIRE_HAVE, 8, (const uint8_t(*)[32])h, 10);
    m = expect_msg(c, WIRE_HAVE_RESULT, 8);
    CHECK(wire_have_result_ok(&m->u.have_result, 10));
    for (k = 0; k < 10; k++)
        CHECK_EQ(wire_have_bit(&m->u.have_result, k), k % 3 == 0);

    /* GET_CHUNKS with an absent chunk between two present ones: MISSING in its place. */
    send_hashes(c, WIRE_GET_CHUNKS, 9, (const uint8_t(*)[32])h, 4);
    served += expect_chunk(c, 9, h[0]);
    CHECK_MEM(expect_msg(c, WIRE_MISSING, 9)->u.missing.hash, h[1], 32);
    CHECK_MEM(expect_msg(c, WIRE_MISSING, 9)->u.missing.hash, h[2], 32);
    served += expect_chunk(c, 9, h[3]);
    expect_msg(c, WIRE_END, 9);

    /* Request ids are the requester's: one reused after its answer is fine. */
    send_hashes(c, WIRE_HAVE, 1, (const uint8_t(*)[32])h, 1);
    CHECK(wire_have_bit(&expect_msg(c, WIRE_HAVE_RESULT, 1)->u.have_result, 0));

    cli_free(c);
    wait_open(0);
    st = stats();
    CHECK_EQ(st.accepted, b.accepted + 1);
    CHECK_EQ(st.chunk_bytes_served, b.chunk_bytes_served + served);
    CHECK(st.bytes_in > b.bytes_in && st.bytes_out > b.bytes_out + served);
    expect_counts(&b, 0, 0, 0, 0);
}

static const struct peer_env FAST = {.handshake_ms = FAST_MS, .idle_ms = FAST_MS};

static void test_good_client(void)
{
    run(&FAST, c_good);
}

/* --- case 2: credit --------------------------------------------------------------- */

static void c_credit(void)
{
    struct peer_stats b = stats();
    struct cli *c = cli_ready();
    uint8_t(*h)[32] = check_malloc(WIRE_CHUNKS_PER_REQ * 32u);
    uint64_t total, got = 0;
    uint32_t n = piece_hashes(0, h, &total), i = 0, ping = 100, pings = 0;
    int64_t last_data = now_ms();
    struct wire_event ev;

    CHECK(total > WIRE_CREDIT_INIT + PROTO_CHUNK_MAX);
    send_hashes(c, WIRE_GET_CHUNKS, 1, (const uint8_t(*)[32])h, n);
    /* Take what comes until no chunk data arrived for 400 ms; HAVE pings meanwhile keep
     * the connection from idling out and show other answers still get through. */
    while (now_ms() - last_data < 400) {
        int k = next_ev(c, &ev, 50);

        if (k == EV_TIMEOUT) {
            send_hashes(c, WIRE_HAVE, ping++, (const uint8_t(*)[32])h, 1);
            pings++;
            continue;
        }
        CHECK_EQ(k, WIRE_EV_MSG);
        if (ev.msg->type == WIRE_HAVE_RESULT) {
            CHECK(wire_have_bit(&ev.msg->u.have_result, 0));
            pings--;
            continue;
        }
        CHECK(i < n);
        {
            const struct tchunk *t = chunk_of(h[i]);
            uint8_t *data;

            CHECK_EQ(ev.msg->type, WIRE_CHUNK);
            CHECK_EQ(ev.msg->id, 1);
            CHECK_MEM(ev.msg->u.chunk.hash, h[i], 32);
            CHECK_EQ(ev.msg->u.chunk.len, t->len);
            data = read_payload(c, t->len);
            CHECK_MEM(data, D.bytes + t->off, t->len);
            free(data);
            got += t->len;
            i++;
        }
        last_data = now_ms();
    }
    /* The server used its credit and stopped there (the reader would have failed on a
     * CHUNK beyond it). */
    CHECK(got <= WIRE_CREDIT_INIT);
    CHECK(got + PROTO_CHUNK_MAX > WIRE_CREDIT_INIT);
    CHECK(i < n);
    CHECK(ping > 100); /* quiet periods passed, with pings answered meanwhile */
    while (pings > 0) {
        expect_msg(c, WIRE_HAVE_RESULT, ping - pings);
        pings--;
    }
    /* More credit: the rest comes, then END. */
    send_credit(c, (uint32_t)(total - got));
    for (; i < n; i++)
        got += expect_chunk(c, 1, h[i]);
    expect_msg(c, WIRE_END, 1);
    CHECK_EQ(got, total);

    /* The credit left is under one chunk now: a new GET_CHUNKS stalls at once, and a
     * CANCEL ends it with ERROR CANCELLED; the session goes on. */
    send_hashes(c, WIRE_GET_CHUNKS, 2, (const uint8_t(*)[32])h, n);
    sleep_ms(50);
    {
        struct wire_msg m = {.type = WIRE_CANCEL, .id = 2};
        const struct wire_msg *e;
        uint32_t k = 0;

        CHECK(send_msg(c, &m));
        for (;;) {
            CHECK_EQ(next_ev(c, &ev, WAIT_MS), WIRE_EV_MSG);
            if (ev.msg->type != WIRE_CHUNK)
                break;
            free(read_payload(c, ev.msg->u.chunk.len)); /* a small one may still fit */
            CHECK(++k < n);
        }
        e = ev.msg;
        CHECK_EQ(e->type, WIRE_ERROR);
        CHECK_EQ(e->id, 2);
        CHECK_EQ(e->u.error.code, WIRE_ERR_CANCELLED);
    }
    send_hashes(c, WIRE_HAVE, 3, (const uint8_t(*)[32])h, 1);
    CHECK(wire_have_bit(&expect_msg(c, WIRE_HAVE_RESULT, 3)->u.have_result, 0));
    free(h);
    cli_free(c);
    expect_counts(&b, 0, 0, 0, 0);
    good_client();
}

static void test_credit(void)
{
    run(&FAST, c_credit);
}

/* A download that takes several idle_ms, from a client that reads steadily but has
 * nothing to send (it granted all the credit up front), must not be cut off. It is
 * larger than the socket buffers, so the server's writes complete only as the client
 * reads. */
static void c_slow_reader(void)
{
    struct peer_stats b = stats();
    struct cli *c = cli_ready_buf(32768);
    uint8_t(*h)[32] = check_malloc(WIRE_CHUNKS_PER_REQ * 32u);
    uint64_t total, got = 0;
    uint32_t n = piece_hashes(0, h, &total);
    int64_t t0 = now_ms();

    CHECK(total > (12u << 20));
    send_credit(c, (uint32_t)total);
    send_hashes(c, WIRE_GET_CHUNKS, 1, (const uint8_t(*)[32])h, n);
    for (uint32_t i = 0; i < n; i++) {
        got += expect_chunk(c, 1, h[i]);
        sleep_ms(FAST_MS / 30); /* about 5 MB/s */
    }
    expect_msg(c, WIRE_END, 1);
    CHECK(now_ms() - t0 > 3 * FAST_MS);
    CHECK_EQ(got, total);
    free(h);
    cli_free(c);
    expect_counts(&b, 0, 0, 0, 0);
}

static void test_slow_reader(void)
{
    run(&FAST, c_slow_reader);
}

/* --- cases 3 to 6: bad handshakes ------------------------------------------------- */

static void c_bad_handshakes(void)
{
    struct peer_stats b;
    struct cli *c, *c2;
    uint8_t junk[256];
    int64_t t;

    /* 3. Another cluster key: message 3 fails, the server closes. */
    b = stats();
    c = cli_open();
    CHECK(cli_handshake(c, D.other_psk)); /* message 2 comes: the psk counts in 3 */
    expect_closed(c);
    cli_free(c);
    expect_counts(&b, 1, 0, 0, 0);
    good_client();

    /* 4. Garbage: a frame of length 0. */
    b = stats();
    c = cli_open();
    junk[0] = junk[1] = 0;
    send_raw(c, junk, 2);
    expect_closed(c);
    cli_free(c);
    expect_counts(&b, 1, 0, 0, 0);
    good_client();

    /* 4. Garbage: random bytes framed as message 1 (a 48-byte frame). */
    b = stats();
    c = cli_open();
    randombytes_buf(junk, sizeof(junk));
    junk[0] = 0;
    junk[1] = NOISE_MSG1_LEN(0);
    send_raw(c, junk, 2 + NOISE_MSG1_LEN(0));
    expect_closed(c);
    cli_free(c);
    expect_counts(&b, 1, 0, 0, 0);
    good_client();

    /* 4. Garbage: an HTTP request (its first two bytes announce an 18 KB frame that
     * never comes): closed by the handshake timeout. */
    b = stats();
    c = cli_open();
    send_raw(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    expect_closed(c);
    cli_free(c);
    expect_counts(&b, 1, 0, 1, 0);
    good_client();

    /* 4. Negotiation: an offer of no cipher the node knows. */
    b = stats();
    c = cli_open();
    {
        uint8_t offer[NEG_LEN] = "SHOALNEG\x01";

        offer[NEG_LEN - 1] = 0x80;
        send_frame(c, offer, NEG_LEN);
    }
    expect_closed(c);
    cli_free(c);
    expect_counts(&b, 1, 0, 0, 0);
    good_client();

    /* 4. Negotiation tampered with on the way (a downgrade): the client believes it
     * offered something else, so the prologues differ and message 2 fails for it. */
    c = cli_open();
    cli_negotiate(c);
    {
        struct noise_hs hs;
        uint8_t m2[WIRE_FRAME_MAX], pl[64];
        size_t n, plen;

        c->prologue[sizeof(PROLOGUE) - 1 + NEG_LEN - 1] ^= 0x02; /* "offered AES too" */
        CHECK_EQ(noise_hs_init(&hs, NOISE_INITIATOR, NOISE_CHACHAPOLY, c->prologue,
                               sizeof(c->prologue), D.cli_sk, D.psk),
                 0);
        CHECK_EQ(noise_hs_write(&hs, NULL, 0, c->msg1, sizeof(c->msg1), &n), 0);
        CHECK(send_frame(c, c->msg1, n));
        if (read_frame(c, m2, &n, WAIT_MS) == 1)
            CHECK_EQ(noise_hs_read(&hs, m2, n, pl, sizeof(pl), &plen), SHOAL_EAUTH);
        noise_hs_clear(&hs);
    }
    cli_free(c);
    good_client();

    /* 5. Slowloris: connect and send nothing; then one that stops after message 1. */
    b = stats();
    c = cli_open();
    t = expect_closed(c);
    CHECK(t >= FAST_MS - 50);
    cli_free(c);
    expect_counts(&b, 1, 0, 1, 0);
    b = stats();
    c = cli_open();
    {
        struct noise_hs hs;
        size_t n;

        cli_negotiate(c);
        CHECK_EQ(noise_hs_init(&hs, NOISE_INITIATOR, NOISE_CHACHAPOLY, c->prologue,
                               sizeof(c->prologue), D.cli_sk, D.psk),
                 0);
        CHECK_EQ(noise_hs_write(&hs, NULL, 0, c->msg1, sizeof(c->msg1), &n), 0);
        noise_hs_clear(&hs);
        CHECK(send_frame(c, c->msg1, n));
    }
    t = expect_closed(c);
    CHECK(t >= FAST_MS - 50);
    cli_free(c);
    expect_counts(&b, 1, 0, 1, 0);
    good_client();

    /* 6. Replay: message 3 of a finished handshake on a new connection, after a
     * replayed message 1 (which a responder cannot tell from a fresh one). */
    c = cli_ready();
    b = stats();
    c2 = cli_open();
    cli_negotiate(c2);
    {
        uint8_t m2[WIRE_FRAME_MAX];
        size_t n;

        CHECK(send_frame(c2, c->msg1, sizeof(c->msg1)));
        CHECK_EQ(read_frame(c2, m2, &n, WAIT_MS), 1); /* message 2, for a new ephemeral */
        CHECK_EQ(n, NOISE_MSG2_LEN(0));
        send_frame(c2, c->msg3, sizeof(c->msg3));
    }
    expect_closed(c2);
    cli_free(c2);
    expect_counts(&b, 1, 0, 0, 0);

    /* 6. Reordered: message 3 first. */
    b = stats();
    c2 = cli_open();
    cli_negotiate(c2);
    send_frame(c2, c->msg3, sizeof(c->msg3));
    expect_closed(c2);
    cli_free(c2);
    expect_counts(&b, 1, 0, 0, 0);

    /* 6. A second message 1 on a connection after its message 2 (out of turn). */
    b = stats();
    c2 = cli_open();
    cli_negotiate(c2);
    {
        uint8_t m2[WIRE_FRAME_MAX];
        size_t n;

        CHECK(send_frame(c2, c->msg1, sizeof(c->msg1)));
        CHECK_EQ(read_frame(c2, m2, &n, WAIT_MS), 1);
        send_frame(c2, c->msg1, sizeof(c->msg1));
    }
    expect_closed(c2);
    cli_free(c2);
    expect_counts(&b, 1, 0, 0, 0);

    /* The first connection was never disturbed. */
    good_client();
    send_hashes(c, WIRE_HAVE, 1, (const uint8_t(*)[32])D.chunks[0].hash, 1);
    CHECK(wire_have_bit(&expect_msg(c, WIRE_HAVE_RESULT, 1)->u.have_result, 0));
    cli_free(c);
}

static void test_bad_handshakes(void)
{
    run(&FAST, c_bad_handshakes);
}

/* --- cases 7 and 8: bad frames and records after the handshake --------------------- */

/* Opens a session (HELLO sent unless no_hello), lets bad() misbehave, and expects the
 * connection closed with one protocol error, then a good client served. */
static void expect_protocol_error(bool no_hello, void (*bad)(struct cli *c))
{
    struct peer_stats b = stats();
    struct cli *c = cli_open();
    const struct wire_msg *m;

    CHECK(cli_handshake(c, D.psk));
    if (!no_hello)
        send_hello(c);
    m = expect_msg(c, WIRE_HELLO, 0);
    CHECK_STR(m->u.hello.node_id, "testnode");
    bad(c);
    expect_closed(c);
    cli_free(c);
    expect_counts(&b, 0, 1, 0, 0);
    good_client();
}

static void bad_bit_flip(struct cli *c)
{
    struct wire_msg m = {.type = WIRE_HAVE, .id = 1};
    uint8_t rec[WIRE_REC_MAX];
    uint8_t frame[WIRE_FRAME_HDR + 256];
    int n;

    m.u.have.n = 1;
    memcpy(m.u.have.hash[0], D.chunks[0].hash, 32);
    n = wire_msg_encode(&m, rec, sizeof(rec));
    CHECK(n > 0 && (size_t)n + NOISE_TAG_LEN <= sizeof(frame) - WIRE_FRAME_HDR);
    CHECK_EQ(noise_encrypt(&c->tx, NULL, 0, rec, (size_t)n, frame + WIRE_FRAME_HDR), 0);
    CHECK_EQ(wire_frame_header(frame, (size_t)n + NOISE_TAG_LEN), 0);
    frame[WIRE_FRAME_HDR + 9] ^= 0x10;
    send_raw(c, frame, WIRE_FRAME_HDR + (size_t)n + NOISE_TAG_LEN);
}

static void bad_replay(struct cli *c)
{
    uint8_t again[sizeof(c->last)];
    size_t n;

    send_hashes(c, WIRE_HAVE, 1, (const uint8_t(*)[32])D.chunks[0].hash, 1);
    n = c->last_len;
    memcpy(again, c->last, n);
    CHECK(wire_have_bit(&expect_msg(c, WIRE_HAVE_RESULT, 1)->u.have_result, 0));
    send_raw(c, again, n); /* the same ciphertext again */
}

static void bad_short_frame(struct cli *c)
{
    static const uint8_t f[] = {0, 5, 1, 2, 3, 4, 5}; /* shorter than a tag */

    send_raw(c, f, sizeof(f));
}

static void bad_zero_frame(struct cli *c)
{
    static const uint8_t f[] = {0, 0};

    send_raw(c, f, sizeof(f));
}

static void bad_record_len(struct cli *c)
{
    uint8_t rec[4] = {0, 0, (WIRE_MSG_MAX + 1) >> 8, (WIRE_MSG_MAX + 1) & 0xff};

    send_plain(c, rec, sizeof(rec)); /* judged from the length alone */
}

static void bad_record_zero(struct cli *c)
{
    uint8_t rec[4] = {0};

    send_plain(c, rec, sizeof(rec));
}

static void bad_unknown_type(struct cli *c)
{
    static const uint8_t body[] = {0x92, WIRE_TYPE_MAX + 1, 0x01}; /* [15, 1] */

    send_body(c, body, sizeof(body));
}

static void bad_not_msgpack(struct cli *c)
{
    static const uint8_t body[] = {0xc1, 0xc1, 0xc1}; /* 0xc1 is never used */

    send_body(c, body, sizeof(body));
}

static void bad_hello_version(struct cli *c)
{
    /* [1, 0, 2, "testclient", 0]: HELLO of version 2, instead of ours. */
    static const uint8_t body[] = {0x95, 0x01, 0x00, 0x02, 0xaa, 't', 'e', 's',
                                   't',  'c',  'l',  'i',  'e',  'n', 't', 0x00};

    send_body(c, body, sizeof(body));
}

static void bad_no_hello(struct cli *c)
{
    send_hashes(c, WIRE_HAVE, 1, (const uint8_t(*)[32])D.chunks[0].hash, 1);
}

static void bad_two_hellos(struct cli *c)
{
    send_hello(c);
}

static void bad_stray_answer(struct cli *c)
{
    struct wire_msg m = {.type = WIRE_END, .id = 77}; /* no request 77 is open */

    CHECK(send_msg(c, &m));
}

static void bad_stray_chunk(struct cli *c)
{
    struct wire_msg m = {.type = WIRE_CHUNK, .id = 1};
    uint8_t rec[WIRE_REC_MAX + 8];
    int n;

    memcpy(m.u.chunk.hash, D.chunks[0].hash, 32);
    m.u.chunk.len = 8;
    n = wire_msg_encode(&m, rec, sizeof(rec));
    CHECK(n > 0);
    memset(rec + n, 0xab, 8); /* the payload */
    send_plain(c, rec, (size_t)n + 8);
}

static void c_bad_transport(void)
{
    /* 7. */
    expect_protocol_error(false, bad_bit_flip);
    expect_protocol_error(false, bad_replay);
    expect_protocol_error(false, bad_short_frame);
    expect_protocol_error(false, bad_zero_frame);
    /* 8. */
    expect_protocol_error(false, bad_record_len);
    expect_protocol_error(false, bad_record_zero);
    expect_protocol_error(false, bad_unknown_type);
    expect_protocol_error(false, bad_not_msgpack);
    expect_protocol_error(true, bad_hello_version);
    expect_protocol_error(true, bad_no_hello);
    expect_protocol_error(false, bad_two_hellos);
    expect_protocol_error(false, bad_stray_answer);
    expect_protocol_error(false, bad_stray_chunk);

    /* A session that goes quiet with nothing owed is closed after idle_ms, quietly. */
    {
        struct peer_stats b = stats();
        struct cli *c = cli_ready();
        int64_t t = expect_closed(c);

        CHECK(t >= FAST_MS - 100);
        cli_free(c);
        expect_counts(&b, 0, 0, 0, 0);
    }
}

static void test_bad_transport(void)
{
    run(&FAST, c_bad_transport);
}

/* --- case 9: a peer that never reads --------------------------------------------- */

#define NOREAD_IDLE_MS 1500

static void c_no_reader(void)
{
    struct peer_stats b = stats(), st;
    struct cli *c = cli_ready_buf(65536);
    uint8_t(*h)[32] = check_malloc(WIRE_CHUNKS_PER_REQ * 32u);
    uint64_t total, last = 0, sent;
    uint32_t n = piece_hashes(0, h, &total);
    int64_t end = now_ms() + WAIT_MS;
    int same = 0;

    send_credit(c, WIRE_CREDIT_MAX - WIRE_CREDIT_INIT);
    for (uint32_t id = 1; id <= 8; id++)
        send_hashes(c, WIRE_GET_CHUNKS, id, (const uint8_t(*)[32])h, n);
    CHECK(8 * total > 4 * (PEER_OUT_MAX + (16u << 20)));
    /* Output stops growing (well before the server gives up on the peer). */
    while (same < 6) {
        sleep_ms(50);
        st = stats();
        CHECK(now_ms() < end);
        CHECK_EQ(st.timeouts, b.timeouts);
        same = st.bytes_out == last ? same + 1 : 0;
        last = st.bytes_out;
    }
    sent = last - b.bytes_out;
    fprintf(stderr, "   a non-reading peer got %llu bytes queued or sent\n",
            (unsigned long long)sent);
    /* It stopped at its output bound (the credit allowed far more)... */
    CHECK(sent >= PEER_OUT_MAX);
    /* ...plus what the kernel's socket buffers took. */
    CHECK(sent < PEER_OUT_MAX + (16u << 20));
    /* Then closed as a peer that stopped reading. */
    WAIT_STAT(timeouts, b.timeouts + 1);
    st = stats();
    CHECK(st.bytes_out - b.bytes_out < PEER_OUT_MAX + (16u << 20));
    expect_closed(c);
    cli_free(c);
    free(h);
    expect_counts(&b, 0, 0, 1, 0);
    good_client();
}

/* The same with small requests whose answers no credit limits: GET_MANIFEST of the
 * whole file (~50 bytes in, ~10 KB out), 8000 of them (~80 MB asked). `paced`: 50 per
 * frame every 5 ms, so answers complete and fill the output; else all at once, which
 * the limit on requests answered at once (BUSY beyond it) must bound. */
static void no_reader_blobs(bool paced)
{
    struct peer_stats b = stats(), st;
    struct cli *c = cli_ready_buf(65536);
    struct wire_msg q = {.type = WIRE_GET_MANIFEST};
    uint8_t *rec = check_malloc(WIRE_PLAIN_MAX);
    uint32_t id = 1, per_frame = paced ? 50 : 1000;
    uint64_t last = 0, sent;
    int same = 0;
    int64_t end;

    memcpy(q.u.get_manifest.sha256, D.id, 32);
    q.u.get_manifest.piece = WIRE_PIECE_ALL;
    while (id <= 8000) {
        size_t len = 0;

        for (uint32_t k = 0; k < per_frame; k++) {
            int n;

            q.id = id++;
            n = wire_msg_encode(&q, rec + len, WIRE_PLAIN_MAX - len);
            CHECK(n > 0);
            len += (size_t)n;
        }
        CHECK(send_plain(c, rec, len));
        if (paced)
            sleep_ms(5);
    }
    end = now_ms() + WAIT_MS;
    while (same < 6) {
        sleep_ms(50);
        st = stats();
        CHECK(now_ms() < end);
        CHECK_EQ(st.timeouts, b.timeouts);
        same = st.bytes_out == last ? same + 1 : 0;
        last = st.bytes_out;
    }
    sent = last - b.bytes_out;
    fprintf(stderr, "   8000 GET_MANIFEST unread (%s): %llu bytes queued or sent\n",
            paced ? "paced" : "at once", (unsigned long long)sent);
    if (paced)
        CHECK(sent >= PEER_OUT_MAX); /* it answered until its output bound */
    CHECK(sent < PEER_OUT_MAX + (16u << 20));
    wait_open(b.open); /* closed by the server, the client still reading nothing */
    expect_closed(c);
    cli_free(c);
    free(rec);
    /* Paced, the output waits for the peer: closed as not reading. At once, it may all
     * have fit in the socket buffers: then closed as idle, which counts nothing. */
    st = stats();
    expect_counts(&b, 0, 0, paced || st.timeouts > b.timeouts ? 1 : 0, 0);
    good_client();
}

static void c_no_reader_blobs(void)
{
    no_reader_blobs(true);
    no_reader_blobs(false);
}

static void test_no_reader(void)
{
    struct peer_env e = {.handshake_ms = FAST_MS, .idle_ms = NOREAD_IDLE_MS};

    run(&e, c_no_reader);
    run(&e, c_no_reader_blobs);
}

/* --- case 10: max_conns ------------------------------------------------------------ */

static void c_max_conns(void)
{
    struct peer_stats b = stats();
    struct cli *a = cli_ready(), *c = cli_open(), *x;

    WAIT_STAT(accepted, b.accepted + 2);
    wait_open(2);
    x = cli_open(); /* the third */
    expect_closed(x);
    cli_free(x);
    expect_counts(&b, 0, 0, 0, 1);
    /* The two admitted connections still work. */
    send_hashes(a, WIRE_HAVE, 1, (const uint8_t(*)[32])D.chunks[0].hash, 1);
    CHECK(wire_have_bit(&expect_msg(a, WIRE_HAVE_RESULT, 1)->u.have_result, 0));
    CHECK(cli_handshake(c, D.psk));
    send_hello(c);
    expect_msg(c, WIRE_HELLO, 0);
    cli_free(c);
    wait_open(1);
    good_client(); /* room again */
    cli_free(a);
    wait_open(0);
    expect_counts(&b, 0, 0, 0, 1);
}

static void test_max_conns(void)
{
    struct peer_env e = {.max_conns = 2, .handshake_ms = WAIT_MS, .idle_ms = WAIT_MS};

    run(&e, c_max_conns);
}

/* --- case 11: closing the manager with connections open ----------------------------- */

static void c_close_open(void)
{
    struct cli *a = cli_open(), *busy = cli_ready_buf(65536), *idle = cli_ready();
    uint8_t(*h)[32] = check_malloc(WIRE_CHUNKS_PER_REQ * 32u);
    uint64_t total;
    uint32_t n = piece_hashes(0, h, &total);
    int64_t end;

    for (uint32_t id = 1; id <= 4; id++)
        send_hashes(busy, WIRE_GET_CHUNKS, id, (const uint8_t(*)[32])h, n);
    wait_open(3);
    WAIT_STAT(chunk_bytes_served, 1); /* answers are under way */
    wake_loop();
    end = now_ms() + WAIT_MS;
    while (!atomic_load(&S.closed)) {
        CHECK(now_ms() < end);
        sleep_ms(2);
    }
    expect_closed(a);
    expect_closed(busy);
    expect_closed(idle);
    cli_free(a);
    cli_free(busy);
    cli_free(idle);
    free(h);
}

static void test_close_with_conns(void)
{
    struct peer_env e = {.handshake_ms = WAIT_MS, .idle_ms = WAIT_MS};

    run(&e, c_close_open);
}

/* --- peer.h's client: a second manager on the same loop ---------------------------- */

struct blob_res {
    bool called;
    int err;
    char why[1024];
    uint8_t *data;
    size_t len;
};

struct chunks_res {
    bool done;
    int err;
    char why[1024];
    uint32_t n;
    uint8_t (*h)[32];
    uint8_t *buf[WIRE_CHUNKS_PER_REQ];
    uint32_t total[WIRE_CHUNKS_PER_REQ], got[WIRE_CHUNKS_PER_REQ];
    bool missing[WIRE_CHUNKS_PER_REQ];
};

static struct api {
    uv_loop_t loop;
    uv_timer_t t;
    struct workq q;
    struct peer_mgr *srv, *cli, *stranger;
    uint8_t cli_sk[32], str_sk[32];
    char addr[64], dead[64];
    int dead_fd;
    int phase, pending, closed, drained;
    bool in_call; /* inside a call that starts a request */
    struct blob_res snap_unknown, snap, manifest, piece, no_file, from_stranger, to_dead;
    struct blob_res connecting; /* its connection not yet made at the close */
    struct chunks_res big, mixed, cancelled;
} A;

static void api_next(void);

static void on_blob(void *arg, int err, const char *why, const uint8_t *data, size_t len)
{
    struct blob_res *r = arg;

    CHECK(!A.in_call || err == -ECANCELED); /* peer_mgr_close ends them at once */
    CHECK(!r->called);
    r->called = true;
    r->err = err;
    if (err < 0) {
        CHECK(why != NULL && why[0] != '\0');
        snprintf(r->why, sizeof(r->why), "%s", why);
    } else {
        CHECK(data != NULL && len > 0);
        r->data = check_malloc(len);
        memcpy(r->data, data, len);
        r->len = len;
    }
    A.pending--;
    api_next();
}

static void on_chunk_data(void *arg, uint32_t i, uint32_t off, uint32_t total, const uint8_t *data,
                          size_t len)
{
    struct chunks_res *r = arg;

    CHECK(!A.in_call);
    CHECK(!r->done);
    CHECK(i < r->n);
    CHECK(!r->missing[i]);
    if (!r->buf[i]) {
        CHECK_EQ(off, 0);
        CHECK(total > 0 && total <= PROTO_CHUNK_MAX);
        r->buf[i] = check_malloc(total);
        r->total[i] = total;
    }
    CHECK_EQ(total, r->total[i]);
    CHECK_EQ(off, r->got[i]);
    CHECK(len > 0 && len <= total - off);
    memcpy(r->buf[i] + off, data, len);
    r->got[i] += (uint32_t)len;
}

static void on_chunk_missing(void *arg, uint32_t i)
{
    struct chunks_res *r = arg;

    CHECK(!A.in_call);
    CHECK(i < r->n && !r->buf[i] && !r->missing[i]);
    r->missing[i] = true;
}

static void on_chunks_done(void *arg, int err, const char *why)
{
    struct chunks_res *r = arg;

    CHECK(!A.in_call || err == -ECANCELED); /* peer_mgr_close ends them at once */
    CHECK(!r->done);
    r->done = true;
    r->err = err;
    if (err < 0) {
        CHECK(why != NULL && why[0] != '\0');
        snprintf(r->why, sizeof(r->why), "%s", why);
    }
    A.pending--;
    api_next();
}

static const struct peer_chunks_cb chunk_cbs = {on_chunk_data, on_chunk_missing, on_chunks_done};

static void chunks_setup(struct chunks_res *r, uint32_t n)
{
    memset(r, 0, sizeof(*r));
    r->n = n;
    r->h = check_malloc(n * 32u);
}

/* Every hash answered: present ones with the file's bytes, absent ones missing. */
static void chunks_verify(struct chunks_res *r)
{
    CHECK(r->done);
    CHECK_EQ(r->err, 0);
    for (uint32_t i = 0; i < r->n; i++) {
        const struct tchunk *t = chunk_of(r->h[i]);
        uint8_t got[32];

        if (!t) {
            CHECK(r->missing[i]);
            continue;
        }
        CHECK(r->buf[i] != NULL);
        CHECK_EQ(r->got[i], t->len);
        CHECK_MEM(r->buf[i], D.bytes + t->off, t->len);
        chash_chunk(r->buf[i], t->len, got);
        CHECK_MEM(got, r->h[i], 32);
    }
}

static void chunks_free(struct chunks_res *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        free(r->buf[i]);
    free(r->h);
}

static void on_api_closed(void *arg)
{
    (void)arg;
    A.closed++;
    if (A.closed == 3)
        work_drain(&A.q, NULL, NULL);
}

/* Whether a peer_list_json() has a connection with these fields. */
static bool listed(json_t *j, const char *node_id, const char *dir)
{
    json_t *a = json_object_get(j, "peers"), *p;
    size_t i;

    CHECK(json_is_array(a));
    json_array_foreach(a, i, p)
    {
        if (strcmp(json_string_value(json_object_get(p, "node_id")), node_id) == 0 &&
            strcmp(json_string_value(json_object_get(p, "direction")), dir) == 0 &&
            strcmp(json_string_value(json_object_get(p, "state")), "open") == 0)
            return true;
    }
    return false;
}

static void api_phase1(void)
{
    struct peer_stats st;
    struct snapshot snap;
    struct manifest mf;
    struct manifest_piece mp;
    struct chash_leaf *leaves;
    json_t *j;

    CHECK(A.snap_unknown.called);
    CHECK_EQ(A.snap_unknown.err, -ENOENT);
    CHECK(strstr(A.snap_unknown.why, "no such snapshot") != NULL);
    CHECK_EQ(A.snap.err, 0);
    CHECK_EQ(snapshot_decode(&snap, A.snap.data, A.snap.len), 0);
    CHECK_STR(snap.commit, COMMIT);
    snapshot_release(&snap);
    CHECK_EQ(A.manifest.err, 0);
    CHECK_EQ(manifest_decode(&mf, A.manifest.data, A.manifest.len), 0);
    CHECK_EQ(manifest_check(&mf), 0);
    CHECK_MEM(mf.sha256, D.id, 32);
    CHECK_EQ(mf.n_chunks, D.n_chunks);
    manifest_release(&mf);
    CHECK_EQ(A.piece.err, 0);
    CHECK_EQ(manifest_piece_decode(&mp, &leaves, A.piece.data, A.piece.len), 0);
    CHECK_MEM(mp.hash, D.pieces[0]->hash, 32);
    CHECK_EQ(mp.n_chunks, D.pieces[0]->n_chunks);
    free(leaves);
    CHECK_EQ(A.no_file.err, -ENOENT);
    chunks_verify(&A.big);
    chunks_verify(&A.mixed);
    CHECK(A.mixed.missing[1] && A.mixed.missing[3]);

    /* Both ends list the connection, each with the other's node id. */
    j = peer_list_json(A.srv);
    CHECK(listed(j, "clientnode", "in"));
    json_decref(j);
    j = peer_list_json(A.cli);
    CHECK(listed(j, "testnode", "out"));
    json_decref(j);
    peer_get_stats(A.cli, &st);
    CHECK_EQ(st.connected, 1);                        /* all of it over one connection */
    CHECK(st.chunk_bytes_fetched > WIRE_CREDIT_INIT); /* so CREDIT was sent */
    peer_get_stats(A.srv, &st);
    CHECK_EQ(st.accepted, 1);
    CHECK_EQ(st.handshakes_failed + st.protocol_errors + st.timeouts, 0);

    /* Blaming the peer for bad bytes counts and drops its connection. */
    peer_blame(A.cli, A.addr, "a chunk did not match its hash");
    peer_get_stats(A.cli, &st);
    CHECK_EQ(st.bad_data, 1);
    j = peer_list_json(A.cli);
    CHECK(!listed(j, "testnode", "out"));
    json_decref(j);
}

/* Drives the scenario: called after every callback. */
static void api_next(void)
{
    struct peer_stats st;
    int r;

    if (A.pending > 0)
        return;
    if (A.phase == 1) {
        api_phase1();
        /* Another cluster key, and an address where nobody listens. */
        A.phase = 2;
        A.pending = 2;
        A.in_call = true;
        CHECK_EQ(peer_get_snapshot(A.stranger, A.addr, REPO, COMMIT, on_blob, &A.from_stranger), 0);
        CHECK_EQ(peer_get_snapshot(A.cli, A.dead, REPO, COMMIT, on_blob, &A.to_dead), 0);
        A.in_call = false;
    } else if (A.phase == 2) {
        CHECK(A.from_stranger.err < 0);
        fprintf(stderr, "   another cluster key: %s (%s)\n", A.from_stranger.why,
                shoal_strerror(A.from_stranger.err));
        CHECK(A.to_dead.err < 0);
        fprintf(stderr, "   nobody listening: %s\n", A.to_dead.why);
        peer_get_stats(A.srv, &st);
        CHECK_EQ(st.handshakes_failed, 1);
        CHECK_EQ(st.protocol_errors, 0);
        /* Closing a manager fails its open requests with -ECANCELED. */
        A.phase = 3;
        A.pending = 2;
        A.in_call = true;
        r = peer_get_chunks(A.cli, A.addr, (const uint8_t(*)[32])A.cancelled.h, A.cancelled.n,
                            &chunk_cbs, &A.cancelled);
        CHECK_EQ(r, 0);
        r = peer_get_snapshot(A.cli, A.dead, REPO, COMMIT, on_blob, &A.connecting);
        A.in_call = false;
        CHECK_EQ(r, 0);
        A.in_call = true;
        peer_mgr_close(A.cli, on_api_closed, NULL);
        A.in_call = false;
    } else if (A.phase == 3) {
        CHECK(A.cancelled.done);
        CHECK_EQ(A.cancelled.err, -ECANCELED);
        CHECK(A.connecting.called);
        CHECK_EQ(A.connecting.err, -ECANCELED);
        A.phase = 4;
        peer_mgr_close(A.stranger, on_api_closed, NULL);
        peer_mgr_close(A.srv, on_api_closed, NULL);
    }
}

static void api_start(uv_timer_t *t)
{
    uint8_t h[32];

    uv_close((uv_handle_t *)t, NULL);
    A.phase = 1;
    A.pending = 7;
    A.in_call = true;
    CHECK_EQ(peer_get_snapshot(A.cli, A.addr, REPO, COMMIT2, on_blob, &A.snap_unknown), 0);
    CHECK_EQ(peer_get_snapshot(A.cli, A.addr, REPO, COMMIT, on_blob, &A.snap), 0);
    CHECK_EQ(peer_get_manifest(A.cli, A.addr, D.id, WIRE_PIECE_ALL, on_blob, &A.manifest), 0);
    CHECK_EQ(peer_get_manifest(A.cli, A.addr, D.id, 0, on_blob, &A.piece), 0);
    memcpy(h, D.id, 32);
    h[31] ^= 0xff;
    CHECK_EQ(peer_get_manifest(A.cli, A.addr, h, WIRE_PIECE_ALL, on_blob, &A.no_file), 0);
    CHECK_EQ(
        peer_get_chunks(A.cli, A.addr, (const uint8_t(*)[32])A.big.h, A.big.n, &chunk_cbs, &A.big),
        0);
    CHECK_EQ(peer_get_chunks(A.cli, A.addr, (const uint8_t(*)[32])A.mixed.h, A.mixed.n, &chunk_cbs,
                             &A.mixed),
             0);
    /* Refused at once, no callback. */
    CHECK_EQ(peer_get_chunks(A.cli, A.addr, (const uint8_t(*)[32])h, 0, &chunk_cbs, &A.mixed),
             -EINVAL);
    CHECK_EQ(peer_get_snapshot(A.cli, "no-port", REPO, COMMIT, on_blob, &A.to_dead), -EINVAL);
    CHECK_EQ(peer_get_snapshot(A.cli, A.addr, "not a repo", COMMIT, on_blob, &A.to_dead), -EINVAL);
    A.in_call = false;
}

static struct peer_mgr *api_mgr(const uint8_t *sk, const uint8_t *psk, const char *id)
{
    struct peer_env env = {.loop = &A.loop,
                           .store = D.store,
                           .work = &A.q,
                           .static_sk = sk,
                           .psk = psk,
                           .node_id = id,
                           .handshake_ms = WAIT_MS,
                           .idle_ms = WAIT_MS,
                           .connect_ms = WAIT_MS};
    struct peer_mgr *m;

    CHECK_EQ(peer_mgr_new(&env, &m), 0);
    return m;
}

static void test_client_api(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    uint64_t total;

    memset(&A, 0, sizeof(A));
    CHECK_EQ(uv_loop_init(&A.loop), 0);
    work_init(&A.q, &A.loop);
    randombytes_buf(A.cli_sk, 32);
    randombytes_buf(A.str_sk, 32);
    A.srv = api_mgr(D.srv_sk, D.psk, "testnode");
    A.cli = api_mgr(A.cli_sk, D.psk, "clientnode");
    A.stranger = api_mgr(A.str_sk, D.other_psk, "stranger");
    CHECK_EQ(peer_listen(A.srv, "127.0.0.1", 0), 0);
    snprintf(A.addr, sizeof(A.addr), "127.0.0.1:%d", peer_listen_port(A.srv));
    /* A port bound but not listening: connections to it are refused. */
    A.dead_fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(A.dead_fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(bind(A.dead_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ(getsockname(A.dead_fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(A.dead, sizeof(A.dead), "127.0.0.1:%d", ntohs(sa.sin_port));

    /* Piece 0's chunks (several MiB: credit must flow); a mix with absent hashes. */
    chunks_setup(&A.big, WIRE_CHUNKS_PER_REQ);
    A.big.n = piece_hashes(0, A.big.h, &total);
    CHECK(total > 2 * WIRE_CREDIT_INIT);
    chunks_setup(&A.mixed, 5);
    for (uint32_t i = 0; i < 5; i++) {
        if (i % 2 == 0)
            memcpy(A.mixed.h[i], D.chunks[D.first[1] + i].hash, 32);
        else
            randombytes_buf(A.mixed.h[i], 32);
    }
    chunks_setup(&A.cancelled, WIRE_CHUNKS_PER_REQ);
    A.cancelled.n = piece_hashes(0, A.cancelled.h, &total);

    CHECK_EQ(uv_timer_init(&A.loop, &A.t), 0);
    CHECK_EQ(uv_timer_start(&A.t, api_start, 0, 0), 0);
    CHECK_EQ(uv_run(&A.loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(A.phase, 4);
    CHECK_EQ(A.closed, 3);
    CHECK_EQ(A.q.inflight, 0);
    CHECK_EQ(uv_loop_close(&A.loop), 0);
    close(A.dead_fd);
    chunks_free(&A.big);
    chunks_free(&A.mixed);
    chunks_free(&A.cancelled);
    free(A.snap.data);
    free(A.manifest.data);
    free(A.piece.data);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CHECK(sodium_init() >= 0);
    CHECK_EQ(pthread_mutex_init(&S.mu, NULL), 0);
    data_setup();
    RUN(test_good_client);
    RUN(test_credit);
    RUN(test_slow_reader);
    RUN(test_bad_handshakes);
    RUN(test_bad_transport);
    RUN(test_no_reader);
    RUN(test_max_conns);
    RUN(test_close_with_conns);
    RUN(test_client_api);
    data_teardown();
    pthread_mutex_destroy(&S.mu);
    return check_done();
}
