/* test_hub_client.c - the Hub client (node/hub.h) against the test hub (tests/hub/hub.py).
 *
 * Writes repos with make_model.py into a temporary root, starts hub.py on port 0 as a
 * child process and waits for its ready line (bounded, no sleeps), then runs each case
 * on a fresh libuv loop: the hub client is opened, used, closed, and uv_loop_close()
 * must return 0. Faults and counters go through hub.py's /_test endpoints over a plain
 * blocking socket. The child is killed by PID at exit, also when a check fails.
 */
#include "hub.h"

#include "check.h"
#include "err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HUB_PY      SHOAL_HUB_DIR "/hub.py"
#define MAKE_PY     SHOAL_HUB_DIR "/make_model.py"
#define USER_TOKEN  "hf_user_test_token_123"
#define GRANT_TOKEN "hf_granted_test_token"
#define BAD_TOKEN   "hf_bogus_secret_456"
#define MODEL_SIZE  (3u << 20)
#define MODEL_PATH  "/org/model/resolve/main/model.safetensors"
#define INFO_PATH   "/api/models/org/model"
#define READY_MS    20000
#define CASE_MS     20000

static char root[4096];
static pid_t hub_pid = -1;
static int hub_port, cdn_port;
static char hub_url[64];
static char commit[41];
static uint8_t *model;       /* model.safetensors as written on disk */
static uint8_t config[4096]; /* config.json */
static size_t config_len;

/* --- processes, files ---------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static void cleanup(void)
{
    int status;

    if (hub_pid > 0) {
        kill(hub_pid, SIGTERM);
        waitpid(hub_pid, &status, 0);
        hub_pid = -1;
    }
    if (root[0])
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    root[0] = '\0';
}

/* Runs argv with stdout into out (NUL-terminated); returns the exit status. */
static int run_capture(char *const argv[], char *out, size_t cap)
{
    int fds[2], status;
    size_t n = 0;
    ssize_t k;
    pid_t pid;

    CHECK_EQ(pipe(fds), 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    while ((k = read(fds[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)k;
    out[n] = '\0';
    close(fds[0]);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* make_model.py for one repo; x1..x3 are extra flags (NULL ends them early). */
static void make_repo(const char *repo, const char *files, const char *x1, const char *x2,
                      const char *x3, char out_commit[41])
{
    /* execvp stops at the first NULL, so unused extras end the list. */
    char *argv[] = {"python3", "-B",         MAKE_PY,    "--root",      root,
                    "--repo",  (char *)repo, "--files",  (char *)files, "--seed",
                    "7",       (char *)x1,   (char *)x2, (char *)x3,    NULL};
    static char out[65536];
    json_t *doc;

    CHECK_EQ(run_capture(argv, out, sizeof(out)), 0);
    if (out_commit) {
        doc = json_loads(out, 0, NULL);
        CHECK(doc != NULL);
        CHECK_EQ(strlen(json_string_value(json_object_get(doc, "commit"))), 40);
        memcpy(out_commit, json_string_value(json_object_get(doc, "commit")), 41);
        json_decref(doc);
    }
}

static size_t read_file(const char *rel, uint8_t *buf, size_t cap)
{
    char p[8192];
    ssize_t n;
    int fd;

    snprintf(p, sizeof(p), "%s/models/org/model/commits/%s/%s", root, commit, rel);
    fd = open(p, O_RDONLY);
    CHECK(fd >= 0);
    n = read(fd, buf, cap);
    CHECK(n > 0);
    close(fd);
    return (size_t)n;
}

/* Starts hub.py and waits (bounded) for "SHOAL_HUB_READY port=P cdn_port=C". */
static void start_hub(void)
{
    char line[256];
    size_t n = 0;
    uint64_t deadline = uv_hrtime() / 1000000 + READY_MS;
    pid_t parent = getpid();
    int fds[2], left;
    struct pollfd pfd;
    ssize_t k;

    CHECK_EQ(pipe(fds), 0);
    hub_pid = fork();
    CHECK(hub_pid >= 0);
    if (hub_pid == 0) {
        /* Dies with us, even when a sanitizer aborts the test before atexit runs. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(1);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", "-B", HUB_PY, "--root", root, "--max-lifetime", "120",
               (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    while (!memchr(line, '\n', n)) {
        left = (int)(deadline - uv_hrtime() / 1000000);
        CHECK(left > 0 && n < sizeof(line) - 1);
        pfd = (struct pollfd){.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0)
            continue;
        k = read(fds[0], line + n, sizeof(line) - 1 - n);
        CHECK(k > 0); /* 0: the hub exited */
        n += (size_t)k;
    }
    line[n] = '\0';
    close(fds[0]); /* hub.py prints nothing after the ready line */
    CHECK_EQ(sscanf(line, "SHOAL_HUB_READY port=%d cdn_port=%d", &hub_port, &cdn_port), 2);
    snprintf(hub_url, sizeof(hub_url), "http://127.0.0.1:%d", hub_port);
}

/* One blocking HTTP/1.1 exchange with hub.py's /_test endpoints; returns the JSON body. */
static json_t *ctl(const char *method, const char *path, const char *body)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)hub_port)};
    size_t n = 0, cap = 1 << 20;
    char *resp = check_malloc(cap), req[4096], *b;
    json_t *doc;
    ssize_t k;
    int fd, len;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    len = snprintf(req, sizeof(req),
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                   method, path, strlen(body), body);
    CHECK(len > 0 && (size_t)len < sizeof(req));
    CHECK_EQ(write(fd, req, (size_t)len), len);
    while ((k = read(fd, resp + n, cap - 1 - n)) > 0) {
        n += (size_t)k;
        if (n == cap - 1) {
            cap *= 2;
            resp = realloc(resp, cap);
            CHECK(resp != NULL);
        }
    }
    close(fd);
    resp[n] = '\0';
    CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0 || strncmp(resp, "HTTP/1.0 200", 12) == 0);
    b = strstr(resp, "\r\n\r\n");
    CHECK(b != NULL);
    doc = json_loads(b + 4, 0, NULL);
    CHECK(doc != NULL);
    free(resp);
    return doc;
}

static void faults(const char *list)
{
    json_decref(ctl("POST", "/_test/faults", list));
}

static void reset_stats(void)
{
    json_decref(ctl("POST", "/_test/reset", ""));
}

/* --- the loop ------------------------------------------------------------------------- */

static uv_loop_t loop;
static struct hub *hub;
static bool closed_in_cb;       /* set by hub_close's done callback (test_close_in_flight) */
static uv_timer_t resume_timer; /* hub_resume 30 ms after a HUB_PAUSE (test_pause_resume) */

static void on_watchdog(uv_timer_t *t)
{
    check__fail(__FILE__, __LINE__, "timed out waiting for the hub client");
}

/* Runs the loop until pred(arg) holds; fails the test after ms. */
static void run_until(bool (*pred)(void *), void *arg, uint64_t ms)
{
    uv_timer_t wd;

    uv_timer_init(&loop, &wd);
    uv_timer_start(&wd, on_watchdog, ms, 0);
    while (!pred(arg))
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static bool flag_set(void *arg)
{
    return *(bool *)arg;
}

static struct hub_opts opts(const char *token)
{
    return (struct hub_opts){.endpoint = hub_url,
                             .token = token,
                             .max_retries = 4,
                             .backoff_ms = 20,
                             .backoff_max_ms = 100,
                             .stall_ms = 5000,
                             .retry_after_max_ms = 5000,
                             .connect_ms = 2000};
}

static void open_hub(struct hub_opts o)
{
    CHECK_EQ(uv_loop_init(&loop), 0);
    CHECK_EQ(hub_new(&loop, &o, &hub), 0);
}

static void on_closed(void *arg)
{
    *(bool *)arg = true;
}

static void close_hub(void)
{
    bool closed = false;

    hub_close(hub, on_closed, &closed);
    run_until(flag_set, &closed, CASE_MS);
    hub = NULL;
    CHECK_EQ(uv_loop_close(&loop), 0);
}

/* --- one request's outcome --------------------------------------------------------------- */

struct out {
    bool done;
    int err;
    json_t *doc;
    struct hub_result res;
    struct hub_req *req;
    uint64_t off, len, got; /* range, bytes seen (offsets checked to be consecutive) */
    uint8_t *data;
    unsigned calls;
    int pause_every; /* return HUB_PAUSE from every n-th data call ... */
    int pauses_left; /* ... this many times */
    bool paused;
    bool cancel_first; /* hub_cancel from the first data call */
    bool close_first;  /* hub_close from the first data call */
};

static void on_resume(uv_timer_t *t)
{
    struct out *o = t->data;

    CHECK(o->paused);
    o->paused = false;
    hub_resume(o->req);
}

static void on_json(void *arg, int err, json_t *doc, const struct hub_result *res)
{
    struct out *o = arg;

    CHECK(!o->done);
    o->done = true;
    o->err = err;
    o->doc = doc;
    o->res = *res;
}

static int on_data(void *arg, uint64_t off, const uint8_t *data, size_t len)
{
    struct out *o = arg;

    CHECK(!o->done);
    CHECK(!o->paused);
    CHECK_EQ(off, o->off + o->got);
    CHECK(o->got + len <= o->len);
    memcpy(o->data + o->got, data, len);
    o->got += len;
    o->calls++;
    if (o->cancel_first) {
        hub_cancel(o->req);
        return 0;
    }
    if (o->close_first) {
        hub_close(hub, on_closed, &closed_in_cb);
        return 0;
    }
    if (o->pauses_left > 0 && o->calls % (unsigned)o->pause_every == 0) {
        o->pauses_left--;
        o->paused = true;
        resume_timer.data = o;
        uv_timer_start(&resume_timer, on_resume, 150, 0);
        return HUB_PAUSE;
    }
    return 0;
}

static void on_done(void *arg, int err, const struct hub_result *res)
{
    struct out *o = arg;

    CHECK(!o->done);
    o->done = true;
    o->err = err;
    o->res = *res;
}

static bool out_done(void *arg)
{
    return ((struct out *)arg)->done;
}

static void get_json(const char *url, struct out *o)
{
    memset(o, 0, sizeof(*o));
    CHECK_EQ(hub_get_json(hub, url, on_json, o, &o->req), 0);
    run_until(out_done, o, CASE_MS);
}

static void start_range(const char *url, uint64_t off, uint64_t len, struct out *o)
{
    o->off = off;
    o->len = len;
    o->data = check_malloc(len);
    CHECK_EQ(hub_get_range(hub, url, off, len, on_data, on_done, o, &o->req), 0);
}

static void get_range(const char *url, uint64_t off, uint64_t len, struct out *o)
{
    start_range(url, off, len, o);
    run_until(out_done, o, CASE_MS);
}

static void expect_model_bytes(struct out *o)
{
    CHECK_EQ(o->err, 0);
    CHECK_EQ(o->got, o->len);
    CHECK_MEM(o->data, model + o->off, o->len);
}

static void describe(struct out *o, const char *what, const char *part)
{
    char msg[1024];

    hub_describe_error(o->err, &o->res, what, msg, sizeof(msg));
    if (!strstr(msg, part))
        check__fail(__FILE__, __LINE__, "\"%s\" not in \"%s\"", part, msg);
    CHECK(!strstr(msg, USER_TOKEN) && !strstr(msg, BAD_TOKEN) && !strstr(msg, GRANT_TOKEN));
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* Entries of the hub's request log for one path on one server. */
static json_t *log_for(json_t *stats, const char *server, const char *path)
{
    json_t *all = json_object_get(stats, "log"), *e, *out = json_array();
    size_t i;

    json_array_foreach(all, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "server")), server) == 0 &&
            (!path || strcmp(json_string_value(json_object_get(e, "path")), path) == 0))
            json_array_append(out, e);
    }
    return out;
}

/* --- cases ----------------------------------------------------------------------------------- */

static void test_escape(void)
{
    char b[64];

    CHECK_EQ(hub_escape("refs/pr/1", false, b, sizeof(b)), 13);
    CHECK_STR(b, "refs%2Fpr%2F1");
    CHECK_EQ(hub_escape("sub dir/a+b~c.json", true, b, sizeof(b)), 22);
    CHECK_STR(b, "sub%20dir/a%2Bb~c.json");
    CHECK_EQ(hub_escape("abc", false, b, 3), -ENOBUFS);
    CHECK_EQ(hub_escape("abc", false, b, 4), 3);
    CHECK_EQ(hub_escape("\xc3\xa9", false, b, 7), 6);
    CHECK_STR(b, "%C3%A9");
}

static void test_args(void)
{
    struct hub_opts o = opts(NULL);
    static char long_url[HUB_URL_MAX + 8];
    struct out x;

    o.endpoint = "ftp://x";
    CHECK_EQ(hub_new(&loop, &o, &hub), -EINVAL);
    open_hub(opts(NULL));
    memset(long_url, 'a', sizeof(long_url) - 1);
    long_url[0] = '/';
    CHECK_EQ(hub_get_json(hub, long_url, on_json, &x, NULL), -EINVAL);
    CHECK_EQ(hub_get_json(hub, "relative/path", on_json, &x, NULL), -EINVAL);
    CHECK_EQ(hub_get_json(hub, "http://[bad", on_json, &x, NULL), -EINVAL);
    CHECK_EQ(hub_get_range(hub, MODEL_PATH, 0, 0, on_data, on_done, &x, NULL), -EINVAL);
    close_hub();
}

static void test_repo_info(void)
{
    struct hub_stats st;
    struct out o;

    open_hub(opts(USER_TOKEN));
    get_json(INFO_PATH, &o);
    CHECK_EQ(o.err, 0);
    CHECK_EQ(o.res.status, 200);
    CHECK_STR(json_string_value(json_object_get(o.doc, "sha")), commit);
    CHECK_STR(json_string_value(json_object_get(o.doc, "id")), "org/model");
    json_decref(o.doc);
    get_json(INFO_PATH "/revision/main", &o);
    CHECK_EQ(o.err, 0);
    CHECK_STR(json_string_value(json_object_get(o.doc, "sha")), commit);
    json_decref(o.doc);
    hub_get_stats(hub, &st);
    CHECK_EQ(st.requests, 2);
    CHECK_EQ(st.retries, 0);
    CHECK_EQ(st.in_flight, 0);
    CHECK(st.bytes > 0);
    close_hub();
}

static void test_tree_pages(void)
{
    char next[HUB_URL_MAX];
    int pages = 0, files = 0, model_seen = 0;
    json_t *e;
    struct out o;
    size_t i;

    open_hub(opts(USER_TOKEN));
    snprintf(next, sizeof(next), "%s", "/api/models/org/model/tree/main?recursive=true&limit=1");
    while (next[0]) {
        get_json(next, &o);
        CHECK_EQ(o.err, 0);
        CHECK(json_is_array(o.doc));
        CHECK_STR(o.res.repo_commit, commit);
        json_array_foreach(o.doc, i, e)
        {
            files++;
            model_seen +=
                strcmp(json_string_value(json_object_get(e, "path")), "model.safetensors") == 0;
        }
        json_decref(o.doc);
        pages++;
        CHECK(o.res.next[0] == '\0' || strncmp(o.res.next, hub_url, strlen(hub_url)) == 0);
        snprintf(next, sizeof(next), "%s", o.res.next);
        CHECK(pages <= 10);
    }
    CHECK_EQ(pages, 4); /* .gitattributes, config.json, model.safetensors, tokenizer.json */
    CHECK_EQ(files, 4);
    CHECK_EQ(model_seen, 1);
    close_hub();
}

/* The LFS file through the 302 to the CDN port; the token reaches the hub only. */
static void test_range_cdn(void)
{
    json_t *st, *l, *e;
    struct out o = {0};
    size_t i;

    reset_stats();
    open_hub(opts(USER_TOKEN));
    get_range(MODEL_PATH, 0, MODEL_SIZE, &o);
    expect_model_bytes(&o);
    CHECK_EQ(o.res.status, 206);
    CHECK_STR(o.res.repo_commit, commit); /* from the hub's 302 */
    free(o.data);
    close_hub();

    st = ctl("GET", "/_test/stats", "");
    CHECK_EQ(json_integer_value(json_object_get(st, "cdn_requests_with_authorization")), 0);
    l = log_for(st, "hub", MODEL_PATH);
    CHECK_EQ(json_array_size(l), 1);
    CHECK(json_is_true(json_object_get(json_array_get(l, 0), "authorization")));
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(l, 0), "status")), 302);
    json_decref(l);
    l = log_for(st, "cdn", NULL);
    CHECK_EQ(json_array_size(l), 1);
    json_array_foreach(l, i, e)
    {
        CHECK(json_is_false(json_object_get(e, "authorization")));
        CHECK_STR(json_string_value(json_object_get(e, "range")), "bytes=0-3145727");
    }
    json_decref(l);
    json_decref(st);
}

static bool all_done(void *arg)
{
    struct out *o = arg;
    int i;

    for (i = 0; i < 8; i++) {
        if (!o[i].done)
            return false;
    }
    return true;
}

static void test_parallel_ranges(void)
{
    struct out o[8] = {0};
    struct hub_stats st;
    uint64_t off = 5, len;
    int i;

    open_hub(opts(USER_TOKEN));
    for (i = 0; i < 8; i++) {
        len = MODEL_SIZE / 8 - 1000 + (uint64_t)i * 100;
        start_range(MODEL_PATH, off, len, &o[i]);
        off += len + 3;
    }
    hub_get_stats(hub, &st);
    CHECK_EQ(st.in_flight, 8);
    run_until(all_done, o, CASE_MS);
    for (i = 0; i < 8; i++) {
        expect_model_bytes(&o[i]);
        free(o[i].data);
    }
    hub_get_stats(hub, &st);
    CHECK_EQ(st.in_flight, 0);
    CHECK_EQ(st.requests, 16); /* each: the hub's 302, then the CDN */
    close_hub();
}

/* A relative redirect (resolve-cache) keeps the token: same origin. */
static void test_relative_redirect(void)
{
    json_t *st, *l;
    struct out o = {0};

    json_decref(ctl("POST", "/_test/config", "{\"resolve_cache_redirect\": true}"));
    reset_stats();
    open_hub(opts(USER_TOKEN));
    get_range("/org/model/resolve/main/config.json", 0, config_len, &o);
    CHECK_EQ(o.err, 0);
    CHECK_MEM(o.data, config, config_len);
    free(o.data);
    close_hub();
    json_decref(ctl("POST", "/_test/config", "{\"resolve_cache_redirect\": false}"));
    st = ctl("GET", "/_test/stats", "");
    l = log_for(st, "hub", NULL);
    CHECK_EQ(json_array_size(l), 2);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(l, 0), "status")), 307);
    CHECK(strstr(json_string_value(json_object_get(json_array_get(l, 1), "path")),
                 "/api/resolve-cache/") != NULL);
    CHECK(json_is_true(json_object_get(json_array_get(l, 1), "authorization")));
    json_decref(l);
    json_decref(st);
}

/* A server that ignores Range (200 + the whole body): bytes before off are skipped and
 * the transfer is stopped once the range is complete. */
static void test_range_answered_200(void)
{
    struct out o = {0};

    json_decref(ctl("POST", "/_test/config", "{\"ignore_range\": true}"));
    open_hub(opts(USER_TOKEN));
    get_range(MODEL_PATH, 100000, 200001, &o);
    expect_model_bytes(&o);
    CHECK_EQ(o.res.status, 200);
    CHECK_EQ(o.res.retries, 0);
    free(o.data);
    memset(&o, 0, sizeof(o));
    get_range("/org/model/resolve/main/config.json", 10, config_len - 10, &o);
    CHECK_EQ(o.err, 0);
    CHECK_MEM(o.data, config + 10, config_len - 10);
    free(o.data);
    close_hub();
    json_decref(ctl("POST", "/_test/config", "{\"ignore_range\": false}"));
}

static void test_gated(void)
{
    struct out o = {0};

    open_hub(opts(NULL));
    get_range("/org/gated/resolve/main/model.safetensors", 0, 100, &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_EQ(o.res.status, 401);
    CHECK_STR(o.res.error_code, "GatedRepo");
    CHECK_EQ(o.res.retries, 0);
    CHECK_EQ(o.got, 0);
    describe(&o, "org/gated", "org/gated is a gated repository: set HF_TOKEN");
    free(o.data);
    close_hub();

    memset(&o, 0, sizeof(o));
    open_hub(opts(USER_TOKEN));
    get_range("/org/gated/resolve/main/model.safetensors", 0, 100, &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_EQ(o.res.status, 403);
    CHECK_STR(o.res.error_code, "GatedRepo");
    describe(&o, "org/gated", "has not been granted access");
    free(o.data);
    close_hub();

    memset(&o, 0, sizeof(o));
    open_hub(opts(GRANT_TOKEN));
    get_range("/org/gated/resolve/main/model.safetensors", 0, 100, &o);
    CHECK_EQ(o.err, 0);
    CHECK_EQ(o.got, 100);
    free(o.data);
    close_hub();
}

static void test_private_disabled_badtoken(void)
{
    struct out o;

    open_hub(opts(NULL));
    get_json("/api/models/org/private", &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_EQ(o.res.status, 401);
    CHECK(o.doc == NULL);
    describe(&o, "org/private", "repository not found: org/private (or private: set HF_TOKEN)");
    get_json("/api/models/org/disabled", &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_EQ(o.res.status, 403);
    describe(&o, "org/disabled", "org/disabled has been disabled");
    close_hub();

    open_hub(opts(GRANT_TOKEN));
    get_json("/api/models/org/private", &o);
    CHECK_EQ(o.err, 0);
    json_decref(o.doc);
    close_hub();

    open_hub(opts(BAD_TOKEN));
    get_json(INFO_PATH, &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_EQ(o.res.status, 401);
    CHECK_STR(o.res.error_message, "Invalid credentials in Authorization header");
    describe(&o, "org/model", "rejected the token");
    close_hub();
}

static void test_not_found(void)
{
    struct out o = {0};

    open_hub(opts(USER_TOKEN));
    get_json("/api/models/org/nope", &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_STR(o.res.error_code, "RepoNotFound");
    describe(&o, "org/nope", "repository not found: org/nope");
    get_json(INFO_PATH "/revision/nope", &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_EQ(o.res.status, 404);
    CHECK_STR(o.res.error_code, "RevisionNotFound");
    describe(&o, "org/model@nope", "revision not found: org/model@nope");
    memset(&o, 0, sizeof(o));
    get_range("/org/model/resolve/main/missing.bin", 0, 10, &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_STR(o.res.error_code, "EntryNotFound");
    CHECK_STR(o.res.repo_commit, commit);
    describe(&o, "missing.bin", "file not found: missing.bin");
    free(o.data);
    memset(&o, 0, sizeof(o));
    get_range(MODEL_PATH, MODEL_SIZE, 10, &o); /* past the end: 416, not retried */
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_EQ(o.res.status, 416);
    CHECK_EQ(o.res.retries, 0);
    describe(&o, "model.safetensors", "HTTP 416");
    free(o.data);
    close_hub();
}

static void test_retry_after(void)
{
    uint64_t t0;
    struct out o;

    faults("[{\"type\": \"429\", \"retry_after\": 1, \"path\": \"" INFO_PATH "\"}]");
    open_hub(opts(USER_TOKEN));
    t0 = now_ms();
    get_json(INFO_PATH, &o);
    CHECK_EQ(o.err, 0);
    CHECK(now_ms() - t0 >= 950);
    CHECK(now_ms() - t0 < 5000);
    CHECK_EQ(o.res.retries, 1);
    CHECK_STR(json_string_value(json_object_get(o.doc, "sha")), commit);
    json_decref(o.doc);
    close_hub();
}

static void test_5xx_then_ok(void)
{
    struct hub_stats st;
    struct out o = {0};

    faults("[{\"type\": \"503\", \"path\": \"" INFO_PATH "\"},"
           " {\"type\": \"500\", \"path\": \"" INFO_PATH "\"},"
           " {\"type\": \"502\", \"server\": \"cdn\"}]");
    open_hub(opts(USER_TOKEN));
    get_json(INFO_PATH, &o);
    CHECK_EQ(o.err, 0);
    CHECK_EQ(o.res.retries, 2);
    json_decref(o.doc);
    memset(&o, 0, sizeof(o));
    get_range(MODEL_PATH, 100, 1000, &o);
    expect_model_bytes(&o);
    CHECK_EQ(o.res.retries, 1);
    free(o.data);
    hub_get_stats(hub, &st);
    CHECK_EQ(st.retries, 3);
    CHECK_EQ(st.errors, 0);
    close_hub();
}

static void test_retries_exhausted(void)
{
    struct hub_opts ho = opts(USER_TOKEN);
    struct hub_stats st;
    struct out o;

    faults("[{\"type\": \"503\", \"count\": 10, \"path\": \"" INFO_PATH "\"}]");
    ho.max_retries = 2;
    open_hub(ho);
    get_json(INFO_PATH, &o);
    CHECK_EQ(o.err, SHOAL_EHUB);
    CHECK_EQ(o.res.status, 503);
    CHECK_EQ(o.res.retries, 2);
    describe(&o, "org/model", "org/model: HTTP 503 after 2 retries: Service Unavailable");
    hub_get_stats(hub, &st);
    CHECK_EQ(st.errors, 1);
    CHECK_EQ(st.requests, 3);
    close_hub();
    faults("[]");
}

/* A stall after some bytes: detected after stall_ms, resumed where it stopped. */
static void test_stall(void)
{
    struct hub_opts ho = opts(USER_TOKEN);
    struct hub_stats st;
    struct out o = {0};
    json_t *s, *l;
    uint64_t t0;

    faults("[{\"type\": \"stall\", \"server\": \"cdn\", \"after_bytes\": 100000,"
           " \"seconds\": 8}]");
    reset_stats();
    ho.stall_ms = 300;
    open_hub(ho);
    t0 = now_ms();
    get_range(MODEL_PATH, 7, MODEL_SIZE - 7, &o);
    expect_model_bytes(&o);
    CHECK(now_ms() - t0 < 5000);
    CHECK_EQ(o.res.retries, 1);
    hub_get_stats(hub, &st);
    CHECK_EQ(st.stalls, 1);
    free(o.data);
    close_hub();
    s = ctl("GET", "/_test/stats", "");
    l = log_for(s, "cdn", NULL);
    CHECK_EQ(json_array_size(l), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 1), "range")),
              "bytes=100007-3145727");
    json_decref(l);
    json_decref(s);
}

static void test_truncated(void)
{
    struct out o = {0};
    json_t *s, *l;

    faults("[{\"type\": \"truncate\", \"server\": \"cdn\", \"after_bytes\": 123457}]");
    reset_stats();
    open_hub(opts(USER_TOKEN));
    get_range(MODEL_PATH, 1000, 2u << 20, &o);
    expect_model_bytes(&o);
    CHECK_EQ(o.res.retries, 1);
    free(o.data);
    close_hub();
    s = ctl("GET", "/_test/stats", "");
    l = log_for(s, "cdn", NULL);
    CHECK_EQ(json_array_size(l), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "range")),
              "bytes=1000-2098151");
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 1), "range")),
              "bytes=124457-2098151");
    json_decref(l);
    json_decref(s);
}

/* The data callback pauses twice; a timer resumes 150 ms later each time, longer than
 * stall_ms: a pause is not a stall. */
static void test_pause_resume(void)
{
    struct hub_opts ho = opts(USER_TOKEN);
    struct out o = {0};

    ho.stall_ms = 100;
    open_hub(ho);
    o.pause_every = 2;
    o.pauses_left = 2;
    uv_timer_init(&loop, &resume_timer);
    start_range(MODEL_PATH, 0, MODEL_SIZE, &o);
    run_until(out_done, &o, CASE_MS);
    expect_model_bytes(&o);
    CHECK(o.calls >= 4);
    CHECK_EQ(o.pauses_left, 0);
    CHECK_EQ(o.res.retries, 0);
    free(o.data);
    uv_close((uv_handle_t *)&resume_timer, NULL);
    close_hub();
}

static bool hub_retried(void *arg)
{
    struct hub_stats st;

    hub_get_stats(arg, &st);
    return st.retries > 0;
}

static bool got_data(void *arg)
{
    return ((struct out *)arg)->calls > 0;
}

static void test_cancel(void)
{
    struct out a = {0}, b = {0}, c;

    faults("[{\"type\": \"slow\", \"server\": \"cdn\", \"rate\": 100000, \"max_seconds\": 10},"
           " {\"type\": \"503\", \"retry_after\": 10, \"path\": \"" INFO_PATH "\"}]");
    open_hub(opts(USER_TOKEN));
    /* Cancelled from its own data callback: nothing more is called. */
    a.cancel_first = true;
    start_range(MODEL_PATH, 0, MODEL_SIZE, &a);
    run_until(got_data, &a, CASE_MS);
    /* Cancelled while waiting out a Retry-After. */
    memset(&c, 0, sizeof(c));
    CHECK_EQ(hub_get_json(hub, INFO_PATH, on_json, &c, &c.req), 0);
    run_until(hub_retried, hub, CASE_MS);
    hub_cancel(c.req);
    /* A later request completes; neither cancelled one ever called back. */
    get_range(MODEL_PATH, 0, 4096, &b);
    expect_model_bytes(&b);
    CHECK_EQ(a.calls, 1);
    CHECK(!a.done);
    CHECK(!c.done);
    free(a.data);
    free(b.data);
    close_hub();
    faults("[]");
}

/* hub_close from inside a data callback, with ranges and a backoff in flight. */
static void test_close_in_flight(void)
{
    struct out o[4] = {0}, j;
    int i;

    faults("[{\"type\": \"slow\", \"server\": \"cdn\", \"rate\": 200000, \"max_seconds\": 10,"
           " \"count\": 4},"
           " {\"type\": \"503\", \"retry_after\": 10, \"path\": \"" INFO_PATH "\"}]");
    open_hub(opts(USER_TOKEN));
    memset(&j, 0, sizeof(j));
    CHECK_EQ(hub_get_json(hub, INFO_PATH, on_json, &j, &j.req), 0);
    for (i = 0; i < 4; i++)
        start_range(MODEL_PATH, (uint64_t)i * 1000, 1u << 20, &o[i]);
    run_until(hub_retried, hub, CASE_MS);
    for (i = 0; i < 4; i++)
        o[i].close_first = true; /* whichever range gets bytes next closes the hub */
    run_until(flag_set, &closed_in_cb, CASE_MS);
    for (i = 0; i < 4; i++) {
        CHECK(o[i].done);
        CHECK_EQ(o[i].err, -ECANCELED);
        free(o[i].data);
    }
    CHECK(j.done);
    CHECK_EQ(j.err, -ECANCELED);
    CHECK(j.doc == NULL);
    hub = NULL;
    CHECK_EQ(uv_loop_close(&loop), 0);
    faults("[]");
}

static void test_connection_refused(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    struct hub_opts ho = opts(NULL);
    char url[64], host[64];
    struct out o;
    int fd;

    /* A port nobody listens on: bind one, read it back, close it. */
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(host, sizeof(host), "connection refused to 127.0.0.1:%d (after 1 retry)",
             ntohs(a.sin_port));
    ho.endpoint = url;
    ho.max_retries = 1;
    open_hub(ho);
    get_json(INFO_PATH, &o);
    CHECK_EQ(o.err, -ECONNREFUSED);
    CHECK_EQ(o.res.status, 0);
    describe(&o, "org/model", host);
    close_hub();
}

int main(void)
{
    const char *tmp = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";

    signal(SIGPIPE, SIG_IGN);
    snprintf(root, sizeof(root), "%s/shoal-hubc-XXXXXX", tmp);
    CHECK(mkdtemp(root) != NULL);
    atexit(cleanup);
    make_repo("model/org/model", "config.json:small,model.safetensors:3M,tokenizer.json:64K",
              "--user-token", USER_TOKEN, "--public", commit);
    make_repo("model/org/gated", "model.safetensors:64K", "--gated", "manual",
              "--token=" GRANT_TOKEN, NULL);
    make_repo("model/org/private", "config.json:small", "--private", "--token", GRANT_TOKEN, NULL);
    make_repo("model/org/disabled", "config.json:small", "--disabled", NULL, NULL, NULL);
    model = check_malloc(MODEL_SIZE);
    CHECK_EQ(read_file("model.safetensors", model, MODEL_SIZE), MODEL_SIZE);
    config_len = read_file("config.json", config, sizeof(config));
    start_hub();

    RUN(test_escape);
    RUN(test_args);
    RUN(test_repo_info);
    RUN(test_tree_pages);
    RUN(test_range_cdn);
    RUN(test_parallel_ranges);
    RUN(test_relative_redirect);
    RUN(test_range_answered_200);
    RUN(test_gated);
    RUN(test_private_disabled_badtoken);
    RUN(test_not_found);
    RUN(test_retry_after);
    RUN(test_5xx_then_ok);
    RUN(test_retries_exhausted);
    RUN(test_stall);
    RUN(test_truncated);
    RUN(test_pause_resume);
    RUN(test_cancel);
    RUN(test_close_in_flight);
    RUN(test_connection_refused);
    free(model);
    cleanup();
    return check_done();
}
