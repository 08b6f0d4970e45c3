/*
 * projections.c — /v1/projections: define, inspect, read state, reset, delete.
 * Reading state with min_position waits (without holding a worker) until the
 * projection has applied that position: read-your-writes.
 */
#include "handlers.h"
#include "../server/reqschema.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/projections.h"
#include "../server/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_WAIT_MAX_MS 60000
#define STATE_POLL_MS 20

typedef enum { P_CREATE, P_LIST, P_GET, P_RESET, P_DELETE, P_STATE } proj_op;

typedef struct proj_job {
    http_req *req;
    proj_op op;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char *name, *key, *after_key; /* owned */
    json_t *body;                 /* owned */
    int limit;
    long long min_position;       /* -1: none */
    int64_t deadline;             /* monotonic ms, for min_position */
} proj_job;

static void job_free(void *arg)
{
    proj_job *j = arg;
    free(j->name);
    free(j->key);
    free(j->after_key);
    json_decref(j->body);
    free(j);
}

static void answer(proj_job *j, sl_status rc, json_t *out, int ok_status)
{
    if (rc == SL_OK)
        http_reply_json(j->req, ok_status, out);
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no projection '%s'%s", j->name,
                                                j->key ? " state for that key" : ""));
    else if (rc == SL_CONFLICT)
        http_reply_problem(j->req, problem_newf("conflict", "a projection named '%s' exists", j->name));
    else
        handler_answer_status(j->req, rc, out);
    http_resume(j->req);
    job_free(j);
}

static void run(PGconn **conn, void *arg)
{
    proj_job *j = arg;
    json_t *out = NULL;
    if (!*conn) {
        answer(j, SL_UNAVAILABLE, NULL, 0);
        return;
    }
    sl_status rc;
    switch (j->op) {
    case P_CREATE:
        rc = projections_create(conn, j->tenant, j->body, &out);
        answer(j, rc, out, 201);
        return;
    case P_LIST:
        rc = projections_list(conn, j->tenant, &out);
        answer(j, rc, out, 200);
        return;
    case P_GET:
        rc = projections_get(conn, j->tenant, j->name, &out);
        answer(j, rc, out, 200);
        return;
    case P_RESET:
        rc = projections_reset(conn, j->tenant, j->name, &out);
        answer(j, rc, out, 200);
        return;
    case P_DELETE: {
        rc = projections_delete(conn, j->tenant, j->name);
        if (rc == SL_OK) {
            http_reply(j->req, 204, NULL, xstrdup(""), 0);
            http_resume(j->req);
            job_free(j);
            return;
        }
        answer(j, rc, NULL, 0);
        return;
    }
    case P_STATE: {
        if (j->min_position >= 0) {
            long long pos = 0;
            bool behind = projections_position(conn, j->tenant, j->name, &pos) == SL_OK &&
                          pos < j->min_position;
            if (behind && time_mono_ms() < j->deadline &&
                pool_submit_after(STATE_POLL_MS, run, j) == 0)
                return; /* not there yet: look again shortly, holding no worker */
            if (behind) {
                http_add_header(j->req, "Retry-After", "1");
                http_reply_problem(j->req, problem_newf("conflict",
                                                        "projection '%s' is at position %lld, "
                                                        "not yet %lld (timeout_ms passed)",
                                                        j->name, pos, j->min_position));
                http_resume(j->req);
                job_free(j);
                return;
            }
        }
        rc = projections_state(conn, j->tenant, j->name, j->key, j->after_key, j->limit, &out);
        answer(j, rc, out, 200);
        return;
    }
    }
}

static proj_job *job_new(http_req *req, proj_op op)
{
    proj_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->op = op;
    j->min_position = -1;
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    if (req->params[0]) j->name = xstrdup(req->params[0]);
    return j;
}

void projections_on_create(http_req *req)
{
    json_t *body = handler_checked_body_or_problem(req, REQSCHEMA_PROJECTION_CREATE);
    if (!body) return;
    json_t *problem = projections_check(body); /* what the schema cannot say */
    if (problem) {
        json_decref(body);
        http_reply_problem(req, problem);
        return;
    }
    proj_job *j = job_new(req, P_CREATE);
    j->body = body;
    j->name = xstrdup(json_string_value(json_object_get(body, "name")));
    handler_run_on_pool(req, run, j, job_free);
}

void projections_on_list(http_req *req)
{
    handler_run_on_pool(req, run, job_new(req, P_LIST), job_free);
}

void projections_on_get(http_req *req)
{
    handler_run_on_pool(req, run, job_new(req, P_GET), job_free);
}

void projections_on_reset(http_req *req)
{
    handler_run_on_pool(req, run, job_new(req, P_RESET), job_free);
}

void projections_on_delete(http_req *req)
{
    handler_run_on_pool(req, run, job_new(req, P_DELETE), job_free);
}

static bool int_arg(http_req *req, const char *name, long long lo, long long hi, long long *out)
{
    const char *v = http_query(req, name);
    if (!v) return true;
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        char msg[120];
        snprintf(msg, sizeof msg, "%s must be an integer from %lld to %lld", name, lo, hi);
        http_reply_error(req, "invalid_query", msg);
        return false;
    }
    *out = x;
    return true;
}

void projections_on_state(http_req *req)
{
    long long limit = 100, min_pos = -1, timeout = 5000;
    if (!int_arg(req, "limit", 1, 1000, &limit) || !int_arg(req, "min_position", 0, (1LL << 62), &min_pos) ||
        !int_arg(req, "timeout_ms", 0, STATE_WAIT_MAX_MS, &timeout))
        return;
    proj_job *j = job_new(req, P_STATE);
    const char *key = http_query(req, "key"), *after = http_query(req, "after");
    if (key) j->key = xstrdup(key);
    if (after) j->after_key = xstrdup(after);
    j->limit = (int)limit;
    j->min_position = min_pos;
    j->deadline = time_mono_ms() + timeout;
    handler_run_on_pool(req, run, j, job_free);
}
