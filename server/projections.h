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
 * reason, and the projection goes on; reprocessing that dead letter reapplies the
 * event to the key's state as it is then (projections_reapply).
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

/* Reapplies the stored event at `position` to projection `name` (reprocessing one of its
 * dead letters, dead_letters.h): the event is folded into its key's current state, as the
 * runner would have. Runs in the caller's transaction (BEGIN … COMMIT on *conn), so the new
 * state commits together with what the caller records, and holds the projection's row lock
 * until then; it bumps the generation, so a runner batch that read its states before is
 * dropped and read again. `failed_at` (a timestamptz) is when the event failed: a projection
 * defined after it (deleted and made again) is another one. Returns
 *   SL_OK: reapplied (*why NULL), or the reducer refused it again (*why says why, caller
 *          frees; nothing was written);
 *   SL_CONFLICT: the projection's checkpoint is before the event (reset since): the runner
 *          will fold it itself;
 *   SL_NOT_FOUND: no such projection (or one defined after `failed_at`), or the event is no
 *          longer stored (or no longer matches the filter);
 *   SL_UNAVAILABLE. Pool thread. */
sl_status projections_reapply(PGconn **conn, const char *tenant, const char *name,
                              long long position, const char *failed_at, char **why)
    __attribute__((warn_unused_result));

#endif
