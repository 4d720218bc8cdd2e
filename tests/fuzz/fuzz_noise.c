/* fuzz_noise.c - libFuzzer target for the Noise handshake and transport
 * (protocol/noise.c): input bytes become handshake and transport messages for an
 * initiator and a responder in every state. Must never crash, leak or read out of
 * bounds; any error return is fine.
 *
 * Input: one mode byte, then chunks, each a 2-byte big-endian length and that many
 * bytes (fewer if the input ends first).
 *   mode & 3 == 0  a responder reads chunk 1 as message 1, writes message 2, reads
 *                  chunk 2 as message 3, splits, then decrypts every further chunk
 *                  (and encrypts a reply to each);
 *   mode & 3 == 1  an initiator writes message 1, reads chunk 1 as message 2, writes
 *                  message 3, splits, decrypts further chunks;
 *   mode & 3 == 2  an honest pair: each message (handshake, then transport) is XORed
 *                  with the next chunk, which may also append bytes (a zero chunk
 *                  changes nothing), so the fuzzer reaches the later states;
 *   mode & 3 == 3  as 2, but handshake payloads are first read into 8 bytes, and
 *                  on -ENOBUFS read again into a large buffer (state unchanged).
 *   mode & 4       plain XX (no psk);  mode & 8  AESGCM (when the CPU has AES-NI).
 *
 * The keys, ephemerals, prologue, psk and payloads are those of vectors 0-2 of
 * tests/vectors/noise/xxpsk3.json (cacophony), so that vector's messages are valid
 * input: the seeds in tests/fuzz/corpus/noise/ are built from them, e.g.
 * resp_psk_chacha = 00, then msg 0, 2 and 4 of vector 0 as chunks; init_psk_chacha = 01,
 * then msg 1, 3 and 5; the same for vector 1 (mode | 8) and vector 2 (mode | 4).
 */
#include "noise.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t INIT_STATIC[32] = {
    0xe6, 0x1e, 0xf9, 0x91, 0x9c, 0xde, 0x45, 0xdd, 0x5f, 0x82, 0x16, 0x64, 0x04, 0xbd, 0x08, 0xe3,
    0x8b, 0xce, 0xb5, 0xdf, 0xdf, 0xde, 0xd0, 0xa3, 0x4c, 0x8d, 0xf7, 0xed, 0x54, 0x22, 0x14, 0xd1};
static const uint8_t INIT_EPH[32] = {
    0x89, 0x3e, 0x28, 0xb9, 0xdc, 0x6c, 0xa8, 0xd6, 0x11, 0xab, 0x66, 0x47, 0x54, 0xb8, 0xce, 0xb7,
    0xba, 0xc5, 0x11, 0x73, 0x49, 0xa4, 0x43, 0x9a, 0x6b, 0x05, 0x69, 0xda, 0x97, 0x7c, 0x46, 0x4a};
static const uint8_t RESP_STATIC[32] = {
    0x4a, 0x3a, 0xcb, 0xfd, 0xb1, 0x63, 0xde, 0xc6, 0x51, 0xdf, 0xa3, 0x19, 0x4d, 0xec, 0xe6, 0x76,
    0xd4, 0x37, 0x02, 0x9c, 0x62, 0xa4, 0x08, 0xb4, 0xc5, 0xea, 0x91, 0x14, 0x24, 0x6e, 0x48, 0x93};
static const uint8_t RESP_EPH[32] = {
    0xbb, 0xdb, 0x4c, 0xdb, 0xd3, 0x09, 0xf1, 0xa1, 0xf2, 0xe1, 0x45, 0x69, 0x67, 0xfe, 0x28, 0x8c,
    0xad, 0xd6, 0xf7, 0x12, 0xd6, 0x5d, 0xc7, 0xb7, 0x79, 0x3d, 0x5e, 0x63, 0xda, 0x6b, 0x37, 0x5b};
static const char PSK[] = "This is my Austrian perspective!"; /* 32 bytes */
static const char PROLOGUE[] = "John Galt";
static const char *const PAYLOAD[3] = {"Ludwig von Mises", "Murray Rothbard", "F. A. Hayek"};

#define BUF_LEN (NOISE_MSG_MAX + 2 + 65535) /* a message extended by a whole chunk */

static uint8_t msg[BUF_LEN], out[BUF_LEN];

struct input {
    const uint8_t *p;
    size_t left;
};

static bool next_chunk(struct input *in, const uint8_t **chunk, size_t *len)
{
    size_t n;

    if (in->left < 2)
        return false;
    n = (size_t)in->p[0] << 8 | in->p[1];
    in->p += 2;
    in->left -= 2;
    if (n > in->left)
        n = in->left;
    *chunk = in->p;
    *len = n;
    in->p += n;
    in->left -= n;
    return true;
}

static int start(struct noise_hs *hs, enum noise_role role, unsigned mode)
{
    enum noise_cipher c = (mode & 8) ? NOISE_AESGCM : NOISE_CHACHAPOLY;
    const uint8_t *psk = (mode & 4) ? NULL : (const uint8_t *)PSK;
    bool init = role == NOISE_INITIATOR;

    if (noise_hs_init(hs, role, c, PROLOGUE, strlen(PROLOGUE), init ? INIT_STATIC : RESP_STATIC,
                      psk) != 0)
        return -1;
    return noise_hs_set_ephemeral(hs, init ? INIT_EPH : RESP_EPH);
}

/* Writes handshake message k (0-based) into msg. */
static int write_step(struct noise_hs *hs, int k, size_t *len)
{
    return noise_hs_write(hs, PAYLOAD[k], strlen(PAYLOAD[k]), msg, BUF_LEN, len);
}

/* After the handshake: decrypt each chunk, answer with an encrypted copy. */
static void transport(struct noise_hs *hs, struct input *in)
{
    struct noise_cs tx, rx;
    const uint8_t *c;
    size_t n;

    if (noise_hs_split(hs, &tx, &rx) != 0)
        return;
    while (next_chunk(in, &c, &n)) {
        if (noise_decrypt(&rx, NULL, 0, c, n, out) == 0)
            (void)noise_encrypt(&tx, NULL, 0, out, n - NOISE_TAG_LEN, out);
    }
    noise_cs_clear(&tx);
    noise_cs_clear(&rx);
}

static void one_side(unsigned mode, struct input *in)
{
    struct noise_hs hs;
    bool init = (mode & 1) != 0;
    const uint8_t *c;
    size_t n, len;

    if (start(&hs, init ? NOISE_INITIATOR : NOISE_RESPONDER, mode) != 0)
        goto out;
    if (init && write_step(&hs, 0, &len) != 0)
        goto out;
    if (!next_chunk(in, &c, &n) || noise_hs_read(&hs, c, n, out, BUF_LEN, &len) != 0)
        goto out;
    if (write_step(&hs, init ? 2 : 1, &len) != 0)
        goto out;
    if (!init && (!next_chunk(in, &c, &n) || noise_hs_read(&hs, c, n, out, BUF_LEN, &len) != 0))
        goto out;
    transport(&hs, in);
out:
    noise_hs_clear(&hs);
}

/* XORs the next chunk into msg[0..len) and appends what is longer; returns the new
 * length. No chunk left: unchanged. */
static size_t mutate(struct input *in, size_t len)
{
    const uint8_t *c;
    size_t n, i;

    if (!next_chunk(in, &c, &n))
        return len;
    for (i = 0; i < n; i++) {
        if (i < len)
            msg[i] ^= c[i];
        else
            msg[i] = c[i];
    }
    return n > len ? n : len;
}

static void pair(unsigned mode, struct input *in)
{
    struct noise_hs hs[2];
    struct noise_cs tx[2], rx[2];
    size_t cap = (mode & 3) == 3 ? 8 : BUF_LEN, len, plen;
    int k, side;

    memset(tx, 0, sizeof(tx));
    memset(rx, 0, sizeof(rx));
    if (start(&hs[0], NOISE_INITIATOR, mode) != 0 || start(&hs[1], NOISE_RESPONDER, mode) != 0)
        goto out;
    for (k = 0; k < 3; k++) {
        int err;
        if (write_step(&hs[k % 2], k, &len) != 0)
            goto out;
        len = mutate(in, len);
        err = noise_hs_read(&hs[1 - k % 2], msg, len, out, cap, &plen);
        if (err == -ENOBUFS) /* the state must be unchanged: read again */
            err = noise_hs_read(&hs[1 - k % 2], msg, len, out, BUF_LEN, &plen);
        if (err != 0)
            goto out;
    }
    for (side = 0; side < 2; side++) {
        if (noise_hs_split(&hs[side], &tx[side], &rx[side]) != 0)
            goto out;
    }
    for (k = 0; in->left > 0 && k < 64; k++) {
        side = k % 2;
        len = in->left < 64 ? in->left : 64;
        memcpy(out, in->p, len);
        if (noise_encrypt(&tx[side], NULL, 0, out, len, msg) != 0)
            break;
        len = mutate(in, len + NOISE_TAG_LEN);
        (void)noise_decrypt(&rx[1 - side], NULL, 0, msg, len, out);
    }
out:
    for (side = 0; side < 2; side++) {
        noise_hs_clear(&hs[side]);
        noise_cs_clear(&tx[side]);
        noise_cs_clear(&rx[side]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data + 1, size ? size - 1 : 0};
    unsigned mode;

    if (size == 0 || sodium_init() < 0)
        return 0;
    mode = data[0];
    if ((mode & 8) && !crypto_aead_aes256gcm_is_available())
        mode &= ~8u;
    if ((mode & 3) < 2)
        one_side(mode, &in);
    else
        pair(mode, &in);
    return 0;
}
