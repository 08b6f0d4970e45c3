/* Unit tests of server/mem.c: jansson allocates under Sluice's out-of-memory policy. */
#include "mem.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

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

Test(mem, buf_append_grows_across_its_capacity_and_stays_nul_terminated)
{
    /* buf_append is inline (mem.h): only a piece that does not fit calls buf_reserve. */
    buf b;
    buf_init(&b);
    char want[1200];
    size_t len = 0;
    for (int i = 0; len + 7 < sizeof want; i++) {
        const char *piece = i % 3 == 0 ? "a" : i % 3 == 1 ? "bcdefg" : "";
        size_t n = strlen(piece);
        buf_append(&b, piece, n);
        memcpy(want + len, piece, n);
        len += n;
        cr_assert_eq(b.len, len);
        cr_assert(b.cap > b.len, "no room for the NUL at %zu bytes", b.len);
        cr_assert_eq(b.data[b.len], '\0');
    }
    cr_assert_eq(memcmp(b.data, want, len), 0);
    buf_reserve(&b, 5000); /* room made ahead: the appends after it do not move the data */
    char *at = b.data;
    for (int i = 0; i < 700; i++)
        buf_append(&b, "xyzuvw", 6);
    cr_assert(b.data == at);
    cr_assert_eq(b.len, len + 4200);
    buf_dispose(&b);
    cr_assert_null(b.data);
}
