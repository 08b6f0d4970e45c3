/*
 * tests/fuzz/cloudevents.c — the CloudEvents HTTP binding mapped onto envelopes (issue 8).
 *
 * One input drives all three modes, as envelopes_or_problem (handlers/events.c) would:
 *   - structured and batch: the whole input as a JSON body → cloudevents_structured and
 *     cloudevents_batch;
 *   - binary: the input as a header block and a body, like an HTTP request after
 *     libmicrohttpd parsed it: "Name: value" lines ('\n' or "\r\n"), a blank line, then
 *     the JSON body. Header values are raw bytes (not necessarily UTF-8), as libmicrohttpd
 *     passes them → cloudevents_binary with a headers callback over those lines.
 * Every envelope produced then goes through publish_prepare (unknown types allowed) and
 * must round-trip as JSON; attributes that are not mapped must land in
 * metadata.cloudevents.
 */
#include "cloudevents.h"
#include "fuzz.h"
#include "publish.h"

#include <stdint.h>
#include <strings.h>

#define MAX_HEADERS 64

typedef struct headers {
    char *name[MAX_HEADERS], *value[MAX_HEADERS];
    int n;
} headers;

static void each_header(void *ctx, void (*each)(const char *, const char *, void *), void *arg)
{
    headers *h = ctx;
    for (int i = 0; i < h->n; i++) each(h->name[i], h->value[i], arg);
}

/* Splits "Name: value\n…\n\n<body>" (a C string) into headers; returns the body. */
static char *parse_headers(char *s, headers *h)
{
    char *p = s;
    while (*p) {
        char *eol = strchr(p, '\n');
        char *next = eol ? eol + 1 : p + strlen(p);
        if (eol) *eol = '\0';
        size_t len = strlen(p);
        if (len && p[len - 1] == '\r') p[--len] = '\0';
        if (len == 0) return next; /* the blank line: the body follows */
        char *colon = strchr(p, ':');
        if (colon && colon != p && h->n < MAX_HEADERS) {
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            h->name[h->n] = p;
            h->value[h->n++] = v;
        }
        p = next;
    }
    return p;
}

static void check_envelope(json_t *env, const char *what)
{
    fuzz_check(env != NULL, "%s: no envelope", what);
    fuzz_check_roundtrip(env, what);
    if (json_is_object(env)) {
        json_t *ce = json_object_get(json_object_get(env, "metadata"), "cloudevents");
        if (ce) fuzz_check(json_is_object(ce) && json_object_size(ce) > 0, "%s: kept", what);
    }
    for (int atomic = 0; atomic < 2; atomic++) {
        publish_opts opts = {.tenant = "t",
                             .atomic = atomic,
                             .max_batch = 1000,
                             .allow_unknown_types = true};
        publish_op *op = publish_prepare(env, &opts);
        publish_answer *a = publish_result(op);
        if (a->body) fuzz_check_roundtrip(a->body, "publish answer");
        publish_op_free(op);
    }
}

/* Structured mode: every attribute is either mapped or kept under metadata.cloudevents. */
static void check_structured(json_t *ce, json_t *env)
{
    if (!json_is_object(ce)) {
        fuzz_check(env == ce, "a non-object is returned as is");
        return;
    }
    static const char *const mapped[] = {
        "type",        "id",     "subject", "source", "time",       "correlationid",
        "causationid", "userid", "stream",  "data",   "data_base64"};
    json_t *kept = json_object_get(json_object_get(env, "metadata"), "cloudevents");
    const char *k;
    json_t *v;
    json_object_foreach(ce, k, v) {
        bool is_mapped = false;
        for (size_t i = 0; i < sizeof mapped / sizeof mapped[0]; i++)
            if (strcmp(k, mapped[i]) == 0) is_mapped = true;
        if (!is_mapped && !json_object_get(kept, k))
            fuzz_fail("attribute '%s' was neither mapped nor kept", k);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *body = json_loadb((const char *)data, size, FUZZ_BODY_FLAGS, &err);
    if (body) {
        json_t *env = cloudevents_structured(body);
        check_structured(body, env);
        check_envelope(env, "structured");
        json_decref(env);
        json_t *batch = cloudevents_batch(body);
        check_envelope(batch, "batch");
        if (json_is_array(body)) {
            fuzz_check(json_array_size(batch) == json_array_size(body), "batch size");
            size_t i;
            json_t *x;
            json_array_foreach(body, i, x) {
                json_t *one = cloudevents_structured(x);
                check_structured(x, one);
                fuzz_check(json_equal(one, json_array_get(batch, i)), "batch element %zu", i);
                json_decref(one);
            }
        }
        json_decref(batch);
        json_decref(body);
    }

    char *text = fuzz_cstr(data, size);
    headers h = {0};
    char *rest = parse_headers(text, &h);
    json_t *bin_body = json_loads(rest, FUZZ_BODY_FLAGS, &err);
    if (bin_body) {
        json_t *env = cloudevents_binary(each_header, &h, bin_body);
        check_envelope(env, "binary");
        fuzz_check(json_equal(json_object_get(env, "data"), bin_body), "binary: data is the body");
        json_decref(env);
        json_decref(bin_body);
    }
    free(text);
    return 0;
}
