/*
 * db.h — libpq with deadlines.
 *
 * Every PostgreSQL round trip in Sluice goes through db_run(), which never
 * waits longer than its timeout: a stopped or hung server turns into a fast
 * failure (and a 503 upstream), never a hung thread. A connection that failed
 * or timed out is closed and set to NULL; the owner reconnects with db_connect.
 */
#ifndef SLUICE_DB_H
#define SLUICE_DB_H

#include <libpq-fe.h>
#include <stdbool.h>

/* Opens a connection (blocking, at most ~3 s). Returns NULL on failure (logged with
 * `module`). Caller owns the connection (PQfinish). Any thread. */
PGconn *db_connect(const char *url, const char *module);

/* Runs `sql` and collects up to `max_res` results into `res` (caller PQclears each).
 * nparams < 0 sends a simple query (several statements allowed, no parameters);
 * otherwise an extended query with text parameters `vals` (NULL entries are SQL NULL).
 * Returns the number of results, or -1 when the connection failed or the deadline
 * passed: then *conn has been closed and set to NULL. A statement error is a result
 * with PGRES_FATAL_ERROR, not -1. */
int db_run(PGconn **conn, const char *sql, int nparams, const char *const *vals, int timeout_ms,
           PGresult **res, int max_res) __attribute__((warn_unused_result));

/* One step of a pipeline: a statement with text parameters, sent with the extended
 * protocol. `name` set and `sql` set: prepare `sql` as `name` (its result is the
 * prepare's); `name` set and `sql` NULL: execute the prepared statement `name`;
 * `name` NULL: execute `sql` unnamed, or, with `prepared`, as a statement prepared on the
 * connection (its statement cache, as db_exec_prepared): a step whose `sql` the
 * connection has not prepared yet is prepared in the same pipeline, just before it, and the
 * step's result is still the execution's. `lens` may be NULL (NUL-terminated values). */
typedef struct db_step {
    const char *name, *sql;
    int nparams;
    const char *const *vals;
    const int *lens;
    bool prepared;
} db_step;

/* Sends every step in one pipeline (libpq pipeline mode: one round trip) and collects
 * one result per step into `res` (caller PQclears each; a step after a failed one has a
 * PGRES_PIPELINE_ABORTED result). Returns `n`, or -1 when the connection failed or the
 * deadline passed (*conn closed and NULL). Then *all_sent (if not NULL) says whether
 * every byte of the pipeline had left: if not, the server never saw its last steps;
 * if so, which steps it ran is unknown. */
int db_pipeline(PGconn **conn, const db_step *steps, int n, int timeout_ms, PGresult **res,
                bool *all_sent) __attribute__((warn_unused_result));

/* One statement, one result: the result (caller PQclears) or NULL as db_run's -1. */
PGresult *db_exec(PGconn **conn, const char *sql, int nparams, const char *const *vals,
                  int timeout_ms) __attribute__((warn_unused_result));

/* As db_exec with nparams >= 0, for a statement that repeats with other values (a read's
 * filter shape, a page query): the first time on a connection it is prepared there (one
 * more round trip), then executed by name, so PostgreSQL parses it once per connection
 * and can keep its plan. At most DB_PREPARED_MAX (db.c) statements per connection; others
 * run unnamed, as db_exec. */
PGresult *db_exec_prepared(PGconn **conn, const char *sql, int nparams, const char *const *vals,
                           int timeout_ms) __attribute__((warn_unused_result));

/* False when an idle connection has been closed by the server (say, a restart), without
 * waiting: checks for pending input and reads it. */
bool db_alive(PGconn *conn);

/* True when `r` succeeded (command or tuples). */
bool db_ok(const PGresult *r);
/* The SQLSTATE of a failed result, or "" */
const char *db_sqlstate(const PGresult *r);
/* Logs a failed result's message at error level under `module`, with `what`. */
void db_log_error(const char *module, const char *what, const PGresult *r);

/* How db_stream ended. */
typedef enum {
    DB_STREAM_END = 0,      /* every row was seen */
    DB_STREAM_LOST = -1,    /* the connection was lost or timed out (*conn closed) */
    DB_STREAM_FAILED = -2,  /* the statement failed (logged) */
    DB_STREAM_STOPPED = -3, /* row_cb stopped it (the connection is dropped: its remaining
                               rows are unread) */
} db_stream_rc;

/* Streams the rows of one query (single-row mode): row_cb is called once per row
 * with a one-row result (borrowed) and returns 0 to go on, nonzero to stop. The query
 * is prepared on the connection as by db_exec_prepared.
 * `timeout_ms` bounds each wait for the server. */
db_stream_rc db_stream(PGconn **conn, const char *sql, int nparams, const char *const *vals,
                       int timeout_ms, int (*row_cb)(const PGresult *row, void *arg), void *arg)
    __attribute__((warn_unused_result));

#endif
