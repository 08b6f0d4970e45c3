/*
 * eventlog.c — the event log's one reader (see eventlog.h).
 */
#include "eventlog.h"
#include "db.h"
#include "filter.h"
#include "mem.h"
#include "timeutil.h"
#include "ulid.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const page_sql =
    "SELECT e.position, e.id, e.tenant_id, e.stream, e.type, e.key, e.correlation_id, "
    "row_to_json(e)::text, e.user_id, e.time FROM (SELECT " EVENTLOG_COLUMNS " FROM events "
    "WHERE position > $1 ORDER BY position LIMIT $2) e ORDER BY e.position";

static char instance[ULID_LEN + 1];
static pthread_once_t instance_once = PTHREAD_ONCE_INIT;

static void make_instance(void)
{
    ulid_new(instance);
}

const char *eventlog_instance(void)
{
    pthread_once(&instance_once, make_instance);
    return instance;
}

/* A string field: "name":"value" or "name":null. */
static void field(buf *b, const char *name, const char *value)
{
    buf_puts(b, name);
    if (value)
        buf_json_string(b, value);
    else
        buf_append(b, "null", 4);
}

stored_event *eventlog_committed(const incoming_event *ev)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{\"position\":");
    buf_lld(&b, ev->position);
    field(&b, ",\"id\":", ev->id);
    field(&b, ",\"type\":", ev->type);
    field(&b, ",\"stream\":", ev->stream);
    field(&b, ",\"key\":", ev->key);
    if (ev->key) {
        buf_puts(&b, ",\"version\":");
        buf_lld(&b, ev->version);
    } else
        buf_puts(&b, ",\"version\":null");
    buf_puts(&b, ",\"data\":");
    buf_append(&b, ev->data_text, ev->data_len);
    buf_puts(&b, ",\"metadata\":");
    if (ev->metadata_text)
        buf_append(&b, ev->metadata_text, ev->metadata_len);
    else
        buf_append(&b, "null", 4);
    field(&b, ",\"correlation_id\":", ev->correlation_id);
    field(&b, ",\"causation_id\":", ev->causation_id);
    field(&b, ",\"user_id\":", ev->user_id);
    field(&b, ",\"source\":", ev->source);
    if (ev->schema_version) {
        buf_puts(&b, ",\"schema_version\":");
        buf_lld(&b, ev->schema_version);
    } else
        buf_puts(&b, ",\"schema_version\":null");
    field(&b, ",\"tenant_id\":", ev->tenant);
    field(&b, ",\"time\":", ev->time);
    field(&b, ",\"occurred_at\":", ev->occurred_at[0] ? ev->occurred_at : NULL);
    buf_append(&b, "}", 1);
    int64_t ms = 0;
    (void)time_parse_rfc3339(ev->time, &ms);
    stored_event_fields f = {.position = ev->position,
                             .id = ev->id,
                             .tenant = ev->tenant,
                             .stream = ev->stream,
                             .type = ev->type,
                             .key = ev->key,
                             .correlation_id = ev->correlation_id,
                             .user_id = ev->user_id,
                             .time_ms = ms};
    stored_event *e = stored_event_make(&f, b.data, b.len);
    buf_dispose(&b);
    return e;
}

/* The rows of a page query (page_sql's columns) as shared events. */
static int page_events(PGconn **conn, const char *sql, int n_params, const char *const *p,
                       int timeout_ms, stored_event ***out)
{
    *out = NULL;
    PGresult *r = db_exec_prepared(conn, sql, n_params, p, timeout_ms);
    if (!db_ok(r)) {
        if (r) db_log_error("eventlog", "reading the log failed", r);
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    stored_event **evs = n ? xcalloc((size_t)n, sizeof *evs) : NULL;
    for (int i = 0; i < n; i++) {
        stored_event_fields f = {.position = strtoll(PQgetvalue(r, i, 0), NULL, 10),
                                 .id = PQgetvalue(r, i, 1),
                                 .tenant = PQgetvalue(r, i, 2),
                                 .stream = PQgetvalue(r, i, 3),
                                 .type = PQgetvalue(r, i, 4),
                                 .key = PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5),
                                 .correlation_id = PQgetvalue(r, i, 6),
                                 .user_id = PQgetisnull(r, i, 8) ? NULL : PQgetvalue(r, i, 8),
                                 .time_ms = 0};
        int64_t ms = 0;
        if (time_parse_rfc3339(PQgetvalue(r, i, 9), &ms)) f.time_ms = ms;
        evs[i] = stored_event_make(&f, PQgetvalue(r, i, 7), (size_t)PQgetlength(r, i, 7));
    }
    PQclear(r);
    *out = evs;
    return n;
}

int eventlog_read(PGconn **conn, long long after, int limit, int timeout_ms, stored_event ***out)
{
    char a[24], l[16];
    snprintf(a, sizeof a, "%lld", after);
    snprintf(l, sizeof l, "%d", limit);
    const char *p[] = {a, l};
    return page_events(conn, page_sql, 2, p, timeout_ms, out);
}

int eventlog_read_matching(PGconn **conn, const filter *f, long long after, int limit,
                           int timeout_ms, stored_event ***out)
{
    filter_sql q;
    filter_sql_init(&q);
    buf_puts(&q.sql, "SELECT e.position, e.id, e.tenant_id, e.stream, e.type, e.key, "
                     "e.correlation_id, row_to_json(e)::text, e.user_id, e.time FROM (SELECT "
                     EVENTLOG_COLUMNS " FROM events WHERE true");
    filter_sql_where(&q, f);
    char num[24];
    snprintf(num, sizeof num, "%lld", after);
    buf_printf(&q.sql, " AND position > $%d ORDER BY position", filter_sql_param(&q, num));
    snprintf(num, sizeof num, "%d", limit);
    buf_printf(&q.sql, " LIMIT $%d) e ORDER BY e.position", filter_sql_param(&q, num));
    int n = page_events(conn, q.sql.data, q.n, q.vals, timeout_ms, out);
    filter_sql_dispose(&q);
    return n;
}

long long eventlog_head(PGconn **conn, int timeout_ms)
{
    PGresult *r =
        db_exec(conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL, timeout_ms);
    long long head = db_ok(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return head;
}

bool eventlog_listen(PGconn **conn, int timeout_ms)
{
    return eventlog_listen_to(conn, EVENTLOG_CHANNEL, true, timeout_ms);
}

bool eventlog_listen_to(PGconn **conn, const char *channel, bool on, int timeout_ms)
{
    char sql[64];
    snprintf(sql, sizeof sql, "%s %s", on ? "LISTEN" : "UNLISTEN", channel);
    PGresult *r = db_exec(conn, sql, 0, NULL, timeout_ms);
    bool ok = db_ok(r);
    PQclear(r);
    return ok;
}

/* Takes the queued notifications; 1 if one counts (see eventlog_wait). */
static int drain(PGconn *conn, eventlog_wake which)
{
    int woken = 0;
    PGnotify *note;
    while ((note = PQnotifies(conn))) {
        if (which == EVENTLOG_WAKE_ANY ||
            (which == EVENTLOG_WAKE_FOREIGN && strcmp(note->extra, eventlog_instance()) != 0))
            woken = 1;
        PQfreemem(note);
    }
    return woken;
}

int eventlog_notified(PGconn **conn, eventlog_wake which)
{
    if (!*conn) return -1;
    if (!PQconsumeInput(*conn)) {
        PQfinish(*conn);
        *conn = NULL;
        return -1;
    }
    return drain(*conn, which);
}

int eventlog_wait(PGconn **conn, int ms, eventlog_wake which, const atomic_bool *stopping)
{
    if (!*conn) return -1;
    if (drain(*conn, which)) return 1; /* arrived while a page was read */
    struct pollfd p = {.fd = PQsocket(*conn), .events = POLLIN};
    for (int waited = 0; waited < ms && !(stopping && atomic_load(stopping)); waited += 100) {
        int step = ms - waited < 100 ? ms - waited : 100;
        if (poll(&p, 1, step) > 0) break;
    }
    return eventlog_notified(conn, which);
}
