/* store.c - the chunk store: RocksDB for the index and the records, pack files for
 * the chunk bytes.
 *
 * DESIGN. Chunk bytes live in pack files (pack.h); RocksDB holds everything else in
 * seven column families (docs/storage.md):
 *
 *   chunks     'M' hash            -> len, refs, pack, offset (the chunk index)
 *              'P' file index(BE)  -> piece record            (manifest_piece_encode)
 *              'S'                 -> chunks, physical, logical (u64 each)
 *              'K' pack(BE)        -> bytes of chunks in that pack (deleted at zero)
 *   files      file id             -> version, flags, size, atime
 *   manifests  file id             -> manifest v1              (complete files only)
 *   default    "schema", "packsync" (the pack watermark), "open" (the boot that has
 *              the store open; absent after a clean close)
 *
 * A piece is stored in two steps: its new chunks are appended to a pack, outside any
 * lock; then, under the store's mutex, the index and the piece record go to RocksDB
 * in one batch through the WAL (unsynced: a few dozen bytes per 64 KiB chunk). So
 * every byte of a chunk is written once, and an index record never exists before the
 * bytes it points to are in the kernel: killing the process loses nothing that was
 * stored. For power loss, the record that marks a file complete is written synced
 * after the packs are synced; the pack watermark says what is known to be on the
 * disk, and opening after an unclean stop in another boot re-verifies what lies above
 * it (store__recover).
 *
 * Reference counts count piece records: a chunk used twice in one piece counts
 * twice. Read-modify-writes of 'M', 'S' and 'K' run under one mutex.
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

int store__write(struct store *s, rocksdb_writebatch_t *b, bool sync)
{
    char *err = NULL;

    rocksdb_write(s->db, sync ? s->wo_sync : s->wo_wal, b, &err);
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
        /* Index records only (about 60 bytes per 64 KiB chunk, plus piece records of
         * ~9 KiB per 16 MiB piece): one 16 MiB memtable indexes ~10 GB of chunks. */
        rocksdb_options_set_write_buffer_size(o, 16u << 20);
        rocksdb_options_set_max_write_buffer_number(o, 3);
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

/* --- packs, the watermark and the open mark ------------------------------------ */

#define SYNC_KEY "packsync"
#define OPEN_KEY "open"
#define BOOT_ID_LEN 36
/* Pack bytes written without a sync, at most, before the store syncs them on its own:
 * bounds what store__recover reads after a power loss. */
#define SYNC_EVERY (1ull << 30)

int store__sync_packs(struct store *s, rocksdb_writebatch_t *b)
{
    struct pack_mark m;
    uint8_t val[12];
    int r;

    r = packs_sync(s->packs, &m);
    if (r < 0) {
        store__log(s, STORE_LOG_ERROR, "syncing pack files: %s", strerror(-r));
        return r;
    }
    store__put_u32le(val, m.pack);
    store__put_u64le(val + 4, m.off);
    if (b) {
        rocksdb_writebatch_put_cf(b, s->cf[CF_DEFAULT], SYNC_KEY, sizeof(SYNC_KEY) - 1,
                                  (const char *)val, sizeof(val));
        return 0;
    }
    b = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(b, s->cf[CF_DEFAULT], SYNC_KEY, sizeof(SYNC_KEY) - 1,
                              (const char *)val, sizeof(val));
    r = store__write(s, b, false);
    rocksdb_writebatch_destroy(b);
    return r;
}

static void boot_id(char id[BOOT_ID_LEN + 1])
{
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

    id[0] = '\0';
    if (f) {
        if (!fgets(id, BOOT_ID_LEN + 1, f))
            id[0] = '\0';
        fclose(f);
    }
}

/* Opens the packs; after an unclean stop in another boot (a power loss, a crash of
 * the machine), re-verifies what the packs may have lost; then marks the store open
 * by this boot. */
static int open_packs(struct store *s, enum store_writes writes, char *why, size_t why_len)
{
    char path[4096], boot[BOOT_ID_LEN + 1], *val, *err = NULL;
    struct pack_mark since = {0};
    struct store_fsck fx;
    size_t vlen;
    int r;

    if (snprintf(path, sizeof(path), "%s/packs", s->dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    r = packs_open(path, writes != STORE_WRITES_BUFFERED, 0, &s->packs, why, why_len);
    if (r == -EINVAL && writes == STORE_WRITES_AUTO) {
        store__log(s, STORE_LOG_INFO, "%s; chunk writes go through the page cache", why);
        why[0] = '\0';
        r = packs_open(path, false, 0, &s->packs, why, why_len);
    } else if (r == 0) {
        store__log(s, STORE_LOG_INFO, "chunk writes: %s",
                   writes == STORE_WRITES_BUFFERED ? "buffered" : "direct I/O");
    }
    if (r == 0)
        s->direct = packs_direct(s->packs);
    if (r < 0)
        return r;
    r = store__get(s, CF_DEFAULT, SYNC_KEY, sizeof(SYNC_KEY) - 1, &val, &vlen);
    if (r == 0) {
        if (vlen == 12) {
            since.pack = store__get_u32le((uint8_t *)val);
            since.off = store__get_u64le((uint8_t *)val + 4);
        }
        rocksdb_free(val);
    } else if (r != -ENOENT) {
        return r;
    }
    boot_id(boot);
    r = store__get(s, CF_DEFAULT, OPEN_KEY, sizeof(OPEN_KEY) - 1, &val, &vlen);
    if (r == 0) {
        bool same = boot[0] && vlen == strlen(boot) && memcmp(val, boot, vlen) == 0;
        rocksdb_free(val);
        if (!same) {
            store__log(s, STORE_LOG_WARN,
                       "the store was not closed before the machine stopped: checking "
                       "the chunks written since pack %" PRIu32 " offset %" PRIu64,
                       since.pack, since.off);
            r = store__recover(s, &since, &fx);
            if (r < 0)
                return r;
            if (fx.bad_chunks || fx.missing_chunks)
                store__log(s, STORE_LOG_WARN,
                           "%" PRIu64 " chunks were lost; the pieces using them will be "
                           "fetched again", fx.bad_chunks + fx.missing_chunks);
        }
    } else if (r != -ENOENT) {
        return r;
    }
    rocksdb_put_cf(s->db, s->wo_sync, s->cf[CF_DEFAULT], OPEN_KEY, sizeof(OPEN_KEY) - 1, boot,
                   strlen(boot), &err);
    return store__err(s, err, "marking the store open");
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
    s->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_wal = rocksdb_writeoptions_create();
    s->ro = rocksdb_readoptions_create();
    s->fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(s->fo, 1);
    r = check_schema(s, fresh, why, why_len);
    if (r == 0)
        r = store__stats_load(s);
    if (r == 0)
        r = open_packs(s, o ? o->writes : STORE_WRITES_AUTO, why, why_len);
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
    if (s->db && s->packs) {
        /* A clean stop: packs on the disk, then the watermark and the open mark gone
         * in one synced write. */
        rocksdb_writebatch_t *b = rocksdb_writebatch_create();
        rocksdb_writebatch_delete_cf(b, s->cf[CF_DEFAULT], OPEN_KEY, sizeof(OPEN_KEY) - 1);
        if (store__sync_packs(s, b) == 0)
            store__write(s, b, true);
        rocksdb_writebatch_destroy(b);
    }
    packs_close(s->packs);
    if (s->db) {
        for (i = 0; i < CF_COUNT; i++)
            rocksdb_column_family_handle_destroy(s->cf[i]);
        rocksdb_close(s->db);
    }
    for (i = 0; i < CF_COUNT; i++) {
        if (s->opts[i])
            rocksdb_options_destroy(s->opts[i]);
    }
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

bool store__meta_decode(struct store_meta *m, const char *v, size_t vlen)
{
    const uint8_t *p = (const uint8_t *)v;

    if (vlen != META_LEN)
        return false;
    m->loc.len = store__get_u32le(p);
    m->refs = store__get_u32le(p + 4);
    m->loc.pack = store__get_u32le(p + 8);
    m->loc.off = store__get_u64le(p + 12);
    return m->loc.len > 0 && m->loc.len <= PROTO_CHUNK_MAX;
}

int store__meta_get(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n,
                    struct store_meta *m)
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
        memset(&m[i], 0, sizeof(m[i]));
        if (errs[i]) {
            r = store__err(s, errs[i], "chunk index read");
            continue;
        }
        if (!vals[i])
            continue;
        if (!store__meta_decode(&m[i], vals[i], vs[i])) {
            store__log(s, STORE_LOG_ERROR, "a chunk index record of %zu bytes does not decode",
                       vs[i]);
            m[i].refs = 0;
            r = SHOAL_EFORMAT;
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
                     const struct store_meta *m)
{
    uint8_t key[1 + CHASH_LEN], val[META_LEN];

    store__chunk_key(key, KEY_META, hash);
    store__put_u32le(val, m->loc.len);
    store__put_u32le(val + 4, m->refs);
    store__put_u32le(val + 8, m->loc.pack);
    store__put_u64le(val + 12, m->loc.off);
    rocksdb_writebatch_put_cf(b, s->cf[CF_CHUNKS], (const char *)key, sizeof(key),
                              (const char *)val, sizeof(val));
}

static int by_place(const void *a, const void *b)
{
    const struct pack_loc *x = a, *y = b;

    if (x->pack != y->pack)
        return x->pack < y->pack ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

static int by_pack(const void *a, const void *b)
{
    const struct pack_delta *x = a, *y = b;

    return x->pack < y->pack ? -1 : x->pack > y->pack;
}

void store__pack_key(uint8_t key[PACK_KEY_LEN], uint32_t pack)
{
    key[0] = KEY_PACK;
    key[1] = (uint8_t)(pack >> 24);
    key[2] = (uint8_t)(pack >> 16);
    key[3] = (uint8_t)(pack >> 8);
    key[4] = (uint8_t)pack;
}

int store__pack_live(struct store *s, rocksdb_writebatch_t *b, struct pack_delta *d, size_t n,
                     uint32_t *emptied, size_t *n_emptied)
{
    uint8_t key[PACK_KEY_LEN], val[8];
    size_t i, j;
    char *v;
    size_t vlen;
    int r;

    if (n_emptied)
        *n_emptied = 0;
    if (n == 0)
        return 0;
    qsort(d, n, sizeof(*d), by_pack);
    for (i = 0; i < n; i = j) {
        int64_t sum = 0, now = 0;
        for (j = i; j < n && d[j].pack == d[i].pack; j++)
            sum += d[j].bytes;
        store__pack_key(key, d[i].pack);
        r = store__get(s, CF_CHUNKS, key, sizeof(key), &v, &vlen);
        if (r == 0) {
            now = vlen == 8 ? (int64_t)store__get_u64le((uint8_t *)v) : 0;
            rocksdb_free(v);
        } else if (r != -ENOENT) {
            return r;
        }
        now += sum;
        if (now > 0) {
            store__put_u64le(val, (uint64_t)now);
            rocksdb_writebatch_put_cf(b, s->cf[CF_CHUNKS], (const char *)key, sizeof(key),
                                      (const char *)val, sizeof(val));
            continue;
        }
        if (now < 0)
            store__log(s, STORE_LOG_WARN, "pack %" PRIu32 " counts fewer bytes than it "
                       "holds; store_check repairs it", d[i].pack);
        rocksdb_writebatch_delete_cf(b, s->cf[CF_CHUNKS], (const char *)key, sizeof(key));
        if (emptied)
            emptied[(*n_emptied)++] = d[i].pack;
    }
    return 0;
}

void store__drop_packs(struct store *s, const uint32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int r = packs_remove(s->packs, ids[i]);
        if (r < 0 && r != -EBUSY)
            store__log(s, STORE_LOG_WARN, "removing pack %" PRIu32 ": %s", ids[i],
                       strerror(-r));
    }
}

void store__punch(struct store *s, struct pack_loc *locs, size_t n)
{
    size_t i, j;
    int r;

    if (n == 0)
        return;
    /* Neighbours merge into one hole: punched one by one, the block two chunks share
     * would stay allocated. */
    qsort(locs, n, sizeof(*locs), by_place);
    for (i = 0; i < n; i = j) {
        struct pack_loc run = locs[i];
        uint64_t len = run.len;
        for (j = i + 1; j < n && locs[j].pack == run.pack && locs[j].off == run.off + len &&
                        len + locs[j].len <= UINT32_MAX;
             j++)
            len += locs[j].len;
        run.len = (uint32_t)len;
        r = packs_punch(s->packs, &run);
        if (r < 0 && !s->punch_warned) {
            s->punch_warned = true;
            store__log(s, STORE_LOG_WARN,
                       "cannot free the space of removed chunks (%s): the pack files keep it",
                       strerror(-r));
        }
    }
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

/* Rounds of store_put_piece against chunks removed under it, at most. */
#define PUT_TRIES 4

/* What store_put_piece works with: the piece's distinct chunks and, per chunk, where
 * the store has it or where this call wrote it. */
struct put {
    uint32_t n, g;
    uint32_t *order, *first, *count;
    uint32_t *grp;             /* group of each chunk */
    uint32_t *rep;             /* first chunk (in piece order) of each group */
    uint8_t (*ghash)[CHASH_LEN];
    struct store_meta *have;   /* the index as last read */
    struct pack_loc *wrote;    /* where this call appended the chunk (len 0: not yet) */
    bool *used;                /* the appended copy is what the index now names */
    struct iovec *iov;
    struct pack_loc *locs;
    uint32_t *which;           /* group of each iov */
    struct pack_append apps[PUT_TRIES]; /* this call's appends, settled at its end */
    unsigned n_apps;
};

static int put_alloc(struct put *p, const struct store_chunk *chunks, uint32_t n)
{
    p->n = n;
    p->order = malloc(n * sizeof(*p->order));
    p->first = malloc(n * sizeof(*p->first));
    p->count = malloc(n * sizeof(*p->count));
    p->ghash = malloc(n * sizeof(*p->ghash));
    p->have = malloc(n * sizeof(*p->have));
    p->wrote = calloc(n, sizeof(*p->wrote));
    p->used = calloc(n, sizeof(*p->used));
    p->iov = malloc(n * sizeof(*p->iov));
    p->locs = malloc(n * sizeof(*p->locs));
    p->which = malloc(n * sizeof(*p->which));
    p->grp = malloc(n * sizeof(*p->grp));
    p->rep = malloc(n * sizeof(*p->rep));
    if (!p->order || !p->first || !p->count || !p->ghash || !p->have || !p->wrote ||
        !p->used || !p->iov || !p->locs || !p->which || !p->grp || !p->rep)
        return -ENOMEM;
    p->g = group_chunks(chunks, n, p->order, p->first, p->count);
    for (uint32_t k = 0; k < p->g; k++) {
        memcpy(p->ghash[k], chunks[p->order[p->first[k]]].hash, CHASH_LEN);
        p->rep[k] = UINT32_MAX;
        for (uint32_t j = 0; j < p->count[k]; j++) {
            uint32_t i = p->order[p->first[k] + j];
            p->grp[i] = k;
            if (i < p->rep[k])
                p->rep[k] = i;
        }
    }
    return 0;
}

static void put_free(struct put *p)
{
    free(p->order);
    free(p->first);
    free(p->count);
    free(p->ghash);
    free(p->have);
    free(p->wrote);
    free(p->used);
    free(p->iov);
    free(p->locs);
    free(p->which);
    free(p->grp);
    free(p->rep);
}

/* Appends the chunks the index lacks and this call has not written yet, in piece
 * order (so that a piece reads back sequentially). */
static int put_append(struct store *s, struct put *p, const struct store_chunk *chunks)
{
    uint32_t i, k, m = 0;
    int r;

    for (i = 0; i < p->n; i++) {
        k = p->grp[i];
        if (p->rep[k] != i || p->have[k].refs || p->wrote[k].len)
            continue;
        p->iov[m] = (struct iovec){.iov_base = (void *)chunks[i].data, .iov_len = chunks[i].len};
        p->which[m++] = k;
    }
    if (m == 0)
        return 0;
    r = packs_append(s->packs, p->iov, m, p->locs, &p->apps[p->n_apps]);
    if (r == 0)
        p->n_apps++;
    for (i = 0; r == 0 && i < m; i++)
        p->wrote[p->which[i]] = p->locs[i];
    return r;
}

int store_put_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index,
                    const uint8_t piece_hash[static CHASH_LEN], const struct store_chunk *chunks,
                    uint32_t n)
{
    struct chash_leaf *leaves = NULL;
    struct manifest_piece piece = {0};
    struct put p = {0};
    struct pack_delta *live = NULL;
    size_t n_live;
    uint8_t key[PIECE_KEY_LEN];
    rocksdb_writebatch_t *b = NULL;
    uint8_t *rec = NULL;
    size_t rec_len;
    uint64_t new_bytes, piece_len = 0;
    bool evicted = false, again;
    uint32_t i, k, tries;
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
    live = malloc(n * sizeof(*live));
    b = rocksdb_writebatch_create();
    r = leaves && live && b ? put_alloc(&p, chunks, n) : -ENOMEM;
    if (r < 0)
        goto out;
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

    /* Read the index, write what it lacks to a pack (no lock held), then write the
     * records under the lock against the index as it is then. A chunk removed in
     * between is written on the next round; one stored by another writer meanwhile
     * makes our copy surplus, and its space is given back. */
    for (tries = 0, again = true; again && tries < PUT_TRIES; tries++) {
        r = store__meta_get(s, (const uint8_t(*)[CHASH_LEN])p.ghash, p.g, p.have);
        if (r < 0)
            goto out;
        new_bytes = 0;
        for (k = 0; k < p.g; k++) {
            if (p.have[k].refs == 0 && p.wrote[k].len == 0)
                new_bytes += chunks[p.rep[k]].len;
        }
        pthread_mutex_lock(&s->mu);
        r = store__space_ok(s, new_bytes);
        pthread_mutex_unlock(&s->mu);
        if (r < 0 && !evicted) {
            evicted = true;
            r = store_evict(s, new_bytes, &(uint64_t){0});
            if (r < 0)
                goto out;
            tries--;
            continue;
        }
        if (r < 0) {
            store__log(s, STORE_LOG_WARN, "no room for %" PRIu64 " more bytes of chunks",
                       new_bytes);
            goto out;
        }
        r = put_append(s, &p, chunks);
        if (r < 0) {
            store__log(s, STORE_LOG_ERROR, "writing chunks to a pack file: %s", strerror(-r));
            goto out;
        }
        if (s->direct && !packs_direct(s->packs)) {
            pthread_mutex_lock(&s->mu);
            if (s->direct)
                store__log(s, STORE_LOG_WARN, "the disk refused a direct write; chunk writes "
                                              "go through the page cache from now on");
            s->direct = false;
            pthread_mutex_unlock(&s->mu);
        }

        pthread_mutex_lock(&s->mu);
        /* Again under the lock: two writers of the same piece must not both count it. */
        r = store_has_piece(s, file, index);
        if (r != 0) {
            r = r < 0 ? r : 0;
            pthread_mutex_unlock(&s->mu);
            goto out;
        }
        r = store__meta_get(s, (const uint8_t(*)[CHASH_LEN])p.ghash, p.g, p.have);
        again = false;
        new_bytes = 0;
        for (k = 0; r == 0 && k < p.g; k++) {
            again |= p.have[k].refs == 0 && p.wrote[k].len == 0;
            if (p.have[k].refs == 0)
                new_bytes += p.wrote[k].len;
        }
        /* The quota once more, against the counts as they are now: writers that passed
         * the check above together must not overshoot it together. */
        if (r == 0 && !again && s->quota && s->st.physical_bytes + new_bytes > s->quota) {
            pthread_mutex_unlock(&s->mu);
            if (evicted) {
                store__log(s, STORE_LOG_WARN, "no room for %" PRIu64 " more bytes of chunks",
                           new_bytes);
                r = -ENOSPC;
                goto out;
            }
            evicted = true;
            r = store_evict(s, new_bytes, &(uint64_t){0});
            if (r < 0)
                goto out;
            again = true;
            continue;
        }
        if (r < 0 || again) {
            pthread_mutex_unlock(&s->mu);
            if (r < 0)
                goto out;
            continue;
        }
        n_live = 0;
        for (k = 0; k < p.g; k++) {
            struct store_meta m = p.have[k];
            if (m.refs == 0) {
                m.loc = p.wrote[k];
                p.used[k] = true;
                s->st.chunks++;
                s->st.physical_bytes += m.loc.len;
                live[n_live++] = (struct pack_delta){m.loc.pack, m.loc.len};
            }
            m.refs += p.count[k];
            store__meta_put(s, b, p.ghash[k], &m);
        }
        r = store__pack_live(s, b, live, n_live, NULL, NULL);
        if (r < 0) {
            (void)store__stats_load(s);
            for (k = 0; k < p.g; k++)
                p.used[k] = false;
            pthread_mutex_unlock(&s->mu);
            goto out;
        }
        store__piece_key(key, file, index);
        rocksdb_writebatch_put_cf(b, s->cf[CF_CHUNKS], (const char *)key, sizeof(key),
                                  (const char *)rec, rec_len);
        s->st.logical_bytes += piece_len;
        store__stats_put(s, b);
        r = store__write(s, b, false);
        if (r < 0) {
            /* The batch did not land: take the counters back. */
            int e = store__stats_load(s);
            if (e < 0)
                store__log(s, STORE_LOG_ERROR, "stats reload failed: %s", shoal_strerror(e));
            for (k = 0; k < p.g; k++)
                p.used[k] = false;
        }
        pthread_mutex_unlock(&s->mu);
    }
    if (r == 0 && again) {
        store__log(s, STORE_LOG_WARN, "a piece's chunks kept being removed while it was stored");
        r = -EAGAIN;
    }
    if (r == 0 && packs_unsynced(s->packs) >= SYNC_EVERY)
        r = store__sync_packs(s, NULL);
out:
    /* Copies this call wrote that the index does not name: space back. */
    for (k = 0; k < p.g; k++) {
        if (p.wrote && p.wrote[k].len && !p.used[k])
            store__punch(s, &p.wrote[k], 1);
    }
    for (k = 0; k < p.n_apps; k++)
        packs_settle(s->packs, &p.apps[k]);
    if (b)
        rocksdb_writebatch_destroy(b);
    free(rec);
    free(leaves);
    free(live);
    put_free(&p);
    return r;
}

int store_has_chunks(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n, bool *have)
{
    struct store_meta *m = malloc((n ? n : 1) * sizeof(*m));
    size_t i;
    int r = -ENOMEM;

    if (m)
        r = n ? store__meta_get(s, hashes, n, m) : 0;
    if (r == 0) {
        for (i = 0; i < n; i++)
            have[i] = m[i].refs > 0;
    }
    free(m);
    return r;
}

/* Chunks are read in runs: chunks that lie one after the other in a pack (a piece's
 * new chunks do) come in with one read of up to READ_SPAN bytes, from the page cache
 * if it holds them, else with direct I/O straight into the buffer (packs_read_bulk). */
#define READ_SPAN  (1u << 20)
#define READ_BATCH 1024u

static int read_batch(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n, size_t base,
                      struct store_meta *m, uint8_t *buf, store_chunk_cb cb, void *arg)
{
    size_t i = 0, j;
    int r;

    r = store__meta_get(s, hashes, n, m);
    while (r == 0 && i < n) {
        struct pack_loc run;
        if (m[i].refs == 0) {
            r = cb(arg, base + i, NULL, 0);
            i++;
            continue;
        }
        /* Extend the run while the next chunk follows this one in the same pack. */
        run = m[i].loc;
        for (j = i + 1; j < n && m[j].refs && m[j].loc.pack == run.pack &&
                        m[j].loc.off == run.off + run.len &&
                        run.len + m[j].loc.len <= READ_SPAN;
             j++)
            run.len += m[j].loc.len;
        const uint8_t *data;
        r = packs_read_bulk(s->packs, &run, buf, PACK_READ_CAP(READ_SPAN), &data);
        if (r < 0) {
            store__log(s, STORE_LOG_ERROR, "reading pack %" PRIu32 ": %s", run.pack,
                       r == SHOAL_EHASH ? "the file is shorter than its index says"
                                        : strerror(-r));
            break;
        }
        for (; i < j && r == 0; i++)
            r = cb(arg, base + i, data + (m[i].loc.off - run.off), m[i].loc.len);
    }
    return r;
}

int store__read_chunks(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n,
                       store_chunk_cb cb, void *arg)
{
    struct store_meta *m = malloc((n < READ_BATCH ? n : READ_BATCH) * sizeof(*m) + 1);
    uint8_t *buf = NULL;
    size_t at;
    int r = 0;

    if (posix_memalign((void **)&buf, PACK_ALIGN, PACK_READ_CAP(READ_SPAN)) != 0)
        buf = NULL;
    if (!m || !buf)
        r = -ENOMEM;
    for (at = 0; r == 0 && at < n; at += READ_BATCH) {
        size_t k = n - at < READ_BATCH ? n - at : READ_BATCH;
        r = read_batch(s, hashes + at, k, at, m, buf, cb, arg);
    }
    free(m);
    free(buf);
    return r;
}

int store_get_chunks(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n,
                     store_chunk_cb cb, void *arg)
{
    if (n > PROTO_CHUNKS_PER_PIECE)
        return -EINVAL;
    return store__read_chunks(s, hashes, n, cb, arg);
}

struct copy_out {
    uint8_t *buf;
    size_t cap;
    uint32_t *len;
};

static int copy_chunk(void *arg, size_t i, const uint8_t *p, size_t n)
{
    struct copy_out *c = arg;

    (void)i;
    if (!p)
        return -ENOENT;
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

    return store__read_chunks(s, (const uint8_t(*)[CHASH_LEN])hash, 1, copy_chunk, &c);
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
