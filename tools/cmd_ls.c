/* cmd_ls.c - `shoal ls`: what the local node's store holds.
 *
 * Snapshots with their files, then the totals, then the files no snapshot lists
 * (partial pulls, leftovers of removed snapshots): those are what `shoal gc` frees,
 * so naming their count and size tells the user whether it is worth running.
 */
#include "cmd.h"

#include "client.h"
#include "util.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "Usage: shoal [--data-dir DIR | --socket PATH] ls [--json]\n"
    "\n"
    "Lists what the local node's store holds: each snapshot (repository, type,\n"
    "commit, the refs that name it) with its files and their sizes, files not yet\n"
    "complete marked `partial`; then the totals, logical (the files' sizes) against\n"
    "physical (what the store keeps after removing duplicate chunks).\n"
    "\n"
    "Options:\n"
    "  --json      the node's answer as one JSON document on standard output (every\n"
    "              file named by its sha256, with the Hub's etag beside it)\n"
    "  -h, --help  this help\n"
    "\n"
    "Exit status: 0 listed, 1 the node did not answer, 2 usage error.\n";

static void print_refs(const json_t *refs)
{
    const json_t *r;
    size_t i;

    json_array_foreach(refs, i, r)
    {
        printf("%s%s", i ? "," : ", refs ", json_string_value(r) ? json_string_value(r) : "?");
    }
}

/* One snapshot; adds its files' sha256 to `listed`. */
static void print_snapshot(const json_t *s, json_t *listed)
{
    char size[UTIL_SIZE_LEN];
    const char *sha;
    const json_t *f;
    size_t i;

    printf("%s (%s) commit %s", util_jstr(s, "repo", "?"), util_jstr(s, "repo_type", "model"),
           util_jstr(s, "commit", "?"));
    print_refs(json_object_get(s, "refs"));
    printf("%s\n", json_is_true(json_object_get(s, "pinned")) ? ", pinned" : "");
    json_array_foreach(json_object_get(s, "files"), i, f)
    {
        util_size(util_juint(f, "size"), size);
        printf("  %10s  %s%s\n", size, util_jstr(f, "path", "?"),
               json_is_false(json_object_get(f, "complete")) ? "  (partial)" : "");
        sha = util_jstr(f, "sha256", NULL);
        if (sha)
            json_object_set_new(listed, sha, json_true());
    }
}

static void print_totals(const json_t *t)
{
    char logical[UTIL_SIZE_LEN], physical[UTIL_SIZE_LEN];

    util_size(util_juint(t, "logical_bytes"), logical);
    util_size(util_juint(t, "physical_bytes"), physical);
    printf("total: %" PRIu64 " files (%" PRIu64 " complete), %" PRIu64 " chunks; %s logical, "
           "%s physical\n",
           util_juint(t, "files"), util_juint(t, "complete_files"), util_juint(t, "chunks"),
           logical, physical);
}

/* Files the store holds that no snapshot lists. */
static void print_unlisted(const json_t *files, const json_t *listed)
{
    char size[UTIL_SIZE_LEN];
    uint64_t n = 0, bytes = 0;
    const json_t *f;
    const char *sha;
    size_t i;

    json_array_foreach(files, i, f)
    {
        sha = util_jstr(f, "sha256", NULL);
        if (sha && json_object_get(listed, sha))
            continue;
        n++;
        bytes += util_juint(f, "size");
    }
    if (!n)
        return;
    util_size(bytes, size);
    printf("%" PRIu64 " file%s (%s) in no snapshot: `shoal gc` removes them\n", n,
           n == 1 ? "" : "s", size);
}

static void print_ls(const json_t *ans)
{
    const json_t *snaps = json_object_get(ans, "snapshots"), *s;
    json_t *listed = json_object();
    size_t i;

    if (json_array_size(snaps) == 0)
        printf("no snapshots\n");
    json_array_foreach(snaps, i, s)
    {
        print_snapshot(s, listed);
    }
    print_totals(json_object_get(ans, "totals"));
    if (listed)
        print_unlisted(json_object_get(ans, "files"), listed);
    json_decref(listed);
}

static int cmd_ls(int argc, char **argv)
{
    json_t *ans = NULL;
    bool json = false;
    int status = util_parse_no_operands(&cmd_ls_def, argc, argv, &json);

    if (status)
        return status == UTIL_HELP ? 0 : status;
    status = client_once("ls", "GET", "files", NULL, CLIENT_TIMEOUT_MS, &ans);
    if (!status && json)
        util_print_json(ans);
    else if (!status)
        print_ls(ans);
    json_decref(ans);
    return util_finish("ls", status);
}

const struct cmd cmd_ls_def = {
    .name = "ls",
    .fn = cmd_ls,
    .summary = "the snapshots and files in the local store",
    .usage = usage,
};
