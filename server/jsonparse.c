/*
 * jsonparse.c — the pointer-walking JSON parser (see jsonparse.h).
 */
#include "jsonparse.h"
#include "mem.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSONPARSE_MAX_DEPTH 256 /* deeper: jansson decides (its limit is 2048) */

typedef struct parser {
    const unsigned char *p, *end;
    int depth;
} parser;

static json_t *parse_value(parser *ps);

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

/* Length of the valid UTF-8 sequence (2-4 bytes) at s, or 0 (jansson's rules: no
 * overlongs, no surrogates, nothing past U+10FFFF). */
static size_t utf8_valid(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    size_t n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if ((size_t)(end - s) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(buf *b, unsigned cp)
{
    char o[4];
    size_t n;
    if (cp < 0x80)
        o[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
        o[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    buf_append(b, o, n);
}

/* A string after its opening quote. Plain strings point into the input (*out, *len);
 * strings with escapes are decoded into `tmp`. Returns false to decline. */
static bool parse_string(parser *ps, buf *tmp, const char **out, size_t *len)
{
    const unsigned char *s = ps->p, *run = s;
    bool escaped = false;
    tmp->len = 0;
    for (;;) {
        if (s >= ps->end) return false;
        unsigned c = *s;
        if (c == '"') break;
        if (c < 0x20) return false;
        if (c >= 0x80) {
            size_t n = utf8_valid(s, ps->end);
            if (!n) return false;
            s += n;
            continue;
        }
        if (c != '\\') {
            s++;
            continue;
        }
        escaped = true;
        buf_append(tmp, (const char *)run, (size_t)(s - run));
        if (ps->end - s < 2) return false;
        unsigned e = s[1];
        s += 2;
        switch (e) {
        case '"':
            buf_append(tmp, "\"", 1);
            break;
        case '\\':
            buf_append(tmp, "\\", 1);
            break;
        case '/':
            buf_append(tmp, "/", 1);
            break;
        case 'b':
            buf_append(tmp, "\b", 1);
            break;
        case 'f':
            buf_append(tmp, "\f", 1);
            break;
        case 'n':
            buf_append(tmp, "\n", 1);
            break;
        case 'r':
            buf_append(tmp, "\r", 1);
            break;
        case 't':
            buf_append(tmp, "\t", 1);
            break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - s < 4 || hex4(s, &cp) < 0 || cp == 0) return false;
            s += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->end - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(tmp, cp);
            break;
        }
        default:
            return false;
        }
        run = s;
    }
    if (escaped) {
        buf_append(tmp, (const char *)run, (size_t)(s - run));
        *out = tmp->data;
        *len = tmp->len;
    } else {
        *out = (const char *)ps->p;
        *len = (size_t)(s - ps->p);
    }
    ps->p = s + 1;
    return true;
}

static json_t *parse_number(parser *ps)
{
    const unsigned char *s = ps->p, *start = s;
    bool neg = false, real = false;
    if (s < ps->end && *s == '-') neg = true, s++;
    if (s >= ps->end || *s < '0' || *s > '9') return NULL;
    if (*s == '0') {
        s++;
    } else {
        while (s < ps->end && *s >= '0' && *s <= '9')
            s++;
    }
    if (s < ps->end && *s == '.') {
        real = true;
        s++;
        if (s >= ps->end || *s < '0' || *s > '9') return NULL;
        while (s < ps->end && *s >= '0' && *s <= '9')
            s++;
    }
    if (s < ps->end && (*s == 'e' || *s == 'E')) {
        real = true;
        s++;
        if (s < ps->end && (*s == '+' || *s == '-')) s++;
        if (s >= ps->end || *s < '0' || *s > '9') return NULL;
        while (s < ps->end && *s >= '0' && *s <= '9')
            s++;
    }
    ps->p = s;
    if (!real) {
        /* Digits accumulate as a negative number, the wider half of the range. */
        long long v = 0;
        for (const unsigned char *d = start + neg; d < s; d++) {
            int digit = *d - '0';
            if (v < (LLONG_MIN + digit) / 10) return NULL; /* too big: jansson's error */
            v = v * 10 - digit;
        }
        if (!neg) {
            if (v == LLONG_MIN) return NULL;
            v = -v;
        }
        return json_integer((json_int_t)v);
    }
    char num[64];
    size_t n = (size_t)(s - start);
    if (n >= sizeof num) return NULL;
    memcpy(num, start, n);
    num[n] = '\0';
    errno = 0;
    double d = strtod(num, NULL);
    if (isinf(d) || isnan(d)) return NULL; /* jansson: "real number overflow" */
    return json_real(d);
}

static bool literal(parser *ps, const char *word, size_t n)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return false;
    ps->p += n;
    return true;
}

static json_t *parse_object(parser *ps)
{
    json_t *o = json_object();
    buf tmp;
    buf_init(&tmp);
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return o;
    }
    for (;;) {
        skip_ws(ps);
        const char *key;
        size_t klen;
        if (ps->p >= ps->end || *ps->p != '"') goto decline;
        ps->p++;
        if (!parse_string(ps, &tmp, &key, &klen)) goto decline;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') goto decline;
        ps->p++;
        size_t before = json_object_size(o);
        /* The key must outlive parse_value, which may reuse no buffer of ours: copy
         * a decoded key first. */
        char *owned = key == tmp.data ? buf_steal(&tmp, NULL) : NULL;
        json_t *v = parse_value(ps);
        if (!v || json_object_setn_new_nocheck(o, owned ? owned : key, klen, v) != 0 ||
            json_object_size(o) == before) { /* a duplicate key: jansson's error */
            free(owned);
            goto decline;
        }
        free(owned);
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        goto decline;
    }
    buf_dispose(&tmp);
    return o;
decline:
    buf_dispose(&tmp);
    json_decref(o);
    return NULL;
}

static json_t *parse_array(parser *ps)
{
    json_t *a = json_array();
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return a;
    }
    for (;;) {
        json_t *v = parse_value(ps);
        if (!v || json_array_append_new(a, v) != 0) goto decline;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return a;
        }
        goto decline;
    }
decline:
    json_decref(a);
    return NULL;
}

static json_t *parse_value(parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end) return NULL;
    switch (*ps->p) {
    case '{':
    case '[': {
        if (++ps->depth > JSONPARSE_MAX_DEPTH) return NULL;
        bool obj = *ps->p++ == '{';
        json_t *v = obj ? parse_object(ps) : parse_array(ps);
        ps->depth--;
        return v;
    }
    case '"': {
        buf tmp;
        buf_init(&tmp);
        const char *s;
        size_t n;
        ps->p++;
        json_t *v = parse_string(ps, &tmp, &s, &n) ? json_stringn_nocheck(s, n) : NULL;
        buf_dispose(&tmp);
        return v;
    }
    case 't':
        return literal(ps, "true", 4) ? json_true() : NULL;
    case 'f':
        return literal(ps, "false", 5) ? json_false() : NULL;
    case 'n':
        return literal(ps, "null", 4) ? json_null() : NULL;
    default:
        return parse_number(ps);
    }
}

json_t *jsonparse_load(const char *text, size_t len)
{
    parser ps = {.p = (const unsigned char *)text, .end = (const unsigned char *)text + len};
    json_t *v = parse_value(&ps);
    if (!v) return NULL;
    skip_ws(&ps);
    if (ps.p != ps.end) { /* trailing bytes: jansson's error */
        json_decref(v);
        return NULL;
    }
    return v;
}

json_t *jsonparse_body(const char *text, size_t len, json_error_t *err)
{
    json_t *v = jsonparse_load(text, len);
    if (v) return v;
    return json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, err);
}

json_t *jsonparse_stored(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    if (!v) v = json_loads(text, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    return v;
}
