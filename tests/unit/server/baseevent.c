/* Unit tests of server/baseevent.c: the seed producers' BaseEvent (cai-service's
 * EventFactory) recognised by its body and mapped onto the envelope, then checked by
 * envelope_parse with every error naming the member the producer sent (issue 15). */
#include "baseevent.h"
#include "envelope.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

/* What EventFactory.createEvent makes for S3_OBJECT_CREATED in seed 000. */
#define SEED_EVENT                                                                                 \
    "{\"id\":\"7d0c8f4e-2b1a-4c3d-9e8f-0a1b2c3d4e5f\",\"type\":\"s3.object.created\","             \
    "\"payload\":{\"bucket\":\"knowledge-documents\",\"key\":\"uploads/document.pdf\","            \
    "\"size\":1024000,\"contentType\":\"application/pdf\"},"                                       \
    "\"timestamp\":\"2024-03-01T09:30:00.125Z\",\"version\":\"1.0\",\"source\":\"cai-service\","   \
    "\"correlationId\":\"corr-1\",\"metadata\":{\"correlationId\":\"corr-1\","                     \
    "\"causationId\":\"cause-1\",\"userId\":\"user-123\",\"tenantId\":\"tenant-456\","             \
    "\"createdAt\":1709285400125}}"

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    cr_assert_not_null(j, "test JSON must parse: %s (%s)", text, e.text);
    return j;
}

/* envelope_parse of `text`; *errors (caller frees) lists what it refused. */
static bool parse(const char *text, incoming_event *ev, json_t **errors)
{
    json_t *in = load(text);
    *errors = json_array();
    bool ok = envelope_parse(in, 0, "default", "seed-key", ev, *errors);
    json_decref(in);
    return ok;
}

static bool has_error(json_t *errors, const char *path, const char *keyword)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "path")), path) == 0 &&
            strcmp(json_string_value(json_object_get(e, "keyword")), keyword) == 0)
            return true;
    }
    return false;
}

Test(baseevent, a_body_with_payload_and_no_data_is_a_base_event)
{
    const char *yes[] = {"{\"payload\":{}}", "{\"type\":\"a.b\",\"payload\":null}", SEED_EVENT};
    const char *no[] = {"{\"data\":{}}", "{\"payload\":{},\"data\":{}}", "{}", "[]", "1"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        json_t *j = json_loads(yes[i], JSON_DECODE_ANY, NULL);
        cr_expect(baseevent_is(j), "%s", yes[i]);
        json_decref(j);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        json_t *j = json_loads(no[i], JSON_DECODE_ANY, NULL);
        cr_expect_not(baseevent_is(j), "%s", no[i]);
        json_decref(j);
    }
}

Test(baseevent, the_seed_event_maps_onto_the_envelope)
{
    json_t *in = load(SEED_EVENT);
    json_t *errors = json_array();
    json_t *env = baseevent_envelope(in, -1, errors);
    cr_assert_eq(json_array_size(errors), 0);
    json_t *want =
        load("{\"id\":\"7d0c8f4e-2b1a-4c3d-9e8f-0a1b2c3d4e5f\",\"type\":\"s3.object.created\","
             "\"data\":{\"bucket\":\"knowledge-documents\",\"key\":\"uploads/document.pdf\","
             "\"size\":1024000,\"contentType\":\"application/pdf\"},"
             "\"occurred_at\":\"2024-03-01T09:30:00.125Z\",\"source\":\"cai-service\","
             "\"correlation_id\":\"corr-1\",\"causation_id\":\"cause-1\",\"user_id\":\"user-123\","
             "\"metadata\":{\"correlationId\":\"corr-1\",\"causationId\":\"cause-1\","
             "\"userId\":\"user-123\",\"tenantId\":\"tenant-456\",\"createdAt\":1709285400125,"
             "\"envelope_version\":\"1.0\"}}");
    char *got = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
    cr_expect(json_equal(env, want), "got %s", got);
    free(got);
    cr_expect_eq(json_object_get(env, "data"), json_object_get(in, "payload"),
                 "shared, not copied");
    cr_expect_null(json_object_get(json_object_get(in, "metadata"), "envelope_version"),
                   "the body's own metadata is not changed");
    json_decref(want);
    json_decref(env);
    json_decref(errors);
    json_decref(in);
}

Test(baseevent, the_seed_event_passes_the_envelope_checks)
{
    incoming_event ev;
    json_t *errors;
    cr_assert(parse(SEED_EVENT, &ev, &errors));
    cr_assert_str_eq(ev.id, "7d0c8f4e-2b1a-4c3d-9e8f-0a1b2c3d4e5f");
    cr_assert(ev.id_given);
    cr_assert_str_eq(ev.type, "s3.object.created");
    cr_assert_str_eq(ev.occurred_at, "2024-03-01T09:30:00.125Z");
    cr_assert_str_eq(ev.correlation_id, "corr-1");
    cr_assert_str_eq(ev.causation_id, "cause-1");
    cr_assert_str_eq(ev.user_id, "user-123");
    cr_assert_str_eq(ev.source, "cai-service");
    cr_assert_str_eq(ev.tenant, "default", "the tenant is the key's, not metadata.tenantId");
    cr_assert_str_eq(ev.data_pointer, "/payload");
    cr_assert_eq(json_integer_value(json_object_get(ev.data, "size")), 1024000);
    envelope_dispose(&ev);
    json_decref(errors);
}

Test(baseevent, the_least_a_base_event_needs_is_type_and_payload)
{
    incoming_event ev;
    json_t *errors;
    cr_assert(
        parse("{\"type\":\"s3.object.deleted\",\"payload\":{\"bucket\":\"b\"}}", &ev, &errors));
    cr_assert_not(ev.id_given);
    cr_assert_str_eq(ev.correlation_id, ev.id, "defaults as for any envelope");
    cr_assert_str_eq(ev.source, "seed-key", "the key's name");
    cr_assert_str_eq(ev.occurred_at, "");
    cr_assert_null(ev.metadata);
    envelope_dispose(&ev);
    json_decref(errors);
}

Test(baseevent, metadata_correlation_id_is_used_when_the_body_has_none)
{
    incoming_event ev;
    json_t *errors;
    cr_assert(parse("{\"type\":\"a.b\",\"payload\":{},\"metadata\":{\"correlationId\":\"m-1\"}}",
                    &ev, &errors));
    cr_assert_str_eq(ev.correlation_id, "m-1");
    envelope_dispose(&ev);
    json_decref(errors);
    cr_assert(parse("{\"type\":\"a.b\",\"payload\":{},\"correlationId\":\"top\","
                    "\"metadata\":{\"correlationId\":\"m-1\"}}",
                    &ev, &errors));
    cr_assert_str_eq(ev.correlation_id, "top", "the BaseEvent's own correlationId first");
    envelope_dispose(&ev);
    json_decref(errors);
}

Test(baseevent, version_alone_makes_the_metadata)
{
    incoming_event ev;
    json_t *errors;
    cr_assert(parse("{\"type\":\"a.b\",\"payload\":{},\"version\":\"2.1\"}", &ev, &errors));
    cr_assert_str_eq(json_string_value(json_object_get(ev.metadata, "envelope_version")), "2.1");
    cr_assert_eq(json_object_size(ev.metadata), 1);
    envelope_dispose(&ev);
    json_decref(errors);
}

typedef struct refused_case {
    const char *body, *path, *keyword;
} refused_case;

/* Each error names the member as the producer sent it. */
static refused_case refused[] = {
    {"{\"type\":\"a.b\",\"payload\":[]}", "/payload", "type"},
    {"{\"type\":\"a.b\",\"payload\":null}", "/payload", "type"},
    {"{\"type\":\"a.b\",\"payload\":{},\"timestamp\":\"03/01/2024\"}", "/timestamp", "format"},
    {"{\"type\":\"a.b\",\"payload\":{},\"correlationId\":7}", "/correlationId", "type"},
    {"{\"type\":\"a.b\",\"payload\":{},\"metadata\":{\"correlationId\":7}}",
     "/metadata/correlationId", "type"},
    {"{\"type\":\"a.b\",\"payload\":{},\"metadata\":{\"causationId\":\"\"}}",
     "/metadata/causationId", "minLength"},
    {"{\"type\":\"a.b\",\"payload\":{},\"metadata\":{\"userId\":[1]}}", "/metadata/userId", "type"},
    {"{\"type\":\"a.b\",\"payload\":{},\"metadata\":\"x\"}", "/metadata", "type"},
    {"{\"type\":\"A\",\"payload\":{}}", "/type", "pattern"},
    {"{\"type\":\"a.b\",\"payload\":{},\"id\":\"not an id\"}", "/id", "pattern"},
    {"{\"type\":\"a.b\",\"payload\":{},\"occurred_at\":\"2024-03-01T09:30:00Z\"}", "/occurred_at",
     "additionalProperties"},
    {"{\"type\":\"a.b\",\"payload\":{},\"user_id\":\"u\"}", "/user_id", "additionalProperties"},
    {"{\"type\":\"a.b\",\"payload\":{},\"a/b\":1}", "/a~1b", "additionalProperties"},
    {"{\"type\":\"a.b\",\"payload\":{},\"version\":\"1.0\",\"metadata\":{\"envelope_version\":"
     "\"2.0\"}}",
     "/metadata/envelope_version", "const"},
    {"{\"type\":\"a.b\",\"payload\":{},\"expected_version\":0}", "/expected_version",
     "dependentRequired"},
};

ParameterizedTestParameters(baseevent, refused)
{
    /* Criterion copies parameters into the test's own process, where the table's
     * pointers would not hold: the parameter is the row's index. */
    static size_t rows[sizeof refused / sizeof refused[0]];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        rows[i] = i;
    return cr_make_param_array(size_t, rows, sizeof rows / sizeof rows[0]);
}

ParameterizedTest(size_t *row, baseevent, refused)
{
    const refused_case *c = &refused[*row];
    incoming_event ev;
    json_t *errors;
    bool ok = parse(c->body, &ev, &errors);
    char *text = json_dumps(errors, JSON_COMPACT);
    cr_expect_not(ok, "%s is accepted", c->body);
    if (ok) envelope_dispose(&ev);
    cr_expect(has_error(errors, c->path, c->keyword), "%s: want %s %s, got %s", c->body, c->path,
              c->keyword, text);
    free(text);
    json_decref(errors);
}

Test(baseevent, an_envelope_with_payload_is_refused_as_an_envelope)
{
    incoming_event ev;
    json_t *errors;
    cr_assert_not(parse("{\"type\":\"a.b\",\"data\":{},\"payload\":{}}", &ev, &errors));
    cr_assert(has_error(errors, "/payload", "additionalProperties"));
    json_decref(errors);
}

Test(baseevent, the_mapped_envelope_is_the_content)
{
    incoming_event a, b, c;
    json_t *e1, *e2, *e3;
    cr_assert(parse(SEED_EVENT, &a, &e1));
    cr_assert(parse(SEED_EVENT, &b, &e2));
    cr_assert_str_eq(a.hash_hex, b.hash_hex, "an identical re-send is the same content");
    /* the same event a moment later */
    char other[sizeof SEED_EVENT];
    memcpy(other, SEED_EVENT, sizeof other);
    char *t = strstr(other, "09:30:00.125Z");
    cr_assert_not_null(t);
    t[7] = '6';
    cr_assert(parse(other, &c, &e3));
    cr_assert_str_neq(a.hash_hex, c.hash_hex, "another timestamp is other content");
    envelope_dispose(&a);
    envelope_dispose(&b);
    envelope_dispose(&c);
    json_decref(e1);
    json_decref(e2);
    json_decref(e3);
}
