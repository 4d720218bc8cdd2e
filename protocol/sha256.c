/* sha256.c - SHA-256 on OpenSSL's EVP interface. */
#include "sha256.h"

#include <errno.h>
#include <openssl/evp.h>

int sha256_init(struct sha256 *s)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (!ctx)
        return -ENOMEM;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -ENOMEM;
    }
    s->ctx = ctx;
    return 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t len)
{
    /* Cannot fail for an initialised SHA-256 context. */
    (void)EVP_DigestUpdate(s->ctx, data, len);
}

void sha256_final(struct sha256 *s, uint8_t out[static SHA256_LEN])
{
    unsigned int n = SHA256_LEN;

    (void)EVP_DigestFinal_ex(s->ctx, out, &n);
    sha256_release(s);
}

void sha256_release(struct sha256 *s)
{
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
}

int sha256_digest(const void *data, size_t len, uint8_t out[static SHA256_LEN])
{
    struct sha256 s;
    int err = sha256_init(&s);

    if (err < 0)
        return err;
    sha256_update(&s, data, len);
    sha256_final(&s, out);
    return 0;
}
