/*
 * validator.c — evaluates an instance against a compiled schema
 * (schema_validate; compiling is validator_compile.c).
 *
 * DESIGN
 * Evaluation is a depth-first walk of the compiled node graph alongside the
 * instance. All per-call state lives in one `vctx` on the caller's stack: the
 * instance path (segments, turned into a JSON Pointer only when a violation is
 * reported), the evaluation depth, the dynamic scope, and the error array.
 * The compiled schema is only read, so any number of threads may validate
 * against it at once.
 *
 * Two bounds keep the recursion finite and the stack small:
 *   - instance depth: descending past SCHEMA_MAX_INSTANCE_DEPTH is a violation
 *     ("depth") and the walk goes no deeper;
 *   - evaluation depth: more than SCHEMA_MAX_EVAL_DEPTH nested node
 *     evaluations (only a `$ref` cycle that never moves into the instance gets
 *     there) is a violation on "$ref".
 *
 * Annotations (for unevaluatedProperties/unevaluatedItems) are collected only
 * when a node that has one of those keywords asks: it passes an `ann` — a
 * bitset over the object's members (in iteration order) or the array's
 * items — down to the keywords and in-place applicators ($ref, allOf, then,
 * else, dependentSchemas). Branches whose annotations must be dropped when
 * they fail (anyOf, oneOf, if, not) get a fresh `ann` merged only on success.
 * Everything else runs with no `ann` at all, which is the fast path.
 *
 * Without an error array the first violation ends the walk. With one, every
 * violation is reported (up to SCHEMA_MAX_ERRORS); branches of anyOf, oneOf,
 * not, if, contains and propertyNames are evaluated quietly and summarised in
 * one violation of that keyword.
 *
 * The budget (issue 13, validator.h) costs the fast path nothing new: node
 * evaluations were already counted against SCHEMA_MAX_EVALUATIONS, and the
 * one comparison now tests `visit_cap`, the smaller of that limit and what
 * the budget has left; only crossing it calls v_recap, which tells the two
 * apart. Values walked under `true` and values compared or hashed are
 * charged to `visits` and to `walked` (so they count against the budget but
 * not against the per-value limit). Steps live in a regex_meter that
 * `pattern`/`patternProperties` matches charge directly; format and length
 * checks pay for the bytes they read before reading them. Running out sets
 * `over` and `visit_cap` = 0: from then on every node evaluation fails at
 * once, reports nothing, and schema_validate_budget replaces this call's
 * violations with one "over budget" entry.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "problem.h"
#include "validator_internal.h"

/* "s" unless there is one, for messages. */
#define PLURAL(n) ((n) == 1 ? "" : "s")

/* Equality/hash recursion bound inside one value (enum, const, uniqueItems). */
#define MAX_VALUE_DEPTH (2 * SCHEMA_MAX_INSTANCE_DEPTH)

/* ------------------------------------------------------------- annotations */

typedef struct ann {
    bool all;       /* every member/item has been evaluated */
    size_t n;       /* members/items in the instance */
    uint64_t small; /* the bits when n <= 64 */
    uint64_t *big;  /* the bits when n > 64 (owned) */
} ann;

static void ann_init(ann *a, size_t n)
{
    a->all = false;
    a->n = n;
    a->small = 0;
    a->big = n > 64 ? xcalloc((n + 63) / 64, sizeof *a->big) : NULL;
}

static void ann_dispose(ann *a)
{
    free(a->big);
}

static void ann_set(ann *a, size_t i)
{
    if (i >= a->n) return;
    uint64_t *w = a->big ? &a->big[i / 64] : &a->small;
    *w |= 1ull << (i % 64);
}

static bool ann_get(const ann *a, size_t i)
{
    if (a->all) return true;
    if (i >= a->n) return false;
    uint64_t w = a->big ? a->big[i / 64] : a->small;
    return (w >> (i % 64)) & 1;
}

static void ann_merge(ann *dst, const ann *src)
{
    if (src->all) dst->all = true;
    if (dst->all) return;
    if (dst->big) {
        for (size_t i = 0; i < (dst->n + 63) / 64; i++)
            dst->big[i] |= src->big[i];
    } else {
        dst->small |= src->small;
    }
}

/* ----------------------------------------------------------------- context */

typedef struct seg {
    const char *key; /* member name, or NULL for an array index */
    size_t len;      /* bytes in key */
    size_t idx;      /* array index */
} seg;

typedef struct vctx {
    json_t *errors;       /* where violations go; NULL = stop at the first */
    const char *prefix;   /* prepended to every reported path */
    int index;            /* batch index for reports (< 0: none) */
    int nerr;             /* violations reported */
    int depth;            /* segments in path */
    int eval;             /* nested node evaluations */
    long visits;          /* node evaluations so far, plus values walked/compared (`walked`) */
    long walked;          /* of visits: values walked under `true`, compared or hashed */
    long visit_cap;       /* crossing it calls v_recap: min(budget left, per-value limit) */
    long long nodes_left; /* the budget's nodes left when this call started */
    regex_meter meter;    /* the budget's steps left */
    schema_over over;     /* the budget ran out: everything fails, nothing is reported */
    char *over_path;      /* where it ran out (owned) */
    bool exhausted;       /* visits ran out: the value is invalid, whatever `not` says */
    bool explaining;      /* inside explain(): report failures without explaining them again */
    bool dynamic;         /* track the dynamic scope */
    int nscope;           /* resources in scope */
    seg path[SCHEMA_MAX_INSTANCE_DEPTH];
    const resource *scope[SCHEMA_MAX_EVAL_DEPTH + 1];
} vctx;

static bool v_node(vctx *c, const snode *n, json_t *inst, ann *a, const char *kwname);

/* Members and items compared or hashed, and how many the budget allows. */
typedef struct vwork {
    long done;
    long cap; /* past it json_eq and json_hash give up (the caller stops) */
} vwork;

/* Appends `n` bytes of a member name to out[*len..cap), escaped as RFC 6901
 * says; *len counts what it needed even past cap. */
static void put_token(char *out, size_t cap, size_t *len, const char *k, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        char e = k[j] == '~' ? '0' : k[j] == '/' ? '1' : 0;
        if (e) {
            if (*len + 1 < cap) out[*len] = '~', out[*len + 1] = e;
            *len += 2;
        } else {
            if (*len < cap) out[*len] = k[j];
            *len += 1;
        }
    }
}

/* Writes the reported path of the current location (plus the member or item
 * `extra`, if non-NULL) into out[cap], NUL-terminated. Returns its length;
 * when that is >= cap the text is cut and the caller retries with more room. */
static size_t v_path_into(const vctx *c, const seg *extra, char *out, size_t cap)
{
    size_t len = 0;
    for (const char *p = c->prefix; *p; p++, len++)
        if (len < cap) out[len] = *p;
    for (int i = 0; i <= c->depth; i++) {
        const seg *sg = i < c->depth ? &c->path[i] : extra;
        if (!sg) break;
        const char *k = sg->key;
        size_t n = sg->len;
        if (!k) {
            char num[24];
            int w = snprintf(num, sizeof num, "/%zu", sg->idx);
            for (int j = 0; j < w; j++, len++)
                if (len < cap) out[len] = num[j];
            continue;
        }
        if (len < cap) out[len] = '/';
        len++;
        put_token(out, cap, &len, k, n);
    }
    out[len < cap ? len : cap - 1] = '\0';
    return len;
}

/* The reported path as a new string (caller frees). */
static char *v_path(const vctx *c, const seg *extra)
{
    char small[256];
    size_t n = v_path_into(c, extra, small, sizeof small);
    if (n < sizeof small) return xstrdup(small);
    char *big = xmalloc(n + 1);
    v_path_into(c, extra, big, n + 1);
    return big;
}

/* Cuts `s`, which vsnprintf cut at byte `len`, back to a whole code point. */
static void utf8_trim(char *s, size_t len)
{
    size_t i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i > 0 && ((unsigned char)s[i - 1] & 0x80)) {
        unsigned char lead = (unsigned char)s[i - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (len - (i - 1) < need) s[i - 1] = '\0';
    }
}

/* vsnprintf for the conversions messages use (%s %.*s %zu %d %%), without
 * glibc's printf machinery on the path that reports violations. Returns the
 * bytes written (cut at cap - 1 on a code point boundary). */
static size_t msg_format(char *out, size_t cap, const char *fmt, va_list ap)
{
    size_t n = 0;
    bool cut = false;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (n + 1 < cap)                                                                           \
            out[n++] = (ch);                                                                       \
        else                                                                                       \
            cut = true;                                                                            \
    } while (0)
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            PUT(*f);
            continue;
        }
        f++;
        if (*f == 's') {
            for (const char *s = va_arg(ap, const char *); *s; s++)
                PUT(*s);
        } else if (f[0] == '.' && f[1] == '*' && f[2] == 's') {
            int len = va_arg(ap, int);
            const char *s = va_arg(ap, const char *);
            for (int i = 0; i < len; i++)
                PUT(s[i]);
            f += 2;
        } else if (*f == 'z' || *f == 'd') {
            unsigned long long u;
            bool neg = false;
            if (*f == 'z') {
                f++; /* %zu */
                u = va_arg(ap, size_t);
            } else {
                int d = va_arg(ap, int);
                neg = d < 0;
                u = neg ? 0ull - (unsigned long long)d : (unsigned long long)d;
            }
            char digits[24];
            int k = 0;
            do
                digits[k++] = (char)('0' + u % 10);
            while ((u /= 10));
            if (neg) PUT('-');
            while (k)
                PUT(digits[--k]);
        } else {
            PUT('%');
        }
    }
#undef PUT
    out[n] = '\0';
    if (cut) utf8_trim(out, n);
    return n;
}

static void v_report(vctx *c, const seg *extra, const char *keyword, const char *fmt, va_list ap)
{
    if (!c->errors || c->over) return;
    char msg[512], pathbuf[512];
    msg_format(msg, sizeof msg, fmt, ap);
    char *heap = NULL;
    const char *path = pathbuf;
    if (v_path_into(c, extra, pathbuf, sizeof pathbuf) >= sizeof pathbuf)
        path = heap = v_path(c, extra);
    json_array_append_new(c->errors, problem_error(c->index, path, keyword, msg));
    free(heap);
    if (++c->nerr >= SCHEMA_MAX_ERRORS) c->errors = NULL; /* the rest stops at its first */
}

/* A violation at the current location. Returns false for `return v_error(..)`. */
static bool v_error(vctx *c, const char *keyword, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool v_error(vctx *c, const char *keyword, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    v_report(c, NULL, keyword, fmt, ap);
    va_end(ap);
    return false;
}

/* A violation at member `key` of the current object (which may not exist). */
static bool v_error_at(vctx *c, const char *key, size_t len, const char *keyword, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));
static bool v_error_at(vctx *c, const char *key, size_t len, const char *keyword, const char *fmt,
                       ...)
{
    seg extra = {.key = key, .len = len};
    va_list ap;
    va_start(ap, fmt);
    v_report(c, &extra, keyword, fmt, ap);
    va_end(ap);
    return false;
}

/* A violation at item `idx` of the current array (which may not exist). */
static bool v_error_item(vctx *c, size_t idx, const char *keyword, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool v_error_item(vctx *c, size_t idx, const char *keyword, const char *fmt, ...)
{
    seg extra = {.idx = idx};
    va_list ap;
    va_start(ap, fmt);
    v_report(c, &extra, keyword, fmt, ap);
    va_end(ap);
    return false;
}

/* ------------------------------------------------------------------ budget */

/* The budget ran out here: remember where, and make every evaluation fail
 * and every walk stop (with no error list, a walk ends at its first failure). */
static void v_stop(vctx *c, schema_over which)
{
    if (c->over) return;
    c->over = which;
    c->over_path = v_path(c, NULL);
    c->visit_cap = 0;
    c->errors = NULL;
}

/* visits crossed visit_cap (the cold path of v_node and v_pay): false when
 * evaluation must stop (the per-value limit or the budget), else true with a
 * fresh cap (values walked since the cap was set do not count toward the
 * per-value limit). */
static __attribute__((noinline)) bool v_recap(vctx *c)
{
    if (c->over || c->exhausted) return false;
    if (c->visits - c->walked > SCHEMA_MAX_EVALUATIONS) {
        c->exhausted = true; /* reported once, by schema_validate_budget */
        return false;
    }
    if (c->visits > c->nodes_left) {
        v_stop(c, SCHEMA_OVER_NODES);
        return false;
    }
    long long cap = SCHEMA_MAX_EVALUATIONS + (long long)c->walked;
    c->visit_cap = (long)(cap < c->nodes_left ? cap : c->nodes_left);
    return true;
}

/* A vwork for comparisons: the nodes the budget has left. */
static inline vwork v_work(const vctx *c)
{
    return (vwork){0, c->nodes_left - c->visits};
}

/* Charges `n` walked/compared values; false when the budget is used up. */
static inline bool v_pay(vctx *c, long n)
{
    c->visits += n;
    c->walked += n;
    return c->visits <= c->visit_cap || v_recap(c);
}

/* Charges `n` string steps before the work; false when there are not enough. */
static inline bool v_steps(vctx *c, long long n)
{
    if (c->over) return false;
    c->meter.left -= n;
    if (c->meter.left >= 0) return true;
    v_stop(c, SCHEMA_OVER_STEPS);
    return false;
}

/* A regex search charged to the budget: REGEX_OVER_BUDGET when the budget
 * ran out (then evaluation stops), REGEX_TOO_COMPLEX when this one match
 * needs more than SCHEMA_MATCH_STEPS + SCHEMA_MATCH_STEPS_PER_BYTE per byte
 * (or PCRE2's own limits), else the answer. */
static int v_search(vctx *c, const regex *re, const char *s, size_t len)
{
    if (c->over) return REGEX_OVER_BUDGET;
    int r = regex_search_metered(re, s, len, &c->meter);
    if (r == REGEX_OVER_BUDGET) v_stop(c, SCHEMA_OVER_STEPS);
    return r;
}

/* Evaluates with violations muted (a branch whose failure is summarised). */
static bool v_quiet(vctx *c, const snode *n, json_t *inst, ann *a)
{
    json_t *saved = c->errors;
    c->errors = NULL;
    bool ok = v_node(c, n, inst, a, "");
    c->errors = c->over ? NULL : saved; /* once over budget, every walk stops at once */
    return ok;
}

/* Evaluates a member (key != NULL) or item of the current value. */
static bool v_child(vctx *c, const snode *n, json_t *v, const char *key, size_t len, size_t idx,
                    const char *kwname)
{
    if (n->kind == SN_TRUE) {
        c->visits++; /* walked: checked at the next evaluation */
        c->walked++;
        return true;
    }
    if (c->depth >= SCHEMA_MAX_INSTANCE_DEPTH) {
        static const char msg[] =
            "the value nests deeper than %d levels; Sluice does not validate below that";
        if (key) return v_error_at(c, key, len, "depth", msg, SCHEMA_MAX_INSTANCE_DEPTH);
        return v_error_item(c, idx, "depth", msg, SCHEMA_MAX_INSTANCE_DEPTH);
    }
    seg *s = &c->path[c->depth++];
    s->key = key;
    s->len = len;
    s->idx = idx;
    bool ok = v_node(c, n, v, NULL, kwname);
    c->depth--;
    return ok;
}

/* --------------------------------------------------------- value helpers */

static const char *type_name(unsigned t)
{
    switch (t) {
    case T_NULL:
        return "null";
    case T_BOOL:
        return "boolean";
    case T_INT:
        return "integer";
    case T_REAL:
        return "number";
    case T_STR:
        return "string";
    case T_ARR:
        return "array";
    default:
        return "object";
    }
}

static bool is_integral(double d)
{
    return isfinite(d) && floor(d) == d;
}

/* a <=> b for two JSON numbers, exactly (long double holds any int64). */
static int num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return (x > y) - (x < y);
    }
    long double x =
        json_is_integer(a) ? (long double)json_integer_value(a) : (long double)json_real_value(a);
    long double y =
        json_is_integer(b) ? (long double)json_integer_value(b) : (long double)json_real_value(b);
    return (x > y) - (x < y);
}

/* JSON equality: 1 == 1.0, objects ignore member order. Counts the members
 * and items it compares in *w (false, meaningless, once past w->cap). */
static bool json_eq(json_t *a, json_t *b, int depth, vwork *w)
{
    if (a == b) return true;
    if (depth > MAX_VALUE_DEPTH) return false;
    json_type ta = json_typeof(a), tb = json_typeof(b);
    if (json_is_number(a) && json_is_number(b)) return num_cmp(a, b) == 0;
    if (ta != tb) return false;
    switch (ta) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b)) return false;
        if ((w->done += (long)n) > w->cap) return false;
        for (size_t i = 0; i < n; i++)
            if (!json_eq(json_array_get(a, i), json_array_get(b, i), depth + 1, w)) return false;
        return true;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return false;
        if ((w->done += (long)json_object_size(a)) > w->cap) return false;
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach(a, k, kl, v)
        {
            json_t *bv = json_object_getn(b, k, kl);
            if (!bv || !json_eq(v, bv, depth + 1, w)) return false;
        }
        return true;
    }
    default:
        return true; /* true, false, null */
    }
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* A hash of every byte of a string (uniqueItems: prop_hash's first and last
 * eight bytes would let equal-length strings collide, and collisions cost a
 * comparison each). */
static uint64_t bytes_hash(const char *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        h = mix64(h ^ x);
    }
    uint64_t t = 0;
    memcpy(&t, s, n);
    return mix64(h ^ t);
}

/* A hash consistent with json_eq. Counts the members and items it hashes in
 * *w (0, meaningless, once past w->cap). */
static uint64_t json_hash(json_t *v, int depth, vwork *w)
{
    if (depth > MAX_VALUE_DEPTH) return 0;
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        return mix64((uint64_t)json_integer_value(v));
    case JSON_REAL: {
        double d = json_real_value(v);
        if (is_integral(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
            return mix64((uint64_t)(int64_t)d);
        uint64_t bits;
        if (d == 0) d = 0; /* -0.0 */
        memcpy(&bits, &d, sizeof bits);
        return mix64(bits ^ 0x5555);
    }
    case JSON_STRING:
        w->done += (long)(json_string_length(v) / 16);
        return bytes_hash(json_string_value(v), json_string_length(v)) * 0x100000001b3ull + 1;
    case JSON_ARRAY: {
        uint64_t h = 0xA77A;
        if ((w->done += (long)json_array_size(v)) > w->cap) return 0;
        for (size_t i = 0; i < json_array_size(v); i++)
            h = mix64(h + json_hash(json_array_get(v, i), depth + 1, w));
        return h;
    }
    case JSON_OBJECT: {
        uint64_t h = 0x0B1EC7;
        const char *k;
        size_t kl;
        json_t *e;
        if ((w->done += (long)json_object_size(v)) > w->cap) return 0;
        json_object_keylen_foreach(v, k, kl, e) h +=
            mix64(bytes_hash(k, kl) ^ json_hash(e, depth + 1, w));
        return h;
    }
    case JSON_TRUE:
        return 1;
    case JSON_FALSE:
        return 2;
    default:
        return 3;
    }
}

static size_t utf8_length(const char *s, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++)
        cps += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cps;
}

static bool multiple_of(const json_t *x, const json_t *m)
{
    if (json_is_integer(x) && json_is_integer(m)) {
        json_int_t d = json_integer_value(m);
        return d == 1 || d == -1 || json_integer_value(x) % d == 0;
    }
    double xv = json_number_value(x), mv = json_number_value(m);
    double q = xv / mv;
    if (isfinite(q)) {
        double tol = fmax(1e-9, fabs(q) * 4 * DBL_EPSILON);
        return fabs(q - nearbyint(q)) <= tol;
    }
    /* q overflowed: fmod is exact for doubles */
    double r = fmod(fabs(xv), mv);
    return r == 0;
}

/* "(1) msg; (2) msg" (or just "msg" for one schema) for the first violation
 * of each failing branch; caller frees. */
static char *explain(vctx *c, snode *const *subs, size_t n, json_t *inst)
{
    if (c->explaining) return xstrdup(""); /* one level: keeps nested anyOf failures linear */
    c->explaining = true;
    json_t *saved = c->errors;
    int saved_n = c->nerr, saved_idx = c->index;
    char *here = v_path(c, NULL);
    buf b;
    buf_init(&b);
    for (size_t i = 0; i < n && b.len < 400; i++) {
        json_t *errs = json_array();
        c->errors = errs;
        c->nerr = SCHEMA_MAX_ERRORS - 1; /* one violation is enough */
        c->index = -1;
        (void)v_node(c, subs[i], inst, NULL, "");
        json_t *e = json_array_get(errs, 0);
        if (e) {
            const char *p = json_string_value(json_object_get(e, "path"));
            const char *m = json_string_value(json_object_get(e, "message"));
            size_t hl = strlen(here);
            if (n > 1) buf_printf(&b, "%s(%zu) ", b.len ? "; " : "", i + 1);
            if (p && strlen(p) > hl) buf_printf(&b, "at %s: ", p + hl);
            buf_puts(&b, m ? m : "invalid");
        }
        json_decref(errs);
    }
    c->errors = c->over ? NULL : saved; /* once over budget, every walk stops at once */
    c->nerr = saved_n;
    c->index = saved_idx;
    c->explaining = false;
    free(here);
    if (!b.data) buf_puts(&b, "");
    return buf_steal(&b, NULL);
}

static void format_number(const json_t *v, char *out, size_t n)
{
    if (json_is_integer(v)) {
        /* the common case, without printf */
        json_int_t x = json_integer_value(v);
        char tmp[24];
        size_t i = sizeof tmp;
        unsigned long long u = x < 0 ? 0ull - (unsigned long long)x : (unsigned long long)x;
        tmp[--i] = '\0';
        do
            tmp[--i] = (char)('0' + u % 10);
        while ((u /= 10) && i > 1);
        if (x < 0) tmp[--i] = '-';
        snprintf(out, n, "%s", tmp + i);
        return;
    }
    double d = json_real_value(v);
    snprintf(out, n, "%.15g", d);
    if (strtod(out, NULL) != d) snprintf(out, n, "%.17g", d);
}

/* ------------------------------------------------------------ keywords */

static bool kw_type(vctx *c, const kw *k, json_t *inst, unsigned t)
{
    unsigned types = k->u.types;
    if (types & t) return true;
    if (t == T_REAL && (types & T_INT) && is_integral(json_real_value(inst))) return true;
    return v_error(c, "type", "%s, got %s", k->msg, type_name(t));
}

static bool kw_const(vctx *c, const kw *k, json_t *inst)
{
    vwork w = v_work(c);
    bool eq = json_eq(inst, k->u.value, 0, &w);
    if (w.done && !v_pay(c, w.done)) return false;
    if (eq) return true;
    return v_error(c, "const", "%s", k->msg);
}

/* Values an enum scan may compare for the price of its node; every
 * ENUM_VALUES_PER_NODE more cost one more node (a long enum is a loop). */
#define ENUM_VALUES_PER_NODE 4

static bool kw_enum(vctx *c, const kw *k, json_t *inst)
{
    size_t n = k->u.en.n, i = 0;
    bool found = false;
    if (json_is_string(inst)) {
        const char *s = json_string_value(inst);
        size_t len = json_string_length(inst);
        for (; i < n; i++) {
            json_t *v = k->u.en.v[i];
            if (json_is_string(v) && json_string_length(v) == len &&
                memcmp(json_string_value(v), s, len) == 0) {
                found = true;
                break;
            }
        }
    } else if (json_is_integer(inst)) {
        json_int_t x = json_integer_value(inst);
        for (; i < n; i++) {
            json_t *v = k->u.en.v[i];
            if (json_is_integer(v) ? json_integer_value(v) == x
                                   : json_is_real(v) && num_cmp(inst, v) == 0) {
                found = true;
                break;
            }
        }
    } else {
        vwork w = v_work(c);
        for (; i < n && !found && w.done <= w.cap; i++)
            found = json_eq(inst, k->u.en.v[i], 0, &w);
        if (w.done && !v_pay(c, w.done)) return false;
    }
    if (i >= 2 * ENUM_VALUES_PER_NODE && !v_pay(c, (long)(i / ENUM_VALUES_PER_NODE))) return false;
    if (found) return true;
    return v_error(c, "enum", "%s", k->msg);
}

static bool kw_number(vctx *c, const kw *k, json_t *inst)
{
    int cmp;
    const char *op;
    switch (k->kind) {
    case KW_MINIMUM:
        cmp = num_cmp(inst, k->u.value);
        if (cmp >= 0) return true;
        op = ">=";
        break;
    case KW_MAXIMUM:
        cmp = num_cmp(inst, k->u.value);
        if (cmp <= 0) return true;
        op = "<=";
        break;
    case KW_EXCL_MINIMUM:
        cmp = num_cmp(inst, k->u.value);
        if (cmp > 0) return true;
        op = ">";
        break;
    case KW_EXCL_MAXIMUM:
        cmp = num_cmp(inst, k->u.value);
        if (cmp < 0) return true;
        op = "<";
        break;
    default:
        if (multiple_of(inst, k->u.value)) return true;
        op = NULL;
        break;
    }
    if (!c->errors) return false;
    char lim[40], got[40];
    format_number(k->u.value, lim, sizeof lim);
    format_number(inst, got, sizeof got);
    if (op) return v_error(c, k->name, "must be %s %s, got %s", op, lim, got);
    return v_error(c, k->name, "must be a multiple of %s, got %s", lim, got);
}

static bool kw_string(vctx *c, const kw *k, json_t *inst)
{
    const char *s = json_string_value(inst);
    size_t len = json_string_length(inst);
    switch (k->kind) {
    case KW_MIN_LENGTH: {
        if (len < k->u.count) {
            size_t n = len;
            return v_error(c, "minLength", "must be at least %zu character%s long, got %zu",
                           k->u.count, PLURAL(k->u.count), n);
        }
        if (len / 4 >= k->u.count) return true; /* a code point is at most 4 bytes */
        if (!v_steps(c, (long long)(len / SCHEMA_LENGTH_BYTES_PER_STEP))) return false;
        size_t n = utf8_length(s, len);
        if (n >= k->u.count) return true;
        return v_error(c, "minLength", "must be at least %zu character%s long, got %zu", k->u.count,
                       PLURAL(k->u.count), n);
    }
    case KW_MAX_LENGTH: {
        if (len <= k->u.count) return true;
        if (!v_steps(c, (long long)(len / SCHEMA_LENGTH_BYTES_PER_STEP))) return false;
        size_t n = utf8_length(s, len);
        if (n <= k->u.count) return true;
        return v_error(c, "maxLength", "must be at most %zu character%s long, got %zu", k->u.count,
                       PLURAL(k->u.count), n);
    }
    case KW_PATTERN: {
        int r = v_search(c, k->u.re, s, len);
        if (r == REGEX_MATCH) return true;
        if (r == REGEX_OVER_BUDGET) return false;
        if (r == REGEX_TOO_COMPLEX)
            return v_error(c, "pattern",
                           "the pattern %s is too expensive to evaluate on this value",
                           regex_source(k->u.re));
        return v_error(c, "pattern", "must match the pattern %s", regex_source(k->u.re));
    }
    default: /* KW_FORMAT */
        if (!v_steps(c, SCHEMA_FORMAT_STEPS + (long long)len * k->u.fmt.steps_per_byte))
            return false;
        if (k->u.fmt.fn(s, len)) return true;
        return v_error(c, "format", "%s", k->msg);
    }
}

/* memcmp(a, b, n) == 0 for the short strings member names are, inline. */
static inline bool bytes_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    while (n > 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return false;
        a += 8, b += 8, n -= 8;
    }
    if (n >= 4) { /* two overlapping 4-byte words cover 4..8 bytes */
        uint32_t p, q, r, t;
        memcpy(&p, a, 4);
        memcpy(&q, b, 4);
        memcpy(&r, a + n - 4, 4);
        memcpy(&t, b + n - 4, 4);
        return p == q && r == t;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static const prop_ent *props_find(const props_kw *pk, const char *key, size_t len)
{
    if (!pk->nprops) return NULL;
    uint32_t h = prop_hash(key, len);
    for (uint32_t j = h & pk->mask;; j = (j + 1) & pk->mask) {
        uint32_t s = pk->slots[j];
        if (!s) return NULL;
        const prop_ent *e = &pk->props[s - 1];
        if (e->hash == h && e->len == len && bytes_eq(e->name, key, len)) return e;
    }
}

/* The `required` names missing from `inst` (the slow path: some are). */
static bool report_missing(vctx *c, const strlist *req, json_t *inst)
{
    for (size_t i = 0; i < req->n; i++) {
        if (json_object_getn(inst, req->s[i], req->len[i])) continue;
        v_error_at(c, req->s[i], req->len[i], "required", "missing required property \"%s\"",
                   req->s[i]);
        if (!c->errors) break;
    }
    return false;
}

/* Walks the members of `inst`: declared ones get their `properties` schema
 * (unless `declared_done`: the caller already applied those), matching ones
 * their `patternProperties` schemas, the rest `additionalProperties`; marks
 * what was evaluated in `a`; counts required members into *found. */
static bool walk_members(vctx *c, const props_kw *pk, json_t *inst, ann *a, bool declared_done,
                         size_t *found)
{
    bool ok = true;
    size_t i = 0;
    for (void *it = json_object_iter(inst); it; it = json_object_iter_next(inst, it), i++) {
        const char *key = json_object_iter_key(it);
        size_t len = json_object_iter_key_len(it);
        json_t *v = json_object_iter_value(it);
        bool matched = false, good = true;
        const prop_ent *e = props_find(pk, key, len);
        if (e) {
            *found += e->required;
            if (e->sub) {
                matched = true;
                if (declared_done) continue;
                good = v_child(c, e->sub, v, key, len, 0, "properties");
            }
        }
        for (size_t p = 0; p < pk->npats && (good || c->errors); p++) {
            int r = v_search(c, pk->pats[p].re, key, len);
            if (r == REGEX_OVER_BUDGET) return false;
            if (r == REGEX_TOO_COMPLEX) {
                good = v_error_at(c, key, len, "patternProperties",
                                  "the pattern %s is too expensive to evaluate on this name",
                                  regex_source(pk->pats[p].re));
            } else if (r == REGEX_MATCH) {
                matched = true;
                good &= v_child(c, pk->pats[p].sub, v, key, len, 0, "patternProperties");
            }
        }
        if (!matched && pk->additional) {
            if (pk->additional->kind == SN_FALSE)
                good = v_error_at(c, key, len, "additionalProperties",
                                  "property \"%.*s\" is not allowed", (int)len, key);
            else
                good = v_child(c, pk->additional, v, key, len, 0, "additionalProperties");
            matched = true;
        }
        if (a && matched) ann_set(a, i);
        if (!good) {
            ok = false;
            if (!c->errors) return false;
        }
    }
    return ok;
}

static bool kw_props(vctx *c, const kw *k, json_t *inst, ann *a)
{
    const props_kw *pk = k->u.props;
    size_t size = json_object_size(inst), found = 0;
    bool ok = true;
    if (a || pk->npats || pk->nprops > 2 * size) {
        ok = walk_members(c, pk, inst, a, false, &found);
    } else {
        /* Look the declared names up (cheaper than walking the members);
         * walk only if some member is not declared and additionalProperties
         * has something to say about it. */
        size_t declared = 0;
        for (size_t i = 0; i < pk->nprops; i++) {
            const prop_ent *e = &pk->props[i];
            json_t *v = json_object_getn(inst, e->name, e->len);
            if (!v) continue;
            found += e->required;
            if (!e->sub) continue;
            declared++;
            if (!v_child(c, e->sub, v, e->name, e->len, 0, "properties")) {
                ok = false;
                if (!c->errors) return false;
            }
        }
        if (pk->additional && declared < size) {
            size_t ignored = 0;
            if (!walk_members(c, pk, inst, NULL, true, &ignored)) ok = false;
            if (!ok && !c->errors) return false;
        }
    }
    if (!ok && !c->errors) return false;
    if (found < pk->req.n) ok = report_missing(c, &pk->req, inst);
    return ok;
}

static bool kw_object(vctx *c, const kw *k, json_t *inst, ann *a)
{
    switch (k->kind) {
    case KW_REQUIRED:
        for (size_t i = 0; i < k->u.req.n; i++)
            if (!json_object_getn(inst, k->u.req.s[i], k->u.req.len[i]))
                return report_missing(c, &k->u.req, inst);
        return true;
    case KW_MIN_PROPERTIES: {
        size_t n = json_object_size(inst);
        if (n >= k->u.count) return true;
        return v_error(c, "minProperties", "must have at least %zu propert%s, got %zu", k->u.count,
                       k->u.count == 1 ? "y" : "ies", n);
    }
    case KW_MAX_PROPERTIES: {
        size_t n = json_object_size(inst);
        if (n <= k->u.count) return true;
        return v_error(c, "maxProperties", "must have at most %zu propert%s, got %zu", k->u.count,
                       k->u.count == 1 ? "y" : "ies", n);
    }
    case KW_DEPENDENT_REQUIRED: {
        bool ok = true;
        for (size_t i = 0; i < k->u.depreq.n; i++) {
            const dep_req *d = &k->u.depreq.e[i];
            if (!json_object_getn(inst, d->name, d->len)) continue;
            for (size_t j = 0; j < d->deps.n; j++) {
                if (json_object_getn(inst, d->deps.s[j], d->deps.len[j])) continue;
                ok = v_error_at(c, d->deps.s[j], d->deps.len[j], "dependentRequired",
                                "property \"%s\" is required when \"%s\" is present", d->deps.s[j],
                                d->name);
                if (!c->errors) return false;
            }
        }
        return ok;
    }
    case KW_PROPS:
        return kw_props(c, k, inst, a);
    default: { /* KW_PROPERTY_NAMES */
        bool ok = true;
        const char *key;
        size_t len;
        json_t *v;
        json_object_keylen_foreach(inst, key, len, v)
        {
            json_t *name = json_stringn(key, len);
            if (!v_quiet(c, k->u.sub, name, NULL)) {
                ok = false;
                if (c->errors) {
                    snode *sub = k->u.sub;
                    char *why = explain(c, &sub, 1, name);
                    v_error_at(c, key, len, "propertyNames",
                               "property name \"%.*s\" is not allowed: %s", (int)len, key,
                               *why ? why : "it does not match the propertyNames schema");
                    free(why);
                }
            }
            json_decref(name);
            if (!ok && !c->errors) return false;
        }
        return ok;
    }
    }
}

/* A slot of kw_unique's hash set: an item's hash and index + 1 (0: empty). */
typedef struct hslot {
    uint64_t h;
    size_t i1;
} hslot;

static bool kw_unique(vctx *c, json_t *inst)
{
    size_t n = json_array_size(inst);
    size_t di = 0, dj = 0;
    bool dup = false;
    /* every item is looked at: paid first; a long array twice over (a hash set of its
     * items: about 100 ns an item, mostly cache misses) */
    if (!v_pay(c, (long)(n > 16 ? 2 * n : n))) return false;
    vwork w = v_work(c);
    if (n <= 16) {
        for (size_t i = 0; i < n && !dup && w.done <= w.cap; i++)
            for (size_t j = i + 1; j < n && !dup; j++)
                if (json_eq(json_array_get(inst, i), json_array_get(inst, j), 0, &w))
                    dup = true, di = i, dj = j;
    } else {
        /* one pass over a hash set, O(n): the first item equal to an earlier one */
        size_t cap = 32;
        while (cap < 2 * n)
            cap <<= 1;
        hslot *set = xcalloc(cap, sizeof *set);
        for (size_t j = 0; j < n && !dup && w.done <= w.cap; j++) {
            json_t *v = json_array_get(inst, j);
            uint64_t h = json_hash(v, 0, &w);
            for (size_t at = (size_t)h & (cap - 1);; at = (at + 1) & (cap - 1)) {
                if (!set[at].i1) {
                    set[at].h = h;
                    set[at].i1 = j + 1;
                    break;
                }
                if (set[at].h != h) continue;
                w.done++; /* a collision costs a comparison: count it */
                if (json_eq(json_array_get(inst, set[at].i1 - 1), v, 0, &w)) {
                    dup = true, di = set[at].i1 - 1, dj = j;
                    break;
                }
            }
        }
        free(set);
    }
    if (w.done && !v_pay(c, w.done)) return false;
    if (!dup) return true;
    return v_error(c, "uniqueItems", "items %zu and %zu are equal; items must be unique", di, dj);
}

static bool kw_array(vctx *c, const kw *k, json_t *inst, ann *a)
{
    size_t n = json_array_size(inst);
    switch (k->kind) {
    case KW_MIN_ITEMS:
        if (n >= k->u.count) return true;
        return v_error(c, "minItems", "must have at least %zu item%s, got %zu", k->u.count,
                       PLURAL(k->u.count), n);
    case KW_MAX_ITEMS:
        if (n <= k->u.count) return true;
        return v_error(c, "maxItems", "must have at most %zu item%s, got %zu", k->u.count,
                       PLURAL(k->u.count), n);
    case KW_UNIQUE_ITEMS:
        return kw_unique(c, inst);
    case KW_ITEMS: {
        bool ok = true;
        size_t np = k->u.items.nprefix, i = 0;
        for (; i < n && i < np; i++) {
            if (a) ann_set(a, i);
            if (!v_child(c, k->u.items.prefix[i], json_array_get(inst, i), NULL, 0, i,
                         "prefixItems")) {
                ok = false;
                if (!c->errors) return false;
            }
        }
        const snode *rest = k->u.items.rest;
        if (!rest || i >= n) return ok;
        if (a) a->all = true;
        if (rest->kind == SN_FALSE) {
            return v_error_item(c, i, "items",
                                "no item is allowed here: the array may have at most %zu item%s",
                                np, PLURAL(np));
        }
        for (; i < n; i++) {
            if (!v_child(c, rest, json_array_get(inst, i), NULL, 0, i, "items")) {
                ok = false;
                if (!c->errors) return false;
            }
        }
        return ok;
    }
    default: { /* KW_CONTAINS */
        size_t min = k->u.contains.min, max = k->u.contains.max, count = 0;
        bool exhaustive = a || max != SIZE_MAX;
        for (size_t i = 0; i < n; i++) {
            json_t *saved = c->errors;
            c->errors = NULL;
            bool m = v_child(c, k->u.contains.sub, json_array_get(inst, i), NULL, 0, i, "contains");
            c->errors = c->over ? NULL : saved; /* once over budget, every walk stops at once */
            if (!m) continue;
            count++;
            if (a) ann_set(a, i);
            if (count > max) break;
            if (!exhaustive && count >= min) break;
        }
        if (count > max)
            return v_error(c, "maxContains",
                           "must contain at most %zu item%s matching the contains schema", max,
                           PLURAL(max));
        if (count >= min) return true;
        if (!c->errors) return false;
        if (min == 1) {
            snode *sub = k->u.contains.sub;
            char *why = n ? explain(c, &sub, 1, json_array_get(inst, 0)) : xstrdup("");
            v_error(c, "contains", "must contain an item matching the contains schema%s%s%s",
                    *why ? " (item 0: " : "", why, *why ? ")" : "");
            free(why);
            return false;
        }
        return v_error(c, "minContains",
                       "must contain at least %zu items matching the contains schema, got %zu", min,
                       count);
    }
    }
}

static bool kw_anyof(vctx *c, const kw *k, json_t *inst, ann *a)
{
    bool any = false;
    for (size_t i = 0; i < k->u.list.n; i++) {
        if (a) {
            ann b;
            ann_init(&b, a->n);
            if (v_quiet(c, k->u.list.v[i], inst, &b)) {
                any = true;
                ann_merge(a, &b);
            }
            ann_dispose(&b);
        } else if (v_quiet(c, k->u.list.v[i], inst, NULL)) {
            return true;
        }
    }
    if (any) return true;
    if (!c->errors) return false;
    char *why = explain(c, k->u.list.v, k->u.list.n, inst);
    v_error(c, "anyOf", "must match at least one of the %zu anyOf schemas%s%s", k->u.list.n,
            *why ? ": " : "", why);
    free(why);
    return false;
}

static bool kw_oneof(vctx *c, const kw *k, json_t *inst, ann *a)
{
    size_t matches = 0, first = 0, second = 0;
    ann keep = {0};
    if (a) ann_init(&keep, a->n);
    for (size_t i = 0; i < k->u.list.n && matches < 2; i++) {
        ann b = {0};
        if (a) ann_init(&b, a->n);
        if (v_quiet(c, k->u.list.v[i], inst, a ? &b : NULL)) {
            if (matches++ == 0) {
                first = i;
                if (a) ann_merge(&keep, &b);
            } else {
                second = i;
            }
        }
        if (a) ann_dispose(&b);
    }
    if (a) {
        if (matches == 1) ann_merge(a, &keep);
        ann_dispose(&keep);
    }
    if (matches == 1) return true;
    if (!c->errors) return false;
    if (matches > 1)
        return v_error(
            c, "oneOf",
            "must match exactly one of the oneOf schemas, but matches schemas %zu and %zu",
            first + 1, second + 1);
    char *why = explain(c, k->u.list.v, k->u.list.n, inst);
    v_error(c, "oneOf", "must match exactly one of the %zu oneOf schemas, but matches none%s%s",
            k->u.list.n, *why ? ": " : "", why);
    free(why);
    return false;
}

static bool kw_if(vctx *c, const kw *k, json_t *inst, ann *a)
{
    if (!a && !k->u.ifs.then && !k->u.ifs.els) return true; /* `if` alone only annotates */
    bool cond;
    if (a) {
        ann b;
        ann_init(&b, a->n);
        cond = v_quiet(c, k->u.ifs.cond, inst, &b);
        if (cond) ann_merge(a, &b);
        ann_dispose(&b);
    } else {
        cond = v_quiet(c, k->u.ifs.cond, inst, NULL);
    }
    const snode *next = cond ? k->u.ifs.then : k->u.ifs.els;
    return next ? v_node(c, next, inst, a, cond ? "then" : "else") : true;
}

static const snode *dynamic_target(const vctx *c, const kw *k)
{
    if (!k->u.dyn.anchor) return k->u.dyn.target;
    for (int i = 0; i < c->nscope; i++) {
        const resource *r = c->scope[i];
        for (size_t j = 0; j < r->ndyn; j++)
            if (strcmp(r->dyn[j].name, k->u.dyn.anchor) == 0) return r->dyn[j].node;
    }
    return k->u.dyn.target;
}

static bool kw_unevaluated(vctx *c, const kw *k, json_t *inst, ann *a)
{
    const snode *sub = k->u.sub;
    bool ok = true;
    if (k->kind == KW_UNEVALUATED_PROPERTIES) {
        size_t i = 0;
        for (void *it = json_object_iter(inst); it; it = json_object_iter_next(inst, it), i++) {
            if (ann_get(a, i)) continue;
            const char *key = json_object_iter_key(it);
            size_t len = json_object_iter_key_len(it);
            bool good =
                sub->kind == SN_FALSE
                    ? v_error_at(c, key, len, "unevaluatedProperties",
                                 "property \"%.*s\" is not allowed (no subschema declares it)",
                                 (int)len, key)
                    : v_child(c, sub, json_object_iter_value(it), key, len, 0,
                              "unevaluatedProperties");
            if (!good) {
                ok = false;
                if (!c->errors) return false;
            }
        }
    } else {
        size_t n = json_array_size(inst);
        for (size_t i = 0; i < n; i++) {
            if (ann_get(a, i)) continue;
            bool good;
            if (sub->kind == SN_FALSE) {
                good = v_error_item(c, i, "unevaluatedItems",
                                    "item %zu is not allowed (no subschema declares it)", i);
            } else {
                good = v_child(c, sub, json_array_get(inst, i), NULL, 0, i, "unevaluatedItems");
            }
            if (!good) {
                ok = false;
                if (!c->errors) return false;
            }
        }
    }
    a->all = true;
    return ok;
}

static bool v_kw(vctx *c, const kw *k, json_t *inst, unsigned t, ann *a)
{
    switch (k->kind) {
    case KW_TYPE:
        return kw_type(c, k, inst, t);
    case KW_CONST:
        return kw_const(c, k, inst);
    case KW_ENUM:
        return kw_enum(c, k, inst);
    case KW_MIN_LENGTH:
    case KW_MAX_LENGTH:
    case KW_PATTERN:
    case KW_FORMAT:
        return kw_string(c, k, inst);
    case KW_MINIMUM:
    case KW_MAXIMUM:
    case KW_EXCL_MINIMUM:
    case KW_EXCL_MAXIMUM:
    case KW_MULTIPLE_OF:
        return kw_number(c, k, inst);
    case KW_REQUIRED:
    case KW_MIN_PROPERTIES:
    case KW_MAX_PROPERTIES:
    case KW_DEPENDENT_REQUIRED:
    case KW_PROPS:
    case KW_PROPERTY_NAMES:
        return kw_object(c, k, inst, a);
    case KW_MIN_ITEMS:
    case KW_MAX_ITEMS:
    case KW_UNIQUE_ITEMS:
    case KW_ITEMS:
    case KW_CONTAINS:
        return kw_array(c, k, inst, a);
    case KW_REF:
        return v_node(c, k->u.sub, inst, a, "$ref");
    case KW_DYNAMIC_REF:
        return v_node(c, dynamic_target(c, k), inst, a, "$dynamicRef");
    case KW_ALL_OF: {
        bool ok = true;
        for (size_t i = 0; i < k->u.list.n; i++) {
            if (!v_node(c, k->u.list.v[i], inst, a, "allOf")) {
                ok = false;
                if (!c->errors) return false;
            }
        }
        return ok;
    }
    case KW_ANY_OF:
        return kw_anyof(c, k, inst, a);
    case KW_ONE_OF:
        return kw_oneof(c, k, inst, a);
    case KW_NOT:
        if (!v_quiet(c, k->u.sub, inst, NULL)) return true;
        return v_error(c, "not", "must not match the schema in \"not\"");
    case KW_IF:
        return kw_if(c, k, inst, a);
    case KW_DEPENDENT_SCHEMAS: {
        bool ok = true;
        for (size_t i = 0; i < k->u.depsch.n; i++) {
            const dep_schema *d = &k->u.depsch.e[i];
            if (!json_object_getn(inst, d->name, d->len)) continue;
            if (!v_node(c, d->sub, inst, a, "dependentSchemas")) {
                ok = false;
                if (!c->errors) return false;
            }
        }
        return ok;
    }
    case KW_UNEVALUATED_PROPERTIES:
    case KW_UNEVALUATED_ITEMS:
        return kw_unevaluated(c, k, inst, a);
    }
    return true;
}

/* ------------------------------------------------------------------- nodes */

static bool v_node(vctx *c, const snode *n, json_t *inst, ann *a, const char *kwname)
{
    if (n->kind == SN_TRUE) return true;
    if (n->kind == SN_FALSE)
        return v_error(c, *kwname ? kwname : "false", "no value is allowed here");
    if (c->eval >= SCHEMA_MAX_EVAL_DEPTH)
        return v_error(
            c, "$ref",
            "schema evaluation nests deeper than %d levels (a $ref cycle that never descends "
            "into the value?)",
            SCHEMA_MAX_EVAL_DEPTH);
    if (++c->visits > c->visit_cap && !v_recap(c)) return false;
    c->eval++;
    bool pushed = false;
    if (c->dynamic && (c->nscope == 0 || c->scope[c->nscope - 1] != n->res)) {
        c->scope[c->nscope++] = n->res;
        pushed = true;
    }
    unsigned t = inst_type(inst);
    ann local, *use = a;
    bool own = false;
    if ((n->flags & SNF_UNEVAL_PROPS) && t == T_OBJ) {
        ann_init(&local, json_object_size(inst));
        use = &local;
        own = true;
    } else if ((n->flags & SNF_UNEVAL_ITEMS) && t == T_ARR) {
        ann_init(&local, json_array_size(inst));
        use = &local;
        own = true;
    }
    bool ok = true;
    /* locals: stores through c may alias n; kws is NULL for a schema with no keywords */
    const kw *k = n->kws, *end = k ? k + n->nkw : k;
    for (; k < end; k++) {
        if (!(k->applies & t)) continue;
        if (!v_kw(c, k, inst, t, use)) {
            ok = false;
            if (!c->errors) break;
        }
    }
    if (own) {
        if (ok && a) ann_merge(a, &local);
        ann_dispose(&local);
    }
    if (pushed) c->nscope--;
    c->eval--;
    return ok;
}

bool schema_validate_budget(const schema *s, json_t *instance, const char *path_prefix, int index,
                            json_t *errors, schema_budget *budget)
{
    schema_budget local = {0};
    if (!budget) budget = &local;
    long long max_nodes = budget->max_nodes > 0 ? budget->max_nodes : SCHEMA_DEFAULT_MAX_NODES;
    long long max_steps = budget->max_steps > 0 ? budget->max_steps : SCHEMA_DEFAULT_MAX_STEPS;
    if (!instance) { /* a caller's bug, answered rather than crashed on */
        if (json_is_array(errors))
            json_array_append_new(
                errors, problem_error(index, path_prefix ? path_prefix : "", "type", "no value"));
        return false;
    }
    vctx c;
    c.errors = json_is_array(errors) ? errors : NULL;
    c.prefix = path_prefix ? path_prefix : "";
    c.index = index;
    c.nerr = 0;
    c.depth = 0;
    c.eval = 0;
    c.visits = 0;
    c.walked = 0;
    c.nodes_left = max_nodes - budget->nodes;
    c.meter.left = max_steps - budget->steps;
    c.meter.match_steps = SCHEMA_MATCH_STEPS;
    c.meter.match_steps_per_byte = SCHEMA_MATCH_STEPS_PER_BYTE;
    c.over = SCHEMA_WITHIN_BUDGET;
    c.over_path = NULL;
    c.visit_cap =
        (long)(c.nodes_left < SCHEMA_MAX_EVALUATIONS ? c.nodes_left : SCHEMA_MAX_EVALUATIONS);
    c.exhausted = false;
    c.explaining = false;
    c.dynamic = s->dynamic;
    c.nscope = 0;
    long long steps_at_start = c.meter.left;
    bool ok;
    if (budget->over || c.nodes_left <= 0 || c.meter.left <= 0) {
        c.over = budget->over        ? budget->over
                 : c.nodes_left <= 0 ? SCHEMA_OVER_NODES
                                     : SCHEMA_OVER_STEPS; /* spent before this call */
        ok = false;
    } else {
        ok = v_node(&c, s->root, instance, NULL, "");
        /* a last walk under `true` is paid after the fact */
        if (!c.over && !c.exhausted && c.visits > c.nodes_left) v_stop(&c, SCHEMA_OVER_NODES);
        budget->nodes += c.visits;
        budget->steps += steps_at_start - c.meter.left;
    }
    if (c.over) {
        budget->over = c.over;
        if (c.errors || json_is_array(errors)) {
            /* this call's violations (c.nerr of them: explain() borrows c.errors but puts
             * nerr back) are beside the point: one entry says where it stopped */
            for (int i = 0; i < c.nerr && json_array_size(errors); i++)
                json_array_remove(errors, json_array_size(errors) - 1);
            char msg[200];
            if (c.over == SCHEMA_OVER_NODES)
                snprintf(msg, sizeof msg,
                         "validation stopped here: the budget of %lld schema evaluations is "
                         "used up",
                         max_nodes);
            else
                snprintf(msg, sizeof msg,
                         "validation stopped here: the budget of %lld regex and string steps is "
                         "used up",
                         max_steps);
            json_array_append_new(
                errors,
                problem_error(index, c.over_path ? c.over_path : c.prefix,
                              c.over == SCHEMA_OVER_NODES ? "max_nodes" : "max_steps", msg));
        }
        free(c.over_path);
        return false;
    }
    if (c.exhausted) {
        ok = false;
        c.errors = json_is_array(errors) && c.nerr < SCHEMA_MAX_ERRORS ? errors : NULL;
        c.depth = 0;
        v_error(&c, "complexity",
                "validating this value takes more than %d schema evaluations; Sluice stops there",
                SCHEMA_MAX_EVALUATIONS);
    }
    return ok;
}

bool schema_validate(const schema *s, json_t *instance, const char *path_prefix, int index,
                     json_t *errors)
{
    return schema_validate_budget(s, instance, path_prefix, index, errors, NULL);
}
