/* chash.c - chunk, merkle and piece hashes; Xet hash rendering. */
#include "chash.h"

#include "b3.h"
#include "err.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Key bytes from xet-core merklehash/data_hash.rs (tests/vectors/keys.json). */
const uint8_t CHASH_DATA_KEY[CHASH_LEN] = {
    102, 151, 245, 119, 91,  149, 80,  222, 49,  53,  203, 172, 165, 151, 24,  28,
    157, 228, 33,  16,  155, 235, 43,  88,  180, 208, 176, 75,  147, 173, 242, 41,
};
const uint8_t CHASH_NODE_KEY[CHASH_LEN] = {
    1,  126, 197, 199, 165, 71, 41,  150, 253, 148, 102, 102, 180, 138, 2,   230,
    93, 221, 83,  111, 55,  199, 109, 210, 248, 99,  82,  230, 74,  83,  113, 63,
};
const uint8_t CHASH_VERIFY_KEY[CHASH_LEN] = {
    127, 24,  87,  214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243,
    164, 205, 38,  213, 181, 219, 73,  230, 65, 36,  152, 127, 40, 251, 148, 195,
};

/* Xet's merkle tree has at most 9 children per node (hub-protocol.md 3.4). */
#define MERKLE_MAX_CHILDREN 9
/* One line of node text: 64 hex digits, " : ", a decimal u64 (<= 20 digits), "\n". */
#define MERKLE_LINE_MAX (CHASH_XET_LEN + 3 + 20 + 1)

void chash_chunk(const void *data, size_t len, uint8_t out[static CHASH_LEN])
{
    b3_keyed(CHASH_DATA_KEY, data, len, out);
}

static const char hexdig[] = "0123456789abcdef";

void chash_to_xet(const uint8_t h[static CHASH_LEN], char out[static CHASH_XET_LEN + 1])
{
    int w, b;
    char *p = out;

    /* Xet prints the hash as four little-endian u64 words: each 8-byte group reversed. */
    for (w = 0; w < 4; w++) {
        for (b = 7; b >= 0; b--) {
            uint8_t x = h[w * 8 + b];
            *p++ = hexdig[x >> 4];
            *p++ = hexdig[x & 15];
        }
    }
    *p = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int chash_unhex(const char *s, uint8_t *out, size_t n)
{
    size_t i;

    for (i = 0; i < 2 * n; i++) {
        if (hexval(s[i]) < 0)
            return SHOAL_EFORMAT;
    }
    if (s[2 * n] != '\0')
        return SHOAL_EFORMAT;
    for (i = 0; i < n; i++)
        out[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
    return 0;
}

int chash_from_xet(const char *s, uint8_t out[static CHASH_LEN])
{
    uint8_t raw[CHASH_LEN];
    int w, b, err;

    err = chash_unhex(s, raw, CHASH_LEN);
    if (err < 0)
        return err;
    for (w = 0; w < 4; w++) {
        for (b = 0; b < 8; b++)
            out[w * 8 + b] = raw[w * 8 + 7 - b];
    }
    return 0;
}

void chash_hex(const uint8_t *in, size_t n, char *out)
{
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hexdig[in[i] >> 4];
        out[2 * i + 1] = hexdig[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* How many of the n nodes starting at `rest` form the next parent: the first node at
 * index >= 2 whose hash's last word is 0 mod 4 closes the group, at most 9 nodes. */
static size_t merkle_cut(const struct chash_leaf *rest, size_t n)
{
    size_t j, end;

    if (n <= 2)
        return n;
    end = n < MERKLE_MAX_CHILDREN ? n : MERKLE_MAX_CHILDREN;
    for (j = 2; j < end; j++) {
        /* u64 little-endian of bytes 24..31, mod 4, is the low two bits of byte 24. */
        if ((rest[j].hash[24] & 3) == 0)
            return j + 1;
    }
    return end;
}

static void merkle_merge(const struct chash_leaf *nodes, size_t n, struct chash_leaf *out)
{
    char text[MERKLE_MAX_CHILDREN * MERKLE_LINE_MAX + 1];
    size_t i, off = 0;
    uint64_t total = 0;

    for (i = 0; i < n; i++) {
        chash_to_xet(nodes[i].hash, text + off);
        off += CHASH_XET_LEN;
        off += (size_t)snprintf(text + off, sizeof(text) - off, " : %" PRIu64 "\n",
                                nodes[i].len);
        total += nodes[i].len;
    }
    b3_keyed(CHASH_NODE_KEY, text, off, out->hash);
    out->len = total;
}

void chash_merkle_inplace(struct chash_leaf *nodes, size_t n, uint8_t out[static CHASH_LEN])
{
    size_t i, k, next;
    struct chash_leaf parent;

    if (n == 0) {
        memset(out, 0, CHASH_LEN);
        return;
    }
    /* Each group has at least one node, so parent k is written at index k <= i, after
     * its children at i.. were read: the next level fits in place. */
    while (n > 1) {
        next = 0;
        for (i = 0; i < n; i += k) {
            k = merkle_cut(nodes + i, n - i);
            merkle_merge(nodes + i, k, &parent);
            nodes[next++] = parent;
        }
        n = next;
    }
    memcpy(out, nodes[0].hash, CHASH_LEN);
}

int chash_merkle(const struct chash_leaf *leaves, size_t n, uint8_t out[static CHASH_LEN])
{
    struct chash_leaf *tmp;

    if (n == 0) {
        memset(out, 0, CHASH_LEN);
        return 0;
    }
    tmp = malloc(n * sizeof(*tmp));
    if (!tmp)
        return -ENOMEM;
    memcpy(tmp, leaves, n * sizeof(*tmp));
    chash_merkle_inplace(tmp, n, out);
    free(tmp);
    return 0;
}

void chash_file_from_root(const uint8_t root[static CHASH_LEN], size_t n_chunks,
                          uint8_t out[static CHASH_LEN])
{
    static const uint8_t zero_salt[CHASH_LEN];

    if (n_chunks == 0) {
        memset(out, 0, CHASH_LEN);
        return;
    }
    b3_keyed(zero_salt, root, CHASH_LEN, out);
}

void chash_piece_inplace(struct chash_leaf *leaves, size_t n, uint8_t out[static CHASH_LEN])
{
    uint8_t root[CHASH_LEN];

    chash_merkle_inplace(leaves, n, root);
    chash_file_from_root(root, n, out);
}
