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
    *ok = envelope_parse(in, -1, "default", ev, errors);
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
