/* cmd_import.c - `shoal import`: a local folder into the store as a snapshot.
 *
 * The node reads the folder itself, so the tool only makes the path absolute and
 * checks that it is a folder, which gives the user a plain error for a typo before
 * the node is asked. The import answers only when done: no timeout (a folder of
 * large files takes as long as hashing them does).
 */
#include "cmd.h"

#include "client.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "Usage: shoal [--data-dir DIR | --socket PATH] import DIR --repo REPO\n"
    "           [--repo-type TYPE] [--json]\n"
    "\n"
    "Has the local node import the files under DIR as a snapshot of REPO (org/name or\n"
    "name), with a commit id derived from the content, so that the cluster can\n"
    "serve them like files pulled from the Hub.\n"
    "\n"
    "Options:\n"
    "  --repo REPO       the repository name to give the snapshot (required)\n"
    "  --repo-type TYPE  model (default), dataset or space\n"
    "  --json            the node's answer as one JSON document on standard output\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status: 0 imported, 1 failed or the node did not answer, 2 usage error.\n";

struct import_args {
    const char *dir, *repo, *type;
    bool json;
};

static int parse(int argc, char **argv, struct import_args *a)
{
    static const struct option longopts[] = {
        {"repo", required_argument, NULL, 'r'},
        {"repo-type", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, status;

    util_opt_reset();
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'r':
            a->repo = optarg;
            break;
        case 't':
            a->type = optarg;
            break;
        case 'j':
            a->json = true;
            break;
        default:
            return util_opt_other(&cmd_import_def, opt, argc, argv);
        }
    }
    status = util_check_repo_args(&cmd_import_def, a->type, argc, argv, "DIR");
    if (status)
        return status;
    a->dir = argv[optind];
    if (!a->repo) {
        tool_err("import", "--repo REPO is required (the name to give the snapshot)");
        return tool_usage(&cmd_import_def);
    }
    return 0;
}

/* The request body, DIR made absolute; NULL after saying why. */
static json_t *request(const struct import_args *a, const char *repo)
{
    char *dir = util_abspath(a->dir);
    json_t *req = json_object();
    struct stat st;
    int err = 0;

    if (!dir || !req) {
        tool_err("import", "%s: %s", a->dir, strerror(errno));
        goto fail;
    }
    if (stat(dir, &st) < 0) {
        tool_err("import", "%s: %s", a->dir, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        tool_err("import", "%s: %s", a->dir, strerror(ENOTDIR));
        goto fail;
    }
    err |= json_object_set_new(req, "dir", json_string(dir));
    err |= json_object_set_new(req, "repo", json_string(repo));
    err |= json_object_set_new(req, "repo_type", json_string(a->type));
    if (err) {
        tool_err("import", "the folder or repository name is not valid UTF-8");
        goto fail;
    }
    free(dir);
    return req;
fail:
    free(dir);
    json_decref(req);
    return NULL;
}

static void print_import(const json_t *ans)
{
    char bytes[UTIL_SIZE_LEN];
    uint64_t files = util_juint(ans, "files"), skipped = util_juint(ans, "skipped");

    util_size(util_juint(ans, "bytes"), bytes);
    printf("imported %s (%s) commit %s: %" PRIu64 " file%s, %s", util_jstr(ans, "repo", "?"),
           util_jstr(ans, "repo_type", "model"), util_jstr(ans, "commit", "?"), files,
           files == 1 ? "" : "s", bytes);
    if (skipped)
        printf(", %" PRIu64 " skipped", skipped);
    putchar('\n');
}

static int cmd_import(int argc, char **argv)
{
    struct import_args a = {.type = "model"};
    char *repo = NULL, *rev = NULL;
    json_t *req = NULL, *ans = NULL;
    int status = parse(argc, argv, &a);

    if (status)
        return status == UTIL_HELP ? 0 : status;
    if (util_repo_rev("import", a.repo, &repo, &rev) < 0 || rev) {
        if (rev)
            tool_err("import", "--repo takes no @REV: the commit comes from the content");
        status = tool_usage(&cmd_import_def);
        goto out;
    }
    req = request(&a, repo);
    if (!req)
        status = 1;
    else
        status = client_once("import", "POST", "imports", req, CLIENT_UNBOUNDED, &ans);
    if (!status && a.json)
        util_print_json(ans);
    else if (!status)
        print_import(ans);
out:
    json_decref(ans);
    json_decref(req);
    free(repo);
    free(rev);
    return util_finish("import", status);
}

const struct cmd cmd_import_def = {
    .name = "import",
    .fn = cmd_import,
    .summary = "import a local folder into the store as a snapshot",
    .usage = usage,
};
