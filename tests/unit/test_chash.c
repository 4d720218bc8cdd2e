/* test_chash.c - chunk hashes, the Xet merkle hash, piece (file) hashes, rendering. */
#include "chash.h"

#include "b3.h"
#include "check.h"
#include "err.h"
#include "smallfiles.h"
#include "vec.h"

#include <string.h>

static void xet(const char *s, uint8_t out[CHASH_LEN])
{
    if (chash_from_xet(s, out) != 0)
        check__fail(__FILE__, __LINE__, "bad Xet hash string \"%s\"", s);
}

static void check_xet(const uint8_t h[CHASH_LEN], const char *want)
{
    char got[CHASH_XET_LEN + 1];

    chash_to_xet(h, got);
    CHECK_STR(got, want);
}

static void test_keys(void)
{
    json_t *v = vec_load("keys.json");
    json_t *k = vec_get(v, "blake3_keys");
    uint8_t key[CHASH_LEN];

    vec_unhex(vec_str(vec_get(k, "DATA_KEY"), "hex"), key, CHASH_LEN);
    CHECK_MEM(key, CHASH_DATA_KEY, CHASH_LEN);
    vec_unhex(vec_str(vec_get(k, "INTERNAL_NODE_KEY"), "hex"), key, CHASH_LEN);
    CHECK_MEM(key, CHASH_NODE_KEY, CHASH_LEN);
    vec_unhex(vec_str(vec_get(k, "VERIFICATION_KEY"), "hex"), key, CHASH_LEN);
    CHECK_MEM(key, CHASH_VERIFY_KEY, CHASH_LEN);
    json_decref(v);
}

static void test_rendering(void)
{
    json_t *v = vec_load("hex_rendering.json");
    json_t *cases = vec_get(v, "cases");
    uint8_t raw[CHASH_LEN], back[CHASH_LEN];
    char plain[2 * CHASH_LEN + 1];
    size_t i;

    for (i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        vec_unhex(vec_str(c, "raw_bytes_hex"), raw, CHASH_LEN);
        check_xet(raw, vec_str(c, "xet_string"));
        xet(vec_str(c, "xet_string"), back);
        CHECK_MEM(raw, back, CHASH_LEN);
        chash_hex(raw, CHASH_LEN, plain);
        CHECK_STR(plain, vec_str(c, "raw_bytes_hex"));
    }
    /* The spec's example: raw 00 01 .. 1f. */
    for (i = 0; i < CHASH_LEN; i++)
        raw[i] = (uint8_t)i;
    check_xet(raw, "07060504030201000f0e0d0c0b0a0908"
                   "1716151413121110" "1f1e1d1c1b1a1918");
    /* Upper case parses; wrong lengths and characters do not. */
    CHECK_EQ(chash_from_xet("07060504030201000F0E0D0C0B0A09081716151413121110"
                            "1F1E1D1C1B1A1918", back), 0);
    CHECK_MEM(raw, back, CHASH_LEN);
    CHECK_EQ(chash_from_xet("07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a19",
                            back), SHOAL_EFORMAT);
    CHECK_EQ(chash_from_xet("0706050403020100 f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918",
                            back), SHOAL_EFORMAT);
    CHECK_EQ(chash_from_xet("07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a19180",
                            back), SHOAL_EFORMAT);
    CHECK_EQ(chash_from_xet("", back), SHOAL_EFORMAT);
    CHECK_MEM(raw, back, CHASH_LEN); /* untouched on failure */
    json_decref(v);
}

static struct chash_leaf *leaves_from_json(json_t *nodes, const char *hash_key,
                                           const char *size_key)
{
    size_t n = json_array_size(nodes), i;
    struct chash_leaf *l = check_malloc(n * sizeof(*l));

    for (i = 0; i < n; i++) {
        json_t *o = json_array_get(nodes, i);
        xet(vec_str(o, hash_key), l[i].hash);
        l[i].len = vec_u64(o, size_key);
    }
    return l;
}

static void test_merkle_reference(void)
{
    json_t *v = vec_load("merkle_reference.json");
    json_t *cases = vec_get(v, "cases");
    uint8_t root[CHASH_LEN], want[CHASH_LEN], salt[CHASH_LEN], fh[CHASH_LEN];
    size_t i, j, n, zero_salts = 0;

    CHECK_EQ(json_array_size(cases), 18);
    for (i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        json_t *nodes = vec_get(c, "nodes"), *fhs = vec_get(c, "file_hashes");
        struct chash_leaf *l = leaves_from_json(nodes, "hash", "size");

        n = json_array_size(nodes);
        CHECK_EQ(chash_merkle(l, n, root), 0);
        xet(vec_str(c, "xorb_hash"), want);
        CHECK_MEM(root, want, CHASH_LEN);
        for (j = 0; j < json_array_size(fhs); j++) {
            json_t *f = json_array_get(fhs, j);
            xet(vec_str(f, "salt"), salt);
            xet(vec_str(f, "file_hash"), want);
            if (n == 0) {
                memset(fh, 0, sizeof(fh));
            } else {
                b3_keyed(salt, root, CHASH_LEN, fh);
            }
            CHECK_MEM(fh, want, CHASH_LEN);
            if (memcmp(salt, (uint8_t[CHASH_LEN]){0}, CHASH_LEN) == 0) {
                chash_file_from_root(root, n, fh);
                CHECK_MEM(fh, want, CHASH_LEN);
                zero_salts++;
            }
        }
        /* The in-place form gives the same root and the piece hash is the zero-salt
         * file hash. */
        chash_merkle_inplace(l, n, fh);
        CHECK_MEM(fh, root, CHASH_LEN);
        free(l);
    }
    CHECK_EQ(zero_salts, 18);
    json_decref(v);
}

static void test_misc_hashes(void)
{
    json_t *v = vec_load("hashes_misc.json");
    json_t *ex = vec_get(v, "internal_node_text_example");
    json_t *hm = vec_get(v, "hmac"), *vh = vec_get(v, "verification_hash");
    json_t *hs = vec_get(vh, "chunk_hashes");
    const char *text = vec_str(ex, "text");
    uint8_t h[CHASH_LEN], key[CHASH_LEN], msg[CHASH_LEN], cat[4 * CHASH_LEN];
    size_t i;

    b3_keyed(CHASH_NODE_KEY, text, strlen(text), h);
    check_xet(h, vec_str(ex, "internal_node_hash"));

    xet(vec_str(hm, "key"), key);
    xet(vec_str(hm, "hash"), msg);
    b3_keyed(key, msg, CHASH_LEN, h);
    check_xet(h, vec_str(hm, "result"));

    CHECK(json_array_size(hs) <= 4);
    for (i = 0; i < json_array_size(hs); i++)
        xet(json_string_value(json_array_get(hs, i)), cat + i * CHASH_LEN);
    b3_keyed(CHASH_VERIFY_KEY, cat, i * CHASH_LEN, h);
    check_xet(h, vec_str(vh, "result"));
    json_decref(v);
}

/* Chunk hashes, merkle root and file hash of data whose boundaries are given. */
static void check_file(const uint8_t *data, json_t *bounds, json_t *hashes,
                       const char *xorb_hash, const char *file_hash)
{
    size_t n = json_array_size(bounds), i, start = 0;
    struct chash_leaf *l = check_malloc(n * sizeof(*l));
    uint8_t root[CHASH_LEN], fh[CHASH_LEN];

    CHECK_EQ(json_array_size(hashes), n);
    for (i = 0; i < n; i++) {
        size_t end = json_integer_value(json_array_get(bounds, i));
        chash_chunk(data + start, end - start, l[i].hash);
        check_xet(l[i].hash, json_string_value(json_array_get(hashes, i)));
        l[i].len = end - start;
        start = end;
    }
    CHECK_EQ(chash_merkle(l, n, root), 0);
    check_xet(root, xorb_hash);
    chash_file_from_root(root, n, fh);
    check_xet(fh, file_hash);
    chash_piece_inplace(l, n, fh);
    check_xet(fh, file_hash);
    free(l);
}

static void test_files(void)
{
    json_t *v = vec_load("small_files.json"), *cases = vec_get(v, "cases");
    json_t *m = vec_load("cdc_splitmix64.json"), *mc = vec_get(m, "cases");
    json_t *k = vec_load("cdc_constant.json");
    size_t i, n;
    uint8_t *d;

    for (i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        n = vec_u64(c, "len");
        d = smallfile_data(vec_str(c, "name"), n);
        check_file(d, vec_get(c, "chunk_boundaries"), vec_get(c, "chunk_hashes"),
                   vec_str(c, "xorb_hash"), vec_str(c, "file_hash"));
        free(d);
    }
    for (i = 0; i < json_array_size(mc); i++) {
        json_t *c = json_array_get(mc, i);
        if (!json_object_get(c, "file_hash"))
            continue;
        n = vec_u64(c, "n");
        d = check_malloc(n);
        check_fill_splitmix(d, n, vec_u64(c, "seed"));
        check_file(d, vec_get(c, "chunk_boundaries"), vec_get(c, "chunk_hashes"),
                   vec_str(c, "xorb_hash_all_chunks"), vec_str(c, "file_hash"));
        free(d);
    }
    json_t *a = vec_load("hashes_misc.json"), *ac = vec_get(vec_get(a, "make_data"), "cases");
    for (i = 0; i < json_array_size(ac); i++) {
        json_t *c = json_array_get(ac, i);
        size_t j, mul = vec_u64(c, "a"), add = vec_u64(c, "b");
        n = vec_u64(c, "size");
        d = check_malloc(n);
        for (j = 0; j < n; j++)
            d[j] = (uint8_t)(j * mul + add);
        check_file(d, vec_get(c, "chunk_boundaries"), vec_get(c, "chunk_hashes"),
                   vec_str(c, "xorb_hash"), vec_str(c, "file_hash"));
        free(d);
    }
    json_decref(a);
    n = 1000000;
    d = check_malloc(n);
    memset(d, 0x3b, n);
    check_file(d, vec_get(k, "chunk_boundaries"), vec_get(k, "chunk_hashes"),
               vec_str(k, "xorb_hash_all_chunks"), vec_str(k, "file_hash"));
    free(d);
    json_decref(v);
    json_decref(m);
    json_decref(k);
}

int main(void)
{
    RUN(test_keys);
    RUN(test_rendering);
    RUN(test_merkle_reference);
    RUN(test_misc_hashes);
    RUN(test_files);
    return check_done();
}
