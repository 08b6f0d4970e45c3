/*
 * tests/fuzz/filters.c — Sluice's one filter (filter.h): parsing, matching on the stored
 * envelope's text (jsonscan.h) and the SQL it becomes.
 *
 * Input, by its first byte:
 *   - '[': a `where` list, parsed by filter_parse_where (and, as the query argument
 *     where=…, by filter_parse_query: the two must agree). An accepted list is matched
 *     against a few fixed stored envelopes (nested objects, arrays, escaped strings, big
 *     numbers) and against the input itself used as envelope text;
 *   - '~': the rest is arbitrary bytes taken as stored envelope text, exactly as long as
 *     the input (ASan sees any read past it): jsonscan_find follows a few fixed pointers
 *     through it (finding, on valid JSON, what jansson does), jsonscan_string copies
 *     what it finds into small buffers, and a fixed `where` list is matched against it;
 *   - '{': a POST /v1/replays body, parsed by replays_create with no PostgreSQL connection
 *     (so it stops after the checks), and its `filter` by filter_parse_json;
 *   - anything else: a query string "name=value&name=value…" (percent-decoded like
 *     libmicrohttpd does, so values may hold any byte but NUL), parsed by
 *     store_filter_parse as GET /v1/events (paged), GET /v1/events?format=ndjson and the
 *     subscriptions (not paged) do.
 * Checked:
 *   - an accepted filter holds only what the grammar allows: stream names, types that are
 *     names or "prefix." wildcards ("" only for "*"), no empty strings, counts within
 *     FILTER_MAX_*, conditions whose path, op and value agree; limit within range when
 *     paged;
 *   - a refusal writes a NUL-terminated message, valid UTF-8 whenever the input was, and
 *     the problem answered with it (problem_new, as http_reply_error) keeps it as its
 *     detail; a refused read filter is left zeroed;
 *   - a filter without `where` matches an event of its own first stream and type (and its
 *     key, ids and time window), never another tenant's;
 *   - on envelope text jansson parses, filter_matches answers what a reference built on
 *     the parsed tree does (filter.h's semantics of each op);
 *   - filter_matches_memo answers what filter_matches does, and so does a filter_copy;
 *   - filter_sql_where numbers its parameters $1…$n with every one of them used, each a
 *     NUL-terminated string (valid UTF-8 when the input was: PostgreSQL refuses others);
 *   - a replay filter member that no string can stand for (key: true, types: [1],
 *     streams: "a") is refused.
 */
#include "filter.h"
#include "fuzz.h"
#include "jsonscan.h"
#include "problem.h"
#include "replays.h"
#include "stored_event.h"
#include "store.h"

#include <ctype.h>
#include <stdint.h>

#define MAX_ARGS 32

/* ------------------------------------------------------------------ shared checks */

/* A type entry as the grammar allows it. */
static void check_type(const filter *f, int i)
{
    const char *t = f->types[i];
    size_t n = strlen(t);
    fuzz_check(n <= ENVELOPE_TYPE_MAX, "type %zu bytes", n);
    if (!f->type_prefix[i]) {
        fuzz_check(envelope_type_valid(t), "type '%s'", t);
        return;
    }
    if (n == 0) {
        fuzz_check(f->any_type, "a \"*\" entry sets any_type");
        return;
    }
    fuzz_check(t[n - 1] == '.', "prefix '%s' ends in '.'", t);
    char probe[ENVELOPE_TYPE_MAX + 8];
    snprintf(probe, sizeof probe, "%sx", t);
    fuzz_check(envelope_type_valid(probe), "prefix '%s'", t);
}

static void check_cond(const filter_cond *c)
{
    static const char *const doc_fields[] = {"data", "metadata"};
    static const char *const fields[] = {"id",      "type",     "stream",         "key",
                                         "version", "position", "correlation_id", "causation_id",
                                         "user_id", "source",   "schema_version", "tenant_id",
                                         "time",    "data",     "metadata"};
    fuzz_check(c->pointer && c->pointer[0] == '/', "pointer '%s'", c->pointer);
    fuzz_check(c->n_segs >= 1 && c->n_segs <= 32, "n_segs %d", c->n_segs);
    bool known = false, doc = false;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        known = known || strcmp(c->segs[0], fields[i]) == 0;
    for (size_t i = 0; i < 2; i++)
        doc = doc || strcmp(c->segs[0], doc_fields[i]) == 0;
    fuzz_check(known, "path '%s' starts with an envelope field", c->pointer);
    fuzz_check(doc || c->n_segs == 1, "path '%s' goes inside a scalar field", c->pointer);
    fuzz_check(c->field >= 0 && c->field <= 5 && (c->field == 0 || c->n_segs == 1), "field %d",
               c->field);
    for (int i = 0; i < c->n_segs; i++)
        fuzz_check(c->segs[i] != NULL, "segment %d", i);
    fuzz_check(c->op >= FILTER_EQ && c->op <= FILTER_EXISTS, "op %d", (int)c->op);
    switch (c->op) {
    case FILTER_EXISTS:
        fuzz_check(c->value == NULL, "exists holds no value");
        break;
    case FILTER_IN:
        fuzz_check(json_is_array(c->value) && json_array_size(c->value) >= 1 &&
                       json_array_size(c->value) <= FILTER_MAX_IN,
                   "in takes 1 to %d values", FILTER_MAX_IN);
        break;
    case FILTER_GT:
    case FILTER_GTE:
    case FILTER_LT:
    case FILTER_LTE:
        fuzz_check(json_is_number(c->value) || json_is_string(c->value), "an order value");
        break;
    case FILTER_PREFIX:
        fuzz_check(json_is_string(c->value), "prefix takes a string");
        break;
    default:
        fuzz_check(c->value != NULL, "eq/ne hold a value");
        break;
    }
}

/* An accepted filter holds only what the grammar allows. */
static void check_filter(const filter *f, const char *tenant)
{
    fuzz_check(strcmp(f->tenant, tenant) == 0 && !f->any_tenant, "tenant '%s'", f->tenant);
    fuzz_check(f->n_streams >= 0 && f->n_streams <= FILTER_MAX_STREAMS, "n_streams %d",
               f->n_streams);
    for (int i = 0; i < f->n_streams; i++)
        fuzz_check(envelope_stream_valid(f->streams[i]), "stream '%s'", f->streams[i]);
    fuzz_check(f->n_types >= 0 && f->n_types <= FILTER_MAX_TYPES, "n_types %d", f->n_types);
    bool star = false;
    for (int i = 0; i < f->n_types; i++) {
        check_type(f, i);
        star = star || (f->type_prefix[i] && !*f->types[i]);
    }
    fuzz_check(star == f->any_type, "any_type %d without a \"*\" entry", f->any_type);
    fuzz_check(!f->key || *f->key, "empty key");
    fuzz_check(!f->correlation_id || *f->correlation_id, "empty correlation_id");
    fuzz_check(!f->user_id || *f->user_id, "empty user_id");
    fuzz_check(f->n_where >= 0 && f->n_where <= FILTER_MAX_WHERE, "n_where %d", f->n_where);
    for (int i = 0; i < f->n_where; i++)
        check_cond(&f->where[i]);
    fuzz_check(f->n_where == 0 || f->where_key, "conditions without a where_key");
}

/* A refusal: a message that says why, in UTF-8 when the input was, kept by the problem. */
static void check_refusal(const filter_error *err, bool utf8)
{
    fuzz_check(memchr(err->message, '\0', sizeof err->message) != NULL, "NUL-terminated");
    fuzz_check(err->message[0], "the message says why");
    if (utf8 && !fuzz_utf8_valid(err->message, strlen(err->message)))
        fuzz_fail("the message is not UTF-8 although the input was: %s", err->message);
    /* What http_reply_error answers: the 400 must say why, whatever bytes were sent. */
    json_t *problem = problem_new(err->where ? "invalid_filter" : "invalid_query", err->message);
    const char *detail = json_string_value(json_object_get(problem, "detail"));
    if (!detail) fuzz_fail("the 400 problem lost its detail: %s", err->message);
    if (utf8 && strcmp(detail, err->message) != 0)
        fuzz_fail("the 400 problem changed its detail: %s", err->message);
    json_decref(problem);
}

/* filter_sql_where: parameters $1…$n, each used, each a string PostgreSQL takes. */
static void check_sql(const filter *f, bool utf8)
{
    filter_sql q;
    filter_sql_init(&q);
    filter_sql_where(&q, f);
    const char *s = q.sql.data ? q.sql.data : "";
    fuzz_check(strlen(s) == q.sql.len, "the SQL text holds no NUL");
    fuzz_check(q.n >= 0 && q.n <= q.cap, "n %d cap %d", q.n, q.cap);
    bool *used = calloc((size_t)q.n + 1, 1);
    if (!used) abort();
    long max = 0;
    for (const char *p = s; *p; p++) {
        if (*p != '$' || !isdigit((unsigned char)p[1])) continue;
        char *end;
        long k = strtol(p + 1, &end, 10);
        fuzz_check(k >= 1 && k <= q.n, "$%ld with %d parameters: %s", k, q.n, s);
        used[k] = true;
        if (k > max) max = k;
        p = end - 1;
    }
    fuzz_check(max == q.n, "highest $%ld, %d parameters: %s", max, q.n, s);
    for (int i = 1; i <= q.n; i++)
        fuzz_check(used[i], "$%d is never used: %s", i, s);
    for (int i = 0; i < q.n; i++) {
        fuzz_check(q.vals[i] != NULL, "parameter $%d is NULL", i + 1);
        size_t n = strlen(q.vals[i]); /* ASan: NUL-terminated inside its allocation */
        if (utf8 && !fuzz_utf8_valid(q.vals[i], n))
            fuzz_fail("parameter $%d is not UTF-8: %s", i + 1, q.vals[i]);
    }
    free(used);
    filter_sql_dispose(&q);
}

/* filter_matches, filter_matches_memo (first and second asking) and a copy agree on e. */
static bool match_all_ways(const filter *f, const filter *copy, const stored_event *e)
{
    bool m = filter_matches(f, e);
    fuzz_check(filter_matches(copy, e) == m, "the copy answers otherwise");
    filter_memo memo = {0};
    fuzz_check(filter_matches_memo(f, e, &memo) == m, "the memo answers otherwise (first)");
    fuzz_check(filter_matches_memo(copy, e, &memo) == m, "the memo answers otherwise (copy)");
    fuzz_check(filter_matches_memo(f, e, &memo) == m, "the memo answers otherwise (again)");
    fuzz_check(memo.n >= 0 && memo.n <= FILTER_MEMO_SLOTS, "memo.n %d", memo.n);
    fuzz_check(filter_matches(f, e) == m, "filter_matches changed its answer");
    return m;
}

/* ------------------------------------------------------------------ query mode */

typedef struct args {
    char *name[MAX_ARGS], *value[MAX_ARGS];
    int n;
    bool utf8; /* every name and value is valid UTF-8 */
} args;

/* libmicrohttpd answers the first value of a repeated argument. */
static const char *arg(void *ctx, const char *name)
{
    args *a = ctx;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->name[i], name) == 0) return a->value[i];
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes in place ("%41" → 'A', '+' → ' '); a decoded NUL ends the string. */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '+') {
            *w++ = ' ';
        } else if (*r == '%' && hexval(r[1]) >= 0 && hexval(r[2]) >= 0) {
            *w++ = (char)(hexval(r[1]) * 16 + hexval(r[2]));
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static void parse_query(char *q, args *a)
{
    char *save = NULL;
    a->utf8 = true;
    for (char *kv = strtok_r(q, "&", &save); kv && a->n < MAX_ARGS;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        char *v = eq ? eq + 1 : kv + strlen(kv); /* "flag" → "" */
        if (eq) *eq = '\0';
        unescape(kv);
        unescape(v);
        a->name[a->n] = kv;
        a->value[a->n++] = v;
        if (!fuzz_utf8_valid(kv, strlen(kv)) || !fuzz_utf8_valid(v, strlen(v))) a->utf8 = false;
    }
}

/* A type the entry `i` stands for. */
static const char *type_of_entry(const filter *f, int i, char *buf, size_t cap)
{
    if (!f->type_prefix[i]) return f->types[i];
    if (!*f->types[i]) return "some.type";
    snprintf(buf, cap, "%sx.y", f->types[i]);
    return buf;
}

/* A filter without `where` matches an event made of its own first choices, and never
 * that event in another tenant. */
static void check_own_event(const filter *f)
{
    stored_event_fields ev = {.position = 1,
                              .id = "evt-1",
                              .tenant = f->tenant,
                              .stream = f->n_streams ? f->streams[0] : "any.stream",
                              .type = "some.type",
                              .key = f->key,
                              .correlation_id = f->correlation_id ? f->correlation_id : "c",
                              .user_id = f->user_id,
                              .time_ms = 0};
    char tbuf[ENVELOPE_TYPE_MAX + 8];
    if (f->n_types) ev.type = type_of_entry(f, 0, tbuf, sizeof tbuf);
    bool window = true; /* some time lies in [since, until) */
    if (f->has_since)
        ev.time_ms = f->since_ms;
    else if (f->has_until)
        ev.time_ms = f->until_ms - 1;
    if (f->has_since && f->has_until && f->since_ms >= f->until_ms) window = false;
    static const char text[] = "{\"position\":1,\"id\":\"evt-1\",\"data\":{}}";
    stored_event *e = stored_event_make(&ev, text, sizeof text - 1);
    filter copy;
    filter_copy(&copy, f);
    bool m = match_all_ways(f, &copy, e);
    if (window && f->n_where == 0 && !m)
        fuzz_fail("the filter does not match an event of its own stream '%s', type '%s'", ev.stream,
                  ev.type);
    if (!window) fuzz_check(!m, "an event outside an empty time window matched");
    ev.tenant = strcmp(f->tenant, "u") ? "u" : "v";
    stored_event *other = stored_event_make(&ev, text, sizeof text - 1);
    fuzz_check(!match_all_ways(f, &copy, other), "another tenant's event matched");
    stored_event_unref(e);
    stored_event_unref(other);
    filter_dispose(&copy);
}

static void fuzz_query(const uint8_t *data, size_t size)
{
    char *q = fuzz_cstr(data, size);
    args a = {0};
    parse_query(q, &a);
    for (int paged = 1; paged >= 0; paged--) {
        read_filter r;
        filter_error err;
        memset(&r, 0x55, sizeof r);
        memset(&err, 0x55, sizeof err);
        int rc = store_filter_parse(&r, "t", arg, &a, paged, &err);
        if (rc != 0) {
            fuzz_check(rc == -1, "rc %d", rc);
            check_refusal(&err, a.utf8);
            fuzz_check(!err.where || arg(&a, "where"), "a where error without where");
            static const read_filter zero;
            fuzz_check(memcmp(&r, &zero, sizeof r) == 0, "a refused filter is left zeroed");
            continue;
        }
        check_filter(&r.f, "t");
        if (paged)
            fuzz_check(r.limit >= 1 && r.limit <= STORE_PAGE_MAX, "limit %lld", r.limit);
        else
            fuzz_check(r.limit >= 0 && (r.limit_given || r.limit == 0), "limit %lld", r.limit);
        fuzz_check(r.after >= 0 && r.upto == 0, "after %lld upto %lld", r.after, r.upto);
        fuzz_check(r.f.has_since == (arg(&a, "since") != NULL), "since");
        fuzz_check(r.f.has_until == (arg(&a, "until") != NULL), "until");
        fuzz_check((r.f.where_key != NULL) == (arg(&a, "where") != NULL), "where_key");
        check_own_event(&r.f);
        check_sql(&r.f, a.utf8);
        store_filter_dispose(&r);
    }
    free(q);
}

/* ------------------------------------------------------------------ where mode */

/* Stored envelopes as the store writes them (row_to_json of the events row: position,
 * id, type, stream, key, version, data, metadata, …, time) and as a client's data may
 * make them: nested objects and arrays, escapes, numbers beyond 64 bits. */
typedef struct fixed_event {
    stored_event_fields f;
    const char *json;
} fixed_event;

static const fixed_event fixed[] = {
    {{42, "evt-1", "default", "files", "file.uploaded", NULL, "corr-1", "u-9", 1796612400000},
     "{\"position\":42,\"id\":\"evt-1\",\"type\":\"file.uploaded\",\"stream\":\"files\","
     "\"key\":null,\"version\":3,\"data\":{\"a\":\"x\",\"mime_type\":\"application/pdf\","
     "\"file_size\":2000000,\"ratio\":0.1,\"name\":\"caf\\u00e9 \\\"q\\\".pdf\","
     "\"tags\":[\"a\",{\"b\":[1,2]},\"c\"],\"flag\":true,\"nothing\":null,\"a/b\":1,"
     "\"t~x\":2,\"nested\":{\"deep\":{\"n\":-3.5e2}}},\"metadata\":{\"trace\":\"t-1\","
     "\"ip\":\"10.0.0.1\"},\"correlation_id\":\"corr-1\",\"causation_id\":null,"
     "\"user_id\":\"u-9\",\"source\":\"api\",\"schema_version\":1,\"tenant_id\":\"default\","
     "\"time\":\"2026-12-07T03:00:00.000Z\"}"},
    {{7, "evt-7", "default", "orders", "order.created", "order-1", "c-7", NULL, 1700000000000},
     "{\"position\":7,\"id\":\"evt-7\",\"type\":\"order.created\",\"stream\":\"orders\","
     "\"key\":\"order-1\",\"version\":1,\"data\":[1,\"x\",{\"b\":2},[],{},-0,1e-7,"
     "100000000000000000000000,18446744073709551616,-9223372036854775808],"
     "\"metadata\":null,\"correlation_id\":\"c-7\",\"causation_id\":\"evt-6\","
     "\"user_id\":null,\"source\":null,\"schema_version\":null,\"tenant_id\":\"default\","
     "\"time\":\"2023-11-14T22:13:20.000Z\"}"},
    {{9, "evt-9", "default", "a.b", "x.y.z", "k", "c", "u", 0},
     "{ \"position\" : 9 , \"id\" : \"evt-9\" , \"data\" : { \"a\\u002fb\" : \"\\ud83d\\ude00\" ,"
     " \"a\" : { \"b\" : [ true , false , null ] } , \"tags\" : [ \"\\\\\" , { \"b\" : "
     "\"\\/\\b\\f\\n\\r\\t\" } ] , \"0\" : \"zero\" , \"\" : \"empty\" , \"t~x\" : \"\\u0041\" } ,"
     " \"x\" : { \"y\" : { \"z\" : \"abc\" } } , \"metadata\" : { } , \"type\" : \"x.y.z\" ,"
     " \"stream\" : \"a.b\" , \"tenant_id\" : \"default\" , \"time\" : "
     "\"1970-01-01T00:00:00.000Z\" }"},
    {{10, NULL, "default", "s", "t.u", NULL, "", NULL, -1},
     "{\"position\":10,\"data\":null,\"metadata\":{\"list\":[[[[{\"deep\":\"\\u00e9\\u65e5\"}]]]],"
     "\"n\":1.5,\"big\":1e300,\"s\":\"\"},\"key\":null,\"type\":\"t.u\",\"stream\":\"s\"}"},
};

#define N_FIXED (sizeof fixed / sizeof fixed[0])

/* What a JSON Pointer names in a parsed document (the tokens jsonscan.h takes as array
 * indexes: decimal digits without a leading zero), or NULL. */
static const json_t *walk(const json_t *v, char *const *segs, int n)
{
    for (int i = 0; i < n && v; i++) {
        const char *s = segs[i];
        size_t len = strlen(s);
        if (json_is_object(v)) {
            v = json_object_get(v, s);
        } else if (json_is_array(v) && len >= 1 && len <= 9 && strspn(s, "0123456789") == len &&
                   (len == 1 || s[0] != '0')) {
            v = json_array_get(v, strtoul(s, NULL, 10));
        } else {
            v = NULL;
        }
    }
    return v;
}

/* A reference for `where`, on the envelope parsed by jansson, in filter.h's words. */

/* JSON equality, numbers by value (integers exactly, others as doubles). */
static bool ref_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!ref_equal(json_array_get(a, i), json_array_get(b, i))) return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)a, k, x)
        {
            const json_t *y = json_object_get(b, k);
            if (!y || !ref_equal(x, y)) return false;
        }
        return true;
    }
    if (json_is_string(a)) {
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    }
    return true; /* true, false, null */
}

/* -1, 0, 1; 2 when the kinds do not compare. */
static int ref_order(const json_t *got, const json_t *want)
{
    if (json_is_number(want) && json_is_number(got)) {
        if (json_is_integer(want) && json_is_integer(got)) {
            json_int_t a = json_integer_value(got), b = json_integer_value(want);
            return (a > b) - (a < b);
        }
        double a = json_number_value(got), b = json_number_value(want);
        return (a > b) - (a < b);
    }
    if (json_is_string(want) && json_is_string(got)) {
        size_t al = json_string_length(got), bl = json_string_length(want);
        int c = memcmp(json_string_value(got), json_string_value(want), al < bl ? al : bl);
        return c ? (c > 0) - (c < 0) : (al > bl) - (al < bl);
    }
    return 2;
}

static bool ref_holds(const filter_cond *c, const json_t *got)
{
    const json_t *v = c->value;
    int r = got && c->op >= FILTER_GT && c->op <= FILTER_LTE ? ref_order(got, v) : 2;
    switch (c->op) {
    case FILTER_EQ:
        return got && ref_equal(got, v);
    case FILTER_NE:
        return !got || !ref_equal(got, v);
    case FILTER_IN: {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (got && ref_equal(got, x)) return true;
        return false;
    }
    case FILTER_GT:
        return r != 2 && r > 0;
    case FILTER_GTE:
        return r != 2 && r >= 0;
    case FILTER_LT:
        return r != 2 && r < 0;
    case FILTER_LTE:
        return r != 2 && r <= 0;
    case FILTER_PREFIX:
        return got && json_is_string(got) && json_string_length(got) >= json_string_length(v) &&
               memcmp(json_string_value(got), json_string_value(v), json_string_length(v)) == 0;
    case FILTER_EXISTS:
        return (got != NULL) == c->exists;
    }
    return false;
}

/* What the conditions answer for `e` whose text parsed as `doc`. The strings the event
 * holds itself (/id /type /stream /tenant_id /correlation_id) come from it, as in
 * filter.c. */
static bool ref_where(const filter *f, const stored_event *e, const json_t *doc)
{
    for (int i = 0; i < f->n_where; i++) {
        const filter_cond *c = &f->where[i];
        const char *direct[] = {NULL, e->id, e->type, e->stream, e->tenant, e->correlation_id};
        json_t *own = c->field && direct[c->field] ? json_string(direct[c->field]) : NULL;
        const json_t *got = own ? own : walk(doc, c->segs, c->n_segs);
        bool ok = ref_holds(c, got);
        json_decref(own);
        if (!ok) return false;
    }
    return true;
}

/* filter_matches agrees with the reference when the text is JSON jansson takes whole. */
static void check_reference(const filter *f, const stored_event *e)
{
    json_t *doc = json_loadb(e->json, e->json_len,
                             JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!doc) return;
    bool want = strcmp(f->tenant, e->tenant) == 0 && ref_where(f, e, doc);
    if (filter_matches(f, e) != want)
        fuzz_fail("filter_matches answers %d, the reference %d, on %.*s", !want, want,
                  (int)e->json_len, e->json);
    json_decref(doc);
}

/* An accepted where list against the fixed envelopes and `text` (the input itself). */
static void match_where(const filter *f, const char *text, size_t len)
{
    filter copy;
    filter_copy(&copy, f);
    fuzz_check(copy.n_where == f->n_where &&
                   (!f->where_key ||
                    (copy.where_key != f->where_key && strcmp(copy.where_key, f->where_key) == 0)),
               "a copy holds its own equal where_key");
    fuzz_check(copy.where_hash == f->where_hash, "a copy's where_hash");
    for (size_t i = 0; i < N_FIXED; i++) {
        stored_event *e = stored_event_make(&fixed[i].f, fixed[i].json, strlen(fixed[i].json));
        match_all_ways(f, &copy, e);
        check_reference(f, e);
        stored_event_unref(e);
    }
    stored_event *self = stored_event_new(1, "evt-1", "default", "s", "t.u", NULL, "c", text, len);
    match_all_ways(f, &copy, self);
    check_reference(f, self);
    stored_event_unref(self);
    filter_dispose(&copy);
}

static const char *where_text; /* filter_parse_query's argument "where" */
static const char *where_arg(void *ctx, const char *name)
{
    (void)ctx;
    return strcmp(name, "where") == 0 ? where_text : NULL;
}

static void fuzz_where(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *w = json_loadb((const char *)data, size, FUZZ_BODY_FLAGS, &jerr);
    if (!w) return;
    filter f = {0};
    snprintf(f.tenant, sizeof f.tenant, "default");
    filter_error err;
    memset(&err, 0x55, sizeof err);
    int rc = filter_parse_where(&f, w, &err);
    if (rc == 0) {
        check_filter(&f, "default");
        fuzz_check(f.where_key != NULL, "a parsed list has a where_key");
        match_where(&f, (const char *)data, size);
        check_sql(&f, true);
    } else {
        fuzz_check(rc == -1, "rc %d", rc);
        fuzz_check(err.where, "a where error is invalid_filter");
        check_refusal(&err, true);
    }

    /* The same text as GET /v1/events?where=… must be taken or refused alike. */
    if (!memchr(data, '\0', size)) {
        char *text = fuzz_cstr(data, size);
        where_text = text;
        filter g = {0};
        snprintf(g.tenant, sizeof g.tenant, "default");
        filter_error qerr;
        int qrc = filter_parse_query(&g, where_arg, NULL, &qerr);
        fuzz_check(qrc == rc, "where=%s: query %d, list %d", text, qrc, rc);
        if (qrc == 0) {
            fuzz_check(strcmp(g.where_key, f.where_key) == 0, "query and list differ");
            filter_dispose(&g);
        } else {
            fuzz_check(qerr.where, "a where error is invalid_filter");
        }
        where_text = NULL;
        free(text);
    }
    filter_dispose(&f);
    json_decref(w);
}

/* ------------------------------------------------------------------ scan mode */

static char seg_data[] = "data", seg_a[] = "a", seg_0[] = "0", seg_x[] = "x", seg_y[] = "y",
            seg_z[] = "z", seg_tags[] = "tags", seg_1[] = "1", seg_b[] = "b";
static char *const ptr_data_a[] = {seg_data, seg_a};
static char *const ptr_data_0[] = {seg_data, seg_0};
static char *const ptr_xyz[] = {seg_x, seg_y, seg_z};
static char *const ptr_tags[] = {seg_data, seg_tags, seg_1, seg_b};
static const struct {
    char *const *segs;
    int n;
} pointers[] = {{ptr_data_a, 2}, {ptr_data_0, 2}, {ptr_xyz, 3}, {ptr_tags, 4}, {NULL, 0}};

/* A where list that reaches every kind of comparison on the pointers above. */
static const char scan_where[] =
    "[{\"path\":\"/data/a\",\"op\":\"ne\",\"value\":{\"k\":[1,\"x\"]}},"
    "{\"path\":\"/data/0\",\"op\":\"ne\",\"value\":2.5},"
    "{\"path\":\"/data/tags/1/b\",\"op\":\"ne\",\"value\":\"caf\\u00e9\"},"
    "{\"path\":\"/data/a\",\"op\":\"ne\",\"value\":[1,{\"b\":null}]},"
    "{\"path\":\"/data/0\",\"op\":\"ne\",\"value\":9223372036854775807},"
    "{\"path\":\"/id\",\"op\":\"ne\",\"value\":\"x\"},"
    "{\"path\":\"/metadata\",\"op\":\"exists\",\"value\":false}]";
static const char scan_where2[] =
    "[{\"path\":\"/data/a\",\"op\":\"in\",\"value\":[1,\"x\",null,true,[],{}]}]";
static const char scan_where3[] = "[{\"path\":\"/data/tags/1/b\",\"op\":\"gte\",\"value\":\"a\"},"
                                  "{\"path\":\"/data/a\",\"op\":\"prefix\",\"value\":\"\"},"
                                  "{\"path\":\"/data/0\",\"op\":\"lt\",\"value\":1e10}]";

static void scan_filter(filter *f, const char *list)
{
    memset(f, 0, sizeof *f);
    snprintf(f->tenant, sizeof f->tenant, "default");
    json_t *w = json_loads(list, 0, NULL);
    filter_error err;
    if (!w || filter_parse_where(f, w, &err) != 0) fuzz_fail("the scan mode's where list");
    json_decref(w);
}

static void fuzz_scan(const uint8_t *data, size_t size)
{
    /* Exactly `size` bytes, no terminator: any read past them is ASan's to see. */
    char *text = malloc(size ? size : 1);
    if (!text) abort();
    memcpy(text, data, size);
    /* On valid JSON (the text Sluice and PostgreSQL write) the scan answers what a parser
     * does. Duplicate members aside: the scan takes the first, jansson would the last. */
    json_t *doc =
        json_loadb(text, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    for (size_t i = 0; i < sizeof pointers / sizeof pointers[0]; i++) {
        jsonscan_value v;
        bool found = jsonscan_find(text, size, pointers[i].segs, pointers[i].n, &v);
        const json_t *want = doc ? walk(doc, pointers[i].segs, pointers[i].n) : NULL;
        if (doc)
            fuzz_check(found == (want != NULL), "pointer %zu: scan %d, parser %d", i, found,
                       want != NULL);
        if (!found) continue;
        fuzz_check(v.start >= text && v.start < v.end && v.end <= text + size,
                   "the value lies inside the text");
        if (want) {
            json_t *got = json_loadb(v.start, (size_t)(v.end - v.start),
                                     JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            fuzz_check(got && json_equal(got, (json_t *)want), "pointer %zu: '%.*s'", i,
                       (int)(v.end - v.start), v.start);
            json_decref(got);
        }
        if (v.kind != JSONSCAN_STRING) {
            char small[8];
            fuzz_check(jsonscan_string(&v, small, sizeof small) == -1, "a non-string copied");
            continue;
        }
        size_t raw = (size_t)(v.end - v.start);
        fuzz_check(raw >= 2 && v.start[0] == '"' && v.end[-1] == '"', "a string's quotes");
        static const size_t caps[] = {1, 2, 8};
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
            char *dst = malloc(caps[c]); /* exact: ASan sees an overflow */
            if (!dst) abort();
            long n = jsonscan_string(&v, dst, caps[c]);
            fuzz_check(n >= -1 && n < (long)caps[c], "%ld bytes in %zu", n, caps[c]);
            if (n >= 0) fuzz_check(dst[n] == '\0', "NUL-terminated");
            free(dst);
        }
        /* The raw length always suffices: an escape never grows. */
        char *dst = malloc(raw);
        if (!dst) abort();
        long n = jsonscan_string(&v, dst, raw);
        fuzz_check(n < (long)raw - 1 || n == -1, "%ld bytes from %zu", n, raw);
        if (want) {
            fuzz_check(json_is_string(want) && n == (long)json_string_length(want) &&
                           memcmp(dst, json_string_value(want), (size_t)n) == 0,
                       "pointer %zu: the string unescapes otherwise than jansson's", i);
        }
        free(dst);
    }
    json_decref(doc);

    /* The matcher on the same bytes, through an event whose text ends where they do. */
    static filter lists[3];
    static bool ready;
    if (!ready) {
        scan_filter(&lists[0], scan_where);
        scan_filter(&lists[1], scan_where2);
        scan_filter(&lists[2], scan_where3);
        ready = true;
    }
    stored_event e = {.position = 1,
                      .id = "evt-1",
                      .tenant = "default",
                      .stream = "s",
                      .type = "t.u",
                      .correlation_id = "c",
                      .json = text,
                      .json_len = size};
    atomic_init(&e.refs, 1);
    for (int i = 0; i < 3; i++) {
        filter_memo memo = {0};
        bool m = filter_matches(&lists[i], &e);
        fuzz_check(filter_matches_memo(&lists[i], &e, &memo) == m, "the memo answers otherwise");
    }
    free(text);
}

/* ------------------------------------------------------------------ replay mode */

/* A value no string stands for where a filter member wants one (null means "none"). */
static bool not_a_string(const json_t *v)
{
    return v && !json_is_null(v) && !json_is_string(v);
}

static bool not_strings(const json_t *v, bool one_allowed)
{
    if (!v || json_is_null(v) || (one_allowed && json_is_string(v))) return false;
    if (!json_is_array(v)) return true;
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) if (!json_is_string(x)) return true;
    return false;
}

/* The member of a replay filter that must be refused, or NULL. */
static const char *must_refuse(const json_t *filter)
{
    static const char *const strings[] = {"key", "correlation_id", "user_id", "since", "until"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (not_a_string(json_object_get(filter, strings[i]))) return strings[i];
    if (not_strings(json_object_get(filter, "streams"), false)) return "streams";
    if (not_strings(json_object_get(filter, "types"), false)) return "types";
    if (not_strings(json_object_get(filter, "stream"), true)) return "stream";
    if (not_strings(json_object_get(filter, "type"), true)) return "type";
    return NULL;
}

/* True when `m` names a member of obj (cut to filter_error's member size when long). */
static bool member_of(const json_t *obj, const char *m)
{
    size_t n = strlen(m);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        if (strcmp(k, m) == 0) return true;
        if (n == sizeof((filter_error *)0)->member - 1 && strncmp(k, m, n) == 0) return true;
    }
    return false;
}

static void fuzz_replay(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *req = json_loadb((const char *)data, size, FUZZ_BODY_FLAGS, &jerr);
    if (!req) return;
    json_t *fobj = json_object_get(req, "filter");
    const char *bad = json_is_object(fobj) ? must_refuse(fobj) : NULL;

    /* The filter alone, as replays_create parses it. */
    static const char *const positions[] = {"from_position", "to_position", NULL};
    filter f = {0};
    snprintf(f.tenant, sizeof f.tenant, "default");
    filter_error err;
    memset(&err, 0x55, sizeof err);
    if (filter_parse_json(&f, fobj, NULL, positions, &err) == 0) {
        if (bad) fuzz_fail("filter.%s: a value that is not a string was accepted", bad);
        check_filter(&f, "default");
        check_own_event(&f);
        check_sql(&f, true);
        filter_dispose(&f);
    } else {
        check_refusal(&err, true);
        fuzz_check(memchr(err.member, '\0', sizeof err.member) != NULL, "member NUL-terminated");
        if (*err.member && !member_of(fobj, err.member))
            fuzz_fail("the member at fault '%s' is not one of the filter's", err.member);
        /* Nothing held (the tenant the caller set may stay). */
        static const filter zero;
        memset(f.tenant, 0, sizeof f.tenant);
        fuzz_check(memcmp(&f, &zero, sizeof f) == 0, "a refused filter holds nothing");
    }

    PGconn *conn = NULL; /* no store: a request that passes the checks answers -1 */
    json_t *answer = NULL;
    /* Tenant "default": other tenants are checked against cfg->redis_prefix, and no config
     * exists without replays_start() (which needs PostgreSQL). */
    int rc = replays_create(&conn, "default", req, &answer);
    if (rc == -4) {
        fuzz_check(json_is_object(answer), "a refusal is a problem document");
        fuzz_check(json_is_string(json_object_get(answer, "detail")), "the problem says why");
        fuzz_check_roundtrip(answer, "replay problem");
    } else {
        fuzz_check(rc == -1, "without PostgreSQL: -1, got %d", rc);
        if (bad) fuzz_fail("replay filter.%s: a value that is not a string was accepted", bad);
    }
    json_decref(answer);
    json_decref(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && data[0] == '{')
        fuzz_replay(data, size);
    else if (size && data[0] == '[')
        fuzz_where(data, size);
    else if (size && data[0] == '~')
        fuzz_scan(data + 1, size - 1);
    else
        fuzz_query(data, size);
    return 0;
}
