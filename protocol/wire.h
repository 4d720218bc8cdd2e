/* wire.h - the peer protocol after the Noise handshake: frames, records, messages.
 *
 * Three layers, each pure (no sockets, files or clocks); docs/peer-protocol.md is the
 * spec and lists every limit (proto_limits.h holds them):
 *
 *   frames   2-byte big-endian length N (1..WIRE_FRAME_MAX), N bytes of ciphertext.
 *            wire_frame_check() finds one in a byte buffer. Decryption is noise.h's.
 *   records  the decrypted plaintexts of one direction, concatenated, are a stream of
 *            records: 4-byte big-endian length L (1..WIRE_MSG_MAX), L bytes of one
 *            msgpack message, then for CHUNK, SNAPSHOT and MANIFEST exactly the number
 *            of raw payload bytes the message declares. Records and payloads ignore
 *            frame boundaries. struct wire_reader takes the plaintext in any pieces.
 *   messages [type, request id, ...]; struct wire_msg holds any of them decoded;
 *            wire_msg_encode() and wire_msg_decode() convert.
 *
 * Threads: reentrant; a reader is used by one thread at a time.
 * Errors: 0 or a negative code from err.h. Decoding: SHOAL_EFORMAT (malformed: wrong
 *   type or shape, a count or length the bytes do not back, trailing bytes, bad names),
 *   SHOAL_ELIMIT (a length, count or nesting over its limit), SHOAL_EVERSION (HELLO of
 *   another version), SHOAL_EPEER (an unknown message type, or the stream breaking
 *   the session rules: HELLO not first or repeated, CHUNK beyond the granted credit),
 *   -ENOMEM. Encoding: -EINVAL (a message no decoder would accept), -ENOBUFS.
 *   Out-parameters are left untouched on failure.
 * Ownership: nothing here allocates except the decoder's msgpack-c zone, which is
 *   bounded by the record (at most WIRE_MSG_MAX objects) and freed before it returns.
 *   The reader's memory is fixed: it embeds one record buffer. Payload bytes it hands
 *   out point into the caller's input.
 */
#ifndef SHOAL_WIRE_H
#define SHOAL_WIRE_H

#include "proto_limits.h"
#include "snapshot.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION   1
#define WIRE_HASH_LEN  32
#define WIRE_PIECE_ALL UINT32_MAX /* GET_MANIFEST: the whole file (-1 on the wire) */
/* The most a record takes: header and the largest message. */
#define WIRE_REC_MAX (WIRE_REC_HDR + WIRE_MSG_MAX)

enum wire_type {
    WIRE_HELLO = 1,        /* [1, 0, version, node_id, features] */
    WIRE_ERROR = 2,        /* [2, id, code, message] */
    WIRE_GET_SNAPSHOT = 3, /* [3, id, repo, commit] */
    WIRE_SNAPSHOT = 4,     /* [4, id, len] + len bytes */
    WIRE_GET_MANIFEST = 5, /* [5, id, file sha256, piece or -1] */
    WIRE_MANIFEST = 6,     /* [6, id, len] + len bytes */
    WIRE_GET_CHUNKS = 7,   /* [7, id, [hash, ...]] */
    WIRE_CHUNK = 8,        /* [8, id, hash, len] + len bytes */
    WIRE_MISSING = 9,      /* [9, id, hash] */
    WIRE_END = 10,         /* [10, id] */
    WIRE_HAVE = 11,        /* [11, id, [hash, ...]] */
    WIRE_HAVE_RESULT = 12, /* [12, id, bitmap] */
    WIRE_CREDIT = 13,      /* [13, 0, bytes] */
    WIRE_CANCEL = 14,      /* [14, id] */
};
#define WIRE_TYPE_MAX WIRE_CANCEL

/* Codes carried by ERROR. A receiver treats a code it does not know as INTERNAL. */
enum wire_errcode {
    WIRE_ERR_NOT_FOUND = 1,   /* no such snapshot, file or piece here */
    WIRE_ERR_TOO_LARGE = 2,   /* the answer is over its limit (ask for pieces instead) */
    WIRE_ERR_BAD_REQUEST = 3, /* well-formed but not answerable (e.g. piece past the end) */
    WIRE_ERR_BUSY = 4,        /* too many requests open; try later or elsewhere */
    WIRE_ERR_CANCELLED = 5,   /* ended early after CANCEL */
    WIRE_ERR_INTERNAL = 6,    /* the responder failed (store error) */
};

struct wire_hello {
    uint32_t version;                   /* WIRE_VERSION */
    char node_id[WIRE_NODE_ID_MAX + 1]; /* 1..32 of [a-z0-9], NUL-terminated */
    uint64_t features;                  /* bitmask; no bits defined in version 1 */
};

struct wire_error {
    int32_t code;                   /* enum wire_errcode */
    char text[WIRE_ERRMSG_MAX + 1]; /* 0..512 bytes, no NUL inside; for logs */
};

/* rev: a commit, or a branch or tag the responder resolves through its own refs (what
 * it last pulled under that name). */
struct wire_get_snapshot {
    char repo[SNAPSHOT_REPO_MAX + 1]; /* snapshot_repo_ok() */
    char rev[SNAPSHOT_REV_MAX + 1];   /* snapshot_rev_ok() */
};

/* SNAPSHOT and MANIFEST: the raw payload that follows. */
struct wire_payload {
    uint32_t len; /* 1..WIRE_SNAPSHOT_MAX or 1..WIRE_MANIFEST_MAX */
};

struct wire_get_manifest {
    uint8_t sha256[WIRE_HASH_LEN];
    uint32_t piece; /* < PROTO_PIECES_PER_FILE, or WIRE_PIECE_ALL */
};

/* GET_CHUNKS and HAVE. */
#define WIRE_HASHES_MAX                                                                            \
    (WIRE_CHUNKS_PER_REQ > WIRE_HAVE_PER_REQ ? WIRE_CHUNKS_PER_REQ : WIRE_HAVE_PER_REQ)
struct wire_hashes {
    uint32_t n; /* 1..WIRE_CHUNKS_PER_REQ (GET_CHUNKS) or 1..WIRE_HAVE_PER_REQ (HAVE) */
    uint8_t hash[WIRE_HASHES_MAX][WIRE_HASH_LEN];
};

struct wire_chunk {
    uint8_t hash[WIRE_HASH_LEN];
    uint32_t len; /* 1..PROTO_CHUNK_MAX payload bytes follow */
};

struct wire_missing {
    uint8_t hash[WIRE_HASH_LEN];
};

/* Bit i (byte i / 8, mask 0x80 >> i % 8) is set when the responder holds hash i of the
 * HAVE request; len is ceil(n / 8) for that request's n, unused bits are 0. The
 * decoder checks 1 <= len <= WIRE_HAVE_PER_REQ / 8; the requester checks len and the
 * unused bits against its own n (wire_have_result_ok). */
struct wire_have_result {
    uint32_t len;
    uint8_t bitmap[(WIRE_HAVE_PER_REQ + 7) / 8];
};

struct wire_credit {
    uint32_t bytes; /* 1..WIRE_CREDIT_MAX more CHUNK payload bytes */
};

/* Any message. type selects the member of u; END and CANCEL have none. id is the
 * request id: 0 for HELLO and CREDIT, 0 or a request's for ERROR (0: the connection),
 * 1..UINT32_MAX for everything else. */
struct wire_msg {
    uint8_t type; /* enum wire_type */
    uint32_t id;
    union {
        struct wire_hello hello;
        struct wire_error error;
        struct wire_get_snapshot get_snapshot;
        struct wire_payload snapshot;
        struct wire_get_manifest get_manifest;
        struct wire_payload manifest;
        struct wire_hashes get_chunks;
        struct wire_chunk chunk;
        struct wire_missing missing;
        struct wire_hashes have;
        struct wire_have_result have_result;
        struct wire_credit credit;
    } u;
};

/* --- Frames ------------------------------------------------------------------------ */

struct wire_frame {
    size_t off; /* where the frame's body starts in the buffer (WIRE_FRAME_HDR) */
    size_t len; /* body length, 1..max */
    size_t end; /* off + len: where the next frame starts */
};

/* Looks at the frame at the start of buf[0..len), allocating nothing. Returns 1 and
 * fills *f when the whole frame is there, 0 when more bytes are needed (*f untouched).
 * The length is judged as soon as its two bytes are there, before the body arrives.
 * max is at most WIRE_FRAME_MAX (a larger max acts as WIRE_FRAME_MAX).
 * Errors: SHOAL_EFORMAT (length 0), SHOAL_ELIMIT (length over max). */
int wire_frame_check(const uint8_t *buf, size_t len, size_t max, struct wire_frame *f);

/* Writes the 2-byte header of a frame of n bytes. Errors: -EINVAL (n 0 or over
 * WIRE_FRAME_MAX). */
int wire_frame_header(uint8_t out[static WIRE_FRAME_HDR], size_t n);

/* --- Messages ---------------------------------------------------------------------- */

/* Writes one record (the 4-byte length, then the msgpack message) to out[0..cap):
 * never more than WIRE_REC_MAX bytes. A payload (CHUNK, SNAPSHOT, MANIFEST) is not
 * written: the caller sends exactly its declared length of bytes right after.
 * Returns the record's length. Errors: -EINVAL (unknown type, an id or field its
 * decoder would reject), -ENOBUFS (cap too small; out may hold a partial record). */
int wire_msg_encode(const struct wire_msg *m, uint8_t *out, size_t cap);

/* Decodes one message from a record's body buf[0..len) (without the 4-byte length):
 * mp_check (depth WIRE_MAX_DEPTH), the outer array's count (2..WIRE_FIELDS_MAX), all
 * before msgpack-c sees the bytes; then the type's own rules. Stateless: the session
 * rules (HELLO first, credit) are the reader's. Errors: as at the top. */
int wire_msg_decode(struct wire_msg *m, const uint8_t *buf, size_t len);

/* The type's name ("GET_CHUNKS"), or "?" for a type that does not exist. */
const char *wire_type_name(unsigned type);

/* Whether the type is followed by a raw payload, and its length (0 if none). */
uint32_t wire_payload_len(const struct wire_msg *m);

/* Whether hash i of a HAVE is held, per a HAVE_RESULT. */
static inline bool wire_have_bit(const struct wire_have_result *h, uint32_t i)
{
    return i / 8 < h->len && (h->bitmap[i / 8] & (0x80u >> (i % 8))) != 0;
}
/* Marks hash i held (the caller sets len = ceil(n / 8) and zeroes the bitmap first). */
static inline void wire_have_set(struct wire_have_result *h, uint32_t i)
{
    h->bitmap[i / 8] |= (uint8_t)(0x80u >> (i % 8));
}
/* Whether a HAVE_RESULT fits a HAVE of n hashes: len is ceil(n / 8) and no bit at or
 * past n is set. */
bool wire_have_result_ok(const struct wire_have_result *h, uint32_t n);

/* --- The record reader ------------------------------------------------------------- */

/* What wire_reader_next found (a return value > 0). */
enum wire_event_kind {
    WIRE_EV_MSG = 1,  /* ev->msg is a decoded message */
    WIRE_EV_DATA = 2, /* ev->data[0..len) is the next piece of ev->msg's payload */
};

struct wire_event {
    const struct wire_msg *msg; /* valid until the next wire_reader_next call */
    const uint8_t *data;        /* DATA: inside the caller's input */
    size_t len;                 /* DATA: 1.. bytes */
    uint32_t offset;            /* DATA: where data starts in the payload */
    bool last;                  /* DATA: this piece ends the payload */
};

/* Embed one per connection direction (about 25 KiB); fields are private. */
struct wire_reader {
    int state;
    int err; /* sticky: once set, every call returns it */
    bool hello_seen;
    uint8_t hdr[WIRE_REC_HDR];
    uint32_t need;         /* body length of the record being read */
    uint32_t have;         /* bytes of the header or body read so far */
    uint32_t payload_len;  /* payload of the last message */
    uint32_t payload_done; /* of which delivered */
    uint64_t credit;       /* CHUNK payload bytes the peer may still send */
    struct wire_msg msg;
    uint8_t buf[WIRE_MSG_MAX];
};

/* A reader at the start of a stream: expects HELLO, with WIRE_CREDIT_INIT credit. */
void wire_reader_init(struct wire_reader *r);

/* Reads from *in (*len bytes of plaintext, any split) up to the next event, advancing
 * *in and *len past what it consumed. Pull style:
 *
 *     while ((kind = wire_reader_next(r, &p, &n, &ev)) > 0)
 *         handle(kind, &ev);           // MSG, then for payload messages DATA pieces
 *     if (kind < 0)
 *         close the connection;        // kind is the reason
 *
 * Returns WIRE_EV_MSG or WIRE_EV_DATA, or 0 when the input is used up without one.
 * A message's payload arrives as DATA events right after its MSG event, as many as
 * the input's pieces make, the last with ev->last; a CHUNK's len is taken from the
 * credit when its message is decoded. Every limit is checked before bytes are
 * buffered or decoded: a record length as soon as its 4 bytes are in.
 * Errors: as at the top; after an error the reader returns it forever. */
int wire_reader_next(struct wire_reader *r, const uint8_t **in, size_t *len, struct wire_event *ev);

/* Records a CREDIT of `bytes` this side has just sent the peer. Errors: -EINVAL
 * (bytes 0, or the credit outstanding would exceed WIRE_CREDIT_MAX). */
int wire_reader_grant(struct wire_reader *r, uint32_t bytes);

/* CHUNK payload bytes the peer may still send (granted, not yet announced). */
uint64_t wire_reader_credit(const struct wire_reader *r);

#endif
