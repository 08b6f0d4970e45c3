/*
 * log.c — JSON-lines logger (see log.h).
 */
#include "log.h"
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
    char ts[32];
    time_now_rfc3339(ts);
    json_t *line = json_pack("{s:s,s:s,s:s,s:s}", "time", ts, "level", level_names[lvl],
                             "module", module, "msg", msg);
    if (fields) json_object_update(line, fields);
    json_decref(fields);
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (!text) return;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps's NUL becomes the newline; length n+1 */
    ssize_t w = write(STDERR_FILENO, text, n + 1);
    (void)w;
    free(text);
}

void log_fatal(const char *module, const char *msg, json_t *fields)
{
    log_emit(LOG_FATAL, module, msg, fields);
    exit(1);
}
