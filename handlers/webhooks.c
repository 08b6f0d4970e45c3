/*
 * webhooks.c — /v1/webhooks: push endpoints (admin; server/webhooks.h). The create
 * body is checked against its openapi.yaml schema first; the delivery itself is the
 * leader's (server/webhook_delivery.h).
 */
#include "handlers.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/reqschema.h"
#include "../server/webhooks.h"

#include <stdio.h>
#include <stdlib.h>

typedef enum { W_CREATE, W_LIST, W_GET, W_DELETE, W_PAUSE, W_RESUME, W_ROTATE } webhook_op;

typedef struct webhook_job {
    http_req *req;
    webhook_op op;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char *name;   /* owned; NULL for create and list */
    json_t *body; /* owned */
} webhook_job;

static void job_free(void *arg)
{
    webhook_job *j = arg;
    free(j->name);
    json_decref(j->body);
    free(j);
}

static void run(PGconn **conn, void *arg)
{
    webhook_job *j = arg;
    json_t *out = NULL;
    sl_status rc = SL_UNAVAILABLE;
    if (*conn) {
        switch (j->op) {
        case W_CREATE: rc = webhooks_create(conn, j->tenant, j->body, &out); break;
        case W_LIST: rc = webhooks_list(conn, j->tenant, &out); break;
        case W_GET: rc = webhooks_get(conn, j->tenant, j->name, &out); break;
        case W_DELETE: rc = webhooks_delete(conn, j->tenant, j->name); break;
        case W_PAUSE: rc = webhooks_pause(conn, j->tenant, j->name, true, &out); break;
        case W_RESUME: rc = webhooks_pause(conn, j->tenant, j->name, false, &out); break;
        case W_ROTATE: rc = webhooks_rotate_secret(conn, j->tenant, j->name, &out); break;
        }
    }
    if (rc == SL_OK && j->op == W_DELETE)
        http_reply(j->req, 204, NULL, xstrdup(""), 0);
    else if (rc == SL_OK)
        http_reply_json(j->req, j->op == W_CREATE ? 201 : 200, out);
    else if (rc == SL_CONFLICT)
        http_reply_problem(j->req, problem_newf("conflict", "a webhook with this name exists"));
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no webhook '%s'", j->name ? j->name : ""));
    else
        handler_answer_status(j->req, rc, out);
    http_resume(j->req);
    job_free(j);
}

static void start(http_req *req, webhook_op op, const char *operation)
{
    webhook_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->op = op;
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    if (req->params[0]) j->name = xstrdup(req->params[0]);
    if (operation && !(j->body = handler_checked_body_or_problem(req, operation))) {
        job_free(j);
        return;
    }
    handler_run_on_pool(req, run, j, job_free);
}

void webhooks_on_create(http_req *req)
{
    start(req, W_CREATE, REQSCHEMA_WEBHOOK_CREATE);
}

void webhooks_on_list(http_req *req)
{
    start(req, W_LIST, NULL);
}

void webhooks_on_get(http_req *req)
{
    start(req, W_GET, NULL);
}

void webhooks_on_delete(http_req *req)
{
    start(req, W_DELETE, NULL);
}

void webhooks_on_pause(http_req *req)
{
    start(req, W_PAUSE, NULL);
}

void webhooks_on_resume(http_req *req)
{
    start(req, W_RESUME, NULL);
}

void webhooks_on_rotate_secret(http_req *req)
{
    start(req, W_ROTATE, NULL);
}
