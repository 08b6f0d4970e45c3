/*
 * dead_letters.c — dead-letter administration (see dead_letters.h).
 */
#include "dead_letters.h"
#include "webhooks.h"
#include "db.h"
#include "envelope.h"
#include "groups.h"
#include "log.h"
#include "mem.h"
#include "pool.h"
#include "problem.h"
#include "projections.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DL_TIMEOUT_MS 10000

/* A letter's source as the API shows it: group:<name>, projection:<name>, webhook:<name>. */
#define DL_SOURCE                                                                              \
    "CASE WHEN source = 'group' THEN 'group:' || coalesce(group_name, '') ELSE source END"
/* The letters a reprocess can move. */
#define DL_REPROCESSABLE                                                                       \
    "(source = 'group' OR source LIKE 'projection:%' OR source LIKE 'webhook:%')"

#define DL_COLUMNS                                                                             \
    "id, " DL_SOURCE ", stream, group_name, consumer, event_id, event_position, type, "        \
    "delivery_count, status, errors::text, "                                                   \
    "to_char(first_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "      \
    "to_char(last_failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The kinds of source, as a filter names them. */
static const char *const kinds[] = {"group", "projection", "webhook"};

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

/* ------------------------------------------------------------------ sources */

/* The kind of `source` (an index into kinds[]) and, in *name, what follows its colon (NULL
 * for a kind alone). -1 when it is neither. */
static int source_split(const char *source, const char **name)
{
    *name = NULL;
    for (int i = 0; i < (int)(sizeof kinds / sizeof kinds[0]); i++) {
        size_t n = strlen(kinds[i]);
        if (strncmp(source, kinds[i], n) != 0) continue;
        if (source[n] == '\0') return i;
        if (source[n] == ':' && source[n + 1] != '\0') {
            *name = source + n + 1;
            return i;
        }
    }
    return -1;
}

bool dead_letters_source_valid(const char *source)
{
    const char *name;
    return source_split(source, &name) >= 0;
}

/* Appends the condition for a source filter (valid) to `sql`, binding into vals[*n]. */
static void where_source(buf *sql, const char *source, const char **vals, int *n)
{
    const char *name;
    int kind = source_split(source, &name);
    if (kind == 0) {
        buf_puts(sql, " AND source = 'group'");
        if (name) {
            vals[(*n)++] = name;
            buf_printf(sql, " AND group_name = $%d", *n);
        }
    } else if (name) {
        vals[(*n)++] = source; /* stored as it is shown */
        buf_printf(sql, " AND source = $%d", *n);
    } else {
        buf_printf(sql, " AND source LIKE '%s:%%'", kinds[kind]); /* a constant of kinds[] */
    }
}

/* ------------------------------------------------------------------ list, get */

sl_status dead_letters_list(PGconn **conn, const char *tenant, json_t *f, json_t **answer)
{
    const char *vals[16];
    int n = 0;
    buf sql;
    buf_init(&sql);
    buf_puts(&sql, "SELECT " DL_COLUMNS " FROM dead_letters WHERE tenant_id = $1");
    vals[n++] = tenant;
    static const char *const eq[][2] = {
        {"stream", "stream"}, {"group", "group_name"}, {"type", "type"}, {"event_id", "event_id"}};
    for (size_t i = 0; i < sizeof eq / sizeof eq[0]; i++) {
        const char *v = fstr(f, eq[i][0]);
        if (!v) continue;
        vals[n++] = v;
        buf_printf(&sql, " AND %s = $%d", eq[i][1], n);
    }
    if (fstr(f, "source")) where_source(&sql, fstr(f, "source"), vals, &n);
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

static bool id_valid(const char *id)
{
    return *id && strlen(id) < 19 && strspn(id, "0123456789") == strlen(id);
}

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

/* ------------------------------------------------------------------ transitions */

/* Moves one dead letter from `from` to `to` status, appending `note` to its history; with
 * `expect` ≥ 0, only while its history has that many entries. SL_OK with the row's group
 * fields in the out parameters (caller frees), SL_NOT_FOUND when it was not in `from` (or
 * has moved since), or SL_UNAVAILABLE. */
static sl_status transition(PGconn **conn, const char *tenant, const char *id, const char *from_sql,
                            const char *to, const char *note, int expect, char **stream,
                            char **group, long long *position, char **source)
{
    char expect_text[16];
    snprintf(expect_text, sizeof expect_text, "%d", expect);
    const char *p[] = {tenant, id, to, note, expect_text};
    char sql[700];
    snprintf(sql, sizeof sql,
             "UPDATE dead_letters SET status = $3, history = history || jsonb_build_array("
             "jsonb_build_object('time', now(), 'status', $3::text, 'note', $4::text)) WHERE "
             "tenant_id = $1 AND id = $2::bigint AND status IN (%s) AND ($5::int < 0 OR "
             "jsonb_array_length(history) = $5::int) RETURNING stream, group_name, "
             "event_position, source",
             from_sql);
    PGresult *r = db_exec(conn, sql, 5, p, DL_TIMEOUT_MS);
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

/* transition() when only whether it moved matters. */
static sl_status move(PGconn **conn, const char *tenant, const char *id, const char *from_sql,
                      const char *to, const char *note, int expect)
{
    char *stream = NULL, *group = NULL, *source = NULL;
    long long position = 0;
    sl_status rc = transition(conn, tenant, id, from_sql, to, note, expect, &stream, &group,
                              &position, &source);
    free(stream);
    free(group);
    free(source);
    return rc;
}

/* ------------------------------------------------------------------ reprocess */

/* A group's letter: open → reprocessing, then its entry is claimed back to a worker of the
 * group (groups_redeliver); the groups sweeper resolves it once acknowledged. */
static sl_status reprocess_group(PGconn **conn, const char *tenant, const char *id, int expect,
                                 json_t **answer)
{
    char *stream = NULL, *group = NULL, *src = NULL;
    long long position = 0;
    sl_status rc = transition(conn, tenant, id, "'open'", "reprocessing", "reprocess requested",
                              expect, &stream, &group, &position, &src);
    if (rc == SL_NOT_FOUND)
        return dead_letters_get(conn, tenant, id, answer); /* raced: already moving */
    if (rc != SL_OK) return rc;
    sl_status rd = groups_redeliver(tenant, stream, group, position);
    free(stream);
    free(group);
    free(src);
    if (rd != SL_OK)
        (void)move(conn, tenant, id, "'reprocessing'", "open",
                   rd == SL_UNAVAILABLE ? "reprocess failed: Redis unreachable"
                                        : "reprocess failed: the entry is no longer in the group",
                   -1);
    if (rd == SL_UNAVAILABLE) return SL_UNAVAILABLE;
    if (rd == SL_NOT_FOUND) {
        *answer = problem_new("conflict", "the event is no longer held by its group (was the "
                                          "group deleted?); it stays open — discard it to clear");
        return SL_REFUSED;
    }
    return dead_letters_get(conn, tenant, id, answer);
}

/* A webhook's letter: open → reprocessing, and queued for another delivery by its webhook
 * (webhooks_redeliver), which resolves it when delivered or dead-letters it again. */
static sl_status reprocess_webhook(PGconn **conn, const char *tenant, const char *id,
                                   const char *webhook, int expect, json_t **answer)
{
    char *stream = NULL, *group = NULL, *src = NULL;
    long long position = 0;
    sl_status rc = transition(conn, tenant, id, "'open'", "reprocessing", "reprocess requested",
                              expect, &stream, &group, &position, &src);
    free(stream);
    free(group);
    free(src);
    if (rc == SL_NOT_FOUND)
        return dead_letters_get(conn, tenant, id, answer); /* raced: already moving */
    if (rc != SL_OK) return rc;
    sl_status rd = webhooks_redeliver(conn, tenant, webhook, position, id);
    if (rd != SL_OK)
        (void)move(conn, tenant, id, "'reprocessing'", "open",
                   rd == SL_UNAVAILABLE ? "reprocess failed: PostgreSQL unreachable"
                                        : "reprocess failed: the webhook no longer exists",
                   -1);
    if (rd == SL_UNAVAILABLE) return SL_UNAVAILABLE;
    if (rd == SL_NOT_FOUND) {
        *answer = problem_new("conflict", "the webhook was deleted; the letter stays open — "
                                          "discard it to clear");
        return SL_REFUSED;
    }
    return dead_letters_get(conn, tenant, id, answer);
}

static void rollback(PGconn **conn)
{
    if (!*conn) return;
    PGresult *r = db_exec(conn, "ROLLBACK", 0, NULL, DL_TIMEOUT_MS);
    PQclear(r);
}

/* Records the outcome of reapplying a projection's letter (in its transaction): resolved,
 * or open again with `why` appended to its errors. */
static bool record_reapplied(PGconn **conn, const char *tenant, const char *id,
                             const char *projection, const char *why)
{
    char *resolved = xasprintf("reapplied to projection %s", projection);
    char *failed = why ? xasprintf("reprocess failed: %s", why) : NULL;
    const char *p[] = {tenant, id, why ? failed : resolved, why};
    PGresult *r = db_exec(
        conn,
        why ? "UPDATE dead_letters SET errors = errors || jsonb_build_array(jsonb_build_object("
              "'time', now(), 'error', $4::text)), last_failed_at = now(), history = history || "
              "jsonb_build_array(jsonb_build_object('time', now(), 'status', 'reprocessing', "
              "'note', 'reprocess requested'), jsonb_build_object('time', now(), 'status', "
              "'open', 'note', $3::text)) WHERE tenant_id = $1 AND id = $2::bigint"
            : "UPDATE dead_letters SET status = 'resolved', history = history || "
              "jsonb_build_array(jsonb_build_object('time', now(), 'status', 'reprocessing', "
              "'note', 'reprocess requested'), jsonb_build_object('time', now(), 'status', "
              "'resolved', 'note', $3::text)) WHERE tenant_id = $1 AND id = $2::bigint",
        why ? 4 : 3, p, DL_TIMEOUT_MS);
    bool ok = db_ok(r);
    PQclear(r);
    free(resolved);
    free(failed);
    return ok;
}

/* A projection's letter: in one transaction, lock it while open (a concurrent reprocess
 * waits, then finds it moved), reapply its event (projections_reapply) and record the
 * outcome, so the state changes exactly when the letter is resolved. */
static sl_status reprocess_projection(PGconn **conn, const char *tenant, const char *id,
                                      const char *projection, int expect, json_t **answer)
{
    char expect_text[16];
    snprintf(expect_text, sizeof expect_text, "%d", expect);
    const char *p[] = {tenant, id, expect_text};
    PGresult *b = db_exec(conn, "BEGIN", 0, NULL, DL_TIMEOUT_MS);
    bool ok = db_ok(b);
    PQclear(b);
    if (!ok) return SL_UNAVAILABLE;
    PGresult *r = db_exec(conn,
                          "SELECT event_position, first_failed_at::text FROM dead_letters WHERE "
                          "tenant_id = $1 AND id = $2::bigint AND status = 'open' AND ($3::int < "
                          "0 OR jsonb_array_length(history) = $3::int) FOR UPDATE",
                          3, p, DL_TIMEOUT_MS);
    if (!db_ok(r) || PQntuples(r) != 1) {
        ok = db_ok(r);
        PQclear(r);
        rollback(conn);
        return ok ? dead_letters_get(conn, tenant, id, answer) /* moved meanwhile */
                  : SL_UNAVAILABLE;
    }
    char *why = NULL;
    sl_status rc = projections_reapply(conn, tenant, projection,
                                       strtoll(PQgetvalue(r, 0, 0), NULL, 10),
                                       PQgetvalue(r, 0, 1), &why);
    PQclear(r);
    if (rc == SL_OK && record_reapplied(conn, tenant, id, projection, why)) {
        PGresult *c = db_exec(conn, "COMMIT", 0, NULL, DL_TIMEOUT_MS);
        ok = db_ok(c);
        PQclear(c);
        free(why);
        return ok ? dead_letters_get(conn, tenant, id, answer) : SL_UNAVAILABLE;
    }
    free(why);
    rollback(conn);
    if (rc == SL_CONFLICT) {
        *answer = problem_newf("conflict",
                               "projection %s has not reached this event since it was reset: it "
                               "will apply it itself, and dead-letter it again if it fails",
                               projection);
        return SL_REFUSED;
    }
    if (rc == SL_NOT_FOUND) {
        *answer = problem_newf("conflict",
                               "projection %s no longer exists as it was when this event failed, "
                               "or the event is no longer stored; discard it to clear it",
                               projection);
        return SL_REFUSED;
    }
    return SL_UNAVAILABLE;
}

/* Reprocesses one letter by where it failed. `expect` ≥ 0: only while its history has that
 * many entries (what a batch saw when it selected it); otherwise the letter answers as it
 * stands. */
static sl_status reprocess(PGconn **conn, const char *tenant, const char *id, int expect,
                           json_t **answer)
{
    if (!id_valid(id)) return SL_NOT_FOUND;
    json_t *cur = NULL;
    sl_status rc = dead_letters_get(conn, tenant, id, &cur);
    if (rc != SL_OK) return rc;
    const char *status = json_string_value(json_object_get(cur, "status"));
    const char *name;
    int kind = source_split(json_string_value(json_object_get(cur, "source")), &name);
    if (!strcmp(status, "discarded")) {
        json_decref(cur);
        *answer = problem_new("conflict", "this dead letter was discarded");
        return SL_REFUSED;
    }
    bool moved = expect >= 0 && json_array_size(json_object_get(cur, "history")) != (size_t)expect;
    if (strcmp(status, "open") != 0 || moved) {
        *answer = cur; /* reprocessing twice delivers once: answer with where it stands */
        return SL_OK;
    }
    if (kind == 0) {
        json_decref(cur);
        return reprocess_group(conn, tenant, id, expect, answer);
    }
    if (kind == 2 && name) {
        char *webhook = xstrdup(name);
        json_decref(cur);
        rc = reprocess_webhook(conn, tenant, id, webhook, expect, answer);
        free(webhook);
        return rc;
    }
    if (kind == 1 && name) {
        char *projection = xstrdup(name);
        json_decref(cur);
        rc = reprocess_projection(conn, tenant, id, projection, expect, answer);
        free(projection);
        return rc;
    }
    json_decref(cur);
    *answer = problem_new("conflict", "Sluice does not reprocess this kind of dead letter yet; "
                                      "discard it to clear it");
    return SL_REFUSED;
}

sl_status dead_letters_reprocess(PGconn **conn, const char *tenant, const char *id, json_t **answer)
{
    return reprocess(conn, tenant, id, -1, answer);
}

sl_status dead_letters_discard(PGconn **conn, const char *tenant, const char *id, json_t **answer)
{
    if (!id_valid(id)) return SL_NOT_FOUND;
    char *stream = NULL, *group = NULL, *source = NULL;
    long long position = 0;
    sl_status rc = transition(conn, tenant, id, "'open', 'reprocessing'", "discarded",
                              "discarded by an operator", -1, &stream, &group, &position, &source);
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

/* A running redrive. Its letters are claimed (redrive_until = `until`) from selection until
 * the last is done, so another batch does not select them meanwhile. */
typedef struct redrive {
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char until[48]; /* the claim's redrive_until, as PostgreSQL wrote it */
    char **ids;     /* owned */
    int *expect;    /* owned: each letter's history length when selected */
    size_t n, next;
    int per_tick; /* reprocessed per tick */
    int tick_ms;  /* between ticks */
} redrive;

static void redrive_free(redrive *d)
{
    for (size_t i = 0; i < d->n; i++) free(d->ids[i]);
    free(d->ids);
    free(d->expect);
    free(d);
}

/* Gives up the redrive's claim on its letters (if PostgreSQL cannot be reached, the claim
 * lapses at redrive_until). */
static void release(PGconn **conn, const redrive *d)
{
    if (!*conn) return;
    buf ids;
    buf_init(&ids);
    buf_puts(&ids, "{");
    for (size_t i = 0; i < d->n; i++) buf_printf(&ids, "%s%s", i ? "," : "", d->ids[i]);
    buf_puts(&ids, "}");
    const char *p[] = {d->tenant, d->until, ids.data};
    PGresult *r = db_exec(conn,
                          "UPDATE dead_letters SET redrive_until = NULL WHERE tenant_id = $1 AND "
                          "redrive_until = $2::timestamptz AND id = ANY($3::bigint[])",
                          3, p, DL_TIMEOUT_MS);
    PQclear(r);
    buf_dispose(&ids);
}

static void redrive_step(PGconn **conn, void *arg)
{
    redrive *d = arg;
    for (int i = 0; i < d->per_tick && d->next < d->n && *conn; i++, d->next++) {
        json_t *out = NULL;
        sl_status rc = reprocess(conn, d->tenant, d->ids[d->next], d->expect[d->next], &out);
        json_decref(out);
        if (rc == SL_UNAVAILABLE) break; /* store trouble: try this one again next tick */
    }
    if (d->next < d->n && pool_submit_after(d->tick_ms, redrive_step, d) == 0) return;
    if (d->next < d->n)
        log_warn("dead_letters", "batch reprocess stopped early",
                 json_pack("{s:I,s:I}", "done", (json_int_t)d->next, "total", (json_int_t)d->n));
    release(conn, d);
    redrive_free(d);
}

/* The batch's selection as SQL conditions on dead_letters, binding into vals[*n] (the
 * tenant is $1): open, reprocessable, not claimed by a running redrive, and matching every
 * field of `req`. *ids and *event_ids get JSON texts bound (caller frees). */
static void where_batch(buf *sql, json_t *req, const char **vals, int *n, char *age,
                        size_t age_size, char **ids, char **event_ids)
{
    buf_puts(sql, "tenant_id = $1 AND status = 'open' AND " DL_REPROCESSABLE
                  " AND (redrive_until IS NULL OR redrive_until < now())");
    const char *stream = fstr(req, "stream"), *group = fstr(req, "group");
    if (stream) {
        vals[(*n)++] = stream;
        buf_printf(sql, " AND stream = $%d", *n);
    }
    if (group) {
        vals[(*n)++] = group;
        buf_printf(sql, " AND source = 'group' AND group_name = $%d", *n);
    }
    if (fstr(req, "source")) where_source(sql, fstr(req, "source"), vals, n);
    json_t *max_age = json_object_get(req, "max_age_ms");
    if (max_age) {
        snprintf(age, age_size, "%lld", (long long)json_integer_value(max_age));
        vals[(*n)++] = age;
        buf_printf(sql,
                   " AND last_failed_at >= now() - make_interval(secs => $%d::bigint / 1000.0)",
                   *n);
    }
    json_t *id_list = json_object_get(req, "ids"), *event_list = json_object_get(req, "event_ids");
    *ids = id_list ? json_dumps(id_list, JSON_COMPACT) : NULL;
    if (*ids) {
        vals[(*n)++] = *ids;
        buf_printf(sql,
                   " AND id::text IN (SELECT x #>> '{}' FROM jsonb_array_elements($%d::jsonb) x)",
                   *n);
    }
    *event_ids = event_list ? json_dumps(event_list, JSON_COMPACT) : NULL;
    if (*event_ids) {
        vals[(*n)++] = *event_ids;
        buf_printf(sql, " AND event_id IN (SELECT jsonb_array_elements_text($%d::jsonb))", *n);
    }
}

/* A dry run: the first `limit` + 1 letters the batch would select, oldest first. */
static PGresult *select_batch(PGconn **conn, const char *tenant, json_t *req, int limit)
{
    const char *vals[12] = {tenant};
    int n = 1;
    char age[24], lim[16];
    char *ids = NULL, *event_ids = NULL;
    buf sql;
    buf_init(&sql);
    buf_puts(&sql, "SELECT " DL_COLUMNS " FROM dead_letters WHERE ");
    where_batch(&sql, req, vals, &n, age, sizeof age, &ids, &event_ids);
    snprintf(lim, sizeof lim, "%d", limit);
    vals[n++] = lim;
    buf_printf(&sql, " ORDER BY id LIMIT $%d::int + 1", n);
    PGresult *r = db_exec(conn, sql.data, n, vals, DL_TIMEOUT_MS);
    buf_dispose(&sql);
    free(ids);
    free(event_ids);
    return r;
}

/* The real run: claims the first `limit` letters the batch selects until the redrive should
 * have reached the last (at `per_second`) plus a minute, and answers them oldest first, each
 * with its history length and the claim's redrive_until; row locks make a concurrent batch
 * skip them. Then *more says whether another letter matches. NULL on failure. */
static PGresult *claim_batch(PGconn **conn, const char *tenant, json_t *req, int limit,
                             int per_second, bool *more)
{
    const char *vals[14] = {tenant};
    int n = 1;
    char age[24], lim[16], rate[16];
    char *ids = NULL, *event_ids = NULL;
    buf where, sql;
    buf_init(&where);
    buf_init(&sql);
    where_batch(&where, req, vals, &n, age, sizeof age, &ids, &event_ids);
    int n_where = n;
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(rate, sizeof rate, "%d", per_second);
    vals[n++] = lim;
    vals[n++] = rate;
    buf_printf(&sql,
               "WITH s AS (SELECT id FROM dead_letters WHERE %s ORDER BY id LIMIT $%d::int FOR "
               "UPDATE), c AS (UPDATE dead_letters d SET redrive_until = now() + make_interval("
               "secs => 60 + (SELECT count(*) FROM s)::float8 / $%d::int) FROM s WHERE d.id = "
               "s.id RETURNING d.*) SELECT " DL_COLUMNS ", jsonb_array_length(history), "
               "redrive_until::text FROM c ORDER BY id",
               where.data, n - 1, n);
    PGresult *r = db_exec(conn, sql.data, n, vals, DL_TIMEOUT_MS);
    if (db_ok(r)) {
        buf_dispose(&sql);
        buf_init(&sql);
        buf_printf(&sql, "SELECT EXISTS (SELECT 1 FROM dead_letters WHERE %s)", where.data);
        PGresult *m = db_exec(conn, sql.data, n_where, vals, DL_TIMEOUT_MS);
        if (db_ok(m)) {
            *more = PQgetvalue(m, 0, 0)[0] == 't';
        } else {
            PQclear(r);
            r = NULL; /* its claim lapses at redrive_until */
        }
        PQclear(m);
    }
    buf_dispose(&where);
    buf_dispose(&sql);
    free(ids);
    free(event_ids);
    return r;
}

sl_status dead_letters_reprocess_batch(PGconn **conn, const char *tenant, json_t *req,
                                       json_t **answer)
{
    json_t *lim = json_object_get(req, "limit"), *rate = json_object_get(req, "max_per_second");
    int limit = lim ? (int)json_integer_value(lim) : DEAD_LETTERS_BATCH_MAX;
    int per_second = rate ? (int)json_integer_value(rate) : 100;
    if (json_is_true(json_object_get(req, "dry_run"))) {
        PGresult *r = select_batch(conn, tenant, req, limit);
        if (!db_ok(r)) {
            PQclear(r);
            return SL_UNAVAILABLE;
        }
        int n = PQntuples(r);
        bool more = n > limit;
        if (more) n = limit;
        json_t *list = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(list, dl_row(r, i));
        *answer = json_pack("{s:b,s:i,s:b,s:o}", "dry_run", 1, "count", n, "has_more", more,
                            "dead_letters", list);
        PQclear(r);
        return SL_OK;
    }
    bool more = false;
    PGresult *r = claim_batch(conn, tenant, req, limit, per_second, &more);
    if (!db_ok(r)) {
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    int n = PQntuples(r);
    redrive *d = xcalloc(1, sizeof *d);
    snprintf(d->tenant, sizeof d->tenant, "%s", tenant);
    if (n) snprintf(d->until, sizeof d->until, "%s", PQgetvalue(r, 0, 14));
    d->ids = xcalloc((size_t)n + 1, sizeof *d->ids);
    d->expect = xcalloc((size_t)n + 1, sizeof *d->expect);
    json_t *id_list = json_array();
    for (int i = 0; i < n; i++) {
        d->ids[i] = xstrdup(PQgetvalue(r, i, 0));
        d->expect[i] = atoi(PQgetvalue(r, i, 13));
        json_array_append_new(id_list, json_string(d->ids[i]));
    }
    d->n = (size_t)n;
    d->per_tick = per_second >= 10 ? per_second / 10 : 1;
    d->tick_ms = per_second >= 10 ? 100 : 1000 / per_second;
    PQclear(r);
    if (!n) {
        redrive_free(d);
    } else if (pool_submit_after(0, redrive_step, d) != 0) {
        release(conn, d);
        redrive_free(d);
        json_decref(id_list);
        return SL_UNAVAILABLE;
    }
    *answer = json_pack("{s:b,s:i,s:b,s:i,s:o}", "dry_run", 0, "count", n, "has_more", more,
                        "max_per_second", per_second, "ids", id_list);
    return SL_OK;
}
