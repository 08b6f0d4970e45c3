/*
 * regex.c — ECMA-262 patterns translated to PCRE2 and matched (see regex.h).
 *
 * DESIGN
 * A single left-to-right pass over the ECMA pattern writes the PCRE2 pattern.
 * It tracks just enough state to refuse what ECMA's `u` mode refuses: whether
 * the previous token may take a quantifier, group nesting, and whether it is
 * inside a character class. Everything PCRE2 spells differently is rewritten:
 *
 *   ECMA                 PCRE2
 *   .                    [^\n\r\x{2028}\x{2029}]
 *   \s  \S               the ECMA WhiteSpace+LineTerminator set, or its complement
 *   \v                   \x{0b}           (PCRE2's \v is a class)
 *   \cX  \0  \xHH        \x{..}
 *   \uHHHH \u{H..}       \x{..}           (surrogate pairs joined)
 *   \1 .. \99            \g{N}            (never octal)
 *   \p{Letter} \p{gc=L}  \p{L}            (general-category long names)
 *   [..\S..]             (?>[..]|[^ws])   (PCRE2 has no class difference)
 *
 * The translation also writes checkpoints, PCRE2 callouts that meter a match
 * (regex_search_metered; see regex.h): `(?C0)` first (each start position),
 * after every `|` and after every quantifier but an exact {n} — every place
 * a match resumes after backtracking — and `(?C1)` before every
 * backreference; tr_finish then drops the two an anchored pattern does not
 * need. Callouts are zero-width and PCRE2's start-of-match and
 * auto-possessive optimizations look through them, so they change no answer;
 * unmetered matches run with no callout function and PCRE2 skips them. The
 * one alternation the translation adds itself, `(?>[..]|[^ws])` for a class
 * holding \S, is atomic: both branches match the same single character, so
 * backtracking into it could only repeat work (exponentially, under a `*`).
 *
 * The compiled code is JIT-compiled when the platform allows. Each thread
 * keeps one pcre2_match_data and one pcre2_match_context (a pthread key,
 * freed when the thread exits), so matching allocates nothing after a
 * thread's first match and the meter a match charges is the thread's own.
 */
#include "regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

struct regex {
    pcre2_code *code; /* owned; read-only once compiled */
    bool jit;         /* code was JIT-compiled: match with pcre2_jit_match */
    bool tail;        /* tr_finish left the trailing checkpoint out: a match pays for the scan */
    char *source;     /* the ECMA pattern, NUL-terminated; owned */
};

/* Match limits: a pattern/subject pair needing more is REGEX_TOO_COMPLEX.
 * PCRE2 applies the match limit per start position (see regex.h). */
#define REGEX_MATCH_LIMIT 1000000u
#define REGEX_DEPTH_LIMIT 10000u
#define REGEX_HEAP_LIMIT_KIB 16384u
/* Each thread's JIT stack (PCRE2's default is 32 KiB of the machine stack):
 * deep backtracking stays in the JIT, metered at its speed, instead of
 * starting over in the interpreter when the stack runs out. */
#define REGEX_JIT_STACK_START (32u * 1024)
#define REGEX_JIT_STACK_MAX (1024u * 1024)

/* The checkpoints written into a translated pattern (regex_search_metered):
 * "(?Cn)", n = CP_* bits. CP_TAIL marks every checkpoint of a pattern whose
 * trailing one was left out (see tr_finish). */
#define CP_BACKREF 1 /* before a backreference */
#define CP_TAIL 2    /* also charge for a scan to the end of the subject */
#define CP_LEN 5     /* strlen("(?C0)") */
/* A metered match pays MATCH_STEPS (a JIT call costs about as much as a few
 * checkpoints) and 1 step per SUBJECT_BYTES_PER_STEP bytes of subject. */
#define MATCH_STEPS 8
#define SUBJECT_BYTES_PER_STEP 64
/* What a scan to the end of the subject costs where a checkpoint was left out
 * (tr_finish): 1 step per this many bytes (a scan is about 1 ns a byte). */
#define TAIL_BYTES_PER_STEP 4
/* PCRE2's interpreter (no JIT, or the JIT's stack ran out) does a checkpoint's
 * worth of work 3 to 6 times slower than the JIT: its steps cost this many. */
#define INTERPRETER_WEIGHT 4

/* ---------------------------------------------------------------- translation */

/* ECMA-262 WhiteSpace and LineTerminator code points, as class members. */
#define ECMA_WS                                                                                    \
    "\\t\\n\\x{0b}\\f\\r "                                                                         \
    "\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}"

typedef struct tr {
    bool unsupported;         /* the error is a PCRE2 limitation, not bad ECMA */
    const unsigned char *p;   /* next input byte */
    const unsigned char *end; /* one past the last input byte */
    buf out;                  /* the PCRE2 pattern being written */
    char *err;                /* first error (owned), or NULL */
    int depth;                /* open groups */
    size_t *cps;              /* offsets in out of the checkpoints written (owned) */
    size_t ncps, cpcap;
    size_t tail_cp; /* the last quantifier's checkpoint, if only ) and $ follow it */
    bool top_alt;   /* a | outside every group */
    bool any_alt;   /* a | anywhere */
    bool tail;      /* tr_finish left the trailing checkpoint out, none before it */
} tr;

#define NO_CP ((size_t)-1)

/* Writes a checkpoint of kind `bits` (CP_*). */
static void tr_checkpoint(tr *t, int bits)
{
    if (t->ncps == t->cpcap) {
        t->cpcap = t->cpcap ? 2 * t->cpcap : 16;
        t->cps = xrealloc(t->cps, t->cpcap * sizeof *t->cps);
    }
    t->cps[t->ncps++] = t->out.len;
    buf_printf(&t->out, "(?C%d)", bits);
}

static bool tr_fail(tr *t, const char *msg)
{
    if (!t->err) t->err = xstrdup(msg);
    return false;
}

static void emit_cp(buf *b, uint32_t cp)
{
    buf_printf(b, "\\x{%x}", (unsigned)cp);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads exactly n hex digits; -1 when they are not there. */
static long read_hex(tr *t, int n)
{
    long v = 0;
    for (int i = 0; i < n; i++) {
        if (t->p >= t->end || hexval(*t->p) < 0) return -1;
        v = v * 16 + hexval(*t->p++);
    }
    return v;
}

/* After "\u": \uHHHH (joining a following \uDC00-\uDFFF) or \u{H...}. */
static bool tr_unicode_escape(tr *t, uint32_t *cp)
{
    if (t->p < t->end && *t->p == '{') {
        t->p++;
        uint32_t v = 0;
        int n = 0;
        while (t->p < t->end && hexval(*t->p) >= 0) {
            v = v * 16 + (uint32_t)hexval(*t->p++);
            if (v > 0x10FFFF) return tr_fail(t, "\\u{...} escape beyond U+10FFFF");
            n++;
        }
        if (n == 0 || t->p >= t->end || *t->p != '}')
            return tr_fail(t, "malformed \\u{...} escape");
        t->p++;
        *cp = v;
    } else {
        long v = read_hex(t, 4);
        if (v < 0) return tr_fail(t, "\\u must be followed by four hex digits");
        *cp = (uint32_t)v;
        if (v >= 0xD800 && v <= 0xDBFF && t->end - t->p >= 6 && t->p[0] == '\\' && t->p[1] == 'u') {
            const unsigned char *save = t->p;
            t->p += 2;
            long lo = read_hex(t, 4);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                *cp = 0x10000 + (((uint32_t)v - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            } else {
                t->p = save;
            }
        }
    }
    if (*cp >= 0xD800 && *cp <= 0xDFFF) {
        t->unsupported = true;
        return tr_fail(t, "lone UTF-16 surrogates cannot be matched by PCRE2");
    }
    return true;
}

/* ECMA General_Category long names and aliases → PCRE2's short names. */
static const char *const gc_names[][2] = {
    {"Other", "C"},
    {"Control", "Cc"},
    {"cntrl", "Cc"},
    {"Format", "Cf"},
    {"Unassigned", "Cn"},
    {"Private_Use", "Co"},
    {"Surrogate", "Cs"},
    {"Letter", "L"},
    {"Cased_Letter", "LC"},
    {"Lowercase_Letter", "Ll"},
    {"Modifier_Letter", "Lm"},
    {"Other_Letter", "Lo"},
    {"Titlecase_Letter", "Lt"},
    {"Uppercase_Letter", "Lu"},
    {"Mark", "M"},
    {"Combining_Mark", "M"},
    {"Spacing_Mark", "Mc"},
    {"Enclosing_Mark", "Me"},
    {"Nonspacing_Mark", "Mn"},
    {"Number", "N"},
    {"Decimal_Number", "Nd"},
    {"digit", "Nd"},
    {"Letter_Number", "Nl"},
    {"Other_Number", "No"},
    {"Punctuation", "P"},
    {"punct", "P"},
    {"Connector_Punctuation", "Pc"},
    {"Dash_Punctuation", "Pd"},
    {"Close_Punctuation", "Pe"},
    {"Final_Punctuation", "Pf"},
    {"Initial_Punctuation", "Pi"},
    {"Other_Punctuation", "Po"},
    {"Open_Punctuation", "Ps"},
    {"Symbol", "S"},
    {"Currency_Symbol", "Sc"},
    {"Modifier_Symbol", "Sk"},
    {"Math_Symbol", "Sm"},
    {"Other_Symbol", "So"},
    {"Separator", "Z"},
    {"Line_Separator", "Zl"},
    {"Paragraph_Separator", "Zp"},
    {"Space_Separator", "Zs"},
};

static const char *gc_short(const char *name)
{
    for (size_t i = 0; i < sizeof gc_names / sizeof gc_names[0]; i++)
        if (strcmp(name, gc_names[i][0]) == 0) return gc_names[i][1];
    return name;
}

/* After "\p" or "\P": {Name}, {General_Category=V}, {Script=V}, ... */
static bool tr_property(tr *t, buf *o, bool negated)
{
    if (t->p >= t->end || *t->p != '{') return tr_fail(t, "\\p must be followed by {Property}");
    t->p++;
    const unsigned char *start = t->p;
    while (t->p < t->end && *t->p != '}') {
        unsigned char c = *t->p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '='))
            return tr_fail(t, "invalid character in \\p{...}");
        t->p++;
    }
    if (t->p >= t->end || t->p == start) return tr_fail(t, "malformed \\p{...}");
    char name[64];
    size_t n = (size_t)(t->p - start);
    t->p++;
    if (n >= sizeof name) return tr_fail(t, "unknown Unicode property");
    memcpy(name, start, n);
    name[n] = '\0';
    char *eq = strchr(name, '=');
    const char *emit = name;
    char tmp[80];
    if (eq) {
        *eq = '\0';
        const char *val = eq + 1;
        if (strcmp(name, "General_Category") == 0 || strcmp(name, "gc") == 0) {
            emit = gc_short(val);
        } else if (strcmp(name, "Script") == 0 || strcmp(name, "sc") == 0) {
            snprintf(tmp, sizeof tmp, "sc=%s", val);
            emit = tmp;
        } else if (strcmp(name, "Script_Extensions") == 0 || strcmp(name, "scx") == 0) {
            snprintf(tmp, sizeof tmp, "scx=%s", val);
            emit = tmp;
        } else {
            return tr_fail(t, "unknown Unicode property");
        }
    } else if (strcmp(name, "Assigned") == 0) {
        emit = "Cn";
        negated = !negated;
    } else {
        emit = gc_short(name);
    }
    buf_printf(o, "\\%c{%s}", negated ? 'P' : 'p', emit);
    return true;
}

static bool is_syntax_char(int c)
{
    return c && strchr("^$\\.*+?()[]{}|/", c) != NULL;
}

/* One escape after '\'. In a class, `cls` is the class body being written and
 * *has_S is set for \S (handled by the caller). Sets *atom when the escape is
 * something a quantifier may follow. */
static bool tr_escape(tr *t, buf *cls, bool *has_S, bool *atom)
{
    buf *o = cls ? cls : &t->out;
    if (t->p >= t->end) return tr_fail(t, "pattern ends with a lone backslash");
    int c = *t->p++;
    *atom = true;
    switch (c) {
    case 'd':
    case 'D':
    case 'w':
    case 'W':
        buf_printf(o, "\\%c", c);
        return true;
    case 'b':
        if (cls) {
            buf_puts(o, "\\x{8}");
        } else {
            buf_puts(o, "\\b");
            *atom = false;
        }
        return true;
    case 'B':
        if (cls) return tr_fail(t, "\\B is not allowed in a character class");
        buf_puts(o, "\\B");
        *atom = false;
        return true;
    case 's':
        buf_puts(o, cls ? ECMA_WS : "[" ECMA_WS "]");
        return true;
    case 'S':
        if (cls)
            *has_S = true;
        else
            buf_puts(o, "[^" ECMA_WS "]");
        return true;
    case 'f':
        buf_puts(o, "\\f");
        return true;
    case 'n':
        buf_puts(o, "\\n");
        return true;
    case 'r':
        buf_puts(o, "\\r");
        return true;
    case 't':
        buf_puts(o, "\\t");
        return true;
    case 'v':
        buf_puts(o, "\\x{b}");
        return true;
    case 'c': {
        if (t->p >= t->end) return tr_fail(t, "\\c must be followed by a letter");
        int l = *t->p;
        if (!((l >= 'a' && l <= 'z') || (l >= 'A' && l <= 'Z')))
            return tr_fail(t, "\\c must be followed by a letter");
        t->p++;
        emit_cp(o, (uint32_t)(l % 32));
        return true;
    }
    case '0':
        if (t->p < t->end && *t->p >= '0' && *t->p <= '9')
            return tr_fail(t, "octal escapes are not allowed");
        emit_cp(o, 0);
        return true;
    case 'x': {
        long v = read_hex(t, 2);
        if (v < 0) return tr_fail(t, "\\x must be followed by two hex digits");
        emit_cp(o, (uint32_t)v);
        return true;
    }
    case 'u': {
        uint32_t cp = 0;
        if (!tr_unicode_escape(t, &cp)) return false;
        emit_cp(o, cp);
        return true;
    }
    case 'p':
    case 'P':
        return tr_property(t, o, c == 'P');
    case 'k': {
        if (cls) return tr_fail(t, "\\k is not allowed in a character class");
        if (t->p >= t->end || *t->p != '<') return tr_fail(t, "\\k must be followed by <name>");
        const unsigned char *s = ++t->p;
        while (t->p < t->end && *t->p != '>')
            t->p++;
        if (t->p >= t->end || t->p == s) return tr_fail(t, "malformed \\k<name>");
        tr_checkpoint(t, CP_BACKREF);
        buf_puts(o, "\\k<");
        buf_append(o, (const char *)s, (size_t)(t->p - s));
        buf_puts(o, ">");
        t->p++;
        return true;
    }
    case '-':
        if (!cls) return tr_fail(t, "\\- is only allowed in a character class");
        buf_puts(o, "\\-");
        return true;
    default:
        if (c >= '1' && c <= '9') {
            if (cls) return tr_fail(t, "backreferences are not allowed in a character class");
            unsigned long n = (unsigned long)(c - '0');
            while (t->p < t->end && *t->p >= '0' && *t->p <= '9' && n < 100000)
                n = n * 10 + (unsigned long)(*t->p++ - '0');
            tr_checkpoint(t, CP_BACKREF);
            buf_printf(o, "\\g{%lu}", n);
            return true;
        }
        if (is_syntax_char(c)) {
            buf_printf(o, "\\%c", c);
            return true;
        }
        return tr_fail(
            t, "invalid escape (ECMA-262 with the u flag allows only syntax characters after \\)");
    }
}

/* After '[': a character class, through its closing ']'. */
static bool tr_class(tr *t)
{
    bool negated = false;
    if (t->p < t->end && *t->p == '^') {
        negated = true;
        t->p++;
    }
    buf body;
    buf_init(&body);
    bool has_S = false, ok = true;
    for (;;) {
        if (t->p >= t->end) {
            ok = tr_fail(t, "unterminated character class");
            break;
        }
        unsigned char c = *t->p++;
        if (c == ']') break;
        if (c == '\\') {
            bool atom;
            if (!(ok = tr_escape(t, &body, &has_S, &atom))) break;
        } else if (c == '[') {
            buf_puts(&body, "\\[");
        } else if (c == 0) {
            buf_puts(&body, "\\x{0}");
        } else {
            buf_append(&body, (const char *)&c, 1);
        }
    }
    if (ok) {
        const char *b = body.data ? body.data : "";
        if (!has_S)
            buf_printf(&t->out, "[%s%s]", negated ? "^" : "", b);
        else if (!negated)
            buf_printf(&t->out, "(?>[%s]|[^" ECMA_WS "])", b);
        else
            buf_printf(&t->out, "(?![%s])[" ECMA_WS "]", b);
    }
    buf_dispose(&body);
    return ok;
}

/* "{n}", "{n,}" or "{n,m}" at t->p (just after '{'); false if not one.
 * *exact: it was "{n}". */
static bool tr_brace_quantifier(tr *t, bool *exact)
{
    const unsigned char *q = t->p;
    int digits = 0;
    while (q < t->end && *q >= '0' && *q <= '9')
        q++, digits++;
    if (!digits) return false;
    *exact = q >= t->end || *q != ',';
    if (q < t->end && *q == ',') {
        q++;
        while (q < t->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q >= t->end || *q != '}') return false;
    buf_append(&t->out, (const char *)t->p - 1, (size_t)(q - t->p) + 2);
    t->p = q + 1;
    return true;
}

static bool tr_group_open(tr *t)
{
    t->depth++;
    if (t->p >= t->end || *t->p != '?') {
        buf_puts(&t->out, "(");
        return true;
    }
    const unsigned char *q = t->p + 1;
    if (q < t->end && (*q == ':' || *q == '=' || *q == '!')) {
        buf_printf(&t->out, "(?%c", *q);
        t->p = q + 1;
        return true;
    }
    if (q < t->end && *q == '<') {
        q++;
        if (q < t->end && (*q == '=' || *q == '!')) {
            buf_printf(&t->out, "(?<%c", *q);
            t->p = q + 1;
            return true;
        }
        const unsigned char *s = q;
        while (q < t->end && ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || *q == '_' ||
                              (q > s && *q >= '0' && *q <= '9')))
            q++;
        if (q == s || q >= t->end || *q != '>')
            return tr_fail(t, "invalid group name (Sluice allows [A-Za-z_][A-Za-z0-9_]*)");
        buf_puts(&t->out, "(?<");
        buf_append(&t->out, (const char *)s, (size_t)(q - s));
        buf_puts(&t->out, ">");
        t->p = q + 1;
        return true;
    }
    return tr_fail(t, "invalid group: ECMA-262 allows only (?:, (?=, (?!, (?<=, (?<! and (?<name>");
}

/* Translates t->p..t->end into t->out. */
static bool tr_pattern(tr *t)
{
    bool can_quantify = false; /* the previous token is an atom */
    tr_checkpoint(t, 0);
    t->tail_cp = NO_CP;
    while (t->p < t->end) {
        unsigned char c = *t->p++;
        size_t tail_cp = t->tail_cp;
        t->tail_cp = NO_CP; /* unless the token is `)`, `$` or a quantifier */
        switch (c) {
        case '\\': {
            bool atom, has_S = false;
            if (!tr_escape(t, NULL, &has_S, &atom)) return false;
            can_quantify = atom;
            break;
        }
        case '[':
            if (!tr_class(t)) return false;
            can_quantify = true;
            break;
        case '.':
            buf_puts(&t->out, "[^\\n\\r\\x{2028}\\x{2029}]");
            can_quantify = true;
            break;
        case '(':
            /* no checkpoint: entering a group resumes nothing (its first branch is
             * tried first; the others follow a `|`, iterations a quantifier) */
            if (!tr_group_open(t)) return false;
            can_quantify = false;
            break;
        case ')':
            if (t->depth == 0) return tr_fail(t, "unmatched )");
            t->depth--;
            buf_puts(&t->out, ")");
            can_quantify = true;
            t->tail_cp = tail_cp;
            break;
        case '*':
        case '+':
        case '?':
            if (!can_quantify) return tr_fail(t, "nothing to repeat");
            buf_append(&t->out, (const char *)&c, 1);
            if (t->p < t->end && *t->p == '?') buf_puts(&t->out, "?"), t->p++;
            t->tail_cp = t->out.len;
            tr_checkpoint(t, 0);
            can_quantify = false;
            break;
        case '{': {
            bool exact = false;
            if (!tr_brace_quantifier(t, &exact))
                return tr_fail(t, "lone { (write \\{ for a literal brace)");
            if (!can_quantify) return tr_fail(t, "nothing to repeat");
            if (t->p < t->end && *t->p == '?') buf_puts(&t->out, "?"), t->p++;
            if (!exact) { /* {n} leaves nothing to backtrack into: its scan is the next one's Δ */
                t->tail_cp = t->out.len;
                tr_checkpoint(t, 0);
            }
            can_quantify = false;
            break;
        }
        case '}':
            return tr_fail(t, "lone } (write \\} for a literal brace)");
        case ']':
            return tr_fail(t, "lone ] (write \\] for a literal bracket)");
        case '|':
            buf_puts(&t->out, "|");
            tr_checkpoint(t, 0);
            if (t->depth == 0) t->top_alt = true;
            t->any_alt = true;
            can_quantify = false;
            break;
        case '$':
            t->tail_cp = tail_cp;
            /* fall through */
        case '^':
            buf_append(&t->out, (const char *)&c, 1);
            can_quantify = false;
            break;
        case 0:
            buf_puts(&t->out, "\\x{0}");
            can_quantify = true;
            break;
        default:
            buf_append(&t->out, (const char *)&c, 1);
            /* continuation bytes of a UTF-8 sequence follow as literals too */
            can_quantify = true;
            break;
        }
    }
    if (t->depth != 0) return tr_fail(t, "unterminated group");
    return true;
}

/* Removes the checkpoint at offset `at` of t->out. */
static void tr_cut(tr *t, size_t at)
{
    memmove(t->out.data + at, t->out.data + at + CP_LEN, t->out.len - at - CP_LEN);
    t->out.len -= CP_LEN;
    t->out.data[t->out.len] = '\0';
}

/* An anchored pattern (`^` first, no `|` outside a group: one start position)
 * does without its first checkpoint: the match's own charge pays for its one
 * start. With no `|` at all, it also does without the last quantifier's when
 * only `)`s and `$` follow it (the common `^...[a-z]+$`): what that one would
 * have metered — the quantifier's scan and any backtracking into it, at most
 * the rest of the subject each time the match gets there — is charged ahead,
 * by the checkpoint just before it in the text (CP_TAIL: with no alternation,
 * every way to the last quantifier passes that one last), or, when there is
 * none, by the match itself (regex->tail). */
static void tr_finish(tr *t)
{
    if (t->top_alt || t->out.len <= CP_LEN || t->out.data[CP_LEN] != '^') return;
    if (t->tail_cp != NO_CP && !t->any_alt) {
        size_t k = 1; /* cps[] is in text order; cps[0] is the first checkpoint */
        while (t->cps[k] != t->tail_cp)
            k++;
        if (k >= 2)
            t->out.data[t->cps[k - 1] + 3] |= CP_TAIL; /* '0' -> '2', '1' -> '3' */
        else
            t->tail = true;
        tr_cut(t, t->tail_cp);
    }
    tr_cut(t, 0);
}

/* -------------------------------------------------------------- compile/match */

static pthread_once_t regex_once = PTHREAD_ONCE_INIT;
static pthread_key_t regex_tls_key;

/* What one thread matches with. */
typedef struct regex_tls {
    pcre2_match_data *md;
    pcre2_jit_stack *jit_stack;
    pcre2_match_context *mctx;    /* the limits, no callout: unmetered matches */
    pcre2_match_context *metered; /* the limits and checkpoint(), called with this struct */
    regex_meter *meter;           /* the meter of the metered match running */
    long long weight;             /* what a checkpoint's step costs: INTERPRETER_WEIGHT or 1 */
} regex_tls;

static int checkpoint(pcre2_callout_block *cb, void *data);

static void tls_destroy(void *p)
{
    regex_tls *tls = p;
    pcre2_match_data_free(tls->md);
    pcre2_jit_stack_free(tls->jit_stack);
    pcre2_match_context_free(tls->mctx);
    pcre2_match_context_free(tls->metered);
    free(tls);
}

static void regex_init_once(void)
{
    if (pthread_key_create(&regex_tls_key, tls_destroy) != 0) abort();
}

static regex_tls *thread_tls(void)
{
    regex_tls *tls = pthread_getspecific(regex_tls_key);
    if (!tls) {
        tls = xcalloc(1, sizeof *tls);
        tls->md = pcre2_match_data_create(1, NULL);
        tls->mctx = pcre2_match_context_create(NULL);
        if (!tls->md || !tls->mctx) abort();
        pcre2_set_match_limit(tls->mctx, REGEX_MATCH_LIMIT);
        pcre2_set_depth_limit(tls->mctx, REGEX_DEPTH_LIMIT);
        pcre2_set_heap_limit(tls->mctx, REGEX_HEAP_LIMIT_KIB);
        /* NULL when the JIT is unavailable: then PCRE2 uses its default */
        tls->jit_stack = pcre2_jit_stack_create(REGEX_JIT_STACK_START, REGEX_JIT_STACK_MAX, NULL);
        if (tls->jit_stack) pcre2_jit_stack_assign(tls->mctx, NULL, tls->jit_stack);
        tls->metered = pcre2_match_context_copy(tls->mctx);
        if (!tls->metered) abort();
        pcre2_set_callout(tls->metered, checkpoint, tls);
        if (pthread_setspecific(regex_tls_key, tls) != 0) abort();
    }
    return tls;
}

/* A checkpoint (see regex.h): 1 step plus the distance from the previous one,
 * plus, before a backreference, the most its comparison can read (what is
 * left of the subject, and no more than has been matched). */
static int checkpoint(pcre2_callout_block *cb, void *data)
{
    regex_meter *m = ((regex_tls *)data)->meter;
    size_t pos = cb->current_position;
    size_t d = pos >= m->last ? pos - m->last : m->last - pos;
    size_t rest = cb->subject_length - pos;
    if (cb->callout_number & CP_BACKREF) d += pos < rest ? pos : rest;
    if (cb->callout_number & CP_TAIL) d += rest / TAIL_BYTES_PER_STEP;
    m->last = pos;
    m->left -= ((long long)d + 1) * ((regex_tls *)data)->weight;
    return m->left < m->stop ? PCRE2_ERROR_CALLOUT : 0;
}

/* regex_new; `jit` false leaves the code to the interpreter (a pattern only
 * checked for validity, never matched: JIT-compiling costs ~100 ns a byte). */
static regex *regex_compile(const char *src, size_t len, char **err, bool *unsupported, bool jit)
{
    pthread_once(&regex_once, regex_init_once);
    tr t = {.p = (const unsigned char *)src, .end = (const unsigned char *)src + len};
    buf_init(&t.out);
    regex *r = NULL;
    pcre2_code *code = NULL;
    if (!tr_pattern(&t)) goto out;
    tr_finish(&t);
    int ec;
    PCRE2_SIZE eo;
    code = pcre2_compile((PCRE2_SPTR)(t.out.data ? t.out.data : ""), t.out.len,
                         PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_ALLOW_EMPTY_CLASS |
                             PCRE2_NEVER_BACKSLASH_C,
                         &ec, &eo, NULL);
    if (!code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        /* Most PCRE2 errors here are ECMA errors too (a backreference to a
         * missing group, [z-a], {3,1}); a variable-width lookbehind is valid
         * ECMA that PCRE2 10.42 cannot run. */
        t.unsupported = ec == PCRE2_ERROR_LOOKBEHIND_NOT_FIXED_LENGTH ||
                        ec == PCRE2_ERROR_LOOKBEHIND_TOO_COMPLICATED ||
                        ec == PCRE2_ERROR_LOOKBEHIND_TOO_LONG;
        t.err = xasprintf("%s: %s", t.unsupported ? "PCRE2 cannot run it" : "invalid pattern",
                          (char *)msg);
        goto out;
    }
    r = xmalloc(sizeof *r);
    r->jit = jit && pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0; /* else the interpreter */
    r->tail = t.tail;
    r->code = code;
    code = NULL;
    r->source = xstrndup(src, len);
out:
    if (code) pcre2_code_free(code);
    buf_dispose(&t.out);
    free(t.cps);
    if (err)
        *err = t.err;
    else
        free(t.err);
    if (unsupported) *unsupported = !r && t.unsupported;
    return r;
}

regex *regex_new(const char *src, size_t len, char **err, bool *unsupported)
{
    return regex_compile(src, len, err, unsupported, true);
}

regex *regex_new_pcre2(const char *pcre2_pattern)
{
    pthread_once(&regex_once, regex_init_once);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)pcre2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &eo, NULL);
    if (!code) abort();
    regex *r = xmalloc(sizeof *r);
    r->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    r->tail = false;
    r->code = code;
    r->source = xstrdup(pcre2_pattern);
    return r;
}

int regex_search_metered(const regex *r, const char *s, size_t len, regex_meter *m)
{
    /* regex_new ran regex_init_once; subjects are valid UTF-8 (regex.h) */
    regex_tls *tls = thread_tls();
    pcre2_match_context *ctx = tls->mctx;
    if (m) {
        long long entry = MATCH_STEPS + (long long)(len / (r->tail ? TAIL_BYTES_PER_STEP
                                                                   : SUBJECT_BYTES_PER_STEP));
        if (m->left < entry) {
            if (m->left > 0) m->left = 0;
            return REGEX_OVER_BUDGET;
        }
        m->left -= entry;
        m->last = 0;
        m->stop = 0;
        if (m->match_steps > 0) {
            long long cap = m->match_steps + m->match_steps_per_byte * (long long)len;
            if (m->left > cap) m->stop = m->left - cap;
        }
        tls->meter = m;
        tls->weight = r->jit ? 1 : INTERPRETER_WEIGHT;
        ctx = tls->metered;
    }
    int rc = r->jit
                 ? pcre2_jit_match(r->code, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK, tls->md, ctx)
                 : pcre2_match(r->code, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK, tls->md, ctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        if (m) m->last = 0;
        tls->weight = INTERPRETER_WEIGHT;
        rc = pcre2_match(r->code, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, tls->md,
                         ctx);
    }
    if (rc >= 0) return REGEX_MATCH;
    if (rc == PCRE2_ERROR_NOMATCH) return REGEX_NO_MATCH;
    if (rc == PCRE2_ERROR_CALLOUT && m && m->left < 0) return REGEX_OVER_BUDGET;
    return REGEX_TOO_COMPLEX;
}

int regex_search(const regex *r, const char *s, size_t len)
{
    return regex_search_metered(r, s, len, NULL);
}

const char *regex_source(const regex *r)
{
    return r->source;
}

void regex_free(regex *r)
{
    if (!r) return;
    pcre2_code_free(r->code);
    free(r->source);
    free(r);
}

bool regex_valid(const char *src, size_t len)
{
    bool unsupported;
    regex *r = regex_compile(src, len, NULL, &unsupported, false);
    bool ok = r != NULL || unsupported;
    regex_free(r);
    return ok;
}
