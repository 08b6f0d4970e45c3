/*
 * reads.h — where history is read: a PostgreSQL streaming replica
 * (SLUICE_READ_DATABASE_URL) when it has replayed what the read must see, else the primary.
 *
 * What a read must see: every position this instance knows is committed when the read
 * starts (hub_head()): a client reads its own writes, and whatever it was told about by
 * this instance's feed. The replica's head (its largest position) is compared with that;
 * a replica behind is looked at again every 5 ms for up to SLUICE_READ_WAIT_MS, then the
 * read goes to the primary. A replica that cannot be reached sends reads to the primary
 * too. Page reads, reads by id, entity histories and correlations run on the replica's own
 * workers (pool_submit_reads), so a lagging replica never holds the primary's; NDJSON
 * exports and WebSocket/SSE catch-ups connect to it for their life; replays and projection
 * catch-ups read their pages on a connection of their own (reads_connect_replica). Counted in
 * sluice_read_replica_total{outcome="replica|waited|primary"}.
 */
#ifndef SLUICE_READS_H
#define SLUICE_READS_H

#include "config.h"
#include "mem.h"
#include "pool.h"

#include <libpq-fe.h>
#include <stdbool.h>

/* Start-up: starts the replica's workers when a replica is configured. Returns 0 or -1. */
int reads_start(const sluice_config *cfg) __attribute__((warn_unused_result));
/* Whether a replica is configured. */
bool reads_replica(void);
/* Queues a read job (as pool_submit): on the replica's workers when there is one, the job
 * running there once the replica has what it must see, else on the primary's. */
int reads_submit(pool_fn fn, void *arg) __attribute__((warn_unused_result));
/* A connection for a long reader (`module` names it in logs): the replica's when it has
 * replayed `need` within the wait (*on_replica set), else the primary's; NULL when neither
 * can be reached. */
PGconn *reads_connect(long long need, const char *module, bool *on_replica);
/* A connection to the replica (NULL when there is none or it cannot be reached), for a
 * reader that checks what it has itself (reads_replica_head). */
PGconn *reads_connect_replica(const char *module);
/* The replica's largest position (0 when empty), or -1 when it did not answer. */
long long reads_replica_head(PGconn **conn);
/* Whether the replica behind *conn has replayed `need`, waiting up to SLUICE_READ_WAIT_MS.
 * Counts the outcome (false counts as primary: the caller goes there). */
bool reads_replica_has(PGconn **conn, long long need);
/* sluice_read_replica_total, when a replica is configured. */
void reads_render_metrics(buf *out);

#endif
