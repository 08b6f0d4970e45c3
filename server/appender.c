/*
 * appender.c — group commit (see appender.h).
 *
 * DESIGN: one thread, one connection. A commit is two round trips:
 *   1. BEGIN; take the event-log advisory lock; read the head position, the
 *      stored rows of client-chosen ids and the current version of each key.
 *   2. INSERT every accepted event with one statement (json_to_recordset over
 *      one JSON array); COMMIT.
 * Between them the decisions are made in C, request by request in arrival
 * order, with an undo log so an atomic request that fails leaves no trace in
 * the positions, versions or ids the requests after it see. Because every
 * instance takes the same lock before reading the head, positions are gap-free
 * in commit order across instances (ARCHITECTURE.md, "Invariants").
 * A batch with no client ids and no keys has nothing to decide and takes one
 * round trip: the head is read under the lock by the INSERT itself.
 * A failed statement (never expected) retries each request alone, so one
 * request cannot fail another; a lost connection fails the batch with 503 and
 * the thread reconnects every half second while submissions are refused fast.
 */
#include "appender.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "problem.h"
#include "tail.h"
#include "timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <search.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define APPENDER_LOCK_KEY "7341263002" /* pg_advisory_xact_lock key of the event log */
#define APPENDER_MAX_EVENTS 5000       /* events per commit */
#define APPENDER_MAX_BYTES (16 << 20)  /* approximate statement size per commit */

static const sluice_config *cfg;
static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static append_req *q_head, *q_tail; /* {lock} FIFO of waiting requests */
static long q_events;               /* {lock} events waiting */
static bool stopping;               /* {lock} */
static atomic_bool connected;       /* written by the appender thread */
static atomic_llong head_position;  /* written by the appender thread */
static PGconn *conn;                /* appender thread only */

long long appender_head(void)
{
    return atomic_load(&head_position);
}

bool appender_connected(void)
{
    return atomic_load(&connected);
}

int appender_submit(append_req *r)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (stopping) {
        rc = -3;
    } else if (!atomic_load(&connected)) {
        rc = -2;
    } else if (q_events + (long)r->n > cfg->appender_queue) {
        rc = -1;
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

static void fail_event(sluice_event *ev, json_t *problem)
{
    json_decref(ev->problem);
    ev->outcome = EV_FAILED;
    ev->problem = problem;
}

static void reset_request(append_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        sluice_event *ev = &r->events[i];
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
    for (size_t i = 0; i < r->n; i++) fail_event(&r->events[i], problem_new(code, detail));
}

/* ------------------------------------------------------------------ decisions */

/* What the store (or this batch) already holds for a client id. */
typedef struct id_state {
    bool valid;              /* false once undone */
    char hash[65];
    long long position, version;
    char *stream, *key;      /* owned */
    char time[32];
} id_state;

/* A key's current version, as this batch sees it. */
typedef struct key_state {
    long long version;
} key_state;

typedef struct batch_ctx {
    struct hsearch_data ids, keys;
    char **owned_keys;       /* strings used as hash keys; owned */
    size_t n_owned, cap_owned;
    id_state **id_states;    /* owned */
    size_t n_ids, cap_ids;
    key_state **key_states;  /* owned */
    size_t n_keys, cap_keys;
} batch_ctx;

static char *own_key(batch_ctx *b, char *k)
{
    if (b->n_owned == b->cap_owned) {
        b->cap_owned = b->cap_owned ? b->cap_owned * 2 : 64;
        b->owned_keys = xrealloc(b->owned_keys, b->cap_owned * sizeof *b->owned_keys);
    }
    b->owned_keys[b->n_owned++] = k;
    return k;
}

static void *map_get(struct hsearch_data *h, const char *k)
{
    ENTRY e = {.key = (char *)k, .data = NULL}, *found = NULL;
    if (hsearch_r(e, FIND, &found, h) && found) return found->data;
    return NULL;
}

static void map_put(batch_ctx *b, struct hsearch_data *h, char *k, void *v)
{
    ENTRY e = {.key = own_key(b, k), .data = v}, *found = NULL;
    if (!hsearch_r(e, ENTER, &found, h)) abort(); /* sized for every event at creation */
    found->data = v;
}

static id_state *new_id_state(batch_ctx *b)
{
    if (b->n_ids == b->cap_ids) {
        b->cap_ids = b->cap_ids ? b->cap_ids * 2 : 64;
        b->id_states = xrealloc(b->id_states, b->cap_ids * sizeof *b->id_states);
    }
    id_state *s = xcalloc(1, sizeof *s);
    b->id_states[b->n_ids++] = s;
    return s;
}

static key_state *new_key_state(batch_ctx *b)
{
    if (b->n_keys == b->cap_keys) {
        b->cap_keys = b->cap_keys ? b->cap_keys * 2 : 64;
        b->key_states = xrealloc(b->key_states, b->cap_keys * sizeof *b->key_states);
    }
    key_state *s = xcalloc(1, sizeof *s);
    b->key_states[b->n_keys++] = s;
    return s;
}

static void batch_init(batch_ctx *b, size_t n_events)
{
    memset(b, 0, sizeof *b);
    hcreate_r(n_events * 2 + 16, &b->ids);
    hcreate_r(n_events * 2 + 16, &b->keys);
}

static void batch_dispose(batch_ctx *b)
{
    hdestroy_r(&b->ids);
    hdestroy_r(&b->keys);
    for (size_t i = 0; i < b->n_owned; i++) free(b->owned_keys[i]);
    for (size_t i = 0; i < b->n_ids; i++) {
        free(b->id_states[i]->stream);
        free(b->id_states[i]->key);
        free(b->id_states[i]);
    }
    for (size_t i = 0; i < b->n_keys; i++) free(b->key_states[i]);
    free(b->owned_keys);
    free(b->id_states);
    free(b->key_states);
}

static char *id_map_key(const sluice_event *ev)
{
    return xasprintf("%s\x1f%s", ev->tenant, ev->id);
}

static char *key_map_key(const sluice_event *ev)
{
    return xasprintf("%s\x1f%s\x1f%s", ev->tenant, ev->stream, ev->key);
}

/* An undo record: restores one key's version or hides one id. */
typedef struct undo {
    key_state *ks;
    long long old_version;
    id_state *ids;
} undo;

/* Decides every event of `r` against the batch state. Returns the events stored. */
static size_t decide_request(batch_ctx *b, append_req *r, long long *head, const char *now)
{
    undo *log = xcalloc(r->n * 2 + 1, sizeof *log);
    size_t n_undo = 0, stored = 0;
    long long head_before = *head;
    bool failed = false;
    for (size_t i = 0; i < r->n; i++) {
        sluice_event *ev = &r->events[i];
        if (ev->outcome == EV_FAILED) { /* decided before submission */
            failed = true;
            continue;
        }
        if (ev->id_given) {
            char *k = id_map_key(ev);
            id_state *s = map_get(&b->ids, k);
            free(k);
            if (s && s->valid) {
                if (strcmp(s->hash, ev->hash_hex) == 0) {
                    ev->outcome = EV_REPLAYED;
                    ev->position = s->position;
                    ev->version = s->version;
                    free(ev->stream);
                    ev->stream = xstrdup(s->stream);
                    free(ev->key);
                    ev->key = xstrdup(s->key);
                    snprintf(ev->time, sizeof ev->time, "%s", s->time);
                } else {
                    json_t *p = problem_newf("duplicate_id",
                                             "event id '%s' is already stored with different "
                                             "content", ev->id);
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
            char *k = key_map_key(ev);
            ks = map_get(&b->keys, k);
            if (!ks) {
                ks = new_key_state(b);
                map_put(b, &b->keys, k, ks);
            } else {
                free(k);
            }
            if (ev->expected_version >= 0 && ev->expected_version != ks->version) {
                json_t *p = problem_newf("version_conflict",
                                         "key '%s' in stream '%s' is at version %lld, "
                                         "expected %lld", ev->key, ev->stream, ks->version,
                                         ev->expected_version);
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
        snprintf(ev->time, sizeof ev->time, "%s", now);
        stored++;
        if (ev->id_given) {
            id_state *s = new_id_state(b);
            s->valid = true;
            snprintf(s->hash, sizeof s->hash, "%s", ev->hash_hex);
            s->position = ev->position;
            s->version = version;
            s->stream = xstrdup(ev->stream);
            s->key = xstrdup(ev->key);
            snprintf(s->time, sizeof s->time, "%s", now);
            map_put(b, &b->ids, id_map_key(ev), s);
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
            sluice_event *ev = &r->events[i];
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

static const char *const insert_sql_head =
    "INSERT INTO events (position, id, tenant_id, stream, key, version, type, schema_version, "
    "correlation_id, causation_id, user_id, source, data, metadata, time, content_hash) "
    "SELECT ";

static const char *const insert_sql_tail =
    "::timestamptz, x.h FROM json_to_recordset(%s::json) AS x(p bigint, id text, t text, "
    "s text, k text, v bigint, ty text, sv integer, c text, ca text, u text, so text, d jsonb, "
    "m jsonb, h text) ORDER BY x.p";

/* Appends `text` as an escaped SQL literal; false if the connection is gone. */
static bool append_literal(buf *sql, const char *text)
{
    char *lit = PQescapeLiteral(conn, text, strlen(text));
    if (!lit) return false;
    buf_puts(sql, lit);
    PQfreemem(lit);
    return true;
}

/* Round trip 1. Fills head, id and key states. Returns 0, -1 (connection), -2 (statement). */
static int read_state(append_req **reqs, size_t n_reqs, batch_ctx *b, long long *head)
{
    json_t *ids = json_array(), *keys = json_array();
    int rc = -2;
    buf sql;
    buf_init(&sql);
    PGresult *res[5] = {0};
    int n = 0;
    for (size_t r = 0; r < n_reqs; r++) {
        for (size_t i = 0; i < reqs[r]->n; i++) {
            sluice_event *ev = &reqs[r]->events[i];
            if (ev->outcome == EV_FAILED) continue;
            if (ev->id_given)
                json_array_append_new(ids, json_pack("{s:s,s:s}", "t", ev->tenant, "id", ev->id));
            if (ev->key)
                json_array_append_new(keys, json_pack("{s:s,s:s,s:s}", "t", ev->tenant, "s",
                                                      ev->stream, "k", ev->key));
        }
    }
    buf_puts(&sql, "BEGIN; SELECT pg_advisory_xact_lock(" APPENDER_LOCK_KEY
                   "); SELECT coalesce(max(position), 0) FROM events;");
    char *text;
    if (json_array_size(ids)) {
        buf_puts(&sql, " SELECT x.t, x.id, e.position, e.stream, e.key, e.version, "
                       "to_char(e.time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                       "e.content_hash FROM json_to_recordset(");
        text = json_dumps(ids, JSON_COMPACT);
        bool ok = append_literal(&sql, text);
        free(text);
        if (!ok) goto conn_lost;
        buf_puts(&sql, "::json) AS x(t text, id text) JOIN events e ON e.tenant_id = x.t AND "
                       "e.id = x.id;");
    } else {
        buf_puts(&sql, " SELECT NULL WHERE false;");
    }
    if (json_array_size(keys)) {
        buf_puts(&sql, " SELECT x.t, x.s, x.k, (SELECT e.version FROM events e WHERE "
                       "e.tenant_id = x.t AND e.stream = x.s AND e.key = x.k ORDER BY e.version "
                       "DESC LIMIT 1) FROM json_to_recordset(");
        text = json_dumps(keys, JSON_COMPACT);
        bool ok = append_literal(&sql, text);
        free(text);
        if (!ok) goto conn_lost;
        buf_puts(&sql, "::json) AS x(t text, s text, k text);");
    } else {
        buf_puts(&sql, " SELECT NULL WHERE false;");
    }
    n = db_run(&conn, sql.data, -1, NULL, cfg->store_timeout_ms, res, 5);
    if (n < 0) goto conn_lost;
    for (int i = 0; i < n; i++) {
        if (!db_ok(res[i])) {
            db_log_error("appender", "reading the log state failed", res[i]);
            goto out;
        }
    }
    if (n != 5) goto out;
    *head = strtoll(PQgetvalue(res[2], 0, 0), NULL, 10);
    for (int row = 0; row < PQntuples(res[3]); row++) {
        id_state *s = new_id_state(b);
        s->valid = true;
        s->position = strtoll(PQgetvalue(res[3], row, 2), NULL, 10);
        s->stream = xstrdup(PQgetvalue(res[3], row, 3));
        s->key = PQgetisnull(res[3], row, 4) ? NULL : xstrdup(PQgetvalue(res[3], row, 4));
        s->version = PQgetisnull(res[3], row, 5) ? 0 : strtoll(PQgetvalue(res[3], row, 5), NULL, 10);
        snprintf(s->time, sizeof s->time, "%s", PQgetvalue(res[3], row, 6));
        snprintf(s->hash, sizeof s->hash, "%s", PQgetvalue(res[3], row, 7));
        map_put(b, &b->ids, xasprintf("%s\x1f%s", PQgetvalue(res[3], row, 0),
                                      PQgetvalue(res[3], row, 1)), s);
    }
    for (int row = 0; row < PQntuples(res[4]); row++) {
        char *k = xasprintf("%s\x1f%s\x1f%s", PQgetvalue(res[4], row, 0),
                            PQgetvalue(res[4], row, 1), PQgetvalue(res[4], row, 2));
        if (map_get(&b->keys, k)) { /* the same key asked twice */
            free(k);
            continue;
        }
        key_state *ks = new_key_state(b);
        ks->version = PQgetisnull(res[4], row, 3) ? 0 : strtoll(PQgetvalue(res[4], row, 3), NULL, 10);
        map_put(b, &b->keys, k, ks);
    }
    rc = 0;
    goto out;
conn_lost:
    rc = -1;
out:
    for (int i = 0; i < n; i++) PQclear(res[i]);
    json_decref(ids);
    json_decref(keys);
    buf_dispose(&sql);
    return rc;
}

/* INSERT the stored events and COMMIT. Returns 0, -1 or -2 as read_state.
 * `relative`: the fast path of a batch without client ids or keys, where nothing needs
 * deciding: the transaction opens here too, positions were assigned from 0, and the
 * head read under the lock in the same round trip is added to them (*head_out). */
static int write_events(append_req **reqs, size_t n_reqs, size_t stored, const char *now,
                        bool relative, long long *head_out)
{
    int rc = -2;
    buf sql;
    buf_init(&sql);
    PGresult *res[7] = {0};
    int n = 0;
    if (relative)
        buf_puts(&sql, "BEGIN; SELECT pg_advisory_xact_lock(" APPENDER_LOCK_KEY
                       "); SELECT coalesce(max(position), 0) FROM events; ");
    if (stored) {
        /* Rows were serialised on the publishers' threads; here they are only joined. */
        buf rows;
        buf_init(&rows);
        buf_puts(&rows, "[");
        for (size_t r = 0; r < n_reqs; r++) {
            for (size_t i = 0; i < reqs[r]->n; i++) {
                sluice_event *ev = &reqs[r]->events[i];
                if (ev->outcome != EV_STORED) continue;
                if (rows.len > 1) buf_puts(&rows, ",");
                if (ev->key)
                    buf_printf(&rows, "{\"p\":%lld,\"v\":%lld,", ev->position, ev->version);
                else
                    buf_printf(&rows, "{\"p\":%lld,\"v\":null,", ev->position);
                buf_puts(&rows, ev->row);
            }
        }
        buf_puts(&rows, "]");
        char *text = buf_steal(&rows, NULL);
        buf_puts(&sql, insert_sql_head);
        if (relative) buf_puts(&sql, "(SELECT coalesce(max(position), 0) FROM events) + ");
        buf_puts(&sql, "x.p, x.id, x.t, x.s, x.k, x.v, x.ty, x.sv, x.c, x.ca, x.u, x.so, x.d, "
                       "x.m, ");
        bool ok = append_literal(&sql, now);
        if (ok) {
            char *lit = PQescapeLiteral(conn, text, strlen(text));
            ok = lit != NULL;
            if (ok) {
                buf_printf(&sql, insert_sql_tail, lit);
                PQfreemem(lit);
            }
        }
        free(text);
        if (!ok) {
            rc = -1;
            goto out;
        }
        buf_puts(&sql, "; ");
    }
    /* Wake every instance's tail (delivered at commit). */
    if (stored) buf_puts(&sql, "NOTIFY " TAIL_CHANNEL "; ");
    buf_puts(&sql, "COMMIT");
    n = db_run(&conn, sql.data, -1, NULL, cfg->store_timeout_ms, res, 7);
    if (n < 0) {
        rc = -1;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (!db_ok(res[i])) {
            db_log_error("appender", "insert failed", res[i]);
            goto out;
        }
    }
    /* A COMMIT of an aborted transaction answers ROLLBACK without an error. */
    if (n == 0 || strcmp(PQcmdStatus(res[n - 1]), "COMMIT") != 0) goto out;
    if (relative) {
        long long base = strtoll(PQgetvalue(res[2], 0, 0), NULL, 10);
        for (size_t r = 0; r < n_reqs; r++)
            for (size_t i = 0; i < reqs[r]->n; i++)
                if (reqs[r]->events[i].outcome == EV_STORED) reqs[r]->events[i].position += base;
        *head_out += base;
    }
    rc = 0;
out:
    for (int i = 0; i < n; i++) PQclear(res[i]);
    buf_dispose(&sql);
    return rc;
}

static void rollback(void)
{
    PGresult *r = db_exec(&conn, "ROLLBACK", 0, NULL, cfg->store_timeout_ms);
    PQclear(r);
}

/* Commits one batch. Returns 0, -1 (connection lost: the caller fails the batch) or
 * -2 (statement error: the caller retries request by request). */
static int commit_batch(append_req **reqs, size_t n_reqs)
{
    size_t n_events = 0;
    for (size_t r = 0; r < n_reqs; r++) n_events += reqs[r]->n;
    batch_ctx b;
    batch_init(&b, n_events);
    char now[32];
    time_now_rfc3339(now);
    long long head = 0;
    bool fast = true; /* nothing to look up: no client ids, no keys */
    for (size_t r = 0; r < n_reqs && fast; r++)
        for (size_t i = 0; i < reqs[r]->n && fast; i++)
            if (reqs[r]->events[i].id_given || reqs[r]->events[i].key) fast = false;
    int rc = fast ? 0 : read_state(reqs, n_reqs, &b, &head);
    if (rc == 0) {
        size_t stored = 0;
        for (size_t r = 0; r < n_reqs; r++) stored += decide_request(&b, reqs[r], &head, now);
        rc = write_events(reqs, n_reqs, stored, now, fast, &head);
        if (rc == 0 && stored) atomic_store(&head_position, head);
        if (rc == 0) metrics_batch((int)stored);
    }
    if (rc == -2 && conn) rollback();
    batch_dispose(&b);
    return rc;
}

static void finish(append_req **reqs, size_t n_reqs)
{
    for (size_t r = 0; r < n_reqs; r++) reqs[r]->done(reqs[r]);
}

static void fail_all(append_req **reqs, size_t n_reqs, const char *detail)
{
    for (size_t r = 0; r < n_reqs; r++) fail_request(reqs[r], "store_unavailable", detail);
}

static void process(append_req **reqs, size_t n_reqs)
{
    int rc = commit_batch(reqs, n_reqs);
    if (rc == -2 && n_reqs > 1) {
        /* Isolate the request that made the statement fail. */
        for (size_t r = 0; r < n_reqs; r++) {
            reset_request(reqs[r]);
            int one = conn ? commit_batch(&reqs[r], 1) : -1;
            if (one == -2) fail_request(reqs[r], "internal", "the event store refused this request");
            if (one == -1) fail_request(reqs[r], "store_unavailable", "PostgreSQL connection lost");
        }
    } else if (rc == -2) {
        reset_request(reqs[0]);
        fail_request(reqs[0], "internal", "the event store refused this request");
    } else if (rc == -1) {
        fail_all(reqs, n_reqs, "PostgreSQL connection lost while committing");
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
    conn = db_connect(cfg->database_url, "appender");
    if (!conn) return;
    PGresult *r = db_exec(&conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL,
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
        while (!q_head && !stopping && atomic_load(&connected)) pthread_cond_wait(&cond, &lock);
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
