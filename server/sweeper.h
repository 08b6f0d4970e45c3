/*
 * sweeper.h — the leader's consumer-group sweeper: every failed delivery ends.
 *
 * Every 200 ms, for every group (deliveries.h says where its messages stand):
 *   1. a group Redis lost is recreated at its acknowledged floor (groups_restore);
 *   2. deliveries not acknowledged within ack_timeout_ms (or their extended
 *      deadline) fail: parked for the backoff of their attempt, or dead-lettered
 *      once they have had max_deliveries — a hand-back a worker never re-read
 *      counts as a delivery;
 *   3. messages read more than max_deliveries times at all (a Redis worker that
 *      re-reads its pending list, which resets the ack timer at each read) are
 *      dead-lettered, scanning the pending list a page per sweep;
 *   4. parked messages whose retry is due are handed back to the most recently
 *      active Redis worker (consumer-API consumers take theirs when they fetch);
 *   5. dead letters whose row a dying leader did not write get it;
 *   6. reprocessed dead letters that were acknowledged are resolved;
 *   7. the group's acknowledged floor is stored (at most once a second);
 *   8. hash fields of entries a Redis worker acknowledged are forgotten.
 * It runs on the leader only (its own advisory lock); every move is a
 * compare-and-swap (deliveries.h), so a failover in the middle of a sweep
 * dead-letters nothing twice.
 */
#ifndef SLUICE_SWEEPER_H
#define SLUICE_SWEEPER_H

#include "config.h"

int sweeper_start(const sluice_config *cfg) __attribute__((warn_unused_result));
void sweeper_stop(void);

#endif
