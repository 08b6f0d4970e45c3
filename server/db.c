/*
 * db.c — libpq round trips with deadlines (see db.h).
 *
 * DESIGN: connections are put in non-blocking mode; db_run sends the query,
 * then polls the socket until every result has arrived or the deadline passes.
 * On a deadline the server is asked to cancel and the connection is dropped, so
 * no half-read protocol state survives into the next query. PQcancel opens a
 * connection of its own and blocks (up to the TCP user timeout when the server
 * is unreachable, as in a network partition), so it runs on a short-lived
 * detached thread: the caller's deadline holds.
 *
 * The server watches each session's client too (TCP keepalives and user
 * timeout, set per session at connect): after a partition, a backend whose
 * client gave up ends within ~25 s instead of PostgreSQL's default two hours,
 * so a transaction it left open and the session advisory locks it holds (the
 * relay's, the sweeper's, ...) are freed for the sessions that replace it.
 *
 * Reads whose SQL repeats with other values (a filter's shape, a page of the log: what
 * long polls, catch-ups, pages and exports run) are prepared once per connection and then
 * executed by name (db_exec_prepared, db_stream). Why: planning was most of such a read's
 * cost on a partitioned `events` (a long poll's lookup: 0.19 ms planning against 0.03 ms
 * executing), and PostgreSQL keeps a prepared statement's parse and, once a generic plan
 * costs no more than custom ones, its plan. Each connection keeps its own names in a
 * statement cache attached to the PGconn (libpq's event procedures: freed by PQfinish).
 */
#include "db.h"
#include "log.h"
#include "mem.h"
#include "strmap.h"
#include "timeutil.h"
#include "worker.h"

#include <libpq-events.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB_SETUP_TIMEOUT_MS 3000
/* Statements one connection keeps prepared; past it, a new shape runs unnamed. A shape is
 * a filter's combination of conditions (values are parameters), so few repeat; the
 * appender's connection holds its INSERTs (one per chunk size, absolute and relative: at
 * most 128) and its five lookups. */
#define DB_PREPARED_MAX 256
/* The server's side of the client's keepalives/tcp_user_timeout (db_connect). */
static const char *const db_session_setup =
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; "
    "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000";

/* Server notices ("relation already exists, skipping") are debug-level log lines. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", message);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_debug("db", "postgresql notice", json_pack("{s:s}", "notice", msg));
}

/* One connection's prepared statements: SQL text -> name ("s<n>"). Only the thread using
 * the connection touches it. `reset`: PostgreSQL lost them (DISCARD ALL, say): forget
 * them before the next use. */
typedef struct stmt_cache {
    strmap names;
    int next;
    bool reset;
} stmt_cache;

static void stmt_cache_clear(stmt_cache *sc)
{
    strmap_dispose(&sc->names, free);
    strmap_init(&sc->names);
    sc->reset = false;
}

static void stmt_check(PGconn *c, const PGresult *r);

static int stmt_event(PGEventId id, void *info, void *pass)
{
    (void)pass;
    /* Sluice never PQresets a connection (a broken one is finished and a new one made):
     * the cache lives and dies with its PGconn. */
    if (id == PGEVT_CONNDESTROY) {
        stmt_cache *sc = PQinstanceData(((PGEventConnDestroy *)info)->conn, stmt_event);
        if (sc) {
            strmap_dispose(&sc->names, free);
            free(sc);
        }
    }
    return 1;
}

PGconn *db_connect(const char *url, const char *module)
{
    const char *keys[] = {"dbname",           "connect_timeout",  "application_name",
                          "keepalives",       "keepalives_idle",  "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout", NULL};
    /* The replica's connections (reads.c: modules "read…") are told apart on its server. */
    const char *app = strncmp(module, "read", 4) == 0 ? "sluice-read" : "sluice";
    const char *vals[] = {url, "3", app, "1", "10", "5", "3", "10000", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        const char *err = c ? PQerrorMessage(c) : "out of memory";
        char msg[512];
        strncpy(msg, err, sizeof msg - 1);
        msg[sizeof msg - 1] = '\0';
        size_t n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = '\0';
        log_warn(module, "postgresql connect failed", json_pack("{s:s}", "error", msg));
        PQfinish(c);
        return NULL;
    }
    PQsetnonblocking(c, 1);
    PQsetNoticeProcessor(c, on_notice, NULL);
    stmt_cache *sc = xcalloc(1, sizeof *sc);
    strmap_init(&sc->names);
    if (!PQregisterEventProc(c, stmt_event, "sluice statements", NULL) ||
        !PQsetInstanceData(c, stmt_event, sc)) {
        strmap_dispose(&sc->names, free); /* statements run unnamed on this connection */
        free(sc);
    }
    PGresult *res[4];
    int n = db_run(&c, db_session_setup, -1, NULL, DB_SETUP_TIMEOUT_MS, res, 4);
    if (n < 0) {
        log_warn(module, "postgresql connect failed",
                 json_pack("{s:s}", "error", "session setup timed out"));
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!db_ok(res[i]))
            log_debug(module, "session setup refused",
                      json_pack("{s:s}", "error", PQresultErrorMessage(res[i])));
        PQclear(res[i]);
    }
    return c;
}

bool db_alive(PGconn *conn)
{
    if (PQstatus(conn) != CONNECTION_OK) return false;
    struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
    if (p.fd < 0) return false;
    /* An idle connection has nothing to say but a goodbye: the server's FATAL message
     * and then the end of the stream, which may take a second read to see. */
    for (int i = 0; i < 4 && poll(&p, 1, 0) > 0; i++) {
        if (!PQconsumeInput(conn)) return false;
        (void)PQisBusy(conn); /* parses what arrived */
        PGnotify *n;
        while ((n = PQnotifies(conn)))
            PQfreemem(n);
        if (PQstatus(conn) != CONNECTION_OK) return false;
    }
    return PQstatus(conn) == CONNECTION_OK;
}

static void *cancel_main(void *arg)
{
    PGcancel *cn = arg;
    char err[128];
    (void)PQcancel(cn, err, sizeof err);
    PQfreeCancel(cn);
    return NULL;
}

static void drop(PGconn **conn, bool cancel)
{
    PGcancel *cn = cancel ? PQgetCancel(*conn) : NULL;
    PQfinish(*conn);
    *conn = NULL;
    if (!cn) return;
    if (thread_start_detached(cancel_main, cn) != 0) PQfreeCancel(cn); /* no thread: the server finds the query's client gone */
}

/* Waits until the socket is ready for `events` or the deadline passes. */
static bool wait_socket(PGconn *c, short events, int64_t deadline)
{
    int fd = PQsocket(c);
    if (fd < 0) return false;
    for (;;) {
        int64_t left = deadline - time_mono_ms();
        if (left <= 0) return false;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)left);
        if (r > 0) return true;
        if (r == 0) return false;
    }
}

/* db_run, or (`name` set) the prepared statement `name` with `vals`. */
static int run(PGconn **conn, const char *sql, const char *name, int nparams,
               const char *const *vals, int timeout_ms, PGresult **res, int max_res)
{
    PGconn *c = *conn;
    int n = 0;
    if (!c) return -1;
    if (PQstatus(c) != CONNECTION_OK) goto broken;
    int64_t deadline = time_mono_ms() + timeout_ms;
    int sent = name          ? PQsendQueryPrepared(c, name, nparams, vals, NULL, NULL, 0)
               : nparams < 0 ? PQsendQuery(c, sql)
                             : PQsendQueryParams(c, sql, nparams, NULL, vals, NULL, NULL, 0);
    if (!sent) goto broken;
    for (;;) {
        int f = PQflush(c);
        if (f == 0) break;
        if (f < 0) goto broken;
        if (!wait_socket(c, POLLOUT | POLLIN, deadline)) goto timeout;
        if (!PQconsumeInput(c)) goto broken;
    }
    for (;;) {
        while (PQisBusy(c)) {
            if (!wait_socket(c, POLLIN, deadline)) goto timeout;
            if (!PQconsumeInput(c)) goto broken;
        }
        PGresult *r = PQgetResult(c);
        if (!r) break;
        if (n < max_res)
            res[n++] = r;
        else
            PQclear(r);
    }
    if (PQstatus(c) != CONNECTION_OK) goto broken;
    return n;

timeout:
    log_warn("db", "postgresql round trip timed out", json_pack("{s:i}", "timeout_ms", timeout_ms));
    for (int i = 0; i < n; i++)
        PQclear(res[i]);
    drop(conn, true);
    return -1;
broken:
    for (int i = 0; i < n; i++)
        PQclear(res[i]);
    drop(conn, false);
    return -1;
}

int db_run(PGconn **conn, const char *sql, int nparams, const char *const *vals, int timeout_ms,
           PGresult **res, int max_res)
{
    return run(conn, sql, NULL, nparams, vals, timeout_ms, res, max_res);
}

/* Waits for the next result of a pipeline; NULL when the connection failed or timed out
 * (*timed_out says which). */
static bool next_ready(PGconn *c, int64_t deadline, bool *timed_out)
{
    while (PQisBusy(c)) {
        if (!wait_socket(c, POLLIN, deadline)) {
            *timed_out = true;
            return false;
        }
        if (!PQconsumeInput(c)) return false;
    }
    return true;
}

/* A `prepared` step's statement being prepared in its pipeline: `name` is what its PREPARE
 * (sent just before the step when `prepare`) names its SQL; the connection's cache takes
 * the name once that PREPARE has succeeded, and a later step of the pipeline with the same
 * SQL uses it meanwhile. */
typedef struct pending_prepare {
    char *name;
    bool prepare;
} pending_prepare;

static void pending_free(pending_prepare *p, int n)
{
    if (!p) return;
    for (int i = 0; i < n; i++)
        free(p[i].name);
    free(p);
}

int db_pipeline(PGconn **conn, const db_step *steps, int n, int timeout_ms, PGresult **res,
                bool *all_sent)
{
    PGconn *c = *conn;
    int got = 0;
    bool timed_out = false;
    pending_prepare *pend = NULL; /* per step, allocated once a step needs a PREPARE */
    if (all_sent) *all_sent = false;
    if (!c || PQstatus(c) != CONNECTION_OK) goto broken;
    int64_t deadline = time_mono_ms() + timeout_ms;
    if (!PQenterPipelineMode(c)) goto broken;
    stmt_cache *sc = PQinstanceData(c, stmt_event);
    if (sc && sc->reset) stmt_cache_clear(sc); /* names are never reused: no collision */
    for (int i = 0; i < n; i++) {
        const db_step *st = &steps[i];
        const char *name = st->name;
        if (st->prepared && sc && !(name = strmap_get(&sc->names, st->sql))) {
            for (int j = 0; j < i && !name && pend; j++)
                if (pend[j].prepare && strcmp(steps[j].sql, st->sql) == 0) name = pend[j].name;
            if (!name && sc->names.len < DB_PREPARED_MAX) {
                if (!pend) pend = xcalloc((size_t)n, sizeof *pend);
                pend[i].name = xasprintf("s%d", sc->next++);
                pend[i].prepare = true;
                name = pend[i].name;
                if (!PQsendPrepare(c, name, st->sql, st->nparams, NULL)) goto broken;
            }
        }
        int ok = name && st->sql && !st->prepared
                     ? PQsendPrepare(c, name, st->sql, st->nparams, NULL)
                 : name ? PQsendQueryPrepared(c, name, st->nparams, st->vals, st->lens, NULL, 0)
                        : PQsendQueryParams(c, st->sql, st->nparams, NULL, st->vals, st->lens,
                                            NULL, 0);
        if (!ok) goto broken;
    }
    if (!PQpipelineSync(c)) goto broken;
    for (;;) {
        int f = PQflush(c);
        if (f == 0) break;
        if (f < 0) goto broken;
        if (!wait_socket(c, POLLOUT | POLLIN, deadline)) {
            timed_out = true;
            goto broken;
        }
        if (!PQconsumeInput(c)) goto broken;
    }
    if (all_sent) *all_sent = true; /* handed to the kernel, to the last byte */
    bool in_prepare = pend && pend[0].prepare;
    while (got < n) {
        if (!next_ready(c, deadline, &timed_out)) goto broken;
        PGresult *r = PQgetResult(c);
        if (!r) continue;                               /* the end of one step's results */
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) { /* fewer results than steps */
            PQclear(r);
            goto broken;
        }
        if (in_prepare) { /* the PREPARE before step `got`: not a step's result */
            if (PQresultStatus(r) == PGRES_COMMAND_OK) {
                strmap_put(&sc->names, steps[got].sql, pend[got].name);
                pend[got].name = NULL; /* the cache's now */
            }
            PQclear(r);
            in_prepare = false;
            continue;
        }
        if (steps[got].prepared && sc && !db_ok(r)) stmt_check(c, r);
        res[got++] = r;
        in_prepare = got < n && pend && pend[got].prepare;
    }
    for (;;) { /* the last step's end, then the sync */
        if (!next_ready(c, deadline, &timed_out)) goto broken;
        PGresult *r = PQgetResult(c);
        if (!r) continue;
        bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync) break;
    }
    pending_free(pend, n);
    pend = NULL;
    if (!PQexitPipelineMode(c) || PQstatus(c) != CONNECTION_OK) goto broken;
    return n;
broken:
    if (timed_out)
        log_warn("db", "postgresql round trip timed out",
                 json_pack("{s:i}", "timeout_ms", timeout_ms));
    for (int i = 0; i < got; i++)
        PQclear(res[i]);
    pending_free(pend, n);
    if (*conn) drop(conn, timed_out); /* its statement cache goes with it */
    return -1;
}

PGresult *db_exec(PGconn **conn, const char *sql, int nparams, const char *const *vals,
                  int timeout_ms)
{
    PGresult *r = NULL;
    int n = db_run(conn, sql, nparams, vals, timeout_ms, &r, 1);
    if (n < 0) return NULL;
    if (n == 0) return PQmakeEmptyPGresult(*conn, PGRES_EMPTY_QUERY);
    return r;
}

/* The name `sql` is prepared under on *conn, preparing it now (one round trip) when it is
 * not yet; NULL when it runs unnamed instead: the connection keeps no cache, the cache is
 * full, or PostgreSQL refused the statement (running it unnamed then reports the error
 * where the caller looks for it). *conn is NULL afterwards when the connection was lost. */
static const char *stmt_name(PGconn **conn, const char *sql, int nparams, int timeout_ms)
{
    stmt_cache *sc = *conn ? PQinstanceData(*conn, stmt_event) : NULL;
    if (!sc) return NULL;
    if (sc->reset) {
        PGresult *r = db_exec(conn, "DEALLOCATE ALL", -1, NULL, timeout_ms);
        bool ok = db_ok(r);
        PQclear(r);
        if (!ok) return NULL; /* in a failed transaction, say: next time */
        stmt_cache_clear(sc);
    }
    const char *name = strmap_get(&sc->names, sql);
    if (name || sc->names.len >= DB_PREPARED_MAX) return name;
    char fresh[16];
    snprintf(fresh, sizeof fresh, "s%d", sc->next++);
    db_step st = {.name = fresh, .sql = sql, .nparams = nparams};
    PGresult *r = NULL;
    if (db_pipeline(conn, &st, 1, timeout_ms, &r, NULL) < 0) return NULL;
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) return NULL;
    char *owned = xstrdup(fresh);
    strmap_put(&sc->names, sql, owned);
    return owned;
}

/* After a prepared statement's result `r`: when PostgreSQL no longer has the connection's
 * statements (invalid_sql_statement_name: a DISCARD ALL) or cannot run one as prepared
 * (feature_not_supported: "cached plan must not change result type" after a column
 * changed), they are all forgotten before the next use. */
static void stmt_check(PGconn *c, const PGresult *r)
{
    const char *st = db_sqlstate(r);
    if (!c || (strcmp(st, "26000") != 0 && strcmp(st, "0A000") != 0)) return;
    stmt_cache *sc = PQinstanceData(c, stmt_event);
    if (sc) sc->reset = true;
}

PGresult *db_exec_prepared(PGconn **conn, const char *sql, int nparams, const char *const *vals,
                           int timeout_ms)
{
    const char *name = stmt_name(conn, sql, nparams, timeout_ms);
    if (!*conn) return NULL;
    PGresult *r = NULL;
    int n = run(conn, sql, name, nparams, vals, timeout_ms, &r, 1);
    if (n < 0) return NULL;
    if (n == 0) return PQmakeEmptyPGresult(*conn, PGRES_EMPTY_QUERY);
    if (name && !db_ok(r)) stmt_check(*conn, r);
    return r;
}

bool db_ok(const PGresult *r)
{
    if (!r) return false;
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

const char *db_sqlstate(const PGresult *r)
{
    const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

void db_log_error(const char *module, const char *what, const PGresult *r)
{
    const char *msg = r ? PQresultErrorMessage(r) : "no result";
    log_error(module, what, json_pack("{s:s,s:s}", "error", msg, "sqlstate", db_sqlstate(r)));
}

db_stream_rc db_stream(PGconn **conn, const char *sql, int nparams, const char *const *vals,
                       int timeout_ms, int (*row_cb)(const PGresult *row, void *arg), void *arg)
{
    PGconn *c = *conn;
    db_stream_rc rc = DB_STREAM_END;
    const char *name = NULL;
    if (!c || PQstatus(c) != CONNECTION_OK) goto broken;
    name = stmt_name(conn, sql, nparams, timeout_ms);
    if (!(c = *conn)) return DB_STREAM_LOST;
    if (!(name ? PQsendQueryPrepared(c, name, nparams, vals, NULL, NULL, 0)
               : PQsendQueryParams(c, sql, nparams, NULL, vals, NULL, NULL, 0)))
        goto broken;
    PQsetSingleRowMode(c);
    for (;;) {
        int f = PQflush(c);
        if (f == 0) break;
        if (f < 0 || !wait_socket(c, POLLOUT | POLLIN, time_mono_ms() + timeout_ms)) goto broken;
        if (!PQconsumeInput(c)) goto broken;
    }
    for (;;) {
        int64_t deadline = time_mono_ms() + timeout_ms;
        while (PQisBusy(c)) {
            if (!wait_socket(c, POLLIN, deadline)) goto timeout;
            if (!PQconsumeInput(c)) goto broken;
        }
        PGresult *r = PQgetResult(c);
        if (!r) break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            if (rc == DB_STREAM_END && row_cb(r, arg) != 0) rc = DB_STREAM_STOPPED;
        } else if (st != PGRES_TUPLES_OK && rc == DB_STREAM_END) {
            db_log_error("db", "streaming query failed", r);
            if (name) stmt_check(c, r);
            rc = DB_STREAM_FAILED;
        }
        PQclear(r);
        if (rc == DB_STREAM_STOPPED) {
            drop(conn, true); /* abandon the rest of the rows */
            return DB_STREAM_STOPPED;
        }
    }
    if (PQstatus(c) != CONNECTION_OK) goto broken;
    return rc;
timeout:
    drop(conn, true);
    return DB_STREAM_LOST;
broken:
    if (*conn) drop(conn, false);
    return DB_STREAM_LOST;
}
