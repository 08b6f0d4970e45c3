/*
 * sevent.h — a committed event, serialised once and shared by refcount.
 *
 * The appender builds one for each event it commits (the tail, for another
 * instance's commits and catch-up reads, builds them from PostgreSQL rows);
 * every consumer that wants it (WebSocket, SSE, long poll, the Redis relay)
 * holds a reference to the same bytes, and the last one to let go frees them
 * (as redis shares objects with incrRefCount). One allocation holds the
 * struct and every string.
 */
#ifndef SLUICE_SEVENT_H
#define SLUICE_SEVENT_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct sevent {
    atomic_int refs;
    long long position;
    const char *id, *tenant, *stream, *type; /* inside the allocation */
    const char *key, *correlation_id;        /* inside the allocation; key may be NULL */
    const char *user_id;                     /* inside the allocation; may be NULL */
    long long time_ms;                       /* the commit time, ms since the epoch */
    char *json;                              /* inside the allocation: the stored envelope */
    size_t json_len;
} sevent;

/* What a reader filters on, besides the text. */
typedef struct sevent_fields {
    long long position;
    const char *id, *tenant, *stream, *type, *key, *correlation_id, *user_id;
    long long time_ms;
} sevent_fields;

/* A new event with one reference (the caller's). Strings are copied; `id`, `key` and
 * `user_id` may be NULL. */
sevent *sevent_make(const sevent_fields *f, const char *json, size_t len);
/* sevent_make without a user id or time (tests, fuzz targets). */
sevent *sevent_new(long long position, const char *id, const char *tenant, const char *stream,
                   const char *type, const char *key, const char *correlation_id, const char *json,
                   size_t len);
sevent *sevent_ref(sevent *e);
void sevent_unref(sevent *e);

#endif
