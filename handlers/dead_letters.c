/*
 * dead_letters.c — /v1/dead-letters: list, inspect, reprocess, discard (admin).
 */
#include "handlers.h"
#include "../server/dead_letters.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/reqschema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { D_LIST, D_GET, D_REPROCESS, D_DISCARD, D_BATCH } dl_op;

typedef struct dl_job {
    http_req *req;
    dl_op op;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char *id;     /* owned */
    json_t *body; /* owned: the batch request, or the list filter */
} dl_job;

static void job_free(void *arg)
{
    dl_job *j = arg;
    free(j->id);
    json_decref(j->body);
    free(j);
}

static void run(PGconn **conn, void *arg)
{
    dl_job *j = arg;
    json_t *out = NULL;
    sl_status rc = SL_UNAVAILABLE;
    if (*conn) {
        switch (j->op) {
        case D_LIST:
            rc = dead_letters_list(conn, j->tenant, j->body, &out);
            break;
        case D_GET:
            rc = dead_letters_get(conn, j->tenant, j->id, &out);
            break;
        case D_REPROCESS:
            rc = dead_letters_reprocess(conn, j->tenant, j->id, &out);
            break;
        case D_DISCARD:
            rc = dead_letters_discard(conn, j->tenant, j->id, &out);
            break;
        case D_BATCH:
            rc = dead_letters_reprocess_batch(conn, j->tenant, j->body, &out);
            break;
        }
    }
    bool dry = j->op == D_BATCH && json_is_true(json_object_get(j->body, "dry_run"));
    if (rc == SL_OK)
        http_reply_json(j->req, j->op == D_BATCH && !dry ? 202 : 200, out);
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no dead letter '%s'", j->id ? j->id : ""));
    else
        handler_answer_status(j->req, rc, out);
    http_resume(j->req);
    job_free(j);
}

static dl_job *job_new(http_req *req, dl_op op)
{
    dl_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->op = op;
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    if (req->params[0]) j->id = xstrdup(req->params[0]);
    return j;
}

void dead_letters_on_list(http_req *req)
{
    dl_job *j = job_new(req, D_LIST);
    j->body = json_object();
    static const char *const args[] = {"stream", "group", "type", "status", "older_than_ms",
                                       "after", "limit", "source", "event_id"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        const char *v = http_query(req, args[i]);
        if (!v) continue;
        if (!strcmp(args[i], "source") && !dead_letters_source_valid(v)) {
            job_free(j);
            http_reply_error(req, "invalid_query",
                             "source is group, projection or webhook, alone (every dead letter "
                             "of that kind) or followed by :<name>");
            return;
        }
        bool numeric = !strcmp(args[i], "older_than_ms") || !strcmp(args[i], "after") ||
                       !strcmp(args[i], "limit");
        if (numeric && (!*v || strlen(v) > 15 || strspn(v, "0123456789") != strlen(v) ||
                        (!strcmp(args[i], "limit") && (atoi(v) < 1 || atoi(v) > 1000)))) {
            job_free(j);
            http_reply_error(req, "invalid_query",
                             "older_than_ms and after are non-negative integers; limit 1 to 1000");
            return;
        }
        json_object_set_new(j->body, args[i], json_string(v));
    }
    handler_run_on_pool(req, run, j, job_free);
}

void dead_letters_on_get(http_req *req)
{
    handler_run_on_pool(req, run, job_new(req, D_GET), job_free);
}

void dead_letters_on_reprocess(http_req *req)
{
    handler_run_on_pool(req, run, job_new(req, D_REPROCESS), job_free);
}

void dead_letters_on_discard(http_req *req)
{
    handler_run_on_pool(req, run, job_new(req, D_DISCARD), job_free);
}

void dead_letters_on_reprocess_batch(http_req *req)
{
    json_t *body = handler_checked_body_or_problem(req, REQSCHEMA_DEAD_LETTER_REPROCESS);
    if (!body) return;
    dl_job *j = job_new(req, D_BATCH);
    j->body = body;
    handler_run_on_pool(req, run, j, job_free);
}
