/* identity.c - the node's long-term key pair in DATA_DIR/node.key (identity.h); the file
 * handling is keyfile.c's, shared with the cluster key. */
#include "identity.h"

#include "b3.h"
#include "err.h"
#include "keyfile.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ID_PATH_MAX 4096
#define ID_HASH_BYTES 10 /* 80 bits: 16 base32 characters */

static void id_check(const uint8_t *buf, uint8_t out[static IDENTITY_CHECK_LEN])
{
    uint8_t h[B3_OUT_LEN];

    b3_hash(buf, IDENTITY_FILE_LEN - IDENTITY_CHECK_LEN, h);
    memcpy(out, h, IDENTITY_CHECK_LEN);
}

/* Checks a file's bytes; fills *out on success. */
static int id_decode(const char *path, const uint8_t *buf, size_t len, struct identity *out,
                     char *why, size_t why_len)
{
    const uint8_t *sk = buf + IDENTITY_MAGIC_LEN, *pk = sk + IDENTITY_KEY_LEN;
    uint8_t check[IDENTITY_CHECK_LEN], derived[IDENTITY_KEY_LEN];
    int err = 0;

    if (len != IDENTITY_FILE_LEN) {
        return keyfile_why(why, why_len, SHOAL_EFORMAT,
                       "%s: not a node key file: %s (%zu bytes, expected %d); move it away "
                       "to create a new identity",
                       path, len < IDENTITY_FILE_LEN ? "truncated" : "too long", len,
                       IDENTITY_FILE_LEN);
    }
    if (memcmp(buf, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN) != 0) {
        return keyfile_why(why, why_len, SHOAL_EFORMAT,
                       "%s: not a node key file: bad magic (expected %s)", path,
                       IDENTITY_MAGIC);
    }
    id_check(buf, check);
    if (memcmp(check, buf + IDENTITY_FILE_LEN - IDENTITY_CHECK_LEN, IDENTITY_CHECK_LEN) != 0) {
        return keyfile_why(why, why_len, SHOAL_EFORMAT,
                       "%s: node key file is corrupt: bad checksum", path);
    }
    if (crypto_scalarmult_base(derived, sk) != 0 ||
        sodium_memcmp(derived, pk, IDENTITY_KEY_LEN) != 0) {
        err = keyfile_why(why, why_len, SHOAL_EFORMAT,
                      "%s: node key file is corrupt: public key does not match secret key",
                      path);
        goto out;
    }
    memcpy(out->secret, sk, IDENTITY_KEY_LEN);
    memcpy(out->public, pk, IDENTITY_KEY_LEN);
out:
    sodium_memzero(derived, sizeof(derived));
    return err;
}

int identity_load(const char *path, struct identity *out, char *why, size_t why_len)
{
    uint8_t buf[IDENTITY_FILE_LEN + 1]; /* one more byte to see an over-long file */
    size_t len = 0;
    int err;

    if (sodium_init() < 0)
        return keyfile_why(why, why_len, -EIO, "libsodium failed to initialise");
    err = keyfile_read(path, "node key file", KEYFILE_NOFOLLOW, buf, sizeof(buf), &len, why,
                       why_len);
    if (err == 0)
        err = id_decode(path, buf, len, out, why, why_len);
    sodium_memzero(buf, sizeof(buf));
    return err;
}

int identity_create(const char *path, struct identity *out, char *why, size_t why_len)
{
    uint8_t buf[IDENTITY_FILE_LEN];
    struct identity id;
    int err;

    if (sodium_init() < 0)
        return keyfile_why(why, why_len, -EIO, "libsodium failed to initialise");
    crypto_box_keypair(id.public, id.secret);
    memcpy(buf, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN);
    memcpy(buf + IDENTITY_MAGIC_LEN, id.secret, IDENTITY_KEY_LEN);
    memcpy(buf + IDENTITY_MAGIC_LEN + IDENTITY_KEY_LEN, id.public, IDENTITY_KEY_LEN);
    id_check(buf, buf + IDENTITY_FILE_LEN - IDENTITY_CHECK_LEN);
    err = keyfile_create(path, "node key file", buf, sizeof(buf), why, why_len);
    if (err == 0)
        *out = id;
    sodium_memzero(buf, sizeof(buf));
    sodium_memzero(&id, sizeof(id));
    return err;
}

int identity_load_or_create(const char *data_dir, struct identity *out, bool *created,
                            char *why, size_t why_len)
{
    char path[ID_PATH_MAX];
    int err, n;

    n = snprintf(path, sizeof(path), "%s/%s", data_dir, IDENTITY_FILE);
    if (n < 0 || (size_t)n >= sizeof(path))
        return keyfile_why(why, why_len, -ENAMETOOLONG, "%s: path too long", data_dir);
    err = identity_load(path, out, why, why_len);
    if (err != -ENOENT) {
        if (err == 0)
            *created = false;
        return err;
    }
    /* No key yet. A temp file can only be left by a crash during an earlier creation:
     * the caller holds the data directory, so nobody else is writing it. */
    err = keyfile_remove_stale_tmp(path, why, why_len);
    if (err < 0)
        return err;
    err = identity_create(path, out, why, why_len);
    if (err == 0)
        *created = true;
    return err;
}

void identity_node_id(const struct identity *id, char out[static IDENTITY_ID_LEN + 1])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint8_t h[B3_OUT_LEN];
    uint64_t acc = 0;
    unsigned bits = 0;
    size_t i, o = 0;

    b3_hash(id->public, IDENTITY_KEY_LEN, h);
    for (i = 0; i < ID_HASH_BYTES; i++) {
        acc = (acc << 8) | h[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(acc >> bits) & 31];
        }
    }
    out[o] = '\0';
}

void identity_clear(struct identity *id)
{
    sodium_memzero(id, sizeof(*id));
}
