/*
 * Unit tests for filter.c and jsonscan.c: parsing (and its error messages), matching a
 * stored envelope's text in memory, and the SQL a filter becomes.
 */
#include "filter.h"
#include "jsonscan.h"

#include <criterion/criterion.h>
#include <string.h>

static const char *ENVELOPE =
    "{\"position\":42,\"id\":\"evt-1\",\"type\":\"file.uploaded\",\"stream\":\"files\","
    "\"key\":null,\"version\":null,\"data\": {\"mime_type\": \"application/pdf\", "
    "\"file_size\": 2000000, \"ratio\": 0.1, \"name\": \"caf\\u00e9 \\\"q\\\".pdf\", "
    "\"tags\": [\"a\", {\"b\": [1, 2]}, \"c\"], \"flag\": true, \"nothing\": null, "
    "\"a/b\": 1, \"t~x\": 2, \"nested\": {\"deep\": {\"n\": -3.5e2}}},"
    "\"metadata\":null,\"correlation_id\":\"corr-1\",\"causation_id\":null,"
    "\"user_id\":\"u-9\",\"source\":null,\"schema_version\":1,\"tenant_id\":\"default\","
    "\"time\":\"2026-12-07T03:00:00.000Z\"}";

static stored_event *event(void)
{
    return stored_event_new(42, "evt-1", "default", "files", "file.uploaded", NULL, "corr-1",
                            ENVELOPE, strlen(ENVELOPE));
}

/* Parses a JSON where list into f (tenant default); cr_asserts success. */
static void where(filter *f, const char *json)
{
    memset(f, 0, sizeof *f);
    snprintf(f->tenant, sizeof f->tenant, "default");
    json_t *w = json_loads(json, 0, NULL);
    cr_assert(w, "test JSON parses: %s", json);
    filter_error err;
    int rc = filter_parse_where(f, w, &err);
    json_decref(w);
    cr_assert_eq(rc, 0, "%s: %s", json, err.message);
}

static bool matches(const char *json)
{
    filter f;
    where(&f, json);
    stored_event *e = event();
    bool m = filter_matches(&f, e);
    stored_event_unref(e);
    filter_dispose(&f);
    return m;
}

static const char *refused(const char *json)
{
    static filter_error err;
    filter f = {0};
    json_t *w = json_loads(json, JSON_DECODE_ANY, NULL);
    cr_assert(w);
    int rc = filter_parse_where(&f, w, &err);
    json_decref(w);
    filter_dispose(&f);
    cr_assert_eq(rc, -1, "%s is refused", json);
    cr_assert(err.where, "a where error is invalid_filter");
    return err.message;
}

Test(jsonscan, finds_values_by_pointer)
{
    char *segs[] = {"data", "tags", "1", "b", "0"};
    jsonscan_value v;
    cr_assert(jsonscan_find(ENVELOPE, strlen(ENVELOPE), segs, 5, &v));
    cr_assert_eq(v.kind, JSONSCAN_NUMBER);
    cr_assert_eq(strncmp(v.start, "1", 1), 0);
    char *missing[] = {"data", "tags", "3"};
    cr_assert_not(jsonscan_find(ENVELOPE, strlen(ENVELOPE), missing, 3, &v));
    char *lead0[] = {"data", "tags", "01"};
    cr_assert_not(jsonscan_find(ENVELOPE, strlen(ENVELOPE), lead0, 3, &v), "no leading zeros");
    char *name[] = {"data", "name"};
    cr_assert(jsonscan_find(ENVELOPE, strlen(ENVELOPE), name, 2, &v));
    char out[64];
    cr_assert_eq(jsonscan_string(&v, out, sizeof out), (long)strlen("café \"q\".pdf"));
    cr_assert_str_eq(out, "café \"q\".pdf");
}

Test(jsonscan, never_reads_past_truncated_text)
{
    char *segs[] = {"data", "x"};
    jsonscan_value v;
    const char *cut[] = {"{\"data\":{\"x\"", "{\"data\":{\"x\":\"abc", "{\"data\":[1,", "{\"da",
                         "", "{\"data\":{\"y\":{\"z\":[1,2}"};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++)
        cr_assert_not(jsonscan_find(cut[i], strlen(cut[i]), segs, 2, &v), "%s", cut[i]);
}

Test(filter, every_op_on_the_envelope_text)
{
    cr_assert(matches("[{\"path\":\"/data/mime_type\",\"op\":\"eq\",\"value\":\"application/pdf\"},"
                      "{\"path\":\"/data/file_size\",\"op\":\"gt\",\"value\":1000000}]"));
    cr_assert_not(matches("[{\"path\":\"/data/file_size\",\"op\":\"gt\",\"value\":2000000}]"));
    cr_assert(matches("[{\"path\":\"/data/file_size\",\"op\":\"gte\",\"value\":2000000}]"));
    cr_assert(matches("[{\"path\":\"/data/file_size\",\"op\":\"eq\",\"value\":2000000.0}]"),
              "numbers compare by value");
    cr_assert(matches("[{\"path\":\"/data/ratio\",\"op\":\"eq\",\"value\":0.1}]"));
    cr_assert(matches("[{\"path\":\"/data/nested/deep/n\",\"op\":\"lt\",\"value\":-349}]"));
    cr_assert(matches("[{\"path\":\"/data/name\",\"op\":\"eq\",\"value\":\"café \\\"q\\\".pdf\"}]"),
              "escapes are compared unescaped");
    cr_assert(matches("[{\"path\":\"/data/name\",\"op\":\"prefix\",\"value\":\"caf\"}]"));
    cr_assert(matches("[{\"path\":\"/data/mime_type\",\"op\":\"in\",\"value\":[\"x\",\"application/pdf\"]}]"));
    cr_assert_not(matches("[{\"path\":\"/data/mime_type\",\"op\":\"in\",\"value\":[\"x\",1]}]"));
    cr_assert(matches("[{\"path\":\"/data/mime_type\",\"op\":\"gt\",\"value\":\"application/jpeg\"}]"),
              "strings compare byte by byte");
    cr_assert_not(matches("[{\"path\":\"/data/mime_type\",\"op\":\"gt\",\"value\":5}]"),
                  "a string never compares with a number");
    cr_assert(matches("[{\"path\":\"/data/absent\",\"op\":\"ne\",\"value\":1}]"),
              "ne holds when the path is absent");
    cr_assert_not(matches("[{\"path\":\"/data/flag\",\"op\":\"ne\",\"value\":true}]"));
    cr_assert(matches("[{\"path\":\"/data/nothing\",\"op\":\"exists\",\"value\":true}]"),
              "null is present");
    cr_assert(matches("[{\"path\":\"/data/nothing\",\"op\":\"eq\",\"value\":null}]"));
    cr_assert(matches("[{\"path\":\"/data/absent\",\"op\":\"exists\",\"value\":false}]"));
    cr_assert(matches("[{\"path\":\"/data/a~1b\",\"op\":\"eq\",\"value\":1},"
                      "{\"path\":\"/data/t~0x\",\"op\":\"eq\",\"value\":2}]"),
              "~1 and ~0 unescape");
    cr_assert(matches("[{\"path\":\"/data/tags/1\",\"op\":\"eq\",\"value\":{\"b\":[1,2]}}]"));
    cr_assert(matches("[{\"path\":\"/type\",\"op\":\"prefix\",\"value\":\"file.\"},"
                      "{\"path\":\"/position\",\"op\":\"eq\",\"value\":42},"
                      "{\"path\":\"/key\",\"op\":\"eq\",\"value\":null},"
                      "{\"path\":\"/time\",\"op\":\"gte\",\"value\":\"2026-12-07\"}]"));
    cr_assert_not(matches("[{\"path\":\"/metadata/x\",\"op\":\"exists\",\"value\":true}]"));
}

Test(filter, streams_types_and_tenant)
{
    filter f = {0};
    snprintf(f.tenant, sizeof f.tenant, "default");
    cr_assert(filter_add_type(&f, "file.*"));
    stored_event *e = event();
    cr_assert(filter_matches(&f, e));
    snprintf(f.tenant, sizeof f.tenant, "other");
    cr_assert_not(filter_matches(&f, e), "another tenant's event never matches");
    f.any_tenant = true;
    cr_assert(filter_matches(&f, e));
    filter_dispose(&f);
    cr_assert(filter_add_type(&f, "order.*"));
    f.any_tenant = true;
    cr_assert_not(filter_matches(&f, e));
    filter_dispose(&f);
    stored_event_unref(e);
}

Test(filter, bad_conditions_are_named)
{
    cr_assert(strstr(refused("{}"), "array"));
    cr_assert(strstr(refused("[1]"), "where[0]"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"like\",\"value\":1}]"), "where[0].op"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"eq\",\"value\":1},"
                             "{\"path\":\"/foo\",\"op\":\"eq\",\"value\":1}]"),
                     "where[1].path"));
    cr_assert(strstr(refused("[{\"path\":\"data\",\"op\":\"eq\",\"value\":1}]"), "JSON Pointer"));
    cr_assert(strstr(refused("[{\"path\":\"/data/~2\",\"op\":\"eq\",\"value\":1}]"), "where[0]"));
    cr_assert(strstr(refused("[{\"path\":\"/type/x\",\"op\":\"eq\",\"value\":1}]"), "where[0].path"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"in\",\"value\":1}]"), "array"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"in\",\"value\":[]}]"), "array"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"gt\",\"value\":{}}]"), "number"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"prefix\",\"value\":1}]"), "string"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"exists\",\"value\":1}]"), "true"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"eq\"}]"), "value"));
    cr_assert(strstr(refused("[{\"path\":\"/data/x\",\"op\":\"eq\",\"value\":1,\"x\":1}]"),
                     "unknown member"));
    char many[2048] = "[";
    for (int i = 0; i < FILTER_MAX_WHERE + 1; i++)
        strcat(many, i ? ",{\"path\":\"/data/x\",\"op\":\"exists\",\"value\":true}"
                       : "{\"path\":\"/data/x\",\"op\":\"exists\",\"value\":true}");
    strcat(many, "]");
    cr_assert(strstr(refused(many), "at most 16"));
}

static const char *arg_of(void *ctx, const char *name)
{
    const char *const *kv = ctx;
    for (int i = 0; kv[i]; i += 2)
        if (strcmp(kv[i], name) == 0) return kv[i + 1];
    return NULL;
}

Test(filter, query_arguments_and_json_objects_parse_alike)
{
    const char *q[] = {"stream", "files,images", "type", "file.*,doc.created", "where",
                       "[{\"path\":\"/data/flag\",\"op\":\"eq\",\"value\":true}]", NULL};
    filter a = {0}, b = {0};
    filter_error err;
    cr_assert_eq(filter_parse_query(&a, arg_of, q, &err), 0, "%s", err.message);
    json_t *o = json_loads("{\"streams\":[\"files\",\"images\"],\"types\":[\"file.*\",\"doc.created\"],"
                           "\"where\":[{\"path\":\"/data/flag\",\"op\":\"eq\",\"value\":true}]}",
                           0, NULL);
    cr_assert_eq(filter_parse_json(&b, o, NULL, NULL, &err), 0, "%s", err.message);
    json_decref(o);
    cr_assert_eq(a.n_streams, 2);
    cr_assert_eq(b.n_streams, 2);
    cr_assert_eq(a.n_types, b.n_types);
    cr_assert_eq(a.n_where, 1);
    cr_assert_eq(b.n_where, 1);
    filter_sql qa, qb;
    filter_sql_init(&qa);
    filter_sql_init(&qb);
    filter_sql_where(&qa, &a);
    filter_sql_where(&qb, &b);
    cr_assert_str_eq(qa.sql.data, qb.sql.data);
    filter_sql_dispose(&qa);
    filter_sql_dispose(&qb);
    filter_dispose(&a);
    filter_dispose(&b);

    const char *bad[] = {"where", "[{", NULL};
    filter c = {0};
    cr_assert_eq(filter_parse_query(&c, arg_of, bad, &err), -1);
    cr_assert(err.where);
    const char *badtype[] = {"type", "File", NULL};
    cr_assert_eq(filter_parse_query(&c, arg_of, badtype, &err), -1);
    cr_assert_not(err.where, "a bad type is the caller's invalid_query");
    o = json_loads("{\"streams\":[\"a\"],\"nope\":1}", 0, NULL);
    cr_assert_eq(filter_parse_json(&c, o, NULL, NULL, &err), -1);
    cr_assert(strstr(err.message, "nope"));
    json_decref(o);
}

Test(filter, the_sql_it_becomes)
{
    filter f;
    where(&f, "[{\"path\":\"/data/mime_type\",\"op\":\"eq\",\"value\":\"application/pdf\"},"
              "{\"path\":\"/data/file_size\",\"op\":\"gt\",\"value\":1000000},"
              "{\"path\":\"/stream\",\"op\":\"eq\",\"value\":\"files\"},"
              "{\"path\":\"/data/tags/0\",\"op\":\"eq\",\"value\":\"a\"},"
              "{\"path\":\"/data/x\",\"op\":\"exists\",\"value\":false}]");
    cr_assert(filter_add_type(&f, "file.*"));
    cr_assert(filter_add_type(&f, "doc.created"));
    filter_sql q;
    filter_sql_init(&q);
    filter_sql_where(&q, &f);
    cr_assert_str_eq(
        q.sql.data,
        " AND tenant_id = $1"
        " AND (type = ANY($2::text[]) OR starts_with(type, $3))"
        " AND (data #> $4::text[]) = $5::jsonb AND data @> $6::jsonb"
        " AND CASE WHEN jsonb_typeof(data #> $7::text[]) = 'number' THEN (data #> $7::text[])::numeric"
        " > $8::numeric ELSE false END"
        " AND stream = $9"
        " AND (data #> $10::text[]) = $11::jsonb"
        " AND (data #> $12::text[]) IS NULL");
    cr_assert_eq(q.n, 12);
    cr_assert_str_eq(q.vals[0], "default");
    cr_assert_str_eq(q.vals[1], "{\"doc.created\"}");
    cr_assert_str_eq(q.vals[2], "file.");
    cr_assert_str_eq(q.vals[3], "{\"mime_type\"}");
    cr_assert_str_eq(q.vals[4], "\"application/pdf\"");
    cr_assert_str_eq(q.vals[5], "{\"mime_type\":\"application/pdf\"}");
    cr_assert_str_eq(q.vals[7], "1000000");
    cr_assert_str_eq(q.vals[9], "{\"tags\",\"0\"}", "no containment for an array index");
    filter_sql_dispose(&q);
    filter_dispose(&f);
}

Test(filter, copies_are_deep)
{
    filter f;
    where(&f, "[{\"path\":\"/data/flag\",\"op\":\"eq\",\"value\":true}]");
    f.key = xstrdup("k");
    filter g;
    filter_copy(&g, &f);
    filter_dispose(&f);
    cr_assert_str_eq(g.key, "k");
    cr_assert_str_eq(g.where[0].segs[1], "flag");
    filter_dispose(&g);
}

Test(filter, a_memo_answers_equal_condition_lists_once_per_event)
{
    filter a, b, c;
    where(&a, "[{\"path\":\"/data/flag\",\"op\":\"eq\",\"value\":true}]");
    where(&b, "[{\"op\":\"eq\",\"value\":true,\"path\":\"/data/flag\"}]");
    where(&c, "[{\"path\":\"/data/flag\",\"op\":\"eq\",\"value\":false}]");
    cr_assert_str_eq(a.where_key, b.where_key, "member order does not matter");
    cr_assert_str_neq(a.where_key, c.where_key);
    stored_event *e = event();
    filter_memo memo = {0};
    cr_assert(filter_matches_memo(&a, e, &memo));
    cr_assert_eq(memo.n, 1);
    cr_assert(filter_matches_memo(&b, e, &memo));
    cr_assert_eq(memo.n, 1, "b's answer is a's");
    cr_assert_not(filter_matches_memo(&c, e, &memo));
    cr_assert_eq(memo.n, 2);
    snprintf(b.tenant, sizeof b.tenant, "other");
    cr_assert_not(filter_matches_memo(&b, e, &memo), "the tenant is checked before the memo");
    stored_event *e2 = event();
    cr_assert(filter_matches_memo(&a, e2, &memo));
    cr_assert_eq(memo.n, 1, "a new event starts a new memo");
    stored_event_unref(e);
    stored_event_unref(e2);
    filter_dispose(&a);
    filter_dispose(&b);
    filter_dispose(&c);
}
