/* bench_aead.c - the per-byte cost of the peer transport's stages, one core each:
 * Noise transport encryption and decryption (ChaCha20-Poly1305, and AES-256-GCM where
 * the CPU has AES-NI) on full 64 KiB frames, and the keyed BLAKE3 chunk hash the
 * receiver computes on every chunk. Prints MB/s and ns per byte, for docs/benchmarks.md
 * next to bench_peer.sh's end-to-end figures.
 */
#include "chash.h"
#include "noise.h"
#include "proto_limits.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOTAL (2048ull << 20) /* bytes per measurement */

static double secs(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void report(const char *what, double s)
{
    printf("%-36s %8.0f MB/s %6.3f ns/byte\n", what, (double)TOTAL / s / 1e6,
           s * 1e9 / (double)TOTAL);
}

static void aead(enum noise_cipher cipher, const char *name, uint8_t *buf)
{
    struct noise_cs tx = {.cipher = (uint8_t)cipher}, rx;
    size_t plain = WIRE_PLAIN_MAX;
    uint64_t n, frames = TOTAL / plain;
    char what[64];
    double t0;

    randombytes_buf(tx.k, sizeof(tx.k));
    rx = tx;
    t0 = secs();
    for (n = 0; n < frames; n++)
        noise_encrypt(&tx, NULL, 0, buf, plain, buf);
    snprintf(what, sizeof(what), "%s encrypt (64 KiB frames)", name);
    report(what, secs() - t0);
    /* Decrypt what one encryption made, again and again: the tag must verify. */
    noise_encrypt(&tx, NULL, 0, buf, plain, buf);
    t0 = secs();
    for (n = 0; n < frames; n++) {
        struct noise_cs r = rx;
        r.n = tx.n - 1;
        if (noise_decrypt(&r, NULL, 0, buf, plain + NOISE_TAG_LEN,
                          buf + WIRE_FRAME_MAX) != 0) {
            fprintf(stderr, "bench_aead: decrypt failed\n");
            exit(1);
        }
    }
    snprintf(what, sizeof(what), "%s decrypt (64 KiB frames)", name);
    report(what, secs() - t0);
}

int main(void)
{
    uint8_t *buf = malloc(2 * WIRE_FRAME_MAX + 64), h[CHASH_LEN];
    uint64_t n, chunks = TOTAL / PROTO_CHUNK_TARGET;
    double t0;

    if (!buf || sodium_init() < 0)
        return 1;
    randombytes_buf(buf, 2 * WIRE_FRAME_MAX);
    aead(NOISE_CHACHAPOLY, "ChaCha20-Poly1305", buf);
    if (crypto_aead_aes256gcm_is_available())
        aead(NOISE_AESGCM, "AES-256-GCM", buf);
    t0 = secs();
    for (n = 0; n < chunks; n++)
        chash_chunk(buf, PROTO_CHUNK_TARGET, h);
    report("BLAKE3 keyed chunk hash (64 KiB)", secs() - t0);
    free(buf);
    return 0;
}
