/*
 * jsonparse.h — a fast path in front of jansson's parser for request bodies.
 *
 * Why: jansson reads its input a character at a time through a stream callback;
 * on the publish path that was the largest cost of an event (about 80,000
 * instructions per 600-byte envelope under callgrind). This parser walks the
 * buffer with pointers and builds the same jansson tree with jansson's own
 * constructors. It accepts only what it is sure jansson accepts in the same way
 * (RFC 8259 JSON, valid UTF-8, no \u0000, integers that fit json_int_t, finite
 * reals, no duplicate keys, modest depth); for anything else it returns NULL and
 * the caller asks jansson, whose answer (a tree, or an error with line and column)
 * is then the answer. tests/unit/server/jsonparse.c and the envelope fuzz target
 * check that both parsers agree.
 */
#ifndef SLUICE_JSONPARSE_H
#define SLUICE_JSONPARSE_H

#include <jansson.h>
#include <stddef.h>

/* The value `buf` holds (any JSON value, surrounded by whitespace at most), as
 * json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) would build it; or
 * NULL: not decided here (jansson's turn). */
json_t *jsonparse_load(const char *buf, size_t len);

/* jsonparse_load, then jansson when it declines: the one body parser of Sluice. */
json_t *jsonparse_body(const char *buf, size_t len, json_error_t *err);

/* Text PostgreSQL wrote for a json/jsonb value (a stored filter, a definition): as
 * json_loads, except that an integer beyond 64 bits (numeric prints 1e21 as 22 digits)
 * is read as a real instead of failing the whole document. NULL if it does not parse. */
json_t *jsonparse_stored(const char *text);

#endif
