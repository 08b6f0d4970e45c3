/*
 * jsonscan.c — JSON Pointer lookups on JSON text (see jsonscan.h).
 */
#include "jsonscan.h"

#include <string.h>

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Past a string whose opening quote c->p is on. False if it does not end. */
static bool skip_string(cursor *c)
{
    for (c->p++; c->p < c->end; c->p++) {
        if (*c->p == '\\') {
            if (c->end - c->p < 2) return false; /* never step past the end */
            c->p++;
        } else if (*c->p == '"') {
            c->p++;
            return true;
        }
    }
    return false;
}

/* Past the value c->p is on (whitespace before it already skipped). */
static bool skip_value(cursor *c)
{
    if (c->p >= c->end) return false;
    if (*c->p == '"') return skip_string(c);
    if (*c->p == '{' || *c->p == '[') {
        int depth = 0;
        while (c->p < c->end) {
            char ch = *c->p;
            if (ch == '"') {
                if (!skip_string(c)) return false;
                continue;
            }
            if (ch == '{' || ch == '[') depth++;
            if (ch == '}' || ch == ']') {
                if (--depth == 0) {
                    c->p++;
                    return true;
                }
            }
            c->p++;
        }
        return false;
    }
    const char *start = c->p;
    for (; c->p < c->end; c->p++) {
        char ch = *c->p;
        if (ch == ',' || ch == ']' || ch == '}' || ch == ' ' || ch == '\t' || ch == '\n' ||
            ch == '\r')
            break;
    }
    return c->p > start;
}

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Unescapes the string body [s, e) (quotes excluded) into dst. -1 if malformed or
 * longer than cap-1 bytes. */
static long unescape(const char *s, const char *e, char *dst, size_t cap)
{
    size_t n = 0;
    while (s < e) {
        unsigned cp;
        if (*s != '\\') {
            if (n + 1 >= cap) return -1;
            dst[n++] = *s++;
            continue;
        }
        if (e - s < 2) return -1;
        char esc = s[1];
        s += 2;
        switch (esc) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            int hi = e - s >= 4 ? hex4(s) : -1;
            if (hi < 0) return -1;
            s += 4;
            cp = (unsigned)hi;
            if (hi >= 0xD800 && hi <= 0xDBFF) {
                int lo = e - s >= 6 && s[0] == '\\' && s[1] == 'u' ? hex4(s + 2) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) return -1;
                s += 6;
                cp = 0x10000 + (((unsigned)hi - 0xD800) << 10) + ((unsigned)lo - 0xDC00);
            }
            break;
        }
        default: return -1;
        }
        char u[4];
        int k;
        if (cp < 0x80) {
            u[0] = (char)cp;
            k = 1;
        } else if (cp < 0x800) {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            k = 2;
        } else if (cp < 0x10000) {
            u[0] = (char)(0xE0 | (cp >> 12));
            u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[2] = (char)(0x80 | (cp & 0x3F));
            k = 3;
        } else {
            u[0] = (char)(0xF0 | (cp >> 18));
            u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[3] = (char)(0x80 | (cp & 0x3F));
            k = 4;
        }
        if (n + (size_t)k >= cap) return -1;
        memcpy(dst + n, u, (size_t)k);
        n += (size_t)k;
    }
    dst[n] = '\0';
    return (long)n;
}

/* True when the key string c->p is on (its opening quote) equals `seg`; c->p ends
 * past the key. */
static bool key_equals(cursor *c, const char *seg, size_t seg_len, bool *ok)
{
    const char *start = c->p + 1;
    if (!skip_string(c)) {
        *ok = false;
        return false;
    }
    const char *body_end = c->p - 1;
    size_t raw = (size_t)(body_end - start);
    if (!memchr(start, '\\', raw)) return raw == seg_len && memcmp(start, seg, raw) == 0;
    if (raw < seg_len) return false; /* an escape never makes a key longer */
    char tmp[512];
    long n = unescape(start, body_end, tmp, sizeof tmp);
    return n == (long)seg_len && memcmp(tmp, seg, seg_len) == 0;
}

/* The array index a token names, or -1. */
static long array_index(const char *seg)
{
    size_t n = strlen(seg);
    if (n == 0 || n > 9 || (n > 1 && seg[0] == '0')) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (seg[i] < '0' || seg[i] > '9') return -1;
        v = v * 10 + (seg[i] - '0');
    }
    return v;
}

/* Moves c->p onto the member `seg` of the object c->p is on. */
static bool enter_object(cursor *c, const char *seg)
{
    size_t seg_len = strlen(seg);
    c->p++;
    for (;;) {
        skip_ws(c);
        if (c->p >= c->end || *c->p != '"') return false; /* '}' or malformed */
        bool ok = true;
        bool match = key_equals(c, seg, seg_len, &ok);
        if (!ok) return false;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':') return false;
        c->p++;
        skip_ws(c);
        if (match) return c->p < c->end;
        if (!skip_value(c)) return false;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ',') return false;
        c->p++;
    }
}

/* Moves c->p onto element `seg` of the array c->p is on. */
static bool enter_array(cursor *c, const char *seg)
{
    long want = array_index(seg);
    if (want < 0) return false;
    c->p++;
    for (long i = 0;; i++) {
        skip_ws(c);
        if (c->p >= c->end || *c->p == ']') return false;
        if (i == want) return true;
        if (!skip_value(c)) return false;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ',') return false;
        c->p++;
    }
}

bool jsonscan_find(const char *text, size_t len, char *const *segs, int n_segs,
                   jsonscan_value *out)
{
    cursor c = {text, text + len};
    skip_ws(&c);
    for (int i = 0; i < n_segs; i++) {
        if (c.p >= c.end) return false;
        bool in = *c.p == '{' ? enter_object(&c, segs[i])
                  : *c.p == '[' ? enter_array(&c, segs[i])
                                : false;
        if (!in) return false;
    }
    if (c.p >= c.end) return false;
    switch (*c.p) {
    case '{': out->kind = JSONSCAN_OBJECT; break;
    case '[': out->kind = JSONSCAN_ARRAY; break;
    case '"': out->kind = JSONSCAN_STRING; break;
    case 't': out->kind = JSONSCAN_TRUE; break;
    case 'f': out->kind = JSONSCAN_FALSE; break;
    case 'n': out->kind = JSONSCAN_NULL; break;
    default: out->kind = JSONSCAN_NUMBER; break;
    }
    out->start = c.p;
    if (!skip_value(&c)) return false;
    out->end = c.p;
    return true;
}

long jsonscan_string(const jsonscan_value *v, char *dst, size_t cap)
{
    if (v->kind != JSONSCAN_STRING || v->end - v->start < 2 || cap == 0) return -1;
    return unescape(v->start + 1, v->end - 1, dst, cap);
}
