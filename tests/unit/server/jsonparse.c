/* Unit tests of server/jsonparse.c: the fast path builds jansson's tree or declines,
 * never a different answer (the fuzz target tests/fuzz/envelope.c does the same on
 * generated bodies). */
#include "jsonparse.h"

#include <criterion/criterion.h>
#include <string.h>

#define FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

/* Every input: jansson's verdict, and the fast path's (equal tree or declined). */
static const char *const inputs[] = {
    "{}",
    "[]",
    " {\"a\" : [1, -2, 3.5, -0, 0.0, 1e3, 1E-3, -9223372036854775808]} ",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "1e-400",
    "\"plain\"",
    "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t\"",
    "\"\\u00e9\\u65e5\\ud83d\\ude00\"",
    "\"caf\xc3\xa9 \xf0\x9f\x8e\x89\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udc00x\"",
    "\"\xc0\xaf\"",
    "\"\xed\xa0\x80\"",
    "\"\xf4\x90\x80\x80\"",
    "\"tab\tinside\"",
    "{\"a\":1,\"a\":2}",
    "{\"k\\u00e9\":1,\"k\\n\":{\"\":null}}",
    "[true,false,null]",
    "[1,]",
    "{\"a\":1,}",
    "01",
    "-",
    "1.",
    ".5",
    "1e",
    "+1",
    "[1 2]",
    "{\"a\" 1}",
    "nul",
    "truex",
    "[] []",
    "",
    "   ",
    "\"unterminated",
    "{\"a\":[{\"b\":[{\"c\":{}}]}]}",
    "[\"\\u12\"]",
    "\"\\x\"",
    "{1:2}",
    "\x80",
    "[1]\x00",
};

static void check(const char *in, size_t len)
{
    json_error_t err;
    json_t *want = json_loadb(in, len, FLAGS, &err);
    json_t *got = jsonparse_load(in, len);
    if (got) {
        cr_assert_not_null(want, "fast path accepted what jansson refuses: %s (%s)", in, err.text);
        cr_assert(json_equal(got, want), "different trees for %s", in);
        /* Same order of members too (canonical dumps would hide it). */
        char *a = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        char *b = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
        cr_assert_str_eq(a, b);
        free(a);
        free(b);
    }
    json_t *body = jsonparse_body(in, len, &err);
    cr_assert_eq(body != NULL, want != NULL, "jsonparse_body disagrees on %s", in);
    json_decref(body);
    json_decref(got);
    json_decref(want);
}

Test(jsonparse, agrees_with_jansson)
{
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        check(inputs[i], strlen(inputs[i]));
    check("[1]\0", 4); /* a NUL byte after the value */
}

Test(jsonparse, takes_the_common_envelope_itself)
{
    const char *env = "[{\"id\":\"a-1\",\"type\":\"file.uploaded\",\"correlation_id\":\"c\","
                      "\"metadata\":{\"trace\":\"abc\"},\"data\":{\"file_size\":48213377,"
                      "\"name\":\"q3.pdf\",\"ok\":true,\"ratio\":0.25}}]";
    json_t *v = jsonparse_load(env, strlen(env));
    cr_assert_not_null(v, "the fast path declined a plain envelope");
    json_decref(v);
}

Test(jsonparse, deep_nesting_is_left_to_jansson)
{
    char deep[2 * 300 + 1];
    memset(deep, '[', 300);
    memset(deep + 300, ']', 300);
    deep[600] = '\0';
    cr_assert_null(jsonparse_load(deep, 600));
    check(deep, 600);
}
