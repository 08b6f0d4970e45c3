/*
 * groups.c — consumer groups and the retry/dead-letter sweeper (see groups.h).
 */
#include "groups.h"
#include "worker.h"
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
static worker_thread runner; /* the groups thread */

/* ------------------------------------------------------------------ helpers */

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

/* Where a new group starts reading. */
typedef struct group_start {
    char text[32]; /* as stored and shown: "$", "0" or "<position>" */
    char id[40];   /* the XGROUP CREATE id: "$", "0" or "<position>-0" (after that position) */
} group_start;

/* The policy and start a create request asks for, with the defaults for what it leaves out.
 * The request has passed its request schema (reqschema.h), so every field it has is of the
 * right type and range. */
static policy policy_from_request(json_t *req, group_start *start)
{
    policy p = {3, 1000, 30000, 30000, true};
    json_t *st = json_object_get(req, "start"), *retry = json_object_get(req, "retry"), *v;
    if (json_is_integer(st))
        snprintf(start->text, sizeof start->text, "%lld", (long long)json_integer_value(st));
    else
        snprintf(start->text, sizeof start->text, "%s", st ? json_string_value(st) : "$");
    if (strcmp(start->text, "$") && strcmp(start->text, "0"))
        snprintf(start->id, sizeof start->id, "%s-0", start->text);
    else
        snprintf(start->id, sizeof start->id, "%s", start->text);
    if ((v = json_object_get(req, "max_deliveries"))) p.max_deliveries = (int)json_integer_value(v);
    if ((v = json_object_get(req, "ack_timeout_ms"))) p.ack_timeout_ms = (int)json_integer_value(v);
    if ((v = json_object_get(retry, "base_delay_ms"))) p.base_delay_ms = (int)json_integer_value(v);
    if ((v = json_object_get(retry, "max_delay_ms"))) p.max_delay_ms = (int)json_integer_value(v);
    if ((v = json_object_get(retry, "jitter"))) p.jitter = json_is_true(v);
    return p;
}

/* XGROUP CREATE <key> <name> <id> MKSTREAM. SL_OK, SL_UNAVAILABLE (Redis) or SL_CONFLICT
 * (the group exists). */
static sl_status redis_group_create(const char *key, const char *name, const char *id)
{
    redisContext *r = redis_open();
    if (!r) return SL_UNAVAILABLE;
    redisReply *rep = redisCommand(r, "XGROUP CREATE %s %s %s MKSTREAM", key, name, id);
    sl_status rc = SL_OK;
    if (!reply_ok(rep)) rc = rep && strstr(rep->str, "BUSYGROUP") ? SL_CONFLICT : SL_UNAVAILABLE;
    freeReplyObject(rep);
    redisFree(r);
    return rc;
}

/* Stores the group's start and policy, replacing what an earlier group of that name had.
 * SL_OK or SL_UNAVAILABLE. */
static sl_status policy_save(PGconn **conn, const char *tenant, const char *stream,
                             const char *name, const char *start, const policy *p)
{
    char a[16], b[16], c[16], d[16];
    snprintf(a, sizeof a, "%d", p->max_deliveries);
    snprintf(b, sizeof b, "%d", p->base_delay_ms);
    snprintf(c, sizeof c, "%d", p->max_delay_ms);
    snprintf(d, sizeof d, "%d", p->ack_timeout_ms);
    const char *pv[] = {tenant, stream, name, start, a, b, c, p->jitter ? "t" : "f", d};
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
    sl_status rc = db_ok(res) ? SL_OK : SL_UNAVAILABLE;
    PQclear(res);
    return rc;
}

sl_status groups_create(PGconn **conn, const char *tenant, const char *stream, json_t *req,
                        json_t **answer)
{
    group_start start;
    policy p = policy_from_request(req, &start);
    const char *name = json_string_value(json_object_get(req, "name"));
    char *key = streams_redis_name(cfg, tenant, stream);
    sl_status rc = redis_group_create(key, name, start.id);
    if (rc == SL_OK) rc = policy_save(conn, tenant, stream, name, start.text, &p);
    if (rc == SL_OK)
        *answer =
            json_pack("{s:s,s:s,s:s,s:s,s:i,s:{s:i,s:i,s:b},s:i}", "name", name, "stream", stream,
                      "redis_stream", key, "start", start.text, "max_deliveries", p.max_deliveries,
                      "retry", "base_delay_ms", p.base_delay_ms, "max_delay_ms", p.max_delay_ms,
                      "jitter", p.jitter, "ack_timeout_ms", p.ack_timeout_ms);
    free(key);
    return rc;
}

sl_status groups_list(PGconn **conn, const char *tenant, const char *stream, json_t **answer)
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
        return SL_UNAVAILABLE;
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
    return SL_OK;
}

sl_status groups_delete(PGconn **conn, const char *tenant, const char *stream, const char *name)
{
    const char *p[] = {tenant, stream, name};
    PGresult *res = db_exec(conn,
                            "DELETE FROM consumer_groups WHERE tenant_id = $1 AND stream = $2 "
                            "AND name = $3",
                            3, p, GROUPS_TIMEOUT_MS);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(res)) rc = strcmp(PQcmdTuples(res), "1") == 0 ? SL_OK : SL_NOT_FOUND;
    PQclear(res);
    if (rc != SL_OK) return rc;
    redisContext *r = redis_open();
    if (!r) return SL_UNAVAILABLE;
    char *key = streams_redis_name(cfg, tenant, stream);
    redisReply *rep = redisCommand(r, "XGROUP DESTROY %s %s", key, name);
    freeReplyObject(rep);
    redisFree(r);
    free(key);
    return SL_OK;
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

sl_status groups_nack(PGconn **conn, const char *tenant, const char *stream, const char *group,
                      json_t *req, json_t **answer)
{
    const char *event_id = json_string_value(json_object_get(req, "event_id"));
    json_t *err = json_object_get(req, "error"), *retryable = json_object_get(req, "retryable");
    const char *p[] = {tenant, event_id, stream};
    PGresult *res = db_exec(conn,
                            "SELECT position FROM events WHERE tenant_id = $1 AND id = $2 AND "
                            "stream = $3",
                            3, p, GROUPS_TIMEOUT_MS);
    if (!db_ok(res)) {
        PQclear(res);
        return SL_UNAVAILABLE;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        *answer = problem_newf("not_found", "no event '%s' in stream '%s'", event_id, stream);
        return SL_REFUSED;
    }
    long long position = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    redisContext *r = redis_open();
    if (!r) return SL_UNAVAILABLE;
    char *key = streams_redis_name(cfg, tenant, stream);
    redisReply *pend = redisCommand(r, "XPENDING %s %s %lld-0 %lld-0 1", key, group, position,
                                    position);
    sl_status rc = SL_OK;
    if (!reply_ok(pend) || pend->type != REDIS_REPLY_ARRAY || pend->elements != 1) {
        *answer = problem_newf("conflict",
                               "event '%s' is not pending in group '%s' (already acknowledged, "
                               "dead-lettered, or never delivered)",
                               event_id, group);
        rc = SL_REFUSED;
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
        rc = SL_REFUSED;
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
        rc = SL_UNAVAILABLE;
        goto out;
    }
    if (moved == 1) {
        *answer = problem_newf("conflict", "event '%s' was just moved by the retry sweeper "
                                           "(timed out); see GET /v1/dead-letters", event_id);
        rc = SL_REFUSED;
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

sl_status groups_redeliver(const char *tenant, const char *stream, const char *group,
                           long long position)
{
    redisContext *r = redis_open();
    if (!r) return SL_UNAVAILABLE;
    char *key = streams_redis_name(cfg, tenant, stream);
    char *consumer = pick_consumer(r, key, group);
    if (!consumer) consumer = xstrdup(GROUPS_RETRY_CONSUMER); /* no worker yet: wait parked */
    /* Only from sluice-dead: a second reprocess of the same letter finds it gone and
     * delivers nothing twice. */
    claim dead = {GROUPS_DEAD_CONSUMER, -1, 0};
    int moved = claim_if(r, key, group, position, dead, consumer, 0);
    sl_status rc = moved == 1 ? SL_OK : moved == -1 ? SL_UNAVAILABLE : SL_NOT_FOUND;
    free(consumer);
    free(key);
    redisFree(r);
    return rc;
}

sl_status groups_ack(const char *tenant, const char *stream, const char *group, long long position)
{
    redisContext *r = redis_open();
    if (!r) return SL_UNAVAILABLE;
    char *key = streams_redis_name(cfg, tenant, stream);
    redisReply *rep = redisCommand(r, "XACK %s %s %lld-0", key, group, position);
    sl_status rc = reply_ok(rep) ? SL_OK : SL_UNAVAILABLE;
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

/* What one sweep of one group works on. */
typedef struct sweep {
    PGconn **conn;
    redisContext *r;
    const char *key; /* the group's Redis stream */
    const char *tenant, *stream, *group;
    const policy *p;
} sweep;

/* A delivery not acknowledged within ack_timeout_ms: dead-lettered once it has had its
 * max_deliveries, else parked for its backoff with the failure recorded. Acted on only if
 * still pending with that worker at that delivery and still timed out: the list it came from
 * may be stale by the time the sweep reaches it. */
static void fail_timed_out(const sweep *s, long long position, const char *consumer,
                           long long delivery)
{
    static const char why[] = "not acknowledged within ack_timeout_ms";
    claim seen = {consumer, delivery, s->p->ack_timeout_ms};
    if (delivery >= s->p->max_deliveries)
        (void)dead_letter(s->conn, s->r, s->key, s->tenant, s->stream, s->group, position, consumer,
                          delivery, seen, why);
    else if (park(s->r, s->key, s->group, position, seen))
        record_failure(s->conn, s->tenant, s->stream, s->group, position, consumer, why, delivery);
}

/* Step 1: deliveries not acknowledged in time (Sluice's own parked entries aside). */
static void sweep_timed_out(const sweep *s)
{
    redisReply *late = redisCommand(s->r, "XPENDING %s %s IDLE %d - + %d", s->key, s->group,
                                    s->p->ack_timeout_ms, SWEEP_BATCH);
    for (size_t i = 0; late && late->type == REDIS_REPLY_ARRAY && i < late->elements; i++) {
        redisReply *e = late->element[i];
        const char *consumer = e->element[1]->str;
        if (!strncmp(consumer, "sluice-", 7)) continue;
        fail_timed_out(s, strtoll(e->element[0]->str, NULL, 10), consumer, e->element[3]->integer);
    }
    freeReplyObject(late);
}

/* Step 2: parked entries whose backoff has passed go back to the most recently active
 * worker (looked up once, and only when one is due). */
static void sweep_parked(const sweep *s)
{
    redisReply *parked = redisCommand(s->r, "XPENDING %s %s - + %d %s", s->key, s->group,
                                      SWEEP_BATCH, GROUPS_RETRY_CONSUMER);
    char *worker = NULL;
    bool looked = false;
    for (size_t i = 0; parked && parked->type == REDIS_REPLY_ARRAY && i < parked->elements; i++) {
        redisReply *e = parked->element[i];
        long long position = strtoll(e->element[0]->str, NULL, 10);
        long long idle = e->element[2]->integer, delivery = e->element[3]->integer;
        long long backoff = backoff_ms(s->p, delivery, position);
        if (idle < backoff) continue;
        if (!looked) {
            worker = pick_consumer(s->r, s->key, s->group);
            looked = true;
        }
        if (!worker) break; /* nobody to deliver to yet */
        /* The worker's XREADGROUP … 0 counts the delivery. */
        claim waiting = {GROUPS_RETRY_CONSUMER, delivery, backoff};
        (void)claim_if(s->r, s->key, s->group, position, waiting, worker, -1);
    }
    free(worker);
    freeReplyObject(parked);
}

/* The positions among `dead` (XPENDING entries parked as dead) that have no dead-letter row,
 * in one query for the whole list (caller clears). */
static PGresult *rows_missing(const sweep *s, const redisReply *dead)
{
    buf arr;
    buf_init(&arr);
    buf_puts(&arr, "{");
    for (size_t i = 0; i < dead->elements; i++)
        buf_printf(&arr, "%s%lld", i ? "," : "",
                   strtoll(dead->element[i]->element[0]->str, NULL, 10));
    buf_puts(&arr, "}");
    const char *dp[] = {s->tenant, s->stream, s->group, arr.data};
    PGresult *x = db_exec(s->conn,
                          "SELECT pos FROM unnest($4::bigint[]) pos WHERE NOT EXISTS (SELECT "
                          "1 FROM dead_letters WHERE tenant_id = $1 AND stream = $2 AND "
                          "group_name = $3 AND event_position = pos AND source = 'group')",
                          4, dp, GROUPS_TIMEOUT_MS);
    buf_dispose(&arr);
    return x;
}

/* Step 3: entries parked as dead whose row is missing (the leader died between the claim and
 * the row) get their row now. Cheap enough to do every sweep: one XPENDING. Only entries
 * parked a while: the writer of a fresh one is still inserting its row. */
static void sweep_dead_without_row(const sweep *s)
{
    redisReply *dead = redisCommand(s->r, "XPENDING %s %s IDLE 5000 - + %d %s", s->key, s->group,
                                    SWEEP_BATCH, GROUPS_DEAD_CONSUMER);
    size_t ndead = dead && dead->type == REDIS_REPLY_ARRAY ? dead->elements : 0;
    PGresult *x = ndead ? rows_missing(s, dead) : NULL;
    for (int j = 0; db_ok(x) && j < PQntuples(x); j++) {
        long long pos = strtoll(PQgetvalue(x, j, 0), NULL, 10);
        for (size_t i = 0; i < ndead; i++) {
            redisReply *e = dead->element[i];
            if (strtoll(e->element[0]->str, NULL, 10) != pos) continue;
            claim as_dead = {GROUPS_DEAD_CONSUMER, e->element[3]->integer, 5000};
            (void)dead_letter(s->conn, s->r, s->key, s->tenant, s->stream, s->group, pos, NULL,
                              e->element[3]->integer, as_dead, NULL);
            break;
        }
    }
    PQclear(x);
    freeReplyObject(dead);
}

/* Whether entry `pos` is no longer pending in the group (it was acknowledged). */
static bool acknowledged(const sweep *s, const char *pos)
{
    redisReply *pend = redisCommand(s->r, "XPENDING %s %s %s-0 %s-0 1", s->key, s->group, pos, pos);
    bool acked = reply_ok(pend) && pend->type == REDIS_REPLY_ARRAY && pend->elements == 0;
    freeReplyObject(pend);
    return acked;
}

/* Step 4: reprocessed dead letters that were acknowledged are resolved. */
static void sweep_reprocessed(const sweep *s)
{
    const char *pp[] = {s->tenant, s->stream, s->group};
    PGresult *re = db_exec(s->conn,
                           "SELECT id, event_position FROM dead_letters WHERE tenant_id = $1 AND "
                           "stream = $2 AND group_name = $3 AND source = 'group' AND status = "
                           "'reprocessing' LIMIT 500",
                           3, pp, GROUPS_TIMEOUT_MS);
    for (int i = 0; db_ok(re) && i < PQntuples(re); i++) {
        if (!acknowledged(s, PQgetvalue(re, i, 1))) continue;
        const char *up[] = {PQgetvalue(re, i, 0)};
        PGresult *u = db_exec(s->conn,
                              "UPDATE dead_letters SET status = 'resolved', history = history || "
                              "jsonb_build_array(jsonb_build_object('time', now(), 'status', "
                              "'resolved', 'note', 'acknowledged after reprocessing')) WHERE id = "
                              "$1::bigint AND status = 'reprocessing'",
                              1, up, GROUPS_TIMEOUT_MS);
        PQclear(u);
    }
    PQclear(re);
}

/* One group: failed deliveries → parked or dead; parked ones past their backoff → a worker;
 * dead ones missing their row → a row; reprocessed dead letters that were acknowledged →
 * resolved. */
static void sweep_group(PGconn **conn, redisContext *r, const char *tenant, const char *stream,
                        const char *group, const policy *p)
{
    char *key = streams_redis_name(cfg, tenant, stream);
    sweep s = {conn, r, key, tenant, stream, group, p};
    sweep_timed_out(&s);
    sweep_parked(&s);
    sweep_dead_without_row(&s);
    sweep_reprocessed(&s);
    free(key);
}

static void *sweeper_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    redisContext *r = NULL;
    bool leader = false;
    while (!worker_stopping(&runner)) {
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
        for (int i = 0; db_ok(g) && i < PQntuples(g) && conn && !worker_stopping(&runner); i++) {
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
    return worker_start(&runner, sweeper_main);
}

void groups_stop(void)
{
    worker_stop(&runner);
}

/* ------------------------------------------------------------------ gauges */

static long long info_int(redisReply *e, const char *field)
{
    for (size_t f = 0; e && e->type == REDIS_REPLY_ARRAY && f + 1 < e->elements; f += 2)
        if (e->element[f]->str && !strcmp(e->element[f]->str, field))
            return e->element[f + 1]->type == REDIS_REPLY_INTEGER ? e->element[f + 1]->integer : -1;
    return -1;
}

/* Whether an XINFO entry (field/value pairs) has the name `name`. */
static bool info_named(redisReply *e, const char *name)
{
    for (size_t f = 0; e->type == REDIS_REPLY_ARRAY && f + 1 < e->elements; f += 2)
        if (e->element[f]->str && !strcmp(e->element[f]->str, "name") && e->element[f + 1]->str &&
            !strcmp(e->element[f + 1]->str, name))
            return true;
    return false;
}

/* pending and lag, from the group's entry in XINFO GROUPS. */
static void read_group_info(redisContext *r, const char *key, group_gauges *g)
{
    redisReply *info = redisCommand(r, "XINFO GROUPS %s", key);
    for (size_t k = 0; reply_ok(info) && info->type == REDIS_REPLY_ARRAY && k < info->elements;
         k++) {
        redisReply *e = info->element[k];
        if (!info_named(e, g->name)) continue;
        g->pending = info_int(e, "pending");
        g->lag = info_int(e, "lag");
    }
    freeReplyObject(info);
}

/* retrying and dead, from XPENDING's summary: [count, first, last, [[consumer, count], …]]. */
static void read_parked(redisContext *r, const char *key, group_gauges *g)
{
    redisReply *sum = redisCommand(r, "XPENDING %s %s", key, g->name);
    if (reply_ok(sum) && sum->type == REDIS_REPLY_ARRAY && sum->elements == 4) {
        g->retrying = g->dead = 0;
        redisReply *cs = sum->element[3];
        for (size_t k = 0; cs->type == REDIS_REPLY_ARRAY && k < cs->elements; k++) {
            redisReply *c = cs->element[k];
            if (c->type != REDIS_REPLY_ARRAY || c->elements != 2 || !c->element[0]->str) continue;
            long long count = c->element[1]->str ? strtoll(c->element[1]->str, NULL, 10) : 0;
            if (!strcmp(c->element[0]->str, GROUPS_RETRY_CONSUMER)) g->retrying = count;
            if (!strcmp(c->element[0]->str, GROUPS_DEAD_CONSUMER)) g->dead = count;
        }
    }
    freeReplyObject(sum);
}

/* consumers, from XINFO CONSUMERS: Sluice's own parking consumers are not counted. */
static void count_workers(redisContext *r, const char *key, group_gauges *g)
{
    redisReply *cons = redisCommand(r, "XINFO CONSUMERS %s %s", key, g->name);
    if (reply_ok(cons) && cons->type == REDIS_REPLY_ARRAY) {
        g->consumers = 0;
        for (size_t k = 0; k < cons->elements; k++) {
            redisReply *c = cons->element[k];
            for (size_t f = 0; c->type == REDIS_REPLY_ARRAY && f + 1 < c->elements; f += 2)
                if (c->element[f]->str && !strcmp(c->element[f]->str, "name") &&
                    c->element[f + 1]->str && strncmp(c->element[f + 1]->str, "sluice-", 7))
                    g->consumers++;
        }
    }
    freeReplyObject(cons);
}

int groups_gauges(PGconn **conn, group_gauges **out)
{
    *out = NULL;
    PGresult *res = db_exec(conn,
                            "SELECT tenant_id, stream, name FROM consumer_groups ORDER BY 1, 2, 3 "
                            "LIMIT 500",
                            0, NULL, 1000);
    if (!db_ok(res)) {
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    group_gauges *gs = xcalloc((size_t)n + 1, sizeof *gs);
    for (int i = 0; i < n; i++) {
        gs[i].tenant = xstrdup(PQgetvalue(res, i, 0));
        gs[i].stream = xstrdup(PQgetvalue(res, i, 1));
        gs[i].name = xstrdup(PQgetvalue(res, i, 2));
        gs[i].pending = gs[i].lag = gs[i].retrying = gs[i].dead = gs[i].consumers = -1;
    }
    PQclear(res);
    redisContext *r = n ? redis_open() : NULL;
    for (int i = 0; r && i < n; i++) {
        char *key = streams_redis_name(cfg, gs[i].tenant, gs[i].stream);
        read_group_info(r, key, &gs[i]);
        read_parked(r, key, &gs[i]);
        count_workers(r, key, &gs[i]);
        free(key);
        if (r->err) break;
    }
    if (r) redisFree(r);
    *out = gs;
    return n;
}

void groups_gauges_free(group_gauges *gs, int n)
{
    for (int i = 0; gs && i < n; i++) {
        free(gs[i].tenant);
        free(gs[i].stream);
        free(gs[i].name);
    }
    free(gs);
}
