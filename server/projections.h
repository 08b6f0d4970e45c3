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

#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>

int projections_start(const char *database_url) __attribute__((warn_unused_result));
void projections_stop(void);

/* Checks a definition (borrowed). Returns NULL, or a problem document (caller owns). */
json_t *projections_check(json_t *def);

/* Pool-thread operations. Each returns SL_OK and *answer (caller owns; none for delete),
 * SL_UNAVAILABLE, SL_NOT_FOUND or SL_CONFLICT (create: the name exists). */
sl_status projections_create(PGconn **conn, const char *tenant, json_t *def, json_t **answer);
sl_status projections_list(PGconn **conn, const char *tenant, json_t **answer);
sl_status projections_get(PGconn **conn, const char *tenant, const char *name, json_t **answer);
sl_status projections_reset(PGconn **conn, const char *tenant, const char *name, json_t **answer);
sl_status projections_delete(PGconn **conn, const char *tenant, const char *name);
/* One key's state ({"key","state","position"}), or a page of every key's when key is NULL
 * ({"states":[…],"next_after":K,"has_more":b}, keys after `after_key`). SL_NOT_FOUND: no
 * projection or no such key. */
sl_status projections_state(PGconn **conn, const char *tenant, const char *name, const char *key,
                            const char *after_key, int limit, json_t **answer);
/* The projection's checkpoint in *position: SL_OK, SL_UNAVAILABLE or SL_NOT_FOUND (no
 * projection). */
sl_status projections_position(PGconn **conn, const char *tenant, const char *name,
                               long long *position);

#endif
