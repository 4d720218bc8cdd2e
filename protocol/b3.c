/* b3.c - BLAKE3: portable compression, the tree hasher, the three modes and the choice
 * of implementation.
 *
 * Written from the BLAKE3 specification. The tree is built from 1 KiB chunks; a node
 * is only compressed as the root once it is known that nothing follows it, which is why
 * both the hasher and the one-shot path keep the right-most node pending until the end.
 */
#include "b3.h"
#include "b3_impl.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

const uint32_t b3__iv[8] = {
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
};

/* ---- portable compression ---------------------------------------------------------- */

static inline uint32_t b3_rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static inline void b3_g(uint32_t s[16], int a, int b, int c, int d, uint32_t x, uint32_t y)
{
    s[a] = s[a] + s[b] + x;
    s[d] = b3_rotr(s[d] ^ s[a], 16);
    s[c] = s[c] + s[d];
    s[b] = b3_rotr(s[b] ^ s[c], 12);
    s[a] = s[a] + s[b] + y;
    s[d] = b3_rotr(s[d] ^ s[a], 8);
    s[c] = s[c] + s[d];
    s[b] = b3_rotr(s[b] ^ s[c], 7);
}

static inline void b3_round(uint32_t s[16], const uint32_t m[16], const uint8_t o[16])
{
    b3_g(s, 0, 4, 8, 12, m[o[0]], m[o[1]]);
    b3_g(s, 1, 5, 9, 13, m[o[2]], m[o[3]]);
    b3_g(s, 2, 6, 10, 14, m[o[4]], m[o[5]]);
    b3_g(s, 3, 7, 11, 15, m[o[6]], m[o[7]]);
    b3_g(s, 0, 5, 10, 15, m[o[8]], m[o[9]]);
    b3_g(s, 1, 6, 11, 12, m[o[10]], m[o[11]]);
    b3_g(s, 2, 7, 8, 13, m[o[12]], m[o[13]]);
    b3_g(s, 3, 4, 9, 14, m[o[14]], m[o[15]]);
}

static inline void b3_permute_state(uint32_t s[16], const uint32_t cv[8], const uint8_t *block,
                                    uint32_t block_len, uint64_t counter, uint32_t flags)
{
    uint32_t m[16];

    for (int i = 0; i < 16; i++)
        m[i] = b3__load32(block + 4 * i);
    for (int i = 0; i < 8; i++)
        s[i] = cv[i];
    for (int i = 0; i < 4; i++)
        s[8 + i] = b3__iv[i];
    s[12] = (uint32_t)counter;
    s[13] = (uint32_t)(counter >> 32);
    s[14] = block_len;
    s[15] = flags;
    /* Spelled out so that every schedule index is a constant after inlining. */
    b3_round(s, m, b3__sched[0]);
    b3_round(s, m, b3__sched[1]);
    b3_round(s, m, b3__sched[2]);
    b3_round(s, m, b3__sched[3]);
    b3_round(s, m, b3__sched[4]);
    b3_round(s, m, b3__sched[5]);
    b3_round(s, m, b3__sched[6]);
}

void b3__compress_portable(uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN], uint32_t block_len,
                           uint64_t counter, uint32_t flags)
{
    uint32_t s[16];

    b3_permute_state(s, cv, block, block_len, counter, flags);
    for (int i = 0; i < 8; i++)
        cv[i] = s[i] ^ s[i + 8];
}

void b3__compress_xof_portable(const uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN],
                               uint32_t block_len, uint64_t counter, uint32_t flags,
                               uint8_t out[B3_BLOCK_LEN])
{
    uint32_t s[16];

    b3_permute_state(s, cv, block, block_len, counter, flags);
    for (int i = 0; i < 8; i++) {
        b3__store32(out + 4 * i, s[i] ^ s[i + 8]);
        b3__store32(out + 32 + 4 * i, s[i + 8] ^ cv[i]);
    }
}

void b3__chunks_portable(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                         uint32_t flags, uint8_t *out)
{
    for (size_t c = 0; c < n; c++) {
        uint32_t cv[8];

        memcpy(cv, key, sizeof(cv));
        for (int b = 0; b < B3__CHUNK_BLOCKS; b++) {
            uint32_t f = flags;

            if (b == 0)
                f |= B3__CHUNK_START;
            if (b == B3__CHUNK_BLOCKS - 1)
                f |= B3__CHUNK_END;
            b3__compress_portable(cv, in + c * B3_CHUNK_LEN + b * B3_BLOCK_LEN, B3_BLOCK_LEN,
                                  counter + c, f);
        }
        b3__store_cv(out + 32 * c, cv);
    }
}

void b3__parents_portable(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                          uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t cv[8];

        memcpy(cv, key, sizeof(cv));
        b3__compress_portable(cv, in + B3_BLOCK_LEN * i, B3_BLOCK_LEN, 0, flags | B3__PARENT);
        b3__store_cv(out + 32 * i, cv);
    }
}

/* ---- choosing an implementation ----------------------------------------------------- */

struct b3_ops {
    void (*compress)(uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN], uint32_t block_len,
                     uint64_t counter, uint32_t flags);
    void (*compress_xof)(const uint32_t cv[8], const uint8_t block[B3_BLOCK_LEN],
                         uint32_t block_len, uint64_t counter, uint32_t flags,
                         uint8_t out[B3_BLOCK_LEN]);
    void (*chunks)(const uint8_t *in, size_t n, const uint32_t key[8], uint64_t counter,
                   uint32_t flags, uint8_t *out);
    void (*parents)(const uint8_t *in, size_t n, const uint32_t key[8], uint32_t flags,
                    uint8_t *out);
};

static const struct b3_ops b3_ops_table[] = {
    [B3_IMPL_PORTABLE] = {b3__compress_portable, b3__compress_xof_portable, b3__chunks_portable,
                          b3__parents_portable},
#if B3__X86
    [B3_IMPL_SSE41] = {b3__compress_sse41, b3__compress_xof_sse41, b3__chunks_sse41,
                       b3__parents_sse41},
    /* Single blocks gain nothing from wider vectors, so AVX2 shares SSE4.1's. */
    [B3_IMPL_AVX2] = {b3__compress_sse41, b3__compress_xof_sse41, b3__chunks_avx2,
                      b3__parents_avx2},
    [B3_IMPL_AVX512] = {b3__compress_avx512, b3__compress_xof_avx512, b3__chunks_avx512,
                        b3__parents_avx512},
#else
    [B3_IMPL_SSE41] = {b3__compress_portable, b3__compress_xof_portable, b3__chunks_portable,
                       b3__parents_portable},
    [B3_IMPL_AVX2] = {b3__compress_portable, b3__compress_xof_portable, b3__chunks_portable,
                      b3__parents_portable},
    [B3_IMPL_AVX512] = {b3__compress_portable, b3__compress_xof_portable, b3__chunks_portable,
                        b3__parents_portable},
#endif
};

static const char *const b3_names[] = {
    [B3_IMPL_PORTABLE] = "portable",
    [B3_IMPL_SSE41] = "sse41",
    [B3_IMPL_AVX2] = "avx2",
    [B3_IMPL_AVX512] = "avx512",
};

#define B3_IMPL_COUNT ((int)(sizeof(b3_names) / sizeof(b3_names[0])))

/* -1 until the first hash (or b3_force_impl) decides; atomic so that threads racing
 * through the first use agree without a lock. */
static atomic_int b3_current = -1;

static int b3_cpu_has(enum b3_impl impl)
{
#if B3__X86
    __builtin_cpu_init();
    switch (impl) {
    case B3_IMPL_PORTABLE:
        return 1;
    case B3_IMPL_SSE41:
        return __builtin_cpu_supports("sse4.1");
    case B3_IMPL_AVX2:
        /* The AVX2 code hands its leftovers to the SSE4.1 code. */
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("sse4.1");
    case B3_IMPL_AVX512:
        /* b3_avx512.c is compiled for all three subsets, so the compiler may use any of
         * them; AVX2 is implied by every CPU that has them, and checked so that each
         * level keeps including the ones below it. */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && b3_cpu_has(B3_IMPL_AVX2);
    }
    return 0;
#else
    return impl == B3_IMPL_PORTABLE;
#endif
}

enum b3_impl b3_impl_best(void)
{
    if (b3_cpu_has(B3_IMPL_AVX512))
        return B3_IMPL_AVX512;
    if (b3_cpu_has(B3_IMPL_AVX2))
        return B3_IMPL_AVX2;
    if (b3_cpu_has(B3_IMPL_SSE41))
        return B3_IMPL_SSE41;
    return B3_IMPL_PORTABLE;
}

static int b3_choose(void)
{
    const char *want = getenv("SHOAL_B3_IMPL");

    /* An unknown or unsupported name is ignored: the variable only exists to compare
     * implementations, and a wrong one must not make hashing fail. */
    if (want) {
        for (int i = 0; i < B3_IMPL_COUNT; i++) {
            if (strcmp(want, b3_names[i]) == 0 && b3_cpu_has((enum b3_impl)i))
                return i;
        }
    }
    return (int)b3_impl_best();
}

static const struct b3_ops *b3_ops_get(void)
{
    int cur = atomic_load_explicit(&b3_current, memory_order_relaxed);

    if (cur < 0) {
        int expected = -1;

        cur = b3_choose();
        /* Whoever stored first wins, so every caller uses the same implementation. */
        if (!atomic_compare_exchange_strong(&b3_current, &expected, cur))
            cur = expected;
    }
    return &b3_ops_table[cur];
}

enum b3_impl b3_impl_get(void)
{
    return (enum b3_impl)(b3_ops_get() - b3_ops_table);
}

const char *b3_impl_name(enum b3_impl impl)
{
    if ((int)impl < 0 || (int)impl >= B3_IMPL_COUNT)
        return "unknown";
    return b3_names[impl];
}

int b3_force_impl(enum b3_impl impl)
{
    if ((int)impl < 0 || (int)impl >= B3_IMPL_COUNT)
        return -EINVAL;
    if (!b3_cpu_has(impl))
        return -ENOTSUP;
    atomic_store(&b3_current, (int)impl);
    return 0;
}

/* ---- tree ---------------------------------------------------------------------------- */

/* The largest run of chunks hashed as one unit: an aligned subtree in b3_update and the
 * whole message in one-shot hashing up to this size (Shoal's messages are at most
 * 128 KiB). Bounds the CV scratch space on the stack to 6 KiB. */
#define B3_SPAN_CHUNKS 128

/* A node whose final compression is still pending: the last block of a chunk, or a
 * parent. Kept whole because only the caller knows whether it is the root. */
struct b3_node {
    uint32_t cv[8];
    uint8_t block[B3_BLOCK_LEN];
    uint64_t counter;
    uint32_t block_len;
    uint32_t flags;
};

static void b3_node_cv(const struct b3_ops *ops, const struct b3_node *node, uint8_t out[32])
{
    uint32_t cv[8];

    memcpy(cv, node->cv, sizeof(cv));
    ops->compress(cv, node->block, node->block_len, node->counter, node->flags);
    b3__store_cv(out, cv);
}

static void b3_node_parent(struct b3_node *node, const uint32_t key[8], uint32_t flags,
                           const uint8_t pair[B3_BLOCK_LEN])
{
    memcpy(node->cv, key, sizeof(node->cv));
    memcpy(node->block, pair, B3_BLOCK_LEN);
    node->counter = 0;
    node->block_len = B3_BLOCK_LEN;
    node->flags = flags | B3__PARENT;
}

/* Root output: the root node compressed again and again with the output block number as
 * the counter (the extendable output). */
static void b3_node_root(const struct b3_ops *ops, const struct b3_node *node, uint8_t *out,
                         size_t out_len)
{
    uint8_t blk[B3_BLOCK_LEN];
    uint64_t t = 0;

    while (out_len > 0) {
        size_t n = out_len < B3_BLOCK_LEN ? out_len : B3_BLOCK_LEN;

        ops->compress_xof(node->cv, node->block, node->block_len, t, node->flags | B3__ROOT,
                          blk);
        memcpy(out, blk, n);
        out += n;
        out_len -= n;
        t++;
    }
}

/* Chunk of 0..1024 bytes: compresses all but its last block and leaves that pending. */
static void b3_chunk_node(const struct b3_ops *ops, struct b3_node *node, const uint32_t key[8],
                          uint32_t flags, const uint8_t *data, size_t len, uint64_t counter)
{
    size_t blocks = len == 0 ? 1 : (len + B3_BLOCK_LEN - 1) / B3_BLOCK_LEN;
    size_t last = len - (blocks - 1) * B3_BLOCK_LEN;

    memcpy(node->cv, key, sizeof(node->cv));
    for (size_t b = 0; b + 1 < blocks; b++)
        ops->compress(node->cv, data + b * B3_BLOCK_LEN, B3_BLOCK_LEN, counter,
                      flags | (b == 0 ? B3__CHUNK_START : 0));
    memset(node->block, 0, sizeof(node->block));
    if (last > 0)
        memcpy(node->block, data + (blocks - 1) * B3_BLOCK_LEN, last);
    node->counter = counter;
    node->block_len = (uint32_t)last;
    node->flags = flags | B3__CHUNK_END | (blocks == 1 ? B3__CHUNK_START : 0);
}

/* Pairs up neighbouring CVs level by level, an odd one out moving up unchanged, until at
 * most `stop` remain. This builds exactly the spec's tree (left subtrees hold the largest
 * power of two of chunks). a holds *n CVs, b room for half of them; returns the buffer
 * that holds the survivors. */
static uint8_t *b3_reduce(const struct b3_ops *ops, const uint32_t key[8], uint32_t flags,
                          uint8_t *a, uint8_t *b, size_t *n, size_t stop)
{
    while (*n > stop) {
        size_t pairs = *n / 2;
        uint8_t *t;

        ops->parents(a, pairs, key, flags, b);
        if (*n & 1)
            memcpy(b + 32 * pairs, a + 32 * (*n - 1), 32);
        *n = pairs + (*n & 1);
        t = a;
        a = b;
        b = t;
    }
    return a;
}

static unsigned b3_popcount(uint64_t x)
{
    return (unsigned)__builtin_popcountll(x);
}

/* Adds the CV of the subtree of `chunks` chunks that starts at h->chunk_counter. Merging
 * at once is safe because the chunk in progress (there always is one when this runs)
 * lies to the right of everything merged here, so none of these parents is the root. The
 * stack then holds one CV per set bit of the chunk count, largest subtree first. */
static void b3_push(struct b3_hasher *h, const struct b3_ops *ops, const uint8_t cv[32],
                    uint64_t chunks)
{
    memcpy(h->cv_stack + 32 * h->cv_stack_len, cv, 32);
    h->cv_stack_len++;
    h->chunk_counter += chunks;
    while (h->cv_stack_len > b3_popcount(h->chunk_counter)) {
        uint8_t *pair = h->cv_stack + 32 * (h->cv_stack_len - 2);
        uint8_t merged[32];

        ops->parents(pair, 1, h->key, h->flags, merged);
        memcpy(pair, merged, 32);
        h->cv_stack_len--;
    }
}

/* Hashes n whole chunks at the chunk boundary h->chunk_counter, as subtrees of up to
 * B3_SPAN_CHUNKS chunks. The caller guarantees more input follows, so none is the root. */
static void b3_absorb_chunks(struct b3_hasher *h, const struct b3_ops *ops, const uint8_t *in,
                             uint64_t n)
{
    uint8_t a[32 * B3_SPAN_CHUNKS], b[16 * B3_SPAN_CHUNKS];

    while (n > 0) {
        uint64_t size = B3_SPAN_CHUNKS;
        size_t left;
        uint8_t *top;

        while (size > n)
            size >>= 1;
        /* A subtree is a node of the tree only if it starts at a multiple of its size. */
        while (h->chunk_counter & (size - 1))
            size >>= 1;
        ops->chunks(in, (size_t)size, h->key, h->chunk_counter, h->flags, a);
        left = (size_t)size;
        top = b3_reduce(ops, h->key, h->flags, a, b, &left, 1);
        b3_push(h, ops, top, size);
        in += size * B3_CHUNK_LEN;
        n -= size;
    }
}

/* Folds the pending right-most node with the stack (right to left) and writes the root
 * output. */
static void b3_fold_root(const struct b3_ops *ops, const struct b3_hasher *h,
                         struct b3_node *node, uint8_t *out, size_t out_len)
{
    for (size_t i = h->cv_stack_len; i-- > 0;) {
        uint8_t pair[B3_BLOCK_LEN];

        memcpy(pair, h->cv_stack + 32 * i, 32);
        b3_node_cv(ops, node, pair + 32);
        b3_node_parent(node, h->key, h->flags, pair);
    }
    b3_node_root(ops, node, out, out_len);
}

/* ---- the hasher ------------------------------------------------------------------------ */

static void b3_init_words(struct b3_hasher *h, const uint32_t key[8], uint8_t flags)
{
    memcpy(h->key, key, sizeof(h->key));
    memcpy(h->cv, key, sizeof(h->cv));
    h->chunk_counter = 0;
    h->buf_len = 0;
    h->blocks_done = 0;
    h->flags = flags;
    h->cv_stack_len = 0;
}

static void b3_key_words(uint32_t words[8], const uint8_t key[B3_KEY_LEN])
{
    for (int i = 0; i < 8; i++)
        words[i] = b3__load32(key + 4 * i);
}

void b3_init(struct b3_hasher *h)
{
    b3_init_words(h, b3__iv, 0);
}

void b3_init_keyed(struct b3_hasher *h, const uint8_t key[static B3_KEY_LEN])
{
    uint32_t words[8];

    b3_key_words(words, key);
    b3_init_words(h, words, B3__KEYED_HASH);
}

void b3_init_derive_key(struct b3_hasher *h, const char *context)
{
    struct b3_hasher ctx;
    uint8_t context_key[B3_KEY_LEN];
    uint32_t words[8];

    b3_init_words(&ctx, b3__iv, B3__DERIVE_KEY_CONTEXT);
    b3_update(&ctx, context, strlen(context));
    b3_final(&ctx, context_key, sizeof(context_key));
    b3_key_words(words, context_key);
    b3_init_words(h, words, B3__DERIVE_KEY_MATERIAL);
}

static uint32_t b3_block_flags(const struct b3_hasher *h)
{
    return h->flags | (h->blocks_done == 0 ? B3__CHUNK_START : 0);
}

/* The full chunk in progress is followed by more input: finish it and start the next. */
static void b3_chunk_done(struct b3_hasher *h, const struct b3_ops *ops)
{
    uint8_t cv[32];

    ops->compress(h->cv, h->buf, B3_BLOCK_LEN, h->chunk_counter,
                  b3_block_flags(h) | B3__CHUNK_END);
    b3__store_cv(cv, h->cv);
    b3_push(h, ops, cv, 1);
    memcpy(h->cv, h->key, sizeof(h->cv));
    h->blocks_done = 0;
    h->buf_len = 0;
}

void b3_update(struct b3_hasher *h, const void *data, size_t len)
{
    const struct b3_ops *ops;
    const uint8_t *in = data;

    if (len == 0)
        return;
    ops = b3_ops_get();
    while (len > 0) {
        size_t have = (size_t)h->blocks_done * B3_BLOCK_LEN + h->buf_len;
        size_t take;

        if (have == B3_CHUNK_LEN) {
            b3_chunk_done(h, ops);
            have = 0;
        }
        if (have == 0 && len > B3_CHUNK_LEN) {
            /* Whole chunks straight from the input, minus the last one or part of one:
             * it stays in the hasher as it may yet turn out to be the root. */
            size_t n = (len - 1) / B3_CHUNK_LEN;

            b3_absorb_chunks(h, ops, in, n);
            in += n * B3_CHUNK_LEN;
            len -= n * B3_CHUNK_LEN;
            continue;
        }
        /* A full block is compressed only once more input shows it is not the chunk's
         * last, which needs the CHUNK_END flag. */
        if (h->buf_len == B3_BLOCK_LEN) {
            ops->compress(h->cv, h->buf, B3_BLOCK_LEN, h->chunk_counter, b3_block_flags(h));
            h->blocks_done++;
            h->buf_len = 0;
        }
        if (h->buf_len == 0) {
            while (len > B3_BLOCK_LEN && h->blocks_done < B3__CHUNK_BLOCKS - 1) {
                ops->compress(h->cv, in, B3_BLOCK_LEN, h->chunk_counter, b3_block_flags(h));
                h->blocks_done++;
                in += B3_BLOCK_LEN;
                len -= B3_BLOCK_LEN;
            }
        }
        take = B3_BLOCK_LEN - h->buf_len;
        if (take > len)
            take = len;
        memcpy(h->buf + h->buf_len, in, take);
        h->buf_len = (uint8_t)(h->buf_len + take);
        in += take;
        len -= take;
    }
}

void b3_final(const struct b3_hasher *h, uint8_t *out, size_t out_len)
{
    const struct b3_ops *ops = b3_ops_get();
    struct b3_node node;

    memcpy(node.cv, h->cv, sizeof(node.cv));
    memset(node.block, 0, sizeof(node.block));
    memcpy(node.block, h->buf, h->buf_len);
    node.counter = h->chunk_counter;
    node.block_len = h->buf_len;
    node.flags = b3_block_flags(h) | B3__CHUNK_END;
    b3_fold_root(ops, h, &node, out, out_len);
}

/* ---- one-shot ------------------------------------------------------------------------- */

/* The last `chunks` (2..B3_SPAN_CHUNKS) chunks of a message, starting at chunk `counter`:
 * all chunk CVs at once (the last chunk may be partial), then the levels of their
 * subtree, leaving its top parent pending in *node. */
static void b3_tail_node(const struct b3_ops *ops, struct b3_node *node, const uint32_t key[8],
                         uint32_t flags, const uint8_t *in, size_t len, uint64_t counter)
{
    uint8_t a[32 * B3_SPAN_CHUNKS], b[16 * B3_SPAN_CHUNKS];
    size_t n = (len + B3_CHUNK_LEN - 1) / B3_CHUNK_LEN;
    size_t whole = len / B3_CHUNK_LEN;
    uint8_t *top;

    ops->chunks(in, whole, key, counter, flags, a);
    if (whole < n) {
        struct b3_node last;

        b3_chunk_node(ops, &last, key, flags, in + whole * B3_CHUNK_LEN,
                      len - whole * B3_CHUNK_LEN, counter + whole);
        b3_node_cv(ops, &last, a + 32 * whole);
    }
    top = b3_reduce(ops, key, flags, a, b, &n, 2);
    b3_node_parent(node, key, flags, top);
}

static void b3_oneshot(const uint32_t key[8], uint32_t flags, const uint8_t *in, size_t len,
                       uint8_t *out, size_t out_len)
{
    const struct b3_ops *ops = b3_ops_get();
    uint64_t chunks = len == 0 ? 1 : (len + B3_CHUNK_LEN - 1) / B3_CHUNK_LEN;
    struct b3_node node;
    struct b3_hasher h;
    uint64_t head;

    if (chunks == 1) {
        b3_chunk_node(ops, &node, key, flags, in, len, 0);
        b3_node_root(ops, &node, out, out_len);
        return;
    }
    if (chunks <= B3_SPAN_CHUNKS) {
        b3_tail_node(ops, &node, key, flags, in, len, 0);
        b3_node_root(ops, &node, out, out_len);
        return;
    }
    /* Longer: whole spans through the hasher's stack, then a tail of 1..B3_SPAN_CHUNKS
     * chunks. Every stacked subtree is at least a span, so the tail's subtree is the
     * right neighbour of the smallest one and the fold below builds the spec's tree. */
    b3_init_words(&h, key, (uint8_t)flags);
    head = (chunks - 1) / B3_SPAN_CHUNKS * B3_SPAN_CHUNKS;
    b3_absorb_chunks(&h, ops, in, head);
    in += head * B3_CHUNK_LEN;
    len -= head * B3_CHUNK_LEN;
    if (len <= B3_CHUNK_LEN)
        b3_chunk_node(ops, &node, key, flags, in, len, h.chunk_counter);
    else
        b3_tail_node(ops, &node, key, flags, in, len, h.chunk_counter);
    b3_fold_root(ops, &h, &node, out, out_len);
}

void b3_hash(const void *data, size_t len, uint8_t out[static B3_OUT_LEN])
{
    b3_oneshot(b3__iv, 0, data, len, out, B3_OUT_LEN);
}

void b3_keyed(const uint8_t key[static B3_KEY_LEN], const void *data, size_t len,
              uint8_t out[static B3_OUT_LEN])
{
    uint32_t words[8];

    b3_key_words(words, key);
    b3_oneshot(words, B3__KEYED_HASH, data, len, out, B3_OUT_LEN);
}
