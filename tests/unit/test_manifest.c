/* test_manifest.c - the manifest codec (version 1) and mp_check, the bounds walk that
 * runs before msgpack-c sees any input. */
#include "manifest.h"

#include "chash.h"
#include "check.h"
#include "err.h"
#include "proto_limits.h"
#include "mpcheck.h"
#include "sha256.h"

#include <errno.h>
#include <string.h>

#include <msgpack.h>

/* Fixed-size chunks keep the test independent of the chunker; 64 KiB satisfies every
 * length rule (all but the last >= PROTO_CHUNK_MIN, none > PROTO_CHUNK_MAX). */
#define TEST_CHUNK      65536u
#define MAX_TEST_CHUNKS (PROTO_PIECE_LEN / TEST_CHUNK)

/* A heap copy of exactly len bytes, so that ASan reports any read past the input
 * (msgpack-c's sbuffer keeps slack behind its data). */
static uint8_t *exact_copy(const uint8_t *buf, size_t len)
{
    uint8_t *p = check_malloc(len);

    if (len > 0)
        memcpy(p, buf, len);
    return p;
}

/* A manifest of `size` random bytes from seed, with real chunk and piece hashes. */
static void build_file(struct manifest *m, uint64_t size, uint64_t seed)
{
    uint8_t *data = check_malloc(size);
    struct chash_leaf *leaves = check_malloc(MAX_TEST_CHUNKS * sizeof(*leaves));
    struct chash_leaf *scratch = check_malloc(MAX_TEST_CHUNKS * sizeof(*scratch));
    uint8_t hash[CHASH_LEN];
    uint64_t base;
    uint32_t i, n, off, len;

    check_fill_splitmix(data, size, seed);
    CHECK_EQ(manifest_init(m, size), 0);
    CHECK_EQ(sha256_digest(data, size, m->sha256), 0);
    for (i = 0; i < m->n_pieces; i++) {
        base = (uint64_t)i * PROTO_PIECE_LEN;
        n = 0;
        for (off = 0; off < m->pieces[i].len; off += len) {
            len = m->pieces[i].len - off;
            if (len > TEST_CHUNK)
                len = TEST_CHUNK;
            chash_chunk(data + base + off, len, leaves[n].hash);
            leaves[n].len = len;
            n++;
        }
        memcpy(scratch, leaves, n * sizeof(*leaves));
        chash_piece_inplace(scratch, n, hash);
        CHECK_EQ(manifest_set_piece(m, i, hash, leaves, n), 0);
    }
    CHECK_EQ(m->n_filled, m->n_pieces);
    free(scratch);
    free(leaves);
    free(data);
}

static void check_same_piece(const struct manifest_piece *a, const struct chash_leaf *ca,
                             const struct manifest_piece *b, const struct chash_leaf *cb)
{
    uint32_t k;

    CHECK_EQ(a->len, b->len);
    CHECK_EQ(a->n_chunks, b->n_chunks);
    CHECK_MEM(a->hash, b->hash, CHASH_LEN);
    for (k = 0; k < a->n_chunks; k++) {
        CHECK_EQ(ca[k].len, cb[k].len);
        CHECK_MEM(ca[k].hash, cb[k].hash, CHASH_LEN);
    }
}

static void check_same(const struct manifest *a, const struct manifest *b)
{
    uint32_t i;

    CHECK_EQ(a->size, b->size);
    CHECK_MEM(a->sha256, b->sha256, sizeof(a->sha256));
    CHECK_EQ(a->n_pieces, b->n_pieces);
    CHECK_EQ(a->n_filled, b->n_filled);
    CHECK_EQ(a->n_chunks, b->n_chunks);
    for (i = 0; i < a->n_pieces; i++) {
        CHECK_EQ(a->pieces[i].first_chunk, b->pieces[i].first_chunk);
        check_same_piece(&a->pieces[i], a->chunks + a->pieces[i].first_chunk, &b->pieces[i],
                         b->chunks + b->pieces[i].first_chunk);
    }
}

static void roundtrip(const struct manifest *m)
{
    struct manifest d;
    struct manifest_piece piece;
    struct chash_leaf *chunks;
    uint8_t *buf, *in, *again;
    size_t len, len2;
    uint32_t i;

    CHECK_EQ(manifest_check(m), 0);
    CHECK_EQ(manifest_encode(m, &buf, &len), 0);
    in = exact_copy(buf, len);
    CHECK_EQ(manifest_decode(&d, in, len), 0);
    check_same(m, &d);
    CHECK_EQ(manifest_check(&d), 0);
    CHECK_EQ(manifest_encode(&d, &again, &len2), 0);
    CHECK_EQ(len2, len);
    CHECK_MEM(again, buf, len);
    free(again);
    free(in);
    free(buf);

    for (i = 0; i < m->n_pieces; i++) {
        CHECK_EQ(manifest_piece_encode(&m->pieces[i], m->chunks + m->pieces[i].first_chunk, &buf,
                                       &len), 0);
        in = exact_copy(buf, len);
        CHECK_EQ(manifest_piece_decode(&piece, &chunks, in, len), 0);
        CHECK_EQ(piece.first_chunk, 0);
        check_same_piece(&m->pieces[i], m->chunks + m->pieces[i].first_chunk, &piece, chunks);
        free(chunks);
        free(in);
        free(buf);
    }
    if (m->n_pieces > 0) {
        /* A piece whose chunks do not add up to it is never written. */
        struct manifest_piece bad = m->pieces[0];
        bad.len += 1;
        CHECK_EQ(manifest_piece_encode(&bad, m->chunks, &buf, &len), -EINVAL);
    }
    manifest_release(&d);
}

static void test_roundtrip(void)
{
    static const uint64_t sizes[] = {
        0, 1, 1000, TEST_CHUNK, PROTO_PIECE_LEN, 2 * (uint64_t)PROTO_PIECE_LEN + 12345,
    };
    struct manifest m;
    size_t i;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        build_file(&m, sizes[i], 100 + i);
        roundtrip(&m);
        manifest_release(&m);
    }
}

static void flip(uint8_t *p, unsigned bit)
{
    p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
}

static void test_check_hash(void)
{
    static const unsigned bits[] = {0, 7, 100, 255};
    struct manifest m, d;
    uint64_t k, picks[3];
    uint8_t *buf, *hit;
    size_t len, i, b;

    build_file(&m, 2 * (uint64_t)PROTO_PIECE_LEN + 12345, 7);
    CHECK_EQ(manifest_check(&m), 0);
    picks[0] = 0;
    picks[1] = m.pieces[1].first_chunk + 17;
    picks[2] = m.n_chunks - 1;
    for (i = 0; i < 3; i++) {
        k = picks[i];
        for (b = 0; b < sizeof(bits) / sizeof(bits[0]); b++) {
            flip(m.chunks[k].hash, bits[b]);
            CHECK_EQ(manifest_check(&m), SHOAL_EHASH);
            flip(m.chunks[k].hash, bits[b]);
            CHECK_EQ(manifest_check(&m), 0);
        }
    }
    for (i = 0; i < m.n_pieces; i++) {
        for (b = 0; b < sizeof(bits) / sizeof(bits[0]); b++) {
            flip(m.pieces[i].hash, bits[b]);
            CHECK_EQ(manifest_check(&m), SHOAL_EHASH);
            flip(m.pieces[i].hash, bits[b]);
        }
    }
    CHECK_EQ(manifest_check(&m), 0);

    /* The same through the wire: a flipped chunk hash still decodes (decode checks
     * structure only) and manifest_check catches it. */
    CHECK_EQ(manifest_encode(&m, &buf, &len), 0);
    hit = memmem(buf, len, m.chunks[picks[1]].hash, CHASH_LEN);
    CHECK(hit != NULL);
    flip(hit, 3);
    CHECK_EQ(manifest_decode(&d, buf, len), 0);
    CHECK_EQ(manifest_check(&d), SHOAL_EHASH);
    manifest_release(&d);
    free(buf);

    /* The structural checks run on built manifests too. */
    m.pieces[0].len--;
    CHECK_EQ(manifest_check(&m), SHOAL_EFORMAT);
    CHECK_EQ(manifest_encode(&m, &buf, &len), -EINVAL);
    m.pieces[0].len++;
    m.chunks[3].len = PROTO_CHUNK_MIN - 1;
    CHECK_EQ(manifest_check(&m), SHOAL_EFORMAT);
    m.chunks[3].len = TEST_CHUNK;
    m.pieces[2].first_chunk++;
    CHECK_EQ(manifest_check(&m), SHOAL_EFORMAT);
    m.pieces[2].first_chunk--;
    m.n_filled--;
    CHECK_EQ(manifest_check(&m), SHOAL_EFORMAT);
    CHECK_EQ(manifest_encode(&m, &buf, &len), -EINVAL);
    m.n_filled++;
    CHECK_EQ(manifest_check(&m), 0);
    manifest_release(&m);
}

static void test_set_piece(void)
{
    struct manifest m, before;
    struct chash_leaf c[MAX_TEST_CHUNKS + 1];
    uint8_t hash[CHASH_LEN], *buf;
    size_t len;
    uint32_t i;

    memset(&m, 0xa5, sizeof(m));
    before = m;
    CHECK_EQ(manifest_init(&m, PROTO_FILE_MAX + 1), SHOAL_ELIMIT);
    CHECK(memcmp(&m, &before, sizeof(m)) == 0);

    memset(hash, 0x5a, sizeof(hash));
    memset(c, 0, sizeof(c));
    for (i = 0; i < MAX_TEST_CHUNKS + 1; i++)
        c[i].len = TEST_CHUNK;
    CHECK_EQ(manifest_init(&m, PROTO_PIECE_LEN + 5), 0);
    CHECK_EQ(m.n_pieces, 2);
    CHECK_EQ(m.pieces[0].len, PROTO_PIECE_LEN);
    CHECK_EQ(m.pieces[1].len, 5);
    CHECK_EQ(manifest_set_piece(&m, 1, hash, c, 1), -EINVAL);                   /* out of order */
    CHECK_EQ(manifest_set_piece(&m, 0, hash, c, MAX_TEST_CHUNKS - 1), -EINVAL); /* short */
    CHECK_EQ(manifest_set_piece(&m, 0, hash, c, MAX_TEST_CHUNKS + 1), -EINVAL); /* long */
    CHECK_EQ(manifest_set_piece(&m, 0, hash, c, 0), -EINVAL);
    /* Lengths that only add up modulo 2^64. */
    c[0].len = UINT64_MAX;
    c[1].len = PROTO_PIECE_LEN + 1;
    CHECK_EQ(manifest_set_piece(&m, 0, hash, c, 2), -EINVAL);
    c[0].len = TEST_CHUNK;
    c[1].len = TEST_CHUNK;
    CHECK_EQ(m.n_filled, 0);
    CHECK_EQ(m.n_chunks, 0);
    CHECK_EQ(manifest_set_piece(&m, 0, hash, c, MAX_TEST_CHUNKS), 0);
    CHECK_EQ(manifest_set_piece(&m, 0, hash, c, MAX_TEST_CHUNKS), -EINVAL);
    c[0].len = 5;
    CHECK_EQ(manifest_set_piece(&m, 1, hash, c, 1), 0);
    CHECK_EQ(manifest_set_piece(&m, 2, hash, c, 1), -EINVAL);
    CHECK_EQ(m.n_filled, 2);
    CHECK_EQ(m.n_chunks, MAX_TEST_CHUNKS + 1);
    CHECK_EQ(m.pieces[1].first_chunk, MAX_TEST_CHUNKS);
    CHECK_EQ(m.chunks[MAX_TEST_CHUNKS].len, 5);
    /* Well formed, but the piece hashes are made up. */
    CHECK_EQ(manifest_check(&m), SHOAL_EHASH);
    CHECK_EQ(manifest_encode(&m, &buf, &len), 0);
    free(buf);
    manifest_release(&m);
}

/* The byte layout below is the documentation; keep the formatter off it. */
// clang-format off
/* A hand-made manifest: a file of 70000 bytes in one piece of two chunks (65536 and
 * 4464 bytes), with made-up hashes so that every byte is predictable. */
static const uint8_t vector_manifest[] = {
    0x94,                   /* fixarray of 4: the manifest */
    0x01,                   /* version 1, positive fixint */
    0xce, 0x00, 0x01, 0x11, 0x70, /* size 70000: uint32, big-endian */
    0xc4, 0x20,             /* sha256: bin8 of 32 bytes, all 0x11 */
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11,
    0x91,                   /* pieces: fixarray of 1 */
    0x94,                   /* the piece: fixarray of 4 */
    0xce, 0x00, 0x01, 0x11, 0x70, /* piece len 70000 */
    0xc4, 0x20,             /* piece hash: bin8 of 32 bytes, all 0x22 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22,
    0xc4, 0x40,             /* chunk hashes: bin8 of 64 bytes, 32 x 0x33 then 32 x 0x44 */
    0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
    0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
    0x33, 0x33,
    0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44,
    0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44,
    0x44, 0x44,
    0x92,                   /* chunk lengths: fixarray of 2 */
    0xce, 0x00, 0x01, 0x00, 0x00, /* 65536 needs a uint32 */
    0xcd, 0x11, 0x70,       /* 4464 fits a uint16 */
};

/* The same piece on its own: [1, len, piece hash, chunk hashes, lengths]. */
static const uint8_t vector_piece[] = {
    0x95,                   /* fixarray of 5 */
    0x01,                   /* version 1 */
    0xce, 0x00, 0x01, 0x11, 0x70, /* piece len 70000 */
    0xc4, 0x20,             /* piece hash */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22,
    0xc4, 0x40,             /* chunk hashes */
    0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
    0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
    0x33, 0x33,
    0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44,
    0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44,
    0x44, 0x44,
    0x92, 0xce, 0x00, 0x01, 0x00, 0x00, 0xcd, 0x11, 0x70, /* chunk lengths */
};
// clang-format on

static void test_vector(void)
{
    struct manifest m, d;
    struct manifest_piece piece;
    struct chash_leaf c[2], *chunks;
    uint8_t hash[CHASH_LEN], *buf;
    size_t len;

    CHECK_EQ(manifest_init(&m, 70000), 0);
    memset(m.sha256, 0x11, sizeof(m.sha256));
    memset(hash, 0x22, sizeof(hash));
    memset(c[0].hash, 0x33, CHASH_LEN);
    c[0].len = 65536;
    memset(c[1].hash, 0x44, CHASH_LEN);
    c[1].len = 4464;
    CHECK_EQ(manifest_set_piece(&m, 0, hash, c, 2), 0);

    CHECK_EQ(manifest_encode(&m, &buf, &len), 0);
    CHECK_EQ(len, sizeof(vector_manifest));
    CHECK_MEM(buf, vector_manifest, len);
    free(buf);
    CHECK_EQ(manifest_decode(&d, vector_manifest, sizeof(vector_manifest)), 0);
    check_same(&m, &d);
    manifest_release(&d);

    CHECK_EQ(manifest_piece_encode(&m.pieces[0], m.chunks, &buf, &len), 0);
    CHECK_EQ(len, sizeof(vector_piece));
    CHECK_MEM(buf, vector_piece, len);
    free(buf);
    CHECK_EQ(manifest_piece_decode(&piece, &chunks, vector_piece, sizeof(vector_piece)), 0);
    check_same_piece(&m.pieces[0], m.chunks, &piece, chunks);
    free(chunks);
    manifest_release(&m);
}

/* Hand-built encodings, right or wrong in one way each. */

enum mutation {
    MUT_NONE,
    MUT_ROOT_MAP,
    MUT_ROOT_EMPTY,
    MUT_ROOT_SHORT,
    MUT_ROOT_LONG,
    MUT_VERSION_STR,
    MUT_VERSION_NEG,
    MUT_VERSION_FLOAT,
    MUT_SIZE_NEG,
    MUT_SIZE_STR,
    MUT_SHA_STR,
    MUT_PIECES_MAP,
    MUT_PIECES_NIL,
    MUT_PIECE_NIL,
    MUT_PIECE_SHORT,
    MUT_PIECE_LONG,
    MUT_LEN_BOOL,
    MUT_LEN_NEG,
    MUT_HASH_STR,
    MUT_HASHES_STR,
    MUT_HASHES_NIL,
    MUT_LENS_BIN,
    MUT_LENS_MAP,
    MUT_CHUNK_NEG,
    MUT_CHUNK_FLOAT,
    MUT_CHUNK_NIL,
    MUT_CHUNK_STR,
    MUT_TRAILING,
};

struct run {
    uint64_t len;
    uint32_t count;
};

struct tpiece {
    uint64_t len;
    int hash_delta;     /* bytes added to the piece hash's 32 */
    int hashes_delta;   /* bytes added to the chunk hashes' 32 per length */
    struct run runs[3]; /* chunk lengths, run by run; a count of 0 ends them */
};

struct tman {
    uint64_t version;
    uint64_t size;
    int sha_delta;
    uint32_t n_pieces;
    struct tpiece pieces[3];
    enum mutation mut;
};

static uint32_t tpiece_count(const struct tpiece *p)
{
    uint32_t n = 0, r;

    for (r = 0; r < 3 && p->runs[r].count > 0; r++)
        n += p->runs[r].count;
    return n;
}

static void pack_fill(msgpack_packer *pk, uint8_t fill, size_t n, int as_str)
{
    uint8_t block[256];
    size_t k;

    memset(block, fill, sizeof(block));
    if (as_str) {
        msgpack_pack_str(pk, n);
    } else {
        msgpack_pack_bin(pk, n);
    }
    for (; n > 0; n -= k) {
        k = n < sizeof(block) ? n : sizeof(block);
        if (as_str) {
            msgpack_pack_str_body(pk, block, k);
        } else {
            msgpack_pack_bin_body(pk, block, k);
        }
    }
}

static void pack_tpiece_fields(msgpack_packer *pk, const struct tpiece *p, enum mutation mut,
                               int fields)
{
    uint32_t n = tpiece_count(p), r, k, i = 0;

    if (mut == MUT_LEN_BOOL) {
        msgpack_pack_true(pk);
    } else if (mut == MUT_LEN_NEG) {
        msgpack_pack_int64(pk, -1);
    } else {
        msgpack_pack_uint64(pk, p->len);
    }
    pack_fill(pk, 0x22, (size_t)(CHASH_LEN + p->hash_delta), mut == MUT_HASH_STR);
    if (mut == MUT_HASHES_NIL) {
        msgpack_pack_nil(pk);
    } else {
        pack_fill(pk, 0x33, (size_t)((int64_t)n * CHASH_LEN + p->hashes_delta),
                  mut == MUT_HASHES_STR);
    }
    if (fields < 4)
        return;
    if (mut == MUT_LENS_BIN) {
        pack_fill(pk, 0x01, n, 0);
    } else if (mut == MUT_LENS_MAP) {
        msgpack_pack_map(pk, n);
        for (k = 0; k < n; k++) {
            msgpack_pack_uint32(pk, k);
            msgpack_pack_uint64(pk, PROTO_CHUNK_MIN);
        }
    } else {
        msgpack_pack_array(pk, n);
        for (r = 0; r < 3 && p->runs[r].count > 0; r++) {
            for (k = 0; k < p->runs[r].count; k++, i++) {
                if (i == 0 && mut == MUT_CHUNK_NEG) {
                    msgpack_pack_int64(pk, -(int64_t)p->runs[r].len);
                } else if (i == 0 && mut == MUT_CHUNK_FLOAT) {
                    msgpack_pack_double(pk, (double)p->runs[r].len);
                } else if (i == 0 && mut == MUT_CHUNK_NIL) {
                    msgpack_pack_nil(pk);
                } else if (i == 0 && mut == MUT_CHUNK_STR) {
                    pack_fill(pk, '7', 4, 1);
                } else {
                    msgpack_pack_uint64(pk, p->runs[r].len);
                }
            }
        }
    }
    if (fields > 4)
        msgpack_pack_nil(pk);
}

/* Packs t; *out is exactly *len bytes of heap (caller frees). */
static void pack_tman(const struct tman *t, uint8_t **out, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t i;
    int fields = 4;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (t->mut == MUT_ROOT_MAP) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_uint64(&pk, t->version);
        msgpack_pack_uint64(&pk, t->size);
        goto done;
    }
    if (t->mut == MUT_ROOT_EMPTY) {
        msgpack_pack_array(&pk, 0);
        goto done;
    }
    if (t->mut == MUT_ROOT_SHORT) {
        fields = 3;
    } else if (t->mut == MUT_ROOT_LONG) {
        fields = 5;
    }
    msgpack_pack_array(&pk, fields);
    if (t->mut == MUT_VERSION_STR) {
        pack_fill(&pk, '1', 1, 1);
    } else if (t->mut == MUT_VERSION_NEG) {
        msgpack_pack_int64(&pk, -1);
    } else if (t->mut == MUT_VERSION_FLOAT) {
        msgpack_pack_double(&pk, 1.0);
    } else {
        msgpack_pack_uint64(&pk, t->version);
    }
    if (t->mut == MUT_SIZE_NEG) {
        msgpack_pack_int64(&pk, -(int64_t)t->size);
    } else if (t->mut == MUT_SIZE_STR) {
        pack_fill(&pk, '9', 5, 1);
    } else {
        msgpack_pack_uint64(&pk, t->size);
    }
    pack_fill(&pk, 0x11, (size_t)(32 + t->sha_delta), t->mut == MUT_SHA_STR);
    if (fields == 3)
        goto done;
    if (t->mut == MUT_PIECES_MAP) {
        msgpack_pack_map(&pk, 0);
    } else if (t->mut == MUT_PIECES_NIL) {
        msgpack_pack_nil(&pk);
    } else {
        msgpack_pack_array(&pk, t->n_pieces);
        for (i = 0; i < t->n_pieces; i++) {
            enum mutation mut = i == t->n_pieces - 1 ? t->mut : MUT_NONE;
            int pf = mut == MUT_PIECE_SHORT ? 3 : mut == MUT_PIECE_LONG ? 5 : 4;

            if (mut == MUT_PIECE_NIL) {
                msgpack_pack_nil(&pk);
                continue;
            }
            msgpack_pack_array(&pk, pf);
            pack_tpiece_fields(&pk, &t->pieces[i], mut, pf);
        }
    }
    if (fields == 5)
        msgpack_pack_nil(&pk);
done:
    if (t->mut == MUT_TRAILING)
        msgpack_pack_nil(&pk);
    *out = exact_copy((const uint8_t *)sb.data, sb.size);
    *len = sb.size;
    msgpack_sbuffer_destroy(&sb);
}

/* A file of 20000 bytes: one piece, chunks 12000 + 8000 (the last may be short). */
static struct tman small_spec(void)
{
    struct tman t = {
        .version = 1,
        .size = 20000,
        .n_pieces = 1,
        .pieces = {{.len = 20000, .runs = {{12000, 1}, {8000, 1}}}},
    };

    return t;
}

/* A file of PROTO_PIECE_LEN + 20000 bytes: a full piece of 64 KiB chunks, then a
 * piece like small_spec's. */
static struct tman two_spec(void)
{
    struct tman t = {
        .version = 1,
        .size = PROTO_PIECE_LEN + 20000,
        .n_pieces = 2,
        .pieces = {{.len = PROTO_PIECE_LEN, .runs = {{TEST_CHUNK, MAX_TEST_CHUNKS}}},
                   {.len = 20000, .runs = {{12000, 1}, {8000, 1}}}},
    };

    return t;
}

static void expect_decode(const struct tman *t, int want, int line)
{
    struct manifest m, before;
    uint8_t *buf;
    size_t len;
    int err;

    pack_tman(t, &buf, &len);
    memset(&m, 0xa5, sizeof(m));
    before = m;
    err = manifest_decode(&m, buf, len);
    if (err != want)
        check__fail(__FILE__, line, "manifest_decode: %d, want %d", err, want);
    if (err == 0) {
        /* Made-up hashes in a sound structure. */
        CHECK_EQ(manifest_check(&m), m.n_pieces > 0 ? SHOAL_EHASH : 0);
        manifest_release(&m);
    } else if (memcmp(&m, &before, sizeof(m)) != 0) {
        check__fail(__FILE__, line, "manifest_decode changed its output on failure");
    }
    free(buf);
}

#define EXPECT(t, want) expect_decode(&(t), (want), __LINE__)

static void test_rules(void)
{
    struct tman t;
    static const enum mutation types[] = {
        MUT_ROOT_MAP,    MUT_ROOT_EMPTY,    MUT_ROOT_SHORT, MUT_ROOT_LONG,   MUT_VERSION_STR,
        MUT_VERSION_NEG, MUT_VERSION_FLOAT, MUT_SIZE_NEG,   MUT_SIZE_STR,    MUT_SHA_STR,
        MUT_PIECES_MAP,  MUT_PIECES_NIL,    MUT_PIECE_NIL,  MUT_PIECE_SHORT, MUT_PIECE_LONG,
        MUT_LEN_BOOL,    MUT_LEN_NEG,       MUT_HASH_STR,   MUT_HASHES_STR,  MUT_HASHES_NIL,
        MUT_LENS_BIN,    MUT_LENS_MAP,      MUT_CHUNK_NEG,  MUT_CHUNK_FLOAT, MUT_CHUNK_NIL,
        MUT_CHUNK_STR,   MUT_TRAILING,
    };
    size_t i;

    /* The builders themselves produce valid manifests. */
    t = small_spec();
    EXPECT(t, 0);
    t = two_spec();
    EXPECT(t, 0);
    t = (struct tman){.version = 1, .size = 0, .n_pieces = 0};
    EXPECT(t, 0);
    /* Boundaries that are allowed: a 1-byte file, chunks of exactly MIN and MAX. */
    t = (struct tman){
        .version = 1, .size = 1, .n_pieces = 1, .pieces = {{.len = 1, .runs = {{1, 1}}}}};
    EXPECT(t, 0);
    t = (struct tman){.version = 1,
                      .size = 200000,
                      .n_pieces = 1,
                      .pieces = {{.len = 200000, .runs = {{PROTO_CHUNK_MAX, 1}, {68928, 1}}}}};
    EXPECT(t, 0);
    t = small_spec();
    t.pieces[0].runs[0].len = PROTO_CHUNK_MIN;
    t.pieces[0].runs[1].len = 20000 - PROTO_CHUNK_MIN;
    EXPECT(t, 0);

    /* Version. */
    t = small_spec();
    t.version = 2;
    EXPECT(t, SHOAL_EVERSION);
    t.version = 0;
    EXPECT(t, SHOAL_EVERSION);
    t.version = 2;
    t.mut = MUT_ROOT_SHORT; /* a later version may change the shape as well */
    EXPECT(t, SHOAL_EVERSION);

    /* Size. */
    t = small_spec();
    t.size = PROTO_FILE_MAX + 1;
    EXPECT(t, SHOAL_ELIMIT);
    t.size = UINT64_MAX;
    EXPECT(t, SHOAL_ELIMIT);

    /* Piece count. */
    t = small_spec();
    t.size = 0;
    EXPECT(t, SHOAL_EFORMAT);
    t = small_spec();
    t.n_pieces = 2;
    t.pieces[1] = t.pieces[0];
    EXPECT(t, SHOAL_EFORMAT);
    t = two_spec();
    t.n_pieces = 1;
    EXPECT(t, SHOAL_EFORMAT);
    t = small_spec();
    t.n_pieces = 0;
    EXPECT(t, SHOAL_EFORMAT);

    /* Piece lengths. */
    t = small_spec();
    t.pieces[0].len = 19999;
    t.pieces[0].runs[1].len = 7999;
    EXPECT(t, SHOAL_EFORMAT);
    t = small_spec();
    t.pieces[0].len = 0;
    EXPECT(t, SHOAL_EFORMAT);
    t = two_spec(); /* same total, split differently */
    t.pieces[0].len = PROTO_PIECE_LEN - TEST_CHUNK;
    t.pieces[0].runs[0].count--;
    t.pieces[1].len = 20000 + TEST_CHUNK;
    t.pieces[1].runs[0] = (struct run){TEST_CHUNK, 1};
    t.pieces[1].runs[1] = (struct run){12000, 1};
    t.pieces[1].runs[2] = (struct run){8000, 1};
    EXPECT(t, SHOAL_EFORMAT);
    t = two_spec();
    t.pieces[1].len = 19999;
    t.pieces[1].runs[1].len = 7999;
    EXPECT(t, SHOAL_EFORMAT);

    /* Chunk lengths. */
    t = small_spec();
    t.pieces[0].runs[0].len = 20000;
    t.pieces[0].runs[1].len = 0; /* zero, though the sum is right */
    EXPECT(t, SHOAL_EFORMAT);
    t = (struct tman){.version = 1,
                      .size = 200000,
                      .n_pieces = 1,
                      .pieces = {{.len = 200000, .runs = {{PROTO_CHUNK_MAX + 1, 1}, {68927, 1}}}}};
    EXPECT(t, SHOAL_EFORMAT);
    t = (struct tman){.version = 1,
                      .size = 200000,
                      .n_pieces = 1,
                      .pieces = {{.len = 200000, .runs = {{200000, 1}}}}}; /* last too long */
    EXPECT(t, SHOAL_EFORMAT);
    t = small_spec();
    t.pieces[0].runs[0].len = PROTO_CHUNK_MIN - 1; /* too short in the middle */
    t.pieces[0].runs[1].len = 20000 - (PROTO_CHUNK_MIN - 1);
    EXPECT(t, SHOAL_EFORMAT);
    t = small_spec();
    t.pieces[0].runs[1].len = 7999;
    EXPECT(t, SHOAL_EFORMAT);
    t.pieces[0].runs[1].len = 8001;
    EXPECT(t, SHOAL_EFORMAT);
    t = two_spec();
    t.pieces[0].runs[0].len = UINT64_MAX; /* over any limit, and would wrap a sum */
    EXPECT(t, SHOAL_EFORMAT);
    /* No chunks for a non-empty piece. */
    t = small_spec();
    t.pieces[0].runs[0].count = 0;
    EXPECT(t, SHOAL_EFORMAT);
    /* More chunks than a piece can hold (they are also too short, necessarily). */
    t = (struct tman){
        .version = 1,
        .size = PROTO_PIECE_LEN,
        .n_pieces = 1,
        .pieces = {{.len = PROTO_PIECE_LEN, .runs = {{8184, PROTO_CHUNKS_PER_PIECE}, {8200, 1}}}}};
    EXPECT(t, SHOAL_EFORMAT);

    /* Hash lengths. */
    for (i = 0; i < 6; i++) {
        static const int deltas[] = {-32, -1, 1, 32, -64, 31};

        t = small_spec();
        t.pieces[0].hashes_delta = deltas[i];
        EXPECT(t, SHOAL_EFORMAT);
    }
    t = small_spec();
    t.pieces[0].hash_delta = -1;
    EXPECT(t, SHOAL_EFORMAT);
    t.pieces[0].hash_delta = 1;
    EXPECT(t, SHOAL_EFORMAT);
    t.pieces[0].hash_delta = -32;
    EXPECT(t, SHOAL_EFORMAT);
    t = small_spec();
    t.sha_delta = -1;
    EXPECT(t, SHOAL_EFORMAT);
    t.sha_delta = 1;
    EXPECT(t, SHOAL_EFORMAT);

    /* Types, shapes, trailing bytes: in the small file and in the last of two pieces. */
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        t = small_spec();
        t.mut = types[i];
        EXPECT(t, SHOAL_EFORMAT);
        t = two_spec();
        t.mut = types[i];
        EXPECT(t, SHOAL_EFORMAT);
    }
}

static void expect_piece(const struct tpiece *p, uint64_t version, enum mutation mut, int want,
                         int line)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct manifest_piece out, before;
    static struct chash_leaf sentinel;
    struct chash_leaf *chunks = &sentinel;
    uint8_t *buf;
    int err;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, mut == MUT_ROOT_LONG ? 6 : 5);
    msgpack_pack_uint64(&pk, version);
    pack_tpiece_fields(&pk, p, mut, mut == MUT_ROOT_LONG ? 5 : 4);
    if (mut == MUT_TRAILING)
        msgpack_pack_nil(&pk);
    buf = exact_copy((const uint8_t *)sb.data, sb.size);
    memset(&out, 0xa5, sizeof(out));
    before = out;
    err = manifest_piece_decode(&out, &chunks, buf, sb.size);
    if (err != want)
        check__fail(__FILE__, line, "manifest_piece_decode: %d, want %d", err, want);
    if (err == 0) {
        CHECK_EQ(out.first_chunk, 0);
        CHECK_EQ(out.n_chunks, tpiece_count(p));
        free(chunks);
    } else if (memcmp(&out, &before, sizeof(out)) != 0 || chunks != &sentinel) {
        check__fail(__FILE__, line, "manifest_piece_decode changed its output on failure");
    }
    free(buf);
    msgpack_sbuffer_destroy(&sb);
}

#define EXPECT_PIECE(p, v, mut, want) expect_piece(&(p), (v), (mut), (want), __LINE__)

static void test_piece_rules(void)
{
    struct tpiece base = {.len = 20000, .runs = {{12000, 1}, {8000, 1}}};
    struct tpiece full = {.len = PROTO_PIECE_LEN, .runs = {{TEST_CHUNK, MAX_TEST_CHUNKS}}};
    struct tpiece p;

    EXPECT_PIECE(base, 1, MUT_NONE, 0);
    EXPECT_PIECE(full, 1, MUT_NONE, 0);
    EXPECT_PIECE(base, 2, MUT_NONE, SHOAL_EVERSION);
    EXPECT_PIECE(base, 1, MUT_ROOT_LONG, SHOAL_EFORMAT);
    EXPECT_PIECE(base, 1, MUT_TRAILING, SHOAL_EFORMAT);
    EXPECT_PIECE(base, 1, MUT_LEN_NEG, SHOAL_EFORMAT);
    EXPECT_PIECE(base, 1, MUT_CHUNK_STR, SHOAL_EFORMAT);
    EXPECT_PIECE(base, 1, MUT_LENS_MAP, SHOAL_EFORMAT);
    p = full;
    p.len = PROTO_PIECE_LEN + 1;
    p.runs[1] = (struct run){1, 1};
    EXPECT_PIECE(p, 1, MUT_NONE, SHOAL_EFORMAT);
    p = base;
    p.len = 0;
    EXPECT_PIECE(p, 1, MUT_NONE, SHOAL_EFORMAT);
    p.runs[0].count = 0;
    EXPECT_PIECE(p, 1, MUT_NONE, SHOAL_EFORMAT);
    p = base;
    p.runs[1].len = 7999;
    EXPECT_PIECE(p, 1, MUT_NONE, SHOAL_EFORMAT);
    p = base;
    p.runs[0].len = 100;
    p.runs[1].len = 19900;
    EXPECT_PIECE(p, 1, MUT_NONE, SHOAL_EFORMAT);
    p = base;
    p.hashes_delta = 1;
    EXPECT_PIECE(p, 1, MUT_NONE, SHOAL_EFORMAT);
    p = base;
    p.hash_delta = -1;
    EXPECT_PIECE(p, 1, MUT_NONE, SHOAL_EFORMAT);
}

/* A small real manifest (one piece, four chunks) and its encoding. */
static void small_encoding(struct manifest *m, uint8_t **buf, size_t *len)
{
    build_file(m, 3 * TEST_CHUNK + 3392, 42);
    CHECK_EQ(manifest_encode(m, buf, len), 0);
}

static void test_truncation(void)
{
    struct manifest m, d;
    struct manifest_piece piece;
    struct chash_leaf *chunks;
    uint8_t *buf, *cut;
    size_t len, n;

    small_encoding(&m, &buf, &len);
    for (n = 0; n < len; n++) {
        cut = exact_copy(buf, n);
        CHECK_EQ(manifest_decode(&d, cut, n), SHOAL_EFORMAT);
        CHECK_EQ(mp_check(cut, n, PROTO_MAX_DEPTH), SHOAL_EFORMAT);
        free(cut);
    }
    free(buf);
    CHECK_EQ(manifest_piece_encode(&m.pieces[0], m.chunks, &buf, &len), 0);
    for (n = 0; n < len; n++) {
        cut = exact_copy(buf, n);
        CHECK_EQ(manifest_piece_decode(&piece, &chunks, cut, n), SHOAL_EFORMAT);
        free(cut);
    }
    free(buf);
    manifest_release(&m);
}

/* Decoding damaged input must fail cleanly or give a manifest whose only possible fault
 * is a hash. */
static int decode_any(const uint8_t *buf, size_t len)
{
    struct manifest d;
    struct manifest_piece piece;
    struct chash_leaf *chunks;
    uint8_t *again;
    size_t len2;
    int err, decoded;

    err = manifest_decode(&d, buf, len);
    decoded = err == 0;
    if (err == 0) {
        err = manifest_check(&d);
        CHECK(err == 0 || err == SHOAL_EHASH);
        CHECK_EQ(manifest_encode(&d, &again, &len2), 0);
        free(again);
        manifest_release(&d);
    } else {
        CHECK(err == SHOAL_EFORMAT || err == SHOAL_EVERSION || err == SHOAL_ELIMIT);
    }
    err = manifest_piece_decode(&piece, &chunks, buf, len);
    if (err == 0) {
        CHECK(piece.len >= 1 && piece.len <= PROTO_PIECE_LEN);
        CHECK(piece.n_chunks >= 1 && piece.n_chunks <= PROTO_CHUNKS_PER_PIECE);
        free(chunks);
    } else {
        CHECK(err == SHOAL_EFORMAT || err == SHOAL_EVERSION || err == SHOAL_ELIMIT);
    }
    return decoded;
}

static void test_bitflips(void)
{
    struct manifest m;
    uint8_t *buf, *bad;
    size_t len, bit;
    unsigned ok = 0;

    small_encoding(&m, &buf, &len);
    manifest_release(&m);
    for (bit = 0; bit < 8 * len; bit++) {
        bad = exact_copy(buf, len);
        flip(bad, (unsigned)bit);
        ok += (unsigned)decode_any(bad, len);
        free(bad);
    }
    /* Hash bytes carry no structure, so flips there still decode: sha256, the piece
     * hash and four chunk hashes. */
    CHECK(ok >= 8 * 6 * CHASH_LEN);
    free(buf);
}

static void test_garbage(void)
{
    struct manifest m;
    uint8_t *buf, *bad, junk[64];
    uint64_t st = 99, r;
    size_t len, i, k, n;

    small_encoding(&m, &buf, &len);
    manifest_release(&m);
    for (i = 0; i < 4000; i++) {
        bad = exact_copy(buf, len);
        n = 1 + check_splitmix64(&st) % 4;
        for (k = 0; k < n; k++) {
            r = check_splitmix64(&st);
            bad[r % len] = (uint8_t)(r >> 32);
        }
        decode_any(bad, len);
        free(bad);
    }
    free(buf);
    for (i = 0; i < 4000; i++) {
        n = check_splitmix64(&st) % sizeof(junk);
        check_fill_splitmix(junk, n, check_splitmix64(&st));
        bad = exact_copy(junk, n);
        decode_any(bad, n);
        free(bad);
    }
}

static void expect_check(const uint8_t *b, size_t n, unsigned depth, int want, int line)
{
    uint8_t *p = exact_copy(b, n);
    int err = mp_check(p, n, depth);

    if (err != want)
        check__fail(__FILE__, line, "mp_check: %d, want %d", err, want);
    free(p);
}

#define EXPECT_MP(arr, depth, want) expect_check((arr), sizeof(arr), (depth), (want), __LINE__)

static void test_huge_counts(void)
{
    /* Each claims far more than it holds; msgpack-c would allocate for the claim. */
    static const uint8_t array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    static const uint8_t nested[] = {0x91, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    static const uint8_t array16[] = {0xdc, 0xff, 0xff, 0x01, 0x02, 0x03};
    static const uint8_t str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    static const uint8_t bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    /* Counts that fit the bytes one by one but not together. */
    static const uint8_t siblings[] = {0x92, 0x93, 0xc0, 0xc0, 0xc0};
    static const uint8_t map_pairs[] = {0x82, 0x01, 0x02, 0x03};
    struct manifest m;
    struct manifest_piece piece;
    struct chash_leaf *chunks;

    EXPECT_MP(array32, PROTO_MAX_DEPTH, SHOAL_EFORMAT);
    EXPECT_MP(map32, PROTO_MAX_DEPTH, SHOAL_EFORMAT);
    EXPECT_MP(nested, PROTO_MAX_DEPTH, SHOAL_EFORMAT);
    EXPECT_MP(array16, PROTO_MAX_DEPTH, SHOAL_EFORMAT);
    EXPECT_MP(str32, PROTO_MAX_DEPTH, SHOAL_EFORMAT);
    EXPECT_MP(bin32, PROTO_MAX_DEPTH, SHOAL_EFORMAT);
    EXPECT_MP(siblings, PROTO_MAX_DEPTH, SHOAL_EFORMAT);
    EXPECT_MP(map_pairs, PROTO_MAX_DEPTH, SHOAL_EFORMAT);
    CHECK_EQ(manifest_decode(&m, array32, sizeof(array32)), SHOAL_EFORMAT);
    CHECK_EQ(manifest_decode(&m, map32, sizeof(map32)), SHOAL_EFORMAT);
    CHECK_EQ(manifest_decode(&m, nested, sizeof(nested)), SHOAL_EFORMAT);
    CHECK_EQ(manifest_piece_decode(&piece, &chunks, array32, sizeof(array32)), SHOAL_EFORMAT);
}

static void test_depth(void)
{
    enum { DEEP = 100000 };
    uint8_t *b = check_malloc(2 * DEEP + 1);
    struct manifest m;
    unsigned d;

    /* d nested arrays around a nil. */
    for (d = 0; d <= PROTO_MAX_DEPTH + 1; d++) {
        memset(b, 0x91, d);
        b[d] = 0xc0;
        expect_check(b, d + 1, PROTO_MAX_DEPTH, d <= PROTO_MAX_DEPTH ? 0 : SHOAL_ELIMIT, __LINE__);
        /* An empty array is a level too. */
        memset(b, 0x91, d);
        b[d] = 0x90;
        expect_check(b, d + 1, PROTO_MAX_DEPTH, d + 1 <= PROTO_MAX_DEPTH ? 0 : SHOAL_ELIMIT,
                     __LINE__);
    }
    /* d nested maps {nil: {nil: ... nil}}. */
    for (d = 0; d <= PROTO_MAX_DEPTH + 1; d++) {
        for (unsigned i = 0; i < d; i++) {
            b[2 * i] = 0x81;
            b[2 * i + 1] = 0xc0;
        }
        b[2 * d] = 0xc0;
        expect_check(b, 2 * d + 1, PROTO_MAX_DEPTH, d <= PROTO_MAX_DEPTH ? 0 : SHOAL_ELIMIT,
                     __LINE__);
    }
    /* Closing a level frees it: [[[x]], [[x]]] is depth 3 however many siblings. */
    {
        static const uint8_t wide[] = {0x93, 0x91, 0x91, 0x01, 0x91, 0x91, 0x02, 0x91, 0x91, 0x03};

        EXPECT_MP(wide, 3, 0);
        EXPECT_MP(wide, 2, SHOAL_ELIMIT);
    }
    /* max_depth 0 allows scalars only. */
    b[0] = 0x05;
    expect_check(b, 1, 0, 0, __LINE__);
    b[0] = 0x90;
    expect_check(b, 1, 0, SHOAL_ELIMIT, __LINE__);
    /* Far deeper than anything sane: no recursion, no stack to blow. */
    memset(b, 0x91, DEEP);
    b[DEEP] = 0xc0;
    expect_check(b, DEEP + 1, PROTO_MAX_DEPTH, SHOAL_ELIMIT, __LINE__);
    CHECK_EQ(manifest_decode(&m, b, DEEP + 1), SHOAL_ELIMIT);
    memset(b, 0x91, PROTO_MAX_DEPTH + 1);
    b[PROTO_MAX_DEPTH + 1] = 0xc0;
    CHECK_EQ(manifest_decode(&m, b, PROTO_MAX_DEPTH + 2), SHOAL_ELIMIT);
    free(b);
}

struct mp_case {
    const char *name;
    uint8_t b[40];
    size_t n;
};

static void test_mp_types(void)
{
    static const struct mp_case good[] = {
        {"positive fixint 0", {0x00}, 1},
        {"positive fixint 127", {0x7f}, 1},
        {"negative fixint -32", {0xe0}, 1},
        {"negative fixint -1", {0xff}, 1},
        {"uint8", {0xcc, 0xff}, 2},
        {"uint16", {0xcd, 0xff, 0xff}, 3},
        {"uint32", {0xce, 0xff, 0xff, 0xff, 0xff}, 5},
        {"uint64", {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
        {"int8", {0xd0, 0x80}, 2},
        {"int16", {0xd1, 0x80, 0x00}, 3},
        {"int32", {0xd2, 0x80, 0x00, 0x00, 0x00}, 5},
        {"int64", {0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, 9},
        {"nil", {0xc0}, 1},
        {"false", {0xc2}, 1},
        {"true", {0xc3}, 1},
        {"float32", {0xca, 0x3f, 0x80, 0x00, 0x00}, 5},
        {"float64", {0xcb, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, 9},
        {"fixstr empty", {0xa0}, 1},
        {"fixstr 3", {0xa3, 'a', 'b', 'c'}, 4},
        {"fixstr 31", {0xbf}, 32},
        {"str8", {0xd9, 0x03, 'a', 'b', 'c'}, 5},
        {"str8 empty", {0xd9, 0x00}, 2},
        {"str16", {0xda, 0x00, 0x03, 'a', 'b', 'c'}, 6},
        {"str32", {0xdb, 0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c'}, 8},
        {"bin8", {0xc4, 0x03, 1, 2, 3}, 5},
        {"bin8 empty", {0xc4, 0x00}, 2},
        {"bin16", {0xc5, 0x00, 0x03, 1, 2, 3}, 6},
        {"bin32", {0xc6, 0x00, 0x00, 0x00, 0x03, 1, 2, 3}, 8},
        {"fixarray empty", {0x90}, 1},
        {"fixarray 2", {0x92, 0x01, 0xc0}, 3},
        {"fixarray 15", {0x9f}, 16},
        {"array16", {0xdc, 0x00, 0x02, 0x01, 0x02}, 5},
        {"array32", {0xdd, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02}, 7},
        {"fixmap empty", {0x80}, 1},
        {"fixmap 1", {0x81, 0x01, 0x02}, 3},
        {"map16", {0xde, 0x00, 0x01, 0xa1, 'k', 0x02}, 6},
        {"map32", {0xdf, 0x00, 0x00, 0x00, 0x01, 0x01, 0x92, 0x02, 0x03}, 9},
        {"nested", {0x82, 0x01, 0x91, 0xc4, 0x01, 0x07, 0x02, 0x80}, 8},
    };
    static const struct mp_case bad[] = {
        {"never used 0xc1", {0xc1}, 1},
        {"0xc1 inside an array", {0x92, 0x01, 0xc1}, 3},
        {"ext8", {0xc7, 0x01, 0x05, 0x00}, 4},
        {"ext16", {0xc8, 0x00, 0x01, 0x05, 0x00}, 5},
        {"ext32", {0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 0x00}, 7},
        {"fixext1", {0xd4, 0x05, 0x00}, 3},
        {"fixext2", {0xd5, 0x05, 0x00, 0x00}, 4},
        {"fixext4", {0xd6, 0x05, 0x00, 0x00, 0x00, 0x00}, 6},
        {"fixext8", {0xd7, 0x05}, 10},
        {"fixext16", {0xd8, 0x05}, 18},
        {"ext inside a map", {0x81, 0x01, 0xd4, 0x05, 0x00}, 5},
        {"empty input", {0}, 0},
        {"two objects", {0x01, 0x02}, 2},
        {"str longer than input", {0xa5, 'a', 'b'}, 3},
        {"array longer than input", {0x93, 0x01, 0x02}, 3},
        {"map with a key alone", {0x81, 0x01}, 2},
        {"array item cut", {0x91, 0xcd, 0x01}, 3},
    };
    static const uint8_t rejected[] = {0xc1, 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8};
    uint8_t *p, wrapped[64];
    size_t i, k, n;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        n = good[i].n;
        CHECK(n <= sizeof(good[i].b));
        fprintf(stderr, "   %s\n", good[i].name);
        expect_check(good[i].b, n, PROTO_MAX_DEPTH, 0, __LINE__);
        /* Every cut is truncated, every extra byte trailing. */
        for (k = 0; k < n; k++)
            expect_check(good[i].b, k, PROTO_MAX_DEPTH, SHOAL_EFORMAT, __LINE__);
        p = check_malloc(n + 1);
        memcpy(p, good[i].b, n);
        p[n] = 0xc0;
        expect_check(p, n + 1, PROTO_MAX_DEPTH, SHOAL_EFORMAT, __LINE__);
        free(p);
        /* Inside an array, as the second of two items. */
        wrapped[0] = 0x92;
        wrapped[1] = 0x00;
        memcpy(wrapped + 2, good[i].b, n);
        expect_check(wrapped, n + 2, PROTO_MAX_DEPTH, 0, __LINE__);
        expect_check(wrapped, n + 1, PROTO_MAX_DEPTH, SHOAL_EFORMAT, __LINE__);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fprintf(stderr, "   %s\n", bad[i].name);
        expect_check(bad[i].b, bad[i].n, PROTO_MAX_DEPTH, SHOAL_EFORMAT, __LINE__);
    }
    /* A rejected byte stays rejected whatever follows it and however many items an
     * enclosing array claims: no reading of its size can make the input fit. */
    for (i = 0; i < sizeof(rejected); i++) {
        for (n = 1; n <= 24; n++) {
            memset(wrapped, 0, sizeof(wrapped));
            wrapped[0] = rejected[i];
            expect_check(wrapped, n, PROTO_MAX_DEPTH, SHOAL_EFORMAT, __LINE__);
            for (k = 1; k <= 15; k++) {
                wrapped[0] = (uint8_t)(0x90 | k);
                wrapped[1] = rejected[i];
                expect_check(wrapped, n + 1, PROTO_MAX_DEPTH, SHOAL_EFORMAT, __LINE__);
            }
        }
    }
}

int main(void)
{
    RUN(test_mp_types);
    RUN(test_huge_counts);
    RUN(test_depth);
    RUN(test_vector);
    RUN(test_rules);
    RUN(test_piece_rules);
    RUN(test_set_piece);
    RUN(test_roundtrip);
    RUN(test_check_hash);
    RUN(test_truncation);
    RUN(test_bitflips);
    RUN(test_garbage);
    return check_done();
}
