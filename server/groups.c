/*
 * groups.c — consumer-group definitions, the admin API and the nack of a Redis
 * worker by event id (see groups.h).
 */
#include "groups.h"
#include "db.h"
#include "envelope.h"
#include "jsonscan.h"
#include "log.h"
#include "mem.h"
#include "problem.h"
#include "redis.h"
#include "streams.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUPS_TIMEOUT_MS 10000
#define GROUPS_REDIS_TIMEOUT_MS 2000

static const sluice_config *cfg;

/* ------------------------------------------------------------------ helpers */

void groups_init(const sluice_config *c)
{
    cfg = c;
}

static redis_conn *redis_open(void)
{
    return redis_connect(cfg->redis_url, GROUPS_REDIS_TIMEOUT_MS, "groups");
}

static bool reply_ok(redisReply *r)
{
    return r && r->type != REDIS_REPLY_ERROR;
}

/* ------------------------------------------------------------------ definitions */

#define DEF_COLUMNS                                                                                \
    "tenant_id, stream, name, max_deliveries, base_delay_ms, max_delay_ms, jitter, "              \
    "ack_timeout_ms, strategy, filter::text, start, acked_floor"

/* The members a group's filter may have. */
static const char *const group_filter_members[] = {"types", "where", NULL};

/* Compiles a stored or requested group filter ({types, where}); NULL when there is none
 * (or it has no condition). -1 with *err when it does not parse. */
static int filter_compile(const json_t *obj, const char *tenant, filter **out, filter_error *err)
{
    *out = NULL;
    if (!obj || json_is_null(obj)) return 0;
    filter *f = xcalloc(1, sizeof *f);
    if (filter_parse_json(f, obj, group_filter_members, NULL, err) < 0) {
        free(f);
        return -1;
    }
    snprintf(f->tenant, sizeof f->tenant, "%s", tenant);
    if (!f->n_types && !f->n_where) {
        filter_dispose(f);
        free(f);
        return 0;
    }
    *out = f;
    return 0;
}

static void def_from_row(PGresult *res, int i, group_def *d)
{
    memset(d, 0, sizeof *d);
    d->tenant = xstrdup(PQgetvalue(res, i, 0));
    d->stream = xstrdup(PQgetvalue(res, i, 1));
    d->name = xstrdup(PQgetvalue(res, i, 2));
    d->policy.max_deliveries = atoi(PQgetvalue(res, i, 3));
    d->policy.base_delay_ms = atoi(PQgetvalue(res, i, 4));
    d->policy.max_delay_ms = atoi(PQgetvalue(res, i, 5));
    d->policy.jitter = PQgetvalue(res, i, 6)[0] == 't';
    d->policy.ack_timeout_ms = atoi(PQgetvalue(res, i, 7));
    d->policy.strategy = deliveries_strategy(PQgetvalue(res, i, 8));
    if (!PQgetisnull(res, i, 9)) {
        json_t *fj = json_loads(PQgetvalue(res, i, 9), 0, NULL);
        filter_error err;
        if (filter_compile(fj, d->tenant, &d->match, &err) < 0)
            log_warn("groups", "a stored group filter does not parse; it matches every event",
                     json_pack("{s:s,s:s}", "group", d->name, "error", err.message));
        json_decref(fj);
    }
    snprintf(d->start, sizeof d->start, "%s", PQgetvalue(res, i, 10));
    d->acked_floor = PQgetisnull(res, i, 11) ? -1 : strtoll(PQgetvalue(res, i, 11), NULL, 10);
}

void group_def_dispose(group_def *d)
{
    if (!d) return;
    free(d->tenant);
    free(d->stream);
    free(d->name);
    if (d->match) {
        filter_dispose(d->match);
        free(d->match);
    }
    memset(d, 0, sizeof *d);
}

void groups_defs_free(group_def *defs, int n)
{
    for (int i = 0; defs && i < n; i++) group_def_dispose(&defs[i]);
    free(defs);
}

sl_status groups_load(PGconn **conn, const char *tenant, const char *stream, const char *name,
                      group_def *out)
{
    const char *p[] = {tenant, stream, name};
    PGresult *res = db_exec(conn,
                            "SELECT " DEF_COLUMNS " FROM consumer_groups WHERE tenant_id = $1 "
                            "AND stream = $2 AND name = $3",
                            3, p, GROUPS_TIMEOUT_MS);
    sl_status rc = !db_ok(res) ? SL_UNAVAILABLE : PQntuples(res) == 1 ? SL_OK : SL_NOT_FOUND;
    if (rc == SL_OK) def_from_row(res, 0, out);
    PQclear(res);
    return rc;
}

int groups_load_all(PGconn **conn, group_def **out)
{
    *out = NULL;
    PGresult *res = db_exec(conn,
                            "SELECT " DEF_COLUMNS " FROM consumer_groups ORDER BY tenant_id, "
                            "stream, name LIMIT 10000",
                            0, NULL, GROUPS_TIMEOUT_MS);
    if (!db_ok(res)) {
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    group_def *defs = xcalloc((size_t)n + 1, sizeof *defs);
    for (int i = 0; i < n; i++) def_from_row(res, i, &defs[i]);
    PQclear(res);
    *out = defs;
    return n;
}

/* A JSON string member of the stored envelope (NULL when absent or not a string): the
 * fields a group filter may name besides `where`. */
static char *envelope_string(const entry_view *v, const char *member)
{
    char *segs[] = {(char *)member};
    jsonscan_value val;
    if (!jsonscan_find(v->json, v->json_len, segs, 1, &val) || val.kind != JSONSCAN_STRING)
        return NULL;
    size_t cap = (size_t)(val.end - val.start) + 1;
    char *s = xmalloc(cap);
    if (jsonscan_string(&val, s, cap) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

bool groups_filter_passes(const group_def *d, const entry_view *v)
{
    if (!d->match) return true;
    char *key = envelope_string(v, "key"), *corr = envelope_string(v, "correlation_id");
    char *user = envelope_string(v, "user_id");
    stored_event_fields f = {v->position, v->id, d->tenant, d->stream, v->type, key,
                             corr ? corr : v->id, user, 0};
    stored_event *e = stored_event_make(&f, v->json, v->json_len);
    bool pass = filter_matches(d->match, e);
    stored_event_unref(e);
    free(key);
    free(corr);
    free(user);
    return pass;
}

/* XGROUP CREATE <key> <name> <id> MKSTREAM on an open connection. SL_OK, SL_UNAVAILABLE
 * or SL_CONFLICT (the group exists). */
static sl_status create_in_redis(redis_conn *r, const char *key, const char *name, const char *id)
{
    redisReply *rep = redis_command(r, key, "XGROUP CREATE %s %s %s MKSTREAM", key, name, id);
    sl_status rc = SL_OK;
    if (!reply_ok(rep)) rc = rep && strstr(rep->str, "BUSYGROUP") ? SL_CONFLICT : SL_UNAVAILABLE;
    freeReplyObject(rep);
    return rc;
}

/* The XGROUP CREATE id of a start ("$", "0" or a position). */
static void start_id(const char *start, char id[40])
{
    if (strcmp(start, "$") && strcmp(start, "0"))
        snprintf(id, 40, "%s-0", start);
    else
        snprintf(id, 40, "%s", start);
}

sl_status groups_restore(redis_conn *r, const group_def *d)
{
    char id[40], floor[24];
    if (d->acked_floor >= 0) {
        snprintf(floor, sizeof floor, "%lld", d->acked_floor);
        start_id(floor, id);
    } else {
        start_id(d->start, id);
    }
    char *key = streams_redis_name(cfg, d->tenant, d->stream);
    sl_status rc = create_in_redis(r, key, d->name, id);
    if (rc == SL_OK)
        log_warn("groups", "the consumer group was missing in Redis; recreated at its acknowledged "
                           "floor (messages after it are delivered again)",
                 json_pack("{s:s,s:s,s:s,s:s}", "tenant", d->tenant, "stream", d->stream, "group",
                           d->name, "from", id));
    free(key);
    return rc == SL_CONFLICT ? SL_OK : rc;
}

void groups_save_floor(PGconn **conn, const group_def *d, long long floor)
{
    char f[24];
    snprintf(f, sizeof f, "%lld", floor);
    const char *p[] = {d->tenant, d->stream, d->name, f};
    PGresult *res = db_exec(conn,
                            "UPDATE consumer_groups SET acked_floor = $4::bigint WHERE tenant_id "
                            "= $1 AND stream = $2 AND name = $3 AND (acked_floor IS NULL OR "
                            "acked_floor < $4::bigint)",
                            4, p, GROUPS_TIMEOUT_MS);
    PQclear(res);
}

/* ------------------------------------------------------------------ groups API */

/* The policy and start a create request asks for, with the defaults for what it leaves out.
 * The request has passed its request schema (reqschema.h), so every field it has is of the
 * right type and range. */
static group_policy policy_from_request(json_t *req, char start[32])
{
    group_policy p = {3, 1000, 30000, 30000, true, RETRY_EXPONENTIAL};
    json_t *st = json_object_get(req, "start"), *retry = json_object_get(req, "retry"), *v;
    if (json_is_integer(st))
        snprintf(start, 32, "%lld", (long long)json_integer_value(st));
    else
        snprintf(start, 32, "%s", st ? json_string_value(st) : "$");
    if ((v = json_object_get(req, "max_deliveries"))) p.max_deliveries = (int)json_integer_value(v);
    if ((v = json_object_get(req, "ack_timeout_ms"))) p.ack_timeout_ms = (int)json_integer_value(v);
    if ((v = json_object_get(retry, "base_delay_ms"))) p.base_delay_ms = (int)json_integer_value(v);
    if ((v = json_object_get(retry, "max_delay_ms"))) p.max_delay_ms = (int)json_integer_value(v);
    if ((v = json_object_get(retry, "jitter"))) p.jitter = json_is_true(v);
    p.strategy = deliveries_strategy(json_string_value(json_object_get(retry, "strategy")));
    return p;
}

/* The group's policy as the API shows it. */
static json_t *policy_json(const group_policy *p)
{
    return json_pack("{s:i,s:{s:s,s:i,s:i,s:b},s:i}", "max_deliveries", p->max_deliveries, "retry",
                     "strategy", deliveries_strategy_name(p->strategy), "base_delay_ms",
                     p->base_delay_ms, "max_delay_ms", p->max_delay_ms, "jitter", p->jitter,
                     "ack_timeout_ms", p->ack_timeout_ms);
}

/* Stores the group's start, policy and filter, replacing what an earlier group of that name
 * had. SL_OK or SL_UNAVAILABLE. */
static sl_status definition_save(PGconn **conn, const char *tenant, const char *stream,
                                 const char *name, const char *start, const group_policy *p,
                                 const char *filter_text)
{
    char a[16], b[16], c[16], d[16];
    snprintf(a, sizeof a, "%d", p->max_deliveries);
    snprintf(b, sizeof b, "%d", p->base_delay_ms);
    snprintf(c, sizeof c, "%d", p->max_delay_ms);
    snprintf(d, sizeof d, "%d", p->ack_timeout_ms);
    const char *pv[] = {tenant, stream, name, start, a, b, c, p->jitter ? "t" : "f", d,
                        deliveries_strategy_name(p->strategy), filter_text};
    PGresult *res = db_exec(conn,
                            "INSERT INTO consumer_groups (tenant_id, stream, name, start, "
                            "max_deliveries, base_delay_ms, max_delay_ms, jitter, "
                            "ack_timeout_ms, strategy, filter, acked_floor) VALUES ($1,$2,$3,$4,"
                            "$5,$6,$7,$8,$9,$10,$11::jsonb,NULL) ON CONFLICT (tenant_id, stream, "
                            "name) DO UPDATE SET start = EXCLUDED.start, max_deliveries = "
                            "EXCLUDED.max_deliveries, base_delay_ms = EXCLUDED.base_delay_ms, "
                            "max_delay_ms = EXCLUDED.max_delay_ms, jitter = EXCLUDED.jitter, "
                            "ack_timeout_ms = EXCLUDED.ack_timeout_ms, strategy = "
                            "EXCLUDED.strategy, filter = EXCLUDED.filter, acked_floor = NULL",
                            11, pv, GROUPS_TIMEOUT_MS);
    sl_status rc = db_ok(res) ? SL_OK : SL_UNAVAILABLE;
    PQclear(res);
    return rc;
}

sl_status groups_create(PGconn **conn, const char *tenant, const char *stream, json_t *req,
                        json_t **answer)
{
    char start[32], id[40];
    group_policy p = policy_from_request(req, start);
    start_id(start, id);
    const char *name = json_string_value(json_object_get(req, "name"));
    json_t *fj = json_object_get(req, "filter");
    filter *match = NULL;
    filter_error err;
    if (filter_compile(fj, tenant, &match, &err) < 0) {
        *answer = problem_newf(err.where ? "invalid_filter" : "invalid_request", "filter: %s",
                               err.message);
        return SL_REFUSED;
    }
    char *filter_text = match ? json_dumps(fj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (match) {
        filter_dispose(match);
        free(match);
    }
    char *key = streams_redis_name(cfg, tenant, stream);
    redis_conn *r = redis_open();
    sl_status rc = r ? create_in_redis(r, key, name, id) : SL_UNAVAILABLE;
    if (r) redis_free(r);
    if (rc == SL_OK) rc = definition_save(conn, tenant, stream, name, start, &p, filter_text);
    if (rc == SL_OK) {
        *answer = policy_json(&p);
        json_object_set_new(*answer, "name", json_string(name));
        json_object_set_new(*answer, "stream", json_string(stream));
        json_object_set_new(*answer, "redis_stream", json_string(key));
        json_object_set_new(*answer, "start", json_string(start));
        json_object_set_new(*answer, "filter", filter_text ? json_loads(filter_text, 0, NULL)
                                                           : json_null());
    }
    free(filter_text);
    free(key);
    return rc;
}

/* Copies Redis's view of group `name` (consumers, pending, last delivered id, lag …) from
 * XINFO GROUPS into `g`; whether Redis has the group. */
static bool add_redis_view(redisReply *info, const char *name, json_t *g)
{
    for (size_t k = 0; info && info->type == REDIS_REPLY_ARRAY && k < info->elements; k++) {
        redisReply *e = info->element[k];
        bool match = false;
        for (size_t f = 0; e->type == REDIS_REPLY_ARRAY && f + 1 < e->elements; f += 2)
            if (e->element[f]->str && !strcmp(e->element[f]->str, "name") &&
                e->element[f + 1]->str && !strcmp(e->element[f + 1]->str, name))
                match = true;
        if (!match) continue;
        for (size_t f = 0; f + 1 < e->elements; f += 2) {
            const char *field = e->element[f]->str;
            redisReply *val = e->element[f + 1];
            if (!field || !strcmp(field, "name")) continue;
            json_t *jv = val->type == REDIS_REPLY_INTEGER ? json_integer(val->integer)
                         : val->str                      ? json_string(val->str)
                                                         : json_null();
            char fname[64];
            snprintf(fname, sizeof fname, "%s", field);
            for (char *c = fname; *c; c++)
                if (*c == '-') *c = '_';
            json_object_set_new(g, fname, jv ? jv : json_null());
        }
        return true;
    }
    return false;
}

sl_status groups_list(PGconn **conn, const char *tenant, const char *stream, json_t **answer)
{
    const char *p[] = {tenant, stream};
    PGresult *res = db_exec(conn,
                            "SELECT " DEF_COLUMNS ", (SELECT count(*) FROM dead_letters d WHERE "
                            "d.tenant_id = g.tenant_id AND d.stream = g.stream AND d.group_name = "
                            "g.name AND d.source = 'group' AND d.status IN ('open', "
                            "'reprocessing')) FROM consumer_groups g WHERE tenant_id = $1 AND "
                            "stream = $2 ORDER BY name",
                            2, p, GROUPS_TIMEOUT_MS);
    if (!db_ok(res)) {
        PQclear(res);
        return SL_UNAVAILABLE;
    }
    char *key = streams_redis_name(cfg, tenant, stream);
    redis_conn *r = redis_open();
    redisReply *info = r ? redis_command(r, key, "XINFO GROUPS %s", key) : NULL;
    bool no_stream = info && info->type == REDIS_REPLY_ERROR; /* "no such key": Redis lost it */
    json_t *groups = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        group_def d;
        def_from_row(res, i, &d);
        json_t *g = policy_json(&d.policy);
        json_object_set_new(g, "name", json_string(d.name));
        json_object_set_new(g, "start", json_string(d.start));
        json_object_set_new(g, "filter", PQgetisnull(res, i, 9)
                                             ? json_null()
                                             : json_loads(PQgetvalue(res, i, 9), 0, NULL));
        json_object_set_new(g, "acked_floor",
                            d.acked_floor >= 0 ? json_integer(d.acked_floor) : json_null());
        json_object_set_new(g, "dead_letters",
                            json_integer(strtoll(PQgetvalue(res, i, 12), NULL, 10)));
        bool there = add_redis_view(no_stream ? NULL : info, d.name, g);
        /* Redis answered and has no such group: the sweeper recreates it at acked_floor. */
        if (r && (no_stream || reply_ok(info)))
            json_object_set_new(g, "in_redis", json_boolean(there));
        json_array_append_new(groups, g);
        group_def_dispose(&d);
    }
    PQclear(res);
    freeReplyObject(info);
    if (r) redis_free(r);
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
    redis_conn *r = redis_open();
    if (!r) return SL_UNAVAILABLE;
    group_ref g;
    group_ref_init(&g, cfg, tenant, stream, name);
    freeReplyObject(redis_command(r, g.key, "XGROUP DESTROY %s %s", g.key, name));
    freeReplyObject(redis_command(r, g.handback, "DEL %s %s", g.handback, g.due));
    group_ref_dispose(&g);
    redis_free(r);
    return SL_OK;
}

/* ------------------------------------------------------------------ nack by event id */

/* The attempts an entry pending with a worker has had: its count, or one more than the
 * count it was handed back with when the worker has not re-read it since (deliveries.h).
 * -1 on a Redis error. */
static long long attempts_of(redis_conn *r, const group_ref *g, long long position, long long count)
{
    long long hb = -1;
    if (deliveries_marks(r, g->handback, &position, 1, &hb) < 0) return -1;
    return hb >= 0 && hb + 1 > count ? hb + 1 : count;
}

/* Where an event stands in a group, for a nack by event id: its position and, when it is
 * pending, its owner and count (*pend, caller frees). SL_OK, SL_UNAVAILABLE, or SL_REFUSED
 * with *answer. */
static sl_status find_pending(PGconn **conn, redis_conn *r, const group_ref *g,
                              const char *event_id, long long *position, redisReply **pend,
                              json_t **answer)
{
    const char *p[] = {g->tenant, event_id, g->stream};
    PGresult *res = db_exec(conn,
                            "SELECT i.position FROM event_ids i JOIN events e ON e.position = "
                            "i.position WHERE i.tenant_id = $1 AND i.id = $2 AND e.stream = $3",
                            3, p, GROUPS_TIMEOUT_MS);
    if (!db_ok(res)) {
        PQclear(res);
        return SL_UNAVAILABLE;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        *answer = problem_newf("not_found", "no event '%s' in stream '%s'", event_id, g->stream);
        return SL_REFUSED;
    }
    *position = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    *pend = redis_command(r, g->key, "XPENDING %s %s %lld-0 %lld-0 1", g->key, g->group, *position,
                          *position);
    if (!*pend || (*pend)->type == REDIS_REPLY_ERROR) {
        bool nogroup = *pend && strstr((*pend)->str, "NOGROUP");
        freeReplyObject(*pend);
        *pend = NULL;
        if (!nogroup) return SL_UNAVAILABLE;
    }
    if (!*pend || (*pend)->type != REDIS_REPLY_ARRAY || (*pend)->elements != 1) {
        *answer = problem_newf("conflict",
                               "event '%s' is not pending in group '%s' (already acknowledged, "
                               "dead-lettered, or never delivered)",
                               event_id, g->group);
        return SL_REFUSED;
    }
    const char *owner = (*pend)->element[0]->element[1]->str;
    if (!strncmp(owner, "sluice-", 7)) {
        *answer = problem_newf("conflict", "event '%s' is already %s in group '%s'", event_id,
                               strcmp(owner, DELIVERIES_DEAD_CONSUMER) ? "waiting for a retry"
                                                                       : "a dead letter",
                               g->group);
        return SL_REFUSED;
    }
    return SL_OK;
}

sl_status groups_nack(PGconn **conn, const char *tenant, const char *stream, const char *group,
                      json_t *req, json_t **answer)
{
    const char *event_id = json_string_value(json_object_get(req, "event_id"));
    json_t *err = json_object_get(req, "error"), *retryable = json_object_get(req, "retryable");
    group_def d;
    sl_status rc = groups_load(conn, tenant, stream, group, &d);
    if (rc != SL_OK) return rc;
    redis_conn *r = redis_open();
    if (!r) {
        group_def_dispose(&d);
        return SL_UNAVAILABLE;
    }
    group_ref g;
    group_ref_init(&g, cfg, tenant, stream, group);
    long long position = 0;
    redisReply *pend = NULL;
    rc = find_pending(conn, r, &g, event_id, &position, &pend, answer);
    if (rc != SL_OK) goto out;
    const char *consumer = pend->element[0]->element[1]->str;
    long long count = pend->element[0]->element[3]->integer;
    long long attempts = attempts_of(r, &g, position, count);
    bool dead = (retryable && json_is_false(retryable)) || attempts >= d.policy.max_deliveries;
    const char *why = err ? json_string_value(err) : "nacked";
    /* Only if still pending with this worker at this count: the sweeper may have timed it
     * out meanwhile (then the nack is late: 409, nothing recorded). */
    entry_seen seen = {consumer, count, 0};
    int moved = dead ? deliveries_dead_letter(conn, r, &g, position, consumer, attempts, seen, why)
                     : deliveries_park(r, &g, position, seen, attempts, 0);
    if (moved == MOVE_DONE && !dead)
        deliveries_record_failure(conn, &g, position, consumer, why, attempts);
    if (moved == MOVE_REDIS_ERROR || moved == -3) {
        rc = SL_UNAVAILABLE;
    } else if (moved != MOVE_DONE) {
        *answer = problem_newf("conflict", "event '%s' was just moved by the retry sweeper "
                                           "(timed out); see GET /v1/dead-letters", event_id);
        rc = SL_REFUSED;
    } else {
        *answer = json_pack("{s:s,s:s,s:I,s:s}", "event_id", event_id, "group", group,
                            "delivery_count", (json_int_t)attempts, "status",
                            dead ? "dead_lettered" : "retry_scheduled");
        if (!dead)
            json_object_set_new(*answer, "retry_in_ms",
                                json_integer(deliveries_backoff_ms(&d.policy, attempts, position)));
    }
out:
    freeReplyObject(pend);
    redis_free(r);
    group_ref_dispose(&g);
    group_def_dispose(&d);
    return rc;
}

sl_status groups_redeliver(const char *tenant, const char *stream, const char *group,
                           long long position)
{
    redis_conn *r = redis_open();
    if (!r) return SL_UNAVAILABLE;
    group_ref g;
    group_ref_init(&g, cfg, tenant, stream, group);
    int moved = deliveries_revive(r, &g, position);
    sl_status rc = moved == MOVE_DONE ? SL_OK : moved == MOVE_REDIS_ERROR ? SL_UNAVAILABLE
                                                                          : SL_NOT_FOUND;
    group_ref_dispose(&g);
    redis_free(r);
    return rc;
}

sl_status groups_ack(const char *tenant, const char *stream, const char *group, long long position)
{
    redis_conn *r = redis_open();
    if (!r) return SL_UNAVAILABLE;
    char *key = streams_redis_name(cfg, tenant, stream);
    redisReply *rep = redis_command(r, key, "XACK %s %s %lld-0", key, group, position);
    sl_status rc = reply_ok(rep) ? SL_OK : SL_UNAVAILABLE;
    freeReplyObject(rep);
    free(key);
    redis_free(r);
    return rc;
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
static void read_group_info(redis_conn *r, const char *key, group_gauges *g)
{
    redisReply *info = redis_command(r, key, "XINFO GROUPS %s", key);
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
static void read_parked(redis_conn *r, const char *key, group_gauges *g)
{
    redisReply *sum = redis_command(r, key, "XPENDING %s %s", key, g->name);
    if (reply_ok(sum) && sum->type == REDIS_REPLY_ARRAY && sum->elements == 4) {
        g->retrying = g->dead = 0;
        redisReply *cs = sum->element[3];
        for (size_t k = 0; cs->type == REDIS_REPLY_ARRAY && k < cs->elements; k++) {
            redisReply *c = cs->element[k];
            if (c->type != REDIS_REPLY_ARRAY || c->elements != 2 || !c->element[0]->str) continue;
            long long count = c->element[1]->str ? strtoll(c->element[1]->str, NULL, 10) : 0;
            if (!strcmp(c->element[0]->str, DELIVERIES_RETRY_CONSUMER)) g->retrying = count;
            if (!strcmp(c->element[0]->str, DELIVERIES_DEAD_CONSUMER)) g->dead = count;
        }
    }
    freeReplyObject(sum);
}

/* consumers, from XINFO CONSUMERS: Sluice's own parking consumers are not counted. */
static void count_workers(redis_conn *r, const char *key, group_gauges *g)
{
    redisReply *cons = redis_command(r, key, "XINFO CONSUMERS %s %s", key, g->name);
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
    redis_conn *r = n ? redis_open() : NULL;
    for (int i = 0; r && i < n; i++) {
        char *key = streams_redis_name(cfg, gs[i].tenant, gs[i].stream);
        read_group_info(r, key, &gs[i]);
        read_parked(r, key, &gs[i]);
        count_workers(r, key, &gs[i]);
        free(key);
        if (redis_failed(r)) break;
    }
    if (r) redis_free(r);
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
