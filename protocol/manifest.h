/* manifest.h - a file's manifest (pieces -> chunks) and its msgpack encoding.
 *
 * A manifest says how a file of `size` bytes with sha256 `sha256` is cut: pieces of
 * PROTO_PIECE_LEN bytes (the last shorter; an empty file has none), each with its
 * piece hash and its content-defined chunks (hash, length) in order. The chunks of
 * all pieces sit in one array; piece i owns chunks[first_chunk, first_chunk+n_chunks).
 *
 * Encoding (version 1, docs/formats.md): a msgpack array
 *   [1, size, sha256 (bin 32), [piece, ...]]
 *   piece = [len, piece hash (bin 32), chunk hashes (bin 32*n), [chunk len, ...]]
 * A single piece's chunk list travels on its own as
 *   [1, len, piece hash (bin 32), chunk hashes (bin 32*n), [chunk len, ...]]
 *
 * Threads: reentrant. Errors: 0 or a negative code from err.h; out-parameters are
 *   left untouched on failure.
 * Ownership: a decoded or built manifest owns its arrays; free them with
 *   manifest_release(). Decoders allocate at most in proportion to their input.
 */
#ifndef SHOAL_MANIFEST_H
#define SHOAL_MANIFEST_H

#include "chash.h"

#include <stddef.h>
#include <stdint.h>

#define MANIFEST_VERSION 1

struct manifest_piece {
    uint8_t hash[CHASH_LEN];
    uint32_t len;
    uint32_t n_chunks;
    uint64_t first_chunk;
};

struct manifest {
    uint64_t size;
    uint8_t sha256[32];
    uint32_t n_pieces;
    uint32_t n_filled;           /* pieces set so far (== n_pieces when complete) */
    uint64_t n_chunks;
    struct manifest_piece *pieces;
    struct chash_leaf *chunks;   /* .len of a chunk is its byte length */
};

/* An empty manifest for a file of `size` bytes: pieces allocated (their count follows
 * from size), no chunks yet. Errors: SHOAL_ELIMIT (size > PROTO_FILE_MAX), -ENOMEM. */
int manifest_init(struct manifest *m, uint64_t size);
/* Fills piece `index`, which must be the next one not yet filled (pieces are filled
 * in order), from its piece hash and chunk list; the leaves are copied.
 * Errors: -EINVAL (out of order, or chunk lengths that do not add up to the piece's
 * length), -ENOMEM. */
int manifest_set_piece(struct manifest *m, uint32_t index, const uint8_t hash[static CHASH_LEN],
                       const struct chash_leaf *chunks, uint32_t n_chunks);
void manifest_release(struct manifest *m);

/* Checks everything a manifest from outside must satisfy: piece count and lengths
 * follow from size, chunk lengths sum to their piece's length, each chunk is at most
 * PROTO_CHUNK_MAX and all but a piece's last at least PROTO_CHUNK_MIN, and every
 * piece hash equals the one computed from its chunks.
 * Errors: SHOAL_EFORMAT (structure, including size > PROTO_FILE_MAX), SHOAL_EHASH (a
 * piece hash does not match), -ENOMEM. */
int manifest_check(const struct manifest *m);

/* Encodes into a malloc'd buffer (*out, *out_len), which the caller frees. Refuses
 * to write what no decoder would accept. Errors: -EINVAL (incomplete or structurally
 * invalid manifest), -ENOMEM. */
int manifest_encode(const struct manifest *m, uint8_t **out, size_t *out_len);
/* Decodes and structurally checks (not the piece hashes: manifest_check does those).
 * Errors: SHOAL_EFORMAT, SHOAL_EVERSION, SHOAL_ELIMIT, -ENOMEM. */
int manifest_decode(struct manifest *m, const uint8_t *buf, size_t len);

/* One piece's chunk list on its own: `piece` (its first_chunk is ignored) with its
 * piece->n_chunks chunks. The piece index is not encoded; piece.first_chunk of a
 * decoded piece is 0 and *chunks is malloc'd (caller frees). Errors as for the
 * whole manifest. Integers of any msgpack width are accepted; encoders write the
 * shortest, so hash re-encoded bytes, never received ones. */
int manifest_piece_encode(const struct manifest_piece *piece, const struct chash_leaf *chunks,
                          uint8_t **out, size_t *out_len);
int manifest_piece_decode(struct manifest_piece *piece, struct chash_leaf **chunks,
                          const uint8_t *buf, size_t len);

#endif
