/* client.h - the shoal tool's channel to its node: the control API (docs/control-api.md),
 * HTTP/1.1 with JSON bodies over the node's unix socket.
 *
 * Finding the node: the global options (`shoal --data-dir DIR` or `--socket PATH`,
 * handed over with client_set_target()), else $SHOAL_SOCKET, else $SHOAL_DATA_DIR
 * (the socket is DIR/shoald.sock).
 *
 * Errors: client_open() and client_call() return 0 or -1; on -1 c->err holds one line
 * for the user (without the "shoal <cmd>: " prefix), which client_fail() prints;
 * client_open_call() and client_once() print it themselves and return 1.
 * Ownership: JSON handed back by client_call() belongs to the caller (json_decref).
 * Threads: one client per thread.
 */
#ifndef SHOAL_CLIENT_H
#define SHOAL_CLIENT_H

#include <curl/curl.h>
#include <jansson.h>

#define CLIENT_MAX_RESPONSE (64u << 20) /* the largest answer read from the node */
#define CLIENT_CONNECT_MS   5000
#define CLIENT_TIMEOUT_MS   30000        /* default per request */
#define CLIENT_SLOW_MS      (10 * 60000) /* rm and gc: store-wide work */
#define CLIENT_UNBOUNDED    0            /* import: as long as it takes */

struct client {
    const char *cmd; /* for messages */
    char *socket;    /* the socket path in use */
    char *data_dir;  /* the data directory, when known (for the hint) */
    CURL *curl;      /* reused, so that polls keep their connection */
    char err[512];
};

/* Records the global options; either may be NULL. The strings must outlive the
 * clients (argv does). */
void client_set_target(const char *data_dir, const char *socket);

/* Finds the socket and prepares a connection for subcommand cmd. Nothing is sent yet. */
int client_open(struct client *c, const char *cmd);
void client_close(struct client *c);

/* Sends METHOD /v1/<path> with body (a JSON object, or NULL for none) and waits up to
 * timeout_ms (CLIENT_UNBOUNDED: no limit) for the answer. On a 2xx answer whose body
 * is a JSON object, *pout gets it and 0 is returned; anything else is an error, with
 * the node's own {"error": ...} line when it sent one. */
int client_call(struct client *c, const char *method, const char *path, const json_t *body,
                long timeout_ms, json_t **pout);

/* Prints c->err as "shoal <cmd>: ..." and returns 1, the exit status for it. */
int client_fail(const struct client *c);

/* A command's main request: client_open() then client_call(). Returns 0, or 1 after
 * client_fail(). Either way c is to be closed with client_close(). */
int client_open_call(struct client *c, const char *cmd, const char *method, const char *path,
                     const json_t *body, long timeout_ms, json_t **pout);

/* The same for a command that asks the node one thing only: the client lives and is
 * closed within the call. */
int client_once(const char *cmd, const char *method, const char *path, const json_t *body,
                long timeout_ms, json_t **pout);

#endif
