/* pack.h - the store's pack files: where chunk bytes live. Internal to store/.
 *
 * Chunk bytes are appended to pack files (`<store dir>/packs/NNNNNNNNNN.pack`, at most
 * PACK_MAX bytes each); RocksDB keeps only the index (hash -> pack, offset, length).
 * Each append is one region starting on a PACK_ALIGN boundary, so a piece's new
 * chunks go to the disk in one sequential write, with direct I/O when asked. Packs
 * are append-only: a region is written once and never reused; removing chunks punches
 * holes, and the file system frees their blocks (all but the block a region's last
 * chunk shares with its padding); the store deletes a pack once nothing in it is used
 * (packs_remove).
 *
 * Durability: an append returns once its bytes are in the kernel (they survive the
 * process being killed). packs_sync() makes every settled region durable and returns
 * the watermark: every region wholly below it is on the disk.
 * The store keeps that watermark; after a power loss it re-verifies the chunks that
 * lie at or above it (docs/storage.md).
 *
 * Threads: every function may be called from several threads at once, except
 * packs_open and packs_close.
 */
#ifndef SHOAL_PACK_H
#define SHOAL_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define PACK_MAX   (1ull << 30) /* a pack is closed to appends past 1 GiB */
#define PACK_ALIGN 4096u        /* regions start and end on this boundary */

struct packs;

/* Where a chunk's bytes are. */
struct pack_loc {
    uint32_t pack;
    uint32_t len;
    uint64_t off;
};

/* A point in the append order: pack, then offset. */
struct pack_mark {
    uint32_t pack;
    uint64_t off;
};

/* Opens the pack directory `dir` (created if missing). `direct`: write with O_DIRECT
 * (refused with -EINVAL where the file system cannot). `max`: bytes after which a
 * pack takes no more appends (0: PACK_MAX; tests use small ones). Appends go to a new
 * pack. On failure `why` says what is wrong. */
int packs_open(const char *dir, bool direct, uint64_t max, struct packs **out, char *why,
               size_t why_len);
void packs_close(struct packs *p);

/* An append from its start until the caller settles it (after writing the index that
 * names its bytes, or deciding not to): its pack is not removed meanwhile, and the
 * sync watermark stays below it. The caller owns the storage. */
struct pack_append {
    struct pack_mark at;
    struct pack_append *next;
};

/* Writes the n ranges one after the other into one new region; locs[i] gets where
 * range i went. A region that would pass the pack's maximum starts the next pack.
 * On success the caller must packs_settle(a). Errors: -ENOSPC, -EIO and other write
 * errors (the region is released, nothing to settle), -EINVAL (nothing to write, or
 * more than a pack holds), -ENOMEM. */
int packs_append(struct packs *p, const struct iovec *iov, size_t n, struct pack_loc *locs,
                 struct pack_append *a);
void packs_settle(struct packs *p, struct pack_append *a);

/* Deletes pack `id`, once nothing it holds is used any more (the caller's accounting
 * says so). Refused with -EBUSY while appends go to it or an append in it is not
 * settled. A pack already gone is not an error. */
int packs_remove(struct packs *p, uint32_t id);

/* Reads exactly loc->len bytes into buf. Errors: -ENOENT (no such pack), SHOAL_EHASH
 * (the pack is shorter than the index says: damaged), read errors. */
int packs_read(struct packs *p, const struct pack_loc *loc, uint8_t *buf);

/* The same for bulk reads: with direct writes, read with direct I/O too, into buf
 * (aligned to PACK_ALIGN, cap >= PACK_READ_CAP(loc->len)) with no page-cache copy;
 * otherwise through the page cache. *data gets where loc's bytes start in buf. */
#define PACK_READ_CAP(len) ((size_t)(len) + 2 * PACK_ALIGN)
int packs_read_bulk(struct packs *p, const struct pack_loc *loc, uint8_t *buf, size_t cap,
                    const uint8_t **data);

/* Frees the blocks of a removed chunk's range (best effort: a file system without hole
 * punching keeps them: -EOPNOTSUPP, for the caller to report). */
int packs_punch(struct packs *p, const struct pack_loc *loc);

/* Makes every region that finished before this call durable; *mark gets the
 * watermark (regions wholly below it are on the disk). */
int packs_sync(struct packs *p, struct pack_mark *mark);

/* Whether appends use direct I/O: as opened, unless a device refused it later (then
 * they went on buffered). */
bool packs_direct(struct packs *p);

/* Bytes appended since the last packs_sync. */
uint64_t packs_unsynced(struct packs *p);

/* Whether loc lies at or above mark (not known to be durable). */
bool pack_above(const struct pack_loc *loc, const struct pack_mark *mark);

#endif
