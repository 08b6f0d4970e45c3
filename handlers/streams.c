/*
 * streams.c — /v1/streams (listing, one stream, retention), one entity's
 * history (/v1/streams/{stream}/keys/{key}) and one flow's trace
 * (/v1/correlations/{id}).
 */
#include "handlers.h"
#include "../server/log.h"
#include "../server/mem.h"
#include "../server/problem.h"
#include "../server/reqschema.h"
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

static void finish(stream_job *j, sl_status rc, json_t *answer)
{
    if (rc == SL_OK)
        http_reply_json(j->req, 200, answer);
    else if (rc == SL_NOT_FOUND)
        http_reply_problem(j->req, problem_newf("not_found", "no stream '%s'", j->stream));
    else
        handler_answer_status(j->req, rc, answer);
    http_resume(j->req);
    job_free(j);
}

static void run_list(PGconn **conn, void *arg)
{
    stream_job *j = arg;
    const sluice_config *cfg = http_config();
    json_t *out = NULL;
    sl_status rc =
        *conn ? streams_list(conn, cfg->store_timeout_ms, cfg, j->tenant, &out) : SL_UNAVAILABLE;
    finish(j, rc, out);
}

void streams_on_list(http_req *req)
{
    handler_run_on_pool(req, run_list, job_new(req), job_free);
}

static void run_get(PGconn **conn, void *arg)
{
    stream_job *j = arg;
    const sluice_config *cfg = http_config();
    json_t *out = NULL;
    sl_status rc = *conn ? streams_get(conn, cfg->store_timeout_ms, cfg, j->tenant, j->stream, &out)
                         : SL_UNAVAILABLE;
    finish(j, rc, out);
}

void streams_on_get(http_req *req)
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
    json_t *out = NULL;
    sl_status rc = *conn ? streams_set(conn, http_config()->store_timeout_ms, j->tenant, j->stream,
                                       j->body, &out)
                         : SL_UNAVAILABLE;
    finish(j, rc, out);
}

void streams_on_put(http_req *req)
{
    if (!envelope_stream_valid(req->params[0])) {
        http_reply_error(req, "invalid_request", "not a stream name");
        return;
    }
    json_t *body = handler_checked_body_or_problem(req, REQSCHEMA_STREAM_SETTINGS);
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
    handler_reply_page(j->req, conn, &j->f);
    http_resume(j->req);
    job_free(j);
}

static void page_for(http_req *req, const char *stream, const char *key, const char *corr)
{
    stream_job *j = job_new(req);
    filter_error err;
    if (store_filter_parse(&j->f, req->auth.tenant, query_arg, req, true, &err) < 0) {
        job_free(j);
        http_reply_error(req, "invalid_query", err.message);
        return;
    }
    if (!http_query(req, "limit")) j->f.limit = STORE_PAGE_MAX; /* a whole flow at once */
    if (stream) j->f.f.streams[j->f.f.n_streams++] = xstrdup(stream);
    if (key) j->f.f.key = xstrdup(key);
    if (corr) j->f.f.correlation_id = xstrdup(corr);
    handler_run_read(req, run_page, j, job_free);
}

void streams_on_key_history(http_req *req)
{
    /* Positions grow with versions inside one key, so position order is version order. */
    page_for(req, req->params[0], req->params[1], NULL);
}

void correlations_on_get(http_req *req)
{
    http_set_correlation(req, req->params[0]);
    page_for(req, NULL, NULL, req->params[0]);
}
