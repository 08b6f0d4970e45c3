/*
 * appender_decide.h — the appender's decisions, apart from its SQL (see appender.c).
 *
 * Within one commit the appender decides each request in C, in arrival order,
 * against a batch state: the client ids already stored (by an earlier commit or
 * earlier in this batch) with their content hash, and each key's current
 * version. appender_decide_request() turns every event of a request into stored (a new
 * position, the key's next version), replayed (same id, same content: the
 * stored outcome) or failed (duplicate_id, version_conflict); an atomic request
 * with a failure is undone, so the requests after it see none of it. This is
 * pure logic on the appender thread: declared here so it can be tested without
 * PostgreSQL (tests/unit/server/decide.c).
 */
#ifndef SLUICE_APPENDER_DECIDE_H
#define SLUICE_APPENDER_DECIDE_H

#include "appender.h"
#include "envelope.h"
#include "strmap.h"

#include <stdbool.h>
#include <stddef.h>

/* What the store (or this batch) already holds for a client id. */
typedef struct id_state {
    bool valid; /* false once undone */
    char hash[65];
    long long position, version;
    char *stream, *key; /* owned */
    char time[32];
} id_state;

/* A key's current version, as this batch sees it. */
typedef struct key_state {
    long long version;
} key_state;

typedef struct batch_ctx {
    strmap ids, keys;     /* "<tenant>\x1f<id>" → id_state, "<tenant>\x1f<stream>\x1f<key>"
                             → key_state; values owned by the arrays below */
    id_state **id_states; /* owned */
    size_t n_ids, cap_ids;
    key_state **key_states; /* owned */
    size_t n_keys, cap_keys;
} batch_ctx;

/* Map keys, written into the caller's buffer (ids ≤ 64, tenants ≤ 64, streams ≤ 128,
 * keys ≤ 256 characters of up to 4 bytes). */
#define MAP_KEY_MAX (ENVELOPE_TENANT_MAX + ENVELOPE_STREAM_MAX + 4 * ENVELOPE_KEY_MAX + 8)

void appender_batch_init(batch_ctx *b);
void appender_batch_dispose(batch_ctx *b);
/* A new zeroed state owned by `b` (the caller fills it and puts it in b->ids / b->keys). */
id_state *appender_new_id_state(batch_ctx *b);
key_state *appender_new_key_state(batch_ctx *b);
/* The map keys of b->ids and b->keys, written into `out`. */
const char *appender_id_map_key(char out[MAP_KEY_MAX], const char *tenant, const char *id);
const char *appender_key_map_key(char out[MAP_KEY_MAX], const char *tenant, const char *stream,
                                 const char *key);

/* Decides every event of `r` against the batch state, advancing *head by the events
 * stored and stamping them with `now`. Returns the events stored (0 for an atomic
 * request that failed: its changes to `b` and *head are undone). */
size_t appender_decide_request(batch_ctx *b, append_req *r, long long *head, const char *now);

#endif
