/* check.h - assertions for Shoal's C tests.
 *
 * A failed CHECK prints the file, line, expression (and both sides for the _EQ forms)
 * and exits with status 1, so CTest reports the test as failed.
 */
#ifndef SHOAL_CHECK_H
#define SHOAL_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void check__fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
void check__mem(const char *file, int line, const char *what, const void *a, const void *b,
                size_t n);

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond))                                                                       \
            check__fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                           \
    } while (0)

#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
        if (check_a_ != check_b_)                                                          \
            check__fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, check_a_,    \
                        check_b_);                                                         \
    } while (0)

#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *check_a_ = (a), *check_b_ = (b);                                       \
        if (strcmp(check_a_, check_b_) != 0)                                               \
            check__fail(__FILE__, __LINE__, "%s == %s:\n  \"%s\"\n  \"%s\"", #a, #b,        \
                        check_a_, check_b_);                                               \
    } while (0)

#define CHECK_MEM(a, b, n) check__mem(__FILE__, __LINE__, #a " == " #b, (a), (b), (n))

/* Runs one test function, printing its name; ends the process on failure. */
#define RUN(fn)                                                                            \
    do {                                                                                   \
        fprintf(stderr, "-- %s\n", #fn);                                                   \
        fn();                                                                              \
        check__passed++;                                                                   \
    } while (0)

extern int check__passed;
/* Prints "N passed, 0 failed" and returns 0: the end of every test's main(). */
int check_done(void);

/* Deterministic test data. */
uint64_t check_splitmix64(uint64_t *state);
/* SplitMix64 bytes from seed (the rule in tests/vectors/README.md). */
void check_fill_splitmix(uint8_t *buf, size_t n, uint64_t seed);
void *check_malloc(size_t n); /* aborts the test on failure */

/* A new directory $TMPDIR/shoal-<tag>-XXXXXX (TMPDIR defaults to /tmp); free() it. */
char *check_tmpdir(const char *tag);
/* Removes a directory tree (symlinks not followed); a missing one is fine. */
void check_rmtree(const char *dir);

#endif
