/*
 * stored_event.c — shared committed events (see stored_event.h).
 */
#include "stored_event.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

/* Copies `s` (n bytes + NUL) to *w and advances it. */
static const char *place(char **w, const char *s, size_t n)
{
    char *at = *w;
    memcpy(at, s, n);
    at[n] = '\0';
    *w += n + 1;
    return at;
}

stored_event *stored_event_make(const stored_event_fields *f, const char *json, size_t len)
{
    const char *id = f->id ? f->id : "";
    size_t li = strlen(id), lt = strlen(f->tenant), ls = strlen(f->stream), lty = strlen(f->type);
    size_t lk = f->key ? strlen(f->key) : 0, lc = f->correlation_id ? strlen(f->correlation_id) : 0;
    size_t lu = f->user_id ? strlen(f->user_id) : 0;
    stored_event *e = xmalloc(sizeof *e + li + lt + ls + lty + lk + lc + lu + len + 8);
    char *w = (char *)(e + 1);
    atomic_init(&e->refs, 1);
    e->position = f->position;
    e->time_ms = f->time_ms;
    e->id = place(&w, id, li);
    e->tenant = place(&w, f->tenant, lt);
    e->stream = place(&w, f->stream, ls);
    e->type = place(&w, f->type, lty);
    e->key = f->key ? place(&w, f->key, lk) : NULL;
    e->correlation_id = place(&w, f->correlation_id ? f->correlation_id : "", lc);
    e->user_id = f->user_id ? place(&w, f->user_id, lu) : NULL;
    e->json = w;
    place(&w, json, len);
    e->json_len = len;
    return e;
}

stored_event *stored_event_new(long long position, const char *id, const char *tenant,
                               const char *stream, const char *type, const char *key,
                               const char *correlation_id, const char *json, size_t len)
{
    stored_event_fields f = {.position = position,
                             .id = id,
                             .tenant = tenant,
                             .stream = stream,
                             .type = type,
                             .key = key,
                             .correlation_id = correlation_id};
    return stored_event_make(&f, json, len);
}

stored_event *stored_event_ref(stored_event *e)
{
    atomic_fetch_add(&e->refs, 1);
    return e;
}

void stored_event_unref(stored_event *e)
{
    if (!e || atomic_fetch_sub(&e->refs, 1) != 1) return;
    free(e);
}
