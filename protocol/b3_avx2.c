/* b3_avx2.c - BLAKE3 with AVX2: chunks (or parents) eight at a time, each vector holding
 * one state word of eight inputs, and sixteen at a time as two such groups interleaved.
 * Compiled with -mavx2; b3.c calls it only on CPUs that have AVX2 (and so SSE4.1, which
 * takes the single leftovers).
 *
 * Speed is bound by latency: each block's rounds form one long dependency chain, and
 * the next block of a chunk needs its result. Hence the choices below: the message word
 * is added before the chained value, the byte-shuffle masks stay in memory so the sixteen
 * state vectors keep the sixteen registers, and sixteen chunks run as two independent
 * chains the CPU overlaps.
 */
#include "b3_impl.h"

#if B3__X86

#include <immintrin.h>

#define B3_INLINE static inline __attribute__((always_inline))

static const uint8_t b3_rot16_mask[32] __attribute__((aligned(32))) = {
    2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
    2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
};
static const uint8_t b3_rot8_mask[32] __attribute__((aligned(32))) = {
    1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,
    1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,
};

/* Rotations by whole bytes are one byte shuffle. Written as asm with a memory operand
 * because the compiler would otherwise pin both masks in registers and spill state. */
B3_INLINE __m256i b3_rotr16(__m256i x)
{
    __asm__("vpshufb %1, %0, %0" : "+x"(x) : "m"(*(const __m256i *)b3_rot16_mask));
    return x;
}

B3_INLINE __m256i b3_rotr8(__m256i x)
{
    __asm__("vpshufb %1, %0, %0" : "+x"(x) : "m"(*(const __m256i *)b3_rot8_mask));
    return x;
}

B3_INLINE __m256i b3_rotr12(__m256i x)
{
    return _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20));
}

B3_INLINE __m256i b3_rotr7(__m256i x)
{
    return _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25));
}

/* The message word goes in first: it is ready early, so only one addition waits on b. */
B3_INLINE void b3_x8_g(__m256i v[16], int a, int b, int c, int d, __m256i x, __m256i y)
{
    v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], x), v[b]);
    v[d] = b3_rotr16(_mm256_xor_si256(v[d], v[a]));
    v[c] = _mm256_add_epi32(v[c], v[d]);
    v[b] = b3_rotr12(_mm256_xor_si256(v[b], v[c]));
    v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], y), v[b]);
    v[d] = b3_rotr8(_mm256_xor_si256(v[d], v[a]));
    v[c] = _mm256_add_epi32(v[c], v[d]);
    v[b] = b3_rotr7(_mm256_xor_si256(v[b], v[c]));
}

/* One round for `groups` (1 or 2) independent groups, alternating G by G so that both
 * chains are in flight together. */
B3_INLINE void b3_x8_round(int groups, __m256i v[][16], const __m256i m[][16],
                           const uint8_t o[16])
{
    static const uint8_t idx[8][4] = {
        {0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}, /* columns */
        {0, 5, 10, 15}, {1, 6, 11, 12}, {2, 7, 8, 13}, {3, 4, 9, 14}, /* diagonals */
    };

#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
#pragma GCC unroll 2
        for (int k = 0; k < groups; k++)
            b3_x8_g(v[k], idx[i][0], idx[i][1], idx[i][2], idx[i][3], m[k][o[2 * i]],
                    m[k][o[2 * i + 1]]);
    }
}

/* 4x4 word transposes inside each 128-bit half (AVX2 unpacks never cross halves). */
B3_INLINE void b3_x8_transpose(__m256i *a, __m256i *b, __m256i *c, __m256i *d)
{
    __m256i ab_lo = _mm256_unpacklo_epi32(*a, *b);
    __m256i ab_hi = _mm256_unpackhi_epi32(*a, *b);
    __m256i cd_lo = _mm256_unpacklo_epi32(*c, *d);
    __m256i cd_hi = _mm256_unpackhi_epi32(*c, *d);

    *a = _mm256_unpacklo_epi64(ab_lo, cd_lo);
    *b = _mm256_unpackhi_epi64(ab_lo, cd_lo);
    *c = _mm256_unpacklo_epi64(ab_hi, cd_hi);
    *d = _mm256_unpackhi_epi64(ab_hi, cd_hi);
}

/* Input lane i is the 64-byte block at p[i] + off. Lanes i and i + 4 share a register
 * (low and high half), so the in-half transposes leave word j of lanes 0-3 in the low
 * half and of lanes 4-7 in the high half: exactly the word-per-vector layout. */
B3_INLINE void b3_x8_load(__m256i m[16], const uint8_t *const p[8], size_t off)
{
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m128i lo = _mm_loadu_si128((const __m128i *)(p[i] + off + 16 * q));
            __m128i hi = _mm_loadu_si128((const __m128i *)(p[i + 4] + off + 16 * q));

            m[4 * q + i] = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        }
        b3_x8_transpose(&m[4 * q], &m[4 * q + 1], &m[4 * q + 2], &m[4 * q + 3]);
    }
}

/* The lanes of one group: where each input starts, its counter, and the chaining value. */
struct b3_x8_group {
    const uint8_t *p[8];
    __m256i ctr_lo, ctr_hi;
    __m256i cv[8];
};

/* Runs `blocks` consecutive blocks of every lane of `groups` groups through the
 * compression function; the first block gets the extra flags `first`, the last `last`. */
B3_INLINE void b3_x8_blocks(int groups, struct b3_x8_group *g, size_t blocks, uint32_t flags,
                            uint32_t first, uint32_t last)
{
    for (size_t blk = 0; blk < blocks; blk++) {
        uint32_t f = flags | (blk == 0 ? first : 0) | (blk + 1 == blocks ? last : 0);
        __m256i m[2][16], v[2][16];

#pragma GCC unroll 2
        for (int k = 0; k < groups; k++) {
            b3_x8_load(m[k], g[k].p, blk * B3_BLOCK_LEN);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                v[k][i] = g[k].cv[i];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                v[k][8 + i] = _mm256_set1_epi32((int)b3__iv[i]);
            v[k][12] = g[k].ctr_lo;
            v[k][13] = g[k].ctr_hi;
            v[k][14] = _mm256_set1_epi32(B3_BLOCK_LEN);
            v[k][15] = _mm256_set1_epi32((int)f);
        }
        b3_x8_round(groups, v, m, b3__sched[0]);
        b3_x8_round(groups, v, m, b3__sched[1]);
        b3_x8_round(groups, v, m, b3__sched[2]);
        b3_x8_round(groups, v, m, b3__sched[3]);
        b3_x8_round(groups, v, m, b3__sched[4]);
        b3_x8_round(groups, v, m, b3__sched[5]);
        b3_x8_round(groups, v, m, b3__sched[6]);
#pragma GCC unroll 2
        for (int k = 0; k < groups; k++) {
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                g[k].cv[i] = _mm256_xor_si256(v[k][i], v[k][i + 8]);
        }
    }
}

/* Writes the first `lanes` of the group's eight CVs, 32 bytes each. */
B3_INLINE void b3_x8_store(uint8_t *out, struct b3_x8_group *g, size_t lanes)
{
    __m256i *cv = g->cv;

    b3_x8_transpose(&cv[0], &cv[1], &cv[2], &cv[3]);
    b3_x8_transpose(&cv[4], &cv[5], &cv[6], &cv[7]);
    /* cv[i] now holds words 0-3 of lanes i and i + 4, cv[4 + i] their words 4-7. */
#pragma GCC unroll 4
    for (size_t i = 0; i < 4; i++) {
        if (i < lanes)
            _mm256_storeu_si256((__m256i *)(out + 32 * i),
                                _mm256_permute2x128_si256(cv[i], cv[4 + i], 0x20));
        if (i + 4 < lanes)
            _mm256_storeu_si256((__m256i *)(out + 32 * (i + 4)),
                                _mm256_permute2x128_si256(cv[i], cv[4 + i], 0x31));
    }
}

/* Lanes beyond n repeat input 0 (any readable input does) and are not stored. */
B3_INLINE void b3_x8_setup(struct b3_x8_group *g, const uint8_t *in, size_t n, size_t stride,
                           const uint32_t key[8], uint64_t counter, int count_up)
{
    uint32_t lo[8], hi[8];

#pragma GCC unroll 8
    for (size_t i = 0; i < 8; i++) {
        uint64_t c = counter + (count_up ? i : 0);

        g->p[i] = in + (i < n ? i : 0) * stride;
        lo[i] = (uint32_t)c;
        hi[i] = (uint32_t)(c >> 32);
    }
    g->ctr_lo = _mm256_loadu_si256((const __m256i *)lo);
    g->ctr_hi = _mm256_loadu_si256((const __m256i *)hi);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        g->cv[i] = _mm256_set1_epi32((int)key[i]);
}

/* Sixteen whole chunks. */
static void b3_x16_chunks(const uint8_t *in, const uint32_t key[8], uint64_t counter,
                          uint32_t flags, uint8_t *out)
{
    struct b3_x8_group g[2];

    b3_x8_setup(&g[0], in, 8, B3_CHUNK_LEN, key, counter, 1);
    b3_x8_setup(&g[1], in + 8 * B3_CHUNK_LEN, 8, B3_CHUNK_LEN, key, counter + 8, 1);
    b3_x8_blocks(2, g, B3__CHUNK_BLOCKS, flags, B3__CHUNK_START, B3__CHUNK_END);
    b3_x8_store(out, &g[0], 8);
    b3_x8_store(out + 8 * 32, &g[1], 8);
}

/* Up to eight whole chunks. */
static void b3_x8_chunks(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                         uint32_t flags, uint8_t *out)
{
    struct b3_x8_group g;

    b3_x8_setup(&g, in, n, B3_CHUNK_LEN, key, counter, 1);
    b3_x8_blocks(1, &g, B3__CHUNK_BLOCKS, flags, B3__CHUNK_START, B3__CHUNK_END);
    b3_x8_store(out, &g, n);
}

/* Up to sixteen parents: one block each, so a second group only pays off when full. */
static void b3_x8_parents(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                          uint8_t *out)
{
    struct b3_x8_group g[2];

    b3_x8_setup(&g[0], in, n < 8 ? n : 8, B3_BLOCK_LEN, key, 0, 0);
    if (n < 16) {
        b3_x8_blocks(1, g, 1, flags | B3__PARENT, 0, 0);
        b3_x8_store(out, &g[0], n < 8 ? n : 8);
        return;
    }
    b3_x8_setup(&g[1], in + 8 * B3_BLOCK_LEN, 8, B3_BLOCK_LEN, key, 0, 0);
    b3_x8_blocks(2, g, 1, flags | B3__PARENT, 0, 0);
    b3_x8_store(out, &g[0], 8);
    b3_x8_store(out + 8 * 32, &g[1], 8);
}

/* A partly filled 8-way batch costs the same as a full one, and a lone input is cheaper
 * one block at a time, so only single leftovers go to SSE4.1. */
void b3__chunks_avx2(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                     uint32_t flags, uint8_t *out)
{
    for (; n >= 16; n -= 16) {
        b3_x16_chunks(in, key, counter, flags, out);
        in += 16 * B3_CHUNK_LEN;
        out += 16 * 32;
        counter += 16;
    }
    while (n >= 2) {
        size_t k = n < 8 ? n : 8;

        b3_x8_chunks(in, k, key, counter, flags, out);
        in += k * B3_CHUNK_LEN;
        out += 32 * k;
        counter += k;
        n -= k;
    }
    if (n == 1)
        b3__chunks_sse41(in, 1, key, counter, flags, out);
}

void b3__parents_avx2(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                      uint8_t *out)
{
    while (n >= 2) {
        size_t k = n < 16 ? (n < 8 ? n : 8) : 16;

        b3_x8_parents(in, k, key, flags, out);
        in += k * B3_BLOCK_LEN;
        out += 32 * k;
        n -= k;
    }
    if (n == 1)
        b3__parents_sse41(in, 1, key, flags, out);
}

#endif
