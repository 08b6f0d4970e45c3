/*
 * tail.h — the feed: every committed event, whichever instance wrote it, reaches
 * the hub once and in position order.
 *
 * One thread. Its own instance's commits arrive from memory: after COMMIT the
 * appender hands the events it stored (tail_committed), already serialised. The
 * log is read from PostgreSQL (eventlog_read) only for what this instance did not
 * commit: another instance's commits (its NOTIFY wakes the LISTEN connection), a gap
 * before a local batch (the positions between belong to another instance, committed
 * first under the event-log lock), a local batch dropped because the queue was full,
 * and a once-a-second check for a missed notification. The hub skips positions it
 * has already published, so an event read from PostgreSQL and then handed over from
 * memory (or the reverse) is published once.
 */
#ifndef SLUICE_TAIL_H
#define SLUICE_TAIL_H

#include "stored_event.h"

/* Starts following from the current head. Returns 0 or -1 (logged). */
int tail_start(const char *database_url) __attribute__((warn_unused_result));
void tail_stop(void);

/* The appender, after COMMIT: `n` events of consecutive positions, in order. Takes the
 * caller's reference of each and the array (malloc'd). Never blocks: with the queue
 * full, the batch is let go and read back from PostgreSQL instead. Any thread. */
void tail_committed(stored_event **events, int n);

#endif
