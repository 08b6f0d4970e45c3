/*
 * migrate.c — applies the embedded migrations (see migrate.h).
 */
#include "migrate.h"
#include "locks.h"
#include "db.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>

#define MIGRATE_LOCK_KEY LOCK_MIGRATE
#define MIGRATE_TIMEOUT_MS 120000

static int exec_ok(PGconn **conn, const char *sql, int n, const char *const *vals)
{
    PGresult *r = db_exec(conn, sql, n, vals, MIGRATE_TIMEOUT_MS);
    int rc = db_ok(r) ? 0 : -1;
    if (rc < 0) db_log_error("migrate", "migration statement failed", r);
    PQclear(r);
    return rc;
}

int migrate_run(PGconn **conn)
{
    int rc = -1;
    bool locked = false;
    if (exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL) < 0) goto out;
    locked = true;
    if (exec_ok(conn,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                0, NULL) < 0)
        goto out;
    for (size_t i = 0; i < migrations_count; i++) {
        const migration *m = &migrations[i];
        char v[16];
        snprintf(v, sizeof v, "%d", m->version);
        const char *p[] = {v, m->name};
        PGresult *r = db_exec(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, p,
                              MIGRATE_TIMEOUT_MS);
        if (!db_ok(r)) {
            db_log_error("migrate", "reading schema_migrations failed", r);
            PQclear(r);
            goto out;
        }
        bool applied = PQntuples(r) > 0;
        PQclear(r);
        if (applied) continue;
        if (exec_ok(conn, "BEGIN", 0, NULL) < 0) goto out;
        if (exec_ok(conn, m->sql, -1, NULL) < 0 ||
            exec_ok(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                    p) < 0 ||
            exec_ok(conn, "COMMIT", 0, NULL) < 0) {
            if (*conn) (void)exec_ok(conn, "ROLLBACK", 0, NULL);
            log_error("migrate", "migration failed", json_pack("{s:s}", "migration", m->name));
            goto out;
        }
        log_info("migrate", "applied migration", json_pack("{s:s}", "migration", m->name));
    }
    rc = 0;
out:
    if (locked && *conn) (void)exec_ok(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL);
    return rc;
}
