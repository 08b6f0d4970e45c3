/*
 * tests/fuzz/envelope.c — the envelope parser and the publish path above it (issue 8).
 *
 * Input: a request body, as POST /v1/events receives it (one envelope or a batch).
 * It goes through what events_on_publish does before the appender: json_loadb with the
 * handlers' flags, then publish_prepare (envelope rules per element, duplicate ids in a
 * batch, atomic and partial answers; the registry is not started, so every type is
 * unknown and allowed), publish_submit (no appender: refused with 503, or the ready 4xx
 * answer) and publish_result. Separately each element goes through envelope_parse and
 * envelope_serialize, and the `data` of a valid event of a catalog type (schemas/, as
 * embedded in build/gen/catalog.c) is validated against that type's schema.
 *
 * Checked besides memory safety and leaks: every answer and every error entry is
 * well-formed JSON that round-trips; a failed envelope_parse lists at least one error and
 * a successful one none, and each error's path is a JSON Pointer to the offending member; the
 * stored envelope that eventlog_committed writes from the serialised event parses, and its "data"
 * is the event's data.
 */
#include "canon.h"
#include "envelope.h"
#include "eventlog.h"
#include "fuzz.h"
#include "jsonparse.h"
#include "publish.h"
#include "schema/validator.h"

#include <stdint.h>

extern const char *const catalog_files[]; /* build/gen/catalog.c */

typedef struct catalog_entry {
    const char *type; /* borrowed from doc */
    json_t *doc;      /* the catalog file, owned for the process */
    schema *compiled; /* owned for the process */
} catalog_entry;

static catalog_entry catalog[256];
static int n_catalog;

static void load_catalog(void)
{
    for (const char *const *f = catalog_files; *f && n_catalog < 256; f++) {
        json_error_t err;
        json_t *doc = json_loads(*f, 0, &err);
        if (!doc) fuzz_fail("catalog file does not parse: %s", err.text);
        schema_status st;
        schema *s = schema_compile(json_object_get(doc, "schema"), &st, NULL);
        if (!s)
            fuzz_fail("catalog schema of %s does not compile",
                      json_string_value(json_object_get(doc, "type")));
        catalog[n_catalog++] =
            (catalog_entry){json_string_value(json_object_get(doc, "type")), doc, s};
    }
}

static const schema *catalog_schema(const char *type)
{
    for (int i = 0; i < n_catalog; i++)
        if (strcmp(catalog[i].type, type) == 0) return catalog[i].compiled;
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    load_catalog();
    return 0;
}

static void on_done(publish_op *op, void *arg)
{
    (void)op;
    *(int *)arg += 1;
}

static void check_answer(publish_op *op)
{
    int calls = 0;
    publish_submit(op, on_done, &calls);
    fuzz_check(calls == 1, "done must be called exactly once (no appender is running)");
    publish_answer *a = publish_result(op);
    fuzz_check(a->status >= 200 && a->status < 600, "status %d", a->status);
    if (a->body) {
        fuzz_check_roundtrip(a->body, "publish answer");
        json_t *errors = json_object_get(a->body, "errors");
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e) fuzz_check_error_entry(e, "publish answer");
    } else {
        fuzz_check(a->text != NULL, "an answer has a body or a text");
        json_error_t err;
        json_t *t = json_loadb(a->text, a->text_len, 0, &err);
        if (!t) fuzz_fail("publish answer text does not parse: %s", err.text);
        json_decref(t);
    }
}

/* Checks that an error's path points into the envelope `in`: its first JSON Pointer token,
 * unescaped (RFC 6901), names a member of `in`, an envelope field (a missing required one),
 * or, for a name longer than 128 code points, the start of a member's name. */
static void check_path_points_in(json_t *in, const json_t *e)
{
    const char *path = json_string_value(json_object_get(e, "path"));
    if (!json_is_object(in) || !*path) return;
    char token[2048];
    size_t n = 0;
    for (const char *p = path + 1; *p && *p != '/' && n < sizeof token - 1; p++) {
        if (*p == '~' && (p[1] == '0' || p[1] == '1')) {
            token[n++] = p[1] == '0' ? '~' : '/';
            p++;
        } else if (*p == '~') {
            fuzz_fail("path '%s': '~' not followed by 0 or 1", path);
        } else {
            token[n++] = *p;
        }
    }
    token[n] = '\0';
    if (json_object_get(in, token) || strcmp(token, "type") == 0 || strcmp(token, "data") == 0)
        return;
    if (utf8_length(token) >= 128) {
        const char *k;
        json_t *v;
        json_object_foreach(in, k, v) if (strncmp(k, token, n) == 0) return;
    }
    fuzz_fail("path '%s' does not point at a member of the envelope", path);
}

static void check_one(json_t *in, int index)
{
    incoming_event ev;
    json_t *errors = json_array();
    bool ok = envelope_parse(in, index, "t", "fuzz key", &ev, errors);
    if (!ok) {
        fuzz_check(json_array_size(errors) > 0, "a refused envelope lists its errors");
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e)
        {
            fuzz_check_error_entry(e, "envelope_parse");
            check_path_points_in(in, e);
        }
        fuzz_check_roundtrip(errors, "envelope errors");
        json_decref(errors);
        return;
    }
    fuzz_check(json_array_size(errors) == 0, "an accepted envelope lists no errors");
    fuzz_check(ev.type && envelope_type_valid(ev.type), "type");
    fuzz_check(ev.stream && *ev.stream, "stream");
    fuzz_check(ev.correlation_id && *ev.correlation_id, "correlation_id");
    fuzz_check(envelope_id_valid(ev.id), "id '%s'", ev.id);
    fuzz_check(json_is_object(ev.data), "data");
    envelope_serialize(&ev);
    ev.position = 1;
    snprintf(ev.time, sizeof ev.time, "2026-01-01T00:00:00.000Z");
    stored_event *stored = eventlog_committed(&ev);
    json_error_t err;
    json_t *parsed = json_loads(stored->json, 0, &err);
    if (!parsed) fuzz_fail("stored envelope does not parse (%s): %s", err.text, stored->json);
    if (!json_equal(json_object_get(parsed, "data"), ev.data))
        fuzz_fail("stored envelope's data differs from the event's: %s", stored->json);
    fuzz_check(strcmp(json_string_value(json_object_get(parsed, "type")), ev.type) == 0, "type");
    json_decref(parsed);
    stored_event_unref(stored);
    /* canon.c writes what jansson's dumper writes, byte for byte. */
    char *want = json_dumps(in, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    buf got;
    buf_init(&got);
    canon_canonical(&got, in);
    if (got.len != strlen(want) || memcmp(got.data, want, got.len) != 0)
        fuzz_fail("canonical text differs from jansson's: %s", want);
    buf_dispose(&got);
    free(want);

    const schema *s = catalog_schema(ev.type);
    if (s) {
        json_t *verr = json_array();
        bool valid = schema_validate(s, ev.data, "/data", index, verr);
        fuzz_check(valid == (json_array_size(verr) == 0), "catalog validation");
        fuzz_check(valid == schema_validate(s, ev.data, "/data", index, NULL),
                   "validation with and without an errors list agree");
        json_decref(verr);
    }
    envelope_dispose(&ev);
    json_decref(errors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *root = json_loadb((const char *)data, size, FUZZ_BODY_FLAGS, &err);
    /* jsonparse.c, the fast path in front of jansson, decides only what jansson would
     * decide the same way: the same tree, never a tree where jansson has an error. */
    json_t *fast = jsonparse_load((const char *)data, size);
    if (fast && !root) fuzz_fail("jsonparse accepted what jansson refuses: %s", err.text);
    if (fast && !json_equal(fast, root)) fuzz_fail("jsonparse built another tree than jansson");
    json_decref(fast);
    if (!root) return 0;

    if (json_is_array(root)) {
        size_t i;
        json_t *v;
        json_array_foreach(root, i, v)
        {
            if (i >= 64) break;
            check_one(v, (int)i);
        }
    } else {
        check_one(root, -1);
    }

    for (int atomic = 0; atomic < 2; atomic++) {
        publish_opts opts = {.tenant = "t",
                             .atomic = atomic,
                             .max_batch = 1000,
                             .allow_unknown_types = true,
                             .body_bytes = size};
        publish_op *op = publish_prepare(root, &opts);
        check_answer(op);
        publish_op_free(op);
    }
    json_decref(root);
    return 0;
}
