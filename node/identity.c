/* identity.c - the node's long-term key pair in DATA_DIR/node.key (identity.h). */
#include "identity.h"

#include "b3.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ID_PATH_MAX 4096
#define ID_HASH_BYTES 10 /* 80 bits: 16 base32 characters */

static int id_fail(char *why, size_t why_len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int id_fail(char *why, size_t why_len, int err, const char *fmt, ...)
{
    va_list ap;

    if (why && why_len > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

static void id_check(const uint8_t *buf, uint8_t out[static IDENTITY_CHECK_LEN])
{
    uint8_t h[B3_OUT_LEN];

    b3_hash(buf, IDENTITY_FILE_LEN - IDENTITY_CHECK_LEN, h);
    memcpy(out, h, IDENTITY_CHECK_LEN);
}

/* Reads the whole file (at most cap bytes) into buf; *len gets the bytes read. */
static int id_read_all(int fd, uint8_t *buf, size_t cap, size_t *len)
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

/* Checks a file's bytes; fills *out on success. */
static int id_decode(const char *path, const uint8_t *buf, size_t len, struct identity *out,
                     char *why, size_t why_len)
{
    const uint8_t *sk = buf + IDENTITY_MAGIC_LEN, *pk = sk + IDENTITY_KEY_LEN;
    uint8_t check[IDENTITY_CHECK_LEN], derived[IDENTITY_KEY_LEN];
    int err = 0;

    if (len != IDENTITY_FILE_LEN) {
        return id_fail(why, why_len, SHOAL_EFORMAT,
                       "%s: not a node key file: %s (%zu bytes, expected %d); move it away "
                       "to create a new identity",
                       path, len < IDENTITY_FILE_LEN ? "truncated" : "too long", len,
                       IDENTITY_FILE_LEN);
    }
    if (memcmp(buf, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN) != 0) {
        return id_fail(why, why_len, SHOAL_EFORMAT,
                       "%s: not a node key file: bad magic (expected %s)", path,
                       IDENTITY_MAGIC);
    }
    id_check(buf, check);
    if (memcmp(check, buf + IDENTITY_FILE_LEN - IDENTITY_CHECK_LEN, IDENTITY_CHECK_LEN) != 0) {
        return id_fail(why, why_len, SHOAL_EFORMAT,
                       "%s: node key file is corrupt: bad checksum", path);
    }
    if (crypto_scalarmult_base(derived, sk) != 0 ||
        sodium_memcmp(derived, pk, IDENTITY_KEY_LEN) != 0) {
        err = id_fail(why, why_len, SHOAL_EFORMAT,
                      "%s: node key file is corrupt: public key does not match secret key",
                      path);
        goto out;
    }
    memcpy(out->secret, sk, IDENTITY_KEY_LEN);
    memcpy(out->public, pk, IDENTITY_KEY_LEN);
out:
    sodium_memzero(derived, sizeof(derived));
    return err;
}

int identity_load(const char *path, struct identity *out, char *why, size_t why_len)
{
    uint8_t buf[IDENTITY_FILE_LEN + 1]; /* one more byte to see an over-long file */
    struct stat st;
    size_t len = 0;
    int fd, err;

    if (sodium_init() < 0)
        return id_fail(why, why_len, -EIO, "libsodium failed to initialise");
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        err = -errno;
        return id_fail(why, why_len, err, "%s: cannot open node key file: %s", path,
                       strerror(-err));
    }
    if (fstat(fd, &st) != 0) {
        err = id_fail(why, why_len, -errno, "%s: cannot stat node key file: %s", path,
                      strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err = id_fail(why, why_len, SHOAL_EFORMAT, "%s: node key file is not a regular file",
                      path);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        err = id_fail(why, why_len, -EACCES,
                      "%s: node key file has mode %04o: group or others may access it; "
                      "run chmod 600 on it if it is still secret",
                      path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    err = id_read_all(fd, buf, sizeof(buf), &len);
    if (err < 0) {
        id_fail(why, why_len, err, "%s: cannot read node key file: %s", path, strerror(-err));
        goto out;
    }
    err = id_decode(path, buf, len, out, why, why_len);
out:
    sodium_memzero(buf, sizeof(buf));
    close(fd);
    return err;
}

static int id_write_all(int fd, const uint8_t *buf, size_t len)
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
static int id_sync_dir(const char *path)
{
    char dir[ID_PATH_MAX];
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

int identity_create(const char *path, struct identity *out, char *why, size_t why_len)
{
    uint8_t buf[IDENTITY_FILE_LEN];
    struct identity id;
    char tmp[ID_PATH_MAX];
    int fd = -1, err, n;

    if (sodium_init() < 0)
        return id_fail(why, why_len, -EIO, "libsodium failed to initialise");
    n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return id_fail(why, why_len, -ENAMETOOLONG, "%s: path too long", path);
    if (faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return id_fail(why, why_len, -EEXIST, "%s: node key file already exists", path);
    crypto_box_keypair(id.public, id.secret);
    memcpy(buf, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN);
    memcpy(buf + IDENTITY_MAGIC_LEN, id.secret, IDENTITY_KEY_LEN);
    memcpy(buf + IDENTITY_MAGIC_LEN + IDENTITY_KEY_LEN, id.public, IDENTITY_KEY_LEN);
    id_check(buf, buf + IDENTITY_FILE_LEN - IDENTITY_CHECK_LEN);

    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = -errno;
        id_fail(why, why_len, err, "%s: cannot create: %s", tmp, strerror(-err));
        goto out;
    }
    err = id_write_all(fd, buf, sizeof(buf));
    if (err == 0 && fsync(fd) != 0)
        err = -errno;
    if (close(fd) != 0 && err == 0)
        err = -errno;
    fd = -1;
    if (err == 0 && rename(tmp, path) != 0)
        err = -errno;
    if (err < 0) {
        id_fail(why, why_len, err, "%s: cannot write node key file: %s", path, strerror(-err));
        unlink(tmp);
        goto out;
    }
    err = id_sync_dir(path);
    if (err < 0) {
        id_fail(why, why_len, err, "%s: cannot sync its directory: %s", path, strerror(-err));
        goto out;
    }
    *out = id;
out:
    sodium_memzero(buf, sizeof(buf));
    sodium_memzero(&id, sizeof(id));
    return err;
}

int identity_load_or_create(const char *data_dir, struct identity *out, bool *created,
                            char *why, size_t why_len)
{
    char path[ID_PATH_MAX], tmp[ID_PATH_MAX];
    int err, n;

    n = snprintf(path, sizeof(path), "%s/%s", data_dir, IDENTITY_FILE);
    if (n < 0 || (size_t)n >= sizeof(path))
        return id_fail(why, why_len, -ENAMETOOLONG, "%s: path too long", data_dir);
    err = identity_load(path, out, why, why_len);
    if (err != -ENOENT) {
        if (err == 0)
            *created = false;
        return err;
    }
    /* No key yet. A temp file can only be left by a crash during an earlier creation:
     * the caller holds the data directory, so nobody else is writing it. */
    n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return id_fail(why, why_len, -ENAMETOOLONG, "%s: path too long", data_dir);
    if (unlink(tmp) != 0 && errno != ENOENT) {
        err = -errno;
        return id_fail(why, why_len, err, "%s: cannot remove stale temp file: %s", tmp,
                       strerror(-err));
    }
    err = identity_create(path, out, why, why_len);
    if (err == 0)
        *created = true;
    return err;
}

void identity_node_id(const struct identity *id, char out[static IDENTITY_ID_LEN + 1])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint8_t h[B3_OUT_LEN];
    uint64_t acc = 0;
    unsigned bits = 0;
    size_t i, o = 0;

    b3_hash(id->public, IDENTITY_KEY_LEN, h);
    for (i = 0; i < ID_HASH_BYTES; i++) {
        acc = (acc << 8) | h[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(acc >> bits) & 31];
        }
    }
    out[o] = '\0';
}

void identity_clear(struct identity *id)
{
    sodium_memzero(id, sizeof(*id));
}
