/*
 * auth.c — API keys, scopes and tenants (see auth.h).
 *
 * DESIGN: the key table is small (one row per API key), so every instance keeps
 * all of it in memory as an array sorted by token hash, swapped whole under a
 * rwlock when it is reloaded. Authentication is a SHA-256 and a binary search;
 * readers hold the lock for the search only, never across I/O.
 */
#include "auth.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "timeutil.h"
#include "ulid.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#define AUTH_TIMEOUT_MS 5000
#define AUTH_REFRESH_MS 1000

typedef struct key_entry {
    char hash[65];                        /* SHA-256 of the token, hex */
    char id[40];
    char tenant[ENVELOPE_TENANT_MAX + 1];
    unsigned scopes;
} key_entry;

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static key_entry *table;  /* {table_lock} sorted by hash */
static size_t table_len;  /* {table_lock} */
static bool auth_enabled = true;
static char *db_url;
static pthread_t refresher;
static atomic_bool refresher_stop;
static bool refresher_running;

static const char *const scope_names[] = {"publish", "read", "subscribe", "schemas", "admin"};

unsigned auth_scope_from_name(const char *name)
{
    for (unsigned i = 0; i < 5; i++)
        if (strcmp(name, scope_names[i]) == 0) return 1u << i;
    return 0;
}

json_t *auth_scope_names(unsigned scopes)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < 5; i++)
        if (scopes & (1u << i)) json_array_append_new(a, json_string(scope_names[i]));
    return a;
}

bool auth_tenant_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ENVELOPE_TENANT_MAX) return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool auth_has_scope(const auth_ctx *ctx, unsigned scope)
{
    if (ctx->scopes & SCOPE_ADMIN) return true;
    return (ctx->scopes & scope) == scope;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const key_entry *)a)->hash, ((const key_entry *)b)->hash);
}

int auth_authenticate(const char *authorization, auth_ctx *out)
{
    memset(out, 0, sizeof *out);
    if (!auth_enabled) {
        snprintf(out->tenant, sizeof out->tenant, "%s", AUTH_DEFAULT_TENANT);
        snprintf(out->key_id, sizeof out->key_id, "anonymous");
        out->scopes = SCOPE_ALL;
        return 0;
    }
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return -1;
    const char *token = authorization + 7;
    while (*token == ' ') token++;
    if (!*token || strlen(token) > 512) return -1;
    key_entry probe;
    sha256_hex(token, probe.hash);
    int rc = -1;
    pthread_rwlock_rdlock(&table_lock);
    key_entry *e = table_len ? bsearch(&probe, table, table_len, sizeof *table, cmp_entry) : NULL;
    if (e) {
        snprintf(out->tenant, sizeof out->tenant, "%s", e->tenant);
        snprintf(out->key_id, sizeof out->key_id, "%s", e->id);
        out->scopes = e->scopes;
        rc = 0;
    }
    pthread_rwlock_unlock(&table_lock);
    return rc;
}

/* Parses a PostgreSQL text[] of scope names ("{publish,read}"). */
static unsigned parse_scope_array(const char *s)
{
    unsigned scopes = 0;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(tmp, "{},\"", &save); tok; tok = strtok_r(NULL, "{},\"", &save))
        scopes |= auth_scope_from_name(tok);
    return scopes;
}

int auth_reload(PGconn **conn)
{
    PGresult *r = db_exec(conn,
                          "SELECT token_hash, id, tenant_id, scopes FROM api_keys "
                          "WHERE revoked_at IS NULL",
                          0, NULL, AUTH_TIMEOUT_MS);
    if (!db_ok(r)) {
        if (r) db_log_error("auth", "loading api keys failed", r);
        PQclear(r);
        return -1;
    }
    size_t n = (size_t)PQntuples(r);
    key_entry *t = xcalloc(n ? n : 1, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        snprintf(t[i].hash, sizeof t[i].hash, "%s", PQgetvalue(r, (int)i, 0));
        snprintf(t[i].id, sizeof t[i].id, "%s", PQgetvalue(r, (int)i, 1));
        snprintf(t[i].tenant, sizeof t[i].tenant, "%s", PQgetvalue(r, (int)i, 2));
        t[i].scopes = parse_scope_array(PQgetvalue(r, (int)i, 3));
    }
    PQclear(r);
    qsort(t, n, sizeof *t, cmp_entry);
    pthread_rwlock_wrlock(&table_lock);
    key_entry *old = table;
    table = t;
    table_len = n;
    pthread_rwlock_unlock(&table_lock);
    free(old);
    return 0;
}

static void *refresh_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    while (!atomic_load(&refresher_stop)) {
        for (int i = 0; i < AUTH_REFRESH_MS / 50 && !atomic_load(&refresher_stop); i++)
            usleep(50 * 1000);
        if (atomic_load(&refresher_stop)) break;
        if (!conn) conn = db_connect(db_url, "auth");
        if (conn) (void)auth_reload(&conn);
    }
    PQfinish(conn);
    return NULL;
}

static void new_token(char out[80])
{
    unsigned char rnd[24];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) abort();
    strcpy(out, "sk_");
    for (size_t i = 0; i < sizeof rnd; i++) snprintf(out + 3 + 2 * i, 3, "%02x", rnd[i]);
}

static char *scopes_literal(unsigned scopes)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (unsigned i = 0; i < 5; i++) {
        if (!(scopes & (1u << i))) continue;
        if (b.len > 1) buf_puts(&b, ",");
        buf_puts(&b, scope_names[i]);
    }
    buf_puts(&b, "}");
    return buf_steal(&b, NULL);
}

static int bootstrap_admin(PGconn **conn, const char *admin_token)
{
    char *scopes = scopes_literal(SCOPE_ALL);
    int rc = -1;
    PGresult *r = NULL;
    char hash[65];
    if (admin_token) {
        sha256_hex(admin_token, hash);
        const char *p[] = {AUTH_ADMIN_KEY_ID, AUTH_DEFAULT_TENANT, scopes, hash};
        /* Instances starting together race on the same row: a unique violation means
         * another one just inserted it; the next attempt takes the update path. */
        for (int attempt = 0; attempt < 3; attempt++) {
            PQclear(r);
            r = db_exec(conn,
                        "INSERT INTO api_keys (id, tenant_id, name, scopes, token_hash) "
                        "VALUES ($1, $2, 'bootstrap admin (SLUICE_ADMIN_TOKEN)', $3, $4) "
                        "ON CONFLICT (id) DO UPDATE SET token_hash = EXCLUDED.token_hash, "
                        "scopes = EXCLUDED.scopes, revoked_at = NULL",
                        4, p, AUTH_TIMEOUT_MS);
            if (db_ok(r) || strcmp(db_sqlstate(r), "23505") != 0) break;
        }
        if (!db_ok(r)) goto fail;
        rc = 0;
        goto out;
    }
    char token[80];
    new_token(token);
    sha256_hex(token, hash);
    const char *p[] = {AUTH_ADMIN_KEY_ID, AUTH_DEFAULT_TENANT, scopes, hash};
    r = db_exec(conn,
                "INSERT INTO api_keys (id, tenant_id, name, scopes, token_hash) "
                "VALUES ($1, $2, 'bootstrap admin (generated)', $3, $4) "
                "ON CONFLICT (id) DO NOTHING",
                4, p, AUTH_TIMEOUT_MS);
    if (!db_ok(r)) goto fail;
    if (strcmp(PQcmdTuples(r), "1") == 0) {
        printf("Sluice admin token (shown once; set SLUICE_ADMIN_TOKEN to choose your own):\n"
               "SLUICE_ADMIN_TOKEN=%s\n", token);
        fflush(stdout);
        log_warn("auth", "generated the bootstrap admin token and printed it on stdout", NULL);
    } else {
        log_info("auth", "bootstrap admin key exists; its token was printed at first start", NULL);
    }
    rc = 0;
    goto out;
fail:
    db_log_error("auth", "creating the bootstrap admin key failed", r);
out:
    PQclear(r);
    free(scopes);
    return rc;
}

int auth_init(const char *database_url, const char *admin_token, bool enabled)
{
    auth_enabled = enabled;
    if (!enabled)
        log_warn("auth", "SLUICE_AUTH=off: every request is admin of tenant 'default'. "
                         "Never expose this instance.", NULL);
    db_url = xstrdup(database_url);
    PGconn *conn = db_connect(db_url, "auth");
    int rc = -1;
    if (!conn) goto out;
    if (bootstrap_admin(&conn, admin_token) < 0) goto out;
    if (auth_reload(&conn) < 0) goto out;
    if (pthread_create(&refresher, NULL, refresh_main, NULL) != 0) goto out;
    refresher_running = true;
    rc = 0;
out:
    PQfinish(conn);
    return rc;
}

void auth_shutdown(void)
{
    if (refresher_running) {
        atomic_store(&refresher_stop, true);
        pthread_join(refresher, NULL);
        refresher_running = false;
    }
    pthread_rwlock_wrlock(&table_lock);
    free(table);
    table = NULL;
    table_len = 0;
    pthread_rwlock_unlock(&table_lock);
    free(db_url);
    db_url = NULL;
}

/* ------------------------------------------------------------------ admin */

static json_t *key_row(PGresult *r, int row)
{
    return json_pack("{s:s,s:s,s:o,s:o,s:s}", "id", PQgetvalue(r, row, 0), "tenant_id",
                     PQgetvalue(r, row, 1), "name",
                     PQgetisnull(r, row, 2) ? json_null() : json_string(PQgetvalue(r, row, 2)),
                     "scopes", auth_scope_names(parse_scope_array(PQgetvalue(r, row, 3))),
                     "created_at", PQgetvalue(r, row, 4));
}

#define KEY_COLUMNS                                                                            \
    "id, tenant_id, name, scopes, "                                                            \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

int auth_key_create(PGconn **conn, const char *tenant, unsigned scopes, const char *name,
                    json_t **answer)
{
    char token[80], hash[65], ulid[ULID_LEN + 1];
    new_token(token);
    sha256_hex(token, hash);
    ulid_new(ulid);
    char *id = xasprintf("key_%s", ulid);
    char *sc = scopes_literal(scopes);
    const char *p[] = {id, tenant, name, sc, hash};
    PGresult *r = db_exec(conn,
                          "INSERT INTO api_keys (id, tenant_id, name, scopes, token_hash) "
                          "VALUES ($1, $2, $3, $4, $5) RETURNING " KEY_COLUMNS,
                          5, p, AUTH_TIMEOUT_MS);
    int rc = -1;
    if (db_ok(r) && PQntuples(r) == 1) {
        *answer = key_row(r, 0);
        json_object_set_new(*answer, "token", json_string(token));
        rc = 0;
    } else if (r) {
        db_log_error("auth", "creating a key failed", r);
    }
    PQclear(r);
    free(id);
    free(sc);
    if (rc == 0 && *conn) (void)auth_reload(conn);
    return rc;
}

int auth_key_list(PGconn **conn, const auth_ctx *caller, json_t **answer)
{
    bool all = strcmp(caller->tenant, AUTH_DEFAULT_TENANT) == 0;
    const char *p[] = {caller->tenant};
    PGresult *r = db_exec(conn,
                          all ? "SELECT " KEY_COLUMNS " FROM api_keys WHERE revoked_at IS NULL "
                                "ORDER BY created_at, id"
                              : "SELECT " KEY_COLUMNS " FROM api_keys WHERE revoked_at IS NULL "
                                "AND tenant_id = $1 ORDER BY created_at, id",
                          all ? 0 : 1, all ? NULL : p, AUTH_TIMEOUT_MS);
    if (!db_ok(r)) {
        PQclear(r);
        return -1;
    }
    json_t *keys = json_array();
    for (int i = 0; i < PQntuples(r); i++) json_array_append_new(keys, key_row(r, i));
    PQclear(r);
    *answer = json_pack("{s:o}", "keys", keys);
    return 0;
}

int auth_key_delete(PGconn **conn, const auth_ctx *caller, const char *id)
{
    bool all = strcmp(caller->tenant, AUTH_DEFAULT_TENANT) == 0;
    const char *p[] = {id, caller->tenant};
    PGresult *r = db_exec(conn,
                          all ? "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND "
                                "revoked_at IS NULL"
                              : "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND "
                                "revoked_at IS NULL AND tenant_id = $2",
                          all ? 1 : 2, p, AUTH_TIMEOUT_MS);
    int rc = -1;
    if (db_ok(r)) rc = strcmp(PQcmdTuples(r), "1") == 0 ? 0 : -2;
    PQclear(r);
    if (rc == 0 && *conn) (void)auth_reload(conn);
    return rc;
}
