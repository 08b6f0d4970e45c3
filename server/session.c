/*
 * session.c — subscriber sessions, their queues and catch-up (see session.h).
 *
 * Catch-up (DESIGN): a subscription with from_position is added to the hub in
 * CATCHING_UP state and a thread reads history in pages of positions
 * (cursor, H], H being the hub's head sampled before the read, filtering in C
 * with the hub's own matcher. When a page comes back short, everything up to H
 * has been queued, and hub_try_go_live(H) flips the subscription to LIVE if
 * nothing newer reached the hub meanwhile; otherwise it reads on. The hub skips
 * deliveries at or below the cursor, so the seam has no gap and no duplicate.
 * A catch-up waits for room in the queue, so history is paced by the reader.
 */
#include "session.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "tail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CATCHUP_PAGE 500
#define CATCHUP_TIMEOUT_MS 10000
#define CATCHUP_STALL_MS 30000 /* a reader that takes no message for this long overflows */

struct session_sub {
    hub_sub hs;                        /* hs.owner = this */
    char id[SESSION_SUB_ID_MAX + 1];
    size_t id_len;
    session *sess;                     /* borrowed: the session outlives its subscriptions */
    atomic_int refs;                   /* the session's list + a running catch-up */
    atomic_bool cancel;                /* the catch-up should stop */
    session_sub *next;                 /* owner thread only */
};

static char *db_url;
static atomic_int catchups_running;
static int catchups_max = 64;

void session_init(const char *database_url, int max_catchups)
{
    free(db_url);
    db_url = xstrdup(database_url);
    catchups_max = max_catchups;
}

/* ------------------------------------------------------------------ queue */

session *session_new(size_t max_messages, size_t max_bytes, session_wake_fn wake, void *owner)
{
    session *s = xcalloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    s->max_messages = max_messages;
    s->max_bytes = max_bytes;
    s->wake = wake;
    s->owner = owner;
    return s;
}

void session_ref(session *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void session_item_dispose(session_item *it)
{
    sevent_unref(it->ev);
    free(it->text);
    memset(it, 0, sizeof *it);
}

void session_unref(session *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (size_t i = 0; i < s->q_len; i++) session_item_dispose(&s->q[(s->q_start + i) % s->q_cap]);
    free(s->q);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    free(s);
}

/* Appends with the lock held, taking the item (it is zeroed). Returns false when the item
 * was not taken (the caller disposes of it): the session is closed, or a bound was passed
 * (then it is marked overflowed). */
static bool push_locked(session *s, session_item *it, size_t bytes)
{
    if (s->closed) return false; /* nobody will read it */
    if (s->q_len >= s->max_messages || s->q_bytes + bytes > s->max_bytes) {
        s->overflow = true;
        return false;
    }
    if (s->q_len == s->q_cap) {
        size_t cap = s->q_cap ? s->q_cap * 2 : 8;
        if (cap > s->max_messages) cap = s->max_messages;
        session_item *q = xcalloc(cap, sizeof *q);
        for (size_t i = 0; i < s->q_len; i++) q[i] = s->q[(s->q_start + i) % s->q_cap];
        free(s->q);
        s->q = q;
        s->q_cap = cap;
        s->q_start = 0;
    }
    s->q[(s->q_start + s->q_len) % s->q_cap] = *it;
    s->q_len++;
    s->q_bytes += bytes;
    memset(it, 0, sizeof *it);
    return true;
}

/* Lock held, after a push (or a failed one): when the queue has just turned non-empty, or a
 * bound was passed, tells the owner. A queue that already held items needs nothing: its owner
 * was told when it turned non-empty, and takes items until it is empty again. */
static void notify_locked(session *s, bool was_empty)
{
    if (!(was_empty && s->q_len > 0) && !s->overflow) return;
    pthread_cond_broadcast(&s->changed);
    s->wake(s);
}

void session_push_text(session *s, char *text)
{
    session_item it = {.text = text};
    pthread_mutex_lock(&s->lock);
    bool was_empty = s->q_len == 0;
    if (!push_locked(s, &it, strlen(text))) session_item_dispose(&it);
    notify_locked(s, was_empty);
    pthread_mutex_unlock(&s->lock);
}

/* Takes the head item with the lock held; returns its size (as the bounds count it). */
static size_t pop_locked(session *s, session_item *out)
{
    *out = s->q[s->q_start];
    memset(&s->q[s->q_start], 0, sizeof s->q[s->q_start]);
    s->q_start = (s->q_start + 1) % s->q_cap;
    s->q_len--;
    if (!out->ev) { /* texts count toward the byte bound too */
        size_t n = strlen(out->text);
        s->q_bytes -= n;
        return n;
    }
    s->q_bytes -= out->ev->json_len;
    s->last_sent = out->ev->position;
    return out->ev->json_len;
}

/* After popping, with the lock held: gives back a grown ring once idle, wakes producers. */
static void popped_locked(session *s)
{
    if (s->q_len == 0 && s->q_cap > 64) {
        free(s->q);
        s->q = NULL;
        s->q_cap = s->q_start = 0;
    }
    pthread_cond_broadcast(&s->changed);
}

bool session_pop(session *s, session_item *out)
{
    pthread_mutex_lock(&s->lock);
    bool any = s->q_len > 0;
    if (any) {
        (void)pop_locked(s, out);
        popped_locked(s);
    }
    pthread_mutex_unlock(&s->lock);
    return any;
}

size_t session_pop_batch(session *s, session_item *out, size_t max, size_t max_bytes,
                         bool *overflow, bool *more)
{
    size_t n = 0, bytes = 0;
    pthread_mutex_lock(&s->lock);
    *overflow = s->overflow; /* then nothing is taken: last_sent names what was written */
    while (!*overflow && n < max && s->q_len > 0 && (n == 0 || bytes < max_bytes))
        bytes += pop_locked(s, &out[n++]);
    *more = s->q_len > 0;
    if (n) popped_locked(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Tail thread, hub lock held: queue the event for this subscription. */
static void deliver(hub_sub *hs, sevent *e)
{
    session_sub *sub = hs->owner;
    session *s = sub->sess;
    session_item it = {.ev = sevent_ref(e)};
    memcpy(it.sub, sub->id, sub->id_len + 1);
    pthread_mutex_lock(&s->lock);
    bool was_empty = s->q_len == 0;
    if (!push_locked(s, &it, e->json_len)) session_item_dispose(&it); /* holds no lock */
    notify_locked(s, was_empty);
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------ catch-up */

static void sub_unref(session_sub *sub)
{
    if (atomic_fetch_sub(&sub->refs, 1) != 1) return;
    hub_filter_dispose(&sub->hs.filter);
    free(sub);
}

/* Queues one historical event, waiting for room. false: stop (cancelled, closed, stalled). */
static bool catchup_push(session_sub *sub, sevent *e)
{
    session *s = sub->sess;
    session_item it = {.ev = sevent_ref(e)};
    memcpy(it.sub, sub->id, sub->id_len + 1);
    bool ok = false, was_empty = false;
    pthread_mutex_lock(&s->lock);
    for (int waited = 0;;) {
        if (s->closed || s->overflow || atomic_load(&sub->cancel)) break;
        if (s->q_len + 1 < s->max_messages && s->q_bytes + e->json_len <= s->max_bytes) {
            was_empty = s->q_len == 0;
            ok = push_locked(s, &it, e->json_len);
            break;
        }
        if (waited >= CATCHUP_STALL_MS) {
            s->overflow = true; /* the reader has not taken a message for too long */
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->changed, &s->lock, &ts);
        waited += 100;
    }
    notify_locked(s, was_empty);
    pthread_mutex_unlock(&s->lock);
    if (!ok) session_item_dispose(&it);
    return ok;
}

static void *catchup_main(void *arg)
{
    session_sub *sub = arg;
    session *s = sub->sess;
    long long cursor = sub->hs.cursor;
    PGconn *conn = db_connect(db_url, "catchup");
    bool failed = conn == NULL;
    while (!failed && !atomic_load(&sub->cancel)) {
        long long head = hub_head();
        if (cursor >= head) {
            if (hub_try_go_live(&sub->hs, cursor)) break;
            continue;
        }
        char after[24], limit[16];
        snprintf(after, sizeof after, "%lld", cursor);
        snprintf(limit, sizeof limit, "%d", CATCHUP_PAGE);
        const char *p[] = {after, limit};
        PGresult *r = db_exec(&conn, tail_select_sql, 2, p, CATCHUP_TIMEOUT_MS);
        if (!db_ok(r)) {
            PQclear(r);
            failed = true;
            break;
        }
        int n = PQntuples(r);
        bool stop = false;
        for (int i = 0; i < n && !stop; i++) {
            long long pos = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            if (pos > head) { /* the hub has not reached it: it will come live */
                n = i;
                break;
            }
            sevent *e = sevent_new(pos, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                                   PQgetvalue(r, i, 3),
                                   PQgetisnull(r, i, 4) ? NULL : PQgetvalue(r, i, 4),
                                   PQgetvalue(r, i, 5), PQgetvalue(r, i, 6),
                                   (size_t)PQgetlength(r, i, 6));
            if (hub_filter_matches(&sub->hs.filter, e)) stop = !catchup_push(sub, e);
            sevent_unref(e);
            cursor = pos;
        }
        bool full = PQntuples(r) == CATCHUP_PAGE && n == CATCHUP_PAGE;
        PQclear(r);
        if (stop) break;
        if (!full) cursor = head; /* everything up to the sampled head has been read */
    }
    PQfinish(conn);
    if (failed && !atomic_load(&sub->cancel)) {
        char *msg = xasprintf("{\"op\":\"error\",\"id\":\"%s\",\"code\":\"store_unavailable\","
                              "\"message\":\"history could not be read; subscribe again\"}",
                              sub->id);
        session_push_text(s, msg);
    }
    atomic_fetch_sub(&catchups_running, 1);
    sub_unref(sub);
    session_unref(s);
    return NULL;
}

/* ------------------------------------------------------------------ subscriptions */

int session_subscribe(session *s, const char *id, hub_filter *filter, long long from_position,
                      long long *start)
{
    for (session_sub *x = s->subs; x; x = x->next)
        if (strcmp(x->id, id) == 0) return -1;
    if (s->n_subs >= SESSION_MAX_SUBS) return -2;
    bool catchup = from_position >= 0 && from_position < hub_head();
    if (catchup && atomic_fetch_add(&catchups_running, 1) >= catchups_max) {
        atomic_fetch_sub(&catchups_running, 1);
        return -3;
    }
    session_sub *sub = xcalloc(1, sizeof *sub);
    snprintf(sub->id, sizeof sub->id, "%s", id);
    sub->id_len = strlen(sub->id);
    sub->sess = s;
    sub->hs.filter = *filter;
    memset(filter, 0, sizeof *filter);
    snprintf(sub->hs.filter.tenant, sizeof sub->hs.filter.tenant, "%s", s->auth.tenant);
    sub->hs.deliver = deliver;
    sub->hs.owner = sub;
    atomic_init(&sub->refs, 1);
    if (from_position < 0) {
        sub->hs.state = HUB_LIVE; /* hub_add sets the cursor to the head */
    } else if (!catchup) {
        sub->hs.state = HUB_LIVE;
    } else {
        sub->hs.state = HUB_CATCHING_UP;
    }
    sub->hs.cursor = from_position < 0 ? 0 : from_position;
    if (from_position >= 0 && !catchup) {
        /* At or past the head: live, skipping what is at or below from_position. */
        hub_add(&sub->hs);
        (void)hub_try_go_live(&sub->hs, from_position);
    } else {
        hub_add(&sub->hs);
    }
    *start = from_position < 0 ? sub->hs.cursor : from_position;
    sub->next = s->subs;
    s->subs = sub;
    s->n_subs++;
    if (catchup) {
        atomic_fetch_add(&sub->refs, 1);
        session_ref(s);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, catchup_main, sub) != 0) {
            atomic_fetch_sub(&catchups_running, 1);
            sub_unref(sub);
            session_unref(s);
            log_error("session", "cannot start a catch-up thread", NULL);
        }
        pthread_attr_destroy(&attr);
    }
    return 0;
}

static void stop_sub(session_sub *sub)
{
    hub_remove(&sub->hs);
    atomic_store(&sub->cancel, true);
    sub_unref(sub);
}

int session_unsubscribe(session *s, const char *id)
{
    for (session_sub **pp = &s->subs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) != 0) continue;
        session_sub *sub = *pp;
        *pp = sub->next;
        s->n_subs--;
        stop_sub(sub);
        return 0;
    }
    return -1;
}

void session_close(session *s)
{
    while (s->subs) {
        session_sub *sub = s->subs;
        s->subs = sub->next;
        stop_sub(sub);
    }
    s->n_subs = 0;
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}
