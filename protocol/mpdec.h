/* mpdec.h - the steps every msgpack decoder in protocol/ shares. Internal to
 * protocol/: msgpack-c's types never leave it.
 *
 * Errors: SHOAL_EFORMAT (shape or type), SHOAL_EVERSION, SHOAL_ELIMIT (mp_check's
 *   depth), -ENOMEM. Out-parameters are left untouched on failure.
 */
#ifndef SHOAL_MPDEC_H
#define SHOAL_MPDEC_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* mp_check, then exactly one object from buf[0..len) into up (which the caller has
 * initialised and destroys). After mp_check every count is bounded by the input, so
 * what msgpack-c allocates is proportional to len (msgpack-c issue #1013). */
int mpdec_unpack(msgpack_unpacked *up, const uint8_t *buf, size_t len);

/* root must be an array whose first item is `version` and which has `fields` items
 * in all; *f gets the items. The version is read before the shape, so that a later
 * version may change everything after it and still be told apart from garbage. */
int mpdec_open(const msgpack_object *root, uint64_t version, uint32_t fields,
               const msgpack_object **f);

/* A non-negative integer no larger than max. */
int mpdec_uint(const msgpack_object *o, uint64_t max, uint64_t *v);

/* A bin of exactly len bytes, copied to out. */
int mpdec_bin(const msgpack_object *o, size_t len, uint8_t *out);

#endif
