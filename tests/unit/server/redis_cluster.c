/* Unit tests of server/redis_cluster.c: hash slots and the names of the keys kept beside a
 * stream. */
#include "redis.h"
#include "redis_cluster.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static unsigned slot(const char *key)
{
    return redis_cluster_key_slot(key, strlen(key));
}

Test(redis_cluster, crc16_matches_the_cluster_spec_test_vector)
{
    /* The Redis Cluster spec: CRC16 of "123456789" is 0x31C3; 0x31C3 % 16384 = 12739. */
    cr_assert_eq(slot("123456789"), 0x31C3 & 16383);
    cr_assert_eq(slot("123456789"), 12739);
}

Test(redis_cluster, slots_of_known_keys_match_redis)
{
    /* As a Redis 7.0 cluster's CLUSTER KEYSLOT answers them. */
    struct {
        const char *key;
        unsigned slot;
    } table[] = {
        {"foo", 12182},
        {"bar", 5061},
        {"", 0},
        {"somekey", 11058},
        {"foo{hash_tag}", 2515},
        {"sluice:orders", 11645},
        {"sluice:relay:position", 15261},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        cr_assert_eq(slot(table[i].key), table[i].slot, "%s: %u", table[i].key, slot(table[i].key));
}

Test(redis_cluster, a_hash_tag_decides_the_slot)
{
    cr_assert_eq(slot("{user1000}.following"), slot("user1000"));
    cr_assert_eq(slot("{user1000}.followers"), slot("{user1000}.following"));
    /* Only the first {…} counts, and only up to the first } after it. */
    cr_assert_eq(slot("foo{bar}{zap}"), slot("bar"));
    cr_assert_eq(slot("foo{{bar}}zap"), slot("{bar"));
    /* An empty tag is no tag: the whole key is hashed. */
    cr_assert_eq(slot("foo{}{bar}"), redis_cluster_key_slot("foo{}{bar}", 10));
    cr_assert_neq(slot("foo{}{bar}"), slot("bar"));
    /* An unclosed { is no tag either. */
    cr_assert_neq(slot("foo{bar"), slot("bar"));
}

Test(redis_cluster, side_keys_share_the_slot_of_their_stream)
{
    const char *streams[] = {"sluice:orders", "sluice:acme:orders", "{sluice}:orders",
                             "a{b}c:orders", "pre{fix:orders"};
    for (size_t i = 0; i < sizeof streams / sizeof *streams; i++) {
        char *due = redis_cluster_side_key(streams[i], ":due:billing");
        cr_assert_not_null(due, "%s", streams[i]);
        cr_assert_eq(slot(due), slot(streams[i]), "%s beside %s", due, streams[i]);
        free(due);
    }
}

Test(redis_cluster, a_side_key_is_named_after_its_stream)
{
    char *due = redis_cluster_side_key("sluice:orders", ":due:billing");
    cr_assert_str_eq(due, "{sluice:orders}:due:billing");
    free(due);
    char *tagged = redis_cluster_side_key("{sluice}:orders", ":handback:g");
    cr_assert_str_eq(tagged, "{sluice}:orders:handback:g");
    free(tagged);
}

Test(redis_cluster, a_stream_key_with_a_stray_brace_has_no_side_key)
{
    /* No tag, but a '}' that would end "{…}" early: no name shares its slot this way. */
    cr_assert_null(redis_cluster_side_key("sluice}:orders", ":due:g"));
    cr_assert_null(redis_cluster_side_key("sluice:{}:orders", ":due:g"));
}

Test(redis_cluster, one_redis_keeps_the_names_sluice_always_used)
{
    char *due = redis_side_key(false, "sluice:orders", ":due:billing");
    cr_assert_str_eq(due, "sluice:orders:due:billing");
    free(due);
    char *clustered = redis_side_key(true, "sluice:orders", ":due:billing");
    cr_assert_str_eq(clustered, "{sluice:orders}:due:billing");
    free(clustered);
}

Test(redis_cluster, cluster_urls_are_told_apart)
{
    cr_assert(redis_url_is_cluster("redis+cluster://127.0.0.1:7000,127.0.0.1:7001"));
    cr_assert_not(redis_url_is_cluster("redis://127.0.0.1:6379/0"));
    cr_assert_not(redis_url_is_cluster("unix:///tmp/redis.sock"));
}
