/* b3_avx512.c - BLAKE3 with AVX-512: chunks (or parents) sixteen at a time, each 512-bit
 * vector holding one state word of sixteen inputs, thirty-two at a time as two such
 * groups interleaved, and single blocks as four 128-bit rows. Compiled with -mavx512f
 * -mavx512vl -mavx512bw; b3.c calls it only on CPUs that report all three.
 *
 * What AVX-512 buys over b3_avx2.c: a rotation is one instruction (vprord) whatever the
 * distance, where AVX2 needs a byte shuffle or two shifts and an OR; and there are 32
 * vector registers, enough for the state of two groups at once.
 *
 * Speed is bound by latency (2 cycles per vector operation on the AMD EPYC this was tuned
 * on): every block is a chain of 7 rounds, and the next block of a chunk waits for it.
 * That is why the message word is added before the chained value, and why two groups
 * run interleaved, so that the CPU always has a second independent chain at hand: one
 * group sustains about 2.4 vector operations per cycle, two about 3 (of 4).
 */
#include "b3_impl.h"

#if B3__X86

#include <immintrin.h>

#define B3_INLINE static inline __attribute__((always_inline))

/* ---- one block: rows ----------------------------------------------------------------- */

/* G on all four columns (or, after the rotation below, diagonals) at once. */
B3_INLINE void b3_rows_g(__m128i *r0, __m128i *r1, __m128i *r2, __m128i *r3, __m128i x,
                         __m128i y)
{
    *r0 = _mm_add_epi32(_mm_add_epi32(*r0, x), *r1);
    *r3 = _mm_ror_epi32(_mm_xor_si128(*r3, *r0), 16);
    *r2 = _mm_add_epi32(*r2, *r3);
    *r1 = _mm_ror_epi32(_mm_xor_si128(*r1, *r2), 12);
    *r0 = _mm_add_epi32(_mm_add_epi32(*r0, y), *r1);
    *r3 = _mm_ror_epi32(_mm_xor_si128(*r3, *r0), 8);
    *r2 = _mm_add_epi32(*r2, *r3);
    *r1 = _mm_ror_epi32(_mm_xor_si128(*r1, *r2), 7);
}

/* msg holds the whole block. One word permute per round gathers the four message
 * vectors the round needs into the four 128-bit lanes, instead of building each from
 * scalars; none of it lies on the state's dependency chain. */
B3_INLINE void b3_rows_round(__m128i r[4], __m512i msg, const uint8_t o[16])
{
    __m512i idx = _mm512_setr_epi32(o[0], o[2], o[4], o[6], o[1], o[3], o[5], o[7], o[8], o[10],
                                    o[12], o[14], o[9], o[11], o[13], o[15]);
    __m512i w = _mm512_permutexvar_epi32(idx, msg);

    b3_rows_g(&r[0], &r[1], &r[2], &r[3], _mm512_castsi512_si128(w),
              _mm512_extracti32x4_epi32(w, 1));
    /* Rotating rows 1-3 by 1, 2 and 3 words lines the diagonals up as columns. */
    r[1] = _mm_shuffle_epi32(r[1], 0x39);
    r[2] = _mm_shuffle_epi32(r[2], 0x4E);
    r[3] = _mm_shuffle_epi32(r[3], 0x93);
    b3_rows_g(&r[0], &r[1], &r[2], &r[3], _mm512_extracti32x4_epi32(w, 2),
              _mm512_extracti32x4_epi32(w, 3));
    r[1] = _mm_shuffle_epi32(r[1], 0x93);
    r[2] = _mm_shuffle_epi32(r[2], 0x4E);
    r[3] = _mm_shuffle_epi32(r[3], 0x39);
}

B3_INLINE void b3_rows_permute(__m128i r[4], const uint32_t cv[8], const uint8_t *block,
                               uint32_t block_len, uint64_t counter, uint32_t flags)
{
    /* x86 is little-endian, the spec's word order, so the block loads as it is. */
    __m512i msg = _mm512_loadu_si512(block);

    r[0] = _mm_loadu_si128((const __m128i *)cv);
    r[1] = _mm_loadu_si128((const __m128i *)(cv + 4));
    r[2] = _mm_loadu_si128((const __m128i *)b3__iv);
    r[3] = _mm_setr_epi32((int)(uint32_t)counter, (int)(uint32_t)(counter >> 32), (int)block_len,
                          (int)flags);
    /* Spelled out so that every schedule index is a constant after inlining. */
    b3_rows_round(r, msg, b3__sched[0]);
    b3_rows_round(r, msg, b3__sched[1]);
    b3_rows_round(r, msg, b3__sched[2]);
    b3_rows_round(r, msg, b3__sched[3]);
    b3_rows_round(r, msg, b3__sched[4]);
    b3_rows_round(r, msg, b3__sched[5]);
    b3_rows_round(r, msg, b3__sched[6]);
}

void b3__compress_avx512(uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN], uint32_t block_len,
                         uint64_t counter, uint32_t flags)
{
    __m128i r[4];

    b3_rows_permute(r, cv, block, block_len, counter, flags);
    _mm_storeu_si128((__m128i *)cv, _mm_xor_si128(r[0], r[2]));
    _mm_storeu_si128((__m128i *)(cv + 4), _mm_xor_si128(r[1], r[3]));
}

void b3__compress_xof_avx512(const uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN],
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

/* ---- sixteen inputs: one word of each per vector -------------------------------------- */

/* The message word is added to a first, as a is ready long before b. The empty asm hides
 * that sum from the compiler, which would otherwise re-associate it into b + x + a and put
 * both additions on the chain behind b. */
B3_INLINE __m512i b3_x16_early_add(__m512i a, __m512i x)
{
    __m512i t = _mm512_add_epi32(a, x);

    __asm__("" : "+v"(t));
    return t;
}

B3_INLINE void b3_x16_g(__m512i v[16], int a, int b, int c, int d, __m512i x, __m512i y)
{
    v[a] = _mm512_add_epi32(b3_x16_early_add(v[a], x), v[b]);
    v[d] = _mm512_ror_epi32(_mm512_xor_si512(v[d], v[a]), 16);
    v[c] = _mm512_add_epi32(v[c], v[d]);
    v[b] = _mm512_ror_epi32(_mm512_xor_si512(v[b], v[c]), 12);
    v[a] = _mm512_add_epi32(b3_x16_early_add(v[a], y), v[b]);
    v[d] = _mm512_ror_epi32(_mm512_xor_si512(v[d], v[a]), 8);
    v[c] = _mm512_add_epi32(v[c], v[d]);
    v[b] = _mm512_ror_epi32(_mm512_xor_si512(v[b], v[c]), 7);
}

/* One round for `groups` (1 or 2) independent groups, alternating G by G so that both
 * chains are in flight together. */
B3_INLINE void b3_x16_round(int groups, __m512i v[][16], const __m512i m[][16],
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
            b3_x16_g(v[k], idx[i][0], idx[i][1], idx[i][2], idx[i][3], m[k][o[2 * i]],
                     m[k][o[2 * i + 1]]);
    }
}

/* 4x4 word transposes inside each 128-bit lane (the unpacks never cross lanes). */
B3_INLINE void b3_x16_transpose(__m512i *a, __m512i *b, __m512i *c, __m512i *d)
{
    __m512i ab_lo = _mm512_unpacklo_epi32(*a, *b);
    __m512i ab_hi = _mm512_unpackhi_epi32(*a, *b);
    __m512i cd_lo = _mm512_unpacklo_epi32(*c, *d);
    __m512i cd_hi = _mm512_unpackhi_epi32(*c, *d);

    *a = _mm512_unpacklo_epi64(ab_lo, cd_lo);
    *b = _mm512_unpackhi_epi64(ab_lo, cd_lo);
    *c = _mm512_unpacklo_epi64(ab_hi, cd_hi);
    *d = _mm512_unpackhi_epi64(ab_hi, cd_hi);
}

/* Input lane k is the 64-byte block at p[k] + off. Lanes i, i + 4, i + 8 and i + 12 share
 * a register, one per 128-bit lane, filled straight from memory; the in-lane transposes
 * then leave word j of lane 4L + i at position 4L + i of vector j, which is the
 * word-per-vector layout without any shuffle across lanes. */
B3_INLINE void b3_x16_load(__m512i m[16], const uint8_t *const p[16], size_t off)
{
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            size_t at = off + 16 * (size_t)q;
            __m512i r = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p[i] + at)));

            r = _mm512_inserti32x4(r, _mm_loadu_si128((const __m128i *)(p[i + 4] + at)), 1);
            r = _mm512_inserti32x4(r, _mm_loadu_si128((const __m128i *)(p[i + 8] + at)), 2);
            r = _mm512_inserti32x4(r, _mm_loadu_si128((const __m128i *)(p[i + 12] + at)), 3);
            m[4 * q + i] = r;
        }
        b3_x16_transpose(&m[4 * q], &m[4 * q + 1], &m[4 * q + 2], &m[4 * q + 3]);
    }
}

/* Where each lane's input starts, and its counter. Read once per block step, so they stay
 * in memory; the chaining values travel separately, in registers. */
struct b3_x16_lanes {
    const uint8_t *p[16];
    uint32_t ctr_lo[16], ctr_hi[16];
};

/* How many blocks ahead each lane's input is prefetched. The lanes are sixteen or thirty-two
 * streams 1 KiB apart, more than the hardware prefetcher follows, and a block step is far
 * longer than the reorder window, so without this every step waits for memory. A step
 * takes 90-150 ns; three steps ahead measured best (one gains little, four less). */
#define B3_PREFETCH_BLOCKS 3

B3_INLINE void b3_x16_prefetch(const uint8_t *p)
{
    _mm_prefetch((const char *)p, _MM_HINT_T0);
}

/* Prefetches block `blk` + B3_PREFETCH_BLOCKS of every lane while there is one, and then
 * the first blocks of the `next_n` inputs that follow at `next`, `stride` bytes apart, so
 * that the next batch of the same call does not start by waiting for memory. */
B3_INLINE void b3_x16_prefetch_ahead(int groups, const struct b3_x16_lanes *ln, size_t blk,
                                     size_t blocks, const uint8_t *next, size_t next_n,
                                     size_t stride)
{
    size_t ahead = blk + B3_PREFETCH_BLOCKS;

    if (ahead < blocks) {
#pragma GCC unroll 2
        for (int k = 0; k < groups; k++) {
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                b3_x16_prefetch(ln[k].p[i] + ahead * B3_BLOCK_LEN);
        }
        return;
    }
    for (size_t i = 0; i < next_n; i++)
        b3_x16_prefetch(next + i * stride + (ahead - blocks) * B3_BLOCK_LEN);
}

/* Runs `blocks` consecutive blocks of every lane of `groups` groups through the
 * compression function, chaining values in cv; the first block gets the extra flags
 * `first`, the last `last`. next and next_n are for b3_x16_prefetch_ahead. */
B3_INLINE void b3_x16_blocks(int groups, const struct b3_x16_lanes *ln, __m512i cv[][8],
                             size_t blocks, uint32_t flags, uint32_t first, uint32_t last,
                             const uint8_t *next, size_t next_n, size_t stride)
{
    for (size_t blk = 0; blk < blocks; blk++) {
        uint32_t f = flags | (blk == 0 ? first : 0) | (blk + 1 == blocks ? last : 0);
        const struct b3_x16_lanes *lm = ln;
        const uint32_t *iv = b3__iv;
        __m512i m[2][16], v[2][16];

        /* Two groups need all 32 vector registers for their state. The compiler would
         * hoist the IV broadcasts and counters out of the loop and keep them in registers,
         * then spill state words in the middle of rounds instead, which puts a store and a
         * reload on the chain. Reading them through pointers it cannot see through keeps
         * them in memory: one load each per block. */
        __asm__("" : "+r"(iv), "+r"(lm));
#pragma GCC unroll 2
        for (int k = 0; k < groups; k++) {
            b3_x16_load(m[k], ln[k].p, blk * B3_BLOCK_LEN);
            /* After the loads: issued first, the prefetches hold up this step's misses. */
            if (k == groups - 1)
                b3_x16_prefetch_ahead(groups, ln, blk, blocks, next, next_n, stride);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                v[k][i] = cv[k][i];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                v[k][8 + i] = _mm512_set1_epi32((int)iv[i]);
            v[k][12] = _mm512_loadu_si512(lm[k].ctr_lo);
            v[k][13] = _mm512_loadu_si512(lm[k].ctr_hi);
            v[k][14] = _mm512_set1_epi32(B3_BLOCK_LEN);
            v[k][15] = _mm512_set1_epi32((int)f);
        }
        b3_x16_round(groups, v, m, b3__sched[0]);
        b3_x16_round(groups, v, m, b3__sched[1]);
        b3_x16_round(groups, v, m, b3__sched[2]);
        b3_x16_round(groups, v, m, b3__sched[3]);
        b3_x16_round(groups, v, m, b3__sched[4]);
        b3_x16_round(groups, v, m, b3__sched[5]);
        b3_x16_round(groups, v, m, b3__sched[6]);
#pragma GCC unroll 2
        for (int k = 0; k < groups; k++) {
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                cv[k][i] = _mm512_xor_si512(v[k][i], v[k][i + 8]);
        }
    }
}

/* Writes the chaining values of the first `lanes` lanes, 32 bytes each. */
B3_INLINE void b3_x16_store(uint8_t *out, __m512i cv[8], size_t lanes)
{
    __m512i lo[4], hi[4];

    b3_x16_transpose(&cv[0], &cv[1], &cv[2], &cv[3]);
    b3_x16_transpose(&cv[4], &cv[5], &cv[6], &cv[7]);
    /* Now 128-bit lane L of cv[i] holds words 0-3 of input 4L + i, and of cv[4 + i] its
     * words 4-7. Pair those halves up, lanes 0-1 in lo and 2-3 in hi: */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        lo[i] = _mm512_shuffle_i32x4(cv[i], cv[4 + i], _MM_SHUFFLE(1, 0, 1, 0));
        hi[i] = _mm512_shuffle_i32x4(cv[i], cv[4 + i], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* then each 64-byte vector holds two neighbouring inputs, 4L + i and 4L + i + 1 (i even).
     * Plain stores, whole or the low half, rather than masked ones: the next tree level
     * loads these CVs right away, and a masked store cannot forward to those loads. */
#pragma GCC unroll 2
    for (int i = 0; i < 4; i += 2) {
#pragma GCC unroll 4
        for (int l = 0; l < 4; l++) {
            const __m512i *src = l < 2 ? lo : hi;
            size_t lane = 4 * (size_t)l + (size_t)i;
            __m512i w = l % 2 == 0
                            ? _mm512_shuffle_i32x4(src[i], src[i + 1], _MM_SHUFFLE(2, 0, 2, 0))
                            : _mm512_shuffle_i32x4(src[i], src[i + 1], _MM_SHUFFLE(3, 1, 3, 1));

            if (lane + 1 < lanes)
                _mm512_storeu_si512(out + 32 * lane, w);
            else if (lane < lanes)
                _mm256_storeu_si256((__m256i *)(out + 32 * lane), _mm512_castsi512_si256(w));
        }
    }
}

/* Lanes beyond n repeat input 0 (any readable input does) and are not stored. The counters
 * are built in vector registers: sixteen scalar stores read back as one vector miss store
 * forwarding, and a tree level would wait for that. */
B3_INLINE void b3_x16_setup(struct b3_x16_lanes *ln, __m512i cv[8], const uint8_t *in, size_t n,
                            size_t stride, const uint32_t key[8], uint64_t counter, int count_up)
{
    __m512i lo = _mm512_set1_epi32((int)(uint32_t)counter);
    __m512i hi = _mm512_set1_epi32((int)(uint32_t)(counter >> 32));

#pragma GCC unroll 16
    for (size_t i = 0; i < 16; i++)
        ln->p[i] = in + (i < n ? i : 0) * stride;
    if (count_up) {
        __m512i up = _mm512_add_epi32(lo, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                             11, 12, 13, 14, 15));

        /* Lanes whose low word wrapped around carry into the high word. */
        hi = _mm512_mask_add_epi32(hi, _mm512_cmplt_epu32_mask(up, lo), hi,
                                   _mm512_set1_epi32(1));
        lo = up;
    }
    _mm512_storeu_si512(ln->ctr_lo, lo);
    _mm512_storeu_si512(ln->ctr_hi, hi);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        cv[i] = _mm512_set1_epi32((int)key[i]);
}

/* 1..32 inputs, `stride` bytes apart, of `blocks` blocks each, then `rest` more inputs
 * (only prefetched here); more than sixteen take both groups. */
B3_INLINE void b3_x16_run(const uint8_t *in, size_t n, size_t rest, size_t stride,
                          size_t blocks, const uint32_t key[8], uint64_t counter, int count_up,
                          uint32_t flags, uint32_t first, uint32_t last, uint8_t *out)
{
    const uint8_t *next = in + n * stride;
    size_t next_n = rest < 32 ? rest : 32;
    struct b3_x16_lanes ln[2];
    __m512i cv[2][8];

    if (n <= 16) {
        b3_x16_setup(&ln[0], cv[0], in, n, stride, key, counter, count_up);
        b3_x16_blocks(1, ln, cv, blocks, flags, first, last, next, next_n, stride);
        b3_x16_store(out, cv[0], n);
        return;
    }
    b3_x16_setup(&ln[0], cv[0], in, 16, stride, key, counter, count_up);
    b3_x16_setup(&ln[1], cv[1], in + 16 * stride, n - 16, stride, key,
                 counter + (count_up ? 16 : 0), count_up);
    b3_x16_blocks(2, ln, cv, blocks, flags, first, last, next, next_n, stride);
    b3_x16_store(out, cv[0], 16);
    b3_x16_store(out + 16 * 32, cv[1], n - 16);
}

/* Each of these holds one copy of the one-group and of the two-group code, whatever the
 * number of callers. */
static void b3_x16_chunks(const uint8_t *in, size_t n, size_t rest, const uint32_t key[8],
                          uint64_t counter, uint32_t flags, uint8_t *out)
{
    b3_x16_run(in, n, rest, B3_CHUNK_LEN, B3__CHUNK_BLOCKS, key, counter, 1, flags,
               B3__CHUNK_START, B3__CHUNK_END, out);
}

/* Parents read the CVs just written, which are in cache: nothing to prefetch. */
static void b3_x16_parents(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                           uint8_t *out)
{
    b3_x16_run(in, n, 0, B3_BLOCK_LEN, 1, key, 0, 0, flags | B3__PARENT, 0, 0, out);
}

/* Batches of up to 32. A partly filled group takes as long as a full one, so even a lone
 * input goes through one: that measured 7% quicker than the rows, whose diagonal shuffles
 * lengthen the chain, and the last levels of a tree are lone parents on the critical path. */
void b3__chunks_avx512(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                       uint32_t flags, uint8_t *out)
{
    while (n > 0) {
        size_t k = n < 32 ? n : 32;

        b3_x16_chunks(in, k, n - k, key, counter, flags, out);
        in += k * B3_CHUNK_LEN;
        out += 32 * k;
        counter += k;
        n -= k;
    }
}

void b3__parents_avx512(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                        uint8_t *out)
{
    while (n > 0) {
        size_t k = n < 32 ? n : 32;

        b3_x16_parents(in, k, key, flags, out);
        in += k * B3_BLOCK_LEN;
        out += 32 * k;
        n -= k;
    }
}

#endif
