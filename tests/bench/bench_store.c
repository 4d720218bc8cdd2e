/* bench_store.c - the store's throughput next to the disk's.
 *
 * Usage: bench_store DIR [GIB [direct]]   (DIR on the disk to measure; GIB of model,
 * default 4; "direct": pack writes with direct I/O, else buffered)
 *
 * Prints: sequential direct writes by dd on the same disk; ingest (chunk + hash +
 * store) with one writer per core; store-only writes of already-hashed pieces; write
 * amplification (bytes this process sent to the block layer, from /proc/self/io, over
 * bytes stored); read-back of every file warm; peak RSS.
 */
#include "check.h"
#include "hasher.h"
#include "export.h"
#include "store.h"

#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define FILE_PIECES 64 /* 1 GiB files */

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Peak RSS since the last call, in MiB (VmHWM, then reset through clear_refs). */
static long phase_peak_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    long kib = -1;

    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    }
    if (f)
        fclose(f);
    f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
    return kib / 1024;
}

static uint64_t io_written(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    unsigned long long v = 0;

    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "write_bytes: %llu", &v) == 1)
            break;
    }
    if (f)
        fclose(f);
    return v;
}

struct job {
    struct store *s;
    uint32_t n_pieces;         /* total */
    uint32_t next;             /* next piece to take */
    pthread_mutex_t mu;
    bool hash;                 /* chunk and hash (ingest) or reuse the results (store-only) */
    struct hasher_piece **res; /* per piece, computed once */
    uint64_t seed;
    int err;
};

/* Piece i: one random base piece with its number stamped at the start of every 4 KiB
 * block, so that no two pieces share a chunk (every chunk spans a block start) while
 * making a piece costs a copy, not a random generator run on the writer's core. */
static uint8_t *base_piece;

static void piece_bytes(uint8_t *buf, uint32_t i, uint64_t seed)
{
    uint32_t b;

    memcpy(buf, base_piece, PROTO_PIECE_LEN);
    for (b = 0; b < PROTO_PIECE_LEN; b += 4096) {
        memcpy(buf + b, &i, sizeof(i));
        memcpy(buf + b + 4, &seed, sizeof(seed));
    }
}

/* File ids are the sha256 of the files' bytes, computed once before timing. */
static uint8_t (*ids)[32];

static void file_id(uint8_t id[32], uint32_t file, uint64_t seed)
{
    memcpy(id, ids[file], 32);
}

static void make_ids(uint32_t files, uint64_t seed)
{
    uint8_t *buf = aligned_alloc(4096, PROTO_PIECE_LEN);
    struct sha256 h;
    uint32_t f, p;

    ids = malloc(files * sizeof(*ids));
    for (f = 0; f < files; f++) {
        CHECK_EQ(sha256_init(&h), 0);
        for (p = 0; p < FILE_PIECES; p++) {
            piece_bytes(buf, f * FILE_PIECES + p, seed);
            sha256_update(&h, buf, PROTO_PIECE_LEN);
        }
        sha256_final(&h, ids[f]);
    }
    free(buf);
}

static void *writer(void *arg)
{
    struct job *j = arg;
    uint8_t *buf = aligned_alloc(4096, PROTO_PIECE_LEN);
    struct store_chunk *c = malloc(PROTO_CHUNKS_PER_PIECE * sizeof(*c));
    uint8_t id[32];
    uint32_t i, k;

    for (;;) {
        pthread_mutex_lock(&j->mu);
        i = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (i >= j->n_pieces)
            break;
        piece_bytes(buf, i, j->seed);
        if (j->hash)
            hasher_piece_compute(j->res[i], buf, PROTO_PIECE_LEN);
        uint64_t off = 0;
        for (k = 0; k < j->res[i]->n_chunks; k++) {
            memcpy(c[k].hash, j->res[i]->chunks[k].hash, 32);
            c[k].len = (uint32_t)j->res[i]->chunks[k].len;
            c[k].data = buf + off;
            off += c[k].len;
        }
        file_id(id, i / FILE_PIECES, j->seed);
        int r = store_put_piece(j->s, id, i % FILE_PIECES, j->res[i]->hash, c,
                                j->res[i]->n_chunks);
        if (r < 0)
            j->err = r;
    }
    free(buf);
    free(c);
    return NULL;
}

static double run(struct job *j, int threads)
{
    pthread_t t[16];
    double t0 = now();
    uint8_t id[32];
    int i;

    j->next = 0;
    for (i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, writer, j);
    for (i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(j->err, 0);
    for (i = 0; i < (int)(j->n_pieces / FILE_PIECES); i++) {
        file_id(id, (uint32_t)i, j->seed);
        CHECK_EQ(store_complete_file(j->s, id, (uint64_t)FILE_PIECES * PROTO_PIECE_LEN), 0);
    }
    return now() - t0;
}

static int count_bytes(void *arg, const uint8_t *data, size_t len)
{
    *(uint64_t *)arg += len + (data[0] & 0); /* touch the bytes */
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : NULL;
    int gib = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 4, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    char path[4096], cmd[8192];
    struct job j = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct store_opts o = {.writes = argc > 3 && strcmp(argv[3], "direct") == 0
                                         ? STORE_WRITES_DIRECT
                                         : STORE_WRITES_BUFFERED};
    struct store_stats st;
    struct rusage ru;
    uint64_t w0, w1, total, got = 0;
    double secs;
    uint32_t i;
    char why[256];

    /* As shoald will: one malloc arena. With one per thread, memory freed by one
     * thread (memtables, after their flush) is not reused by the others, and peak RSS
     * rose by ~120 MiB for the same work (docs/benchmarks.md). */
    mallopt(M_ARENA_MAX, 1);
    if (!dir || gib < 1) {
        fprintf(stderr, "usage: bench_store DIR [GIB [direct]]\n");
        return 2;
    }
    if (threads > 16)
        threads = 16;
    total = (uint64_t)gib << 30;
    base_piece = aligned_alloc(4096, PROTO_PIECE_LEN);
    check_fill_splitmix(base_piece, PROTO_PIECE_LEN, 1);
    j.n_pieces = (uint32_t)(total / PROTO_PIECE_LEN);
    j.res = malloc(j.n_pieces * sizeof(*j.res));
    for (i = 0; i < j.n_pieces; i++)
        j.res[i] = malloc(sizeof(struct hasher_piece));

    printf("== disk: dd oflag=direct, 16 MiB blocks, %d GiB\n", gib);
    snprintf(cmd, sizeof(cmd),
             "dd if=/dev/zero of=%s/dd.test bs=16M count=%d oflag=direct 2>&1 | tail -1; "
             "rm -f %s/dd.test",
             dir, gib * 64, dir);
    fflush(stdout);
    CHECK_EQ(system(cmd), 0);

    make_ids(j.n_pieces / FILE_PIECES, 1);
    printf("benchmark's own buffers before the store opens: %ld MiB\n", phase_peak_mib());
    snprintf(path, sizeof(path), "%s/store", dir);
    CHECK_EQ(store_open(path, &o, &j.s, why, sizeof(why)), 0);
    printf("== store, %d writer threads, %d GiB in 1 GiB files, %s writes\n", threads, gib,
           o.writes == STORE_WRITES_DIRECT ? "direct" : "buffered");
    j.hash = true;
    j.seed = 1;
    w0 = io_written();
    secs = run(&j, threads);
    w1 = io_written();
    printf("ingest (chunk + hash + store):     %6.0f MB/s\n", total / secs / 1e6);
    printf("  write amplification:             %6.2f x\n", (double)(w1 - w0) / total);
    printf("  peak RSS of this phase:          %6ld MiB\n", phase_peak_mib());
    store_close(j.s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", path);
    CHECK_EQ(system(cmd), 0);

    CHECK_EQ(store_open(path, &o, &j.s, why, sizeof(why)), 0);
    j.hash = false;
    w0 = io_written();
    secs = run(&j, threads);
    w1 = io_written();
    printf("store-only writes (hashed chunks): %6.0f MB/s\n", total / secs / 1e6);
    printf("  write amplification:             %6.2f x\n", (double)(w1 - w0) / total);
    printf("  peak RSS of this phase:          %6ld MiB\n", phase_peak_mib());
    CHECK_EQ(store_stats(j.s, &st), 0);
    CHECK_EQ(st.physical_bytes, total);

    /* Twice: direct writes leave the page cache cold, so the first pass reads the
     * disk; the second is the warm figure either way. */
    for (int pass = 0; pass < 2; pass++) {
        got = 0;
        secs = now();
        for (i = 0; i < j.n_pieces / FILE_PIECES; i++) {
            uint8_t id[32];
            file_id(id, i, j.seed);
            CHECK_EQ(store_read_file(j.s, id, count_bytes, &got), 0);
        }
        secs = now() - secs;
        CHECK_EQ(got, total);
        printf("read-back (store_read_file), %s: %6.0f MB/s\n", pass ? "again" : "first",
               total / secs / 1e6);
    }
    printf("  peak RSS of this phase:          %6ld MiB\n", phase_peak_mib());

    /* Export to the Hugging Face cache layout on the same disk (sha256 checked while
     * writing, fsynced, renamed), then the files are removed again. */
    {
        struct snapshot snap;
        struct export_stats es;
        char cache[4200], etag[65], name[32];
        uint8_t id[32];
        CHECK_EQ(snapshot_init(&snap, "model/bench/model", "0123456789abcdef0123456789abcdef01234567"),
                 0);
        for (i = 0; i < j.n_pieces / FILE_PIECES; i++) {
            file_id(id, i, j.seed);
            chash_hex(id, 32, etag);
            snprintf(name, sizeof(name), "part-%u.bin", i);
            CHECK_EQ(snapshot_add(&snap, name, (uint64_t)FILE_PIECES * PROTO_PIECE_LEN, id, etag),
                     0);
        }
        CHECK_EQ(snapshot_finish(&snap), 0);
        snprintf(cache, sizeof(cache), "%s/hf-cache", dir);
        secs = now();
        int r = export_hf_cache(j.s, &snap, cache, "main", NULL, NULL, &es, why, sizeof(why));
        secs = now() - secs;
        if (r == 0)
            printf("export to the HF cache:            %6.0f MB/s\n", total / secs / 1e6);
        else
            printf("export to the HF cache:            failed: %s\n", why);
        printf("  peak RSS of this phase:          %6ld MiB\n", phase_peak_mib());
        snapshot_release(&snap);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", cache);
        CHECK_EQ(system(cmd), 0);
    }
    store_close(j.s);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", path);
    CHECK_EQ(system(cmd), 0);
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS:                          %6ld MiB (piece results: %u MiB of it)\n",
           ru.ru_maxrss / 1024, (unsigned)(j.n_pieces * sizeof(struct hasher_piece) >> 20));
    for (i = 0; i < j.n_pieces; i++)
        free(j.res[i]);
    free(j.res);
    return 0;
}
