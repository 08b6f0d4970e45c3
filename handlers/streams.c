/*
 * streams.c — /v1/streams (listing, one stream, retention), one entity's
 * history (/v1/streams/{stream}/keys/{key}) and one flow's trace
 * (/v1/correlations/{id}).
 */
#include "handlers.h"
#include "../server/log.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/store.h"
#include "../server/streams.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct stream_job {
    http_req *req;
    char tenant[ENVELOPE_TENANT_MAX + 1];
    char *stream;   /* owned */
    json_t *body;   /* owned (PUT) */
    read_filter f;  /* history / trace */
} stream_job;

static void job_free(void *arg)
{
    stream_job *j = arg;
    free(j->stream);
    json_decref(j->body);
    store_filter_dispose(&j->f);
    free(j);
}

static stream_job *job_new(http_req *req)
{
    stream_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    if (req->params[0]) j->stream = xstrdup(req->params[0]);
    return j;
}

static void finish(stream_job *j, json_t *answer, int status)
{
    if (answer)
        http_reply_json(j->req, status, answer);
    else
        handler_store_unavailable(j->req);
    http_resume(j->req);
    job_free(j);
}

static void run_list(PGconn **conn, void *arg)
{
    stream_job *j = arg;
    const sluice_config *cfg = http_config();
    finish(j, *conn ? streams_list(conn, cfg->store_timeout_ms, cfg, j->tenant) : NULL, 200);
}

void streams_list_handler(http_req *req)
{
    handler_run_on_pool(req, run_list, job_new(req), job_free);
}

static void run_get(PGconn **conn, void *arg)
{
    stream_job *j = arg;
    const sluice_config *cfg = http_config();
    bool found = false;
    json_t *s = *conn ? streams_get(conn, cfg->store_timeout_ms, cfg, j->tenant, j->stream, &found)
                      : NULL;
    if (s && !found) {
        json_decref(s);
        http_reply_problem(j->req, problem_newf("not_found", "no stream '%s'", j->stream));
        http_resume(j->req);
        job_free(j);
        return;
    }
    finish(j, s, 200);
}

void streams_get_handler(http_req *req)
{
    if (!envelope_stream_valid(req->params[0])) {
        http_reply_problem(req, problem_newf("not_found", "no stream '%s'", req->params[0]));
        return;
    }
    handler_run_on_pool(req, run_get, job_new(req), job_free);
}

static void run_put(PGconn **conn, void *arg)
{
    stream_job *j = arg;
    json_t *problem = NULL;
    json_t *out = *conn ? streams_set(conn, http_config()->store_timeout_ms, j->tenant, j->stream,
                                      j->body, &problem)
                        : NULL;
    if (problem) {
        if (json_integer_value(json_object_get(problem, "status")) == 503)
            http_add_header(j->req, "Retry-After", "1");
        http_reply_problem(j->req, problem);
        http_resume(j->req);
        job_free(j);
        return;
    }
    finish(j, out, 200);
}

void streams_put_handler(http_req *req)
{
    static const char *const types[] = {"application/json", NULL};
    if (!envelope_stream_valid(req->params[0])) {
        http_reply_error(req, "invalid_request", "not a stream name");
        return;
    }
    if (!handler_media_type_or_problem(req, types)) return;
    json_t *body = handler_json_body_or_problem(req);
    if (!body) return;
    stream_job *j = job_new(req);
    j->body = body;
    handler_run_on_pool(req, run_put, j, job_free);
}

/* ------------------------------------------------------------------ history and traces */

static const char *query_arg(void *ctx, const char *name)
{
    /* Only paging comes from the query; the path fixes the filter. */
    if (strcmp(name, "after") && strcmp(name, "limit")) return NULL;
    return http_query(ctx, name);
}

static void run_page(PGconn **conn, void *arg)
{
    stream_job *j = arg;
    buf out;
    buf_init(&out);
    if (*conn && store_read_page(conn, http_config()->store_timeout_ms, j->tenant, &j->f, &out) == 0) {
        size_t len;
        char *body = buf_steal(&out, &len);
        http_reply(j->req, 200, "application/json", body, len);
    } else {
        handler_store_unavailable(j->req);
    }
    buf_dispose(&out);
    http_resume(j->req);
    job_free(j);
}

static void page_for(http_req *req, const char *stream, const char *key, const char *corr)
{
    stream_job *j = job_new(req);
    char err[256];
    if (store_filter_parse(&j->f, query_arg, req, true, err) < 0) {
        job_free(j);
        http_reply_error(req, "invalid_query", err);
        return;
    }
    if (!http_query(req, "limit")) j->f.limit = STORE_PAGE_MAX; /* a whole flow at once */
    if (stream) j->f.stream = xstrdup(stream);
    if (key) j->f.key = xstrdup(key);
    if (corr) j->f.correlation_id = xstrdup(corr);
    handler_run_on_pool(req, run_page, j, job_free);
}

void streams_key_history(http_req *req)
{
    /* Positions grow with versions inside one key, so position order is version order. */
    page_for(req, req->params[0], req->params[1], NULL);
}

void correlations_get(http_req *req)
{
    http_set_correlation(req, req->params[0]);
    page_for(req, NULL, NULL, req->params[0]);
}
