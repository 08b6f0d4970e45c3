/*
 * groups.c — consumer groups and the retry/dead-letter sweeper (see groups.h).
 */
#include "groups.h"
#include "locks.h"
#include "db.h"
#include "eventlog.h"
#include "envelope.h"
#include "log.h"
#include "mem.h"
#include "problem.h"
#include "redis.h"
#include "streams.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GROUPS_LOCK_KEY LOCK_GROUPS
#define GROUPS_TIMEOUT_MS 10000
#define GROUPS_REDIS_TIMEOUT_MS 2000
#define SWEEP_EVERY_MS 200
#define SWEEP_BATCH 500

static const sluice_config *cfg;
static pthread_t thread;
static atomic_bool stopping;
static bool running;

/* ------------------------------------------------------------------ helpers */

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || strncmp(s, "sluice-", 7) == 0) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.' || *s == ':'))
            return false;
    return true;
}

static redisContext *redis_open(void)
{
    return redis_connect(cfg->redis_url, GROUPS_REDIS_TIMEOUT_MS, "groups");
}

static bool reply_ok(redisReply *r)
{
    return r && r->type != REDIS_REPLY_ERROR;
}

/* Moving a pending entry between consumers is a compare-and-swap: Redis runs this script
 * atomically, so the entry moves only if it is still where the caller saw it (owner, delivery
 * count, idle time). A plain XCLAIM with a min-idle time is not enough: an entry that another
 * actor (a nack, the sweeper, a reprocess) moved meanwhile becomes idle again and would be
 * taken from its new owner. KEYS[1] stream; ARGV: group, entry id, expected owner, expected
 * delivery count (-1: any), min idle ms, new owner, RETRYCOUNT (-1: keep). JUSTID: moving an
 * entry does not count as a delivery. */
static const char CLAIM_IF_LUA[] =
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n"
    "if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end\n"
    "if tonumber(ARGV[4]) >= 0 and tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return 0 end\n"
    "if tonumber(p[1][3]) < tonumber(ARGV[5]) then return 0 end\n"
    "if tonumber(ARGV[7]) >= 0 then\n"
    "  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[6], 0, ARGV[2], 'RETRYCOUNT', ARGV[7], 'JUSTID')\n"
    "else\n"
    "  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[6], 0, ARGV[2], 'JUSTID')\n"
    "end\n"
    "return 1\n";

typedef struct claim {
    const char *owner;     /* the consumer it must still be pending with */
    long long deliveries;  /* its delivery count, or -1 for any */
    long long min_idle_ms; /* at least this idle */
} claim;

/* 1 moved, 0 not where expected (left alone), -1 Redis error, -2 no such group. */
static int claim_if(redisContext *r, const char *key, const char *group, long long position,
                    claim expect, const char *to, long long retrycount)
{
    redisReply *rep = redisCommand(r, "EVAL %s 1 %s %s %lld-0 %s %lld %lld %s %lld",
                                   CLAIM_IF_LUA, key, group, position, expect.owner,
                                   expect.deliveries, expect.min_idle_ms, to, retrycount);
    int rc = -1;
    if (rep && rep->type == REDIS_REPLY_INTEGER) rc = rep->integer == 1 ? 1 : 0;
    else if (rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "NOGROUP")) rc = -2;
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        log_warn("groups", "claiming a pending entry failed", json_pack("{s:s}", "error", rep->str));
    freeReplyObject(rep);
    return rc;
}

/* The worker that was active most recently in a group (caller frees), or NULL. */
static char *pick_consumer(redisContext *r, const char *key, const char *group)
{
    redisReply *rep = redisCommand(r, "XINFO CONSUMERS %s %s", key, group);
    char *best = NULL;
    long long best_idle = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            redisReply *c = rep->element[i];
            const char *name = NULL;
            long long idle = -1;
            for (size_t k = 0; c->type == REDIS_REPLY_ARRAY && k + 1 < c->elements; k += 2) {
                const char *f = c->element[k]->str;
                if (!f) continue;
                if (!strcmp(f, "name")) name = c->element[k + 1]->str;
                /* Redis 7.2 has "inactive" (since the last successful read); 7.0 only "idle". */
                if (!strcmp(f, "idle") && idle < 0) idle = c->element[k + 1]->integer;
                if (!strcmp(f, "inactive") && c->element[k + 1]->integer >= 0)
                    idle = c->element[k + 1]->integer;
            }
            if (!name || strncmp(name, "sluice-", 7) == 0) continue;
            if (!best || idle < best_idle) {
                free(best);
                best = xstrdup(name);
                best_idle = idle;
            }
        }
    }
    freeReplyObject(rep);
    return best;
}

/* ------------------------------------------------------------------ groups API */

typedef struct policy {
    int max_deliveries, base_delay_ms, max_delay_ms, ack_timeout_ms;
    bool jitter;
} policy;

int group_create(PGconn **conn, const char *tenant, const char *stream, json_t *req,
                 json_t **answer)
{
    const char *k;
    json_t *v;
    bool ok = json_is_object(req) && envelope_stream_valid(stream);
    json_object_foreach(req, k, v) if (strcmp(k, "name") && strcmp(k, "start") &&
                                       strcmp(k, "max_deliveries") && strcmp(k, "retry") &&
                                       strcmp(k, "ack_timeout_ms")) ok = false;
    const char *name = json_string_value(json_object_get(req, "name"));
    json_t *start = json_object_get(req, "start");
    json_t *retry = json_object_get(req, "retry");
    policy p = {3, 1000, 30000, 30000, true};
    char start_text[32] = "$";
    if (!name || !name_valid(name)) ok = false;
    if (start && !json_is_null(start)) {
        if (json_is_string(start) && (!strcmp(json_string_value(start), "$") ||
                                      !strcmp(json_string_value(start), "0")))
            snprintf(start_text, sizeof start_text, "%s", json_string_value(start));
        else if (json_is_integer(start) && json_integer_value(start) >= 0)
            snprintf(start_text, sizeof start_text, "%lld", (long long)json_integer_value(start));
        else if (json_is_string(start) && strspn(json_string_value(start), "0123456789") ==
                                              strlen(json_string_value(start)) &&
                 strlen(json_string_value(start)) < 19)
            snprintf(start_text, sizeof start_text, "%s", json_string_value(start));
        else
            ok = false;
    }
    json_t *md = json_object_get(req, "max_deliveries");
    if (md) ok = ok && json_is_integer(md) && json_integer_value(md) >= 1 && json_integer_value(md) <= 1000;
    if (md && ok) p.max_deliveries = (int)json_integer_value(md);
    json_t *at = json_object_get(req, "ack_timeout_ms");
    if (at) ok = ok && json_is_integer(at) && json_integer_value(at) >= 1 && json_integer_value(at) <= 86400000;
    if (at && ok) p.ack_timeout_ms = (int)json_integer_value(at);
    if (retry && !json_is_null(retry)) {
        ok = ok && json_is_object(retry);
        json_object_foreach(retry, k, v) {
            if (!strcmp(k, "base_delay_ms") && json_is_integer(v) && json_integer_value(v) >= 0 &&
                json_integer_value(v) <= 86400000)
                p.base_delay_ms = (int)json_integer_value(v);
            else if (!strcmp(k, "max_delay_ms") && json_is_integer(v) && json_integer_value(v) >= 0 &&
                     json_integer_value(v) <= 86400000)
                p.max_delay_ms = (int)json_integer_value(v);
            else if (!strcmp(k, "jitter") && json_is_boolean(v))
                p.jitter = json_is_true(v);
            else
                ok = false;
        }
    }
    if (!ok) {
        *answer = problem_new("invalid_request",
                              "expected {\"name\":\"…\",\"start\":\"$|0|<position>\","
                              "\"max_deliveries\":3,\"retry\":{\"base_delay_ms\":1000,"
                              "\"max_delay_ms\":30000,\"jitter\":true},\"ack_timeout_ms\":30000}; "
                              "names may not start with sluice-");
        return -4;
    }
    /* "<position>" starts after that position: the entry id is "<position>-0". */
    char id[40];
    if (strcmp(start_text, "$") && strcmp(start_text, "0"))
        snprintf(id, sizeof id, "%s-0", start_text);
    else
        snprintf(id, sizeof id, "%s", start_text);
    redisContext *r = redis_open();
    if (!r) return -1;
    char *key = streams_redis_name(cfg, tenant, stream);
    redisReply *rep = redisCommand(r, "XGROUP CREATE %s %s %s MKSTREAM", key, name, id);
    int rc = 0;
    if (!reply_ok(rep)) rc = rep && strstr(rep->str, "BUSYGROUP") ? -3 : -1;
    freeReplyObject(rep);
    redisFree(r);
    if (rc == 0) {
        char a[16], b[16], c[16], d[16];
        snprintf(a, sizeof a, "%d", p.max_deliveries);
        snprintf(b, sizeof b, "%d", p.base_delay_ms);
        snprintf(c, sizeof c, "%d", p.max_delay_ms);
        snprintf(d, sizeof d, "%d", p.ack_timeout_ms);
        const char *pv[] = {tenant, stream, name, start_text, a, b, c, p.jitter ? "t" : "f", d};
        PGresult *res = db_exec(conn,
                                "INSERT INTO consumer_groups (tenant_id, stream, name, start, "
                                "max_deliveries, base_delay_ms, max_delay_ms, jitter, "
                                "ack_timeout_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) "
                                "ON CONFLICT (tenant_id, stream, name) DO UPDATE SET start = "
                                "EXCLUDED.start, max_deliveries = EXCLUDED.max_deliveries, "
                                "base_delay_ms = EXCLUDED.base_delay_ms, max_delay_ms = "
                                "EXCLUDED.max_delay_ms, jitter = EXCLUDED.jitter, ack_timeout_ms "
                                "= EXCLUDED.ack_timeout_ms",
                                9, pv, GROUPS_TIMEOUT_MS);
        if (!db_ok(res)) rc = -1;
        PQclear(res);
    }
    if (rc == 0)
        *answer = json_pack("{s:s,s:s,s:s,s:s,s:i,s:{s:i,s:i,s:b},s:i}", "name", name, "stream",
                            stream, "redis_stream", key, "start", start_text, "max_deliveries",
                            p.max_deliveries, "retry", "base_delay_ms", p.base_delay_ms,
                            "max_delay_ms", p.max_delay_ms, "jitter", p.jitter, "ack_timeout_ms",
                            p.ack_timeout_ms);
    free(key);
    return rc;
}

int group_list(PGconn **conn, const char *tenant, const char *stream, json_t **answer)
{
    const char *p[] = {tenant, stream};
    PGresult *res = db_exec(conn,
                            "SELECT name, start, max_deliveries, base_delay_ms, max_delay_ms, "
                            "jitter, ack_timeout_ms, (SELECT count(*) FROM dead_letters d WHERE "
                            "d.tenant_id = g.tenant_id AND d.stream = g.stream AND d.group_name = "
                            "g.name AND d.status IN ('open', 'reprocessing')) FROM "
                            "consumer_groups g WHERE tenant_id = $1 AND stream = $2 ORDER BY name",
                            2, p, GROUPS_TIMEOUT_MS);
    if (!db_ok(res)) {
        PQclear(res);
        return -1;
    }
    char *key = streams_redis_name(cfg, tenant, stream);
    redisContext *r = redis_open();
    redisReply *info = r ? redisCommand(r, "XINFO GROUPS %s", key) : NULL;
    json_t *groups = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        const char *name = PQgetvalue(res, i, 0);
        json_t *g = json_pack("{s:s,s:s,s:i,s:{s:i,s:i,s:b},s:i,s:I}", "name", name, "start",
                              PQgetvalue(res, i, 1), "max_deliveries", atoi(PQgetvalue(res, i, 2)),
                              "retry", "base_delay_ms", atoi(PQgetvalue(res, i, 3)),
                              "max_delay_ms", atoi(PQgetvalue(res, i, 4)), "jitter",
                              PQgetvalue(res, i, 5)[0] == 't', "ack_timeout_ms",
                              atoi(PQgetvalue(res, i, 6)), "dead_letters",
                              (json_int_t)strtoll(PQgetvalue(res, i, 7), NULL, 10));
        /* Redis's view: consumers, pending, last delivered id, lag. */
        for (size_t k = 0; info && info->type == REDIS_REPLY_ARRAY && k < info->elements; k++) {
            redisReply *e = info->element[k];
            bool match = false;
            for (size_t f = 0; e->type == REDIS_REPLY_ARRAY && f + 1 < e->elements; f += 2)
                if (!strcmp(e->element[f]->str, "name") && e->element[f + 1]->str &&
                    !strcmp(e->element[f + 1]->str, name))
                    match = true;
            if (!match) continue;
            for (size_t f = 0; f + 1 < e->elements; f += 2) {
                const char *field = e->element[f]->str;
                redisReply *val = e->element[f + 1];
                if (!strcmp(field, "name")) continue;
                json_t *jv = val->type == REDIS_REPLY_INTEGER ? json_integer(val->integer)
                             : val->str ? json_string(val->str) : json_null();
                char fname[64];
                snprintf(fname, sizeof fname, "%s", field);
                for (char *c = fname; *c; c++)
                    if (*c == '-') *c = '_';
                json_object_set_new(g, fname, jv ? jv : json_null());
            }
        }
        json_array_append_new(groups, g);
    }
    PQclear(res);
    freeReplyObject(info);
    if (r) redisFree(r);
    *answer = json_pack("{s:s,s:s,s:o,s:b}", "stream", stream, "redis_stream", key, "groups",
                        groups, "redis_available", r != NULL);
    free(key);
    return 0;
}

int group_delete(PGconn **conn, const char *tenant, const char *stream, const char *name)
{
    const char *p[] = {tenant, stream, name};
    PGresult *res = db_exec(conn,
                            "DELETE FROM consumer_groups WHERE tenant_id = $1 AND stream = $2 "
                            "AND name = $3",
                            3, p, GROUPS_TIMEOUT_MS);
    int rc = -1;
    if (db_ok(res)) rc = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : -2;
    PQclear(res);
    if (rc != 0) return rc;
    redisContext *r = redis_open();
    if (!r) return -1;
    char *key = streams_redis_name(cfg, tenant, stream);
    redisReply *rep = redisCommand(r, "XGROUP DESTROY %s %s", key, name);
    freeReplyObject(rep);
    redisFree(r);
    free(key);
    return 0;
}

/* ------------------------------------------------------------------ failures */

/* Records why a delivery failed (appended to the group's failure history for it). */
static void record_failure(PGconn **conn, const char *tenant, const char *stream,
                           const char *group, long long position, const char *consumer,
                           const char *error, long long delivery)
{
    char pos[24], del[24];
    snprintf(pos, sizeof pos, "%lld", position);
    snprintf(del, sizeof del, "%lld", delivery);
    const char *p[] = {tenant, stream, group, pos, consumer, error, del};
    PGresult *r = db_exec(conn,
                          "INSERT INTO delivery_failures (tenant_id, stream, group_name, position, "
                          "consumer, errors) VALUES ($1, $2, $3, $4::bigint, $5, "
                          "jsonb_build_array(jsonb_build_object('time', now(), 'consumer', $5::text, "
                          "'delivery', $7::int, 'error', $6::text))) ON CONFLICT (tenant_id, "
                          "stream, group_name, position) DO UPDATE SET consumer = "
                          "EXCLUDED.consumer, errors = delivery_failures.errors || EXCLUDED.errors, "
                          "updated_at = now()",
                          7, p, GROUPS_TIMEOUT_MS);
    PQclear(r);
}

/* Parks the entry as a dead letter (under sluice-dead) if it is still where `expect` says,
 * then writes (or reopens) its row, appending `error` (if any) to the failures recorded for
 * it. 0 done, 1 left alone (someone moved it first), -1 store trouble. A leader that dies
 * between the claim and the row leaves an entry parked as dead with no row: the sweeper's
 * recovery step writes it. */
static int dead_letter(PGconn **conn, redisContext *r, const char *key, const char *tenant,
                       const char *stream, const char *group, long long position,
                       const char *consumer, long long delivery, claim expect, const char *error)
{
    int moved = claim_if(r, key, group, position, expect, GROUPS_DEAD_CONSUMER, -1);
    if (moved < 0) return -1;
    if (moved == 0) return 1;
    char pos[24], del[24];
    snprintf(pos, sizeof pos, "%lld", position);
    snprintf(del, sizeof del, "%lld", delivery);
    const char *p[] = {tenant, stream, group, pos, consumer, del, error};
    PGresult *res = db_exec(
        conn,
        "WITH f AS (DELETE FROM delivery_failures WHERE tenant_id = $1 AND stream = $2 AND "
        "group_name = $3 AND position = $4::bigint RETURNING errors), "
        "e AS (SELECT id, type, row_to_json(x)::jsonb AS event FROM (SELECT " EVENTLOG_COLUMNS
        " FROM events WHERE tenant_id = $1 AND "
        "position = $4::bigint) x) "
        "INSERT INTO dead_letters (tenant_id, source, stream, group_name, consumer, event_id, "
        "event_position, delivery_count, errors, type, event, history) SELECT $1, 'group', $2, "
        "$3, $5, coalesce((SELECT id FROM e), ''), $4::bigint, $6::int, coalesce((SELECT errors "
        "FROM f), '[]') || CASE WHEN $7::text IS NULL THEN '[]'::jsonb ELSE jsonb_build_array("
        "jsonb_build_object('time', now(), 'consumer', $5::text, 'delivery', $6::int, 'error', "
        "$7::text)) END, (SELECT type FROM e), (SELECT event FROM e), jsonb_build_array("
        "jsonb_build_object('time', now(), 'status', 'open', 'note', 'dead-lettered after ' || "
        "$6 || ' deliveries')) "
        "ON CONFLICT (tenant_id, stream, group_name, event_position) WHERE source = 'group' DO "
        "UPDATE SET status = 'open', consumer = EXCLUDED.consumer, delivery_count = "
        "dead_letters.delivery_count + EXCLUDED.delivery_count, errors = dead_letters.errors || "
        "EXCLUDED.errors, last_failed_at = now(), history = dead_letters.history || "
        "EXCLUDED.history",
        7, p, GROUPS_TIMEOUT_MS);
    bool ok = db_ok(res);
    if (!ok && res) db_log_error("groups", "writing a dead letter failed", res);
    PQclear(res);
    return ok ? 0 : -1;
}

/* Parks an entry under sluice-retry for its backoff if it is still where `expect` says.
 * Returns whether it was parked. */
static bool park(redisContext *r, const char *key, const char *group, long long position,
                 claim expect)
{
    return claim_if(r, key, group, position, expect, GROUPS_RETRY_CONSUMER, -1) == 1;
}

int group_nack(PGconn **conn, const char *tenant, const char *stream, const char *group,
               json_t *req, json_t **answer)
{
    const char *event_id = json_string_value(json_object_get(req, "event_id"));
    json_t *err = json_object_get(req, "error"), *retryable = json_object_get(req, "retryable");
    const char *k;
    json_t *v;
    bool ok = json_is_object(req) && event_id && (!err || json_is_string(err)) &&
              (!retryable || json_is_boolean(retryable));
    json_object_foreach(req, k, v) if (strcmp(k, "event_id") && strcmp(k, "error") &&
                                       strcmp(k, "retryable")) ok = false;
    if (!ok) {
        *answer = problem_new("invalid_request",
                              "expected {\"event_id\":\"…\",\"error\":\"why\",\"retryable\":true}");
        return -4;
    }
    const char *p[] = {tenant, event_id, stream};
    PGresult *res = db_exec(conn,
                            "SELECT position FROM events WHERE tenant_id = $1 AND id = $2 AND "
                            "stream = $3",
                            3, p, GROUPS_TIMEOUT_MS);
    if (!db_ok(res)) {
        PQclear(res);
        return -1;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        *answer = problem_newf("not_found", "no event '%s' in stream '%s'", event_id, stream);
        return -4;
    }
    long long position = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    redisContext *r = redis_open();
    if (!r) return -1;
    char *key = streams_redis_name(cfg, tenant, stream);
    redisReply *pend = redisCommand(r, "XPENDING %s %s %lld-0 %lld-0 1", key, group, position,
                                    position);
    int rc = 0;
    if (!reply_ok(pend) || pend->type != REDIS_REPLY_ARRAY || pend->elements != 1) {
        *answer = problem_newf("conflict",
                               "event '%s' is not pending in group '%s' (already acknowledged, "
                               "dead-lettered, or never delivered)",
                               event_id, group);
        rc = -4;
        goto out;
    }
    redisReply *e = pend->element[0];
    const char *consumer = e->element[1]->str;
    long long delivery = e->element[3]->integer;
    if (!strncmp(consumer, "sluice-", 7)) {
        *answer = problem_newf("conflict", "event '%s' is already %s in group '%s'", event_id,
                               strcmp(consumer, GROUPS_DEAD_CONSUMER) ? "waiting for a retry"
                                                                      : "a dead letter",
                               group);
        rc = -4;
        goto out;
    }
    const char *gp[] = {tenant, stream, group};
    PGresult *g = db_exec(conn,
                          "SELECT max_deliveries FROM consumer_groups WHERE tenant_id = $1 AND "
                          "stream = $2 AND name = $3",
                          3, gp, GROUPS_TIMEOUT_MS);
    int max = db_ok(g) && PQntuples(g) == 1 ? atoi(PQgetvalue(g, 0, 0)) : 3;
    PQclear(g);
    bool dead = (retryable && json_is_false(retryable)) || delivery >= max;
    const char *why = err ? json_string_value(err) : "nacked";
    /* Only if still pending with this worker at this delivery: the sweeper may have timed it
     * out meanwhile (then the nack is late: 409, nothing recorded). */
    claim seen = {consumer, delivery, 0};
    int moved = 0;
    if (dead) {
        moved = dead_letter(conn, r, key, tenant, stream, group, position, consumer, delivery,
                            seen, why);
    } else if (park(r, key, group, position, seen)) {
        record_failure(conn, tenant, stream, group, position, consumer, why, delivery);
    } else {
        moved = 1;
    }
    if (moved < 0) {
        rc = -1;
        goto out;
    }
    if (moved == 1) {
        *answer = problem_newf("conflict", "event '%s' was just moved by the retry sweeper "
                                           "(timed out); see GET /v1/dead-letters", event_id);
        rc = -4;
        goto out;
    }
    *answer = json_pack("{s:s,s:s,s:I,s:s}", "event_id", event_id, "group", group,
                        "delivery_count", (json_int_t)delivery, "status",
                        dead ? "dead_lettered" : "retry_scheduled");
out:
    freeReplyObject(pend);
    redisFree(r);
    free(key);
    return rc;
}

int group_redeliver(const char *tenant, const char *stream, const char *group, long long position)
{
    redisContext *r = redis_open();
    if (!r) return -1;
    char *key = streams_redis_name(cfg, tenant, stream);
    char *consumer = pick_consumer(r, key, group);
    int rc = -2;
    if (!consumer) consumer = xstrdup(GROUPS_RETRY_CONSUMER); /* no worker yet: wait parked */
    /* Only from sluice-dead: a second reprocess of the same letter finds it gone and
     * delivers nothing twice. */
    claim dead = {GROUPS_DEAD_CONSUMER, -1, 0};
    int moved = claim_if(r, key, group, position, dead, consumer, 0);
    rc = moved == 1 ? 0 : moved == 0 ? -2 : moved;
    free(consumer);
    free(key);
    redisFree(r);
    return rc;
}

int group_ack(const char *tenant, const char *stream, const char *group, long long position)
{
    redisContext *r = redis_open();
    if (!r) return -1;
    char *key = streams_redis_name(cfg, tenant, stream);
    redisReply *rep = redisCommand(r, "XACK %s %s %lld-0", key, group, position);
    int rc = reply_ok(rep) ? 0 : -1;
    freeReplyObject(rep);
    free(key);
    redisFree(r);
    return rc;
}

/* ------------------------------------------------------------------ sweeper */

static long long backoff_ms(const policy *p, long long delivery, long long position)
{
    long long d = p->base_delay_ms;
    for (long long i = 1; i < delivery && d < p->max_delay_ms; i++) d *= 2;
    if (d > p->max_delay_ms) d = p->max_delay_ms;
    if (p->jitter && d > 1) {
        /* "Equal jitter", fixed per entry and delivery so consecutive sweeps agree. */
        unsigned long long h = (unsigned long long)position * 2654435761ULL + (unsigned long long)delivery * 40503ULL;
        h ^= h >> 17;
        d = d / 2 + (long long)(h % (unsigned long long)(d / 2 + 1));
    }
    return d;
}

/* One group: failed deliveries → parked or dead; parked ones past their backoff → a worker;
 * reprocessed dead letters that were acknowledged → resolved. */
static void sweep_group(PGconn **conn, redisContext *r, const char *tenant, const char *stream,
                        const char *group, const policy *p)
{
    char *key = streams_redis_name(cfg, tenant, stream);
    /* 1. Deliveries not acknowledged in time. */
    redisReply *late = redisCommand(r, "XPENDING %s %s IDLE %d - + %d", key, group,
                                    p->ack_timeout_ms, SWEEP_BATCH);
    for (size_t i = 0; late && late->type == REDIS_REPLY_ARRAY && i < late->elements; i++) {
        redisReply *e = late->element[i];
        const char *consumer = e->element[1]->str;
        if (!strncmp(consumer, "sluice-", 7)) continue;
        long long position = strtoll(e->element[0]->str, NULL, 10);
        long long delivery = e->element[3]->integer;
        /* Acted on only if still pending with that worker at that delivery and still
         * timed out: the list may be stale by the time the loop reaches an entry. */
        claim seen = {consumer, delivery, p->ack_timeout_ms};
        if (delivery >= p->max_deliveries)
            (void)dead_letter(conn, r, key, tenant, stream, group, position, consumer, delivery,
                              seen, "not acknowledged within ack_timeout_ms");
        else if (park(r, key, group, position, seen))
            record_failure(conn, tenant, stream, group, position, consumer,
                           "not acknowledged within ack_timeout_ms", delivery);
    }
    freeReplyObject(late);
    /* 2. Parked entries whose backoff has passed go back to a worker. */
    redisReply *parked = redisCommand(r, "XPENDING %s %s - + %d %s", key, group, SWEEP_BATCH,
                                      GROUPS_RETRY_CONSUMER);
    char *worker = NULL;
    bool looked = false;
    for (size_t i = 0; parked && parked->type == REDIS_REPLY_ARRAY && i < parked->elements; i++) {
        redisReply *e = parked->element[i];
        long long position = strtoll(e->element[0]->str, NULL, 10);
        long long idle = e->element[2]->integer, delivery = e->element[3]->integer;
        if (idle < backoff_ms(p, delivery, position)) continue;
        if (!looked) {
            worker = pick_consumer(r, key, group);
            looked = true;
        }
        if (!worker) break; /* nobody to deliver to yet */
        /* The worker's XREADGROUP … 0 counts the delivery. */
        claim waiting = {GROUPS_RETRY_CONSUMER, delivery, backoff_ms(p, delivery, position)};
        (void)claim_if(r, key, group, position, waiting, worker, -1);
    }
    free(worker);
    freeReplyObject(parked);
    /* 3. Entries parked as dead whose row is missing (the leader died between the two
     *    steps): write the row now. Cheap enough to do every sweep: one XPENDING. */
    /* Only entries parked a while: the writer of a fresh one is still inserting its row. */
    redisReply *dead = redisCommand(r, "XPENDING %s %s IDLE 5000 - + %d %s", key, group,
                                    SWEEP_BATCH, GROUPS_DEAD_CONSUMER);
    size_t ndead = dead && dead->type == REDIS_REPLY_ARRAY ? dead->elements : 0;
    if (ndead) {
        /* One query for the whole list: which of these positions have no row? */
        buf arr;
        buf_init(&arr);
        buf_puts(&arr, "{");
        for (size_t i = 0; i < ndead; i++)
            buf_printf(&arr, "%s%lld", i ? "," : "", strtoll(dead->element[i]->element[0]->str, NULL, 10));
        buf_puts(&arr, "}");
        const char *dp[] = {tenant, stream, group, arr.data};
        PGresult *x = db_exec(conn,
                              "SELECT pos FROM unnest($4::bigint[]) pos WHERE NOT EXISTS (SELECT "
                              "1 FROM dead_letters WHERE tenant_id = $1 AND stream = $2 AND "
                              "group_name = $3 AND event_position = pos AND source = 'group')",
                              4, dp, GROUPS_TIMEOUT_MS);
        buf_dispose(&arr);
        for (int j = 0; db_ok(x) && j < PQntuples(x); j++) {
            long long pos = strtoll(PQgetvalue(x, j, 0), NULL, 10);
            for (size_t i = 0; i < ndead; i++) {
                redisReply *e = dead->element[i];
                if (strtoll(e->element[0]->str, NULL, 10) != pos) continue;
                claim as_dead = {GROUPS_DEAD_CONSUMER, e->element[3]->integer, 5000};
                (void)dead_letter(conn, r, key, tenant, stream, group, pos, NULL,
                                  e->element[3]->integer, as_dead, NULL);
                break;
            }
        }
        PQclear(x);
    }
    freeReplyObject(dead);
    /* 4. Reprocessed dead letters: acknowledged means resolved. */
    const char *pp[] = {tenant, stream, group};
    PGresult *re = db_exec(conn,
                           "SELECT id, event_position FROM dead_letters WHERE tenant_id = $1 AND "
                           "stream = $2 AND group_name = $3 AND source = 'group' AND status = "
                           "'reprocessing' LIMIT 500",
                           3, pp, GROUPS_TIMEOUT_MS);
    for (int i = 0; db_ok(re) && i < PQntuples(re); i++) {
        const char *pos = PQgetvalue(re, i, 1);
        redisReply *pend = redisCommand(r, "XPENDING %s %s %s-0 %s-0 1", key, group, pos, pos);
        bool acked = reply_ok(pend) && pend->type == REDIS_REPLY_ARRAY && pend->elements == 0;
        freeReplyObject(pend);
        if (!acked) continue;
        const char *up[] = {PQgetvalue(re, i, 0)};
        PGresult *u = db_exec(conn,
                              "UPDATE dead_letters SET status = 'resolved', history = history || "
                              "jsonb_build_array(jsonb_build_object('time', now(), 'status', "
                              "'resolved', 'note', 'acknowledged after reprocessing')) WHERE id = "
                              "$1::bigint AND status = 'reprocessing'",
                              1, up, GROUPS_TIMEOUT_MS);
        PQclear(u);
    }
    PQclear(re);
    free(key);
}

static void *sweeper_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    redisContext *r = NULL;
    bool leader = false;
    while (!atomic_load(&stopping)) {
        usleep(SWEEP_EVERY_MS * 1000);
        if (!conn) {
            leader = false;
            if (!(conn = db_connect(cfg->database_url, "groups"))) continue;
        }
        if (!leader) {
            PGresult *l = db_exec(&conn, "SELECT pg_try_advisory_lock(" GROUPS_LOCK_KEY ")", 0,
                                  NULL, GROUPS_TIMEOUT_MS);
            leader = db_ok(l) && PQgetvalue(l, 0, 0)[0] == 't';
            PQclear(l);
            if (!leader) continue;
            log_info("groups", "this instance runs the consumer-group sweeper", NULL);
        }
        if (!r && !(r = redis_open())) continue;
        PGresult *g = db_exec(&conn,
                              "SELECT tenant_id, stream, name, max_deliveries, base_delay_ms, "
                              "max_delay_ms, jitter, ack_timeout_ms FROM consumer_groups",
                              0, NULL, GROUPS_TIMEOUT_MS);
        for (int i = 0; db_ok(g) && i < PQntuples(g) && conn && !atomic_load(&stopping); i++) {
            policy p = {atoi(PQgetvalue(g, i, 3)), atoi(PQgetvalue(g, i, 4)),
                        atoi(PQgetvalue(g, i, 5)), atoi(PQgetvalue(g, i, 7)),
                        PQgetvalue(g, i, 6)[0] == 't'};
            sweep_group(&conn, r, PQgetvalue(g, i, 0), PQgetvalue(g, i, 1), PQgetvalue(g, i, 2), &p);
        }
        PQclear(g);
        if (r && r->err) {
            redisFree(r);
            r = NULL;
        }
    }
    if (r) redisFree(r);
    PQfinish(conn);
    return NULL;
}

int groups_start(const sluice_config *c)
{
    cfg = c;
    if (pthread_create(&thread, NULL, sweeper_main, NULL) != 0) return -1;
    running = true;
    return 0;
}

void groups_stop(void)
{
    if (!running) return;
    atomic_store(&stopping, true);
    pthread_join(thread, NULL);
    running = false;
}

/* ------------------------------------------------------------------ metrics */

static long long info_int(redisReply *e, const char *field)
{
    for (size_t f = 0; e && e->type == REDIS_REPLY_ARRAY && f + 1 < e->elements; f += 2)
        if (e->element[f]->str && !strcmp(e->element[f]->str, field))
            return e->element[f + 1]->type == REDIS_REPLY_INTEGER ? e->element[f + 1]->integer : -1;
    return -1;
}

void groups_metrics(PGconn **conn, buf *out)
{
    PGresult *g = db_exec(conn,
                          "SELECT tenant_id, stream, name FROM consumer_groups ORDER BY 1, 2, 3 "
                          "LIMIT 500",
                          0, NULL, 1000);
    if (!db_ok(g)) {
        PQclear(g);
        return;
    }
    static const char *const names[] = {"sluice_group_pending", "sluice_group_lag",
                                        "sluice_group_retrying", "sluice_group_dead",
                                        "sluice_group_consumers"};
    static const char *const helps[] = {
        "Entries delivered to a consumer group and not yet acknowledged (its PEL, with parked ones).",
        "Entries in the stream the group has not been delivered yet (Redis's lag).",
        "Pending entries waiting out their retry backoff.",
        "Pending entries parked as dead letters.",
        "Workers in the group (Sluice's own parking consumers excluded)."};
    int n = PQntuples(g);
    long long(*v)[5] = xcalloc((size_t)n + 1, sizeof *v);
    for (int i = 0; i < n; i++)
        for (int m = 0; m < 5; m++) v[i][m] = -1; /* unknown: no sample */
    redisContext *r = n ? redis_open() : NULL;
    for (int i = 0; r && i < n; i++) {
        char *key = streams_redis_name(cfg, PQgetvalue(g, i, 0), PQgetvalue(g, i, 1));
        const char *group = PQgetvalue(g, i, 2);
        redisReply *info = redisCommand(r, "XINFO GROUPS %s", key);
        for (size_t k = 0; reply_ok(info) && info->type == REDIS_REPLY_ARRAY && k < info->elements; k++) {
            redisReply *e = info->element[k];
            bool match = false;
            for (size_t f = 0; e->type == REDIS_REPLY_ARRAY && f + 1 < e->elements; f += 2)
                if (e->element[f]->str && !strcmp(e->element[f]->str, "name") &&
                    e->element[f + 1]->str && !strcmp(e->element[f + 1]->str, group))
                    match = true;
            if (!match) continue;
            v[i][0] = info_int(e, "pending");
            v[i][1] = info_int(e, "lag");
        }
        freeReplyObject(info);
        /* XPENDING's summary: [count, first, last, [[consumer, count], …]]. */
        redisReply *sum = redisCommand(r, "XPENDING %s %s", key, group);
        if (reply_ok(sum) && sum->type == REDIS_REPLY_ARRAY && sum->elements == 4) {
            v[i][2] = v[i][3] = 0;
            redisReply *cs = sum->element[3];
            for (size_t k = 0; cs->type == REDIS_REPLY_ARRAY && k < cs->elements; k++) {
                redisReply *c = cs->element[k];
                if (c->type != REDIS_REPLY_ARRAY || c->elements != 2 || !c->element[0]->str) continue;
                long long count = c->element[1]->str ? strtoll(c->element[1]->str, NULL, 10) : 0;
                if (!strcmp(c->element[0]->str, GROUPS_RETRY_CONSUMER)) v[i][2] = count;
                if (!strcmp(c->element[0]->str, GROUPS_DEAD_CONSUMER)) v[i][3] = count;
            }
        }
        freeReplyObject(sum);
        redisReply *cons = redisCommand(r, "XINFO CONSUMERS %s %s", key, group);
        if (reply_ok(cons) && cons->type == REDIS_REPLY_ARRAY) {
            v[i][4] = 0;
            for (size_t k = 0; k < cons->elements; k++) {
                redisReply *c = cons->element[k];
                for (size_t f = 0; c->type == REDIS_REPLY_ARRAY && f + 1 < c->elements; f += 2)
                    if (c->element[f]->str && !strcmp(c->element[f]->str, "name") &&
                        c->element[f + 1]->str && strncmp(c->element[f + 1]->str, "sluice-", 7))
                        v[i][4]++;
            }
        }
        freeReplyObject(cons);
        free(key);
        if (r->err) break;
    }
    if (r) redisFree(r);
    for (int m = 0; m < 5; m++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", names[m], helps[m], names[m]);
        for (int i = 0; i < n; i++)
            if (v[i][m] >= 0)
                buf_printf(out, "%s{tenant=\"%s\",stream=\"%s\",group=\"%s\"} %lld\n", names[m],
                           PQgetvalue(g, i, 0), PQgetvalue(g, i, 1), PQgetvalue(g, i, 2), v[i][m]);
    }
    free(v);
    PQclear(g);
}
