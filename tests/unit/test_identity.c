/* test_identity.c - the node key file: create, load, node id, and every refusal. */
#include "identity.h"

#include "b3.h"
#include "err.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[4096];
static char key_path[4200];
static char why[1024];

static void make_dir(void)
{
    const char *t = getenv("TMPDIR");

    snprintf(dir, sizeof(dir), "%s/test_identity.XXXXXX", t && *t ? t : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(key_path, sizeof(key_path), "%s/%s", dir, IDENTITY_FILE);
}

static void remove_dir(void)
{
    char tmp[4300];

    unlink(key_path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", key_path);
    unlink(tmp);
    CHECK_EQ(rmdir(dir), 0);
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;

    CHECK(fd >= 0);
    n = read(fd, buf, cap);
    CHECK(n >= 0);
    close(fd);
    return (size_t)n;
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

static void check_id_chars(const char *nid)
{
    size_t i;

    CHECK_EQ(strlen(nid), IDENTITY_ID_LEN);
    for (i = 0; i < IDENTITY_ID_LEN; i++)
        CHECK((nid[i] >= 'a' && nid[i] <= 'z') || (nid[i] >= '2' && nid[i] <= '7'));
}

static void test_create_then_load(void)
{
    struct identity a, b, c;
    char ida[IDENTITY_ID_LEN + 1], idb[IDENTITY_ID_LEN + 1];
    uint8_t buf[IDENTITY_FILE_LEN + 8];
    struct stat st;
    bool created = false;

    make_dir();
    CHECK_EQ(identity_load_or_create(dir, &a, &created, why, sizeof(why)), 0);
    CHECK(created);
    CHECK_EQ(stat(key_path, &st), 0);
    CHECK_EQ(st.st_mode & 07777, 0600);
    CHECK_EQ(read_file(key_path, buf, sizeof(buf)), IDENTITY_FILE_LEN);
    CHECK_MEM(buf, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN);
    CHECK_MEM(buf + IDENTITY_MAGIC_LEN, a.secret, IDENTITY_KEY_LEN);
    CHECK_MEM(buf + IDENTITY_MAGIC_LEN + IDENTITY_KEY_LEN, a.public, IDENTITY_KEY_LEN);

    CHECK_EQ(identity_load_or_create(dir, &b, &created, why, sizeof(why)), 0);
    CHECK(!created);
    CHECK_MEM(a.secret, b.secret, IDENTITY_KEY_LEN);
    CHECK_MEM(a.public, b.public, IDENTITY_KEY_LEN);
    CHECK_EQ(identity_create(key_path, &c, why, sizeof(why)), -EEXIST);

    identity_node_id(&a, ida);
    identity_node_id(&b, idb);
    check_id_chars(ida);
    CHECK_STR(ida, idb);
    identity_clear(&a);
    identity_clear(&b);
    remove_dir();
}

/* The node id is base32 of BLAKE3(public key)[0..10): check against a hand encoding. */
static void test_node_id(void)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    struct identity a;
    uint8_t h[B3_OUT_LEN];
    char nid[IDENTITY_ID_LEN + 1], want[IDENTITY_ID_LEN + 1];
    size_t i;

    memset(&a, 0, sizeof(a));
    for (i = 0; i < IDENTITY_KEY_LEN; i++)
        a.public[i] = (uint8_t)i;
    b3_hash(a.public, IDENTITY_KEY_LEN, h);
    for (i = 0; i < IDENTITY_ID_LEN; i++) {
        size_t bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)h[byte] << 8 | (byte + 1 < 10 ? h[byte + 1] : 0);

        want[i] = alphabet[(v >> (11 - shift)) & 31];
    }
    want[IDENTITY_ID_LEN] = '\0';
    identity_node_id(&a, nid);
    check_id_chars(nid);
    CHECK_STR(nid, want);
}

/* Writes `bad` (len bytes, mode) as the key file and expects refusal with `err` and a
 * message holding `part` and the file's path; the file must be left as it was. */
static void expect_refused(const uint8_t *bad, size_t len, mode_t mode, int err,
                           const char *part)
{
    uint8_t after[IDENTITY_FILE_LEN + 8];
    struct identity id;
    struct stat st;
    bool created = false;

    write_file(key_path, bad, len, mode);
    why[0] = '\0';
    CHECK_EQ(identity_load_or_create(dir, &id, &created, why, sizeof(why)), err);
    if (!strstr(why, part) || !strstr(why, key_path))
        check__fail(__FILE__, __LINE__, "\"%s\" and the path not in \"%s\"", part, why);
    fprintf(stderr, "   refused: %s\n", why);
    CHECK_EQ(read_file(key_path, after, sizeof(after)), (long long)len);
    CHECK_MEM(after, bad, len);
    CHECK_EQ(stat(key_path, &st), 0);
    CHECK_EQ(st.st_mode & 07777, mode);
}

static void test_refusals(void)
{
    uint8_t good[IDENTITY_FILE_LEN], bad[IDENTITY_FILE_LEN + 1];
    struct identity id;
    bool created;

    make_dir();
    CHECK_EQ(identity_load_or_create(dir, &id, &created, why, sizeof(why)), 0);
    identity_clear(&id);
    CHECK_EQ(read_file(key_path, good, sizeof(good)), IDENTITY_FILE_LEN);

    expect_refused(good, IDENTITY_FILE_LEN - 1, 0600, SHOAL_EFORMAT, "truncated");
    expect_refused(good, 0, 0600, SHOAL_EFORMAT, "truncated");
    memcpy(bad, good, IDENTITY_FILE_LEN);
    bad[IDENTITY_FILE_LEN] = 0;
    expect_refused(bad, IDENTITY_FILE_LEN + 1, 0600, SHOAL_EFORMAT, "too long");

    memcpy(bad, good, IDENTITY_FILE_LEN);
    bad[0] = 'X';
    expect_refused(bad, IDENTITY_FILE_LEN, 0600, SHOAL_EFORMAT, "bad magic");

    memcpy(bad, good, IDENTITY_FILE_LEN);
    bad[IDENTITY_FILE_LEN - 1] ^= 0x10;
    expect_refused(bad, IDENTITY_FILE_LEN, 0600, SHOAL_EFORMAT, "bad checksum");

    memcpy(bad, good, IDENTITY_FILE_LEN);
    bad[IDENTITY_MAGIC_LEN + 3] ^= 0x01; /* a secret-key bit */
    expect_refused(bad, IDENTITY_FILE_LEN, 0600, SHOAL_EFORMAT, "bad checksum");

    /* A flipped public-key bit with a recomputed checksum: the pair does not match. */
    memcpy(bad, good, IDENTITY_FILE_LEN);
    bad[IDENTITY_MAGIC_LEN + IDENTITY_KEY_LEN + 5] ^= 0x04;
    {
        uint8_t h[B3_OUT_LEN];

        b3_hash(bad, IDENTITY_FILE_LEN - IDENTITY_CHECK_LEN, h);
        memcpy(bad + IDENTITY_FILE_LEN - IDENTITY_CHECK_LEN, h, IDENTITY_CHECK_LEN);
    }
    expect_refused(bad, IDENTITY_FILE_LEN, 0600, SHOAL_EFORMAT, "does not match");

    expect_refused(good, IDENTITY_FILE_LEN, 0644, -EACCES, "mode 0644");
    expect_refused(good, IDENTITY_FILE_LEN, 0640, -EACCES, "mode 0640");

    /* Back to the good file with its mode: loads again. */
    write_file(key_path, good, IDENTITY_FILE_LEN, 0600);
    CHECK_EQ(identity_load_or_create(dir, &id, &created, why, sizeof(why)), 0);
    CHECK(!created);
    identity_clear(&id);
    sodium_memzero(good, sizeof(good));
    sodium_memzero(bad, sizeof(bad));
    remove_dir();
}

/* A symlink in place of the key is not followed. */
static void test_symlink(void)
{
    struct identity id;
    bool created;

    make_dir();
    CHECK_EQ(symlink("/nonexistent-target", key_path), 0);
    CHECK(identity_load_or_create(dir, &id, &created, why, sizeof(why)) < 0);
    CHECK(strstr(why, key_path) != NULL);
    remove_dir();
}

int main(void)
{
    RUN(test_create_then_load);
    RUN(test_node_id);
    RUN(test_refusals);
    RUN(test_symlink);
    return check_done();
}
