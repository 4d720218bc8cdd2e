/* cmd_peers.c - `shoal peers`: the node's peer connections, this node first. */
#include "cmd.h"

#include "client.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>

static const char usage[] =
    "Usage: shoal [--data-dir DIR | --socket PATH] peers [--json]\n"
    "\n"
    "Lists this node (marked self) and its connections to other nodes: address, node\n"
    "id, direction, state, bytes and rates each way, requests and uploads open.\n"
    "Then the hosts whose connections had faults (failed handshakes, protocol\n"
    "errors, timeouts, bad data), most recent first, with the last reason: they stay\n"
    "listed after their connections close.\n"
    "Until nodes find each other by gossip, a connection exists while a pull\n"
    "--from-peer or a peer's requests use it.\n"
    "\n"
    "Options:\n"
    "  --json      the node's answer as one JSON document on standard output\n"
    "  -h, --help  this help\n"
    "\n"
    "Exit status: 0 done, 1 the node did not answer, 2 usage error.\n";

static void print_peer(const json_t *p)
{
    char in[UTIL_SIZE_LEN], out[UTIL_SIZE_LEN], rin[UTIL_SIZE_LEN], rout[UTIL_SIZE_LEN];

    if (json_is_true(json_object_get(p, "self"))) {
        printf("%-24s %-16s self\n", util_jstr(p, "addr", "?"), util_jstr(p, "node_id", "?"));
        return;
    }
    util_size(util_juint(p, "bytes_in"), in);
    util_size(util_juint(p, "bytes_out"), out);
    util_size(util_juint(p, "rate_in"), rin);
    util_size(util_juint(p, "rate_out"), rout);
    printf("%-24s %-16s %-3s %-10s in %s (%s/s), out %s (%s/s), %" PRIu64 " requests, %" PRIu64
           " uploads\n",
           util_jstr(p, "addr", "?"), util_jstr(p, "node_id", "?")[0] ? util_jstr(p, "node_id", "?")
                                                                     : "-",
           util_jstr(p, "direction", "?"), util_jstr(p, "state", "?"), in, rin, out, rout,
           util_juint(p, "requests"), util_juint(p, "uploads"));
}

static void print_fault(const json_t *f)
{
    printf("  %-22s handshake %" PRIu64 ", protocol %" PRIu64 ", timeout %" PRIu64
           ", bad data %" PRIu64 "; last %" PRIu64 " s ago: %s\n",
           util_jstr(f, "host", "?"), util_juint(f, "handshake"), util_juint(f, "protocol"),
           util_juint(f, "timeout"), util_juint(f, "bad_data"), util_juint(f, "seconds_ago"),
           util_jstr(f, "last", ""));
}

static int cmd_peers(int argc, char **argv)
{
    json_t *ans = NULL, *p;
    bool json = false;
    size_t i;
    int status = util_parse_no_operands(&cmd_peers_def, argc, argv, &json);

    if (status)
        return status == UTIL_HELP ? 0 : status;
    status = client_once("peers", "GET", "peers", NULL, CLIENT_TIMEOUT_MS, &ans);
    if (!status && json) {
        util_print_json(ans);
    } else if (!status) {
        json_array_foreach(json_object_get(ans, "peers"), i, p)
            print_peer(p);
        if (json_array_size(json_object_get(ans, "faults")))
            printf("faults by host:\n");
        json_array_foreach(json_object_get(ans, "faults"), i, p)
            print_fault(p);
    }
    json_decref(ans);
    return util_finish("peers", status);
}

const struct cmd cmd_peers_def = {
    .name = "peers",
    .fn = cmd_peers,
    .summary = "this node and its peer connections",
    .usage = usage,
};
