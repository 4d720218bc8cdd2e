/* pack.c - pack files: chunk bytes appended in aligned regions (pack.h).
 *
 * DESIGN. One mutex guards the bookkeeping: the append cursor (pack, offset), the
 * regions being written, and a small table of open pack files. No I/O happens under
 * it except opening a file. An append reserves its region under the lock, writes it
 * without the lock, then marks its pack dirty. The table's entries are counted while
 * in use and dirty until synced, and neither kind is closed to make room.
 *
 * Direct writes copy the chunks into an aligned staging buffer (a few MiB, kept in a
 * small pool) and write it with O_DIRECT: one memcpy instead of the page-cache copy,
 * and the writes reach the disk as they happen. Buffered writes go straight from the
 * caller's memory (pwritev) and start the write-back at once (sync_file_range), so
 * that packs_sync later finds little left to wait for.
 */
#include "pack.h"

#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PACK_FDS    64          /* pack files kept open */
#define STAGE_LEN   (8u << 20)  /* direct writes go out in blocks of this size */
#define STAGE_KEEP  4           /* staging buffers kept for reuse */
#define NAME_LEN    (10 + 5 + 1)

struct pack_file {
    uint32_t id;
    int fd;          /* read-write, buffered; -1: slot free */
    int dfd;         /* write-only, O_DIRECT (direct mode, once written); else -1 */
    int rdfd;        /* read-only, O_DIRECT (bulk reads of uncached bytes); else -1 */
    uint32_t users;
    uint64_t tick;   /* last use, for reuse of the slot */
    uint64_t gen;    /* appends finished */
    uint64_t synced; /* gen at the last sync that covered it */
};


struct packs {
    int dirfd;
    bool direct;
    uint64_t max;              /* PACK_MAX, or smaller in tests */
    pthread_mutex_t mu;
    struct pack_mark cur;      /* where the next region starts */
    bool dir_dirty;            /* a pack was created since the last sync */
    uint64_t unsynced;
    uint64_t tick;
    struct pack_append *open;  /* appends not yet settled (being written or indexed) */
    struct pack_file f[PACK_FDS];
    void *stage[STAGE_KEEP];
    int n_stage;
};

static void pack_name(char name[NAME_LEN], uint32_t id)
{
    snprintf(name, NAME_LEN, "%010u.pack", id);
}

static bool parse_name(const char *s, uint32_t *id)
{
    unsigned long v = 0;
    int i;

    for (i = 0; i < 10; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (strcmp(s + 10, ".pack") != 0 || v > UINT32_MAX - 1)
        return false;
    *id = (uint32_t)v;
    return true;
}

static uint64_t align_up(uint64_t n)
{
    return (n + PACK_ALIGN - 1) & ~(uint64_t)(PACK_ALIGN - 1);
}

/* Whether this file system takes O_DIRECT writes. */
static int probe_direct(int dirfd)
{
    static const char name[] = ".direct-probe";
    void *buf = NULL;
    int fd, r = 0;

    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (posix_memalign(&buf, PACK_ALIGN, PACK_ALIGN) != 0) {
        r = -ENOMEM;
    } else {
        memset(buf, 0, PACK_ALIGN);
        if (pwrite(fd, buf, PACK_ALIGN, 0) != (ssize_t)PACK_ALIGN)
            r = errno ? -errno : -EIO;
    }
    free(buf);
    close(fd);
    unlinkat(dirfd, name, 0);
    return r;
}

int packs_open(const char *dir, bool direct, uint64_t max, struct packs **out, char *why,
               size_t why_len)
{
    struct packs *p = calloc(1, sizeof(*p));
    struct dirent *de;
    DIR *d;
    uint32_t id, last = 0;
    bool any = false;
    int i, r;

    if (!p)
        return -ENOMEM;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        snprintf(why, why_len, "cannot create %s: %s", dir, strerror(-r));
        free(p);
        return r;
    }
    p->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p->dirfd < 0) {
        r = -errno;
        snprintf(why, why_len, "cannot open %s: %s", dir, strerror(-r));
        free(p);
        return r;
    }
    if (direct && (r = probe_direct(p->dirfd)) < 0) {
        snprintf(why, why_len, "direct I/O is not possible in %s (%s)", dir, strerror(-r));
        close(p->dirfd);
        free(p);
        return r;
    }
    d = fdopendir(dup(p->dirfd));
    if (!d) {
        r = -errno;
        snprintf(why, why_len, "cannot read %s: %s", dir, strerror(-r));
        close(p->dirfd);
        free(p);
        return r;
    }
    while ((de = readdir(d))) {
        if (parse_name(de->d_name, &id) && (!any || id > last)) {
            last = id;
            any = true;
        }
    }
    closedir(d);
    /* Appends never go to a pack written before: its tail may hold bytes of appends
     * that a crash cut short. */
    p->cur.pack = any ? last + 1 : 0;
    p->direct = direct;
    p->max = max && max < PACK_MAX ? max : PACK_MAX;
    pthread_mutex_init(&p->mu, NULL);
    for (i = 0; i < PACK_FDS; i++)
        p->f[i].fd = p->f[i].dfd = p->f[i].rdfd = -1;
    *out = p;
    return 0;
}

void packs_close(struct packs *p)
{
    int i;

    if (!p)
        return;
    for (i = 0; i < PACK_FDS; i++) {
        if (p->f[i].fd >= 0)
            close(p->f[i].fd);
        if (p->f[i].dfd >= 0)
            close(p->f[i].dfd);
        if (p->f[i].rdfd >= 0)
            close(p->f[i].rdfd);
    }
    for (i = 0; i < p->n_stage; i++)
        munmap(p->stage[i], STAGE_LEN);
    close(p->dirfd);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* --- open files -------------------------------------------------------------- */

/* What a caller of get_file also needs: the direct-I/O descriptor for appends, or for
 * bulk reads (opened only in direct mode; where it cannot be, rdfd stays -1). */
enum fd_want { WANT_PLAIN, WANT_DIRECT_WRITE, WANT_DIRECT_READ };

/* The table entry of pack `id`, opened if needed (created with `create`), counted as
 * in use until put_file(). Errors: -ENOENT (no such pack), -EMFILE (every entry busy),
 * open errors. */
static int get_file(struct packs *p, uint32_t id, bool create, enum fd_want want,
                    struct pack_file **out)
{
    struct pack_file *e = NULL, *spare = NULL;
    char name[NAME_LEN];
    int i, fd, r = 0;

    pthread_mutex_lock(&p->mu);
    for (i = 0; i < PACK_FDS; i++) {
        struct pack_file *c = &p->f[i];
        if (c->fd >= 0 && c->id == id) {
            e = c;
            break;
        }
        if (c->fd < 0) {
            if (!spare || spare->fd >= 0)
                spare = c;
        } else if (c->users == 0 && c->gen == c->synced &&
                   (!spare || (spare->fd >= 0 && c->tick < spare->tick))) {
            spare = c;
        }
    }
    if (!e) {
        if (!spare) {
            r = -EMFILE;
            goto out;
        }
        pack_name(name, id);
        fd = openat(p->dirfd, name, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
        if (fd < 0) {
            r = -errno;
            goto out;
        }
        if (spare->fd >= 0)
            close(spare->fd);
        if (spare->dfd >= 0)
            close(spare->dfd);
        if (spare->rdfd >= 0)
            close(spare->rdfd);
        *spare = (struct pack_file){.id = id, .fd = fd, .dfd = -1, .rdfd = -1};
        e = spare;
        if (create)
            p->dir_dirty = true;
    }
    if (want == WANT_DIRECT_WRITE && e->dfd < 0) {
        pack_name(name, id);
        e->dfd = openat(p->dirfd, name, O_WRONLY | O_DIRECT | O_CLOEXEC);
        if (e->dfd < 0) {
            r = -errno;
            goto out;
        }
    }
    if (want == WANT_DIRECT_READ && e->rdfd < 0 && p->direct) {
        pack_name(name, id);
        e->rdfd = openat(p->dirfd, name, O_RDONLY | O_DIRECT | O_CLOEXEC); /* -1: buffered */
    }
    e->users++;
    e->tick = ++p->tick;
    *out = e;
out:
    pthread_mutex_unlock(&p->mu);
    return r;
}

static void put_file(struct packs *p, struct pack_file *e, bool wrote)
{
    pthread_mutex_lock(&p->mu);
    e->users--;
    if (wrote)
        e->gen++;
    pthread_mutex_unlock(&p->mu);
}

/* --- appends ----------------------------------------------------------------- */

static void *stage_get(struct packs *p)
{
    void *b = NULL;

    pthread_mutex_lock(&p->mu);
    if (p->n_stage)
        b = p->stage[--p->n_stage];
    pthread_mutex_unlock(&p->mu);
    if (!b) {
        b = mmap(NULL, STAGE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED)
            b = NULL;
    }
    return b;
}

static void stage_put(struct packs *p, void *b)
{
    pthread_mutex_lock(&p->mu);
    if (p->n_stage < STAGE_KEEP) {
        p->stage[p->n_stage++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (b)
        munmap(b, STAGE_LEN);
}

static int pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len) {
        ssize_t w = pwrite(fd, buf, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        buf += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Direct: through the staging buffer, in aligned blocks, the last one zero-padded. */
static int write_direct(struct packs *p, int fd, const struct iovec *iov, size_t n, uint64_t off)
{
    uint8_t *stage = stage_get(p);
    size_t i, used = 0, from = 0;
    int r = 0;

    if (!stage)
        return -ENOMEM;
    for (i = 0; i < n && r == 0;) {
        size_t take = iov[i].iov_len - from;
        if (take > STAGE_LEN - used)
            take = STAGE_LEN - used;
        memcpy(stage + used, (const uint8_t *)iov[i].iov_base + from, take);
        used += take;
        from += take;
        if (from == iov[i].iov_len) {
            i++;
            from = 0;
        }
        if (used == STAGE_LEN || i == n) {
            size_t len = (size_t)align_up(used);
            memset(stage + used, 0, len - used);
            r = pwrite_all(fd, stage, len, off);
            off += len;
            used = 0;
        }
    }
    stage_put(p, stage);
    return r;
}

/* Buffered: straight from the caller's memory, IOV_MAX ranges per call. */
static int write_buffered(int fd, const struct iovec *iov, size_t n, uint64_t off)
{
    struct iovec v[IOV_MAX];
    size_t i = 0, from = 0;

    while (i < n) {
        int k = 0;
        size_t j = i, f = from;
        ssize_t w;

        for (; j < n && k < IOV_MAX; j++, k++) {
            v[k].iov_base = (uint8_t *)iov[j].iov_base + f;
            v[k].iov_len = iov[j].iov_len - f;
            f = 0;
        }
        w = pwritev(fd, v, k, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        off += (uint64_t)w;
        while (w > 0) { /* step over what was written */
            size_t left = iov[i].iov_len - from;
            if ((size_t)w >= left) {
                w -= (ssize_t)left;
                i++;
                from = 0;
            } else {
                from += (size_t)w;
                w = 0;
            }
        }
    }
    return 0;
}

static void unlink_append(struct packs *p, struct pack_append *g)
{
    struct pack_append **pp;

    for (pp = &p->open; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
}

void packs_settle(struct packs *p, struct pack_append *g)
{
    pthread_mutex_lock(&p->mu);
    unlink_append(p, g);
    pthread_mutex_unlock(&p->mu);
}

int packs_append(struct packs *p, const struct iovec *iov, size_t n, struct pack_loc *locs,
                 struct pack_append *a)
{
    struct pack_file *e;
    struct pack_append *const g = a;
    uint64_t total = 0, span, off;
    bool direct;
    size_t i;
    int r;

    for (i = 0; i < n; i++)
        total += iov[i].iov_len;
    for (i = 0; i < n; i++) {
        if (iov[i].iov_len > UINT32_MAX)
            return -EINVAL;
    }
    if (total == 0 || total > p->max)
        return -EINVAL;
    span = align_up(total);

    pthread_mutex_lock(&p->mu);
    if (p->cur.off > 0 && p->cur.off + span > p->max) {
        p->cur.pack++;
        p->cur.off = 0;
    }
    g->at = p->cur;
    p->cur.off += span;
    g->next = p->open;
    p->open = g;
    pthread_mutex_unlock(&p->mu);

    pthread_mutex_lock(&p->mu);
    direct = p->direct;
    pthread_mutex_unlock(&p->mu);
    r = get_file(p, g->at.pack, true, direct ? WANT_DIRECT_WRITE : WANT_PLAIN, &e);
    if (r == 0) {
        if (direct)
            r = write_direct(p, e->dfd, iov, n, g->at.off);
        if (r == -EINVAL && direct) {
            /* The probe at open passed, yet this device refuses the alignment: go on
             * with buffered writes (packs_direct() tells the store). */
            pthread_mutex_lock(&p->mu);
            p->direct = false;
            pthread_mutex_unlock(&p->mu);
            direct = false;
            r = 0;
        }
        if (!direct) {
            r = write_buffered(e->fd, iov, n, g->at.off);
            /* Start the write-back now, so that a later sync has little to wait for. */
            if (r == 0)
                sync_file_range(e->fd, (off_t)g->at.off, (off_t)total, SYNC_FILE_RANGE_WRITE);
        }
        if (r < 0) /* a partly written region gives its blocks back */
            fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)g->at.off,
                      (off_t)span);
        put_file(p, e, r == 0);
    }

    pthread_mutex_lock(&p->mu);
    if (r == 0)
        p->unsynced += span;
    else
        unlink_append(p, g); /* failed: nothing to settle */
    pthread_mutex_unlock(&p->mu);
    if (r < 0)
        return r;
    off = g->at.off;
    for (i = 0; i < n; i++) {
        locs[i] = (struct pack_loc){.pack = g->at.pack, .len = (uint32_t)iov[i].iov_len, .off = off};
        off += iov[i].iov_len;
    }
    return 0;
}

/* --- reads, holes, sync --------------------------------------------------------- */

/* Reads from fd at off until len bytes or the end of the file; *done gets how many. */
static int pread_upto(int fd, uint8_t *buf, size_t len, uint64_t off, size_t *done)
{
    *done = 0;
    while (*done < len) {
        ssize_t got = pread(fd, buf + *done, len - *done, (off_t)(off + *done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            break;
        *done += (size_t)got;
    }
    return 0;
}

int packs_read(struct packs *p, const struct pack_loc *loc, uint8_t *buf)
{
    struct pack_file *e;
    size_t done;
    int r;

    r = get_file(p, loc->pack, false, WANT_PLAIN, &e);
    if (r < 0)
        return r;
    r = pread_upto(e->fd, buf, loc->len, loc->off, &done);
    if (r == 0 && done < loc->len)
        r = SHOAL_EHASH; /* the pack ends early: damaged or cut short */
    put_file(p, e, false);
    return r;
}

int packs_read_bulk(struct packs *p, const struct pack_loc *loc, uint8_t *buf, size_t cap,
                    const uint8_t **data)
{
    struct pack_file *e;
    uint64_t a0 = loc->off & ~(uint64_t)(PACK_ALIGN - 1), a1 = align_up(loc->off + loc->len);
    size_t done;
    int r;

    if (cap < PACK_READ_CAP(loc->len) || ((uintptr_t)buf & (PACK_ALIGN - 1)))
        return -EINVAL;
    /* Direct writes leave the page cache without these bytes, so reading them through
     * it would cost a copy for nothing. (Asking the cache first does not work:
     * RWF_NOWAIT starts a read-ahead on a miss, and the disk is read twice.) */
    r = get_file(p, loc->pack, false, WANT_DIRECT_READ, &e);
    if (r < 0)
        return r;
    r = -EINVAL;
    if (e->rdfd >= 0) {
        /* The aligned blocks around it, straight into buf. The pack may end before a1
         * (buffered appends are not padded): a short read at the end is fine. */
        r = pread_upto(e->rdfd, buf, (size_t)(a1 - a0), a0, &done);
        *data = buf + (loc->off - a0);
        if (r == 0 && done < loc->off + loc->len - a0)
            r = SHOAL_EHASH; /* the pack ends early */
    }
    if (r == -EINVAL) { /* buffered packs, or a device that wants another alignment */
        r = pread_upto(e->fd, buf, loc->len, loc->off, &done);
        *data = buf;
        if (r == 0 && done < loc->len)
            r = SHOAL_EHASH;
    }
    put_file(p, e, false);
    return r;
}

int packs_punch(struct packs *p, const struct pack_loc *loc)
{
    struct pack_file *e;
    int r;

    r = get_file(p, loc->pack, false, WANT_PLAIN, &e);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    if (fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)loc->off,
                  (off_t)loc->len) < 0)
        r = -errno;
    put_file(p, e, false);
    return r;
}

int packs_sync(struct packs *p, struct pack_mark *mark)
{
    struct pack_file *dirty[PACK_FDS];
    uint64_t gens[PACK_FDS];
    struct pack_append *g;
    bool dir;
    int i, n = 0, r = 0;

    pthread_mutex_lock(&p->mu);
    *mark = p->cur;
    for (g = p->open; g; g = g->next) {
        if (g->at.pack < mark->pack || (g->at.pack == mark->pack && g->at.off < mark->off))
            *mark = g->at;
    }
    for (i = 0; i < PACK_FDS; i++) {
        struct pack_file *e = &p->f[i];
        if (e->fd >= 0 && e->gen != e->synced) {
            e->users++;
            gens[n] = e->gen;
            dirty[n++] = e;
        }
    }
    dir = p->dir_dirty;
    p->dir_dirty = false;
    p->unsynced = 0;
    pthread_mutex_unlock(&p->mu);

    for (i = 0; i < n; i++) {
        if (fdatasync(dirty[i]->fd) < 0 && r == 0)
            r = -errno;
    }
    if (dir && fsync(p->dirfd) < 0 && r == 0)
        r = -errno;

    pthread_mutex_lock(&p->mu);
    for (i = 0; i < n; i++) {
        if (r == 0 && dirty[i]->synced < gens[i])
            dirty[i]->synced = gens[i];
        dirty[i]->users--;
    }
    if (r < 0)
        p->dir_dirty |= dir;
    pthread_mutex_unlock(&p->mu);
    return r;
}

int packs_remove(struct packs *p, uint32_t id)
{
    char name[NAME_LEN];
    int r = 0;

    pthread_mutex_lock(&p->mu);
    if (id >= p->cur.pack)
        r = -EBUSY; /* appends go there (or will) */
    for (struct pack_append *g = p->open; g && r == 0; g = g->next) {
        if (g->at.pack == id)
            r = -EBUSY; /* an append there is still being written or indexed */
    }
    /* An open descriptor (in the table, or a reader's) keeps the inode until it is
     * closed; its blocks were punched already. Ids are never reused, so the entry
     * serves nobody else meanwhile. */
    if (r == 0) {
        pack_name(name, id);
        if (unlinkat(p->dirfd, name, 0) < 0 && errno != ENOENT)
            r = -errno;
        else
            p->dir_dirty = true;
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

bool packs_direct(struct packs *p)
{
    bool d;

    pthread_mutex_lock(&p->mu);
    d = p->direct;
    pthread_mutex_unlock(&p->mu);
    return d;
}

uint64_t packs_unsynced(struct packs *p)
{
    uint64_t n;

    pthread_mutex_lock(&p->mu);
    n = p->unsynced;
    pthread_mutex_unlock(&p->mu);
    return n;
}

bool pack_above(const struct pack_loc *loc, const struct pack_mark *mark)
{
    return loc->pack > mark->pack || (loc->pack == mark->pack && loc->off + loc->len > mark->off);
}
