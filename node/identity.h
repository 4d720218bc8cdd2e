/* identity.h - the node's long-term X25519 key pair (its Noise static key).
 *
 * The pair lives in DATA_DIR/node.key, created on the node's first start and loaded on
 * every later one. File format (76 bytes):
 *   "SHOALNK1" (8) | secret key (32) | public key (32) | check (4)
 * where check is the first 4 bytes of BLAKE3 over the 72 bytes before it. A file that
 * is not exactly that, whose public key does not match its secret key, or that group or
 * others may access is refused with a message: it is never replaced silently.
 *
 * Threads: blocking file I/O; call at startup, before the loop runs, from one thread.
 * Errors: 0 or a negative code: SHOAL_EFORMAT (a malformed file), -EACCES (mode too
 *   open), -errno (file system), -ENAMETOOLONG (path). On failure `why` gets one line
 *   naming the file and saying what is wrong, and *out is untouched.
 * Ownership: struct identity holds the secret key; wipe it with identity_clear().
 */
#ifndef SHOAL_IDENTITY_H
#define SHOAL_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENTITY_KEY_LEN   32
#define IDENTITY_FILE      "node.key"
#define IDENTITY_MAGIC     "SHOALNK1"
#define IDENTITY_MAGIC_LEN 8
#define IDENTITY_CHECK_LEN 4
#define IDENTITY_FILE_LEN  (IDENTITY_MAGIC_LEN + 2 * IDENTITY_KEY_LEN + IDENTITY_CHECK_LEN)
#define IDENTITY_ID_LEN    16 /* characters in a node id, without the NUL */

struct identity {
    uint8_t secret[IDENTITY_KEY_LEN];
    uint8_t public[IDENTITY_KEY_LEN];
};

/* Loads DATA_DIR/node.key, or creates it (mode 0600) if it does not exist; *created
 * tells which. The caller holds the data directory (shoald.lock), so a stale temp file
 * left by a crash during creation may be removed. Errors: as above. */
int identity_load_or_create(const char *data_dir, struct identity *out, bool *created,
                            char *why, size_t why_len);

/* Loads the key file at `path`. Errors: -ENOENT if it does not exist, as above. */
int identity_load(const char *path, struct identity *out, char *why, size_t why_len);

/* Creates the key file at `path` with a new key pair: written under a temp name
 * (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), synced, renamed, directory synced.
 * Errors: -EEXIST if `path` exists, as above. */
int identity_create(const char *path, struct identity *out, char *why, size_t why_len);

/* The node id: lower-case base32 (RFC 4648, no padding) of the first 10 bytes of
 * BLAKE3(public key), IDENTITY_ID_LEN characters and a NUL. */
void identity_node_id(const struct identity *id, char out[static IDENTITY_ID_LEN + 1]);

/* Wipes the key pair. */
void identity_clear(struct identity *id);

#endif
