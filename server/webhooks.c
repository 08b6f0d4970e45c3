/*
 * webhooks.c — the webhook registry (see webhooks.h).
 */
#include "webhooks.h"
#include "db.h"
#include "deliveries.h"
#include "destinations.h"
#include "eventlog.h"
#include "filter.h"
#include "log.h"
#include "mem.h"
#include "problem.h"
#include "webhook_sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEBHOOKS_TIMEOUT_MS 10000
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static const sluice_config *cfg;

/* Tells the delivering instance that a definition changed (webhook_delivery.c listens). */
static void notify_change(PGconn **conn)
{
    PGresult *r = db_exec(conn, "NOTIFY sluice_webhooks", 0, NULL, WEBHOOKS_TIMEOUT_MS);
    PQclear(r);
}

/* Runs a statement that changes one row of a webhook: SL_OK (and a NOTIFY to the delivering
 * instance when `notify`), SL_NOT_FOUND when no row changed, SL_UNAVAILABLE. */
static sl_status change_one(PGconn **conn, const char *sql, int n, const char *const *p,
                            bool notify)
{
    PGresult *r = db_exec(conn, sql, n, p, WEBHOOKS_TIMEOUT_MS);
    sl_status rc = !db_ok(r) ? SL_UNAVAILABLE : strcmp(PQcmdTuples(r), "1") == 0 ? SL_OK
                                                                                 : SL_NOT_FOUND;
    PQclear(r);
    if (rc == SL_OK && notify) notify_change(conn);
    return rc;
}

void webhooks_init(const sluice_config *c)
{
    cfg = c;
}

/* The members a webhook's filter may have. */
static const char *const filter_members[] = {"streams", "types", "where", NULL};

/* The webhook as the API shows it (no secret), with its status. */
#define SHOW_COLUMNS                                                                               \
    "w.name, w.url, w.filter::text, w.max_deliveries, w.strategy, w.base_delay_ms, "              \
    "w.max_delay_ms, w.jitter, w.timeout_ms, w.max_per_second, w.ordering, w.headers::text, "     \
    "w.status, w.paused_reason, w.checkpoint, w.delivered, w.failed, " TS("w.last_success_at")    \
    ", w.last_failure::text, " TS("w.created_at") ", "                                             \
    "(SELECT count(*) FROM webhook_retries r WHERE r.tenant_id = w.tenant_id AND r.webhook = "     \
    "w.name AND r.attempts > 0), "                                                                 \
    "(SELECT " TS("min(r.next_at)") " FROM webhook_retries r WHERE r.tenant_id = w.tenant_id "     \
    "AND r.webhook = w.name), "                                                                    \
    "(SELECT count(*) FROM dead_letters d WHERE d.tenant_id = w.tenant_id AND d.source = "         \
    "'webhook:' || w.name AND d.status IN ('open', 'reprocessing')), "                            \
    "(SELECT count(*) FROM (SELECT 1 FROM events e WHERE e.tenant_id = w.tenant_id AND "          \
    "e.position > w.checkpoint LIMIT 1000000) x)"

static json_t *text_or_null(PGresult *r, int i, int c)
{
    return PQgetisnull(r, i, c) ? json_null() : json_string(PQgetvalue(r, i, c));
}

static json_t *json_or_null(PGresult *r, int i, int c)
{
    json_t *v = PQgetisnull(r, i, c) ? NULL : json_loads(PQgetvalue(r, i, c), 0, NULL);
    return v ? v : json_null();
}

static long long ll(PGresult *r, int i, int c)
{
    return strtoll(PQgetvalue(r, i, c), NULL, 10);
}

static json_t *show_row(PGresult *r, int i)
{
    /* lag: the tenant's events after the checkpoint (counted to a million): positions are
     * shared by every tenant, so a difference of positions would show others' traffic */
    long long checkpoint = ll(r, i, 14), lag = ll(r, i, 23);
    json_t *w = json_pack("{s:s,s:s,s:o,s:i,s:{s:s,s:i,s:i,s:b},s:i,s:o,s:s,s:o,s:s,s:o}",
                          "name", PQgetvalue(r, i, 0), "url", PQgetvalue(r, i, 1), "filter",
                          json_or_null(r, i, 2), "max_deliveries", atoi(PQgetvalue(r, i, 3)),
                          "retry", "strategy", PQgetvalue(r, i, 4), "base_delay_ms",
                          atoi(PQgetvalue(r, i, 5)), "max_delay_ms", atoi(PQgetvalue(r, i, 6)),
                          "jitter", PQgetvalue(r, i, 7)[0] == 't', "timeout_ms",
                          atoi(PQgetvalue(r, i, 8)), "max_per_second",
                          PQgetisnull(r, i, 9) ? json_null() : json_integer(ll(r, i, 9)),
                          "ordering", PQgetvalue(r, i, 10), "headers", json_or_null(r, i, 11),
                          "status", PQgetvalue(r, i, 12), "paused_reason", text_or_null(r, i, 13));
    json_object_set_new(w, "position", json_integer(checkpoint));
    json_object_set_new(w, "lag", json_integer(lag));
    json_object_set_new(w, "delivered", json_integer(ll(r, i, 15)));
    json_object_set_new(w, "failed", json_integer(ll(r, i, 16)));
    json_object_set_new(w, "last_success_at", text_or_null(r, i, 17));
    json_object_set_new(w, "last_failure", json_or_null(r, i, 18));
    json_object_set_new(w, "created_at", text_or_null(r, i, 19));
    json_object_set_new(w, "retrying", json_integer(ll(r, i, 20)));
    json_object_set_new(w, "next_attempt_at", text_or_null(r, i, 21));
    json_object_set_new(w, "dead_letters", json_integer(ll(r, i, 22)));
    return w;
}

/* The webhooks of `tenant` (all, or the one named), shown. NULL when PostgreSQL failed. */
static PGresult *select_show(PGconn **conn, const char *tenant, const char *name)
{
    const char *p[] = {tenant, name};
    PGresult *r = db_exec(conn,
                          name ? "SELECT " SHOW_COLUMNS " FROM webhooks w WHERE w.tenant_id = $1 "
                                 "AND w.name = $2"
                               : "SELECT " SHOW_COLUMNS " FROM webhooks w WHERE w.tenant_id = $1 "
                                 "ORDER BY w.name",
                          name ? 2 : 1, p, WEBHOOKS_TIMEOUT_MS);
    if (db_ok(r)) return r;
    PQclear(r);
    return NULL;
}

sl_status webhooks_list(PGconn **conn, const char *tenant, json_t **answer)
{
    PGresult *r = select_show(conn, tenant, NULL);
    if (!r) return SL_UNAVAILABLE;
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++) json_array_append_new(list, show_row(r, i));
    PQclear(r);
    *answer = json_pack("{s:o}", "webhooks", list);
    return SL_OK;
}

sl_status webhooks_get(PGconn **conn, const char *tenant, const char *name, json_t **answer)
{
    PGresult *r = select_show(conn, tenant, name);
    if (!r) return SL_UNAVAILABLE;
    sl_status rc = PQntuples(r) == 1 ? SL_OK : SL_NOT_FOUND;
    if (rc == SL_OK) *answer = show_row(r, 0);
    PQclear(r);
    return rc;
}

/* The first checkpoint of a new webhook: "$" (the default) the log's head, "0" or a position
 * as given. -1 when PostgreSQL failed. */
static long long start_checkpoint(PGconn **conn, json_t *start)
{
    if (json_is_integer(start)) return (long long)json_integer_value(start);
    const char *s = json_string_value(start);
    if (s && strcmp(s, "$") != 0) return strtoll(s, NULL, 10);
    return eventlog_head(conn, WEBHOOKS_TIMEOUT_MS);
}

/* Checks the request's filter and URL; SL_OK, or SL_REFUSED with the problem. */
static sl_status check_request(json_t *req, json_t **answer)
{
    json_t *fj = json_object_get(req, "filter");
    filter f = {0};
    filter_error err;
    if (filter_parse_json(&f, json_is_null(fj) ? NULL : fj, filter_members, NULL, &err) < 0) {
        *answer = problem_newf(err.where ? "invalid_filter" : "invalid_request", "filter: %s",
                               err.message);
        return SL_REFUSED;
    }
    filter_dispose(&f);
    char why[300];
    dest_verdict v = destinations_url_check(json_string_value(json_object_get(req, "url")),
                                            cfg->webhook_allow_private, why, sizeof why);
    if (v == DEST_OK) return SL_OK;
    *answer = problem_newf(v == DEST_FORBIDDEN ? "forbidden_destination" : "invalid_request",
                           "url: %s", why);
    return SL_REFUSED;
}

sl_status webhooks_create(PGconn **conn, const char *tenant, json_t *req, json_t **answer)
{
    sl_status rc = check_request(req, answer);
    if (rc != SL_OK) return rc;
    char secret[WEBHOOK_SECRET_MAX] = {0};
    if (!webhook_secret_new(secret)) return SL_UNAVAILABLE;
    long long checkpoint = start_checkpoint(conn, json_object_get(req, "start"));
    if (checkpoint < 0) return SL_UNAVAILABLE;
    json_t *retry = json_object_get(req, "retry"), *v;
    char md[16] = "5", base[16] = "1000", max[16] = "30000", timeout[16] = "10000", cp[24];
    char rate[16] = "";
    if ((v = json_object_get(req, "max_deliveries"))) snprintf(md, sizeof md, "%lld", (long long)json_integer_value(v));
    if ((v = json_object_get(retry, "base_delay_ms"))) snprintf(base, sizeof base, "%lld", (long long)json_integer_value(v));
    if ((v = json_object_get(retry, "max_delay_ms"))) snprintf(max, sizeof max, "%lld", (long long)json_integer_value(v));
    if ((v = json_object_get(req, "timeout_ms"))) snprintf(timeout, sizeof timeout, "%lld", (long long)json_integer_value(v));
    if ((v = json_object_get(req, "max_per_second")) && json_is_integer(v))
        snprintf(rate, sizeof rate, "%lld", (long long)json_integer_value(v));
    snprintf(cp, sizeof cp, "%lld", checkpoint);
    json_t *fj = json_object_get(req, "filter"), *hj = json_object_get(req, "headers");
    char *filter_text = fj && !json_is_null(fj) ? json_dumps(fj, JSON_COMPACT) : NULL;
    char *headers_text = hj ? json_dumps(hj, JSON_COMPACT) : xstrdup("{}");
    json_t *jit = json_object_get(retry, "jitter");
    const char *strategy = json_string_value(json_object_get(retry, "strategy"));
    const char *ordering = json_string_value(json_object_get(req, "ordering"));
    const char *name = json_string_value(json_object_get(req, "name"));
    const char *p[] = {tenant,
                       name,
                       json_string_value(json_object_get(req, "url")),
                       filter_text,
                       md,
                       strategy ? strategy : "exponential",
                       base,
                       max,
                       jit && json_is_false(jit) ? "f" : "t",
                       timeout,
                       rate[0] ? rate : NULL,
                       ordering ? ordering : "none",
                       headers_text,
                       secret,
                       cp};
    PGresult *r = db_exec(conn,
                          "INSERT INTO webhooks (tenant_id, name, url, filter, max_deliveries, "
                          "strategy, base_delay_ms, max_delay_ms, jitter, timeout_ms, "
                          "max_per_second, ordering, headers, secret, checkpoint) VALUES ($1, $2, "
                          "$3, $4::jsonb, $5::int, $6, $7::int, $8::int, $9::boolean, $10::int, "
                          "$11::int, $12, $13::jsonb, $14, $15::bigint) ON CONFLICT DO NOTHING",
                          15, p, WEBHOOKS_TIMEOUT_MS);
    free(filter_text);
    free(headers_text);
    rc = !db_ok(r) ? SL_UNAVAILABLE : strcmp(PQcmdTuples(r), "1") == 0 ? SL_OK : SL_CONFLICT;
    PQclear(r);
    if (rc != SL_OK) return rc;
    notify_change(conn);
    rc = webhooks_get(conn, tenant, name, answer);
    if (rc == SL_OK) json_object_set_new(*answer, "secret", json_string(secret));
    log_info("webhooks", "webhook created", json_pack("{s:s,s:s}", "tenant", tenant, "name", name));
    return rc;
}

sl_status webhooks_delete(PGconn **conn, const char *tenant, const char *name)
{
    const char *p[] = {tenant, name};
    return change_one(conn, "DELETE FROM webhooks WHERE tenant_id = $1 AND name = $2", 2, p, true);
}

sl_status webhooks_pause(PGconn **conn, const char *tenant, const char *name, bool paused,
                         json_t **answer)
{
    const char *p[] = {tenant, name};
    sl_status rc = change_one(conn,
                              paused ? "UPDATE webhooks SET status = 'paused', paused_reason = "
                                       "'paused by an operator' WHERE tenant_id = $1 AND name = $2"
                                     : "UPDATE webhooks SET status = 'active', paused_reason = "
                                       "NULL, failing_since = NULL WHERE tenant_id = $1 AND name = $2",
                              2, p, true);
    return rc == SL_OK ? webhooks_get(conn, tenant, name, answer) : rc;
}

sl_status webhooks_rotate_secret(PGconn **conn, const char *tenant, const char *name,
                                 json_t **answer)
{
    char secret[WEBHOOK_SECRET_MAX] = {0};
    if (!webhook_secret_new(secret)) return SL_UNAVAILABLE;
    const char *p[] = {tenant, name, secret};
    sl_status rc = change_one(conn,
                              "UPDATE webhooks SET previous_secret = secret, previous_until = now() "
                              "+ interval '24 hours', secret = $3 WHERE tenant_id = $1 AND name = $2",
                              3, p, true);
    if (rc == SL_OK) *answer = json_pack("{s:s,s:s}", "name", name, "secret", secret);
    return rc;
}

sl_status webhooks_redeliver(PGconn **conn, const char *tenant, const char *name,
                             long long position, const char *dead_letter_id)
{
    char pos[24];
    snprintf(pos, sizeof pos, "%lld", position);
    const char *p[] = {tenant, name, pos, dead_letter_id};
    return change_one(conn,
                      "INSERT INTO webhook_retries (tenant_id, webhook, position, attempts, "
                      "next_at, dead_letter_id) SELECT $1, $2, $3::bigint, 0, now(), $4::bigint "
                      "WHERE EXISTS (SELECT 1 FROM webhooks WHERE tenant_id = $1 AND name = $2) "
                      "ON CONFLICT (tenant_id, webhook, position) DO UPDATE SET dead_letter_id = "
                      "EXCLUDED.dead_letter_id",
                      4, p, false);
}
