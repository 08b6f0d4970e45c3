/*
 * filter.h — the one filter of Sluice: which events a reader chooses.
 *
 * Every reader — WebSocket and SSE subscriptions, long polls, GET /v1/events pages
 * and NDJSON, replays, projections — chooses events the same way: the tenant
 * always, then streams, types (exact names or `prefix.*` wildcards), key,
 * correlation id, user id, a commit-time window, and `where`: up to 16 conditions
 * on JSON Pointers into the stored envelope, all of which must hold.
 *
 * This module owns the three things a filter is used for, so they cannot drift:
 *   - parsing, from query arguments (a comma list; `where` as URL-encoded JSON) or
 *     from a JSON object, into one compiled filter, with one set of error messages;
 *   - matching a committed event in memory (live delivery, catch-up), on the text
 *     the hub already holds (jsonscan.h), without parsing it into a tree;
 *   - the SQL it becomes for history reads (store.c, projections.c).
 *
 * `where` semantics (identical in memory and in SQL):
 *   eq / ne      JSON equality (numbers by value); `ne` also holds when the path is absent
 *   in           equal to one element of the value (an array of 1 to 64 elements)
 *   gt gte lt lte  numbers with a number value; strings with a string value, compared
 *                byte by byte (code point order); a field of another kind never matches
 *   prefix       a string field that starts with the value (a string)
 *   exists       true: the path is present (null counts); false: it is absent
 * A path starts with an envelope field: /data/…, /metadata/…, or one of /id /type
 * /stream /key /version /position /correlation_id /causation_id /user_id /source
 * /schema_version /tenant_id /time /occurred_at.
 */
#ifndef SLUICE_FILTER_H
#define SLUICE_FILTER_H

#include "envelope.h"
#include "mem.h"
#include "stored_event.h"

#include <jansson.h>
#include <stdbool.h>

#define FILTER_MAX_STREAMS 16
#define FILTER_MAX_TYPES 32
#define FILTER_MAX_WHERE 16
#define FILTER_MAX_IN 64
/* A limit as a string literal, for messages that name it. */
#define FILTER_STR(x) #x
#define FILTER_XSTR(x) FILTER_STR(x)

typedef enum {
    FILTER_EQ,
    FILTER_NE,
    FILTER_IN,
    FILTER_GT,
    FILTER_GTE,
    FILTER_LT,
    FILTER_LTE,
    FILTER_PREFIX,
    FILTER_EXISTS
} filter_op;

/* One `where` condition, compiled. */
typedef struct filter_cond {
    char *pointer;  /* owned: as given */
    char **segs;    /* owned: the pointer's unescaped tokens */
    int n_segs;
    filter_op op;
    json_t *value;  /* owned (NULL for exists) */
    bool exists;    /* exists: the wanted answer */
    int field;      /* a string the committed event holds itself (/type, /stream, …): read
                     * from it, not from the text; 0 = scan the text */
} filter_cond;

typedef struct filter {
    char tenant[ENVELOPE_TENANT_MAX + 1];
    bool any_tenant;                  /* every tenant's events (the Redis relay) */
    char *streams[FILTER_MAX_STREAMS]; /* owned; none = any */
    int n_streams;
    char *types[FILTER_MAX_TYPES]; /* owned; exact names, or prefixes ending in '.' */
    bool type_prefix[FILTER_MAX_TYPES];
    int n_types;
    bool any_type;                /* a "*" entry: no type condition */
    char *key;                    /* owned; NULL = any */
    char *correlation_id;         /* owned; NULL = any */
    char *user_id;                /* owned; NULL = any */
    long long since_ms, until_ms; /* commit time: since inclusive, until exclusive */
    bool has_since, has_until;
    filter_cond where[FILTER_MAX_WHERE];
    int n_where;
    char *where_key; /* owned: the conditions' canonical text (NULL: none), for filter_memo */
    unsigned long long where_hash;
} filter;

/* What a parse found wrong: the problem code (invalid_filter for `where`, the caller's
 * code for the rest) and a message naming the field. */
typedef struct filter_error {
    bool where;      /* the `where` part: answer 400 invalid_filter */
    char member[64]; /* filter_parse_json: the member at fault ("" when none) */
    char message[256];
} filter_error;

/* Looks a query argument up by name (borrowed result or NULL). */
typedef const char *(*filter_arg_fn)(void *ctx, const char *name);

/* Query arguments stream, type, key, correlation_id, user_id, since, until, where. Each
 * of stream and type is a comma list. 0, or -1 with *err (f disposed). */
int filter_parse_query(filter *f, filter_arg_fn arg, void *ctx, filter_error *err)
    __attribute__((warn_unused_result));

/* A JSON object's members streams (array) or stream (string), types (array) or type
 * (string or comma list), key, correlation_id, user_id, since, until (RFC 3339), where
 * (array). A member not in `allowed` (a NULL-terminated list of those names; NULL = all)
 * is an error, as is any other member unless `extra` lists it (then it is ignored here;
 * a "*" entry in `extra` ignores every other member).
 * `obj` may be NULL or JSON null (no conditions). 0, or -1 with *err. */
int filter_parse_json(filter *f, const json_t *obj, const char *const *allowed,
                      const char *const *extra, filter_error *err)
    __attribute__((warn_unused_result));

/* The `where` list alone (a JSON array). 0, or -1 with *err. */
int filter_parse_where(filter *f, const json_t *where, filter_error *err)
    __attribute__((warn_unused_result));

/* Adds one type entry ("file.uploaded", "file.*", "*"); false if malformed or too many. */
bool filter_add_type(filter *f, const char *t);

/* True when the committed event `e` passes every condition. Any thread. */
bool filter_matches(const filter *f, const stored_event *e);

/* What the `where` lists seen so far answered for one event: many subscribers with the
 * same conditions (every open dashboard of one view) cost one evaluation per event. The
 * caller zeroes it for each event (the hub, for each event it publishes). */
#define FILTER_MEMO_SLOTS 8
typedef struct filter_memo {
    const stored_event *event;
    int n;
    struct {
        unsigned long long hash;
        const char *key; /* borrowed from a filter alive while the memo is */
        bool holds;
    } slot[FILTER_MEMO_SLOTS];
} filter_memo;

/* filter_matches, remembering the `where` answer in `memo` (for memo->event). */
bool filter_matches_memo(const filter *f, const stored_event *e, filter_memo *memo);

/* A deep copy of `src` into `dst`. */
void filter_copy(filter *dst, const filter *src);
void filter_dispose(filter *f);

/* SQL for history reads: a WHERE clause over the `events` table built with numbered
 * parameters ($1…). Parameter texts are owned by the query. */
typedef struct filter_sql {
    buf sql;
    const char **vals;
    int n, cap;
    char **owned;
    int n_owned;
} filter_sql;

void filter_sql_init(filter_sql *q);
void filter_sql_dispose(filter_sql *q);
/* Adds a parameter (copied); returns its number for $N. */
int filter_sql_param(filter_sql *q, const char *val);
/* Appends " AND …" for every condition of `f` (tenant included unless any_tenant).
 * Which of them an index serves is said in the README ("Filters"). */
void filter_sql_where(filter_sql *q, const filter *f);

#endif
