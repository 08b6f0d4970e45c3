/*
 * compat.h — schema evolution rules: may a new version of a type's schema
 * replace the old one under a compatibility mode?
 *
 * Modes as in Confluent Schema Registry: BACKWARD (consumers on the new schema
 * read data written with the old: every old-valid instance is new-valid),
 * FORWARD (consumers on the old schema read new data), FULL (both), NONE, and
 * the _TRANSITIVE forms (checked against every earlier version, not only the
 * latest). The check is structural and JSON-aware, keyword by keyword, and
 * errs on the safe side: what it cannot prove compatible it reports, with a
 * reason naming the schema path. One pragmatic choice, stated by the issue:
 * a property added to an *open* object (additionalProperties absent or true)
 * counts as compatible, since open content means producers may add fields.
 */
#ifndef SLUICE_SCHEMA_COMPAT_H
#define SLUICE_SCHEMA_COMPAT_H

#include <jansson.h>
#include <stdbool.h>

typedef enum {
    COMPAT_NONE = 0,
    COMPAT_BACKWARD,
    COMPAT_FORWARD,
    COMPAT_FULL,
    COMPAT_BACKWARD_TRANSITIVE,
    COMPAT_FORWARD_TRANSITIVE,
    COMPAT_FULL_TRANSITIVE,
} compat_mode;

/* Parses "BACKWARD", "full_transitive", …; returns -1 on an unknown name. */
int compat_mode_parse(const char *name);
const char *compat_mode_name(compat_mode m);
bool compat_mode_transitive(compat_mode m);

/* Checks `new_schema` against one earlier `old_schema` (both borrowed) under `mode`
 * (the transitive forms check like their plain form; the caller loops over versions).
 * Returns true when compatible; otherwise appends {"path","message","direction"} reasons
 * to `reasons` (borrowed array). Pure; any thread. */
bool compat_check(json_t *old_schema, json_t *new_schema, compat_mode mode, json_t *reasons);

/* True when every instance valid under `a` is valid under `b`, as far as the structural
 * rules can tell; reasons appended as above with `direction` copied in. */
bool compat_subset(json_t *a, json_t *b, const char *direction, json_t *reasons);

#endif
