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

/* Peer protocol (docs/peer-protocol.md). A transport frame is a 2-byte big-endian
 * length and that many bytes of Noise ciphertext (plaintext plus a 16-byte tag). */
#define WIRE_FRAME_HDR       2u
#define WIRE_FRAME_MAX       65535u                          /* ciphertext bytes per frame */
#define WIRE_TAG_LEN         16u
#define WIRE_PLAIN_MAX       (WIRE_FRAME_MAX - WIRE_TAG_LEN) /* plaintext bytes per frame */
/* The plaintext stream is records: a 4-byte big-endian length L, L bytes of one msgpack
 * message, then (CHUNK, SNAPSHOT, MANIFEST only) the raw payload the message declares. */
#define WIRE_REC_HDR         4u
#define WIRE_MSG_MAX         16384u  /* L; the largest v1 message (256 hashes) is 8,714 */
#define WIRE_MAX_DEPTH       2       /* [type, id, [hash, ...]] */
#define WIRE_FIELDS_MAX      16u     /* items in a message's array, checked before decoding */
#define WIRE_CHUNKS_PER_REQ  256u    /* hashes in one GET_CHUNKS */
#define WIRE_HAVE_PER_REQ    256u    /* hashes in one HAVE */
#define WIRE_NODE_ID_MAX     32u     /* bytes of the node id in HELLO */
#define WIRE_ERRMSG_MAX      512u    /* bytes of the text in ERROR */
#define WIRE_SNAPSHOT_MAX    (64u << 20) /* SNAPSHOT payload: one snapshot v1 encoding */
#define WIRE_MANIFEST_MAX    (64u << 20) /* MANIFEST payload: a manifest or piece list */
/* Flow control: CHUNK payload bytes a sender may send before any CREDIT, and the most
 * a receiver may have granted and not yet received. */
#define WIRE_CREDIT_INIT     (4u << 20)
#define WIRE_CREDIT_MAX      (1u << 30)
#define WIRE_INFLIGHT_MAX    64u     /* requests one side keeps open; more may get BUSY */

#endif
