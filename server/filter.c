/*
 * filter.c — parsing, in-memory matching and SQL of Sluice's one filter (see filter.h).
 */
#include "filter.h"
#include "jsonscan.h"
#include "timeutil.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POINTER 512
#define MAX_SEGS 32

static const char *const op_names[] = {"eq", "ne",  "in",  "gt",     "gte",
                                       "lt", "lte", "prefix", "exists"};

/* Envelope fields a `where` path may start with (the stored envelope's members). */
static const char *const fields[] = {"id",      "type",     "stream",         "key",
                                     "version", "position", "correlation_id", "causation_id",
                                     "user_id", "source",   "schema_version", "tenant_id",
                                     "time",    "occurred_at", "data", "metadata"};
/* Of those, the text columns a b-tree can answer `=` on directly. */
static const char *const text_columns[] = {"id",           "type",    "stream", "key",
                                           "correlation_id", "causation_id", "user_id",
                                           "source",       "tenant_id"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}
#define IN_LIST(s, arr) in_list((s), (arr), sizeof(arr) / sizeof((arr)[0]))

/* How many bytes of the client's text `s` a message quotes: at most `max`, whole UTF-8
 * characters only (a message must stay UTF-8 to become a problem's detail unchanged). */
static int clip(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max) return (int)n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

static int fail(filter_error *err, bool where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(filter_error *err, bool where, const char *fmt, ...)
{
    err->where = where;
    err->member[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof err->message) { /* cut by the buffer: drop a partial character */
        size_t end = strlen(err->message), i = end;
        while (i > 0 && ((unsigned char)err->message[i - 1] & 0xC0) == 0x80)
            i--;
        unsigned char lead = i > 0 ? (unsigned char)err->message[i - 1] : 0;
        size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (i > 0 && end - (i - 1) < want) err->message[i - 1] = '\0';
    }
    return -1;
}

/* ------------------------------------------------------------------ lifetime */

static void cond_dispose(filter_cond *c)
{
    free(c->pointer);
    for (int i = 0; i < c->n_segs; i++)
        free(c->segs[i]);
    free(c->segs);
    json_decref(c->value);
    memset(c, 0, sizeof *c);
}

void filter_dispose(filter *f)
{
    for (int i = 0; i < f->n_streams; i++)
        free(f->streams[i]);
    for (int i = 0; i < f->n_types; i++)
        free(f->types[i]);
    free(f->key);
    free(f->correlation_id);
    free(f->user_id);
    for (int i = 0; i < f->n_where; i++)
        cond_dispose(&f->where[i]);
    free(f->where_key);
    memset(f, 0, sizeof *f);
}

void filter_copy(filter *dst, const filter *src)
{
    *dst = *src;
    for (int i = 0; i < src->n_streams; i++)
        dst->streams[i] = xstrdup(src->streams[i]);
    for (int i = 0; i < src->n_types; i++)
        dst->types[i] = xstrdup(src->types[i]);
    dst->key = xstrdup(src->key);
    dst->correlation_id = xstrdup(src->correlation_id);
    dst->user_id = xstrdup(src->user_id);
    dst->where_key = xstrdup(src->where_key);
    for (int i = 0; i < src->n_where; i++) {
        const filter_cond *s = &src->where[i];
        filter_cond *d = &dst->where[i];
        d->pointer = xstrdup(s->pointer);
        d->segs = xcalloc((size_t)s->n_segs, sizeof *d->segs);
        for (int k = 0; k < s->n_segs; k++)
            d->segs[k] = xstrdup(s->segs[k]);
        d->value = s->value ? json_deep_copy(s->value) : NULL;
    }
}

/* ------------------------------------------------------------------ parsing */

bool filter_add_type(filter *f, const char *t)
{
    if (f->n_types >= FILTER_MAX_TYPES) return false;
    size_t n = strlen(t);
    if (strcmp(t, "*") == 0) {
        f->any_type = true;
        f->types[f->n_types] = xstrdup("");
        f->type_prefix[f->n_types++] = true;
        return true;
    }
    if (n > ENVELOPE_TYPE_MAX) return false;
    bool prefix = n > 2 && strcmp(t + n - 2, ".*") == 0;
    char probe[ENVELOPE_TYPE_MAX + 8];
    snprintf(probe, sizeof probe, "%.*s%s", (int)(prefix ? n - 2 : n), t, prefix ? ".x" : "");
    if (!envelope_type_valid(probe)) return false;
    f->types[f->n_types] = prefix ? xstrndup(t, n - 1) : xstrdup(t); /* "file.*" → "file." */
    f->type_prefix[f->n_types++] = prefix;
    return true;
}

static int add_stream(filter *f, const char *s, filter_error *err)
{
    if (f->n_streams >= FILTER_MAX_STREAMS)
        return fail(err, false, "stream takes at most %d streams", FILTER_MAX_STREAMS);
    if (!envelope_stream_valid(s))
        return fail(err, false, "stream '%.*s' is not a stream name", clip(s, 100), s);
    f->streams[f->n_streams++] = xstrdup(s);
    return 0;
}

static int add_type(filter *f, const char *t, filter_error *err)
{
    if (f->n_types >= FILTER_MAX_TYPES)
        return fail(err, false, "type takes at most %d entries", FILTER_MAX_TYPES);
    if (!filter_add_type(f, t))
        return fail(err, false, "type '%.*s' is not a type name or a 'prefix.*' wildcard",
                    clip(t, 100), t);
    return 0;
}

/* A comma list of streams (types=false) or type entries. */
static int add_list(filter *f, const char *csv, bool types, filter_error *err)
{
    char *copy = xstrdup(csv), *save = NULL;
    int rc = 0;
    bool any = false;
    for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
        rc = types ? add_type(f, t, err) : add_stream(f, t, err);
        any = true;
    }
    free(copy);
    if (rc == 0 && !any) rc = fail(err, false, "%s must not be empty", types ? "type" : "stream");
    return rc;
}

static int set_string(char **out, const char *v, const char *name, size_t max, filter_error *err)
{
    if (!*v || utf8_length(v) > max)
        return fail(err, false, "%s must be 1 to %zu characters", name, max);
    free(*out);
    *out = xstrdup(v);
    return 0;
}

static int set_time(long long *out, bool *has, const char *v, const char *name, filter_error *err)
{
    int64_t ms;
    if (!time_parse_rfc3339(v, &ms)) return fail(err, false, "%s must be an RFC 3339 timestamp", name);
    *out = (long long)ms;
    *has = true;
    return 0;
}

/* Splits a JSON Pointer into unescaped tokens. False if malformed. */
static bool split_pointer(const char *ptr, filter_cond *c)
{
    if (ptr[0] != '/' || strlen(ptr) > MAX_POINTER) return false;
    c->segs = xcalloc(MAX_SEGS, sizeof *c->segs);
    const char *p = ptr + 1;
    for (;;) {
        if (c->n_segs == MAX_SEGS) return false;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *seg = xmalloc(n + 1), *w = seg;
        for (size_t i = 0; i < n; i++) {
            if (p[i] != '~') {
                *w++ = p[i];
                continue;
            }
            if (i + 1 >= n || (p[i + 1] != '0' && p[i + 1] != '1')) {
                free(seg);
                return false;
            }
            *w++ = p[++i] == '0' ? '~' : '/';
        }
        *w = '\0';
        c->segs[c->n_segs++] = seg;
        if (!end) return true;
        p = end + 1;
    }
}

static bool is_order_value(const json_t *v)
{
    return json_is_number(v) || json_is_string(v);
}

/* One condition object {"path","op","value"}: into c. */
static int parse_cond(const json_t *in, int i, filter_cond *c, filter_error *err)
{
    if (!json_is_object(in))
        return fail(err, true, "where[%d] must be an object {\"path\",\"op\",\"value\"}", i);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)in, k, v)
    {
        if (strcmp(k, "path") && strcmp(k, "op") && strcmp(k, "value"))
            return fail(err, true,
                        "where[%d] has an unknown member '%.*s' (expected path, op, value)", i,
                        clip(k, 60), k);
    }
    const char *path = json_string_value(json_object_get(in, "path"));
    if (!path) return fail(err, true, "where[%d].path must be a JSON Pointer string", i);
    c->pointer = xstrdup(path);
    if (!split_pointer(path, c))
        return fail(err, true,
                    "where[%d].path '%.*s' is not a JSON Pointer (at most %d characters and "
                    "%d tokens; '~' only as ~0 or ~1)",
                    i, clip(path, 100), path, MAX_POINTER, MAX_SEGS);
    const char *first = c->segs[0];
    bool doc = strcmp(first, "data") == 0 || strcmp(first, "metadata") == 0;
    if (!IN_LIST(first, fields) || (!doc && c->n_segs > 1))
        return fail(err, true,
                    "where[%d].path '%.*s' does not name an envelope field: use /data/…, "
                    "/metadata/…, or /id /type /stream /key /version /position /correlation_id "
                    "/causation_id /user_id /source /schema_version /tenant_id /time /occurred_at",
                    i, clip(path, 40), path);
    /* The strings every committed event holds (never null): direct_field's numbers. */
    static const char *const direct[] = {"", "id", "type", "stream", "tenant_id",
                                         "correlation_id"};
    for (int d = 1; d < (int)(sizeof direct / sizeof direct[0]) && c->n_segs == 1; d++)
        if (strcmp(first, direct[d]) == 0) c->field = d;
    const char *op = json_string_value(json_object_get(in, "op"));
    size_t o = 0;
    while (op && o < sizeof op_names / sizeof op_names[0] && strcmp(op, op_names[o]))
        o++;
    if (!op || o == sizeof op_names / sizeof op_names[0])
        return fail(err, true,
                    "where[%d].op must be one of eq, ne, in, gt, gte, lt, lte, prefix, exists", i);
    c->op = (filter_op)o;
    json_t *value = json_object_get(in, "value");
    if (!value) return fail(err, true, "where[%d] (%s) needs a value", i, op);
    switch (c->op) {
    case FILTER_EQ:
    case FILTER_NE: break;
    case FILTER_IN:
        if (!json_is_array(value) || json_array_size(value) < 1 ||
            json_array_size(value) > FILTER_MAX_IN)
            return fail(err, true, "where[%d] (in) takes an array of 1 to %d values", i,
                        FILTER_MAX_IN);
        break;
    case FILTER_GT:
    case FILTER_GTE:
    case FILTER_LT:
    case FILTER_LTE:
        if (!is_order_value(value))
            return fail(err, true, "where[%d] (%s) takes a number or a string", i, op);
        if (json_is_real(value) && !isfinite(json_real_value(value)))
            return fail(err, true, "where[%d] (%s) takes a finite number", i, op);
        break;
    case FILTER_PREFIX:
        if (!json_is_string(value)) return fail(err, true, "where[%d] (prefix) takes a string", i);
        break;
    case FILTER_EXISTS:
        if (!json_is_boolean(value))
            return fail(err, true, "where[%d] (exists) takes true or false", i);
        c->exists = json_is_true(value);
        return 0;
    }
    c->value = json_incref(value);
    return 0;
}

/* f->where_key and f->where_hash from the conditions (FNV-1a over their canonical text). */
static void where_key(filter *f)
{
    json_t *all = json_array();
    for (int i = 0; i < f->n_where; i++) {
        const filter_cond *c = &f->where[i];
        json_array_append_new(all, json_pack("[s,s,O?]", c->pointer, op_names[c->op],
                                             c->op == FILTER_EXISTS ? json_boolean(c->exists)
                                                                    : c->value));
    }
    free(f->where_key);
    f->where_key = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(all);
    unsigned long long h = 1469598103934665603ULL;
    for (const char *p = f->where_key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    f->where_hash = h;
}

int filter_parse_where(filter *f, const json_t *where, filter_error *err)
{
    if (!where || json_is_null(where)) return 0;
    if (!json_is_array(where))
        return fail(err, true, "where must be an array of {\"path\",\"op\",\"value\"} conditions");
    if (f->n_where + json_array_size(where) > FILTER_MAX_WHERE)
        return fail(err, true, "where takes at most %d conditions", FILTER_MAX_WHERE);
    size_t i;
    json_t *c;
    json_array_foreach(where, i, c)
    {
        if (parse_cond(c, (int)i, &f->where[f->n_where++], err) < 0) return -1;
    }
    where_key(f);
    return 0;
}

static int parse_where_text(filter *f, const char *text, filter_error *err)
{
    json_error_t je;
    json_t *w = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!w) return fail(err, true, "where must be URL-encoded JSON: %.*s", clip(je.text, 150),
                          je.text);
    int rc = filter_parse_where(f, w, err);
    json_decref(w);
    return rc;
}

int filter_parse_query(filter *f, filter_arg_fn arg, void *ctx, filter_error *err)
{
    const char *v;
    int rc = 0;
    if (rc == 0 && (v = arg(ctx, "stream"))) rc = add_list(f, v, false, err);
    if (rc == 0 && (v = arg(ctx, "type"))) rc = add_list(f, v, true, err);
    if (rc == 0 && (v = arg(ctx, "key"))) rc = set_string(&f->key, v, "key", ENVELOPE_KEY_MAX, err);
    if (rc == 0 && (v = arg(ctx, "correlation_id")))
        rc = set_string(&f->correlation_id, v, "correlation_id", ENVELOPE_STR_MAX, err);
    if (rc == 0 && (v = arg(ctx, "user_id")))
        rc = set_string(&f->user_id, v, "user_id", ENVELOPE_STR_MAX, err);
    /* Times reach PostgreSQL as milliseconds since the epoch (an integer), so no text of
     * the client's is parsed there: a date PostgreSQL would refuse cannot become a store
     * error. */
    if (rc == 0 && (v = arg(ctx, "since"))) rc = set_time(&f->since_ms, &f->has_since, v, "since", err);
    if (rc == 0 && (v = arg(ctx, "until"))) rc = set_time(&f->until_ms, &f->has_until, v, "until", err);
    if (rc == 0 && (v = arg(ctx, "where"))) rc = parse_where_text(f, v, err);
    if (rc < 0) filter_dispose(f);
    return rc;
}

/* streams / types: an array of names; stream / type: that too, or one string (a comma
 * list, as in a query). */
static int parse_names(filter *f, const char *name, const json_t *v, bool types, filter_error *err)
{
    bool plural = name[strlen(name) - 1] == 's'; /* streams, types: arrays only */
    if (!plural && json_is_string(v)) return add_list(f, json_string_value(v), types, err);
    if (!json_is_array(v))
        return fail(err, false, "%s must be an array of %s", name,
                    types ? "types or prefix.* wildcards" : "stream names");
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        if (!json_is_string(x))
            return fail(err, false, "%s must hold %s", name,
                        types ? "types or prefix.* wildcards" : "stream names");
        int rc = types ? add_type(f, json_string_value(x), err)
                       : add_stream(f, json_string_value(x), err);
        if (rc < 0) return rc;
    }
    return 0;
}

static int parse_member(filter *f, const char *k, const json_t *v, filter_error *err)
{
    if (json_is_null(v)) return 0;
    bool streams = strcmp(k, "streams") == 0 || strcmp(k, "stream") == 0;
    bool types = strcmp(k, "types") == 0 || strcmp(k, "type") == 0;
    if (streams || types) return parse_names(f, k, v, types, err);
    if (strcmp(k, "where") == 0) return filter_parse_where(f, v, err);
    const char *s = json_string_value(v);
    if (!s) return fail(err, false, "%s must be a string", k);
    if (strcmp(k, "key") == 0) return set_string(&f->key, s, "key", ENVELOPE_KEY_MAX, err);
    if (strcmp(k, "correlation_id") == 0)
        return set_string(&f->correlation_id, s, "correlation_id", ENVELOPE_STR_MAX, err);
    if (strcmp(k, "user_id") == 0)
        return set_string(&f->user_id, s, "user_id", ENVELOPE_STR_MAX, err);
    if (strcmp(k, "since") == 0) return set_time(&f->since_ms, &f->has_since, s, "since", err);
    if (strcmp(k, "until") == 0) return set_time(&f->until_ms, &f->has_until, s, "until", err);
    return fail(err, false, "unknown filter member '%.*s'", clip(k, 60), k);
}

int filter_parse_json(filter *f, const json_t *obj, const char *const *allowed,
                      const char *const *extra, filter_error *err)
{
    static const char *const all[] = {"streams", "stream", "types",   "type",  "key",
                                      "correlation_id", "user_id", "since", "until", "where",
                                      NULL};
    if (!obj || json_is_null(obj)) return 0;
    if (!json_is_object(obj))
        return fail(err, false, "filter must be an object {\"streams\",\"types\",\"where\",…}");
    if (!allowed) allowed = all;
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach((json_t *)obj, k, v)
    {
        bool known = false, skip = false;
        for (int i = 0; allowed[i] && !known; i++)
            known = strcmp(k, allowed[i]) == 0;
        for (int i = 0; extra && extra[i] && !known && !skip; i++)
            skip = strcmp(k, extra[i]) == 0 || strcmp(extra[i], "*") == 0;
        if (skip) continue;
        if (!known)
            rc = fail(err, false, "unknown filter member '%.*s'", clip(k, 60), k);
        else
            rc = parse_member(f, k, v, err);
        if (rc < 0) {
            snprintf(err->member, sizeof err->member, "%s", k);
            break;
        }
    }
    if (rc < 0) filter_dispose(f);
    return rc;
}

/* ------------------------------------------------------------------ matching */

/* Compares a number's text with a JSON number: <0, 0, >0. The text is read whole:
 * PostgreSQL writes 1e300 as its 301 digits. */
static int number_cmp(const jsonscan_value *v, const json_t *want)
{
    size_t n = (size_t)(v->end - v->start);
    char small[64];
    char *tmp = n < sizeof small ? small : xmalloc(n + 1);
    memcpy(tmp, v->start, n);
    tmp[n] = '\0';
    int r = 2;
    if (json_is_integer(want) && !strpbrk(tmp, ".eE")) {
        errno = 0;
        long long a = strtoll(tmp, NULL, 10), b = (long long)json_integer_value(want);
        if (errno == 0) r = (a > b) - (a < b);
    }
    if (r == 2) {
        double a = strtod(tmp, NULL), b = json_number_value(want);
        r = (a > b) - (a < b);
    }
    if (tmp != small) free(tmp);
    return r;
}

/* A value found for a condition; a string's contents are unescaped once, and borrowed
 * when they hold no escape. */
typedef struct found {
    jsonscan_value v;
    const char *s; /* strings: the contents */
    size_t len;
    char *heap;    /* owned, when the contents did not fit `small` */
    char small[256];
} found;

/* Fills fd->s / fd->len for a string value. False if malformed. */
static bool found_string(found *fd)
{
    const char *body = fd->v.start + 1;
    size_t raw = (size_t)(fd->v.end - fd->v.start) - 2;
    if (!memchr(body, '\\', raw)) {
        fd->s = body;
        fd->len = raw;
        return true;
    }
    long n = jsonscan_string(&fd->v, fd->small, sizeof fd->small);
    if (n < 0) {
        fd->heap = xmalloc(raw + 1);
        n = jsonscan_string(&fd->v, fd->heap, raw + 1);
    }
    fd->s = fd->heap ? fd->heap : fd->small;
    fd->len = n < 0 ? 0 : (size_t)n;
    return n >= 0;
}

/* Compares a string value with a JSON string, byte by byte: <0, 0, >0. With `prefix`, 0
 * means "starts with". */
static int string_cmp(const found *fd, const json_t *want, bool prefix)
{
    size_t wl = json_string_length(want), sl = fd->len;
    const char *w = json_string_value(want);
    if (prefix) return sl >= wl && memcmp(fd->s, w, wl) == 0 ? 0 : 1;
    int c = memcmp(fd->s, w, sl < wl ? sl : wl);
    return c ? (c > 0) - (c < 0) : (sl > wl) - (sl < wl);
}

/* json_equal, but numbers by value (1 equals 1.0), as jsonb's equality inside arrays and
 * objects compares them. */
static bool equal_by_value(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) return false;
    if (json_is_array(a)) {
        size_t n = json_array_size(a);
        if (n != json_array_size(b)) return false;
        for (size_t i = 0; i < n; i++)
            if (!equal_by_value(json_array_get(a, i), json_array_get(b, i))) return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)a, k, x)
        {
            const json_t *y = json_object_get(b, k);
            if (!y || !equal_by_value(x, y)) return false;
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

static bool value_equals(const found *fd, const json_t *want)
{
    const jsonscan_value *v = &fd->v;
    switch (json_typeof(want)) {
    case JSON_STRING: return v->kind == JSONSCAN_STRING && string_cmp(fd, want, false) == 0;
    case JSON_INTEGER:
    case JSON_REAL: return v->kind == JSONSCAN_NUMBER && number_cmp(v, want) == 0;
    case JSON_TRUE: return v->kind == JSONSCAN_TRUE;
    case JSON_FALSE: return v->kind == JSONSCAN_FALSE;
    case JSON_NULL: return v->kind == JSONSCAN_NULL;
    default: break;
    }
    if ((json_is_object(want) && v->kind != JSONSCAN_OBJECT) ||
        (json_is_array(want) && v->kind != JSONSCAN_ARRAY))
        return false;
    size_t len = (size_t)(v->end - v->start);
    json_t *got = json_loadb(v->start, len, JSON_DECODE_ANY, NULL);
    /* An integer beyond json_int_t (PostgreSQL's text of 1e300) is read as a real. */
    if (!got) got = json_loadb(v->start, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    bool eq = got && equal_by_value(got, want);
    json_decref(got);
    return eq;
}

/* -1, 0, 1 for an ordered comparison of the field with the condition's value; 2 when the
 * kinds differ (the condition fails). */
static int order_cmp(const found *fd, const json_t *want)
{
    if (json_is_number(want)) return fd->v.kind == JSONSCAN_NUMBER ? number_cmp(&fd->v, want) : 2;
    return fd->v.kind == JSONSCAN_STRING ? string_cmp(fd, want, false) : 2;
}

/* The strings a committed event holds itself, by a condition's `field` number. */
static const char *direct_field(int field, const stored_event *e)
{
    switch (field) {
    case 1: return e->id;
    case 2: return e->type;
    case 3: return e->stream;
    case 4: return e->tenant;
    case 5: return e->correlation_id;
    default: return NULL;
    }
}

/* Finds the condition's value in `e`. */
static bool find_value(const filter_cond *c, const stored_event *e, found *fd)
{
    const char *direct = c->field ? direct_field(c->field, e) : NULL;
    if (direct) {
        fd->v.kind = JSONSCAN_STRING;
        fd->s = direct;
        fd->len = strlen(direct);
        return true;
    }
    if (!jsonscan_find(e->json, e->json_len, c->segs, c->n_segs, &fd->v)) return false;
    return fd->v.kind != JSONSCAN_STRING || found_string(fd);
}

static bool holds(const filter_cond *c, const found *fd)
{
    int r;
    switch (c->op) {
    case FILTER_EQ: return value_equals(fd, c->value);
    case FILTER_NE: return !value_equals(fd, c->value);
    case FILTER_IN: {
        size_t i;
        json_t *x;
        json_array_foreach(c->value, i, x) if (value_equals(fd, x)) return true;
        return false;
    }
    case FILTER_GT: return (r = order_cmp(fd, c->value)) != 2 && r > 0;
    case FILTER_GTE: return (r = order_cmp(fd, c->value)) != 2 && r >= 0;
    case FILTER_LT: return (r = order_cmp(fd, c->value)) != 2 && r < 0;
    case FILTER_LTE: return (r = order_cmp(fd, c->value)) != 2 && r <= 0;
    case FILTER_PREFIX: return fd->v.kind == JSONSCAN_STRING && string_cmp(fd, c->value, true) == 0;
    default: return false;
    }
}

static bool cond_holds(const filter_cond *c, const stored_event *e)
{
    found fd;
    fd.heap = NULL;
    bool present = find_value(c, e, &fd);
    bool ok = c->op == FILTER_EXISTS ? present == c->exists
              : c->op == FILTER_NE   ? !present || holds(c, &fd)
                                     : present && holds(c, &fd);
    free(fd.heap);
    return ok;
}

static bool opt_equals(const char *want, const char *got)
{
    return !want || (got && strcmp(want, got) == 0);
}

/* Everything but `where`. */
static bool fields_match(const filter *f, const stored_event *e)
{
    if (!f->any_tenant && strcmp(f->tenant, e->tenant) != 0) return false;
    if (f->n_streams) {
        bool any = false;
        for (int i = 0; i < f->n_streams && !any; i++)
            any = strcmp(f->streams[i], e->stream) == 0;
        if (!any) return false;
    }
    if (f->n_types && !f->any_type) {
        bool any = false;
        for (int i = 0; i < f->n_types && !any; i++)
            any = f->type_prefix[i] ? strncmp(e->type, f->types[i], strlen(f->types[i])) == 0
                                    : strcmp(e->type, f->types[i]) == 0;
        if (!any) return false;
    }
    if (!opt_equals(f->key, e->key) || !opt_equals(f->correlation_id, e->correlation_id) ||
        !opt_equals(f->user_id, e->user_id))
        return false;
    if (f->has_since && e->time_ms < f->since_ms) return false;
    if (f->has_until && e->time_ms >= f->until_ms) return false;
    return true;
}

static bool where_holds(const filter *f, const stored_event *e)
{
    for (int i = 0; i < f->n_where; i++)
        if (!cond_holds(&f->where[i], e)) return false;
    return true;
}

bool filter_matches(const filter *f, const stored_event *e)
{
    return fields_match(f, e) && where_holds(f, e);
}

bool filter_matches_memo(const filter *f, const stored_event *e, filter_memo *memo)
{
    if (!fields_match(f, e)) return false;
    if (!f->n_where) return true;
    if (memo->event != e) {
        memo->event = e;
        memo->n = 0;
    }
    for (int i = 0; i < memo->n; i++)
        if (memo->slot[i].hash == f->where_hash && strcmp(memo->slot[i].key, f->where_key) == 0)
            return memo->slot[i].holds;
    bool holds = where_holds(f, e);
    if (memo->n < FILTER_MEMO_SLOTS) {
        memo->slot[memo->n].hash = f->where_hash;
        memo->slot[memo->n].key = f->where_key;
        memo->slot[memo->n++].holds = holds;
    }
    return holds;
}

/* ------------------------------------------------------------------ SQL */

void filter_sql_init(filter_sql *q)
{
    memset(q, 0, sizeof *q);
    buf_init(&q->sql);
}

void filter_sql_dispose(filter_sql *q)
{
    buf_dispose(&q->sql);
    for (int i = 0; i < q->n_owned; i++)
        free(q->owned[i]);
    free(q->owned);
    free(q->vals);
    memset(q, 0, sizeof *q);
}

static int param_own(filter_sql *q, char *val)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 16;
        q->vals = xrealloc(q->vals, (size_t)q->cap * sizeof *q->vals);
        q->owned = xrealloc(q->owned, (size_t)q->cap * sizeof *q->owned);
    }
    q->owned[q->n_owned++] = val;
    q->vals[q->n++] = val;
    return q->n;
}

int filter_sql_param(filter_sql *q, const char *val)
{
    return param_own(q, xstrdup(val));
}

/* A PostgreSQL text[] literal of `n` strings, each quoted. */
static int array_param(filter_sql *q, char *const *items, int n)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (int i = 0; i < n; i++) {
        if (i) buf_puts(&b, ",");
        buf_puts(&b, "\"");
        for (const char *s = items[i]; *s; s++) {
            if (*s == '"' || *s == '\\') buf_puts(&b, "\\");
            buf_append(&b, s, 1);
        }
        buf_puts(&b, "\"");
    }
    buf_puts(&b, "}");
    return param_own(q, buf_steal(&b, NULL));
}

static int json_param(filter_sql *q, const json_t *v)
{
    return param_own(q, json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY));
}

/* True when PostgreSQL's `#>` would take the token for an array index (it reads one as
 * strtol does: white space, a sign, leading zeros, -1 for the last element) where a JSON
 * Pointer, and jsonscan, do not (decimal digits without a leading zero): such a token
 * names an object member only, and goes through `->`, which never indexes an array. */
static bool pg_only_index(const char *seg)
{
    char *end;
    errno = 0;
    long v = strtol(seg, &end, 10);
    if (end == seg || *end || errno || v < INT_MIN || v > INT_MAX) return false;
    size_t n = strlen(seg);
    bool pointer_index =
        n >= 1 && n <= 9 && strspn(seg, "0123456789") == n && (n == 1 || seg[0] != '0');
    return !pointer_index;
}

/* The SQL expression of the jsonb value a condition's path names: SQL NULL when absent. */
static void path_expr(buf *out, filter_sql *q, const filter_cond *c)
{
    const char *first = c->segs[0];
    if (strcmp(first, "data") == 0 || strcmp(first, "metadata") == 0) {
        if (c->n_segs == 1) {
            buf_printf(out, "coalesce(%s, 'null'::jsonb)", first);
            return;
        }
        /* Runs of tokens through one `#>`; a token #> would misread, through `->`. */
        char *e = xstrdup(first);
        for (int i = 1; i < c->n_segs;) {
            int j = i;
            while (j < c->n_segs && !pg_only_index(c->segs[j]))
                j++;
            const char *lp = i > 1 ? "(" : "", *rp = i > 1 ? ")" : "";
            char *next;
            if (j > i) {
                next = xasprintf("%s%s%s #> $%d::text[]", lp, e, rp,
                                 array_param(q, c->segs + i, j - i));
            } else {
                next = xasprintf("%s%s%s -> $%d::text", lp, e, rp, filter_sql_param(q, c->segs[i]));
                j = i + 1;
            }
            free(e);
            e = next;
            i = j;
        }
        buf_puts(out, e);
        free(e);
    } else if (strcmp(first, "time") == 0 || strcmp(first, "occurred_at") == 0) {
        /* As the stored envelope writes them (null when occurred_at was not given). */
        buf_printf(out, "coalesce(to_jsonb(to_char(%s AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')), 'null'::jsonb)", first);
    } else {
        buf_printf(out, "coalesce(to_jsonb(%s), 'null'::jsonb)", first);
    }
}

/* A containment document {"a":{"b":value}} for `data @>` (what a GIN index on the
 * column serves), or NULL when a token might index an array. */
static char *containment(const filter_cond *c)
{
    /* The whole column: `metadata @> 'null'` is not true of an absent (SQL NULL) one. */
    if (c->n_segs < 2) return NULL;
    for (int i = 1; i < c->n_segs; i++) {
        const char *s = c->segs[i];
        if (!*s || strspn(s, "0123456789") == strlen(s)) return NULL;
    }
    json_t *doc = json_incref(c->value);
    for (int i = c->n_segs - 1; i >= 1; i--) {
        json_t *o = json_object();
        json_object_set_new(o, c->segs[i], doc);
        doc = o;
    }
    char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(doc);
    return text;
}

/* A text column compared with a string directly: the b-tree indexes serve these. */
static bool text_column_op(filter_sql *q, const filter_cond *c)
{
    if (c->n_segs != 1 || !IN_LIST(c->segs[0], text_columns)) return false;
    const char *col = c->segs[0];
    buf *s = &q->sql;
    if ((c->op == FILTER_EQ || c->op == FILTER_NE || c->op == FILTER_PREFIX) &&
        json_is_string(c->value)) {
        int n = filter_sql_param(q, json_string_value(c->value));
        if (c->op == FILTER_EQ) buf_printf(s, " AND %s = $%d", col, n);
        if (c->op == FILTER_NE) buf_printf(s, " AND %s IS DISTINCT FROM $%d", col, n);
        if (c->op == FILTER_PREFIX) buf_printf(s, " AND starts_with(%s, $%d)", col, n);
        return true;
    }
    return false;
}

/* A number comparison that never casts a non-number: integers as numeric (exact),
 * reals as float8 (what the condition's double holds, as C compares them). */
static void number_sql(buf *s, filter_sql *q, const char *e, const char *op, const json_t *v)
{
    const char *ty = json_is_integer(v) ? "numeric" : "float8";
    buf_printf(s, "CASE WHEN jsonb_typeof(%s) = 'number' THEN (%s)::%s %s $%d::%s ELSE false END",
               e, e, ty, op, json_param(q, v), ty);
}

/* The SQL truth of "the value at `e` equals v" (NULL when absent). */
static void eq_sql(buf *s, filter_sql *q, const char *e, const json_t *v)
{
    if (json_is_number(v))
        number_sql(s, q, e, "=", v);
    else
        buf_printf(s, "(%s) = $%d::jsonb", e, json_param(q, v));
}

static void cond_sql(filter_sql *q, const filter_cond *c)
{
    if (text_column_op(q, c)) return;
    buf e;
    buf_init(&e);
    path_expr(&e, q, c);
    buf *s = &q->sql;
    static const char *const cmp[] = {[FILTER_GT] = ">", [FILTER_GTE] = ">=", [FILTER_LT] = "<",
                                      [FILTER_LTE] = "<="};
    const json_t *v = c->value;
    switch (c->op) {
    case FILTER_EQ: {
        buf_puts(s, " AND ");
        eq_sql(s, q, e.data, v);
        bool doc_col = strcmp(c->segs[0], "data") == 0 || strcmp(c->segs[0], "metadata") == 0;
        char *doc = doc_col && !json_is_real(v) ? containment(c) : NULL;
        if (doc) buf_printf(s, " AND %s @> $%d::jsonb", c->segs[0], param_own(q, doc));
        break;
    }
    case FILTER_NE:
        buf_puts(s, " AND NOT coalesce(");
        eq_sql(s, q, e.data, v);
        buf_puts(s, ", false)");
        break;
    case FILTER_IN: {
        buf_puts(s, " AND (");
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (i) buf_puts(s, " OR ");
            eq_sql(s, q, e.data, x);
        }
        buf_puts(s, ")");
        break;
    }
    case FILTER_GT:
    case FILTER_GTE:
    case FILTER_LT:
    case FILTER_LTE:
        buf_puts(s, " AND ");
        if (json_is_number(v))
            number_sql(s, q, e.data, cmp[c->op], v);
        else
            buf_printf(s,
                       "CASE WHEN jsonb_typeof(%s) = 'string' THEN ((%s) #>> '{}') COLLATE \"C\" "
                       "%s $%d COLLATE \"C\" ELSE false END",
                       e.data, e.data, cmp[c->op], filter_sql_param(q, json_string_value(v)));
        break;
    case FILTER_PREFIX:
        buf_printf(s,
                   " AND CASE WHEN jsonb_typeof(%s) = 'string' THEN starts_with((%s) #>> '{}', "
                   "$%d) ELSE false END",
                   e.data, e.data, filter_sql_param(q, json_string_value(v)));
        break;
    case FILTER_EXISTS: buf_printf(s, " AND (%s) IS %sNULL", e.data, c->exists ? "NOT " : ""); break;
    }
    buf_dispose(&e);
}

static void types_sql(filter_sql *q, const filter *f)
{
    char *exact[FILTER_MAX_TYPES];
    int n_exact = 0;
    for (int i = 0; i < f->n_types; i++)
        if (!f->type_prefix[i]) exact[n_exact++] = f->types[i];
    /* Each prefix is its own starts_with(type, $n): with the C collation PostgreSQL turns it
     * into a range on events_tenant_type. */
    buf_puts(&q->sql, " AND (");
    bool first = true;
    if (n_exact) {
        buf_printf(&q->sql, "type = ANY($%d::text[])", array_param(q, exact, n_exact));
        first = false;
    }
    for (int i = 0; i < f->n_types; i++) {
        if (!f->type_prefix[i]) continue;
        buf_printf(&q->sql, "%sstarts_with(type, $%d)", first ? "" : " OR ",
                   filter_sql_param(q, f->types[i]));
        first = false;
    }
    buf_puts(&q->sql, ")");
}

void filter_sql_where(filter_sql *q, const filter *f)
{
    buf *s = &q->sql;
    if (!f->any_tenant) buf_printf(s, " AND tenant_id = $%d", filter_sql_param(q, f->tenant));
    if (f->n_streams == 1) buf_printf(s, " AND stream = $%d", filter_sql_param(q, f->streams[0]));
    if (f->n_streams > 1)
        buf_printf(s, " AND stream = ANY($%d::text[])", array_param(q, f->streams, f->n_streams));
    if (f->n_types && !f->any_type) types_sql(q, f);
    if (f->key) buf_printf(s, " AND key = $%d", filter_sql_param(q, f->key));
    if (f->correlation_id)
        buf_printf(s, " AND correlation_id = $%d", filter_sql_param(q, f->correlation_id));
    if (f->user_id) buf_printf(s, " AND user_id = $%d", filter_sql_param(q, f->user_id));
    char num[24];
    if (f->has_since) {
        snprintf(num, sizeof num, "%lld", f->since_ms);
        buf_printf(s, " AND time >= 'epoch'::timestamptz + $%d::bigint * interval '1 ms'",
                   filter_sql_param(q, num));
    }
    if (f->has_until) {
        snprintf(num, sizeof num, "%lld", f->until_ms);
        buf_printf(s, " AND time < 'epoch'::timestamptz + $%d::bigint * interval '1 ms'",
                   filter_sql_param(q, num));
    }
    for (int i = 0; i < f->n_where; i++)
        cond_sql(q, &f->where[i]);
}
