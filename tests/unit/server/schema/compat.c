/* Unit tests of server/schema/compat.c: each kind of change under each mode. */
#include "schema/compat.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

struct change {
    char name[48];
    char old_schema[200];
    char new_schema[200];
    bool backward, forward; /* expected verdicts; FULL = both, NONE = always */
};

#define OBJ(props, req) "{\"type\":\"object\",\"properties\":{" props "},\"required\":[" req "]}"

ParameterizedTestParameters(compat, each_change_under_each_mode)
{
    static struct change cases[] = {
        {"add optional to open object", OBJ("\"a\":{\"type\":\"string\"}", "\"a\""),
         OBJ("\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"integer\"}", "\"a\""), true, true},
        {"add required", OBJ("\"a\":{\"type\":\"string\"}", "\"a\""),
         OBJ("\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"integer\"}", "\"a\",\"b\""), false, true},
        {"remove optional from open object",
         OBJ("\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"integer\"}", "\"a\""),
         OBJ("\"a\":{\"type\":\"string\"}", "\"a\""), true, true},
        {"remove required", OBJ("\"a\":{\"type\":\"string\"},\"b\":{}", "\"a\",\"b\""),
         OBJ("\"a\":{\"type\":\"string\"},\"b\":{}", "\"a\""), true, false},
        {"widen enum", "{\"enum\":[\"x\",\"y\"]}", "{\"enum\":[\"x\",\"y\",\"z\"]}", true, false},
        {"narrow enum", "{\"enum\":[\"x\",\"y\"]}", "{\"enum\":[\"x\"]}", false, true},
        {"change type", "{\"type\":\"string\"}", "{\"type\":\"integer\"}", false, false},
        {"integer to number", "{\"type\":\"integer\"}", "{\"type\":\"number\"}", true, false},
        {"tighten maximum", "{\"type\":\"integer\",\"maximum\":100}",
         "{\"type\":\"integer\",\"maximum\":10}", false, true},
        {"loosen minLength", "{\"type\":\"string\",\"minLength\":3}",
         "{\"type\":\"string\",\"minLength\":1}", true, false},
        {"add maxLength", "{\"type\":\"string\"}", "{\"type\":\"string\",\"maxLength\":5}", false,
         true},
        {"close an open object", OBJ("\"a\":{}", ""),
         "{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false}", false,
         true},
        {"remove from closed object",
         "{\"type\":\"object\",\"properties\":{\"a\":{},\"b\":{}},\"additionalProperties\":false}",
         "{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false}", false,
         true},
        {"identical", OBJ("\"a\":{\"type\":\"string\"}", "\"a\""),
         OBJ("\"a\":{\"type\":\"string\"}", "\"a\""), true, true},
        {"nested property type narrowed",
         "{\"properties\":{\"o\":{\"properties\":{\"n\":{\"type\":[\"string\",\"null\"]}}}}}",
         "{\"properties\":{\"o\":{\"properties\":{\"n\":{\"type\":\"string\"}}}}}", false, true},
        {"changed pattern", "{\"type\":\"string\",\"pattern\":\"^a\"}",
         "{\"type\":\"string\",\"pattern\":\"^b\"}", false, false},
    };
    return cr_make_param_array(struct change, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct change *c, compat, each_change_under_each_mode)
{
    json_t *o = json_loads(c->old_schema, 0, NULL), *n = json_loads(c->new_schema, 0, NULL);
    cr_assert(o && n, "%s: test schemas must parse", c->name);
    struct {
        compat_mode mode;
        bool expect;
    } modes[] = {
        {COMPAT_NONE, true},
        {COMPAT_BACKWARD, c->backward},
        {COMPAT_FORWARD, c->forward},
        {COMPAT_FULL, c->backward && c->forward},
        {COMPAT_BACKWARD_TRANSITIVE, c->backward},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        json_t *reasons = json_array();
        bool ok = compat_check(o, n, modes[i].mode, reasons);
        cr_expect_eq(ok, modes[i].expect, "%s under %s: got %s", c->name,
                     compat_mode_name(modes[i].mode), ok ? "compatible" : "incompatible");
        if (!ok) cr_expect_gt(json_array_size(reasons), 0, "%s: a rejection gives reasons", c->name);
        json_decref(reasons);
    }
    json_decref(o);
    json_decref(n);
}

Test(compat, reasons_name_the_schema_path)
{
    json_t *o = json_loads(OBJ("\"size\":{\"type\":\"integer\"}", ""), 0, NULL);
    json_t *n = json_loads(OBJ("\"size\":{\"type\":\"integer\",\"maximum\":5}", ""), 0, NULL);
    json_t *reasons = json_array();
    cr_assert_not(compat_check(o, n, COMPAT_BACKWARD, reasons));
    json_t *r = json_array_get(reasons, 0);
    cr_assert_str_eq(json_string_value(json_object_get(r, "path")), "/properties/size");
    cr_assert_str_eq(json_string_value(json_object_get(r, "direction")), "backward");
    cr_assert_not_null(strstr(json_string_value(json_object_get(r, "message")), "maximum"));
    json_decref(reasons);
    json_decref(o);
    json_decref(n);
}

Test(compat, refs_are_followed_inside_each_document)
{
    json_t *o = json_loads("{\"$defs\":{\"s\":{\"type\":\"string\"}},\"properties\":{\"a\":{\"$ref\":"
                           "\"#/$defs/s\"}}}", 0, NULL);
    json_t *n = json_loads("{\"properties\":{\"a\":{\"type\":[\"string\",\"null\"]}}}", 0, NULL);
    json_t *reasons = json_array();
    cr_assert(compat_check(o, n, COMPAT_BACKWARD, reasons), "string ⊆ string|null");
    cr_assert_not(compat_check(o, n, COMPAT_FORWARD, reasons), "string|null ⊄ string");
    json_decref(reasons);
    json_decref(o);
    json_decref(n);
}

Test(compat, mode_names_parse_in_any_case)
{
    cr_assert_eq(compat_mode_parse("backward"), COMPAT_BACKWARD);
    cr_assert_eq(compat_mode_parse("FULL_TRANSITIVE"), COMPAT_FULL_TRANSITIVE);
    cr_assert_eq(compat_mode_parse("SIDEWAYS"), -1);
    cr_assert(compat_mode_transitive(COMPAT_FORWARD_TRANSITIVE));
    cr_assert_not(compat_mode_transitive(COMPAT_FULL));
}
