/* Unit tests of server/redis.c's command batches: a command added as text, and one written
 * straight into the batch (the relay's XADDs), are recorded the same way, each with its key. */
#include "redis.h"

#include <criterion/criterion.h>
#include <string.h>

Test(redis_batch, a_command_written_in_place_is_recorded_like_an_added_one)
{
    redis_batch b;
    redis_batch_init(&b);
    const char *first = "*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
    redis_batch_add(&b, "a", 1, first, strlen(first));
    size_t start = b.text.len;
    const char *second = "*2\r\n$3\r\nGET\r\n$6\r\nstream\r\n";
    buf_append(&b.text, second, strlen(second));
    redis_batch_added(&b, "stream", 6, start);
    cr_assert_eq(b.n, 2);
    cr_assert_eq(b.cmds[0].off, 0);
    cr_assert_eq(b.cmds[0].len, strlen(first));
    cr_assert_eq(b.cmds[1].off, strlen(first));
    cr_assert_eq(b.cmds[1].len, strlen(second));
    cr_assert_eq(memcmp(b.text.data + b.cmds[1].off, second, strlen(second)), 0);
    cr_assert_eq(b.cmds[0].key_len, 1);
    cr_assert_eq(memcmp(b.keys.data + b.cmds[0].key_off, "a", 1), 0);
    cr_assert_eq(b.cmds[1].key_len, 6);
    cr_assert_eq(memcmp(b.keys.data + b.cmds[1].key_off, "stream", 6), 0);
    redis_batch_dispose(&b);
}

Test(redis_batch, many_commands_grow_the_table)
{
    redis_batch b;
    redis_batch_init(&b);
    char key[16];
    for (int i = 0; i < 200; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        size_t start = b.text.len;
        buf_append(&b.text, "X", 1);
        redis_batch_added(&b, key, (size_t)n, start);
    }
    cr_assert_eq(b.n, 200);
    cr_assert_eq(b.cmds[199].off, 199);
    cr_assert_eq(memcmp(b.keys.data + b.cmds[199].key_off, "k199", 4), 0);
    redis_batch_dispose(&b);
}
