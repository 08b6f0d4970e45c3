/*
 * sevent.h — a committed event, serialised once and shared by refcount.
 *
 * The tail reads each committed event once; every subscriber that wants it
 * (WebSocket, SSE, long poll) holds a reference to the same bytes, and the
 * last one to let go frees them (as redis shares objects with incrRefCount).
 */
#ifndef SLUICE_SEVENT_H
#define SLUICE_SEVENT_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct sevent {
    atomic_int refs;
    long long position;
    char *tenant, *stream, *type; /* owned */
    char *key, *correlation_id;   /* owned; key may be NULL */
    char *json;                   /* owned: the stored envelope as JSON */
    size_t json_len;
} sevent;

/* A new event with one reference (the caller's). Strings are copied. */
sevent *sevent_new(long long position, const char *tenant, const char *stream, const char *type,
                   const char *key, const char *correlation_id, const char *json, size_t len);
sevent *sevent_ref(sevent *e);
void sevent_unref(sevent *e);

#endif
