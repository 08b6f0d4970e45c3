/* Unit tests of server/envelope.c: the envelope rules of API.md. */
#include "envelope.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

static json_t *parse(const char *text, incoming_event *ev, bool *ok)
{
    json_t *in = json_loads(text, 0, NULL);
    cr_assert_not_null(in, "test JSON must parse: %s", text);
    json_t *errors = json_array();
    *ok = envelope_parse(in, -1, "default", NULL, ev, errors);
    json_decref(in);
    return errors;
}

static bool has_error(json_t *errors, const char *path, const char *keyword)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "path")), path) == 0 &&
            strcmp(json_string_value(json_object_get(e, "keyword")), keyword) == 0)
            return true;
    }
    return false;
}

Test(envelope, a_minimal_event_gets_an_id_a_stream_and_a_correlation_id)
{
    incoming_event ev;
    bool ok;
    json_t *errors = parse("{\"type\":\"file.uploaded\",\"data\":{\"a\":1}}", &ev, &ok);
    cr_assert(ok);
    cr_assert_eq(json_array_size(errors), 0);
    cr_assert_eq(strlen(ev.id), 26, "a ULID is 26 characters");
    cr_assert_str_eq(ev.stream, "file.events");
    cr_assert_str_eq(ev.correlation_id, ev.id);
    cr_assert_not(ev.id_given);
    cr_assert_eq(ev.expected_version, -1);
    cr_assert_eq(strlen(ev.hash_hex), 0, "no client id, nothing to compare later");
    envelope_dispose(&ev);
    json_decref(errors);
}

Test(envelope, every_violation_is_reported_not_just_the_first)
{
    incoming_event ev;
    bool ok;
    json_t *errors = parse("{\"type\":\"Bad\",\"data\":[],\"id\":\"has space\",\"key\":5,"
                           "\"expected_version\":-1,\"metadata\":1,\"extra\":true}",
                           &ev, &ok);
    cr_assert_not(ok);
    cr_assert(has_error(errors, "/type", "pattern"));
    cr_assert(has_error(errors, "/data", "type"));
    cr_assert(has_error(errors, "/id", "pattern"));
    cr_assert(has_error(errors, "/key", "type"));
    cr_assert(has_error(errors, "/expected_version", "type"));
    cr_assert(has_error(errors, "/metadata", "type"));
    cr_assert(has_error(errors, "/extra", "additionalProperties"));
    json_decref(errors);
}

Test(envelope, type_and_data_are_required)
{
    incoming_event ev;
    bool ok;
    json_t *errors = parse("{}", &ev, &ok);
    cr_assert_not(ok);
    cr_assert(has_error(errors, "/type", "required"));
    cr_assert(has_error(errors, "/data", "required"));
    json_decref(errors);
}

Test(envelope, expected_version_needs_a_key)
{
    incoming_event ev;
    bool ok;
    json_t *errors = parse("{\"type\":\"a.b\",\"data\":{},\"expected_version\":0}", &ev, &ok);
    cr_assert_not(ok);
    cr_assert(has_error(errors, "/expected_version", "dependentRequired"));
    json_decref(errors);
}

Test(envelope, the_same_content_hashes_the_same_whatever_the_key_order)
{
    incoming_event a, b;
    bool ok;
    json_t *e1 = parse("{\"id\":\"x1\",\"type\":\"a.b\",\"data\":{\"p\":1,\"q\":2}}", &a, &ok);
    cr_assert(ok);
    json_t *e2 = parse("{\"data\":{\"q\":2,\"p\":1},\"type\":\"a.b\",\"id\":\"x1\"}", &b, &ok);
    cr_assert(ok);
    cr_assert_str_eq(a.hash_hex, b.hash_hex);
    envelope_dispose(&a);
    envelope_dispose(&b);
    json_decref(e1);
    json_decref(e2);
}

Test(envelope, strings_are_limited_in_characters_not_bytes)
{
    char text[2048];
    char key[1024] = "";
    for (int i = 0; i < 256; i++) strcat(key, "\xc3\xa9"); /* 256 × é: 512 bytes */
    snprintf(text, sizeof text, "{\"type\":\"a.b\",\"data\":{},\"key\":\"%s\"}", key);
    incoming_event ev;
    bool ok;
    json_t *errors = parse(text, &ev, &ok);
    cr_assert(ok, "256 characters are allowed");
    envelope_dispose(&ev);
    json_decref(errors);
    strcat(key, "x");
    snprintf(text, sizeof text, "{\"type\":\"a.b\",\"data\":{},\"key\":\"%s\"}", key);
    errors = parse(text, &ev, &ok);
    cr_assert_not(ok, "257 characters are not");
    cr_assert(has_error(errors, "/key", "maxLength"));
    json_decref(errors);
}

struct type_case {
    char type[40]; /* inline: Criterion copies parameters between processes */
    bool valid;
};

ParameterizedTestParameters(envelope, type_names)
{
    static struct type_case cases[] = {
        {"file.uploaded", true},   {"user.preferences.updated", true}, {"a.b", true},
        {"s3.object_created", true}, {"file", false},                  {"File.uploaded", false},
        {"file.", false},          {".file", false},                   {"file..x", false},
        {"file.1x", false},        {"1file.x", false},                 {"file-x.y", false},
        {"", false},
    };
    return cr_make_param_array(struct type_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct type_case *c, envelope, type_names)
{
    cr_assert_eq(envelope_type_valid(c->type), c->valid, "type '%s'", c->type);
}

Test(envelope, a_type_of_129_characters_is_refused)
{
    char t[200] = "a.";
    while (strlen(t) < 129) strcat(t, "b");
    cr_assert_not(envelope_type_valid(t));
    t[128] = '\0';
    cr_assert(envelope_type_valid(t));
}

Test(envelope, client_ids_follow_the_id_pattern)
{
    cr_assert(envelope_id_valid("order-1:2.3_4"));
    cr_assert_not(envelope_id_valid(""));
    cr_assert_not(envelope_id_valid("a/b"));
    char long_id[80];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    cr_assert_not(envelope_id_valid(long_id));
    long_id[64] = '\0';
    cr_assert(envelope_id_valid(long_id));
}

/* ---- occurred_at and the default source (issue 15) */

struct time_case {
    char in[48];   /* inline: Criterion copies parameters between processes */
    char want[32]; /* "" = refused */
};

ParameterizedTestParameters(envelope, occurrence_times)
{
    static struct time_case cases[] = {
        {"2024-03-01T09:30:00.125Z", "2024-03-01T09:30:00.125Z"},
        {"2024-03-01T09:30:00Z", "2024-03-01T09:30:00.000Z"},
        {"2024-03-01T10:30:00.5+01:00", "2024-03-01T09:30:00.500Z"},
        {"2024-03-01T00:30:00-02:00", "2024-03-01T02:30:00.000Z"},
        {"2024-03-01t09:30:00.123456789z", "2024-03-01T09:30:00.123Z"},
        {"1969-12-31T23:59:59.500Z", "1969-12-31T23:59:59.500Z"},
        {"0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"},
        {"9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"},
        {"0001-01-01T00:30:00+01:00", ""}, /* year 0 in UTC */
        {"9999-12-31T23:30:00-01:00", ""}, /* year 10000 in UTC */
        {"2024-03-01T09:30:00", ""},       /* no time zone */
        {"2024-03-01 09:30:00Z", ""},      /* RFC 3339's date-time has a T */
        {"2024-03-01", ""},
        {"2024-02-30T00:00:00Z", ""},
        {"2023-02-29T00:00:00Z", ""},
        {"2024-03-01T24:00:00Z", ""},
        {"yesterday", ""},
        {"", ""},
    };
    return cr_make_param_array(struct time_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct time_case *c, envelope, occurrence_times)
{
    char out[32] = "";
    bool ok = envelope_time_normalize(c->in, out);
    if (*c->want) {
        cr_assert(ok, "'%s' is accepted", c->in);
        cr_assert_str_eq(out, c->want, "'%s'", c->in);
    } else {
        cr_assert_not(ok, "'%s' is refused (got %s)", c->in, out);
    }
}

Test(envelope, occurred_at_is_kept_in_utc_with_milliseconds)
{
    incoming_event ev;
    bool ok;
    json_t *errors = parse(
        "{\"type\":\"a.b\",\"data\":{},\"occurred_at\":\"2024-03-01T10:30:00+01:00\"}", &ev, &ok);
    cr_assert(ok);
    cr_assert_str_eq(ev.occurred_at, "2024-03-01T09:30:00.000Z");
    envelope_dispose(&ev);
    json_decref(errors);

    errors = parse("{\"type\":\"a.b\",\"data\":{},\"occurred_at\":null}", &ev, &ok);
    cr_assert(ok);
    cr_assert_str_eq(ev.occurred_at, "", "null is absent");
    envelope_dispose(&ev);
    json_decref(errors);
}

Test(envelope, a_malformed_occurred_at_is_refused_at_its_path)
{
    incoming_event ev;
    bool ok;
    json_t *errors =
        parse("{\"type\":\"a.b\",\"data\":{},\"occurred_at\":\"2024-13-01T00:00:00Z\"}", &ev, &ok);
    cr_assert_not(ok);
    cr_assert(has_error(errors, "/occurred_at", "format"));
    json_decref(errors);
    errors = parse("{\"type\":\"a.b\",\"data\":{},\"occurred_at\":1709285400000}", &ev, &ok);
    cr_assert_not(ok);
    cr_assert(has_error(errors, "/occurred_at", "type"));
    json_decref(errors);
}

Test(envelope, occurred_at_is_part_of_the_content)
{
    incoming_event a, b;
    bool ok;
    json_t *e1 = parse("{\"id\":\"x1\",\"type\":\"a.b\",\"data\":{},"
                       "\"occurred_at\":\"2024-03-01T09:30:00Z\"}",
                       &a, &ok);
    cr_assert(ok);
    json_t *e2 = parse("{\"id\":\"x1\",\"type\":\"a.b\",\"data\":{},"
                       "\"occurred_at\":\"2024-03-01T09:30:01Z\"}",
                       &b, &ok);
    cr_assert(ok);
    cr_assert_str_neq(a.hash_hex, b.hash_hex);
    envelope_dispose(&a);
    envelope_dispose(&b);
    json_decref(e1);
    json_decref(e2);
}

static bool parse_as(const char *text, const char *key_name, incoming_event *ev)
{
    json_t *in = json_loads(text, 0, NULL);
    cr_assert_not_null(in, "test JSON must parse: %s", text);
    json_t *errors = json_array();
    bool ok = envelope_parse(in, -1, "default", key_name, ev, errors);
    json_decref(errors);
    json_decref(in);
    return ok;
}

Test(envelope, source_defaults_to_the_key_name)
{
    incoming_event ev;
    cr_assert(parse_as("{\"type\":\"a.b\",\"data\":{}}", "billing-service", &ev));
    cr_assert_str_eq(ev.source, "billing-service");
    envelope_dispose(&ev);
    cr_assert(
        parse_as("{\"type\":\"a.b\",\"data\":{},\"source\":\"svc/a\"}", "billing-service", &ev));
    cr_assert_str_eq(ev.source, "svc/a", "a source sent is kept");
    envelope_dispose(&ev);
    cr_assert(parse_as("{\"type\":\"a.b\",\"data\":{}}", "", &ev));
    cr_assert_null(ev.source, "a key without a name gives no source");
    envelope_dispose(&ev);
    cr_assert(parse_as("{\"type\":\"a.b\",\"data\":{}}", NULL, &ev));
    cr_assert_null(ev.source);
    envelope_dispose(&ev);
}

Test(envelope, the_default_source_is_not_content)
{
    incoming_event a, b;
    cr_assert(parse_as("{\"id\":\"x1\",\"type\":\"a.b\",\"data\":{}}", "key-a", &a));
    cr_assert(parse_as("{\"id\":\"x1\",\"type\":\"a.b\",\"data\":{}}", "key-b", &b));
    cr_assert_str_eq(a.hash_hex, b.hash_hex, "the same body is the same content");
    envelope_dispose(&a);
    envelope_dispose(&b);
}
