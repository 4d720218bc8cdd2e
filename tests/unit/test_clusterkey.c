/* test_clusterkey.c - the cluster key: file encoding and every refusal, derived keys,
 * fingerprint (protocol/clusterkey.h), and loading it in the node (node/keyfile.h).
 *
 * The known answers were computed with the reference BLAKE3 tool, not with our code:
 *   key = bytes 0..31
 *   b3sum --derive-key "shoal 2026 cluster key fingerprint v1"  -> 933f77409a163423...
 *   b3sum --derive-key "shoal 2026 noise psk v1"                 -> f1723afe5d8d6698...
 *   b3sum --derive-key "shoal 2026 gossip v1"                    -> b358062c49988284...
 *   b3sum of "SHOALCK1" || key                                   -> 913f909c...
 */
#include "clusterkey.h"

#include "b3.h"
#include "err.h"
#include "identity.h"
#include "keyfile.h"

#include "check.h"
#include "vec.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char fp_want[] = "933f-7740-9a16-3423";
static const char psk_want[] = "f1723afe5d8d6698c6e9ac440eef3a56f06e05218aeb8c0718037e69abefee51";
static const char gossip_want[] =
    "b358062c4998828451c6a1f05b929e6f8bd1ab9095b5ee67fd15315b44571121";
static const uint8_t check_want[CLUSTERKEY_CHECK_LEN] = {0x91, 0x3f, 0x90, 0x9c};

static void counting_key(struct clusterkey *k)
{
    size_t i;

    for (i = 0; i < CLUSTERKEY_LEN; i++)
        k->key[i] = (uint8_t)i;
}

/* --- protocol/: encode, decode, derive, fingerprint -------------------------------- */

static void test_encode_layout(void)
{
    struct clusterkey k;
    uint8_t buf[CLUSTERKEY_FILE_LEN];

    CHECK_EQ(CLUSTERKEY_FILE_LEN, 44);
    counting_key(&k);
    clusterkey_encode(&k, buf);
    CHECK_MEM(buf, "SHOALCK1", 8);
    CHECK_MEM(buf + 8, k.key, CLUSTERKEY_LEN);
    CHECK_MEM(buf + 40, check_want, CLUSTERKEY_CHECK_LEN);
}

static void test_round_trip(void)
{
    struct clusterkey a, b, c;
    uint8_t buf[CLUSTERKEY_FILE_LEN];
    enum clusterkey_fault f = CLUSTERKEY_BAD_MAGIC;
    int i;

    for (i = 0; i < 16; i++) {
        CHECK_EQ(clusterkey_generate(&a), 0);
        clusterkey_encode(&a, buf);
        CHECK_EQ(clusterkey_decode(buf, sizeof(buf), &b, &f), 0);
        CHECK_EQ(f, CLUSTERKEY_OK);
        CHECK_MEM(a.key, b.key, CLUSTERKEY_LEN);
        CHECK_EQ(clusterkey_decode(buf, sizeof(buf), &b, NULL), 0); /* pfault optional */
    }
    /* Two generated keys differ. */
    CHECK_EQ(clusterkey_generate(&c), 0);
    CHECK(memcmp(a.key, c.key, CLUSTERKEY_LEN) != 0);
    clusterkey_clear(&a);
    for (i = 0; i < CLUSTERKEY_LEN; i++)
        CHECK_EQ(a.key[i], 0);
}

/* Expects buf to be refused with err and fault, and *out left as it was. */
static void expect_fault(const uint8_t *buf, size_t len, int err, enum clusterkey_fault want)
{
    struct clusterkey out;
    enum clusterkey_fault f = CLUSTERKEY_OK;
    uint8_t canary[CLUSTERKEY_LEN];

    memset(out.key, 0xa5, sizeof(out.key));
    memset(canary, 0xa5, sizeof(canary));
    CHECK_EQ(clusterkey_decode(buf, len, &out, &f), err);
    CHECK_EQ(f, want);
    CHECK_MEM(out.key, canary, CLUSTERKEY_LEN);
}

static void test_decode_errors(void)
{
    uint8_t good[CLUSTERKEY_FILE_LEN], bad[CLUSTERKEY_READ_MAX];
    struct clusterkey k;

    counting_key(&k);
    clusterkey_encode(&k, good);
    memset(bad, 0, sizeof(bad));

    /* Too short to say what it is, truncated, too long. */
    expect_fault(good, 0, SHOAL_EFORMAT, CLUSTERKEY_BAD_SIZE);
    expect_fault(good, CLUSTERKEY_MAGIC_LEN - 1, SHOAL_EFORMAT, CLUSTERKEY_BAD_SIZE);
    expect_fault(good, CLUSTERKEY_MAGIC_LEN, SHOAL_EFORMAT, CLUSTERKEY_BAD_SIZE);
    expect_fault(good, CLUSTERKEY_FILE_LEN - 1, SHOAL_EFORMAT, CLUSTERKEY_BAD_SIZE);
    memcpy(bad, good, sizeof(good));
    expect_fault(bad, CLUSTERKEY_FILE_LEN + 1, SHOAL_EFORMAT, CLUSTERKEY_BAD_SIZE);
    expect_fault(bad, sizeof(bad), SHOAL_EFORMAT, CLUSTERKEY_BAD_SIZE);

    /* Something else altogether, of the right size or not. */
    memcpy(bad, good, sizeof(good));
    bad[0] = 's';
    expect_fault(bad, CLUSTERKEY_FILE_LEN, SHOAL_EFORMAT, CLUSTERKEY_BAD_MAGIC);
    memcpy(bad, "-----BEGIN PRIVATE KEY-----\n", 28);
    expect_fault(bad, 100, SHOAL_EFORMAT, CLUSTERKEY_BAD_MAGIC);

    /* A node key file, whole (76 bytes) or cut to a cluster key's size. */
    CHECK_MEM(IDENTITY_MAGIC, "SHOALNK", 7); /* what clusterkey.c recognises */
    memset(bad, 7, sizeof(bad));
    memcpy(bad, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN);
    expect_fault(bad, IDENTITY_FILE_LEN, SHOAL_EFORMAT, CLUSTERKEY_NODE_KEY);
    expect_fault(bad, CLUSTERKEY_FILE_LEN, SHOAL_EFORMAT, CLUSTERKEY_NODE_KEY);

    /* Another version: named as such, whatever its size or check. */
    memcpy(bad, good, sizeof(good));
    bad[7] = '2';
    expect_fault(bad, CLUSTERKEY_FILE_LEN, SHOAL_EVERSION, CLUSTERKEY_BAD_VERSION);
    expect_fault(bad, 60, SHOAL_EVERSION, CLUSTERKEY_BAD_VERSION);
    bad[7] = 0;
    expect_fault(bad, CLUSTERKEY_FILE_LEN, SHOAL_EVERSION, CLUSTERKEY_BAD_VERSION);

    /* Damage: a bit of the key, of the check. */
    memcpy(bad, good, sizeof(good));
    bad[CLUSTERKEY_MAGIC_LEN + 17] ^= 0x20;
    expect_fault(bad, CLUSTERKEY_FILE_LEN, SHOAL_EHASH, CLUSTERKEY_BAD_CHECK);
    memcpy(bad, good, sizeof(good));
    bad[CLUSTERKEY_FILE_LEN - 1] ^= 0x01;
    expect_fault(bad, CLUSTERKEY_FILE_LEN, SHOAL_EHASH, CLUSTERKEY_BAD_CHECK);
}

static void test_fault_strings(void)
{
    static const enum clusterkey_fault all[] = {
        CLUSTERKEY_OK,       CLUSTERKEY_BAD_SIZE,    CLUSTERKEY_BAD_MAGIC,
        CLUSTERKEY_NODE_KEY, CLUSTERKEY_BAD_VERSION, CLUSTERKEY_BAD_CHECK,
    };
    size_t i, j, n = sizeof(all) / sizeof(all[0]);

    for (i = 0; i < n; i++) {
        CHECK(clusterkey_fault_str(all[i])[0] != '\0');
        for (j = 0; j < i; j++)
            CHECK(strcmp(clusterkey_fault_str(all[i]), clusterkey_fault_str(all[j])) != 0);
    }
    CHECK(strstr(clusterkey_fault_str(CLUSTERKEY_NODE_KEY), "node key") != NULL);
}

static void test_derive(void)
{
    static const char *const ctxs[] = {
        CLUSTERKEY_CTX_NOISE_PSK,
        CLUSTERKEY_CTX_GOSSIP,
        CLUSTERKEY_CTX_FINGERPRINT,
    };
    struct clusterkey k, k2;
    uint8_t d[3][32], again[32], want[32];
    struct b3_hasher h;
    size_t i, j;

    counting_key(&k);
    for (i = 0; i < 3; i++) {
        clusterkey_derive(&k, ctxs[i], d[i]);
        clusterkey_derive(&k, ctxs[i], again);
        CHECK_MEM(d[i], again, 32); /* deterministic */
        b3_init_derive_key(&h, ctxs[i]);
        b3_update(&h, k.key, CLUSTERKEY_LEN);
        b3_final(&h, want, 32);
        CHECK_MEM(d[i], want, 32); /* BLAKE3 derive_key, nothing more */
        CHECK(memcmp(d[i], k.key, 32) != 0);
        for (j = 0; j < i; j++)
            CHECK(memcmp(d[i], d[j], 32) != 0); /* separated by context */
    }
    vec_unhex(psk_want, want, 32);
    CHECK_MEM(d[0], want, 32);
    vec_unhex(gossip_want, want, 32);
    CHECK_MEM(d[1], want, 32);

    /* Another key, another value under every context. */
    k2 = k;
    k2.key[31] ^= 1;
    for (i = 0; i < 3; i++) {
        clusterkey_derive(&k2, ctxs[i], again);
        CHECK(memcmp(d[i], again, 32) != 0);
    }
}

static void test_fingerprint(void)
{
    struct clusterkey k;
    char fp[CLUSTERKEY_FP_LEN + 1], fp2[CLUSTERKEY_FP_LEN + 1];
    uint8_t d[32];
    size_t i;

    counting_key(&k);
    clusterkey_fingerprint(&k, fp);
    CHECK_STR(fp, fp_want);
    CHECK_EQ(strlen(fp), CLUSTERKEY_FP_LEN);
    /* It is the fingerprint context's value, and shares nothing with the key or the
     * other derived keys' first bytes. */
    clusterkey_derive(&k, CLUSTERKEY_CTX_FINGERPRINT, d);
    CHECK_EQ(d[0], 0x93);
    CHECK_EQ(d[7], 0x23);

    for (i = 0; i < 8; i++) {
        CHECK_EQ(clusterkey_generate(&k), 0);
        clusterkey_fingerprint(&k, fp);
        clusterkey_fingerprint(&k, fp2);
        CHECK_STR(fp, fp2);
        CHECK(strcmp(fp, fp_want) != 0);
        CHECK(fp[4] == '-' && fp[9] == '-' && fp[14] == '-');
    }
}

/* --- node/keyfile.c: loading and making the node's cluster key --------------------- */

static char dir[4096], def_path[4200], other_path[4200];
static char why[1024];

static void make_dir(void)
{
    const char *t = getenv("TMPDIR");

    snprintf(dir, sizeof(dir), "%s/test_clusterkey.XXXXXX", t && *t ? t : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(def_path, sizeof(def_path), "%s/%s", dir, KEYFILE_CLUSTER);
    snprintf(other_path, sizeof(other_path), "%s/other.key", dir);
}

static void remove_dir(void)
{
    unlink(def_path);
    unlink(other_path);
    CHECK_EQ(rmdir(dir), 0);
}

static void write_file(const char *path, const uint8_t *buf, size_t len, mode_t mode)
{
    int fd;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, buf, len), (long long)len);
    CHECK_EQ(fchmod(fd, mode), 0);
    CHECK_EQ(close(fd), 0);
}

static void test_default_created_once(void)
{
    struct clusterkey a, b;
    struct stat st;
    bool created = false;

    make_dir();
    CHECK_EQ(keyfile_cluster_open(dir, def_path, &a, &created, why, sizeof(why)), 0);
    CHECK(created);
    CHECK_EQ(stat(def_path, &st), 0);
    CHECK_EQ(st.st_mode & 07777, 0600);
    CHECK_EQ(st.st_size, CLUSTERKEY_FILE_LEN);
    CHECK_EQ(keyfile_cluster_open(dir, def_path, &b, &created, why, sizeof(why)), 0);
    CHECK(!created);
    CHECK_MEM(a.key, b.key, CLUSTERKEY_LEN);
    /* The same key read as an explicit path. */
    memset(&b, 0, sizeof(b));
    CHECK_EQ(keyfile_cluster_load(def_path, 0, &b, why, sizeof(why)), 0);
    CHECK_MEM(a.key, b.key, CLUSTERKEY_LEN);
    clusterkey_clear(&a);
    clusterkey_clear(&b);
    remove_dir();
}

/* Expects `path` refused by keyfile_cluster_open with err and a message holding `part`
 * and the path; the file (if any) is left as it was. */
static void expect_open_refused(const char *path, int err, const char *part)
{
    struct clusterkey k;
    struct stat before, after;
    bool created = false, existed = lstat(path, &before) == 0;

    why[0] = '\0';
    CHECK_EQ(keyfile_cluster_open(dir, path, &k, &created, why, sizeof(why)), err);
    if (!strstr(why, part) || !strstr(why, path))
        check__fail(__FILE__, __LINE__, "\"%s\" and the path not in \"%s\"", part, why);
    fprintf(stderr, "   refused: %s\n", why);
    CHECK(!created);
    if (!existed) {
        CHECK(lstat(path, &after) != 0); /* nothing made at a path the operator typed */
        return;
    }
    CHECK_EQ(lstat(path, &after), 0);
    CHECK_EQ(after.st_mode, before.st_mode);
    CHECK_EQ(after.st_size, before.st_size);
    CHECK_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
}

static void test_refusals(void)
{
    uint8_t good[CLUSTERKEY_FILE_LEN], bad[IDENTITY_FILE_LEN];
    char link_path[4300];
    struct clusterkey k, got;
    bool created;

    make_dir();
    CHECK_EQ(clusterkey_generate(&k), 0);
    clusterkey_encode(&k, good);

    /* An explicit path that does not exist: an error, nothing created. */
    expect_open_refused(other_path, -ENOENT, "shoal keygen");

    write_file(other_path, good, sizeof(good), 0644);
    expect_open_refused(other_path, -EACCES, "chmod 600");
    write_file(other_path, good, sizeof(good), 0640);
    expect_open_refused(other_path, -EACCES, "mode 0640");

    write_file(other_path, good, 20, 0600);
    expect_open_refused(other_path, SHOAL_EFORMAT, "truncated");
    write_file(def_path, good, 20, 0600); /* the default is not replaced either */
    expect_open_refused(def_path, SHOAL_EFORMAT, "truncated");
    unlink(def_path);

    memset(bad, 1, sizeof(bad));
    memcpy(bad, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN);
    write_file(other_path, bad, sizeof(bad), 0600);
    expect_open_refused(other_path, SHOAL_EFORMAT, "node key file");

    memcpy(bad, good, sizeof(good));
    bad[0] = 'X';
    write_file(other_path, bad, sizeof(good), 0600);
    expect_open_refused(other_path, SHOAL_EFORMAT, "not a Shoal cluster key");

    memcpy(bad, good, sizeof(good));
    bad[7] = '9';
    write_file(other_path, bad, sizeof(good), 0600);
    expect_open_refused(other_path, SHOAL_EVERSION, "version '9'");

    memcpy(bad, good, sizeof(good));
    bad[12] ^= 4;
    write_file(other_path, bad, sizeof(good), 0600);
    expect_open_refused(other_path, SHOAL_EHASH, "damaged");

    /* Not a regular file: a directory, a FIFO (which must not hang the start). */
    unlink(other_path);
    CHECK_EQ(mkdir(other_path, 0700), 0);
    expect_open_refused(other_path, SHOAL_EFORMAT, "not a regular file");
    CHECK_EQ(rmdir(other_path), 0);
    CHECK_EQ(mkfifo(other_path, 0600), 0);
    expect_open_refused(other_path, SHOAL_EFORMAT, "not a regular file");
    unlink(other_path);

    /* The default path is the node's own: a symbolic link there is refused, not
     * followed or replaced. An explicit path may be a link (a mounted secret). */
    CHECK_EQ(symlink("other.key", def_path), 0);
    expect_open_refused(def_path, -ELOOP, "symbolic link");
    unlink(def_path);
    write_file(other_path, good, sizeof(good), 0600);
    snprintf(link_path, sizeof(link_path), "%s/link.key", dir);
    CHECK_EQ(symlink("other.key", link_path), 0);
    CHECK_EQ(keyfile_cluster_open(dir, link_path, &got, &created, why, sizeof(why)), 0);
    CHECK(!created);
    CHECK_MEM(got.key, k.key, CLUSTERKEY_LEN);
    clusterkey_clear(&got);
    unlink(link_path);
    clusterkey_clear(&k);
    sodium_memzero(good, sizeof(good));
    sodium_memzero(bad, sizeof(bad));
    remove_dir();
}

/* A temp file left by a crash while creating the default is cleared away. */
static void test_stale_tmp(void)
{
    char tmp[4300];
    struct clusterkey k;
    bool created = false;

    make_dir();
    snprintf(tmp, sizeof(tmp), "%s.tmp", def_path);
    write_file(tmp, (const uint8_t *)"partial", 7, 0600);
    CHECK_EQ(keyfile_cluster_open(dir, def_path, &k, &created, why, sizeof(why)), 0);
    CHECK(created);
    CHECK(access(tmp, F_OK) != 0);
    clusterkey_clear(&k);
    remove_dir();
}

int main(void)
{
    RUN(test_encode_layout);
    RUN(test_round_trip);
    RUN(test_decode_errors);
    RUN(test_fault_strings);
    RUN(test_derive);
    RUN(test_fingerprint);
    RUN(test_default_created_once);
    RUN(test_refusals);
    RUN(test_stale_tmp);
    return check_done();
}
