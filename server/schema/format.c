/*
 * format.c — checkers for the `format` values Sluice asserts (see format.h).
 *
 * DESIGN
 * Each format is a small hand-written recogniser over the string's bytes,
 * following the grammar its RFC gives (dates and times: RFC 3339; e-mail:
 * RFC 5321/6531; hostnames: RFC 1123 and IDNA2008 for "xn--" labels; IP
 * addresses: RFC 2673/4291; URIs and IRIs: RFC 3986/3987; URI templates:
 * RFC 6570; JSON Pointers: RFC 6901 and draft-handrews-relative-json-pointer).
 * Hand-written rather than regex-based so a UUID or a timestamp costs tens of
 * nanoseconds on the publish path (issue 3's benchmark).
 *
 * IDNA2008 (hostname A-labels, idn-hostname) needs Unicode properties:
 * general category, script, Bidi class. PCRE2 already carries the Unicode
 * database, so the few properties needed are asked of it through
 * one-character patterns compiled once. The derived-property rule (RFC 5892)
 * is approximated: letters that are not upper/title case, marks and decimal
 * digits are PVALID, plus the RFC's exception table and contextual rules
 * (Appendix A); the Bidi rule (RFC 5893) is checked; NFC is not.
 */
#include "format.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "regex.h"

/* ------------------------------------------------------------------ helpers */

/* ASCII character classes, one bit each (bytes >= 0x80 are in none). */
enum {
    CC_ALPHA = 1,
    CC_DIGIT = 2,
    CC_HEX = 4,
    CC_UNRESERVED = 8, /* RFC 3986: ALPHA DIGIT - . _ ~ */
    CC_SUBDELIM = 16,  /* RFC 3986: ! $ & ' ( ) * + , ; = */
    CC_ATEXT = 32,     /* RFC 5322: ALPHA DIGIT ! # $ % & ' * + - / = ? ^ _ ` { | } ~ */
    CC_LDH = 64,       /* letter, digit, hyphen */
    CC_PCHAR = 128,    /* RFC 3986 pchar without pct-encoded: unreserved, sub-delims, : @ */
};

static const uint8_t cclass[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xb0, 0x00, 0x20, 0xb0, 0x20, 0xb0, 0xb0, 0x90, 0x90, 0xb0, 0xb0, 0x90, 0xe8, 0x88, 0x20,
    0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0x80, 0x90, 0x00, 0xb0, 0x00, 0x20,
    0x80, 0xed, 0xed, 0xed, 0xed, 0xed, 0xed, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9,
    0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0x00, 0x00, 0x00, 0x20, 0xa8,
    0x20, 0xed, 0xed, 0xed, 0xed, 0xed, 0xed, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9,
    0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0x20, 0x20, 0x20, 0xa8, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static inline bool cc(int c, unsigned bits)
{
    return (cclass[(unsigned char)c] & bits) != 0;
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(int c)
{
    return cc(c, CC_ALPHA);
}

static bool is_hex(int c)
{
    return cc(c, CC_HEX);
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit((unsigned char)s[i])) return false;
    return true;
}

static int two(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* Decodes one UTF-8 sequence at *p (input is valid UTF-8: jansson checks). */
static uint32_t utf8_next(const unsigned char **p, const unsigned char *end)
{
    const unsigned char *s = *p;
    uint32_t c = *s++;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (more) c &= 0x3F >> more;
    while (more-- && s < end)
        c = (c << 6) | (*s++ & 0x3F);
    *p = s;
    return c;
}

/* ------------------------------------------------------- dates and times */

static bool leap_year(long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool full_date(const char *s, size_t len)
{
    if (len != 10 || s[4] != '-' || s[7] != '-') return false;
    if (!all_digits(s, 4) || !all_digits(s + 5, 2) || !all_digits(s + 8, 2)) return false;
    long y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + two(s + 2);
    int m = two(s + 5), d = two(s + 8);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1) return false;
    int max = mdays[m - 1] + (m == 2 && leap_year(y));
    return d <= max;
}

/* partial-time time-offset, with the leap second allowed only at 23:59:60 UTC. */
static bool full_time(const char *s, size_t len)
{
    if (len < 9 || s[2] != ':' || s[5] != ':') return false;
    if (!all_digits(s, 2) || !all_digits(s + 3, 2) || !all_digits(s + 6, 2)) return false;
    int h = two(s), mi = two(s + 3), sec = two(s + 6);
    if (h > 23 || mi > 59 || sec > 60) return false;
    size_t i = 8;
    if (s[i] == '.') {
        size_t f = ++i;
        while (i < len && is_digit((unsigned char)s[i]))
            i++;
        if (i == f) return false;
    }
    if (i >= len) return false;
    int off = 0; /* minutes east of UTC */
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        if (len - i != 6 || s[i + 3] != ':' || !all_digits(s + i + 1, 2) ||
            !all_digits(s + i + 4, 2))
            return false;
        int oh = two(s + i + 1), om = two(s + i + 4);
        if (oh > 23 || om > 59) return false;
        off = (s[i] == '+' ? 1 : -1) * (oh * 60 + om);
        i += 6;
    } else {
        return false;
    }
    if (i != len) return false;
    if (sec == 60) {
        int utc = ((h * 60 + mi - off) % 1440 + 1440) % 1440;
        if (utc != 23 * 60 + 59) return false;
    }
    return true;
}

static bool fmt_date(const char *s, size_t len)
{
    return full_date(s, len);
}

static bool fmt_time(const char *s, size_t len)
{
    return full_time(s, len);
}

static bool fmt_date_time(const char *s, size_t len)
{
    return len > 11 && (s[10] == 'T' || s[10] == 't') && full_date(s, 10) &&
           full_time(s + 11, len - 11);
}

/* RFC 3339 Appendix A: P(nW | [nY][nM][nD][T[nH][nM][nS]]) with the units of
 * each part contiguous and in order (no "P1Y2D", no "PT1H2S"). */
static bool fmt_duration(const char *s, size_t len)
{
    size_t i = 0;
    if (len < 3 || s[i++] != 'P') return false;
    static const char date_units[] = "YMD", time_units[] = "HMS";
    int last = -1; /* index of the last unit seen in the current part */
    bool any = false, in_time = false;
    while (i < len) {
        if (s[i] == 'T') {
            if (in_time) return false;
            in_time = true;
            last = -1;
            i++;
            if (i == len) return false;
            continue;
        }
        size_t d = i;
        while (i < len && is_digit((unsigned char)s[i]))
            i++;
        if (i == d || i == len) return false;
        char u = s[i++];
        if (u == 'W') {
            return !in_time && !any && i == len;
        }
        const char *units = in_time ? time_units : date_units;
        const char *at = strchr(units, u);
        if (!at || u == '\0') return false;
        int idx = (int)(at - units);
        if (last >= 0 && idx != last + 1) return false;
        last = idx;
        any = true;
    }
    return any && (!in_time || last >= 0);
}

/* ------------------------------------------------------- network addresses */

/* dotted-quad, no leading zeros */
static bool ipv4(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part) {
            if (i >= len || s[i] != '.') return false;
            i++;
        }
        size_t d = i;
        int v = 0;
        while (i < len && is_digit((unsigned char)s[i]) && i - d < 3)
            v = v * 10 + (s[i++] - '0');
        size_t n = i - d;
        if (n == 0 || v > 255 || (n > 1 && s[d] == '0')) return false;
    }
    return i == len;
}

static bool ipv6(const char *s, size_t len)
{
    size_t i = 0;
    int groups = 0;
    bool compressed = false;
    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        compressed = true;
        i = 2;
        if (i == len) return true;
    }
    for (;;) {
        size_t g = i;
        while (i < len && is_hex((unsigned char)s[i]) && i - g < 5)
            i++;
        if (i < len && s[i] == '.') {
            if (!ipv4(s + g, len - g)) return false;
            groups += 2;
            break;
        }
        if (i == g || i - g > 4) return false;
        groups++;
        if (i == len) break;
        if (s[i] != ':') return false;
        i++;
        if (i < len && s[i] == ':') {
            if (compressed) return false;
            compressed = true;
            i++;
            if (i == len) break;
        } else if (i == len) {
            return false;
        }
    }
    return compressed ? groups <= 7 : groups == 8;
}

static bool fmt_ipv4(const char *s, size_t len)
{
    return ipv4(s, len);
}

static bool fmt_ipv6(const char *s, size_t len)
{
    return ipv6(s, len);
}

static bool fmt_uuid(const char *s, size_t len)
{
    if (len != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return false;
    unsigned ok = CC_HEX;
    for (size_t i = 0; i < 36; i++)
        if (i != 8 && i != 13 && i != 18 && i != 23) ok &= cclass[(unsigned char)s[i]];
    return ok != 0;
}

/* ------------------------------------------------- IDNA2008 (A-labels only) */

#define IDNA_MAX_CPS 64

/* RFC 3492 decoding of the part after "xn--"; false when not valid Punycode. */
static bool punycode_decode(const char *in, size_t len, uint32_t *out, size_t *outlen)
{
    enum { BASE = 36, TMIN = 1, TMAX = 26, SKEW = 38, DAMP = 700 };
    size_t b = 0, n_out = 0;
    for (size_t j = 0; j < len; j++)
        if (in[j] == '-') b = j;
    if (b > 0 || (len && in[0] == '-')) {
        if (b > IDNA_MAX_CPS) return false;
        for (size_t j = 0; j < b; j++) {
            if ((unsigned char)in[j] >= 0x80) return false;
            out[n_out++] = (unsigned char)in[j];
        }
        b++;
    }
    uint32_t n = 128, bias = 72;
    uint64_t i = 0;
    for (size_t in_pos = b; in_pos < len;) {
        uint64_t oldi = i, w = 1;
        for (uint32_t k = BASE;; k += BASE) {
            if (in_pos >= len) return false;
            int c = (unsigned char)in[in_pos++];
            uint32_t digit = is_digit(c)              ? (uint32_t)(c - '0' + 26)
                             : (c >= 'a' && c <= 'z') ? (uint32_t)(c - 'a')
                             : (c >= 'A' && c <= 'Z') ? (uint32_t)(c - 'A')
                                                      : BASE;
            if (digit >= BASE) return false;
            i += digit * w;
            if (i > 0x7FFFFFFF) return false;
            uint32_t t = k <= bias ? TMIN : k >= bias + TMAX ? TMAX : k - bias;
            if (digit < t) break;
            w *= BASE - t;
            if (w > 0x7FFFFFFF) return false;
        }
        /* adapt */
        uint64_t delta = (i - oldi) / (oldi == 0 ? DAMP : 2);
        delta += delta / (n_out + 1);
        uint32_t k = 0;
        while (delta > ((BASE - TMIN) * TMAX) / 2) {
            delta /= BASE - TMIN;
            k += BASE;
        }
        bias = k + (uint32_t)(((BASE - TMIN + 1) * delta) / (delta + SKEW));
        n += (uint32_t)(i / (n_out + 1));
        i %= (n_out + 1);
        if (n > 0x10FFFF || (n >= 0xD800 && n <= 0xDFFF) || n_out >= IDNA_MAX_CPS) return false;
        memmove(out + i + 1, out + i, (n_out - i) * sizeof *out);
        out[i++] = n;
        n_out++;
    }
    *outlen = n_out;
    return true;
}

/* Unicode properties asked of PCRE2's tables, one compiled class each. */
enum {
    UP_MARK,
    UP_PVALID,
    UP_GREEK,
    UP_HEBREW,
    UP_HKH,
    UP_TRANSPARENT,
    UP_JOINING,
    UP_BIDI_L,   /* Bidi_Class L */
    UP_BIDI_RTL, /* R or AL */
    UP_BIDI_AN,
    UP_BIDI_EN,
    UP_BIDI_NSM,
    UP_BIDI_RTL_OK, /* RFC 5893 rule 2: R AL AN EN ES CS ET ON BN NSM */
    UP_BIDI_LTR_OK, /* rule 5: L EN ES CS ET ON BN NSM */
    UP_COUNT
};
static regex *uprops[UP_COUNT];
static pthread_once_t uprops_once = PTHREAD_ONCE_INIT;

static void uprops_init(void)
{
    static const char *const src[UP_COUNT] = {
        [UP_MARK] = "^\\p{M}",
        [UP_PVALID] = "^[\\p{Ll}\\p{Lo}\\p{Lm}\\p{Mn}\\p{Mc}\\p{Nd}]",
        [UP_GREEK] = "^\\p{sc=Greek}",
        [UP_HEBREW] = "^\\p{sc=Hebrew}",
        [UP_HKH] = "^[\\p{sc=Hiragana}\\p{sc=Katakana}\\p{sc=Han}]",
        [UP_TRANSPARENT] = "^[\\p{Mn}\\p{Me}\\p{Cf}]",
        [UP_JOINING] = "^[\\p{sc=Arabic}\\p{sc=Syriac}\\p{sc=Nko}\\p{sc=Mongolian}]",
        [UP_BIDI_L] = "^\\p{Bidi_Class=L}",
        [UP_BIDI_RTL] = "^[\\p{Bidi_Class=R}\\p{Bidi_Class=AL}]",
        [UP_BIDI_AN] = "^\\p{Bidi_Class=AN}",
        [UP_BIDI_EN] = "^\\p{Bidi_Class=EN}",
        [UP_BIDI_NSM] = "^\\p{Bidi_Class=NSM}",
        [UP_BIDI_RTL_OK] = "^[\\p{Bidi_Class=R}\\p{Bidi_Class=AL}\\p{Bidi_Class=AN}\\p{Bidi_Class="
                           "EN}\\p{Bidi_Class=ES}"
                           "\\p{Bidi_Class=CS}\\p{Bidi_Class=ET}\\p{Bidi_Class=ON}\\p{Bidi_Class="
                           "BN}\\p{Bidi_Class=NSM}]",
        [UP_BIDI_LTR_OK] = "^[\\p{Bidi_Class=L}\\p{Bidi_Class=EN}\\p{Bidi_Class=ES}\\p{Bidi_Class="
                           "CS}\\p{Bidi_Class=ET}"
                           "\\p{Bidi_Class=ON}\\p{Bidi_Class=BN}\\p{Bidi_Class=NSM}]",
    };
    for (int i = 0; i < UP_COUNT; i++)
        uprops[i] = regex_new_pcre2(src[i]);
}

static bool uprop(int which, uint32_t cp)
{
    pthread_once(&uprops_once, uprops_init);
    char u[4];
    size_t n;
    if (cp < 0x80)
        u[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
        u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    return regex_search(uprops[which], u, n) == REGEX_MATCH;
}

/* Canonical_Combining_Class=Virama (9). */
static bool is_virama(uint32_t c)
{
    static const uint32_t v[] = {
        0x094D,  0x09CD,  0x0A4D,  0x0ACD,  0x0B4D,  0x0BCD,  0x0C4D,  0x0CCD,  0x0D3B,
        0x0D3C,  0x0D4D,  0x0DCA,  0x0E3A,  0x0EBA,  0x0F84,  0x1039,  0x103A,  0x1714,
        0x1715,  0x1734,  0x17D2,  0x1A60,  0x1B44,  0x1BAA,  0x1BAB,  0x1BF2,  0x1BF3,
        0x2D7F,  0xA806,  0xA82C,  0xA8C4,  0xA953,  0xA9C0,  0xAAF6,  0xABED,  0x10A3F,
        0x11046, 0x11070, 0x1107F, 0x110B9, 0x11133, 0x11134, 0x111C0, 0x11235, 0x112EA,
        0x1134D, 0x11442, 0x114C2, 0x115BF, 0x1163F, 0x116B6, 0x1172B, 0x11839, 0x1193D,
        0x1193E, 0x119E0, 0x11A34, 0x11A47, 0x11A99, 0x11C3F, 0x11D44, 0x11D45, 0x11D97,
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] == c) return true;
    return false;
}

/* Arabic letters that join only to the right (Joining_Type=R). */
static bool arabic_right_joining(uint32_t c)
{
    return (c >= 0x0622 && c <= 0x0625) || c == 0x0627 || c == 0x0629 ||
           (c >= 0x062F && c <= 0x0632) || c == 0x0648 || (c >= 0x0671 && c <= 0x0673) ||
           (c >= 0x0675 && c <= 0x0677) || (c >= 0x0688 && c <= 0x0699) || c == 0x06C0 ||
           (c >= 0x06C3 && c <= 0x06CB) || c == 0x06CD || c == 0x06CF || c == 0x06D2 ||
           c == 0x06D3 || c == 0x06D5 || c == 0x06EE || c == 0x06EF;
}

/* RFC 5892 Appendix A.1: ZWNJ between (L|D) T* and T* (R|D) joining types. */
static bool zwnj_joining_context(const uint32_t *cp, size_t n, size_t at)
{
    size_t i = at;
    while (i > 0 && uprop(UP_TRANSPARENT, cp[i - 1]))
        i--;
    if (i == 0 || !uprop(UP_JOINING, cp[i - 1]) || arabic_right_joining(cp[i - 1])) return false;
    size_t j = at + 1;
    while (j < n && uprop(UP_TRANSPARENT, cp[j]))
        j++;
    return j < n && uprop(UP_JOINING, cp[j]);
}

/* RFC 5891 §5.4 checks of a decoded U-label. */
static bool idna_ulabel(const uint32_t *cp, size_t n)
{
    bool non_ascii = false, arabic_digits = false, ext_digits = false;
    if (n == 0 || cp[0] == '-' || cp[n - 1] == '-') return false;
    if (n >= 4 && cp[2] == '-' && cp[3] == '-') return false;
    if (uprop(UP_MARK, cp[0])) return false;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c >= 0x80) non_ascii = true;
        switch (c) {
        case 0x00DF:
        case 0x03C2:
        case 0x06FD:
        case 0x06FE:
        case 0x0F0B:
        case 0x3007:
            continue; /* PVALID exceptions */
        case 0x0640:
        case 0x07FA:
        case 0x302E:
        case 0x302F:
        case 0x3031:
        case 0x3032:
        case 0x3033:
        case 0x3034:
        case 0x3035:
        case 0x303B:
            return false; /* DISALLOWED exceptions */
        case 0x00B7:
            if (i == 0 || i + 1 >= n || cp[i - 1] != 'l' || cp[i + 1] != 'l') return false;
            continue;
        case 0x0375:
            if (i + 1 >= n || !uprop(UP_GREEK, cp[i + 1])) return false;
            continue;
        case 0x05F3:
        case 0x05F4:
            if (i == 0 || !uprop(UP_HEBREW, cp[i - 1])) return false;
            continue;
        case 0x30FB: {
            bool ok = false;
            for (size_t j = 0; j < n && !ok; j++)
                ok = cp[j] != 0x30FB && uprop(UP_HKH, cp[j]);
            if (!ok) return false;
            continue;
        }
        case 0x200D:
            if (i == 0 || !is_virama(cp[i - 1])) return false;
            continue;
        case 0x200C:
            if (!(i > 0 && is_virama(cp[i - 1])) && !zwnj_joining_context(cp, n, i)) return false;
            continue;
        default:
            break;
        }
        if (c >= 0x0660 && c <= 0x0669) arabic_digits = true;
        if (c >= 0x06F0 && c <= 0x06F9) ext_digits = true;
        if (c == '-' || (c < 0x80 && (is_digit((int)c) || (c >= 'a' && c <= 'z')))) continue;
        if (c < 0x80 || !uprop(UP_PVALID, c)) return false;
    }
    return non_ascii && !(arabic_digits && ext_digits);
}

/* ----------------------------------------------------------------- hostname */

/* One LDH label of 1..63 bytes; "xn--" labels must be valid A-labels. */
static bool host_label(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-') return false;
    for (size_t i = 0; i < n; i++)
        if (!cc(s[i], CC_LDH)) return false;
    if (n >= 4 && (s[0] == 'x' || s[0] == 'X') && (s[1] == 'n' || s[1] == 'N') && s[2] == '-' &&
        s[3] == '-') {
        uint32_t cps[IDNA_MAX_CPS];
        size_t ncp;
        if (!punycode_decode(s + 4, n - 4, cps, &ncp)) return false;
        return idna_ulabel(cps, ncp);
    }
    return true;
}

static bool hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253) return false;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!host_label(s + start, i - start)) return false;
            start = i + 1;
        }
    }
    return true;
}

static bool fmt_hostname(const char *s, size_t len)
{
    return hostname(s, len);
}

/* RFC 3492 encoding: the ASCII form (after "xn--") of n code points into
 * out[cap]; false when it does not fit. */
static bool punycode_encode(const uint32_t *cp, size_t n, char *out, size_t cap, size_t *outlen)
{
    enum { BASE = 36, TMIN = 1, TMAX = 26, SKEW = 38, DAMP = 700 };
    size_t o = 0, b = 0;
    for (size_t j = 0; j < n; j++)
        if (cp[j] < 0x80) {
            if (o >= cap) return false;
            out[o++] = (char)cp[j];
            b++;
        }
    if (b > 0) {
        if (o >= cap) return false;
        out[o++] = '-';
    }
    uint32_t m_n = 128, bias = 72;
    uint64_t delta = 0;
    for (size_t h = b; h < n;) {
        uint32_t m = UINT32_MAX;
        for (size_t j = 0; j < n; j++)
            if (cp[j] >= m_n && cp[j] < m) m = cp[j];
        delta += (uint64_t)(m - m_n) * (h + 1);
        m_n = m;
        for (size_t j = 0; j < n; j++) {
            if (cp[j] < m_n) delta++;
            if (cp[j] != m_n) continue;
            uint64_t q = delta;
            for (uint32_t k = BASE;; k += BASE) {
                uint32_t t = k <= bias ? TMIN : k >= bias + TMAX ? TMAX : k - bias;
                if (q < t) break;
                uint64_t d = t + (q - t) % (BASE - t);
                if (o >= cap) return false;
                out[o++] = (char)(d < 26 ? 'a' + d : '0' + d - 26);
                q = (q - t) / (BASE - t);
            }
            if (o >= cap) return false;
            out[o++] = (char)(q < 26 ? 'a' + q : '0' + q - 26);
            /* adapt */
            uint64_t dd = delta / (h == b ? DAMP : 2);
            dd += dd / (h + 1);
            uint32_t k = 0;
            while (dd > ((BASE - TMIN) * TMAX) / 2) {
                dd /= BASE - TMIN;
                k += BASE;
            }
            bias = k + (uint32_t)(((BASE - TMIN + 1) * dd) / (dd + SKEW));
            delta = 0;
            h++;
        }
        delta++;
        m_n++;
    }
    *outlen = o;
    return true;
}

/* RFC 5893 §2: the Bidi rule for one label of a Bidi domain name. */
static bool bidi_label_ok(const uint32_t *cp, size_t n)
{
    if (n == 0) return false;
    bool rtl;
    if (uprop(UP_BIDI_RTL, cp[0]))
        rtl = true;
    else if (uprop(UP_BIDI_L, cp[0]))
        rtl = false;
    else
        return false; /* rule 1 */
    bool en = false, an = false;
    size_t last = n;
    for (size_t i = 0; i < n; i++) {
        if (!uprop(rtl ? UP_BIDI_RTL_OK : UP_BIDI_LTR_OK, cp[i])) return false; /* rules 2, 5 */
        en |= uprop(UP_BIDI_EN, cp[i]);
        an |= uprop(UP_BIDI_AN, cp[i]);
        if (!uprop(UP_BIDI_NSM, cp[i])) last = i;
    }
    if (last == n) return false;
    if (rtl) { /* rules 3, 4 */
        uint32_t e = cp[last];
        if (!(uprop(UP_BIDI_RTL, e) || uprop(UP_BIDI_EN, e) || uprop(UP_BIDI_AN, e))) return false;
        return !(en && an);
    }
    return uprop(UP_BIDI_L, cp[last]) || uprop(UP_BIDI_EN, cp[last]); /* rule 6 */
}

/* RFC 5890-5893 internationalised host name: labels split at any of the four
 * IDNA full stops, each an LDH label, an A-label ("xn--", canonical Punycode
 * of a valid U-label) or a U-label; 63 octets per label and 253 in all in
 * A-label form; the Bidi rule when any label is right-to-left. NFC is not
 * checked. */
static bool fmt_idn_hostname(const char *s, size_t len)
{
    enum { MAX_LABELS = 128 };
    uint32_t cps[MAX_LABELS][IDNA_MAX_CPS];
    size_t ncps[MAX_LABELS], nlabels = 0, total = 0;
    bool any_rtl = false;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    if (len == 0) return false;
    for (;;) {
        /* one label: up to a separator or the end */
        if (nlabels == MAX_LABELS) return false;
        uint32_t *cp = cps[nlabels];
        size_t n = 0;
        bool ascii = true;
        while (p < end) {
            const unsigned char *q = p;
            uint32_t c = utf8_next(&q, end);
            if (c == '.' || c == 0x3002 || c == 0xFF0E || c == 0xFF61) break;
            if (n == IDNA_MAX_CPS) return false;
            cp[n++] = c;
            ascii &= c < 0x80;
            p = q;
        }
        if (n == 0) return false;
        size_t alen;
        if (ascii) {
            char label[IDNA_MAX_CPS];
            for (size_t i = 0; i < n; i++)
                label[i] = (char)cp[i];
            if (!host_label(label, n)) return false;
            alen = n;
            if (n >= 4 && (label[0] | 0x20) == 'x' && (label[1] | 0x20) == 'n' && label[2] == '-' &&
                label[3] == '-') {
                /* an A-label: decode, and insist the encoding is canonical */
                if (!punycode_decode(label + 4, n - 4, cp, &n)) return false;
                char again[IDNA_MAX_CPS];
                size_t elen;
                if (!punycode_encode(cp, n, again, sizeof again, &elen) || elen != alen - 4)
                    return false;
                for (size_t i = 0; i < elen; i++)
                    if ((label[4 + i] | (is_alpha(label[4 + i]) ? 0x20 : 0)) != again[i])
                        return false;
            }
        } else {
            if (!idna_ulabel(cp, n)) return false;
            char a[IDNA_MAX_CPS];
            size_t elen;
            if (!punycode_encode(cp, n, a, sizeof a, &elen) || elen + 4 > 63) return false;
            alen = elen + 4;
        }
        for (size_t i = 0; i < n; i++)
            any_rtl |= cp[i] >= 0x80 && (uprop(UP_BIDI_RTL, cp[i]) || uprop(UP_BIDI_AN, cp[i]));
        ncps[nlabels++] = n;
        total += alen;
        if (p == end) break;
        (void)utf8_next(&p, end); /* the separator */
        total++;
        if (p == end) return false; /* trailing separator */
    }
    if (total > 253) return false;
    if (any_rtl)
        for (size_t i = 0; i < nlabels; i++)
            if (!bidi_label_ok(cps[i], ncps[i])) return false;
    return true;
}

/* ------------------------------------------------------------------- e-mail */

static bool atext(int c)
{
    return cc(c, CC_ATEXT);
}

/* RFC 5321 Mailbox; `intl` (RFC 6531) also allows UTF-8 in the local part and
 * non-ASCII domain labels. */
static bool email(const char *s, size_t len, bool intl)
{
    size_t i = 0;
    if (len == 0) return false;
    if (s[0] == '"') {
        for (i = 1; i < len && s[i] != '"'; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\\') {
                if (++i >= len || (unsigned char)s[i] < 0x20) return false;
            } else if ((c < 0x20 && c != '\t') || c == 0x7F || (c >= 0x80 && !intl)) {
                return false;
            }
        }
        if (i >= len) return false;
        i++;
    } else {
        bool dot_ok = false;
        while (i < len && s[i] != '@') {
            unsigned char c = (unsigned char)s[i];
            if (c == '.') {
                if (!dot_ok) return false;
                dot_ok = false;
            } else if (atext(c) || (intl && c >= 0x80)) {
                dot_ok = true;
            } else {
                return false;
            }
            i++;
        }
        if (!dot_ok) return false;
    }
    if (i > 64 || i >= len || s[i] != '@') return false;
    const char *d = s + i + 1;
    size_t dl = len - i - 1;
    if (dl == 0) return false;
    if (d[0] == '[') {
        if (d[dl - 1] != ']') return false;
        if (dl > 7 && strncmp(d + 1, "IPv6:", 5) == 0) return ipv6(d + 6, dl - 7);
        return ipv4(d + 1, dl - 2);
    }
    if (!intl) return hostname(d, dl);
    /* internationalised domain: labels of LDH or non-ASCII, no edge hyphens */
    size_t start = 0;
    for (size_t j = 0; j <= dl; j++) {
        if (j == dl || d[j] == '.') {
            size_t n = j - start;
            if (n == 0 || d[start] == '-' || d[j - 1] == '-') return false;
            for (size_t k = start; k < j; k++) {
                unsigned char c = (unsigned char)d[k];
                if (c < 0x80 && !is_alpha(c) && !is_digit(c) && c != '-') return false;
            }
            start = j + 1;
        }
    }
    return true;
}

static bool fmt_email(const char *s, size_t len)
{
    return email(s, len, false);
}

static bool fmt_idn_email(const char *s, size_t len)
{
    return email(s, len, true);
}

/* -------------------------------------------------------------- URIs, IRIs */

typedef struct uri_scan {
    const unsigned char *p;   /* next byte */
    const unsigned char *end; /* one past the last */
    bool iri;                 /* RFC 3987: ucschar allowed */
} uri_scan;

static bool sub_delim(int c)
{
    return cc(c, CC_SUBDELIM);
}

static bool unreserved(int c)
{
    return cc(c, CC_UNRESERVED);
}

/* Consumes one pct-encoded triplet, unreserved, sub-delim, ucschar (IRI) or a
 * byte from `extra`. False (nothing consumed) otherwise. */
static bool uri_char(uri_scan *u, const char *extra)
{
    if (u->p >= u->end) return false;
    int c = *u->p;
    if (cc(c, CC_UNRESERVED | CC_SUBDELIM)) {
        u->p++;
        return true;
    }
    if (c == '%') {
        if (u->end - u->p < 3 || !is_hex(u->p[1]) || !is_hex(u->p[2])) return false;
        u->p += 3;
        return true;
    }
    if (c >= 0x80) {
        if (!u->iri) return false;
        (void)utf8_next(&u->p, u->end);
        return true;
    }
    if (c != 0 && strchr(extra, c)) {
        u->p++;
        return true;
    }
    return false;
}

static bool uri_authority(uri_scan *u)
{
    const unsigned char *a = u->p, *end = a;
    while (end < u->end && *end != '/' && *end != '?' && *end != '#')
        end++;
    const unsigned char *at = memchr(a, '@', (size_t)(end - a));
    uri_scan s = *u;
    s.end = end;
    if (at) {
        while (s.p < at && uri_char(&s, ":")) {
        }
        if (s.p != at) return false;
        s.p = at + 1;
    }
    if (s.p < end && *s.p == '[') {
        const unsigned char *close = memchr(s.p, ']', (size_t)(end - s.p));
        if (!close) return false;
        const char *h = (const char *)s.p + 1;
        size_t hl = (size_t)(close - s.p) - 1;
        if (hl > 0 && (h[0] == 'v' || h[0] == 'V')) {
            size_t i = 1;
            while (i < hl && is_hex((unsigned char)h[i]))
                i++;
            if (i == 1 || i >= hl || h[i] != '.' || i + 1 == hl) return false;
            for (i++; i < hl; i++)
                if (!unreserved((unsigned char)h[i]) && !sub_delim((unsigned char)h[i]) &&
                    h[i] != ':')
                    return false;
        } else if (!ipv6(h, hl)) {
            return false;
        }
        s.p = close + 1;
    } else {
        while (s.p < end && uri_char(&s, "")) {
        }
    }
    if (s.p < end && *s.p == ':') {
        s.p++;
        while (s.p < end && is_digit(*s.p))
            s.p++;
    }
    if (s.p != end) return false;
    u->p = end;
    return true;
}

/* Path characters up to '?', '#' or the end. `noscheme`: the first segment
 * may not contain ':'. */
static bool uri_path(uri_scan *u, bool noscheme)
{
    bool first_segment = true;
    while (u->p < u->end && *u->p != '?' && *u->p != '#') {
        if (!noscheme && cc(*u->p, CC_UNRESERVED | CC_SUBDELIM)) {
            u->p++;
        } else if (*u->p == '/') {
            first_segment = false;
            u->p++;
        } else if (*u->p == ':' && noscheme && first_segment) {
            return false;
        } else if (!uri_char(u, ":@")) {
            return false;
        }
    }
    return true;
}

static bool uri_query_fragment(uri_scan *u)
{
    if (u->p < u->end && *u->p == '?') {
        u->p++;
        while (u->p < u->end && *u->p != '#')
            if (!uri_char(u, ":@/?")) return false;
    }
    if (u->p < u->end && *u->p == '#') {
        u->p++;
        while (u->p < u->end)
            if (!uri_char(u, ":@/?")) return false;
    }
    return u->p == u->end;
}

/* URI / IRI (absolute, scheme required) or -reference (relative allowed). */
static bool uri(const char *str, size_t len, bool iri, bool reference)
{
    uri_scan u = {
        .p = (const unsigned char *)str, .end = (const unsigned char *)str + len, .iri = iri};
    bool scheme = false;
    if (len && is_alpha(u.p[0])) {
        const unsigned char *q = u.p + 1;
        while (q < u.end && (is_alpha(*q) || is_digit(*q) || *q == '+' || *q == '-' || *q == '.'))
            q++;
        if (q < u.end && *q == ':') {
            scheme = true;
            u.p = q + 1;
        }
    }
    if (!scheme && !reference) return false;
    if (u.end - u.p >= 2 && u.p[0] == '/' && u.p[1] == '/') {
        u.p += 2;
        if (!uri_authority(&u)) return false;
        if (u.p < u.end && *u.p != '/' && *u.p != '?' && *u.p != '#') return false;
    }
    if (!uri_path(&u, !scheme)) return false;
    return uri_query_fragment(&u);
}

static bool fmt_uri(const char *s, size_t len)
{
    return uri(s, len, false, false);
}

static bool fmt_uri_reference(const char *s, size_t len)
{
    return uri(s, len, false, true);
}

static bool fmt_iri(const char *s, size_t len)
{
    return uri(s, len, true, false);
}

static bool fmt_iri_reference(const char *s, size_t len)
{
    return uri(s, len, true, true);
}

/* RFC 6570 level 4. */
static bool fmt_uri_template(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        int c = *p;
        if (c == '{') {
            p++;
            if (p < end && strchr("+#./;?&", *p) && *p) p++;
            for (;;) {
                /* varname: varchar *(["."] varchar) */
                bool need = true;
                for (;;) {
                    if (p < end && *p == '%') {
                        if (end - p < 3 || !is_hex(p[1]) || !is_hex(p[2])) return false;
                        p += 3;
                    } else if (p < end && (is_alpha(*p) || is_digit(*p) || *p == '_')) {
                        p++;
                    } else {
                        if (need) return false;
                        break;
                    }
                    need = false;
                    if (p < end && *p == '.') {
                        p++;
                        need = true;
                    }
                }
                if (p < end && *p == ':') {
                    p++;
                    const unsigned char *d = p;
                    while (p < end && is_digit(*p))
                        p++;
                    if (p == d || p - d > 4 || *d == '0') return false;
                } else if (p < end && *p == '*') {
                    p++;
                }
                if (p < end && *p == ',') {
                    p++;
                    continue;
                }
                break;
            }
            if (p >= end || *p != '}') return false;
            p++;
        } else if (c == '%') {
            if (end - p < 3 || !is_hex(p[1]) || !is_hex(p[2])) return false;
            p += 3;
        } else if (c >= 0x80) {
            (void)utf8_next(&p, end);
        } else if (c <= 0x20 || c == 0x7F || strchr("\"<>\\^`|}", c)) {
            return false;
        } else {
            p++;
        }
    }
    return true;
}

/* ------------------------------------------------------------ JSON Pointers */

static bool json_pointer(const char *s, size_t len)
{
    if (len && s[0] != '/') return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '~' && (i + 1 >= len || (s[i + 1] != '0' && s[i + 1] != '1'))) return false;
    return true;
}

static bool fmt_json_pointer(const char *s, size_t len)
{
    return json_pointer(s, len);
}

static bool fmt_relative_json_pointer(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && is_digit((unsigned char)s[i]))
        i++;
    if (i == 0 || (i > 1 && s[0] == '0')) return false;
    if (i < len && s[i] == '#') return i + 1 == len;
    return json_pointer(s + i, len - i);
}

static bool fmt_regex(const char *s, size_t len)
{
    return regex_valid(s, len);
}

/* ------------------------------------------------------------------- lookup */

static const struct {
    const char *name;
    format_fn fn;
    const char *hint;
} formats[] = {
    {"date-time", fmt_date_time, "RFC 3339, e.g. 2024-03-18T09:41:07Z"},
    {"date", fmt_date, "RFC 3339 full-date, e.g. 2024-03-18"},
    {"time", fmt_time, "RFC 3339 full-time with offset, e.g. 09:41:07Z"},
    {"duration", fmt_duration, "RFC 3339 duration, e.g. P1DT12H"},
    {"email", fmt_email, "RFC 5321 address, e.g. ada@example.com"},
    {"idn-email", fmt_idn_email, "RFC 6531 address, e.g. ada@example.com"},
    {"hostname", fmt_hostname, "RFC 1123 host name, e.g. api.example.com"},
    {"idn-hostname", fmt_idn_hostname, "IDNA2008 host name, e.g. bücher.example"},
    {"ipv4", fmt_ipv4, "dotted quad, e.g. 192.0.2.1"},
    {"ipv6", fmt_ipv6, "RFC 4291 address, e.g. 2001:db8::1"},
    {"uri", fmt_uri, "absolute RFC 3986 URI, e.g. https://example.com/a"},
    {"uri-reference", fmt_uri_reference, "RFC 3986 URI or relative reference, e.g. ../a?b"},
    {"iri", fmt_iri, "absolute RFC 3987 IRI, e.g. https://例子.example/a"},
    {"iri-reference", fmt_iri_reference, "RFC 3987 IRI or relative reference"},
    {"uri-template", fmt_uri_template, "RFC 6570 template, e.g. /users/{id}"},
    {"uuid", fmt_uuid, "RFC 4122, e.g. 2eb8aa08-aa98-11ea-b4aa-73b441d16380"},
    {"json-pointer", fmt_json_pointer, "RFC 6901, e.g. /data/file_id"},
    {"relative-json-pointer", fmt_relative_json_pointer, "e.g. 1/file_id"},
    {"regex", fmt_regex, "an ECMA-262 regular expression"},
};

const char *format_hint(const char *name)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(formats[i].name, name) == 0) return formats[i].hint;
    return "";
}

const char *const format_names[] = {
    "date-time",    "date",
    "time",         "duration",
    "email",        "idn-email",
    "hostname",     "idn-hostname",
    "ipv4",         "ipv6",
    "uri",          "uri-reference",
    "iri",          "iri-reference",
    "uri-template", "uuid",
    "json-pointer", "relative-json-pointer",
    "regex",        NULL,
};

format_fn format_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(formats[i].name, name) == 0) return formats[i].fn;
    return NULL;
}
