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
#include "digest.h"
#include "log.h"
#include "mem.h"
#include "strmap.h"
#include "timeutil.h"
#include "ulid.h"

#include <poll.h>
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
#define AUTH_CHANNEL "sluice_keys" /* NOTIFY'd with each key change, payload the key id */

typedef struct key_entry {
    char hash[65]; /* SHA-256 of the token, hex */
    char id[40];
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char name[AUTH_KEY_NAME_MAX + 1]; /* "" = none */
    unsigned scopes;
} key_entry;

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static key_entry *table;  /* {table_lock} sorted by hash */
static key_entry **by_id; /* {table_lock} the same entries, sorted by id */
static size_t table_len;  /* {table_lock} */
/* Serialises reloads whole (query and swap), so a slower reload of an older snapshot never
 * swaps in a table that still holds a key a newer one removed. */
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

/* Revocation watches (auth.h): key id → the watches of that key, a doubly-linked list. */
typedef struct watch_list {
    auth_watch *head;
} watch_list;
struct auth_watch {
    watch_list *list;        /* {watch_lock} NULL once fired or removed */
    auth_watch *prev, *next; /* {watch_lock} */
    auth_revoked_fn fn;
    void *arg;
};
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static strmap watch_lists; /* {watch_lock} key id → watch_list; kept until exit (keys are few) */
static bool watch_ready;   /* {watch_lock} */
static bool auth_enabled = true;
static char *db_url;
static pthread_t refresher;
static atomic_bool refresher_stop;
static bool refresher_running;

static const char *const scope_names[] = {"publish", "read", "subscribe", "schemas", "admin",
                                            "consume"};
#define N_SCOPES (sizeof scope_names / sizeof scope_names[0])

unsigned auth_scope_from_name(const char *name)
{
    for (unsigned i = 0; i < N_SCOPES; i++)
        if (strcmp(name, scope_names[i]) == 0) return 1u << i;
    return 0;
}

json_t *auth_scope_names(unsigned scopes)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < N_SCOPES; i++)
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
    digest_sha256_hex(s, strlen(s), out);
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
    while (*token == ' ')
        token++;
    if (!*token || strlen(token) > 512) return -1;
    key_entry probe;
    sha256_hex(token, probe.hash);
    int rc = -1;
    pthread_rwlock_rdlock(&table_lock);
    key_entry *e = table_len ? bsearch(&probe, table, table_len, sizeof *table, cmp_entry) : NULL;
    if (e) {
        snprintf(out->tenant, sizeof out->tenant, "%s", e->tenant);
        snprintf(out->key_id, sizeof out->key_id, "%s", e->id);
        memcpy(out->key_name, e->name, sizeof out->key_name);
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

static int cmp_id_ptr(const void *a, const void *b)
{
    return strcmp((*(key_entry *const *)a)->id, (*(key_entry *const *)b)->id);
}

/* Whether key `id` is in the table now. Any thread. */
static bool key_active(const char *id)
{
    if (!auth_enabled) return true;
    key_entry probe, *pp = &probe;
    snprintf(probe.id, sizeof probe.id, "%s", id);
    pthread_rwlock_rdlock(&table_lock);
    bool found = table_len && bsearch(&pp, by_id, table_len, sizeof *by_id, cmp_id_ptr);
    pthread_rwlock_unlock(&table_lock);
    return found;
}

/* Fires every watch of key `id` (each once), unlinking it. */
static void fire_watches(const char *id)
{
    int fired = 0;
    pthread_mutex_lock(&watch_lock);
    watch_list *l = watch_ready ? strmap_get(&watch_lists, id) : NULL;
    while (l && l->head) {
        auth_watch *w = l->head;
        l->head = w->next;
        if (w->next) w->next->prev = NULL;
        w->list = NULL;
        w->prev = w->next = NULL;
        w->fn(w->arg);
        fired++;
    }
    pthread_mutex_unlock(&watch_lock);
    log_info("auth", "api key revoked: closing what it holds open",
             json_pack("{s:s,s:i}", "key_id", id, "closed", fired));
}

auth_watch *auth_watch_add(const auth_ctx *who, auth_revoked_fn fn, void *arg)
{
    auth_watch *w = xcalloc(1, sizeof *w);
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_lock(&watch_lock);
    if (!watch_ready) {
        strmap_init(&watch_lists);
        watch_ready = true;
    }
    watch_list *l = strmap_get(&watch_lists, who->key_id);
    if (!l) {
        l = xcalloc(1, sizeof *l);
        strmap_put(&watch_lists, who->key_id, l);
    }
    w->list = l;
    w->next = l->head;
    if (l->head) l->head->prev = w;
    l->head = w;
    pthread_mutex_unlock(&watch_lock);
    /* Checked after linking: a reload swaps the table before it fires the watches, so either
     * this sees the key gone, or that reload finds this watch. */
    if (!key_active(who->key_id)) {
        auth_watch_remove(w);
        return NULL;
    }
    return w;
}

void auth_watch_remove(auth_watch *w)
{
    if (!w) return;
    pthread_mutex_lock(&watch_lock);
    if (w->list) {
        if (w->prev)
            w->prev->next = w->next;
        else
            w->list->head = w->next;
        if (w->next) w->next->prev = w->prev;
    }
    pthread_mutex_unlock(&watch_lock);
    free(w);
}

/* A key's name (UTF-8, from PostgreSQL) into `out`: its first ENVELOPE_STR_MAX code points,
 * so it is a valid `source` whatever length it was created with. */
static void copy_key_name(char out[AUTH_KEY_NAME_MAX + 1], const char *name)
{
    size_t n = 0, points = 0;
    for (; name[n] && n < AUTH_KEY_NAME_MAX; n++) {
        bool starts = ((unsigned char)name[n] & 0xC0) != 0x80;
        if (starts && ++points > ENVELOPE_STR_MAX) break;
    }
    while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80) /* never half a code point */
        n--;
    memcpy(out, name, n);
    out[n] = '\0';
}

int auth_reload(PGconn **conn)
{
    pthread_mutex_lock(&reload_lock);
    PGresult *r = db_exec(conn,
                          "SELECT token_hash, id, tenant_id, scopes, coalesce(name, '') FROM "
                          "api_keys WHERE revoked_at IS NULL",
                          0, NULL, AUTH_TIMEOUT_MS);
    if (!db_ok(r)) {
        if (r) db_log_error("auth", "loading api keys failed", r);
        PQclear(r);
        pthread_mutex_unlock(&reload_lock);
        return -1;
    }
    size_t n = (size_t)PQntuples(r);
    key_entry *t = xcalloc(n ? n : 1, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        snprintf(t[i].hash, sizeof t[i].hash, "%s", PQgetvalue(r, (int)i, 0));
        snprintf(t[i].id, sizeof t[i].id, "%s", PQgetvalue(r, (int)i, 1));
        snprintf(t[i].tenant, sizeof t[i].tenant, "%s", PQgetvalue(r, (int)i, 2));
        t[i].scopes = parse_scope_array(PQgetvalue(r, (int)i, 3));
        copy_key_name(t[i].name, PQgetvalue(r, (int)i, 4));
    }
    PQclear(r);
    qsort(t, n, sizeof *t, cmp_entry);
    key_entry **ids = xcalloc(n ? n : 1, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = &t[i];
    qsort(ids, n, sizeof *ids, cmp_id_ptr);
    /* Keys of the old table whose token no longer names them (revoked, deleted, or the
     * bootstrap admin's token replaced): what they hold open is closed once the new table is
     * in place. Only this thread (reload_lock) changes the table, so reading the old one
     * needs no other lock. */
    char(*gone)[40] = NULL;
    size_t n_gone = 0;
    for (size_t i = 0; i < table_len; i++) {
        key_entry *e = n ? bsearch(&table[i], t, n, sizeof *t, cmp_entry) : NULL;
        if (e && strcmp(e->id, table[i].id) == 0) continue;
        gone = xrealloc(gone, (n_gone + 1) * sizeof *gone);
        memcpy(gone[n_gone++], table[i].id, sizeof *gone);
    }
    pthread_rwlock_wrlock(&table_lock);
    key_entry *old = table;
    key_entry **old_ids = by_id;
    table = t;
    by_id = ids;
    table_len = n;
    pthread_rwlock_unlock(&table_lock);
    free(old);
    free(old_ids);
    for (size_t i = 0; i < n_gone; i++)
        fire_watches(gone[i]);
    free(gone);
    pthread_mutex_unlock(&reload_lock);
    return 0;
}

/* Waits up to `ms` for a NOTIFY on AUTH_CHANNEL (in 50 ms slices, to notice a stop). Returns
 * when one came, the time passed, or the connection failed (*conn closed and NULL). */
static void wait_notified(PGconn **conn, int ms)
{
    for (int waited = 0; waited < ms && !atomic_load(&refresher_stop); waited += 50) {
        PGnotify *note;
        bool any = false;
        while ((note = PQnotifies(*conn))) { /* also those that came during a reload */
            PQfreemem(note);
            any = true;
        }
        if (any) return;
        struct pollfd p = {.fd = PQsocket(*conn), .events = POLLIN};
        if (p.fd < 0 || (poll(&p, 1, 50) > 0 && !PQconsumeInput(*conn))) {
            PQfinish(*conn);
            *conn = NULL;
            return;
        }
    }
}

/* Reloads the table on every key change anywhere (NOTIFY AUTH_CHANNEL) and at least every
 * AUTH_REFRESH_MS (a notification is lost while the connection is down). */
static void *refresh_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    bool listening = false;
    while (!atomic_load(&refresher_stop)) {
        if (!conn) {
            listening = false;
            conn = db_connect(db_url, "auth");
        }
        if (conn && !listening) {
            PGresult *r = db_exec(&conn, "LISTEN " AUTH_CHANNEL, 0, NULL, AUTH_TIMEOUT_MS);
            listening = db_ok(r);
            PQclear(r);
        }
        if (conn) (void)auth_reload(&conn); /* after LISTEN: covers what changed before it */
        if (conn && listening) {
            wait_notified(&conn, AUTH_REFRESH_MS);
        } else {
            for (int i = 0; i < AUTH_REFRESH_MS / 50 && !atomic_load(&refresher_stop); i++)
                usleep(50 * 1000);
        }
    }
    PQfinish(conn);
    return NULL;
}

static void new_token(char out[80])
{
    unsigned char rnd[24];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) abort();
    strcpy(out, "sk_");
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(out + 3 + 2 * i, 3, "%02x", rnd[i]);
}

static char *scopes_literal(unsigned scopes)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (unsigned i = 0; i < N_SCOPES; i++) {
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
               "SLUICE_ADMIN_TOKEN=%s\n",
               token);
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
        log_warn("auth",
                 "SLUICE_AUTH=off: every request is admin of tenant 'default'. "
                 "Never expose this instance.",
                 NULL);
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
    free(by_id);
    table = NULL;
    by_id = NULL;
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

#define KEY_COLUMNS                                                                                \
    "id, tenant_id, name, scopes, "                                                                \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

sl_status auth_key_create(PGconn **conn, const char *tenant, unsigned scopes, const char *name,
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
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r) && PQntuples(r) == 1) {
        *answer = key_row(r, 0);
        json_object_set_new(*answer, "token", json_string(token));
        rc = SL_OK;
    } else if (r) {
        db_log_error("auth", "creating a key failed", r);
    }
    PQclear(r);
    free(sc);
    if (rc == SL_OK && *conn) { /* other instances reload now rather than within a second */
        const char *np[] = {id};
        PQclear(db_exec(conn, "SELECT pg_notify('" AUTH_CHANNEL "', $1)", 1, np, AUTH_TIMEOUT_MS));
    }
    free(id);
    if (rc == SL_OK && *conn) (void)auth_reload(conn);
    return rc;
}

sl_status auth_key_list(PGconn **conn, const auth_ctx *caller, json_t **answer)
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
        return SL_UNAVAILABLE;
    }
    json_t *keys = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(keys, key_row(r, i));
    PQclear(r);
    *answer = json_pack("{s:o}", "keys", keys);
    return SL_OK;
}

sl_status auth_key_delete(PGconn **conn, const auth_ctx *caller, const char *id)
{
    bool all = strcmp(caller->tenant, AUTH_DEFAULT_TENANT) == 0;
    const char *p[] = {id, caller->tenant};
    /* The notification goes out with the commit: every instance reloads at once and closes
     * what the key holds open there; this one reloads below before it answers. */
    PGresult *r = db_exec(conn,
                          all ? "WITH k AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 "
                                "AND revoked_at IS NULL RETURNING id) "
                                "SELECT pg_notify('" AUTH_CHANNEL "', id) FROM k"
                              : "WITH k AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 "
                                "AND revoked_at IS NULL AND tenant_id = $2 RETURNING id) "
                                "SELECT pg_notify('" AUTH_CHANNEL "', id) FROM k",
                          all ? 1 : 2, p, AUTH_TIMEOUT_MS);
    sl_status rc = SL_UNAVAILABLE;
    if (db_ok(r)) rc = PQntuples(r) == 1 ? SL_OK : SL_NOT_FOUND;
    PQclear(r);
    if (rc == SL_OK && *conn) (void)auth_reload(conn);
    return rc;
}
