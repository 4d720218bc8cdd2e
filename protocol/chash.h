/* chash.h - chunk hashes, the Xet merkle (xorb) hash, piece hashes and the Xet
 * rendering of hashes as text (hub-protocol.md 3.2-3.5).
 *
 *   chunk hash = BLAKE3 keyed with CHASH_DATA_KEY over the chunk's bytes
 *   merkle     = Xet's aggregated hash over (chunk hash, length) leaves, internal
 *                nodes keyed with CHASH_NODE_KEY over their text form
 *   piece hash = Xet file hash of the piece: BLAKE3 keyed with 32 zero bytes over the
 *                merkle root; a piece with no chunks (never stored) hashes to zeros
 *
 * Threads: all functions are reentrant. Errors: 0 or a negative code (err.h).
 */
#ifndef SHOAL_CHASH_H
#define SHOAL_CHASH_H

#include <stddef.h>
#include <stdint.h>

#define CHASH_LEN     32
#define CHASH_XET_LEN 64 /* characters of the text form, without the NUL */

/* Keys from xet-core (hub-protocol.md 3.2, 3.4, 3.6; tests/vectors/keys.json). */
extern const uint8_t CHASH_DATA_KEY[CHASH_LEN];
extern const uint8_t CHASH_NODE_KEY[CHASH_LEN];
extern const uint8_t CHASH_VERIFY_KEY[CHASH_LEN];

/* A merkle leaf (a chunk) or node: its hash and the byte length below it. */
struct chash_leaf {
    uint8_t hash[CHASH_LEN];
    uint64_t len;
};

void chash_chunk(const void *data, size_t len, uint8_t out[static CHASH_LEN]);

/* Merkle root over n leaves (32 zero bytes when n == 0). chash_merkle_inplace uses
 * `nodes` as scratch and leaves it scrambled; chash_merkle copies first.
 * Errors: -ENOMEM (chash_merkle only). */
int chash_merkle(const struct chash_leaf *leaves, size_t n, uint8_t out[static CHASH_LEN]);
void chash_merkle_inplace(struct chash_leaf *nodes, size_t n, uint8_t out[static CHASH_LEN]);

/* Xet file hash from a merkle root: keyed BLAKE3 with the zero salt; an empty list
 * of chunks (root all zero from n == 0) gives 32 zero bytes, as xet-core does. */
void chash_file_from_root(const uint8_t root[static CHASH_LEN], size_t n_chunks,
                          uint8_t out[static CHASH_LEN]);

/* Piece hash of a piece whose chunks are `leaves` (the merkle root, then the file
 * hash). `leaves` is scrambled. */
void chash_piece_inplace(struct chash_leaf *leaves, size_t n, uint8_t out[static CHASH_LEN]);

/* Xet text form: each 8-byte group reversed, then lower-case hex; out gets 64
 * characters and a NUL. chash_from_xet accepts exactly 64 hex digits (either case).
 * Errors: SHOAL_EFORMAT. */
void chash_to_xet(const uint8_t h[static CHASH_LEN], char out[static CHASH_XET_LEN + 1]);
int chash_from_xet(const char *s, uint8_t out[static CHASH_LEN]);

/* Plain lower-case hex of n bytes; out needs 2n+1 characters. */
void chash_hex(const uint8_t *in, size_t n, char *out);
/* Parses exactly 2n hex digits (followed by NUL) into n bytes. Errors: SHOAL_EFORMAT. */
int chash_unhex(const char *s, uint8_t *out, size_t n);

#endif
