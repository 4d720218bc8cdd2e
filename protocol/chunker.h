/* chunker.h - Xet content-defined chunking as a streaming boundary finder.
 *
 * Feed bytes in any split; chunker_next() says where the next chunk ends. The
 * chunker keeps only the rolling hash and the length of the chunk in progress, never
 * the bytes: the caller hashes them (see hasher.h), so memory stays constant.
 *
 * The rule (hub-protocol.md 3.1, the current one from xet-core >= 1.1.10): gear hash
 * h = (h << 1) + TABLE[byte]; cut after a byte when the chunk is at least
 * PROTO_CHUNK_MIN long and the top 16 bits of h are zero, or when it reaches
 * PROTO_CHUNK_MAX. h restarts at 0 for each chunk. Shoal restarts the chunker at every
 * piece start too (chunker_init), so every piece chunks on its own.
 *
 * Threads: a chunker belongs to one thread at a time; no global state.
 */
#ifndef SHOAL_CHUNKER_H
#define SHOAL_CHUNKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chunker {
    uint64_t h;   /* gear hash of the chunk in progress */
    uint32_t len; /* bytes of the chunk in progress seen so far */
};

void chunker_init(struct chunker *c);

/* Scans data[0..n). Returns how many bytes belong to the chunk in progress: if
 * *cut is set, the chunk ends after them (and the chunker is ready for the next
 * one); otherwise all n bytes were taken and the chunk goes on. Call again with the
 * rest of the data until it is used up. */
size_t chunker_next(struct chunker *c, const uint8_t *data, size_t n, bool *cut);

/* At end of input: the length of the last, unterminated chunk (0 if none), and the
 * chunker reset for new input. */
uint32_t chunker_finish(struct chunker *c);

#endif
