/*
 * groups.h — consumer groups on Sluice's Redis streams, their retry policy,
 * and the sweeper that turns failed deliveries into retries and dead letters.
 *
 * Redis Streams has no dead-letter queue; Sluice builds one from the group's
 * pending entries list (PEL), so everything stays in Redis's own semantics:
 *   - Workers read new messages with XREADGROUP … >, and their redeliveries
 *     with XREADGROUP … 0 (their own PEL); they XACK what they processed.
 *   - A delivery fails when it is nacked (POST …/nack) or not acknowledged
 *     within ack_timeout_ms. The sweeper then parks the entry with the
 *     consumer "sluice-retry" (XCLAIM JUSTID: not visible to any worker)
 *     for the backoff of its delivery count (base·2^(n-1), capped, jittered),
 *     then hands it back (XCLAIM) to the most recently active worker.
 *   - After max_deliveries, or a nack with retryable=false, the entry is
 *     parked with "sluice-dead" — delivered no more — and a dead-letter row
 *     records the event, group, consumer, count and every error.
 *   - Reprocessing claims it back to a worker (same entry, same event id, only
 *     that group); discarding acknowledges it.
 * The sweeper runs on the leader only (its own advisory lock); every move of an
 * entry is a compare-and-swap in one Redis script (still the same owner and
 * delivery count?), and every step is idempotent, so a nack racing the sweeper
 * or a failover mid-sweep loses nothing and dead-letters nothing twice.
 */
#ifndef SLUICE_GROUPS_H
#define SLUICE_GROUPS_H

#include "config.h"
#include "mem.h"
#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>

#define GROUPS_RETRY_CONSUMER "sluice-retry"
#define GROUPS_DEAD_CONSUMER "sluice-dead"

int groups_start(const sluice_config *cfg) __attribute__((warn_unused_result));
void groups_stop(void);

/* Pool thread. Each returns SL_OK with *answer (caller owns; none for delete),
 * SL_UNAVAILABLE (PostgreSQL or Redis), SL_NOT_FOUND, SL_CONFLICT (create: the group exists)
 * or SL_REFUSED (*answer is the problem). `stream` is a valid stream name
 * (envelope_stream_valid); a request body `req` has passed its request schema (reqschema.h:
 * REQSCHEMA_GROUP_CREATE, REQSCHEMA_GROUP_NACK). groups_create creates the Redis group
 * (XGROUP CREATE … MKSTREAM), then stores its policy. */
sl_status groups_create(PGconn **conn, const char *tenant, const char *stream, json_t *req,
                        json_t **answer);
sl_status groups_list(PGconn **conn, const char *tenant, const char *stream, json_t **answer);
sl_status groups_delete(PGconn **conn, const char *tenant, const char *stream, const char *name);
sl_status groups_nack(PGconn **conn, const char *tenant, const char *stream, const char *group,
                      json_t *req, json_t **answer);

/* Claims entry `position` of a group's stream to its most recently active worker with a
 * fresh delivery count (reprocessing a dead letter). SL_OK, SL_UNAVAILABLE (Redis down) or
 * SL_NOT_FOUND (not pending). */
sl_status groups_redeliver(const char *tenant, const char *stream, const char *group,
                           long long position);
/* Acknowledges entry `position` in the group (discarding a dead letter). SL_OK or
 * SL_UNAVAILABLE. */
sl_status groups_ack(const char *tenant, const char *stream, const char *group, long long position);

/* One consumer group's gauges as Redis has them now; -1 where Redis did not answer. */
typedef struct group_gauges {
    char *tenant, *stream, *name; /* owned */
    long long pending;            /* delivered, not acknowledged (parked entries included) */
    long long lag;                /* in the stream, not delivered to the group yet */
    long long retrying;           /* parked under sluice-retry, waiting out their backoff */
    long long dead;               /* parked under sluice-dead */
    long long consumers;          /* workers (Sluice's own parking consumers excluded) */
} group_gauges;

/* The gauges of every consumer group (admin-created names, at most 500 groups, ordered by
 * tenant, stream and name) in *out: returns how many, or -1 when PostgreSQL failed (*out is
 * then NULL). Free with groups_gauges_free. Any instance; one Redis round trip per group and
 * gauge. metrics.c writes them as /metrics text. */
int groups_gauges(PGconn **conn, group_gauges **out);
void groups_gauges_free(group_gauges *gauges, int n);

#endif
