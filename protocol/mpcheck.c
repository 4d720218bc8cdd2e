/* mpcheck.c - a bounds walk over msgpack bytes before msgpack-c decodes them. */
#include "mpcheck.h"

#include "err.h"

/* The walk keeps one counter per open array or map on the C stack, so the depth it
 * follows has a fixed ceiling; Shoal's own limit (PROTO_MAX_DEPTH) is far below it and
 * a caller asking for more simply gets this. */
#define MP_DEPTH_CAP 64

static uint64_t be_read(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    unsigned i;

    for (i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* What one header says: `hdr` bytes of header (including any fixed-size value), then
 * `width` bytes holding a length or count (0 when the type has none; `inline_n` is it
 * then), and whether that number is a byte length (str, bin) or a count of objects. */
struct mp_head {
    unsigned hdr;
    unsigned width;
    uint64_t inline_n;
    int container; /* 0 scalar or str/bin, 1 array, 2 map */
    int payload;   /* str or bin: the number is a byte length */
};

static int mp_head(uint8_t b, struct mp_head *h)
{
    h->hdr = 1;
    h->width = 0;
    h->inline_n = 0;
    h->container = 0;
    h->payload = 0;
    if (b <= 0x7f || b >= 0xe0)
        return 0; /* positive or negative fixint */
    if (b <= 0x8f) {
        h->container = 2;
        h->inline_n = b & 0x0f;
        return 0;
    }
    if (b <= 0x9f) {
        h->container = 1;
        h->inline_n = b & 0x0f;
        return 0;
    }
    if (b <= 0xbf) {
        h->payload = 1;
        h->inline_n = b & 0x1f;
        return 0;
    }
    switch (b) {
    case 0xc0: /* nil */
    case 0xc2: /* false */
    case 0xc3: /* true */
        return 0;
    case 0xc4: /* bin 8, 16, 32 */
    case 0xd9: /* str 8, 16, 32 */
        h->payload = 1;
        h->width = 1;
        return 0;
    case 0xc5:
    case 0xda:
        h->payload = 1;
        h->width = 2;
        return 0;
    case 0xc6:
    case 0xdb:
        h->payload = 1;
        h->width = 4;
        return 0;
    case 0xca: /* float 32 */
        h->hdr = 5;
        return 0;
    case 0xcb: /* float 64 */
        h->hdr = 9;
        return 0;
    case 0xcc: /* uint 8..64 */
    case 0xd0: /* int 8..64 */
        h->hdr = 2;
        return 0;
    case 0xcd:
    case 0xd1:
        h->hdr = 3;
        return 0;
    case 0xce:
    case 0xd2:
        h->hdr = 5;
        return 0;
    case 0xcf:
    case 0xd3:
        h->hdr = 9;
        return 0;
    case 0xdc:
        h->container = 1;
        h->width = 2;
        return 0;
    case 0xdd:
        h->container = 1;
        h->width = 4;
        return 0;
    case 0xde:
        h->container = 2;
        h->width = 2;
        return 0;
    case 0xdf:
        h->container = 2;
        h->width = 4;
        return 0;
    }
    /* 0xc1 (never used), ext 8/16/32 (0xc7-0xc9) and fixext (0xd4-0xd8). */
    return SHOAL_EFORMAT;
}

int mp_check(const uint8_t *buf, size_t len, unsigned max_depth)
{
    uint64_t left[MP_DEPTH_CAP]; /* objects of each open container not yet begun */
    unsigned depth = 0;
    uint64_t pending = 0; /* sum of left[]: each of those still needs at least a byte */
    uint64_t n, avail;
    size_t p = 0;
    struct mp_head h;
    int err;

    if (max_depth > MP_DEPTH_CAP)
        max_depth = MP_DEPTH_CAP;
    for (;;) {
        /* Invariant: pending <= len - p, so the bytes this object may use are what is
         * left once every object still owed elsewhere has its one byte. */
        if (p >= len)
            return SHOAL_EFORMAT;
        avail = (uint64_t)(len - p) - pending;
        err = mp_head(buf[p], &h);
        if (err < 0)
            return err;
        if ((uint64_t)h.hdr + h.width > avail)
            return SHOAL_EFORMAT;
        n = h.width ? be_read(buf + p + h.hdr, h.width) : h.inline_n;
        p += h.hdr + h.width;
        avail -= h.hdr + h.width;
        if (h.payload) {
            if (n > avail)
                return SHOAL_EFORMAT;
            p += (size_t)n;
        } else if (h.container) {
            if (depth >= max_depth)
                return SHOAL_ELIMIT;
            if (h.container == 2)
                n *= 2;
            if (n > avail)
                return SHOAL_EFORMAT;
            if (n > 0) {
                left[depth++] = n;
                pending += n;
            }
        }
        /* Close every container whose last object has now been read completely. */
        while (depth > 0 && left[depth - 1] == 0)
            depth--;
        if (depth == 0)
            return p == len ? 0 : SHOAL_EFORMAT;
        left[depth - 1]--;
        pending--;
    }
}
