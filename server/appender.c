/*
 * appender.c — group commit (see appender.h).
 *
 * DESIGN: one thread, one connection. A commit is at most two pipelines (libpq
 * pipeline mode, one round trip each; see "SQL" below):
 *   1. BEGIN; take the event-log advisory lock; read the head position, the
 *      stored rows of client-chosen ids and the current version of each key.
 *   2. INSERT every accepted event with prepared multi-row statements whose values
 *      are text parameters (PostgreSQL parses each `data` once); NOTIFY with this
 *      instance's id; COMMIT.
 * Between them the decisions are made in C, request by request in arrival
 * order, with an undo log so an atomic request that fails leaves no trace in
 * the positions, versions or ids the requests after it see. Because every
 * instance takes the same lock before reading the head, positions are gap-free
 * in commit order across instances (README, "Architecture").
 * A batch without keys takes one round trip: the head is read under the lock in the
 * same pipeline, and a client id that is already stored is found by the unique
 * constraint (rare: a re-send), which rolls the batch back to be decided the long way.
 * After COMMIT the stored events are serialised once (eventlog_committed) and handed
 * to the feed (tail.c), which publishes them to the hub and the relay from memory.
 * A failed statement (never expected) retries each request alone, so one
 * request cannot fail another. A connection lost before COMMIT was sent fails the
 * batch with 503; lost after it, the outcome is unknown, so the thread reconnects
 * and looks the batch's first event up by id: 201 if it committed, 503 if not, and
 * never 503 for a stored event (a client retrying without an id would store it twice).
 * Meanwhile, and while reconnecting every half second, submissions are refused fast.
 */
#include "appender.h"
#include "appender_decide.h"
#include "db.h"
#include "eventlog.h"
#include "locks.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "partitions.h"
#include "problem.h"
#include "strmap.h"
#include "tail.h"
#include "timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define APPENDER_MAX_EVENTS 5000      /* events per commit */
#define APPENDER_MAX_BYTES (16 << 20) /* approximate statement size per commit */

static const sluice_config *cfg;
static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static append_req *q_head, *q_tail; /* {lock} FIFO of waiting requests */
static long q_events;               /* {lock} events waiting */
static bool stopping;               /* {lock} */
static atomic_bool connected;       /* written by the appender thread */
static atomic_llong head_position;  /* written by the appender thread */
static atomic_llong last_commit_ms; /* written by the appender thread: time_mono_ms() */
static PGconn *conn;                /* appender thread only */

long long appender_head(void)
{
    return atomic_load(&head_position);
}

long long appender_last_commit_ms(void)
{
    return atomic_load(&last_commit_ms);
}

bool appender_connected(void)
{
    return atomic_load(&connected);
}

appender_submit_rc appender_submit(append_req *r)
{
    appender_submit_rc rc = APPEND_QUEUED;
    pthread_mutex_lock(&lock);
    if (stopping) {
        rc = APPEND_STOPPING;
    } else if (!atomic_load(&connected)) {
        rc = APPEND_STORE_DOWN;
    } else if (q_events + (long)r->n > cfg->appender_queue) {
        rc = APPEND_QUEUE_FULL;
    } else {
        r->next = NULL;
        if (q_tail)
            q_tail->next = r;
        else
            q_head = r;
        q_tail = r;
        q_events += (long)r->n;
        pthread_cond_signal(&cond);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

/* ------------------------------------------------------------------ outcomes */

static void fail_event(incoming_event *ev, json_t *problem)
{
    json_decref(ev->problem);
    ev->outcome = EV_FAILED;
    ev->problem = problem;
}

static void reset_request(append_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        incoming_event *ev = &r->events[i];
        json_decref(ev->problem);
        ev->problem = NULL;
        ev->outcome = EV_PENDING;
        ev->position = 0;
        ev->version = 0;
        ev->time[0] = '\0';
    }
}

static void fail_request(append_req *r, const char *code, const char *detail)
{
    for (size_t i = 0; i < r->n; i++)
        fail_event(&r->events[i], problem_new(code, detail));
}

/* ------------------------------------------------------------------ decisions */

id_state *appender_new_id_state(batch_ctx *b)
{
    if (b->n_ids == b->cap_ids) {
        b->cap_ids = b->cap_ids ? b->cap_ids * 2 : 64;
        b->id_states = xrealloc(b->id_states, b->cap_ids * sizeof *b->id_states);
    }
    id_state *s = xcalloc(1, sizeof *s);
    b->id_states[b->n_ids++] = s;
    return s;
}

key_state *appender_new_key_state(batch_ctx *b)
{
    if (b->n_keys == b->cap_keys) {
        b->cap_keys = b->cap_keys ? b->cap_keys * 2 : 64;
        b->key_states = xrealloc(b->key_states, b->cap_keys * sizeof *b->key_states);
    }
    key_state *s = xcalloc(1, sizeof *s);
    b->key_states[b->n_keys++] = s;
    return s;
}

void appender_batch_init(batch_ctx *b)
{
    memset(b, 0, sizeof *b);
    strmap_init(&b->ids);
    strmap_init(&b->keys);
}

void appender_batch_dispose(batch_ctx *b)
{
    strmap_dispose(&b->ids, NULL);
    strmap_dispose(&b->keys, NULL);
    for (size_t i = 0; i < b->n_ids; i++) {
        free(b->id_states[i]->stream);
        free(b->id_states[i]->key);
        free(b->id_states[i]);
    }
    for (size_t i = 0; i < b->n_keys; i++)
        free(b->key_states[i]);
    free(b->id_states);
    free(b->key_states);
}

/* Joins up to three parts with \x1f (a byte no part holds) into out. */
static const char *join_key(char out[MAP_KEY_MAX], const char *a, const char *b, const char *c)
{
    const char *parts[3] = {a, b, c};
    size_t len = 0;
    for (int i = 0; i < 3 && parts[i]; i++) {
        size_t n = strlen(parts[i]);
        if (len + n + 2 > MAP_KEY_MAX) n = MAP_KEY_MAX - len - 2; /* cannot happen: limits */
        if (i) out[len++] = '\x1f';
        memcpy(out + len, parts[i], n);
        len += n;
    }
    out[len] = '\0';
    return out;
}

const char *appender_id_map_key(char out[MAP_KEY_MAX], const char *tenant, const char *id)
{
    return join_key(out, tenant, id, NULL);
}

const char *appender_key_map_key(char out[MAP_KEY_MAX], const char *tenant, const char *stream,
                                 const char *key)
{
    return join_key(out, tenant, stream, key);
}

/* An undo record: restores one key's version or hides one id. */
typedef struct undo {
    key_state *ks;
    long long old_version;
    id_state *ids;
} undo;

/* Decides every event of `r` against the batch state. Returns the events stored. */
size_t appender_decide_request(batch_ctx *b, append_req *r, long long *head, const char *now)
{
    undo *log = xcalloc(r->n * 2 + 1, sizeof *log);
    size_t n_undo = 0, stored = 0;
    long long head_before = *head;
    bool failed = false;
    for (size_t i = 0; i < r->n; i++) {
        incoming_event *ev = &r->events[i];
        if (ev->outcome == EV_FAILED) { /* decided before submission */
            failed = true;
            continue;
        }
        char mk[MAP_KEY_MAX];
        if (ev->id_given) {
            id_state *s = strmap_get(&b->ids, appender_id_map_key(mk, ev->tenant, ev->id));
            if (s && s->valid) {
                if (strcmp(s->hash, ev->hash_hex) == 0) {
                    ev->outcome = EV_REPLAYED;
                    ev->position = s->position;
                    ev->version = s->version;
                    free(ev->stream);
                    ev->stream = xstrdup(s->stream);
                    free(ev->key);
                    ev->key = xstrdup(s->key);
                    memcpy(ev->time, s->time, sizeof ev->time);
                } else {
                    json_t *p = problem_newf("duplicate_id",
                                             "event id '%s' is already stored with different "
                                             "content",
                                             ev->id);
                    json_object_set_new(p, "position", json_integer(s->position));
                    fail_event(ev, p);
                    failed = true;
                }
                continue;
            }
        }
        key_state *ks = NULL;
        long long version = 0;
        if (ev->key) {
            const char *k = appender_key_map_key(mk, ev->tenant, ev->stream, ev->key);
            ks = strmap_get(&b->keys, k);
            if (!ks) {
                ks = appender_new_key_state(b);
                strmap_put(&b->keys, k, ks);
            }
            if (ev->expected_version >= 0 && ev->expected_version != ks->version) {
                json_t *p = problem_newf("version_conflict",
                                         "key '%s' in stream '%s' is at version %lld, "
                                         "expected %lld",
                                         ev->key, ev->stream, ks->version, ev->expected_version);
                json_object_set_new(p, "current_version", json_integer(ks->version));
                json_object_set_new(p, "expected_version", json_integer(ev->expected_version));
                fail_event(ev, p);
                failed = true;
                continue;
            }
            log[n_undo++] = (undo){.ks = ks, .old_version = ks->version};
            version = ++ks->version;
        }
        ev->outcome = EV_STORED;
        ev->position = ++*head;
        ev->version = version;
        memcpy(ev->time, now, sizeof ev->time);
        stored++;
        if (ev->id_given) {
            id_state *s = appender_new_id_state(b);
            s->valid = true;
            memcpy(s->hash, ev->hash_hex, sizeof s->hash);
            s->position = ev->position;
            s->version = version;
            s->stream = xstrdup(ev->stream);
            s->key = xstrdup(ev->key);
            memcpy(s->time, now, sizeof s->time);
            strmap_put(&b->ids, appender_id_map_key(mk, ev->tenant, ev->id), s);
            log[n_undo++] = (undo){.ids = s};
        }
    }
    if (failed && r->atomic) {
        /* All or nothing: undo in reverse; the stored ones become "not stored". */
        while (n_undo--) {
            if (log[n_undo].ks) log[n_undo].ks->version = log[n_undo].old_version;
            if (log[n_undo].ids) log[n_undo].ids->valid = false;
        }
        *head = head_before;
        for (size_t i = 0; i < r->n; i++) {
            incoming_event *ev = &r->events[i];
            if (ev->outcome == EV_STORED || ev->outcome == EV_REPLAYED) {
                ev->outcome = EV_PENDING; /* not stored: the batch failed */
                ev->position = 0;
                ev->version = 0;
            }
        }
        stored = 0;
    }
    free(log);
    return stored;
}

/* ------------------------------------------------------------------ SQL */

/* A commit is at most two pipelines (db_pipeline: one round trip each), every value a
 * text parameter, so PostgreSQL parses each event's `data` once, by jsonb's input:
 *   1. (only when client ids or keys need deciding) BEGIN; the event-log lock; the head;
 *      the positions of the client ids already stored; the current version of each key
 *      (then, only if a client id was stored already, its event: read_stored_ids).
 *   2. the INSERTs (prepared, up to INSERT_CHUNK rows each); NOTIFY; COMMIT. Without
 *      step 1 it opens with BEGIN, the lock and the head itself, and each INSERT adds its
 *      rows' batch positions (1…) to that head.
 * Nothing here reads a partition of `events` older than the one holding the head this
 * appender knew, so a commit's cost does not grow with the number of partitions. */
#define INSERT_CHUNK 64
#define INSERT_COLS 16 /* per row; one more parameter, the batch's time, ends the list */

/* Each event's (tenant_id, id) goes to event_ids in the same statement: its primary key,
 * named events_tenant_id, is the idempotency key across the partitions of `events`; and
 * each key's newest version to key_heads, so a key's version is one primary-key probe,
 * never a search through every partition. A relative INSERT's positions are 1… within the
 * batch, added to the head its pipeline read under the lock (head_rel_sql keeps it in the
 * transaction's setting sluice.head): the INSERT reads nothing of `events`. */
static const char *const insert_head =
    "WITH e AS (INSERT INTO events (position, id, tenant_id, stream, key, version, type, "
    "schema_version, correlation_id, causation_id, user_id, source, data, metadata, time, "
    "content_hash, occurred_at) SELECT ";
static const char *const insert_tail =
    " RETURNING tenant_id, id, position, stream, key, version), "
    "i AS (INSERT INTO event_ids (tenant_id, id, position) SELECT tenant_id, id, position "
    "FROM e) "
    "INSERT INTO key_heads (tenant_id, stream, key, version) SELECT tenant_id, stream, key, "
    "max(version) FROM e WHERE key IS NOT NULL GROUP BY tenant_id, stream, key "
    "ON CONFLICT (tenant_id, stream, key) DO UPDATE SET version = "
    "GREATEST(key_heads.version, EXCLUDED.version)";
static const char *const insert_row =
    "($%d::bigint, $%d::text, $%d::text, $%d::text, $%d::text, $%d::bigint, $%d::text, "
    "$%d::integer, $%d::text, $%d::text, $%d::text, $%d::text, $%d::jsonb, $%d::jsonb, $%d::text, "
    "$%d::timestamptz)";
/* Client ids already stored: their positions (event_ids), then, for the rare re-send, what
 * the stored event says (details_sql, a second round trip, reading only the partitions of
 * those positions). */
static const char *const ids_sql =
    "SELECT x.t, x.id, i.position FROM unnest($1::text[], $2::text[]) AS x(t, id) "
    "JOIN event_ids i ON i.tenant_id = x.t AND i.id = x.id";
static const char *const details_sql =
    "SELECT position, stream, key, version, "
    "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), content_hash "
    "FROM events WHERE position = ANY($1::bigint[])";
/* A key's version: its newest (key_heads holds every key's, and what retention kept of
 * expired ones). */
static const char *const keys_sql =
    "SELECT x.t, x.s, x.k, h.version FROM unnest($1::text[], $2::text[], $3::text[]) AS "
    "x(t, s, k) LEFT JOIN key_heads h ON h.tenant_id = x.t AND h.stream = x.s AND h.key = x.k";
static const char *const lock_sql = "SELECT pg_advisory_xact_lock(" LOCK_EVENT_LOG ")";
/* The head. $1 is the head this appender last knew, never above the true one (positions
 * only grow, and the newest event is never deleted), so only the partitions from it on are
 * read: the statement is prepared with a generic plan (PREPARED), whose partitions below
 * $1 are pruned when it starts ("Subplans Removed"), so they are locked but never opened.
 * ORDER BY ... LIMIT 1 rather than max(): max() is planned as an aggregate, then as this. */
#define HEAD_EXPR                                                                                  \
    "coalesce((SELECT position FROM events WHERE position >= $1::bigint "                          \
    "ORDER BY position DESC LIMIT 1), 0)"
static const char *const head_sql = "SELECT " HEAD_EXPR;
static const char *const head_rel_sql =
    "SELECT set_config('sluice.head', " HEAD_EXPR "::text, true)";

static char notify_sql[96];

/* Every statement of a commit but BEGIN, NOTIFY and COMMIT runs prepared on `conn`
 * (db_step.prepared: the connection's statement cache; a statement it lacks is prepared in
 * the same pipeline), with generic plans (plan_cache_mode, connect_now). Run unnamed, the
 * lock, the head and the id and key lookups were parsed and planned anew in every commit,
 * under the event-log lock: at 2,000 single events/s (bench/partitions, pg_stat_statements)
 * planning was 124 µs of the head's 131, 80 of the client ids' 104 and 68 of the keys' 91,
 * about 0.18 of a core on the one backend every commit goes through. */
#define PREPARED(...) ((db_step){.prepared = true, __VA_ARGS__})

/* The INSERT texts ([relative][rows]), made once; the appender thread's only. */
static char *insert_texts[2][INSERT_CHUNK + 1];

static const char *insert_sql(bool relative, int rows)
{
    if (insert_texts[relative][rows]) return insert_texts[relative][rows];
    buf b;
    buf_init(&b);
    buf_puts(&b, insert_head);
    buf_puts(&b, relative ? "current_setting('sluice.head')::bigint + v.p" : "v.p");
    buf_printf(&b,
               ", v.id, v.t, v.s, v.k, v.v, v.ty, v.sv, v.c, v.ca, v.u, v.so, v.d, v.m, "
               "$%d::timestamptz, v.h, v.oc FROM (VALUES ",
               rows * INSERT_COLS + 1);
    for (int r = 0; r < rows; r++) {
        int o = r * INSERT_COLS;
        if (r) buf_puts(&b, ", ");
        buf_printf(&b, insert_row, o + 1, o + 2, o + 3, o + 4, o + 5, o + 6, o + 7, o + 8, o + 9,
                   o + 10, o + 11, o + 12, o + 13, o + 14, o + 15, o + 16);
    }
    buf_puts(&b, ") AS v(p, id, t, s, k, v, ty, sv, c, ca, u, so, d, m, h, oc)");
    buf_puts(&b, insert_tail);
    return insert_texts[relative][rows] = buf_steal(&b, NULL);
}

/* Adds `s` to a PostgreSQL array literal being built in `b` ("{" written by the caller). */
static void array_add(buf *b, const char *s)
{
    if (b->len > 1) buf_append(b, ",", 1);
    buf_append(b, "\"", 1);
    for (const char *c = s; *c; c++) {
        if (*c == '"' || *c == '\\') buf_append(b, "\\", 1);
        buf_append(b, c, 1);
    }
    buf_append(b, "\"", 1);
}

static void array_open(buf *b)
{
    buf_init(b);
    buf_append(b, "{", 1);
}

static const char *array_close(buf *b)
{
    buf_append(b, "}", 1);
    return b->data;
}

/* The first result of `res` that failed, or NULL. */
static PGresult *first_failed(PGresult **res, int n)
{
    for (int i = 0; i < n; i++)
        if (!db_ok(res[i]) && PQresultStatus(res[i]) != PGRES_PIPELINE_ABORTED) return res[i];
    for (int i = 0; i < n; i++)
        if (!db_ok(res[i])) return res[i];
    return NULL;
}

static bool all_ok(PGresult **res, int n, const char *what)
{
    PGresult *bad = first_failed(res, n);
    if (bad) db_log_error("appender", what, bad);
    return bad == NULL;
}

/* How a commit, or one of its round trips, went. */
typedef enum {
    COMMIT_OK = 0,
    COMMIT_LOST = -1,      /* the connection failed, or the batch is known not to have
                              committed: the batch fails with 503 */
    COMMIT_FAILED = -2,    /* a statement failed: retry request by request */
    COMMIT_UNKNOWN = -3,   /* commit_batch: whether it committed stayed unknown */
    COMMIT_DUPLICATE = -4, /* write_events, relative: a client id of the batch was stored
                              already */
    COMMIT_IN_DOUBT = -5,  /* write_events: the connection broke once COMMIT had been sent */
    COMMIT_NO_PARTITION = -6, /* write_events: a position past the last partition (appends
                                 outran the leader): the caller adds one and commits again */
} commit_rc;

/* Round trip 1b, for client ids that are stored already (a re-send: rare): what their
 * events say, read from the partitions of their positions only. `ids` holds (tenant, id,
 * position) rows. COMMIT_OK, COMMIT_LOST or COMMIT_FAILED. */
static commit_rc read_stored_ids(const PGresult *ids, batch_ctx *b)
{
    buf positions;
    array_open(&positions);
    for (int row = 0; row < PQntuples(ids); row++) {
        if (positions.len > 1) buf_append(&positions, ",", 1);
        buf_puts(&positions, PQgetvalue(ids, row, 2));
    }
    const char *v[] = {array_close(&positions)};
    PGresult *q = db_exec(&conn, details_sql, 1, v, cfg->store_timeout_ms);
    buf_dispose(&positions);
    commit_rc rc = !q ? COMMIT_LOST : db_ok(q) ? COMMIT_OK : COMMIT_FAILED;
    if (rc == COMMIT_FAILED) db_log_error("appender", "reading stored ids failed", q);
    for (int row = 0; rc == COMMIT_OK && row < PQntuples(ids); row++) {
        const char *pos = PQgetvalue(ids, row, 2);
        int at = -1;
        for (int k = 0; k < PQntuples(q) && at < 0; k++)
            if (strcmp(PQgetvalue(q, k, 0), pos) == 0) at = k;
        if (at < 0) continue; /* its partition is being dropped: the id is new again */
        id_state *st = appender_new_id_state(b);
        st->valid = true;
        st->position = strtoll(pos, NULL, 10);
        st->stream = xstrdup(PQgetvalue(q, at, 1));
        st->key = PQgetisnull(q, at, 2) ? NULL : xstrdup(PQgetvalue(q, at, 2));
        st->version = PQgetisnull(q, at, 3) ? 0 : strtoll(PQgetvalue(q, at, 3), NULL, 10);
        snprintf(st->time, sizeof st->time, "%s", PQgetvalue(q, at, 4));
        snprintf(st->hash, sizeof st->hash, "%s", PQgetvalue(q, at, 5));
        char mk[MAP_KEY_MAX];
        strmap_put(&b->ids, appender_id_map_key(mk, PQgetvalue(ids, row, 0), PQgetvalue(ids, row, 1)),
                   st);
    }
    PQclear(q);
    return rc;
}

/* Round trip 1. Fills head, id and key states. COMMIT_OK, COMMIT_LOST or COMMIT_FAILED. */
static commit_rc read_state(append_req **reqs, size_t n_reqs, batch_ctx *b, long long *head)
{
    buf ids_t, ids_id, keys_t, keys_s, keys_k;
    array_open(&ids_t), array_open(&ids_id), array_open(&keys_t), array_open(&keys_s),
        array_open(&keys_k);
    size_t n_ids = 0, n_keys = 0;
    for (size_t r = 0; r < n_reqs; r++) {
        for (size_t i = 0; i < reqs[r]->n; i++) {
            incoming_event *ev = &reqs[r]->events[i];
            if (ev->outcome == EV_FAILED) continue;
            if (ev->id_given) {
                array_add(&ids_t, ev->tenant);
                array_add(&ids_id, ev->id);
                n_ids++;
            }
            if (ev->key) {
                array_add(&keys_t, ev->tenant);
                array_add(&keys_s, ev->stream);
                array_add(&keys_k, ev->key);
                n_keys++;
            }
        }
    }
    const char *idv[] = {array_close(&ids_t), array_close(&ids_id)};
    const char *keyv[] = {array_close(&keys_t), array_close(&keys_s), array_close(&keys_k)};
    char known[24];
    fmt_lld(known, atomic_load(&head_position));
    const char *headv[] = {known};
    db_step steps[5] = {{.sql = "BEGIN"}, PREPARED(.sql = lock_sql),
                        PREPARED(.sql = head_sql, .nparams = 1, .vals = headv)};
    int n = 3, at_ids = -1, at_keys = -1;
    if (n_ids) at_ids = n, steps[n++] = PREPARED(.sql = ids_sql, .nparams = 2, .vals = idv);
    if (n_keys) at_keys = n, steps[n++] = PREPARED(.sql = keys_sql, .nparams = 3, .vals = keyv);
    PGresult *res[5] = {0};
    int got = db_pipeline(&conn, steps, n, cfg->store_timeout_ms, res, NULL);
    commit_rc rc = got < 0                                            ? COMMIT_LOST
                   : all_ok(res, got, "reading the log state failed") ? COMMIT_OK
                                                                      : COMMIT_FAILED;
    if (rc == COMMIT_OK) *head = strtoll(PQgetvalue(res[2], 0, 0), NULL, 10);
    if (rc == COMMIT_OK && at_ids >= 0 && PQntuples(res[at_ids]) > 0)
        rc = read_stored_ids(res[at_ids], b);
    for (int row = 0; rc == COMMIT_OK && at_keys >= 0 && row < PQntuples(res[at_keys]); row++) {
        PGresult *q = res[at_keys];
        char mk[MAP_KEY_MAX];
        const char *k = appender_key_map_key(mk, PQgetvalue(q, row, 0), PQgetvalue(q, row, 1),
                                             PQgetvalue(q, row, 2));
        if (strmap_get(&b->keys, k)) continue; /* the same key asked twice */
        key_state *ks = appender_new_key_state(b);
        ks->version = PQgetisnull(q, row, 3) ? 0 : strtoll(PQgetvalue(q, row, 3), NULL, 10);
        strmap_put(&b->keys, k, ks);
    }
    for (int i = 0; i < (got > 0 ? got : 0); i++)
        PQclear(res[i]);
    buf_dispose(&ids_t), buf_dispose(&ids_id), buf_dispose(&keys_t), buf_dispose(&keys_s),
        buf_dispose(&keys_k);
    return rc;
}

/* The numbers of one row, as text parameters. */
typedef struct row_nums {
    char p[24], v[24], sv[24];
} row_nums;

/* Fills one row's parameters. `p` is the position to send (absolute, or 1-based within
 * the batch for a relative INSERT). */
static void row_params(const incoming_event *ev, long long p, row_nums *nums, const char **v)
{
    fmt_lld(nums->p, p);
    fmt_lld(nums->v, ev->version);
    fmt_lld(nums->sv, ev->schema_version);
    v[0] = nums->p;
    v[1] = ev->id;
    v[2] = ev->tenant;
    v[3] = ev->stream;
    v[4] = ev->key;
    v[5] = ev->key ? nums->v : NULL;
    v[6] = ev->type;
    v[7] = ev->schema_version ? nums->sv : NULL;
    v[8] = ev->correlation_id;
    v[9] = ev->causation_id;
    v[10] = ev->user_id;
    v[11] = ev->source;
    v[12] = ev->data_text;
    v[13] = ev->metadata_text;
    v[14] = ev->hash_hex;
    v[15] = ev->occurred_at[0] ? ev->occurred_at : NULL;
}

/* A relative batch's positions (1… in decision order, stored events and the replays of
 * ids first stored in this batch alike) become absolute: + base. */
static void shift_positions(append_req **reqs, size_t n_reqs, long long base)
{
    for (size_t r = 0; r < n_reqs; r++)
        for (size_t i = 0; i < reqs[r]->n; i++) {
            incoming_event *ev = &reqs[r]->events[i];
            if (ev->outcome == EV_STORED || ev->outcome == EV_REPLAYED) ev->position += base;
        }
}

/* Round trip 2: INSERT the stored events, NOTIFY, COMMIT. COMMIT_OK, COMMIT_LOST or
 * COMMIT_FAILED as read_state, or COMMIT_IN_DOUBT: the connection broke after the whole
 * pipeline (COMMIT included) had been sent: whether it committed is unknown. `relative`: the
 * batch had nothing to decide against the store: the transaction opens here, positions were
 * assigned from 0, and the head read under the lock is added to them (*head_out); then
 * COMMIT_DUPLICATE means a client id of the batch was already stored (the unique constraint
 * refused it): the caller rolls back and decides again. */
static commit_rc write_events(append_req **reqs, size_t n_reqs, size_t stored, const char *now,
                              bool relative, long long *head_out, int *backend)
{
    size_t chunks = (stored + INSERT_CHUNK - 1) / INSERT_CHUNK;
    db_step *steps = xcalloc(5 + chunks, sizeof *steps);
    const char **vals = xcalloc(stored * INSERT_COLS + chunks + 1, sizeof *vals);
    row_nums *nums = xcalloc(stored ? stored : 1, sizeof *nums);
    int n = 0, at_head = -1;
    char known[24];
    fmt_lld(known, atomic_load(&head_position));
    const char *headv[] = {known};
    if (relative) {
        steps[n++] = (db_step){.sql = "BEGIN"};
        steps[n++] = PREPARED(.sql = lock_sql);
        at_head = n;
        steps[n++] = PREPARED(.sql = head_rel_sql, .nparams = 1, .vals = headv);
    }
    size_t k = 0, in_chunk = 0;
    const char **v = vals;
    for (size_t r = 0; r < n_reqs; r++) {
        for (size_t i = 0; i < reqs[r]->n; i++) {
            incoming_event *ev = &reqs[r]->events[i];
            if (ev->outcome != EV_STORED) continue;
            row_params(ev, ev->position, &nums[k], v);
            v += INSERT_COLS;
            k++;
            in_chunk++;
            if (in_chunk < INSERT_CHUNK && k < stored) continue;
            /* The chunk is complete: its time parameter, its statement. */
            *v++ = now;
            int rows = (int)in_chunk;
            steps[n++] = PREPARED(.sql = insert_sql(relative, rows),
                                  .nparams = rows * INSERT_COLS + 1,
                                  .vals = v - rows * INSERT_COLS - 1);
            in_chunk = 0;
        }
    }
    if (stored) steps[n++] = (db_step){.sql = notify_sql};
    steps[n++] = (db_step){.sql = "COMMIT"};
    PGresult **res = xcalloc((size_t)n, sizeof *res);
    bool all_sent = false;
    *backend = PQbackendPID(conn); /* the session to end if the outcome is lost */
    int got = db_pipeline(&conn, steps, n, cfg->store_timeout_ms, res, &all_sent);
    PGresult *bad = got < 0 ? NULL : first_failed(res, got);
    commit_rc rc = got < 0 ? (all_sent ? COMMIT_IN_DOUBT : COMMIT_LOST)
                   : bad   ? COMMIT_FAILED
                           : COMMIT_OK;
    const char *constraint = bad ? PQresultErrorField(bad, PG_DIAG_CONSTRAINT_NAME) : NULL;
    if (bad && relative && strcmp(db_sqlstate(bad), "23505") == 0 && constraint &&
        strcmp(constraint, "events_tenant_id") == 0)
        rc = COMMIT_DUPLICATE; /* expected now and then: a client re-sent an event */
    else if (bad && strcmp(db_sqlstate(bad), "23514") == 0 &&
             strstr(PQresultErrorMessage(bad), "no partition"))
        rc = COMMIT_NO_PARTITION;
    else if (bad)
        db_log_error("appender", "insert failed", bad);
    /* A COMMIT of an aborted transaction answers ROLLBACK without an error. */
    if (rc == COMMIT_OK && strcmp(PQcmdStatus(res[got - 1]), "COMMIT") != 0) rc = COMMIT_FAILED;
    if (rc == COMMIT_OK && relative) {
        long long base = strtoll(PQgetvalue(res[at_head], 0, 0), NULL, 10);
        shift_positions(reqs, n_reqs, base);
        *head_out = base + (long long)stored;
    }
    for (int i = 0; i < (got > 0 ? got : 0); i++)
        PQclear(res[i]);
    free(res);
    free(nums);
    free(vals);
    free(steps);
    return rc;
}

static void rollback(void)
{
    PGresult *r = db_exec(&conn, "ROLLBACK", 0, NULL, cfg->store_timeout_ms);
    PQclear(r);
}

/* The first event `reqs` stored, or NULL. */
static incoming_event *first_stored(append_req **reqs, size_t n_reqs)
{
    for (size_t r = 0; r < n_reqs; r++)
        for (size_t i = 0; i < reqs[r]->n; i++)
            if (reqs[r]->events[i].outcome == EV_STORED) return &reqs[r]->events[i];
    return NULL;
}

static void connect_now(void);

/* The connection broke after COMMIT may have reached PostgreSQL: reconnects (every
 * quarter second, for as long as it takes; publishing answers 503 meanwhile) and asks
 * by the first stored event's id whether the batch committed. Returns its position
 * (the batch committed), 0 (it did not) or -1 (no answer within the store timeout, or
 * stopping).
 * The old session must be gone before the answer counts: the lost COMMIT may still sit
 * in the kernel's send buffer, retransmitted to a session that is alive with its
 * transaction open, and commit after a lookup said it had not. So the old backend
 * (`backend`, its pid) is terminated, and the lookup waits until it has left. */
static long long commit_outcome(const incoming_event *first, int backend)
{
    log_warn("appender", "connection lost after COMMIT was sent; asking whether it committed",
             json_pack("{s:s,s:i}", "id", first->id, "backend", backend));
    atomic_store(&connected, false); /* new submissions: 503 until the answer is known */
    char pid[16];
    snprintf(pid, sizeof pid, "%d", backend);
    /* Bounded: a client waits at most about twice the store timeout for its answer; past
     * it the outcome is reported unknown (500), never guessed. */
    int64_t give_up = time_mono_ms() + cfg->store_timeout_ms;
    for (;;) {
        if (!conn) connect_now();
        if (conn) {
            const char *tp[] = {pid};
            PGresult *t = db_exec(&conn,
                                  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE pid = $1::int",
                                  1, tp, cfg->store_timeout_ms);
            bool gone = db_ok(t) && PQntuples(t) == 0; /* no such session (any more) */
            PQclear(t);
            if (gone) {
                const char *p[] = {first->tenant, first->id};
                PGresult *r =
                    db_exec(&conn, "SELECT position FROM event_ids WHERE tenant_id = $1 AND id = $2",
                            2, p, cfg->store_timeout_ms);
                long long pos = !db_ok(r)      ? -1
                                : PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                                               : 0;
                PQclear(r);
                if (pos >= 0) {
                    log_info("appender",
                             pos ? "the batch had committed" : "the batch had not committed",
                             json_pack("{s:s}", "id", first->id));
                    return pos;
                }
            }
        }
        pthread_mutex_lock(&lock);
        bool stop = stopping;
        pthread_mutex_unlock(&lock);
        if (stop || time_mono_ms() > give_up) {
            log_warn("appender", "the outcome of a commit stays unknown",
                     json_pack("{s:s}", "id", first->id));
            return -1;
        }
        usleep(100 * 1000);
    }
}

/* Hands the committed events to the feed (tail.c), in position order. */
static void hand_over(append_req **reqs, size_t n_reqs, size_t stored)
{
    if (!stored) return;
    stored_event **evs = xmalloc(stored * sizeof *evs);
    int k = 0;
    for (size_t r = 0; r < n_reqs; r++)
        for (size_t i = 0; i < reqs[r]->n; i++)
            if (reqs[r]->events[i].outcome == EV_STORED)
                evs[k++] = eventlog_committed(&reqs[r]->events[i]);
    tail_committed(evs, k);
}

/* Commits one batch: COMMIT_OK, COMMIT_LOST (the caller fails the batch), COMMIT_FAILED (the
 * caller retries request by request) or COMMIT_UNKNOWN (the outcome stayed unknown). */
static commit_rc commit_batch(append_req **reqs, size_t n_reqs)
{
    batch_ctx b;
    appender_batch_init(&b);
    char now[32];
    time_now_rfc3339(now);
    long long head = 0;
    int backend = 0;             /* the PostgreSQL session the last write went to */
    bool relative_write = false; /* its positions were relative (1…) */
    /* Without keys there is nothing to look up first: client ids are almost always new,
     * so the batch is inserted at once and the unique constraint on (tenant_id, id) says
     * when one is not (then the batch is decided again against the stored rows). */
    bool fast = true;
    for (size_t r = 0; r < n_reqs && fast; r++)
        for (size_t i = 0; i < reqs[r]->n && fast; i++)
            if (reqs[r]->events[i].key) fast = false;
    commit_rc rc = fast ? COMMIT_OK : read_state(reqs, n_reqs, &b, &head);
    size_t stored = 0;
    if (rc == COMMIT_OK) {
        for (size_t r = 0; r < n_reqs; r++)
            stored += appender_decide_request(&b, reqs[r], &head, now);
        rc = write_events(reqs, n_reqs, stored, now, fast, &head, &backend);
        relative_write = fast;
        if (rc == COMMIT_DUPLICATE) {
            rollback();
            for (size_t r = 0; r < n_reqs; r++)
                reset_request(reqs[r]);
            appender_batch_dispose(&b);
            appender_batch_init(&b);
            head = 0;
            stored = 0;
            rc = conn ? read_state(reqs, n_reqs, &b, &head) : COMMIT_LOST;
            for (size_t r = 0; rc == COMMIT_OK && r < n_reqs; r++)
                stored += appender_decide_request(&b, reqs[r], &head, now);
            relative_write = false;
            if (rc == COMMIT_OK)
                rc = write_events(reqs, n_reqs, stored, now, false, &head, &backend);
        }
        incoming_event *first = rc == COMMIT_IN_DOUBT && stored ? first_stored(reqs, n_reqs) : NULL;
        if (rc == COMMIT_IN_DOUBT && !first)
            rc = COMMIT_LOST; /* nothing was to be stored: nothing to find out */
        if (first) {
            long long pos = commit_outcome(first, backend);
            if (pos > 0) {
                /* Relative positions (1…) become absolute; absolute ones are right. The
                 * stored events are consecutive from the first. */
                long long base = relative_write ? pos - first->position : 0;
                if (relative_write) shift_positions(reqs, n_reqs, base);
                head = pos + (long long)stored - 1;
                rc = COMMIT_OK;
            } else { /* COMMIT_LOST: it did not commit, a 503 is the truth */
                rc = pos < 0 ? COMMIT_UNKNOWN : COMMIT_LOST;
            }
        }
        if (rc == COMMIT_OK && stored) {
            atomic_store(&head_position, head);
            atomic_store(&last_commit_ms, time_mono_ms());
        }
        if (rc == COMMIT_OK) metrics_batch((int)stored);
        if (rc == COMMIT_OK) hand_over(reqs, n_reqs, stored);
    }
    if ((rc == COMMIT_FAILED || rc == COMMIT_NO_PARTITION) && conn) rollback();
    appender_batch_dispose(&b);
    return rc;
}

static void finish(append_req **reqs, size_t n_reqs)
{
    for (size_t r = 0; r < n_reqs; r++)
        reqs[r]->done(reqs[r]);
}

static void fail_all(append_req **reqs, size_t n_reqs, const char *detail)
{
    for (size_t r = 0; r < n_reqs; r++)
        fail_request(reqs[r], "store_unavailable", detail);
}

static void process(append_req **reqs, size_t n_reqs)
{
    commit_rc rc = commit_batch(reqs, n_reqs);
    if (rc == COMMIT_NO_PARTITION && conn) {
        /* The leader keeps a partition ahead; appends outran it (a tiny
         * SLUICE_PARTITION_EVENTS). Add what this batch needs, then commit again. */
        long long events = 0;
        for (size_t r = 0; r < n_reqs; r++) {
            reset_request(reqs[r]);
            events += (long long)reqs[r]->n;
        }
        log_warn("appender", "appends outran the partitions; adding one", NULL);
        if (partitions_ensure(&conn, atomic_load(&head_position) + events, cfg->partition_events,
                              cfg->store_timeout_ms) >= 0 && conn)
            rc = commit_batch(reqs, n_reqs);
    }
    if (rc == COMMIT_NO_PARTITION) rc = conn ? COMMIT_FAILED : COMMIT_LOST;
    if (rc == COMMIT_FAILED && n_reqs > 1) {
        /* Isolate the request that made the statement fail. */
        for (size_t r = 0; r < n_reqs; r++) {
            reset_request(reqs[r]);
            commit_rc one = conn ? commit_batch(&reqs[r], 1) : COMMIT_LOST;
            if (one == COMMIT_FAILED)
                fail_request(reqs[r], "internal", "the event store refused this request");
            if (one == COMMIT_LOST)
                fail_request(reqs[r], "store_unavailable", "PostgreSQL connection lost");
        }
    } else if (rc == COMMIT_FAILED) {
        reset_request(reqs[0]);
        fail_request(reqs[0], "internal", "the event store refused this request");
    } else if (rc == COMMIT_LOST) {
        fail_all(reqs, n_reqs, "PostgreSQL connection lost while committing");
    } else if (rc == COMMIT_UNKNOWN) {
        for (size_t r = 0; r < n_reqs; r++)
            fail_request(reqs[r], "internal",
                         "whether this commit succeeded could not be learned (PostgreSQL "
                         "unreachable); re-send with the same event ids to find out");
    }
    if (!conn) {
        atomic_store(&connected, false);
        log_error("appender", "postgresql connection lost; publishing answers 503 until it returns",
                  NULL);
    }
    finish(reqs, n_reqs);
}

/* ------------------------------------------------------------------ thread */

static void connect_now(void)
{
    snprintf(notify_sql, sizeof notify_sql, "NOTIFY " EVENTLOG_CHANNEL ", '%s'",
             eventlog_instance());
    conn = db_connect(cfg->database_url, "appender");
    if (!conn) return;
    /* Generic plans for the prepared statements (PREPARED): the head's prunes at its start,
     * the others have no plan that depends on their values. */
    PGresult *r =
        db_exec(&conn, "SET plan_cache_mode = force_generic_plan", 0, NULL, cfg->store_timeout_ms);
    PQclear(r);
    r = db_exec(&conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL,
                cfg->store_timeout_ms);
    if (db_ok(r)) atomic_store(&head_position, strtoll(PQgetvalue(r, 0, 0), NULL, 10));
    PQclear(r);
    if (conn) {
        atomic_store(&connected, true);
        log_info("appender", "postgresql connected", NULL);
    }
}

static void *appender_main(void *unused)
{
    (void)unused;
    append_req **reqs = NULL;
    size_t cap = 0;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!q_head && !stopping && atomic_load(&connected))
            pthread_cond_wait(&cond, &lock);
        if (!atomic_load(&connected) && !q_head && !stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 500 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&cond, &lock, &ts);
        }
        if (!q_head && stopping) {
            pthread_mutex_unlock(&lock);
            break;
        }
        size_t n = 0, events = 0, bytes = 0;
        while (q_head && (n == 0 || (events + q_head->n <= APPENDER_MAX_EVENTS &&
                                     bytes + q_head->bytes <= APPENDER_MAX_BYTES))) {
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                reqs = xrealloc(reqs, cap * sizeof *reqs);
            }
            append_req *r = q_head;
            q_head = r->next;
            if (!q_head) q_tail = NULL;
            reqs[n++] = r;
            events += r->n;
            bytes += r->bytes;
        }
        q_events -= (long)events;
        pthread_mutex_unlock(&lock);

        /* A server that went away while the connection idled said so (or closed it):
         * found out now, before a batch is sent into it and its outcome is unknown. */
        if (conn && n > 0 && !db_alive(conn)) {
            PQfinish(conn);
            conn = NULL;
        }
        if (!conn) connect_now();
        if (n == 0) continue;
        if (!conn) {
            fail_all(reqs, n, "PostgreSQL is unreachable");
            finish(reqs, n);
            continue;
        }
        process(reqs, n);
    }
    free(reqs);
    PQfinish(conn);
    conn = NULL;
    return NULL;
}

int appender_start(const sluice_config *c)
{
    cfg = c;
    connect_now();
    if (!conn) return -1;
    if (pthread_create(&thread, NULL, appender_main, NULL) != 0) return -1;
    return 0;
}

void appender_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
}
