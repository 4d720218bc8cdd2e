/* test_diskfull.c - the store on a full disk: a small tmpfs (root only).
 *
 * With a free-space reserve the store evicts unused files before the disk fills, and
 * refuses writes (-ENOSPC) when every file is in use, working again once they are
 * released. Without one, RocksDB itself hits the full disk:
 * the write fails with -ENOSPC, and once space is freed the store reopens consistent,
 * keeps every complete file, and takes writes again.
 */
#include "store.h"

#include "check.h"
#include "err.h"
#include "hasher.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define SKIP 77

static char mnt[256];

static void cleanup(void)
{
    if (mnt[0]) {
        umount2(mnt, MNT_DETACH);
        rmdir(mnt);
    }
}

static void quiet(void *arg, enum store_log_level lvl, const char *msg)
{
}

static struct store *open_at(const char *dir, uint64_t min_free)
{
    struct store_opts o = {.min_free = min_free, .log = quiet};
    struct store *s = NULL;
    char why[256];

    if (store_open(dir, &o, &s, why, sizeof(why)) < 0)
        check__fail(__FILE__, __LINE__, "store_open: %s", why);
    return s;
}

/* Stores one 4 MiB file from seed; returns the first error, or 0 when complete. */
static int put_file(struct store *s, uint64_t seed, uint8_t id[32])
{
    static uint8_t buf[4 << 20];
    struct hasher_piece *p = check_malloc(sizeof(*p));
    struct store_chunk *c = check_malloc(PROTO_CHUNKS_PER_PIECE * sizeof(*c));
    uint64_t off = 0;
    uint32_t k;
    int r;

    check_fill_splitmix(buf, sizeof(buf), seed);
    CHECK_EQ(sha256_digest(buf, sizeof(buf), id), 0);
    hasher_piece_compute(p, buf, sizeof(buf));
    for (k = 0; k < p->n_chunks; k++) {
        memcpy(c[k].hash, p->chunks[k].hash, 32);
        c[k].len = (uint32_t)p->chunks[k].len;
        c[k].data = buf + off;
        off += c[k].len;
    }
    r = store_put_piece(s, id, 0, p->hash, c, p->n_chunks);
    if (r == 0)
        r = store_complete_file(s, id, sizeof(buf));
    free(p);
    free(c);
    return r;
}

static void check_clean(struct store *s)
{
    struct store_fsck f;

    CHECK_EQ(store_check(s, false, &f), 0);
}

/* Fills the file system up to `leave` free bytes with a ballast file. */
static void ballast(const char *dir, uint64_t leave)
{
    char path[512];
    static uint8_t zero[1 << 20];
    int fd;

    snprintf(path, sizeof(path), "%s/ballast", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    for (;;) {
        struct statvfs v;
        CHECK_EQ(fstatvfs(fd, &v), 0);
        if ((uint64_t)v.f_bavail * v.f_frsize <= leave + sizeof(zero))
            break;
        CHECK_EQ(write(fd, zero, sizeof(zero)), (ssize_t)sizeof(zero));
    }
    close(fd);
}

static void unballast(const char *dir)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/ballast", dir);
    CHECK_EQ(unlink(path), 0);
}

/* Files in use cannot be evicted, so the reserve stops writes with -ENOSPC; once they
 * are released, eviction makes room and writes go on, and the reserve still holds. */
static void test_reserve(const char *dir)
{
    struct store *s = open_at(dir, 24u << 20);
    struct statvfs v;
    uint8_t id[12][32];
    int i, held, r = 0;

    /* A first file makes RocksDB settle its files (it preallocates the WAL and
     * releases the room at the first flush); then the disk is filled. */
    CHECK_EQ(put_file(s, 99, id[0]), 0);
    CHECK_EQ(store_hold(s, id[0]), 0);
    ballast(mnt, 40u << 20);
    for (i = 1; i < 10 && r == 0; i++) {
        r = put_file(s, 100 + i, id[i]);
        if (r == 0)
            CHECK_EQ(store_hold(s, id[i]), 0);
    }
    CHECK_EQ(r, -ENOSPC);
    held = i - 1;
    CHECK(held > 1);
    check_clean(s);
    for (i = 0; i < held; i++)
        store_release(s, id[i]);
    CHECK_EQ(put_file(s, 110, id[10]), 0);
    CHECK_EQ(put_file(s, 111, id[11]), 0);
    CHECK_EQ(statvfs(mnt, &v), 0);
    CHECK((uint64_t)v.f_bavail * v.f_frsize >= (20u << 20));
    check_clean(s);
    unballast(mnt);
    store_close(s);
}

static void test_raw_full(const char *dir)
{
    struct store *s = open_at(dir, 0);
    uint8_t id[64][32];
    struct store_file info;
    int i, n, r = 0;

    CHECK_EQ(put_file(s, 199, id[63]), 0); /* see test_reserve */
    ballast(mnt, 30u << 20);
    /* Each completion flushes, so the full disk shows up now, not at close. */
    for (i = 0; i < 64 && r == 0; i++)
        r = put_file(s, 200 + i, id[i]);
    n = i - 1; /* files known complete */
    fprintf(stderr, "   full after %d files: %s\n", n, shoal_strerror(r));
    CHECK(r == -ENOSPC || r == SHOAL_ESTORE);
    store_close(s);
    unballast(mnt);
    s = open_at(dir, 0);
    check_clean(s);
    for (i = 0; i < n; i++) {
        CHECK_EQ(store_file_info(s, id[i], &info), 0);
        CHECK(info.complete);
    }
    CHECK_EQ(put_file(s, 999, id[0]), 0);
    check_clean(s);
    store_close(s);
}

int main(void)
{
    char db[300];

    if (geteuid() != 0) {
        printf("skipped: mounting a small tmpfs needs root (CI runs this as root)\n");
        return SKIP;
    }
    snprintf(mnt, sizeof(mnt), "%s/shoal-full-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(mnt) != NULL);
    atexit(cleanup);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=160m") != 0) {
        printf("skipped: cannot mount tmpfs here: %s\n", strerror(errno));
        return SKIP;
    }
    snprintf(db, sizeof(db), "%s/a", mnt);
    fprintf(stderr, "-- test_reserve\n");
    test_reserve(db);
    check__passed++;
    snprintf(db, sizeof(db), "%s/b", mnt);
    fprintf(stderr, "-- test_raw_full\n");
    test_raw_full(db);
    check__passed++;
    return check_done();
}
