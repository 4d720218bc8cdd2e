/* test_deps.c - the five libraries Shoal builds on link and work in this build
 * (including under AddressSanitizer), with the features Shoal relies on.
 *
 * Only this test and store/ include RocksDB; it goes once store/ has its own tests.
 */
#include "check.h"
#include "sha256.h"

#include <curl/curl.h>
#include <msgpack.h>
#include <rocksdb/c.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static void test_sodium(void)
{
    uint8_t a[32], b[32];

    CHECK(sodium_init() >= 0);
    randombytes_buf(a, sizeof(a));
    randombytes_buf(b, sizeof(b));
    CHECK(memcmp(a, b, sizeof(a)) != 0);
}

static void on_timer(uv_timer_t *t)
{
    *(int *)t->data += 1;
}

static void test_uv(void)
{
    uv_loop_t loop;
    uv_timer_t t;
    int fired = 0;

    CHECK_EQ(uv_loop_init(&loop), 0);
    CHECK_EQ(uv_timer_init(&loop, &t), 0);
    t.data = &fired;
    CHECK_EQ(uv_timer_start(&t, on_timer, 1, 0), 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(fired, 1);
    uv_close((uv_handle_t *)&t, NULL);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(uv_loop_close(&loop), 0);
}

/* The node needs HTTP/2 for the hub and unix sockets for the control API. */
static void test_curl(void)
{
    curl_version_info_data *v;

    CHECK_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    v = curl_version_info(CURLVERSION_NOW);
    CHECK(v->features & CURL_VERSION_HTTP2);
    CHECK(v->features & CURL_VERSION_UNIX_SOCKETS);
    CHECK(v->features & CURL_VERSION_SSL);
    curl_global_cleanup();
}

static void test_rocksdb(void)
{
    char dir[] = "/tmp/shoal-deps-XXXXXX", *err = NULL, *val;
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_t *db;
    size_t len;

    CHECK(mkdtemp(dir) != NULL);
    rocksdb_options_set_create_if_missing(o, 1);
    db = rocksdb_open(o, dir, &err);
    CHECK(err == NULL && db != NULL);
    rocksdb_put(db, wo, "k", 1, "value", 5, &err);
    CHECK(err == NULL);
    val = rocksdb_get(db, ro, "k", 1, &len, &err);
    CHECK(err == NULL && val != NULL && len == 5 && memcmp(val, "value", 5) == 0);
    rocksdb_free(val);
    rocksdb_close(db);
    rocksdb_destroy_db(o, dir, &err);
    CHECK(err == NULL);
    rmdir(dir);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_options_destroy(o);
}

static void test_msgpack(void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked up;
    size_t off = 0;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, UINT64_C(1) << 40);
    msgpack_pack_bin(&pk, 3);
    msgpack_pack_bin_body(&pk, "abc", 3);
    msgpack_unpacked_init(&up);
    CHECK_EQ(msgpack_unpack_next(&up, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ(off, sb.size);
    CHECK(up.data.type == MSGPACK_OBJECT_ARRAY && up.data.via.array.size == 2);
    CHECK(up.data.via.array.ptr[0].via.u64 == UINT64_C(1) << 40);
    CHECK(up.data.via.array.ptr[1].via.bin.size == 3);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

/* FIPS 180-2 example: sha256("abc"), through OpenSSL's libcrypto. */
static void test_sha256(void)
{
    static const uint8_t want[SHA256_LEN] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
        0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
        0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
    };
    uint8_t got[SHA256_LEN];

    CHECK_EQ(sha256_digest("abc", 3, got), 0);
    CHECK_MEM(got, want, SHA256_LEN);
}

int main(void)
{
    RUN(test_sodium);
    RUN(test_uv);
    RUN(test_curl);
    RUN(test_rocksdb);
    RUN(test_msgpack);
    RUN(test_sha256);
    return check_done();
}
