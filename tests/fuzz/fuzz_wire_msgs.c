/* fuzz_wire_msgs.c - every peer message decoder (protocol/wire.h) on arbitrary bytes.
 *
 * The input is one record body. It is decoded as it is; then, if it looks like
 * [type, ...] with a small type, once as each type, so every decoder meets every
 * shape the fuzzer finds. Whatever decodes must encode again, decode to the same
 * message and encode to the same bytes: decoders accept nothing encoders refuse.
 * The frame splitter runs on the same bytes.
 */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

static uint8_t rec[WIRE_REC_MAX], again[WIRE_REC_MAX];

static void decode_as_is(const uint8_t *data, size_t size)
{
    static struct wire_msg m, d;
    int n, n2;

    if (wire_msg_decode(&m, data, size) != 0)
        return;
    n = wire_msg_encode(&m, rec, sizeof(rec));
    if (n <= (int)WIRE_REC_HDR)
        abort();
    if (wire_msg_decode(&d, rec + WIRE_REC_HDR, (size_t)n - WIRE_REC_HDR) != 0)
        abort();
    n2 = wire_msg_encode(&d, again, sizeof(again));
    if (n2 != n || memcmp(rec, again, (size_t)n) != 0)
        abort();
    if (wire_payload_len(&m) != wire_payload_len(&d))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wire_frame f;
    uint8_t *copy;
    unsigned t;

    decode_as_is(data, size);
    /* A fixarray whose first item is a positive fixint: try it as every type. */
    if (size >= 2 && data[0] >= 0x90 && data[0] <= 0x9f && data[1] <= 0x7f) {
        copy = malloc(size);
        if (!copy)
            return 0;
        memcpy(copy, data, size);
        for (t = 0; t <= WIRE_TYPE_MAX + 1; t++) {
            copy[1] = (uint8_t)t;
            decode_as_is(copy, size);
        }
        free(copy);
    }
    if (wire_frame_check(data, size, WIRE_FRAME_MAX, &f) == 1 && (f.end > size || f.len == 0))
        abort();
    return 0;
}
