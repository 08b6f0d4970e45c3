/* Unit tests of server/timeutil.c: RFC 3339 in and out. */
#include "timeutil.h"

#include <criterion/criterion.h>

Test(timeutil, formats_utc_with_milliseconds)
{
    char out[32];
    time_format_rfc3339(1795404760511LL, out);
    cr_assert_str_eq(out, "2026-11-23T03:32:40.511Z");
}

Test(timeutil, parses_offsets_and_fractions)
{
    int64_t ms;
    cr_assert(time_parse_rfc3339("2026-11-23T03:32:40.511Z", &ms));
    cr_assert_eq(ms, 1795404760511LL);
    cr_assert(time_parse_rfc3339("2026-11-23T04:32:40.5+01:00", &ms));
    cr_assert_eq(ms, 1795404760500LL);
    cr_assert(time_parse_rfc3339("2026-11-23T03:32:40Z", &ms));
    cr_assert_eq(ms, 1795404760000LL);
}

Test(timeutil, refuses_what_is_not_rfc3339)
{
    int64_t ms;
    cr_assert_not(time_parse_rfc3339("2026-11-23", &ms));
    cr_assert_not(time_parse_rfc3339("2026-11-23T03:32:40", &ms), "an offset is required");
    cr_assert_not(time_parse_rfc3339("2026-13-23T03:32:40Z", &ms));
    cr_assert_not(time_parse_rfc3339("2026-02-30T03:32:40Z", &ms), "no such day");
    cr_assert_not(time_parse_rfc3339("2026-02-29T03:32:40Z", &ms), "2026 is no leap year");
    cr_assert(time_parse_rfc3339("2024-02-29T03:32:40Z", &ms));
    cr_assert_not(time_parse_rfc3339("2026-04-31T03:32:40Z", &ms), "April has 30 days");
    cr_assert_not(time_parse_rfc3339("2026-11-23T03:32:40+24:00", &ms), "offsets stop at 23:59");
    cr_assert_not(time_parse_rfc3339("2026-11-23T03:32:40+01:60", &ms));
    cr_assert_not(time_parse_rfc3339("yesterday", &ms));
    cr_assert_not(time_parse_rfc3339("2026-11-23T03:32:40.Z", &ms));
}
