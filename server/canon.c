/*
 * canon.c — JSON writers for the publish path (see canon.h).
 */
#include "canon.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANON_STACK_KEYS 32 /* an object's members sorted without a heap array */

typedef struct member {
    const char *key;
    size_t len;
    json_t *value;
} member;

static const char hex[] = "0123456789ABCDEF";

static void put_u4(buf *b, unsigned cp)
{
    char seq[6] = {'\\',        'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15],
                   hex[cp & 15]};
    buf_append(b, seq, 6);
}

/* Decodes one UTF-8 sequence at s (valid: jansson checked it); returns its length. */
static size_t utf8_next(const unsigned char *s, unsigned *cp)
{
    if (s[0] < 0x80) return *cp = s[0], 1;
    if (s[0] < 0xE0) return *cp = ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu), 2;
    if (s[0] < 0xF0)
        return *cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu), 3;
    *cp = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
    return 4;
}

/* A string as jansson's dump_string writes it (ascii: JSON_ENSURE_ASCII). */
static void put_string(buf *b, const char *str, size_t len, bool ascii)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len, *run = s;
    buf_append(b, "\"", 1);
    while (s < end) {
        /* The common bytes, eight at a time: none below 0x20, no quote or backslash, and
         * (ascii) none at or above 0x80. */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            uint64_t lo = (w - 0x2020202020202020ULL) & ~w; /* bytes < 0x20 (or ≥ 0x80) */
            uint64_t q = w ^ 0x2222222222222222ULL, bs = w ^ 0x5C5C5C5C5C5C5C5CULL;
            uint64_t hit =
                lo | ((q - 0x0101010101010101ULL) & ~q) | ((bs - 0x0101010101010101ULL) & ~bs);
            if (ascii) hit |= w;
            if (hit & 0x8080808080808080ULL) break;
            s += 8;
        }
        if (s >= end) break;
        unsigned c = *s;
        if (c >= 0x20 && c != '"' && c != '\\' && (c < 0x80 || !ascii)) {
            s++;
            continue;
        }
        if (s > run) buf_append(b, (const char *)run, (size_t)(s - run));
        unsigned cp;
        size_t n = utf8_next(s, &cp);
        switch (cp) {
        case '\\':
            buf_append(b, "\\\\", 2);
            break;
        case '"':
            buf_append(b, "\\\"", 2);
            break;
        case '\b':
            buf_append(b, "\\b", 2);
            break;
        case '\f':
            buf_append(b, "\\f", 2);
            break;
        case '\n':
            buf_append(b, "\\n", 2);
            break;
        case '\r':
            buf_append(b, "\\r", 2);
            break;
        case '\t':
            buf_append(b, "\\t", 2);
            break;
        default:
            if (cp < 0x10000) {
                put_u4(b, cp);
            } else {
                cp -= 0x10000;
                put_u4(b, 0xD800 | ((cp & 0xffc00) >> 10));
                put_u4(b, 0xDC00 | (cp & 0x003ff));
            }
        }
        s += n;
        run = s;
    }
    if (s > run) buf_append(b, (const char *)run, (size_t)(s - run));
    buf_append(b, "\"", 1);
}

static int dump_piece(const char *text, size_t size, void *data)
{
    buf_append(data, text, size);
    return 0;
}

/* jansson's key order: bytes, then length. */
static int member_cmp(const void *a, const void *b)
{
    const member *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->key, y->key, n);
    if (r) return r;
    return x->len < y->len ? -1 : x->len > y->len;
}

static void put_value(buf *b, const json_t *v, bool canonical);

static void put_object(buf *b, const json_t *v, bool canonical)
{
    size_t n = json_object_size(v);
    if (n == 0) {
        buf_append(b, "{}", 2);
        return;
    }
    member stack[CANON_STACK_KEYS];
    member *m = n <= CANON_STACK_KEYS ? stack : xmalloc(n * sizeof *m);
    size_t k = 0;
    for (void *it = json_object_iter((json_t *)v); it && k < n;
         it = json_object_iter_next((json_t *)v, it))
        m[k++] = (member){json_object_iter_key(it), json_object_iter_key_len(it),
                          json_object_iter_value(it)};
    if (canonical) {
        if (k <= CANON_STACK_KEYS) { /* insertion sort: objects are small */
            for (size_t i = 1; i < k; i++) {
                member x = m[i];
                size_t j = i;
                while (j > 0 && member_cmp(&m[j - 1], &x) > 0) {
                    m[j] = m[j - 1];
                    j--;
                }
                m[j] = x;
            }
        } else {
            qsort(m, k, sizeof *m, member_cmp);
        }
    }
    buf_append(b, "{", 1);
    for (size_t i = 0; i < k; i++) {
        if (i) buf_append(b, ",", 1);
        put_string(b, m[i].key, m[i].len, canonical);
        buf_append(b, ":", 1);
        put_value(b, m[i].value, canonical);
    }
    buf_append(b, "}", 1);
    if (m != stack) free(m);
}

static void put_value(buf *b, const json_t *v, bool canonical)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        put_object(b, v, canonical);
        break;
    case JSON_ARRAY: {
        buf_append(b, "[", 1);
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i) buf_append(b, ",", 1);
            put_value(b, json_array_get(v, i), canonical);
        }
        buf_append(b, "]", 1);
        break;
    }
    case JSON_STRING:
        put_string(b, json_string_value(v), json_string_length(v), canonical);
        break;
    case JSON_INTEGER: {
        char num[24];
        int n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        buf_append(b, num, (size_t)n);
        break;
    }
    case JSON_REAL: /* jansson's own number format, exactly */
        json_dump_callback(v, dump_piece, b, JSON_COMPACT | JSON_ENCODE_ANY);
        break;
    case JSON_TRUE:
        buf_append(b, "true", 4);
        break;
    case JSON_FALSE:
        buf_append(b, "false", 5);
        break;
    case JSON_NULL:
        buf_append(b, "null", 4);
        break;
    }
}

void canon_canonical(buf *b, const json_t *v)
{
    put_value(b, v, true);
}

void canon_compact(buf *b, const json_t *v)
{
    put_value(b, v, false);
}
