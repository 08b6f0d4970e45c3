/* Unit tests of the validation budget (issue 13): regex_search_metered's
 * checkpoints and caps (server/schema/regex.c), and schema_validate_budget's
 * node and step budget shared by the calls of one request
 * (server/schema/validator.c). Each answers quickly where the unmetered
 * match or walk would burn seconds; the time bounds are generous (the
 * measured times are in bench/validation_attack), the step and node counts
 * are exact where they can be. */
#include "schema/regex.h"
#include "schema/validator.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ----------------------------------------------------------------- helpers */

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static regex *re(const char *pattern)
{
    char *err = NULL;
    regex *r = regex_new(pattern, strlen(pattern), &err, NULL);
    cr_assert(r, "/%s/ compiles: %s", pattern, err ? err : "");
    return r;
}

/* `n` copies of `unit` then `tail` (caller frees). */
static char *repeat(const char *unit, size_t n, const char *tail)
{
    size_t ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(ul * n + tl + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * ul, unit, ul);
    memcpy(s + ul * n, tail, tl + 1);
    return s;
}

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    cr_assert(j, "test JSON must parse: %s (%s)", err.text, text);
    return j;
}

static schema *compile_ok(const char *text)
{
    json_t *doc = parse(text);
    schema_status st;
    schema *s = schema_compile(doc, &st, NULL);
    cr_assert(s, "schema must compile: %s", text);
    json_decref(doc);
    return s;
}

/* An array of strings `item` filling about `bytes` bytes of JSON. */
static json_t *array_of(const char *item, size_t bytes)
{
    json_t *a = json_array();
    size_t n = bytes / (strlen(item) + 3);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(item));
    return a;
}

#define MIB (1024 * 1024)

/* ------------------------------------------------------------------- regex */

Test(budget, catastrophic_backtracking_stops_at_the_match_cap)
{
    /* ^(a+)+$ on "aaa…a!": 2^n ways to split the a's, none matching */
    regex *r = re("^(a+)+$");
    char *s = repeat("a", 4000, "!");
    size_t len = strlen(s);
    regex_meter m = {.left = 1000000000, .match_steps = 100000, .match_steps_per_byte = 4};
    long long cap = 100000 + 4 * (long long)len;
    double t0 = cpu_now();
    cr_assert_eq(regex_search_metered(r, s, len, &m), REGEX_TOO_COMPLEX);
    double t = cpu_now() - t0;
    long long used = 1000000000 - m.left;
    cr_assert_geq(used, cap, "it ran up to its cap: %lld steps", used);
    /* past the cap by at most one checkpoint's charge (1 + a distance + a quarter of the rest) */
    cr_assert_leq(used, cap + 1 + 2 * (long long)len, "and stopped there: %lld steps", used);
    cr_assert_lt(t, 0.5, "a capped match is prompt: %.3f s", t);
    free(s);
    regex_free(r);
}

Test(budget, a_match_stops_when_the_meter_runs_out)
{
    regex *r = re("^(a|a)*$");
    char *s = repeat("a", 40, "!");
    regex_meter m = {.left = 5000};
    cr_assert_eq(regex_search_metered(r, s, strlen(s), &m), REGEX_OVER_BUDGET);
    cr_assert_lt(m.left, 0, "the meter is spent");
    /* a spent meter refuses the next match before it starts */
    regex *cheap = re("a");
    cr_assert_eq(regex_search_metered(cheap, "a", 1, &m), REGEX_OVER_BUDGET);
    cr_assert_lt(m.left, 1);
    regex_free(cheap);
    free(s);
    regex_free(r);
}

Test(budget, scans_pcre2_does_not_count_are_metered)
{
    /* PCRE2's match limit is per start position and counts backtracking, not
     * scanning: each of these is quadratic (seconds on 200 KB) with the PCRE2
     * counter never past a few. The meter sees the scans. */
    static const char *const quadratic[] = {"(?=[a-z]*[0-9])", "[a-z]*[0-9]", "^a*(?=[a-z]*[0-9])",
                                            "(a*)\\1(?:c|$)"};
    char *s = repeat("a", 200000, "");
    for (size_t i = 0; i < sizeof quadratic / sizeof quadratic[0]; i++) {
        regex *r = re(quadratic[i]);
        regex_meter m = {.left = 1000000};
        double t0 = cpu_now();
        cr_assert_eq(regex_search_metered(r, s, strlen(s), &m), REGEX_OVER_BUDGET, "/%s/",
                     quadratic[i]);
        double t = cpu_now() - t0;
        cr_assert_lt(t, 0.5, "/%s/ stops at 1,000,000 steps: %.3f s", quadratic[i], t);
        regex_free(r);
    }
    free(s);
}

struct answer_case {
    const char *pattern;
    const char *subject;
};

Test(budget, metering_changes_no_answer)
{
    static const struct answer_case cases[] = {
        {"^[a-z]+/[a-z0-9.+-]+$", "application/pdf"},
        {"^[a-z]+/[a-z0-9.+-]+$", "Application/pdf"},
        {"^[a-z]{2}(-[A-Z]{2})?$", "en-US"},
        {"^[a-z]{2}(-[A-Z]{2})?$", "en-us"},
        {"^(?<y>\\d{4})-\\k<y>$", "2024-2024"},
        {"^(\\w+) \\1$", "abc abd"},
        {"(?<=\\$)\\d+", "cost $42"},
        {"^[\\S]+$", "a b"},
        {"^[^\\S]+$", "  "},
        {"a|b|c", "xxc"},
        {"^(?:a|ab)(?:c|bcd)$", "abcd"},
        {"^(a+)+$", "aaaa"},
        {"x*", ""},
        {"^$", ""},
        {"(?:ab)*c", "ababab"},
        {"\\bfoo\\b", "a foo b"},
        {"^.{3,5}$", "abcdef"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        regex *r = re(cases[i].pattern);
        size_t len = strlen(cases[i].subject);
        int plain = regex_search(r, cases[i].subject, len);
        regex_meter m = {.left = 1000000, .match_steps = 100000, .match_steps_per_byte = 4};
        int metered = regex_search_metered(r, cases[i].subject, len, &m);
        cr_assert_eq(metered, plain, "/%s/ on \"%s\"", cases[i].pattern, cases[i].subject);
        cr_assert(plain == REGEX_MATCH || plain == REGEX_NO_MATCH);
        long long used = 1000000 - m.left;
        cr_assert_lt(used, 100, "/%s/ on \"%s\" is cheap: %lld steps", cases[i].pattern,
                     cases[i].subject, used);
        regex_free(r);
    }
}

Test(budget, a_long_legitimate_subject_costs_about_its_length)
{
    /* 4 MiB of base64 against an anchored pattern: linear, a quarter step a byte */
    regex *r = re("^[A-Za-z0-9+/]*={0,2}$");
    char *s = repeat("QUJD", MIB, "");
    size_t len = strlen(s);
    regex_meter m = {.left = 100000000, .match_steps = 100000, .match_steps_per_byte = 4};
    cr_assert_eq(regex_search_metered(r, s, len, &m), REGEX_MATCH);
    long long used = 100000000 - m.left;
    cr_assert_geq(used, (long long)len / 4);
    cr_assert_leq(used, 2 * (long long)len, "%lld steps for %zu bytes", used, len);
    free(s);
    regex_free(r);
}

/* --------------------------------------------------------------- validator */

Test(budget, a_4_mib_array_of_strings_hits_the_request_budget)
{
    schema *s = compile_ok("{\"type\":\"array\",\"items\":{\"type\":\"string\","
                           "\"pattern\":\"^(a+)+$\"}}");
    json_t *inst = array_of("aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", 4 * MIB);
    json_t *errors = json_array();
    schema_budget b = {0}; /* the defaults */
    double t0 = cpu_now();
    cr_assert_not(schema_validate_budget(s, inst, "/data", 3, errors, &b));
    double t = cpu_now() - t0;
    cr_assert_eq(b.over, SCHEMA_OVER_STEPS);
    cr_assert_geq(b.steps, SCHEMA_DEFAULT_MAX_STEPS);
    cr_assert_lt(b.nodes, (long long)json_array_size(inst), "it stopped part of the way");
    cr_assert_eq(json_array_size(errors), 1, "one entry, where it stopped");
    json_t *e = json_array_get(errors, 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "keyword")), "max_steps");
    cr_assert_eq(json_integer_value(json_object_get(e, "index")), 3);
    const char *path = json_string_value(json_object_get(e, "path"));
    cr_assert(strncmp(path, "/data/", 6) == 0, "%s", path);
    cr_assert(strstr(json_string_value(json_object_get(e, "message")), "5000000"));
    cr_assert_lt(t, 2.0, "bounded: %.3f s", t);

    /* later calls with the spent budget stop at once */
    json_t *one = json_pack("[s]", "aaaa");
    json_array_clear(errors);
    cr_assert_not(schema_validate_budget(s, one, "/data", 4, errors, &b));
    cr_assert_eq(json_array_size(errors), 1);
    json_decref(one);

    /* schema_validate has a budget of the defaults of its own */
    json_array_clear(errors);
    t0 = cpu_now();
    cr_assert_not(schema_validate(s, inst, "/data", -1, errors));
    cr_assert_lt(cpu_now() - t0, 2.0);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(errors, 0), "keyword")),
                     "max_steps");
    json_decref(errors);
    json_decref(inst);
    schema_free(s);
}

Test(budget, a_4_mib_array_of_legitimate_strings_passes)
{
    schema *s = compile_ok("{\"type\":\"array\",\"items\":{\"type\":\"string\","
                           "\"pattern\":\"^[a-z]+$\",\"maxLength\":64}}");
    json_t *inst = array_of("abcdefghijklmnopqrstuvwxyz", 4 * MIB);
    schema_budget b = {0};
    cr_assert(schema_validate_budget(s, inst, "/data", -1, NULL, &b));
    cr_assert_eq(b.over, SCHEMA_WITHIN_BUDGET);
    cr_assert_lt(b.steps, SCHEMA_DEFAULT_MAX_STEPS);
    cr_assert_lt(b.nodes, SCHEMA_DEFAULT_MAX_NODES);
    json_decref(inst);
    schema_free(s);
}

static const char *EVENT_SCHEMA =
    "{\"type\":\"object\",\"required\":[\"file_id\",\"mime_type\"],"
    "\"properties\":{\"file_id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"mime_type\":{\"type\":\"string\",\"pattern\":\"^[a-z]+/[a-z0-9.+-]+$\"},"
    "\"size\":{\"type\":\"integer\",\"minimum\":0},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\",\"c\"]}}}}";
static const char *EVENT = "{\"file_id\":\"2eb8aa08-aa98-11ea-b4aa-73b441d16380\","
                           "\"mime_type\":\"application/pdf\",\"size\":12,\"tags\":[\"a\",\"c\"]}";

Test(budget, an_event_costs_a_few_nodes_and_steps)
{
    schema *s = compile_ok(EVENT_SCHEMA);
    json_t *inst = parse(EVENT);
    schema_budget b = {0};
    cr_assert(schema_validate_budget(s, inst, "/data", 0, NULL, &b));
    /* the object, its 4 properties, 2 tags */
    cr_assert_eq(b.nodes, 7, "%lld nodes", b.nodes);
    cr_assert_gt(b.steps, 0);
    cr_assert_lt(b.steps, 100, "%lld steps", b.steps);
    json_decref(inst);
    schema_free(s);
}

Test(budget, the_events_of_a_request_share_one_budget)
{
    schema *s = compile_ok(EVENT_SCHEMA);
    json_t *inst = parse(EVENT);
    schema_budget b = {.max_nodes = 7 * 10, .max_steps = 1000000};
    for (int i = 0; i < 10; i++)
        cr_assert(schema_validate_budget(s, inst, "/data", i, NULL, &b), "event %d", i);
    cr_assert_eq(b.nodes, 70);
    cr_assert_eq(b.over, SCHEMA_WITHIN_BUDGET);
    json_t *errors = json_array();
    json_array_append_new(errors, json_string("an earlier event's entry"));
    cr_assert_not(schema_validate_budget(s, inst, "/data", 10, errors, &b));
    cr_assert_eq(b.over, SCHEMA_OVER_NODES);
    cr_assert_eq(json_array_size(errors), 2, "earlier entries stay; one is added");
    json_t *e = json_array_get(errors, 1);
    cr_assert_str_eq(json_string_value(json_object_get(e, "keyword")), "max_nodes");
    cr_assert_eq(json_integer_value(json_object_get(e, "index")), 10);
    json_decref(errors);
    json_decref(inst);
    schema_free(s);
}

Test(budget, running_out_replaces_the_violations_of_the_call)
{
    /* the first items violate `type`, then the pattern runs the steps out */
    schema *s = compile_ok("{\"items\":{\"type\":\"string\",\"pattern\":\"^(a+)+$\"}}");
    json_t *inst = json_pack("[i,i,s,s,s]", 1, 2, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!");
    json_t *errors = json_array();
    schema_budget b = {.max_steps = 150000};
    cr_assert_not(schema_validate_budget(s, inst, "", -1, errors, &b));
    cr_assert_eq(b.over, SCHEMA_OVER_STEPS);
    cr_assert_eq(json_array_size(errors), 1);
    json_t *e = json_array_get(errors, 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "keyword")), "max_steps");
    cr_assert_str_eq(json_string_value(json_object_get(e, "path")), "/3",
                     "the first match takes its 100,000 steps, the second runs the budget out");
    json_decref(errors);
    json_decref(inst);
    schema_free(s);
}

Test(budget, running_out_under_not_is_no_pass)
{
    schema *s = compile_ok("{\"not\":{\"type\":\"string\",\"pattern\":\"^(a|a)*$\"}}");
    json_t *inst = json_string("aaaaaaaaaaaaaaaaaaaaaaaaaaaaa!");
    schema_budget b = {.max_steps = 1000};
    cr_assert_not(schema_validate_budget(s, inst, "", -1, NULL, &b));
    cr_assert_eq(b.over, SCHEMA_OVER_STEPS);
    json_decref(inst);
    schema_free(s);
}

Test(budget, walked_compared_and_hashed_values_are_paid_for)
{
    json_t *big = json_array();
    for (int i = 0; i < 2000; i++)
        json_array_append_new(big, json_integer(i));
    static const char *const schemas[] = {
        "{\"items\":true,\"minItems\":1}", /* walked under `true` */
        "{\"uniqueItems\":true}",          /* hashed */
        "{\"anyOf\":[{\"const\":[0]},{\"enum\":[[1],[2],[3],[4]]},{\"items\":true}]}",
    };
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        schema *s = compile_ok(schemas[i]);
        schema_budget b = {.max_nodes = 1000};
        cr_assert_not(schema_validate_budget(s, big, "", -1, NULL, &b), "%s", schemas[i]);
        cr_assert_eq(b.over, SCHEMA_OVER_NODES, "%s", schemas[i]);
        schema_budget roomy = {.max_nodes = 100000};
        cr_assert(schema_validate_budget(s, big, "", -1, NULL, &roomy), "%s", schemas[i]);
        cr_assert_geq(roomy.nodes, 2000, "%s: %lld nodes", schemas[i], roomy.nodes);
        schema_free(s);
    }
    json_decref(big);

    /* comparing a long value with a long const is paid for too */
    json_t *doc = json_pack("{s:o}", "const", json_array());
    json_t *inst = json_array();
    for (int i = 0; i < 5000; i++) {
        json_array_append_new(json_object_get(doc, "const"), json_integer(i));
        json_array_append_new(inst, json_integer(i));
    }
    schema_status st;
    schema *s = schema_compile(doc, &st, NULL);
    cr_assert(s);
    schema_budget b = {.max_nodes = 1000};
    cr_assert_not(schema_validate_budget(s, inst, "", -1, NULL, &b));
    cr_assert_eq(b.over, SCHEMA_OVER_NODES);
    schema_free(s);
    json_decref(inst);
    json_decref(doc);
}

Test(budget, a_long_enum_costs_more_than_a_short_one)
{
    json_t *values = json_array();
    for (int i = 0; i < 1000; i++)
        json_array_append_new(values, json_sprintf("value-%05d", i));
    json_t *doc = json_pack("{s:{s:o}}", "items", "enum", values);
    schema_status st;
    schema *s = schema_compile(doc, &st, NULL);
    cr_assert(s);
    json_t *inst = json_array();
    for (int i = 0; i < 1000; i++)
        json_array_append_new(inst, json_string("value-00999"));
    schema_budget b = {0};
    cr_assert(schema_validate_budget(s, inst, "", -1, NULL, &b));
    cr_assert_gt(b.nodes, 1000 * 200, "1,000 scans of 1,000 values: %lld nodes", b.nodes);
    json_decref(inst);
    schema_free(s);
    json_decref(doc);
}
