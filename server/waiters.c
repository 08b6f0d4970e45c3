/*
 * waiters.c — long-poll waiters (see waiters.h).
 */
#include "waiters.h"
#include "worker.h"
#include "mem.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* LOOKING: the store lookup of matches up to the registration head is running; a live
 * match meanwhile is held back (the earliest), since a stored one comes first.
 * WAITING: only live matches can answer. ANSWERED: done. */
enum { W_LOOKING = 0, W_WAITING = 1, W_ANSWERED = 2 };

struct waiter {
    hub_sub hs;         /* hs.owner = this */
    pthread_mutex_t mu; /* orders the store's answer and live deliveries */
    stored_event *held; /* {mu} the first live match while LOOKING */
    atomic_int state;
    atomic_int refs; /* the reaper's list + the caller's */
    long long after;
    int64_t deadline; /* monotonic ms */
    waiter_done_fn done;
    void *arg;
    waiter *next; /* {lock} */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static waiter *all; /* {lock} */
static worker_thread runner; /* the waiters thread */

static void unref(waiter *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1) return;
    filter_dispose(&w->hs.filter);
    stored_event_unref(w->held);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* Answers once, with w->mu held; returns whether this call did. */
static bool answer_locked(waiter *w, const char *json, size_t len)
{
    if (atomic_load(&w->state) == W_ANSWERED) return false;
    atomic_store(&w->state, W_ANSWERED);
    w->done(w->arg, json, len);
    return true;
}

/* Tail thread, hub lock held. */
static void deliver(hub_sub *hs, stored_event *e)
{
    waiter *w = hs->owner;
    if (e->position <= w->after) return;
    pthread_mutex_lock(&w->mu);
    if (atomic_load(&w->state) == W_LOOKING) {
        if (!w->held)
            w->held = stored_event_ref(e); /* events come in order: the first is earliest */
    } else {
        (void)answer_locked(w, e->json, e->json_len);
    }
    pthread_mutex_unlock(&w->mu);
}

static void *reaper_main(void *unused)
{
    (void)unused;
    for (;;) {
        bool stop = worker_stopping(&runner);
        int64_t now = time_mono_ms();
        waiter *done = NULL;
        pthread_mutex_lock(&lock);
        for (waiter **pp = &all; *pp;) {
            waiter *w = *pp;
            /* While the store lookup runs it will answer (it may find a stored match);
             * only stopping cuts it short. */
            if (stop || (now >= w->deadline && atomic_load(&w->state) == W_WAITING)) {
                pthread_mutex_lock(&w->mu);
                (void)answer_locked(w, NULL, 0);
                pthread_mutex_unlock(&w->mu);
            }
            if (atomic_load(&w->state) == W_ANSWERED) {
                *pp = w->next;
                w->next = done;
                done = w;
            } else {
                pp = &w->next;
            }
        }
        pthread_mutex_unlock(&lock);
        while (done) {
            waiter *next = done->next;
            hub_remove(&done->hs);
            unref(done);
            done = next;
        }
        if (stop) break;
        usleep(20 * 1000);
    }
    return NULL;
}

int waiters_start(void)
{
    return worker_start(&runner, reaper_main);
}

void waiters_stop(void)
{
    worker_stop(&runner);
}

waiter *waiters_add(filter *fl, long long after, int timeout_ms, waiter_done_fn done, void *arg)
{
    waiter *w = xcalloc(1, sizeof *w);
    w->hs.filter = *fl;
    memset(fl, 0, sizeof *fl);
    w->hs.state = HUB_LIVE;
    w->hs.deliver = deliver;
    w->hs.owner = w;
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->state, W_LOOKING);
    w->after = after;
    w->deadline = time_mono_ms() + timeout_ms;
    w->done = done;
    w->arg = arg;
    atomic_init(&w->refs, 2);
    hub_add(&w->hs); /* sets hs.cursor to the head: later events come live */
    pthread_mutex_lock(&lock);
    w->next = all;
    all = w;
    pthread_mutex_unlock(&lock);
    return w;
}

void waiters_cancel(void *arg)
{
    pthread_mutex_lock(&lock); /* a waiter on the list is alive: the list holds a reference */
    for (waiter *w = all; w; w = w->next) {
        if (w->arg != arg) continue;
        pthread_mutex_lock(&w->mu);
        (void)answer_locked(w, NULL, 0);
        pthread_mutex_unlock(&w->mu);
        break;
    }
    pthread_mutex_unlock(&lock);
}

void waiters_offer(waiter *w, const char *json, size_t len)
{
    pthread_mutex_lock(&w->mu);
    if (json)
        (void)answer_locked(w, json, len); /* stored matches precede live ones */
    else if (w->held)
        (void)answer_locked(w, w->held->json, w->held->json_len);
    else if (time_mono_ms() >= w->deadline)
        (void)answer_locked(w, NULL, 0); /* nothing stored, and no time left to wait */
    else if (atomic_load(&w->state) == W_LOOKING)
        atomic_store(&w->state, W_WAITING);
    pthread_mutex_unlock(&w->mu);
    unref(w);
}
