/*
 * log.h — JSON-lines logging to stderr.
 *
 * Every line names its module ("http", "appender", …) and carries structured
 * fields, so operators can grep and machines can parse. One line is written
 * with one write(2), so lines from different threads never interleave.
 *
 * The access log (one line per HTTP request, the only line a request writes on the hot
 * path) is buffered instead (log_emit_buffered): its lines are gathered in memory and
 * written together, once 64 KiB are pending or 100 ms have passed, and at exit (as
 * nginx's `access_log … buffer= flush=`). A write(2) per request was 5% of Sluice's CPU
 * on a consumer-API fetch/ack loop. So an access line may come after lines written later,
 * and a crash loses at most the last 100 ms of them.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <jansson.h>
#include <stdbool.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL } log_level;

/* Sets the threshold from "debug|info|warn|error"; returns -1 on an unknown name. */
int log_set_level(const char *name);

/* Whether `lvl` lines are written now (check before building costly fields). */
bool log_enabled(log_level lvl);

/* Writes one line. `fields` may be NULL; this function takes ownership of it. Any thread. */
void log_emit(log_level lvl, const char *module, const char *msg, json_t *fields);

/* The same line, written with others within 100 ms (see above). Any thread. */
void log_emit_buffered(log_level lvl, const char *module, const char *msg, json_t *fields);

/* Writes the buffered lines now (at exit and before a fatal line; any thread). */
void log_flush(void);

#define log_debug(m, msg, f) log_emit(LOG_DEBUG, m, msg, f)
#define log_info(m, msg, f) log_emit(LOG_INFO, m, msg, f)
#define log_warn(m, msg, f) log_emit(LOG_WARN, m, msg, f)
#define log_error(m, msg, f) log_emit(LOG_ERROR, m, msg, f)

/* Logs at FATAL and exits(1). Start-up only. */
void log_fatal(const char *module, const char *msg, json_t *fields) __attribute__((noreturn));

#endif
