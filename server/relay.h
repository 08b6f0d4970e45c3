/*
 * relay.h — PostgreSQL → Redis Streams, exactly once, on the leader only.
 *
 * One instance at a time holds the relay's session advisory lock (the
 * leader); it adds every committed event, in position order, to the Redis
 * stream <prefix><stream> (tenant `default`) or <prefix><tenant>:<stream>,
 * with the explicit entry id <position>-0 and the fields id, type, position,
 * event. Redis refuses an id not greater than the stream's last, so a relay
 * that crashed and sends again is harmless; the checkpoint
 * (<prefix>relay:position, written in the same pipeline, or on a Redis Cluster
 * once every node took its entries) only saves work. If
 * Redis is down, events wait in PostgreSQL and publishing is unaffected; when
 * the leader dies its lock frees and another instance takes over.
 */
#ifndef SLUICE_RELAY_H
#define SLUICE_RELAY_H

#include "config.h"

#include <stdbool.h>

int relay_start(const sluice_config *cfg) __attribute__((warn_unused_result));
/* Finishes the batch in flight, releases leadership and stops. */
void relay_stop(void);
/* Whether this instance is the relay leader now. */
bool relay_is_leader(void);
/* Asks Redis (a short-lived connection) how far the relay has come: returns the last
 * relayed position, or -1 when Redis cannot be reached. Any thread; bounded by timeout_ms. */
long long relay_probe_checkpoint(const sluice_config *cfg, int timeout_ms);
/* The Redis key holding the last relayed position (caller frees). */
char *relay_checkpoint_key(const sluice_config *cfg);

#endif
