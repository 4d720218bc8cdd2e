/* proto_limits.h - every size and count two nodes must agree on, in one place.
 *
 * Decoders check input against these before allocating anything. Changing one
 * changes the wire or storage format: bump the version of what it bounds.
 */
#ifndef SHOAL_PROTO_LIMITS_H
#define SHOAL_PROTO_LIMITS_H

#include <stdint.h>

/* Content format (design.md "Content format"; hub-protocol.md 3.1). */
#define PROTO_PIECE_LEN      (16u * 1024 * 1024) /* fixed piece size; the last is shorter */
#define PROTO_CHUNK_MIN      8192u               /* Xet minimum chunk */
#define PROTO_CHUNK_TARGET   65536u              /* Xet target (mean) chunk */
#define PROTO_CHUNK_MAX      131072u             /* Xet maximum chunk */
/* A piece of PROTO_PIECE_LEN bytes holds at most this many chunks (all but the last
 * are at least PROTO_CHUNK_MIN long). */
#define PROTO_CHUNKS_PER_PIECE (PROTO_PIECE_LEN / PROTO_CHUNK_MIN + 1)

/* Files: 2^50 bytes (1 PiB) is far beyond any model file and keeps every piece
 * index and offset exact in a double for JSON readers. */
#define PROTO_FILE_MAX       (UINT64_C(1) << 50)
#define PROTO_PIECES_PER_FILE (PROTO_FILE_MAX / PROTO_PIECE_LEN)

/* msgpack input: nesting deeper than this is rejected before decoding. */
#define PROTO_MAX_DEPTH      8

#endif
