/*
 * strmap.c — growable string hash map (see strmap.h). FNV-1a hashing.
 */
#include "strmap.h"
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void strmap_init(strmap *m)
{
    m->cap = 16;
    m->len = 0;
    m->slots = xcalloc(m->cap, sizeof *m->slots);
}

void strmap_dispose(strmap *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        free(m->slots[i].key);
        if (free_value) free_value(m->slots[i].value);
    }
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}

static strmap_slot *find(const strmap *m, const char *key)
{
    size_t i = hash(key) & (m->cap - 1);
    while (m->slots[i].key && strcmp(m->slots[i].key, key) != 0) i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

void *strmap_get(const strmap *m, const char *key)
{
    strmap_slot *s = find(m, key);
    return s->key ? s->value : NULL;
}

static void grow(strmap *m)
{
    strmap old = *m;
    m->cap *= 2;
    m->len = 0;
    m->slots = xcalloc(m->cap, sizeof *m->slots);
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i].key) continue;
        strmap_slot *s = find(m, old.slots[i].key);
        *s = old.slots[i];
        m->len++;
    }
    free(old.slots);
}

void *strmap_put(strmap *m, const char *key, void *value)
{
    if ((m->len + 1) * 4 > m->cap * 3) grow(m);
    strmap_slot *s = find(m, key);
    if (s->key) {
        void *old = s->value;
        s->value = value;
        return old;
    }
    s->key = xstrdup(key);
    s->value = value;
    m->len++;
    return NULL;
}
