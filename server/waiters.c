/*
 * waiters.c — long-poll waiters (see waiters.h).
 */
#include "waiters.h"
#include "mem.h"
#include "metrics.h"
#include "strmap.h"
#include "timeutil.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REAP_TICK_MS 20
/* Timeouts one tenant gets answered per turn of the reaper (every REAP_TICK_MS); the rest
 * wait for the next turns. Why: a tenant's long polls that started together time out
 * together, and each 204 is re-asked at once: 500 of them were a burst of some 500 requests
 * and stored lookups within a millisecond, every 20 s, on the cores that serve every other
 * tenant (bench/tenants: the other tenant's publish p99 was 3-4x its p99 alone in the runs
 * where the burst fell, 1.8-2.8x where it did not). Paced, 500 timeouts are answered over
 * 0.4 s, the last 0.4 s late; a tenant's long polls that time out alone are not delayed. */
#define REAP_TIMEOUTS_PER_TENANT 25

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

/* The reaper's turn: how many timeouts each tenant has been answered in it. */
typedef struct reap_turn {
    strmap answered; /* tenant -> count (the pointer's value); made at the first timeout */
    int paced;       /* timeouts put off to a later turn */
} reap_turn;

/* Whether `w`'s tenant may have one more timeout answered in this turn (counting it). */
static bool turn_admits(reap_turn *t, const waiter *w)
{
    const char *tenant = w->hs.filter.tenant;
    if (!t->answered.slots) strmap_init(&t->answered);
    uintptr_t n = (uintptr_t)strmap_get(&t->answered, tenant);
    if (n >= REAP_TIMEOUTS_PER_TENANT) {
        t->paced++;
        return false;
    }
    strmap_put(&t->answered, tenant, (void *)(n + 1));
    return true;
}

/* One turn; `stop` answers every waiter. Returns the timeouts put off to a later turn. */
static int reap(bool stop)
{
    int64_t now = time_mono_ms();
    waiter *done = NULL;
    reap_turn turn = {.paced = 0};
    pthread_mutex_lock(&lock);
    /* Oldest first (the list is newest first): past deadlines are answered in the order
     * they passed, a tenant's first REAP_TIMEOUTS_PER_TENANT in this turn. */
    waiter *rev = NULL;
    while (all) {
        waiter *w = all;
        all = w->next;
        w->next = rev;
        rev = w;
    }
    while (rev) {
        waiter *w = rev;
        rev = w->next;
        /* While the store lookup runs it will answer (it may find a stored match); only
         * stopping cuts it short. */
        if (stop ||
            (now >= w->deadline && atomic_load(&w->state) == W_WAITING && turn_admits(&turn, w))) {
            pthread_mutex_lock(&w->mu);
            (void)answer_locked(w, NULL, 0);
            pthread_mutex_unlock(&w->mu);
        }
        if (atomic_load(&w->state) == W_ANSWERED) {
            w->next = done;
            done = w;
        } else {
            w->next = all;
            all = w;
        }
    }
    pthread_mutex_unlock(&lock);
    strmap_dispose(&turn.answered, NULL); /* nothing to free when no timeout was due */
    if (turn.paced) metrics_long_polls_paced(turn.paced);
    while (done) {
        waiter *next = done->next;
        hub_remove(&done->hs);
        unref(done);
        done = next;
    }
    return turn.paced;
}

int waiters_reap(void)
{
    return reap(false);
}

static void *reaper_main(void *unused)
{
    (void)unused;
    for (;;) {
        bool stop = worker_stopping(&runner);
        (void)reap(stop);
        if (stop) break;
        usleep(REAP_TICK_MS * 1000);
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
