/* sha256.c - SHA-256 on OpenSSL's EVP interface. */
#include "sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>

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

int git_blob_oid(const void *data, size_t len, uint8_t out[static GIT_OID_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char head[32];
    unsigned n = 0;
    int hlen, ok;

    if (!ctx)
        return -ENOMEM;
    hlen = snprintf(head, sizeof(head), "blob %zu", len) + 1; /* the NUL is hashed too */
    ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, head, (size_t)hlen) == 1 &&
         EVP_DigestUpdate(ctx, data, len) == 1 && EVP_DigestFinal_ex(ctx, out, &n) == 1;
    EVP_MD_CTX_free(ctx);
    return ok && n == GIT_OID_LEN ? 0 : -ENOMEM;
}
