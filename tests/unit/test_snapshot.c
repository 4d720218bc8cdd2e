/* test_snapshot.c - snapshots: the name validators, building, lookup, and the version 1
 * codec with its bounded, validating decoder. */
#include "snapshot.h"

#include "check.h"
#include "err.h"
#include "mpcheck.h"
#include "proto_limits.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <msgpack.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define COMMIT_A "0123456789abcdef0123456789abcdef01234567"
#define ETAG_40  "fedcba9876543210fedcba9876543210fedcba98"
#define ETAG_64  "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* A heap copy of exactly len bytes, so that ASan reports any read past the input. */
static uint8_t *exact_copy(const void *buf, size_t len)
{
    uint8_t *p = check_malloc(len);

    if (len > 0)
        memcpy(p, buf, len);
    return p;
}

/* A heap copy of a C string, so that a validator reading past the NUL is caught. */
static char *exact_str(const char *s)
{
    return (char *)exact_copy(s, strlen(s) + 1);
}

/* s with its unprintable bytes escaped, cut after 60 bytes: for failure messages. */
static const char *shown(const char *s, char *buf, size_t cap)
{
    size_t i, o = 0, n = strlen(s);

    for (i = 0; i < n && i < 60 && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf[o++] = (char)c;
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        }
    }
    if (i < n) {
        snprintf(buf + o, cap - o, "...(%zu bytes)", n);
    } else {
        buf[o] = '\0';
    }
    return buf;
}

/* A string of n copies of c (caller frees). */
static char *repeat(char c, size_t n)
{
    char *p = check_malloc(n + 1);

    memset(p, c, n);
    p[n] = '\0';
    return p;
}

/* Concatenation of up to four strings (caller frees). */
static char *join(const char *a, const char *b, const char *c, const char *d)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d);
    char *p = check_malloc(n + 1);

    snprintf(p, n + 1, "%s%s%s%s", a, b, c, d);
    return p;
}

static void flip(uint8_t *p, size_t bit)
{
    p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
}

/* ---- Test encodings, built by hand: right, or wrong in one way each. */

enum mutation {
    MUT_NONE,
    MUT_ROOT_MAP,
    MUT_ROOT_EMPTY,
    MUT_ROOT_NIL,
    MUT_ROOT_SHORT,
    MUT_ROOT_LONG,
    MUT_VERSION_STR,
    MUT_VERSION_NEG,
    MUT_VERSION_NIL,
    MUT_VERSION_FLOAT,
    MUT_REPO_BIN,
    MUT_REPO_INT,
    MUT_REPO_NIL,
    MUT_REPO_ARRAY,
    MUT_REPO_NUL,
    MUT_COMMIT_BIN,
    MUT_COMMIT_INT,
    MUT_COMMIT_NIL,
    MUT_COMMIT_NUL,
    MUT_FILES_MAP,
    MUT_FILES_NIL,
    MUT_FILES_STR,
    MUT_FILES_BIN,
    MUT_FILE_NIL,
    MUT_FILE_MAP,
    MUT_FILE_EMPTY,
    MUT_FILE_SHORT,
    MUT_FILE_LONG,
    MUT_FILE_STR,
    MUT_PATH_BIN,
    MUT_PATH_INT,
    MUT_PATH_NIL,
    MUT_PATH_NUL,
    MUT_PATH_NUL_END,
    MUT_SIZE_NEG,
    MUT_SIZE_STR,
    MUT_SIZE_FLOAT,
    MUT_SIZE_NIL,
    MUT_SIZE_BOOL,
    MUT_SHA_STR,
    MUT_SHA_SHORT,
    MUT_SHA_LONG,
    MUT_SHA_NIL,
    MUT_SHA_ARRAY,
    MUT_ETAG_BIN,
    MUT_ETAG_INT,
    MUT_ETAG_NIL,
    MUT_ETAG_NUL,
    MUT_TRAILING,
    MUT_END
};

struct tfile {
    const char *path;
    uint64_t size;
    uint8_t fill; /* every byte of the sha256 */
    const char *etag;
};

struct tsnap {
    uint64_t version;
    const char *repo;
    const char *commit;
    uint32_t n;
    struct tfile files[4];
    enum mutation mut; /* file mutations hit the last file */
};

/* The snapshot of test_vector: two files, one git blob and one LFS file. */
static struct tsnap base_spec(void)
{
    struct tsnap t = {
        .version = 1,
        .repo = "model/o/m",
        .commit = COMMIT_A,
        .n = 2,
        .files = {{"a.txt", 5, 0x11, ETAG_40}, {"b/c.bin", 70000, 0x22, ETAG_64}},
    };

    return t;
}

static void pack_raw_str(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, p, n);
}

static void pack_raw_bin(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    pack_raw_str(pk, s, strlen(s));
}

/* s with a NUL byte in place of its last character: the same length, so only the NUL
 * can make it fail. */
static void pack_nul_last(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);

    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n - 1);
    msgpack_pack_str_body(pk, "", 1);
}

static void pack_tfile(msgpack_packer *pk, const struct tfile *f, enum mutation mut)
{
    uint8_t sha[33];
    size_t n = strlen(f->path);
    int fields = mut == MUT_FILE_SHORT ? 3 : mut == MUT_FILE_LONG ? 5 : 4;

    memset(sha, f->fill, sizeof(sha));
    switch (mut) {
    case MUT_FILE_NIL:
        msgpack_pack_nil(pk);
        return;
    case MUT_FILE_MAP:
        msgpack_pack_map(pk, 1);
        pack_cstr(pk, "path");
        pack_cstr(pk, f->path);
        return;
    case MUT_FILE_EMPTY:
        msgpack_pack_array(pk, 0);
        return;
    case MUT_FILE_STR:
        pack_cstr(pk, f->path);
        return;
    default:
        break;
    }
    msgpack_pack_array(pk, fields);

    if (mut == MUT_PATH_BIN) {
        pack_raw_bin(pk, f->path, n);
    } else if (mut == MUT_PATH_INT) {
        msgpack_pack_uint32(pk, 7);
    } else if (mut == MUT_PATH_NIL) {
        msgpack_pack_nil(pk);
    } else if (mut == MUT_PATH_NUL) {
        /* A C string copy would stop at the NUL and see an acceptable path. */
        msgpack_pack_str(pk, n + 2);
        msgpack_pack_str_body(pk, f->path, n);
        msgpack_pack_str_body(pk, "\0x", 2);
    } else if (mut == MUT_PATH_NUL_END) {
        msgpack_pack_str(pk, n + 1);
        msgpack_pack_str_body(pk, f->path, n);
        msgpack_pack_str_body(pk, "", 1);
    } else {
        pack_raw_str(pk, f->path, n);
    }

    if (mut == MUT_SIZE_NEG) {
        msgpack_pack_int64(pk, -(int64_t)f->size - 1);
    } else if (mut == MUT_SIZE_STR) {
        pack_cstr(pk, "5");
    } else if (mut == MUT_SIZE_FLOAT) {
        msgpack_pack_double(pk, (double)f->size);
    } else if (mut == MUT_SIZE_NIL) {
        msgpack_pack_nil(pk);
    } else if (mut == MUT_SIZE_BOOL) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_uint64(pk, f->size);
    }

    if (mut == MUT_SHA_STR) {
        pack_raw_str(pk, sha, 32);
    } else if (mut == MUT_SHA_SHORT) {
        pack_raw_bin(pk, sha, 31);
    } else if (mut == MUT_SHA_LONG) {
        pack_raw_bin(pk, sha, 33);
    } else if (mut == MUT_SHA_NIL) {
        msgpack_pack_nil(pk);
    } else if (mut == MUT_SHA_ARRAY) {
        msgpack_pack_array(pk, 1);
        pack_raw_bin(pk, sha, 32);
    } else {
        pack_raw_bin(pk, sha, 32);
    }
    if (fields == 3)
        return;

    if (mut == MUT_ETAG_BIN) {
        pack_raw_bin(pk, f->etag, strlen(f->etag));
    } else if (mut == MUT_ETAG_INT) {
        msgpack_pack_uint32(pk, 40);
    } else if (mut == MUT_ETAG_NIL) {
        msgpack_pack_nil(pk);
    } else if (mut == MUT_ETAG_NUL) {
        pack_nul_last(pk, f->etag);
    } else {
        pack_cstr(pk, f->etag);
    }
    if (fields == 5)
        msgpack_pack_nil(pk);
}

/* Packs t; *out is exactly *len bytes of heap (caller frees). */
static void pack_tsnap(const struct tsnap *t, uint8_t **out, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t i;
    int fields = t->mut == MUT_ROOT_SHORT ? 3 : t->mut == MUT_ROOT_LONG ? 5 : 4;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (t->mut == MUT_ROOT_MAP) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_uint64(&pk, t->version);
        pack_cstr(&pk, t->repo);
        goto done;
    }
    if (t->mut == MUT_ROOT_EMPTY) {
        msgpack_pack_array(&pk, 0);
        goto done;
    }
    if (t->mut == MUT_ROOT_NIL) {
        msgpack_pack_nil(&pk);
        goto done;
    }
    msgpack_pack_array(&pk, fields);

    if (t->mut == MUT_VERSION_STR) {
        pack_cstr(&pk, "1");
    } else if (t->mut == MUT_VERSION_NEG) {
        msgpack_pack_int64(&pk, -1);
    } else if (t->mut == MUT_VERSION_NIL) {
        msgpack_pack_nil(&pk);
    } else if (t->mut == MUT_VERSION_FLOAT) {
        msgpack_pack_double(&pk, 1.0);
    } else {
        msgpack_pack_uint64(&pk, t->version);
    }

    if (t->mut == MUT_REPO_BIN) {
        pack_raw_bin(&pk, t->repo, strlen(t->repo));
    } else if (t->mut == MUT_REPO_INT) {
        msgpack_pack_uint32(&pk, 1);
    } else if (t->mut == MUT_REPO_NIL) {
        msgpack_pack_nil(&pk);
    } else if (t->mut == MUT_REPO_ARRAY) {
        msgpack_pack_array(&pk, 1);
        pack_cstr(&pk, t->repo);
    } else if (t->mut == MUT_REPO_NUL) {
        pack_nul_last(&pk, t->repo);
    } else {
        pack_cstr(&pk, t->repo);
    }

    if (t->mut == MUT_COMMIT_BIN) {
        pack_raw_bin(&pk, t->commit, strlen(t->commit));
    } else if (t->mut == MUT_COMMIT_INT) {
        msgpack_pack_uint64(&pk, 0x0123456789abcdefull);
    } else if (t->mut == MUT_COMMIT_NIL) {
        msgpack_pack_nil(&pk);
    } else if (t->mut == MUT_COMMIT_NUL) {
        pack_nul_last(&pk, t->commit);
    } else {
        pack_cstr(&pk, t->commit);
    }
    if (fields == 3)
        goto done;

    if (t->mut == MUT_FILES_MAP) {
        msgpack_pack_map(&pk, 0);
    } else if (t->mut == MUT_FILES_NIL) {
        msgpack_pack_nil(&pk);
    } else if (t->mut == MUT_FILES_STR) {
        pack_cstr(&pk, "a.txt");
    } else if (t->mut == MUT_FILES_BIN) {
        pack_raw_bin(&pk, "\x94\x01\x02\x03", 4);
    } else {
        msgpack_pack_array(&pk, t->n);
        for (i = 0; i < t->n; i++)
            pack_tfile(&pk, &t->files[i], i + 1 == t->n ? t->mut : MUT_NONE);
    }
    if (fields == 5)
        msgpack_pack_nil(&pk);
done:
    if (t->mut == MUT_TRAILING)
        msgpack_pack_nil(&pk);
    *out = exact_copy(sb.data, sb.size);
    *len = sb.size;
    msgpack_sbuffer_destroy(&sb);
}

static void same_snapshot(const struct snapshot *a, const struct snapshot *b)
{
    uint32_t i;

    CHECK_STR(a->repo, b->repo);
    CHECK_STR(a->commit, b->commit);
    CHECK_EQ(a->n_files, b->n_files);
    for (i = 0; i < a->n_files; i++) {
        CHECK_STR(a->files[i].path, b->files[i].path);
        CHECK_EQ(a->files[i].size, b->files[i].size);
        CHECK_MEM(a->files[i].sha256, b->files[i].sha256, 32);
        CHECK_STR(a->files[i].etag, b->files[i].etag);
    }
}

/* Everything a decoded snapshot promises: valid names, sizes in bounds, strict order,
 * lookups that find each file, and an encoding that decodes to the same snapshot. */
static void check_valid(const struct snapshot *s)
{
    struct snapshot again;
    uint8_t *buf, *buf2;
    size_t len, len2;
    uint32_t i;

    CHECK(snapshot_repo_ok(s->repo));
    CHECK(snapshot_commit_ok(s->commit));
    CHECK(s->n_files <= SNAPSHOT_FILES_MAX);
    for (i = 0; i < s->n_files; i++) {
        CHECK(snapshot_path_ok(s->files[i].path));
        CHECK(snapshot_etag_ok(s->files[i].etag));
        CHECK(s->files[i].size <= PROTO_FILE_MAX);
        if (i > 0)
            CHECK(strcmp(s->files[i - 1].path, s->files[i].path) < 0);
        CHECK(snapshot_find(s, s->files[i].path) == &s->files[i]);
    }
    CHECK_EQ(snapshot_encode(s, &buf, &len), 0);
    CHECK_EQ(snapshot_decode(&again, buf, len), 0);
    same_snapshot(s, &again);
    CHECK_EQ(snapshot_encode(&again, &buf2, &len2), 0);
    CHECK_EQ(len2, len);
    CHECK_MEM(buf2, buf, len);
    snapshot_release(&again);
    free(buf2);
    free(buf);
}

/* Decodes t; on success compares with t, on failure checks that the output is as it was. */
static void expect_decode(const struct tsnap *t, int want, int line)
{
    struct snapshot s, before;
    uint8_t *buf;
    size_t len;
    uint32_t i;
    int err;

    pack_tsnap(t, &buf, &len);
    memset(&s, 0xa5, sizeof(s));
    before = s;
    err = snapshot_decode(&s, buf, len);
    if (err != want)
        check__fail(__FILE__, line, "snapshot_decode: %d, want %d", err, want);
    if (err == 0) {
        CHECK_STR(s.repo, t->repo);
        CHECK_STR(s.commit, t->commit);
        CHECK_EQ(s.n_files, t->n);
        for (i = 0; i < t->n; i++) {
            uint8_t sha[32];

            memset(sha, t->files[i].fill, sizeof(sha));
            CHECK_STR(s.files[i].path, t->files[i].path);
            CHECK_EQ(s.files[i].size, t->files[i].size);
            CHECK_MEM(s.files[i].sha256, sha, 32);
            CHECK_STR(s.files[i].etag, t->files[i].etag);
        }
        check_valid(&s);
        snapshot_release(&s);
    } else if (memcmp(&s, &before, sizeof(s)) != 0) {
        check__fail(__FILE__, line, "snapshot_decode changed its output on failure");
    }
    free(buf);
}

#define EXPECT(t, want) expect_decode(&(t), (want), __LINE__)

/* ---- Names. Each case runs through the validator, the builder and the decoder, which
 * must all agree. */

static void check_path(const char *path, bool want, int line)
{
    struct tsnap t = {.version = 1, .repo = "model/o/m", .commit = COMMIT_A, .n = 1};
    struct snapshot s;
    uint8_t sha[32] = {0};
    char *p = exact_str(path), show[600];

    if (snapshot_path_ok(p) != want)
        check__fail(__FILE__, line, "snapshot_path_ok(\"%s\") != %d", shown(path, show, 600), want);
    CHECK_EQ(snapshot_init(&s, "model/o/m", COMMIT_A), 0);
    CHECK_EQ(snapshot_add(&s, p, 1, sha, ETAG_40), want ? 0 : -EINVAL);
    CHECK_EQ(s.n_files, want ? 1 : 0);
    snapshot_release(&s);
    t.files[0] = (struct tfile){path, 1, 0x44, ETAG_40};
    expect_decode(&t, want ? 0 : SHOAL_EFORMAT, line);
    free(p);
}

static void check_repo(const char *repo, bool want, int line)
{
    struct tsnap t = base_spec();
    struct snapshot s;
    char *p = exact_str(repo), show[600], folder[SNAPSHOT_REPO_MAX + 8];

    if (snapshot_repo_ok(p) != want)
        check__fail(__FILE__, line, "snapshot_repo_ok(\"%s\") != %d", shown(repo, show, 600), want);
    CHECK_EQ(snapshot_init(&s, p, COMMIT_A), want ? 0 : -EINVAL);
    if (want) {
        CHECK_STR(s.repo, repo);
        snapshot_release(&s);
    }
    CHECK_EQ(snapshot_repo_folder(p, folder, sizeof(folder)), want ? 0 : -EINVAL);
    t.repo = repo;
    expect_decode(&t, want ? 0 : SHOAL_EFORMAT, line);
    free(p);
}

static void check_commit(const char *commit, bool want, int line)
{
    struct tsnap t = base_spec();
    struct snapshot s;
    char *p = exact_str(commit), show[600];

    if (snapshot_commit_ok(p) != want)
        check__fail(__FILE__, line, "snapshot_commit_ok(\"%s\") != %d", shown(commit, show, 600),
                    want);
    CHECK_EQ(snapshot_init(&s, "dataset/x", p), want ? 0 : -EINVAL);
    if (want) {
        CHECK_STR(s.commit, commit);
        snapshot_release(&s);
    }
    t.commit = commit;
    expect_decode(&t, want ? 0 : SHOAL_EFORMAT, line);
    free(p);
}

static void check_etag(const char *etag, bool want, int line)
{
    struct tsnap t = base_spec();
    struct snapshot s;
    uint8_t sha[32] = {0};
    char *p = exact_str(etag), show[600];

    if (snapshot_etag_ok(p) != want)
        check__fail(__FILE__, line, "snapshot_etag_ok(\"%s\") != %d", shown(etag, show, 600), want);
    CHECK_EQ(snapshot_init(&s, "model/o/m", COMMIT_A), 0);
    CHECK_EQ(snapshot_add(&s, "x", 1, sha, p), want ? 0 : -EINVAL);
    if (want)
        CHECK_STR(s.files[0].etag, etag);
    snapshot_release(&s);
    t.files[1].etag = etag;
    expect_decode(&t, want ? 0 : SHOAL_EFORMAT, line);
    free(p);
}

static void check_rev(const char *rev, bool want, int line)
{
    char *p = exact_str(rev), show[600];

    if (snapshot_rev_ok(p) != want)
        check__fail(__FILE__, line, "snapshot_rev_ok(\"%s\") != %d", shown(rev, show, 600), want);
    free(p);
}

#define CHECK_NAMES(fn, list, want)                                                                \
    do {                                                                                           \
        size_t k_;                                                                                 \
        for (k_ = 0; k_ < COUNT(list); k_++)                                                       \
            fn((list)[k_], (want), __LINE__);                                                      \
    } while (0)

static void test_path_names(void)
{
    static const char *const good[] = {
        "a",
        "config.json",
        "a/b/c.txt",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        ".gitattributes",
        ".github/workflows/ci.yml",
        ".git.bak/x",
        "x/.git",        /* only a first component ".git" is refused (snapshot.h) */
        "a/.git/config", /* likewise */
        "...",
        "..a",
        "a..",
        "a/..b/c",
        ".a/.b",
        "a b/c d",
        "~/x",
        "a:b",
        "\xc3\xa9t\xc3\xa9.txt",                 /* U+00E9, two bytes */
        "\xc2\x80",                              /* U+0080, the smallest two-byte value */
        "\xdf\xbf",                              /* U+07FF */
        "\xe0\xa0\x80",                          /* U+0800, the smallest three-byte value */
        "\xe6\x97\xa5\xe6\x9c\xac/\xe8\xaa\x9e", /* CJK, three bytes each */
        "\xed\x9f\xbf",                          /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",                          /* U+E000, just above them */
        "\xef\xbf\xbf",                          /* U+FFFF */
        "\xf0\x90\x80\x80",                      /* U+10000, the smallest four-byte value */
        "\xf0\x9f\x98\x80.png",                  /* an emoji */
        "\xf4\x8f\xbf\xbf",                      /* U+10FFFF, the last code point */
    };
    static const char *const bad[] = {
        "",
        "/",
        "/abs",
        "/a/b",
        "a/",
        "a/b/",
        "a//b",
        "//",
        ".",
        "..",
        "./a",
        "a/.",
        "a/./b",
        "../x",
        "a/../b",
        "a/..",
        ".git",
        ".git/config",
        ".git/objects/ab/cd",
        "a\\b",
        "\\",
        "a\nb",
        "a\rb",
        "\t",
        "\x01",
        "\x1f",
        "\x7f",
        "a\x7f",
        "\x80", /* a continuation byte alone */
        "\xbf",
        "a\x80z",
        "\xc0\xaf",         /* overlong '/' */
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong, two bytes */
        "\xe0\x80\xaf",     /* overlong, three bytes */
        "\xe0\x9f\xbf",     /* overlong U+07FF */
        "\xf0\x80\x80\xaf", /* overlong, four bytes */
        "\xf0\x8f\xbf\xbf", /* overlong U+FFFF */
        "\xed\xa0\x80",     /* U+D800, a surrogate */
        "\xed\xbf\xbf",     /* U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xf7\xbf\xbf\xbf",
        "\xf8\x88\x80\x80\x80", /* five bytes */
        "\xfe",
        "\xff",
        "\xc3", /* cut short */
        "a\xc3",
        "\xe6\x97",
        "\xf0\x9f\x98",
        "\xc3/x", /* a '/' where a continuation belongs */
        "\xc3\xc3\xa9",
        "\xe6\x97\xa5\x80", /* a stray continuation after a whole character */
        "a/\xc0\x80",
    };
    char *p, *q;

    CHECK_NAMES(check_path, good, true);
    CHECK_NAMES(check_path, bad, false);
    CHECK(!snapshot_path_ok(NULL));

    /* Length: SNAPSHOT_PATH_MAX bytes in all, multi-byte characters counted in bytes. */
    p = repeat('a', SNAPSHOT_PATH_MAX);
    check_path(p, true, __LINE__);
    free(p);
    p = repeat('a', SNAPSHOT_PATH_MAX + 1);
    check_path(p, false, __LINE__);
    free(p);
    p = repeat('a', SNAPSHOT_PATH_MAX - 2);
    q = join(p, "/b", "", "");
    check_path(q, true, __LINE__);
    free(q);
    q = join(p, "/bc", "", "");
    check_path(q, false, __LINE__);
    free(q);
    q = join(p, "\xc3\xa9", "", "");
    check_path(q, true, __LINE__);
    free(q);
    free(p);
    p = repeat('a', SNAPSHOT_PATH_MAX - 1);
    q = join(p, "\xc3\xa9", "", "");
    check_path(q, false, __LINE__);
    free(q);
    free(p);
    /* A validator given a string far past the limit stops reading at the limit. */
    p = repeat('a', 1 << 20);
    CHECK(!snapshot_path_ok(p));
    CHECK(!snapshot_repo_ok(p));
    CHECK(!snapshot_rev_ok(p));
    CHECK(!snapshot_commit_ok(p));
    CHECK(!snapshot_etag_ok(p));
    free(p);
}

static void test_repo_names(void)
{
    static const char *const good[] = {
        "model/org/name",
        "model/gpt2",
        "dataset/x",
        "dataset/org/x",
        "space/a/b",
        "space/a",
        "model/Org-1/Name_2.v3",
        "model/_x",
        "model/x_",
        "model/a.b-c_d",
        "model/1/2",
        "model/a-b/c.d",
        "model/A/B",
    };
    static const char *const bad[] = {
        "",
        "model",
        "model/",
        "/model/x",
        "models/x",
        "Model/x",
        "datasets/x",
        "spaces/a/b",
        "modelx/y",
        "mode/x",
        "x",
        "model/org/na..me",
        "model/a..b/c",
        "model/-x",
        "model/x-",
        "model/.x",
        "model/x.",
        "model/org/-x",
        "model/-org/x",
        "model/org./x",
        "model/.",
        "model/..",
        "model/a/.",
        "model/a/..",
        "model/a/b/c",
        "model/a/b/",
        "model//x",
        "model/a//b",
        "model/a/",
        "model/a b",
        "model/a\\b",
        "model/a:b",
        "model/a+b",
        "model/a\nb",
        "model/\xc3\xa9",
        "model/a\x7f",
    };
    char *part, *part95, *part97, *r;

    CHECK_NAMES(check_repo, good, true);
    CHECK_NAMES(check_repo, bad, false);
    CHECK(!snapshot_repo_ok(NULL));

    /* 96 characters a part, SNAPSHOT_REPO_MAX in all. */
    part = repeat('x', 96);
    part95 = repeat('x', 95);
    part97 = repeat('x', 97);
    r = join("model/", part, "", "");
    check_repo(r, true, __LINE__);
    free(r);
    r = join("model/", part97, "", "");
    check_repo(r, false, __LINE__);
    free(r);
    r = join("model/", part, "/", part); /* 199 bytes */
    check_repo(r, true, __LINE__);
    free(r);
    r = join("dataset/", part, "/", part95); /* 200 bytes */
    CHECK_EQ(strlen(r), SNAPSHOT_REPO_MAX);
    check_repo(r, true, __LINE__);
    free(r);
    r = join("dataset/", part, "/", part); /* 201 bytes: each part fits, the whole does not */
    check_repo(r, false, __LINE__);
    free(r);
    r = join("model/", part97, "/", "x");
    check_repo(r, false, __LINE__);
    free(r);
    free(part97);
    free(part95);
    free(part);
}

static void test_commit_etag_names(void)
{
    static const char *const good_commit[] = {
        COMMIT_A,
        "0000000000000000000000000000000000000000",
        "ffffffffffffffffffffffffffffffffffffffff",
        "9a3b1c2d4e5f60718293a4b5c6d7e8f901234567",
    };
    static const char *const bad_commit[] = {
        "",
        "0123456789ABCDEF0123456789abcdef01234567",  /* upper case */
        "0123456789abcdef0123456789abcdef0123456",   /* 39 */
        "0123456789abcdef0123456789abcdef012345678", /* 41 */
        "0123456789abcdef0123456789abcdef0123456g",
        "0123456789abcdef0123456789abcdef0123456 ",
        " 123456789abcdef0123456789abcdef01234567",
        "main",
        ETAG_64,
    };
    static const char *const good_etag[] = {
        ETAG_40,
        ETAG_64,
        COMMIT_A,
        "0000000000000000000000000000000000000000",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    };
    static const char *const bad_etag[] = {
        "",
        "0011223344556677889900112233445566778899aabbccddeeff0011223344",    /* 62 */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",   /* 63 */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0", /* 65 */
        "fedcba9876543210fedcba9876543210fedcba9",                           /* 39 */
        "fedcba9876543210fedcba9876543210fedcba987",                         /* 41 */
        "FEDCBA9876543210FEDCBA9876543210FEDCBA98",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "\"fedcba9876543210fedcba9876543210fedcba98\"", /* the HTTP header's quotes */
        "\"fedcba9876543210fedcba9876543210fedcba\"",   /* 40 with the quotes */
        "W/fedcba9876543210fedcba9876543210fedcba",
        "fedcba9876543210fedcba9876543210fedcba9g",
        "fedcba9876543210-edcba9876543210fedcba98",
    };

    CHECK_NAMES(check_commit, good_commit, true);
    CHECK_NAMES(check_commit, bad_commit, false);
    CHECK_NAMES(check_etag, good_etag, true);
    CHECK_NAMES(check_etag, bad_etag, false);
    CHECK(!snapshot_commit_ok(NULL));
    CHECK(!snapshot_etag_ok(NULL));
}

static void test_rev_names(void)
{
    static const char *const good[] = {
        "main", "v1.0", "refs/pr/1",    "a",   "release-1", "my_branch", "feature/x-y", "a.b.c",
        "a-",   "x/-y", "v1.0+build.7", "a~1", COMMIT_A,
    };
    static const char *const bad[] = {
        "",     "../x", "..",   "a..b",  "a/..",  "-x",       "--help",
        "a b",  " a",   "a ",   "a//b",  "a/",    "/",        "/a",
        "a\\b", "a\tb", "a\nb", "a\x7f", "a\x01", "\xc3\xa9", "caf\xc3\xa9",
    };
    char *p;

    CHECK_NAMES(check_rev, good, true);
    CHECK_NAMES(check_rev, bad, false);
    CHECK(!snapshot_rev_ok(NULL));
    p = repeat('r', SNAPSHOT_REV_MAX);
    check_rev(p, true, __LINE__);
    free(p);
    p = repeat('r', SNAPSHOT_REV_MAX + 1);
    check_rev(p, false, __LINE__);
    free(p);
}

static void expect_folder(const char *repo, const char *want, int line)
{
    char out[SNAPSHOT_REPO_MAX + 8], small[SNAPSHOT_REPO_MAX + 8];
    char *r = exact_str(repo);
    size_t need = strlen(want) + 1;
    int err;

    err = snapshot_repo_folder(r, out, sizeof(out));
    if (err != 0 || strcmp(out, want) != 0)
        check__fail(__FILE__, line, "snapshot_repo_folder(\"%s\"): %d", repo, err);
    /* Exactly big enough works; one byte less fails and writes nothing. */
    memset(small, '#', sizeof(small));
    CHECK_EQ(snapshot_repo_folder(r, small, need), 0);
    CHECK_STR(small, want);
    memset(small, '#', sizeof(small));
    CHECK_EQ(snapshot_repo_folder(r, small, need - 1), -EINVAL);
    CHECK_EQ(snapshot_repo_folder(r, small, 0), -EINVAL);
    for (size_t i = 0; i < sizeof(small); i++)
        CHECK_EQ(small[i], '#');
    free(r);
}

static void test_repo_folder(void)
{
    char out[SNAPSHOT_REPO_MAX + 8], *part, *part95, *r, *w;
    size_t i;

    expect_folder("model/org/name", "models--org--name", __LINE__);
    expect_folder("dataset/x", "datasets--x", __LINE__);
    expect_folder("space/a/b", "spaces--a--b", __LINE__);
    expect_folder("model/gpt2", "models--gpt2", __LINE__);
    expect_folder("dataset/HuggingFaceFW/fineweb-edu", "datasets--HuggingFaceFW--fineweb-edu",
                  __LINE__);
    expect_folder("model/a.b/c_d-e", "models--a.b--c_d-e", __LINE__);

    /* The longest folder fits the documented buffer. */
    part = repeat('x', 96);
    part95 = repeat('x', 95);
    r = join("dataset/", part, "/", part95);
    w = join("datasets--", part, "--", part95);
    CHECK(strlen(w) + 1 <= sizeof(out));
    expect_folder(r, w, __LINE__);
    free(w);
    free(r);
    free(part95);
    free(part);

    /* Bad repos write nothing. */
    memset(out, '#', sizeof(out));
    CHECK_EQ(snapshot_repo_folder("models/x", out, sizeof(out)), -EINVAL);
    CHECK_EQ(snapshot_repo_folder("model/a/b/c", out, sizeof(out)), -EINVAL);
    CHECK_EQ(snapshot_repo_folder("model/../x", out, sizeof(out)), -EINVAL);
    CHECK_EQ(snapshot_repo_folder("", out, sizeof(out)), -EINVAL);
    CHECK_EQ(snapshot_repo_folder(NULL, out, sizeof(out)), -EINVAL);
    for (i = 0; i < sizeof(out); i++)
        CHECK_EQ(out[i], '#');
}

/* ---- Building and lookup. */

static void test_build(void)
{
    struct snapshot s, before;
    uint8_t sha[32], *buf;
    size_t len;
    char path[] = "x/y";
    const struct snapshot_file *f;

    memset(sha, 0x5a, sizeof(sha));
    memset(&s, 0xa5, sizeof(s));
    before = s;
    CHECK_EQ(snapshot_init(&s, "models/x", COMMIT_A), -EINVAL);
    CHECK_EQ(snapshot_init(&s, "model/x", "0123"), -EINVAL);
    CHECK_EQ(snapshot_init(&s, NULL, COMMIT_A), -EINVAL);
    CHECK(memcmp(&s, &before, sizeof(s)) == 0);

    CHECK_EQ(snapshot_init(&s, "model/x", COMMIT_A), 0);
    CHECK_EQ(s.n_files, 0);
    CHECK(s.files == NULL);
    CHECK(snapshot_find(&s, "a") == NULL);
    CHECK_EQ(snapshot_add(&s, "../x", 1, sha, ETAG_40), -EINVAL);
    CHECK_EQ(snapshot_add(&s, NULL, 1, sha, ETAG_40), -EINVAL);
    CHECK_EQ(snapshot_add(&s, "a", 1, sha, "abc"), -EINVAL);
    CHECK_EQ(snapshot_add(&s, "a", PROTO_FILE_MAX + 1, sha, ETAG_40), SHOAL_ELIMIT);
    CHECK_EQ(snapshot_add(&s, "a", UINT64_MAX, sha, ETAG_40), SHOAL_ELIMIT);
    CHECK_EQ(s.n_files, 0);
    CHECK_EQ(snapshot_add(&s, "a", PROTO_FILE_MAX, sha, ETAG_40), 0);
    /* The path is copied. */
    CHECK_EQ(snapshot_add(&s, path, 0, sha, ETAG_64), 0);
    path[0] = 'z';
    CHECK_EQ(snapshot_add(&s, "\xc3\xa9", 3, sha, ETAG_64), 0);
    CHECK_EQ(snapshot_add(&s, "Z", 4, sha, ETAG_40), 0);
    /* Not finished, and out of order: nothing is written. */
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    CHECK_EQ(snapshot_finish(&s), 0);
    CHECK_EQ(snapshot_finish(&s), 0);
    /* Byte order: upper case before lower case, non-ASCII last. */
    CHECK_STR(s.files[0].path, "Z");
    CHECK_STR(s.files[1].path, "a");
    CHECK_STR(s.files[2].path, "x/y");
    CHECK_STR(s.files[3].path, "\xc3\xa9");
    f = snapshot_find(&s, "x/y");
    CHECK(f == &s.files[2]);
    CHECK_EQ(f->size, 0);
    CHECK_STR(f->etag, ETAG_64);
    CHECK_MEM(f->sha256, sha, 32);
    CHECK(snapshot_find(&s, "z/y") == NULL);
    CHECK_EQ(snapshot_encode(&s, &buf, &len), 0);
    free(buf);

    /* A duplicate fails finish and leaves the files as they were. */
    CHECK_EQ(snapshot_add(&s, "b", 1, sha, ETAG_40), 0);
    CHECK_EQ(snapshot_add(&s, "a", 2, sha, ETAG_40), 0);
    CHECK_EQ(snapshot_finish(&s), -EINVAL);
    CHECK_EQ(s.n_files, 6);
    CHECK_STR(s.files[0].path, "Z");
    CHECK_STR(s.files[3].path, "\xc3\xa9");
    CHECK_STR(s.files[4].path, "b");
    CHECK_STR(s.files[5].path, "a");
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    snapshot_release(&s);
    CHECK_EQ(s.n_files, 0);
    CHECK(s.files == NULL);

    /* An empty snapshot is finished as it is and encodes. */
    CHECK_EQ(snapshot_init(&s, "space/a/b", COMMIT_A), 0);
    CHECK_EQ(snapshot_finish(&s), 0);
    CHECK_EQ(snapshot_encode(&s, &buf, &len), 0);
    snapshot_release(&s);
    memset(&s, 0xa5, sizeof(s));
    CHECK_EQ(snapshot_decode(&s, buf, len), 0);
    CHECK_EQ(s.n_files, 0);
    CHECK(s.files == NULL);
    CHECK_STR(s.repo, "space/a/b");
    CHECK(snapshot_find(&s, "") == NULL);
    snapshot_release(&s);
    free(buf);
}

/* The encoder refuses what a decoder would refuse, even in a struct filled by hand. */
static void test_encode_refuses(void)
{
    struct snapshot s;
    uint8_t sha[32] = {0}, *buf;
    size_t len;
    char *saved, bad[] = "a/../b";

    CHECK_EQ(snapshot_init(&s, "model/x", COMMIT_A), 0);
    CHECK_EQ(snapshot_add(&s, "a", 1, sha, ETAG_40), 0);
    CHECK_EQ(snapshot_add(&s, "b", 2, sha, ETAG_64), 0);
    CHECK_EQ(snapshot_encode(&s, &buf, &len), 0);
    free(buf);

    memset(s.repo, 'a', sizeof(s.repo)); /* no NUL */
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    memcpy(s.repo, "models/x", 9);
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    memcpy(s.repo, "model/x", 8);
    memset(s.commit, 'a', sizeof(s.commit));
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    s.commit[10] = '\0';
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    memcpy(s.commit, COMMIT_A, sizeof(s.commit));
    s.files[1].etag[0] = 'A';
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    memset(s.files[1].etag, 'a', sizeof(s.files[1].etag));
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    memcpy(s.files[1].etag, ETAG_40, sizeof(ETAG_40));
    s.files[1].size = PROTO_FILE_MAX + 1;
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    s.files[1].size = 2;
    saved = s.files[1].path;
    s.files[1].path = bad;
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    s.files[1].path = "a"; /* a duplicate */
    CHECK_EQ(snapshot_encode(&s, &buf, &len), -EINVAL);
    s.files[1].path = saved;
    CHECK_EQ(snapshot_encode(&s, &buf, &len), 0);
    free(buf);
    snapshot_release(&s);
}

static void test_find(void)
{
    static const char *const names[] = {
        "a", "a.txt", "a/b", "a/b/c", "b", "config.json", "unet/x.bin", "\xc3\xa9",
    };
    static const char *const misses[] = {
        "",   "0", "a/",   "a/b/",  "a.tx", "a.txt ",           "aa",  "a/c",
        "ab", "c", "unet", "unet/", "\xc3", "\xc3\xa9\xc3\xa9", "zzz", "\xff",
    };
    struct snapshot s;
    uint8_t sha[32] = {0};
    const struct snapshot_file *f;
    size_t i, n;

    /* Every size from 0 to all names, added backwards. */
    for (n = 0; n <= COUNT(names); n++) {
        CHECK_EQ(snapshot_init(&s, "model/x", COMMIT_A), 0);
        for (i = n; i > 0; i--)
            CHECK_EQ(snapshot_add(&s, names[i - 1], i - 1, sha, ETAG_40), 0);
        CHECK_EQ(snapshot_finish(&s), 0);
        for (i = 0; i < COUNT(names); i++) {
            f = snapshot_find(&s, names[i]);
            if (i < n) {
                CHECK(f == &s.files[i]);
                CHECK_EQ(f->size, i);
            } else {
                CHECK(f == NULL);
            }
        }
        for (i = 0; i < COUNT(misses); i++)
            CHECK(snapshot_find(&s, misses[i]) == NULL);
        snapshot_release(&s);
    }
}

/* ---- Round trip. */

#define RT_FILES 300

/* File i of the round trip: a unique path in one of several folders, and fields that
 * follow from i. */
static void rt_file(uint32_t i, char *path, size_t cap, uint64_t *size, uint8_t sha[32], char *etag)
{
    static const char *const dirs[] = {
        "", "unet/", "text_encoder/", "a/b/c/", "\xc3\xa9t\xc3\xa9/", "Z/", ".github/", "x/.git/",
    };
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[32];
    uint64_t st = i;
    size_t k, n = i % 2 ? 40 : 64;

    snprintf(path, cap, "%sfile-%u.%s", dirs[i % COUNT(dirs)], i, i % 3 ? "bin" : "json");
    if (i % 5 == 0) {
        *size = 0;
    } else if (i % 5 == 1) {
        *size = PROTO_FILE_MAX;
    } else {
        *size = check_splitmix64(&st) % PROTO_FILE_MAX;
    }
    check_fill_splitmix(sha, 32, 1000 + i);
    check_fill_splitmix(raw, sizeof(raw), 2000 + i);
    for (k = 0; k < n; k++)
        etag[k] = hex[(raw[k / 2] >> (k % 2 ? 0 : 4)) & 15];
    etag[n] = '\0';
}

/* Builds RT_FILES files added in a shuffled order. */
static void build_shuffled(struct snapshot *s, uint32_t n_files, uint64_t seed)
{
    uint32_t *order = check_malloc(n_files * sizeof(*order));
    uint32_t i, j, t;
    uint64_t st = seed, size;
    uint8_t sha[32];
    char path[64], etag[SNAPSHOT_ETAG_MAX + 1];

    for (i = 0; i < n_files; i++)
        order[i] = i;
    for (i = n_files; i > 1; i--) {
        j = (uint32_t)(check_splitmix64(&st) % i);
        t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    CHECK_EQ(snapshot_init(s, "model/org/name", COMMIT_A), 0);
    for (i = 0; i < n_files; i++) {
        rt_file(order[i], path, sizeof(path), &size, sha, etag);
        CHECK_EQ(snapshot_add(s, path, size, sha, etag), 0);
    }
    CHECK_EQ(snapshot_finish(s), 0);
    free(order);
}

/* Each file i of build_shuffled is there, found, and as rt_file made it. */
static void check_rt_files(const struct snapshot *s, uint32_t n_files)
{
    const struct snapshot_file *f;
    uint64_t size;
    uint8_t sha[32];
    char path[64], etag[SNAPSHOT_ETAG_MAX + 1];
    uint32_t i;

    CHECK_EQ(s->n_files, n_files);
    for (i = 0; i < n_files; i++) {
        rt_file(i, path, sizeof(path), &size, sha, etag);
        f = snapshot_find(s, path);
        CHECK(f != NULL);
        CHECK_STR(f->path, path);
        CHECK_EQ(f->size, size);
        CHECK_MEM(f->sha256, sha, 32);
        CHECK_STR(f->etag, etag);
    }
}

static void test_roundtrip(void)
{
    static const uint32_t counts[] = {0, 1, 2, 15, 16, 17, 100, RT_FILES};
    struct snapshot s, d;
    uint8_t sha[32] = {0}, *buf, *in, *again;
    size_t len, len2, c;
    uint32_t i;
    char path[64];

    for (c = 0; c < COUNT(counts); c++) {
        build_shuffled(&s, counts[c], 77 + c);
        check_rt_files(&s, counts[c]);
        CHECK(snapshot_find(&s, "file-1.bin") == NULL);
        CHECK(snapshot_find(&s, "unet") == NULL);
        CHECK_EQ(snapshot_encode(&s, &buf, &len), 0);
        in = exact_copy(buf, len);
        CHECK_EQ(snapshot_decode(&d, in, len), 0);
        same_snapshot(&s, &d);
        check_rt_files(&d, counts[c]);
        check_valid(&d);
        CHECK_EQ(snapshot_encode(&d, &again, &len2), 0);
        CHECK_EQ(len2, len);
        CHECK_MEM(again, buf, len);
        free(again);

        /* A decoded snapshot grows like a built one (its array has the same capacity
         * rule): add across the next doubling and finish again. */
        for (i = 0; i < 40; i++) {
            snprintf(path, sizeof(path), "added/%u", i);
            CHECK_EQ(snapshot_add(&d, path, i, sha, ETAG_40), 0);
        }
        CHECK_EQ(snapshot_finish(&d), 0);
        CHECK_EQ(d.n_files, counts[c] + 40);
        CHECK(snapshot_find(&d, "added/39") != NULL);
        check_valid(&d);
        snapshot_release(&d);
        free(in);
        free(buf);
        snapshot_release(&s);
    }
}

/* ---- The byte-exact vector. */

/* The byte layout below is the documentation; keep the formatter off it. */
// clang-format off
/* base_spec(): repo "model/o/m" at commit COMMIT_A with two files. */
static const uint8_t vector_snapshot[] = {
    0x94,                   /* fixarray of 4: the snapshot */
    0x01,                   /* version 1, positive fixint */
    0xa9,                   /* repo: fixstr of 9 */
    'm', 'o', 'd', 'e', 'l', '/', 'o', '/', 'm',
    0xd9, 0x28,             /* commit: str8 of 40 */
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
    '0', '1', '2', '3', '4', '5', '6', '7',
    0x92,                   /* files: fixarray of 2, sorted by path */
    0x94,                   /* file "a.txt": fixarray of 4 */
    0xa5, 'a', '.', 't', 'x', 't', /* path: fixstr of 5 */
    0x05,                   /* size 5: positive fixint */
    0xc4, 0x20,             /* sha256: bin8 of 32 bytes, all 0x11 */
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x11, 0x11,
    0xd9, 0x28,             /* etag: str8 of 40, a git blob sha1 */
    'f', 'e', 'd', 'c', 'b', 'a', '9', '8', '7', '6', '5', '4', '3', '2', '1', '0',
    'f', 'e', 'd', 'c', 'b', 'a', '9', '8', '7', '6', '5', '4', '3', '2', '1', '0',
    'f', 'e', 'd', 'c', 'b', 'a', '9', '8',
    0x94,                   /* file "b/c.bin": fixarray of 4 */
    0xa7, 'b', '/', 'c', '.', 'b', 'i', 'n', /* path: fixstr of 7 */
    0xce, 0x00, 0x01, 0x11, 0x70, /* size 70000: uint32, big-endian */
    0xc4, 0x20,             /* sha256: bin8 of 32 bytes, all 0x22 */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22,
    0xd9, 0x40,             /* etag: str8 of 64, an LFS sha256 */
    '0', '0', '1', '1', '2', '2', '3', '3', '4', '4', '5', '5', '6', '6', '7', '7',
    '8', '8', '9', '9', 'a', 'a', 'b', 'b', 'c', 'c', 'd', 'd', 'e', 'e', 'f', 'f',
    '0', '0', '1', '1', '2', '2', '3', '3', '4', '4', '5', '5', '6', '6', '7', '7',
    '8', '8', '9', '9', 'a', 'a', 'b', 'b', 'c', 'c', 'd', 'd', 'e', 'e', 'f', 'f',
};
// clang-format on

static void test_vector(void)
{
    struct tsnap t = base_spec();
    struct snapshot s, d;
    uint8_t sha1[32], sha2[32], *buf, *in;
    size_t len;

    memset(sha1, 0x11, sizeof(sha1));
    memset(sha2, 0x22, sizeof(sha2));
    CHECK_EQ(snapshot_init(&s, "model/o/m", COMMIT_A), 0);
    CHECK_EQ(snapshot_add(&s, "b/c.bin", 70000, sha2, ETAG_64), 0);
    CHECK_EQ(snapshot_add(&s, "a.txt", 5, sha1, ETAG_40), 0);
    CHECK_EQ(snapshot_finish(&s), 0);
    CHECK_EQ(snapshot_encode(&s, &buf, &len), 0);
    CHECK_EQ(len, sizeof(vector_snapshot));
    CHECK_MEM(buf, vector_snapshot, len);
    free(buf);

    in = exact_copy(vector_snapshot, sizeof(vector_snapshot));
    CHECK_EQ(snapshot_decode(&d, in, sizeof(vector_snapshot)), 0);
    same_snapshot(&s, &d);
    check_valid(&d);
    snapshot_release(&d);
    free(in);

    /* The hand-built encodings of the rule tests start from the same bytes. */
    pack_tsnap(&t, &buf, &len);
    CHECK_EQ(len, sizeof(vector_snapshot));
    CHECK_MEM(buf, vector_snapshot, len);
    free(buf);
    snapshot_release(&s);
}

/* ---- Decoder rules. */

static void test_rules(void)
{
    struct tsnap t;
    int m;

    t = base_spec();
    EXPECT(t, 0);
    t.n = 0;
    EXPECT(t, 0);
    t.n = 1;
    EXPECT(t, 0);
    t = base_spec();
    t.repo = "dataset/x";
    EXPECT(t, 0);

    /* Version: another positive integer is a later version, whatever follows. */
    t = base_spec();
    t.version = 2;
    EXPECT(t, SHOAL_EVERSION);
    t.version = 0;
    EXPECT(t, SHOAL_EVERSION);
    t.version = UINT64_MAX;
    EXPECT(t, SHOAL_EVERSION);
    t.version = 2;
    t.mut = MUT_ROOT_SHORT;
    EXPECT(t, SHOAL_EVERSION);
    t.mut = MUT_ROOT_LONG;
    EXPECT(t, SHOAL_EVERSION);
    t.mut = MUT_REPO_INT;
    EXPECT(t, SHOAL_EVERSION);
    t.mut = MUT_NONE;
    t.repo = "models/x";
    EXPECT(t, SHOAL_EVERSION);

    /* Sizes. */
    t = base_spec();
    t.files[1].size = PROTO_FILE_MAX;
    EXPECT(t, 0);
    t.files[1].size = 0;
    EXPECT(t, 0);
    t.files[1].size = PROTO_FILE_MAX + 1;
    EXPECT(t, SHOAL_ELIMIT);
    t.files[1].size = UINT64_MAX;
    EXPECT(t, SHOAL_ELIMIT);
    t = base_spec();
    t.files[0].size = UINT64_MAX;
    EXPECT(t, SHOAL_ELIMIT);

    /* Order: strictly increasing bytes, a prefix first. */
    t = base_spec();
    t.files[0].path = "b/c.bin";
    t.files[1].path = "a.txt";
    EXPECT(t, SHOAL_EFORMAT);
    t.files[0].path = "a.txt";
    EXPECT(t, SHOAL_EFORMAT);
    t.files[0].path = "a";
    t.files[1].path = "a/b";
    EXPECT(t, 0);
    t.files[0].path = "a/b";
    t.files[1].path = "a";
    EXPECT(t, SHOAL_EFORMAT);
    t.files[0].path = "a.txt"; /* '.' (2e) sorts before '/' (2f) */
    t.files[1].path = "a/b";
    EXPECT(t, 0);
    t.files[0].path = "a/b";
    t.files[1].path = "a.txt";
    EXPECT(t, SHOAL_EFORMAT);
    t.files[0].path = "B";
    t.files[1].path = "a";
    EXPECT(t, 0);
    t.files[0].path = "a";
    t.files[1].path = "B";
    EXPECT(t, SHOAL_EFORMAT);
    t.files[0].path = "z"; /* bytes compare unsigned */
    t.files[1].path = "\xc3\xa9";
    EXPECT(t, 0);
    t.files[0].path = "\xc3\xa9";
    t.files[1].path = "z";
    EXPECT(t, SHOAL_EFORMAT);
    t.files[0].path = "same";
    t.files[1].path = "same";
    EXPECT(t, SHOAL_EFORMAT);
    t = base_spec();
    t.n = 4;
    t.files[0].path = "a";
    t.files[1].path = "b";
    t.files[2] = (struct tfile){"c", 3, 0x33, ETAG_40};
    t.files[3] = (struct tfile){"d", 4, 0x44, ETAG_64};
    EXPECT(t, 0);
    t.files[3].path = "c";
    EXPECT(t, SHOAL_EFORMAT);
    t.files[3].path = "b";
    EXPECT(t, SHOAL_EFORMAT);
    t.files[3].path = "d";
    t.files[1].path = "c";
    t.files[2].path = "b";
    EXPECT(t, SHOAL_EFORMAT);

    /* Names in a snapshot that is otherwise right (more in the name tests). */
    t = base_spec();
    t.files[1].path = "../x";
    EXPECT(t, SHOAL_EFORMAT);
    t = base_spec();
    t.files[0].path = ".git/config";
    EXPECT(t, SHOAL_EFORMAT);
    t = base_spec();
    t.repo = "model/org/na..me";
    EXPECT(t, SHOAL_EFORMAT);
    t = base_spec();
    t.commit = "0123456789ABCDEF0123456789abcdef01234567";
    EXPECT(t, SHOAL_EFORMAT);
    t = base_spec();
    t.files[0].etag = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef";
    EXPECT(t, SHOAL_EFORMAT);

    /* Types, shapes, embedded NULs, trailing bytes: in the last of two files and in a
     * snapshot of one. */
    for (m = MUT_NONE + 1; m < MUT_END; m++) {
        t = base_spec();
        t.mut = (enum mutation)m;
        EXPECT(t, SHOAL_EFORMAT);
        t.n = 1;
        EXPECT(t, SHOAL_EFORMAT);
    }
}

/* [1, "model/o/m", COMMIT_A, <tail>] with tail taken as raw bytes (caller frees). */
static uint8_t *with_tail(const uint8_t *tail, size_t n, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint8_t *out;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, 1);
    pack_cstr(&pk, "model/o/m");
    pack_cstr(&pk, COMMIT_A);
    msgpack_sbuffer_write(&sb, (const char *)tail, n);
    out = exact_copy(sb.data, sb.size);
    *len = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return out;
}

static void expect_tail(const uint8_t *tail, size_t n, int want, int line)
{
    struct snapshot s;
    uint8_t *buf;
    size_t len;
    int err;

    buf = with_tail(tail, n, &len);
    err = snapshot_decode(&s, buf, len);
    if (err != want)
        check__fail(__FILE__, line, "snapshot_decode: %d, want %d", err, want);
    if (err == 0)
        snapshot_release(&s);
    free(buf);
}

#define EXPECT_TAIL(arr, want) expect_tail((arr), sizeof(arr), (want), __LINE__)

static void test_huge_counts(void)
{
    /* Claims far beyond the bytes that follow; mp_check refuses them before msgpack-c
     * could allocate for them. */
    static const uint8_t files32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x94, 0xa1, 'a', 0x01};
    static const uint8_t files32_bare[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t files16[] = {0xdc, 0xff, 0xff, 0xc0, 0xc0};
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0};
    static const uint8_t file32[] = {0x91, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    static const uint8_t path32[] = {0x91, 0x94, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 0x01, 0xc0};
    static const uint8_t sha32[] = {0x91, 0x94, 0xa1, 'a', 0x01, 0xc6, 0xff, 0xff, 0xff, 0xff};
    /* Files nested as deep as mp_check allows, then one level more. */
    static const uint8_t deep_ok[] = {0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0xc0};
    static const uint8_t deep[] = {0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0xc0};
    static const uint8_t whole32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0xc0, 0xc0};
    struct snapshot s, d;
    uint8_t *tail, *buf, sha[32] = {0};
    size_t len, i, n;
    char path[32];

    EXPECT_TAIL(files32, SHOAL_EFORMAT);
    EXPECT_TAIL(files32_bare, SHOAL_EFORMAT);
    EXPECT_TAIL(files16, SHOAL_EFORMAT);
    EXPECT_TAIL(map32, SHOAL_EFORMAT);
    EXPECT_TAIL(file32, SHOAL_EFORMAT);
    EXPECT_TAIL(path32, SHOAL_EFORMAT);
    EXPECT_TAIL(sha32, SHOAL_EFORMAT);
    EXPECT_TAIL(deep_ok, SHOAL_EFORMAT);
    EXPECT_TAIL(deep, SHOAL_ELIMIT);
    CHECK_EQ(snapshot_decode(&s, whole32, sizeof(whole32)), SHOAL_EFORMAT);

    /* A count the bytes do back, one over the limit: refused by count, whatever the
     * entries are; at the limit, the nils themselves are wrong. */
    for (n = SNAPSHOT_FILES_MAX; n <= SNAPSHOT_FILES_MAX + 1; n++) {
        tail = check_malloc(5 + n);
        tail[0] = 0xdd;
        tail[1] = (uint8_t)(n >> 24);
        tail[2] = (uint8_t)(n >> 16);
        tail[3] = (uint8_t)(n >> 8);
        tail[4] = (uint8_t)n;
        memset(tail + 5, 0xc0, n);
        expect_tail(tail, 5 + n, n > SNAPSHOT_FILES_MAX ? SHOAL_ELIMIT : SHOAL_EFORMAT, __LINE__);
        free(tail);
    }

    /* SNAPSHOT_FILES_MAX real files build, encode and decode; one more does not add. */
    CHECK_EQ(snapshot_init(&s, "model/org/name", COMMIT_A), 0);
    for (i = 0; i < SNAPSHOT_FILES_MAX; i++) {
        snprintf(path, sizeof(path), "f%06zu", i);
        CHECK_EQ(snapshot_add(&s, path, i, sha, ETAG_40), 0);
    }
    CHECK_EQ(snapshot_add(&s, "g", 1, sha, ETAG_40), SHOAL_ELIMIT);
    CHECK_EQ(s.n_files, SNAPSHOT_FILES_MAX);
    CHECK_EQ(snapshot_finish(&s), 0);
    CHECK_EQ(snapshot_encode(&s, &buf, &len), 0);
    CHECK_EQ(snapshot_decode(&d, buf, len), 0);
    CHECK_EQ(d.n_files, SNAPSHOT_FILES_MAX);
    CHECK(snapshot_find(&d, "f099999") == &d.files[SNAPSHOT_FILES_MAX - 1]);
    CHECK_EQ(snapshot_add(&d, "g", 1, sha, ETAG_40), SHOAL_ELIMIT);
    snapshot_release(&d);
    free(buf);
    snapshot_release(&s);
}

/* ---- Damaged input. */

static void test_truncation(void)
{
    struct snapshot s;
    uint8_t *buf, *cut;
    size_t len, n;
    int pass;

    for (pass = 0; pass < 2; pass++) {
        if (pass == 0) {
            buf = exact_copy(vector_snapshot, sizeof(vector_snapshot));
            len = sizeof(vector_snapshot);
        } else {
            build_shuffled(&s, 12, 5);
            CHECK_EQ(snapshot_encode(&s, &buf, &len), 0);
            snapshot_release(&s);
        }
        for (n = 0; n < len; n++) {
            cut = exact_copy(buf, n);
            CHECK_EQ(snapshot_decode(&s, cut, n), SHOAL_EFORMAT);
            CHECK_EQ(mp_check(cut, n, PROTO_MAX_DEPTH), SHOAL_EFORMAT);
            free(cut);
        }
        free(buf);
    }
}

/* Damaged input fails with a decoder's error or decodes to a valid snapshot. */
static int decode_any(const uint8_t *buf, size_t len)
{
    struct snapshot s;
    int err;

    err = snapshot_decode(&s, buf, len);
    if (err == 0) {
        check_valid(&s);
        snapshot_release(&s);
        return 1;
    }
    CHECK(err == SHOAL_EFORMAT || err == SHOAL_EVERSION || err == SHOAL_ELIMIT);
    return 0;
}

static void test_bitflips(void)
{
    uint8_t *bad;
    size_t len = sizeof(vector_snapshot), bit;
    unsigned ok = 0;

    for (bit = 0; bit < 8 * len; bit++) {
        bad = exact_copy(vector_snapshot, len);
        flip(bad, bit);
        ok += (unsigned)decode_any(bad, len);
        free(bad);
    }
    /* The sha256 bytes carry no structure, so every flip in them still decodes. */
    CHECK(ok >= 8 * 2 * 32);
}

static void test_garbage(void)
{
    uint8_t *bad, junk[96];
    uint64_t st = 99, r;
    size_t len = sizeof(vector_snapshot), i, k, n;

    for (i = 0; i < 4000; i++) {
        bad = exact_copy(vector_snapshot, len);
        n = 1 + check_splitmix64(&st) % 4;
        for (k = 0; k < n; k++) {
            r = check_splitmix64(&st);
            bad[r % len] = (uint8_t)(r >> 32);
        }
        decode_any(bad, len);
        free(bad);
    }
    for (i = 0; i < 4000; i++) {
        n = check_splitmix64(&st) % sizeof(junk);
        check_fill_splitmix(junk, n, check_splitmix64(&st));
        bad = exact_copy(junk, n);
        decode_any(bad, n);
        free(bad);
    }
}

int main(void)
{
    RUN(test_path_names);
    RUN(test_repo_names);
    RUN(test_commit_etag_names);
    RUN(test_rev_names);
    RUN(test_repo_folder);
    RUN(test_build);
    RUN(test_encode_refuses);
    RUN(test_find);
    RUN(test_vector);
    RUN(test_roundtrip);
    RUN(test_rules);
    RUN(test_huge_counts);
    RUN(test_truncation);
    RUN(test_bitflips);
    RUN(test_garbage);
    return check_done();
}
