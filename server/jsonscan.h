/*
 * jsonscan.h — finding the value a JSON Pointer names inside JSON text, without
 * building a tree.
 *
 * Why: the hub offers every committed event to every live subscription, and a
 * subscription's `where` conditions (filter.h) look at a few fields of the
 * stored envelope. The hub holds that envelope as text (stored_event.h); parsing it
 * into a jansson tree once per subscriber would cost more than the delivery.
 * This walks the text once per condition, skipping every value that is not on
 * the pointer's way, and hands back the span of the one that is.
 *
 * The text is trusted to be valid JSON (Sluice wrote it, or PostgreSQL did);
 * on text that is not, the scan answers "absent" and never reads past `len`.
 */
#ifndef SLUICE_JSONSCAN_H
#define SLUICE_JSONSCAN_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    JSONSCAN_OBJECT,
    JSONSCAN_ARRAY,
    JSONSCAN_STRING,
    JSONSCAN_NUMBER,
    JSONSCAN_TRUE,
    JSONSCAN_FALSE,
    JSONSCAN_NULL
} jsonscan_kind;

/* A value found in the text: [start, end) is its whole JSON text (a string's quotes
 * included). */
typedef struct jsonscan_value {
    jsonscan_kind kind;
    const char *start, *end;
} jsonscan_value;

/* Follows `segs` (unescaped JSON Pointer reference tokens) from the top value of
 * `text`. True and *out set when the value exists. An array is indexed by a token of
 * decimal digits without a leading zero. */
bool jsonscan_find(const char *text, size_t len, char *const *segs, int n_segs,
                   jsonscan_value *out);

/* A string value's contents, unescaped, into dst (NUL-terminated, at most cap-1 bytes).
 * Returns the unescaped length, or -1 when it does not fit in `cap` or is malformed. */
long jsonscan_string(const jsonscan_value *v, char *dst, size_t cap);

#endif
