/*
 * log.c — JSON-lines logger (see log.h).
 */
#include "log.h"
#include "mem.h"
#include "timeutil.h"

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

void log_emit(log_level lvl, const char *module, const char *msg, json_t *fields)
{
    if ((int)lvl < atomic_load(&threshold)) {
        json_decref(fields);
        return;
    }
    /* Written straight into one buffer (a line per request is the hot case): the fixed
     * members, then the fields' members spliced in without their braces. */
    char ts[32];
    time_now_rfc3339(ts);
    buf line;
    buf_init(&line);
    buf_printf(&line, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":", ts, level_names[lvl]);
    buf_json_string(&line, module);
    buf_puts(&line, ",\"msg\":");
    buf_json_string(&line, msg);
    if (fields && json_object_size(fields)) {
        size_t at = line.len;
        buf_json(&line, fields);
        line.data[at] = ','; /* the fields' '{' */
    } else {
        buf_append(&line, "}", 1);
    }
    json_decref(fields);
    buf_append(&line, "\n", 1);
    ssize_t w = write(STDERR_FILENO, line.data, line.len);
    (void)w;
    buf_dispose(&line);
}

void log_fatal(const char *module, const char *msg, json_t *fields)
{
    log_emit(LOG_FATAL, module, msg, fields);
    exit(1);
}
