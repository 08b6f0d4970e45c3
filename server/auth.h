/*
 * auth.h — API keys, scopes and tenants.
 *
 * A token is checked against an in-memory table of key hashes (SHA-256), so
 * authenticating a request never touches PostgreSQL on a libmicrohttpd thread.
 * The table is loaded from api_keys at start-up, reloaded after every key
 * change made here, and reloaded by a background thread on every NOTIFY sluice_keys
 * (sent with each key change) and at least every second, so a key created or
 * revoked on another instance takes effect within a second.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include "envelope.h"
#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>

enum {
    SCOPE_NONE = 0,
    SCOPE_PUBLISH = 1u << 0,
    SCOPE_READ = 1u << 1,
    SCOPE_SUBSCRIBE = 1u << 2,
    SCOPE_SCHEMAS = 1u << 3,
    SCOPE_ADMIN = 1u << 4,
    SCOPE_CONSUME = 1u << 5,
    SCOPE_ALL = 0x3f,
};

#define AUTH_DEFAULT_TENANT "default"
#define AUTH_ADMIN_KEY_ID "admin"

/* Bytes of a key's name kept: ENVELOPE_STR_MAX code points of UTF-8. */
#define AUTH_KEY_NAME_MAX (ENVELOPE_STR_MAX * 4)

typedef struct auth_ctx {
    char tenant[ENVELOPE_TENANT_MAX + 1]; /* every query is scoped to it */
    char key_id[40];                      /* the key that authenticated */
    char key_name[AUTH_KEY_NAME_MAX + 1]; /* its name, at most ENVELOPE_STR_MAX code points
                                             ("" = none): the default `source` of what it
                                             publishes (issue 15) */
    unsigned scopes;                      /* SCOPE_* bits */
} auth_ctx;

/* Start-up: loads the key table and makes sure the bootstrap admin key exists
 * (from `admin_token`, or generated and printed to stdout when the key is new).
 * `enabled` false = SLUICE_AUTH=off. Returns 0 or -1 (logged). */
int auth_init(const char *database_url, const char *admin_token, bool enabled)
    __attribute__((warn_unused_result));
void auth_shutdown(void);

/* Checks an Authorization header value ("Bearer <token>", may be NULL).
 * Returns 0 and fills `out`, or -1 when missing or unknown. Any thread; no I/O. */
int auth_authenticate(const char *authorization, auth_ctx *out) __attribute__((warn_unused_result));
/* True when `ctx` holds `scope` (admin holds every scope). */
bool auth_has_scope(const auth_ctx *ctx, unsigned scope);

/* Parses a scope name; 0 if unknown. */
unsigned auth_scope_from_name(const char *name);
/* Array of scope names for `scopes` (caller owns). */
json_t *auth_scope_names(unsigned scopes);
/* True when `s` is a well-formed tenant id (^[A-Za-z0-9._-]{1,64}$). */
bool auth_tenant_valid(const char *s);

/* Key administration, on a pool thread with its own connection (*conn may become NULL).
 * Each returns SL_OK and fills *answer (caller owns; none for delete), SL_UNAVAILABLE, or
 * SL_NOT_FOUND (delete). */
sl_status auth_key_create(PGconn **conn, const char *tenant, unsigned scopes, const char *name,
                          json_t **answer) __attribute__((warn_unused_result));
sl_status auth_key_list(PGconn **conn, const auth_ctx *caller, json_t **answer)
    __attribute__((warn_unused_result));
sl_status auth_key_delete(PGconn **conn, const auth_ctx *caller, const char *id)
    __attribute__((warn_unused_result));
/* Reloads the key table now; keys gone from it (revoked here or on another instance) fire
 * their watches. Reloads are serialised, so the table never goes back to an older state.
 * Returns 0 or -1. */
int auth_reload(PGconn **conn);

/* ---- revocation (issue 13) ----
 * Whatever a key holds open (a WebSocket, an SSE or NDJSON stream, a long poll) watches the
 * key: once a reload finds the key gone, `fn(arg)` is called once, on the reloading thread,
 * with the watch lock held, so it must not block nor call auth_watch_*; after
 * auth_watch_remove returns, fn is not running and will not run. A revocation made here
 * reloads at once; other instances hear of it by NOTIFY (channel sluice_keys) within
 * milliseconds, or by the one-second refresh when a notification was missed. */
typedef struct auth_watch auth_watch;
typedef void (*auth_revoked_fn)(void *arg);
/* Watches `who`'s key. NULL when the key is no longer valid (it was revoked since `who` was
 * authenticated): the caller refuses as unauthenticated. Any thread. */
auth_watch *auth_watch_add(const auth_ctx *who, auth_revoked_fn fn, void *arg)
    __attribute__((warn_unused_result));
/* Stops watching (NULL is allowed) and frees the watch. Any thread. */
void auth_watch_remove(auth_watch *w);

#endif
