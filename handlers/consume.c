/*
 * consume.c — /v1/streams/{stream}/groups/{group}/{fetch,ack,nack,extend}: the
 * consumer API (scope `consume`; server/consume.h). A nack body with `receipt` is a
 * consumer-API nack; one with `event_id` records a Redis worker's failure
 * (server/groups.h). Bodies are checked against their openapi.yaml schemas first.
 */
#include "handlers.h"
#include "../server/auth.h"
#include "../server/consume.h"
#include "../server/groups.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/reqschema.h"
#include "../server/tenants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { C_FETCH, C_ACK, C_NACK, C_EXTEND } consume_op;

typedef struct consume_job {
    http_req *req;
    consume_op op;
    consume_who who;
    json_t *body; /* owned */
} consume_job;

static void job_free(void *arg)
{
    consume_job *j = arg;
    consume_who_dispose(&j->who);
    json_decref(j->body);
    free(j);
}

static void answer(consume_job *j, sl_status rc, json_t *out)
{
    if (rc == SL_OK)
        http_reply_json(j->req, 200, out);
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no group '%s' on stream '%s'",
                                                j->who.group, j->who.stream));
    else if (rc == SL_UNAVAILABLE) {
        json_decref(out);
        http_add_header(j->req, "Retry-After", "1");
        http_reply_error(j->req, "store_unavailable",
                         "Redis or PostgreSQL is not answering; retry shortly");
    } else
        handler_answer_status(j->req, rc, out);
}

/* ------------------------------------------------------------------ long poll */

/* A fetch that waits: one of the tenant's long-poll slots and the key's revocation watch,
 * held until the answer. */
typedef struct fetch_state {
    http_req *req;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    auth_watch *watch;
} fetch_state;

/* Consume thread, or consume_cancel's caller: the answer (NULL: cancelled by a revocation
 * or a stop). */
static void on_fetch_done(void *arg, char *body)
{
    fetch_state *st = arg;
    http_req *req = st->req;
    auth_watch_remove(st->watch);
    tenants_release(st->tenant, TENANT_LONG_POLLS);
    if (body) {
        http_reply(req, 200, "application/json", body, strlen(body));
    } else {
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
        http_reply_error(req, "unauthenticated", "the API key was revoked");
    }
    free(st);
    http_resume(req);
}

/* Any thread, the watch lock held: the key was revoked; the wait ends at once. */
static void fetch_revoked(void *arg)
{
    consume_cancel(arg);
}

static void def_free(group_def *def)
{
    if (!def) return;
    group_def_dispose(def);
    free(def);
}

/* Pool thread: nothing to fetch yet; waits for up to wait_ms (no thread held). */
static void fetch_wait(consume_job *j, group_def *def, int max, int wait_ms)
{
    if (!tenants_acquire(j->who.tenant, TENANT_LONG_POLLS)) {
        def_free(def);
        handler_tenant_full(j->req, tenants_cap(TENANT_LONG_POLLS), "long polls waiting",
                            "SLUICE_TENANT_LONG_POLLS");
        http_resume(j->req);
        return;
    }
    fetch_state *st = xcalloc(1, sizeof *st);
    st->req = j->req;
    snprintf(st->tenant, sizeof st->tenant, "%s", j->who.tenant);
    st->watch = auth_watch_add(&j->req->auth, fetch_revoked, st);
    if (!st->watch) { /* revoked since the request was authenticated */
        def_free(def);
        on_fetch_done(st, NULL);
        return;
    }
    consume_wait(&j->who, def, max, wait_ms, on_fetch_done, st);
}

/* ------------------------------------------------------------------ jobs */

/* A fetch's `max` and `wait_ms` (their defaults when absent). */
static void fetch_args(const consume_job *j, int *max, int *wait_ms)
{
    json_t *m = json_object_get(j->body, "max"), *w = json_object_get(j->body, "wait_ms");
    *max = m ? (int)json_integer_value(m) : 10;
    *wait_ms = w ? (int)json_integer_value(w) : 0;
}

/* HTTP thread: a fetch that does not wait, or an ack, answered at once when it needs no
 * PostgreSQL and Redis answers promptly (server/consume.c, "on an HTTP thread"). False:
 * nothing answered, run it on the pool. */
static bool run_here(consume_job *j)
{
    sl_status rc;
    json_t *out = NULL;
    if (j->op == C_FETCH) {
        int max, wait_ms, n = 0;
        fetch_args(j, &max, &wait_ms);
        char *body = NULL;
        group_def *def = NULL;
        rc = consume_fetch(NULL, &j->who, max, &body, &n, &def);
        def_free(def);
        if (rc == SL_AGAIN || (rc == SL_OK && n == 0 && wait_ms > 0)) {
            free(body);
            return false;
        }
        if (rc == SL_OK)
            http_reply(j->req, 200, "application/json", body, strlen(body));
        else
            answer(j, rc, NULL);
        return true;
    }
    rc = consume_ack(NULL, &j->who, j->body, &out);
    if (rc == SL_AGAIN) return false;
    answer(j, rc, out);
    return true;
}

static void run(PGconn **conn, void *arg)
{
    consume_job *j = arg;
    json_t *out = NULL;
    sl_status rc = SL_UNAVAILABLE;
    if (!*conn) {
        answer(j, rc, NULL);
        http_resume(j->req);
        job_free(j);
        return;
    }
    if (j->op == C_FETCH) {
        int max, wait_ms, n = 0;
        fetch_args(j, &max, &wait_ms);
        char *body = NULL;
        group_def *def = NULL;
        rc = consume_fetch(conn, &j->who, max, &body, &n, &def);
        if (rc == SL_OK && n == 0 && wait_ms > 0) {
            free(body);
            fetch_wait(j, def, max, wait_ms);
            job_free(j);
            return;
        }
        def_free(def);
        if (rc == SL_OK)
            http_reply(j->req, 200, "application/json", body, strlen(body));
        else
            answer(j, rc, NULL);
    } else {
        if (j->op == C_ACK)
            rc = consume_ack(conn, &j->who, j->body, &out);
        else if (j->op == C_EXTEND)
            rc = consume_extend(conn, &j->who, j->body, &out);
        else if (json_object_get(j->body, "receipt"))
            rc = consume_nack(conn, &j->who, j->body, &out);
        else
            rc = groups_nack(conn, j->who.tenant, j->who.stream, j->who.group, j->body, &out);
        answer(j, rc, out);
    }
    http_resume(j->req);
    job_free(j);
}

static void start(http_req *req, consume_op op, const char *operation)
{
    consume_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->op = op;
    snprintf(j->who.tenant, sizeof j->who.tenant, "%s", req->auth.tenant);
    j->who.stream = xstrdup(req->params[0]);
    j->who.group = xstrdup(req->params[1]);
    if (!envelope_stream_valid(j->who.stream)) {
        job_free(j);
        http_reply_error(req, "not_found", "not a stream name");
        return;
    }
    if (!(j->body = handler_checked_body_or_problem(req, operation))) {
        job_free(j);
        return;
    }
    if (op == C_FETCH)
        j->who.consumer = xstrdup(json_string_value(json_object_get(j->body, "consumer")));
    if ((op == C_FETCH || op == C_ACK) && run_here(j)) {
        job_free(j);
        return;
    }
    handler_run_on_pool(req, run, j, job_free);
}

void consume_on_fetch(http_req *req)
{
    start(req, C_FETCH, REQSCHEMA_GROUP_FETCH);
}

void consume_on_ack(http_req *req)
{
    start(req, C_ACK, REQSCHEMA_GROUP_ACK);
}

void consume_on_nack(http_req *req)
{
    start(req, C_NACK, REQSCHEMA_GROUP_NACK);
}

void consume_on_extend(http_req *req)
{
    start(req, C_EXTEND, REQSCHEMA_GROUP_EXTEND);
}
