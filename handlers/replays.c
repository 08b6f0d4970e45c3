/*
 * replays.c — /v1/replays: start, watch and cancel a re-publish of history
 * into a Redis stream (admin scope).
 */
#include "handlers.h"
#include "../server/reqschema.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/replays.h"

#include <stdio.h>
#include <stdlib.h>

typedef enum { R_CREATE, R_GET, R_CANCEL } replay_op;

typedef struct replay_job {
    http_req *req;
    replay_op op;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char *id;     /* owned */
    json_t *body; /* owned */
} replay_job;

static void job_free(void *arg)
{
    replay_job *j = arg;
    free(j->id);
    json_decref(j->body);
    free(j);
}

static void run(PGconn **conn, void *arg)
{
    replay_job *j = arg;
    json_t *out = NULL;
    sl_status rc = SL_UNAVAILABLE;
    if (*conn) {
        if (j->op == R_CREATE)
            rc = replays_create(conn, j->tenant, j->body, &out);
        else if (j->op == R_GET)
            rc = replays_get(conn, j->tenant, j->id, &out);
        else
            rc = replays_cancel(conn, j->tenant, j->id, &out);
    }
    if (rc == SL_OK)
        http_reply_json(j->req, j->op == R_CREATE ? 202 : 200, out);
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no replay '%s'", j->id));
    else
        handler_answer_status(j->req, rc, out);
    http_resume(j->req);
    job_free(j);
}

static void start(http_req *req, replay_op op)
{
    replay_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->op = op;
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    if (req->params[0]) j->id = xstrdup(req->params[0]);
    if (op == R_CREATE) {
        if (!(j->body = handler_checked_body_or_problem(req, REQSCHEMA_REPLAY_CREATE))) {
            job_free(j);
            return;
        }
    }
    handler_run_on_pool(req, run, j, job_free);
}

void replays_on_create(http_req *req)
{
    start(req, R_CREATE);
}

void replays_on_get(http_req *req)
{
    start(req, R_GET);
}

void replays_on_cancel(http_req *req)
{
    start(req, R_CANCEL);
}
