/* cmd_hash.c - `shoal hash`: content ids of local files, no node needed.
 *
 * DESIGN. Pieces are independent, so they are hashed in parallel: the main thread
 * reads the file piece by piece into a ring of K = threads + 1 piece buffers, worker
 * threads chunk and hash the pieces, one more thread feeds the sha256 (which must see
 * the bytes in order, and is the slowest serial stage: it gets a core of its own
 * rather than sharing the reading thread's), and the main thread prints each piece's
 * result in order before it reuses that buffer. Memory is K * 16 MiB whatever the file
 * size; the file is read once, sequentially, so pipes and stdin work as well as
 * regular files.
 *
 * Output streams: a file's pieces (and with --chunks its chunks) are printed as they
 * are done and its totals follow them, in text and JSON alike.
 */
#include "cmd.h"

#include "chash.h"
#include "hasher.h"
#include "proto_limits.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define THREADS_MAX 256

static const char usage[] =
    "Usage: shoal hash [--chunks] [--json] [--threads N] FILE...\n"
    "\n"
    "Prints the content ids Shoal gives each FILE (`-` reads standard input):\n"
    "its sha256 (the Hub's LFS id), size, and its 16 MiB pieces with their piece\n"
    "hashes (the Xet file hash of the piece, in Xet's rendering). No node is needed.\n"
    "\n"
    "Options:\n"
    "  --chunks      also list every chunk: piece, offset in the file, length, hash\n"
    "  --json        one JSON document on standard output, nothing else there\n"
    "  --threads N   worker threads that chunk and hash pieces (default: the number\n"
    "                of CPUs less one, for the sha256, at most 16); memory use is\n"
    "                about (N + 1) x 16 MiB\n"
    "  -h, --help    this help\n"
    "\n"
    "Exit status: 0 all files hashed, 1 a file could not be read (the others are\n"
    "still hashed), 2 usage error.\n";

enum slot_state { SLOT_FREE, SLOT_FILLED, SLOT_BUSY, SLOT_DONE };

struct slot {
    uint8_t *buf;
    struct hasher_piece *res;
    enum slot_state state;
    bool sha_done;          /* the sha256 thread has seen this piece */
};

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* workers wait for filled slots */
    pthread_cond_t cv_done; /* the main thread waits for done slots */
    struct slot *slots;
    unsigned n_slots;
    uint64_t seq_fill;      /* pieces handed to the workers so far (all files) */
    uint64_t seq_work;      /* pieces taken by a worker so far */
    uint64_t seq_sha;       /* pieces fed to the sha256 so far */
    struct sha256 *sha;     /* the current file's; set by the main thread between files */
    bool stop;
    pthread_t *threads;
    unsigned n_threads;
    pthread_t sha_thread;
    bool sha_started;
};

struct out {
    bool json, chunks;
    bool first_file;
};

/* Per-file state of the main thread. */
struct job {
    const char *path;
    uint64_t base;     /* pool sequence number of this file's piece 0 */
    uint64_t filled;   /* pieces read */
    uint64_t printed;  /* pieces printed */
    uint64_t n_chunks;
};

static void *worker(void *arg)
{
    struct pool *p = arg;
    struct slot *s;
    uint64_t seq;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->seq_work == p->seq_fill)
            pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->seq_work == p->seq_fill)
            break; /* stopping, nothing left */
        seq = p->seq_work++;
        s = &p->slots[seq % p->n_slots];
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&p->mu);
        hasher_piece_compute(s->res, s->buf, s->res->len);
        pthread_mutex_lock(&p->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Feeds the pieces to the current file's sha256, in order. */
static void *sha_worker(void *arg)
{
    struct pool *p = arg;
    struct slot *s;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->seq_sha == p->seq_fill)
            pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->seq_sha == p->seq_fill)
            break;
        s = &p->slots[p->seq_sha % p->n_slots];
        pthread_mutex_unlock(&p->mu);
        sha256_update(p->sha, s->buf, s->res->len);
        pthread_mutex_lock(&p->mu);
        s->sha_done = true;
        p->seq_sha++;
        pthread_cond_broadcast(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_stop(struct pool *p)
{
    unsigned i;

    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    if (p->sha_started)
        pthread_join(p->sha_thread, NULL);
    for (i = 0; i < p->n_slots; i++) {
        free(p->slots[i].buf);
        free(p->slots[i].res);
    }
    free(p->slots);
    free(p->threads);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    pthread_mutex_destroy(&p->mu);
}

static int pool_start(struct pool *p, unsigned n_threads)
{
    unsigned i;

    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->n_slots = n_threads + 1;
    p->slots = calloc(p->n_slots, sizeof(*p->slots));
    p->threads = calloc(n_threads, sizeof(*p->threads));
    if (!p->slots || !p->threads)
        goto fail;
    for (i = 0; i < p->n_slots; i++) {
        /* Page-aligned: unaligned buffers make copies much slower (design.md). */
        p->slots[i].buf = aligned_alloc(4096, PROTO_PIECE_LEN);
        p->slots[i].res = malloc(sizeof(*p->slots[i].res));
        if (!p->slots[i].buf || !p->slots[i].res)
            goto fail;
    }
    for (i = 0; i < n_threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            goto fail;
        p->n_threads++;
    }
    if (pthread_create(&p->sha_thread, NULL, sha_worker, p) != 0)
        goto fail;
    p->sha_started = true;
    return 0;
fail:
    pool_stop(p);
    return -ENOMEM;
}

/* Waits until the piece with sequence number seq is hashed and in the sha256;
 * returns its slot. */
static struct slot *pool_wait(struct pool *p, uint64_t seq)
{
    struct slot *s = &p->slots[seq % p->n_slots];

    pthread_mutex_lock(&p->mu);
    while (s->state != SLOT_DONE || !s->sha_done)
        pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void pool_release(struct pool *p, struct slot *s)
{
    pthread_mutex_lock(&p->mu);
    s->state = SLOT_FREE;
    s->sha_done = false;
    pthread_mutex_unlock(&p->mu);
}

static void pool_submit(struct pool *p, struct slot *s)
{
    pthread_mutex_lock(&p->mu);
    s->state = SLOT_FILLED;
    p->seq_fill++;
    /* Wake a worker and the sha256 thread: they wait on the same condition. */
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
}

/* Reads until len bytes or end of input. Returns the count, or -errno. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    ssize_t r;

    while (got < len) {
        r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* A JSON string literal for s (file names need not be UTF-8: invalid bytes become
 * U+FFFD so that the document stays valid). */
static void print_json_str(const char *s)
{
    json_t *j = json_string(s);
    char *text;

    if (!j) {
        char *copy = strdup(s), *c;
        for (c = copy; c && *c; c++) {
            if ((unsigned char)*c >= 0x80)
                *c = '?';
        }
        j = json_string(copy ? copy : "");
        free(copy);
    }
    text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(text ? text : "\"\"", stdout);
    free(text);
    json_decref(j);
}

static void print_file_start(struct out *o, const struct job *j)
{
    if (!o->json) {
        printf("%s\n", j->path);
        return;
    }
    printf("%s\n    {\"path\": ", o->first_file ? "" : ",");
    o->first_file = false;
    print_json_str(j->path);
    printf(", \"pieces\": [");
}

static void print_piece(const struct out *o, struct job *j, const struct hasher_piece *r)
{
    char xet[CHASH_XET_LEN + 1];
    uint64_t off = r->offset;
    uint32_t i;

    chash_to_xet(r->hash, xet);
    if (!o->json) {
        printf("  piece %-6" PRIu64 " offset %-13" PRIu64 " len %-8" PRIu32 " chunks %-4" PRIu32
               " %s\n",
               r->index, r->offset, r->len, r->n_chunks, xet);
    } else {
        printf("%s\n      {\"index\": %" PRIu64 ", \"offset\": %" PRIu64 ", \"len\": %" PRIu32
               ", \"hash\": \"%s\", \"chunk_count\": %" PRIu32,
               r->index ? "," : "", r->index, r->offset, r->len, xet, r->n_chunks);
        if (o->chunks)
            printf(", \"chunks\": [");
    }
    for (i = 0; o->chunks && i < r->n_chunks; i++) {
        chash_to_xet(r->chunks[i].hash, xet);
        if (!o->json) {
            printf("    chunk of piece %-6" PRIu64 " offset %-13" PRIu64 " len %-6" PRIu64
                   " %s\n",
                   r->index, off, r->chunks[i].len, xet);
        } else {
            printf("%s\n        {\"offset\": %" PRIu64 ", \"len\": %" PRIu64
                   ", \"hash\": \"%s\"}",
                   i ? "," : "", off, r->chunks[i].len, xet);
        }
        off += r->chunks[i].len;
    }
    if (o->json)
        printf(o->chunks ? "]}" : "}");
    j->n_chunks += r->n_chunks;
}

static void print_file_end(const struct out *o, const struct job *j, const uint8_t *sha,
                           uint64_t size)
{
    char hex[2 * SHA256_LEN + 1];

    chash_hex(sha, SHA256_LEN, hex);
    if (!o->json) {
        printf("  sha256 %s\n  size   %" PRIu64 "\n  pieces %" PRIu64 "\n  chunks %" PRIu64
               "\n",
               hex, size, j->printed, j->n_chunks);
        return;
    }
    printf("],\n     \"sha256\": \"%s\", \"size\": %" PRIu64 ", \"piece_count\": %" PRIu64
           ", \"chunk_count\": %" PRIu64 "}",
           hex, size, j->printed, j->n_chunks);
}

static void print_file_error(struct out *o, const struct job *j, bool started, int err)
{
    tool_err("hash", "%s: %s", j->path, strerror(-err));
    if (!o->json)
        return;
    if (!started) {
        printf("%s\n    {\"path\": ", o->first_file ? "" : ",");
        o->first_file = false;
        print_json_str(j->path);
    } else {
        printf("]");
    }
    printf(", \"error\": ");
    print_json_str(strerror(-err));
    printf("}");
}

/* Prints (or, after an error, drops) every dispatched piece up to `upto`. */
static void drain(struct pool *p, const struct out *o, struct job *j, uint64_t upto, bool print)
{
    struct slot *s;

    while (j->printed < upto) {
        s = pool_wait(p, j->base + j->printed);
        if (print)
            print_piece(o, j, s->res);
        pool_release(p, s);
        j->printed++;
    }
}

static int open_input(const char *path, int *pfd)
{
    struct stat st;
    int fd;

    if (strcmp(path, "-") == 0) {
        *pfd = STDIN_FILENO;
        return 0;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    if (S_ISREG(st.st_mode))
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    *pfd = fd;
    return 0;
}

/* Hashes one file. Returns 0 or -errno (already reported). */
static int hash_file(struct pool *p, struct out *o, const char *path)
{
    struct job j = {.path = path, .base = p->seq_fill};
    struct sha256 sha;
    uint8_t digest[SHA256_LEN];
    uint64_t size = 0;
    struct slot *s;
    ssize_t n;
    int fd = -1, err;

    err = open_input(path, &fd);
    if (err < 0) {
        print_file_error(o, &j, false, err);
        return err;
    }
    err = sha256_init(&sha);
    if (err < 0) {
        print_file_error(o, &j, false, err);
        goto out;
    }
    /* Between files the sha256 thread is idle (every piece of the last file was
     * waited for), so the context can change hands without a race. */
    pthread_mutex_lock(&p->mu);
    p->sha = &sha;
    pthread_mutex_unlock(&p->mu);
    print_file_start(o, &j);
    for (;;) {
        /* The ring is full: the oldest piece must be printed before its slot is reused. */
        if (j.filled - j.printed == p->n_slots)
            drain(p, o, &j, j.printed + 1, true);
        s = &p->slots[p->seq_fill % p->n_slots];
        n = read_full(fd, s->buf, PROTO_PIECE_LEN);
        if (n < 0 || (n > 0 && size + (uint64_t)n > PROTO_FILE_MAX)) {
            err = n < 0 ? (int)n : -EFBIG;
            drain(p, o, &j, j.filled, false);
            sha256_release(&sha);
            print_file_error(o, &j, true, err);
            goto out;
        }
        if (n == 0)
            break;
        s->res->index = j.filled;
        s->res->offset = size;
        s->res->len = (uint32_t)n;
        size += (uint64_t)n;
        pool_submit(p, s);
        j.filled++;
        if (n < PROTO_PIECE_LEN)
            break;
    }
    drain(p, o, &j, j.filled, true);
    sha256_final(&sha, digest);
    print_file_end(o, &j, digest, size);
out:
    if (fd > STDIN_FILENO)
        close(fd);
    return err;
}

/* One worker per core but one: the sha256 thread, the slowest serial stage, needs a
 * core of its own (measured in docs/benchmarks.md). */
static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 2)
        return 1;
    return n - 1 > 16 ? 16 : (unsigned)(n - 1);
}

static int parse_threads(const char *s, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > THREADS_MAX || s[0] == '-')
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

static int cmd_hash(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"chunks", no_argument, NULL, 'c'},        {"json", no_argument, NULL, 'j'},
        {"threads", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct out o = {.first_file = true};
    unsigned threads = default_threads();
    struct pool pool;
    int c, i, status = 0;

    optind = 1;
    opterr = 0;
    /* GNU getopt permutes, so options may come before or after the files. */
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.chunks = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 't':
            if (parse_threads(optarg, &threads) < 0) {
                tool_err("hash", "--threads takes a number from 1 to %d, not '%s'",
                         THREADS_MAX, optarg);
                return tool_usage(&cmd_hash_def);
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            if (optopt)
                tool_err("hash", "option '-%c' is unknown or needs a value", optopt);
            else
                tool_err("hash", "unknown option '%s'", argv[optind - 1]);
            return tool_usage(&cmd_hash_def);
        }
    }
    if (optind >= argc) {
        tool_err("hash", "no FILE given (use - for standard input)");
        return tool_usage(&cmd_hash_def);
    }
    if (pool_start(&pool, threads) < 0) {
        tool_err("hash", "out of memory for %u piece buffers", threads + 1);
        return 1;
    }
    if (o.json)
        printf("{\"version\": 1, \"piece_len\": %u, \"files\": [", PROTO_PIECE_LEN);
    for (i = optind; i < argc; i++) {
        if (hash_file(&pool, &o, argv[i]) < 0)
            status = 1;
    }
    if (o.json)
        printf("\n]}\n");
    pool_stop(&pool);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tool_err("hash", "writing the output: %s", strerror(errno));
        return 1;
    }
    return status;
}

const struct cmd cmd_hash_def = {
    .name = "hash",
    .fn = cmd_hash,
    .summary = "content ids (sha256, pieces, chunks) of local files",
    .usage = usage,
};
