/*
 * validator_compile.c — JSON Schema document → compiled node graph
 * (schema_compile, schema_free; the graph is described in validator_internal.h).
 *
 * DESIGN
 * Compiling is two passes over a private deep copy of the document.
 *
 * 1. The walk visits every subschema in a schema position (properties/x,
 *    allOf/0, $defs/y, ...) depth-first, at most SCHEMA_MAX_SCHEMA_DEPTH deep.
 *    It keeps the base URI ($id) of each, registers resources ($id), anchors
 *    ($anchor, $dynamicAnchor), checks every keyword's value, refuses keywords
 *    it does not implement, and builds each node's kw array. A `$ref` is
 *    resolved to an absolute URI against the current base and queued.
 * 2. The queue is drained: each URI is looked up as resource + JSON Pointer or
 *    resource + anchor, and the kw gets the target node. Nodes are memoised by
 *    the json_t they came from, so a cycle ($ref: "#") simply points back at a
 *    node being built. A pointer into a non-schema location (say
 *    "#/examples/0") compiles that value on demand. A URI naming the 2020-12
 *    meta-schema or one of its vocabularies loads the embedded copy
 *    (validator_metaschema.c); any other unknown document is a remote
 *    reference: SCHEMA_UNSUPPORTED.
 *
 * A `$dynamicRef` whose static target carries a matching `$dynamicAnchor`
 * ("bookending") keeps the anchor name so the evaluator can search the
 * dynamic scope; otherwise it is compiled as a plain `$ref`.
 *
 * Errors go to the caller's array as {"path", "keyword", "message"}; the walk
 * continues after an error so that one registration reports them all.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "problem.h"
#include "validator_internal.h"

snode schema_node_true = {.kind = SN_TRUE};
snode schema_node_false = {.kind = SN_FALSE};

/* The base URI of a document without "$id". References relative to it that
 * leave the document resolve to URIs no resource has: remote, unsupported. */
#define DEFAULT_BASE "urn:sluice:schema"
#define DIALECT_2020_12 "https://json-schema.org/draft/2020-12/schema"
#define MAX_COMPILE_ERRORS 100
/* Whole-document JSON nesting bound (subschema nesting is checked separately). */
#define MAX_DOC_DEPTH (4 * SCHEMA_MAX_SCHEMA_DEPTH)

const char *const schema_supported_keywords[] = {
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$comment",
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "items",
    "prefixItems",
    "contains",
    "minContains",
    "maxContains",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
    "contentSchema",
    NULL,
};

/* ---------------------------------------------------------- pointer map */

typedef struct ptrmap {
    const void **keys; /* owned; NULL = empty slot */
    void **vals;       /* owned */
    size_t cap;        /* power of two */
    size_t n;
} ptrmap;

static size_t ptr_slot(const void *p, size_t cap)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 7) & (cap - 1);
}

static void *ptrmap_get(const ptrmap *m, const void *k)
{
    if (!m->cap) return NULL;
    for (size_t i = ptr_slot(k, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return NULL;
        if (m->keys[i] == k) return m->vals[i];
    }
}

static void ptrmap_put(ptrmap *m, const void *k, void *v)
{
    if ((m->n + 1) * 2 > m->cap) {
        ptrmap old = *m;
        m->cap = old.cap ? old.cap * 2 : 64;
        m->keys = xcalloc(m->cap, sizeof *m->keys);
        m->vals = xcalloc(m->cap, sizeof *m->vals);
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.keys[i]) ptrmap_put(m, old.keys[i], old.vals[i]);
        free(old.keys);
        free(old.vals);
    }
    size_t i = ptr_slot(k, m->cap);
    while (m->keys[i] && m->keys[i] != k)
        i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->n++;
    m->keys[i] = k;
    m->vals[i] = v;
}

static void ptrmap_dispose(ptrmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ compile state */

typedef struct pending_ref {
    snode *owner;    /* the node whose keyword to patch */
    uint32_t kwi;    /* the $ref / $dynamicRef keyword's index in owner->kws */
    const char *ref; /* the reference as written (borrowed from the document) */
    bool has_base;   /* some $id gave the base URI it was resolved against */
    char *uri;       /* absolute target URI (owned) */
    char *path;      /* schema path of the keyword, for errors (owned) */
} pending_ref;

typedef struct cstate {
    schema *s;
    json_t *errors;    /* caller's array, or NULL */
    int nerrors;       /* entries appended to errors */
    bool invalid;      /* some SCHEMA_INVALID problem */
    bool unsupported;  /* some SCHEMA_UNSUPPORTED problem */
    bool trusted;      /* walking an embedded meta-schema: $vocabulary allowed */
    ptrmap nodes;      /* json_t* → snode* */
    json_t *resources; /* uri → integer index into s->res */
    json_t *anchors;   /* "uri#name" → integer (json_t* of the anchored schema) */
    pending_ref *pend; /* owned */
    size_t npend, cappend;
} cstate;

static void c_error(cstate *st, schema_status kind, const char *path, const char *keyword,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void c_error(cstate *st, schema_status kind, const char *path, const char *keyword,
                    const char *fmt, ...)
{
    if (kind == SCHEMA_UNSUPPORTED)
        st->unsupported = true;
    else
        st->invalid = true;
    if (!st->errors || st->nerrors >= MAX_COMPILE_ERRORS) return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0) abort();
    va_end(ap);
    json_array_append_new(st->errors, problem_error(-1, path, keyword, msg));
    st->nerrors++;
    free(msg);
}

/* path + "/" + escaped token (caller frees) */
static char *path_join(const char *path, const char *token)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, path);
    buf_puts(&b, "/");
    for (const char *p = token; *p; p++) {
        if (*p == '~')
            buf_puts(&b, "~0");
        else if (*p == '/')
            buf_puts(&b, "~1");
        else
            buf_append(&b, p, 1);
    }
    return buf_steal(&b, NULL);
}

static char *path_index(const char *path, size_t i)
{
    return xasprintf("%s/%zu", path, i);
}

static resource *resource_for(cstate *st, const char *uri)
{
    json_t *i = json_object_get(st->resources, uri);
    return i ? st->s->res[json_integer_value(i)] : NULL;
}

static resource *resource_add(cstate *st, const char *uri, json_t *root, const char *path)
{
    schema *s = st->s;
    resource *r = xcalloc(1, sizeof *r);
    r->uri = xstrdup(uri);
    r->root = root;
    r->path = xstrdup(path);
    s->res = xrealloc(s->res, (s->nres + 1) * sizeof *s->res);
    s->res[s->nres] = r;
    json_object_set_new(st->resources, uri, json_integer((json_int_t)s->nres));
    s->nres++;
    return r;
}

static void anchor_add(cstate *st, const resource *r, const char *name, json_t *target,
                       const char *path, const char *keyword)
{
    char *key = xasprintf("%s#%s", r->uri, name);
    json_t *have = json_object_get(st->anchors, key);
    if (have && (json_t *)(intptr_t)json_integer_value(have) != target)
        c_error(st, SCHEMA_INVALID, path, keyword, "anchor \"%s\" is defined twice in resource %s",
                name, r->uri);
    else
        json_object_set_new(st->anchors, key, json_integer((json_int_t)(intptr_t)target));
    free(key);
}

static bool anchor_name_ok(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.' || *s == '_'))
            return false;
    return true;
}

/* ------------------------------------------------------------ kw vector */

typedef struct kwvec {
    kw *v;
    size_t n, cap;
} kwvec;

static kw *kw_push(kwvec *kv, kw_kind kind, uint8_t applies, const char *name)
{
    if (kv->n == kv->cap) {
        kv->cap = kv->cap ? kv->cap * 2 : 8;
        kv->v = xrealloc(kv->v, kv->cap * sizeof *kv->v);
    }
    kw *k = &kv->v[kv->n++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->applies = applies;
    k->name = name;
    return k;
}

/* ------------------------------------------------------------ value checks */

/* A non-negative integer (1.0 counts): stores it (saturating) in *out. */
static bool nonneg_int(json_t *v, size_t *out)
{
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) return false;
        *out = (size_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0) || floor(d) != d) return false;
        *out = d >= (double)SIZE_MAX ? SIZE_MAX : (size_t)d;
        return true;
    }
    return false;
}

/* An array of unique strings, into *out (borrowed strings). */
static bool string_set(json_t *v, strlist *out)
{
    if (!json_is_array(v)) return false;
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e)) return false;
        for (size_t j = 0; j < i; j++)
            if (json_equal(e, json_array_get(v, j))) return false;
    }
    out->n = n;
    out->s = xcalloc(n ? n : 1, sizeof *out->s);
    out->len = xcalloc(n ? n : 1, sizeof *out->len);
    for (size_t i = 0; i < n; i++) {
        out->s[i] = json_string_value(json_array_get(v, i));
        out->len[i] = json_string_length(json_array_get(v, i));
    }
    return true;
}

static unsigned type_bit(const char *name)
{
    static const struct {
        const char *name;
        unsigned bits;
    } t[] = {
        {"null", T_NULL},  {"boolean", T_BOOL}, {"object", T_OBJ},  {"array", T_ARR},
        {"number", T_NUM}, {"string", T_STR},   {"integer", T_INT},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(name, t[i].name) == 0) return t[i].bits;
    return 0;
}

/* ------------------------------------------------------------------ walk */

static snode *c_schema(cstate *st, json_t *js, const resource *res, const char *path, int depth);

static bool is_schema_value(json_t *v)
{
    return json_is_object(v) || json_is_boolean(v);
}

/* A single subschema under `key`. */
static snode *c_sub(cstate *st, json_t *v, const resource *res, const char *path, const char *key,
                    int depth)
{
    char *p = path_join(path, key);
    snode *n = c_schema(st, v, res, p, depth + 1);
    free(p);
    return n;
}

/* A non-empty array of subschemas under `key`. */
static snode **c_sub_array(cstate *st, json_t *v, const resource *res, const char *path,
                           const char *key, int depth, size_t *n)
{
    char *p = path_join(path, key);
    snode **out = NULL;
    *n = 0;
    if (!json_is_array(v) || json_array_size(v) == 0) {
        c_error(st, SCHEMA_INVALID, p, key, "%s must be a non-empty array of schemas", key);
    } else {
        *n = json_array_size(v);
        out = xcalloc(*n, sizeof *out);
        for (size_t i = 0; i < *n; i++) {
            char *pi = path_index(p, i);
            out[i] = c_schema(st, json_array_get(v, i), res, pi, depth + 1);
            free(pi);
        }
    }
    free(p);
    return out;
}

static bool c_check_object(cstate *st, json_t *v, const char *path, const char *key)
{
    if (json_is_object(v)) return true;
    char *p = path_join(path, key);
    c_error(st, SCHEMA_INVALID, p, key, "%s must be an object", key);
    free(p);
    return false;
}

static void queue_ref(cstate *st, snode *owner, size_t kwi, const resource *res, const char *ref,
                      const char *path)
{
    if (st->npend == st->cappend) {
        st->cappend = st->cappend ? st->cappend * 2 : 16;
        st->pend = xrealloc(st->pend, st->cappend * sizeof *st->pend);
    }
    pending_ref *p = &st->pend[st->npend++];
    p->owner = owner;
    p->kwi = (uint32_t)kwi;
    p->ref = ref;
    p->has_base = strcmp(res->uri, DEFAULT_BASE) != 0;
    p->uri = validator_uri_resolve(res->uri, ref);
    p->path = xstrdup(path);
}

/* What 2020-12 says instead of an earlier draft's keyword, or NULL. */
static const char *legacy_hint(const char *key)
{
    static const char *const hints[][2] = {
        {"definitions", "$defs"},
        {"dependencies", "dependentRequired (lists of names) or dependentSchemas (schemas)"},
        {"additionalItems", "items (with prefixItems for the leading items)"},
        {"$recursiveRef", "$dynamicRef"},
        {"$recursiveAnchor", "$dynamicAnchor"},
        {"id", "$id"},
    };
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
        if (strcmp(key, hints[i][0]) == 0) return hints[i][1];
    return NULL;
}

static bool known_keyword(const char *key)
{
    for (const char *const *k = schema_supported_keywords; *k; k++)
        if (strcmp(*k, key) == 0) return true;
    return false;
}

/* Annotation keywords: only their value's shape is checked. */
static void c_annotations(cstate *st, json_t *js, const char *path)
{
    static const char *const strings[] = {"$comment", "title", "description", "contentMediaType",
                                          "contentEncoding"};
    static const char *const bools[] = {"deprecated", "readOnly", "writeOnly"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        json_t *v = json_object_get(js, strings[i]);
        if (v && !json_is_string(v)) {
            char *p = path_join(path, strings[i]);
            c_error(st, SCHEMA_INVALID, p, strings[i], "%s must be a string", strings[i]);
            free(p);
        }
    }
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        json_t *v = json_object_get(js, bools[i]);
        if (v && !json_is_boolean(v)) {
            char *p = path_join(path, bools[i]);
            c_error(st, SCHEMA_INVALID, p, bools[i], "%s must be a boolean", bools[i]);
            free(p);
        }
    }
    json_t *v = json_object_get(js, "examples");
    if (v && !json_is_array(v)) {
        char *p = path_join(path, "examples");
        c_error(st, SCHEMA_INVALID, p, "examples", "examples must be an array");
        free(p);
    }
    v = json_object_get(js, "contentSchema");
    if (v && !is_schema_value(v)) {
        char *p = path_join(path, "contentSchema");
        c_error(st, SCHEMA_INVALID, p, "contentSchema", "contentSchema must be a schema");
        free(p);
    }
}

/* $schema, $id, $anchor, $dynamicAnchor: may switch `*res` to a new resource. */
static void c_identifiers(cstate *st, json_t *js, snode *n, const resource **res, const char *path)
{
    json_t *v = json_object_get(js, "$schema");
    if (v) {
        const char *d = json_string_value(v);
        if (!d) {
            char *p = path_join(path, "$schema");
            c_error(st, SCHEMA_INVALID, p, "$schema", "$schema must be a URI string");
            free(p);
        } else if (strcmp(d, DIALECT_2020_12) != 0 && strcmp(d, DIALECT_2020_12 "#") != 0) {
            char *p = path_join(path, "$schema");
            c_error(st, SCHEMA_UNSUPPORTED, p, "$schema",
                    "dialect \"%s\" is not supported: Sluice implements JSON Schema 2020-12 "
                    "(" DIALECT_2020_12 ")",
                    d);
            free(p);
        }
    }
    v = json_object_get(js, "$id");
    if (v) {
        char *p = path_join(path, "$id");
        const char *id = json_string_value(v);
        if (!id) {
            c_error(st, SCHEMA_INVALID, p, "$id", "$id must be a URI-reference string");
        } else {
            char *abs = validator_uri_resolve((*res)->uri, id), *frag = NULL;
            char *base = validator_uri_split(abs, &frag);
            if (frag && *frag) {
                c_error(st, SCHEMA_INVALID, p, "$id",
                        "$id must not contain a fragment (use $anchor)");
            } else if (!validator_uri_is_absolute(base)) {
                c_error(st, SCHEMA_INVALID, p, "$id", "$id does not resolve to an absolute URI");
            } else {
                resource *have = resource_for(st, base);
                if (have && have->root != js) {
                    c_error(st, SCHEMA_INVALID, p, "$id", "$id \"%s\" identifies two schemas",
                            base);
                } else {
                    *res = have ? have : resource_add(st, base, js, path);
                }
            }
            free(abs);
            free(frag);
            free(base);
        }
        free(p);
    }
    n->res = *res;
    v = json_object_get(js, "$anchor");
    if (v) {
        char *p = path_join(path, "$anchor");
        const char *a = json_string_value(v);
        if (!a || !anchor_name_ok(a))
            c_error(st, SCHEMA_INVALID, p, "$anchor",
                    "$anchor must match ^[A-Za-z_][-A-Za-z0-9._]*$");
        else
            anchor_add(st, *res, a, js, p, "$anchor");
        free(p);
    }
    v = json_object_get(js, "$dynamicAnchor");
    if (v) {
        char *p = path_join(path, "$dynamicAnchor");
        const char *a = json_string_value(v);
        if (!a || !anchor_name_ok(a)) {
            c_error(st, SCHEMA_INVALID, p, "$dynamicAnchor",
                    "$dynamicAnchor must match ^[A-Za-z_][-A-Za-z0-9._]*$");
        } else {
            anchor_add(st, *res, a, js, p, "$dynamicAnchor");
            resource *r = (resource *)*res;
            r->dyn = xrealloc(r->dyn, (r->ndyn + 1) * sizeof *r->dyn);
            r->dyn[r->ndyn].name = a;
            r->dyn[r->ndyn].node = n;
            r->ndyn++;
            n->dyn_anchor = a;
        }
        free(p);
    }
}

/* `v` as JSON text of at most `max` bytes for a message, into b. */
static void show_value(buf *b, json_t *v, size_t max)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    size_t n = s ? strlen(s) : 0;
    if (n > max) {
        n = max - 3;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* whole code points */
        buf_append(b, s, n);
        buf_puts(b, "...");
    } else if (s) {
        buf_append(b, s, n);
    }
    free(s);
}

/* "expected string or null" for a `type` kw. */
static char *type_message(unsigned types)
{
    static const struct {
        unsigned bit;
        const char *name;
    } order[] = {{T_STR, "string"}, {T_REAL, "number"},  {T_INT, "integer"}, {T_OBJ, "object"},
                 {T_ARR, "array"},  {T_BOOL, "boolean"}, {T_NULL, "null"}};
    buf b;
    buf_init(&b);
    buf_puts(&b, "expected ");
    bool first = true;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (!(types & order[i].bit)) continue;
        if (order[i].bit == T_INT && (types & T_REAL)) continue; /* "number" says it */
        buf_printf(&b, "%s%s", first ? "" : " or ", order[i].name);
        first = false;
    }
    return buf_steal(&b, NULL);
}

static void c_type_and_values(cstate *st, json_t *js, kwvec *kv, const char *path)
{
    json_t *v = json_object_get(js, "type");
    if (v) {
        unsigned bits = 0;
        bool ok = true;
        if (json_is_string(v)) {
            ok = (bits = type_bit(json_string_value(v))) != 0;
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            for (size_t i = 0; i < json_array_size(v) && ok; i++) {
                json_t *e = json_array_get(v, i);
                unsigned b = json_is_string(e) ? type_bit(json_string_value(e)) : 0;
                ok = b != 0 && (bits & b) != b;
                if (b == T_NUM && (bits & T_INT)) ok = true; /* ["integer","number"] */
                bits |= b;
            }
        } else {
            ok = false;
        }
        if (!ok) {
            char *p = path_join(path, "type");
            c_error(st, SCHEMA_INVALID, p, "type",
                    "type must be one of null, boolean, object, array, number, string, integer, or "
                    "a non-empty array of them without repeats");
            free(p);
        } else {
            kw *k = kw_push(kv, KW_TYPE, T_ANY, "type");
            k->u.types = bits;
            k->msg = type_message(bits);
        }
    }
    v = json_object_get(js, "const");
    if (v) {
        kw *k = kw_push(kv, KW_CONST, T_ANY, "const");
        k->u.value = v;
        buf b;
        buf_init(&b);
        buf_puts(&b, "must be exactly ");
        show_value(&b, v, 120);
        k->msg = buf_steal(&b, NULL);
    }
    v = json_object_get(js, "enum");
    if (v) {
        if (!json_is_array(v)) {
            char *p = path_join(path, "enum");
            c_error(st, SCHEMA_INVALID, p, "enum", "enum must be an array");
            free(p);
        } else {
            kw *k = kw_push(kv, KW_ENUM, T_ANY, "enum");
            k->u.en.n = json_array_size(v);
            k->u.en.v = xcalloc(k->u.en.n ? k->u.en.n : 1, sizeof *k->u.en.v);
            for (size_t i = 0; i < k->u.en.n; i++)
                k->u.en.v[i] = json_array_get(v, i);
            buf b;
            buf_init(&b);
            buf_puts(&b, k->u.en.n ? "must be one of " : "no value is allowed (the enum is empty)");
            for (size_t i = 0; i < k->u.en.n; i++) {
                if (b.len > 200) {
                    buf_printf(&b, ", ... (%zu values)", k->u.en.n);
                    break;
                }
                if (i) buf_puts(&b, ", ");
                show_value(&b, k->u.en.v[i], 60);
            }
            k->msg = buf_steal(&b, NULL);
        }
    }
}

static void c_count(cstate *st, json_t *js, kwvec *kv, const char *path, const char *key,
                    kw_kind kind, uint8_t applies)
{
    json_t *v = json_object_get(js, key);
    if (!v) return;
    size_t n;
    if (!nonneg_int(v, &n)) {
        char *p = path_join(path, key);
        c_error(st, SCHEMA_INVALID, p, key, "%s must be a non-negative integer", key);
        free(p);
        return;
    }
    kw_push(kv, kind, applies, key)->u.count = n;
}

static void c_strings(cstate *st, json_t *js, kwvec *kv, const char *path)
{
    c_count(st, js, kv, path, "minLength", KW_MIN_LENGTH, T_STR);
    c_count(st, js, kv, path, "maxLength", KW_MAX_LENGTH, T_STR);
    json_t *v = json_object_get(js, "pattern");
    if (v) {
        char *p = path_join(path, "pattern");
        char *err = NULL;
        bool unsupported = false;
        regex *re = json_is_string(v)
                        ? regex_new(json_string_value(v), json_string_length(v), &err, &unsupported)
                        : NULL;
        if (!json_is_string(v))
            c_error(st, SCHEMA_INVALID, p, "pattern", "pattern must be a string");
        else if (!re)
            c_error(st, unsupported ? SCHEMA_UNSUPPORTED : SCHEMA_INVALID, p, "pattern",
                    "pattern %s: %s",
                    unsupported ? "cannot be run by Sluice's regex engine (PCRE2)"
                                : "is not a valid ECMA-262 regular expression",
                    err);
        else
            kw_push(kv, KW_PATTERN, T_STR, "pattern")->u.re = re;
        free(err);
        free(p);
    }
    v = json_object_get(js, "format");
    if (v) {
        char *p = path_join(path, "format");
        format_fn fn = json_is_string(v) ? format_lookup(json_string_value(v)) : NULL;
        if (!json_is_string(v)) {
            c_error(st, SCHEMA_INVALID, p, "format", "format must be a string");
        } else if (!fn) {
            buf names;
            buf_init(&names);
            for (const char *const *f = format_names; *f; f++)
                buf_printf(&names, "%s%s", f == format_names ? "" : ", ", *f);
            c_error(st, SCHEMA_UNSUPPORTED, p, "format",
                    "format \"%s\" is not supported (Sluice asserts %s)", json_string_value(v),
                    names.data);
            buf_dispose(&names);
        } else {
            kw *k = kw_push(kv, KW_FORMAT, T_STR, "format");
            k->u.fmt.fn = fn;
            k->u.fmt.name = json_string_value(v);
            /* "regex" compiles the value (about 130 ns a byte); the others read it once
             * (at most about 8 ns a byte: a step's worth) */
            k->u.fmt.steps_per_byte = strcmp(k->u.fmt.name, "regex") == 0 ? 16 : 1;
            k->msg =
                xasprintf("must be a valid %s (%s)", k->u.fmt.name, format_hint(k->u.fmt.name));
        }
        free(p);
    }
}

static void c_numbers(cstate *st, json_t *js, kwvec *kv, const char *path)
{
    static const struct {
        const char *key;
        kw_kind kind;
    } lim[] = {
        {"minimum", KW_MINIMUM},
        {"maximum", KW_MAXIMUM},
        {"exclusiveMinimum", KW_EXCL_MINIMUM},
        {"exclusiveMaximum", KW_EXCL_MAXIMUM},
        {"multipleOf", KW_MULTIPLE_OF},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        json_t *v = json_object_get(js, lim[i].key);
        if (!v) continue;
        bool ok = json_is_number(v);
        if (ok && lim[i].kind == KW_MULTIPLE_OF) ok = json_number_value(v) > 0;
        if (!ok) {
            char *p = path_join(path, lim[i].key);
            c_error(st, SCHEMA_INVALID, p, lim[i].key, "%s must be a %snumber", lim[i].key,
                    lim[i].kind == KW_MULTIPLE_OF ? "strictly positive " : "");
            free(p);
            continue;
        }
        kw_push(kv, lim[i].kind, T_NUM, lim[i].key)->u.value = v;
    }
}

static void props_index(props_kw *pk)
{
    uint32_t size = 8;
    while (size < pk->nprops * 2)
        size *= 2;
    pk->mask = size - 1;
    pk->slots = xcalloc(size, sizeof *pk->slots);
    for (size_t i = 0; i < pk->nprops; i++) {
        uint32_t j = pk->props[i].hash & pk->mask;
        while (pk->slots[j])
            j = (j + 1) & pk->mask;
        pk->slots[j] = (uint32_t)i + 1;
    }
}

static void c_objects(cstate *st, json_t *js, kwvec *kv, const resource *res, const char *path,
                      int depth)
{
    json_t *v = json_object_get(js, "required");
    strlist req = {0};
    bool has_req = false;
    if (v) {
        if (!string_set(v, &req)) {
            char *p = path_join(path, "required");
            c_error(st, SCHEMA_INVALID, p, "required",
                    "required must be an array of unique strings");
            free(p);
        } else {
            has_req = true;
        }
    }
    c_count(st, js, kv, path, "minProperties", KW_MIN_PROPERTIES, T_OBJ);
    c_count(st, js, kv, path, "maxProperties", KW_MAX_PROPERTIES, T_OBJ);
    v = json_object_get(js, "dependentRequired");
    if (v && c_check_object(st, v, path, "dependentRequired")) {
        kw *k = kw_push(kv, KW_DEPENDENT_REQUIRED, T_OBJ, "dependentRequired");
        k->u.depreq.e = xcalloc(json_object_size(v) + 1, sizeof *k->u.depreq.e);
        const char *key;
        size_t klen;
        json_t *e;
        json_object_keylen_foreach(v, key, klen, e)
        {
            dep_req *d = &k->u.depreq.e[k->u.depreq.n];
            if (!string_set(e, &d->deps)) {
                char *p0 = path_join(path, "dependentRequired"), *p = path_join(p0, key);
                c_error(st, SCHEMA_INVALID, p, "dependentRequired",
                        "dependentRequired values must be arrays of unique strings");
                free(p);
                free(p0);
                continue;
            }
            d->name = key;
            d->len = klen;
            k->u.depreq.n++;
        }
    }
    json_t *pr = json_object_get(js, "properties"), *pp = json_object_get(js, "patternProperties"),
           *ap = json_object_get(js, "additionalProperties");
    if (pr && !c_check_object(st, pr, path, "properties")) pr = NULL;
    if (pp && !c_check_object(st, pp, path, "patternProperties")) pp = NULL;
    if (!pr && !pp && !ap) {
        if (has_req) kw_push(kv, KW_REQUIRED, T_OBJ, "required")->u.req = req;
    } else {
        props_kw *pk = xcalloc(1, sizeof *pk);
        const char *key;
        size_t klen;
        json_t *e;
        pk->props = xcalloc((pr ? json_object_size(pr) : 0) + req.n + 1, sizeof *pk->props);
        if (pr) {
            char *p0 = path_join(path, "properties");
            json_object_keylen_foreach(pr, key, klen, e)
            {
                prop_ent *pe = &pk->props[pk->nprops++];
                pe->name = key;
                pe->len = klen;
                pe->hash = prop_hash(key, klen);
                pe->sub = c_sub(st, e, res, p0, key, depth);
            }
            free(p0);
        }
        /* required names join the table; those not in properties have no schema */
        for (size_t i = 0; i < req.n; i++) {
            prop_ent *pe = NULL;
            for (size_t j = 0; j < pk->nprops && !pe; j++)
                if (pk->props[j].len == req.len[i] &&
                    memcmp(pk->props[j].name, req.s[i], req.len[i]) == 0)
                    pe = &pk->props[j];
            if (!pe) {
                pe = &pk->props[pk->nprops++];
                pe->name = req.s[i];
                pe->len = req.len[i];
                pe->hash = prop_hash(req.s[i], req.len[i]);
            }
            pe->required = true;
        }
        pk->req = req;
        props_index(pk);
        if (pp) {
            char *p0 = path_join(path, "patternProperties");
            pk->pats = xcalloc(json_object_size(pp) + 1, sizeof *pk->pats);
            json_object_keylen_foreach(pp, key, klen, e)
            {
                char *err = NULL, *p = path_join(p0, key);
                bool unsupported = false;
                regex *re = regex_new(key, klen, &err, &unsupported);
                if (!re) {
                    c_error(st, unsupported ? SCHEMA_UNSUPPORTED : SCHEMA_INVALID, p,
                            "patternProperties", "patternProperties name %s: %s",
                            unsupported ? "cannot be run by Sluice's regex engine (PCRE2)"
                                        : "is not a valid ECMA-262 regular expression",
                            err);
                } else {
                    pattern_ent *pe = &pk->pats[pk->npats++];
                    pe->re = re;
                    pe->sub = c_schema(st, e, res, p, depth + 1);
                }
                free(err);
                free(p);
            }
            free(p0);
        }
        if (ap) pk->additional = c_sub(st, ap, res, path, "additionalProperties", depth);
        const char *name = pr ? "properties" : pp ? "patternProperties" : "additionalProperties";
        kw_push(kv, KW_PROPS, T_OBJ, name)->u.props = pk;
    }
    v = json_object_get(js, "propertyNames");
    if (v)
        kw_push(kv, KW_PROPERTY_NAMES, T_OBJ, "propertyNames")->u.sub =
            c_sub(st, v, res, path, "propertyNames", depth);
}

static void c_arrays(cstate *st, json_t *js, kwvec *kv, const resource *res, const char *path,
                     int depth)
{
    c_count(st, js, kv, path, "minItems", KW_MIN_ITEMS, T_ARR);
    c_count(st, js, kv, path, "maxItems", KW_MAX_ITEMS, T_ARR);
    json_t *v = json_object_get(js, "uniqueItems");
    if (v) {
        if (!json_is_boolean(v)) {
            char *p = path_join(path, "uniqueItems");
            c_error(st, SCHEMA_INVALID, p, "uniqueItems", "uniqueItems must be a boolean");
            free(p);
        } else if (json_is_true(v)) {
            kw_push(kv, KW_UNIQUE_ITEMS, T_ARR, "uniqueItems");
        }
    }
    json_t *pi = json_object_get(js, "prefixItems"), *it = json_object_get(js, "items");
    if (it && json_is_array(it)) {
        char *p = path_join(path, "items");
        c_error(st, SCHEMA_INVALID, p, "items",
                "in 2020-12 items takes one schema; tuples use prefixItems");
        free(p);
        it = NULL;
    }
    if (pi || it) {
        kw *k = kw_push(kv, KW_ITEMS, T_ARR, pi ? "prefixItems" : "items");
        if (pi)
            k->u.items.prefix =
                c_sub_array(st, pi, res, path, "prefixItems", depth, &k->u.items.nprefix);
        if (it) k->u.items.rest = c_sub(st, it, res, path, "items", depth);
    }
    v = json_object_get(js, "contains");
    size_t min = 1, max = SIZE_MAX;
    json_t *mn = json_object_get(js, "minContains"), *mx = json_object_get(js, "maxContains");
    if (mn && !nonneg_int(mn, &min)) {
        char *p = path_join(path, "minContains");
        c_error(st, SCHEMA_INVALID, p, "minContains", "minContains must be a non-negative integer");
        free(p);
    }
    if (mx && !nonneg_int(mx, &max)) {
        char *p = path_join(path, "maxContains");
        c_error(st, SCHEMA_INVALID, p, "maxContains", "maxContains must be a non-negative integer");
        free(p);
    }
    if (v) {
        kw *k = kw_push(kv, KW_CONTAINS, T_ARR, "contains");
        k->u.contains.sub = c_sub(st, v, res, path, "contains", depth);
        k->u.contains.min = min;
        k->u.contains.max = max;
    }
}

static void c_applicators(cstate *st, json_t *js, snode *n, kwvec *kv, const resource *res,
                          const char *path, int depth)
{
    static const char *const refs[] = {"$ref", "$dynamicRef"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(js, refs[i]);
        if (!v) continue;
        char *p = path_join(path, refs[i]);
        if (!json_is_string(v)) {
            c_error(st, SCHEMA_INVALID, p, refs[i], "%s must be a URI-reference string", refs[i]);
        } else {
            (void)kw_push(kv, i ? KW_DYNAMIC_REF : KW_REF, T_ANY, refs[i]);
            /* kv->v may still move: the queue keeps the index */
            queue_ref(st, n, kv->n - 1, res, json_string_value(v), p);
        }
        free(p);
    }
    static const struct {
        const char *key;
        kw_kind kind;
    } lists[] = {{"allOf", KW_ALL_OF}, {"anyOf", KW_ANY_OF}, {"oneOf", KW_ONE_OF}};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(js, lists[i].key);
        if (!v) continue;
        size_t nsubs;
        snode **subs = c_sub_array(st, v, res, path, lists[i].key, depth, &nsubs);
        if (!subs) continue;
        kw *k = kw_push(kv, lists[i].kind, T_ANY, lists[i].key);
        k->u.list.v = subs;
        k->u.list.n = nsubs;
    }
    json_t *v = json_object_get(js, "not");
    if (v) kw_push(kv, KW_NOT, T_ANY, "not")->u.sub = c_sub(st, v, res, path, "not", depth);
    json_t *ifs = json_object_get(js, "if"), *then = json_object_get(js, "then"),
           *els = json_object_get(js, "else");
    if (ifs) {
        kw *k = kw_push(kv, KW_IF, T_ANY, "if");
        k->u.ifs.cond = c_sub(st, ifs, res, path, "if", depth);
        if (then) k->u.ifs.then = c_sub(st, then, res, path, "then", depth);
        if (els) k->u.ifs.els = c_sub(st, els, res, path, "else", depth);
    } else {
        /* then/else without if do nothing, but are still schemas to check */
        if (then) (void)c_sub(st, then, res, path, "then", depth);
        if (els) (void)c_sub(st, els, res, path, "else", depth);
    }
    v = json_object_get(js, "dependentSchemas");
    if (v && c_check_object(st, v, path, "dependentSchemas")) {
        kw *k = kw_push(kv, KW_DEPENDENT_SCHEMAS, T_OBJ, "dependentSchemas");
        k->u.depsch.e = xcalloc(json_object_size(v) + 1, sizeof *k->u.depsch.e);
        char *p0 = path_join(path, "dependentSchemas");
        const char *key;
        size_t klen;
        json_t *e;
        json_object_keylen_foreach(v, key, klen, e)
        {
            dep_schema *d = &k->u.depsch.e[k->u.depsch.n++];
            d->name = key;
            d->len = klen;
            d->sub = c_sub(st, e, res, p0, key, depth);
        }
        free(p0);
    }
}

/* The keyword a subschema at `path` belongs to ("/properties/a" → "properties",
 * "/not" → "not"), into out[n]; "" at the root. */
static void keyword_of(const char *path, char *out, size_t n)
{
    const char *tok[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    for (const char *p = path; *p;) {
        const char *t = p + 1;
        size_t l = strcspn(t, "/");
        tok[0] = tok[1], len[0] = len[1];
        tok[1] = t, len[1] = l;
        p = t + l;
    }
    out[0] = '\0';
    for (int i = 1; i >= 0; i--) {
        if (!tok[i] || len[i] >= n) continue;
        memcpy(out, tok[i], len[i]);
        out[len[i]] = '\0';
        if (known_keyword(out)) return;
    }
    out[0] = '\0';
}

static snode *c_schema(cstate *st, json_t *js, const resource *res, const char *path, int depth)
{
    if (json_is_true(js)) return &schema_node_true;
    if (json_is_false(js)) return &schema_node_false;
    if (!json_is_object(js)) {
        char keyword[32];
        keyword_of(path, keyword, sizeof keyword);
        c_error(st, SCHEMA_INVALID, path, keyword, "a schema must be an object or a boolean");
        return &schema_node_true;
    }
    snode *n = ptrmap_get(&st->nodes, js);
    if (n) return n;
    if (depth > SCHEMA_MAX_SCHEMA_DEPTH) {
        char keyword[32];
        keyword_of(path, keyword, sizeof keyword);
        c_error(st, SCHEMA_INVALID, path, keyword, "schemas nest deeper than %d levels",
                SCHEMA_MAX_SCHEMA_DEPTH);
        return &schema_node_true;
    }
    schema *s = st->s;
    n = xcalloc(1, sizeof *n);
    n->kind = SN_SCHEMA;
    s->nodes = xrealloc(s->nodes, (s->nnodes + 1) * sizeof *s->nodes);
    s->nodes[s->nnodes++] = n;
    ptrmap_put(&st->nodes, js, n);

    const char *key;
    json_t *v;
    json_object_foreach(js, key, v)
    {
        if (known_keyword(key) || (st->trusted && strcmp(key, "$vocabulary") == 0)) continue;
        char *p = path_join(path, key);
        const char *hint = legacy_hint(key);
        c_error(st, SCHEMA_UNSUPPORTED, p, key, "keyword \"%s\" is not supported by Sluice%s%s",
                key, hint ? ": in JSON Schema 2020-12 use " : "", hint ? hint : "");
        free(p);
    }
    c_identifiers(st, js, n, &res, path);
    c_annotations(st, js, path);

    v = json_object_get(js, "$defs");
    if (v && c_check_object(st, v, path, "$defs")) {
        char *p0 = path_join(path, "$defs");
        json_t *e;
        json_object_foreach(v, key, e)(void) c_sub(st, e, res, p0, key, depth);
        free(p0);
    }

    kwvec kv = {0};
    c_type_and_values(st, js, &kv, path);
    c_strings(st, js, &kv, path);
    c_numbers(st, js, &kv, path);
    c_objects(st, js, &kv, res, path, depth);
    c_arrays(st, js, &kv, res, path, depth);
    c_applicators(st, js, n, &kv, res, path, depth);
    v = json_object_get(js, "unevaluatedProperties");
    if (v) {
        kw_push(&kv, KW_UNEVALUATED_PROPERTIES, T_OBJ, "unevaluatedProperties")->u.sub =
            c_sub(st, v, res, path, "unevaluatedProperties", depth);
        n->flags |= SNF_UNEVAL_PROPS;
    }
    v = json_object_get(js, "unevaluatedItems");
    if (v) {
        kw_push(&kv, KW_UNEVALUATED_ITEMS, T_ARR, "unevaluatedItems")->u.sub =
            c_sub(st, v, res, path, "unevaluatedItems", depth);
        n->flags |= SNF_UNEVAL_ITEMS;
    }
    n->kws = kv.v;
    n->nkw = (uint32_t)kv.n;
    return n;
}

/* --------------------------------------------------------- ref resolution */

/* Walks the RFC 6901 pointer `ptr` from `root`; NULL when it leads nowhere. */
static json_t *pointer_get(json_t *root, const char *ptr)
{
    json_t *cur = root;
    if (*ptr == '\0') return cur;
    if (*ptr != '/') return NULL;
    char *tok = xmalloc(strlen(ptr) + 1);
    const char *p = ptr + 1;
    for (;;) {
        size_t n = 0;
        while (*p && *p != '/') {
            if (p[0] == '~' && p[1] == '0')
                tok[n++] = '~', p += 2;
            else if (p[0] == '~' && p[1] == '1')
                tok[n++] = '/', p += 2;
            else
                tok[n++] = *p++;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, n);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(tok, &end, 10);
            cur = (n && *end == '\0' && (tok[0] != '0' || n == 1)) ? json_array_get(cur, i) : NULL;
        } else {
            cur = NULL;
        }
        if (!cur || !*p) break;
        p++;
    }
    free(tok);
    return cur;
}

/* Loads an embedded meta-schema document for `uri`, if there is one. */
static resource *load_known_document(cstate *st, const char *uri)
{
    const char *text = validator_metaschema_text(uri);
    if (!text) return NULL;
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    if (!doc) abort(); /* embedded text is checked by the unit tests */
    json_array_append_new(st->s->extra_docs, doc);
    bool was = st->trusted;
    st->trusted = true;
    resource *dflt = resource_for(st, DEFAULT_BASE);
    (void)c_schema(st, doc, dflt, "", 0); /* valid by construction: no error paths */
    st->trusted = was;
    return resource_for(st, uri);
}

/* Patches st->pend[i]; compiling a target on demand may grow st->pend. */
static void resolve_ref(cstate *st, size_t i)
{
    const pending_ref pr_copy = st->pend[i], *pr = &pr_copy;
    char *frag = NULL;
    char *docuri = validator_uri_split(pr->uri, &frag);
    kw *k = &pr->owner->kws[pr->kwi];
    snode *target = NULL;
    resource *r = resource_for(st, docuri);
    if (!r) r = load_known_document(st, docuri);
    if (!r) {
        c_error(st, SCHEMA_UNSUPPORTED, pr->path, k->name,
                "%s \"%s\" names another document%s%s%s; Sluice resolves references inside the "
                "schema only "
                "(put the target under $defs)",
                k->name, pr->ref, pr->has_base ? " (" : "", pr->has_base ? docuri : "",
                pr->has_base ? ")" : "");
        goto out;
    }
    json_t *tj = NULL;
    bool is_anchor = frag && *frag && *frag != '/';
    if (!frag || !*frag) {
        tj = r->root;
    } else if (*frag == '/') {
        tj = pointer_get(r->root, frag);
    } else {
        char *key = xasprintf("%s#%s", r->uri, frag);
        json_t *a = json_object_get(st->anchors, key);
        free(key);
        if (a) tj = (json_t *)(intptr_t)json_integer_value(a);
    }
    if (!tj) {
        c_error(st, SCHEMA_INVALID, pr->path, k->name, "%s \"%s\" points at nothing in the schema",
                k->name, pr->ref);
        goto out;
    }
    target = ptrmap_get(&st->nodes, tj);
    if (!target) {
        /* a JSON Pointer into a non-schema location ("#/examples/0") */
        char *p = xasprintf("%s%s", r->path, frag ? frag : "");
        target = c_schema(st, tj, r, p, 0);
        free(p);
    }
    if (k->kind == KW_REF) {
        k->u.sub = target;
    } else {
        k->u.dyn.target = target;
        if (is_anchor && target->kind == SN_SCHEMA && target->dyn_anchor &&
            strcmp(target->dyn_anchor, frag) == 0) {
            k->u.dyn.anchor = target->dyn_anchor;
            st->s->dynamic = true;
        }
    }
out:
    free(frag);
    free(docuri);
}

/* ------------------------------------------------------------- lifecycle */

/* JSON nesting depth of `v`, stopping at limit+1. */
static int json_depth(json_t *v, int limit)
{
    if (limit < 0) return 1;
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            int x = json_depth(e, limit - 1);
            if (x > d) d = x;
            if (d > limit) break;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            int x = json_depth(e, limit - 1);
            if (x > d) d = x;
            if (d > limit) break;
        }
        return d + 1;
    }
    return 0;
}

static void kw_dispose(kw *k)
{
    free(k->msg);
    switch (k->kind) {
    case KW_ENUM:
        free(k->u.en.v);
        break;
    case KW_PATTERN:
        regex_free(k->u.re);
        break;
    case KW_REQUIRED:
        free(k->u.req.s);
        free(k->u.req.len);
        break;
    case KW_DEPENDENT_REQUIRED:
        for (size_t i = 0; i < k->u.depreq.n; i++) {
            free(k->u.depreq.e[i].deps.s);
            free(k->u.depreq.e[i].deps.len);
        }
        free(k->u.depreq.e);
        break;
    case KW_DEPENDENT_SCHEMAS:
        free(k->u.depsch.e);
        break;
    case KW_PROPS: {
        props_kw *pk = k->u.props;
        for (size_t i = 0; i < pk->npats; i++)
            regex_free(pk->pats[i].re);
        free(pk->pats);
        free(pk->req.s);
        free(pk->req.len);
        free(pk->props);
        free(pk->slots);
        free(pk);
        break;
    }
    case KW_ITEMS:
        free(k->u.items.prefix);
        break;
    case KW_ALL_OF:
    case KW_ANY_OF:
    case KW_ONE_OF:
        free(k->u.list.v);
        break;
    default:
        break;
    }
}

void schema_free(schema *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nnodes; i++) {
        snode *n = s->nodes[i];
        for (uint32_t j = 0; j < n->nkw; j++)
            kw_dispose(&n->kws[j]);
        free(n->kws);
        free(n);
    }
    free(s->nodes);
    for (size_t i = 0; i < s->nres; i++) {
        free(s->res[i]->uri);
        free(s->res[i]->path);
        free(s->res[i]->dyn);
        free(s->res[i]);
    }
    free(s->res);
    json_decref(s->doc);
    json_decref(s->extra_docs);
    free(s);
}

schema *schema_compile(json_t *doc, schema_status *status, json_t *errors)
{
    schema *s = xcalloc(1, sizeof *s);
    cstate st = {.s = s, .errors = json_is_array(errors) ? errors : NULL};
    st.resources = json_object();
    st.anchors = json_object();
    s->extra_docs = json_array();
    if (!doc) {
        c_error(&st, SCHEMA_INVALID, "", "", "no schema");
        goto out;
    }
    if (json_depth(doc, MAX_DOC_DEPTH) > MAX_DOC_DEPTH) {
        c_error(&st, SCHEMA_INVALID, "", "", "the schema document nests deeper than %d levels",
                MAX_DOC_DEPTH);
        goto out;
    }
    s->doc = json_deep_copy(doc);
    resource *root = resource_add(&st, DEFAULT_BASE, s->doc, "");
    s->root = c_schema(&st, s->doc, root, "", 0);
    for (size_t i = 0; i < st.npend; i++)
        resolve_ref(&st, i); /* may append */
out:
    for (size_t i = 0; i < st.npend; i++) {
        free(st.pend[i].uri);
        free(st.pend[i].path);
    }
    free(st.pend);
    ptrmap_dispose(&st.nodes);
    json_decref(st.resources);
    json_decref(st.anchors);
    *status = st.invalid ? SCHEMA_INVALID : st.unsupported ? SCHEMA_UNSUPPORTED : SCHEMA_OK;
    if (*status != SCHEMA_OK) {
        schema_free(s);
        return NULL;
    }
    return s;
}
