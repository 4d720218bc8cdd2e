/* work.c - jobs on libuv's threadpool, counted so that shutdown can wait for them. */
#include "work.h"

#include <errno.h>
#include <stdlib.h>

struct job {
    uv_work_t w;
    struct workq *q;
    work_run_fn run;
    work_done_fn done;
    void *arg;
};

struct drain_tick {
    uv_idle_t idle;
    struct workq *q;
};

void work_init(struct workq *q, uv_loop_t *loop)
{
    *q = (struct workq){.loop = loop};
}

static void on_run(uv_work_t *w)
{
    struct job *j = (struct job *)w;

    j->run(j->arg);
}

static void maybe_drained(struct workq *q)
{
    void (*cb)(void *) = q->drained;

    if (q->draining && q->inflight == 0 && cb) {
        q->drained = NULL;
        cb(q->drained_arg);
    }
}

static void on_done(uv_work_t *w, int status)
{
    struct job *j = (struct job *)w;
    struct workq *q = j->q;

    (void)status; /* jobs are never cancelled: run always ran */
    if (j->done)
        j->done(j->arg);
    free(j);
    q->inflight--;
    maybe_drained(q);
}

int work_queue(struct workq *q, work_run_fn run, work_done_fn done, void *arg)
{
    struct job *j;
    int err;

    if (q->draining)
        return -ESHUTDOWN;
    j = malloc(sizeof(*j));
    if (!j)
        return -ENOMEM;
    *j = (struct job){.q = q, .run = run, .done = done, .arg = arg};
    err = uv_queue_work(q->loop, &j->w, on_run, on_done);
    if (err < 0) {
        free(j);
        return err;
    }
    q->inflight++;
    return 0;
}

static void on_tick_close(uv_handle_t *h)
{
    struct drain_tick *t = h->data;
    struct workq *q = t->q;

    free(t);
    maybe_drained(q);
}

static void on_tick(uv_idle_t *h)
{
    uv_close((uv_handle_t *)h, on_tick_close);
}

void work_drain(struct workq *q, void (*drained)(void *arg), void *arg)
{
    struct drain_tick *t;

    q->draining = true;
    q->drained = drained;
    q->drained_arg = arg;
    if (q->inflight > 0)
        return;
    /* Nothing queued: still call back from the loop, never from inside this call. */
    t = malloc(sizeof(*t));
    if (!t || uv_idle_init(q->loop, &t->idle) < 0) {
        free(t);
        maybe_drained(q);
        return;
    }
    t->q = q;
    t->idle.data = t;
    uv_idle_start(&t->idle, on_tick);
}
