/* b3.h - BLAKE3 (hash, keyed hash, derive key, extendable output).
 *
 * Written for Shoal from the BLAKE3 specification. A portable implementation and
 * SIMD ones (SSE4.1: 4 chunks at a time, AVX2: 8, AVX-512: 16) that give identical
 * output; the fastest one the CPU supports is chosen on first use (SHOAL_B3_IMPL =
 * portable, sse41, avx2 or avx512 overrides it), and tests may force another.
 *
 * Threads: a struct b3_hasher belongs to one thread at a time; the functions keep
 *   no other state except the implementation choice, which is set once (race-free)
 *   on first use or by b3_force_impl() before any hashing.
 * Ownership: the hasher is caller-allocated (stack or embedded), needs no cleanup,
 *   and may be copied by value to fork a hash state.
 * Names: `b3_`, not `blake3_`, to stay out of the reference library's namespace.
 */
#ifndef SHOAL_B3_H
#define SHOAL_B3_H

#include <stddef.h>
#include <stdint.h>

#define B3_OUT_LEN   32
#define B3_KEY_LEN   32
#define B3_BLOCK_LEN 64
#define B3_CHUNK_LEN 1024
#define B3_MAX_DEPTH 54 /* 2^54 chunks of 1 KiB cover 2^64 bytes */

struct b3_hasher {
    uint32_t key[8];
    uint32_t cv[8];          /* chaining value of the chunk in progress */
    uint64_t chunk_counter;  /* index of the chunk in progress */
    uint8_t buf[B3_BLOCK_LEN];
    uint8_t buf_len;
    uint8_t blocks_done;     /* blocks of the current chunk already compressed */
    uint8_t flags;           /* KEYED_HASH / DERIVE_KEY_* domain flags */
    uint8_t cv_stack_len;
    uint8_t cv_stack[(B3_MAX_DEPTH + 1) * B3_OUT_LEN];
};

enum b3_impl {
    B3_IMPL_PORTABLE = 0,
    B3_IMPL_SSE41 = 1,
    B3_IMPL_AVX2 = 2,
    B3_IMPL_AVX512 = 3,
};

void b3_init(struct b3_hasher *h);
void b3_init_keyed(struct b3_hasher *h, const uint8_t key[static B3_KEY_LEN]);
/* context: a NUL-terminated, hard-coded, globally unique string (spec section 2.3). */
void b3_init_derive_key(struct b3_hasher *h, const char *context);

void b3_update(struct b3_hasher *h, const void *data, size_t len);

/* Writes out_len bytes of output (any length: the first 32 are the digest). Does not
 * change the hasher, so more input may follow and b3_final may be called again. */
void b3_final(const struct b3_hasher *h, uint8_t *out, size_t out_len);

/* One-shot helpers: 32-byte digests. */
void b3_hash(const void *data, size_t len, uint8_t out[static B3_OUT_LEN]);
void b3_keyed(const uint8_t key[static B3_KEY_LEN], const void *data, size_t len,
              uint8_t out[static B3_OUT_LEN]);

/* The implementation in use (detected on first call if none was forced). */
enum b3_impl b3_impl_get(void);
const char *b3_impl_name(enum b3_impl impl);
/* Best implementation this CPU can run. */
enum b3_impl b3_impl_best(void);
/* Use impl from now on. Returns 0, or -ENOTSUP if the CPU (or build) lacks it.
 * For tests and benchmarks; call before hashing on other threads. */
int b3_force_impl(enum b3_impl impl);

#endif
