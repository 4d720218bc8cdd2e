/* mpcheck.h - a bounds walk over msgpack bytes before msgpack-c decodes them.
 *
 * msgpack-c allocates for an array's or map's declared count before it finds the
 * bytes missing (msgpack-c issue #1013), so every msgpack input from outside goes
 * through mp_check() first: it walks the headers without allocating and rejects any
 * count or length larger than the bytes left, nesting deeper than max_depth, types
 * Shoal never uses (ext, and float only if not allowed), and trailing bytes.
 *
 * Threads: reentrant. Errors: 0, SHOAL_EFORMAT or SHOAL_ELIMIT (depth).
 */
#ifndef SHOAL_MPCHECK_H
#define SHOAL_MPCHECK_H

#include <stddef.h>
#include <stdint.h>

/* Checks that buf[0..len) holds exactly one msgpack object within the bounds above. */
int mp_check(const uint8_t *buf, size_t len, unsigned max_depth);

#endif
