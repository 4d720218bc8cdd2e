/* progress.c - the progress display of `shoal pull` (see progress.h).
 *
 * The live display is redrawn whole at every poll: move the cursor back to the start
 * of what was drawn, clear to the end of the screen, print again. Every line is cut to
 * the terminal's width first, so no line wraps and the count of lines to go back over
 * stays exact. The rate is measured over the last few seconds of polls rather than
 * the whole pull, so that it follows what the link does now.
 */
#include "progress.h"

#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define RATE_N        64 /* samples kept; at ~5 a second that is over the window */
#define RATE_WINDOW_S 5.0
#define SUMMARY_S     5.0 /* plain mode: a summary line at most this often */
#define FILE_LINES    2   /* files shown under the bar */
#define NUMS_W        56  /* columns kept for the numbers beside the bar */
#define DRAW_LINE_MAX 512

struct sample {
    double t;
    uint64_t bytes;
};

struct progress {
    bool tty;
    int drawn;           /* lines of the live display now on the screen */
    char state[16];      /* the last state seen */
    double last_summary; /* plain mode */
    json_t *stored;      /* plain mode: paths already reported, as object keys */
    struct sample samples[RATE_N];
    unsigned n_samples, head;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct progress *progress_new(bool tty)
{
    struct progress *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->tty = tty;
    p->last_summary = now_s();
    p->stored = json_object();
    if (!p->stored) {
        free(p);
        return NULL;
    }
    return p;
}

void progress_free(struct progress *p)
{
    if (!p)
        return;
    json_decref(p->stored);
    free(p);
}

static void add_sample(struct progress *p, uint64_t bytes)
{
    p->samples[p->head] = (struct sample){now_s(), bytes};
    p->head = (p->head + 1) % RATE_N;
    if (p->n_samples < RATE_N)
        p->n_samples++;
}

/* Bytes per second over the last RATE_WINDOW_S; negative while unknown. */
static double rate(const struct progress *p)
{
    const struct sample *last, *s, *first = NULL;
    unsigned i;

    if (p->n_samples < 2)
        return -1;
    last = &p->samples[(p->head + RATE_N - 1) % RATE_N];
    for (i = p->n_samples; i >= 2; i--) {
        s = &p->samples[(p->head + RATE_N - i) % RATE_N];
        if (last->t - s->t <= RATE_WINDOW_S) {
            first = s;
            break;
        }
    }
    if (!first || last->t - first->t < 0.5)
        return -1;
    if (last->bytes < first->bytes)
        return 0; /* the node recounted; no rate to speak of */
    return (double)(last->bytes - first->bytes) / (last->t - first->t);
}

static unsigned term_width(void)
{
    struct winsize ws;

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

/* Characters in s, counting each UTF-8 sequence as one (near enough for paths). */
static size_t width_of(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* The last `cols` characters of s, never starting inside a UTF-8 sequence. */
static const char *tail(const char *s, size_t cols)
{
    size_t w = width_of(s);

    while (w > cols && *s) {
        s++;
        while (((unsigned char)*s & 0xC0) == 0x80)
            s++;
        w--;
    }
    return s;
}

/* Cuts line to at most cols characters, at a character boundary. */
static void cut(char *line, size_t cols)
{
    size_t n = 0;
    char *s;

    for (s = line; *s; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80 && n++ == cols)
            break;
    }
    *s = '\0';
}

/* "1.20 GiB / 4.00 GiB  30%  85.3 MiB/s  ETA 34s  2/5 files" */
static void numbers(const struct progress *p, const json_t *pull, char *out, size_t len)
{
    uint64_t done = util_juint(pull, "bytes_done"), total = util_juint(pull, "bytes_total");
    char d[UTIL_SIZE_LEN], t[UTIL_SIZE_LEN], r[UTIL_SIZE_LEN], eta[UTIL_SIZE_LEN];
    double bps = rate(p);

    util_size(done, d);
    util_size(total, t);
    if (bps >= 0)
        util_size((uint64_t)bps, r);
    if (bps > 0 && total > done)
        util_duration((uint64_t)((double)(total - done) / bps) + 1, eta);
    snprintf(out, len, "%s / %s  %3" PRIu64 "%%  %s%s  ETA %s  %" PRIu64 "/%" PRIu64 " files", d, t,
             total ? done * 100 / total : 0, bps >= 0 ? r : "--", bps >= 0 ? "/s" : "",
             bps > 0 && total > done ? eta : "--", util_juint(pull, "files_done"),
             util_juint(pull, "files_total"));
}

static void bar(const json_t *pull, unsigned width, char *out)
{
    uint64_t done = util_juint(pull, "bytes_done"), total = util_juint(pull, "bytes_total");
    unsigned full = total ? (unsigned)((double)done / (double)total * width) : 0, i;

    out[0] = '[';
    for (i = 0; i < width; i++)
        out[1 + i] = i < full ? '#' : '.';
    out[1 + width] = ']';
    out[2 + width] = '\0';
}

/* "  512 MiB / 2.00 GiB  model-00001-of-00002.safetensors", the path's head cut off
 * when it does not fit. */
static void file_line(const json_t *f, unsigned cols, const char *more, char *out, size_t len)
{
    char d[UTIL_SIZE_LEN], t[UTIL_SIZE_LEN], head[96];
    const char *state = util_jstr(f, "state", "");
    const char *path = util_jstr(f, "path", "?");
    size_t used, room;

    util_size(util_juint(f, "bytes_done"), d);
    util_size(util_juint(f, "size"), t);
    if (strcmp(state, "fetching") == 0)
        snprintf(head, sizeof(head), "  %9s / %-9s  ", d, t);
    else
        snprintf(head, sizeof(head), "  %-21s  ", state);
    used = width_of(head) + width_of(more);
    room = cols > used + 4 ? cols - used : 4;
    if (width_of(path) > room)
        snprintf(out, len, "%s...%s%s", head, tail(path, room - 3), more);
    else
        snprintf(out, len, "%s%s%s", head, path, more);
}

/* The files being worked on now: fetching or verifying. */
static int busy_files(const json_t *pull, const json_t *busy[FILE_LINES], size_t *more)
{
    const char *state;
    const json_t *f;
    size_t i;
    int n = 0;

    *more = 0;
    json_array_foreach(json_object_get(pull, "files"), i, f)
    {
        state = util_jstr(f, "state", "");
        if (strcmp(state, "fetching") != 0 && strcmp(state, "verifying") != 0)
            continue;
        if (n < FILE_LINES)
            busy[n++] = f;
        else
            (*more)++;
    }
    return n;
}

void progress_clear(struct progress *p)
{
    int i;

    if (!p->tty || p->drawn == 0)
        return;
    fputc('\r', stderr);
    for (i = 1; i < p->drawn; i++)
        fputs("\033[A", stderr);
    fputs("\033[J", stderr);
    fflush(stderr);
    p->drawn = 0;
}

static void draw(struct progress *p, const json_t *pull)
{
    char line[DRAW_LINE_MAX], nums[256], more[32] = "", b[64];
    unsigned cols = term_width() - 1, bar_w;
    const json_t *busy[FILE_LINES];
    size_t n_more, used;
    int n, i;

    numbers(p, pull, nums, sizeof(nums));
    /* The bar takes what the words leave. Words are reserved NUMS_W columns even when
     * shorter, so that the bar does not jump as the rate and ETA come and go. */
    used = 14 + (width_of(nums) > NUMS_W ? width_of(nums) : NUMS_W);
    bar_w = cols > used ? cols - (unsigned)used : 0;
    bar_w = bar_w > 30 ? 30 : bar_w;
    if (bar_w >= 8)
        bar(pull, bar_w, b);
    else
        b[0] = '\0';
    if (strcmp(p->state, "resolving") == 0)
        snprintf(line, sizeof(line), "resolving %s@%s", util_jstr(pull, "repo", "?"),
                 util_jstr(pull, "revision", "main"));
    else
        snprintf(line, sizeof(line), "%-9s %s%s%s", p->state, b, b[0] ? "  " : "", nums);
    cut(line, cols);
    progress_clear(p);
    fputs(line, stderr);
    p->drawn = 1;
    n = busy_files(pull, busy, &n_more);
    for (i = 0; i < n; i++) {
        if (i == n - 1 && n_more)
            snprintf(more, sizeof(more), "  (+%zu more)", n_more);
        file_line(busy[i], cols, more, line, sizeof(line));
        cut(line, cols);
        fprintf(stderr, "\n%s", line);
        p->drawn++;
    }
    fflush(stderr);
}

/* Plain mode: the lines for what changed since the last poll. */
static void report(struct progress *p, const json_t *pull, bool state_changed)
{
    char size[UTIL_SIZE_LEN], nums[256];
    const char *path;
    const json_t *f;
    size_t i;

    if (state_changed && strcmp(p->state, "done") != 0 && strcmp(p->state, "failed") != 0) {
        util_size(util_juint(pull, "bytes_total"), size);
        fprintf(stderr, "%s@%s: %s", util_jstr(pull, "repo", "?"),
                util_jstr(pull, "revision", "main"), p->state);
        if (strcmp(p->state, "resolving") != 0)
            fprintf(stderr, ", %" PRIu64 " files, %s", util_juint(pull, "files_total"), size);
        fputc('\n', stderr);
    }
    json_array_foreach(json_object_get(pull, "files"), i, f)
    {
        path = util_jstr(f, "path", NULL);
        if (!path || strcmp(util_jstr(f, "state", ""), "stored") != 0 ||
            json_object_get(p->stored, path))
            continue;
        json_object_set_new(p->stored, path, json_true());
        util_size(util_juint(f, "size"), size);
        fprintf(stderr, "stored %s (%s)\n", path, size);
    }
    if (strcmp(p->state, "fetching") == 0 && now_s() - p->last_summary >= SUMMARY_S) {
        numbers(p, pull, nums, sizeof(nums));
        fprintf(stderr, "  %s\n", nums);
        p->last_summary = now_s();
    }
    fflush(stderr);
}

void progress_update(struct progress *p, const json_t *pull)
{
    const char *state = util_jstr(pull, "state", "?");
    bool changed = strcmp(state, p->state) != 0;

    snprintf(p->state, sizeof(p->state), "%s", state);
    add_sample(p, util_juint(pull, "bytes_done"));
    if (p->tty)
        draw(p, pull);
    else
        report(p, pull, changed);
}

void progress_summary(struct progress *p, const json_t *pull)
{
    uint64_t ms = util_juint(pull, "elapsed_ms"), fetched = util_juint(pull, "bytes_fetched");
    char total[UTIL_SIZE_LEN], hub[UTIL_SIZE_LEN], took[UTIL_SIZE_LEN], r[UTIL_SIZE_LEN];
    const char *commit = util_jstr(pull, "commit", "");

    progress_clear(p);
    util_size(util_juint(pull, "bytes_total"), total);
    util_size(fetched, hub);
    util_duration((ms + 500) / 1000, took);
    util_size(ms ? fetched * 1000 / ms : 0, r);
    fprintf(stderr,
            "%s: %s@%s (commit %.12s): %" PRIu64 " files, %s in %s; %s from the Hub (%s/s)\n",
            util_jstr(pull, "state", "?"), util_jstr(pull, "repo", "?"),
            util_jstr(pull, "revision", "main"), commit[0] ? commit : "?",
            util_juint(pull, "files_total"), total, took, hub, r);
    fflush(stderr);
}
