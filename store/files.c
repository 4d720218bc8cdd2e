/* files.c - files: completion, manifests, reading, listing, removal, totals.
 *
 * A file exists in the store through its piece records (written by store_put_piece
 * in store.c); completion turns them into a manifest and a synced complete mark.
 */
#include "store.h"

#include "err.h"
#include "proto_limits.h"
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* --- files ------------------------------------------------------------------ */

int store__file_get(struct store *s, const uint8_t file[STORE_ID_LEN], struct store_file *f)
{
    char *val;
    size_t vlen;
    int r;

    r = store__get(s, CF_FILES, file, STORE_ID_LEN, &val, &vlen);
    if (r < 0)
        return r;
    if (vlen != FILE_REC_LEN || (uint8_t)val[0] != FILE_REC_VERSION) {
        store__log(s, STORE_LOG_ERROR, "file record of %zu bytes, version %u", vlen,
              vlen ? (uint8_t)val[0] : 0);
        rocksdb_free(val);
        return vlen && (uint8_t)val[0] != FILE_REC_VERSION ? SHOAL_EVERSION : SHOAL_EFORMAT;
    }
    f->complete = (uint8_t)val[1] & FILE_COMPLETE;
    f->size = store__get_u64le((uint8_t *)val + 2);
    f->atime = store__get_u64le((uint8_t *)val + 10);
    rocksdb_free(val);
    return 0;
}

void store__file_put(struct store *s, rocksdb_writebatch_t *b, const struct store_file *f)
{
    uint8_t val[FILE_REC_LEN];

    val[0] = FILE_REC_VERSION;
    val[1] = f->complete ? FILE_COMPLETE : 0;
    store__put_u64le(val + 2, f->size);
    store__put_u64le(val + 10, f->atime);
    rocksdb_writebatch_put_cf(b, s->cf[CF_FILES], (const char *)f->id, STORE_ID_LEN,
                              (const char *)val, sizeof(val));
}

int store_get_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index,
                    struct manifest_piece *p, struct chash_leaf **chunks)
{
    uint8_t key[PIECE_KEY_LEN];
    char *val;
    size_t vlen;
    int r;

    store__piece_key(key, file, index);
    r = store__get(s, CF_CHUNKS, key, sizeof(key), &val, &vlen);
    if (r < 0)
        return r;
    r = manifest_piece_decode(p, chunks, (const uint8_t *)val, vlen);
    rocksdb_free(val);
    if (r < 0)
        store__log(s, STORE_LOG_ERROR, "piece record %" PRIu32 " does not decode: %s", index,
              shoal_strerror(r));
    return r;
}

int store_complete_file(struct store *s, const uint8_t file[static STORE_ID_LEN], uint64_t size)
{
    struct store_file f = {0};
    struct manifest m;
    struct manifest_piece p;
    struct chash_leaf *chunks;
    rocksdb_writebatch_t *b = NULL;
    uint8_t *enc = NULL;
    size_t enc_len;
    uint32_t i;
    int r;

    if (store__file_get(s, file, &f) == 0 && f.complete && f.size == size)
        return 0;
    r = manifest_init(&m, size);
    if (r < 0)
        return r == SHOAL_ELIMIT ? -EINVAL : r;
    memcpy(m.sha256, file, STORE_ID_LEN);
    for (i = 0; i < m.n_pieces; i++) {
        r = store_get_piece(s, file, i, &p, &chunks);
        if (r < 0)
            goto out;
        r = p.len == m.pieces[i].len ? manifest_set_piece(&m, i, p.hash, chunks, p.n_chunks)
                                     : SHOAL_EFORMAT;
        free(chunks);
        if (r < 0) {
            store__log(s, STORE_LOG_ERROR, "piece %" PRIu32 " does not fit a file of %" PRIu64
                  " bytes", i, size);
            r = SHOAL_EFORMAT;
            goto out;
        }
    }
    r = manifest_check(&m);
    if (r == 0)
        r = manifest_encode(&m, &enc, &enc_len);
    if (r < 0)
        goto out;
    /* Chunk bytes first, on disk; only then the synced record that says complete
     * (which also makes the index records before it durable). */
    b = rocksdb_writebatch_create();
    r = store__sync_packs(s, b);
    if (r < 0)
        goto out;
    memcpy(f.id, file, STORE_ID_LEN);
    f.size = size;
    f.complete = true;
    f.atime = store__now_ns();
    rocksdb_writebatch_put_cf(b, s->cf[CF_MANIFESTS], (const char *)file, STORE_ID_LEN,
                              (const char *)enc, enc_len);
    store__file_put(s, b, &f);
    r = store__write(s, b, true);
out:
    if (b)
        rocksdb_writebatch_destroy(b);
    free(enc);
    manifest_release(&m);
    return r;
}

int store_get_manifest(struct store *s, const uint8_t file[static STORE_ID_LEN],
                       struct manifest *m)
{
    char *val;
    size_t vlen;
    int r;

    r = store__get(s, CF_MANIFESTS, file, STORE_ID_LEN, &val, &vlen);
    if (r < 0)
        return r;
    r = manifest_decode(m, (const uint8_t *)val, vlen);
    rocksdb_free(val);
    if (r < 0)
        store__log(s, STORE_LOG_ERROR, "stored manifest does not decode: %s", shoal_strerror(r));
    return r;
}

/* Chunks of a list, in order, each handed on if present and of the expected length. */
struct chunk_want {
    const struct chash_leaf *leaf;
    store_read_cb cb;
    void *arg;
};

static int chunk_checked(void *arg, size_t i, const uint8_t *p, size_t n)
{
    struct chunk_want *w = arg;

    if (!p)
        return -ENOENT;
    return n == w->leaf[i].len ? w->cb(w->arg, p, n) : SHOAL_EHASH;
}

static int read_leaves(struct store *s, const struct chash_leaf *leaf, size_t n, store_read_cb cb,
                       void *arg)
{
    /* In slices: a copy of every hash of a large file would double the memory its
     * manifest already takes. */
    enum { SLICE = 1024 };
    struct chunk_want w = {.cb = cb, .arg = arg};
    uint8_t (*h)[CHASH_LEN] = malloc(SLICE * sizeof(*h));
    size_t at, i, k;
    int r = 0;

    if (!h)
        return -ENOMEM;
    for (at = 0; r == 0 && at < n; at += k) {
        k = n - at < SLICE ? n - at : SLICE;
        for (i = 0; i < k; i++)
            memcpy(h[i], leaf[at + i].hash, CHASH_LEN);
        w.leaf = leaf + at;
        r = store__read_chunks(s, (const uint8_t(*)[CHASH_LEN])h, k, chunk_checked, &w);
    }
    free(h);
    return r;
}

int store_read_file(struct store *s, const uint8_t file[static STORE_ID_LEN], store_read_cb cb,
                    void *arg)
{
    struct manifest m;
    int r;

    r = store_get_manifest(s, file, &m);
    if (r < 0)
        return r;
    r = read_leaves(s, m.chunks, m.n_chunks, cb, arg);
    if (r == -ENOENT)
        store__log(s, STORE_LOG_ERROR, "a chunk of a complete file is missing");
    manifest_release(&m);
    return r;
}

int store_read_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index,
                     store_read_cb cb, void *arg)
{
    struct manifest_piece p;
    struct chash_leaf *chunks;
    int r;

    r = store_get_piece(s, file, index, &p, &chunks);
    if (r < 0)
        return r;
    r = read_leaves(s, chunks, p.n_chunks, cb, arg);
    free(chunks);
    return r;
}

int store__piece_walk(struct store *s, const uint8_t *file, bool values, store__piece_walk_cb cb,
                      void *arg)
{
    uint8_t lo[1 + STORE_ID_LEN], hi[1 + STORE_ID_LEN];
    size_t lo_len = 1, hi_len = 1;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    const char *k, *v = NULL;
    size_t klen, vlen = 0;
    char *err = NULL;
    int r = 0;

    lo[0] = KEY_PIECE;
    hi[0] = KEY_PIECE + 1;
    if (file) {
        memcpy(lo + 1, file, STORE_ID_LEN);
        lo_len = hi_len = 1 + STORE_ID_LEN;
        memcpy(hi, lo, sizeof(lo));
        /* The upper bound: the next file id (the all-ones id is not a sha256 anyone
         * will meet, and then the bound is simply the next key kind). */
        for (int i = STORE_ID_LEN; i >= 1; i--) {
            if (++hi[i] != 0)
                break;
            if (i == 1) {
                hi[0] = KEY_PIECE + 1;
                hi_len = 1;
            }
        }
    }
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, hi_len);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_CHUNKS]);
    for (rocksdb_iter_seek(it, (const char *)lo, lo_len); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        k = rocksdb_iter_key(it, &klen);
        if (klen != PIECE_KEY_LEN)
            continue;
        if (values)
            v = rocksdb_iter_value(it, &vlen);
        r = cb(arg, (const uint8_t *)k + 1, store__piece_key_index((const uint8_t *)k), v, vlen);
        if (r != 0)
            break;
    }
    if (r == 0) {
        rocksdb_iter_get_error(it, &err);
        r = store__err(s, err, "iterating pieces");
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return r;
}

struct count_ctx {
    uint32_t pieces;
};

static int count_piece(void *arg, const uint8_t *file, uint32_t index, const char *v, size_t n)
{
    ((struct count_ctx *)arg)->pieces++;
    return 0;
}

int store_file_info(struct store *s, const uint8_t file[static STORE_ID_LEN],
                    struct store_file *out)
{
    struct store_file f = {0};
    struct count_ctx c = {0};
    int r;

    r = store__piece_walk(s, file, false, count_piece, &c);
    if (r < 0)
        return r;
    r = store__file_get(s, file, &f);
    if (r < 0 && r != -ENOENT)
        return r;
    if (c.pieces == 0 && r == -ENOENT)
        return -ENOENT;
    memcpy(f.id, file, STORE_ID_LEN);
    f.pieces = c.pieces;
    *out = f;
    return 0;
}

struct list_ctx {
    struct store *s;
    store_file_cb cb;
    void *arg;
    struct store_file cur;
    bool have;
};

static int list_flush(struct list_ctx *c)
{
    struct store_file f = {0};
    int r;

    if (!c->have)
        return 0;
    c->have = false;
    r = store__file_get(c->s, c->cur.id, &f);
    if (r < 0 && r != -ENOENT)
        return r;
    c->cur.complete = r == 0 && f.complete;
    c->cur.size = r == 0 ? f.size : 0;
    c->cur.atime = r == 0 ? f.atime : 0;
    return c->cb(c->arg, &c->cur);
}

static int list_piece(void *arg, const uint8_t *file, uint32_t index, const char *v, size_t n)
{
    struct list_ctx *c = arg;
    int r;

    if (c->have && memcmp(c->cur.id, file, STORE_ID_LEN) == 0) {
        c->cur.pieces++;
        return 0;
    }
    r = list_flush(c);
    if (r != 0)
        return r;
    memset(&c->cur, 0, sizeof(c->cur));
    memcpy(c->cur.id, file, STORE_ID_LEN);
    c->cur.pieces = 1;
    c->have = true;
    return 0;
}

/* Complete empty files have no pieces: the piece walk cannot see them. */
struct empty_ctx {
    struct store *s;
    store_file_cb cb;
    void *arg;
};

static int on_file_record(void *arg, const char *k, size_t klen, const char *v, size_t vlen)
{
    struct empty_ctx *c = arg;
    struct store_file f = {0};

    if (klen != STORE_ID_LEN || store__file_get(c->s, (const uint8_t *)k, &f) < 0 ||
        !f.complete || f.size != 0)
        return 0;
    memcpy(f.id, k, STORE_ID_LEN);
    return c->cb(c->arg, &f);
}

int store_list_files(struct store *s, store_file_cb cb, void *arg)
{
    struct list_ctx c = {.s = s, .cb = cb, .arg = arg};
    int r;

    r = store__piece_walk(s, NULL, false, list_piece, &c);
    if (r == 0)
        r = list_flush(&c);
    if (r == 0)
        r = store__cf_walk(s, CF_FILES, on_file_record, &(struct empty_ctx){s, cb, arg});
    return r;
}

/* Collects a file's piece records for removal. */
struct rm_ctx {
    struct store *s;
    rocksdb_writebatch_t *b;
    struct chash_leaf *chunks; /* every chunk occurrence of the file */
    size_t n, cap;
    uint64_t logical;
    int err;
};

static int rm_piece(void *arg, const uint8_t *file, uint32_t index, const char *v, size_t vlen)
{
    struct rm_ctx *c = arg;
    struct manifest_piece p;
    struct chash_leaf *ch;
    uint8_t key[PIECE_KEY_LEN];
    int r;

    r = manifest_piece_decode(&p, &ch, (const uint8_t *)v, vlen);
    if (r < 0) {
        /* An undecodable record still goes; its chunks are left to store_check. */
        store__log(c->s, STORE_LOG_WARN, "removing undecodable piece record %" PRIu32, index);
        p.n_chunks = 0;
        p.len = 0;
        ch = NULL;
    }
    if (c->n + p.n_chunks > c->cap) {
        size_t cap = (c->cap ? c->cap * 2 : 1024) + p.n_chunks;
        struct chash_leaf *m = realloc(c->chunks, cap * sizeof(*m));
        if (!m) {
            free(ch);
            return -ENOMEM;
        }
        c->chunks = m;
        c->cap = cap;
    }
    if (p.n_chunks)
        memcpy(c->chunks + c->n, ch, p.n_chunks * sizeof(*ch));
    c->n += p.n_chunks;
    c->logical += p.len;
    free(ch);
    store__piece_key(key, file, index);
    rocksdb_writebatch_delete_cf(c->b, c->s->cf[CF_CHUNKS], (const char *)key, sizeof(key));
    return 0;
}

static int by_leaf_hash(const void *a, const void *b)
{
    return memcmp(((const struct chash_leaf *)a)->hash, ((const struct chash_leaf *)b)->hash,
                  CHASH_LEN);
}

int store_remove_file(struct store *s, const uint8_t file[static STORE_ID_LEN])
{
    struct rm_ctx c = {.s = s};
    uint8_t (*hashes)[CHASH_LEN] = NULL, key[1 + CHASH_LEN];
    uint32_t *uses = NULL;
    struct store_meta *m = NULL;
    struct pack_loc *gone = NULL;
    struct pack_delta *live = NULL;
    uint32_t *emptied = NULL;
    size_t i, g = 0, n_gone = 0, n_emptied = 0;
    int r;

    /* One synced batch: the complete mark, the pieces, the counts. Only once it is on
     * the disk do the chunks' bytes go (store__punch), so that no index record can
     * come back after a crash pointing at freed space. */
    c.b = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_cf(c.b, s->cf[CF_FILES], (const char *)file, STORE_ID_LEN);
    rocksdb_writebatch_delete_cf(c.b, s->cf[CF_MANIFESTS], (const char *)file, STORE_ID_LEN);

    pthread_mutex_lock(&s->mu);
    r = store__piece_walk(s, file, true, rm_piece, &c);
    if (r < 0)
        goto unlock;
    if (c.logical == 0 && c.n == 0) {
        struct store_file f;
        r = store__file_get(s, file, &f);
        if (r == 0)
            r = store__write(s, c.b, true);
        goto unlock;
    }
    if (c.n)
        qsort(c.chunks, c.n, sizeof(c.chunks[0]), by_leaf_hash);
    hashes = malloc((c.n ? c.n : 1) * sizeof(*hashes));
    uses = malloc((c.n ? c.n : 1) * sizeof(*uses));
    m = malloc((c.n ? c.n : 1) * sizeof(*m));
    gone = malloc((c.n ? c.n : 1) * sizeof(*gone));
    live = malloc((c.n ? c.n : 1) * sizeof(*live));
    emptied = malloc((c.n ? c.n : 1) * sizeof(*emptied));
    if (!hashes || !uses || !m || !gone || !live || !emptied) {
        r = -ENOMEM;
        goto unlock;
    }
    for (i = 0; i < c.n; i++) {
        if (g > 0 && memcmp(hashes[g - 1], c.chunks[i].hash, CHASH_LEN) == 0) {
            uses[g - 1]++;
            continue;
        }
        memcpy(hashes[g], c.chunks[i].hash, CHASH_LEN);
        uses[g++] = 1;
    }
    r = store__meta_get(s, (const uint8_t(*)[CHASH_LEN])hashes, g, m);
    if (r < 0)
        goto unlock;
    for (i = 0; i < g; i++) {
        if (m[i].refs > uses[i]) {
            m[i].refs -= uses[i];
            store__meta_put(s, c.b, hashes[i], &m[i]);
            continue;
        }
        if (m[i].refs < uses[i])
            store__log(s, STORE_LOG_WARN, "chunk count below its uses; store_check repairs it");
        if (m[i].refs == 0)
            continue; /* already absent */
        store__chunk_key(key, KEY_META, hashes[i]);
        rocksdb_writebatch_delete_cf(c.b, s->cf[CF_CHUNKS], (const char *)key, sizeof(key));
        live[n_gone] = (struct pack_delta){m[i].loc.pack, -(int64_t)m[i].loc.len};
        gone[n_gone++] = m[i].loc;
        s->st.chunks--;
        s->st.physical_bytes -= m[i].loc.len;
    }
    s->st.logical_bytes -= c.logical;
    store__stats_put(s, c.b);
    r = store__pack_live(s, c.b, live, n_gone, emptied, &n_emptied);
    if (r == 0)
        r = store__write(s, c.b, true);
    if (r < 0) {
        (void)store__stats_load(s);
        n_gone = n_emptied = 0;
    }
unlock:
    pthread_mutex_unlock(&s->mu);
    if (gone)
        store__punch(s, gone, n_gone);
    if (emptied)
        store__drop_packs(s, emptied, n_emptied);
    rocksdb_writebatch_destroy(c.b);
    free(c.chunks);
    free(hashes);
    free(uses);
    free(m);
    free(gone);
    free(live);
    free(emptied);
    return r;
}

/* --- accounting ------------------------------------------------------------- */

static int count_file(void *arg, const struct store_file *f)
{
    struct store_stats *st = arg;

    st->files++;
    st->complete_files += f->complete;
    return 0;
}

int store_stats(struct store *s, struct store_stats *out)
{
    struct store_stats st = {0};
    int r;

    r = store_list_files(s, count_file, &st);
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->mu);
    st.chunks = s->st.chunks;
    st.physical_bytes = s->st.physical_bytes;
    st.logical_bytes = s->st.logical_bytes;
    pthread_mutex_unlock(&s->mu);
    *out = st;
    return 0;
}
