/*
 * live_feed.c — a bounded queue of live events from the hub (see live_feed.h).
 */
#include "live_feed.h"
#include "mem.h"

#include <string.h>
#include <time.h>

/* The hub's thread, under the hub lock: queue, or fall behind when the ring is full. */
static void deliver(hub_sub *s, stored_event *e)
{
    live_feed *f = s->owner;
    bool woke = false;
    pthread_mutex_lock(&f->lock);
    if (f->len == f->cap) {
        f->overflowed = true;
        s->state = HUB_CATCHING_UP; /* the hub lock is held: no more deliveries */
        s->cursor = e->position - 1;
        pthread_cond_signal(&f->cond);
        woke = true;
    } else {
        f->ring[(f->head + f->len++) % f->cap] = stored_event_ref(e);
        if (f->len == 1) {
            pthread_cond_signal(&f->cond);
            woke = true;
        }
    }
    pthread_mutex_unlock(&f->lock);
    if (woke && f->wake) f->wake(f->wake_arg);
}

static void clear(live_feed *f)
{
    pthread_mutex_lock(&f->lock);
    while (f->len) {
        stored_event_unref(f->ring[f->head]);
        f->head = (f->head + 1) % f->cap;
        f->len--;
    }
    f->overflowed = false;
    pthread_mutex_unlock(&f->lock);
}

void live_feed_init(live_feed *f, size_t capacity, void (*wake)(void *arg), void *wake_arg)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->ring = xcalloc(capacity, sizeof *f->ring);
    f->cap = capacity;
    f->wake = wake;
    f->wake_arg = wake_arg;
}

void live_feed_dispose(live_feed *f)
{
    clear(f);
    free(f->ring);
    f->ring = NULL;
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
}

void live_feed_start(live_feed *f)
{
    memset(&f->sub, 0, sizeof f->sub);
    f->sub.filter.any_tenant = true;
    f->sub.state = HUB_CATCHING_UP;
    f->sub.deliver = deliver;
    f->sub.owner = f;
    clear(f);
    hub_add(&f->sub);
}

void live_feed_stop(live_feed *f)
{
    hub_remove(&f->sub);
    clear(f);
}

bool live_feed_try_go_live(live_feed *f, long long cursor)
{
    return hub_try_go_live(&f->sub, cursor);
}

void live_feed_fall_behind(live_feed *f, long long cursor)
{
    hub_fall_behind(&f->sub, cursor);
    clear(f);
}

int live_feed_take(live_feed *f, stored_event **out, int max, int wait_ms)
{
    pthread_mutex_lock(&f->lock);
    if (!f->len && !f->overflowed && wait_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)wait_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&f->cond, &f->lock, &ts);
    }
    int n = 0;
    if (f->overflowed) {
        n = -1;
    } else {
        while (f->len && n < max) {
            out[n++] = f->ring[f->head];
            f->head = (f->head + 1) % f->cap;
            f->len--;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return n;
}
