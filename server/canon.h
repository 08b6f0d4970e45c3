/*
 * canon.h — JSON text written from a jansson tree without jansson's dumper.
 *
 * Why not json_dumps: the publish path writes every event's `data` once and hashes
 * every client-identified envelope in a canonical form; jansson's JSON_SORT_KEYS
 * allocates and sorts a key array per object and looks every key up again, which
 * profiled as the largest single cost of a publish. These writers walk the tree once
 * into a caller's buffer, sorting keys on the stack.
 *
 * canon_canonical() writes byte for byte what json_dumps(v, JSON_COMPACT |
 * JSON_SORT_KEYS | JSON_ENSURE_ASCII) writes (the idempotency hash of events stored
 * before it existed must not change); canon_compact() what JSON_COMPACT writes.
 * tests/unit/server/canon.c and the envelope fuzz target hold them to that.
 */
#ifndef SLUICE_CANON_H
#define SLUICE_CANON_H

#include "mem.h"

#include <jansson.h>

/* Appends the canonical text of `v` (sorted keys, compact, non-ASCII escaped). */
void canon_canonical(buf *b, const json_t *v);
/* Appends the compact text of `v` (keys in insertion order, UTF-8 as is). */
void canon_compact(buf *b, const json_t *v);

#endif
