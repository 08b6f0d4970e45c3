/*
 * baseevent.h — the seed producers' event shape (cai-service's EventFactory
 * `BaseEvent`), mapped onto Sluice's envelope so those producers publish as
 * they are, on the same route, single or in a batch (issue 15).
 *
 * Recognised by its body: an object with a `payload` member and no `data`
 * member is a BaseEvent; any other body is an envelope (an envelope that also
 * sends `payload` is refused there as an unknown field).
 *
 * Mapping: id→id, type→type, payload→data, timestamp→occurred_at,
 * source→source, correlationId→correlation_id (else metadata.correlationId),
 * metadata.causationId→causation_id, metadata.userId→user_id; `metadata` is
 * kept whole, and `version` (the BaseEvent's own format version, e.g. "1.0")
 * is kept in it as metadata.envelope_version: the envelope's `version` is
 * Sluice's per-key version. metadata.tenantId is kept as information only: the
 * tenant is always the API key's. Sluice's placement fields (stream, key,
 * expected_version, schema_version) may be added to a BaseEvent; nothing else.
 *
 * Like cloudevents.c, the mapping only renames: judging the result is
 * envelope_parse's work. The errors it reports are then renamed back, so each
 * names the member the producer sent (/payload/..., /timestamp,
 * /metadata/causationId).
 */
#ifndef SLUICE_BASEEVENT_H
#define SLUICE_BASEEVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define BASEEVENT_VERSION_KEY "envelope_version" /* metadata member that keeps `version` */

/* True when `in` (borrowed) is a BaseEvent body: an object with `payload` and no `data`. */
bool baseevent_is(const json_t *in);

/* The envelope a BaseEvent body (borrowed; baseevent_is) maps to (caller owns; shares the
 * body's values). Members a BaseEvent does not have, and a metadata.envelope_version that
 * disagrees with `version`, are appended to `errors` (borrowed) with batch index `index`,
 * each naming the member as sent; the envelope is returned all the same, so envelope_parse
 * reports everything else too. Any thread. */
json_t *baseevent_envelope(json_t *in, int index, json_t *errors);

/* Renames the paths of errors[from...] (envelope_parse's, about the mapped envelope) to
 * the members of the BaseEvent body `in` (borrowed) they came from. */
void baseevent_name_errors(const json_t *in, json_t *errors, size_t from);

#endif
