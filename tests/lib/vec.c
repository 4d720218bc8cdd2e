/* vec.c - JSON vector loading for tests. */
#include "vec.h"

#include "chash.h"
#include "check.h"

#include <string.h>

json_t *vec_load(const char *name)
{
    char path[1024];
    json_error_t jerr;
    json_t *j;

    snprintf(path, sizeof(path), "%s/%s", SHOAL_VECTOR_DIR, name);
    j = json_load_file(path, 0, &jerr);
    if (!j)
        check__fail(__FILE__, __LINE__, "%s: line %d: %s", path, jerr.line, jerr.text);
    return j;
}

json_t *vec_get(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        check__fail(__FILE__, __LINE__, "vector has no member \"%s\"", key);
    return v;
}

const char *vec_str(json_t *obj, const char *key)
{
    json_t *v = vec_get(obj, key);

    if (!json_is_string(v))
        check__fail(__FILE__, __LINE__, "vector member \"%s\" is not a string", key);
    return json_string_value(v);
}

uint64_t vec_u64(json_t *obj, const char *key)
{
    json_t *v = vec_get(obj, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        check__fail(__FILE__, __LINE__, "vector member \"%s\" is not a count", key);
    return (uint64_t)json_integer_value(v);
}

void vec_unhex(const char *hex, uint8_t *out, size_t n)
{
    if (strlen(hex) != 2 * n || chash_unhex(hex, out, n) != 0)
        check__fail(__FILE__, __LINE__, "bad hex of %zu bytes: \"%.80s\"", n, hex);
}
