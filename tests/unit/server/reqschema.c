/* Unit tests of server/reqschema.c: the request schemas of the embedded openapi.yaml compile,
 * and a body is answered as the document says — valid, or a 400 invalid_request listing each
 * violation with its JSON Pointer. */
#include "reqschema.h"

#include <criterion/criterion.h>
#include <string.h>

static void setup(void)
{
    cr_assert_eq(reqschema_init(), 0, "every request schema of openapi.yaml compiles");
}

static void teardown(void)
{
    reqschema_shutdown();
}

TestSuite(reqschema, .init = setup, .fini = teardown);

/* The problem for `text` against `operation` (NULL when valid); the body is freed. */
static json_t *check(const char *operation, const char *text)
{
    json_error_t err;
    json_t *body = json_loads(text, JSON_DECODE_ANY, &err);
    cr_assert_not_null(body, "test JSON must parse: %s (%s)", text, err.text);
    json_t *p = reqschema_check(operation, body);
    json_decref(body);
    return p;
}

static void assert_valid(const char *operation, const char *text)
{
    json_t *p = check(operation, text);
    char *dump = p ? json_dumps(p, 0) : NULL;
    cr_assert_null(p, "%s: %s is valid, got %s", operation, text, dump);
}

/* Asserts `text` is refused with a 400 invalid_request naming (path, keyword) among its errors;
 * returns the problem (caller frees). */
static json_t *assert_refused(const char *operation, const char *text, const char *path,
                              const char *keyword)
{
    json_t *p = check(operation, text);
    cr_assert_not_null(p, "%s: %s must be refused", operation, text);
    cr_assert_str_eq(json_string_value(json_object_get(p, "code")), "invalid_request");
    cr_assert_eq(json_integer_value(json_object_get(p, "status")), 400);
    json_t *errors = json_object_get(p, "errors");
    char *dump = json_dumps(errors, 0);
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        cr_assert(json_is_string(json_object_get(e, "message")), "each error has a message: %s",
                  dump);
        cr_assert_null(json_object_get(e, "index"), "no batch index: %s", dump);
        if (!strcmp(json_string_value(json_object_get(e, "path")), path) &&
            !strcmp(json_string_value(json_object_get(e, "keyword")), keyword))
            found = true;
    }
    cr_assert(found, "%s: %s: expected %s at \"%s\", got %s", operation, text, keyword, path, dump);
    free(dump);
    return p;
}

static void refused(const char *operation, const char *text, const char *path, const char *keyword)
{
    json_decref(assert_refused(operation, text, path, keyword));
}

Test(reqschema, every_operation_the_handlers_check_has_a_schema)
{
    const char *ops[] = {REQSCHEMA_KEY_CREATE,    REQSCHEMA_GROUP_CREATE,
                         REQSCHEMA_GROUP_NACK,    REQSCHEMA_STREAM_SETTINGS,
                         REQSCHEMA_SCHEMA_COMPAT, REQSCHEMA_DEAD_LETTER_REPROCESS,
                         "post_v1_events",        "post_v1_projections",
                         "post_v1_replays",       "post_v1_schemas"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        cr_assert(reqschema_known(ops[i]), "%s has a request schema", ops[i]);
    cr_assert_not(reqschema_known("get_v1_events"), "a GET has no body");
    cr_assert_not(reqschema_known("no_such_operation"));
}

Test(reqschema, an_unknown_operation_is_an_internal_error_not_a_client_one)
{
    json_t *p = check("no_such_operation", "{}");
    cr_assert_not_null(p);
    cr_assert_eq(json_integer_value(json_object_get(p, "status")), 500);
    json_decref(p);
}

Test(reqschema, valid_bodies_pass)
{
    assert_valid(REQSCHEMA_KEY_CREATE, "{\"scopes\":[\"read\"]}");
    assert_valid(REQSCHEMA_KEY_CREATE,
                 "{\"tenant_id\":\"acme\",\"scopes\":[\"publish\",\"read\"],\"name\":\"acme\"}");
    assert_valid(REQSCHEMA_GROUP_CREATE,
                 "{\"name\":\"indexer\",\"start\":\"$\",\"max_deliveries\":3,\"retry\":{"
                 "\"base_delay_ms\":1000,\"max_delay_ms\":30000,\"jitter\":true},"
                 "\"ack_timeout_ms\":30000}");
    assert_valid(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"start\":\"12\"}");
    assert_valid(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"start\":12}");
    assert_valid(REQSCHEMA_GROUP_NACK, "{\"event_id\":\"e\",\"error\":\"x\",\"retryable\":false}");
    assert_valid(REQSCHEMA_STREAM_SETTINGS, "{\"retention\":{\"max_age_ms\":2592000000}}");
    assert_valid(REQSCHEMA_STREAM_SETTINGS, "{\"retention\":{\"max_age_ms\":null}}");
    assert_valid(REQSCHEMA_SCHEMA_COMPAT, "{\"compatibility\":\"FULL_TRANSITIVE\"}");
    assert_valid(REQSCHEMA_DEAD_LETTER_REPROCESS, "{}");
    assert_valid(REQSCHEMA_DEAD_LETTER_REPROCESS,
                 "{\"stream\":\"s\",\"group\":\"g\",\"max_age_ms\":60000,\"ids\":[\"1\",2],"
                 "\"dry_run\":true,\"max_per_second\":10}");
}

Test(reqschema, a_name_of_256_characters_is_valid_whatever_its_bytes)
{
    /* maxLength counts characters: 256 "é" are 512 bytes */
    char text[1024] = "{\"scopes\":[\"read\"],\"name\":\"";
    for (int i = 0; i < 256; i++)
        strcat(text, "\xc3\xa9");
    strcat(text, "\"}");
    assert_valid(REQSCHEMA_KEY_CREATE, text);
    text[strlen(text) - 2] = '\0';
    strcat(text, "e\"}");
    refused(REQSCHEMA_KEY_CREATE, text, "/name", "maxLength");
}

Test(reqschema, an_unknown_field_is_refused_at_its_pointer)
{
    refused(REQSCHEMA_KEY_CREATE, "{\"scopes\":[\"read\"],\"tenant\":\"acme\"}", "/tenant",
            "additionalProperties");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"retry\":{\"backoff\":\"linear\"}}",
            "/retry/backoff", "additionalProperties");
    refused(REQSCHEMA_STREAM_SETTINGS, "{\"retention\":{\"max_age_ms\":1,\"extra\":1}}",
            "/retention/extra", "additionalProperties");
    refused(REQSCHEMA_SCHEMA_COMPAT, "{\"compatibility\":\"NONE\",\"extra\":1}", "/extra",
            "additionalProperties");
    refused(REQSCHEMA_DEAD_LETTER_REPROCESS, "{\"extra\":1}", "/extra", "additionalProperties");
    refused(REQSCHEMA_GROUP_NACK, "{\"event_id\":\"e\",\"extra\":1}", "/extra",
            "additionalProperties");
}

Test(reqschema, a_wrong_type_is_refused_at_its_pointer)
{
    refused(REQSCHEMA_KEY_CREATE, "{\"scopes\":\"read\"}", "/scopes", "type");
    refused(REQSCHEMA_KEY_CREATE, "[]", "", "type");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"max_deliveries\":\"3\"}", "/max_deliveries",
            "type");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"retry\":5}", "/retry", "type");
    refused(REQSCHEMA_STREAM_SETTINGS, "{\"retention\":{\"max_age_ms\":1.5}}",
            "/retention/max_age_ms", "type");
    refused(REQSCHEMA_STREAM_SETTINGS, "{\"retention\":{\"max_age_ms\":\"1000\"}}",
            "/retention/max_age_ms", "type");
    refused(REQSCHEMA_DEAD_LETTER_REPROCESS, "{\"dry_run\":\"yes\"}", "/dry_run", "type");
    refused(REQSCHEMA_DEAD_LETTER_REPROCESS, "{\"ids\":[true]}", "/ids/0", "type");
    refused(REQSCHEMA_GROUP_NACK, "{\"event_id\":\"e\",\"retryable\":\"no\"}", "/retryable",
            "type");
}

Test(reqschema, a_missing_required_field_is_refused_at_its_pointer)
{
    refused(REQSCHEMA_KEY_CREATE, "{\"name\":\"k\"}", "/scopes", "required");
    refused(REQSCHEMA_GROUP_CREATE, "{}", "/name", "required");
    refused(REQSCHEMA_STREAM_SETTINGS, "{\"retention\":{}}", "/retention/max_age_ms", "required");
    refused(REQSCHEMA_SCHEMA_COMPAT, "{}", "/compatibility", "required");
    refused(REQSCHEMA_GROUP_FETCH, "{\"max\":3}", "/consumer", "required");
    refused(REQSCHEMA_GROUP_ACK, "{}", "/receipts", "required");
    /* a nack names its delivery by receipt (consumer API) or by event id (a Redis worker) */
    refused(REQSCHEMA_GROUP_NACK, "{\"error\":\"no id\"}", "", "oneOf");
    refused(REQSCHEMA_GROUP_NACK, "{\"receipt\":\"1.1.0.w\",\"event_id\":\"e\"}", "", "oneOf");
}

Test(reqschema, values_out_of_their_range_or_enum_are_refused)
{
    refused(REQSCHEMA_KEY_CREATE, "{\"scopes\":[]}", "/scopes", "minItems");
    refused(REQSCHEMA_KEY_CREATE, "{\"scopes\":[\"read\",\"bogus\"]}", "/scopes/1", "enum");
    refused(REQSCHEMA_KEY_CREATE, "{\"tenant_id\":\"\",\"scopes\":[\"read\"]}", "/tenant_id",
            "pattern");
    /* ECMA-262 `$` is the end of the string: a trailing newline is not a tenant id */
    refused(REQSCHEMA_KEY_CREATE, "{\"tenant_id\":\"acme\\n\",\"scopes\":[\"read\"]}", "/tenant_id",
            "pattern");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"sluice-retry\"}", "/name", "pattern");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"has space\"}", "/name", "pattern");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"start\":\"yesterday\"}", "/start", "oneOf");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"start\":-1}", "/start", "oneOf");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"max_deliveries\":1001}", "/max_deliveries",
            "maximum");
    refused(REQSCHEMA_GROUP_CREATE, "{\"name\":\"a\",\"retry\":{\"base_delay_ms\":-1}}",
            "/retry/base_delay_ms", "minimum");
    refused(REQSCHEMA_STREAM_SETTINGS, "{\"retention\":{\"max_age_ms\":0}}",
            "/retention/max_age_ms", "minimum");
    refused(REQSCHEMA_STREAM_SETTINGS, "{\"retention\":{\"max_age_ms\":1e300}}",
            "/retention/max_age_ms", "maximum");
    refused(REQSCHEMA_SCHEMA_COMPAT, "{\"compatibility\":\"SIDEWAYS\"}", "/compatibility", "enum");
    refused(REQSCHEMA_DEAD_LETTER_REPROCESS, "{\"max_per_second\":0}", "/max_per_second",
            "minimum");
    refused(REQSCHEMA_DEAD_LETTER_REPROCESS, "{\"max_per_second\":100001}", "/max_per_second",
            "maximum");
}

Test(reqschema, every_violation_is_listed)
{
    json_t *p =
        assert_refused(REQSCHEMA_GROUP_CREATE,
                       "{\"name\":\"a b\",\"max_deliveries\":0,\"extra\":1}", "/name", "pattern");
    cr_assert_geq(json_array_size(json_object_get(p, "errors")), 3, "name, max_deliveries, extra");
    json_decref(p);
}

Test(reqschema, an_integral_real_is_read_as_the_integer_it_equals)
{
    json_t *body = json_loads("{\"retention\":{\"max_age_ms\":1000.0}}", 0, NULL);
    cr_assert(json_is_real(json_object_get(json_object_get(body, "retention"), "max_age_ms")));
    json_t *p = reqschema_check(REQSCHEMA_STREAM_SETTINGS, body);
    cr_assert_null(p, "1000.0 is an integer to JSON Schema");
    json_t *age = json_object_get(json_object_get(body, "retention"), "max_age_ms");
    cr_assert(json_is_integer(age), "and reads as one afterwards");
    cr_assert_eq(json_integer_value(age), 1000);
    json_decref(body);
}
