/* log.c - levelled log lines on stderr (log.h). */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum cfg_log_level log_level = CFG_LOG_INFO;

static const char *const log_names[] = {
    [CFG_LOG_ERROR] = "ERROR",
    [CFG_LOG_WARN] = "WARN",
    [CFG_LOG_INFO] = "INFO",
    [CFG_LOG_DEBUG] = "DEBUG",
};

void log_set_level(enum cfg_log_level level)
{
    log_level = level;
}

bool log_enabled(enum cfg_log_level level)
{
    return level <= log_level;
}

/* Writes the ISO-8601 UTC timestamp into buf; returns its length (0 if the clock fails). */
static size_t log_stamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    size_t n;
    int m;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm))
        return 0;
    n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0)
        return 0;
    m = snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000L);
    if (m < 0 || (size_t)m >= cap - n)
        return 0;
    return n + (size_t)m;
}

void log_vmsg(enum cfg_log_level level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    size_t n, cap = sizeof(line) - 1; /* room for the newline */
    int m;
    int saved = errno;

    if (!log_enabled(level) || level < CFG_LOG_ERROR || level > CFG_LOG_DEBUG)
        return;
    n = log_stamp(line, cap);
    m = snprintf(line + n, cap - n, "%s%s ", n ? " " : "", log_names[level]);
    if (m > 0)
        n += (size_t)m < cap - n ? (size_t)m : cap - n - 1;
    m = vsnprintf(line + n, cap - n, fmt, ap);
    if (m > 0)
        n += (size_t)m < cap - n ? (size_t)m : cap - n - 1;
    line[n++] = '\n';
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, line, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        memmove(line, line + w, n - (size_t)w);
        n -= (size_t)w;
    }
    errno = saved;
}

void log_msg(enum cfg_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
