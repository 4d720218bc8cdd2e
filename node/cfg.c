/* cfg.c - shoald's settings from flags, environment, config file and defaults. */
#include "cfg.h"

#include "err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum cfg_opt_id {
    CFG_O_DATA_DIR,
    CFG_O_LISTEN,
    CFG_O_HTTP,
    CFG_O_JOIN,
    CFG_O_CLUSTER_KEY,
    CFG_O_ZONE,
    CFG_O_HUB,
    CFG_O_TOKEN_FILE,
    CFG_O_QUOTA,
    CFG_O_MIN_FREE,
    CFG_O_HUB_CONCURRENCY,
    CFG_O_HUB_TIMEOUT,
    CFG_O_PEER_CIPHER,
    CFG_O_STORE_WRITES,
    CFG_O_LOG_LEVEL,
    CFG_O_CONFIG,
    CFG_O_HELP,
    CFG_O_VERSION,
    CFG_O_PRINT_CONFIG,
    CFG_O_N,
};

/* One option: its flag, environment variable and config key. The booleans are flags
 * only: an action requested through the environment or a file would surprise. */
struct cfg_opt {
    const char *flag;
    const char *env;
    const char *key; /* NULL: not allowed in the config file */
    bool boolean;
};

static const struct cfg_opt cfg_opts[CFG_O_N] = {
    [CFG_O_DATA_DIR] = {"--data-dir", "SHOAL_DATA_DIR", "data_dir", false},
    [CFG_O_LISTEN] = {"--listen", "SHOAL_LISTEN", "listen", false},
    [CFG_O_HTTP] = {"--http", "SHOAL_HTTP", "http", false},
    [CFG_O_JOIN] = {"--join", "SHOAL_JOIN", "join", false},
    [CFG_O_CLUSTER_KEY] = {"--cluster-key", "SHOAL_CLUSTER_KEY", "cluster_key", false},
    [CFG_O_ZONE] = {"--zone", "SHOAL_ZONE", "zone", false},
    [CFG_O_HUB] = {"--hub", "SHOAL_HUB", "hub", false},
    [CFG_O_TOKEN_FILE] = {"--token-file", "SHOAL_TOKEN_FILE", "token_file", false},
    [CFG_O_QUOTA] = {"--quota", "SHOAL_QUOTA", "quota", false},
    [CFG_O_MIN_FREE] = {"--min-free", "SHOAL_MIN_FREE", "min_free", false},
    [CFG_O_HUB_CONCURRENCY] = {"--hub-concurrency", "SHOAL_HUB_CONCURRENCY", "hub_concurrency",
                               false},
    [CFG_O_HUB_TIMEOUT] = {"--hub-timeout", "SHOAL_HUB_TIMEOUT", "hub_timeout", false},
    [CFG_O_PEER_CIPHER] = {"--peer-cipher", "SHOAL_PEER_CIPHER", "peer_cipher", false},
    [CFG_O_STORE_WRITES] = {"--store-writes", "SHOAL_STORE_WRITES", "store_writes", false},
    [CFG_O_LOG_LEVEL] = {"--log-level", "SHOAL_LOG_LEVEL", "log_level", false},
    /* A config file naming another one would only hide where settings come from. */
    [CFG_O_CONFIG] = {"--config", "SHOAL_CONFIG", NULL, false},
    [CFG_O_HELP] = {"--help", NULL, NULL, true},
    [CFG_O_VERSION] = {"--version", NULL, NULL, true},
    [CFG_O_PRINT_CONFIG] = {"--print-config", NULL, NULL, true},
};

/* A raw value and where it came from, kept until validation so that each message can
 * name its source. */
struct cfg_raw {
    const char *val;
    const char *src; /* "--flag", "SHOAL_X" or NULL for the file */
    unsigned line;   /* config-file line when src is NULL */
};

struct cfg_ctx {
    struct cfg_raw flag[CFG_O_N];
    struct cfg_raw env[CFG_O_N];
    struct cfg_raw file[CFG_O_N];
    char *const *envp;
    char *file_buf; /* the config file; file values point into it */
    const char *file_path;
    char *why;
    size_t why_len;
};

static int cfg_fail(struct cfg_ctx *x, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_fail(struct cfg_ctx *x, int err, const char *fmt, ...)
{
    va_list ap;

    if (x->why && x->why_len > 0) {
        va_start(ap, fmt);
        vsnprintf(x->why, x->why_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* "--flag", "SHOAL_X" or "FILE:LINE: key" for messages. */
static const char *cfg_src(const struct cfg_ctx *x, const struct cfg_raw *r, const char *key,
                           char *buf, size_t len)
{
    if (r->src) {
        return r->src;
    }
    snprintf(buf, len, "%s:%u: %s", x->file_path ? x->file_path : "(config)", r->line, key);
    return buf;
}

static const char *cfg_getenv(char *const *envp, const char *name)
{
    size_t n = strlen(name);

    if (!envp) {
        return NULL;
    }
    for (; *envp; envp++) {
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') {
            /* An empty variable counts as unset, as `VAR= shoald` is how shells clear one. */
            return (*envp)[n + 1] ? *envp + n + 1 : NULL;
        }
    }
    return NULL;
}

/* --- value parsers --------------------------------------------------------------------- */

static bool cfg_has_ctrl(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return true;
        }
    }
    return false;
}

static int cfg_parse_path(struct cfg_ctx *x, const char *src, const char *v, char **out)
{
    size_t n = strlen(v);
    char *p;

    if (n == 0) {
        return cfg_fail(x, -EINVAL, "%s: empty path", src);
    }
    if (n >= CFG_PATH_MAX) {
        return cfg_fail(x, -EINVAL, "%s: path longer than %d bytes", src, CFG_PATH_MAX - 1);
    }
    /* The settings are printed as config-file lines, which cannot carry these. */
    if (cfg_has_ctrl(v)) {
        return cfg_fail(x, -EINVAL, "%s: path contains a control character", src);
    }
    if (isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1])) {
        return cfg_fail(x, -EINVAL, "%s: path starts or ends with white space", src);
    }
    p = strdup(v);
    if (!p) {
        return cfg_fail(x, -ENOMEM, "%s: out of memory", src);
    }
    *out = p;
    return 0;
}

static bool cfg_is_hostname(const char *h, size_t n)
{
    size_t i, label = 0;

    if (n == 0 || n > CFG_HOST_MAX) {
        return false;
    }
    for (i = 0; i < n; i++) {
        if (h[i] == '.') {
            if (label == 0 || h[i - 1] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)h[i]) && h[i] != '-') {
            return false;
        }
        if (label == 0 && h[i] == '-') {
            return false;
        }
        if (++label > 63) {
            return false;
        }
    }
    return label > 0 && h[n - 1] != '-';
}

/* Digits only (strtoull alone would take a sign and leading space), no overflow. */
static int cfg_parse_u64(const char *s, size_t n, uint64_t *out)
{
    char buf[32];
    char *end;
    unsigned long long v;
    size_t i;

    if (n == 0 || n >= sizeof(buf)) {
        return -ERANGE;
    }
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -EINVAL;
        }
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    v = strtoull(buf, &end, 10);
    if (errno == ERANGE || *end != '\0') {
        return -ERANGE;
    }
    *out = v;
    return 0;
}

/* ADDR:PORT where ADDR is a dotted quad, [IPv6] or a host name. */
static int cfg_parse_addr(struct cfg_ctx *x, const char *src, const char *v, size_t n, bool port0,
                          struct cfg_addr *out)
{
    const char *colon, *host;
    size_t hn;
    uint64_t port;
    char buf[CFG_HOST_MAX + 1];
    unsigned char bin[16];
    size_t i;
    bool dotted = true;

    if (n > 0 && v[0] == '[') {
        const char *close = memchr(v, ']', n);

        if (!close || close + 1 == v + n || close[1] != ':') {
            return cfg_fail(x, -EINVAL, "%s: \"%.*s\": expected [IPv6]:PORT", src, (int)n, v);
        }
        host = v + 1;
        hn = (size_t)(close - host);
        colon = close + 1;
        if (hn == 0 || hn >= sizeof(buf)) {
            return cfg_fail(x, -EINVAL, "%s: \"%.*s\": bad IPv6 address", src, (int)n, v);
        }
        memcpy(buf, host, hn);
        buf[hn] = '\0';
        if (inet_pton(AF_INET6, buf, bin) != 1) {
            return cfg_fail(x, -EINVAL, "%s: \"%.*s\": bad IPv6 address", src, (int)n, v);
        }
    } else {
        colon = memrchr(v, ':', n);
        if (!colon) {
            return cfg_fail(x, -EINVAL, "%s: \"%.*s\": expected ADDR:PORT", src, (int)n, v);
        }
        host = v;
        hn = (size_t)(colon - v);
        if (memchr(host, ':', hn)) {
            return cfg_fail(x, -EINVAL,
                            "%s: \"%.*s\": put an IPv6 address in brackets: [ADDR]:PORT", src,
                            (int)n, v);
        }
        if (hn == 0 || hn >= sizeof(buf)) {
            return cfg_fail(x, -EINVAL, "%s: \"%.*s\": bad address", src, (int)n, v);
        }
        memcpy(buf, host, hn);
        buf[hn] = '\0';
        for (i = 0; i < hn; i++) {
            if (!isdigit((unsigned char)host[i]) && host[i] != '.') {
                dotted = false;
            }
        }
        /* All digits and dots is meant as an IPv4 address, never as a host name. */
        if (dotted ? inet_pton(AF_INET, buf, bin) != 1 : !cfg_is_hostname(host, hn)) {
            return cfg_fail(x, -EINVAL, "%s: \"%.*s\": bad %s", src, (int)n, v,
                            dotted ? "IPv4 address" : "host name");
        }
    }
    if (cfg_parse_u64(colon + 1, (size_t)(v + n - colon - 1), &port) != 0 || port > 65535 ||
        (port == 0 && !port0)) {
        return cfg_fail(x, -EINVAL, "%s: \"%.*s\": port must be a number from %d to 65535", src,
                        (int)n, v, port0 ? 0 : 1);
    }
    memcpy(out->host, buf, hn + 1);
    out->port = (uint16_t)port;
    return 0;
}

int cfg_addr_parse(const char *what, const char *v, bool port0, struct cfg_addr *out,
                   char *why, size_t why_len)
{
    struct cfg_ctx x = {.why = why, .why_len = why_len};

    return cfg_parse_addr(&x, what, v, strlen(v), port0, out);
}

static int cfg_parse_join(struct cfg_ctx *x, const char *src, const char *v, struct cfg *c)
{
    const char *p = v, *comma;
    size_t n = 0, len;
    int err;

    for (;;) {
        comma = strchr(p, ',');
        len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0) {
            return cfg_fail(x, -EINVAL, "%s: empty entry in the list", src);
        }
        if (n == CFG_JOIN_MAX) {
            return cfg_fail(x, -EINVAL, "%s: more than %d entries", src, CFG_JOIN_MAX);
        }
        err = cfg_parse_addr(x, src, p, len, false, &c->join[n]);
        if (err) {
            return err;
        }
        n++;
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    c->n_join = n;
    return 0;
}

static bool cfg_is_label(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > CFG_LABEL_MAX) {
        return false;
    }
    for (i = 0; i < n; i++) {
        if (!(s[i] >= 'a' && s[i] <= 'z') && !isdigit((unsigned char)s[i]) && s[i] != '.' &&
            s[i] != '_' && s[i] != '-') {
            return false;
        }
    }
    return true;
}

static int cfg_parse_zone(struct cfg_ctx *x, const char *src, const char *v, char **out)
{
    const char *p = v, *comma, *eq, *q;
    const char *keys[CFG_ZONE_MAX];
    size_t klen[CFG_ZONE_MAX];
    size_t n = 0, len, i;
    char *z;

    for (;;) {
        comma = strchr(p, ',');
        len = comma ? (size_t)(comma - p) : strlen(p);
        if (n == CFG_ZONE_MAX) {
            return cfg_fail(x, -EINVAL, "%s: more than %d labels", src, CFG_ZONE_MAX);
        }
        eq = memchr(p, '=', len);
        if (!eq) {
            return cfg_fail(x, -EINVAL, "%s: \"%.*s\": expected key=value", src, (int)len, p);
        }
        q = eq + 1;
        if (!cfg_is_label(p, (size_t)(eq - p)) || !cfg_is_label(q, (size_t)(p + len - q))) {
            return cfg_fail(x, -EINVAL,
                            "%s: \"%.*s\": key and value must be 1 to %d of [a-z0-9._-]", src,
                            (int)len, p, CFG_LABEL_MAX);
        }
        for (i = 0; i < n; i++) {
            if (klen[i] == (size_t)(eq - p) && memcmp(keys[i], p, klen[i]) == 0) {
                return cfg_fail(x, -EINVAL, "%s: label \"%.*s\" given twice", src, (int)klen[i], p);
            }
        }
        keys[n] = p;
        klen[n] = (size_t)(eq - p);
        n++;
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    z = strdup(v);
    if (!z) {
        return cfg_fail(x, -ENOMEM, "%s: out of memory", src);
    }
    *out = z;
    return 0;
}

static int cfg_parse_url(struct cfg_ctx *x, const char *src, const char *v, char **out)
{
    size_t n = strlen(v), scheme, i;
    char *u;

    if (strncmp(v, "https://", 8) == 0) {
        scheme = 8;
    } else if (strncmp(v, "http://", 7) == 0) {
        scheme = 7;
    } else {
        return cfg_fail(x, -EINVAL, "%s: \"%s\": must start with http:// or https://", src, v);
    }
    if (n > CFG_URL_MAX) {
        return cfg_fail(x, -EINVAL, "%s: URL longer than %d bytes", src, CFG_URL_MAX);
    }
    for (i = 0; i < n; i++) {
        if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f) {
            return cfg_fail(x, -EINVAL, "%s: URL contains white space or a control character", src);
        }
    }
    /* Request paths are appended with their own leading slash. */
    while (n > scheme && v[n - 1] == '/') {
        n--;
    }
    if (n == scheme || v[scheme] == '/') {
        return cfg_fail(x, -EINVAL, "%s: \"%s\": no host in the URL", src, v);
    }
    u = strndup(v, n);
    if (!u) {
        return cfg_fail(x, -ENOMEM, "%s: out of memory", src);
    }
    *out = u;
    return 0;
}

struct cfg_unit {
    const char *name;
    uint64_t mult;
};

static const struct cfg_unit cfg_units[] = {
    {"", 1},
    {"B", 1},
    {"K", 1000ULL},
    {"KB", 1000ULL},
    {"M", 1000000ULL},
    {"MB", 1000000ULL},
    {"G", 1000000000ULL},
    {"GB", 1000000000ULL},
    {"T", 1000000000000ULL},
    {"TB", 1000000000000ULL},
    {"KiB", 1ULL << 10},
    {"MiB", 1ULL << 20},
    {"GiB", 1ULL << 30},
    {"TiB", 1ULL << 40},
};

static int cfg_parse_size(struct cfg_ctx *x, const char *src, const char *v, uint64_t *out)
{
    size_t digits = 0, i;
    uint64_t n;

    while (isdigit((unsigned char)v[digits])) {
        digits++;
    }
    if (digits == 0) {
        return cfg_fail(x, -EINVAL, "%s: \"%s\": expected a number of bytes", src, v);
    }
    if (cfg_parse_u64(v, digits, &n) != 0) {
        return cfg_fail(x, -EINVAL, "%s: \"%s\": too large", src, v);
    }
    for (i = 0; i < sizeof(cfg_units) / sizeof(cfg_units[0]); i++) {
        if (strcmp(v + digits, cfg_units[i].name) == 0) {
            if (n > UINT64_MAX / cfg_units[i].mult) {
                return cfg_fail(x, -EINVAL, "%s: \"%s\": too large", src, v);
            }
            *out = n * cfg_units[i].mult;
            return 0;
        }
    }
    return cfg_fail(x, -EINVAL,
                    "%s: \"%s\": unknown size suffix (use K, M, G, T, KiB, MiB, GiB or TiB)", src,
                    v);
}

static const char *const cfg_level_names[] = {"error", "warn", "info", "debug"};

const char *cfg_log_level_name(enum cfg_log_level l)
{
    if ((unsigned)l < sizeof(cfg_level_names) / sizeof(cfg_level_names[0])) {
        return cfg_level_names[l];
    }
    return "?";
}

/* --- sources --------------------------------------------------------------------------- */

static int cfg_find_flag(const char *name, size_t n)
{
    int i;

    for (i = 0; i < CFG_O_N; i++) {
        if (strlen(cfg_opts[i].flag) == n && memcmp(cfg_opts[i].flag, name, n) == 0) {
            return i;
        }
    }
    return -1;
}

static int cfg_read_flags(struct cfg_ctx *x, int argc, char **argv)
{
    int i, id;
    const char *a, *eq;
    size_t n;

    for (i = 1; i < argc; i++) {
        a = argv[i];
        if (strcmp(a, "-h") == 0) {
            a = "--help";
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            return cfg_fail(x, -EINVAL, "unexpected argument \"%s\" (see --help)", a);
        }
        eq = strchr(a, '=');
        n = eq ? (size_t)(eq - a) : strlen(a);
        id = cfg_find_flag(a, n);
        if (id < 0) {
            return cfg_fail(x, -EINVAL, "unknown option \"%.*s\" (see --help)", (int)n, a);
        }
        x->flag[id].src = cfg_opts[id].flag;
        if (cfg_opts[id].boolean) {
            if (eq) {
                return cfg_fail(x, -EINVAL, "%s takes no value", cfg_opts[id].flag);
            }
            x->flag[id].val = "1";
        } else if (eq) {
            x->flag[id].val = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            /* A following option means the value was forgotten; a value that really
             * starts with "--" can still be given as --opt=VALUE. */
            x->flag[id].val = argv[++i];
        } else {
            return cfg_fail(x, -EINVAL, "%s needs a value (see --help)", cfg_opts[id].flag);
        }
    }
    return 0;
}

static void cfg_read_env(struct cfg_ctx *x)
{
    int i;

    for (i = 0; i < CFG_O_N; i++) {
        if (cfg_opts[i].env) {
            x->env[i].val = cfg_getenv(x->envp, cfg_opts[i].env);
            x->env[i].src = cfg_opts[i].env;
        }
    }
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t cfg_utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    uint32_t cp;

    if (s[0] < 0x80) {
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
        return 0;
    }
    return len;
}

static int cfg_find_key(const char *k, size_t n)
{
    int i;

    for (i = 0; i < CFG_O_N; i++) {
        if (cfg_opts[i].key && strlen(cfg_opts[i].key) == n && memcmp(cfg_opts[i].key, k, n) == 0) {
            return i;
        }
    }
    return -1;
}

static int cfg_parse_file(struct cfg_ctx *x, char *buf, size_t len)
{
    const char *path = x->file_path;
    char *line = buf, *end, *eq, *k, *kend, *v, *vend;
    unsigned lineno = 0;
    size_t ll, i, u;
    int id;

    while (line < buf + len) {
        lineno++;
        end = memchr(line, '\n', (size_t)(buf + len - line));
        if (!end) {
            end = buf + len;
        }
        ll = (size_t)(end - line);
        if (ll > 0 && line[ll - 1] == '\r') {
            ll--;
        }
        if (ll > CFG_LINE_MAX) {
            return cfg_fail(x, -EINVAL, "%s:%u: line longer than %d bytes", path, lineno,
                            CFG_LINE_MAX);
        }
        for (i = 0; i < ll; i += u) {
            u = cfg_utf8_len((const unsigned char *)line + i, ll - i);
            if (u == 0 || line[i] == '\0') {
                return cfg_fail(x, -EINVAL, "%s:%u: not UTF-8 text", path, lineno);
            }
        }
        line[ll] = '\0';
        k = line;
        line = end + 1;
        while (*k == ' ' || *k == '\t') {
            k++;
        }
        /* '#' starts a comment only at the start of a line: paths may hold one. */
        if (*k == '\0' || *k == '#') {
            continue;
        }
        eq = strchr(k, '=');
        if (!eq) {
            return cfg_fail(x, -EINVAL, "%s:%u: expected key = value", path, lineno);
        }
        kend = eq;
        while (kend > k && (kend[-1] == ' ' || kend[-1] == '\t')) {
            kend--;
        }
        v = eq + 1;
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        vend = v + strlen(v);
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) {
            vend--;
        }
        *vend = '\0';
        id = cfg_find_key(k, (size_t)(kend - k));
        if (id < 0) {
            return cfg_fail(x, -EINVAL, "%s:%u: unknown key \"%.*s\"", path, lineno,
                            (int)(kend - k), k);
        }
        if (*v == '\0') {
            return cfg_fail(x, -EINVAL, "%s:%u: %s: empty value", path, lineno, cfg_opts[id].key);
        }
        x->file[id].val = v;
        x->file[id].src = NULL;
        x->file[id].line = lineno;
    }
    return 0;
}

/* Reads and parses the config file. `must`: a missing file is an error. */
static int cfg_read_file(struct cfg_ctx *x, const char *src, bool must)
{
    struct stat st;
    ssize_t r;
    size_t len = 0;
    int fd, err;

    fd = open(x->file_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = -errno;
        if (!must && err == -ENOENT) {
            x->file_path = NULL;
            return 0;
        }
        return cfg_fail(x, err, "%s: %s: %s", src, x->file_path, shoal_strerror(err));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cfg_fail(x, -EINVAL, "%s: %s: not a regular file", src, x->file_path);
    }
    if (st.st_size > (off_t)CFG_FILE_MAX) {
        close(fd);
        return cfg_fail(x, -EINVAL, "%s: file larger than %u bytes", x->file_path, CFG_FILE_MAX);
    }
    /* One byte more than the limit, to notice a file that grew since fstat. */
    x->file_buf = malloc(CFG_FILE_MAX + 2);
    if (!x->file_buf) {
        close(fd);
        return cfg_fail(x, -ENOMEM, "%s: out of memory", x->file_path);
    }
    for (;;) {
        r = read(fd, x->file_buf + len, CFG_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            err = -errno;
            close(fd);
            return cfg_fail(x, err, "%s: %s", x->file_path, shoal_strerror(err));
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
        if (len > CFG_FILE_MAX) {
            close(fd);
            return cfg_fail(x, -EINVAL, "%s: file larger than %u bytes", x->file_path,
                            CFG_FILE_MAX);
        }
    }
    close(fd);
    x->file_buf[len] = '\0';
    return cfg_parse_file(x, x->file_buf, len);
}

/* The effective raw value of option id: flag, else environment, else file; NULL if none. */
static const struct cfg_raw *cfg_pick(const struct cfg_ctx *x, int id)
{
    if (x->flag[id].val) {
        return &x->flag[id];
    }
    if (x->env[id].val) {
        return &x->env[id];
    }
    if (x->file[id].val) {
        return &x->file[id];
    }
    return NULL;
}

static int cfg_default_path(struct cfg_ctx *x, const char *src, const char *dir, const char *name,
                            char **out)
{
    char buf[CFG_PATH_MAX];
    int n;

    n = snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        return cfg_fail(x, -EINVAL, "%s: path longer than %d bytes", src, CFG_PATH_MAX - 1);
    }
    return cfg_parse_path(x, src, buf, out);
}

static int cfg_apply(struct cfg_ctx *x, struct cfg *c)
{
    const struct cfg_raw *r;
    char sbuf[CFG_PATH_MAX + 64];
    const char *src, *v;
    uint64_t n;
    int err, i;

#define SRC(id) cfg_src(x, r, cfg_opts[id].key, sbuf, sizeof(sbuf))

    r = cfg_pick(x, CFG_O_DATA_DIR);
    if (!r) {
        return cfg_fail(x, -EINVAL,
                        "--data-dir is required (or SHOAL_DATA_DIR, or data_dir in the config "
                        "file)");
    }
    err = cfg_parse_path(x, SRC(CFG_O_DATA_DIR), r->val, &c->data_dir);
    if (err) {
        return err;
    }
    r = cfg_pick(x, CFG_O_LISTEN);
    if (r) {
        err = cfg_parse_addr(x, SRC(CFG_O_LISTEN), r->val, strlen(r->val), true, &c->listen);
        if (err) {
            return err;
        }
    }
    r = cfg_pick(x, CFG_O_HTTP);
    if (r) {
        err = cfg_parse_addr(x, SRC(CFG_O_HTTP), r->val, strlen(r->val), true, &c->http);
        if (err) {
            return err;
        }
    }
    r = cfg_pick(x, CFG_O_JOIN);
    if (r) {
        err = cfg_parse_join(x, SRC(CFG_O_JOIN), r->val, c);
        if (err) {
            return err;
        }
    }
    r = cfg_pick(x, CFG_O_CLUSTER_KEY);
    if (r) {
        err = cfg_parse_path(x, SRC(CFG_O_CLUSTER_KEY), r->val, &c->cluster_key);
    } else {
        err = cfg_default_path(x, "--cluster-key (default under --data-dir)", c->data_dir,
                               "cluster.key", &c->cluster_key);
    }
    if (err) {
        return err;
    }
    r = cfg_pick(x, CFG_O_ZONE);
    if (r) {
        err = cfg_parse_zone(x, SRC(CFG_O_ZONE), r->val, &c->zone);
        if (err) {
            return err;
        }
    }
    r = cfg_pick(x, CFG_O_HUB);
    if (r) {
        err = cfg_parse_url(x, SRC(CFG_O_HUB), r->val, &c->hub);
    } else if ((v = cfg_getenv(x->envp, "HF_ENDPOINT")) != NULL) {
        err = cfg_parse_url(x, "HF_ENDPOINT", v, &c->hub);
    } else {
        err = cfg_parse_url(x, "--hub", CFG_HUB_DEFAULT, &c->hub);
    }
    if (err) {
        return err;
    }
    r = cfg_pick(x, CFG_O_TOKEN_FILE);
    if (r) {
        err = cfg_parse_path(x, SRC(CFG_O_TOKEN_FILE), r->val, &c->token_file);
    } else if ((v = cfg_getenv(x->envp, "HF_TOKEN_PATH")) != NULL) {
        err = cfg_parse_path(x, "HF_TOKEN_PATH", v, &c->token_file);
    } else if ((v = cfg_getenv(x->envp, "HF_HOME")) != NULL) {
        err = cfg_default_path(x, "HF_HOME", v, "token", &c->token_file);
    } else if ((v = cfg_getenv(x->envp, "HOME")) != NULL) {
        err = cfg_default_path(x, "HOME", v, ".cache/huggingface/token", &c->token_file);
    }
    if (err) {
        return err;
    }
    v = cfg_getenv(x->envp, "HF_TOKEN");
    if (v) {
        /* The value itself never goes into a message. */
        if (strlen(v) > CFG_TOKEN_MAX) {
            return cfg_fail(x, -EINVAL, "HF_TOKEN: longer than %d bytes", CFG_TOKEN_MAX);
        }
        for (i = 0; v[i]; i++) {
            if ((unsigned char)v[i] <= 0x20 || v[i] == 0x7f) {
                return cfg_fail(x, -EINVAL,
                                "HF_TOKEN: contains white space or a control character");
            }
        }
        c->token = strdup(v);
        if (!c->token) {
            return cfg_fail(x, -ENOMEM, "HF_TOKEN: out of memory");
        }
    }
    r = cfg_pick(x, CFG_O_QUOTA);
    if (r) {
        err = cfg_parse_size(x, SRC(CFG_O_QUOTA), r->val, &c->quota);
        if (err) {
            return err;
        }
    }
    r = cfg_pick(x, CFG_O_MIN_FREE);
    if (r) {
        err = cfg_parse_size(x, SRC(CFG_O_MIN_FREE), r->val, &c->min_free);
        if (err) {
            return err;
        }
    }
    r = cfg_pick(x, CFG_O_HUB_CONCURRENCY);
    if (r) {
        src = SRC(CFG_O_HUB_CONCURRENCY);
        if (cfg_parse_u64(r->val, strlen(r->val), &n) != 0 || n < 1 || n > 256) {
            return cfg_fail(x, -EINVAL, "%s: \"%s\": must be a number from 1 to 256", src, r->val);
        }
        c->hub_concurrency = (unsigned)n;
    }
    r = cfg_pick(x, CFG_O_HUB_TIMEOUT);
    if (r) {
        src = SRC(CFG_O_HUB_TIMEOUT);
        if (cfg_parse_u64(r->val, strlen(r->val), &n) != 0 || n < 1 || n > 3600) {
            return cfg_fail(x, -EINVAL, "%s: \"%s\": must be a number of seconds from 1 to 3600",
                            src, r->val);
        }
        c->hub_timeout = (unsigned)n;
    }
    r = cfg_pick(x, CFG_O_PEER_CIPHER);
    if (r) {
        src = SRC(CFG_O_PEER_CIPHER);
        if (strcmp(r->val, "auto") != 0 && strcmp(r->val, "chacha") != 0) {
            return cfg_fail(x, -EINVAL, "%s: \"%s\": must be auto or chacha", src, r->val);
        }
        c->peer_chacha_only = strcmp(r->val, "chacha") == 0;
    }
    r = cfg_pick(x, CFG_O_STORE_WRITES);
    if (r) {
        src = SRC(CFG_O_STORE_WRITES);
        if (strcmp(r->val, "auto") == 0)
            c->store_writes = CFG_WRITES_AUTO;
        else if (strcmp(r->val, "buffered") == 0)
            c->store_writes = CFG_WRITES_BUFFERED;
        else if (strcmp(r->val, "direct") == 0)
            c->store_writes = CFG_WRITES_DIRECT;
        else
            return cfg_fail(x, -EINVAL, "%s: \"%s\": must be auto, buffered or direct", src,
                            r->val);
    }
    r = cfg_pick(x, CFG_O_LOG_LEVEL);
    if (r) {
        src = SRC(CFG_O_LOG_LEVEL);
        for (i = 0; i < 4; i++) {
            if (strcmp(r->val, cfg_level_names[i]) == 0) {
                break;
            }
        }
        if (i == 4) {
            return cfg_fail(x, -EINVAL, "%s: \"%s\": must be error, warn, info or debug", src,
                            r->val);
        }
        c->log_level = (enum cfg_log_level)i;
    }
#undef SRC
    return 0;
}

static void cfg_defaults(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    memcpy(c->listen.host, "0.0.0.0", sizeof("0.0.0.0"));
    c->listen.port = 7470;
    memcpy(c->http.host, "127.0.0.1", sizeof("127.0.0.1"));
    c->http.port = 7480;
    c->min_free = 1ULL << 30;
    c->hub_concurrency = 4;
    c->hub_timeout = 30;
    c->log_level = CFG_LOG_INFO;
}

int cfg_load(struct cfg *c, int argc, char **argv, char *const *envp, char *why, size_t why_len)
{
    struct cfg_ctx x;
    struct cfg t;
    const struct cfg_raw *r;
    char *dflt = NULL;
    int err;

    memset(&x, 0, sizeof(x));
    x.envp = envp;
    x.why = why;
    x.why_len = why_len;
    cfg_defaults(&t);

    err = cfg_read_flags(&x, argc, argv);
    if (err) {
        return err;
    }
    t.help = x.flag[CFG_O_HELP].val != NULL;
    t.version = x.flag[CFG_O_VERSION].val != NULL;
    t.print_config = x.flag[CFG_O_PRINT_CONFIG].val != NULL;
    /* Help must work whatever state the environment or the config file is in. */
    if (t.help || t.version) {
        *c = t;
        return 0;
    }
    cfg_read_env(&x);

    r = cfg_pick(&x, CFG_O_CONFIG);
    if (r) {
        err = cfg_parse_path(&x, r->src, r->val, &t.config);
        if (err) {
            goto fail;
        }
        x.file_path = t.config;
        err = cfg_read_file(&x, r->src, true);
    } else if ((r = cfg_pick(&x, CFG_O_DATA_DIR)) != NULL) {
        err = cfg_default_path(&x, r->src, r->val, "shoald.conf", &dflt);
        if (err) {
            goto fail;
        }
        x.file_path = dflt;
        err = cfg_read_file(&x, r->src, false);
        if (!err && x.file_path) {
            t.config = dflt;
            dflt = NULL;
        }
    }
    if (err) {
        goto fail;
    }
    err = cfg_apply(&x, &t);
    if (err) {
        goto fail;
    }
    free(x.file_buf);
    free(dflt);
    *c = t;
    return 0;

fail:
    free(x.file_buf);
    free(dflt);
    cfg_release(&t);
    return err;
}

void cfg_release(struct cfg *c)
{
    free(c->data_dir);
    free(c->cluster_key);
    free(c->zone);
    free(c->hub);
    free(c->token_file);
    if (c->token) {
        /* Do not leave the secret in freed memory. */
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    free(c->config);
    memset(c, 0, sizeof(*c));
}

static void cfg_dump_addr(const struct cfg_addr *a, FILE *f)
{
    if (strchr(a->host, ':')) {
        fprintf(f, "[%s]:%u", a->host, (unsigned)a->port);
    } else {
        fprintf(f, "%s:%u", a->host, (unsigned)a->port);
    }
}

int cfg_dump(const struct cfg *c, FILE *f)
{
    size_t i;

    fprintf(f, "# shoald configuration (effective settings)\n");
    fprintf(f, "data_dir = %s\n", c->data_dir ? c->data_dir : "");
    fprintf(f, "listen = ");
    cfg_dump_addr(&c->listen, f);
    fprintf(f, "\nhttp = ");
    cfg_dump_addr(&c->http, f);
    fprintf(f, "\n");
    if (c->n_join == 0) {
        fprintf(f, "# join = (none: a cluster of one until joined)\n");
    } else {
        fprintf(f, "join = ");
        for (i = 0; i < c->n_join; i++) {
            if (i > 0) {
                fputc(',', f);
            }
            cfg_dump_addr(&c->join[i], f);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "cluster_key = %s\n", c->cluster_key ? c->cluster_key : "");
    if (c->zone) {
        fprintf(f, "zone = %s\n", c->zone);
    } else {
        fprintf(f, "# zone = (no labels)\n");
    }
    fprintf(f, "hub = %s\n", c->hub ? c->hub : "");
    if (c->token_file) {
        fprintf(f, "token_file = %s\n", c->token_file);
    } else {
        fprintf(f, "# token_file = (none)\n");
    }
    /* The token is a secret: only whether it is set is shown. */
    fprintf(f, "# token (from HF_TOKEN): %s\n", c->token ? "<set>" : "<not set>");
    fprintf(f, "quota = %llu\n", (unsigned long long)c->quota);
    fprintf(f, "min_free = %llu\n", (unsigned long long)c->min_free);
    fprintf(f, "hub_concurrency = %u\n", c->hub_concurrency);
    fprintf(f, "hub_timeout = %u\n", c->hub_timeout);
    fprintf(f, "peer_cipher = %s\n", c->peer_chacha_only ? "chacha" : "auto");
    fprintf(f, "store_writes = %s\n",
            (const char *[]){"auto", "buffered", "direct"}[c->store_writes]);
    fprintf(f, "log_level = %s\n", cfg_log_level_name(c->log_level));
    return ferror(f) ? -EIO : 0;
}

const char *cfg_usage(void)
{
    return "Usage: shoald --data-dir DIR [OPTION...]\n"
           "\n"
           "Runs a Shoal node. Each option can also be set by an environment variable or a\n"
           "config-file key; precedence: flag > environment > config file > default.\n"
           "Options take a value as `--opt VALUE` or `--opt=VALUE`.\n"
           "\n"
           "  --data-dir DIR           SHOAL_DATA_DIR, data_dir (required)\n"
           "      the node's store, control socket DIR/shoald.sock and default files\n"
           "  --listen ADDR:PORT       SHOAL_LISTEN, listen (default 0.0.0.0:7470)\n"
           "      peer port, TCP and UDP; port 0 picks a free one\n"
           "  --http ADDR:PORT         SHOAL_HTTP, http (default 127.0.0.1:7480)\n"
           "      HTTP front: Hub-compatible gateway and /metrics; port 0 picks a free one\n"
           "  --join HOST:PORT[,...]   SHOAL_JOIN, join (default none)\n"
           "      nodes to join, at most 64; without any the node is a cluster of one\n"
           "  --cluster-key FILE       SHOAL_CLUSTER_KEY, cluster_key (default DIR/cluster.key)\n"
           "      the cluster's shared key; created if missing\n"
           "  --zone LABELS            SHOAL_ZONE, zone (default none)\n"
           "      comma-separated key=value labels, each part 1-63 of [a-z0-9._-]\n"
           "  --hub URL                SHOAL_HUB, hub (default $HF_ENDPOINT, else\n"
           "                           https://huggingface.co)\n"
           "      the Hugging Face Hub to fetch from; http:// or https://\n"
           "  --token-file FILE        SHOAL_TOKEN_FILE, token_file (default $HF_TOKEN_PATH,\n"
           "                           else $HF_HOME/token, else ~/.cache/huggingface/token)\n"
           "      the Hub token file, used when $HF_TOKEN is not set\n"
           "  --quota BYTES            SHOAL_QUOTA, quota (default 0: none)\n"
           "      chunk data to keep at most; suffixes K M G T (1000) or KiB MiB GiB TiB (1024)\n"
           "  --min-free BYTES         SHOAL_MIN_FREE, min_free (default 1GiB)\n"
           "      space to leave free on the data directory's file system\n"
           "  --hub-concurrency N      SHOAL_HUB_CONCURRENCY, hub_concurrency (default 4)\n"
           "      Hub range requests in flight, 1 to 256; each holds a 16 MiB piece buffer\n"
           "  --peer-cipher auto|chacha SHOAL_PEER_CIPHER, peer_cipher (default auto)\n"
           "      auto: AES-256-GCM with peers when both CPUs have AES instructions, else\n"
           "      ChaCha20-Poly1305; chacha: always ChaCha20-Poly1305\n"
           "  --store-writes auto|buffered|direct SHOAL_STORE_WRITES, store_writes (default auto:\n"
           "                         direct I/O where the file system allows it)\n"
           "      direct: chunk data goes to disk without the page cache (less CPU per byte\n"
           "      received; recent data is then read from disk when served)\n"
           "  --hub-timeout SECONDS    SHOAL_HUB_TIMEOUT, hub_timeout (default 30)\n"
           "      a Hub transfer that receives nothing for this long is retried\n"
           "  --log-level LEVEL        SHOAL_LOG_LEVEL, log_level (default info)\n"
           "      error, warn, info or debug\n"
           "  --config FILE            SHOAL_CONFIG (default DIR/shoald.conf if it exists)\n"
           "      the config file: `key = value` lines, `#` comments\n"
           "  --print-config           print the effective configuration and exit\n"
           "  --help, -h               print this help and exit\n"
           "  --version                print the version and exit\n"
           "\n"
           "The Hub token comes from $HF_TOKEN if set, else from the token file.\n";
}
