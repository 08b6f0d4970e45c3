/*
 * store.c — event log queries (see store.h).
 */
#include "store.h"
#include "db.h"
#include "eventlog.h"
#include "envelope.h"
#include "log.h"
#include "timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The stored envelope's columns are eventlog.h's: row_to_json over them gives the same
 * text a subscriber receives live. */
#define EVENT_COLUMNS EVENTLOG_COLUMNS

void store_filter_dispose(read_filter *r)
{
    filter_dispose(&r->f);
    memset(r, 0, sizeof *r);
}

static bool parse_ll(const char *s, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !*s || *end || v < 0) return false;
    *out = v;
    return true;
}

int store_filter_parse(read_filter *r, const char *tenant, filter_arg_fn arg, void *ctx,
                       bool paged, filter_error *err)
{
    memset(r, 0, sizeof *r);
    snprintf(r->f.tenant, sizeof r->f.tenant, "%s", tenant);
    if (filter_parse_query(&r->f, arg, ctx, err) < 0) return -1;
    const char *v;
    err->where = false;
    if ((v = arg(ctx, "after")) && !parse_ll(v, &r->after)) {
        snprintf(err->message, sizeof err->message,
                 "after must be a non-negative integer position");
        goto fail;
    }
    r->limit = paged ? STORE_PAGE_DEFAULT : 0;
    if ((v = arg(ctx, "limit"))) {
        long long lim;
        if (!parse_ll(v, &lim) || lim < 1 || (paged && lim > STORE_PAGE_MAX)) {
            snprintf(err->message, sizeof err->message, "limit must be an integer from 1 to %d",
                     STORE_PAGE_MAX);
            goto fail;
        }
        r->limit = lim;
        r->limit_given = true;
    }
    return 0;
fail:
    store_filter_dispose(r);
    return -1;
}

/* "SELECT position, <envelope json> FROM events WHERE …" with its parameters. */
static void build_query(filter_sql *q, const read_filter *r, long long limit)
{
    filter_sql_init(q);
    buf_puts(&q->sql, "SELECT e.position, row_to_json(e)::text FROM (SELECT " EVENT_COLUMNS
                      " FROM events WHERE true");
    filter_sql_where(q, &r->f);
    char num[24];
    if (r->upto > 0) {
        snprintf(num, sizeof num, "%lld", r->upto);
        buf_printf(&q->sql, " AND position <= $%d", filter_sql_param(q, num));
    }
    snprintf(num, sizeof num, "%lld", r->after);
    buf_printf(&q->sql, " AND position > $%d ORDER BY position", filter_sql_param(q, num));
    if (limit > 0) {
        snprintf(num, sizeof num, "%lld", limit);
        buf_printf(&q->sql, " LIMIT $%d", filter_sql_param(q, num));
    }
    buf_puts(&q->sql, ") e ORDER BY e.position");
}

sl_status store_get_event(PGconn **conn, int timeout_ms, const char *tenant, const char *id,
                          char **json)
{
    const char *p[] = {tenant, id};
    PGresult *r =
        db_exec_prepared(conn,
                         "SELECT row_to_json(e)::text FROM (SELECT " EVENT_COLUMNS
                         " FROM events WHERE position = (SELECT position FROM event_ids WHERE "
                         "tenant_id = $1 AND id = $2)) e",
                         2, p, timeout_ms);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r)) {
        rc = SL_NOT_FOUND;
        if (PQntuples(r) == 1) {
            *json = xstrdup(PQgetvalue(r, 0, 0));
            rc = SL_OK;
        }
    } else if (r) {
        db_log_error("store", "reading an event failed", r);
    }
    PQclear(r);
    return rc;
}

sl_status store_read_page(PGconn **conn, int timeout_ms, const read_filter *f, buf *out)
{
    filter_sql q;
    build_query(&q, f, f->limit + 1); /* one more row tells has_more */
    PGresult *r = db_exec_prepared(conn, q.sql.data, q.n, q.vals, timeout_ms);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r)) {
        int rows = PQntuples(r);
        bool more = rows > f->limit;
        if (more) rows = (int)f->limit;
        long long next = f->after;
        buf_puts(out, "{\"events\":[");
        for (int i = 0; i < rows; i++) {
            if (i) buf_puts(out, ",");
            buf_append(out, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
            next = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        }
        buf_printf(out, "],\"next_after\":%lld,\"has_more\":%s}", next, more ? "true" : "false");
        rc = SL_OK;
    } else if (r) {
        db_log_error("store", "reading a page failed", r);
    }
    PQclear(r);
    filter_sql_dispose(&q);
    return rc;
}

typedef struct stream_ctx {
    int (*write)(const char *line, size_t len, void *arg);
    void *arg;
} stream_ctx;

static int on_row(const PGresult *row, void *arg)
{
    stream_ctx *s = arg;
    return s->write(PQgetvalue(row, 0, 1), (size_t)PQgetlength(row, 0, 1), s->arg);
}

store_stream_rc store_stream(PGconn **conn, int timeout_ms, const read_filter *f,
                             int (*write)(const char *line, size_t len, void *arg), void *arg)
{
    filter_sql q;
    build_query(&q, f, f->limit);
    stream_ctx s = {write, arg};
    db_stream_rc rc = db_stream(conn, q.sql.data, q.n, q.vals, timeout_ms, on_row, &s);
    filter_sql_dispose(&q);
    return rc == DB_STREAM_END       ? STORE_STREAM_END
           : rc == DB_STREAM_STOPPED ? STORE_STREAM_STOPPED
                                     : STORE_STREAM_UNAVAILABLE;
}

long long store_count(PGconn **conn, int timeout_ms, const read_filter *f)
{
    filter_sql q;
    build_query(&q, f, 0);
    buf sql;
    buf_init(&sql);
    buf_printf(&sql, "SELECT count(*) FROM (%s) c", q.sql.data);
    PGresult *r = db_exec(conn, sql.data, q.n, q.vals, timeout_ms);
    long long n = db_ok(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    buf_dispose(&sql);
    filter_sql_dispose(&q);
    return n;
}

long long store_head(PGconn **conn, int timeout_ms)
{
    PGresult *r =
        db_exec(conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL, timeout_ms);
    long long head = -1;
    if (db_ok(r)) head = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return head;
}
