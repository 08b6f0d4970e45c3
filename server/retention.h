/*
 * retention.h — per-stream maximum age for the event store (seed 003:
 * "configurable message retention for audit trails").
 *
 * The leader (its own session advisory lock) deletes expired events of each
 * stream that has a max_age_ms, in batches of 1,000 so it never holds long
 * locks. The newest event of the whole log is never deleted: positions come
 * from max(position), so keeping it keeps positions strictly increasing.
 * Nothing still owed is deleted either: an event Redis has not got (at or above the
 * relay's checkpoint; with Redis away, nothing is deleted), one a projection of the
 * tenant that has not failed has not applied, one a running replay has not replayed.
 * A key's highest deleted version is kept in key_heads, so versions never go back.
 * Idempotency lasts as long as the event is retained: a re-sent id whose event was
 * deleted is stored again, as new.
 */
#ifndef SLUICE_RETENTION_H
#define SLUICE_RETENTION_H

#include "config.h"

int retention_start(const sluice_config *cfg) __attribute__((warn_unused_result));
void retention_stop(void);

#endif
