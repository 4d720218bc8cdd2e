/* wire.c - peer protocol frames, records and messages (wire.h, docs/peer-protocol.md).
 *
 * DESIGN. Input crosses three gates before any of it is trusted. wire_frame_check
 * judges a frame's 2-byte length before its body is waited for. The reader judges a
 * record's 4-byte length before buffering the body, so it never holds more than
 * WIRE_MSG_MAX bytes. wire_msg_decode runs mp_check (depth WIRE_MAX_DEPTH, every count
 * and length backed by bytes, nothing trailing) and bounds the outer array's count
 * before msgpack-c sees the record, so msgpack-c's allocation is at most proportional
 * to WIRE_MSG_MAX (msgpack-c issue #1013). After that each message type has one
 * section below: its decoder (shape and types), its check (the value rules, shared
 * with the encoder, so only what a decoder accepts is ever written) and its packer.
 * A table ties the sections to type numbers. Payloads (CHUNK, SNAPSHOT, MANIFEST) are
 * never msgpack: the reader hands them through as raw pieces of the caller's input.
 */
#include "wire.h"

#include "err.h"
#include "mpcheck.h"
#include "mpdec.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <msgpack.h>

static uint32_t be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* --- Frames ------------------------------------------------------------------------ */

int wire_frame_check(const uint8_t *buf, size_t len, size_t max, struct wire_frame *f)
{
    size_t n;

    if (len < WIRE_FRAME_HDR)
        return 0;
    n = (size_t)buf[0] << 8 | buf[1];
    if (n == 0)
        return SHOAL_EFORMAT;
    if (n > max)
        return SHOAL_ELIMIT;
    if (len - WIRE_FRAME_HDR < n)
        return 0;
    f->off = WIRE_FRAME_HDR;
    f->len = n;
    f->end = WIRE_FRAME_HDR + n;
    return 1;
}

int wire_frame_header(uint8_t out[static WIRE_FRAME_HDR], size_t n)
{
    if (n == 0 || n > WIRE_FRAME_MAX)
        return -EINVAL;
    out[0] = (uint8_t)(n >> 8);
    out[1] = (uint8_t)n;
    return 0;
}

/* --- Field helpers ----------------------------------------------------------------- */

/* An unsigned integer of any msgpack width in [min, max]: below min is malformed,
 * above max is over a limit. */
static int dec_uint(const msgpack_object *o, uint64_t min, uint64_t max, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return SHOAL_EFORMAT;
    if (o->via.u64 < min)
        return SHOAL_EFORMAT;
    if (o->via.u64 > max)
        return SHOAL_ELIMIT;
    *v = o->via.u64;
    return 0;
}

/* A str of at most max bytes without NUL, copied to out (room for max + 1) with a NUL. */
static int dec_str(const msgpack_object *o, size_t max, char *out)
{
    uint32_t n;

    if (o->type != MSGPACK_OBJECT_STR)
        return SHOAL_EFORMAT;
    n = o->via.str.size;
    if (n > max)
        return SHOAL_ELIMIT;
    if (n > 0) {
        if (memchr(o->via.str.ptr, 0, n))
            return SHOAL_EFORMAT;
        memcpy(out, o->via.str.ptr, n);
    }
    out[n] = '\0';
    return 0;
}

/* A NUL-terminated string that fits its array; its length in *n. */
static bool fixed_str(const char *p, size_t cap, size_t *n)
{
    *n = strnlen(p, cap);
    return *n < cap;
}

static int pack_str(msgpack_packer *pk, const char *p)
{
    size_t n = strlen(p);
    int r;

    r = msgpack_pack_str(pk, n);
    r |= msgpack_pack_str_body(pk, p, n);
    return r;
}

static int pack_hash(msgpack_packer *pk, const uint8_t hash[static WIRE_HASH_LEN])
{
    int r;

    r = msgpack_pack_bin(pk, WIRE_HASH_LEN);
    r |= msgpack_pack_bin_body(pk, hash, WIRE_HASH_LEN);
    return r;
}

/* [hash, ...] with 1..max hashes of exactly WIRE_HASH_LEN bytes. The count is checked
 * before anything is copied, so h->hash never overflows. */
static int dec_hashes(const msgpack_object *o, uint32_t max, struct wire_hashes *h)
{
    uint32_t i, n;
    int err;

    if (o->type != MSGPACK_OBJECT_ARRAY)
        return SHOAL_EFORMAT;
    n = o->via.array.size;
    if (n == 0)
        return SHOAL_EFORMAT;
    if (n > max)
        return SHOAL_ELIMIT;
    for (i = 0; i < n; i++) {
        err = mpdec_bin(&o->via.array.ptr[i], WIRE_HASH_LEN, h->hash[i]);
        if (err < 0)
            return err;
    }
    h->n = n;
    return 0;
}

static int check_hashes(const struct wire_hashes *h, uint32_t max)
{
    if (h->n == 0)
        return SHOAL_EFORMAT;
    return h->n > max ? SHOAL_ELIMIT : 0;
}

static int pack_hashes(msgpack_packer *pk, const struct wire_hashes *h)
{
    uint32_t i;
    int r;

    r = msgpack_pack_array(pk, h->n);
    for (i = 0; i < h->n; i++)
        r |= pack_hash(pk, h->hash[i]);
    return r;
}

/* SNAPSHOT and MANIFEST: [type, id, len], len raw bytes after. */
static int dec_payload(const msgpack_object *o, uint32_t max, struct wire_payload *p)
{
    uint64_t v;
    int err;

    err = dec_uint(o, 1, max, &v);
    if (err < 0)
        return err;
    p->len = (uint32_t)v;
    return 0;
}

static int check_payload(const struct wire_payload *p, uint32_t max)
{
    if (p->len == 0)
        return SHOAL_EFORMAT;
    return p->len > max ? SHOAL_ELIMIT : 0;
}

/* Each section: decode(m, f) fills m from the array items f (f[0] type, f[1] id, the
 * fields from f[2]); check(m) holds the value rules for both directions; pack(m, pk)
 * writes the fields after the id. */

/* --- HELLO: [1, 0, version, node_id, features] ------------------------------------- */

/* Read before the item count: a later version may change everything after it. */
static int hello_version(const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return SHOAL_EFORMAT;
    return o->via.u64 == WIRE_VERSION ? 0 : SHOAL_EVERSION;
}

static int hello_decode(struct wire_msg *m, const msgpack_object *f)
{
    int err;

    err = dec_str(&f[3], WIRE_NODE_ID_MAX, m->u.hello.node_id);
    if (err < 0)
        return err;
    if (f[4].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return SHOAL_EFORMAT;
    m->u.hello.version = WIRE_VERSION;
    m->u.hello.features = f[4].via.u64;
    return 0;
}

static int hello_check(const struct wire_msg *m)
{
    const struct wire_hello *h = &m->u.hello;
    size_t i, n;

    if (h->version != WIRE_VERSION)
        return SHOAL_EVERSION;
    if (!fixed_str(h->node_id, sizeof(h->node_id), &n) || n == 0)
        return SHOAL_EFORMAT;
    for (i = 0; i < n; i++) {
        char c = h->node_id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return SHOAL_EFORMAT;
    }
    return 0;
}

static int hello_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    int r;

    r = msgpack_pack_uint32(pk, m->u.hello.version);
    r |= pack_str(pk, m->u.hello.node_id);
    r |= msgpack_pack_uint64(pk, m->u.hello.features);
    return r;
}

/* --- ERROR: [2, id, code, text] ---------------------------------------------------- */

static int error_decode(struct wire_msg *m, const msgpack_object *f)
{
    const msgpack_object *c = &f[2];

    if (c->type == MSGPACK_OBJECT_POSITIVE_INTEGER && c->via.u64 <= INT32_MAX)
        m->u.error.code = (int32_t)c->via.u64;
    else if (c->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && c->via.i64 >= INT32_MIN)
        m->u.error.code = (int32_t)c->via.i64;
    else
        return SHOAL_EFORMAT;
    return dec_str(&f[3], WIRE_ERRMSG_MAX, m->u.error.text);
}

static int error_check(const struct wire_msg *m)
{
    size_t n;

    return fixed_str(m->u.error.text, sizeof(m->u.error.text), &n) ? 0 : SHOAL_ELIMIT;
}

static int error_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    int r;

    r = msgpack_pack_int32(pk, m->u.error.code);
    r |= pack_str(pk, m->u.error.text);
    return r;
}

/* --- GET_SNAPSHOT: [3, id, repo, rev] ---------------------------------------------- */

static int get_snapshot_decode(struct wire_msg *m, const msgpack_object *f)
{
    int err;

    err = dec_str(&f[2], SNAPSHOT_REPO_MAX, m->u.get_snapshot.repo);
    if (err < 0)
        return err;
    return dec_str(&f[3], SNAPSHOT_REV_MAX, m->u.get_snapshot.rev);
}

static int get_snapshot_check(const struct wire_msg *m)
{
    const struct wire_get_snapshot *g = &m->u.get_snapshot;
    size_t n;

    if (!fixed_str(g->repo, sizeof(g->repo), &n) || !fixed_str(g->rev, sizeof(g->rev), &n))
        return SHOAL_ELIMIT;
    if (!snapshot_repo_ok(g->repo) || !snapshot_rev_ok(g->rev))
        return SHOAL_EFORMAT;
    return 0;
}

static int get_snapshot_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    int r;

    r = pack_str(pk, m->u.get_snapshot.repo);
    r |= pack_str(pk, m->u.get_snapshot.rev);
    return r;
}

/* --- SNAPSHOT: [4, id, len] + len bytes of a snapshot v1 encoding ------------------ */

static int snapshot_msg_decode(struct wire_msg *m, const msgpack_object *f)
{
    return dec_payload(&f[2], WIRE_SNAPSHOT_MAX, &m->u.snapshot);
}

static int snapshot_msg_check(const struct wire_msg *m)
{
    return check_payload(&m->u.snapshot, WIRE_SNAPSHOT_MAX);
}

static int snapshot_msg_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    return msgpack_pack_uint32(pk, m->u.snapshot.len);
}

/* --- GET_MANIFEST: [5, id, file sha256, piece index or -1] ------------------------- */

static int get_manifest_decode(struct wire_msg *m, const msgpack_object *f)
{
    const msgpack_object *p = &f[3];
    uint64_t v;
    int err;

    err = mpdec_bin(&f[2], WIRE_HASH_LEN, m->u.get_manifest.sha256);
    if (err < 0)
        return err;
    if (p->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (p->via.i64 != -1)
            return SHOAL_EFORMAT;
        m->u.get_manifest.piece = WIRE_PIECE_ALL;
        return 0;
    }
    err = dec_uint(p, 0, PROTO_PIECES_PER_FILE - 1, &v);
    if (err < 0)
        return err;
    m->u.get_manifest.piece = (uint32_t)v;
    return 0;
}

static int get_manifest_check(const struct wire_msg *m)
{
    uint32_t piece = m->u.get_manifest.piece;

    return piece == WIRE_PIECE_ALL || piece < PROTO_PIECES_PER_FILE ? 0 : SHOAL_ELIMIT;
}

static int get_manifest_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    uint32_t piece = m->u.get_manifest.piece;
    int r;

    r = pack_hash(pk, m->u.get_manifest.sha256);
    if (piece == WIRE_PIECE_ALL)
        r |= msgpack_pack_int32(pk, -1);
    else
        r |= msgpack_pack_uint32(pk, piece);
    return r;
}

/* --- MANIFEST: [6, id, len] + len bytes of a manifest or piece list (formats.md) --- */

static int manifest_msg_decode(struct wire_msg *m, const msgpack_object *f)
{
    return dec_payload(&f[2], WIRE_MANIFEST_MAX, &m->u.manifest);
}

static int manifest_msg_check(const struct wire_msg *m)
{
    return check_payload(&m->u.manifest, WIRE_MANIFEST_MAX);
}

static int manifest_msg_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    return msgpack_pack_uint32(pk, m->u.manifest.len);
}

/* --- GET_CHUNKS: [7, id, [hash, ...]] ---------------------------------------------- */

static int get_chunks_decode(struct wire_msg *m, const msgpack_object *f)
{
    return dec_hashes(&f[2], WIRE_CHUNKS_PER_REQ, &m->u.get_chunks);
}

static int get_chunks_check(const struct wire_msg *m)
{
    return check_hashes(&m->u.get_chunks, WIRE_CHUNKS_PER_REQ);
}

static int get_chunks_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    return pack_hashes(pk, &m->u.get_chunks);
}

/* --- CHUNK: [8, id, hash, len] + len bytes of chunk data --------------------------- */

static int chunk_decode(struct wire_msg *m, const msgpack_object *f)
{
    uint64_t v;
    int err;

    err = mpdec_bin(&f[2], WIRE_HASH_LEN, m->u.chunk.hash);
    if (err < 0)
        return err;
    err = dec_uint(&f[3], 1, PROTO_CHUNK_MAX, &v);
    if (err < 0)
        return err;
    m->u.chunk.len = (uint32_t)v;
    return 0;
}

static int chunk_check(const struct wire_msg *m)
{
    if (m->u.chunk.len == 0)
        return SHOAL_EFORMAT;
    return m->u.chunk.len > PROTO_CHUNK_MAX ? SHOAL_ELIMIT : 0;
}

static int chunk_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    int r;

    r = pack_hash(pk, m->u.chunk.hash);
    r |= msgpack_pack_uint32(pk, m->u.chunk.len);
    return r;
}

/* --- MISSING: [9, id, hash] -------------------------------------------------------- */

static int missing_decode(struct wire_msg *m, const msgpack_object *f)
{
    return mpdec_bin(&f[2], WIRE_HASH_LEN, m->u.missing.hash);
}

static int missing_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    return pack_hash(pk, m->u.missing.hash);
}

/* --- END: [10, id] and CANCEL: [14, id] have no fields ----------------------------- */

/* --- HAVE: [11, id, [hash, ...]] --------------------------------------------------- */

static int have_decode(struct wire_msg *m, const msgpack_object *f)
{
    return dec_hashes(&f[2], WIRE_HAVE_PER_REQ, &m->u.have);
}

static int have_check(const struct wire_msg *m)
{
    return check_hashes(&m->u.have, WIRE_HAVE_PER_REQ);
}

static int have_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    return pack_hashes(pk, &m->u.have);
}

/* --- HAVE_RESULT: [12, id, bitmap] ------------------------------------------------- */

static int have_result_decode(struct wire_msg *m, const msgpack_object *f)
{
    struct wire_have_result *h = &m->u.have_result;
    uint32_t n;

    if (f[2].type != MSGPACK_OBJECT_BIN)
        return SHOAL_EFORMAT;
    n = f[2].via.bin.size;
    if (n == 0)
        return SHOAL_EFORMAT;
    if (n > sizeof(h->bitmap))
        return SHOAL_ELIMIT;
    memcpy(h->bitmap, f[2].via.bin.ptr, n);
    h->len = n;
    return 0;
}

static int have_result_check(const struct wire_msg *m)
{
    if (m->u.have_result.len == 0)
        return SHOAL_EFORMAT;
    return m->u.have_result.len > sizeof(m->u.have_result.bitmap) ? SHOAL_ELIMIT : 0;
}

static int have_result_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    int r;

    r = msgpack_pack_bin(pk, m->u.have_result.len);
    r |= msgpack_pack_bin_body(pk, m->u.have_result.bitmap, m->u.have_result.len);
    return r;
}

bool wire_have_result_ok(const struct wire_have_result *h, uint32_t n)
{
    if (n == 0 || n > WIRE_HAVE_PER_REQ || h->len != (n + 7) / 8)
        return false;
    return n % 8 == 0 || (h->bitmap[h->len - 1] & (0xffu >> (n % 8))) == 0;
}

/* --- CREDIT: [13, 0, bytes] -------------------------------------------------------- */

static int credit_decode(struct wire_msg *m, const msgpack_object *f)
{
    uint64_t v;
    int err;

    err = dec_uint(&f[2], 1, WIRE_CREDIT_MAX, &v);
    if (err < 0)
        return err;
    m->u.credit.bytes = (uint32_t)v;
    return 0;
}

static int credit_check(const struct wire_msg *m)
{
    if (m->u.credit.bytes == 0)
        return SHOAL_EFORMAT;
    return m->u.credit.bytes > WIRE_CREDIT_MAX ? SHOAL_ELIMIT : 0;
}

static int credit_pack(const struct wire_msg *m, msgpack_packer *pk)
{
    return msgpack_pack_uint32(pk, m->u.credit.bytes);
}

/* --- The table --------------------------------------------------------------------- */

enum id_rule {
    ID_ZERO, /* always 0: the message belongs to no request */
    ID_ANY,  /* 0 (the connection) or a request's */
    ID_REQ,  /* a request's: 1..UINT32_MAX */
};

struct wire_kind {
    const char *name;
    uint8_t fields; /* array items, type and id included */
    uint8_t id_rule;
    size_t size; /* bytes of wire_msg.u the type uses */
    int (*decode)(struct wire_msg *m, const msgpack_object *f);
    int (*check)(const struct wire_msg *m); /* NULL: no value rules */
    int (*pack)(const struct wire_msg *m, msgpack_packer *pk);
};

#define USES(member) sizeof(((struct wire_msg *)0)->u.member)

static const struct wire_kind kinds[WIRE_TYPE_MAX + 1] = {
    [WIRE_HELLO] = {"HELLO", 5, ID_ZERO, USES(hello), hello_decode, hello_check, hello_pack},
    [WIRE_ERROR] = {"ERROR", 4, ID_ANY, USES(error), error_decode, error_check, error_pack},
    [WIRE_GET_SNAPSHOT] = {"GET_SNAPSHOT", 4, ID_REQ, USES(get_snapshot), get_snapshot_decode,
                           get_snapshot_check, get_snapshot_pack},
    [WIRE_SNAPSHOT] = {"SNAPSHOT", 3, ID_REQ, USES(snapshot), snapshot_msg_decode,
                       snapshot_msg_check, snapshot_msg_pack},
    [WIRE_GET_MANIFEST] = {"GET_MANIFEST", 4, ID_REQ, USES(get_manifest), get_manifest_decode,
                           get_manifest_check, get_manifest_pack},
    [WIRE_MANIFEST] = {"MANIFEST", 3, ID_REQ, USES(manifest), manifest_msg_decode,
                       manifest_msg_check, manifest_msg_pack},
    [WIRE_GET_CHUNKS] = {"GET_CHUNKS", 3, ID_REQ, USES(get_chunks), get_chunks_decode,
                         get_chunks_check, get_chunks_pack},
    [WIRE_CHUNK] = {"CHUNK", 4, ID_REQ, USES(chunk), chunk_decode, chunk_check, chunk_pack},
    [WIRE_MISSING] = {"MISSING", 3, ID_REQ, USES(missing), missing_decode, NULL, missing_pack},
    [WIRE_END] = {"END", 2, ID_REQ, 0, NULL, NULL, NULL},
    [WIRE_HAVE] = {"HAVE", 3, ID_REQ, USES(have), have_decode, have_check, have_pack},
    [WIRE_HAVE_RESULT] = {"HAVE_RESULT", 3, ID_REQ, USES(have_result), have_result_decode,
                          have_result_check, have_result_pack},
    [WIRE_CREDIT] = {"CREDIT", 3, ID_ZERO, USES(credit), credit_decode, credit_check, credit_pack},
    [WIRE_CANCEL] = {"CANCEL", 2, ID_REQ, 0, NULL, NULL, NULL},
};

static const struct wire_kind *kind_of(unsigned type)
{
    if (type == 0 || type > WIRE_TYPE_MAX)
        return NULL;
    return &kinds[type];
}

const char *wire_type_name(unsigned type)
{
    const struct wire_kind *k = kind_of(type);

    return k ? k->name : "?";
}

static bool id_ok(const struct wire_kind *k, uint64_t id)
{
    switch (k->id_rule) {
    case ID_ZERO:
        return id == 0;
    case ID_REQ:
        return id >= 1 && id <= UINT32_MAX;
    default:
        return id <= UINT32_MAX;
    }
}

uint32_t wire_payload_len(const struct wire_msg *m)
{
    switch (m->type) {
    case WIRE_CHUNK:
        return m->u.chunk.len;
    case WIRE_SNAPSHOT:
        return m->u.snapshot.len;
    case WIRE_MANIFEST:
        return m->u.manifest.len;
    }
    return 0;
}

/* --- Encoding ---------------------------------------------------------------------- */

/* A msgpack-c writer into a fixed buffer: it fails rather than grow. */
struct fixbuf {
    uint8_t *p;
    size_t cap;
    size_t len;
};

static int fixbuf_write(void *data, const char *buf, size_t len)
{
    struct fixbuf *b = data;

    if (len > b->cap - b->len)
        return -1;
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

int wire_msg_encode(const struct wire_msg *m, uint8_t *out, size_t cap)
{
    const struct wire_kind *k = kind_of(m->type);
    struct fixbuf fb;
    msgpack_packer pk;
    int r;

    if (!k || !id_ok(k, m->id) || (k->check && k->check(m) < 0))
        return -EINVAL;
    if (cap < WIRE_REC_HDR)
        return -ENOBUFS;
    fb.p = out + WIRE_REC_HDR;
    fb.cap = cap - WIRE_REC_HDR < WIRE_MSG_MAX ? cap - WIRE_REC_HDR : WIRE_MSG_MAX;
    fb.len = 0;
    msgpack_packer_init(&pk, &fb, fixbuf_write);
    r = msgpack_pack_array(&pk, k->fields);
    r |= msgpack_pack_uint32(&pk, m->type);
    r |= msgpack_pack_uint32(&pk, m->id);
    if (k->pack)
        r |= k->pack(m, &pk);
    if (r != 0)
        return -ENOBUFS;
    be32_put(out, (uint32_t)fb.len);
    return (int)(WIRE_REC_HDR + fb.len);
}

/* --- Decoding ---------------------------------------------------------------------- */

/* The outer array's count, read from its header before msgpack-c allocates for it.
 * mp_check has passed, so the header's bytes are there. */
static int outer_count(const uint8_t *buf)
{
    uint32_t n;

    if (buf[0] >= 0x90 && buf[0] <= 0x9f)
        n = buf[0] & 0x0f;
    else if (buf[0] == 0xdc)
        n = (uint32_t)buf[1] << 8 | buf[2];
    else if (buf[0] == 0xdd)
        n = be32_get(buf + 1);
    else
        return SHOAL_EFORMAT;
    if (n < 2)
        return SHOAL_EFORMAT;
    return n > WIRE_FIELDS_MAX ? SHOAL_ELIMIT : 0;
}

/* Type, id and fields of a decoded array into m, which is scratch (written even on
 * failure). */
static int decode_items(struct wire_msg *m, const msgpack_object *root)
{
    const msgpack_object *f = root->via.array.ptr;
    uint32_t n = root->via.array.size;
    const struct wire_kind *k;
    int err;

    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return SHOAL_EFORMAT;
    k = f[0].via.u64 <= WIRE_TYPE_MAX ? kind_of((unsigned)f[0].via.u64) : NULL;
    if (!k)
        return SHOAL_EPEER;
    if (f[0].via.u64 == WIRE_HELLO && n > 2) {
        err = hello_version(&f[2]);
        if (err < 0)
            return err;
    }
    if (n != k->fields || f[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || !id_ok(k, f[1].via.u64))
        return SHOAL_EFORMAT;
    m->type = (uint8_t)f[0].via.u64;
    m->id = (uint32_t)f[1].via.u64;
    if (k->decode) {
        err = k->decode(m, f);
        if (err < 0)
            return err;
    }
    return k->check ? k->check(m) : 0;
}

/* wire_msg_decode into scratch m. */
static int decode_record(struct wire_msg *m, const uint8_t *buf, size_t len)
{
    msgpack_unpacked up;
    int err;

    err = mp_check(buf, len, WIRE_MAX_DEPTH);
    if (err < 0)
        return err;
    err = outer_count(buf);
    if (err < 0)
        return err;
    msgpack_unpacked_init(&up);
    err = mpdec_unpack(&up, buf, len);
    if (err == 0)
        err = decode_items(m, &up.data);
    msgpack_unpacked_destroy(&up);
    return err;
}

int wire_msg_decode(struct wire_msg *m, const uint8_t *buf, size_t len)
{
    struct wire_msg tmp;
    int err;

    err = decode_record(&tmp, buf, len);
    if (err < 0)
        return err;
    /* Only the part of the union this type uses (a CHUNK does not copy 8 KiB). */
    memcpy(m, &tmp, offsetof(struct wire_msg, u) + kinds[tmp.type].size);
    return 0;
}

/* --- The record reader ------------------------------------------------------------- */

enum reader_state {
    RD_HDR,     /* reading a record's 4-byte length */
    RD_BODY,    /* reading its message */
    RD_PAYLOAD, /* passing its payload through */
};

void wire_reader_init(struct wire_reader *r)
{
    /* The record buffer needs no clearing: only bytes read into it are decoded. */
    memset(r, 0, offsetof(struct wire_reader, buf));
    r->state = RD_HDR;
    r->credit = WIRE_CREDIT_INIT;
}

int wire_reader_grant(struct wire_reader *r, uint32_t bytes)
{
    if (bytes == 0 || bytes > WIRE_CREDIT_MAX - r->credit)
        return -EINVAL;
    r->credit += bytes;
    return 0;
}

uint64_t wire_reader_credit(const struct wire_reader *r)
{
    return r->credit;
}

static int fail(struct wire_reader *r, int err)
{
    r->err = err;
    return err;
}

static void take(const uint8_t **in, size_t *len, size_t n)
{
    *in += n;
    *len -= n;
}

/* The session rules for the message just decoded into r->msg; then what follows it. */
static int on_message(struct wire_reader *r)
{
    const struct wire_msg *m = &r->msg;

    if (!r->hello_seen && m->type != WIRE_HELLO)
        return SHOAL_EPEER; /* HELLO must come first */
    if (r->hello_seen && m->type == WIRE_HELLO)
        return SHOAL_EPEER; /* and only once */
    r->hello_seen = true;
    if (m->type == WIRE_CHUNK) {
        if (m->u.chunk.len > r->credit)
            return SHOAL_EPEER;
        r->credit -= m->u.chunk.len;
    }
    r->payload_len = wire_payload_len(m);
    r->payload_done = 0;
    r->have = 0;
    r->state = r->payload_len > 0 ? RD_PAYLOAD : RD_HDR;
    return 0;
}

/* Collects the record's body; decodes it in place when the input holds all of it. */
static int read_body(struct wire_reader *r, const uint8_t **in, size_t *len)
{
    const uint8_t *body;
    size_t n;
    int err;

    if (r->have == 0 && *len >= r->need) {
        body = *in;
        take(in, len, r->need);
    } else {
        n = r->need - r->have;
        if (n > *len)
            n = *len;
        memcpy(r->buf + r->have, *in, n);
        take(in, len, n);
        r->have += (uint32_t)n;
        if (r->have < r->need)
            return 0;
        body = r->buf;
    }
    err = decode_record(&r->msg, body, r->need);
    if (err == 0)
        err = on_message(r);
    return err < 0 ? err : WIRE_EV_MSG;
}

int wire_reader_next(struct wire_reader *r, const uint8_t **in, size_t *len, struct wire_event *ev)
{
    size_t n;
    int ret;

    if (r->err < 0)
        return r->err;
    while (*len > 0) {
        switch (r->state) {
        case RD_HDR:
            n = WIRE_REC_HDR - r->have;
            if (n > *len)
                n = *len;
            memcpy(r->hdr + r->have, *in, n);
            take(in, len, n);
            r->have += (uint32_t)n;
            if (r->have < WIRE_REC_HDR)
                break;
            r->need = be32_get(r->hdr);
            if (r->need == 0)
                return fail(r, SHOAL_EFORMAT);
            if (r->need > WIRE_MSG_MAX)
                return fail(r, SHOAL_ELIMIT);
            r->have = 0;
            r->state = RD_BODY;
            break;
        case RD_BODY:
            ret = read_body(r, in, len);
            if (ret < 0)
                return fail(r, ret);
            if (ret == 0)
                break;
            memset(ev, 0, sizeof(*ev));
            ev->msg = &r->msg;
            return WIRE_EV_MSG;
        case RD_PAYLOAD:
            n = r->payload_len - r->payload_done;
            if (n > *len)
                n = *len;
            ev->msg = &r->msg;
            ev->data = *in;
            ev->len = n;
            ev->offset = r->payload_done;
            take(in, len, n);
            r->payload_done += (uint32_t)n;
            ev->last = r->payload_done == r->payload_len;
            if (ev->last)
                r->state = RD_HDR;
            return WIRE_EV_DATA;
        }
    }
    return 0;
}
