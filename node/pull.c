/* pull.c - pulls from the Hub: resolve, list, fetch pieces, verify, store, export.
 *
 * The life of a pull (pull.h has the contract):
 *
 *   resolve   GET /api/<type>s/<repo>/revision/<rev>       -> commit
 *   list      GET /api/<type>s/<repo>/tree/<commit>?recursive=true, page by page
 *   survey    (pool) what the store already holds of each selected file
 *   fetch     pieces in file order, at most max_buffers at once over all pulls;
 *             each fetched piece goes to a put job (chunk, hash, store) and, in
 *             order, to its file's sha256 job
 *   finish    (pool) sha256 matches: complete the file; all complete: snapshot, ref,
 *             export
 *
 * Everything here runs on the loop thread except the job `run` functions, which only
 * touch the job's own fields and the store.
 */
#include "pull.h"

#include "cfg.h"
#include "chash.h"
#include "err.h"
#include "export.h"
#include "hasher.h"
#include "log.h"
#include "manifest.h"
#include "proto_limits.h"
#include "sha256.h"
#include "snapshot.h"
#include "wire.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum pull_state { P_RESOLVING, P_LISTING, P_SURVEY, P_FETCHING, P_EXPORTING, P_DONE, P_FAILED };
static const char *const pull_state_name[] = {
    [P_RESOLVING] = "resolving", [P_LISTING] = "resolving", [P_SURVEY] = "fetching",
    [P_FETCHING] = "fetching",   [P_EXPORTING] = "exporting", [P_DONE] = "done",
    [P_FAILED] = "failed",
};

enum file_state { F_QUEUED, F_FETCHING, F_VERIFYING, F_STORED, F_FAILED };
static const char *const file_state_name[] = {
    [F_QUEUED] = "queued", [F_FETCHING] = "fetching", [F_VERIFYING] = "verifying",
    [F_STORED] = "stored", [F_FAILED] = "failed",
};

struct pfile;

struct piece {
    struct pfile *f;
    uint32_t index;
    uint32_t len;
    uint8_t *buf;          /* while fetched and not yet stored and hashed */
    uint32_t got;
    struct hub_req *req;
    bool started;          /* fetch started (or not needed) in this attempt */
    bool stored;
    bool putting;
    bool hashed;           /* fed to the file's sha256 */
    bool peer_busy;        /* a peer fetch writes into buf */
    bool have_want;        /* from a peer: the piece hash its manifest gave */
    uint8_t want[CHASH_LEN];
};

struct pfile {
    struct pull *p;
    char *path;
    uint64_t size;
    bool lfs;
    bool id_known;
    uint8_t id[STORE_ID_LEN];
    uint8_t oid[GIT_OID_LEN];  /* git blob id (non-LFS files) */
    char etag[SNAPSHOT_ETAG_MAX + 1];
    uint32_t n_pieces;
    struct piece *pieces;
    uint32_t next_start;   /* pieces start in order: all before this one have started */
    uint32_t n_stored;     /* pieces stored (with sha_next, says when the file is in) */
    uint32_t sha_next;
    bool sha_busy;
    bool finishing;
    struct sha256 sha;
    bool sha_open;
    uint64_t bytes_done;
    unsigned attempts;
    bool held;
    bool found;            /* the survey found it complete in the store */
    /* The blob streamed into the cache as the sha256 advances (cache exports only);
     * touched by this file's sha and finish jobs, one at a time, and by the loop only
     * when none is out. */
    struct export_stream *xs;
    bool stream_done;      /* opened once (or found unneeded, or failed) */
    enum file_state state;
};

struct pull {
    struct pull_mgr *m;
    struct pull *next;
    uint32_t id;
    char repo[SNAPSHOT_REPO_MAX + 1];        /* as the user named it: org/name */
    char type[16];
    char srepo[SNAPSHOT_REPO_MAX + 1];       /* type/org/name, the store's name */
    char rev[SNAPSHOT_REV_MAX + 1];
    char commit[SNAPSHOT_COMMIT_LEN + 1];
    char **include, **exclude;
    unsigned n_include, n_exclude;
    char *cache_dir, *local_dir;
    enum pull_state state;
    char error[512];
    struct pfile *files;
    uint32_t n_files, cap_files, pages;
    uint32_t files_done;
    uint32_t sched;          /* first file that may still have pieces to start */
    uint64_t bytes_total, bytes_done, bytes_fetched;
    uint64_t t_start, t_end;
    struct hub_req *api;
    unsigned jobs;           /* pool jobs in flight for this pull */
    unsigned fetching;       /* range requests in flight */
    struct export_stats xs;
    char export_dir[4200];
    /* Resolved from the store instead of the Hub: every selected file must be there.
     * hub_why says why the Hub was not used ("" when it was not asked). */
    bool local;
    char hub_why[600];
    char peer[PEER_ADDR_MAX];  /* --from-peer: everything from this node, nothing from the Hub */
};

struct pull_mgr {
    struct pull_env env;
    struct pull *pulls;      /* newest first */
    uint32_t next_id;
    unsigned buffers;        /* in use */
    void **pool;             /* free piece buffers, at most max_buffers */
    unsigned pooled;
    uint64_t bytes_fetched;
    bool closing;
    void (*closed)(void *arg);
    void *closed_arg;
};

static void fail(struct pull *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void schedule(struct pull_mgr *m);
static void sha_advance(struct pfile *f);
static void maybe_finish_file(struct pfile *f);
static void maybe_closed(struct pull_mgr *m);
static bool selected(const struct pull *p, const char *path);

/* --- small helpers ------------------------------------------------------------- */

static const char *url_prefix(const char *type)
{
    if (strcmp(type, "dataset") == 0)
        return "datasets/";
    if (strcmp(type, "space") == 0)
        return "spaces/";
    return "";
}

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool active(const struct pull *p)
{
    return p->state != P_DONE && p->state != P_FAILED;
}

/* Piece buffers are mapped once and reused: a fresh 16 MiB buffer per piece would cost
 * page faults, and glibc's malloc keeps freed blocks of that size in its heap after
 * raising its mmap threshold, which grows the RSS far beyond the buffers in use. */
static uint8_t *get_buf(struct pull_mgr *m)
{
    void *b;

    if (m->pooled > 0)
        b = m->pool[--m->pooled];
    else if ((b = mmap(NULL, PROTO_PIECE_LEN, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED)
        return NULL;
    m->buffers++;
    return b;
}

static void release_buf(struct pull_mgr *m, struct piece *pc)
{
    if (!pc->buf)
        return;
    if (m->pooled < m->env.max_buffers)
        m->pool[m->pooled++] = pc->buf;
    else
        munmap(pc->buf, PROTO_PIECE_LEN);
    pc->buf = NULL;
    m->buffers--;
}

static void fail(struct pull *p, const char *fmt, ...)
{
    struct pull_mgr *m = p->m;
    va_list ap;
    uint32_t i, k;

    if (!active(p))
        return;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
    p->state = P_FAILED;
    p->t_end = uv_now(m->env.loop);
    log_msg(CFG_LOG_WARN, "pull %" PRIu32 " of %s@%s failed: %s", p->id, p->repo, p->rev,
            p->error);
    if (p->api) {
        hub_cancel(p->api);
        p->api = NULL;
    }
    for (i = 0; i < p->n_files; i++) {
        struct pfile *f = &p->files[i];
        for (k = 0; k < f->n_pieces; k++) {
            struct piece *pc = &f->pieces[k];
            if (pc->req) {
                hub_cancel(pc->req);
                pc->req = NULL;
                p->fetching--;
            }
            if (!pc->putting && !pc->peer_busy && !(f->sha_busy && f->sha_next == k))
                release_buf(m, pc);
        }
        if (f->state != F_STORED)
            f->state = F_FAILED;
        if (!f->sha_busy && !f->finishing) {
            export_stream_abort(f->xs);
            f->xs = NULL;
        }
    }
    schedule(m);
}

static const char *store_err_text(int err)
{
    if (err == -ENOSPC)
        return "no room in the store (quota or the disk's free-space reserve; see shoal gc "
               "and --quota)";
    return shoal_strerror(err);
}

/* --- jobs on the pool ---------------------------------------------------------- */

/* Every job of a pull counts in p->jobs, so that the pull is freed (when the node
 * stops) only once its jobs are back: the done callback runs first, then the count
 * drops, and that may free the pull. */
struct pull_job {
    struct pull *p;
    work_run_fn run;
    work_done_fn done;
    void *arg;
};

static void pull_job_run(void *arg)
{
    struct pull_job *j = arg;

    j->run(j->arg);
}

static void pull_job_done(void *arg)
{
    struct pull_job *j = arg;
    struct pull *p = j->p;

    j->done(j->arg);
    free(j);
    p->jobs--;
    maybe_closed(p->m);
}

static int pull_queue(struct pull *p, work_run_fn run, work_done_fn done, void *arg)
{
    struct pull_job *j = malloc(sizeof(*j));
    int err;

    if (!j)
        return -ENOMEM;
    *j = (struct pull_job){.p = p, .run = run, .done = done, .arg = arg};
    err = work_queue(p->m->env.work, pull_job_run, pull_job_done, j);
    if (err < 0) {
        free(j);
        return err;
    }
    p->jobs++;
    return 0;
}

/* --- survey: what the store holds already ----------------------------------------- */

struct survey {
    struct pull *p;
    struct snapshot old;
    bool have_old;
    int err;
};

static void survey_file(struct store *s, struct survey *sv, struct pfile *f)
{
    const struct snapshot_file *of;
    struct store_file info;
    uint32_t k;

    if (!f->lfs && sv->have_old) {
        of = snapshot_find(&sv->old, f->path);
        if (of && strcmp(of->etag, f->etag) == 0 && of->size == f->size) {
            memcpy(f->id, of->sha256, STORE_ID_LEN);
            f->id_known = true;
        }
    }
    if (!f->lfs && f->size == 0 && !f->id_known) {
        sha256_digest("", 0, f->id);
        f->id_known = true;
    }
    if (!f->id_known)
        return;
    f->held = store_hold(s, f->id) == 0;
    if (!f->lfs && f->size == 0)
        (void)store_complete_file(s, f->id, 0); /* nothing to fetch */
    if (store_file_info(s, f->id, &info) == 0 && info.complete && info.size == f->size) {
        for (k = 0; k < f->n_pieces; k++)
            f->pieces[k].stored = f->pieces[k].hashed = true;
        f->sha_next = f->n_pieces;
        f->found = true;
        return;
    }
    if (!f->lfs)
        return; /* fetched whole anyway */
    for (k = 0; k < f->n_pieces; k++)
        f->pieces[k].stored = store_has_piece(s, f->id, k) == 1;
}

static void survey_run(void *arg)
{
    struct survey *sv = arg;
    struct pull *p = sv->p;
    struct store *s = p->m->env.store;
    uint32_t i;

    sv->have_old = store_get_snapshot(s, p->srepo, p->commit, &sv->old) == 0;
    for (i = 0; i < p->n_files; i++)
        survey_file(s, sv, &p->files[i]);
    if (sv->have_old)
        snapshot_release(&sv->old);
}

static void survey_done(void *arg)
{
    struct survey *sv = arg;
    struct pull *p = sv->p;
    uint32_t i, k;

    free(sv);
    if (!active(p))
        return;
    for (i = 0; i < p->n_files; i++) {
        struct pfile *f = &p->files[i];
        for (k = 0; k < f->n_pieces; k++) {
            if (f->pieces[k].stored) {
                f->pieces[k].started = true;
                f->n_stored++;
                f->bytes_done += f->pieces[k].len;
            }
        }
        p->bytes_done += f->bytes_done;
        if (f->found) {
            f->state = F_STORED;
            p->files_done++;
        }
    }
    if (p->local && p->files_done < p->n_files) {
        fail(p, "%s%sthe store holds only %" PRIu32 " of the %" PRIu32 " files of %s@%s",
             p->hub_why, p->hub_why[0] ? "; " : "", p->files_done, p->n_files, p->repo,
             p->rev);
        return;
    }
    p->state = P_FETCHING;
    for (i = 0; i < p->n_files; i++) {
        sha_advance(&p->files[i]);
        maybe_finish_file(&p->files[i]);
    }
    schedule(p->m);
}

static void start_survey(struct pull *p)
{
    struct survey *sv = calloc(1, sizeof(*sv));

    p->state = P_SURVEY;
    if (sv)
        sv->p = p;
    if (!sv || pull_queue(p, survey_run, survey_done, sv) < 0) {
        free(sv);
        fail(p, "out of memory");
    }
}

/* --- the sha256 of each file, fed in order ------------------------------------------ */

struct sha_job {
    struct pfile *f;
    struct piece *pc;
    const uint8_t *buf;   /* NULL: read the piece from the store */
    struct sha256 *sha;
    uint8_t id[STORE_ID_LEN];
    const char *cache_dir; /* stream the blob there; NULL: no streaming */
    const char *srepo;
    int err;
};

/* The blob's temporary file, opened with the first piece. A failure here only ends
 * the streaming: the export after the pull writes the blob the ordinary way and
 * reports any error then. */
static void stream_open(struct sha_job *j)
{
    struct pfile *f = j->f;
    struct snapshot_file sf = {.path = f->path, .size = f->size};
    char why[600];

    f->stream_done = true;
    memcpy(sf.sha256, f->id, STORE_ID_LEN);
    snprintf(sf.etag, sizeof(sf.etag), "%s", f->etag);
    if (export_stream_open(j->cache_dir, j->srepo, &sf, &f->xs, why, sizeof(why)) < 0)
        log_msg(CFG_LOG_DEBUG, "%s: not streamed into the cache: %s", f->path, why);
}

static void stream_write(struct pfile *f, const uint8_t *data, size_t len)
{
    if (f->xs && export_stream_write(f->xs, data, len) < 0) {
        export_stream_abort(f->xs);
        f->xs = NULL;
    }
}

static int sha_feed(void *arg, const uint8_t *data, size_t len)
{
    struct sha_job *j = arg;

    sha256_update(j->sha, data, len);
    stream_write(j->f, data, len);
    return 0;
}

static void sha_run(void *arg)
{
    struct sha_job *j = arg;

    if (j->cache_dir && !j->f->stream_done && j->pc->index == 0)
        stream_open(j);
    if (j->buf)
        sha_feed(j, j->buf, j->pc->len);
    else
        j->err = store_read_piece(j->f->p->m->env.store, j->id, j->pc->index, sha_feed, j);
}

static void sha_done(void *arg)
{
    struct sha_job *j = arg;
    struct pfile *f = j->f;
    struct piece *pc = j->pc;
    struct pull *p = f->p;
    int err = j->err;

    free(j);
    f->sha_busy = false;
    if (!active(p)) {
        if (!pc->putting)
            release_buf(p->m, pc);
        export_stream_abort(f->xs);
        f->xs = NULL;
        return;
    }
    if (err < 0) {
        fail(p, "%s: reading piece %" PRIu32 " back from the store: %s", f->path, pc->index,
             store_err_text(err));
        return;
    }
    pc->hashed = true;
    f->sha_next++;
    if (!pc->putting && pc->stored)
        release_buf(p->m, pc);
    sha_advance(f);
    maybe_finish_file(f);
    schedule(p->m);
}

/* Feeds the next piece to the file's sha256 when its bytes are at hand. */
static void sha_advance(struct pfile *f)
{
    struct pull *p = f->p;
    struct sha_job *j;
    struct piece *pc;

    if (!f->lfs || f->sha_busy || f->sha_next >= f->n_pieces || !active(p))
        return;
    pc = &f->pieces[f->sha_next];
    if (!(pc->buf && pc->got == pc->len && !pc->req) && !(pc->stored && !pc->buf))
        return;
    if (!f->sha_open) {
        if (sha256_init(&f->sha) < 0) {
            fail(p, "out of memory");
            return;
        }
        f->sha_open = true;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        fail(p, "out of memory");
        return;
    }
    *j = (struct sha_job){.f = f, .pc = pc, .buf = pc->buf, .sha = &f->sha,
                          .cache_dir = p->cache_dir, .srepo = p->srepo};
    memcpy(j->id, f->id, STORE_ID_LEN);
    if (pull_queue(p, sha_run, sha_done, j) < 0) {
        free(j);
        fail(p, "node stopping");
        return;
    }
    f->sha_busy = true;
}

/* --- storing a fetched piece ----------------------------------------------------------- */

struct put_job {
    struct piece *pc;
    uint8_t id[STORE_ID_LEN];
    const uint8_t *buf;
    const uint8_t *want;   /* the piece hash a peer's manifest gave; NULL: none */
    bool small;            /* a whole non-LFS file: check, name, store, complete */
    uint8_t oid[GIT_OID_LEN];
    uint64_t size;
    int err;
    bool bad_oid;
};

static int put_chunks(struct store *s, const uint8_t id[STORE_ID_LEN], uint32_t index,
                      const uint8_t *buf, uint32_t len, const uint8_t *want)
{
    struct hasher_piece *hp;
    struct store_chunk *c;
    uint64_t off = 0;
    uint32_t k;
    int r;

    if (len == 0)
        return 0;
    hp = malloc(sizeof(*hp));
    c = malloc(PROTO_CHUNKS_PER_PIECE * sizeof(*c));
    if (!hp || !c) {
        free(hp);
        free(c);
        return -ENOMEM;
    }
    hp->index = index;
    hp->offset = (uint64_t)index * PROTO_PIECE_LEN;
    hasher_piece_compute(hp, buf, len);
    if (want && memcmp(hp->hash, want, CHASH_LEN) != 0) {
        free(c);
        free(hp);
        return SHOAL_EHASH; /* a peer's bytes do not make the piece its manifest names */
    }
    for (k = 0; k < hp->n_chunks; k++) {
        memcpy(c[k].hash, hp->chunks[k].hash, CHASH_LEN);
        c[k].len = (uint32_t)hp->chunks[k].len;
        c[k].data = buf + off;
        off += c[k].len;
    }
    r = store_put_piece(s, id, index, hp->hash, c, hp->n_chunks);
    free(c);
    free(hp);
    return r;
}

static void put_run(void *arg)
{
    struct put_job *j = arg;
    struct store *s = j->pc->f->p->m->env.store;
    uint8_t oid[GIT_OID_LEN];

    if (j->small) {
        j->err = git_blob_oid(j->buf, j->size, oid);
        if (j->err == 0 && memcmp(oid, j->oid, GIT_OID_LEN) != 0) {
            j->bad_oid = true;
            return;
        }
        if (j->err == 0)
            j->err = sha256_digest(j->buf, j->size, j->id);
        if (j->err == 0)
            j->err = store_hold(s, j->id);
    }
    if (j->err == 0)
        j->err = put_chunks(s, j->id, j->pc->index, j->buf, j->pc->len, j->want);
    if (j->err == 0 && j->small)
        j->err = store_complete_file(s, j->id, j->size);
}

static void refetch_file(struct pfile *f, const char *why);

static void put_done(void *arg)
{
    struct put_job *j = arg;
    struct piece *pc = j->pc;
    struct pfile *f = pc->f;
    struct pull *p = f->p;
    int err = j->err;
    bool bad = j->bad_oid;

    if (j->small && !bad && err == 0) {
        memcpy(f->id, j->id, STORE_ID_LEN);
        f->id_known = f->held = true;
    }
    free(j);
    pc->putting = false;
    if (!active(p)) {
        if (!(f->sha_busy && f->sha_next == pc->index))
            release_buf(p->m, pc);
        return;
    }
    if (bad) {
        release_buf(p->m, pc);
        refetch_file(f, "content does not match its git blob id");
        schedule(p->m);
        return;
    }
    if (err == SHOAL_EHASH && p->peer[0]) {
        peer_blame(p->m->env.peers, p->peer, "a piece that does not match its hash");
        if (!(f->sha_busy && f->sha_next == pc->index))
            release_buf(p->m, pc); /* else the sha job still reads it: sha_done frees it */
        fail(p, "%s: peer %s served bytes that do not match their hashes", f->path, p->peer);
        return;
    }
    if (err < 0) {
        fail(p, "%s: storing piece %" PRIu32 ": %s", f->path, pc->index, store_err_text(err));
        return;
    }
    pc->stored = true;
    f->n_stored++;
    f->bytes_done += pc->len;
    p->bytes_done += pc->len;
    if (!f->lfs) {
        pc->hashed = true;
        f->sha_next = 1;
        release_buf(p->m, pc);
        f->state = F_STORED;
        p->files_done++;
        maybe_finish_file(f);
    } else {
        if (pc->hashed)
            release_buf(p->m, pc);
        sha_advance(f);
        maybe_finish_file(f);
    }
    schedule(p->m);
}

static void start_put(struct piece *pc)
{
    struct pfile *f = pc->f;
    struct pull *p = f->p;
    struct put_job *j = calloc(1, sizeof(*j));

    if (!j) {
        fail(p, "out of memory");
        return;
    }
    *j = (struct put_job){.pc = pc, .buf = pc->buf, .small = !f->lfs, .size = f->size,
                          .want = pc->have_want ? pc->want : NULL};
    memcpy(j->id, f->id, STORE_ID_LEN);
    memcpy(j->oid, f->oid, GIT_OID_LEN);
    if (pull_queue(p, put_run, put_done, j) < 0) {
        free(j);
        fail(p, "node stopping");
        return;
    }
    pc->putting = true;
    if (f->state == F_FETCHING && !f->lfs)
        f->state = F_VERIFYING;
}

/* --- fetching pieces --------------------------------------------------------------------- */

static int on_piece_data(void *arg, uint64_t off, const uint8_t *data, size_t len)
{
    struct piece *pc = arg;
    struct pull *p = pc->f->p;
    uint64_t base = (uint64_t)pc->index * PROTO_PIECE_LEN;

    if (off < base || off - base != pc->got || len > pc->len - pc->got)
        return -EPROTO;
    memcpy(pc->buf + pc->got, data, len);
    pc->got += (uint32_t)len;
    p->bytes_fetched += len;
    p->m->bytes_fetched += len;
    return 0;
}

static void on_piece_done(void *arg, int err, const struct hub_result *res)
{
    struct piece *pc = arg;
    struct pfile *f = pc->f;
    struct pull *p = f->p;
    char msg[600];

    pc->req = NULL;
    p->fetching--;
    if (err < 0 || pc->got != pc->len) {
        release_buf(p->m, pc);
        hub_describe_error(err < 0 ? err : -EPROTO, res, f->path, msg, sizeof(msg));
        fail(p, "%s", msg);
        return;
    }
    start_put(pc);
    sha_advance(f);
}

static int peer_fetch(struct piece *pc);

static int start_fetch(struct piece *pc)
{
    struct pfile *f = pc->f;
    struct pull *p = f->p;
    char path[3 * STORE_PATH_MAX + 1], url[HUB_URL_MAX];
    int n, err;

    if (p->peer[0])
        return peer_fetch(pc);
    if (hub_escape(f->path, true, path, sizeof(path)) < 0)
        return -ENAMETOOLONG;
    n = snprintf(url, sizeof(url), "/%s%s/resolve/%s/%s", url_prefix(p->type), p->repo,
                 p->commit, path);
    if (n < 0 || (size_t)n >= sizeof(url))
        return -ENAMETOOLONG;
    pc->buf = get_buf(p->m);
    if (!pc->buf)
        return -ENOMEM;
    pc->got = 0;
    err = hub_get_range(p->m->env.hub, url, (uint64_t)pc->index * PROTO_PIECE_LEN, pc->len,
                        on_piece_data, on_piece_done, pc, &pc->req);
    if (err < 0) {
        release_buf(p->m, pc);
        return err;
    }
    p->fetching++;
    pc->started = true;
    if (f->state == F_QUEUED)
        f->state = F_FETCHING;
    return 0;
}

/* --- pieces from a peer (--from-peer) ------------------------------------------------------
 *
 * One piece: its chunk list from the peer (GET_MANIFEST of the piece), the chunks the
 * store holds read into the piece buffer, the others fetched (GET_CHUNKS, in batches)
 * into their places; then the ordinary put job recomputes the chunks and the piece hash
 * from the bytes and refuses a piece that does not match the hash the peer named. */

struct peer_fetch {
    struct piece *pc;
    struct pull *p;
    struct manifest_piece mp;
    struct chash_leaf *chunks;
    uint32_t *off;                 /* each chunk's offset in the piece */
    bool *have;                    /* held by our store */
    uint32_t *missing;             /* indexes of the chunks to fetch */
    uint32_t n_missing;
    unsigned out;                  /* requests and jobs out */
    int err;
    char why[600];
    uint8_t id[STORE_ID_LEN];
};

struct peer_batch {
    struct peer_fetch *pf;
    uint32_t first;                /* into pf->missing */
};

static void pf_free(struct peer_fetch *pf)
{
    free(pf->chunks);
    free(pf->off);
    free(pf->have);
    free(pf->missing);
    free(pf);
}

/* One of the piece's requests or jobs is back: the last one decides. */
static void pf_back(struct peer_fetch *pf)
{
    struct piece *pc = pf->pc;
    struct pull *p = pf->p;

    if (--pf->out > 0)
        return;
    pc->peer_busy = false;
    if (!active(p)) {
        release_buf(p->m, pc);
    } else if (pf->err < 0) {
        release_buf(p->m, pc);
        fail(p, "%s: piece %" PRIu32 " from peer %s: %s", pc->f->path, pc->index, p->peer,
             pf->why[0] ? pf->why : shoal_strerror(pf->err));
    } else {
        pc->got = pc->len;
        memcpy(pc->want, pf->mp.hash, CHASH_LEN);
        pc->have_want = true;
        start_put(pc);
        sha_advance(pc->f);
    }
    pf_free(pf);
    p->jobs--;
    maybe_closed(p->m);
}

static void pf_fail(struct peer_fetch *pf, int err, const char *why)
{
    if (pf->err == 0) {
        pf->err = err;
        snprintf(pf->why, sizeof(pf->why), "%s", why ? why : shoal_strerror(err));
    }
}

static void on_chunk_data(void *arg, uint32_t i, uint32_t off, uint32_t total,
                          const uint8_t *data, size_t len)
{
    struct peer_batch *b = arg;
    struct peer_fetch *pf = b->pf;
    uint32_t k = pf->missing[b->first + i];

    if (total != pf->chunks[k].len || off + len > total) {
        pf_fail(pf, SHOAL_EPEER, "a chunk of the wrong length");
        return;
    }
    if (active(pf->p) && pf->err == 0) {
        memcpy(pf->pc->buf + pf->off[k] + off, data, len);
        pf->p->bytes_fetched += len;
        pf->p->m->bytes_fetched += len;
    }
}

static void on_chunk_missing(void *arg, uint32_t i)
{
    struct peer_batch *b = arg;

    (void)i;
    pf_fail(b->pf, -ENOENT, "the peer does not hold all of it");
}

static void on_chunks_done(void *arg, int err, const char *why)
{
    struct peer_batch *b = arg;
    struct peer_fetch *pf = b->pf;

    free(b);
    if (err < 0)
        pf_fail(pf, err, why);
    pf_back(pf);
}

static void pf_request_chunks(struct peer_fetch *pf)
{
    static const struct peer_chunks_cb cb = {on_chunk_data, on_chunk_missing, on_chunks_done};
    uint8_t(*hashes)[32] = malloc(WIRE_CHUNKS_PER_REQ * sizeof(*hashes));
    uint32_t first, n, i;
    int err;

    for (first = 0; hashes && first < pf->n_missing && pf->err == 0; first += n) {
        struct peer_batch *b = malloc(sizeof(*b));

        n = pf->n_missing - first < WIRE_CHUNKS_PER_REQ ? pf->n_missing - first
                                                         : WIRE_CHUNKS_PER_REQ;
        for (i = 0; i < n; i++)
            memcpy(hashes[i], pf->chunks[pf->missing[first + i]].hash, 32);
        if (!b) {
            pf_fail(pf, -ENOMEM, NULL);
            break;
        }
        *b = (struct peer_batch){.pf = pf, .first = first};
        err = peer_get_chunks(pf->p->m->env.peers, pf->p->peer,
                              (const uint8_t(*)[32])hashes, n, &cb, b);
        if (err < 0) {
            free(b);
            pf_fail(pf, err, NULL);
            break;
        }
        pf->out++;
    }
    if (!hashes)
        pf_fail(pf, -ENOMEM, NULL);
    free(hashes);
}

/* On the pool: which chunks the store holds, and their bytes into the buffer. */
static int pf_copy(void *arg, size_t i, const uint8_t *data, size_t len)
{
    struct peer_fetch *pf = arg;

    if (data && len == pf->chunks[i].len) {
        memcpy(pf->pc->buf + pf->off[i], data, len);
        pf->have[i] = true;
    }
    return 0;
}

static void pf_local_run(void *arg)
{
    struct peer_fetch *pf = arg;
    struct store *s = pf->p->m->env.store;
    uint8_t(*hashes)[CHASH_LEN] = malloc(pf->mp.n_chunks * sizeof(*hashes));
    uint32_t i;

    if (!hashes) {
        pf->err = -ENOMEM;
        return;
    }
    for (i = 0; i < pf->mp.n_chunks; i++)
        memcpy(hashes[i], pf->chunks[i].hash, CHASH_LEN);
    pf->err = store_get_chunks(s, (const uint8_t(*)[CHASH_LEN])hashes, pf->mp.n_chunks,
                               pf_copy, pf);
    free(hashes);
}

static void pf_local_done(void *arg)
{
    struct peer_fetch *pf = arg;
    uint32_t i;

    if (pf->err == 0 && active(pf->p)) {
        for (i = 0; i < pf->mp.n_chunks; i++)
            if (!pf->have[i])
                pf->missing[pf->n_missing++] = i;
        pf_request_chunks(pf);
    } else if (pf->err < 0) {
        snprintf(pf->why, sizeof(pf->why), "reading the store: %s", shoal_strerror(pf->err));
    }
    pf_back(pf);
}

static void on_piece_manifest(void *arg, int err, const char *why, const uint8_t *data,
                              size_t len)
{
    struct peer_fetch *pf = arg;
    uint64_t off = 0;
    uint32_t i;

    if (err == 0 && active(pf->p)) {
        err = manifest_piece_decode(&pf->mp, &pf->chunks, data, len);
        for (i = 0; err == 0 && i < pf->mp.n_chunks; i++)
            off += pf->chunks[i].len;
        if (err == 0 && (off != pf->pc->len || pf->mp.len != pf->pc->len))
            err = SHOAL_EFORMAT;
        if (err < 0)
            why = "its chunk list does not fit the piece";
    }
    if (err < 0) {
        pf_fail(pf, err, why);
    } else if (active(pf->p)) {
        pf->off = malloc(pf->mp.n_chunks * sizeof(*pf->off));
        pf->have = calloc(pf->mp.n_chunks, sizeof(*pf->have));
        pf->missing = malloc(pf->mp.n_chunks * sizeof(*pf->missing));
        if (!pf->off || !pf->have || !pf->missing) {
            pf_fail(pf, -ENOMEM, NULL);
        } else {
            for (i = 0, off = 0; i < pf->mp.n_chunks; i++) {
                pf->off[i] = (uint32_t)off;
                off += pf->chunks[i].len;
            }
            if (work_queue(pf->p->m->env.work, pf_local_run, pf_local_done, pf) == 0)
                pf->out++;
            else
                pf_fail(pf, -ESHUTDOWN, "the node is stopping");
        }
    }
    pf_back(pf);
}

static int peer_fetch(struct piece *pc)
{
    struct pull *p = pc->f->p;
    struct peer_fetch *pf = calloc(1, sizeof(*pf));
    int err;

    if (!pf)
        return -ENOMEM;
    pc->buf = get_buf(p->m);
    if (!pc->buf) {
        free(pf);
        return -ENOMEM;
    }
    pf->pc = pc;
    pf->p = p;
    pf->out = 1;
    memcpy(pf->id, pc->f->id, STORE_ID_LEN);
    err = peer_get_manifest(p->m->env.peers, p->peer, pc->f->id, pc->index, on_piece_manifest,
                            pf);
    if (err < 0) {
        release_buf(p->m, pc);
        free(pf);
        return err;
    }
    p->jobs++; /* counted like a job: the pull outlives its callbacks */
    pc->peer_busy = true;
    pc->started = true;
    pc->got = 0;
    if (pc->f->state == F_QUEUED)
        pc->f->state = F_FETCHING;
    return 0;
}

/* Starts pieces, files in order, while buffers are free. Runs after every piece
 * event, so it only moves cursors forward: p->sched (the first file with pieces left to
 * start) and each file's next_start. */
static void schedule(struct pull_mgr *m)
{
    struct pull *p;
    uint32_t i;
    int err;

    for (p = m->pulls; p; p = p->next) {
        if (p->state != P_FETCHING)
            continue;
        for (i = p->sched; i < p->n_files && m->buffers < m->env.max_buffers; i++) {
            struct pfile *f = &p->files[i];

            while (f->next_start < f->n_pieces) {
                struct piece *pc = &f->pieces[f->next_start];

                if (!pc->started) {
                    if (m->buffers >= m->env.max_buffers)
                        break;
                    err = start_fetch(pc);
                    if (err < 0) {
                        fail(p, "%s: cannot start its download: %s", f->path,
                             strerror(-err));
                        return;
                    }
                }
                f->next_start++;
            }
            if (f->next_start == f->n_pieces && i == p->sched)
                p->sched++;
        }
    }
}

/* --- finishing a file and the pull ---------------------------------------------------------- */

struct finish_job {
    struct pfile *f;
    uint8_t got[STORE_ID_LEN];
    bool match;
    int err;
    uint8_t id[STORE_ID_LEN];
    uint64_t size;
    struct store *s;
    bool streamed;         /* the blob went into the cache during the pull */
};

static void finish_run(void *arg)
{
    struct finish_job *j = arg;
    struct pfile *f = j->f;
    char why[600];

    if (j->match)
        j->err = store_complete_file(j->s, j->id, j->size);
    else
        j->err = store_remove_file(j->s, j->id);
    if (!f->xs)
        return;
    if (j->match && j->err == 0) {
        /* Exactly the bytes whose sha256 just matched: the blob may take its name. */
        j->streamed = export_stream_commit(f->xs, why, sizeof(why)) == 0;
        if (!j->streamed)
            log_msg(CFG_LOG_WARN, "%s", why);
    } else {
        export_stream_abort(f->xs);
    }
    f->xs = NULL;
}

static void refetch_file(struct pfile *f, const char *why)
{
    struct pull *p = f->p;
    uint32_t k;

    f->attempts++;
    p->bytes_done -= f->bytes_done;
    f->bytes_done = 0;
    if (f->attempts >= PULL_FILE_ATTEMPTS) {
        fail(p, "%s: %s, %u times; the Hub or a proxy is serving wrong bytes", f->path, why,
             f->attempts);
        return;
    }
    log_msg(CFG_LOG_WARN, "pull %" PRIu32 ": %s: %s; fetching it again", p->id, f->path, why);
    for (k = 0; k < f->n_pieces; k++) {
        struct piece *pc = &f->pieces[k];
        *pc = (struct piece){.f = f, .index = pc->index, .len = pc->len};
    }
    f->sha_next = 0;
    f->next_start = 0;
    f->n_stored = 0;
    f->stream_done = false;
    if (f->sha_open)
        sha256_release(&f->sha);
    f->sha_open = false;
    f->state = F_QUEUED;
    if (p->sched > (uint32_t)(f - p->files))
        p->sched = (uint32_t)(f - p->files);
}

static void finish_export(struct pull *p);

static void finish_done(void *arg)
{
    struct finish_job *j = arg;
    struct pfile *f = j->f;
    struct pull *p = f->p;
    int err = j->err;
    bool match = j->match;

    if (j->streamed) {
        p->xs.files_written++;
        p->xs.bytes_written += f->size;
    }
    free(j);
    f->finishing = false;
    if (!active(p))
        return;
    if (err < 0 && !(err == -ENOENT && !match)) {
        fail(p, "%s: %s the file: %s", f->path, match ? "completing" : "dropping",
             store_err_text(err));
        return;
    }
    if (!match) {
        refetch_file(f, "content does not match its sha256");
        schedule(p->m);
        return;
    }
    f->state = F_STORED;
    p->files_done++;
    if (p->files_done == p->n_files)
        finish_export(p);
}

/* All pieces stored and hashed: check the sha256, then complete or refetch. */
static void maybe_finish_file(struct pfile *f)
{
    struct pull *p = f->p;
    struct finish_job *j;

    if (!active(p) || f->finishing)
        return;
    if (f->state == F_STORED) {
        if (p->files_done == p->n_files && p->state == P_FETCHING)
            finish_export(p);
        return;
    }
    /* Hashing goes in order, so sha_next at the end means every piece was hashed. */
    if (!f->lfs || f->n_stored < f->n_pieces || f->sha_next < f->n_pieces)
        return;
    j = calloc(1, sizeof(*j));
    if (!j) {
        fail(p, "out of memory");
        return;
    }
    j->f = f;
    j->s = p->m->env.store;
    j->size = f->size;
    memcpy(j->id, f->id, STORE_ID_LEN);
    if (!f->sha_open && sha256_init(&f->sha) == 0)
        f->sha_open = true; /* an empty file */
    if (!f->sha_open) {
        free(j);
        fail(p, "out of memory");
        return;
    }
    sha256_final(&f->sha, j->got);
    f->sha_open = false;
    j->match = memcmp(j->got, f->id, STORE_ID_LEN) == 0;
    f->state = F_VERIFYING;
    if (pull_queue(p, finish_run, finish_done, j) < 0) {
        free(j);
        fail(p, "node stopping");
        return;
    }
    f->finishing = true;
}

struct export_job {
    struct pull *p;
    struct snapshot sel;   /* the selected files: what is exported */
    struct export_stats st;
    int err;
    char why[600];
};

/* The stored snapshot of this commit gains the files just pulled. */
static int merge_snapshot(struct store *s, const struct snapshot *sel, const char *rev)
{
    struct snapshot old, out;
    bool have_old;
    uint32_t i;
    int r;

    have_old = store_get_snapshot(s, sel->repo, sel->commit, &old) == 0;
    r = snapshot_init(&out, sel->repo, sel->commit);
    for (i = 0; r == 0 && i < sel->n_files; i++) {
        const struct snapshot_file *f = &sel->files[i];
        r = snapshot_add(&out, f->path, f->size, f->sha256, f->etag);
    }
    for (i = 0; r == 0 && have_old && i < old.n_files; i++) {
        const struct snapshot_file *f = &old.files[i];
        if (!snapshot_find(sel, f->path))
            r = snapshot_add(&out, f->path, f->size, f->sha256, f->etag);
    }
    if (r == 0)
        r = snapshot_finish(&out);
    if (r == 0)
        r = store_put_snapshot(s, &out);
    if (r == 0 && strcmp(rev, sel->commit) != 0)
        r = store_set_ref(s, sel->repo, rev, sel->commit);
    snapshot_release(&out);
    if (have_old)
        snapshot_release(&old);
    return r;
}

static void export_run(void *arg)
{
    struct export_job *j = arg;
    struct pull *p = j->p;
    struct store *s = p->m->env.store;

    j->err = merge_snapshot(s, &j->sel, p->rev);
    if (j->err < 0) {
        snprintf(j->why, sizeof(j->why), "storing the snapshot: %s", store_err_text(j->err));
        return;
    }
    if (p->local_dir)
        j->err = export_local_dir(s, &j->sel, p->local_dir, NULL, NULL, &j->st, j->why,
                                  sizeof(j->why));
    else
        j->err = export_hf_cache(s, &j->sel, p->cache_dir,
                                 strcmp(p->rev, p->commit) == 0 ? NULL : p->rev, NULL, NULL,
                                 &j->st, j->why, sizeof(j->why));
}

static void release_holds(struct pull *p);

static void export_done(void *arg)
{
    struct export_job *j = arg;
    struct pull *p = j->p;
    uint32_t streamed;

    /* The export found the blobs streamed during the pull in place and counted them
     * as kept; they were written by this pull. */
    streamed = p->xs.files_written;
    p->xs.files_written += j->st.files_written;
    p->xs.bytes_written += j->st.bytes_written;
    p->xs.files_kept = j->st.files_kept - (j->st.files_kept < streamed ? j->st.files_kept
                                                                       : streamed);
    if (active(p)) {
        if (j->err < 0) {
            fail(p, "export: %s", j->why[0] ? j->why : shoal_strerror(j->err));
        } else {
            p->state = P_DONE;
            p->t_end = uv_now(p->m->env.loop);
            log_msg(CFG_LOG_INFO,
                    "pull %" PRIu32 " of %s@%s done: %" PRIu32 " files, %" PRIu64
                    " bytes fetched, %" PRIu64 " ms",
                    p->id, p->repo, p->rev, p->n_files, p->bytes_fetched,
                    p->t_end - p->t_start);
        }
    }
    release_holds(p);
    snapshot_release(&j->sel);
    free(j);
}

static void finish_export(struct pull *p)
{
    struct export_job *j;
    uint32_t i;
    int r;

    if (p->state != P_FETCHING)
        return;
    j = calloc(1, sizeof(*j));
    if (!j) {
        fail(p, "out of memory");
        return;
    }
    j->p = p;
    r = snapshot_init(&j->sel, p->srepo, p->commit);
    for (i = 0; r == 0 && i < p->n_files; i++) {
        struct pfile *f = &p->files[i];
        r = snapshot_add(&j->sel, f->path, f->size, f->id, f->etag);
    }
    if (r == 0)
        r = snapshot_finish(&j->sel);
    if (r == 0)
        r = pull_queue(p, export_run, export_done, j);
    if (r < 0) {
        snapshot_release(&j->sel);
        free(j);
        fail(p, "building the snapshot: %s", shoal_strerror(r));
        return;
    }
    p->state = P_EXPORTING;
    if (p->local_dir)
        snprintf(p->export_dir, sizeof(p->export_dir), "%s", p->local_dir);
    else {
        char folder[SNAPSHOT_REPO_MAX + 8];
        if (snapshot_repo_folder(p->srepo, folder, sizeof(folder)) == 0)
            snprintf(p->export_dir, sizeof(p->export_dir), "%s/%s", p->cache_dir, folder);
    }
}

/* Holds keep files from eviction while the pull uses them; released on the pool. */
struct unhold_job {
    struct store *s;
    uint8_t (*ids)[STORE_ID_LEN];
    uint32_t n;
};

static void unhold_run(void *arg)
{
    struct unhold_job *j = arg;

    for (uint32_t i = 0; i < j->n; i++)
        store_release(j->s, j->ids[i]);
}

static void unhold_done(void *arg)
{
    struct unhold_job *j = arg;

    free(j->ids);
    free(j);
}

static void release_holds(struct pull *p)
{
    struct unhold_job *j = calloc(1, sizeof(*j));
    uint32_t i;

    if (!j)
        return;
    j->s = p->m->env.store;
    j->ids = calloc(p->n_files ? p->n_files : 1, sizeof(*j->ids));
    for (i = 0; j->ids && i < p->n_files; i++) {
        if (p->files[i].held) {
            memcpy(j->ids[j->n++], p->files[i].id, STORE_ID_LEN);
            p->files[i].held = false;
        }
    }
    if (!j->ids || j->n == 0 || work_queue(p->m->env.work, unhold_run, unhold_done, j) < 0) {
        /* At shutdown the holds die with the store; they live in memory only. */
        free(j->ids);
        free(j);
    }
}

/* --- resolve and list ---------------------------------------------------------------------- */

static bool selected(const struct pull *p, const char *path)
{
    bool in = p->n_include == 0;
    unsigned i;

    for (i = 0; !in && i < p->n_include; i++)
        in = fnmatch(p->include[i], path, 0) == 0;
    for (i = 0; in && i < p->n_exclude; i++)
        in = fnmatch(p->exclude[i], path, 0) != 0;
    return in;
}

static int add_file(struct pull *p, const char *path, uint64_t size, bool lfs,
                    const char *sha256, const char *oid)
{
    struct pfile *f;
    uint32_t k;

    if (p->n_files == p->cap_files) {
        uint32_t cap = p->cap_files ? 2 * p->cap_files : 16;
        struct pfile *nf = realloc(p->files, cap * sizeof(*nf));
        if (!nf)
            return -ENOMEM;
        p->files = nf;
        p->cap_files = cap;
    }
    f = &p->files[p->n_files];
    *f = (struct pfile){.p = p, .size = size, .lfs = lfs};
    f->path = strdup(path);
    if (!f->path)
        return -ENOMEM;
    if (lfs) {
        if (chash_unhex(sha256, f->id, STORE_ID_LEN) < 0)
            return -EPROTO;
        f->id_known = true;
        snprintf(f->etag, sizeof(f->etag), "%s", sha256);
        f->n_pieces = (uint32_t)((size + PROTO_PIECE_LEN - 1) / PROTO_PIECE_LEN);
    } else {
        if (chash_unhex(oid, f->oid, GIT_OID_LEN) < 0)
            return -EPROTO;
        snprintf(f->etag, sizeof(f->etag), "%s", oid);
        f->n_pieces = size ? 1 : 0;
    }
    for (char *c = f->etag; *c; c++)
        if (*c >= 'A' && *c <= 'F')
            *c = (char)(*c - 'A' + 'a');
    f->pieces = calloc(f->n_pieces ? f->n_pieces : 1, sizeof(*f->pieces));
    if (!f->pieces) {
        free(f->path);
        return -ENOMEM;
    }
    for (k = 0; k < f->n_pieces; k++) {
        uint64_t off = (uint64_t)k * PROTO_PIECE_LEN;
        f->pieces[k] = (struct piece){.f = f, .index = k,
                                      .len = (uint32_t)(size - off < PROTO_PIECE_LEN
                                                            ? size - off
                                                            : PROTO_PIECE_LEN)};
    }
    p->n_files++;
    p->bytes_total += size;
    return 0;
}

/* One tree entry; entries that are not files are skipped, bad ones refused. */
static int tree_entry(struct pull *p, json_t *e)
{
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *path = json_string_value(json_object_get(e, "path"));
    const char *oid = json_string_value(json_object_get(e, "oid"));
    json_t *size = json_object_get(e, "size"), *lfs = json_object_get(e, "lfs");
    const char *sha = NULL;
    json_int_t sz;

    if (!type || strcmp(type, "file") != 0)
        return 0;
    if (!path || !snapshot_path_ok(path))
        return -EPROTO;
    if (!json_is_integer(size) || (sz = json_integer_value(size)) < 0 ||
        (uint64_t)sz > PROTO_FILE_MAX)
        return -EPROTO;
    if (json_is_object(lfs)) {
        sha = json_string_value(json_object_get(lfs, "oid"));
        if (!sha || strlen(sha) != 64)
            return -EPROTO;
    } else if (!oid || strlen(oid) != 40) {
        return -EPROTO;
    } else if ((uint64_t)sz > PULL_SMALL_MAX) {
        return -EFBIG;
    }
    if (!selected(p, path))
        return 0;
    if (p->n_files >= PULL_FILES_MAX)
        return -E2BIG;
    return add_file(p, path, (uint64_t)sz, sha != NULL, sha, oid);
}

static int list_page(struct pull *p, const char *url);

static void on_tree(void *arg, int err, json_t *doc, const struct hub_result *res)
{
    struct pull *p = arg;
    char msg[600], what[600];
    json_t *e = NULL;
    size_t i;

    p->api = NULL;
    if (err < 0) {
        snprintf(what, sizeof(what), "%s@%s", p->repo, p->rev);
        hub_describe_error(err, res, what, msg, sizeof(msg));
        fail(p, "listing files: %s", msg);
        return;
    }
    if (!json_is_array(doc)) {
        json_decref(doc);
        fail(p, "listing files of %s@%s: the Hub's answer is not a list", p->repo, p->rev);
        return;
    }
    json_array_foreach(doc, i, e) {
        err = tree_entry(p, e);
        if (err < 0)
            break;
    }
    if (err < 0) {
        const char *path = json_string_value(json_object_get(e, "path"));
        json_decref(doc);
        fail(p, "listing files of %s@%s: %s%s", p->repo, p->rev,
             err == -EFBIG ? "a non-LFS file over 16 MiB: " :
             err == -E2BIG ? "too many files" :
             err == -ENOMEM ? "out of memory" : "a bad entry in the Hub's listing: ",
             err == -EFBIG || err == -EPROTO ? (path ? path : "(no path)") : "");
        return;
    }
    json_decref(doc);
    if (res->next[0]) {
        if (++p->pages >= PULL_PAGES_MAX) {
            fail(p, "listing files of %s@%s: more than %u pages", p->repo, p->rev,
                 PULL_PAGES_MAX);
            return;
        }
        err = list_page(p, res->next);
        if (err < 0)
            fail(p, "listing files: %s", strerror(-err));
        return;
    }
    if (p->n_files == 0) {
        fail(p, "no file of %s@%s matches %s", p->repo, p->rev,
             p->n_include || p->n_exclude ? "the --include/--exclude patterns"
                                          : "(the repository is empty)");
        return;
    }
    start_survey(p);
}

static int list_page(struct pull *p, const char *url)
{
    return hub_get_json(p->m->env.hub, url, on_tree, p, &p->api);
}

/* --- resolving from the store ------------------------------------------------------- */

/* When the Hub cannot resolve the revision (unreachable, or it does not know the repo:
 * an imported one), the store may: a commit it has a snapshot of, or a branch or tag
 * it has a ref for. The store's snapshot lists the files pulled (or imported) from that
 * commit; the pull exports those the patterns select, all of which must be complete. */
struct local_job {
    struct pull *p;
    bool found;
    char commit[SNAPSHOT_COMMIT_LEN + 1];
    struct snapshot snap;
};

static void local_run(void *arg)
{
    struct local_job *j = arg;
    struct pull *p = j->p;
    struct store *s = p->m->env.store;

    if (snapshot_commit_ok(p->rev))
        memcpy(j->commit, p->rev, sizeof(j->commit));
    else if (store_get_ref(s, p->srepo, p->rev, j->commit) < 0)
        return;
    j->found = store_get_snapshot(s, p->srepo, j->commit, &j->snap) == 0;
}

static int add_file(struct pull *p, const char *path, uint64_t size, bool lfs,
                    const char *sha256, const char *oid);

/* all_pieces: fetch every file by pieces and check it by sha256 (files from a peer,
 * whose ids are all known), rather than small ones whole by git blob id. */
static int add_snapshot_files(struct pull *p, const struct snapshot *snap, bool all_pieces)
{
    char sha[2 * STORE_ID_LEN + 1];
    uint32_t i;
    int err;

    for (i = 0; i < snap->n_files; i++) {
        const struct snapshot_file *f = &snap->files[i];
        bool lfs = all_pieces || strlen(f->etag) == 2 * STORE_ID_LEN;

        if (!selected(p, f->path))
            continue;
        chash_hex(f->sha256, STORE_ID_LEN, sha);
        err = add_file(p, f->path, f->size, lfs, sha, f->etag);
        if (err < 0)
            return err;
        memcpy(p->files[p->n_files - 1].id, f->sha256, STORE_ID_LEN);
        p->files[p->n_files - 1].id_known = true;
        /* The Hub's etag, whatever the way of fetching: it names the cache blob. */
        snprintf(p->files[p->n_files - 1].etag, sizeof(p->files[0].etag), "%s", f->etag);
    }
    return 0;
}

static void local_done(void *arg)
{
    struct local_job *j = arg;
    struct pull *p = j->p;
    int err = 0;

    if (j->found && active(p)) {
        memcpy(p->commit, j->commit, sizeof(p->commit));
        p->local = true;
        err = add_snapshot_files(p, &j->snap, false);
        log_msg(CFG_LOG_WARN, "pull %" PRIu32 ": %s; using the store's snapshot %s", p->id,
                p->hub_why, p->commit);
    }
    if (j->found)
        snapshot_release(&j->snap);
    free(j);
    if (!active(p))
        return;
    if (err < 0) {
        fail(p, "out of memory");
    } else if (p->local) {
        if (p->n_files == 0)
            fail(p, "no file of %s@%s in the store matches the --include/--exclude patterns",
                 p->repo, p->rev);
        else
            start_survey(p);
    } else {
        fail(p, "%s", p->hub_why);
    }
}

static void start_local(struct pull *p)
{
    struct local_job *j = calloc(1, sizeof(*j));

    if (j)
        j->p = p;
    if (!j || pull_queue(p, local_run, local_done, j) < 0) {
        free(j);
        fail(p, "%s", p->hub_why[0] ? p->hub_why : "out of memory");
    }
}

static void on_revision(void *arg, int err, json_t *doc, const struct hub_result *res)
{
    struct pull *p = arg;
    char msg[600], what[600], url[HUB_URL_MAX];
    const char *sha;
    int n;

    p->api = NULL;
    if (err < 0) {
        snprintf(what, sizeof(what), "%s@%s", p->repo, p->rev);
        hub_describe_error(err, res, what, msg, sizeof(msg));
        snprintf(p->hub_why, sizeof(p->hub_why), "%s", msg);
        start_local(p); /* the store may know this revision */
        return;
    }
    sha = json_string_value(json_object_get(doc, "sha"));
    if (!sha || !snapshot_commit_ok(sha)) {
        json_decref(doc);
        fail(p, "resolving %s@%s: the Hub's answer has no valid commit (\"sha\")", p->repo,
             p->rev);
        return;
    }
    memcpy(p->commit, sha, SNAPSHOT_COMMIT_LEN + 1);
    json_decref(doc);
    p->state = P_LISTING;
    n = snprintf(url, sizeof(url), "/api/%ss/%s/tree/%s?recursive=true", p->type, p->repo,
                 p->commit);
    err = n > 0 && (size_t)n < sizeof(url) ? list_page(p, url) : -ENAMETOOLONG;
    if (err < 0)
        fail(p, "listing files: %s", strerror(-err));
}

static int resolve(struct pull *p)
{
    char rev[3 * SNAPSHOT_REV_MAX + 1], url[HUB_URL_MAX];
    int n;

    if (hub_escape(p->rev, false, rev, sizeof(rev)) < 0)
        return -ENAMETOOLONG;
    n = snprintf(url, sizeof(url), "/api/%ss/%s/revision/%s", p->type, p->repo, rev);
    if (n < 0 || (size_t)n >= sizeof(url))
        return -ENAMETOOLONG;
    return hub_get_json(p->m->env.hub, url, on_revision, p, &p->api);
}

/* --- the snapshot from a peer --------------------------------------------------------------- */

static void on_peer_snapshot(void *arg, int err, const char *why, const uint8_t *data,
                             size_t len)
{
    struct pull *p = arg;
    struct snapshot snap;
    bool ok = false;

    p->jobs--;
    if (!active(p)) {
        maybe_closed(p->m);
        return;
    }
    if (err == 0) {
        err = snapshot_decode(&snap, data, len);
        if (err < 0)
            why = "its snapshot does not decode";
        else if (strcmp(snap.repo, p->srepo) != 0 ||
                 (snapshot_commit_ok(p->rev) && strcmp(snap.commit, p->rev) != 0))
            why = "it answered with another snapshot";
        else
            ok = true;
    }
    if (ok) {
        memcpy(p->commit, snap.commit, sizeof(p->commit));
        p->state = P_LISTING;
        err = add_snapshot_files(p, &snap, true);
        if (err < 0)
            fail(p, "out of memory");
        else if (p->n_files == 0)
            fail(p, "no file of %s@%s on peer %s matches the --include/--exclude patterns",
                 p->repo, p->rev, p->peer);
        else
            start_survey(p);
    } else {
        if (err == SHOAL_EPEER || err == SHOAL_EFORMAT)
            peer_blame(p->m->env.peers, p->peer, why ? why : "a bad snapshot");
        fail(p, "peer %s: %s@%s: %s", p->peer, p->repo, p->rev,
             err == -ENOENT ? "the peer does not hold this snapshot"
                            : why ? why : shoal_strerror(err));
    }
    if (err == 0 || ok)
        snapshot_release(&snap);
    maybe_closed(p->m);
}

static int peer_resolve(struct pull *p)
{
    int err = peer_get_snapshot(p->m->env.peers, p->peer, p->srepo, p->rev, on_peer_snapshot,
                                p);

    if (err == 0)
        p->jobs++;
    return err;
}

/* --- the manager ----------------------------------------------------------------------------- */

int pull_mgr_new(const struct pull_env *env, struct pull_mgr **out)
{
    struct pull_mgr *m = calloc(1, sizeof(*m));

    if (!m)
        return -ENOMEM;
    m->env = *env;
    if (m->env.max_buffers == 0)
        m->env.max_buffers = 8;
    m->pool = calloc(m->env.max_buffers, sizeof(*m->pool));
    if (!m->pool) {
        free(m);
        return -ENOMEM;
    }
    m->next_id = 1;
    *out = m;
    return 0;
}

static void free_strv(char **v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void pull_free(struct pull *p)
{
    uint32_t i;

    for (i = 0; i < p->n_files; i++) {
        struct pfile *f = &p->files[i];
        for (uint32_t k = 0; k < f->n_pieces; k++)
            release_buf(p->m, &f->pieces[k]);
        if (f->sha_open)
            sha256_release(&f->sha);
        export_stream_abort(f->xs);
        free(f->pieces);
        free(f->path);
    }
    free(p->files);
    free_strv(p->include, p->n_include);
    free_strv(p->exclude, p->n_exclude);
    free(p->cache_dir);
    free(p->local_dir);
    free(p);
}

static void maybe_closed(struct pull_mgr *m)
{
    struct pull *p, *next;

    if (!m->closing)
        return;
    for (p = m->pulls; p; p = p->next)
        if (p->jobs)
            return;
    for (p = m->pulls; p; p = next) {
        next = p->next;
        pull_free(p);
    }
    m->pulls = NULL;
    if (m->closed) {
        void (*cb)(void *) = m->closed;
        m->closed = NULL;
        cb(m->closed_arg);
        while (m->pooled > 0)
            munmap(m->pool[--m->pooled], PROTO_PIECE_LEN);
        free(m->pool);
        free(m);
    }
}

void pull_mgr_close(struct pull_mgr *m, void (*done)(void *arg), void *arg)
{
    struct pull *p;

    m->closing = true;
    m->closed = done;
    m->closed_arg = arg;
    for (p = m->pulls; p; p = p->next)
        fail(p, "the node is stopping");
    /* The work queue calls back from the loop; with no job out, finish now. */
    maybe_closed(m);
}

/* Forgets the oldest finished pulls beyond PULL_KEEP_DONE. */
static void trim(struct pull_mgr *m)
{
    struct pull **pp = &m->pulls, *p;
    unsigned kept = 0;

    while ((p = *pp)) {
        if (!active(p) && p->jobs == 0 && ++kept > PULL_KEEP_DONE) {
            *pp = p->next;
            pull_free(p);
            continue;
        }
        pp = &p->next;
    }
}

static bool same_strv(char **a, unsigned na, const char *const *b, unsigned nb)
{
    if (na != nb)
        return false;
    for (unsigned i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static bool same_opt(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static struct pull *find_same(struct pull_mgr *m, const struct pull_req *r)
{
    for (struct pull *p = m->pulls; p; p = p->next) {
        if (active(p) && strcmp(p->repo, r->repo) == 0 && strcmp(p->type, r->repo_type) == 0 &&
            strcmp(p->rev, r->revision) == 0 &&
            same_strv(p->include, p->n_include, r->include, r->n_include) &&
            same_strv(p->exclude, p->n_exclude, r->exclude, r->n_exclude) &&
            same_opt(p->cache_dir, r->cache_dir) && same_opt(p->local_dir, r->local_dir) &&
            same_opt(p->peer[0] ? p->peer : NULL, r->from_peer))
            return p;
    }
    return NULL;
}

static int check_req(const struct pull_req *r, bool m_has_peers, char *why, size_t why_len)
{
    char srepo[SNAPSHOT_REPO_MAX + 2];
    unsigned i;

    if (!r->repo_type || (strcmp(r->repo_type, "model") && strcmp(r->repo_type, "dataset") &&
                          strcmp(r->repo_type, "space"))) {
        snprintf(why, why_len, "repo_type must be model, dataset or space");
        return -EINVAL;
    }
    if (!r->repo || snprintf(srepo, sizeof(srepo), "%s/%s", r->repo_type, r->repo) >=
                        (int)sizeof(srepo) || !snapshot_repo_ok(srepo)) {
        snprintf(why, why_len, "'%s' is not a repository name (org/name)",
                 r->repo ? r->repo : "");
        return -EINVAL;
    }
    if (!r->revision || !snapshot_rev_ok(r->revision)) {
        snprintf(why, why_len, "'%s' is not a revision (a branch, tag or commit)",
                 r->revision ? r->revision : "");
        return -EINVAL;
    }
    if (r->n_include > PULL_GLOBS_MAX || r->n_exclude > PULL_GLOBS_MAX) {
        snprintf(why, why_len, "at most %u include and %u exclude patterns", PULL_GLOBS_MAX,
                 PULL_GLOBS_MAX);
        return -EINVAL;
    }
    for (i = 0; i < r->n_include + r->n_exclude; i++) {
        const char *g = i < r->n_include ? r->include[i] : r->exclude[i - r->n_include];
        if (!g[0] || strlen(g) > PULL_GLOB_LEN) {
            snprintf(why, why_len, "a pattern is empty or longer than %u bytes", PULL_GLOB_LEN);
            return -EINVAL;
        }
    }
    if (r->from_peer) {
        struct cfg_addr a;

        if (strlen(r->from_peer) >= PEER_ADDR_MAX ||
            cfg_addr_parse("from_peer", r->from_peer, false, &a, why, why_len) < 0) {
            if (strlen(r->from_peer) >= PEER_ADDR_MAX)
                snprintf(why, why_len, "from_peer is too long");
            return -EINVAL;
        }
    }
    if (r->from_peer && !m_has_peers) {
        snprintf(why, why_len, "this node has no peer transport");
        return -EINVAL;
    }
    if (!r->cache_dir == !r->local_dir) {
        snprintf(why, why_len, "give exactly one of cache_dir and local_dir");
        return -EINVAL;
    }
    {
        const char *d = r->cache_dir ? r->cache_dir : r->local_dir;
        if (d[0] != '/' || strlen(d) > 4000) {
            snprintf(why, why_len, "the export directory must be an absolute path");
            return -EINVAL;
        }
    }
    return 0;
}

static int copy_strv(char ***out, const char *const *in, unsigned n)
{
    *out = calloc(n ? n : 1, sizeof(char *));
    if (!*out)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++)
        if (!((*out)[i] = strdup(in[i])))
            return -ENOMEM;
    return 0;
}

int pull_start(struct pull_mgr *m, const struct pull_req *r, uint32_t *id, char *why,
               size_t why_len)
{
    struct pull *p;
    int err;

    if (m->closing) {
        snprintf(why, why_len, "the node is stopping");
        return -ESHUTDOWN;
    }
    err = check_req(r, m->env.peers != NULL, why, why_len);
    if (err < 0)
        return err;
    p = find_same(m, r);
    if (p) {
        *id = p->id;
        return 0;
    }
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->m = m;
    snprintf(p->repo, sizeof(p->repo), "%s", r->repo);
    snprintf(p->type, sizeof(p->type), "%s", r->repo_type);
    snprintf(p->srepo, sizeof(p->srepo), "%s/%s", r->repo_type, r->repo);
    snprintf(p->rev, sizeof(p->rev), "%s", r->revision);
    if (r->from_peer)
        snprintf(p->peer, sizeof(p->peer), "%s", r->from_peer);
    p->cache_dir = dup_str(r->cache_dir);
    p->local_dir = dup_str(r->local_dir);
    p->n_include = r->n_include;
    p->n_exclude = r->n_exclude;
    err = copy_strv(&p->include, r->include, r->n_include);
    if (err == 0)
        err = copy_strv(&p->exclude, r->exclude, r->n_exclude);
    if (err == 0 && ((r->cache_dir && !p->cache_dir) || (r->local_dir && !p->local_dir)))
        err = -ENOMEM;
    if (err < 0) {
        pull_free(p);
        snprintf(why, why_len, "out of memory");
        return err;
    }
    p->id = m->next_id++;
    p->t_start = uv_now(m->env.loop);
    p->next = m->pulls;
    m->pulls = p;
    log_msg(CFG_LOG_INFO, "pull %" PRIu32 ": %s %s@%s", p->id, p->type, p->repo, p->rev);
    if (p->peer[0]) {
        err = peer_resolve(p);
        if (err < 0)
            fail(p, "cannot ask peer %s: %s", p->peer, strerror(-err));
    } else {
        err = resolve(p);
        if (err < 0)
            fail(p, "cannot ask the Hub: %s", strerror(-err));
    }
    trim(m);
    *id = p->id;
    return 0;
}

/* --- status ---------------------------------------------------------------------------------- */

static struct pull *find(struct pull_mgr *m, uint32_t id)
{
    for (struct pull *p = m->pulls; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static json_t *files_json(const struct pull *p)
{
    json_t *a = json_array();

    for (uint32_t i = 0; a && i < p->n_files; i++) {
        const struct pfile *f = &p->files[i];
        json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:s}", "path", f->path, "size",
                                           (json_int_t)f->size, "bytes_done",
                                           (json_int_t)f->bytes_done, "state",
                                           file_state_name[f->state]));
    }
    return a;
}

static json_t *one_json(const struct pull *p, bool with_files)
{
    uint64_t end = active(p) ? uv_now(p->m->env.loop) : p->t_end;
    char id[16];
    json_t *o;

    snprintf(id, sizeof(id), "%" PRIu32, p->id);
    o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "id", id,
                  "repo", p->repo, "repo_type", p->type, "revision", p->rev, "commit",
                  p->commit[0] ? json_string(p->commit) : json_null(), "state",
                  pull_state_name[p->state], "error",
                  p->state == P_FAILED ? json_string(p->error) : json_null(), "files_total",
                  (json_int_t)p->n_files, "files_done", (json_int_t)p->files_done,
                  "bytes_total", (json_int_t)p->bytes_total, "bytes_done",
                  (json_int_t)p->bytes_done, "bytes_fetched", (json_int_t)p->bytes_fetched,
                  "elapsed_ms", (json_int_t)(end - p->t_start));
    if (!o)
        return NULL;
    json_object_set_new(o, "export",
                        json_pack("{s:s, s:I, s:I}", "dir", p->export_dir, "files_written",
                                  (json_int_t)p->xs.files_written, "files_kept",
                                  (json_int_t)p->xs.files_kept));
    if (with_files)
        json_object_set_new(o, "files", files_json(p));
    return o;
}

json_t *pull_json(struct pull_mgr *m, uint32_t id, bool with_files)
{
    struct pull *p = find(m, id);

    return p ? one_json(p, with_files) : NULL;
}

json_t *pull_list_json(struct pull_mgr *m)
{
    json_t *a = json_array();

    for (struct pull *p = m->pulls; a && p; p = p->next)
        json_array_append_new(a, one_json(p, false));
    return json_pack("{s:o}", "pulls", a ? a : json_array());
}

void pull_get_stats(const struct pull_mgr *m, struct pull_stats *out)
{
    *out = (struct pull_stats){.bytes_fetched = m->bytes_fetched, .buffers = m->buffers};
    for (const struct pull *p = m->pulls; p; p = p->next) {
        if (p->state == P_DONE) {
            out->done++;
        } else if (p->state == P_FAILED) {
            out->failed++;
        } else {
            out->active++;
            out->bytes_done += p->bytes_done;
            out->bytes_total += p->bytes_total;
        }
    }
}
