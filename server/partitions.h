/*
 * partitions.h — the partitions of the event log (issue 17).
 *
 * `events` is range-partitioned by position (migration 015): partition events_p<lo> holds
 * positions [lo, lo + SLUICE_PARTITION_EVENTS). Why: an append then touches the indexes of
 * one partition of bounded size, however long history grows, and retention can drop a
 * whole partition (detach, drop) instead of deleting its rows one by one.
 *
 * Who calls what:
 *   - partitions_ensure: at start-up before the appender takes writes, by the retention
 *     leader every round (the next partition is added once the head is in the second half
 *     of the last one), and by the appender should an append ever outrun both (a tiny
 *     SLUICE_PARTITION_EVENTS): then it creates the partition and commits again rather
 *     than fail the publish. A partition is created empty, then attached, so the event
 *     log never takes a lock that would stop appends or reads (CREATE TABLE … PARTITION
 *     OF would).
 *   - partitions_drop_expired: the retention leader. A partition goes when it lies
 *     wholly below the head and below `safe` (what the relay, projections and replays
 *     all have), and every event in it has expired: each of its streams has a max_age_ms
 *     and its newest event there is older. Which streams a partition holds, and the time
 *     of each one's newest event, is read once per partition (one GROUP BY, only while
 *     some stream has a max age) and kept: a partition below the head takes no appends.
 *     Before the drop its keys' highest versions go to key_heads and its ids leave
 *     event_ids; the detach is CONCURRENTLY, so reads of it that are under way finish.
 */
#ifndef SLUICE_PARTITIONS_H
#define SLUICE_PARTITIONS_H

#include <libpq-fe.h>

/* Creates partitions until the last one ends more than `width` / 2 positions past `head`
 * (the next is added once the head enters the last one's second half).
 * Returns how many it created, or -1 (logged). Any thread, its own connection. */
int partitions_ensure(PGconn **conn, long long head, long long width, int timeout_ms);

/* Drops the oldest partition that may go (see above). `safe`: every position below it
 * has been relayed, applied and replayed. Returns 1 (dropped), 0 (nothing to drop) or -1
 * (failed, logged). The retention leader's thread only (it keeps a small cache). */
int partitions_drop_expired(PGconn **conn, long long safe, int timeout_ms);

/* Frees what partitions_drop_expired keeps (the retention thread, as it ends). */
void partitions_dispose(void);

#endif
