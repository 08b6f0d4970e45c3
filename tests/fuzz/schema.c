/*
 * tests/fuzz/schema.c — the JSON Schema 2020-12 compiler (issue 8).
 *
 * Input: a schema document, as the "schema" member of POST /v1/schemas carries it (any
 * JSON value; booleans are schemas too). schema_compile() must answer a compiled schema or
 * NULL with a status and at least one error entry; when it compiles, the schema validates
 * a fixed set of instances and the document itself, each twice (with an errors list and
 * without), and both answers must agree: valid exactly when no error is listed.
 */
#include "fuzz.h"
#include "schema/validator.h"

#include <stdint.h>

static const char *const instances[] = {
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "9007199254740993",
    "\"\"",
    "\"abc\"",
    "\"2024-02-29T12:00:00Z\"",
    "\"user@example.com\"",
    "\"\\u00e9t\\u00e9 \\ud83d\\ude00\"",
    "[]",
    "[1,\"a\",null,[2],{\"b\":3}]",
    "{}",
    "{\"a\":1,\"b\":\"x\",\"c\":[true,false],\"d\":{\"e\":null}}",
    "{\"file_id\":\"f1\",\"user_id\":\"u1\",\"file_size\":42,\"mime_type\":\"text/plain\"}",
    "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]",
};
#define N_INSTANCES (sizeof instances / sizeof instances[0])
static json_t *parsed[N_INSTANCES];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < N_INSTANCES; i++) {
        json_error_t err;
        parsed[i] = json_loads(instances[i], JSON_DECODE_ANY, &err);
        if (!parsed[i]) fuzz_fail("fixed instance %zu: %s", i, err.text);
    }
    return 0;
}

/* Validates `instance` both ways and checks that the answers agree. */
static void check_validate(const schema *s, json_t *instance, int index)
{
    json_t *errors = json_array();
    bool valid = schema_validate(s, instance, "/data", index, errors);
    size_t n = json_array_size(errors);
    if (valid && n) fuzz_fail("valid, yet %zu error(s) listed", n);
    if (!valid && !n) fuzz_fail("invalid, yet no error listed");
    fuzz_check(n <= SCHEMA_MAX_ERRORS, "at most %d errors, got %zu", SCHEMA_MAX_ERRORS, n);
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        fuzz_check_error_entry(e, "schema_validate");
        const char *path = json_string_value(json_object_get(e, "path"));
        if (strncmp(path, "/data", 5) != 0) fuzz_fail("path '%s' lacks the prefix /data", path);
        json_t *ix = json_object_get(e, "index");
        if (index >= 0 && json_integer_value(ix) != index) fuzz_fail("wrong or missing index");
        if (index < 0 && ix) fuzz_fail("index given although < 0");
        fuzz_check(json_is_string(json_object_get(e, "keyword")), "keyword");
    }
    fuzz_check_roundtrip(errors, "validation errors");
    json_decref(errors);
    bool quick = schema_validate(s, instance, NULL, -1, NULL);
    if (quick != valid) fuzz_fail("validate with errors says %d, without says %d", valid, quick);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *doc = json_loadb((const char *)data, size, FUZZ_BODY_FLAGS, &err);
    if (!doc) return 0;
    char *before = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);

    schema_status st = SCHEMA_OK;
    json_t *errors = json_array();
    schema *s = schema_compile(doc, &st, errors);
    if (s) {
        fuzz_check(st == SCHEMA_OK, "compiled, yet status %d", st);
        for (size_t i = 0; i < N_INSTANCES; i++) check_validate(s, parsed[i], (int)i);
        check_validate(s, doc, -1);
        schema_free(s);
    } else {
        fuzz_check(st == SCHEMA_INVALID || st == SCHEMA_UNSUPPORTED, "status %d", st);
        fuzz_check(json_array_size(errors) > 0, "a refused schema lists its problems");
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e) fuzz_check_error_entry(e, "schema_compile");
        fuzz_check_roundtrip(errors, "schema errors");
        /* NULL errors must be fine too, with the same verdict. */
        schema_status st2 = SCHEMA_OK;
        schema *again = schema_compile(doc, &st2, NULL);
        fuzz_check(!again && st2 == st, "compile without an errors list agrees");
    }
    char *after = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    fuzz_check(strcmp(before, after) == 0, "schema_compile must not modify the document");
    free(before);
    free(after);
    json_decref(errors);
    json_decref(doc);
    return 0;
}
