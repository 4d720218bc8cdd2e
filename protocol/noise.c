/* noise.c - Noise_XXpsk3_25519_{ChaChaPoly,AESGCM}_BLAKE2b on libsodium.
 *
 * DESIGN. The code follows the objects of the Noise specification (revision 34)
 * one to one, so it can be read next to it: CipherState (section 5.1) is struct
 * noise_cs and the cs_* functions; SymmetricState (5.2) is the ck, h and cs fields of
 * struct noise_hs with mix_hash(), mix_key(), mix_key_and_hash(), encrypt_and_hash(),
 * decrypt_and_hash(); HandshakeState (5.3) is the rest, driven by a token table
 * (`pattern` below) that both noise_hs_write() and noise_hs_read() walk.
 *
 * State: `step` counts the handshake messages done (0..3). The initiator writes
 * messages 1 and 3 (step 0 and 2), the responder message 2 (step 1). `state` is
 * HS_LIVE while the handshake may go on; every failure that touched the state wipes
 * the whole struct, and a zeroed struct has state 0, so it is dead for good, whichever
 * way it got there (failure, split, clear, or a memset by the caller).
 *
 * Sizes are checked before any state changes, so an error the caller made (buffer
 * too small) can be retried; once a message is being processed, any failure kills
 * the state, because the symmetric state has already absorbed part of it.
 *
 * Secrets (static and ephemeral secret keys, psk, ck, k, DH outputs, HMAC and HKDF
 * intermediates) are wiped with sodium_memzero() as soon as they are not needed:
 * locals at the end of each function, handshake keys once the handshake is done,
 * everything at split.
 */
#include "noise.h"

#include "clusterkey.h"
#include "err.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define HASH_LEN  NOISE_HASH_LEN
#define BLOCK_LEN 128 /* BLAKE2b block length, for HMAC (spec 4.3) */
#define KEY_LEN   NOISE_KEY_LEN
#define TAG_LEN   NOISE_TAG_LEN

enum { HS_DEAD = 0, HS_LIVE = 0xa5 };

/* Handshake tokens, and XXpsk3 as a table: one row per message. Without a psk the
 * `psk` token is skipped (and "e" does not MixKey), which is plain XX. */
enum tok { T_END = 0, T_E, T_S, T_EE, T_ES, T_SE, T_PSK };
static const uint8_t pattern[3][5] = {
    {T_E, T_END},                  /* -> e */
    {T_E, T_EE, T_S, T_ES, T_END}, /* <- e, ee, s, es */
    {T_S, T_SE, T_PSK, T_END},     /* -> s, se, psk */
};

/* --- HASH, HMAC-HASH, HKDF (spec 4.3) ---------------------------------------- */

/* HASH(a || b): BLAKE2b with a 64-byte output, no key. */
static void hash2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                  uint8_t out[HASH_LEN])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, HASH_LEN);
    crypto_generichash_update(&st, a, alen);
    crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, out, HASH_LEN);
    sodium_memzero(&st, sizeof(st));
}

/* HMAC-BLAKE2b (RFC 2104) of d1 || d2 under a HASH_LEN key: the key is shorter than
 * the block, so it is zero-padded to BLOCK_LEN and never hashed first. */
static void hmac(const uint8_t key[HASH_LEN], const uint8_t *d1, size_t l1, const uint8_t *d2,
                 size_t l2, uint8_t out[HASH_LEN])
{
    crypto_generichash_state st;
    uint8_t pad[BLOCK_LEN], inner[HASH_LEN];
    size_t i;

    memset(pad, 0, sizeof(pad));
    memcpy(pad, key, HASH_LEN);
    for (i = 0; i < BLOCK_LEN; i++)
        pad[i] ^= 0x36;
    crypto_generichash_init(&st, NULL, 0, HASH_LEN);
    crypto_generichash_update(&st, pad, BLOCK_LEN);
    crypto_generichash_update(&st, d1, l1);
    crypto_generichash_update(&st, d2, l2);
    crypto_generichash_final(&st, inner, HASH_LEN);
    for (i = 0; i < BLOCK_LEN; i++)
        pad[i] ^= 0x36 ^ 0x5c;
    hash2(pad, BLOCK_LEN, inner, HASH_LEN, out);
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(pad, sizeof(pad));
    sodium_memzero(inner, sizeof(inner));
}

/* HKDF(chaining_key, ikm, 2 or 3): o3 may be NULL. Outputs may alias ck. */
static void hkdf(const uint8_t ck[HASH_LEN], const uint8_t *ikm, size_t ikm_len,
                 uint8_t o1[HASH_LEN], uint8_t o2[HASH_LEN], uint8_t *o3)
{
    uint8_t temp[HASH_LEN], t1[HASH_LEN], t2[HASH_LEN];
    const uint8_t one = 1, two = 2, three = 3;

    hmac(ck, ikm, ikm_len, NULL, 0, temp);
    hmac(temp, &one, 1, NULL, 0, t1);
    hmac(temp, t1, HASH_LEN, &two, 1, t2);
    if (o3)
        hmac(temp, t2, HASH_LEN, &three, 1, o3);
    memcpy(o1, t1, HASH_LEN);
    memcpy(o2, t2, HASH_LEN);
    sodium_memzero(temp, sizeof(temp));
    sodium_memzero(t1, sizeof(t1));
    sodium_memzero(t2, sizeof(t2));
}

/* --- CipherState (spec 5.1) ------------------------------------------------------ */

/* 96-bit nonce: 32 zero bits, then n little-endian (ChaChaPoly) or big-endian
 * (AESGCM) (spec 12.3, 12.4). */
static void nonce_bytes(uint8_t cipher, uint64_t n, uint8_t out[12])
{
    int i;

    memset(out, 0, 4);
    for (i = 0; i < 8; i++) {
        uint8_t b = (uint8_t)(n >> (8 * i));
        if (cipher == NOISE_AESGCM)
            out[11 - i] = b;
        else
            out[4 + i] = b;
    }
}

/* ENCRYPT(k, n, ad, plaintext): out gets len + TAG_LEN bytes. */
static void aead_encrypt(uint8_t cipher, const uint8_t k[KEY_LEN], uint64_t n, const void *ad,
                         size_t adlen, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t nonce[12];

    nonce_bytes(cipher, n, nonce);
    if (cipher == NOISE_AESGCM)
        crypto_aead_aes256gcm_encrypt(out, NULL, in, len, ad, adlen, NULL, nonce, k);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, in, len, ad, adlen, NULL, nonce, k);
}

/* DECRYPT(k, n, ad, ciphertext): len >= TAG_LEN; out gets len - TAG_LEN bytes.
 * Returns 0 or -1 (bad tag). */
static int aead_decrypt(uint8_t cipher, const uint8_t k[KEY_LEN], uint64_t n, const void *ad,
                        size_t adlen, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t nonce[12];

    nonce_bytes(cipher, n, nonce);
    if (cipher == NOISE_AESGCM)
        return crypto_aead_aes256gcm_decrypt(out, NULL, NULL, in, len, ad, adlen, nonce, k);
    return crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, in, len, ad, adlen, nonce, k);
}

static void cs_init_key(struct noise_cs *cs, uint8_t cipher, const uint8_t k[KEY_LEN])
{
    memcpy(cs->k, k, KEY_LEN);
    cs->n = 0;
    cs->cipher = cipher;
}

int noise_encrypt(struct noise_cs *cs, const void *ad, size_t adlen, const uint8_t *in, size_t len,
                  uint8_t *out)
{
    if (cs->cipher != NOISE_CHACHAPOLY && cs->cipher != NOISE_AESGCM)
        return SHOAL_EAUTH;
    if (len > NOISE_PAYLOAD_MAX || cs->n == UINT64_MAX)
        return SHOAL_ELIMIT;
    aead_encrypt(cs->cipher, cs->k, cs->n, ad, adlen, in, len, out);
    cs->n++;
    return 0;
}

int noise_decrypt(struct noise_cs *cs, const void *ad, size_t adlen, const uint8_t *in, size_t len,
                  uint8_t *out)
{
    if (cs->cipher != NOISE_CHACHAPOLY && cs->cipher != NOISE_AESGCM)
        return SHOAL_EAUTH;
    if (len > NOISE_MSG_MAX || cs->n == UINT64_MAX)
        return SHOAL_ELIMIT;
    if (len < TAG_LEN)
        return SHOAL_EAUTH;
    if (aead_decrypt(cs->cipher, cs->k, cs->n, ad, adlen, in, len, out) != 0)
        return SHOAL_EAUTH; /* n is not incremented (spec 5.1) */
    cs->n++;
    return 0;
}

int noise_cs_rekey(struct noise_cs *cs)
{
    uint8_t zeros[KEY_LEN], out[KEY_LEN + TAG_LEN];

    if (cs->cipher != NOISE_CHACHAPOLY && cs->cipher != NOISE_AESGCM)
        return SHOAL_EAUTH;
    memset(zeros, 0, sizeof(zeros));
    aead_encrypt(cs->cipher, cs->k, UINT64_MAX, NULL, 0, zeros, KEY_LEN, out);
    memcpy(cs->k, out, KEY_LEN);
    sodium_memzero(out, sizeof(out));
    return 0;
}

void noise_cs_clear(struct noise_cs *cs)
{
    sodium_memzero(cs, sizeof(*cs));
}

/* --- SymmetricState (spec 5.2) --------------------------------------------------- */

static void mix_hash(struct noise_hs *hs, const uint8_t *data, size_t len)
{
    hash2(hs->h, HASH_LEN, data, len, hs->h);
}

static void mix_key(struct noise_hs *hs, const uint8_t *ikm, size_t len)
{
    uint8_t temp_k[HASH_LEN];

    hkdf(hs->ck, ikm, len, hs->ck, temp_k, NULL);
    cs_init_key(&hs->cs, hs->cipher, temp_k); /* truncated to 32 bytes */
    sodium_memzero(temp_k, sizeof(temp_k));
}

static void mix_key_and_hash(struct noise_hs *hs, const uint8_t *ikm, size_t len)
{
    uint8_t temp_h[HASH_LEN], temp_k[HASH_LEN];

    hkdf(hs->ck, ikm, len, hs->ck, temp_h, temp_k);
    mix_hash(hs, temp_h, HASH_LEN);
    cs_init_key(&hs->cs, hs->cipher, temp_k);
    sodium_memzero(temp_h, sizeof(temp_h));
    sodium_memzero(temp_k, sizeof(temp_k));
}

/* EncryptWithAd(h, in) then MixHash(ciphertext); out gets len (+ TAG_LEN once there is
 * a key) bytes. The handshake never comes near the nonce limit. */
static size_t encrypt_and_hash(struct noise_hs *hs, const uint8_t *in, size_t len, uint8_t *out)
{
    if (hs->cs.cipher != 0) {
        aead_encrypt(hs->cs.cipher, hs->cs.k, hs->cs.n++, hs->h, HASH_LEN, in, len, out);
        len += TAG_LEN;
    } else if (len > 0) {
        memcpy(out, in, len);
    }
    mix_hash(hs, out, len);
    return len;
}

/* DecryptWithAd(h, in) then MixHash(in); len includes the tag when there is a key. */
static int decrypt_and_hash(struct noise_hs *hs, const uint8_t *in, size_t len, uint8_t *out)
{
    if (hs->cs.cipher != 0) {
        if (aead_decrypt(hs->cs.cipher, hs->cs.k, hs->cs.n, hs->h, HASH_LEN, in, len, out) != 0)
            return SHOAL_EAUTH;
        hs->cs.n++;
    } else if (len > 0) {
        memcpy(out, in, len);
    }
    mix_hash(hs, in, len);
    return 0;
}

/* MixKey(DH(sk, pk)). libsodium refuses an all-zero output (a low-order public key),
 * which Noise allows implementations to do (spec 12.1). */
static int mix_dh(struct noise_hs *hs, const uint8_t sk[KEY_LEN], const uint8_t pk[KEY_LEN])
{
    uint8_t dh[KEY_LEN];
    int err = 0;

    if (crypto_scalarmult(dh, sk, pk) != 0)
        err = SHOAL_EAUTH;
    else
        mix_key(hs, dh, KEY_LEN);
    sodium_memzero(dh, sizeof(dh));
    return err;
}

/* --- HandshakeState (spec 5.3) --------------------------------------------------- */

static bool live(const struct noise_hs *hs)
{
    return hs->state == HS_LIVE && hs->step <= 3;
}

bool noise_hs_want_write(const struct noise_hs *hs)
{
    if (!live(hs) || hs->step >= 3)
        return false;
    return (hs->step == 1) == (hs->role == NOISE_RESPONDER);
}

bool noise_hs_done(const struct noise_hs *hs)
{
    return live(hs) && hs->step == 3;
}

void noise_hs_clear(struct noise_hs *hs)
{
    sodium_memzero(hs, sizeof(*hs));
}

int noise_hs_init(struct noise_hs *hs, enum noise_role role, enum noise_cipher cipher,
                  const void *prologue, size_t prologue_len,
                  const uint8_t static_sk[static NOISE_KEY_LEN], const uint8_t psk[NOISE_KEY_LEN])
{
    char name[HASH_LEN];
    int n;

    noise_hs_clear(hs);
    if (role != NOISE_INITIATOR && role != NOISE_RESPONDER)
        return -EINVAL;
    if (cipher != NOISE_CHACHAPOLY && cipher != NOISE_AESGCM)
        return -EINVAL;
    if (sodium_init() < 0)
        return -ENOMEM;
    if (cipher == NOISE_AESGCM && !crypto_aead_aes256gcm_is_available())
        return -ENOTSUP;
    hs->role = (uint8_t)role;
    hs->cipher = (uint8_t)cipher;
    hs->has_psk = psk != NULL;
    if (psk)
        memcpy(hs->psk, psk, KEY_LEN);
    memcpy(hs->s_sk, static_sk, KEY_LEN);
    crypto_scalarmult_base(hs->s_pk, hs->s_sk);

    /* InitializeSymmetric: the name fits in HASH_LEN, so h = name zero-padded. */
    memset(name, 0, sizeof(name));
    n = snprintf(name, sizeof(name), "Noise_%s_25519_%s_BLAKE2b", psk ? "XXpsk3" : "XX",
                 cipher == NOISE_AESGCM ? "AESGCM" : "ChaChaPoly");
    if (n < 0 || (size_t)n >= sizeof(name)) { /* cannot happen; keeps the contract */
        noise_hs_clear(hs);
        return -EINVAL;
    }
    memcpy(hs->h, name, HASH_LEN);
    memcpy(hs->ck, hs->h, HASH_LEN);
    mix_hash(hs, prologue_len ? prologue : (const void *)"", prologue_len);
    hs->state = HS_LIVE;
    return 0;
}

int noise_hs_set_ephemeral(struct noise_hs *hs, const uint8_t e_sk[static NOISE_KEY_LEN])
{
    unsigned own_e_step = hs->role == NOISE_INITIATOR ? 0 : 1;

    if (!live(hs) || hs->step > own_e_step)
        return -EINVAL;
    memcpy(hs->e_sk, e_sk, KEY_LEN);
    crypto_scalarmult_base(hs->e_pk, hs->e_sk);
    hs->e_set = true;
    return 0;
}

/* Bytes a message of the current step adds to its payload: keys, static key and
 * payload tags, following the token table. */
static size_t overhead(const struct noise_hs *hs)
{
    const uint8_t *t;
    bool key = hs->cs.cipher != 0;
    size_t n = 0;

    for (t = pattern[hs->step]; *t != T_END; t++) {
        if (*t == T_E) {
            n += KEY_LEN;
            key = key || hs->has_psk;
        } else if (*t == T_S) {
            n += KEY_LEN + (key ? TAG_LEN : 0);
        } else if (*t != T_PSK || hs->has_psk) {
            key = true;
        }
    }
    return n + (key ? TAG_LEN : 0);
}

/* The DH of a token from this side's point of view (spec 5.3: es and se depend on
 * the role). */
static int token_dh(struct noise_hs *hs, uint8_t tok)
{
    bool init = hs->role == NOISE_INITIATOR;

    switch (tok) {
    case T_EE:
        return mix_dh(hs, hs->e_sk, hs->re);
    case T_ES:
        return init ? mix_dh(hs, hs->e_sk, hs->rs) : mix_dh(hs, hs->s_sk, hs->re);
    case T_SE:
        return init ? mix_dh(hs, hs->s_sk, hs->re) : mix_dh(hs, hs->e_sk, hs->rs);
    case T_PSK:
        if (hs->has_psk)
            mix_key_and_hash(hs, hs->psk, KEY_LEN);
        return 0;
    }
    return SHOAL_EAUTH; /* not reached: the table holds no other token */
}

/* After the last message: only ck (for Split), h and rs are still needed. */
static void finish_step(struct noise_hs *hs)
{
    hs->step++;
    if (hs->step < 3)
        return;
    sodium_memzero(&hs->cs, sizeof(hs->cs));
    sodium_memzero(hs->s_sk, KEY_LEN);
    sodium_memzero(hs->e_sk, KEY_LEN);
    sodium_memzero(hs->psk, KEY_LEN);
}

int noise_hs_write(struct noise_hs *hs, const void *payload, size_t plen, uint8_t *out, size_t cap,
                   size_t *out_len)
{
    const uint8_t *t;
    size_t need, pos = 0;
    int err = 0;

    if (!live(hs))
        return SHOAL_EAUTH;
    if (!noise_hs_want_write(hs))
        return -EINVAL;
    need = overhead(hs);
    if (plen > NOISE_MSG_MAX - need)
        return SHOAL_ELIMIT;
    need += plen;
    if (need > cap)
        return -ENOBUFS;
    for (t = pattern[hs->step]; *t != T_END; t++) {
        switch (*t) {
        case T_E:
            if (!hs->e_set) {
                randombytes_buf(hs->e_sk, KEY_LEN);
                crypto_scalarmult_base(hs->e_pk, hs->e_sk);
            }
            memcpy(out + pos, hs->e_pk, KEY_LEN);
            pos += KEY_LEN;
            mix_hash(hs, hs->e_pk, KEY_LEN);
            if (hs->has_psk)
                mix_key(hs, hs->e_pk, KEY_LEN); /* spec 9.2 */
            break;
        case T_S:
            pos += encrypt_and_hash(hs, hs->s_pk, KEY_LEN, out + pos);
            break;
        default:
            err = token_dh(hs, *t);
            if (err < 0)
                goto out;
        }
    }
    pos += encrypt_and_hash(hs, plen ? payload : (const void *)"", plen, out + pos);
    finish_step(hs);
    *out_len = pos;
out:
    if (err < 0)
        noise_hs_clear(hs);
    return err;
}

int noise_hs_read(struct noise_hs *hs, const uint8_t *msg, size_t len, uint8_t *payload_out,
                  size_t cap, size_t *plen)
{
    const uint8_t *t;
    uint8_t none[1];
    size_t over, pos = 0;
    int err = SHOAL_EAUTH;

    if (!live(hs) || hs->step >= 3 || noise_hs_want_write(hs))
        goto out;
    over = overhead(hs);
    if (len < over || len > NOISE_MSG_MAX)
        goto out;
    if (len - over > cap)
        return -ENOBUFS; /* nothing read yet: the state is unchanged */
    if (!payload_out)
        payload_out = none; /* (cap is then 0) */
    for (t = pattern[hs->step]; *t != T_END; t++) {
        switch (*t) {
        case T_E:
            memcpy(hs->re, msg + pos, KEY_LEN);
            pos += KEY_LEN;
            mix_hash(hs, hs->re, KEY_LEN);
            if (hs->has_psk)
                mix_key(hs, hs->re, KEY_LEN);
            break;
        case T_S: {
            size_t slen = KEY_LEN + (hs->cs.cipher != 0 ? TAG_LEN : 0);
            err = decrypt_and_hash(hs, msg + pos, slen, hs->rs);
            if (err < 0)
                goto out;
            pos += slen;
            break;
        }
        default:
            err = token_dh(hs, *t);
            if (err < 0)
                goto out;
        }
    }
    err = decrypt_and_hash(hs, msg + pos, len - pos, payload_out);
    if (err < 0)
        goto out;
    finish_step(hs);
    *plen = len - over;
out:
    if (err < 0)
        noise_hs_clear(hs);
    return err;
}

int noise_hs_remote_static(const struct noise_hs *hs, uint8_t pk[static NOISE_KEY_LEN])
{
    unsigned have = hs->role == NOISE_INITIATOR ? 2 : 3;

    if (!live(hs))
        return SHOAL_EAUTH;
    if (hs->step < have)
        return -EAGAIN;
    memcpy(pk, hs->rs, KEY_LEN);
    return 0;
}

int noise_hs_hash(const struct noise_hs *hs, uint8_t h[static NOISE_HASH_LEN])
{
    if (!live(hs))
        return SHOAL_EAUTH;
    if (hs->step < 3)
        return -EAGAIN;
    memcpy(h, hs->h, HASH_LEN);
    return 0;
}

int noise_hs_split(struct noise_hs *hs, struct noise_cs *tx, struct noise_cs *rx)
{
    uint8_t k1[HASH_LEN], k2[HASH_LEN];
    int err = 0;

    if (!live(hs))
        err = SHOAL_EAUTH;
    else if (hs->step < 3)
        err = -EAGAIN;
    if (err < 0)
        goto out;
    hkdf(hs->ck, NULL, 0, k1, k2, NULL);
    if (hs->role == NOISE_INITIATOR) {
        cs_init_key(tx, hs->cipher, k1);
        cs_init_key(rx, hs->cipher, k2);
    } else {
        cs_init_key(tx, hs->cipher, k2);
        cs_init_key(rx, hs->cipher, k1);
    }
    sodium_memzero(k1, sizeof(k1));
    sodium_memzero(k2, sizeof(k2));
out:
    noise_hs_clear(hs);
    return err;
}

/* --- The psk from the cluster key ------------------------------------------------- */

void noise_psk_from_cluster_key(const uint8_t key[static NOISE_KEY_LEN],
                                uint8_t psk[static NOISE_KEY_LEN])
{
    struct clusterkey ck;

    memcpy(ck.key, key, NOISE_KEY_LEN);
    clusterkey_derive(&ck, CLUSTERKEY_CTX_NOISE_PSK, psk);
    clusterkey_clear(&ck);
}
