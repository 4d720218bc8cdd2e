/* keyfile.c - reading and creating the node's secret files; the cluster key (keyfile.h). */
#include "keyfile.h"

#include "err.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KF_PATH_MAX 4096

int keyfile_why(char *why, size_t why_len, int err, const char *fmt, ...)
{
    va_list ap;

    if (why && why_len > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* --- reading ---------------------------------------------------------------------- */

static int kf_read_all(int fd, uint8_t *buf, size_t cap, size_t *len)
{
    size_t n = 0;

    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return 0;
}

int keyfile_read(const char *path, const char *what, int flags, uint8_t *buf, size_t cap,
                 size_t *len, char *why, size_t why_len)
{
    /* O_NONBLOCK: a FIFO given as a key file must not hang startup; it is refused below
     * as not a regular file. On a regular file the flag changes nothing. */
    int oflags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
    struct stat st;
    int fd, err;

    if (flags & KEYFILE_NOFOLLOW)
        oflags |= O_NOFOLLOW;
    fd = open(path, oflags);
    if (fd < 0) {
        err = -errno;
        if (err == -ELOOP && (flags & KEYFILE_NOFOLLOW))
            return keyfile_why(why, why_len, err, "%s: %s is a symbolic link; refused", path, what);
        return keyfile_why(why, why_len, err, "%s: cannot open %s: %s", path, what, strerror(-err));
    }
    if (fstat(fd, &st) != 0) {
        err = keyfile_why(why, why_len, -errno, "%s: cannot stat %s: %s", path, what, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err = keyfile_why(why, why_len, SHOAL_EFORMAT, "%s: %s is not a regular file", path, what);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        err = keyfile_why(why, why_len, -EACCES,
                      "%s: %s has mode %04o: group or others may access it; run chmod 600 "
                      "on it if it is still secret",
                      path, what, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    err = kf_read_all(fd, buf, cap, len);
    if (err < 0)
        keyfile_why(why, why_len, err, "%s: cannot read %s: %s", path, what, strerror(-err));
out:
    close(fd);
    return err;
}

/* --- creating --------------------------------------------------------------------- */

static int kf_write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Syncs the directory holding `path`, so that a rename into it is durable. */
static int kf_sync_dir(const char *path)
{
    char dir[KF_PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n;
    int fd, err = 0;

    if (!slash) {
        memcpy(dir, ".", 2);
    } else {
        n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd) != 0)
        err = -errno;
    close(fd);
    return err;
}

/* Renames tmp to path unless path exists. RENAME_NOREPLACE makes that one step; file
 * systems without it get a check first, which is enough for a caller that owns the
 * directory. */
static int kf_rename_new(const char *tmp, const char *path)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -errno;
    if (faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return -EEXIST;
    return rename(tmp, path) == 0 ? 0 : -errno;
}

static int kf_tmp_name(const char *path, char *tmp, size_t cap)
{
    int n = snprintf(tmp, cap, "%s.tmp", path);

    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int keyfile_create(const char *path, const char *what, const uint8_t *buf, size_t len, char *why,
                   size_t why_len)
{
    char tmp[KF_PATH_MAX];
    int fd, err;

    if (kf_tmp_name(path, tmp, sizeof(tmp)) < 0)
        return keyfile_why(why, why_len, -ENAMETOOLONG, "%s: path too long", path);
    if (faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return keyfile_why(why, why_len, -EEXIST, "%s: %s already exists", path, what);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = -errno;
        return keyfile_why(why, why_len, err, "%s: cannot create: %s", tmp, strerror(-err));
    }
    err = kf_write_all(fd, buf, len);
    if (err == 0 && fsync(fd) != 0)
        err = -errno;
    if (close(fd) != 0 && err == 0)
        err = -errno;
    if (err == 0)
        err = kf_rename_new(tmp, path);
    if (err < 0) {
        unlink(tmp);
        if (err == -EEXIST)
            return keyfile_why(why, why_len, err, "%s: %s already exists", path, what);
        return keyfile_why(why, why_len, err, "%s: cannot write %s: %s", path, what, strerror(-err));
    }
    err = kf_sync_dir(path);
    if (err < 0)
        return keyfile_why(why, why_len, err, "%s: cannot sync its directory: %s", path,
                       strerror(-err));
    return 0;
}

int keyfile_remove_stale_tmp(const char *path, char *why, size_t why_len)
{
    char tmp[KF_PATH_MAX];
    int err;

    if (kf_tmp_name(path, tmp, sizeof(tmp)) < 0)
        return keyfile_why(why, why_len, -ENAMETOOLONG, "%s: path too long", path);
    if (unlink(tmp) != 0 && errno != ENOENT) {
        err = -errno;
        return keyfile_why(why, why_len, err, "%s: cannot remove stale temp file: %s", tmp,
                       strerror(-err));
    }
    return 0;
}

/* --- the cluster key -------------------------------------------------------------- */

static const char ck_what[] = "cluster key file";

/* One line for a refused cluster key file: what clusterkey_decode found, refined with
 * what the bytes show (cap: how many were read at most). */
static int ck_refused(const char *path, const uint8_t *buf, size_t len, size_t cap, int err,
                      enum clusterkey_fault f, char *why, size_t why_len)
{
    uint8_t v;

    switch (f) {
    case CLUSTERKEY_BAD_SIZE:
        if (len < CLUSTERKEY_MAGIC_LEN)
            return keyfile_why(why, why_len, err, "%s: not a cluster key file (%zu bytes)", path, len);
        return keyfile_why(why, why_len, err, "%s: cluster key file is %s (%zu%s bytes, expected %d)",
                       path, len < CLUSTERKEY_FILE_LEN ? "truncated" : "too long", len,
                       len >= cap ? " or more" : "", CLUSTERKEY_FILE_LEN);
    case CLUSTERKEY_NODE_KEY:
        return keyfile_why(why, why_len, err,
                       "%s: this is a node key file (node.key), not a cluster key; give the "
                       "file made by shoal keygen",
                       path);
    case CLUSTERKEY_BAD_VERSION:
        v = buf[CLUSTERKEY_MAGIC_LEN - 1];
        if (isprint(v))
            return keyfile_why(why, why_len, err,
                           "%s: cluster key file of version '%c'; this build reads version "
                           "'%c' only",
                           path, v, CLUSTERKEY_VERSION);
        return keyfile_why(why, why_len, err, "%s: cluster key file of an unknown version", path);
    case CLUSTERKEY_BAD_CHECK:
        return keyfile_why(why, why_len, err,
                       "%s: cluster key file is damaged (bad checksum); copy it again from "
                       "a node of the cluster",
                       path);
    case CLUSTERKEY_BAD_MAGIC:
    case CLUSTERKEY_OK:
        break;
    }
    return keyfile_why(why, why_len, err, "%s: %s (bad magic); make one with shoal keygen", path,
                   clusterkey_fault_str(f));
}

int keyfile_cluster_load(const char *path, int flags, struct clusterkey *out, char *why,
                         size_t why_len)
{
    uint8_t buf[CLUSTERKEY_READ_MAX];
    enum clusterkey_fault f;
    size_t len = 0;
    int err;

    err = keyfile_read(path, ck_what, flags, buf, sizeof(buf), &len, why, why_len);
    if (err == -ENOENT)
        err = keyfile_why(why, why_len, err,
                      "%s: no such cluster key file; make one with shoal keygen, or copy the "
                      "cluster's key there (mode 0600)",
                      path);
    if (err < 0)
        goto out;
    err = clusterkey_decode(buf, len, out, &f);
    if (err < 0)
        ck_refused(path, buf, len, sizeof(buf), err, f, why, why_len);
out:
    sodium_memzero(buf, sizeof(buf));
    return err;
}

/* Makes a new key at `path`, which the caller has found missing. */
static int ck_create(const char *path, struct clusterkey *out, char *why, size_t why_len)
{
    uint8_t buf[CLUSTERKEY_FILE_LEN];
    struct clusterkey k;
    int err;

    err = keyfile_remove_stale_tmp(path, why, why_len);
    if (err < 0)
        return err;
    if (clusterkey_generate(&k) < 0)
        return keyfile_why(why, why_len, -EIO, "libsodium failed to initialise");
    clusterkey_encode(&k, buf);
    err = keyfile_create(path, ck_what, buf, sizeof(buf), why, why_len);
    if (err == 0)
        *out = k;
    sodium_memzero(buf, sizeof(buf));
    clusterkey_clear(&k);
    return err;
}

int keyfile_cluster_open(const char *data_dir, const char *path, struct clusterkey *out,
                         bool *created, char *why, size_t why_len)
{
    char def[KF_PATH_MAX];
    int n, err;

    n = snprintf(def, sizeof(def), "%s/%s", data_dir, KEYFILE_CLUSTER);
    if (n < 0 || (size_t)n >= sizeof(def))
        return keyfile_why(why, why_len, -ENAMETOOLONG, "%s: path too long", data_dir);
    if (strcmp(path, def) != 0)
        err = keyfile_cluster_load(path, 0, out, why, why_len);
    else
        err = keyfile_cluster_load(path, KEYFILE_NOFOLLOW, out, why, why_len);
    if (err == 0) {
        *created = false;
        return 0;
    }
    if (err != -ENOENT || strcmp(path, def) != 0)
        return err;
    err = ck_create(path, out, why, why_len);
    if (err == 0)
        *created = true;
    return err;
}
