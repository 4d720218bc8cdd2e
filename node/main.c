/* main.c - shoald, the Shoal node daemon.
 *
 * Parse the configuration, take the data directory, load the node's identity, open the
 * store, then run the loop until SIGINT or SIGTERM; stop in reverse order. Modules
 * (peers, gossip, fetch, hub, HTTP, control socket) join this sequence in later slices.
 */
#include "cfg.h"
#include "err.h"
#include "identity.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "0.0"
#endif

#define LOCK_FILE         "shoald.lock"
#define STORE_DIR         "store"
#define THREADPOOL_MIN    4
#define THREADPOOL_MAX    1024 /* libuv's own ceiling */

extern char **environ;

struct shoald {
    struct cfg cfg;
    struct identity id;
    char node_id[IDENTITY_ID_LEN + 1];
    struct store *store;
    int lock_fd;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    int open_handles;
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
        .log = on_store_log,
        .log_arg = d,
    };
    char path[CFG_PATH_MAX + 32];
    char why[1024];
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

static void on_signal(uv_signal_t *h, int signum)
{
    struct shoald *d = h->data;

    log_msg(CFG_LOG_INFO, "stopping (signal %d)", signum);
    /* Nothing else runs yet, so closing the store here blocks no one. */
    if (d->store) {
        store_close(d->store);
        d->store = NULL;
    }
    close_handle(d, (uv_handle_t *)&d->sigint);
    close_handle(d, (uv_handle_t *)&d->sigterm);
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
    if (err < 0) {
        log_msg(CFG_LOG_ERROR, "cannot install signal handlers: %s", uv_strerror(err));
        status = 1;
        close_handle(d, (uv_handle_t *)&d->sigint);
        close_handle(d, (uv_handle_t *)&d->sigterm);
    } else {
        log_msg(CFG_LOG_INFO, "ready node=%s data_dir=%s", d->node_id, d->cfg.data_dir);
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
    if (d.lock_fd >= 0)
        close(d.lock_fd);
    cfg_release(&d.cfg);
    return status;
}
