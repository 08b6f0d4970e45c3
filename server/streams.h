/*
 * streams.h — what a tenant's streams hold: counts, positions, the Redis side,
 * and retention settings (API.md "Reading and replay").
 *
 * Counts are computed on demand from the (tenant_id, stream, position) index,
 * which keeps the publish path free of bookkeeping; an operator's listing
 * costs an index-only scan, not a write on every commit.
 */
#ifndef SLUICE_STREAMS_H
#define SLUICE_STREAMS_H

#include "config.h"
#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>

/* {"streams":[…]} for a tenant in *answer (caller owns): SL_OK or SL_UNAVAILABLE. */
sl_status streams_list(PGconn **conn, int timeout_ms, const sluice_config *cfg, const char *tenant,
                       json_t **answer);
/* One stream with its Redis length and consumer groups in *answer (caller owns): SL_OK,
 * SL_NOT_FOUND (the stream has no events and no settings) or SL_UNAVAILABLE. */
sl_status streams_get(PGconn **conn, int timeout_ms, const sluice_config *cfg, const char *tenant,
                      const char *stream, json_t **answer);
/* Sets retention from {"retention":{"max_age_ms":N|null}}: SL_OK with the stream's settings
 * in *answer, SL_REFUSED with the problem in *answer (caller owns either), or
 * SL_UNAVAILABLE. */
sl_status streams_set(PGconn **conn, int timeout_ms, const char *tenant, const char *stream,
                      json_t *req, json_t **answer);

/* The Redis stream holding a tenant's stream (caller frees). */
char *streams_redis_name(const sluice_config *cfg, const char *tenant, const char *stream);
/* {"length":N,"groups":[…]} from Redis, or null when Redis cannot be reached. Caller owns. */
json_t *streams_redis_info(const sluice_config *cfg, const char *tenant, const char *stream);

#endif
