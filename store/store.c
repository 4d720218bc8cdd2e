/* store.c - the RocksDB chunk store.
 *
 * DESIGN. Three column families (docs/storage.md):
 *
 *   chunks     'C' hash            -> chunk bytes            (BlobDB, no compression)
 *              'M' hash            -> len u32, refs u32       (index: present + refcount)
 *              'P' file index(BE)  -> piece record            (manifest_piece_encode)
 *              'S'                 -> chunks, physical, logical (u64 each)
 *   files      file id             -> version, flags, size, atime (complete files only)
 *   manifests  file id             -> manifest v1              (complete files only)
 *   default    "schema"            -> schema version
 *
 * Everything in `chunks` is written without the WAL, and only ever without it: a
 * memtable is flushed whole, so after a crash that CF holds a prefix of its batches,
 * each one all or nothing, and its records always agree with each other (an 'M' never
 * claims a chunk whose 'C' was lost). `files` and `manifests` go through the WAL; the
 * record that marks a file complete is written synced, after the chunks CF is flushed.
 *
 * Reference counts count piece records: a chunk used twice in one piece counts
 * twice. Read-modify-writes of 'M' and 'S' run under one mutex; the batch is small
 * work for RocksDB (a memtable insert), so writers queue only briefly.
 */
#include "store.h"

#include "store_int.h"

#include "err.h"
#include "proto_limits.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

static const char *const cf_names[CF_COUNT] = {
    "default", "chunks", "files", "manifests", "snapshots", "refs", "pins",
};

/* --- small helpers ---------------------------------------------------------- */

void store__log(struct store *s, enum store_log_level lvl, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->log)
        s->log(s->log_arg, lvl, msg);
    else
        fprintf(stderr, "store: %s\n", msg);
}

int store__err(struct store *s, char *errptr, const char *what)
{
    int r = SHOAL_ESTORE;

    if (!errptr)
        return 0;
    /* A full disk is the one failure a user can act on: say so in the code too. */
    if (strstr(errptr, "No space left on device"))
        r = -ENOSPC;
    store__log(s, STORE_LOG_ERROR, "%s: %s", what, errptr);
    rocksdb_free(errptr);
    return r;
}

void store__put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint32_t store__get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void store__put_u64le(uint8_t *p, uint64_t v)
{
    store__put_u32le(p, (uint32_t)v);
    store__put_u32le(p + 4, (uint32_t)(v >> 32));
}

uint64_t store__get_u64le(const uint8_t *p)
{
    return store__get_u32le(p) | (uint64_t)store__get_u32le(p + 4) << 32;
}

void store__chunk_key(uint8_t key[1 + CHASH_LEN], char kind, const uint8_t hash[CHASH_LEN])
{
    key[0] = (uint8_t)kind;
    memcpy(key + 1, hash, CHASH_LEN);
}

void store__piece_key(uint8_t key[PIECE_KEY_LEN], const uint8_t file[STORE_ID_LEN], uint32_t index)
{
    key[0] = KEY_PIECE;
    memcpy(key + 1, file, STORE_ID_LEN);
    /* Big-endian, so that a file's pieces sort in order. */
    key[1 + STORE_ID_LEN] = (uint8_t)(index >> 24);
    key[2 + STORE_ID_LEN] = (uint8_t)(index >> 16);
    key[3 + STORE_ID_LEN] = (uint8_t)(index >> 8);
    key[4 + STORE_ID_LEN] = (uint8_t)index;
}

uint32_t store__piece_key_index(const uint8_t *key)
{
    const uint8_t *p = key + 1 + STORE_ID_LEN;

    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads one value (malloc'd by RocksDB, freed with rocksdb_free). */
int store__get(struct store *s, int cf, const void *key, size_t klen, char **val,
                     size_t *vlen)
{
    char *err = NULL;

    *val = rocksdb_get_cf(s->db, s->ro, s->cf[cf], key, klen, vlen, &err);
    if (err)
        return store__err(s, err, "read");
    return *val ? 0 : -ENOENT;
}

int store__write(struct store *s, rocksdb_writebatch_t *b, bool chunks_cf)
{
    char *err = NULL;

    rocksdb_write(s->db, chunks_cf ? s->wo_nowal : s->wo_sync, b, &err);
    return store__err(s, err, "write");
}

void store__stats_put(struct store *s, rocksdb_writebatch_t *b)
{
    uint8_t key = KEY_STATS, val[24];

    store__put_u64le(val, s->st.chunks);
    store__put_u64le(val + 8, s->st.physical_bytes);
    store__put_u64le(val + 16, s->st.logical_bytes);
    rocksdb_writebatch_put_cf(b, s->cf[CF_CHUNKS], (const char *)&key, 1, (const char *)val,
                              sizeof(val));
}

/* --- open and close --------------------------------------------------------- */

static rocksdb_options_t *cf_options(int cf)
{
    rocksdb_options_t *o = rocksdb_options_create();

    if (cf == CF_CHUNKS) {
        /* Chunk bytes go to blob files: compaction then moves 40-byte references,
         * not the data, and compressing random weights costs CPU for nothing. Blob
         * garbage collection is off: it relocates the oldest blobs during ordinary
         * compactions, which raised write amplification from 1.01 to 1.5 while
         * ingesting (docs/benchmarks.md); a blob file is still deleted once all its
         * chunks are gone. */
        rocksdb_options_set_enable_blob_files(o, 1);
        rocksdb_options_set_min_blob_size(o, 4096);
        /* Blob files are deleted whole once none of their chunks is referenced (blob
         * garbage collection is off, below): small files make removal give space back
         * sooner. A flush writes its own files, so they also follow file boundaries. */
        rocksdb_options_set_blob_file_size(o, 64u << 20);
        rocksdb_options_set_enable_blob_gc(o, 0);
        rocksdb_options_set_blob_compression_type(o, rocksdb_no_compression);
        rocksdb_options_set_compression(o, rocksdb_no_compression);
        /* 4 memtables of 32 MiB: as fast as 3 of 64 MiB here, and half the memory
         * (docs/benchmarks.md). */
        rocksdb_options_set_write_buffer_size(o, 32u << 20);
        rocksdb_options_set_max_write_buffer_number(o, 4);
    }
    return o;
}

static int check_schema(struct store *s, bool fresh, char *why, size_t why_len)
{
    static const char key[] = "schema";
    char *val, *err = NULL, want[16];
    size_t vlen;
    int n, r;

    n = snprintf(want, sizeof(want), "%d", STORE_SCHEMA_VERSION);
    r = store__get(s, CF_DEFAULT, key, sizeof(key) - 1, &val, &vlen);
    if (r == -ENOENT && fresh) {
        rocksdb_put_cf(s->db, s->wo_sync, s->cf[CF_DEFAULT], key, sizeof(key) - 1, want,
                       (size_t)n, &err);
        return store__err(s, err, "writing the schema version");
    }
    if (r == -ENOENT) {
        snprintf(why, why_len,
                 "%s is a RocksDB database but not a Shoal store (no schema version); "
                 "give shoald another data directory",
                 s->dir);
        return SHOAL_EVERSION;
    }
    if (r < 0)
        return r;
    if (vlen != (size_t)n || memcmp(val, want, vlen) != 0) {
        snprintf(why, why_len,
                 "the store in %s has schema version %.*s and this build reads version %d: "
                 "use a build of that version, or move the directory aside and pull again",
                 s->dir, (int)(vlen < 16 ? vlen : 16), val, STORE_SCHEMA_VERSION);
        rocksdb_free(val);
        return SHOAL_EVERSION;
    }
    rocksdb_free(val);
    return 0;
}

int store__stats_load(struct store *s)
{
    uint8_t key = KEY_STATS;
    char *val;
    size_t vlen;
    int r;

    r = store__get(s, CF_CHUNKS, &key, 1, &val, &vlen);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    if (vlen != 24) {
        rocksdb_free(val);
        store__log(s, STORE_LOG_ERROR, "stats record has %zu bytes, not 24", vlen);
        return SHOAL_EFORMAT;
    }
    s->st.chunks = store__get_u64le((uint8_t *)val);
    s->st.physical_bytes = store__get_u64le((uint8_t *)val + 8);
    s->st.logical_bytes = store__get_u64le((uint8_t *)val + 16);
    rocksdb_free(val);
    return 0;
}

int store_open(const char *dir, const struct store_opts *o, struct store **out, char *why,
               size_t why_len)
{
    struct store *s = calloc(1, sizeof(*s));
    rocksdb_options_t *dbo = NULL;
    char **existing = NULL, *err = NULL;
    size_t n_existing = 0;
    bool fresh;
    int i, r;

    if (why_len)
        why[0] = '\0';
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->hold_mu, NULL);
    if (o) {
        s->quota = o->quota;
        s->min_free = o->min_free;
        s->log = o->log;
        s->log_arg = o->log_arg;
    }
    dbo = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(dbo, 1);
    rocksdb_options_set_create_missing_column_families(dbo, 1);
    rocksdb_options_set_max_background_jobs(dbo, 5);
    rocksdb_options_set_keep_log_file_num(dbo, 4);
    rocksdb_options_set_info_log_level(dbo, 2); /* warnings and worse in RocksDB's LOG */
    /* Flushing a memtable of chunks is a copy into the page cache, bound by one core:
     * three flushes at once took store-only writes from ~550 to ~1000 MB/s here
     * (docs/benchmarks.md). Buffered I/O unless the node asks for direct writes: what
     * was just fetched is what peers ask for next, and it is then still in the page
     * cache; direct writes save the page-cache copy instead (measured both ways). */
    rocksdb_options_set_max_background_flushes(dbo, 3);
    if (o && o->direct_writes)
        rocksdb_options_set_use_direct_io_for_flush_and_compaction(dbo, 1);

    existing = rocksdb_list_column_families(dbo, dir, &n_existing, &err);
    fresh = err != NULL; /* no database there yet */
    if (err)
        rocksdb_free(err);
    err = NULL;
    if (existing)
        rocksdb_list_column_families_destroy(existing, n_existing);
    if (!fresh && n_existing < CF_COUNT) {
        snprintf(why, why_len, "%s holds a RocksDB database that is not a Shoal store", dir);
        r = SHOAL_EVERSION;
        goto fail;
    }
    for (i = 0; i < CF_COUNT; i++)
        s->opts[i] = cf_options(i);
    s->db = rocksdb_open_column_families(dbo, dir, CF_COUNT, cf_names,
                                         (const rocksdb_options_t *const *)s->opts, s->cf, &err);
    if (err) {
        snprintf(why, why_len, "cannot open the store in %s: %s", dir, err);
        r = store__err(s, err, "open");
        goto fail;
    }
    s->wo_nowal = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(s->wo_nowal, 1);
    s->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_wal = rocksdb_writeoptions_create();
    s->ro = rocksdb_readoptions_create();
    s->fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(s->fo, 1);
    r = check_schema(s, fresh, why, why_len);
    if (r == 0)
        r = store__stats_load(s);
    if (r < 0)
        goto fail;
    rocksdb_options_destroy(dbo);
    *out = s;
    return 0;
fail:
    if (why_len && !why[0])
        snprintf(why, why_len, "cannot open the store in %s: %s", dir, shoal_strerror(r));
    rocksdb_options_destroy(dbo);
    store_close(s);
    return r;
}

void store_close(struct store *s)
{
    int i;

    if (!s)
        return;
    if (s->db) {
        char *err = NULL;
        /* The chunks CF has no WAL: flush it so that nothing written is lost. */
        rocksdb_flush_cf(s->db, s->fo, s->cf[CF_CHUNKS], &err);
        store__err(s, err, "flush at close");
        for (i = 0; i < CF_COUNT; i++)
            rocksdb_column_family_handle_destroy(s->cf[i]);
        rocksdb_close(s->db);
    }
    for (i = 0; i < CF_COUNT; i++) {
        if (s->opts[i])
            rocksdb_options_destroy(s->opts[i]);
    }
    if (s->wo_nowal)
        rocksdb_writeoptions_destroy(s->wo_nowal);
    if (s->wo_sync)
        rocksdb_writeoptions_destroy(s->wo_sync);
    if (s->wo_wal)
        rocksdb_writeoptions_destroy(s->wo_wal);
    if (s->ro)
        rocksdb_readoptions_destroy(s->ro);
    if (s->fo)
        rocksdb_flushoptions_destroy(s->fo);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->hold_mu);
    free(s->holds);
    free(s->dir);
    free(s);
}

/* --- chunks and pieces ------------------------------------------------------ */

uint64_t store__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t store__disk_short(struct store *s, uint64_t bytes)
{
    struct statvfs v;
    uint64_t avail;

    if (!s->min_free || statvfs(s->dir, &v) != 0)
        return 0;
    avail = (uint64_t)v.f_bavail * v.f_frsize;
    return avail >= s->min_free + bytes ? 0 : s->min_free + bytes - avail;
}

int store__space_ok(struct store *s, uint64_t bytes)
{
    if (s->quota && s->st.physical_bytes + bytes > s->quota)
        return -ENOSPC;
    return store__disk_short(s, bytes) ? -ENOSPC : 0;
}

int store__reclaim(struct store *s)
{
    char *err = NULL;

    /* Removed chunks leave the disk only when no table refers to their blob file any
     * more: flush the deletions, then compact them into the tables (which hold keys
     * and blob references only, so this rewrites little). */
    rocksdb_flush_cf(s->db, s->fo, s->cf[CF_CHUNKS], &err);
    if (err)
        return store__err(s, err, "flush to reclaim space");
    rocksdb_compact_range_cf(s->db, s->cf[CF_CHUNKS], NULL, 0, NULL, 0);
    return 0;
}

static int by_hash(const void *a, const void *b, void *arg)
{
    const struct store_chunk *c = arg;

    return memcmp(c[*(const uint32_t *)a].hash, c[*(const uint32_t *)b].hash, CHASH_LEN);
}

/* Groups equal hashes: order[] gets the chunk indexes sorted by hash; returns the
 * number of distinct hashes; group k starts at order[first[k]] and has count[k]. */
static uint32_t group_chunks(const struct store_chunk *c, uint32_t n, uint32_t *order,
                             uint32_t *first, uint32_t *count)
{
    uint32_t i, g = 0;

    for (i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof(order[0]), by_hash, (void *)c);
    for (i = 0; i < n; i++) {
        if (i > 0 && memcmp(c[order[i]].hash, c[order[i - 1]].hash, CHASH_LEN) == 0) {
            count[g - 1]++;
            continue;
        }
        first[g] = i;
        count[g] = 1;
        g++;
    }
    return g;
}

int store__meta_get(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n,
                    uint32_t *lens, uint32_t *refs)
{
    uint8_t (*keys)[1 + CHASH_LEN] = calloc(n, sizeof(*keys));
    const char **kp = calloc(n, sizeof(*kp));
    size_t *ks = calloc(n, sizeof(*ks)), *vs = calloc(n, sizeof(*vs));
    char **vals = calloc(n, sizeof(*vals)), **errs = calloc(n, sizeof(*errs));
    const rocksdb_column_family_handle_t **cfs = calloc(n, sizeof(*cfs));
    int r = 0;
    size_t i;

    if (n == 0)
        goto out;
    if (!keys || !kp || !ks || !vs || !vals || !errs || !cfs) {
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        store__chunk_key(keys[i], KEY_META, hashes[i]);
        kp[i] = (const char *)keys[i];
        ks[i] = sizeof(keys[i]);
        cfs[i] = s->cf[CF_CHUNKS];
    }
    rocksdb_multi_get_cf(s->db, s->ro, cfs, n, kp, ks, vals, vs, errs);
    for (i = 0; i < n; i++) {
        if (errs[i]) {
            r = store__err(s, errs[i], "chunk index read");
            continue;
        }
        if (!vals[i]) {
            lens[i] = refs[i] = 0;
            continue;
        }
        if (vs[i] != 8) {
            store__log(s, STORE_LOG_ERROR, "chunk index record of %zu bytes", vs[i]);
            r = SHOAL_EFORMAT;
        } else {
            lens[i] = store__get_u32le((uint8_t *)vals[i]);
            refs[i] = store__get_u32le((uint8_t *)vals[i] + 4);
        }
        rocksdb_free(vals[i]);
    }
out:
    free(keys);
    free(kp);
    free(ks);
    free(vs);
    free(vals);
    free(errs);
    free(cfs);
    return r;
}

void store__meta_put(struct store *s, rocksdb_writebatch_t *b, const uint8_t hash[CHASH_LEN],
                     uint32_t len, uint32_t refs)
{
    uint8_t key[1 + CHASH_LEN], val[8];

    store__chunk_key(key, KEY_META, hash);
    store__put_u32le(val, len);
    store__put_u32le(val + 4, refs);
    rocksdb_writebatch_put_cf(b, s->cf[CF_CHUNKS], (const char *)key, sizeof(key),
                              (const char *)val, sizeof(val));
}

int store_has_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index)
{
    uint8_t key[PIECE_KEY_LEN];
    char *val;
    size_t vlen;
    int r;

    store__piece_key(key, file, index);
    r = store__get(s, CF_CHUNKS, key, sizeof(key), &val, &vlen);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    rocksdb_free(val);
    return 1;
}

int store_put_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index,
                    const uint8_t piece_hash[static CHASH_LEN], const struct store_chunk *chunks,
                    uint32_t n)
{
    struct chash_leaf *leaves = NULL;
    struct manifest_piece piece = {0};
    uint32_t *order = NULL, *first = NULL, *count = NULL, *lens = NULL, *refs = NULL, g, k;
    uint8_t (*ghash)[CHASH_LEN] = NULL, key[PIECE_KEY_LEN], ckey[1 + CHASH_LEN];
    rocksdb_writebatch_t *b = NULL;
    uint8_t *rec = NULL;
    size_t rec_len;
    uint64_t new_bytes = 0, piece_len = 0;
    bool evicted = false;
    uint32_t i;
    int r;

    if (n == 0 || n > PROTO_CHUNKS_PER_PIECE)
        return -EINVAL;
    for (i = 0; i < n; i++) {
        if (chunks[i].len == 0 || chunks[i].len > PROTO_CHUNK_MAX)
            return -EINVAL;
        piece_len += chunks[i].len;
    }
    if (piece_len > PROTO_PIECE_LEN)
        return -EINVAL;
    r = store_has_piece(s, file, index);
    if (r != 0)
        return r < 0 ? r : 0;

    leaves = malloc(n * sizeof(*leaves));
    order = malloc(n * sizeof(*order));
    first = malloc(n * sizeof(*first));
    count = malloc(n * sizeof(*count));
    lens = malloc(n * sizeof(*lens));
    refs = malloc(n * sizeof(*refs));
    ghash = malloc(n * sizeof(*ghash));
    b = rocksdb_writebatch_create();
    if (!leaves || !order || !first || !count || !lens || !refs || !ghash || !b) {
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        memcpy(leaves[i].hash, chunks[i].hash, CHASH_LEN);
        leaves[i].len = chunks[i].len;
    }
    memcpy(piece.hash, piece_hash, CHASH_LEN);
    piece.len = (uint32_t)piece_len;
    piece.n_chunks = n;
    r = manifest_piece_encode(&piece, leaves, &rec, &rec_len);
    if (r < 0)
        goto out;
    g = group_chunks(chunks, n, order, first, count);
    for (k = 0; k < g; k++)
        memcpy(ghash[k], chunks[order[first[k]]].hash, CHASH_LEN);

again:
    pthread_mutex_lock(&s->mu);
    /* Again under the lock: two writers of the same piece must not both count it. */
    r = store_has_piece(s, file, index);
    if (r != 0) {
        r = r < 0 ? r : 0;
        goto unlock;
    }
    r = store__meta_get(s, (const uint8_t(*)[CHASH_LEN])ghash, g, lens, refs);
    if (r < 0)
        goto unlock;
    new_bytes = 0;
    for (k = 0; k < g; k++) {
        if (refs[k] == 0)
            new_bytes += chunks[order[first[k]]].len;
    }
    r = store__space_ok(s, new_bytes);
    if (r < 0 && !evicted) {
        /* Make room (eviction takes the lock itself), then look again: another
         * writer may have stored some of these chunks meanwhile. */
        pthread_mutex_unlock(&s->mu);
        evicted = true;
        r = store_evict(s, new_bytes, &(uint64_t){0});
        if (r < 0)
            goto out;
        goto again;
    }
    if (r < 0) {
        store__log(s, STORE_LOG_WARN, "no room for %" PRIu64 " more bytes of chunks", new_bytes);
        goto unlock;
    }
    for (k = 0; k < g; k++) {
        const struct store_chunk *c = &chunks[order[first[k]]];
        if (refs[k] == 0) {
            store__chunk_key(ckey, KEY_CHUNK, c->hash);
            rocksdb_writebatch_put_cf(b, s->cf[CF_CHUNKS], (const char *)ckey, sizeof(ckey),
                                      (const char *)c->data, c->len);
            s->st.chunks++;
            s->st.physical_bytes += c->len;
        }
        store__meta_put(s, b, c->hash, c->len, refs[k] + count[k]);
    }
    store__piece_key(key, file, index);
    rocksdb_writebatch_put_cf(b, s->cf[CF_CHUNKS], (const char *)key, sizeof(key),
                              (const char *)rec, rec_len);
    s->st.logical_bytes += piece_len;
    store__stats_put(s, b);
    r = store__write(s, b, true);
    if (r < 0) {
        /* The batch did not land: take the counters back. */
        int e = store__stats_load(s);
        if (e < 0)
            store__log(s, STORE_LOG_ERROR, "stats reload failed: %s", shoal_strerror(e));
    }
unlock:
    pthread_mutex_unlock(&s->mu);
out:
    if (b)
        rocksdb_writebatch_destroy(b);
    free(rec);
    free(leaves);
    free(order);
    free(first);
    free(count);
    free(lens);
    free(refs);
    free(ghash);
    return r;
}

int store_has_chunks(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n, bool *have)
{
    uint32_t *lens = malloc((n ? n : 1) * sizeof(*lens));
    uint32_t *refs = malloc((n ? n : 1) * sizeof(*refs));
    size_t i;
    int r = -ENOMEM;

    if (lens && refs)
        r = n ? store__meta_get(s, hashes, n, lens, refs) : 0;
    if (r == 0) {
        for (i = 0; i < n; i++)
            have[i] = refs[i] > 0;
    }
    free(lens);
    free(refs);
    return r;
}

int store_get_chunks(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n,
                     store_chunk_cb cb, void *arg)
{
    uint8_t (*keys)[1 + CHASH_LEN] = NULL;
    const char **kp = NULL;
    size_t *ks = NULL, i, vlen;
    rocksdb_pinnableslice_t **vals = NULL;
    char **errs = NULL;
    const char *p;
    int r = 0;

    if (n > PROTO_CHUNKS_PER_PIECE)
        return -EINVAL;
    if (n == 0)
        return 0;
    keys = calloc(n, sizeof(*keys));
    kp = calloc(n, sizeof(*kp));
    ks = calloc(n, sizeof(*ks));
    vals = calloc(n, sizeof(*vals));
    errs = calloc(n, sizeof(*errs));
    if (!keys || !kp || !ks || !vals || !errs) {
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        store__chunk_key(keys[i], KEY_CHUNK, hashes[i]);
        kp[i] = (const char *)keys[i];
        ks[i] = sizeof(keys[i]);
    }
    rocksdb_batched_multi_get_cf(s->db, s->ro, s->cf[CF_CHUNKS], n, kp, ks, vals, errs, false);
    for (i = 0; i < n; i++) {
        if (errs[i]) {
            int e = store__err(s, errs[i], "batched chunk read");
            r = r ? r : e;
        }
    }
    for (i = 0; i < n && r == 0; i++) {
        p = vals[i] ? rocksdb_pinnableslice_value(vals[i], &vlen) : NULL;
        r = cb(arg, i, (const uint8_t *)p, p ? vlen : 0);
    }
out:
    for (i = 0; vals && i < n; i++) {
        if (vals[i])
            rocksdb_pinnableslice_destroy(vals[i]);
    }
    free(keys);
    free(kp);
    free(ks);
    free(vals);
    free(errs);
    return r;
}

int store__with_chunk(struct store *s, const uint8_t hash[CHASH_LEN], store__bytes_cb cb,
                      void *arg)
{
    uint8_t key[1 + CHASH_LEN];
    rocksdb_pinnableslice_t *v;
    const char *p;
    char *err = NULL;
    size_t vlen;
    int r;

    store__chunk_key(key, KEY_CHUNK, hash);
    v = rocksdb_get_pinned_cf(s->db, s->ro, s->cf[CF_CHUNKS], (const char *)key, sizeof(key),
                              &err);
    if (err)
        return store__err(s, err, "chunk read");
    if (!v)
        return -ENOENT;
    p = rocksdb_pinnableslice_value(v, &vlen);
    r = cb(arg, (const uint8_t *)p, vlen);
    rocksdb_pinnableslice_destroy(v);
    return r;
}

struct copy_out {
    uint8_t *buf;
    size_t cap;
    uint32_t *len;
};

static int copy_chunk(void *arg, const uint8_t *p, size_t n)
{
    struct copy_out *c = arg;

    *c->len = (uint32_t)n;
    if (n > c->cap)
        return -ENOBUFS;
    memcpy(c->buf, p, n);
    return 0;
}

int store_get_chunk(struct store *s, const uint8_t hash[static CHASH_LEN], uint8_t *buf,
                    size_t cap, uint32_t *len)
{
    struct copy_out c = {.buf = buf, .cap = cap, .len = len};

    return store__with_chunk(s, hash, copy_chunk, &c);
}

int store__cf_walk(struct store *s, int cf, store__kv_cb cb, void *arg)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[cf]);
    const char *k, *v;
    size_t klen, vlen;
    char *err = NULL;
    int r = 0;

    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && r == 0;
         rocksdb_iter_next(it)) {
        k = rocksdb_iter_key(it, &klen);
        v = rocksdb_iter_value(it, &vlen);
        r = cb(arg, k, klen, v, vlen);
    }
    if (r == 0) {
        rocksdb_iter_get_error(it, &err);
        r = store__err(s, err, "iterating records");
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return r;
}
