/* check.c - the failure path and helpers behind check.h. */
#include "check.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int check__passed;

void check__fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: FAILED: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fprintf(stderr, "%d passed, 1 failed\n", check__passed);
    exit(1);
}

void check__mem(const char *file, int line, const char *what, const void *a, const void *b,
                size_t n)
{
    const uint8_t *x = a, *y = b;
    size_t i;

    for (i = 0; i < n; i++) {
        if (x[i] != y[i])
            check__fail(file, line, "%s: first difference at byte %zu of %zu (%02x vs %02x)",
                        what, i, n, x[i], y[i]);
    }
}

int check_done(void)
{
    printf("%d passed, 0 failed\n", check__passed);
    return 0;
}

uint64_t check_splitmix64(uint64_t *state)
{
    uint64_t z;

    *state += UINT64_C(0x9E3779B97F4A7C15);
    z = *state;
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void check_fill_splitmix(uint8_t *buf, size_t n, uint64_t seed)
{
    uint64_t st = seed, z;
    size_t i, k;

    for (i = 0; i < n; i += 8) {
        z = check_splitmix64(&st);
        for (k = 0; k < 8 && i + k < n; k++)
            buf[i + k] = (uint8_t)(z >> (8 * k));
    }
}

void *check_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p)
        check__fail(__FILE__, __LINE__, "out of memory (%zu bytes)", n);
    return p;
}

char *check_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    size_t n = strlen(base) + strlen(tag) + 32;
    char *d = check_malloc(n);

    snprintf(d, n, "%s/shoal-%s-XXXXXX", base, tag);
    if (!mkdtemp(d))
        check__fail(__FILE__, __LINE__, "mkdtemp %s: %s", d, strerror(errno));
    return d;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p) < 0 ? -1 : 0;
}

void check_rmtree(const char *dir)
{
    struct stat st;

    if (lstat(dir, &st) < 0)
        return;
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        check__fail(__FILE__, __LINE__, "removing %s: %s", dir, strerror(errno));
}
