/*
 * sevent.c — shared committed events (see sevent.h).
 */
#include "sevent.h"
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

sevent *sevent_new(long long position, const char *id, const char *tenant, const char *stream,
                   const char *type, const char *key, const char *correlation_id, const char *json,
                   size_t len)
{
    if (!id) id = "";
    size_t li = strlen(id), lt = strlen(tenant), ls = strlen(stream), lty = strlen(type);
    size_t lk = key ? strlen(key) : 0, lc = correlation_id ? strlen(correlation_id) : 0;
    sevent *e = xmalloc(sizeof *e + li + lt + ls + lty + lk + lc + len + 7);
    char *w = (char *)(e + 1);
    atomic_init(&e->refs, 1);
    e->position = position;
    e->id = place(&w, id, li);
    e->tenant = place(&w, tenant, lt);
    e->stream = place(&w, stream, ls);
    e->type = place(&w, type, lty);
    e->key = key ? place(&w, key, lk) : NULL;
    e->correlation_id = place(&w, correlation_id ? correlation_id : "", lc);
    e->json = w;
    place(&w, json, len);
    e->json_len = len;
    return e;
}

sevent *sevent_ref(sevent *e)
{
    atomic_fetch_add(&e->refs, 1);
    return e;
}

void sevent_unref(sevent *e)
{
    if (!e || atomic_fetch_sub(&e->refs, 1) != 1) return;
    free(e);
}
