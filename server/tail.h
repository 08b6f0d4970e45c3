/*
 * tail.h — every instance follows the event log, whichever instance wrote it.
 *
 * One thread, one connection: LISTEN for the appenders' commit notification,
 * then read `position > last` in order and hand each event to the hub,
 * serialised once. Because positions are gap-free in commit order
 * (ARCHITECTURE.md), reading by position never skips an event that commits
 * later. A missed notification costs at most the one-second poll.
 */
#ifndef SLUICE_TAIL_H
#define SLUICE_TAIL_H

#define TAIL_CHANNEL "sluice_events"

/* Starts following from the current head. Returns 0 or -1 (logged). */
int tail_start(const char *database_url) __attribute__((warn_unused_result));
void tail_stop(void);
/* The SQL that reads events after $1 (a position) up to $2 (a limit), in order, returning
 * position, tenant_id, stream, type, key, correlation_id and the stored envelope as JSON.
 * Shared with the subscribers' catch-up reads. */
extern const char *const tail_select_sql;

#endif
