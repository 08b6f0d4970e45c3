/*
 * retention.h — per-stream maximum age for the event store (seed 003:
 * "configurable message retention for audit trails").
 *
 * The leader (its own session advisory lock) deletes expired events of each
 * stream that has a max_age_ms, in batches of 1,000 so it never holds long
 * locks. The newest event of the whole log is never deleted: positions come
 * from max(position), so keeping it keeps positions strictly increasing.
 */
#ifndef SLUICE_RETENTION_H
#define SLUICE_RETENTION_H

int retention_start(const char *database_url) __attribute__((warn_unused_result));
void retention_stop(void);

#endif
