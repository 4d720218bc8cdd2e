/* test_store.c - the RocksDB store: operations, dedup, a model-based test, the
 * consistency check against damage, quotas, and kill -9 at random moments. */
#include "store.h"

#include "import.h"

#include "check.h"
#include "err.h"
#include "hasher.h"
#include "proto_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* --- helpers ---------------------------------------------------------------- */

/* The store's column families (docs/storage.md), for tests that open it raw. */
static const char *const cf_names[] = {
    "default", "chunks", "files", "manifests", "snapshots", "refs", "pins",
};
#define N_CF ((int)(sizeof(cf_names) / sizeof(cf_names[0])))

static int atoi_checked(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);

    CHECK(end != s);
    return (int)v;
}

static int quiet_level = 1;

static void quiet_log(void *arg, enum store_log_level lvl, const char *msg)
{
    if ((int)lvl < quiet_level)
        fprintf(stderr, "   store log: %s\n", msg);
}

static struct store *open_store(const char *dir, uint64_t quota)
{
    struct store_opts o = {.quota = quota, .log = quiet_log};
    struct store *s = NULL;
    char why[512];
    int r = store_open(dir, &o, &s, why, sizeof(why));

    if (r < 0)
        check__fail(__FILE__, __LINE__, "store_open: %s (%s)", why, shoal_strerror(r));
    return s;
}

/* A file made of real data, hashed as the node would. */
struct tfile {
    uint8_t id[32];
    uint64_t size;
    uint8_t *data;
    uint32_t n_pieces;
    struct hasher_piece **pieces;
};

static void tfile_make(struct tfile *f, const uint8_t *data, uint64_t size)
{
    uint32_t i;

    f->size = size;
    f->data = (uint8_t *)data;
    f->n_pieces = (uint32_t)((size + PROTO_PIECE_LEN - 1) / PROTO_PIECE_LEN);
    f->pieces = check_malloc(f->n_pieces * sizeof(*f->pieces));
    CHECK_EQ(sha256_digest(data, size, f->id), 0);
    for (i = 0; i < f->n_pieces; i++) {
        uint64_t off = (uint64_t)i * PROTO_PIECE_LEN;
        uint64_t len = size - off < PROTO_PIECE_LEN ? size - off : PROTO_PIECE_LEN;
        f->pieces[i] = check_malloc(sizeof(struct hasher_piece));
        f->pieces[i]->index = i;
        f->pieces[i]->offset = off;
        hasher_piece_compute(f->pieces[i], data + off, (uint32_t)len);
    }
}

static void tfile_free(struct tfile *f)
{
    uint32_t i;

    for (i = 0; i < f->n_pieces; i++)
        free(f->pieces[i]);
    free(f->pieces);
}

static int put_piece(struct store *s, const struct tfile *f, uint32_t i)
{
    const struct hasher_piece *p = f->pieces[i];
    struct store_chunk *c = check_malloc(p->n_chunks * sizeof(*c));
    uint64_t off = p->offset;
    uint32_t k;
    int r;

    for (k = 0; k < p->n_chunks; k++) {
        memcpy(c[k].hash, p->chunks[k].hash, 32);
        c[k].len = (uint32_t)p->chunks[k].len;
        c[k].data = f->data + off;
        off += c[k].len;
    }
    r = store_put_piece(s, f->id, i, p->hash, c, p->n_chunks);
    free(c);
    return r;
}

static void ingest(struct store *s, const struct tfile *f)
{
    uint32_t i;

    for (i = 0; i < f->n_pieces; i++)
        CHECK_EQ(put_piece(s, f, i), 0);
    CHECK_EQ(store_complete_file(s, f->id, f->size), 0);
}

/* Reads a complete file back through its manifest and compares the bytes. */
static void read_back(struct store *s, const struct tfile *f)
{
    struct manifest m;
    uint8_t *buf = check_malloc(PROTO_CHUNK_MAX);
    uint64_t off = 0, k;
    uint32_t len;

    CHECK_EQ(store_get_manifest(s, f->id, &m), 0);
    CHECK_EQ(m.size, f->size);
    CHECK_MEM(m.sha256, f->id, 32);
    CHECK_EQ(manifest_check(&m), 0);
    for (k = 0; k < m.n_chunks; k++) {
        CHECK_EQ(store_get_chunk(s, m.chunks[k].hash, buf, PROTO_CHUNK_MAX, &len), 0);
        CHECK_EQ(len, m.chunks[k].len);
        CHECK_MEM(buf, f->data + off, len);
        off += len;
    }
    CHECK_EQ(off, f->size);
    manifest_release(&m);
    free(buf);
}

static void check_clean(struct store *s)
{
    struct store_fsck r;

    CHECK_EQ(store_check(s, false, &r), 0);
    CHECK_EQ(r.missing_chunks + r.bad_chunks + r.bad_pieces + r.bad_refcounts +
                 r.orphan_chunks + r.broken_files + r.bad_totals,
             0);
}

/* --- tests ------------------------------------------------------------------ */

/* Direct-I/O pack writes: the same bytes come back, through a reopen with buffered
 * writes. A file system without O_DIRECT (tmpfs before Linux 6.6) refuses it at open:
 * then there is nothing to check here, and shoald reports the refusal to the operator.
 * The default (auto) opens either way. */
static void test_direct_writes(void)
{
    char *d = check_tmpdir("store");
    struct store_opts o = {.writes = STORE_WRITES_DIRECT, .log = quiet_log};
    size_t size = PROTO_PIECE_LEN + 777777;
    uint8_t *data = check_malloc(size);
    struct store *s = NULL;
    struct tfile f;
    char why[512];
    int r;

    check_fill_splitmix(data, size, 41);
    tfile_make(&f, data, size);
    quiet_level = 0;
    r = store_open(d, &o, &s, why, sizeof(why));
    quiet_level = 1;
    if (r < 0) {
        printf("   direct I/O not available here (%s): skipped\n", why);
    } else {
        ingest(s, &f);
        store_close(s);
        o.writes = STORE_WRITES_BUFFERED;
        CHECK_EQ(store_open(d, &o, &s, why, sizeof(why)), 0);
        read_back(s, &f);
        check_clean(s);
        store_close(s);
    }
    o.writes = STORE_WRITES_AUTO;
    CHECK_EQ(store_open(d, &o, &s, why, sizeof(why)), 0);
    store_close(s);
    tfile_free(&f);
    free(data);
    check_rmtree(d);
    free(d);
}

static void test_open_and_schema(void)
{
    char *d = check_tmpdir("store"), why[512];
    struct store *s = open_store(d, 0);
    struct store_stats st;
    rocksdb_options_t *o;
    rocksdb_t *db;
    char *err = NULL;

    CHECK_EQ(store_stats(s, &st), 0);
    CHECK_EQ(st.chunks + st.files + st.physical_bytes + st.logical_bytes, 0);
    store_close(s);
    s = open_store(d, 0); /* reopens */
    store_close(s);

    /* A store written by another schema version is refused, saying what to do. */
    {
        rocksdb_options_t *cfo[N_CF];
        rocksdb_column_family_handle_t *h[N_CF];
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        int i;
        o = rocksdb_options_create();
        for (i = 0; i < N_CF; i++)
            cfo[i] = o;
        db = rocksdb_open_column_families(o, d, N_CF, cf_names,
                                          (const rocksdb_options_t *const *)cfo, h, &err);
        CHECK(err == NULL);
        rocksdb_put_cf(db, wo, h[0], "schema", 6, "99", 2, &err);
        CHECK(err == NULL);
        for (i = 0; i < N_CF; i++)
            rocksdb_column_family_handle_destroy(h[i]);
        rocksdb_close(db);
        rocksdb_writeoptions_destroy(wo);
        rocksdb_options_destroy(o);
    }
    CHECK_EQ(store_open(d, NULL, &s, why, sizeof(why)), SHOAL_EVERSION);
    CHECK(strstr(why, "schema version 99") != NULL);
    CHECK(strstr(why, "move the directory aside") != NULL);
    check_rmtree(d);

    /* Some other RocksDB database is not taken for a store. */
    o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    db = rocksdb_open(o, d, &err);
    CHECK(err == NULL);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    CHECK_EQ(store_open(d, NULL, &s, why, sizeof(why)), SHOAL_EVERSION);
    CHECK(strstr(why, "not a Shoal store") != NULL);
    check_rmtree(d);
    free(d);
}

struct batch_ctx {
    const struct hasher_piece *piece;
    const uint8_t *data; /* the piece's bytes */
    uint64_t off;
    uint32_t seen;
};

static int on_batch(void *arg, size_t i, const uint8_t *data, size_t len)
{
    struct batch_ctx *c = arg;

    CHECK_EQ(i, c->seen);
    c->seen++;
    if (i == c->piece->n_chunks) {
        CHECK(data == NULL && len == 0); /* the unknown hash */
        return 0;
    }
    CHECK_EQ(len, c->piece->chunks[i].len);
    CHECK_MEM(data, c->data + c->off, len);
    c->off += len;
    return 0;
}

/* Reads piece i of an incomplete or complete file back and compares the bytes. */
struct piece_cursor {
    const uint8_t *want;
    size_t off;
};

static int piece_cmp(void *arg, const uint8_t *data, size_t len)
{
    struct piece_cursor *c = arg;

    if (memcmp(c->want + c->off, data, len) != 0)
        return -EILSEQ;
    c->off += len;
    return 0;
}

static void check_piece_bytes(struct store *s, const struct tfile *f, uint32_t i)
{
    struct piece_cursor c = {.want = f->data + f->pieces[i]->offset};

    CHECK_EQ(store_read_piece(s, f->id, i, piece_cmp, &c), 0);
    CHECK_EQ(c.off, f->pieces[i]->len);
}

static void test_file_roundtrip_and_dedup(void)
{
    char *d = check_tmpdir("store");
    struct store *s = open_store(d, 0);
    size_t size_a = PROTO_PIECE_LEN + 3000000, size_b = PROTO_PIECE_LEN + 5000000;
    uint8_t *a = check_malloc(size_a), *b = check_malloc(size_b);
    struct tfile fa, fb;
    struct store_file info;
    struct store_stats st;
    bool have[4];
    uint8_t hashes[4][32];
    int r;

    /* b shares a's first piece exactly and differs after it. */
    check_fill_splitmix(a, size_a, 1);
    memcpy(b, a, PROTO_PIECE_LEN);
    check_fill_splitmix(b + PROTO_PIECE_LEN, size_b - PROTO_PIECE_LEN, 2);
    tfile_make(&fa, a, size_a);
    tfile_make(&fb, b, size_b);

    CHECK_EQ(store_file_info(s, fa.id, &info), -ENOENT);
    CHECK_EQ(store_has_piece(s, fa.id, 0), 0);
    CHECK_EQ(put_piece(s, &fa, 0), 0);
    CHECK_EQ(store_has_piece(s, fa.id, 0), 1);
    check_piece_bytes(s, &fa, 0);
    CHECK_EQ(store_read_piece(s, fa.id, 1, piece_cmp, &(struct piece_cursor){0}), -ENOENT);
    CHECK_EQ(store_file_info(s, fa.id, &info), 0);
    CHECK(!info.complete);
    CHECK_EQ(info.pieces, 1);
    /* Completing with a piece missing fails and marks nothing. */
    CHECK_EQ(store_complete_file(s, fa.id, fa.size), -ENOENT);
    CHECK_EQ(put_piece(s, &fa, 1), 0);
    CHECK_EQ(store_complete_file(s, fa.id, fa.size), 0);
    CHECK_EQ(store_complete_file(s, fa.id, fa.size), 0); /* idempotent */
    CHECK_EQ(store_file_info(s, fa.id, &info), 0);
    CHECK(info.complete);
    CHECK_EQ(info.size, fa.size);
    read_back(s, &fa);
    check_piece_bytes(s, &fa, 1);

    CHECK_EQ(store_stats(s, &st), 0);
    CHECK_EQ(st.logical_bytes, size_a);
    CHECK_EQ(st.physical_bytes, size_a); /* random data: no chunk repeats */
    CHECK_EQ(st.files, 1);
    CHECK_EQ(st.complete_files, 1);

    /* A piece stored again costs nothing. */
    CHECK_EQ(put_piece(s, &fa, 1), 0);
    CHECK_EQ(store_stats(s, &st), 0);
    CHECK_EQ(st.logical_bytes, size_a);

    /* b's first piece is a's: its chunks are stored once. */
    ingest(s, &fb);
    read_back(s, &fb);
    CHECK_EQ(store_stats(s, &st), 0);
    CHECK_EQ(st.logical_bytes, size_a + size_b);
    CHECK_EQ(st.physical_bytes, size_a + size_b - PROTO_PIECE_LEN);
    CHECK_EQ(st.files, 2);
    check_clean(s);

    /* Removing a keeps every chunk b needs. */
    CHECK_EQ(store_remove_file(s, fa.id), 0);
    CHECK_EQ(store_remove_file(s, fa.id), -ENOENT);
    CHECK_EQ(store_get_manifest(s, fa.id, &(struct manifest){0}), -ENOENT);
    read_back(s, &fb);
    CHECK_EQ(store_stats(s, &st), 0);
    CHECK_EQ(st.physical_bytes, size_b);
    CHECK_EQ(st.logical_bytes, size_b);
    CHECK_EQ(st.files, 1);
    check_clean(s);
    memcpy(hashes[0], fa.pieces[1]->chunks[0].hash, 32); /* only a had it */
    memcpy(hashes[1], fb.pieces[0]->chunks[0].hash, 32); /* shared */
    memcpy(hashes[2], fb.pieces[1]->chunks[3].hash, 32);
    memset(hashes[3], 7, 32);
    CHECK_EQ(store_has_chunks(s, (const uint8_t(*)[32])hashes, 4, have), 0);
    CHECK(!have[0] && have[1] && have[2] && !have[3]);

    /* A batched read of b's chunks, one unknown hash among them. */
    {
        const struct hasher_piece *p1 = fb.pieces[1];
        uint8_t (*hs)[32] = check_malloc((p1->n_chunks + 1) * 32);
        struct batch_ctx bc = {.piece = p1, .data = b + PROTO_PIECE_LEN};
        uint32_t k;
        for (k = 0; k < p1->n_chunks; k++)
            memcpy(hs[k], p1->chunks[k].hash, 32);
        memset(hs[p1->n_chunks], 9, 32);
        CHECK_EQ(store_get_chunks(s, (const uint8_t(*)[32])hs, p1->n_chunks + 1, on_batch, &bc),
                 0);
        CHECK_EQ(bc.seen, p1->n_chunks + 1);
        free(hs);
    }

    /* Survives a reopen. */
    store_close(s);
    s = open_store(d, 0);
    read_back(s, &fb);
    CHECK_EQ(store_remove_file(s, fb.id), 0);
    CHECK_EQ(store_stats(s, &st), 0);
    CHECK_EQ(st.chunks + st.physical_bytes + st.logical_bytes + st.files, 0);
    check_clean(s);

    /* Bad arguments. */
    {
        struct store_chunk c = {.len = PROTO_CHUNK_MAX + 1, .data = a};
        uint8_t h[32] = {0};
        CHECK_EQ(store_put_piece(s, fa.id, 0, h, &c, 1), -EINVAL);
        CHECK_EQ(store_put_piece(s, fa.id, 0, h, &c, 0), -EINVAL);
        r = store_get_chunk(s, h, a, 10, &(uint32_t){0});
        CHECK_EQ(r, -ENOENT);
    }
    store_close(s);
    tfile_free(&fa);
    tfile_free(&fb);
    free(a);
    free(b);
    check_rmtree(d);
    free(d);
}

/* --- model-based test ------------------------------------------------------- */

#define POOL     48  /* distinct chunks */
#define NFILES   12  /* single-piece files built from the pool */
#define MAXCH    6

struct mfile {
    uint8_t id[32];
    uint32_t n;
    uint32_t ch[MAXCH]; /* pool indexes; repeats allowed */
    uint8_t piece_hash[32];
    uint64_t len;
    bool stored, complete;
};

static uint8_t *pool_data[POOL];
static uint32_t pool_len[POOL];
static uint8_t pool_hash[POOL][32];

static void model_setup(struct mfile *f, uint64_t *st)
{
    struct chash_leaf leaves[MAXCH];
    uint32_t i, k;

    for (i = 0; i < POOL; i++) {
        pool_len[i] = PROTO_CHUNK_MIN + (uint32_t)(check_splitmix64(st) % 12000);
        pool_data[i] = check_malloc(pool_len[i]);
        check_fill_splitmix(pool_data[i], pool_len[i], 1000 + i);
        chash_chunk(pool_data[i], pool_len[i], pool_hash[i]);
    }
    for (i = 0; i < NFILES; i++) {
        f[i].n = 1 + (uint32_t)(check_splitmix64(st) % MAXCH);
        f[i].len = 0;
        for (k = 0; k < f[i].n; k++) {
            f[i].ch[k] = (uint32_t)(check_splitmix64(st) % POOL);
            memcpy(leaves[k].hash, pool_hash[f[i].ch[k]], 32);
            leaves[k].len = pool_len[f[i].ch[k]];
            f[i].len += leaves[k].len;
        }
        chash_piece_inplace(leaves, f[i].n, f[i].piece_hash);
        memset(f[i].id, 0, 32);
        f[i].id[0] = (uint8_t)i; /* ids need only be distinct here */
        f[i].stored = f[i].complete = false;
    }
}

static void model_compare(struct store *s, const struct mfile *f)
{
    uint32_t refs[POOL] = {0}, i, k;
    uint64_t chunks = 0, phys = 0, logical = 0, files = 0, complete = 0;
    struct store_stats st;
    struct store_file info;
    bool have[POOL];

    for (i = 0; i < NFILES; i++) {
        if (!f[i].stored)
            continue;
        files++;
        complete += f[i].complete;
        logical += f[i].len;
        for (k = 0; k < f[i].n; k++)
            refs[f[i].ch[k]]++;
    }
    for (i = 0; i < POOL; i++) {
        if (refs[i]) {
            chunks++;
            phys += pool_len[i];
        }
    }
    CHECK_EQ(store_stats(s, &st), 0);
    CHECK_EQ(st.chunks, chunks);
    CHECK_EQ(st.physical_bytes, phys);
    CHECK_EQ(st.logical_bytes, logical);
    CHECK_EQ(st.files, files);
    CHECK_EQ(st.complete_files, complete);
    CHECK_EQ(store_has_chunks(s, (const uint8_t(*)[32])pool_hash, POOL, have), 0);
    for (i = 0; i < POOL; i++)
        CHECK_EQ(have[i], refs[i] > 0);
    for (i = 0; i < NFILES; i++) {
        int r = store_file_info(s, f[i].id, &info);
        CHECK_EQ(r, f[i].stored ? 0 : -ENOENT);
        if (r == 0)
            CHECK_EQ(info.complete, f[i].complete);
    }
}

static void test_model(void)
{
    char *d = check_tmpdir("store");
    struct store *s = open_store(d, 0);
    struct mfile f[NFILES];
    struct store_chunk c[MAXCH];
    uint64_t st = 4242;
    int step, k;

    model_setup(f, &st);
    for (step = 0; step < 400; step++) {
        struct mfile *m = &f[check_splitmix64(&st) % NFILES];
        switch (check_splitmix64(&st) % 4) {
        case 0:
        case 1:
            for (k = 0; k < (int)m->n; k++) {
                memcpy(c[k].hash, pool_hash[m->ch[k]], 32);
                c[k].len = pool_len[m->ch[k]];
                c[k].data = pool_data[m->ch[k]];
            }
            CHECK_EQ(store_put_piece(s, m->id, 0, m->piece_hash, c, m->n), 0);
            m->stored = true;
            break;
        case 2:
            CHECK_EQ(store_complete_file(s, m->id, m->len), m->stored ? 0 : -ENOENT);
            m->complete = m->stored;
            break;
        case 3:
            CHECK_EQ(store_remove_file(s, m->id), m->stored ? 0 : -ENOENT);
            m->stored = m->complete = false;
            break;
        }
        model_compare(s, f);
        if (step % 50 == 49) {
            check_clean(s);
            store_close(s);
            s = open_store(d, 0);
            model_compare(s, f);
        }
    }
    store_close(s);
    for (k = 0; k < POOL; k++)
        free(pool_data[k]);
    check_rmtree(d);
    free(d);
}

/* --- damage and repair ------------------------------------------------------ */

/* Opens the store's database raw, to damage it as a disk or a bug could. `dir` is the
 * store's directory, for helpers that damage its pack files. */
typedef void (*tamper_fn)(const char *dir, rocksdb_t *, rocksdb_column_family_handle_t *,
                          const uint8_t *);

static rocksdb_column_family_handle_t *tamper_default; /* the default CF, during fn */

static void tamper(const char *dir, tamper_fn fn, const uint8_t *hash)
{
    rocksdb_options_t *o = rocksdb_options_create(), *cfo[N_CF];
    rocksdb_column_family_handle_t *h[N_CF];
    rocksdb_t *db;
    char *err = NULL;
    int i;

    for (i = 0; i < N_CF; i++)
        cfo[i] = o;
    db = rocksdb_open_column_families(o, dir, N_CF, cf_names,
                                      (const rocksdb_options_t *const *)cfo, h, &err);
    CHECK(err == NULL);
    tamper_default = h[0];
    fn(dir, db, h[1], hash);
    for (i = 0; i < N_CF; i++)
        rocksdb_column_family_handle_destroy(h[i]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

/* A chunk's index record (docs/storage.md): len, refs, pack (u32 LE), offset (u64 LE). */
struct where {
    uint32_t len, refs, pack;
    uint64_t off;
};

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;

    while (n--)
        v = v << 8 | p[n];
    return v;
}

static struct where where_is(rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                             const uint8_t *hash)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    uint8_t key[33] = {'M'};
    struct where w;
    char *err = NULL, *v;
    size_t n;

    memcpy(key + 1, hash, 32);
    v = rocksdb_get_cf(db, ro, cf, (const char *)key, sizeof(key), &n, &err);
    CHECK(err == NULL && v != NULL);
    CHECK_EQ(n, 20);
    w.len = (uint32_t)le((uint8_t *)v, 4);
    w.refs = (uint32_t)le((uint8_t *)v + 4, 4);
    w.pack = (uint32_t)le((uint8_t *)v + 8, 4);
    w.off = le((uint8_t *)v + 12, 8);
    rocksdb_free(v);
    rocksdb_readoptions_destroy(ro);
    return w;
}

static int open_pack(const char *dir, uint32_t pack, int flags)
{
    char path[4200];
    int fd;

    snprintf(path, sizeof(path), "%s/packs/%010u.pack", dir, pack);
    fd = open(path, flags, 0600);
    CHECK(fd >= 0);
    return fd;
}

/* The index forgets a chunk that pieces still use. */
static void drop_chunk(const char *dir, rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                       const uint8_t *hash)
{
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    uint8_t key[33] = {'M'};
    char *err = NULL;

    (void)dir;
    memcpy(key + 1, hash, 32);
    rocksdb_delete_cf(db, wo, cf, (const char *)key, sizeof(key), &err);
    CHECK(err == NULL);
    rocksdb_writeoptions_destroy(wo);
}

/* One bit of a chunk's bytes flips in its pack. */
static void flip_chunk(const char *dir, rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                       const uint8_t *hash)
{
    struct where w = where_is(db, cf, hash);
    int fd = open_pack(dir, w.pack, O_RDWR);
    uint8_t b;

    CHECK(w.len > 100);
    CHECK_EQ(pread(fd, &b, 1, (off_t)w.off + 100), 1);
    b ^= 1;
    CHECK_EQ(pwrite(fd, &b, 1, (off_t)w.off + 100), 1);
    close(fd);
}

/* The pack ends in the middle of a chunk (a lost tail). */
static void cut_pack(const char *dir, rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                     const uint8_t *hash)
{
    struct where w = where_is(db, cf, hash);
    int fd = open_pack(dir, w.pack, O_RDWR);

    CHECK_EQ(ftruncate(fd, (off_t)w.off + 10), 0);
    close(fd);
}

/* The live-bytes record of the pack that holds a chunk is lost. */
static void drop_pack_count(const char *dir, rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                            const uint8_t *hash)
{
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    struct where w = where_is(db, cf, hash);
    uint8_t key[5] = {'K', (uint8_t)(w.pack >> 24), (uint8_t)(w.pack >> 16),
                      (uint8_t)(w.pack >> 8), (uint8_t)w.pack};
    char *err = NULL;

    (void)dir;
    rocksdb_delete_cf(db, wo, cf, (const char *)key, sizeof(key), &err);
    CHECK(err == NULL);
    rocksdb_writeoptions_destroy(wo);
}

/* An index record, with its bytes in a pack of its own, that no piece uses. */
static void add_orphan(const char *dir, rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                       const uint8_t *hash)
{
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    uint8_t key[33] = {'M'}, meta[20] = {5, 0, 0, 0, 1, 0, 0, 0, 0x39, 0x30, 0, 0}, h[32];
    char *err = NULL;
    int fd = open_pack(dir, 12345, O_RDWR | O_CREAT);

    (void)hash;
    CHECK_EQ(pwrite(fd, "hello", 5, 0), 5);
    close(fd);
    chash_chunk("hello", 5, h);
    memcpy(key + 1, h, 32);
    rocksdb_put_cf(db, wo, cf, (const char *)key, sizeof(key), (const char *)meta, 20, &err);
    CHECK(err == NULL);
    rocksdb_writeoptions_destroy(wo);
}

/* The store was open when the machine stopped: another boot id in the open mark. */
static void other_boot(const char *dir, rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                       const uint8_t *hash)
{
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char *err = NULL;

    rocksdb_put_cf(db, wo, tamper_default, "open", 4, "another boot", 12, &err);
    CHECK(err == NULL);
    rocksdb_writeoptions_destroy(wo);
    flip_chunk(dir, db, cf, hash);
}

/* The number a shell command prints about dir's packs (fmt has one %s: dir). */
static uint64_t packs_shell(const char *fmt, const char *dir)
{
    char cmd[4300], out[64];
    FILE *f;

    snprintf(cmd, sizeof(cmd), fmt, dir);
    f = popen(cmd, "r");
    CHECK(f != NULL && fgets(out, sizeof(out), f) != NULL);
    pclose(f);
    return strtoull(out, NULL, 10);
}

/* Bytes the packs occupy on the disk. */
static uint64_t packs_usage(const char *dir)
{
    return packs_shell("du -sk --block-size=1 '%s/packs' | cut -f1", dir);
}

static int count_packs(const char *dir)
{
    return (int)packs_shell("ls '%s/packs' | grep -c '\\.pack$'", dir);
}

/* Removing a file gives its chunks' disk space back at once (holes in the packs),
 * and the store reads what is left; a pack nothing uses any more is deleted. */
static void test_remove_frees_space(void)
{
    char *d = check_tmpdir("store");
    size_t n = PROTO_PIECE_LEN + 4000000;
    uint8_t *a = check_malloc(n), *b = check_malloc(n);
    struct tfile fa, fb;
    struct store *s = open_store(d, 0);
    uint64_t full, after;

    check_fill_splitmix(a, n, 71);
    check_fill_splitmix(b, n, 72);
    tfile_make(&fa, a, n);
    tfile_make(&fb, b, n);
    ingest(s, &fa);
    ingest(s, &fb);
    full = packs_usage(d);
    CHECK(full >= 2 * n);
    CHECK_EQ(store_remove_file(s, fa.id), 0);
    after = packs_usage(d);
    fprintf(stderr, "   packs: %llu bytes with both files, %llu after removing one\n",
            (unsigned long long)full, (unsigned long long)after);
    /* At most one block per region (a piece's new chunks) stays behind. */
    CHECK(after <= full - n + 2 * 4096);
    read_back(s, &fb);
    check_clean(s);
    store_close(s);
    /* After a reopen appends go to a new pack; the old one, emptied, is deleted. */
    s = open_store(d, 0);
    CHECK_EQ(store_remove_file(s, fb.id), 0);
    CHECK_EQ(count_packs(d), 0);
    check_clean(s);
    ingest(s, &fa);
    CHECK_EQ(count_packs(d), 1);
    read_back(s, &fa);
    store_close(s);
    tfile_free(&fa);
    tfile_free(&fb);
    free(a);
    free(b);
    check_rmtree(d);
    free(d);
}

static void test_check_and_repair(void)
{
    char *d = check_tmpdir("store");
    size_t size = 3000000;
    uint8_t *a = check_malloc(size);
    struct tfile fa;
    struct store *s;
    struct store_fsck r;
    struct store_file info;
    struct store_stats st;
    int round;

    check_fill_splitmix(a, size, 9);
    tfile_make(&fa, a, size);
    quiet_level = 0; /* the check logs every problem it finds: keep the output short */
    for (round = 0; round < 4; round++) {
        s = open_store(d, 0);
        ingest(s, &fa);
        check_clean(s);
        store_close(s);
        if (round == 0)
            tamper(d, drop_chunk, fa.pieces[0]->chunks[5].hash);
        else if (round == 1)
            tamper(d, flip_chunk, fa.pieces[0]->chunks[7].hash);
        else if (round == 2)
            tamper(d, cut_pack, fa.pieces[0]->chunks[fa.pieces[0]->n_chunks - 2].hash);
        else
            tamper(d, add_orphan, NULL);
        s = open_store(d, 0);
        CHECK_EQ(store_check(s, false, &r), SHOAL_EHASH);
        if (round == 0)
            CHECK_EQ(r.missing_chunks, 1);
        if (round == 1 || round == 2)
            CHECK_EQ(r.bad_chunks, round == 1 ? 1 : 2); /* a cut pack loses its last two */
        if (round < 3) {
            CHECK_EQ(r.broken_files, 1);
        } else {
            CHECK_EQ(r.orphan_chunks, 1);
            CHECK_EQ(r.broken_files, 0);
        }
        CHECK_EQ(store_check(s, true, &r), 0);
        check_clean(s);
        CHECK_EQ(store_file_info(s, fa.id, &info), round < 3 ? -ENOENT : 0);
        if (round < 3) {
            /* The damaged file lost its pieces and is fetched again: ingest works. */
            ingest(s, &fa);
            read_back(s, &fa);
            check_clean(s);
        }
        CHECK_EQ(store_remove_file(s, fa.id), 0);
        CHECK_EQ(store_stats(s, &st), 0);
        CHECK_EQ(st.chunks, 0);
        store_close(s);
    }
    /* A pack's byte count lost: found, rewritten, and the file stays complete. */
    s = open_store(d, 0);
    ingest(s, &fa);
    store_close(s);
    tamper(d, drop_pack_count, fa.pieces[0]->chunks[0].hash);
    s = open_store(d, 0);
    CHECK_EQ(store_check(s, false, &r), SHOAL_EHASH);
    CHECK_EQ(r.bad_totals, 1);
    CHECK_EQ(r.broken_files, 0);
    CHECK_EQ(store_check(s, true, &r), 0);
    check_clean(s);
    CHECK_EQ(store_file_info(s, fa.id, &info), 0);
    CHECK(info.complete);
    read_back(s, &fa);
    store_close(s);
    quiet_level = 1;
    tfile_free(&fa);
    free(a);
    check_rmtree(d);
    free(d);
}

static void test_quota(void)
{
    char *d = check_tmpdir("store");
    size_t size = 6000000;
    uint8_t *a = check_malloc(size), *b = check_malloc(size);
    struct tfile fa, fb;
    struct store *s = open_store(d, 8000000);
    struct store_stats st;

    check_fill_splitmix(a, size, 21);
    check_fill_splitmix(b, size, 22);
    tfile_make(&fa, a, size);
    tfile_make(&fb, b, size);
    ingest(s, &fa);
    /* a is in use, so nothing can be evicted: the write fails cleanly. */
    CHECK_EQ(store_hold(s, fa.id), 0);
    CHECK_EQ(put_piece(s, &fb, 0), -ENOSPC);
    CHECK_EQ(store_has_piece(s, fb.id, 0), 0);
    CHECK_EQ(store_stats(s, &st), 0);
    CHECK_EQ(st.physical_bytes, size);
    check_clean(s);
    read_back(s, &fa);
    /* Once a is released, storing b evicts it. */
    store_release(s, fa.id);
    ingest(s, &fb);
    CHECK_EQ(store_file_info(s, fa.id, &(struct store_file){0}), -ENOENT);
    read_back(s, &fb);
    store_close(s);
    tfile_free(&fa);
    tfile_free(&fb);
    free(a);
    free(b);
    check_rmtree(d);
    free(d);
}


/* --- snapshots, eviction, gc ------------------------------------------------ */

static const char commit_a[] = "0123456789abcdef0123456789abcdef01234567";
static const char commit_b[] = "89abcdef0123456789abcdef0123456789abcdef";

static void snap_of(struct snapshot *snap, const char *commit, const struct tfile *f,
                    const char *path)
{
    char etag[65];

    chash_hex(f->id, 32, etag);
    CHECK_EQ(snapshot_init(snap, "model/org/name", commit), 0);
    CHECK_EQ(snapshot_add(snap, path, f->size, f->id, etag), 0);
    CHECK_EQ(snapshot_finish(snap), 0);
}

static void test_snapshots_refs_pins(void)
{
    char *d = check_tmpdir("store"), commit[41];
    struct store *s = open_store(d, 0);
    uint8_t *a = check_malloc(100000);
    struct snapshot snap, got;
    struct tfile fa;
    uint8_t id[32];

    check_fill_splitmix(a, 100000, 5);
    tfile_make(&fa, a, 100000);
    snap_of(&snap, commit_a, &fa, "model.bin");
    CHECK_EQ(store_get_snapshot(s, "model/org/name", commit_a, &got), -ENOENT);
    CHECK_EQ(store_put_snapshot(s, &snap), 0);
    CHECK_EQ(store_get_snapshot(s, "model/org/name", commit_a, &got), 0);
    CHECK_EQ(got.n_files, 1);
    CHECK_STR(got.files[0].path, "model.bin");
    CHECK_MEM(got.files[0].sha256, fa.id, 32);
    snapshot_release(&got);
    CHECK_EQ(store_get_snapshot(s, "model/../etc", commit_a, &got), -EINVAL);
    CHECK_EQ(store_get_snapshot(s, "model/org/name", "HEAD", &got), -EINVAL);

    CHECK_EQ(store_get_ref(s, "model/org/name", "main", commit), -ENOENT);
    CHECK_EQ(store_set_ref(s, "model/org/name", "main", commit_a), 0);
    CHECK_EQ(store_set_ref(s, "model/org/name", "refs/pr/1", commit_a), 0);
    CHECK_EQ(store_get_ref(s, "model/org/name", "main", commit), 0);
    CHECK_STR(commit, commit_a);
    CHECK_EQ(store_set_ref(s, "model/org/name", "main", "nope"), -EINVAL);
    CHECK_EQ(store_set_ref(s, "model/org/name", "../x", commit_a), -EINVAL);

    CHECK_EQ(store_pin(s, "model/org/name", commit_b, true), -ENOENT);
    CHECK_EQ(store_pin(s, "model/org/name", commit_a, true), 0);
    store_close(s);
    s = open_store(d, 0);
    CHECK_EQ(store_get_ref(s, "model/org/name", "refs/pr/1", commit), 0);
    /* Removing the snapshot drops its pin and the refs to it. */
    CHECK_EQ(store_remove_snapshot(s, "model/org/name", commit_a), 0);
    CHECK_EQ(store_get_ref(s, "model/org/name", "main", commit), -ENOENT);
    CHECK_EQ(store_get_snapshot(s, "model/org/name", commit_a, &got), -ENOENT);
    CHECK_EQ(store_remove_snapshot(s, "model/org/name", commit_a), -ENOENT);
    memcpy(id, fa.id, 32);
    (void)id;
    snapshot_release(&snap);
    store_close(s);
    tfile_free(&fa);
    free(a);
    check_rmtree(d);
    free(d);
}

/* Over the quota, the least recently used files go first; pinned and held ones stay. */
static void test_eviction(void)
{
    char *d = check_tmpdir("store");
    size_t size = 5000000;
    uint8_t *data = check_malloc(5 * size);
    struct tfile f[5];
    struct store *s = open_store(d, 16000000);
    struct store_file info;
    struct store_stats st;
    struct snapshot snap;
    uint64_t freed;
    int i;

    for (i = 0; i < 5; i++) {
        check_fill_splitmix(data + i * size, size, 70 + i);
        tfile_make(&f[i], data + i * size, size);
    }
    ingest(s, &f[0]);
    ingest(s, &f[1]);
    ingest(s, &f[2]);
    /* f0 is pinned through a snapshot; f1 was used more recently than f2. */
    snap_of(&snap, commit_a, &f[0], "a.bin");
    CHECK_EQ(store_put_snapshot(s, &snap), 0);
    CHECK_EQ(store_pin(s, "model/org/name", commit_a, true), 0);
    snapshot_release(&snap);
    CHECK_EQ(store_touch(s, f[1].id), 0);

    ingest(s, &f[3]); /* needs room: f2 goes */
    CHECK_EQ(store_file_info(s, f[2].id, &info), -ENOENT);
    CHECK_EQ(store_file_info(s, f[0].id, &info), 0);
    CHECK_EQ(store_file_info(s, f[1].id, &info), 0);
    read_back(s, &f[3]);

    /* f1 is held by a reader: f3 goes instead, though newer. */
    CHECK_EQ(store_hold(s, f[1].id), 0);
    ingest(s, &f[4]);
    CHECK_EQ(store_file_info(s, f[1].id, &info), 0);
    CHECK_EQ(store_file_info(s, f[3].id, &info), -ENOENT);
    store_release(s, f[1].id);
    CHECK_EQ(store_stats(s, &st), 0);
    CHECK(st.physical_bytes <= 16000000);
    check_clean(s);

    /* Nothing can go when everything is pinned or held. */
    CHECK_EQ(store_hold(s, f[1].id), 0);
    CHECK_EQ(store_hold(s, f[4].id), 0);
    CHECK_EQ(store_evict(s, 10000000, &freed), -ENOSPC);
    CHECK_EQ(put_piece(s, &f[2], 0), -ENOSPC);
    store_release(s, f[1].id);
    store_release(s, f[4].id);
    CHECK_EQ(store_evict(s, 10000000, &freed), 0);
    CHECK(freed >= 5000000);
    store_close(s);
    for (i = 0; i < 5; i++)
        tfile_free(&f[i]);
    free(data);
    check_rmtree(d);
    free(d);
}

static void test_gc(void)
{
    char *d = check_tmpdir("store");
    size_t size = 300000;
    uint8_t *data = check_malloc(3 * size);
    struct tfile f[3];
    struct store *s = open_store(d, 0);
    struct store_file info;
    struct snapshot snap;
    uint64_t removed;
    int i;

    for (i = 0; i < 3; i++) {
        check_fill_splitmix(data + i * size, size, 90 + i);
        tfile_make(&f[i], data + i * size, size);
    }
    ingest(s, &f[0]);                      /* listed by a snapshot */
    CHECK_EQ(put_piece(s, &f[1], 0), 0);   /* an abandoned partial file */
    ingest(s, &f[2]);                      /* complete, in no snapshot */
    snap_of(&snap, commit_b, &f[0], "kept.bin");
    CHECK_EQ(store_put_snapshot(s, &snap), 0);
    snapshot_release(&snap);
    CHECK_EQ(store_hold(s, f[2].id), 0);
    CHECK_EQ(store_gc(s, &removed), 0);
    CHECK_EQ(removed, 1);
    CHECK_EQ(store_file_info(s, f[1].id, &info), -ENOENT);
    CHECK_EQ(store_file_info(s, f[2].id, &info), 0);
    store_release(s, f[2].id);
    CHECK_EQ(store_gc(s, &removed), 0);
    CHECK_EQ(removed, 1);
    CHECK_EQ(store_file_info(s, f[0].id, &info), 0);
    read_back(s, &f[0]);
    check_clean(s);
    store_close(s);
    for (i = 0; i < 3; i++)
        tfile_free(&f[i]);
    free(data);
    check_rmtree(d);
    free(d);
}

/* --- import ---------------------------------------------------------------- */

static void write_file(const char *dir, const char *rel, const uint8_t *data, size_t n)
{
    char path[4200];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(data, 1, n, f), n);
    CHECK_EQ(fclose(f), 0);
}

struct collect {
    uint8_t *buf;
    size_t len;
};

static int on_bytes(void *arg, const uint8_t *data, size_t len)
{
    struct collect *c = arg;

    memcpy(c->buf + c->len, data, len);
    c->len += len;
    return 0;
}

static void test_import(void)
{
    char *d = check_tmpdir("store"), *src = check_tmpdir("store"), path[4200], why[512], etag[65];
    struct store *s = open_store(d, 0);
    size_t big = PROTO_PIECE_LEN + 777777;
    uint8_t *data = check_malloc(big), sha[32];
    struct snapshot snap, again, got;
    struct import_stats st;
    struct collect c = {.buf = check_malloc(big)};
    const struct snapshot_file *f;

    check_fill_splitmix(data, big, 123);
    snprintf(path, sizeof(path), "%s/sub", src);
    CHECK_EQ(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/sub/dir", src);
    CHECK_EQ(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/.git", src);
    CHECK_EQ(mkdir(path, 0755), 0);
    write_file(src, "config.json", (const uint8_t *)"{\"a\": 1}", 8);
    write_file(src, "sub/dir/w.bin", data, big);
    write_file(src, "empty.txt", data, 0);
    write_file(src, ".git/HEAD", (const uint8_t *)"x", 1);
    snprintf(path, sizeof(path), "%s/link", src);
    CHECK_EQ(symlink("config.json", path), 0);

    CHECK_EQ(import_dir(s, src, "model/me/ckpt", &snap, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.files, 3);
    CHECK_EQ(st.skipped, 1);
    CHECK_EQ(st.bytes, big + 8);
    CHECK_EQ(snap.n_files, 3);
    CHECK(snapshot_commit_ok(snap.commit));
    f = snapshot_find(&snap, "sub/dir/w.bin");
    CHECK(f != NULL);
    CHECK_EQ(f->size, big);
    CHECK_EQ(sha256_digest(data, big, sha), 0);
    CHECK_MEM(f->sha256, sha, 32);
    chash_hex(sha, 32, etag);
    CHECK_STR(f->etag, etag);
    CHECK_EQ(store_read_file(s, f->sha256, on_bytes, &c), 0);
    CHECK_EQ(c.len, big);
    CHECK_MEM(c.buf, data, big);
    f = snapshot_find(&snap, "empty.txt");
    CHECK(f != NULL && f->size == 0);
    CHECK(snapshot_find(&snap, "link") == NULL);
    CHECK(snapshot_find(&snap, ".git/HEAD") == NULL);
    CHECK_EQ(store_get_snapshot(s, "model/me/ckpt", snap.commit, &got), 0);
    CHECK_EQ(got.n_files, 3);
    snapshot_release(&got);
    check_clean(s);

    /* The commit comes from the content: the same tree gives the same commit, a
     * changed file another. */
    CHECK_EQ(import_dir(s, src, "model/me/ckpt", &again, &st, why, sizeof(why)), 0);
    CHECK_STR(again.commit, snap.commit);
    snapshot_release(&again);
    write_file(src, "config.json", (const uint8_t *)"{\"a\": 2}", 8);
    CHECK_EQ(import_dir(s, src, "model/me/ckpt", &again, &st, why, sizeof(why)), 0);
    CHECK(strcmp(again.commit, snap.commit) != 0);
    snapshot_release(&again);

    /* Bad names are refused with a reason. */
    CHECK_EQ(import_dir(s, src, "not a repo", &again, &st, why, sizeof(why)), -EINVAL);
    CHECK(strstr(why, "not a repo name") != NULL);
    write_file(src, "bad\nname", data, 10);
    CHECK_EQ(import_dir(s, src, "model/me/ckpt", &again, &st, why, sizeof(why)), -EINVAL);
    CHECK(strstr(why, "bad\nname") != NULL);
    snprintf(path, sizeof(path), "%s/missing", src);
    CHECK_EQ(import_dir(s, path, "model/me/ckpt", &again, &st, why, sizeof(why)), -ENOENT);
    CHECK(strstr(why, "No such file") != NULL);

    snapshot_release(&snap);
    store_close(s);
    free(c.buf);
    free(data);
    check_rmtree(src);
    check_rmtree(d);
    free(src);
    free(d);
}

/* --- concurrent writers ------------------------------------------------------ */

struct race {
    struct store *s;
    struct tfile *f;
};

static void *race_writer(void *arg)
{
    struct race *r = arg;
    uint32_t i;

    for (i = 0; i < r->f->n_pieces; i++)
        CHECK_EQ(put_piece(r->s, r->f, i), 0);
    return NULL;
}

struct quota_race {
    struct store *s;
    struct tfile *f;
    int r;
};

static void *quota_writer(void *arg)
{
    struct quota_race *q = arg;

    q->r = put_piece(q->s, q->f, 0);
    return NULL;
}

/* Writers of different files checking the quota at once: together they never go past
 * it. Room for three of four one-piece files, none of them complete (nothing can be
 * evicted): exactly one write fails with -ENOSPC, every time. */
static void test_concurrent_quota(void)
{
    size_t size = 1000000;
    uint8_t *data = check_malloc(4 * size);
    struct tfile f[4];
    struct quota_race q[4];
    pthread_t t[4];
    struct store_stats st;
    int round, i, full;

    check_fill_splitmix(data, 4 * size, 57);
    for (i = 0; i < 4; i++)
        tfile_make(&f[i], data + (size_t)i * size, size);
    quiet_level = 0; /* silence: each refusal is logged */
    for (round = 0; round < 8; round++) {
        char *d = check_tmpdir("store");
        struct store *s = open_store(d, 3 * size + size / 2);
        for (i = 0; i < 4; i++) {
            q[i] = (struct quota_race){.s = s, .f = &f[i]};
            CHECK_EQ(pthread_create(&t[i], NULL, quota_writer, &q[i]), 0);
        }
        for (i = 0, full = 0; i < 4; i++) {
            CHECK_EQ(pthread_join(t[i], NULL), 0);
            CHECK(q[i].r == 0 || q[i].r == -ENOSPC);
            full += q[i].r == -ENOSPC;
        }
        CHECK_EQ(full, 1);
        CHECK_EQ(store_stats(s, &st), 0);
        CHECK_EQ(st.physical_bytes, 3 * size);
        check_clean(s);
        store_close(s);
        check_rmtree(d);
        free(d);
    }
    quiet_level = 1;
    for (i = 0; i < 4; i++)
        tfile_free(&f[i]);
    free(data);
}

/* Writers racing on the same pieces (two pulls of one file) count each piece once. */
static void test_concurrent_writers(void)
{
    char *d = check_tmpdir("store");
    size_t size = 3 * 1000000;
    uint8_t *data = check_malloc(size);
    struct store *s = open_store(d, 0);
    struct store_stats st;
    struct tfile f;
    pthread_t t[4];
    struct race r;
    int round, i;

    check_fill_splitmix(data, size, 55);
    tfile_make(&f, data, size);
    r.s = s;
    r.f = &f;
    for (round = 0; round < 5; round++) {
        for (i = 0; i < 4; i++)
            CHECK_EQ(pthread_create(&t[i], NULL, race_writer, &r), 0);
        for (i = 0; i < 4; i++)
            CHECK_EQ(pthread_join(t[i], NULL), 0);
        CHECK_EQ(store_complete_file(s, f.id, f.size), 0);
        CHECK_EQ(store_stats(s, &st), 0);
        CHECK_EQ(st.logical_bytes, size);
        CHECK_EQ(st.physical_bytes, size);
        check_clean(s);
        CHECK_EQ(store_remove_file(s, f.id), 0);
        CHECK_EQ(store_stats(s, &st), 0);
        CHECK_EQ(st.chunks, 0);
    }
    store_close(s);
    tfile_free(&f);
    free(data);
    check_rmtree(d);
    free(d);
}

/* --- kill -9 ---------------------------------------------------------------- */

#define CRASH_FILES 6
#define CRASH_SIZE  (PROTO_PIECE_LEN + 2000000)

/* The same files in the parent and in every child (derived from fixed seeds). */
static uint8_t *crash_files(struct tfile *f)
{
    uint8_t *data = check_malloc((size_t)CRASH_FILES * CRASH_SIZE);
    int i;

    for (i = 0; i < CRASH_FILES; i++) {
        check_fill_splitmix(data + (size_t)i * CRASH_SIZE, CRASH_SIZE, 300 + i);
        tfile_make(&f[i], data + (size_t)i * CRASH_SIZE, CRASH_SIZE);
    }
    return data;
}

/* The child process: ingests every file piece by piece, skipping what the store has,
 * as a resumed pull does. Prints how many pieces it had to write. */
static int crash_child(const char *dir)
{
    struct tfile f[CRASH_FILES];
    uint8_t *data = crash_files(f);
    struct store *s = open_store(dir, 0);
    int i, wrote = 0;
    uint32_t p;

    printf("ready\n"); /* the parent times its kill from here */
    fflush(stdout);
    for (i = 0; i < CRASH_FILES; i++) {
        for (p = 0; p < f[i].n_pieces; p++) {
            if (store_has_piece(s, f[i].id, p) == 0) {
                CHECK_EQ(put_piece(s, &f[i], p), 0);
                wrote++;
            }
        }
        CHECK_EQ(store_complete_file(s, f[i].id, f[i].size), 0);
    }
    store_close(s);
    for (i = 0; i < CRASH_FILES; i++)
        tfile_free(&f[i]);
    free(data);
    printf("%d\n", wrote);
    return 0;
}

/* Starts a fresh process for the child: RocksDB's background threads do not survive
 * fork(), so the child must exec. Its stdout goes to a pipe (*out). */
static pid_t spawn_child(const char *mode, const char *dir, int *out)
{
    int fds[2];
    pid_t pid;

    CHECK_EQ(pipe(fds), 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "test_store", mode, dir, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    *out = fds[0];
    return pid;
}

#define POWER_A 3000000
#define POWER_B (2 * PROTO_PIECE_LEN + 5000000)

static void power_files(struct tfile *fa, struct tfile *fb, uint8_t **a, uint8_t **b)
{
    *a = check_malloc(POWER_A);
    *b = check_malloc(POWER_B);
    check_fill_splitmix(*a, POWER_A, 61);
    check_fill_splitmix(*b, POWER_B, 62);
    tfile_make(fa, *a, POWER_A);
    tfile_make(fb, *b, POWER_B);
}

/* The node of test_recover_after_power_loss: A complete, B's pieces stored, then it
 * stops dead (no store_close). */
static int power_child(const char *dir)
{
    struct tfile fa, fb;
    uint8_t *a, *b;
    struct store *s;

    power_files(&fa, &fb, &a, &b);
    s = open_store(dir, 0);
    ingest(s, &fa);
    for (uint32_t i = 0; i < fb.n_pieces; i++)
        CHECK_EQ(put_piece(s, &fb, i), 0);
    _exit(0);
}

/* A power loss: the node had stored pieces of file B since the last sync of the packs
 * when the machine stopped, and one of their chunks did not reach the disk. The next
 * open (in another boot) re-verifies what was written since that sync, drops exactly
 * the piece that lost data, and keeps everything else. */
static void test_recover_after_power_loss(void)
{
    char *d = check_tmpdir("store");
    uint8_t *a, *b;
    struct tfile fa, fb;
    struct store_file info;
    struct store *s;
    pid_t pid;
    int status, out;

    power_files(&fa, &fb, &a, &b);
    pid = spawn_child("--power-child", d, &out);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    close(out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    tamper(d, other_boot, fb.pieces[1]->chunks[3].hash);

    quiet_level = 0; /* recovery reports the lost chunk */
    s = open_store(d, 0);
    quiet_level = 1;
    CHECK_EQ(store_has_piece(s, fb.id, 0), 1);
    CHECK_EQ(store_has_piece(s, fb.id, 1), 0);
    CHECK_EQ(store_has_piece(s, fb.id, 2), 1);
    CHECK_EQ(store_file_info(s, fa.id, &info), 0);
    CHECK(info.complete);
    read_back(s, &fa);
    check_clean(s);
    /* The lost piece is fetched again and the file completes. */
    CHECK_EQ(put_piece(s, &fb, 1), 0);
    CHECK_EQ(store_complete_file(s, fb.id, fb.size), 0);
    read_back(s, &fb);
    check_clean(s);
    store_close(s);
    tfile_free(&fa);
    tfile_free(&fb);
    free(a);
    free(b);
    check_rmtree(d);
    free(d);
}

static void test_kill9(void)
{
    char *d = check_tmpdir("store"), buf[32];
    struct tfile f[CRASH_FILES];
    uint8_t *data = crash_files(f);
    struct store *s;
    struct store_file info;
    uint64_t st = (uint64_t)time(NULL);
    int i, round, status, out, finished = 0, total = 0;
    ssize_t n;

    for (i = 0; i < CRASH_FILES; i++)
        total += (int)f[i].n_pieces;
    fprintf(stderr, "   kill seed %llu\n", (unsigned long long)st);
    for (round = 0; round < 12; round++) {
        pid_t pid = spawn_child("--crash-child", d, &out);
        CHECK(read(out, buf, 6) == 6 && memcmp(buf, "ready\n", 6) == 0);
        usleep((useconds_t)(check_splitmix64(&st) % 200000));
        kill(pid, SIGKILL);
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        close(out);
        finished += WIFEXITED(status) && WEXITSTATUS(status) == 0;
        CHECK(WIFEXITED(status) ? WEXITSTATUS(status) == 0 : WTERMSIG(status) == SIGKILL);
        /* Whatever the moment, the store opens and is consistent. */
        s = open_store(d, 0);
        check_clean(s);
        for (i = 0; i < CRASH_FILES; i++) {
            if (store_file_info(s, f[i].id, &info) == 0 && info.complete) {
                read_back(s, &f[i]);
                /* Give the next child work again: drop some complete files. */
                if (check_splitmix64(&st) % 2)
                    CHECK_EQ(store_remove_file(s, f[i].id), 0);
            }
        }
        check_clean(s);
        store_close(s);
    }
    /* A last run without a kill resumes and finishes, writing only what is missing. */
    {
        int have = 0;
        s = open_store(d, 0);
        for (i = 0; i < CRASH_FILES; i++) {
            uint32_t p;
            for (p = 0; p < f[i].n_pieces; p++)
                have += store_has_piece(s, f[i].id, p) == 1;
        }
        store_close(s);
        pid_t pid = spawn_child("--crash-child", d, &out);
        CHECK(read(out, buf, 6) == 6);
        n = read(out, buf, sizeof(buf) - 1);
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        close(out);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(n > 0);
        buf[n] = '\0';
        CHECK_EQ(atoi_checked(buf), total - have);
        fprintf(stderr, "   resume wrote %d of %d pieces\n", total - have, total);
    }
    s = open_store(d, 0);
    check_clean(s);
    for (i = 0; i < CRASH_FILES; i++) {
        CHECK_EQ(store_file_info(s, f[i].id, &info), 0);
        CHECK(info.complete);
        read_back(s, &f[i]);
        tfile_free(&f[i]);
    }
    fprintf(stderr, "   %d of 12 runs finished before their kill\n", finished);
    store_close(s);
    free(data);
    check_rmtree(d);
    free(d);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--crash-child") == 0)
        return crash_child(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--power-child") == 0)
        return power_child(argv[2]);
    RUN(test_open_and_schema);
    RUN(test_direct_writes);
    RUN(test_file_roundtrip_and_dedup);
    RUN(test_model);
    RUN(test_check_and_repair);
    RUN(test_recover_after_power_loss);
    RUN(test_remove_frees_space);
    RUN(test_quota);
    RUN(test_snapshots_refs_pins);
    RUN(test_eviction);
    RUN(test_gc);
    RUN(test_import);
    RUN(test_concurrent_writers);
    RUN(test_concurrent_quota);
    RUN(test_kill9);
    return check_done();
}
