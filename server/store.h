/*
 * store.h — reading the event log: one event, filtered pages, whole streams.
 *
 * Every read is scoped to a tenant. Stored events are serialised to JSON by
 * PostgreSQL itself (one json_build_object per row), so a page is assembled by
 * concatenation and a stream is copied row by row at constant memory.
 */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include "filter.h"
#include "mem.h"
#include "status.h"

#include <libpq-fe.h>
#include <stdbool.h>

#define STORE_PAGE_DEFAULT 100
#define STORE_PAGE_MAX 1000
/* The reads of GET /v1/events, long polls and replays: a filter (filter.h) and paging. */
typedef struct read_filter {
    filter f;
    long long after; /* position > after */
    long long upto;  /* position <= upto; 0 = no bound */
    long long limit; /* 0 = no limit (streams) */
    bool limit_given;
} read_filter;

/* Parses the query arguments (filter.h's, and after, limit) into `r` for `tenant`.
 * `paged` applies the page default and maximum. Returns 0, or -1 with *err. Any thread. */
int store_filter_parse(read_filter *r, const char *tenant, filter_arg_fn arg, void *ctx,
                       bool paged, filter_error *err) __attribute__((warn_unused_result));
void store_filter_dispose(read_filter *r);

/* One event as JSON in *json (caller frees): SL_OK, SL_NOT_FOUND or SL_UNAVAILABLE. */
sl_status store_get_event(PGconn **conn, int timeout_ms, const char *tenant, const char *id,
                          char **json) __attribute__((warn_unused_result));
/* A page: writes {"events":[…],"next_after":N,"has_more":b} to `out`. SL_OK or
 * SL_UNAVAILABLE. */
sl_status store_read_page(PGconn **conn, int timeout_ms, const read_filter *f, buf *out)
    __attribute__((warn_unused_result));
/* How store_stream ended: not a status to answer with, as the writer may stop it. */
typedef enum {
    STORE_STREAM_END = 0,          /* every match was written */
    STORE_STREAM_UNAVAILABLE = -1, /* PostgreSQL failed: the lines written are a prefix */
    STORE_STREAM_STOPPED = -3,     /* the writer returned nonzero */
} store_stream_rc;
/* Every match, one JSON line per event, to `write` (returns nonzero to stop). */
store_stream_rc store_stream(PGconn **conn, int timeout_ms, const read_filter *f,
                             int (*write)(const char *line, size_t len, void *arg), void *arg)
    __attribute__((warn_unused_result));
/* How many events match (limit ignored), or -1. */
long long store_count(PGconn **conn, int timeout_ms, const read_filter *f);
/* The highest committed position (0 when empty), or -1. */
long long store_head(PGconn **conn, int timeout_ms);

#endif
