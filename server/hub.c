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
static void (*wakers[4])(void);
static _Thread_local bool publishing; /* this thread is inside hub_publish */

bool hub_in_publish(void)
{
    return publishing;
}
static int n_wakers;

bool hub_filter_add_type(hub_filter *f, const char *t)
{
    if (f->n_types >= HUB_MAX_TYPES) return false;
    size_t n = strlen(t);
    if (strcmp(t, "*") == 0) {
        f->types[f->n_types] = xstrdup("");
        f->type_prefix[f->n_types++] = true;
        return true;
    }
    bool prefix = n > 2 && strcmp(t + n - 2, ".*") == 0;
    char probe[ENVELOPE_TYPE_MAX + 8];
    if (n > ENVELOPE_TYPE_MAX) return false;
    snprintf(probe, sizeof probe, "%.*s%s", (int)(prefix ? n - 2 : n), t, prefix ? ".x" : "");
    if (!envelope_type_valid(probe)) return false;
    f->types[f->n_types] = prefix ? xstrndup(t, n - 1) : xstrdup(t); /* "file.*" → "file." */
    f->type_prefix[f->n_types++] = prefix;
    return true;
}

bool hub_filter_add_list(hub_filter *f, const char *csv, bool types)
{
    if (!csv) return true;
    char *copy = xstrdup(csv), *save = NULL;
    bool ok = true;
    for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
        if (types) {
            ok = hub_filter_add_type(f, t);
        } else {
            ok = f->n_streams < HUB_MAX_STREAMS && envelope_stream_valid(t);
            if (ok) f->streams[f->n_streams++] = xstrdup(t);
        }
    }
    free(copy);
    return ok;
}

void hub_filter_dispose(hub_filter *f)
{
    for (int i = 0; i < f->n_streams; i++)
        free(f->streams[i]);
    for (int i = 0; i < f->n_types; i++)
        free(f->types[i]);
    free(f->key);
    free(f->correlation_id);
    free(f->user_id);
    memset(f, 0, sizeof *f);
}

bool hub_filter_matches(const hub_filter *f, const sevent *e)
{
    if (!f->any_tenant && strcmp(f->tenant, e->tenant) != 0) return false;
    if (f->n_streams) {
        bool any = false;
        for (int i = 0; i < f->n_streams && !any; i++)
            any = strcmp(f->streams[i], e->stream) == 0;
        if (!any) return false;
    }
    if (f->n_types) {
        bool any = false;
        for (int i = 0; i < f->n_types && !any; i++)
            any = f->type_prefix[i] ? strncmp(e->type, f->types[i], strlen(f->types[i])) == 0
                                    : strcmp(e->type, f->types[i]) == 0;
        if (!any) return false;
    }
    if (f->key && (!e->key || strcmp(f->key, e->key) != 0)) return false;
    if (f->correlation_id &&
        (!e->correlation_id || strcmp(f->correlation_id, e->correlation_id) != 0))
        return false;
    if (f->user_id && (!e->user_id || strcmp(f->user_id, e->user_id) != 0)) return false;
    if (f->since_ms && e->time_ms < f->since_ms) return false;
    if (f->until_ms && e->time_ms >= f->until_ms) return false;
    return true;
}

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

void hub_on_batch(void (*waker)(void))
{
    if (n_wakers < 4) wakers[n_wakers++] = waker;
}

void hub_publish(sevent **events, int n)
{
    publishing = true;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n; i++) {
        sevent *e = events[i];
        if (e->position <= head) continue; /* already published */
        for (hub_sub *s = subs; s; s = s->next) {
            if (s->state != HUB_LIVE || e->position <= s->cursor) continue;
            if (!hub_filter_matches(&s->filter, e)) continue;
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
