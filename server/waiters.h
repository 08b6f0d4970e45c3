/*
 * waiters.h — long polls: wait for the first event matching a filter.
 *
 * For request/response by correlation id (seed 001): a waiter is registered
 * with the hub first, so every event after the hub's head at registration comes
 * to it live; then the store is asked for the first match already committed,
 * with no upper bound. Everything up to that head was committed before the
 * lookup began, so nothing is missed. A stored match is never later than a live
 * one: positions commit in order, so a lookup that sees a live match's event
 * sees every earlier one too. So the store's match, when there is one, answers;
 * otherwise the first live match does; a reaper thread answers the ones whose
 * deadline passed, paced per tenant. No thread waits per request.
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

/* Registers a waiter for events after `after` matching `fl` (moved in). Returns the
 * waiter; the caller holds one reference, which waiters_offer drops. The caller then looks
 * up the store's first match after `after` (no upper bound needed, see above). */
waiter *waiters_add(filter *fl, long long after, int timeout_ms, waiter_done_fn done, void *arg);
/* Offers the store's first match (json borrowed), or none (NULL), then drops the caller's
 * reference. Must be called exactly once per waiters_add: until then a live match is held
 * back, since a stored match is not later. */
void waiters_offer(waiter *w, const char *json, size_t len);
/* One turn of the reaper (its thread runs one every 20 ms): answers, as timeouts, the
 * waiters whose deadline passed, oldest first and at most 25 of one tenant's per turn (the
 * rest in the next turns: see waiters.c). Returns how many were put off. Any thread. */
int waiters_reap(void);
/* Answers now, as a timeout (json NULL), the waiter whose `arg` is `arg`, if it has not been
 * answered (a revoked key's long poll). Any thread. */
void waiters_cancel(void *arg);

#endif
