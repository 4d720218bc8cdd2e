/* test_cfg.c - shoald's configuration: defaults, sources, precedence, validation. */
#include "cfg.h"

#include "check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ARGS 32

static char why[512];

/* Loads from a NULL-terminated list of flags and an environment (NULL-terminated). */
static int load(struct cfg *c, char *const *env, ...)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    va_list ap;
    char *a;

    argv[argc++] = "shoald";
    va_start(ap, env);
    while ((a = va_arg(ap, char *)) != NULL) {
        CHECK(argc < MAX_ARGS - 1);
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    why[0] = '\0';
    return cfg_load(c, argc, argv, env, why, sizeof(why));
}

/* Expects failure with `err` and a message containing `part`. */
static void expect_err(int err, const char *part, int rc)
{
    CHECK_EQ(rc, err);
    if (!strstr(why, part)) {
        check__fail(__FILE__, __LINE__, "\"%s\" not in \"%s\"", part, why);
    }
}

#define expect_fail(part, env, rc) expect_err(-EINVAL, (part), (rc))

static char tmpl[4096];

/* A temp file holding `text` (len bytes); its path is returned in a static buffer. */
static const char *temp_file(const char *text, size_t len)
{
    const char *dir = getenv("TMPDIR");
    int fd;

    snprintf(tmpl, sizeof(tmpl), "%s/test_cfg.XXXXXX", dir && *dir ? dir : "/tmp");
    fd = mkstemp(tmpl);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, text, len), (long long)len);
    CHECK_EQ(close(fd), 0);
    return tmpl;
}

static char *const env0[] = {"HOME=/h/u", NULL};

static void test_defaults(void)
{
    struct cfg c;

    CHECK_EQ(load(&c, env0, "--data-dir", "/d", NULL), 0);
    CHECK_STR(c.data_dir, "/d");
    CHECK_STR(c.listen.host, "0.0.0.0");
    CHECK_EQ(c.listen.port, 7470);
    CHECK_STR(c.http.host, "127.0.0.1");
    CHECK_EQ(c.http.port, 7480);
    CHECK_EQ(c.n_join, 0);
    CHECK_STR(c.cluster_key, "/d/cluster.key");
    CHECK(c.zone == NULL);
    CHECK_STR(c.hub, "https://huggingface.co");
    CHECK_STR(c.token_file, "/h/u/.cache/huggingface/token");
    CHECK(c.token == NULL);
    CHECK_EQ(c.quota, 0);
    CHECK_EQ(c.min_free, 1ULL << 30);
    CHECK_EQ(c.hub_concurrency, 4);
    CHECK_EQ(c.hub_timeout, 30);
    CHECK(!c.peer_chacha_only);
    CHECK_EQ(c.store_writes, CFG_WRITES_AUTO);
    CHECK_EQ(c.log_level, CFG_LOG_INFO);
    CHECK(c.config == NULL);
    CHECK(!c.help && !c.version && !c.print_config);
    cfg_release(&c);

    /* No HOME: no token file default, not an error. */
    CHECK_EQ(load(&c, NULL, "--data-dir", "/d", NULL), 0);
    CHECK(c.token_file == NULL);
    cfg_release(&c);
}

static void test_flags(void)
{
    struct cfg c;

    CHECK_EQ(load(&c, env0, "--data-dir", "/data", "--listen", "10.0.0.1:1234", "--http",
                  "[::1]:8080", "--join", "a.example:7470,[fe80::1]:7,10.1.2.3:9", "--cluster-key",
                  "/k", "--zone", "rack=r1,dc=eu-1", "--hub", "http://hub.local:5000//",
                  "--token-file", "/t", "--quota", "10GiB", "--min-free", "5M", "--hub-concurrency",
                  "256", "--log-level", "debug", "--print-config", NULL),
             0);
    CHECK_STR(c.data_dir, "/data");
    CHECK_STR(c.listen.host, "10.0.0.1");
    CHECK_EQ(c.listen.port, 1234);
    CHECK_STR(c.http.host, "::1");
    CHECK_EQ(c.http.port, 8080);
    CHECK_EQ(c.n_join, 3);
    CHECK_STR(c.join[0].host, "a.example");
    CHECK_EQ(c.join[0].port, 7470);
    CHECK_STR(c.join[1].host, "fe80::1");
    CHECK_EQ(c.join[1].port, 7);
    CHECK_STR(c.join[2].host, "10.1.2.3");
    CHECK_STR(c.cluster_key, "/k");
    CHECK_STR(c.zone, "rack=r1,dc=eu-1");
    CHECK_STR(c.hub, "http://hub.local:5000");
    CHECK_STR(c.token_file, "/t");
    CHECK_EQ(c.quota, 10ULL << 30);
    CHECK_EQ(c.min_free, 5000000);
    CHECK_EQ(c.hub_concurrency, 256);
    CHECK_EQ(c.log_level, CFG_LOG_DEBUG);
    CHECK(c.print_config);
    cfg_release(&c);

    /* --flag=value, and port 0 for --listen and --http. */
    CHECK_EQ(load(&c, env0, "--data-dir=/e", "--listen=127.0.0.1:0", "--http=localhost:0",
                  "--quota=1K", "--log-level=error", NULL),
             0);
    CHECK_STR(c.data_dir, "/e");
    CHECK_EQ(c.listen.port, 0);
    CHECK_STR(c.http.host, "localhost");
    CHECK_EQ(c.quota, 1000);
    CHECK_EQ(c.log_level, CFG_LOG_ERROR);
    cfg_release(&c);

    /* --help and --version need nothing else. */
    CHECK_EQ(load(&c, env0, "--help", NULL), 0);
    CHECK(c.help);
    cfg_release(&c);
    /* Flags are still checked. */
    CHECK_EQ(load(&c, env0, "--version", "--bogus", NULL), -EINVAL);
    CHECK_EQ(load(&c, env0, "--version", NULL), 0);
    CHECK(c.version);
    cfg_release(&c);
}

static void test_sizes(void)
{
    static const struct {
        const char *in;
        uint64_t out;
    } ok[] = {
        {"0", 0},
        {"123", 123},
        {"1K", 1000},
        {"1KiB", 1024},
        {"2M", 2000000},
        {"2MiB", 2ULL << 20},
        {"3G", 3000000000ULL},
        {"3GiB", 3ULL << 30},
        {"4T", 4000000000000ULL},
        {"4TiB", 4ULL << 40},
        {"18446744073709551615", UINT64_MAX},
        {"16777215TiB", 16777215ULL << 40},
    };
    static const char *const bad[] = {"",
                                      "K",
                                      "-1",
                                      " 1",
                                      "1 K",
                                      "1X",
                                      "1.5G",
                                      "1KiBB",
                                      "18446744073709551616",
                                      "16777216TiB",
                                      "18446744073709552G",
                                      "99999999999999999999999"};
    struct cfg c;
    size_t i;
    char flag[64];

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(flag, sizeof(flag), "--quota=%s", ok[i].in);
        CHECK_EQ(load(&c, env0, "--data-dir", "/d", flag, NULL), 0);
        CHECK(c.quota == ok[i].out);
        cfg_release(&c);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(flag, sizeof(flag), "--min-free=%s", bad[i]);
        CHECK_EQ(load(&c, env0, "--data-dir", "/d", flag, NULL), -EINVAL);
        CHECK(strstr(why, "--min-free") != NULL);
    }
    expect_fail("--quota: \"1X\": unknown size suffix", env0,
                load(&c, env0, "--data-dir", "/d", "--quota", "1X", NULL));
    expect_fail("--quota: \"16777216TiB\": too large", env0,
                load(&c, env0, "--data-dir", "/d", "--quota", "16777216TiB", NULL));
    expect_fail("too large", env0,
                load(&c, env0, "--data-dir", "/d", "--quota", "18446744073709551616", NULL));
}

static void test_env(void)
{
    char *const env[] = {"HOME=/h",
                         "SHOAL_DATA_DIR=/envd",
                         "SHOAL_LISTEN=1.2.3.4:1",
                         "SHOAL_HTTP=[2001:db8::1]:2",
                         "SHOAL_JOIN=x:1",
                         "SHOAL_CLUSTER_KEY=/ck",
                         "SHOAL_ZONE=a=b",
                         "SHOAL_HUB=https://h.example/",
                         "SHOAL_TOKEN_FILE=/tf",
                         "SHOAL_QUOTA=7",
                         "SHOAL_MIN_FREE=8",
                         "SHOAL_HUB_CONCURRENCY=3",
                         "SHOAL_LOG_LEVEL=warn",
                         "SHOAL_EMPTY_IGNORED=",
                         NULL};
    struct cfg c;

    CHECK_EQ(load(&c, env, NULL), 0);
    CHECK_STR(c.data_dir, "/envd");
    CHECK_STR(c.listen.host, "1.2.3.4");
    CHECK_EQ(c.listen.port, 1);
    CHECK_STR(c.http.host, "2001:db8::1");
    CHECK_EQ(c.n_join, 1);
    CHECK_STR(c.join[0].host, "x");
    CHECK_STR(c.cluster_key, "/ck");
    CHECK_STR(c.zone, "a=b");
    CHECK_STR(c.hub, "https://h.example");
    CHECK_STR(c.token_file, "/tf");
    CHECK_EQ(c.quota, 7);
    CHECK_EQ(c.min_free, 8);
    CHECK_EQ(c.hub_concurrency, 3);
    CHECK_EQ(c.log_level, CFG_LOG_WARN);
    cfg_release(&c);

    /* Bad values name the variable. */
    {
        char *const e1[] = {"SHOAL_DATA_DIR=/d", "SHOAL_HUB_CONCURRENCY=0", NULL};
        char *const e2[] = {"SHOAL_DATA_DIR=/d", "SHOAL_LISTEN=1.2.3.4", NULL};

        expect_fail("SHOAL_HUB_CONCURRENCY: \"0\": must be a number from 1 to 256", e1,
                    load(&c, e1, NULL));
        expect_fail("SHOAL_LISTEN: \"1.2.3.4\": expected ADDR:PORT", e2, load(&c, e2, NULL));
    }
}

static void test_hf_env(void)
{
    char *const e1[] = {"HF_ENDPOINT=http://mirror.local:8080/",
                        "HF_TOKEN=hf_secret123",
                        "HF_TOKEN_PATH=/p/tok",
                        "HF_HOME=/hfh",
                        "HOME=/h",
                        NULL};
    char *const e2[] = {"HF_HOME=/hfh", "HOME=/h", "HF_ENDPOINT=", NULL};
    char *const e3[] = {"HF_ENDPOINT=ftp://x", NULL};
    char *const e4[] = {"HF_TOKEN=a b", NULL};
    struct cfg c;

    CHECK_EQ(load(&c, e1, "--data-dir", "/d", NULL), 0);
    CHECK_STR(c.hub, "http://mirror.local:8080");
    CHECK_STR(c.token, "hf_secret123");
    CHECK_STR(c.token_file, "/p/tok");
    cfg_release(&c);
    /* --hub and --token-file win over HF_ENDPOINT and HF_TOKEN_PATH. */
    CHECK_EQ(
        load(&c, e1, "--data-dir", "/d", "--hub", "https://o.example", "--token-file", "/o", NULL),
        0);
    CHECK_STR(c.hub, "https://o.example");
    CHECK_STR(c.token_file, "/o");
    cfg_release(&c);

    CHECK_EQ(load(&c, e2, "--data-dir", "/d", NULL), 0);
    CHECK_STR(c.hub, "https://huggingface.co");
    CHECK_STR(c.token_file, "/hfh/token");
    CHECK(c.token == NULL);
    cfg_release(&c);

    expect_fail("HF_ENDPOINT: \"ftp://x\": must start with http:// or https://", e3,
                load(&c, e3, "--data-dir", "/d", NULL));
    expect_fail("HF_TOKEN: contains white space", e4, load(&c, e4, "--data-dir", "/d", NULL));
    CHECK(strstr(why, "a b") == NULL);
    expect_fail("--hub: \"https://\": no host", env0,
                load(&c, env0, "--data-dir", "/d", "--hub", "https://", NULL));
}

static void test_file(void)
{
    static const char text[] = "# a comment\n"
                               "\n"
                               "   data_dir = /fd  \n"
                               "listen=0.0.0.0:1\r\n"
                               "http = 127.0.0.1:2\n"
                               "join = h1:1,h2:2\n"
                               "cluster_key = /fk\n"
                               "zone = z=1\n"
                               "hub = https://f.example\n"
                               "token_file = /f#t\n"
                               "quota = 1MiB\n"
                               "min_free = 2KiB\n"
                               "hub_concurrency = 4\n"
                               "hub_timeout = 7\n"
                               "peer_cipher = chacha\n"
                               "store_writes = direct\n"
                               "log_level = error\n";
    char path[4096];
    char cfgflag[4200];
    struct cfg c;

    snprintf(path, sizeof(path), "%s", temp_file(text, sizeof(text) - 1));
    snprintf(cfgflag, sizeof(cfgflag), "--config=%s", path);
    CHECK_EQ(load(&c, env0, cfgflag, NULL), 0);
    CHECK_STR(c.config, path);
    CHECK_STR(c.data_dir, "/fd");
    CHECK_EQ(c.listen.port, 1);
    CHECK_EQ(c.http.port, 2);
    CHECK_EQ(c.n_join, 2);
    CHECK_STR(c.join[1].host, "h2");
    CHECK_STR(c.cluster_key, "/fk");
    CHECK_STR(c.zone, "z=1");
    CHECK_STR(c.hub, "https://f.example");
    CHECK_STR(c.token_file, "/f#t");
    CHECK_EQ(c.quota, 1 << 20);
    CHECK_EQ(c.min_free, 2048);
    CHECK_EQ(c.hub_concurrency, 4);
    CHECK_EQ(c.hub_timeout, 7);
    CHECK(c.peer_chacha_only);
    CHECK_EQ(c.store_writes, CFG_WRITES_DIRECT);
    CHECK_EQ(c.log_level, CFG_LOG_ERROR);
    cfg_release(&c);

    /* Precedence: flag > environment > file > default. */
    {
        char cfgenv[4200];
        char *const env[] = {cfgenv, "SHOAL_HUB_CONCURRENCY=5", "SHOAL_LOG_LEVEL=warn",
                             "SHOAL_DATA_DIR=/ed", NULL};

        snprintf(cfgenv, sizeof(cfgenv), "SHOAL_CONFIG=%s", path);
        CHECK_EQ(load(&c, env, "--log-level", "debug", NULL), 0);
        CHECK_EQ(c.log_level, CFG_LOG_DEBUG); /* flag */
        CHECK_EQ(c.hub_concurrency, 5);       /* environment */
        CHECK_STR(c.data_dir, "/ed");         /* environment */
        CHECK_EQ(c.quota, 1 << 20);           /* file */
        CHECK_STR(c.cluster_key, "/fk");      /* file */
        CHECK(c.token_file != NULL);
        cfg_release(&c);
    }
    CHECK_EQ(unlink(path), 0);

    /* A named config file that does not exist is an error. */
    expect_err(-ENOENT, "--config: ", load(&c, env0, cfgflag, NULL));
}

/* DATA_DIR/shoald.conf is read when it exists. */
static void test_data_dir_conf(void)
{
    const char *dir = getenv("TMPDIR");
    char d[4096], conf[4200];
    struct cfg c;
    FILE *f;

    snprintf(d, sizeof(d), "%s/test_cfg.XXXXXX", dir && *dir ? dir : "/tmp");
    CHECK(mkdtemp(d) != NULL);
    CHECK_EQ(load(&c, env0, "--data-dir", d, NULL), 0);
    CHECK(c.config == NULL);
    cfg_release(&c);

    snprintf(conf, sizeof(conf), "%s/shoald.conf", d);
    f = fopen(conf, "w");
    CHECK(f != NULL);
    fprintf(f, "hub_concurrency = 9\n");
    CHECK_EQ(fclose(f), 0);
    CHECK_EQ(load(&c, env0, "--data-dir", d, NULL), 0);
    CHECK_STR(c.config, conf);
    CHECK_EQ(c.hub_concurrency, 9);
    cfg_release(&c);
    CHECK_EQ(unlink(conf), 0);
    CHECK_EQ(rmdir(d), 0);
}

/* Loads `text` as the config file; returns cfg_load's result. */
static int load_text(struct cfg *c, const char *text, size_t len, char *path, size_t path_len)
{
    char flag[4200];
    int rc;

    snprintf(path, path_len, "%s", temp_file(text, len));
    snprintf(flag, sizeof(flag), "--config=%s", path);
    rc = load(c, env0, "--data-dir", "/d", flag, NULL);
    CHECK_EQ(unlink(path), 0);
    return rc;
}

static void expect_file_fail(const char *text, size_t len, const char *part)
{
    char path[4096], want[4400];
    struct cfg c;

    CHECK_EQ(load_text(&c, text, len, path, sizeof(path)), -EINVAL);
    snprintf(want, sizeof(want), "%s:%s", path, part);
    if (!strstr(why, want)) {
        check__fail(__FILE__, __LINE__, "\"%s\" not in \"%s\"", want, why);
    }
}

static void test_file_errors(void)
{
    static const char unknown[] = "quota = 1\n# x\nbogus_key = 1\n";
    static const char noeq[] = "quota 1\n";
    static const char bad[] = "\n\nlisten = 1.2.3.4:70000\n";
    static const char config[] = "config = /x\n";
    static const char empty[] = "quota =\n";
    static const char badutf[] = "quota = 1\nzone = a=\xff\n";
    size_t big = 4097;
    char *text;
    char path[4096];
    struct cfg c;

    expect_file_fail(unknown, sizeof(unknown) - 1, "3: unknown key \"bogus_key\"");
    expect_file_fail(noeq, sizeof(noeq) - 1, "1: expected key = value");
    expect_file_fail(bad, sizeof(bad) - 1, "3: listen: \"1.2.3.4:70000\": port must be");
    expect_file_fail(config, sizeof(config) - 1, "1: unknown key \"config\"");
    expect_file_fail(empty, sizeof(empty) - 1, "1: quota: empty value");
    expect_file_fail(badutf, sizeof(badutf) - 1, "2: not UTF-8 text");

    /* A line of 4096 bytes is fine, 4097 is not. */
    text = check_malloc(CFG_FILE_MAX + 16);
    memset(text, '#', big);
    text[big] = '\n';
    expect_file_fail(text, big + 1, "1: line longer than 4096 bytes");
    CHECK_EQ(load_text(&c, text, big, path, sizeof(path)), -EINVAL);
    CHECK_EQ(load_text(&c, text + 1, big - 1, path, sizeof(path)), 0);
    cfg_release(&c);

    /* 1 MiB is fine, one byte more is not. */
    memset(text, '\n', CFG_FILE_MAX + 1);
    CHECK_EQ(load_text(&c, text, CFG_FILE_MAX, path, sizeof(path)), 0);
    cfg_release(&c);
    CHECK_EQ(load_text(&c, text, CFG_FILE_MAX + 1, path, sizeof(path)), -EINVAL);
    CHECK(strstr(why, "file larger than 1048576 bytes") != NULL);
    free(text);
}

static void test_errors(void)
{
    struct cfg c;
    char join[64 * 8 + 16];
    size_t i, n = 0;

    memset(&c, 0x5a, sizeof(c));
    expect_fail("unknown option \"--nope\"", env0, load(&c, env0, "--nope", NULL));
    /* Out-parameter untouched on failure. */
    CHECK_EQ(c.hub_concurrency, 0x5a5a5a5a);
    expect_fail("unknown option \"--nope\"", env0, load(&c, env0, "--nope=1", NULL));
    expect_fail("--quota needs a value", env0, load(&c, env0, "--data-dir", "/d", "--quota", NULL));
    expect_fail("--data-dir needs a value", env0,
                load(&c, env0, "--data-dir", "--listen", "1.2.3.4:5", NULL));
    expect_fail("--help takes no value", env0, load(&c, env0, "--help=1", NULL));
    expect_fail("unexpected argument \"extra\"", env0, load(&c, env0, "extra", NULL));
    expect_fail("--data-dir is required", env0, load(&c, env0, NULL));
    expect_fail("--data-dir: empty path", env0, load(&c, env0, "--data-dir=", NULL));

    expect_fail("--listen: \"1.2.3.4:0x10\": port must be a number from 0 to 65535", env0,
                load(&c, env0, "--data-dir", "/d", "--listen", "1.2.3.4:0x10", NULL));
    expect_fail("--listen: \"1.2.3.4:65536\": port", env0,
                load(&c, env0, "--data-dir", "/d", "--listen", "1.2.3.4:65536", NULL));
    expect_fail("--http: \"h:\": port", env0,
                load(&c, env0, "--data-dir", "/d", "--http", "h:", NULL));
    expect_fail("--join: \"h:0\": port must be a number from 1 to 65535", env0,
                load(&c, env0, "--data-dir", "/d", "--join", "h:0", NULL));
    expect_fail("--listen: \"1.2.3.256:1\": bad IPv4 address", env0,
                load(&c, env0, "--data-dir", "/d", "--listen", "1.2.3.256:1", NULL));
    expect_fail("--listen: \"bad_host:1\": bad host name", env0,
                load(&c, env0, "--data-dir", "/d", "--listen", "bad_host:1", NULL));
    expect_fail("--listen: \"-x:1\": bad host name", env0,
                load(&c, env0, "--data-dir", "/d", "--listen", "-x:1", NULL));
    expect_fail("--listen: \"::1:5\": put an IPv6 address in brackets", env0,
                load(&c, env0, "--data-dir", "/d", "--listen", "::1:5", NULL));
    expect_fail("--listen: \"[::g]:5\": bad IPv6 address", env0,
                load(&c, env0, "--data-dir", "/d", "--listen", "[::g]:5", NULL));
    expect_fail("--listen: \"[::1]5\": expected [IPv6]:PORT", env0,
                load(&c, env0, "--data-dir", "/d", "--listen", "[::1]5", NULL));
    expect_fail("--join: empty entry", env0,
                load(&c, env0, "--data-dir", "/d", "--join", "a:1,,b:2", NULL));
    expect_fail("--log-level: \"loud\": must be error, warn, info or debug", env0,
                load(&c, env0, "--data-dir", "/d", "--log-level", "loud", NULL));
    expect_fail("--hub-concurrency: \"257\": must be a number from 1 to 256", env0,
                load(&c, env0, "--data-dir", "/d", "--hub-concurrency", "257", NULL));
    expect_fail("--store-writes: \"fast\": must be auto, buffered or direct", env0,
                load(&c, env0, "--data-dir", "/d", "--store-writes", "fast", NULL));
    expect_fail("--peer-cipher: \"aes\": must be auto or chacha", env0,
                load(&c, env0, "--data-dir", "/d", "--peer-cipher", "aes", NULL));
    expect_fail("--hub-timeout: \"0\": must be a number of seconds from 1 to 3600", env0,
                load(&c, env0, "--data-dir", "/d", "--hub-timeout", "0", NULL));
    expect_fail("--zone: \"Rack=1\": key and value must be", env0,
                load(&c, env0, "--data-dir", "/d", "--zone", "Rack=1", NULL));
    expect_fail("--zone: \"rack\": expected key=value", env0,
                load(&c, env0, "--data-dir", "/d", "--zone", "rack", NULL));
    expect_fail("--zone: label \"a\" given twice", env0,
                load(&c, env0, "--data-dir", "/d", "--zone", "a=1,a=2", NULL));
    expect_fail("--hub: \"huggingface.co\": must start with http:// or https://", env0,
                load(&c, env0, "--data-dir", "/d", "--hub", "huggingface.co", NULL));

    /* 64 --join entries are fine, 65 are not. */
    for (i = 0; i < 64; i++) {
        n += (size_t)snprintf(join + n, sizeof(join) - n, "%sh:%zu", i ? "," : "", i + 1);
    }
    CHECK_EQ(load(&c, env0, "--data-dir", "/d", "--join", join, NULL), 0);
    CHECK_EQ(c.n_join, 64);
    cfg_release(&c);
    snprintf(join + n, sizeof(join) - n, ",h:99");
    expect_fail("--join: more than 64 entries", env0,
                load(&c, env0, "--data-dir", "/d", "--join", join, NULL));
}

static bool same_addr(const struct cfg_addr *a, const struct cfg_addr *b)
{
    return strcmp(a->host, b->host) == 0 && a->port == b->port;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void test_dump(void)
{
    char *const env[] = {"HF_TOKEN=hf_TopSecretValue", "HOME=/h", NULL};
    struct cfg a, b;
    char *buf = NULL;
    size_t len = 0, i;
    char path[4096], flag[4200];
    FILE *f;

    CHECK_EQ(load(&a, env, "--data-dir", "/d d", "--listen", "[::]:0", "--join",
                  "n1.example:7470,[fe80::2]:9,10.0.0.3:7", "--zone", "rack=r2,row=3", "--hub",
                  "http://hub:1/", "--quota", "3GiB", "--min-free", "0", "--hub-concurrency", "2",
                  "--log-level", "warn", NULL),
             0);
    f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    CHECK_EQ(cfg_dump(&a, f), 0);
    CHECK_EQ(fclose(f), 0);
    CHECK(strstr(buf, "TopSecret") == NULL);
    CHECK(strstr(buf, "<set>") != NULL);
    CHECK(strstr(buf, "join = n1.example:7470,[fe80::2]:9,10.0.0.3:7\n") != NULL);

    snprintf(path, sizeof(path), "%s", temp_file(buf, len));
    snprintf(flag, sizeof(flag), "--config=%s", path);
    CHECK_EQ(load(&b, env, flag, NULL), 0);
    CHECK_EQ(unlink(path), 0);
    CHECK_STR(a.data_dir, b.data_dir);
    CHECK(same_addr(&a.listen, &b.listen));
    CHECK(same_addr(&a.http, &b.http));
    CHECK_EQ(a.n_join, b.n_join);
    for (i = 0; i < a.n_join; i++) {
        CHECK(same_addr(&a.join[i], &b.join[i]));
    }
    CHECK(same_str(a.cluster_key, b.cluster_key));
    CHECK(same_str(a.zone, b.zone));
    CHECK(same_str(a.hub, b.hub));
    CHECK(same_str(a.token_file, b.token_file));
    CHECK(same_str(a.token, b.token));
    CHECK_EQ(a.quota, b.quota);
    CHECK_EQ(a.min_free, b.min_free);
    CHECK_EQ(a.hub_concurrency, b.hub_concurrency);
    CHECK_EQ(a.log_level, b.log_level);
    cfg_release(&b);
    cfg_release(&a);
    free(buf);

    /* Defaults round-trip too (no join, no zone, no token). */
    buf = NULL;
    CHECK_EQ(load(&a, env0, "--data-dir", "/d", NULL), 0);
    f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    CHECK_EQ(cfg_dump(&a, f), 0);
    CHECK_EQ(fclose(f), 0);
    CHECK(strstr(buf, "<not set>") != NULL);
    snprintf(path, sizeof(path), "%s", temp_file(buf, len));
    snprintf(flag, sizeof(flag), "--config=%s", path);
    CHECK_EQ(load(&b, env0, flag, NULL), 0);
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(b.n_join, 0);
    CHECK(b.zone == NULL);
    CHECK_STR(a.cluster_key, b.cluster_key);
    CHECK_EQ(a.min_free, b.min_free);
    cfg_release(&b);
    cfg_release(&a);
    free(buf);
}

static void test_usage(void)
{
    static const char *const words[] = {
        "--data-dir",      "SHOAL_DATA_DIR",    "data_dir",
        "--listen",        "SHOAL_LISTEN",      "7470",
        "--http",          "127.0.0.1:7480",    "--join",
        "SHOAL_JOIN",      "--cluster-key",     "cluster_key",
        "--zone",          "SHOAL_ZONE",        "--hub",
        "HF_ENDPOINT",     "--token-file",      "HF_TOKEN_PATH",
        "--quota",         "SHOAL_QUOTA",       "--min-free",
        "min_free",        "--hub-concurrency", "SHOAL_HUB_CONCURRENCY",
        "hub_concurrency", "--log-level",       "SHOAL_LOG_LEVEL",
        "--config",        "SHOAL_CONFIG",      "--print-config",
        "--help",          "--version",         "HF_TOKEN"};
    size_t i;

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        CHECK(strstr(cfg_usage(), words[i]) != NULL);
    }
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_flags);
    RUN(test_sizes);
    RUN(test_env);
    RUN(test_hf_env);
    RUN(test_file);
    RUN(test_data_dir_conf);
    RUN(test_file_errors);
    RUN(test_errors);
    RUN(test_dump);
    RUN(test_usage);
    return check_done();
}
