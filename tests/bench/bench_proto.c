/* bench_proto.c - throughput of the content-format stages on one core: the gear-hash
 * chunker alone, chunking + chunk hashes + piece hashes, and sha256 through OpenSSL
 * and through libsodium. Prints one "name: N MB/s" line per figure. */
#include "b3.h"
#include "check.h"
#include "chunker.h"
#include "hasher.h"
#include "sha256.h"

#include <sodium.h>
#include <string.h>
#include <time.h>

#define BUF_LEN (256u << 20)

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *name, double secs, size_t bytes)
{
    printf("%-40s %8.0f MB/s\n", name, bytes / secs / 1e6);
    fflush(stdout);
}

static void bench_gear(const uint8_t *buf)
{
    struct chunker c;
    size_t off = 0, cuts = 0;
    bool cut;
    double t = now();

    chunker_init(&c);
    while (off < BUF_LEN) {
        off += chunker_next(&c, buf + off, BUF_LEN - off, &cut);
        cuts += cut;
    }
    report("gear chunker alone:", now() - t, BUF_LEN);
    printf("%-40s %8.0f bytes\n", "  mean chunk:", (double)BUF_LEN / (cuts + 1));
}

static void bench_pieces(const uint8_t *buf)
{
    struct hasher_piece *p = check_malloc(sizeof(*p));
    size_t off;
    double t = now();

    for (off = 0; off < BUF_LEN; off += PROTO_PIECE_LEN)
        hasher_piece_compute(p, buf + off, PROTO_PIECE_LEN);
    report("chunk + chunk hash + piece hash:", now() - t, BUF_LEN);
    free(p);
}

static void bench_stream(const uint8_t *buf)
{
    struct hasher h;
    uint8_t sha[SHA256_LEN];
    uint64_t size;
    size_t off;
    double t = now();

    CHECK_EQ(hasher_init(&h, NULL, NULL), 0);
    for (off = 0; off < BUF_LEN; off += 1 << 20)
        CHECK_EQ(hasher_update(&h, buf + off, 1 << 20), 0);
    CHECK_EQ(hasher_final(&h, sha, &size), 0);
    report("streaming hasher (all + sha256):", now() - t, BUF_LEN);
}

static void bench_sha(const uint8_t *buf)
{
    uint8_t out[32];
    crypto_hash_sha256_state st;
    double t = now();

    CHECK_EQ(sha256_digest(buf, BUF_LEN, out), 0);
    report("sha256 OpenSSL libcrypto:", now() - t, BUF_LEN);
    t = now();
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, buf, BUF_LEN / 4);
    crypto_hash_sha256_final(&st, out);
    report("sha256 libsodium:", now() - t, BUF_LEN / 4);
}

int main(void)
{
    uint8_t *buf = aligned_alloc(4096, BUF_LEN);

    CHECK(buf != NULL && sodium_init() >= 0);
    check_fill_splitmix(buf, BUF_LEN, 1);
    printf("BLAKE3 implementation: %s\n", b3_impl_name(b3_impl_get()));
    bench_gear(buf);
    bench_pieces(buf);
    bench_stream(buf);
    bench_sha(buf);
    free(buf);
    return 0;
}
