/*
 * reqschema.h — request-body schemas: every JSON request body of
 * openapi/openapi.yaml, compiled at start-up, checked before a handler reads it.
 *
 * Why: the OpenAPI document is the contract of Sluice's REST API. Checking bodies
 * against its own request schemas (with the validator that checks events,
 * schema/validator.h) keeps what Sluice accepts and what the document says one and
 * the same thing, instead of hand-written checks that drift from it. The build
 * embeds the document as JSON (scripts/embed-openapi-json.py → openapi_json[]).
 *
 * For each operation whose requestBody has `application/json` content, its schema
 * is made standalone — every `#/components/schemas/X` it reaches is copied under
 * `$defs` and the references rewritten to `#/$defs/X` — and compiled as JSON
 * Schema 2020-12. Operations are named by their `operationId` (e.g.
 * "post_v1_keys"); handlers use the constants below.
 *
 * What a schema cannot say (a name already taken, a tenant the caller may not act
 * for, one field limiting another) stays with the code that knows it.
 */
#ifndef SLUICE_REQSCHEMA_H
#define SLUICE_REQSCHEMA_H

#include <jansson.h>
#include <stdbool.h>

/* operationIds of the bodies checked today */
#define REQSCHEMA_KEY_CREATE "post_v1_keys"
#define REQSCHEMA_GROUP_CREATE "post_v1_streams_stream_groups"
#define REQSCHEMA_GROUP_NACK "post_v1_streams_stream_groups_group_nack"
#define REQSCHEMA_GROUP_FETCH "post_v1_streams_stream_groups_group_fetch"
#define REQSCHEMA_GROUP_ACK "post_v1_streams_stream_groups_group_ack"
#define REQSCHEMA_GROUP_EXTEND "post_v1_streams_stream_groups_group_extend"
#define REQSCHEMA_WEBHOOK_CREATE "post_v1_webhooks"
#define REQSCHEMA_STREAM_SETTINGS "put_v1_streams_stream"
#define REQSCHEMA_SCHEMA_COMPAT "put_v1_schemas_type_compatibility"
#define REQSCHEMA_DEAD_LETTER_REPROCESS "post_v1_dead_letters_reprocess"
#define REQSCHEMA_PROJECTION_CREATE "post_v1_projections"
#define REQSCHEMA_REPLAY_CREATE "post_v1_replays"

/* Compiles the request schemas of the embedded document. 0, or -1 when one does not
 * compile (logged with the schema's errors: a fault of openapi.yaml, so Sluice does
 * not serve). Call once at start-up, before any reqschema_check. */
int reqschema_init(void) __attribute__((warn_unused_result));
/* Frees what reqschema_init built. No check may be running. */
void reqschema_shutdown(void);

/* True when `operation` has a compiled request schema. */
bool reqschema_known(const char *operation);

/* Checks `body` (borrowed) against the request schema of `operation`. Returns NULL
 * when it conforms, else a 400 `invalid_request` problem (caller owns) whose
 * `errors` list every violation (up to SCHEMA_MAX_ERRORS) as {"path": JSON Pointer
 * into the body, "keyword", "message"}. An operation without a request schema is a
 * fault of the caller: logged, and answered as a 500 `internal` problem.
 *
 * JSON Schema counts 1.0 as an integer; so that code reading a checked body can use
 * json_integer_value, every integral real number of `body` that fits an int64 is
 * first replaced by the equal JSON integer (`body` is modified in place). Request
 * schemas bound their integers (`maximum`) so no larger one passes.
 * Any thread, concurrently; no lock. */
json_t *reqschema_check(const char *operation, json_t *body);

#endif
