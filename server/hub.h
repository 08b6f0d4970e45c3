/*
 * hub.h — in-process fan-out of committed events to live subscribers.
 *
 * The feed (tail.c) hands every committed event, in position order, to hub_publish; the
 * hub offers it to each live subscription whose filter matches (tenant always,
 * then streams, types with prefix.* wildcards, key, correlation id). A
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

#include "envelope.h"
#include "sevent.h"

#include <stdbool.h>

#define HUB_MAX_STREAMS 16
#define HUB_MAX_TYPES 32 /* as many as a read filter (store.h) takes */
/* A limit as a string literal, for messages that name it. */
#define HUB_STR(x) #x
#define HUB_XSTR(x) HUB_STR(x)

typedef struct hub_filter {
    char tenant[ENVELOPE_TENANT_MAX + 1];
    bool any_tenant;                /* every tenant's events (the Redis relay) */
    char *streams[HUB_MAX_STREAMS]; /* owned; none = any */
    int n_streams;
    char *types[HUB_MAX_TYPES]; /* owned; exact names, or prefixes ending in '.' */
    bool type_prefix[HUB_MAX_TYPES];
    int n_types;
    char *key;                    /* owned; NULL = any */
    char *correlation_id;         /* owned; NULL = any */
    char *user_id;                /* owned; NULL = any */
    long long since_ms, until_ms; /* commit time: since inclusive, until exclusive; 0 = any */
} hub_filter;

typedef enum { HUB_CATCHING_UP = 0, HUB_LIVE } hub_state;

typedef struct hub_sub hub_sub;
/* Called on the tail thread with the hub lock held; must not block or call the hub. */
typedef void (*hub_deliver_fn)(hub_sub *s, sevent *e);

struct hub_sub {
    hub_filter filter;
    hub_state state;  /* {hub lock} */
    long long cursor; /* {hub lock once added} last position delivered or read */
    hub_deliver_fn deliver;
    void *owner;          /* the subscriber's (a connection, a stream, a waiter) */
    hub_sub *prev, *next; /* {hub lock} */
};

/* Parses a type filter entry ("file.uploaded", "file.*", "*"); false if malformed. */
bool hub_filter_add_type(hub_filter *f, const char *t);
/* Adds a comma list of streams (types=false) or type entries (types=true), as a query
 * string carries them; NULL adds nothing. False if an entry is malformed or too many. */
bool hub_filter_add_list(hub_filter *f, const char *csv, bool types);
bool hub_filter_matches(const hub_filter *f, const sevent *e);
void hub_filter_dispose(hub_filter *f);

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
void hub_publish(sevent **events, int n);
/* True on the tail thread while hub_publish delivers (subscribers defer their wake-ups
 * to the batch's wakers). */
bool hub_in_publish(void);
/* Registers a function called after each published batch (e.g. wake the WebSocket loop). */
void hub_on_batch(void (*waker)(void));

#endif
