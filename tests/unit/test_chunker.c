/* test_chunker.c - Xet CDC boundaries: spec vectors and properties. */
#include "chunker.h"

#include "../../protocol/gear_table.h"
#include "check.h"
#include "proto_limits.h"
#include "vec.h"

#include <string.h>

#define MAX_CUTS 4096

struct cuts {
    size_t n;
    size_t end[MAX_CUTS]; /* cumulative end offsets, as in the vectors */
};

/* Chunks data fed in steps of `step` bytes (0: all at once; SIZE_MAX: random steps
 * from seed). */
static void chunk_all(const uint8_t *data, size_t len, size_t step, uint64_t seed,
                      struct cuts *out)
{
    struct chunker c;
    size_t off = 0, fed, k, pos = 0;
    uint32_t tail;
    bool cut;

    out->n = 0;
    chunker_init(&c);
    while (off < len) {
        if (step == 0) {
            fed = len - off;
        } else if (step == SIZE_MAX) {
            fed = 1 + check_splitmix64(&seed) % 70000;
        } else {
            fed = step;
        }
        if (fed > len - off)
            fed = len - off;
        /* Feed one block, possibly in several calls when it holds boundaries. */
        while (fed > 0) {
            k = chunker_next(&c, data + off, fed, &cut);
            CHECK(k <= fed);
            off += k;
            fed -= k;
            pos += k;
            if (cut) {
                CHECK(out->n < MAX_CUTS);
                out->end[out->n++] = pos;
            } else {
                CHECK_EQ(fed, 0);
            }
        }
    }
    tail = chunker_finish(&c);
    if (tail) {
        CHECK_EQ(pos - (out->n ? out->end[out->n - 1] : 0), tail);
        out->end[out->n++] = pos;
    }
}

static void check_cuts_json(const struct cuts *got, json_t *want)
{
    size_t i;

    CHECK_EQ(got->n, json_array_size(want));
    for (i = 0; i < got->n; i++)
        CHECK_EQ(got->end[i], json_integer_value(json_array_get(want, i)));
}

static void check_all_splits(const uint8_t *data, size_t len, json_t *want)
{
    static const size_t steps[] = {0, 1, 37, 255, 8191, 65536, SIZE_MAX};
    struct cuts *got = check_malloc(sizeof(*got));
    size_t i;

    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        chunk_all(data, len, steps[i], 42 + i, got);
        check_cuts_json(got, want);
    }
    free(got);
}

static void test_gear_table(void)
{
    json_t *v = vec_load("gearhash_table.json");
    json_t *t = vec_get(v, "table");
    size_t i;

    CHECK_EQ(json_array_size(t), 256);
    for (i = 0; i < 256; i++) {
        unsigned long long x = strtoull(json_string_value(json_array_get(t, i)), NULL, 16);
        CHECK(x == gear_table[i]);
    }
    json_decref(v);
}

static void test_constants(void)
{
    json_t *v = vec_load("keys.json");
    json_t *c = vec_get(v, "chunking");

    CHECK_EQ(vec_u64(c, "min_chunk_size"), PROTO_CHUNK_MIN);
    CHECK_EQ(vec_u64(c, "max_chunk_size"), PROTO_CHUNK_MAX);
    CHECK_EQ(vec_u64(c, "target_chunk_size"), PROTO_CHUNK_TARGET);
    CHECK_EQ(vec_u64(c, "min_skip_bytes"), PROTO_CHUNK_MIN - 64 - 1);
    json_decref(v);
}

static void test_splitmix(void)
{
    json_t *v = vec_load("cdc_splitmix64.json");
    json_t *cases = vec_get(v, "cases");
    size_t i;

    for (i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        size_t n = vec_u64(c, "n");
        uint8_t *data = check_malloc(n);

        check_fill_splitmix(data, n, vec_u64(c, "seed"));
        check_all_splits(data, n, vec_get(c, "chunk_boundaries"));
        free(data);
    }
    json_decref(v);
}

static void test_constant_data(void)
{
    json_t *v = vec_load("cdc_constant.json");
    size_t n = 1000000;
    uint8_t *data = check_malloc(n);

    memset(data, 0x3b, n);
    check_all_splits(data, n, vec_get(v, "chunk_boundaries"));
    free(data);
    json_decref(v);
}

/* Periodic inputs that hit the mask right around the minimum size: the current rule
 * and the legacy one differ on 13 of them, and we must follow the current one. */
static void test_triggering(void)
{
    json_t *v = vec_load("cdc_triggering.json");
    json_t *pat = vec_get(v, "pattern"), *cases = vec_get(v, "cases");
    size_t n = vec_u64(v, "n"), i, j, len, differs = 0;
    uint8_t *data = check_malloc(n);

    for (i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        size_t pad = vec_u64(c, "padding");

        for (j = 0; j < 128; j++)
            data[j] = (uint8_t)json_integer_value(json_array_get(pat, j));
        memset(data + 128, 0, pad);
        len = 128 + pad;
        while (len < n) {
            size_t k = len < n - len ? len : n - len;
            memcpy(data + len, data, k);
            len += k;
        }
        CHECK_EQ(data[11111], vec_u64(c, "byte_11111"));
        check_all_splits(data, n, vec_get(c, "boundaries_current"));
        differs += json_is_true(vec_get(c, "differs"));
    }
    CHECK_EQ(differs, 13);
    free(data);
    json_decref(v);
}

static void test_arith_and_small(void)
{
    json_t *v = vec_load("hashes_misc.json");
    json_t *cases = vec_get(vec_get(v, "make_data"), "cases");
    size_t i, k;

    for (i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        size_t n = vec_u64(c, "size"), a = vec_u64(c, "a"), b = vec_u64(c, "b");
        uint8_t *data = check_malloc(n);

        for (k = 0; k < n; k++)
            data[k] = (uint8_t)(k * a + b);
        check_all_splits(data, n, vec_get(c, "chunk_boundaries"));
        free(data);
    }
    json_decref(v);
}

static void test_empty(void)
{
    struct chunker c;
    bool cut = true;

    chunker_init(&c);
    CHECK_EQ(chunker_next(&c, (const uint8_t *)"", 0, &cut), 0);
    CHECK(!cut);
    CHECK_EQ(chunker_finish(&c), 0);
}

/* On random data: every chunk within bounds, chunks tile the input, and the result
 * does not depend on how the input is split. */
static void test_properties(void)
{
    size_t n = 9u << 20, i, r, prev;
    uint8_t *data = check_malloc(n);
    struct cuts *a = check_malloc(sizeof(*a)), *b = check_malloc(sizeof(*b));

    for (r = 0; r < 3; r++) {
        check_fill_splitmix(data, n, 1000 + r);
        chunk_all(data, n, 0, 0, a);
        CHECK(a->n > n / PROTO_CHUNK_MAX);
        for (i = 0, prev = 0; i < a->n; i++) {
            size_t len = a->end[i] - prev;
            CHECK(len <= PROTO_CHUNK_MAX);
            if (i + 1 < a->n)
                CHECK(len >= PROTO_CHUNK_MIN);
            prev = a->end[i];
        }
        CHECK_EQ(prev, n);
        chunk_all(data, n, SIZE_MAX, 7 + r, b);
        CHECK_EQ(a->n, b->n);
        CHECK_MEM(a->end, b->end, a->n * sizeof(a->end[0]));
        chunk_all(data, n, 4093, 0, b);
        CHECK_EQ(a->n, b->n);
        CHECK_MEM(a->end, b->end, a->n * sizeof(a->end[0]));
    }
    free(a);
    free(b);
    free(data);
}

/* Bytes inserted in the middle move only the boundaries near the insertion: those
 * before it stay, and after a few chunks the old boundaries return, shifted. */
static void test_insertion_locality(void)
{
    size_t n = 4u << 20, ins, at, i, j, moved, trial;
    uint8_t *data = check_malloc(n), *edited = check_malloc(n + 4096);
    struct cuts *a = check_malloc(sizeof(*a)), *b = check_malloc(sizeof(*b));
    uint64_t st = 99;

    check_fill_splitmix(data, n, 5);
    chunk_all(data, n, 0, 0, a);
    for (trial = 0; trial < 20; trial++) {
        at = n / 4 + check_splitmix64(&st) % (n / 2);
        ins = 1 + check_splitmix64(&st) % 4096;
        memcpy(edited, data, at);
        check_fill_splitmix(edited + at, ins, trial);
        memcpy(edited + at + ins, data + at, n - at);
        chunk_all(edited, n + ins, 0, 0, b);
        for (i = 0; i < a->n && a->end[i] < at; i++)
            CHECK_EQ(a->end[i], b->end[i]);
        /* Count the new chunks before the lists agree again (shifted by ins). */
        for (j = i, moved = 0; j < b->n; j++, moved++) {
            size_t k;
            for (k = i; k < a->n && a->end[k] + ins < b->end[j]; k++)
                ;
            if (k < a->n && a->end[k] + ins == b->end[j])
                break;
        }
        CHECK(moved <= 3);
        CHECK(j < b->n);
    }
    free(a);
    free(b);
    free(data);
    free(edited);
}

int main(void)
{
    RUN(test_gear_table);
    RUN(test_constants);
    RUN(test_empty);
    RUN(test_splitmix);
    RUN(test_constant_data);
    RUN(test_triggering);
    RUN(test_arith_and_small);
    RUN(test_properties);
    RUN(test_insertion_locality);
    return check_done();
}
