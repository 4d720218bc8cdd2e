/* peer.h - connections between nodes: TCP, the Noise handshake, the record stream
 * (docs/peer-protocol.md), the store served to members, and requests to a peer.
 *
 * Every connection, whichever side opened it, starts with Noise_XXpsk3 (noise.h)
 * keyed by the cluster key: a node without the key cannot finish it. The initiator's
 * prologue and payloads carry nothing secret. Then each side sends HELLO, and either
 * side may send requests: this module answers GET_SNAPSHOT, GET_MANIFEST, GET_CHUNKS and
 * HAVE from the store (store work on the threadpool), and lets the node's own code
 * (pulls) send them to a peer by address.
 *
 * Bad peers: a failed handshake, a frame or record over its limit, a bit flipped (a
 * failed tag), a malformed or unknown message, a silent connection (no handshake within
 * handshake_ms, or nothing read for idle_ms while something is owed), a peer that stops
 * reading (nothing written for idle_ms while output waits): each closes that connection
 * with one log line naming the peer and the reason, and counts in the statistics.
 * Nothing else in the node changes. Memory per connection is bounded: one read buffer,
 * one record buffer, and output limited by the peer's credit and PEER_OUT_MAX.
 *
 * Threads: loop thread only; store work goes through the workq.
 * Errors: 0 or a negative code (err.h); callbacks get `why`, one line for the user.
 */
#ifndef SHOAL_PEER_H
#define SHOAL_PEER_H

#include "store.h"
#include "work.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PEER_ADDR_MAX   300        /* "host:port" as given or as seen */
#define PEER_OUT_MAX    (8u << 20) /* bytes queued for one connection's socket */

struct peer_mgr;

struct peer_env {
    uv_loop_t *loop;
    struct store *store;
    struct workq *work;
    const uint8_t *static_sk;      /* the node's X25519 secret key (32 bytes) */
    const uint8_t *psk;            /* noise_psk_from_cluster_key() (32 bytes) */
    const char *node_id;           /* for HELLO and logs */
    unsigned max_conns;            /* 0: 256 */
    unsigned max_uploads;          /* GET_CHUNKS answered at once, all peers; 0: 64 */
    uint64_t handshake_ms;         /* 0: 10 000 */
    uint64_t idle_ms;              /* 0: 60 000 */
    uint64_t connect_ms;           /* 0: 10 000 */
    bool chacha_only;              /* never offer or choose AES-256-GCM */
};

int peer_mgr_new(const struct peer_env *env, struct peer_mgr **out);
/* Listens on host:port (port 0: any). */
int peer_listen(struct peer_mgr *m, const char *host, uint16_t port);
/* The port listened on, or -ENOENT. */
int peer_listen_port(const struct peer_mgr *m);
/* Closes the listener and every connection (pending requests fail with
 * -ECANCELED), waits for their store jobs, then calls done(arg) and frees m. */
void peer_mgr_close(struct peer_mgr *m, void (*done)(void *arg), void *arg);

/* --- requests to a peer ------------------------------------------------------------ */

/* addr is "host:port"; a connection to it is opened (or reused) as needed. A request
 * fails (err < 0, why set) if the connection cannot be made or breaks, if the peer
 * answers ERROR, or after the peer's misbehaviour. Callbacks run on the loop, never
 * inside the call that started the request. */

/* SNAPSHOT and MANIFEST: the payload bytes (a snapshot or manifest v1 encoding,
 * decoded and checked by the caller), valid during the call. */
typedef void (*peer_blob_cb)(void *arg, int err, const char *why, const uint8_t *data,
                             size_t len);
int peer_get_snapshot(struct peer_mgr *m, const char *addr, const char *repo,
                      const char *commit, peer_blob_cb cb, void *arg);
/* piece: a piece index, or WIRE_PIECE_ALL for the whole manifest. */
int peer_get_manifest(struct peer_mgr *m, const char *addr, const uint8_t sha256[static 32],
                      uint32_t piece, peer_blob_cb cb, void *arg);

/* GET_CHUNKS: n hashes (1..WIRE_CHUNKS_PER_REQ). data gets the bytes of chunk i in
 * pieces (off within the chunk, total its declared length); missing(i) for a chunk
 * the peer does not hold; done once every hash was answered (err 0) or on failure.
 * The bytes are not verified here: the caller checks them against their hashes. */
struct peer_chunks_cb {
    void (*data)(void *arg, uint32_t i, uint32_t off, uint32_t total, const uint8_t *data,
                 size_t len);
    void (*missing)(void *arg, uint32_t i);
    void (*done)(void *arg, int err, const char *why);
};
int peer_get_chunks(struct peer_mgr *m, const char *addr, const uint8_t (*hashes)[32],
                    uint32_t n, const struct peer_chunks_cb *cb, void *arg);

/* Reports a peer that sent bytes not matching their hash: its connection is closed
 * with a log line and the fault counted. */
void peer_blame(struct peer_mgr *m, const char *addr, const char *why);

/* --- statistics ----------------------------------------------------------------------- */

struct peer_stats {
    uint64_t accepted, connected;     /* connections in, out */
    uint64_t handshakes_failed;       /* wrong key, garbage, timeouts before the end */
    uint64_t protocol_errors;         /* bad frames, records, messages, tags */
    uint64_t timeouts;                /* idle or non-reading peers closed */
    uint64_t refused;                 /* over max_conns */
    uint64_t bad_data;                /* chunks that failed their hash (peer_blame) */
    uint64_t bytes_in, bytes_out;     /* on the sockets */
    uint64_t chunk_bytes_served, chunk_bytes_fetched;
    unsigned open;
};
void peer_get_stats(const struct peer_mgr *m, struct peer_stats *out);

/* Faults per peer host (the address without its port), kept after the connection is
 * gone: the most recent PEER_HOSTS_MAX hosts with a fault. */
#define PEER_HOSTS_MAX 64
enum peer_fault { PEER_F_HANDSHAKE, PEER_F_PROTOCOL, PEER_F_TIMEOUT, PEER_F_BAD_DATA, PEER_F_COUNT };
extern const char *const peer_fault_names[PEER_F_COUNT]; /* "handshake", "protocol", ... */
struct peer_host_faults {
    char host[PEER_ADDR_MAX];
    uint64_t n[PEER_F_COUNT];
    uint64_t last_ms;            /* loop time of the last one */
    char last[160];              /* what it was */
};
/* Copies up to max entries, most recent first; returns how many. */
size_t peer_host_faults(const struct peer_mgr *m, struct peer_host_faults *out, size_t max);
/* {"peers": [{"addr", "node_id", "direction", "state", "bytes_in", "bytes_out", ...}]} */
json_t *peer_list_json(const struct peer_mgr *m);

#endif
