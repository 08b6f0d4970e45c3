/* Unit tests of server/cloudevents.c: the CloudEvents v1.0 HTTP binding mapped onto
 * Sluice's envelope, in structured, batch and binary mode. The mapping only renames and
 * keeps: type→type, id→id, subject→key, source→source, time→occurred_at, data (or
 * data_base64)→data, correlationid/causationid/userid/stream→their envelope fields, and
 * every other attribute (specversion, datacontenttype, dataschema, extensions) under
 * metadata.cloudevents. Judging the result is the envelope's checks' work, so the last
 * group runs envelope_parse on mapped events that lack what an envelope needs. */
#include "cloudevents.h"
#include "envelope.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>
#include <strings.h>

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    cr_assert_not_null(j, "test JSON must parse: %s (%s)", text, e.text);
    return j;
}

static void expect_json(json_t *got, const char *want_text, const char *what)
{
    json_t *want = parse(want_text);
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    cr_expect(json_equal(got, want), "%s:\n got  %s\n want %s", what, g, w);
    free(g);
    free(w);
    json_decref(want);
}

/* ---- structured mode: one table of CloudEvent → envelope */

typedef struct structured_case {
    const char *name, *ce, *envelope;
} structured_case;

static structured_case structured[] = {
    {"every mapped attribute, and the rest kept under metadata.cloudevents",
     "{\"specversion\":\"1.0\",\"type\":\"order.placed\",\"source\":\"/shop\",\"id\":\"ce-1\","
     "\"subject\":\"o-1\",\"time\":\"2024-03-01T09:30:00Z\",\"datacontenttype\":"
     "\"application/json\",\"dataschema\":\"https://example.com/s.json\",\"correlationid\":"
     "\"corr-1\",\"causationid\":\"cause-1\",\"userid\":\"u-42\",\"stream\":\"orders\","
     "\"tenantregion\":\"eu\",\"data\":{\"total\":12}}",
     "{\"type\":\"order.placed\",\"source\":\"/shop\",\"id\":\"ce-1\",\"key\":\"o-1\","
     "\"occurred_at\":\"2024-03-01T09:30:00Z\",\"correlation_id\":\"corr-1\","
     "\"causation_id\":\"cause-1\",\"user_id\":\"u-42\",\"stream\":\"orders\","
     "\"data\":{\"total\":12},\"metadata\":{\"cloudevents\":{\"specversion\":\"1.0\","
     "\"datacontenttype\":\"application/json\",\"dataschema\":"
     "\"https://example.com/s.json\",\"tenantregion\":\"eu\"}}}"},
    {"the required attributes alone",
     "{\"specversion\":\"1.0\",\"type\":\"order.placed\",\"source\":\"urn:x\",\"id\":\"a\"}",
     "{\"type\":\"order.placed\",\"source\":\"urn:x\",\"id\":\"a\","
     "\"metadata\":{\"cloudevents\":{\"specversion\":\"1.0\"}}}"},
    {"nothing to keep: no metadata", "{\"type\":\"order.placed\",\"id\":\"a\",\"data\":{}}",
     "{\"type\":\"order.placed\",\"id\":\"a\",\"data\":{}}"},
    {"required attributes missing: mapped as they are, for the envelope checks to report",
     "{\"specversion\":\"1.0\",\"data\":{\"a\":1}}",
     "{\"data\":{\"a\":1},\"metadata\":{\"cloudevents\":{\"specversion\":\"1.0\"}}}"},
    {"another specversion is kept as sent",
     "{\"specversion\":\"0.3\",\"type\":\"order.placed\",\"id\":\"a\",\"source\":\"s\"}",
     "{\"type\":\"order.placed\",\"id\":\"a\",\"source\":\"s\","
     "\"metadata\":{\"cloudevents\":{\"specversion\":\"0.3\"}}}"},
    {"data_base64 becomes data, and is not kept twice",
     "{\"specversion\":\"1.0\",\"type\":\"blob.stored\",\"id\":\"b\",\"datacontenttype\":"
     "\"application/octet-stream\",\"data_base64\":\"AAEC\"}",
     "{\"type\":\"blob.stored\",\"id\":\"b\",\"data\":\"AAEC\",\"metadata\":{\"cloudevents\":{"
     "\"specversion\":\"1.0\",\"datacontenttype\":\"application/octet-stream\"}}}"},
    {"datacontenttype is kept whatever it says; data is taken as sent",
     "{\"specversion\":\"1.0\",\"type\":\"a.b\",\"id\":\"c\",\"datacontenttype\":"
     "\"text/plain; charset=utf-8\",\"data\":\"hello\"}",
     "{\"type\":\"a.b\",\"id\":\"c\",\"data\":\"hello\",\"metadata\":{\"cloudevents\":{"
     "\"specversion\":\"1.0\",\"datacontenttype\":\"text/plain; charset=utf-8\"}}}"},
    {"extensions of any JSON type are kept; only CloudEvents names are mapped",
     "{\"specversion\":\"1.0\",\"type\":\"a.b\",\"id\":\"c\",\"key\":\"not-the-subject\","
     "\"metadata\":{\"x\":1},\"priority\":3,\"flag\":true,\"tags\":[\"a\"],\"none\":null}",
     "{\"type\":\"a.b\",\"id\":\"c\",\"metadata\":{\"cloudevents\":{\"specversion\":\"1.0\","
     "\"key\":\"not-the-subject\",\"metadata\":{\"x\":1},\"priority\":3,\"flag\":true,"
     "\"tags\":[\"a\"],\"none\":null}}}"},
    {"mapped attributes keep their JSON type (the envelope checks judge them)",
     "{\"type\":7,\"subject\":42,\"id\":null}", "{\"type\":7,\"key\":42,\"id\":null}"},
    {"an empty object maps to an empty envelope", "{}", "{}"},
};

ParameterizedTestParameters(cloudevents, structured)
{
    /* Criterion copies parameters into the test's own process, where the table's
     * pointers would not hold: the parameter is the row's index. */
    static size_t rows[sizeof structured / sizeof structured[0]];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        rows[i] = i;
    return cr_make_param_array(size_t, rows, sizeof rows / sizeof rows[0]);
}

ParameterizedTest(size_t *row, cloudevents, structured)
{
    const structured_case *c = &structured[*row];
    json_t *ce = parse(c->ce);
    json_t *copy = json_deep_copy(ce);
    json_t *env = cloudevents_structured(ce);
    expect_json(env, c->envelope, c->name);
    cr_expect(json_equal(ce, copy), "%s: the CloudEvent is left as it was", c->name);
    json_decref(env);
    json_decref(copy);
    json_decref(ce);
}

Test(cloudevents, a_structured_value_that_is_not_an_object_is_returned_as_is)
{
    const char *values[] = {"[1,2]", "\"text\"", "null", "42"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        json_t *v = parse(values[i]);
        json_t *out = cloudevents_structured(v);
        cr_expect_eq(out, v, "%s: the same value", values[i]);
        json_decref(out);
        if (!json_is_null(v)) /* null is a static value without a count */
            cr_expect_eq(v->refcount, 1, "%s: one reference was given back", values[i]);
        json_decref(v);
    }
}

Test(cloudevents, the_envelope_shares_data_with_the_cloudevent)
{
    json_t *ce = parse("{\"type\":\"a.b\",\"data\":{\"big\":[1,2,3]}}");
    json_t *env = cloudevents_structured(ce);
    cr_expect_eq(json_object_get(env, "data"), json_object_get(ce, "data"), "data is not copied");
    json_decref(ce);
    expect_json(env, "{\"type\":\"a.b\",\"data\":{\"big\":[1,2,3]}}", "after the CloudEvent");
    json_decref(env);
}

/* ---- batch mode */

Test(cloudevents, a_batch_maps_each_event_in_order)
{
    json_t *batch = parse("[{\"specversion\":\"1.0\",\"type\":\"a.b\",\"id\":\"1\"},"
                          "{\"type\":\"c.d\",\"id\":\"2\",\"subject\":\"k\"},"
                          "\"not an event\"]");
    json_t *out = cloudevents_batch(batch);
    expect_json(out,
                "[{\"type\":\"a.b\",\"id\":\"1\",\"metadata\":{\"cloudevents\":"
                "{\"specversion\":\"1.0\"}}},{\"type\":\"c.d\",\"id\":\"2\",\"key\":\"k\"},"
                "\"not an event\"]",
                "batch");
    json_decref(out);
    json_decref(batch);
}

Test(cloudevents, an_empty_batch_is_an_empty_array)
{
    json_t *batch = parse("[]");
    json_t *out = cloudevents_batch(batch);
    cr_expect(json_is_array(out));
    cr_expect_eq(json_array_size(out), 0);
    json_decref(out);
    json_decref(batch);
}

Test(cloudevents, a_batch_that_is_not_an_array_is_returned_as_is)
{
    json_t *v = parse("{\"type\":\"a.b\"}");
    json_t *out = cloudevents_batch(v);
    cr_expect_eq(out, v);
    json_decref(out);
    json_decref(v);
}

/* ---- binary mode: ce-* headers and Content-Type, the body is the data */

typedef struct header {
    const char *name, *value;
} header;

typedef struct headers {
    const header *h;
    size_t n;
} headers;

static void each_header(void *ctx, void (*each)(const char *, const char *, void *), void *arg)
{
    const headers *hs = ctx;
    for (size_t i = 0; i < hs->n; i++)
        each(hs->h[i].name, hs->h[i].value, arg);
}

static json_t *binary(const header *h, size_t n, json_t *data)
{
    headers hs = {h, n};
    return cloudevents_binary(each_header, &hs, data);
}

#define BINARY(hdrs, data) binary(hdrs, sizeof hdrs / sizeof hdrs[0], data)

Test(cloudevents, binary_mode_maps_the_ce_headers_and_keeps_the_content_type)
{
    static const header h[] = {
        {"Host", "localhost"},
        {"ce-specversion", "1.0"},
        {"ce-type", "order.placed"},
        {"ce-source", "/shop"},
        {"ce-id", "ce-7"},
        {"ce-subject", "o-1"},
        {"ce-time", "2024-03-01T09:30:00Z"},
        {"ce-correlationid", "corr-1"},
        {"ce-causationid", "cause-1"},
        {"ce-userid", "u-1"},
        {"ce-stream", "orders"},
        {"ce-tenantregion", "eu"},
        {"Content-Type", "application/json; charset=utf-8"},
        {"Authorization", "Bearer secret"},
        {"Content-Length", "12"},
    };
    json_t *data = parse("{\"total\":12}");
    json_t *env = BINARY(h, data);
    expect_json(env,
                "{\"type\":\"order.placed\",\"source\":\"/shop\",\"id\":\"ce-7\",\"key\":\"o-1\","
                "\"occurred_at\":\"2024-03-01T09:30:00Z\",\"correlation_id\":\"corr-1\","
                "\"causation_id\":\"cause-1\",\"user_id\":\"u-1\",\"stream\":\"orders\","
                "\"data\":{\"total\":12},\"metadata\":{\"cloudevents\":{\"specversion\":\"1.0\","
                "\"tenantregion\":\"eu\",\"datacontenttype\":\"application/json; "
                "charset=utf-8\"}}}",
                "binary");
    cr_expect_eq(json_object_get(env, "data"), data, "the body is the data, not a copy");
    json_decref(env);
    cr_expect_eq(data->refcount, 1, "the body's reference is the caller's");
    json_decref(data);
}

Test(cloudevents, binary_header_names_are_case_insensitive_and_attributes_lower_case)
{
    static const header h[] = {
        {"CE-SpecVersion", "1.0"},
        {"Ce-Type", "a.b"},
        {"cE-ID", "x"},
        {"ce-MyExtension", "v"},
        {"content-type", "application/json"},
    };
    json_t *data = parse("{}");
    json_t *env = BINARY(h, data);
    expect_json(env,
                "{\"type\":\"a.b\",\"id\":\"x\",\"data\":{},\"metadata\":{\"cloudevents\":{"
                "\"specversion\":\"1.0\",\"myextension\":\"v\",\"datacontenttype\":"
                "\"application/json\"}}}",
                "mixed case");
    json_decref(env);
    json_decref(data);
}

Test(cloudevents, binary_ignores_a_ce_data_header_a_bare_prefix_and_other_headers)
{
    static const header h[] = {
        {"ce-type", "a.b"},  {"ce-data", "{\"forged\":true}"},
        {"ce-", "nameless"}, {"cex-type", "c.d"},
        {"X-Ce-Id", "no"},
    };
    json_t *data = parse("{\"real\":true}");
    json_t *env = BINARY(h, data);
    expect_json(env, "{\"type\":\"a.b\",\"data\":{\"real\":true}}", "ignored headers");
    json_decref(env);
    json_decref(data);
}

Test(cloudevents, binary_without_content_type_has_no_datacontenttype)
{
    static const header h[] = {{"ce-specversion", "1.0"}, {"ce-type", "a.b"}};
    json_t *data = parse("[1]");
    json_t *env = BINARY(h, data);
    expect_json(env,
                "{\"type\":\"a.b\",\"data\":[1],\"metadata\":{\"cloudevents\":"
                "{\"specversion\":\"1.0\"}}}",
                "no Content-Type");
    json_decref(env);
    json_decref(data);
}

Test(cloudevents, binary_values_that_are_not_utf8_become_empty_strings)
{
    static const header h[] = {{"ce-type", "caf\xe9"}, {"ce-note", "\xff\xfe"}};
    json_t *data = parse("{}");
    json_t *env = BINARY(h, data);
    expect_json(env, "{\"type\":\"\",\"data\":{},\"metadata\":{\"cloudevents\":{\"note\":\"\"}}}",
                "not UTF-8");
    json_decref(env);
    json_decref(data);
}

Test(cloudevents, binary_attribute_names_are_cut_at_63_characters)
{
    char name[128] = "ce-";
    memset(name + 3, 'a', 80);
    name[83] = '\0';
    const header h[] = {{name, "v"}};
    json_t *data = parse("{}");
    json_t *env = BINARY(h, data);
    char want[64];
    memset(want, 'a', 63);
    want[63] = '\0';
    json_t *kept = json_object_get(json_object_get(env, "metadata"), "cloudevents");
    cr_expect_eq(json_object_size(kept), 1);
    cr_expect_str_eq(json_string_value(json_object_get(kept, want)), "v");
    json_decref(env);
    json_decref(data);
}

Test(cloudevents, binary_a_repeated_header_keeps_the_last_value)
{
    static const header h[] = {{"ce-type", "a.b"}, {"ce-type", "c.d"}};
    json_t *data = parse("{}");
    json_t *env = BINARY(h, data);
    cr_expect_str_eq(json_string_value(json_object_get(env, "type")), "c.d");
    json_decref(env);
    json_decref(data);
}

/* ---- what the envelope checks make of a mapped CloudEvent */

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

typedef struct checked_case {
    const char *ce;
    const char *path, *keyword; /* NULL: the envelope is valid */
} checked_case;

static checked_case checked[] = {
    {"{\"specversion\":\"1.0\",\"type\":\"order.placed\",\"source\":\"s\",\"id\":\"ce-1\","
     "\"subject\":\"o-1\",\"time\":\"2024-03-01T10:30:00+01:00\",\"data\":{\"a\":1}}",
     NULL, NULL},
    {"{\"specversion\":\"1.0\",\"source\":\"s\",\"id\":\"ce-1\",\"data\":{}}", "/type", "required"},
    {"{\"specversion\":\"1.0\",\"type\":\"order.placed\",\"id\":\"ce-1\"}", "/data", "required"},
    {"{\"specversion\":\"1.0\",\"type\":\"com.example.Order\",\"data\":{}}", "/type", "pattern"},
    {"{\"specversion\":\"1.0\",\"type\":\"order.placed\",\"id\":\"not an id\",\"data\":{}}", "/id",
     "pattern"},
    {"{\"specversion\":\"1.0\",\"type\":\"order.placed\",\"subject\":42,\"data\":{}}", "/key",
     "type"},
    {"{\"specversion\":\"1.0\",\"type\":\"order.placed\",\"data_base64\":\"AAEC\"}", "/data",
     "type"},
    {"{\"specversion\":\"1.0\",\"type\":\"order.placed\",\"time\":\"yesterday\",\"data\":{}}",
     "/occurred_at", "format"},
};

ParameterizedTestParameters(cloudevents, envelope_checks)
{
    /* Criterion copies parameters into the test's own process, where the table's
     * pointers would not hold: the parameter is the row's index. */
    static size_t rows[sizeof checked / sizeof checked[0]];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        rows[i] = i;
    return cr_make_param_array(size_t, rows, sizeof rows / sizeof rows[0]);
}

ParameterizedTest(size_t *row, cloudevents, envelope_checks)
{
    const checked_case *c = &checked[*row];
    json_t *ce = parse(c->ce);
    json_t *env = cloudevents_structured(ce);
    json_t *errors = json_array();
    incoming_event ev;
    bool ok = envelope_parse(env, -1, "default", NULL, &ev, errors);
    char *text = json_dumps(errors, JSON_COMPACT);
    if (!c->path) {
        cr_expect(ok, "%s: %s", c->ce, text);
        if (ok) {
            cr_expect_str_eq(ev.id, "ce-1");
            cr_expect_str_eq(ev.key, "o-1");
            cr_expect_str_eq(ev.source, "s");
            cr_expect_str_eq(ev.occurred_at, "2024-03-01T09:30:00.000Z", "time, in UTC");
            cr_expect_str_eq(json_string_value(json_object_get(
                                 json_object_get(ev.metadata, "cloudevents"), "specversion")),
                             "1.0");
            envelope_dispose(&ev);
        }
    } else {
        cr_expect_not(ok, "%s is accepted", c->ce);
        if (ok) envelope_dispose(&ev);
        cr_expect(has_error(errors, c->path, c->keyword), "%s: want %s %s, got %s", c->ce, c->path,
                  c->keyword, text);
    }
    free(text);
    json_decref(errors);
    json_decref(env);
    json_decref(ce);
}
