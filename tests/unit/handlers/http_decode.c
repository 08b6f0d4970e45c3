/* Unit tests of routing and percent-decoding in server/http.c (http_route.h), on the
 * real route table (handlers/routes.c): which route a method and path reach, the
 * decoded path parameters, when a parameter is not text (404), 404 against 405 and the
 * Allow list, trailing slashes; and http_percent_decode/http_text_ok on their own, as every path
 * parameter and query value goes through them. */
#include "http_route.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- http_percent_decode */

typedef struct decode_case {
    const char *in;
    const char *out; /* the decoded bytes (out_len of them) */
    size_t out_len;
    bool text; /* http_text_ok on the result */
} decode_case;

#define D(i, o, t)                                                                                 \
    {                                                                                              \
        i, o, sizeof(o) - 1, t                                                                     \
    }

static decode_case decodes[] = {
    D("", "", true),
    D("plain-value_1.2", "plain-value_1.2", true),
    D("%41", "A", true),
    D("a%2Fb", "a/b", true),              /* a slash inside one segment */
    D("%e2%82%AC", "\xe2\x82\xac", true), /* either case of hex digit */
    D("caf%C3%A9", "caf\xc3\xa9", true),
    D("%F0%9F%98%80", "\xf0\x9f\x98\x80", true),
    D("%20", " ", true),
    D("a+b", "a+b", true), /* '+' is a plus here (libmicrohttpd turns it into a space in
                              query values before they reach Sluice; never in the path) */
    D("%2B", "+", true),
    D("%2541", "%41", true), /* decoded once */
    D("%%41", "%A", true),
    D("%zz", "%zz", true), /* not an escape: kept as sent */
    D("%4g", "%4g", true),
    D("%4", "%4", true), /* truncated at the end */
    D("%", "%", true),
    D("100%", "100%", true),
    D("%00", "\0", false), /* NUL: its length tells, and it is not text */
    D("a%00b", "a\0b", false),
    D("%FF", "\xff", false),                      /* not UTF-8 */
    D("%C0%AF", "\xc0\xaf", false),               /* overlong '/' */
    D("%ED%A0%80", "\xed\xa0\x80", false),        /* a UTF-16 surrogate */
    D("%F4%90%80%80", "\xf4\x90\x80\x80", false), /* past U+10FFFF */
    D("%C3", "\xc3", false),                      /* a truncated sequence */
};

ParameterizedTestParameters(http_decode, http_percent_decode)
{
    /* Criterion copies parameters into the test's own process, where the table's
     * pointers would not hold: the parameter is the row's index. */
    static size_t rows[sizeof decodes / sizeof decodes[0]];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        rows[i] = i;
    return cr_make_param_array(size_t, rows, sizeof rows / sizeof rows[0]);
}

ParameterizedTest(size_t *row, http_decode, http_percent_decode)
{
    const decode_case *c = &decodes[*row];
    char *s = strdup(c->in);
    size_t n = http_percent_decode(s);
    cr_expect_eq(n, c->out_len, "'%s' decodes to %zu bytes, want %zu", c->in, n, c->out_len);
    cr_expect(n == c->out_len && memcmp(s, c->out, n) == 0, "'%s' decodes to other bytes", c->in);
    cr_expect_eq(s[n], '\0', "'%s': the result is NUL-terminated", c->in);
    cr_expect_eq(http_text_ok(s, n), c->text, "'%s': http_text_ok should be %d", c->in, c->text);
    free(s);
}

/* ---- http_route_find */

typedef struct route_case {
    const char *method, *path;
    const char *pattern; /* the route reached, NULL = none */
    const char *allow;   /* when none: the Allow list ("" = 404) */
    const char *params[HTTP_MAX_PARAMS];
    bool bad; /* a parameter is not text */
} route_case;

static route_case routes[] = {
    {"GET", "/health", "/health", NULL, {NULL}, false},
    {"HEAD", "/health", "/health", NULL, {NULL}, false}, /* HEAD is served by GET */
    {"GET", "/", "/", NULL, {NULL}, false},
    {"GET", "/v1/events", "/v1/events", NULL, {NULL}, false},
    {"POST", "/v1/events", "/v1/events", NULL, {NULL}, false},
    {"GET", "/v1/events/01HX", "/v1/events/{id}", NULL, {"01HX"}, false},
    {"HEAD", "/v1/events/01HX", "/v1/events/{id}", NULL, {"01HX"}, false},
    /* a literal route listed before the parameter route takes the name */
    {"GET", "/v1/events/wait", "/v1/events/wait", NULL, {NULL}, false},
    {"POST", "/v1/dead-letters/reprocess", "/v1/dead-letters/reprocess", NULL, {NULL}, false},
    {"GET", "/v1/dead-letters/reprocess", "/v1/dead-letters/{id}", NULL, {"reprocess"}, false},
    {"GET",
     "/v1/streams/orders/keys/o-1",
     "/v1/streams/{stream}/keys/{key}",
     NULL,
     {"orders", "o-1"},
     false},
    {"GET",
     "/v1/schemas/order.placed/versions/3",
     "/v1/schemas/{type}/versions/{n}",
     NULL,
     {"order.placed", "3"},
     false},
    {"DELETE",
     "/v1/streams/s/groups/g",
     "/v1/streams/{stream}/groups/{group}",
     NULL,
     {"s", "g"},
     false},
    /* parameters are routed as sent, then decoded */
    {"GET",
     "/v1/streams/a%2Fb/keys/k%20y",
     "/v1/streams/{stream}/keys/{key}",
     NULL,
     {"a/b", "k y"},
     false},
    {"GET", "/v1/events/caf%C3%A9", "/v1/events/{id}", NULL, {"caf\xc3\xa9"}, false},
    {"GET", "/v1/events/a+b", "/v1/events/{id}", NULL, {"a+b"}, false},
    {"GET", "/v1/events/%zz", "/v1/events/{id}", NULL, {"%zz"}, false},
    {"GET", "/v1/events/%4", "/v1/events/{id}", NULL, {"%4"}, false},
    {"GET", "/v1/events/%00", "/v1/events/{id}", NULL, {NULL}, true},
    {"GET", "/v1/events/x%00y", "/v1/events/{id}", NULL, {NULL}, true},
    {"GET", "/v1/events/%FF", "/v1/events/{id}", NULL, {NULL}, true},
    {"GET", "/v1/streams/ok/keys/%C0%AF", "/v1/streams/{stream}/keys/{key}", NULL, {NULL}, true},
    /* no route: 404 */
    {"GET", "/nope", "/{file}", "", {NULL}, false}, /* the dashboard's: its 404 */
    {"GET", "/vendor/uplot/u.js", "/{file}", "", {NULL}, false}, /* any depth */
    {"GET", "/v1/replays", NULL, "POST", {NULL}, false}, /* another method's path: 405 */
    {"POST", "/nope", NULL, "", {NULL}, false},        /* a fallback is never a 405 */
    {"DELETE", "/health/", NULL, "", {NULL}, false},    /* no API route: trailing slashes are not ignored (a GET would be the dashboard's 404) */
    {"DELETE", "/v1/events/", NULL, "", {NULL}, false}, /* an empty parameter matches nothing */
    {"DELETE", "/v1/events/01HX/", NULL, "", {NULL}, false},
    {"DELETE", "/v1/events/a/b", NULL, "", {NULL}, false},
    {"DELETE", "//", NULL, "", {NULL}, false},
    {"DELETE", "/v1//events", NULL, "", {NULL}, false},
    {"DELETE", "/V1/EVENTS", NULL, "", {NULL}, false}, /* paths are case-sensitive */
    {"DELETE", "/v1/streams/s/keys/", NULL, "", {NULL}, false},
    /* the path exists, the method does not: 405 with the methods that do */
    {"POST", "/health", NULL, "GET", {NULL}, false},
    {"get", "/health", NULL, "GET", {NULL}, false}, /* methods are case-sensitive */
    {"DELETE", "/v1/events", NULL, "POST, GET", {NULL}, false},
    {"PATCH", "/v1/streams/orders", NULL, "GET, PUT", {NULL}, false},
    {"PUT", "/v1/schemas/t/versions", NULL, "GET", {NULL}, false},
    {"GET", "/v1/dead-letters/x/discard", NULL, "POST", {NULL}, false},
    /* two routes of one method match the path: the method is listed once */
    {"PUT", "/v1/events/wait", NULL, "GET", {NULL}, false},
    {"DELETE", "/v1/dead-letters/reprocess", NULL, "POST, GET", {NULL}, false},
};

ParameterizedTestParameters(http_decode, http_route_find)
{
    /* Criterion copies parameters into the test's own process, where the table's
     * pointers would not hold: the parameter is the row's index. */
    static size_t rows[sizeof routes / sizeof routes[0]];
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        rows[i] = i;
    return cr_make_param_array(size_t, rows, sizeof rows / sizeof rows[0]);
}

ParameterizedTest(size_t *row, http_decode, http_route_find)
{
    const route_case *c = &routes[*row];
    http_req req;
    memset(&req, 0, sizeof req);
    buf allow;
    buf_init(&allow);
    bool bad = false;
    const http_route *r = http_route_find(c->method, c->path, &req, &allow, &bad);
    if (c->pattern) {
        cr_expect(r && strcmp(r->pattern, c->pattern) == 0, "%s %s reaches %s, want %s", c->method,
                  c->path, r ? r->pattern : "nothing", c->pattern);
        cr_expect_eq(bad, c->bad, "%s %s: a parameter that is not text: %d, want %d", c->method,
                     c->path, bad, c->bad);
        for (int i = 0; i < HTTP_MAX_PARAMS && !c->bad && c->params[i]; i++)
            cr_expect(req.params[i] && strcmp(req.params[i], c->params[i]) == 0,
                      "%s %s: parameter %d is '%s', want '%s'", c->method, c->path, i,
                      req.params[i] ? req.params[i] : "(none)", c->params[i]);
    } else {
        cr_expect_null(r, "%s %s reaches %s, want none", c->method, c->path, r ? r->pattern : "");
        const char *got = allow.len ? allow.data : "";
        cr_expect_str_eq(got, c->allow, "%s %s: Allow '%s', want '%s' (%s)", c->method, c->path,
                         got, c->allow, c->allow[0] ? "405" : "404");
        cr_expect_null(req.param_buf, "no route: no parameters");
    }
    free(req.param_buf);
    buf_dispose(&allow);
}

/* Every pattern of the table reaches its own route from a path that spells it. */
Test(http_decode, every_route_is_reached_by_its_own_pattern)
{
    for (size_t i = 0; i < http_routes_count; i++) {
        const http_route *want = &http_routes[i];
        char path[256];
        size_t w = 0;
        for (const char *p = want->pattern; *p && w < sizeof path - 8;) {
            if (*p == '{') {
                w += (size_t)snprintf(path + w, sizeof path - w, "p%zu", w);
                p = strchr(p, '}') + 1;
            } else {
                path[w++] = *p++;
            }
        }
        path[w] = '\0';
        http_req req;
        memset(&req, 0, sizeof req);
        buf allow;
        buf_init(&allow);
        bool bad = false;
        const http_route *r = http_route_find(want->method, path, &req, &allow, &bad);
        cr_expect_not_null(r, "%s %s finds no route", want->method, path);
        /* a literal route listed first may take a parameter route's path, never the
         * other way round */
        if (r && r != want)
            cr_expect(strchr(want->pattern, '{') && !strchr(r->pattern, '{'),
                      "%s %s reaches %s, not %s", want->method, path, r->pattern, want->pattern);
        cr_expect_not(bad);
        free(req.param_buf);
        buf_dispose(&allow);
    }
}
