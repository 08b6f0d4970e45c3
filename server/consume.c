/*
 * consume.c — the consumer API (see consume.h).
 */
#include "consume.h"
#include "db.h"
#include "deliveries.h"
#include "jsonscan.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "problem.h"
#include "redis.h"
#include "strmap.h"
#include "timeutil.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSUME_REDIS_TIMEOUT_MS 2000
#define CONSUME_POLL_MS 200     /* waiting consumers look again at least this often */
#define CONSUME_DEF_TTL_MS 1000 /* a group definition is reloaded after this */
#define CONSUME_WS_SUBS 16      /* consume subscriptions per WebSocket connection */
#define CONSUME_READ_ROUNDS 4   /* XREADGROUP rounds per fetch when the filter skips events */

static const sluice_config *cfg;
static worker_thread runner;
static atomic_bool running; /* the consume thread serves consumers */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kick = PTHREAD_COND_INITIALIZER;
static bool woken; /* {lock} new entries in Redis, or work queued */

void consume_who_dispose(consume_who *w)
{
    free(w->stream);
    free(w->group);
    free(w->consumer);
    w->stream = w->group = w->consumer = NULL;
}

/* ------------------------------------------------------------------ Redis per thread */

static pthread_key_t redis_key;
static pthread_once_t redis_key_once = PTHREAD_ONCE_INIT;

static void redis_key_free(void *r)
{
    redis_free(r);
}

static void redis_key_init(void)
{
    (void)pthread_key_create(&redis_key, redis_key_free);
}

/* This thread's Redis connection (kept for the thread's life; reconnected after an error),
 * or NULL when Redis cannot be reached. */
static redis_conn *thread_redis(void)
{
    pthread_once(&redis_key_once, redis_key_init);
    redis_conn *r = pthread_getspecific(redis_key);
    if (r && !redis_failed(r)) return r;
    if (r) redis_free(r);
    r = redis_connect(cfg->redis_url, CONSUME_REDIS_TIMEOUT_MS, "consume");
    (void)pthread_setspecific(redis_key, r);
    return r;
}

/* Whether an operation that failed on `r` failed with the connection (Redis restarted, a
 * timeout): then this thread's connection is dropped, and the caller may try once more on
 * a new one (a kept connection learns that Redis went away only when it is used). */
static void thread_redis_drop(void);
static bool connection_failed(redis_conn *r)
{
    if (!r || !redis_failed(r)) return false;
    thread_redis_drop();
    return true;
}

/* Drops this thread's connection after a Redis error, so the next call reconnects. */
static void thread_redis_drop(void)
{
    pthread_once(&redis_key_once, redis_key_init);
    redis_conn *r = pthread_getspecific(redis_key);
    if (r) redis_free(r);
    (void)pthread_setspecific(redis_key, NULL);
}

/* ------------------------------------------------------------------ on an HTTP thread */

/* A fetch that does not wait and an ack are answered on the HTTP thread that read them
 * (`conn` NULL) when the group's definition is cached and Redis answers at once: the hop
 * to a pool thread and back cost more than the Redis round trip itself (bench/consumer).
 * The HTTP thread's connection has a short timeout; after a failure the thread sends
 * consumer requests to the pool (SL_AGAIN) for a while, doubling up to 10 s, so a Redis
 * that hangs costs an HTTP thread at most CONSUME_HERE_TIMEOUT_MS now and then. Never on a
 * Redis Cluster, whose client may wait out a failover. */
#define CONSUME_HERE_TIMEOUT_MS 100
#define CONSUME_HERE_BACKOFF_MAX_MS 10000

static __thread long long here_avoid_until, here_backoff_ms;

static void here_failed(void);

/* This HTTP thread's connection, or NULL: use the pool. */
static redis_conn *here_redis(void)
{
    if (redis_url_is_cluster(cfg->redis_url)) return NULL;
    pthread_once(&redis_key_once, redis_key_init);
    redis_conn *r = pthread_getspecific(redis_key);
    if (r && !redis_failed(r)) {
        here_backoff_ms = 0; /* its last command succeeded */
        return r;
    }
    if (time_mono_ms() < here_avoid_until) return NULL;
    if (r) redis_free(r);
    r = redis_connect(cfg->redis_url, CONSUME_HERE_TIMEOUT_MS, "consume");
    (void)pthread_setspecific(redis_key, r);
    if (!r) here_failed();
    return r;
}

/* Redis failed this HTTP thread: its connection goes, and the pool serves for a while. */
static void here_failed(void)
{
    thread_redis_drop();
    here_backoff_ms = here_backoff_ms ? here_backoff_ms * 2 : 1000;
    if (here_backoff_ms > CONSUME_HERE_BACKOFF_MAX_MS) here_backoff_ms = CONSUME_HERE_BACKOFF_MAX_MS;
    here_avoid_until = time_mono_ms() + here_backoff_ms;
}

/* ------------------------------------------------------------------ definitions */

/* Group definitions cached for a second: a fetch or ack should not cost a PostgreSQL
 * round trip. A deleted group is noticed within that second (its Redis group is gone
 * at once, so nothing is delivered meanwhile). */
typedef struct cached_def {
    group_def def;
    long long loaded_ms;
} cached_def;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static strmap cache; /* {cache_lock} "tenant\x1fstream\x1fgroup" → cached_def */
/* {cache_lock} same keys → long long *: when a fetch last saw no retry parked in the group.
 * For CONSUME_PARKED_FRESH_MS after, fetches read new events at once (a plain XREADGROUP,
 * no script): a retry parked meanwhile by another instance waits that much longer. */
static strmap parked_seen;
#define CONSUME_PARKED_FRESH_MS 100

static void group_key(const group_def *d, char key[400])
{
    snprintf(key, 400, "%s\x1f%s\x1f%s", d->tenant, d->stream, d->name);
}

/* Whether no retry was parked in the group a moment ago. */
static bool parked_none_lately(const group_def *d)
{
    char key[400];
    group_key(d, key);
    pthread_mutex_lock(&cache_lock);
    long long *at = strmap_get(&parked_seen, key);
    bool fresh = at && time_mono_ms() - *at < CONSUME_PARKED_FRESH_MS;
    pthread_mutex_unlock(&cache_lock);
    return fresh;
}

/* Records what a fetch saw: no retry parked (now), or some (or a nack parked one). */
static void parked_note(const group_def *d, bool none)
{
    char key[400];
    group_key(d, key);
    pthread_mutex_lock(&cache_lock);
    long long *at = strmap_get(&parked_seen, key);
    if (!at) {
        at = xmalloc(sizeof *at);
        strmap_put(&parked_seen, key, at);
    }
    *at = none ? time_mono_ms() : 0;
    pthread_mutex_unlock(&cache_lock);
}

static void def_copy(group_def *dst, const group_def *src)
{
    *dst = *src;
    dst->tenant = xstrdup(src->tenant);
    dst->stream = xstrdup(src->stream);
    dst->name = xstrdup(src->name);
    if (src->match) {
        dst->match = xcalloc(1, sizeof *dst->match);
        filter_copy(dst->match, src->match);
    }
}

static void cached_free(void *p)
{
    cached_def *c = p;
    group_def_dispose(&c->def);
    free(c);
}

/* The group's definition (a copy) into *out: from the cache, or from PostgreSQL when it is
 * older than CONSUME_DEF_TTL_MS or `fresh`. SL_OK, SL_NOT_FOUND, SL_UNAVAILABLE. */
static sl_status def_get(PGconn **conn, const consume_who *who, bool fresh, group_def *out)
{
    char key[400];
    snprintf(key, sizeof key, "%s\x1f%s\x1f%s", who->tenant, who->stream, who->group);
    long long now = time_mono_ms();
    pthread_mutex_lock(&cache_lock);
    cached_def *c = strmap_get(&cache, key);
    if (c && !fresh && now - c->loaded_ms < CONSUME_DEF_TTL_MS) {
        def_copy(out, &c->def);
        pthread_mutex_unlock(&cache_lock);
        return SL_OK;
    }
    pthread_mutex_unlock(&cache_lock);
    if (!conn) return SL_AGAIN;
    group_def d;
    sl_status rc = groups_load(conn, who->tenant, who->stream, who->group, &d);
    if (rc != SL_OK) return rc;
    cached_def *n = xcalloc(1, sizeof *n);
    def_copy(&n->def, &d);
    n->loaded_ms = now;
    pthread_mutex_lock(&cache_lock);
    cached_def *old = strmap_put(&cache, key, n);
    pthread_mutex_unlock(&cache_lock);
    if (old) cached_free(old);
    *out = d;
    return SL_OK;
}

static group_def *def_heap(const group_def *d)
{
    group_def *h = xmalloc(sizeof *h);
    *h = *d;
    return h;
}

static void def_heap_free(group_def *d)
{
    group_def_dispose(d);
    free(d);
}

/* ------------------------------------------------------------------ receipts */

bool consume_receipt_parse(const char *s, consume_receipt *out)
{
    if (!s) return false;
    char *end;
    const char *p = s;
    long long v[3];
    for (int i = 0; i < 3; i++) {
        if (*p < '0' || *p > '9') return false;
        v[i] = strtoll(p, &end, 10);
        if (*end != '.') return false;
        p = end + 1;
    }
    if (!envelope_id_valid(p) || v[0] <= 0 || v[1] <= 0) return false;
    out->position = v[0];
    out->attempt = v[1];
    out->commit_ms = v[2];
    snprintf(out->owner, sizeof out->owner, DELIVERIES_API_PREFIX "%s", p);
    return true;
}

/* The commit time of a stored envelope (its `time`), ms since the epoch; 0 if unreadable. */
static long long commit_ms_of(const entry_view *v)
{
    char *segs[] = {"time"};
    jsonscan_value val;
    char text[40];
    int64_t ms = 0;
    if (jsonscan_find(v->json, v->json_len, segs, 1, &val) &&
        jsonscan_string(&val, text, sizeof text) > 0 && time_parse_rfc3339(text, &ms))
        return (long long)ms;
    return 0;
}

/* ------------------------------------------------------------------ taking messages */

/* What a take delivered (for a WebSocket consumer's in-flight list). */
typedef struct taken {
    long long position, attempt, at_ms;
} taken;

typedef struct take_ctx {
    redis_conn *r;
    const group_def *d;
    const group_ref *g;
    const char *consumer; /* as the client named it */
    char owner[80];       /* "api:<consumer>" */
    buf *out;             /* message objects, comma-separated */
    const char *ws_sub;   /* WebSocket: frames {"op":"message","sub":…} instead */
    taken *took;          /* optional: what was delivered */
    int n;
} take_ctx;

/* Appends one delivered message, or acknowledges it for the group when it does not pass
 * the filter. */
static void deliver_entry(take_ctx *t, const redisReply *entry, long long attempt)
{
    entry_view v;
    if (!deliveries_entry_view(entry, &v)) return; /* trimmed from the stream meanwhile */
    if (!groups_filter_passes(t->d, &v)) {
        freeReplyObject(
            redis_command(t->r, t->g->key, "XACK %s %s %lld-0", t->g->key, t->d->name, v.position));
        return;
    }
    if (t->ws_sub) {
        buf_printf(t->out, "%s{\"op\":\"message\",\"sub\":", t->n ? "\n" : "");
        buf_json_string(t->out, t->ws_sub);
        buf_puts(t->out, ",");
    } else {
        buf_puts(t->out, t->n ? ",{" : "{");
    }
    buf_printf(t->out, "\"receipt\":\"%lld.%lld.%lld.", v.position, attempt, commit_ms_of(&v));
    buf_puts(t->out, t->consumer);
    buf_printf(t->out, "\",\"attempt\":%lld,\"event\":", attempt);
    buf_append(t->out, v.json, v.json_len);
    buf_puts(t->out, "}");
    if (t->took) t->took[t->n] = (taken){v.position, attempt, time_mono_ms()};
    t->n++;
}

/* Due retries first: of `parked` (XPENDING's entries under sluice-retry), those whose
 * backoff (or nack delay) has passed. */
static void take_due(take_ctx *t, int max, const redisReply *parked)
{
    int n = (int)parked->elements;
    long long *pos = n ? xcalloc((size_t)n, sizeof *pos) : NULL;
    long long *due = n ? xcalloc((size_t)n, sizeof *due) : NULL;
    for (int i = 0; i < n; i++) pos[i] = strtoll(parked->element[i]->element[0]->str, NULL, 10);
    if (n && deliveries_marks(t->r, t->g->due, pos, n, due) < 0) n = 0;
    long long now = time_now_ms();
    for (int i = 0; i < n && t->n < max; i++) {
        redisReply *e = parked->element[i];
        long long idle = e->element[2]->integer, count = e->element[3]->integer;
        bool is_due = due[i] >= 0 ? now >= due[i]
                                  : idle >= deliveries_backoff_ms(&t->d->policy, count, pos[i]);
        if (!is_due) continue;
        entry_seen waiting = {DELIVERIES_RETRY_CONSUMER, count, 0};
        redisReply *entry = NULL;
        if (deliveries_take(t->r, t->g, pos[i], waiting, t->owner, count + 1, &entry) ==
                MOVE_DONE &&
            entry && entry->type == REDIS_REPLY_ARRAY && entry->elements == 1)
            deliver_entry(t, entry->element[0], count + 1);
        freeReplyObject(entry);
    }
    free(pos);
    free(due);
}

/* Delivers the entries of an XREADGROUP answer (new events: attempt 1); how many it had. */
static size_t deliver_read(take_ctx *t, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 1 || rep->element[0]->elements != 2)
        return 0;
    redisReply *entries = rep->element[0]->element[1];
    for (size_t i = 0; i < entries->elements; i++) deliver_entry(t, entries->element[i], 1);
    return entries->elements;
}

/* New events, in up to `rounds` reads (the filter may skip some). 0, -1 (Redis error) or -2
 * (no such group). */
static int take_new(take_ctx *t, int max, int rounds)
{
    for (int round = 0; round < rounds && t->n < max; round++) {
        int want = max - t->n;
        redisReply *rep =
            redis_command(t->r, t->g->key, "XREADGROUP GROUP %s %s COUNT %d STREAMS %s >",
                          t->d->name, t->owner, want, t->g->key);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            int rc = rep && strstr(rep->str, "NOGROUP") ? -2 : -1;
            freeReplyObject(rep);
            return rc;
        }
        size_t got = deliver_read(t, rep);
        freeReplyObject(rep);
        if ((int)got < want) break; /* the stream has no more */
    }
    return 0;
}

/* Takes up to `max` messages into t->out: due retries, then new events. The first look is
 * one round trip (deliveries_look): with no retry parked, it is the read of new events.
 * 0, -1 (Redis error) or -2 (no such group). */
static int take(take_ctx *t, int max)
{
    if (parked_none_lately(t->d)) return take_new(t, max, CONSUME_READ_ROUNDS);
    redisReply *look = NULL;
    int kind = deliveries_look(t->r, t->g, t->owner, max, max * 4 < 100 ? max * 4 : 100, &look);
    if (kind == MOVE_NO_GROUP) return -2;
    if (kind < 0) return -1;
    int rc = 0;
    parked_note(t->d, kind == 0);
    if (kind == 1) {
        take_due(t, max, look->element[1]);
        rc = take_new(t, max, CONSUME_READ_ROUNDS);
    } else if ((int)deliver_read(t, look->element[1]) == max && t->n < max) {
        rc = take_new(t, max, CONSUME_READ_ROUNDS - 1); /* the filter skipped some */
    }
    freeReplyObject(look);
    return rc;
}

static void take_init(take_ctx *t, redis_conn *r, const group_def *d, const group_ref *g,
                      const char *consumer, buf *out)
{
    memset(t, 0, sizeof *t);
    t->r = r;
    t->d = d;
    t->g = g;
    t->consumer = consumer;
    snprintf(t->owner, sizeof t->owner, DELIVERIES_API_PREFIX "%s", consumer);
    t->out = out;
}

/* A take that recreates the group once when Redis lost it (groups_restore, with a fresh
 * definition: its floor). SL_OK, SL_NOT_FOUND, SL_UNAVAILABLE. */
static sl_status take_restoring(PGconn **conn, take_ctx *t, int max)
{
    int rc = take(t, max);
    if (rc == -2 && !conn) return SL_AGAIN;
    if (rc == -2) {
        group_def fresh;
        consume_who who = {{0}, (char *)t->d->stream, (char *)t->d->name, NULL};
        snprintf(who.tenant, sizeof who.tenant, "%s", t->d->tenant);
        sl_status lr = def_get(conn, &who, true, &fresh);
        if (lr != SL_OK) return lr;
        sl_status sr = groups_restore(t->r, &fresh);
        group_def_dispose(&fresh);
        if (sr != SL_OK) return sr;
        rc = take(t, max);
    }
    return rc == 0 ? SL_OK : rc == -2 ? SL_NOT_FOUND : SL_UNAVAILABLE;
}

/* ------------------------------------------------------------------ HTTP: fetch */

static char *messages_body(buf *msgs)
{
    buf body;
    buf_init(&body);
    buf_puts(&body, "{\"messages\":[");
    if (msgs->len) buf_append(&body, msgs->data, msgs->len);
    buf_puts(&body, "]}");
    return buf_steal(&body, NULL);
}

sl_status consume_fetch(PGconn **conn, const consume_who *who, int max, char **body, int *n,
                        group_def **def)
{
    *body = NULL;
    *n = 0;
    *def = NULL;
    group_def d;
    sl_status rc = def_get(conn, who, false, &d);
    if (rc != SL_OK) return rc;
    redis_conn *r = conn ? thread_redis() : here_redis();
    if (!r) {
        group_def_dispose(&d);
        return conn ? SL_UNAVAILABLE : SL_AGAIN;
    }
    group_ref g;
    group_ref_init(&g, cfg, who->tenant, who->stream, who->group);
    buf msgs;
    buf_init(&msgs);
    take_ctx t;
    take_init(&t, r, &d, &g, who->consumer, &msgs);
    rc = take_restoring(conn, &t, max);
    if (rc == SL_UNAVAILABLE && !conn) {
        if (redis_failed(r)) here_failed();
        if (t.n == 0) rc = SL_AGAIN; /* the pool tries again, with a longer timeout */
    } else if (rc == SL_UNAVAILABLE && t.n == 0 && connection_failed(r) &&
               (r = thread_redis())) {
        take_init(&t, r, &d, &g, who->consumer, &msgs);
        rc = take_restoring(conn, &t, max);
    }
    if (rc == SL_UNAVAILABLE) thread_redis_drop();
    if (rc == SL_OK) {
        *body = messages_body(&msgs);
        *n = t.n;
    }
    buf_dispose(&msgs);
    group_ref_dispose(&g);
    if (rc == SL_OK && t.n == 0)
        *def = def_heap(&d);
    else
        group_def_dispose(&d);
    return rc;
}

/* ------------------------------------------------------------------ HTTP: ack, nack, extend */

/* The receipts of a request as delivery refs (owners point into `rs`). -1 when one is not
 * a receipt (then *answer is the problem). */
static int refs_of(json_t *list, consume_receipt *rs, delivery_ref *refs, json_t **answer)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (!consume_receipt_parse(json_string_value(v), &rs[i])) {
            *answer = problem_newf("invalid_request", "receipts[%zu] is not a receipt of this API",
                                   i);
            return -1;
        }
        refs[i] = (delivery_ref){rs[i].position, rs[i].attempt, rs[i].owner};
    }
    return 0;
}

/* Acknowledges or extends the receipts of `req` (its member "receipts"). */
static sl_status apply_receipts(PGconn **conn, const consume_who *who, json_t *req,
                                deliveries_action action, json_t **answer)
{
    group_def d;
    sl_status rc = def_get(conn, who, false, &d);
    if (rc != SL_OK) return rc;
    json_t *list = json_object_get(req, "receipts");
    size_t n = json_array_size(list);
    consume_receipt *rs = xcalloc(n + 1, sizeof *rs);
    delivery_ref *refs = xcalloc(n + 1, sizeof *refs);
    int *done = xcalloc(n + 1, sizeof *done);
    redis_conn *r = NULL;
    group_ref g = {0};
    if (refs_of(list, rs, refs, answer) < 0) {
        rc = SL_REFUSED;
        goto out;
    }
    if (!(r = conn ? thread_redis() : here_redis())) {
        rc = conn ? SL_UNAVAILABLE : SL_AGAIN;
        goto out;
    }
    group_ref_init(&g, cfg, who->tenant, who->stream, who->group);
    long long deadline = 0;
    json_t *ms = json_object_get(req, "ms");
    long long extra = ms ? (long long)json_integer_value(ms) : d.policy.ack_timeout_ms;
    if (action == DELIVERIES_EXTEND && extra > d.policy.ack_timeout_ms)
        deadline = (long long)time_now_ms() + extra;
    int applied = deliveries_apply(r, &g, action, refs, (int)n, deadline, done);
    if (applied < 0 && !conn) {
        /* The pool tries again, with a longer timeout (a receipt the timed-out call did
         * apply is then answered stale, as after the pool's own retry). */
        if (redis_failed(r)) here_failed();
        rc = SL_AGAIN;
        goto out;
    }
    if (applied < 0 && connection_failed(r) && (r = thread_redis()))
        applied = deliveries_apply(r, &g, action, refs, (int)n, deadline, done);
    if (applied < 0) {
        thread_redis_drop();
        rc = SL_UNAVAILABLE;
        goto out;
    }
    json_t *stale = json_array();
    int count = 0;
    long long now = time_now_ms();
    for (size_t i = 0; i < n; i++) {
        if (!done[i]) {
            json_array_append(stale, json_array_get(list, i));
            continue;
        }
        count++;
        if (action == DELIVERIES_ACK && rs[i].commit_ms > 0)
            metrics_group_ack(who->tenant, who->stream, who->group,
                              (double)(now - rs[i].commit_ms) / 1000.0);
    }
    *answer = json_pack("{s:i,s:o}", action == DELIVERIES_ACK ? "acked" : "extended", count,
                        "stale", stale);
out:
    group_ref_dispose(&g);
    group_def_dispose(&d);
    free(done);
    free(refs);
    free(rs);
    return rc;
}

sl_status consume_ack(PGconn **conn, const consume_who *who, json_t *req, json_t **answer)
{
    return apply_receipts(conn, who, req, DELIVERIES_ACK, answer);
}

sl_status consume_extend(PGconn **conn, const consume_who *who, json_t *req, json_t **answer)
{
    return apply_receipts(conn, who, req, DELIVERIES_EXTEND, answer);
}

/* A nack of one delivery: parked for its retry (after the backoff, or `delay_ms`), or a
 * dead letter when it was not retryable or had its max_deliveries. */
static sl_status nack_one(PGconn **conn, redis_conn *r, const group_def *d, const group_ref *g,
                          const consume_receipt *rc, json_t *req, json_t **answer)
{
    json_t *err = json_object_get(req, "error"), *retryable = json_object_get(req, "retryable");
    json_t *delay = json_object_get(req, "delay_ms");
    const char *why = json_is_string(err) ? json_string_value(err) : "nacked";
    bool dead = json_is_false(retryable) || rc->attempt >= d->policy.max_deliveries;
    entry_seen seen = {rc->owner, rc->attempt, 0};
    long long retry_in = json_is_integer(delay) ? (long long)json_integer_value(delay)
                                                : deliveries_backoff_ms(&d->policy, rc->attempt,
                                                                        rc->position);
    int moved = dead ? deliveries_dead_letter(conn, r, g, rc->position, rc->owner, rc->attempt,
                                              seen, why)
                     : deliveries_park(r, g, rc->position, seen, rc->attempt,
                                       json_is_integer(delay) ? (long long)time_now_ms() + retry_in
                                                              : 0);
    if (moved == MOVE_DONE && !dead) {
        parked_note(d, false);
        deliveries_record_failure(conn, g, rc->position, rc->owner, why, rc->attempt);
    }
    if (moved == MOVE_REDIS_ERROR || moved == -3) return SL_UNAVAILABLE;
    if (moved != MOVE_DONE) {
        *answer = problem_newf("stale_receipt",
                               "this delivery is no longer pending with its consumer (it timed out "
                               "and was handed on, or was acknowledged)");
        return SL_REFUSED;
    }
    *answer = json_pack("{s:s,s:I}", "status", dead ? "dead_lettered" : "retry_scheduled",
                        "attempt", (json_int_t)rc->attempt);
    if (!dead) json_object_set_new(*answer, "retry_in_ms", json_integer(retry_in));
    return SL_OK;
}

sl_status consume_nack(PGconn **conn, const consume_who *who, json_t *req, json_t **answer)
{
    consume_receipt rc;
    if (!consume_receipt_parse(json_string_value(json_object_get(req, "receipt")), &rc)) {
        *answer = problem_newf("invalid_request", "receipt is not a receipt of this API");
        return SL_REFUSED;
    }
    group_def d;
    sl_status st = def_get(conn, who, false, &d);
    if (st != SL_OK) return st;
    redis_conn *r = thread_redis();
    if (!r) {
        group_def_dispose(&d);
        return SL_UNAVAILABLE;
    }
    group_ref g;
    group_ref_init(&g, cfg, who->tenant, who->stream, who->group);
    st = nack_one(conn, r, &d, &g, &rc, req, answer);
    if (st == SL_UNAVAILABLE && connection_failed(r) && (r = thread_redis()))
        st = nack_one(conn, r, &d, &g, &rc, req, answer);
    if (st == SL_OK) json_object_set(*answer, "receipt", json_object_get(req, "receipt"));
    if (st == SL_UNAVAILABLE) thread_redis_drop();
    group_ref_dispose(&g);
    group_def_dispose(&d);
    return st;
}

/* ------------------------------------------------------------------ waiting fetches */

typedef struct fetch_wait {
    consume_who who;
    group_def *def;
    group_ref g;
    int max;
    long long deadline_ms, tried_ms;
    consume_done_fn done;
    void *arg;
    bool cancelled; /* {lock} */
    struct fetch_wait *next;
} fetch_wait;

static fetch_wait *waits; /* {lock} */

void consume_wait(consume_who *who, group_def *def, int max, int wait_ms, consume_done_fn done,
                  void *arg)
{
    fetch_wait *w = xcalloc(1, sizeof *w);
    w->who = *who;
    memset(who, 0, sizeof *who);
    w->def = def;
    group_ref_init(&w->g, cfg, w->who.tenant, w->who.stream, w->who.group);
    w->max = max;
    w->tried_ms = time_mono_ms();
    w->deadline_ms = w->tried_ms + wait_ms;
    w->done = done;
    w->arg = arg;
    pthread_mutex_lock(&lock);
    w->next = waits;
    waits = w;
    /* Looked at once: entries may have come since the fetch found none, and consume_wake
     * wakes the thread only while someone waits. */
    woken = true;
    pthread_cond_signal(&kick);
    pthread_mutex_unlock(&lock);
}

static void wait_free(fetch_wait *w)
{
    consume_who_dispose(&w->who);
    def_heap_free(w->def);
    group_ref_dispose(&w->g);
    free(w);
}

void consume_cancel(void *arg)
{
    pthread_mutex_lock(&lock);
    for (fetch_wait *w = waits; w; w = w->next)
        if (w->arg == arg) w->cancelled = true;
    woken = true;
    pthread_cond_signal(&kick);
    pthread_mutex_unlock(&lock);
}

/* Consume thread: answers the waits that are cancelled, past their deadline, or find
 * messages now (`look`: try them all, new entries came). */
static void serve_waits(PGconn **conn, redis_conn *r, bool look)
{
    pthread_mutex_lock(&lock);
    fetch_wait *mine = waits;
    waits = NULL;
    pthread_mutex_unlock(&lock);
    fetch_wait *keep = NULL;
    long long now = time_mono_ms();
    while (mine) {
        fetch_wait *w = mine;
        mine = w->next;
        pthread_mutex_lock(&lock);
        bool cancelled = w->cancelled;
        pthread_mutex_unlock(&lock);
        char *body = NULL;
        if (cancelled) {
            w->done(w->arg, NULL);
            wait_free(w);
            continue;
        }
        if (r && (look || now - w->tried_ms >= CONSUME_POLL_MS)) {
            w->tried_ms = now;
            buf msgs;
            buf_init(&msgs);
            take_ctx t;
            take_init(&t, r, w->def, &w->g, w->who.consumer, &msgs);
            if (take_restoring(conn, &t, w->max) == SL_OK && t.n) body = messages_body(&msgs);
            buf_dispose(&msgs);
        }
        if (!body && now >= w->deadline_ms) body = xstrdup("{\"messages\":[]}");
        if (body) {
            w->done(w->arg, body);
            wait_free(w);
            continue;
        }
        w->next = keep;
        keep = w;
    }
    /* Back in front of those that came meanwhile. */
    pthread_mutex_lock(&lock);
    fetch_wait **tail = &keep;
    while (*tail) tail = &(*tail)->next;
    *tail = waits;
    waits = keep;
    pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------------------------ WebSocket consumers */

typedef struct ws_consumer {
    session *sess; /* a reference */
    char id[SESSION_SUB_ID_MAX + 1];
    consume_who who;
    int max_in_flight;
    bool loaded;     /* consume thread: def loaded, "consuming" sent */
    atomic_bool stopping; /* unsubscribed or closed: the consume thread frees it */
    bool dirty;      /* consume thread: acks freed room: take now */
    group_def def;   /* consume thread, once loaded */
    group_ref g;     /* consume thread, once loaded */
    taken *inflight; /* consume thread: delivered, not acked/nacked/timed out */
    int n_inflight;
    long long tried_ms;
    struct ws_consumer *next; /* {lock} */
} ws_consumer;

/* A WebSocket ack/nack frame, queued for the consume thread. */
typedef struct ws_frame {
    session *sess; /* a reference */
    json_t *msg;
    struct ws_frame *next;
} ws_frame;

static ws_consumer *consumers;               /* {lock} */
static ws_frame *frames, **frames_tail = &frames; /* {lock} */

static void ws_consumer_free(ws_consumer *c);
static void frames_free(ws_frame *f);

static void ws_error(session *s, const char *id, const char *code, const char *message)
{
    json_t *e = json_pack("{s:s,s:s,s:s}", "op", "error", "code", code, "message", message);
    if (id) json_object_set_new(e, "id", json_string(id));
    session_push_text(s, json_dumps(e, JSON_COMPACT));
    json_decref(e);
}

void consume_ws_start(session *s, const char *id, const char *stream, const char *group,
                      const char *consumer, int max_in_flight)
{
    pthread_mutex_lock(&lock);
    int mine = 0;
    bool dup = false;
    for (ws_consumer *c = consumers; c; c = c->next) {
        if (c->sess != s || atomic_load(&c->stopping)) continue;
        mine++;
        if (!strcmp(c->id, id)) dup = true;
    }
    if (dup || mine >= CONSUME_WS_SUBS) {
        pthread_mutex_unlock(&lock);
        ws_error(s, id, dup ? "conflict" : "rate_limited",
                 dup ? "a consume subscription with this id exists"
                     : "at most " "16" " consume subscriptions per connection");
        return;
    }
    ws_consumer *c = xcalloc(1, sizeof *c);
    session_ref(s);
    c->sess = s;
    snprintf(c->id, sizeof c->id, "%s", id);
    snprintf(c->who.tenant, sizeof c->who.tenant, "%s", s->auth.tenant);
    c->who.stream = xstrdup(stream);
    c->who.group = xstrdup(group);
    c->who.consumer = xstrdup(consumer);
    c->max_in_flight = max_in_flight;
    c->inflight = xcalloc((size_t)max_in_flight, sizeof *c->inflight);
    c->next = consumers;
    consumers = c;
    woken = true;
    pthread_cond_signal(&kick);
    pthread_mutex_unlock(&lock);
}

void consume_ws_frame(session *s, json_t *msg)
{
    ws_frame *f = xcalloc(1, sizeof *f);
    session_ref(s);
    f->sess = s;
    f->msg = json_incref(msg);
    pthread_mutex_lock(&lock);
    *frames_tail = f;
    frames_tail = &f->next;
    woken = true;
    pthread_cond_signal(&kick);
    pthread_mutex_unlock(&lock);
}

bool consume_ws_stop(session *s, const char *id)
{
    bool found = false;
    pthread_mutex_lock(&lock);
    for (ws_consumer *c = consumers; c; c = c->next)
        if (c->sess == s && !atomic_load(&c->stopping) && !strcmp(c->id, id)) {
            atomic_store(&c->stopping, true);
            found = true;
        }
    woken = true;
    pthread_cond_signal(&kick);
    pthread_mutex_unlock(&lock);
    return found;
}

void consume_ws_close(session *s)
{
    pthread_mutex_lock(&lock);
    for (ws_consumer *c = consumers; c; c = c->next)
        if (c->sess == s) atomic_store(&c->stopping, true);
    woken = true;
    pthread_cond_signal(&kick);
    /* Without the consume thread (not started, or stopped), nobody else would free them. */
    ws_consumer *gone = NULL;
    ws_frame *dropped = NULL;
    if (!atomic_load(&running)) {
        for (ws_consumer **p = &consumers; *p;) {
            ws_consumer *c = *p;
            if (c->sess != s) {
                p = &c->next;
                continue;
            }
            *p = c->next;
            c->next = gone;
            gone = c;
        }
        dropped = frames;
        frames = NULL;
        frames_tail = &frames;
    }
    pthread_mutex_unlock(&lock);
    while (gone) {
        ws_consumer *next = gone->next;
        ws_consumer_free(gone);
        gone = next;
    }
    frames_free(dropped);
}

static void frames_free(ws_frame *f)
{
    while (f) {
        ws_frame *next = f->next;
        json_decref(f->msg);
        session_unref(f->sess);
        free(f);
        f = next;
    }
}

static void ws_consumer_free(ws_consumer *c)
{
    session_unref(c->sess);
    consume_who_dispose(&c->who);
    if (c->loaded) {
        group_def_dispose(&c->def);
        group_ref_dispose(&c->g);
    }
    free(c->inflight);
    free(c);
}

/* Consume thread: the consumer of session `s` that holds delivery (position, attempt) in
 * flight, and its index there; NULL when none does (it timed out, or was never ours). */
static ws_consumer *holder_of(session *s, const consume_receipt *rc, int *at)
{
    pthread_mutex_lock(&lock);
    ws_consumer *found = NULL;
    for (ws_consumer *c = consumers; c && !found; c = c->next) {
        if (c->sess != s || !c->loaded) continue;
        char owner[80];
        snprintf(owner, sizeof owner, DELIVERIES_API_PREFIX "%s", c->who.consumer);
        if (strcmp(owner, rc->owner)) continue;
        for (int i = 0; i < c->n_inflight; i++)
            if (c->inflight[i].position == rc->position && c->inflight[i].attempt == rc->attempt) {
                found = c;
                *at = i;
                break;
            }
    }
    pthread_mutex_unlock(&lock);
    return found;
}

static void inflight_drop(ws_consumer *c, int at)
{
    c->inflight[at] = c->inflight[--c->n_inflight];
    c->dirty = true;
}

/* Consume thread: drops delivery (position, attempt) from c's in-flight list, if there. */
static void inflight_forget(ws_consumer *c, long long position, long long attempt)
{
    for (int i = 0; i < c->n_inflight; i++)
        if (c->inflight[i].position == position && c->inflight[i].attempt == attempt) {
            inflight_drop(c, i);
            return;
        }
}

/* One receipt of an ack frame. */
typedef struct ack_item {
    json_t *text;        /* borrowed from the frame */
    consume_receipt rc;  /* parsed */
    ws_consumer *holder; /* the consumer holding it in flight, or NULL (stale) */
    bool sent;           /* in a Redis call already */
    int done;            /* acknowledged */
} ack_item;

/* Consume thread: one ack frame. Its receipts go to Redis in one call per consumer that
 * holds them (deliveries_apply: one script call per owner), not one per receipt. */
static void ws_ack(redis_conn *r, session *s, json_t *msg)
{
    json_t *list = json_object_get(msg, "receipts");
    if (!json_is_array(list) || !json_array_size(list) ||
        json_array_size(list) > CONSUME_MAX_MESSAGES) {
        ws_error(s, NULL, "invalid_request", "receipts must be an array of 1 to 1000 receipts");
        return;
    }
    size_t n = json_array_size(list);
    ack_item *items = xcalloc(n, sizeof *items);
    delivery_ref *refs = xcalloc(n, sizeof *refs);
    size_t *idx = xcalloc(n, sizeof *idx);
    int *out = xcalloc(n, sizeof *out);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        int at = -1;
        items[i].text = v;
        if (consume_receipt_parse(json_string_value(v), &items[i].rc))
            items[i].holder = holder_of(s, &items[i].rc, &at);
    }
    for (i = 0; i < n && r; i++) {
        ws_consumer *c = items[i].holder;
        if (!c || items[i].sent) continue;
        size_t m = 0;
        for (size_t k = i; k < n; k++)
            if (items[k].holder == c && !items[k].sent) {
                items[k].sent = true;
                refs[m] = (delivery_ref){items[k].rc.position, items[k].rc.attempt,
                                         items[k].rc.owner};
                idx[m++] = k;
            }
        if (deliveries_apply(r, &c->g, DELIVERIES_ACK, refs, (int)m, 0, out) == 0)
            for (size_t k = 0; k < m; k++)
                items[idx[k]].done = out[k];
    }
    json_t *stale = json_array();
    int acked = 0;
    for (i = 0; i < n; i++) {
        ws_consumer *c = items[i].holder;
        if (c) inflight_forget(c, items[i].rc.position, items[i].rc.attempt);
        if (c && items[i].done) {
            acked++;
            if (items[i].rc.commit_ms > 0)
                metrics_group_ack(c->who.tenant, c->who.stream, c->who.group,
                                  (double)(time_now_ms() - items[i].rc.commit_ms) / 1000.0);
        } else {
            json_array_append(stale, items[i].text);
        }
    }
    free(items);
    free(refs);
    free(idx);
    free(out);
    json_t *answer = json_pack("{s:s,s:i,s:o}", "op", "acked", "acked", acked, "stale", stale);
    session_push_text(s, json_dumps(answer, JSON_COMPACT));
    json_decref(answer);
}

/* Consume thread: one nack frame. */
static void ws_nack(PGconn **conn, redis_conn *r, session *s, json_t *msg)
{
    consume_receipt rc = {0};
    int at = -1;
    ws_consumer *c = consume_receipt_parse(json_string_value(json_object_get(msg, "receipt")), &rc)
                         ? holder_of(s, &rc, &at)
                         : NULL;
    json_t *answer = NULL;
    if (!c || !r) {
        ws_error(s, NULL, "stale_receipt", "no delivery of this connection has this receipt "
                                           "(it timed out, or was acknowledged)");
        return;
    }
    sl_status st = nack_one(conn, r, &c->def, &c->g, &rc, msg, &answer);
    inflight_drop(c, at);
    if (st == SL_OK) {
        json_object_set_new(answer, "op", json_string("nacked"));
        json_object_set(answer, "receipt", json_object_get(msg, "receipt"));
        session_push_text(s, json_dumps(answer, JSON_COMPACT));
    } else if (st == SL_REFUSED) {
        ws_error(s, NULL, json_string_value(json_object_get(answer, "code")),
                 json_string_value(json_object_get(answer, "detail")));
    } else {
        ws_error(s, NULL, "store_unavailable", "Redis or PostgreSQL is not answering; retry");
    }
    json_decref(answer);
}

static void serve_frames(PGconn **conn, redis_conn *r)
{
    pthread_mutex_lock(&lock);
    ws_frame *f = frames;
    frames = NULL;
    frames_tail = &frames;
    pthread_mutex_unlock(&lock);
    while (f) {
        ws_frame *next = f->next;
        const char *op = json_string_value(json_object_get(f->msg, "op"));
        if (op && !strcmp(op, "ack"))
            ws_ack(r, f->sess, f->msg);
        else
            ws_nack(conn, r, f->sess, f->msg);
        json_decref(f->msg);
        session_unref(f->sess);
        free(f);
        f = next;
    }
}

/* Consume thread: loads a new consumer's group, then answers "consuming" (or an error and
 * ends it). */
static void ws_load(PGconn **conn, ws_consumer *c)
{
    group_def d;
    sl_status rc = *conn ? def_get(conn, &c->who, false, &d) : SL_UNAVAILABLE;
    if (rc == SL_UNAVAILABLE) return; /* tried again next round */
    if (rc != SL_OK) {
        ws_error(c->sess, c->id, "not_found", "no such consumer group on this stream");
        atomic_store(&c->stopping, true);
        return;
    }
    c->def = d;
    group_ref_init(&c->g, cfg, c->who.tenant, c->who.stream, c->who.group);
    c->loaded = true;
    c->dirty = true;
    session_push_text(c->sess, xasprintf("{\"op\":\"consuming\",\"id\":\"%s\",\"max_in_flight\":%d}",
                                         c->id, c->max_in_flight));
}

/* Consume thread: deliveries of `c` older than ack_timeout_ms were timed out by the sweeper
 * (their receipts are stale): they no longer take a place in flight. */
static void ws_expire(ws_consumer *c, long long now)
{
    for (int i = 0; i < c->n_inflight;)
        if (now - c->inflight[i].at_ms > c->def.policy.ack_timeout_ms)
            inflight_drop(c, i);
        else
            i++;
}

static void serve_consumers(PGconn **conn, redis_conn *r, bool look)
{
    /* Unlink the stopped ones first. */
    pthread_mutex_lock(&lock);
    ws_consumer *gone = NULL;
    for (ws_consumer **p = &consumers; *p;) {
        ws_consumer *c = *p;
        if (atomic_load(&c->stopping)) {
            *p = c->next;
            c->next = gone;
            gone = c;
        } else {
            p = &c->next;
        }
    }
    ws_consumer *list = consumers; /* only this thread unlinks: the rest stay valid */
    pthread_mutex_unlock(&lock);
    while (gone) {
        ws_consumer *next = gone->next;
        ws_consumer_free(gone);
        gone = next;
    }
    long long now = time_mono_ms();
    for (ws_consumer *c = list; c; c = c->next) {
        if (atomic_load(&c->stopping)) continue;
        if (!c->loaded) ws_load(conn, c);
        if (!c->loaded || !r) continue;
        ws_expire(c, now);
        int want = c->max_in_flight - c->n_inflight;
        if (want <= 0 || !(look || c->dirty || now - c->tried_ms >= CONSUME_POLL_MS)) continue;
        c->tried_ms = now;
        c->dirty = false;
        buf frames_out;
        buf_init(&frames_out);
        take_ctx t;
        take_init(&t, r, &c->def, &c->g, c->who.consumer, &frames_out);
        t.ws_sub = c->id;
        t.took = c->inflight + c->n_inflight;
        if (take_restoring(conn, &t, want) == SL_NOT_FOUND) {
            ws_error(c->sess, c->id, "not_found", "the consumer group was deleted");
            atomic_store(&c->stopping, true);
        }
        c->n_inflight += t.n;
        /* One frame per message. */
        char *p = frames_out.data;
        for (int k = 0; k < t.n && p; k++) {
            char *nl = strchr(p, '\n');
            session_push_text(c->sess, nl ? xstrndup(p, (size_t)(nl - p)) : xstrdup(p));
            p = nl ? nl + 1 : NULL;
        }
        buf_dispose(&frames_out);
    }
}

/* ------------------------------------------------------------------ the thread */

void consume_wake(void)
{
    pthread_mutex_lock(&lock);
    /* Called by the relay after every batch it writes: with no parked fetch and no WebSocket
     * consumer there is nothing to look at, and the thread is left asleep (a futex wake
     * per relayed batch otherwise). */
    if (waits || consumers) {
        woken = true;
        pthread_cond_signal(&kick);
    }
    pthread_mutex_unlock(&lock);
}

static void *consume_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    while (!worker_stopping(&runner)) {
        pthread_mutex_lock(&lock);
        if (!woken) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 50 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&kick, &lock, &until);
        }
        bool look = woken;
        woken = false;
        bool idle = !waits && !consumers && !frames;
        pthread_mutex_unlock(&lock);
        if (idle) continue;
        if (!conn) conn = db_connect(cfg->database_url, "consume");
        redis_conn *r = thread_redis();
        serve_frames(&conn, r);
        serve_consumers(&conn, r, look);
        serve_waits(&conn, r, look);
        if (r && redis_failed(r)) thread_redis_drop();
    }
    /* Stopping: every wait gets its (empty) answer, every consumer ends. */
    pthread_mutex_lock(&lock);
    fetch_wait *w = waits;
    waits = NULL;
    ws_consumer *c = consumers;
    consumers = NULL;
    ws_frame *f = frames;
    frames = NULL;
    frames_tail = &frames;
    pthread_mutex_unlock(&lock);
    while (w) {
        fetch_wait *next = w->next;
        w->done(w->arg, w->cancelled ? NULL : xstrdup("{\"messages\":[]}"));
        wait_free(w);
        w = next;
    }
    while (c) {
        ws_consumer *next = c->next;
        ws_consumer_free(c);
        c = next;
    }
    frames_free(f);
    thread_redis_drop();
    PQfinish(conn);
    return NULL;
}

int consume_start(const sluice_config *c)
{
    cfg = c;
    strmap_init(&cache);
    strmap_init(&parked_seen);
    if (worker_start(&runner, consume_main) < 0) return -1;
    atomic_store(&running, true);
    return 0;
}

void consume_stop(void)
{
    worker_stop(&runner); /* frees every consumer; later closes free their own */
    atomic_store(&running, false);
    pthread_mutex_lock(&cache_lock);
    strmap_dispose(&cache, cached_free);
    strmap_init(&cache);
    strmap_dispose(&parked_seen, free);
    strmap_init(&parked_seen);
    pthread_mutex_unlock(&cache_lock);
}
