/*
 * export.c — NDJSON history exports (see export.h).
 *
 * The export thread connects, makes the stream the answer and resumes the
 * request (from then on only the stream is the export's), then copies rows from
 * store_stream into the ring in 16 KiB writes. The revocation watch may fire at
 * any time: before the stream exists it only marks the export revoked (the
 * thread checks before it writes), after it also aborts the stream; the watch
 * is removed before the stream is let go, so it never touches a freed stream.
 */
#include "export.h"
#include "db.h"
#include "hub.h"
#include "http_stream.h"
#include "log.h"
#include "mem.h"
#include "reads.h"
#include "tenants.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT_RING_BYTES (256 * 1024)
#define EXPORT_WRITE_BYTES (16 * 1024) /* rows gathered before one ring write */

typedef struct export_job {
    http_req *req;                        /* until resumed */
    char tenant[ENVELOPE_TENANT_MAX + 1]; /* the slot's: an export outlives its request */
    read_filter f;
    auth_watch *watch;                  /* the key's revocation watch */
    atomic_bool revoked;                /* the key was revoked: stop, and cut the stream */
    _Atomic(http_stream *) out;         /* the stream, once started */
    buf pending;                        /* rows gathered before one ring write */
    void (*unavailable)(http_req *req); /* answers a store outage before the stream starts */
    long long need;                     /* what the export must see (reads.h) */
} export_job;

static atomic_int running;

/* Any thread, the watch lock held (auth.h): stops the export and cuts its stream. */
static void export_revoked(void *arg)
{
    export_job *j = arg;
    atomic_store(&j->revoked, true);
    http_stream *out = atomic_load(&j->out);
    if (out) http_stream_abort(out);
}

static int flush(export_job *j)
{
    int rc = j->pending.len
                 ? http_stream_write(atomic_load(&j->out), j->pending.data, j->pending.len)
                 : 0;
    j->pending.len = 0;
    return rc;
}

/* store_stream's writer: nonzero stops the read. */
static int row(const char *line, size_t len, void *arg)
{
    export_job *j = arg;
    if (atomic_load(&j->revoked)) return 1;
    buf_append(&j->pending, line, len);
    buf_append(&j->pending, "\n", 1);
    return j->pending.len >= EXPORT_WRITE_BYTES ? flush(j) : 0;
}

static void job_free(export_job *j)
{
    auth_watch_remove(j->watch);
    store_filter_dispose(&j->f);
    buf_dispose(&j->pending);
    free(j);
    atomic_fetch_sub(&running, 1);
}

static void *export_main(void *arg)
{
    export_job *j = arg;
    const sluice_config *cfg = http_config();
    bool on_replica;
    PGconn *conn = reads_connect(j->need, "export", &on_replica);
    if (!conn) {
        j->unavailable(j->req);
        http_resume(j->req);
        goto out;
    }
    http_stream *out = http_stream_start(j->req, 200, "application/x-ndjson", EXPORT_RING_BYTES);
    atomic_store(&j->out, out);
    http_resume(j->req); /* j->req is libmicrohttpd's again: only the stream is ours */
    if (atomic_load(&j->revoked)) http_stream_abort(out); /* revoked before it existed */
    store_stream_rc rc = store_stream(&conn, cfg->store_timeout_ms, &j->f, row, j);
    if (rc == STORE_STREAM_END && !atomic_load(&j->revoked)) (void)flush(j);
    if (rc == STORE_STREAM_UNAVAILABLE)
        log_warn("export", "NDJSON export ended early: store unavailable", NULL);
    auth_watch_remove(j->watch); /* export_revoked no longer touches the stream */
    j->watch = NULL;
    if (atomic_load(&j->revoked)) http_stream_abort(out);
    http_stream_end(out);
out:
    PQfinish(conn);
    tenants_release(j->tenant, TENANT_STREAMS);
    job_free(j);
    return NULL;
}

export_rc export_ndjson(http_req *req, read_filter *f, void (*unavailable)(http_req *req))
{
    if (atomic_fetch_add(&running, 1) >= http_config()->max_streams) {
        atomic_fetch_sub(&running, 1);
        store_filter_dispose(f);
        return EXPORT_FULL;
    }
    export_job *j = xcalloc(1, sizeof *j);
    j->req = req;
    j->unavailable = unavailable;
    j->need = hub_head();
    snprintf(j->tenant, sizeof j->tenant, "%s", req->auth.tenant);
    j->f = *f;
    memset(f, 0, sizeof *f);
    buf_init(&j->pending);
    j->watch = auth_watch_add(&req->auth, export_revoked, j);
    if (!j->watch) { /* revoked since this request was authenticated */
        job_free(j);
        return EXPORT_REVOKED;
    }
    http_suspend(req);
    if (thread_start_detached(export_main, j) != 0) {
        job_free(j);
        /* Resumed before the handler answers: libmicrohttpd looks at the request again only
         * once the handler has returned, on this thread. */
        http_resume(req);
        return EXPORT_NO_THREAD;
    }
    return EXPORT_STARTED;
}
