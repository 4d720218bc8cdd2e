/* test_pack.c - pack files (store/pack.h): appends in aligned regions, reads, the
 * rollover to a new pack, holes, the sync watermark, damaged and missing packs. */
#include "pack.h"

#include "check.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct packs *open_packs(const char *dir, bool direct, uint64_t max)
{
    struct packs *p = NULL;
    char why[512];
    int r = packs_open(dir, direct, max, &p, why, sizeof(why));

    if (r < 0)
        check__fail(__FILE__, __LINE__, "packs_open: %s (%s)", why, shoal_strerror(r));
    return p;
}

/* packs_append, settled at once (nothing to index here). */
static int append(struct packs *p, const struct iovec *iov, size_t n, struct pack_loc *locs)
{
    struct pack_append a;
    int r = packs_append(p, iov, n, locs, &a);

    if (r == 0)
        packs_settle(p, &a);
    return r;
}

static char *pack_path(const char *dir, uint32_t id)
{
    char *path = check_malloc(strlen(dir) + 32);

    snprintf(path, strlen(dir) + 32, "%s/%010u.pack", dir, id);
    return path;
}

static uint64_t blocks_of(const char *dir, uint32_t id)
{
    char *path = pack_path(dir, id);
    struct stat st;

    CHECK_EQ(stat(path, &st), 0);
    free(path);
    return (uint64_t)st.st_blocks * 512;
}

/* Three ranges in one append land one after the other, the region starting aligned;
 * they read back, singly and in bulk. */
static void check_roundtrip(bool direct)
{
    char *d = check_tmpdir("pack");
    struct packs *p = open_packs(d, direct, 0);
    size_t lens[3] = {70000, 8192, 131072};
    uint8_t *src[3], *buf = check_malloc(131072);
    struct iovec iov[3];
    struct pack_loc loc[3], again;
    const uint8_t *data;
    uint8_t *abuf;
    int i;

    for (i = 0; i < 3; i++) {
        src[i] = check_malloc(lens[i]);
        check_fill_splitmix(src[i], lens[i], (uint64_t)i + 1);
        iov[i] = (struct iovec){.iov_base = src[i], .iov_len = lens[i]};
    }
    CHECK_EQ(append(p, iov, 3, loc), 0);
    CHECK_EQ(loc[0].off % PACK_ALIGN, 0);
    CHECK_EQ(loc[1].off, loc[0].off + lens[0]);
    CHECK_EQ(loc[2].off, loc[1].off + lens[1]);
    for (i = 0; i < 3; i++) {
        CHECK_EQ(loc[i].pack, loc[0].pack);
        CHECK_EQ(loc[i].len, lens[i]);
        CHECK_EQ(packs_read(p, &loc[i], buf), 0);
        CHECK_MEM(buf, src[i], lens[i]);
    }
    /* The next append starts on the next boundary after the padded region. */
    CHECK_EQ(append(p, iov, 1, &again), 0);
    CHECK_EQ(again.off % PACK_ALIGN, 0);
    CHECK(again.off >= loc[2].off + lens[2]);
    /* Bulk: the middle range, whose start is not aligned, through an aligned buffer. */
    CHECK_EQ(posix_memalign((void **)&abuf, PACK_ALIGN, PACK_READ_CAP(lens[1])), 0);
    CHECK_EQ(packs_read_bulk(p, &loc[1], abuf, PACK_READ_CAP(lens[1]), &data), 0);
    CHECK_MEM(data, src[1], lens[1]);
    CHECK_EQ(packs_read_bulk(p, &loc[1], abuf, lens[1], &data), -EINVAL); /* too small */
    CHECK_EQ(packs_read_bulk(p, &loc[1], abuf + 1, PACK_READ_CAP(lens[1]) - 1, &data),
             -EINVAL); /* not aligned */
    /* Nothing, or more than a pack holds, is refused. */
    CHECK_EQ(append(p, iov, 0, loc), -EINVAL);
    packs_close(p);

    /* After a reopen, appends go to a new pack and the old one still reads. */
    p = open_packs(d, direct, 0);
    CHECK_EQ(append(p, iov, 1, &again), 0);
    CHECK_EQ(again.pack, loc[0].pack + 1);
    CHECK_EQ(again.off, 0);
    CHECK_EQ(packs_read(p, &loc[2], buf), 0);
    CHECK_MEM(buf, src[2], lens[2]);
    packs_close(p);
    for (i = 0; i < 3; i++)
        free(src[i]);
    free(abuf);
    free(buf);
    check_rmtree(d);
    free(d);
}

static void test_roundtrip_buffered(void)
{
    check_roundtrip(false);
}

/* Direct writes where the file system takes them; where it does not, packs_open says so
 * with -EINVAL (and the store falls back to buffered writes). */
static void test_roundtrip_direct(void)
{
    char *d = check_tmpdir("pack"), why[512];
    struct packs *p = NULL;
    int r = packs_open(d, true, 0, &p, why, sizeof(why));

    if (r < 0) {
        CHECK_EQ(r, -EINVAL);
        CHECK(strstr(why, "direct I/O is not possible") != NULL);
        printf("   %s: skipped\n", why);
    } else {
        packs_close(p);
        check_roundtrip(true);
    }
    check_rmtree(d);
    free(d);
}

/* A region that would pass the maximum starts the next pack; one larger than a whole
 * pack is refused. */
static void test_rollover(void)
{
    char *d = check_tmpdir("pack");
    struct packs *p = open_packs(d, false, 64 * 1024);
    uint8_t *a = check_malloc(40000), *buf = check_malloc(100000);
    struct iovec iov = {.iov_base = a, .iov_len = 40000};
    struct pack_loc l1, l2, l3;

    check_fill_splitmix(a, 40000, 7);
    CHECK_EQ(append(p, &iov, 1, &l1), 0);
    CHECK_EQ(append(p, &iov, 1, &l2), 0);
    CHECK_EQ(l2.pack, l1.pack + 1); /* 40 KiB + 40 KiB > 64 KiB */
    CHECK_EQ(l2.off, 0);
    CHECK_EQ(packs_read(p, &l1, buf), 0);
    CHECK_MEM(buf, a, 40000);
    CHECK_EQ(packs_read(p, &l2, buf), 0);
    CHECK_MEM(buf, a, 40000);
    iov.iov_len = 100000;
    CHECK_EQ(append(p, &iov, 1, &l3), -EINVAL);
    packs_close(p);
    free(a);
    free(buf);
    check_rmtree(d);
    free(d);
}

/* Punching a chunk's range frees its blocks; the bytes around it stay. */
static void test_punch(void)
{
    char *d = check_tmpdir("pack");
    struct packs *p = open_packs(d, false, 0);
    size_t n = 1 << 20;
    uint8_t *a = check_malloc(3 * n), *buf = check_malloc(n);
    struct iovec iov[3];
    struct pack_loc loc[3], mid;
    struct pack_mark m;
    uint64_t before, after;
    int i;

    check_fill_splitmix(a, 3 * n, 9);
    for (i = 0; i < 3; i++)
        iov[i] = (struct iovec){.iov_base = a + (size_t)i * n, .iov_len = n - 1000};
    CHECK_EQ(append(p, iov, 3, loc), 0);
    CHECK_EQ(packs_sync(p, &m), 0); /* allocated on the disk, not just delayed */
    before = blocks_of(d, loc[0].pack);
    mid = loc[1];
    CHECK_EQ(packs_punch(p, &mid), 0);
    after = blocks_of(d, loc[0].pack);
    CHECK(before - after >= mid.len - 2 * PACK_ALIGN);
    CHECK_EQ(packs_read(p, &loc[0], buf), 0);
    CHECK_MEM(buf, a, loc[0].len);
    CHECK_EQ(packs_read(p, &loc[2], buf), 0);
    CHECK_MEM(buf, a + 2 * n, loc[2].len);
    packs_close(p);
    free(a);
    free(buf);
    check_rmtree(d);
    free(d);
}

/* The watermark covers what was appended before the sync, and only that. */
static void test_sync_watermark(void)
{
    char *d = check_tmpdir("pack");
    struct packs *p = open_packs(d, false, 0);
    uint8_t a[5000];
    struct iovec iov = {.iov_base = a, .iov_len = sizeof(a)};
    struct pack_loc l1, l2;
    struct pack_mark m;

    memset(a, 3, sizeof(a));
    CHECK_EQ(packs_unsynced(p), 0);
    CHECK_EQ(append(p, &iov, 1, &l1), 0);
    CHECK_EQ(packs_unsynced(p), 8192); /* the padded region */
    CHECK(pack_above(&l1, &(struct pack_mark){.pack = l1.pack, .off = 0}));
    CHECK_EQ(packs_sync(p, &m), 0);
    CHECK_EQ(packs_unsynced(p), 0);
    CHECK(!pack_above(&l1, &m));
    CHECK_EQ(append(p, &iov, 1, &l2), 0);
    CHECK(pack_above(&l2, &m));
    {
        /* An append not yet settled (its index not written) keeps the mark below it. */
        struct pack_append open;
        struct pack_loc l3;
        CHECK_EQ(packs_append(p, &iov, 1, &l3, &open), 0);
        CHECK_EQ(packs_sync(p, &m), 0);
        CHECK(!pack_above(&l2, &m));
        CHECK(pack_above(&l3, &m));
        packs_settle(p, &open);
        CHECK_EQ(packs_sync(p, &m), 0);
        CHECK(!pack_above(&l3, &m));
    }
    packs_close(p);
    check_rmtree(d);
    free(d);
}

/* A pack cut short reads as damaged; a pack that is gone as missing. */
static void test_damaged_and_missing(void)
{
    char *d = check_tmpdir("pack");
    struct packs *p = open_packs(d, false, 0);
    uint8_t a[20000], buf[20000];
    struct iovec iov = {.iov_base = a, .iov_len = sizeof(a)};
    struct pack_loc l, gone;
    char *path;

    memset(a, 5, sizeof(a));
    CHECK_EQ(append(p, &iov, 1, &l), 0);
    packs_close(p);
    path = pack_path(d, l.pack);
    CHECK_EQ(truncate(path, (off_t)l.off + 100), 0);
    free(path);
    p = open_packs(d, false, 0);
    CHECK_EQ(packs_read(p, &l, buf), SHOAL_EHASH);
    gone = l;
    gone.pack = l.pack + 100;
    CHECK_EQ(packs_read(p, &gone, buf), -ENOENT);
    CHECK_EQ(packs_punch(p, &gone), 0); /* nothing to free */
    packs_close(p);
    check_rmtree(d);
    free(d);
}

/* A pack goes once nothing is appended to it: not the one appends go to, not one with
 * an append still open. */
static void test_remove(void)
{
    char *d = check_tmpdir("pack");
    struct packs *p = open_packs(d, false, 64 * 1024);
    uint8_t a[40000], buf[40000];
    struct iovec iov = {.iov_base = a, .iov_len = sizeof(a)};
    struct pack_append open;
    struct pack_loc l1, l2;
    char *path;

    memset(a, 1, sizeof(a));
    CHECK_EQ(append(p, &iov, 1, &l1), 0);
    CHECK_EQ(packs_remove(p, l1.pack), -EBUSY); /* appends still go there */
    CHECK_EQ(packs_append(p, &iov, 1, &l2, &open), 0);
    CHECK_EQ(l2.pack, l1.pack + 1);
    CHECK_EQ(packs_remove(p, l2.pack), -EBUSY);
    path = pack_path(d, l1.pack);
    CHECK_EQ(packs_remove(p, l1.pack), 0);
    CHECK(access(path, F_OK) != 0);
    CHECK_EQ(packs_remove(p, l1.pack), 0); /* already gone */
    free(path);
    packs_settle(p, &open);
    CHECK_EQ(packs_read(p, &l2, buf), 0);
    packs_close(p);
    check_rmtree(d);
    free(d);
}

int main(void)
{
    RUN(test_roundtrip_buffered);
    RUN(test_roundtrip_direct);
    RUN(test_rollover);
    RUN(test_punch);
    RUN(test_sync_watermark);
    RUN(test_damaged_and_missing);
    RUN(test_remove);
    return check_done();
}
