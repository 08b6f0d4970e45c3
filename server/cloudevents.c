/*
 * cloudevents.c — CloudEvents → envelope mapping (see cloudevents.h).
 */
#include "cloudevents.h"
#include "mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* CloudEvents attribute → envelope field. */
static const char *const mapping[][2] = {
    {"type", "type"},
    {"id", "id"},
    {"subject", "key"},
    {"source", "source"},
    {"time", "occurred_at"}, /* the occurrence time, as the envelope's occurred_at (issue 15) */
    {"correlationid", "correlation_id"},
    {"causationid", "causation_id"},
    {"userid", "user_id"},
    {"stream", "stream"},
};

static const char *envelope_field(const char *attr)
{
    for (size_t i = 0; i < sizeof mapping / sizeof mapping[0]; i++)
        if (strcmp(mapping[i][0], attr) == 0) return mapping[i][1];
    return NULL;
}

/* Sets attribute `name` = `value` (stolen) on the envelope being built. */
static void put_attr(json_t *env, json_t *kept, const char *name, json_t *value)
{
    const char *field = envelope_field(name);
    if (field)
        json_object_set_new(env, field, value);
    else if (strcmp(name, "data") == 0)
        json_object_set_new(env, "data", value);
    else
        json_object_set_new(kept, name, value);
}

static json_t *finish(json_t *env, json_t *kept)
{
    if (json_object_size(kept)) {
        json_t *md = json_object_get(env, "metadata");
        if (!md) {
            md = json_object();
            json_object_set_new(env, "metadata", md);
        }
        json_object_set(md, "cloudevents", kept);
    }
    json_decref(kept);
    return env;
}

json_t *cloudevents_structured(json_t *ce)
{
    if (!json_is_object(ce)) return json_incref(ce);
    json_t *env = json_object(), *kept = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(ce, k, v) {
        if (strcmp(k, "data_base64") == 0) { /* binary payloads are not JSON objects */
            json_object_set(env, "data", v);
            continue;
        }
        put_attr(env, kept, k, json_incref(v));
    }
    return finish(env, kept);
}

json_t *cloudevents_batch(json_t *batch)
{
    if (!json_is_array(batch)) return json_incref(batch);
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(batch, i, v) json_array_append_new(out, cloudevents_structured(v));
    return out;
}

typedef struct binary_ctx {
    json_t *env, *kept;
} binary_ctx;

static void on_header(const char *name, const char *value, void *arg)
{
    binary_ctx *b = arg;
    if (strcasecmp(name, "Content-Type") == 0) { /* binary mode: datacontenttype */
        json_t *s = json_string(value);
        if (s) json_object_set_new(b->kept, "datacontenttype", s);
        return;
    }
    if (strncasecmp(name, "ce-", 3) != 0 || !name[3]) return;
    char attr[64];
    size_t n = 0;
    for (const char *p = name + 3; *p && n < sizeof attr - 1; p++)
        attr[n++] = (char)tolower((unsigned char)*p);
    attr[n] = '\0';
    if (strcmp(attr, "data") == 0) return; /* the body is the data */
    json_t *s = json_string(value);
    if (!s) s = json_stringn(value, 0); /* not UTF-8: keep an empty string for the checks */
    put_attr(b->env, b->kept, attr, s);
}

json_t *cloudevents_binary(ce_headers_each_fn headers, void *ctx, json_t *data)
{
    binary_ctx b = {json_object(), json_object()};
    headers(ctx, on_header, &b);
    json_object_set(b.env, "data", data);
    return finish(b.env, b.kept);
}
