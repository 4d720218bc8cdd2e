/* b3_sse41.c - BLAKE3 with SSE4.1: one block at a time with the state as four rows, and
 * four chunks (or parents) at a time with each vector holding one state word of four
 * inputs. Compiled with -msse4.1; b3.c calls it only on CPUs that have it.
 */
#include "b3_impl.h"

#if B3__X86

#include <immintrin.h>

#define B3_INLINE static inline __attribute__((always_inline))

static const uint8_t b3_rot16_mask[16] __attribute__((aligned(16))) = {
    2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
};
static const uint8_t b3_rot8_mask[16] __attribute__((aligned(16))) = {
    1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,
};

/* Rotations by whole bytes are one byte shuffle; the others need two shifts. The masks
 * are asm memory operands because the compiler would otherwise pin both in registers
 * and spill state words instead (see b3_avx2.c). A build with AVX enabled gets the VEX
 * form, as mixing in legacy SSE encodings would cost state transitions. */
#ifdef __AVX__
#define B3_PSHUFB "vpshufb %1, %0, %0"
#else
#define B3_PSHUFB "pshufb %1, %0"
#endif

B3_INLINE __m128i b3_rotr16(__m128i x)
{
    __asm__(B3_PSHUFB : "+x"(x) : "m"(*(const __m128i *)b3_rot16_mask));
    return x;
}

B3_INLINE __m128i b3_rotr8(__m128i x)
{
    __asm__(B3_PSHUFB : "+x"(x) : "m"(*(const __m128i *)b3_rot8_mask));
    return x;
}

B3_INLINE __m128i b3_rotr12(__m128i x)
{
    return _mm_or_si128(_mm_srli_epi32(x, 12), _mm_slli_epi32(x, 20));
}

B3_INLINE __m128i b3_rotr7(__m128i x)
{
    return _mm_or_si128(_mm_srli_epi32(x, 7), _mm_slli_epi32(x, 25));
}

/* ---- one block: rows ----------------------------------------------------------------- */

/* G on all four columns (or, after the rotation below, diagonals) at once. */
B3_INLINE void b3_rows_g(__m128i *r0, __m128i *r1, __m128i *r2, __m128i *r3, __m128i x,
                         __m128i y)
{
    *r0 = _mm_add_epi32(_mm_add_epi32(*r0, x), *r1);
    *r3 = b3_rotr16(_mm_xor_si128(*r3, *r0));
    *r2 = _mm_add_epi32(*r2, *r3);
    *r1 = b3_rotr12(_mm_xor_si128(*r1, *r2));
    *r0 = _mm_add_epi32(_mm_add_epi32(*r0, y), *r1);
    *r3 = b3_rotr8(_mm_xor_si128(*r3, *r0));
    *r2 = _mm_add_epi32(*r2, *r3);
    *r1 = b3_rotr7(_mm_xor_si128(*r1, *r2));
}

B3_INLINE void b3_rows_round(__m128i *r0, __m128i *r1, __m128i *r2, __m128i *r3,
                             const uint32_t m[16], const uint8_t o[16])
{
    b3_rows_g(r0, r1, r2, r3, _mm_setr_epi32((int)m[o[0]], (int)m[o[2]], (int)m[o[4]],
                                             (int)m[o[6]]),
              _mm_setr_epi32((int)m[o[1]], (int)m[o[3]], (int)m[o[5]], (int)m[o[7]]));
    /* Rotating rows 1-3 by 1, 2 and 3 words lines the diagonals up as columns. */
    *r1 = _mm_shuffle_epi32(*r1, 0x39);
    *r2 = _mm_shuffle_epi32(*r2, 0x4E);
    *r3 = _mm_shuffle_epi32(*r3, 0x93);
    b3_rows_g(r0, r1, r2, r3, _mm_setr_epi32((int)m[o[8]], (int)m[o[10]], (int)m[o[12]],
                                             (int)m[o[14]]),
              _mm_setr_epi32((int)m[o[9]], (int)m[o[11]], (int)m[o[13]], (int)m[o[15]]));
    *r1 = _mm_shuffle_epi32(*r1, 0x93);
    *r2 = _mm_shuffle_epi32(*r2, 0x4E);
    *r3 = _mm_shuffle_epi32(*r3, 0x39);
}

B3_INLINE void b3_rows_permute(__m128i r[4], const uint32_t cv[8], const uint8_t *block,
                               uint32_t block_len, uint64_t counter, uint32_t flags)
{
    uint32_t m[16];

    memcpy(m, block, sizeof(m)); /* x86 is little-endian, the spec's word order */
    r[0] = _mm_loadu_si128((const __m128i *)cv);
    r[1] = _mm_loadu_si128((const __m128i *)(cv + 4));
    r[2] = _mm_loadu_si128((const __m128i *)b3__iv);
    r[3] = _mm_setr_epi32((int)(uint32_t)counter, (int)(uint32_t)(counter >> 32), (int)block_len,
                          (int)flags);
    /* Spelled out so that every schedule index is a constant after inlining. */
    b3_rows_round(&r[0], &r[1], &r[2], &r[3], m, b3__sched[0]);
    b3_rows_round(&r[0], &r[1], &r[2], &r[3], m, b3__sched[1]);
    b3_rows_round(&r[0], &r[1], &r[2], &r[3], m, b3__sched[2]);
    b3_rows_round(&r[0], &r[1], &r[2], &r[3], m, b3__sched[3]);
    b3_rows_round(&r[0], &r[1], &r[2], &r[3], m, b3__sched[4]);
    b3_rows_round(&r[0], &r[1], &r[2], &r[3], m, b3__sched[5]);
    b3_rows_round(&r[0], &r[1], &r[2], &r[3], m, b3__sched[6]);
}

void b3__compress_sse41(uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN], uint32_t block_len,
                        uint64_t counter, uint32_t flags)
{
    __m128i r[4];

    b3_rows_permute(r, cv, block, block_len, counter, flags);
    _mm_storeu_si128((__m128i *)cv, _mm_xor_si128(r[0], r[2]));
    _mm_storeu_si128((__m128i *)(cv + 4), _mm_xor_si128(r[1], r[3]));
}

void b3__compress_xof_sse41(const uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN],
                            uint32_t block_len, uint64_t counter, uint32_t flags,
                            uint8_t out[B3_BLOCK_LEN])
{
    __m128i r[4];

    b3_rows_permute(r, cv, block, block_len, counter, flags);
    _mm_storeu_si128((__m128i *)out, _mm_xor_si128(r[0], r[2]));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_xor_si128(r[1], r[3]));
    _mm_storeu_si128((__m128i *)(out + 32),
                     _mm_xor_si128(r[2], _mm_loadu_si128((const __m128i *)cv)));
    _mm_storeu_si128((__m128i *)(out + 48),
                     _mm_xor_si128(r[3], _mm_loadu_si128((const __m128i *)(cv + 4))));
}

/* ---- four inputs: one word of each per vector ---------------------------------------- */

B3_INLINE void b3_x4_g(__m128i v[16], int a, int b, int c, int d, __m128i x, __m128i y)
{
    v[a] = _mm_add_epi32(_mm_add_epi32(v[a], x), v[b]);
    v[d] = b3_rotr16(_mm_xor_si128(v[d], v[a]));
    v[c] = _mm_add_epi32(v[c], v[d]);
    v[b] = b3_rotr12(_mm_xor_si128(v[b], v[c]));
    v[a] = _mm_add_epi32(_mm_add_epi32(v[a], y), v[b]);
    v[d] = b3_rotr8(_mm_xor_si128(v[d], v[a]));
    v[c] = _mm_add_epi32(v[c], v[d]);
    v[b] = b3_rotr7(_mm_xor_si128(v[b], v[c]));
}

B3_INLINE void b3_x4_round(__m128i v[16], const __m128i m[16], const uint8_t o[16])
{
    b3_x4_g(v, 0, 4, 8, 12, m[o[0]], m[o[1]]);
    b3_x4_g(v, 1, 5, 9, 13, m[o[2]], m[o[3]]);
    b3_x4_g(v, 2, 6, 10, 14, m[o[4]], m[o[5]]);
    b3_x4_g(v, 3, 7, 11, 15, m[o[6]], m[o[7]]);
    b3_x4_g(v, 0, 5, 10, 15, m[o[8]], m[o[9]]);
    b3_x4_g(v, 1, 6, 11, 12, m[o[10]], m[o[11]]);
    b3_x4_g(v, 2, 7, 8, 13, m[o[12]], m[o[13]]);
    b3_x4_g(v, 3, 4, 9, 14, m[o[14]], m[o[15]]);
}

/* 4x4 transpose of 32-bit words: row i of the input becomes column i. */
B3_INLINE void b3_x4_transpose(__m128i *a, __m128i *b, __m128i *c, __m128i *d)
{
    __m128i ab_lo = _mm_unpacklo_epi32(*a, *b);
    __m128i ab_hi = _mm_unpackhi_epi32(*a, *b);
    __m128i cd_lo = _mm_unpacklo_epi32(*c, *d);
    __m128i cd_hi = _mm_unpackhi_epi32(*c, *d);

    *a = _mm_unpacklo_epi64(ab_lo, cd_lo);
    *b = _mm_unpackhi_epi64(ab_lo, cd_lo);
    *c = _mm_unpacklo_epi64(ab_hi, cd_hi);
    *d = _mm_unpackhi_epi64(ab_hi, cd_hi);
}

/* Input lane i is the 64-byte block at p[i] + off. */
B3_INLINE void b3_x4_load(__m128i m[16], const uint8_t *const p[4], size_t off)
{
    for (int q = 0; q < 4; q++) {
        for (int i = 0; i < 4; i++)
            m[4 * q + i] = _mm_loadu_si128((const __m128i *)(p[i] + off + 16 * q));
        b3_x4_transpose(&m[4 * q], &m[4 * q + 1], &m[4 * q + 2], &m[4 * q + 3]);
    }
}

/* Runs `blocks` consecutive blocks of each lane through the compression function, the
 * first with extra flags `first`, the last with `last`; cv in and out, one word per
 * vector. */
B3_INLINE void b3_x4_blocks(__m128i cv[8], const uint8_t *const p[4], size_t blocks,
                            __m128i ctr_lo, __m128i ctr_hi, uint32_t flags, uint32_t first,
                            uint32_t last)
{
    for (size_t blk = 0; blk < blocks; blk++) {
        uint32_t f = flags | (blk == 0 ? first : 0) | (blk + 1 == blocks ? last : 0);
        __m128i m[16], v[16];

        b3_x4_load(m, p, blk * B3_BLOCK_LEN);
        for (int i = 0; i < 8; i++)
            v[i] = cv[i];
        for (int i = 0; i < 4; i++)
            v[8 + i] = _mm_set1_epi32((int)b3__iv[i]);
        v[12] = ctr_lo;
        v[13] = ctr_hi;
        v[14] = _mm_set1_epi32(B3_BLOCK_LEN);
        v[15] = _mm_set1_epi32((int)f);
        b3_x4_round(v, m, b3__sched[0]);
        b3_x4_round(v, m, b3__sched[1]);
        b3_x4_round(v, m, b3__sched[2]);
        b3_x4_round(v, m, b3__sched[3]);
        b3_x4_round(v, m, b3__sched[4]);
        b3_x4_round(v, m, b3__sched[5]);
        b3_x4_round(v, m, b3__sched[6]);
        for (int i = 0; i < 8; i++)
            cv[i] = _mm_xor_si128(v[i], v[i + 8]);
    }
}

/* Writes the first `lanes` of the four CVs, 32 bytes each. */
B3_INLINE void b3_x4_store(uint8_t *out, __m128i cv[8], size_t lanes)
{
    b3_x4_transpose(&cv[0], &cv[1], &cv[2], &cv[3]);
    b3_x4_transpose(&cv[4], &cv[5], &cv[6], &cv[7]);
    for (size_t i = 0; i < lanes; i++) {
        _mm_storeu_si128((__m128i *)(out + 32 * i), cv[i]);
        _mm_storeu_si128((__m128i *)(out + 32 * i + 16), cv[4 + i]);
    }
}

B3_INLINE void b3_x4_key(__m128i cv[8], const uint32_t key[8])
{
    for (int i = 0; i < 8; i++)
        cv[i] = _mm_set1_epi32((int)key[i]);
}

/* Up to four chunks; lanes beyond n repeat chunk 0 and are not stored. */
static void b3_x4_chunks(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                         uint32_t flags, uint8_t *out)
{
    const uint8_t *p[4];
    uint32_t lo[4], hi[4];
    __m128i cv[8];

    for (size_t i = 0; i < 4; i++) {
        p[i] = in + (i < n ? i : 0) * B3_CHUNK_LEN;
        lo[i] = (uint32_t)(counter + i);
        hi[i] = (uint32_t)((counter + i) >> 32);
    }
    b3_x4_key(cv, key);
    b3_x4_blocks(cv, p, B3__CHUNK_BLOCKS, _mm_loadu_si128((const __m128i *)lo),
                 _mm_loadu_si128((const __m128i *)hi), flags, B3__CHUNK_START, B3__CHUNK_END);
    b3_x4_store(out, cv, n);
}

static void b3_x4_parents(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                          uint8_t *out)
{
    const uint8_t *p[4];
    __m128i cv[8];

    for (size_t i = 0; i < 4; i++)
        p[i] = in + (i < n ? i : 0) * B3_BLOCK_LEN;
    b3_x4_key(cv, key);
    b3_x4_blocks(cv, p, 1, _mm_setzero_si128(), _mm_setzero_si128(), flags | B3__PARENT, 0, 0);
    b3_x4_store(out, cv, n);
}

void b3__chunks_sse41(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                      uint32_t flags, uint8_t *out)
{
    while (n >= 2) {
        size_t k = n < 4 ? n : 4;

        b3_x4_chunks(in, k, key, counter, flags, out);
        in += k * B3_CHUNK_LEN;
        out += 32 * k;
        counter += k;
        n -= k;
    }
    /* A lone chunk is cheaper one block at a time than in a mostly idle 4-way batch. */
    if (n == 1) {
        uint32_t cv[8];

        memcpy(cv, key, sizeof(cv));
        for (int b = 0; b < B3__CHUNK_BLOCKS; b++) {
            uint32_t f = flags;

            if (b == 0)
                f |= B3__CHUNK_START;
            if (b == B3__CHUNK_BLOCKS - 1)
                f |= B3__CHUNK_END;
            b3__compress_sse41(cv, in + b * B3_BLOCK_LEN, B3_BLOCK_LEN, counter, f);
        }
        b3__store_cv(out, cv);
    }
}

void b3__parents_sse41(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                       uint8_t *out)
{
    while (n >= 2) {
        size_t k = n < 4 ? n : 4;

        b3_x4_parents(in, k, key, flags, out);
        in += k * B3_BLOCK_LEN;
        out += 32 * k;
        n -= k;
    }
    if (n == 1) {
        uint32_t cv[8];

        memcpy(cv, key, sizeof(cv));
        b3__compress_sse41(cv, in, B3_BLOCK_LEN, 0, flags | B3__PARENT);
        b3__store_cv(out, cv);
    }
}

#endif
