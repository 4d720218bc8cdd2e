/* smallfiles.h - the inputs of tests/vectors/small_files.json, which names them
 * rather than storing them. */
#ifndef SHOAL_SMALLFILES_H
#define SHOAL_SMALLFILES_H

#include "check.h"

#include <string.h>

/* Fills a malloc'd buffer with the input the case `name` describes; fails the test
 * on a name it does not know. */
static inline uint8_t *smallfile_data(const char *name, size_t len)
{
    uint8_t *d = check_malloc(len);
    size_t i;

    if (strcmp(name, "hello world") == 0) {
        memcpy(d, "hello world", len);
    } else if (strcmp(name, "bytes 0..255 repeated 4x (1024 B)") == 0) {
        for (i = 0; i < len; i++)
            d[i] = (uint8_t)i;
    } else if (strncmp(name, "splitmix64 seed 2", 17) == 0) {
        check_fill_splitmix(d, len, 2);
    } else if (strcmp(name, "empty") == 0 || strstr(name, "zero bytes") ||
               strcmp(name, "one byte 0x00") == 0) {
        memset(d, 0, len);
    } else {
        check__fail(__FILE__, __LINE__, "unknown small_files case \"%s\"", name);
    }
    return d;
}

#endif
