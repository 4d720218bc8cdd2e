/* meta.c - snapshots, refs, pins, holds, eviction and garbage collection.
 *
 * Snapshots, refs and pins are small records written through the WAL and synced.
 * Keys are "<repo>@<commit>" (snapshots, pins) and "<repo>@<rev>" (refs); '@' never
 * occurs in a valid repo id, so a key splits back unambiguously.
 */
#include "store.h"

#include "err.h"
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAME_KEY_MAX (SNAPSHOT_REPO_MAX + 1 + SNAPSHOT_REV_MAX + 1)

static int name_key(char *key, const char *repo, const char *rev)
{
    if (!snapshot_repo_ok(repo) || !snapshot_rev_ok(rev))
        return -EINVAL;
    return snprintf(key, NAME_KEY_MAX, "%s@%s", repo, rev);
}

static int put_or_delete(struct store *s, int cf, const char *key, size_t klen, const void *val,
                         size_t vlen, bool del)
{
    char *err = NULL;

    if (del)
        rocksdb_delete_cf(s->db, s->wo_sync, s->cf[cf], key, klen, &err);
    else
        rocksdb_put_cf(s->db, s->wo_sync, s->cf[cf], key, klen, val, vlen, &err);
    return store__err(s, err, "metadata write");
}

/* --- snapshots ------------------------------------------------------------- */

/* The key of repo@commit: -EINVAL unless both are valid names. */
static int snap_name_key(char key[NAME_KEY_MAX], const char *repo, const char *commit)
{
    if (!snapshot_commit_ok(commit))
        return -EINVAL;
    return name_key(key, repo, commit);
}

int store_put_snapshot(struct store *s, const struct snapshot *snap)
{
    char key[NAME_KEY_MAX];
    uint8_t *enc;
    size_t len;
    int k, r;

    k = snap_name_key(key, snap->repo, snap->commit);
    if (k < 0)
        return k;
    r = snapshot_encode(snap, &enc, &len);
    if (r < 0)
        return r;
    r = put_or_delete(s, CF_SNAPSHOTS, key, (size_t)k, enc, len, false);
    free(enc);
    return r;
}

int store_get_snapshot(struct store *s, const char *repo, const char *commit,
                       struct snapshot *out)
{
    char key[NAME_KEY_MAX], *val;
    size_t vlen;
    int k, r;

    k = snap_name_key(key, repo, commit);
    if (k < 0)
        return k;
    r = store__get(s, CF_SNAPSHOTS, key, (size_t)k, &val, &vlen);
    if (r < 0)
        return r;
    r = snapshot_decode(out, (const uint8_t *)val, vlen);
    rocksdb_free(val);
    if (r < 0)
        store__log(s, STORE_LOG_ERROR, "stored snapshot %s does not decode: %s", key,
                   shoal_strerror(r));
    return r;
}

static bool is_pinned(struct store *s, const char *key, size_t klen)
{
    char *val;
    size_t vlen;

    if (store__get(s, CF_PINS, key, klen, &val, &vlen) < 0)
        return false;
    rocksdb_free(val);
    return true;
}

struct snap_walk {
    struct store *s;
    store_snapshot_cb cb;
    void *arg;
};

static int on_snapshot(void *arg, const char *k, size_t klen, const char *v, size_t vlen)
{
    struct snap_walk *w = arg;
    struct snapshot snap;
    int r;

    r = snapshot_decode(&snap, (const uint8_t *)v, vlen);
    if (r < 0) {
        store__log(w->s, STORE_LOG_ERROR, "skipping a stored snapshot that does not decode");
        return 0;
    }
    r = w->cb(w->arg, &snap, is_pinned(w->s, k, klen));
    snapshot_release(&snap);
    return r;
}

int store_list_snapshots(struct store *s, store_snapshot_cb cb, void *arg)
{
    struct snap_walk w = {.s = s, .cb = cb, .arg = arg};

    return store__cf_walk(s, CF_SNAPSHOTS, on_snapshot, &w);
}

struct ref_drop {
    struct store *s;
    const char *repo, *commit;
    int err;
};

/* Refs of this repo that point at this commit go with its snapshot. */
static int on_ref_drop(void *arg, const char *k, size_t klen, const char *v, size_t vlen)
{
    struct ref_drop *d = arg;
    size_t rl = strlen(d->repo);

    if (klen > rl && memcmp(k, d->repo, rl) == 0 && k[rl] == '@' &&
        vlen == SNAPSHOT_COMMIT_LEN && memcmp(v, d->commit, vlen) == 0)
        return put_or_delete(d->s, CF_REFS, k, klen, NULL, 0, true);
    return 0;
}

/* The key of an existing snapshot: -EINVAL for bad names, -ENOENT if not stored. */
static int snapshot_key(struct store *s, const char *repo, const char *commit,
                        char key[NAME_KEY_MAX])
{
    char *val;
    size_t vlen;
    int k, r;

    k = snap_name_key(key, repo, commit);
    if (k < 0)
        return k;
    r = store__get(s, CF_SNAPSHOTS, key, (size_t)k, &val, &vlen);
    if (r < 0)
        return r;
    rocksdb_free(val);
    return k;
}

int store_remove_snapshot(struct store *s, const char *repo, const char *commit)
{
    struct ref_drop d = {.s = s, .repo = repo, .commit = commit};
    char key[NAME_KEY_MAX];
    int k, r;

    k = snapshot_key(s, repo, commit, key);
    if (k < 0)
        return k;
    r = put_or_delete(s, CF_PINS, key, (size_t)k, NULL, 0, true);
    if (r == 0)
        r = store__cf_walk(s, CF_REFS, on_ref_drop, &d);
    if (r == 0)
        r = put_or_delete(s, CF_SNAPSHOTS, key, (size_t)k, NULL, 0, true);
    return r;
}

/* --- refs and pins --------------------------------------------------------- */

int store_set_ref(struct store *s, const char *repo, const char *rev, const char *commit)
{
    char key[NAME_KEY_MAX];
    int k;

    if (!snapshot_commit_ok(commit))
        return -EINVAL;
    k = name_key(key, repo, rev);
    if (k < 0)
        return k;
    return put_or_delete(s, CF_REFS, key, (size_t)k, commit, SNAPSHOT_COMMIT_LEN, false);
}

int store_get_ref(struct store *s, const char *repo, const char *rev,
                  char commit[static SNAPSHOT_COMMIT_LEN + 1])
{
    char key[NAME_KEY_MAX], *val, tmp[SNAPSHOT_COMMIT_LEN + 1];
    size_t vlen;
    int k, r;

    k = name_key(key, repo, rev);
    if (k < 0)
        return k;
    r = store__get(s, CF_REFS, key, (size_t)k, &val, &vlen);
    if (r < 0)
        return r;
    if (vlen == SNAPSHOT_COMMIT_LEN) {
        memcpy(tmp, val, vlen);
        tmp[vlen] = '\0';
    }
    rocksdb_free(val);
    if (vlen != SNAPSHOT_COMMIT_LEN || !snapshot_commit_ok(tmp)) {
        store__log(s, STORE_LOG_ERROR, "ref %s holds no commit id", key);
        return SHOAL_EFORMAT;
    }
    memcpy(commit, tmp, sizeof(tmp));
    return 0;
}

int store_pin(struct store *s, const char *repo, const char *commit, bool pinned)
{
    char key[NAME_KEY_MAX];
    int k;

    k = snapshot_key(s, repo, commit, key);
    if (k < 0)
        return k;
    return put_or_delete(s, CF_PINS, key, (size_t)k, "", 0, !pinned);
}

/* --- holds and access times ------------------------------------------------ */

static struct store_holdrec *hold_find(struct store *s, const uint8_t *file)
{
    size_t i;

    for (i = 0; i < s->n_holds; i++) {
        if (memcmp(s->holds[i].id, file, STORE_ID_LEN) == 0)
            return &s->holds[i];
    }
    return NULL;
}

int store_hold(struct store *s, const uint8_t file[static STORE_ID_LEN])
{
    struct store_holdrec *h;
    int r = 0;

    pthread_mutex_lock(&s->hold_mu);
    h = hold_find(s, file);
    if (!h && s->n_holds == s->cap_holds) {
        size_t cap = s->cap_holds ? 2 * s->cap_holds : 16;
        struct store_holdrec *m = realloc(s->holds, cap * sizeof(*m));
        if (!m) {
            r = -ENOMEM;
            goto out;
        }
        s->holds = m;
        s->cap_holds = cap;
    }
    if (!h) {
        h = &s->holds[s->n_holds++];
        memcpy(h->id, file, STORE_ID_LEN);
        h->count = 0;
    }
    h->count++;
out:
    pthread_mutex_unlock(&s->hold_mu);
    return r;
}

void store_release(struct store *s, const uint8_t file[static STORE_ID_LEN])
{
    struct store_holdrec *h;

    pthread_mutex_lock(&s->hold_mu);
    h = hold_find(s, file);
    if (h && --h->count == 0)
        *h = s->holds[--s->n_holds];
    pthread_mutex_unlock(&s->hold_mu);
}

bool store__held(struct store *s, const uint8_t file[STORE_ID_LEN])
{
    bool held;

    pthread_mutex_lock(&s->hold_mu);
    held = hold_find(s, file) != NULL;
    pthread_mutex_unlock(&s->hold_mu);
    return held;
}

int store_touch(struct store *s, const uint8_t file[static STORE_ID_LEN])
{
    rocksdb_writebatch_t *b;
    struct store_file f;
    char *err = NULL;
    int r;

    r = store__file_get(s, file, &f);
    if (r < 0)
        return r;
    memcpy(f.id, file, STORE_ID_LEN);
    f.atime = store__now_ns();
    b = rocksdb_writebatch_create();
    store__file_put(s, b, &f);
    /* An access time lost in a crash only makes eviction a little less exact. */
    rocksdb_write(s->db, s->wo_wal, b, &err);
    rocksdb_writebatch_destroy(b);
    return store__err(s, err, "touch");
}

/* --- eviction and gc ------------------------------------------------------- */

/* A sorted set of file ids. */
struct idset {
    uint8_t (*id)[STORE_ID_LEN];
    size_t n, cap;
};

static int idset_add(struct idset *set, const uint8_t *id)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 256;
        uint8_t (*m)[STORE_ID_LEN] = realloc(set->id, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        set->id = m;
        set->cap = cap;
    }
    memcpy(set->id[set->n++], id, STORE_ID_LEN);
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return memcmp(a, b, STORE_ID_LEN);
}

static void idset_sort(struct idset *set)
{
    if (set->n)
        qsort(set->id, set->n, sizeof(set->id[0]), by_id);
}

static bool idset_has(const struct idset *set, const uint8_t *id)
{
    return set->n && bsearch(id, set->id, set->n, sizeof(set->id[0]), by_id) != NULL;
}

struct keep_ctx {
    struct idset keep;
    bool pinned_only;
};

static int on_keep(void *arg, const struct snapshot *snap, bool pinned)
{
    struct keep_ctx *k = arg;
    uint32_t i;
    int r;

    if (k->pinned_only && !pinned)
        return 0;
    for (i = 0; i < snap->n_files; i++) {
        r = idset_add(&k->keep, snap->files[i].sha256);
        if (r < 0)
            return r;
    }
    return 0;
}

struct victim {
    uint8_t id[STORE_ID_LEN];
    uint64_t atime;
};

struct victims {
    struct store *s;
    const struct idset *keep;
    struct victim *v;
    size_t n, cap;
    bool complete_only;
};

static int on_candidate(void *arg, const struct store_file *f)
{
    struct victims *vs = arg;

    if ((vs->complete_only && !f->complete) || idset_has(vs->keep, f->id) ||
        store__held(vs->s, f->id))
        return 0;
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? 2 * vs->cap : 64;
        struct victim *m = realloc(vs->v, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        vs->v = m;
        vs->cap = cap;
    }
    memcpy(vs->v[vs->n].id, f->id, STORE_ID_LEN);
    vs->v[vs->n].atime = f->atime;
    vs->n++;
    return 0;
}

static int by_atime(const void *a, const void *b)
{
    const struct victim *x = a, *y = b;

    return x->atime < y->atime ? -1 : x->atime > y->atime;
}

/* Files that may go: not kept (pinned, or listed by any snapshot for gc), not held. */
static int victims_find(struct store *s, bool pinned_only, bool complete_only,
                        struct keep_ctx *k, struct victims *vs)
{
    int r;

    k->pinned_only = pinned_only;
    r = store_list_snapshots(s, on_keep, k);
    if (r < 0)
        return r;
    idset_sort(&k->keep);
    vs->s = s;
    vs->keep = &k->keep;
    vs->complete_only = complete_only;
    return store_list_files(s, on_candidate, vs);
}

int store_evict(struct store *s, uint64_t need, uint64_t *freed)
{
    struct keep_ctx k = {0};
    struct victims vs = {0};
    struct store_stats before, after;
    uint64_t short_by, freed_est = 0;
    size_t i;
    int r;

    r = store_stats(s, &before);
    if (r == 0)
        r = victims_find(s, true, true, &k, &vs);
    if (r < 0)
        goto out;
    if (vs.n)
        qsort(vs.v, vs.n, sizeof(vs.v[0]), by_atime);
    /* Remove until the quota is met and the chunks removed would cover what the disk
     * lacks (removal frees their pack space at once), and go on one file at a time
     * while the disk still falls short (chunks shared with kept files free nothing). */
    short_by = store__disk_short(s, need);
    r = store__space_ok(s, need);
    for (i = 0; i < vs.n && r < 0; i++) {
        struct store_stats now;
        int e = store_remove_file(s, vs.v[i].id);
        if (e < 0 && e != -ENOENT) {
            r = e;
            break;
        }
        store__log(s, STORE_LOG_INFO, "evicted a file to make room");
        e = store_stats(s, &now);
        if (e < 0) {
            r = e;
            break;
        }
        freed_est = before.physical_bytes - now.physical_bytes;
        if (s->quota && now.physical_bytes + need > s->quota)
            continue;
        if (short_by && freed_est < short_by)
            continue;
        r = store__space_ok(s, need);
    }
    if (store_stats(s, &after) == 0 && before.physical_bytes >= after.physical_bytes)
        *freed = before.physical_bytes - after.physical_bytes;
out:
    free(k.keep.id);
    free(vs.v);
    return r;
}

int store_gc(struct store *s, uint64_t *removed)
{
    struct keep_ctx k = {0};
    struct victims vs = {0};
    uint64_t n = 0;
    size_t i;
    int r;

    r = victims_find(s, false, false, &k, &vs);
    for (i = 0; r == 0 && i < vs.n; i++) {
        r = store_remove_file(s, vs.v[i].id);
        if (r == -ENOENT)
            r = 0;
        else if (r == 0)
            n++;
    }
    if (r == 0)
        *removed = n;
    free(k.keep.id);
    free(vs.v);
    return r;
}
