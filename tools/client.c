/* client.c - the control API client: one libcurl easy handle talking HTTP/1.1 to the
 * node's unix socket, JSON in and out through jansson.
 *
 * Every failure becomes one line in c->err, worded for the user running the tool:
 * curl's own messages name sockets and HTTP internals the user never chose, so
 * explain() translates them here, in one place.
 */
#include "client.h"

#include "cmd.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define SOCKET_NAME "shoald.sock"

static const char *opt_data_dir, *opt_socket;

void client_set_target(const char *data_dir, const char *socket)
{
    opt_data_dir = data_dir;
    opt_socket = socket;
}

/* An answer from the node, read with a ceiling (a confused node must not make the
 * tool eat memory). */
struct answer {
    char *p;
    size_t len, cap;
    bool toobig;
};

static void set_err(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct client *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

static size_t on_write(char *data, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n, cap;
    char *p;

    if (len > CLIENT_MAX_RESPONSE - a->len) {
        a->toobig = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (a->len + len + 1 > a->cap) {
        cap = a->cap ? a->cap : 4096;
        while (cap < a->len + len + 1)
            cap *= 2;
        p = realloc(a->p, cap);
        if (!p)
            return 0;
        a->p = p;
        a->cap = cap;
    }
    memcpy(a->p + a->len, data, len);
    a->len += len;
    a->p[a->len] = '\0';
    return len;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);

    return v && *v ? v : NULL;
}

/* The socket and (when it can be told) the data directory, from the options, else
 * the environment. The data directory of a bare --socket is guessed from the socket's
 * name only to word the "start it with" hint. */
static int find_target(struct client *c)
{
    const char *sock = opt_socket, *dir = opt_data_dir, *slash;
    size_t len;

    if (!sock && !dir) {
        sock = env("SHOAL_SOCKET");
        dir = sock ? NULL : env("SHOAL_DATA_DIR");
    }
    if (!sock && !dir) {
        set_err(c,
                "which node? give `shoal --data-dir DIR %s ...` (the node's data directory) "
                "or `shoal --socket PATH %s ...`, or set SHOAL_DATA_DIR or SHOAL_SOCKET",
                c->cmd, c->cmd);
        return -1;
    }
    if (dir) {
        len = strlen(dir) + sizeof("/" SOCKET_NAME);
        c->data_dir = strdup(dir);
        c->socket = malloc(len);
        if (c->socket)
            snprintf(c->socket, len, "%s/%s", dir, SOCKET_NAME);
    } else {
        c->socket = strdup(sock);
        slash = strrchr(sock, '/');
        if (slash && strcmp(slash + 1, SOCKET_NAME) == 0)
            c->data_dir = strndup(sock, slash > sock ? (size_t)(slash - sock) : 1);
        else if (strcmp(sock, SOCKET_NAME) == 0)
            c->data_dir = strdup(".");
    }
    if (!c->socket) {
        set_err(c, "out of memory");
        return -1;
    }
    if (strlen(c->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        set_err(c, "socket path %s is too long for a unix socket (at most %zu bytes)", c->socket,
                sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return -1;
    }
    return 0;
}

int client_open(struct client *c, const char *cmd)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    if (find_target(c) < 0)
        return -1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        set_err(c, "libcurl failed to initialise");
        return -1;
    }
    c->curl = curl_easy_init();
    if (!c->curl) {
        curl_global_cleanup();
        set_err(c, "libcurl failed to initialise");
        return -1;
    }
    return 0;
}

void client_close(struct client *c)
{
    if (c->curl) {
        curl_easy_cleanup(c->curl);
        curl_global_cleanup();
    }
    free(c->socket);
    free(c->data_dir);
    c->curl = NULL;
    c->socket = NULL;
    c->data_dir = NULL;
}

int client_fail(const struct client *c)
{
    tool_err(c->cmd, "%s", c->err);
    return 1;
}

/* The one place where curl's results become words. */
static void explain(struct client *c, CURLcode res, const struct answer *a, long timeout_ms,
                    const char *curl_msg)
{
    long os_err = 0;

    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_err);
    switch (res) {
    case CURLE_COULDNT_CONNECT:
        if (os_err == EACCES || os_err == EPERM)
            set_err(c, "no permission to use %s (only the user running shoald may)", c->socket);
        else if (os_err == ENOENT || os_err == ECONNREFUSED || os_err == ENOTDIR || os_err == 0)
            set_err(c,
                    "no node answers on %s (is shoald running? start it with: "
                    "shoald --data-dir %s)",
                    c->socket, c->data_dir ? c->data_dir : "DIR");
        else
            set_err(c, "cannot connect to %s: %s", c->socket, strerror((int)os_err));
        break;
    case CURLE_OPERATION_TIMEDOUT:
        set_err(c, "the node on %s did not answer within %ld s", c->socket,
                timeout_ms ? timeout_ms / 1000 : CLIENT_CONNECT_MS / 1000);
        break;
    case CURLE_WRITE_ERROR:
        if (a->toobig)
            set_err(c, "the node's answer is larger than %u MiB", CLIENT_MAX_RESPONSE >> 20);
        else
            set_err(c, "out of memory reading the node's answer");
        break;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        set_err(c, "the node on %s stopped answering (did shoald stop?)", c->socket);
        break;
    default:
        set_err(c, "talking to the node on %s: %s", c->socket,
                curl_msg[0] ? curl_msg : curl_easy_strerror(res));
    }
}

/* The node's {"error": ...} line, or what is known without one. */
static void explain_status(struct client *c, const char *method, const char *path, long code,
                           const json_t *j)
{
    const char *msg = util_jstr(j, "error", NULL);
    char *nl;

    if (!msg || !*msg) {
        set_err(c, "the node answered %s /v1/%s with HTTP %ld", method, path, code);
        return;
    }
    set_err(c, "%s", msg);
    /* One line on stderr, whatever the node sent. */
    while ((nl = strpbrk(c->err, "\r\n")))
        *nl = ' ';
}

static void set_request(struct client *c, const char *method, const char *url, const char *text,
                        long timeout_ms)
{
    CURL *h = c->curl;

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CLIENT_CONNECT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "shoal/" SHOAL_VERSION);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
}

int client_call(struct client *c, const char *method, const char *path, const json_t *body,
                long timeout_ms, json_t **pout)
{
    struct curl_slist *hdrs = NULL, *h;
    struct answer a = {0};
    char url[1024], curl_msg[CURL_ERROR_SIZE] = "", *text = NULL;
    long code = 0;
    json_t *j = NULL;
    CURLcode res;
    int err = -1;

    snprintf(url, sizeof(url), "http://localhost/v1/%s", path);
    if (strcmp(method, "POST") == 0) {
        text = body ? json_dumps(body, JSON_COMPACT) : strdup("{}");
        if (!text) {
            set_err(c, "out of memory");
            return -1;
        }
    }
    /* "Expect:" off: curl would otherwise wait for a 100-continue on large bodies. */
    h = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = h ? curl_slist_append(h, "Expect:") : NULL;
    if (!hdrs) {
        curl_slist_free_all(h);
        free(text);
        set_err(c, "out of memory");
        return -1;
    }
    set_request(c, method, url, text, timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, text ? hdrs : NULL);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, curl_msg);
    res = curl_easy_perform(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    if (res != CURLE_OK) {
        explain(c, res, &a, timeout_ms, curl_msg);
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
    j = a.p ? json_loadb(a.p, a.len, 0, NULL) : NULL;
    if (code < 200 || code > 299) {
        explain_status(c, method, path, code, j);
        goto out;
    }
    if (!json_is_object(j)) {
        set_err(c, "the node's answer to %s /v1/%s is not a JSON object", method, path);
        goto out;
    }
    *pout = j;
    j = NULL;
    err = 0;
out:
    json_decref(j);
    curl_slist_free_all(hdrs);
    free(text);
    free(a.p);
    return err;
}

int client_open_call(struct client *c, const char *cmd, const char *method, const char *path,
                     const json_t *body, long timeout_ms, json_t **pout)
{
    if (client_open(c, cmd) < 0 || client_call(c, method, path, body, timeout_ms, pout) < 0)
        return client_fail(c);
    return 0;
}

int client_once(const char *cmd, const char *method, const char *path, const json_t *body,
                long timeout_ms, json_t **pout)
{
    struct client c;
    int status = client_open_call(&c, cmd, method, path, body, timeout_ms, pout);

    client_close(&c);
    return status;
}
