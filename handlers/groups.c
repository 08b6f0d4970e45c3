/*
 * groups.c — /v1/streams/{stream}/groups: consumer groups and nacks (admin).
 */
#include "handlers.h"
#include "../server/groups.h"
#include "../server/mem.h"
#include "../server/problem.h"

#include <stdio.h>
#include <stdlib.h>

typedef enum { G_CREATE, G_LIST, G_DELETE, G_NACK } group_op;

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
    int rc = -1;
    if (*conn) {
        switch (j->op) {
        case G_CREATE: rc = group_create(conn, j->tenant, j->stream, j->body, &out); break;
        case G_LIST: rc = group_list(conn, j->tenant, j->stream, &out); break;
        case G_DELETE: rc = group_delete(conn, j->tenant, j->stream, j->group); break;
        case G_NACK: rc = group_nack(conn, j->tenant, j->stream, j->group, j->body, &out); break;
        }
    }
    if (rc == 0 && j->op == G_DELETE)
        http_reply(j->req, 204, NULL, xstrdup(""), 0);
    else if (rc == 0)
        http_reply_json(j->req, j->op == G_CREATE ? 201 : 200, out);
    else if (rc == -4)
        http_reply_problem(j->req, out);
    else if (rc == -3)
        http_reply_problem(j->req, problem_newf("conflict", "group exists on this stream"));
    else if (rc == -2)
        http_reply_problem(j->req, problem_newf("not_found", "no group '%s' on stream '%s'",
                                                j->group ? j->group : "", j->stream));
    else
        handler_store_unavailable(j->req);
    http_resume(j->req);
    job_free(j);
}

static void start(http_req *req, group_op op, bool with_body)
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
    if (with_body) {
        static const char *const types[] = {"application/json", NULL};
        if (!handler_media_type_or_problem(req, types) ||
            !(j->body = handler_json_body_or_problem(req))) {
            job_free(j);
            return;
        }
    }
    handler_run_on_pool(req, run, j, job_free);
}

void groups_create_handler(http_req *req)
{
    start(req, G_CREATE, true);
}

void groups_list_handler(http_req *req)
{
    start(req, G_LIST, false);
}

void groups_delete_handler(http_req *req)
{
    start(req, G_DELETE, false);
}

void groups_nack_handler(http_req *req)
{
    start(req, G_NACK, true);
}
