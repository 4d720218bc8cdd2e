/* b3_impl.h - internals shared by b3.c and the b3_*.c SIMD files; not part of the API.
 *
 * Each implementation offers the same four operations, and b3.c only ever calls them
 * through the table it picks at run time:
 *   compress      one block, chaining value updated in place;
 *   compress_xof  one block, all 64 output bytes (root nodes, extendable output);
 *   chunks        n whole, contiguous 1 KiB chunks to n chaining values;
 *   parents       n parent nodes, each the 64 bytes of two child CVs, to n CVs.
 * chunks and parents never produce a root: the caller keeps back whatever might be one.
 * Chaining values between the functions travel as 32 little-endian bytes, so that a
 * pair of them stored next to each other already is a parent block.
 */
#ifndef SHOAL_B3_IMPL_H
#define SHOAL_B3_IMPL_H

#include "b3.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The SIMD files are only built with their instruction sets on x86 (protocol/CMakeLists.txt). */
#if defined(__x86_64__) || defined(__i386__)
#define B3__X86 1
#else
#define B3__X86 0
#endif

/* Domain separation flags (spec table 3). */
enum {
    B3__CHUNK_START = 1u << 0,
    B3__CHUNK_END = 1u << 1,
    B3__PARENT = 1u << 2,
    B3__ROOT = 1u << 3,
    B3__KEYED_HASH = 1u << 4,
    B3__DERIVE_KEY_CONTEXT = 1u << 5,
    B3__DERIVE_KEY_MATERIAL = 1u << 6,
};

#define B3__ROUNDS 7
#define B3__CHUNK_BLOCKS (B3_CHUNK_LEN / B3_BLOCK_LEN)

extern const uint32_t b3__iv[8];

/* b3__sched[r][i] is the original message word found at position i in round r: row r is
 * the spec's permutation [2,6,3,10,7,0,4,13,1,11,12,5,9,14,15,8] applied r times. Looking
 * the words up saves permuting them between rounds, and the table is defined here, in
 * every file, so that the compiler turns each lookup into a constant. */
static const uint8_t b3__sched[B3__ROUNDS][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static inline uint32_t b3__load32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void b3__store32(uint8_t *p, uint32_t w)
{
    p[0] = (uint8_t)w;
    p[1] = (uint8_t)(w >> 8);
    p[2] = (uint8_t)(w >> 16);
    p[3] = (uint8_t)(w >> 24);
}

static inline void b3__store_cv(uint8_t out[32], const uint32_t cv[8])
{
    for (int i = 0; i < 8; i++)
        b3__store32(out + 4 * i, cv[i]);
}

void b3__compress_portable(uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN], uint32_t block_len,
                           uint64_t counter, uint32_t flags);
void b3__compress_xof_portable(const uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN],
                               uint32_t block_len, uint64_t counter, uint32_t flags,
                               uint8_t out[B3_BLOCK_LEN]);
void b3__chunks_portable(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                         uint32_t flags, uint8_t *out);
void b3__parents_portable(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                          uint8_t *out);

#if B3__X86
void b3__compress_sse41(uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN], uint32_t block_len,
                        uint64_t counter, uint32_t flags);
void b3__compress_xof_sse41(const uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN],
                            uint32_t block_len, uint64_t counter, uint32_t flags,
                            uint8_t out[B3_BLOCK_LEN]);
void b3__chunks_sse41(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                      uint32_t flags, uint8_t *out);
void b3__parents_sse41(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                       uint8_t *out);
/* The AVX2 versions hand leftovers below two lanes to the SSE4.1 ones, which every AVX2
 * CPU also runs. */
void b3__chunks_avx2(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                     uint32_t flags, uint8_t *out);
void b3__parents_avx2(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                      uint8_t *out);
/* AVX-512 (F, VL and BW): its own single-block code too, as the native rotation shortens
 * the chain of a lone block as well. */
void b3__compress_avx512(uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN], uint32_t block_len,
                         uint64_t counter, uint32_t flags);
void b3__compress_xof_avx512(const uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN],
                             uint32_t block_len, uint64_t counter, uint32_t flags,
                             uint8_t out[B3_BLOCK_LEN]);
void b3__chunks_avx512(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                       uint32_t flags, uint8_t *out);
void b3__parents_avx512(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                        uint8_t *out);
#endif

#endif
