/* cmd_rm.c - `shoal rm`: removes a snapshot (or every snapshot of a repository) from
 * the local store, and the files nothing else uses.
 *
 * Without @REV no revision is sent, which the node takes as "every snapshot of the
 * repository" (docs/control-api.md); `main` is not assumed here as it is for pull,
 * since removing is the one place where guessing wrong loses data the user wanted.
 */
#include "cmd.h"

#include "client.h"
#include "util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: shoal [--data-dir DIR | --socket PATH] rm REPO[@REV] [--repo-type TYPE]\n"
    "\n"
    "Removes from the local store the snapshot that REV (a branch, a tag or a commit)\n"
    "names, or with no @REV every snapshot of REPO, then the files that no other\n"
    "snapshot lists and nothing is using. Exported copies (the hub cache, local dirs)\n"
    "are left alone.\n"
    "\n"
    "Options:\n"
    "  --repo-type TYPE  model (default), dataset or space\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status: 0 removed, 1 nothing matched or the node did not answer,\n"
    "2 usage error.\n";

static int parse(int argc, char **argv, const char **ptype)
{
    static const struct option longopts[] = {
        {"repo-type", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    util_opt_reset();
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 't':
            *ptype = optarg;
            break;
        default:
            return util_opt_other(&cmd_rm_def, opt, argc, argv);
        }
    }
    return util_check_repo_args(&cmd_rm_def, *ptype, argc, argv, "REPO");
}

static int rm(const char *repo, const char *rev, const char *type)
{
    json_t *req = json_object(), *ans = NULL;
    uint64_t snaps, files;
    int status, err = 0;

    err |= json_object_set_new(req, "repo", json_string(repo));
    err |= json_object_set_new(req, "repo_type", json_string(type));
    if (rev)
        err |= json_object_set_new(req, "revision", json_string(rev));
    if (!req || err) {
        json_decref(req);
        tool_err("rm", "'%s' is not valid UTF-8", repo);
        return 1;
    }
    status = client_once("rm", "POST", "rm", req, CLIENT_SLOW_MS, &ans);
    if (!status) {
        snaps = util_juint(ans, "removed_snapshots");
        files = util_juint(ans, "removed_files");
        printf("removed %" PRIu64 " snapshot%s and %" PRIu64 " file%s of %s%s%s\n", snaps,
               snaps == 1 ? "" : "s", files, files == 1 ? "" : "s", repo, rev ? "@" : "",
               rev ? rev : "");
    }
    json_decref(ans);
    json_decref(req);
    return status;
}

static int cmd_rm(int argc, char **argv)
{
    const char *type = "model";
    char *repo = NULL, *rev = NULL;
    int status = parse(argc, argv, &type);

    if (status)
        return status == UTIL_HELP ? 0 : status;
    if (util_repo_rev("rm", argv[optind], &repo, &rev) < 0)
        return tool_usage(&cmd_rm_def);
    status = rm(repo, rev, type);
    free(repo);
    free(rev);
    return util_finish("rm", status);
}

const struct cmd cmd_rm_def = {
    .name = "rm",
    .fn = cmd_rm,
    .summary = "remove a snapshot and the files only it used",
    .usage = usage,
};
