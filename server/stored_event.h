/*
 * stored_event.h — a committed event, serialised once and shared by refcount
 * (an event still being published is an incoming_event, envelope.h).
 *
 * The appender builds one for each event it commits (the tail, for another
 * instance's commits and catch-up reads, builds them from PostgreSQL rows);
 * every consumer that wants it (WebSocket, SSE, long poll, the Redis relay)
 * holds a reference to the same bytes, and the last one to let go frees them
 * (as redis shares objects with incrRefCount). One allocation holds the
 * struct and every string.
 */
#ifndef SLUICE_STORED_EVENT_H
#define SLUICE_STORED_EVENT_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct stored_event {
    atomic_int refs;
    long long position;
    const char *id, *tenant, *stream, *type; /* inside the allocation */
    const char *key, *correlation_id;        /* inside the allocation; key may be NULL */
    const char *user_id;                     /* inside the allocation; may be NULL */
    long long time_ms;                       /* the commit time, ms since the epoch */
    char *json;                              /* inside the allocation: the stored envelope */
    size_t json_len;
} stored_event;

/* What a reader filters on, besides the text. */
typedef struct stored_event_fields {
    long long position;
    const char *id, *tenant, *stream, *type, *key, *correlation_id, *user_id;
    long long time_ms;
} stored_event_fields;

/* A new event with one reference (the caller's). Strings are copied; `id`, `key` and
 * `user_id` may be NULL. */
stored_event *stored_event_make(const stored_event_fields *f, const char *json, size_t len);
/* stored_event_make without a user id or time (tests, fuzz targets). */
stored_event *stored_event_new(long long position, const char *id, const char *tenant,
                               const char *stream, const char *type, const char *key,
                               const char *correlation_id, const char *json, size_t len);
stored_event *stored_event_ref(stored_event *e);
void stored_event_unref(stored_event *e);

#endif
