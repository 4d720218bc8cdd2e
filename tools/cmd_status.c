/* cmd_status.c - `shoal status`: how the local node is, and the readiness check.
 *
 * The exit status is the contract scripts and tests use: 0 if and only if the node
 * answered GET /v1/status. The list of active pulls is a second, optional request:
 * when it fails the status has still been shown, so it does not change the exit.
 */
#include "cmd.h"

#include "client.h"
#include "util.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "Usage: shoal [--data-dir DIR | --socket PATH] status [--json]\n"
    "\n"
    "Shows the local node: its id, version and uptime, what its store holds, its\n"
    "traffic with the Hub and its pulls (the active ones listed). Exits 0 when the\n"
    "node answers, so `shoal status` is the readiness check for scripts.\n"
    "\n"
    "Options:\n"
    "  --json      the node's answer as one JSON document on standard output\n"
    "  -h, --help  this help\n"
    "\n"
    "The node is found by --data-dir DIR or --socket PATH given before the command,\n"
    "else $SHOAL_SOCKET, else $SHOAL_DATA_DIR (its socket is DIR/shoald.sock).\n"
    "\n"
    "Exit status: 0 the node answered, 1 it did not, 2 usage error.\n";

static void print_store(const json_t *st)
{
    char logical[UTIL_SIZE_LEN], physical[UTIL_SIZE_LEN], quota[UTIL_SIZE_LEN],
        min_free[UTIL_SIZE_LEN];

    util_size(util_juint(st, "logical_bytes"), logical);
    util_size(util_juint(st, "physical_bytes"), physical);
    util_size(util_juint(st, "min_free"), min_free);
    if (util_juint(st, "quota"))
        util_size(util_juint(st, "quota"), quota);
    else
        snprintf(quota, sizeof(quota), "none");
    printf("store     %" PRIu64 " files (%" PRIu64 " complete), %" PRIu64 " chunks, %s"
           " (%s stored), quota %s, keeps %s free\n",
           util_juint(st, "files"), util_juint(st, "complete_files"), util_juint(st, "chunks"),
           logical, physical, quota, min_free);
}

static void print_hub(const json_t *hub)
{
    char bytes[UTIL_SIZE_LEN];

    util_size(util_juint(hub, "bytes"), bytes);
    printf("hub       %s: %" PRIu64 " requests, %s received, %" PRIu64 " retries, %" PRIu64
           " errors, %" PRIu64 " in flight\n",
           util_jstr(hub, "endpoint", "?"), util_juint(hub, "requests"), bytes,
           util_juint(hub, "retries"), util_juint(hub, "errors"), util_juint(hub, "in_flight"));
}

/* One line per pull still running, from GET /v1/pulls. */
static void print_active(struct client *c)
{
    char done[UTIL_SIZE_LEN], total[UTIL_SIZE_LEN];
    json_t *ans = NULL, *p;
    const char *state;
    uint64_t t;
    size_t i;

    if (client_call(c, "GET", "pulls", NULL, CLIENT_TIMEOUT_MS, &ans) < 0)
        return;
    json_array_foreach(json_object_get(ans, "pulls"), i, p)
    {
        state = util_jstr(p, "state", "?");
        if (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0)
            continue;
        t = util_juint(p, "bytes_total");
        util_size(util_juint(p, "bytes_done"), done);
        util_size(t, total);
        printf("  pull %s  %s@%s  %s  %s / %s (%" PRIu64 "%%)\n", util_jstr(p, "id", "?"),
               util_jstr(p, "repo", "?"), util_jstr(p, "revision", "main"), state, done, total,
               t ? util_juint(p, "bytes_done") * 100 / t : 0);
    }
    json_decref(ans);
}

static void print_status(struct client *c, const json_t *s)
{
    const json_t *pulls = json_object_get(s, "pulls");
    char uptime[UTIL_SIZE_LEN];

    util_duration(util_juint(s, "uptime_s"), uptime);
    printf("node      %s\n", util_jstr(s, "node_id", "?"));
    printf("version   %s\n", util_jstr(s, "version", "?"));
    printf("data dir  %s\n", util_jstr(s, "data_dir", "?"));
    printf("uptime    %s\n", uptime);
    print_store(json_object_get(s, "store"));
    print_hub(json_object_get(s, "hub"));
    printf("pulls     %" PRIu64 " active, %" PRIu64 " done, %" PRIu64 " failed\n",
           util_juint(pulls, "active"), util_juint(pulls, "done"), util_juint(pulls, "failed"));
    if (util_juint(pulls, "active"))
        print_active(c);
}

static int cmd_status(int argc, char **argv)
{
    struct client c;
    json_t *s = NULL;
    bool json = false;
    int status = util_parse_no_operands(&cmd_status_def, argc, argv, &json);

    if (status)
        return status == UTIL_HELP ? 0 : status;
    status = client_open_call(&c, "status", "GET", "status", NULL, CLIENT_TIMEOUT_MS, &s);
    if (!status && json)
        util_print_json(s);
    else if (!status)
        print_status(&c, s);
    json_decref(s);
    client_close(&c);
    return util_finish("status", status);
}

const struct cmd cmd_status_def = {
    .name = "status",
    .fn = cmd_status,
    .summary = "the local node: id, uptime, store, Hub traffic, pulls",
    .usage = usage,
};
