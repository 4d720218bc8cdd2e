/* cmd_gc.c - `shoal gc`: the node removes the files no snapshot lists. */
#include "cmd.h"

#include "client.h"
#include "util.h"

#include <getopt.h>
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
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct client c;
    json_t *ans = NULL;
    uint64_t n;
    int opt, status = 0;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        return util_bad_option(&cmd_gc_def, argc, argv);
    }
    if (optind < argc) {
        tool_err("gc", "takes no operands ('%s')", argv[optind]);
        return tool_usage(&cmd_gc_def);
    }
    if (client_open(&c, "gc") < 0 ||
        client_call(&c, "POST", "gc", NULL, CLIENT_SLOW_MS, &ans) < 0) {
        status = client_fail(&c);
    } else {
        n = util_juint(ans, "removed_files");
        printf("removed %" PRIu64 " file%s\n", n, n == 1 ? "" : "s");
    }
    json_decref(ans);
    client_close(&c);
    return util_finish("gc", status);
}

const struct cmd cmd_gc_def = {
    .name = "gc",
    .fn = cmd_gc,
    .summary = "remove the files no snapshot lists",
    .usage = usage,
};
