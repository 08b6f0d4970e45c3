/* Unit tests of server/schema/format.c: each asserted format on values the
 * JSON-Schema-Test-Suite does not spell out, as a table. */
#include "schema/format.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

struct format_case {
    char format[24];
    char value[96];
    bool valid;
};

ParameterizedTestParameters(format, values)
{
    static struct format_case cases[] = {
        {"date-time", "2024-02-29T23:59:59Z", true},
        {"date-time", "2023-02-29T00:00:00Z", false},
        {"date-time", "2024-03-18t09:41:07.512+05:30", true},
        {"date-time", "2024-03-18T09:41:07", false},
        {"date-time", "2024-03-18T09:41:07.Z", false},
        {"date-time", "2016-12-31T23:59:60Z", true},
        {"date-time", "2016-12-31T23:59:60+01:00", false},
        {"date", "2000-02-29", true},
        {"date", "1900-02-29", false},
        {"time", "00:00:00-00:00", true},
        {"time", "23:59:59.999999999+14:00", true},
        {"duration", "P3Y6M4DT12H30M5S", true},
        {"duration", "PT", false},
        {"duration", "P1W2D", false},
        {"email", "a+b@sub.example.co.uk", true},
        {"email", "\"a b\"@example.com", true},
        {"email", "a@b@example.com", false},
        {"email", "a@-example.com", false},
        {"idn-email", "用户@例子.广告", true},
        {"hostname", "localhost", true},
        {"hostname", "xn--bcher-kva.example", true},
        {"hostname", "xn--bcher-kva-.example", false},
        {"hostname", "under_score.example", false},
        {"idn-hostname", "bücher.example", true},
        {"idn-hostname", "xn--bcher-kva.example", true},
        {"idn-hostname", "Bücher.example", false},
        {"idn-hostname", "例子。测试", true},
        {"idn-hostname", "שלום.example", true},
        {"idn-hostname", "1שלום.example", false},
        {"ipv4", "0.0.0.0", true},
        {"ipv4", "01.2.3.4", false},
        {"ipv6", "2001:db8::ff00:42:8329", true},
        {"ipv6", "::ffff:10.0.0.1", true},
        {"ipv6", "2001:db8:::1", false},
        {"ipv6", "1:2:3:4:5:6:7:8:9", false},
        {"uri", "https://user:pw@example.com:8443/a/b?c=d#e", true},
        {"uri", "urn:isbn:0451450523", true},
        {"uri", "https://example.com/a b", false},
        {"uri", "https://exa mple.com", false},
        {"uri-reference", "../a/b?c", true},
        {"uri-reference", "a:b/c", true},
        {"iri", "https://例子.测试/路径", true},
        {"iri-reference", "/路径?q=值", true},
        {"uri-template", "https://api.example.com/users/{id}{?fields*}", true},
        {"uri-template", "{unclosed", false},
        {"uuid", "00000000-0000-0000-0000-000000000000", true},
        {"uuid", "00000000-0000-0000-0000-00000000000g", false},
        {"json-pointer", "/a~1b/~0c", true},
        {"json-pointer", "/a~2", false},
        {"relative-json-pointer", "0#", true},
        {"relative-json-pointer", "1/a", true},
        {"relative-json-pointer", "-1", false},
        {"regex", "^[a-z]+(?:-[a-z]+)*$", true},
        {"regex", "(?i)abc", false},
        {"regex", "a{2,1}", false},
    };
    return cr_make_param_array(struct format_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct format_case *c, format, values)
{
    format_fn fn = format_lookup(c->format);
    cr_assert(fn, "format %s is asserted", c->format);
    cr_assert_eq(fn(c->value, strlen(c->value)), c->valid, "%s \"%s\" should be %s", c->format,
                 c->value, c->valid ? "valid" : "invalid");
}

Test(format, every_listed_name_has_a_checker_and_nothing_else_does)
{
    size_t n = 0;
    for (const char *const *f = format_names; *f; f++, n++)
        cr_assert(format_lookup(*f), "%s", *f);
    cr_assert_eq(n, 19);
    cr_assert_null(format_lookup("int32"), "OpenAPI's formats are not JSON Schema's");
    cr_assert_null(format_lookup("unknown"));
}

Test(format, values_with_an_embedded_nul_are_invalid)
{
    static const char v[] = "192.168.0.1\0.evil";
    cr_assert_not(format_lookup("ipv4")(v, sizeof v - 1));
    static const char d[] = "2020-01-01\0";
    cr_assert_not(format_lookup("date")(d, sizeof d - 1));
}
