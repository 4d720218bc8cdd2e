/* manifest.c - manifests (pieces -> chunks) and their msgpack encoding, version 1. */
#include "manifest.h"

#include "err.h"
#include "proto_limits.h"
#include "mpcheck.h"
#include "mpdec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

/* Fields of a manifest and of each piece in it; a piece travelling alone adds the version. */
#define MANIFEST_FIELDS 4
#define PIECE_FIELDS    4

static uint32_t pieces_for(uint64_t size)
{
    /* size <= PROTO_FILE_MAX keeps this within PROTO_PIECES_PER_FILE. */
    return (uint32_t)((size + PROTO_PIECE_LEN - 1) / PROTO_PIECE_LEN);
}

static uint32_t piece_len_of(uint64_t size, uint32_t index)
{
    uint64_t rest = size - (uint64_t)index * PROTO_PIECE_LEN;

    return rest < PROTO_PIECE_LEN ? (uint32_t)rest : PROTO_PIECE_LEN;
}

/* struct manifest has no capacity field, so the capacity of the chunks array is a
 * function of how many chunks it holds; doubling keeps a whole file's worth of
 * manifest_set_piece calls linear. */
static uint64_t chunk_cap(uint64_t n)
{
    uint64_t cap = 64;

    if (n == 0)
        return 0;
    while (cap < n)
        cap *= 2;
    return cap;
}

int manifest_init(struct manifest *m, uint64_t size)
{
    struct manifest_piece *pieces = NULL;
    uint32_t n, i;

    if (size > PROTO_FILE_MAX)
        return SHOAL_ELIMIT;
    n = pieces_for(size);
    if (n > 0) {
        pieces = calloc(n, sizeof(*pieces));
        if (!pieces)
            return -ENOMEM;
        for (i = 0; i < n; i++)
            pieces[i].len = piece_len_of(size, i);
    }
    memset(m, 0, sizeof(*m));
    m->size = size;
    m->n_pieces = n;
    m->pieces = pieces;
    return 0;
}

int manifest_set_piece(struct manifest *m, uint32_t index, const uint8_t hash[static CHASH_LEN],
                       const struct chash_leaf *chunks, uint32_t n_chunks)
{
    struct manifest_piece *p;
    struct chash_leaf *grown;
    uint64_t sum = 0, need, cap;
    uint32_t i;

    if (index != m->n_filled || index >= m->n_pieces)
        return -EINVAL;
    p = &m->pieces[index];
    for (i = 0; i < n_chunks; i++) {
        /* Compared against what is left so that huge lengths cannot wrap the sum. */
        if (chunks[i].len > p->len - sum)
            return -EINVAL;
        sum += chunks[i].len;
    }
    if (sum != p->len)
        return -EINVAL;
    need = m->n_chunks + n_chunks;
    if (need > chunk_cap(m->n_chunks)) {
        cap = chunk_cap(need);
        if (cap > SIZE_MAX / sizeof(*m->chunks))
            return -ENOMEM;
        grown = realloc(m->chunks, (size_t)cap * sizeof(*m->chunks));
        if (!grown)
            return -ENOMEM;
        m->chunks = grown;
    }
    memcpy(m->chunks + m->n_chunks, chunks, (size_t)n_chunks * sizeof(*chunks));
    memcpy(p->hash, hash, CHASH_LEN);
    p->first_chunk = m->n_chunks;
    p->n_chunks = n_chunks;
    m->n_chunks = need;
    m->n_filled++;
    return 0;
}

void manifest_release(struct manifest *m)
{
    free(m->pieces);
    free(m->chunks);
    memset(m, 0, sizeof(*m));
}

/* The length rules of one piece's chunks (proto_limits.h): every chunk fits the chunker's
 * bounds, only the last may be short, and together they are the piece. */
static int check_chunks(uint64_t piece_len, const struct chash_leaf *c, uint64_t n)
{
    uint64_t sum = 0, i;

    if (n == 0 || n > PROTO_CHUNKS_PER_PIECE)
        return SHOAL_EFORMAT;
    for (i = 0; i < n; i++) {
        if (c[i].len == 0 || c[i].len > PROTO_CHUNK_MAX)
            return SHOAL_EFORMAT;
        if (i + 1 < n && c[i].len < PROTO_CHUNK_MIN)
            return SHOAL_EFORMAT;
        sum += c[i].len;
    }
    return sum == piece_len ? 0 : SHOAL_EFORMAT;
}

/* Everything but the hashes. The layout checks (pieces complete, chunk ranges back to
 * back and inside the array) also make every later index into m->chunks safe.
 * *most gets the largest chunk count of a piece. */
static int check_structure(const struct manifest *m, uint32_t *most)
{
    const struct manifest_piece *p;
    uint64_t next = 0;
    uint32_t i, top = 0;
    int err;

    if (m->size > PROTO_FILE_MAX || m->n_pieces != pieces_for(m->size) ||
        m->n_filled != m->n_pieces)
        return SHOAL_EFORMAT;
    for (i = 0; i < m->n_pieces; i++) {
        p = &m->pieces[i];
        if (p->len != piece_len_of(m->size, i) || p->first_chunk != next ||
            p->n_chunks > m->n_chunks - next)
            return SHOAL_EFORMAT;
        err = check_chunks(p->len, m->chunks + next, p->n_chunks);
        if (err < 0)
            return err;
        next += p->n_chunks;
        if (p->n_chunks > top)
            top = p->n_chunks;
    }
    if (next != m->n_chunks)
        return SHOAL_EFORMAT;
    *most = top;
    return 0;
}

int manifest_check(const struct manifest *m)
{
    const struct manifest_piece *p;
    struct chash_leaf *scratch = NULL;
    uint8_t got[CHASH_LEN];
    uint32_t most, i;
    int err;

    err = check_structure(m, &most);
    if (err < 0)
        return err;
    if (most > 0) {
        scratch = malloc((size_t)most * sizeof(*scratch));
        if (!scratch)
            return -ENOMEM;
    }
    for (i = 0; i < m->n_pieces; i++) {
        p = &m->pieces[i];
        /* chash_piece_inplace overwrites its leaves while it builds the tree. */
        memcpy(scratch, m->chunks + p->first_chunk, (size_t)p->n_chunks * sizeof(*scratch));
        chash_piece_inplace(scratch, p->n_chunks, got);
        if (memcmp(got, p->hash, CHASH_LEN) != 0) {
            err = SHOAL_EHASH;
            goto out;
        }
    }
    err = 0;
out:
    free(scratch);
    return err;
}

/* len, piece hash, chunk hashes, chunk lengths: the fields both forms share. Returns the
 * packer's results or'd together (nonzero when the buffer could not grow). */
static int pack_piece_fields(msgpack_packer *pk, const struct manifest_piece *p,
                             const struct chash_leaf *c)
{
    uint32_t i;
    int r = 0;

    r |= msgpack_pack_uint32(pk, p->len);
    r |= msgpack_pack_bin(pk, CHASH_LEN);
    r |= msgpack_pack_bin_body(pk, p->hash, CHASH_LEN);
    /* One bin for all chunk hashes: the leaves interleave hash and length, so the
     * body goes out one hash at a time. */
    r |= msgpack_pack_bin(pk, (size_t)p->n_chunks * CHASH_LEN);
    for (i = 0; i < p->n_chunks; i++)
        r |= msgpack_pack_bin_body(pk, c[i].hash, CHASH_LEN);
    r |= msgpack_pack_array(pk, p->n_chunks);
    for (i = 0; i < p->n_chunks; i++)
        r |= msgpack_pack_uint64(pk, c[i].len);
    return r;
}

static void take_buffer(msgpack_sbuffer *sb, uint8_t **out, size_t *out_len)
{
    *out_len = sb->size;
    *out = (uint8_t *)msgpack_sbuffer_release(sb);
}

int manifest_encode(const struct manifest *m, uint8_t **out, size_t *out_len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const struct manifest_piece *p;
    uint32_t most, i;
    int r = 0, err;

    /* Only what a decoder would accept leaves this node; checking first also bounds
     * every chunk range read below. */
    if (check_structure(m, &most) < 0)
        return -EINVAL;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    r |= msgpack_pack_array(&pk, MANIFEST_FIELDS);
    r |= msgpack_pack_uint32(&pk, MANIFEST_VERSION);
    r |= msgpack_pack_uint64(&pk, m->size);
    r |= msgpack_pack_bin(&pk, sizeof(m->sha256));
    r |= msgpack_pack_bin_body(&pk, m->sha256, sizeof(m->sha256));
    r |= msgpack_pack_array(&pk, m->n_pieces);
    for (i = 0; i < m->n_pieces; i++) {
        p = &m->pieces[i];
        r |= msgpack_pack_array(&pk, PIECE_FIELDS);
        r |= pack_piece_fields(&pk, p, m->chunks + p->first_chunk);
    }
    if (r != 0) {
        err = -ENOMEM;
        goto out;
    }
    take_buffer(&sb, out, out_len);
    err = 0;
out:
    msgpack_sbuffer_destroy(&sb);
    return err;
}

int manifest_piece_encode(const struct manifest_piece *p, const struct chash_leaf *chunks,
                          uint8_t **out, size_t *out_len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int r = 0, err;

    if (p->len > PROTO_PIECE_LEN || check_chunks(p->len, chunks, p->n_chunks) < 0)
        return -EINVAL;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    r |= msgpack_pack_array(&pk, 1 + PIECE_FIELDS);
    r |= msgpack_pack_uint32(&pk, MANIFEST_VERSION);
    r |= pack_piece_fields(&pk, p, chunks);
    if (r != 0) {
        err = -ENOMEM;
        goto out;
    }
    take_buffer(&sb, out, out_len);
    err = 0;
out:
    msgpack_sbuffer_destroy(&sb);
    return err;
}

/* The chunk count of piece fields f[0..PIECE_FIELDS), taken from the decoded lengths
 * array itself (so it is backed by input bytes) and matched against the hashes bin. */
static int piece_count(const msgpack_object *f, uint32_t *n)
{
    const msgpack_object *hashes = &f[2], *lens = &f[3];

    if (hashes->type != MSGPACK_OBJECT_BIN || lens->type != MSGPACK_OBJECT_ARRAY)
        return SHOAL_EFORMAT;
    if (lens->via.array.size == 0 || lens->via.array.size > PROTO_CHUNKS_PER_PIECE)
        return SHOAL_EFORMAT;
    if (hashes->via.bin.size != (uint64_t)lens->via.array.size * CHASH_LEN)
        return SHOAL_EFORMAT;
    *n = lens->via.array.size;
    return 0;
}

/* Copies piece fields that piece_count accepted into p and c (room for its count) and
 * checks the numbers. want is the length the file's size implies, 0 for a piece that
 * travels alone. p and c are scratch: written even on failure. */
static int piece_fill(const msgpack_object *f, uint32_t want, struct manifest_piece *p,
                      struct chash_leaf *c)
{
    const msgpack_object *lens = &f[3];
    const uint8_t *hashes = (const uint8_t *)f[2].via.bin.ptr;
    uint64_t len, v;
    uint32_t i;
    int err;

    err = mpdec_uint(&f[0], PROTO_PIECE_LEN, &len);
    if (err < 0)
        return err;
    if (len == 0 || (want != 0 && len != want))
        return SHOAL_EFORMAT;
    err = mpdec_bin(&f[1], CHASH_LEN, p->hash);
    if (err < 0)
        return err;
    for (i = 0; i < lens->via.array.size; i++) {
        err = mpdec_uint(&lens->via.array.ptr[i], PROTO_CHUNK_MAX, &v);
        if (err < 0)
            return err;
        memcpy(c[i].hash, hashes + (size_t)i * CHASH_LEN, CHASH_LEN);
        c[i].len = v;
    }
    err = check_chunks(len, c, lens->via.array.size);
    if (err < 0)
        return err;
    p->len = (uint32_t)len;
    p->n_chunks = lens->via.array.size;
    p->first_chunk = 0;
    return 0;
}

int manifest_decode(struct manifest *m, const uint8_t *buf, size_t len)
{
    msgpack_unpacked up;
    struct manifest tmp;
    const msgpack_object *f, *list, *pf;
    uint64_t total = 0;
    uint32_t i, n;
    int err;

    memset(&tmp, 0, sizeof(tmp));
    msgpack_unpacked_init(&up);
    err = mpdec_unpack(&up, buf, len);
    if (err < 0)
        goto out;
    err = mpdec_open(&up.data, MANIFEST_VERSION, MANIFEST_FIELDS, &f);
    if (err < 0)
        goto out;
    err = mpdec_uint(&f[1], UINT64_MAX, &tmp.size);
    if (err < 0)
        goto out;
    if (tmp.size > PROTO_FILE_MAX) {
        err = SHOAL_ELIMIT;
        goto out;
    }
    err = mpdec_bin(&f[2], CHASH_LEN, tmp.sha256);
    if (err < 0)
        goto out;
    list = &f[3];
    if (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size != pieces_for(tmp.size)) {
        err = SHOAL_EFORMAT;
        goto out;
    }
    /* Shapes and counts first, from the decoded objects: both allocations below are
     * then bounded by objects that exist in the input. */
    for (i = 0; i < list->via.array.size; i++) {
        pf = &list->via.array.ptr[i];
        if (pf->type != MSGPACK_OBJECT_ARRAY || pf->via.array.size != PIECE_FIELDS) {
            err = SHOAL_EFORMAT;
            goto out;
        }
        err = piece_count(pf->via.array.ptr, &n);
        if (err < 0)
            goto out;
        total += n;
    }
    tmp.n_pieces = list->via.array.size;
    if (tmp.n_pieces > 0) {
        tmp.pieces = calloc(tmp.n_pieces, sizeof(*tmp.pieces));
        tmp.chunks = malloc((size_t)total * sizeof(*tmp.chunks));
        if (!tmp.pieces || !tmp.chunks) {
            err = -ENOMEM;
            goto out;
        }
    }
    for (i = 0; i < tmp.n_pieces; i++) {
        err = piece_fill(list->via.array.ptr[i].via.array.ptr, piece_len_of(tmp.size, i),
                         &tmp.pieces[i], tmp.chunks + tmp.n_chunks);
        if (err < 0)
            goto out;
        tmp.pieces[i].first_chunk = tmp.n_chunks;
        tmp.n_chunks += tmp.pieces[i].n_chunks;
    }
    tmp.n_filled = tmp.n_pieces;
    *m = tmp;
    memset(&tmp, 0, sizeof(tmp));
    err = 0;
out:
    manifest_release(&tmp);
    msgpack_unpacked_destroy(&up);
    return err;
}

int manifest_piece_decode(struct manifest_piece *piece, struct chash_leaf **chunks,
                          const uint8_t *buf, size_t len)
{
    msgpack_unpacked up;
    struct manifest_piece p;
    struct chash_leaf *c = NULL;
    const msgpack_object *f;
    uint32_t n;
    int err;

    msgpack_unpacked_init(&up);
    err = mpdec_unpack(&up, buf, len);
    if (err < 0)
        goto out;
    err = mpdec_open(&up.data, MANIFEST_VERSION, 1 + PIECE_FIELDS, &f);
    if (err < 0)
        goto out;
    err = piece_count(f + 1, &n);
    if (err < 0)
        goto out;
    c = malloc((size_t)n * sizeof(*c));
    if (!c) {
        err = -ENOMEM;
        goto out;
    }
    err = piece_fill(f + 1, 0, &p, c);
    if (err < 0)
        goto out;
    *piece = p;
    *chunks = c;
    c = NULL;
    err = 0;
out:
    free(c);
    msgpack_unpacked_destroy(&up);
    return err;
}
