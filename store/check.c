/* check.c - store_check(): the store's consistency check and repair (shoal fsck).
 *
 * Three passes over the chunks column family. Pass 1 decodes every piece record,
 * recomputes its piece hash and counts, per chunk hash, the uses by pieces (an
 * in-memory table). Pass 2 walks the chunk index: each chunk's bytes are read from
 * its pack and hashed, its reference count compared with the uses found, orphans
 * noted. Pass 3 walks the complete files and finds those that lost a piece or use a
 * bad chunk. Repair rewrites counts, removes orphans and bad chunks (and frees their
 * pack space), drops the pieces that used bad or missing chunks and the complete mark
 * of their files, and rewrites the stats.
 *
 * store__recover is the same check after a power loss, reading only the chunks above
 * the pack watermark: those below it were on the disk before the stop.
 */
#include "store.h"

#include "err.h"
#include "proto_limits.h"
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* --- a hash table of chunk hashes -> uses ------------------------------------ */

struct use {
    uint8_t hash[CHASH_LEN];
    uint32_t uses;
    uint8_t state; /* 0 empty slot, 1 used by pieces, 2 also seen in the index, 3 bad */
};

struct uses {
    struct use *slot;
    size_t cap, n; /* cap: a power of two */
};

static uint64_t slot_of(const uint8_t *hash)
{
    uint64_t h;

    memcpy(&h, hash, sizeof(h)); /* chunk hashes are uniform already */
    return h;
}

static struct use *uses_find(struct uses *u, const uint8_t *hash, bool add)
{
    size_t i, mask = u->cap - 1;

    for (i = slot_of(hash) & mask;; i = (i + 1) & mask) {
        struct use *e = &u->slot[i];
        if (e->state == 0) {
            if (!add)
                return NULL;
            memcpy(e->hash, hash, CHASH_LEN);
            e->state = 1;
            u->n++;
            return e;
        }
        if (memcmp(e->hash, hash, CHASH_LEN) == 0)
            return e;
    }
}

static int uses_grow(struct uses *u)
{
    struct uses bigger = {.cap = u->cap ? u->cap * 2 : 4096};
    size_t i;

    bigger.slot = calloc(bigger.cap, sizeof(*bigger.slot));
    if (!bigger.slot)
        return -ENOMEM;
    for (i = 0; i < u->cap; i++) {
        if (u->slot[i].state)
            *uses_find(&bigger, u->slot[i].hash, true) = u->slot[i];
    }
    free(u->slot);
    *u = bigger;
    return 0;
}

static struct use *uses_add(struct uses *u, const uint8_t *hash)
{
    if (2 * (u->n + 1) > u->cap && uses_grow(u) < 0)
        return NULL;
    return uses_find(u, hash, true);
}

/* --- the passes ------------------------------------------------------------ */

struct ctx {
    struct store *s;
    bool repair;
    struct store_fsck r;
    struct uses uses;
    rocksdb_writebatch_t *b;
    uint64_t chunks, physical, logical;
    const struct pack_mark *since; /* hash only chunks above it (NULL: all) */
    struct pack_loc *gone;         /* pack space to free once the repair is written */
    size_t n_gone, cap_gone;
    struct pack_delta *live;       /* bytes per pack in use, sorted by pack */
    size_t n_live, cap_live;
    uint32_t *emptied;             /* packs the repair leaves unused */
    size_t n_emptied, cap_emptied;
    uint8_t *buf;                  /* one chunk */
    int err;
};

/* Room for one more element in a growing array (*n of *cap used). */
static int grow(void *arr, size_t n, size_t *cap, size_t size)
{
    void **a = arr;
    size_t c = *cap ? *cap * 2 : 64;
    void *m;

    if (n < *cap)
        return 0;
    m = realloc(*a, c * size);
    if (!m)
        return -ENOMEM;
    *a = m;
    *cap = c;
    return 0;
}

/* Removes an index record in the repair batch, and its bytes once that is written. */
static int drop_chunk(struct ctx *c, const char *key, size_t klen, const struct store_meta *m)
{
    rocksdb_writebatch_delete_cf(c->b, c->s->cf[CF_CHUNKS], key, klen);
    if (!m)
        return 0;
    if (grow(&c->gone, c->n_gone, &c->cap_gone, sizeof(*c->gone)) < 0)
        return -ENOMEM;
    c->gone[c->n_gone++] = m->loc;
    return 0;
}

static int pass_pieces(void *arg, const uint8_t *file, uint32_t index, const char *v, size_t n)
{
    struct ctx *c = arg;
    struct manifest_piece p;
    struct chash_leaf *ch;
    uint8_t h[CHASH_LEN], key[PIECE_KEY_LEN];
    uint32_t i;
    int r;

    r = manifest_piece_decode(&p, &ch, (const uint8_t *)v, n);
    if (r == 0) {
        c->logical += p.len;
        /* The merkle pass scrambles its input: hash a copy. */
        struct chash_leaf *tmp = malloc(p.n_chunks * sizeof(*tmp));
        if (!tmp) {
            free(ch);
            return -ENOMEM;
        }
        memcpy(tmp, ch, p.n_chunks * sizeof(*tmp));
        chash_piece_inplace(tmp, p.n_chunks, h);
        free(tmp);
        if (memcmp(h, p.hash, CHASH_LEN) == 0) {
            /* Only intact pieces count as uses: a bad one goes in repair. */
            for (i = 0; i < p.n_chunks; i++) {
                struct use *e = uses_add(&c->uses, ch[i].hash);
                if (!e) {
                    free(ch);
                    return -ENOMEM;
                }
                e->uses++;
            }
        }
        free(ch);
    }
    if (r < 0 || memcmp(h, p.hash, CHASH_LEN) != 0) {
        store__log(c->s, STORE_LOG_ERROR, "piece record %" PRIu32 " is %s", index,
                   r < 0 ? "undecodable" : "inconsistent with its piece hash");
        c->r.bad_pieces++;
        if (c->repair) {
            store__piece_key(key, file, index);
            rocksdb_writebatch_delete_cf(c->b, c->s->cf[CF_CHUNKS], (const char *)key,
                                         sizeof(key));
        }
    }
    return 0;
}

/* Counts len bytes in use in pack `pack` (a sorted array: packs are few). */
static int live_add(struct ctx *c, uint32_t pack, uint32_t len)
{
    size_t lo = 0, hi = c->n_live;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->live[mid].pack < pack)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->n_live && c->live[lo].pack == pack) {
        c->live[lo].bytes += len;
        return 0;
    }
    if (grow(&c->live, c->n_live, &c->cap_live, sizeof(*c->live)) < 0)
        return -ENOMEM;
    memmove(c->live + lo + 1, c->live + lo, (c->n_live - lo) * sizeof(*c->live));
    c->live[lo] = (struct pack_delta){pack, len};
    c->n_live++;
    return 0;
}

/* The index of pack's entry in c->live, or SIZE_MAX. */
static size_t live_find(const struct ctx *c, uint32_t pack)
{
    for (size_t lo = 0, hi = c->n_live; lo < hi;) {
        size_t mid = (lo + hi) / 2;
        if (c->live[mid].pack == pack)
            return mid;
        if (c->live[mid].pack < pack)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

/* After pass 2: each pack's 'K' record against the bytes the index puts in it. A
 * record that should be gone is dropped, and its pack removed after the repair. */
static int pass_packs(struct ctx *c)
{
    struct store *s = c->s;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    uint8_t lo = KEY_PACK, hi = KEY_PACK + 1, key[PACK_KEY_LEN], val[8];
    bool *seen = calloc(c->n_live + 1, sizeof(*seen));
    char *err = NULL;
    size_t i;
    int r = seen ? 0 : -ENOMEM;

    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)&hi, 1);
    it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_CHUNKS]);
    for (rocksdb_iter_seek(it, (const char *)&lo, 1); r == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        uint32_t pack;
        int64_t want;

        if (klen != PACK_KEY_LEN) {
            c->r.bad_totals++;
            if (c->repair)
                rocksdb_writebatch_delete_cf(c->b, s->cf[CF_CHUNKS], (const char *)k, klen);
            continue;
        }
        pack = (uint32_t)k[1] << 24 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 8 | k[4];
        i = live_find(c, pack);
        want = i == SIZE_MAX ? 0 : c->live[i].bytes;
        if (i != SIZE_MAX)
            seen[i] = true;
        if (vlen == 8 && (int64_t)store__get_u64le(v) == want)
            continue;
        store__log(s, STORE_LOG_ERROR, "pack %" PRIu32 " counts the wrong number of bytes",
                   pack);
        c->r.bad_totals++;
        if (!c->repair)
            continue;
        if (want > 0) {
            store__put_u64le(val, (uint64_t)want);
            rocksdb_writebatch_put_cf(c->b, s->cf[CF_CHUNKS], (const char *)k, klen,
                                      (const char *)val, sizeof(val));
            continue;
        }
        rocksdb_writebatch_delete_cf(c->b, s->cf[CF_CHUNKS], (const char *)k, klen);
        r = grow(&c->emptied, c->n_emptied, &c->cap_emptied, sizeof(*c->emptied));
        if (r < 0)
            break;
        c->emptied[c->n_emptied++] = pack;
    }
    if (r == 0) {
        rocksdb_iter_get_error(it, &err);
        r = store__err(s, err, "iterating the pack records");
    }
    for (i = 0; r == 0 && i < c->n_live; i++) {
        if (seen[i] || c->live[i].bytes == 0)
            continue;
        store__log(s, STORE_LOG_ERROR, "pack %" PRIu32 " has no byte count", c->live[i].pack);
        c->r.bad_totals++;
        if (c->repair) {
            store__pack_key(key, c->live[i].pack);
            store__put_u64le(val, (uint64_t)c->live[i].bytes);
            rocksdb_writebatch_put_cf(c->b, s->cf[CF_CHUNKS], (const char *)key, sizeof(key),
                                      (const char *)val, sizeof(val));
        }
    }
    free(seen);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return r;
}

/* Walks the 'M' records, reading and hashing each chunk's bytes. */
static int pass_index(struct ctx *c)
{
    struct store *s = c->s;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    uint8_t lo = KEY_META, hi = KEY_META + 1, h[CHASH_LEN];
    const char *k, *v;
    size_t klen, vlen;
    char *err = NULL;
    int r = 0;

    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)&hi, 1);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_CHUNKS]);
    for (rocksdb_iter_seek(it, (const char *)&lo, 1); r == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        struct store_meta m;
        const uint8_t *hash;
        struct use *e;
        const char *what = NULL;

        k = rocksdb_iter_key(it, &klen);
        v = rocksdb_iter_value(it, &vlen);
        if (klen != 1 + CHASH_LEN)
            continue;
        hash = (const uint8_t *)k + 1;
        e = uses_find(&c->uses, hash, false);
        if (!store__meta_decode(&m, v, vlen)) {
            store__log(s, STORE_LOG_ERROR, "a chunk index record does not decode");
            c->r.bad_chunks++;
            if (e)
                e->state = 3;
            if (c->repair)
                r = drop_chunk(c, k, klen, NULL);
            continue;
        }
        c->chunks++;
        c->physical += m.loc.len;
        if (!c->since || pack_above(&m.loc, c->since)) {
            c->r.chunks_checked++;
            r = packs_read(s->packs, &m.loc, c->buf);
            if (r == -ENOENT || r == SHOAL_EHASH) {
                what = "missing from its pack";
            } else if (r == 0) {
                chash_chunk(c->buf, m.loc.len, h);
                if (memcmp(h, hash, CHASH_LEN) != 0)
                    what = "corrupt";
            } else {
                store__log(s, STORE_LOG_ERROR, "reading pack %" PRIu32 ": %s", m.loc.pack,
                           strerror(-r));
                break;
            }
            r = 0;
        }
        if (what) {
            store__log(s, STORE_LOG_ERROR, "a stored chunk is %s", what);
            c->r.bad_chunks++;
            if (e)
                e->state = 3;
            if (c->repair)
                r = drop_chunk(c, k, klen, &m);
            continue;
        }
        if (!e) {
            c->r.orphan_chunks++;
            if (c->repair)
                r = drop_chunk(c, k, klen, &m);
            continue;
        }
        e->state = 2;
        r = live_add(c, m.loc.pack, m.loc.len);
        if (e->uses != m.refs) {
            c->r.bad_refcounts++;
            if (c->repair) {
                m.refs = e->uses;
                store__meta_put(s, c->b, hash, &m);
            }
        }
    }
    if (r == 0) {
        rocksdb_iter_get_error(it, &err);
        r = store__err(s, err, "iterating the chunk index");
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return r;
}

/* After pass 2: does this piece use a chunk that is missing or bad? */
static int piece_broken(struct ctx *c, const char *v, size_t n, bool *broken)
{
    struct manifest_piece p;
    struct chash_leaf *ch;
    uint32_t i;

    *broken = true;
    if (manifest_piece_decode(&p, &ch, (const uint8_t *)v, n) < 0)
        return 0;
    *broken = false;
    for (i = 0; i < p.n_chunks && !*broken; i++) {
        struct use *e = uses_find(&c->uses, ch[i].hash, false);
        *broken = !e || e->state != 2;
    }
    free(ch);
    return 0;
}

struct broken_ctx {
    struct ctx *c;
    uint8_t last_file[STORE_ID_LEN];
    bool have_last;
};

/* Pass 3a: pieces using missing or bad chunks; they go in repair, and so does the
 * complete mark of their file. */
static int pass_broken(void *arg, const uint8_t *file, uint32_t index, const char *v, size_t n)
{
    struct broken_ctx *bc = arg;
    struct ctx *c = bc->c;
    uint8_t key[PIECE_KEY_LEN];
    bool broken;

    piece_broken(c, v, n, &broken);
    if (!broken)
        return 0;
    if (!bc->have_last || memcmp(bc->last_file, file, STORE_ID_LEN) != 0) {
        memcpy(bc->last_file, file, STORE_ID_LEN);
        bc->have_last = true;
    }
    store__log(c->s, STORE_LOG_ERROR, "piece %" PRIu32 " of a file lost chunks", index);
    if (c->repair) {
        store__piece_key(key, file, index);
        rocksdb_writebatch_delete_cf(c->b, c->s->cf[CF_CHUNKS], (const char *)key, sizeof(key));
    }
    return 0;
}

/* Pass 3b: every complete file has all its pieces, each intact. */
static int pass_files(struct ctx *c, rocksdb_writebatch_t *meta)
{
    struct store *s = c->s;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[CF_FILES]);
    char *err = NULL, *v;
    size_t klen, vlen;
    int r = 0;

    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        const char *k = rocksdb_iter_key(it, &klen);
        struct store_file f;
        uint64_t n_pieces, i;
        bool ok = true;

        if (klen != STORE_ID_LEN || store__file_get(s, (const uint8_t *)k, &f) < 0 || !f.complete)
            continue;
        c->r.files_checked++;
        n_pieces = (f.size + PROTO_PIECE_LEN - 1) / PROTO_PIECE_LEN;
        for (i = 0; i < n_pieces && ok; i++) {
            uint8_t key[PIECE_KEY_LEN];
            store__piece_key(key, (const uint8_t *)k, (uint32_t)i);
            r = store__get(s, CF_CHUNKS, key, sizeof(key), &v, &vlen);
            if (r == -ENOENT) {
                ok = false;
                r = 0;
                break;
            }
            if (r < 0)
                break;
            bool broken;
            piece_broken(c, v, vlen, &broken);
            ok = !broken;
            rocksdb_free(v);
        }
        if (r < 0)
            break;
        if (!ok) {
            store__log(s, STORE_LOG_ERROR, "a complete file lost data; %s",
                       c->repair ? "it will be fetched again" : "run the check with repair");
            c->r.broken_files++;
            if (c->repair) {
                rocksdb_writebatch_delete_cf(meta, s->cf[CF_FILES], k, klen);
                rocksdb_writebatch_delete_cf(meta, s->cf[CF_MANIFESTS], k, klen);
            }
        }
    }
    if (r == 0) {
        rocksdb_iter_get_error(it, &err);
        r = store__err(s, err, "iterating files");
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return r;
}

static bool clean(const struct store_fsck *r)
{
    return !(r->missing_chunks || r->bad_chunks || r->bad_pieces || r->bad_refcounts ||
             r->orphan_chunks || r->broken_files || r->bad_totals);
}

/* One round: the passes, then (with repair) one batch of fixes. The totals computed
 * are those of the store as the round found it; a repair round is followed by
 * another, which finds the exact totals of the repaired store (and the counts that
 * dropping broken pieces changed). Called with s->mu held. */
static int check_round(struct store *s, bool repair, const struct pack_mark *since,
                       struct store_fsck *out)
{
    struct ctx c = {.s = s, .repair = repair, .since = since};
    struct broken_ctx bc = {.c = &c};
    rocksdb_writebatch_t *meta = rocksdb_writebatch_create();
    size_t i;
    int r;

    c.b = rocksdb_writebatch_create();
    c.buf = malloc(PROTO_CHUNK_MAX);
    r = c.buf ? uses_grow(&c.uses) : -ENOMEM;
    if (r == 0)
        r = store__piece_walk(s, NULL, true, pass_pieces, &c);
    if (r == 0)
        r = pass_index(&c);
    for (i = 0; r == 0 && i < c.uses.cap; i++) {
        if (c.uses.slot[i].state == 1)
            c.r.missing_chunks++;
    }
    if (r == 0)
        r = store__piece_walk(s, NULL, true, pass_broken, &bc);
    if (r == 0)
        r = pass_files(&c, meta);
    if (r == 0)
        r = pass_packs(&c);
    if (r == 0 && (s->st.chunks != c.chunks || s->st.physical_bytes != c.physical ||
                   s->st.logical_bytes != c.logical)) {
        store__log(s, STORE_LOG_ERROR, "stored totals differ from the records");
        c.r.bad_totals++;
    }
    if (r == 0 && repair && !clean(&c.r)) {
        /* Complete marks first; then the chunk records; then their pack space. */
        r = store__write(s, meta, true);
        if (r == 0) {
            s->st.chunks = c.chunks;
            s->st.physical_bytes = c.physical;
            s->st.logical_bytes = c.logical;
            store__stats_put(s, c.b);
            r = store__write(s, c.b, true);
        }
        if (r == 0) {
            store__punch(s, c.gone, c.n_gone);
            store__drop_packs(s, c.emptied, c.n_emptied);
        }
    }
    rocksdb_writebatch_destroy(c.b);
    rocksdb_writebatch_destroy(meta);
    free(c.uses.slot);
    free(c.gone);
    free(c.live);
    free(c.emptied);
    free(c.buf);
    if (r == 0)
        *out = c.r;
    return r;
}

int store_check(struct store *s, bool repair, struct store_fsck *out)
{
    struct store_fsck first, again;
    int r, round;

    /* Writers wait: counts must not move under the check. */
    pthread_mutex_lock(&s->mu);
    r = check_round(s, repair, NULL, &first);
    again = first;
    for (round = 0; r == 0 && repair && !clean(&again) && round < 3; round++)
        r = check_round(s, true, NULL, &again);
    pthread_mutex_unlock(&s->mu);
    if (r < 0)
        return r;
    *out = first;
    if (repair && !clean(&again)) {
        store__log(s, STORE_LOG_ERROR, "the store is still inconsistent after repair");
        return SHOAL_EHASH;
    }
    return repair || clean(&first) ? 0 : SHOAL_EHASH;
}

int store__recover(struct store *s, const struct pack_mark *since, struct store_fsck *out)
{
    struct store_fsck again;
    int r, round;

    /* Open has not returned yet: nothing else runs. A second round, over the same
     * chunks, settles the counts the first one's repair changed. */
    r = check_round(s, true, since, out);
    again = *out;
    for (round = 0; r == 0 && !clean(&again) && round < 3; round++)
        r = check_round(s, true, since, &again);
    return r;
}
