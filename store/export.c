/* export.c - complete snapshots from the store into the Hugging Face cache layout, or
 * into a plain directory (export.h).
 *
 * DESIGN. The target root (the cache or the directory the caller names) is trusted and
 * opened normally. Below it, nothing is resolved by path: every directory is walked one
 * component at a time with mkdirat() + openat(O_DIRECTORY | O_NOFOLLOW) relative to
 * the fd of its parent, and every file is created, renamed or linked with the *at()
 * calls relative to its directory's fd. A symlink planted anywhere below the root is
 * therefore refused, never followed, and a name from a snapshot cannot leave the root
 * even if it slipped past validation (components "", "." and ".." are refused again by
 * the walk).
 *
 * Each file is written to a unique temporary name next to its final name, hashed and
 * counted while being written, fsynced, and renamed only if size and sha256 match:
 * a final name only ever holds complete, verified bytes. The store does not re-hash
 * chunks when reading (store.h), so this check is what catches a damaged store.
 */
#include "export.h"

#include "err.h"
#include "proto_limits.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP_SUFFIX_LEN 20           /* ".<8 hex>.incomplete" */
#define READ_BUF_LEN   (256 * 1024) /* for hashing a local file already in place */
#define NAME_SHOWN_MAX 120          /* bytes of an invalid name quoted in `why` */

/* --- small helpers ---------------------------------------------------------- */

static void set_why(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;

    if (!why || why_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

/* A name that failed validation may hold anything (newlines, escapes): `why` must
 * stay one printable line, so only printable ASCII is copied. */
static const char *quote_name(const char *name, size_t max, char *buf, size_t cap)
{
    size_t i, n = 0;

    for (i = 0; i < max && name[i] && n + 4 < cap; i++) {
        unsigned char c = (unsigned char)name[i];
        buf[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (i < max && name[i]) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* `leaf` + ".<8 random hex>.incomplete". Random rather than pid-based so that two
 * exports into one cache (other processes, other hosts on a shared file system) never
 * write the same temporary file. A long leaf is cut so the name fits NAME_MAX. */
static int tmp_name(const char *leaf, char out[static NAME_MAX + 1])
{
    uint8_t rnd[4];
    size_t keep = strlen(leaf);
    ssize_t n = getrandom(rnd, sizeof(rnd), 0);

    if (n != (ssize_t)sizeof(rnd))
        return n < 0 ? -errno : -EIO;
    if (keep > NAME_MAX - TMP_SUFFIX_LEN)
        keep = NAME_MAX - TMP_SUFFIX_LEN;
    snprintf(out, NAME_MAX + 1, "%.*s.%02x%02x%02x%02x.incomplete", (int)keep, leaf, rnd[0], rnd[1],
             rnd[2], rnd[3]);
    return 0;
}

/* Creates a new temporary file (O_EXCL) for `leaf` in dirfd, retrying on the rare
 * name clash. Mode 0644 through open(): the kernel applies the umask, which gives
 * 0644 & ~umask without reading the process-wide umask (reading it means setting it,
 * a race with other threads). */
static int tmp_create(int dirfd, const char *leaf, char tmp[static NAME_MAX + 1], int *out)
{
    int fd = -1, r = 0, tries;

    for (tries = 0; tries < 4; tries++) {
        r = tmp_name(leaf, tmp);
        if (r < 0)
            return r;
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0) {
            *out = fd;
            return 0;
        }
        r = -errno;
        if (r != -EEXIST)
            break;
    }
    return r;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Length of the directory part of a path ("a/b/c" -> 3, "c" -> 0) and its leaf. */
static size_t split_path(const char *path, const char **leaf)
{
    const char *slash = strrchr(path, '/');

    *leaf = slash ? slash + 1 : path;
    return slash ? (size_t)(slash - path) : 0;
}

/* The last component, checked again before it names a file in a directory fd: the
 * walk below checks only the directory part. */
static bool leaf_ok(const char *leaf)
{
    size_t n = strlen(leaf);

    return n > 0 && n <= NAME_MAX && strcmp(leaf, ".") != 0 && strcmp(leaf, "..") != 0 &&
           !strchr(leaf, '/');
}

/* --- directories ------------------------------------------------------------ */

/* The trusted root: created with its parents if missing, and opened following
 * symlinks (a cache on another disk through a symlink is the user's choice). */
static int open_root(const char *path, int *out)
{
    char *copy = NULL;
    size_t i;
    int fd, r = 0;

    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        copy = strdup(path);
        if (!copy) {
            r = -ENOMEM;
            goto out;
        }
        for (i = 1; copy[i]; i++) {
            if (copy[i] != '/')
                continue;
            copy[i] = '\0';
            if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
                r = -errno;
                goto out;
            }
            copy[i] = '/';
        }
        if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
            r = -errno;
            goto out;
        }
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    *out = fd;
out:
    free(copy);
    return r;
}

/* Opens the directory rel[0..len) below dirfd, creating missing components (mode
 * 0755) when `create`; len 0 gives a new fd for dirfd itself. Each component is opened
 * with O_NOFOLLOW, so a symlink on the way fails the walk instead of leading out of
 * the tree: -EINVAL then (a path that would leave the target, export.h), -ENOTDIR
 * for a file in the way. `why` names `shown` and the failing component. */
static int open_dir_below(int dirfd, const char *rel, size_t len, bool create, int *out,
                          const char *shown, char *why, size_t why_len)
{
    char name[NAME_MAX + 1];
    struct stat st;
    size_t i = 0, n;
    int fd, next, r = 0;

    fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    while (i < len) {
        for (n = 0; i + n < len && rel[i + n] != '/';)
            n++;
        if (n == 0 || n > NAME_MAX || (n == 1 && rel[i] == '.') ||
            (n == 2 && rel[i] == '.' && rel[i + 1] == '.') || i + n + 1 == len) {
            r = -EINVAL;
            set_why(why, why_len, "%s: not a safe relative path", shown);
            goto out;
        }
        memcpy(name, rel + i, n);
        name[n] = '\0';
        if (create && mkdirat(fd, name, 0755) < 0 && errno != EEXIST) {
            r = -errno;
            set_why(why, why_len, "%s: cannot create directory %.*s: %s", shown, (int)(i + n), rel,
                    strerror(-r));
            goto out;
        }
        next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            r = -errno;
            if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
                r = -EINVAL;
                set_why(why, why_len,
                        "%s: %.*s is a symlink; refusing to follow it out of the target", shown,
                        (int)(i + n), rel);
            } else {
                set_why(why, why_len, "%s: cannot open directory %.*s: %s", shown, (int)(i + n),
                        rel, strerror(-r));
            }
            goto out;
        }
        close(fd);
        fd = next;
        i += n + 1;
    }
    *out = fd;
    fd = -1;
out:
    close_fd(&fd);
    return r;
}

/* --- validation ------------------------------------------------------------- */

static int cmp_etag(const void *a, const void *b)
{
    const struct snapshot_file *x = *(const struct snapshot_file *const *)a;
    const struct snapshot_file *y = *(const struct snapshot_file *const *)b;

    return strcmp(x->etag, y->etag);
}

/* Everything in the snapshot again: it may come from a peer or be built by hand, and
 * its names become file names here. Also checks what makes the blobs consistent: a
 * 64-digit etag is the LFS oid, i.e. the sha256 of the content, and two files with
 * one etag must have one content (a blob is shared by their symlinks). */
static int check_snapshot(const struct snapshot *snap, char *why, size_t why_len)
{
    const struct snapshot_file **byetag = NULL;
    char q[NAME_SHOWN_MAX + 8], hex[2 * SHA256_LEN + 1];
    uint32_t i;
    int r = -EINVAL;

    if (!snap) {
        set_why(why, why_len, "no snapshot");
        goto out;
    }
    if (!memchr(snap->repo, '\0', sizeof(snap->repo)) || !snapshot_repo_ok(snap->repo)) {
        set_why(why, why_len, "invalid repo name \"%s\"",
                quote_name(snap->repo, sizeof(snap->repo), q, sizeof(q)));
        goto out;
    }
    if (!memchr(snap->commit, '\0', sizeof(snap->commit)) || !snapshot_commit_ok(snap->commit)) {
        set_why(why, why_len, "%s: invalid commit \"%s\"", snap->repo,
                quote_name(snap->commit, sizeof(snap->commit), q, sizeof(q)));
        goto out;
    }
    if (snap->n_files > SNAPSHOT_FILES_MAX || (snap->n_files > 0 && !snap->files)) {
        set_why(why, why_len, "%s: invalid file list (%u files)", snap->repo,
                (unsigned)snap->n_files);
        goto out;
    }
    for (i = 0; i < snap->n_files; i++) {
        const struct snapshot_file *f = &snap->files[i];
        const char *leaf = NULL;
        if (f->path)
            split_path(f->path, &leaf);
        if (!f->path || !snapshot_path_ok(f->path) || !leaf_ok(leaf)) {
            set_why(why, why_len, "%s: file %u: unsafe path \"%s\"", snap->repo, (unsigned)i,
                    f->path ? quote_name(f->path, NAME_SHOWN_MAX, q, sizeof(q)) : "(null)");
            goto out;
        }
        if (!memchr(f->etag, '\0', sizeof(f->etag)) || !snapshot_etag_ok(f->etag)) {
            set_why(why, why_len, "%s: invalid etag \"%s\"", f->path,
                    quote_name(f->etag, sizeof(f->etag), q, sizeof(q)));
            goto out;
        }
        if (f->size > PROTO_FILE_MAX) {
            set_why(why, why_len, "%s: size %llu over the limit", f->path,
                    (unsigned long long)f->size);
            goto out;
        }
        to_hex(f->sha256, SHA256_LEN, hex);
        if (strlen(f->etag) == 2 * SHA256_LEN && strcmp(f->etag, hex) != 0) {
            set_why(why, why_len, "%s: etag %s is not the sha256 of the file (%s)", f->path,
                    f->etag, hex);
            goto out;
        }
    }
    if (snap->n_files > 1) {
        byetag = malloc(snap->n_files * sizeof(*byetag));
        if (!byetag) {
            r = -ENOMEM;
            set_why(why, why_len, "%s: out of memory", snap->repo);
            goto out;
        }
        for (i = 0; i < snap->n_files; i++)
            byetag[i] = &snap->files[i];
        qsort(byetag, snap->n_files, sizeof(*byetag), cmp_etag);
        for (i = 1; i < snap->n_files; i++) {
            const struct snapshot_file *a = byetag[i - 1], *b = byetag[i];
            if (strcmp(a->etag, b->etag) == 0 &&
                (a->size != b->size || memcmp(a->sha256, b->sha256, SHA256_LEN) != 0)) {
                set_why(why, why_len, "%s and %s: one etag %s for two different contents", a->path,
                        b->path, a->etag);
                goto out;
            }
        }
    }
    r = 0;
out:
    free(byetag);
    return r;
}

/* 0 if the store holds `f` complete with the snapshot's size, else the error. */
static int check_in_store(struct store *s, const struct snapshot_file *f, char *why, size_t why_len)
{
    struct store_file info;
    int r = store_file_info(s, f->sha256, &info);

    if (r == -ENOENT || (r == 0 && !info.complete)) {
        set_why(why, why_len, "%s: not complete in the store", f->path);
        return -ENOENT;
    }
    if (r < 0) {
        set_why(why, why_len, "%s: store: %s", f->path, shoal_strerror(r));
        return r;
    }
    if (info.size != f->size) {
        /* One sha256, two sizes: the snapshot or the store record is wrong. */
        set_why(why, why_len, "%s: the store has %llu bytes for its sha256, the snapshot says %llu",
                f->path, (unsigned long long)info.size, (unsigned long long)f->size);
        return SHOAL_EHASH;
    }
    return 0;
}

/* --- writing files ---------------------------------------------------------- */

struct writer {
    int fd;
    uint64_t size; /* what the snapshot says */
    uint64_t done;
    struct sha256 sha;
};

static int writer_cb(void *arg, const uint8_t *data, size_t len)
{
    struct writer *w = arg;

    /* More bytes than the snapshot's size: stop now rather than fill the disk. */
    if (len > w->size - w->done)
        return SHOAL_EHASH;
    sha256_update(&w->sha, data, len);
    w->done += len;
    return write_all(w->fd, data, len);
}

/* Writes file `f` from the store to `leaf` in dirfd: temporary name, size and sha256
 * checked, fsync, rename over whatever is there. The temporary file is removed on any
 * failure. *bytes gets the bytes written. */
static int place_file(struct store *s, const struct snapshot_file *f, int dirfd, const char *leaf,
                      uint64_t *bytes, char *why, size_t why_len)
{
    struct writer w = {.fd = -1, .size = f->size};
    uint8_t digest[SHA256_LEN];
    char tmp[NAME_MAX + 1];
    bool made = false, held = false;
    int r;

    /* Held while it is read, so that eviction cannot take it from under the export. */
    r = store_hold(s, f->sha256);
    if (r < 0) {
        set_why(why, why_len, "%s: out of memory", f->path);
        goto out;
    }
    held = true;
    r = check_in_store(s, f, why, why_len);
    if (r < 0)
        goto out;
    r = tmp_create(dirfd, leaf, tmp, &w.fd);
    if (r < 0) {
        set_why(why, why_len, "%s: cannot create a temporary file: %s", f->path, strerror(-r));
        goto out;
    }
    made = true;
    r = sha256_init(&w.sha);
    if (r < 0) {
        set_why(why, why_len, "%s: out of memory", f->path);
        goto out;
    }
    r = store_read_file(s, f->sha256, writer_cb, &w);
    if (r == 0 && w.done != w.size)
        r = SHOAL_EHASH;
    if (r == 0) {
        sha256_final(&w.sha, digest);
        if (memcmp(digest, f->sha256, SHA256_LEN) != 0)
            r = SHOAL_EHASH;
    }
    if (r == SHOAL_EHASH) {
        set_why(why, why_len,
                "%s: the bytes in the store do not match its sha256 and size (the store is "
                "damaged: run store_check)",
                f->path);
        goto out;
    }
    if (r == -ENOENT) {
        set_why(why, why_len, "%s: not complete in the store (a chunk is gone)", f->path);
        goto out;
    }
    if (r < 0) {
        set_why(why, why_len, "%s: writing: %s", f->path, shoal_strerror(r));
        goto out;
    }
    /* Durable before it gets its final name: after a crash the name holds all bytes.
     * close() reports late write errors on some file systems (NFS). */
    r = fsync(w.fd) < 0 ? -errno : 0;
    if (close(w.fd) < 0 && r == 0)
        r = -errno;
    w.fd = -1;
    if (r < 0) {
        set_why(why, why_len, "%s: writing: %s", f->path, strerror(-r));
        goto out;
    }
    if (renameat(dirfd, tmp, dirfd, leaf) < 0) {
        r = -errno;
        set_why(why, why_len, "%s: cannot rename into place: %s", f->path, strerror(-r));
        goto out;
    }
    made = false;
    *bytes = w.done;
    /* Exported counts as used: eviction goes least recently used first. */
    (void)store_touch(s, f->sha256);
out:
    sha256_release(&w.sha);
    close_fd(&w.fd);
    if (made)
        unlinkat(dirfd, tmp, 0);
    if (held)
        store_release(s, f->sha256);
    return r;
}

/* Writes a small file (a ref) by temporary name + rename, unless it already holds
 * exactly `data`. */
static int place_small(int dirfd, const char *leaf, const char *data, size_t len)
{
    char tmp[NAME_MAX + 1], cur[128];
    bool made = false;
    ssize_t n;
    int fd, r;

    fd = openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, cur, sizeof(cur));
        close(fd);
        if (n >= 0 && (size_t)n == len && memcmp(cur, data, len) == 0)
            return 0;
    }
    fd = -1;
    r = tmp_create(dirfd, leaf, tmp, &fd);
    if (r < 0)
        goto out;
    made = true;
    r = write_all(fd, (const uint8_t *)data, len);
    if (r < 0)
        goto out;
    r = fsync(fd) < 0 ? -errno : 0;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    fd = -1;
    if (r < 0)
        goto out;
    if (renameat(dirfd, tmp, dirfd, leaf) < 0) {
        r = -errno;
        goto out;
    }
    made = false;
    r = fsync(dirfd) < 0 ? -errno : 0;
out:
    close_fd(&fd);
    if (made)
        unlinkat(dirfd, tmp, 0);
    return r;
}

/* Makes `leaf` in dirfd a symlink to `target`. A link already pointing there is
 * kept; anything else that is not a directory is replaced through a temporary link
 * and a rename, so the path never goes missing in between. */
static int place_link(int dirfd, const char *leaf, const char *target)
{
    char cur[PATH_MAX], tmp[NAME_MAX + 1];
    size_t tlen = strlen(target);
    ssize_t n;
    int r = 0, tries;

    n = readlinkat(dirfd, leaf, cur, sizeof(cur));
    if (n >= 0 && (size_t)n == tlen && memcmp(cur, target, tlen) == 0)
        return 0;
    /* EINVAL: something there that is not a symlink; rename replaces it (or fails
     * with EISDIR for a directory). */
    if (n < 0 && errno != ENOENT && errno != EINVAL)
        return -errno;
    for (tries = 0; tries < 4; tries++) {
        r = tmp_name(leaf, tmp);
        if (r < 0)
            return r;
        r = symlinkat(target, dirfd, tmp) < 0 ? -errno : 0;
        if (r == 0)
            break;
        if (r != -EEXIST)
            return r;
    }
    if (r < 0)
        return r;
    if (renameat(dirfd, tmp, dirfd, leaf) < 0) {
        r = -errno;
        unlinkat(dirfd, tmp, 0);
    }
    return r;
}

/* 1 if `leaf` in dirfd is a regular file with f's size and sha256, 0 if not (or
 * missing), or an error. buf: READ_BUF_LEN bytes. */
static int local_same(int dirfd, const char *leaf, const struct snapshot_file *f, uint8_t *buf)
{
    struct sha256 sha = {0};
    uint8_t digest[SHA256_LEN];
    struct stat st;
    ssize_t n;
    int fd = -1, r = 0;

    /* O_NOFOLLOW: a symlink at the leaf is never read through (it is replaced);
     * O_NONBLOCK: a fifo planted there cannot block the export. */
    fd = openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        r = errno == ENOENT || errno == ELOOP ? 0 : -errno;
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != f->size)
        goto out;
    r = sha256_init(&sha);
    if (r < 0)
        goto out;
    for (;;) {
        n = read(fd, buf, READ_BUF_LEN);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        sha256_update(&sha, buf, (size_t)n);
    }
    sha256_final(&sha, digest);
    r = memcmp(digest, f->sha256, SHA256_LEN) == 0;
out:
    sha256_release(&sha);
    close_fd(&fd);
    return r;
}

/* --- the Hugging Face cache ------------------------------------------------- */

/* The blob for f: kept if present with the right size (what huggingface_hub itself
 * trusts), else written. *written tells which. */
static int hf_blob(struct store *s, const struct snapshot_file *f, int blobs_fd, bool *written,
                   uint64_t *bytes, char *why, size_t why_len)
{
    struct stat st;
    int r;

    *written = false;
    if (fstatat(blobs_fd, f->etag, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISREG(st.st_mode) && (uint64_t)st.st_size == f->size)
            return 0;
    } else if (errno != ENOENT) {
        r = -errno;
        set_why(why, why_len, "%s: blobs/%s: %s", f->path, f->etag, strerror(-r));
        return r;
    }
    r = place_file(s, f, blobs_fd, f->etag, bytes, why, why_len);
    if (r == 0)
        *written = true;
    return r;
}

/* snapshots/<commit>/<path> -> "../" once per directory between the link and the repo
 * folder, then blobs/<etag>. */
static int hf_link(const struct snapshot_file *f, int commit_fd, char *why, size_t why_len)
{
    const char *leaf;
    size_t dlen = split_path(f->path, &leaf), ups = 2, i, cap;
    char *target = NULL, *p;
    int dir = -1, r;

    for (i = 0; i < dlen; i++)
        ups += f->path[i] == '/';
    ups += dlen > 0;
    cap = 3 * ups + sizeof("blobs/") + SNAPSHOT_ETAG_MAX;
    target = malloc(cap);
    if (!target) {
        r = -ENOMEM;
        set_why(why, why_len, "%s: out of memory", f->path);
        goto out;
    }
    p = target;
    for (i = 0; i < ups; i++) {
        memcpy(p, "../", 3);
        p += 3;
    }
    snprintf(p, cap - (size_t)(p - target), "blobs/%s", f->etag);
    r = open_dir_below(commit_fd, f->path, dlen, true, &dir, f->path, why, why_len);
    if (r < 0)
        goto out;
    r = place_link(dir, leaf, target);
    if (r < 0)
        set_why(why, why_len, "%s: cannot place the snapshot symlink: %s", f->path, strerror(-r));
out:
    close_fd(&dir);
    free(target);
    return r;
}

/* refs/<revision>: the commit, no newline. Written after every file is in place, so a
 * program resolving the revision never finds a commit whose files are missing. */
static int hf_ref(int repo_fd, const char *revision, const char *commit, char *why, size_t why_len)
{
    char shown[sizeof("refs/") + SNAPSHOT_REV_MAX];
    const char *leaf;
    size_t dlen = split_path(revision, &leaf);
    int refs = -1, dir = -1, r;

    snprintf(shown, sizeof(shown), "refs/%s", revision);
    r = open_dir_below(repo_fd, "refs", 4, true, &refs, shown, why, why_len);
    if (r < 0)
        goto out;
    r = open_dir_below(refs, revision, dlen, true, &dir, shown, why, why_len);
    if (r < 0)
        goto out;
    r = place_small(dir, leaf, commit, strlen(commit));
    if (r < 0)
        set_why(why, why_len, "%s: %s", shown, strerror(-r));
out:
    close_fd(&dir);
    close_fd(&refs);
    return r;
}

int export_hf_cache(struct store *s, const struct snapshot *snap, const char *cache_dir,
                    const char *revision, export_progress_cb cb, void *arg,
                    struct export_stats *out, char *why, size_t why_len)
{
    struct export_stats st = {0};
    char folder[SNAPSHOT_REPO_MAX + 8], q[NAME_SHOWN_MAX + 8];
    char rel[sizeof("snapshots/") + SNAPSHOT_COMMIT_LEN];
    int root = -1, repo = -1, blobs = -1, commit = -1, r;
    const char *leaf;
    uint64_t bytes;
    bool written;
    uint32_t i;

    if (why && why_len > 0)
        why[0] = '\0';
    r = check_snapshot(snap, why, why_len);
    if (r < 0)
        goto out;
    if (!s || !cache_dir || !cache_dir[0]) {
        r = -EINVAL;
        set_why(why, why_len, "no store or no cache directory");
        goto out;
    }
    if (revision)
        split_path(revision, &leaf);
    if (revision && (!snapshot_rev_ok(revision) || !leaf_ok(leaf))) {
        r = -EINVAL;
        set_why(why, why_len, "invalid revision \"%s\"",
                quote_name(revision, NAME_SHOWN_MAX, q, sizeof(q)));
        goto out;
    }
    r = snapshot_repo_folder(snap->repo, folder, sizeof(folder));
    if (r < 0) {
        set_why(why, why_len, "%s: no cache folder name for this repo", snap->repo);
        goto out;
    }
    r = open_root(cache_dir, &root);
    if (r < 0) {
        set_why(why, why_len, "cache directory: %s", strerror(-r));
        goto out;
    }
    r = open_dir_below(root, folder, strlen(folder), true, &repo, folder, why, why_len);
    if (r < 0)
        goto out;
    r = open_dir_below(repo, "blobs", 5, true, &blobs, folder, why, why_len);
    if (r < 0)
        goto out;
    snprintf(rel, sizeof(rel), "snapshots/%s", snap->commit);
    r = open_dir_below(repo, rel, strlen(rel), true, &commit, folder, why, why_len);
    if (r < 0)
        goto out;
    for (i = 0; i < snap->n_files; i++) {
        const struct snapshot_file *f = &snap->files[i];
        bytes = 0;
        r = hf_blob(s, f, blobs, &written, &bytes, why, why_len);
        if (r < 0)
            goto out;
        if (written) {
            st.files_written++;
            st.bytes_written += bytes;
        } else {
            st.files_kept++;
        }
        r = hf_link(f, commit, why, why_len);
        if (r < 0)
            goto out;
        if (cb)
            cb(arg, f, written);
    }
    /* The renames in blobs/ reach the disk before a ref names this commit. */
    if (fsync(blobs) < 0) {
        r = -errno;
        set_why(why, why_len, "%s/blobs: %s", folder, strerror(-r));
        goto out;
    }
    if (revision && strcmp(revision, snap->commit) != 0) {
        r = hf_ref(repo, revision, snap->commit, why, why_len);
        if (r < 0)
            goto out;
    }
out:
    close_fd(&commit);
    close_fd(&blobs);
    close_fd(&repo);
    close_fd(&root);
    if (out)
        *out = st;
    return r;
}

/* --- a plain directory ------------------------------------------------------ */

int export_local_dir(struct store *s, const struct snapshot *snap, const char *dir,
                     export_progress_cb cb, void *arg, struct export_stats *out, char *why,
                     size_t why_len)
{
    struct export_stats st = {0};
    uint8_t *buf = NULL;
    int root = -1, sub = -1, r;
    const char *leaf;
    uint64_t bytes;
    bool written;
    size_t dlen;
    uint32_t i;

    if (why && why_len > 0)
        why[0] = '\0';
    r = check_snapshot(snap, why, why_len);
    if (r < 0)
        goto out;
    if (!s || !dir || !dir[0]) {
        r = -EINVAL;
        set_why(why, why_len, "no store or no directory");
        goto out;
    }
    buf = malloc(READ_BUF_LEN);
    if (!buf) {
        r = -ENOMEM;
        set_why(why, why_len, "out of memory");
        goto out;
    }
    r = open_root(dir, &root);
    if (r < 0) {
        set_why(why, why_len, "target directory: %s", strerror(-r));
        goto out;
    }
    for (i = 0; i < snap->n_files; i++) {
        const struct snapshot_file *f = &snap->files[i];
        dlen = split_path(f->path, &leaf);
        r = open_dir_below(root, f->path, dlen, true, &sub, f->path, why, why_len);
        if (r < 0)
            goto out;
        r = local_same(sub, leaf, f, buf);
        if (r < 0) {
            set_why(why, why_len, "%s: reading the file in place: %s", f->path, strerror(-r));
            goto out;
        }
        written = r == 0;
        if (written) {
            bytes = 0;
            r = place_file(s, f, sub, leaf, &bytes, why, why_len);
            if (r < 0)
                goto out;
            /* The rename itself on disk before the file counts as placed. */
            if (fsync(sub) < 0) {
                r = -errno;
                set_why(why, why_len, "%s: %s", f->path, strerror(-r));
                goto out;
            }
            st.files_written++;
            st.bytes_written += bytes;
        } else {
            st.files_kept++;
        }
        r = 0;
        close_fd(&sub);
        if (cb)
            cb(arg, f, written);
    }
out:
    close_fd(&sub);
    close_fd(&root);
    free(buf);
    if (out)
        *out = st;
    return r;
}

/* --- streamed blobs ------------------------------------------------------------ */

struct export_stream {
    int blobs;                  /* the blobs/ folder */
    int fd;
    char tmp[NAME_MAX + 1];
    char etag[SNAPSHOT_ETAG_MAX + 1];
    char path[64];              /* the start of the file's path, for messages */
    uint64_t size, done, synced;
};

#define WRITEBACK_STEP (8u << 20)

int export_stream_open(const char *cache_dir, const char *repo, const struct snapshot_file *f,
                       struct export_stream **out, char *why, size_t why_len)
{
    char folder[SNAPSHOT_REPO_MAX + 8];
    int root = -1, dir = -1, r;
    struct export_stream *x;
    struct stat st;

    *out = NULL;
    if (!snapshot_etag_ok(f->etag) || !snapshot_path_ok(f->path)) {
        set_why(why, why_len, "invalid file name or etag");
        return -EINVAL;
    }
    r = snapshot_repo_folder(repo, folder, sizeof(folder));
    if (r < 0) {
        set_why(why, why_len, "%s: no cache folder name for this repo", repo);
        return r;
    }
    x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->blobs = x->fd = -1;
    r = open_root(cache_dir, &root);
    if (r < 0) {
        set_why(why, why_len, "cache directory: %s", strerror(-r));
        goto fail;
    }
    r = open_dir_below(root, folder, strlen(folder), true, &dir, folder, why, why_len);
    if (r == 0)
        r = open_dir_below(dir, "blobs", 5, true, &x->blobs, folder, why, why_len);
    if (r < 0)
        goto fail;
    if (fstatat(x->blobs, f->etag, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == f->size) {
        r = 0; /* already there: nothing to stream */
        goto fail;
    }
    r = tmp_create(x->blobs, f->etag, x->tmp, &x->fd);
    if (r < 0) {
        set_why(why, why_len, "%s: cannot create a temporary file: %s", f->path, strerror(-r));
        goto fail;
    }
    snprintf(x->etag, sizeof(x->etag), "%s", f->etag);
    snprintf(x->path, sizeof(x->path), "%s", f->path);
    x->size = f->size;
    *out = x;
    x = NULL;
fail:
    close_fd(&dir);
    close_fd(&root);
    if (x) {
        close_fd(&x->blobs);
        free(x);
    }
    return r;
}

int export_stream_write(struct export_stream *x, const void *data, size_t len)
{
    int r;

    if (len > x->size - x->done)
        return -EFBIG;
    r = write_all(x->fd, data, len);
    if (r < 0)
        return r;
    x->done += len;
    /* Start writing back what is complete; the commit's fsync then waits for little. */
    if (x->done - x->synced >= WRITEBACK_STEP) {
        (void)sync_file_range(x->fd, (off_t)x->synced, (off_t)(x->done - x->synced),
                              SYNC_FILE_RANGE_WRITE);
        x->synced = x->done;
    }
    return 0;
}

void export_stream_abort(struct export_stream *x)
{
    if (!x)
        return;
    close_fd(&x->fd);
    if (x->tmp[0])
        unlinkat(x->blobs, x->tmp, 0);
    close_fd(&x->blobs);
    free(x);
}

int export_stream_commit(struct export_stream *x, char *why, size_t why_len)
{
    int r = 0;

    if (x->done != x->size) {
        set_why(why, why_len, "%s: %llu of %llu bytes written", x->path,
                (unsigned long long)x->done, (unsigned long long)x->size);
        export_stream_abort(x);
        return -EIO;
    }
    /* Durable before it gets its final name, as place_file does. */
    if (fsync(x->fd) < 0)
        r = -errno;
    if (close(x->fd) < 0 && r == 0)
        r = -errno;
    x->fd = -1;
    if (r == 0 && renameat(x->blobs, x->tmp, x->blobs, x->etag) < 0)
        r = -errno;
    if (r < 0) {
        set_why(why, why_len, "%s: writing blobs/%s: %s", x->path, x->etag, strerror(-r));
        export_stream_abort(x);
        return r;
    }
    x->tmp[0] = '\0';
    export_stream_abort(x); /* frees; nothing left to remove */
    return 0;
}
