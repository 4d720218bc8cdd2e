/* store_int.h - what store.c and check.c share; not part of the store's contract.
 *
 * Key layout and record formats: docs/storage.md.
 */
#ifndef SHOAL_STORE_INT_H
#define SHOAL_STORE_INT_H

#include "store.h"

#include "pack.h"

#include <pthread.h>
#include <stdbool.h>
#include <rocksdb/c.h>

#define KEY_META  'M'
#define KEY_PIECE 'P'
#define KEY_STATS 'S'
#define KEY_PACK  'K'
#define PACK_KEY_LEN (1 + 4)

#define FILE_REC_VERSION 1
#define FILE_REC_LEN     (1 + 1 + 8 + 8)
#define FILE_COMPLETE    1
#define META_LEN         (4 + 4 + 4 + 8) /* len, refs, pack, offset */

/* A chunk's index record: where its bytes are and how many piece records use it. */
struct store_meta {
    struct pack_loc loc;
    uint32_t refs; /* 0: not stored */
};

enum { CF_DEFAULT, CF_CHUNKS, CF_FILES, CF_MANIFESTS, CF_SNAPSHOTS, CF_REFS, CF_PINS, CF_COUNT };

struct store_holdrec {
    uint8_t id[STORE_ID_LEN];
    uint32_t count;
};

struct store {
    rocksdb_t *db;
    struct packs *packs;               /* the chunk bytes */
    rocksdb_options_t *opts[CF_COUNT];
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_writeoptions_t *wo_sync;   /* WAL, synced */
    rocksdb_writeoptions_t *wo_wal;    /* WAL, not synced: index records, access times */
    rocksdb_readoptions_t *ro;
    rocksdb_flushoptions_t *fo;
    pthread_mutex_t mu;                /* 'M' and 'S' read-modify-writes */
    struct store_stats st;             /* chunks, physical, logical: mirror of 'S' */
    uint64_t quota, min_free;
    char *dir;
    pthread_mutex_t hold_mu;           /* holds */
    struct store_holdrec *holds;
    size_t n_holds, cap_holds;
    store_log_cb log;
    void *log_arg;
    bool punch_warned;                 /* the file system cannot punch holes: said once */
    bool direct;                       /* pack writes use direct I/O (as last seen) */
};

#define PIECE_KEY_LEN (1 + STORE_ID_LEN + 4)

void store__log(struct store *s, enum store_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The one place RocksDB's errors become ours: logs and frees its message. */
int store__err(struct store *s, char *errptr, const char *what);

void store__put_u32le(uint8_t *p, uint32_t v);
uint32_t store__get_u32le(const uint8_t *p);
void store__put_u64le(uint8_t *p, uint64_t v);
uint64_t store__get_u64le(const uint8_t *p);
void store__chunk_key(uint8_t key[1 + CHASH_LEN], char kind, const uint8_t hash[CHASH_LEN]);
/* Decodes an 'M' value; false if it is not one. */
bool store__meta_decode(struct store_meta *m, const char *v, size_t vlen);
void store__piece_key(uint8_t key[PIECE_KEY_LEN], const uint8_t file[STORE_ID_LEN],
                      uint32_t index);
uint32_t store__piece_key_index(const uint8_t *key);

/* One value (rocksdb_free it), -ENOENT, or an error. */
int store__get(struct store *s, int cf, const void *key, size_t klen, char **val, size_t *vlen);
/* Writes a batch through the WAL, synced or not. */
int store__write(struct store *s, rocksdb_writebatch_t *b, bool sync);
void store__stats_put(struct store *s, rocksdb_writebatch_t *b);
int store__stats_load(struct store *s);
/* Batched 'M' lookups: m[i].refs 0 when absent. */
int store__meta_get(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n,
                    struct store_meta *m);
void store__meta_put(struct store *s, rocksdb_writebatch_t *b, const uint8_t hash[CHASH_LEN],
                     const struct store_meta *m);
/* Live bytes per pack ('K' records): adds the deltas (sorted here) in b; packs whose
 * count reaches 0 go to emptied (room for n) when it is not NULL. s->mu held. */
struct pack_delta {
    uint32_t pack;
    int64_t bytes;
};
void store__pack_key(uint8_t key[PACK_KEY_LEN], uint32_t pack);
int store__pack_live(struct store *s, rocksdb_writebatch_t *b, struct pack_delta *d, size_t n,
                     uint32_t *emptied, size_t *n_emptied);
/* Deletes packs nothing uses any more (packs_remove); call after the batch that emptied
 * them is written synced. A pack still being appended to stays. */
void store__drop_packs(struct store *s, const uint32_t *ids, size_t n);
/* Frees the pack space of removed chunks; call once their removal is written synced.
 * Sorts locs. */
void store__punch(struct store *s, struct pack_loc *locs, size_t n);
/* Makes the pack bytes written so far durable and records the watermark in b (or in
 * its own unsynced write when b is NULL). */
int store__sync_packs(struct store *s, rocksdb_writebatch_t *b);
int store__file_get(struct store *s, const uint8_t file[STORE_ID_LEN], struct store_file *f);
void store__file_put(struct store *s, rocksdb_writebatch_t *b, const struct store_file *f);

/* Wall-clock time in nanoseconds since the epoch (access times). */
uint64_t store__now_ns(void);
/* Whether `bytes` more chunk data fit the quota and the disk reserve (0 or -ENOSPC). */
int store__space_ok(struct store *s, uint64_t bytes);
/* How many bytes the disk lacks for `bytes` more plus the reserve (0: none). */
uint64_t store__disk_short(struct store *s, uint64_t bytes);
bool store__held(struct store *s, const uint8_t file[STORE_ID_LEN]);

/* Walks a whole (small) column family in key order; a non-zero return from cb stops
 * the walk and is returned. */
typedef int (*store__kv_cb)(void *arg, const char *key, size_t klen, const char *val,
                            size_t vlen);
int store__cf_walk(struct store *s, int cf, store__kv_cb cb, void *arg);

/* Reads n chunks (any n) and hands each to cb in order: data NULL, len 0 for a chunk
 * the store lacks. Adjacent chunks are read with one call. Returns cb's first non-zero
 * result, or a read error. */
int store__read_chunks(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n,
                       store_chunk_cb cb, void *arg);
/* Re-verifies, after a power loss, the chunks at or above the pack watermark and
 * repairs what they broke (check.c). */
int store__recover(struct store *s, const struct pack_mark *since, struct store_fsck *out);

/* Walks the piece records of one file (file != NULL) or of all files, in key order;
 * val is NULL unless `values`. A non-zero return from cb stops the walk. */
typedef int (*store__piece_walk_cb)(void *arg, const uint8_t *file, uint32_t index,
                                    const char *val, size_t vlen);
int store__piece_walk(struct store *s, const uint8_t *file, bool values, store__piece_walk_cb cb,
                      void *arg);

#endif
