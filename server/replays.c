/*
 * replays.c — replay jobs (see replays.h).
 */
#include "replays.h"
#include "worker.h"
#include "jsonparse.h"
#include "jsonscan.h"
#include "locks.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "problem.h"
#include "reads.h"
#include "redis.h"
#include "store.h"
#include "timeutil.h"
#include "ulid.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define REPLAY_LOCK_KEY LOCK_REPLAYS
#define REPLAY_PAGE 500
#define REPLAY_TIMEOUT_MS 30000

static const sluice_config *cfg;
static worker_thread runner; /* the replays thread */

/* ------------------------------------------------------------------ filters */

/* Parses a replay's {"filter": {...}} (filter.h's members, and from_position,
 * to_position) into r for `tenant`. 0, or -1 with *err. */
static int parse_filter(const json_t *fobj, const char *tenant, read_filter *r, long long *from,
                        long long *to, filter_error *err)
{
    static const char *const positions[] = {"from_position", "to_position", NULL};
    memset(r, 0, sizeof *r);
    snprintf(r->f.tenant, sizeof r->f.tenant, "%s", tenant);
    if (filter_parse_json(&r->f, fobj, NULL, positions, err) < 0) return -1;
    json_t *fp = json_object_get(fobj, "from_position"), *tp = json_object_get(fobj, "to_position");
    if ((fp && (!json_is_integer(fp) || json_integer_value(fp) < 0)) ||
        (tp && (!json_is_integer(tp) || json_integer_value(tp) < 0))) {
        store_filter_dispose(r);
        err->where = false;
        snprintf(err->message, sizeof err->message,
                 "from_position and to_position must be non-negative integers");
        return -1;
    }
    *from = fp ? (long long)json_integer_value(fp) : 0;
    *to = tp ? (long long)json_integer_value(tp) : -1;
    return 0;
}

static bool target_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 200) return false;
    for (; *t; t++)
        if ((unsigned char)*t <= ' ' || *t == 0x7f) return false;
    return true;
}

/* ------------------------------------------------------------------ runner */

typedef struct page_ctx {
    redis_batch *batch; /* the page's XADDs, sent together */
    const char *target;
    int appended;
    long long last;
    long long positions[REPLAY_PAGE]; /* of the entries appended, in order */
} page_ctx;

static int add_row(const char *line, size_t len, void *arg)
{
    page_ctx *p = arg;
    /* The entry's fields come straight from the envelope's text (jsonscan.h): a row is
     * never parsed whole, so no number in its data can make it unreadable. */
    char *f_pos[] = {"position"}, *f_id[] = {"id"}, *f_type[] = {"type"};
    jsonscan_value vp, vi, vt;
    char ev_id[ENVELOPE_ID_MAX * 6 + 1], ev_type[ENVELOPE_TYPE_MAX * 6 + 1];
    if (!jsonscan_find(line, len, f_pos, 1, &vp) || vp.kind != JSONSCAN_NUMBER ||
        !jsonscan_find(line, len, f_id, 1, &vi) || jsonscan_string(&vi, ev_id, sizeof ev_id) < 0 ||
        !jsonscan_find(line, len, f_type, 1, &vt) ||
        jsonscan_string(&vt, ev_type, sizeof ev_type) < 0)
        return 1;
    long long pos = strtoll(vp.start, NULL, 10);
    char id[32], posText[24];
    snprintf(id, sizeof id, "%lld-0", pos);
    snprintf(posText, sizeof posText, "%lld", pos);
    const char *argv[] = {"XADD",
                          p->target,
                          id,
                          "id",
                          ev_id,
                          "type",
                          ev_type,
                          "position",
                          posText,
                          "event",
                          line};
    size_t argl[11];
    for (int i = 0; i < 10; i++)
        argl[i] = strlen(argv[i]);
    argl[10] = len;
    redis_batch_add_argv(p->batch, p->target, 11, argv, argl);
    p->positions[p->appended] = pos;
    p->appended++;
    p->last = pos;
    return 0;
}

/* How one page of a job went. */
typedef enum {
    PAGE_MORE = 1,    /* more to do */
    PAGE_DONE = 0,    /* the job is finished */
    PAGE_FAILED = -1, /* the job failed (err says why) */
    PAGE_RETRY = -2,  /* Redis or PostgreSQL trouble (err says which): retry later */
} page_rc;

/* Runs one page of one job: the events read on `reader` (the primary's `conn`, or a replica
 * that has replayed `to`), the checkpoint saved on `conn`. */
static page_rc run_page(PGconn **conn, PGconn **reader, redis_conn *r, const char *id,
                        const char *tenant, json_t *fobj, const char *target, long long *position,
                        long long to, int page_size, char err[256])
{
    read_filter f;
    long long from, to_ignored;
    filter_error ferr;
    if (!fobj) { /* never "no filter": that would replay the tenant's whole history */
        snprintf(err, 256, "the stored filter does not parse");
        return PAGE_FAILED;
    }
    if (parse_filter(fobj, tenant, &f, &from, &to_ignored, &ferr) < 0) {
        snprintf(err, 256, "%s", ferr.message);
        return PAGE_FAILED;
    }
    f.after = *position;
    f.upto = to;
    f.limit = page_size;
    redis_batch batch;
    redis_batch_init(&batch);
    page_ctx p = {.batch = &batch, .target = target};
    store_stream_rc rc = store_stream(reader, REPLAY_TIMEOUT_MS, &f, add_row, &p);
    store_filter_dispose(&f);
    if (rc != STORE_STREAM_END) {
        redis_batch_dispose(&batch);
        snprintf(err, 256, "reading the log failed");
        return PAGE_RETRY;
    }
    /* Every reply is read before any XRANGE below is sent on the same connection. Entries
     * with explicit ids are harmless twice, so a cluster may send them again. */
    if (redis_batch_run(r, &batch, true) > 0) {
        redis_batch_dispose(&batch);
        snprintf(err, 256, "redis failed");
        return PAGE_RETRY;
    }
    for (int i = 0; i < p.appended; i++) {
        redisReply *rep = batch.replies[i];
        bool bad = rep->type == REDIS_REPLY_ERROR && !strstr(rep->str, "equal or smaller");
        bool older = rep->type == REDIS_REPLY_ERROR && !bad;
        if (bad) {
            snprintf(err, 256, "redis refused: %.200s", rep->str);
            redis_batch_dispose(&batch);
            return PAGE_FAILED;
        }
        if (older) { /* already added by an earlier run of this job, or the target is newer? */
            redisReply *x = redis_command(r, target, "XRANGE %s %lld-0 %lld-0", target,
                                          p.positions[i], p.positions[i]);
            bool ours = x && x->type == REDIS_REPLY_ARRAY && x->elements == 1;
            freeReplyObject(x);
            if (!ours) {
                snprintf(err, 256,
                         "the target stream holds entries newer than the replayed "
                         "events; replay into a new stream");
                redis_batch_dispose(&batch);
                return PAGE_FAILED;
            }
        }
    }
    redis_batch_dispose(&batch);
    long long next = p.appended < page_size ? to : p.last;
    char pos_text[24], n_text[16];
    snprintf(pos_text, sizeof pos_text, "%lld", next);
    snprintf(n_text, sizeof n_text, "%d", p.appended);
    const char *up[] = {id, pos_text, n_text, p.appended < page_size ? "done" : "running"};
    PGresult *res = db_exec(conn,
                            "UPDATE replays SET position = $2::bigint, replayed = replayed + "
                            "$3::bigint, status = $4, updated_at = now() WHERE id = $1 AND "
                            "status = 'running'",
                            4, up, REPLAY_TIMEOUT_MS);
    bool ok = db_ok(res);
    PQclear(res);
    if (!ok) {
        snprintf(err, 256, "saving the checkpoint failed");
        return PAGE_RETRY;
    }
    *position = next;
    return p.appended < page_size ? PAGE_DONE : PAGE_MORE;
}

static void fail_job(PGconn **conn, const char *id, const char *err)
{
    const char *p[] = {id, err};
    PGresult *r = db_exec(conn,
                          "UPDATE replays SET status = 'failed', error = $2, updated_at = now() "
                          "WHERE id = $1 AND status = 'running'",
                          2, p, REPLAY_TIMEOUT_MS);
    PQclear(r);
    log_warn("replays", "replay failed", json_pack("{s:s,s:s}", "id", id, "error", err));
}

static void *runner_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL, *replica = NULL; /* replica: SLUICE_READ_DATABASE_URL's (reads.h) */
    int64_t replica_retry_at = 0;        /* after a failed connect, not before this */
    redis_conn *r = NULL;
    bool leader = false;
    while (!worker_stopping(&runner)) {
        if (!conn) {
            leader = false;
            if (!(conn = db_connect(cfg->database_url, "replays"))) {
                usleep(500 * 1000);
                continue;
            }
        }
        if (!leader) {
            PGresult *l = db_exec(&conn, "SELECT pg_try_advisory_lock(" REPLAY_LOCK_KEY ")", 0,
                                  NULL, REPLAY_TIMEOUT_MS);
            leader = db_ok(l) && PQgetvalue(l, 0, 0)[0] == 't';
            PQclear(l);
            if (!leader) {
                usleep(500 * 1000);
                continue;
            }
        }
        PGresult *jobs = db_exec(&conn,
                                 "SELECT id, tenant_id, filter::text, target, position, "
                                 "to_position, max_per_second FROM replays WHERE status = "
                                 "'running' ORDER BY created_at",
                                 0, NULL, REPLAY_TIMEOUT_MS);
        if (!db_ok(jobs)) {
            PQclear(jobs);
            continue;
        }
        int n = PQntuples(jobs);
        if (n && !r) r = redis_connect(cfg->redis_url, 2000, "replays");
        for (int i = 0; i < n && r && conn && !worker_stopping(&runner); i++) {
            char *id = xstrdup(PQgetvalue(jobs, i, 0)), *tenant = xstrdup(PQgetvalue(jobs, i, 1));
            char *target = xstrdup(PQgetvalue(jobs, i, 3));
            json_t *fobj = jsonparse_stored(PQgetvalue(jobs, i, 2));
            long long pos = strtoll(PQgetvalue(jobs, i, 4), NULL, 10);
            long long to = strtoll(PQgetvalue(jobs, i, 5), NULL, 10);
            int rate = atoi(PQgetvalue(jobs, i, 6));
            char err[256] = "";
            int64_t started = time_mono_ms();
            /* Pace with pages of a fifth of a second's worth, so a slow job never holds the
             * runner (or a shutdown) for long, and jobs take turns. */
            int page = rate / 5;
            if (page < 1) page = 1;
            if (page > REPLAY_PAGE) page = REPLAY_PAGE;
            PGconn **reader = &conn;
            if (reads_replica()) {
                if (!replica && time_mono_ms() >= replica_retry_at &&
                    !(replica = reads_connect_replica("replays")))
                    replica_retry_at = time_mono_ms() + 5000;
                if (reads_replica_has(&replica, to)) reader = &replica;
            }
            page_rc rc = run_page(&conn, reader, r, id, tenant, fobj, target, &pos, to, page, err);
            if (rc == PAGE_FAILED && conn) fail_job(&conn, id, err);
            if (rc == PAGE_RETRY) { /* Redis or PostgreSQL trouble: retry later, nothing is lost */
                if (r) redis_free(r);
                r = NULL;
            }
            int64_t budget = rate > 0 ? (int64_t)page * 1000 / rate : 0;
            while (rc == PAGE_MORE && time_mono_ms() - started < budget &&
                   !worker_stopping(&runner))
                usleep(20 * 1000);
            free(id);
            free(tenant);
            free(target);
            json_decref(fobj);
        }
        PQclear(jobs);
        if (n == 0) usleep(200 * 1000);
        if (n && !r) usleep(500 * 1000);
    }
    if (r) redis_free(r);
    PQfinish(conn);
    PQfinish(replica);
    return NULL;
}

int replays_start(const sluice_config *c)
{
    cfg = c;
    return worker_start(&runner, runner_main);
}

void replays_stop(void)
{
    worker_stop(&runner);
}

/* ------------------------------------------------------------------ API */

#define REPLAY_COLUMNS                                                                             \
    "id, status, filter::text, target, position, to_position, replayed, total, error, "            \
    "max_per_second, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static json_t *replay_row(PGresult *r)
{
    return json_pack(
        "{s:s,s:s,s:o,s:{s:s},s:I,s:I,s:I,s:o,s:o,s:i,s:s}", "id", PQgetvalue(r, 0, 0), "status",
        PQgetvalue(r, 0, 1), "filter", jsonparse_stored(PQgetvalue(r, 0, 2)), "target",
        "redis_stream", PQgetvalue(r, 0, 3), "position",
        (json_int_t)strtoll(PQgetvalue(r, 0, 4), NULL, 10), "to_position",
        (json_int_t)strtoll(PQgetvalue(r, 0, 5), NULL, 10), "replayed",
        (json_int_t)strtoll(PQgetvalue(r, 0, 6), NULL, 10), "total",
        PQgetisnull(r, 0, 7) ? json_null() : json_integer(strtoll(PQgetvalue(r, 0, 7), NULL, 10)),
        "error", PQgetisnull(r, 0, 8) ? json_null() : json_string(PQgetvalue(r, 0, 8)),
        "max_per_second", atoi(PQgetvalue(r, 0, 9)), "created_at", PQgetvalue(r, 0, 10));
}

sl_status replays_create(PGconn **conn, const char *tenant, json_t *req, json_t **answer)
{
    json_t *target = json_object_get(json_object_get(req, "target"), "redis_stream");
    json_t *rate = json_object_get(req, "max_per_second");
    const char *k;
    json_t *v;
    bool fields_ok = json_is_object(req);
    json_object_foreach(req, k, v) if (strcmp(k, "filter") && strcmp(k, "target") &&
                                       strcmp(k, "max_per_second")) fields_ok = false;
    if (!fields_ok || !json_is_string(target) || !target_valid(json_string_value(target)) ||
        (rate && (!json_is_integer(rate) || json_integer_value(rate) < 1 ||
                  json_integer_value(rate) > 1000000))) {
        *answer = problem_new("invalid_request",
                              "expected {\"filter\":{…},\"target\":{\"redis_stream\":\"name\"},"
                              "\"max_per_second\":N (optional, default 5000)}");
        return SL_REFUSED;
    }
    /* Everything the request itself can be refused for is checked before any round trip. */
    read_filter f;
    long long from = 0, to = -1;
    filter_error ferr;
    if (parse_filter(json_object_get(req, "filter"), tenant, &f, &from, &to, &ferr) < 0) {
        *answer = problem_new(ferr.where ? "invalid_filter" : "invalid_request", ferr.message);
        return SL_REFUSED;
    }
    /* A tenant's replays write only under its own Redis namespace (tenant default: any
     * name outside other tenants'). */
    const char *prefix = cfg ? cfg->redis_prefix : "sluice:"; /* cfg: set by replays_start */
    size_t plen = strlen(prefix);
    const char *tname = json_string_value(target);
    if (strcmp(tenant, "default") == 0) {
        /* <prefix><t>:… is tenant t's namespace when t is a tenant (one with API keys). */
        const char *colon = strncmp(tname, prefix, plen) == 0 ? strchr(tname + plen, ':') : NULL;
        if (colon) {
            char *t = xstrndup(tname + plen, (size_t)(colon - tname - (long)plen));
            const char *tp[] = {t};
            PGresult *tr = db_exec(conn, "SELECT 1 FROM api_keys WHERE tenant_id = $1 LIMIT 1", 1,
                                   tp, REPLAY_TIMEOUT_MS);
            bool ok_db = db_ok(tr), foreign = ok_db && PQntuples(tr) > 0;
            PQclear(tr);
            if (!ok_db) {
                free(t);
                store_filter_dispose(&f);
                return SL_UNAVAILABLE;
            }
            if (foreign && strcmp(t, "default") != 0) {
                *answer = problem_newf("invalid_request", "%s%s:… streams belong to tenant '%s'",
                                       prefix, t, t);
                free(t);
                store_filter_dispose(&f);
                return SL_REFUSED;
            }
            free(t);
        }
    } else {
        char *ns = xasprintf("%s%s:", prefix, tenant);
        bool own = strncmp(json_string_value(target), ns, strlen(ns)) == 0;
        if (!own) {
            *answer = problem_newf("invalid_request",
                                   "tenant '%s' replays into Redis streams named %s…", tenant, ns);
            free(ns);
            store_filter_dispose(&f);
            return SL_REFUSED;
        }
        free(ns);
    }
    long long head = store_head(conn, REPLAY_TIMEOUT_MS);
    if (head < 0) {
        store_filter_dispose(&f);
        return SL_UNAVAILABLE;
    }
    if (to < 0 || to > head) to = head; /* the range is fixed now: history, not the future */
    f.after = from;
    f.upto = to > 0 ? to : -1;
    long long total = to > from ? store_count(conn, REPLAY_TIMEOUT_MS, &f) : 0;
    if (total < 0) {
        store_filter_dispose(&f);
        return SL_UNAVAILABLE;
    }
    store_filter_dispose(&f);
    char id[ULID_LEN + 8], from_t[24], to_t[24], total_t[24], rate_t[16];
    char ulid[ULID_LEN + 1];
    ulid_new(ulid);
    snprintf(id, sizeof id, "rpl_%s", ulid);
    snprintf(from_t, sizeof from_t, "%lld", from);
    snprintf(to_t, sizeof to_t, "%lld", to);
    snprintf(total_t, sizeof total_t, "%lld", to > from ? total : 0);
    snprintf(rate_t, sizeof rate_t, "%lld", rate ? (long long)json_integer_value(rate) : 5000LL);
    json_t *filter_in = json_object_get(req, "filter");
    char *filter_text = filter_in ? json_dumps(filter_in, JSON_COMPACT) : xstrdup("{}");
    int cap = cfg ? cfg->tenant_replays : 16;
    char cap_t[16];
    snprintf(cap_t, sizeof cap_t, "%d", cap);
    const char *p[] = {id,   tenant,  filter_text, json_string_value(target),      from_t,
                       to_t, total_t, rate_t,      to > from ? "running" : "done", cap_t};
    /* A tenant runs at most SLUICE_TENANT_REPLAYS replays at once, over every instance: the
     * count and the insert happen under one transaction lock, each INSERT's count a new
     * snapshot taken after the lock (READ COMMITTED), so two creates never both take the
     * last slot. A replay that has nothing to do is born done and needs none. */
    sl_status rc = SL_UNAVAILABLE;
    PGresult *r = NULL;
    PGresult *b[2] = {NULL, NULL};
    int nb = db_run(conn, "BEGIN; SELECT pg_advisory_xact_lock(" LOCK_REPLAY_CREATE ")", -1, NULL,
                    REPLAY_TIMEOUT_MS, b, 2);
    bool in_tx = nb >= 1 && db_ok(b[0]), begun = in_tx && nb == 2 && db_ok(b[1]);
    for (int i = 0; i < nb && i < 2; i++)
        PQclear(b[i]);
    if (begun)
        r = db_exec(conn,
                    "INSERT INTO replays (id, tenant_id, filter, target, position, "
                    "to_position, total, max_per_second, status) SELECT $1, $2, $3::jsonb, "
                    "$4, $5::bigint, $6::bigint, $7::bigint, $8::int, $9 WHERE $9 <> 'running' OR "
                    "(SELECT count(*) FROM replays WHERE tenant_id = $2 AND status = 'running') "
                    "< $10::int RETURNING " REPLAY_COLUMNS,
                    10, p, REPLAY_TIMEOUT_MS);
    if (db_ok(r)) {
        PGresult *c = db_exec(conn, "COMMIT", 0, NULL, REPLAY_TIMEOUT_MS);
        if (db_ok(c) && PQntuples(r) == 1) {
            *answer = replay_row(r);
            rc = SL_OK;
        } else if (db_ok(c)) {
            *answer = problem_newf("rate_limited",
                                   "tenant '%s' runs %d replays already (SLUICE_TENANT_REPLAYS); "
                                   "retry after one ends",
                                   tenant, cap);
            rc = SL_LIMITED;
        }
        PQclear(c);
    } else if (*conn && in_tx) { /* the pooled connection must not stay in the transaction */
        PQclear(db_exec(conn, "ROLLBACK", 0, NULL, REPLAY_TIMEOUT_MS));
    }
    PQclear(r);
    free(filter_text);
    return rc;
}

sl_status replays_get(PGconn **conn, const char *tenant, const char *id, json_t **answer)
{
    const char *p[] = {tenant, id};
    PGresult *r =
        db_exec(conn, "SELECT " REPLAY_COLUMNS " FROM replays WHERE tenant_id = $1 AND id = $2", 2,
                p, REPLAY_TIMEOUT_MS);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r)) {
        rc = PQntuples(r) == 1 ? SL_OK : SL_NOT_FOUND;
        if (rc == SL_OK) *answer = replay_row(r);
    }
    PQclear(r);
    return rc;
}

sl_status replays_cancel(PGconn **conn, const char *tenant, const char *id, json_t **answer)
{
    const char *p[] = {tenant, id};
    PGresult *r = db_exec(conn,
                          "UPDATE replays SET status = 'cancelled', updated_at = now() WHERE "
                          "tenant_id = $1 AND id = $2 AND status = 'running'",
                          2, p, REPLAY_TIMEOUT_MS);
    bool ok = db_ok(r);
    PQclear(r);
    if (!ok) return SL_UNAVAILABLE;
    return replays_get(conn, tenant, id, answer);
}
