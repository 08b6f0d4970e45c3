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

void store_filter_dispose(read_filter *f)
{
    free(f->stream);
    free(f->key);
    free(f->correlation_id);
    free(f->user_id);
    free(f->since);
    free(f->until);
    for (int i = 0; i < f->n_types; i++)
        free(f->types[i]);
    memset(f, 0, sizeof *f);
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

static int parse_string(const char *v, const char *name, size_t max, char **out, char err[256])
{
    if (!v) return 0;
    if (!*v || utf8_length(v) > max) {
        snprintf(err, 256, "%s must be 1 to %zu characters", name, max);
        return -1;
    }
    *out = xstrdup(v);
    return 0;
}

static int parse_types(read_filter *f, const char *v, char err[256])
{
    char *copy = xstrdup(v), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (f->n_types == STORE_MAX_TYPES) {
            snprintf(err, 256, "type takes at most %d entries", STORE_MAX_TYPES);
            rc = -1;
            break;
        }
        size_t n = strlen(t);
        if (strcmp(t, "*") == 0) { /* everything: drop the type filter */
            f->types[f->n_types] = xstrdup("");
            f->type_prefix[f->n_types++] = true;
            continue;
        }
        bool prefix = n > 2 && strcmp(t + n - 2, ".*") == 0;
        char probe[ENVELOPE_TYPE_MAX + 8];
        if (prefix) t[n - 2] = '\0'; /* "file.*" → base "file", stored as prefix "file." */
        snprintf(probe, sizeof probe, "%s%s", t, prefix ? ".x" : "");
        if (!envelope_type_valid(probe)) {
            size_t cut = strlen(v) > 140 ? 140 : strlen(v); /* whole UTF-8 characters only */
            while (cut > 0 && cut < strlen(v) && ((unsigned char)v[cut] & 0xC0) == 0x80)
                cut--;
            snprintf(err, 256, "type '%.*s' is not a type name or a 'prefix.*' wildcard", (int)cut,
                     v);
            rc = -1;
            break;
        }
        f->types[f->n_types] = prefix ? xasprintf("%s.", t) : xstrdup(t);
        f->type_prefix[f->n_types++] = prefix;
    }
    free(copy);
    return rc;
}

int store_filter_parse(read_filter *f, filter_arg_fn arg, void *ctx, bool paged, char err[256])
{
    memset(f, 0, sizeof *f);
    const char *v;
    if (parse_string(arg(ctx, "stream"), "stream", ENVELOPE_STREAM_MAX, &f->stream, err) < 0 ||
        parse_string(arg(ctx, "key"), "key", ENVELOPE_KEY_MAX, &f->key, err) < 0 ||
        parse_string(arg(ctx, "correlation_id"), "correlation_id", ENVELOPE_STR_MAX,
                     &f->correlation_id, err) < 0 ||
        parse_string(arg(ctx, "user_id"), "user_id", ENVELOPE_STR_MAX, &f->user_id, err) < 0)
        goto fail;
    if ((v = arg(ctx, "type")) && parse_types(f, v, err) < 0) goto fail;
    /* Times reach PostgreSQL as milliseconds since the epoch (an integer), so no text of
     * the client's is ever parsed there: a date PostgreSQL would refuse (year 0, say)
     * cannot turn into a store error. */
    int64_t ms;
    if ((v = arg(ctx, "since"))) {
        if (!time_parse_rfc3339(v, &ms)) {
            snprintf(err, 256, "since must be an RFC 3339 timestamp");
            goto fail;
        }
        f->since = xasprintf("%lld", (long long)ms);
    }
    if ((v = arg(ctx, "until"))) {
        if (!time_parse_rfc3339(v, &ms)) {
            snprintf(err, 256, "until must be an RFC 3339 timestamp");
            goto fail;
        }
        f->until = xasprintf("%lld", (long long)ms);
    }
    if ((v = arg(ctx, "after")) && !parse_ll(v, &f->after)) {
        snprintf(err, 256, "after must be a non-negative integer position");
        goto fail;
    }
    f->limit = paged ? STORE_PAGE_DEFAULT : 0;
    if ((v = arg(ctx, "limit"))) {
        long long lim;
        if (!parse_ll(v, &lim) || lim < 1 || (paged && lim > STORE_PAGE_MAX)) {
            snprintf(err, 256, "limit must be an integer from 1 to %d", STORE_PAGE_MAX);
            goto fail;
        }
        f->limit = lim;
        f->limit_given = true;
    }
    return 0;
fail:
    store_filter_dispose(f);
    return -1;
}

/* Builds "SELECT position, <json> FROM events WHERE …" with its parameters. The
 * parameter strings point into `f` or into `scratch` (caller disposes). */
typedef struct query {
    buf sql;
    const char *vals[16];
    int n;
    char num[3][24];
    buf exact, prefixes;
} query;

static void query_dispose(query *q)
{
    buf_dispose(&q->sql);
    buf_dispose(&q->exact);
    buf_dispose(&q->prefixes);
}

static void add_cond(query *q, const char *fmt, const char *val)
{
    q->vals[q->n++] = val;
    buf_printf(&q->sql, fmt, q->n);
}

static void build_query(query *q, const char *tenant, const read_filter *f, long long limit)
{
    memset(q, 0, sizeof *q);
    buf_init(&q->sql);
    buf_init(&q->exact);
    buf_init(&q->prefixes);
    buf_puts(&q->sql, "SELECT e.position, row_to_json(e)::text FROM (SELECT " EVENT_COLUMNS
                      " FROM events WHERE ");
    add_cond(q, "tenant_id = $%d", tenant);
    if (f->stream) add_cond(q, " AND stream = $%d", f->stream);
    if (f->key) add_cond(q, " AND key = $%d", f->key);
    if (f->correlation_id) add_cond(q, " AND correlation_id = $%d", f->correlation_id);
    if (f->user_id) add_cond(q, " AND user_id = $%d", f->user_id);
    if (f->since)
        add_cond(q, " AND time >= 'epoch'::timestamptz + $%d::bigint * interval '1 ms'", f->since);
    if (f->until)
        add_cond(q, " AND time < 'epoch'::timestamptz + $%d::bigint * interval '1 ms'", f->until);
    bool any = false;
    for (int i = 0; i < f->n_types; i++)
        if (f->type_prefix[i] && f->types[i][0] == '\0') any = true;
    if (f->n_types && !any) {
        /* Type names are [a-z0-9_.] only (checked), so they need no quoting in an array. */
        buf_puts(&q->exact, "{");
        buf_puts(&q->prefixes, "{");
        for (int i = 0; i < f->n_types; i++) {
            buf *b = f->type_prefix[i] ? &q->prefixes : &q->exact;
            if (b->len > 1) buf_puts(b, ",");
            buf_puts(b, f->types[i]);
        }
        buf_puts(&q->exact, "}");
        buf_puts(&q->prefixes, "}");
        add_cond(q, " AND (type = ANY($%d::text[])", q->exact.data);
        add_cond(q, " OR EXISTS (SELECT 1 FROM unnest($%d::text[]) p WHERE starts_with(type, p)))",
                 q->prefixes.data);
    }
    if (f->upto > 0) {
        snprintf(q->num[2], sizeof q->num[2], "%lld", f->upto);
        add_cond(q, " AND position <= $%d", q->num[2]);
    }
    snprintf(q->num[0], sizeof q->num[0], "%lld", f->after);
    add_cond(q, " AND position > $%d ORDER BY position", q->num[0]);
    if (limit > 0) {
        snprintf(q->num[1], sizeof q->num[1], "%lld", limit);
        add_cond(q, " LIMIT $%d", q->num[1]);
    }
    buf_puts(&q->sql, ") e ORDER BY e.position");
}

int store_get_event(PGconn **conn, int timeout_ms, const char *tenant, const char *id, char **json)
{
    const char *p[] = {tenant, id};
    PGresult *r = db_exec(conn,
                          "SELECT row_to_json(e)::text FROM (SELECT " EVENT_COLUMNS
                          " FROM events WHERE tenant_id = $1 AND id = $2) e",
                          2, p, timeout_ms);
    int rc = -1;
    if (db_ok(r)) {
        rc = -2;
        if (PQntuples(r) == 1) {
            *json = xstrdup(PQgetvalue(r, 0, 0));
            rc = 0;
        }
    } else if (r) {
        db_log_error("store", "reading an event failed", r);
    }
    PQclear(r);
    return rc;
}

int store_read_page(PGconn **conn, int timeout_ms, const char *tenant, const read_filter *f,
                    buf *out)
{
    query q;
    build_query(&q, tenant, f, f->limit + 1); /* one more row tells has_more */
    PGresult *r = db_exec(conn, q.sql.data, q.n, q.vals, timeout_ms);
    int rc = -1;
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
        rc = 0;
    } else if (r) {
        db_log_error("store", "reading a page failed", r);
    }
    PQclear(r);
    query_dispose(&q);
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

int store_stream(PGconn **conn, int timeout_ms, const char *tenant, const read_filter *f,
                 int (*write)(const char *line, size_t len, void *arg), void *arg)
{
    query q;
    build_query(&q, tenant, f, f->limit);
    stream_ctx s = {write, arg};
    int rc = db_stream(conn, q.sql.data, q.n, q.vals, timeout_ms, on_row, &s);
    query_dispose(&q);
    if (rc == -2) rc = -1;
    return rc;
}

long long store_count(PGconn **conn, int timeout_ms, const char *tenant, const read_filter *f)
{
    query q;
    build_query(&q, tenant, f, 0);
    buf sql;
    buf_init(&sql);
    buf_printf(&sql, "SELECT count(*) FROM (%s) c", q.sql.data);
    PGresult *r = db_exec(conn, sql.data, q.n, q.vals, timeout_ms);
    long long n = db_ok(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    buf_dispose(&sql);
    query_dispose(&q);
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
