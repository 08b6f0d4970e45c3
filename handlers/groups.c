/*
 * groups.c — /v1/streams/{stream}/groups: consumer groups (admin). The consumer API
 * under a group is consume.c.
 * Bodies are checked against their schemas in openapi.yaml (reqschema.h) before
 * they reach server/groups.c.
 */
#include "handlers.h"
#include "../server/groups.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/reqschema.h"

#include <stdio.h>
#include <stdlib.h>

typedef enum { G_CREATE, G_LIST, G_DELETE } group_op;

typedef struct group_job {
    http_req *req;
    group_op op;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char *stream, *group; /* owned */
    json_t *body;         /* owned */
} group_job;

static void job_free(void *arg)
{
    group_job *j = arg;
    free(j->stream);
    free(j->group);
    json_decref(j->body);
    free(j);
}

static void run(PGconn **conn, void *arg)
{
    group_job *j = arg;
    json_t *out = NULL;
    sl_status rc = SL_UNAVAILABLE;
    if (*conn) {
        switch (j->op) {
        case G_CREATE:
            rc = groups_create(conn, j->tenant, j->stream, j->body, &out);
            break;
        case G_LIST:
            rc = groups_list(conn, j->tenant, j->stream, &out);
            break;
        case G_DELETE:
            rc = groups_delete(conn, j->tenant, j->stream, j->group);
            break;
        }
    }
    if (rc == SL_OK && j->op == G_DELETE)
        http_reply(j->req, 204, NULL, xstrdup(""), 0);
    else if (rc == SL_OK)
        http_reply_json(j->req, j->op == G_CREATE ? 201 : 200, out);
    else if (rc == SL_CONFLICT)
        http_reply_problem(j->req, problem_newf("conflict", "group exists on this stream"));
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no group '%s' on stream '%s'",
                                                j->group ? j->group : "", j->stream));
    else
        handler_answer_status(j->req, rc, out);
    http_resume(j->req);
    job_free(j);
}

/* `operation`: the operationId whose request schema the body must match, or NULL when the
 * operation takes no body. */
static void start(http_req *req, group_op op, const char *operation)
{
    group_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->op = op;
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    j->stream = xstrdup(req->params[0]);
    if (req->params[1]) j->group = xstrdup(req->params[1]);
    if (!envelope_stream_valid(j->stream)) {
        job_free(j);
        http_reply_error(req, "not_found", "not a stream name");
        return;
    }
    if (operation && !(j->body = handler_checked_body_or_problem(req, operation))) {
        job_free(j);
        return;
    }
    handler_run_on_pool(req, run, j, job_free);
}

void groups_on_create(http_req *req)
{
    start(req, G_CREATE, REQSCHEMA_GROUP_CREATE);
}

void groups_on_list(http_req *req)
{
    start(req, G_LIST, NULL);
}

void groups_on_delete(http_req *req)
{
    start(req, G_DELETE, NULL);
}
