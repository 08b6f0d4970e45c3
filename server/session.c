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
 * History takes at most half of the queue (either bound, HISTORY_SHARE): the
 * other half is always free for live events — the connection's other
 * subscriptions' while this one catches up, and its own once it goes live, which
 * it does with the queue at most half full. A queue filled to its bound by
 * history would overflow at the first live batch after the seam, cutting a
 * reader that was reading, only slowly (issue 8). So only two things cut a
 * catching-up reader: live events outrunning it by half a queue, as for any live
 * subscriber, or taking nothing for CATCHUP_STALL_MS.
 *
 * Live subscriptions (from_position absent) start after the last position this
 * instance knows is committed: its own last commit (every 201 it has answered)
 * or the hub's head, whichever is later. A subscription made after a 201 from
 * this instance therefore never receives that event, even while the tail has not
 * read it yet. Another instance's commits are known once this one's tail has
 * read them.
 */
#include "session.h"
#include "appender.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "reads.h"
#include "eventlog.h"
#include "strmap.h"
#include "tenants.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CATCHUP_PAGE 500
#define CATCHUP_TIMEOUT_MS 10000
#define CATCHUP_STALL_MS 30000 /* a reader that takes no message for this long overflows */
#define HISTORY_SHARE 2        /* history fills at most 1/HISTORY_SHARE of the queue */
#define CATCHUP_NICE 10        /* catch-up threads' nice value (setpriority, per thread) */

struct session_sub {
    hub_sub hs; /* hs.owner = this */
    char id[SESSION_SUB_ID_MAX + 1];
    size_t id_len;
    session *sess;      /* borrowed: the session outlives its subscriptions */
    atomic_int refs;    /* the session's list + a running catch-up */
    atomic_bool cancel; /* the catch-up should stop */
    session_sub *next;  /* owner thread only */
};

static char *db_url;
static atomic_int catchups_running;
static int catchups_max = 64;

/* Read turns (issue 13): catch-ups read history pages at most `turns_max` at a time over
 * every tenant, a freed turn going to the waiting tenant served longest ago. A catch-up is a
 * PostgreSQL scan of what its filter chooses (eventlog_read_matching: the filter's SQL, so
 * an index finds the tenant's, stream's or type's events) plus the decoding of every row
 * it returns: 64 at once (one tenant's whole cap) take
 * every core of a small machine, and every other tenant's publishes wait behind them. With
 * turns, however many catch-ups a tenant runs, history is read at the pace of a few
 * readers, and another tenant's catch-up gets every other turn. A turn covers one page's
 * read only: the catch-up gives it back before it queues the page (which may wait for its
 * slow client). */
typedef struct read_turn {
    const char *tenant;
    bool granted; /* {turn_lock} */
    pthread_cond_t cv;
    struct read_turn *next; /* {turn_lock} FIFO among equals */
} read_turn;
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static read_turn *turn_queue; /* {turn_lock} */
static int turns_running;     /* {turn_lock} */
static int turns_max = 1;
static long long turn_clock; /* {turn_lock} */
static strmap turn_served;   /* {turn_lock} tenant → long long *: when it last got a turn */
static bool turn_ready;      /* {turn_lock} */

/* Catch-up threads are kept for the next catch-up (CATCHUP_IDLE_MS) instead of ending with
 * theirs. Why: a client that subscribes from a position again and again (bench/tenants'
 * hog: some 120 catch-ups a second) made Sluice create and end a thread for each, and an
 * ending thread's stack is given back with madvise, whose TLB shootdown interrupts every
 * core: perf put madvise, page faults, clone and exit at a fifth of the catch-up threads'
 * CPU. An idle worker waits on its own condition variable for its next subscription. */
#define CATCHUP_IDLE_MS 10000
typedef struct catchup_worker {
    pthread_cond_t cv;
    session_sub *job; /* {workers_lock} the next catch-up to run, handed over */
    struct catchup_worker *next;
} catchup_worker;
static pthread_mutex_t workers_lock = PTHREAD_MUTEX_INITIALIZER;
static catchup_worker *idle_workers; /* {workers_lock} waiting for a job, newest first */
static bool workers_stopping;        /* {workers_lock} */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void session_init(const char *database_url, int max_catchups)
{
    free(db_url);
    db_url = xstrdup(database_url);
    catchups_max = max_catchups;
}

void session_set_catchup_readers(int readers)
{
    if (readers <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        readers = cores >= 4 ? (int)(cores / 2) : 1;
    }
    turns_max = readers;
}

/* Lock held: records that `tenant` got a turn now. */
static void turn_served_locked(const char *tenant)
{
    if (!turn_ready) {
        strmap_init(&turn_served);
        turn_ready = true;
    }
    long long *at = strmap_get(&turn_served, tenant);
    if (!at) {
        at = xcalloc(1, sizeof *at);
        strmap_put(&turn_served, tenant, at);
    }
    *at = ++turn_clock;
}

/* Lock held: when `tenant` last got a turn (0: never). */
static long long turn_last_locked(const char *tenant)
{
    long long *at = turn_ready ? strmap_get(&turn_served, tenant) : NULL;
    return at ? *at : 0;
}

/* A catch-up thread: waits for a read turn. False when `cancel` was set meanwhile. */
static bool turn_take(const char *tenant, const atomic_bool *cancel)
{
    pthread_mutex_lock(&turn_lock);
    if (turns_running < turns_max && !turn_queue) {
        turns_running++;
        turn_served_locked(tenant);
        pthread_mutex_unlock(&turn_lock);
        return true;
    }
    read_turn t = {.tenant = tenant};
    pthread_cond_init(&t.cv, NULL);
    read_turn **pp = &turn_queue;
    while (*pp)
        pp = &(*pp)->next;
    *pp = &t;
    while (!t.granted && !atomic_load(cancel)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&t.cv, &turn_lock, &ts);
    }
    if (!t.granted) { /* cancelled while waiting: leave the queue */
        for (pp = &turn_queue; *pp != &t; pp = &(*pp)->next) {
        }
        *pp = t.next;
    }
    pthread_mutex_unlock(&turn_lock);
    pthread_cond_destroy(&t.cv);
    return t.granted;
}

/* A catch-up thread: gives its turn back; the next goes to the waiter whose tenant was
 * served longest ago (the first such in the queue). */
static void turn_give(void)
{
    pthread_mutex_lock(&turn_lock);
    turns_running--;
    while (turns_running < turns_max && turn_queue) {
        read_turn **best = &turn_queue;
        long long best_at = turn_last_locked(turn_queue->tenant);
        for (read_turn **pp = &turn_queue->next; *pp; pp = &(*pp)->next) {
            long long at = turn_last_locked((*pp)->tenant);
            if (at < best_at) {
                best = pp;
                best_at = at;
            }
        }
        read_turn *t = *best;
        *best = t->next;
        t->granted = true;
        turns_running++;
        turn_served_locked(t->tenant);
        pthread_cond_signal(&t->cv);
    }
    pthread_mutex_unlock(&turn_lock);
}

/* Connections for catch-up reads, kept between turns ([0] the primary's, [1] the replica's).
 * A catch-up holds one only while it holds a turn, so at most turns_max are in use at once
 * and as many are kept idle: a catch-up never opens a connection of its own. Why: one per
 * catch-up made every subscribe from a position cost PostgreSQL a new backend (a fork, its
 * authentication, its exit); a tenant re-subscribing in a loop spent the machine on that. */
#define IDLE_CONNS_MAX 64
static PGconn *idle_conns[2][IDLE_CONNS_MAX]; /* {turn_lock} */
static int idle_count[2];                     /* {turn_lock} */

/* A connection for one turn's read (NULL: none could be opened). */
static PGconn *conn_take(bool replica)
{
    PGconn *c = NULL;
    pthread_mutex_lock(&turn_lock);
    if (idle_count[replica]) c = idle_conns[replica][--idle_count[replica]];
    pthread_mutex_unlock(&turn_lock);
    if (c && !db_alive(c)) {
        PQfinish(c);
        c = NULL;
    }
    if (!c) c = replica ? reads_connect_replica("catchup") : db_connect(db_url, "catchup");
    return c;
}

/* Gives a turn's connection back (NULL, after a failure: nothing to keep). */
static void conn_give(PGconn *c, bool replica)
{
    if (!c) return;
    pthread_mutex_lock(&turn_lock);
    bool kept = idle_count[replica] < turns_max && idle_count[replica] < IDLE_CONNS_MAX;
    if (kept) idle_conns[replica][idle_count[replica]++] = c;
    pthread_mutex_unlock(&turn_lock);
    if (!kept) PQfinish(c);
}

void session_stop(void)
{
    pthread_mutex_lock(&workers_lock); /* idle catch-up threads end */
    workers_stopping = true;
    for (catchup_worker *w = idle_workers; w; w = w->next)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&workers_lock);
    pthread_mutex_lock(&turn_lock);
    for (int r = 0; r < 2; r++)
        while (idle_count[r])
            PQfinish(idle_conns[r][--idle_count[r]]);
    pthread_mutex_unlock(&turn_lock);
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
    s->last_taken_ms = now_ms();
    return s;
}

void session_ref(session *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void session_item_dispose(session_item *it)
{
    stored_event_unref(it->ev);
    free(it->text);
    memset(it, 0, sizeof *it);
}

void session_unref(session *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (size_t i = 0; i < s->q_len; i++)
        session_item_dispose(&s->q[(s->q_start + i) % s->q_cap]);
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
        for (size_t i = 0; i < s->q_len; i++)
            q[i] = s->q[(s->q_start + i) % s->q_cap];
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
 * was told when it turned non-empty, and takes items until it is empty again. A closed
 * session tells nobody: its owner may be gone (session_close). */
static void notify_locked(session *s, bool was_empty)
{
    if (s->closed) return;
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
    s->last_taken_ms = now_ms();
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
static void deliver(hub_sub *hs, stored_event *e)
{
    session_sub *sub = hs->owner;
    session *s = sub->sess;
    session_item it = {.ev = stored_event_ref(e)};
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
    filter_dispose(&sub->hs.filter);
    free(sub);
}

/* Lock held: whether history may add `bytes` now. It keeps to its share of either bound, so
 * the rest stays free for live events; an event larger than the share still goes into an
 * empty queue. */
static bool history_room_locked(const session *s, size_t bytes)
{
    if (s->q_len == 0) return true;
    return s->q_len < s->max_messages / HISTORY_SHARE &&
           s->q_bytes + bytes <= s->max_bytes / HISTORY_SHARE;
}

bool session_push_history(session *s, const char *sub_id, stored_event *e,
                          const atomic_bool *cancel, int stall_ms)
{
    session_item it = {.ev = stored_event_ref(e)};
    snprintf(it.sub, sizeof it.sub, "%s", sub_id);
    bool ok = false, was_empty = false;
    long long since = now_ms();
    pthread_mutex_lock(&s->lock);
    s->history_waiting++;
    for (;;) {
        if (s->closed || s->overflow || atomic_load(cancel)) break;
        if (history_room_locked(s, e->json_len)) {
            was_empty = s->q_len == 0;
            ok = push_locked(s, &it, e->json_len);
            break;
        }
        /* Stalled: the reader has taken nothing for stall_ms (counted from the later of its
         * last take and this wait's start), however often producers woke this thread. */
        long long now = now_ms();
        if (now - (s->last_taken_ms > since ? s->last_taken_ms : since) >= stall_ms) {
            s->overflow = true;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->changed, &s->lock, &ts);
    }
    s->history_waiting--;
    notify_locked(s, was_empty);
    pthread_mutex_unlock(&s->lock);
    if (!ok) session_item_dispose(&it);
    return ok;
}

/* While events are being published (a commit within the last YIELD_WINDOW_MS), a read turn
 * is held idle after its read for as long as the read took: history reads then take at most
 * half of each reader's time, and the CPU they leave goes to the publishes (their HTTP
 * threads, the appender, its PostgreSQL backend). Catch-ups are background work that a
 * subscriber waits for once; a publish is waited for by its producer every time. */
#define YIELD_WINDOW_MS 200
#define YIELD_MAX_MS 100
static void yield_to_publishes(long long read_start)
{
    long long now = now_ms();
    long long last = appender_last_commit_ms();
    if (!last || now - last > YIELD_WINDOW_MS) return;
    long long pause = now - read_start;
    if (pause > YIELD_MAX_MS) pause = YIELD_MAX_MS;
    if (pause > 0) usleep((useconds_t)pause * 1000);
}

static void run_catchup(session_sub *sub)
{
    session *s = sub->sess;
    long long cursor = sub->hs.cursor;
    bool on_replica = reads_replica(); /* until the replica lacks what a page must see */
    bool failed = false;
    while (!failed && !atomic_load(&sub->cancel)) {
        long long head = hub_head();
        if (cursor >= head) {
            if (hub_try_go_live(&sub->hs, cursor)) break;
            continue;
        }
        stored_event **evs;
        if (!turn_take(s->auth.tenant, &sub->cancel)) break;
        PGconn *conn = conn_take(on_replica);
        /* A short page means "read up to head" only if the server has head: a replica
         * that has not replayed it within the wait gives way to the primary. */
        if (on_replica && (!conn || !reads_replica_has(&conn, head))) {
            conn_give(conn, true);
            on_replica = false;
            conn = conn_take(false);
        }
        long long read_start = now_ms();
        int got = conn ? eventlog_read_matching(&conn, &sub->hs.filter, cursor, CATCHUP_PAGE,
                                                CATCHUP_TIMEOUT_MS, &evs)
                       : -1;
        conn_give(conn, on_replica); /* NULL after a failed read: closed already */
        yield_to_publishes(read_start);
        turn_give();
        if (got < 0) {
            failed = true;
            break;
        }
        int n = got;
        bool stop = false;
        for (int i = 0; i < n && !stop; i++) {
            stored_event *e = evs[i];
            if (e->position > head) { /* the hub has not reached it: it will come live */
                n = i;
                break;
            }
            if (filter_matches(&sub->hs.filter, e))
                stop = !session_push_history(s, sub->id, e, &sub->cancel, CATCHUP_STALL_MS);
            cursor = e->position;
        }
        bool full = got == CATCHUP_PAGE && n == CATCHUP_PAGE;
        for (int i = 0; i < got; i++)
            stored_event_unref(evs[i]);
        free(evs);
        if (stop) break;
        if (!full) cursor = head; /* everything up to the sampled head has been read */
    }
    if (failed && !atomic_load(&sub->cancel)) {
        char *msg = xasprintf("{\"op\":\"error\",\"id\":\"%s\",\"code\":\"store_unavailable\","
                              "\"message\":\"history could not be read; subscribe again\"}",
                              sub->id);
        session_push_text(s, msg);
    }
    atomic_fetch_sub(&catchups_running, 1);
    tenants_release(s->auth.tenant, TENANT_CATCHUPS);
    sub_unref(sub);
    session_unref(s);
}

/* Workers_lock held: takes `w` off the idle list (where it is). */
static void worker_unlist_locked(catchup_worker *w)
{
    for (catchup_worker **pp = &idle_workers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            return;
        }
}

static void *catchup_main(void *arg)
{
    /* Below the threads that serve requests and commit: a catch-up is background work. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), CATCHUP_NICE);
    catchup_worker *w = arg;
    pthread_mutex_lock(&workers_lock);
    for (;;) {
        session_sub *sub = w->job;
        w->job = NULL;
        pthread_mutex_unlock(&workers_lock);
        run_catchup(sub);
        pthread_mutex_lock(&workers_lock);
        if (workers_stopping) break;
        w->next = idle_workers;
        idle_workers = w;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += CATCHUP_IDLE_MS / 1000;
        while (!w->job && !workers_stopping &&
               pthread_cond_timedwait(&w->cv, &workers_lock, &until) == 0) {
        }
        if (!w->job) { /* idle too long, or stopping: a hand-over takes it off the list */
            worker_unlist_locked(w);
            break;
        }
    }
    pthread_mutex_unlock(&workers_lock);
    pthread_cond_destroy(&w->cv);
    free(w);
    return NULL;
}

/* Runs `sub`'s catch-up on an idle worker, or on a new thread. -1: no thread could start. */
static int catchup_start(session_sub *sub)
{
    pthread_mutex_lock(&workers_lock);
    catchup_worker *w = idle_workers;
    if (w) {
        idle_workers = w->next;
        w->job = sub;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&workers_lock);
    if (w) return 0;
    w = xcalloc(1, sizeof *w);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->job = sub;
    if (thread_start_detached(catchup_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        free(w);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ subscriptions */

/* Adds `sub` to the hub and settles where it starts: live subscriptions after the last
 * position this instance knows is committed, others after from_position. The subscription
 * stays invisible to deliveries (CATCHING_UP) until hub_try_go_live fixes its cursor under
 * the hub lock, so *start is exact. Returns whether history must be read first (the hub is
 * past from_position). */
static bool sub_start(session_sub *sub, long long from_position, long long *start)
{
    sub->hs.state = HUB_CATCHING_UP;
    sub->hs.cursor = from_position < 0 ? 0 : from_position;
    hub_add(&sub->hs);
    if (from_position >= 0) {
        *start = from_position;
        return !hub_try_go_live(&sub->hs, from_position);
    }
    long long at = appender_head(); /* every 201 this instance has answered */
    while (!hub_try_go_live(&sub->hs, at)) {
        long long head = hub_head(); /* the tail is ahead of this instance's own commits */
        if (head > at) at = head;
    }
    *start = at;
    return false;
}

session_subscribe_rc session_subscribe(session *s, const char *id, filter *fl,
                                       long long from_position, long long *start)
{
    for (session_sub *x = s->subs; x; x = x->next)
        if (strcmp(x->id, id) == 0) return SESSION_DUPLICATE_ID;
    if (s->n_subs >= SESSION_MAX_SUBS) return SESSION_TOO_MANY;
    session_sub *sub = xcalloc(1, sizeof *sub);
    snprintf(sub->id, sizeof sub->id, "%s", id);
    sub->id_len = strlen(sub->id);
    sub->sess = s;
    sub->hs.filter = *fl;
    memset(fl, 0, sizeof *fl);
    snprintf(sub->hs.filter.tenant, sizeof sub->hs.filter.tenant, "%s", s->auth.tenant);
    sub->hs.deliver = deliver;
    sub->hs.owner = sub;
    atomic_init(&sub->refs, 1);
    bool catchup = sub_start(sub, from_position, start);
    /* A catch-up holds one of its tenant's slots (SLUICE_TENANT_CATCHUPS) and one of the
     * instance's, from here until catchup_main returns. */
    if (catchup && !tenants_acquire(s->auth.tenant, TENANT_CATCHUPS)) {
        hub_remove(&sub->hs);
        sub_unref(sub);
        return SESSION_TENANT_CATCHUPS;
    }
    if (catchup && atomic_fetch_add(&catchups_running, 1) >= catchups_max) {
        atomic_fetch_sub(&catchups_running, 1);
        tenants_release(s->auth.tenant, TENANT_CATCHUPS);
        hub_remove(&sub->hs);
        sub_unref(sub);
        return SESSION_CATCHUPS_FULL;
    }
    sub->next = s->subs;
    s->subs = sub;
    s->n_subs++;
    if (catchup) {
        atomic_fetch_add(&sub->refs, 1);
        session_ref(s);
        if (catchup_start(sub) != 0) {
            atomic_fetch_sub(&catchups_running, 1);
            tenants_release(s->auth.tenant, TENANT_CATCHUPS);
            sub_unref(sub);
            session_unref(s);
            log_error("session", "cannot start a catch-up thread", NULL);
        }
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
