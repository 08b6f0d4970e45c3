/*
 * sweeper.c — the leader's consumer-group sweeper (see sweeper.h).
 */
#include "sweeper.h"
#include "db.h"
#include "deliveries.h"
#include "groups.h"
#include "locks.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "strmap.h"
#include "timeutil.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SWEEP_EVERY_MS 200
#define SWEEP_BATCH 500
#define SWEEP_TIMEOUT_MS 10000
#define SWEEP_REDIS_TIMEOUT_MS 2000
#define FLOOR_EVERY_MS 1000
#define FORGET_EVERY_MS 10000
#define FORGET_BUDGET 200
/* A dead letter parked this long without its row is one a dying leader left behind. */
#define ORPHAN_AFTER_MS 5000

static const sluice_config *cfg;
static worker_thread runner;

/* What the sweeper remembers of a group between sweeps (leader memory only; a new leader
 * starts afresh, which costs at most a repeated scan). */
typedef struct group_memory {
    char over_read_cursor[32]; /* where the next page of the over-read scan starts */
    long long floor_at_ms;     /* when the floor was last measured */
    long long floor;           /* the floor last stored */
    long long forget_at_ms;
    long long forget_cursor[2]; /* handback, due */
} group_memory;

static strmap memories; /* sweeper thread only: "tenant\x1fstream\x1fname" → group_memory */

static group_memory *memory_of(const group_def *d)
{
    char key[400];
    snprintf(key, sizeof key, "%s\x1f%s\x1f%s", d->tenant, d->stream, d->name);
    group_memory *m = strmap_get(&memories, key);
    if (!m) {
        m = xcalloc(1, sizeof *m);
        snprintf(m->over_read_cursor, sizeof m->over_read_cursor, "-");
        m->floor = -1;
        strmap_put(&memories, key, m);
    }
    return m;
}

/* What one sweep of one group works on. */
typedef struct sweep {
    PGconn **conn;
    redis_conn *r;
    const group_def *d;
    group_ref g;
    group_memory *mem;
    long long now_ms;
} sweep;

static const char *entry_owner(const redisReply *e)
{
    return e->element[1]->str;
}

static long long entry_position(const redisReply *e)
{
    return strtoll(e->element[0]->str, NULL, 10);
}

/* ------------------------------------------------------------------ 1. lost groups */

/* The group's entry in XINFO GROUPS: its last delivered position in *last. False when Redis
 * does not have the group (or the stream); *unavailable on a Redis error. */
static bool group_present(const sweep *s, long long *last, bool *unavailable)
{
    redisReply *info = redis_command(s->r, s->g.key, "XINFO GROUPS %s", s->g.key);
    bool found = false;
    *unavailable = !info || (info->type == REDIS_REPLY_ERROR && !strstr(info->str, "no such key"));
    for (size_t k = 0; info && info->type == REDIS_REPLY_ARRAY && k < info->elements; k++) {
        redisReply *e = info->element[k];
        bool named = false;
        long long ld = 0;
        for (size_t f = 0; e->type == REDIS_REPLY_ARRAY && f + 1 < e->elements; f += 2) {
            const char *field = e->element[f]->str;
            const char *val = e->element[f + 1]->str;
            if (!field || !val) continue;
            if (!strcmp(field, "name") && !strcmp(val, s->d->name)) named = true;
            if (!strcmp(field, "last-delivered-id")) ld = strtoll(val, NULL, 10);
        }
        if (named) {
            found = true;
            *last = ld;
        }
    }
    freeReplyObject(info);
    return found;
}

/* ------------------------------------------------------------------ 2. timeouts */

/* A delivery not acknowledged in time: dead-lettered once it has had its max_deliveries,
 * else parked for its backoff with the failure recorded. Acted on only if still pending
 * with that worker at that count: the list it came from may be stale by now. */
static void fail_delivery(const sweep *s, long long position, const char *consumer,
                          long long count, long long attempts, const char *why)
{
    entry_seen seen = {consumer, count, 0};
    if (attempts >= s->d->policy.max_deliveries)
        (void)deliveries_dead_letter(s->conn, s->r, &s->g, position, consumer, attempts, seen, why);
    else if (deliveries_park(s->r, &s->g, position, seen, attempts, 0) == MOVE_DONE)
        deliveries_record_failure(s->conn, &s->g, position, consumer, why, attempts);
}

static void sweep_timed_out(const sweep *s)
{
    redisReply *late = redis_command(s->r, s->g.key, "XPENDING %s %s IDLE %d - + %d", s->g.key,
                                     s->d->name, s->d->policy.ack_timeout_ms, SWEEP_BATCH);
    int n = 0;
    long long *pos = NULL, *hb = NULL, *due = NULL;
    if (late && late->type == REDIS_REPLY_ARRAY && late->elements) {
        n = (int)late->elements;
        pos = xcalloc((size_t)n, sizeof *pos);
        hb = xcalloc((size_t)n, sizeof *hb);
        due = xcalloc((size_t)n, sizeof *due);
        for (int i = 0; i < n; i++) pos[i] = entry_position(late->element[i]);
        if (deliveries_marks(s->r, s->g.handback, pos, n, hb) < 0 ||
            deliveries_marks(s->r, s->g.due, pos, n, due) < 0)
            n = 0; /* Redis failed: the next sweep tries again */
    }
    for (int i = 0; i < n; i++) {
        redisReply *e = late->element[i];
        const char *consumer = entry_owner(e);
        if (!strncmp(consumer, "sluice-", 7)) continue;
        if (due[i] > s->now_ms) continue; /* extended */
        long long count = e->element[3]->integer;
        long long attempts = hb[i] >= 0 && hb[i] + 1 > count ? hb[i] + 1 : count;
        fail_delivery(s, pos[i], consumer, count, attempts,
                      due[i] >= 0 ? "not acknowledged within the extended deadline"
                                  : "not acknowledged within ack_timeout_ms");
    }
    free(pos);
    free(hb);
    free(due);
    freeReplyObject(late);
}

/* ------------------------------------------------------------------ 3. over-read */

static void sweep_over_read(sweep *s)
{
    redisReply *page = redis_command(s->r, s->g.key, "XPENDING %s %s %s + %d", s->g.key, s->d->name,
                                     s->mem->over_read_cursor, SWEEP_BATCH);
    size_t n = page && page->type == REDIS_REPLY_ARRAY ? page->elements : 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *e = page->element[i];
        const char *consumer = entry_owner(e);
        long long count = e->element[3]->integer;
        if (!strncmp(consumer, "sluice-", 7) || count <= s->d->policy.max_deliveries) continue;
        entry_seen seen = {consumer, count, 0};
        char why[128];
        snprintf(why, sizeof why, "read %lld times without an acknowledgement (max_deliveries %d)",
                 count, s->d->policy.max_deliveries);
        (void)deliveries_dead_letter(s->conn, s->r, &s->g, entry_position(e), consumer, count,
                                     seen, why);
    }
    if (n == SWEEP_BATCH)
        snprintf(s->mem->over_read_cursor, sizeof s->mem->over_read_cursor, "(%s",
                 page->element[n - 1]->element[0]->str);
    else
        snprintf(s->mem->over_read_cursor, sizeof s->mem->over_read_cursor, "-");
    freeReplyObject(page);
}

/* ------------------------------------------------------------------ 4. due retries */

/* The Redis worker that was active most recently in the group (caller frees), or NULL:
 * neither Sluice's own parking consumers nor consumer-API consumers. */
static char *pick_worker(const sweep *s)
{
    redisReply *rep = redis_command(s->r, s->g.key, "XINFO CONSUMERS %s %s", s->g.key, s->d->name);
    char *best = NULL;
    long long best_idle = -1;
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
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
        if (!name || !strncmp(name, "sluice-", 7) ||
            !strncmp(name, DELIVERIES_API_PREFIX, strlen(DELIVERIES_API_PREFIX)))
            continue;
        if (!best || idle < best_idle) {
            free(best);
            best = xstrdup(name);
            best_idle = idle;
        }
    }
    freeReplyObject(rep);
    return best;
}

static void sweep_parked(const sweep *s)
{
    redisReply *parked = redis_command(s->r, s->g.key, "XPENDING %s %s - + %d %s", s->g.key,
                                       s->d->name, SWEEP_BATCH, DELIVERIES_RETRY_CONSUMER);
    int n = parked && parked->type == REDIS_REPLY_ARRAY ? (int)parked->elements : 0;
    if (!n) {
        freeReplyObject(parked);
        return;
    }
    long long *pos = xcalloc((size_t)n, sizeof *pos), *due = xcalloc((size_t)n, sizeof *due);
    for (int i = 0; i < n; i++) pos[i] = entry_position(parked->element[i]);
    char *worker = NULL;
    bool looked = false;
    if (deliveries_marks(s->r, s->g.due, pos, n, due) < 0) n = 0;
    for (int i = 0; i < n; i++) {
        redisReply *e = parked->element[i];
        long long idle = e->element[2]->integer, count = e->element[3]->integer;
        bool is_due = due[i] >= 0 ? s->now_ms >= due[i]
                                  : idle >= deliveries_backoff_ms(&s->d->policy, count, pos[i]);
        if (!is_due) continue;
        if (!looked) {
            worker = pick_worker(s);
            looked = true;
        }
        if (!worker) break; /* no Redis worker: consumer-API fetches take it */
        entry_seen waiting = {DELIVERIES_RETRY_CONSUMER, count, 0};
        (void)deliveries_hand_back(s->r, &s->g, pos[i], waiting, worker);
    }
    free(worker);
    free(pos);
    free(due);
    freeReplyObject(parked);
}

/* ------------------------------------------------------------------ 5. orphans */

/* The positions among `dead` (XPENDING entries parked as dead) that have no dead-letter row,
 * in one query for the whole list (caller clears). */
static PGresult *rows_missing(const sweep *s, const redisReply *dead)
{
    buf arr;
    buf_init(&arr);
    buf_puts(&arr, "{");
    for (size_t i = 0; i < dead->elements; i++)
        buf_printf(&arr, "%s%lld", i ? "," : "", entry_position(dead->element[i]));
    buf_puts(&arr, "}");
    const char *dp[] = {s->d->tenant, s->d->stream, s->d->name, arr.data};
    PGresult *x = db_exec(s->conn,
                          "SELECT pos FROM unnest($4::bigint[]) pos WHERE NOT EXISTS (SELECT "
                          "1 FROM dead_letters WHERE tenant_id = $1 AND stream = $2 AND "
                          "group_name = $3 AND event_position = pos AND source = 'group')",
                          4, dp, SWEEP_TIMEOUT_MS);
    buf_dispose(&arr);
    return x;
}

static void sweep_dead_without_row(const sweep *s)
{
    redisReply *dead =
        redis_command(s->r, s->g.key, "XPENDING %s %s IDLE %d - + %d %s", s->g.key, s->d->name,
                      ORPHAN_AFTER_MS, SWEEP_BATCH, DELIVERIES_DEAD_CONSUMER);
    size_t ndead = dead && dead->type == REDIS_REPLY_ARRAY ? dead->elements : 0;
    PGresult *x = ndead ? rows_missing(s, dead) : NULL;
    for (int j = 0; db_ok(x) && j < PQntuples(x); j++) {
        long long pos = strtoll(PQgetvalue(x, j, 0), NULL, 10);
        for (size_t i = 0; i < ndead; i++) {
            redisReply *e = dead->element[i];
            if (entry_position(e) != pos) continue;
            entry_seen as_dead = {DELIVERIES_DEAD_CONSUMER, e->element[3]->integer,
                                  ORPHAN_AFTER_MS};
            (void)deliveries_dead_letter(s->conn, s->r, &s->g, pos, NULL, e->element[3]->integer,
                                         as_dead, NULL);
            break;
        }
    }
    PQclear(x);
    freeReplyObject(dead);
}

/* ------------------------------------------------------------------ 6. resolved */

/* Whether entry `pos` is no longer pending in the group (it was acknowledged). */
static bool acknowledged(const sweep *s, const char *pos)
{
    redisReply *pend =
        redis_command(s->r, s->g.key, "XPENDING %s %s %s-0 %s-0 1", s->g.key, s->d->name, pos, pos);
    bool acked = pend && pend->type == REDIS_REPLY_ARRAY && pend->elements == 0;
    freeReplyObject(pend);
    return acked;
}

static void sweep_reprocessed(const sweep *s)
{
    const char *pp[] = {s->d->tenant, s->d->stream, s->d->name};
    PGresult *re = db_exec(s->conn,
                           "SELECT id, event_position FROM dead_letters WHERE tenant_id = $1 AND "
                           "stream = $2 AND group_name = $3 AND source = 'group' AND status = "
                           "'reprocessing' LIMIT 500",
                           3, pp, SWEEP_TIMEOUT_MS);
    for (int i = 0; db_ok(re) && i < PQntuples(re); i++) {
        if (!acknowledged(s, PQgetvalue(re, i, 1))) continue;
        const char *up[] = {PQgetvalue(re, i, 0)};
        PGresult *u = db_exec(s->conn,
                              "UPDATE dead_letters SET status = 'resolved', history = history || "
                              "jsonb_build_array(jsonb_build_object('time', now(), 'status', "
                              "'resolved', 'note', 'acknowledged after reprocessing')) WHERE id = "
                              "$1::bigint AND status = 'reprocessing'",
                              1, up, SWEEP_TIMEOUT_MS);
        PQclear(u);
    }
    PQclear(re);
}

/* ------------------------------------------------------------------ 7. floor */

/* The position at or below which every message of the group was acknowledged or
 * dead-lettered: below the first entry pending with a worker or parked for a retry, else
 * the last delivered. -1 when Redis did not answer. */
static long long measure_floor(const sweep *s, long long last_delivered)
{
    redisReply *sum = redis_command(s->r, s->g.key, "XPENDING %s %s", s->g.key, s->d->name);
    if (!sum || sum->type != REDIS_REPLY_ARRAY || sum->elements != 4) {
        freeReplyObject(sum);
        return -1;
    }
    long long first = -1;
    redisReply *cs = sum->element[3];
    for (size_t k = 0; cs->type == REDIS_REPLY_ARRAY && k < cs->elements; k++) {
        redisReply *c = cs->element[k];
        if (c->type != REDIS_REPLY_ARRAY || c->elements != 2 || !c->element[0]->str) continue;
        if (!strcmp(c->element[0]->str, DELIVERIES_DEAD_CONSUMER)) continue;
        redisReply *one = redis_command(s->r, s->g.key, "XPENDING %s %s - + 1 %s", s->g.key,
                                        s->d->name, c->element[0]->str);
        if (one && one->type == REDIS_REPLY_ARRAY && one->elements == 1) {
            long long p = entry_position(one->element[0]);
            if (first < 0 || p < first) first = p;
        }
        freeReplyObject(one);
    }
    freeReplyObject(sum);
    return first > 0 ? first - 1 : last_delivered;
}

static void sweep_floor(sweep *s, long long last_delivered)
{
    if (s->now_ms - s->mem->floor_at_ms < FLOOR_EVERY_MS) return;
    s->mem->floor_at_ms = s->now_ms;
    long long floor = measure_floor(s, last_delivered);
    if (floor < 0 || floor <= s->mem->floor || floor <= s->d->acked_floor) return;
    groups_save_floor(s->conn, s->d, floor);
    s->mem->floor = floor;
}

/* ------------------------------------------------------------------ 8. marks */

static void sweep_marks(sweep *s)
{
    if (s->now_ms - s->mem->forget_at_ms < FORGET_EVERY_MS) return;
    s->mem->forget_at_ms = s->now_ms;
    deliveries_forget_settled(s->r, &s->g, s->g.handback, &s->mem->forget_cursor[0],
                              FORGET_BUDGET);
    deliveries_forget_settled(s->r, &s->g, s->g.due, &s->mem->forget_cursor[1], FORGET_BUDGET);
}

/* ------------------------------------------------------------------ the thread */

/* Whether group `d` is still defined: the list this round sweeps was read before it. 1 yes,
 * 0 no (deleted meanwhile), -1 unknown. */
static int still_defined(PGconn **conn, const group_def *d)
{
    const char *p[] = {d->tenant, d->stream, d->name};
    PGresult *res = db_exec(conn,
                            "SELECT 1 FROM consumer_groups WHERE tenant_id = $1 AND stream = $2 "
                            "AND name = $3",
                            3, p, SWEEP_TIMEOUT_MS);
    int rc = db_ok(res) ? PQntuples(res) > 0 : -1;
    PQclear(res);
    return rc;
}

/* A group missing in Redis is recreated at its acknowledged floor, unless it was deleted
 * while this round ran (DELETE removes the row, then the Redis group): checked before, and
 * after, when a DELETE between the check and the create would otherwise leave the group
 * recreated in Redis with no row; then it is destroyed again. */
static void restore(PGconn **conn, redis_conn *r, const group_ref *g, const group_def *d)
{
    if (still_defined(conn, d) != 1) return;
    if (groups_restore(r, d) != SL_OK) return;
    if (still_defined(conn, d) == 0)
        freeReplyObject(redis_command(r, g->key, "XGROUP DESTROY %s %s", g->key, d->name));
}

static void sweep_group(PGconn **conn, redis_conn *r, const group_def *d)
{
    sweep s = {conn, r, d, {0}, memory_of(d), (long long)time_now_ms()};
    group_ref_init(&s.g, cfg, d->tenant, d->stream, d->name);
    long long last = 0;
    bool unavailable = false;
    if (!group_present(&s, &last, &unavailable)) {
        if (!unavailable) restore(conn, r, &s.g, d);
        group_ref_dispose(&s.g);
        return; /* swept from the next round on */
    }
    sweep_timed_out(&s);
    sweep_over_read(&s);
    sweep_parked(&s);
    sweep_dead_without_row(&s);
    sweep_reprocessed(&s);
    sweep_floor(&s, last);
    sweep_marks(&s);
    group_ref_dispose(&s.g);
}

static void *sweeper_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    redis_conn *r = NULL;
    bool leader = false;
    while (!worker_stopping(&runner)) {
        usleep(SWEEP_EVERY_MS * 1000);
        if (!conn) {
            leader = false;
            if (!(conn = db_connect(cfg->database_url, "sweeper"))) continue;
        }
        if (!leader) {
            PGresult *l = db_exec(&conn, "SELECT pg_try_advisory_lock(" LOCK_GROUPS ")", 0,
                                  NULL, SWEEP_TIMEOUT_MS);
            leader = db_ok(l) && PQgetvalue(l, 0, 0)[0] == 't';
            PQclear(l);
            if (!leader) continue;
            log_info("sweeper", "this instance runs the consumer-group sweeper", NULL);
        }
        if (!r && !(r = redis_connect(cfg->redis_url, SWEEP_REDIS_TIMEOUT_MS, "sweeper")))
            continue;
        group_def *defs = NULL;
        int n = groups_load_all(&conn, &defs);
        for (int i = 0; i < n && conn && !worker_stopping(&runner); i++)
            sweep_group(&conn, r, &defs[i]);
        groups_defs_free(defs, n);
        if (r && redis_failed(r)) {
            redis_free(r);
            r = NULL;
        }
    }
    if (r) redis_free(r);
    PQfinish(conn);
    return NULL;
}

int sweeper_start(const sluice_config *c)
{
    cfg = c;
    strmap_init(&memories);
    return worker_start(&runner, sweeper_main);
}

void sweeper_stop(void)
{
    worker_stop(&runner);
    strmap_dispose(&memories, free);
}
