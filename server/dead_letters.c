/*
 * dead_letters.c — dead-letter administration (see dead_letters.h).
 */
#include "dead_letters.h"
#include "db.h"
#include "envelope.h"
#include "groups.h"
#include "log.h"
#include "mem.h"
#include "pool.h"
#include "problem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DL_TIMEOUT_MS 10000
#define DL_BATCH_MAX 10000

#define DL_COLUMNS                                                                             \
    "id, source, stream, group_name, consumer, event_id, event_position, type, "              \
    "delivery_count, status, errors::text, "                                                   \
    "to_char(first_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "      \
    "to_char(last_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static json_t *str_or_null(PGresult *r, int i, int c)
{
    return PQgetisnull(r, i, c) ? json_null() : json_string(PQgetvalue(r, i, c));
}

static json_t *dl_row(PGresult *r, int i)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:s,s:I,s:o,s:i,s:s,s:o,s:s,s:s}", "id",
                     PQgetvalue(r, i, 0), "source", PQgetvalue(r, i, 1), "stream",
                     PQgetvalue(r, i, 2), "group", str_or_null(r, i, 3), "consumer",
                     str_or_null(r, i, 4), "event_id", PQgetvalue(r, i, 5), "event_position",
                     (json_int_t)strtoll(PQgetvalue(r, i, 6), NULL, 10), "type",
                     str_or_null(r, i, 7), "delivery_count", atoi(PQgetvalue(r, i, 8)), "status",
                     PQgetvalue(r, i, 9), "errors", json_loads(PQgetvalue(r, i, 10), 0, NULL),
                     "first_failed_at", PQgetvalue(r, i, 11), "last_failed_at",
                     PQgetvalue(r, i, 12));
}

static const char *fstr(json_t *f, const char *k)
{
    return json_string_value(json_object_get(f, k));
}

sl_status dead_letters_list(PGconn **conn, const char *tenant, json_t *f, json_t **answer)
{
    const char *vals[10];
    int n = 0;
    buf sql;
    buf_init(&sql);
    buf_puts(&sql, "SELECT " DL_COLUMNS " FROM dead_letters WHERE tenant_id = $1");
    vals[n++] = tenant;
    static const char *const eq[][2] = {{"stream", "stream"}, {"group", "group_name"},
                                        {"type", "type"}, {"source", "source"}};
    for (size_t i = 0; i < sizeof eq / sizeof eq[0]; i++) {
        const char *v = fstr(f, eq[i][0]);
        if (!v) continue;
        vals[n++] = v;
        buf_printf(&sql, " AND %s = $%d", eq[i][1], n);
    }
    const char *status = fstr(f, "status");
    if (status) {
        vals[n++] = status;
        buf_printf(&sql, " AND status = $%d", n);
    } else {
        buf_puts(&sql, " AND status IN ('open', 'reprocessing')"); /* still on the list */
    }
    const char *older = fstr(f, "older_than_ms");
    if (older) {
        vals[n++] = older;
        buf_printf(&sql, " AND first_failed_at < now() - make_interval(secs => $%d::bigint / 1000.0)", n);
    }
    vals[n++] = fstr(f, "after") ? fstr(f, "after") : "0";
    buf_printf(&sql, " AND id > $%d::bigint", n);
    vals[n++] = fstr(f, "limit") ? fstr(f, "limit") : "100";
    buf_printf(&sql, " ORDER BY id LIMIT $%d::int + 1", n);
    PGresult *r = db_exec(conn, sql.data, n, vals, DL_TIMEOUT_MS);
    buf_dispose(&sql);
    if (!db_ok(r)) {
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    int limit = atoi(vals[n - 1]);
    int rows = PQntuples(r);
    bool more = rows > limit;
    if (more) rows = limit;
    json_t *list = json_array();
    for (int i = 0; i < rows; i++) json_array_append_new(list, dl_row(r, i));
    *answer = json_pack("{s:o,s:o,s:b}", "dead_letters", list, "next_after",
                        rows ? json_integer(strtoll(PQgetvalue(r, rows - 1, 0), NULL, 10)) : json_null(),
                        "has_more", more);
    PQclear(r);
    return SL_OK;
}

static bool id_valid(const char *id);

sl_status dead_letters_get(PGconn **conn, const char *tenant, const char *id, json_t **answer)
{
    if (!id_valid(id)) return SL_NOT_FOUND;
    const char *p[] = {tenant, id};
    PGresult *r = db_exec(conn,
                          "SELECT " DL_COLUMNS ", event::text, history::text FROM dead_letters "
                          "WHERE tenant_id = $1 AND id = $2::bigint",
                          2, p, DL_TIMEOUT_MS);
    if (!db_ok(r)) {
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        return SL_NOT_FOUND;
    }
    *answer = dl_row(r, 0);
    json_object_set_new(*answer, "event",
                        PQgetisnull(r, 0, 13) ? json_null() : json_loads(PQgetvalue(r, 0, 13), 0, NULL));
    json_object_set_new(*answer, "history", json_loads(PQgetvalue(r, 0, 14), 0, NULL));
    PQclear(r);
    return SL_OK;
}

static bool id_valid(const char *id)
{
    return *id && strlen(id) < 19 && strspn(id, "0123456789") == strlen(id);
}

/* Moves one dead letter from `from` to `to` status, appending `note` to its history.
 * SL_OK with the row's group fields in the out parameters, SL_NOT_FOUND when it was not
 * in `from`, or SL_UNAVAILABLE. */
static sl_status transition(PGconn **conn, const char *tenant, const char *id, const char *from_sql,
                            const char *to, const char *note, char **stream, char **group,
                            long long *position, char **source)
{
    const char *p[] = {tenant, id, to, note};
    char sql[600];
    snprintf(sql, sizeof sql,
             "UPDATE dead_letters SET status = $3, history = history || jsonb_build_array("
             "jsonb_build_object('time', now(), 'status', $3::text, 'note', $4::text)) WHERE "
             "tenant_id = $1 AND id = $2::bigint AND status IN (%s) RETURNING stream, group_name, "
             "event_position, source",
             from_sql);
    PGresult *r = db_exec(conn, sql, 4, p, DL_TIMEOUT_MS);
    if (!db_ok(r)) {
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    sl_status rc = SL_NOT_FOUND;
    if (PQntuples(r) == 1) {
        *stream = xstrdup(PQgetvalue(r, 0, 0));
        *group = PQgetisnull(r, 0, 1) ? NULL : xstrdup(PQgetvalue(r, 0, 1));
        *position = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        *source = xstrdup(PQgetvalue(r, 0, 3));
        rc = SL_OK;
    }
    PQclear(r);
    return rc;
}

sl_status dead_letters_reprocess(PGconn **conn, const char *tenant, const char *id, json_t **answer)
{
    if (!id_valid(id)) return SL_NOT_FOUND;
    json_t *cur = NULL;
    sl_status rc = dead_letters_get(conn, tenant, id, &cur);
    if (rc != SL_OK) return rc;
    const char *status = json_string_value(json_object_get(cur, "status"));
    const char *source = json_string_value(json_object_get(cur, "source"));
    if (strcmp(source, "group") != 0) {
        json_decref(cur);
        *answer = problem_new("conflict", "a projection's dead letter is resolved by fixing the "
                                          "event's data or the definition and resetting the "
                                          "projection; discard it to clear it");
        return SL_REFUSED;
    }
    if (strcmp(status, "open") != 0) {
        /* Reprocessing twice delivers once: answer with where it stands. */
        if (!strcmp(status, "discarded")) {
            json_decref(cur);
            *answer = problem_new("conflict", "this dead letter was discarded");
            return SL_REFUSED;
        }
        *answer = cur;
        return SL_OK;
    }
    json_decref(cur);
    char *stream = NULL, *group = NULL, *src = NULL;
    long long position = 0;
    rc = transition(conn, tenant, id, "'open'", "reprocessing", "reprocess requested", &stream,
                    &group, &position, &src);
    if (rc == SL_NOT_FOUND)
        return dead_letters_get(conn, tenant, id, answer); /* raced: already moving */
    if (rc != SL_OK) return rc;
    sl_status rd = groups_redeliver(tenant, stream, group, position);
    sl_status refused = SL_OK;
    if (rd != SL_OK) {
        char *s2 = NULL, *g2 = NULL, *src2 = NULL;
        long long p2;
        (void)transition(conn, tenant, id, "'reprocessing'", "open",
                         rd == SL_UNAVAILABLE
                             ? "reprocess failed: Redis unreachable"
                             : "reprocess failed: the entry is no longer in the group",
                         &s2, &g2, &p2, &src2);
        free(s2);
        free(g2);
        free(src2);
    }
    free(stream);
    free(group);
    free(src);
    if (rd == SL_UNAVAILABLE) return SL_UNAVAILABLE;
    if (rd == SL_NOT_FOUND) {
        *answer = problem_new("conflict", "the event is no longer held by its group (was the "
                                          "group deleted?); it stays open — discard it to clear");
        refused = SL_REFUSED;
    }
    if (refused != SL_OK) return refused;
    return dead_letters_get(conn, tenant, id, answer);
}

sl_status dead_letters_discard(PGconn **conn, const char *tenant, const char *id, json_t **answer)
{
    if (!id_valid(id)) return SL_NOT_FOUND;
    char *stream = NULL, *group = NULL, *source = NULL;
    long long position = 0;
    sl_status rc = transition(conn, tenant, id, "'open', 'reprocessing'", "discarded",
                              "discarded by an operator", &stream, &group, &position, &source);
    if (rc == SL_OK && group && !strcmp(source, "group"))
        (void)groups_ack(tenant, stream, group, position);
    free(stream);
    free(group);
    free(source);
    if (rc == SL_NOT_FOUND) {
        json_t *cur = NULL;
        sl_status g = dead_letters_get(conn, tenant, id, &cur);
        if (g != SL_OK) return g;
        json_decref(cur);
        *answer = problem_new("conflict", "this dead letter is no longer open");
        return SL_REFUSED;
    }
    if (rc != SL_OK) return rc;
    return dead_letters_get(conn, tenant, id, answer);
}

/* ------------------------------------------------------------------ batch redrive */

typedef struct redrive {
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char **ids;
    size_t n, next;
    int per_tick; /* reprocessed per tick */
    int tick_ms;  /* between ticks */
} redrive;

static void redrive_step(PGconn **conn, void *arg)
{
    redrive *d = arg;
    for (int i = 0; i < d->per_tick && d->next < d->n && *conn; i++, d->next++) {
        json_t *out = NULL;
        sl_status rc = dead_letters_reprocess(conn, d->tenant, d->ids[d->next], &out);
        json_decref(out);
        if (rc == SL_UNAVAILABLE) break; /* store trouble: try this one again next tick */
    }
    if (d->next < d->n && pool_submit_after(d->tick_ms, redrive_step, d) == 0) return;
    if (d->next < d->n)
        log_warn("dead_letters", "batch reprocess stopped early",
                 json_pack("{s:I,s:I}", "done", (json_int_t)d->next, "total", (json_int_t)d->n));
    for (size_t i = 0; i < d->n; i++) free(d->ids[i]);
    free(d->ids);
    free(d);
}

sl_status dead_letters_reprocess_batch(PGconn **conn, const char *tenant, json_t *req,
                                       json_t **answer)
{
    json_t *ids = json_object_get(req, "ids"), *age = json_object_get(req, "max_age_ms");
    json_t *rate = json_object_get(req, "max_per_second"), *dry = json_object_get(req, "dry_run");
    json_t *stream = json_object_get(req, "stream"), *group = json_object_get(req, "group");
    char *ids_json = ids ? json_dumps(ids, JSON_COMPACT) : NULL;
    char age_text[24];
    if (age) snprintf(age_text, sizeof age_text, "%lld", (long long)json_integer_value(age));
    const char *p[] = {tenant, json_string_value(stream), json_string_value(group),
                       age ? age_text : NULL, ids_json};
    PGresult *r = db_exec(conn,
                          "SELECT " DL_COLUMNS " FROM dead_letters WHERE tenant_id = $1 AND "
                          "source = 'group' AND status = 'open' AND ($2::text IS NULL OR stream = "
                          "$2) AND ($3::text IS NULL OR group_name = $3) AND ($4::bigint IS NULL "
                          "OR last_failed_at >= now() - make_interval(secs => $4::bigint / 1000.0)) "
                          "AND ($5::jsonb IS NULL OR id::text IN (SELECT x #>> '{}' FROM "
                          "jsonb_array_elements($5::jsonb) x)) ORDER BY id LIMIT 10000",
                          5, p, DL_TIMEOUT_MS);
    free(ids_json);
    if (!db_ok(r)) {
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    int n = PQntuples(r);
    json_t *list = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(list, dl_row(r, i));
    if (dry && json_is_true(dry)) {
        *answer = json_pack("{s:b,s:i,s:o}", "dry_run", 1, "count", n, "dead_letters", list);
        PQclear(r);
        return SL_OK;
    }
    int per_second = rate ? (int)json_integer_value(rate) : 100;
    redrive *d = xcalloc(1, sizeof *d);
    snprintf(d->tenant, sizeof d->tenant, "%s", tenant);
    d->ids = xcalloc((size_t)n + 1, sizeof *d->ids);
    json_t *id_list = json_array();
    for (int i = 0; i < n; i++) {
        d->ids[i] = xstrdup(PQgetvalue(r, i, 0));
        json_array_append_new(id_list, json_string(d->ids[i]));
    }
    d->n = (size_t)n;
    d->per_tick = per_second >= 10 ? per_second / 10 : 1;
    d->tick_ms = per_second >= 10 ? 100 : 1000 / per_second;
    PQclear(r);
    json_decref(list);
    int sched = n ? pool_submit_after(0, redrive_step, d) : -1;
    if (sched != 0) {
        for (size_t i = 0; i < d->n; i++) free(d->ids[i]);
        free(d->ids);
        free(d);
    }
    *answer = json_pack("{s:b,s:i,s:i,s:o}", "dry_run", 0, "count", n, "max_per_second",
                        per_second, "ids", id_list);
    return SL_OK;
}
