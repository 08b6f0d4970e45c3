/*
 * streams.c — stream listings and settings (see streams.h).
 */
#include "streams.h"
#include "db.h"
#include "mem.h"
#include "problem.h"
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAMS_REDIS_TIMEOUT_MS 500

char *streams_redis_name(const sluice_config *cfg, const char *tenant, const char *stream)
{
    return strcmp(tenant, "default") == 0 ? xasprintf("%s%s", cfg->redis_prefix, stream)
                                          : xasprintf("%s%s:%s", cfg->redis_prefix, tenant, stream);
}

static json_t *reply_to_json(redisReply *r)
{
    if (!r) return json_null();
    switch (r->type) {
    case REDIS_REPLY_INTEGER: return json_integer(r->integer);
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: return json_stringn(r->str, r->len);
    case REDIS_REPLY_ARRAY: {
        /* XINFO GROUPS answers flat key/value arrays: make objects of them. */
        json_t *o = json_object();
        for (size_t i = 0; i + 1 < r->elements; i += 2)
            if (r->element[i]->type == REDIS_REPLY_STRING || r->element[i]->type == REDIS_REPLY_STATUS)
                json_object_set_new(o, r->element[i]->str, reply_to_json(r->element[i + 1]));
        return o;
    }
    default: return json_null();
    }
}

json_t *streams_redis_info(const sluice_config *cfg, const char *tenant, const char *stream)
{
    redis_conn *c = redis_connect(cfg->redis_url, STREAMS_REDIS_TIMEOUT_MS, "streams");
    if (!c) return json_null();
    char *name = streams_redis_name(cfg, tenant, stream);
    redisReply *len = redis_command(c, name, "XLEN %s", name);
    redisReply *groups = redis_command(c, name, "XINFO GROUPS %s", name);
    json_t *out = json_pack("{s:s,s:I,s:[]}", "name", name, "length",
                            (json_int_t)(len && len->type == REDIS_REPLY_INTEGER ? len->integer : 0),
                            "groups");
    if (groups && groups->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < groups->elements; i++)
            json_array_append_new(json_object_get(out, "groups"), reply_to_json(groups->element[i]));
    freeReplyObject(len);
    freeReplyObject(groups);
    free(name);
    redis_free(c);
    return out;
}

#define STREAM_STATS_SQL                                                                       \
    "SELECT s.stream, coalesce(e.n, 0), e.first_position, e.last_position, "                  \
    "to_char(e.last_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "           \
    "st.max_age_ms FROM (SELECT DISTINCT stream FROM events WHERE tenant_id = $1 %s "          \
    "UNION SELECT stream FROM stream_settings WHERE tenant_id = $1 %s) s "                     \
    "LEFT JOIN LATERAL (SELECT count(*) AS n, min(position) AS first_position, "               \
    "max(position) AS last_position, max(time) AS last_time FROM events "                      \
    "WHERE tenant_id = $1 AND stream = s.stream) e ON true "                                   \
    "LEFT JOIN stream_settings st ON st.tenant_id = $1 AND st.stream = s.stream "              \
    "ORDER BY s.stream"

static json_t *stream_row(PGresult *r, int i)
{
    json_t *retention = PQgetisnull(r, i, 5)
                            ? json_pack("{s:n}", "max_age_ms")
                            : json_pack("{s:I}", "max_age_ms",
                                        (json_int_t)strtoll(PQgetvalue(r, i, 5), NULL, 10));
    return json_pack("{s:s,s:I,s:o,s:o,s:o,s:o}", "stream", PQgetvalue(r, i, 0), "event_count",
                     (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10), "first_position",
                     PQgetisnull(r, i, 2) ? json_null()
                                          : json_integer(strtoll(PQgetvalue(r, i, 2), NULL, 10)),
                     "last_position",
                     PQgetisnull(r, i, 3) ? json_null()
                                          : json_integer(strtoll(PQgetvalue(r, i, 3), NULL, 10)),
                     "last_event_time",
                     PQgetisnull(r, i, 4) ? json_null() : json_string(PQgetvalue(r, i, 4)),
                     "retention", retention);
}

sl_status streams_list(PGconn **conn, int timeout_ms, const sluice_config *cfg, const char *tenant,
                       json_t **answer)
{
    (void)cfg;
    char sql[2048];
    snprintf(sql, sizeof sql, STREAM_STATS_SQL, "", "");
    const char *p[] = {tenant};
    PGresult *r = db_exec(conn, sql, 1, p, timeout_ms);
    if (!db_ok(r)) {
        if (r) db_log_error("streams", "listing streams failed", r);
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++) json_array_append_new(list, stream_row(r, i));
    PQclear(r);
    *answer = json_pack("{s:o}", "streams", list);
    return SL_OK;
}

sl_status streams_get(PGconn **conn, int timeout_ms, const sluice_config *cfg, const char *tenant,
                      const char *stream, json_t **answer)
{
    char sql[2048];
    snprintf(sql, sizeof sql, STREAM_STATS_SQL, "AND stream = $2", "AND stream = $2");
    const char *p[] = {tenant, stream};
    PGresult *r = db_exec(conn, sql, 2, p, timeout_ms);
    if (!db_ok(r)) {
        if (r) db_log_error("streams", "reading a stream failed", r);
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        return SL_NOT_FOUND;
    }
    *answer = stream_row(r, 0);
    PQclear(r);
    json_object_set_new(*answer, "redis", streams_redis_info(cfg, tenant, stream));
    return SL_OK;
}

sl_status streams_set(PGconn **conn, int timeout_ms, const char *tenant, const char *stream,
                      json_t *req, json_t **answer)
{
    json_t *ret = json_object_get(req, "retention");
    json_t *age = json_object_get(ret, "max_age_ms");
    bool ok = json_is_object(req) && json_object_size(req) == 1 && json_is_object(ret) &&
              json_object_size(ret) == 1 &&
              (json_is_null(age) || (json_is_integer(age) && json_integer_value(age) > 0));
    if (!ok) {
        *answer = problem_new("invalid_request",
                              "expected {\"retention\":{\"max_age_ms\": a positive integer, or "
                              "null to keep events forever}}");
        return SL_REFUSED;
    }
    char age_text[24];
    if (!json_is_null(age)) snprintf(age_text, sizeof age_text, "%lld", (long long)json_integer_value(age));
    const char *p[] = {tenant, stream, json_is_null(age) ? NULL : age_text};
    PGresult *r = db_exec(conn,
                          "INSERT INTO stream_settings (tenant_id, stream, max_age_ms) "
                          "VALUES ($1, $2, $3) ON CONFLICT (tenant_id, stream) DO UPDATE "
                          "SET max_age_ms = EXCLUDED.max_age_ms, updated_at = now()",
                          3, p, timeout_ms);
    bool done = db_ok(r);
    PQclear(r);
    if (!done) return SL_UNAVAILABLE;
    *answer = json_pack("{s:s,s:{s:O}}", "stream", stream, "retention", "max_age_ms", age);
    return SL_OK;
}
