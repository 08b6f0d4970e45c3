/*
 * session.h — one live subscriber (a WebSocket connection or an SSE stream):
 * its subscriptions, its bounded outgoing queue, and the catch-up readers that
 * replay history before a subscription goes live.
 *
 * Producers (the hub on the tail thread, catch-up threads, the owner's own
 * control messages) append under the session's lock; when the queue turns
 * non-empty (or overflows) they call the owner's wake function, and the owner's
 * thread pops until the queue is empty again. The queue is bounded in
 * messages and bytes: past either bound the session is marked overflowed and
 * the owner closes it, naming the last position it sent (the client resumes
 * from there). Events in the queue are shared references, not copies.
 */
#ifndef SLUICE_SESSION_H
#define SLUICE_SESSION_H

#include "auth.h"
#include "hub.h"
#include "stored_event.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define SESSION_SUB_ID_MAX 64
#define SESSION_MAX_SUBS 16

typedef struct session session;
/* Called by a producer with s->lock held, when the queue has just turned non-empty or a bound
 * was passed (any thread). Must not block or take s->lock. */
typedef void (*session_wake_fn)(session *s);

/* One queued message: an event for a subscription, or a control text. */
typedef struct session_item {
    stored_event *ev;                 /* shared reference, or NULL */
    char sub[SESSION_SUB_ID_MAX + 1]; /* with ev: the subscription id */
    char *text;                       /* without ev: owned JSON text */
} session_item;

typedef struct session_sub session_sub;

struct session {
    atomic_int refs;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* items arrived, room freed, or closed */
    session_item *q;        /* {lock} ring, grown on demand up to max_messages */
    size_t q_cap, q_start, q_len;
    size_t q_bytes; /* {lock} bytes queued (events' JSON, texts) */
    size_t max_messages, max_bytes;
    bool overflow;           /* {lock} a bound was passed: the owner must close */
    bool closed;             /* {lock} no more producing */
    long long last_sent;     /* {lock} set by the owner as it writes */
    long long last_taken_ms; /* {lock} when the owner last took items (monotonic ms) */
    int history_waiting;     /* {lock} catch-ups waiting for room for history */
    auth_ctx auth;           /* who subscribes (tenant) */
    session_wake_fn wake;    /* see session_wake_fn */
    void *owner;
    session_sub *subs; /* owner thread only */
    int n_subs;
};

/* Start-up: where catch-up reads come from, and how many may run at once. */
void session_init(const char *database_url, int max_catchups);
/* Start-up: how many history pages catch-ups read at once over every tenant (fair by
 * tenant; 0 = half the cores, at least one). SLUICE_CATCHUP_READERS. */
void session_set_catchup_readers(int readers);
/* Shutdown: closes the catch-ups' idle PostgreSQL connections. */
void session_stop(void);

/* A session with one reference (the owner's). */
session *session_new(size_t max_messages, size_t max_bytes, session_wake_fn wake, void *owner);
void session_ref(session *s);
void session_unref(session *s);

/* What session_subscribe did. */
typedef enum {
    SESSION_SUBSCRIBED = 0,
    SESSION_DUPLICATE_ID = -1,    /* a subscription with this id exists */
    SESSION_TOO_MANY = -2,        /* SESSION_MAX_SUBS subscriptions already */
    SESSION_CATCHUPS_FULL = -3,   /* SLUICE_MAX_CATCHUPS catch-ups are running (retry later) */
    SESSION_TENANT_CATCHUPS = -4, /* the session's tenant runs SLUICE_TENANT_CATCHUPS
                                     catch-ups already (retry later) */
} session_subscribe_rc;

/* Owner thread. Subscribes `id` with `filter` (moved in; tenant set from the session).
 * from_position < 0: live from now, that is after the last position this instance knows is
 * committed (its own last commit, or what its tail has read, whichever is later). When
 * SESSION_SUBSCRIBED, *start is the position after which events will come. */
session_subscribe_rc session_subscribe(session *s, const char *id, filter *fl,
                                       long long from_position, long long *start)
    __attribute__((warn_unused_result));
/* Owner thread. Returns 0, or -1 when no such subscription. */
int session_unsubscribe(session *s, const char *id) __attribute__((warn_unused_result));
/* Owner thread: stops every subscription; producers stop adding. Once it returns the wake
 * function is not called again, so the owner may go (the session may live on, referenced by a
 * catch-up that is stopping). */
void session_close(session *s);

/* A catch-up thread: queues historical event `e` (a new reference) for subscription `sub_id`,
 * waiting while history already holds half of the queue (messages or bytes), so the other
 * half stays free for live events. Returns true once queued; false when it must stop: *cancel
 * set, the session closed or overflowed, or the owner has taken nothing for `stall_ms` (then
 * the session is marked overflowed, and its owner closes it). */
bool session_push_history(session *s, const char *sub_id, stored_event *e,
                          const atomic_bool *cancel, int stall_ms)
    __attribute__((warn_unused_result));
/* Any thread: queues a control message (takes `text`). */
void session_push_text(session *s, char *text);
/* Owner thread: takes the next item (caller disposes with session_item_dispose).
 * Returns false when the queue is empty. */
bool session_pop(session *s, session_item *out);
/* Owner thread: takes up to `max` items in order under one lock, stopping once the taken
 * ones hold `max_bytes` (events' JSON and texts; the first item is always taken). Returns
 * how many; *more tells whether items remain. *overflow tells whether a bound was passed:
 * then nothing is taken, and the owner closes naming last_sent. */
size_t session_pop_batch(session *s, session_item *out, size_t max, size_t max_bytes,
                         bool *overflow, bool *more);
void session_item_dispose(session_item *it);

#endif
