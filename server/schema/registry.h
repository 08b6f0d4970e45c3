/*
 * registry.h — the schema registry: event types, their versioned JSON Schemas,
 * stream, compatibility mode and deprecation.
 *
 * PostgreSQL holds the registry; every instance keeps all of it in memory,
 * compiled, so a publish validates without I/O. Entries are immutable and
 * refcounted: a lookup takes a reference under a read lock held for one hash
 * probe, and validation then runs with no lock at all while a writer swaps in
 * a new entry. Changes made on any instance reach every other within a second
 * (LISTEN/NOTIFY, plus a full reload when the listening connection returns).
 * The shipped catalog (schemas/, embedded at build time) is registered at
 * start-up for every type that is absent.
 *
 * NAMESPACES: every type lives in one tenant's namespace. Tenant `default`'s is the
 * global one (the catalog and what tenant default registers), which every tenant sees
 * and publishes against; any other tenant's is private to it. A tenant looks a name up
 * in its private namespace first, then in the global one; it writes only to its private
 * namespace (tenant default only to the global one), and a write by another tenant to a
 * name that resolves to a global type is refused (forbidden).
 */
#ifndef SLUICE_SCHEMA_REGISTRY_H
#define SLUICE_SCHEMA_REGISTRY_H

#include "compat.h"
#include "validator.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct registry_version {
    int version;      /* 1, 2, … */
    json_t *doc;      /* the JSON Schema, owned */
    schema *compiled; /* owned */
    char created_at[32];
} registry_version;

typedef struct registry_type {
    atomic_int refs;
    char *tenant;      /* owned: the namespace; "default" = the global one */
    char *type;        /* owned */
    char *stream;      /* owned: where events of this type go by default */
    char *description; /* owned, may be NULL */
    compat_mode compat;
    bool deprecated;
    int n_versions;
    registry_version *versions; /* owned; versions[i].version == i + 1 */
} registry_type;

/* Start-up: loads the registry, registers the embedded catalog's absent types, starts the
 * listener. Returns 0 or -1 (logged). */
int registry_start(const char *database_url) __attribute__((warn_unused_result));
void registry_stop(void);

/* A reference to the entry `tenant` sees for `type` (its private type of that name, else
 * the global one), or NULL. Release with registry_release. Any thread. */
registry_type *registry_get(const char *tenant, const char *type);
void registry_release(registry_type *t);
/* Every type `tenant` sees, sorted by name, as {"schemas":[…]} (caller owns). Any thread. */
json_t *registry_list_json(const char *tenant);
/* One type's summary (and the latest schema when `with_schema`), with "namespace":
 * "global" or "private". Caller owns. */
json_t *registry_type_json(const registry_type *t, bool with_schema);

/* Outcomes of the writes below (pool threads, with their connection). */
typedef enum {
    REG_CREATED = 201,   /* a new version */
    REG_UNCHANGED = 200, /* identical to the latest */
    REG_STORE_DOWN = 503,
    REG_REFUSED = 4, /* *answer is a problem document */
} registry_outcome;

/* The writes act for `tenant` (the caller's): on the global namespace for tenant default,
 * on the tenant's private one otherwise; a name that resolves to a global type for another
 * tenant is REG_REFUSED with forbidden. */
/* Registers a schema version. `req` is the request body (borrowed). On REG_CREATED /
 * REG_UNCHANGED *answer is {"type","version","stream"}; on REG_REFUSED a problem
 * (invalid_request, forbidden, unsupported_keyword, invalid_schema, incompatible_schema,
 * conflict). */
registry_outcome registry_register(PGconn **conn, const char *tenant, json_t *req, json_t **answer);
/* Sets the compatibility mode. REG_REFUSED answers not_found, forbidden or invalid_request. */
registry_outcome registry_set_compat(PGconn **conn, const char *tenant, const char *type,
                                     json_t *req, json_t **answer);
/* Deprecates a type: new publishes get 422 deprecated_type; history stays readable.
 * REG_REFUSED answers not_found or forbidden. */
registry_outcome registry_deprecate(PGconn **conn, const char *tenant, const char *type,
                                    json_t **answer);

#endif
