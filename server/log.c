/*
 * log.c — JSON-lines logger (see log.h).
 */
#include "log.h"
#include "mem.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int threshold = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error", "fatal"};

int log_set_level(const char *name)
{
    for (int i = 0; i <= LOG_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            atomic_store(&threshold, i);
            return 0;
        }
    }
    return -1;
}

bool log_enabled(log_level lvl)
{
    return (int)lvl >= atomic_load(&threshold);
}

/* One line into `line`: the fixed members, then the fields' members spliced in without
 * their braces. Takes `fields`. */
static void format_line(buf *line, log_level lvl, const char *module, const char *msg,
                        json_t *fields)
{
    char ts[32];
    time_now_rfc3339(ts);
    buf_printf(line, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":", ts, level_names[lvl]);
    buf_json_string(line, module);
    buf_puts(line, ",\"msg\":");
    buf_json_string(line, msg);
    if (fields && json_object_size(fields)) {
        size_t at = line->len;
        buf_json(line, fields);
        line->data[at] = ','; /* the fields' '{' */
    } else {
        buf_append(line, "}", 1);
    }
    json_decref(fields);
    buf_append(line, "\n", 1);
}

static void write_all(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, data, len);
        if (w <= 0) return; /* stderr closed or full: a log line is not worth blocking on */
        data += w;
        len -= (size_t)w;
    }
}

void log_emit(log_level lvl, const char *module, const char *msg, json_t *fields)
{
    if ((int)lvl < atomic_load(&threshold)) {
        json_decref(fields);
        return;
    }
    buf line;
    buf_init(&line);
    format_line(&line, lvl, module, msg, fields);
    write_all(line.data, line.len);
    buf_dispose(&line);
}

/* ------------------------------------------------------------------ buffered lines */

#define PENDING_FLUSH_BYTES (64 * 1024)
#define PENDING_FLUSH_MS 100

static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static buf pending; /* {pending_lock} whole lines not yet written */
static pthread_once_t flusher_once = PTHREAD_ONCE_INIT;

/* Lock held: writes what is pending. */
static void flush_locked(void)
{
    if (pending.len) write_all(pending.data, pending.len);
    pending.len = 0;
}

void log_flush(void)
{
    pthread_mutex_lock(&pending_lock);
    flush_locked();
    pthread_mutex_unlock(&pending_lock);
}

static void *flusher_main(void *unused)
{
    (void)unused;
    for (;;) {
        usleep(PENDING_FLUSH_MS * 1000);
        log_flush();
    }
    return NULL;
}

static void flusher_start(void)
{
    buf_init(&pending);
    atexit(log_flush);
    pthread_t t;
    if (pthread_create(&t, NULL, flusher_main, NULL) == 0) pthread_detach(t);
}

void log_emit_buffered(log_level lvl, const char *module, const char *msg, json_t *fields)
{
    if ((int)lvl < atomic_load(&threshold)) {
        json_decref(fields);
        return;
    }
    pthread_once(&flusher_once, flusher_start);
    buf line;
    buf_init(&line);
    format_line(&line, lvl, module, msg, fields);
    pthread_mutex_lock(&pending_lock);
    buf_append(&pending, line.data, line.len);
    if (pending.len >= PENDING_FLUSH_BYTES) flush_locked();
    pthread_mutex_unlock(&pending_lock);
    buf_dispose(&line);
}

void log_fatal(const char *module, const char *msg, json_t *fields)
{
    log_flush();
    log_emit(LOG_FATAL, module, msg, fields);
    exit(1);
}
