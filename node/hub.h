/* hub.h - the node's client for the Hugging Face Hub's HTTP API (hub-protocol.md §1).
 *
 * Requests run on the node's libuv loop through one libcurl multi handle; hub_io.c is
 * the only file that knows both libraries, hub.c speaks in requests. Two kinds:
 *
 *   hub_get_json   an API call (repo info, tree pages): the body parsed with jansson.
 *   hub_get_range  bytes [off, off + len) of a file URL, streamed to a callback.
 *
 * Redirects are followed here, not by curl: a relative Location keeps the token; an
 * absolute one to another host (the CDN) gets no Authorization header, ever. HTTP/2 is
 * used where the server offers it.
 *
 * Retries: timeouts, connection errors, stalls (no byte for stall_ms), truncated
 * bodies, 408, 429, 500, 502, 503 and 504 are retried up to max_retries times with
 * exponential backoff and full jitter (backoff_ms doubling up to backoff_max_ms); a
 * Retry-After in seconds on 429/503 is honoured instead (capped at retry_after_max_ms).
 * A range retried after part of its bytes arrived resumes where it stopped, so the
 * data callback sees each offset once, in increasing order. A server that answers a
 * range with 200 is handled by skipping to off. Other 4xx answers are not retried.
 * Bytes that are wrong but complete cannot be seen here: the caller's hashes catch
 * them.
 *
 * Threads: loop thread only. Callbacks run from the loop, never inside curl's own
 * callbacks, and never from within the hub_* call that started the request.
 * Ownership: URLs and paths are copied. A request handle is valid until its done
 *   callback returns or hub_cancel is called; after hub_cancel no callback runs.
 * Errors: 0 or a negative code: SHOAL_EHUB (the Hub answered with an error: see the
 *   struct hub_result passed to the callback), -ETIMEDOUT (retries exhausted on
 *   timeouts or stalls), -ECONNREFUSED / -EHOSTUNREACH / -EIO (network, after
 *   retries), -EPROTO (a bad answer: unparsable JSON, a wrong Content-Range, a
 *   redirect loop), -ENOMEM, -EINVAL (a URL over HUB_URL_MAX), -ECANCELED (hub_close).
 */
#ifndef SHOAL_HUB_H
#define SHOAL_HUB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HUB_URL_MAX      8192
#define HUB_JSON_MAX     (64u << 20) /* bytes of one API answer (a tree page) */
#define HUB_REDIRECT_MAX 8

struct hub;
struct hub_req;

struct hub_opts {
    const char *endpoint;        /* "https://huggingface.co", no trailing '/' */
    const char *token;           /* NULL: anonymous */
    const char *user_agent;      /* NULL: "shoal/<version>" */
    unsigned max_conns;          /* connections in all; 0: 16 */
    unsigned max_retries;        /* per request; 0: 6 */
    uint64_t connect_ms;         /* 0: 10 000 */
    uint64_t stall_ms;           /* no body byte for this long = stalled; 0: 30 000 */
    uint64_t backoff_ms;         /* first retry delay; 0: 1 000 */
    uint64_t backoff_max_ms;     /* 0: 16 000 */
    uint64_t retry_after_max_ms; /* 0: 120 000 */
};

/* What the server said, for messages. Filled for every completed request. */
struct hub_result {
    int status;                 /* HTTP status of the last answer; 0 if none */
    char error_code[64];        /* X-Error-Code, "" if none */
    char error_message[512];    /* X-Error-Message, or "error" from a JSON body */
    char repo_commit[41];       /* X-Repo-Commit, "" if none */
    char next[HUB_URL_MAX];     /* Link rel="next" (absolute URL), "" if none */
    unsigned retries;           /* retries this request took */
    char host[264];             /* host:port of the last attempt (for messages), "" if none */
};

int hub_new(uv_loop_t *loop, const struct hub_opts *o, struct hub **out);

/* Cancels every request (their done callbacks run with -ECANCELED), cleans up libcurl
 * while the loop runs, then calls done(arg) from the loop and frees the hub. */
void hub_close(struct hub *h, void (*done)(void *arg), void *arg);

/* url: a path starting with '/' (joined to the endpoint) or an absolute URL (a
 * pagination link). On success doc is the parsed body, a new reference the callback
 * owns; on error doc is NULL. */
typedef void (*hub_json_cb)(void *arg, int err, json_t *doc, const struct hub_result *res);
int hub_get_json(struct hub *h, const char *url, hub_json_cb cb, void *arg,
                 struct hub_req **out);

/* Return from a data callback to pause the transfer until hub_resume. */
#define HUB_PAUSE 1
/* Called with consecutive pieces of the range: off is the file offset of data[0].
 * Return 0 to go on, HUB_PAUSE, or a negative code to fail the request with it. */
typedef int (*hub_data_cb)(void *arg, uint64_t off, const uint8_t *data, size_t len);
typedef void (*hub_done_cb)(void *arg, int err, const struct hub_result *res);
/* GETs url (a path or an absolute URL) with Range: bytes=off-(off+len-1). done runs
 * once all len bytes were delivered (err 0) or on failure. len > 0. */
int hub_get_range(struct hub *h, const char *url, uint64_t off, uint64_t len,
                  hub_data_cb data, hub_done_cb done, void *arg, struct hub_req **out);

void hub_resume(struct hub_req *r);
void hub_cancel(struct hub_req *r);

/* One line for the user from a failed request's result, e.g. "repository not found
 * (or private: set HF_TOKEN)", "gated repository: ask for access on the Hub",
 * "revision not found", "file not found", "HTTP 500 after 6 retries". `what` names the
 * subject ("org/name", "org/name@rev", a file path) and is put in the message. */
void hub_describe_error(int err, const struct hub_result *res, const char *what, char *buf,
                        size_t cap);

/* Counters for /metrics. */
struct hub_stats {
    uint64_t requests;       /* HTTP requests sent (retries and redirects included) */
    uint64_t retries;
    uint64_t errors;         /* requests that failed for good */
    uint64_t bytes;          /* body bytes received */
    uint64_t stalls;         /* transfers aborted for stalling */
    unsigned in_flight;
};
void hub_get_stats(const struct hub *h, struct hub_stats *out);

/* Percent-encodes s into out: with keep_slash, '/' stays (file paths); without, it is
 * encoded too (revisions: refs/pr/1 -> refs%2Fpr%2F1). Returns the length or -ENOBUFS. */
int hub_escape(const char *s, bool keep_slash, char *out, size_t cap);

#endif
