/* store.h - the node's content store: chunks, pieces, files and snapshots in RocksDB.
 *
 * One RocksDB database under the node's data directory holds every byte a node has
 * (docs/storage.md has the schema). Chunks are stored once however many files or
 * versions share them, counted by the pieces that reference them, and removed when
 * the last such piece goes.
 *
 * Durability: chunks and piece records are written without the write-ahead log (a
 * chunk lost in a crash is simply fetched again); store_complete_file() flushes them
 * to disk before the synced write that marks the file complete. So after a crash
 * every complete file has all its chunks, and every piece record still present has
 * its chunks too: a pull resumes from what store_has_piece() reports.
 *
 * Threads: every function may block on disk I/O. Call them from worker threads (the
 *   node uses the libuv threadpool), never from an event loop. All functions may be
 *   called from several threads at once, except store_open and store_close.
 * Errors: 0 or a negative code: -ENOENT (no such record), -ENOSPC (quota or the disk's
 *   free reserve), SHOAL_ESTORE (RocksDB failed: logged with its message),
 *   SHOAL_EFORMAT (a stored record does not decode: logged), SHOAL_EVERSION,
 *   -EINVAL (arguments), -ENOMEM. Out-parameters are left untouched on failure.
 * Ownership: the store copies what it is given; what it returns is the caller's.
 */
#ifndef SHOAL_STORE_H
#define SHOAL_STORE_H

#include "chash.h"
#include "manifest.h"
#include "snapshot.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 2
#define STORE_ID_LEN         32  /* file ids are sha256 digests */
#define STORE_REPO_MAX       256 /* "type/org/name" */
#define STORE_REV_MAX        256 /* branch, tag or commit */
#define STORE_PATH_MAX       1024
#define STORE_ETAG_MAX       64  /* 40-hex git sha1 or 64-hex sha256 */

struct store;

enum store_log_level { STORE_LOG_ERROR, STORE_LOG_WARN, STORE_LOG_INFO };
typedef void (*store_log_cb)(void *arg, enum store_log_level level, const char *msg);

/* How chunk bytes are written to the pack files. Direct I/O skips the page-cache copy:
 * about 2 ns/byte less CPU for a node that receives, and writes at the disk's pace
 * (docs/benchmarks.md); what was just written is then read from the disk, not from
 * memory, when it is served again. AUTO: direct where the file system allows it
 * (tmpfs does not), buffered elsewhere. */
enum store_writes { STORE_WRITES_AUTO, STORE_WRITES_BUFFERED, STORE_WRITES_DIRECT };

struct store_opts {
    uint64_t quota;     /* bytes of chunk data to keep at most; 0: no quota */
    uint64_t min_free;  /* bytes to leave free on the data directory's file system */
    enum store_writes writes;
    store_log_cb log;   /* NULL: messages go to stderr */
    void *log_arg;
};

/* Opens (creating if needed) the store in directory `dir`. On failure `why` gets one
 * line for the user (what is wrong and what to do), e.g. for a store written by
 * another schema version. Errors: SHOAL_EVERSION, SHOAL_ESTORE, -ENOMEM. */
int store_open(const char *dir, const struct store_opts *o, struct store **out, char *why,
               size_t why_len);
/* Flushes and closes. No call may be running or start. */
void store_close(struct store *s);

/* --- chunks and pieces ------------------------------------------------------ */

struct store_chunk {
    uint8_t hash[CHASH_LEN];
    uint32_t len;
    const uint8_t *data;   /* borrowed for the call */
};

/* Stores piece `index` of file `file`: its chunks (verified by the caller against
 * their hashes and the piece hash) and the piece record. Chunks already present cost
 * no write; a piece already stored is a no-op. Errors: -ENOSPC, SHOAL_ESTORE, -EINVAL
 * (n == 0, n > PROTO_CHUNKS_PER_PIECE, a chunk over PROTO_CHUNK_MAX). */
int store_put_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index,
                    const uint8_t piece_hash[static CHASH_LEN], const struct store_chunk *chunks,
                    uint32_t n);

/* 1 if piece `index` of `file` is stored, 0 if not, or an error. */
int store_has_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index);

/* For each of n hashes, have[i] = whether the chunk is stored (one batched lookup,
 * reading no chunk bytes). */
int store_has_chunks(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n, bool *have);

/* Reads n chunks in one batched lookup and hands each to cb in the order asked, with
 * no copy: data (NULL and len 0 for a chunk the store lacks) is valid only during the
 * call. n <= PROTO_CHUNKS_PER_PIECE. A non-zero return from cb stops and is returned.
 * Errors: -EINVAL (n too large), SHOAL_ESTORE, -ENOMEM. */
typedef int (*store_chunk_cb)(void *arg, size_t i, const uint8_t *data, size_t len);
int store_get_chunks(struct store *s, const uint8_t (*hashes)[CHASH_LEN], size_t n,
                     store_chunk_cb cb, void *arg);

/* Copies chunk `hash` into buf (cap bytes) and sets *len.
 * Errors: -ENOENT, -ENOBUFS (cap too small; *len set to the size needed). */
int store_get_chunk(struct store *s, const uint8_t hash[static CHASH_LEN], uint8_t *buf,
                    size_t cap, uint32_t *len);

/* --- files ------------------------------------------------------------------ */

struct store_file {
    uint8_t id[STORE_ID_LEN];  /* sha256 of the content */
    uint64_t size;             /* 0 until complete */
    bool complete;
    uint32_t pieces;           /* pieces stored (all of them when complete) */
    uint64_t atime;            /* last use, ns since the epoch (for eviction) */
};

/* Marks `file` complete: all its pieces must be stored (size gives their number).
 * Builds and checks its manifest (piece hashes recomputed from the chunk lists),
 * flushes chunk data, then writes the manifest and file record in one synced batch.
 * The caller has verified the sha256 of the content. Idempotent.
 * Errors: -ENOENT (a piece is missing), SHOAL_EHASH, SHOAL_ESTORE. */
int store_complete_file(struct store *s, const uint8_t file[static STORE_ID_LEN], uint64_t size);

/* The manifest of a complete file; release it with manifest_release(). */
int store_get_manifest(struct store *s, const uint8_t file[static STORE_ID_LEN],
                       struct manifest *m);

/* Streams a complete file's bytes in order: cb gets each chunk (valid only during the
 * call; no copy is made). A non-zero return from cb stops and is returned. Chunks are
 * not re-hashed here: readers verify the sha256 of what they write.
 * Errors: -ENOENT (not complete, or a chunk is gone), SHOAL_ESTORE. */
typedef int (*store_read_cb)(void *arg, const uint8_t *data, size_t len);
int store_read_file(struct store *s, const uint8_t file[static STORE_ID_LEN], store_read_cb cb,
                    void *arg);

/* The record of stored piece `index` of `file` (complete or not): its hash, length and
 * chunk list (*chunks malloc'd, the caller frees it). Errors: -ENOENT, SHOAL_EFORMAT. */
int store_get_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index,
                    struct manifest_piece *p, struct chash_leaf **chunks);

/* Streams the bytes of stored piece `index` of `file` (complete or not) in order, one
 * chunk per call, without copies, as store_read_file does. Errors: -ENOENT (the piece
 * or one of its chunks is not stored), SHOAL_EFORMAT, SHOAL_ESTORE. */
int store_read_piece(struct store *s, const uint8_t file[static STORE_ID_LEN], uint32_t index,
                     store_read_cb cb, void *arg);

/* What the store holds of `file`: -ENOENT if no piece of it is stored. */
int store_file_info(struct store *s, const uint8_t file[static STORE_ID_LEN],
                    struct store_file *out);

/* Calls cb for every file with at least one piece stored, in id order, then for
 * every complete empty file; a non-zero return from cb stops the walk and is
 * returned. */
typedef int (*store_file_cb)(void *arg, const struct store_file *f);
int store_list_files(struct store *s, store_file_cb cb, void *arg);

/* Removes a file's pieces, manifest and record, and the chunks no other piece uses.
 * Errors: -ENOENT, SHOAL_ESTORE. */
int store_remove_file(struct store *s, const uint8_t file[static STORE_ID_LEN]);

/* --- snapshots, refs and pins ---------------------------------------------- */

/* Stores a (finished) snapshot, replacing one of the same repo@commit. Errors:
 * -EINVAL, SHOAL_ESTORE. */
int store_put_snapshot(struct store *s, const struct snapshot *snap);
/* Errors: -ENOENT, -EINVAL (bad names), SHOAL_EFORMAT. Release with snapshot_release. */
int store_get_snapshot(struct store *s, const char *repo, const char *commit,
                       struct snapshot *out);
/* Removes a snapshot, its pin and the refs that point at it; its files stay until
 * store_gc. Errors: -ENOENT. */
int store_remove_snapshot(struct store *s, const char *repo, const char *commit);
/* Calls cb for each snapshot (repo order); snap is valid only during the call. */
typedef int (*store_snapshot_cb)(void *arg, const struct snapshot *snap, bool pinned);
int store_list_snapshots(struct store *s, store_snapshot_cb cb, void *arg);

/* refs: what a branch or tag resolved to. Errors: -EINVAL, -ENOENT (get). */
int store_set_ref(struct store *s, const char *repo, const char *rev, const char *commit);
int store_get_ref(struct store *s, const char *repo, const char *rev,
                  char commit[static SNAPSHOT_COMMIT_LEN + 1]);

/* A pinned snapshot's files are never evicted. Errors: -ENOENT (no such snapshot). */
int store_pin(struct store *s, const char *repo, const char *commit, bool pinned);

/* --- eviction and garbage --------------------------------------------------- */

/* Readers and writers hold a file while they use it: a held file is never evicted
 * or collected. Holds are counted and live in memory only. Errors: -ENOMEM. */
int store_hold(struct store *s, const uint8_t file[static STORE_ID_LEN]);
void store_release(struct store *s, const uint8_t file[static STORE_ID_LEN]);
/* Marks a file used now (eviction goes least recently used first). */
int store_touch(struct store *s, const uint8_t file[static STORE_ID_LEN]);

/* Frees room for `need` more bytes of chunks under the quota (and the disk reserve) by
 * removing complete files that no pinned snapshot lists and nobody holds, least
 * recently used first. *freed gets the bytes freed. store_put_piece calls it itself
 * when a piece does not fit. Errors: -ENOSPC (not enough can go). */
int store_evict(struct store *s, uint64_t need, uint64_t *freed);

/* Removes every file that no stored snapshot lists and nobody holds (abandoned
 * partial files included). *removed gets the number of files removed. */
int store_gc(struct store *s, uint64_t *removed);

/* --- accounting and checks -------------------------------------------------- */

struct store_stats {
    uint64_t chunks;         /* distinct chunks stored */
    uint64_t physical_bytes; /* their bytes: what the disk holds (before RocksDB overhead) */
    uint64_t logical_bytes;  /* bytes of all stored pieces: what the files add up to */
    uint64_t files;          /* files with at least one piece */
    uint64_t complete_files;
};
int store_stats(struct store *s, struct store_stats *out);

struct store_fsck {
    uint64_t files_checked, chunks_checked;
    uint64_t missing_chunks;  /* referenced by a piece, not stored */
    uint64_t bad_chunks;      /* stored bytes that do not hash to their key */
    uint64_t bad_pieces;      /* piece hash does not match its chunk list */
    uint64_t bad_refcounts;   /* a chunk's count differs from the pieces using it */
    uint64_t orphan_chunks;   /* stored, used by no piece */
    uint64_t broken_files;    /* marked complete but missing a piece or a chunk */
    uint64_t bad_totals;      /* the stored totals (store_stats) differ from the records */
};
/* Checks everything: every piece's chunks are present and hash to their keys, piece
 * hashes match, reference counts and totals match, complete files have every piece.
 * *out reports what the check found. With `repair`, orphan and bad chunks are
 * removed, counts and totals rewritten, and pieces that lost a chunk dropped together
 * with their file's complete mark, so that they are fetched again. Writers wait while
 * it runs. Returns 0 when the store is consistent (after repair, if asked),
 * SHOAL_EHASH if not. */
int store_check(struct store *s, bool repair, struct store_fsck *out);

#endif
