/* export.h - complete snapshots from the store into the Hugging Face cache layout, or
 * into a plain directory.
 *
 * export_hf_cache() writes what huggingface_hub itself writes (hub-protocol.md 2.2,
 * 2.3, 2.6), so that programs with HF_HUB_OFFLINE=1 find the files:
 *   <cache>/<repo folder>/blobs/<etag>                       the file's bytes
 *   <cache>/<repo folder>/snapshots/<commit>/<path>          relative symlink to the blob
 *   <cache>/<repo folder>/refs/<revision>                    the commit, no newline
 * Blobs are written to a unique temporary name in blobs/, checked by sha256 and size
 * while being written, fsynced, then renamed: a partial file never appears under its
 * final name. An existing blob of the right size is kept. refs/<revision> is written
 * last (temporary file + rename), and only when revision is not the commit itself.
 *
 * export_local_dir() writes real files at <dir>/<path> the same way (temporary name,
 * sha256, rename), replacing files whose content differs.
 *
 * Every name is validated again here (snapshot.h) and every path is checked to stay
 * inside the target directory, through symlinks already on disk too.
 *
 * Threads: blocking file I/O; call from a worker thread. Functions may run
 *   concurrently for different targets; two exports into one cache are safe (unique
 *   temporary names, atomic renames) but do double work.
 * Errors: 0 or a negative code: -ENOENT (a file of the snapshot is not complete in the
 *   store), SHOAL_EHASH (the bytes read back do not match the sha256: the store is
 *   damaged; run store_check), -EINVAL (a name fails validation, or a path would leave
 *   the target), -errno from the file system (e.g. -ENOSPC, -EACCES). On error `why`
 *   gets one line naming the file and the reason. Files already placed stay (they are
 *   complete and verified); nothing partial is left under a final name.
 */
#ifndef SHOAL_EXPORT_H
#define SHOAL_EXPORT_H

#include "snapshot.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

struct export_stats {
    uint32_t files_written;  /* blobs (or local files) written */
    uint32_t files_kept;     /* already present with the right size (cache) or content */
    uint64_t bytes_written;
};

/* Optional per-file progress: called after each file is placed. */
typedef void (*export_progress_cb)(void *arg, const struct snapshot_file *f, bool written);

/* cache_dir: the hub cache root (HF_HUB_CACHE); revision: the branch or tag asked for
 * (or the commit itself, or NULL for no ref). */
int export_hf_cache(struct store *s, const struct snapshot *snap, const char *cache_dir,
                    const char *revision, export_progress_cb cb, void *arg,
                    struct export_stats *out, char *why, size_t why_len);

int export_local_dir(struct store *s, const struct snapshot *snap, const char *dir,
                     export_progress_cb cb, void *arg, struct export_stats *out, char *why,
                     size_t why_len);

/* --- streamed blobs ----------------------------------------------------------------
 *
 * A pull writes each file's blob while its pieces arrive, so that exporting costs no
 * second pass over the bytes: export_stream_open creates the temporary file in the
 * cache's blobs/ folder, export_stream_write appends in order (and starts the disk
 * writeback at once, so the final fsync has little left to do), export_stream_commit
 * fsyncs and renames it to blobs/<etag>, once the caller has checked the sha256 of
 * exactly the bytes it wrote. export_hf_cache then finds the blob in place and only
 * adds the snapshot links and the ref. export_stream_abort removes the temporary file.
 *
 * Threads: one stream is used by one thread at a time; blocking file I/O.
 * Errors: as above; `why` names the file. */
struct export_stream;

/* *out is NULL (and 0 returned) when blobs/<etag> is already there with f->size bytes:
 * nothing to write. */
int export_stream_open(const char *cache_dir, const char *repo, const struct snapshot_file *f,
                       struct export_stream **out, char *why, size_t why_len);
/* Errors: -EFBIG (more bytes than f->size), -errno. */
int export_stream_write(struct export_stream *x, const void *data, size_t len);
/* Frees x whatever happens. Errors: -EIO (fewer bytes written than f->size), -errno. */
int export_stream_commit(struct export_stream *x, char *why, size_t why_len);
void export_stream_abort(struct export_stream *x);

#endif
