/* snapshot.h - a repo at one commit: its files, and the names in it.
 *
 * A snapshot lists a repo's files at one commit: path, size, sha256 (the file id) and
 * the Hub's etag (64-hex sha256 for LFS files, 40-hex git blob sha1 for the others),
 * which names the blob in the Hugging Face cache. Snapshots come from the hub and
 * from peers, so every name in one is validated before anything uses it: the
 * decoder rejects what the validators below reject.
 *
 * Encoding (version 1, docs/formats.md):
 *   [1, repo, commit, [[path, size, sha256 (bin 32), etag], ...]]
 * with files in strictly increasing path order (byte order), so one snapshot has
 * one encoding.
 *
 * Threads: reentrant. Errors: 0 or a negative code from err.h; out-parameters are
 *   left untouched on failure.
 * Ownership: a decoded or built snapshot owns its arrays and strings; release it with
 *   snapshot_release().
 */
#ifndef SHOAL_SNAPSHOT_H
#define SHOAL_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAPSHOT_VERSION   1
#define SNAPSHOT_REPO_MAX  200   /* "type/org/name": the Hub allows 96 per name part */
#define SNAPSHOT_REV_MAX   255   /* a branch or tag name, or a commit */
#define SNAPSHOT_PATH_MAX  1024  /* a path in the repo */
#define SNAPSHOT_FILES_MAX 100000
#define SNAPSHOT_COMMIT_LEN 40   /* hex characters of a git commit id */
#define SNAPSHOT_ETAG_MAX  64

struct snapshot_file {
    char *path;                        /* validated: see snapshot_path_ok */
    uint64_t size;
    uint8_t sha256[32];
    char etag[SNAPSHOT_ETAG_MAX + 1];  /* lower-case hex, 40 or 64 digits */
};

struct snapshot {
    char repo[SNAPSHOT_REPO_MAX + 1];          /* "model/org/name" (see snapshot_repo_ok) */
    char commit[SNAPSHOT_COMMIT_LEN + 1];      /* 40 lower-case hex digits */
    uint32_t n_files;
    struct snapshot_file *files;               /* sorted by path */
};

/* Names. Each returns true when the name is acceptable:
 * repo:   "<type>/<name>" or "<type>/<org>/<name>", type one of model, dataset, space;
 *         each part 1..96 characters of [A-Za-z0-9._-], not starting or ending with
 *         '.' or '-', no "..", and not "." itself; at most SNAPSHOT_REPO_MAX bytes in all.
 * path:   1..SNAPSHOT_PATH_MAX bytes of valid UTF-8, '/'-separated components, none
 *         empty, ".", or "..", no leading '/', no backslash, no control characters
 *         (< 0x20 or 0x7f), not ".git" as a first component.
 * rev:    1..SNAPSHOT_REV_MAX bytes, printable ASCII, no "..", no leading '/' or '-',
 *         no trailing '/', no "//", no backslash or space (git's rules, simplified);
 *         may hold '/' (e.g. "refs/pr/1").
 * commit: exactly 40 lower-case hex digits.
 * etag:   40 or 64 lower-case hex digits. */
bool snapshot_repo_ok(const char *repo);
bool snapshot_path_ok(const char *path);
bool snapshot_rev_ok(const char *rev);
bool snapshot_commit_ok(const char *commit);
bool snapshot_etag_ok(const char *etag);

/* The Hugging Face cache folder of a repo: "models--org--name" (type pluralised, '/'
 * as "--"). out must hold SNAPSHOT_REPO_MAX + 8 bytes. Errors: -EINVAL (bad repo, or cap
 * too small for this repo's folder). */
int snapshot_repo_folder(const char *repo, char *out, size_t cap);

/* Building: init, then add files in any order, then finish (sorts, rejects duplicate
 * paths). Errors: -EINVAL (a name the validators reject), SHOAL_ELIMIT (too many
 * files, or size > PROTO_FILE_MAX), -ENOMEM. */
int snapshot_init(struct snapshot *s, const char *repo, const char *commit);
int snapshot_add(struct snapshot *s, const char *path, uint64_t size,
                 const uint8_t sha256[static 32], const char *etag);
int snapshot_finish(struct snapshot *s);
void snapshot_release(struct snapshot *s);

/* The file with this path, or NULL (binary search: the snapshot must be finished). */
const struct snapshot_file *snapshot_find(const struct snapshot *s, const char *path);

/* Encodes into a malloc'd buffer. Errors: -EINVAL (not finished or invalid), -ENOMEM. */
int snapshot_encode(const struct snapshot *s, uint8_t **out, size_t *out_len);
/* Decodes and validates every name and the order. Errors: SHOAL_EFORMAT,
 * SHOAL_EVERSION, SHOAL_ELIMIT, -ENOMEM. */
int snapshot_decode(struct snapshot *s, const uint8_t *buf, size_t len);

#endif
