/* util.c - helpers the node commands share: sizes, durations, option parsing, repo
 * operands, paths, the Hugging Face cache location and tolerant JSON reads.
 */
#include "util.h"

#include "cmd.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void util_size(uint64_t n, char out[static UTIL_SIZE_LEN])
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)n;
    int u = -1;

    if (n < 1024) {
        snprintf(out, UTIL_SIZE_LEN, "%" PRIu64 " B", n);
        return;
    }
    /* Stop below 1000 so that the text never reads "1024.0 KiB". */
    while (v >= 1000 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(out, UTIL_SIZE_LEN, "%.*f %s", v < 10 ? 2 : 1, v, units[u]);
}

void util_duration(uint64_t s, char out[static UTIL_SIZE_LEN])
{
    if (s < 60)
        snprintf(out, UTIL_SIZE_LEN, "%" PRIu64 "s", s);
    else if (s < 3600)
        snprintf(out, UTIL_SIZE_LEN, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, UTIL_SIZE_LEN, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
    else if (s < 100 * 86400)
        snprintf(out, UTIL_SIZE_LEN, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
    else
        snprintf(out, UTIL_SIZE_LEN, "%" PRIu64 "d", s / 86400);
}

int util_repo_rev(const char *cmd, const char *arg, char **prepo, char **prev)
{
    const char *at = strrchr(arg, '@');
    size_t len = at ? (size_t)(at - arg) : strlen(arg);
    char *repo, *rev = NULL;
    size_t i;

    if (len == 0) {
        tool_err(cmd, "'%s' names no repository (REPO is org/name or name)", arg);
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (isspace((unsigned char)arg[i])) {
            tool_err(cmd, "repository '%.*s' has white space in it", (int)len, arg);
            return -1;
        }
    }
    if (at && at[1] == '\0') {
        tool_err(cmd, "'%s' has an empty revision after '@'", arg);
        return -1;
    }
    repo = strndup(arg, len);
    if (at)
        rev = strdup(at + 1);
    if (!repo || (at && !rev)) {
        free(repo);
        free(rev);
        tool_err(cmd, "out of memory");
        return -1;
    }
    *prepo = repo;
    *prev = rev;
    return 0;
}

bool util_repo_type_ok(const char *s)
{
    return strcmp(s, "model") == 0 || strcmp(s, "dataset") == 0 || strcmp(s, "space") == 0;
}

/* Removes "." and "..", repeated and trailing slashes from an absolute path, in
 * place. ".." at the root stays at the root, as in POSIX path resolution. The write
 * position never passes the read position, but a component's closing slash may land
 * on the terminating NUL, so the end is fixed before the walk. */
static void normalize(char *p)
{
    const char *end = p + strlen(p), *r = p;
    char *w = p + 1; /* write position; p[0] is '/' */
    size_t n;

    while (r < end) {
        while (r < end && *r == '/')
            r++;
        n = strcspn(r, "/");
        if (n == 0)
            break;
        if (n == 2 && r[0] == '.' && r[1] == '.') {
            if (w > p + 1)
                w--; /* the slash after the last component */
            while (w > p + 1 && w[-1] != '/')
                w--;
        } else if (n != 1 || r[0] != '.') {
            memmove(w, r, n);
            w += n;
            *w++ = '/';
        }
        r += n;
    }
    if (w > p + 1)
        w--; /* no trailing slash */
    *w = '\0';
}

char *util_abspath(const char *path)
{
    char *cwd = NULL, *out;
    size_t len;

    if (path[0] != '/') {
        cwd = getcwd(NULL, 0);
        if (!cwd)
            return NULL;
    }
    len = (cwd ? strlen(cwd) + 1 : 0) + strlen(path) + 1;
    out = malloc(len);
    if (out) {
        snprintf(out, len, "%s%s%s", cwd ? cwd : "", cwd ? "/" : "", path);
        normalize(out);
    }
    free(cwd);
    return out;
}

/* An environment variable, with the empty value taken as unset: `HF_HOME= cmd` is a
 * common way to clear one, and an empty path would point into the working directory. */
static const char *env(const char *name)
{
    const char *v = getenv(name);

    return v && *v ? v : NULL;
}

/* prefix + suffix, with a leading "~/" (or a lone "~") of prefix replaced by HOME,
 * as huggingface_hub's expanduser() does, then made absolute. */
static char *join_home(const char *prefix, const char *suffix)
{
    const char *home = NULL;
    char *joined, *abs;
    size_t len;

    if (prefix[0] == '~' && (prefix[1] == '/' || prefix[1] == '\0')) {
        home = env("HOME");
        if (!home) {
            errno = ENOENT;
            return NULL;
        }
        prefix++;
    }
    len = (home ? strlen(home) : 0) + strlen(prefix) + strlen(suffix) + 1;
    joined = malloc(len);
    if (!joined)
        return NULL;
    snprintf(joined, len, "%s%s%s", home ? home : "", prefix, suffix);
    abs = util_abspath(joined);
    free(joined);
    return abs;
}

char *util_hf_cache(void)
{
    const char *v;

    if ((v = env("HF_HUB_CACHE")))
        return join_home(v, "");
    if ((v = env("HF_HOME")))
        return join_home(v, "/hub");
    /* huggingface_hub's HF_HOME default is $XDG_CACHE_HOME/huggingface; section 2.1
     * of the spec writes the usual ~/.cache of it. */
    if ((v = env("XDG_CACHE_HOME")))
        return join_home(v, "/huggingface/hub");
    return join_home("~", "/.cache/huggingface/hub");
}

const char *util_jstr(const json_t *obj, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : def;
}

uint64_t util_juint(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    if (json_is_integer(v))
        return json_integer_value(v) < 0 ? 0 : (uint64_t)json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) > 0)
        return json_real_value(v) < 1.8e19 ? (uint64_t)json_real_value(v) : UINT64_MAX;
    return 0;
}

void util_opt_reset(void)
{
    optind = 1;
    opterr = 0;
}

int util_opt_other(const struct cmd *c, int opt, int argc, char **argv)
{
    if (opt == 'h') {
        fputs(c->usage, stdout);
        return UTIL_HELP;
    }
    return util_bad_option(c, argc, argv);
}

int util_bad_option(const struct cmd *c, int argc, char **argv)
{
    const char *arg = optind >= 1 && optind <= argc ? argv[optind - 1] : "";

    /* glibc sets optopt to the option's value for a known long option that lacks its
     * value, and to 0 for an unknown one. */
    if (strncmp(arg, "--", 2) == 0 && optopt && strchr(arg, '='))
        tool_err(c->name, "option '%.*s' takes no value", (int)strcspn(arg, "="), arg);
    else if (strncmp(arg, "--", 2) == 0 && optopt)
        tool_err(c->name, "option '%s' needs a value", arg);
    else if (strncmp(arg, "--", 2) == 0)
        tool_err(c->name, "unknown option '%s'", arg);
    else
        tool_err(c->name, "option '-%c' is unknown or needs a value", optopt ? optopt : '?');
    return tool_usage(c);
}

int util_parse_no_operands(const struct cmd *c, int argc, char **argv, bool *pjson)
{
    static const struct option with_json[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* A command without --json must answer "unknown option" to it, so its table
     * leaves it out rather than listing it to refuse it. */
    static const struct option help_only[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    util_opt_reset();
    while ((opt = getopt_long(argc, argv, "h", pjson ? with_json : help_only, NULL)) != -1) {
        if (opt != 'j')
            return util_opt_other(c, opt, argc, argv);
        *pjson = true;
    }
    if (optind < argc) {
        tool_err(c->name, "takes no operands ('%s')", argv[optind]);
        return tool_usage(c);
    }
    return 0;
}

int util_check_repo_args(const struct cmd *c, const char *type, int argc, char **argv,
                         const char *operand)
{
    if (!util_repo_type_ok(type)) {
        tool_err(c->name, "--repo-type is model, dataset or space, not '%s'", type);
        return tool_usage(c);
    }
    if (optind != argc - 1) {
        if (optind >= argc)
            tool_err(c->name, "no %s given", operand);
        else
            tool_err(c->name, "one %s at a time", operand);
        return tool_usage(c);
    }
    return 0;
}

void util_print_json(const json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fputc('\n', stdout);
}

int util_finish(const char *cmd, int status)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tool_err(cmd, "writing the output: %s", strerror(errno));
        return 1;
    }
    return status;
}
