/*
 * hub.c — in-process fan-out (see hub.h). One mutex guards the subscription
 * lists and the head; deliveries are O(subscribers of the event's tenant) per event,
 * each a filter check and, on a match, a non-blocking enqueue by the subscriber.
 *
 * Subscriptions are kept per tenant (and one list for those that take every tenant's
 * events: the Redis relay's and the webhooks' live feeds), so an event is offered only
 * to its own tenant's: one tenant's 500 parked long polls cost another tenant's
 * publishes nothing under the hub lock (issue 13, bench/tenants).
 */
#include "hub.h"
#include "mem.h"
#include "strmap.h"

#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static hub_sub *any_tenant_subs; /* {lock} doubly linked: filters with any_tenant */
static strmap by_tenant;         /* {lock} tenant → hub_sub ** (a list head; kept until exit) */
static bool by_tenant_ready;     /* {lock} */
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

/* Lock held: the list of `tenant`'s subscriptions (created empty), or NULL when none was
 * ever made and `create` is false. */
static hub_sub **tenant_list_locked(const char *tenant, bool create)
{
    if (!by_tenant_ready) {
        strmap_init(&by_tenant);
        by_tenant_ready = true;
    }
    hub_sub **list = strmap_get(&by_tenant, tenant);
    if (!list && create) {
        list = xcalloc(1, sizeof *list);
        strmap_put(&by_tenant, tenant, list);
    }
    return list;
}

void hub_add(hub_sub *s)
{
    pthread_mutex_lock(&lock);
    if (s->state == HUB_LIVE) s->cursor = head;
    hub_sub **list =
        s->filter.any_tenant ? &any_tenant_subs : tenant_list_locked(s->filter.tenant, true);
    s->list = list;
    s->prev = NULL;
    s->next = *list;
    if (*list) (*list)->prev = s;
    *list = s;
    pthread_mutex_unlock(&lock);
}

void hub_remove(hub_sub *s)
{
    pthread_mutex_lock(&lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (s->list && *s->list == s)
        *s->list = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->list = NULL;
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

/* Lock held: `e` to every live subscription of `list` whose filter takes it. */
static void offer(hub_sub *list, stored_event *e, filter_memo *memo)
{
    for (hub_sub *s = list; s; s = s->next) {
        if (s->state != HUB_LIVE || e->position <= s->cursor) continue;
        if (!filter_matches_memo(&s->filter, e, memo)) continue;
        s->cursor = e->position;
        s->deliver(s, e);
    }
}

void hub_publish(stored_event **events, int n)
{
    publishing = true;
    pthread_mutex_lock(&lock);
    filter_memo memo = {0}; /* one `where` evaluation per distinct condition list and event */
    const char *tenant = NULL; /* the tenant whose list `own` is (runs of one tenant's events) */
    hub_sub *own = NULL;
    for (int i = 0; i < n; i++) {
        stored_event *e = events[i];
        if (e->position <= head) continue; /* already published */
        if (!tenant || strcmp(tenant, e->tenant) != 0) {
            tenant = e->tenant;
            hub_sub **list = tenant_list_locked(tenant, false);
            own = list ? *list : NULL;
        }
        offer(any_tenant_subs, e, &memo);
        offer(own, e, &memo);
        head = e->position;
    }
    atomic_store(&head_atomic, head);
    pthread_mutex_unlock(&lock);
    publishing = false;
    for (int i = 0; i < n_wakers; i++)
        wakers[i]();
}
