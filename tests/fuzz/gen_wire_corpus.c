/* gen_wire_corpus.c - writes the seed inputs of fuzz_wire_msgs and fuzz_wire_frames.
 *
 *   gen_wire_corpus DIR    (DIR/wire_msgs/ and DIR/wire_frames/ must exist)
 *
 * Seeds are valid encodings from wire_msg_encode (and a few famous bad ones), so the
 * fuzzers start from every message type. Regenerate after a wire format change:
 *   build/tests/fuzz/gen_wire_corpus tests/fuzz/corpus
 */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;

static void write_file(const char *sub, const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
    f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 31 + i * 7);
}

/* One message of each type; variant 1 takes the limits. */
static void make(struct wire_msg *m, unsigned type, int big)
{
    uint32_t i;

    memset(m, 0, sizeof(*m));
    m->type = (uint8_t)type;
    m->id = big ? UINT32_MAX : 7;
    switch (type) {
    case WIRE_HELLO:
        m->id = 0;
        m->u.hello.version = WIRE_VERSION;
        memcpy(m->u.hello.node_id, "k3n9x2ab4cd5ef6g", 17);
        m->u.hello.features = big ? UINT64_MAX : 0;
        break;
    case WIRE_ERROR:
        m->u.error.code = WIRE_ERR_BUSY;
        memcpy(m->u.error.text, "busy", 5);
        break;
    case WIRE_GET_SNAPSHOT:
        memcpy(m->u.get_snapshot.repo, "model/org/name", 15);
        memcpy(m->u.get_snapshot.rev, "0123456789abcdef0123456789abcdef01234567", 41);
        break;
    case WIRE_SNAPSHOT:
        m->u.snapshot.len = big ? WIRE_SNAPSHOT_MAX : 20;
        break;
    case WIRE_GET_MANIFEST:
        fill(m->u.get_manifest.sha256, WIRE_HASH_LEN, 1);
        m->u.get_manifest.piece = big ? WIRE_PIECE_ALL : 3;
        break;
    case WIRE_MANIFEST:
        m->u.manifest.len = big ? WIRE_MANIFEST_MAX : 20;
        break;
    case WIRE_GET_CHUNKS:
    case WIRE_HAVE:
        m->u.have.n = big ? WIRE_CHUNKS_PER_REQ : 2;
        for (i = 0; i < m->u.have.n; i++)
            fill(m->u.have.hash[i], WIRE_HASH_LEN, i);
        break;
    case WIRE_CHUNK:
        fill(m->u.chunk.hash, WIRE_HASH_LEN, 2);
        m->u.chunk.len = big ? PROTO_CHUNK_MAX : 24;
        break;
    case WIRE_MISSING:
        fill(m->u.missing.hash, WIRE_HASH_LEN, 3);
        break;
    case WIRE_HAVE_RESULT:
        m->u.have_result.len = big ? WIRE_HAVE_PER_REQ / 8 : 1;
        m->u.have_result.bitmap[0] = 0x80;
        break;
    case WIRE_CREDIT:
        m->id = 0;
        m->u.credit.bytes = big ? WIRE_CREDIT_MAX : 65536;
        break;
    }
}

static int encode(const struct wire_msg *m, uint8_t *out)
{
    int n = wire_msg_encode(m, out, WIRE_REC_MAX);

    if (n < 0) {
        fprintf(stderr, "gen_wire_corpus: cannot encode %s\n", wire_type_name(m->type));
        exit(1);
    }
    return n;
}

/* A plaintext stream: HELLO, then every type once, payloads after their messages. */
static size_t session(uint8_t *out, int big)
{
    static struct wire_msg m;
    size_t len = 0;
    unsigned t;

    for (t = 1; t <= WIRE_TYPE_MAX; t++) {
        if (big && t != WIRE_HELLO && t != WIRE_GET_CHUNKS && t != WIRE_CHUNK)
            continue;
        make(&m, t, t == WIRE_GET_CHUNKS ? big : 0);
        len += (size_t)encode(&m, out + len);
        fill(out + len, wire_payload_len(&m), t);
        len += wire_payload_len(&m);
    }
    return len;
}

/* Byte 0: piece seed, byte 1: frame limit selector, then frames of `step` bytes. */
static void frames(const char *name, uint8_t seed, uint8_t sel, const uint8_t *plain, size_t len,
                   size_t step)
{
    uint8_t *out = malloc(2 + len + 2 * (len / step + 1));
    size_t off, n, o = 2;

    out[0] = seed;
    out[1] = sel;
    for (off = 0; off < len; off += n) {
        n = len - off < step ? len - off : step;
        wire_frame_header(out + o, n);
        memcpy(out + o + 2, plain + off, n);
        o += 2 + n;
    }
    write_file("wire_frames", name, out, o);
    free(out);
}

int main(int argc, char **argv)
{
    static const uint8_t deep[] = {0x93, 0x07, 0x01, 0x91, 0x91, 0xc4, 0x00};
    static const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t future_hello[] = {0x93, 0x01, 0x00, 0x02};
    static uint8_t rec[WIRE_REC_MAX], plain[1 << 18];
    static struct wire_msg m;
    char name[64];
    unsigned t;
    int big, n;
    size_t len;

    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    for (t = 1; t <= WIRE_TYPE_MAX; t++) {
        for (big = 0; big < 2; big++) {
            make(&m, t, big);
            n = encode(&m, rec);
            snprintf(name, sizeof(name), "%02u_%s%s", t, wire_type_name(t), big ? "_max" : "");
            write_file("wire_msgs", name, rec + WIRE_REC_HDR, (size_t)n - WIRE_REC_HDR);
        }
    }
    write_file("wire_msgs", "bad_deep", deep, sizeof(deep));
    write_file("wire_msgs", "bad_count", huge, sizeof(huge));
    write_file("wire_msgs", "bad_version", future_hello, sizeof(future_hello));

    len = session(plain, 0);
    frames("session_1frame", 0, 0, plain, len, len);
    frames("session_small_frames", 1, 0, plain, len, 13);
    frames("session_frames_limit", 2, 130, plain, len, 100);
    len = session(plain, 1);
    frames("session_max_request", 3, 0, plain, len, WIRE_PLAIN_MAX);
    /* A record length over WIRE_MSG_MAX right after HELLO. */
    make(&m, WIRE_HELLO, 0);
    len = (size_t)encode(&m, plain);
    memcpy(plain + len, "\x00\x00\x40\x01", 4);
    frames("bad_record_len", 4, 0, plain, len + 4, 64);
    return 0;
}
