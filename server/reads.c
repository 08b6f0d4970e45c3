/*
 * reads.c — where history is read (see reads.h).
 */
#include "reads.h"
#include "db.h"
#include "hub.h"
#include "timeutil.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define READS_POLL_MS 5

enum { R_REPLICA, R_WAITED, R_PRIMARY, N_OUTCOMES };
static const char *const outcome_names[N_OUTCOMES] = {"replica", "waited", "primary"};
static atomic_ullong outcomes[N_OUTCOMES];

static const sluice_config *cfg;

int reads_start(const sluice_config *c)
{
    cfg = c;
    if (!reads_replica()) return 0;
    return pool_start_reads(cfg->read_database_url, cfg->db_pool, cfg->pool_queue);
}

bool reads_replica(void)
{
    return cfg && cfg->read_database_url && cfg->read_database_url[0];
}

long long reads_replica_head(PGconn **conn)
{
    PGresult *r = db_exec(conn, "SELECT coalesce(max(position), 0) FROM events", 0, NULL,
                          cfg->store_timeout_ms);
    long long head = db_ok(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return head;
}

bool reads_replica_has(PGconn **conn, long long need)
{
    long long deadline = time_mono_ms() + cfg->read_wait_ms;
    for (bool waited = false;; waited = true) {
        long long head = *conn ? reads_replica_head(conn) : -1;
        if (head >= need) {
            atomic_fetch_add(&outcomes[waited ? R_WAITED : R_REPLICA], 1);
            return true;
        }
        if (head < 0 || time_mono_ms() >= deadline) {
            atomic_fetch_add(&outcomes[R_PRIMARY], 1);
            return false;
        }
        usleep(READS_POLL_MS * 1000);
    }
}

typedef struct read_job {
    pool_fn fn;
    void *arg;
    long long need;
} read_job;

/* A replica worker: the job runs here when the replica has what it must see, else on the
 * primary's workers (answered as unavailable when their queue is full). */
static void on_replica(PGconn **conn, void *arg)
{
    read_job r = *(read_job *)arg;
    free(arg);
    if (reads_replica_has(conn, r.need)) {
        r.fn(conn, r.arg);
        return;
    }
    if (pool_submit(r.fn, r.arg) != 0) r.fn(&(PGconn *){NULL}, r.arg);
}

int reads_submit(pool_fn fn, void *arg)
{
    if (!reads_replica()) return pool_submit(fn, arg);
    read_job *r = xmalloc(sizeof *r);
    *r = (read_job){fn, arg, hub_head()};
    if (pool_submit_reads(on_replica, r) == 0) return 0;
    free(r);
    return pool_submit(fn, arg);
}

PGconn *reads_connect_replica(const char *module)
{
    if (!reads_replica()) return NULL;
    char name[48];
    snprintf(name, sizeof name, "read-%s", module);
    return db_connect(cfg->read_database_url, name);
}

PGconn *reads_connect(long long need, const char *module, bool *on_replica)
{
    *on_replica = false;
    if (reads_replica()) {
        PGconn *conn = reads_connect_replica(module);
        if (conn && reads_replica_has(&conn, need)) {
            *on_replica = true;
            return conn;
        }
        if (!conn) atomic_fetch_add(&outcomes[R_PRIMARY], 1);
        PQfinish(conn);
    }
    return db_connect(cfg->database_url, module);
}

void reads_render_metrics(buf *out)
{
    if (!reads_replica()) return;
    buf_puts(out, "# HELP sluice_read_replica_total History reads by where they ran: on the "
                  "replica at once, after waiting for it, or on the primary.\n"
                  "# TYPE sluice_read_replica_total counter\n");
    for (int i = 0; i < N_OUTCOMES; i++)
        buf_printf(out, "sluice_read_replica_total{outcome=\"%s\"} %llu\n", outcome_names[i],
                   (unsigned long long)atomic_load(&outcomes[i]));
}
