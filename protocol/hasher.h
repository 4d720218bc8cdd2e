/* hasher.h - a file's content ids: pieces, chunks, piece hashes and sha256.
 *
 * Two ways in:
 *   hasher_piece_compute()  one whole piece already in memory, one call. Pieces are
 *                           independent, so callers spread them over threads.
 *   struct hasher           a byte stream fed in any split (a network stream, stdin);
 *                           calls back once per finished piece, and gives the sha256
 *                           and size at the end. Memory is constant: it never holds
 *                           file bytes, only the chunk list of the piece in progress.
 * Both give identical results for the same bytes (test_hasher checks it).
 *
 * Threads: objects belong to one thread at a time; no global state.
 * Errors: 0 or a negative code from err.h.
 */
#ifndef SHOAL_HASHER_H
#define SHOAL_HASHER_H

#include "b3.h"
#include "chash.h"
#include "chunker.h"
#include "proto_limits.h"
#include "sha256.h"

#include <stddef.h>
#include <stdint.h>

/* One piece's ids. About 160 KiB: allocate on the heap. */
struct hasher_piece {
    uint64_t index;  /* piece number in the file */
    uint64_t offset; /* = index * PROTO_PIECE_LEN */
    uint32_t len;
    uint32_t n_chunks;
    uint8_t hash[CHASH_LEN];
    struct chash_leaf chunks[PROTO_CHUNKS_PER_PIECE];  /* .len = chunk length */
    struct chash_leaf scratch[PROTO_CHUNKS_PER_PIECE]; /* merkle work space */
};

/* Chunks and hashes data[0..len) as one piece (len <= PROTO_PIECE_LEN), filling
 * p->len, n_chunks, chunks and hash. index and offset are the caller's. */
void hasher_piece_compute(struct hasher_piece *p, const uint8_t *data, uint32_t len);

/* Called for each piece of a stream in order; p is valid only during the call. A
 * negative return stops the stream: hasher_update returns it. */
typedef int (*hasher_piece_cb)(void *arg, const struct hasher_piece *p);

struct hasher {
    struct chunker ck;
    struct b3_hasher chunk; /* keyed hash of the chunk in progress */
    struct sha256 sha;
    struct hasher_piece *piece;
    uint64_t size;          /* bytes fed so far */
    uint32_t chunk_len;     /* bytes of the chunk in progress */
    hasher_piece_cb cb;
    void *arg;
};

/* cb may be NULL when only the sha256 and size are wanted. Errors: -ENOMEM. */
int hasher_init(struct hasher *h, hasher_piece_cb cb, void *arg);
/* Errors: SHOAL_ELIMIT (more than PROTO_FILE_MAX bytes), or the callback's error. */
int hasher_update(struct hasher *h, const void *data, size_t len);
/* Flushes the last piece (through the callback), writes the sha256 and size, and
 * releases the hasher. Errors: the callback's error (the hasher is released anyway). */
int hasher_final(struct hasher *h, uint8_t sha256[static SHA256_LEN], uint64_t *size);
/* Releases a hasher that will not be finished. */
void hasher_release(struct hasher *h);

#endif
