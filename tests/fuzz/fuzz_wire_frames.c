/* fuzz_wire_frames.c - the frame splitter and the record reader (protocol/wire.h) on
 * arbitrary bytes.
 *
 * Input: byte 0 seeds the piece sizes, byte 1 picks the frame limit, the rest is a
 * stream of frames whose bodies stand for decrypted plaintext (no crypto here). Each
 * frame the splitter finds goes to reader A whole; the same plaintext goes to reader B
 * in pseudo-random pieces, each from an exact-size copy. Both must report the same
 * events (messages re-encoded, payload bytes, in order) and end the same way: the
 * reader's results may not depend on how its input is split.
 */
#include "wire.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct trace {
    struct wire_reader r;
    uint64_t digest; /* FNV-1a over the normalised events */
    uint32_t off;    /* next payload offset expected */
    int status;      /* 0 while running, then the reader's error */
};

static struct trace ta, tb;

static void mix(struct trace *t, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i;

    for (i = 0; i < n; i++)
        t->digest = (t->digest ^ b[i]) * 0x100000001b3ull;
}

static void on_event(struct trace *t, int kind, const struct wire_event *ev)
{
    static uint8_t rec[WIRE_REC_MAX];
    int n;

    if (kind == WIRE_EV_MSG) {
        /* A message the reader accepted always encodes again. */
        n = wire_msg_encode(ev->msg, rec, sizeof(rec));
        if (n <= 0)
            abort();
        mix(t, "M", 1);
        mix(t, rec, (size_t)n);
        t->off = 0;
        return;
    }
    if (kind != WIRE_EV_DATA || ev->len == 0 || ev->offset != t->off)
        abort();
    t->off += (uint32_t)ev->len;
    if (t->off > wire_payload_len(ev->msg) || ev->last != (t->off == wire_payload_len(ev->msg)))
        abort();
    if (ev->offset == 0)
        mix(t, "[", 1);
    mix(t, ev->data, ev->len);
    if (ev->last)
        mix(t, "]", 1);
}

static void feed(struct trace *t, const uint8_t *buf, size_t len)
{
    struct wire_event ev;
    const uint8_t *p = buf;
    size_t left = len;
    int kind;

    if (t->status < 0)
        return;
    while ((kind = wire_reader_next(&t->r, &p, &left, &ev)) > 0)
        on_event(t, kind, &ev);
    if (kind < 0)
        t->status = kind;
    else if (left != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wire_frame f;
    uint8_t *plain, *piece;
    size_t max, pos, plain_len = 0, off, n;
    uint32_t rng;
    int ret;

    if (size < 2)
        return 0;
    rng = data[0] * 2654435761u + 1;
    max = data[1] < 128 ? WIRE_FRAME_MAX : (size_t)(data[1] - 127) * 64;
    data += 2;
    size -= 2;
    plain = malloc(size ? size : 1);
    if (!plain)
        return 0;
    wire_reader_init(&ta.r);
    wire_reader_init(&tb.r);
    ta.digest = tb.digest = 0xcbf29ce484222325ull;
    ta.off = tb.off = 0;
    ta.status = tb.status = 0;

    for (pos = 0; (ret = wire_frame_check(data + pos, size - pos, max, &f)) == 1; pos += f.end) {
        if (f.len == 0 || f.len > max || f.end > size - pos)
            abort();
        feed(&ta, data + pos + f.off, f.len);
        memcpy(plain + plain_len, data + pos + f.off, f.len);
        plain_len += f.len;
    }
    /* What is left is an incomplete frame, or the splitter said why not. */
    if (ret == 0 && size - pos >= WIRE_FRAME_HDR + 65535u)
        abort();

    for (off = 0; off < plain_len; off += n) {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        n = rng % 4 == 0 ? 1 : 1 + rng % 700;
        if (n > plain_len - off)
            n = plain_len - off;
        piece = malloc(n);
        if (!piece)
            break;
        memcpy(piece, plain + off, n);
        feed(&tb, piece, n);
        free(piece);
    }
    free(plain);
    if (off >= plain_len && (ta.status != tb.status || ta.digest != tb.digest))
        abort();
    return 0;
}
