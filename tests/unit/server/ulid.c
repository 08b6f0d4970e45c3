/* Unit tests of server/ulid.c. */
#include "ulid.h"

#include <criterion/criterion.h>
#include <string.h>

Test(ulid, encodes_the_spec_example)
{
    /* From the ULID spec: time 1469918176385 encodes as 01ARYZ6S41. */
    uint8_t zero[10] = {0};
    char out[ULID_LEN + 1];
    ulid_encode(1469918176385ULL, zero, out);
    cr_assert_eq(strncmp(out, "01ARYZ6S41", 10), 0, "got %s", out);
    cr_assert_str_eq(out + 10, "0000000000000000");
}

Test(ulid, ids_made_in_a_row_are_strictly_increasing)
{
    char prev[ULID_LEN + 1], cur[ULID_LEN + 1];
    ulid_new(prev);
    for (int i = 0; i < 10000; i++) {
        ulid_new(cur);
        cr_assert_gt(strcmp(cur, prev), 0, "%s after %s", cur, prev);
        memcpy(prev, cur, sizeof cur);
    }
}

Test(ulid, uses_crockford_base32_only)
{
    char id[ULID_LEN + 1];
    ulid_new(id);
    cr_assert_eq(strlen(id), 26);
    cr_assert_eq(strspn(id, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"), 26);
}
