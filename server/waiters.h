/*
 * waiters.h — long polls: wait for the first event matching a filter.
 *
 * For request/response by correlation id (seed 001): a waiter is registered
 * with the hub first (so nothing that commits from then on can be missed),
 * then the store is asked for a match already committed up to the hub's head
 * at registration. Whichever finds a match first answers; a reaper thread
 * answers the ones whose deadline passed. No thread waits per request.
 */
#ifndef SLUICE_WAITERS_H
#define SLUICE_WAITERS_H

#include "hub.h"

#include <libpq-fe.h>

typedef struct waiter waiter;
/* Called exactly once: `json` is the matching event (borrowed), or NULL on timeout.
 * Runs on the tail, a pool or the reaper thread; must be quick. */
typedef void (*waiter_done_fn)(void *arg, const char *json, size_t len);

int waiters_start(void) __attribute__((warn_unused_result));
/* Answers every waiter (timeout) and stops the reaper. */
void waiters_stop(void);

/* Registers a waiter for events after `after` matching `filter` (moved in). Returns the
 * waiter (the caller holds one reference for waiter_check) and *head, the hub's head at
 * registration: matches at or below it must be looked up in the store. */
waiter *waiter_add(hub_filter *filter, long long after, int timeout_ms, waiter_done_fn done,
                   void *arg, long long *head);
/* Offers the store's first match (json borrowed), or none (NULL), then drops the caller's
 * reference. Must be called exactly once per waiter_add: until then a live match is held
 * back, since a stored match is earlier. */
void waiter_offer(waiter *w, const char *json, size_t len);
/* Answers now, as a timeout (json NULL), the waiter whose `arg` is `arg`, if it has not been
 * answered (a revoked key's long poll). Any thread. */
void waiter_cancel(void *arg);

#endif
