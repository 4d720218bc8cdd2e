/* test_noise.c - the Noise XXpsk3 handshake and transport (protocol/noise.h): the
 * published vectors in tests/vectors/noise/, then our own negative tests. */
#include "noise.h"

#include "b3.h"
#include "check.h"
#include "err.h"
#include "vec.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#define MSG_CAP 1024

static uint8_t key_i[NOISE_KEY_LEN], key_r[NOISE_KEY_LEN];
static uint8_t psk_a[NOISE_KEY_LEN], psk_b[NOISE_KEY_LEN];
static const char PROLOGUE[] = "shoal peer v1";

static bool is_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        if (b[i])
            return false;
    }
    return true;
}

/* A dead state answers every call with SHOAL_EAUTH and has been wiped. */
static void check_dead(struct noise_hs *hs)
{
    uint8_t buf[MSG_CAP], k[NOISE_HASH_LEN];
    struct noise_cs tx, rx;
    size_t n = 7;

    CHECK(is_zero(hs, sizeof(*hs)));
    CHECK(!noise_hs_done(hs));
    CHECK(!noise_hs_want_write(hs));
    CHECK_EQ(noise_hs_write(hs, "x", 1, buf, sizeof(buf), &n), SHOAL_EAUTH);
    CHECK_EQ(noise_hs_read(hs, buf, 64, buf, sizeof(buf), &n), SHOAL_EAUTH);
    CHECK_EQ(n, 7);
    CHECK_EQ(noise_hs_remote_static(hs, k), SHOAL_EAUTH);
    CHECK_EQ(noise_hs_hash(hs, k), SHOAL_EAUTH);
    CHECK_EQ(noise_hs_split(hs, &tx, &rx), SHOAL_EAUTH);
}

static void init_pair(struct noise_hs *i, struct noise_hs *r, enum noise_cipher c,
                      const uint8_t *pski, const uint8_t *pskr, const char *pro_i,
                      const char *pro_r)
{
    CHECK_EQ(noise_hs_init(i, NOISE_INITIATOR, c, pro_i, strlen(pro_i), key_i, pski), 0);
    CHECK_EQ(noise_hs_init(r, NOISE_RESPONDER, c, pro_r, strlen(pro_r), key_r, pskr), 0);
}

/* Writes the next message from `from` (which must succeed) into msg, then returns
 * what `to` says reading it. */
static int send_msg(struct noise_hs *from, struct noise_hs *to, const char *payload,
                    uint8_t msg[MSG_CAP], size_t *len)
{
    uint8_t got[MSG_CAP];
    size_t plen = 0;
    int err;

    CHECK(noise_hs_want_write(from));
    CHECK(!noise_hs_want_write(to));
    CHECK_EQ(noise_hs_write(from, payload, strlen(payload), msg, MSG_CAP, len), 0);
    err = noise_hs_read(to, msg, *len, got, sizeof(got), &plen);
    if (err == 0) {
        CHECK_EQ(plen, strlen(payload));
        CHECK_MEM(got, payload, plen);
    }
    return err;
}

static const char *const PAYLOADS[3] = {"hello", "", "shoal node 1"};

/* A complete honest handshake between the test keys. */
static void handshake(struct noise_hs *i, struct noise_hs *r, enum noise_cipher c)
{
    uint8_t msg[MSG_CAP];
    size_t len;
    int k;

    init_pair(i, r, c, psk_a, psk_a, PROLOGUE, PROLOGUE);
    for (k = 0; k < 3; k++)
        CHECK_EQ(send_msg(k == 1 ? r : i, k == 1 ? i : r, PAYLOADS[k], msg, &len), 0);
    CHECK(noise_hs_done(i) && noise_hs_done(r));
}

/* --- published vectors ------------------------------------------------------------ */

static uint8_t *unhex_alloc(const char *hex, size_t *n)
{
    uint8_t *b;

    *n = strlen(hex) / 2;
    b = check_malloc(*n + 1);
    vec_unhex(hex, b, *n);
    return b;
}

static void key_from(json_t *v, const char *field, uint8_t out[NOISE_KEY_LEN])
{
    vec_unhex(vec_str(v, field), out, NOISE_KEY_LEN);
}

/* The first psk of a list, or NULL for none (absent or empty list). */
static const uint8_t *psk_from(json_t *v, const char *field, uint8_t out[NOISE_KEY_LEN])
{
    json_t *list = json_object_get(v, field);

    if (!list || json_array_size(list) == 0)
        return NULL;
    CHECK_EQ(json_array_size(list), 1);
    vec_unhex(json_string_value(json_array_get(list, 0)), out, NOISE_KEY_LEN);
    return out;
}

static void run_vector(json_t *v, enum noise_cipher c, bool want_psk)
{
    struct noise_hs hs[2];
    struct noise_cs tx[2], rx[2];
    uint8_t s[2][NOISE_KEY_LEN], e[2][NOISE_KEY_LEN], psk[2][NOISE_KEY_LEN];
    uint8_t pub[NOISE_KEY_LEN], rs[NOISE_KEY_LEN], h[2][NOISE_HASH_LEN], want_h[NOISE_HASH_LEN];
    uint8_t out[MSG_CAP], got[MSG_CAP];
    const uint8_t *pskp[2];
    uint8_t *pro[2];
    size_t pro_len[2];
    json_t *msgs = vec_get(v, "messages");
    size_t k;
    int side;

    pro[0] = unhex_alloc(vec_str(v, "init_prologue"), &pro_len[0]);
    pro[1] = unhex_alloc(vec_str(v, "resp_prologue"), &pro_len[1]);
    key_from(v, "init_static", s[0]);
    key_from(v, "resp_static", s[1]);
    key_from(v, "init_ephemeral", e[0]);
    key_from(v, "resp_ephemeral", e[1]);
    pskp[0] = psk_from(v, "init_psks", psk[0]);
    pskp[1] = psk_from(v, "resp_psks", psk[1]);
    CHECK(want_psk == (pskp[0] != NULL) && want_psk == (pskp[1] != NULL));
    for (side = 0; side < 2; side++) {
        CHECK_EQ(noise_hs_init(&hs[side], side ? NOISE_RESPONDER : NOISE_INITIATOR, c, pro[side],
                               pro_len[side], s[side], pskp[side]),
                 0);
        CHECK_EQ(noise_hs_set_ephemeral(&hs[side], e[side]), 0);
    }
    CHECK(json_array_size(msgs) > 3);
    for (k = 0; k < json_array_size(msgs); k++) {
        json_t *m = json_array_get(msgs, k);
        size_t plen, clen, n = 0, rn = 0;
        uint8_t *payload = unhex_alloc(vec_str(m, "payload"), &plen);
        uint8_t *ct = unhex_alloc(vec_str(m, "ciphertext"), &clen);
        int from = (int)(k % 2), to = 1 - from;

        if (k < 3) {
            CHECK_EQ(noise_hs_write(&hs[from], payload, plen, out, sizeof(out), &n), 0);
            CHECK_EQ(n, clen);
            CHECK_MEM(out, ct, clen);
            CHECK_EQ(noise_hs_read(&hs[to], ct, clen, got, sizeof(got), &rn), 0);
            CHECK_EQ(rn, plen);
            CHECK_MEM(got, payload, plen);
        } else {
            CHECK_EQ(clen, plen + NOISE_TAG_LEN);
            CHECK_EQ(noise_encrypt(&tx[from], NULL, 0, payload, plen, out), 0);
            CHECK_MEM(out, ct, clen);
            CHECK_EQ(noise_decrypt(&rx[to], NULL, 0, ct, clen, got), 0);
            CHECK_MEM(got, payload, plen);
        }
        if (k == 2) {
            for (side = 0; side < 2; side++) {
                CHECK(noise_hs_done(&hs[side]));
                CHECK_EQ(noise_hs_hash(&hs[side], h[side]), 0);
                CHECK_EQ(noise_hs_remote_static(&hs[side], rs), 0);
                crypto_scalarmult_base(pub, s[1 - side]);
                CHECK_MEM(rs, pub, NOISE_KEY_LEN);
                CHECK_EQ(noise_hs_split(&hs[side], &tx[side], &rx[side]), 0);
            }
            CHECK_MEM(h[0], h[1], NOISE_HASH_LEN);
            if (json_object_get(v, "handshake_hash")) {
                vec_unhex(vec_str(v, "handshake_hash"), want_h, NOISE_HASH_LEN);
                CHECK_MEM(h[0], want_h, NOISE_HASH_LEN);
            }
        }
        free(payload);
        free(ct);
    }
    for (side = 0; side < 2; side++) {
        noise_cs_clear(&tx[side]);
        noise_cs_clear(&rx[side]);
        free(pro[side]);
    }
}

static void test_vectors(void)
{
    json_t *file = vec_load("noise/xxpsk3.json");
    json_t *vs = vec_get(file, "vectors");
    int ran_psk_chacha = 0, ran_psk_aes = 0, ran_xx = 0;
    size_t i;

    for (i = 0; i < json_array_size(vs); i++) {
        json_t *v = json_array_get(vs, i);
        const char *name = vec_str(v, "protocol_name");

        if (strcmp(name, "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b") == 0) {
            run_vector(v, NOISE_CHACHAPOLY, true);
            ran_psk_chacha++;
        } else if (strcmp(name, "Noise_XXpsk3_25519_AESGCM_BLAKE2b") == 0) {
            if (!crypto_aead_aes256gcm_is_available()) {
                fprintf(stderr, "   vector %zu: %s skipped (no AES-NI)\n", i, name);
                continue;
            }
            run_vector(v, NOISE_AESGCM, true);
            ran_psk_aes++;
        } else if (strcmp(name, "Noise_XX_25519_ChaChaPoly_BLAKE2b") == 0) {
            run_vector(v, NOISE_CHACHAPOLY, false);
            ran_xx++;
        } else {
            fprintf(stderr, "   vector %zu: %s not supported, skipped\n", i, name);
            continue;
        }
        fprintf(stderr, "   vector %zu: %s ok\n", i, name);
    }
    CHECK_EQ(ran_psk_chacha, 1);
    CHECK_EQ(ran_psk_aes, crypto_aead_aes256gcm_is_available() ? 1 : 0);
    CHECK_EQ(ran_xx, 2);
    json_decref(file);
}

/* --- the contract ------------------------------------------------------------------- */

static void test_roundtrip_random_ephemerals(void)
{
    struct noise_hs i, r, i2, r2;
    uint8_t m1[MSG_CAP], m1b[MSG_CAP], rs[NOISE_KEY_LEN], pub[NOISE_KEY_LEN];
    uint8_t h[2][NOISE_HASH_LEN];
    size_t n1, n1b;

    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    init_pair(&i2, &r2, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    /* Not yet: the peer's static key, the hash, split. */
    CHECK_EQ(noise_hs_remote_static(&i, rs), -EAGAIN);
    CHECK_EQ(noise_hs_hash(&i, h[0]), -EAGAIN);
    CHECK_EQ(send_msg(&i, &r, "a", m1, &n1), 0);
    CHECK_EQ(n1, NOISE_MSG1_LEN(1));
    CHECK_EQ(send_msg(&i2, &r2, "a", m1b, &n1b), 0);
    CHECK(memcmp(m1, m1b, NOISE_KEY_LEN) != 0); /* fresh ephemerals */
    /* Too late to choose the ephemeral once it went out. */
    CHECK_EQ(noise_hs_set_ephemeral(&i, key_i), -EINVAL);
    CHECK_EQ(send_msg(&r, &i, "bb", m1, &n1), 0);
    CHECK_EQ(n1, NOISE_MSG2_LEN(2));
    CHECK_EQ(noise_hs_set_ephemeral(&r, key_r), -EINVAL);
    CHECK_EQ(noise_hs_remote_static(&i, rs), 0); /* known (not yet trusted) */
    crypto_scalarmult_base(pub, key_r);
    CHECK_MEM(rs, pub, NOISE_KEY_LEN);
    CHECK_EQ(noise_hs_remote_static(&r, rs), -EAGAIN);
    CHECK_EQ(send_msg(&i, &r, "ccc", m1, &n1), 0);
    CHECK_EQ(n1, NOISE_MSG3_LEN(3));
    CHECK_EQ(noise_hs_remote_static(&r, rs), 0);
    crypto_scalarmult_base(pub, key_i);
    CHECK_MEM(rs, pub, NOISE_KEY_LEN);
    CHECK_EQ(noise_hs_hash(&i, h[0]), 0);
    CHECK_EQ(noise_hs_hash(&r, h[1]), 0);
    CHECK_MEM(h[0], h[1], NOISE_HASH_LEN);
    /* Done: nobody writes or reads any more handshake messages. */
    CHECK(!noise_hs_want_write(&i) && !noise_hs_want_write(&r));
    CHECK_EQ(noise_hs_write(&i, "", 0, m1, sizeof(m1), &n1), -EINVAL);
    noise_hs_clear(&i);
    noise_hs_clear(&r);
    noise_hs_clear(&i2);
    noise_hs_clear(&r2);
    check_dead(&i);
}

static void test_bad_args(void)
{
    struct noise_hs hs, r;
    struct noise_cs tx, rx;
    uint8_t msg[MSG_CAP];
    size_t n;

    CHECK_EQ(noise_hs_init(&hs, (enum noise_role)0, NOISE_CHACHAPOLY, NULL, 0, key_i, NULL),
             -EINVAL);
    check_dead(&hs);
    CHECK_EQ(noise_hs_init(&hs, NOISE_INITIATOR, (enum noise_cipher)7, NULL, 0, key_i, NULL),
             -EINVAL);
    check_dead(&hs);
    /* The responder does not write first, the initiator does not read first. */
    CHECK_EQ(noise_hs_init(&r, NOISE_RESPONDER, NOISE_CHACHAPOLY, NULL, 0, key_r, psk_a), 0);
    CHECK_EQ(noise_hs_write(&r, "", 0, msg, sizeof(msg), &n), -EINVAL);
    CHECK(noise_hs_want_write(&r) == false && noise_hs_done(&r) == false);
    /* Split before the end: refused, and the state is wiped anyway. */
    CHECK_EQ(noise_hs_split(&r, &tx, &rx), -EAGAIN);
    check_dead(&r);
    CHECK_EQ(noise_hs_init(&hs, NOISE_INITIATOR, NOISE_CHACHAPOLY, NULL, 0, key_i, psk_a), 0);
    memset(msg, 0, sizeof(msg));
    CHECK_EQ(noise_hs_read(&hs, msg, 64, msg, sizeof(msg), &n), SHOAL_EAUTH);
    check_dead(&hs);
}

/* --- our own negative tests ----------------------------------------------------------- */

static void test_wrong_psk(void)
{
    struct noise_hs i, r;
    struct noise_cs tx, rx;
    uint8_t msg[MSG_CAP], ct[64], pt[64];
    size_t n;

    /* The psk enters in message 3: 1 and 2 go through, the responder refuses 3. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_b, PROLOGUE, PROLOGUE);
    CHECK_EQ(send_msg(&i, &r, "hi", msg, &n), 0);
    CHECK_EQ(send_msg(&r, &i, "", msg, &n), 0);
    CHECK_EQ(send_msg(&i, &r, "member", msg, &n), SHOAL_EAUTH);
    check_dead(&r);
    /* The initiator has finished writing but never hears a valid word: whatever a
     * responder without the same psk sends in transport does not decrypt. */
    CHECK(noise_hs_done(&i));
    CHECK_EQ(noise_hs_split(&i, &tx, &rx), 0);
    {
        struct noise_hs i2, r2;
        struct noise_cs tx2, rx2;
        init_pair(&i2, &r2, NOISE_CHACHAPOLY, psk_b, psk_b, PROLOGUE, PROLOGUE);
        CHECK_EQ(send_msg(&i2, &r2, "", msg, &n), 0);
        CHECK_EQ(send_msg(&r2, &i2, "", msg, &n), 0);
        CHECK_EQ(send_msg(&i2, &r2, "", msg, &n), 0);
        CHECK_EQ(noise_hs_split(&r2, &tx2, &rx2), 0);
        CHECK_EQ(noise_encrypt(&tx2, NULL, 0, (const uint8_t *)"data", 4, ct), 0);
        CHECK_EQ(noise_decrypt(&rx, NULL, 0, ct, 4 + NOISE_TAG_LEN, pt), SHOAL_EAUTH);
        noise_hs_clear(&i2);
        noise_cs_clear(&tx2);
        noise_cs_clear(&rx2);
    }
    noise_cs_clear(&tx);
    noise_cs_clear(&rx);

    /* One side with a psk, the other without (XX): different protocol names, caught
     * by message 2 at the latest. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, NULL, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(noise_hs_write(&i, "", 0, msg, sizeof(msg), &n), 0);
    CHECK_EQ(n, NOISE_KEY_LEN); /* plain XX: no tag in message 1 */
    CHECK_EQ(noise_hs_read(&r, msg, n, pt, sizeof(pt), &n), SHOAL_EAUTH); /* too short */
    check_dead(&r);
    noise_hs_clear(&i);
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, NULL, PROLOGUE, PROLOGUE);
    CHECK_EQ(noise_hs_write(&i, "", 0, msg, sizeof(msg), &n), 0);
    CHECK_EQ(noise_hs_read(&r, msg, n, pt, sizeof(pt), &n), 0); /* the tag as clear payload */
    CHECK_EQ(n, NOISE_TAG_LEN);
    CHECK_EQ(noise_hs_write(&r, "", 0, msg, sizeof(msg), &n), 0);
    CHECK_EQ(noise_hs_read(&i, msg, n, pt, sizeof(pt), &n), SHOAL_EAUTH);
    check_dead(&i);
    noise_hs_clear(&r);

    /* Different cipher choices never agree either. */
    if (crypto_aead_aes256gcm_is_available()) {
        CHECK_EQ(noise_hs_init(&i, NOISE_INITIATOR, NOISE_AESGCM, PROLOGUE, strlen(PROLOGUE), key_i,
                               psk_a),
                 0);
        CHECK_EQ(noise_hs_init(&r, NOISE_RESPONDER, NOISE_CHACHAPOLY, PROLOGUE, strlen(PROLOGUE),
                               key_r, psk_a),
                 0);
        CHECK_EQ(send_msg(&i, &r, "x", msg, &n), SHOAL_EAUTH);
        check_dead(&r);
        noise_hs_clear(&i);
    }
}

static void test_wrong_prologue(void)
{
    struct noise_hs i, r;
    uint8_t msg[MSG_CAP];
    size_t n;

    /* With a psk, message 1's payload is encrypted under a key and h, and h holds the
     * prologue: the responder refuses message 1 already. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, "shoal peer v1", "shoal peer v2");
    CHECK_EQ(send_msg(&i, &r, "", msg, &n), SHOAL_EAUTH);
    check_dead(&r);
    noise_hs_clear(&i);
    /* Plain XX sends message 1 in clear: the initiator refuses message 2. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, NULL, NULL, "shoal peer v1", "");
    CHECK_EQ(send_msg(&i, &r, "", msg, &n), 0);
    CHECK_EQ(send_msg(&r, &i, "", msg, &n), SHOAL_EAUTH);
    check_dead(&i);
    noise_hs_clear(&r);
}

/* Runs the honest handshake up to message k (0-based), then delivers message k with
 * one change applied by `mutate`; the reader must refuse it and die. */
static void deliver_changed(int k, enum noise_cipher c,
                            size_t (*mutate)(uint8_t *msg, size_t len, size_t arg), size_t arg)
{
    struct noise_hs hs[2];
    uint8_t msg[MSG_CAP + 1], got[MSG_CAP];
    size_t n, pn = 99;
    int j;

    init_pair(&hs[0], &hs[1], c, psk_a, psk_a, PROLOGUE, PROLOGUE);
    for (j = 0; j < k; j++)
        CHECK_EQ(send_msg(&hs[j % 2], &hs[1 - j % 2], PAYLOADS[j], msg, &n), 0);
    CHECK_EQ(noise_hs_write(&hs[k % 2], PAYLOADS[k], strlen(PAYLOADS[k]), msg, MSG_CAP, &n), 0);
    n = mutate(msg, n, arg);
    CHECK_EQ(noise_hs_read(&hs[1 - k % 2], msg, n, got, sizeof(got), &pn), SHOAL_EAUTH);
    CHECK_EQ(pn, 99);
    check_dead(&hs[1 - k % 2]);
    noise_hs_clear(&hs[k % 2]);
}

static size_t flip_bit(uint8_t *msg, size_t len, size_t bit)
{
    msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    return len;
}

static size_t truncate_to(uint8_t *msg, size_t len, size_t to)
{
    (void)msg;
    return to < len ? to : len;
}

static size_t extend(uint8_t *msg, size_t len, size_t extra)
{
    memset(msg + len, 0, extra);
    return len + extra;
}

static const size_t HS_LEN[3] = {
    NOISE_MSG1_LEN(5), NOISE_MSG2_LEN(0), NOISE_MSG3_LEN(12), /* PAYLOADS */
};

static void test_flipped_bits(void)
{
    enum noise_cipher c = NOISE_CHACHAPOLY;
    size_t b;
    int k;

    /* Every byte of every message is covered (a different bit each time), including
     * the top bit of the ephemeral key, which X25519 ignores but h does not. */
    for (k = 0; k < 3; k++) {
        for (b = 0; b < HS_LEN[k]; b++)
            deliver_changed(k, c, flip_bit, 8 * b + (b * 3 + (size_t)k) % 8);
        deliver_changed(k, c, flip_bit, 8 * 31 + 7);
    }
    if (crypto_aead_aes256gcm_is_available()) {
        for (k = 0; k < 3; k++) {
            deliver_changed(k, NOISE_AESGCM, flip_bit, 0);
            deliver_changed(k, NOISE_AESGCM, flip_bit, 8 * HS_LEN[k] - 1);
        }
    }
}

static void test_truncated_and_extended(void)
{
    size_t t;
    int k;

    for (k = 0; k < 3; k++) {
        for (t = 0; t < HS_LEN[k]; t++)
            deliver_changed(k, NOISE_CHACHAPOLY, truncate_to, t);
        deliver_changed(k, NOISE_CHACHAPOLY, extend, 1);
        deliver_changed(k, NOISE_CHACHAPOLY, extend, 100);
    }
}

static void test_replay_and_reorder(void)
{
    struct noise_hs i, r, i2, r2;
    uint8_t m1[MSG_CAP], m2[MSG_CAP], m3[MSG_CAP], got[MSG_CAP];
    size_t n1, n2, n3, n;

    /* Message 1 twice to the same responder. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(send_msg(&i, &r, "one", m1, &n1), 0);
    CHECK_EQ(noise_hs_read(&r, m1, n1, got, sizeof(got), &n), SHOAL_EAUTH);
    check_dead(&r);
    noise_hs_clear(&i);

    /* A full handshake recorded, then replayed to a fresh responder: message 1 is
     * accepted (anyone may start), but the old message 3 belongs to the old responder
     * ephemeral and is refused. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(send_msg(&i, &r, "one", m1, &n1), 0);
    CHECK_EQ(send_msg(&r, &i, "two", m2, &n2), 0);
    CHECK_EQ(send_msg(&i, &r, "three", m3, &n3), 0);
    noise_hs_clear(&i);
    noise_hs_clear(&r);
    init_pair(&i2, &r2, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(noise_hs_read(&r2, m1, n1, got, sizeof(got), &n), 0);
    CHECK_EQ(noise_hs_write(&r2, "", 0, m2, sizeof(m2), &n2), 0);
    CHECK_EQ(noise_hs_read(&r2, m3, n3, got, sizeof(got), &n), SHOAL_EAUTH);
    check_dead(&r2);
    /* ... and the old message 2 does not fool a fresh initiator. */
    CHECK_EQ(send_msg(&i2, &r2, "", m1, &n1), SHOAL_EAUTH); /* r2 is dead */
    CHECK_EQ(noise_hs_read(&i2, m2, n2, got, sizeof(got), &n), SHOAL_EAUTH);
    check_dead(&i2);

    /* Reordered: the responder is handed message 3 when it should write message 2. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(send_msg(&i, &r, "one", m1, &n1), 0);
    CHECK_EQ(noise_hs_read(&r, m3, n3, got, sizeof(got), &n), SHOAL_EAUTH);
    check_dead(&r);
    /* The initiator is handed a message before it sent message 1. */
    noise_hs_clear(&i);
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(noise_hs_read(&i, m2, n2, got, sizeof(got), &n), SHOAL_EAUTH);
    check_dead(&i);
    noise_hs_clear(&r);
}

static void test_sizes(void)
{
    struct noise_hs i, r;
    uint8_t *big = check_malloc(NOISE_MSG_MAX + 2), *out = check_malloc(NOISE_MSG_MAX + 2);
    uint8_t small[8];
    size_t max1 = NOISE_MSG_MAX - NOISE_MSG1_LEN(0), n = 5, pn = 5;

    memset(big, 0x42, NOISE_MSG_MAX + 2);
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    /* One byte too much: refused, nothing changed. */
    CHECK_EQ(noise_hs_write(&i, big, max1 + 1, out, NOISE_MSG_MAX + 2, &n), SHOAL_ELIMIT);
    CHECK_EQ(noise_hs_write(&i, big, SIZE_MAX, out, NOISE_MSG_MAX + 2, &n), SHOAL_ELIMIT);
    /* Buffer too small: refused, nothing changed. */
    CHECK_EQ(noise_hs_write(&i, big, max1, out, NOISE_MSG_MAX - 1, &n), -ENOBUFS);
    CHECK_EQ(n, 5);
    CHECK(noise_hs_want_write(&i));
    /* Exactly the largest message. */
    CHECK_EQ(noise_hs_write(&i, big, max1, out, NOISE_MSG_MAX, &n), 0);
    CHECK_EQ(n, NOISE_MSG_MAX);
    /* The reader's buffer too small: refused, nothing changed, retry works. */
    CHECK_EQ(noise_hs_read(&r, out, n, small, sizeof(small), &pn), -ENOBUFS);
    CHECK_EQ(pn, 5);
    CHECK_EQ(noise_hs_read(&r, out, n, big, NOISE_MSG_MAX, &pn), 0);
    CHECK_EQ(pn, max1);
    noise_hs_clear(&i);
    noise_hs_clear(&r);
    /* Over NOISE_MSG_MAX on the wire: refused whatever it holds. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(noise_hs_read(&r, big, NOISE_MSG_MAX + 1, out, NOISE_MSG_MAX + 2, &pn), SHOAL_EAUTH);
    check_dead(&r);
    noise_hs_clear(&i);
    /* No payload, NULL buffers. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(noise_hs_write(&i, NULL, 0, out, NOISE_MSG_MAX, &n), 0);
    CHECK_EQ(noise_hs_read(&r, out, n, NULL, 0, &pn), 0);
    CHECK_EQ(pn, 0);
    noise_hs_clear(&i);
    noise_hs_clear(&r);
    free(big);
    free(out);
}

/* A peer whose ephemeral is a low-order point makes the DH output zero: libsodium
 * refuses it, and so do we, on the writing and the reading side. */
static void test_low_order_point(void)
{
    struct noise_hs i, r;
    uint8_t msg[MSG_CAP];
    size_t n;

    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(noise_hs_set_ephemeral(&i, key_i), 0);
    memset(i.e_pk, 0, sizeof(i.e_pk)); /* test-only poke: the public key sent */
    CHECK_EQ(send_msg(&i, &r, "", msg, &n), 0);
    CHECK_EQ(noise_hs_write(&r, "", 0, msg, sizeof(msg), &n), SHOAL_EAUTH); /* ee */
    check_dead(&r);
    noise_hs_clear(&i);

    init_pair(&i, &r, NOISE_CHACHAPOLY, psk_a, psk_a, PROLOGUE, PROLOGUE);
    CHECK_EQ(send_msg(&i, &r, "", msg, &n), 0);
    CHECK_EQ(noise_hs_set_ephemeral(&r, key_r), 0);
    memset(r.e_pk, 0, sizeof(r.e_pk));
    r.e_pk[0] = 1; /* u = 1: another low-order point */
    CHECK_EQ(send_msg(&r, &i, "", msg, &n), SHOAL_EAUTH);
    check_dead(&i);
    noise_hs_clear(&r);
}

/* --- transport ------------------------------------------------------------------------ */

static void split_pair(enum noise_cipher c, struct noise_cs *itx, struct noise_cs *irx,
                       struct noise_cs *rtx, struct noise_cs *rrx)
{
    struct noise_hs i, r;

    handshake(&i, &r, c);
    /* Done: the handshake keys are already gone, only ck, h and rs are left. */
    CHECK(is_zero(i.s_sk, NOISE_KEY_LEN) && is_zero(i.e_sk, NOISE_KEY_LEN));
    CHECK(is_zero(i.psk, NOISE_KEY_LEN) && is_zero(&i.cs, sizeof(i.cs)));
    CHECK(is_zero(r.s_sk, NOISE_KEY_LEN) && is_zero(r.e_sk, NOISE_KEY_LEN));
    CHECK(is_zero(r.psk, NOISE_KEY_LEN) && is_zero(&r.cs, sizeof(r.cs)));
    CHECK_EQ(noise_hs_split(&i, itx, irx), 0);
    CHECK_EQ(noise_hs_split(&r, rtx, rrx), 0);
    /* Split wiped the whole handshake state, which is now dead. */
    check_dead(&i);
    check_dead(&r);
    CHECK_MEM(itx->k, rrx->k, NOISE_KEY_LEN);
    CHECK_MEM(rtx->k, irx->k, NOISE_KEY_LEN);
    CHECK(memcmp(itx->k, irx->k, NOISE_KEY_LEN) != 0);
}

static void transport_case(enum noise_cipher c)
{
    struct noise_cs itx, irx, rtx, rrx;
    uint8_t m[3][64], buf[64], pt[64];
    size_t L = 10 + NOISE_TAG_LEN;
    int k;

    split_pair(c, &itx, &irx, &rtx, &rrx);
    for (k = 0; k < 3; k++)
        CHECK_EQ(noise_encrypt(&itx, NULL, 0, (const uint8_t *)"0123456789", 10, m[k]), 0);
    CHECK_EQ(itx.n, 3);
    CHECK(memcmp(m[0], m[1], L) != 0); /* a new nonce each time */
    /* Reordered: message 1 before 0 fails and leaves the counter alone. */
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, m[1], L, pt), SHOAL_EAUTH);
    CHECK_EQ(rrx.n, 0);
    /* A flipped bit anywhere, the tag included. */
    for (k = 0; k < (int)L; k++) {
        memcpy(buf, m[0], L);
        buf[k] ^= (uint8_t)(1u << (k % 8));
        CHECK_EQ(noise_decrypt(&rrx, NULL, 0, buf, L, pt), SHOAL_EAUTH);
        CHECK_EQ(rrx.n, 0);
    }
    /* Truncated, wrong associated data. */
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, m[0], L - 1, pt), SHOAL_EAUTH);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, m[0], NOISE_TAG_LEN - 1, pt), SHOAL_EAUTH);
    CHECK_EQ(noise_decrypt(&rrx, "ad", 2, m[0], L, pt), SHOAL_EAUTH);
    CHECK_EQ(rrx.n, 0);
    /* In order it works (in place for message 0). */
    memcpy(buf, m[0], L);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, buf, L, buf), 0);
    CHECK_MEM(buf, "0123456789", 10);
    /* Replayed: fails. */
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, m[0], L, pt), SHOAL_EAUTH);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, m[1], L, pt), 0);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, m[2], L, pt), 0);
    CHECK_EQ(rrx.n, 3);
    /* The other direction, in place, with associated data; an empty message. */
    memcpy(buf, "abc", 3);
    CHECK_EQ(noise_encrypt(&rtx, "ad", 2, buf, 3, buf), 0);
    CHECK_EQ(noise_decrypt(&irx, "ad", 2, buf, 3 + NOISE_TAG_LEN, pt), 0);
    CHECK_MEM(pt, "abc", 3);
    CHECK_EQ(noise_encrypt(&rtx, NULL, 0, NULL, 0, buf), 0);
    CHECK_EQ(noise_decrypt(&irx, NULL, 0, buf, NOISE_TAG_LEN, pt), 0);
    /* A direction's key does not open the other direction. */
    CHECK_EQ(noise_encrypt(&itx, NULL, 0, (const uint8_t *)"x", 1, buf), 0);
    CHECK_EQ(noise_decrypt(&irx, NULL, 0, buf, 1 + NOISE_TAG_LEN, pt), SHOAL_EAUTH);
    /* Rekey on both sides of a direction: still in step, and the key changed. */
    memcpy(pt, itx.k, NOISE_KEY_LEN);
    CHECK_EQ(noise_cs_rekey(&itx), 0);
    CHECK(memcmp(pt, itx.k, NOISE_KEY_LEN) != 0);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, buf, 1 + NOISE_TAG_LEN, pt), 0); /* catch up */
    CHECK_EQ(noise_cs_rekey(&rrx), 0);
    CHECK_EQ(noise_encrypt(&itx, NULL, 0, (const uint8_t *)"y", 1, buf), 0);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, buf, 1 + NOISE_TAG_LEN, pt), 0);
    CHECK_EQ(pt[0], 'y');

    /* Nonce exhaustion: 2^64-2 is the last nonce used; 2^64-1 is never used. */
    itx.n = UINT64_MAX - 1; /* test-only poke; both sides agree */
    rrx.n = UINT64_MAX - 1;
    CHECK_EQ(noise_encrypt(&itx, NULL, 0, (const uint8_t *)"z", 1, buf), 0);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, buf, 1 + NOISE_TAG_LEN, pt), 0);
    CHECK_EQ(noise_encrypt(&itx, NULL, 0, (const uint8_t *)"z", 1, buf), SHOAL_ELIMIT);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, buf, 1 + NOISE_TAG_LEN, pt), SHOAL_ELIMIT);
    CHECK_EQ(itx.n, UINT64_MAX);

    noise_cs_clear(&itx);
    noise_cs_clear(&irx);
    noise_cs_clear(&rtx);
    noise_cs_clear(&rrx);
    CHECK(is_zero(&itx, sizeof(itx)));
    /* A cleared cipher state has no key and refuses to work. */
    CHECK_EQ(noise_encrypt(&itx, NULL, 0, buf, 1, buf), SHOAL_EAUTH);
    CHECK_EQ(noise_decrypt(&irx, NULL, 0, buf, 17, pt), SHOAL_EAUTH);
    CHECK_EQ(noise_cs_rekey(&itx), SHOAL_EAUTH);
}

static void test_transport(void)
{
    transport_case(NOISE_CHACHAPOLY);
    if (crypto_aead_aes256gcm_is_available())
        transport_case(NOISE_AESGCM);
}

static void test_transport_sizes(void)
{
    struct noise_cs itx, irx, rtx, rrx;
    uint8_t *buf = check_malloc(NOISE_MSG_MAX + 1), *pt = check_malloc(NOISE_MSG_MAX + 1);

    split_pair(NOISE_CHACHAPOLY, &itx, &irx, &rtx, &rrx);
    memset(buf, 7, NOISE_MSG_MAX + 1);
    CHECK_EQ(noise_encrypt(&itx, NULL, 0, buf, NOISE_PAYLOAD_MAX + 1, buf), SHOAL_ELIMIT);
    CHECK_EQ(itx.n, 0);
    CHECK_EQ(noise_encrypt(&itx, NULL, 0, buf, NOISE_PAYLOAD_MAX, buf), 0);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, buf, NOISE_MSG_MAX, pt), 0);
    CHECK_EQ(noise_decrypt(&rrx, NULL, 0, buf, NOISE_MSG_MAX + 1, pt), SHOAL_ELIMIT);
    CHECK_EQ(pt[NOISE_PAYLOAD_MAX - 1], 7);
    noise_cs_clear(&itx);
    noise_cs_clear(&irx);
    noise_cs_clear(&rtx);
    noise_cs_clear(&rrx);
    free(buf);
    free(pt);
}

/* --- the psk from the cluster key ----------------------------------------------------- */

static void test_psk_from_cluster_key(void)
{
    uint8_t ck1[NOISE_KEY_LEN], ck2[NOISE_KEY_LEN], p1[NOISE_KEY_LEN], p2[NOISE_KEY_LEN];
    uint8_t want[NOISE_KEY_LEN], msg[MSG_CAP];
    struct b3_hasher h;
    struct noise_hs i, r;
    size_t n;

    check_fill_splitmix(ck1, sizeof(ck1), 11);
    check_fill_splitmix(ck2, sizeof(ck2), 12);
    noise_psk_from_cluster_key(ck1, p1);
    /* The documented label, pinned independently of clusterkey.h. */
    b3_init_derive_key(&h, "shoal 2026 noise psk v1");
    b3_update(&h, ck1, sizeof(ck1));
    b3_final(&h, want, sizeof(want));
    CHECK_MEM(p1, want, NOISE_KEY_LEN);
    CHECK(memcmp(p1, ck1, NOISE_KEY_LEN) != 0);
    noise_psk_from_cluster_key(ck2, p2);
    CHECK(memcmp(p1, p2, NOISE_KEY_LEN) != 0);
    /* Same cluster key: a handshake; another key: refused at message 3. */
    init_pair(&i, &r, NOISE_CHACHAPOLY, p1, p1, PROLOGUE, PROLOGUE);
    CHECK_EQ(send_msg(&i, &r, "", msg, &n), 0);
    CHECK_EQ(send_msg(&r, &i, "", msg, &n), 0);
    CHECK_EQ(send_msg(&i, &r, "", msg, &n), 0);
    noise_hs_clear(&i);
    noise_hs_clear(&r);
    init_pair(&i, &r, NOISE_CHACHAPOLY, p1, p2, PROLOGUE, PROLOGUE);
    CHECK_EQ(send_msg(&i, &r, "", msg, &n), 0);
    CHECK_EQ(send_msg(&r, &i, "", msg, &n), 0);
    CHECK_EQ(send_msg(&i, &r, "", msg, &n), SHOAL_EAUTH);
    noise_hs_clear(&i);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    check_fill_splitmix(key_i, sizeof(key_i), 1);
    check_fill_splitmix(key_r, sizeof(key_r), 2);
    check_fill_splitmix(psk_a, sizeof(psk_a), 3);
    check_fill_splitmix(psk_b, sizeof(psk_b), 4);
    RUN(test_vectors);
    RUN(test_roundtrip_random_ephemerals);
    RUN(test_bad_args);
    RUN(test_wrong_psk);
    RUN(test_wrong_prologue);
    RUN(test_flipped_bits);
    RUN(test_truncated_and_extended);
    RUN(test_replay_and_reorder);
    RUN(test_sizes);
    RUN(test_low_order_point);
    RUN(test_transport);
    RUN(test_transport_sizes);
    RUN(test_psk_from_cluster_key);
    return check_done();
}
