/* Unit tests of server/store.c: parsing the read filters (filter.h, and paging). */
#include "store.h"

#include <criterion/criterion.h>
#include <string.h>

typedef struct args {
    const char *names[8];
    const char *values[8];
} args;

static const char *lookup(void *ctx, const char *name)
{
    args *a = ctx;
    for (int i = 0; i < 8 && a->names[i]; i++)
        if (strcmp(a->names[i], name) == 0) return a->values[i];
    return NULL;
}

Test(store, types_take_comma_lists_and_prefix_wildcards)
{
    args a = {{"type"}, {"file.uploaded,user.*,ai.cost.*"}};
    read_filter f;
    filter_error err;
    cr_assert_eq(store_filter_parse(&f, "default", lookup, &a, true, &err), 0, "%s", err.message);
    cr_assert_eq(f.f.n_types, 3);
    cr_assert_str_eq(f.f.types[0], "file.uploaded");
    cr_assert_not(f.f.type_prefix[0]);
    cr_assert_str_eq(f.f.types[1], "user.");
    cr_assert(f.f.type_prefix[1]);
    cr_assert_str_eq(f.f.types[2], "ai.cost.");
    store_filter_dispose(&f);
}

Test(store, pages_default_to_100_and_stop_at_1000)
{
    args a = {{NULL}, {NULL}};
    read_filter f;
    filter_error err;
    cr_assert_eq(store_filter_parse(&f, "default", lookup, &a, true, &err), 0);
    cr_assert_eq(f.limit, 100);
    store_filter_dispose(&f);
    args big = {{"limit"}, {"1001"}};
    cr_assert_eq(store_filter_parse(&f, "default", lookup, &big, true, &err), -1);
    cr_assert_eq(store_filter_parse(&f, "default", lookup, &big, false, &err), 0, "streams have no page cap");
    store_filter_dispose(&f);
}

Test(store, bad_filters_are_refused_with_a_reason)
{
    const char *bad[][2] = {
        {"type", "File.x"}, {"type", "*.x"},   {"after", "-1"},  {"after", "x"},
        {"limit", "0"},     {"since", "today"}, {"until", "2026"}, {"stream", ""},
        {"since", "2026-02-30T00:00:00Z"}, {"until", "2026-01-01T00:00:00+24:00"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        args a = {{bad[i][0]}, {bad[i][1]}};
        read_filter f;
        filter_error err = {0};
        cr_assert_eq(store_filter_parse(&f, "default", lookup, &a, true, &err), -1, "%s=%s", bad[i][0],
                     bad[i][1]);
        cr_assert_neq(err.message[0], '\0');
    }
}

Test(store, times_reach_postgresql_as_epoch_milliseconds)
{
    /* No client text is cast to timestamptz there: year 0, which PostgreSQL refuses as
     * text, is a plain number here. */
    args a = {{"since", "until"}, {"2026-11-23T04:32:40.5+01:00", "0000-01-01T00:00:00Z"}};
    read_filter f;
    filter_error err;
    cr_assert_eq(store_filter_parse(&f, "default", lookup, &a, true, &err), 0, "%s", err.message);
    cr_assert_eq(f.f.since_ms, 1795404760500LL);
    cr_assert_eq(f.f.until_ms, -62167219200000LL);
    store_filter_dispose(&f);
}
