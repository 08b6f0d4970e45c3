/*
 * store.h — reading the event log: one event, filtered pages, whole streams.
 *
 * Every read is scoped to a tenant. Stored events are serialised to JSON by
 * PostgreSQL itself (one json_build_object per row), so a page is assembled by
 * concatenation and a stream is copied row by row at constant memory.
 */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include "mem.h"

#include <libpq-fe.h>
#include <stdbool.h>

#define STORE_PAGE_DEFAULT 100
#define STORE_PAGE_MAX 1000
#define STORE_MAX_TYPES 32

/* The filters of GET /v1/events (API.md "Reading and replay"). */
typedef struct read_filter {
    char *stream, *key, *correlation_id, *user_id; /* owned; NULL = any */
    char *types[STORE_MAX_TYPES];  /* owned; exact names, or prefixes ending in '.' */
    bool type_prefix[STORE_MAX_TYPES];
    int n_types;
    char *since, *until;           /* owned: epoch ms, decimal; since inclusive, until exclusive */
    long long after;               /* position > after */
    long long upto;                /* position <= upto; 0 = no bound */
    long long limit;               /* 0 = no limit (streams) */
    bool limit_given;
} read_filter;

/* Looks a query argument up by name (borrowed result or NULL). */
typedef const char *(*filter_arg_fn)(void *ctx, const char *name);

/* Parses the query arguments into `f`. Returns 0, or -1 with a message in `err`.
 * `paged` applies the page default and maximum. Any thread. */
int store_filter_parse(read_filter *f, filter_arg_fn arg, void *ctx, bool paged, char err[256])
    __attribute__((warn_unused_result));
void store_filter_dispose(read_filter *f);

/* One event as JSON. Returns 0 (*json caller frees), -2 not found, -1 store unavailable. */
int store_get_event(PGconn **conn, int timeout_ms, const char *tenant, const char *id,
                    char **json) __attribute__((warn_unused_result));
/* A page: writes {"events":[…],"next_after":N,"has_more":b} to `out`. 0 or -1. */
int store_read_page(PGconn **conn, int timeout_ms, const char *tenant, const read_filter *f,
                    buf *out) __attribute__((warn_unused_result));
/* Every match, one JSON line per event, to `write` (returns nonzero to stop).
 * Returns 0, -1 store unavailable, -3 stopped by the writer. */
int store_stream(PGconn **conn, int timeout_ms, const char *tenant, const read_filter *f,
                 int (*write)(const char *line, size_t len, void *arg), void *arg)
    __attribute__((warn_unused_result));
/* How many events match (limit ignored), or -1. */
long long store_count(PGconn **conn, int timeout_ms, const char *tenant, const read_filter *f);
/* The highest committed position (0 when empty), or -1. */
long long store_head(PGconn **conn, int timeout_ms);

#endif
