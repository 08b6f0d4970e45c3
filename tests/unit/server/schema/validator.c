/* Unit tests of server/schema/validator.c and validator_compile.c: what
 * schema_compile refuses and why, what schema_validate reports and where,
 * the depth limits, and concurrent use of one compiled schema. The official
 * JSON-Schema-Test-Suite runs separately (tests/conformance/jsts.c). */
#include "schema/validator.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ----------------------------------------------------------------- helpers */

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    cr_assert(j, "test JSON must parse: %s (%s)", err.text, text);
    return j;
}

static schema *compile_ok(const char *text)
{
    json_t *doc = parse(text), *errors = json_array();
    schema_status st;
    schema *s = schema_compile(doc, &st, errors);
    char *e = json_dumps(errors, 0);
    cr_assert(s, "schema must compile: %s -> %s", text, e);
    cr_assert_eq(st, SCHEMA_OK);
    cr_assert_eq(json_array_size(errors), 0);
    free(e);
    json_decref(doc);
    json_decref(errors);
    return s;
}

/* Compiles `text`, expecting failure with `want`; returns the error list. */
static json_t *compile_fails(const char *text, schema_status want)
{
    json_t *doc = parse(text), *errors = json_array();
    schema_status st = SCHEMA_OK;
    schema *s = schema_compile(doc, &st, errors);
    cr_assert_null(s, "schema must not compile: %s", text);
    cr_assert_eq(st, want, "status %d, want %d for %s", st, want, text);
    cr_assert_gt(json_array_size(errors), 0, "a failed compile explains itself");
    json_decref(doc);
    return errors;
}

/* Validates `instance` and returns the errors (caller decrefs). */
static json_t *violations(const schema *s, const char *instance, const char *prefix, int index,
                          bool *valid)
{
    json_t *inst = parse(instance), *errors = json_array();
    *valid = schema_validate(s, inst, prefix, index, errors);
    bool quick = schema_validate(s, inst, prefix, index, NULL);
    cr_assert_eq(*valid, quick, "with and without an error list the answer is the same");
    cr_assert_eq(*valid, json_array_size(errors) == 0,
                 "invalid exactly when something is reported");
    json_decref(inst);
    return errors;
}

/* The entry with this path and keyword, or NULL. */
static json_t *find(json_t *errors, const char *path, const char *keyword)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "path")), path) == 0 &&
            strcmp(json_string_value(json_object_get(e, "keyword")), keyword) == 0)
            return e;
    }
    return NULL;
}

static void assert_has(json_t *errors, const char *path, const char *keyword)
{
    char *all = json_dumps(errors, JSON_INDENT(1));
    cr_assert(find(errors, path, keyword), "expected a %s violation at %s in %s", keyword, path,
              all);
    free(all);
}

/* --------------------------------------------------------------- reporting */

static const char *FILE_SCHEMA =
    "{\"type\":\"object\",\"required\":[\"file_id\",\"file_name\",\"file_size\"],"
    "\"additionalProperties\":false,"
    "\"properties\":{"
    "  \"file_id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "  \"file_name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":255},"
    "  \"file_size\":{\"type\":\"integer\",\"minimum\":0},"
    "  \"mime\":{\"enum\":[\"text/plain\",\"application/pdf\"]},"
    "  "
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"pattern\":\"^[a-z]+$\"},"
    "\"uniqueItems\":true},"
    "  "
    "\"owner\":{\"type\":\"object\",\"required\":[\"id\"],\"properties\":{\"id\":{\"type\":"
    "\"integer\"}}}}}";

Test(validator, reports_every_violation_with_its_path_keyword_and_index)
{
    schema *s = compile_ok(FILE_SCHEMA);
    bool valid;
    json_t *errors =
        violations(s,
                   "{\"file_id\":\"not-a-uuid\",\"file_size\":\"12\",\"mime\":\"image/png\","
                   "\"tags\":[\"ok\",\"Bad\",\"ok\"],\"owner\":{\"id\":1.5},\"extra\":1}",
                   "/data", 3, &valid);
    cr_assert_not(valid);
    assert_has(errors, "/data/file_id", "format");
    assert_has(errors, "/data/file_name", "required");
    assert_has(errors, "/data/file_size", "type");
    assert_has(errors, "/data/mime", "enum");
    assert_has(errors, "/data/tags/1", "pattern");
    assert_has(errors, "/data/tags", "uniqueItems");
    assert_has(errors, "/data/owner/id", "type");
    assert_has(errors, "/data/extra", "additionalProperties");
    cr_assert_eq(json_array_size(errors), 8, "one entry per violation");
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        cr_assert_eq(json_integer_value(json_object_get(e, "index")), 3);
        cr_assert(json_is_string(json_object_get(e, "message")));
        cr_assert_eq(json_object_size(e), 4, "index, path, keyword, message");
    }
    json_decref(errors);
    schema_free(s);
}

Test(validator, messages_name_what_was_expected_and_what_came)
{
    schema *s = compile_ok(FILE_SCHEMA);
    bool valid;
    json_t *errors = violations(s,
                                "{\"file_id\":\"2eb8aa08-aa98-11ea-b4aa-73b441d16380\",\"file_"
                                "name\":\"a\",\"file_size\":\"x\"}",
                                "/data", -1, &valid);
    json_t *e = find(errors, "/data/file_size", "type");
    cr_assert(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "message")),
                     "expected integer, got string");
    cr_assert_null(json_object_get(e, "index"), "index < 0 is omitted");
    json_decref(errors);

    errors = violations(s,
                        "{\"file_id\":\"2eb8aa08-aa98-11ea-b4aa-73b441d16380\",\"file_name\":\"a\","
                        "\"file_size\":-5}",
                        "", -1, &valid);
    e = find(errors, "/file_size", "minimum");
    cr_assert(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "message")), "must be >= 0, got -5");
    json_decref(errors);

    errors = violations(s, "{\"file_name\":\"a\",\"file_size\":1}", "", -1, &valid);
    e = find(errors, "/file_id", "required");
    cr_assert(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "message")),
                     "missing required property \"file_id\"");
    json_decref(errors);
    schema_free(s);
}

Test(validator, a_valid_instance_reports_nothing)
{
    schema *s = compile_ok(FILE_SCHEMA);
    bool valid;
    json_t *errors = violations(
        s,
        "{\"file_id\":\"2eb8aa08-aa98-11ea-b4aa-73b441d16380\",\"file_name\":\"a.txt\","
        "\"file_size\":1024,\"mime\":\"text/plain\",\"tags\":[\"a\",\"b\"],\"owner\":{\"id\":7}}",
        "/data", 0, &valid);
    cr_assert(valid);
    cr_assert_eq(json_array_size(errors), 0);
    json_decref(errors);
    schema_free(s);
}

Test(validator, member_names_are_escaped_in_paths)
{
    schema *s =
        compile_ok("{\"properties\":{\"a/b\":{\"properties\":{\"c~d\":{\"type\":\"string\"}}}}}");
    bool valid;
    json_t *errors = violations(s, "{\"a/b\":{\"c~d\":1}}", "/data", -1, &valid);
    assert_has(errors, "/data/a~1b/c~0d", "type");
    json_decref(errors);
    schema_free(s);
}

Test(validator, a_null_prefix_means_paths_from_the_root)
{
    schema *s = compile_ok("{\"items\":{\"type\":\"integer\"}}");
    json_t *inst = parse("[1,\"x\"]"), *errors = json_array();
    cr_assert_not(schema_validate(s, inst, NULL, -1, errors));
    assert_has(errors, "/1", "type");
    json_decref(errors);
    json_decref(inst);
    schema_free(s);
}

Test(validator, lists_at_most_100_violations)
{
    schema *s = compile_ok("{\"items\":{\"type\":\"string\"}}");
    char *text = malloc(500 * 2 + 3);
    char *p = text;
    *p++ = '[';
    for (int i = 0; i < 500; i++)
        p += sprintf(p, "%s1", i ? "," : "");
    *p++ = ']';
    *p = '\0';
    bool valid;
    json_t *errors = violations(s, text, "", -1, &valid);
    cr_assert_not(valid);
    cr_assert_eq(json_array_size(errors), SCHEMA_MAX_ERRORS);
    assert_has(errors, "/0", "type");
    assert_has(errors, "/99", "type");
    json_decref(errors);
    free(text);
    schema_free(s);
}

Test(validator, anyof_failure_is_one_violation_that_explains_each_branch)
{
    schema *s = compile_ok("{\"properties\":{\"at\":{\"anyOf\":[{\"type\":\"string\",\"format\":"
                           "\"date-time\"},{\"type\":\"null\"}]}}}");
    bool valid;
    json_t *errors = violations(s, "{\"at\":\"yesterday\"}", "", -1, &valid);
    cr_assert_eq(json_array_size(errors), 1);
    json_t *e = find(errors, "/at", "anyOf");
    cr_assert(e);
    const char *m = json_string_value(json_object_get(e, "message"));
    cr_assert(strstr(m, "must be a valid date-time") && strstr(m, "expected null, got string"),
              "message: %s", m);
    json_decref(errors);
    schema_free(s);
}

Test(validator, unevaluated_and_dependent_properties_point_at_the_property)
{
    schema *s =
        compile_ok("{\"allOf\":[{\"properties\":{\"a\":true}}],\"unevaluatedProperties\":false,"
                   "\"dependentRequired\":{\"a\":[\"b\"]}}");
    bool valid;
    json_t *errors = violations(s, "{\"a\":1,\"z\":2}", "/data", -1, &valid);
    assert_has(errors, "/data/z", "unevaluatedProperties");
    assert_has(errors, "/data/b", "dependentRequired");
    cr_assert_eq(json_array_size(errors), 2);
    json_decref(errors);
    schema_free(s);
}

Test(validator, integers_are_mathematical)
{
    schema *s = compile_ok("{\"type\":\"integer\",\"enum\":[1,2]}");
    bool valid;
    json_t *errors = violations(s, "1.0", "", -1, &valid);
    cr_assert(valid, "1.0 is the integer 1");
    json_decref(errors);
    errors = violations(s, "1.5", "", -1, &valid);
    cr_assert_not(valid);
    json_decref(errors);
    schema_free(s);

    s = compile_ok("{\"uniqueItems\":true}");
    errors = violations(s, "[1, 1.0]", "", -1, &valid);
    cr_assert_not(valid, "1 and 1.0 are equal");
    json_decref(errors);
    errors = violations(s, "[{\"a\":1,\"b\":2}, {\"b\":2,\"a\":1.0}]", "", -1, &valid);
    cr_assert_not(valid, "member order does not matter");
    json_decref(errors);
    schema_free(s);
}

Test(validator, unique_items_scales_to_long_arrays)
{
    schema *s = compile_ok("{\"uniqueItems\":true}");
    json_t *arr = json_array();
    for (int i = 0; i < 100000; i++)
        json_array_append_new(arr, json_integer(i));
    cr_assert(schema_validate(s, arr, "", -1, NULL));
    json_array_append_new(arr, json_real(5000.0));
    json_t *errors = json_array();
    cr_assert_not(schema_validate(s, arr, "", -1, errors));
    const char *m = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
    cr_assert(strstr(m, "5000") && strstr(m, "100000"), "names both items: %s", m);
    json_decref(errors);
    json_decref(arr);
    schema_free(s);
}

/* ------------------------------------------------------------- compiling */

Test(validator, an_unknown_keyword_is_unsupported_at_its_path)
{
    json_t *errors = compile_fails(
        "{\"properties\":{\"a\":{\"type\":\"string\",\"x-unique\":true}}}", SCHEMA_UNSUPPORTED);
    assert_has(errors, "/properties/a/x-unique", "x-unique");
    json_decref(errors);
}

Test(validator, every_problem_of_a_schema_is_listed)
{
    json_t *errors = compile_fails(
        "{\"foo\":1,\"properties\":{\"a\":{\"bar\":2},\"b\":{\"minLength\":-1}}}", SCHEMA_INVALID);
    assert_has(errors, "/foo", "foo");
    assert_has(errors, "/properties/a/bar", "bar");
    assert_has(errors, "/properties/b/minLength", "minLength");
    json_decref(errors);
}

Test(validator, pre_2020_keywords_formats_dialects_and_remote_refs_are_unsupported)
{
    json_t *e = compile_fails("{\"dependencies\":{\"a\":[\"b\"]}}", SCHEMA_UNSUPPORTED);
    assert_has(e, "/dependencies", "dependencies");
    json_decref(e);
    e = compile_fails("{\"format\":\"int32\"}", SCHEMA_UNSUPPORTED);
    assert_has(e, "/format", "format");
    json_decref(e);
    e = compile_fails("{\"$schema\":\"http://json-schema.org/draft-07/schema#\"}",
                      SCHEMA_UNSUPPORTED);
    assert_has(e, "/$schema", "$schema");
    json_decref(e);
    e = compile_fails("{\"properties\":{\"a\":{\"$ref\":\"https://example.com/other.json\"}}}",
                      SCHEMA_UNSUPPORTED);
    assert_has(e, "/properties/a/$ref", "$ref");
    json_decref(e);
    e = compile_fails("{\"$dynamicRef\":\"other.json#x\"}", SCHEMA_UNSUPPORTED);
    assert_has(e, "/$dynamicRef", "$dynamicRef");
    json_decref(e);
    e = compile_fails("{\"$vocabulary\":{}}", SCHEMA_UNSUPPORTED);
    json_decref(e);
    e = compile_fails("{\"pattern\":\"(?<=a+)b\"}", SCHEMA_UNSUPPORTED);
    assert_has(e, "/pattern", "pattern");
    json_decref(e);
}

Test(validator, malformed_keyword_values_are_invalid)
{
    static const char *const bad[] = {
        "{\"type\":\"strng\"}",
        "{\"type\":[]}",
        "{\"required\":[\"a\",\"a\"]}",
        "{\"minimum\":\"0\"}",
        "{\"multipleOf\":0}",
        "{\"pattern\":\"(unclosed\"}",
        "{\"pattern\":\"\\\\a\"}",
        "{\"items\":[{}]}",
        "{\"allOf\":[]}",
        "{\"$ref\":\"#/$defs/missing\"}",
        "{\"$ref\":\"#nowhere\"}",
        "{\"$id\":\"http://x.test/a#frag\"}",
        "{\"$anchor\":\"1bad\"}",
        "{\"properties\":{\"a\":3}}",
        "{\"enum\":{}}",
        "{\"uniqueItems\":1}",
        "[]",
        "\"string\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *e = compile_fails(bad[i], SCHEMA_INVALID);
        json_decref(e);
    }
}

Test(validator, annotations_and_the_2020_12_dialect_are_accepted)
{
    schema *s = compile_ok(
        "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
        "sluice.dev/t\","
        "\"$comment\":\"c\",\"title\":\"t\",\"description\":\"d\",\"default\":{},\"examples\":[1],"
        "\"deprecated\":false,\"readOnly\":true,\"writeOnly\":false,\"contentMediaType\":\"text/"
        "plain\","
        "\"contentEncoding\":\"base64\",\"contentSchema\":{\"type\":\"string\"}}");
    schema_free(s);
}

Test(validator, every_supported_keyword_compiles)
{
    size_t n = 0;
    for (const char *const *k = schema_supported_keywords; *k; k++)
        n++;
    cr_assert_geq(n, 50);
    /* one schema using every keyword at once */
    schema *s = compile_ok(
        "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://"
        "sluice.dev/all\","
        "\"$defs\":{\"a\":{\"$anchor\":\"a\",\"$dynamicAnchor\":\"d\",\"type\":\"string\"}},"
        "\"$ref\":\"#a\",\"$dynamicRef\":\"#d\",\"$comment\":\"x\",\"type\":[\"string\",\"null\"],"
        "\"enum\":[\"a\",null],"
        "\"const\":\"a\",\"properties\":{},\"required\":[],\"additionalProperties\":true,"
        "\"patternProperties\":{},"
        "\"propertyNames\":true,\"minProperties\":0,\"maxProperties\":9,\"dependentRequired\":{},"
        "\"dependentSchemas\":{},"
        "\"items\":true,\"prefixItems\":[true],\"contains\":true,\"minContains\":0,\"maxContains\":"
        "3,\"minItems\":0,"
        "\"maxItems\":9,\"uniqueItems\":false,\"minLength\":1,\"maxLength\":9,\"pattern\":\"a\","
        "\"format\":\"regex\","
        "\"minimum\":0,\"maximum\":9,\"exclusiveMinimum\":-1,\"exclusiveMaximum\":10,"
        "\"multipleOf\":1,"
        "\"allOf\":[true],\"anyOf\":[true],\"oneOf\":[true],\"not\":false,\"if\":true,\"then\":"
        "true,\"else\":true,"
        "\"unevaluatedProperties\":true,\"unevaluatedItems\":true,\"title\":\"\",\"description\":"
        "\"\",\"default\":1,"
        "\"examples\":[],\"deprecated\":true,\"readOnly\":false,\"writeOnly\":false,"
        "\"contentMediaType\":\"a\","
        "\"contentEncoding\":\"b\",\"contentSchema\":true}");
    json_t *inst = parse("\"a\"");
    cr_assert(schema_validate(s, inst, "", -1, NULL));
    json_decref(inst);
    schema_free(s);
}

Test(validator, the_2020_12_meta_schema_is_available_by_reference)
{
    schema *s = compile_ok("{\"$ref\":\"https://json-schema.org/draft/2020-12/schema\"}");
    bool valid;
    json_t *errors = violations(s, "{\"type\":\"object\",\"properties\":{\"a\":{\"minimum\":1}}}",
                                "", -1, &valid);
    cr_assert(valid);
    json_decref(errors);
    errors = violations(s, "{\"properties\":{\"a\":{\"minimum\":\"1\"}}}", "", -1, &valid);
    cr_assert_not(valid);
    assert_has(errors, "/properties/a/minimum", "type");
    json_decref(errors);
    schema_free(s);
}

Test(validator, the_compiled_schema_does_not_borrow_the_document)
{
    json_t *doc = parse("{\"properties\":{\"a\":{\"enum\":[\"x\",\"y\"]}}}");
    schema_status st;
    schema *s = schema_compile(doc, &st, NULL);
    cr_assert(s);
    json_decref(doc);
    json_t *inst = parse("{\"a\":\"y\"}");
    cr_assert(schema_validate(s, inst, "", -1, NULL));
    json_decref(inst);
    schema_free(s);
}

/* --------------------------------------------------------------- limits */

/* {"properties":{"a":{"properties":{"a": ... {}}}}} with `levels` schemas. */
static char *nested_schema(int levels)
{
    size_t cap = (size_t)levels * 24 + 16;
    char *t = malloc(cap), *p = t;
    for (int i = 1; i < levels; i++)
        p += sprintf(p, "{\"properties\":{\"a\":");
    p += sprintf(p, "{}");
    for (int i = 1; i < levels; i++)
        p += sprintf(p, "}}");
    return t;
}

Test(validator, schemas_nest_at_most_64_deep)
{
    char *ok = nested_schema(SCHEMA_MAX_SCHEMA_DEPTH + 1); /* root + 64 nested subschemas */
    schema *s = compile_ok(ok);
    schema_free(s);
    free(ok);
    char *deep = nested_schema(SCHEMA_MAX_SCHEMA_DEPTH + 2);
    json_t *errors = compile_fails(deep, SCHEMA_INVALID);
    const char *m = json_string_value(json_object_get(json_array_get(errors, 0), "message"));
    cr_assert(strstr(m, "64"), "%s", m);
    json_decref(errors);
    free(deep);
}

static json_t *nested_instance(int levels)
{
    json_t *v = json_object();
    for (int i = 0; i < levels; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "a", v);
        v = o;
    }
    return v;
}

Test(validator, instances_deeper_than_128_are_a_violation_not_a_crash)
{
    schema *s = compile_ok(
        "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/n\"}}}},"
        "\"$ref\":\"#/$defs/n\"}");
    json_t *ok = nested_instance(SCHEMA_MAX_INSTANCE_DEPTH);
    cr_assert(schema_validate(s, ok, "", -1, NULL), "128 levels are fine");
    json_decref(ok);
    json_t *deep = nested_instance(100000), *errors = json_array();
    cr_assert_not(schema_validate(s, deep, "/data", -1, errors));
    cr_assert_eq(json_array_size(errors), 1);
    json_t *e = json_array_get(errors, 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "keyword")), "depth");
    const char *path = json_string_value(json_object_get(e, "path"));
    cr_assert_eq(strlen(path), strlen("/data") + 2 * (SCHEMA_MAX_INSTANCE_DEPTH + 1), "path %s",
                 path);
    json_decref(errors);
    /* jansson frees deep values recursively; unwind it level by level */
    while (json_is_object(deep) && json_object_get(deep, "a")) {
        json_t *next = json_incref(json_object_get(deep, "a"));
        json_decref(deep);
        deep = next;
    }
    json_decref(deep);
    schema_free(s);
}

Test(validator, a_ref_cycle_on_one_location_terminates)
{
    static const char *const loops[] = {
        "{\"$ref\":\"#\"}",
        ("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"allOf\":[{\"$ref\":\"#/$defs/"
         "a\"}]}},\"$ref\":\"#/$defs/a\"}"),
        "{\"anyOf\":[{\"type\":\"string\"},{\"$ref\":\"#\"}]}",
    };
    for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++) {
        schema *s = compile_ok(loops[i]);
        json_t *inst = parse("{\"x\":1}"), *errors = json_array();
        cr_assert_not(schema_validate(s, inst, "", -1, errors), "%s", loops[i]);
        cr_assert_not(schema_validate(s, inst, "", -1, NULL));
        cr_assert_gt(json_array_size(errors), 0);
        json_decref(errors);
        json_decref(inst);
        schema_free(s);
    }
}

typedef struct stack_job {
    const schema *s;
    json_t *inst;
    bool valid;
    size_t nerrors;
} stack_job;

static void *stack_worker(void *arg)
{
    stack_job *j = arg;
    json_t *errors = json_array();
    j->valid = schema_validate(j->s, j->inst, "", -1, errors);
    j->nerrors = json_array_size(errors);
    json_decref(errors);
    return NULL;
}

Test(validator, the_deepest_evaluation_fits_a_2_mib_thread_stack)
{
    /* every level of a 128-deep instance through several nodes, and a $ref
     * cycle that runs into SCHEMA_MAX_EVAL_DEPTH: both within 2 MiB */
    static const char *const schemas[] = {
        ("{\"$defs\":{\"n\":{\"allOf\":[{\"$ref\":\"#/$defs/"
         "m\"}]},\"m\":{\"anyOf\":[{\"properties\":{\"a\":"
         "{\"$ref\":\"#/$defs/n\"}}}]}},\"$ref\":\"#/$defs/n\"}"),
        ("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"allOf\":[{\"$ref\":\"#/$defs/"
         "a\"}]}},\"$ref\":\"#/$defs/a\"}"),
    };
    for (size_t i = 0; i < 2; i++) {
        stack_job j = {.s = compile_ok(schemas[i]),
                       .inst = nested_instance(SCHEMA_MAX_INSTANCE_DEPTH)};
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 2 << 20);
        pthread_t t;
        cr_assert_eq(pthread_create(&t, &attr, stack_worker, &j), 0);
        pthread_join(t, NULL);
        pthread_attr_destroy(&attr);
        if (i == 0)
            cr_assert(j.valid, "128 levels through allOf/anyOf/$ref are fine");
        else
            cr_assert(!j.valid && j.nerrors > 0, "the cycle is reported");
        json_decref(j.inst);
        schema_free((schema *)j.s);
    }
}

Test(validator, a_null_instance_is_invalid_not_a_crash)
{
    schema *s = compile_ok("{}");
    json_t *errors = json_array();
    cr_assert_not(schema_validate(s, NULL, "/data", 2, errors));
    assert_has(errors, "/data", "type");
    json_decref(errors);
    schema_free(s);
}

/* {"anyOf":[S,S]} nested `levels` deep around {"type":"null"}: 2^levels
 * evaluations for a value that matches nothing. */
static char *exponential_schema(int levels)
{
    const char *leaf = "{\"type\":\"null\"}";
    char *s = strdup(leaf);
    for (int i = 0; i < levels; i++) {
        char *t = NULL;
        cr_assert(
            asprintf(
                &t,
                "{\"$defs\":{\"x\":%s},\"anyOf\":[{\"$ref\":\"#/$defs/x\"},{\"allOf\":[{\"$ref\":"
                "\"#/$defs/x\"}]}]}",
                s) > 0);
        free(s);
        s = t;
    }
    return s;
}

Test(validator, exponential_schemas_are_cut_off_by_the_evaluation_budget)
{
    char *text = exponential_schema(40);
    schema *s = compile_ok(text);
    free(text);
    json_t *inst = json_integer(1), *errors = json_array();
    clock_t t0 = clock();
    cr_assert_not(schema_validate(s, inst, "/data", 0, errors));
    cr_assert_not(schema_validate(s, inst, "/data", 0, NULL));
    cr_assert_lt((double)(clock() - t0) / CLOCKS_PER_SEC, 5.0, "bounded work");
    assert_has(errors, "/data", "complexity");
    json_decref(errors);

    /* `not` of an exhausted evaluation is not a pass */
    json_decref(inst);
    schema_free(s);
    text = exponential_schema(40);
    json_t *doc = parse(text);
    free(text);
    json_t *any = json_incref(json_object_get(doc, "anyOf"));
    json_object_del(doc, "anyOf");
    json_object_set_new(doc, "not", json_pack("{s:o}", "anyOf", any));
    char *negated = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    s = compile_ok(negated);
    free(negated);
    inst = json_integer(1);
    cr_assert_not(schema_validate(s, inst, "", -1, NULL));
    json_decref(inst);
    schema_free(s);
}

Test(validator, a_recursive_schema_over_a_finite_instance_is_fine)
{
    /* infinite-loop-detection.json's point: the same schema at the same
     * location twice is not a loop */
    schema *s = compile_ok(
        "{\"$defs\":{\"int\":{\"type\":\"integer\"}},\"allOf\":[{\"properties\":{\"foo\":{\"$ref\":"
        "\"#/$defs/int\"}}},{\"additionalProperties\":{\"$ref\":\"#/$defs/int\"}}]}");
    bool valid;
    json_t *errors = violations(s, "{\"foo\":1}", "", -1, &valid);
    cr_assert(valid);
    json_decref(errors);
    errors = violations(s, "{\"foo\":\"a\"}", "", -1, &valid);
    cr_assert_not(valid);
    cr_assert_eq(json_array_size(errors), 2, "both allOf branches report /foo");
    json_decref(errors);
    schema_free(s);
}

/* ------------------------------------------------------------ concurrency */

#define THREADS 4
#define ROUNDS 2000

static const char *const CONC_INSTANCES[] = {
    "{\"file_id\":\"2eb8aa08-aa98-11ea-b4aa-73b441d16380\",\"file_name\":\"a\",\"file_size\":1,"
    "\"tags\":[\"x\"]}",
    "{\"file_id\":\"nope\",\"file_size\":-1,\"tags\":[\"x\",\"x\",\"Y\"],\"extra\":[]}",
    "{\"file_id\":\"2eb8aa08-aa98-11ea-b4aa-73b441d16380\",\"file_name\":\"\",\"file_size\":1.5,"
    "\"owner\":{}}",
    "[]",
};
#define NCONC (sizeof CONC_INSTANCES / sizeof CONC_INSTANCES[0])

typedef struct conc_job {
    const schema *s;
    json_t *inst[NCONC];
    char *expect[NCONC]; /* serialised error lists from one thread */
    int mismatches;
} conc_job;

static char *answer(const schema *s, json_t *inst)
{
    json_t *errors = json_array();
    bool valid = schema_validate(s, inst, "/data", 1, errors);
    json_t *both = json_pack("{s:b,s:o}", "valid", valid, "errors", errors);
    char *text = json_dumps(both, JSON_COMPACT);
    json_decref(both);
    return text;
}

static void *conc_worker(void *arg)
{
    conc_job *j = arg;
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < NCONC; i++) {
            char *got = answer(j->s, j->inst[i]);
            if (strcmp(got, j->expect[i]) != 0)
                __atomic_add_fetch(&j->mismatches, 1, __ATOMIC_RELAXED);
            free(got);
        }
    }
    return NULL;
}

Test(validator, four_threads_on_one_schema_get_the_same_answers)
{
    conc_job j = {.s = compile_ok(FILE_SCHEMA)};
    for (size_t i = 0; i < NCONC; i++) {
        j.inst[i] = parse(CONC_INSTANCES[i]);
        j.expect[i] = answer(j.s, j.inst[i]);
    }
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, conc_worker, &j), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(j.mismatches, 0);
    cr_assert(strstr(j.expect[1], "uniqueItems") && strstr(j.expect[1], "\"index\":1"), "%s",
              j.expect[1]);
    for (size_t i = 0; i < NCONC; i++) {
        json_decref(j.inst[i]);
        free(j.expect[i]);
    }
    schema_free((schema *)j.s);
}
