/* pull.h - pulling repo@revision from the Hub into the store, then exporting it.
 *
 * A pull resolves the revision to a commit, lists the commit's files (paginated),
 * keeps those the include/exclude globs select, and fetches what the store lacks:
 * each 16 MiB piece of an LFS file with its own range request, many in flight; each
 * piece is chunked, hashed and stored on the threadpool as it completes, and fed in
 * order to the file's sha256 (from memory, or read back from the store for pieces a
 * previous run stored). A file whose sha256 matches is marked complete; one that does
 * not is dropped and fetched again (PULL_FILE_ATTEMPTS in all). Small non-LFS files
 * come in one request and are checked against their git blob id (the Hub's ETag).
 * When every selected file is complete the snapshot (merged with what the store
 * already had of that commit) and the ref are stored, and the selected files are
 * exported to the Hugging Face cache or a local directory.
 *
 * Memory: at most max_buffers piece buffers (16 MiB each) exist at once across all
 * pulls; a fetched piece keeps its buffer until it is stored and hashed into its
 * file's sha256.
 *
 * Threads: loop thread only; blocking work goes through the workq.
 * Errors: 0 or a negative code; `why` gets one line for the user.
 */
#ifndef SHOAL_PULL_H
#define SHOAL_PULL_H

#include "hub.h"
#include "peer.h"
#include "store.h"
#include "work.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define PULL_FILE_ATTEMPTS 3
#define PULL_GLOBS_MAX     64
#define PULL_GLOB_LEN      1024
#define PULL_FILES_MAX     1000000 /* files in one repo listing */
#define PULL_PAGES_MAX     100000  /* tree pages */
#define PULL_KEEP_DONE     256     /* finished pulls remembered for status */
#define PULL_SMALL_MAX     (16u << 20) /* a non-LFS file is fetched whole, in memory */

struct pull_mgr;

struct pull_env {
    uv_loop_t *loop;
    struct store *store;
    struct hub *hub;
    struct workq *work;
    struct peer_mgr *peers;   /* for pulls --from-peer */
    unsigned max_buffers; /* piece buffers in all (and so range requests in flight) */
};

struct pull_req {
    const char *repo;       /* "org/name" as on the Hub */
    const char *repo_type;  /* "model", "dataset" or "space" */
    const char *revision;   /* branch, tag or commit */
    const char *const *include;
    unsigned n_include;
    const char *const *exclude;
    unsigned n_exclude;
    const char *from_peer;  /* "HOST:PORT": everything from that node, nothing from the Hub */
    const char *cache_dir;  /* exactly one of these two: absolute paths */
    const char *local_dir;
};

int pull_mgr_new(const struct pull_env *env, struct pull_mgr **out);
/* Fails running pulls ("the node is stopping"), cancels their requests, waits for
 * their jobs, then calls done(arg) and frees everything (done may run before this
 * returns when no job is out). */
void pull_mgr_close(struct pull_mgr *m, void (*done)(void *arg), void *arg);

/* Starts a pull (or joins an identical running one). Errors: -EINVAL (a bad field:
 * why says which), -ESHUTDOWN, -ENOMEM. */
int pull_start(struct pull_mgr *m, const struct pull_req *r, uint32_t *id, char *why,
               size_t why_len);

/* The pull as docs/control-api.md shows it (new reference), or NULL if unknown. */
json_t *pull_json(struct pull_mgr *m, uint32_t id, bool with_files);
/* {"pulls": [...]} without file lists. */
json_t *pull_list_json(struct pull_mgr *m);

struct pull_stats {
    unsigned active, done, failed;
    uint64_t bytes_done, bytes_total;  /* of active pulls */
    uint64_t bytes_fetched;            /* by all pulls since start */
    unsigned buffers;                  /* piece buffers in use */
};
void pull_get_stats(const struct pull_mgr *m, struct pull_stats *out);

#endif
