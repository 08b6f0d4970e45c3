/*
 * events.c — /v1/events: publish, read one, read many (pages, or NDJSON through
 * server/export.c), long polls.
 */
#include "handlers.h"
#include "../server/cloudevents.h"
#include "../server/export.h"
#include "../server/log.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/publish.h"
#include "../server/store.h"
#include "../server/tenants.h"
#include "../server/timeutil.h"
#include "../server/waiters.h"

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

/* The body as envelopes, whichever binding the producer used: plain JSON (envelopes, or
 * seed BaseEvents, which envelope_parse maps), or CloudEvents in structured, batch or
 * binary mode (a ce-specversion header). */
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

void events_on_publish(http_req *req)
{
    json_t *root = envelopes_or_problem(req);
    if (!root) return;
    const char *atomic_arg = http_query(req, "atomic");
    bool atomic = !(atomic_arg && strcmp(atomic_arg, "false") == 0);
    publish_opts opts = {.tenant = req->auth.tenant,
                         .key_name = req->auth.key_name,
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
    sl_status rc = *conn ? store_get_event(conn, http_config()->store_timeout_ms,
                                           j->req->auth.tenant, j->id, &json)
                         : SL_UNAVAILABLE;
    if (rc == SL_OK)
        http_reply(j->req, 200, "application/json", json, strlen(json));
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no event with id '%s'", j->id));
    else
        handler_answer_status(j->req, rc, NULL);
    http_resume(j->req);
    get_job_free(j);
}

void events_on_get(http_req *req)
{
    if (!envelope_id_valid(req->params[0])) { /* no stored event has such an id */
        http_reply_problem(req,
                           problem_newf("not_found", "no event with id '%.100s'", req->params[0]));
        return;
    }
    get_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->id = xstrdup(req->params[0]);
    handler_run_read(req, run_get, j, get_job_free);
}

/* ------------------------------------------------------------------ read many */

typedef struct list_job {
    http_req *req;
    read_filter f;
} list_job;

static void list_job_free(void *arg)
{
    list_job *j = arg;
    store_filter_dispose(&j->f);
    free(j);
}

static const char *query_arg(void *ctx, const char *name)
{
    return http_query(ctx, name);
}

static void run_page(PGconn **conn, void *arg)
{
    list_job *j = arg;
    handler_reply_page(j->req, conn, &j->f);
    http_resume(j->req);
    list_job_free(j);
}

/* NDJSON: server/export.c streams every match (`f` moved in); here the tenant's stream slot
 * and the answers to each refusal. */
static void list_ndjson(http_req *req, read_filter *f)
{
    if (!tenants_acquire(req->auth.tenant, TENANT_STREAMS)) {
        store_filter_dispose(f);
        handler_tenant_full(req, tenants_cap(TENANT_STREAMS), "SSE/NDJSON streams open",
                            "SLUICE_TENANT_STREAMS");
        return;
    }
    export_rc rc = export_ndjson(req, f, handler_store_unavailable);
    if (rc == EXPORT_STARTED) return; /* the export has the slot */
    tenants_release(req->auth.tenant, TENANT_STREAMS);
    if (rc == EXPORT_REVOKED) {
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
        http_reply_error(req, "unauthenticated", "the API key was revoked");
    } else if (rc == EXPORT_FULL) {
        http_add_header(req, "Retry-After", "1");
        http_reply_error(req, "overloaded", "too many NDJSON streams are running; retry shortly");
    } else {
        http_reply_error(req, "overloaded", "cannot start a stream now");
    }
}

void events_on_list(http_req *req)
{
    const char *accept = http_header(req, "Accept");
    bool ndjson = accept && strstr(accept, "application/x-ndjson");
    read_filter f;
    filter_error err;
    if (store_filter_parse(&f, req->auth.tenant, query_arg, req, !ndjson, &err) < 0) {
        handler_filter_error(req, &err, "invalid_query");
        return;
    }
    if (ndjson) {
        list_ndjson(req, &f);
        return;
    }
    list_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->f = f;
    handler_run_read(req, run_page, j, list_job_free);
}

/* ------------------------------------------------------------------ long poll */

#define WAIT_DEFAULT_MS 30000
#define WAIT_MAX_MS 60000

typedef struct wait_state {
    char *json; /* the match, or NULL: timeout */
    size_t len;
    /* One of the tenant's long-poll slots (SLUICE_TENANT_LONG_POLLS), held until the answer is
     * built (before the client can see it and ask again) or, if the client leaves first, until
     * the request is freed; and the key's revocation watch, held until the request is freed. */
    char tenant[ENVELOPE_TENANT_MAX + 1];
    bool slot_held;
    auth_watch *watch;
    atomic_bool revoked; /* the key was revoked: answer 401 now */
    bool pool_full;      /* MHD thread: the store lookup could not be queued, answer 503 */
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
    if (st->slot_held) tenants_release(st->tenant, TENANT_LONG_POLLS);
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
    waiters_cancel(req);
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
    tenants_release(st->tenant, TENANT_LONG_POLLS);
    st->slot_held = false;
    if (atomic_load(&st->revoked)) {
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
        http_reply_error(req, "unauthenticated", "the API key was revoked");
    } else if (st->pool_full) {
        handler_pool_full(req);
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
    if (*conn && store_stream(conn, http_config()->store_timeout_ms, &j->f, first_row, &json) ==
                     STORE_STREAM_UNAVAILABLE)
        log_warn("events", "long poll: the store lookup failed; waiting for live events", NULL);
    waiters_offer(j->w, json, json ? strlen(json) : 0);
    free(json);
    store_filter_dispose(&j->f);
    free(j);
}

void events_on_wait(http_req *req)
{
    wait_job *j = xcalloc(1, sizeof *j);
    filter_error err;
    if (store_filter_parse(&j->f, req->auth.tenant, query_arg, req, false, &err) < 0) {
        free(j);
        handler_filter_error(req, &err, "invalid_query");
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
    /* The live path uses the store lookup's own filter (a copy): it answers exactly what
     * the stored lookup would. */
    filter hf;
    filter_copy(&hf, &j->f.f);
    if (!tenants_acquire(req->auth.tenant, TENANT_LONG_POLLS)) {
        filter_dispose(&hf);
        store_filter_dispose(&j->f);
        free(j);
        handler_tenant_full(req, tenants_cap(TENANT_LONG_POLLS), "long polls waiting",
                            "SLUICE_TENANT_LONG_POLLS");
        return;
    }
    wait_state *st = xcalloc(1, sizeof *st);
    snprintf(st->tenant, sizeof st->tenant, "%s", req->auth.tenant); /* the slot's */
    st->slot_held = true;
    req->state = st;
    req->state_free = wait_state_free;
    req->finalize = answer_wait;
    http_suspend(req);
    j->w = waiters_add(&hf, j->f.after, (int)timeout, on_wait_done, req);
    /* The request cannot complete before this handler returns (its libmicrohttpd thread is
     * this one), so st stays valid here whatever answers the waiter meanwhile. */
    st->watch = auth_watch_add(&req->auth, poll_revoked, req);
    if (!st->watch) { /* revoked since this request was authenticated */
        atomic_store(&st->revoked, true);
        waiters_cancel(req);
    }
    j->f.limit = 1;
    /* No upper bound: the lookup sees everything committed by now, including events the
     * tail has not handed to the hub yet; later ones come live. The earliest wins. */
    if (pool_submit(run_wait_lookup, j) != 0) {
        /* Without the lookup a match already stored would be missed: 503, not a late or
         * empty answer. */
        st->pool_full = true;
        waiters_cancel(req);
        waiters_offer(j->w, NULL, 0); /* answered already: only drops the reference */
        store_filter_dispose(&j->f);
        free(j);
    }
}
