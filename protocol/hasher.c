/* hasher.c - pieces, chunks and their hashes, in one call or as a stream. */
#include "hasher.h"

#include "err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void piece_finish(struct hasher_piece *p)
{
    memcpy(p->scratch, p->chunks, p->n_chunks * sizeof(p->chunks[0]));
    chash_piece_inplace(p->scratch, p->n_chunks, p->hash);
}

void hasher_piece_compute(struct hasher_piece *p, const uint8_t *data, uint32_t len)
{
    struct chunker ck;
    size_t off = 0, start = 0, k;
    uint32_t n = 0, tail;
    bool cut;

    chunker_init(&ck);
    while (off < len) {
        k = chunker_next(&ck, data + off, len - off, &cut);
        off += k;
        if (cut) {
            chash_chunk(data + start, off - start, p->chunks[n].hash);
            p->chunks[n].len = off - start;
            n++;
            start = off;
        }
    }
    tail = chunker_finish(&ck);
    if (tail) {
        chash_chunk(data + start, tail, p->chunks[n].hash);
        p->chunks[n].len = tail;
        n++;
    }
    p->len = len;
    p->n_chunks = n;
    piece_finish(p);
}

int hasher_init(struct hasher *h, hasher_piece_cb cb, void *arg)
{
    int err;

    memset(h, 0, sizeof(*h));
    h->piece = calloc(1, sizeof(*h->piece));
    if (!h->piece)
        return -ENOMEM;
    err = sha256_init(&h->sha);
    if (err < 0) {
        free(h->piece);
        h->piece = NULL;
        return err;
    }
    chunker_init(&h->ck);
    b3_init_keyed(&h->chunk, CHASH_DATA_KEY);
    h->cb = cb;
    h->arg = arg;
    return 0;
}

void hasher_release(struct hasher *h)
{
    sha256_release(&h->sha);
    free(h->piece);
    h->piece = NULL;
}

static void end_chunk(struct hasher *h)
{
    struct chash_leaf *leaf = &h->piece->chunks[h->piece->n_chunks++];

    b3_final(&h->chunk, leaf->hash, CHASH_LEN);
    leaf->len = h->chunk_len;
    h->chunk_len = 0;
    b3_init_keyed(&h->chunk, CHASH_DATA_KEY);
}

/* Ends the piece in progress (which has piece->len bytes) and hands it out. */
static int end_piece(struct hasher *h)
{
    struct hasher_piece *p = h->piece;
    int err = 0;

    if (chunker_finish(&h->ck))
        end_chunk(h);
    piece_finish(p);
    if (h->cb)
        err = h->cb(h->arg, p);
    p->index++;
    p->offset += p->len;
    p->len = 0;
    p->n_chunks = 0;
    return err;
}

int hasher_update(struct hasher *h, const void *data, size_t len)
{
    const uint8_t *in = data;
    struct hasher_piece *p = h->piece;
    size_t room, k;
    bool cut;
    int err;

    if (len > PROTO_FILE_MAX - h->size)
        return SHOAL_ELIMIT;
    sha256_update(&h->sha, in, len);
    h->size += len;
    while (len > 0) {
        /* A full piece is closed only when more bytes arrive, so that a file of
         * exactly n pieces does not end with an empty one. */
        if (p->len == PROTO_PIECE_LEN) {
            err = end_piece(h);
            if (err < 0)
                return err;
        }
        room = PROTO_PIECE_LEN - p->len;
        k = chunker_next(&h->ck, in, len < room ? len : room, &cut);
        b3_update(&h->chunk, in, k);
        h->chunk_len += (uint32_t)k;
        p->len += (uint32_t)k;
        in += k;
        len -= k;
        if (cut)
            end_chunk(h);
    }
    return 0;
}

int hasher_final(struct hasher *h, uint8_t sha256[static SHA256_LEN], uint64_t *size)
{
    int err = 0;

    if (h->piece->len > 0)
        err = end_piece(h);
    sha256_final(&h->sha, sha256);
    *size = h->size;
    hasher_release(h);
    return err;
}
