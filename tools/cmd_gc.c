/* cmd_gc.c - `shoal gc`: the node removes the files no snapshot lists. */
#include "cmd.h"

#include "client.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>

static const char usage[] =
    "Usage: shoal [--data-dir DIR | --socket PATH] gc\n"
    "\n"
    "Removes from the local store the files that no snapshot lists and nothing is\n"
    "using: leftovers of removed snapshots and of abandoned partial pulls.\n"
    "`shoal ls` shows how much that is.\n"
    "\n"
    "Options:\n"
    "  -h, --help  this help\n"
    "\n"
    "Exit status: 0 done, 1 the node did not answer, 2 usage error.\n";

static int cmd_gc(int argc, char **argv)
{
    json_t *ans = NULL;
    uint64_t n;
    int status = util_parse_no_operands(&cmd_gc_def, argc, argv, NULL);

    if (status)
        return status == UTIL_HELP ? 0 : status;
    status = client_once("gc", "POST", "gc", NULL, CLIENT_SLOW_MS, &ans);
    if (!status) {
        n = util_juint(ans, "removed_files");
        printf("removed %" PRIu64 " file%s\n", n, n == 1 ? "" : "s");
    }
    json_decref(ans);
    return util_finish("gc", status);
}

const struct cmd cmd_gc_def = {
    .name = "gc",
    .fn = cmd_gc,
    .summary = "remove the files no snapshot lists",
    .usage = usage,
};
