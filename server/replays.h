/*
 * replays.h — re-publish history into a Redis stream for a consumer to
 * rebuild from (API.md "Reading and replay").
 *
 * A replay is a row in PostgreSQL (filter, target, checkpoint); the runner
 * (leader only, its own advisory lock) pages through the matching range in
 * position order, adds each event to the target stream with the entry id
 * <position>-0 (so a resumed job never adds an event twice), and saves the
 * checkpoint after each page: a job survives restarts and failovers at
 * constant memory. Each job is paced (max_per_second, default 5,000) so a
 * replay never crowds out live publishing.
 */
#ifndef SLUICE_REPLAYS_H
#define SLUICE_REPLAYS_H

#include "config.h"
#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>

int replays_start(const sluice_config *cfg) __attribute__((warn_unused_result));
void replays_stop(void);

/* Pool thread. Each returns SL_OK with *answer (caller owns), SL_UNAVAILABLE,
 * SL_NOT_FOUND, SL_REFUSED (an invalid request: *answer is the problem) or, from create,
 * SL_LIMITED: the tenant runs SLUICE_TENANT_REPLAYS replays already (*answer is the
 * rate_limited problem). */
sl_status replays_create(PGconn **conn, const char *tenant, json_t *req, json_t **answer);
sl_status replays_get(PGconn **conn, const char *tenant, const char *id, json_t **answer);
sl_status replays_cancel(PGconn **conn, const char *tenant, const char *id, json_t **answer);

#endif
