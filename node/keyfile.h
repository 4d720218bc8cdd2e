/* keyfile.h - the node's secret files: reading and creating them safely, and the
 * cluster key file.
 *
 * node.key (identity.c) and the cluster key follow the same rules. A key file is a
 * regular file that neither group nor others may access; it is read with a size bound;
 * it is created under a temp name (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), synced, moved
 * into place without replacing anything, and its directory synced. A file that breaks
 * a rule is refused with a message and never replaced.
 *
 * The cluster key (protocol/clusterkey.h) comes from --cluster-key. Its default,
 * DATA_DIR/cluster.key, is created on the first start; a path the operator chose must
 * exist, since a key made up there would silently start a cluster of its own. A path
 * equal to the default is treated as the default (a saved --print-config names it).
 *
 * Threads: blocking file I/O; call at startup, before the loop runs, from one thread.
 * Errors: 0 or a negative code: SHOAL_EFORMAT / SHOAL_EVERSION / SHOAL_EHASH (a file
 *   that is not a valid key file), -EACCES (mode too open), -ENOENT (missing), -EEXIST
 *   (exists where a new one was to be made), -ENAMETOOLONG, other -errno (file system).
 *   On failure `why` gets one line naming the file and saying what is wrong, and the
 *   out-parameters are untouched.
 */
#ifndef SHOAL_KEYFILE_H
#define SHOAL_KEYFILE_H

#include "clusterkey.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYFILE_CLUSTER "cluster.key" /* the default cluster key, in the data directory */

enum keyfile_flags {
    KEYFILE_NOFOLLOW = 1, /* refuse a symbolic link (files the node made itself) */
};

/* Reads the key file at `path` into buf, at most cap bytes (give one more than a valid
 * file has, to see an over-long one); *len gets the bytes read. `what` names the kind
 * of file in messages ("node key file"). Checks that it is a regular file that group
 * and others cannot access. The caller wipes buf. */
int keyfile_read(const char *path, const char *what, int flags, uint8_t *buf, size_t cap,
                 size_t *len, char *why, size_t why_len);

/* Creates the key file at `path` holding buf: written to `path`.tmp, synced, renamed to
 * `path` unless that exists (-EEXIST), directory synced. The caller owns the directory
 * (a stale `path`.tmp makes this fail: see keyfile_remove_stale_tmp). */
int keyfile_create(const char *path, const char *what, const uint8_t *buf, size_t len, char *why,
                   size_t why_len);

/* Removes `path`.tmp, left by a crash during an earlier keyfile_create. Only for a caller
 * that holds the directory (shoald.lock), so that nobody else is writing it. */
int keyfile_remove_stale_tmp(const char *path, char *why, size_t why_len);

/* Loads the cluster key at `path` (following symbolic links unless flags say not to).
 * Errors: as above; the message says which of clusterkey_decode's faults it is. */
int keyfile_cluster_load(const char *path, int flags, struct clusterkey *out, char *why,
                         size_t why_len);

/* The node's cluster key at startup: `path` is the configured one (cfg.cluster_key).
 * If it is DATA_DIR/cluster.key and does not exist, a new key is made there (*created
 * says so); any other path must exist. The caller holds the data directory. */
int keyfile_cluster_open(const char *data_dir, const char *path, struct clusterkey *out,
                         bool *created, char *why, size_t why_len);

/* Writes a message into why (when why_len > 0) and returns err: the one-line-reason
 * convention of the key-file functions, shared with identity.c. */
int keyfile_why(char *why, size_t why_len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
