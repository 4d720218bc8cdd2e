/* snapshot.c - a repo's files at one commit, the names in it, and its msgpack encoding,
 * version 1. */
#include "snapshot.h"

#include "err.h"
#include "mpcheck.h"
#include "mpdec.h"
#include "proto_limits.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#define SNAPSHOT_FIELDS 4 /* version, repo, commit, files */
#define FILE_FIELDS     4 /* path, size, sha256, etag */
#define SHA256_LEN      32
#define REPO_PART_MAX   96 /* the Hub's limit on an org or repo name */
#define REPO_PARTS_MAX  3  /* type, org, name */
#define ETAG_GIT_LEN    40 /* a git blob sha1; LFS files carry a sha256 (SNAPSHOT_ETAG_MAX) */

/* The validators work on explicit lengths: decoded msgpack strings are not
 * NUL-terminated, and a NUL inside one must fail a check rather than cut it short.
 * Every rule below rejects a NUL byte. */

static bool hex_lower(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    }
    return true;
}

static bool commit_ok_n(const char *p, size_t n)
{
    return n == SNAPSHOT_COMMIT_LEN && hex_lower(p, n);
}

static bool etag_ok_n(const char *p, size_t n)
{
    return (n == ETAG_GIT_LEN || n == SNAPSHOT_ETAG_MAX) && hex_lower(p, n);
}

static bool repo_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* An org or repo name. Not starting with '.' also rules out "." and "..". */
static bool repo_part_ok(const char *p, size_t n)
{
    size_t i;

    if (n == 0 || n > REPO_PART_MAX)
        return false;
    if (p[0] == '.' || p[0] == '-' || p[n - 1] == '.' || p[n - 1] == '-')
        return false;
    for (i = 0; i < n; i++) {
        if (!repo_char(p[i]))
            return false;
        if (p[i] == '.' && i + 1 < n && p[i + 1] == '.')
            return false;
    }
    return true;
}

struct repo_parts {
    const char *part[REPO_PARTS_MAX];
    size_t len[REPO_PARTS_MAX];
    unsigned n;
};

static const char *const repo_types[] = {"model", "dataset", "space"};

/* Splits and checks "type/name" or "type/org/name"; rp is scratch on failure. The
 * folder name is built from the same split, so it never sees an unchecked repo. */
static bool repo_split(const char *p, size_t n, struct repo_parts *rp)
{
    size_t start = 0, i, t;
    unsigned k;

    if (n == 0 || n > SNAPSHOT_REPO_MAX)
        return false;
    rp->n = 0;
    for (i = 0; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        if (rp->n == REPO_PARTS_MAX)
            return false;
        rp->part[rp->n] = p + start;
        rp->len[rp->n] = i - start;
        rp->n++;
        start = i + 1;
    }
    if (rp->n < 2)
        return false;
    for (t = 0; t < sizeof(repo_types) / sizeof(repo_types[0]); t++) {
        if (rp->len[0] == strlen(repo_types[t]) && memcmp(p, repo_types[t], rp->len[0]) == 0)
            break;
    }
    if (t == sizeof(repo_types) / sizeof(repo_types[0]))
        return false;
    for (k = 1; k < rp->n; k++) {
        if (!repo_part_ok(rp->part[k], rp->len[k]))
            return false;
    }
    return true;
}

static bool repo_ok_n(const char *p, size_t n)
{
    struct repo_parts rp;

    return repo_split(p, n, &rp);
}

/* Length of the UTF-8 sequence that starts p[0..left), or 0 when it is not the shortest
 * encoding of a scalar value: the lead byte fixes the length and the range of the
 * second byte, which is what excludes overlong forms (C0, C1, E0 80-9F, F0 80-8F),
 * surrogates (ED A0-BF) and code points above U+10FFFF (F4 90-BF, F5-FF). */
static size_t utf8_len(const unsigned char *p, size_t left)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n, i;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        if (p[0] == 0xe0)
            lo = 0xa0;
        if (p[0] == 0xed)
            hi = 0x9f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        if (p[0] == 0xf0)
            lo = 0x90;
        if (p[0] == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n > left || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    }
    return n;
}

/* A path component: these are the names that would climb out of the snapshot folder or
 * reach into a git directory when the path is joined to it. */
static bool component_ok(const unsigned char *p, size_t n, bool first)
{
    if (n == 0)
        return false;
    if (p[0] == '.' && (n == 1 || (n == 2 && p[1] == '.')))
        return false;
    return !(first && n == 4 && memcmp(p, ".git", 4) == 0);
}

static bool path_ok_n(const char *path, size_t n)
{
    const unsigned char *p = (const unsigned char *)path;
    size_t i = 0, start = 0, step;

    if (n == 0 || n > SNAPSHOT_PATH_MAX)
        return false;
    while (i <= n) {
        if (i == n || p[i] == '/') {
            if (!component_ok(p + start, i - start, start == 0))
                return false;
            i++;
            start = i;
            continue;
        }
        if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
            return false;
        step = utf8_len(p + i, n - i);
        if (step == 0)
            return false;
        i += step;
    }
    return true;
}

static bool rev_ok_n(const char *rev, size_t n)
{
    const unsigned char *p = (const unsigned char *)rev;
    size_t i;

    if (n == 0 || n > SNAPSHOT_REV_MAX)
        return false;
    if (p[0] == '/' || p[0] == '-' || p[n - 1] == '/')
        return false;
    for (i = 0; i < n; i++) {
        /* Printable ASCII without the space. */
        if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '\\')
            return false;
        if (i + 1 < n && p[i + 1] == p[i] && (p[i] == '.' || p[i] == '/'))
            return false;
    }
    return true;
}

/* The public validators bound their scan: a name longer than its limit fails without
 * reading further. */

bool snapshot_repo_ok(const char *repo)
{
    return repo && repo_ok_n(repo, strnlen(repo, SNAPSHOT_REPO_MAX + 1));
}

bool snapshot_path_ok(const char *path)
{
    return path && path_ok_n(path, strnlen(path, SNAPSHOT_PATH_MAX + 1));
}

bool snapshot_rev_ok(const char *rev)
{
    return rev && rev_ok_n(rev, strnlen(rev, SNAPSHOT_REV_MAX + 1));
}

bool snapshot_commit_ok(const char *commit)
{
    return commit && commit_ok_n(commit, strnlen(commit, SNAPSHOT_COMMIT_LEN + 1));
}

bool snapshot_etag_ok(const char *etag)
{
    return etag && etag_ok_n(etag, strnlen(etag, SNAPSHOT_ETAG_MAX + 1));
}

int snapshot_repo_folder(const char *repo, char *out, size_t cap)
{
    struct repo_parts rp;
    size_t need, off;
    unsigned k;

    if (!repo || !repo_split(repo, strnlen(repo, SNAPSHOT_REPO_MAX + 1), &rp))
        return -EINVAL;
    /* type + 's', then "--" before each further part, then the NUL. */
    need = rp.len[0] + 2;
    for (k = 1; k < rp.n; k++)
        need += 2 + rp.len[k];
    if (need > cap)
        return -EINVAL;
    memcpy(out, rp.part[0], rp.len[0]);
    off = rp.len[0];
    out[off++] = 's';
    for (k = 1; k < rp.n; k++) {
        memcpy(out + off, "--", 2);
        off += 2;
        memcpy(out + off, rp.part[k], rp.len[k]);
        off += rp.len[k];
    }
    out[off] = '\0';
    return 0;
}

/* struct snapshot has no capacity field, so the capacity of its files array is a
 * function of how many it holds; every path that allocates the array (add, decode)
 * uses it, and doubling keeps a long run of snapshot_add calls linear. */
static size_t file_cap(size_t n)
{
    size_t cap = 16;

    if (n == 0)
        return 0;
    while (cap < n)
        cap *= 2;
    return cap;
}

int snapshot_init(struct snapshot *s, const char *repo, const char *commit)
{
    if (!snapshot_repo_ok(repo) || !snapshot_commit_ok(commit))
        return -EINVAL;
    memset(s, 0, sizeof(*s));
    /* Both were just measured against their buffers. */
    memcpy(s->repo, repo, strlen(repo) + 1);
    memcpy(s->commit, commit, SNAPSHOT_COMMIT_LEN + 1);
    return 0;
}

int snapshot_add(struct snapshot *s, const char *path, uint64_t size,
                 const uint8_t sha256[static 32], const char *etag)
{
    struct snapshot_file *f, *grown;
    char *copy = NULL;
    size_t n;
    int err;

    if (!snapshot_path_ok(path) || !snapshot_etag_ok(etag))
        return -EINVAL;
    if (s->n_files >= SNAPSHOT_FILES_MAX || size > PROTO_FILE_MAX)
        return SHOAL_ELIMIT;
    n = strlen(path);
    copy = malloc(n + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, path, n + 1);
    if ((size_t)s->n_files + 1 > file_cap(s->n_files)) {
        grown = realloc(s->files, file_cap((size_t)s->n_files + 1) * sizeof(*s->files));
        if (!grown) {
            err = -ENOMEM;
            goto out;
        }
        s->files = grown;
    }
    f = &s->files[s->n_files];
    memset(f, 0, sizeof(*f));
    f->path = copy;
    f->size = size;
    memcpy(f->sha256, sha256, SHA256_LEN);
    memcpy(f->etag, etag, strlen(etag) + 1);
    s->n_files++;
    copy = NULL;
    err = 0;
out:
    free(copy);
    return err;
}

static int by_path(const void *a, const void *b)
{
    const struct snapshot_file *x = a, *y = b;

    return strcmp(x->path, y->path);
}

static bool sorted_strictly(const struct snapshot_file *f, uint32_t n)
{
    uint32_t i;

    for (i = 1; i < n; i++) {
        if (strcmp(f[i - 1].path, f[i].path) >= 0)
            return false;
    }
    return true;
}

int snapshot_finish(struct snapshot *s)
{
    struct snapshot_file *tmp = NULL;
    size_t bytes = (size_t)s->n_files * sizeof(*s->files);
    uint32_t i;
    int err;

    if (sorted_strictly(s->files, s->n_files))
        return 0;
    /* Sorted in a copy so that a snapshot with a duplicate stays as the caller left it. */
    tmp = malloc(bytes);
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, s->files, bytes);
    qsort(tmp, s->n_files, sizeof(*tmp), by_path);
    for (i = 1; i < s->n_files; i++) {
        if (strcmp(tmp[i - 1].path, tmp[i].path) == 0) {
            err = -EINVAL;
            goto out;
        }
    }
    memcpy(s->files, tmp, bytes);
    err = 0;
out:
    free(tmp);
    return err;
}

void snapshot_release(struct snapshot *s)
{
    uint32_t i;

    for (i = 0; i < s->n_files; i++)
        free(s->files[i].path);
    free(s->files);
    memset(s, 0, sizeof(*s));
}

const struct snapshot_file *snapshot_find(const struct snapshot *s, const char *path)
{
    uint32_t lo = 0, hi = s->n_files, mid;
    int c;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = strcmp(path, s->files[mid].path);
        if (c == 0)
            return &s->files[mid];
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

/* A NUL-terminated string inside a fixed array, with its length. */
static bool fixed_str(const char *p, size_t cap, size_t *n)
{
    *n = strnlen(p, cap);
    return *n < cap;
}

/* Everything the decoder checks, on a built or decoded snapshot. */
static bool snapshot_valid(const struct snapshot *s)
{
    const struct snapshot_file *f;
    size_t n;
    uint32_t i;

    if (!fixed_str(s->repo, sizeof(s->repo), &n) || !repo_ok_n(s->repo, n))
        return false;
    if (!fixed_str(s->commit, sizeof(s->commit), &n) || !commit_ok_n(s->commit, n))
        return false;
    if (s->n_files > SNAPSHOT_FILES_MAX || (s->n_files > 0 && !s->files))
        return false;
    for (i = 0; i < s->n_files; i++) {
        f = &s->files[i];
        if (!snapshot_path_ok(f->path) || f->size > PROTO_FILE_MAX)
            return false;
        if (!fixed_str(f->etag, sizeof(f->etag), &n) || !etag_ok_n(f->etag, n))
            return false;
    }
    return sorted_strictly(s->files, s->n_files);
}

/* Header, then body: two statements, as the operands of | have no order. */
static int pack_str(msgpack_packer *pk, const char *p)
{
    size_t n = strlen(p);
    int r;

    r = msgpack_pack_str(pk, n);
    r |= msgpack_pack_str_body(pk, p, n);
    return r;
}

int snapshot_encode(const struct snapshot *s, uint8_t **out, size_t *out_len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const struct snapshot_file *f;
    uint32_t i;
    int r = 0, err;

    /* Only what a decoder would accept leaves this node; an unfinished snapshot fails
     * here by its order. */
    if (!snapshot_valid(s))
        return -EINVAL;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    r |= msgpack_pack_array(&pk, SNAPSHOT_FIELDS);
    r |= msgpack_pack_uint32(&pk, SNAPSHOT_VERSION);
    r |= pack_str(&pk, s->repo);
    r |= pack_str(&pk, s->commit);
    r |= msgpack_pack_array(&pk, s->n_files);
    for (i = 0; i < s->n_files; i++) {
        f = &s->files[i];
        r |= msgpack_pack_array(&pk, FILE_FIELDS);
        r |= pack_str(&pk, f->path);
        r |= msgpack_pack_uint64(&pk, f->size);
        r |= msgpack_pack_bin(&pk, SHA256_LEN);
        r |= msgpack_pack_bin_body(&pk, f->sha256, SHA256_LEN);
        r |= pack_str(&pk, f->etag);
    }
    if (r != 0) {
        err = -ENOMEM;
        goto out;
    }
    *out_len = sb.size;
    *out = (uint8_t *)msgpack_sbuffer_release(&sb);
    err = 0;
out:
    msgpack_sbuffer_destroy(&sb);
    return err;
}

/* A msgpack str that the validator ok accepts (bin is not a string here). */
static int get_name(const msgpack_object *o, bool (*ok)(const char *, size_t), const char **p,
                    size_t *n)
{
    if (o->type != MSGPACK_OBJECT_STR || !ok(o->via.str.ptr, o->via.str.size))
        return SHOAL_EFORMAT;
    *p = o->via.str.ptr;
    *n = o->via.str.size;
    return 0;
}

/* Byte order, a prefix first: what strcmp gives once the strings are copied out. */
static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);

    if (c != 0)
        return c;
    return (an > bn) - (an < bn);
}

/* One file entry, and its order after prev (NULL for the first; prev already passed). */
static int check_file(const msgpack_object *o, const msgpack_object *prev)
{
    const msgpack_object *f;
    const char *p;
    size_t n;
    int err;

    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != FILE_FIELDS)
        return SHOAL_EFORMAT;
    f = o->via.array.ptr;
    err = get_name(&f[0], path_ok_n, &p, &n);
    if (err < 0)
        return err;
    if (f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return SHOAL_EFORMAT;
    if (f[1].via.u64 > PROTO_FILE_MAX)
        return SHOAL_ELIMIT;
    if (f[2].type != MSGPACK_OBJECT_BIN || f[2].via.bin.size != SHA256_LEN)
        return SHOAL_EFORMAT;
    err = get_name(&f[3], etag_ok_n, &p, &n);
    if (err < 0)
        return err;
    if (prev) {
        p = f[0].via.str.ptr;
        n = f[0].via.str.size;
        f = prev->via.array.ptr;
        if (bytes_cmp(f[0].via.str.ptr, f[0].via.str.size, p, n) >= 0)
            return SHOAL_EFORMAT;
    }
    return 0;
}

/* Copies an entry that check_file accepted. */
static int fill_file(const msgpack_object *o, struct snapshot_file *out)
{
    const msgpack_object *f = o->via.array.ptr;
    size_t n = f[0].via.str.size;

    out->path = malloc(n + 1);
    if (!out->path)
        return -ENOMEM;
    memcpy(out->path, f[0].via.str.ptr, n);
    out->path[n] = '\0';
    out->size = f[1].via.u64;
    memcpy(out->sha256, f[2].via.bin.ptr, SHA256_LEN);
    memcpy(out->etag, f[3].via.str.ptr, f[3].via.str.size);
    out->etag[f[3].via.str.size] = '\0';
    return 0;
}

int snapshot_decode(struct snapshot *s, const uint8_t *buf, size_t len)
{
    msgpack_unpacked up;
    struct snapshot tmp;
    const msgpack_object *f, *list, *items;
    const char *p;
    size_t n;
    uint32_t i, count;
    int err;

    memset(&tmp, 0, sizeof(tmp));
    msgpack_unpacked_init(&up);
    err = mpdec_unpack(&up, buf, len);
    if (err < 0)
        goto out;
    err = mpdec_open(&up.data, SNAPSHOT_VERSION, SNAPSHOT_FIELDS, &f);
    if (err < 0)
        goto out;
    err = get_name(&f[1], repo_ok_n, &p, &n);
    if (err < 0)
        goto out;
    memcpy(tmp.repo, p, n);
    err = get_name(&f[2], commit_ok_n, &p, &n);
    if (err < 0)
        goto out;
    memcpy(tmp.commit, p, n);
    list = &f[3];
    if (list->type != MSGPACK_OBJECT_ARRAY) {
        err = SHOAL_EFORMAT;
        goto out;
    }
    if (list->via.array.size > SNAPSHOT_FILES_MAX) {
        err = SHOAL_ELIMIT;
        goto out;
    }
    count = list->via.array.size;
    items = list->via.array.ptr;
    /* Every entry is checked before anything is allocated for it, so the allocations
     * below are bounded by entries that exist, complete, in the input. */
    for (i = 0; i < count; i++) {
        err = check_file(&items[i], i > 0 ? &items[i - 1] : NULL);
        if (err < 0)
            goto out;
    }
    if (count > 0) {
        tmp.files = calloc(file_cap(count), sizeof(*tmp.files));
        if (!tmp.files) {
            err = -ENOMEM;
            goto out;
        }
    }
    for (i = 0; i < count; i++) {
        err = fill_file(&items[i], &tmp.files[i]);
        if (err < 0)
            goto out;
        tmp.n_files = i + 1;
    }
    *s = tmp;
    memset(&tmp, 0, sizeof(tmp));
    err = 0;
out:
    snapshot_release(&tmp);
    msgpack_unpacked_destroy(&up);
    return err;
}
