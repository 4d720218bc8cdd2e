/* sha256.h - SHA-256 through OpenSSL's libcrypto (SHA extensions or AVX2 where the
 * CPU has them; libsodium's portable SHA-256 is several times slower here, see
 * docs/benchmarks.md).
 *
 * Threads: a context belongs to one thread at a time.
 * Ownership: sha256_init allocates; sha256_final or sha256_release frees.
 */
#ifndef SHOAL_SHA256_H
#define SHOAL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

struct sha256 {
    void *ctx; /* OpenSSL EVP_MD_CTX, kept opaque so that callers need no OpenSSL headers */
};

/* Errors: -ENOMEM. */
int sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
/* Writes the digest and releases the context. */
void sha256_final(struct sha256 *s, uint8_t out[static SHA256_LEN]);
/* Releases a context without finishing it (safe on a released one). */
void sha256_release(struct sha256 *s);

/* One-shot. Errors: -ENOMEM. */
int sha256_digest(const void *data, size_t len, uint8_t out[static SHA256_LEN]);

/* The git blob id of data: SHA-1 of "blob <len>\0" followed by the bytes. It is the
 * Hub's ETag for files not stored in LFS, so the node can check what it fetched.
 * Errors: -ENOMEM. */
#define GIT_OID_LEN 20
int git_blob_oid(const void *data, size_t len, uint8_t out[static GIT_OID_LEN]);

#endif
