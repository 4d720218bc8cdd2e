/* cmd_check.c - `shoal check`: the node verifies its store, and repairs it if asked. */
#include "cmd.h"

#include "client.h"
#include "util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#define EXIT_DAMAGED 3

static const char usage[] =
    "Usage: shoal [--data-dir DIR | --socket PATH] check [--repair] [--json]\n"
    "\n"
    "Verifies the local node's store: every stored chunk is read and hashed, every\n"
    "piece's chunk list and hash, every reference count and total, and that every\n"
    "complete file has all its pieces. It reads everything the store holds, so it\n"
    "takes about as long as reading the data once; writers wait meanwhile.\n"
    "\n"
    "With --repair, damaged and orphan chunks are removed with the pieces that used\n"
    "them, and the files that lost data are marked partial: the next pull fetches\n"
    "exactly what is missing. Exported copies in the Hugging Face cache are not\n"
    "touched.\n"
    "\n"
    "Options:\n"
    "  --repair    repair what the check finds\n"
    "  --json      the node's answer as one JSON document on standard output\n"
    "  -h, --help  this help\n"
    "\n"
    "Exit status: 0 consistent (or repaired), 1 the node did not answer, 2 usage\n"
    "error, 3 damage found and not repaired.\n";

static const struct {
    const char *key, *what;
} problems[] = {
    {"missing_chunks", "chunks missing"},
    {"bad_chunks", "chunks damaged"},
    {"bad_pieces", "pieces whose hash does not match"},
    {"bad_refcounts", "wrong reference counts"},
    {"orphan_chunks", "chunks no piece uses"},
    {"broken_files", "complete files that lost data"},
    {"bad_totals", "wrong totals"},
};

static void print_check(const json_t *ans)
{
    bool consistent = json_is_true(json_object_get(ans, "consistent"));
    bool repaired = json_is_true(json_object_get(ans, "repaired"));
    size_t i;

    printf("checked %" PRIu64 " complete files, %" PRIu64 " chunks\n",
           util_juint(ans, "files_checked"), util_juint(ans, "chunks_checked"));
    for (i = 0; i < sizeof(problems) / sizeof(problems[0]); i++) {
        uint64_t n = util_juint(ans, problems[i].key);
        if (n)
            printf("  %" PRIu64 " %s\n", n, problems[i].what);
    }
    if (!consistent)
        printf("the store is damaged: `shoal check --repair` drops what was lost, and the "
               "next pull fetches it again\n");
    else if (repaired && util_juint(ans, "broken_files") + util_juint(ans, "bad_chunks") +
                                 util_juint(ans, "missing_chunks") >
                             0)
        printf("repaired: pull again to fetch what was lost\n");
    else if (repaired)
        printf("consistent (after repair)\n");
    else
        printf("consistent\n");
}

static int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"repair", no_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    json_t *ans = NULL, *body;
    bool repair = false, json = false;
    int opt, status;

    util_opt_reset();
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 'r') {
            repair = true;
        } else if (opt == 'j') {
            json = true;
        } else {
            status = util_opt_other(&cmd_check_def, opt, argc, argv);
            return status == UTIL_HELP ? 0 : status;
        }
    }
    if (optind < argc) {
        tool_err("check", "takes no operands ('%s')", argv[optind]);
        return tool_usage(&cmd_check_def);
    }
    body = json_pack("{s:b}", "repair", repair);
    status = client_once("check", "POST", "check", body, CLIENT_UNBOUNDED, &ans);
    json_decref(body);
    if (!status && json)
        util_print_json(ans);
    else if (!status)
        print_check(ans);
    if (!status && !json_is_true(json_object_get(ans, "consistent")))
        status = EXIT_DAMAGED;
    json_decref(ans);
    return util_finish("check", status);
}

const struct cmd cmd_check_def = {
    .name = "check",
    .fn = cmd_check,
    .summary = "verify the local store (and repair it)",
    .usage = usage,
};
