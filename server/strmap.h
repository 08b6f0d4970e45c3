/*
 * strmap.h — a string-keyed hash map that grows (open addressing, linear
 * probing). For tables whose size input decides (the schema registry's types);
 * glibc's hsearch_r cannot grow. Not thread-safe: the owner locks.
 */
#ifndef SLUICE_STRMAP_H
#define SLUICE_STRMAP_H

#include <stddef.h>

typedef struct strmap_slot {
    char *key;   /* owned; NULL = empty */
    void *value; /* borrowed */
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots; /* owned */
    size_t cap, len;
} strmap;

void strmap_init(strmap *m);
/* Frees the keys and the table; values are the caller's (call `free_value` on each if set). */
void strmap_dispose(strmap *m, void (*free_value)(void *));
void *strmap_get(const strmap *m, const char *key);
/* Inserts or replaces; returns the replaced value (or NULL). The key is copied. */
void *strmap_put(strmap *m, const char *key, void *value);

#define strmap_foreach(m, i)                                                                   \
    for (size_t i = 0; i < (m)->cap; i++)                                                      \
        if ((m)->slots[i].key)

#endif
