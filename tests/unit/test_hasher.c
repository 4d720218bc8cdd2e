/* test_hasher.c - whole-file ids: pieces, chunk lists, piece hashes and sha256, by
 * the one-piece call and by the stream, which must agree. */
#include "hasher.h"

#include "check.h"
#include "err.h"
#include "smallfiles.h"
#include "vec.h"

#include <errno.h>
#include <string.h>

#define MAX_PIECES 8

/* What a stream reported, piece by piece. */
struct seen {
    size_t n;
    struct hasher_piece *p[MAX_PIECES];
    int fail_at; /* return -EIO for this piece index (-1: never) */
};

static int on_piece(void *arg, const struct hasher_piece *p)
{
    struct seen *s = arg;

    if ((int)p->index == s->fail_at)
        return -EIO;
    CHECK(s->n < MAX_PIECES);
    CHECK_EQ(p->index, s->n);
    s->p[s->n] = check_malloc(sizeof(*p));
    memcpy(s->p[s->n], p, sizeof(*p));
    s->n++;
    return 0;
}

static void seen_free(struct seen *s)
{
    while (s->n > 0)
        free(s->p[--s->n]);
}

/* Streams data in random splits (seed) or `step`-byte splits. */
static void stream(const uint8_t *data, size_t len, size_t step, uint64_t seed, struct seen *s,
                   uint8_t sha[SHA256_LEN])
{
    struct hasher h;
    size_t off = 0, k;
    uint64_t size;

    memset(s, 0, sizeof(*s));
    s->fail_at = -1;
    CHECK_EQ(hasher_init(&h, on_piece, s), 0);
    while (off < len) {
        k = step ? step : 1 + check_splitmix64(&seed) % (3u << 20);
        if (k > len - off)
            k = len - off;
        CHECK_EQ(hasher_update(&h, data + off, k), 0);
        off += k;
    }
    CHECK_EQ(hasher_final(&h, sha, &size), 0);
    CHECK_EQ(size, len);
}

/* The stream's pieces equal hasher_piece_compute over each slice, and tile the file. */
static void check_against_slices(const uint8_t *data, size_t len, const struct seen *s)
{
    struct hasher_piece *p = check_malloc(sizeof(*p));
    size_t i, j, want_pieces = (len + PROTO_PIECE_LEN - 1) / PROTO_PIECE_LEN;
    uint64_t sum;

    CHECK_EQ(s->n, want_pieces);
    for (i = 0; i < s->n; i++) {
        const struct hasher_piece *q = s->p[i];
        size_t plen = len - i * PROTO_PIECE_LEN;
        if (plen > PROTO_PIECE_LEN)
            plen = PROTO_PIECE_LEN;
        hasher_piece_compute(p, data + i * PROTO_PIECE_LEN, (uint32_t)plen);
        CHECK_EQ(q->offset, i * (uint64_t)PROTO_PIECE_LEN);
        CHECK_EQ(q->len, plen);
        CHECK_EQ(p->len, plen);
        CHECK_EQ(q->n_chunks, p->n_chunks);
        CHECK_MEM(q->hash, p->hash, CHASH_LEN);
        for (j = 0, sum = 0; j < q->n_chunks; j++) {
            CHECK_MEM(q->chunks[j].hash, p->chunks[j].hash, CHASH_LEN);
            CHECK_EQ(q->chunks[j].len, p->chunks[j].len);
            sum += q->chunks[j].len;
        }
        CHECK_EQ(sum, plen);
    }
    free(p);
}

static void check_sha(const uint8_t *data, size_t len, const uint8_t sha[SHA256_LEN])
{
    uint8_t want[SHA256_LEN];

    CHECK_EQ(sha256_digest(data, len, want), 0);
    CHECK_MEM(sha, want, SHA256_LEN);
}

/* Files under one piece: the piece hash is the Xet file hash of the vectors. */
static void test_small_files(void)
{
    json_t *v = vec_load("small_files.json"), *cases = vec_get(v, "cases");
    struct hasher_piece *p = check_malloc(sizeof(*p));
    uint8_t sha[SHA256_LEN], want[SHA256_LEN];
    char hex[2 * SHA256_LEN + 1];
    struct seen s;
    size_t i, n, step;

    for (i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        uint8_t *d;

        n = vec_u64(c, "len");
        d = smallfile_data(vec_str(c, "name"), n);
        for (step = 1; step <= 4096 * 64; step *= 64) {
            stream(d, n, step, 0, &s, sha);
            chash_hex(sha, SHA256_LEN, hex);
            CHECK_STR(hex, vec_str(c, "sha256"));
            CHECK_EQ(s.n, n ? 1 : 0);
            if (n) {
                chash_from_xet(vec_str(c, "file_hash"), want);
                CHECK_MEM(s.p[0]->hash, want, CHASH_LEN);
                CHECK_EQ(s.p[0]->n_chunks, json_array_size(vec_get(c, "chunk_hashes")));
            }
            seen_free(&s);
        }
        hasher_piece_compute(p, d, (uint32_t)n);
        chash_from_xet(vec_str(c, "file_hash"), want);
        CHECK_MEM(p->hash, want, CHASH_LEN);
        free(d);
    }
    free(p);
    json_decref(v);
}

static void test_splitmix_sha(void)
{
    json_t *v = vec_load("cdc_splitmix64.json");
    json_t *c = json_array_get(vec_get(v, "cases"), 0), *dc = vec_get(c, "data_checks");
    size_t n = vec_u64(c, "n");
    uint8_t *d = check_malloc(n), sha[SHA256_LEN], want[CHASH_LEN];
    char hex[2 * SHA256_LEN + 1];
    struct seen s;

    check_fill_splitmix(d, n, vec_u64(c, "seed"));
    CHECK_EQ(d[0], vec_u64(dc, "byte_0"));
    CHECK_EQ(d[127], vec_u64(dc, "byte_127"));
    CHECK_EQ(d[111111], vec_u64(dc, "byte_111111"));
    stream(d, n, 0, 3, &s, sha);
    chash_hex(sha, SHA256_LEN, hex);
    CHECK_STR(hex, vec_str(dc, "sha256"));
    CHECK_EQ(s.n, 1);
    chash_from_xet(vec_str(c, "file_hash"), want);
    CHECK_MEM(s.p[0]->hash, want, CHASH_LEN);
    seen_free(&s);
    free(d);
    json_decref(v);
}

/* Files of several pieces: sizes around the piece length, random splits. */
static void test_multi_piece(void)
{
    static const size_t sizes[] = {
        PROTO_PIECE_LEN - 1, PROTO_PIECE_LEN, PROTO_PIECE_LEN + 1,
        2 * PROTO_PIECE_LEN,  2 * PROTO_PIECE_LEN + 1234567,
    };
    size_t max = 3 * PROTO_PIECE_LEN, i;
    uint8_t *d = check_malloc(max), sha[SHA256_LEN];
    struct seen s;

    check_fill_splitmix(d, max, 77);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        stream(d, sizes[i], 0, i, &s, sha);
        check_against_slices(d, sizes[i], &s);
        check_sha(d, sizes[i], sha);
        seen_free(&s);
    }
    /* Whole pieces fed at once, and byte-odd steps across piece edges. */
    stream(d, max, PROTO_PIECE_LEN, 0, &s, sha);
    check_against_slices(d, max, &s);
    seen_free(&s);
    stream(d, max, 1048573, 0, &s, sha);
    check_against_slices(d, max, &s);
    check_sha(d, max, sha);
    seen_free(&s);
    free(d);
}

static void test_empty_and_errors(void)
{
    struct hasher h;
    struct seen s = {.fail_at = 1};
    uint8_t sha[SHA256_LEN], *d;
    char hex[2 * SHA256_LEN + 1];
    uint64_t size = 99;

    CHECK_EQ(hasher_init(&h, on_piece, &s), 0);
    CHECK_EQ(hasher_update(&h, "", 0), 0);
    CHECK_EQ(hasher_final(&h, sha, &size), 0);
    CHECK_EQ(size, 0);
    CHECK_EQ(s.n, 0);
    chash_hex(sha, SHA256_LEN, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    /* A callback's error stops the stream and comes back from hasher_update. */
    d = check_malloc(2 * PROTO_PIECE_LEN + 1);
    memset(d, 1, 2 * PROTO_PIECE_LEN + 1);
    CHECK_EQ(hasher_init(&h, on_piece, &s), 0);
    CHECK_EQ(hasher_update(&h, d, 2 * PROTO_PIECE_LEN + 1), -EIO);
    CHECK_EQ(s.n, 1);
    hasher_release(&h);
    seen_free(&s);
    free(d);

    /* A file over the size limit is refused. */
    CHECK_EQ(hasher_init(&h, NULL, NULL), 0);
    h.size = PROTO_FILE_MAX - 1;
    CHECK_EQ(hasher_update(&h, "ab", 2), SHOAL_ELIMIT);
    hasher_release(&h);
}

static size_t new_chunks(const struct hasher_piece *old, size_t n_old,
                         const struct hasher_piece *p)
{
    size_t i, j, k, fresh = 0;

    for (i = 0; i < p->n_chunks; i++) {
        bool found = false;
        for (j = 0; j < n_old && !found; j++) {
            for (k = 0; k < old[j].n_chunks && !found; k++)
                found = memcmp(old[j].chunks[k].hash, p->chunks[i].hash, CHASH_LEN) == 0;
        }
        fresh += !found;
    }
    return fresh;
}

/* Bytes inserted inside a piece: that piece gets new chunks only around the insertion,
 * and each later piece (whose bytes shift) only around its start. So a new version of
 * a file shares almost all its chunks with the old one. */
static void test_insertion_dedup(void)
{
    size_t n = 2 * PROTO_PIECE_LEN + 5000000, ins = 3001, at = 5000017, i;
    uint8_t *d = check_malloc(n + ins), *e = check_malloc(n + ins), sha[SHA256_LEN];
    struct hasher_piece *old = check_malloc(3 * sizeof(*old));
    struct seen s;

    check_fill_splitmix(d, n, 11);
    memcpy(e, d, at);
    check_fill_splitmix(e + at, ins, 12);
    memcpy(e + at + ins, d + at, n - at);
    stream(d, n, 0, 1, &s, sha);
    CHECK_EQ(s.n, 3);
    for (i = 0; i < 3; i++)
        memcpy(&old[i], s.p[i], sizeof(old[i]));
    seen_free(&s);
    stream(e, n + ins, 0, 2, &s, sha);
    CHECK_EQ(s.n, 3);
    for (i = 0; i < 3; i++) {
        size_t fresh = new_chunks(old, 3, s.p[i]);
        fprintf(stderr, "   piece %zu: %zu of %u chunks new\n", i, fresh, s.p[i]->n_chunks);
        CHECK(fresh <= 3);
        CHECK(s.p[i]->n_chunks > 50);
    }
    seen_free(&s);
    free(old);
    free(d);
    free(e);
}

/* Git's blob ids: the Hub's ETag of non-LFS files. Values from `git hash-object`. */
static void test_git_blob_oid(void)
{
    static const uint8_t empty[20] = {0xe6, 0x9d, 0xe2, 0x9b, 0xb2, 0xd1, 0xd6, 0x43, 0x4b, 0x8b,
                                      0x29, 0xae, 0x77, 0x5a, 0xd8, 0xc2, 0xe4, 0x8c, 0x53, 0x91};
    static const uint8_t hello[20] = {0x3b, 0x18, 0xe5, 0x12, 0xdb, 0xa7, 0x9e, 0x4c, 0x83, 0x00,
                                      0xdd, 0x08, 0xae, 0xb3, 0x7f, 0x8e, 0x72, 0x8b, 0x8d, 0xad};
    uint8_t out[GIT_OID_LEN];

    CHECK_EQ(git_blob_oid("", 0, out), 0);
    CHECK_MEM(out, empty, 20);
    CHECK_EQ(git_blob_oid("hello world\n", 12, out), 0);
    CHECK_MEM(out, hello, 20);
}

int main(void)
{
    RUN(test_small_files);
    RUN(test_splitmix_sha);
    RUN(test_multi_piece);
    RUN(test_empty_and_errors);
    RUN(test_insertion_dedup);
    RUN(test_git_blob_oid);
    return check_done();
}
