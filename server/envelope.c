/*
 * envelope.c — envelope rules (see envelope.h). The patterns of API.md are
 * checked by hand here rather than with PCRE2: they are tiny, fixed, and on
 * the publish hot path.
 */
#include "envelope.h"
#include "baseevent.h"
#include "canon.h"
#include "digest.h"
#include "mem.h"
#include "problem.h"
#include "timeutil.h"
#include "ulid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The times an RFC 3339 date-time of four-digit years can name, in UTC: 0001-01-01T00:00:00Z
 * and 9999-12-31T23:59:59.999Z, in ms since the epoch. */
#define ENVELOPE_TIME_MIN_MS (-62135596800000LL)
#define ENVELOPE_TIME_MAX_MS 253402300799999LL

static const char *const known_fields[] = {
    "type",           "data",         "stream",  "key",    "expected_version", "id",
    "correlation_id", "causation_id", "user_id", "source", "schema_version",   "metadata",
    "occurred_at",
};

size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static bool is_lower_ident_start(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_lower_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

bool envelope_type_valid(const char *s)
{
    /* ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$ */
    size_t len = strlen(s);
    if (len == 0 || len > ENVELOPE_TYPE_MAX) return false;
    int segments = 0;
    const char *p = s;
    for (;;) {
        if (!is_lower_ident_start(*p)) return false;
        p++;
        while (is_lower_ident(*p))
            p++;
        segments++;
        if (*p == '\0') break;
        if (*p != '.') return false;
        p++;
    }
    return segments >= 2;
}

static bool is_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

bool envelope_id_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > ENVELOPE_ID_MAX) return false;
    for (; *s; s++)
        if (!is_id_char(*s)) return false;
    return true;
}

bool envelope_stream_valid(const char *s)
{
    /* ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ — no ':', which separates a tenant's namespace in
     * Redis stream names (<prefix><tenant>:<stream>), so no two tenants' streams meet. */
    size_t len = strlen(s);
    if (len == 0 || len > ENVELOPE_STREAM_MAX) return false;
    if (!is_id_char(s[0]) || s[0] == '.' || s[0] == '_' || s[0] == ':' || s[0] == '-') return false;
    for (; *s; s++)
        if (!is_id_char(*s) || *s == ':') return false;
    return true;
}

bool envelope_time_normalize(const char *s, char out[32])
{
    int64_t ms;
    /* RFC 3339's date-time separates date and time with a T (the parser also takes a space) */
    if (strlen(s) < 11 || (s[10] != 'T' && s[10] != 't')) return false;
    if (!time_parse_rfc3339(s, &ms) || ms < ENVELOPE_TIME_MIN_MS || ms > ENVELOPE_TIME_MAX_MS)
        return false;
    int64_t secs = ms / 1000, frac = ms % 1000;
    if (frac < 0) { /* before 1970: the second below, and the milliseconds after it */
        frac += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return false;
    char text[96]; /* what the compiler sees int fields can take; 24 characters in range */
    int n = snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    if (n != TIME_RFC3339_LEN - 1) return false;
    memcpy(out, text, TIME_RFC3339_LEN);
    return true;
}

static void add_error(json_t *errors, int index, const char *field, const char *keyword,
                      const char *message)
{
    char *path = xasprintf("/%s", field);
    json_array_append_new(errors, problem_error(index, path, keyword, message));
    free(path);
}

/* Optional string field: NULL/absent → *out stays NULL. Returns false on a violation. */
static bool take_string(json_t *in, const char *field, size_t max, int index, json_t *errors,
                        char **out)
{
    json_t *v = json_object_get(in, field);
    if (!v || json_is_null(v)) return true;
    if (!json_is_string(v)) {
        add_error(errors, index, field, "type", "expected a string");
        return false;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        add_error(errors, index, field, "type", "must not contain NUL characters");
        return false;
    }
    if (utf8_length(s) > max) {
        char msg[80];
        snprintf(msg, sizeof msg, "must be at most %zu characters", max);
        add_error(errors, index, field, "maxLength", msg);
        return false;
    }
    if (*s == '\0') {
        add_error(errors, index, field, "minLength", "must not be empty");
        return false;
    }
    *out = xstrdup(s);
    return true;
}

/* SHA-256 of the envelope's canonical text (sorted keys, compact, ASCII). */
static void hash_envelope(json_t *in, char out[65])
{
    buf text;
    buf_init(&text);
    buf_reserve(&text, 1024); /* one allocation for a typical envelope */
    canon_canonical(&text, in);
    digest_sha256_hex(text.data, text.len, out);
    buf_dispose(&text);
}

/* `name` as a JSON Pointer token: "~" and "/" escaped (caller frees). */
static char *pointer_token(const char *name)
{
    buf field;
    buf_init(&field);
    for (const char *c = name; *c; c++) {
        if (*c == '~' || *c == '/')
            buf_append(&field, *c == '~' ? "~0" : "~1", 2);
        else
            buf_append(&field, c, 1);
    }
    return buf_steal(&field, NULL);
}

/* One error per field the envelope table does not have. */
static void check_known_fields(json_t *in, int index, json_t *errors)
{
    const char *name;
    json_t *value;
    json_object_foreach(in, name, value)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof known_fields / sizeof known_fields[0]; i++)
            if (strcmp(name, known_fields[i]) == 0) known = true;
        if (!known) {
            char *f = pointer_token(name);
            add_error(errors, index, f, "additionalProperties",
                      "unknown envelope field (see the envelope table in API.md)");
            free(f);
        }
    }
}

/* The required fields: type (dot notation) and data (an object). */
static void take_type_and_data(json_t *in, int index, incoming_event *ev, json_t *errors)
{
    json_t *type = json_object_get(in, "type");
    if (!type) {
        add_error(errors, index, "type", "required", "type is required");
    } else if (!json_is_string(type)) {
        add_error(errors, index, "type", "type", "expected a string");
    } else if (!envelope_type_valid(json_string_value(type))) {
        add_error(errors, index, "type", "pattern",
                  "expected dot notation domain.action[.result] in lower case, "
                  "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$, at most 128 characters");
    } else {
        ev->type = xstrdup(json_string_value(type));
    }

    json_t *data = json_object_get(in, "data");
    if (!data) {
        add_error(errors, index, "data", "required", "data is required");
    } else if (!json_is_object(data)) {
        add_error(errors, index, "data", "type", "expected a JSON object");
    } else {
        ev->data = json_incref(data);
    }
}

/* Where the event goes and what it asserts there: stream, key, expected_version. */
static void take_placement(json_t *in, int index, incoming_event *ev, json_t *errors)
{
    if (take_string(in, "stream", ENVELOPE_STREAM_MAX, index, errors, &ev->stream) && ev->stream &&
        !envelope_stream_valid(ev->stream)) {
        add_error(errors, index, "stream", "pattern",
                  "expected ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    }
    (void)take_string(in, "key", ENVELOPE_KEY_MAX, index, errors, &ev->key);

    json_t *ev_v = json_object_get(in, "expected_version");
    if (ev_v && !json_is_null(ev_v)) {
        if (!json_is_integer(ev_v) || json_integer_value(ev_v) < 0) {
            add_error(errors, index, "expected_version", "type",
                      "expected a non-negative integer (0 = the key must be new)");
        } else if (!json_object_get(in, "key") || json_is_null(json_object_get(in, "key"))) {
            add_error(errors, index, "expected_version", "dependentRequired",
                      "expected_version needs a key");
        } else {
            ev->expected_version = (long long)json_integer_value(ev_v);
        }
    }
}

/* Who and what the event is: id, correlation_id, causation_id, user_id, source. */
static void take_identity(json_t *in, int index, incoming_event *ev, json_t *errors)
{
    json_t *id = json_object_get(in, "id");
    if (id && !json_is_null(id)) {
        if (!json_is_string(id)) {
            add_error(errors, index, "id", "type", "expected a string");
        } else if (strlen(json_string_value(id)) != json_string_length(id) ||
                   !envelope_id_valid(json_string_value(id))) {
            add_error(errors, index, "id", "pattern", "expected ^[A-Za-z0-9._:-]{1,64}$");
        } else {
            snprintf(ev->id, sizeof ev->id, "%s", json_string_value(id));
            ev->id_given = true;
        }
    }

    (void)take_string(in, "correlation_id", ENVELOPE_STR_MAX, index, errors, &ev->correlation_id);
    (void)take_string(in, "causation_id", ENVELOPE_STR_MAX, index, errors, &ev->causation_id);
    (void)take_string(in, "user_id", ENVELOPE_STR_MAX, index, errors, &ev->user_id);
    (void)take_string(in, "source", ENVELOPE_STR_MAX, index, errors, &ev->source);
}

/* When the producer says the event happened: occurred_at, normalised as `time` is. */
static void take_occurred_at(json_t *in, int index, incoming_event *ev, json_t *errors)
{
    json_t *v = json_object_get(in, "occurred_at");
    if (!v || json_is_null(v)) return;
    if (!json_is_string(v)) {
        add_error(errors, index, "occurred_at", "type", "expected a string");
    } else if (strlen(json_string_value(v)) != json_string_length(v) ||
               !envelope_time_normalize(json_string_value(v), ev->occurred_at)) {
        add_error(errors, index, "occurred_at", "format",
                  "expected an RFC 3339 date-time with a time zone, years 0001 to 9999, e.g. "
                  "2024-03-01T09:30:00.125Z");
    }
}

/* The optional extras: schema_version (1 to 1000000) and metadata (an object). */
static void take_extras(json_t *in, int index, incoming_event *ev, json_t *errors)
{
    json_t *sv = json_object_get(in, "schema_version");
    if (sv && !json_is_null(sv)) {
        if (!json_is_integer(sv) || json_integer_value(sv) < 1 ||
            json_integer_value(sv) > 1000000) {
            add_error(errors, index, "schema_version", "type", "expected a positive integer");
        } else {
            ev->schema_version = (int)json_integer_value(sv);
        }
    }

    json_t *md = json_object_get(in, "metadata");
    if (md && !json_is_null(md)) {
        if (!json_is_object(md))
            add_error(errors, index, "metadata", "type", "expected a JSON object");
        else
            ev->metadata = json_incref(md);
    }
}

/* What a valid envelope left out: the default stream, the id, the correlation id, the
 * source (the key's name); and the content hash of a client-chosen id. */
static void fill_defaults(json_t *in, const char *key_name, incoming_event *ev)
{
    ev->stream_given = ev->stream != NULL;
    if (!ev->stream) {
        /* Until the registry says otherwise: the type's first segment + ".events". */
        const char *dot = strchr(ev->type, '.');
        ev->stream = xasprintf("%.*s.events", (int)(dot - ev->type), ev->type);
    }
    /* Only a client-chosen id can be re-sent, so only then is "same content" asked. */
    if (ev->id_given) hash_envelope(in, ev->hash_hex);
    if (!ev->id_given) ulid_new(ev->id);
    if (!ev->correlation_id) ev->correlation_id = xstrdup(ev->id);
    if (!ev->source && key_name && *key_name) ev->source = xstrdup(key_name);
}

bool envelope_parse(json_t *in, int index, const char *tenant, const char *key_name,
                    incoming_event *ev, json_t *errors)
{
    memset(ev, 0, sizeof *ev);
    ev->expected_version = -1;
    ev->data_pointer = "/data";
    size_t before = json_array_size(errors);

    if (!json_is_object(in)) {
        json_array_append_new(
            errors, problem_error(index, "", "type", "an event envelope must be a JSON object"));
        return false;
    }
    snprintf(ev->tenant, sizeof ev->tenant, "%s", tenant);

    /* A BaseEvent is checked as the envelope it maps to, whose content (the hash) it is;
     * the errors about that envelope then name the members the producer sent. */
    json_t *sent = in, *mapped = NULL;
    size_t mapped_from = before;
    if (baseevent_is(in)) {
        mapped = baseevent_envelope(in, index, errors);
        mapped_from = json_array_size(errors);
        in = mapped;
        ev->data_pointer = "/payload";
    }

    check_known_fields(in, index, errors);
    take_type_and_data(in, index, ev, errors);
    take_placement(in, index, ev, errors);
    take_identity(in, index, ev, errors);
    take_occurred_at(in, index, ev, errors);
    take_extras(in, index, ev, errors);
    bool ok = json_array_size(errors) == before;
    if (ok) {
        fill_defaults(in, key_name, ev);
    } else {
        if (mapped) baseevent_name_errors(sent, errors, mapped_from);
        envelope_dispose(ev);
    }
    json_decref(mapped);
    return ok;
}

static char *dump(const json_t *v, size_t *len)
{
    buf b;
    buf_init(&b);
    canon_compact(&b, v);
    return buf_steal(&b, len);
}

void envelope_serialize(incoming_event *ev)
{
    free(ev->data_text);
    free(ev->metadata_text);
    ev->data_text = dump(ev->data, &ev->data_len);
    ev->metadata_text = ev->metadata ? dump(ev->metadata, &ev->metadata_len) : NULL;
    if (!ev->metadata) ev->metadata_len = 0;
}

void envelope_dispose(incoming_event *ev)
{
    free(ev->data_text);
    free(ev->metadata_text);
    free(ev->type);
    free(ev->stream);
    free(ev->key);
    free(ev->correlation_id);
    free(ev->causation_id);
    free(ev->user_id);
    free(ev->source);
    json_decref(ev->data);
    json_decref(ev->metadata);
    json_decref(ev->problem);
    memset(ev, 0, sizeof *ev);
}
