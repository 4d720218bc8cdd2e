/* noise.h - the peer handshake: Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b (Noise
 * Protocol Framework, revision 34), and its transport cipher states.
 *
 *   -> e                      (with a psk, "e" also runs MixKey(e.public_key))
 *   <- e, ee, s, es
 *   -> s, se, psk             (psk: MixKeyAndHash(psk))
 *
 * Written for Shoal from the Noise specification on libsodium primitives: X25519
 * (crypto_scalarmult), ChaCha20-Poly1305 IETF or AES-256-GCM, BLAKE2b-512 with HMAC
 * and HKDF as Noise section 4.3 defines them. Without a psk the same code runs plain
 * Noise_XX_25519_*_BLAKE2b (used to check against more published vectors). AESGCM
 * needs AES-NI and PCLMUL (libsodium's requirement); ChaChaPoly is what Shoal speaks.
 *
 * What the handshake gives (Noise section 7.7, XX with psk3): both sides learn and
 * authenticate each other's static key, and the transport keys depend on the psk, so
 * a node without the cluster key cannot complete a handshake. But the psk is mixed
 * only in message 3: a stranger can send message 1 and read message 2, so message 2
 * reveals the responder's static public key and its payload to anyone. Put nothing
 * confidential in the payloads of messages 1 and 2, and do not act on a peer before
 * noise_hs_done() (the responder learns the initiator is a member only by
 * reading message 3).
 *
 * Threads: a struct noise_hs or noise_cs belongs to one thread at a time; there is no
 *   other state. Call sodium_init() (or noise_hs_init(), which does) before anything
 *   else. Pure code: no sockets, files or clocks; random ephemerals come from
 *   libsodium's randombytes_buf().
 * Errors: 0 or a negative code (err.h). Handshake: a message that fails in any way
 *   (wrong length, out of turn, bad tag, DH with a low-order point) makes the state
 *   unusable: every later call on it fails with SHOAL_EAUTH, and the caller should
 *   close the connection. Errors that are the caller's own (buffer too small,
 *   payload too large, writing out of turn) leave the state as it was.
 * Ownership: all structs are caller-allocated (stack or embedded), fixed size, no
 *   heap. They hold secrets: noise_hs_split() wipes the handshake state, and
 *   noise_hs_clear() wipes one that is abandoned; noise_cs_clear() wipes a cipher
 *   state. Keys passed in are copied; the caller keeps and wipes its own copies.
 *   A zeroed struct (after a wipe, or from memset) is unusable, never a valid state.
 */
#ifndef SHOAL_NOISE_H
#define SHOAL_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NOISE_KEY_LEN  32    /* X25519 keys, cipher keys, the psk */
#define NOISE_HASH_LEN 64    /* BLAKE2b-512: the handshake hash */
#define NOISE_TAG_LEN  16    /* AEAD tag on every encrypted field */
#define NOISE_MSG_MAX  65535 /* any Noise message, handshake or transport (spec 3) */
/* Handshake message sizes for a payload of p bytes (with a psk; plain XX sends the
 * payload of message 1 in clear, without a tag). */
#define NOISE_MSG1_LEN(p) (NOISE_KEY_LEN + (p) + NOISE_TAG_LEN)
#define NOISE_MSG2_LEN(p) (2 * NOISE_KEY_LEN + 2 * NOISE_TAG_LEN + (p))
#define NOISE_MSG3_LEN(p) (NOISE_KEY_LEN + 2 * NOISE_TAG_LEN + (p))
/* Largest transport payload: NOISE_MSG_MAX minus the tag. */
#define NOISE_PAYLOAD_MAX (NOISE_MSG_MAX - NOISE_TAG_LEN)

enum noise_role {
    NOISE_INITIATOR = 1,
    NOISE_RESPONDER = 2,
};

enum noise_cipher {
    NOISE_CHACHAPOLY = 1, /* Shoal's protocol */
    NOISE_AESGCM = 2,     /* only where crypto_aead_aes256gcm_is_available() */
};

/* A CipherState (spec 5.1). Fields are private except for tests. */
struct noise_cs {
    uint8_t k[NOISE_KEY_LEN];
    uint64_t n;     /* next nonce; UINT64_MAX is reserved and never used */
    uint8_t cipher; /* enum noise_cipher; 0 = no key (wiped or never set) */
};

/* A HandshakeState with its SymmetricState (spec 5.2, 5.3). Private fields
 * (tests read and poke some). */
struct noise_hs {
    struct noise_cs cs;
    uint8_t ck[NOISE_HASH_LEN];
    uint8_t h[NOISE_HASH_LEN];
    uint8_t s_sk[NOISE_KEY_LEN], s_pk[NOISE_KEY_LEN];
    uint8_t e_sk[NOISE_KEY_LEN], e_pk[NOISE_KEY_LEN];
    uint8_t re[NOISE_KEY_LEN], rs[NOISE_KEY_LEN];
    uint8_t psk[NOISE_KEY_LEN];
    uint8_t role;   /* enum noise_role */
    uint8_t cipher; /* enum noise_cipher */
    uint8_t step;   /* messages done, 0..3; see noise.c */
    uint8_t state;  /* 0 = unusable; see noise.c */
    bool has_psk;
    bool e_set; /* ephemeral given by noise_hs_set_ephemeral() */
};

/* Starts a handshake. static_sk is this node's X25519 secret key (its public key is
 * derived from it). psk is the 32-byte pre-shared key (noise_psk_from_cluster_key())
 * for XXpsk3, or NULL for plain XX. The prologue (may be NULL when prologue_len is 0)
 * must be the same bytes on both sides or the handshake fails (with a psk, at message
 * 1 already); a protocol version string belongs there. Calls sodium_init().
 * Errors: -EINVAL (bad role or cipher), -ENOTSUP (AESGCM on a CPU without AES-NI),
 *   -ENOMEM (sodium_init() failed). On failure *hs is wiped (unusable). */
int noise_hs_init(struct noise_hs *hs, enum noise_role role, enum noise_cipher cipher,
                  const void *prologue, size_t prologue_len,
                  const uint8_t static_sk[static NOISE_KEY_LEN], const uint8_t psk[NOISE_KEY_LEN]);

/* Uses e_sk as the ephemeral secret key instead of a random one: for test vectors
 * only (reusing an ephemeral destroys the handshake's security). Call after init and
 * before this side writes its first message. Errors: -EINVAL (too late). */
int noise_hs_set_ephemeral(struct noise_hs *hs, const uint8_t e_sk[static NOISE_KEY_LEN]);

/* True when it is this side's turn to write (initiator: messages 1 and 3;
 * responder: message 2). */
bool noise_hs_want_write(const struct noise_hs *hs);

/* Writes the next handshake message carrying `payload` (plen bytes; may be NULL when
 * plen is 0) into out (cap bytes); *out_len gets its length (NOISE_MSGn_LEN(plen)).
 * Errors: -EINVAL (not this side's turn, or done), SHOAL_ELIMIT (message would be
 *   over NOISE_MSG_MAX), -ENOBUFS (cap too small): these leave the state unchanged;
 *   SHOAL_EAUTH (state unusable, or a DH with a bad remote key: now unusable).
 *   *out_len is untouched on failure. out must not overlap payload. */
int noise_hs_write(struct noise_hs *hs, const void *payload, size_t plen, uint8_t *out, size_t cap,
                   size_t *out_len);

/* Reads the next handshake message (len bytes) from the peer; its payload goes to
 * payload_out (cap bytes) and *plen gets the payload's length.
 * Errors: -ENOBUFS (cap smaller than the payload: state unchanged, retry with more);
 *   SHOAL_EAUTH for everything the peer can cause (message out of turn, after done
 *   or after a failure; too short or over NOISE_MSG_MAX; a failed tag, so also a
 *   wrong psk or prologue; a low-order DH key): the state becomes unusable.
 *   *plen is untouched on failure; payload_out's contents are then unspecified.
 *   payload_out must not overlap msg. */
int noise_hs_read(struct noise_hs *hs, const uint8_t *msg, size_t len, uint8_t *payload_out,
                  size_t cap, size_t *plen);

/* True once all three messages are written or read (and the state is usable). */
bool noise_hs_done(const struct noise_hs *hs);

/* The peer's static public key: its node identity. Available from the moment it has
 * been read (initiator: after message 2, responder: after message 3), but trust it
 * only when noise_hs_done(). Errors: -EAGAIN (not received yet), SHOAL_EAUTH
 * (unusable state). pk is untouched on failure. */
int noise_hs_remote_static(const struct noise_hs *hs, uint8_t pk[static NOISE_KEY_LEN]);

/* The handshake hash h for channel binding (both sides get the same value once done).
 * Errors: -EAGAIN (not done), SHOAL_EAUTH. Take it before noise_hs_split(). */
int noise_hs_hash(const struct noise_hs *hs, uint8_t h[static NOISE_HASH_LEN]);

/* Ends the handshake: tx encrypts what this side sends, rx decrypts what it receives
 * (spec Split(): the first key is initiator to responder). Wipes *hs whatever the
 * result. Errors: -EAGAIN (not done; tx and rx untouched), SHOAL_EAUTH. */
int noise_hs_split(struct noise_hs *hs, struct noise_cs *tx, struct noise_cs *rx);

/* Wipes a handshake state (abandoned, or failed). */
void noise_hs_clear(struct noise_hs *hs);

/* Transport messages (spec 5.1 EncryptWithAd / DecryptWithAd): out gets len + 16
 * bytes (encrypt) or len - 16 bytes (decrypt); out may be exactly in (in place) but
 * must not overlap it otherwise. ad may be NULL when adlen is 0; Shoal uses none.
 * The nonce advances on success only: a failed decrypt leaves cs as it was, so a
 * replayed, reordered or altered message fails and so does nothing else, but the
 * connection must be closed anyway (the peer is misbehaving).
 * Errors: SHOAL_ELIMIT (message over NOISE_MSG_MAX, or the nonce reached 2^64-1),
 *   SHOAL_EAUTH (decrypt: shorter than the tag, or a failed tag; or cs has no key). */
int noise_encrypt(struct noise_cs *cs, const void *ad, size_t adlen, const uint8_t *in, size_t len,
                  uint8_t *out);
int noise_decrypt(struct noise_cs *cs, const void *ad, size_t adlen, const uint8_t *in, size_t len,
                  uint8_t *out);

/* Rekey (spec 4.2 default REKEY): k = first 32 bytes of ENCRYPT(k, 2^64-1, "", 32
 * zeros); n is unchanged. Both sides must rekey at the same point of the stream.
 * Errors: SHOAL_EAUTH (no key). */
int noise_cs_rekey(struct noise_cs *cs);

/* Wipes a cipher state. */
void noise_cs_clear(struct noise_cs *cs);

/* The psk for XXpsk3 from the 32-byte cluster key (clusterkey.h):
 *   psk = BLAKE3 derive_key(context "shoal 2026 noise psk v1", cluster key), 32 bytes,
 * i.e. clusterkey_derive(CLUSTERKEY_CTX_NOISE_PSK). The context string is part of
 * the wire protocol: changing it splits clusters. */
void noise_psk_from_cluster_key(const uint8_t key[static NOISE_KEY_LEN],
                                uint8_t psk[static NOISE_KEY_LEN]);

#endif
