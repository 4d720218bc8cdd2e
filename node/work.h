/* work.h - blocking work (RocksDB, hashing, file I/O) on libuv's threadpool.
 *
 * The loop thread never calls the store or hashes bytes itself: it queues a job whose
 * `run` executes on a pool thread and whose `done` then runs on the loop thread. A
 * queue counts its jobs so that shutdown can wait until none is left before the store
 * is closed.
 *
 * Threads: work_queue, work_drain and the done callbacks on the loop thread; run on a
 *   pool thread (it must not touch loop state).
 * Ownership: arg is the caller's; it must stay valid until done has run.
 * Errors: work_queue returns 0 or -ENOMEM, or -ESHUTDOWN once draining started.
 */
#ifndef SHOAL_WORK_H
#define SHOAL_WORK_H

#include <stdbool.h>
#include <uv.h>

struct workq {
    uv_loop_t *loop;
    unsigned inflight;
    bool draining;
    void (*drained)(void *arg);
    void *drained_arg;
};

typedef void (*work_run_fn)(void *arg);
typedef void (*work_done_fn)(void *arg);

void work_init(struct workq *q, uv_loop_t *loop);
int work_queue(struct workq *q, work_run_fn run, work_done_fn done, void *arg);
/* Refuses new jobs from now on and calls drained(arg) from the loop once the last
 * queued job's done has run (at once, from the next loop turn, if none is queued). */
void work_drain(struct workq *q, void (*drained)(void *arg), void *arg);

#endif
