/*
 * retention.c — the retention enforcer (see retention.h).
 */
#include "retention.h"
#include "worker.h"
#include "locks.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "partitions.h"
#include "relay.h"
#include <stdio.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETENTION_LOCK_KEY LOCK_RETENTION
#define RETENTION_EVERY_MS 2000
#define RETENTION_BATCHES_PER_ROUND 50
#define RETENTION_TIMEOUT_MS 10000

static const sluice_config *cfg;
static worker_thread runner; /* the retention thread */

static void sleep_ms(int ms)
{
    for (int i = 0; i < ms / 50 && !worker_stopping(&runner); i++)
        usleep(50 * 1000);
}

/* What retention may never delete: events not yet in Redis (at or above the relay's
 * checkpoint), not yet applied by a projection of the tenant that has not failed, or not
 * yet replayed by a running replay of the tenant. $4 is the relay's checkpoint. Each
 * batch keeps the highest version it deletes of each key in key_heads, so a key's
 * version never goes back. */
static const char *const delete_sql =
    "WITH doomed AS (SELECT position FROM events WHERE tenant_id = $1 AND stream = $2 "
    "AND time < now() - make_interval(secs => $3::bigint / 1000.0) "
    "AND position < (SELECT max(position) FROM events) AND position < $4::bigint "
    "AND position <= coalesce((SELECT min(p.position) FROM projections p WHERE p.tenant_id = $1 "
    "AND p.status <> 'failed'), 9223372036854775807) "
    "AND position <= coalesce((SELECT min(r.position) FROM replays r WHERE r.tenant_id = $1 "
    "AND r.status = 'running'), 9223372036854775807) ORDER BY position LIMIT 1000), "
    "gone AS (DELETE FROM events e USING doomed d WHERE e.position = d.position "
    "RETURNING e.tenant_id, e.id, e.stream, e.key, e.version), "
    "ids AS (DELETE FROM event_ids i USING gone g WHERE i.tenant_id = g.tenant_id "
    "AND i.id = g.id), "
    "kept AS (INSERT INTO key_heads (tenant_id, stream, key, version) SELECT tenant_id, stream, "
    "key, max(version) FROM gone WHERE key IS NOT NULL GROUP BY tenant_id, stream, key "
    "ON CONFLICT (tenant_id, stream, key) DO UPDATE SET version = "
    "GREATEST(key_heads.version, EXCLUDED.version)) "
    "SELECT count(*) FROM gone";

/* One round: every stream with a max age, a bounded number of batches. */
static void enforce(PGconn **conn)
{
    /* Redis's side first: an event Redis has not got yet is owed to it. Unknown (Redis
     * away) means nothing is deleted this round. */
    long long relayed = relay_probe_checkpoint(cfg, RETENTION_TIMEOUT_MS);
    if (relayed <= 0) return;
    char relayed_text[24];
    snprintf(relayed_text, sizeof relayed_text, "%lld", relayed);
    PGresult *s = db_exec(conn,
                          "SELECT tenant_id, stream, max_age_ms FROM stream_settings "
                          "WHERE max_age_ms IS NOT NULL",
                          0, NULL, RETENTION_TIMEOUT_MS);
    if (!db_ok(s)) {
        PQclear(s);
        return;
    }
    for (int i = 0; i < PQntuples(s) && *conn && !worker_stopping(&runner); i++) {
        const char *p[] = {PQgetvalue(s, i, 0), PQgetvalue(s, i, 1), PQgetvalue(s, i, 2),
                           relayed_text};
        long long deleted = 0;
        for (int b = 0; b < RETENTION_BATCHES_PER_ROUND && *conn; b++) {
            PGresult *r = db_exec(conn, delete_sql, 4, p, RETENTION_TIMEOUT_MS);
            if (!db_ok(r) && r) db_log_error("retention", "deleting expired events failed", r);
            long long n = db_ok(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
            PQclear(r);
            deleted += n;
            if (n < 1000) break;
        }
        if (deleted)
            log_info("retention", "expired events deleted",
                     json_pack("{s:s,s:s,s:I}", "tenant", p[0], "stream", p[1], "deleted",
                               (json_int_t)deleted));
    }
    PQclear(s);
}

/* The event log's partitions: the next one ahead of need, and the oldest dropped whole once
 * every event in it has expired and is owed to nobody (partitions.h). Positions below
 * `safe` have reached Redis and every projection and replay that has not failed. */
static void maintain_partitions(PGconn **conn)
{
    if (partitions_ensure(conn, 0, cfg->partition_events, RETENTION_TIMEOUT_MS) < 0 || !*conn)
        return;
    long long relayed = relay_probe_checkpoint(cfg, RETENTION_TIMEOUT_MS);
    if (relayed <= 0) return;
    char relayed_text[24];
    snprintf(relayed_text, sizeof relayed_text, "%lld", relayed);
    const char *p[] = {relayed_text};
    PGresult *r = db_exec(conn,
                          "SELECT least($1::bigint, coalesce((SELECT min(position) + 1 FROM "
                          "projections WHERE status <> 'failed'), $1::bigint), coalesce((SELECT "
                          "min(position) + 1 FROM replays WHERE status = 'running'), $1::bigint))",
                          1, p, RETENTION_TIMEOUT_MS);
    long long safe = db_ok(r) ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    for (int i = 0; safe > 0 && i < 4 && *conn && !worker_stopping(&runner); i++)
        if (partitions_drop_expired(conn, safe, RETENTION_TIMEOUT_MS) != 1) break;
}

static void *retention_main(void *unused)
{
    (void)unused;
    PGconn *conn = NULL;
    bool leader = false;
    while (!worker_stopping(&runner)) {
        if (!conn) {
            leader = false;
            conn = db_connect(cfg->database_url, "retention");
            if (!conn) {
                sleep_ms(1000);
                continue;
            }
        }
        if (!leader) {
            PGresult *r = db_exec(&conn, "SELECT pg_try_advisory_lock(" RETENTION_LOCK_KEY ")", 0,
                                  NULL, RETENTION_TIMEOUT_MS);
            leader = db_ok(r) && PQgetvalue(r, 0, 0)[0] == 't';
            PQclear(r);
        }
        if (leader && conn) maintain_partitions(&conn);
        if (leader && conn) enforce(&conn);
        sleep_ms(RETENTION_EVERY_MS);
    }
    PQfinish(conn);
    partitions_dispose();
    return NULL;
}

int retention_start(const sluice_config *c)
{
    cfg = c;
    return worker_start(&runner, retention_main);
}

void retention_stop(void)
{
    worker_stop(&runner);
}
