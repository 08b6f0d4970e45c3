/* Unit tests of server/schema/regex.c: ECMA-262 patterns as PCRE2 runs them,
 * what is refused, and the bound on pathological matches. */
#include "schema/regex.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct match_case {
    char pattern[48];
    char subject[48];
    bool match;
};

ParameterizedTestParameters(regex, ecma_semantics)
{
    static struct match_case cases[] = {
        {"^\\d+$", "0123", true},
        {"^\\d+$", "١٢٣", false},         /* \d is ASCII */
        {"^\\w+$", "é", false},           /* \w is ASCII */
        {"^\\s$", "\xc2\xa0", true},      /* \s includes NBSP */
        {"^\\s$", "\xe2\x80\xa8", true},  /* and LINE SEPARATOR */
        {"^\\S$", "\xe2\x80\x83", false}, /* EM SPACE is whitespace */
        {"^[\\S]$", "x", true},
        {"^[^\\S]$", " ", true},
        {"^[^\\S]$", "x", false},
        {"^.$", "\n", false}, /* . stops at line terminators */
        {"^.$", "\xe2\x80\xa9", false},
        {"^.$", "\xf0\x9f\x90\xb2", true}, /* one code point, not two units */
        {"abc$", "abc\n", false},          /* $ is the very end */
        {"^\\u00e9$", "é", true},
        {"^\\u{1F432}$", "\xf0\x9f\x90\xb2", true},
        {"^\\ud83d\\udc32$", "\xf0\x9f\x90\xb2", true},
        {"^\\p{Letter}+$", "école", true},
        {"^\\p{gc=Lu}$", "É", true},
        {"^\\P{Assigned}$", "a", false},
        {"^[^]$", "\n", true},
        {"^[]$", "a", false},
        {"^\\cJ$", "\n", true},
        {"^\\x41\\0?$", "A", true},
        {"^(?<y>\\d{4})-\\k<y>$", "2024-2024", true},
        {"^a{2,3}$", "aaaa", false},
        {"\\bfoo\\b", "a foo b", true},
        {"^\\/\\.$", "/.", true},
        {"(?<=\\$)\\d+", "cost $42", true},
    };
    return cr_make_param_array(struct match_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct match_case *c, regex, ecma_semantics)
{
    char *err = NULL;
    regex *r = regex_new(c->pattern, strlen(c->pattern), &err, NULL);
    cr_assert(r, "/%s/ compiles: %s", c->pattern, err ? err : "");
    int m = regex_search(r, c->subject, strlen(c->subject));
    cr_assert_eq(m, c->match ? REGEX_MATCH : REGEX_NO_MATCH, "/%s/ on \"%s\"", c->pattern,
                 c->subject);
    regex_free(r);
}

struct refusal {
    char pattern[32];
    bool unsupported; /* valid ECMA that PCRE2 cannot run */
};

ParameterizedTestParameters(regex, refusals)
{
    static struct refusal cases[] = {
        {"(?i)abc", false}, {"(?P<n>x)", false}, {"(?#c)a", false}, {"\\a", false},
        {"a{", false},      {"}", false},        {"]", false},      {"a**", false},
        {"a*+", false},     {"*a", false},       {"(a", false},     {"a)", false},
        {"[a", false},      {"\\u12", false},    {"\\c1", false},   {"\\p{Nope}", false},
        {"\\2(a)", false},  {"[z-a]", false},    {"\\-", false},    {"(?<=a+)b", true},
        {"\\udc00", true},
    };
    return cr_make_param_array(struct refusal, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct refusal *c, regex, refusals)
{
    char *err = NULL;
    bool unsupported = !c->unsupported;
    regex *r = regex_new(c->pattern, strlen(c->pattern), &err, &unsupported);
    cr_assert_null(r, "/%s/ is refused", c->pattern);
    cr_assert(err && *err, "with a reason");
    cr_assert_eq(unsupported, c->unsupported, "/%s/: %s", c->pattern, err);
    cr_assert_eq(regex_valid(c->pattern, strlen(c->pattern)), c->unsupported);
    free(err);
}

Test(regex, a_pathological_match_is_cut_short)
{
    static const char p[] = "^(a+)+$";
    regex *r = regex_new(p, strlen(p), NULL, NULL);
    cr_assert(r);
    char subject[64];
    memset(subject, 'a', 40);
    subject[40] = '!';
    clock_t t0 = clock();
    cr_assert_eq(regex_search(r, subject, 41), REGEX_TOO_COMPLEX);
    cr_assert_lt((double)(clock() - t0) / CLOCKS_PER_SEC, 2.0, "answers promptly");
    regex_free(r);
}

Test(regex, patterns_may_contain_nul)
{
    static const char p[] = "^a\0b$";
    regex *r = regex_new(p, sizeof p - 1, NULL, NULL);
    cr_assert(r);
    cr_assert_eq(regex_search(r, "a\0b", 3), REGEX_MATCH);
    cr_assert_eq(regex_search(r, "ab", 2), REGEX_NO_MATCH);
    cr_assert_str_eq(regex_source(r), "^a");
    regex_free(r);
}
