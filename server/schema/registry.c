/*
 * registry.c — the schema registry (see registry.h).
 *
 * DESIGN: `types` maps a type name to its current immutable entry; the map
 * holds one reference, each lookup takes another. A change builds a whole new
 * entry from PostgreSQL (every version, compiled) and swaps it in, so readers
 * never see a half-built type. Writers serialise on one advisory lock: schema
 * changes are rare and must see the latest version to check compatibility.
 *
 * NAMESPACES: the map's key is "<tenant>/<type>" ('/' is in neither alphabet), the
 * tenant being the namespace ("default" = global). A lookup for tenant T probes
 * "T/<type>" then "default/<type>"; a write by T lands in "T/…" only, and a write by a
 * tenant other than default to a name only the global namespace has is refused — the check
 * runs in PostgreSQL under the writers' lock, so two instances agree on it. The NOTIFY
 * payload is the same key.
 */
#include "registry.h"
#include "../auth.h"
#include "../locks.h"
#include "../db.h"
#include "../envelope.h"
#include "../log.h"
#include "../mem.h"
#include "../problem.h"
#include "../strmap.h"

#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REGISTRY_LOCK_KEY LOCK_REGISTRY
#define REGISTRY_TIMEOUT_MS 10000
#define REGISTRY_CHANNEL "sluice_schemas"
#define GLOBAL_NS AUTH_DEFAULT_TENANT /* the tenant whose namespace is the global one */
#define KEY_MAX 256                   /* a tenant (≤ 64) + '/' + a type (≤ 128) fits */

extern const char *const catalog_files[]; /* build/gen/catalog.c */

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static strmap types; /* {lock} type name → registry_type* (one reference) */
static bool types_ready;
static char *db_url;
static pthread_t listener;
static atomic_bool stopping;
static bool listener_running;

static bool is_global(const char *tenant)
{
    return strcmp(tenant, GLOBAL_NS) == 0;
}

/* The map key of (namespace, type). False when it cannot fit: no such entry exists. */
static bool ns_key(char out[KEY_MAX], const char *tenant, const char *type)
{
    int n = snprintf(out, KEY_MAX, "%s/%s", tenant, type);
    return n > 0 && n < KEY_MAX;
}

/* ------------------------------------------------------------------ entries */

static void type_free(registry_type *t)
{
    for (int i = 0; i < t->n_versions; i++) {
        json_decref(t->versions[i].doc);
        if (t->versions[i].compiled) schema_free(t->versions[i].compiled);
    }
    free(t->versions);
    free(t->tenant);
    free(t->type);
    free(t->stream);
    free(t->description);
    free(t);
}

void registry_release(registry_type *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) type_free(t);
}

/* {lock} The entry of `type` in `tenant`'s namespace only (no reference taken), or NULL. */
static registry_type *lookup_locked(const char *tenant, const char *type)
{
    char key[KEY_MAX];
    return types_ready && ns_key(key, tenant, type) ? strmap_get(&types, key) : NULL;
}

registry_type *registry_get(const char *tenant, const char *type)
{
    pthread_rwlock_rdlock(&lock);
    registry_type *t = is_global(tenant) ? NULL : lookup_locked(tenant, type);
    if (!t) t = lookup_locked(GLOBAL_NS, type);
    if (t) atomic_fetch_add(&t->refs, 1);
    pthread_rwlock_unlock(&lock);
    return t;
}

/* A reference to the entry of `type` in `tenant`'s namespace only, or NULL. */
static registry_type *get_exact(const char *tenant, const char *type)
{
    pthread_rwlock_rdlock(&lock);
    registry_type *t = lookup_locked(tenant, type);
    if (t) atomic_fetch_add(&t->refs, 1);
    pthread_rwlock_unlock(&lock);
    return t;
}

static void install(registry_type *t)
{
    char key[KEY_MAX];
    if (!ns_key(key, t->tenant, t->type)) {
        log_error("registry", "a stored type's name is too long; skipped",
                  json_pack("{s:s,s:s}", "tenant", t->tenant, "type", t->type));
        registry_release(t);
        return;
    }
    pthread_rwlock_wrlock(&lock);
    registry_type *old = strmap_put(&types, key, t);
    pthread_rwlock_unlock(&lock);
    registry_release(old);
}

static int cmp_type(const void *a, const void *b)
{
    return strcmp((*(registry_type *const *)a)->type, (*(registry_type *const *)b)->type);
}

json_t *registry_type_json(const registry_type *t, bool with_schema)
{
    json_t *versions = json_array();
    for (int i = 0; i < t->n_versions; i++)
        json_array_append_new(versions, json_integer(i + 1));
    json_t *j = json_pack("{s:s,s:s,s:s,s:o,s:s,s:b,s:i,s:o}", "type", t->type, "namespace",
                          is_global(t->tenant) ? "global" : "private", "stream", t->stream,
                          "description", t->description ? json_string(t->description) : json_null(),
                          "compatibility", compat_mode_name(t->compat), "deprecated", t->deprecated,
                          "latest_version", t->n_versions, "versions", versions);
    if (with_schema && t->n_versions)
        json_object_set(j, "schema", t->versions[t->n_versions - 1].doc);
    return j;
}

json_t *registry_list_json(const char *tenant)
{
    pthread_rwlock_rdlock(&lock);
    size_t n = 0;
    bool global = is_global(tenant);
    registry_type **seen = xcalloc(types.len + 1, sizeof *seen);
    strmap_foreach(&types, i)
    {
        registry_type *t = types.slots[i].value;
        /* the caller's own types, and the global ones its own do not shadow */
        if (strcmp(t->tenant, tenant) == 0 ||
            (!global && is_global(t->tenant) && !lookup_locked(tenant, t->type)))
            seen[n++] = t;
    }
    qsort(seen, n, sizeof *seen, cmp_type);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, registry_type_json(seen[i], false));
    pthread_rwlock_unlock(&lock);
    free(seen);
    return json_pack("{s:o}", "schemas", list);
}

/* ------------------------------------------------------------------ loading */

/* Loads run one at a time, so the one that reads PostgreSQL last installs last: the listener
 * reloading a type for an older NOTIFY cannot put its entry back over the one a writer just
 * loaded after its own change (a reader on this instance would see the old state until the
 * next NOTIFY arrived). */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

static int read_types(PGconn **conn, const char *only_tenant, const char *only);

/* Loads one type of one namespace (or all of every namespace, when `only` is NULL) from
 * PostgreSQL into the map. 0 or -1. */
static int load_types(PGconn **conn, const char *only_tenant, const char *only)
{
    pthread_mutex_lock(&load_lock);
    int rc = read_types(conn, only_tenant, only);
    pthread_mutex_unlock(&load_lock);
    return rc;
}

static int read_types(PGconn **conn, const char *only_tenant, const char *only)
{
    const char *p[] = {only_tenant, only};
    PGresult *r = db_exec(
        conn,
        only ? "SELECT t.tenant, t.type, t.stream, t.description, t.compatibility, "
               "t.deprecated_at IS NOT NULL, v.version, v.schema::text, "
               "to_char(v.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
               "FROM schema_types t JOIN schema_versions v USING (tenant, type) "
               "WHERE t.tenant = $1 AND t.type = $2 ORDER BY t.tenant, t.type, v.version"
             : "SELECT t.tenant, t.type, t.stream, t.description, t.compatibility, "
               "t.deprecated_at IS NOT NULL, v.version, v.schema::text, "
               "to_char(v.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
               "FROM schema_types t JOIN schema_versions v USING (tenant, type) "
               "ORDER BY t.tenant, t.type, v.version",
        only ? 2 : 0, only ? p : NULL, REGISTRY_TIMEOUT_MS);
    if (!db_ok(r)) {
        if (r) db_log_error("registry", "loading schemas failed", r);
        PQclear(r);
        return -1;
    }
    registry_type *t = NULL;
    int rows = PQntuples(r);
    for (int i = 0; i <= rows; i++) {
        if (t && (i == rows || strcmp(PQgetvalue(r, i, 0), t->tenant) != 0 ||
                  strcmp(PQgetvalue(r, i, 1), t->type) != 0)) {
            install(t);
            t = NULL;
        }
        if (i == rows) break;
        if (!t) {
            t = xcalloc(1, sizeof *t);
            atomic_init(&t->refs, 1);
            t->tenant = xstrdup(PQgetvalue(r, i, 0));
            t->type = xstrdup(PQgetvalue(r, i, 1));
            t->stream = xstrdup(PQgetvalue(r, i, 2));
            t->description = PQgetisnull(r, i, 3) ? NULL : xstrdup(PQgetvalue(r, i, 3));
            int m = compat_mode_parse(PQgetvalue(r, i, 4));
            t->compat = m < 0 ? COMPAT_BACKWARD : (compat_mode)m;
            t->deprecated = PQgetvalue(r, i, 5)[0] == 't';
        }
        t->versions = xrealloc(t->versions, (size_t)(t->n_versions + 1) * sizeof *t->versions);
        registry_version *v = &t->versions[t->n_versions++];
        memset(v, 0, sizeof *v);
        v->version = atoi(PQgetvalue(r, i, 6));
        v->doc = json_loads(PQgetvalue(r, i, 7), JSON_DECODE_ANY, NULL);
        snprintf(v->created_at, sizeof v->created_at, "%s", PQgetvalue(r, i, 8));
        schema_status st;
        json_t *errs = json_array();
        v->compiled = v->doc ? schema_compile(v->doc, &st, errs) : NULL;
        if (!v->compiled)
            log_error("registry", "a stored schema does not compile; publishes pinned to it fail",
                      json_pack("{s:s,s:s,s:i,s:o}", "tenant", t->tenant, "type", t->type,
                                "version", v->version, "errors", errs));
        else
            json_decref(errs);
    }
    PQclear(r);
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static void fingerprint(json_t *doc, char out[65])
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
    free(text);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static bool exec_ok(PGconn **conn, const char *sql, int n, const char *const *vals)
{
    PGresult *r = db_exec(conn, sql, n, vals, REGISTRY_TIMEOUT_MS);
    bool ok = db_ok(r);
    if (!ok && r) db_log_error("registry", "statement failed", r);
    PQclear(r);
    return ok;
}

static void rollback(PGconn **conn)
{
    if (*conn) (void)exec_ok(conn, "ROLLBACK", 0, NULL);
}

static json_t *refusal(const char *code, const char *detail, json_t *errors)
{
    json_t *p = problem_new(code, detail);
    if (errors) json_object_set_new(p, "errors", errors);
    return p;
}

/* Checks a registration request; fills the parts. Returns a problem or NULL. */
static json_t *parse_request(json_t *req, const char **type, const char **stream,
                             const char **description, json_t **doc)
{
    json_t *errors = json_array();
    if (!json_is_object(req)) {
        json_array_append_new(errors, problem_error(-1, "", "type", "expected a JSON object"));
        return refusal("invalid_request", "the schema request is invalid", errors);
    }
    const char *k;
    json_t *v;
    json_object_foreach(req, k, v)
    {
        if (strcmp(k, "type") && strcmp(k, "stream") && strcmp(k, "description") &&
            strcmp(k, "schema")) {
            char path[80];
            snprintf(path, sizeof path, "/%.60s", k);
            json_array_append_new(errors, problem_error(-1, path, "additionalProperties",
                                                        "unknown field; expected type, stream, "
                                                        "description, schema"));
        }
    }
    v = json_object_get(req, "type");
    if (!json_is_string(v) || !envelope_type_valid(json_string_value(v)))
        json_array_append_new(errors, problem_error(-1, "/type", "pattern",
                                                    "expected an event type in dot notation"));
    else
        *type = json_string_value(v);
    v = json_object_get(req, "stream");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || !envelope_stream_valid(json_string_value(v)))
            json_array_append_new(errors,
                                  problem_error(-1, "/stream", "pattern",
                                                "expected ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"));
        else
            *stream = json_string_value(v);
    }
    v = json_object_get(req, "description");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) > 4096 ||
            strlen(json_string_value(v)) != json_string_length(v))
            json_array_append_new(errors, problem_error(-1, "/description", "type",
                                                        "expected a string of at most 4096 bytes"));
        else
            *description = json_string_value(v);
    }
    v = json_object_get(req, "schema");
    if (!v || !(json_is_object(v) || json_is_boolean(v)))
        json_array_append_new(
            errors, problem_error(-1, "/schema", "type", "expected a JSON Schema (an object)"));
    else
        *doc = v;
    if (json_array_size(errors))
        return refusal("invalid_request", "the schema request is invalid", errors);
    json_decref(errors);
    return NULL;
}

/* ------------------------------------------------------------------ writes */

/* Where a write by `tenant` to `type` lands, as PostgreSQL has it now. */
typedef enum {
    NS_OWN,       /* the tenant's namespace (the global one for tenant default) has the type */
    NS_ABSENT,    /* neither it nor the global one has it: a write creates it in the former */
    NS_FORBIDDEN, /* only the global one has it, and the tenant is not default */
    NS_ERROR,     /* PostgreSQL failed (logged) */
} ns_state;

static ns_state write_target(PGconn **conn, const char *tenant, const char *type)
{
    const char *p[] = {type, tenant, GLOBAL_NS};
    PGresult *r = db_exec(conn,
                          "SELECT tenant = $2 FROM schema_types WHERE type = $1 "
                          "AND tenant IN ($2, $3)",
                          3, p, REGISTRY_TIMEOUT_MS);
    if (!db_ok(r)) {
        if (r) db_log_error("registry", "reading a type's namespace failed", r);
        PQclear(r);
        return NS_ERROR;
    }
    ns_state s = NS_ABSENT;
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetvalue(r, i, 0)[0] == 't') {
            s = NS_OWN;
            break;
        }
        s = NS_FORBIDDEN;
    }
    PQclear(r);
    return s;
}

static json_t *forbidden_global(const char *type)
{
    return problem_newf("forbidden",
                        "type '%s' is a global type: only keys of tenant '" GLOBAL_NS "' change "
                        "it; a tenant's own types take names the global namespace does not use",
                        type);
}

/* After a write to (tenant, type): tells the other instances, reloads the entry here. */
static bool announce(PGconn **conn, const char *tenant, const char *type)
{
    char key[KEY_MAX];
    if (!ns_key(key, tenant, type)) return true;
    const char *p[] = {key};
    return exec_ok(conn, "SELECT pg_notify('" REGISTRY_CHANNEL "', $1)", 1, p);
}

/* One registration, filled in as its steps go. */
typedef struct registration {
    PGconn **conn;
    const char *tenant, *type, *description;
    const char *stream; /* as asked (NULL: none), then the type's */
    char *stream_owned; /* owned: `stream` when it is not the request's */
    json_t *doc;        /* the schema (borrowed from the request) */
    char fp[65];        /* its fingerprint */
    int version;        /* the version it writes */
} registration;

/* The problem of a schema that does not compile, or NULL when it compiles. */
static json_t *compile_problem(json_t *doc)
{
    schema_status st = SCHEMA_OK;
    json_t *errors = json_array();
    schema *compiled = schema_compile(doc, &st, errors);
    if (compiled) {
        schema_free(compiled);
        json_decref(errors);
        return NULL;
    }
    return refusal(st == SCHEMA_UNSUPPORTED ? "unsupported_keyword" : "invalid_schema",
                   st == SCHEMA_UNSUPPORTED
                       ? "the schema uses a keyword Sluice does not implement"
                       : "the schema is not a valid JSON Schema 2020-12 document",
                   errors);
}

/* Why `doc` is not `mode`-compatible with the stored versions `vr` (version, schema rows;
 * the latest alone unless the mode is transitive): one reason per break, each naming its
 * version; an empty array when it is compatible. */
static json_t *compat_reasons(PGresult *vr, json_t *doc, compat_mode mode)
{
    json_t *reasons = json_array();
    int latest = PQntuples(vr) - 1;
    int first = compat_mode_transitive(mode) ? 0 : latest;
    for (int i = first; i <= latest && mode != COMPAT_NONE; i++) {
        json_t *old = json_loads(PQgetvalue(vr, i, 1), JSON_DECODE_ANY, NULL);
        json_t *rs = json_array();
        if (old && !compat_check(old, doc, mode, rs)) {
            size_t k;
            json_t *e;
            json_array_foreach(rs, k, e)
            {
                json_object_set_new(e, "version", json_integer(atoi(PQgetvalue(vr, i, 0))));
                json_array_append(reasons, e);
            }
        }
        json_decref(rs);
        json_decref(old);
    }
    return reasons;
}

/* For a type that exists (`cur`: its stream and compatibility mode): a stream it does not
 * have is a conflict, the latest schema again is REG_UNCHANGED, an incompatible one is
 * refused. REG_CREATED means a new version is due (g->version and g->stream set). */
static registry_outcome next_version(registration *g, PGresult *cur, json_t **answer)
{
    const char *cur_stream = PQgetvalue(cur, 0, 0);
    if (g->stream && strcmp(g->stream, cur_stream) != 0) {
        *answer = problem_newf("conflict",
                               "type '%s' belongs to stream '%s'; a type's stream "
                               "does not change",
                               g->type, cur_stream);
        return REG_REFUSED;
    }
    int m = compat_mode_parse(PQgetvalue(cur, 0, 1));
    compat_mode mode = m < 0 ? COMPAT_BACKWARD : (compat_mode)m;
    const char *p[] = {g->tenant, g->type};
    PGresult *vr = db_exec(g->conn,
                           "SELECT version, schema::text, fingerprint FROM schema_versions "
                           "WHERE tenant = $1 AND type = $2 ORDER BY version",
                           2, p, REGISTRY_TIMEOUT_MS);
    int latest = db_ok(vr) ? PQntuples(vr) - 1 : -1;
    if (latest < 0) {
        PQclear(vr);
        return REG_STORE_DOWN;
    }
    bool same = strcmp(PQgetvalue(vr, latest, 2), g->fp) == 0;
    json_t *reasons = same ? NULL : compat_reasons(vr, g->doc, mode);
    registry_outcome out = REG_CREATED;
    if (same) {
        *answer = json_pack("{s:s,s:i,s:s}", "type", g->type, "version",
                            atoi(PQgetvalue(vr, latest, 0)), "stream", cur_stream);
        out = REG_UNCHANGED;
    } else if (json_array_size(reasons)) {
        *answer = problem_newf("incompatible_schema",
                               "the new schema is not %s-compatible with version(s) of '%s'",
                               compat_mode_name(mode), g->type);
        json_object_set_new(*answer, "errors", reasons);
        json_object_set_new(*answer, "compatibility", json_string(compat_mode_name(mode)));
        reasons = NULL;
        out = REG_REFUSED;
    } else {
        g->version = atoi(PQgetvalue(vr, latest, 0)) + 1;
        g->stream = g->stream_owned = xstrdup(cur_stream);
    }
    json_decref(reasons);
    PQclear(vr);
    return out;
}

/* An existing type getting a new version: no longer deprecated, its description updated
 * when one was given. */
static bool touch_type(const registration *g)
{
    const char *p[] = {g->tenant, g->type, g->description};
    return exec_ok(g->conn,
                   "UPDATE schema_types SET updated_at = now(), deprecated_at = NULL, "
                   "description = coalesce($3, description) WHERE tenant = $1 AND type = $2",
                   3, p);
}

/* A new type's row, on the stream asked for or its default (the type's first segment +
 * ".events"). */
static bool create_type(registration *g)
{
    if (!g->stream) {
        const char *dot = strchr(g->type, '.');
        g->stream = g->stream_owned = xasprintf("%.*s.events", (int)(dot - g->type), g->type);
    }
    const char *p[] = {g->tenant, g->type, g->stream, g->description};
    return exec_ok(g->conn,
                   "INSERT INTO schema_types (tenant, type, stream, description) "
                   "VALUES ($1, $2, $3, $4)",
                   4, p);
}

/* Stores version g->version, tells the other instances, and commits. */
static bool insert_version(const registration *g)
{
    char *doc_text = json_dumps(g->doc, JSON_COMPACT | JSON_ENCODE_ANY);
    char vtext[16];
    snprintf(vtext, sizeof vtext, "%d", g->version);
    const char *p[] = {g->tenant, g->type, vtext, doc_text, g->fp};
    bool ok = exec_ok(g->conn,
                      "INSERT INTO schema_versions (tenant, type, version, schema, fingerprint) "
                      "VALUES ($1, $2, $3, $4::jsonb, $5)",
                      5, p) &&
              announce(g->conn, g->tenant, g->type) && exec_ok(g->conn, "COMMIT", 0, NULL);
    free(doc_text);
    return ok;
}

/* The registration inside the writers' transaction: where the write lands, the type's row,
 * the new version. REG_CREATED once committed; otherwise the caller rolls back. `*invalid`
 * (the schema's compile problem, or NULL) is the answer only for a tenant that may write
 * the type (it is then taken). */
static registry_outcome register_locked(registration *g, json_t **invalid, json_t **answer)
{
    ns_state ns = write_target(g->conn, g->tenant, g->type);
    if (ns == NS_ERROR) return REG_STORE_DOWN;
    if (ns == NS_FORBIDDEN) {
        *answer = forbidden_global(g->type);
        return REG_REFUSED;
    }
    if (*invalid) {
        *answer = *invalid;
        *invalid = NULL;
        return REG_REFUSED;
    }
    const char *p[] = {g->tenant, g->type};
    PGresult *cur = db_exec(
        g->conn, "SELECT stream, compatibility FROM schema_types WHERE tenant = $1 AND type = $2",
        2, p, REGISTRY_TIMEOUT_MS);
    registry_outcome out = REG_STORE_DOWN;
    if (db_ok(cur) && PQntuples(cur) == 1) {
        out = next_version(g, cur, answer);
        if (out == REG_CREATED && !touch_type(g)) out = REG_STORE_DOWN;
    } else if (db_ok(cur)) {
        out = create_type(g) ? REG_CREATED : REG_STORE_DOWN;
    }
    PQclear(cur);
    if (out == REG_CREATED && !insert_version(g)) out = REG_STORE_DOWN;
    return out;
}

registry_outcome registry_register(PGconn **conn, const char *tenant, json_t *req, json_t **answer)
{
    registration g = {.conn = conn, .tenant = tenant, .version = 1};
    *answer = parse_request(req, &g.type, &g.stream, &g.description, &g.doc);
    if (*answer) return REG_REFUSED;
    /* A schema that does not compile is answered after the namespace check: a tenant that
     * may not write the type learns that first (403 before 422). */
    json_t *invalid = compile_problem(g.doc);
    fingerprint(g.doc, g.fp);
    registry_outcome out = REG_STORE_DOWN;
    if (exec_ok(conn, "BEGIN", 0, NULL) &&
        exec_ok(conn, "SELECT pg_advisory_xact_lock(" REGISTRY_LOCK_KEY ")", 0, NULL))
        out = register_locked(&g, &invalid, answer);
    if (out == REG_CREATED) {
        *answer =
            json_pack("{s:s,s:i,s:s}", "type", g.type, "version", g.version, "stream", g.stream);
        (void)load_types(conn, tenant, g.type);
        log_info(
            "registry", "schema registered",
            json_pack("{s:s,s:s,s:i}", "tenant", tenant, "type", g.type, "version", g.version));
    } else {
        rollback(conn);
    }
    json_decref(invalid);
    free(g.stream_owned);
    return out;
}

/* A write to (tenant, type) found no row of the tenant's namespace: not_found, or forbidden
 * when the name is a global type the tenant may not change. */
static registry_outcome missing(PGconn **conn, const char *tenant, const char *type,
                                json_t **answer)
{
    ns_state ns = is_global(tenant) ? NS_ABSENT : write_target(conn, tenant, type);
    if (ns == NS_ERROR) return REG_STORE_DOWN;
    *answer = ns == NS_FORBIDDEN
                  ? forbidden_global(type)
                  : problem_newf("not_found", "no schema is registered for type '%s'", type);
    return REG_REFUSED;
}

/* Runs `sql` (an UPDATE of one schema_types row; $1 tenant, $2 type), then tells every
 * instance and reloads the type here. REG_UNCHANGED when it did; otherwise the outcome to
 * answer (*answer set for a missing type). */
static registry_outcome update_type(PGconn **conn, const char *sql, int n, const char *const *p,
                                    json_t **answer)
{
    PGresult *r = db_exec(conn, sql, n, p, REGISTRY_TIMEOUT_MS);
    bool ok = db_ok(r);
    bool found = ok && strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!ok) return REG_STORE_DOWN;
    if (!found) return missing(conn, p[0], p[1], answer);
    (void)announce(conn, p[0], p[1]);
    (void)load_types(conn, p[0], p[1]);
    return REG_UNCHANGED;
}

registry_outcome registry_set_compat(PGconn **conn, const char *tenant, const char *type,
                                     json_t *req, json_t **answer)
{
    json_t *c = json_object_get(req, "compatibility");
    int mode = json_is_string(c) ? compat_mode_parse(json_string_value(c)) : -1;
    if (!json_is_object(req) || json_object_size(req) != 1 || mode < 0) {
        *answer = problem_new("invalid_request",
                              "expected {\"compatibility\": \"BACKWARD|FORWARD|FULL|NONE\"} "
                              "(or a _TRANSITIVE form)");
        return REG_REFUSED;
    }
    const char *p[] = {tenant, type, compat_mode_name((compat_mode)mode)};
    registry_outcome o = update_type(conn, "UPDATE schema_types SET compatibility = $3, "
                                           "updated_at = now() WHERE tenant = $1 AND type = $2",
                                     3, p, answer);
    if (o != REG_UNCHANGED) return o;
    *answer = json_pack("{s:s,s:s}", "type", type, "compatibility", p[2]);
    return REG_UNCHANGED;
}

registry_outcome registry_deprecate(PGconn **conn, const char *tenant, const char *type,
                                    json_t **answer)
{
    const char *p[] = {tenant, type};
    registry_outcome o = update_type(conn,
                                     "UPDATE schema_types SET deprecated_at = "
                                     "coalesce(deprecated_at, now()), updated_at = now() "
                                     "WHERE tenant = $1 AND type = $2",
                                     2, p, answer);
    if (o != REG_UNCHANGED) return o;
    registry_type *t = get_exact(tenant, type);
    *answer =
        t ? registry_type_json(t, false) : json_pack("{s:s,s:b}", "type", type, "deprecated", 1);
    registry_release(t);
    return REG_UNCHANGED;
}

/* ------------------------------------------------------------------ catalog */

/* Registers each catalog type that is absent. 0, or -1 when PostgreSQL failed. */
static int register_catalog(PGconn **conn)
{
    int added = 0;
    for (const char *const *f = catalog_files; *f; f++) {
        json_error_t jerr;
        json_t *entry = json_loads(*f, 0, &jerr);
        const char *type = NULL, *stream = NULL, *description = NULL;
        json_t *doc = NULL;
        json_t *problem = entry ? parse_request(entry, &type, &stream, &description, &doc) : NULL;
        if (!entry || problem) {
            log_error("registry", "a catalog file is malformed; skipped",
                      json_pack("{s:s,s:o}", "error", entry ? "bad fields" : jerr.text, "problem",
                                problem ? problem : json_null()));
            json_decref(entry);
            continue;
        }
        schema_status st;
        json_t *errs = json_array();
        schema *compiled = schema_compile(doc, &st, errs);
        if (!compiled) {
            log_error("registry", "a catalog schema does not compile; skipped",
                      json_pack("{s:s,s:o}", "type", type, "errors", errs));
            json_decref(entry);
            continue;
        }
        schema_free(compiled);
        json_decref(errs);
        char fp[65];
        fingerprint(doc, fp);
        char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
        const char *pi[] = {GLOBAL_NS, type, stream ? stream : "", description, text, fp};
        PGresult *r = db_exec(conn,
                              "WITH t AS (INSERT INTO schema_types (tenant, type, stream, "
                              "description) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, type) "
                              "DO NOTHING RETURNING tenant, type) "
                              "INSERT INTO schema_versions (tenant, type, version, schema, "
                              "fingerprint) SELECT tenant, type, 1, $5::jsonb, $6 FROM t",
                              6, pi, REGISTRY_TIMEOUT_MS);
        bool ok = db_ok(r);
        if (ok && strcmp(PQcmdTuples(r), "1") == 0) added++;
        if (!ok) db_log_error("registry", "registering the catalog failed", r);
        PQclear(r);
        free(text);
        json_decref(entry);
        if (!ok) return -1;
    }
    if (added) log_info("registry", "catalog types registered", json_pack("{s:i}", "added", added));
    return 0;
}

/* ------------------------------------------------------------------ listener */

static void *listen_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    while (!atomic_load(&stopping)) {
        if (!conn) {
            conn = db_connect(db_url, "registry");
            if (conn && (!exec_ok(&conn, "LISTEN " REGISTRY_CHANNEL, 0, NULL) ||
                         load_types(&conn, NULL, NULL) < 0)) {
                PQfinish(conn);
                conn = NULL;
            }
            if (!conn) {
                for (int i = 0; i < 10 && !atomic_load(&stopping); i++)
                    usleep(100 * 1000);
                continue;
            }
        }
        struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
        if (poll(&p, 1, 200) > 0 && !PQconsumeInput(conn)) {
            PQfinish(conn);
            conn = NULL;
            continue;
        }
        PGnotify *n;
        while (conn && (n = PQnotifies(conn))) {
            /* "<tenant>/<type>"; a bare type (an older instance's) is a global one */
            char *key = xstrdup(n->extra);
            PQfreemem(n);
            char *slash = strchr(key, '/');
            if (slash) *slash = '\0';
            (void)load_types(&conn, slash ? key : GLOBAL_NS, slash ? slash + 1 : key);
            free(key);
        }
    }
    PQfinish(conn);
    return NULL;
}

/* ------------------------------------------------------------------ life */

int registry_start(const char *database_url)
{
    db_url = xstrdup(database_url);
    strmap_init(&types);
    PGconn *conn = db_connect(db_url, "registry");
    int rc = -1;
    if (!conn) goto out;
    if (!exec_ok(&conn, "SELECT pg_advisory_lock(" REGISTRY_LOCK_KEY ")", 0, NULL)) goto out;
    int cat = register_catalog(&conn);
    (void)exec_ok(&conn, "SELECT pg_advisory_unlock(" REGISTRY_LOCK_KEY ")", 0, NULL);
    if (cat < 0) goto out;
    pthread_rwlock_wrlock(&lock);
    types_ready = true;
    pthread_rwlock_unlock(&lock);
    if (load_types(&conn, NULL, NULL) < 0) goto out;
    if (pthread_create(&listener, NULL, listen_main, NULL) != 0) goto out;
    listener_running = true;
    rc = 0;
out:
    PQfinish(conn);
    return rc;
}

static void release_value(void *v)
{
    registry_release(v);
}

void registry_stop(void)
{
    if (listener_running) {
        atomic_store(&stopping, true);
        pthread_join(listener, NULL);
        listener_running = false;
    }
    pthread_rwlock_wrlock(&lock);
    if (types.slots) strmap_dispose(&types, release_value);
    types_ready = false;
    pthread_rwlock_unlock(&lock);
    free(db_url);
    db_url = NULL;
}
