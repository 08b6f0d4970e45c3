/*
 * tail.c — the event-log tailer (see tail.h).
 */
#include "tail.h"
#include "db.h"
#include "hub.h"
#include "log.h"
#include "mem.h"
#include "sevent.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define TAIL_PAGE 1000
#define TAIL_TIMEOUT_MS 10000

const char *const tail_select_sql =
    "SELECT e.position, e.tenant_id, e.stream, e.type, e.key, e.correlation_id, "
    "row_to_json(e)::text FROM (SELECT position, id, type, stream, key, version, data, metadata, "
    "correlation_id, causation_id, user_id, source, schema_version, tenant_id, "
    "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS time "
    "FROM events WHERE position > $1 ORDER BY position LIMIT $2) e ORDER BY e.position";

static char *url;
static pthread_t thread;
static atomic_bool stopping;
static bool running;

/* Reads one page after the hub's head and publishes it. Returns rows, or -1. */
static int read_page(PGconn **conn)
{
    char after[24], limit[16];
    snprintf(after, sizeof after, "%lld", hub_head());
    snprintf(limit, sizeof limit, "%d", TAIL_PAGE);
    const char *p[] = {after, limit};
    PGresult *r = db_exec(conn, tail_select_sql, 2, p, TAIL_TIMEOUT_MS);
    if (!db_ok(r)) {
        if (r) db_log_error("tail", "reading the log failed", r);
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    if (n) {
        sevent **evs = xcalloc((size_t)n, sizeof *evs);
        for (int i = 0; i < n; i++)
            evs[i] = sevent_new(strtoll(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 1),
                                PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                                PQgetisnull(r, i, 4) ? NULL : PQgetvalue(r, i, 4),
                                PQgetvalue(r, i, 5), PQgetvalue(r, i, 6),
                                (size_t)PQgetlength(r, i, 6));
        hub_publish(evs, n);
        for (int i = 0; i < n; i++) sevent_unref(evs[i]);
        free(evs);
    }
    PQclear(r);
    return n;
}

static void *tail_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    while (!atomic_load(&stopping)) {
        if (!conn) {
            conn = db_connect(url, "tail");
            PGresult *r = conn ? db_exec(&conn, "LISTEN " TAIL_CHANNEL, 0, NULL, TAIL_TIMEOUT_MS)
                               : NULL;
            if (!db_ok(r)) {
                PQclear(r);
                PQfinish(conn);
                conn = NULL;
                for (int i = 0; i < 5 && !atomic_load(&stopping); i++) usleep(100 * 1000);
                continue;
            }
            PQclear(r);
        }
        int n = read_page(&conn);
        if (n < 0) continue; /* conn was dropped or the read failed: reconnect/retry */
        if (n == TAIL_PAGE) continue;
        /* Caught up: wait for a commit notification (or poll once a second). */
        struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
        for (int waited = 0; waited < 1000 && !atomic_load(&stopping); waited += 100) {
            if (poll(&p, 1, 100) > 0) break;
        }
        if (!PQconsumeInput(conn)) {
            PQfinish(conn);
            conn = NULL;
            continue;
        }
        PGnotify *note;
        while ((note = PQnotifies(conn))) PQfreemem(note);
    }
    PQfinish(conn);
    return NULL;
}

int tail_start(const char *database_url)
{
    url = xstrdup(database_url);
    PGconn *conn = db_connect(url, "tail");
    if (!conn) return -1;
    PGresult *r = db_exec(&conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL,
                          TAIL_TIMEOUT_MS);
    bool ok = db_ok(r);
    if (ok) hub_set_head(strtoll(PQgetvalue(r, 0, 0), NULL, 10));
    PQclear(r);
    PQfinish(conn);
    if (!ok) return -1;
    if (pthread_create(&thread, NULL, tail_main, NULL) != 0) return -1;
    running = true;
    return 0;
}

void tail_stop(void)
{
    if (!running) return;
    atomic_store(&stopping, true);
    pthread_join(thread, NULL);
    running = false;
    free(url);
    url = NULL;
}
