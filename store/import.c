/* import.c - a local directory into the store as a snapshot. */
#include "import.h"

#include "chash.h"
#include "err.h"
#include "hasher.h"
#include "proto_limits.h"
#include "sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMPORT_DEPTH_MAX 64

struct imp {
    struct store *s;
    struct snapshot snap;
    struct import_stats st;
    uint8_t *buf;                /* one piece */
    struct hasher_piece *piece;
    uint8_t (*held)[STORE_ID_LEN];
    size_t n_held, cap_held;
    char *why;
    size_t why_len;
};

static int fail(struct imp *im, int err, const char *path, const char *what)
{
    snprintf(im->why, im->why_len, "%s: %s", path, what ? what : shoal_strerror(err));
    return err;
}

static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    ssize_t r;

    while (got < len) {
        r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Pass 1: the file's sha256 and size. */
static int file_digest(struct imp *im, int fd, uint8_t sha[32], uint64_t *size)
{
    struct sha256 h;
    ssize_t n;
    int r;

    r = sha256_init(&h);
    if (r < 0)
        return r;
    *size = 0;
    while ((n = read_full(fd, im->buf, PROTO_PIECE_LEN)) > 0) {
        sha256_update(&h, im->buf, (size_t)n);
        *size += (uint64_t)n;
        if (*size > PROTO_FILE_MAX) {
            sha256_release(&h);
            return -EFBIG;
        }
    }
    if (n < 0) {
        sha256_release(&h);
        return (int)n;
    }
    sha256_final(&h, sha);
    return 0;
}

static int hold(struct imp *im, const uint8_t id[STORE_ID_LEN])
{
    int r;

    if (im->n_held == im->cap_held) {
        size_t cap = im->cap_held ? 2 * im->cap_held : 64;
        uint8_t (*m)[STORE_ID_LEN] = realloc(im->held, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        im->held = m;
        im->cap_held = cap;
    }
    r = store_hold(im->s, id);
    if (r == 0)
        memcpy(im->held[im->n_held++], id, STORE_ID_LEN);
    return r;
}

/* Pass 2: chunk and store each piece the store lacks, checking the sha256 again. */
static int file_store(struct imp *im, int fd, const uint8_t sha[32], uint64_t size)
{
    struct store_chunk *c = NULL;
    struct sha256 h;
    uint8_t again[32];
    uint64_t off = 0, index = 0;
    ssize_t n;
    uint32_t k;
    int r;

    r = sha256_init(&h);
    if (r < 0)
        return r;
    c = malloc(PROTO_CHUNKS_PER_PIECE * sizeof(*c));
    if (!c) {
        r = -ENOMEM;
        goto out;
    }
    while ((n = read_full(fd, im->buf, PROTO_PIECE_LEN)) > 0) {
        sha256_update(&h, im->buf, (size_t)n);
        if (off + (uint64_t)n > size) {
            r = SHOAL_EHASH;
            goto out;
        }
        r = store_has_piece(im->s, sha, (uint32_t)index);
        if (r < 0)
            goto out;
        if (r == 0) {
            uint64_t at = 0;
            hasher_piece_compute(im->piece, im->buf, (uint32_t)n);
            for (k = 0; k < im->piece->n_chunks; k++) {
                memcpy(c[k].hash, im->piece->chunks[k].hash, CHASH_LEN);
                c[k].len = (uint32_t)im->piece->chunks[k].len;
                c[k].data = im->buf + at;
                at += c[k].len;
            }
            r = store_put_piece(im->s, sha, (uint32_t)index, im->piece->hash, c,
                                im->piece->n_chunks);
            if (r < 0)
                goto out;
        }
        off += (uint64_t)n;
        index++;
    }
    r = n < 0 ? (int)n : 0;
    if (r < 0)
        goto out;
    sha256_final(&h, again);
    if (off != size || memcmp(again, sha, 32) != 0)
        return SHOAL_EHASH;
    free(c);
    return 0;
out:
    sha256_release(&h);
    free(c);
    return r;
}

static int import_file(struct imp *im, int dirfd, const char *name, const char *path)
{
    uint8_t sha[32];
    char etag[65];
    uint64_t size;
    int fd, r;

    if (!snapshot_path_ok(path))
        return fail(im, -EINVAL, path, "not a path a snapshot can hold");
    fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fail(im, -errno, path, NULL);
    r = file_digest(im, fd, sha, &size);
    if (r == 0)
        r = hold(im, sha);
    if (r == 0 && lseek(fd, 0, SEEK_SET) < 0)
        r = -errno;
    if (r == 0)
        r = file_store(im, fd, sha, size);
    close(fd);
    if (r == SHOAL_EHASH) {
        /* The pieces stored may belong to no version of the file: drop them. */
        (void)store_remove_file(im->s, sha);
        return fail(im, r, path, "the file changed while it was imported");
    }
    if (r == 0)
        r = store_complete_file(im->s, sha, size);
    if (r < 0)
        return fail(im, r, path, NULL);
    chash_hex(sha, 32, etag);
    r = snapshot_add(&im->snap, path, size, sha, etag);
    if (r < 0)
        return fail(im, r, path, "cannot add it to the snapshot");
    im->st.files++;
    im->st.bytes += size;
    return 0;
}

static int walk(struct imp *im, int dirfd, const char *prefix, int depth)
{
    DIR *d;
    struct dirent *e;
    char path[SNAPSHOT_PATH_MAX + 2];
    int r = 0, fd;

    if (depth > IMPORT_DEPTH_MAX)
        return fail(im, -ELOOP, prefix, "directories nested too deep");
    fd = dup(dirfd);
    if (fd < 0)
        return fail(im, -errno, prefix[0] ? prefix : ".", NULL);
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return fail(im, -errno, prefix[0] ? prefix : ".", NULL);
    }
    while (r == 0 && (errno = 0, e = readdir(d)) != NULL) {
        struct stat st;
        int n;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (depth == 0 && (strcmp(e->d_name, ".git") == 0 || strcmp(e->d_name, ".cache") == 0))
            continue;
        n = snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "/" : "", e->d_name);
        if (n < 0 || (size_t)n > SNAPSHOT_PATH_MAX) {
            r = fail(im, -ENAMETOOLONG, e->d_name, "path too long");
            break;
        }
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = fail(im, -errno, path, NULL);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                r = fail(im, -errno, path, NULL);
                break;
            }
            r = walk(im, sub, path, depth + 1);
            close(sub);
        } else if (S_ISREG(st.st_mode)) {
            r = import_file(im, dirfd, e->d_name, path);
        } else {
            im->st.skipped++;
        }
    }
    if (r == 0 && errno != 0)
        r = fail(im, -errno, prefix[0] ? prefix : ".", NULL);
    closedir(d);
    return r;
}

/* The content-derived commit: hex of the first 20 bytes of sha256(encoding with an
 * all-zero commit). */
static int derive_commit(struct snapshot *snap)
{
    uint8_t *enc, digest[32];
    size_t len;
    int r;

    memset(snap->commit, '0', SNAPSHOT_COMMIT_LEN);
    snap->commit[SNAPSHOT_COMMIT_LEN] = '\0';
    r = snapshot_encode(snap, &enc, &len);
    if (r < 0)
        return r;
    r = sha256_digest(enc, len, digest);
    free(enc);
    if (r == 0)
        chash_hex(digest, SNAPSHOT_COMMIT_LEN / 2, snap->commit);
    return r;
}

int import_dir(struct store *s, const char *dir, const char *repo, struct snapshot *out,
               struct import_stats *stats, char *why, size_t why_len)
{
    struct imp im = {.s = s, .why = why, .why_len = why_len};
    int fd, r;
    size_t i;

    if (why_len)
        why[0] = '\0';
    if (!snapshot_repo_ok(repo)) {
        snprintf(why, why_len, "'%s' is not a repo name like model/org/name", repo);
        return -EINVAL;
    }
    /* A placeholder commit: the real one is derived once the files are known. */
    r = snapshot_init(&im.snap, repo, "0000000000000000000000000000000000000000");
    if (r < 0)
        return r;
    im.buf = aligned_alloc(4096, PROTO_PIECE_LEN);
    im.piece = malloc(sizeof(*im.piece));
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!im.buf || !im.piece)
        r = -ENOMEM;
    else if (fd < 0)
        r = fail(&im, -errno, dir, NULL);
    else
        r = walk(&im, fd, "", 0);
    if (fd >= 0)
        close(fd);
    if (r == 0 && im.st.files == 0)
        r = fail(&im, -ENOENT, dir, "no regular files to import");
    if (r == 0)
        r = snapshot_finish(&im.snap);
    if (r == 0)
        r = derive_commit(&im.snap);
    if (r == 0)
        r = store_put_snapshot(s, &im.snap);
    for (i = 0; i < im.n_held; i++)
        store_release(s, im.held[i]);
    free(im.held);
    free(im.buf);
    free(im.piece);
    if (r < 0) {
        if (why_len && !why[0])
            snprintf(why, why_len, "%s: %s", dir, shoal_strerror(r));
        snapshot_release(&im.snap);
        return r;
    }
    *out = im.snap;
    if (stats)
        *stats = im.st;
    return 0;
}
