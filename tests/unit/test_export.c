/* test_export.c - snapshots from the store into the Hugging Face cache layout and into
 * a plain directory: the layout (checked by hf_cache_check.py as huggingface_hub reads
 * it offline), re-exports that keep what is there, repair of damaged targets, names
 * and planted symlinks that try to leave the target, and a damaged or incomplete
 * store. */
#include "export.h"

#include "check.h"
#include "err.h"
#include "hasher.h"
#include "proto_limits.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef HF_CACHE_CHECK
#error "HF_CACHE_CHECK (the path of hf_cache_check.py) comes from tests/CMakeLists.txt"
#endif

#define REPO   "model/org/name"
#define FOLDER "models--org--name"
#define COMMIT "0123456789abcdef0123456789abcdef01234567"

/* --- helpers ---------------------------------------------------------------- */

static char base[1024]; /* the test's temporary directory */
static struct store *store;

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A path built with printf: each call returns a new buffer the caller frees. */
static char *pathf(const char *fmt, ...)
{
    char *p = check_malloc(4096);
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(p, 4096, fmt, ap);
    va_end(ap);
    CHECK(n > 0 && n < 4096);
    return p;
}

static int walk_count;
static const char *walk_suffix;

static int count_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    size_t n = strlen(p), k = walk_suffix ? strlen(walk_suffix) : 0;

    if (ftw->level > 0 && (!walk_suffix || (n >= k && strcmp(p + n - k, walk_suffix) == 0)))
        walk_count++;
    return 0;
}

/* Entries below d (not following symlinks) whose names end in suffix (NULL: all);
 * 0 if d does not exist. */
static int count_below(const char *d, const char *suffix)
{
    struct stat st;

    if (lstat(d, &st) < 0)
        return 0;
    walk_count = 0;
    walk_suffix = suffix;
    CHECK_EQ(nftw(d, count_one, 16, FTW_PHYS), 0);
    return walk_count;
}

static void mkdirs(const char *p)
{
    char *c = pathf("%s", p);
    size_t i;

    for (i = 1; c[i]; i++) {
        if (c[i] != '/')
            continue;
        c[i] = '\0';
        CHECK(mkdir(c, 0755) == 0 || errno == EEXIST);
        c[i] = '/';
    }
    CHECK(mkdir(c, 0755) == 0 || errno == EEXIST);
    free(c);
}

static uint8_t *slurp(const char *p, size_t *len)
{
    struct stat st;
    uint8_t *buf;
    int fd = open(p, O_RDONLY);

    CHECK(fd >= 0);
    CHECK_EQ(fstat(fd, &st), 0);
    buf = check_malloc((size_t)st.st_size);
    CHECK_EQ(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static void spew(const char *p, const void *data, size_t len)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    CHECK(fd >= 0);
    CHECK_EQ(write(fd, data, len), (long long)len);
    CHECK_EQ(close(fd), 0);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    size_t i;

    for (i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Open file descriptors: error paths must close theirs. */
static int count_fds(void)
{
    return count_below("/proc/self/fd", NULL);
}

/* --- test data in the store ------------------------------------------------- */

struct tfile {
    const char *path;
    uint64_t size;
    uint8_t *data;
    uint8_t sha[32];
    char etag[SNAPSHOT_ETAG_MAX + 1];
};

/* Sorted by path, as the snapshot lists them. sub/copy.bin has the bytes of
 * sub/dir/weights.bin (one etag, one blob); config.json and empty.txt have 40-digit
 * (git) etags, the others their sha256 as LFS files do. */
static struct tfile files[] = {
    {.path = "config.json", .size = 1000},
    {.path = "empty.txt", .size = 0},
    {.path = "model.safetensors", .size = PROTO_PIECE_LEN + 123457},
    {.path = "sub/copy.bin", .size = 300000},
    {.path = "sub/dir/weights.bin", .size = 300000},
};
#define N_FILES (sizeof(files) / sizeof(files[0]))

static void quiet_log(void *arg, enum store_log_level lvl, const char *msg)
{
    (void)arg;
    (void)lvl;
    (void)msg;
}

/* Stores pieces [first, last) of a file with id `id` whose bytes are data[0..size):
 * chunked and hashed as a node would. */
static void put_pieces(const uint8_t id[32], const uint8_t *data, uint64_t size, uint32_t first,
                       uint32_t last)
{
    struct hasher_piece *p = check_malloc(sizeof(*p));
    struct store_chunk *c = check_malloc(PROTO_CHUNKS_PER_PIECE * sizeof(*c));
    uint32_t i, k;

    for (i = first; i < last; i++) {
        uint64_t off = (uint64_t)i * PROTO_PIECE_LEN;
        uint64_t len = size - off < PROTO_PIECE_LEN ? size - off : PROTO_PIECE_LEN;
        p->index = i;
        p->offset = off;
        hasher_piece_compute(p, data + off, (uint32_t)len);
        for (k = 0; k < p->n_chunks; k++) {
            memcpy(c[k].hash, p->chunks[k].hash, CHASH_LEN);
            c[k].len = (uint32_t)p->chunks[k].len;
            c[k].data = data + off;
            off += c[k].len;
        }
        CHECK_EQ(store_put_piece(store, id, i, p->hash, c, p->n_chunks), 0);
    }
    free(c);
    free(p);
}

static uint32_t pieces_of(uint64_t size)
{
    return (uint32_t)((size + PROTO_PIECE_LEN - 1) / PROTO_PIECE_LEN);
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
    struct store_opts o = {.log = quiet_log};
    char why[256], *p;
    size_t i;

    CHECK(snprintf(base, sizeof(base), "%s/shoal-export-XXXXXX", tmp) < (int)sizeof(base));
    CHECK(mkdtemp(base) != NULL);
    p = pathf("%s/store", base);
    CHECK_EQ(store_open(p, &o, &store, why, sizeof(why)), 0);
    free(p);
    for (i = 0; i < N_FILES; i++) {
        struct tfile *f = &files[i];
        f->data = check_malloc(f->size);
        /* copy.bin and weights.bin share a seed: the same bytes. */
        check_fill_splitmix(f->data, f->size, i == 4 ? 3 : i);
        CHECK_EQ(sha256_digest(f->data, f->size, f->sha), 0);
        if (f->size == 0)
            snprintf(f->etag, sizeof(f->etag), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        else if (i == 0)
            hex(f->sha + 4, 20, f->etag);
        else
            hex(f->sha, 32, f->etag);
        if (i == 4)
            continue;
        put_pieces(f->sha, f->data, f->size, 0, pieces_of(f->size));
        CHECK_EQ(store_complete_file(store, f->sha, f->size), 0);
    }
}

static void teardown(void)
{
    size_t i;

    store_close(store);
    for (i = 0; i < N_FILES; i++)
        free(files[i].data);
    check_rmtree(base);
}

static void make_snapshot(struct snapshot *snap)
{
    size_t i;

    CHECK_EQ(snapshot_init(snap, REPO, COMMIT), 0);
    for (i = 0; i < N_FILES; i++)
        CHECK_EQ(snapshot_add(snap, files[i].path, files[i].size, files[i].sha, files[i].etag), 0);
    CHECK_EQ(snapshot_finish(snap), 0);
}

/* The JSON the checker reads: what each path must hold. */
static char *write_manifest(void)
{
    char *p = pathf("%s/manifest.json", base), sha[65];
    FILE *fp = fopen(p, "w");
    size_t i;

    CHECK(fp != NULL);
    fputs("[", fp);
    for (i = 0; i < N_FILES; i++) {
        hex(files[i].sha, 32, sha);
        fprintf(fp, "%s{\"path\": \"%s\", \"size\": %llu, \"sha256\": \"%s\", \"etag\": \"%s\"}",
                i ? ", " : "", files[i].path, (unsigned long long)files[i].size, sha,
                files[i].etag);
    }
    fputs("]\n", fp);
    CHECK_EQ(fclose(fp), 0);
    return p;
}

static void run_checker(const char *cache, const char *revision)
{
    char *manifest = write_manifest();
    char *cmd =
        pathf("python3 '%s' '%s' '%s' '%s' '%s'", HF_CACHE_CHECK, cache, REPO, revision, manifest);

    CHECK_EQ(system(cmd), 0);
    free(cmd);
    free(manifest);
}

static int progress_calls;

static void progress(void *arg, const struct snapshot_file *f, bool written)
{
    CHECK(arg == &progress_calls);
    CHECK(f != NULL && f->path != NULL);
    progress_calls++;
}

static int do_cache(const struct snapshot *snap, const char *cache, const char *rev,
                    struct export_stats *st, char *why, size_t why_len)
{
    return export_hf_cache(store, snap, cache, rev, progress, &progress_calls, st, why, why_len);
}

static void check_link(const char *cache, const char *path, const char *want)
{
    char *p = pathf("%s/" FOLDER "/snapshots/" COMMIT "/%s", cache, path);
    char buf[4096];
    ssize_t n = readlink(p, buf, sizeof(buf) - 1);

    CHECK(n > 0);
    buf[n] = '\0';
    CHECK_STR(buf, want);
    free(p);
}

static void check_ref(const char *cache, const char *rev)
{
    char *p = pathf("%s/" FOLDER "/refs/%s", cache, rev);
    size_t len;
    uint8_t *b = slurp(p, &len);

    CHECK_EQ(len, SNAPSHOT_COMMIT_LEN);
    CHECK_MEM(b, COMMIT, SNAPSHOT_COMMIT_LEN);
    free(b);
    free(p);
}

/* --- the cache -------------------------------------------------------------- */

static void test_cache(void)
{
    struct snapshot snap;
    struct export_stats st;
    char why[512], *cache = pathf("%s/cache", base), *p, *q, want[256];
    struct stat sb;

    make_snapshot(&snap);
    progress_calls = 0;
    CHECK_EQ(do_cache(&snap, cache, "main", &st, why, sizeof(why)), 0);
    CHECK_EQ(progress_calls, N_FILES);
    /* Five paths, four blobs: copy.bin and weights.bin share one. */
    CHECK_EQ(st.files_written, 4);
    CHECK_EQ(st.files_kept, 1);
    CHECK_EQ(st.bytes_written, files[0].size + files[2].size + files[3].size);
    check_ref(cache, "main");
    snprintf(want, sizeof(want), "../../blobs/%s", files[0].etag);
    check_link(cache, "config.json", want);
    snprintf(want, sizeof(want), "../../../blobs/%s", files[3].etag);
    check_link(cache, "sub/copy.bin", want);
    snprintf(want, sizeof(want), "../../../../blobs/%s", files[4].etag);
    check_link(cache, "sub/dir/weights.bin", want);
    p = pathf("%s/" FOLDER "/blobs/%s", cache, files[2].etag);
    CHECK_EQ(stat(p, &sb), 0);
    {
        mode_t mask = umask(022);
        umask(mask);
        CHECK_EQ(sb.st_mode & 0777, 0644 & ~mask);
    }
    run_checker(cache, "main");

    /* Again: everything is there already. */
    CHECK_EQ(do_cache(&snap, cache, "main", &st, why, sizeof(why)), 0);
    CHECK_EQ(st.files_written, 0);
    CHECK_EQ(st.files_kept, N_FILES);
    CHECK_EQ(st.bytes_written, 0);

    /* A truncated blob is rewritten; so is a wrong symlink, and a file where a
     * symlink belongs. */
    CHECK_EQ(truncate(p, (off_t)files[2].size - 1), 0);
    q = pathf("%s/" FOLDER "/snapshots/" COMMIT "/config.json", cache);
    CHECK_EQ(unlink(q), 0);
    CHECK_EQ(symlink("../../blobs/0000000000000000000000000000000000000000", q), 0);
    free(q);
    q = pathf("%s/" FOLDER "/snapshots/" COMMIT "/sub/dir/weights.bin", cache);
    CHECK_EQ(unlink(q), 0);
    spew(q, "not a link", 10);
    free(q);
    CHECK_EQ(do_cache(&snap, cache, "main", &st, why, sizeof(why)), 0);
    CHECK_EQ(st.files_written, 1);
    CHECK_EQ(st.files_kept, N_FILES - 1);
    CHECK_EQ(st.bytes_written, files[2].size);
    snprintf(want, sizeof(want), "../../blobs/%s", files[0].etag);
    check_link(cache, "config.json", want);
    run_checker(cache, "main");

    /* Revisions: the commit itself writes no ref, a nested one nests, NULL none. */
    CHECK_EQ(do_cache(&snap, cache, COMMIT, &st, why, sizeof(why)), 0);
    q = pathf("%s/" FOLDER "/refs/" COMMIT, cache);
    CHECK(access(q, F_OK) < 0);
    free(q);
    CHECK_EQ(do_cache(&snap, cache, "refs/pr/1", &st, why, sizeof(why)), 0);
    check_ref(cache, "refs/pr/1");
    CHECK_EQ(do_cache(&snap, cache, NULL, &st, why, sizeof(why)), 0);
    q = pathf("%s/" FOLDER "/refs", cache);
    CHECK_EQ(count_below(q, NULL), 4); /* main, refs/, refs/pr/, refs/pr/1 */
    free(q);
    run_checker(cache, "refs/pr/1");
    run_checker(cache, COMMIT);
    CHECK_EQ(count_below(cache, ".incomplete"), 0);

    free(p);
    free(cache);
    snapshot_release(&snap);
}

/* --- a plain directory ------------------------------------------------------ */

static void check_local(const char *dir)
{
    size_t i, len;

    for (i = 0; i < N_FILES; i++) {
        char *p = pathf("%s/%s", dir, files[i].path);
        struct stat sb;
        uint8_t *b;
        CHECK_EQ(lstat(p, &sb), 0);
        CHECK(S_ISREG(sb.st_mode));
        b = slurp(p, &len);
        CHECK_EQ(len, files[i].size);
        CHECK_MEM(b, files[i].data, len);
        free(b);
        free(p);
    }
    CHECK_EQ(count_below(dir, ".incomplete"), 0);
}

static void test_local(void)
{
    struct snapshot snap;
    struct export_stats st;
    char why[512], *dir = pathf("%s/local/a/b", base), *p, *victim;
    uint8_t *b;
    size_t len;

    make_snapshot(&snap);
    progress_calls = 0;
    CHECK_EQ(export_local_dir(store, &snap, dir, progress, &progress_calls, &st, why, sizeof(why)),
             0);
    CHECK_EQ(progress_calls, N_FILES);
    CHECK_EQ(st.files_written, N_FILES);
    CHECK_EQ(st.files_kept, 0);
    CHECK_EQ(st.bytes_written, files[0].size + files[2].size + 2 * files[3].size);
    check_local(dir);

    CHECK_EQ(export_local_dir(store, &snap, dir, NULL, NULL, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.files_written, 0);
    CHECK_EQ(st.files_kept, N_FILES);

    /* Same size, one byte changed: replaced. A symlink where a file belongs is
     * replaced too, and what it pointed to is left alone. */
    p = pathf("%s/config.json", dir);
    b = slurp(p, &len);
    b[500] ^= 1;
    spew(p, b, len);
    free(b);
    free(p);
    victim = pathf("%s/victim", base);
    spew(victim, "victim", 6);
    p = pathf("%s/sub/dir/weights.bin", dir);
    CHECK_EQ(unlink(p), 0);
    CHECK_EQ(symlink(victim, p), 0);
    free(p);
    p = pathf("%s/model.safetensors", dir);
    CHECK_EQ(truncate(p, 1000), 0);
    free(p);
    CHECK_EQ(export_local_dir(store, &snap, dir, NULL, NULL, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.files_written, 3);
    CHECK_EQ(st.files_kept, 2);
    check_local(dir);
    b = slurp(victim, &len);
    CHECK_EQ(len, 6);
    CHECK_MEM(b, "victim", 6);
    free(b);
    CHECK_EQ(unlink(victim), 0);
    free(victim);
    snapshot_release(&snap);

    /* A leaf name near NAME_MAX: its temporary name is cut to fit. */
    {
        char name[260];
        memset(name, 'n', 250);
        memcpy(name, "long/", 5);
        name[250] = '\0';
        CHECK_EQ(snapshot_init(&snap, REPO, COMMIT), 0);
        CHECK_EQ(snapshot_add(&snap, name, files[0].size, files[0].sha, files[0].etag), 0);
        CHECK_EQ(snapshot_finish(&snap), 0);
        CHECK_EQ(export_local_dir(store, &snap, dir, NULL, NULL, &st, why, sizeof(why)), 0);
        CHECK_EQ(st.files_written, 1);
        p = pathf("%s/%s", dir, name);
        b = slurp(p, &len);
        CHECK_EQ(len, files[0].size);
        CHECK_MEM(b, files[0].data, len);
        free(b);
        free(p);
        CHECK_EQ(count_below(dir, ".incomplete"), 0);
    }

    free(dir);
    snapshot_release(&snap);
}

/* --- names that try to leave the target -------------------------------------- */

/* A snapshot of one file built by hand, bypassing snapshot_add's validation. */
static void hand_snapshot(struct snapshot *snap, struct snapshot_file *f, const char *path)
{
    memset(snap, 0, sizeof(*snap));
    snprintf(snap->repo, sizeof(snap->repo), "%s", REPO);
    snprintf(snap->commit, sizeof(snap->commit), "%s", COMMIT);
    memset(f, 0, sizeof(*f));
    f->path = (char *)path;
    f->size = files[3].size;
    memcpy(f->sha256, files[3].sha, 32);
    snprintf(f->etag, sizeof(f->etag), "%s", files[3].etag);
    snap->n_files = 1;
    snap->files = f;
}

static void expect_rejected(const struct snapshot *snap, const char *rev)
{
    char why[512] = "", *area = pathf("%s/attack", base), *cache, *dir;
    struct export_stats st;

    cache = pathf("%s/in/cache", area);
    dir = pathf("%s/in/dir", area);
    CHECK_EQ(export_hf_cache(store, snap, cache, rev, NULL, NULL, &st, why, sizeof(why)), -EINVAL);
    CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
    CHECK_EQ(st.files_written, 0);
    if (!rev) {
        why[0] = '\0';
        CHECK_EQ(export_local_dir(store, snap, dir, NULL, NULL, &st, why, sizeof(why)), -EINVAL);
        CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
    }
    /* Nothing at all: the names are checked before anything is created. */
    CHECK_EQ(count_below(area, NULL), 0);
    CHECK(access("/abs", F_OK) < 0);
    free(dir);
    free(cache);
    free(area);
}

static void test_bad_names(void)
{
    static const char *bad_paths[] = {
        "../evil", "/abs", "a/../../b", "a/./b",       "",     ".",  "a//b",
        "a/",      "a\\b", "x/\ny",     ".git/config", "a/..", "..",
    };
    static const char *bad_revs[] = {"../x", "-x", "a//b", "a/", "/a", "a b", "a/..", ""};
    struct snapshot snap, two;
    struct snapshot_file f, pair[2];
    char *area = pathf("%s/attack", base);
    int fds = count_fds();
    size_t i;

    mkdirs(area);
    for (i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        hand_snapshot(&snap, &f, bad_paths[i]);
        expect_rejected(&snap, NULL);
    }
    hand_snapshot(&snap, &f, "ok.bin");
    snprintf(f.etag, sizeof(f.etag), "../../x");
    expect_rejected(&snap, NULL);
    /* A 64-digit etag that is not the content's sha256. */
    snprintf(f.etag, sizeof(f.etag), "%s", files[2].etag);
    expect_rejected(&snap, NULL);
    hand_snapshot(&snap, &f, "ok.bin");
    snprintf(snap.repo, sizeof(snap.repo), "model/../x");
    expect_rejected(&snap, NULL);
    hand_snapshot(&snap, &f, "ok.bin");
    snprintf(snap.commit, sizeof(snap.commit), "../0123456789abcdef0123456789abcdef01234");
    expect_rejected(&snap, NULL);
    /* No terminating NUL in the fixed-size fields. */
    hand_snapshot(&snap, &f, "ok.bin");
    memset(snap.commit, 'a', sizeof(snap.commit));
    expect_rejected(&snap, NULL);
    hand_snapshot(&snap, &f, "ok.bin");
    for (i = 0; i < sizeof(bad_revs) / sizeof(bad_revs[0]); i++)
        expect_rejected(&snap, bad_revs[i]);
    /* One etag for two contents. */
    hand_snapshot(&two, &pair[0], "a.bin");
    pair[1] = pair[0];
    pair[1].path = "b.bin";
    snprintf(pair[0].etag, sizeof(pair[0].etag), "%s", files[0].etag);
    snprintf(pair[1].etag, sizeof(pair[1].etag), "%s", files[0].etag);
    pair[1].size++;
    two.n_files = 2;
    expect_rejected(&two, NULL);
    CHECK_EQ(count_fds(), fds);
    check_rmtree(area);
    free(area);
}

/* --- symlinks planted in the target ----------------------------------------- */

static void test_planted_links(void)
{
    struct snapshot snap;
    struct export_stats st;
    char why[512], *out = pathf("%s/outside", base), *cache, *p;
    int r, fds;

    make_snapshot(&snap);
    mkdirs(out);

    /* blobs/ pointing outside. */
    cache = pathf("%s/planted1", base);
    p = pathf("%s/" FOLDER, cache);
    mkdirs(p);
    free(p);
    p = pathf("%s/" FOLDER "/blobs", cache);
    CHECK_EQ(symlink(out, p), 0);
    free(p);
    r = export_hf_cache(store, &snap, cache, "main", NULL, NULL, &st, why, sizeof(why));
    CHECK(r == -EINVAL || r == -ELOOP || r == -ENOTDIR);
    CHECK(strstr(why, "blobs") != NULL);
    CHECK_EQ(count_below(out, NULL), 0);
    check_rmtree(cache);
    free(cache);

    /* The repo folder itself pointing outside. */
    cache = pathf("%s/planted2", base);
    mkdirs(cache);
    p = pathf("%s/" FOLDER, cache);
    CHECK_EQ(symlink(out, p), 0);
    free(p);
    r = export_hf_cache(store, &snap, cache, "main", NULL, NULL, &st, why, sizeof(why));
    CHECK(r == -EINVAL || r == -ELOOP || r == -ENOTDIR);
    CHECK_EQ(count_below(out, NULL), 0);
    check_rmtree(cache);
    free(cache);

    /* A directory inside the snapshot replaced by a link outside, then refs/. */
    cache = pathf("%s/planted3", base);
    CHECK_EQ(export_hf_cache(store, &snap, cache, NULL, NULL, NULL, &st, why, sizeof(why)), 0);
    fds = count_fds();
    p = pathf("%s/" FOLDER "/snapshots/" COMMIT "/sub", cache);
    check_rmtree(p);
    CHECK_EQ(symlink(out, p), 0);
    free(p);
    r = export_hf_cache(store, &snap, cache, "main", NULL, NULL, &st, why, sizeof(why));
    CHECK(r == -EINVAL || r == -ELOOP || r == -ENOTDIR);
    CHECK(strstr(why, "sub/") != NULL);
    CHECK_EQ(count_below(out, NULL), 0);
    p = pathf("%s/" FOLDER "/snapshots/" COMMIT "/sub", cache);
    CHECK_EQ(unlink(p), 0);
    free(p);
    p = pathf("%s/" FOLDER "/refs", cache);
    CHECK_EQ(symlink(out, p), 0);
    free(p);
    r = export_hf_cache(store, &snap, cache, "main", NULL, NULL, &st, why, sizeof(why));
    CHECK(r == -EINVAL || r == -ELOOP || r == -ENOTDIR);
    CHECK_EQ(count_below(out, NULL), 0);
    r = export_hf_cache(store, &snap, cache, "refs/pr/2", NULL, NULL, &st, why, sizeof(why));
    CHECK(r == -EINVAL || r == -ELOOP || r == -ENOTDIR);
    CHECK_EQ(count_below(out, NULL), 0);
    CHECK_EQ(count_below(cache, ".incomplete"), 0);
    CHECK_EQ(count_fds(), fds);
    check_rmtree(cache);
    free(cache);

    /* A plain directory with a sub-directory pointing outside. */
    cache = pathf("%s/planted4", base);
    mkdirs(cache);
    p = pathf("%s/sub", cache);
    CHECK_EQ(symlink(out, p), 0);
    free(p);
    r = export_local_dir(store, &snap, cache, NULL, NULL, &st, why, sizeof(why));
    CHECK(r == -EINVAL || r == -ELOOP || r == -ENOTDIR);
    CHECK(strstr(why, "sub/") != NULL);
    CHECK_EQ(count_below(out, NULL), 0);
    CHECK_EQ(count_below(cache, ".incomplete"), 0);
    check_rmtree(cache);
    free(cache);

    check_rmtree(out);
    free(out);
    snapshot_release(&snap);
}

/* --- an incomplete or damaged store ----------------------------------------- */

static void test_incomplete(void)
{
    uint64_t size = PROTO_PIECE_LEN + 1000;
    uint8_t *data = check_malloc(size), sha[32];
    struct snapshot snap;
    struct export_stats st;
    char why[512], etag[65], *cache = pathf("%s/inc-cache", base);
    char *dir = pathf("%s/inc-dir", base);

    /* Only the second piece stored: not complete. */
    check_fill_splitmix(data, size, 20);
    CHECK_EQ(sha256_digest(data, size, sha), 0);
    hex(sha, 32, etag);
    put_pieces(sha, data, size, 1, 2);
    CHECK_EQ(snapshot_init(&snap, REPO, COMMIT), 0);
    CHECK_EQ(snapshot_add(&snap, "config.json", files[0].size, files[0].sha, files[0].etag), 0);
    CHECK_EQ(snapshot_add(&snap, "part/ial.bin", size, sha, etag), 0);
    CHECK_EQ(snapshot_finish(&snap), 0);
    CHECK_EQ(export_hf_cache(store, &snap, cache, "main", NULL, NULL, &st, why, sizeof(why)),
             -ENOENT);
    CHECK(strstr(why, "part/ial.bin") != NULL);
    CHECK_EQ(st.files_written, 1); /* config.json came first and stays */
    CHECK_EQ(count_below(cache, ".incomplete"), 0);
    CHECK_EQ(count_below(cache, etag), 0);
    CHECK_EQ(count_below(cache, "main"), 0);
    CHECK_EQ(export_local_dir(store, &snap, dir, NULL, NULL, &st, why, sizeof(why)), -ENOENT);
    CHECK(strstr(why, "part/ial.bin") != NULL);
    CHECK_EQ(count_below(dir, ".incomplete"), 0);
    CHECK_EQ(count_below(dir, "ial.bin"), 0);
    snapshot_release(&snap);

    /* Not in the store at all. */
    sha[0] ^= 1;
    hex(sha, 32, etag);
    CHECK_EQ(snapshot_init(&snap, REPO, COMMIT), 0);
    CHECK_EQ(snapshot_add(&snap, "absent.bin", size, sha, etag), 0);
    CHECK_EQ(snapshot_finish(&snap), 0);
    CHECK_EQ(export_hf_cache(store, &snap, cache, "main", NULL, NULL, &st, why, sizeof(why)),
             -ENOENT);
    CHECK(strstr(why, "absent.bin") != NULL);
    CHECK_EQ(export_local_dir(store, &snap, dir, NULL, NULL, &st, why, sizeof(why)), -ENOENT);
    CHECK(strstr(why, "absent.bin") != NULL);
    snapshot_release(&snap);

    check_rmtree(dir);
    check_rmtree(cache);
    free(dir);
    free(cache);
    free(data);
}

static void test_damaged(void)
{
    uint64_t size = 200000;
    uint8_t *good = check_malloc(size), *bad = check_malloc(size), sha[32];
    struct snapshot snap;
    struct snapshot_file f;
    struct export_stats st;
    char why[512], etag[65], *cache = pathf("%s/dmg-cache", base);
    char *dir = pathf("%s/dmg-dir", base);

    /* The store believes file `sha` holds `good`, but its chunks hold `bad`:
     * store_put_piece trusts the caller, as a damaged disk would. */
    check_fill_splitmix(good, size, 30);
    check_fill_splitmix(bad, size, 31);
    CHECK_EQ(sha256_digest(good, size, sha), 0);
    hex(sha, 32, etag);
    put_pieces(sha, bad, size, 0, 1);
    CHECK_EQ(store_complete_file(store, sha, size), 0);
    CHECK_EQ(snapshot_init(&snap, REPO, COMMIT), 0);
    CHECK_EQ(snapshot_add(&snap, "d/amaged.bin", size, sha, etag), 0);
    CHECK_EQ(snapshot_finish(&snap), 0);
    CHECK_EQ(export_hf_cache(store, &snap, cache, "main", NULL, NULL, &st, why, sizeof(why)),
             SHOAL_EHASH);
    CHECK(strstr(why, "d/amaged.bin") != NULL);
    CHECK_EQ(st.files_written, 0);
    CHECK_EQ(count_below(cache, etag), 0);
    CHECK_EQ(count_below(cache, ".incomplete"), 0);
    CHECK_EQ(count_below(cache, "main"), 0);
    CHECK_EQ(export_local_dir(store, &snap, dir, NULL, NULL, &st, why, sizeof(why)), SHOAL_EHASH);
    CHECK(strstr(why, "d/amaged.bin") != NULL);
    CHECK_EQ(count_below(dir, "amaged.bin"), 0);
    CHECK_EQ(count_below(dir, ".incomplete"), 0);

    /* A snapshot whose size disagrees with the store's for the same sha256. */
    f = snap.files[0];
    memcpy(f.sha256, files[3].sha, 32);
    snprintf(f.etag, sizeof(f.etag), "%s", files[3].etag);
    f.size = files[3].size + 1;
    {
        struct snapshot one = snap;
        one.n_files = 1;
        one.files = &f;
        CHECK_EQ(export_local_dir(store, &one, dir, NULL, NULL, &st, why, sizeof(why)),
                 SHOAL_EHASH);
        CHECK(strstr(why, "d/amaged.bin") != NULL);
    }
    snapshot_release(&snap);

    check_rmtree(dir);
    check_rmtree(cache);
    free(dir);
    free(cache);
    free(good);
    free(bad);
}

/* --- streamed blobs ---------------------------------------------------------- */

static void test_stream(void)
{
    struct snapshot snap;
    struct snapshot_file sf;
    struct export_stream *x;
    struct export_stats st;
    const struct tfile *f = &files[2]; /* the multi-piece file */
    char why[512], *cache = pathf("%s/stream-cache", base), *blob;
    size_t len, half = PROTO_PIECE_LEN / 2;
    uint8_t *back;

    make_snapshot(&snap);
    sf = *snapshot_find(&snap, f->path);
    blob = pathf("%s/" FOLDER "/blobs/%s", cache, f->etag);

    /* Aborted: no blob, no temporary file left. */
    CHECK_EQ(export_stream_open(cache, REPO, &sf, &x, why, sizeof(why)), 0);
    CHECK(x != NULL);
    CHECK_EQ(export_stream_write(x, f->data, half), 0);
    CHECK_EQ(count_below(cache, ".incomplete"), 1);
    export_stream_abort(x);
    CHECK(access(blob, F_OK) < 0);
    CHECK_EQ(count_below(cache, ".incomplete"), 0);

    /* Too few bytes: refused at commit, nothing under the final name. */
    CHECK_EQ(export_stream_open(cache, REPO, &sf, &x, why, sizeof(why)), 0);
    CHECK_EQ(export_stream_write(x, f->data, half), 0);
    CHECK_EQ(export_stream_commit(x, why, sizeof(why)), -EIO);
    CHECK(strstr(why, f->path) != NULL);
    CHECK(access(blob, F_OK) < 0);

    /* Too many: refused at the write. */
    CHECK_EQ(export_stream_open(cache, REPO, &sf, &x, why, sizeof(why)), 0);
    CHECK_EQ(export_stream_write(x, f->data, f->size), 0);
    CHECK_EQ(export_stream_write(x, f->data, 1), -EFBIG);
    export_stream_abort(x);

    /* In pieces of odd sizes, committed: the blob holds the bytes, and the export
     * then keeps it and only adds links. */
    CHECK_EQ(export_stream_open(cache, REPO, &sf, &x, why, sizeof(why)), 0);
    for (size_t off = 0; off < f->size; off += 3000001) {
        size_t n = f->size - off < 3000001 ? f->size - off : 3000001;
        CHECK_EQ(export_stream_write(x, f->data + off, n), 0);
    }
    CHECK_EQ(export_stream_commit(x, why, sizeof(why)), 0);
    back = slurp(blob, &len);
    CHECK_EQ(len, f->size);
    CHECK_MEM(back, f->data, f->size);
    free(back);
    CHECK_EQ(count_below(cache, ".incomplete"), 0);
    /* Present with the right size: nothing to stream. */
    CHECK_EQ(export_stream_open(cache, REPO, &sf, &x, why, sizeof(why)), 0);
    CHECK(x == NULL);
    CHECK_EQ(do_cache(&snap, cache, "main", &st, why, sizeof(why)), 0);
    CHECK_EQ(st.files_kept, 2); /* this blob, and copy.bin sharing weights.bin's */
    run_checker(cache, "main");

    free(blob);
    free(cache);
    snapshot_release(&snap);
}

int main(void)
{
    setup();
    RUN(test_cache);
    RUN(test_local);
    RUN(test_bad_names);
    RUN(test_planted_links);
    RUN(test_incomplete);
    RUN(test_damaged);
    RUN(test_stream);
    teardown();
    return check_done();
}
