/* vec.h - reading the JSON test vectors in tests/vectors/ (through jansson). */
#ifndef SHOAL_VEC_H
#define SHOAL_VEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Loads tests/vectors/<name>; fails the test if it is missing or not JSON. The caller
 * json_decref()s the result. */
json_t *vec_load(const char *name);
/* Member lookups that fail the test when the member is missing or of another type. */
json_t *vec_get(json_t *obj, const char *key);
const char *vec_str(json_t *obj, const char *key);
uint64_t vec_u64(json_t *obj, const char *key);
/* Plain hex (2n digits) into n bytes; fails the test on bad hex. */
void vec_unhex(const char *hex, uint8_t *out, size_t n);

#endif
