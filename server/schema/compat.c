/*
 * compat.c — structural subset checks between JSON Schemas (see compat.h).
 *
 * DESIGN: compatibility reduces to one question asked in one or both
 * directions: is every instance valid under A also valid under B (A ⊆ B)?
 * subset() walks the two schemas side by side. For each keyword it knows,
 * B may only be as loose or looser than A (a wider type list, a lower minimum,
 * fewer required properties, a superset enum…). Keywords whose sets it cannot
 * compare (pattern, the combinators) must be equal in both schemas, or the
 * change is reported. $ref is followed inside each schema's own document.
 */
#include "compat.h"
#include "../mem.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define COMPAT_MAX_DEPTH 48

static const char *const mode_names[] = {
    "NONE", "BACKWARD", "FORWARD", "FULL", "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE",
    "FULL_TRANSITIVE",
};

int compat_mode_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof mode_names / sizeof mode_names[0]); i++)
        if (strcasecmp(name, mode_names[i]) == 0) return i;
    return -1;
}

const char *compat_mode_name(compat_mode m)
{
    return mode_names[m];
}

bool compat_mode_transitive(compat_mode m)
{
    return m >= COMPAT_BACKWARD_TRANSITIVE;
}

typedef struct walk {
    json_t *root_a, *root_b; /* for $ref */
    const char *direction;
    json_t *reasons;
    bool ok;
} walk;

static void reason(walk *w, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reason(walk *w, const char *path, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->ok = false;
    if (json_array_size(w->reasons) >= 50) return;
    json_array_append_new(w->reasons, json_pack("{s:s,s:s,s:s}", "path", *path ? path : "/",
                                                "message", msg, "direction", w->direction));
}

/* Follows "#/…" references inside `root`; returns the target or NULL. */
static json_t *resolve(json_t *root, json_t *s)
{
    for (int hops = 0; hops < 16 && json_is_object(s); hops++) {
        const char *ref = json_string_value(json_object_get(s, "$ref"));
        if (!ref || strncmp(ref, "#", 1) != 0) return s;
        json_t *cur = root;
        char *copy = xstrdup(ref + 1), *save = NULL;
        for (char *tok = strtok_r(copy, "/", &save); tok && cur; tok = strtok_r(NULL, "/", &save)) {
            char *d = tok, *o = tok; /* unescape ~1 and ~0 */
            for (; *o; o++, d++) {
                if (o[0] == '~' && o[1] == '1') *d = '/', o++;
                else if (o[0] == '~' && o[1] == '0') *d = '~', o++;
                else *d = *o;
            }
            *d = '\0';
            cur = json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tok)) : json_object_get(cur, tok);
        }
        free(copy);
        /* A $ref beside other keywords (2020-12 allows it) is compared as written. */
        if (!cur || json_object_size(s) > 1) return cur ? cur : s;
        s = cur;
    }
    return s;
}

static bool is_true_schema(json_t *s)
{
    return !s || json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0);
}

/* The set of JSON types a schema's "type" allows, as bits; all when absent. */
enum { T_NULL = 1, T_BOOL = 2, T_OBJ = 4, T_ARR = 8, T_NUM = 16, T_STR = 32, T_INT = 64 };
#define T_ALL (T_NULL | T_BOOL | T_OBJ | T_ARR | T_NUM | T_STR | T_INT)

static unsigned type_bit(const char *t)
{
    if (!strcmp(t, "null")) return T_NULL;
    if (!strcmp(t, "boolean")) return T_BOOL;
    if (!strcmp(t, "object")) return T_OBJ;
    if (!strcmp(t, "array")) return T_ARR;
    if (!strcmp(t, "number")) return T_NUM | T_INT;
    if (!strcmp(t, "string")) return T_STR;
    if (!strcmp(t, "integer")) return T_INT;
    return 0;
}

static unsigned types_of(json_t *s)
{
    json_t *t = json_object_get(s, "type");
    if (json_is_string(t)) return type_bit(json_string_value(t));
    if (json_is_array(t)) {
        unsigned bits = 0;
        size_t i;
        json_t *v;
        json_array_foreach(t, i, v) if (json_is_string(v)) bits |= type_bit(json_string_value(v));
        return bits;
    }
    return T_ALL;
}

static bool num(json_t *s, const char *k, double *out)
{
    json_t *v = json_object_get(s, k);
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return true;
}

static bool in_array(json_t *arr, json_t *v)
{
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) if (json_equal(x, v)) return true;
    return false;
}

static void subset_at(walk *w, json_t *a, json_t *b, const char *path, int depth);

/* b's lower bound `k` must be ≤ a's (b accepts at least what a accepts). */
static void lower_bound(walk *w, json_t *a, json_t *b, const char *k, const char *path)
{
    double va, vb;
    if (!num(b, k, &vb)) return;
    if (!num(a, k, &va)) {
        reason(w, path, "%s %g was added", k, vb);
    } else if (vb > va) {
        reason(w, path, "%s was raised from %g to %g", k, va, vb);
    }
}

static void upper_bound(walk *w, json_t *a, json_t *b, const char *k, const char *path)
{
    double va, vb;
    if (!num(b, k, &vb)) return;
    if (!num(a, k, &va)) {
        reason(w, path, "%s %g was added", k, vb);
    } else if (vb < va) {
        reason(w, path, "%s was lowered from %g to %g", k, va, vb);
    }
}

static void must_be_equal(walk *w, json_t *a, json_t *b, const char *k, const char *path)
{
    json_t *va = json_object_get(a, k), *vb = json_object_get(b, k);
    if (!vb) return; /* b drops the constraint: looser */
    if (!va) {
        reason(w, path, "%s was added", k);
    } else if (!json_equal(va, vb)) {
        reason(w, path, "%s changed (Sluice cannot prove the new one accepts everything the old did)",
               k);
    }
}

static void sub_path(char *out, size_t n, const char *path, const char *k1, const char *k2)
{
    if (k2)
        snprintf(out, n, "%s/%s/%s", path, k1, k2);
    else
        snprintf(out, n, "%s/%s", path, k1);
}

static void objects(walk *w, json_t *a, json_t *b, const char *path, int depth)
{
    char p[512];
    json_t *pa = json_object_get(a, "properties"), *pb = json_object_get(b, "properties");
    json_t *aa = json_object_get(a, "additionalProperties");
    json_t *ab = json_object_get(b, "additionalProperties");
    bool a_closed = json_is_false(aa), b_closed = json_is_false(ab);
    /* required: b may require only what a requires. */
    json_t *ra = json_object_get(a, "required"), *rb = json_object_get(b, "required");
    size_t i;
    json_t *v;
    json_array_foreach(rb, i, v) {
        if (!ra || !in_array(ra, v))
            reason(w, path, "property '%s' became required", json_string_value(v));
    }
    const char *k;
    json_object_foreach(pb, k, v) {
        sub_path(p, sizeof p, path, "properties", k);
        json_t *in_a = json_object_get(pa, k);
        if (in_a)
            subset_at(w, in_a, v, p, depth + 1);
        else if (!a_closed && json_is_object(aa))
            subset_at(w, aa, v, p, depth + 1); /* a's extra properties must fit b's p */
        /* a open (true/absent): a property added to an open object is compatible
         * by Sluice's stated rule; a closed: a never had it. */
    }
    json_object_foreach(pa, k, v) {
        if (json_object_get(pb, k)) continue;
        sub_path(p, sizeof p, path, "properties", k);
        if (b_closed)
            reason(w, p, "property '%s' was removed from a closed object", k);
        else if (json_is_object(ab) && !is_true_schema(ab))
            subset_at(w, v, ab, p, depth + 1);
    }
    if (!a_closed && !is_true_schema(ab)) {
        sub_path(p, sizeof p, path, "additionalProperties", NULL);
        if (b_closed)
            reason(w, p, "the object was closed (additionalProperties: false)");
        else if (aa && json_is_object(aa))
            subset_at(w, aa, ab, p, depth + 1);
        else
            reason(w, p, "additionalProperties was constrained");
    }
    must_be_equal(w, a, b, "patternProperties", path);
    must_be_equal(w, a, b, "propertyNames", path);
    must_be_equal(w, a, b, "dependentSchemas", path);
    must_be_equal(w, a, b, "dependentRequired", path);
    lower_bound(w, a, b, "minProperties", path);
    upper_bound(w, a, b, "maxProperties", path);
}

static void arrays(walk *w, json_t *a, json_t *b, const char *path, int depth)
{
    char p[512];
    json_t *ia = json_object_get(a, "items"), *ib = json_object_get(b, "items");
    if (ib && !is_true_schema(ib)) {
        sub_path(p, sizeof p, path, "items", NULL);
        if (ia)
            subset_at(w, ia, ib, p, depth + 1);
        else
            reason(w, p, "items was constrained");
    }
    must_be_equal(w, a, b, "prefixItems", path);
    must_be_equal(w, a, b, "contains", path);
    lower_bound(w, a, b, "minItems", path);
    upper_bound(w, a, b, "maxItems", path);
    lower_bound(w, a, b, "minContains", path);
    upper_bound(w, a, b, "maxContains", path);
    if (json_is_true(json_object_get(b, "uniqueItems")) &&
        !json_is_true(json_object_get(a, "uniqueItems")))
        reason(w, path, "uniqueItems was added");
}

static void subset_at(walk *w, json_t *a, json_t *b, const char *path, int depth)
{
    if (depth > COMPAT_MAX_DEPTH) {
        reason(w, path, "schemas nest too deeply to compare");
        return;
    }
    a = resolve(w->root_a, a);
    b = resolve(w->root_b, b);
    if (is_true_schema(b)) return;                 /* b accepts everything */
    if (json_is_false(a)) return;                  /* a accepts nothing */
    if (json_is_false(b)) {
        reason(w, path, "the schema now rejects every value");
        return;
    }
    if (is_true_schema(a)) a = json_object();      /* compare b's constraints against none */
    else json_incref(a);
    if (json_equal(a, b)) {
        json_decref(a);
        return;
    }

    unsigned ta = types_of(a), tb = types_of(b);
    if (ta & ~tb) {
        json_t *t = json_object_get(b, "type");
        char *tb_text = json_dumps(t, JSON_ENCODE_ANY);
        char *ta_text = json_object_get(a, "type") ? json_dumps(json_object_get(a, "type"), JSON_ENCODE_ANY)
                                                   : xstrdup("any type");
        reason(w, path, "type narrowed from %s to %s", ta_text, tb_text);
        free(tb_text);
        free(ta_text);
    }
    json_t *eb = json_object_get(b, "enum"), *ea = json_object_get(a, "enum");
    if (eb) {
        if (!ea) {
            json_t *ca = json_object_get(a, "const");
            if (!ca || !in_array(eb, ca)) reason(w, path, "enum was added");
        } else {
            size_t i;
            json_t *v;
            json_array_foreach(ea, i, v) {
                if (!in_array(eb, v)) {
                    char *t = json_dumps(v, JSON_ENCODE_ANY);
                    reason(w, path, "enum value %s was removed", t);
                    free(t);
                }
            }
        }
    }
    json_t *cb = json_object_get(b, "const");
    if (cb && !json_equal(cb, json_object_get(a, "const"))) {
        json_t *ea1 = json_object_get(a, "enum");
        if (!(ea1 && json_array_size(ea1) == 1 && json_equal(json_array_get(ea1, 0), cb)))
            reason(w, path, "const was added or changed");
    }
    /* numbers */
    lower_bound(w, a, b, "minimum", path);
    upper_bound(w, a, b, "maximum", path);
    lower_bound(w, a, b, "exclusiveMinimum", path);
    upper_bound(w, a, b, "exclusiveMaximum", path);
    double ma, mb;
    if (num(b, "multipleOf", &mb)) {
        if (!num(a, "multipleOf", &ma)) {
            reason(w, path, "multipleOf %g was added", mb);
        } else {
            double q = ma / mb;
            if (fabs(q - round(q)) > 1e-9) reason(w, path, "multipleOf changed from %g to %g", ma, mb);
        }
    }
    /* strings */
    lower_bound(w, a, b, "minLength", path);
    upper_bound(w, a, b, "maxLength", path);
    must_be_equal(w, a, b, "pattern", path);
    must_be_equal(w, a, b, "format", path);
    /* structure */
    if (tb & T_OBJ) objects(w, a, b, path, depth);
    if (tb & T_ARR) arrays(w, a, b, path, depth);
    /* combinators and conditionals: equal or reported */
    static const char *const exact[] = {"allOf", "anyOf", "oneOf", "not", "if", "then", "else",
                                        "unevaluatedProperties", "unevaluatedItems"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        must_be_equal(w, a, b, exact[i], path);
    json_decref(a);
}

bool compat_subset(json_t *a, json_t *b, const char *direction, json_t *reasons)
{
    walk w = {.root_a = a, .root_b = b, .direction = direction, .reasons = reasons, .ok = true};
    subset_at(&w, a, b, "", 0);
    return w.ok;
}

bool compat_check(json_t *old_schema, json_t *new_schema, compat_mode mode, json_t *reasons)
{
    bool ok = true;
    bool backward = mode == COMPAT_BACKWARD || mode == COMPAT_BACKWARD_TRANSITIVE ||
                    mode == COMPAT_FULL || mode == COMPAT_FULL_TRANSITIVE;
    bool forward = mode == COMPAT_FORWARD || mode == COMPAT_FORWARD_TRANSITIVE ||
                   mode == COMPAT_FULL || mode == COMPAT_FULL_TRANSITIVE;
    /* BACKWARD: data written with the old schema must be valid under the new one. */
    if (backward && !compat_subset(old_schema, new_schema, "backward", reasons)) ok = false;
    /* FORWARD: data written with the new schema must be valid under the old one. */
    if (forward && !compat_subset(new_schema, old_schema, "forward", reasons)) ok = false;
    return ok;
}
