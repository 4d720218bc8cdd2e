/* api.c - routes of the control API and /metrics (docs/control-api.md).
 *
 * Handlers that need the store queue a job and answer from its done callback; the
 * request stays valid until then (http.h). Pulls answer at once from the pull
 * manager's state.
 */
#include "api.h"

#include "chash.h"
#include "err.h"
#include "import.h"
#include "log.h"
#include "snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_HEX (2 * STORE_ID_LEN + 1)

/* --- answers ----------------------------------------------------------------------- */

static void reply_json(struct http_req *req, int status, json_t *doc)
{
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

    json_decref(doc);
    if (!body) {
        http_respond(req, 500, "application/json", "{\"error\":\"out of memory\"}\n", 26);
        return;
    }
    size_t n = strlen(body);
    body[n] = '\n'; /* replaces the NUL; sent with its length */
    http_respond(req, status, "application/json", body, n + 1);
    free(body);
}

static void reply_error(struct http_req *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error(struct http_req *req, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(req, status, json_pack("{s:s}", "error", msg));
}

/* "model/org/name" -> repo "org/name", type "model". */
static void split_repo(const char *srepo, char *type, size_t tcap, const char **name)
{
    const char *slash = strchr(srepo, '/');
    size_t n = slash ? (size_t)(slash - srepo) : 0;

    snprintf(type, tcap, "%.*s", (int)n, srepo);
    *name = slash ? slash + 1 : srepo;
}

/* --- request bodies ------------------------------------------------------------------ */

/* Parses the body as a JSON object whose keys are all in `allowed`; on failure answers
 * 400 itself and returns NULL. */
static json_t *body_object(struct http_req *req, const char *const *allowed)
{
    const uint8_t *b;
    json_error_t jerr;
    const char *key;
    json_t *doc, *v;
    size_t len;

    b = http_req_body(req, &len);
    doc = json_loadb((const char *)b, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        reply_error(req, 400, "the request body is not a JSON object%s%s",
                    doc ? "" : ": ", doc ? "" : jerr.text);
        json_decref(doc);
        return NULL;
    }
    json_object_foreach(doc, key, v) {
        const char *const *a;
        for (a = allowed; *a && strcmp(*a, key) != 0; a++)
            ;
        if (!*a) {
            reply_error(req, 400, "unknown field '%s'", key);
            json_decref(doc);
            return NULL;
        }
    }
    return doc;
}

/* A string field: *out is NULL when absent; a present non-string is an error. */
static int str_field(struct http_req *req, json_t *doc, const char *key, const char **out)
{
    json_t *v = json_object_get(doc, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        reply_error(req, 400, "'%s' must be a string", key);
        return -EINVAL;
    }
    *out = json_string_value(v);
    return 0;
}

/* A list of strings, at most `max`. */
static int strv_field(struct http_req *req, json_t *doc, const char *key, const char **out,
                      unsigned max, unsigned *n)
{
    json_t *v = json_object_get(doc, key), *e;
    size_t i;

    *n = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) > max) {
        reply_error(req, 400, "'%s' must be a list of at most %u strings", key, max);
        return -EINVAL;
    }
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) {
            reply_error(req, 400, "'%s' must be a list of strings", key);
            return -EINVAL;
        }
        out[(*n)++] = json_string_value(e);
    }
    return 0;
}

static bool repo_type_ok(const char *t)
{
    return strcmp(t, "model") == 0 || strcmp(t, "dataset") == 0 || strcmp(t, "space") == 0;
}

/* repo + repo_type -> "type/org/name", validated; answers 400 itself on failure. */
static int store_repo(struct http_req *req, const char *repo, const char *type, char *out,
                      size_t cap)
{
    if (!repo) {
        reply_error(req, 400, "'repo' is required");
        return -EINVAL;
    }
    if (!repo_type_ok(type)) {
        reply_error(req, 400, "'repo_type' must be model, dataset or space");
        return -EINVAL;
    }
    if (snprintf(out, cap, "%s/%s", type, repo) >= (int)cap || !snapshot_repo_ok(out)) {
        reply_error(req, 400, "'%s' is not a repository name (org/name)", repo);
        return -EINVAL;
    }
    return 0;
}

/* --- jobs that answer a request ---------------------------------------------------------- */

struct req_job {
    struct api_env *env;
    struct http_req *req;
    int err;
    json_t *doc;          /* the answer, built on the pool */
    struct store_stats st; /* for status and /metrics */
    char why[1024];
    char srepo[SNAPSHOT_REPO_MAX + 1];
    char rev[SNAPSHOT_REV_MAX + 1];
    char dir[4097];
    bool repair;                       /* /v1/check */
    void (*finish)(struct req_job *j); /* on the loop, before answering */
};

static void job_answer(void *arg)
{
    struct req_job *j = arg;

    if (j->finish)
        j->finish(j);
    else if (j->err < 0)
        reply_error(j->req, j->err == -ENOENT ? 404 : j->err == -EINVAL ? 400 : 500, "%s",
                    j->why[0] ? j->why : shoal_strerror(j->err));
    else
        reply_json(j->req, 200, j->doc), j->doc = NULL;
    json_decref(j->doc);
    free(j);
}

static void queue_job(struct api_env *env, struct http_req *req, work_run_fn run,
                      struct req_job *j)
{
    int err;

    j->env = env;
    j->req = req;
    err = work_queue(env->work, run, job_answer, j);
    if (err < 0) {
        json_decref(j->doc);
        free(j);
        reply_error(req, err == -ESHUTDOWN ? 503 : 500, "%s",
                    err == -ESHUTDOWN ? "the node is stopping" : "out of memory");
    }
}

static struct req_job *new_job(struct http_req *req)
{
    struct req_job *j = calloc(1, sizeof(*j));

    if (!j)
        reply_error(req, 500, "out of memory");
    return j;
}

/* --- /v1/status ---------------------------------------------------------------------------- */

/* The store's totals as status, ls and /metrics show them. */
static json_t *stats_json(const struct store_stats *st)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I}", "files", (json_int_t)st->files,
                     "complete_files", (json_int_t)st->complete_files, "chunks",
                     (json_int_t)st->chunks, "logical_bytes", (json_int_t)st->logical_bytes,
                     "physical_bytes", (json_int_t)st->physical_bytes);
}

static void stats_run(void *arg)
{
    struct req_job *j = arg;

    j->err = store_stats(j->env->store, &j->st);
}

static void status_finish(struct req_job *j)
{
    struct api_env *e = j->env;
    struct hub_stats hs;
    struct pull_stats ps;
    json_t *store;

    if (j->err < 0) {
        reply_error(j->req, 500, "the store failed: %s", shoal_strerror(j->err));
        return;
    }
    store = stats_json(&j->st);
    json_object_set_new(store, "quota", json_integer((json_int_t)e->quota));
    json_object_set_new(store, "min_free", json_integer((json_int_t)e->min_free));
    hub_get_stats(e->hub, &hs);
    pull_get_stats(e->pulls, &ps);
    reply_json(j->req, 200,
               json_pack("{s:s, s:s, s:s, s:I, s:{s:s, s:I, s:I, s:I, s:I, s:I}, s:o, "
                         "s:{s:I, s:I, s:I}}",
                         "node_id", e->node_id, "version", e->version, "data_dir",
                         e->data_dir, "uptime_s",
                         (json_int_t)((uv_now(e->loop) - e->started_ms) / 1000), "hub",
                         "endpoint", e->hub_endpoint, "requests", (json_int_t)hs.requests,
                         "bytes", (json_int_t)hs.bytes, "retries", (json_int_t)hs.retries,
                         "errors", (json_int_t)hs.errors, "in_flight",
                         (json_int_t)hs.in_flight, "store", store, "pulls", "active",
                         (json_int_t)ps.active, "done", (json_int_t)ps.done, "failed",
                         (json_int_t)ps.failed));
}

/* --- /v1/pulls --------------------------------------------------------------------------------- */

static const char *const pull_fields[] = {"repo",      "repo_type", "revision",
                                          "include",   "exclude",   "cache_dir",
                                          "local_dir", "from_peer", NULL};

static void pull_post(struct api_env *e, struct http_req *req)
{
    const char *inc[PULL_GLOBS_MAX], *exc[PULL_GLOBS_MAX];
    struct pull_req r = {.include = inc, .exclude = exc};
    char why[1024];
    uint32_t id;
    json_t *doc;
    int err;

    doc = body_object(req, pull_fields);
    if (!doc)
        return;
    err = str_field(req, doc, "repo", &r.repo);
    if (err == 0)
        err = str_field(req, doc, "repo_type", &r.repo_type);
    if (err == 0)
        err = str_field(req, doc, "revision", &r.revision);
    if (err == 0)
        err = str_field(req, doc, "cache_dir", &r.cache_dir);
    if (err == 0)
        err = str_field(req, doc, "local_dir", &r.local_dir);
    if (err == 0)
        err = str_field(req, doc, "from_peer", &r.from_peer);
    if (err == 0)
        err = strv_field(req, doc, "include", inc, PULL_GLOBS_MAX, &r.n_include);
    if (err == 0)
        err = strv_field(req, doc, "exclude", exc, PULL_GLOBS_MAX, &r.n_exclude);
    if (err < 0) {
        json_decref(doc);
        return;
    }
    if (!r.repo_type)
        r.repo_type = "model";
    if (!r.revision)
        r.revision = "main";
    why[0] = '\0';
    err = pull_start(e->pulls, &r, &id, why, sizeof(why));
    json_decref(doc);
    if (err < 0) {
        reply_error(req, err == -EINVAL ? 400 : err == -ESHUTDOWN ? 503 : 500, "%s",
                    why[0] ? why : strerror(-err));
        return;
    }
    reply_json(req, 202, pull_json(e->pulls, id, true));
}

static void pull_get(struct api_env *e, struct http_req *req, const char *id_s)
{
    char *end;
    unsigned long id;
    json_t *doc;

    errno = 0;
    id = strtoul(id_s, &end, 10);
    if (errno || end == id_s || *end || id > UINT32_MAX) {
        reply_error(req, 404, "no pull '%s'", id_s);
        return;
    }
    doc = pull_json(e->pulls, (uint32_t)id, true);
    if (!doc) {
        reply_error(req, 404, "no pull %lu (pulls are forgotten when the node restarts)", id);
        return;
    }
    reply_json(req, 200, doc);
}

/* --- /v1/files ------------------------------------------------------------------------------------ */

static int ls_snapshot(void *arg, const struct snapshot *snap, bool pinned)
{
    struct req_job *j = arg;
    json_t *files = json_array(), *o;
    char type[16], id[ID_HEX];
    const char *name;
    struct store_file info;

    split_repo(snap->repo, type, sizeof(type), &name);
    for (uint32_t i = 0; files && i < snap->n_files; i++) {
        const struct snapshot_file *f = &snap->files[i];
        bool complete = store_file_info(j->env->store, f->sha256, &info) == 0 && info.complete;
        chash_hex(f->sha256, STORE_ID_LEN, id);
        json_array_append_new(files, json_pack("{s:s, s:I, s:s, s:s, s:b}", "path", f->path,
                                               "size", (json_int_t)f->size, "sha256", id,
                                               "etag", f->etag, "complete", complete));
    }
    o = json_pack("{s:s, s:s, s:s, s:b, s:o}", "repo", name, "repo_type", type, "commit",
                  snap->commit, "pinned", pinned, "files", files ? files : json_array());
    return o ? json_array_append_new(json_object_get(j->doc, "snapshots"), o) : -ENOMEM;
}

static int ls_file(void *arg, const struct store_file *f)
{
    struct req_job *j = arg;
    char id[ID_HEX];

    chash_hex(f->id, STORE_ID_LEN, id);
    return json_array_append_new(json_object_get(j->doc, "files"),
                                 json_pack("{s:s, s:I, s:b, s:I}", "sha256", id, "size",
                                           (json_int_t)f->size, "complete", f->complete,
                                           "pieces", (json_int_t)f->pieces));
}

static void files_run(void *arg)
{
    struct req_job *j = arg;
    struct store *s = j->env->store;

    j->doc = json_pack("{s:[], s:[]}", "snapshots", "files");
    if (!j->doc) {
        j->err = -ENOMEM;
        return;
    }
    j->err = store_list_snapshots(s, ls_snapshot, j);
    if (j->err == 0)
        j->err = store_list_files(s, ls_file, j);
    if (j->err == 0)
        j->err = store_stats(s, &j->st);
    if (j->err == 0)
        json_object_set_new(j->doc, "totals", stats_json(&j->st));
}

/* --- /v1/imports ------------------------------------------------------------------------------------ */

static void import_run(void *arg)
{
    struct req_job *j = arg;
    struct import_stats st = {0};
    struct snapshot snap;
    char type[16];
    const char *name;

    j->err = import_dir(j->env->store, j->dir, j->srepo, &snap, &st, j->why, sizeof(j->why));
    if (j->err < 0) {
        if (j->err == -ENOENT || j->err == -ENOTDIR || j->err == -EACCES)
            j->err = -EINVAL; /* the user's folder, not the node: 400 */
        return;
    }
    /* `shoal pull REPO` then finds the import through the store (pull.h). */
    j->err = store_set_ref(j->env->store, snap.repo, "main", snap.commit);
    if (j->err < 0) {
        snprintf(j->why, sizeof(j->why), "recording %s@main: %s", snap.repo,
                 shoal_strerror(j->err));
        snapshot_release(&snap);
        return;
    }
    split_repo(snap.repo, type, sizeof(type), &name);
    j->doc = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "repo", name, "repo_type", type,
                       "commit", snap.commit, "files", (json_int_t)st.files, "bytes",
                       (json_int_t)st.bytes, "skipped", (json_int_t)st.skipped);
    snapshot_release(&snap);
}

static const char *const import_fields[] = {"dir", "repo", "repo_type", NULL};

static void import_post(struct api_env *e, struct http_req *req)
{
    const char *dir, *repo, *type;
    struct req_job *j;
    json_t *doc = body_object(req, import_fields);
    char srepo[SNAPSHOT_REPO_MAX + 1];

    if (!doc)
        return;
    if (str_field(req, doc, "dir", &dir) < 0 || str_field(req, doc, "repo", &repo) < 0 ||
        str_field(req, doc, "repo_type", &type) < 0 ||
        store_repo(req, repo, type ? type : "model", srepo, sizeof(srepo)) < 0)
        goto out;
    if (!dir || dir[0] != '/' || strlen(dir) >= sizeof(j->dir)) {
        reply_error(req, 400, "'dir' must be an absolute path");
        goto out;
    }
    j = new_job(req);
    if (j) {
        snprintf(j->dir, sizeof(j->dir), "%s", dir);
        snprintf(j->srepo, sizeof(j->srepo), "%s", srepo);
        log_msg(CFG_LOG_INFO, "import of %s as %s", dir, srepo);
        queue_job(e, req, import_run, j);
    }
out:
    json_decref(doc);
}

/* --- /v1/rm and /v1/gc ------------------------------------------------------------------------------ */

struct rm_ctx {
    const char *srepo;
    const char *commit;                 /* NULL: all of the repo */
    char (*found)[SNAPSHOT_COMMIT_LEN + 1];
    size_t n, cap;
};

static int rm_collect(void *arg, const struct snapshot *snap, bool pinned)
{
    struct rm_ctx *c = arg;

    (void)pinned;
    if (strcmp(snap->repo, c->srepo) != 0 || (c->commit && strcmp(snap->commit, c->commit)))
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        void *nf = realloc(c->found, cap * sizeof(*c->found));
        if (!nf)
            return -ENOMEM;
        c->found = nf;
        c->cap = cap;
    }
    memcpy(c->found[c->n++], snap->commit, SNAPSHOT_COMMIT_LEN + 1);
    return 0;
}

static void rm_run(void *arg)
{
    struct req_job *j = arg;
    struct store *s = j->env->store;
    char commit[SNAPSHOT_COMMIT_LEN + 1];
    struct rm_ctx c = {.srepo = j->srepo};
    uint64_t removed = 0;

    if (j->rev[0]) {
        if (snapshot_commit_ok(j->rev))
            c.commit = j->rev;
        else if (store_get_ref(s, j->srepo, j->rev, commit) == 0)
            c.commit = commit;
        else
            c.commit = "-"; /* matches nothing */
    }
    j->err = store_list_snapshots(s, rm_collect, &c);
    for (size_t i = 0; j->err == 0 && i < c.n; i++)
        j->err = store_remove_snapshot(s, j->srepo, c.found[i]);
    if (j->err == 0 && c.n == 0) {
        j->err = -ENOENT;
        snprintf(j->why, sizeof(j->why), "the store holds no snapshot of %s%s%s",
                 strchr(j->srepo, '/') + 1, j->rev[0] ? "@" : "", j->rev);
    }
    if (j->err == 0)
        j->err = store_gc(s, &removed);
    if (j->err == 0)
        j->doc = json_pack("{s:I, s:I}", "removed_snapshots", (json_int_t)c.n, "removed_files",
                           (json_int_t)removed);
    free(c.found);
}

static const char *const rm_fields[] = {"repo", "repo_type", "revision", NULL};

static void rm_post(struct api_env *e, struct http_req *req)
{
    const char *repo, *type, *rev;
    struct req_job *j;
    json_t *doc = body_object(req, rm_fields);
    char srepo[SNAPSHOT_REPO_MAX + 1];

    if (!doc)
        return;
    if (str_field(req, doc, "repo", &repo) < 0 || str_field(req, doc, "repo_type", &type) < 0 ||
        str_field(req, doc, "revision", &rev) < 0 ||
        store_repo(req, repo, type ? type : "model", srepo, sizeof(srepo)) < 0)
        goto out;
    if (rev && !snapshot_rev_ok(rev)) {
        reply_error(req, 400, "'%s' is not a revision", rev);
        goto out;
    }
    j = new_job(req);
    if (j) {
        snprintf(j->srepo, sizeof(j->srepo), "%s", srepo);
        snprintf(j->rev, sizeof(j->rev), "%s", rev ? rev : "");
        queue_job(e, req, rm_run, j);
    }
out:
    json_decref(doc);
}

static void gc_run(void *arg)
{
    struct req_job *j = arg;
    uint64_t removed = 0;

    j->err = store_gc(j->env->store, &removed);
    if (j->err == 0)
        j->doc = json_pack("{s:I}", "removed_files", (json_int_t)removed);
}

/* --- /v1/check ------------------------------------------------------------------------------------------ */

static void check_run(void *arg)
{
    struct req_job *j = arg;
    struct store_fsck fx = {0};
    int r = store_check(j->env->store, j->repair, &fx);

    /* Damage found is an answer, not a failure of the request. */
    if (r < 0 && r != SHOAL_EHASH) {
        j->err = r;
        return;
    }
    j->doc = json_pack("{s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "consistent",
                       r == 0, "repaired", j->repair && r == 0,
                       "files_checked", (json_int_t)fx.files_checked,
                       "chunks_checked", (json_int_t)fx.chunks_checked,
                       "missing_chunks", (json_int_t)fx.missing_chunks,
                       "bad_chunks", (json_int_t)fx.bad_chunks,
                       "bad_pieces", (json_int_t)fx.bad_pieces,
                       "bad_refcounts", (json_int_t)fx.bad_refcounts,
                       "orphan_chunks", (json_int_t)fx.orphan_chunks,
                       "broken_files", (json_int_t)fx.broken_files,
                       "bad_totals", (json_int_t)fx.bad_totals);
}

static const char *const check_fields[] = {"repair", NULL};

static void check_post(struct api_env *e, struct http_req *req)
{
    json_t *doc = body_object(req, check_fields), *v;
    struct req_job *j;

    if (!doc)
        return;
    v = json_object_get(doc, "repair");
    if (v && !json_is_boolean(v)) {
        reply_error(req, 400, "'repair' must be true or false");
    } else if ((j = new_job(req))) {
        j->repair = json_is_true(v);
        queue_job(e, req, check_run, j);
    }
    json_decref(doc);
}

/* --- /metrics ------------------------------------------------------------------------------------------ */

struct text {
    char *buf;
    size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!t->buf)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        char *nb = realloc(t->buf, 2 * t->cap + (size_t)n);
        if (!nb) {
            free(t->buf);
            t->buf = NULL;
            return;
        }
        t->buf = nb;
        t->cap = 2 * t->cap + (size_t)n;
    }
}

static void metric(struct text *t, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

/* A label value: the characters Prometheus needs escaped, escaped. */
static void put_label(struct text *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            put(t, "\\%c", *v);
        else if (*v == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *v);
    }
}

/* Per peer: each open connection's bytes and rates, and the faults of the most recent
 * hosts that had one (kept after their connections closed). */
static void peer_metrics(struct text *t, struct peer_mgr *peers)
{
    static const struct {
        const char *name, *key, *type, *help;
    } conn_m[] = {
        {"shoal_peer_connection_bytes_in", "bytes_in", "counter", "Bytes read on this connection."},
        {"shoal_peer_connection_bytes_out", "bytes_out", "counter", "Bytes sent on this connection."},
        {"shoal_peer_connection_rate_in", "rate_in", "gauge", "Bytes per second read, smoothed."},
        {"shoal_peer_connection_rate_out", "rate_out", "gauge", "Bytes per second sent, smoothed."},
    };
    json_t *doc = peer_list_json(peers), *c;
    struct peer_host_faults *hf = malloc(PEER_HOSTS_MAX * sizeof(*hf));
    size_t i, k, n;

    for (k = 0; k < sizeof(conn_m) / sizeof(conn_m[0]); k++) {
        put(t, "# HELP %s %s\n# TYPE %s %s\n", conn_m[k].name, conn_m[k].help, conn_m[k].name,
            conn_m[k].type);
        json_array_foreach(json_object_get(doc, "peers"), i, c) {
            put(t, "%s{addr=\"", conn_m[k].name);
            put_label(t, json_string_value(json_object_get(c, "addr")) ?: "");
            put(t, "\",node=\"");
            put_label(t, json_string_value(json_object_get(c, "node_id")) ?: "");
            put(t, "\",direction=\"%s\"} %" JSON_INTEGER_FORMAT "\n",
                json_string_value(json_object_get(c, "direction")) ?: "",
                json_integer_value(json_object_get(c, conn_m[k].key)));
        }
    }
    json_decref(doc);
    put(t, "# HELP shoal_peer_host_faults_total Faults by peer host (the %d most recent hosts "
           "with one) and kind.\n# TYPE shoal_peer_host_faults_total counter\n",
        PEER_HOSTS_MAX);
    n = hf ? peer_host_faults(peers, hf, PEER_HOSTS_MAX) : 0;
    for (i = 0; i < n; i++) {
        for (k = 0; k < PEER_F_COUNT; k++) {
            put(t, "shoal_peer_host_faults_total{host=\"");
            put_label(t, hf[i].host);
            put(t, "\",kind=\"%s\"} %" PRIu64 "\n", peer_fault_names[k], hf[i].n[k]);
        }
    }
    free(hf);
}

static void metrics_finish(struct req_job *j)
{
    struct api_env *e = j->env;
    struct text t = {.buf = malloc(4096), .cap = 4096};
    struct hub_stats hs;
    struct pull_stats ps;
    struct http_stats h, sum = {0};

    hub_get_stats(e->hub, &hs);
    pull_get_stats(e->pulls, &ps);
    for (unsigned i = 0; i < e->n_http; i++) {
        http_server_stats(e->http[i], &h);
        sum.requests += h.requests;
        sum.bad_requests += h.bad_requests;
        sum.open += h.open;
    }
    metric(&t, "shoal_hub_bytes_total", "counter", "Body bytes received from the Hub.",
           hs.bytes);
    metric(&t, "shoal_hub_requests_total", "counter", "HTTP requests sent to the Hub.",
           hs.requests);
    metric(&t, "shoal_hub_retries_total", "counter", "Hub requests retried.", hs.retries);
    metric(&t, "shoal_hub_errors_total", "counter", "Hub requests that failed for good.",
           hs.errors);
    metric(&t, "shoal_hub_stalls_total", "counter", "Hub transfers aborted for stalling.",
           hs.stalls);
    metric(&t, "shoal_hub_in_flight", "gauge", "Hub requests in flight.", hs.in_flight);
    metric(&t, "shoal_http_requests_total", "counter", "Requests to this node's HTTP servers.",
           sum.requests);
    metric(&t, "shoal_http_bad_requests_total", "counter", "Malformed or oversized requests.",
           sum.bad_requests);
    metric(&t, "shoal_http_connections", "gauge", "Open HTTP connections.", sum.open);
    if (j->err == 0) {
        metric(&t, "shoal_store_files", "gauge", "Files with at least one piece stored.",
               j->st.files);
        metric(&t, "shoal_store_complete_files", "gauge", "Complete, verified files.",
               j->st.complete_files);
        metric(&t, "shoal_store_chunks", "gauge", "Distinct chunks stored.",
               j->st.chunks);
        metric(&t, "shoal_store_logical_bytes", "gauge", "Bytes of all stored pieces.",
               j->st.logical_bytes);
        metric(&t, "shoal_store_physical_bytes", "gauge", "Bytes of distinct chunks.",
               j->st.physical_bytes);
    }
    if (e->peers) {
        struct peer_stats pst;

        peer_get_stats(e->peers, &pst);
        metric(&t, "shoal_peer_connections", "gauge", "Peer connections open.", pst.open);
        metric(&t, "shoal_peer_accepted_total", "counter", "Peer connections accepted.",
               pst.accepted);
        metric(&t, "shoal_peer_connected_total", "counter", "Peer connections made.",
               pst.connected);
        metric(&t, "shoal_peer_handshakes_failed_total", "counter",
               "Handshakes that failed (another cluster key, garbage, timeouts).",
               pst.handshakes_failed);
        metric(&t, "shoal_peer_protocol_errors_total", "counter",
               "Connections closed for a bad frame, record or message.", pst.protocol_errors);
        metric(&t, "shoal_peer_timeouts_total", "counter",
               "Connections closed for silence or for not reading.", pst.timeouts);
        metric(&t, "shoal_peer_refused_total", "counter", "Connections over the limit.",
               pst.refused);
        metric(&t, "shoal_peer_bad_data_total", "counter",
               "Chunks from peers that did not match their hash.", pst.bad_data);
        metric(&t, "shoal_peer_bytes_in_total", "counter", "Bytes read from peers.",
               pst.bytes_in);
        metric(&t, "shoal_peer_bytes_out_total", "counter", "Bytes sent to peers.",
               pst.bytes_out);
        metric(&t, "shoal_peer_chunk_bytes_served_total", "counter",
               "Chunk bytes served to peers.", pst.chunk_bytes_served);
        metric(&t, "shoal_peer_chunk_bytes_fetched_total", "counter",
               "Chunk bytes fetched from peers.", pst.chunk_bytes_fetched);
        peer_metrics(&t, e->peers);
    }
    metric(&t, "shoal_pulls_active", "gauge", "Pulls running.", ps.active);
    put(&t, "# HELP shoal_pulls_total Pulls since the node started, by outcome.\n"
            "# TYPE shoal_pulls_total counter\n"
            "shoal_pulls_total{state=\"done\"} %u\nshoal_pulls_total{state=\"failed\"} %u\n",
        ps.done, ps.failed);
    metric(&t, "shoal_pull_bytes_done", "gauge", "Bytes of running pulls in the store.",
           ps.bytes_done);
    metric(&t, "shoal_pull_bytes_total", "gauge", "Bytes running pulls want.", ps.bytes_total);
    metric(&t, "shoal_pull_bytes_fetched_total", "counter", "Bytes pulls received.",
           ps.bytes_fetched);
    if (!t.buf)
        http_respond(j->req, 500, "text/plain", "out of memory\n", 14);
    else
        http_respond(j->req, 200, "text/plain; version=0.0.4", t.buf, t.len);
    free(t.buf);
}

/* --- routing ------------------------------------------------------------------------------------------------ */

static void run_job(struct api_env *e, struct http_req *req, work_run_fn run,
                    void (*finish)(struct req_job *j))
{
    struct req_job *j = new_job(req);

    if (j) {
        j->finish = finish;
        queue_job(e, req, run, j);
    }
}

static void files_get(struct api_env *e, struct http_req *req)
{
    run_job(e, req, files_run, NULL);
}

static void gc_post(struct api_env *e, struct http_req *req)
{
    run_job(e, req, gc_run, NULL);
}

static void status_get(struct api_env *e, struct http_req *req)
{
    run_job(e, req, stats_run, status_finish);
}

static void metrics_get(struct api_env *e, struct http_req *req)
{
    run_job(e, req, stats_run, metrics_finish);
}

static void pulls_list(struct api_env *e, struct http_req *req)
{
    reply_json(req, 200, pull_list_json(e->pulls));
}

/* This node first, marked self (design.md: `shoal peers` lists this node too). */
static void peers_list(struct api_env *e, struct http_req *req)
{
    json_t *doc = e->peers ? peer_list_json(e->peers) : json_pack("{s:[]}", "peers");
    char addr[300];
    int port = e->peers ? peer_listen_port(e->peers) : -1;

    snprintf(addr, sizeof(addr), "%s:%d", e->listen_host ? e->listen_host : "?", port);
    json_array_insert_new(json_object_get(doc, "peers"), 0,
                          json_pack("{s:s, s:s, s:b}", "addr", addr, "node_id", e->node_id,
                                    "self", 1));
    reply_json(req, 200, doc);
}

static const struct route {
    const char *path;
    bool post;                /* else GET (and HEAD) */
    void (*fn)(struct api_env *e, struct http_req *req);
} routes[] = {
    {"/metrics", false, metrics_get}, {"/v1/status", false, status_get},
    {"/v1/pulls", true, pull_post},   {"/v1/pulls", false, pulls_list},
    {"/v1/files", false, files_get},  {"/v1/imports", true, import_post},
    {"/v1/rm", true, rm_post},        {"/v1/gc", true, gc_post},
    {"/v1/peers", false, peers_list}, {"/v1/check", true, check_post},
};

void api_handle(void *arg, struct http_req *req)
{
    struct api_env *e = arg;
    const char *m = http_req_method(req), *path = http_req_path(req);
    bool post = strcmp(m, "POST") == 0;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    bool known = false;
    size_t i;

    for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(path, routes[i].path) != 0)
            continue;
        known = true;
        if (routes[i].post ? post : get) {
            routes[i].fn(e, req);
            return;
        }
    }
    if (strncmp(path, "/v1/pulls/", 10) == 0 && get)
        pull_get(e, req, path + 10);
    else if (known)
        reply_error(req, 405, "%s %s: method not allowed (see docs/control-api.md)", m, path);
    else
        reply_error(req, 404, "%s: no such route (see docs/control-api.md)", path);
}

void api_handle_public(void *arg, struct http_req *req)
{
    const char *m = http_req_method(req), *path = http_req_path(req);

    if (strcmp(path, "/metrics") != 0)
        reply_error(req, 404, "%s: not found (the control API is on the node's unix socket)",
                    path);
    else if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0)
        reply_error(req, 405, "%s %s: method not allowed", m, path);
    else
        metrics_get(arg, req);
}
