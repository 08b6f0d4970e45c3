/*
 * projections.h — live read models over the event log (API.md "Projections").
 *
 * A projection folds the events that match its filter into one JSON state per
 * key (a JSON Pointer into the stored envelope; none = one global state) with
 * a reducer: count, latest, merge, sum, min, max or set, of the value at
 * `path`. States live in PostgreSQL; the runner (leader only, its own session
 * advisory lock) applies events in batches, writing the states and the
 * checkpoint in one transaction, so each event is applied exactly once and a
 * crash resumes where the checkpoint says. The key and value are extracted by
 * PostgreSQL in the batch query, so catching up moves small values, not whole
 * envelopes. An event a reducer cannot apply becomes a dead letter with the
 * reason, and the projection goes on.
 */
#ifndef SLUICE_PROJECTIONS_H
#define SLUICE_PROJECTIONS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>

int projections_start(const char *database_url) __attribute__((warn_unused_result));
void projections_stop(void);

/* Checks a definition (borrowed). Returns NULL, or a problem document (caller owns). */
json_t *projection_check(json_t *def);

/* Pool-thread operations. Each returns 0 and *answer (caller owns), -1 store unavailable,
 * -2 not found, -3 conflict (create: the name exists). */
int projection_create(PGconn **conn, const char *tenant, json_t *def, json_t **answer);
int projection_list(PGconn **conn, const char *tenant, json_t **answer);
int projection_get(PGconn **conn, const char *tenant, const char *name, json_t **answer);
int projection_reset(PGconn **conn, const char *tenant, const char *name, json_t **answer);
int projection_delete(PGconn **conn, const char *tenant, const char *name);
/* One key's state ({"key","state","position"}), or a page of every key's when key is NULL
 * ({"states":[…],"next_after":K,"has_more":b}, keys after `after_key`). -2: no projection
 * or no such key. */
int projection_state(PGconn **conn, const char *tenant, const char *name, const char *key,
                     const char *after_key, int limit, json_t **answer);
/* The projection's checkpoint, or -1 (store), -2 (no projection). */
long long projection_position(PGconn **conn, const char *tenant, const char *name);

#endif
