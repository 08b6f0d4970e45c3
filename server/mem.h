/*
 * mem.h — Sluice's one out-of-memory policy.
 *
 * Internal allocations go through these wrappers, which abort the process when
 * the allocator fails (as redis zmalloc does): a gateway that cannot allocate a
 * few bytes cannot answer honestly anyway. Anything a client can grow (bodies,
 * batches, result pages) is bounded *before* it is allocated, so input can never
 * drive these into failure.
 *
 * jansson allocates through xmalloc too (json_set_alloc_funcs), so a JSON tree
 * that cannot be built aborts as loudly as anything else instead of coming back
 * NULL. mem.c sets that in a constructor, before main, so it holds in every
 * program linked with mem.c before its first JSON value: the server, the unit
 * tests (Criterion's runner and the test processes it forks), the conformance
 * runner and the fuzz targets, with no start-up call anyone can forget.
 */
#ifndef SLUICE_MEM_H
#define SLUICE_MEM_H

#include <jansson.h>
#include <stddef.h>
#include <string.h>

void *xmalloc(size_t n);            /* caller frees; never NULL */
void *xcalloc(size_t n, size_t sz); /* caller frees; never NULL */
void *xrealloc(void *p, size_t n);  /* caller frees; never NULL */
char *xstrdup(const char *s);       /* caller frees; NULL in → NULL out */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer for building answers. Embedded: buf_init/buf_dispose. */
typedef struct buf {
    char *data; /* NUL-terminated while len < cap; owned */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
} buf;

void buf_init(buf *b);
void buf_dispose(buf *b);
/* Makes room for `extra` more bytes and a NUL (capacity doubles from 256). */
void buf_reserve(buf *b, size_t extra);
/* Inline because the JSON writers of the publish path (canon.c, eventlog.c, relay.c)
 * append a few bytes at a time: a call per piece was a tenth of Sluice's CPU per event
 * in 100-event batches (perf, bench/run.sh). */
static inline void buf_append(buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) buf_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}
void buf_puts(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *buf_steal(buf *b, size_t *len); /* caller frees; leaves b empty */
/* Writes `v` in decimal and a NUL into out[24]; returns the length. The hot paths'
 * numbers (positions, versions) without printf's format parsing. */
size_t fmt_lld(char out[24], long long v);
/* Appends `v` in decimal. */
void buf_lld(buf *b, long long v);
/* Appends `s` (valid UTF-8, NUL-free) as a quoted, escaped JSON string. */
void buf_json_string(buf *b, const char *s);
/* Appends the compact JSON text of `v` (NULL → null). */
void buf_json(buf *b, const json_t *v);

#endif
