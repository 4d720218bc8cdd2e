/* cmd_pull.c - `shoal pull`: the node pulls a repository into its store and exports
 * it; the tool starts the pull, follows it and says where the files are.
 *
 * The export target is decided here, from the tool's own environment, because the
 * files belong to the user running `shoal`, not to the node (design.md): --local-dir,
 * else the Hugging Face hub cache that huggingface_hub would use in this shell.
 *
 * The pull is followed by polling GET /v1/pulls/ID every POLL_MS until it ends, for
 * as long as that takes: a pull of a large model may take hours. What bounds the wait
 * is the node itself: if it stops answering, the tool says so and exits 1. Ctrl-C
 * stops only the tool; the node goes on with the pull (the API has no cancel).
 */
#include "cmd.h"

#include "client.h"
#include "progress.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 200

static const char usage[] =
    "Usage: shoal [--data-dir DIR | --socket PATH] pull REPO[@REV] [--include GLOB]...\n"
    "           [--exclude GLOB]... [--local-dir DIR] [--repo-type TYPE]\n"
    "           [--from-peer HOST:PORT] [--json]\n"
    "\n"
    "Has the local node pull a repository from the Hub (or from the cluster) into its\n"
    "store, then export the files, and follows the pull until it ends. REPO is org/name\n"
    "or name; REV, after the last '@', is a branch, a tag or a commit (default main).\n"
    "\n"
    "The files go to the Hugging Face hub cache of this shell's environment, as\n"
    "huggingface_hub finds it: $HF_HUB_CACHE, else $HF_HOME/hub, else\n"
    "$XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. With --local-dir\n"
    "they go to a plain folder instead.\n"
    "\n"
    "Options:\n"
    "  --include GLOB    pull only files matching a GLOB (repeatable; `*` matches `/`\n"
    "                    too, as huggingface_hub's allow_patterns do)\n"
    "  --exclude GLOB    leave out files matching GLOB (repeatable)\n"
    "  --local-dir DIR   export into DIR (relative to the working directory) rather\n"
    "                    than into the hub cache\n"
    "  --repo-type TYPE  model (default), dataset or space\n"
    "  --from-peer HOST:PORT\n"
    "                    take the snapshot and every byte from that node (its peer\n"
    "                    port) instead of the Hub; a debugging aid until nodes find\n"
    "                    each other. Both nodes need the same cluster key.\n"
    "  --json            the final pull object as one JSON document on standard\n"
    "                    output, nothing else there\n"
    "  -h, --help        this help\n"
    "\n"
    "Progress goes to standard error: a live display on a terminal, plain lines\n"
    "otherwise. At the end the snapshot folder (or DIR) is printed on standard output.\n"
    "Interrupting the tool does not stop the pull: the node finishes it.\n"
    "\n"
    "Exit status: 0 the pull is done, 1 it failed or the node did not answer,\n"
    "2 usage error.\n";

struct pull_args {
    char *repo, *rev;
    const char *repo_type;
    json_t *include, *exclude;
    char *local_dir; /* absolute */
    char *cache_dir; /* absolute; when no local_dir */
    const char *from_peer;
    bool json;
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = 1;
}

static void args_release(struct pull_args *a)
{
    free(a->repo);
    free(a->rev);
    json_decref(a->include);
    json_decref(a->exclude);
    free(a->local_dir);
    free(a->cache_dir);
}

/* Parses the command line into a. Returns as util.h's parsers do. */
static int parse(struct pull_args *a, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"include", required_argument, NULL, 'i'},
        {"exclude", required_argument, NULL, 'x'},
        {"local-dir", required_argument, NULL, 'l'},
        {"repo-type", required_argument, NULL, 't'},
        {"from-peer", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *local_dir = NULL;
    json_t *list;
    int opt, status;

    util_opt_reset();
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'i':
        case 'x':
            list = opt == 'i' ? a->include : a->exclude;
            if (json_array_append_new(list, json_string(optarg)) < 0) {
                tool_err("pull", "pattern '%s' is not valid UTF-8", optarg);
                return 1;
            }
            break;
        case 'l':
            local_dir = optarg;
            break;
        case 't':
            a->repo_type = optarg;
            break;
        case 'p':
            if (!*optarg || !strchr(optarg, ':')) {
                tool_err("pull", "--from-peer wants HOST:PORT, not '%s'", optarg);
                return tool_usage(&cmd_pull_def);
            }
            a->from_peer = optarg;
            break;
        case 'j':
            a->json = true;
            break;
        default:
            return util_opt_other(&cmd_pull_def, opt, argc, argv);
        }
    }
    status = util_check_repo_args(&cmd_pull_def, a->repo_type, argc, argv, "REPO");
    if (status)
        return status;
    if (local_dir && !*local_dir) {
        tool_err("pull", "--local-dir is empty");
        return tool_usage(&cmd_pull_def);
    }
    if (util_repo_rev("pull", argv[optind], &a->repo, &a->rev) < 0)
        return tool_usage(&cmd_pull_def);
    if (local_dir)
        a->local_dir = util_abspath(local_dir);
    else
        a->cache_dir = util_hf_cache();
    if (local_dir && !a->local_dir) {
        tool_err("pull", "--local-dir %s: %s", local_dir, strerror(errno));
        return 1;
    }
    if (!local_dir && !a->cache_dir) {
        tool_err("pull", "cannot tell where the hub cache is: set HF_HUB_CACHE, HF_HOME or HOME");
        return 1;
    }
    return 0;
}

/* The POST /v1/pulls body; NULL when a string is not valid UTF-8 (or no memory). */
static json_t *request(const struct pull_args *a)
{
    json_t *r = json_object();
    int err = 0;

    if (!r)
        return NULL;
    err |= json_object_set_new(r, "repo", json_string(a->repo));
    err |= json_object_set_new(r, "repo_type", json_string(a->repo_type));
    err |= json_object_set_new(r, "revision", json_string(a->rev ? a->rev : "main"));
    if (json_array_size(a->include))
        err |= json_object_set(r, "include", a->include);
    if (json_array_size(a->exclude))
        err |= json_object_set(r, "exclude", a->exclude);
    if (a->from_peer)
        err |= json_object_set_new(r, "from_peer", json_string(a->from_peer));
    if (a->local_dir)
        err |= json_object_set_new(r, "local_dir", json_string(a->local_dir));
    else
        err |= json_object_set_new(r, "cache_dir", json_string(a->cache_dir));
    if (err) {
        json_decref(r);
        return NULL;
    }
    return r;
}

/* "pulls/ID", the id percent-encoded: it comes from the node, it goes into a URL. */
static int pull_path(const json_t *pull, char *out, size_t len)
{
    const json_t *id = json_object_get(pull, "id");
    char buf[64];
    const char *s;
    size_t n;

    if (json_is_integer(id)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
        s = buf;
    } else if (json_is_string(id) && json_string_length(id) > 0) {
        s = json_string_value(id);
    } else {
        return -1;
    }
    n = (size_t)snprintf(out, len, "pulls/");
    for (; *s && n + 4 < len; s++) {
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", *s))
            out[n++] = *s;
        else
            n += (size_t)snprintf(out + n, len - n, "%%%02X", (unsigned char)*s);
    }
    out[n] = '\0';
    return *s ? -1 : 0;
}

static bool finished(const json_t *pull)
{
    const char *state = util_jstr(pull, "state", "");

    return strcmp(state, "done") == 0 || strcmp(state, "failed") == 0;
}

/* Sleeps POLL_MS, or less when a signal arrives. */
static void nap(void)
{
    struct timespec ts = {0, POLL_MS * 1000000L};

    nanosleep(&ts, NULL);
}

/* Polls until the pull ends; *ppull always holds the latest pull object. Returns 0 or
 * the exit status to leave with (after saying why). */
static int follow(struct client *c, struct progress *pr, json_t **ppull)
{
    char path[256];
    json_t *next;

    if (pull_path(*ppull, path, sizeof(path)) < 0) {
        tool_err("pull", "the node's answer names no usable pull id");
        return 1;
    }
    progress_update(pr, *ppull);
    while (!finished(*ppull)) {
        nap();
        if (!interrupted && client_call(c, "GET", path, NULL, CLIENT_TIMEOUT_MS, &next) < 0) {
            progress_clear(pr);
            return client_fail(c);
        }
        if (interrupted) {
            progress_clear(pr);
            tool_err("pull",
                     "interrupted; the node goes on with the pull (id %s, see "
                     "`shoal status`)",
                     path + strlen("pulls/"));
            return 1;
        }
        json_decref(*ppull);
        *ppull = next;
        progress_update(pr, *ppull);
    }
    return 0;
}

/* Where the files are: the snapshot folder in the hub cache, or the local dir. */
static void print_location(const struct pull_args *a, const json_t *pull)
{
    const char *dir = util_jstr(json_object_get(pull, "export"), "dir", NULL);
    const char *commit = util_jstr(pull, "commit", NULL);
    const char *name;

    if (a->local_dir) {
        printf("%s\n", dir ? dir : a->local_dir);
        return;
    }
    if (dir) {
        printf("%s/snapshots/%s\n", dir, commit ? commit : "");
        return;
    }
    /* The node did not say: the hub cache layout says (hub-protocol.md 2.2). */
    printf("%s/%ss--", a->cache_dir, a->repo_type);
    for (name = a->repo; *name; name++) {
        if (*name == '/')
            fputs("--", stdout);
        else
            putchar(*name);
    }
    printf("/snapshots/%s\n", commit ? commit : "");
}

static int run(const struct pull_args *a)
{
    struct sigaction sa = {.sa_handler = on_sigint};
    struct progress *pr = NULL;
    json_t *req = request(a), *pull = NULL;
    struct client c;
    int status;

    if (client_open(&c, "pull") < 0) {
        status = client_fail(&c);
        goto out;
    }
    pr = progress_new(isatty(STDERR_FILENO));
    if (!req || !pr) {
        tool_err("pull", req ? "out of memory" : "a name or path is not valid UTF-8");
        status = 1;
        goto out;
    }
    if (client_call(&c, "POST", "pulls", req, CLIENT_TIMEOUT_MS, &pull) < 0) {
        status = client_fail(&c);
        goto out;
    }
    /* No SA_RESTART: the poll's sleep ends at once on Ctrl-C. */
    sigaction(SIGINT, &sa, NULL);
    status = follow(&c, pr, &pull);
    if (status)
        goto out;
    if (strcmp(util_jstr(pull, "state", ""), "done") == 0) {
        progress_summary(pr, pull);
        if (!a->json)
            print_location(a, pull);
    } else {
        progress_clear(pr);
        tool_err("pull", "%s", util_jstr(pull, "error", "the pull failed (no reason given)"));
        status = 1;
    }
    if (a->json)
        util_print_json(pull);
out:
    progress_free(pr);
    json_decref(pull);
    json_decref(req);
    client_close(&c);
    return status;
}

static int cmd_pull(int argc, char **argv)
{
    struct pull_args a = {.repo_type = "model"};
    int status;

    a.include = json_array();
    a.exclude = json_array();
    if (!a.include || !a.exclude) {
        tool_err("pull", "out of memory");
        status = 1;
    } else {
        status = parse(&a, argc, argv);
        if (status == 0)
            status = run(&a);
        else if (status == UTIL_HELP)
            status = 0;
    }
    args_release(&a);
    return util_finish("pull", status);
}

const struct cmd cmd_pull_def = {
    .name = "pull",
    .fn = cmd_pull,
    .summary = "pull a repository into the store and export it",
    .usage = usage,
};
