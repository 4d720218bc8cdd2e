/* progress.h - how `shoal pull` shows a pull's progress on stderr.
 *
 * On a terminal: a live display redrawn in place (a bar with bytes done/total, rate,
 * ETA and file count, then the one or two files being fetched), erased before the
 * final line. Elsewhere (a log, a pipe, CI): plain lines without escape codes: one per
 * state change, one per file stored, and a summary at most every 5 s.
 *
 * Feed it each pull object the node returns (GET /v1/pulls/ID, docs/control-api.md).
 * Ownership: the progress keeps no reference to the objects it is given.
 */
#ifndef SHOAL_PROGRESS_H
#define SHOAL_PROGRESS_H

#include <jansson.h>
#include <stdbool.h>

struct progress;

/* NULL when out of memory. tty: draw the live display (stderr is a terminal). */
struct progress *progress_new(bool tty);
void progress_free(struct progress *p);

/* Shows the pull's state as of this poll. */
void progress_update(struct progress *p, const json_t *pull);

/* Erases the live display, so that a message can follow on a clean line. */
void progress_clear(struct progress *p);

/* Erases the live display and prints the one-line summary of a finished pull. */
void progress_summary(struct progress *p, const json_t *pull);

#endif
