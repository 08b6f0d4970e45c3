/*
 * tests/fuzz/validate.c — the JSON Schema validator with both sides fuzzed (issue 8).
 *
 * Input: "<schema>\n<instance>": the bytes up to the first newline are the schema, the
 * rest is the instance (both any JSON value). When the schema compiles, the instance is
 * validated as a publish would ("/data" prefix, a batch index) and plainly, with and
 * without an errors list; the answers must agree (valid exactly when nothing is listed),
 * every path must start with the prefix, and the list must stay within SCHEMA_MAX_ERRORS.
 */
#include "fuzz.h"
#include "schema/validator.h"

#include <stdint.h>

static void check(const schema *s, json_t *instance, const char *prefix, int index)
{
    json_t *errors = json_array();
    bool valid = schema_validate(s, instance, prefix, index, errors);
    size_t n = json_array_size(errors);
    if (valid && n) fuzz_fail("valid, yet %zu error(s) listed", n);
    if (!valid && !n) fuzz_fail("invalid, yet no error listed");
    fuzz_check(n <= SCHEMA_MAX_ERRORS, "at most %d errors, got %zu", SCHEMA_MAX_ERRORS, n);
    size_t plen = prefix ? strlen(prefix) : 0;
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        fuzz_check_error_entry(e, "schema_validate");
        const char *path = json_string_value(json_object_get(e, "path"));
        if (plen && strncmp(path, prefix, plen) != 0)
            fuzz_fail("path '%s' lacks the prefix '%s'", path, prefix);
        json_t *ix = json_object_get(e, "index");
        if (index >= 0 && json_integer_value(ix) != index) fuzz_fail("wrong or missing index");
        if (index < 0 && ix) fuzz_fail("index given although < 0");
    }
    fuzz_check_roundtrip(errors, "validation errors");
    json_decref(errors);
    bool quick = schema_validate(s, instance, prefix, index, NULL);
    if (quick != valid) fuzz_fail("validate with errors says %d, without says %d", valid, quick);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl) return 0;
    size_t slen = (size_t)(nl - data);
    json_error_t err;
    json_t *doc = json_loadb((const char *)data, slen, FUZZ_BODY_FLAGS, &err);
    if (!doc) return 0;
    json_t *instance =
        json_loadb((const char *)nl + 1, size - slen - 1, FUZZ_BODY_FLAGS, &err);
    schema_status st;
    schema *s = schema_compile(doc, &st, NULL);
    json_decref(doc);
    if (s) {
        /* A NULL instance (it did not parse) is "no value": invalid, with an error. */
        check(s, instance, "/data", 7);
        if (instance) check(s, instance, NULL, -1);
        schema_free(s);
    }
    json_decref(instance);
    return 0;
}
