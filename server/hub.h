/*
 * hub.h — in-process fan-out of committed events to live subscribers.
 *
 * The feed (tail.c) hands every committed event, in position order, to hub_publish; the
 * hub offers it to each live subscription whose filter matches (filter.h: tenant
 * always, then streams, types, key, …, `where` on the envelope's fields). A
 * subscription's deliver callback runs on the tail thread under the hub lock
 * and must not block: it queues (bounded) and wakes its consumer.
 *
 * Seamless catch-up (DESIGN): a subscription that starts from a position is
 * added in CATCHING_UP state, invisible to the hub, while its owner reads
 * history from PostgreSQL. When a read comes back short, hub_try_go_live()
 * checks under the hub lock that everything up to the hub's head has been
 * read; if so the subscription turns LIVE atomically and receives every later
 * event. Deliveries at or below the subscription's cursor are skipped, so the
 * seam has no gap and no duplicate.
 */
#ifndef SLUICE_HUB_H
#define SLUICE_HUB_H

#include "filter.h"
#include "stored_event.h"

#include <stdbool.h>

typedef enum { HUB_CATCHING_UP = 0, HUB_LIVE } hub_state;

typedef struct hub_sub hub_sub;
/* Called on the tail thread with the hub lock held; must not block or call the hub. */
typedef void (*hub_deliver_fn)(hub_sub *s, stored_event *e);

struct hub_sub {
    filter filter; /* owned: disposed by the subscription's owner */
    hub_state state;  /* {hub lock} */
    long long cursor; /* {hub lock once added} last position delivered or read */
    hub_deliver_fn deliver;
    void *owner;          /* the subscriber's (a connection, a stream, a waiter) */
    hub_sub *prev, *next; /* {hub lock} */
    hub_sub **list;       /* {hub lock} the list it is on: its tenant's, or every tenant's */
};

/* Adds `s` (owned by the caller, who must hub_remove it before freeing). A LIVE
 * subscription starts at the hub's head: s->cursor is set to it. Any thread. */
void hub_add(hub_sub *s);
void hub_remove(hub_sub *s);
/* CATCHING_UP → LIVE when s->cursor has reached the hub's head. Any thread. */
bool hub_try_go_live(hub_sub *s, long long cursor);
/* LIVE → CATCHING_UP: the hub stops delivering to `s`, whose owner has taken everything
 * up to `cursor` and reads the rest from the log before hub_try_go_live. Any thread. */
void hub_fall_behind(hub_sub *s, long long cursor);
/* The last position handed to the hub. */
long long hub_head(void);
/* Sets the head at start-up (before any subscriber). */
void hub_set_head(long long position);

/* Tail thread: offers `n` events (position order) to live subscriptions, then calls every
 * registered waker once. Takes no references from the caller. */
void hub_publish(stored_event **events, int n);
/* True on the tail thread while hub_publish delivers (subscribers defer their wake-ups
 * to the batch's wakers). */
bool hub_in_publish(void);
/* Registers a function called after each published batch (e.g. wake the WebSocket loop). */
void hub_add_batch_waker(void (*waker)(void));

#endif
