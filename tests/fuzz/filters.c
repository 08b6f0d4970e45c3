/*
 * tests/fuzz/filters.c — the read and subscription filters (issue 8).
 *
 * Input, either of:
 *   - a query string "name=value&name=value…" (percent-decoded like libmicrohttpd does,
 *     so values may hold any byte but NUL). It is parsed by store_filter_parse as
 *     GET /v1/events (paged), GET /v1/events?format=ndjson and /v1/streams/… (not paged)
 *     do, and by the SSE subscription's comma lists (hub_filter_add_list, which
 *     handlers/subscribe.c calls: `stream` via envelope_stream_valid, `type` via
 *     hub_filter_add_type);
 *   - a JSON object (input starting with '{'): a POST /v1/replays body, parsed by
 *     replay_create with no PostgreSQL connection (so it stops after the checks).
 * Checked:
 *   - a filter holds only what the grammar allows (types are names or "prefix." wildcards,
 *     at most the maximum; limit within range when paged);
 *   - a refusal writes a NUL-terminated message, valid UTF-8 whenever the query was, and
 *     the problem answered with it (problem_new, as http_reply_error) keeps it as its
 *     detail whatever bytes the query held;
 *   - the read filter and the hub filter accept exactly the same `type` lists (up to the
 *     hub's 16 entries) and hold the same entries;
 *   - a hub filter matches an event of its own first stream and type, never another
 *     tenant's;
 *   - a replay filter whose field holds no string (true, 1.5, {…}, [1]) is refused.
 */
#include "fuzz.h"
#include "hub.h"
#include "problem.h"
#include "replays.h"
#include "sevent.h"
#include "store.h"

#include <stdint.h>

#define MAX_ARGS 32

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

static void check_read_filter(const read_filter *f, bool paged)
{
    fuzz_check(f->n_types >= 0 && f->n_types <= STORE_MAX_TYPES, "n_types %d", f->n_types);
    for (int i = 0; i < f->n_types; i++) {
        const char *t = f->types[i];
        size_t n = strlen(t);
        if (f->type_prefix[i]) {
            fuzz_check(n == 0 || t[n - 1] == '.', "prefix '%s' ends in '.'", t);
            if (n) {
                char probe[ENVELOPE_TYPE_MAX + 8];
                snprintf(probe, sizeof probe, "%sx", t);
                fuzz_check(envelope_type_valid(probe), "prefix '%s'", t);
            }
        } else {
            fuzz_check(envelope_type_valid(t), "type '%s'", t);
        }
    }
    if (paged) fuzz_check(f->limit >= 1 && f->limit <= STORE_PAGE_MAX, "limit %lld", f->limit);
    fuzz_check(f->after >= 0 && f->limit >= 0, "after %lld limit %lld", f->after, f->limit);
    if (f->stream) fuzz_check(*f->stream, "empty stream");
    if (f->key) fuzz_check(*f->key, "empty key");
}

/* Entries in a comma list, as strtok_r counts them. */
static int list_len(const char *v)
{
    int n = 0;
    bool in = false;
    for (; *v; v++) {
        if (*v == ',') {
            in = false;
        } else if (!in) {
            in = true;
            n++;
        }
    }
    return n;
}

static void check_hub(args *a, const read_filter *rf, int store_rc)
{
    hub_filter hf = {0};
    snprintf(hf.tenant, sizeof hf.tenant, "t");
    const char *types = arg(a, "type");
    bool streams_ok = hub_filter_add_list(&hf, arg(a, "stream"), false);
    bool types_ok = hub_filter_add_list(&hf, types, true);
    for (int i = 0; i < hf.n_streams; i++)
        fuzz_check(envelope_stream_valid(hf.streams[i]), "stream '%s'", hf.streams[i]);

    /* Differential: the read filter and the hub filter share one type grammar. */
    if (types && list_len(types) <= HUB_MAX_TYPES && store_rc == 0) {
        if (!types_ok) fuzz_fail("type '%s': the read filter accepts it, the hub refuses", types);
        fuzz_check(hf.n_types == rf->n_types, "hub %d types, read %d", hf.n_types, rf->n_types);
        for (int i = 0; i < hf.n_types; i++) {
            fuzz_check(strcmp(hf.types[i], rf->types[i]) == 0 &&
                           hf.type_prefix[i] == rf->type_prefix[i],
                       "entry %d: hub '%s', read '%s'", i, hf.types[i], rf->types[i]);
        }
    }

    if (streams_ok && types_ok) {
        const char *stream = hf.n_streams ? hf.streams[0] : "any.stream";
        const char *type = "some.type";
        char buf[ENVELOPE_TYPE_MAX + 8];
        if (hf.n_types) {
            if (!hf.type_prefix[0]) {
                type = hf.types[0];
            } else {
                snprintf(buf, sizeof buf, "%sx.y", hf.types[0]);
                type = buf;
            }
        }
        sevent *e = sevent_new(1, NULL, "t", stream, type, NULL, "c", "{}", 2);
        if (!hub_filter_matches(&hf, e))
            fuzz_fail("the filter does not match an event of its own stream '%s', type '%s'",
                      stream, type);
        sevent *other = sevent_new(2, NULL, "u", stream, type, NULL, "c", "{}", 2);
        fuzz_check(!hub_filter_matches(&hf, other), "another tenant's event matched");
        sevent_unref(e);
        sevent_unref(other);
    }
    hub_filter_dispose(&hf);
}

static void fuzz_query(const uint8_t *data, size_t size)
{
    char *q = fuzz_cstr(data, size);
    args a = {0};
    parse_query(q, &a);
    read_filter first = {0};
    int first_rc = -1;
    for (int paged = 1; paged >= 0; paged--) {
        read_filter f;
        char err[256];
        memset(err, 0x55, sizeof err);
        int rc = store_filter_parse(&f, arg, &a, paged, err);
        if (rc == 0) {
            check_read_filter(&f, paged);
        } else {
            fuzz_check(rc == -1, "rc %d", rc);
            fuzz_check(memchr(err, '\0', sizeof err) != NULL, "err is NUL-terminated");
            fuzz_check(*err, "err says why");
            if (a.utf8 && !fuzz_utf8_valid(err, strlen(err)))
                fuzz_fail("the message is not UTF-8 although the query was: %s", err);
            /* What http_reply_error answers: the 400 must say why, whatever bytes were sent. */
            json_t *problem = problem_new("invalid_query", err);
            if (!json_is_string(json_object_get(problem, "detail")))
                fuzz_fail("the 400 problem lost its detail: %s", err);
            json_decref(problem);
            static const read_filter zero;
            fuzz_check(memcmp(&f, &zero, sizeof f) == 0, "a refused filter is left empty");
        }
        if (!paged) {
            first = f;
            first_rc = rc;
        } else if (rc == 0) {
            store_filter_dispose(&f);
        }
    }
    check_hub(&a, &first, first_rc);
    if (first_rc == 0) store_filter_dispose(&first);
    free(q);
}

static void fuzz_replay(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *req = json_loadb((const char *)data, size, FUZZ_BODY_FLAGS, &err);
    if (!req) return;
    /* A filter value no string can stand for (true, 1.5, {…}, [1]) must be refused, whatever
     * the field: the read filter would otherwise hold a placeholder instead. */
    bool must_refuse = false;
    const char *bad = NULL;
    json_t *filter = json_object_get(req, "filter");
    if (json_is_object(filter)) {
        const char *k;
        json_t *v;
        json_object_foreach(filter, k, v)
        {
            if (strcmp(k, "from_position") == 0 || strcmp(k, "to_position") == 0) continue;
            bool odd = json_is_boolean(v) || json_is_real(v) || json_is_object(v);
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) if (!json_is_string(x)) odd = true;
            if (odd) {
                must_refuse = true;
                bad = k;
            }
        }
    }
    PGconn *conn = NULL; /* no store: a request that passes the checks answers -1 */
    json_t *answer = NULL;
    /* Tenant "default": other tenants are checked against cfg->redis_prefix, and no config
     * exists without replays_start() (which needs PostgreSQL). */
    int rc = replay_create(&conn, "default", req, &answer);
    if (rc == -4) {
        fuzz_check(json_is_object(answer), "a refusal is a problem document");
        fuzz_check(json_is_string(json_object_get(answer, "detail")), "the problem says why");
        fuzz_check_roundtrip(answer, "replay problem");
    } else {
        fuzz_check(rc == -1, "without PostgreSQL: -1, got %d", rc);
        if (must_refuse)
            fuzz_fail("replay filter.%s: a value that is not a string was accepted", bad);
    }
    json_decref(answer);
    json_decref(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size && data[0] == '{')
        fuzz_replay(data, size);
    else
        fuzz_query(data, size);
    return 0;
}
