/*
 * baseevent.c — BaseEvent → envelope mapping (see baseevent.h).
 */
#include "baseevent.h"
#include "mem.h"
#include "problem.h"

#include <string.h>

/* Members a BaseEvent body may have: its own, then Sluice's placement fields. */
static const char *const known_members[] = {
    "id",      "type",   "payload",          "timestamp",
    "version", "source", "correlationId",    "metadata",
    "stream",  "key",    "expected_version", "schema_version",
};

/* BaseEvent member → envelope field, taken over as they are. */
static const char *const renamed[][2] = {
    {"id", "id"},
    {"type", "type"},
    {"payload", "data"},
    {"timestamp", "occurred_at"},
    {"source", "source"},
    {"correlationId", "correlation_id"},
    {"stream", "stream"},
    {"key", "key"},
    {"expected_version", "expected_version"},
    {"schema_version", "schema_version"},
};

/* metadata member → envelope field (when the envelope does not have it yet). */
static const char *const from_metadata[][2] = {
    {"correlationId", "correlation_id"},
    {"causationId", "causation_id"},
    {"userId", "user_id"},
};

bool baseevent_is(const json_t *in)
{
    return json_is_object(in) && json_object_get(in, "payload") && !json_object_get(in, "data");
}

/* A member that is there and not null. */
static json_t *present(const json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return v && !json_is_null(v) ? v : NULL;
}

/* `name` as a JSON Pointer token: "~" and "/" escaped (caller frees). */
static char *pointer_token(const char *name)
{
    buf b;
    buf_init(&b);
    for (const char *c = name; *c; c++) {
        if (*c == '~' || *c == '/')
            buf_append(&b, *c == '~' ? "~0" : "~1", 2);
        else
            buf_append(&b, c, 1);
    }
    return buf_steal(&b, NULL);
}

static void check_known_members(json_t *in, int index, json_t *errors)
{
    const char *name;
    json_t *value;
    json_object_foreach(in, name, value)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof known_members / sizeof known_members[0]; i++)
            if (strcmp(name, known_members[i]) == 0) known = true;
        if (known) continue;
        char *token = pointer_token(name);
        char *path = xasprintf("/%s", token);
        json_array_append_new(
            errors, problem_error(index, path, "additionalProperties",
                                  "not a member of a BaseEvent (id, type, payload, timestamp, "
                                  "version, source, correlationId, metadata) nor a placement "
                                  "field (stream, key, expected_version, schema_version)"));
        free(path);
        free(token);
    }
}

/* The envelope's metadata: the BaseEvent's, whole, with `version` kept in it. */
static void map_metadata(json_t *in, json_t *env, int index, json_t *errors)
{
    json_t *md = present(in, "metadata");
    json_t *version = present(in, "version");
    if (md && !json_is_object(md)) { /* as sent: the envelope checks refuse it */
        json_object_set(env, "metadata", md);
        return;
    }
    for (size_t i = 0; md && i < sizeof from_metadata / sizeof from_metadata[0]; i++) {
        json_t *v = present(md, from_metadata[i][0]);
        if (v && !present(env, from_metadata[i][1])) json_object_set(env, from_metadata[i][1], v);
    }
    if (!version) {
        if (md) json_object_set(env, "metadata", md);
        return;
    }
    json_t *kept = md ? json_object_get(md, BASEEVENT_VERSION_KEY) : NULL;
    if (kept && !json_equal(kept, version))
        json_array_append_new(errors,
                              problem_error(index, "/metadata/" BASEEVENT_VERSION_KEY, "const",
                                            "metadata." BASEEVENT_VERSION_KEY
                                            " is where Sluice keeps `version`: it must be "
                                            "absent or equal to it"));
    json_t *out = md ? json_copy(md) : json_object(); /* shallow: the values are shared */
    json_object_set(out, BASEEVENT_VERSION_KEY, version);
    json_object_set_new(env, "metadata", out);
}

json_t *baseevent_envelope(json_t *in, int index, json_t *errors)
{
    check_known_members(in, index, errors);
    json_t *env = json_object();
    for (size_t i = 0; i < sizeof renamed / sizeof renamed[0]; i++) {
        json_t *v = json_object_get(in, renamed[i][0]);
        if (v) json_object_set(env, renamed[i][1], v);
    }
    map_metadata(in, env, index, errors);
    return env;
}

/* The member of the BaseEvent `in` an envelope field came from (a JSON Pointer), or NULL
 * when the field has the same name in both. */
static const char *sent_as(const json_t *in, const char *field, size_t len)
{
#define FIELD_IS(s) (len == strlen(s) && memcmp(field, s, len) == 0)
    if (FIELD_IS("data")) return "/payload";
    if (FIELD_IS("occurred_at")) return "/timestamp";
    if (FIELD_IS("correlation_id"))
        return present(in, "correlationId") ? "/correlationId" : "/metadata/correlationId";
    if (FIELD_IS("causation_id")) return "/metadata/causationId";
    if (FIELD_IS("user_id")) return "/metadata/userId";
    return NULL;
#undef FIELD_IS
}

void baseevent_name_errors(const json_t *in, json_t *errors, size_t from)
{
    for (size_t i = from; i < json_array_size(errors); i++) {
        json_t *e = json_array_get(errors, i);
        const char *path = json_string_value(json_object_get(e, "path"));
        if (!path || path[0] != '/') continue;
        size_t len = strcspn(path + 1, "/");
        const char *sent = sent_as(in, path + 1, len);
        if (!sent) continue;
        char *renamed_path = xasprintf("%s%s", sent, path + 1 + len);
        json_object_set_new(e, "path", json_string(renamed_path));
        free(renamed_path);
    }
}
