/*
 * live_feed.h — a leader's bounded in-memory queue of the events this instance's feed
 * publishes (every tenant), taken from the hub.
 *
 * The Redis relay and the webhook deliveries each hold one. Caught up, they take the
 * committed events from memory, serialized once (ARCHITECTURE: fan-out from memory after
 * commit); PostgreSQL is read (eventlog_read) only to catch up: on becoming leader, after
 * an outage, or when the queue overflowed because its consumer was slower than the
 * publishers. The seam is the hub's (hub_try_go_live): no gap, no duplicate.
 */
#ifndef SLUICE_LIVE_FEED_H
#define SLUICE_LIVE_FEED_H

#include "hub.h"
#include "stored_event.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct live_feed {
    hub_sub sub;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    stored_event **ring; /* {lock} */
    size_t cap, head, len; /* {lock} */
    bool overflowed;     /* {lock} the ring was full: the consumer catches up from the log */
    void (*wake)(void *arg); /* called when the queue stops being empty (tail thread, under
                                the hub lock: must not block); may be NULL */
    void *wake_arg;
} live_feed;

/* A feed of `capacity` events, not yet subscribed. `wake` may be NULL. */
void live_feed_init(live_feed *f, size_t capacity, void (*wake)(void *arg), void *wake_arg);
void live_feed_dispose(live_feed *f);
/* Subscribes (catching up from position 0) / unsubscribes and empties the queue. */
void live_feed_start(live_feed *f);
void live_feed_stop(live_feed *f);
/* Goes live when `cursor` (the last position read from the log) is the hub's head. */
bool live_feed_try_go_live(live_feed *f, long long cursor);
/* Leaves live mode after `cursor` (everything up to it was taken) and empties the queue. */
void live_feed_fall_behind(live_feed *f, long long cursor);
/* Takes up to `max` queued events (references passed to the caller) into `out`, waiting
 * up to `wait_ms` for the first. Returns how many, or -1 when the queue overflowed (it is
 * emptied: the caller falls behind and catches up from the log). */
int live_feed_take(live_feed *f, stored_event **out, int max, int wait_ms);

#endif
