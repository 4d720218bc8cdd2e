/* test_wire.c - the peer protocol's frames, record reader and messages (protocol/wire.h,
 * docs/peer-protocol.md). */
#include "wire.h"

#include "check.h"
#include "err.h"
#include "proto_limits.h"

#include <errno.h>
#include <string.h>

#include <msgpack.h>

/* A heap copy of exactly len bytes, so that ASan reports any read past the input. */
static uint8_t *exact_copy(const uint8_t *buf, size_t len)
{
    uint8_t *p = check_malloc(len ? len : 1);

    if (len > 0)
        memcpy(p, buf, len);
    return p;
}

static void fill_hash(uint8_t hash[static WIRE_HASH_LEN], unsigned seed)
{
    check_fill_splitmix(hash, WIRE_HASH_LEN, 1000 + seed);
}

/* A valid message of each type, its fields set from `seed`. */
static void sample(struct wire_msg *m, unsigned type, unsigned seed)
{
    uint32_t i;

    memset(m, 0, sizeof(*m));
    m->type = (uint8_t)type;
    m->id = 1 + seed * 7919;
    switch (type) {
    case WIRE_HELLO:
        m->id = 0;
        m->u.hello.version = WIRE_VERSION;
        memcpy(m->u.hello.node_id, "abcdefgh23456789", 17);
        m->u.hello.features = seed ? UINT64_MAX : 0;
        break;
    case WIRE_ERROR:
        m->id = seed;
        m->u.error.code = seed ? -7 : WIRE_ERR_NOT_FOUND;
        if (seed) {
            memset(m->u.error.text, 'x', WIRE_ERRMSG_MAX);
        } else {
            memcpy(m->u.error.text, "no such snapshot", 17);
        }
        break;
    case WIRE_GET_SNAPSHOT:
        memcpy(m->u.get_snapshot.repo, "model/org/name", 15);
        memcpy(m->u.get_snapshot.rev, "0123456789abcdef0123456789abcdef01234567", 41);
        break;
    case WIRE_SNAPSHOT:
        m->u.snapshot.len = seed ? WIRE_SNAPSHOT_MAX : 1;
        break;
    case WIRE_GET_MANIFEST:
        fill_hash(m->u.get_manifest.sha256, seed);
        m->u.get_manifest.piece = seed ? PROTO_PIECES_PER_FILE - 1 : WIRE_PIECE_ALL;
        break;
    case WIRE_MANIFEST:
        m->u.manifest.len = seed ? WIRE_MANIFEST_MAX : 70000;
        break;
    case WIRE_GET_CHUNKS:
    case WIRE_HAVE:
        m->u.get_chunks.n = seed ? WIRE_CHUNKS_PER_REQ : 3;
        for (i = 0; i < m->u.get_chunks.n; i++)
            fill_hash(m->u.get_chunks.hash[i], seed * 1000 + i);
        break;
    case WIRE_CHUNK:
        fill_hash(m->u.chunk.hash, seed);
        m->u.chunk.len = seed ? PROTO_CHUNK_MAX : 300;
        break;
    case WIRE_MISSING:
        fill_hash(m->u.missing.hash, seed);
        break;
    case WIRE_HAVE_RESULT:
        m->u.have_result.len = seed ? WIRE_HAVE_PER_REQ / 8 : 1;
        for (i = 0; i < m->u.have_result.len; i++)
            m->u.have_result.bitmap[i] = (uint8_t)(0x5a + i);
        break;
    case WIRE_CREDIT:
        m->id = 0;
        m->u.credit.bytes = seed ? WIRE_CREDIT_MAX : 65536;
        break;
    }
    if (seed > 1 && type != WIRE_HELLO && type != WIRE_CREDIT)
        m->id = UINT32_MAX;
}

static void check_same(const struct wire_msg *a, const struct wire_msg *b)
{
    const struct wire_hashes *ha, *hb;

    CHECK_EQ(a->type, b->type);
    CHECK_EQ(a->id, b->id);
    switch (a->type) {
    case WIRE_HELLO:
        CHECK_EQ(a->u.hello.version, b->u.hello.version);
        CHECK_STR(a->u.hello.node_id, b->u.hello.node_id);
        CHECK(a->u.hello.features == b->u.hello.features);
        break;
    case WIRE_ERROR:
        CHECK_EQ(a->u.error.code, b->u.error.code);
        CHECK_STR(a->u.error.text, b->u.error.text);
        break;
    case WIRE_GET_SNAPSHOT:
        CHECK_STR(a->u.get_snapshot.repo, b->u.get_snapshot.repo);
        CHECK_STR(a->u.get_snapshot.rev, b->u.get_snapshot.rev);
        break;
    case WIRE_SNAPSHOT:
    case WIRE_MANIFEST:
        CHECK_EQ(wire_payload_len(a), wire_payload_len(b));
        break;
    case WIRE_GET_MANIFEST:
        CHECK_MEM(a->u.get_manifest.sha256, b->u.get_manifest.sha256, WIRE_HASH_LEN);
        CHECK_EQ(a->u.get_manifest.piece, b->u.get_manifest.piece);
        break;
    case WIRE_GET_CHUNKS:
    case WIRE_HAVE:
        ha = a->type == WIRE_HAVE ? &a->u.have : &a->u.get_chunks;
        hb = b->type == WIRE_HAVE ? &b->u.have : &b->u.get_chunks;
        CHECK_EQ(ha->n, hb->n);
        CHECK_MEM(ha->hash, hb->hash, (size_t)ha->n * WIRE_HASH_LEN);
        break;
    case WIRE_CHUNK:
        CHECK_MEM(a->u.chunk.hash, b->u.chunk.hash, WIRE_HASH_LEN);
        CHECK_EQ(a->u.chunk.len, b->u.chunk.len);
        break;
    case WIRE_MISSING:
        CHECK_MEM(a->u.missing.hash, b->u.missing.hash, WIRE_HASH_LEN);
        break;
    case WIRE_HAVE_RESULT:
        CHECK_EQ(a->u.have_result.len, b->u.have_result.len);
        CHECK_MEM(a->u.have_result.bitmap, b->u.have_result.bitmap, a->u.have_result.len);
        break;
    case WIRE_CREDIT:
        CHECK_EQ(a->u.credit.bytes, b->u.credit.bytes);
        break;
    }
}

static uint8_t rec[WIRE_REC_MAX];

/* Encodes m, checks the record header, decodes the body from an exact copy, compares,
 * and re-encodes to the same bytes. Returns the record length. */
static int roundtrip(const struct wire_msg *m)
{
    static uint8_t again[WIRE_REC_MAX];
    struct wire_msg d;
    uint8_t *in;
    int n, n2;

    n = wire_msg_encode(m, rec, sizeof(rec));
    CHECK(n > (int)WIRE_REC_HDR);
    CHECK_EQ(((uint32_t)rec[0] << 24 | rec[1] << 16 | rec[2] << 8 | rec[3]), n - WIRE_REC_HDR);
    in = exact_copy(rec + WIRE_REC_HDR, n - WIRE_REC_HDR);
    memset(&d, 0xa5, sizeof(d));
    CHECK_EQ(wire_msg_decode(&d, in, n - WIRE_REC_HDR), 0);
    check_same(m, &d);
    n2 = wire_msg_encode(&d, again, sizeof(again));
    CHECK_EQ(n2, n);
    CHECK_MEM(again, rec, n);
    free(in);
    return n;
}

static void test_roundtrip(void)
{
    struct wire_msg m;
    unsigned type, seed;
    int n, most = 0;

    for (type = 1; type <= WIRE_TYPE_MAX; type++) {
        for (seed = 0; seed < 3; seed++) {
            sample(&m, type, seed);
            n = roundtrip(&m);
            if (n > most)
                most = n;
        }
        CHECK(strcmp(wire_type_name(type), "?") != 0);
    }
    /* The largest message (GET_CHUNKS or HAVE: 256 hashes, id 2^32-1) as
     * proto_limits.h says, well under WIRE_MSG_MAX. */
    CHECK_EQ(most, WIRE_REC_HDR + 8714);
    CHECK_STR(wire_type_name(WIRE_GET_CHUNKS), "GET_CHUNKS");
    CHECK_STR(wire_type_name(0), "?");
    CHECK_STR(wire_type_name(WIRE_TYPE_MAX + 1), "?");
}

/* The byte layout is the documentation; keep the formatter off it. */
// clang-format off
static const uint8_t vector_hello[] = {
    0x00, 0x00, 0x00, 0x0e,     /* record length 14 */
    0x95,                       /* fixarray of 5 */
    0x01,                       /* HELLO */
    0x00,                       /* id 0 */
    0x01,                       /* version 1 */
    0xa8, 'n', 'o', 'd', 'e', 'a', 'b', 'c', '2', /* fixstr of 8: node id */
    0x05,                       /* features 5 */
};
static const uint8_t vector_get_manifest[] = {
    0x00, 0x00, 0x00, 0x28,     /* record length 40 */
    0x94,                       /* fixarray of 4 */
    0x05,                       /* GET_MANIFEST */
    0xcd, 0x01, 0x2c,           /* id 300: uint16 */
    0xc4, 0x20,                 /* bin8 of 32: the file's sha256, all 0x11 */
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11,
    0xff,                       /* piece -1: the whole file (negative fixint) */
};
static const uint8_t vector_chunk[] = {
    0x00, 0x00, 0x00, 0x2e,     /* record length 46 */
    0x94,                       /* fixarray of 4 */
    0x08,                       /* CHUNK */
    0xce, 0x00, 0x01, 0x00, 0x00, /* id 65536: uint32 */
    0xc4, 0x20,                 /* bin8 of 32: the chunk hash, all 0x22 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22,
    0xce, 0x00, 0x02, 0x00, 0x00, /* len 131072 (PROTO_CHUNK_MAX), raw bytes follow */
};
// clang-format on

static void check_vector(const struct wire_msg *m, const uint8_t *want, size_t n)
{
    struct wire_msg d;

    CHECK_EQ(wire_msg_encode(m, rec, sizeof(rec)), n);
    CHECK_MEM(rec, want, n);
    CHECK_EQ(wire_msg_decode(&d, want + WIRE_REC_HDR, n - WIRE_REC_HDR), 0);
    check_same(m, &d);
}

static void test_vectors(void)
{
    struct wire_msg m;

    memset(&m, 0, sizeof(m));
    m.type = WIRE_HELLO;
    m.u.hello.version = 1;
    memcpy(m.u.hello.node_id, "nodeabc2", 9);
    m.u.hello.features = 5;
    check_vector(&m, vector_hello, sizeof(vector_hello));

    memset(&m, 0, sizeof(m));
    m.type = WIRE_GET_MANIFEST;
    m.id = 300;
    memset(m.u.get_manifest.sha256, 0x11, WIRE_HASH_LEN);
    m.u.get_manifest.piece = WIRE_PIECE_ALL;
    check_vector(&m, vector_get_manifest, sizeof(vector_get_manifest));

    memset(&m, 0, sizeof(m));
    m.type = WIRE_CHUNK;
    m.id = 65536;
    memset(m.u.chunk.hash, 0x22, WIRE_HASH_LEN);
    m.u.chunk.len = PROTO_CHUNK_MAX;
    check_vector(&m, vector_chunk, sizeof(vector_chunk));
}

/* Encoders refuse what no decoder accepts, and buffers that are too small. */
static void test_encode_refuses(void)
{
    struct wire_msg m;
    size_t cap;
    int n;

    sample(&m, WIRE_GET_CHUNKS, 1);
    n = wire_msg_encode(&m, rec, sizeof(rec));
    CHECK(n > 0);
    for (cap = 0; cap < (size_t)n; cap++)
        CHECK_EQ(wire_msg_encode(&m, rec, cap), -ENOBUFS);
    CHECK_EQ(wire_msg_encode(&m, rec, n), n);

#define REFUSE(type, seed, stmt)                                                                   \
    do {                                                                                           \
        sample(&m, type, seed);                                                                    \
        stmt;                                                                                      \
        CHECK_EQ(wire_msg_encode(&m, rec, sizeof(rec)), -EINVAL);                                  \
    } while (0)
    REFUSE(WIRE_HELLO, 0, m.type = 0);
    REFUSE(WIRE_HELLO, 0, m.type = WIRE_TYPE_MAX + 1);
    REFUSE(WIRE_HELLO, 0, m.id = 1);
    REFUSE(WIRE_HELLO, 0, m.u.hello.version = 2);
    REFUSE(WIRE_HELLO, 0, m.u.hello.node_id[0] = '\0');
    REFUSE(WIRE_HELLO, 0, m.u.hello.node_id[3] = 'A');
    REFUSE(WIRE_HELLO, 0, memset(m.u.hello.node_id, 'a', sizeof(m.u.hello.node_id)));
    REFUSE(WIRE_ERROR, 0, memset(m.u.error.text, 'a', sizeof(m.u.error.text)));
    REFUSE(WIRE_GET_SNAPSHOT, 0, m.id = 0);
    REFUSE(WIRE_GET_SNAPSHOT, 0, m.u.get_snapshot.repo[0] = '.');
    REFUSE(WIRE_GET_SNAPSHOT, 0, m.u.get_snapshot.rev[0] = ' ');
    REFUSE(WIRE_GET_SNAPSHOT, 0, m.u.get_snapshot.rev[0] = '\0');
    REFUSE(WIRE_SNAPSHOT, 0, m.u.snapshot.len = 0);
    REFUSE(WIRE_SNAPSHOT, 0, m.u.snapshot.len = WIRE_SNAPSHOT_MAX + 1);
    REFUSE(WIRE_GET_MANIFEST, 0, m.u.get_manifest.piece = PROTO_PIECES_PER_FILE);
    REFUSE(WIRE_MANIFEST, 0, m.u.manifest.len = WIRE_MANIFEST_MAX + 1);
    REFUSE(WIRE_GET_CHUNKS, 0, m.u.get_chunks.n = 0);
    REFUSE(WIRE_GET_CHUNKS, 0, m.u.get_chunks.n = WIRE_CHUNKS_PER_REQ + 1);
    REFUSE(WIRE_HAVE, 0, m.u.have.n = WIRE_HAVE_PER_REQ + 1);
    REFUSE(WIRE_CHUNK, 0, m.u.chunk.len = 0);
    REFUSE(WIRE_CHUNK, 0, m.u.chunk.len = PROTO_CHUNK_MAX + 1);
    REFUSE(WIRE_END, 0, m.id = 0);
    REFUSE(WIRE_CANCEL, 0, m.id = 0);
    REFUSE(WIRE_HAVE_RESULT, 0, m.u.have_result.len = 0);
    REFUSE(WIRE_HAVE_RESULT, 0, m.u.have_result.len = WIRE_HAVE_PER_REQ / 8 + 1);
    REFUSE(WIRE_CREDIT, 0, m.id = 5);
    REFUSE(WIRE_CREDIT, 0, m.u.credit.bytes = 0);
    REFUSE(WIRE_CREDIT, 0, m.u.credit.bytes = WIRE_CREDIT_MAX + 1);
#undef REFUSE
}

/* --- Bad message bodies ------------------------------------------------------------- */

static msgpack_sbuffer sb;
static msgpack_packer pk;

static void body_begin(uint32_t items, uint64_t type, uint64_t id)
{
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, items);
    msgpack_pack_uint64(&pk, type);
    msgpack_pack_uint64(&pk, id);
}

static void raw(const void *p, size_t n)
{
    msgpack_sbuffer_write(&sb, p, n);
}

static void hash_bin(size_t n)
{
    uint8_t h[64];

    memset(h, 0x33, sizeof(h));
    msgpack_pack_bin(&pk, n);
    msgpack_pack_bin_body(&pk, h, n);
}

static void str(const char *s)
{
    msgpack_pack_str(&pk, strlen(s));
    msgpack_pack_str_body(&pk, s, strlen(s));
}

/* Decodes the body in sb from an exact copy: expects `want`, and on failure the
 * out-parameter untouched. */
static void expect_body(int want, int line)
{
    struct wire_msg d, before;
    uint8_t *in = exact_copy((const uint8_t *)sb.data, sb.size);
    int got;

    memset(&d, 0xa5, sizeof(d));
    before = d;
    got = wire_msg_decode(&d, in, sb.size);
    if (got != want)
        check__fail(__FILE__, line, "decode: %d (%s), want %d (%s)", got, shoal_strerror(got), want,
                    shoal_strerror(want));
    if (want < 0)
        CHECK(memcmp(&d, &before, sizeof(d)) == 0);
    free(in);
}
#define EXPECT(want) expect_body(want, __LINE__)

static void test_bad_bodies(void)
{
    static const uint8_t fixext[] = {0xd4, 0x01, 0x00};
    uint8_t big[600];
    int i;

    /* msgpack-c issue #1013: counts and lengths the bytes do not back. */
    msgpack_sbuffer_clear(&sb);
    raw("\xdd\xff\xff\xff\xff", 5); /* array32 of 4 billion */
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_GET_CHUNKS, 1);
    raw("\xdd\x00\x01\x00\x00\xc0", 6); /* [nil x 65536] with one byte present */
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_ERROR, 1);
    msgpack_pack_int(&pk, 1);
    raw("\xdb\x7f\xff\xff\xff\x61\x62\x63", 8); /* str32 of 2 GiB, 3 bytes there */
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_CHUNK, 1);
    raw("\xc6\x00\x00\x00\x21", 5); /* bin32 of 33 with 32 present */
    raw(big, 32);
    EXPECT(SHOAL_EFORMAT);
    body_begin(5, WIRE_END, 1); /* says 5 items, has 2 */
    EXPECT(SHOAL_EFORMAT);
    msgpack_sbuffer_clear(&sb);
    EXPECT(SHOAL_EFORMAT);

    /* Nesting deeper than [type, id, [hash, ...]]. */
    body_begin(3, WIRE_GET_CHUNKS, 1);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 1);
    hash_bin(32);
    EXPECT(SHOAL_ELIMIT);
    msgpack_sbuffer_clear(&sb);
    for (i = 0; i < 100; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    EXPECT(SHOAL_ELIMIT);

    /* The outer shape. */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 1);
    EXPECT(SHOAL_EFORMAT);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_int(&pk, WIRE_END);
    EXPECT(SHOAL_EFORMAT);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int(&pk, WIRE_END);
    EXPECT(SHOAL_EFORMAT);
    body_begin(WIRE_FIELDS_MAX + 1, WIRE_END, 1);
    for (i = 2; i < (int)WIRE_FIELDS_MAX + 1; i++)
        msgpack_pack_nil(&pk);
    EXPECT(SHOAL_ELIMIT);
    body_begin(3, WIRE_MISSING, 1);
    raw(fixext, sizeof(fixext)); /* ext types never appear */
    EXPECT(SHOAL_EFORMAT);

    /* Type. */
    body_begin(2, 0, 1);
    EXPECT(SHOAL_EPEER);
    body_begin(2, WIRE_TYPE_MAX + 1, 1);
    EXPECT(SHOAL_EPEER);
    body_begin(2, UINT64_MAX, 1);
    EXPECT(SHOAL_EPEER);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 2);
    str("END");
    msgpack_pack_int(&pk, 1);
    EXPECT(SHOAL_EFORMAT);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, -1);
    msgpack_pack_int(&pk, 1);
    EXPECT(SHOAL_EFORMAT);

    /* Request ids. */
    body_begin(2, WIRE_END, 1);
    EXPECT(0);
    body_begin(2, WIRE_END, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(2, WIRE_END, (uint64_t)UINT32_MAX + 1);
    EXPECT(SHOAL_EFORMAT);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, WIRE_CANCEL);
    msgpack_pack_int(&pk, -1);
    EXPECT(SHOAL_EFORMAT);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, WIRE_CANCEL);
    msgpack_pack_double(&pk, 1.0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_CREDIT, 1);
    msgpack_pack_int(&pk, 100);
    EXPECT(SHOAL_EFORMAT);

    /* HELLO: the version is judged first, whatever follows it. */
    body_begin(5, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 1);
    str("node1");
    msgpack_pack_int(&pk, 0);
    EXPECT(0);
    body_begin(5, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 2);
    str("node1");
    msgpack_pack_int(&pk, 0);
    EXPECT(SHOAL_EVERSION);
    body_begin(3, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 0);
    EXPECT(SHOAL_EVERSION);
    body_begin(7, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 9);
    str("future");
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    EXPECT(SHOAL_EVERSION);
    body_begin(5, WIRE_HELLO, 0);
    str("1");
    str("node1");
    msgpack_pack_int(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(6, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 1);
    str("node1");
    msgpack_pack_int(&pk, 0);
    msgpack_pack_nil(&pk);
    EXPECT(SHOAL_EFORMAT);
    body_begin(5, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 1);
    hash_bin(5); /* node id as bin */
    msgpack_pack_int(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(5, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 1);
    str("Node1");
    msgpack_pack_int(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(5, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 1);
    str("");
    msgpack_pack_int(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(5, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 1);
    str("abcdefghijklmnopqrstuvwxyz0123456"); /* 33 */
    msgpack_pack_int(&pk, 0);
    EXPECT(SHOAL_ELIMIT);
    body_begin(5, WIRE_HELLO, 0);
    msgpack_pack_int(&pk, 1);
    str("node1");
    msgpack_pack_int(&pk, -1);
    EXPECT(SHOAL_EFORMAT);

    /* ERROR. */
    memset(big, 'e', sizeof(big));
    body_begin(4, WIRE_ERROR, 0);
    msgpack_pack_int64(&pk, INT32_MIN);
    msgpack_pack_str(&pk, WIRE_ERRMSG_MAX);
    msgpack_pack_str_body(&pk, big, WIRE_ERRMSG_MAX);
    EXPECT(0);
    body_begin(4, WIRE_ERROR, 0);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str(&pk, WIRE_ERRMSG_MAX + 1);
    msgpack_pack_str_body(&pk, big, WIRE_ERRMSG_MAX + 1);
    EXPECT(SHOAL_ELIMIT);
    body_begin(4, WIRE_ERROR, 0);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "a\0b", 3);
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_ERROR, 0);
    msgpack_pack_int64(&pk, (int64_t)INT32_MAX + 1);
    str("x");
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_ERROR, 0);
    msgpack_pack_int64(&pk, (int64_t)INT32_MIN - 1);
    str("x");
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_ERROR, 0);
    str("1");
    str("x");
    EXPECT(SHOAL_EFORMAT);

    /* GET_SNAPSHOT. */
    body_begin(4, WIRE_GET_SNAPSHOT, 1);
    str("dataset/name");
    str("0123456789abcdef0123456789abcdef01234567");
    EXPECT(0);
    body_begin(4, WIRE_GET_SNAPSHOT, 1);
    str("dataset/../x");
    str("0123456789abcdef0123456789abcdef01234567");
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_GET_SNAPSHOT, 1);
    msgpack_pack_str(&pk, SNAPSHOT_REPO_MAX + 1);
    msgpack_pack_str_body(&pk, big, SNAPSHOT_REPO_MAX + 1);
    str("0123456789abcdef0123456789abcdef01234567");
    EXPECT(SHOAL_ELIMIT);
    /* A branch or tag is a revision too; the responder resolves it. */
    body_begin(4, WIRE_GET_SNAPSHOT, 1);
    str("model/name");
    str("refs/pr/1");
    EXPECT(0);
    body_begin(4, WIRE_GET_SNAPSHOT, 1);
    str("model/name");
    str("v1..2");
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_GET_SNAPSHOT, 1);
    str("model/name");
    str("");
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_GET_SNAPSHOT, 1);
    str("model/name");
    msgpack_pack_str(&pk, SNAPSHOT_REV_MAX + 1);
    msgpack_pack_str_body(&pk, big, SNAPSHOT_REV_MAX + 1);
    EXPECT(SHOAL_ELIMIT);
    body_begin(4, WIRE_GET_SNAPSHOT, 1);
    str("model/name");
    hash_bin(40);
    EXPECT(SHOAL_EFORMAT);

    /* SNAPSHOT and MANIFEST lengths. */
    body_begin(3, WIRE_SNAPSHOT, 1);
    msgpack_pack_uint32(&pk, WIRE_SNAPSHOT_MAX + 1);
    EXPECT(SHOAL_ELIMIT);
    body_begin(3, WIRE_MANIFEST, 1);
    msgpack_pack_uint32(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_MANIFEST, 1);
    hash_bin(4);
    EXPECT(SHOAL_EFORMAT);

    /* GET_MANIFEST. */
    body_begin(4, WIRE_GET_MANIFEST, 1);
    hash_bin(32);
    msgpack_pack_int(&pk, -2);
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_GET_MANIFEST, 1);
    hash_bin(32);
    msgpack_pack_uint64(&pk, PROTO_PIECES_PER_FILE);
    EXPECT(SHOAL_ELIMIT);
    body_begin(4, WIRE_GET_MANIFEST, 1);
    hash_bin(31);
    msgpack_pack_int(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_GET_MANIFEST, 1);
    hash_bin(32);
    msgpack_pack_nil(&pk);
    EXPECT(SHOAL_EFORMAT);

    /* GET_CHUNKS and HAVE: hash count and size. */
    body_begin(3, WIRE_GET_CHUNKS, 1);
    msgpack_pack_array(&pk, WIRE_CHUNKS_PER_REQ + 1);
    for (i = 0; i < (int)WIRE_CHUNKS_PER_REQ + 1; i++)
        hash_bin(32);
    EXPECT(SHOAL_ELIMIT);
    body_begin(3, WIRE_HAVE, 1);
    msgpack_pack_array(&pk, WIRE_HAVE_PER_REQ + 1);
    for (i = 0; i < (int)WIRE_HAVE_PER_REQ + 1; i++)
        hash_bin(32);
    EXPECT(SHOAL_ELIMIT);
    body_begin(3, WIRE_HAVE, 1);
    msgpack_pack_array(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_GET_CHUNKS, 1);
    msgpack_pack_array(&pk, 3);
    hash_bin(32);
    hash_bin(33);
    hash_bin(32);
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_GET_CHUNKS, 1);
    msgpack_pack_array(&pk, 2);
    hash_bin(32);
    msgpack_pack_nil(&pk);
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_GET_CHUNKS, 1);
    hash_bin(32); /* a hash, not a list */
    EXPECT(SHOAL_EFORMAT);

    /* CHUNK and MISSING. */
    body_begin(4, WIRE_CHUNK, 1);
    hash_bin(32);
    msgpack_pack_uint32(&pk, PROTO_CHUNK_MAX + 1);
    EXPECT(SHOAL_ELIMIT);
    body_begin(4, WIRE_CHUNK, 1);
    hash_bin(32);
    msgpack_pack_uint32(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_CHUNK, 1);
    hash_bin(32);
    str("100");
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_CHUNK, 1);
    hash_bin(0);
    msgpack_pack_uint32(&pk, 100);
    EXPECT(SHOAL_EFORMAT);
    body_begin(4, WIRE_CHUNK, 1);
    msgpack_pack_str(&pk, 32); /* 32 bytes, but str */
    msgpack_pack_str_body(&pk, big, 32);
    msgpack_pack_uint32(&pk, 100);
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_MISSING, 1);
    hash_bin(64);
    EXPECT(SHOAL_EFORMAT);

    /* HAVE_RESULT and CREDIT. */
    body_begin(3, WIRE_HAVE_RESULT, 1);
    hash_bin(0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_HAVE_RESULT, 1);
    hash_bin(WIRE_HAVE_PER_REQ / 8 + 1);
    EXPECT(SHOAL_ELIMIT);
    body_begin(3, WIRE_CREDIT, 0);
    msgpack_pack_uint32(&pk, WIRE_CREDIT_MAX + 1);
    EXPECT(SHOAL_ELIMIT);
    body_begin(3, WIRE_CREDIT, 0);
    msgpack_pack_uint32(&pk, 0);
    EXPECT(SHOAL_EFORMAT);
    body_begin(3, WIRE_CREDIT, 0);
    msgpack_pack_float(&pk, 1.0f);
    EXPECT(SHOAL_EFORMAT);

    /* Trailing bytes inside a record. */
    body_begin(2, WIRE_END, 1);
    raw("\x00", 1);
    EXPECT(SHOAL_EFORMAT);
    body_begin(2, WIRE_END, 1);
    body_begin(2, WIRE_END, 1);
    raw(sb.data, sb.size); /* two messages in one record */
    EXPECT(SHOAL_EFORMAT);
}

static void test_have_result_ok(void)
{
    struct wire_have_result h;
    uint32_t i;

    memset(&h, 0, sizeof(h));
    h.len = 2;
    for (i = 0; i < 10; i++)
        if (i % 3 == 0)
            wire_have_set(&h, i);
    CHECK_EQ(h.bitmap[0], 0x92);
    CHECK_EQ(h.bitmap[1], 0x40);
    for (i = 0; i < 16; i++)
        CHECK_EQ(wire_have_bit(&h, i), i < 10 && i % 3 == 0);
    CHECK(!wire_have_bit(&h, 16));
    CHECK(wire_have_result_ok(&h, 10));
    CHECK(wire_have_result_ok(&h, 16));
    CHECK(!wire_have_result_ok(&h, 8));  /* len should be 1 */
    CHECK(!wire_have_result_ok(&h, 17)); /* len should be 3 */
    CHECK(!wire_have_result_ok(&h, 0));
    wire_have_set(&h, 12);
    CHECK(!wire_have_result_ok(&h, 10)); /* a bit past n */
    CHECK(wire_have_result_ok(&h, 13));
}

/* --- Frames ------------------------------------------------------------------------- */

static void test_frame_check(void)
{
    static const uint8_t zero[] = {0x00, 0x00, 0xaa};
    uint8_t *buf = check_malloc(WIRE_FRAME_HDR + WIRE_FRAME_MAX);
    struct wire_frame f, before;

    memset(&f, 0x5a, sizeof(f));
    before = f;
    CHECK_EQ(wire_frame_check(zero, 0, WIRE_FRAME_MAX, &f), 0);
    CHECK_EQ(wire_frame_check(zero, 1, WIRE_FRAME_MAX, &f), 0);
    CHECK_EQ(wire_frame_check(zero, 2, WIRE_FRAME_MAX, &f), SHOAL_EFORMAT);
    CHECK_EQ(wire_frame_check(zero, 3, WIRE_FRAME_MAX, &f), SHOAL_EFORMAT);
    CHECK(memcmp(&f, &before, sizeof(f)) == 0);

    CHECK_EQ(wire_frame_header(buf, WIRE_FRAME_MAX), 0);
    CHECK_EQ(buf[0], 0xff);
    CHECK_EQ(buf[1], 0xff);
    memset(buf + 2, 0x11, WIRE_FRAME_MAX);
    /* Over the limit is known from the two length bytes, before any body. */
    CHECK_EQ(wire_frame_check(buf, 2, WIRE_FRAME_MAX - 1, &f), SHOAL_ELIMIT);
    CHECK_EQ(wire_frame_check(buf, 2, 1000, &f), SHOAL_ELIMIT);
    CHECK_EQ(wire_frame_check(buf, 2, WIRE_FRAME_MAX, &f), 0);
    CHECK_EQ(wire_frame_check(buf, 2 + WIRE_FRAME_MAX - 1, WIRE_FRAME_MAX, &f), 0);
    CHECK_EQ(wire_frame_check(buf, 2 + WIRE_FRAME_MAX, WIRE_FRAME_MAX, &f), 1);
    CHECK_EQ(f.off, 2);
    CHECK_EQ(f.len, WIRE_FRAME_MAX);
    CHECK_EQ(f.end, 2 + WIRE_FRAME_MAX);
    CHECK_EQ(wire_frame_check(buf, 2 + WIRE_FRAME_MAX, SIZE_MAX, &f), 1);
    CHECK_EQ(wire_frame_header(buf, 1000), 0);
    CHECK_EQ(wire_frame_check(buf, 2, 999, &f), SHOAL_ELIMIT);
    CHECK_EQ(wire_frame_check(buf, 1002, 1000, &f), 1);
    CHECK_EQ(f.len, 1000);

    CHECK_EQ(wire_frame_header(buf, 0), -EINVAL);
    CHECK_EQ(wire_frame_header(buf, WIRE_FRAME_MAX + 1), -EINVAL);
    CHECK_EQ(wire_frame_header(buf, 1), 0);
    CHECK_EQ(buf[0], 0);
    CHECK_EQ(buf[1], 1);
    free(buf);
}

/* A stream of frames, delivered in two pieces split at every byte: every frame is
 * found exactly once, whole, and nothing is read past what was delivered. */
static void test_frame_splits(void)
{
    static const size_t lens[] = {1, 2, 300, 1000, 17, 256};
    enum { NF = sizeof(lens) / sizeof(lens[0]) };
    size_t total = 0, pos, k, fi, avail, start[NF];
    struct wire_frame f;
    uint8_t *stream, *part;
    int ret, piece;

    for (fi = 0; fi < NF; fi++)
        total += WIRE_FRAME_HDR + lens[fi];
    stream = check_malloc(total);
    pos = 0;
    for (fi = 0; fi < NF; fi++) {
        CHECK_EQ(wire_frame_header(stream + pos, lens[fi]), 0);
        start[fi] = pos;
        check_fill_splitmix(stream + pos + 2, lens[fi], fi);
        pos += WIRE_FRAME_HDR + lens[fi];
    }
    for (k = 0; k <= total; k++) {
        pos = 0;
        fi = 0;
        for (piece = 0; piece < 2; piece++) {
            /* The receive buffer: what has arrived and not been consumed, exactly. */
            avail = (piece == 0 ? k : total) - pos;
            part = exact_copy(stream + pos, avail);
            while ((ret = wire_frame_check(part, avail, 1000, &f)) == 1) {
                CHECK(fi < NF);
                CHECK_EQ(pos, start[fi]);
                CHECK_EQ(f.len, lens[fi]);
                CHECK_MEM(part + f.off, stream + pos + 2, f.len);
                memmove(part, part + f.end, avail - f.end);
                avail -= f.end;
                pos += f.end;
                fi++;
            }
            CHECK_EQ(ret, 0);
            free(part);
        }
        CHECK_EQ(fi, NF);
        CHECK_EQ(pos, total);
    }
    free(stream);
}

/* --- The reader --------------------------------------------------------------------- */

/* What a reader produced, normalised so that any split of the input logs the same:
 * each message re-encoded, each payload's bytes between markers. */
struct log {
    uint8_t *p;
    size_t len, cap;
    unsigned msgs, datas;
    int err;
};

static void log_put(struct log *l, const void *p, size_t n)
{
    if (l->len + n > l->cap) {
        l->cap = (l->len + n) * 2;
        l->p = realloc(l->p, l->cap);
        CHECK(l->p != NULL);
    }
    memcpy(l->p + l->len, p, n);
    l->len += n;
}

static uint32_t expect_off; /* next payload offset the log expects */

static void log_event(struct log *l, int kind, const struct wire_event *ev)
{
    uint8_t tmp[WIRE_REC_MAX];
    int n;

    if (kind == WIRE_EV_MSG) {
        n = wire_msg_encode(ev->msg, tmp, sizeof(tmp));
        CHECK(n > 0);
        log_put(l, "M", 1);
        log_put(l, tmp, n);
        l->msgs++;
        expect_off = 0;
        return;
    }
    CHECK_EQ(kind, WIRE_EV_DATA);
    CHECK(ev->len > 0);
    CHECK_EQ(ev->offset, expect_off);
    expect_off += ev->len;
    CHECK_EQ(ev->last, expect_off == wire_payload_len(ev->msg));
    if (ev->offset == 0)
        log_put(l, "[", 1);
    log_put(l, ev->data, ev->len);
    if (ev->last)
        log_put(l, "]", 1);
    l->datas++;
}

/* Feeds buf to a fresh reader in pieces of the given sizes (cycled; 0 = all at once),
 * each piece from an exact heap copy. */
static void read_pieces(struct log *l, const uint8_t *buf, size_t len, const size_t *sizes,
                        size_t n_sizes)
{
    static struct wire_reader r;
    struct wire_event ev;
    const uint8_t *p;
    uint8_t *piece;
    size_t off = 0, n, left, i = 0;
    int kind = 0;

    memset(l, 0, sizeof(*l));
    wire_reader_init(&r);
    while (off < len && kind >= 0) {
        n = sizes[i++ % n_sizes];
        if (n == 0 || n > len - off)
            n = len - off;
        piece = exact_copy(buf + off, n);
        p = piece;
        left = n;
        while ((kind = wire_reader_next(&r, &p, &left, &ev)) > 0)
            log_event(l, kind, &ev);
        if (kind == 0)
            CHECK_EQ(left, 0);
        free(piece);
        off += n;
    }
    l->err = kind;
}

static void check_same_log(const struct log *a, const struct log *b)
{
    CHECK_EQ(a->err, b->err);
    CHECK_EQ(a->msgs, b->msgs);
    CHECK_EQ(a->len, b->len);
    CHECK_MEM(a->p, b->p, a->len);
}

/* A plaintext stream: records (and payloads) appended one by one. */
struct stream {
    uint8_t *p;
    size_t len;
};

static void put_msg(struct stream *s, const struct wire_msg *m)
{
    uint8_t tmp[WIRE_REC_MAX];
    int n = wire_msg_encode(m, tmp, sizeof(tmp));

    CHECK(n > 0);
    s->p = realloc(s->p, s->len + n);
    CHECK(s->p != NULL);
    memcpy(s->p + s->len, tmp, n);
    s->len += n;
}

static void put_payload(struct stream *s, size_t n, uint64_t seed)
{
    s->p = realloc(s->p, s->len + n);
    CHECK(s->p != NULL);
    check_fill_splitmix(s->p + s->len, n, seed);
    s->len += n;
}

/* HELLO, a request, a CHUNK with its payload, MISSING, END, SNAPSHOT with its payload,
 * and the rest; chunk_len sets the CHUNK's payload. */
static void session(struct stream *s, uint32_t chunk_len, bool big)
{
    struct wire_msg m;

    memset(s, 0, sizeof(*s));
    sample(&m, WIRE_HELLO, 0);
    put_msg(s, &m);
    sample(&m, WIRE_GET_CHUNKS, big);
    put_msg(s, &m);
    sample(&m, WIRE_CHUNK, 0);
    m.u.chunk.len = chunk_len;
    put_msg(s, &m);
    put_payload(s, chunk_len, 1);
    sample(&m, WIRE_MISSING, 0);
    put_msg(s, &m);
    sample(&m, WIRE_CHUNK, 2);
    m.u.chunk.len = 1;
    put_msg(s, &m);
    put_payload(s, 1, 2);
    sample(&m, WIRE_END, 0);
    put_msg(s, &m);
    sample(&m, WIRE_SNAPSHOT, 0);
    m.u.snapshot.len = 77;
    put_msg(s, &m);
    put_payload(s, 77, 3);
    sample(&m, WIRE_CREDIT, 0);
    put_msg(s, &m);
    sample(&m, WIRE_ERROR, 1);
    put_msg(s, &m);
    sample(&m, WIRE_HAVE_RESULT, 0);
    put_msg(s, &m);
}

static void test_reader_splits(void)
{
    static const size_t whole[] = {0}, ones[] = {1}, odd[] = {3, 1, 7, 2, 100, 5, 4096};
    struct stream s;
    struct log a, b;
    size_t k, two[2];

    session(&s, 300, false);
    read_pieces(&a, s.p, s.len, whole, 1);
    CHECK_EQ(a.err, 0);
    CHECK_EQ(a.msgs, 10);
    CHECK_EQ(a.datas, 3); /* one piece per payload when it all arrives at once */
    read_pieces(&b, s.p, s.len, ones, 1);
    check_same_log(&a, &b);
    CHECK_EQ(b.datas, 300 + 1 + 77); /* every payload byte its own DATA event */
    free(b.p);
    for (k = 1; k < s.len; k++) {
        two[0] = k;
        two[1] = 0;
        read_pieces(&b, s.p, s.len, two, 2);
        check_same_log(&a, &b);
        free(b.p);
    }
    read_pieces(&b, s.p, s.len, odd, sizeof(odd) / sizeof(odd[0]));
    check_same_log(&a, &b);
    free(b.p);
    free(a.p);
    free(s.p);
}

/* A PROTO_CHUNK_MAX payload in 1-byte pieces, and a GET_CHUNKS of 256 hashes carried
 * by many small frames: records ignore frame boundaries. */
static void test_reader_frames(void)
{
    static const size_t whole[] = {0}, ones[] = {1};
    enum { PLAIN = 97 };
    struct stream s, framed = {0};
    struct wire_reader *r = check_malloc(sizeof(*r));
    struct wire_frame f;
    struct wire_event ev;
    struct log a, b;
    const uint8_t *p;
    size_t off, n, left, pos, frames = 0;
    int kind;

    session(&s, PROTO_CHUNK_MAX, true);
    read_pieces(&a, s.p, s.len, whole, 1);
    CHECK_EQ(a.err, 0);
    read_pieces(&b, s.p, s.len, ones, 1);
    check_same_log(&a, &b);
    CHECK_EQ(b.datas, PROTO_CHUNK_MAX + 1 + 77);
    free(b.p);

    /* Frame the plaintext in pieces of PLAIN bytes, then unframe and read. */
    for (off = 0; off < s.len; off += n) {
        n = s.len - off < PLAIN ? s.len - off : PLAIN;
        framed.p = realloc(framed.p, framed.len + WIRE_FRAME_HDR + n);
        CHECK_EQ(wire_frame_header(framed.p + framed.len, n), 0);
        memcpy(framed.p + framed.len + WIRE_FRAME_HDR, s.p + off, n);
        framed.len += WIRE_FRAME_HDR + n;
    }
    memset(&b, 0, sizeof(b));
    wire_reader_init(r);
    for (pos = 0; wire_frame_check(framed.p + pos, framed.len - pos, PLAIN, &f) == 1;
         pos += f.end) {
        p = framed.p + pos + f.off;
        left = f.len;
        while ((kind = wire_reader_next(r, &p, &left, &ev)) > 0)
            log_event(&b, kind, &ev);
        CHECK_EQ(kind, 0);
        frames++;
    }
    CHECK_EQ(pos, framed.len);
    CHECK(frames > (WIRE_REC_HDR + 8714) / PLAIN); /* the GET_CHUNKS spans ~90 frames */
    check_same_log(&a, &b);
    free(b.p);
    free(a.p);
    free(framed.p);
    free(s.p);
    free(r);
}

/* Feeds buf at once to a fresh reader; returns the last result, *msgs counts messages. */
static int read_all(struct wire_reader *r, const uint8_t *buf, size_t len, unsigned *msgs)
{
    struct wire_event ev;
    const uint8_t *p = buf;
    size_t left = len;
    int kind;

    *msgs = 0;
    while ((kind = wire_reader_next(r, &p, &left, &ev)) > 0)
        if (kind == WIRE_EV_MSG)
            (*msgs)++;
    return kind;
}

static void test_reader_errors(void)
{
    static const uint8_t too_long[] = {0x00, 0x00, 0x40, 0x01}; /* WIRE_MSG_MAX + 1 */
    static const uint8_t empty[] = {0x00, 0x00, 0x00, 0x00};
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    struct wire_reader *r = check_malloc(sizeof(*r));
    struct stream s = {0};
    struct wire_msg m;
    struct wire_event ev;
    const uint8_t *p;
    size_t left;
    unsigned msgs, i;

    /* Record lengths are judged from their 4 bytes, before any body. */
    wire_reader_init(r);
    CHECK_EQ(read_all(r, too_long, sizeof(too_long), &msgs), SHOAL_ELIMIT);
    wire_reader_init(r);
    CHECK_EQ(read_all(r, huge, sizeof(huge), &msgs), SHOAL_ELIMIT);
    wire_reader_init(r);
    CHECK_EQ(read_all(r, empty, sizeof(empty), &msgs), SHOAL_EFORMAT);
    /* Sticky: the error again, nothing consumed. */
    p = empty;
    left = sizeof(empty);
    CHECK_EQ(wire_reader_next(r, &p, &left, &ev), SHOAL_EFORMAT);
    CHECK_EQ(left, sizeof(empty));

    /* HELLO first, and once. */
    sample(&m, WIRE_END, 0);
    put_msg(&s, &m);
    wire_reader_init(r);
    CHECK_EQ(read_all(r, s.p, s.len, &msgs), SHOAL_EPEER);
    s.len = 0;
    sample(&m, WIRE_HELLO, 0);
    put_msg(&s, &m);
    put_msg(&s, &m);
    wire_reader_init(r);
    CHECK_EQ(read_all(r, s.p, s.len, &msgs), SHOAL_EPEER);
    CHECK_EQ(msgs, 1);

    /* A bad message closes the stream with its decoder's reason. */
    s.len = 0;
    sample(&m, WIRE_HELLO, 0);
    put_msg(&s, &m);
    {
        /* [13, 0, 0]: CREDIT of 0, hand-made since the encoder refuses it. */
        static const uint8_t bad_credit[] = {0, 0, 0, 4, 0x93, 0x0d, 0x00, 0x00};
        s.p = realloc(s.p, s.len + sizeof(bad_credit));
        memcpy(s.p + s.len, bad_credit, sizeof(bad_credit));
        s.len += sizeof(bad_credit);
    }
    wire_reader_init(r);
    CHECK_EQ(read_all(r, s.p, s.len, &msgs), SHOAL_EFORMAT);
    CHECK_EQ(msgs, 1);

    /* Credit: WIRE_CREDIT_INIT bytes of CHUNK payload, then only what is granted. */
    s.len = 0;
    sample(&m, WIRE_HELLO, 0);
    put_msg(&s, &m);
    for (i = 0; i < WIRE_CREDIT_INIT / PROTO_CHUNK_MAX; i++) {
        sample(&m, WIRE_CHUNK, 1);
        put_msg(&s, &m);
        put_payload(&s, PROTO_CHUNK_MAX, i);
    }
    wire_reader_init(r);
    CHECK_EQ(wire_reader_credit(r), WIRE_CREDIT_INIT);
    CHECK_EQ(read_all(r, s.p, s.len, &msgs), 0);
    CHECK_EQ(msgs, 1 + WIRE_CREDIT_INIT / PROTO_CHUNK_MAX);
    CHECK_EQ(wire_reader_credit(r), 0);
    /* Payloads that are not CHUNK's need no credit. */
    s.len = 0;
    sample(&m, WIRE_SNAPSHOT, 0);
    m.u.snapshot.len = 5000;
    put_msg(&s, &m);
    put_payload(&s, 5000, 1);
    CHECK_EQ(read_all(r, s.p, s.len, &msgs), 0);
    CHECK_EQ(msgs, 1);
    s.len = 0;
    sample(&m, WIRE_CHUNK, 0);
    m.u.chunk.len = 10;
    put_msg(&s, &m);
    put_payload(&s, 10, 9);
    CHECK_EQ(wire_reader_grant(r, 10), 0);
    CHECK_EQ(read_all(r, s.p, s.len, &msgs), 0);
    CHECK_EQ(wire_reader_grant(r, 9), 0);
    CHECK_EQ(read_all(r, s.p, s.len, &msgs), SHOAL_EPEER); /* 10 > 9 */
    wire_reader_init(r);
    CHECK_EQ(wire_reader_grant(r, 0), -EINVAL);
    CHECK_EQ(wire_reader_grant(r, WIRE_CREDIT_MAX - WIRE_CREDIT_INIT), 0);
    CHECK_EQ(wire_reader_grant(r, 1), -EINVAL);
    CHECK_EQ(wire_reader_credit(r), WIRE_CREDIT_MAX);
    free(s.p);
    free(r);
}

int main(void)
{
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    RUN(test_roundtrip);
    RUN(test_vectors);
    RUN(test_encode_refuses);
    RUN(test_bad_bodies);
    RUN(test_have_result_ok);
    RUN(test_frame_check);
    RUN(test_frame_splits);
    RUN(test_reader_splits);
    RUN(test_reader_frames);
    RUN(test_reader_errors);
    msgpack_sbuffer_destroy(&sb);
    return check_done();
}
