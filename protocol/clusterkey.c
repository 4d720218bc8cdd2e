/* clusterkey.c - the cluster key: file encoding, derived keys, fingerprint (clusterkey.h). */
#include "clusterkey.h"

#include "b3.h"
#include "err.h"

#include <assert.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>

/* node/identity.h's magic without its version character. protocol/ does not include
 * from node/; tests/unit/test_clusterkey.c checks that the two agree. */
#define NODE_KEY_MAGIC_STEM "SHOALNK"
#define MAGIC_STEM_LEN      (CLUSTERKEY_MAGIC_LEN - 1)
#define FP_BYTES            8

static void ck_check(const uint8_t *buf, uint8_t out[static CLUSTERKEY_CHECK_LEN])
{
    uint8_t h[B3_OUT_LEN];

    b3_hash(buf, CLUSTERKEY_FILE_LEN - CLUSTERKEY_CHECK_LEN, h);
    memcpy(out, h, CLUSTERKEY_CHECK_LEN);
}

int clusterkey_generate(struct clusterkey *out)
{
    if (sodium_init() < 0)
        return -EIO;
    randombytes_buf(out->key, sizeof(out->key));
    return 0;
}

void clusterkey_encode(const struct clusterkey *k, uint8_t out[static CLUSTERKEY_FILE_LEN])
{
    memcpy(out, CLUSTERKEY_MAGIC, CLUSTERKEY_MAGIC_LEN);
    memcpy(out + CLUSTERKEY_MAGIC_LEN, k->key, CLUSTERKEY_LEN);
    ck_check(out, out + CLUSTERKEY_FILE_LEN - CLUSTERKEY_CHECK_LEN);
}

static int ck_fault(enum clusterkey_fault f, enum clusterkey_fault *pfault)
{
    static const int codes[] = {
        [CLUSTERKEY_OK] = 0,
        [CLUSTERKEY_BAD_SIZE] = SHOAL_EFORMAT,
        [CLUSTERKEY_BAD_MAGIC] = SHOAL_EFORMAT,
        [CLUSTERKEY_NODE_KEY] = SHOAL_EFORMAT,
        [CLUSTERKEY_BAD_VERSION] = SHOAL_EVERSION,
        [CLUSTERKEY_BAD_CHECK] = SHOAL_EHASH,
    };

    if (pfault)
        *pfault = f;
    return codes[f];
}

int clusterkey_decode(const uint8_t *buf, size_t len, struct clusterkey *out,
                      enum clusterkey_fault *pfault)
{
    uint8_t check[CLUSTERKEY_CHECK_LEN];

    /* The magic first: a file that says what it is gets named, whatever its size. */
    if (len < CLUSTERKEY_MAGIC_LEN)
        return ck_fault(CLUSTERKEY_BAD_SIZE, pfault);
    if (memcmp(buf, NODE_KEY_MAGIC_STEM, MAGIC_STEM_LEN) == 0)
        return ck_fault(CLUSTERKEY_NODE_KEY, pfault);
    if (memcmp(buf, CLUSTERKEY_MAGIC_STEM, MAGIC_STEM_LEN) != 0)
        return ck_fault(CLUSTERKEY_BAD_MAGIC, pfault);
    if (buf[MAGIC_STEM_LEN] != CLUSTERKEY_VERSION)
        return ck_fault(CLUSTERKEY_BAD_VERSION, pfault);
    if (len != CLUSTERKEY_FILE_LEN)
        return ck_fault(CLUSTERKEY_BAD_SIZE, pfault);
    ck_check(buf, check);
    if (memcmp(check, buf + CLUSTERKEY_FILE_LEN - CLUSTERKEY_CHECK_LEN, sizeof(check)) != 0)
        return ck_fault(CLUSTERKEY_BAD_CHECK, pfault);
    memcpy(out->key, buf + CLUSTERKEY_MAGIC_LEN, CLUSTERKEY_LEN);
    return ck_fault(CLUSTERKEY_OK, pfault);
}

const char *clusterkey_fault_str(enum clusterkey_fault f)
{
    switch (f) {
    case CLUSTERKEY_OK:
        return "a valid cluster key file";
    case CLUSTERKEY_BAD_SIZE:
        return "not a cluster key file, or a truncated one";
    case CLUSTERKEY_BAD_MAGIC:
        return "not a Shoal cluster key file";
    case CLUSTERKEY_NODE_KEY:
        return "a node key file (node.key), not a cluster key";
    case CLUSTERKEY_BAD_VERSION:
        return "a cluster key file of a version this build does not read";
    case CLUSTERKEY_BAD_CHECK:
        return "a damaged cluster key file: bad checksum";
    }
    return "an unknown cluster key fault";
}

void clusterkey_derive(const struct clusterkey *k, const char *ctx, uint8_t out[static 32])
{
    struct b3_hasher h;

    assert(ctx && *ctx);
    b3_init_derive_key(&h, ctx);
    b3_update(&h, k->key, sizeof(k->key));
    b3_final(&h, out, 32);
    /* The hasher's state holds a function of the key; leave none of it on the stack. */
    sodium_memzero(&h, sizeof(h));
}

void clusterkey_fingerprint(const struct clusterkey *k, char out[static CLUSTERKEY_FP_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];
    size_t i, o = 0;

    clusterkey_derive(k, CLUSTERKEY_CTX_FINGERPRINT, d);
    for (i = 0; i < FP_BYTES; i++) {
        if (i > 0 && i % 2 == 0)
            out[o++] = '-';
        out[o++] = hex[d[i] >> 4];
        out[o++] = hex[d[i] & 15];
    }
    out[o] = '\0';
    sodium_memzero(d, sizeof(d));
}

void clusterkey_clear(struct clusterkey *k)
{
    sodium_memzero(k, sizeof(*k));
}
