/*
 * sevent.c — shared committed events (see sevent.h).
 */
#include "sevent.h"
#include "mem.h"

#include <stdlib.h>

sevent *sevent_new(long long position, const char *tenant, const char *stream, const char *type,
                   const char *key, const char *correlation_id, const char *json, size_t len)
{
    sevent *e = xcalloc(1, sizeof *e);
    atomic_init(&e->refs, 1);
    e->position = position;
    e->tenant = xstrdup(tenant);
    e->stream = xstrdup(stream);
    e->type = xstrdup(type);
    e->key = xstrdup(key);
    e->correlation_id = xstrdup(correlation_id);
    e->json = xstrndup(json, len);
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
    free(e->tenant);
    free(e->stream);
    free(e->type);
    free(e->key);
    free(e->correlation_id);
    free(e->json);
    free(e);
}
