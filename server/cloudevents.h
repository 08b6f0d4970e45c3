/*
 * cloudevents.h — the CloudEvents v1.0 HTTP binding, mapped onto Sluice's
 * envelope so every CloudEvents producer publishes through the one path.
 *
 * Mapping (API.md "Publishing"): type→type, id→id, subject→key,
 * source→source, time→occurred_at, data→data, extensions
 * correlationid→correlation_id, causationid→causation_id, userid→user_id,
 * stream→stream. The remaining attributes (specversion, datacontenttype,
 * dataschema, other extensions) are kept under metadata.cloudevents, so nothing
 * a producer sent is lost.
 */
#ifndef SLUICE_CLOUDEVENTS_H
#define SLUICE_CLOUDEVENTS_H

#include <jansson.h>

/* A structured-mode event (borrowed) as an envelope (caller owns). A value that is not
 * a JSON object, or lacks specversion "1.0", is returned as is / with the attribute kept,
 * so the envelope checks report it. */
json_t *cloudevents_structured(json_t *ce);
/* A batch (array) of structured events → array of envelopes (caller owns). */
json_t *cloudevents_batch(json_t *batch);

/* Looks a request header up by name (case-insensitive), or NULL. */
typedef const char *(*ce_header_fn)(void *ctx, const char *name);
/* Lists every header: calls `each(name, value, arg)`. */
typedef void (*ce_headers_each_fn)(void *ctx, void (*each)(const char *name, const char *value,
                                                           void *arg),
                                   void *arg);
/* A binary-mode event: ce-* headers and `data` (borrowed, the decoded body) → envelope
 * (caller owns). */
json_t *cloudevents_binary(ce_headers_each_fn headers, void *ctx, json_t *data);

#endif
