/* clusterkey.h - the cluster key: the secret every member of a cluster holds.
 *
 * Whoever holds the cluster key is a member (design.md, Security model). The key is
 * never used directly: each use derives its own key from it with BLAKE3's derive_key
 * mode and a context string of its own (CLUSTERKEY_CTX_*), so that a key recovered from
 * one use says nothing about the others.
 *
 * File format (CLUSTERKEY_FILE_LEN = 44 bytes), written by `shoal keygen`:
 *   "SHOALCK1" (8) | key (32) | check (4)
 * where the magic is "SHOALCK" and a version character ('1'), and check is the first 4
 * bytes of BLAKE3 over the 40 bytes before it. The check catches damage (a truncated
 * copy, a flipped bit); it is not authentication.
 *
 * Pure code: no files, no clocks. The file's reading and writing live with their callers
 * (node/keyfile.c, tools/cmd_keygen.c).
 * Threads: any; no shared state.
 * Errors: 0 or a negative code from err.h, listed per function.
 * Ownership: struct clusterkey is plain bytes, caller-owned; wipe it with
 *   clusterkey_clear() (sodium_memzero) when done.
 */
#ifndef SHOAL_CLUSTERKEY_H
#define SHOAL_CLUSTERKEY_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTERKEY_LEN        32
#define CLUSTERKEY_MAGIC      "SHOALCK1"
#define CLUSTERKEY_MAGIC_STEM "SHOALCK" /* the magic without its version character */
#define CLUSTERKEY_MAGIC_LEN  8
#define CLUSTERKEY_VERSION    '1'
#define CLUSTERKEY_CHECK_LEN  4
#define CLUSTERKEY_FILE_LEN   (CLUSTERKEY_MAGIC_LEN + CLUSTERKEY_LEN + CLUSTERKEY_CHECK_LEN)
/* Readers read at most this many bytes of a key file: enough to recognise any file
 * this module names (a node key file is 76 bytes) and to tell "too long" apart. */
#define CLUSTERKEY_READ_MAX 256
#define CLUSTERKEY_FP_LEN   19 /* "xxxx-xxxx-xxxx-xxxx", without the NUL */

/* Derivation contexts (BLAKE3 spec section 2.3: hard-coded, globally unique, one per
 * use). Changing one changes what every node derives: it is a protocol change. */
#define CLUSTERKEY_CTX_NOISE_PSK   "shoal 2026 noise psk v1" /* Noise XXpsk3 psk */
#define CLUSTERKEY_CTX_GOSSIP      "shoal 2026 gossip v1"    /* gossip packet seal */
#define CLUSTERKEY_CTX_FINGERPRINT "shoal 2026 cluster key fingerprint v1"

struct clusterkey {
    uint8_t key[CLUSTERKEY_LEN];
};

/* Why clusterkey_decode refused a file, finer than its return code. */
enum clusterkey_fault {
    CLUSTERKEY_OK = 0,
    CLUSTERKEY_BAD_SIZE,    /* SHOAL_EFORMAT: too short for a key file, or a cluster
                             * key file that is truncated or too long */
    CLUSTERKEY_BAD_MAGIC,   /* SHOAL_EFORMAT: not a Shoal cluster key file */
    CLUSTERKEY_NODE_KEY,    /* SHOAL_EFORMAT: a node key file (node.key) */
    CLUSTERKEY_BAD_VERSION, /* SHOAL_EVERSION: a cluster key file of another version */
    CLUSTERKEY_BAD_CHECK,   /* SHOAL_EHASH: the checksum does not match: damaged */
};

/* Fills *out with a new random key (libsodium's randombytes). Errors: -EIO if
 * libsodium cannot initialise. */
int clusterkey_generate(struct clusterkey *out);

/* Writes the key file's CLUSTERKEY_FILE_LEN bytes. The buffer then holds the secret:
 * wipe it when done. */
void clusterkey_encode(const struct clusterkey *k, uint8_t out[static CLUSTERKEY_FILE_LEN]);

/* Reads a key file's bytes (all of them, or its first CLUSTERKEY_READ_MAX). The magic is
 * looked at first, so a node key file or another version is named as such whatever
 * its size. On success fills *out; on failure *out is untouched. *pfault (may be NULL)
 * gets the precise reason, CLUSTERKEY_OK on success.
 * Errors: SHOAL_EFORMAT (size, magic, node key), SHOAL_EVERSION, SHOAL_EHASH. */
int clusterkey_decode(const uint8_t *buf, size_t len, struct clusterkey *out,
                      enum clusterkey_fault *pfault);

/* A short static phrase for a fault, e.g. "not a Shoal cluster key file". */
const char *clusterkey_fault_str(enum clusterkey_fault f);

/* out = BLAKE3 derive_key(context = ctx, key material = the cluster key), 32 bytes.
 * ctx must be one of the CLUSTERKEY_CTX_* strings. */
void clusterkey_derive(const struct clusterkey *k, const char *ctx, uint8_t out[static 32]);

/* A printable fingerprint that operators compare across machines without showing the
 * key: the first 8 bytes of clusterkey_derive(CLUSTERKEY_CTX_FINGERPRINT) in lower-case
 * hex, in four groups of four joined by '-', and a NUL. Equal keys give equal
 * fingerprints; different keys collide with probability 2^-64. */
void clusterkey_fingerprint(const struct clusterkey *k, char out[static CLUSTERKEY_FP_LEN + 1]);

/* Wipes the key. */
void clusterkey_clear(struct clusterkey *k);

#endif
