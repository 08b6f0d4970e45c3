/*
 * projections.c — definitions, the runner and the reducers (see projections.h).
 */
#include "projections.h"
#include "worker.h"
#include "locks.h"
#include "db.h"
#include "envelope.h"
#include "log.h"
#include "mem.h"
#include "reads.h"
#include "timeutil.h"
#include "problem.h"
#include "strmap.h"
#include "eventlog.h"
#include "filter.h"
#include "jsonparse.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROJ_LOCK_KEY LOCK_PROJECTIONS
#define PROJ_BATCH 20000  /* events per batch: one state read, one write, one commit */
#define PROJ_SLICE_MS 500 /* one projection's turn before the next gets one */
#define PROJ_TIMEOUT_MS 30000
#define PROJ_SET_MAX 10000 /* distinct values a `set` state keeps */

/* ------------------------------------------------------------------ definitions */

/* A projection's filter: streams, types and where (filter.h). */
static const char *const projection_filter[] = {"streams", "types", "where", NULL};
static const char *const reducers[] = {"count", "latest", "merge", "sum", "min", "max", "set"};
/* Envelope fields a pointer may name directly (one segment). */
static const char *const columns[] = {"id",      "type",     "stream",         "key",
                                      "version", "position", "correlation_id", "causation_id",
                                      "user_id", "source",   "schema_version", "tenant_id",
                                      "time"};

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!(alnum || (i > 0 && (c == '_' || c == '-' || c == '.')))) return false;
    }
    return true;
}

/* Splits a JSON Pointer into unescaped segments (a JSON array, caller owns), or NULL. */
static json_t *pointer_segments(const char *ptr)
{
    if (!ptr || ptr[0] != '/') return NULL;
    json_t *segs = json_array();
    const char *p = ptr + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *seg = xmalloc(n + 1), *w = seg;
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1')) {
                *w++ = p[i + 1] == '0' ? '~' : '/';
                i++;
            } else {
                *w++ = p[i];
            }
        }
        *w = '\0';
        json_array_append_new(segs, json_string(seg));
        free(seg);
        if (!end) break;
        p = end + 1;
    }
    return segs;
}

/* True when a pointer names data/metadata (any depth) or a top-level envelope field. */
static bool pointer_usable(const char *ptr)
{
    json_t *segs = pointer_segments(ptr);
    if (!segs || json_array_size(segs) == 0) {
        json_decref(segs);
        return false;
    }
    const char *first = json_string_value(json_array_get(segs, 0));
    bool ok = !first ? false : (strcmp(first, "data") == 0 || strcmp(first, "metadata") == 0);
    if (!ok && first && json_array_size(segs) == 1)
        for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
            if (strcmp(first, columns[i]) == 0) ok = true;
    json_decref(segs);
    return ok;
}

json_t *projections_check(json_t *def)
{
    json_t *errors = json_array();
    bool bad_where = false; /* the filter's `where` is what is wrong: 400 invalid_filter */
    const char *k;
    json_t *v;
    if (!json_is_object(def)) {
        json_array_append_new(errors, problem_error(-1, "", "type", "expected a JSON object"));
        goto out;
    }
    json_object_foreach(def, k, v)
    {
        if (strcmp(k, "name") && strcmp(k, "filter") && strcmp(k, "key") && strcmp(k, "reduce") &&
            strcmp(k, "path")) {
            char path[80];
            snprintf(path, sizeof path, "/%.60s", k);
            json_array_append_new(errors,
                                  problem_error(-1, path, "additionalProperties",
                                                "expected name, filter, key, reduce, path"));
        }
    }
    v = json_object_get(def, "name");
    if (!json_is_string(v) || !name_valid(json_string_value(v)))
        json_array_append_new(
            errors, problem_error(-1, "/name", "pattern", "expected ^[a-z0-9][a-z0-9_.-]{0,63}$"));
    filter parsed = {0};
    filter_error ferr;
    if (filter_parse_json(&parsed, json_object_get(def, "filter"), projection_filter, NULL,
                          &ferr) < 0) {
        bad_where = ferr.where;
        char at[80];
        snprintf(at, sizeof at, "/filter%s%.60s", ferr.member[0] ? "/" : "", ferr.member);
        json_array_append_new(errors, problem_error(-1, at, "filter", ferr.message));
    }
    filter_dispose(&parsed);
    v = json_object_get(def, "reduce");
    const char *reduce = json_string_value(v);
    bool known = false;
    for (size_t i = 0; reduce && i < sizeof reducers / sizeof reducers[0]; i++)
        if (strcmp(reduce, reducers[i]) == 0) known = true;
    if (!known)
        json_array_append_new(errors, problem_error(-1, "/reduce", "enum",
                                                    "expected count, latest, merge, sum, min, "
                                                    "max or set"));
    v = json_object_get(def, "key");
    if (v && !json_is_null(v) && (!json_is_string(v) || !pointer_usable(json_string_value(v))))
        json_array_append_new(errors, problem_error(-1, "/key", "format",
                                                    "expected a JSON Pointer into the stored "
                                                    "envelope: /data/…, /metadata/…, or an "
                                                    "envelope field such as /type or /user_id"));
    v = json_object_get(def, "path");
    if (v && !json_is_null(v) && (!json_is_string(v) || !pointer_usable(json_string_value(v))))
        json_array_append_new(errors, problem_error(-1, "/path", "format",
                                                    "expected a JSON Pointer into the stored "
                                                    "envelope, such as /data/cost_usd"));
    if (known && strcmp(reduce, "count") && (!v || json_is_null(v)) &&
        (!strcmp(reduce, "sum") || !strcmp(reduce, "min") || !strcmp(reduce, "max")))
        json_array_append_new(errors, problem_error(-1, "/path", "required",
                                                    "sum, min and max need a path to a number"));
out:
    if (json_array_size(errors)) {
        json_t *p = problem_new(bad_where ? "invalid_filter" : "invalid_request",
                                "the projection definition is invalid");
        json_object_set_new(p, "errors", errors);
        return p;
    }
    json_decref(errors);
    return NULL;
}

/* Appends one element of a PostgreSQL text[] literal: double-quoted, " and \\ escaped. */
static void text_array_item(buf *b, const char *s)
{
    buf_puts(b, "\"");
    for (const char *c = s; *c; c++) {
        if (*c == '"' || *c == '\\') buf_append(b, "\\", 1);
        buf_append(b, c, 1);
    }
    buf_puts(b, "\"");
}

/* The SQL expression for a pointer: as jsonb (as_text false) or as text. Parameters are
 * bound as $<param>; *arg gets the text[] path literal to bind (or NULL). */
static char *pointer_sql(const char *ptr, bool as_text, int param, char **arg)
{
    json_t *segs = pointer_segments(ptr);
    const char *first = json_string_value(json_array_get(segs, 0));
    char *out;
    *arg = NULL;
    if (strcmp(first, "data") == 0 || strcmp(first, "metadata") == 0) {
        buf lit;
        buf_init(&lit);
        buf_puts(&lit, "{");
        for (size_t i = 1; i < json_array_size(segs); i++) {
            if (i > 1) buf_puts(&lit, ",");
            text_array_item(&lit, json_string_value(json_array_get(segs, i)));
        }
        buf_puts(&lit, "}");
        *arg = buf_steal(&lit, NULL);
        out = xasprintf("(%s %s $%d::text[])", first, as_text ? "#>>" : "#>", param);
    } else {
        out = as_text ? xasprintf("(%s)::text", first) : xasprintf("to_jsonb(%s)", first);
    }
    json_decref(segs);
    return out;
}

/* ------------------------------------------------------------------ reducers */

typedef struct kstate {
    json_t *state; /* owned; NULL = no state yet */
    long long position;
    bool dirty;
} kstate;

static void kstate_free(void *p)
{
    kstate *k = p;
    json_decref(k->state);
    free(k);
}

/* Applies one value; returns NULL or the reason it cannot be applied. */
static const char *reduce_one(const char *reduce, kstate *k, json_t *value)
{
    if (strcmp(reduce, "count") == 0) {
        json_int_t n = k->state ? json_integer_value(k->state) : 0;
        json_decref(k->state);
        k->state = json_integer(n + 1);
        return NULL;
    }
    if (strcmp(reduce, "latest") == 0) {
        json_decref(k->state);
        k->state = json_incref(value ? value : json_null());
        return NULL;
    }
    if (strcmp(reduce, "merge") == 0) {
        if (!json_is_object(value)) return "merge needs an object at the path";
        if (!k->state) k->state = json_object();
        json_object_update(k->state, value);
        return NULL;
    }
    if (strcmp(reduce, "set") == 0) {
        if (!value) return "set needs a value at the path";
        if (!k->state) k->state = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(k->state, i, x) if (json_equal(x, value)) return NULL;
        if (json_array_size(k->state) >= PROJ_SET_MAX) return "the set is full (10,000 values)";
        json_array_append(k->state, value);
        return NULL;
    }
    /* sum, min, max: numbers only */
    if (!json_is_number(value)) return "expected a number at the path";
    if (!k->state) {
        k->state = json_incref(value);
        return NULL;
    }
    json_t *next = NULL;
    json_int_t whole;
    if (strcmp(reduce, "sum") == 0) {
        double sum = json_number_value(k->state) + json_number_value(value);
        /* Integers past int64 go on as a real; json_real refuses infinity (NULL), so an
         * overflow is caught before it would erase the state (issue 15). */
        if (json_is_integer(k->state) && json_is_integer(value) &&
            !__builtin_add_overflow(json_integer_value(k->state), json_integer_value(value),
                                    &whole))
            next = json_integer(whole);
        else if (isfinite(sum))
            next = json_real(sum);
        else
            return "the sum overflows";
    } else {
        bool take = strcmp(reduce, "min") == 0
                        ? json_number_value(value) < json_number_value(k->state)
                        : json_number_value(value) > json_number_value(k->state);
        next = json_incref(take ? value : k->state);
    }
    json_decref(k->state);
    k->state = next;
    return NULL;
}

/* A jsonb value as PostgreSQL prints it (an event's value, or a stored state). A number,
 * what sum, min and max read, is converted directly as jansson would (an integer when it
 * has no '.', 'e' or 'E', else a real), except that digits beyond int64 are a real:
 * PostgreSQL prints every number without an exponent, so a real from 2^63 up (a stored sum
 * of 1e19, an event's 1e19) comes back as digits, which json_loads refuses as a "too big
 * integer" (issue 15). Anything else goes through json_loads. */
static json_t *row_value(const char *text)
{
    const char *c = text + (text[0] == '-');
    if (*c >= '0' && *c <= '9') {
        char *end;
        errno = 0;
        if (!strpbrk(c, ".eE")) {
            long long n = strtoll(text, &end, 10);
            if (errno == 0 && *end == '\0') return json_integer(n);
            errno = 0;
        }
        double d = strtod(text, &end);
        if (errno == 0 && *end == '\0' && isfinite(d)) return json_real(d);
    }
    return json_loads(text, JSON_DECODE_ANY, NULL);
}

/* ------------------------------------------------------------------ runner */

static char *url;
static worker_thread runner; /* the projections thread */

typedef struct proj {
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char name[72];
    json_t *def;
    long long position;
    int generation;
    char incarnation[24]; /* the row's: a definition deleted and made again is another */
    bool live;
} proj;

/* The batch's read: the next PROJ_BATCH events after p->position up to `head` that match
 * the projection's filter (filter.h's SQL), each as position, id, stream, key, value. NULL
 * on failure. */
static PGresult *read_batch(PGconn **conn, proj *p, long long head)
{
    const char *reduce = json_string_value(json_object_get(p->def, "reduce"));
    const char *key_ptr = json_string_value(json_object_get(p->def, "key"));
    const char *path = json_string_value(json_object_get(p->def, "path"));
    if (!path) path = "/data";
    filter f = {0};
    filter_error ferr;
    if (filter_parse_json(&f, json_object_get(p->def, "filter"), projection_filter, NULL,
                          &ferr) < 0) {
        log_error("projections", "a stored filter does not parse",
                  json_pack("{s:s,s:s}", "projection", p->name, "error", ferr.message));
        return NULL;
    }
    snprintf(f.tenant, sizeof f.tenant, "%s", p->tenant);
    filter_sql q;
    filter_sql_init(&q);
    char *key_arg = NULL, *val_arg = NULL;
    char *key_sql = key_ptr ? pointer_sql(key_ptr, true, q.n + 1, &key_arg) : xstrdup("''");
    if (key_arg) filter_sql_param(&q, key_arg);
    char *val_sql = strcmp(reduce, "count") ? pointer_sql(path, false, q.n + 1, &val_arg)
                                            : xstrdup("NULL::jsonb");
    if (val_arg) filter_sql_param(&q, val_arg);
    buf_printf(&q.sql, "SELECT position, id, stream, %s, (%s)::text FROM events WHERE true",
               key_sql, val_sql);
    filter_sql_where(&q, &f);
    char num[24];
    snprintf(num, sizeof num, "%lld", p->position);
    buf_printf(&q.sql, " AND position > $%d::bigint", filter_sql_param(&q, num));
    snprintf(num, sizeof num, "%lld", head);
    buf_printf(&q.sql, " AND position <= $%d::bigint", filter_sql_param(&q, num));
    snprintf(num, sizeof num, "%d", PROJ_BATCH);
    buf_printf(&q.sql, " ORDER BY position LIMIT $%d", filter_sql_param(&q, num));
    PGresult *r = db_exec(conn, q.sql.data, q.n, q.vals, PROJ_TIMEOUT_MS);
    filter_sql_dispose(&q);
    filter_dispose(&f);
    free(key_sql);
    free(val_sql);
    free(key_arg);
    free(val_arg);
    return r;
}

/* Loads the stored state of every key the batch `r` touches into `states` (one kstate per
 * key, zeroed when the key has none yet). False when PostgreSQL failed.
 * The keys go as one text[] for `key = ANY(…)`, an index condition: one probe per key
 * whatever the table's statistics say (`key IN (SELECT jsonb_array_elements_text(…))` was
 * planned as a nested loop rescanning the key list for every state while a new
 * projection's rows were not yet analysed: O(keys × states) per batch). The array comes
 * through a sub-select so the planner does not estimate each of its elements
 * (milliseconds per thousand keys). */
static bool load_states(PGconn **conn, const proj *p, const PGresult *r, strmap *states)
{
    buf keys;
    buf_init(&keys);
    buf_puts(&keys, "{");
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 3)) continue; /* no key at the pointer: not grouped */
        const char *k = PQgetvalue(r, i, 3);
        if (!strmap_get(states, k)) {
            strmap_put(states, k, xcalloc(1, sizeof(kstate)));
            if (keys.len > 1) buf_puts(&keys, ",");
            text_array_item(&keys, k);
        }
    }
    buf_puts(&keys, "}");
    const char *sp[] = {p->tenant, p->name, keys.data};
    PGresult *sr = db_exec(conn,
                           "SELECT key, state::text FROM projection_state WHERE tenant_id = $1 "
                           "AND name = $2 AND key = ANY((SELECT $3::text[])::text[])",
                           3, sp, PROJ_TIMEOUT_MS);
    buf_dispose(&keys);
    bool ok = db_ok(sr);
    for (int i = 0; ok && i < PQntuples(sr); i++) {
        kstate *k = strmap_get(states, PQgetvalue(sr, i, 0));
        if (k) k->state = row_value(PQgetvalue(sr, i, 1));
    }
    PQclear(sr);
    return ok;
}

/* Folds the batch's rows into `states`; a value the reducer cannot apply goes to `dead`.
 * Returns the last position read (`from` when there is none). */
static long long fold(const char *reduce, const PGresult *r, strmap *states, json_t *dead,
                      long long from)
{
    long long last = from;
    for (int i = 0; i < PQntuples(r); i++) {
        last = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        if (PQgetisnull(r, i, 3)) continue;
        kstate *k = strmap_get(states, PQgetvalue(r, i, 3));
        json_t *value = PQgetisnull(r, i, 4) ? NULL : row_value(PQgetvalue(r, i, 4));
        const char *why = reduce_one(reduce, k, value);
        json_decref(value);
        if (why) {
            json_array_append_new(dead,
                                  json_pack("{s:s,s:s,s:I,s:s}", "s", PQgetvalue(r, i, 2), "id",
                                            PQgetvalue(r, i, 1), "p", (json_int_t)last, "e", why));
            continue;
        }
        k->position = last;
        k->dirty = true;
    }
    return last;
}

/* Writes the changed states, the dead letters and the checkpoint `last` in one
 * transaction. False when it did not commit (PostgreSQL failed, or a reset or delete raced
 * the batch: the checkpoint row no longer matches). */
static bool write_batch(PGconn **conn, const proj *p, strmap *states, json_t *dead,
                        long long last)
{
    json_t *rows = json_array();
    strmap_foreach(states, i)
    {
        kstate *k = states->slots[i].value;
        if (k->dirty)
            json_array_append_new(rows, json_pack("{s:s,s:O,s:I}", "k", states->slots[i].key,
                                                  "s", k->state, "p", (json_int_t)k->position));
    }
    char *rows_json = json_dumps(rows, JSON_COMPACT), *dead_json = json_dumps(dead, JSON_COMPACT);
    json_decref(rows);
    char last_text[24], gen_text[16], old_text[24];
    snprintf(last_text, sizeof last_text, "%lld", last);
    snprintf(gen_text, sizeof gen_text, "%d", p->generation);
    snprintf(old_text, sizeof old_text, "%lld", p->position);
    char *source = xasprintf("projection:%s", p->name);
    const char *wp[] = {p->tenant, p->name, rows_json};
    const char *up[] = {p->tenant, p->name, last_text, gen_text, old_text, p->incarnation};
    PGresult *w[4] = {0};
    PGresult *b = db_exec(conn, "BEGIN", 0, NULL, PROJ_TIMEOUT_MS);
    bool ok = db_ok(b);
    PQclear(b);
    if (ok) {
        w[0] = db_exec(conn,
                       "UPDATE projections SET position = $3::bigint, updated_at = now() "
                       "WHERE tenant_id = $1 AND name = $2 AND generation = $4::int "
                       "AND position = $5::bigint AND incarnation = $6::bigint",
                       6, up, PROJ_TIMEOUT_MS);
        ok = db_ok(w[0]) && strcmp(PQcmdTuples(w[0]), "1") == 0; /* reset or deleted meanwhile */
    }
    if (ok) {
        w[1] = db_exec(conn,
                       "INSERT INTO projection_state (tenant_id, name, key, state, position) "
                       "SELECT $1, $2, x.k, coalesce(x.s, 'null'::jsonb), x.p FROM "
                       "jsonb_to_recordset($3::jsonb) "
                       "AS x(k text, s jsonb, p bigint) ON CONFLICT (tenant_id, name, key) DO "
                       "UPDATE SET state = EXCLUDED.state, position = EXCLUDED.position",
                       3, wp, PROJ_TIMEOUT_MS);
        ok = db_ok(w[1]);
    }
    if (ok && json_array_size(dead)) {
        const char *dp[] = {p->tenant, source, dead_json};
        w[2] = db_exec(conn,
                       "INSERT INTO dead_letters (tenant_id, source, stream, event_id, "
                       "event_position, errors, history) SELECT $1, $2, x.s, x.id, x.p, "
                       "jsonb_build_array(jsonb_build_object('time', now(), 'error', x.e)), "
                       "jsonb_build_array(jsonb_build_object('time', now(), 'status', 'open', "
                       "'note', x.e)) FROM jsonb_to_recordset($3::jsonb) AS x(s text, id text, "
                       "p bigint, e text) ON CONFLICT DO NOTHING",
                       3, dp, PROJ_TIMEOUT_MS);
        ok = db_ok(w[2]);
    }
    if (ok) {
        w[3] = db_exec(conn, "COMMIT", 0, NULL, PROJ_TIMEOUT_MS);
        ok = db_ok(w[3]);
    } else if (*conn) {
        PGresult *rb = db_exec(conn, "ROLLBACK", 0, NULL, PROJ_TIMEOUT_MS);
        PQclear(rb);
    }
    for (int i = 0; i < 4; i++)
        PQclear(w[i]);
    free(rows_json);
    free(dead_json);
    free(source);
    return ok;
}

/* Where a batch is read: the read replica (reads.h) while it has a whole batch after the
 * checkpoint, or everything up to the head (it never has a hole: it replays commits in
 * order), with *upto lowered to what it has; else the primary's `conn`. */
static PGconn **batch_reader(PGconn **conn, PGconn **replica, const proj *p, long long *upto)
{
    if (!replica || !*replica) return conn;
    long long rh = reads_replica_head(replica);
    if (rh < *upto && rh < p->position + PROJ_BATCH) return conn;
    if (rh < *upto) *upto = rh;
    return replica;
}

/* Applies one batch: read (read_batch, on the replica when batch_reader says so), load the
 * keys' states, fold, write. Returns events read (0 = caught up), or -1 on failure. */
static int apply_batch(PGconn **conn, PGconn **replica, proj *p)
{
    const char *reduce = json_string_value(json_object_get(p->def, "reduce"));
    /* Read up to the head as it is now: every position up to it is committed, so once a
     * short batch has been applied, the checkpoint may move to the head even when the
     * last events did not match (lag 0; read-your-writes for events it skips). */
    PGresult *hr =
        db_exec(conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL, PROJ_TIMEOUT_MS);
    if (!db_ok(hr)) {
        PQclear(hr);
        return -1;
    }
    long long head = strtoll(PQgetvalue(hr, 0, 0), NULL, 10);
    PQclear(hr);
    if (head <= p->position) return 0;
    int rc = -1;
    long long upto = head;
    PGresult *r = read_batch(batch_reader(conn, replica, p, &upto), p, upto);
    strmap states;
    strmap_init(&states);
    json_t *dead = json_array();
    if (!db_ok(r)) {
        if (r) db_log_error("projections", "reading events failed", r);
    } else if (load_states(conn, p, r, &states)) {
        int rows_n = PQntuples(r);
        long long last = fold(reduce, r, &states, dead, p->position);
        if (rows_n < PROJ_BATCH) last = upto; /* everything up to it has been seen */
        if (write_batch(conn, p, &states, dead, last)) {
            p->position = last;
            rc = rows_n;
        } else {
            rc = *conn ? 0 : -1; /* a reset or delete raced this batch: it was dropped */
        }
    }
    PQclear(r);
    strmap_dispose(&states, kstate_free);
    json_decref(dead);
    return rc;
}

static void set_status(PGconn **conn, proj *p, const char *status, const char *error)
{
    char gen[16];
    snprintf(gen, sizeof gen, "%d", p->generation);
    const char *v[] = {p->tenant, p->name, status, error, gen, p->incarnation};
    PGresult *r = db_exec(conn,
                          "UPDATE projections SET status = $3, error = $4, updated_at = now() "
                          "WHERE tenant_id = $1 AND name = $2 AND status <> $3 "
                          "AND generation = $5::int AND incarnation = $6::bigint",
                          6, v, PROJ_TIMEOUT_MS);
    PQclear(r);
}

/* One round over every projection. Returns whether any had work; *defined gets how many
 * projections there are (not failed). */
static bool round_robin(PGconn **conn, PGconn **replica, int *defined)
{
    *defined = 0;
    PGresult *r = db_exec(
        conn,
        "SELECT tenant_id, name, definition::text, position, generation, "
        "status, incarnation FROM projections WHERE status <> 'failed' ORDER BY tenant_id, name",
        0, NULL, PROJ_TIMEOUT_MS);
    if (!db_ok(r)) {
        PQclear(r);
        return false;
    }
    bool busy = false;
    *defined = PQntuples(r);
    for (int i = 0; i < PQntuples(r) && *conn && !worker_stopping(&runner); i++) {
        proj p = {0};
        snprintf(p.tenant, sizeof p.tenant, "%s", PQgetvalue(r, i, 0));
        snprintf(p.name, sizeof p.name, "%s", PQgetvalue(r, i, 1));
        p.def = jsonparse_stored(PQgetvalue(r, i, 2));
        p.position = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        p.generation = atoi(PQgetvalue(r, i, 4));
        snprintf(p.incarnation, sizeof p.incarnation, "%s", PQgetvalue(r, i, 6));
        bool live = strcmp(PQgetvalue(r, i, 5), "live") == 0;
        if (!p.def) continue;
        for (int slices = 0; slices < 50 && *conn && !worker_stopping(&runner); slices++) {
            int n = apply_batch(conn, replica, &p);
            if (n < 0) {
                if (*conn)
                    set_status(conn, &p, "failed", "a batch could not be applied (see logs)");
                break;
            }
            if (n > 0) busy = true;
            if (n < PROJ_BATCH) {
                if (!live) set_status(conn, &p, "live", NULL);
                break;
            }
            if (live) set_status(conn, &p, "catching_up", NULL);
            live = false;
        }
        json_decref(p.def);
    }
    PQclear(r);
    return busy;
}

static void *runner_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL, *replica = NULL; /* replica: SLUICE_READ_DATABASE_URL's (reads.h) */
    int64_t replica_retry_at = 0;        /* after a failed connect, not before this */
    bool leader = false;
    bool listening = false; /* LISTENing on EVENTLOG_CHANNEL (commits) */
    while (!worker_stopping(&runner)) {
        if (leader && !replica && reads_replica() && time_mono_ms() >= replica_retry_at &&
            !(replica = reads_connect_replica("projections")))
            replica_retry_at = time_mono_ms() + 5000;
        if (!conn) {
            leader = false;
            conn = db_connect(url, "projections");
            if (!conn) {
                for (int i = 0; i < 10 && !worker_stopping(&runner); i++)
                    usleep(100 * 1000);
                continue;
            }
        }
        if (!leader) {
            PGresult *r = db_exec(&conn, "SELECT pg_try_advisory_lock(" PROJ_LOCK_KEY ")", 0, NULL,
                                  PROJ_TIMEOUT_MS);
            leader = db_ok(r) && PQgetvalue(r, 0, 0)[0] == 't';
            PQclear(r);
            if (leader) {
                listening = false; /* to commits: from the first round that finds a projection */
                (void)eventlog_listen_to(&conn, EVENTLOG_CONTROL_CHANNEL, true,
                                         PROJ_TIMEOUT_MS); /* a failure drops conn */
                log_info("projections", "this instance runs the projections", NULL);
            } else {
                for (int i = 0; i < 10 && !worker_stopping(&runner); i++)
                    usleep(100 * 1000);
                continue;
            }
        }
        int defined = 0;
        bool busy = round_robin(&conn, &replica, &defined);
        /* Commits wake the runner only while a projection is defined: otherwise each would
         * cost its backend a signal and a message, and this thread a wake-up, for nothing
         * (one per commit under load; bench/run.sh). */
        if (conn && (defined > 0) != listening &&
            eventlog_listen_to(&conn, EVENTLOG_CHANNEL, defined > 0, PROJ_TIMEOUT_MS))
            listening = defined > 0;
        if (busy || !conn) continue;
        /* Idle: wait for a commit (while listening to them) or a definition change, at most
         * 200 ms. */
        (void)eventlog_wait(&conn, 200, EVENTLOG_WAKE_ANY, &runner.stopping);
    }
    PQfinish(conn);
    PQfinish(replica);
    return NULL;
}

int projections_start(const char *database_url)
{
    url = xstrdup(database_url);
    return worker_start(&runner, runner_main);
}

void projections_stop(void)
{
    worker_stop(&runner);
    free(url);
    url = NULL;
}

/* ------------------------------------------------------------------ API */

#define PROJ_COLUMNS                                                                               \
    "name, definition::text, status, position, error, "                                            \
    "(SELECT coalesce(max(position), 0) FROM events) - position"

static json_t *proj_row(PGresult *r, int i)
{
    json_t *def = jsonparse_stored(PQgetvalue(r, i, 1));
    json_t *out = def ? def : json_object();
    json_object_set_new(out, "name", json_string(PQgetvalue(r, i, 0)));
    json_object_set_new(out, "status", json_string(PQgetvalue(r, i, 2)));
    json_object_set_new(out, "position", json_integer(strtoll(PQgetvalue(r, i, 3), NULL, 10)));
    long long lag = strtoll(PQgetvalue(r, i, 5), NULL, 10);
    json_object_set_new(out, "lag", json_integer(lag < 0 ? 0 : lag));
    json_object_set_new(out, "error",
                        PQgetisnull(r, i, 4) ? json_null() : json_string(PQgetvalue(r, i, 4)));
    return out;
}

sl_status projections_create(PGconn **conn, const char *tenant, json_t *def, json_t **answer)
{
    json_t *stored = json_deep_copy(def);
    json_object_del(stored, "name");
    char *text = json_dumps(stored, JSON_COMPACT);
    json_decref(stored);
    const char *name = json_string_value(json_object_get(def, "name"));
    const char *p[] = {tenant, name, text};
    PGresult *r = db_exec(conn,
                          "INSERT INTO projections (tenant_id, name, definition) VALUES ($1, $2, "
                          "$3::jsonb) ON CONFLICT DO NOTHING",
                          3, p, PROJ_TIMEOUT_MS);
    free(text);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r)) rc = strcmp(PQcmdTuples(r), "1") == 0 ? SL_OK : SL_CONFLICT;
    PQclear(r);
    if (rc == SL_OK) {
        PGresult *n = db_exec(conn, "NOTIFY " EVENTLOG_CONTROL_CHANNEL, 0, NULL, PROJ_TIMEOUT_MS);
        PQclear(n);
        rc = projections_get(conn, tenant, name, answer);
    }
    return rc;
}

sl_status projections_list(PGconn **conn, const char *tenant, json_t **answer)
{
    const char *p[] = {tenant};
    PGresult *r =
        db_exec(conn, "SELECT " PROJ_COLUMNS " FROM projections WHERE tenant_id = $1 ORDER BY name",
                1, p, PROJ_TIMEOUT_MS);
    if (!db_ok(r)) {
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(list, proj_row(r, i));
    PQclear(r);
    *answer = json_pack("{s:o}", "projections", list);
    return SL_OK;
}

sl_status projections_get(PGconn **conn, const char *tenant, const char *name, json_t **answer)
{
    const char *p[] = {tenant, name};
    PGresult *r =
        db_exec(conn, "SELECT " PROJ_COLUMNS " FROM projections WHERE tenant_id = $1 AND name = $2",
                2, p, PROJ_TIMEOUT_MS);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r)) {
        rc = SL_NOT_FOUND;
        if (PQntuples(r) == 1) {
            *answer = proj_row(r, 0);
            rc = SL_OK;
        }
    }
    PQclear(r);
    return rc;
}

sl_status projections_reset(PGconn **conn, const char *tenant, const char *name, json_t **answer)
{
    const char *p[] = {tenant, name};
    PGresult *r[4] = {0};
    r[0] = db_exec(conn, "BEGIN", 0, NULL, PROJ_TIMEOUT_MS);
    r[1] = db_exec(
        conn,
        "UPDATE projections SET position = 0, generation = generation + 1, status = "
        "'catching_up', error = NULL, updated_at = now() WHERE tenant_id = $1 AND name = $2",
        2, p, PROJ_TIMEOUT_MS);
    bool found = db_ok(r[1]) && strcmp(PQcmdTuples(r[1]), "1") == 0;
    r[2] = db_exec(conn, "DELETE FROM projection_state WHERE tenant_id = $1 AND name = $2", 2, p,
                   PROJ_TIMEOUT_MS);
    bool ok = db_ok(r[0]) && db_ok(r[1]) && db_ok(r[2]);
    r[3] = db_exec(conn, ok ? "COMMIT" : "ROLLBACK", 0, NULL, PROJ_TIMEOUT_MS);
    ok = ok && db_ok(r[3]);
    for (int i = 0; i < 4; i++)
        PQclear(r[i]);
    if (!ok) return SL_UNAVAILABLE;
    if (!found) return SL_NOT_FOUND;
    PGresult *n = db_exec(conn, "NOTIFY " EVENTLOG_CONTROL_CHANNEL, 0, NULL, PROJ_TIMEOUT_MS);
    PQclear(n);
    return projections_get(conn, tenant, name, answer);
}

sl_status projections_delete(PGconn **conn, const char *tenant, const char *name)
{
    const char *p[] = {tenant, name};
    PGresult *r = db_exec(conn, "DELETE FROM projections WHERE tenant_id = $1 AND name = $2", 2, p,
                          PROJ_TIMEOUT_MS);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r)) rc = strcmp(PQcmdTuples(r), "1") == 0 ? SL_OK : SL_NOT_FOUND;
    PQclear(r);
    return rc;
}

sl_status projections_position(PGconn **conn, const char *tenant, const char *name,
                               long long *position)
{
    const char *p[] = {tenant, name};
    PGresult *r =
        db_exec(conn, "SELECT position FROM projections WHERE tenant_id = $1 AND name = $2", 2, p,
                PROJ_TIMEOUT_MS);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r)) {
        rc = PQntuples(r) == 1 ? SL_OK : SL_NOT_FOUND;
        if (rc == SL_OK) *position = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    }
    PQclear(r);
    return rc;
}

sl_status projections_state(PGconn **conn, const char *tenant, const char *name, const char *key,
                            const char *after_key, int limit, json_t **answer)
{
    long long pos = 0;
    sl_status found = projections_position(conn, tenant, name, &pos);
    if (found != SL_OK) return found;
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *p[] = {tenant, name, key ? key : (after_key ? after_key : ""), lim};
    PGresult *r = db_exec(conn,
                          key ? "SELECT key, state::text, position FROM projection_state WHERE "
                                "tenant_id = $1 AND name = $2 AND key = $3"
                          : after_key ? "SELECT key, state::text, position FROM "
                                        "projection_state WHERE tenant_id = $1 AND name = $2 "
                                        "AND key > $3 ORDER BY key LIMIT $4::int"
                                      : "SELECT key, state::text, position FROM "
                                        "projection_state WHERE tenant_id = $1 AND name = $2 "
                                        "AND key >= $3 ORDER BY key LIMIT $4::int",
                          key ? 3 : 4, p, PROJ_TIMEOUT_MS);
    if (!db_ok(r)) {
        PQclear(r);
        return SL_UNAVAILABLE;
    }
    sl_status rc = SL_OK;
    if (key) {
        if (PQntuples(r) == 1)
            *answer = json_pack("{s:s,s:o,s:I,s:I}", "key", key, "state",
                                row_value(PQgetvalue(r, 0, 1)), "position",
                                (json_int_t)strtoll(PQgetvalue(r, 0, 2), NULL, 10),
                                "projection_position", (json_int_t)pos);
        else
            rc = SL_NOT_FOUND;
    } else {
        int rows = PQntuples(r);
        bool more = rows > limit;
        if (more) rows = limit;
        json_t *states = json_array();
        for (int i = 0; i < rows; i++)
            json_array_append_new(
                states, json_pack("{s:s,s:o,s:I}", "key", PQgetvalue(r, i, 0), "state",
                                  row_value(PQgetvalue(r, i, 1)),
                                  "position", (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10)));
        *answer = json_pack("{s:o,s:o,s:b,s:I}", "states", states, "next_after",
                            rows ? json_string(PQgetvalue(r, rows - 1, 0)) : json_null(),
                            "has_more", more, "position", (json_int_t)pos);
    }
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------------ reapplying a dead letter */

/* Writes one key's state after reapplying the event at `position` to it (the key's
 * position only moves forward), and bumps the projection's generation: a runner batch that
 * loaded its states before this write is dropped, and reads them again. */
static bool write_reapplied(PGconn **conn, const char *tenant, const char *name,
                            const char *key, json_t *state, long long position)
{
    char *text = json_dumps(state, JSON_ENCODE_ANY | JSON_COMPACT), pos[24];
    snprintf(pos, sizeof pos, "%lld", position);
    const char *wp[] = {tenant, name, key, text, pos};
    PGresult *w = db_exec(conn,
                          "INSERT INTO projection_state (tenant_id, name, key, state, position) "
                          "VALUES ($1, $2, $3, $4::jsonb, $5::bigint) ON CONFLICT (tenant_id, "
                          "name, key) DO UPDATE SET state = EXCLUDED.state, position = "
                          "greatest(projection_state.position, EXCLUDED.position)",
                          5, wp, PROJ_TIMEOUT_MS);
    bool ok = db_ok(w);
    PQclear(w);
    free(text);
    if (!ok) return false;
    w = db_exec(conn,
                "UPDATE projections SET generation = generation + 1, updated_at = now() WHERE "
                "tenant_id = $1 AND name = $2",
                2, wp, PROJ_TIMEOUT_MS);
    ok = db_ok(w);
    PQclear(w);
    return ok;
}

/* Locks the projection's row (ordering this with the runner's batch write and with reset),
 * reads the event as a batch of one (read_batch: the same filter, key and value), and folds
 * it into its key's stored state (load_states, fold). */
sl_status projections_reapply(PGconn **conn, const char *tenant, const char *name,
                              long long position, const char *failed_at, char **why)
{
    *why = NULL;
    const char *p[] = {tenant, name, failed_at};
    PGresult *r = db_exec(conn,
                          "SELECT definition::text, position FROM projections WHERE tenant_id = "
                          "$1 AND name = $2 AND created_at <= $3::timestamptz FOR UPDATE",
                          3, p, PROJ_TIMEOUT_MS);
    if (!db_ok(r) || PQntuples(r) != 1) {
        sl_status rc = db_ok(r) ? SL_NOT_FOUND : SL_UNAVAILABLE;
        PQclear(r);
        return rc;
    }
    proj one = {0};
    snprintf(one.tenant, sizeof one.tenant, "%s", tenant);
    snprintf(one.name, sizeof one.name, "%s", name);
    one.def = jsonparse_stored(PQgetvalue(r, 0, 0));
    long long checkpoint = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    if (!one.def) return SL_UNAVAILABLE;
    if (position > checkpoint) {
        json_decref(one.def);
        return SL_CONFLICT;
    }
    one.position = position - 1;
    const char *reduce = json_string_value(json_object_get(one.def, "reduce"));
    sl_status rc = SL_UNAVAILABLE;
    strmap states;
    strmap_init(&states);
    json_t *dead = json_array();
    PGresult *ev = read_batch(conn, &one, position);
    if (!db_ok(ev)) goto out;
    rc = SL_NOT_FOUND; /* no longer stored */
    if (PQntuples(ev) != 1) goto out;
    rc = SL_UNAVAILABLE;
    if (!load_states(conn, &one, ev, &states)) goto out;
    fold(reduce, ev, &states, dead, one.position);
    if (json_array_size(dead)) {
        *why = xstrdup(json_string_value(json_object_get(json_array_get(dead, 0), "e")));
        rc = SL_OK;
    } else if (PQgetisnull(ev, 0, 3)) {
        rc = SL_OK; /* no key at the pointer: the runner never folds it either */
    } else {
        const char *key = PQgetvalue(ev, 0, 3);
        kstate *k = strmap_get(&states, key);
        if (write_reapplied(conn, tenant, name, key, k->state, position)) rc = SL_OK;
    }
out:
    PQclear(ev);
    strmap_dispose(&states, kstate_free);
    json_decref(dead);
    json_decref(one.def);
    return rc;
}
