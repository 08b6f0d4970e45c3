/*
 * events.c — /v1/events: publish, read one, read many (pages or NDJSON).
 */
#include "handlers.h"
#include "../server/cloudevents.h"
#include "../server/db.h"
#include "../server/http_stream.h"
#include "../server/log.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/publish.h"
#include "../server/store.h"
#include "../server/tenants.h"
#include "../server/timeutil.h"
#include "../server/waiters.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ publish */

/* MHD thread, once resumed: turns the outcomes into the answer. */
static void answer_published(http_req *req)
{
    publish_answer *a = publish_result(req->state);
    publish_record_metrics(req->state, (double)(time_mono_ms() - req->started_ms) / 1000.0);
    if (a->replay) http_add_header(req, "Idempotent-Replay", "true");
    if (a->status == 503) http_add_header(req, "Retry-After", "1");
    if (a->text) {
        http_reply(req, a->status, "application/json", a->text, a->text_len);
        a->text = NULL;
        return;
    }
    json_t *body = a->body;
    a->body = NULL;
    if (a->status >= 400 && a->status != 207)
        http_reply_problem(req, body);
    else
        http_reply_json(req, a->status, body);
}

/* Appender thread (or the submitter's, when refused at once): wake the request. */
static void on_published(publish_op *op, void *arg)
{
    (void)op;
    http_resume(arg);
}

static void free_op(void *op)
{
    publish_op_free(op);
}

static void each_header(void *ctx, void (*each)(const char *, const char *, void *), void *arg)
{
    http_each_header(ctx, each, arg);
}

/* The body as envelopes, whichever binding the producer used: plain JSON, or CloudEvents
 * in structured, batch or binary mode (a ce-specversion header). */
static json_t *envelopes_or_problem(http_req *req)
{
    static const char *const types[] = {"application/json", "application/cloudevents+json",
                                        "application/cloudevents-batch+json", NULL};
    if (!handler_media_type_or_problem(req, types)) return NULL;
    json_t *body = handler_json_body_or_problem(req);
    if (!body) return NULL;
    const char *ct = http_header(req, "Content-Type");
    json_t *out;
    if (ct && strncasecmp(ct, "application/cloudevents-batch+json", 34) == 0)
        out = cloudevents_batch(body);
    else if (ct && strncasecmp(ct, "application/cloudevents+json", 28) == 0)
        out = cloudevents_structured(body);
    else if (http_header(req, "ce-specversion"))
        out = cloudevents_binary(each_header, req, body);
    else
        return body;
    json_decref(body);
    return out;
}

void events_publish(http_req *req)
{
    json_t *root = envelopes_or_problem(req);
    if (!root) return;
    const char *atomic_arg = http_query(req, "atomic");
    bool atomic = !(atomic_arg && strcmp(atomic_arg, "false") == 0);
    publish_opts opts = {.tenant = req->auth.tenant,
                         .atomic = atomic,
                         .max_batch = http_config()->max_batch,
                         .allow_unknown_types = http_config()->allow_unknown_types,
                         .body_bytes = req->body_len,
                         .validation_max_nodes = http_config()->validation_max_nodes,
                         .validation_max_steps = http_config()->validation_max_steps};
    publish_op *op = publish_prepare(root, &opts);
    json_decref(root);
    http_set_correlation(req, publish_correlation(op));
    req->state = op;
    req->state_free = free_op;
    req->finalize = answer_published;
    http_suspend(req);
    publish_submit(op, on_published, req);
}

/* ------------------------------------------------------------------ read one */

typedef struct get_job {
    http_req *req;
    char *id;
} get_job;

static void get_job_free(void *arg)
{
    get_job *j = arg;
    free(j->id);
    free(j);
}

static void run_get(PGconn **conn, void *arg)
{
    get_job *j = arg;
    char *json = NULL;
    int rc = *conn ? store_get_event(conn, http_config()->store_timeout_ms, j->req->auth.tenant,
                                     j->id, &json)
                   : -1;
    if (rc == 0)
        http_reply(j->req, 200, "application/json", json, strlen(json));
    else if (rc == -2)
        http_reply_problem(j->req, problem_newf("not_found", "no event with id '%s'", j->id));
    else
        handler_store_unavailable(j->req);
    http_resume(j->req);
    get_job_free(j);
}

void events_get(http_req *req)
{
    if (!envelope_id_valid(req->params[0])) { /* no stored event has such an id */
        http_reply_problem(req,
                           problem_newf("not_found", "no event with id '%.100s'", req->params[0]));
        return;
    }
    get_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->id = xstrdup(req->params[0]);
    handler_run_on_pool(req, run_get, j, get_job_free);
}

/* ------------------------------------------------------------------ read many */

typedef struct list_job {
    http_req *req;
    char tenant[ENVELOPE_TENANT_MAX + 1]; /* copied: a stream outlives its request */
    read_filter f;
    /* NDJSON only: one of the tenant's stream slots, and the key's revocation watch. */
    bool slot;
    auth_watch *watch;
    atomic_bool revoked;        /* the key was revoked: stop, and cut the stream */
    _Atomic(http_stream *) out; /* the stream, once started */
} list_job;

static void list_job_free(void *arg)
{
    list_job *j = arg;
    auth_watch_remove(j->watch); /* before the stream goes: ndjson_revoked touches it */
    if (j->slot) tenant_release(j->tenant, TENANT_STREAMS);
    store_filter_dispose(&j->f);
    free(j);
}

/* Any thread, the watch lock held (auth.h): stops the NDJSON producer and cuts its stream. */
static void ndjson_revoked(void *arg)
{
    list_job *j = arg;
    atomic_store(&j->revoked, true);
    http_stream *out = atomic_load(&j->out);
    if (out) http_stream_abort(out);
}

static const char *query_arg(void *ctx, const char *name)
{
    return http_query(ctx, name);
}

static void run_page(PGconn **conn, void *arg)
{
    list_job *j = arg;
    buf out;
    buf_init(&out);
    if (*conn &&
        store_read_page(conn, http_config()->store_timeout_ms, j->tenant, &j->f, &out) == 0) {
        size_t len;
        char *body = buf_steal(&out, &len);
        http_reply(j->req, 200, "application/json", body, len);
    } else {
        handler_store_unavailable(j->req);
    }
    buf_dispose(&out);
    http_resume(j->req);
    list_job_free(j);
}

/* NDJSON: a thread of its own per stream (bounded by SLUICE_MAX_STREAMS), with its own
 * connection, so a slow reader never holds a pool worker. */
static atomic_int streams_running;

typedef struct ndjson_out {
    http_stream *s;
    buf pending; /* rows gathered before one ring write */
    const atomic_bool *revoked;
} ndjson_out;

static int ndjson_flush(ndjson_out *o)
{
    int rc = o->pending.len ? http_stream_write(o->s, o->pending.data, o->pending.len) : 0;
    o->pending.len = 0;
    return rc;
}

static int ndjson_row(const char *line, size_t len, void *arg)
{
    ndjson_out *o = arg;
    if (atomic_load(o->revoked)) return 1;
    buf_append(&o->pending, line, len);
    buf_append(&o->pending, "\n", 1);
    return o->pending.len >= 16 * 1024 ? ndjson_flush(o) : 0;
}

static void *run_ndjson(void *arg)
{
    list_job *j = arg;
    const sluice_config *cfg = http_config();
    PGconn *conn = db_connect(cfg->database_url, "events");
    if (!conn) {
        handler_store_unavailable(j->req);
        http_resume(j->req);
        goto out;
    }
    ndjson_out o = {.s = http_stream_start(j->req, 200, "application/x-ndjson", 256 * 1024),
                    .revoked = &j->revoked};
    buf_init(&o.pending);
    atomic_store(&j->out, o.s);
    http_resume(j->req); /* j->req is libmicrohttpd's again: only the stream is ours */
    int rc = store_stream(&conn, cfg->store_timeout_ms, j->tenant, &j->f, ndjson_row, &o);
    if (rc == 0 && !atomic_load(&j->revoked)) (void)ndjson_flush(&o);
    if (rc == -1) log_warn("events", "NDJSON stream ended early: store unavailable", NULL);
    auth_watch_remove(j->watch); /* ndjson_revoked no longer touches the stream */
    j->watch = NULL;
    if (atomic_load(&j->revoked)) http_stream_abort(o.s);
    http_stream_end(o.s);
    buf_dispose(&o.pending);
out:
    PQfinish(conn);
    list_job_free(j);
    atomic_fetch_sub(&streams_running, 1);
    return NULL;
}

void events_list(http_req *req)
{
    const char *accept = http_header(req, "Accept");
    bool ndjson = accept && strstr(accept, "application/x-ndjson");
    list_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    char err[256];
    if (store_filter_parse(&j->f, query_arg, req, !ndjson, err) < 0) {
        free(j);
        http_reply_error(req, "invalid_query", err);
        return;
    }
    if (!ndjson) {
        handler_run_on_pool(req, run_page, j, list_job_free);
        return;
    }
    if (!tenant_acquire(j->tenant, TENANT_STREAMS)) {
        list_job_free(j);
        handler_tenant_full(req, tenant_cap(TENANT_STREAMS), "SSE/NDJSON streams open",
                            "SLUICE_TENANT_STREAMS");
        return;
    }
    j->slot = true; /* given back by list_job_free */
    if (atomic_fetch_add(&streams_running, 1) >= http_config()->max_streams) {
        atomic_fetch_sub(&streams_running, 1);
        list_job_free(j);
        http_add_header(req, "Retry-After", "1");
        http_reply_error(req, "overloaded", "too many NDJSON streams are running; retry shortly");
        return;
    }
    j->watch = auth_watch_add(&req->auth, ndjson_revoked, j);
    if (!j->watch) { /* revoked since this request was authenticated */
        atomic_fetch_sub(&streams_running, 1);
        list_job_free(j);
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
        http_reply_error(req, "unauthenticated", "the API key was revoked");
        return;
    }
    http_suspend(req);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, run_ndjson, j) != 0) {
        atomic_fetch_sub(&streams_running, 1);
        list_job_free(j);
        http_reply_error(req, "overloaded", "cannot start a stream now");
        http_resume(req);
    }
    pthread_attr_destroy(&attr);
}

/* ------------------------------------------------------------------ long poll */

#define WAIT_DEFAULT_MS 30000
#define WAIT_MAX_MS 60000

typedef struct wait_state {
    char *json; /* the match, or NULL: timeout */
    size_t len;
    /* One of the tenant's long-poll slots (SLUICE_TENANT_LONG_POLLS) and the key's revocation
     * watch, both held until the request is freed, whichever way it ends. */
    char tenant[ENVELOPE_TENANT_MAX + 1];
    auth_watch *watch;
    atomic_bool revoked; /* the key was revoked: answer 401 now */
} wait_state;

typedef struct wait_job {
    waiter *w;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    read_filter f;
} wait_job;

static void wait_state_free(void *arg)
{
    wait_state *st = arg;
    auth_watch_remove(st->watch);
    tenant_release(st->tenant, TENANT_LONG_POLLS);
    free(st->json);
    free(st);
}

/* Any thread, the watch lock held (auth.h); the request is alive (its state holds the
 * watch): answers the poll now, as revoked. */
static void poll_revoked(void *arg)
{
    http_req *req = arg;
    wait_state *st = req->state;
    atomic_store(&st->revoked, true);
    waiter_cancel(req);
}

/* Tail, pool or reaper thread: exactly once. */
static void on_wait_done(void *arg, const char *json, size_t len)
{
    http_req *req = arg;
    wait_state *st = req->state;
    if (json) {
        st->json = xstrndup(json, len);
        st->len = len;
    }
    http_resume(req);
}

static void answer_wait(http_req *req)
{
    wait_state *st = req->state;
    if (atomic_load(&st->revoked)) {
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
        http_reply_error(req, "unauthenticated", "the API key was revoked");
    } else if (st->json) {
        http_reply(req, 200, "application/json", st->json, st->len);
        st->json = NULL;
    } else {
        http_reply(req, 204, NULL, xstrdup(""), 0);
    }
}

static int first_row(const char *line, size_t len, void *arg)
{
    char **out = arg;
    if (!*out) *out = xstrndup(line, len);
    return 0; /* the query asks for one row: reading to its end keeps the pooled connection */
}

static void run_wait_lookup(PGconn **conn, void *arg)
{
    wait_job *j = arg;
    char *json = NULL;
    if (*conn && store_stream(conn, http_config()->store_timeout_ms, j->tenant, &j->f, first_row,
                              &json) == -1)
        log_warn("events", "long poll: the store lookup failed; waiting for live events", NULL);
    waiter_offer(j->w, json, json ? strlen(json) : 0);
    free(json);
    store_filter_dispose(&j->f);
    free(j);
}

void events_wait(http_req *req)
{
    wait_job *j = xcalloc(1, sizeof *j);
    char err[256];
    if (store_filter_parse(&j->f, query_arg, req, false, err) < 0) {
        free(j);
        http_reply_error(req, "invalid_query", err);
        return;
    }
    long timeout = WAIT_DEFAULT_MS;
    const char *t = http_query(req, "timeout_ms");
    if (t) {
        char *end = NULL;
        timeout = strtol(t, &end, 10);
        if (*end || !*t || timeout < 0 || timeout > WAIT_MAX_MS) {
            store_filter_dispose(&j->f);
            free(j);
            http_reply_error(req, "invalid_query", "timeout_ms must be an integer from 0 to 60000");
            return;
        }
    }
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    /* The hub filter is the store filter, every field of it: the live path answers exactly
     * what the stored lookup would (tenant, correlation id, user id, every type, stream,
     * key, since/until on the commit time). */
    hub_filter hf = {0};
    snprintf(hf.tenant, sizeof hf.tenant, "%s", req->auth.tenant);
    if (j->f.correlation_id) hf.correlation_id = xstrdup(j->f.correlation_id);
    if (j->f.key) hf.key = xstrdup(j->f.key);
    if (j->f.user_id) hf.user_id = xstrdup(j->f.user_id);
    if (j->f.since) hf.since_ms = strtoll(j->f.since, NULL, 10);
    if (j->f.until) hf.until_ms = strtoll(j->f.until, NULL, 10);
    if (j->f.stream) hf.streams[hf.n_streams++] = xstrdup(j->f.stream);
    _Static_assert(HUB_MAX_TYPES >= STORE_MAX_TYPES,
                   "every type of a read filter fits a hub filter");
    for (int i = 0; i < j->f.n_types; i++) {
        hf.types[hf.n_types] = xstrdup(j->f.types[i]);
        hf.type_prefix[hf.n_types++] = j->f.type_prefix[i];
    }
    if (!tenant_acquire(req->auth.tenant, TENANT_LONG_POLLS)) {
        hub_filter_dispose(&hf);
        store_filter_dispose(&j->f);
        free(j);
        handler_tenant_full(req, tenant_cap(TENANT_LONG_POLLS), "long polls waiting",
                            "SLUICE_TENANT_LONG_POLLS");
        return;
    }
    wait_state *st = xcalloc(1, sizeof *st);
    snprintf(st->tenant, sizeof st->tenant, "%s", req->auth.tenant); /* the slot's */
    req->state = st;
    req->state_free = wait_state_free;
    req->finalize = answer_wait;
    http_suspend(req);
    long long head = 0;
    j->w = waiter_add(&hf, j->f.after, (int)timeout, on_wait_done, req, &head);
    /* The request cannot complete before this handler returns (its libmicrohttpd thread is
     * this one), so st stays valid here whatever answers the waiter meanwhile. */
    st->watch = auth_watch_add(&req->auth, poll_revoked, req);
    if (!st->watch) { /* revoked since this request was authenticated */
        atomic_store(&st->revoked, true);
        waiter_cancel(req);
    }
    j->f.limit = 1;
    /* No upper bound: the lookup sees everything committed by now, including events the
     * tail has not handed to the hub yet; later ones come live. The earliest wins. */
    (void)head;
    if (pool_submit(run_wait_lookup, j) != 0) {
        waiter_offer(j->w, NULL, 0); /* the live path and the deadline still answer */
        store_filter_dispose(&j->f);
        free(j);
    }
}
