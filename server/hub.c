/*
 * hub.c — in-process fan-out (see hub.h). One mutex guards the subscription
 * list and the head; deliveries are O(subscribers) per event, each a filter
 * check and, on a match, a non-blocking enqueue by the subscriber.
 */
#include "hub.h"
#include "mem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static hub_sub *subs;            /* {lock} doubly linked */
static long long head;           /* {lock} */
static atomic_llong head_atomic; /* readable without the lock */
/* Wakers are registered at start-up by Sluice's own modules (the WebSocket loop, the
 * long-poll waiters, …): a fixed table, and one too many is a programming error. */
#define HUB_MAX_WAKERS 8
static void (*wakers[HUB_MAX_WAKERS])(void);
static _Thread_local bool publishing; /* this thread is inside hub_publish */

bool hub_in_publish(void)
{
    return publishing;
}
static int n_wakers;

void hub_add(hub_sub *s)
{
    pthread_mutex_lock(&lock);
    if (s->state == HUB_LIVE) s->cursor = head;
    s->prev = NULL;
    s->next = subs;
    if (subs) subs->prev = s;
    subs = s;
    pthread_mutex_unlock(&lock);
}

void hub_remove(hub_sub *s)
{
    pthread_mutex_lock(&lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (subs == s)
        subs = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    pthread_mutex_unlock(&lock);
}

bool hub_try_go_live(hub_sub *s, long long cursor)
{
    pthread_mutex_lock(&lock);
    if (cursor > s->cursor) s->cursor = cursor;
    bool live = s->cursor >= head;
    if (live) s->state = HUB_LIVE;
    pthread_mutex_unlock(&lock);
    return live;
}

void hub_fall_behind(hub_sub *s, long long cursor)
{
    pthread_mutex_lock(&lock);
    s->state = HUB_CATCHING_UP;
    s->cursor = cursor;
    pthread_mutex_unlock(&lock);
}

long long hub_head(void)
{
    return atomic_load(&head_atomic);
}

void hub_set_head(long long position)
{
    pthread_mutex_lock(&lock);
    if (position > head) head = position;
    atomic_store(&head_atomic, head);
    pthread_mutex_unlock(&lock);
}

void hub_add_batch_waker(void (*waker)(void))
{
    if (n_wakers == HUB_MAX_WAKERS) {
        fprintf(stderr, "sluice: hub: more than %d batch wakers registered\n", HUB_MAX_WAKERS);
        abort();
    }
    wakers[n_wakers++] = waker;
}

void hub_publish(stored_event **events, int n)
{
    publishing = true;
    pthread_mutex_lock(&lock);
    filter_memo memo = {0}; /* one `where` evaluation per distinct condition list and event */
    for (int i = 0; i < n; i++) {
        stored_event *e = events[i];
        if (e->position <= head) continue; /* already published */
        for (hub_sub *s = subs; s; s = s->next) {
            if (s->state != HUB_LIVE || e->position <= s->cursor) continue;
            if (!filter_matches_memo(&s->filter, e, &memo)) continue;
            s->cursor = e->position;
            s->deliver(s, e);
        }
        head = e->position;
    }
    atomic_store(&head_atomic, head);
    pthread_mutex_unlock(&lock);
    publishing = false;
    for (int i = 0; i < n_wakers; i++)
        wakers[i]();
}
