/* api.h - the node's control API (/v1/..., docs/control-api.md) and /metrics.
 *
 * api_handle is the HTTP server's handler: it routes each request, runs store work on
 * the threadpool, and answers with JSON (or Prometheus text for /metrics). Request
 * bodies are parsed with jansson and checked field by field: unknown fields, wrong
 * types and bad values get 400 with a message naming the field.
 *
 * Threads: loop thread only.
 * Ownership: the api borrows everything in api_env; they must outlive it.
 */
#ifndef SHOAL_API_H
#define SHOAL_API_H

#include "http.h"
#include "hub.h"
#include "peer.h"
#include "pull.h"
#include "store.h"
#include "work.h"

#include <stdint.h>
#include <uv.h>

struct api_env {
    uv_loop_t *loop;
    struct store *store;
    struct hub *hub;
    struct pull_mgr *pulls;
    struct peer_mgr *peers;
    struct workq *work;
    struct http_server **http;   /* the servers whose counters /metrics shows */
    unsigned n_http;
    const char *node_id;
    const char *version;
    const char *data_dir;
    const char *hub_endpoint;
    const char *listen_host;     /* the peer address, for `shoal peers`' self line */
    uint64_t quota, min_free;
    uint64_t started_ms;         /* uv_now at start */
};

/* The control socket's http_handler; arg is a struct api_env. */
void api_handle(void *arg, struct http_req *req);
/* The TCP address's handler (--http): /metrics only; the control API stays on the
 * unix socket, where file permissions decide who may use it. */
void api_handle_public(void *arg, struct http_req *req);

#endif
