/* Unit tests of server/canon.c: byte for byte what jansson's dumper writes, on the
 * shapes a publish sees (nested objects, unicode, escapes, reals, big objects). */
#include "canon.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static const char *const documents[] = {
    "{}",
    "[]",
    "{\"b\":1,\"a\":2,\"ab\":3,\"\":4,\"aa\":[true,false,null]}",
    "{\"file_id\":\"f_1\",\"size\":48213377,\"ratio\":0.1,\"neg\":-12.5e-3,\"big\":1e300,"
    "\"n\":-9223372036854775807,\"whole\":3.0}",
    "{\"s\":\"quote \\\" backslash \\\\ slash / tab \\t nl \\n cr \\r bs \\b ff \\f\"}",
    "{\"ctl\":\"\\u0001\\u001f\\u007f\",\"nul\":\"a\\u0000b\"}",
    "{\"latin\":\"caf\\u00e9\",\"cjk\":\"\\u65e5\\u672c\",\"emoji\":\"\\ud83d\\ude00\","
    "\"raw\":\"na\xc3\xafve \xe2\x82\xac \xf0\x9f\x8e\x89\"}",
    "{\"k\\u00e9y\":1,\"kz\":2,\"K\":3,\"\\ud83d\\ude00\":4}",
    "{\"deep\":{\"z\":{\"y\":[{\"b\":1,\"a\":{\"d\":[],\"c\":{}}}]}},\"arr\":[[1,[2,[3]]]]}",
};

static void check(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    cr_assert_not_null(v, "%s: %s", text, err.text);
    const size_t flags[2] = {JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII, JSON_COMPACT};
    for (int i = 0; i < 2; i++) {
        char *want = json_dumps(v, flags[i] | JSON_ENCODE_ANY);
        buf got;
        buf_init(&got);
        if (i == 0)
            canon_canonical(&got, v);
        else
            canon_compact(&got, v);
        cr_assert_eq(got.len, strlen(want), "%s\n want %s\n got  %.*s", text, want, (int)got.len,
                     got.data);
        cr_assert(memcmp(got.data, want, got.len) == 0, "%s\n want %s\n got  %.*s", text, want,
                  (int)got.len, got.data);
        buf_dispose(&got);
        free(want);
    }
    json_decref(v);
}

Test(canon, matches_jansson_on_every_shape)
{
    for (size_t i = 0; i < sizeof documents / sizeof documents[0]; i++)
        check(documents[i]);
}

Test(canon, matches_jansson_past_the_stack_key_array)
{
    /* 100 keys in reverse order: the sort leaves the stack array for the heap. */
    json_t *o = json_object();
    for (int i = 99; i >= 0; i--) {
        char k[16];
        snprintf(k, sizeof k, "key%03d", i);
        json_object_set_new(o, k, json_integer(i));
    }
    char *text = json_dumps(o, JSON_COMPACT);
    check(text);
    free(text);
    json_decref(o);
}
