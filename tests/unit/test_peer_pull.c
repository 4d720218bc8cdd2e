/* test_peer_pull.c - a pull from a peer (node/pull.c over node/peer.c) whose peer
 * serves a chunk that does not match its hash, then one whose peer serves the truth.
 *
 * The node's side runs in-process on the main thread's loop: a temporary store, a work
 * queue, a Hub client that is never asked (its endpoint is a dead port), a peer manager
 * that does not listen, and a pull manager. A second thread plays the remote node: a
 * plain blocking socket on 127.0.0.1 (every wait bounded by SO_RCVTIMEO, SO_SNDTIMEO or
 * poll), the responder's side of the cipher negotiation and of Noise_XXpsk3 with the
 * cluster's psk, and records built with protocol/wire.h. It holds one file of one piece
 * and answers GET_SNAPSHOT, GET_MANIFEST and GET_CHUNKS with the true snapshot and chunk
 * list. On its first connection it flips one byte of one chunk (the CHUNK message names
 * the right hash and length); on the second it sends the right bytes.
 *
 * The bad pull must fail naming the peer, the peer manager must count one bad_data and
 * close that connection with one log line naming the peer and the reason, and nothing
 * of the file may reach the store or the cache. The good pull must then complete with
 * the right bytes exported: the same node tells the two peers apart.
 */
#include "hub.h"
#include "peer.h"
#include "pull.h"
#include "store.h"
#include "work.h"

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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define WAIT_MS    20000                   /* the longest any single wait may take */
#define PROLOGUE   "shoal peer protocol 1" /* docs/peer-protocol.md §0 */
#define NEG_LEN    10                      /* "SHOALNEG", version 1, cipher bits */
#define NEG_CHACHA 0x01
#define REPO       "org/name"
#define SREPO      "model/org/name"
#define FOLDER     "models--org--name"
#define COMMIT     "5f3c9a1e0b7d24c68e1f90a3b5c7d9e1f2a4b6c8"
#define FILE_PATH  "model.safetensors"
#define FILE_SIZE  (300u * 1024 + 4321) /* one piece of a few chunks */
#define BAD_CHUNK  1                    /* the chunk the bad peer alters */
#define SRV_NODE   "evilnode"

enum { RUN_BAD, RUN_GOOD, RUNS };

/* --- the test data --------------------------------------------------------------------- */

static struct data {
    uint8_t *bytes;
    uint8_t id[32];
    char etag[65];
    struct hasher_piece *hp;
    uint32_t *off;          /* each chunk's offset in the file */
    uint8_t *snap_enc, *man_enc;
    size_t snap_len, man_len;
    uint8_t psk[32];
    uint8_t srv_sk[32];
    uint8_t node_sk[32], node_pk[32];
    char *tmp;              /* everything on disk lives under it */
} D;

static void data_setup(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    struct manifest_piece mp = {0};
    struct snapshot snap;
    uint8_t key[32];
    uint64_t off = 0;
    size_t dl = strlen(base) + 32;

    CHECK(sodium_init() >= 0);
    D.tmp = check_malloc(dl);
    snprintf(D.tmp, dl, "%s/shoal-ppull-XXXXXX", base);
    CHECK(mkdtemp(D.tmp) != NULL);

    D.bytes = check_malloc(FILE_SIZE);
    check_fill_splitmix(D.bytes, FILE_SIZE, 0x5ee7);
    CHECK_EQ(sha256_digest(D.bytes, FILE_SIZE, D.id), 0);
    chash_hex(D.id, 32, D.etag); /* an LFS file: the etag is its sha256 */
    D.hp = check_malloc(sizeof(*D.hp));
    D.hp->index = 0;
    D.hp->offset = 0;
    hasher_piece_compute(D.hp, D.bytes, FILE_SIZE);
    CHECK(D.hp->n_chunks > BAD_CHUNK + 1);
    D.off = check_malloc(D.hp->n_chunks * sizeof(*D.off));
    for (uint32_t k = 0; k < D.hp->n_chunks; k++) {
        D.off[k] = (uint32_t)off;
        off += D.hp->chunks[k].len;
    }
    CHECK_EQ(off, FILE_SIZE);

    CHECK_EQ(snapshot_init(&snap, SREPO, COMMIT), 0);
    CHECK_EQ(snapshot_add(&snap, FILE_PATH, FILE_SIZE, D.id, D.etag), 0);
    CHECK_EQ(snapshot_finish(&snap), 0);
    CHECK_EQ(snapshot_encode(&snap, &D.snap_enc, &D.snap_len), 0);
    snapshot_release(&snap);
    memcpy(mp.hash, D.hp->hash, 32);
    mp.len = D.hp->len;
    mp.n_chunks = D.hp->n_chunks;
    CHECK_EQ(manifest_piece_encode(&mp, D.hp->chunks, &D.man_enc, &D.man_len), 0);

    randombytes_buf(key, sizeof(key)); /* the cluster key both sides hold */
    noise_psk_from_cluster_key(key, D.psk);
    sodium_memzero(key, sizeof(key));
    randombytes_buf(D.srv_sk, sizeof(D.srv_sk));
    crypto_box_keypair(D.node_pk, D.node_sk);
}

static void data_teardown(void)
{
    check_rmtree(D.tmp);
    free(D.tmp);
    free(D.bytes);
    free(D.hp);
    free(D.off);
    free(D.snap_enc);
    free(D.man_enc);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the remote node (server thread) ------------------------------------------------- */

/* What the server saw on one connection; written by the server thread before it bumps
 * S.over, read by the main thread after. */
struct srv_run {
    unsigned snapshots, manifests, chunk_reqs, chunks_sent, flipped;
    uint64_t chunk_bytes;
    bool closed_by_node;
};

static struct srv {
    int lfd;
    int port;
    pthread_t th;
    struct srv_run runs[RUNS];
    atomic_int over; /* connections finished */
} S;

#define EV_CLOSED 100 /* s_next: the node closed the connection */

struct sconn {
    int fd;
    struct noise_cs tx, rx;
    struct wire_reader rd;
    uint8_t in[WIRE_FRAME_HDR + WIRE_FRAME_MAX]; /* received, not yet a whole frame */
    size_t in_len;
    uint8_t pt[WIRE_FRAME_MAX];                  /* the last frame, decrypted */
    const uint8_t *p;                            /* what the reader has not taken of pt */
    size_t n;
    uint8_t out[WIRE_PLAIN_MAX];                 /* plaintext for the next frame */
    size_t out_len;
    uint8_t frame[WIRE_FRAME_HDR + WIRE_FRAME_MAX];
    uint64_t credit;                             /* CHUNK bytes we may still send */
};

static void s_send_all(struct sconn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            check__fail(__FILE__, __LINE__, "server: send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/* A frame in clear (negotiation, handshake). */
static void s_send_frame(struct sconn *c, const uint8_t *body, size_t n)
{
    uint8_t hdr[WIRE_FRAME_HDR];

    CHECK_EQ(wire_frame_header(hdr, n), 0);
    s_send_all(c, hdr, sizeof(hdr));
    s_send_all(c, body, n);
}

/* The next frame's body: 1, or 0 when the node closed the connection. */
static int s_read_frame(struct sconn *c, uint8_t *body, size_t *len)
{
    struct wire_frame f;

    for (;;) {
        int r = wire_frame_check(c->in, c->in_len, WIRE_FRAME_MAX, &f);
        ssize_t got;

        CHECK(r >= 0);
        if (r == 1) {
            memcpy(body, c->in + f.off, f.len);
            *len = f.len;
            memmove(c->in, c->in + f.end, c->in_len - f.end);
            c->in_len -= f.end;
            return 1;
        }
        got = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (got > 0)
            c->in_len += (size_t)got;
        else if (got == 0 || errno == ECONNRESET)
            return 0;
        else if (errno != EINTR)
            check__fail(__FILE__, __LINE__, "server: recv: %s (nothing for %d ms?)",
                        strerror(errno), WAIT_MS);
    }
}

static void s_flush(struct sconn *c)
{
    if (c->out_len == 0)
        return;
    CHECK_EQ(noise_encrypt(&c->tx, NULL, 0, c->out, c->out_len, c->frame + WIRE_FRAME_HDR), 0);
    CHECK_EQ(wire_frame_header(c->frame, c->out_len + NOISE_TAG_LEN), 0);
    s_send_all(c, c->frame, WIRE_FRAME_HDR + c->out_len + NOISE_TAG_LEN);
    c->out_len = 0;
}

/* Plaintext onto the stream, cut into frames wherever they fill. */
static void s_put(struct sconn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t k = sizeof(c->out) - c->out_len;

        if (k > n)
            k = n;
        memcpy(c->out + c->out_len, p, k);
        c->out_len += k;
        p += k;
        n -= k;
        if (c->out_len == sizeof(c->out))
            s_flush(c);
    }
}

static void s_msg(struct sconn *c, const struct wire_msg *m)
{
    uint8_t rec[WIRE_REC_MAX];
    int n = wire_msg_encode(m, rec, sizeof(rec));

    CHECK(n > 0);
    s_put(c, rec, (size_t)n);
}

/* The next record event from the node, or EV_CLOSED. */
static int s_next(struct sconn *c, struct wire_event *ev)
{
    for (;;) {
        uint8_t body[WIRE_FRAME_MAX];
        size_t len;
        int k = wire_reader_next(&c->rd, &c->p, &c->n, ev);

        CHECK(k >= 0);
        if (k > 0)
            return k;
        if (s_read_frame(c, body, &len) == 0)
            return EV_CLOSED;
        CHECK(len > NOISE_TAG_LEN);
        CHECK_EQ(noise_decrypt(&c->rx, NULL, 0, body, len, c->pt), 0);
        c->p = c->pt;
        c->n = len - NOISE_TAG_LEN;
    }
}

/* The responder's side of §0: choose ChaCha20-Poly1305, then Noise_XXpsk3 with offer
 * and choice in the prologue. */
static void s_handshake(struct sconn *c)
{
    uint8_t offer[WIRE_FRAME_MAX], choice[NEG_LEN] = "SHOALNEG\x01", msg[WIRE_FRAME_MAX];
    uint8_t prologue[sizeof(PROLOGUE) - 1 + 2 * NEG_LEN], payload[64], rs[32];
    struct noise_hs hs;
    size_t n, plen;

    CHECK_EQ(s_read_frame(c, offer, &n), 1);
    CHECK_EQ(n, NEG_LEN);
    CHECK_MEM(offer, "SHOALNEG\x01", 9);
    CHECK(offer[NEG_LEN - 1] & NEG_CHACHA);
    choice[NEG_LEN - 1] = NEG_CHACHA;
    s_send_frame(c, choice, NEG_LEN);
    memcpy(prologue, PROLOGUE, sizeof(PROLOGUE) - 1);
    memcpy(prologue + sizeof(PROLOGUE) - 1, offer, NEG_LEN);
    memcpy(prologue + sizeof(PROLOGUE) - 1 + NEG_LEN, choice, NEG_LEN);

    CHECK_EQ(noise_hs_init(&hs, NOISE_RESPONDER, NOISE_CHACHAPOLY, prologue, sizeof(prologue),
                           D.srv_sk, D.psk),
             0);
    CHECK_EQ(s_read_frame(c, msg, &n), 1);
    CHECK_EQ(noise_hs_read(&hs, msg, n, payload, sizeof(payload), &plen), 0);
    CHECK_EQ(plen, 0);
    CHECK_EQ(noise_hs_write(&hs, NULL, 0, msg, sizeof(msg), &n), 0);
    s_send_frame(c, msg, n);
    CHECK_EQ(s_read_frame(c, msg, &n), 1);
    CHECK_EQ(noise_hs_read(&hs, msg, n, payload, sizeof(payload), &plen), 0);
    CHECK(noise_hs_done(&hs));
    CHECK_EQ(noise_hs_remote_static(&hs, rs), 0);
    CHECK_MEM(rs, D.node_pk, 32); /* it is our node that dialled */
    CHECK_EQ(noise_hs_split(&hs, &c->tx, &c->rx), 0);
}

static int chunk_index(const uint8_t hash[32])
{
    for (uint32_t k = 0; k < D.hp->n_chunks; k++)
        if (memcmp(D.hp->chunks[k].hash, hash, 32) == 0)
            return (int)k;
    return -1;
}

static void s_payload_msg(struct sconn *c, uint8_t type, uint32_t id, const uint8_t *p,
                          size_t n)
{
    struct wire_msg m = {.type = type, .id = id};

    m.u.snapshot.len = (uint32_t)n; /* SNAPSHOT and MANIFEST share the layout */
    s_msg(c, &m);
    s_put(c, p, n);
}

static void s_chunks(struct sconn *c, struct srv_run *r, bool bad, const struct wire_msg *q)
{
    uint8_t buf[PROTO_CHUNK_MAX];
    struct wire_msg m = {.type = WIRE_CHUNK, .id = q->id};
    uint32_t id = q->id;

    r->chunk_reqs++;
    for (uint32_t i = 0; i < q->u.get_chunks.n; i++) {
        int k = chunk_index(q->u.get_chunks.hash[i]);
        uint32_t len;

        if (k < 0)
            check__fail(__FILE__, __LINE__, "server: asked for a chunk it never listed");
        len = (uint32_t)D.hp->chunks[k].len;
        CHECK(c->credit >= len); /* §5: never beyond the node's credit */
        c->credit -= len;
        memcpy(buf, D.bytes + D.off[k], len);
        if (bad && k == BAD_CHUNK) {
            buf[len / 2] ^= 0x20; /* the hash and length stay those of the true chunk */
            r->flipped++;
        }
        memcpy(m.u.chunk.hash, D.hp->chunks[k].hash, 32);
        m.u.chunk.len = len;
        s_msg(c, &m);
        s_put(c, buf, len);
        r->chunks_sent++;
        r->chunk_bytes += len;
    }
    m = (struct wire_msg){.type = WIRE_END, .id = id};
    s_msg(c, &m);
}

/* Answers the node until it closes the connection. */
static void s_serve(struct sconn *c, struct srv_run *r, bool bad)
{
    struct wire_msg hello = {.type = WIRE_HELLO};
    struct wire_event ev;

    hello.u.hello.version = WIRE_VERSION;
    memcpy(hello.u.hello.node_id, SRV_NODE, sizeof(SRV_NODE));
    s_msg(c, &hello);
    s_flush(c);
    for (;;) {
        const struct wire_msg *m;
        int k = s_next(c, &ev);

        if (k == EV_CLOSED) {
            r->closed_by_node = true;
            return;
        }
        CHECK_EQ(k, WIRE_EV_MSG); /* the node sends no payloads here */
        m = ev.msg;
        switch (m->type) {
        case WIRE_HELLO:
            break;
        case WIRE_CREDIT:
            c->credit += m->u.credit.bytes;
            break;
        case WIRE_GET_SNAPSHOT:
            CHECK_STR(m->u.get_snapshot.repo, SREPO);
            CHECK_STR(m->u.get_snapshot.rev, COMMIT);
            r->snapshots++;
            s_payload_msg(c, WIRE_SNAPSHOT, m->id, D.snap_enc, D.snap_len);
            break;
        case WIRE_GET_MANIFEST:
            CHECK_MEM(m->u.get_manifest.sha256, D.id, 32);
            CHECK_EQ(m->u.get_manifest.piece, 0);
            r->manifests++;
            s_payload_msg(c, WIRE_MANIFEST, m->id, D.man_enc, D.man_len);
            break;
        case WIRE_GET_CHUNKS:
            s_chunks(c, r, bad, m);
            break;
        default:
            check__fail(__FILE__, __LINE__, "server: unexpected %s", wire_type_name(m->type));
        }
        s_flush(c);
    }
}

static void *srv_main(void *arg)
{
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};

    (void)arg;
    for (int run = 0; run < RUNS; run++) {
        struct pollfd pfd = {.fd = S.lfd, .events = POLLIN};
        struct sconn *c = check_malloc(sizeof(*c));

        memset(c, 0, sizeof(*c));
        if (poll(&pfd, 1, WAIT_MS) != 1)
            check__fail(__FILE__, __LINE__, "server: no connection %d within %d ms", run,
                        WAIT_MS);
        c->fd = accept(S.lfd, NULL, NULL);
        CHECK(c->fd >= 0);
        CHECK_EQ(setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        CHECK_EQ(setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
        wire_reader_init(&c->rd);
        c->credit = WIRE_CREDIT_INIT;
        s_handshake(c);
        s_serve(c, &S.runs[run], run == RUN_BAD);
        close(c->fd);
        noise_cs_clear(&c->tx);
        noise_cs_clear(&c->rx);
        free(c);
        atomic_fetch_add(&S.over, 1);
    }
    return NULL;
}

static void srv_start(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    S.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(S.lfd >= 0);
    CHECK_EQ(bind(S.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_EQ(listen(S.lfd, 4), 0);
    CHECK_EQ(getsockname(S.lfd, (struct sockaddr *)&sa, &sl), 0);
    S.port = ntohs(sa.sin_port);
    atomic_store(&S.over, 0);
    CHECK_EQ(pthread_create(&S.th, NULL, srv_main, NULL), 0);
}

/* --- stderr, captured while the bad pull runs ---------------------------------------- */

static struct {
    int saved; /* the real stderr, or -1 when not capturing */
    char path[4200];
} L = {.saved = -1};

static void log_restore(void)
{
    if (L.saved < 0)
        return;
    CHECK(dup2(L.saved, STDERR_FILENO) >= 0);
    close(L.saved);
    L.saved = -1;
}

/* On a failed CHECK while capturing, the captured lines still reach the real stderr. */
static void log_dump_at_exit(void)
{
    char buf[4096];
    ssize_t n;
    int fd;

    if (L.saved < 0)
        return;
    log_restore();
    fd = open(L.path, O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
        (void)!write(STDERR_FILENO, buf, (size_t)n);
    if (fd >= 0)
        close(fd);
}

static void log_capture(void)
{
    int fd;

    snprintf(L.path, sizeof(L.path), "%s/stderr.log", D.tmp);
    fd = open(L.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    fflush(stderr);
    L.saved = dup(STDERR_FILENO);
    CHECK(L.saved >= 0);
    CHECK(dup2(fd, STDERR_FILENO) >= 0);
    close(fd);
}

/* Stops capturing, echoes what was captured and returns it (malloc'd). */
static char *log_take(void)
{
    struct stat st;
    char *s;
    int fd;

    fflush(stderr);
    log_restore();
    fd = open(L.path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_EQ(fstat(fd, &st), 0);
    s = check_malloc((size_t)st.st_size + 1);
    CHECK_EQ(read(fd, s, (size_t)st.st_size), st.st_size);
    s[st.st_size] = '\0';
    close(fd);
    fputs(s, stderr);
    return s;
}

/* Lines of log holding all of a, b and c. */
static unsigned log_lines(const char *log, const char *a, const char *b, const char *c)
{
    unsigned n = 0;

    for (const char *l = log; *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char line[4096];

        snprintf(line, sizeof(line), "%.*s", (int)len, l);
        if (strstr(line, a) && strstr(line, b) && strstr(line, c))
            n++;
        l += len + (e ? 1 : 0);
    }
    return n;
}

/* --- the node (main thread) ----------------------------------------------------------- */

static struct node {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps uv_run(UV_RUN_ONCE) from blocking while we poll */
    struct workq q;
    struct store *store;
    struct hub *hub;
    struct peer_mgr *peers;
    struct pull_mgr *pulls;
    char store_dir[4200], cache_dir[4200];
    char addr[64];
    bool peers_closed, pulls_closed, drained, hub_closed;
} N;

static void quiet_store_log(void *arg, enum store_log_level lvl, const char *msg)
{
    (void)arg;
    if (lvl == STORE_LOG_ERROR)
        fprintf(stderr, "   store log: %s\n", msg);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void node_start(void)
{
    struct store_opts so = {.log = quiet_store_log};
    struct hub_opts ho = {.endpoint = "http://127.0.0.1:9", .max_retries = 1};
    struct peer_env pe = {0};
    struct pull_env le = {0};
    char why[512];
    int r;

    snprintf(N.store_dir, sizeof(N.store_dir), "%s/store", D.tmp);
    snprintf(N.cache_dir, sizeof(N.cache_dir), "%s/hf-cache", D.tmp);
    CHECK_EQ(mkdir(N.store_dir, 0700), 0);
    CHECK_EQ(mkdir(N.cache_dir, 0700), 0);
    r = store_open(N.store_dir, &so, &N.store, why, sizeof(why));
    if (r < 0)
        check__fail(__FILE__, __LINE__, "store_open: %s (%s)", why, shoal_strerror(r));

    CHECK_EQ(uv_loop_init(&N.loop), 0);
    CHECK_EQ(uv_timer_init(&N.loop, &N.tick), 0);
    CHECK_EQ(uv_timer_start(&N.tick, on_tick, 2, 2), 0);
    work_init(&N.q, &N.loop);
    CHECK_EQ(hub_new(&N.loop, &ho, &N.hub), 0);

    pe.loop = &N.loop;
    pe.store = N.store;
    pe.work = &N.q;
    pe.static_sk = D.node_sk;
    pe.psk = D.psk;
    pe.node_id = "testnode";
    CHECK_EQ(peer_mgr_new(&pe, &N.peers), 0);

    le.loop = &N.loop;
    le.store = N.store;
    le.hub = N.hub;
    le.work = &N.q;
    le.peers = N.peers;
    le.max_buffers = 2;
    CHECK_EQ(pull_mgr_new(&le, &N.pulls), 0);
    snprintf(N.addr, sizeof(N.addr), "127.0.0.1:%d", S.port);
}

/* Runs the loop until cond(arg) holds; fails after WAIT_MS. */
static void drive(bool (*cond)(void *arg), void *arg, const char *what)
{
    int64_t end = now_ms() + WAIT_MS;

    while (!cond(arg)) {
        if (now_ms() > end)
            check__fail(__FILE__, __LINE__, "waited %d ms for %s", WAIT_MS, what);
        uv_run(&N.loop, UV_RUN_ONCE);
    }
}

struct pull_wait {
    uint32_t id;
    char state[32];
    char error[600];
};

static bool pull_ended(void *arg)
{
    struct pull_wait *w = arg;
    json_t *j = pull_json(N.pulls, w->id, false);
    const char *st, *err;

    CHECK(j != NULL);
    st = json_string_value(json_object_get(j, "state"));
    err = json_string_value(json_object_get(j, "error"));
    CHECK(st != NULL);
    snprintf(w->state, sizeof(w->state), "%s", st);
    snprintf(w->error, sizeof(w->error), "%s", err ? err : "");
    json_decref(j);
    return strcmp(w->state, "done") == 0 || strcmp(w->state, "failed") == 0;
}

static bool server_over(void *arg)
{
    return atomic_load(&S.over) >= *(const int *)arg;
}

static void pull_from_peer(struct pull_wait *w)
{
    struct pull_req rq = {
        .repo = REPO,
        .repo_type = "model",
        .revision = COMMIT,
        .from_peer = N.addr,
        .cache_dir = N.cache_dir,
    };
    char why[512] = "";
    int r = pull_start(N.pulls, &rq, &w->id, why, sizeof(why));

    if (r < 0)
        check__fail(__FILE__, __LINE__, "pull_start: %s (%s)", why, shoal_strerror(r));
    drive(pull_ended, w, "the pull to end");
}

static bool buffers_free(void *arg)
{
    struct pull_stats ps;

    (void)arg;
    pull_get_stats(N.pulls, &ps);
    return ps.buffers == 0;
}

static void expect_fsck_clean(void)
{
    struct store_fsck fk;

    CHECK_EQ(store_check(N.store, false, &fk), 0);
    CHECK_EQ(fk.missing_chunks + fk.bad_chunks + fk.bad_pieces + fk.bad_refcounts +
                 fk.orphan_chunks + fk.broken_files + fk.bad_totals,
             0);
}

/* Entries of a directory other than . and ..; -1 if it does not exist. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d) {
        CHECK_EQ(errno, ENOENT);
        return -1;
    }
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void test_bad_peer(void)
{
    struct pull_wait w = {0};
    struct peer_stats st;
    struct pull_stats ps;
    struct store_file info;
    struct snapshot snap;
    struct srv_run *r = &S.runs[RUN_BAD];
    char path[4400], *log;
    int one = 1, err;

    log_capture();
    pull_from_peer(&w);
    /* The connection the peer served it on is closed by the node, not by the peer. */
    drive(server_over, &one, "the bad peer's connection to close");
    log = log_take();

    CHECK_STR(w.state, "failed");
    if (!strstr(w.error, N.addr) || !strstr(w.error, "do not match"))
        check__fail(__FILE__, __LINE__, "the pull's error: \"%s\"", w.error);
    CHECK(strstr(w.error, FILE_PATH) != NULL);

    /* The peer manager: counted once as bad data, nothing else. */
    peer_get_stats(N.peers, &st);
    CHECK_EQ(st.bad_data, 1);
    CHECK_EQ(st.connected, 1);
    CHECK_EQ(st.handshakes_failed, 0);
    CHECK_EQ(st.protocol_errors, 0);
    CHECK_EQ(st.timeouts, 0);
    CHECK_EQ(st.chunk_bytes_fetched, FILE_SIZE);
    pull_get_stats(N.pulls, &ps);
    CHECK_EQ(ps.failed, 1);
    CHECK_EQ(ps.active, 0);
    /* The piece buffer comes back once the file's sha256 job, which may still be
     * reading it, is done with it. */
    drive(buffers_free, NULL, "the piece buffer to be released");

    /* The server sent the altered chunk and saw the node hang up after it. */
    CHECK(r->closed_by_node);
    CHECK_EQ(r->snapshots, 1);
    CHECK_EQ(r->manifests, 1);
    CHECK_EQ(r->flipped, 1);
    CHECK_EQ(r->chunks_sent, D.hp->n_chunks);
    CHECK_EQ(r->chunk_bytes, FILE_SIZE);

    /* One log line names the peer and the reason, and says the connection is closed. */
    CHECK_EQ(log_lines(log, N.addr, "served bad data", "does not match its hash"), 1);
    CHECK_EQ(log_lines(log, "served bad data", "", ""), 1);
    CHECK_EQ(log_lines(log, N.addr, "connection closed", ""), 1);
    free(log);

    /* Nothing of it was stored, and the store is consistent. */
    err = store_file_info(N.store, D.id, &info);
    CHECK(err == -ENOENT || (err == 0 && !info.complete));
    CHECK_EQ(store_has_piece(N.store, D.id, 0), 0);
    CHECK_EQ(store_get_snapshot(N.store, SREPO, COMMIT, &snap), -ENOENT);
    expect_fsck_clean();

    /* Nothing in the cache under a final name, and no temporary blob left either. */
    snprintf(path, sizeof(path), "%s/%s/blobs/%s", N.cache_dir, FOLDER, D.etag);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/%s/snapshots/%s/%s", N.cache_dir, FOLDER, COMMIT,
             FILE_PATH);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/%s/blobs", N.cache_dir, FOLDER);
    CHECK(dir_entries(path) <= 0);
}

static void test_good_peer(void)
{
    struct pull_wait w = {0};
    struct peer_stats st;
    struct pull_stats ps;
    struct store_file info;
    struct srv_run *r = &S.runs[RUN_GOOD];
    char path[4400];
    uint8_t *got;
    FILE *f;

    pull_from_peer(&w);
    if (strcmp(w.state, "done") != 0)
        check__fail(__FILE__, __LINE__, "the good pull ended %s: %s", w.state, w.error);

    peer_get_stats(N.peers, &st);
    CHECK_EQ(st.bad_data, 1); /* still the one from before */
    CHECK_EQ(st.connected, 2);
    CHECK_EQ(st.handshakes_failed, 0);
    CHECK_EQ(st.protocol_errors, 0);
    CHECK_EQ(st.chunk_bytes_fetched, 2 * (uint64_t)FILE_SIZE);
    pull_get_stats(N.pulls, &ps);
    CHECK_EQ(ps.done, 1);
    CHECK_EQ(ps.failed, 1);
    CHECK_EQ(r->flipped, 0);
    CHECK_EQ(r->chunks_sent, D.hp->n_chunks);
    CHECK_EQ(atomic_load(&S.over), 1); /* the good connection stays open */

    CHECK_EQ(store_file_info(N.store, D.id, &info), 0);
    CHECK(info.complete);
    CHECK_EQ(info.size, FILE_SIZE);
    expect_fsck_clean();

    /* The exported file: the snapshot's link to the blob, with the true bytes. */
    snprintf(path, sizeof(path), "%s/%s/snapshots/%s/%s", N.cache_dir, FOLDER, COMMIT,
             FILE_PATH);
    f = fopen(path, "rbe");
    CHECK(f != NULL);
    got = check_malloc(FILE_SIZE + 1);
    CHECK_EQ(fread(got, 1, FILE_SIZE + 1, f), FILE_SIZE);
    fclose(f);
    CHECK_MEM(got, D.bytes, FILE_SIZE);
    free(got);
}

/* --- shutting down, in node/main.c's order ------------------------------------------------ */

static void on_hub_closed(void *arg)
{
    (void)arg;
    N.hub_closed = true;
    uv_close((uv_handle_t *)&N.tick, NULL);
}

static void on_drained(void *arg)
{
    (void)arg;
    CHECK_EQ(N.q.inflight, 0);
    N.drained = true;
    hub_close(N.hub, on_hub_closed, NULL);
}

static void on_pulls_closed(void *arg)
{
    (void)arg;
    N.pulls_closed = true;
    work_drain(&N.q, on_drained, NULL);
}

static void on_peers_closed(void *arg)
{
    (void)arg;
    N.peers_closed = true;
    pull_mgr_close(N.pulls, on_pulls_closed, NULL);
}

static void node_stop(void)
{
    int two = RUNS;

    peer_mgr_close(N.peers, on_peers_closed, NULL);
    drive(server_over, &two, "the good peer's connection to close");
    CHECK(S.runs[RUN_GOOD].closed_by_node);
    CHECK_EQ(uv_run(&N.loop, UV_RUN_DEFAULT), 0); /* returns once every handle is closed */
    CHECK(N.peers_closed && N.pulls_closed && N.drained && N.hub_closed);
    CHECK_EQ(uv_loop_close(&N.loop), 0);
    store_close(N.store);
    CHECK_EQ(pthread_join(S.th, NULL), 0);
    close(S.lfd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(log_dump_at_exit);
    data_setup();
    srv_start();
    node_start();
    RUN(test_bad_peer);
    RUN(test_good_peer);
    node_stop();
    data_teardown();
    return check_done();
}
