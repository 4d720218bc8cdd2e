/* test_b3.c - BLAKE3: the official vectors, the Xet keyed vectors, streaming in random
 * pieces, agreement of all implementations, and b3sum on random files.
 *
 * Every test runs once per implementation the CPU supports (portable always), since
 * each has its own code for batches, leftovers and single blocks.
 */
#include "b3.h"
#include "check.h"
#include "vec.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define XOF_LEN 131 /* the official vectors' extended output length */
#define KIB 1024

static enum b3_impl impls[4];
static int n_impls;

/* Input of the official and Xet vectors: byte i is i mod 251. */
static uint8_t *pattern(size_t len)
{
    uint8_t *p = check_malloc(len);

    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i % 251);
    return p;
}

static void hex(char *out, const uint8_t *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void use_impl(enum b3_impl impl)
{
    CHECK_EQ(b3_force_impl(impl), 0);
    CHECK_EQ(b3_impl_get(), impl);
}

/* Lengths that reach every tree shape the code distinguishes: block and chunk edges,
 * batch sizes of 4 and 8 chunks, the 128-chunk span of the one-shot path. */
static size_t edge_lengths(size_t *out, size_t max)
{
    static const size_t chunks[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65,
                                    127, 128, 129, 130, 255, 256, 257, 300};
    static const size_t small[] = {0, 1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 511, 960, 1000};
    size_t n = 0;

    for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++)
        out[n++] = small[i];
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        size_t c = chunks[i] * KIB;

        if (c + 64 > max)
            break;
        out[n++] = c - 1;
        out[n++] = c;
        out[n++] = c + 1;
        out[n++] = c + 64;
    }
    return n;
}

/* ---- implementations ----------------------------------------------------------------- */

static void test_impls(void)
{
    static const enum b3_impl all[] = {B3_IMPL_PORTABLE, B3_IMPL_SSE41, B3_IMPL_AVX2,
                                       B3_IMPL_AVX512};
    enum b3_impl best = b3_impl_best();

    CHECK_STR(b3_impl_name(B3_IMPL_PORTABLE), "portable");
    CHECK_STR(b3_impl_name(B3_IMPL_SSE41), "sse41");
    CHECK_STR(b3_impl_name(B3_IMPL_AVX2), "avx2");
    CHECK_STR(b3_impl_name(B3_IMPL_AVX512), "avx512");
    CHECK_EQ(b3_force_impl((enum b3_impl)7), -EINVAL);
    n_impls = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        int rc = b3_force_impl(all[i]);

        /* Each level implies the ones below it, so exactly those up to the best work. */
        if (all[i] <= best) {
            CHECK_EQ(rc, 0);
            CHECK_EQ(b3_impl_get(), all[i]);
            impls[n_impls++] = all[i];
        } else {
            CHECK_EQ(rc, -ENOTSUP);
        }
    }
    use_impl(best);
    fprintf(stderr, "   best: %s; testing", b3_impl_name(best));
    for (int i = 0; i < n_impls; i++)
        fprintf(stderr, " %s", b3_impl_name(impls[i]));
    fprintf(stderr, "\n");
}

/* ---- official vectors ---------------------------------------------------------------- */

static void check_official_case(json_t *c, const uint8_t *key, const char *context)
{
    size_t len = vec_u64(c, "input_len");
    uint8_t *in = pattern(len);
    uint8_t want[XOF_LEN], got[XOF_LEN], dig[B3_OUT_LEN];
    struct b3_hasher h;

    vec_unhex(vec_str(c, "hash"), want, XOF_LEN);
    b3_init(&h);
    b3_update(&h, in, len);
    b3_final(&h, got, XOF_LEN);
    CHECK_MEM(got, want, XOF_LEN);
    b3_final(&h, got, B3_OUT_LEN);
    CHECK_MEM(got, want, B3_OUT_LEN);
    b3_hash(in, len, dig);
    CHECK_MEM(dig, want, B3_OUT_LEN);

    vec_unhex(vec_str(c, "keyed_hash"), want, XOF_LEN);
    b3_init_keyed(&h, key);
    b3_update(&h, in, len);
    b3_final(&h, got, XOF_LEN);
    CHECK_MEM(got, want, XOF_LEN);
    b3_keyed(key, in, len, dig);
    CHECK_MEM(dig, want, B3_OUT_LEN);

    vec_unhex(vec_str(c, "derive_key"), want, XOF_LEN);
    b3_init_derive_key(&h, context);
    b3_update(&h, in, len);
    b3_final(&h, got, XOF_LEN);
    CHECK_MEM(got, want, XOF_LEN);
    b3_final(&h, got, B3_OUT_LEN);
    CHECK_MEM(got, want, B3_OUT_LEN);
    free(in);
}

static void test_official(void)
{
    json_t *v = vec_load("blake3_official.json");
    const char *key = vec_str(v, "key");
    const char *context = vec_str(v, "context_string");
    json_t *cases = vec_get(v, "cases");

    CHECK_EQ(strlen(key), B3_KEY_LEN);
    CHECK(json_array_size(cases) >= 30);
    for (int k = 0; k < n_impls; k++) {
        use_impl(impls[k]);
        for (size_t i = 0; i < json_array_size(cases); i++)
            check_official_case(json_array_get(cases, i), (const uint8_t *)key, context);
    }
    json_decref(v);
}

/* ---- Xet keyed vectors ----------------------------------------------------------------- */

static void test_keyed_vectors(void)
{
    static const char *const names[] = {"DATA_KEY", "INTERNAL_NODE_KEY", "VERIFICATION_KEY",
                                        "ZERO_KEY"};
    json_t *v = vec_load("blake3_keyed.json");
    json_t *keys = vec_load("keys.json");
    json_t *b3keys = vec_get(keys, "blake3_keys");
    json_t *cases = vec_get(v, "cases");
    uint8_t key[4][B3_KEY_LEN];
    size_t checked = 0;

    for (int n = 0; n < 4; n++) {
        if (strcmp(names[n], "ZERO_KEY") == 0)
            memset(key[n], 0, B3_KEY_LEN);
        else
            vec_unhex(vec_str(vec_get(b3keys, names[n]), "hex"), key[n], B3_KEY_LEN);
    }
    CHECK(json_array_size(cases) >= 20);
    for (int k = 0; k < n_impls; k++) {
        use_impl(impls[k]);
        for (size_t i = 0; i < json_array_size(cases); i++) {
            json_t *c = json_array_get(cases, i);
            size_t len = vec_u64(c, "len");
            uint8_t *in = pattern(len);

            for (int n = 0; n < 4; n++) {
                uint8_t want[B3_OUT_LEN], got[B3_OUT_LEN];
                struct b3_hasher h;

                vec_unhex(vec_str(vec_get(c, names[n]), "digest_hex"), want, B3_OUT_LEN);
                b3_keyed(key[n], in, len, got);
                CHECK_MEM(got, want, B3_OUT_LEN);
                b3_init_keyed(&h, key[n]);
                b3_update(&h, in, len);
                b3_final(&h, got, B3_OUT_LEN);
                CHECK_MEM(got, want, B3_OUT_LEN);
                checked++;
            }
            free(in);
        }
    }
    CHECK(checked > 0);
    json_decref(keys);
    json_decref(v);
}

/* ---- streaming ------------------------------------------------------------------------- */

/* Piece sizes: mostly small and ragged, sometimes a few blocks or chunks, sometimes large,
 * so pieces start and end at every offset within blocks and chunks. */
static size_t piece_len(uint64_t *rng)
{
    uint64_t r = check_splitmix64(rng);

    switch (r % 8) {
    case 0:
        return 0;
    case 1:
    case 2:
        return (size_t)(r >> 8) % 70;
    case 3:
        return 64 * (1 + (size_t)(r >> 8) % 4) + (size_t)(r >> 16) % 3 - 1;
    case 4:
    case 5:
        return (size_t)(r >> 8) % 3000;
    case 6:
        return KIB * ((size_t)(r >> 8) % 20) + (size_t)(r >> 20) % 2;
    default:
        return (size_t)(r >> 8) % (80 * KIB);
    }
}

static void feed_pieces(struct b3_hasher *h, const uint8_t *in, size_t len, uint64_t *rng)
{
    size_t off = 0;

    while (off < len) {
        size_t n = piece_len(rng);

        if (n > len - off)
            n = len - off;
        b3_update(h, in + off, n);
        off += n;
    }
}

static void test_streaming(void)
{
    static const uint8_t key[B3_KEY_LEN] = "streaming-test-key-32-bytes-long";
    size_t max = 300 * KIB + 4 * KIB;
    size_t lens[200], n = edge_lengths(lens, max);
    uint8_t *in = check_malloc(max);
    uint64_t rng = 42;

    check_fill_splitmix(in, max, 1);
    for (int i = 0; i < 12; i++)
        lens[n++] = (size_t)(check_splitmix64(&rng) % (300 * KIB));
    for (int k = 0; k < n_impls; k++) {
        use_impl(impls[k]);
        for (size_t i = 0; i < n; i++) {
            size_t len = lens[i];
            uint8_t one[B3_OUT_LEN], keyed[B3_OUT_LEN], xof[XOF_LEN];
            uint8_t got[XOF_LEN], again[XOF_LEN];
            struct b3_hasher h;

            b3_hash(in, len, one);
            b3_keyed(key, in, len, keyed);
            b3_init(&h);
            b3_update(&h, in, len);
            b3_final(&h, xof, XOF_LEN);
            CHECK_MEM(xof, one, B3_OUT_LEN);
            for (int split = 0; split < 3; split++) {
                b3_init(&h);
                feed_pieces(&h, in, len, &rng);
                b3_final(&h, got, XOF_LEN);
                CHECK_MEM(got, xof, XOF_LEN);
                /* b3_final leaves the hasher as it was. */
                b3_final(&h, again, XOF_LEN);
                CHECK_MEM(again, xof, XOF_LEN);
                b3_init_keyed(&h, key);
                feed_pieces(&h, in, len, &rng);
                b3_final(&h, got, B3_OUT_LEN);
                CHECK_MEM(got, keyed, B3_OUT_LEN);
            }
            /* One byte at a time, for the short ones. */
            if (len <= 3 * KIB) {
                b3_init(&h);
                for (size_t j = 0; j < len; j++)
                    b3_update(&h, in + j, 1);
                b3_final(&h, got, B3_OUT_LEN);
                CHECK_MEM(got, one, B3_OUT_LEN);
            }
        }
    }
    free(in);
}

/* A copy of a hasher is an independent fork; finalising in the middle changes nothing. */
static void test_fork(void)
{
    static const size_t prefixes[] = {0, 1, 64, 1000, 1024, 1025, 4096, 8 * KIB + 3, 70 * KIB};
    size_t max = 160 * KIB;
    uint8_t *in = check_malloc(max);
    uint8_t *other = check_malloc(max);
    uint64_t rng = 7;

    check_fill_splitmix(in, max, 2);
    for (int k = 0; k < n_impls; k++) {
        use_impl(impls[k]);
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
            size_t p = prefixes[i];
            size_t rest = (size_t)(check_splitmix64(&rng) % (max - p));
            uint8_t want_a[B3_OUT_LEN], want_b[B3_OUT_LEN], got[B3_OUT_LEN], mid[B3_OUT_LEN];
            struct b3_hasher a, b;

            /* other = the same prefix, then different bytes */
            memcpy(other, in, p);
            check_fill_splitmix(other + p, max - p, 3 + i);
            b3_hash(in, p + rest, want_a);
            b3_hash(other, p + rest, want_b);

            b3_init(&a);
            feed_pieces(&a, in, p, &rng);
            b3_final(&a, mid, B3_OUT_LEN);
            b = a;
            b3_update(&a, in + p, rest);
            b3_update(&b, other + p, rest);
            b3_final(&a, got, B3_OUT_LEN);
            CHECK_MEM(got, want_a, B3_OUT_LEN);
            b3_final(&b, got, B3_OUT_LEN);
            CHECK_MEM(got, want_b, B3_OUT_LEN);
            b3_hash(in, p, got);
            CHECK_MEM(got, mid, B3_OUT_LEN);
        }
    }
    free(other);
    free(in);
}

/* ---- all implementations agree --------------------------------------------------------- */

struct outputs {
    uint8_t hash[B3_OUT_LEN];
    uint8_t keyed[B3_OUT_LEN];
    uint8_t derived[80];
};

static void compute_all(struct outputs *o, const uint8_t *key, const uint8_t *in, size_t len)
{
    struct b3_hasher h;

    b3_hash(in, len, o->hash);
    b3_keyed(key, in, len, o->keyed);
    b3_init_derive_key(&h, "Shoal test_b3 2024 cross-implementation");
    b3_update(&h, in, len);
    b3_final(&h, o->derived, sizeof(o->derived));
}

static void test_agree(void)
{
    size_t max = 300 * KIB + 4 * KIB;
    size_t lens[400], n = edge_lengths(lens, max - 8);
    uint8_t *in = check_malloc(max);
    uint8_t key[B3_KEY_LEN];
    uint64_t rng = 99;

    check_fill_splitmix(in, max, 5);
    check_fill_splitmix(key, sizeof(key), 6);
    /* Around the 4, 8, 16 and 32 chunk batch edges at many positions in the tree (at
     * most 115 edge lengths + 96 + 36 + 18 + 60 fit in lens). */
    for (size_t m = 1; m <= 24; m++) {
        lens[n++] = m * 4 * KIB - 1;
        lens[n++] = m * 4 * KIB + 1;
        lens[n++] = m * 8 * KIB + 1023;
        lens[n++] = m * 8 * KIB + 1025;
    }
    for (size_t m = 1; m <= 18; m++) {
        lens[n++] = m * 16 * KIB;
        lens[n++] = m * 16 * KIB + 1;
    }
    for (size_t m = 1; m <= 9; m++) {
        lens[n++] = m * 32 * KIB - 1;
        lens[n++] = m * 32 * KIB + 1;
    }
    for (int i = 0; i < 40; i++)
        lens[n++] = (size_t)(check_splitmix64(&rng) % (300 * KIB));
    for (int i = 0; i < 20; i++)
        lens[n++] = (size_t)(check_splitmix64(&rng) % 3000);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *data = in + (i % 7); /* unaligned starts, too */
        struct outputs ref, got;

        use_impl(B3_IMPL_PORTABLE);
        compute_all(&ref, key, data, lens[i]);
        for (int k = 0; k < n_impls; k++) {
            if (impls[k] == B3_IMPL_PORTABLE)
                continue;
            use_impl(impls[k]);
            compute_all(&got, key, data, lens[i]);
            if (memcmp(&got, &ref, sizeof(ref)) != 0)
                fprintf(stderr, "   %s differs from portable at length %zu\n",
                        b3_impl_name(impls[k]), lens[i]);
            CHECK_MEM(got.hash, ref.hash, B3_OUT_LEN);
            CHECK_MEM(got.keyed, ref.keyed, B3_OUT_LEN);
            CHECK_MEM(got.derived, ref.derived, sizeof(ref.derived));
        }
    }
    free(in);
}

/* ---- b3sum -------------------------------------------------------------------------- */

/* Runs `b3sum [--keyed] --no-names path` with the key on stdin; returns 0 and the digest
 * line, or -ENOENT when b3sum is not on PATH. */
static int run_b3sum(const char *path, const uint8_t *key, char *line, size_t line_size)
{
    char *argv_plain[] = {"b3sum", "--no-names", (char *)path, NULL};
    char *argv_keyed[] = {"b3sum", "--keyed", "--no-names", (char *)path, NULL};
    posix_spawn_file_actions_t fa;
    int in_pipe[2], out_pipe[2];
    size_t got = 0;
    int status, rc;
    pid_t pid;

    CHECK_EQ(pipe2(in_pipe, O_CLOEXEC), 0);
    CHECK_EQ(pipe2(out_pipe, O_CLOEXEC), 0);
    /* 32 bytes fit in any pipe buffer, so the key can be written before b3sum starts. */
    if (key)
        CHECK_EQ(write(in_pipe[1], key, B3_KEY_LEN), B3_KEY_LEN);
    CHECK_EQ(close(in_pipe[1]), 0);
    CHECK_EQ(posix_spawn_file_actions_init(&fa), 0);
    CHECK_EQ(posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0), 0);
    CHECK_EQ(posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1), 0);
    rc = posix_spawnp(&pid, "b3sum", &fa, NULL, key ? argv_keyed : argv_plain, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in_pipe[0]);
    close(out_pipe[1]);
    if (rc != 0) {
        close(out_pipe[0]);
        CHECK_EQ(rc, ENOENT);
        return -ENOENT;
    }
    for (;;) {
        ssize_t r = read(out_pipe[0], line + got, line_size - 1 - got);

        if (r < 0 && errno == EINTR)
            continue;
        CHECK(r >= 0);
        if (r == 0 || got + (size_t)r == line_size - 1) {
            got += (size_t)(r > 0 ? r : 0);
            break;
        }
        got += (size_t)r;
    }
    line[got] = '\0';
    close(out_pipe[0]);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        check__fail(__FILE__, __LINE__, "b3sum on %s failed (status %d)", path, status);
    return 0;
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    CHECK(f != NULL);
    CHECK_EQ(fwrite(data, 1, len, f), len);
    CHECK_EQ(fclose(f), 0);
}

static void test_b3sum(void)
{
    const char *tmpdir = getenv("TMPDIR");
    const char *skip = getenv("SHOAL_SKIP_B3SUM");
    size_t max = 260 * KIB;
    uint8_t *in = check_malloc(max);
    uint64_t rng = 2024;
    char path[512], line[256];
    int fd, compared = 0;

    if (!tmpdir || !*tmpdir)
        tmpdir = "/tmp";
    CHECK(snprintf(path, sizeof(path), "%s/test_b3.XXXXXX", tmpdir) < (int)sizeof(path));
    fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    for (int i = 0; i < 40; i++) {
        static const size_t fixed[] = {0, 1, 64, 1023, 1024, 1025, 4096, 8 * KIB, 65 * KIB};
        size_t len = i < 9 ? fixed[i] : (size_t)(check_splitmix64(&rng) % max);
        uint8_t key[B3_KEY_LEN], dig[B3_OUT_LEN];
        char want[2 * B3_OUT_LEN + 2];

        check_fill_splitmix(in, len, 100 + (uint64_t)i);
        check_fill_splitmix(key, sizeof(key), 200 + (uint64_t)i);
        write_file(path, in, len);
        for (int keyed = 0; keyed < 2; keyed++) {
            if (run_b3sum(path, keyed ? key : NULL, line, sizeof(line)) == -ENOENT) {
                unlink(path);
                free(in);
                if (skip && strcmp(skip, "1") == 0) {
                    fprintf(stderr, "   b3sum not found: skipped (SHOAL_SKIP_B3SUM=1)\n");
                    return;
                }
                check__fail(__FILE__, __LINE__,
                            "b3sum is not on PATH: install the Debian package b3sum "
                            "(scripts/setup.sh does), or set SHOAL_SKIP_B3SUM=1 to skip");
            }
            for (int k = 0; k < n_impls; k++) {
                use_impl(impls[k]);
                if (keyed)
                    b3_keyed(key, in, len, dig);
                else
                    b3_hash(in, len, dig);
                hex(want, dig, B3_OUT_LEN);
                want[2 * B3_OUT_LEN] = '\n';
                want[2 * B3_OUT_LEN + 1] = '\0';
                if (strcmp(line, want) != 0)
                    check__fail(__FILE__, __LINE__, "%s %s, %zu bytes: b3sum says %s",
                                b3_impl_name(impls[k]), keyed ? "keyed" : "hash", len, line);
                compared++;
            }
        }
    }
    CHECK_EQ(unlink(path), 0);
    free(in);
    CHECK_EQ(compared, 80 * n_impls);
}

int main(void)
{
    RUN(test_impls);
    RUN(test_official);
    RUN(test_keyed_vectors);
    RUN(test_streaming);
    RUN(test_fork);
    RUN(test_agree);
    RUN(test_b3sum);
    use_impl(b3_impl_best());
    return check_done();
}
