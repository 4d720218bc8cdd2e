/* log.h - levelled log lines on stderr.
 *
 * Each line is "TIMESTAMP LEVEL message", the timestamp ISO-8601 UTC with
 * milliseconds (2026-01-31T12:00:00.123Z). A line is written with one write(2) so
 * lines from several threads do not interleave; lines longer than LOG_LINE_MAX are
 * cut. Messages above the level set with log_set_level() are dropped.
 *
 * Threads: log_msg may be called from any thread; log_set_level at startup only.
 * Errors: logging never fails the caller; a failed write is ignored.
 */
#ifndef SHOAL_LOG_H
#define SHOAL_LOG_H

#include "cfg.h"

#include <stdarg.h>
#include <stdbool.h>

#define LOG_LINE_MAX 2048

/* The most detailed level that is written (CFG_LOG_INFO until set). */
void log_set_level(enum cfg_log_level level);
bool log_enabled(enum cfg_log_level level);

void log_msg(enum cfg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum cfg_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#endif
