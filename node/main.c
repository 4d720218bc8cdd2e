/* main.c - shoald, the Shoal node daemon.
 *
 * Parse the configuration, take the data directory, load the node's identity and the
 * cluster key, open the store, start the Hub client, the pull manager and the HTTP
 * servers (the control socket and --http), then run the loop until SIGINT or SIGTERM.
 * Stopping goes in reverse: HTTP servers (answering what they started), pulls (failed,
 * their jobs awaited), the threadpool work, the Hub client, the signal handles; then the
 * store is closed once nothing can use it. Peers and gossip join this sequence later.
 */
#include "api.h"
#include "cfg.h"
#include "err.h"
#include "http.h"
#include "hub.h"
#include "identity.h"
#include "keyfile.h"
#include "log.h"
#include "noise.h"
#include "peer.h"
#include "pull.h"
#include "store.h"
#include "work.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include <uv.h>

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "0.0"
#endif

#define LOCK_FILE         "shoald.lock"
#define SOCKET_FILE       "shoald.sock"
#define STORE_DIR         "store"
#define THREADPOOL_MIN    4
#define THREADPOOL_MAX    1024 /* libuv's own ceiling */

extern char **environ;

struct shoald {
    struct cfg cfg;
    struct identity id;
    char node_id[IDENTITY_ID_LEN + 1];
    struct clusterkey ck;          /* for the peer transport and gossip; wiped at exit */
    uint8_t psk[NOISE_KEY_LEN];    /* the Noise psk derived from it */
    struct peer_mgr *peers;
    struct store *store;
    int lock_fd;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    int open_handles;
    char token[CFG_TOKEN_MAX + 1];
    struct workq work;
    struct hub *hub;
    struct pull_mgr *pulls;
    struct http_server *http[2];   /* the control socket, then --http */
    unsigned n_http, http_open;
    struct api_env api;
    bool stopping;
};

/* store/ messages, into our log. */
static void on_store_log(void *arg, enum store_log_level level, const char *msg)
{
    static const enum cfg_log_level map[] = {
        [STORE_LOG_ERROR] = CFG_LOG_ERROR,
        [STORE_LOG_WARN] = CFG_LOG_WARN,
        [STORE_LOG_INFO] = CFG_LOG_INFO,
    };

    log_msg(map[level], "store: %s", msg);
}

/* mkdir -p with mode 0700 for each directory created. */
static int make_dirs(const char *dir)
{
    char p[CFG_PATH_MAX + 1];
    size_t n = strlen(dir), i;
    struct stat st;

    if (n == 0 || n >= sizeof(p))
        return -ENAMETOOLONG;
    memcpy(p, dir, n + 1);
    for (i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -errno;
        p[i] = i < n ? '/' : '\0';
    }
    if (stat(dir, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* An exclusive, non-blocking flock on DATA_DIR/shoald.lock, held until exit. */
static int lock_data_dir(struct shoald *d)
{
    char path[CFG_PATH_MAX + 32];
    int n, err;

    n = snprintf(path, sizeof(path), "%s/%s", d->cfg.data_dir, LOCK_FILE);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (d->lock_fd < 0) {
        err = -errno;
        log_msg(CFG_LOG_ERROR, "cannot open %s: %s", path, strerror(-err));
        return err;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err = -errno;
        if (err == -EWOULDBLOCK)
            log_msg(CFG_LOG_ERROR, "another shoald is using %s", d->cfg.data_dir);
        else
            log_msg(CFG_LOG_ERROR, "cannot lock %s: %s", path, strerror(-err));
        return err;
    }
    return 0;
}

/* libuv sizes its threadpool on first use from UV_THREADPOOL_SIZE. The store's work
 * runs there, so give it one thread per CPU, at least THREADPOOL_MIN. An operator's
 * own setting is kept. */
static void size_threadpool(void)
{
    unsigned n = uv_available_parallelism();
    char v[16];

    if (getenv("UV_THREADPOOL_SIZE"))
        return;
    if (n < THREADPOOL_MIN)
        n = THREADPOOL_MIN;
    if (n > THREADPOOL_MAX)
        n = THREADPOOL_MAX;
    snprintf(v, sizeof(v), "%u", n);
    setenv("UV_THREADPOOL_SIZE", v, 1);
}

/* Parses the configuration; returns -1 to go on, else the exit status. */
static int parse_args(struct shoald *d, int argc, char **argv)
{
    char why[1024];
    int err;

    why[0] = '\0';
    err = cfg_load(&d->cfg, argc, argv, environ, why, sizeof(why));
    if (err < 0) {
        fprintf(stderr, "shoald: %s\n", why[0] ? why : shoal_strerror(err));
        if (err != -EINVAL)
            return 1;
        fprintf(stderr, "Try 'shoald --help' for more information.\n");
        return 2;
    }
    if (d->cfg.help) {
        fputs(cfg_usage(), stdout);
        return 0;
    }
    if (d->cfg.version) {
        printf("shoald %s\n", SHOAL_VERSION);
        return 0;
    }
    if (d->cfg.print_config)
        return cfg_dump(&d->cfg, stdout) == 0 && fflush(stdout) == 0 ? 0 : 1;
    return -1;
}

/* Data directory, lock, identity, store: everything before the loop. */
static int open_node(struct shoald *d)
{
    struct store_opts so = {
        .quota = d->cfg.quota,
        .min_free = d->cfg.min_free,
        .writes = (enum store_writes[]){STORE_WRITES_AUTO, STORE_WRITES_BUFFERED,
                                        STORE_WRITES_DIRECT}[d->cfg.store_writes],
        .log = on_store_log,
        .log_arg = d,
    };
    char path[CFG_PATH_MAX + 32];
    char why[1024], fp[CLUSTERKEY_FP_LEN + 1];
    bool created = false;
    int err;

    err = make_dirs(d->cfg.data_dir);
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "cannot create data directory %s: %s", d->cfg.data_dir,
                strerror(-err));
        return err;
    }
    err = lock_data_dir(d);
    if (err < 0)
        return err;
    why[0] = '\0';
    err = identity_load_or_create(d->cfg.data_dir, &d->id, &created, why, sizeof(why));
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "%s", why);
        return err;
    }
    identity_node_id(&d->id, d->node_id);
    if (created)
        log_msg(CFG_LOG_INFO, "created node key %s/%s", d->cfg.data_dir, IDENTITY_FILE);
    why[0] = '\0';
    err = keyfile_cluster_open(d->cfg.data_dir, d->cfg.cluster_key, &d->ck, &created, why,
                               sizeof(why));
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "%s", why);
        return err;
    }
    clusterkey_fingerprint(&d->ck, fp);
    log_msg(CFG_LOG_INFO, "%scluster key %s (%s)", created ? "created " : "", fp,
            d->cfg.cluster_key);
    snprintf(path, sizeof(path), "%s/%s", d->cfg.data_dir, STORE_DIR);
    err = make_dirs(path); /* so that it too is private (0700) */
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "cannot create %s: %s", path, strerror(-err));
        return err;
    }
    why[0] = '\0';
    err = store_open(path, &so, &d->store, why, sizeof(why));
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "cannot open the store in %s: %s", path,
                why[0] ? why : shoal_strerror(err));
        return err;
    }
    return 0;
}

static void on_close(uv_handle_t *h)
{
    struct shoald *d = h->data;

    d->open_handles--;
}

static void close_handle(struct shoald *d, uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h)) { /* h->loop is NULL until uv_signal_init */
        h->data = d;
        uv_close(h, on_close);
    }
}

/* The Hub token: $HF_TOKEN, else the first line of the token file if there is one. */
static const char *load_token(struct shoald *d)
{
    FILE *f;
    size_t n;

    if (d->cfg.token)
        return d->cfg.token;
    if (!d->cfg.token_file || !(f = fopen(d->cfg.token_file, "re")))
        return NULL;
    n = fread(d->token, 1, sizeof(d->token) - 1, f);
    fclose(f);
    d->token[n] = '\0';
    d->token[strcspn(d->token, "\r\n")] = '\0';
    while (n > 0 && (d->token[n - 1] == ' ' || d->token[n - 1] == '\t' || !d->token[n - 1]))
        d->token[--n] = '\0';
    return d->token[0] ? d->token : NULL;
}

/* --- stopping, step by step ------------------------------------------------------ */

static void on_hub_closed(void *arg)
{
    struct shoald *d = arg;

    d->hub = NULL;
    close_handle(d, (uv_handle_t *)&d->sigint);
    close_handle(d, (uv_handle_t *)&d->sigterm);
}

static void on_drained(void *arg)
{
    struct shoald *d = arg;

    if (d->hub)
        hub_close(d->hub, on_hub_closed, d);
    else
        on_hub_closed(d);
}

static void on_pulls_closed(void *arg)
{
    struct shoald *d = arg;

    d->pulls = NULL;
    work_drain(&d->work, on_drained, d);
}

/* Peers close before pulls: their requests fail, and the pulls waiting on them see it. */
static void on_peers_closed(void *arg)
{
    struct shoald *d = arg;

    d->peers = NULL;
    if (d->pulls)
        pull_mgr_close(d->pulls, on_pulls_closed, d);
    else
        on_pulls_closed(d);
}

static void on_http_closed(void *arg)
{
    struct shoald *d = arg;

    if (--d->http_open > 0)
        return;
    if (d->peers)
        peer_mgr_close(d->peers, on_peers_closed, d);
    else
        on_peers_closed(d);
}

static void stop(struct shoald *d)
{
    unsigned i, n = d->n_http;

    d->stopping = true;
    d->http_open = n + 1; /* +1: ours, so that no close finishing early ends it */
    for (i = 0; i < n; i++)
        http_server_close(d->http[i], on_http_closed, d);
    on_http_closed(d);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct shoald *d = h->data;

    if (d->stopping) {
        /* A second signal: the user wants out now. The store is crash-safe. */
        log_msg(CFG_LOG_WARN, "stopping at once (signal %d again)", signum);
        _exit(1);
    }
    log_msg(CFG_LOG_INFO, "stopping (signal %d)", signum);
    stop(d);
}

static int start_signal(struct shoald *d, uv_signal_t *h, int signum)
{
    int err = uv_signal_init(&d->loop, h);

    if (err < 0)
        return err;
    d->open_handles++;
    h->data = d;
    return uv_signal_start(h, on_signal, signum);
}

/* --- starting ------------------------------------------------------------------------- */

static int start_http(struct shoald *d, bool control)
{
    struct http_opts o = {.handler = control ? api_handle : api_handle_public, .arg = &d->api};
    struct http_server *s;
    char path[CFG_PATH_MAX + 32];
    int err;

    err = http_server_new(&d->loop, &o, &s);
    if (err < 0)
        return err;
    d->http[d->n_http++] = s;
    if (control) {
        snprintf(path, sizeof(path), "%s/%s", d->cfg.data_dir, SOCKET_FILE);
        err = http_listen_unix(s, path);
        if (err < 0)
            log_msg(CFG_LOG_ERROR, "cannot listen on %s: %s", path,
                    err == UV_EADDRINUSE || err == -EADDRINUSE ? "another node answers there"
                                                                : uv_strerror(err));
    } else {
        err = http_listen_tcp(s, d->cfg.http.host, d->cfg.http.port);
        if (err < 0)
            log_msg(CFG_LOG_ERROR, "cannot listen on %s:%u (--http): %s", d->cfg.http.host,
                    (unsigned)d->cfg.http.port, uv_strerror(err));
    }
    return err;
}

static int start_peers(struct shoald *d)
{
    struct peer_env pe = {
        .loop = &d->loop,
        .store = d->store,
        .work = &d->work,
        .static_sk = d->id.secret,
        .psk = d->psk,
        .node_id = d->node_id,
        .chacha_only = d->cfg.peer_chacha_only,
    };
    int err;

    noise_psk_from_cluster_key(d->ck.key, d->psk);
    err = peer_mgr_new(&pe, &d->peers);
    if (err == 0)
        err = peer_listen(d->peers, d->cfg.listen.host, d->cfg.listen.port);
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "cannot listen for peers on %s:%u (--listen): %s",
                d->cfg.listen.host, (unsigned)d->cfg.listen.port,
                err > -5000 ? uv_strerror(err) : shoal_strerror(err));
        return err;
    }
    log_msg(CFG_LOG_INFO, "peers: listening on %s:%d", d->cfg.listen.host,
            peer_listen_port(d->peers));
    return 0;
}

static int start_services(struct shoald *d)
{
    struct hub_opts ho = {
        .endpoint = d->cfg.hub,
        .token = load_token(d),
        .max_conns = d->cfg.hub_concurrency + 4, /* + API calls */
        .stall_ms = (uint64_t)d->cfg.hub_timeout * 1000,
    };
    struct pull_env pe = {.loop = &d->loop, .max_buffers = d->cfg.hub_concurrency};
    int err;

    work_init(&d->work, &d->loop);
    err = hub_new(&d->loop, &ho, &d->hub);
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "cannot start the Hub client: %s", shoal_strerror(err));
        return err;
    }
    pe.store = d->store;
    pe.hub = d->hub;
    pe.work = &d->work;
    err = start_peers(d);
    if (err < 0)
        return err;
    pe.peers = d->peers;
    err = pull_mgr_new(&pe, &d->pulls);
    if (err < 0)
        return err;
    d->api = (struct api_env){
        .loop = &d->loop, .store = d->store, .hub = d->hub, .pulls = d->pulls,
        .work = &d->work, .http = d->http, .peers = d->peers, .node_id = d->node_id,
        .version = SHOAL_VERSION,
        .data_dir = d->cfg.data_dir, .hub_endpoint = d->cfg.hub,
        .listen_host = d->cfg.listen.host, .quota = d->cfg.quota,
        .min_free = d->cfg.min_free, .started_ms = uv_now(&d->loop),
    };
    err = start_http(d, true);
    if (err == 0)
        err = start_http(d, false);
    d->api.n_http = d->n_http;
    return err;
}

/* Runs the loop until a signal stops it; returns the exit status. */
static int run_loop(struct shoald *d)
{
    int err, status = 0;

    err = uv_loop_init(&d->loop);
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "cannot create the event loop: %s", uv_strerror(err));
        return 1;
    }
    err = start_signal(d, &d->sigint, SIGINT);
    if (err == 0)
        err = start_signal(d, &d->sigterm, SIGTERM);
    if (err < 0)
        log_msg(CFG_LOG_ERROR, "cannot install signal handlers: %s", uv_strerror(err));
    if (err == 0)
        err = start_services(d);
    if (err < 0) {
        status = 1;
        stop(d);
    } else {
        log_msg(CFG_LOG_INFO, "ready node=%s data_dir=%s hub=%s%s", d->node_id,
                d->cfg.data_dir, d->cfg.hub, d->hub && load_token(d) ? " (with token)" : "");
    }
    /* Returns once every handle is closed and its close callback has run. */
    uv_run(&d->loop, UV_RUN_DEFAULT);
    err = uv_loop_close(&d->loop);
    if (err < 0 || d->open_handles != 0) {
        log_msg(CFG_LOG_ERROR, "event loop did not close cleanly: %s",
                err < 0 ? uv_strerror(err) : "handles left open");
        status = 1;
    }
    return status;
}

int main(int argc, char **argv)
{
    struct shoald d = {.lock_fd = -1};
    int status;

    mallopt(M_ARENA_MAX, 1); /* docs/design-notes.md: one arena keeps RocksDB's RSS down */
    signal(SIGPIPE, SIG_IGN); /* a client leaving mid-answer is an error return, not death */
    status = parse_args(&d, argc, argv);
    if (status >= 0)
        goto out;
    log_set_level(d.cfg.log_level);
    size_threadpool(); /* before anything uses libuv's threadpool */
    status = open_node(&d) < 0 ? 1 : run_loop(&d);
    if (d.store)
        store_close(d.store);
    if (status == 0)
        log_msg(CFG_LOG_INFO, "stopped");
out:
    identity_clear(&d.id);
    clusterkey_clear(&d.ck);
    sodium_memzero(d.psk, sizeof(d.psk));
    memset(d.token, 0, sizeof(d.token));
    if (d.lock_fd >= 0)
        close(d.lock_fd);
    cfg_release(&d.cfg);
    return status;
}
