/*
 * migrate.h — schema migrations, applied in order at start-up.
 *
 * The SQL files of migrations/ are compiled into the binary (build/gen/
 * migrations.c, made by scripts/embed-migrations.sh), so a deployed `sluice`
 * needs nothing beside it. Each is applied once, in its own transaction, under
 * a session advisory lock so that several instances starting together migrate
 * exactly once; applied versions are recorded in schema_migrations.
 */
#ifndef SLUICE_MIGRATE_H
#define SLUICE_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

typedef struct migration {
    int version;       /* NNN of NNN_name.sql */
    const char *name;  /* file name without .sql */
    const char *sql;   /* the file's text */
} migration;

extern const migration migrations[];
extern const size_t migrations_count;

/* Applies every pending migration. Returns 0, or -1 (logged). Start-up only. */
int migrate_run(PGconn **conn) __attribute__((warn_unused_result));

#endif
