/* chunker.c - Xet gear-hash content-defined chunking.
 *
 * DESIGN. A chunk goes through three stretches:
 *
 *   len < SKIP_END     bytes are not hashed at all. The hash depends only on the last
 *                      64 bytes (each step shifts older bytes out), so hashing can start
 *                      64 bytes before the first position that may cut: at that point h
 *                      equals what hashing from the chunk start would give. This is
 *                      xet-core's skip, and it saves an eighth of the work on average.
 *   len < CHUNK_MIN    bytes are hashed but a hit does not cut (the current rule).
 *   otherwise          every byte is hashed and tested, up to CHUNK_MAX.
 *
 * The last stretch is the hot loop. The hash chain h -> (h << 1) + T[b] is serial, so
 * the loop is unrolled to keep the table loads off the critical path; the hit test is
 * "h < 2^48", one compare and a well-predicted branch per byte.
 */
#include "chunker.h"

#include "gear_table.h"
#include "proto_limits.h"

#define CHUNK_MIN PROTO_CHUNK_MIN
#define CHUNK_MAX PROTO_CHUNK_MAX
/* First byte to hash: 64 bytes of history before the first byte that may cut. */
#define SKIP_END  (CHUNK_MIN - 64 - 1)
/* A hit is a hash whose top 16 bits are zero (mask 0xFFFF000000000000). */
#define HIT_BOUND (UINT64_C(1) << 48)

void chunker_init(struct chunker *c)
{
    c->h = 0;
    c->len = 0;
}

uint32_t chunker_finish(struct chunker *c)
{
    uint32_t len = c->len;

    chunker_init(c);
    return len;
}

/* Hashes data[0..n) into h without testing for hits. */
static uint64_t gear_roll(uint64_t h, const uint8_t *data, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        h = (h << 1) + gear_table[data[i]];
    return h;
}

/* Hashes and tests data[0..n): returns the index just after the first hit, or n. */
static size_t gear_scan(uint64_t *ph, const uint8_t *data, size_t n)
{
    uint64_t h = *ph;
    size_t i = 0;

#define GEAR_STEP(k)                                                                       \
    h = (h << 1) + gear_table[data[i + (k)]];                                              \
    if (h < HIT_BOUND) {                                                                   \
        i += (k) + 1;                                                                      \
        goto hit;                                                                          \
    }
    for (; i + 8 <= n; i += 8) {
        GEAR_STEP(0)
        GEAR_STEP(1)
        GEAR_STEP(2)
        GEAR_STEP(3)
        GEAR_STEP(4)
        GEAR_STEP(5)
        GEAR_STEP(6)
        GEAR_STEP(7)
    }
    for (; i < n; i++) {
        h = (h << 1) + gear_table[data[i]];
        if (h < HIT_BOUND) {
            i++;
            goto hit;
        }
    }
#undef GEAR_STEP
    *ph = h;
    return n;
hit:
    *ph = h;
    return i;
}

size_t chunker_next(struct chunker *c, const uint8_t *data, size_t n, bool *cut)
{
    size_t used = 0, k, want;

    *cut = false;
    if (c->len < SKIP_END) {
        want = SKIP_END - c->len;
        k = n < want ? n : want;
        used += k;
        c->len += (uint32_t)k;
    }
    if (used < n && c->len < CHUNK_MIN - 1) {
        /* Hash up to the byte before the minimum length; hits here do not count. */
        want = CHUNK_MIN - 1 - c->len;
        k = n - used < want ? n - used : want;
        c->h = gear_roll(c->h, data + used, k);
        used += k;
        c->len += (uint32_t)k;
    }
    if (used < n) {
        want = CHUNK_MAX - c->len;
        k = n - used < want ? n - used : want;
        k = gear_scan(&c->h, data + used, k);
        used += k;
        c->len += (uint32_t)k;
        if (c->h < HIT_BOUND || c->len == CHUNK_MAX) {
            *cut = true;
            chunker_init(c);
        }
    }
    return used;
}
