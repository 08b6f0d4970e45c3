/*
 * sse.c — Server-Sent Events streams over subscriber sessions (see sse.h).
 *
 * A stream is a session (its queue, its one subscription "sse") read by a pulled
 * HTTP body (http_stream_pull). Threads and what each touches:
 *   - libmicrohttpd's thread of the connection: sse_start (in the handler), every
 *     fill (pops the queue, formats frames) and, once the response is gone, done
 *     (tears the stream down). These never run at once, so `pending`, `sent` and
 *     `ending` need no lock; the session's owner thread is this one.
 *   - the hub (tail thread) and catch-up threads: push into the session, whose
 *     wake function (sse_wake, session lock held) wakes the stream.
 *   - the ticker: wakes the streams silent for SSE_KEEPALIVE_MS, which then
 *     write `: keep-alive`. It runs while any stream is open (one thread for all).
 *   - the key's revocation watch: marks the stream revoked and aborts its answer.
 * Teardown order (done) makes every late caller harmless: the stream is taken
 * off the ticker's list (no tick after), the watch removed (no revocation
 * callback after), the session closed (no wake after); only then is the owner's
 * reference to the HTTP stream given back and the stream freed. Shutdown needs
 * nothing here: http_stream_shutdown runs every waiting stream once more with
 * `stopping` set, and each ends.
 */
#include "sse.h"
#include "http_stream.h"
#include "log.h"
#include "mem.h"
#include "session.h"
#include "tenants.h"
#include "timeutil.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SSE_KEEPALIVE_MS 15000 /* a stream silent this long writes `: keep-alive` */
#define SSE_TICK_MS 1000       /* how often the ticker looks */
#define SSE_BATCH_ITEMS 64     /* messages taken from the queue per fill */
#define SSE_BATCH_BYTES 65536  /* … or fewer, once they hold this many bytes */
#define SSE_PENDING_KEEP 4096  /* a drained frame buffer larger than this is given back */

typedef struct sse_stream {
    session *sess;                  /* owned reference */
    _Atomic(http_stream *) out;     /* the owner's reference, once the answer is made */
    auth_watch *watch;              /* the key's revocation watch */
    atomic_bool revoked;            /* the key was revoked: end the answer as broken */
    atomic_bool keepalive_due;      /* the ticker asks for a keep-alive */
    _Atomic long long last_out_ms;  /* monotonic: fill last handed out bytes */
    buf pending;                    /* frames formatted, not all handed out yet */
    size_t sent;                    /* of pending, handed out */
    bool ending;                    /* the queue overflowed: end once pending is out */
    struct sse_stream *prev, *next; /* {tick_lock} the ticker's list */
} sse_stream;

static atomic_int n_streams;

static pthread_mutex_t tick_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tick_cv = PTHREAD_COND_INITIALIZER; /* only for a timed sleep */
static sse_stream *tick_head;                             /* {tick_lock} */
static bool tick_running;                                 /* {tick_lock} */

/* ------------------------------------------------------------------ ticker */

static void *tick_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&tick_lock);
    while (tick_head) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SSE_TICK_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        (void)pthread_cond_timedwait(&tick_cv, &tick_lock, &ts);
        long long now = time_mono_ms();
        for (sse_stream *x = tick_head; x; x = x->next) {
            if (now - atomic_load(&x->last_out_ms) < SSE_KEEPALIVE_MS) continue;
            if (atomic_exchange(&x->keepalive_due, true)) continue; /* asked already */
            http_stream *out = atomic_load(&x->out);
            if (out) http_stream_wake(out);
        }
    }
    tick_running = false; /* the last stream went: the next one starts a ticker again */
    pthread_mutex_unlock(&tick_lock);
    return NULL;
}

static void tick_add(sse_stream *x)
{
    pthread_mutex_lock(&tick_lock);
    x->prev = NULL;
    x->next = tick_head;
    if (tick_head) tick_head->prev = x;
    tick_head = x;
    if (!tick_running) {
        if (thread_start_detached(tick_main, NULL) == 0)
            tick_running = true;
        else /* the next stream tries again; until then no keep-alives */
            log_error("sse", "cannot start the keep-alive thread", NULL);
    }
    pthread_mutex_unlock(&tick_lock);
}

static void tick_remove(sse_stream *x)
{
    pthread_mutex_lock(&tick_lock);
    if (x->prev)
        x->prev->next = x->next;
    else
        tick_head = x->next;
    if (x->next) x->next->prev = x->prev;
    pthread_mutex_unlock(&tick_lock);
}

/* ------------------------------------------------------------------ the stream */

/* Any thread, the session's lock held (session_wake_fn): the queue turned non-empty or
 * overflowed. s->owner is the stream, alive until session_close has returned. */
static void sse_wake(session *s)
{
    sse_stream *x = s->owner;
    http_stream *out = atomic_load(&x->out);
    if (out) http_stream_wake(out); /* before the answer is made, the first fill pops anyway */
}

/* Any thread, the watch lock held (auth.h): the key was revoked. */
static void sse_revoked(void *arg)
{
    sse_stream *x = arg;
    atomic_store(&x->revoked, true);
    http_stream *out = atomic_load(&x->out);
    if (out) http_stream_abort(out);
}

/* Formats what the queue holds (a batch) into pending, or a keep-alive when it holds nothing
 * and one is due; an overflowed queue sets `ending` instead. */
static void refill(sse_stream *x)
{
    session_item items[SSE_BATCH_ITEMS];
    bool overflow = false, more = false;
    size_t n =
        session_pop_batch(x->sess, items, SSE_BATCH_ITEMS, SSE_BATCH_BYTES, &overflow, &more);
    if (overflow) { /* the client resumes with Last-Event-ID */
        x->ending = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        session_item *it = &items[i];
        if (it->ev) {
            buf_printf(&x->pending, "id: %lld\nevent: event\ndata: ", it->ev->position);
            buf_append(&x->pending, it->ev->json, it->ev->json_len);
        } else {
            buf_puts(&x->pending, "event: control\ndata: ");
            buf_puts(&x->pending, it->text);
        }
        buf_puts(&x->pending, "\n\n");
        session_item_dispose(it);
    }
    if (n == 0 && atomic_load(&x->keepalive_due)) buf_puts(&x->pending, ": keep-alive\n\n");
    if (x->pending.len) atomic_store(&x->keepalive_due, false);
}

/* libmicrohttpd thread (http_stream_source.fill). */
static long sse_fill(void *arg, char *out, size_t max, bool stopping)
{
    sse_stream *x = arg;
    if (atomic_load(&x->revoked)) return HTTP_STREAM_BROKEN;
    if (x->sent == x->pending.len) {
        if (x->pending.cap > SSE_PENDING_KEEP) { /* an idle stream keeps little */
            buf_dispose(&x->pending);
            buf_init(&x->pending);
        }
        x->pending.len = x->sent = 0;
        if (x->ending || stopping) return HTTP_STREAM_END;
        refill(x);
        if (x->pending.len == 0) return x->ending ? HTTP_STREAM_END : 0;
    }
    size_t n = x->pending.len - x->sent;
    if (n > max) n = max;
    memcpy(out, x->pending.data + x->sent, n);
    x->sent += n;
    atomic_store(&x->last_out_ms, time_mono_ms());
    return (long)n;
}

/* Gives back everything but the HTTP stream and the tenant's slot, and frees `x`. */
static void sse_free(sse_stream *x)
{
    auth_watch_remove(x->watch); /* sse_revoked no longer runs */
    session_close(x->sess);      /* sse_wake no longer runs */
    session_unref(x->sess);
    buf_dispose(&x->pending);
    free(x);
    atomic_fetch_sub(&n_streams, 1);
}

/* libmicrohttpd thread (http_stream_source.done): the response is gone. */
static void sse_done(void *arg)
{
    sse_stream *x = arg;
    http_stream *out = atomic_load(&x->out);
    tick_remove(x); /* the ticker no longer wakes it */
    tenants_release(x->sess->auth.tenant, TENANT_STREAMS);
    sse_free(x);
    http_stream_end(out);
}

sse_rc sse_start(http_req *req, filter *fl, long long from_position)
{
    const sluice_config *cfg = http_config();
    if (atomic_fetch_add(&n_streams, 1) >= cfg->sse_max) {
        atomic_fetch_sub(&n_streams, 1);
        filter_dispose(fl);
        return SSE_FULL;
    }
    sse_stream *x = xcalloc(1, sizeof *x);
    buf_init(&x->pending);
    atomic_store(&x->last_out_ms, time_mono_ms());
    x->sess = session_new((size_t)cfg->ws_queue_messages, (size_t)cfg->ws_queue_bytes, sse_wake, x);
    x->sess->auth = req->auth;
    x->watch = auth_watch_add(&req->auth, sse_revoked, x);
    if (!x->watch) { /* revoked since this request was authenticated */
        filter_dispose(fl);
        sse_free(x);
        return SSE_REVOKED;
    }
    long long start = 0;
    session_subscribe_rc rc = session_subscribe(x->sess, "sse", fl, from_position, &start);
    filter_dispose(fl); /* moved into the subscription, or left to dispose when refused */
    if (rc != SESSION_SUBSCRIBED) {
        sse_free(x);
        return rc == SESSION_TENANT_CATCHUPS ? SSE_TENANT_CATCHUPS : SSE_CATCHUPS_FULL;
    }
    buf_printf(&x->pending, "retry: 1000\n: subscribed after %lld\n\n", start);
    http_stream_source src = {.fill = sse_fill, .done = sse_done, .arg = x};
    tick_add(x);
    http_stream *out = http_stream_pull(req, 200, "text/event-stream", &src);
    atomic_store(&x->out, out);
    /* Revoked before the stream existed: its first fill ends it; cut a silent client too. */
    if (atomic_load(&x->revoked)) http_stream_abort(out);
    return SSE_STARTED;
}
