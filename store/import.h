/* import.h - a local directory into the store as a snapshot (checkpoints that are not
 * on the Hub).
 *
 * Every regular file under `dir` becomes a file of the snapshot, its path relative to
 * `dir`. Symlinks and special files are skipped (and counted), as are `.git` and
 * `.cache` directories at the top. Each file is read twice: once for its sha256 (its
 * id, under which its pieces are stored), once to chunk and store it, with the sha256
 * checked again so that a file changing under the import is caught. Pieces already
 * stored are not written again, so an interrupted import resumes cheaply.
 *
 * The commit id is derived from the content: the first 20 bytes, in hex, of the
 * sha256 of the snapshot's encoding with an all-zero commit. The same tree imported
 * under the same repo name gives the same commit.
 *
 * Threads: blocking I/O; call from a worker thread.
 * Errors: -EINVAL (a bad repo name, or a path the snapshot rules reject), -errno from
 *   the file system, SHOAL_EHASH (a file changed while it was imported), the store's
 *   errors (-ENOSPC...). On error `why` names the file and the reason.
 */
#ifndef SHOAL_IMPORT_H
#define SHOAL_IMPORT_H

#include "snapshot.h"
#include "store.h"

struct import_stats {
    uint32_t files;
    uint32_t skipped;   /* symlinks and special files */
    uint64_t bytes;
};

/* On success *out is the stored snapshot (release it with snapshot_release). */
int import_dir(struct store *s, const char *dir, const char *repo, struct snapshot *out,
               struct import_stats *stats, char *why, size_t why_len);

#endif
