/*
 * subscribe.c — GET /v1/subscribe: the live feed as Server-Sent Events.
 *
 * Each SSE subscriber gets a session (server/session.h: bounded queue,
 * catch-up, hub subscription) and a thread of its own that writes the queue
 * to the response stream; a slow reader blocks only that thread, and a queue
 * past its bound ends the stream (the client resumes with Last-Event-ID).
 * Bounded by SLUICE_SSE_MAX, and per tenant by SLUICE_TENANT_STREAMS (shared with NDJSON
 * streams). The stream watches its key: revoked, the stream is cut at once (issue 13).
 */
#include "handlers.h"
#include "../server/http_stream.h"
#include "../server/log.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/session.h"
#include "../server/tenants.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SSE_KEEPALIVE_S 15

static atomic_int sse_running;

typedef struct sse_job {
    http_req *req;              /* until resumed */
    session *sess;              /* owned reference */
    hub_filter filter;          /* moved into the session at start */
    long long from;             /* -1: live only */
    auth_watch *watch;          /* the key's revocation watch */
    atomic_bool revoked;        /* the key was revoked: end the stream */
    _Atomic(http_stream *) out; /* the stream, once started (for sse_revoked) */
} sse_job;

static void sse_wake(session *s)
{
    (void)s; /* the SSE thread waits on the session's condition variable */
}

/* Any thread, the watch lock held (auth.h): wakes the SSE thread and cuts its stream. */
static void sse_revoked(void *arg)
{
    sse_job *j = arg;
    atomic_store(&j->revoked, true);
    pthread_mutex_lock(&j->sess->lock);
    pthread_cond_broadcast(&j->sess->changed);
    pthread_mutex_unlock(&j->sess->lock);
    http_stream *out = atomic_load(&j->out);
    if (out) http_stream_abort(out);
}

/* Writes the queue to the stream until the client goes, the queue overflows, Sluice stops,
 * or the key is revoked. */
static void pump(session *s, http_stream *out, const atomic_bool *revoked)
{
    buf b;
    buf_init(&b);
    int idle_s = 0;
    while (!atomic_load(revoked)) {
        pthread_mutex_lock(&s->lock);
        while (s->q_len == 0 && !s->overflow && !s->closed && !atomic_load(revoked)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            if (pthread_cond_timedwait(&s->changed, &s->lock, &ts) == ETIMEDOUT) break;
        }
        bool overflow = s->overflow, empty = s->q_len == 0;
        pthread_mutex_unlock(&s->lock);
        if (overflow || atomic_load(revoked)) break;
        b.len = 0;
        session_item it;
        int n = 0;
        while (n < 64 && session_pop(s, &it)) {
            if (it.ev) {
                buf_printf(&b, "id: %lld\nevent: event\ndata: ", it.ev->position);
                buf_append(&b, it.ev->json, it.ev->json_len);
                buf_puts(&b, "\n\n");
            } else {
                buf_puts(&b, "event: control\ndata: ");
                buf_puts(&b, it.text);
                buf_puts(&b, "\n\n");
            }
            session_item_dispose(&it);
            n++;
        }
        if (empty && n == 0) {
            if (++idle_s < SSE_KEEPALIVE_S) {
                /* A write of nothing still tells us when Sluice is stopping. */
                if (http_stream_write(out, "", 0) < 0) break;
                continue;
            }
            idle_s = 0;
            buf_puts(&b, ": keep-alive\n\n");
        }
        if (b.len && http_stream_write(out, b.data, b.len) < 0) break;
    }
    buf_dispose(&b);
}

static void *sse_main(void *arg)
{
    sse_job *j = arg;
    long long start = 0;
    int rc = session_subscribe(j->sess, "sse", &j->filter, j->from, &start);
    if (rc != 0) {
        http_add_header(j->req, "Retry-After", "1");
        if (rc == -4)
            http_reply_problem(j->req, problem_newf("rate_limited",
                                                    "this tenant runs %d history catch-ups "
                                                    "already (SLUICE_TENANT_CATCHUPS); retry "
                                                    "shortly",
                                                    tenant_cap(TENANT_CATCHUPS)));
        else
            http_reply_error(j->req, "overloaded", "too many catch-ups are running; retry shortly");
        http_resume(j->req);
        auth_watch_remove(j->watch);
    } else {
        http_stream *out = http_stream_start(j->req, 200, "text/event-stream", 64 * 1024);
        atomic_store(&j->out, out);
        http_resume(j->req); /* the request is libmicrohttpd's again */
        char hello[64];
        int n = snprintf(hello, sizeof hello, "retry: 1000\n: subscribed after %lld\n\n", start);
        if (!atomic_load(&j->revoked) && http_stream_write(out, hello, (size_t)n) == 0)
            pump(j->sess, out, &j->revoked);
        auth_watch_remove(j->watch); /* sse_revoked no longer touches the stream */
        if (atomic_load(&j->revoked)) http_stream_abort(out);
        http_stream_end(out);
    }
    tenant_release(j->sess->auth.tenant, TENANT_STREAMS);
    session_close(j->sess);
    session_unref(j->sess);
    hub_filter_dispose(&j->filter);
    free(j);
    atomic_fetch_sub(&sse_running, 1);
    return NULL;
}

void subscribe_sse(http_req *req)
{
    const sluice_config *cfg = http_config();
    sse_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->from = -1;
    const char *from = http_header(req, "Last-Event-ID");
    if (!from) from = http_query(req, "from_position");
    const char *key = http_query(req, "key");
    char *end = NULL;
    if (from && (*from == '\0' || (j->from = strtoll(from, &end, 10)) < 0 || *end)) {
        hub_filter_dispose(&j->filter);
        free(j);
        http_reply_error(req, "invalid_query", "from_position / Last-Event-ID must be a position");
        return;
    }
    if (!hub_filter_add_list(&j->filter, http_query(req, "stream"), false) ||
        !hub_filter_add_list(&j->filter, http_query(req, "type"), true) ||
        (key && (!*key || strlen(key) > ENVELOPE_KEY_MAX))) {
        hub_filter_dispose(&j->filter);
        free(j);
        http_reply_error(req, "invalid_query",
                         "stream takes stream names, type takes types or prefix.* wildcards "
                         "(comma lists)");
        return;
    }
    if (key) j->filter.key = xstrdup(key);
    if (!tenant_acquire(req->auth.tenant, TENANT_STREAMS)) {
        hub_filter_dispose(&j->filter);
        free(j);
        handler_tenant_full(req, tenant_cap(TENANT_STREAMS), "SSE/NDJSON streams open",
                            "SLUICE_TENANT_STREAMS");
        return;
    }
    if (atomic_fetch_add(&sse_running, 1) >= cfg->sse_max) {
        atomic_fetch_sub(&sse_running, 1);
        tenant_release(req->auth.tenant, TENANT_STREAMS);
        hub_filter_dispose(&j->filter);
        free(j);
        http_add_header(req, "Retry-After", "1");
        http_reply_error(req, "overloaded", "too many SSE subscribers; retry shortly");
        return;
    }
    j->sess =
        session_new((size_t)cfg->ws_queue_messages, (size_t)cfg->ws_queue_bytes, sse_wake, NULL);
    j->sess->auth = req->auth;
    j->watch = auth_watch_add(&req->auth, sse_revoked, j);
    if (!j->watch) { /* revoked since this request was authenticated */
        atomic_fetch_sub(&sse_running, 1);
        tenant_release(req->auth.tenant, TENANT_STREAMS);
        session_unref(j->sess);
        hub_filter_dispose(&j->filter);
        free(j);
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
        http_reply_error(req, "unauthenticated", "the API key was revoked");
        return;
    }
    http_suspend(req);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, sse_main, j) != 0) {
        atomic_fetch_sub(&sse_running, 1);
        auth_watch_remove(j->watch);
        tenant_release(req->auth.tenant, TENANT_STREAMS);
        session_unref(j->sess);
        hub_filter_dispose(&j->filter);
        free(j);
        http_reply_error(req, "overloaded", "cannot start a stream now");
        http_resume(req);
    }
    pthread_attr_destroy(&attr);
}
