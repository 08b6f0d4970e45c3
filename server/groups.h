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

#include <jansson.h>
#include <libpq-fe.h>

#define GROUPS_RETRY_CONSUMER "sluice-retry"
#define GROUPS_DEAD_CONSUMER "sluice-dead"

int groups_start(const sluice_config *cfg) __attribute__((warn_unused_result));
void groups_stop(void);

/* Pool thread. Each returns 0 with *answer (caller owns; none for delete), -1 store
 * unavailable (PostgreSQL or Redis), -2 not found, -3 conflict, -4 invalid (*answer is the
 * problem). */
int group_create(PGconn **conn, const char *tenant, const char *stream, json_t *req,
                 json_t **answer);
int group_list(PGconn **conn, const char *tenant, const char *stream, json_t **answer);
int group_delete(PGconn **conn, const char *tenant, const char *stream, const char *name);
int group_nack(PGconn **conn, const char *tenant, const char *stream, const char *group,
               json_t *req, json_t **answer);

/* Claims entry `position` of a group's stream to its most recently active worker with a
 * fresh delivery count (reprocessing a dead letter). 0, -1 Redis down, -2 not pending. */
int group_redeliver(const char *tenant, const char *stream, const char *group, long long position);
/* Acknowledges entry `position` in the group (discarding a dead letter). 0 or -1. */
int group_ack(const char *tenant, const char *stream, const char *group, long long position);

/* Appends the consumer-group gauges (pending, lag, retrying, dead, consumers per group,
 * labelled tenant/stream/group — admin-created names, at most 500 groups) in the
 * Prometheus text format. Any instance; one Redis round trip per group and gauge. */
void groups_metrics(PGconn **conn, buf *out);

#endif
