/* cmd_keygen.c - `shoal keygen FILE`: a new cluster key, no node needed.
 *
 * The key is written the way a secret should be: to a fresh temp file beside FILE
 * (mkostemp: O_EXCL, mode 0600), synced, then moved to FILE with RENAME_NOREPLACE (or a
 * hard link where the file system lacks that), so an existing FILE is never replaced,
 * even one that appears while we write; then the directory is synced. Standard output
 * is refused as a destination: a key on a terminal or in a pipe ends up in scroll-back,
 * logs and CI output too easily.
 */
#include "cmd.h"

#include "clusterkey.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYGEN_PATH_MAX 4096

static const char usage[] =
    "Usage: shoal keygen FILE\n"
    "\n"
    "Writes a new random cluster key to FILE (mode 0600) and prints its fingerprint.\n"
    "Every node of a cluster needs the same key: copy FILE to each machine (keeping\n"
    "it mode 0600, owned by the user shoald runs as) and start shoald with\n"
    "--cluster-key FILE. Compare fingerprints, never keys: shoald logs the fingerprint\n"
    "of the key it loaded. No node is needed.\n"
    "\n"
    "FILE must not exist: keygen never replaces a key. Standard output (-) is refused.\n"
    "\n"
    "Options:\n"
    "  -h, --help    this help\n"
    "\n"
    "Exit status: 0 key written, 1 it could not be written, 2 usage error.\n";

static int write_all(int fd, const uint8_t *buf, size_t len)
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

/* Moves tmp to path unless path exists (-EEXIST). */
static int rename_new(const char *tmp, const char *path)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -errno;
    /* No RENAME_NOREPLACE here: link(2) does not replace either. */
    if (link(tmp, path) != 0)
        return -errno;
    unlink(tmp);
    return 0;
}

static int sync_dir_of(const char *path)
{
    char dir[KEYGEN_PATH_MAX];
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

/* Writes the encoded key to a new file at `path`; 0 or the exit status after a message. */
static int write_key(const char *path, const uint8_t *buf, size_t len)
{
    char tmp[KEYGEN_PATH_MAX];
    int fd, n, err;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        tool_err("keygen", "%s: path too long", path);
        return 1;
    }
    /* Checked first for a clear message; rename_new is what guarantees it. */
    if (faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        tool_err("keygen",
                 "%s: already exists; keygen never replaces a key (move it away "
                 "first if you mean to)",
                 path);
        return 1;
    }
    fd = mkostemp(tmp, O_CLOEXEC); /* O_EXCL, mode 0600 */
    if (fd < 0) {
        tool_err("keygen", "%s: cannot create a file there: %s", path, strerror(errno));
        return 1;
    }
    err = fchmod(fd, 0600) == 0 ? 0 : -errno; /* whatever the umask left */
    if (err == 0)
        err = write_all(fd, buf, len);
    if (err == 0 && fsync(fd) != 0)
        err = -errno;
    if (close(fd) != 0 && err == 0)
        err = -errno;
    if (err == 0)
        err = rename_new(tmp, path);
    if (err < 0) {
        unlink(tmp);
        if (err == -EEXIST)
            tool_err("keygen", "%s: already exists; keygen never replaces a key", path);
        else
            tool_err("keygen", "%s: cannot write: %s", path, strerror(-err));
        return 1;
    }
    err = sync_dir_of(path);
    if (err < 0) {
        tool_err("keygen", "%s: written, but its directory could not be synced: %s", path,
                 strerror(-err));
        return 1;
    }
    return 0;
}

static int cmd_keygen(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint8_t buf[CLUSTERKEY_FILE_LEN];
    char fp[CLUSTERKEY_FP_LEN + 1];
    struct clusterkey k;
    const char *path;
    int c, status;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            if (optopt)
                tool_err("keygen", "option '-%c' is unknown", optopt);
            else
                tool_err("keygen", "unknown option '%s'", argv[optind - 1]);
            return tool_usage(&cmd_keygen_def);
        }
    }
    if (argc - optind != 1) {
        tool_err("keygen", argc == optind ? "no FILE given" : "one FILE only");
        return tool_usage(&cmd_keygen_def);
    }
    path = argv[optind];
    if (strcmp(path, "-") == 0) {
        tool_err("keygen", "will not write a key to standard output; give a FILE");
        return tool_usage(&cmd_keygen_def);
    }
    if (!*path) {
        tool_err("keygen", "FILE is empty");
        return tool_usage(&cmd_keygen_def);
    }
    if (clusterkey_generate(&k) < 0) {
        tool_err("keygen", "libsodium failed to initialise");
        return 1;
    }
    clusterkey_encode(&k, buf);
    clusterkey_fingerprint(&k, fp);
    clusterkey_clear(&k);
    status = write_key(path, buf, sizeof(buf));
    sodium_memzero(buf, sizeof(buf));
    if (status != 0)
        return status;
    printf("cluster key %s written to %s\n", fp, path);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tool_err("keygen", "writing the output: %s", strerror(errno));
        return 1;
    }
    return 0;
}

const struct cmd cmd_keygen_def = {
    .name = "keygen",
    .fn = cmd_keygen,
    .summary = "write a new cluster key to a file",
    .usage = usage,
};
