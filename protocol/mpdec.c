/* mpdec.c - shared msgpack decoding steps (see mpdec.h). */
#include "mpdec.h"

#include "err.h"
#include "mpcheck.h"
#include "proto_limits.h"

#include <errno.h>
#include <string.h>

int mpdec_unpack(msgpack_unpacked *up, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    int err;

    err = mp_check(buf, len, PROTO_MAX_DEPTH);
    if (err < 0)
        return err;
    switch (msgpack_unpack_next(up, (const char *)buf, len, &off)) {
    case MSGPACK_UNPACK_SUCCESS:
        return off == len ? 0 : SHOAL_EFORMAT;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        return -ENOMEM;
    default:
        return SHOAL_EFORMAT;
    }
}

int mpdec_open(const msgpack_object *root, uint64_t version, uint32_t fields,
               const msgpack_object **f)
{
    const msgpack_object *v;

    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size == 0)
        return SHOAL_EFORMAT;
    v = &root->via.array.ptr[0];
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return SHOAL_EFORMAT;
    if (v->via.u64 != version)
        return SHOAL_EVERSION;
    if (root->via.array.size != fields)
        return SHOAL_EFORMAT;
    *f = root->via.array.ptr;
    return 0;
}

int mpdec_uint(const msgpack_object *o, uint64_t max, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
        return SHOAL_EFORMAT;
    *v = o->via.u64;
    return 0;
}

int mpdec_bin(const msgpack_object *o, size_t len, uint8_t *out)
{
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != len)
        return SHOAL_EFORMAT;
    memcpy(out, o->via.bin.ptr, len);
    return 0;
}
