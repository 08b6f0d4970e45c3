/* Unit tests of server/mem.c: jansson allocates under Sluice's out-of-memory policy. */
#include "mem.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>

Test(mem, jansson_allocates_with_xmalloc_from_before_main)
{
    /* mem.c's constructor ran before Criterion's main: nothing here installs it. */
    json_malloc_t m = NULL;
    json_free_t f = NULL;
    json_get_alloc_funcs(&m, &f);
    cr_assert(m == xmalloc, "jansson's allocator is not xmalloc");
    cr_assert(f == free, "jansson's deallocator is not free");
}

Test(mem, text_jansson_returns_is_freed_with_free)
{
    json_t *v = json_pack("{s:s,s:i}", "a", "b", "n", 1);
    cr_assert_not_null(v);
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(text, "{\"a\":\"b\",\"n\":1}");
    free(text);
    json_decref(v);
}
