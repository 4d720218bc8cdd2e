/* cfg.h - the configuration of the node daemon shoald.
 *
 * Every setting comes from, in order of precedence: a command-line flag, an environment
 * variable (SHOAL_ + the upper-case flag name, '-' -> '_'), the config file, the default.
 * docs/configuration.md lists them. cfg_load is pure apart from reading the config file:
 * the environment comes in as an array so tests can pass their own.
 */
#ifndef SHOAL_CFG_H
#define SHOAL_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_JOIN_MAX  64         /* --join entries */
#define CFG_ZONE_MAX  16         /* --zone labels */
#define CFG_LABEL_MAX 63         /* bytes in a zone label's key or value */
#define CFG_HOST_MAX  253        /* bytes in a host name (DNS limit) */
#define CFG_PATH_MAX  4096       /* bytes in a path setting */
#define CFG_URL_MAX   2048       /* bytes in --hub */
#define CFG_TOKEN_MAX 4096       /* bytes in $HF_TOKEN */
#define CFG_LINE_MAX  4096       /* bytes in a config-file line, without its newline */
#define CFG_FILE_MAX  (1u << 20) /* bytes in the config file */

#define CFG_HUB_DEFAULT "https://huggingface.co"

enum cfg_log_level {
    CFG_LOG_ERROR,
    CFG_LOG_WARN,
    CFG_LOG_INFO,
    CFG_LOG_DEBUG,
};

/* host is a name, a dotted quad or an IPv6 address (kept without its brackets). */
struct cfg_addr {
    char host[CFG_HOST_MAX + 1];
    uint16_t port;
};

/* --store-writes: how chunk bytes reach the disk (store.h, enum store_writes). */
enum cfg_store_writes { CFG_WRITES_AUTO, CFG_WRITES_BUFFERED, CFG_WRITES_DIRECT };

struct cfg {
    char *data_dir;                     /* required */
    struct cfg_addr listen;             /* peer port, TCP and UDP; 0.0.0.0:7470 */
    struct cfg_addr http;               /* 127.0.0.1:7480 */
    struct cfg_addr join[CFG_JOIN_MAX]; /* nodes to join; none: a cluster of one */
    size_t n_join;
    char *cluster_key;                /* DATA_DIR/cluster.key */
    char *zone;                       /* "k=v,k=v" as validated; NULL: no labels */
    char *hub;                        /* no trailing slash; $HF_ENDPOINT or the Hub */
    char *token_file;                 /* NULL when no default could be formed */
    char *token;                      /* $HF_TOKEN; NULL if unset. Never printed. */
    uint64_t quota;                   /* bytes; 0: none */
    uint64_t min_free;                /* bytes; 1 GiB */
    unsigned hub_concurrency;         /* 1..256; 4 */
    unsigned hub_timeout;             /* seconds without a byte = stalled; 30 */
    bool peer_chacha_only;            /* --peer-cipher chacha; default auto */
    enum cfg_store_writes store_writes; /* --store-writes; default auto */
    enum cfg_log_level log_level;     /* info */
    char *config;                     /* the config file read; NULL: none */
    bool help, version, print_config; /* for the caller to act on */
};

/* Fills *c from argv (argv[0] is the program name), envp (NULL-terminated
 * "NAME=value" strings; NULL: empty) and the config file named by --config or
 * SHOAL_CONFIG, else DATA_DIR/shoald.conf if it exists. With --help or --version only
 * the flags are parsed. On failure *c is untouched and `why` gets one line naming the
 * source (flag, variable or file:line), the key and the reason. Errors: -EINVAL (usage
 * or a bad value, including over-long lines and files), -ENOMEM, -errno reading the
 * config file. */
int cfg_load(struct cfg *c, int argc, char **argv, char *const *envp, char *why, size_t why_len);

/* Frees what cfg_load allocated; *c is zeroed. */
void cfg_release(struct cfg *c);

/* The --help text: every option, its variable, config key, default and meaning. */
const char *cfg_usage(void);

/* Writes the effective configuration as config-file lines that cfg_load reads back to
 * the same settings. The Hub token is shown as <set>, never its value. Returns 0 or
 * -EIO. */
int cfg_dump(const struct cfg *c, FILE *f);

/* Parses "ADDR:PORT" as --listen and --join do: a dotted quad, [IPv6] or a host name,
 * and a port (0 allowed with port0). On failure `why` gets one line starting with `what`.
 * Errors: -EINVAL. */
int cfg_addr_parse(const char *what, const char *v, bool port0, struct cfg_addr *out,
                   char *why, size_t why_len);

/* "error", "warn", "info" or "debug". */
const char *cfg_log_level_name(enum cfg_log_level l);

#endif
